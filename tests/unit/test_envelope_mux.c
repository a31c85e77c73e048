/* envelope.c and mux.c: {"action","data"} parsing, error replies and the
 * bad-message policy, routing by exact action name, fallback and binary
 * handlers, handler errors, ws_msg_data_json, and the mux table itself
 * (duplicates, removal, removal from inside a handler, failmalloc).
 * Messages are fed whole and one byte at a time. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static struct {
  int calls;
  char who[32];     /* which handler ran last */
  char action[300];
  char data[512];   /* ws_msg_data_json's text, "(null)" when NULL */
  int data_null;
  char tree[512];   /* ws_msg_data printed, "(null)" when NULL */
  int binary;
  size_t len;
  int remove_self;  /* "once" handler removes itself */
  ws_mux *mux;
  int errors;       /* WS_LOG_ERROR lines, and the last one */
  char error[160];
} R;

static mt_conn T;

static void record(const char *who, const ws_msg *m) {
  size_t dl;
  const char *d = ws_msg_data_json(m, &dl);
  const cJSON *tree = ws_msg_data(m);
  R.calls++;
  snprintf(R.who, sizeof(R.who), "%s", who);
  snprintf(R.action, sizeof(R.action), "%s", m->action ? m->action : "(null)");
  R.data_null = d == NULL;
  if (d)
    snprintf(R.data, sizeof(R.data), "%.*s", (int)dl, d);
  else
    snprintf(R.data, sizeof(R.data), "(null)");
  if (tree) {
    char *p = cJSON_PrintUnformatted(tree);
    snprintf(R.tree, sizeof(R.tree), "%s", p ? p : "(oom)");
    cJSON_free(p);
  } else {
    snprintf(R.tree, sizeof(R.tree), "(null)");
  }
  R.binary = m->binary;
  R.len = m->len;
}

static int h_echo(ws_conn *c, const ws_msg *m, void *ud) {
  size_t dl;
  const char *d = ws_msg_data_json(m, &dl);
  record(ud ? ud : "echo", m);
  return ws_conn_send_json(c, "echo", d ? d : "null", d ? dl : 4);
}
static int h_named(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c;
  record(ud, m);
  return 0;
}
static int h_fail(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  record("fail", m);
  return -5;
}
static int h_fail_minus_one(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  record("fail1", m);
  return -1;
}
static int h_once(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  record("once", m);
  cr_assert_eq(ws_mux_remove(R.mux, "once"), WS_OK);
  cr_assert_eq(ws_mux_remove(R.mux, "once"), WS_ENOENT);
  return 0;
}
static int h_register(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  record("register", m);
  /* Registering and removing others from inside a handler. */
  cr_assert_eq(ws_mux_handle(R.mux, "late", h_named, "late"), WS_OK);
  cr_assert_eq(ws_mux_remove(R.mux, "ping"), WS_OK);
  return 0;
}

/* A server whose handler is a mux (ws_mux_serve) or, with use_mux 0, the
 * plain function h_echo. */
static void log_errors(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (level != WS_LOG_ERROR) return;
  R.errors++;
  snprintf(R.error, sizeof(R.error), "%s", msg);
}

static ws_server *setup(int mode, int use_mux, int policy) {
  ws_config cfg;
  ws_server *s;
  ws_allocator a = test_alloc();
  memset(&R, 0, sizeof(R));
  ws_config_init(&cfg);
  cfg.alloc = a;
  mt_config(&cfg, 0);
  cfg.bad_message_policy = policy;
  cfg.on_log = log_errors;
  if (use_mux) {
    R.mux = ws_mux_new(&a);
    cr_assert_not_null(R.mux);
    cr_assert_eq(ws_mux_handle(R.mux, "ping", h_named, "ping"), WS_OK);
    cr_assert_eq(ws_mux_handle(R.mux, "echo", h_echo, "echo"), WS_OK);
    cfg.handler = ws_mux_serve;
    cfg.handler_data = R.mux;
  } else {
    cfg.handler = h_echo;
    cfg.handler_data = "plain";
  }
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_connect(&T, s, "dev", mode);
  return s;
}

static void teardown(ws_server *s) {
  ws_server_free(s);
  ws_mux_free(R.mux);
  R.mux = NULL;
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  mt_free(&T);
}

/* Reads the next frame as an error reply and checks its shape and code;
 * returns its message (static). */
