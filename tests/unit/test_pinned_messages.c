/* Behaviour pinned down by a mutation-testing pass (the fifth review):
 * each Test here failed on some mutant of envelope.c, json_check.c,
 * send.c, post.c, registry.c or server.c that the rest of the suite let
 * through. JSON validity at its edges (read past the end included, with a
 * guard page), escaping of outgoing actions, the registry's index and
 * group lists, argument errors, posting, and the config checks. */
#define _GNU_SOURCE /* memmem */
#include "pinned.h"

#include "internal.h"
#include <cjson/cJSON.h>
#include <stddef.h>

/* ---- envelope ---------------------------------------------------------- */
/* outgoing action names escape '\\' and every control character (0x1f too). */
Test(pinned_envelope, action_escapes) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_conn_send(A.c, "a\\b\x1f", NULL), WS_OK);
  mt_expect_text(&A, "{\"action\":\"a\\\\b\\u001f\"}");
  k_done(s, &A);
}
/* an unknown action's echo in the error reply is cut at a character boundary.
 */
Test(pinned_envelope, error_detail_cut_at_char_boundary) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = NULL;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  char msg[400];
  size_t o = 0;
  o += (size_t)sprintf(msg, "{\"action\":\"");
  memset(msg + o, 'a', 199);
  o += 199;
  memcpy(msg + o, "\xc3\xa9\"}", 4);
  o += 4;
  msg[o] = 0;
  mt_send_text(&A, msg, MT_WHOLE);
  mt_frame f;
  mt_expect_frame(&A, &f);
  cr_assert_eq(f.opcode, MT_TEXT);
  cr_assert(f.len > 4 && memcmp(f.payload + f.len - 4, "a\"}}", 4) == 0, "%.*s",
            (int)f.len, f.payload);
  k_done(s, &A);
}
/* a handler returning a positive value does not close the connection. */
static int pos_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c;
  (void)m;
  (void)ud;
  return 1;
}
Test(pinned_envelope, positive_handler_return) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = pos_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  mt_send_text(&A, "{\"action\":\"n\"}", MT_WHOLE);
  mt_expect_nothing(&A);
  cr_assert_eq(K.closes, 0);
  k_done(s, &A);
}
/* number and string grammar of the _json validator (and of incoming envelopes).
 */
Test(pinned_envelope, json_grammar) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_conn_send_json(A.c, "x", "-1", 2), WS_OK,
               "J02 negative number");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "01", 2), WS_EJSON,
               "J03 leading zero");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "\"\\uDBFF\\uDFFF\"", 14), WS_OK,
               "J07 U+10FFFF pair");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "\"\\x41\"", 6), WS_EJSON,
               "J10 \\x escape");
  /* The three literals, whole and cut short or misspelt by one byte. */
  cr_assert_eq(ws_conn_send_json(A.c, "x", "[true,false,null]", 17), WS_OK,
               "J20 literals");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "false", 4), WS_EJSON, "J21 fals");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "falsy", 5), WS_EJSON, "J22");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "tru", 3), WS_EJSON, "J23");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "nul", 3), WS_EJSON, "J24");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "False", 5), WS_EJSON, "J25");
  k_done(s, &A);
}
/* a string ending in a backslash at the very end of the input is not read past.
 */
Test(pinned_envelope, backslash_at_end_no_overread) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  test_guard g;
  test_guard_init(&g, 16);
  const char *p = test_guard_place(&g, "\"\\", 2);
  cr_assert_eq(ws_conn_send_json(A.c, "x", p, 2), WS_EJSON);
  test_guard_free(&g);
  k_done(s, &A);
}
/* depth arrays nested in j ("[[...]]"); returns the length. */
static size_t nested(char *j, int depth) {
  memset(j, '[', (size_t)depth);
  memset(j + depth, ']', (size_t)depth);
  return 2 * (size_t)depth;
}
/* A cJSON tree of depth arrays, the innermost empty. */
static cJSON *nested_tree(int depth) {
  cJSON *t = cJSON_CreateArray(), *in = t;
  while (--depth > 0) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(in, a);
    in = a;
  }
  return t;
}
/* nesting limit: 128 arrays and objects open at once, an innermost empty
 * one included, the envelope around data included. Sent data of 127
 * arrays passes, 128 does not, as text or as a tree (review 8: the check
 * counted values, so 129 empty arrays went out, in a message the library
 * itself refuses when it receives it). */
Test(pinned_envelope, depth_limit) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  static char j[400];
  cJSON *t;
  cr_assert_eq(ws_conn_send_json(A.c, "x", j, nested(j, 127)), WS_OK);
  cr_assert_eq(ws_conn_send_json(A.c, "x", j, nested(j, 128)), WS_EJSON);
  t = nested_tree(127);
  cr_assert_eq(ws_conn_send(A.c, "x", t), WS_OK);
  cJSON_Delete(t);
  t = nested_tree(128);
  cr_assert_eq(ws_conn_send(A.c, "x", t), WS_EJSON);
  cJSON_Delete(t);
  k_done(s, &A);
}
/* Received: the envelope and 127 arrays in data are handled; one more is
 * invalid_json, and the handler does not run. */
