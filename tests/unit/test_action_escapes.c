/* Actions are matched exactly after JSON unescaping: escapes that decode
 * to the registered name match; an escape that cannot be in a C string
 * (NUL) is "bad_action", never a silent truncation. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <string.h>

#include "mem_transport.h"
#include "wsmux.h"

static int pong(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

/* msg sent to a server whose mux has fn for action, in every feed mode;
 * the reply must be expect. */
static void run_with(const char *action, ws_handler_fn fn, const char *msg,
                     const char *expect) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_config cfg;
    ws_server *s;
    ws_mux *mux = ws_mux_new(NULL);
    mt_conn t;
    ws_mux_handle(mux, action, fn, NULL);
    ws_config_init(&cfg);
    mt_config(&cfg, 0);
    cfg.handler = ws_mux_serve;
    cfg.handler_data = mux;
    cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
    mt_connect(&t, s, "dev", mode);
    mt_send_text(&t, msg, mode);
    mt_expect_text(&t, expect);
    ws_server_free(s);
    mt_free(&t);
    ws_mux_free(mux);
  }
}

static void run(const char *msg, const char *expect) {
  run_with("ping", pong, msg, expect);
}

#define BAD_ACTION                                                          \
  "{\"action\":\"error\",\"data\":{\"code\":\"bad_action\",\"message\":"    \
  "\"\\\"action\\\" must be a string (at most 255 bytes, no NUL)\"}}"
#define INVALID_JSON                                                        \
  "{\"action\":\"error\",\"data\":{\"code\":\"invalid_json\",\"message\":"  \
  "\"message is not valid JSON\"}}"

Test(action, escaped_letters_match) {
  run("{\"action\":\"p\\u0069ng\"}", "{\"action\":\"pong\",\"data\":\"\"}");
}

Test(action, escaped_key_matches) {
  run("{\"\\u0061ction\":\"ping\"}", "{\"action\":\"pong\",\"data\":\"\"}");
}

Test(action, nul_escape_is_bad_action) {
  run("{\"action\":\"ping\\u0000\"}", BAD_ACTION);
  run("{\"\\u0061ction\":\"ping\\u0000\"}", BAD_ACTION);
}

/* Not a character, so not JSON this library accepts (json_check.c
 * escape_u): refused before the action is looked at. */
Test(action, lone_surrogate_is_invalid_json) {
  run("{\"action\":\"\\ud800\"}", INVALID_JSON);
  run("{\"action\":\"\\ud800\\ud800\"}", INVALID_JSON);
  run("{\"action\":\"\\udc00\\ud800\"}", INVALID_JSON);
  /* In data too, which cJSON would then fail to build (wsmux.h's
   * ws_msg_data: a NULL tree with text present means out of memory). */
  run("{\"action\":\"ping\",\"data\":\"\\ud800\"}", INVALID_JSON);
}

Test(action, surrogate_pair_decodes_to_utf8) {
  run("{\"action\":\"\\ud83d\\ude00\"}",
      "{\"action\":\"error\",\"data\":{\"code\":\"unknown_action\","
      "\"message\":\"unknown action: \xf0\x9f\x98\x80\"}}");
}

Test(action, too_long_is_bad_action) {
  char msg[400];
  memcpy(msg, "{\"action\":\"", 11);
  memset(msg + 11, 'a', 256);
  memcpy(msg + 11 + 256, "\"}", 3);
  run(msg, BAD_ACTION);
}

/* The other direction: an action the server sends is written as a JSON
 * string, so a CR in it must leave as the two bytes backslash 'r' (not a
 * raw CR, and not "\n", which a client would decode to another action).
 * Each short escape is checked beside it, and a control character without
 * one goes out as \u00XX. */
static void expect_sent_action(const char *action, const char *expect) {
  ws_config cfg;
  ws_server *s;
  mt_conn t;
  ws_config_init(&cfg);
  mt_config(&cfg, 0);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_connect(&t, s, "dev", MT_WHOLE);
  cr_assert_eq(ws_conn_send_json(t.c, action, "1", 1), WS_OK);
  mt_expect_text(&t, expect);
  mt_expect_nothing(&t);
  ws_server_free(s);
  mt_free(&t);
}

Test(action, sent_action_escapes_cr_as_backslash_r) {
  expect_sent_action("a\rb", "{\"action\":\"a\\rb\",\"data\":1}");
  expect_sent_action("\r", "{\"action\":\"\\r\",\"data\":1}");
  expect_sent_action("q\"b\\n\nr\rt\tc\x01",
                     "{\"action\":\"q\\\"b\\\\n\\nr\\rt\\tc\\u0001\","
                     "\"data\":1}");
}

/* cJSON finds a member with strcmp, which stops at a NUL: to it the key
 * "action\u0000" is "action", and the first one. The library skipped that
 * key and dispatched the later plain "action" ("ping" here), so a host
 * that checks msg->action and then reads msg->text with cJSON (or hands
 * it on to a cJSON-based service) saw two different actions in one
 * message. Such a first "action" is refused, as a NUL in its value is. */
Test(action, key_that_cjson_reads_as_action_is_bad_action) {
  static const char *const msgs[] = {
      "{\"action\\u0000\":\"pong\",\"action\":\"ping\"}",
      "{\"\\u0061ction\\u0000x\":1,\"action\":\"ping\"}",
  };
  size_t i;
  for (i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
    cJSON *j = cJSON_Parse(msgs[i]);
    cr_assert_not_null(j);
    cr_assert(!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "action")) ||
                  strcmp(cJSON_GetObjectItemCaseSensitive(j, "action")
                             ->valuestring,
                         "ping") != 0,
              "cJSON does not read \"ping\" as the action");
    cJSON_Delete(j);
    run(msgs[i], BAD_ACTION);
  }
  /* After a plain first "action", a later NUL key changes nothing, and a
   * NUL inside a key ("act\u0000ion" is "act" to cJSON) is no "action". */
  run("{\"action\":\"ping\",\"action\\u0000\":\"x\"}",
      "{\"action\":\"pong\",\"data\":\"\"}");
  run("{\"act\\u0000ion\":\"x\",\"action\":\"ping\"}",
      "{\"action\":\"pong\",\"data\":\"\"}");
}

static int echo_data(ws_conn *c, const ws_msg *m, void *ud) {
  size_t n;
  const char *d = ws_msg_data_json(m, &n);
  (void)ud;
  return ws_conn_send_json(c, "data", d, n);
}

/* "data" is looked up as cJSON does too: ws_msg_data_json and ws_msg_data
 * give the member cJSON_GetObjectItem gives for the whole text. */
Test(action, data_member_is_the_one_cjson_finds) {
  static const char msg[] =
      "{\"action\":\"d\",\"data\\u0000\":1,\"data\":2}";
  cJSON *j = cJSON_Parse(msg);
  cr_assert_eq(cJSON_GetObjectItemCaseSensitive(j, "data")->valueint, 1);
  cJSON_Delete(j);
  run_with("d", echo_data, msg, "{\"action\":\"data\",\"data\":1}");
}
