/* conn.c and the server lifecycle: re-entrancy from every callback, the
 * close handshake, graceful shutdown, and deadlines driven by injected time
 * (ws_server_tick). Runs under the counting allocator: everything is freed
 * after ws_server_free. Scripts are fed whole and one byte at a time. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

/* ---- fixture: two connections A and B --------------------------------- */

enum where { W_HANDLER, W_ON_OPEN, W_ON_CLOSE, W_WANT_WRITE, W_TCLOSE };
enum what {
  DO_CLOSE_SELF,
  DO_ABORT_SELF,
  DO_CLOSE_OTHER,
  DO_ABORT_OTHER,
  DO_FREE_SERVER,
  DO_COUNT
};
static const char *const k_what[] = {"close self", "abort self",
                                     "close other", "abort other",
                                     "free server"};

static ws_server *S;
static int S_freed;
static mt_conn A, B;
static struct {
  int where, what, armed, fired;
  int on_open;
  int on_close[2];     /* per connection: A, B */
  int on_close_code[2];
  int on_shutdown;
  int msgs;
} G;

static int idx(const mt_conn *t) { return t == &A ? 0 : 1; }

static void act(ws_conn *c) {
  mt_conn *t = ws_conn_transport(c);
  mt_conn *o = t == &A ? &B : &A;
  G.armed = 0;
  G.fired = 1;
  switch (G.what) {
  case DO_CLOSE_SELF: ws_conn_close(c, 1000, "self"); break;
  case DO_ABORT_SELF: ws_conn_abort(c); break;
  case DO_CLOSE_OTHER:
    if (o->c) ws_conn_close(o->c, 1000, "other");
    break;
  case DO_ABORT_OTHER:
    if (o->c) ws_conn_abort(o->c);
    break;
  default:
    ws_server_free(S);
    S_freed = 1;
    break;
  }
}

static int h_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud, (void)m;
  G.msgs++;
  if (G.armed && G.where == W_HANDLER) act(c);
  return 0;
}

static int h_on_open(ws_conn *c, void *ud) {
  (void)ud;
  G.on_open++;
  if (G.armed && G.where == W_ON_OPEN) act(c);
  return 0;
}

static int h_on_close(ws_conn *c, int code, const char *reason, void *ud) {
  mt_conn *t = ws_conn_transport(c);
  (void)reason, (void)ud;
  cr_assert_eq(t->closes, 0, "on_close after the transport close");
  G.on_close[idx(t)]++;
  G.on_close_code[idx(t)] = code;
  cr_assert_eq(G.on_close[idx(t)], 1, "on_close twice");
  /* The registry is still readable here. */
  cr_assert_not_null(ws_conn_device_id(c));
  if (G.armed && G.where == W_ON_CLOSE && t == &A) act(c);
  return 0;
}

static int h_on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  G.on_shutdown++;
  return 0;
}

static void hook_want(mt_conn *t, int want) {
  if (want && G.armed && G.where == W_WANT_WRITE) act(t->c);
}

static void hook_tclose(mt_conn *t) {
  if (G.armed && G.where == W_TCLOSE) act(t->c);
}

static ws_server *server_new(void (*tweak)(ws_config *)) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.handler = h_handler;
  cfg.on_open = h_on_open;
  cfg.on_close = h_on_close;
  cfg.on_shutdown = h_on_shutdown;
  if (tweak) tweak(&cfg);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
}

static void fixture(void (*tweak)(ws_config *)) {
  memset(&G, 0, sizeof(G));
  S_freed = 0;
  S = server_new(tweak);
}

static void finish(void) {
  if (!S_freed) ws_server_free(S);
  S_freed = 1;
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  mt_free(&A);
  mt_free(&B);
}

/* ---- re-entrancy ------------------------------------------------------ */

static void reentrancy(int where, int what, int mode) {
  mt_bytes b = {.p = NULL};
  fixture(NULL);
  mt_connect(&A, S, "a", mode);
  if (where != W_ON_OPEN) mt_connect(&B, S, "b", mode);
  A.on_want = hook_want;
  A.on_tclose = hook_tclose;
  G.where = where;
  G.what = what;
  G.armed = 1;
  switch (where) {
  case W_HANDLER:
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"go\"}");
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"more\"}");
    mt_frame_str(&b, MT_PING, 0, "p");
    mt_feed(&A, b.p, b.len, mode);
    break;
  case W_ON_OPEN: {
    char req[512];
    size_t n = mt_request(req, sizeof(req), "b", NULL);
    mt_open(&B, S);
    mt_feed(&B, req, n, mode);
    break;
  }
  case W_ON_CLOSE:
  case W_TCLOSE:
    mt_close_add(&b, 1000, "bye");
    mt_feed(&A, b.p, b.len, mode);
    break;
  default:
    A.would_block = 1;
    ws_conn_send_json(A.c, "x", "1", 1);
    break;
  }
  cr_assert(G.fired, "where %d, %s: the callback did not run", where,
            k_what[what]);
  /* Keep driving what is left. */
  if (!S_freed) {
    A.would_block = 0;
    if (A.c) mt_pump(&A);
    if (A.c) mt_send_text(&A, "{\"action\":\"after\"}", mode);
    if (B.c) mt_send_text(&B, "{\"action\":\"after\"}", mode);
    ws_server_tick(S, 1000000); /* past every deadline */
    ws_server_tick(S, 2000000);
  }
  finish();
  cr_assert_eq(A.closes, 1, "where %d, %s: A closed %d times", where,
               k_what[what], A.closes);
  cr_assert_eq(B.closes, 1, "where %d, %s: B closed %d times", where,
               k_what[what], B.closes);
  cr_assert_eq(G.on_open, 2);
  cr_assert_eq(G.on_close[0], 1, "where %d, %s: A's on_close", where,
               k_what[what]);
  cr_assert_eq(G.on_close[1], 1, "where %d, %s: B's on_close", where,
               k_what[what]);
  mt_bytes_free(&b);
}

