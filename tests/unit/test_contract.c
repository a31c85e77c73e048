/* Claims of include/wsmux.h checked against the library, from a contract
 * audit of the header: each Test names the promise it holds the library
 * to. */
#include "pinned.h"

/* ---- on_close's code and reason ---------------------------------------- */

/* The peer closes with 1000 "bye" while our socket takes nothing, so the
 * echo waits; how the close handshake is then cut (close timeout, the
 * shutdown's drain deadline) must not change what on_close reports: the
 * peer's code, and with it the peer's reason. */
static ws_server *peer_closed_blocked(ws_config *cfg, mt_conn *A) {
  ws_server *s;
  mt_bytes b = {0};
  k_cfg(cfg);
  s = k_open(cfg, A);
  A->would_block = 1;
  mt_close_add(&b, 1000, "bye");
  cr_assert_eq(ws_conn_feed(A->c, b.p, b.len), WS_ECLOSED);
  mt_bytes_free(&b);
  cr_assert_eq(K.closes, 0, "the echo still waits");
  return s;
}

Test(contract, peer_reason_survives_the_close_timeout) {
  ws_config cfg;
  static mt_conn A;
  ws_server *s = peer_closed_blocked(&cfg, &A);
  ws_server_tick(s, cfg.close_timeout_ms);
  cr_assert_eq(K.closes, 1);
  cr_assert_eq(K.code, 1000);
  cr_assert_str_eq(K.reason, "bye");
  k_done(s, &A);
}

Test(contract, peer_reason_survives_the_shutdown_deadline) {
  ws_config cfg;
  static mt_conn A;
  ws_server *s = peer_closed_blocked(&cfg, &A);
  cr_assert_eq(ws_server_shutdown(s, 1000), WS_OK);
  ws_server_tick(s, 1000);
  cr_assert_eq(K.closes, 1);
  cr_assert_eq(K.code, 1000);
  cr_assert_str_eq(K.reason, "bye");
  k_done(s, &A);
}

/* Without a close frame from the peer the reason stays ours, and a 1006
 * (the host's abort) carries ours even after the peer's close came. */
Test(contract, our_reason_without_the_peers_code) {
  ws_config cfg;
  static mt_conn A;
  ws_server *s;
  k_cfg(&cfg);
  s = k_open(&cfg, &A);
  A.would_block = 1;
  cr_assert_eq(ws_conn_close(A.c, 4100, "mine"), WS_OK);
  ws_server_tick(s, cfg.close_timeout_ms);
  cr_assert_eq(K.code, 4100, "the code we queued");
  cr_assert_str_eq(K.reason, "close handshake timeout");
  k_done(s, &A);

  s = peer_closed_blocked(&cfg, &A);
  ws_conn_abort(A.c);
  cr_assert_eq(K.code, 1006);
  cr_assert_str_eq(K.reason, "aborted");
  k_done(s, &A);
}

/* ---- NULL handles ------------------------------------------------------- */

/* "every function taking a ws_server, ws_conn, ws_mux, ws_msg, ws_request
 * or ws_prepared accepts NULL: accessors return NULL or 0, functions
 * returning an error code return WS_EINVAL, void ones do nothing": the
 * calls host_contract::null_handles leaves out, every handle argument in
 * turn NULL while the others are real. */
static int null_fn(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)m, (void)ud;
  return 0;
}

