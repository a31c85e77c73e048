/*
 * wss:// with OpenSSL: the host terminates TLS and libwsmux only ever sees
 * plaintext. A poll(2) loop; each socket has an SSL object on two memory
 * BIOs, so OpenSSL never touches the socket:
 *
 *   socket readable -> recv -> BIO_write(rbio) -> SSL_read -> ws_conn_feed
 *   library send    -> SSL_write (ciphertext lands in wbio) -> send(2)
 *
 * Why memory BIOs: with a socket BIO, an SSL_write that answers WANT_WRITE
 * must be retried with the same bytes, but the library may put a control
 * frame (a pong, a close) ahead of a message nothing of which was sent
 * yet. Here SSL_write always takes the bytes; what the socket does not take
 * stays in wbio, and past WSA_TLS_MAX_PENDING ciphertext bytes the send
 * callback answers 0 ("would block"), so the library keeps the rest in its
 * own bounded queue. Before the TLS handshake finishes SSL_write answers
 * WANT_READ: that is a 0 too, and the write then waits for input, not for
 * POLLOUT (see write_blocked).
 *
 * Same protocol as examples/pingpong.c (ping, echo, broadcast): the
 * application is pingpong_app.h, socket plumbing adapters/sockio.h; this
 * file is the TLS transport and its poll loop.
 *
 * Usage: tls --cert FILE --key FILE [--port N] [--host ADDR]
 * SIGINT/SIGTERM: 1001 to every client, drain, exit 0.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/sockio.h"
#include "pingpong_app.h"
#include "wsmux.h"

#define MAX_SOCKS 1024
#define WSA_TLS_MAX_PENDING (256 * 1024) /* ciphertext kept per socket */
#define TLS_LINGER_MS 5000 /* a closed socket's last ciphertext, at most */
/* Past this much ciphertext in wbio the socket is not read (see
 * update_events): more than tls_send ever leaves there (its cap plus one
 * record), so only TLS's own answers take wbio this far. */
#define TLS_READ_PAUSE (WSA_TLS_MAX_PENDING + 64 * 1024)

typedef struct tls_sock {
  int fd;
  int idx; /* in g_pfd / g_socks */
  SSL *ssl;
  BIO *rbio, *wbio; /* network side: we write rbio, we drain wbio */
  ws_conn *conn;
  int want;  /* the library has output waiting for ws_conn_writable */
  /* SSL_write answered WANT_READ (a handshake under way, such as a client's
   * TLS 1.2 renegotiation): the write goes on once input was read, so
   * POLLOUT, which an idle socket always has, is not what it waits for. */
  int write_blocked;
  int read_done; /* the library needs no more input (wsa_read_done) */
  int *alive;    /* on_readable's, while it feeds: cleared on release */
  uint64_t linger_until; /* closed (conn NULL), ciphertext still to send */
} tls_sock;

static struct pollfd g_pfd[MAX_SOCKS + 1];
static tls_sock *g_socks[MAX_SOCKS + 1];
static nfds_t g_n;
static SSL_CTX *g_ctx;
/* Not 0: the listener (g_pfd[0]) is not polled until then (wsa_now_ms). */
static uint64_t g_accept_resume;
#define ACCEPT_PAUSE_MS 100

/* Sends buffered ciphertext. Returns 0, or -1 when the socket failed. */
static int flush_wbio(tls_sock *s) {
  char *data;
  long n;
  while ((n = BIO_get_mem_data(s->wbio, &data)) > 0) {
    ssize_t w = wsa_fd_send(s->fd, data, (size_t)n);
    if (w <= 0) return (int)w; /* 0: would block */
    if (BIO_read(s->wbio, data, (int)w) != (int)w) return -1; /* consume */
    if (w < n) return 0;
  }
  return 0;
}

