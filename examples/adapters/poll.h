/*
 * libwsmux adapter for a poll(2) loop. Header-only glue: a listening socket,
 * a table of pollfds, and the four transport callbacks. The core never sees
 * any of this; copy it, or include it, in your own host.
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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

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

static inline uint64_t wsa_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline ssize_t wsa_poll_send(ws_conn *c, void *t, const void *d,
                                    size_t n) {
  wsa_poll_sock *s = t;
  ssize_t w = send(s->fd, d, n, MSG_NOSIGNAL);
  (void)c;
  if (w >= 0) return w;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

static inline ssize_t wsa_poll_sendv(ws_conn *c, void *t, const ws_iovec *iov,
                                     int n) {
  wsa_poll_sock *s = t;
  struct iovec v[64];
  struct msghdr mh;
  ssize_t w;
  int i;
  (void)c;
  if (n > 64) n = 64;
  for (i = 0; i < n; i++) {
    v[i].iov_base = (void *)iov[i].base;
    v[i].iov_len = iov[i].len;
  }
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = v;
  mh.msg_iovlen = (size_t)n;
  w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
  if (w >= 0) return w;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
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
static inline int wsa_listen(const char *host, int port) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int one = 1, fd;
  memset(&ss, 0, sizeof(ss));
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return -1;
    sl = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return -1;
    sl = sizeof(*a);
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static inline int wsa_poll_init(wsa_poll *p, ws_server *srv, const char *host,
                                int port) {
  memset(p, 0, sizeof(*p));
  p->srv = srv;
  p->listen_fd = wsa_listen(host, port);
  if (p->listen_fd < 0) return -1;
  p->pfd[0].fd = p->listen_fd;
  p->pfd[0].events = POLLIN;
  p->n = 1;
  return 0;
}

static inline void wsa_poll_accept(wsa_poll *p) {
  for (;;) {
    int one = 1, fd = accept4(p->listen_fd, NULL, NULL,
                              SOCK_NONBLOCK | SOCK_CLOEXEC);
    wsa_poll_sock *s;
    if (fd < 0) return;
    if (p->n >= WSA_POLL_MAX || (s = calloc(1, sizeof(*s))) == NULL) {
      close(fd);
      continue;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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
