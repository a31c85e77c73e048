/*
 * libwsmux adapter for a poll(2) loop. Header-only glue: a listening socket,
 * a table of pollfds, and the four transport callbacks (socket plumbing from
 * sockio.h). The core never sees any of this; copy it, or include it, in
 * your own host.
 *
 *   wsa_poll p;
 *   ws_config cfg; ws_config_init(&cfg);
 *   wsa_poll_config(&cfg);                 // send, want_write, close
 *   ... set handlers ...
 *   ws_server_new(&cfg, &srv);
 *   wsa_poll_init(&p, srv, "127.0.0.1", 8081);
 *   while (running) wsa_poll_run_once(&p);
 *   wsa_poll_destroy(&p);
 *
 * Set cfg.user_data to the wsa_poll (wsa_poll_config does not touch it; the
 * callbacks find the adapter through the transport pointer instead).
 */
#ifndef WSA_POLL_H
#define WSA_POLL_H

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockio.h"
#include "wsmux.h"

#define WSA_POLL_MAX 4096

typedef struct wsa_poll wsa_poll;

/* One accepted socket; the transport pointer handed to libwsmux. */
typedef struct wsa_poll_sock {
  wsa_poll *owner;
  int fd;
  int idx; /* position in owner->pfd */
  ws_conn *conn;
} wsa_poll_sock;

struct wsa_poll {
  ws_server *srv;
  int listen_fd;
  nfds_t n; /* pfd[0] is the listener */
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
  wsa_poll_sock *s = t;
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
  wsa_poll_sock *s = t;
  wsa_poll *p = s->owner;
  nfds_t last = p->n - 1;
  (void)c;
  if ((nfds_t)s->idx != last) {
    p->pfd[s->idx] = p->pfd[last];
    p->socks[s->idx] = p->socks[last];
    p->socks[s->idx]->idx = s->idx;
  }
  p->n--;
  close(s->fd);
  free(s);
  return 0;
}

static inline void wsa_poll_config(ws_config *cfg) {
  cfg->send = wsa_poll_send;
  cfg->sendv = wsa_poll_sendv;
  cfg->want_write = wsa_poll_want_write;
  cfg->close = wsa_poll_close;
}

/* Listens on host:port (IPv4 or IPv6 literal). Returns 0 or -1 (errno). */
static inline int wsa_poll_init(wsa_poll *p, ws_server *srv, const char *host,
                                int port) {
  memset(p, 0, sizeof(*p));
  p->srv = srv;
  p->listen_fd = wsa_listen(host, port, 0);
  if (p->listen_fd < 0) return -1;
  p->pfd[0].fd = p->listen_fd;
  p->pfd[0].events = POLLIN;
  p->n = 1;
  return 0;
}

static inline void wsa_poll_accept(wsa_poll *p) {
  for (;;) {
    int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    wsa_poll_sock *s;
    if (fd < 0) return;
    if (p->n >= WSA_POLL_MAX || (s = calloc(1, sizeof(*s))) == NULL) {
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

/* Reads what is there and feeds it; EOF or error aborts the connection. */
static inline void wsa_poll_read(wsa_poll_sock *s) {
  char buf[16384];
  ssize_t r = recv(s->fd, buf, sizeof(buf), 0);
  if (r > 0)
    ws_conn_feed(s->conn, buf, (size_t)r);
  else if (r == 0 || (errno != EAGAIN && errno != EINTR))
    ws_conn_abort(s->conn);
}

/* One loop iteration: wait until the next deadline or an event, then tick,
 * accept, read and write. timeout_cap_ms bounds the wait (-1: none). */
static inline int wsa_poll_run_once_for(wsa_poll *p, int timeout_cap_ms) {
  int timeout = ws_server_tick(p->srv, wsa_now_ms());
  int r;
  nfds_t i;
  if (timeout_cap_ms >= 0 && (timeout < 0 || timeout > timeout_cap_ms))
    timeout = timeout_cap_ms;
  r = poll(p->pfd, p->n, timeout);
  if (r < 0) return errno == EINTR ? 0 : -1;
  ws_server_tick(p->srv, wsa_now_ms());
  for (i = p->n; i-- > 1;) {
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
  if (p->pfd[0].revents & POLLIN) wsa_poll_accept(p);
  p->pfd[0].revents = 0;
  return 0;
}

static inline int wsa_poll_run_once(wsa_poll *p) {
  return wsa_poll_run_once_for(p, 1000);
}

static inline void wsa_poll_destroy(wsa_poll *p) {
  if (p->listen_fd >= 0) close(p->listen_fd);
  p->listen_fd = -1;
}

#endif /* WSA_POLL_H */