/* Reading pauses while wbio is past TLS_READ_PAUSE: OpenSSL answers some
 * input by itself (a TLS 1.3 KeyUpdate that asks for one), in SSL_read,
 * past tls_send's cap and unseen by the library's max_queued. A client
 * sending those and never reading grew wbio by as much as it sent (about
 * 0.7 MB a second, the server's CPU the limit), for as long as it kept the
 * connection alive. Paused, its records wait in the kernel until the
 * socket takes our output, or the library's deadlines end it. */
static void update_events(tls_sock *s) {
  size_t pending = BIO_ctrl_pending(s->wbio);
  /* without POLLIN when done: an EOF stays readable */
  short ev = s->read_done || pending > TLS_READ_PAUSE ? 0 : POLLIN;
  if (pending > 0 || (s->want && !s->write_blocked)) ev |= POLLOUT;
  g_pfd[s->idx].events = ev;
}

/* ---- transport callbacks ---------------------------------------------- */

/* Record by record (16 KiB each) until the socket and the ciphertext cap
 * are full: a short count makes the library wait for POLLOUT, so it must
 * mean "full", not "one record made" (with one record per call, a reply
 * larger than a record still sat in the library when the peer's FIN came,
 * and the abort that follows an EOF dropped it). */
static ssize_t tls_send(ws_conn *c, void *t, const void *d, size_t n) {
  tls_sock *s = t;
  size_t done = 0;
  (void)c;
  s->write_blocked = 0;
  while (done < n) {
    size_t chunk = n - done < 16384 ? n - done : 16384;
    int w;
    if (BIO_ctrl_pending(s->wbio) >= WSA_TLS_MAX_PENDING) {
      if (flush_wbio(s) < 0) return -1;
      if (BIO_ctrl_pending(s->wbio) >= WSA_TLS_MAX_PENDING) break;
    }
    ERR_clear_error(); /* SSL_get_error reads this thread's queue */
    w = SSL_write(s->ssl, (const char *)d + done, (int)chunk);
    if (w <= 0) {
      int e = SSL_get_error(s->ssl, w);
      s->write_blocked = e == SSL_ERROR_WANT_READ;
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
      return -1;
    }
    done += (size_t)w;
    if (flush_wbio(s) < 0) return -1;
  }
  update_events(s);
  return (ssize_t)done;
}

static int tls_want_write(ws_conn *c, void *t, int want) {
  tls_sock *s = t;
  (void)c;
  s->want = want;
  update_events(s);
  return 0;
}

/* Closes the socket, frees the session and swaps the last table entry
 * into this slot (the loop walks backwards). */
static void tls_release(tls_sock *s) {
  nfds_t last = g_n - 1;
  if ((nfds_t)s->idx != last) {
    g_pfd[s->idx] = g_pfd[last];
    g_socks[s->idx] = g_socks[last];
    g_socks[s->idx]->idx = s->idx;
  }
  g_n--;
  wsa_close_fd(s->fd);
  if (s->alive) *s->alive = 0;
  SSL_free(s->ssl); /* frees both BIOs */
  free(s);
}

/* Sends close_notify best-effort. The library counts as sent what
 * tls_send took, but part of it may still be ciphertext in wbio that the
 * socket did not take (the last echo, the close frame): the socket then
 * stays in the table, watched for POLLOUT only, until wbio is empty, the
 * socket fails or TLS_LINGER_MS passed (linger_step). */
static int tls_close(ws_conn *c, void *t) {
  tls_sock *s = t;
  (void)c;
  s->conn = NULL;
  if (SSL_is_init_finished(s->ssl)) {
    SSL_shutdown(s->ssl);
    if (flush_wbio(s) == 0 && BIO_ctrl_pending(s->wbio) > 0) {
      s->linger_until = wsa_now_ms() + TLS_LINGER_MS;
      g_pfd[s->idx].events = POLLOUT;
      return 0;
    }
  }
  tls_release(s);
  return 0;
}

/* A closed socket's turn in the loop: flush, and release it once done. */
static void linger_step(tls_sock *s, short ev) {
  if (((ev & POLLOUT) && flush_wbio(s) < 0) || (ev & (POLLERR | POLLHUP)) ||
      BIO_ctrl_pending(s->wbio) == 0 || wsa_now_ms() >= s->linger_until)
    tls_release(s);
}

