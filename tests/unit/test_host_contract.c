/* What the library does with what the host hands it, at the edges of the
 * documented contract: configs from older (shorter) headers, and a send
 * callback that reports more bytes than it was given; which request headers
 * handlers can still read (keep_headers). */
#include "internal.h"
#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"
#include <criterion/criterion.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* A config as a program built against a header whose ws_config is size
 * bytes long would pass. Larger than ours (a newer header): only the size
 * field says so. */
static int new_with_size(size_t size, ws_server **s) {
  ws_config cfg;
  ws_config_defaults(&cfg, size < sizeof cfg ? size : sizeof cfg);
  cfg.struct_size_ = size;
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  return ws_server_new(&cfg, s);
}

/* A program built against an older wsmux.h passes a shorter config: the
 * oldest accepted layout ends just before `wake`; the fields it lacks keep
 * their defaults. */
Test(host_contract, config_from_an_older_header_is_accepted) {
  ws_server *s = NULL;
  cr_assert_eq(new_with_size(offsetof(ws_config, wake), &s), WS_OK);
  cr_assert_eq(s->cfg.max_posted, (size_t)16 << 20, "max_posted defaulted");
  cr_assert_null(s->cfg.wake);
  ws_server_free(s);
  cr_assert_eq(new_with_size(offsetof(ws_config, max_posted), &s), WS_OK);
  cr_assert_eq(s->cfg.max_posted, (size_t)16 << 20);
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

/* max_queued near SIZE_MAX is kept WS__QUEUE_SLACK below it: the bytes an
 * open queue takes past the cap (one ping, one close) cannot wrap the
 * count (with a 32-bit size_t and frames queued by reference, a sum can
 * get there). Smaller caps stay as given. */
Test(host_contract, max_queued_is_kept_below_size_max) {
  size_t caps[] = {SIZE_MAX, SIZE_MAX - WS__QUEUE_SLACK + 1,
                   SIZE_MAX - WS__QUEUE_SLACK, 1};
  size_t want[] = {SIZE_MAX - WS__QUEUE_SLACK, SIZE_MAX - WS__QUEUE_SLACK,
                   SIZE_MAX - WS__QUEUE_SLACK, 1};
  size_t i;
  for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
    ws_config cfg;
    ws_server *s;
    ws_config_init(&cfg);
    cfg.alloc = test_alloc();
    mt_config(&cfg, 0);
    cfg.max_queued = caps[i];
    cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
    cr_assert_eq(s->cfg.max_queued, want[i], "cap %zu", i);
    ws_server_free(s);
  }
  cr_assert_eq(test_alloc_live(), 0);
}

Test(host_contract, config_of_unknown_size_is_refused) {
  ws_server *s = (ws_server *)&s;
  cr_assert_eq(new_with_size(offsetof(ws_config, wake) - 1, &s), WS_EINVAL);
  cr_assert_eq(new_with_size(sizeof(ws_config) + 1, &s), WS_EINVAL);
  cr_assert_eq(test_alloc_live(), 0);
}

/* send wrapped so that it claims one byte more than it was offered. */
static ssize_t (*real_send)(ws_conn *, void *, const void *, size_t);
static ssize_t overclaiming_send(ws_conn *c, void *t, const void *p, size_t n) {
  ssize_t w = real_send(c, t, p, n);
  return w > 0 ? w + 1 : w;
}
static int closed_code;
static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)c, (void)reason, (void)ud;
  closed_code = code;
  return 0;
}

