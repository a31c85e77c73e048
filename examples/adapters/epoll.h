/*
 * libwsmux adapter for an epoll(7) loop (Linux). Header-only glue in the
 * style of adapters/poll.h: a listening socket, one transport struct per
 * accepted socket, the four transport callbacks, an eventfd to wake the
 * loop from other threads (ws_post), and room for the host's own fds
 * (stdin, a signalfd, a timerfd...). Socket plumbing (send, listen, the
 * clock) is in sockio.h. The core never sees any of this.
 *
 *   static wsa_epoll p;
 *   ws_config cfg; ws_config_init(&cfg);
 *   wsa_epoll_config(&cfg);                // send, sendv, want_write, close
 *   cfg.wake = wsa_epoll_wake;             // optional, for ws_post
 *   cfg.user_data = &p;                    //   (wsa_epoll_wake needs this)
 *   ... set handlers ...
 *   ws_server_new(&cfg, &srv);
 *   wsa_epoll_init(&p, srv, "127.0.0.1", 8081);
 *   while (running) wsa_epoll_run_once(&p);
 *   ws_server_free(srv);                   // closes what is left...
 *   wsa_epoll_destroy(&p);                 // ...then free the adapter
 *
 * Free the server after the run call returns, not from inside a callback
 * (a handler, on_open, on_close): the library allows it, but this adapter
 * still uses srv in the same pass. From a callback, call
 * ws_server_shutdown or set the flag the loop tests.
 *
 * A graceful stop:
 *   wsa_epoll_stop_listening(&p);
 *   if (ws_server_shutdown(srv, 5000) == WS_OK)
 *     while (!drained) wsa_epoll_run_once(&p);  // on_shutdown sets drained
 * A run returns once on_shutdown has fired, also from the tick it starts
 * with (the drain's deadline passed between two runs): that tick answers
 * 0, so the wait after it ends at once.
 *
 * Several loops, one per thread, each with its own server: give each one
 * its own SO_REUSEPORT socket from wsa_listen(host, port, 1) and call
 * wsa_epoll_init_fd(&p, srv, fd). The adapter does not own such a socket
 * (wsa_epoll_destroy leaves it open); it owns the one wsa_epoll_init makes.
 * A wsa_epoll is driven by one thread; only wsa_epoll_notify (and so
 * wsa_epoll_wake) may be called from others.
 *
 * Readiness is level-triggered: each wake reads at most one buffer per
 * socket, so one busy client cannot starve the others. EPOLLOUT is armed
 * only while the library has output the socket would not take
 * (want_write), so an idle connection costs no wake-ups.
 *
 * The library's next deadline is kept on a timerfd, re-armed only when it
 * moves (rarely: the library's timers are lazy), and epoll_wait blocks
 * without a timeout. A finite timeout would arm a kernel timer on every
 * wait, which costs measurably per round trip (BENCHMARKS.md). A host that
 * must see signals promptly reads them from a signalfd watched by the same
 * loop (wsa_epoll_watch) rather than capping the wait: see
 * examples/pingpong_epoll.c. (Letting them in only inside epoll_pwait is
 * not enough: the kernel delivers a pending signal there only when no fd
 * is ready, so a loop kept busy by clients would never see it.)
 *
 * Sockets the library closes while a batch of events is being handled are
 * unregistered and closed at once, but their struct is freed only after
 * the batch: a later event of the same batch may still point to it.
 */
#ifndef WSA_EPOLL_H
#define WSA_EPOLL_H

#include "sockio.h" /* first: it checks _GNU_SOURCE */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "wsmux.h"

#ifndef WSA_EPOLL_BATCH
#define WSA_EPOLL_BATCH 256 /* events taken per epoll_wait */
#endif
#ifndef WSA_EPOLL_READ_BUF
#define WSA_EPOLL_READ_BUF 16384 /* bytes read per socket per wake */
#endif
#ifndef WSA_EPOLL_ACCEPT_PAUSE_MS
#define WSA_EPOLL_ACCEPT_PAUSE_MS 100 /* out of descriptors: listener off */
#endif

typedef struct wsa_epoll wsa_epoll;

/* What an epoll_event's data.ptr points to: every registered object starts
 * with this header. */
