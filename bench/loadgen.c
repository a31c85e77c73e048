/*
 * loadgen - load generator for the libwsmux "ping/pong push server" protocol.
 *
 * One process, one thread, epoll, non-blocking sockets, libc only. Speaks its
 * own minimal RFC 6455 client: HTTP upgrade (Sec-WebSocket-Accept verified
 * with a built-in SHA-1), masked client frames, unmasked server frames.
 *
 * Protocol under test:
 *   client {"action":"ping"}                   -> that client gets
 *          {"action":"pong","data":""}
 *   client {"action":"broadcast","data":D}     -> every connection gets
 *          {"action":"bc","data":D}
 *
 * Every server frame is compared byte for byte (header and payload) with the
 * exact frame expected; anything else, or a reply that never arrives, is an
 * error. Once the last expected reply is in, every connection is read for
 * QUIET_MS more: a frame then is one too many (a duplicate, or a reply to
 * nothing), which also catches a duplicate taken mid-run as the reply to a
 * later request (the replies are identical), since it leaves one over at the
 * end. The process exits 0 only with zero errors.
 *
 * Modes:
 *   rtt       C connections, 1 ping in flight each (closed loop)
 *   pipeline  C connections, --depth K pings in flight each
 *   fanout    C receivers + 1 sender; one broadcast of --size B bytes at a
 *             time; latency = send until the last of the C+1 connections
 *             (sender included) has it
 *   idle      open C connections, print READY, hold --hold seconds, then
 *             check every connection still answers one ping, then close
 *
 * Output: one line starting with "RESULT " (key=value pairs) on stdout, plus
 * a "READY ..." line in idle mode. Diagnostics go to stderr.
 *   ops, secs, ops_per_s  completed operations over the measured window
 *                         (rtt/pipeline: pongs; fanout: deliveries, sender
 *                         included; idle: handshakes over the connect phase)
 *   p50/p90/p99/max_us    latency (fanout: full-fanout latency per broadcast)
 *   samples, bcasts       latency samples; broadcasts completed (fanout)
 *   hs_per_s              handshake rate of the connect phase
 *   srv_cpu_us            --server-pid CPU time over the window, -1 if none
 *   lg_cpu_pct            loadgen CPU over the window, % of one core
 *   lg_cpu_total_us       loadgen CPU for the whole run
 *   timeout, errors       hard timeout hit; wrong/missing replies and failures
 * Exit status: 0 ok, 1 errors, 2 hard timeout, 3 internal failure, 64 usage.
 * Connections are closed with RST (SO_LINGER 0) so no TIME_WAIT is left.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/sha1b64.h"

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

enum mode { M_RTT, M_PIPELINE, M_FANOUT, M_IDLE };
static const char *const mode_names[] = {"rtt", "pipeline", "fanout", "idle"};

static struct {
  const char *host;
  int port;
  enum mode mode;
  int conns;
  double duration;
  size_t size;
  int depth;
  double hold;
  double timeout;
  int batch;
  int server_pid;
  const char *path;
  char id_prefix[64];
  int verbose;
} opt = {"127.0.0.1", 0, M_RTT, 1, 3.0, 64, 16, 3.0, 0.0, 256, 0, "/ws", "", 0};

static void usage(FILE *f) {
  fprintf(f,
          "usage: loadgen --port P [--mode rtt|pipeline|fanout|idle] [--conns C]\n"
          "               [--duration S] [--size B] [--depth K] [--hold S]\n"
          "               [--timeout S] [--batch N] [--server-pid PID]\n"
          "               [--host 127.0.0.1] [--path /ws] [--id-prefix STR] [-v]\n"
          "  --host      loopback only (127.0.0.0/8)\n"
          "  --conns     connections (fanout: receivers, plus 1 sender)\n"
          "  --duration  measurement window in seconds (float), default 3\n"
          "  --size      fanout payload bytes (letters 'x'), default 64\n"
          "  --depth     pings in flight per connection (pipeline), default 16\n"
          "  --hold      idle: seconds to hold after READY, default 3\n"
          "  --timeout   hard timeout in seconds, default derived\n"
          "  --batch     max handshakes in progress at once, default 256\n"
          "  --server-pid  sample that process's CPU time over the window\n");
}

/* ------------------------------------------------------------------ */
/* Small utilities                                                      */
/* ------------------------------------------------------------------ */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t proc_cpu_us(int pid) {
  /* CPU time of pid (all its threads) in microseconds, or UINT64_MAX on
   * failure. From its CPU-time clock, to the nanosecond: /proc/PID/stat's
   * utime and stime (the fallback) count clock ticks of 10 ms, each
   * truncated, which is +-20 ms on a window: 5% of the 0.4 s a server
   * spends on 10,000 handshakes. */
  clockid_t cid;
  struct timespec ts;
  if (clock_getcpuclockid((pid_t)pid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
    return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000u;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return UINT64_MAX;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (!p)
    return UINT64_MAX;
  p++;
  /* fields after comm: state(3) ... utime(14) stime(15) */
  unsigned long long ut = 0, st = 0;
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    field++;
    if (field == 14)
      ut = strtoull(tok, NULL, 10);
    else if (field == 15) {
      st = strtoull(tok, NULL, 10);
      break;
    }
  }
  if (field != 15)
    return UINT64_MAX;
  long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0)
    hz = 100;
  return (uint64_t)(ut + st) * 1000000ull / (uint64_t)hz;
}