Test(host_contract, send_claiming_more_than_len_fails_the_connection) {
  ws_config cfg;
  ws_server *s;
  mt_conn t;
  ws_stats st;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_close = on_close;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_connect(&t, s, "a", MT_WHOLE);
  cr_assert_not_null(t.c);
  /* Swapped in only now: the 101 went out normally. */
  real_send = cfg.send;
  s->cfg.send = overclaiming_send;
  closed_code = 0;
  cr_assert_geq(ws_conn_send_text(t.c, "hi", 2), 0);
  cr_assert_null(t.c, "the transport was closed");
  cr_assert_eq(t.closes, 1);
  cr_assert_eq(closed_code, WS_CLOSE_ABNORMAL);
  cr_assert_eq(ws_server_stats(s, &st, sizeof st), WS_OK);
  cr_assert_eq(st.conns_open, 0);
  ws_server_free(s);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

/* keep_headers: on_upgrade always sees the request's headers; handlers see
 * them only with keep_headers = 1 (default 0: an idle connection keeps its
 * path, query and device id, not a browser's kilobyte of headers). */
static char in_upgrade[32], in_handler[32];
static void copy_header(char *out, const ws_request *r) {
  const char *v = ws_request_header(r, "X-Token");
  snprintf(out, 32, "%s", v ? v : "(none)");
}
static int upgrade_reads(ws_conn *c, const ws_request *req,
                         const char **reason, void *ud) {
  (void)c, (void)reason, (void)ud;
  copy_header(in_upgrade, req);
  return 0;
}
static int handler_reads(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  copy_header(in_handler, ws_conn_request(c));
  cr_assert_str_eq(ws_request_query(ws_conn_request(c), "device_id"), "a");
  return 0;
}

static void headers_seen(int keep, const char *want_in_handler) {
  ws_config cfg;
  ws_server *s;
  mt_conn t;
  char req[512];
  size_t n = mt_request(req, sizeof req, "a", "X-Token: t0k3n\r\n");
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_upgrade = upgrade_reads;
  cfg.handler = handler_reads;
  if (keep >= 0) cfg.keep_headers = keep;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_open(&t, s);
  cr_assert_eq(mt_feed(&t, req, n, MT_WHOLE), WS_OK);
  cr_assert_eq(mt_send_text(&t, "{\"action\":\"x\"}", MT_WHOLE), WS_OK);
  cr_expect_str_eq(in_upgrade, "t0k3n");
  cr_expect_str_eq(in_handler, want_in_handler);
  ws_server_free(s);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

Test(host_contract, headers_reach_handlers_only_when_kept) {
  headers_seen(-1, "(none)"); /* the default */
  headers_seen(0, "(none)");
  headers_seen(1, "t0k3n");
}

/* ---- the header's promises, one by one (API review) ------------------- */

/* ws_strerror and ws_err_name: every code of WS_ERRNO_MAP gets its own
 * message and "WS_E<NAME>"; any other value gets "unknown error" and
 * "WS_UNKNOWN" (never NULL). WS_OK is outside the table: "success" and
 * "WS_OK". */
Test(host_contract, strerror_and_err_name_cover_the_table) {
#define CHECK_ONE(name, value, msg)                                         \
  cr_expect_str_eq(ws_strerror(value), msg, "ws_strerror(%d)", value);     \
  cr_expect_str_eq(ws_err_name(value), "WS_E" #name, "ws_err_name(%d)",     \
                   value);                                                  \
  cr_expect_eq((int)WS_E##name, value);
  WS_ERRNO_MAP(CHECK_ONE)
#undef CHECK_ONE
  static const int unknown[] = {1, 2, 42, -14, -100, INT_MIN, INT_MAX};
  size_t i;
  for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    cr_expect_not_null(ws_strerror(unknown[i]));
    cr_expect_str_eq(ws_strerror(unknown[i]), "unknown error", "%d",
                     unknown[i]);
    cr_expect_str_eq(ws_err_name(unknown[i]), "WS_UNKNOWN", "%d", unknown[i]);
  }
  cr_expect_str_eq(ws_strerror(WS_OK), "success");
  cr_expect_str_eq(ws_err_name(WS_OK), "WS_OK");
  /* Thirteen codes, -1 .. -13 without a gap: each name is distinct. */
  for (i = 1; i <= 13; i++)
    cr_expect_str_neq(ws_err_name(-(int)i), "WS_UNKNOWN", "%zu", i);
}

Test(host_contract, version_string_matches_the_header) {
  char num[32];
  cr_assert_str_eq(ws_version(), WS_VERSION);
  cr_assert_str_eq(ws_version(), "0.1.0");
  snprintf(num, sizeof num, "%d.%d.%d", WS_VERSION_MAJOR, WS_VERSION_MINOR,
           WS_VERSION_PATCH);
  cr_assert_str_eq(num, WS_VERSION);
  cr_assert_eq(WS_VERSION_NUM, (WS_VERSION_MAJOR << 16) |
                                   (WS_VERSION_MINOR << 8) | WS_VERSION_PATCH);
}

/* Every default the header documents, as ws_config_init fills it. */
Test(host_contract, config_init_fills_the_documented_defaults) {
  ws_config cfg;
  memset(&cfg, 0x5A, sizeof cfg); /* garbage a stack struct may hold */
  ws_config_init(&cfg);
  cr_assert_eq(cfg.struct_size_, sizeof cfg);
  cr_assert_null(cfg.alloc.malloc);
  cr_assert_null(cfg.alloc.realloc);
  cr_assert_null(cfg.alloc.free);
  cr_assert_null(cfg.user_data);
  cr_assert_null(cfg.send);
  cr_assert_null(cfg.sendv);
  cr_assert_null(cfg.want_write);
  cr_assert_null(cfg.close);
  cr_assert_null(cfg.handler);
  cr_assert_null(cfg.handler_data);
  cr_assert_null(cfg.on_open);
  cr_assert_null(cfg.on_close);
  cr_assert_null(cfg.on_upgrade);
  cr_assert_null(cfg.on_http);
  cr_assert_null(cfg.on_log);
  cr_assert_null(cfg.on_shutdown);
  cr_assert_str_eq(cfg.path, "/ws");
  cr_assert_str_eq(cfg.device_param, "device_id");
  cr_assert_eq(cfg.device_required, 1);
  cr_assert_eq(cfg.duplicate_policy, WS_DUP_REPLACE);
  cr_assert_null(cfg.allowed_origins);
  cr_assert_eq(cfg.allowed_origins_count, 0);
  cr_assert_null(cfg.check_origin);
  cr_assert_null(cfg.subprotocols);
  cr_assert_eq(cfg.subprotocols_count, 0);
  cr_assert_null(cfg.select_subprotocol);
  cr_assert_eq(cfg.keep_headers, 0);
  cr_assert_eq(cfg.max_handshake, 8192);
  cr_assert_eq(cfg.max_headers, 64);
  cr_assert_eq(cfg.max_device_id, 128);
  cr_assert_eq(cfg.max_message, 65536);
  cr_assert_eq(cfg.max_queued, (size_t)1 << 20);
  cr_assert_eq(cfg.max_connections, 100000);
  cr_assert_eq(cfg.queue_policy, WS_QUEUE_CLOSE);
  cr_assert_eq(cfg.bad_message_policy, WS_BADMSG_REPLY);
  cr_assert_eq(cfg.handshake_timeout_ms, 10000);
  cr_assert_eq(cfg.idle_timeout_ms, 60000);
  cr_assert_eq(cfg.ping_interval_ms, 30000);
  cr_assert_eq(cfg.write_timeout_ms, 60000);
  cr_assert_eq(cfg.close_timeout_ms, 5000);
  cr_assert_null(cfg.wake);
  cr_assert_eq(cfg.max_posted, (size_t)16 << 20);
}

/* ws_config_defaults writes no byte past the size it is given (a program
 * built against an older, shorter header passes its own size). */
Test(host_contract, config_defaults_stays_inside_the_given_size) {
  struct {
    ws_config cfg;
    unsigned char canary[32];
  } box;
  size_t n = offsetof(ws_config, wake), i;
  const unsigned char *p = (const unsigned char *)&box;
  memset(&box, 0xAB, sizeof box);
  ws_config_defaults(&box.cfg, n);
  cr_assert_eq(box.cfg.struct_size_, n);
  cr_assert_str_eq(box.cfg.path, "/ws");
  for (i = n; i < sizeof box; i++)
    cr_assert_eq(p[i], 0xAB, "byte %zu written past struct_size", i);
}

/* A size smaller than any version's struct (not one ws_config_init made):
 * those bytes are zeroed, nothing past them is written, and ws_server_new
 * refuses the result. */
Test(host_contract, config_defaults_with_a_size_below_every_version) {
  static const size_t sizes[] = {0, 1, sizeof(size_t), 40,
                                 offsetof(ws_config, wake) - 1};
  size_t k, i;
  for (k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    struct {
      ws_config cfg;
      unsigned char canary[32];
    } box;
    const unsigned char *p = (const unsigned char *)&box;
    ws_server *s = NULL;
    memset(&box, 0xAB, sizeof box);
    ws_config_defaults(&box.cfg, sizes[k]);
    for (i = 0; i < sizeof box; i++)
      cr_assert_eq(p[i], i < sizes[k] ? 0 : 0xAB, "size %zu: byte %zu",
                   sizes[k], i);
    memset((unsigned char *)&box + sizes[k], 0, sizeof box - sizes[k]);
    mt_config(&box.cfg, 0);
    cr_assert_eq(ws_server_new(&box.cfg, &s), WS_EINVAL, "size %zu", sizes[k]);
    cr_assert_null(s);
  }
}

/* ws_server_new's refusals the other tests do not try. */
static int on_log_calls;
static char on_log_line[160];
static void count_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)ud;
  cr_expect_null(s, "a refused config is logged with s NULL");
  cr_expect_eq(level, WS_LOG_ERROR);
  on_log_calls++;
  snprintf(on_log_line, sizeof on_log_line, "%s", msg);
}
static int try_new(void (*tweak)(ws_config *)) {
  ws_config cfg;
  ws_server *s = NULL;
  int rc;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_log = count_log;
  tweak(&cfg);
  on_log_calls = 0;
  on_log_line[0] = '\0';
  rc = ws_server_new(&cfg, &s);
  if (rc == WS_OK) {
    cr_assert_not_null(s);
    ws_server_free(s);
  } else {
    cr_assert_eq(on_log_calls, 1, "one log line naming the problem");
    cr_assert(strncmp(on_log_line, "ws_server_new: ", 15) == 0 &&
                  on_log_line[15] != '\0',
              "log line: \"%s\"", on_log_line);
  }
  return rc;
}
static void no_send(ws_config *c) { c->send = NULL; }
static void no_close(ws_config *c) { c->close = NULL; }
static void message_0(ws_config *c) { c->max_message = 0; }
static void connections_0(ws_config *c) { c->max_connections = 0; }
static void handshake_2_31(ws_config *c) { c->max_handshake = (size_t)1 << 31; }
static void handshake_2_31_1(ws_config *c) {
  c->max_handshake = ((size_t)1 << 31) - 1;
}
static void dup_3(ws_config *c) { c->duplicate_policy = 3; }
static void dup_neg(ws_config *c) { c->duplicate_policy = -1; }
static void queue_neg(ws_config *c) { c->queue_policy = -1; }
static void refuse_policy(ws_config *c) {
  c->duplicate_policy = WS_DUP_REFUSE;
  c->queue_policy = WS_QUEUE_DROP;
  c->bad_message_policy = WS_BADMSG_CLOSE;
}
static void any_path(ws_config *c) { c->path = NULL; }
static void headers_over_256(ws_config *c) { c->max_headers = 100000; }
static void bad_subprotocol(ws_config *c) {
  static const char *const protos[] = {"chat", "not a token"};
  c->subprotocols = protos;
  c->subprotocols_count = 2;
}