enum wsa_epoll_kind {
  WSA_EPOLL_LISTENER = 1,
  WSA_EPOLL_WAKEFD = 2,
  WSA_EPOLL_CONN = 3,
  WSA_EPOLL_WATCH = 4,
  WSA_EPOLL_TIMERFD = 5
};

typedef struct wsa_epoll_item {
  int kind; /* enum wsa_epoll_kind */
  int fd;
} wsa_epoll_item;

/* One accepted socket; the transport pointer handed to libwsmux. */
typedef struct wsa_epoll_sock {
  wsa_epoll_item item; /* first: data.ptr points here */
  wsa_epoll *owner;
  ws_conn *conn;       /* NULL once the library closed it */
  uint32_t events;     /* current epoll interest */
  int read_done;       /* the library needs no more input (wsa_read_done) */
  struct wsa_epoll_sock *next_dead;
} wsa_epoll_sock;

/* A host fd watched by the same loop (wsa_epoll_watch). The struct is the
 * caller's and must outlive the registration. */
typedef struct wsa_epoll_watcher wsa_epoll_watcher;
struct wsa_epoll_watcher {
  wsa_epoll_item item;
  void (*cb)(wsa_epoll *p, wsa_epoll_watcher *w, uint32_t events);
  void *user_data;
};

struct wsa_epoll {
  ws_server *srv;
  int epfd;
  wsa_epoll_item listener; /* fd -1: none */
  int own_listener;        /* close listener.fd in destroy */
  wsa_epoll_item wake;     /* eventfd, for wsa_epoll_notify */
  wsa_epoll_item timer;    /* timerfd at the library's next deadline */
  uint64_t timer_at;       /* its wsa_now_ms() deadline; 0: disarmed */
  uint64_t accept_resume;  /* listener paused until then (0: watched) */
  size_t nsocks;           /* live accepted sockets */
  size_t max_socks;        /* accept cap (0: none); refuse with close() */
  wsa_epoll_sock *dead;    /* closed in this batch, freed after it */
};

/* ---- transport callbacks ---------------------------------------------- */

static inline ssize_t wsa_epoll_send(ws_conn *c, void *t, const void *d,
                                     size_t n) {
  (void)c;
  return wsa_fd_send(((wsa_epoll_sock *)t)->item.fd, d, n);
}

static inline ssize_t wsa_epoll_sendv(ws_conn *c, void *t,
                                      const ws_iovec *iov, int n) {
  (void)c;
  return wsa_fd_sendv(((wsa_epoll_sock *)t)->item.fd, iov, n);
}

/* Arms EPOLLOUT while the library has output the kernel would not take. */
static inline int wsa_epoll_want_write(ws_conn *c, void *t, int want) {
  wsa_epoll_sock *s = (wsa_epoll_sock *)t;
  struct epoll_event ev;
  /* Not after the read side is done: an EOF stays readable. */
  uint32_t in = s->read_done ? 0 : (uint32_t)EPOLLIN;
  uint32_t events = want ? in | EPOLLOUT : in;
  if (events == s->events) return 0;
  memset(&ev, 0, sizeof(ev));
  ev.events = events;
  ev.data.ptr = &s->item;
  if (epoll_ctl(s->owner->epfd, EPOLL_CTL_MOD, s->item.fd, &ev) == 0)
    s->events = events;
  else if (want) /* never told when writable: its output would only stall */
    ws_conn_abort(c);
  return 0;
}

/* Unregisters and closes at once (the fd number may be reused by the next
 * accept); the struct waits on the dead list until the batch is done. */
static inline int wsa_epoll_close(ws_conn *c, void *t) {
  wsa_epoll_sock *s = (wsa_epoll_sock *)t;
  wsa_epoll *p = s->owner;
  (void)c;
  epoll_ctl(p->epfd, EPOLL_CTL_DEL, s->item.fd, NULL);
  wsa_close_fd(s->item.fd);
  s->item.fd = -1;
  s->conn = NULL;
  s->next_dead = p->dead;
  p->dead = s;
  p->nsocks--;
  return 0;
}

static inline void wsa_epoll_config(ws_config *cfg) {
  cfg->send = wsa_epoll_send;
  cfg->sendv = wsa_epoll_sendv;
  cfg->want_write = wsa_epoll_want_write;
  cfg->close = wsa_epoll_close;
}

/* ---- waking the loop from another thread ------------------------------ */

