/*
 * Plain-socket helpers shared by the fd-based adapters (poll.h, epoll.h,
 * libevent.h; libuv.h drains with it) and hosts (tls.c, echo_poll.c,
 * mhd.c): the monotonic clock the library's tick wants, non-blocking send
 * and sendmsg answering the way libwsmux's send callbacks must, a
 * listening socket on an IPv4 or IPv6 literal, an accept that does not
 * spin when out of descriptors, and a close that does not reset the
 * connection. Header-only; the core never sees any of this.
 *
 *   ssize_t my_send(ws_conn *c, void *t, const void *d, size_t n) {
 *     return wsa_fd_send(((my_sock *)t)->fd, d, n);
 *   }
 */
#ifndef WSA_SOCKIO_H
#define WSA_SOCKIO_H

/* accept4, pipe2, SO_REUSEPORT, O_CLOEXEC: the adapters are Linux code. The
 * macro must come before the first system header, so it cannot be set
 * here; say so instead of failing on the first undeclared name. */
#ifndef _GNU_SOURCE
#error "libwsmux's adapters need _GNU_SOURCE: compile with -D_GNU_SOURCE"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "wsmux.h"

/* The adapters compile as C11 and as C++11 (a C++ server includes them as
 * they are); thread-local storage is the one keyword the two spell apart. */
#ifdef __cplusplus
#define WSA_THREAD_LOCAL thread_local
#else
#define WSA_THREAD_LOCAL _Thread_local
#endif

#ifndef WSA_LISTEN_BACKLOG
#define WSA_LISTEN_BACKLOG 1024
#endif
#define WSA_SENDV_MAX 64 /* buffers per sendmsg; more: a short write */

/* Monotonic milliseconds, for ws_server_tick. */
static inline uint64_t wsa_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A send(2) or sendmsg(2) result as a libwsmux send callback answers it:
 * bytes written, 0 for "would block" (or a signal), -1 for a failed
 * socket. */
