/* Fan-out rules a host relies on: an id no connection can hold is the
 * caller's error; a target with no open connection is unknown; and what a
 * fan-out's own callbacks do (on_log, for a full queue) comes after it on
 * every receiver. Each test failed before its fix (an API review). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static ws_server *S;
static mt_conn C[4];
static struct {
  int in_log;    /* on_log reentry guard */
  int log_action; /* 1: broadcast "B"; 2: ws_server_shutdown */
} G;

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)level, (void)ud;
  if (G.in_log || strstr(msg, "slow consumer") == NULL) return;
  G.in_log = 1;
  if (G.log_action == 1)
    ws_broadcast_json(s, "B", NULL, 0, NULL, 0);
  else if (G.log_action == 2)
    ws_server_shutdown(s, 1000);
  G.in_log = 0;
}

static void fixture(size_t max_queued) {
  ws_config cfg;
  memset(&G, 0, sizeof G);
  memset(C, 0, sizeof C);
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_log = on_log;
  if (max_queued) cfg.max_queued = max_queued;
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  ws_server_tick(S, 0);
}

static void finish(void) {
  int i;
  ws_server_free(S);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  for (i = 0; i < 4; i++) mt_free(&C[i]);
}

static uint64_t unknown(void) {
  ws_stats st;
  ws_server_stats(S, &st, sizeof st);
  return st.unknown_targets;
}

/* An id no connection can ever hold ("": take_device_id reads it as
 * absent; one longer than max_device_id: refused with 400) is the
 * caller's error, as NULL is and as "" or 256 bytes are for a user or
 * group: WS_EINVAL from the single-target calls, not 0 and an unknown
 * target. (Inside a device list it stays an unknown entry, as NULL.) */
Test(fanout, send_device_to_an_impossible_id_is_einval) {
  char longid[130];
  const char *const list[] = {"", "d0"};
  fixture(0);
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  memset(longid, 'x', 129);
  longid[129] = '\0'; /* max_device_id is 128 */
  uint64_t u0 = unknown();
  cr_expect_eq(ws_send_device(S, "", "x", NULL), WS_EINVAL);
  cr_expect_eq(ws_send_device_json(S, "", "x", "1", 1), WS_EINVAL);
  cr_expect_eq(ws_send_device(S, longid, "x", NULL), WS_EINVAL);
  cr_expect_eq(ws_post(S, WS_POST_DEVICE, "", "x", NULL, 0), WS_EINVAL);
  cr_expect_eq(ws_post(S, WS_POST_DEVICE, longid, "x", NULL, 0), WS_EINVAL);
  ws_server_tick(S, 1);
  cr_expect_eq(unknown(), u0, "refused calls count nothing");
  /* Lists: one bad entry is counted, the rest still delivered. */
  cr_expect_eq(ws_send_devices(S, list, 2, "l", NULL), 1);
  cr_expect_eq(unknown(), u0 + 1);
  mt_expect_text(&C[0], "{\"action\":\"l\"}");
  mt_expect_nothing(&C[0]);
  finish();
}

/* unknown_targets counts a device whose connection is closing (it is
 * "not found", as ws_server_find_device says), but not a user or group
 * whose only connection is closing: both sends reach nobody, and
 * ws_server_user_count / group_count already say 0. */
Test(fanout, a_user_or_group_with_no_open_connection_is_unknown) {
  fixture(0);
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  cr_assert_eq(ws_conn_set_user(C[0].c, "u"), WS_OK);
  cr_assert_eq(ws_conn_join(C[0].c, "g"), WS_OK);
  cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_server_user_count(S, "u"), 0);
  uint64_t u0 = unknown();
  cr_expect_eq(ws_send_device(S, "d0", "x", NULL), 0);
  cr_expect_eq(unknown(), u0 + 1, "a closing device is unknown");
  cr_expect_eq(ws_push_user(S, "u", "x", NULL), 0);
  cr_expect_eq(unknown(), u0 + 2, "so is a user with no open connection");
  cr_expect_eq(ws_publish(S, "g", "x", NULL), 0);
  cr_expect_eq(unknown(), u0 + 3, "and a group with no open member");
  finish();
}

/* A queue of 100 bytes, 90 of them taken on C[0] (its socket blocked):
 * the next message to it applies the queue policy (WS_QUEUE_CLOSE),
 * which logs "closing slow consumer" and runs on_log. */
static void three_with_a_full_first(void) {
  static char fill[90];
  fixture(100);
  mt_connect(&C[0], S, "slow", MT_WHOLE);
  mt_connect(&C[1], S, "a", MT_WHOLE);
  mt_connect(&C[2], S, "b", MT_WHOLE);
  C[0].would_block = 1;
  cr_assert_eq(ws_conn_send_binary(C[0].c, fill, sizeof fill), WS_OK);
}

/* A message sent from a callback that a fan-out runs (on_log, for the
 * slow consumer it met first) overtakes that fan-out on the receivers it
 * has not reached yet: "a" and "b" get B before A, though A's call began
 * first and its return value counts them. ws_post guards this case (a
 * nested tick delivers nothing); a direct fan-out does not. */
Test(fanout, a_send_from_on_log_does_not_overtake_the_fanout_under_way) {
  const char *const ids[] = {"slow", "a", "b"};
  int i;
  three_with_a_full_first();
  G.log_action = 1;
  cr_assert_eq(ws_send_devices_json(S, ids, 3, "A", NULL, 0), 2);
  for (i = 1; i < 3; i++) {
    mt_expect_text(&C[i], "{\"action\":\"A\"}");
    mt_expect_text(&C[i], "{\"action\":\"B\"}");
    mt_expect_nothing(&C[i]);
  }
  finish();
}

/* ws_server_shutdown from that on_log: the 1001s go out at once, so the
 * fan-out under way misses every receiver after the slow one (0 instead
 * of 2). The header promises the opposite for a post's delivery ("the
 * 1001s wait until that delivery ... so none misses them"). */
Test(fanout, a_shutdown_from_on_log_does_not_cut_the_fanout_under_way) {
  const char *const ids[] = {"slow", "a", "b"};
  int i, n;
  three_with_a_full_first();
  G.log_action = 2;
  n = ws_send_devices_json(S, ids, 3, "A", NULL, 0);
  cr_expect_eq(n, 2, "reached %d of the 2 open receivers", n);
  for (i = 1; i < 3; i++) {
    mt_expect_text(&C[i], "{\"action\":\"A\"}");
    mt_expect_close(&C[i], 1001);
  }
  finish();
}