/* Thread-safe: makes the loop's epoll_wait return. */
static inline int wsa_epoll_notify(wsa_epoll *p) {
  uint64_t one = 1;
  ssize_t w;
  do
    w = write(p->wake.fd, &one, sizeof(one));
  while (w < 0 && errno == EINTR);
  return w == (ssize_t)sizeof(one) || errno == EAGAIN ? 0 : -1;
}

/* A ws_config.wake callback: cfg.wake = wsa_epoll_wake with cfg.user_data
 * = the wsa_epoll. A host whose user_data is something else calls
 * wsa_epoll_notify from its own wake callback instead. The loop ticks on
 * every wake, and the tick delivers what was posted. */
static inline int wsa_epoll_wake(ws_server *s, void *user_data) {
  (void)s;
  return wsa_epoll_notify((wsa_epoll *)user_data);
}

/* ---- setup ------------------------------------------------------------ */

/* Sets up the loop around an existing non-blocking listening socket (not
 * owned: destroy leaves it open), or none (listen_fd -1: the host hands
 * accepted sockets to wsa_epoll_adopt). Creates the epoll fd and the wake
 * eventfd. Returns 0 or -1 (errno). */
static inline int wsa_epoll_init_fd(wsa_epoll *p, ws_server *srv,
                                    int listen_fd) {
  struct epoll_event ev;
  memset(p, 0, sizeof(*p));
  p->srv = srv;
  p->listener.kind = WSA_EPOLL_LISTENER;
  p->listener.fd = listen_fd;
  p->wake.kind = WSA_EPOLL_WAKEFD;
  p->wake.fd = -1;
  p->timer.kind = WSA_EPOLL_TIMERFD;
  p->timer.fd = -1;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) return -1;
  p->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  p->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (p->wake.fd < 0 || p->timer.fd < 0) goto fail;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.ptr = &p->wake;
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wake.fd, &ev) < 0) goto fail;
  ev.data.ptr = &p->timer;
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->timer.fd, &ev) < 0) goto fail;
  if (listen_fd >= 0) {
    ev.data.ptr = &p->listener;
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) goto fail;
  }
  return 0;
fail:
  {
    int e = errno;
    if (p->wake.fd >= 0) close(p->wake.fd);
    if (p->timer.fd >= 0) close(p->timer.fd);
    close(p->epfd);
    p->epfd = p->wake.fd = p->timer.fd = -1;
    errno = e;
  }
  return -1;
}

/* Listens on host:port (owned: destroy closes it) and sets up the loop.
 * Returns 0 or -1 (errno). */
static inline int wsa_epoll_init(wsa_epoll *p, ws_server *srv,
                                 const char *host, int port) {
  int fd = wsa_listen(host, port, 0);
  if (fd < 0) return -1;
  if (wsa_epoll_init_fd(p, srv, fd) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  p->own_listener = 1;
  return 0;
}

/* Stops accepting: unregisters the listener and closes it if owned. Pending
 * connections in the backlog are reset. Already accepted ones go on. */
static inline void wsa_epoll_stop_listening(wsa_epoll *p) {
  if (p->listener.fd < 0) return;
  epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->listener.fd, NULL);
  if (p->own_listener) close(p->listener.fd);
  p->listener.fd = -1;
}

/* Watches a host fd (level-triggered, events e.g. EPOLLIN): cb runs on the
 * loop thread when it is ready. w is the caller's, kept until unwatched.
 * Returns 0 or -1 (errno). */
static inline int wsa_epoll_watch(wsa_epoll *p, wsa_epoll_watcher *w, int fd,
                                  uint32_t events,
                                  void (*cb)(wsa_epoll *, wsa_epoll_watcher *,
                                             uint32_t),
                                  void *user_data) {
  struct epoll_event ev;
  w->item.kind = WSA_EPOLL_WATCH;
  w->item.fd = fd;
  w->cb = cb;
  w->user_data = user_data;
  memset(&ev, 0, sizeof(ev));
  ev.events = events;
  ev.data.ptr = &w->item;
  return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Stops watching (the fd stays open). Safe from any callback, the
 * watcher's own included: the rest of the batch skips it, as long as w
 * itself stays valid until the current wsa_epoll_run_once returns. */
static inline void wsa_epoll_unwatch(wsa_epoll *p, wsa_epoll_watcher *w) {
  if (w->item.fd < 0) return;
  epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->item.fd, NULL);
  w->item.fd = -1;
}