static uint64_t self_cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)ru.ru_utime.tv_sec * 1000000ull + (uint64_t)ru.ru_utime.tv_usec +
         (uint64_t)ru.ru_stime.tv_sec * 1000000ull + (uint64_t)ru.ru_stime.tv_usec;
}

/* One end of a measured window: the server's CPU time (left as it is
 * without --server-pid) and ours. */
static void cpu_sample(uint64_t *srv, uint64_t *lg) {
  if (opt.server_pid) *srv = proc_cpu_us(opt.server_pid);
  *lg = self_cpu_us();
}

static uint32_t rng_state = 0x9E3779B9u;
static uint32_t rng32(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rng_state = x;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q && n) {
    fprintf(stderr, "loadgen: out of memory\n");
    exit(3);
  }
  return q;
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

enum cstate { CS_IDLE, CS_CONNECTING, CS_HS, CS_OPEN, CS_DEAD };

struct conn {
  int fd;
  int idx;
  uint8_t state;
  uint8_t want_out;
  unsigned char *rbuf; /* leftover / handshake bytes */
  size_t rlen, rcap;
  unsigned char *wbuf; /* pending output */
  size_t wlen, woff, wcap;
  char accept[29];
  uint32_t inflight; /* pings awaiting pong */
  uint32_t qhead;    /* ring index of the oldest send time */
  uint64_t *sent;    /* ring of depth send times */
  uint64_t got_seq;  /* fanout: last broadcast seq received */
};

static struct conn *conns;
static int nconns; /* total connections (fanout: receivers + 1 sender) */
static int epfd = -1;
static struct sockaddr_in srv_addr;

enum phase { PH_CONNECT, PH_HOLD, PH_RUN, PH_DRAIN, PH_VERIFY, PH_QUIET, PH_DONE };

/* After the last expected reply: how long extra frames are still looked for
 * (outside the measured window). */
#define QUIET_MS 200
static enum phase phase = PH_CONNECT;

/* statistics */
static uint64_t errors;
static uint64_t ops;       /* completed operations in the measured window */
static uint64_t inflight_total;
static uint64_t *lat;      /* ns samples */
static size_t nlat, caplat;
static int err_printed;
static int opened, failed, connecting, next_connect;
static uint64_t t_first_connect, t_last_open;
static uint64_t t_progress; /* last time a handshake finished or failed */

/* protocol bytes */
static const char PING_JSON[] = "{\"action\":\"ping\"}";
static const char PONG_JSON[] = "{\"action\":\"pong\",\"data\":\"\"}";
static unsigned char *exp_pong; /* full expected server frame */
static size_t exp_pong_len;
static unsigned char *exp_bc;
static size_t exp_bc_len;
static unsigned char *bc_payload; /* unmasked client broadcast payload */
static size_t bc_payload_len;
static unsigned char *bc_frame; /* scratch for one masked client frame */

/* fanout */
static uint64_t bc_seq;         /* current broadcast sequence number */
static int bc_outstanding;      /* 1 while waiting for deliveries */
static int bc_remaining;        /* deliveries still missing */
static uint64_t bc_sent_at;
static uint64_t bcasts;

static void record_error(struct conn *c, const char *fmt, ...) {
  errors++;
  if (err_printed < 10 || opt.verbose) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: error conn %d: ", c ? c->idx : -1);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    err_printed++;
    if (err_printed == 10 && !opt.verbose)
      fprintf(stderr, "loadgen: (further errors not printed)\n");
  }
}

static void add_lat(uint64_t ns) {
  if (nlat == caplat) {
    caplat = caplat ? caplat * 2 : 65536;
    lat = xrealloc(lat, caplat * sizeof *lat);
  }
  lat[nlat++] = ns;
}

static size_t frame_header(unsigned char *h, unsigned char b0, size_t len, int masked) {
  unsigned char m = masked ? 0x80 : 0;
  h[0] = b0;
  if (len < 126) {
    h[1] = (unsigned char)(m | len);
    return 2;
  }
  if (len <= 0xFFFF) {
    h[1] = m | 126;
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
    return 4;
  }
  h[1] = m | 127;
  for (int i = 0; i < 8; i++)
    h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
  return 10;
}

