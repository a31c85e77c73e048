/*
 * Adversarial re-entrancy: a seeded random host whose every callback may
 * call any function back (close or abort any connection, destroy or shut
 * down the server, tick, post, fan out, bind users and groups, make and
 * feed connections, reuse a closed connection's transport pointer), with
 * the header's promises checked as invariants: a transport is closed once,
 * on_close comes once, only for opened connections, before the transport
 * close; no callback names a handle whose close callback returned;
 * outside callbacks, ws_conn_feed and ws_conn_writable answer WS_OK only
 * for a connection that is still there; on_shutdown fires at most once;
 * the gauges match the connections the host holds and return to 0;
 * nothing leaks. ADV_SEEDS / ADV_FIRST run other seeds (1000 from 1 by
 * default), ADV_SHOWSEED names each, ADV_TRACE prints every step.
 * Then deterministic regressions for what it found.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

#define NT 6

typedef struct tr {
  int id;
  ws_conn *c; /* NULL when no connection uses it */
  int opened, on_close, closes;
  int block, fail;
  mt_bytes script; /* what the client still has to send */
  size_t spos;
  int gen; /* bumped by each new connection on this transport */
  size_t out; /* bytes the library wrote */
} tr;

static struct {
  long opens, closes, on_closes, shutdowns, frees_in_cb, handlers, sends;
} K;

static struct {
  uint64_t rng, seed;
  int trace; /* ADV_TRACE set: every call and callback to stderr */
  ws_server *s;
  int freed;   /* the server is gone: not to be touched */
  int dying;   /* ws_server_free was called */
  int shut;    /* ws_server_shutdown answered WS_OK */
  int on_shutdown;
  int depth;   /* callbacks nested */
  uint64_t now;
  tr t[NT];
  long actions;
  ws_prepared *prep;
  mt_bytes grave[4096]; /* old scripts: a feed may still be reading one */
  int ngrave;
} F;

static uint32_t rnd(void) {
  F.rng ^= F.rng << 13;
  F.rng ^= F.rng >> 7;
  F.rng ^= F.rng << 17;
  return (uint32_t)(F.rng >> 11);
}
static int chance(int pct) { return (int)(rnd() % 100) < pct; }

static tr *of(ws_conn *c, void *transport) {
  tr *t = transport;
  cr_assert(t >= F.t && t < F.t + NT, "foreign transport");
  cr_assert_eq(t->c, c, "callback for conn %p, transport %d holds %p",
               (void *)c, t->id, (void *)t->c);
  return t;
}

static void script_new(tr *t) {
  char req[512];
  size_t n;
  int i, k = (int)(rnd() % 4);
  char dev[8];
  snprintf(dev, sizeof dev, "d%u", rnd() % 4);
  if (t->script.p) {
    cr_assert_lt(F.ngrave, 4096);
    F.grave[F.ngrave++] = t->script;
    memset(&t->script, 0, sizeof t->script);
  }
  t->spos = 0;
  t->gen++;
  n = mt_request(req, sizeof req, chance(90) ? dev : NULL, NULL);
  mt_bytes_add(&t->script, req, n);
  for (i = 0; i < k; i++) {
    switch (rnd() % 4) {
    case 0: mt_frame_str(&t->script, MT_PING, 0, "p"); break;
    case 1: mt_frame_str(&t->script, MT_TEXT, 0, "not json"); break;
    default: mt_frame_str(&t->script, MT_TEXT, 0, "{\"action\":\"go\"}"); break;
    }
  }
  if (chance(50)) mt_close_add(&t->script, 1000, "bye");
}

static void conn_new(tr *t) {
  ws_conn *c;
  t->opened = t->on_close = t->closes = 0;
  t->block = chance(20);
  t->fail = chance(5);
  if (ws_conn_new(F.s, t, &c) == WS_OK) {
    t->c = c;
    script_new(t);
  }
}

static void random_action(void);

/* Feeds part of t's script. */
static void feed(tr *t) {
  size_t left, n;
  int gen = t->gen;
  if (t->c == NULL) return;
  left = t->script.len - t->spos;
  if (left == 0) return;
  n = 1 + rnd() % (left < 64 ? left : 64);
  if (chance(30)) n = left;
  {
    ws_conn *c = t->c;
    int rc;
    if (F.trace) fprintf(stderr, "%*sfeed t%d %zu\n", F.depth * 2, "", t->id, n);
    t->spos += n; /* before: a callback may feed the next bytes */
    rc = ws_conn_feed(c, t->script.p + t->spos - n, n);
    if (rc == WS_ESTATE && t->gen == gen) t->spos -= n;
    /* Outside every callback, WS_OK means the handle is still valid. */
    if (rc == WS_OK && F.depth == 0 && !F.dying)
      cr_assert_eq(t->c, c, "seed %llu: feed answered WS_OK for a closed connection", (unsigned long long)F.seed);
  }
}