static const char *expect_error(const char *code) {
  static char msg[300];
  mt_frame f;
  cJSON *root, *data, *c, *m;
  mt_expect_frame(&T, &f);
  cr_assert_eq(f.opcode, MT_TEXT);
  root = cJSON_ParseWithLength((const char *)f.payload, f.len);
  cr_assert_not_null(root, "reply is not JSON: %.*s", (int)f.len,
                     (const char *)f.payload);
  cr_assert_eq(cJSON_GetArraySize(root), 2, "action and data only");
  cr_assert_str_eq(
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "action")),
      "error");
  data = cJSON_GetObjectItemCaseSensitive(root, "data");
  cr_assert(cJSON_IsObject(data));
  c = cJSON_GetObjectItemCaseSensitive(data, "code");
  m = cJSON_GetObjectItemCaseSensitive(data, "message");
  cr_assert(cJSON_IsString(c) && cJSON_IsString(m));
  cr_assert_str_eq(c->valuestring, code);
  cr_assert_gt(strlen(m->valuestring), 0);
  snprintf(msg, sizeof(msg), "%s", m->valuestring);
  cJSON_Delete(root);
  return msg;
}

/* The connection is still open and serving. */
static void expect_still_open(int mode) {
  cr_assert_eq(T.closes, 0);
  cr_assert_not_null(T.c);
  cr_assert_eq(mt_send_text(&T, "{\"action\":\"echo\",\"data\":7}", mode),
               WS_OK);
  mt_expect_text(&T, "{\"action\":\"echo\",\"data\":7}");
}

/* ---- bad messages ---------------------------------------------------- */

static const struct {
  const char *text, *code;
} k_bad[] = {
    {"not json", "invalid_json"},
    {"{\"action\":\"echo\"", "invalid_json"},
    {"{\"action\":\"echo\"} x", "invalid_json"},
    {"", "invalid_json"},
    {"[1,2]", "not_object"},
    {"\"echo\"", "not_object"},
    {"42", "not_object"},
    {"null", "not_object"},
    {"{\"data\":1}", "bad_action"},
    {"{\"action\":5}", "bad_action"},
    {"{\"action\":null}", "bad_action"},
    {"{\"action\":[\"echo\"]}", "bad_action"},
    {"{\"action\":{\"a\":1}}", "bad_action"},
    /* The canonical shape's fast path gives up on these; the member loop
     * decides (json_check.c scan_canonical). */
    {"{\"action\":\"echo\",\"data\":}", "invalid_json"},
    {"{\"action\":\"echo\",\"data\":1", "invalid_json"},
    {"{\"action\":\"echo\",\"data\":1}}", "invalid_json"},
    {"{\"action\":\"echo\",\"data\":[1,]}", "invalid_json"},
    {"{\"action\":\"ec\x01" "ho\"}", "invalid_json"}, /* raw control byte */
    {"{\"action\":\"echo", "invalid_json"},
    /* Lone surrogates: cJSON cannot build them into a tree for
     * ws_msg_data, so they are refused up front, wherever they are. */
    {"{\"action\":\"echo\",\"data\":\"\\ud800\"}", "invalid_json"},
    {"{\"action\":\"echo\",\"data\":\"\\udc00x\"}", "invalid_json"},
    {"{\"action\":\"echo\",\"data\":\"\\ud800\\u0041\"}", "invalid_json"},
    {"{\"action\":\"echo\",\"data\":\"\\ud800\\\"}", "invalid_json"},
    {"{\"action\":\"echo\",\"data\":\"\\ud8\"}", "invalid_json"},
    {"{\"action\":\"\\ud800\"}", "invalid_json"},
    {"{\"\\udfff\":1,\"action\":\"echo\"}", "invalid_json"},
};

Test(envelope, bad_messages_get_error_reply_and_stay_open) {
  size_t i;
  int mode;
  for (i = 0; i < sizeof(k_bad) / sizeof(k_bad[0]); i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      ws_stats st;
      ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
      cr_assert_eq(mt_send_text(&T, k_bad[i].text, mode), WS_OK, "%s",
                   k_bad[i].text);
      expect_error(k_bad[i].code);
      mt_expect_nothing(&T);
      cr_assert_eq(R.calls, 0, "%s reached a handler", k_bad[i].text);
      ws_server_stats(s, &st, sizeof(st));
      cr_assert_eq(st.bad_messages, 1);
      expect_still_open(mode);
      teardown(s);
    }
  }
}

Test(envelope, bad_messages_close_with_policy_close) {
  size_t i;
  int mode;
  for (i = 0; i < sizeof(k_bad) / sizeof(k_bad[0]); i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      int code = strcmp(k_bad[i].code, "invalid_json") == 0 ? 1007 : 1008;
      ws_server *s = setup(mode, 1, WS_BADMSG_CLOSE);
      mt_send_text(&T, k_bad[i].text, mode);
      mt_expect_close(&T, code);
      mt_expect_nothing(&T);
      cr_assert_eq(R.calls, 0);
      teardown(s);
    }
  }
  /* Unknown actions count as bad messages too: 1008. */
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_CLOSE);
    mt_send_text(&T, "{\"action\":\"nope\"}", mode);
    mt_expect_close(&T, 1008);
    teardown(s);
  }
}