static void reentrancy_all(int where) {
  int what, mode;
  for (what = 0; what < DO_COUNT; what++)
    for (mode = 0; mode < MT_MODES; mode++) reentrancy(where, what, mode);
}

Test(conn, reentrancy_from_a_handler) { reentrancy_all(W_HANDLER); }
Test(conn, reentrancy_from_on_open) { reentrancy_all(W_ON_OPEN); }
Test(conn, reentrancy_from_on_close) { reentrancy_all(W_ON_CLOSE); }
Test(conn, reentrancy_from_want_write) { reentrancy_all(W_WANT_WRITE); }
Test(conn, reentrancy_from_transport_close) { reentrancy_all(W_TCLOSE); }

/* ws_server_free from a handler with both connections mid-traffic: the
 * rest of the feed is ignored, both get on_close 1006 then close. */
Test(conn, server_free_from_handler_closes_everything_with_1006) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(NULL);
    mt_connect(&A, S, "a", mode);
    mt_connect(&B, S, "b", mode);
    cr_assert_eq(ws_conn_send_json(B.c, "queued", "1", 1), WS_OK);
    B.would_block = 1;
    cr_assert_eq(ws_conn_send_json(B.c, "blocked", "1", 1), WS_OK);
    G.where = W_HANDLER;
    G.what = DO_FREE_SERVER;
    G.armed = 1;
    {
      mt_bytes b = {.p = NULL};
      mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"go\"}");
      mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"never\"}");
      mt_feed(&A, b.p, b.len, mode);
      mt_bytes_free(&b);
    }
    cr_assert(S_freed);
    cr_assert_eq(G.msgs, 1, "nothing handled after ws_server_free");
    cr_assert_eq(G.on_close_code[0], 1006);
    cr_assert_eq(G.on_close_code[1], 1006);
    cr_assert_null(A.c);
    cr_assert_null(B.c);
    finish();
  }
}

/* ---- close handshake -------------------------------------------------- */

Test(conn, close_sends_frame_after_queued_data_and_waits_for_peer) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    fixture(NULL);
    mt_connect(&A, S, "a", mode);
    A.would_block = 1;
    cr_assert_eq(ws_conn_send_json(A.c, "one", "1", 1), WS_OK);
    cr_assert_eq(ws_conn_send_json(A.c, "two", "2", 1), WS_OK);
    cr_assert_eq(ws_conn_close(A.c, 1000, "done"), WS_OK);
    cr_assert_eq(ws_conn_close(A.c, 1000, "again"), WS_ECLOSED);
    cr_assert_eq(ws_conn_send_json(A.c, "three", "3", 1), WS_ECLOSED);
    A.would_block = 0;
    mt_pump(&A);
    mt_expect_text(&A, "{\"action\":\"one\",\"data\":1}");
    mt_expect_text(&A, "{\"action\":\"two\",\"data\":2}");
    cr_assert_eq(mt_expect_close(&A, 1000), 4);
    cr_assert(memcmp(A.out + A.len - 4, "done", 4) == 0);
    mt_expect_nothing(&A);
    cr_assert_eq(A.closes, 0, "waits for the peer's close");
    cr_assert_eq(G.on_close[0], 0);
    mt_close_add(&b, 1000, NULL);
    mt_feed(&A, b.p, b.len, mode);
    cr_assert_eq(A.closes, 1);
    mt_expect_nothing(&A); /* no second close frame */
    cr_assert_eq(G.on_close[0], 1);
    cr_assert_eq(G.on_close_code[0], 1000);
    finish();
    mt_bytes_free(&b);
  }
}

/* The close handshake done, the answer still queued (the host's socket
 * would block): a feed is WS_ECLOSED and its bytes are not counted in
 * bytes_in (review 8, mutant C8). */
Test(conn, feed_after_the_close_handshake_is_eclosed_and_not_counted) {
  mt_bytes b = {.p = NULL};
  ws_stats st;
  uint64_t before;
  fixture(NULL);
  mt_connect(&A, S, "a", MT_WHOLE);
  A.would_block = 1;
  mt_close_add(&b, 1000, NULL);
  mt_feed(&A, b.p, b.len, MT_WHOLE);
  cr_assert_eq(A.closes, 0, "its answer is still queued");
  ws_server_stats(S, &st, sizeof st);
  before = st.bytes_in;
  cr_assert_eq(ws_conn_feed(A.c, "\x81", 1), WS_ECLOSED);
  ws_server_stats(S, &st, sizeof st);
  cr_assert_eq(st.bytes_in, before);
  A.would_block = 0;
  mt_pump(&A);
  cr_assert_eq(mt_expect_close(&A, 1000), 0);
  cr_assert_eq(A.closes, 1);
  finish();
  mt_bytes_free(&b);
}

