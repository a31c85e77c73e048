/* ws_stats against its documentation (from an audit of the counters). The
 * frames_allocated tests failed before their fix: a send or fan-out that
 * failed after building its frame (too big for any queue, out of memory,
 * a full queue) counted it, where a refused ws_prepare or ws_post counts
 * none; and the library's own error replies, which msgs_out counts, were
 * missing from it. The others pin what the header now says where it was
 * vague: drops_queue_full in a fan-out whose callback closes a receiver,
 * and refusals when a callback ends an upgrade that
 * ws_conn_upgrade_answer reports as a 503. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

#define NC 3

static ws_server *S;
static mt_conn C[NC];
static mt_conn *abort_at_log; /* on_log's "slow consumer" line aborts it */
static mt_conn *close_at_log; /* or closes it (4000) */
static int slow_lines;        /* queue policy lines ("closing slow ...") */

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)level, (void)ud;
  if (strstr(msg, "closing slow consumer")) slow_lines++;
  if (close_at_log && close_at_log->c && strstr(msg, "slow consumer")) {
    cr_assert_eq(ws_conn_close(close_at_log->c, 4000, "host"), WS_OK);
    close_at_log = NULL;
  }
  if (abort_at_log && abort_at_log->c && strstr(msg, "slow consumer")) {
    ws_conn_abort(abort_at_log->c);
    abort_at_log = NULL;
  }
}

static int origin_aborts(const ws_request *req, const char *origin,
                         void *ud) {
  (void)req, (void)origin, (void)ud;
  ws_conn_abort(C[0].c);
  return 1;
}

static int open_aborts(ws_conn *c, void *ud) {
  (void)ud;
  ws_conn_abort(c);
  return 0;
}