Test(contract, every_function_accepts_null_handles) {
  static const char *const ids[] = {"a"};
  ws_config cfg;
  static mt_conn A;
  ws_server *s;
  ws_prepared *p = NULL;
  ws_mux *m = ws_mux_new(NULL);
  const char *name = "x", *value = "x";
  size_t len = 7;
  ws_msg msg;
  k_cfg(&cfg);
  s = k_open(&cfg, &A);
  cr_assert_not_null(m);
  memset(&msg, 0, sizeof msg);
  msg.action = "x";

  /* Server. */
  cr_assert_null(ws_server_user_data(NULL));
  cr_assert_eq(ws_server_conn_count(NULL), 0);
  cr_assert_null(ws_server_find_device(NULL, "a"));
  cr_assert_eq(ws_server_user_count(NULL, "u"), 0);
  cr_assert_eq(ws_server_group_count(NULL, "g"), 0);
  ws_config_defaults(NULL, sizeof cfg); /* does nothing */

  /* Connection accessors and calls. */
  cr_assert_null(ws_conn_transport(NULL));
  cr_assert_null(ws_conn_server(NULL));
  cr_assert_null(ws_conn_user_data(NULL));
  ws_conn_set_user_data(NULL, &len);
  cr_assert_null(ws_conn_device_id(NULL));
  cr_assert_null(ws_conn_user(NULL));
  cr_assert_null(ws_conn_request(NULL));
  cr_assert_null(ws_conn_subprotocol(NULL));
  cr_assert_eq(ws_conn_close(NULL, 1000, NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_upgrade(NULL, "GET", "/ws", NULL, NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_conn_add_header(NULL, "X-A", "b"), WS_EINVAL);
  cr_assert_eq(ws_conn_join(NULL, "g"), WS_EINVAL);
  cr_assert_eq(ws_conn_send_error(NULL, "c", "m"), WS_EINVAL);

  /* Requests. */
  cr_assert_null(ws_request_method(NULL));
  cr_assert_null(ws_request_path(NULL));
  cr_assert_null(ws_request_query(NULL, "device_id"));
  cr_assert_null(ws_request_header(NULL, "Host"));
  cr_assert_eq(ws_request_header_count(NULL), 0);
  cr_assert_eq(ws_request_header_at(NULL, 0, &name, &value), WS_EINVAL);
  cr_assert_str_eq(name, "x", "untouched on WS_EINVAL");
  cr_assert_str_eq(value, "x");

  /* Messages. */
  cr_assert_null(ws_msg_data(NULL));
  cr_assert_null(ws_msg_data_json(NULL, &len));
  cr_assert_eq(len, 0, "*len gets 0 with the NULL");

  /* Mux. */
  ws_mux_free(NULL);
  cr_assert_eq(ws_mux_handle(NULL, "x", null_fn, NULL), WS_EINVAL);
  cr_assert_eq(ws_mux_remove(NULL, "x"), WS_EINVAL);
  cr_assert_eq(ws_mux_fallback(NULL, null_fn, NULL), WS_EINVAL);
  cr_assert_eq(ws_mux_binary(NULL, null_fn, NULL), WS_EINVAL);
  cr_assert_eq(ws_mux_serve(NULL, &msg, m), WS_EINVAL);
  cr_assert_eq(ws_mux_serve(A.c, NULL, m), WS_EINVAL);
  cr_assert_eq(ws_mux_serve(A.c, &msg, NULL), WS_EINVAL);

  /* Prepared messages. */
  cr_assert_eq(ws_prepare(NULL, "x", NULL, &p), WS_EINVAL);
  cr_assert_null(p);
  cr_assert_eq(ws_prepare_json(NULL, "x", "1", 1, &p), WS_EINVAL);
  cr_assert_null(p);
  cr_assert_eq(ws_prepare_json(s, "x", "1", 1, &p), WS_OK);
  cr_assert_eq(ws_conn_send_prepared(NULL, p), WS_EINVAL);
  cr_assert_eq(ws_conn_send_prepared(A.c, NULL), WS_EINVAL);
  ws_prepared_free(NULL);

  /* Fan-outs. */
  cr_assert_eq(ws_broadcast(NULL, "x", NULL, NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_broadcast_json(NULL, "x", NULL, 0, NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_send_devices(NULL, ids, 1, "x", NULL), WS_EINVAL);
  cr_assert_eq(ws_send_devices_json(NULL, ids, 1, "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_send_device_json(NULL, "a", "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_push_user_json(NULL, "u", "x", NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_publish_json(NULL, "g", "x", NULL, 0), WS_EINVAL);

  /* None of it reached the open connection: it is still open, and got
   * nothing (the mux's error reply would have been a frame). */
  cr_assert_eq(K.closes, 0);
  cr_assert_eq(ws_server_conn_count(s), 1);
  mt_pump(&A);
  mt_expect_nothing(&A);
  ws_prepared_free(p);
  ws_mux_free(m);
  k_done(s, &A);
  cr_assert_eq(test_alloc_live(), 0);
}

/* ---- ws_mux_new's allocator --------------------------------------------- */

/* An allocator is all three functions or none, for a mux as for a server:
 * a partial one is refused (NULL), none at all means libc, and a whole one
 * is the mux's for every allocation. */
Test(contract, mux_new_takes_a_whole_allocator_or_none) {
  ws_allocator part = test_alloc(), none;
  ws_mux *m;
  memset(&none, 0, sizeof none);
  part.free = NULL;
  cr_assert_null(ws_mux_new(&part), "a partial allocator");
  m = ws_mux_new(&none);
  cr_assert_not_null(m, "no function at all: libc");
  ws_mux_free(m);
  {
    ws_allocator whole = test_alloc();
    long before = test_alloc_live();
    m = ws_mux_new(&whole);
    cr_assert_not_null(m);
    cr_assert_eq(ws_mux_handle(m, "a", null_fn, NULL), WS_OK);
    cr_assert_gt(test_alloc_live(), before, "allocated through it");
    ws_mux_free(m);
    cr_assert_eq(test_alloc_live(), before);
  }
}

/* ---- ws_conn_add_header from a nested request's callbacks --------------- */

/* X's on_upgrade drives Y's upgrade (fed as bytes, or handed over with
 * ws_conn_upgrade_answer). From any of Y's callbacks, adding a line to
 * X's response is WS_ESTATE ("from a callback of another request that the
 * callback drives"), not only from Y's own on_upgrade: check_origin runs
 * before Y's window. X's lines from before and after the nested call
 * are on its 101, the refused one on no response. */
static mt_conn NX, NY;
static int nest_mode, nest_rc[2];
static const ws_header nest_hdrs[] = {
    {"Host", 4, "example.com", 11},
    {"Upgrade", 7, "websocket", 9},
    {"Connection", 10, "Upgrade", 7},
    {"Sec-WebSocket-Key", 17, MT_SAMPLE_KEY, 24},
    {"Sec-WebSocket-Version", 21, "13", 2},
};

static int nest_origin(const ws_request *r, const char *o, void *ud) {
  (void)r, (void)o, (void)ud;
  if (NY.c) /* Y's, not X's own */
    nest_rc[0] = ws_conn_add_header(NX.c, "X-Inner-Origin", "1");
  return 1;
}

static int nest_upgrade(ws_conn *c, const ws_request *r, const char **why,
                        void *ud) {
  char req[512], acc[WS_ACCEPT_LEN + 1];
  const char *reason;
  int status;
  (void)r, (void)why, (void)ud;
  if (c != NX.c) {
    nest_rc[1] = ws_conn_add_header(NX.c, "X-Inner-Upgrade", "1");
    return 0;
  }
  cr_assert_eq(ws_conn_add_header(c, "X-Before", "1"), WS_OK);
  mt_open(&NY, ws_conn_server(c));
  if (nest_mode == 0) {
    size_t n = mt_request(req, sizeof req, "y", NULL);
    cr_assert_eq(ws_conn_feed(NY.c, req, n), WS_OK);
  } else {
    cr_assert_eq(ws_conn_upgrade_answer(NY.c, "GET", "/ws", "device_id=y",
                                        nest_hdrs, 5, &status, &reason, acc),
                 WS_OK);
    cr_assert_eq(status, 101);
  }
  cr_assert_eq(ws_conn_add_header(c, "X-After", "1"), WS_OK);
  return 0;
}

Test(contract, nested_request_callbacks_cannot_add_outer_lines) {
  for (nest_mode = 0; nest_mode < 2; nest_mode++) {
    ws_config cfg;
    char req[512], head[2048];
    ws_server *s;
    size_t n;
    k_cfg(&cfg);
    cfg.check_origin = nest_origin;
    cfg.on_upgrade = nest_upgrade;
    s = k_server(&cfg);
    memset(&NY, 0, sizeof NY);
    nest_rc[0] = nest_rc[1] = 99;
    mt_open(&NX, s);
    n = mt_request(req, sizeof req, "x", NULL);
    cr_assert_eq(ws_conn_feed(NX.c, req, n), WS_OK);
    cr_assert_eq(nest_rc[0], WS_ESTATE, "from check_origin (mode %d)",
                 nest_mode);
    cr_assert_eq(nest_rc[1], WS_ESTATE, "from on_upgrade (mode %d)",
                 nest_mode);
    cr_assert_eq(mt_http_response(&NX, head, sizeof head, NULL, NULL), 101);
    cr_assert_not_null(strstr(head, "\r\nX-Before: 1\r\n"), "%s", head);
    cr_assert_not_null(strstr(head, "\r\nX-After: 1\r\n"), "%s", head);
    cr_assert_null(strstr(head, "X-Inner"), "%s", head);
    if (nest_mode == 0) {
      cr_assert_eq(mt_http_response(&NY, head, sizeof head, NULL, NULL), 101);
      cr_assert_null(strstr(head, "X-"), "%s", head);
    }
    ws_server_free(s);
    mt_free(&NX);
    mt_free(&NY);
    cr_assert_eq(test_alloc_live(), 0);
  }
}

/* ws_server_conn_count (and conns_open) stop counting a connection when it
 * ends: in its own on_close it is no longer counted, the others are. */
static size_t count_in_on_close;
static int count_on_close(ws_conn *c, int code, const char *reason,
                          void *ud) {
  count_in_on_close = ws_server_conn_count(ws_conn_server(c));
  return k_on_close(c, code, reason, ud);
}

Test(contract, an_ending_connection_is_not_counted_in_its_on_close) {
  ws_config cfg;
  static mt_conn A, B;
  ws_server *s;
  k_cfg(&cfg);
  cfg.on_close = count_on_close;
  s = k_open(&cfg, &A);
  mt_connect(&B, s, "b", MT_WHOLE);
  cr_assert_eq(ws_server_conn_count(s), 2);
  ws_conn_abort(A.c);
  cr_assert_eq(K.closes, 1);
  cr_assert_eq(count_in_on_close, 1, "only B");
  cr_assert_eq(k_stats(s).conns_open, 1);
  k_done(s, &A);
  mt_free(&B);
}

/* ws_conn_upgrade takes a new connection only: one fed part of a request
 * already is WS_ESTATE, and its bytes still make the request. */
Test(contract, upgrade_after_part_of_a_request_is_estate) {
  static const ws_header hdrs[] = {{"Host", 4, "x", 1}};
  ws_config cfg;
  static mt_conn A;
  ws_server *s;
  char req[512];
  size_t n;
  k_cfg(&cfg);
  s = k_server(&cfg);
  mt_open(&A, s);
  n = mt_request(req, sizeof req, "a", NULL);
  cr_assert_eq(mt_feed(&A, req, 10, MT_WHOLE), WS_OK);
  cr_assert_eq(ws_conn_upgrade(A.c, "GET", "/ws", "device_id=a", hdrs, 1),
               WS_ESTATE);
  cr_assert_eq(mt_feed(&A, req + 10, n - 10, MT_WHOLE), WS_OK);
  cr_assert_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 101);
  cr_assert_eq(K.opens, 1);
  k_done(s, &A);
}

/* ws_mux_serve called by the host, outside any handler: a text message
 * without an action is WS_EINVAL (it was a NULL strcmp), and what the
 * handler queued, or the unknown_action error, goes out before it returns
 * (there was no library frame to flush it until the next entry point). */
static int mux_reply(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_conn_send(c, "pong", NULL);
}

Test(contract, mux_serve_outside_a_handler_flushes_and_checks_its_message) {
  ws_config cfg;
  static mt_conn A;
  ws_server *s;
  ws_msg msg;
  ws_mux *m = ws_mux_new(NULL);
  cr_assert_not_null(m);
  cr_assert_eq(ws_mux_handle(m, "ping", mux_reply, NULL), WS_OK);
  k_cfg(&cfg);
  s = k_open(&cfg, &A);
  memset(&msg, 0, sizeof msg);
  cr_assert_eq(ws_mux_serve(A.c, &msg, m), WS_EINVAL, "no action");
  mt_expect_nothing(&A);
  msg.action = "ping";
  cr_assert_eq(ws_mux_serve(A.c, &msg, m), WS_OK, "the handler's 0");
  mt_expect_text(&A, "{\"action\":\"pong\"}");
  msg.action = "nope";
  cr_assert_eq(ws_mux_serve(A.c, &msg, m), WS_OK);
  mt_expect_text(&A, "{\"action\":\"error\",\"data\":{\"code\":"
                     "\"unknown_action\",\"message\":\"unknown action: "
                     "nope\"}}");
  k_done(s, &A);
  ws_mux_free(m);
}