/* A refused request at the head of a feed of over 2 GiB: nothing past it
 * is read. ws_conn_feed stepped over the rest with its length as a long,
 * negative where long is 32 bits (a pointer moved backwards: UB that
 * UBSan stops at). The pages past the head are never touched. */
Test(conn, refused_head_of_a_feed_over_2_gib_reads_no_further) {
  static const char head[] = "GET /ws HTTP/1.1\r\nBad Header\r\n\r\n";
  size_t n = (size_t)INT32_MAX + 4096;
  char *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) cr_skip_test("no 2 GiB of address space here");
  memcpy(p, head, sizeof(head) - 1);
  fixture(NULL);
  mt_open(&A, S);
  cr_assert_eq(ws_conn_feed(A.c, p, n), WS_ECLOSED);
  cr_assert_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 400);
  cr_assert_eq(A.closes, 1);
  munmap(p, n);
  finish();
}

/* Queued output starts the write clock, which must not postpone an
 * earlier deadline (the keepalive ping at 31 s here, before the write
 * deadline at 62 s). Review 8, mutant C09. */
Test(conn, write_clock_keeps_an_earlier_deadline) {
  mt_frame f;
  int pings = 0;
  fixture(NULL); /* ping 30 s, idle 60 s, write 60 s */
  ws_server_tick(S, 1000);
  mt_connect(&A, S, "a", MT_WHOLE);
  ws_server_tick(S, 2000);
  A.would_block = 1;
  cr_assert_eq(ws_conn_send_json(A.c, "x", "1", 1), WS_OK);
  cr_assert_eq(ws_server_tick(S, 2000), 29000, "the ping at 31 s is next");
  ws_server_tick(S, 31000);
  A.would_block = 0;
  mt_pump(&A);
  mt_expect_frame(&A, &f);
  pings += f.opcode == MT_PING;
  mt_expect_frame(&A, &f);
  pings += f.opcode == MT_PING;
  cr_assert_eq(pings, 1, "the ping went out at 31 s");
  finish();
}

/* The peer's close reason reaches on_close whole, one byte long too
 * (review 8, mutant F24). */
static char close_reason_seen[16];
static int keep_reason(ws_conn *c, int code, const char *reason, void *ud) {
  (void)c, (void)code, (void)ud;
  snprintf(close_reason_seen, sizeof close_reason_seen, "%s",
           reason ? reason : "(null)");
  return 0;
}
static void with_keep_reason(ws_config *cfg) { cfg->on_close = keep_reason; }
Test(conn, one_byte_close_reason_reaches_on_close) {
  mt_bytes b = {.p = NULL};
  fixture(with_keep_reason);
  mt_connect(&A, S, "a", MT_WHOLE);
  close_reason_seen[0] = '\0';
  mt_close_add(&b, 1000, "x");
  mt_feed(&A, b.p, b.len, MT_WHOLE);
  cr_assert_str_eq(close_reason_seen, "x");
  finish();
  mt_bytes_free(&b);
}

Test(conn, close_rejects_bad_codes_and_reasons) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    char long_reason[200];
    fixture(NULL);
    mt_connect(&A, S, "a", mode);
    memset(long_reason, 'r', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    cr_assert_eq(ws_conn_close(A.c, 1005, NULL), WS_EINVAL);
    cr_assert_eq(ws_conn_close(A.c, 999, NULL), WS_EINVAL);
    cr_assert_eq(ws_conn_close(A.c, 5000, NULL), WS_EINVAL);
    cr_assert_eq(ws_conn_close(A.c, 1000, long_reason), WS_EINVAL);
    cr_assert_eq(ws_conn_close(A.c, 1000, "bad \xff"), WS_EINVAL);
    cr_assert_eq(ws_conn_close(NULL, 1000, NULL), WS_EINVAL);
    mt_expect_nothing(&A);
    finish();
  }
}

static void short_close(ws_config *cfg) { cfg->close_timeout_ms = 2000; }

Test(conn, close_timeout_force_closes) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(short_close);
    ws_server_tick(S, 10000);
    mt_connect(&A, S, "a", mode);
    cr_assert_eq(ws_conn_close(A.c, 4100, "app"), WS_OK);
    mt_expect_close(&A, 4100);
    cr_assert_eq(ws_server_tick(S, 10000), 2000);
    /* Data from the peer does not extend the close deadline. */
    ws_server_tick(S, 11000);
    cr_assert_eq(mt_send_text(&A, "{\"action\":\"x\"}", mode), WS_OK);
    ws_server_tick(S, 11999);
    cr_assert_eq(A.closes, 0);
    ws_server_tick(S, 12000);
    cr_assert_eq(A.closes, 1, "close timeout did not close");
    cr_assert_eq(G.on_close[0], 1);
    cr_assert_eq(G.on_close_code[0], 4100);
    cr_assert_eq(G.msgs, 0);
    finish();
  }
}

/* ---- shutdown --------------------------------------------------------- */