/* Masked client frame into out; returns its length. out must hold len+14. */
static size_t client_frame(unsigned char *out, unsigned char b0, const void *payload,
                           size_t len) {
  size_t h = frame_header(out, b0, len, 1);
  uint32_t key = rng32();
  unsigned char k[4];
  memcpy(k, &key, 4);
  memcpy(out + h, k, 4);
  h += 4;
  const unsigned char *p = payload;
  for (size_t i = 0; i < len; i++)
    out[h + i] = p[i] ^ k[i & 3];
  return h + len;
}

static void server_frame(unsigned char **out, size_t *outlen, const char *payload,
                         size_t len) {
  *out = xrealloc(NULL, len + 10);
  size_t h = frame_header(*out, 0x81, len, 0);
  memcpy(*out + h, payload, len);
  *outlen = h + len;
}

static void set_events(struct conn *c, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) {
    perror("loadgen: epoll_ctl MOD");
    exit(3);
  }
}

static void conn_kill(struct conn *c, const char *why) {
  if (c->state == CS_DEAD)
    return;
  int was_connecting = c->state == CS_CONNECTING || c->state == CS_HS;
  if (why)
    record_error(c, "%s", why);
  if (c->fd >= 0) {
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    c->fd = -1;
  }
  c->state = CS_DEAD;
  if (was_connecting) {
    connecting--;
    failed++;
    t_progress = now_ns();
  }
  if (c->inflight) {
    record_error(c, "%u ping(s) never answered (connection lost)", c->inflight);
    errors += c->inflight - 1;
    inflight_total -= c->inflight;
    c->inflight = 0;
  }
  if (opt.mode == M_FANOUT && bc_outstanding && c->got_seq != bc_seq) {
    /* it will never get the current broadcast */
    bc_remaining--;
  }
  free(c->rbuf);
  free(c->wbuf);
  c->rbuf = c->wbuf = NULL;
  c->rlen = c->rcap = c->wlen = c->woff = c->wcap = 0;
}

/* Queue or write bytes. Returns 0, or -1 if the connection died. */
static int conn_send(struct conn *c, const void *data, size_t len) {
  if (c->state == CS_DEAD)
    return -1;
  const unsigned char *p = data;
  if (c->wlen == 0) {
    while (len > 0) {
      ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
      if (w > 0) {
        p += w;
        len -= (size_t)w;
        continue;
      }
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      conn_kill(c, "send failed");
      return -1;
    }
    if (len == 0)
      return 0;
    c->woff = 0;
  }
  if (c->woff + c->wlen + len > c->wcap) {
    if (c->woff) {
      memmove(c->wbuf, c->wbuf + c->woff, c->wlen);
      c->woff = 0;
    }
    if (c->wlen + len > c->wcap) {
      c->wcap = (c->wlen + len) * 2;
      c->wbuf = xrealloc(c->wbuf, c->wcap);
    }
  }
  memcpy(c->wbuf + c->woff + c->wlen, p, len);
  c->wlen += len;
  if (!c->want_out) {
    c->want_out = 1;
    set_events(c, EPOLLIN | EPOLLOUT);
  }
  return 0;
}

static void conn_flush(struct conn *c) {
  while (c->wlen > 0) {
    ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen, MSG_NOSIGNAL);
    if (w > 0) {
      c->woff += (size_t)w;
      c->wlen -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    conn_kill(c, "send failed");
    return;
  }
  c->woff = 0;
  if (c->want_out) {
    c->want_out = 0;
    set_events(c, EPOLLIN);
  }
}

/* Send k pings on c, coalesced into one write. */
static void send_pings(struct conn *c, uint32_t k, uint64_t t) {
  unsigned char buf[64 * 32];
  while (k > 0 && c->state == CS_OPEN) {
    uint32_t n = k > 64 ? 64 : k;
    size_t len = 0;
    for (uint32_t i = 0; i < n; i++)
      len += client_frame(buf + len, 0x81, PING_JSON, sizeof PING_JSON - 1);
    uint32_t depth = (uint32_t)opt.depth;
    for (uint32_t i = 0; i < n; i++) {
      c->sent[(c->qhead + c->inflight) % depth] = t;
      c->inflight++;
      inflight_total++;
    }
    if (conn_send(c, buf, len) < 0)
      return;
    k -= n;
  }
}

static void send_broadcast(uint64_t t) {
  struct conn *s = &conns[nconns - 1];
  if (s->state != CS_OPEN) {
    record_error(s, "sender is gone");
    phase = PH_DONE;
    return;
  }
  bc_seq++;
  bc_outstanding = 1;
  bc_remaining = 0;
  for (int i = 0; i < nconns; i++)
    if (conns[i].state == CS_OPEN)
      bc_remaining++;
  bc_sent_at = t;
  size_t len = client_frame(bc_frame, 0x81, bc_payload, bc_payload_len);
  conn_send(s, bc_frame, len);
}

