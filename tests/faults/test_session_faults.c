/*
 * Host faults at every point of a session, in process (no sockets).
 *
 * One scripted session drives four connections through everything a
 * server does: upgrades fed whole, byte by byte and in halves, replies,
 * broadcasts from a handler and from the host, a fragmented message with
 * a ping between the fragments, server pings after a tick, a close started
 * by a handler, by the peer and by the host, a graceful shutdown, and the
 * server's destruction. The application's on_close broadcasts too, as
 * real applications do.
 *
 * A clean run counts the transport's send calls (N) and the script's steps
 * (S). Then, for every K, the session runs again with one fault at K:
 *   - send (or sendv) returns -1 at call K;
 *   - the host aborts the sending connection inside send call K (then
 *     reports failure, or reports the bytes written);
 *   - the host aborts another connection inside send call K;
 *   - the host destroys the server inside send call K;
 *   - send writes 1 byte, or nothing (would block), at call K;
 *   - the host aborts connection X (each of the four) before step K;
 *   - the host aborts another connection inside the K-th close callback.
 * Each run must end with: no crash (the tier also runs under ASan), no
 * callback for a connection after its close callback, on_close exactly once
 * for every connection that opened and never for one that did not, the
 * close callback exactly once for every connection, a well-formed output
 * stream per connection (HTTP head, then whole frames, nothing after a
 * close frame; a cut frame only when the connection was aborted), and the
 * counting allocator back to zero.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "wsmux.h"

#define NCONN 4

enum fault {
  F_NONE,
  F_SEND_FAIL,       /* send returns -1 at call K */
  F_ABORT_SELF_FAIL, /* ws_conn_abort(self) in send K, returns -1 */
  F_ABORT_SELF_OK,   /* ws_conn_abort(self) in send K, returns len */
  F_ABORT_OTHER,     /* ws_conn_abort(next live conn) in send K */
  F_FREE_SERVER,     /* ws_server_free in send K, returns len */
  F_SHORT,           /* send K writes 1 byte */
  F_BLOCK,           /* send K writes nothing (would block) */
  F_ABORT_STEP,      /* ws_conn_abort(conn victim) before step K */
  F_ABORT_IN_CLOSE   /* ws_conn_abort(next live) in the K-th close cb */
};

typedef struct tconn {
  ws_conn *c; /* NULL once the close callback ran */
  int used;   /* ws_conn_new succeeded */
  int opens, on_closes, closes, close_code;
  unsigned char *out;
  size_t len, cap;
} tconn;

static struct {
  ws_server *s;
  tconn t[NCONN];
  int fault, victim, sendv;
  long k;
  long sends, steps, close_cbs;
  int destroyed; /* ws_server_free was called */
  uint64_t now;
  char why[256];
} G;

/* A broken rule is recorded, not asserted inside the library's frames. */
static void violation(const char *fmt, ...) {
  va_list ap;
  if (G.why[0]) return;
  va_start(ap, fmt);
  vsnprintf(G.why, sizeof(G.why), fmt, ap);
  va_end(ap);
}

static tconn *tc_of(ws_conn *c, void *transport, const char *what) {
  tconn *t = transport;
  if (t->c != c) violation("%s on conn %d after its close callback", what,
                           (int)(t - G.t));
  return t;
}

static void capture(tconn *t, const void *p, size_t n) {
  if (t->len + n > t->cap) {
    t->cap = (t->len + n) * 2 + 256;
    t->out = realloc(t->out, t->cap);
    cr_assert_not_null(t->out);
  }
  memcpy(t->out + t->len, p, n);
  t->len += n;
}

static void abort_other(tconn *self) {
  int i, me = (int)(self - G.t);
  for (i = 1; i < NCONN; i++) {
    tconn *o = &G.t[(me + i) % NCONN];
    if (o->c) {
      ws_conn_abort(o->c);
      return;
    }
  }
}