Test(conn, shutdown_sends_1001_refuses_upgrades_and_reports_when_empty) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn late, pending;
    mt_bytes b = {.p = NULL};
    char req[512];
    size_t n = mt_request(req, sizeof(req), "late", NULL);
    fixture(NULL);
    mt_connect(&A, S, "a", mode);
    mt_connect(&B, S, "b", mode);
    mt_open(&pending, S); /* still in its handshake */
    mt_feed(&pending, req, 10, mode);
    cr_assert_eq(ws_server_shutdown(S, 5000), WS_OK);
    cr_assert_eq(ws_server_shutdown(S, 5000), WS_ESHUTDOWN);
    mt_expect_close(&A, 1001);
    mt_expect_close(&B, 1001);
    cr_assert_eq(pending.closes, 1, "a pending handshake is dropped");
    mt_expect_nothing(&pending); /* without an answer, as documented */
    cr_assert_eq(G.on_shutdown, 0);
    /* A new upgrade gets 503. */
    mt_open(&late, S);
    mt_feed(&late, req, n, mode);
    cr_assert_eq(mt_http_response(&late, NULL, 0, NULL, NULL), 503);
    cr_assert_eq(late.closes, 1);
    cr_assert_eq(G.on_open, 2);
    cr_assert_eq(G.on_shutdown, 0, "connections remain");
    mt_close_add(&b, 1001, NULL);
    mt_feed(&A, b.p, b.len, mode);
    cr_assert_eq(A.closes, 1);
    cr_assert_eq(G.on_shutdown, 0, "B remains");
    mt_feed(&B, b.p, b.len, mode);
    cr_assert_eq(B.closes, 1);
    cr_assert_eq(G.on_shutdown, 1, "on_shutdown when none is left");
    ws_server_tick(S, 100000);
    cr_assert_eq(G.on_shutdown, 1, "on_shutdown fires once");
    /* Sockets the host still accepts afterwards are refused and closed;
     * the shutdown is not reported again. */
    mt_free(&late);
    mt_open(&late, S);
    mt_feed(&late, req, n, mode);
    cr_assert_eq(mt_http_response(&late, NULL, 0, NULL, NULL), 503);
    cr_assert_eq(late.closes, 1);
    mt_free(&late);
    mt_open(&late, S);
    cr_assert_eq(ws_conn_close(late.c, 1000, NULL), WS_OK);
    cr_assert_eq(late.closes, 1);
    cr_assert_eq(G.on_shutdown, 1, "still once");
    finish();
    mt_free(&late);
    mt_free(&pending);
    mt_bytes_free(&b);
  }
}

Test(conn, shutdown_drain_deadline_closes_what_is_left) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(NULL);
    ws_server_tick(S, 1000);
    mt_connect(&A, S, "a", mode);
    A.would_block = 1; /* never reads our close */
    cr_assert_eq(ws_server_shutdown(S, 3000), WS_OK);
    cr_assert_eq(ws_server_tick(S, 1000), 3000);
    ws_server_tick(S, 3999);
    cr_assert_eq(A.closes, 0);
    /* The tick the drain ends in answers 0, not -1: a loop that waits on
     * it without a cap (an adapter's run) would wait for nothing. It was
     * -1, and the uncapped epoll and poll runs hung there. */
    cr_assert_eq(ws_server_tick(S, 4000), 0);
    cr_assert_eq(A.closes, 1);
    cr_assert_eq(G.on_shutdown, 1);
    cr_assert_eq(ws_server_tick(S, 4000), -1, "ended: nothing pending");
    /* Its 1001 went out at the shutdown: that is the code it ended with. */
    cr_assert_eq(G.on_close_code[0], WS_CLOSE_GOING_AWAY);
    {
      ws_stats st;
      ws_server_stats(S, &st, sizeof st);
      cr_assert_eq(st.closes_1001, 1);
      cr_assert_eq(st.closes_1006, 0);
    }
    finish();
  }
}

Test(conn, shutdown_with_no_connections_reports_at_once) {
  fixture(NULL);
  cr_assert_eq(ws_server_shutdown(S, 1000), WS_OK);
  cr_assert_eq(G.on_shutdown, 1);
  finish();
}

/* ---- deadlines -------------------------------------------------------- */

/* A request begun and not complete by the deadline: 408, then closed
 * (RFC 9110 15.5.9), counted as a refusal (OTHER). */
Test(conn, handshake_timeout_answers_an_incomplete_request_with_408) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    char req[512], head[512];
    const uint8_t *body;
    size_t n = mt_request(req, sizeof(req), "a", NULL), blen;
    ws_stats st;
    fixture(NULL);
    cr_assert_eq(ws_server_tick(S, 5000), -1, "no deadline yet");
    mt_open(&A, S);
    cr_assert_eq(ws_server_tick(S, 5000), 10000, "default 10 s");
    mt_feed(&A, req, n - 2, mode); /* all but the final CRLF */
    ws_server_tick(S, 14999);
    cr_assert_eq(A.closes, 0);
    cr_assert_eq(A.len, 0, "nothing written before the deadline");
    cr_assert_eq(ws_server_tick(S, 14999), 1);
    ws_server_tick(S, 15000);
    cr_assert_eq(mt_http_response(&A, head, sizeof(head), &body, &blen), 408,
                 "%s", head);
    cr_assert(strstr(head, "HTTP/1.1 408 Request Timeout\r\n") == head, "%s",
              head);
    cr_assert(strstr(head, "\r\nConnection: close\r\n") != NULL, "%s", head);
    cr_assert(blen == 16 && memcmp(body, "request timeout\n", 16) == 0);
    cr_assert_eq(A.closes, 1, "handshake timeout did not close");
    cr_assert_eq(G.on_close[0], 0, "no on_close for a never-opened conn");
    cr_assert_eq(ws_server_tick(S, 15000), -1);
    ws_server_stats(S, &st, sizeof(st));
    cr_assert_eq(st.refusals[WS_REFUSE_OTHER], 1);
    cr_assert_eq(st.conns_pending, 0);
    finish();
  }
}