/* ---- loop ------------------------------------------------------------- */

static void accept_all(ws_server *srv, int lfd) {
  for (;;) {
    int fd = wsa_accept(lfd);
    tls_sock *s;
    /* The pending connection could not be taken (no memory, no spare
     * descriptor) and the listener stays readable: polling it at once
     * would spin. */
    if (fd == WSA_ACCEPT_NOFD) {
      g_accept_resume = wsa_now_ms() + ACCEPT_PAUSE_MS;
      g_pfd[0].events = 0;
    }
    if (fd < 0) return;
    if (g_n > MAX_SOCKS || (s = calloc(1, sizeof(*s))) == NULL) {
      close(fd);
      continue;
    }
    wsa_nodelay(fd);
    s->fd = fd;
    s->ssl = SSL_new(g_ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
      BIO_free(s->rbio);
      BIO_free(s->wbio);
      SSL_free(s->ssl);
      goto drop;
    }
    BIO_set_mem_eof_return(s->rbio, -1); /* empty: "retry", not EOF */
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_accept_state(s->ssl);
    s->idx = (int)g_n;
    g_pfd[g_n].fd = fd;
    g_pfd[g_n].events = POLLIN;
    g_pfd[g_n].revents = 0;
    g_socks[g_n] = s;
    g_n++;
    if (ws_conn_new(srv, s, &s->conn) != WS_OK) {
      g_n--;
      SSL_free(s->ssl);
      goto drop;
    }
    continue;
  drop:
    close(fd);
    free(s);
  }
}

/* Feeds plaintext. Returns 0 to go on, 1 when the library needs no more
 * input (wsa_read_done), -1 when the connection is gone (s may be freed). */
static int feed_plain(tls_sock *s, const char *p, size_t n) {
  int alive = 1, rc;
  /* tls_release clears alive: s is freed then. The pointer does not
   * outlive this call: reset below, or s is gone. */
  /* cppcheck-suppress autoVariables */
  s->alive = &alive;
  rc = ws_conn_feed(s->conn, p, n);
  if (!alive) return -1;
  s->alive = NULL;
  if (rc == WS_OK) return 0;
  s->read_done = wsa_read_done(rc, s->conn);
  return s->read_done ? 1 : -1; /* else closed, lingering */
}

/* Socket readable: ciphertext in, plaintext to the library. Returns -1
 * when the connection is gone. A TCP EOF aborts it (no close_notify is a
 * truncation), unless the close handshake is done: then reading stops and
 * the output drains, as in the adapters (sockio.h). */
static int on_readable(tls_sock *s) {
  char buf[16384];
  ssize_t r = recv(s->fd, buf, sizeof(buf), 0);
  ws_conn *c = s->conn;
  if (r == 0 && s->read_done) {
    update_events(s); /* drops POLLIN */
    return 0;
  }
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
    ws_conn_abort(c); /* EOF or error: on_close gets 1006 */
    return -1;
  }
  if (r < 0) return 0;
  if (BIO_write(s->rbio, buf, (int)r) != (int)r) {
    ws_conn_abort(c);
    return -1;
  }
  for (;;) {
    int n, e;
    /* SSL_get_error looks at the thread's error queue first: an error
     * another connection left there (a client speaking plain HTTP to
     * this port, a failed handshake) would turn this one's "no more
     * data yet" into SSL_ERROR_SSL and abort a healthy connection. */
    ERR_clear_error();
    n = SSL_read(s->ssl, buf, sizeof(buf));
    if (n > 0) {
      int f = feed_plain(s, buf, (size_t)n); /* may close and free s */
      if (f < 0) return -1;
      if (f > 0) break; /* what follows the close is not read */
      continue;
    }
    e = SSL_get_error(s->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    /* close_notify, or a TLS error (bad handshake, bad record) */
    flush_wbio(s); /* a fatal alert, if any */
    ws_conn_abort(c);
    return -1;
  }
  /* Handshake records, or data SSL_read produced (TLS 1.3 tickets). */
  if (flush_wbio(s) < 0) {
    ws_conn_abort(c);
    return -1;
  }
  /* Input was read: a write that waited for it is tried again (it answers
   * WANT_READ once more if the handshake still waits for the peer). */
  if (s->write_blocked && s->want && ws_conn_writable(c) != WS_OK) return -1;
  update_events(s);
  return 0;
}