static tr *pick(void) { return &F.t[rnd() % NT]; }

static void random_action(void) {
  tr *t = pick();
  char name[8];
  if (F.freed) return;
  F.actions++;
  snprintf(name, sizeof name, "g%u", rnd() % 3);
  int act = (int)(rnd() % 30);
  if (F.trace) fprintf(stderr, "%*saction %d on t%d (c %p)\n", F.depth * 2, "", act, t->id, (void *)t->c);
  switch (act) {
  case 0: if (t->c) ws_conn_close(t->c, 1000, "x"); break;
  case 1: if (t->c) ws_conn_abort(t->c); break;
  case 2: if (chance(15)) { K.frees_in_cb += F.depth > 0; F.dying = 1; ws_server_free(F.s); } break;
  case 3: if (chance(F.depth ? 10 : 3) && ws_server_shutdown(F.s, rnd() % 3000) == WS_OK) F.shut++; break;
  case 4: F.now += rnd() % 4000; ws_server_tick(F.s, F.now); break;
  case 5: ws_post(F.s, (int)(rnd() % 4), name, "p", "1", 1); break;
  case 6: ws_broadcast_json(F.s, "b", "[1]", 3, NULL, 0); break;
  case 7: ws_publish_json(F.s, name, "g", NULL, 0); break;
  case 8: if (t->c) ws_conn_set_user(t->c, chance(30) ? NULL : name); break;
  case 9: if (t->c) ws_conn_join(t->c, name); break;
  case 10: if (t->c) ws_conn_leave(t->c, name); break;
  case 11: if (t->c == NULL) conn_new(t); break;
  case 12: feed(t); break;
  case 13: if (t->c) {
      ws_conn *c = t->c;
      int rc = ws_conn_writable(c);
      if (rc == WS_OK && F.depth == 0 && !F.dying)
        cr_assert_eq(t->c, c, "writable answered WS_OK for a closed connection");
    }
    break;
  case 14: if (t->c) ws_conn_send_json(t->c, "s", "{}", 2); break;
  case 15: t->block = !t->block; break;
  case 16: t->fail = chance(10); break;
  case 17: ws_push_user_json(F.s, name, "u", NULL, 0); break;
  case 18: ws_send_device_json(F.s, "d1", "d", NULL, 0); break;
  case 19: if (t->c) ws_conn_close(t->c, 4000 + (int)(rnd() % 5), NULL); break;
  case 20: if (t->c) ws_conn_send_text(t->c, "t", 1); break;
  case 21: F.now += (uint64_t)rnd() % 200000; ws_server_tick(F.s, F.now); break;
  case 22: ws_server_tick(F.s, F.now > 500 ? F.now - 500 : 0); break;
  case 23: if (t->c) ws_conn_send_prepared(t->c, F.prep); break;
  case 24: {
    ws_prepared *p = NULL;
    if (ws_prepare_json(F.s, "pp", "2", 1, &p) == WS_OK && chance(50))
      ws_prepared_free(p);
    break;
  }
  case 25: if (t->c) ws_conn_join(t->c, name), ws_conn_set_user(t->c, name); break;
  case 26: if (t->c) {
      ws_header h[4] = {
          {"Host", 4, "h", 1},
          {"Upgrade", 7, "websocket", 9},
          {"Connection", 10, "Upgrade", 7},
          {"Sec-WebSocket-Key", 17, MT_SAMPLE_KEY, 24}};
      ws_conn_upgrade(t->c, "GET", "/ws", chance(50) ? "device_id=d1" : NULL,
                      h, 4); /* no version header: refused (426) */
    }
    break;
  case 27: if (t->c) feed(t); if (t->c) feed(t); break;
  case 28: if (chance(F.depth ? 10 : 2)) ws_server_shutdown(F.s, 0); break;
  default: {
    ws_stats st;
    if (F.dying) break;
    ws_server_stats(F.s, &st, sizeof st);
    cr_assert_lt(st.conns_open, 1000u, "gauge wrapped");
    cr_assert_lt(st.conns_pending, 1000u, "gauge wrapped");
    break;
  }
  }
}

/* In a callback: maybe do something, maybe several things. */
static void reenter(int pct) {
  if (F.depth > 3) return;
  F.depth++;
  while (chance(pct)) random_action();
  F.depth--;
}

