/*
 * libwsmux adapter for libevent 2.1, without bufferevents: the library keeps
 * its own output queue, so the adapter only needs readiness. Header-only
 * glue: an EV_READ|EV_PERSIST event per socket plus an EV_WRITE|EV_PERSIST
 * one added only while the library wants to write (want_write), an evtimer
 * on the library's next deadline, and a user event that ws_post activates
 * to wake the loop; socket plumbing from sockio.h. The core never sees any
 * of this.
 *
 *   evthread_use_pthreads();              // only for ws_post from threads,
 *                                         // before event_base_new; link
 *                                         // -levent_pthreads
 *   static wsa_ev a;
 *   ws_config cfg; ws_config_init(&cfg);
 *   wsa_ev_config(&cfg);                  // send, sendv, want_write, close
 *   cfg.wake = wsa_ev_wake;               // optional, for ws_post
 *   cfg.user_data = &a;                   //   (wsa_ev_wake needs this)
 *   ... set handlers ...
 *   ws_server_new(&cfg, &srv);
 *   wsa_ev_init(&a, base, srv, "127.0.0.1", 8081);
 *   event_base_dispatch(base);            // until event_base_loopbreak
 *   ws_server_free(srv);                  // closes what is left...
 *   wsa_ev_destroy(&a);                   // ...then the adapter's events
 *
 * Free the server after the run call returns, not from inside a callback
 * (a handler, on_open, on_close): the library allows it, but this adapter
 * still uses srv in the same pass. From a callback, call
 * ws_server_shutdown or set the flag the loop tests.
 *
 * Time: libevent has no "before blocking" hook, so every adapter callback
 * ticks with the monotonic clock before it feeds bytes, and re-arms the
 * evtimer from a second tick after it is done (the feed may have added a
 * deadline). Host code that calls the API from its own libevent callbacks
 * (a broadcast from a timer, say) calls wsa_ev_rearm afterwards.
 *
 * Threads: one loop thread; wsa_ev_wake (event_active) may be called from
 * others once libevent's threading is on (evthread_use_pthreads).
 */
#ifndef WSA_LIBEVENT_H
#define WSA_LIBEVENT_H

#include "sockio.h" /* first: it checks _GNU_SOURCE */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsmux.h"

#ifndef WSA_EV_READ_BUF
#define WSA_EV_READ_BUF 16384
#endif

#ifndef WSA_EV_ACCEPT_PAUSE_MS
#define WSA_EV_ACCEPT_PAUSE_MS 100 /* out of descriptors: listener off */
#endif

typedef struct wsa_ev wsa_ev;

/* One accepted socket; the transport pointer handed to libwsmux. */
typedef struct wsa_ev_sock {
  wsa_ev *owner;
  int fd;
  ws_conn *conn;
  struct event *rd, *wr;
  int writing; /* wr is added */
  int read_done; /* the library needs no more input (wsa_read_done) */
  struct wsa_ev_sock *next_dead;
} wsa_ev_sock;

struct wsa_ev {
  ws_server *srv;
  struct event_base *base;
  int listen_fd;
  struct event *accept_ev, *timer, *wake;
  struct event *accept_pause; /* re-adds accept_ev (wsa_ev_on_accept) */
  size_t nsocks;
  /* Closed sockets, freed when the adapter callback that closed them
   * returns: a tick at the start of a socket's own callback may close it
   * (a deadline), and the callback must still be able to see that. */
  wsa_ev_sock *dead;
};

/* Ticks now and arms the evtimer on the next deadline (none: removed). */
static inline void wsa_ev_rearm(wsa_ev *a) {
  int next = ws_server_tick(a->srv, wsa_now_ms());
  if (next < 0) {
    evtimer_del(a->timer);
  } else {
    struct timeval tv;
    tv.tv_sec = next / 1000;
    tv.tv_usec = (next % 1000) * 1000;
    evtimer_add(a->timer, &tv);
  }
}

static inline void wsa_ev_reap(wsa_ev *a) {
  while (a->dead) {
    wsa_ev_sock *s = a->dead;
    a->dead = s->next_dead;
    free(s);
  }
}

/* The end of every adapter callback. */
static inline void wsa_ev_done(wsa_ev *a) {
  wsa_ev_rearm(a);
  wsa_ev_reap(a);
}

/* ---- transport callbacks ---------------------------------------------- */

static inline ssize_t wsa_ev_send(ws_conn *c, void *t, const void *d,
                                  size_t n) {
  (void)c;
  return wsa_fd_send(((wsa_ev_sock *)t)->fd, d, n);
}