/* A socket that sent nothing (a browser's speculative connection) is
 * closed at the deadline unanswered: no response was asked of it. */
Test(conn, handshake_timeout_closes_a_silent_socket_unanswered) {
  ws_stats st;
  fixture(NULL);
  ws_server_tick(S, 0);
  mt_open(&A, S);
  ws_server_tick(S, 10000);
  cr_assert_eq(A.closes, 1, "handshake timeout did not close");
  cr_assert_eq(A.len, 0, "a silent socket got an answer");
  ws_server_stats(S, &st, sizeof(st));
  for (int k = 0; k < WS_REFUSE_COUNT_; k++)
    cr_assert_eq(st.refusals[k], 0, "refusal %d counted", k);
  finish();
}

/* The deadline passes while the request, complete, is being processed: a
 * callback of its own upgrade (on_upgrade, check_origin) or on_http ticks
 * the server past it. The request is not incomplete, so no 408 (RFC 9110
 * 15.5.9); the connection ends unanswered, as it did before the 408, and
 * the upgrade goes no further: no 101 after it, no on_open. With the
 * request fed in pieces (its head buffered), the 408 had freed the buffer
 * the upgrade still read (the key), queued a 408 and then the 101 behind
 * it, and opened the connection. */
static struct {
  int where; /* 0 on_upgrade, 1 check_origin, 2 on_http */
  int called, respond_rc;
} DL;

static int dl_on_upgrade(ws_conn *c, const ws_request *r, const char **why,
                         void *ud) {
  (void)c, (void)r, (void)why, (void)ud;
  if (DL.where == 0) DL.called++, ws_server_tick(S, 20000);
  return 0;
}

static int dl_check_origin(const ws_request *r, const char *origin,
                           void *ud) {
  (void)r, (void)origin, (void)ud;
  if (DL.where == 1) DL.called++, ws_server_tick(S, 20000);
  return 1;
}

static int dl_on_http(ws_conn *c, const ws_request *r, void *ud) {
  (void)r, (void)ud;
  DL.called++;
  ws_server_tick(S, 20000);
  DL.respond_rc = ws_conn_http_respond(c, 200, NULL, "ok", 2);
  return 0;
}

static void dl_cfg(ws_config *cfg) {
  cfg->on_upgrade = dl_on_upgrade;
  cfg->check_origin = dl_check_origin;
  cfg->on_http = dl_on_http;
}

Test(conn, deadline_inside_the_requests_own_callbacks_is_no_408) {
  int mode, where;
  for (where = 0; where < 3; where++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      char req[512];
      size_t n = where == 2
                     ? (size_t)snprintf(req, sizeof req,
                                        "GET /page HTTP/1.1\r\nHost: h\r\n\r\n")
                     : mt_request(req, sizeof(req), "a", NULL);
      ws_stats st;
      memset(&DL, 0, sizeof DL);
      DL.where = where;
      fixture(dl_cfg);
      ws_server_tick(S, 0);
      mt_open(&A, S);
      mt_feed(&A, req, 10, MT_WHOLE); /* begun: its head is buffered */
      mt_feed(&A, req + 10, n - 10, mode);
      cr_assert_eq(DL.called, 1, "where %d, %s", where, MT_MODE_NAME(mode));
      cr_assert_eq(A.closes, 1, "where %d, %s: %d closes, output %.*s",
                   where, MT_MODE_NAME(mode), A.closes, (int)A.len,
                   (const char *)A.out);
      cr_assert_eq(A.len, 0, "where %d, %s: answered %.*s", where,
                   MT_MODE_NAME(mode), (int)A.len, (const char *)A.out);
      cr_assert_eq(G.on_open, 0, "where %d, %s: opened", where,
                   MT_MODE_NAME(mode));
      if (where == 2)
        cr_assert_eq(DL.respond_rc, WS_ECLOSED, "%s",
                     ws_err_name(DL.respond_rc));
      ws_server_stats(S, &st, sizeof(st));
      for (int k = 0; k < WS_REFUSE_COUNT_; k++)
        cr_assert_eq(st.refusals[k], 0, "where %d: refusal %d counted", where,
                     k);
      cr_assert_eq(st.conns_pending, 0);
      cr_assert_eq(st.conns_open, 0);
      finish();
    }
  }
}

/* on_log closes the connection at the deadline's own log line: that close
 * stands, and no refusal (408) is counted or logged for it after. */
static int dl_logs_refused;
static void dl_on_log(ws_server *s, int level, const char *line, void *ud) {
  (void)s, (void)level, (void)ud;
  if (strstr(line, "handshake deadline passed") && A.c)
    ws_conn_abort(A.c);
  if (strstr(line, "upgrade refused")) dl_logs_refused++;
}

static void dl_log_cfg(ws_config *cfg) { cfg->on_log = dl_on_log; }