Test(host_contract, server_new_refusals) {
  ws_config cfg;
  ws_server *s = (ws_server *)&s;
  ws_config_init(&cfg);
  mt_config(&cfg, 0);
  cr_assert_eq(ws_server_new(NULL, &s), WS_EINVAL);
  cr_assert_eq(ws_server_new(&cfg, NULL), WS_EINVAL);
  cr_assert_eq(try_new(no_send), WS_EINVAL);
  cr_assert_eq(try_new(no_close), WS_EINVAL);
  cr_assert_eq(try_new(message_0), WS_EINVAL);
  cr_assert_eq(try_new(connections_0), WS_EINVAL);
  cr_assert_eq(try_new(handshake_2_31), WS_EINVAL);
  cr_assert_eq(try_new(handshake_2_31_1), WS_OK);
  cr_assert_eq(try_new(dup_3), WS_EINVAL);
  cr_assert_eq(try_new(dup_neg), WS_EINVAL);
  cr_assert_eq(try_new(queue_neg), WS_EINVAL);
  cr_assert_eq(try_new(bad_subprotocol), WS_EINVAL);
  /* In range: accepted, and nothing is logged. */
  cr_assert_eq(try_new(refuse_policy), WS_OK);
  cr_assert_eq(try_new(any_path), WS_OK);
  cr_assert_eq(try_new(headers_over_256), WS_OK, "over 256 counts as 256");
  cr_assert_eq(on_log_calls, 0);
  cr_assert_eq(test_alloc_live(), 0);
}