static int depth_calls;
static int depth_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)m, (void)ud;
  depth_calls++;
  return 0;
}
/* Sends {"action":"d","data":<depth arrays>} from the client. */
static void send_nested_envelope(mt_conn *A, int depth) {
  static char msg[400];
  size_t o = (size_t)sprintf(msg, "{\"action\":\"d\",\"data\":");
  o += nested(msg + o, depth);
  memcpy(msg + o, "}", 2);
  mt_send_text(A, msg, MT_WHOLE);
}
Test(pinned_envelope, received_depth_limit) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = depth_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  mt_frame f;
  depth_calls = 0;
  send_nested_envelope(&A, 127);
  cr_assert_eq(depth_calls, 1);
  send_nested_envelope(&A, 128);
  cr_assert_eq(depth_calls, 1);
  mt_expect_frame(&A, &f);
  cr_assert(memmem(f.payload, f.len, "invalid_json", 12) != NULL, "%.*s",
            (int)f.len, f.payload);
  k_done(s, &A);
}
/* separators and trailing bytes are checked. */
Test(pinned_envelope, json_structure) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_conn_send_json(A.c, "x", "[1x2]", 5), WS_EJSON,
               "J12 missing comma");
  cr_assert_eq(ws_conn_send_json(A.c, "x", "1}", 2), WS_EJSON,
               "J13 trailing bytes");
  k_done(s, &A);
}
/* "act" is not "action"; the first "action" member wins (as cJSON). */
static char got[64];
static int got_n;
static int act_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c;
  (void)ud;
  got_n++;
  snprintf(got, sizeof got, "%s", m->action);
  return 0;
}
Test(pinned_envelope, action_member) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = act_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  mt_send_text(&A, "{\"act\":\"x\"}", MT_WHOLE);
  cr_assert_eq(got_n, 0, "J14 \"act\" taken as \"action\"");
  mt_send_text(&A, "{\"action\":\"a\", \"action\":\"b\"}", MT_WHOLE);
  cr_assert_str_eq(got, "a", "J15");
  k_done(s, &A);
}
/* the fast path does not read past a short message. */
Test(pinned_envelope, canonical_no_overread) {
  test_guard g;
  test_guard_init(&g, 16);
  ws__env_scan sc;
  const char *p = test_guard_place(&g, "{\"act", 5);
  cr_assert_eq(ws__envelope_scan(p, 5, &sc), WS__ENV_INVALID_JSON);
  test_guard_free(&g);
}
/* an escaped action longer than 255 bytes is bad_action (no overflow of the
 * action buffer). */
Test(pinned_envelope, long_escaped_action) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = act_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  got_n = 0;
  static char m[2000];
  size_t o = (size_t)sprintf(m, "{\"action\":\"\\u0061");
  memset(m + o, 'b', 1000);
  o += 1000;
  strcpy(m + o, "\"}");
  mt_send_text(&A, m, MT_WHOLE);
  cr_assert_eq(got_n, 0);
  mt_frame f;
  mt_expect_frame(&A, &f);
  cr_assert(memmem(f.payload, f.len, "bad_action", 10) != NULL);
  k_done(s, &A);
}
/* "\u07ff" decodes to the two bytes DF BF. */
Test(pinned_envelope, u07ff_two_bytes) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = act_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  mt_send_text(&A, "{\"action\":\"\\u07ff\"}", MT_WHOLE);
  cr_assert_str_eq(got, "\xdf\xbf");
  k_done(s, &A);
}
/* an unterminated action string is invalid JSON, not action "a". */
Test(pinned_envelope, fast_path_requires_closing_quote) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = act_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  got_n = 0;
  mt_send_text(&A, "{\"action\":\"a\\}", MT_WHOLE);
  cr_assert_eq(got_n, 0);
  mt_frame f;
  mt_expect_frame(&A, &f);
  cr_assert(memmem(f.payload, f.len, "invalid_json", 12) != NULL);
  k_done(s, &A);
}
/* a truncated literal at the end of the input is not read past. */
Test(pinned_envelope, literal_no_overread) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  test_guard g;
  test_guard_init(&g, 16);
  cr_assert_eq(ws_conn_send_json(A.c, "x", test_guard_place(&g, "tr", 2), 2),
               WS_EJSON);
  test_guard_free(&g);
  k_done(s, &A);
}

/* ---- send -------------------------------------------------------------- */
/* device_ids NULL with n > 0 is WS_EINVAL. NULL data with len is
 * WS_EINVAL. Invalid UTF-8 text is WS_EINVAL. Each single send counts
 * one frame. An oversized raw send is refused before anything is
 * allocated. */
Test(pinned_send, send_arg_checks) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.max_queued = 1000;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_broadcast(s, "x", NULL, NULL, 2), WS_EINVAL, "S10");
  cr_assert_eq(ws_conn_send_binary(A.c, NULL, 5), WS_EINVAL, "S13");
  cr_assert_eq(ws_conn_send_text(A.c, "\xff", 1), WS_EINVAL, "S15");
  uint64_t fa = k_stats(s).frames_allocated;
  cr_assert_eq(ws_conn_send_text(A.c, "ok", 2), WS_OK);
  cr_assert_eq(k_stats(s).frames_allocated, fa + 1, "S12");
  static char big[5000];
  test_alloc_reset(0);
  cr_assert_eq(ws_conn_send_binary(A.c, big, 1001), WS_ETOOBIG);
  cr_assert_eq(test_alloc_count(), 0, "S14: allocated before refusing");
  k_done(s, &A);
}

