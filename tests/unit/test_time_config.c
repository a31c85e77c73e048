/* Deadlines against the clock and the configuration (a red-team pass on
 * time handling and config values): each Test failed on the code before
 * its fix. Closing connections without a close timeout (close_timeout_ms
 * = 0), whose idle and write deadlines take its place, the close
 * deadline of a connection failed while closing, and a queue cap smaller
 * than a pong. Runs under the counting allocator: everything is freed
 * after ws_server_free. */
#include "pinned.h"

/* The pinned fixture (on_close's code and reason in K), tweaked. */
static ws_server *mk(void (*tweak)(ws_config *)) {
  ws_config cfg;
  k_cfg(&cfg);
  if (tweak) tweak(&cfg);
  return k_server(&cfg);
}

static void done(ws_server *s, mt_conn *a) {
  ws_server_free(s);
  cr_expect_eq(test_alloc_live(), 0, "%ld allocations live",
               test_alloc_live());
  if (a) mt_free(a);
}

/* Without a close timeout: idle 1 s, write 0.5 s, no pings. */
static void no_close_timeout(ws_config *c) {
  c->close_timeout_ms = 0;
  c->idle_timeout_ms = 1000;
  c->ping_interval_ms = 0;
  c->write_timeout_ms = 500;
}

/* ---- the write deadline of a closing connection ----------------------- */

/* With close_timeout_ms = 0 a closing connection ends by the write
 * deadline; on_close got the code of our close frame (1000) and "close
 * handshake timeout", though that frame never left (the socket took
 * nothing) and no close timeout is configured. The header documents 4002
 * for a write deadline, as an open connection gets. */
Test(time_config, closing_write_deadline_reports_4002) {
  mt_conn A;
  ws_stats st;
  ws_server *s = mk(no_close_timeout);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_conn_close(A.c, 1000, "bye"), WS_OK);
  cr_expect_eq(ws_server_tick(s, 499), 1);
  cr_expect_eq(A.closes, 0, "ended before the write deadline");
  ws_server_tick(s, 500);
  cr_assert_eq(A.closes, 1);
  cr_expect_eq(K.code, WS_CLOSE_TIMEOUT, "on_close got %d '%s'", K.code,
               K.reason);
  cr_expect_str_eq(K.reason, "write timeout");
  ws_server_stats(s, &st, sizeof st);
  cr_expect_eq(st.closes_4002, 1);
  cr_expect_eq(st.closes_1000, 0);
  done(s, &A);
}

/* What the 4002 must not take over: a peer that sent its close keeps its
 * code (the first rule of on_close), and a drain deadline due at the same
 * tick reports the code sent (1001), as the shutdown's doc says. */
Test(time_config, closing_write_deadline_leaves_peer_and_drain_codes) {
  mt_conn A;
  mt_bytes b = {0};
  ws_server *s = mk(no_close_timeout);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  mt_close_add(&b, 4100, "mine");
  mt_feed(&A, b.p, b.len, MT_WHOLE); /* our echo never leaves */
  mt_bytes_free(&b);
  ws_server_tick(s, 500);
  cr_assert_eq(A.closes, 1);
  cr_expect_eq(K.code, 4100);
  cr_expect_str_eq(K.reason, "mine");
  mt_free(&A);
  mt_connect(&A, s, "b", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_server_shutdown(s, 800), WS_OK);
  ws_server_tick(s, 1300); /* write deadline 1000, drain's 1300 */
  cr_assert_eq(A.closes, 1);
  cr_expect_eq(K.code, WS_CLOSE_GOING_AWAY, "on_close got %d '%s'", K.code,
               K.reason);
  done(s, &A);
}

/* The write deadline of a closing connection needs output waiting: a
 * close frame that went out, whose answer never came, ends by the idle
 * deadline with our code, not 4002, however long ago that write was
 * (mutation pass: the queued-output condition dropped, no test failed). */
Test(time_config, closing_idle_deadline_with_nothing_queued_is_no_4002) {
  mt_conn A;
  ws_server *s = mk(no_close_timeout);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_assert_eq(ws_conn_close(A.c, 1000, "bye"), WS_OK);
  mt_expect_close(&A, 1000); /* it went out: nothing queued */
  ws_server_tick(s, 999);
  cr_expect_eq(A.closes, 0, "ended before the idle deadline");
  ws_server_tick(s, 1000);
  cr_assert_eq(A.closes, 1);
  cr_expect_eq(K.code, 1000, "on_close got %d '%s'", K.code, K.reason);
  cr_expect_str_eq(K.reason, "close handshake timeout");
  done(s, &A);
}

/* ---- the idle deadline of a closing connection ------------------------ */

/* "counted from our close" (close_timeout_ms's doc): a connection failed
 * as a slow consumer (4001) counted it from the peer's last byte, long
 * before, and was cut 2 s after the failure instead of 10 s. */
static void slow_consumer_no_close_timeout(ws_config *c) {
  no_close_timeout(c);
  c->idle_timeout_ms = 10000;
  c->write_timeout_ms = 20000;
  c->max_queued = 100;
}