static inline ssize_t wsa_ev_sendv(ws_conn *c, void *t, const ws_iovec *iov,
                                   int n) {
  (void)c;
  return wsa_fd_sendv(((wsa_ev_sock *)t)->fd, iov, n);
}

static inline int wsa_ev_want_write(ws_conn *c, void *t, int want) {
  wsa_ev_sock *s = (wsa_ev_sock *)t;
  if (want && !s->writing) {
    s->writing = event_add(s->wr, NULL) == 0;
    if (!s->writing) /* never told when writable: output would only stall */
      ws_conn_abort(c);
  } else if (!want && s->writing) {
    event_del(s->wr);
    s->writing = 0;
  }
  return 0;
}

/* event_free is legal from the event's own callback (same thread); an
 * event of this socket still active in this iteration is dropped with it.
 * The socket struct itself waits on the dead list (wsa_ev_done). */
static inline int wsa_ev_close(ws_conn *c, void *t) {
  wsa_ev_sock *s = (wsa_ev_sock *)t;
  (void)c;
  event_free(s->rd);
  event_free(s->wr);
  wsa_close_fd(s->fd);
  s->fd = -1;
  s->conn = NULL;
  s->owner->nsocks--;
  s->next_dead = s->owner->dead;
  s->owner->dead = s;
  return 0;
}

static inline void wsa_ev_config(ws_config *cfg) {
  cfg->send = wsa_ev_send;
  cfg->sendv = wsa_ev_sendv;
  cfg->want_write = wsa_ev_want_write;
  cfg->close = wsa_ev_close;
}

/* A ws_config.wake callback (cfg.user_data = the wsa_ev). Thread-safe once
 * evthread_use_pthreads() ran before the base was created. */
static inline int wsa_ev_wake(ws_server *srv, void *user_data) {
  wsa_ev *a = (wsa_ev *)user_data;
  (void)srv;
  event_active(a->wake, EV_READ, 0);
  return 0;
}

/* ---- loop side -------------------------------------------------------- */

static inline void wsa_ev_on_read(evutil_socket_t fd, short what, void *arg) {
  wsa_ev_sock *s = (wsa_ev_sock *)arg;
  wsa_ev *a = s->owner;
  char buf[WSA_EV_READ_BUF];
  ssize_t r;
  (void)what;
  ws_server_tick(a->srv, wsa_now_ms());
  if (s->conn == NULL) { /* that tick closed it (a deadline) */
    wsa_ev_done(a);
    return;
  }
  r = recv(fd, buf, sizeof(buf), 0);
  if (r > 0) {
    int rc = ws_conn_feed(s->conn, buf, (size_t)r);
    s->read_done = wsa_read_done(rc, s->conn); /* s outlives a close */
  } else if (r == 0 && s->read_done) {
    event_del(s->rd); /* the output drains; an EOF stays readable */
  } else if (r == 0 ||
             (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    ws_conn_abort(s->conn);
  }
  wsa_ev_done(a);
}

static inline void wsa_ev_on_write(evutil_socket_t fd, short what, void *arg) {
  wsa_ev_sock *s = (wsa_ev_sock *)arg;
  wsa_ev *a = s->owner;
  (void)fd, (void)what;
  ws_server_tick(a->srv, wsa_now_ms());
  if (s->conn) ws_conn_writable(s->conn); /* NULL: the tick closed it */
  wsa_ev_done(a);
}

static inline void wsa_ev_on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  wsa_ev_done((wsa_ev *)arg);
}

static inline void wsa_ev_on_wake(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  wsa_ev_done((wsa_ev *)arg); /* the tick delivers what was posted */
}

/* Hands an accepted non-blocking socket to the library. On failure the
 * socket is closed. Returns 0 or -1. */
static inline int wsa_ev_adopt(wsa_ev *a, int fd) {
  wsa_ev_sock *s = (wsa_ev_sock *)calloc(1, sizeof(*s));
  if (s == NULL) goto fail;
  wsa_nodelay(fd);
  s->owner = a;
  s->fd = fd;
  s->rd = event_new(a->base, fd, EV_READ | EV_PERSIST, wsa_ev_on_read, s);
  s->wr = event_new(a->base, fd, EV_WRITE | EV_PERSIST, wsa_ev_on_write, s);
  if (s->rd == NULL || s->wr == NULL || event_add(s->rd, NULL) != 0)
    goto fail;
  if (ws_conn_new(a->srv, s, &s->conn) != WS_OK) goto fail;
  a->nsocks++;
  return 0;
fail:
  if (s) {
    if (s->rd) event_free(s->rd);
    if (s->wr) event_free(s->wr);
    free(s);
  }
  close(fd);
  return -1;
}

