/*
 * Conformance, mode 1: every case of cases.c against a ws_server built in
 * this process with the ping/pong handlers (examples/pingpong.c's mux:
 * ping, echo, broadcast, and a page at "/"), over mem_transport.
 *
 * Each case runs three ways, and passes only if all three match exactly:
 *   chunks  the script's chunks one feed each, fast transport with sendv;
 *   whole   the whole script in one feed, fast transport with send;
 *   bytes   one byte per feed, a transport that takes 3 bytes per writable
 *           turn (want_write / ws_conn_writable drive the output).
 * Timing is checked where the net runner cannot: a case that closes must
 * close while its stop_after chunk is fed (not before: no early close; not
 * after: fail fast), the close callback fires exactly once and nothing is
 * sent after it, a case that stays open is not closed until the tail, and
 * the counting allocator is back to zero live allocations after
 * ws_server_free. At a case's sync points (chunks and bytes) the frames
 * due by then must be out, and no more.
 *
 * One Criterion test per group; each prints
 *   conformance[mem] <group>: N passed, N failed
 * which tests/conformance/tier.mk adds up.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

enum variant { V_CHUNKS = 0, V_WHOLE, V_BYTES, V_COUNT };
static const char *const variant_names[V_COUNT] = {
    [V_CHUNKS] = "chunks", [V_WHOLE] = "whole", [V_BYTES] = "bytes"};

/* ---- the ping/pong handlers (as in examples/pingpong.c) ------------- */