Test(conn, deadline_closed_by_on_log_counts_no_408) {
  char req[512];
  size_t n = mt_request(req, sizeof(req), "a", NULL);
  ws_stats st;
  dl_logs_refused = 0;
  fixture(dl_log_cfg);
  ws_server_tick(S, 0);
  mt_open(&A, S);
  mt_feed(&A, req, n - 2, MT_WHOLE);
  ws_server_tick(S, 10000);
  cr_assert_eq(A.closes, 1);
  cr_assert_eq(A.len, 0);
  cr_assert_eq(dl_logs_refused, 0, "a refusal logged for a closed conn");
  ws_server_stats(S, &st, sizeof(st));
  for (int k = 0; k < WS_REFUSE_COUNT_; k++)
    cr_assert_eq(st.refusals[k], 0, "refusal %d counted", k);
  finish();
}

Test(conn, completed_handshake_cancels_the_handshake_deadline) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(NULL);
    ws_server_tick(S, 0);
    mt_connect(&A, S, "a", mode);
    ws_server_tick(S, 10000);
    ws_server_tick(S, 20000);
    cr_assert_eq(A.closes, 0);
    finish();
  }
}

Test(conn, ping_after_silence_and_any_frame_resets_idle_clock) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_frame f;
    fixture(NULL); /* ping 30 s, idle 60 s */
    ws_server_tick(S, 1000);
    mt_connect(&A, S, "a", mode);
    cr_assert_eq(ws_server_tick(S, 1000), 30000);
    ws_server_tick(S, 30999);
    mt_expect_nothing(&A);
    cr_assert_eq(ws_server_tick(S, 31000), 30000, "idle deadline next");
    mt_expect_frame(&A, &f);
    cr_assert_eq(f.opcode, MT_PING, "server ping after 30 s of silence");
    ws_server_tick(S, 40000);
    mt_expect_nothing(&A); /* one ping per silence */
    /* The client's pong at 41 s resets the clock: next ping at 71 s,
     * idle close at 101 s, not 61 s. */
    ws_server_tick(S, 41000);
    cr_assert_eq(mt_send_frame(&A, MT_PONG, 0, f.payload, f.len, mode), WS_OK);
    ws_server_tick(S, 61000);
    cr_assert_eq(A.closes, 0);
    mt_expect_nothing(&A);
    cr_assert_eq(ws_server_tick(S, 61000), 10000);
    ws_server_tick(S, 71000);
    mt_expect_frame(&A, &f);
    cr_assert_eq(f.opcode, MT_PING);
    /* Any frame resets it too: a text message at 80 s. */
    ws_server_tick(S, 80000);
    cr_assert_eq(mt_send_text(&A, "{\"action\":\"x\"}", mode), WS_OK);
    ws_server_tick(S, 101000);
    mt_expect_nothing(&A);
    ws_server_tick(S, 110000);
    mt_expect_frame(&A, &f);
    cr_assert_eq(f.opcode, MT_PING);
    cr_assert_eq(A.closes, 0);
    finish();
  }
}

static void no_ping(ws_config *cfg) { cfg->ping_interval_ms = 0; }

/* An allocator that fails every call while g_oom is set (a capped pool
 * that is full), on top of libc. */
static int g_oom;
static void *oom_malloc(size_t n, void *ud) {
  (void)ud;
  return g_oom ? NULL : malloc(n);
}
static void *oom_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  return g_oom ? NULL : realloc(p, n);
}
static void oom_free(void *p, void *ud) {
  (void)ud;
  free(p);
}

/* A server whose allocator fails while g_oom is set, ticked once. */
static ws_server *oom_server_new(
    int (*on_close)(ws_conn *, int, const char *, void *)) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  mt_config(&cfg, 0);
  cfg.alloc.malloc = oom_malloc;
  cfg.alloc.realloc = oom_realloc;
  cfg.alloc.free = oom_free;
  if (on_close) cfg.on_close = on_close;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  ws_server_tick(s, 0);
  return s;
}

/* The ping cannot be allocated: the tick returns (it looped forever
 * popping the same due ping), the next deadline is the idle one, and the
 * connection ends there as usual. */
Test(conn, ping_out_of_memory_skips_the_ping_and_tick_returns) {
  ws_server *s = oom_server_new(NULL);
  mt_conn t;
  mt_connect(&t, s, "a", MT_WHOLE);
  g_oom = 1;
  cr_assert_eq(ws_server_tick(s, 30000), 30000, "idle deadline next");
  mt_expect_nothing(&t);
  cr_assert_eq(t.closes, 0);
  g_oom = 0;
  ws_server_tick(s, 60000);
  mt_expect_close(&t, 4002);
  ws_server_free(s);
  mt_free(&t);
}

static void keepalive_only(ws_config *cfg) {
  cfg->ping_interval_ms = 1000;
  cfg->idle_timeout_ms = 0;
  cfg->write_timeout_ms = 0;
}

/* Pings only (no idle or write deadline, e.g. to keep a proxy's idle
 * cutoff away): one second after each answer, not once ever. The read
 * that answers a ping must re-arm the timer, which was armed with no
 * ping due. */