/* ---- routing --------------------------------------------------------- */

Test(mux, unknown_action_without_fallback_names_it) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    const char *msg;
    mt_send_text(&T, "{\"action\":\"frobnicate\",\"data\":1}", mode);
    msg = expect_error("unknown_action");
    cr_assert_not_null(strstr(msg, "frobnicate"), "message: %s", msg);
    cr_assert_eq(R.calls, 0);
    expect_still_open(mode);
    teardown(s);
  }
}

/* Found by fuzz_envelope: an action of control characters is 6 bytes per
 * character once quoted back in the error reply (\u0008), which overran
 * the reply's buffer. The reply names the first 200 of them, exactly. */
Test(mux, unknown_action_of_control_characters_is_quoted_back_whole) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    char in[32 + 2 * 250], want[32 + 200];
    const char *msg;
    size_t i, n = 0;
    n += (size_t)sprintf(in, "{\"action\":\"");
    for (i = 0; i < 250; i++) in[n++] = '\\', in[n++] = 'b';
    strcpy(in + n, "\"}");
    n = (size_t)sprintf(want, "unknown action: ");
    memset(want + n, '\b', 200);
    want[n + 200] = '\0';
    mt_send_text(&T, in, mode);
    msg = expect_error("unknown_action");
    cr_assert_str_eq(msg, want);
    expect_still_open(mode);
    teardown(s);
  }
}

Test(mux, unknown_action_goes_to_fallback) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_fallback(R.mux, h_named, "fallback"), WS_OK);
    mt_send_text(&T, "{\"action\":\"frobnicate\",\"data\":[1]}", mode);
    cr_assert_eq(R.calls, 1);
    cr_assert_str_eq(R.who, "fallback");
    cr_assert_str_eq(R.action, "frobnicate");
    cr_assert_str_eq(R.data, "[1]");
    mt_expect_nothing(&T);
    /* Known actions still go to their handler. */
    mt_send_text(&T, "{\"action\":\"ping\"}", mode);
    cr_assert_str_eq(R.who, "ping");
    /* Unsetting it brings the error back. */
    cr_assert_eq(ws_mux_fallback(R.mux, NULL, NULL), WS_OK);
    mt_send_text(&T, "{\"action\":\"frobnicate\"}", mode);
    expect_error("unknown_action");
    teardown(s);
  }
}

Test(mux, matching_is_exact_and_case_sensitive) {
  static const char *const misses[] = {"Ping", "PING", "ping ", " ping",
                                       "pin", "pingg"};
  size_t i;
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    for (i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
      char msg[128];
      snprintf(msg, sizeof(msg), "{\"action\":\"%s\"}", misses[i]);
      mt_send_text(&T, msg, mode);
      expect_error("unknown_action");
      cr_assert_eq(R.calls, 0, "%s matched ping", misses[i]);
    }
    /* An escaped but equal name does match: p\u0069ng is "ping". */
    mt_send_text(&T, "{\"action\":\"p\\u0069ng\",\"data\":3}", mode);
    cr_assert_eq(R.calls, 1);
    cr_assert_str_eq(R.who, "ping");
    cr_assert_str_eq(R.action, "ping");
    teardown(s);
  }
}

Test(mux, duplicate_handle_is_eexist_and_remove_works) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_handle(R.mux, "ping", h_named, "other"), WS_EEXIST);
    mt_send_text(&T, "{\"action\":\"ping\"}", mode);
    cr_assert_str_eq(R.who, "ping", "the first registration stays");
    cr_assert_eq(ws_mux_handle(R.mux, "Ping", h_named, "Ping"), WS_OK,
                 "case differs: a different action");
    cr_assert_eq(ws_mux_remove(R.mux, "ping"), WS_OK);
    cr_assert_eq(ws_mux_remove(R.mux, "ping"), WS_ENOENT);
    cr_assert_eq(ws_mux_remove(R.mux, "never"), WS_ENOENT);
    mt_send_text(&T, "{\"action\":\"ping\"}", mode);
    expect_error("unknown_action");
    cr_assert_eq(R.calls, 1);
    mt_send_text(&T, "{\"action\":\"Ping\"}", mode);
    cr_assert_str_eq(R.who, "Ping");
    cr_assert_eq(ws_mux_handle(R.mux, "ping", h_named, "again"), WS_OK);
    mt_send_text(&T, "{\"action\":\"ping\"}", mode);
    cr_assert_str_eq(R.who, "again");
    cr_assert_eq(ws_mux_handle(NULL, "x", h_named, NULL), WS_EINVAL);
    cr_assert_eq(ws_mux_handle(R.mux, NULL, h_named, NULL), WS_EINVAL);
    cr_assert_eq(ws_mux_handle(R.mux, "x", NULL, NULL), WS_EINVAL);
    teardown(s);
  }
}