/* Accepts until the backlog is empty. Out of descriptors with no spare to
 * shed the pending connection (WSA_ACCEPT_NOFD: this thread has no spare,
 * or another thread took the slot it freed), the listener would stay
 * readable and the loop spin: it is unwatched for WSA_EV_ACCEPT_PAUSE_MS. */
static inline void wsa_ev_on_accept(evutil_socket_t lfd, short what,
                                    void *arg) {
  wsa_ev *a = (wsa_ev *)arg;
  (void)what;
  ws_server_tick(a->srv, wsa_now_ms());
  for (;;) {
    int fd = wsa_accept(lfd);
    if (fd == WSA_ACCEPT_NOFD) {
      struct timeval tv;
      tv.tv_sec = WSA_EV_ACCEPT_PAUSE_MS / 1000;
      tv.tv_usec = WSA_EV_ACCEPT_PAUSE_MS % 1000 * 1000;
      if (evtimer_add(a->accept_pause, &tv) == 0) event_del(a->accept_ev);
    }
    if (fd < 0) break;
    wsa_ev_adopt(a, fd);
  }
  wsa_ev_done(a);
}

static inline void wsa_ev_on_accept_pause(evutil_socket_t fd, short what,
                                          void *arg) {
  wsa_ev *a = (wsa_ev *)arg;
  (void)fd, (void)what;
  if (a->accept_ev) event_add(a->accept_ev, NULL);
}

/* The bound port of the listener, or -1. */
static inline int wsa_ev_port(const wsa_ev *a) {
  return wsa_local_port(a->listen_fd);
}

static inline void wsa_ev_destroy(wsa_ev *a);

/* What failed in wsa_ev_init: nothing of it stays allocated or open. */
static inline int wsa_ev_init_failed(wsa_ev *a, int err) {
  wsa_ev_destroy(a);
  errno = err;
  return -1;
}

/* Listens on host:port (host NULL: no listener, use wsa_ev_adopt) and
 * creates the adapter's events on base. Returns 0 or -1 (errno), having
 * freed what it made (wsa_ev_destroy may still be called). */
static inline int wsa_ev_init(wsa_ev *a, struct event_base *base,
                              ws_server *srv, const char *host, int port) {
  memset(a, 0, sizeof(*a));
  a->srv = srv;
  a->base = base;
  a->listen_fd = -1;
  a->timer = evtimer_new(base, wsa_ev_on_timer, a);
  a->wake = event_new(base, -1, 0, wsa_ev_on_wake, a);
  if (a->timer == NULL || a->wake == NULL) return wsa_ev_init_failed(a, ENOMEM);
  if (host == NULL) return 0;
  if ((a->listen_fd = wsa_listen(host, port, 0)) < 0)
    return wsa_ev_init_failed(a, errno);
  a->accept_ev = event_new(base, a->listen_fd, EV_READ | EV_PERSIST,
                           wsa_ev_on_accept, a);
  a->accept_pause = evtimer_new(base, wsa_ev_on_accept_pause, a);
  if (a->accept_ev == NULL || a->accept_pause == NULL ||
      event_add(a->accept_ev, NULL) != 0)
    return wsa_ev_init_failed(a, ENOMEM);
  wsa_ev_rearm(a);
  return 0;
}

/* Stops accepting and closes the listener. Accepted sockets go on. */
static inline void wsa_ev_stop_listening(wsa_ev *a) {
  if (a->accept_ev) event_free(a->accept_ev);
  if (a->accept_pause) event_free(a->accept_pause);
  a->accept_ev = a->accept_pause = NULL;
  if (a->listen_fd >= 0) close(a->listen_fd);
  a->listen_fd = -1;
}

/* Frees the adapter's events; call after ws_server_free (which closed
 * every connection through wsa_ev_close). A second call does nothing. */
static inline void wsa_ev_destroy(wsa_ev *a) {
  wsa_ev_reap(a);
  wsa_ev_stop_listening(a);
  if (a->timer) event_free(a->timer);
  if (a->wake) event_free(a->wake);
  a->timer = a->wake = NULL;
}

#endif /* WSA_LIBEVENT_H */
