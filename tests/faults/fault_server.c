/*
 * The fault tier's test server: libwsmux on a small epoll loop of its own
 * (no 4096-socket cap), with a counting allocator in ws_config.alloc so the
 * tests can read the library's live heap while they load it.
 *
 *   fault_server [--max-connections N] [--max-queued B] [--max-message B]
 *                [--handshake-timeout MS] [--idle-timeout MS]
 *                [--ping-interval MS] [--write-timeout MS]
 *                [--close-timeout MS]
 *
 * Listens on a free loopback port and prints "PORT <n>" on stdout. Then
 * stdin is a control channel, one command per line, answered on stdout:
 *   stats   -> "STATS key=value ..." (library heap, RSS, ws_stats counters)
 *   peak    -> resets the peak-bytes mark to the current live bytes; "OK"
 *   quit    -> ws_server_free, then "BYE live_allocs=N live_bytes=N";
 *              exit status 0 only when both are 0
 * EOF on stdin (the test died) ends the process too.
 *
 * Actions:
 *   {"action":"ping","data":D}  -> {"action":"pong","data":D} ("" if none)
 *   {"action":"bcast","data":"K SIZE"} -> K broadcasts {"action":"bc",
 *       "data":"<seq>:xxx..."} of SIZE data bytes, seq (10 digits) counting
 *       up across calls from 0
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "wsmux.h"

/* ---- counting allocator ----------------------------------------------- */

/* Each block carries its size in a header aligned for any type. */
typedef union fs_hdr {
  size_t size;
  max_align_t align_;
} fs_hdr;

static struct {
  long allocs;
  long bytes;
  long peak;
} g_heap;

static void heap_add(long n, long delta_allocs) {
  g_heap.bytes += n;
  g_heap.allocs += delta_allocs;
  if (g_heap.bytes > g_heap.peak) g_heap.peak = g_heap.bytes;
}

static void *fs_malloc(size_t n, void *ud) {
  fs_hdr *h = malloc(sizeof(*h) + n);
  (void)ud;
  if (h == NULL) return NULL;
  h->size = n;
  heap_add((long)n, 1);
  return h + 1;
}

static void fs_free(void *p, void *ud) {
  fs_hdr *h;
  (void)ud;
  if (p == NULL) return;
  h = (fs_hdr *)p - 1;
  heap_add(-(long)h->size, -1);
  free(h);
}

static void *fs_realloc(void *p, size_t n, void *ud) {
  fs_hdr *h, *nh;
  size_t old;
  if (p == NULL) return fs_malloc(n, ud);
  if (n == 0) {
    fs_free(p, ud);
    return NULL;
  }
  h = (fs_hdr *)p - 1;
  old = h->size;
  nh = realloc(h, sizeof(*nh) + n);
  if (nh == NULL) return NULL;
  nh->size = n;
  heap_add((long)n - (long)old, 0);
  return nh + 1;
}

/* ---- the loop ------------------------------------------------------------ */

enum { SRC_LISTEN, SRC_CTL, SRC_SOCK };

typedef struct fs_sock {
  int kind; /* SRC_SOCK; first, like the other sources */
  int fd;
  int dead; /* close callback ran; freed after the event batch */
  ws_conn *conn;
  struct fs_sock *next_dead;
} fs_sock;

static int g_ep = -1;
static int g_kind_listen = SRC_LISTEN, g_kind_ctl = SRC_CTL;
static fs_sock *g_dead;
static long g_socks; /* host-side sockets open */
static ws_server *g_srv;
static unsigned long g_seq;
static char *g_bcbuf;
static size_t g_bccap;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static ssize_t t_send(ws_conn *c, void *t, const void *d, size_t n) {
  fs_sock *s = t;
  ssize_t w = send(s->fd, d, n, MSG_NOSIGNAL);
  (void)c;
  if (w >= 0) return w;
  return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

static ssize_t t_sendv(ws_conn *c, void *t, const ws_iovec *iov, int n) {
  fs_sock *s = t;
  struct iovec v[64];
  struct msghdr mh = {.msg_iov = v};
  ssize_t w;
  int i;
  (void)c;
  if (n > 64) n = 64;
  for (i = 0; i < n; i++) {
    v[i].iov_base = (void *)iov[i].base;
    v[i].iov_len = iov[i].len;
  }
  mh.msg_iovlen = (size_t)n;
  w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
  if (w >= 0) return w;
  return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

static int t_want_write(ws_conn *c, void *t, int want) {
  fs_sock *s = t;
  struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u),
                           .data.ptr = s};
  (void)c;
  epoll_ctl(g_ep, EPOLL_CTL_MOD, s->fd, &ev);
  return 0;
}

/* The struct outlives this call until the event batch ends: later events
 * of the same batch may still point at it. */
static int t_close(ws_conn *c, void *t) {
  fs_sock *s = t;
  (void)c;
  close(s->fd);
  s->fd = -1;
  s->dead = 1;
  s->conn = NULL;
  s->next_dead = g_dead;
  g_dead = s;
  g_socks--;
  return 0;
}