/* ---- post -------------------------------------------------------------- */
static int wakes;
static int on_wake(ws_server *s, void *ud) {
  (void)s;
  (void)ud;
  wakes++;
  return 0;
}
/* wake fires only when the post queue was empty. Posted frames are
 * counted. */
Test(pinned_post, post_wake_once_and_counted) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.wake = on_wake;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", NULL, 0), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "y", NULL, 0), WS_OK);
  cr_assert_eq(wakes, 1);
  ws_server_tick(s, 1);
  mt_expect_text(&A, "{\"action\":\"x\"}");
  mt_expect_text(&A, "{\"action\":\"y\"}");
  cr_assert_eq(k_stats(s).frames_allocated, 2);
  k_done(s, &A);
}
/* a NULL name for a named target is WS_EINVAL. */
Test(pinned_post, post_null_name) {
  ws_config cfg;
  k_cfg(&cfg);
  ws_server *s = k_server(&cfg);
  cr_assert_eq(ws_post(s, WS_POST_DEVICE, NULL, "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_post(s, WS_POST_GROUP, NULL, "x", NULL, 0), WS_EINVAL);
  ws_server_free(s);
}
/* max_posted is inclusive: a post costing exactly max_posted is taken, and
 * posts fill the backlog up to exactly max_posted; one byte less and that
 * post can never fit (WS_ETOOBIG). Review 8 (mutants P2, P3). */
static ws_server *posts_capped(size_t max_posted) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.max_posted = max_posted;
  return k_server(&cfg);
}
Test(pinned_post, max_posted_is_inclusive) {
  ws_server *s = posts_capped((size_t)16 << 20);
  size_t cost;
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_OK);
  cost = s->post_bytes;
  cr_assert_gt(cost, 0);
  ws_server_free(s);
  s = posts_capped(cost);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_ELIMIT);
  ws_server_free(s);
  s = posts_capped(2 * cost);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_ELIMIT);
  ws_server_free(s);
  s = posts_capped(cost - 1);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_ETOOBIG);
  ws_server_free(s);
}
/* A received action of exactly WS_MAX_ACTION bytes is dispatched (with
 * its full name); one byte more is bad_action. Review 8 (mutant E2: only
 * the sending side was tested at the bound). */
static size_t action_len_seen;
static int len_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  action_len_seen = strlen(m->action);
  return 0;
}
Test(pinned_envelope, received_action_of_max_length) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = len_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  static char msg[WS_MAX_ACTION + 64];
  size_t o;
  mt_frame f;
  action_len_seen = 0;
  o = (size_t)sprintf(msg, "{\"action\":\"");
  memset(msg + o, 'a', WS_MAX_ACTION);
  strcpy(msg + o + WS_MAX_ACTION, "\"}");
  mt_send_text(&A, msg, MT_WHOLE);
  cr_assert_eq(action_len_seen, (size_t)WS_MAX_ACTION);
  mt_expect_nothing(&A);
  action_len_seen = 0;
  memset(msg + o, 'a', WS_MAX_ACTION + 1);
  strcpy(msg + o + WS_MAX_ACTION + 1, "\"}");
  mt_send_text(&A, msg, MT_WHOLE);
  cr_assert_eq(action_len_seen, 0);
  mt_expect_frame(&A, &f);
  cr_assert(memmem(f.payload, f.len, "bad_action", 10) != NULL, "%.*s",
            (int)f.len, f.payload);
  k_done(s, &A);
}
/* messages posted before ws_server_shutdown still go out, ahead of the 1001. */
Test(pinned_post, post_before_shutdown_delivered) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", NULL, 0), WS_OK);
  cr_assert_eq(ws_server_shutdown(s, 1000), WS_OK);
  mt_expect_text(&A, "{\"action\":\"x\"}");
  mt_expect_close(&A, 1001);
  k_done(s, &A);
}