/* The fault for this send call, if it is call K: how many of n bytes to
 * accept (-1: fail), and *after, what the host does once it has written
 * them (a host writes, then finds out the socket is gone). */
static ssize_t send_budget(ws_conn *c, size_t n, int *after) {
  *after = F_NONE;
  if (++G.sends != G.k) return (ssize_t)n;
  switch (G.fault) {
  case F_SEND_FAIL: return -1;
  case F_ABORT_SELF_FAIL: ws_conn_abort(c); return -1;
  case F_ABORT_SELF_OK:
  case F_ABORT_OTHER:
  case F_FREE_SERVER: *after = G.fault; return (ssize_t)n;
  case F_SHORT: return n > 0 ? 1 : 0;
  case F_BLOCK: return 0;
  default: return (ssize_t)n;
  }
}

static void send_after(ws_conn *c, tconn *t, int after) {
  switch (after) {
  case F_ABORT_SELF_OK: ws_conn_abort(c); break;
  case F_ABORT_OTHER: abort_other(t); break;
  case F_FREE_SERVER:
    G.destroyed = 1;
    ws_server_free(G.s);
    break;
  default: break;
  }
}

static ssize_t t_send(ws_conn *c, void *transport, const void *d, size_t n) {
  tconn *t = tc_of(c, transport, "send");
  int after;
  ssize_t w = send_budget(c, n, &after);
  if (w > 0) capture(t, d, (size_t)w);
  send_after(c, t, after);
  return w;
}

static ssize_t t_sendv(ws_conn *c, void *transport, const ws_iovec *iov,
                       int iovcnt) {
  tconn *t = tc_of(c, transport, "sendv");
  size_t total = 0, left;
  ssize_t w;
  int i, after;
  for (i = 0; i < iovcnt; i++) total += iov[i].len;
  w = send_budget(c, total, &after);
  for (i = 0, left = w > 0 ? (size_t)w : 0; i < iovcnt && left; i++) {
    size_t n = iov[i].len < left ? iov[i].len : left;
    capture(t, iov[i].base, n);
    left -= n;
  }
  send_after(c, t, after);
  return w;
}

static int t_want(ws_conn *c, void *transport, int want) {
  tc_of(c, transport, "want_write");
  (void)want;
  return 0;
}

static int t_close(ws_conn *c, void *transport) {
  tconn *t = tc_of(c, transport, "close");
  t->closes++;
  if (t->closes > 1) violation("close callback twice on conn %d", (int)(t - G.t));
  if (t->on_closes != t->opens)
    violation("close callback before on_close on conn %d", (int)(t - G.t));
  t->c = NULL;
  if (G.fault == F_ABORT_IN_CLOSE && ++G.close_cbs == G.k) abort_other(t);
  return 0;
}

static int on_open(ws_conn *c, void *ud) {
  tconn *t = ws_conn_transport(c);
  (void)ud;
  t->opens++;
  return 0;
}

/* Applications announce departures: a broadcast from inside on_close. */
static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  tconn *t = ws_conn_transport(c);
  (void)reason, (void)ud;
  t->on_closes++;
  t->close_code = code;
  if (t->on_closes > 1) violation("on_close twice on conn %d", (int)(t - G.t));
  if (t->closes) violation("on_close after the close callback");
  ws_broadcast_json(ws_conn_server(c), "left", "1", 1, NULL, 0);
  return 0;
}

/* ---- handlers -------------------------------------------------------- */

static int h_ping(ws_conn *c, const ws_msg *m, void *ud) {
  size_t n;
  const char *d = ws_msg_data_json(m, &n);
  (void)ud;
  return ws_conn_send_json(c, "pong", d ? d : "\"\"", d ? n : 2);
}

static int h_bcast(ws_conn *c, const ws_msg *m, void *ud) {
  size_t n;
  const char *d = ws_msg_data_json(m, &n);
  (void)ud;
  return ws_broadcast_json(ws_conn_server(c), "bc", d ? d : "0", d ? n : 1,
                           NULL, 0) < 0
             ? -1
             : 0;
}