Test(mux, handler_that_removes_itself) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_handle(R.mux, "once", h_once, NULL), WS_OK);
    cr_assert_eq(ws_mux_handle(R.mux, "register", h_register, NULL), WS_OK);
    /* Both in one feed: the second arrives after the removal. */
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"once\"}");
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"once\"}");
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"register\"}");
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"late\"}");
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"ping\"}");
    mt_feed(&T, b.p, b.len, mode);
    cr_assert_eq(R.calls, 3, "once, register, late");
    cr_assert_str_eq(R.who, "late");
    expect_error("unknown_action"); /* the second "once" */
    expect_error("unknown_action"); /* "ping", removed by register */
    mt_expect_nothing(&T);
    teardown(s);
    mt_bytes_free(&b);
  }
}

/* ---- binary ---------------------------------------------------------- */

Test(mux, binary_goes_to_binary_handler) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_binary(R.mux, h_named, "bin"), WS_OK);
    cr_assert_eq(mt_send_frame(&T, MT_BINARY, 0, "\x00\xff\x01", 3, mode),
                 WS_OK);
    cr_assert_eq(R.calls, 1);
    cr_assert_str_eq(R.who, "bin");
    cr_assert(R.binary);
    cr_assert_eq(R.len, 3);
    cr_assert_str_eq(R.action, "(null)");
    cr_assert(R.data_null, "no data for binary");
    cr_assert_eq(T.closes, 0);
    teardown(s);
  }
}

Test(mux, binary_without_binary_handler_closes_1003) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    mt_send_frame(&T, MT_BINARY, 0, "abc", 3, mode);
    mt_expect_close(&T, 1003);
    cr_assert_eq(R.calls, 0);
    teardown(s);
  }
}

Test(envelope, binary_with_plain_function_handler_reaches_it) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 0, WS_BADMSG_REPLY);
    mt_send_frame(&T, MT_BINARY, 0, "abc", 3, mode);
    cr_assert_eq(R.calls, 1);
    cr_assert(R.binary);
    teardown(s);
  }
}

/* ---- handler errors -------------------------------------------------- */

Test(mux, handler_returning_negative_closes_1011) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_handle(R.mux, "fail", h_fail, NULL), WS_OK);
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"fail\"}");
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"ping\"}");
    mt_feed(&T, b.p, b.len, mode);
    mt_expect_close(&T, 1011);
    cr_assert_eq(R.calls, 1, "nothing handled after the failure");
    /* logged, as the Go model logs a recovered panic */
    cr_assert_eq(R.errors, 1);
    cr_assert_str_eq(R.error, "handler for \"fail\" failed (-5): closing");
    teardown(s);
    mt_bytes_free(&b);
  }
}

/* Any negative return is a handler error, -1 (the usual C failure value)
 * included, not only codes below it: the connection is closed with 1011,
 * logged, and once the peer echoes the close it is counted in
 * closes_1011. */
Test(mux, handler_returning_minus_one_closes_1011_and_counts_it) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_stats st;
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_handle(R.mux, "fail1", h_fail_minus_one, NULL), WS_OK);
    cr_assert_eq(mt_send_text(&T, "{\"action\":\"fail1\"}", mode), WS_OK);
    mt_expect_close(&T, 1011);
    cr_assert_eq(R.calls, 1);
    cr_assert_eq(R.errors, 1);
    cr_assert_str_eq(R.error, "handler for \"fail1\" failed (-1): closing");
    mt_close_add(&b, 1011, NULL);
    mt_feed(&T, b.p, b.len, mode);
    cr_assert_eq(T.closes, 1, "closed once the peer echoed");
    ws_server_stats(s, &st, sizeof(st));
    cr_assert_eq(st.closes_1011, 1);
    teardown(s);
    mt_bytes_free(&b);
  }
}

/* ---- data ------------------------------------------------------------ */

