/* ws_stats against its documentation (an audit of the counters). The
 * frames_allocated tests failed before their fix: a send or fan-out that
 * failed after building its frame (too big for any queue, out of memory,
 * a full queue) counted it, where a refused ws_prepare or ws_post counts
 * none; and the library's own error replies, which msgs_out counts, were
 * missing from it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

#define NC 3

static ws_server *S;
static mt_conn C[NC];

static void server(size_t max_queued, int policy, void (*tweak)(ws_config *)) {
  ws_config cfg;
  memset(C, 0, sizeof C);
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.queue_policy = policy;
  if (max_queued) cfg.max_queued = max_queued;
  if (tweak) tweak(&cfg);
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  ws_server_tick(S, 0);
}

/* n connections d0.., each in group "g" and bound to user "u". */
static void fixture(size_t max_queued, int policy, int n) {
  server(max_queued, policy, NULL);
  for (int i = 0; i < n; i++) {
    char id[8];
    snprintf(id, sizeof id, "d%d", i);
    mt_connect(&C[i], S, id, MT_WHOLE);
    cr_assert_eq(ws_conn_join(C[i].c, "g"), WS_OK);
    cr_assert_eq(ws_conn_set_user(C[i].c, "u"), WS_OK);
  }
}

static void finish(void) {
  ws_server_free(S);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  for (int i = 0; i < NC; i++) mt_free(&C[i]);
}

static ws_stats stats(void) {
  ws_stats st;
  cr_assert_eq(ws_server_stats(S, &st, sizeof st), WS_OK);
  return st;
}

static unsigned long long frames(void) {
  return (unsigned long long)stats().frames_allocated;
}

/* Takes the receiver's queue (max_queued 100) to 92 bytes, its socket
 * blocked: any envelope after it is past the cap. */
static void fill(mt_conn *t) {
  static const char pad[90];
  t->would_block = 1;
  cr_assert_eq(ws_conn_send_binary(t->c, pad, sizeof pad), WS_OK);
}

/* ---- frames_allocated ------------------------------------------------ */

/* data of 95 bytes passes the early length check (not past max_queued)
 * but its envelope does not: every path refuses it with WS_ETOOBIG after
 * building the frame. ws_prepare_json and ws_post counted nothing; the
 * send and fan-out calls counted one each (7 before the fix). */
Test(stats_audit, frames_allocated_counts_no_call_refused_as_too_big) {
  const char *const ids[] = {"d0"};
  char data[96];
  ws_prepared *p;
  unsigned long long f0;
  data[0] = '"';
  memset(data + 1, 'a', 93);
  data[94] = '"';
  data[95] = '\0';
  fixture(100, WS_QUEUE_CLOSE, 1);
  f0 = frames();
  cr_assert_eq(ws_prepare_json(S, "x", data, 95, &p), WS_ETOOBIG);
  cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "x", data, 95), WS_ETOOBIG);
  cr_assert_eq(frames(), f0, "the documented baseline");
  cr_assert_eq(ws_broadcast_json(S, "x", data, 95, NULL, 0), WS_ETOOBIG);
  cr_assert_eq(ws_broadcast_json(S, "x", data, 95, ids, 1), WS_ETOOBIG);
  cr_assert_eq(ws_send_devices_json(S, ids, 1, "x", data, 95), WS_ETOOBIG);
  cr_assert_eq(ws_send_device_json(S, "d0", "x", data, 95), WS_ETOOBIG);
  cr_assert_eq(ws_push_user_json(S, "u", "x", data, 95), WS_ETOOBIG);
  cr_assert_eq(ws_publish_json(S, "g", "x", data, 95), WS_ETOOBIG);
  cr_assert_eq(ws_conn_send_json(C[0].c, "x", data, 95), WS_ETOOBIG);
  cr_expect_eq(frames(), f0, "%llu frames counted for refused calls",
               frames() - f0);
  mt_expect_nothing(&C[0]);
  finish();
}

/* A send to a full queue fails (WS_EQUEUEFULL) and counts no frame; a
 * fan-out to it does not fail (0 receivers) and counts its one frame,
 * as it counts in broadcasts. */