static void reap(void) {
  while (g_dead) {
    fs_sock *s = g_dead;
    g_dead = s->next_dead;
    free(s);
  }
}

static void do_accept(int lfd) {
  for (;;) {
    int one = 1, fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    fs_sock *s;
    struct epoll_event ev = {.events = EPOLLIN};
    if (fd < 0) return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
      close(fd);
      continue;
    }
    s->kind = SRC_SOCK;
    s->fd = fd;
    ev.data.ptr = s;
    if (ws_conn_new(g_srv, s, &s->conn) != WS_OK) {
      close(fd);
      free(s);
      continue;
    }
    g_socks++;
    epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
  }
}

/* Reads up to a few buffers per event (fairness), feeds them. EOF or a
 * socket error aborts. Once the library stops reading (closing), bytes are
 * read and dropped so a level-triggered loop does not spin on them. */
static void do_read(fs_sock *s) {
  static char buf[65536];
  int i;
  for (i = 0; i < 4 && !s->dead; i++) {
    ssize_t r = recv(s->fd, buf, sizeof(buf), 0);
    if (r > 0) {
      ws_conn_feed(s->conn, buf, (size_t)r);
      if ((size_t)r < sizeof(buf)) return;
    } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
      ws_conn_abort(s->conn);
      return;
    } else {
      return;
    }
  }
}

/* ---- control channel ---------------------------------------------------- */

/* Under AddressSanitizer freed memory sits in a quarantine, so RSS says
 * nothing about leaks there; the stats line says so and tests skip RSS. */
#if defined(__SANITIZE_ADDRESS__)
#define FS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FS_ASAN 1
#endif
#endif
#ifndef FS_ASAN
#define FS_ASAN 0
#endif

static long rss_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

static void print_stats(void) {
  ws_stats st;
  ws_server_stats(g_srv, &st, sizeof(st));
  printf("STATS live_allocs=%ld live_bytes=%ld peak_bytes=%ld rss_kb=%ld "
         "socks=%ld open=%llu pending=%llu total=%llu c1000=%llu c1001=%llu "
         "c1006=%llu c4001=%llu c4002=%llu c_other=%llu r503=%llu "
         "drops=%llu msgs_in=%llu bytes_in=%llu fanout=%llu asan=%d\n",
         g_heap.allocs, g_heap.bytes, g_heap.peak, rss_kb(), g_socks,
         (unsigned long long)st.conns_open,
         (unsigned long long)st.conns_pending,
         (unsigned long long)st.conns_total,
         (unsigned long long)st.closes_1000,
         (unsigned long long)st.closes_1001,
         (unsigned long long)st.closes_1006,
         (unsigned long long)st.closes_4001,
         (unsigned long long)st.closes_4002,
         (unsigned long long)st.closes_other,
         (unsigned long long)st.refusals[WS_REFUSE_UNAVAILABLE],
         (unsigned long long)st.drops_queue_full,
         (unsigned long long)st.msgs_in, (unsigned long long)st.bytes_in,
         (unsigned long long)st.fanout, FS_ASAN);
  fflush(stdout);
}

/* Returns 1 when the server should stop. */
static int do_control(void) {
  static char line[256];
  static size_t len;
  ssize_t r = read(STDIN_FILENO, line + len, sizeof(line) - 1 - len);
  char *nl;
  if (r <= 0) return r == 0 || (errno != EAGAIN && errno != EINTR);
  len += (size_t)r;
  while ((nl = memchr(line, '\n', len)) != NULL) {
    size_t n = (size_t)(nl - line) + 1;
    *nl = '\0';
    if (strcmp(line, "stats") == 0) {
      print_stats();
    } else if (strcmp(line, "peak") == 0) {
      g_heap.peak = g_heap.bytes;
      printf("OK\n");
      fflush(stdout);
    } else if (strcmp(line, "quit") == 0) {
      return 1;
    } else {
      printf("ERR unknown command\n");
      fflush(stdout);
    }
    memmove(line, line + n, len - n);
    len -= n;
  }
  if (len == sizeof(line) - 1) len = 0; /* overlong line: drop it */
  return 0;
}

/* ---- handlers ----------------------------------------------------------- */

static int on_ping(ws_conn *c, const ws_msg *m, void *ud) {
  size_t len;
  const char *d = ws_msg_data_json(m, &len);
  (void)ud;
  if (d == NULL) return ws_conn_send_json(c, "pong", "\"\"", 2);
  return ws_conn_send_json(c, "pong", d, len);
}