static int on_ping(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

static int on_echo(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud;
  return ws_conn_send_text(c, m->text, m->len);
}

static int on_broadcast(ws_conn *c, const ws_msg *m, void *ud) {
  size_t len;
  const char *data = ws_msg_data_json(m, &len);
  ws_server *s = ws_conn_server(c);
  (void)ud;
  if (data == NULL) return ws_broadcast(s, "bc", NULL, NULL, 0) < 0 ? -1 : 0;
  return ws_broadcast_json(s, "bc", data, len, NULL, 0) < 0 ? -1 : 0;
}

static int on_http(ws_conn *c, const ws_request *req, void *ud) {
  static const char page[] = "<!doctype html><title>pingpong</title>\n";
  (void)ud;
  if (strcmp(ws_request_path(req), "/") == 0)
    return ws_conn_http_respond(c, 200, "text/html; charset=utf-8", page,
                                sizeof(page) - 1);
  return 0;
}

/* ---- one run -------------------------------------------------------- */

typedef struct run {
  const conf_case *cc;
  int variant;
  ws_server *s;
  ws_mux *mux;
  ws_conn *c;
  mem_transport t;
  char why[256];
} run;

static int failf(run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int failf(run *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->why, sizeof(r->why), fmt, ap);
  va_end(ap);
  return -1;
}

/* Grants writable turns until the queue is empty or the connection is
 * gone. Bounded: each turn moves at least one byte. */
static void drain(run *r) {
  size_t guard = 0;
  while (!r->t.closed && ws_conn_want_write(r->c) && guard++ < 10000000) {
    mem_turn(&r->t);
    ws_conn_writable(r->c);
  }
}

/* Feeds p[0..n) in this run's style; stops feeding once closed. */
static void feed(run *r, const uint8_t *p, size_t n) {
  size_t i;
  if (r->variant != V_BYTES) {
    if (!r->t.closed && n) ws_conn_feed(r->c, p, n);
    drain(r);
    return;
  }
  for (i = 0; i < n && !r->t.closed; i++) {
    ws_conn_feed(r->c, p + i, 1);
    drain(r);
  }
}

static int setup(run *r) {
  ws_config cfg;
  int rc;
  r->mux = ws_mux_new(NULL);
  if (r->mux == NULL || ws_mux_handle(r->mux, "ping", on_ping, NULL) ||
      ws_mux_handle(r->mux, "echo", on_echo, NULL) ||
      ws_mux_handle(r->mux, "broadcast", on_broadcast, NULL))
    return failf(r, "mux setup failed");
  ws_config_init(&cfg);
  mem_transport_config(&cfg, r->variant == V_CHUNKS);
  cfg.alloc = test_alloc();
  cfg.handler = ws_mux_serve;
  cfg.handler_data = r->mux;
  cfg.on_http = on_http;
  cfg.keep_headers = 0;
  if ((rc = ws_server_new(&cfg, &r->s)) != WS_OK)
    return failf(r, "ws_server_new: %s", ws_strerror(rc));
  r->t.turn = r->variant == V_BYTES ? 3 : 0;
  mem_turn(&r->t);
  if ((rc = ws_conn_new(r->s, &r->t, &r->c)) != WS_OK)
    return failf(r, "ws_conn_new: %s", ws_strerror(rc));
  return 0;
}

static int verdict(run *r, int closed, int tail_sent) {
  return conf_verify(r->cc, r->t.out, r->t.len, closed, tail_sent, r->why,
                     sizeof(r->why));
}

/* At a sync point (chunks and bytes): still open, exactly the frames due
 * so far in, and they match. */
static int check_sync(run *r, size_t i) {
  const conf_sync *y = conf_sync_at(r->cc, i);
  size_t n = conf_frames_in(r->cc, r->t.out, r->t.len);
  if (r->t.closed)
    return failf(r, "closed at the sync point after chunk %zu (fails early)",
                 i);
  if (n != y->frames)
    return failf(r, "%zu frames at the sync point after chunk %zu, "
                 "expected %zu", n, i, y->frames);
  return verdict(r, 0, 0) == CONF_FAIL ? -1 : 0;
}

static int play(run *r) {
  const conf_case *cc = r->cc;
  char req[512];
  size_t rl = 0, i, start = 0, tail_len;
  const uint8_t *tail;
  int v;

  if (!cc->raw_http) {
    rl = conf_upgrade_request(req, sizeof(req), "mem");
    if (r->variant != V_WHOLE) {
      feed(r, (const uint8_t *)req, rl);
      if (r->t.closed) return failf(r, "closed during the upgrade request");
    }
  }
  if (r->variant == V_WHOLE) {
    uint8_t *all = malloc(rl + cc->len + 1);
    if (all == NULL) return failf(r, "out of memory");
    memcpy(all, req, rl);
    memcpy(all + rl, cc->bytes, cc->len);
    feed(r, all, rl + cc->len);
    free(all);
  } else {
    for (i = 0; i < cc->nchunks; i++) {
      size_t end = cc->ends[i];
      if (r->t.closed) {
        if (i <= cc->stop_after)
          return failf(r, "closed before chunk %zu of %zu (fails early)", i,
                       cc->nchunks);
        break; /* the remaining chunks are not needed */
      }
      if (i > cc->stop_after && cc->end == CONF_CLOSES)
        return failf(r, "still open after chunk %zu (fails late)",
                     cc->stop_after);
      feed(r, cc->bytes + start, end - start);
      start = end;
      if (conf_sync_at(cc, i) && check_sync(r, i) != 0) return -1;
    }
  }
  if (r->t.closes > 1) return failf(r, "close callback fired %d times",
                                    r->t.closes);
  if (cc->end == CONF_CLOSES) {
    if (!r->t.closed)
      return failf(r, "not closed after chunk %zu (fails late)",
                   cc->stop_after);
    v = verdict(r, 1, 0);
    if (v == CONF_PASS) return 0;
    return v == CONF_FAIL ? -1 : failf(r, "output incomplete");
  }
  v = verdict(r, r->t.closed, 0);
  if (v != CONF_READY_TAIL) {
    if (v == CONF_FAIL) return -1;
    return failf(r, "%s", r->t.closed ? "closed early" : "output incomplete");
  }
  tail_len = conf_tail(cc, &tail);
  feed(r, tail, tail_len);
  if (!r->t.closed) return failf(r, "not closed after the tail");
  if (r->t.closes > 1) return failf(r, "close callback fired %d times",
                                    r->t.closes);
  v = verdict(r, 1, 1);
  if (v == CONF_PASS) return 0;
  return v == CONF_FAIL ? -1 : failf(r, "output incomplete");
}

static int run_case(const conf_case *cc, int variant, char *why, size_t wn) {
  run r;
  long live_before = test_alloc_live();
  int rc;
  memset(&r, 0, sizeof(r));
  r.cc = cc;
  r.variant = variant;
  rc = setup(&r);
  if (rc == 0) rc = play(&r);
  if (rc == 0 && r.t.failed) rc = failf(&r, "capture out of memory");
  ws_server_free(r.s);
  ws_mux_free(r.mux);
  if (rc == 0 && r.t.late)
    rc = failf(&r, "%d writes after the close callback", r.t.late);
  if (rc == 0 && test_alloc_live() != live_before)
    rc = failf(&r, "%ld allocations leaked", test_alloc_live() - live_before);
  mem_transport_free(&r.t);
  snprintf(why, wn, "%s", r.why);
  return rc;
}

/* ---- one group ------------------------------------------------------ */

static void run_group(int group) {
  conf_table t;
  size_t i, passed = 0, failed = 0, shown = 0;
  int rc = conf_table_build(&t);
  cr_assert_eq(rc, 0, "conf_table_build: %d", rc);
  test_alloc_reset(0);
  for (i = 0; i < t.n; i++) {
    const conf_case *cc = &t.v[i];
    int v, ok = 1;
    char why[256];
    if (cc->group != group) continue;
    for (v = 0; v < V_COUNT && ok; v++) {
      if (run_case(cc, v, why, sizeof(why)) != 0) {
        ok = 0;
        if (shown++ < 40)
          fprintf(stderr, "FAIL %s [%s] %s (%s, RFC 6455 %s): %s\n", cc->id,
                  conf_group_name(cc->group), cc->title, variant_names[v],
                  cc->rfc, why);
      }
    }
    if (ok)
      passed++;
    else
      failed++;
  }
  fprintf(stderr, "conformance[mem] %s: %zu passed, %zu failed\n",
          conf_group_name(group), passed, failed);
  fflush(stderr);
  conf_table_free(&t);
  cr_assert(passed > 0, "no cases in group %s", conf_group_name(group));
  cr_assert_eq(failed, 0, "%zu %s cases failed", failed,
               conf_group_name(group));
}

#define GROUP_TEST(name, group)                                              \
  Test(conformance_mem, name, .timeout = 300) { run_group(group); }

GROUP_TEST(framing, CONF_G_FRAMING)
GROUP_TEST(pingpong, CONF_G_PINGPONG)
GROUP_TEST(reserved_bits, CONF_G_RSV)
GROUP_TEST(opcodes, CONF_G_OPCODES)
GROUP_TEST(fragmentation, CONF_G_FRAGMENTS)
GROUP_TEST(utf8, CONF_G_UTF8)
GROUP_TEST(limits, CONF_G_LIMITS)
GROUP_TEST(close, CONF_G_CLOSE)
GROUP_TEST(handshake, CONF_G_HANDSHAKE)