Test(conn, keepalive_pings_follow_the_interval_after_each_answer) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_frame f;
    uint64_t now = 0;
    int round;
    fixture(keepalive_only);
    ws_server_tick(S, now);
    mt_connect(&A, S, "a", mode);
    for (round = 0; round < 5; round++) {
      cr_assert_eq(ws_server_tick(S, now), 1000, "round %d", round);
      ws_server_tick(S, now + 999);
      mt_expect_nothing(&A);
      now += 1000;
      ws_server_tick(S, now);
      mt_expect_frame(&A, &f);
      cr_assert_eq(f.opcode, MT_PING, "round %d", round);
      cr_assert_eq(ws_server_tick(S, now), -1, "nothing due until answered");
      now += 250;
      ws_server_tick(S, now);
      cr_assert_eq(mt_send_frame(&A, MT_PONG, 0, f.payload, f.len, mode),
                   WS_OK);
    }
    cr_assert_eq(A.closes, 0);
    finish();
  }
}

Test(conn, idle_timeout_closes_with_4002) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    fixture(no_ping);
    ws_server_tick(S, 1000);
    mt_connect(&A, S, "a", mode);
    cr_assert_eq(ws_server_tick(S, 1000), 60000);
    ws_server_tick(S, 60999);
    mt_expect_nothing(&A);
    ws_server_tick(S, 61000);
    mt_expect_close(&A, 4002);
    mt_close_add(&b, 4002, NULL);
    mt_feed(&A, b.p, b.len, mode);
    cr_assert_eq(A.closes, 1);
    cr_assert_eq(G.on_close_code[0], 4002);
    finish();
    mt_bytes_free(&b);
  }
}

Test(conn, idle_timeout_with_ping_unanswered) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(NULL);
    ws_server_tick(S, 0);
    mt_connect(&A, S, "a", mode);
    ws_server_tick(S, 30000);
    cr_assert(mt_unread(&A) > 0, "ping sent");
    A.rpos = A.len;
    ws_server_tick(S, 59999);
    mt_expect_nothing(&A);
    ws_server_tick(S, 60000);
    mt_expect_close(&A, 4002);
    /* The peer never answers: the close timeout ends it. */
    ws_server_tick(S, 65000);
    cr_assert_eq(A.closes, 1);
    finish();
  }
}

Test(conn, write_timeout_closes_a_blocked_connection) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(NULL);
    ws_server_tick(S, 1000);
    mt_connect(&A, S, "a", mode);
    ws_server_tick(S, 5000);
    A.would_block = 1;
    cr_assert_eq(ws_conn_send_json(A.c, "x", "1", 1), WS_OK);
    /* Reads keep arriving: only write progress counts. */
    ws_server_tick(S, 40000);
    cr_assert_eq(mt_send_text(&A, "{\"action\":\"y\"}", mode), WS_OK);
    ws_server_tick(S, 64999);
    cr_assert_eq(A.closes, 0);
    cr_assert_eq(ws_server_tick(S, 64999), 1);
    ws_server_tick(S, 65000);
    cr_assert_eq(A.closes, 1, "write timeout did not close");
    cr_assert_eq(G.on_close_code[0], 4002);
    finish();
  }
}

Test(conn, write_progress_resets_the_write_deadline) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(no_ping);
    ws_server_tick(S, 0);
    mt_connect(&A, S, "a", mode);
    A.max_per_send = 10;
    cr_assert_eq(ws_conn_send_json(A.c, "x", "\"0123456789abcdef\"", 18),
                 WS_OK);
    ws_server_tick(S, 50000);
    ws_conn_writable(A.c); /* 10 more bytes at 50 s */
    ws_server_tick(S, 60000);
    cr_assert_eq(A.closes, 0, "progress at 50 s moved the deadline");
    A.max_per_send = 0;
    ws_conn_writable(A.c);
    cr_assert_eq(ws_conn_want_write(A.c), 0);
    cr_assert_eq(A.closes, 0);
    finish();
  }
}

Test(conn, tick_returns_time_to_next_deadline) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture(NULL);
    cr_assert_eq(ws_server_tick(S, 100), -1);
    mt_open(&A, S);
    cr_assert_eq(ws_server_tick(S, 100), 10000);
    cr_assert_eq(ws_server_tick(S, 2100), 8000);
    mt_feed_str(&A, "GET /ws?device_id=a HTTP/1.1\r\n", mode);
    ws_server_tick(S, 3100);
    mt_open(&B, S); /* a second handshake: deadline 13100 */
    cr_assert_eq(ws_server_tick(S, 3100), 7000, "A's deadline is earlier");
    ws_conn_abort(A.c);
    cr_assert_eq(ws_server_tick(S, 3100), 10000, "then B's");
    ws_conn_abort(B.c);
    cr_assert_eq(ws_server_tick(S, 3100), -1);
    /* Time never goes back. */
    mt_free(&A);
    mt_connect(&A, S, "a2", mode);
    cr_assert_eq(ws_server_tick(S, 1000), 30000);
    cr_assert_eq(ws_server_tick(S, 13100), 20000);
    finish();
  }
}

/* A closed connection is freed when the library call that closed it
 * returns, not at ws_server_free (deferred, not leaked until the end). */