static int on_bcast(ws_conn *c, const ws_msg *m, void *ud) {
  size_t len, i;
  const char *d = ws_msg_data_json(m, &len);
  unsigned long k, size;
  char tmp[64];
  (void)ud;
  if (d == NULL || len < 2 || len >= sizeof(tmp)) return -1;
  memcpy(tmp, d + 1, len - 2); /* drop the quotes */
  tmp[len - 2] = '\0';
  if (sscanf(tmp, "%lu %lu", &k, &size) != 2 || size < 12 ||
      size > (16u << 20))
    return -1;
  if (size + 2 > g_bccap) {
    char *nb = realloc(g_bcbuf, size + 2);
    if (nb == NULL) return -1;
    g_bcbuf = nb;
    g_bccap = size + 2;
  }
  g_bcbuf[0] = '"';
  memset(g_bcbuf + 1, 'x', size);
  g_bcbuf[size + 1] = '"';
  for (i = 0; i < k; i++) {
    char seq[12];
    snprintf(seq, sizeof(seq), "%010lu:", g_seq++);
    memcpy(g_bcbuf + 1, seq, 11);
    if (ws_broadcast_json(ws_conn_server(c), "bc", g_bcbuf, size + 2, NULL,
                          0) < 0)
      return -1;
  }
  return 0;
}

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (level <= WS_LOG_ERROR) fprintf(stderr, "fault_server: %s\n", msg);
}

/* ---- main --------------------------------------------------------------- */

static int listen_loopback(int *port) {
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
      listen(fd, 4096) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &sl) < 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

static int parse_flags(int argc, char **argv, ws_config *cfg) {
  int i;
  for (i = 1; i + 1 < argc; i += 2) {
    const char *f = argv[i];
    unsigned long v = strtoul(argv[i + 1], NULL, 10);
    if (strcmp(f, "--max-connections") == 0)
      cfg->max_connections = v;
    else if (strcmp(f, "--max-queued") == 0)
      cfg->max_queued = v;
    else if (strcmp(f, "--max-message") == 0)
      cfg->max_message = v;
    else if (strcmp(f, "--handshake-timeout") == 0)
      cfg->handshake_timeout_ms = (uint32_t)v;
    else if (strcmp(f, "--idle-timeout") == 0)
      cfg->idle_timeout_ms = (uint32_t)v;
    else if (strcmp(f, "--ping-interval") == 0)
      cfg->ping_interval_ms = (uint32_t)v;
    else if (strcmp(f, "--write-timeout") == 0)
      cfg->write_timeout_ms = (uint32_t)v;
    else if (strcmp(f, "--close-timeout") == 0)
      cfg->close_timeout_ms = (uint32_t)v;
    else
      return -1;
  }
  return i == argc ? 0 : -1;
}

int main(int argc, char **argv) {
  ws_config cfg;
  ws_mux *mux;
  int lfd, port, rc, stop = 0;
  struct epoll_event ev = {.events = EPOLLIN};
  static struct epoll_event evs[256];

  ws_config_init(&cfg);
  if (parse_flags(argc, argv, &cfg) != 0) {
    fprintf(stderr, "usage: see the header of tests/faults/fault_server.c\n");
    return 2;
  }
  cfg.alloc = (ws_allocator){.malloc = fs_malloc,
                             .realloc = fs_realloc,
                             .free = fs_free,
                             .user_data = NULL};
  cfg.send = t_send;
  cfg.sendv = t_sendv;
  cfg.want_write = t_want_write;
  cfg.close = t_close;
  cfg.on_log = on_log;
  cfg.keep_headers = 0;
  mux = ws_mux_new(&cfg.alloc);
  if (mux == NULL || ws_mux_handle(mux, "ping", on_ping, NULL) != WS_OK ||
      ws_mux_handle(mux, "bcast", on_bcast, NULL) != WS_OK) {
    fprintf(stderr, "fault_server: mux setup failed\n");
    return 1;
  }
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  if ((rc = ws_server_new(&cfg, &g_srv)) != WS_OK) {
    fprintf(stderr, "fault_server: ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  if ((lfd = listen_loopback(&port)) < 0 ||
      (g_ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
    perror("fault_server: listen");
    return 1;
  }
  ev.data.ptr = &g_kind_listen;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &ev);
  ev.data.ptr = &g_kind_ctl;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
  printf("PORT %d\n", port);
  fflush(stdout);

  while (!stop) {
    int timeout = ws_server_tick(g_srv, now_ms()), n, i;
    if (timeout < 0 || timeout > 1000) timeout = 1000;
    n = epoll_wait(g_ep, evs, 256, timeout);
    if (n < 0 && errno != EINTR) break;
    ws_server_tick(g_srv, now_ms());
    for (i = 0; i < n; i++) {
      int kind = *(int *)evs[i].data.ptr;
      fs_sock *s = evs[i].data.ptr;
      if (kind == SRC_LISTEN) {
        do_accept(lfd);
      } else if (kind == SRC_CTL) {
        stop = do_control();
      } else if (!s->dead) {
        if ((evs[i].events & EPOLLOUT) && ws_conn_writable(s->conn) != WS_OK)
          continue;
        if (!s->dead && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
          do_read(s);
      }
    }
    reap();
  }
  ws_server_free(g_srv);
  reap();
  ws_mux_free(mux);
  free(g_bcbuf);
  printf("BYE live_allocs=%ld live_bytes=%ld\n", g_heap.allocs, g_heap.bytes);
  fflush(stdout);
  close(lfd);
  close(g_ep);
  return g_heap.allocs == 0 && g_heap.bytes == 0 ? 0 : 3;
}
