/*
 * libwsmux adapter for a poll(2) loop. Header-only glue: a listening socket,
 * a table of pollfds, the four transport callbacks (socket plumbing from
 * sockio.h) and a self-pipe to wake the loop from other threads (ws_post).
 * The core never sees any of this; copy it, or include it, in your own
 * host.
 *
 *   static wsa_poll p;                     // large: not on the stack
 *   ws_config cfg; ws_config_init(&cfg);
 *   wsa_poll_config(&cfg);                 // send, sendv, want_write, close
 *   cfg.wake = wsa_poll_wake;              // optional, for ws_post
 *   cfg.user_data = &p;                    //   (wsa_poll_wake needs this)
 *   ... set handlers ...
 *   ws_server_new(&cfg, &srv);
 *   wsa_poll_init(&p, srv, "127.0.0.1", 8081);
 *   while (running) wsa_poll_run_once(&p);
 *   ws_server_free(srv);                   // closes what is left...
 *   wsa_poll_destroy(&p);                  // ...then the adapter's fds
 *
 * Free the server after the run call returns, not from inside a callback
 * (a handler, on_open, on_close): the library allows it, but this adapter
 * still uses srv in the same pass. From a callback, call
 * ws_server_shutdown or set the flag the loop tests.
 *
 * A graceful stop:
 *   wsa_poll_stop_listening(&p);
 *   if (ws_server_shutdown(srv, 5000) == WS_OK)
 *     while (!drained) wsa_poll_run_once(&p);  // on_shutdown sets drained
 * A run returns once on_shutdown has fired, also from the tick it starts
 * with (the drain's deadline passed between two runs): that tick answers
 * 0, so the wait after it ends at once.
 *
 * Set cfg.user_data to the wsa_poll (wsa_poll_config does not touch it; the
 * transport callbacks find the adapter through the transport pointer, only
 * wsa_poll_wake needs user_data). A wsa_poll is driven by one thread; only
 * wsa_poll_notify (and so wsa_poll_wake) may be called from others.
 */
#ifndef WSA_POLL_H
#define WSA_POLL_H

#include "sockio.h" /* first: it checks _GNU_SOURCE */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsmux.h"

#define WSA_POLL_MAX 4096
#define WSA_POLL_FIRST 2 /* pfd[0]: the listener, pfd[1]: the wake pipe */
#ifndef WSA_POLL_ACCEPT_PAUSE_MS
#define WSA_POLL_ACCEPT_PAUSE_MS 100 /* out of descriptors: listener off */
#endif

typedef struct wsa_poll wsa_poll;

/* One accepted socket; the transport pointer handed to libwsmux. */
typedef struct wsa_poll_sock {
  wsa_poll *owner;
  int fd;
  int idx; /* position in owner->pfd */
  ws_conn *conn;
  int read_done; /* the library needs no more input (wsa_read_done) */
  int *alive;    /* wsa_poll_read's, while it feeds: cleared on close */
} wsa_poll_sock;

struct wsa_poll {
  ws_server *srv;
  int listen_fd;
  int wake_fd[2]; /* self-pipe: [0] polled by the loop, [1] written */
  nfds_t n;       /* sockets from pfd[WSA_POLL_FIRST] on */
  uint64_t accept_resume; /* listener unwatched until then (0: watched) */
  struct pollfd pfd[WSA_POLL_MAX];
  wsa_poll_sock *socks[WSA_POLL_MAX];
};

static inline ssize_t wsa_poll_send(ws_conn *c, void *t, const void *d,
                                    size_t n) {
  (void)c;
  return wsa_fd_send(((wsa_poll_sock *)t)->fd, d, n);
}

static inline ssize_t wsa_poll_sendv(ws_conn *c, void *t, const ws_iovec *iov,
                                     int n) {
  (void)c;
  return wsa_fd_sendv(((wsa_poll_sock *)t)->fd, iov, n);
}

static inline int wsa_poll_want_write(ws_conn *c, void *t, int want) {
  wsa_poll_sock *s = (wsa_poll_sock *)t;
  (void)c;
  if (want)
    s->owner->pfd[s->idx].events |= POLLOUT;
  else
    s->owner->pfd[s->idx].events &= (short)~POLLOUT;
  return 0;
}

/* Removes the socket from the table by moving the last entry into its
 * place. The loop walks the table backwards, so that is safe mid-walk. */