static ssize_t a_send(ws_conn *c, void *transport, const void *d, size_t n) {
  tr *t = of(c, transport);
  size_t w;
  if (F.trace) fprintf(stderr, "%*ssend t%d %zu\n", F.depth * 2, "", t->id, n);
  (void)d;
  cr_assert_eq(t->closes, 0, "send after close");
  cr_assert_eq(t->on_close, 0, "send after on_close");
  reenter(15);
  if (t->c != c) return -1; /* closed from inside: whatever */
  if (t->fail) return -1;
  if (t->block) return 0;
  w = chance(30) ? 1 + rnd() % n : n;
  t->out += w;
  return (ssize_t)w;
}

static ssize_t a_sendv(ws_conn *c, void *transport, const ws_iovec *iov,
                       int n) {
  size_t total = 0;
  int i;
  for (i = 0; i < n; i++) total += iov[i].len;
  return a_send(c, transport, iov[0].base, total);
}

static int a_want(ws_conn *c, void *transport, int want) {
  tr *t = of(c, transport);
  if (F.trace) fprintf(stderr, "%*swant t%d %d\n", F.depth * 2, "", t->id, want);
  (void)want;
  cr_assert_eq(t->closes, 0, "want_write after close");
  reenter(20);
  return 0;
}

static int a_close(ws_conn *c, void *transport) {
  tr *t = of(c, transport);
  if (F.trace) fprintf(stderr, "%*sclose t%d\n", F.depth * 2, "", t->id);
  t->closes++;
  cr_assert_eq(t->closes, 1, "transport %d closed twice", t->id);
  if (t->opened) cr_assert_eq(t->on_close, 1, "no on_close before close");
  reenter(20);
  /* Reuse of the same transport pointer, from inside its close. */
  if (t->c == c) {
    t->c = NULL;
    if (chance(20)) conn_new(t);
  }
  return 0;
}

static int a_handler(ws_conn *c, const ws_msg *m, void *ud) {
  tr *t = ws_conn_transport(c);
  (void)m, (void)ud;
  (void)of(c, t);
  K.handlers++;
  if (F.trace) fprintf(stderr, "%*shandler t%d\n", F.depth * 2, "", t->id);
  reenter(40);
  if (chance(5)) return -1;
  return 0;
}

static int a_open(ws_conn *c, void *ud) {
  tr *t = ws_conn_transport(c);
  (void)ud;
  (void)of(c, t);
  t->opened++;
  K.opens++;
  cr_assert_eq(t->opened, 1, "on_open twice");
  reenter(25);
  return 0;
}

static int a_on_close(ws_conn *c, int code, const char *r, void *ud) {
  tr *t = ws_conn_transport(c);
  (void)code, (void)r, (void)ud;
  (void)of(c, t);
  cr_assert_eq(t->opened, 1, "on_close of a connection never opened");
  cr_assert_eq(t->closes, 0, "on_close after the transport close");
  t->on_close++;
  K.on_closes++;
  cr_assert_eq(t->on_close, 1, "on_close twice");
  reenter(30);
  return 0;
}

static int a_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  F.on_shutdown++;
  K.shutdowns++;
  cr_assert_eq(F.on_shutdown, 1, "on_shutdown twice");
  reenter(30);
  return 0;
}

/* Runs on the posting thread, outside the library's frames: only the
 * thread-safe ws_post may be called from it. */
static int a_wake(ws_server *s, void *ud) {
  (void)ud;
  if (chance(10)) ws_post(s, WS_POST_ALL, NULL, "w", NULL, 0);
  return 0;
}

static void a_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)level, (void)msg, (void)ud;
  reenter(10);
}