static void server(size_t max_queued, int policy, void (*tweak)(ws_config *)) {
  ws_config cfg;
  memset(C, 0, sizeof C);
  abort_at_log = NULL;
  close_at_log = NULL;
  slow_lines = 0;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_log = on_log;
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
    char id[16];
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
Test(stats_counts, frames_allocated_counts_no_call_refused_as_too_big) {
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
Test(stats_counts, frames_allocated_counts_no_send_refused_for_a_full_queue) {
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

Test(stats_counts, frames_allocated_counts_no_call_out_of_memory) {
  for (int fan_out = 0; fan_out < 2; fan_out++) {
    int failed_late = 0;
    for (long n = 1; one_failing_call(n, fan_out, &failed_late); n++)
      continue;
    cr_assert(failed_late, "%s: no failure after the frame was built",
              fan_out ? "fan-out" : "send");
  }
}

/* A post's frame counts as a fan-out's: when its delivery did not fail.
 * It was counted before delivery, so a delivery out of memory (its
 * receivers list) counted a frame that no broadcast went with. Each
 * allocation of the drain fails in turn: frames_allocated and broadcasts
 * move together. */
Test(stats_counts, frames_allocated_counts_no_post_delivery_out_of_memory) {
  int dropped = 0;
  for (long n = 1;; n++) {
    ws_stats a, b;
    int reached;
    fixture(0, WS_QUEUE_CLOSE, 2);
    cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "x", "1", 1), WS_OK);
    a = stats();
    test_alloc_reset(n);
    ws_server_tick(S, 1); /* delivers the post */
    reached = test_alloc_failed();
    test_alloc_reset(0);
    b = stats();
    cr_expect_eq(b.frames_allocated - a.frames_allocated,
                 b.broadcasts - a.broadcasts, "allocation %ld", n);
    dropped += b.broadcasts == a.broadcasts;
    finish();
    if (!reached) break;
  }
  cr_assert_gt(dropped, 0, "no delivery ran out of memory");
}

/* A post that reaches nobody (its device is not connected) still went
 * out as a fan-out that did not fail: broadcasts counts it, and so must
 * frames_allocated, as for a ws_send_device_json to an unknown id. */
Test(stats_counts, frames_allocated_counts_a_post_that_reaches_nobody) {
  ws_stats a, b;
  fixture(0, WS_QUEUE_CLOSE, 1);
  a = stats();
  cr_assert_eq(ws_send_device_json(S, "nobody", "x", "1", 1), 0);
  b = stats();
  cr_assert_eq(b.broadcasts, a.broadcasts + 1);
  cr_assert_eq(b.frames_allocated, a.frames_allocated + 1);
  cr_assert_eq(ws_post(S, WS_POST_DEVICE, "nobody", "x", "1", 1), WS_OK);
  ws_server_tick(S, 1); /* delivers the post, to no one */
  a = stats();
  cr_assert_eq(a.broadcasts, b.broadcasts + 1, "the post was not delivered");
  cr_assert_eq(a.unknown_targets, b.unknown_targets + 1);
  cr_expect_eq(a.frames_allocated, b.frames_allocated + 1,
               "a post delivered to nobody: its frame not counted");
  finish();
}

/* The library's error reply is a message frame it builds and queues, as
 * ws_conn_send_error's is: msgs_out counted it, frames_allocated did
 * not. */
Test(stats_counts, frames_allocated_counts_the_librarys_error_replies) {
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

/* A bad message is counted as received, even when its error reply finds
 * the queue full: the reply is then a drop, not a message out. Pins the
 * header's wording of bad_messages. */
Test(stats_counts, bad_messages_counts_one_whose_reply_found_the_queue_full) {
  ws_stats a, b;
  fixture(100, WS_QUEUE_DROP, 1);
  fill(&C[0]);
  a = stats();
  cr_assert_eq(mt_send_text(&C[0], "not json", MT_WHOLE), WS_OK);
  b = stats();
  cr_assert_eq(b.bad_messages, a.bad_messages + 1);
  cr_assert_eq(b.drops_queue_full, a.drops_queue_full + 1);
  cr_assert_eq(b.msgs_out, a.msgs_out, "the reply was not queued");
  /* nor its frame counted, as for a send refused for a full queue
   * (mutation pass: counted whatever the queue answered) */
  cr_assert_eq(b.frames_allocated, a.frames_allocated);
  cr_assert_eq(b.conns_open, 1, "WS_QUEUE_DROP keeps it open");
  finish();
}

/* ---- drops_queue_full ------------------------------------------------ */

/* d0 and d1 full, d2 not; *at_log (abort_at_log or close_at_log) names
 * d1 for on_log, then one message goes to the three: a and b are the
 * counters before and after. */
static void send_past_two_full(mt_conn **at_log, ws_stats *a, ws_stats *b) {
  const char *const ids[] = {"d0", "d1", "d2"};
  fixture(100, WS_QUEUE_CLOSE, 3);
  fill(&C[0]);
  fill(&C[1]);
  *at_log = &C[1];
  *a = stats();
  cr_assert_eq(ws_send_devices_json(S, ids, 3, "A", NULL, 0), 1);
  *b = stats();
  cr_assert_null(*at_log, "on_log ran");
}

/* d0 and d1 full, d2 not. The fan-out queues on d2, then applies the
 * policy to d0, whose log line makes on_log abort d1 before its turn:
 * the message was kept from d1 by its full queue too, so it counts as
 * a drop (no policy is applied to it: the abort stands). Pins the
 * header's wording of drops_queue_full. */
Test(stats_counts, drops_queue_full_counts_a_receiver_closed_by_the_fanout) {
  ws_stats a, b;
  send_past_two_full(&abort_at_log, &a, &b);
  cr_assert_eq(C[1].closes, 1, "d1 aborted");
  cr_assert_eq(b.drops_queue_full, a.drops_queue_full + 2);
  cr_assert_eq(b.fanout, a.fanout + 1);
  cr_assert_eq(b.closes_1006, a.closes_1006 + 1, "d1's abort");
  C[0].would_block = 0;
  mt_pump(&C[0]);
  mt_expect_close(&C[0], WS_CLOSE_SLOW_CONSUMER);
  mt_expect_text(&C[2], "{\"action\":\"A\"}");
  finish();
}

/* The same with d1 closed by on_log (ws_conn_close) instead: still
 * there when its turn comes, but closing. The message is a drop and no
 * policy is applied to it: no second "closing slow consumer" line, the
 * close handshake the host began (4000) left waiting for the peer
 * (mutation pass: the policy applied to any receiver failed the closing
 * d1 with a second line and ended it once its queue drained). */
Test(stats_counts, a_receiver_closing_since_the_fanout_began_gets_no_policy) {
  ws_stats a, b;
  mt_frame f;
  send_past_two_full(&close_at_log, &a, &b);
  cr_expect_eq(slow_lines, 1, "policy lines: %d, d0's alone", slow_lines);
  cr_expect_eq(b.drops_queue_full, a.drops_queue_full + 2);
  C[1].would_block = 0;
  mt_pump(&C[1]);
  mt_expect_frame(&C[1], &f); /* fill()'s */
  mt_expect_close(&C[1], 4000);
  cr_expect_eq(C[1].closes, 0, "d1 waits for its peer's close");
  finish();
}

/* ---- refusals -------------------------------------------------------- */

static void with_origin_aborting(ws_config *cfg) {
  cfg->check_origin = origin_aborts;
}

static void with_open_aborting(ws_config *cfg) { cfg->on_open = open_aborts; }

/* The 503 ws_conn_upgrade_answer reports for a connection a callback
 * ended: not a refusal the library made (fed, the same connection ends
 * unanswered and counts none). One ended in on_open counts in
 * conns_total; one ended earlier counts nowhere. Pins the header. */
static ws_stats answer_ended_by(void (*tweak)(ws_config *), const char *why) {
  char accept[WS_ACCEPT_LEN + 1];
  const char *reason;
  int status;
  ws_stats st;
  server(0, WS_QUEUE_CLOSE, tweak);
  mt_open(&C[0], S);
  cr_assert_eq(ws_conn_upgrade_answer(C[0].c, "GET", "/ws", "device_id=a",
                                      mt_upgrade_headers, 5, &status,
                                      &reason, accept),
               WS_OK);
  cr_assert_eq(status, 503);
  cr_assert_str_eq(reason, why);
  st = stats();
  for (int k = 0; k < WS_REFUSE_COUNT_; k++)
    cr_assert_eq(st.refusals[k], 0, "%s: refusal %d counted", why, k);
  cr_assert_eq(st.conns_pending + st.conns_open, 0);
  finish();
  return st;
}

Test(stats_counts, upgrade_answer_ended_by_a_callback_is_no_refusal) {
  ws_stats st;
  st = answer_ended_by(with_origin_aborting,
                       "connection closed during the upgrade");
  cr_assert_eq(st.conns_total, 0);
  st = answer_ended_by(with_open_aborting,
                       "connection closed during on_open");
  cr_assert_eq(st.conns_total, 1);
  cr_assert_eq(st.closes_1006, 1, "on_close (1006) after its on_open");
}