Test(envelope, msg_data_json_is_the_raw_data_text) {
  static const struct {
    const char *msg, *data, *tree;
  } cases[] = {
      {"{\"action\":\"ping\",\"data\":{\"a\":[1,2]}}", "{\"a\":[1,2]}",
       "{\"a\":[1,2]}"},
      {"{\"data\":\"x\",\"action\":\"ping\"}", "\"x\"", "\"x\""},
      {"{\"action\":\"ping\",\"data\":null}", "null", "null"},
      {"{\"action\":\"ping\",\"data\":0}", "0", "0"},
      /* Exactly as sent: whitespace inside the value is kept. */
      {"{ \"action\" : \"ping\" , \"data\" : [ 1 , 2 ] }", "[ 1 , 2 ]",
       "[1,2]"},
      /* Absent: NULL (header: "NULL (and *len 0) when data is absent"). */
      {"{\"action\":\"ping\"}", "(null)", "(null)"},
      /* Near the canonical shape: the first "data" wins, as in cJSON. */
      {"{\"action\":\"ping\",\"data\":[1,2],\"data\":3}", "[1,2]", "[1,2]"},
      {"{\"action\":\"ping\",\"data\":1,\"action\":\"echo\"}", "1", "1"},
      {"{\"action\":\"ping\",\"data\":\t\"s\"}", "\"s\"", "\"s\""},
      {"{\"action\":\"ping\",\"data\":{\"k\":\"}\"}} ", "{\"k\":\"}\"}",
       "{\"k\":\"}\"}"},
      /* A surrogate pair is one character: the tree holds its UTF-8. */
      {"{\"action\":\"ping\",\"data\":\"\\uD83D\\ude00\"}",
       "\"\\uD83D\\ude00\"", "\"\xf0\x9f\x98\x80\""},
  };
  size_t i;
  int mode;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
      mt_send_text(&T, cases[i].msg, mode);
      cr_assert_eq(R.calls, 1, "%s", cases[i].msg);
      cr_assert_str_eq(R.data, cases[i].data, "%s", cases[i].msg);
      cr_assert_str_eq(R.tree, cases[i].tree, "%s", cases[i].msg);
      teardown(s);
    }
  }
}

Test(envelope, msg_data_json_with_escaped_keys_is_equivalent) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    cJSON *got, *want;
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    mt_send_text(&T, "{\"act\\u0069on\":\"ping\",\"d\\u0061ta\":{\"k\": [true]}}",
                 mode);
    cr_assert_eq(R.calls, 1);
    got = cJSON_Parse(R.data);
    want = cJSON_Parse("{\"k\":[true]}");
    cr_assert(cJSON_Compare(got, want, 1), "data %s", R.data);
    cJSON_Delete(got);
    cJSON_Delete(want);
    teardown(s);
  }
}

Test(envelope, plain_function_handler_works_like_a_mux) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 0, WS_BADMSG_REPLY);
    mt_send_text(&T, "{\"action\":\"anything\",\"data\":{\"x\":1}}", mode);
    cr_assert_eq(R.calls, 1);
    cr_assert_str_eq(R.who, "plain");
    cr_assert_str_eq(R.action, "anything");
    mt_expect_text(&T, "{\"action\":\"echo\",\"data\":{\"x\":1}}");
    /* Shape errors are still answered by the library. */
    mt_send_text(&T, "[]", mode);
    expect_error("not_object");
    cr_assert_eq(R.calls, 1);
    teardown(s);
  }
}

Test(envelope, no_handler_gives_unknown_action) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_config cfg;
    ws_server *s;
    memset(&R, 0, sizeof(R));
    ws_config_init(&cfg);
    cfg.alloc = test_alloc();
    mt_config(&cfg, 0);
    cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
    mt_connect(&T, s, "dev", mode);
    mt_send_text(&T, "{\"action\":\"x\"}", mode);
    cr_assert_not_null(strstr(expect_error("unknown_action"), "x"));
    mt_send_frame(&T, MT_BINARY, 0, "b", 1, mode);
    mt_expect_close(&T, 1003);
    teardown(s);
  }
}

/* ---- the mux under allocation failure -------------------------------- */

Test(mux, handle_failmalloc) {
  long n;
  int done = 0;
  ws_allocator a = test_alloc();
  for (n = 1; !done && n < 1000; n++) {
    ws_mux *m;
    int rc, i;
    char name[16];
    test_alloc_reset(0);
    m = ws_mux_new(&a);
    cr_assert_not_null(m);
    /* A few entries first so table growth is in the path too. */
    for (i = 0; i < 20; i++) {
      snprintf(name, sizeof(name), "a%d", i);
      cr_assert_eq(ws_mux_handle(m, name, h_named, NULL), WS_OK);
    }
    {
      long live = test_alloc_live();
      test_alloc_reset(n);
      rc = ws_mux_handle(m, "target", h_named, NULL);
      if (test_alloc_failed()) {
        cr_assert_eq(rc, WS_ENOMEM, "n=%ld: rc %d", n, rc);
        cr_assert_eq(test_alloc_live(), live, "n=%ld: leaked", n);
        test_alloc_reset(0);
        cr_assert_eq(ws_mux_remove(m, "target"), WS_ENOENT,
                     "n=%ld: registered despite ENOMEM", n);
        /* The table still works. */
        cr_assert_eq(ws_mux_remove(m, "a7"), WS_OK);
        cr_assert_eq(ws_mux_handle(m, "target", h_named, NULL), WS_OK);
      } else {
        cr_assert_eq(rc, WS_OK);
        done = 1;
      }
    }
    test_alloc_reset(0);
    ws_mux_free(m);
    cr_assert_eq(test_alloc_live(), 0, "n=%ld: leak after free", n);
  }
  cr_assert(done);
  cr_assert_gt(n, 2, "at least one failure point was exercised");
}

