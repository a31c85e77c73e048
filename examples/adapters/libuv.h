/*
 * libwsmux adapter for libuv. Header-only glue: a uv_tcp_t listener, one
 * uv_tcp_t per accepted socket, the transport callbacks, a uv_timer_t on the
 * library's next deadline and a uv_async_t that wakes the loop for ws_post.
 * The core never sees any of this.
 *
 *   static wsa_uv a;
 *   ws_config cfg; ws_config_init(&cfg);
 *   wsa_uv_config(&cfg);                  // send, sendv, want_write, close
 *   cfg.wake = wsa_uv_wake;               // optional, for ws_post
 *   cfg.user_data = &a;                   //   (wsa_uv_wake needs this)
 *   ... set handlers ...
 *   ws_server_new(&cfg, &srv);
 *   wsa_uv_init(&a, uv_default_loop(), srv, "127.0.0.1", 8081);
 *   uv_run(loop, UV_RUN_DEFAULT);         // until the host's uv_stop (the
 *                                         // handles keep the loop alive)
 *   ...
 *   ws_server_free(srv);                  // closes what is left...
 *   wsa_uv_close_handles(&a);             // ...then the adapter's handles
 *   uv_run(loop, UV_RUN_DEFAULT);         // lets the close callbacks run
 *
 * Free the server after the run call returns, not from inside a callback
 * (a handler, on_open, on_close): the library allows it, but this adapter
 * still uses srv in the same pass. From a callback, call
 * ws_server_shutdown or set the flag the loop tests.
 *
 * Writes: the send callback writes with uv_try_write (no copy). What the
 * kernel does not take is copied into one uv_write request, up to
 * WSA_UV_MAX_PENDING bytes per socket; past that the callback answers "would
 * block" (0), so the library keeps the rest in its own bounded queue
 * (max_queued and the queue policy still apply) and asks for want_write.
 * When the last uv_write completes the adapter calls ws_conn_writable. A
 * uv_tcp_t has no writability event, so this copy is what lets the library
 * learn when to write again; it is bounded per socket.
 *
 * Reads: one buffer (WSA_UV_READ_BUF) per socket per loop iteration. libuv
 * reads a readable stream up to 32 times in a row; a socket whose read
 * filled the buffer stops reading until the next iteration's prepare
 * callback, so one client flooding data cannot hold up the others.
 *
 * Time: a uv_prepare_t ticks the library right before the loop blocks and
 * re-arms the timer with ws_server_tick's answer; read callbacks tick first
 * (uv_now, cheap) so deadlines count from the real read time.
 *
 * Close: the library's close callback stops reading and closes the handle
 * once the adapter's pending uv_write (the last bytes, e.g. a close frame
 * or an HTTP refusal) completed, or after WSA_UV_LINGER_MS: a peer that
 * never reads would otherwise keep the socket (and its copy) for as long
 * as it stays connected. What it did not take then is dropped. Unread
 * input is drained before the handle closes (wsa_drain_fd, sockio.h).
 *
 * Threads: one loop thread drives the server; only wsa_uv_wake (through
 * ws_post) is called from others (uv_async_send is thread-safe).
 *
 * SIGPIPE: libuv writes with write(2), not send(MSG_NOSIGNAL) as sockio.h
 * does, so a write after a peer's reset raises SIGPIPE, whose default
 * action kills the process. wsa_uv_init ignores it unless the host set
 * its own disposition (a handler keeps it; it must not exit).
 */
#ifndef WSA_LIBUV_H
#define WSA_LIBUV_H

#ifndef _GNU_SOURCE /* uv.h needs pthread_rwlock_t, which -std=c11 hides */
#error "libwsmux's adapters need _GNU_SOURCE: compile with -D_GNU_SOURCE"
#endif

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sockio.h" /* wsa_drain_fd */

#include "wsmux.h"

#ifndef WSA_UV_MAX_PENDING
#define WSA_UV_MAX_PENDING (64 * 1024) /* bytes copied per socket at most */
#endif
#ifndef WSA_UV_READ_BUF
#define WSA_UV_READ_BUF 65536
#endif
#ifndef WSA_UV_LINGER_MS
#define WSA_UV_LINGER_MS 5000 /* a closed socket's last writes, at most */
#endif