static void fanout_check_done(uint64_t t) {
  if (!bc_outstanding || bc_remaining > 0)
    return;
  bc_outstanding = 0;
  bcasts++;
  add_lat(t - bc_sent_at);
  if (phase == PH_RUN)
    send_broadcast(t);
}

/* Printable excerpt of a frame for diagnostics. */
static const char *excerpt(const unsigned char *p, size_t n) {
  static char buf[100];
  size_t o = 0;
  for (size_t i = 0; i < n && o < sizeof buf - 4; i++)
    buf[o++] = p[i] >= 0x20 && p[i] < 0x7F ? (char)p[i] : '.';
  if (n > sizeof buf - 4)
    memcpy(buf + o, "...", 3), o += 3;
  buf[o] = '\0';
  return buf;
}

static void on_data_frame(struct conn *c, const unsigned char *frame, size_t flen,
                          uint64_t t) {
  if (opt.mode == M_FANOUT) {
    int ok = flen == exp_bc_len && memcmp(frame, exp_bc, flen) == 0;
    if (!bc_outstanding || c->got_seq == bc_seq) {
      record_error(c, "%s broadcast delivery: %s", ok ? "duplicate or unsolicited" : "unexpected",
                   excerpt(frame, flen));
      return;
    }
    /* the one delivery this connection was waiting for */
    c->got_seq = bc_seq;
    bc_remaining--;
    if (ok)
      ops++;
    else
      record_error(c, "wrong broadcast frame (len %zu, expected %zu): %s", flen, exp_bc_len,
                   excerpt(frame, flen));
    fanout_check_done(t);
    return;
  }
  int ok = flen == exp_pong_len && memcmp(frame, exp_pong, flen) == 0;
  if (c->inflight == 0) {
    record_error(c, "unsolicited %s: %s", ok ? "pong" : "frame", excerpt(frame, flen));
    return;
  }
  /* the reply to the oldest ping in flight, right or wrong */
  uint64_t sent = c->sent[c->qhead];
  c->qhead = (c->qhead + 1) % (uint32_t)opt.depth;
  c->inflight--;
  inflight_total--;
  if (!ok) {
    record_error(c, "wrong reply to ping (len %zu, expected pong of %zu): %s", flen,
                 exp_pong_len, excerpt(frame, flen));
    return;
  }
  if (phase == PH_RUN || phase == PH_DRAIN) {
    ops++;
    add_lat(t - sent);
  }
}

/* Parse complete frames in p[0..n); returns bytes consumed. */
static size_t parse_frames(struct conn *c, unsigned char *p, size_t n, uint64_t t) {
  size_t off = 0;
  while (c->state == CS_OPEN && n - off >= 2) {
    unsigned char b0 = p[off], b1 = p[off + 1];
    size_t hl = 2;
    uint64_t plen = b1 & 0x7F;
    if (plen == 126) {
      if (n - off < 4)
        break;
      plen = ((uint64_t)p[off + 2] << 8) | p[off + 3];
      hl = 4;
    } else if (plen == 127) {
      if (n - off < 10)
        break;
      plen = 0;
      for (int i = 0; i < 8; i++)
        plen = (plen << 8) | p[off + 2 + i];
      hl = 10;
    }
    if (b1 & 0x80) {
      conn_kill(c, "server frame is masked");
      return n;
    }
    if (plen > (64u << 20)) {
      conn_kill(c, "server frame too large");
      return n;
    }
    if (n - off - hl < plen)
      break;
    unsigned op = b0 & 0x0F;
    const unsigned char *pl = p + off + hl;
    if (op == 0x9) { /* server ping: answer, not an error */
      unsigned char out[256];
      if (plen <= 125 && (b0 & 0x80)) {
        size_t l = client_frame(out, 0x8A, pl, (size_t)plen);
        conn_send(c, out, l);
      } else {
        conn_kill(c, "bad ping frame from server");
        return n;
      }
    } else if (op == 0xA) {
      /* unsolicited pong: ignore */
    } else if (op == 0x8) {
      unsigned code = plen >= 2 ? ((unsigned)pl[0] << 8 | pl[1]) : 0;
      char why[160];
      snprintf(why, sizeof why, "server sent close (code %u, reason \"%.*s\")", code,
               (int)(plen > 2 ? (plen - 2 > 100 ? 100 : plen - 2) : 0),
               (const char *)pl + 2);
      conn_kill(c, why);
      return n;
    } else {
      on_data_frame(c, p + off, hl + (size_t)plen, t);
    }
    off += hl + (size_t)plen;
  }
  return off;
}

static void rbuf_append(struct conn *c, const unsigned char *p, size_t n) {
  if (c->rlen + n > c->rcap) {
    c->rcap = (c->rlen + n) * 2 < 1024 ? 1024 : (c->rlen + n) * 2;
    c->rbuf = xrealloc(c->rbuf, c->rcap);
  }
  memcpy(c->rbuf + c->rlen, p, n);
  c->rlen += n;
}

