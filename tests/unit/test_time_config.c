/* Deadlines against the clock and the configuration (a red-team pass on
 * time handling and config values): each Test failed on the code before
 * its fix. Closing connections without a close timeout (close_timeout_ms
 * = 0), whose idle and write deadlines take its place, and the close
 * deadline of a connection failed while closing. Runs under the counting
 * allocator: everything is freed after ws_server_free. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static struct {
  int on_close, code;
  char reason[128];
} R;

static int r_on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)c, (void)ud;
  R.on_close++;
  R.code = code;
  snprintf(R.reason, sizeof R.reason, "%s", reason);
  return 0;
}

static ws_server *mk(void (*tweak)(ws_config *)) {
  ws_config cfg;
  ws_server *s;
  memset(&R, 0, sizeof R);
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_close = r_on_close;
  if (tweak) tweak(&cfg);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
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
  cr_expect_eq(R.code, WS_CLOSE_TIMEOUT, "on_close got %d '%s'", R.code,
               R.reason);
  cr_expect_str_eq(R.reason, "write timeout");
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
  cr_expect_eq(R.code, 4100);
  cr_expect_str_eq(R.reason, "mine");
  mt_free(&A);
  mt_connect(&A, s, "b", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_server_shutdown(s, 800), WS_OK);
  ws_server_tick(s, 1300); /* write deadline 1000, drain's 1300 */
  cr_assert_eq(A.closes, 1);
  cr_expect_eq(R.code, WS_CLOSE_GOING_AWAY, "on_close got %d '%s'", R.code,
               R.reason);
  done(s, &A);
}