typedef struct wsa_uv wsa_uv;
typedef struct wsa_uv_linger wsa_uv_linger;

/* One accepted socket; the transport pointer handed to libwsmux. */
typedef struct wsa_uv_sock {
  uv_tcp_t tcp;      /* first: handle->data is not needed */
  wsa_uv *owner;
  ws_conn *conn;     /* NULL once the library closed it */
  size_t pending;    /* bytes in uv_write requests */
  int want;          /* the library asked for ws_conn_writable */
  int closing;       /* close the handle when pending reaches 0 */
  int read_done;     /* the library needs no more input (wsa_read_done) */
  wsa_uv_linger *linger; /* closing with writes pending: the time limit */
  struct wsa_uv_sock *paused_next, **paused_prev; /* on wsa_uv.paused */
} wsa_uv_sock;

/* Made only for a socket closed with writes pending. */
struct wsa_uv_linger {
  uv_timer_t timer; /* first */
  wsa_uv_sock *s;
};

struct wsa_uv {
  ws_server *srv;
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t timer;
  uv_prepare_t prepare;
  uv_async_t async;
  uint64_t last_tick;
  size_t nsocks;
  int listening;
  uv_tcp_t reject;           /* takes a connection there is no memory for */
  int reject_busy;           /* reject is closing */
  int reject_pending;        /* a connection waits for it meanwhile */
  int reading;               /* the read buffer is lent out */
  wsa_uv_sock *paused;       /* read a full buffer: resume next iteration */
  char rbuf[WSA_UV_READ_BUF]; /* one read at a time per loop */
};

typedef struct wsa_uv_wreq {
  uv_write_t req;
  wsa_uv_sock *s;
  size_t len; /* bytes copied, right after the struct (one allocation) */
} wsa_uv_wreq;

/* Ticks at most once per loop iteration's cached time. */
static inline int wsa_uv_tick(wsa_uv *a) {
  a->last_tick = uv_now(a->loop);
  return ws_server_tick(a->srv, a->last_tick);
}

static inline void wsa_uv_touch(wsa_uv *a) {
  if (uv_now(a->loop) != a->last_tick) wsa_uv_tick(a);
}

static inline void wsa_uv_on_handle_closed(uv_handle_t *h) {
  wsa_uv_sock *s = (wsa_uv_sock *)h;
  s->owner->nsocks--;
  free(s);
}

static inline void wsa_uv_on_linger_closed(uv_handle_t *h) { free(h); }

static inline void wsa_uv_unpause(wsa_uv_sock *s) {
  if (s->paused_prev == NULL) return;
  *s->paused_prev = s->paused_next;
  if (s->paused_next) s->paused_next->paused_prev = s->paused_prev;
  s->paused_next = NULL;
  s->paused_prev = NULL;
}

/* Stops reading s until the next loop iteration (wsa_uv_on_prepare). */
static inline void wsa_uv_pause(wsa_uv_sock *s) {
  wsa_uv *a = s->owner;
  uv_read_stop((uv_stream_t *)&s->tcp);
  s->paused_next = a->paused;
  s->paused_prev = &a->paused;
  if (a->paused) a->paused->paused_prev = &s->paused_next;
  a->paused = s;
}

/* Closing the handle cancels its pending writes (their callbacks run with
 * UV_ECANCELED before wsa_uv_on_handle_closed). */
static inline void wsa_uv_finish_close(wsa_uv_sock *s) {
  wsa_uv_unpause(s);
  if (s->linger) {
    /* A host's uv_walk may have closed the timer already (then it owns
     * the handle's memory: it is not freed here). */
    if (!uv_is_closing((uv_handle_t *)&s->linger->timer))
      uv_close((uv_handle_t *)&s->linger->timer, wsa_uv_on_linger_closed);
    s->linger = NULL;
  }
  if (!uv_is_closing((uv_handle_t *)&s->tcp)) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) wsa_drain_fd(fd);
    uv_close((uv_handle_t *)&s->tcp, wsa_uv_on_handle_closed);
  }
}

static inline void wsa_uv_on_linger(uv_timer_t *t) {
  wsa_uv_finish_close(((wsa_uv_linger *)t)->s);
}