static void conn_opened(struct conn *c, uint64_t t) {
  c->state = CS_OPEN;
  connecting--;
  opened++;
  t_last_open = t;
  t_progress = t;
}

/* Handshake response in c->rbuf. Returns 1 when done (ok or dead). */
static int check_handshake(struct conn *c, uint64_t t) {
  if (c->rlen > 16384) {
    conn_kill(c, "handshake response too large");
    return 1;
  }
  unsigned char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
  if (!end)
    return 0;
  size_t hlen = (size_t)(end - c->rbuf) + 4;
  /* NUL-terminate a copy of the head for string functions */
  char *head = xrealloc(NULL, hlen + 1);
  memcpy(head, c->rbuf, hlen);
  head[hlen] = '\0';
  int ok = 0;
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
    char *eol = strstr(head, "\r\n");
    if (eol)
      *eol = '\0';
    char why[200];
    snprintf(why, sizeof why, "handshake refused: %.150s", head);
    free(head);
    conn_kill(c, why);
    return 1;
  }
  for (char *line = strstr(head, "\r\n"); line && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
    char *l = line + 2;
    if (strncasecmp(l, "Sec-WebSocket-Accept:", 21) == 0) {
      char *v = l + 21;
      while (*v == ' ' || *v == '\t')
        v++;
      char *e = strstr(v, "\r\n");
      while (e && e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
      if (e && e - v == 28 && memcmp(v, c->accept, 28) == 0)
        ok = 1;
      break;
    }
  }
  free(head);
  if (!ok) {
    conn_kill(c, "missing or wrong Sec-WebSocket-Accept");
    return 1;
  }
  conn_opened(c, t);
  size_t rest = c->rlen - hlen;
  memmove(c->rbuf, c->rbuf + hlen, rest);
  c->rlen = rest;
  if (rest) {
    size_t used = parse_frames(c, c->rbuf, c->rlen, t);
    if (c->state == CS_OPEN) {
      memmove(c->rbuf, c->rbuf + used, c->rlen - used);
      c->rlen -= used;
    }
  }
  return 1;
}

static void send_handshake(struct conn *c) {
  unsigned char rnd[16];
  char key[25];
  for (int i = 0; i < 16; i += 4) {
    uint32_t r = rng32();
    memcpy(rnd + i, &r, 4);
  }
  bb64_encode(rnd, 16, key);
  bws_accept_key(key, 24, c->accept);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET %s?device_id=%s%d HTTP/1.1\r\n"
                   "Host: %s:%d\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   opt.path, opt.id_prefix, c->idx, opt.host, opt.port, key);
  c->state = CS_HS;
  set_events(c, EPOLLIN);
  conn_send(c, req, (size_t)n);
}

static void start_connect(struct conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    record_error(c, "socket: %s", strerror(errno));
    c->state = CS_DEAD;
    failed++;
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  c->state = CS_CONNECTING;
  connecting++;
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
    perror("loadgen: epoll_ctl ADD");
    exit(3);
  }
  int r = connect(fd, (struct sockaddr *)&srv_addr, sizeof srv_addr);
  if (r == 0) {
    send_handshake(c);
  } else if (errno != EINPROGRESS) {
    char why[128];
    snprintf(why, sizeof why, "connect: %s", strerror(errno));
    conn_kill(c, why);
  }
}

static unsigned char scratch[256 * 1024];

static void on_readable(struct conn *c) {
  ssize_t r;
  for (;;) {
    r = read(c->fd, scratch, sizeof scratch);
    if (r >= 0 || errno != EINTR)
      break;
  }
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    char why[128];
    snprintf(why, sizeof why, "read: %s", strerror(errno));
    conn_kill(c, why);
    return;
  }
  if (r == 0) {
    conn_kill(c, "server closed the connection");
    return;
  }
  uint64_t t = now_ns();
  size_t n = (size_t)r;
  if (c->state == CS_HS) {
    rbuf_append(c, scratch, n);
    check_handshake(c, t);
    return;
  }
  if (c->state != CS_OPEN)
    return;
  if (c->rlen == 0) {
    size_t used = parse_frames(c, scratch, n, t);
    if (c->state == CS_OPEN && used < n)
      rbuf_append(c, scratch + used, n - used);
  } else {
    rbuf_append(c, scratch, n);
    size_t used = parse_frames(c, c->rbuf, c->rlen, t);
    if (c->state == CS_OPEN) {
      memmove(c->rbuf, c->rbuf + used, c->rlen - used);
      c->rlen -= used;
    }
  }
  /* closed loop: top up the pipeline */
  if (c->state == CS_OPEN && phase == PH_RUN &&
      (opt.mode == M_RTT || opt.mode == M_PIPELINE) &&
      c->inflight < (uint32_t)opt.depth)
    send_pings(c, (uint32_t)opt.depth - c->inflight, t);
}