static inline ssize_t wsa_send_result(ssize_t w) {
  if (w >= 0) return w;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

/* Writes at most n bytes to a non-blocking socket, without SIGPIPE. */
static inline ssize_t wsa_fd_send(int fd, const void *d, size_t n) {
  return wsa_send_result(send(fd, d, n, MSG_NOSIGNAL));
}

/* The same over the library's buffers, in one sendmsg(2). */
static inline ssize_t wsa_fd_sendv(int fd, const ws_iovec *iov, int n) {
  struct iovec v[WSA_SENDV_MAX];
  struct msghdr mh;
  int i;
  if (n > WSA_SENDV_MAX) n = WSA_SENDV_MAX; /* the library sends the rest */
  for (i = 0; i < n; i++) {
    v[i].iov_base = (void *)iov[i].base;
    v[i].iov_len = iov[i].len;
  }
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = v;
  mh.msg_iovlen = (size_t)n;
  return wsa_send_result(sendmsg(fd, &mh, MSG_NOSIGNAL));
}

#ifndef WSA_CLOSE_DRAIN_MAX
#define WSA_CLOSE_DRAIN_MAX (256 * 1024) /* bytes read and dropped at close */
#endif

/* Reads and drops the input nobody read (up to WSA_CLOSE_DRAIN_MAX,
 * without blocking) from a connection's socket about to be closed.
 * close(2) on a socket with unread input sends a reset at once and throws
 * away what is still queued to send, such as the close frame that just
 * went out: a client failed mid-message (1009 on a large message, say)
 * would see its connection reset instead. Input arriving after the close
 * still draws a reset, by then behind the close frame. */
static inline void wsa_drain_fd(int fd) {
  char buf[16384];
  size_t dropped = 0;
  ssize_t r;
  while (dropped < WSA_CLOSE_DRAIN_MAX &&
         (r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
    dropped += (size_t)r;
}

/* After ws_conn_feed: whether the connection needs no more input. It
 * answered WS_ECLOSED and is still open (conn, which the adapters clear in
 * their close callback, is not NULL): the close handshake is done, or a
 * failure's close frame is queued, and only output remains. A peer's EOF
 * (a client that half-closes after its close frame) must then only end
 * reading: aborting, as an EOF otherwise does (on_close 1006), would drop
 * the replies still queued and the close frame. The library closes once
 * they are out, within close_timeout_ms (without one: the idle and write
 * deadlines; with all three 0, nothing bounds a peer that never reads). */
static inline int wsa_read_done(int feed_rc, const ws_conn *conn) {
  return feed_rc == WS_ECLOSED && conn != NULL;
}

/* Closes a connection's socket after the library's close callback. */
static inline void wsa_close_fd(int fd) {
  wsa_drain_fd(fd);
  close(fd);
}

/* Small frames go out at once: an accepted socket gets TCP_NODELAY. */
static inline void wsa_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* This thread's spare descriptor for wsa_accept (-1: none yet). Taken by
 * wsa_listen on the thread that calls it: a loop run on another thread
 * calls this once there, before descriptors can run out. It is never
 * closed, not even when the thread ends: one descriptor for each thread
 * that ever listened or accepted. */
static inline int *wsa_spare(void) {
  static WSA_THREAD_LOCAL int spare = -1;
  if (spare < 0) spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return &spare;
}

/* A non-blocking listening socket on host:port (IPv4 or IPv6 literal; port
 * 0 picks a free one, see wsa_local_port). reuseport sets SO_REUSEPORT so
 * several sockets (one per thread) share the port and the kernel spreads
 * connections among them. Also takes this thread's spare for wsa_accept
 * now, while descriptors are surely free (taken at the first accept, a
 * process already at its limit would have none). Returns the fd, or -1
 * (errno; EINVAL for a host that is not an address literal). */
static inline int wsa_listen(const char *host, int port, int reuseport) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int one = 1, fd;
  (void)wsa_spare();
  memset(&ss, 0, sizeof(ss));
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
      return errno = EINVAL, -1;
    sl = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return errno = EINVAL, -1;
    sl = sizeof(*a);
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if ((reuseport &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
      bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
      listen(fd, WSA_LISTEN_BACKLOG) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

#define WSA_ACCEPT_NOFD (-2)

/* accept4 of one pending connection, non-blocking and close-on-exec.
 * Returns its fd, or -1 when the backlog is empty (or on an error the
 * caller cannot fix): stop accepting until the listener is readable again.
 *
 * Out of descriptors (EMFILE, ENFILE), a level-triggered listener would
 * stay readable and wake the loop at once, forever (100% CPU, with a
 * remote client choosing when). So each thread keeps one spare descriptor:
 * it is closed to accept the pending connection, which is closed at once
 * (the client sees its connection end instead of waiting in the backlog),
 * and reopened (wsa_listen takes it first, while descriptors are free).
 * Another thread of the process may take the freed slot first (one loop
 * per thread, SO_REUSEPORT), or the accepting thread never took a spare
 * (its listener was made on another thread): then WSA_ACCEPT_NOFD says the
 * pending connection could not be shed, and the caller stops watching the
 * listener for a while (wsa_epoll, wsa_poll and wsa_ev do; the examples'
 * own single-threaded hosts, echo_poll and tls, listen on their loop
 * thread and keep their spare). accept4 failing for want of kernel memory
 * (ENOBUFS, ENOMEM) leaves the connection pending the same way: it is
 * WSA_ACCEPT_NOFD too. */
static inline int wsa_accept(int lfd) {
  int *spare = wsa_spare();
  /* accept4(2) takes NULL for both the address and its length; cppcheck
   * 2.10's gnu.cfg says the length must not be NULL. */
  for (;;) {
    /* cppcheck-suppress nullPointer */
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    /* No kernel memory for it (socket buffer limits, memory pressure):
     * the connection stays pending, so the listener stays readable and
     * "backlog empty" would have the loop retry at once, forever. Pausing
     * is the caller's answer to that, as when no descriptor is left. */
    if (errno == ENOBUFS || errno == ENOMEM) return WSA_ACCEPT_NOFD;
    if (errno != EMFILE && errno != ENFILE) return -1;
    if (*spare < 0) return WSA_ACCEPT_NOFD;
    close(*spare);
    /* cppcheck-suppress nullPointer */
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) close(fd);
    *spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return *spare < 0 ? WSA_ACCEPT_NOFD : -1;
  }
}

/* The local port of a socket (the one bound with port 0), or -1. */
static inline int wsa_local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  /* getsockname fills it. Zeroed all the same: under _GNU_SOURCE glibc
   * declares its address as a transparent union, through which clang's
   * static analyzer sees no write and takes ss_family for garbage. */
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

#endif /* WSA_SOCKIO_H */