Test(time_config, failed_connection_idles_from_the_failure) {
  static const char text[60];
  mt_conn A;
  ws_server *s = mk(slow_consumer_no_close_timeout);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE); /* the peer's last byte, at 0 */
  A.would_block = 1;
  ws_server_tick(s, 8000);
  cr_assert_eq(ws_conn_send_binary(A.c, text, sizeof text), WS_OK);
  cr_assert_eq(ws_conn_send_binary(A.c, text, sizeof text), WS_EQUEUEFULL);
  ws_server_tick(s, 17999);
  cr_expect_eq(A.closes, 0, "cut %d '%s' before 10 s after the 4001",
               K.code, K.reason);
  ws_server_tick(s, 18000);
  cr_expect_eq(A.closes, 1);
  cr_expect_eq(K.code, WS_CLOSE_SLOW_CONSUMER);
  done(s, &A);
}

/* The same for an HTTP answer (here a 400): its idle deadline counted
 * from ws_conn_new, so a request that came after idle_timeout_ms had its
 * answer cut at the next tick, however fast the client then read. */
static void slow_request_no_close_timeout(ws_config *c) {
  no_close_timeout(c);
  c->idle_timeout_ms = 5000;
  c->write_timeout_ms = 20000;
}

Test(time_config, http_answer_idles_from_the_answer) {
  char req[256];
  size_t n = mt_request(req, sizeof req, NULL, NULL); /* no device id */
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn A;
    ws_server *s = mk(slow_request_no_close_timeout);
    ws_server_tick(s, 0);
    mt_open(&A, s);
    A.would_block = 1;
    ws_server_tick(s, 6000);
    mt_feed(&A, req, n, mode);
    cr_assert_eq(A.closes, 0);
    ws_server_tick(s, 10999);
    cr_expect_eq(A.closes, 0, "%s: the answer was cut before its idle "
                 "deadline", MT_MODE_NAME(mode));
    A.would_block = 0;
    ws_conn_writable(A.c);
    cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 400);
    cr_expect_eq(A.closes, 1);
    done(s, &A);
  }
}

/* ---- the close deadline ----------------------------------------------- */

/* A peer's protocol error while we were closing (CLOSING to DRAINING)
 * re-armed the close timer from then: a peer could stretch the 5 s close
 * handshake to nearly 10 s (the peer's close frame does not move it). */
Test(time_config, protocol_error_while_closing_keeps_the_close_deadline) {
  mt_bytes b = {0};
  int mode;
  mt_frame_str(&b, MT_TEXT, MT_RSV1, "x");
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn A;
    ws_server *s = mk(NULL);
    ws_server_tick(s, 0);
    mt_connect(&A, s, "a", mode);
    A.would_block = 1;
    cr_assert_eq(ws_conn_close(A.c, 1000, NULL), WS_OK);
    ws_server_tick(s, 4000);
    mt_feed(&A, b.p, b.len, mode);
    cr_assert_eq(A.closes, 0);
    cr_expect_eq(ws_server_tick(s, 4999), 1, "%s", MT_MODE_NAME(mode));
    ws_server_tick(s, 5000);
    cr_expect_eq(A.closes, 1, "%s: close deadline moved by a protocol error",
                 MT_MODE_NAME(mode));
    cr_expect_eq(K.code, 1000);
    done(s, &A);
  }
  mt_bytes_free(&b);
}

/* ---- a queue cap smaller than one frame -------------------------------- */

/* max_queued may be as small as 1. A pong larger than the cap (here 64
 * bytes, a peer's ping of 125) was refused as too big, as a host's
 * oversized message is: the ping went unanswered (RFC 6455 5.5.2 says
 * it must be), with no count and no queue policy. It now counts as the
 * cap: it goes on an empty queue; behind queued data the policy applies,
 * as for any pong that does not fit. */
static void tiny_queue(ws_config *c) { c->max_queued = 64; }

Test(time_config, long_ping_is_answered_under_a_tiny_queue_cap) {
  char ping[125];
  mt_frame f;
  ws_stats st;
  int mode;
  memset(ping, 'p', sizeof ping);
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn A;
    ws_server *s = mk(tiny_queue);
    mt_connect(&A, s, "a", mode);
    cr_assert_eq(mt_send_frame(&A, MT_PING, 0, ping, sizeof ping, mode),
                 WS_OK);
    cr_assert(mt_next_frame(&A, &f), "%s: the ping went unanswered",
              MT_MODE_NAME(mode));
    cr_expect_eq(f.opcode, MT_PONG);
    cr_expect_eq(f.len, sizeof ping);
    cr_expect_eq(memcmp(f.payload, ping, sizeof ping), 0);
    A.would_block = 1;
    cr_assert_eq(ws_conn_send_text(A.c, "queued", 6), WS_OK);
    mt_send_frame(&A, MT_PING, 0, ping, sizeof ping, mode);
    ws_server_stats(s, &st, sizeof st);
    cr_expect_eq(st.drops_queue_full, 1, "%s: a pong past the cap behind "
                 "data", MT_MODE_NAME(mode));
    cr_expect_eq(ws_conn_send_text(A.c, "x", 1), WS_ECLOSED, "not 4001");
    done(s, &A);
  }
}