/* ---- registry ---------------------------------------------------------- */
/* group and user names of exactly 255 bytes work; 256 is WS_EINVAL. */
Test(pinned_registry, name_255) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  char g[300];
  memset(g, 'g', sizeof g);
  g[255] = 0;
  cr_assert_eq(ws_conn_join(A.c, g), WS_OK);
  cr_assert_eq(ws_server_group_count(s, g), 1);
  cr_assert_eq(ws_publish(s, g, "x", NULL), 1);
  cr_assert_eq(ws_conn_set_user(A.c, g), WS_OK);
  cr_assert_eq(ws_server_user_count(s, g), 1);
  g[255] = 'g';
  g[256] = 0;
  cr_assert_eq(ws_conn_join(A.c, g), WS_EINVAL);
  /* The counts take any name: one too long finds nothing (its lookup key
   * must not be built past its buffer; review 8, under ASan). */
  cr_assert_eq(ws_server_group_count(s, g), 0);
  cr_assert_eq(ws_server_user_count(s, g), 0);
  k_done(s, &A);
}
/* setting the same user again is WS_OK. */
Test(pinned_registry, same_user_again) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_conn_set_user(A.c, "u1"), WS_OK);
  cr_assert_eq(ws_conn_set_user(A.c, "u1"), WS_OK);
  cr_assert_eq(ws_server_user_count(s, "u1"), 1);
  k_done(s, &A);
}
/* leaving from the middle of a group keeps the member list intact. */
Test(pinned_registry, leave_middle_member) {
  ws_config cfg;
  k_cfg(&cfg);
  ws_server *s = k_server(&cfg);
  static mt_conn A, B, C;
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_connect(&B, s, "b", MT_WHOLE);
  mt_connect(&C, s, "c", MT_WHOLE);
  ws_conn_join(A.c, "r");
  ws_conn_join(B.c, "r");
  ws_conn_join(C.c, "r");
  cr_assert_eq(ws_conn_leave(B.c, "r"), WS_OK);
  cr_assert_eq(ws_conn_leave(A.c, "r"), WS_OK);
  cr_assert_eq(ws_server_group_count(s, "r"), 1);
  cr_assert_eq(ws_publish(s, "r", "x", NULL), 1);
  mt_expect_text(&C, "{\"action\":\"x\"}");
  mt_expect_nothing(&A);
  mt_expect_nothing(&B);
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
  mt_free(&A);
  mt_free(&B);
  mt_free(&C);
}
/* a join that runs out of memory leaves no empty group behind. */
Test(pinned_registry, join_oom_no_leak) {
  long k;
  int hit = 0;
  for (k = 1; k < 10; k++) {
    ws_config cfg;
    k_cfg(&cfg);
    ws_server *s = k_server(&cfg);
    static mt_conn A;
    mt_connect(&A, s, "a", MT_WHOLE);
    test_alloc_reset(k);
    int rc = ws_conn_join(A.c, "room");
    test_alloc_reset(0);
    if (rc == WS_ENOMEM) {
      hit++;
      cr_assert_eq(ws_server_group_count(s, "room"), 0);
    }
    ws_server_free(s);
    cr_assert_eq(test_alloc_live(), 0, "fail_at %ld: leak", k);
    mt_free(&A);
  }
  cr_assert(hit >= 2);
}

/* ---- server ------------------------------------------------------------ */
static int try_cfg(void (*f)(ws_config *)) {
  ws_config cfg;
  ws_server *s = NULL;
  k_cfg(&cfg);
  f(&cfg);
  int rc = ws_server_new(&cfg, &s);
  if (s)
    ws_server_free(s);
  return rc;
}
static void mm_big(ws_config *c) {
  c->max_message = (size_t)1 << 31;
}
static void mm_ok(ws_config *c) {
  c->max_message = ((size_t)1 << 31) - 1;
}
static void mh_63(ws_config *c) {
  c->max_handshake = 63;
}
static void mh_64(ws_config *c) {
  c->max_handshake = 64;
}
static void mhd_0(ws_config *c) {
  c->max_headers = 0;
}
static void mq_0(ws_config *c) {
  c->max_queued = 0;
}
static void md_0(ws_config *c) {
  c->max_device_id = 0;
}
/* max_posted is a limit like the others: 0 would refuse every ws_post. */
static void mp_0(ws_config *c) {
  c->max_posted = 0;
}
static void mp_1(ws_config *c) {
  c->max_posted = 1;
}
/* documented limit ranges. */
Test(pinned_server, config_limits) {
  cr_assert_eq(try_cfg(mm_big), WS_EINVAL, "V01");
  cr_assert_eq(try_cfg(mm_ok), WS_OK);
  cr_assert_eq(try_cfg(mh_63), WS_EINVAL, "V02");
  cr_assert_eq(try_cfg(mh_64), WS_OK);
  cr_assert_eq(try_cfg(mhd_0), WS_EINVAL, "V03");
  cr_assert_eq(try_cfg(mq_0), WS_EINVAL, "V04");
  cr_assert_eq(try_cfg(md_0), WS_EINVAL, "V05");
  cr_assert_eq(try_cfg(mp_0), WS_EINVAL, "max_posted 0");
  cr_assert_eq(try_cfg(mp_1), WS_OK, "max_posted 1");
}
static void dp_null(ws_config *c) {
  c->device_param = NULL;
}
static void qp_2(ws_config *c) {
  c->queue_policy = 2;
}
static void bp_2(ws_config *c) {
  c->bad_message_policy = 2;
}
static void sp_null(ws_config *c) {
  c->subprotocols_count = 1;
}
static void ao_null(ws_config *c) {
  c->allowed_origins_count = 1;
}
/* documented config refusals. */
Test(pinned_server, config_refusals) {
  cr_assert_eq(try_cfg(dp_null), WS_EINVAL, "V06");
  cr_assert_eq(try_cfg(qp_2), WS_EINVAL, "V07");
  cr_assert_eq(try_cfg(bp_2), WS_EINVAL, "V08");
  cr_assert_eq(try_cfg(sp_null), WS_EINVAL, "V09");
  cr_assert_eq(try_cfg(ao_null), WS_EINVAL, "V10");
}
/* ws_server_stats copies at most size bytes. */
Test(pinned_server, stats_size_respected) {
  ws_config cfg;
  k_cfg(&cfg);
  ws_server *s = k_server(&cfg);
  struct {
    ws_stats st;
    unsigned char canary[64];
  } box;
  memset(&box, 0xAB, sizeof box);
  size_t part = offsetof(ws_stats, msgs_in);
  cr_assert_eq(ws_server_stats(s, &box.st, part), WS_OK);
  const unsigned char *p = (const unsigned char *)&box.st;
  size_t i;
  for (i = part; i < sizeof box; i++)
    cr_assert_eq(p[i], 0xAB, "byte %zu written past size", i);
  ws_server_free(s);
}
/* ws_conn_new from a callback of ws_server_free is WS_EINVAL. */
static ws_server *FS;
static int new_rc = 1;
static int close_new(ws_conn *c, int code, const char *r, void *ud) {
  (void)c;
  (void)code;
  (void)r;
  (void)ud;
  ws_conn *n = NULL;
  static mt_conn X;
  new_rc = ws_conn_new(FS, &X, &n);
  return 0;
}
Test(pinned_server, conn_new_while_destroying) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.on_close = close_new;
  ws_server *s = k_server(&cfg);
  FS = s;
  static mt_conn A;
  mt_connect(&A, s, "a", MT_WHOLE);
  ws_server_free(s);
  cr_assert_eq(new_rc, WS_EINVAL);
  mt_free(&A);
}