static void run_seed(uint64_t seed) {
  ws_config cfg;
  int i, step;
  memset(&F, 0, sizeof F);
  if (getenv("ADV_SHOWSEED")) fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
  F.trace = getenv("ADV_TRACE") != NULL;
  F.rng = seed * 2654435761u + 1;
  F.seed = seed;
  for (i = 0; i < NT; i++) F.t[i].id = i;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  cfg.send = a_send;
  cfg.want_write = a_want;
  cfg.close = a_close;
  cfg.handler = a_handler;
  cfg.on_open = a_open;
  cfg.on_close = a_on_close;
  cfg.on_shutdown = a_shutdown;
  cfg.wake = a_wake;
  cfg.on_log = a_log;
  cfg.device_required = 0;
  cfg.duplicate_policy = (int)(rnd() % 3);
  cfg.queue_policy = (int)(rnd() % 2);
  cfg.max_queued = 64 + rnd() % 512;
  cfg.close_timeout_ms = rnd() % 3 ? 1000 : 0;
  cfg.write_timeout_ms = rnd() % 3 ? 2000 : 0;
  cfg.idle_timeout_ms = rnd() % 3 ? 5000 : 0;
  cfg.ping_interval_ms = rnd() % 3 ? 1500 : 0;
  cfg.handshake_timeout_ms = rnd() % 3 ? 3000 : 0;
  if (rnd() % 2) cfg.sendv = a_sendv;
  cr_assert_eq(ws_server_new(&cfg, &F.s), WS_OK);
  cr_assert_eq(ws_prepare_json(F.s, "pr", NULL, 0, &F.prep), WS_OK);
  for (step = 0; step < 300 && !F.freed; step++) {
    tr *t = pick();
    if (t->c == NULL) conn_new(t);
    else feed(t);
    if (F.dying) { F.freed = 1; break; }
    random_action();
    if (F.dying) F.freed = 1; /* outside every callback: gone */
    if (!F.freed) {
      ws_stats st;
      uint64_t open = 0, pend = 0;
      for (i = 0; i < NT; i++)
        if (F.t[i].c) (F.t[i].opened ? open++ : pend++);
      ws_server_stats(F.s, &st, sizeof st);
      cr_assert_eq(st.conns_open, open, "seed %llu step %d: conns_open %lu, %lu open",
                   (unsigned long long)seed, step, (unsigned long)st.conns_open,
                   (unsigned long)open);
      cr_assert_eq(st.conns_pending, pend, "seed %llu step %d: pending %lu, %lu",
                   (unsigned long long)seed, step, (unsigned long)st.conns_pending,
                   (unsigned long)pend);
      cr_assert_eq(ws_server_conn_count(F.s), open);
    }
  }
  if (!F.freed) {
    ws_stats st;
    /* Drain: shut down, let the clock run past every deadline. */
    ws_server_shutdown(F.s, 100);
    for (step = 0; step < 10 && !F.dying; step++) {
      for (i = 0; i < NT && !F.dying; i++) {
        tr *t = &F.t[i];
        t->block = t->fail = 0;
        if (t->c && t->spos < t->script.len) {
          int gen = t->gen;
          size_t from = t->spos;
          t->spos = t->script.len;
          if (ws_conn_feed(t->c, t->script.p + from, t->script.len - from) ==
                  WS_ESTATE &&
              t->gen == gen)
            t->spos = from;
        }
        if (t->c && !F.dying) ws_conn_writable(t->c);
      }
      if (F.dying) break;
      F.now += 100000;
      ws_server_tick(F.s, F.now);
    }
    if (F.dying) F.freed = 1;
    if (!F.freed) {
      ws_server_stats(F.s, &st, sizeof st);
      for (i = 0; i < NT; i++)
        if (F.t[i].c)
          fprintf(stderr, "t%d state %d flags %x q %u heap %u dl %lu now %lu sd %d opened %d spos %zu/%zu\n", i,
                  F.t[i].c->state, F.t[i].c->flags, F.t[i].c->q.count,
                  F.t[i].c->heap_idx, (unsigned long)F.t[i].c->deadline,
                  (unsigned long)F.s->now, F.s->shutting_down, F.t[i].opened, F.t[i].spos, F.t[i].script.len);
      for (i = 0; i < NT; i++)
        cr_assert_null(F.t[i].c, "seed %llu: transport %d still open",
                       (unsigned long long)seed, i);
      cr_assert_eq(st.conns_open, 0, "seed %llu: conns_open %lu",
                   (unsigned long long)seed, (unsigned long)st.conns_open);
      cr_assert_eq(st.conns_pending, 0, "seed %llu: conns_pending %lu",
                   (unsigned long long)seed, (unsigned long)st.conns_pending);
      cr_assert_eq(F.on_shutdown, 1, "seed %llu: on_shutdown %d",
                   (unsigned long long)seed, F.on_shutdown);
      F.dying = 1;
      ws_server_free(F.s);
      F.freed = 1;
    }
  }
  for (i = 0; i < NT; i++) {
    cr_assert_null(F.t[i].c, "seed %llu: transport %d never closed",
                   (unsigned long long)seed, i);
    mt_bytes_free(&F.t[i].script);
  }
  for (i = 0; i < F.ngrave; i++) mt_bytes_free(&F.grave[i]);
  cr_assert_eq(test_alloc_live(), 0, "seed %llu: %ld allocations live",
               (unsigned long long)seed, test_alloc_live());
}

