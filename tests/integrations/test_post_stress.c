/*
 * ws_post under load, built with ThreadSanitizer (make post-stress-tsan).
 *
 * One loop thread drives a server with NCONN in-memory connections (no
 * sockets: the send callback parses the frames each connection is sent).
 * NPROD producer threads each post NMSG messages, rotating over the four
 * targets (all, a device, a user, a group) with {"p":producer,"s":seq} as
 * data. ws_post's wake callback writes an eventfd the loop thread polls.
 *
 * Every target of every message is a pure function of (producer, seq), so
 * each connection checks on arrival that the message was meant for it,
 * that its seq is above the last one from that producer, and that no
 * message meant for it was skipped in between; at the end nothing meant for
 * it is missing. That is: none lost, none duplicated, per-producer order.
 *
 * Usage: test_post_stress [NCONN [NPROD [NMSG]]]   (default 1000 4 2500)
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "wsmux.h"

#define NUSERS 50
#define WAKE_LOST_MS 5000 /* the loop sleeps this long only if not woken */
#define TRICKLE 10        /* posts per producer 20 ms apart, then full speed */
#define NGROUPS 10
#define MAXPROD 16

static int g_nconn = 1000, g_nprod = 4, g_nmsg = 2500;
static int g_efd = -1;
static int g_failed;

/* One in-memory connection: the 101 is skipped, frames are parsed. */
typedef struct mconn {
  int id;
  ws_conn *conn;
  int open;
  int in_body;          /* past the 101's blank line */
  int crlf;             /* matched bytes of "\r\n\r\n" */
  unsigned char buf[512];
  size_t len;           /* bytes of an incomplete frame */
  int last[MAXPROD];    /* last seq seen per producer, -1 none */
  uint64_t got;
} mconn;

static mconn *g_conns;
static uint64_t g_expected_total, g_got_total;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  if (++g_failed > 20) exit(1);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- who gets what --------------------------------------------------- */

/* Out of 8 consecutive seqs: 1 to all, 3 to a device, 2 to a user, 2 to a
 * group (a broadcast to all costs NCONN deliveries: keep it rare). */
enum { T_ALL, T_DEVICE, T_USER, T_GROUP };
static int kind_of(int seq) {
  static const int k[8] = {T_ALL, T_DEVICE, T_USER, T_GROUP,
                           T_DEVICE, T_USER, T_GROUP, T_DEVICE};
  return k[seq % 8];
}
static int pick(int p, int seq, int mod) {
  return (int)(((unsigned)seq * 2654435761u + (unsigned)p * 40503u) %
               (unsigned)mod);
}
static int user_of(int id) { return id % NUSERS; }
static int group_of(int id) { return (id / 7) % NGROUPS; }

static int targets(int p, int seq, int id) {
  switch (kind_of(seq)) {
  case T_ALL: return 1;
  case T_DEVICE: return pick(p, seq, g_nconn) == id;
  case T_USER: return pick(p, seq, NUSERS) == user_of(id);
  default: return pick(p, seq, NGROUPS) == group_of(id);
  }
}

/* ---- server callbacks (loop thread) ----------------------------------- */

static void on_message(mconn *m, const unsigned char *p, size_t n) {
  int prod, seq, t;
  if (sscanf((const char *)p, "{\"action\":\"m\",\"data\":{\"p\":%d,\"s\":%d}}",
             &prod, &seq) != 2 ||
      prod < 0 || prod >= g_nprod || seq < 0 || seq >= g_nmsg) {
    fail("conn %d: unexpected message %.*s", m->id, (int)n, (const char *)p);
    return;
  }
  if (!targets(prod, seq, m->id))
    fail("conn %d: got (%d,%d) not meant for it", m->id, prod, seq);
  if (seq <= m->last[prod])
    fail("conn %d: (%d,%d) after seq %d: duplicate or reordered", m->id, prod,
         seq, m->last[prod]);
  for (t = m->last[prod] + 1; t < seq; t++)
    if (targets(prod, t, m->id)) {
      fail("conn %d: (%d,%d) missing before seq %d", m->id, prod, t, seq);
      break;
    }
  m->last[prod] = seq;
  m->got++;
  g_got_total++;
}