/* ---- mutation-testing round (registry, send, mux, outq, timer, envelope,
 * json_check, prepared, post, server, utf8): mutants the suite let through */

/* A raw item without text is the caller's mistake, WS_EJSON, not running
 * out of memory (envelope.c tree_printable). */
Test(pinned_envelope, raw_item_without_text_is_ejson) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cJSON *arr = cJSON_CreateArray(), *raw = cJSON_CreateRaw("1");
  cr_assert_not_null(arr);
  cr_assert_not_null(raw);
  cJSON_free(raw->valuestring);
  raw->valuestring = NULL;
  cJSON_AddItemToArray(arr, raw);
  cr_assert_eq(ws_conn_send(A.c, "x", arr), WS_EJSON);
  cr_assert_eq(ws_broadcast(s, "x", arr, NULL, 0), WS_EJSON);
  cJSON_Delete(arr);
  mt_expect_nothing(&A);
  k_done(s, &A);
}

/* wake gets the config's user_data. */
static void *wake_ud;
static int wake_ud_calls;
static int on_wake_ud(ws_server *s, void *ud) {
  (void)s;
  wake_ud = ud;
  wake_ud_calls++;
  return 0;
}
Test(pinned_post, wake_gets_the_user_data) {
  ws_config cfg;
  static int token;
  k_cfg(&cfg);
  cfg.wake = on_wake_ud;
  cfg.user_data = &token;
  wake_ud = NULL;
  wake_ud_calls = 0;
  ws_server *s = k_server(&cfg);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", NULL, 0), WS_OK);
  cr_assert_eq(wake_ud_calls, 1);
  cr_assert_eq(wake_ud, &token);
  ws_server_free(s);
}

/* drain_ms counts from the last tick's time, not from the clock's zero:
 * a shutdown at t=1000 with 500 ms to drain lets an open connection's
 * close handshake run until t=1500. */
Test(pinned_server, shutdown_drain_counts_from_the_last_tick) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_geq(ws_server_tick(s, 1000), 0);
  cr_assert_eq(ws_server_shutdown(s, 500), WS_OK);
  mt_expect_close(&A, 1001);
  int next = ws_server_tick(s, 1001);
  cr_assert(next > 0 && next <= 499, "next %d", next);
  cr_assert_eq(K.closes, 0, "still draining at t=1001");
  cr_assert_eq(A.closes, 0);
  ws_server_tick(s, 1499);
  cr_assert_eq(K.closes, 0, "still draining at t=1499");
  ws_server_tick(s, 1500);
  cr_assert_eq(K.closes, 1, "ended at the drain's deadline");
  cr_assert_eq(A.closes, 1);
  k_done(s, &A);
}

/* A partial allocator is refused and logged (server.c config_problem),
 * whichever of the three is given. */
static int alloc_log_calls;
static char alloc_log_line[160];
static void alloc_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)level, (void)ud;
  alloc_log_calls++;
  snprintf(alloc_log_line, sizeof alloc_log_line, "%s", msg);
}
Test(pinned_server, partial_allocator_is_refused_and_logged) {
  int which;
  for (which = 0; which < 3; which++) {
    ws_config cfg;
    ws_server *s = NULL;
    ws_allocator a = test_alloc();
    ws_config_init(&cfg);
    mt_config(&cfg, 0);
    cfg.on_log = alloc_log;
    if (which == 0) cfg.alloc.malloc = a.malloc;
    if (which == 1) cfg.alloc.realloc = a.realloc;
    if (which == 2) cfg.alloc.free = a.free;
    alloc_log_calls = 0;
    alloc_log_line[0] = '\0';
    cr_assert_eq(ws_server_new(&cfg, &s), WS_EINVAL, "only #%d", which);
    cr_assert_null(s);
    cr_assert_eq(alloc_log_calls, 1, "only #%d", which);
    cr_assert(strstr(alloc_log_line, "alloc") != NULL, "only #%d: \"%s\"",
              which, alloc_log_line);
  }
}