static inline int wsa_poll_close(ws_conn *c, void *t) {
  wsa_poll_sock *s = (wsa_poll_sock *)t;
  wsa_poll *p = s->owner;
  nfds_t last = p->n - 1;
  (void)c;
  if ((nfds_t)s->idx != last) {
    p->pfd[s->idx] = p->pfd[last];
    p->socks[s->idx] = p->socks[last];
    p->socks[s->idx]->idx = s->idx;
  }
  p->n--;
  wsa_close_fd(s->fd);
  if (s->alive) *s->alive = 0;
  free(s);
  return 0;
}

static inline void wsa_poll_config(ws_config *cfg) {
  cfg->send = wsa_poll_send;
  cfg->sendv = wsa_poll_sendv;
  cfg->want_write = wsa_poll_want_write;
  cfg->close = wsa_poll_close;
}

/* ---- waking the loop from another thread ------------------------------ */

/* Thread-safe: makes the loop's poll return. A full pipe (EAGAIN) already
 * holds a wake the loop has not consumed. */
static inline int wsa_poll_notify(wsa_poll *p) {
  char one = 1;
  ssize_t w;
  do
    w = write(p->wake_fd[1], &one, 1);
  while (w < 0 && errno == EINTR);
  return w == 1 || errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
}

/* A ws_config.wake callback: cfg.wake = wsa_poll_wake with cfg.user_data =
 * the wsa_poll. A host whose user_data is something else calls
 * wsa_poll_notify from its own wake callback instead. The loop ticks on
 * every wake, and the tick delivers what was posted. */
static inline int wsa_poll_wake(ws_server *s, void *user_data) {
  (void)s;
  return wsa_poll_notify((wsa_poll *)user_data);
}

/* ---- setup ------------------------------------------------------------ */

/* Listens on host:port (IPv4 or IPv6 literal) and opens the wake pipe.
 * Returns 0 or -1 (errno). */
static inline int wsa_poll_init(wsa_poll *p, ws_server *srv, const char *host,
                                int port) {
  memset(p, 0, sizeof(*p));
  p->srv = srv;
  p->wake_fd[0] = p->wake_fd[1] = -1;
  p->listen_fd = wsa_listen(host, port, 0);
  if (p->listen_fd < 0) return -1;
  if (pipe2(p->wake_fd, O_NONBLOCK | O_CLOEXEC) < 0) {
    int e = errno;
    close(p->listen_fd);
    p->listen_fd = p->wake_fd[0] = p->wake_fd[1] = -1;
    errno = e;
    return -1;
  }
  p->pfd[0].fd = p->listen_fd;
  p->pfd[0].events = POLLIN;
  p->pfd[1].fd = p->wake_fd[0];
  p->pfd[1].events = POLLIN;
  p->n = WSA_POLL_FIRST;
  return 0;
}

/* Stops accepting: closes the listener. Pending connections in the
 * backlog are reset. Already accepted ones go on. */
static inline void wsa_poll_stop_listening(wsa_poll *p) {
  if (p->listen_fd < 0) return;
  close(p->listen_fd);
  p->listen_fd = p->pfd[0].fd = -1; /* poll(2) skips a negative fd */
  p->accept_resume = 0;
}

/* Accepts until the backlog is empty. Out of descriptors with no spare to
 * shed the pending connection (WSA_ACCEPT_NOFD: this thread has no spare,
 * or another thread took the slot it freed), the listener would stay
 * readable and the loop spin: it is left unwatched for
 * WSA_POLL_ACCEPT_PAUSE_MS (wsa_poll_run_once_for wakes to resume). */
static inline void wsa_poll_accept(wsa_poll *p) {
  for (;;) {
    int fd = wsa_accept(p->listen_fd);
    wsa_poll_sock *s;
    if (fd == WSA_ACCEPT_NOFD) {
      p->pfd[0].events = 0;
      p->accept_resume = wsa_now_ms() + WSA_POLL_ACCEPT_PAUSE_MS;
    }
    if (fd < 0) return;
    if (p->n >= WSA_POLL_MAX ||
        (s = (wsa_poll_sock *)calloc(1, sizeof(*s))) == NULL) {
      close(fd);
      continue;
    }
    wsa_nodelay(fd);
    s->owner = p;
    s->fd = fd;
    s->idx = (int)p->n;
    if (ws_conn_new(p->srv, s, &s->conn) != WS_OK) {
      close(fd);
      free(s);
      continue;
    }
    p->pfd[p->n].fd = fd;
    p->pfd[p->n].events = POLLIN;
    p->pfd[p->n].revents = 0;
    p->socks[p->n] = s;
    p->n++;
  }
}