Test(adversarial, random_reentrant_host) {
  uint64_t seed, n = getenv("ADV_SEEDS") ? strtoull(getenv("ADV_SEEDS"), 0, 10)
                                         : 1000;
  uint64_t first = getenv("ADV_FIRST") ? strtoull(getenv("ADV_FIRST"), 0, 10)
                                       : 1;
  for (seed = first; seed < first + n; seed++) run_seed(seed);
  if (getenv("ADV_SHOWSEED"))
    fprintf(stderr, "opens %ld on_close %ld shutdowns %ld frees in cb %ld handlers %ld\n",
          K.opens, K.on_closes, K.shutdowns, K.frees_in_cb, K.handlers);
}

/* ---- deterministic regressions ---------------------------------------- */

static int reply_and_tell_other(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  ws_conn_send_json(c, "reply", "1", 1);
  ws_send_device_json(ws_conn_server(c), "b", "note", "2", 1);
  return 0;
}
/* The socket takes part of the first write, then reports an error (the
 * peer reset in between): no library call from inside. */
static void fail_after_first_write(mt_conn *t) { t->fail = 1; }

static ws_server *server_with(ws_handler_fn h) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.handler = h;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
}

/* ws_conn_feed flushed its connection once, then ws__leave flushed it a
 * second time (it was still on the flush list behind another one the
 * handler wrote to); that send failed and closed the connection, but the
 * feed had already computed WS_OK: a host that reads on while the feed
 * answers WS_OK (examples/tls.c) then uses a freed handle. */
Test(adversarial, feed_reports_a_close_from_its_own_flush) {
  mt_conn A, B;
  ws_server *s = server_with(reply_and_tell_other);
  int rc;
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_connect(&B, s, "b", MT_WHOLE);
  A.max_per_send = 1;
  A.on_write = fail_after_first_write;
  {
    mt_bytes b = {.p = NULL};
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"go\"}");
    rc = ws_conn_feed(A.c, b.p, b.len);
    mt_bytes_free(&b);
  }
  /* WS_OK only for a connection that is still there. */
  cr_expect_eq(rc == WS_OK, A.closes == 0,
               "feed answered %s, A's close callback ran %d times",
               ws_err_name(rc), A.closes);
  ws_server_free(s);
  cr_expect_eq(test_alloc_live(), 0);
  mt_free(&A);
  mt_free(&B);
}

/* A host that streams on backpressure: when the queue drains
 * (want_write 0) it sends the next chunk; the socket has failed by then. */
static void next_chunk_on_drain(mt_conn *t, int want) {
  if (want) return;
  t->on_want = NULL;
  t->fail = 1;
  ws_conn_send_json(t->c, "chunk", "2", 1);
}

/* ws_conn_writable answered WS_OK after the chunk queued from want_write
 * was flushed in ws__leave, behind the result, and its failed send had
 * closed the connection. */
Test(adversarial, writable_reports_a_close_from_its_own_flush) {
  mt_conn A;
  ws_server *s = server_with(NULL);
  int rc;
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_conn_send_json(A.c, "chunk", "1", 1), WS_OK);
  cr_assert_eq(A.want, 1);
  A.would_block = 0;
  A.on_want = next_chunk_on_drain;
  rc = ws_conn_writable(A.c);
  cr_expect_eq(A.closes, 1, "the failed send closed A");
  cr_expect_eq(rc == WS_OK, A.closes == 0,
               "writable answered %s, A's close callback ran %d times",
               ws_err_name(rc), A.closes);
  ws_server_free(s);
  cr_expect_eq(test_alloc_live(), 0);
  mt_free(&A);
}

static int ovf_closes;
static int ovf_on_close(ws_conn *c, int code, const char *r, void *ud) {
  (void)c, (void)r, (void)ud;
  ovf_closes = code;
  return 0;
}

/* A clock that jumps near the top of its range (a host's unsigned
 * subtraction that went below zero once): deadlines computed as now + ms
 * wrapped around to the past, so every connection made after it timed out
 * on the next tick, 1 ms later. */
Test(adversarial, deadlines_near_the_end_of_the_clock_do_not_wrap) {
  ws_config cfg;
  ws_server *s;
  mt_conn A;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_close = ovf_on_close;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  ws_server_tick(s, 0);
  ws_server_tick(s, UINT64_MAX - 1000);
  mt_connect(&A, s, "a", MT_WHOLE);
  ws_server_tick(s, UINT64_MAX - 999);
  cr_expect_not_null(A.c, "closed with %d 1 ms after it opened", ovf_closes);
  ws_server_free(s);
  cr_expect_eq(test_alloc_live(), 0);
  mt_free(&A);
}