/* Hands an accepted non-blocking socket to the library. On failure the
 * socket is closed (no callback fires for it). Returns 0 or -1. */
static inline int wsa_epoll_adopt(wsa_epoll *p, int fd) {
  struct epoll_event ev;
  wsa_epoll_sock *s;
  if ((p->max_socks && p->nsocks >= p->max_socks) ||
      (s = (wsa_epoll_sock *)calloc(1, sizeof(*s))) == NULL) {
    close(fd);
    return -1;
  }
  wsa_nodelay(fd);
  s->item.kind = WSA_EPOLL_CONN;
  s->item.fd = fd;
  s->owner = p;
  s->events = EPOLLIN;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.ptr = &s->item;
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    close(fd);
    free(s);
    return -1;
  }
  if (ws_conn_new(p->srv, s, &s->conn) != WS_OK) {
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(s);
    return -1;
  }
  p->nsocks++;
  return 0;
}

/* ---- the loop --------------------------------------------------------- */

/* Watches the listener (EPOLLIN) or stops (0) without unregistering. */
static inline void wsa_epoll_listen_events(wsa_epoll *p, uint32_t events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = events;
  ev.data.ptr = &p->listener;
  epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->listener.fd, &ev);
}

/* Accepts until the backlog is empty. With SO_REUSEPORT each loop has its
 * own queue; EAGAIN just means another wake took it. Out of descriptors
 * with no spare to shed the pending connection (wsa_accept), the listener
 * would stay readable: it is left alone for WSA_EPOLL_ACCEPT_PAUSE_MS (the
 * timerfd wakes the loop to watch it again). */
static inline void wsa_epoll_accept(wsa_epoll *p) {
  for (;;) {
    int fd = wsa_accept(p->listener.fd);
    if (fd == WSA_ACCEPT_NOFD) {
      wsa_epoll_listen_events(p, 0);
      p->accept_resume = wsa_now_ms() + WSA_EPOLL_ACCEPT_PAUSE_MS;
    }
    if (fd < 0) return;
    wsa_epoll_adopt(p, fd);
  }
}

/* The pause is over: watch the listener again. */
static inline void wsa_epoll_accept_resume(wsa_epoll *p, uint64_t now) {
  if (p->accept_resume == 0 || now < p->accept_resume) return;
  p->accept_resume = 0;
  if (p->listener.fd >= 0) wsa_epoll_listen_events(p, EPOLLIN);
}

/* Reads one buffer and feeds it. A hard error aborts the connection (no
 * close frame; on_close gets 1006), and so does an EOF, unless the close
 * handshake is done: then reading stops and the output drains (see
 * wsa_read_done in sockio.h). */