/* Reads what is there and feeds it. An error aborts the connection, and
 * so does an EOF unless the close handshake is done: then reading stops
 * and the output drains (wsa_read_done, sockio.h). */
static inline void wsa_poll_read(wsa_poll_sock *s) {
  char buf[16384];
  ssize_t r = recv(s->fd, buf, sizeof(buf), 0);
  if (r > 0) {
    int alive = 1, rc;
    /* wsa_poll_close frees s: it clears alive first. The pointer does not
     * outlive this call: reset below, or s is gone. */
    /* cppcheck-suppress autoVariables */
    s->alive = &alive;
    rc = ws_conn_feed(s->conn, buf, (size_t)r);
    if (!alive) return;
    s->alive = NULL;
    s->read_done = wsa_read_done(rc, s->conn);
  } else if (r == 0 && s->read_done) {
    s->owner->pfd[s->idx].events &= (short)~POLLIN; /* EOF stays readable */
  } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
    ws_conn_abort(s->conn);
  }
}

/* One loop iteration: wait until the next deadline or an event, then tick,
 * accept, read and write. timeout_cap_ms bounds the wait (-1: none). */
static inline int wsa_poll_run_once_for(wsa_poll *p, int timeout_cap_ms) {
  int timeout = ws_server_tick(p->srv, wsa_now_ms());
  int r;
  nfds_t i;
  uint64_t now;
  if (timeout_cap_ms >= 0 && (timeout < 0 || timeout > timeout_cap_ms))
    timeout = timeout_cap_ms;
  if (p->accept_resume) { /* wake when the accept pause ends */
    uint64_t t = wsa_now_ms();
    int left = p->accept_resume > t ? (int)(p->accept_resume - t) : 0;
    if (timeout < 0 || timeout > left) timeout = left;
  }
  r = poll(p->pfd, p->n, timeout);
  if (r < 0 && errno != EINTR) return -1;
  /* An interrupted wait ticks too (see wsa_epoll_run_once_for: after a
   * stop, a deadline that passed meanwhile runs in this run). */
  now = wsa_now_ms();
  ws_server_tick(p->srv, now);
  if (p->accept_resume && now >= p->accept_resume) {
    p->accept_resume = 0;
    p->pfd[0].events = POLLIN;
  }
  if (r < 0) return 0;
  for (i = p->n; i-- > WSA_POLL_FIRST;) {
    short ev;
    wsa_poll_sock *s;
    if (i >= p->n) continue; /* the table shrank under us */
    ev = p->pfd[i].revents;
    s = p->socks[i];
    if (ev == 0) continue;
    p->pfd[i].revents = 0;
    if (ev & POLLOUT) {
      if (ws_conn_writable(s->conn) != WS_OK) continue; /* closed */
    }
    if (ev & (POLLIN | POLLHUP | POLLERR)) wsa_poll_read(s);
  }
  if (p->pfd[1].revents & POLLIN) {
    /* Only empties the pipe: the tick above delivered the posts. A post
     * landing after that tick finds the post queue non-empty or writes
     * the pipe again, and the next iteration ticks before it waits. */
    char buf[64];
    while (read(p->wake_fd[0], buf, sizeof(buf)) > 0) {
    }
  }
  p->pfd[1].revents = 0;
  if (p->listen_fd >= 0 && (p->pfd[0].revents & POLLIN)) wsa_poll_accept(p);
  p->pfd[0].revents = 0;
  return 0;
}

static inline int wsa_poll_run_once(wsa_poll *p) {
  return wsa_poll_run_once_for(p, 1000);
}

/* Closes the listener and the wake pipe; call after ws_server_free (which
 * closed every connection through wsa_poll_close). */
static inline void wsa_poll_destroy(wsa_poll *p) {
  if (p->listen_fd >= 0) close(p->listen_fd);
  if (p->wake_fd[0] >= 0) close(p->wake_fd[0]);
  if (p->wake_fd[1] >= 0) close(p->wake_fd[1]);
  p->listen_fd = p->wake_fd[0] = p->wake_fd[1] = -1;
}

#endif /* WSA_POLL_H */