/* Waits for the pending writes, WSA_UV_LINGER_MS at most (no timer: no
 * wait, rather than one without a bound). */
static inline void wsa_uv_linger_start(wsa_uv_sock *s) {
  wsa_uv_linger *l = (wsa_uv_linger *)malloc(sizeof(*l));
  if (l == NULL || uv_timer_init(s->owner->loop, &l->timer) != 0) {
    free(l);
    wsa_uv_finish_close(s);
    return;
  }
  l->s = s;
  s->linger = l;
  uv_timer_start(&l->timer, wsa_uv_on_linger, WSA_UV_LINGER_MS, 0);
}

static inline void wsa_uv_on_write(uv_write_t *req, int status) {
  wsa_uv_wreq *w = (wsa_uv_wreq *)req;
  wsa_uv_sock *s = w->s;
  s->pending -= w->len;
  free(w);
  if (s->closing) {
    if (s->pending == 0) wsa_uv_finish_close(s);
    return;
  }
  wsa_uv_touch(s->owner);
  if (status < 0) {
    ws_conn_abort(s->conn); /* calls wsa_uv_close */
    return;
  }
  if (s->pending == 0 && s->want) ws_conn_writable(s->conn);
}

/* Copies up to the per-socket cap of bufs (skipping `skip` bytes already
 * written) into one uv_write. Returns the bytes taken, or -1. */
static inline ssize_t wsa_uv_copy(wsa_uv_sock *s, const uv_buf_t *bufs,
                                  int n, size_t skip) {
  size_t room = WSA_UV_MAX_PENDING > s->pending
                    ? WSA_UV_MAX_PENDING - s->pending : 0;
  size_t total = 0, off = 0;
  wsa_uv_wreq *w;
  char *data;
  uv_buf_t b;
  int i;
  for (i = 0; i < n; i++) total += bufs[i].len;
  total -= skip;
  if (total > room) total = room;
  if (total == 0) return 0;
  if ((w = (wsa_uv_wreq *)malloc(sizeof(*w) + total)) == NULL) return -1;
  data = (char *)(w + 1);
  for (i = 0; i < n && off < total; i++) {
    size_t len = bufs[i].len, from = 0, take;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    from = skip;
    skip = 0;
    take = len - from < total - off ? len - from : total - off;
    memcpy(data + off, bufs[i].base + from, take);
    off += take;
  }
  w->s = s;
  w->len = total;
  b = uv_buf_init(data, (unsigned int)total);
  if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, wsa_uv_on_write) != 0) {
    free(w);
    return -1;
  }
  s->pending += total;
  return (ssize_t)total;
}

/* ---- transport callbacks ---------------------------------------------- */

static inline ssize_t wsa_uv_sendv(ws_conn *c, void *t, const ws_iovec *iov,
                                   int n) {
  wsa_uv_sock *s = (wsa_uv_sock *)t;
  uv_buf_t bufs[64];
  int i, r = 0;
  ssize_t copied;
  (void)c;
  if (n > 64) n = 64;
  for (i = 0; i < n; i++)
    bufs[i] = uv_buf_init((char *)iov[i].base, (unsigned int)iov[i].len);
  /* uv_try_write answers UV_EAGAIN while a uv_write is queued: order kept */
  r = uv_try_write((uv_stream_t *)&s->tcp, bufs, (unsigned int)n);
  if (r < 0 && r != UV_EAGAIN) return -1;
  if (r < 0) r = 0;
  copied = wsa_uv_copy(s, bufs, n, (size_t)r);
  /* No memory for the copy: a short count is "would block", and only a
   * pending uv_write's completion calls ws_conn_writable. With none
   * pending nothing ever would: fail the connection instead of stalling
   * it (as the libevent adapter does when write interest cannot be
   * armed). */
  if (copied < 0) return s->pending > 0 ? r : -1;
  return r + copied;
}

static inline ssize_t wsa_uv_send(ws_conn *c, void *t, const void *d,
                                  size_t n) {
  ws_iovec v;
  v.base = d;
  v.len = n;
  return wsa_uv_sendv(c, t, &v, 1);
}