Test(mux, new_failmalloc) {
  ws_allocator a = test_alloc();
  test_alloc_reset(1);
  cr_assert_null(ws_mux_new(&a));
  test_alloc_reset(0);
  cr_assert_eq(test_alloc_live(), 0);
}

/* ---- the header's promises, one by one (API review) ------------------ */

/* ws_msg_data_json sets *len to 0 (and returns NULL) when data is absent
 * or the message is binary; ws_msg_data is NULL for both too. */
static struct {
  int calls;
  const char *d;
  size_t len;
  int tree_null;
  int binary;
} P;
static int h_probe(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  P.calls++;
  P.len = 99;
  P.d = ws_msg_data_json(m, &P.len);
  P.tree_null = ws_msg_data(m) == NULL;
  P.binary = m->binary;
  return 0;
}
Test(envelope, absent_data_and_binary_messages_have_no_data) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    memset(&P, 0, sizeof P);
    cr_assert_eq(ws_mux_handle(R.mux, "probe", h_probe, NULL), WS_OK);
    cr_assert_eq(ws_mux_binary(R.mux, h_probe, NULL), WS_OK);
    mt_send_text(&T, "{\"action\":\"probe\"}", mode);
    cr_assert_eq(P.calls, 1);
    cr_assert_null(P.d);
    cr_assert_eq(P.len, 0, "*len is 0 when data is absent");
    cr_assert(P.tree_null);
    mt_send_frame(&T, MT_BINARY, 0, "{\"data\":1}", 10, mode);
    cr_assert_eq(P.calls, 2);
    cr_assert(P.binary);
    cr_assert_null(P.d);
    cr_assert_eq(P.len, 0, "*len is 0 for a binary message");
    cr_assert(P.tree_null);
    /* A NULL len is allowed. */
    cr_assert_null(ws_msg_data_json(NULL, NULL));
    cr_assert_null(ws_msg_data(NULL));
    teardown(s);
  }
}

/* The mux calls' NULL arguments: WS_EINVAL, as documented; ws_mux_free
 * takes NULL. A fallback and a binary handler replace earlier ones. */
Test(mux, null_arguments_and_replacement) {
  int mode;
  ws_mux_free(NULL);
  cr_assert_eq(ws_mux_remove(NULL, "x"), WS_EINVAL);
  cr_assert_eq(ws_mux_fallback(NULL, h_named, NULL), WS_EINVAL);
  cr_assert_eq(ws_mux_binary(NULL, h_named, NULL), WS_EINVAL);
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_remove(R.mux, NULL), WS_EINVAL);
    cr_assert_eq(ws_mux_fallback(R.mux, h_named, "first"), WS_OK);
    cr_assert_eq(ws_mux_fallback(R.mux, h_named, "second"), WS_OK);
    cr_assert_eq(ws_mux_binary(R.mux, h_named, "bin1"), WS_OK);
    cr_assert_eq(ws_mux_binary(R.mux, h_named, "bin2"), WS_OK);
    mt_send_text(&T, "{\"action\":\"other\"}", mode);
    cr_assert_str_eq(R.who, "second");
    mt_send_frame(&T, MT_BINARY, 0, "ab", 2, mode);
    cr_assert_str_eq(R.who, "bin2");
    cr_assert_eq(R.calls, 2);
    /* NULL binary handler again: a binary message closes with 1003. */
    cr_assert_eq(ws_mux_binary(R.mux, NULL, NULL), WS_OK);
    mt_send_frame(&T, MT_BINARY, 0, "ab", 2, mode);
    cr_assert_eq(R.calls, 2);
    mt_expect_close(&T, WS_CLOSE_UNSUPPORTED);
    teardown(s);
  }
}

/* ---- mutation-testing round ------------------------------------------ */

/* A mux is a handler that a host may call from its own handler: what it
 * answered itself (a binary message without a binary handler: closed 1003;
 * an unknown action: an error reply) is a success, 0, not an error that
 * the host would pass on or log. */