/* The longest drain (UINT32_MAX ms) with no other deadline: the tick's
 * answer is capped at INT32_MAX, never wrapped into -1 ("nothing left to
 * wait for") while the drain still runs. */
Test(pinned_server, longest_drain_caps_the_tick_answer) {
  ws_config cfg;
  k_cfg(&cfg);
  cfg.idle_timeout_ms = 0;
  cfg.ping_interval_ms = 0;
  cfg.write_timeout_ms = 0;
  cfg.close_timeout_ms = 0;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cr_assert_eq(ws_server_tick(s, 1), -1, "no deadline armed");
  cr_assert_eq(ws_server_shutdown(s, UINT32_MAX), WS_OK);
  mt_expect_close(&A, 1001);
  cr_assert_eq(ws_server_tick(s, 2), INT32_MAX);
  cr_assert_eq(K.closes, 0);
  k_done(s, &A);
}

/* An item cJSON cannot print is WS_EJSON at any depth, not only at the
 * top (envelope.c tree_printable walks the whole tree). */
Test(pinned_envelope, unprintable_item_deep_in_the_tree_is_ejson) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  cJSON *top = cJSON_CreateArray(), *mid = cJSON_CreateArray(),
        *low = cJSON_CreateObject(), *bad = cJSON_CreateNull();
  cr_assert(top && mid && low && bad);
  bad->type = 1 << 12; /* no cJSON type */
  cJSON_AddItemToObject(low, "k", bad);
  cJSON_AddItemToArray(mid, low);
  cJSON_AddItemToArray(top, mid);
  cr_assert_eq(ws_conn_send(A.c, "x", top), WS_EJSON);
  cJSON_Delete(top);
  mt_expect_nothing(&A);
  k_done(s, &A);
}

/* ---- json_check.c edges (same round) ----------------------------------- */

/* Numbers: an exponent takes '+' or '-' and needs digits; \u takes
 * exactly four hex digits (a-f, A-F, 0-9); an escaped NUL byte is no
 * escape; an object key must be a string and be followed by ':'. */
Test(pinned_json, number_escape_and_member_edges) {
  static const struct {
    const char *j;
    size_t len;
    int ok;
  } cases[] = {
      {"1e-5", 4, 1},        {"1E+5", 4, 1},        {"-0.5e-10", 8, 1},
      {"1e", 2, 0},          {"1e+", 3, 0},         {"[1e]", 4, 0},
      {"\"\\u00af\"", 8, 1}, {"\"\\u00AF\"", 8, 1}, {"\"\\u00g0\"", 8, 0},
      {"\"\\u00G0\"", 8, 0}, {"\"\\\0\"", 4, 0},    {"{\"a\":1}", 7, 1},
      {"{a\":1}", 6, 0},     {"{xa\":1}", 7, 0},    {"{\"a\"x1}", 7, 0},
      {"{\"a\" 1}", 7, 0},   {"{\"a\":1,\"b\"=2}", 13, 0},
  };
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = ws_conn_send_json(A.c, "x", cases[i].j, cases[i].len);
    cr_expect_eq(rc, cases[i].ok ? WS_OK : WS_EJSON, "case %zu: rc %d", i, rc);
    if (cases[i].ok) {
      mt_frame f;
      mt_expect_frame(&A, &f);
    }
  }
  mt_expect_nothing(&A);
  k_done(s, &A);
}

/* A \u escape cut short at the end of the text is not read past. */
Test(pinned_json, short_u_escape_no_overread) {
  static const char *cut[] = {"\"\\u123", "\"\\u12", "\"\\ud800\\udc0"};
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  test_guard g;
  size_t i;
  test_guard_init(&g, 32);
  for (i = 0; i < sizeof cut / sizeof cut[0]; i++) {
    size_t n = strlen(cut[i]);
    cr_assert_eq(ws_conn_send_json(A.c, "x", test_guard_place(&g, cut[i], n),
                                   n),
                 WS_EJSON, "cut[%zu]", i);
  }
  test_guard_free(&g);
  k_done(s, &A);
}

/* The nesting limit counts objects as it counts arrays: data of 127
 * nested objects passes, 128 does not. */
static size_t nested_objects(char *j, int depth) {
  size_t o = 0;
  int i;
  for (i = 0; i < depth - 1; i++) {
    memcpy(j + o, "{\"a\":", 5);
    o += 5;
  }
  j[o++] = '{';
  for (i = 0; i < depth; i++) j[o++] = '}';
  return o;
}
Test(pinned_json, depth_limit_for_objects) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  static char j[1000];
  cr_assert_eq(ws_conn_send_json(A.c, "x", j, nested_objects(j, 127)), WS_OK);
  cr_assert_eq(ws_conn_send_json(A.c, "x", j, nested_objects(j, 128)),
               WS_EJSON);
  k_done(s, &A);
}