/* The library calls ws_conn_writable's trigger when the copy drains. */
static inline int wsa_uv_want_write(ws_conn *c, void *t, int want) {
  wsa_uv_sock *s = (wsa_uv_sock *)t;
  (void)c;
  s->want = want;
  return 0;
}

static inline int wsa_uv_close(ws_conn *c, void *t) {
  wsa_uv_sock *s = (wsa_uv_sock *)t;
  (void)c;
  s->conn = NULL;
  s->closing = 1;
  wsa_uv_unpause(s);
  uv_read_stop((uv_stream_t *)&s->tcp);
  if (s->pending == 0)
    wsa_uv_finish_close(s);
  else
    wsa_uv_linger_start(s);
  return 0;
}

static inline void wsa_uv_config(ws_config *cfg) {
  cfg->send = wsa_uv_send;
  cfg->sendv = wsa_uv_sendv;
  cfg->want_write = wsa_uv_want_write;
  cfg->close = wsa_uv_close;
}

/* A ws_config.wake callback (cfg.user_data = the wsa_uv). Thread-safe. */
static inline int wsa_uv_wake(ws_server *srv, void *user_data) {
  wsa_uv *a = (wsa_uv *)user_data;
  (void)srv;
  return uv_async_send(&a->async);
}

/* ---- loop side -------------------------------------------------------- */

static inline void wsa_uv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  wsa_uv *a = ((wsa_uv_sock *)h)->owner;
  (void)hint;
  if (a->reading) { /* never: libuv reads one socket at a time */
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  a->reading = 1;
  *buf = uv_buf_init(a->rbuf, sizeof(a->rbuf));
}

static inline void wsa_uv_on_read(uv_stream_t *st, ssize_t n,
                                  const uv_buf_t *buf) {
  wsa_uv_sock *s = (wsa_uv_sock *)st;
  wsa_uv *a = s->owner;
  (void)buf;
  a->reading = 0;
  if (s->conn == NULL) return;
  wsa_uv_touch(a);
  if (n > 0) {
    int rc = ws_conn_feed(s->conn, a->rbuf, (size_t)n);
    s->read_done = wsa_read_done(rc, s->conn); /* s outlives a close */
  } else if (n == UV_EOF && s->read_done) {
    /* libuv stopped reading at EOF; the output drains. */
  } else if (n < 0) { /* EOF or error: no close frame, on_close gets 1006 */
    ws_conn_abort(s->conn);
  }
  /* A full buffer: more is likely waiting; the others go first. */
  if (n == (ssize_t)sizeof(a->rbuf) && s->conn && !s->closing) wsa_uv_pause(s);
}

static inline void wsa_uv_reject(wsa_uv *a);

static inline void wsa_uv_on_reject_closed(uv_handle_t *h) {
  wsa_uv *a = (wsa_uv *)h->data;
  a->reject_busy = 0;
  if (a->reject_pending) {
    a->reject_pending = 0;
    wsa_uv_reject(a);
  }
}

/* No memory for a connection's socket: it is accepted into the adapter's
 * own handle and closed at once. Left in the backlog, it would stop libuv
 * from watching the listener until uv_accept: no connection again, ever. */
static inline void wsa_uv_reject(wsa_uv *a) {
  if (a->reject_busy) { /* the previous one is still closing */
    a->reject_pending = 1;
    return;
  }
  uv_tcp_init(a->loop, &a->reject);
  a->reject.data = a;
  a->reject_busy = 1;
  /* Should it fail (not seen for TCP), libuv would not watch the listener
   * again either: nothing more can be done here. */
  (void)uv_accept((uv_stream_t *)&a->listener, (uv_stream_t *)&a->reject);
  uv_close((uv_handle_t *)&a->reject, wsa_uv_on_reject_closed);
}