static int h_bye(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_conn_close(c, 4100, "bye");
}

/* ---- client side ------------------------------------------------------ */

static size_t cframe(unsigned char *out, int fin, int op, const void *p,
                     size_t n) {
  static const unsigned char mask[4] = {0x11, 0x22, 0x33, 0x44};
  size_t h = 2, i;
  out[0] = (unsigned char)((fin ? 0x80 : 0) | op);
  if (n < 126) {
    out[1] = (unsigned char)(0x80 | n);
  } else {
    out[1] = 0x80 | 126;
    out[2] = (unsigned char)(n >> 8);
    out[3] = (unsigned char)n;
    h = 4;
  }
  memcpy(out + h, mask, 4);
  for (i = 0; i < n; i++)
    out[h + 4 + i] = ((const unsigned char *)p)[i] ^ mask[i & 3];
  return h + 4 + n;
}

static int alive(int i) { return !G.destroyed && G.t[i].c != NULL; }

/* Feeds bytes to conn i: whole (mode 0), one byte per call (1) or in two
 * halves (2); stops once the connection ends. */
static void feed(int i, const void *p, size_t n, int mode) {
  const unsigned char *b = p;
  size_t off = 0;
  while (off < n && alive(i)) {
    size_t step = mode == 1 ? 1 : mode == 2 && off == 0 ? n / 2 : n - off;
    if (step == 0) step = n - off;
    if (ws_conn_feed(G.t[i].c, b + off, step) != WS_OK) return;
    off += step;
  }
}

static void feed_frame(int i, int fin, int op, const char *s, int mode) {
  unsigned char buf[256];
  feed(i, buf, cframe(buf, fin, op, s, strlen(s)), mode);
}

static void feed_close(int i, int code) {
  unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};
  unsigned char buf[16];
  if (alive(i)) feed(i, buf, cframe(buf, 1, 8, p, 2), 0);
}

static void new_conn(int i) {
  tconn *t = &G.t[i];
  if (G.destroyed) return;
  cr_assert_eq(ws_conn_new(G.s, t, &t->c), WS_OK);
  t->used = 1;
}