/* A received message that is not an object is "not_object" when it is
 * valid JSON: 128 nested arrays are (no envelope around them), 129 are
 * not ("invalid_json"). */
Test(pinned_json, top_level_array_nesting_is_not_object_up_to_128) {
  ws_config cfg;
  k_cfg(&cfg);
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  static char j[400];
  mt_frame f;
  nested(j, 128);
  j[256] = '\0';
  mt_send_text(&A, j, MT_WHOLE);
  mt_expect_frame(&A, &f);
  cr_assert(memmem(f.payload, f.len, "not_object", 10) != NULL, "%.*s",
            (int)f.len, f.payload);
  nested(j, 129);
  j[258] = '\0';
  mt_send_text(&A, j, MT_WHOLE);
  mt_expect_frame(&A, &f);
  cr_assert(memmem(f.payload, f.len, "invalid_json", 12) != NULL, "%.*s",
            (int)f.len, f.payload);
  cr_assert_eq(K.msgs, 0);
  k_done(s, &A);
}

/* Escaped actions decode to UTF-8 at every length boundary, and the
 * 255-byte limit holds for the decoded name in the member loop (an
 * envelope that is not in the canonical shape) too. */
static char act_seen[300];
static int act_calls;
static int seen_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  snprintf(act_seen, sizeof act_seen, "%s", m->action ? m->action : "(null)");
  act_calls++;
  return 0;
}
Test(pinned_json, escaped_actions_decode_at_every_utf8_boundary) {
  static const struct {
    const char *esc, *utf8;
  } cases[] = {
      {"\\u007f", "\x7f"},         {"\\u0080", "\xc2\x80"},
      {"\\u07ff", "\xdf\xbf"},     {"\\u0800", "\xe0\xa0\x80"},
      {"\\uffff", "\xef\xbf\xbf"}, {"\\ud800\\udc00", "\xf0\x90\x80\x80"},
      {"\\udbff\\udfff", "\xf4\x8f\xbf\xbf"},
  };
  ws_config cfg;
  k_cfg(&cfg);
  cfg.handler = seen_handler;
  static mt_conn A;
  ws_server *s = k_open(&cfg, &A);
  char msg[700];
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    act_calls = 0;
    snprintf(msg, sizeof msg, "{\"action\":\"%s\"}", cases[i].esc);
    mt_send_text(&A, msg, MT_WHOLE);
    cr_assert_eq(act_calls, 1, "case %zu", i);
    cr_assert_str_eq(act_seen, cases[i].utf8, "case %zu", i);
  }
  /* 255 plain bytes, not canonical (a space): taken whole. */
  memset(act_seen, 0, sizeof act_seen);
  act_calls = 0;
  memcpy(msg, "{ \"action\":\"", 12);
  memset(msg + 12, 'a', 255);
  memcpy(msg + 12 + 255, "\"}", 3);
  mt_send_text(&A, msg, MT_WHOLE);
  cr_assert_eq(act_calls, 1);
  cr_assert_eq(strlen(act_seen), 255);
  /* 256 bytes decoded from an escape and 255 plain: bad_action. */
  act_calls = 0;
  memcpy(msg, "{\"action\":\"\\u0061", 17);
  memset(msg + 17, 'a', 255);
  memcpy(msg + 17 + 255, "\"}", 3);
  mt_send_text(&A, msg, MT_WHOLE);
  cr_assert_eq(act_calls, 0);
  mt_frame f;
  mt_expect_frame(&A, &f);
  cr_assert(memmem(f.payload, f.len, "bad_action", 10) != NULL, "%.*s",
            (int)f.len, f.payload);
  mt_expect_nothing(&A);
  k_done(s, &A);
}

/* An envelope of whitespace only (or nothing) is not read past its end. */
Test(pinned_json, empty_envelope_no_overread) {
  static const char *texts[] = {"", " ", "\t\r\n "};
  test_guard g;
  size_t i;
  test_guard_init(&g, 16);
  for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    ws__env_scan sc;
    size_t n = strlen(texts[i]);
    cr_assert_eq(ws__envelope_scan(test_guard_place(&g, texts[i], n), n, &sc),
                 WS__ENV_INVALID_JSON, "texts[%zu]", i);
  }
  test_guard_free(&g);
}

/* Every proper prefix of a text whose outermost value is a container is
 * invalid, and each is checked against a guard page: no path of the
 * checker (a value just ended inside a container, a member's key, an
 * escape) reads past the end of a truncated text. */
Test(pinned_json, truncated_texts_are_invalid_and_not_read_past) {
  static const char *texts[] = {
      "[1,2]", "{\"a\":[true,null,false]}", "[\"\\u00e9\\n\",-1.5e+3]",
      "{\"action\":\"a\",\"data\":[1,{\"b\":2}]}",
      "{ \"action\" : \"a\" , \"data\" : { } }"};
  test_guard g;
  size_t i, n;
  test_guard_init(&g, 64);
  for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    size_t len = strlen(texts[i]);
    cr_assert(ws__json_valid(texts[i], len, 0), "texts[%zu] whole", i);
    for (n = 0; n < len; n++) {
      ws__env_scan sc;
      const char *p = test_guard_place(&g, texts[i], n);
      cr_assert_not(ws__json_valid(p, n, 0), "texts[%zu], %zu bytes", i, n);
      cr_assert_eq(ws__envelope_scan(p, n, &sc), WS__ENV_INVALID_JSON,
                   "texts[%zu], %zu bytes", i, n);
    }
  }
  test_guard_free(&g);
}