static void on_event(struct conn *c, uint32_t ev) {
  if (c->state == CS_DEAD)
    return;
  if (c->state == CS_CONNECTING) {
    int err = 0;
    socklen_t sl = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    if (err || (ev & (EPOLLERR | EPOLLHUP))) {
      char why[128];
      snprintf(why, sizeof why, "connect: %s", strerror(err ? err : ECONNREFUSED));
      conn_kill(c, why);
      return;
    }
    send_handshake(c);
    return;
  }
  if (ev & EPOLLOUT) {
    conn_flush(c);
    if (c->state == CS_DEAD)
      return;
  }
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
    on_readable(c);
}

/* ------------------------------------------------------------------ */
/* Main                                                                 */
/* ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_us(double q) {
  if (nlat == 0)
    return 0.0;
  size_t i = (size_t)(q * (double)(nlat - 1) + 0.5);
  if (i >= nlat)
    i = nlat - 1;
  return (double)lat[i] / 1000.0;
}

static int parse_args(int argc, char **argv) {
  static const struct option lo[] = {
      {"host", required_argument, 0, 'H'},   {"port", required_argument, 0, 'p'},
      {"mode", required_argument, 0, 'm'},   {"conns", required_argument, 0, 'c'},
      {"duration", required_argument, 0, 'd'}, {"size", required_argument, 0, 's'},
      {"depth", required_argument, 0, 'k'},  {"hold", required_argument, 0, 'o'},
      {"timeout", required_argument, 0, 't'}, {"batch", required_argument, 0, 'b'},
      {"server-pid", required_argument, 0, 'P'}, {"path", required_argument, 0, 'u'},
      {"id-prefix", required_argument, 0, 'i'}, {"verbose", no_argument, 0, 'v'},
      {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "H:p:m:c:d:s:k:o:t:b:P:u:i:vh", lo, NULL)) != -1) {
    switch (ch) {
    case 'H': opt.host = optarg; break;
    case 'p': opt.port = atoi(optarg); break;
    case 'm': {
      int found = 0;
      for (int i = 0; i < 4; i++)
        if (strcmp(optarg, mode_names[i]) == 0) {
          opt.mode = (enum mode)i;
          found = 1;
        }
      if (!found) {
        fprintf(stderr, "loadgen: unknown mode %s\n", optarg);
        return -1;
      }
      break;
    }
    case 'c': opt.conns = atoi(optarg); break;
    case 'd': opt.duration = atof(optarg); break;
    case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
    case 'k': opt.depth = atoi(optarg); break;
    case 'o': opt.hold = atof(optarg); break;
    case 't': opt.timeout = atof(optarg); break;
    case 'b': opt.batch = atoi(optarg); break;
    case 'P': opt.server_pid = atoi(optarg); break;
    case 'u': opt.path = optarg; break;
    case 'i': snprintf(opt.id_prefix, sizeof opt.id_prefix, "%s", optarg); break;
    case 'v': opt.verbose = 1; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
  }
  if (opt.port <= 0 || opt.port > 65535 || opt.conns <= 0 || opt.conns > 1000000 ||
      opt.duration < 0 || opt.depth <= 0 || opt.depth > 4096 || opt.batch <= 0 ||
      opt.size > (16u << 20) || opt.hold < 0) {
    usage(stderr);
    return -1;
  }
  if (opt.mode == M_RTT || opt.mode == M_IDLE || opt.mode == M_FANOUT)
    opt.depth = 1;
  if (!opt.id_prefix[0])
    snprintf(opt.id_prefix, sizeof opt.id_prefix, "lg%d-", (int)getpid());
  if (opt.timeout <= 0)
    opt.timeout = 30.0 + opt.duration + opt.hold + opt.conns / 200.0;
  return 0;
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv) < 0)
    return 64;
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  nconns = opt.conns + (opt.mode == M_FANOUT ? 1 : 0);
  if ((rlim_t)nconns + 16 > rl.rlim_cur) {
    fprintf(stderr, "loadgen: %d connections need more fds than RLIMIT_NOFILE=%llu\n",
            nconns, (unsigned long long)rl.rlim_cur);
    return 64;
  }

  memset(&srv_addr, 0, sizeof srv_addr);
  srv_addr.sin_family = AF_INET;
  srv_addr.sin_port = htons((uint16_t)opt.port);
  if (inet_pton(AF_INET, opt.host, &srv_addr.sin_addr) != 1 ||
      (ntohl(srv_addr.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "loadgen: --host must be a loopback IPv4 address (127.x.x.x)\n");
    return 64;
  }
  rng_state ^= (uint32_t)getpid() * 2654435761u ^ (uint32_t)now_ns();
  if (!rng_state)
    rng_state = 1;

  /* expected frames */
  server_frame(&exp_pong, &exp_pong_len, PONG_JSON, sizeof PONG_JSON - 1);
  if (opt.mode == M_FANOUT) {
    static const char pre_c[] = "{\"action\":\"broadcast\",\"data\":\"";
    static const char pre_s[] = "{\"action\":\"bc\",\"data\":\"";
    bc_payload_len = sizeof pre_c - 1 + opt.size + 2;
    bc_payload = xrealloc(NULL, bc_payload_len);
    memcpy(bc_payload, pre_c, sizeof pre_c - 1);
    memset(bc_payload + sizeof pre_c - 1, 'x', opt.size);
    memcpy(bc_payload + sizeof pre_c - 1 + opt.size, "\"}", 2);
    size_t sl = sizeof pre_s - 1 + opt.size + 2;
    char *sp = xrealloc(NULL, sl);
    memcpy(sp, pre_s, sizeof pre_s - 1);
    memset(sp + sizeof pre_s - 1, 'x', opt.size);
    memcpy(sp + sizeof pre_s - 1 + opt.size, "\"}", 2);
    server_frame(&exp_bc, &exp_bc_len, sp, sl);
    free(sp);
    bc_frame = xrealloc(NULL, bc_payload_len + 14);
  }

  conns = calloc((size_t)nconns, sizeof *conns);
  uint64_t *ring = calloc((size_t)nconns * (size_t)opt.depth, sizeof *ring);
  if (!conns || !ring) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 3;
  }
  for (int i = 0; i < nconns; i++) {
    conns[i].fd = -1;
    conns[i].idx = i;
    conns[i].sent = ring + (size_t)i * (size_t)opt.depth;
  }
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    perror("loadgen: epoll_create1");
    return 3;
  }

  uint64_t t0 = now_ns();
  uint64_t hard_deadline = t0 + (uint64_t)(opt.timeout * 1e9);
  uint64_t window_start = 0, window_end = 0, drain_deadline = 0, hold_end = 0, quiet_end = 0;
  uint64_t t_done = 0;
  uint64_t srv_cpu0 = UINT64_MAX, srv_cpu1 = UINT64_MAX, lg_cpu0 = 0, lg_cpu1 = 0;
  int timed_out = 0, window_cpu_taken = 0;
  double hs_per_s = 0.0;

  t_first_connect = t_progress = now_ns();
  if (opt.mode == M_IDLE)
    cpu_sample(&srv_cpu0, &lg_cpu0);
  else
    lg_cpu0 = self_cpu_us();

  struct epoll_event evs[1024];
  while (phase != PH_DONE) {
    uint64_t t = now_ns();
    if (t >= hard_deadline) {
      timed_out = 1;
      record_error(NULL, "hard timeout (%.1fs) in phase %d", opt.timeout, (int)phase);
      break;
    }
    /* phase transitions */
    if (phase == PH_CONNECT) {
      while (connecting < opt.batch && next_connect < nconns)
        start_connect(&conns[next_connect++]);
      if (connecting > 0 && t - t_progress > 10000000000ull) {
        /* no handshake finished for 10 s: the server is stuck or full */
        for (int i = 0; i < next_connect; i++)
          if (conns[i].state == CS_CONNECTING || conns[i].state == CS_HS)
            conn_kill(&conns[i], "handshake timed out (no progress for 10 s)");
        next_connect = nconns; /* start no more */
        failed += nconns - opened - failed;
      }
      if (opened + failed == nconns) {
        hs_per_s = opened > 0 && t_last_open > t_first_connect
                       ? opened / ((double)(t_last_open - t_first_connect) / 1e9)
                       : 0.0;
        if (failed > 0) {
          fprintf(stderr, "loadgen: %d of %d connections failed\n", failed, nconns);
          break;
        }
        if (opt.mode == M_IDLE) {
          cpu_sample(&srv_cpu1, &lg_cpu1);
          printf("READY conns=%d hs_per_s=%.0f\n", opened, hs_per_s);
          fflush(stdout);
          phase = PH_HOLD;
          hold_end = t + (uint64_t)(opt.hold * 1e9);
        } else {
          phase = PH_RUN;
          window_start = now_ns();
          window_end = window_start + (uint64_t)(opt.duration * 1e9);
          cpu_sample(&srv_cpu0, &lg_cpu0);
          if (opt.mode == M_FANOUT) {
            send_broadcast(window_start);
          } else {
            for (int i = 0; i < nconns; i++)
              send_pings(&conns[i], (uint32_t)opt.depth, window_start);
          }
        }
        continue;
      }
    } else if (phase == PH_HOLD) {
      if (t >= hold_end) {
        phase = PH_VERIFY;
        drain_deadline = t + 5000000000ull + (uint64_t)nconns * 1000000ull;
        for (int i = 0; i < nconns; i++)
          send_pings(&conns[i], 1, t);
        continue;
      }
    } else if (phase == PH_RUN) {
      if (t >= window_end) {
        phase = PH_DRAIN;
        drain_deadline = t + 5000000000ull;
        continue;
      }
    }
    if (phase == PH_DRAIN || phase == PH_VERIFY) {
      int pending = opt.mode == M_FANOUT ? bc_outstanding : inflight_total > 0;
      if (!pending) {
        /* the measured window ends here; the quiet check is outside it */
        t_done = t;
        if (opt.mode != M_IDLE) {
          cpu_sample(&srv_cpu1, &lg_cpu1);
          window_cpu_taken = 1;
        }
        phase = PH_QUIET;
        quiet_end = t + (uint64_t)QUIET_MS * 1000000ull;
        continue;
      }
      if (t >= drain_deadline) {
        if (opt.mode == M_FANOUT) {
          record_error(NULL, "broadcast %llu: %d deliveries missing",
                       (unsigned long long)bc_seq, bc_remaining);
          errors += (uint64_t)bc_remaining - 1;
        } else {
          record_error(NULL, "%llu ping(s) never answered",
                       (unsigned long long)inflight_total);
          errors += inflight_total - 1;
        }
        t_done = t;
        phase = PH_DONE;
        break;
      }
    }
    if (phase == PH_QUIET && t >= quiet_end) {
      phase = PH_DONE;
      break;
    }
    if (opt.mode == M_FANOUT && bc_outstanding && bc_remaining <= 0) {
      fanout_check_done(t); /* the missing receivers died */
      continue;
    }
    if (phase == PH_RUN && opt.mode == M_FANOUT && !bc_outstanding) {
      /* every receiver died: nothing more to measure */
      phase = PH_DONE;
      break;
    }

    uint64_t next = hard_deadline;
    if (phase == PH_RUN && window_end < next)
      next = window_end;
    if (phase == PH_HOLD && hold_end < next)
      next = hold_end;
    if ((phase == PH_DRAIN || phase == PH_VERIFY) && drain_deadline < next)
      next = drain_deadline;
    if (phase == PH_QUIET && quiet_end < next)
      next = quiet_end;
    int tmo = next > t ? (int)((next - t + 999999) / 1000000) : 0;
    if (tmo > 100)
      tmo = 100;
    int n = epoll_wait(epfd, evs, 1024, tmo);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      perror("loadgen: epoll_wait");
      return 3;
    }
    for (int i = 0; i < n; i++)
      on_event(evs[i].data.ptr, evs[i].events);
  }

  /* results */
  double secs;
  uint64_t nops;
  if (opt.mode == M_IDLE) {
    nops = (uint64_t)opened;
    if (phase == PH_CONNECT) { /* never got to READY */
      cpu_sample(&srv_cpu1, &lg_cpu1);
      t_last_open = now_ns();
    }
    secs = t_last_open > t_first_connect ? (double)(t_last_open - t_first_connect) / 1e9 : 0.0;
  } else {
    if (!window_cpu_taken) /* ended early: a timeout or failed connections */
      cpu_sample(&srv_cpu1, &lg_cpu1);
    nops = ops;
    uint64_t end = t_done ? t_done : now_ns();
    secs = window_start && end > window_start ? (double)(end - window_start) / 1e9 : 0.0;
  }
  if (nlat)
    qsort(lat, nlat, sizeof *lat, cmp_u64);
  if (opt.mode != M_IDLE && nops == 0 && !errors)
    record_error(NULL, "no operation completed");
  long long srv_cpu = srv_cpu0 != UINT64_MAX && srv_cpu1 != UINT64_MAX
                          ? (long long)(srv_cpu1 - srv_cpu0)
                          : -1;
  double lg_pct =
      secs > 0 && lg_cpu1 >= lg_cpu0 ? (double)(lg_cpu1 - lg_cpu0) / (secs * 1e4) : 0.0;

  for (int i = 0; i < nconns; i++) {
    struct conn *c = &conns[i];
    if (c->fd >= 0) {
      struct linger lg = {1, 0}; /* RST: leaves no TIME_WAIT behind */
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(c->fd);
      c->fd = -1;
    }
  }

  printf("RESULT mode=%s conns=%d depth=%d size=%zu ops=%llu secs=%.3f ops_per_s=%.1f "
         "p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f samples=%zu bcasts=%llu "
         "hs_per_s=%.0f srv_cpu_us=%lld lg_cpu_pct=%.0f lg_cpu_total_us=%llu timeout=%d "
         "errors=%llu\n",
         mode_names[opt.mode], opt.conns, opt.depth, opt.mode == M_FANOUT ? opt.size : 0,
         (unsigned long long)nops, secs, secs > 0 ? (double)nops / secs : 0.0,
         pct_us(0.50), pct_us(0.90), pct_us(0.99), nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0,
         nlat, (unsigned long long)bcasts, hs_per_s, srv_cpu, lg_pct,
         (unsigned long long)self_cpu_us(), timed_out,
         (unsigned long long)errors);
  if (timed_out)
    return 2;
  return errors ? 1 : 0;
}