static void upgrade(int i, int mode) {
  char req[256];
  int n = snprintf(req, sizeof(req),
                   "GET /ws?device_id=dev%d HTTP/1.1\r\nHost: h\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   i);
  new_conn(i);
  feed(i, req, (size_t)n, mode);
}

/* Writable events for everything that asked, a bounded number of rounds
 * (a would-block fault leaves output queued until the next pump). */
static void pump(void) {
  int round, i;
  for (round = 0; round < 8; round++)
    for (i = 0; i < NCONN; i++)
      if (alive(i) && ws_conn_want_write(G.t[i].c)) ws_conn_writable(G.t[i].c);
}

static void tick(uint64_t advance) {
  G.now += advance;
  if (!G.destroyed) ws_server_tick(G.s, G.now);
}

/* ---- the script ------------------------------------------------------- */

static void step(int which) {
  switch (which) {
  case 0: upgrade(0, 0); break;
  case 1: upgrade(1, 1); break;
  case 2: upgrade(2, 2); break;
  case 3: feed_frame(0, 1, 1, "{\"action\":\"ping\",\"data\":1}", 0); break;
  case 4: feed_frame(1, 1, 1, "{\"action\":\"bcast\",\"data\":[1,2]}", 0); break;
  case 5:
    if (!G.destroyed) ws_broadcast_json(G.s, "news", "{\"n\":5}", 7, NULL, 0);
    break;
  case 6:
    if (alive(1)) ws_conn_send_json(G.t[1].c, "direct", "{}", 2);
    if (!G.destroyed)
      ws_send_device(G.s, "dev2", "to_device", NULL);
    break;
  case 7: feed_frame(0, 1, 9, "are you there", 1); break;
  case 8: /* a fragmented ping action with a control ping in between */
    feed_frame(2, 0, 1, "{\"action\":\"ping\",", 0);
    feed_frame(2, 1, 9, "mid", 0);
    feed_frame(2, 1, 0, "\"data\":\"frag\"}", 0);
    break;
  case 9: { /* two messages in one feed */
    unsigned char buf[256];
    size_t n = cframe(buf, 1, 1, "{\"action\":\"ping\",\"data\":2}", 26);
    n += cframe(buf + n, 1, 1, "{\"action\":\"bcast\",\"data\":3}", 27);
    feed(1, buf, n, 2);
    break;
  }
  case 10: tick(31000); break; /* server pings to everyone */
  case 11: feed_frame(2, 1, 1, "{\"action\":\"bye\"}", 0); break;
  case 12: feed_close(2, 4100); break;
  case 13: feed_close(0, 1000); break;
  case 14:
    if (alive(1)) ws_conn_close(G.t[1].c, 1001, "host closes");
    break;
  case 15: feed_close(1, 1001); break;
  case 16: upgrade(3, 0); break;
  case 17:
    if (!G.destroyed) ws_server_shutdown(G.s, 1000);
    break;
  case 18: feed_close(3, 1001); break;
  case 19: tick(2000); break;
  }
}
#define NSTEPS 20

/* Output of conn t: HTTP head then whole frames, nothing after a close
 * frame; a cut frame only on an aborted (1006) connection. */
static void check_stream(int i) {
  tconn *t = &G.t[i];
  const unsigned char *p = t->out, *end;
  size_t left = t->len;
  int closed = 0;
  if (left == 0) return;
  end = memmem(p, left, "\r\n\r\n", 4);
  if (end == NULL) {
    if (t->close_code != 1006 && t->opens)
      violation("conn %d: cut HTTP head", i);
    return;
  }
  if (memcmp(p, "HTTP/1.1 ", 9) != 0) violation("conn %d: bad head", i);
  left -= (size_t)(end + 4 - p);
  p = end + 4;
  while (left > 0) {
    size_t h = 2, n;
    if (closed) {
      violation("conn %d: bytes after the close frame", i);
      return;
    }
    if (left < 2) break;
    n = p[1] & 0x7f;
    if (p[1] & 0x80) violation("conn %d: masked server frame", i);
    if (n == 126) {
      if (left < 4) break;
      n = (size_t)p[2] << 8 | p[3];
      h = 4;
    } else if (n == 127) {
      violation("conn %d: unexpected 64-bit length", i);
      return;
    }
    if (left < h + n) break;
    if ((p[0] & 0x0f) == 8) closed = 1;
    p += h + n;
    left -= h + n;
  }
  if (left > 0 && t->close_code != 1006)
    violation("conn %d: cut frame (%zu bytes) but closed with %d", i, left,
              t->close_code);
}

/* One run of the session with one fault; asserts the run's outcome. */
static void run(int fault, long k, int victim, int sendv) {
  ws_config cfg;
  ws_mux *mux;
  int i, n;
  memset(&G, 0, sizeof(G));
  G.fault = fault;
  G.k = k;
  G.victim = victim;
  G.sendv = sendv;
  G.now = 1000;
  cr_assert_eq(test_alloc_live(), 0);
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  cfg.send = t_send;
  cfg.sendv = sendv ? t_sendv : NULL;
  cfg.want_write = t_want;
  cfg.close = t_close;
  cfg.on_open = on_open;
  cfg.on_close = on_close;
  mux = ws_mux_new(&cfg.alloc);
  cr_assert_not_null(mux);
  cr_assert_eq(ws_mux_handle(mux, "ping", h_ping, NULL), WS_OK);
  cr_assert_eq(ws_mux_handle(mux, "bcast", h_bcast, NULL), WS_OK);
  cr_assert_eq(ws_mux_handle(mux, "bye", h_bye, NULL), WS_OK);
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cr_assert_eq(ws_server_new(&cfg, &G.s), WS_OK);
  ws_server_tick(G.s, G.now);
  for (n = 0; n < NSTEPS; n++) {
    G.steps = n + 1;
    if (fault == F_ABORT_STEP && k == n + 1 && alive(victim))
      ws_conn_abort(G.t[victim].c);
    step(n);
    pump();
  }
  if (!G.destroyed) ws_server_free(G.s);
  ws_mux_free(mux);
  for (i = 0; i < NCONN; i++) {
    tconn *t = &G.t[i];
    if (t->used && t->closes != 1)
      violation("conn %d: %d close callbacks", i, t->closes);
    if (t->on_closes != t->opens)
      violation("conn %d: opened %d, on_close %d", i, t->opens, t->on_closes);
    check_stream(i);
    free(t->out);
  }
  cr_assert(G.why[0] == '\0', "fault %d at %ld (victim %d, sendv %d): %s",
            fault, k, victim, sendv, G.why);
  cr_assert_eq(test_alloc_live(), 0,
               "fault %d at %ld (sendv %d): %ld allocations leaked", fault, k,
               sendv, test_alloc_live());
  cr_assert_eq(test_alloc_live_bytes(), 0);
}

/* Send calls of a clean session. */
static long clean_sends(int sendv) {
  run(F_NONE, 0, 0, sendv);
  return G.sends;
}

static void every_send(int fault, const char *name) {
  long total = 0;
  int sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    long n = clean_sends(sendv), k;
    cr_assert_gt(n, 20, "the clean session made only %ld send calls", n);
    for (k = 1; k <= n + 1; k++) run(fault, k, 0, sendv);
    total += n + 1;
  }
  printf("session %s: %ld runs\n", name, total);
}