static inline void wsa_epoll_read(wsa_epoll_sock *s) {
  char buf[WSA_EPOLL_READ_BUF];
  ssize_t r = recv(s->item.fd, buf, sizeof(buf), 0);
  if (r > 0) {
    int rc = ws_conn_feed(s->conn, buf, (size_t)r);
    s->read_done = wsa_read_done(rc, s->conn); /* s outlives a close */
  } else if (r == 0 && s->read_done) {
    /* Drops EPOLLIN; write interest as the library has it (armed: only
     * output remains). */
    wsa_epoll_want_write(s->conn, s, ws_conn_want_write(s->conn));
  } else if (r == 0 ||
           (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
    ws_conn_abort(s->conn);
}

static inline void wsa_epoll_free_dead(wsa_epoll *p) {
  while (p->dead) {
    wsa_epoll_sock *s = p->dead;
    p->dead = s->next_dead;
    free(s);
  }
}

/* Milliseconds until `deadline` (a wsa_now_ms value), for the cap of
 * wsa_epoll_run_once_for: 0 when due, INT32_MAX-bounded. */
static inline int wsa_epoll_ms_until(uint64_t deadline) {
  uint64_t now = wsa_now_ms();
  if (deadline <= now) return 0;
  return deadline - now > 0x7fffffff ? 0x7fffffff : (int)(deadline - now);
}

/* Keeps the timerfd at `at` (a wsa_now_ms value; 0: none). A syscall only
 * when the deadline moved. */
static inline void wsa_epoll_arm(wsa_epoll *p, uint64_t at) {
  struct itimerspec its;
  if (at == p->timer_at) return;
  memset(&its, 0, sizeof(its)); /* it_value 0: disarm */
  if (at) {
    its.it_value.tv_sec = (time_t)(at / 1000u);
    its.it_value.tv_nsec = (long)(at % 1000u) * 1000000L;
  }
  if (timerfd_settime(p->timer.fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
    p->timer_at = at;
}

/* One iteration: tick, wait for an event (the timerfd is one: the
 * library's next deadline), at most timeout_cap_ms (-1: no cap), tick
 * again, then handle the events. Returns the number of events handled, or
 * -1 on an epoll_wait error other than EINTR (a signal returns 0). */
static inline int wsa_epoll_run_once_for(wsa_epoll *p, int timeout_cap_ms) {
  struct epoll_event evs[WSA_EPOLL_BATCH];
  uint64_t now = wsa_now_ms();
  int next = ws_server_tick(p->srv, now);
  uint64_t at;
  int n, i;
  /* A deadline due now (0) is armed 1 ms out: an absolute 0 disarms. */
  at = next < 0 ? 0 : now + (uint64_t)(next > 0 ? next : 1);
  if (p->accept_resume && (at == 0 || p->accept_resume < at))
    at = p->accept_resume;
  wsa_epoll_arm(p, at);
  n = epoll_wait(p->epfd, evs, WSA_EPOLL_BATCH, timeout_cap_ms);
  if (n < 0 && errno != EINTR) return -1;
  /* Deadlines count from the last tick; posted messages go out here. An
   * interrupted wait ticks too: after a stop (SIGSTOP, a debugger) it
   * fails with EINTR however late it is, and a deadline that passed
   * meanwhile must run in this run: in the next one's first tick, a
   * drain's on_shutdown would leave that run's wait nothing to end it. */
  now = wsa_now_ms();
  ws_server_tick(p->srv, now);
  wsa_epoll_accept_resume(p, now);
  if (n < 0) return 0;
  for (i = 0; i < n; i++) {
    wsa_epoll_item *it = (wsa_epoll_item *)evs[i].data.ptr;
    uint32_t ev = evs[i].events;
    switch (it->kind) {
    case WSA_EPOLL_CONN: {
      wsa_epoll_sock *s = (wsa_epoll_sock *)it;
      if (s->conn == NULL) break; /* closed earlier in this batch */
      if ((ev & EPOLLOUT) && ws_conn_writable(s->conn) != WS_OK) break;
      if (s->conn && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) wsa_epoll_read(s);
      break;
    }
    case WSA_EPOLL_LISTENER:
      if (p->listener.fd >= 0) wsa_epoll_accept(p);
      break;
    case WSA_EPOLL_WAKEFD:
    case WSA_EPOLL_TIMERFD: {
      /* Only resets the counter: the tick above delivered the posts and
       * ran the deadlines. A post landing after that tick finds the post
       * queue non-empty or wakes us again, and the next iteration ticks
       * before it waits. */
      uint64_t v;
      ssize_t r = read(it->fd, &v, sizeof(v));
      (void)r;
      if (it->kind == WSA_EPOLL_TIMERFD) p->timer_at = 0; /* it fired */
      break;
    }
    case WSA_EPOLL_WATCH: {
      wsa_epoll_watcher *w = (wsa_epoll_watcher *)it;
      if (w->item.fd >= 0) w->cb(p, w, ev);
      break;
    }
    default:
      break;
    }
  }
  wsa_epoll_free_dead(p);
  return n;
}

static inline int wsa_epoll_run_once(wsa_epoll *p) {
  return wsa_epoll_run_once_for(p, -1);
}

/* Releases the adapter. Call after ws_server_free (which closes every
 * connection through wsa_epoll_close). Closes the epoll fd, the eventfd
 * and an owned listener. */
static inline void wsa_epoll_destroy(wsa_epoll *p) {
  wsa_epoll_stop_listening(p);
  wsa_epoll_free_dead(p);
  if (p->wake.fd >= 0) close(p->wake.fd);
  if (p->timer.fd >= 0) close(p->timer.fd);
  if (p->epfd >= 0) close(p->epfd);
  p->wake.fd = p->timer.fd = p->epfd = -1;
}

#endif /* WSA_EPOLL_H */