static inline void wsa_uv_on_connection(uv_stream_t *l, int status) {
  wsa_uv *a = (wsa_uv *)l->data;
  wsa_uv_sock *s;
  if (status < 0) return;
  if ((s = (wsa_uv_sock *)calloc(1, sizeof(*s))) == NULL) {
    wsa_uv_reject(a);
    return;
  }
  s->owner = a;
  uv_tcp_init(a->loop, &s->tcp);
  a->nsocks++;
  if (uv_accept(l, (uv_stream_t *)&s->tcp) != 0) {
    wsa_uv_finish_close(s);
    return;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  wsa_uv_touch(a);
  if (ws_conn_new(a->srv, s, &s->conn) != WS_OK) {
    s->conn = NULL;
    wsa_uv_finish_close(s);
    return;
  }
  uv_read_start((uv_stream_t *)&s->tcp, wsa_uv_alloc, wsa_uv_on_read);
}

static inline void wsa_uv_on_timer(uv_timer_t *t) {
  (void)t; /* the prepare handle that runs next ticks and re-arms */
}

/* Right before the loop blocks: tick, then sleep until the next deadline. */
static inline void wsa_uv_on_prepare(uv_prepare_t *p) {
  wsa_uv *a = (wsa_uv *)p->data;
  int next;
  while (a->paused) {
    wsa_uv_sock *s = a->paused;
    wsa_uv_unpause(s);
    uv_read_start((uv_stream_t *)&s->tcp, wsa_uv_alloc, wsa_uv_on_read);
  }
  next = wsa_uv_tick(a);
  if (next < 0)
    uv_timer_stop(&a->timer);
  else
    uv_timer_start(&a->timer, wsa_uv_on_timer, (uint64_t)next, 0);
}

/* ws_post woke us: the tick delivers what was posted. */
static inline void wsa_uv_on_async(uv_async_t *h) {
  wsa_uv_tick((wsa_uv *)h->data);
}

/* SIGPIPE at its default action (death) becomes ignored; a host's own
 * choice stays. */
static inline void wsa_uv_ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL) return;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);
}

static inline void wsa_uv_close_handles(wsa_uv *a);

/* Sets up the handles on loop (and ignores SIGPIPE, see above); listens
 * on host:port (IPv4 or IPv6 literal; port 0 picks one, see wsa_uv_port)
 * unless host is NULL (then the host passes accepted uv_tcp_t connections
 * itself: not covered here). Returns 0 or a negative libuv error; then the
 * handles are already closing (nothing of the adapter ticks srv again or
 * keeps the loop alive): a must stay valid until the loop's next run has
 * closed them (wsa_uv_close_handles may still be called, as after a normal
 * run). */
static inline int wsa_uv_init(wsa_uv *a, uv_loop_t *loop, ws_server *srv,
                              const char *host, int port) {
  struct sockaddr_storage ss;
  int r;
  memset(a, 0, sizeof(*a));
  a->srv = srv;
  a->loop = loop;
  wsa_uv_ignore_sigpipe();
  uv_timer_init(loop, &a->timer);
  uv_prepare_init(loop, &a->prepare);
  a->prepare.data = a;
  uv_prepare_start(&a->prepare, wsa_uv_on_prepare);
  uv_async_init(loop, &a->async, wsa_uv_on_async);
  a->async.data = a;
  uv_tcp_init(loop, &a->listener);
  a->listener.data = a;
  if (host == NULL) return 0;
  r = strchr(host, ':')
          ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
          : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (r == 0) r = uv_tcp_bind(&a->listener, (struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&a->listener, 1024,
                            wsa_uv_on_connection);
  if (r == 0)
    a->listening = 1;
  else /* the started prepare would tick srv on every turn of the loop */
    wsa_uv_close_handles(a);
  return r;
}

/* The bound port of the listener, or -1. */
static inline int wsa_uv_port(wsa_uv *a) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&a->listener, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Stops accepting (closes the listener). Accepted sockets go on. */
static inline void wsa_uv_stop_listening(wsa_uv *a) {
  if (!uv_is_closing((uv_handle_t *)&a->listener))
    uv_close((uv_handle_t *)&a->listener, NULL);
  a->listening = 0;
}

static inline void wsa_uv_close_once(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes the adapter's own handles (after ws_server_free closed every
 * connection); run the loop once more so their close callbacks run. A
 * second call (after a failed wsa_uv_init closed them) does nothing. */
static inline void wsa_uv_close_handles(wsa_uv *a) {
  wsa_uv_stop_listening(a);
  wsa_uv_close_once((uv_handle_t *)&a->timer);
  wsa_uv_close_once((uv_handle_t *)&a->prepare);
  wsa_uv_close_once((uv_handle_t *)&a->async);
}

#endif /* WSA_LIBUV_H */