/* RFC 8259 7: a control character (U+0000 to U+001F) in a string must be
 * escaped. Raw, it is refused whatever follows it, also when what follows
 * would complete an escape ("n", "t", "u0041") had a backslash come
 * first, and in an envelope's action as in its data. */
Test(pinned_json, raw_control_characters_in_strings_are_invalid) {
  static const char *const tails[] = {"", "n", "t", "\\\"", "u0041"};
  static const char *const heads[] = {"", "{\"action\":\"x\",\"data\":",
                                      "{\"action\":"};
  size_t t, h;
  int ch;
  for (ch = 0; ch < 0x20; ch++) {
    for (t = 0; t < sizeof tails / sizeof tails[0]; t++) {
      for (h = 0; h < sizeof heads / sizeof heads[0]; h++) {
        char text[64];
        ws__env_scan sc;
        size_t at = strlen(heads[h]) + 2; /* after the quote and the 'a' */
        int n = snprintf(text, sizeof text, "%s\"a?%s\"%s", heads[h],
                         tails[t], h ? "}" : "");
        text[at] = (char)ch; /* a NUL too, which snprintf could not put */
        if (h == 0)
          cr_assert_not(ws__json_valid(text, (size_t)n, 0),
                        "raw 0x%02x before \"%s\"", ch, tails[t]);
        else
          cr_assert_eq(ws__envelope_scan(text, (size_t)n, &sc),
                       WS__ENV_INVALID_JSON, "%s raw 0x%02x before \"%s\"",
                       heads[h], ch, tails[t]);
      }
    }
  }
}

/* A key with escapes is "action" or "data" only when it decodes to all
 * of the name: one that decodes to a prefix ("act", "dat") or to the name
 * and more is another member, as cJSON's strcmp reads it, and the real
 * member after it is the one taken. */
Test(pinned_json, escaped_keys_match_only_the_whole_name) {
  static const struct {
    const char *text, *action, *data;
  } cases[] = {
      {"{\"\\u0061ct\":\"x\",\"action\":\"y\"}", "\"y\"", NULL},
      {"{\"\\u0061ction\":\"y\",\"dat\\u0061\":1}", "\"y\"", "1"},
      {"{\"\\u0061\":\"x\"}", NULL, NULL},
      {"{\"\\u0061ctions\":\"x\",\"d\\u0061t\":2,\"data\":3}", NULL, "3"},
      {"{\"action\":\"y\",\"d\\u0061\":2,\"data\":3}", "\"y\"", "3"},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ws__env_scan sc;
    const char *t = cases[i].text;
    cr_assert_eq(ws__envelope_scan(t, strlen(t), &sc), WS__ENV_OK, "%s", t);
    if (cases[i].action == NULL)
      cr_assert_null(sc.action, "%s: action %.*s", t, (int)sc.action_len,
                     sc.action);
    else
      cr_assert(sc.action && sc.action_len == strlen(cases[i].action) &&
                    memcmp(sc.action, cases[i].action, sc.action_len) == 0,
                "%s: action %.*s", t, (int)sc.action_len,
                sc.action ? sc.action : "");
    if (cases[i].data == NULL)
      cr_assert_null(sc.data, "%s", t);
    else
      cr_assert(sc.data && sc.data_len == strlen(cases[i].data) &&
                    memcmp(sc.data, cases[i].data, sc.data_len) == 0,
                "%s: data %.*s", t, (int)sc.data_len,
                sc.data ? sc.data : "");
  }
}

/* A shutdown that is done does not end later connections at its drain
 * deadline: one accepted after it gets its 503 in full, however long the
 * host's socket takes to take it, and only then its close. */
Test(pinned_server, late_refusal_outlives_the_drain_deadline) {
  ws_config cfg;
  char req[512], head[256];
  const uint8_t *body;
  size_t body_len;
  static mt_conn B;
  k_cfg(&cfg);
  ws_server *s = k_server(&cfg);
  cr_assert_eq(ws_server_shutdown(s, 100), WS_OK); /* done at once */
  mt_open(&B, s);
  B.would_block = 1;
  mt_feed(&B, req, mt_request(req, sizeof req, "b", NULL), MT_WHOLE);
  ws_server_tick(s, 4000); /* past the drain's deadline (not the close
                             * timeout's, 5000) */
  cr_assert_eq(B.closes, 0, "cut before its answer was written");
  B.would_block = 0;
  ws_conn_writable(B.c);
  cr_assert_eq(B.closes, 1);
  cr_assert_eq(mt_http_response(&B, head, sizeof head, &body, &body_len), 503);
  ws_server_free(s);
  mt_free(&B);
}