Test(session_faults, clean_session) {
  int i;
  run(F_NONE, 0, 0, 1);
  for (i = 0; i < NCONN; i++) {
    cr_assert_eq(G.t[i].opens, 1, "conn %d did not open", i);
    cr_assert_eq(G.t[i].on_closes, 1);
  }
  /* The handler's close, the peer's, the host's, the shutdown's. */
  cr_assert_eq(G.t[0].close_code, 1000);
  cr_assert_eq(G.t[1].close_code, 1001);
  cr_assert_eq(G.t[2].close_code, 4100);
  cr_assert_eq(G.t[3].close_code, 1001);
}

Test(session_faults, send_fails_at_every_call) {
  every_send(F_SEND_FAIL, "send returns -1 at call K");
}

Test(session_faults, host_aborts_inside_send_reporting_failure) {
  every_send(F_ABORT_SELF_FAIL, "abort self inside send K, -1");
}

Test(session_faults, host_aborts_inside_send_reporting_bytes) {
  every_send(F_ABORT_SELF_OK, "abort self inside send K, bytes written");
}

Test(session_faults, host_aborts_another_inside_send) {
  every_send(F_ABORT_OTHER, "abort another inside send K");
}

Test(session_faults, server_freed_inside_send) {
  every_send(F_FREE_SERVER, "ws_server_free inside send K");
}

Test(session_faults, short_write_at_every_call) {
  every_send(F_SHORT, "1-byte write at call K");
}

Test(session_faults, would_block_at_every_call) {
  every_send(F_BLOCK, "would block at call K");
}

Test(session_faults, host_closes_each_conn_before_every_step) {
  long runs = 0;
  int v, k, sendv;
  for (sendv = 0; sendv < 2; sendv++)
    for (v = 0; v < NCONN; v++)
      for (k = 1; k <= NSTEPS; k++, runs++) run(F_ABORT_STEP, k, v, sendv);
  printf("session abort conn X before step K: %ld runs\n", runs);
}

Test(session_faults, host_aborts_another_inside_close_callback) {
  long runs = 0;
  int k, sendv;
  for (sendv = 0; sendv < 2; sendv++)
    for (k = 1; k <= NCONN; k++, runs++) run(F_ABORT_IN_CLOSE, k, 0, sendv);
  printf("session abort another inside close callback K: %ld runs\n", runs);
}
