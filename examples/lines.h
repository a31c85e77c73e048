/*
 * Event lines written from inside the event loop: opens, closes, library
 * warnings, command answers. Clients trigger them, so they must never
 * block the loop: a stdout or stderr that nobody reads (a pipe whose
 * reader stalled, a terminal on a frozen ssh session) would otherwise
 * freeze every client behind one printf. ex_line writes a line only if
 * the fd can take it now; otherwise the line is dropped and counted, and
 * "dropped N lines" goes out before the next line that fits (or at exit).
 *
 * How "can take it now" is known depends on the file:
 *   - a terminal: written through a non-blocking description of the same
 *     terminal (opened from /proc/self/fd/N; fd N's own description is
 *     shared with the shell and is left as it is). A terminal takes part
 *     of a line when nearly full: the rest is kept and finished first;
 *   - a pipe or a socket: poll(POLLOUT) with a zero timeout, then one
 *     write. POLLOUT means a free pipe page (a write of at most PIPE_BUF
 *     bytes then goes in whole, at once) or half a socket buffer free;
 *   - anything else (a regular file, /dev/null) is written as it is.
 * Safe from several threads (one mutex; lines are short).
 * Startup messages and --help keep stdio: the loop is not running yet.
 */
#ifndef WSMUX_EXAMPLE_LINES_H
#define WSMUX_EXAMPLE_LINES_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EX_LINE_MAX 512

typedef struct ex_out {
  int opened;   /* wfd and poll decided */
  int wfd;      /* where to write: fd itself, or a non-blocking twin */
  int poll;     /* ask poll(POLLOUT) before each write */
  char tail[EX_LINE_MAX + 48]; /* the unwritten end of a line */
  size_t tail_len;
  unsigned long dropped;
} ex_out;

static ex_out ex_outs[3]; /* [1] stdout, [2] stderr */
static pthread_mutex_t ex_mu = PTHREAD_MUTEX_INITIALIZER;

static inline void ex_open(ex_out *o, int fd) {
  struct stat st;
  char path[32];
  o->opened = 1;
  o->wfd = fd;
  o->poll = 0;
  if (fstat(fd, &st) != 0) return;
  if (isatty(fd)) {
    int nb;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    nb = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (nb >= 0) o->wfd = nb;
    else o->poll = 1; /* no twin: at least ask first */
  } else if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
    o->poll = 1;
  }
}

/* Bytes of p[0..n) written now: n, fewer (a terminal nearly full), or 0. */
static inline size_t ex_put(ex_out *o, const char *p, size_t n) {
  struct pollfd pf = {.fd = o->wfd, .events = POLLOUT, .revents = 0};
  ssize_t w;
  if (o->poll && (poll(&pf, 1, 0) != 1 || !(pf.revents & POLLOUT))) return 0;
  do w = write(o->wfd, p, n);
  while (w < 0 && errno == EINTR);
  return w > 0 ? (size_t)w : 0;
}

/* Under ex_mu: the kept end of a line first; 1 when nothing is left. */
static inline int ex_finish_tail(ex_out *o) {
  size_t w;
  if (o->tail_len == 0) return 1;
  w = ex_put(o, o->tail, o->tail_len);
  memmove(o->tail, o->tail + w, o->tail_len - w);
  o->tail_len -= w;
  return o->tail_len == 0;
}

/* Under ex_mu: writes buf[0..n) or drops it; an unwritten end is kept. */
static inline void ex_emit(ex_out *o, const char *buf, size_t n) {
  size_t w;
  if (!ex_finish_tail(o)) {
    o->dropped++;
    return;
  }
  w = ex_put(o, buf, n);
  if (w == 0) {
    o->dropped++;
    return;
  }
  memcpy(o->tail, buf + w, n - w);
  o->tail_len = n - w;
}

/* Under ex_mu: the line, after the count of lines dropped before it. */
static inline void ex_emit_counted(ex_out *o, const char *line, size_t n) {
  char buf[sizeof(o->tail)];
  unsigned long before = o->dropped;
  int k = 0;
  if (before) k = snprintf(buf, sizeof(buf), "dropped %lu lines\n", before);
  memcpy(buf + k, line, n);
  o->dropped = 0;
  ex_emit(o, buf, (size_t)k + n);
  if (o->dropped) o->dropped = before + 1; /* the note waits with it */
}

/* At exit: the last count, if the fd takes it now. */
static inline void ex_lines_flush(void) {
  int fd;
  pthread_mutex_lock(&ex_mu);
  for (fd = 1; fd <= 2; fd++) {
    ex_out *o = &ex_outs[fd];
    if (o->opened && o->dropped && ex_finish_tail(o))
      ex_emit_counted(o, "", 0);
  }
  pthread_mutex_unlock(&ex_mu);
}

/* fd: 1 or 2. A line longer than EX_LINE_MAX is cut, ending in "...". */
/* "scheme://host:port" into out (at most n bytes), an IPv6 literal host in
 * brackets: the startup line's URL, one a user can paste. */
static inline void ex_url(char *out, size_t n, const char *scheme,
                          const char *host, int port) {
  int v6 = strchr(host, ':') != NULL;
  snprintf(out, n, "%s://%s%s%s:%d", scheme, v6 ? "[" : "", host,
           v6 ? "]" : "", port);
}

static inline void ex_line(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void ex_line(int fd, const char *fmt, ...) {
  static int at_exit;
  char line[EX_LINE_MAX];
  ex_out *o = &ex_outs[fd == 2 ? 2 : 1];
  va_list ap;
  int len;
  va_start(ap, fmt);
  len = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (len < 0) return;
  if ((size_t)len >= sizeof(line)) {
    len = (int)sizeof(line) - 1;
    memcpy(line + len - 4, "...\n", 4);
  }
  pthread_mutex_lock(&ex_mu);
  if (!o->opened) ex_open(o, fd == 2 ? 2 : 1);
  ex_emit_counted(o, line, (size_t)len);
  if (o->dropped && !at_exit) at_exit = atexit(ex_lines_flush) == 0;
  pthread_mutex_unlock(&ex_mu);
}

#endif