static int on_writable(tls_sock *s) {
  if (flush_wbio(s) < 0) {
    ws_conn_abort(s->conn);
    return -1;
  }
  if (BIO_ctrl_pending(s->wbio) == 0 && s->want && !s->write_blocked &&
      ws_conn_writable(s->conn) != WS_OK)
    return -1;
  update_events(s);
  return 0;
}

static void run_once(ws_server *srv, int cap_ms) {
  int timeout = ws_server_tick(srv, wsa_now_ms());
  nfds_t i;
  if (timeout < 0 || timeout > cap_ms) timeout = cap_ms;
  if (g_accept_resume) { /* wake when the accept pause ends */
    uint64_t now = wsa_now_ms();
    int left = now >= g_accept_resume ? 0 : (int)(g_accept_resume - now);
    if (left == 0) {
      g_accept_resume = 0;
      g_pfd[0].events = POLLIN;
    } else if (timeout > left) {
      timeout = left;
    }
  }
  if (poll(g_pfd, g_n, timeout) < 0) return;
  ws_server_tick(srv, wsa_now_ms());
  for (i = g_n; i-- > 1;) {
    short ev;
    tls_sock *s;
    if (i >= g_n) continue; /* the table shrank under us */
    ev = g_pfd[i].revents;
    s = g_socks[i];
    g_pfd[i].revents = 0;
    if (s->conn == NULL) { /* closed, lingering: checked on every turn */
      linger_step(s, ev);
      continue;
    }
    if (ev == 0) continue;
    if ((ev & POLLOUT) && on_writable(s) < 0) continue;
    if (ev & (POLLIN | POLLHUP | POLLERR)) on_readable(s);
  }
  if (g_pfd[0].fd >= 0 && (g_pfd[0].revents & POLLIN))
    accept_all(srv, g_pfd[0].fd);
  g_pfd[0].revents = 0;
}

int main(int argc, char **argv) {
  pp_args a;
  int lfd;
  ws_config cfg;
  ws_server *srv;
  ws_mux *mux;

  if (pp_parse_args(&a, argc, argv, 8443, PP_OPT_TLS)) return 2;
  g_ctx = SSL_CTX_new(TLS_server_method());
  if (g_ctx == NULL ||
      SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(g_ctx, a.cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(g_ctx, a.key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(g_ctx) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  if ((mux = pp_mux_new(NULL)) == NULL) return 1;
  ws_config_init(&cfg);
  cfg.send = tls_send;
  cfg.want_write = tls_want_write;
  cfg.close = tls_close;
  pp_config(&cfg, mux);
  if ((srv = pp_server_new(&cfg)) == NULL) return 1;
  if ((lfd = wsa_listen(a.host, a.port, 0)) < 0) {
    perror("listen");
    return 1;
  }
  g_pfd[0].fd = lfd;
  g_pfd[0].events = POLLIN;
  g_n = 1;
  pp_install_signals();
  pp_announce_url("tls", "https", a.host, wsa_local_port(lfd),
                  "(wss path /ws?device_id=...)");

  while (!pp_stop) run_once(srv, 500);
  close(lfd);
  g_pfd[0].fd = -1; /* poll ignores it */
  ws_server_tick(srv, wsa_now_ms());
  ws_server_shutdown(srv, PP_DRAIN_MS);
  while (!pp_done) run_once(srv, 100);
  ws_server_free(srv);
  while (g_n > 1) run_once(NULL, 100); /* lingering sockets (tick: -1) */
  ws_mux_free(mux);
  SSL_CTX_free(g_ctx);
  printf("tls: stopped\n");
  return 0;
}