/* Parses unmasked server frames out of the byte stream. */
static ssize_t t_send(ws_conn *c, void *t, const void *d, size_t n) {
  mconn *m = t;
  const unsigned char *p = d;
  size_t i = 0;
  (void)c;
  while (!m->in_body && i < n) {
    static const char end[] = "\r\n\r\n";
    m->crlf = p[i++] == (unsigned char)end[m->crlf] ? m->crlf + 1
              : p[i - 1] == '\r'                    ? 1
                                                    : 0;
    if (m->crlf == 4) m->in_body = 1;
  }
  while (i < n) {
    size_t take = n - i, need, hdr, plen;
    if (take > sizeof(m->buf) - m->len) take = sizeof(m->buf) - m->len;
    memcpy(m->buf + m->len, p + i, take);
    m->len += take;
    i += take;
    for (;;) {
      if (m->len < 2) break;
      plen = m->buf[1] & 0x7f;
      hdr = 2;
      if (plen == 126) {
        if (m->len < 4) break;
        plen = (size_t)m->buf[2] << 8 | m->buf[3];
        hdr = 4;
      } else if (plen == 127) {
        fail("conn %d: 64-bit frame length", m->id);
        return -1;
      }
      need = hdr + plen;
      if (need > sizeof(m->buf) - 1) {
        fail("conn %d: frame too large (%zu)", m->id, need);
        return -1;
      }
      if (m->len < need) break;
      if ((m->buf[0] & 0x0f) == 0x1) {
        unsigned char save = m->buf[need];
        m->buf[need] = 0; /* sscanf needs a terminator */
        on_message(m, m->buf + hdr, plen);
        m->buf[need] = save;
      } else if ((m->buf[0] & 0x0f) != 0x8 && (m->buf[0] & 0x0f) != 0x9) {
        fail("conn %d: opcode %d", m->id, m->buf[0] & 0x0f);
      }
      memmove(m->buf, m->buf + need, m->len - need);
      m->len -= need;
    }
  }
  return (ssize_t)n;
}

static int t_close(ws_conn *c, void *t) {
  mconn *m = t;
  (void)c;
  m->open = 0;
  m->conn = NULL;
  return 0;
}

static int on_open(ws_conn *c, void *ud) {
  mconn *m = ws_conn_transport(c);
  char name[32];
  (void)ud;
  snprintf(name, sizeof(name), "u%d", user_of(m->id));
  if (ws_conn_set_user(c, name) != WS_OK) fail("set_user");
  snprintf(name, sizeof(name), "g%d", group_of(m->id));
  if (ws_conn_join(c, name) != WS_OK) fail("join");
  m->open = 1;
  return 0;
}

/* Posting threads: wake the loop. */
static int on_wake(ws_server *s, void *ud) {
  uint64_t one = 1;
  ssize_t w;
  (void)s, (void)ud;
  do
    w = write(g_efd, &one, sizeof(one));
  while (w < 0 && errno == EINTR);
  return 0;
}

/* ---- producers --------------------------------------------------------- */

typedef struct producer {
  pthread_t th;
  int p;
  ws_server *srv;
  uint64_t posted;
} producer;