Test(conn, closed_connection_is_freed_at_once) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    long live;
    fixture(NULL);
    /* B pays for the shared structures (timer heap, device index, the
     * pooled receive context). */
    mt_connect(&B, S, "b", mode);
    cr_assert_eq(mt_send_frame(&B, MT_PING, 0, "x", 1, mode), WS_OK);
    live = test_alloc_live();
    mt_connect(&A, S, "a", mode);
    cr_assert_eq(ws_conn_join(A.c, "g"), WS_OK);
    cr_assert_eq(ws_conn_set_user(A.c, "u"), WS_OK);
    cr_assert_eq(mt_send_text(&A, "{\"action\":\"x\"}", mode), WS_OK);
    cr_assert_gt(test_alloc_live(), live);
    mt_close_add(&b, 1000, "bye");
    mt_feed(&A, b.p, b.len, mode);
    cr_assert_eq(A.closes, 1);
    cr_assert_eq(test_alloc_live(), live, "%s: %ld allocations still live",
                 MT_MODE_NAME(mode), test_alloc_live() - live);
    finish();
    mt_bytes_free(&b);
  }
}

/* ---- mutation testing (lib/timer.c, conn.c, frame.c) ------------------- */

/* A deadline further away than INT_MAX ms (a 32-bit timeout of ~46 days)
 * is reported as INT_MAX, not as a negative wait. */
static void far_handshake(ws_config *cfg) {
  cfg->handshake_timeout_ms = 4000000000u;
}
Test(conn, tick_clamps_a_far_deadline_to_int_max) {
  fixture(far_handshake);
  ws_server_tick(S, 0);
  mt_open(&A, S);
  cr_assert_eq(ws_server_tick(S, 0), INT_MAX);
  cr_assert_eq(ws_server_tick(S, 4000000000u - 1000), 1000);
  cr_assert_eq(A.closes, 0);
  finish();
}

/* No memory for a fragmented message's buffer: the connection fails with
 * 1011 (an internal error, not the peer's fault), reported to on_close
 * even though the close frame itself could not be allocated either. */
static int oom_close_code, oom_closes;
static int oom_on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)c, (void)reason, (void)ud;
  oom_closes++;
  oom_close_code = code;
  return 0;
}
Test(conn, out_of_memory_while_reassembling_fails_with_1011) {
  ws_server *s;
  mt_conn t;
  mt_frame f;
  oom_closes = 0;
  oom_close_code = 0;
  s = oom_server_new(oom_on_close);
  mt_connect(&t, s, "a", MT_WHOLE);
  /* A first frame pools the receive context: the next feed needs none. */
  cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "x", 1, MT_WHOLE), WS_OK);
  mt_expect_frame(&t, &f);
  cr_assert_eq(f.opcode, MT_PONG);
  g_oom = 1;
  mt_send_frame(&t, MT_TEXT, MT_NOFIN, "{\"a", 3, MT_WHOLE);
  g_oom = 0;
  cr_assert_eq(t.closes, 1);
  cr_assert_eq(oom_closes, 1);
  cr_assert_eq(oom_close_code, WS_CLOSE_INTERNAL);
  ws_server_free(s);
  mt_free(&t);
}

/* ---- the header's promises, one by one (audit of promises vs tests) ---- */

/* ws_conn_abort drops what was queued and sends no close frame, even to a
 * socket that could take them now; on_close gets 1006. */
Test(conn, abort_drops_queued_data_without_a_close_frame) {
  ws_stats st;
  size_t len;
  fixture(NULL);
  mt_connect(&A, S, "a", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_conn_send_json(A.c, "one", "1", 1), WS_OK);
  cr_assert_eq(ws_conn_send_json(A.c, "two", "2", 1), WS_OK);
  len = A.len;
  A.would_block = 0; /* writable now, but the host aborts instead */
  ws_conn_abort(A.c);
  cr_assert_eq(A.closes, 1);
  cr_assert_null(A.c);
  cr_assert_eq(A.len, len, "%zu bytes written after the abort", A.len - len);
  cr_assert_eq(G.on_close[0], 1);
  cr_assert_eq(G.on_close_code[0], WS_CLOSE_ABNORMAL);
  ws_server_stats(S, &st, sizeof st);
  cr_assert_eq(st.closes_1006, 1);
  cr_assert_eq(st.conns_open, 0);
  finish();
}

/* A drain deadline reports the code each connection closed with, as a
 * close timeout does (on_close's doc): 4100, not 1001, for the host's. */
Test(conn, drain_deadline_reports_the_code_each_connection_closed_with) {
  ws_stats st;
  fixture(NULL); /* close_timeout 5 s: past the 1 s drain */
  ws_server_tick(S, 0);
  mt_connect(&A, S, "a", MT_WHOLE);
  mt_connect(&B, S, "b", MT_WHOLE);
  cr_assert_eq(ws_conn_close(A.c, 4100, "app"), WS_OK);
  mt_expect_close(&A, 4100);
  cr_assert_eq(ws_server_shutdown(S, 1000), WS_OK);
  mt_expect_close(&B, 1001);
  mt_expect_nothing(&A);
  ws_server_tick(S, 999);
  cr_assert_eq(A.closes + B.closes, 0, "neither peer answered: draining");
  ws_server_tick(S, 1000);
  cr_assert_eq(A.closes + B.closes, 2, "the drain deadline ended both");
  cr_assert_eq(G.on_close_code[0], 4100, "A got %d", G.on_close_code[0]);
  cr_assert_eq(G.on_close_code[1], WS_CLOSE_GOING_AWAY);
  cr_assert_eq(G.on_shutdown, 1);
  ws_server_stats(S, &st, sizeof st);
  cr_assert_eq(st.closes_other, 1);
  cr_assert_eq(st.closes_1001, 1);
  finish();
}