static int serve_rc[2], serve_calls;
static int h_wrap(ws_conn *c, const ws_msg *m, void *ud) {
  int rc = ws_mux_serve(c, m, ud);
  if (serve_calls < 2) serve_rc[serve_calls] = rc;
  serve_calls++;
  return rc;
}
Test(mux, serve_returns_0_for_what_it_answers_itself) {
  ws_config cfg;
  ws_server *s;
  ws_allocator a = test_alloc();
  memset(&R, 0, sizeof(R));
  serve_calls = 0;
  serve_rc[0] = serve_rc[1] = 99;
  ws_config_init(&cfg);
  cfg.alloc = a;
  mt_config(&cfg, 0);
  R.mux = ws_mux_new(&a);
  cr_assert_not_null(R.mux);
  cfg.handler = h_wrap;
  cfg.handler_data = R.mux;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_connect(&T, s, "dev", MT_WHOLE);
  mt_send_text(&T, "{\"action\":\"nope\"}", MT_WHOLE);
  expect_error("unknown_action");
  mt_send_frame(&T, MT_BINARY, 0, "abc", 3, MT_WHOLE);
  mt_expect_close(&T, 1003);
  cr_assert_eq(serve_calls, 2);
  cr_assert_eq(serve_rc[0], 0, "unknown action: %d", serve_rc[0]);
  cr_assert_eq(serve_rc[1], 0, "binary refused: %d", serve_rc[1]);
  teardown(s);
}

/* ws_msg_data builds the tree once: a second call returns the same tree
 * (not a new parse each time, the older one leaked). */
static int same_tree;
static int h_data_twice(ws_conn *c, const ws_msg *m, void *ud) {
  const cJSON *a = ws_msg_data(m), *b = ws_msg_data(m);
  (void)c, (void)ud;
  same_tree = a != NULL && a == b && cJSON_IsArray(a);
  R.calls++;
  return 0;
}
Test(envelope, msg_data_tree_is_built_once) {
  ws_server *s = setup(MT_WHOLE, 1, WS_BADMSG_REPLY);
  cr_assert_eq(ws_mux_handle(R.mux, "twice", h_data_twice, NULL), WS_OK);
  same_tree = 0;
  mt_send_text(&T, "{\"action\":\"twice\",\"data\":[1,2]}", MT_WHOLE);
  cr_assert_eq(R.calls, 1);
  cr_assert(same_tree, "ws_msg_data gave two different trees");
  teardown(s);
}

/* JSON whitespace is space, tab, LF and CR (RFC 8259 2), in what is
 * received and in what is sent. */
Test(envelope, every_json_whitespace_byte_is_accepted) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    mt_send_text(&T, "{\n\"action\":\r\"ping\",\t\"data\": [1,\n2]\r\n}\n",
                 mode);
    cr_assert_eq(R.calls, 1);
    cr_assert_str_eq(R.who, "ping");
    cr_assert_str_eq(R.data, "[1,\n2]");
    cr_assert_str_eq(R.tree, "[1,2]");
    cr_assert_eq(ws_conn_send_json(T.c, "x", "\n[1,\n2]\n", 8), WS_OK);
    mt_expect_text(&T, "{\"action\":\"x\",\"data\":\n[1,\n2]\n}");
    cr_assert_eq(ws_conn_send_json(T.c, "x", "\r[\t]\r", 5), WS_OK);
    mt_expect_text(&T, "{\"action\":\"x\",\"data\":\r[\t]\r}");
    mt_expect_nothing(&T);
    teardown(s);
  }
}

/* The tree ws_msg_data built is released once the handler returns (cJSON
 * allocates outside the test allocator: counted through cJSON's hooks;
 * ASan's leak report at a test's exit does not fail the test). */
static long cjson_live;
static void *cj_malloc(size_t n) {
  void *p = malloc(n);
  if (p) cjson_live++;
  return p;
}
static void cj_free(void *p) {
  if (p) cjson_live--;
  free(p);
}
Test(envelope, msg_data_tree_is_freed_after_the_handler) {
  cJSON_Hooks hooks = {cj_malloc, cj_free};
  int mode;
  cJSON_InitHooks(&hooks);
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cjson_live = 0;
    mt_send_text(&T, "{\"action\":\"ping\",\"data\":{\"a\":[1,\"x\"]}}", mode);
    cr_assert_eq(R.calls, 1);
    cr_assert_str_eq(R.tree, "{\"a\":[1,\"x\"]}");
    cr_assert_eq(cjson_live, 0, "%ld cJSON allocations live", cjson_live);
    teardown(s);
  }
  cJSON_InitHooks(NULL);
}

/* The binary handler's return counts as any handler's: negative closes
 * with 1011. */
static int h_bin_fail(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)ud;
  record("binfail", m);
  return -1;
}
Test(mux, binary_handler_returning_negative_closes_1011) {
  ws_server *s = setup(MT_WHOLE, 1, WS_BADMSG_REPLY);
  cr_assert_eq(ws_mux_binary(R.mux, h_bin_fail, NULL), WS_OK);
  mt_send_frame(&T, MT_BINARY, 0, "abc", 3, MT_WHOLE);
  cr_assert_eq(R.calls, 1);
  mt_expect_close(&T, 1011);
  teardown(s);
}

/* ---- the header's promises, one by one (audit of promises vs tests) ---- */

/* The empty action "" is valid (unlike an empty group name): registered,
 * sent, posted, and received by its handler, else unknown_action. */