/* NULL handles: the calls documented to take them. */
Test(host_contract, null_handles) {
  ws_stats st;
  ws_conn *c = (ws_conn *)&c;
  ws_server_free(NULL); /* accepted */
  cr_assert_eq(ws_server_tick(NULL, 5), -1);
  cr_assert_eq(ws_server_shutdown(NULL, 10), WS_EINVAL);
  cr_assert_eq(ws_server_stats(NULL, &st, sizeof st), WS_EINVAL);
  cr_assert_eq(ws_conn_new(NULL, NULL, &c), WS_EINVAL);
  cr_assert_eq(ws_conn_feed(NULL, "x", 1), WS_EINVAL);
  cr_assert_eq(ws_conn_writable(NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_want_write(NULL), 0);
  ws_conn_abort(NULL); /* accepted */
  cr_assert_eq(ws_conn_send_text(NULL, "x", 1), WS_EINVAL);
  cr_assert_eq(ws_conn_send_json(NULL, "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_conn_send(NULL, "x", NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_send_binary(NULL, "x", 1), WS_EINVAL);
  cr_assert_eq(ws_conn_set_user(NULL, "u"), WS_EINVAL);
  cr_assert_eq(ws_conn_leave(NULL, "g"), WS_EINVAL);
  cr_assert_eq(ws_conn_http_respond(NULL, 200, NULL, NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_post(NULL, WS_POST_ALL, NULL, "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_send_device(NULL, "d", "x", NULL), WS_EINVAL);
  cr_assert_eq(ws_push_user(NULL, "u", "x", NULL), WS_EINVAL);
  cr_assert_eq(ws_publish(NULL, "g", "x", NULL), WS_EINVAL);
}

/* ws_server_stats: a NULL out is WS_EINVAL; ws_server_user_data is the
 * config's. */
Test(host_contract, stats_out_null_and_user_data) {
  ws_config cfg;
  ws_server *s;
  int mine;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  cr_assert_null(ws_server_user_data(s), "default NULL");
  cr_assert_eq(ws_server_stats(s, NULL, sizeof(ws_stats)), WS_EINVAL);
  ws_server_free(s);
  cfg.user_data = &mine;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  cr_assert_eq(ws_server_user_data(s), &mine);
  cr_assert_eq(ws_server_tick(s, 0), -1, "nothing pending: -1");
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

/* A server with the in-memory transport, optional callbacks. */
static ws_server *plain_server(int (*on_open_fn)(ws_conn *, void *)) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_open = on_open_fn;
  cfg.on_close = on_close;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  ws_server_tick(s, 0);
  return s;
}

/* ws_conn_new: a NULL out is WS_EINVAL, and no callback fires for the
 * connection that was not made. A new connection has no request yet, no
 * user data, no device id, no subprotocol; its transport and server are
 * what it was given. */
Test(host_contract, new_connection_accessors_and_einval) {
  ws_server *s = plain_server(NULL);
  mt_conn t;
  int mine;
  memset(&t, 0, sizeof t);
  cr_assert_eq(ws_conn_new(s, &t, NULL), WS_EINVAL);
  cr_assert_eq(t.closes, 0, "no callback for a connection not made");
  cr_assert_eq(ws_server_stats(s, &(ws_stats){0}, sizeof(ws_stats)), WS_OK);
  mt_open(&t, s);
  cr_assert_eq(ws_conn_transport(t.c), &t);
  cr_assert_eq(ws_conn_server(t.c), s);
  cr_assert_null(ws_conn_request(t.c), "no request parsed yet");
  cr_assert_null(ws_conn_user_data(t.c), "user data defaults to NULL");
  cr_assert_null(ws_conn_device_id(t.c));
  cr_assert_null(ws_conn_subprotocol(t.c));
  cr_assert_null(ws_conn_user(t.c));
  ws_conn_set_user_data(t.c, &mine);
  cr_assert_eq(ws_conn_user_data(t.c), &mine);
  /* Feeding: NULL bytes with a length are WS_EINVAL (nothing read), NULL
   * with 0 is an empty feed. */
  cr_assert_eq(ws_conn_feed(t.c, NULL, 3), WS_EINVAL);
  cr_assert_eq(ws_conn_feed(t.c, NULL, 0), WS_OK);
  ws_server_free(s);
  cr_assert_eq(t.closes, 1);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

/* on_open's return value is ignored (reserved): -1 does not refuse or
 * close the client. on_close's is ignored too. */
static int open_returns_error(ws_conn *c, void *ud) {
  (void)c, (void)ud;
  return -1;
}
Test(host_contract, on_open_return_value_is_ignored) {
  ws_server *s = plain_server(open_returns_error);
  mt_conn t;
  ws_stats st;
  closed_code = 0;
  mt_connect(&t, s, "a", MT_WHOLE); /* asserts the 101 */
  cr_assert_not_null(t.c);
  cr_assert_eq(ws_conn_send_text(t.c, "hi", 2), WS_OK);
  mt_expect_text(&t, "hi");
  cr_assert_eq(t.closes, 0);
  cr_assert_eq(ws_server_stats(s, &st, sizeof st), WS_OK);
  cr_assert_eq(st.conns_open, 1);
  ws_server_free(s);
  cr_assert_eq(closed_code, WS_CLOSE_ABNORMAL, "server free: on_close 1006");
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

/* ws_conn_close takes 1000..4999 except the reserved codes (1004, 1005,
 * 1006, 1015 and 1016..2999 are not for an endpoint to send). */
Test(host_contract, close_code_boundaries) {
  static const int bad[] = {1004, 1006, 1015, 1016, 2999, -1, 0};
  static const int good[] = {1000, 1001, 1011, 1014, 3000, 4999};
  size_t i;
  ws_server *s = plain_server(NULL);
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mt_conn t;
    mt_connect(&t, s, "a", MT_WHOLE);
    cr_assert_eq(ws_conn_close(t.c, bad[i], NULL), WS_EINVAL, "%d", bad[i]);
    mt_expect_nothing(&t);
    ws_conn_abort(t.c);
    mt_free(&t);
  }
  for (i = 0; i < sizeof good / sizeof good[0]; i++) {
    mt_conn t;
    mt_connect(&t, s, "a", MT_WHOLE);
    cr_assert_eq(ws_conn_close(t.c, good[i], NULL), WS_OK, "%d", good[i]);
    mt_expect_close(&t, good[i]);
    cr_assert_eq(ws_conn_close(t.c, good[i], NULL), WS_ECLOSED,
                 "already closing");
    ws_conn_abort(t.c);
    mt_free(&t);
  }
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

/* ws_conn_close before the handshake completed: the socket is closed at
 * once, without a frame (and no on_close: it never opened). */
Test(host_contract, close_during_the_handshake_closes_without_a_frame) {
  ws_server *s = plain_server(NULL);
  mt_conn t;
  closed_code = 0;
  mt_open(&t, s);
  mt_feed_str(&t, "GET /ws?device_id=a HTTP/1.1\r\n", MT_WHOLE);
  cr_assert_eq(ws_conn_close(t.c, 1000, "bye"), WS_OK);
  cr_assert_eq(t.closes, 1);
  cr_assert_null(t.c);
  cr_assert_eq(t.len, 0, "no frame, no HTTP answer");
  cr_assert_eq(closed_code, 0, "no on_close for a connection never opened");
  ws_server_free(s);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

/* ws_conn_upgrade_answer: NULL status, reason or accept is WS_EINVAL
 * (nothing answered, the connection still new); a connection that is not
 * new is WS_ESTATE. */
static const ws_header answer_hdrs[] = {
    {"Host", 4, "example.com", 11},
    {"Upgrade", 7, "websocket", 9},
    {"Connection", 10, "Upgrade", 7},
    {"Sec-WebSocket-Key", 17, MT_SAMPLE_KEY, 24},
    {"Sec-WebSocket-Version", 21, "13", 2},
};
Test(host_contract, upgrade_answer_argument_errors) {
  ws_server *s = plain_server(NULL);
  mt_conn t, u;
  int status = 0;
  const char *reason = "untouched";
  char accept[WS_ACCEPT_LEN + 1] = "untouched";
  mt_open(&t, s);
  cr_assert_eq(ws_conn_upgrade_answer(t.c, "GET", "/ws", "device_id=a",
                                      answer_hdrs, 5, NULL, &reason, accept),
               WS_EINVAL);
  cr_assert_eq(ws_conn_upgrade_answer(t.c, "GET", "/ws", "device_id=a",
                                      answer_hdrs, 5, &status, NULL, accept),
               WS_EINVAL);
  cr_assert_eq(ws_conn_upgrade_answer(t.c, "GET", "/ws", "device_id=a",
                                      answer_hdrs, 5, &status, &reason, NULL),
               WS_EINVAL);
  cr_assert_eq(ws_conn_upgrade_answer(NULL, "GET", "/ws", "device_id=a",
                                      answer_hdrs, 5, &status, &reason,
                                      accept),
               WS_EINVAL);
  cr_assert_eq(ws_conn_upgrade_answer(t.c, NULL, "/ws", "device_id=a",
                                      answer_hdrs, 5, &status, &reason,
                                      accept),
               WS_EINVAL);
  cr_assert_eq(ws_conn_upgrade_answer(t.c, "GET", NULL, "device_id=a",
                                      answer_hdrs, 5, &status, &reason,
                                      accept),
               WS_EINVAL);
  cr_assert_eq(ws_conn_upgrade(t.c, "GET", "/ws", "device_id=a", NULL, 5),
               WS_EINVAL, "NULL headers with a count");
  cr_assert_eq(status, 0);
  cr_assert_str_eq(reason, "untouched");
  cr_assert_eq(t.len, 0);
  cr_assert_eq(t.closes, 0);
  /* Still new: the real call works. */
  cr_assert_eq(ws_conn_upgrade_answer(t.c, "GET", "/ws", "device_id=a",
                                      answer_hdrs, 5, &status, &reason,
                                      accept),
               WS_OK);
  cr_assert_eq(status, 101);
  cr_assert_null(reason);
  cr_assert_str_eq(accept, MT_SAMPLE_ACCEPT);
  cr_assert_eq(ws_conn_upgrade_answer(t.c, "GET", "/ws", "device_id=b",
                                      answer_hdrs, 5, &status, &reason,
                                      accept),
               WS_ESTATE, "not a new connection");
  /* One that was fed bytes is not new either. */
  mt_open(&u, s);
  mt_feed_str(&u, "GET /ws", MT_WHOLE);
  cr_assert_eq(ws_conn_upgrade_answer(u.c, "GET", "/ws", "device_id=c",
                                      answer_hdrs, 5, &status, &reason,
                                      accept),
               WS_ESTATE);
  ws_server_free(s);
  mt_free(&t);
  mt_free(&u);
  cr_assert_eq(test_alloc_live(), 0);
}

/* ws_post: its argument errors, a name ignored for WS_POST_ALL, and
 * WS_ESHUTDOWN once the server shuts down (also after the shutdown
 * finished). */
Test(host_contract, post_arguments_and_after_shutdown) {
  ws_server *s = plain_server(NULL);
  mt_conn t;
  mt_connect(&t, s, "a", MT_WHOLE);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, NULL, NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", NULL, 1), WS_EINVAL);
  cr_assert_eq(ws_post(s, -1, NULL, "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_post(s, WS_POST_GROUP + 1, "g", "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "\xff", NULL, 0), WS_EINVAL,
               "an action that is not UTF-8");
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", "[1,", 3), WS_EJSON);
  /* WS_POST_ALL ignores the name, whatever it is. */
  cr_assert_eq(ws_post(s, WS_POST_ALL, "", "all", NULL, 0), WS_OK);
  ws_server_tick(s, 1);
  mt_expect_text(&t, "{\"action\":\"all\"}");
  cr_assert_eq(ws_server_shutdown(s, 1000), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", NULL, 0), WS_ESHUTDOWN);
  ws_conn_abort(t.c); /* the last one: the shutdown is done */
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", NULL, 0), WS_ESHUTDOWN);
  cr_assert_eq(ws_server_shutdown(s, 1000), WS_ESHUTDOWN);
  cr_assert_eq(ws_server_tick(s, 2), -1, "nothing left");
  ws_server_free(s);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

/* The allocator of post_closes_in_the_window: passes everything to the
 * counting allocator; armed, its next allocation first closes the post
 * queue, as the loop thread's ws_server_shutdown would at that moment. */
static ws_server *close_posts_at_alloc;

static void *closing_malloc(size_t n, void *ud) {
  ws_allocator a = test_alloc();
  (void)ud;
  if (close_posts_at_alloc) {
    ws__post_close(close_posts_at_alloc);
    close_posts_at_alloc = NULL;
  }
  return a.malloc(n, a.user_data);
}

static void *closing_realloc(void *p, size_t n, void *ud) {
  ws_allocator a = test_alloc();
  (void)ud;
  return a.realloc(p, n, a.user_data);
}

static void closing_free(void *p, void *ud) {
  ws_allocator a = test_alloc();
  (void)ud;
  a.free(p, a.user_data);
}

/* A shutdown that lands while ws_post builds its frame (after the
 * lock-free check, before the append under the lock) must still answer
 * WS_ESHUTDOWN, as every later post does: a producer that retries on
 * WS_ELIMIT (the queue is full, try again) would otherwise retry against
 * a server that will never take a post again. The window is made
 * deterministic by closing the queue from the frame's allocation. */
Test(host_contract, post_refused_by_a_shutdown_during_its_build_is_eshutdown) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.alloc.malloc = closing_malloc;
  cfg.alloc.realloc = closing_realloc;
  cfg.alloc.free = closing_free;
  mt_config(&cfg, 0);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  close_posts_at_alloc = s;
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "x", "1", 1), WS_ESHUTDOWN);
  cr_assert_null(close_posts_at_alloc, "ws_post allocated nothing");
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0, "the refused post leaked");
}

/* ---- out of memory (audit of promises vs tests) ------------------------ */

/* Out of memory, ws_server_new and ws_conn_new answer WS_ENOMEM (not
 * WS_EINVAL), leak nothing, and no callback fires for what was not made. */
Test(host_contract, server_new_and_conn_new_out_of_memory_are_enomem) {
  ws_config cfg;
  ws_server *s = NULL;
  ws_conn *c = NULL;
  ws_stats st;
  mt_conn t;
  long n, live;
  int rc;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  test_alloc_reset(1);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_ENOMEM);
  cr_assert_null(s);
  test_alloc_reset(0);
  cr_assert_eq(test_alloc_live(), 0);
  s = plain_server(NULL);
  memset(&t, 0, sizeof t);
  t.s = s;
  live = test_alloc_live();
  for (n = 1;; n++) {
    test_alloc_reset(n);
    rc = ws_conn_new(s, &t, &c);
    if (!test_alloc_failed()) break;
    cr_assert_eq(rc, WS_ENOMEM, "allocation %ld: %s", n, ws_err_name(rc));
    cr_assert_null(c, "allocation %ld: *out set", n);
    cr_assert_eq(test_alloc_live(), live, "allocation %ld: leaked", n);
    ws_server_stats(s, &st, sizeof st);
    cr_assert_eq(st.conns_pending, 0);
  }
  test_alloc_reset(0);
  cr_assert_eq(rc, WS_OK);
  cr_assert_gt(n, 2, "the connection and its deadline's room both failed");
  t.c = c;
  cr_assert_eq(t.closes, 0, "no callback for the connections not made");
  ws_server_free(s);
  cr_assert_eq(t.closes, 1);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}