Test(stats_audit, frames_allocated_counts_no_send_refused_for_a_full_queue) {
  ws_stats a, b;
  fixture(100, WS_QUEUE_DROP, 1);
  fill(&C[0]);
  a = stats();
  cr_assert_eq(ws_conn_send_json(C[0].c, "x", NULL, 0), WS_EQUEUEFULL);
  cr_assert_eq(ws_conn_send_text(C[0].c, "0123456789", 10), WS_EQUEUEFULL);
  b = stats();
  cr_expect_eq(b.frames_allocated, a.frames_allocated, "%llu counted",
               (unsigned long long)(b.frames_allocated - a.frames_allocated));
  cr_assert_eq(b.drops_queue_full, a.drops_queue_full + 2);
  cr_assert_eq(ws_send_device_json(S, "d0", "x", NULL, 0), 0);
  a = stats();
  cr_assert_eq(a.frames_allocated, b.frames_allocated + 1);
  cr_assert_eq(a.broadcasts, b.broadcasts + 1);
  finish();
}

/* One call with its n-th allocation failing, on a fresh server with one
 * receiver: a call that fails counts no frame, one that does not (a
 * receiver closed for want of memory is no failure of the call) counts
 * one. The receiver's blocked queue holds two frames, so that a third
 * grows it (an allocation after the frame's). Returns whether the n-th
 * allocation was reached. */
static int one_failing_call(long n, int fan_out, int *failed_late) {
  unsigned long long f0;
  int rc, reached;
  fixture(0, WS_QUEUE_CLOSE, 1);
  C[0].would_block = 1;
  cr_assert_eq(ws_conn_send_text(C[0].c, "p", 1), WS_OK);
  cr_assert_eq(ws_conn_send_text(C[0].c, "q", 1), WS_OK);
  f0 = frames();
  test_alloc_reset(n);
  rc = fan_out ? ws_broadcast_json(S, "x", "1", 1, NULL, 0)
               : ws_conn_send_json(C[0].c, "x", "1", 1);
  reached = test_alloc_failed();
  test_alloc_reset(0);
  if (rc < 0) {
    cr_assert_eq(rc, WS_ENOMEM);
    cr_expect_eq(frames(), f0, "%s, allocation %ld failed: WS_ENOMEM, "
                 "yet its frame counted", fan_out ? "fan-out" : "send", n);
    if (n > 1) *failed_late = 1; /* after the frame (allocation 1) */
  } else {
    cr_expect_eq(frames(), f0 + 1, "%s, allocation %ld",
                 fan_out ? "fan-out" : "send", n);
  }
  finish();
  return reached;
}

Test(stats_audit, frames_allocated_counts_no_call_out_of_memory) {
  for (int fan_out = 0; fan_out < 2; fan_out++) {
    int failed_late = 0;
    for (long n = 1; one_failing_call(n, fan_out, &failed_late); n++)
      continue;
    cr_assert(failed_late, "%s: no failure after the frame was built",
              fan_out ? "fan-out" : "send");
  }
}

/* The library's error reply is a message frame it builds and queues, as
 * ws_conn_send_error's is: msgs_out counted it, frames_allocated did
 * not. */
Test(stats_audit, frames_allocated_counts_the_librarys_error_replies) {
  ws_stats a, b;
  fixture(0, WS_QUEUE_CLOSE, 1);
  a = stats();
  cr_assert_eq(mt_send_text(&C[0], "not json", MT_WHOLE), WS_OK);
  b = stats();
  cr_assert_eq(b.bad_messages, a.bad_messages + 1);
  cr_assert_eq(b.msgs_out, a.msgs_out + 1, "the reply was queued");
  cr_expect_eq(b.frames_allocated, a.frames_allocated + 1,
               "the reply's frame not counted");
  cr_assert_eq(ws_conn_send_error(C[0].c, "x", "y"), WS_OK);
  a = stats();
  cr_assert_eq(a.frames_allocated, b.frames_allocated + 1);
  cr_assert_eq(a.msgs_out, b.msgs_out + 1);
  finish();
}