Test(mux, empty_action_is_a_valid_one) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1, WS_BADMSG_REPLY);
    cr_assert_eq(ws_mux_handle(R.mux, "", h_named, "empty"), WS_OK);
    mt_send_text(&T, "{\"action\":\"\",\"data\":1}", mode);
    cr_assert_eq(R.calls, 1);
    cr_assert_str_eq(R.who, "empty");
    cr_assert_str_eq(R.action, "");
    cr_assert_str_eq(R.data, "1");
    cr_assert_eq(ws_conn_send_json(T.c, "", "2", 1), WS_OK);
    mt_expect_text(&T, "{\"action\":\"\",\"data\":2}");
    cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "", NULL, 0), WS_OK);
    ws_server_tick(s, 1);
    mt_expect_text(&T, "{\"action\":\"\"}");
    cr_assert_eq(ws_mux_remove(R.mux, ""), WS_OK);
    mt_send_text(&T, "{\"action\":\"\"}", mode);
    expect_error("unknown_action");
    cr_assert_eq(R.calls, 1);
    mt_expect_nothing(&T);
    teardown(s);
  }
}

/* ws_conn_send_error: the host's errors in the library's error shape. */
Test(envelope, send_error_has_the_error_replies_shape) {
  ws_server *s = setup(MT_WHOLE, 1, WS_BADMSG_REPLY);
  cr_assert_eq(ws_conn_send_error(T.c, "bad_room", "room \"x\"\nis \x01 full"),
               WS_OK);
  mt_expect_text(&T, "{\"action\":\"error\",\"data\":{\"code\":\"bad_room\","
                     "\"message\":\"room \\\"x\\\"\\nis \\u0001 full\"}}");
  cr_assert_eq(ws_conn_send_error(T.c, "unknown_action", "nope"), WS_OK);
  cr_assert_str_eq(expect_error("unknown_action"), "nope",
                   "parsed as the library's own replies are");
  cr_assert_eq(ws_conn_send_error(T.c, "x", NULL), WS_OK);
  mt_expect_text(&T, "{\"action\":\"error\",\"data\":{\"code\":\"x\","
                     "\"message\":\"\"}}");
  cr_assert_eq(ws_conn_send_error(NULL, "x", "m"), WS_EINVAL);
  cr_assert_eq(ws_conn_send_error(T.c, NULL, "m"), WS_EINVAL);
  cr_assert_eq(ws_conn_send_error(T.c, "", "m"), WS_EINVAL);
  cr_assert_eq(ws_conn_send_error(T.c, "\xff", "m"), WS_EINVAL);
  cr_assert_eq(ws_conn_send_error(T.c, "x", "\xc3"), WS_EINVAL);
  mt_expect_nothing(&T);
  /* Its memory: one failed allocation is WS_ENOMEM, nothing sent. */
  test_alloc_reset(1);
  cr_assert_eq(ws_conn_send_error(T.c, "x", "m"), WS_ENOMEM);
  test_alloc_reset(0);
  mt_expect_nothing(&T);
  cr_assert_eq(ws_conn_close(T.c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_conn_send_error(T.c, "x", "m"), WS_ECLOSED);
  teardown(s);
}

/* ws_conn_send_error "returns as ws_conn_send", whose connection is looked
 * at before its message: a bad code, bad UTF-8 or a message too big to send
 * is WS_ECLOSED to a closing connection and WS_ESTATE to one without its
 * 101, as ws_conn_send(c, NULL, ...) and ws_conn_send_text are. (It checked
 * its arguments first: WS_EINVAL or WS_ETOOBIG there.) */
Test(envelope, send_error_looks_at_the_connection_first) {
  ws_server *s = setup(MT_WHOLE, 1, WS_BADMSG_REPLY);
  mt_conn h;
  mt_open(&h, s); /* still in its handshake */
  cr_assert_eq(ws_conn_send(h.c, NULL, NULL), WS_ESTATE);
  cr_assert_eq(ws_conn_send_error(h.c, "x", "m"), WS_ESTATE);
  cr_assert_eq(ws_conn_send_error(h.c, NULL, "m"), WS_ESTATE);
  cr_assert_eq(ws_conn_send_error(h.c, "", "m"), WS_ESTATE);
  cr_assert_eq(ws_conn_send_error(h.c, "\xff", NULL), WS_ESTATE);
  cr_assert_eq(ws_conn_close(T.c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_conn_send(T.c, NULL, NULL), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_text(T.c, "\xff", 1), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_error(T.c, NULL, "m"), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_error(T.c, "", "m"), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_error(T.c, "x", "\xc3"), WS_ECLOSED);
  mt_expect_close(&T, 1000);
  mt_expect_nothing(&T);
  teardown(s);
  mt_free(&h);
}
