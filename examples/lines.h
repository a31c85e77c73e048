/*
 * Event lines written from inside the event loop: opens, closes, library
 * warnings. Clients trigger them, so they must never block the loop: a
 * stdout or stderr that nobody reads (a pipe whose reader stalled, a
 * stopped terminal) would otherwise freeze every client behind one
 * printf. ex_line writes a whole line only when the fd can take it now
 * (poll with a zero timeout, then one write of at most EX_LINE_MAX bytes,
 * which a pipe takes whole, PIPE_BUF >= 512); otherwise it drops the line
 * and counts it, and the next line that fits is preceded by
 * "dropped N lines". Safe from several threads (the count is atomic).
 * Startup messages and --help keep stdio: the loop is not running yet.
 */
#ifndef WSMUX_EXAMPLE_LINES_H
#define WSMUX_EXAMPLE_LINES_H

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#define EX_LINE_MAX 512

static unsigned long ex_lines_dropped[3]; /* per fd: 0 stdin unused */

static inline int ex_fd_writable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLOUT, .revents = 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
}

/* Writes buf whole or not at all (a short write only on a broken fd). */
static inline int ex_write_line(int fd, const char *buf, size_t len) {
  return ex_fd_writable(fd) && write(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

/* fd: 1 or 2. A line longer than EX_LINE_MAX is cut, ending in "...". */
static inline void ex_line(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void ex_line(int fd, const char *fmt, ...) {
  char buf[EX_LINE_MAX], note[48];
  unsigned long *dropped = &ex_lines_dropped[fd == 2 ? 2 : 1], n;
  va_list ap;
  int len;
  va_start(ap, fmt);
  len = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (len < 0) return;
  if ((size_t)len >= sizeof(buf)) {
    len = (int)sizeof(buf) - 1;
    buf[len - 4] = buf[len - 3] = buf[len - 2] = '.';
    buf[len - 1] = '\n';
  }
  if ((n = __atomic_exchange_n(dropped, 0, __ATOMIC_RELAXED)) != 0) {
    int nl = snprintf(note, sizeof(note), "dropped %lu lines\n", n);
    if (ex_write_line(fd, note, (size_t)nl) != 0) {
      __atomic_fetch_add(dropped, n + 1, __ATOMIC_RELAXED);
      return;
    }
  }
  if (ex_write_line(fd, buf, (size_t)len) != 0)
    __atomic_fetch_add(dropped, 1, __ATOMIC_RELAXED);
}

#endif