static void *produce(void *arg) {
  producer *pr = arg;
  char name[32], data[64];
  int seq;
  for (seq = 0; seq < g_nmsg; seq++) {
    int kind = kind_of(seq), target, n, rc;
    const char *nm = NULL;
    switch (kind) {
    case T_ALL: target = WS_POST_ALL; break;
    case T_DEVICE:
      target = WS_POST_DEVICE;
      snprintf(name, sizeof(name), "d%d", pick(pr->p, seq, g_nconn));
      nm = name;
      break;
    case T_USER:
      target = WS_POST_USER;
      snprintf(name, sizeof(name), "u%d", pick(pr->p, seq, NUSERS));
      nm = name;
      break;
    default:
      target = WS_POST_GROUP;
      snprintf(name, sizeof(name), "g%d", pick(pr->p, seq, NGROUPS));
      nm = name;
      break;
    }
    n = snprintf(data, sizeof(data), "{\"p\":%d,\"s\":%d}", pr->p, seq);
    rc = ws_post(pr->srv, target, nm, "m", data, (size_t)n);
    if (rc != WS_OK) {
      fprintf(stderr, "FAIL: ws_post: %s\n", ws_strerror(rc));
      exit(1); /* the loop would wait for it forever */
    }
    pr->posted++;
    /* The first posts trickle in, so the loop has delivered each one and
     * sleeps when the next comes: only the wake-up brings it in. (At full
     * speed the queue may never empty, and a missing wake-up goes
     * unseen.) */
    if (seq < TRICKLE) {
      struct timespec ts = {0, 20000000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

/* ---- main: the loop thread --------------------------------------------- */

int main(int argc, char **argv) {
  static const char req_fmt[] =
      "GET /ws?device_id=d%d HTTP/1.1\r\nHost: test\r\n"
      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  producer prods[MAXPROD];
  ws_config cfg;
  ws_server *srv;
  ws_stats st;
  uint64_t start;
  int i, p, seq, rc, next;

  if (argc > 1) g_nconn = atoi(argv[1]);
  if (argc > 2) g_nprod = atoi(argv[2]);
  if (argc > 3) g_nmsg = atoi(argv[3]);
  if (g_nconn < 1 || g_nprod < 1 || g_nprod > MAXPROD || g_nmsg < 1) {
    fprintf(stderr, "usage: %s [NCONN [NPROD(<=%d) [NMSG]]]\n", argv[0],
            MAXPROD);
    return 2;
  }
  g_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  g_conns = calloc((size_t)g_nconn, sizeof(*g_conns));
  if (g_efd < 0 || g_conns == NULL) return 1;

  ws_config_init(&cfg);
  cfg.send = t_send;
  cfg.close = t_close;
  cfg.on_open = on_open;
  cfg.wake = on_wake;
  cfg.keep_headers = 0;
  cfg.ping_interval_ms = 0; /* time is real here: keep the stream ours */
  cfg.idle_timeout_ms = 0;
  if ((rc = ws_server_new(&cfg, &srv)) != WS_OK) {
    fprintf(stderr, "ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  ws_server_tick(srv, now_ms());
  for (i = 0; i < g_nconn; i++) {
    char req[512];
    int n = snprintf(req, sizeof(req), req_fmt, i);
    mconn *m = &g_conns[i];
    m->id = i;
    for (p = 0; p < MAXPROD; p++) m->last[p] = -1;
    if (ws_conn_new(srv, m, &m->conn) != WS_OK ||
        ws_conn_feed(m->conn, req, (size_t)n) != WS_OK || !m->open) {
      fprintf(stderr, "FAIL: connection %d did not open\n", i);
      return 1;
    }
  }
  for (p = 0; p < g_nprod; p++)
    for (seq = 0; seq < g_nmsg; seq++)
      for (i = 0; i < g_nconn; i++) g_expected_total += (uint64_t)targets(p, seq, i);

  start = now_ms();
  for (p = 0; p < g_nprod; p++) {
    prods[p].p = p;
    prods[p].srv = srv;
    prods[p].posted = 0;
    if (pthread_create(&prods[p].th, NULL, produce, &prods[p]) != 0) return 1;
  }
  /* The loop: sleep on the eventfd until woken (or the tick says it is
   * due again), tick (which drains the posts). Nothing else wakes it, so a
   * wake-up the library failed to give leaves posts undelivered while it
   * sleeps: after WAKE_LOST_MS asleep with deliveries missing, that is the
   * failure (and a lost message shows the same way, without waiting for
   * a long deadline). */
  next = ws_server_tick(srv, now_ms());
  while (g_got_total < g_expected_total) {
    struct pollfd pfd = {.fd = g_efd, .events = POLLIN};
    uint64_t v;
    int r = poll(&pfd, 1, next == 0 ? 0 : WAKE_LOST_MS);
    if (r == 0 && next != 0) {
      fail("asleep %d ms with %" PRIu64 " of %" PRIu64 " delivered: a lost "
           "wake-up or message", WAKE_LOST_MS, g_got_total, g_expected_total);
      break;
    }
    if (read(g_efd, &v, sizeof(v)) < 0 && errno != EAGAIN) break;
    next = ws_server_tick(srv, now_ms());
  }
  for (p = 0; p < g_nprod; p++) pthread_join(prods[p].th, NULL);

  /* Nothing meant for a connection may be missing after its last seq. */
  for (i = 0; i < g_nconn; i++)
    for (p = 0; p < g_nprod; p++)
      for (seq = g_conns[i].last[p] + 1; seq < g_nmsg; seq++)
        if (targets(p, seq, i)) {
          fail("conn %d: (%d,%d) never arrived", i, p, seq);
          break;
        }
  if (g_got_total != g_expected_total)
    fail("delivered %" PRIu64 " of %" PRIu64, g_got_total, g_expected_total);
  ws_server_stats(srv, &st, sizeof(st));
  if (st.conns_open != (uint64_t)g_nconn || st.drops_queue_full != 0 ||
      st.unknown_targets != 0)
    fail("stats: open %" PRIu64 " drops %" PRIu64 " unknown %" PRIu64,
         st.conns_open, st.drops_queue_full, st.unknown_targets);

  /* After shutdown starts, posting is refused. */
  ws_server_shutdown(srv, 0);
  if ((rc = ws_post(srv, WS_POST_ALL, NULL, "m", "1", 1)) != WS_ESHUTDOWN)
    fail("ws_post after shutdown: %s", ws_err_name(rc));
  ws_server_tick(srv, now_ms() + 1);
  ws_server_free(srv);
  close(g_efd);
  free(g_conns);

  printf("post-stress: %d conns, %d producers x %d posts, %" PRIu64
         " deliveries checked in %" PRIu64 " ms: %s\n",
         g_nconn, g_nprod, g_nmsg, g_got_total, now_ms() - start,
         g_failed ? "FAILED" : "ok");
  return g_failed ? 1 : 0;
}
