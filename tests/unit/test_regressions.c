/*
 * Regression tests for defects found by review, one Test per defect, each
 * failing on the code before its fix: deadlines (ping and the write clock,
 * the peer's close, shutdown's drain), re-entrancy (on_log, check_origin,
 * a nested feed), the upgrade (a long subprotocol, keep_headers = 0, 426,
 * limits of a host-parsed request), messages (escaped actions and keys)
 * and posting while the server is destroyed. Plus one randomized check of
 * the output order that found none of them but guards the queue.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h" /* the head buffer a connection parses from */
#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static struct {
  int on_close, code, handled, feed_rc, post_rc, opens;
  char reason[128], action[300], data[128];
  const char *saved_id, *saved_path;
  mt_conn *abort_target;
  int log_shutdown, log_closed, config_logged;
  const char *reqbuf;
  size_t reqlen;
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

/* ---- deadlines -------------------------------------------------------- */

/* The ping went on an empty queue without starting the write clock: the
 * write deadline, computed from the last write long ago, fired at once. */
static void short_write_timeout(ws_config *c) { c->write_timeout_ms = 10000; }

Test(regress, ping_starts_the_write_clock) {
  mt_conn A;
  mt_frame f;
  ws_server *s = mk(short_write_timeout);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  ws_server_tick(s, 30000); /* ping due; the peer is healthy */
  cr_assert_not_null(A.c, "closed at the ping: %d '%s'", R.code, R.reason);
  mt_expect_frame(&A, &f);
  cr_expect_eq(f.opcode, MT_PING);
  ws_server_tick(s, 35000); /* still within the write timeout */
  cr_expect_not_null(A.c);
  mt_done(s, &A, NULL);
}

/* The peer's close moved an open connection to DRAINING without a close
 * deadline: a peer that then never reads stayed forever. */
static void no_idle_deadlines(ws_config *c) {
  c->idle_timeout_ms = 0;
  c->ping_interval_ms = 0;
}

Test(regress, peer_close_arms_the_close_deadline) {
  mt_conn A;
  mt_bytes b = {0};
  ws_server *s = mk(no_idle_deadlines);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  ws_server_tick(s, 70000);
  A.would_block = 1; /* our echo cannot go out */
  mt_close_add(&b, 1000, "bye");
  mt_feed(&A, b.p, b.len, MT_WHOLE);
  cr_assert_not_null(A.c);
  ws_server_tick(s, 70000 + 5000); /* close_timeout_ms */
  cr_expect_null(A.c, "DRAINING outlived close_timeout_ms");
  cr_expect_eq(R.code, 1000);
  mt_bytes_free(&b);
  mt_done(s, &A, NULL);
}

/* Shutdown's 1001 armed the 5 s close deadline, cutting a drain the host
 * gave 60 s. */
Test(regress, shutdown_drains_for_drain_ms) {
  static char big[20000];
  mt_conn A;
  uint64_t t;
  ws_server *s = mk(NULL);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_conn_send_binary(A.c, big, sizeof big), WS_OK);
  cr_assert_eq(ws_server_shutdown(s, 60000), WS_OK);
  A.would_block = 0;
  A.max_per_send = 1000; /* slow, but always making progress */
  for (t = 1000; t <= 19000 && A.c; t += 1000) {
    ws_server_tick(s, t);
    if (A.c) ws_conn_writable(A.c);
  }
  cr_expect_not_null(A.c, "closed at %llu ms: %d '%s'",
                     (unsigned long long)t, R.code, R.reason);
  ws_server_tick(s, 60000); /* the drain deadline ends it */
  cr_expect_null(A.c);
  mt_done(s, &A, NULL);
}

/* ---- re-entrancy ------------------------------------------------------ */

/* on_log ran between a state check and the state change: a connection it
 * aborted was revived (second on_close, use after free). */
static void log_abort(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)level, (void)ud;
  if (R.abort_target && R.abort_target->c && strstr(msg, "failing")) {
    ws_conn *c = R.abort_target->c;
    R.abort_target = NULL;
    ws_conn_abort(c);
  }
}
static void with_log_abort(ws_config *c) { c->on_log = log_abort; }

Test(regress, on_log_may_abort_a_failing_connection) {
  mt_conn A;
  ws_server *s = mk(with_log_abort);
  mt_connect(&A, s, "a", MT_WHOLE);
  R.abort_target = &A;
  mt_send_frame(&A, MT_TEXT, MT_UNMASKED, "x", 1, MT_WHOLE); /* 1002 */
  cr_expect_eq(A.closes, 1, "transport closed %d times", A.closes);
  cr_expect_eq(R.on_close, 1, "on_close fired %d times", R.on_close);
  mt_done(s, &A, NULL);
}

static void log_shutdown(ws_server *s, int level, const char *msg, void *ud) {
  (void)level, (void)ud;
  if (R.log_shutdown && strstr(msg, "upgrade refused")) {
    R.log_shutdown = 0;
    ws_server_shutdown(s, 1000);
  }
}
static void with_log_shutdown(ws_config *c) { c->on_log = log_shutdown; }

Test(regress, on_log_may_shut_down_during_a_refusal) {
  mt_conn A;
  const char *req = "GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n";
  ws_server *s = mk(with_log_shutdown);
  R.log_shutdown = 1;
  mt_open(&A, s);
  mt_feed(&A, req, strlen(req), MT_WHOLE);
  cr_expect_eq(A.closes, 1, "transport closed %d times", A.closes);
  mt_done(s, &A, NULL);
}

/* check_origin ending the connection (here: shutting the server down) was
 * not noticed: the 101 went out and on_open fired on a closed one. */
static int origin_shutdown(const ws_request *r, const char *origin,
                           void *ud) {
  (void)r, (void)origin;
  ws_server_shutdown(*(ws_server **)ud, 1000);
  return 1;
}
static int count_open(ws_conn *c, void *ud) {
  (void)c, (void)ud;
  R.opens++;
  return 0;
}
static ws_server *origin_server;
static void with_origin_shutdown(ws_config *c) {
  c->check_origin = origin_shutdown;
  c->on_open = count_open;
  c->user_data = &origin_server;
}

Test(regress, check_origin_may_end_the_connection) {
  mt_conn A;
  char req[512];
  size_t n;
  ws_stats st;
  ws_server *s = origin_server = mk(with_origin_shutdown);
  n = mt_request(req, sizeof req, "a", NULL);
  mt_open(&A, s);
  mt_feed(&A, req, n, MT_WHOLE);
  ws_server_stats(s, &st, sizeof st);
  cr_expect_eq(R.opens, 0, "on_open fired for a closed connection");
  cr_expect_eq(A.closes, 1);
  cr_expect_eq(st.conns_open, 0);
  mt_done(s, &A, NULL);
}

/* A handler feeding its own connection ran the frame loop inside itself,
 * which then read a context the inner call had released: a crash. */
static int refeed(ws_conn *c, const ws_msg *m, void *ud) {
  mt_bytes b = {0};
  (void)ud;
  R.handled++;
  if (strcmp(m->action, "outer") == 0) {
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"inner\"}");
    R.feed_rc = ws_conn_feed(c, b.p, b.len);
    mt_bytes_free(&b);
  }
  return 0;
}
static void with_refeed(ws_config *c) { c->handler = refeed; }

Test(regress, nested_feed_of_the_same_connection_is_refused) {
  mt_conn A;
  mt_bytes b = {0};
  ws_server *s = mk(with_refeed);
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"outer\"}");
  mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"second\"}");
  cr_assert_eq(ws_conn_feed(A.c, b.p, b.len), WS_OK);
  cr_expect_eq(R.feed_rc, WS_ESTATE);
  cr_expect_eq(R.handled, 2, "outer and second only");
  cr_expect_not_null(A.c);
  mt_bytes_free(&b);
  mt_done(s, &A, NULL);
}

/* A pong queued while the host's send held a run of frames, then a later
 * pong: the later one went ahead (pongs answer pings in order). */
static int hook_fired;
static void ping_inside_send(mt_conn *t) {
  if (hook_fired++) return;
  mt_send_frame(t, MT_PING, 0, "1", 1, MT_WHOLE);
}

Test(regress, pongs_keep_order_after_a_ping_fed_inside_send) {
  mt_conn A;
  mt_frame f;
  ws_server *s = mk(NULL);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  ws_conn_send_text(A.c, "aaaa", 4);
  ws_conn_send_text(A.c, "bbbb", 4);
  A.would_block = 0;
  A.max_per_send = 1; /* the run's write is short */
  A.on_write = ping_inside_send;
  ws_conn_writable(A.c);
  A.on_write = NULL;
  A.would_block = 1;
  mt_send_frame(&A, MT_PING, 0, "2", 1, MT_WHOLE);
  A.would_block = 0;
  A.max_per_send = 0;
  mt_pump(&A);
  mt_expect_frame(&A, &f);
  cr_expect(f.opcode == MT_TEXT && mt_payload_is(&f, "aaaa"));
  mt_expect_frame(&A, &f);
  cr_expect(f.opcode == MT_TEXT && mt_payload_is(&f, "bbbb"));
  mt_expect_frame(&A, &f);
  cr_expect(f.opcode == MT_PONG && mt_payload_is(&f, "1"), "first pong");
  mt_expect_frame(&A, &f);
  cr_expect(f.opcode == MT_PONG && mt_payload_is(&f, "2"), "second pong");
  mt_done(s, &A, NULL);
}

/* Data and pongs keep their order through random partial writes, would
 * block, and pings fed and writable called from inside send. */
static unsigned rnd_state;
static int ping_seq, data_seq;
static unsigned rnd(void) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return (rnd_state >> 16) & 0x7fff;
}
static int send_ping_numbered(mt_conn *t, int whole) {
  char p[16];
  snprintf(p, sizeof p, "%d", ping_seq);
  if (mt_send_frame(t, MT_PING, 0, p, strlen(p), whole) != WS_OK) return -1;
  ping_seq++;
  return 0;
}
static void ping_and_writable_inside_send(mt_conn *t) {
  if (t->c && rnd() % 4 == 0) {
    ws_conn_writable(t->c); /* inside send: a no-op */
    send_ping_numbered(t, MT_WHOLE);
  }
}
static void big_queue_no_deadlines(ws_config *c) {
  c->max_queued = 1 << 24;
  c->idle_timeout_ms = c->ping_interval_ms = c->write_timeout_ms = 0;
}

static void random_session(unsigned seed) {
  mt_conn A;
  mt_frame f;
  int step, want_pong = 0, want_data = 0;
  ws_server *s = mk(big_queue_no_deadlines);
  rnd_state = seed;
  ping_seq = data_seq = 0;
  mt_connect(&A, s, "a", MT_WHOLE);
  A.on_write = ping_and_writable_inside_send;
  for (step = 0; step < 300 && A.c; step++) {
    unsigned r = rnd() % 10;
    A.max_per_send = rnd() % 3 ? 1 + rnd() % 40 : 0;
    A.would_block = rnd() % 3 == 0;
    if (r < 4) {
      send_ping_numbered(&A, (int)(rnd() % 2));
    } else if (r < 8) {
      char d[64];
      snprintf(d, sizeof d, "%d:%.*s", data_seq++, (int)(rnd() % 50),
               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
      cr_assert_eq(ws_conn_send_text(A.c, d, strlen(d)), WS_OK);
    } else {
      ws_conn_writable(A.c);
    }
  }
  A.would_block = 0;
  A.max_per_send = 0;
  A.on_write = NULL;
  cr_assert_not_null(A.c, "seed %u: closed", seed);
  mt_pump(&A);
  while (mt_next_frame(&A, &f)) {
    char text[80];
    int n;
    snprintf(text, sizeof text, "%.*s", (int)f.len, (const char *)f.payload);
    n = atoi(text); /* the number before ':' */
    if (f.opcode == MT_PONG)
      cr_assert_eq(n, want_pong++, "seed %u: pong out of order", seed);
    else if (f.opcode == MT_TEXT)
      cr_assert_eq(n, want_data++, "seed %u: data out of order", seed);
    else
      cr_assert_fail("seed %u: opcode %d", seed, f.opcode);
  }
  cr_assert_eq(want_pong, ping_seq, "seed %u: pongs missing", seed);
  cr_assert_eq(want_data, data_seq, "seed %u: data missing", seed);
  mt_done(s, &A, NULL);
}

Test(regress, output_order_under_random_writes) {
  unsigned seed;
  for (seed = 1; seed <= 100; seed++) random_session(seed);
}

/* on_log closing the connection it is told is a slow consumer: the
 * truncation then dropped that close's frame, and the peer got none. */
static void log_close(ws_server *s, int level, const char *msg, void *ud) {
  (void)level, (void)ud;
  if (!R.log_closed && strstr(msg, "send queue over")) {
    R.log_closed = 1;
    ws_conn_close(ws_server_find_device(s, "a"), 4100, "from log");
  }
}
static void with_log_close(ws_config *c) {
  c->on_log = log_close;
  c->max_queued = 4096;
}

Test(regress, on_log_close_of_a_slow_consumer_sends_its_frame) {
  static char big[3000];
  mt_conn A;
  mt_frame f;
  int closes = 0, last = 0;
  ws_server *s = mk(with_log_close);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_conn_send_binary(A.c, big, sizeof big), WS_OK);
  cr_assert_eq(ws_conn_send_binary(A.c, big, sizeof big), WS_EQUEUEFULL);
  A.would_block = 0;
  mt_pump(&A);
  while (mt_next_frame(&A, &f))
    if (f.opcode == MT_CLOSE) closes++, last = mt_close_code(&f);
  cr_expect_eq(closes, 1);
  cr_expect_eq(last, 4100);
  mt_done(s, &A, NULL);
}

/* on_shutdown ("no connection is left") ran inside a connection's on_close,
 * before that connection's transport close: on_close aborted the last
 * other connection, whose end found the live count at 0 (the first one
 * had left it already). Found by fuzz_api. */
static mt_conn *sd_conns[2];
static int sd_left = -1; /* transports still open when on_shutdown ran */
static int close_other(ws_conn *c, int code, const char *r, void *ud) {
  mt_conn *other = sd_conns[sd_conns[0]->c == c];
  (void)code, (void)r, (void)ud;
  if (other->c) ws_conn_abort(other->c);
  return 0;
}
static int count_left(ws_server *s, void *ud) {
  (void)s, (void)ud;
  sd_left = (sd_conns[0]->c != NULL) + (sd_conns[1]->c != NULL);
  return 0;
}
static void with_close_other(ws_config *c) {
  c->on_close = close_other;
  c->on_shutdown = count_left;
}

Test(regress, on_shutdown_waits_for_the_transport_close_of_every_conn) {
  mt_conn A, B;
  ws_server *s = mk(with_close_other);
  sd_conns[0] = &A;
  sd_conns[1] = &B;
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_connect(&B, s, "b", MT_WHOLE);
  cr_assert_eq(ws_server_shutdown(s, 1000), WS_OK);
  ws_conn_abort(A.c);
  cr_expect_null(A.c);
  cr_expect_null(B.c);
  cr_expect_eq(sd_left, 0, "on_shutdown ran with %d transports open",
               sd_left);
  mt_done(s, &A, &B);
}

/* ws_conn_send_error sent through ws_conn_send_json, whose outermost
 * leave flushed: the socket failed, the connection ended and was freed,
 * and then the error text was freed through c->s (a read of the freed
 * connection; with ws_server_free called from send, of the freed server
 * too). Found by fuzz_api. */
Test(regress, send_error_survives_its_connection_ending_in_the_flush) {
  mt_conn A;
  ws_server *s = mk(NULL);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.fail = 1;
  cr_expect_eq(ws_conn_send_error(A.c, "bad_room", "no such room"), WS_OK);
  cr_expect_null(A.c, "the failed send closed the connection");
  cr_expect_eq(R.code, WS_CLOSE_ABNORMAL);
  mt_done(s, &A, NULL);
}

/* ---- the upgrade ------------------------------------------------------ */

/* A feed from on_upgrade during ws_conn_upgrade ran the upgrade twice:
 * two on_open, conns_pending wrapped below zero. */
static int refeed_in_upgrade(ws_conn *c, const ws_request *req,
                             const char **reason, void *ud) {
  (void)req, (void)reason, (void)ud;
  if (R.reqbuf) R.feed_rc = ws_conn_feed(c, R.reqbuf, R.reqlen);
  R.reqbuf = NULL;
  return 0;
}
static void with_refeed_in_upgrade(ws_config *c) {
  c->on_upgrade = refeed_in_upgrade;
  c->on_open = count_open;
}

Test(regress, feed_inside_a_host_parsed_upgrade_is_refused) {
  mt_conn A;
  char req[512];
  ws_stats st;
  ws_server *s = mk(with_refeed_in_upgrade);
  R.reqlen = mt_request(req, sizeof req, "a", NULL);
  R.reqbuf = req;
  mt_open(&A, s);
  cr_assert_eq(ws_conn_upgrade(A.c, "GET", "/ws", "device_id=a",
                               mt_upgrade_headers, 5), WS_OK);
  ws_server_stats(s, &st, sizeof st);
  cr_expect_eq(R.feed_rc, WS_ESTATE);
  cr_expect_eq(R.opens, 1);
  cr_expect_eq(st.conns_open, 1);
  cr_expect_eq(st.conns_pending, 0);
  mt_done(s, &A, NULL);
}

/* on_upgrade's reason taken from its req (keep_headers = 0): the request
 * was freed before the refusal was written. */
static int reason_from_req(ws_conn *c, const ws_request *req,
                           const char **reason, void *ud) {
  (void)c, (void)ud;
  *reason = ws_request_header(req, "X-Why");
  return 403;
}
static void with_reason_from_req(ws_config *c) {
  c->on_upgrade = reason_from_req;
  c->keep_headers = 0;
}

Test(regress, refusal_reason_may_come_from_the_request) {
  mt_conn A;
  char req[512], head[512];
  const uint8_t *body;
  size_t n, bl;
  ws_server *s = mk(with_reason_from_req);
  n = mt_request(req, sizeof req, "a", "X-Why: banned device\r\n");
  mt_open(&A, s);
  mt_feed(&A, req, n, MT_WHOLE);
  cr_assert_eq(mt_http_response(&A, head, sizeof head, &body, &bl), 403);
  cr_expect(bl == 14 && memcmp(body, "banned device\n", 14) == 0);
  mt_done(s, &A, NULL);
}


/* The 101 was built in a 512-byte buffer: a long subprotocol got no answer
 * at all, after the older connection of its device id had been closed. */
static const char *pick_offered(const ws_request *r, const char *offered,
                                void *ud) {
  (void)r, (void)ud;
  return offered; /* one protocol offered: take it */
}
static void with_pick(ws_config *c) { c->select_subprotocol = pick_offered; }

Test(regress, long_subprotocol_gets_its_101) {
  mt_conn A, B;
  char req[2048], hdr[600], tok[451];
  size_t n;
  ws_server *s = mk(with_pick);
  mt_connect(&A, s, "phone", MT_WHOLE);
  memset(tok, 'p', 450);
  tok[450] = '\0';
  snprintf(hdr, sizeof hdr, "Sec-WebSocket-Protocol: %s\r\n", tok);
  n = mt_request(req, sizeof req, "phone", hdr);
  mt_open(&B, s);
  mt_feed(&B, req, n, MT_WHOLE);
  cr_expect_eq(mt_http_response(&B, NULL, 0, NULL, NULL), 101);
  cr_expect_str_eq(ws_conn_subprotocol(B.c), tok);
  cr_expect(ws_server_find_device(s, "phone") == B.c);
  mt_expect_close(&A, 4000);
  mt_done(s, &A, &B);
}

/* keep_headers = 0 rebuilt the request after on_upgrade and freed the one
 * whose device id and path the host had been given there. */
static int save_in_upgrade(ws_conn *c, const ws_request *req,
                           const char **reason, void *ud) {
  (void)reason, (void)ud;
  cr_expect_not_null(ws_request_header(req, "Host"), "req has the headers");
  R.saved_id = ws_conn_device_id(c);
  R.saved_path = ws_request_path(ws_conn_request(c));
  return 0;
}
static void without_headers(ws_config *c) {
  c->keep_headers = 0;
  c->on_upgrade = save_in_upgrade;
}

Test(regress, keep_headers_0_pointers_from_on_upgrade_stay_valid) {
  mt_conn A;
  ws_server *s = mk(without_headers);
  mt_connect(&A, s, "dev1", MT_WHOLE);
  cr_assert_not_null(A.c);
  cr_expect(ws_conn_device_id(A.c) == R.saved_id);
  cr_expect_str_eq(R.saved_id, "dev1"); /* ASan: use after free before */
  cr_expect_str_eq(R.saved_path, "/ws");
  cr_expect_null(ws_request_header(ws_conn_request(A.c), "Host"));
  mt_done(s, &A, NULL);
}

/* An on_http that does not answer made every plain request on the
 * WebSocket path a 404, where without on_http it is a 426. */
static int http_ignores(ws_conn *c, const ws_request *req, void *ud) {
  (void)c, (void)req, (void)ud;
  return 0;
}
static void with_http_ignores(ws_config *c) { c->on_http = http_ignores; }

Test(regress, unanswered_on_http_falls_back_to_the_defaults) {
  mt_conn A, B;
  const char *on_path = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
  const char *elsewhere = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  ws_server *s = mk(with_http_ignores);
  mt_open(&A, s);
  mt_feed(&A, on_path, strlen(on_path), MT_WHOLE);
  cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 426);
  mt_open(&B, s);
  mt_feed(&B, elsewhere, strlen(elsewhere), MT_WHOLE);
  cr_expect_eq(mt_http_response(&B, NULL, 0, NULL, NULL), 404);
  mt_done(s, &A, &B);
}

/* RFC 9110 15.5.22: a 426 MUST carry Upgrade. */
Test(regress, status_426_names_the_upgrade) {
  mt_conn A;
  char head[1024];
  const char *req = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
  ws_server *s = mk(NULL);
  mt_open(&A, s);
  mt_feed(&A, req, strlen(req), MT_WHOLE);
  cr_assert_eq(mt_http_response(&A, head, sizeof head, NULL, NULL), 426);
  cr_expect_not_null(strstr(head, "\r\nUpgrade: websocket\r\n"), "%s", head);
  cr_expect_not_null(strstr(head, "\r\nSec-WebSocket-Version: 13\r\n"));
  mt_done(s, &A, NULL);
}

/* ws_conn_upgrade skipped the parser's limits (header count, head size). */
static int upgrade_with(ws_server *s, mt_conn *A, size_t count,
                        size_t value_len) {
  static char names[300][32], value[9000];
  ws_header h[300];
  size_t i;
  memset(value, 'v', sizeof value);
  memcpy(h, mt_upgrade_headers, sizeof mt_upgrade_headers);
  for (i = 5; i < count; i++) {
    snprintf(names[i], sizeof names[i], "X-H%zu", i);
    h[i] = (ws_header){names[i], strlen(names[i]), value, value_len};
  }
  mt_open(A, s);
  cr_assert_eq(ws_conn_upgrade(A->c, "GET", "/ws", "device_id=a", h, count),
               WS_OK);
  mt_pump(A);
  return mt_http_response(A, NULL, 0, NULL, NULL);
}

/* The limit for a host-parsed head counted CRLF; fed heads may use bare
 * LF, so the same request passed when fed and got 431 when host-parsed. */
static void small_handshake(ws_config *c) { c->max_handshake = 200; }

Test(regress, host_parsed_limit_counts_the_shortest_head) {
  mt_conn A, B;
  char req[300], val[64];
  size_t n = 0, vl;
  ws_header h[6];
  ws_server *s = mk(small_handshake);
  memset(val, 'v', sizeof val);
  for (vl = 1; vl < sizeof val && n != 200; vl++)
    n = (size_t)snprintf(req, sizeof req,
                         "GET /ws?device_id=a HTTP/1.1\nHost:x\n"
                         "Upgrade:websocket\nConnection:Upgrade\n"
                         "Sec-WebSocket-Key:" MT_SAMPLE_KEY "\n"
                         "Sec-WebSocket-Version:13\nX:%.*s\n\n",
                         (int)vl, val);
  vl--;
  cr_assert_eq(n, 200);
  mt_open(&A, s);
  mt_feed(&A, req, n, MT_WHOLE);
  cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 101);
  memcpy(h, mt_upgrade_headers, sizeof mt_upgrade_headers);
  h[5] = (ws_header){"X", 1, val, vl};
  mt_open(&B, s);
  ws_conn_upgrade(B.c, "GET", "/ws", "device_id=b", h, 6);
  mt_pump(&B);
  cr_expect_eq(mt_http_response(&B, NULL, 0, NULL, NULL), 101);
  mt_done(s, &A, &B);
}

Test(regress, host_parsed_request_meets_the_parser_limits) {
  mt_conn A, B, C;
  ws_server *s = mk(NULL);
  cr_expect_eq(upgrade_with(s, &A, 65, 1), 431, "65 headers, max 64");
  cr_expect_eq(upgrade_with(s, &B, 6, 8500), 431, "head over 8 KiB");
  cr_expect_eq(upgrade_with(s, &C, 64, 1), 101, "64 headers");
  mt_done(s, &A, &B);
  mt_free(&C);
}

/* ---- messages --------------------------------------------------------- */

static int keep_msg(ws_conn *c, const ws_msg *m, void *ud) {
  size_t n;
  const char *d = ws_msg_data_json(m, &n);
  (void)c, (void)ud;
  R.handled++;
  snprintf(R.action, sizeof R.action, "%s", m->action);
  snprintf(R.data, sizeof R.data, "%.*s", (int)n, d ? d : "");
  return 0;
}
static void with_keep(ws_config *c) { c->handler = keep_msg; }

/* Each escape was counted as 4 bytes against the 255-byte limit. */
Test(regress, escaped_action_up_to_the_limit) {
  mt_conn A;
  char msg[600], name[300];
  ws_server *s = mk(with_keep);
  mt_connect(&A, s, "a", MT_WHOLE);
  memset(name, 'x', 254);
  name[254] = '\0';
  snprintf(msg, sizeof msg, "{\"action\":\"%s\\u0041\"}", name);
  mt_send_text(&A, msg, MT_WHOLE); /* 255 bytes decoded */
  cr_expect_eq(R.handled, 1, "refused as bad_action");
  cr_expect_eq(strlen(R.action), 255);
  snprintf(msg, sizeof msg, "{\"action\":\"%sx\\u0041\"}", name);
  mt_send_text(&A, msg, MT_WHOLE); /* 256: bad_action */
  cr_expect_eq(R.handled, 1);
  mt_done(s, &A, NULL);
}

/* An escaped key sent the message through cJSON, and data_json came back
 * re-printed (12345678901234567890 became 1.2345678901234567e+19). */
Test(regress, data_json_is_raw_with_escaped_keys) {
  mt_conn A;
  ws_server *s = mk(with_keep);
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_send_text(&A,
               "{\"\\u0061ction\":\"x\",\"d\\u0061ta\":{\"id\":"
               "12345678901234567890,\"v\":1.50},\"caf\\u00e9\":1}",
               MT_WHOLE);
  cr_assert_eq(R.handled, 1);
  cr_expect_str_eq(R.action, "x");
  cr_expect_str_eq(R.data, "{\"id\":12345678901234567890,\"v\":1.50}");
  /* A key with a NUL escape is not "action". */
  mt_send_text(&A, "{\"action\\u0000\":\"y\"}", MT_WHOLE);
  cr_expect_eq(R.handled, 1);
  mt_done(s, &A, NULL);
}

/* The doc said data NULL means no "data" member; the _json variants
 * answered WS_EINVAL. */
Test(regress, json_variants_take_no_data) {
  mt_conn A;
  mt_frame f;
  ws_server *s = mk(NULL);
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_expect_eq(ws_conn_send_json(A.c, "x", NULL, 0), WS_OK);
  cr_expect_eq(ws_conn_send_json(A.c, "x", NULL, 1), WS_EINVAL);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "y", NULL, 0), WS_OK);
  ws_server_tick(s, 1);
  mt_expect_frame(&A, &f);
  cr_expect(mt_payload_is(&f, "{\"action\":\"x\"}"));
  mt_expect_frame(&A, &f);
  cr_expect(mt_payload_is(&f, "{\"action\":\"y\"}"));
  mt_done(s, &A, NULL);
}

/* ---- posting ---------------------------------------------------------- */

/* ws_post from on_close during ws_server_free answered WS_OK and the
 * message was dropped. */
static int post_on_close(ws_conn *c, int code, const char *r, void *ud) {
  (void)code, (void)r, (void)ud;
  R.post_rc = ws_post(ws_conn_server(c), WS_POST_ALL, NULL, "bye", "1", 1);
  return 0;
}
static void with_post_on_close(ws_config *c) { c->on_close = post_on_close; }

Test(regress, post_while_destroying_is_refused) {
  mt_conn A;
  ws_server *s = mk(with_post_on_close);
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_done(s, &A, NULL);
  cr_expect_eq(R.post_rc, WS_ESHUTDOWN, "got %s", ws_err_name(R.post_rc));
}

static int count_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  R.opens++;
  return 0;
}

/* ws_server_free during a shutdown's drain fired on_shutdown from inside
 * the destroy. */
static void with_count_shutdown(ws_config *c) { c->on_shutdown = count_shutdown; }

Test(regress, free_during_a_drain_fires_no_on_shutdown) {
  mt_conn A;
  ws_server *s = mk(with_count_shutdown);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_server_shutdown(s, 60000), WS_OK);
  mt_done(s, &A, NULL);
  cr_expect_eq(R.opens, 0, "on_shutdown fired");
}

/* A callback run by the shutdown's own post drain (here on_close, after
 * the delivery failed) shut down again: the flag was set only after the
 * drain, so the nested call was accepted and on_shutdown fired twice. */
static int shutdown_in_on_close(ws_conn *c, int code, const char *reason,
                                void *ud) {
  r_on_close(c, code, reason, ud);
  R.post_rc = ws_server_shutdown(ws_conn_server(c), 1000);
  return 0;
}
static void with_shutdown_in_on_close(ws_config *c) {
  c->on_close = shutdown_in_on_close;
  c->on_shutdown = count_shutdown;
}

Test(regress, shutdown_nested_in_its_own_drain_is_refused) {
  mt_conn A;
  ws_server *s = mk(with_shutdown_in_on_close);
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "hello", NULL, 0), WS_OK);
  A.fail = 1; /* the post's delivery fails: on_close runs inside the drain */
  cr_assert_eq(ws_server_shutdown(s, 1000), WS_OK);
  cr_expect_eq(R.on_close, 1);
  cr_expect_eq(R.post_rc, WS_ESHUTDOWN, "got %s", ws_err_name(R.post_rc));
  cr_expect_eq(R.opens, 1, "on_shutdown fired %d times", R.opens);
  mt_done(s, &A, NULL);
}

/* ws_server_shutdown after ws_server_free (both from a handler) started a
 * shutdown of a server being destroyed and fired on_shutdown. */
static int free_then_shutdown(ws_conn *c, const ws_msg *m, void *ud) {
  ws_server *s = ws_conn_server(c);
  (void)m, (void)ud;
  ws_server_free(s);
  R.post_rc = ws_server_shutdown(s, 1000);
  return 0;
}
static void with_free_then_shutdown(ws_config *c) {
  c->handler = free_then_shutdown;
  c->on_shutdown = count_shutdown;
}

Test(regress, shutdown_while_destroying_is_refused) {
  mt_conn A;
  ws_server *s = mk(with_free_then_shutdown);
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_send_text(&A, "{\"action\":\"x\"}", MT_WHOLE); /* frees s */
  cr_expect_eq(R.post_rc, WS_ESHUTDOWN, "got %s", ws_err_name(R.post_rc));
  cr_expect_eq(R.opens, 0, "on_shutdown fired");
  cr_expect_eq(test_alloc_live(), 0);
  mt_free(&A);
}

/* The host's send closed its own connection (or freed the server) and then
 * read the data it was given: the queue's last reference to that frame
 * was dropped by the close, under the host's feet. */
static ssize_t (*mt_send)(ws_conn *, void *, const void *, size_t);
static int end_in_send; /* 1: abort the connection, 2: free the server */

static ssize_t ending_send(ws_conn *c, void *t, const void *data, size_t len) {
  if (end_in_send == 0) return mt_send(c, t, data, len);
  if (end_in_send == 1) ws_conn_abort(c);
  else ws_server_free(ws_conn_server(c));
  end_in_send = 0;
  R.feed_rc = (int)len;
  memcpy(R.data, data, len < sizeof R.data ? len : sizeof R.data);
  return -1;
}
static void with_ending_send(ws_config *c) {
  mt_send = c->send;
  c->send = ending_send;
}

static void expect_send_data_valid_until_return(int how) {
  static const char frame[] = "\x81\x0bhello world";
  mt_conn A;
  ws_server *s = mk(with_ending_send);
  mt_connect(&A, s, "a", MT_WHOLE);
  end_in_send = how;
  cr_assert_eq(ws_conn_send_text(A.c, "hello world", 11), WS_OK);
  cr_expect_eq(R.feed_rc, 13);
  cr_expect_eq(memcmp(R.data, frame, 13), 0, "send's data changed under it: %02x %02x",
               (unsigned char)R.data[0], (unsigned char)R.data[1]);
  cr_expect_null(A.c);
  if (how == 1) ws_server_free(s);
  cr_expect_eq(test_alloc_live(), 0, "%ld allocations live", test_alloc_live());
  mt_free(&A);
}

Test(regress, send_data_stays_valid_when_send_aborts) {
  expect_send_data_valid_until_return(1);
}

Test(regress, send_data_stays_valid_when_send_frees_the_server) {
  expect_send_data_valid_until_return(2);
}

/* ---- arguments a user gets wrong (the fifth review) ----------------- */

/* A send before the 101 said "closed" (WS_ECLOSED) of a connection that is
 * neither: it is too early, WS_ESTATE. */
static int send_in_on_upgrade(ws_conn *c, const ws_request *req,
                              const char **reason, void *ud) {
  (void)req, (void)reason, (void)ud;
  R.post_rc = ws_conn_send_json(c, "early", NULL, 0);
  return 0;
}
static void with_send_in_on_upgrade(ws_config *c) {
  c->on_upgrade = send_in_on_upgrade;
}

Test(regress, send_before_the_101_is_estate) {
  mt_conn A;
  ws_server *s = mk(with_send_in_on_upgrade);
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_expect_eq(R.post_rc, WS_ESTATE, "got %s", ws_err_name(R.post_rc));
  cr_assert_not_null(A.c);
  mt_expect_nothing(&A); /* nothing after the 101 */
  cr_expect_eq(ws_conn_close(A.c, 1000, NULL), WS_OK);
  cr_expect_eq(ws_conn_send_json(A.c, "late", NULL, 0), WS_ECLOSED);
  mt_done(s, &A, NULL);
}

static int nop_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)c, (void)m, (void)ud;
  return 0;
}

/* An action no peer could send (over WS_MAX_ACTION bytes, or not UTF-8)
 * was registered, or sent, as if it were fine. */
Test(regress, actions_past_the_limit_are_einval) {
  char act[WS_MAX_ACTION + 2];
  ws_allocator al = test_alloc();
  ws_mux *m = ws_mux_new(&al);
  ws_server *s = mk(NULL);
  mt_conn A;
  ws_prepared *p = NULL;
  memset(act, 'a', sizeof act - 1);
  act[sizeof act - 1] = '\0'; /* 256 bytes */
  cr_expect_eq(ws_mux_handle(m, act, nop_handler, NULL), WS_EINVAL);
  cr_expect_eq(ws_mux_handle(m, "\xff", nop_handler, NULL), WS_EINVAL);
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_expect_eq(ws_conn_send_json(A.c, act, NULL, 0), WS_EINVAL);
  cr_expect_eq(ws_broadcast_json(s, act, NULL, 0, NULL, 0), WS_EINVAL);
  cr_expect_eq(ws_prepare_json(s, act, NULL, 0, &p), WS_EINVAL);
  mt_expect_nothing(&A);
  act[WS_MAX_ACTION] = '\0'; /* 255 bytes: the limit itself */
  cr_expect_eq(ws_mux_handle(m, act, nop_handler, NULL), WS_OK);
  cr_expect_eq(ws_conn_send_json(A.c, act, NULL, 0), WS_OK);
  ws_mux_free(m);
  mt_done(s, &A, NULL);
}

/* A config that refuses every client (a path without '/', an empty
 * device_param) was accepted; now refused, with a log line naming it. */
static void *plain_malloc(size_t n, void *ud) { (void)ud; return malloc(n); }
static void plain_free(void *p, void *ud) { (void)ud; free(p); }

static void log_line(ws_server *s, int level, const char *msg, void *ud) {
  (void)ud;
  R.config_logged = s == NULL && level == WS_LOG_ERROR;
  snprintf(R.reason, sizeof R.reason, "%s", msg);
}

/* A valid config whose refusals log through log_line. */
static void logged_config(ws_config *cfg) {
  memset(&R, 0, sizeof R);
  ws_config_init(cfg);
  mt_config(cfg, 0);
  cfg->on_log = log_line;
}

Test(regress, configs_that_refuse_everyone_are_einval) {
  ws_config cfg;
  ws_server *s = NULL;
  logged_config(&cfg);
  cfg.path = "ws";
  cr_expect_eq(ws_server_new(&cfg, &s), WS_EINVAL);
  cr_expect(R.config_logged, "no config line with s NULL");
  cr_expect_str_eq(R.reason, "ws_server_new: path does not start with '/'");
  cfg.path = "";
  cr_expect_eq(ws_server_new(&cfg, &s), WS_EINVAL);
  cfg.path = "/ws";
  cfg.device_param = "";
  cr_expect_eq(ws_server_new(&cfg, &s), WS_EINVAL);
  cr_expect_str_eq(R.reason, "ws_server_new: device_required without device_param");
  cfg.device_required = 0;
  cr_expect_eq(ws_server_new(&cfg, &s), WS_OK); /* no id wanted: fine */
  ws_server_free(s);
}

/* An allocator with only some of its functions was refused without the
 * log line every other refused config gets. */
Test(regress, partial_allocator_is_refused_with_a_log_line) {
  ws_config cfg;
  ws_server *s = NULL;
  logged_config(&cfg);
  cfg.alloc.malloc = plain_malloc;
  cr_expect_eq(ws_server_new(&cfg, &s), WS_EINVAL);
  cr_expect(R.config_logged, "no config line");
  cr_expect_str_eq(R.reason,
                   "ws_server_new: alloc needs malloc, realloc and free, or none");
}

/* A config that never went through ws_config_init (memset, then fields
 * set) was refused without the log line every other refusal gets. */
Test(regress, config_without_config_init_is_refused_with_a_log_line) {
  ws_config cfg;
  ws_server *s = NULL;
  logged_config(&cfg);
  cfg.struct_size_ = 0; /* as memset leaves it */
  cr_expect_eq(ws_server_new(&cfg, &s), WS_EINVAL);
  cr_expect(R.config_logged, "no config line");
  cr_expect_str_eq(R.reason, "ws_server_new: cfg not made by ws_config_init");
  cr_expect_null(s);
}

/* ... but an uninitialised config (stack garbage: struct_size_ and on_log
 * alike) must not be logged: calling its on_log crashed. */
Test(regress, uninitialised_config_is_refused_without_reading_it) {
  ws_config cfg;
  ws_server *s = NULL;
  memset(&cfg, 0xA5, sizeof cfg);
  cr_expect_eq(ws_server_new(&cfg, &s), WS_EINVAL);
  cr_expect_null(s);
}

/* ws_conn_leave took any name, so "" and a 300-byte name said WS_ENOENT
 * where the header promises WS_EINVAL, as ws_conn_join answers. */
Test(regress, leave_checks_the_group_name_as_join_does) {
  char longname[301];
  mt_conn A;
  ws_server *s = mk(NULL);
  mt_connect(&A, s, "a", MT_WHOLE);
  memset(longname, 'g', 300);
  longname[300] = '\0';
  cr_expect_eq(ws_conn_leave(A.c, ""), WS_EINVAL);
  cr_expect_eq(ws_conn_leave(A.c, longname), WS_EINVAL);
  cr_expect_eq(ws_conn_join(A.c, longname), WS_EINVAL);
  cr_expect_eq(ws_conn_leave(A.c, "never-joined"), WS_ENOENT);
  mt_done(s, &A, NULL);
}

/* ws_publish / ws_push_user / ws_post to a name no group or user can have
 * returned 0 (an unknown target) where ws_conn_join says WS_EINVAL. */
Test(regress, fan_out_to_an_impossible_name_is_einval) {
  char name[257];
  ws_server *s = mk(NULL);
  memset(name, 'g', 256);
  name[256] = '\0';
  cr_expect_eq(ws_publish(s, "", "x", NULL), WS_EINVAL);
  cr_expect_eq(ws_publish_json(s, name, "x", NULL, 0), WS_EINVAL);
  cr_expect_eq(ws_push_user(s, "", "x", NULL), WS_EINVAL);
  cr_expect_eq(ws_post(s, WS_POST_GROUP, "", "x", NULL, 0), WS_EINVAL);
  cr_expect_eq(ws_post(s, WS_POST_USER, name, "x", NULL, 0), WS_EINVAL);
  cr_expect_eq(ws_post(s, WS_POST_DEVICE, NULL, "x", NULL, 0), WS_EINVAL);
  name[255] = '\0';
  cr_expect_eq(ws_publish_json(s, name, "x", NULL, 0), 0); /* unknown */
  mt_done(s, NULL, NULL);
}

/* ---- the post queue (the fifth review) -------------------------------- */

/* A JSON string of n bytes in all ("xxx...", quotes included). */
static const char *json_text(size_t n) {
  static char buf[4096];
  memset(buf, 'x', n);
  buf[0] = buf[n - 1] = '"';
  buf[n] = '\0';
  return buf;
}

/* Device "a" connects; 2,000 messages of 1 KB (2 MB, past max_queued) are
 * posted to it before one tick. */
#define BACKLOG 2000
static void post_backlog(ws_server *s, mt_conn *A) {
  int i;
  const char *d = json_text(1000);
  mt_connect(A, s, "a", MT_WHOLE);
  for (i = 0; i < BACKLOG; i++)
    cr_assert_eq(ws_post(s, WS_POST_DEVICE, "a", "m", d, 1000), WS_OK);
  ws_server_tick(s, 1);
}

/* ... and the client, still open, has all of it, as text frames. */
static void expect_backlog(mt_conn *A) {
  mt_frame f;
  int n = 0;
  cr_assert_not_null(A->c, "closed: %d %s", R.code, R.reason);
  while (mt_next_frame(A, &f)) {
    cr_assert_eq(f.opcode, 1);
    n++;
  }
  cr_expect_eq(n, BACKLOG);
}

/* 2 MB posted before one tick to a client that takes everything: the
 * whole backlog was queued in one library frame, past max_queued (1 MiB),
 * and the client was closed as a slow consumer (4001) it was not. */
Test(regress, post_backlog_reaches_a_client_that_reads) {
  mt_conn A;
  ws_server *s = mk(NULL);
  post_backlog(s, &A);
  expect_backlog(&A);
  mt_done(s, &A, NULL);
}

/* The same backlog to a client that keeps reading, but whose socket was
 * full for one moment during the tick (one send answered 0, every later
 * one would take all): after that short write the library sent nothing
 * more until ws_conn_writable, which the host calls only after the tick
 * (its next poll), so the rest of the backlog was queued in one go, past
 * max_queued, and the reading client was closed as a slow consumer. */
static ssize_t (*g_blip_send)(ws_conn *, void *, const void *, size_t);
static int g_blip_calls, g_blip_at;
static ssize_t blip_send(ws_conn *c, void *t, const void *d, size_t n) {
  if (++g_blip_calls == g_blip_at) return 0; /* full for a moment */
  return g_blip_send(c, t, d, n);
}
static void blip_once(ws_config *c) {
  g_blip_send = c->send;
  g_blip_calls = 0;
  g_blip_at = 50;
  c->send = blip_send;
}

Test(regress, post_backlog_reaches_a_client_whose_socket_was_full_once) {
  mt_conn A;
  ws_stats st;
  ws_server *s = mk(blip_once);
  post_backlog(s, &A);
  ws_server_stats(s, &st, sizeof st);
  cr_assert_eq(st.drops_queue_full, 0, "a reading client's backlog hit "
               "max_queued: %llu drop(s)",
               (unsigned long long)st.drops_queue_full);
  if (A.c) mt_pump(&A); /* the host's writable events, after the tick */
  expect_backlog(&A);
  mt_done(s, &A, NULL);
}

/* Producers faster than the loop grew the post queue without bound. */
static void small_post_queue(ws_config *c) { c->max_posted = 4096; }

Test(regress, post_queue_is_bounded) {
  ws_server *s = mk(small_post_queue);
  const char *d = json_text(1900);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1900), WS_OK);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1900), WS_OK);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1900), WS_ELIMIT);
  ws_server_tick(s, 1); /* delivered (to nobody): room again */
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1900), WS_OK);
  mt_done(s, NULL, NULL);
}

/* A producer that retries on WS_ELIMIT had each try build its frame (a
 * JSON check of the whole data, two allocations and their frees) only to
 * be told to retry: a try on a full queue, or after shutdown, now
 * allocates nothing. */
Test(regress, a_post_refused_for_room_allocates_nothing) {
  ws_server *s = mk(small_post_queue);
  const char *d = json_text(1900);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1900), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1900), WS_OK);
  test_alloc_reset(0);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1900), WS_ELIMIT);
  cr_expect_eq(ws_post(s, WS_POST_GROUP, "g", "m", d, 1900), WS_ELIMIT);
  /* Not read: its missing closing quote is told once there is room. */
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, 1899), WS_ELIMIT);
  cr_expect_eq(test_alloc_count(), 0);
  /* Room for a small one still: the early check is a lower bound only. */
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_OK);
  cr_expect_eq(ws_server_shutdown(s, 10), 0);
  test_alloc_reset(0);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_ESHUTDOWN);
  cr_expect_eq(test_alloc_count(), 0);
  mt_done(s, NULL, NULL);
}

/* The early refusal's review: a post that can never fit max_posted (its
 * cost just over it, the envelope included) was told WS_ELIMIT ("retry
 * later") whenever anything else waited, and a bad action WS_ELIMIT on a
 * full queue, where both are the caller's mistake whatever is queued. */
Test(regress, a_post_that_never_fits_is_etoobig_while_others_wait) {
  ws_server *s = mk(small_post_queue); /* max_posted 4096 */
  size_t len;
  int rc;
  for (len = 2; len < 4096; len++) { /* the shortest that never fits */
    if ((rc = ws_post(s, WS_POST_ALL, NULL, "m", json_text(len), len)) ==
        WS_ETOOBIG)
      break;
    cr_assert_eq(rc, WS_OK);
    ws_server_tick(s, 1); /* delivered: the queue is empty again */
  }
  cr_assert_lt(len, 4096);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", "1", 1), WS_OK);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", json_text(len), len),
               WS_ETOOBIG, "a small post waiting");
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", json_text(len - 1),
                       len - 1), WS_ELIMIT, "one byte less fits, later");
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "\xff", "1", 1), WS_EINVAL);
  while (ws_post(s, WS_POST_ALL, NULL, "m", "1", 1) == WS_OK) {
  }
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "\xff", "1", 1), WS_EINVAL,
               "a full queue");
  mt_done(s, NULL, NULL);
}

/* A post whose data alone is past max_posted never fits: WS_ETOOBIG
 * "whatever is waiting", and its data_json is not read (invalid JSON is
 * told only once there is room, which there never is). It was framed
 * first: WS_EJSON for invalid text, and a JSON check and an allocation per
 * try. */
Test(regress, a_post_past_max_posted_is_etoobig_before_its_json_is_read) {
  ws_server *s = mk(small_post_queue); /* max_posted 4096 */
  static char bad[5000], good[5000];
  memset(bad, '{', sizeof bad); /* not JSON */
  memset(good, 'x', sizeof good);
  good[0] = good[4095] = '"'; /* a 4096-byte JSON string */
  test_alloc_reset(0);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", bad, 4096), WS_ETOOBIG);
  cr_expect_eq(ws_post(s, WS_POST_GROUP, "g", "m", bad, 4500), WS_ETOOBIG);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", good, 4096), WS_ETOOBIG);
  cr_expect_eq(test_alloc_count(), 0, "%ld allocations for a post that "
               "could never fit", test_alloc_count());
  cr_expect_eq(ws_server_shutdown(s, 0), WS_OK);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", bad, 4096), WS_ETOOBIG,
               "whatever is waiting, shutdown included");
  mt_done(s, NULL, NULL);
}

/* The early refusal guessed the frame's size from an upper bound on its
 * envelope (35 bytes and 6 per action byte): a post within that margin of
 * max_posted was framed before the queue was asked, so on a full queue,
 * or after shutdown, each try read its JSON and allocated, and invalid
 * text was told WS_EJSON although there was no room. */
Test(regress, a_post_near_max_posted_is_refused_for_room_unread) {
  ws_server *s = mk(small_post_queue); /* max_posted 4096 */
  static char bad[4096];
  size_t len;
  for (len = 4095; len > 2; len--) /* the longest that fits an empty queue */
    if (ws_post(s, WS_POST_ALL, NULL, "m", json_text(len), len) == WS_OK)
      break;
  cr_assert_gt(len, 2);
  memset(bad, '{', len); /* not JSON */
  test_alloc_reset(0);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", json_text(len), len),
               WS_ELIMIT);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", bad, len), WS_ELIMIT);
  cr_expect_eq(test_alloc_count(), 0, "%ld allocations on a full queue",
               test_alloc_count());
  ws_server_tick(s, 1); /* delivered: room again */
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", bad, len), WS_EJSON);
  cr_expect_eq(ws_server_shutdown(s, 0), WS_OK);
  test_alloc_reset(0);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", bad, len), WS_ESHUTDOWN);
  cr_expect_eq(test_alloc_count(), 0, "%ld allocations after shutdown",
               test_alloc_count());
  mt_done(s, NULL, NULL);
}

/* A delivery runs on_log (a slow consumer); the host posts and ticks from
 * there, or shuts down. The drain had taken the whole list: the nested
 * tick delivered the newer post first, and a shutdown lost the older one. */
static ws_server *g_srv;
static int g_reenter; /* 1: post M3 and tick; 2: shut down */

static void reenter_on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)level, (void)ud;
  if (!strstr(msg, "send queue over") || R.opens++) return;
  if (g_reenter == 1) {
    R.post_rc = ws_post(g_srv, WS_POST_DEVICE, "b", "m", "\"M3\"", 4);
    ws_server_tick(g_srv, 3);
  } else {
    R.post_rc = ws_server_shutdown(g_srv, 1000);
  }
}
static void with_reenter(ws_config *c) {
  c->max_queued = 4096;
  c->on_log = reenter_on_log;
}

static void expect_posts_in_order_when_a_delivery_reenters(int how) {
  mt_conn A, B;
  int i;
  ws_server *s = g_srv = mk(with_reenter);
  g_reenter = how;
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_connect(&B, s, "b", MT_WHOLE);
  A.would_block = 1; /* a fills its queue: the third post closes it */
  for (i = 0; i < 3; i++)
    cr_assert_eq(ws_post(s, WS_POST_DEVICE, "a", "m", json_text(2000), 2000), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_DEVICE, "b", "m", "\"M2\"", 4), WS_OK);
  ws_server_tick(s, 2);
  cr_assert_eq(R.opens, 1, "slow consumer log lines: %d", R.opens);
  cr_expect_eq(R.post_rc, WS_OK, "got %s", ws_err_name(R.post_rc));
  mt_expect_text(&B, "{\"action\":\"m\",\"data\":\"M2\"}");
  if (how == 1) { /* posted during the tick: due at the next one */
    mt_expect_nothing(&B);
    ws_server_tick(s, 4);
    mt_expect_text(&B, "{\"action\":\"m\",\"data\":\"M3\"}");
  } else {
    mt_expect_close(&B, WS_CLOSE_GOING_AWAY);
  }
  mt_done(s, &A, &B);
}

Test(regress, nested_tick_keeps_the_post_order) {
  expect_posts_in_order_when_a_delivery_reenters(1);
}

Test(regress, shutdown_inside_a_delivery_keeps_earlier_posts) {
  expect_posts_in_order_when_a_delivery_reenters(2);
}

/* A tick delivers what was posted when it began; a post made during it
 * waits for the next tick, and the tick says that one is due now. */
static void post_on_write(mt_conn *t) {
  if (R.handled++ == 0)
    R.post_rc = ws_post(t->s, WS_POST_DEVICE, "a", "m", "\"second\"", 8);
}

Test(regress, tick_is_due_again_while_posts_wait) {
  mt_conn A;
  ws_server *s = mk(NULL);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.on_write = post_on_write;
  cr_assert_eq(ws_post(s, WS_POST_DEVICE, "a", "m", "\"first\"", 7), WS_OK);
  cr_expect_eq(ws_server_tick(s, 1), 0, "a post waits: due now");
  cr_expect_eq(R.post_rc, WS_OK);
  mt_expect_text(&A, "{\"action\":\"m\",\"data\":\"first\"}");
  mt_expect_nothing(&A);
  cr_expect_neq(ws_server_tick(s, 2), 0);
  mt_expect_text(&A, "{\"action\":\"m\",\"data\":\"second\"}");
  mt_done(s, &A, NULL);
}

/* ---- the sixth review ------------------------------------------------ */

/* The heap room set aside for a newly opened connection's deadline was
 * taken by the older holder of its device id (its close timer) when the
 * upgrade replaced it; growing the heap then failed, the new connection
 * was ended (on_close, transport close) and on_open still ran for it. */
static int fail_next_realloc;
static void *failing_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  if (fail_next_realloc) {
    fail_next_realloc = 0;
    return NULL;
  }
  return realloc(p, n);
}
static void with_no_deadlines_and_failing_realloc(ws_config *c) {
  c->alloc.malloc = plain_malloc;
  c->alloc.realloc = failing_realloc;
  c->alloc.free = plain_free;
  c->handshake_timeout_ms = 0;
  c->idle_timeout_ms = 0;
  c->ping_interval_ms = 0;
  c->on_open = count_open;
}

Test(regress, replacing_a_device_leaves_room_for_the_new_deadline) {
  enum { FILL = 63 }; /* with the older "a": the heap's first 64 slots */
  static mt_conn X[FILL];
  mt_conn A, B;
  char id[16];
  int i;
  ws_server *s = mk(with_no_deadlines_and_failing_realloc);
  ws_server_tick(s, 1);
  mt_connect(&A, s, "a", MT_WHOLE);
  for (i = 0; i < FILL; i++) {
    snprintf(id, sizeof id, "x%d", i);
    mt_connect(&X[i], s, id, MT_WHOLE);
  }
  ws_server_tick(s, 100000); /* the 101s' lazy write deadlines: gone */
  for (i = 0; i < FILL; i++) cr_assert_eq(ws_conn_close(X[i].c, 1000, NULL), 0);
  R.opens = R.on_close = 0;
  fail_next_realloc = 1; /* the heap's growth past 64 entries */
  char req[512];
  size_t n = mt_request(req, sizeof req, "a", NULL);
  mt_open(&B, s);
  cr_expect_eq(mt_feed(&B, req, n, MT_WHOLE), WS_OK);
  cr_expect_not_null(B.c, "the newer connection is open");
  cr_expect_eq(B.closes, 0);
  cr_expect_eq(R.opens, 1);
  cr_expect_null(A.c, "the older one ended");
  ws_server_free(s);
  mt_free(&A);
  mt_free(&B);
  for (i = 0; i < FILL; i++) mt_free(&X[i]);
}

/* A send that starts a connection's write clock needs a heap entry; when
 * growing the heap failed, the frame was queued anyway with no deadline
 * (idle and ping off): a peer that never read held it forever. Now the
 * send is refused with WS_ENOMEM and nothing is queued. */
static void with_write_deadline_only(ws_config *c) {
  with_no_deadlines_and_failing_realloc(c);
  c->write_timeout_ms = 1000;
  c->handshake_timeout_ms = 5000;
}

Test(regress, a_send_that_cannot_arm_its_write_deadline_is_refused) {
  enum { FILL = 63 }; /* write clocks, then Y's handshake: 64 heap slots */
  static mt_conn X[FILL];
  mt_conn B, Y;
  char id[16];
  int i;
  ws_server *s = mk(with_write_deadline_only);
  ws_server_tick(s, 1);
  for (i = 0; i < FILL; i++) {
    snprintf(id, sizeof id, "x%d", i);
    mt_connect(&X[i], s, id, MT_WHOLE);
  }
  /* Each 101 leaves a lazy write deadline: cleared by a tick before the
   * next connection, so that the heap never grows past 64 slots. */
  ws_server_tick(s, 100000);
  mt_connect(&B, s, "b", MT_WHOLE);
  ws_server_tick(s, 200000);
  for (i = 0; i < FILL; i++) {
    X[i].would_block = 1;
    cr_assert_eq(ws_conn_send_text(X[i].c, "x", 1), WS_OK);
  }
  mt_open(&Y, s); /* in its handshake: the heap's last free slot */
  B.would_block = 1;
  fail_next_realloc = 1;
  cr_expect_eq(ws_conn_send_text(B.c, "b", 1), WS_ENOMEM);
  cr_expect_eq(ws_conn_want_write(B.c), 0, "nothing queued");
  ws_server_free(s);
  mt_free(&B);
  mt_free(&Y);
  for (i = 0; i < FILL; i++) mt_free(&X[i]);
}

/* ---- the seventh review --------------------------------------------- */

/* on_open queuing past max_queued (a backlog replay) closed the client as
 * a slow consumer by dropping the whole queue, the still unsent 101
 * included: the client's first bytes were a close frame, not the 101. */
static int open_sends_a_backlog(ws_conn *c, void *ud) {
  char text[400];
  int i;
  (void)ud;
  memset(text, 'x', sizeof text);
  for (i = 0; i < 4; i++) ws_conn_send_text(c, text, sizeof text);
  return 0;
}
static void with_backlog_on_open(ws_config *c) {
  c->max_queued = 1024;
  c->on_open = open_sends_a_backlog;
}

Test(regress, slow_consumer_close_in_on_open_keeps_the_101) {
  char req[512], head[512];
  mt_conn A;
  mt_frame f;
  ws_server *s = mk(with_backlog_on_open);
  size_t n = mt_request(req, sizeof req, "a", NULL);
  mt_open(&A, s);
  mt_feed(&A, req, n, MT_WHOLE);
  cr_assert_eq(mt_http_response(&A, head, sizeof head, NULL, NULL), 101,
               "first bytes: %.*s", (int)A.len, (const char *)A.out);
  while (mt_next_frame(&A, &f) && f.opcode == 1) continue;
  cr_assert_eq(f.opcode, 8, "a close frame after the 101");
  cr_expect_eq(mt_close_code(&f), WS_CLOSE_SLOW_CONSUMER);
  mt_done(s, &A, NULL);
}

/* ws_conn_upgrade_answer reported 101 for a connection its on_open had
 * ended (the handle already freed): a host following the docs wrote a 101
 * and used the handle. */
static int open_aborts(ws_conn *c, void *ud) {
  (void)ud;
  R.opens++;
  ws_conn_abort(c);
  return 0;
}
static void with_open_aborting(ws_config *c) { c->on_open = open_aborts; }

/* The connection a callback below acts on. */
static mt_conn *g_target;

/* An upgrade answered for a server made with tweak, its socket blocked or
 * not, must report the 503 of a connection ended from on_open. */
static void answer_is_closed_during_on_open(void (*tweak)(ws_config *),
                                            int would_block) {
  char accept[WS_ACCEPT_LEN + 1];
  const char *reason;
  int status;
  mt_conn A;
  ws_server *s = mk(tweak);
  mt_open(&A, s);
  A.would_block = would_block;
  cr_assert_eq(ws_conn_upgrade_answer(A.c, "GET", "/ws", "device_id=a",
                                      mt_upgrade_headers, 5, &status, &reason,
                                      accept),
               WS_OK);
  cr_expect_eq(R.opens, 1);
  cr_expect_eq(A.closes, 1, "the transport was closed");
  cr_expect_eq(status, 503);
  cr_expect_str_eq(reason, "connection closed during on_open");
  cr_expect_str_eq(accept, "");
  mt_done(s, &A, NULL);
}

Test(regress, upgrade_answer_reports_an_on_open_abort) {
  answer_is_closed_during_on_open(with_open_aborting, 0);
}

/* ... and when the output on_open queued ended it: the call's own last
 * flush offered it to send (0: the host's 101 is not out yet), then
 * want_write(1), which aborted the connection after the 101 was decided
 * (fuzz_api). */
static int open_sends(ws_conn *c, void *ud) {
  (void)ud;
  R.opens++;
  return ws_conn_send(c, "hello", NULL);
}
static int want_aborts(ws_conn *c, void *t, int want) {
  (void)t;
  if (want) ws_conn_abort(c);
  return 0;
}
static void with_open_sending(ws_config *c) {
  c->on_open = open_sends;
  c->want_write = want_aborts;
}

Test(regress, upgrade_answer_reports_an_abort_from_on_opens_output) {
  /* Blocked: the host's HTTP server still holds the socket. */
  answer_is_closed_during_on_open(with_open_sending, 1);
}

/* The same when a callback before on_open ended it (no answer was set:
 * the caller got 500 "internal error"). */
static int origin_aborts(const ws_request *req, const char *origin,
                         void *ud) {
  (void)req, (void)origin, (void)ud;
  ws_conn_abort(g_target->c);
  return 1;
}
static void with_origin_aborting(ws_config *c) { c->check_origin = origin_aborts; }

Test(regress, upgrade_answer_reports_an_earlier_callback_abort) {
  char accept[WS_ACCEPT_LEN + 1];
  const char *reason;
  int status;
  mt_conn A;
  ws_server *s = mk(with_origin_aborting);
  mt_open(&A, s);
  g_target = &A;
  cr_assert_eq(ws_conn_upgrade_answer(A.c, "GET", "/ws", "device_id=a",
                                      mt_upgrade_headers, 5, &status, &reason,
                                      accept),
               WS_OK);
  cr_expect_eq(A.closes, 1);
  cr_expect_eq(status, 503);
  cr_expect_str_eq(reason, "connection closed during the upgrade");
  mt_done(s, &A, NULL);
}

/* A NULL entry in subprotocols was accepted by ws_server_new and crashed
 * (strlen(NULL)) at the first client offering a name that did not match
 * an earlier entry; a name that is not a token went into the 101 as is. */
Test(regress, subprotocols_must_be_tokens) {
  static const char *const with_null[] = {"chat", NULL};
  static const char *const with_space[] = {"chat v2"};
  static const char *const empty[] = {""};
  static const char *const good[] = {"chat", "v2.json", "x-y_z~!"};
  static const struct {
    const char *const *list;
    size_t n;
    int rc;
  } cases[] = {{with_null, 2, WS_EINVAL}, {with_space, 1, WS_EINVAL},
               {empty, 1, WS_EINVAL},     {good, 3, WS_OK}};
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ws_config cfg;
    ws_server *s = NULL;
    ws_config_init(&cfg);
    mt_config(&cfg, 0);
    cfg.subprotocols = cases[i].list;
    cfg.subprotocols_count = cases[i].n;
    cr_expect_eq(ws_server_new(&cfg, &s), cases[i].rc, "case %zu", i);
    ws_server_free(s);
  }
}

/* A cJSON tree's printed text was only checked for UTF-8: a raw item
 * (cJSON_CreateRaw) put its text on the wire as given, a malformed
 * envelope or a second "action" member for every receiver; an item cJSON
 * cannot print was reported as WS_ENOMEM. */
Test(regress, a_cjson_tree_is_checked_as_json) {
  mt_conn A;
  ws_server *s = mk(NULL);
  cJSON *inject = cJSON_CreateObject(), *broken = cJSON_CreateObject();
  cJSON *good = cJSON_CreateObject(), *invalid = cJSON_CreateObject();
  cJSON *odd = cJSON_CreateObject();
  cJSON *bad_item = cJSON_CreateNull(), *two_types = cJSON_CreateTrue();
  cJSON_AddRawToObject(inject, "x", "1},\"action\":\"admin\",\"y\":{\"z\":0");
  cJSON_AddRawToObject(broken, "x", "{oops");
  cJSON_AddRawToObject(good, "x", "[1, 2]");
  bad_item->type = cJSON_Invalid;
  cJSON_AddItemToObject(invalid, "x", bad_item);
  two_types->type = cJSON_True | cJSON_False;
  cJSON_AddItemToObject(odd, "y", two_types);
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_expect_eq(ws_broadcast(s, "news", inject, NULL, 0), WS_EJSON);
  cr_expect_eq(ws_conn_send(A.c, "news", broken), WS_EJSON);
  cr_expect_eq(ws_conn_send(A.c, "news", invalid), WS_EJSON);
  cr_expect_eq(ws_conn_send(A.c, "news", odd), WS_EJSON);
  mt_expect_nothing(&A);
  cr_expect_eq(ws_broadcast(s, "news", good, NULL, 0), 1);
  mt_expect_text(&A, "{\"action\":\"news\",\"data\":{\"x\":[1, 2]}}");
  cJSON_Delete(inject);
  cJSON_Delete(broken);
  cJSON_Delete(good);
  cJSON_Delete(invalid);
  cJSON_Delete(odd);
  mt_done(s, &A, NULL);
}

/* Under WS_DUP_REPLACE the "reconnected" log line runs while the newer
 * connection B is indexed but not yet open; on_log opening a third one E
 * with the same id found B not open, unindexed it without closing it, and
 * B and E both ended up open with one device id. */
static mt_conn dup_e;
static void log_opens_another(ws_server *s, int level, const char *msg,
                              void *ud) {
  (void)s, (void)level, (void)ud;
  if (strstr(msg, "reconnected") && R.opens++ == 0)
    mt_connect(&dup_e, g_srv, "x", MT_WHOLE);
}
static void with_log_opening_another(ws_config *c) {
  c->on_log = log_opens_another;
}

Test(regress, a_device_opened_from_on_log_is_not_doubled) {
  char req[512];
  mt_conn A, B;
  ws_stats st;
  ws_server *s = g_srv = mk(with_log_opening_another);
  size_t n = mt_request(req, sizeof req, "x", NULL);
  mt_connect(&A, s, "x", MT_WHOLE);
  mt_open(&B, s);
  mt_feed(&B, req, n, MT_WHOLE);
  cr_assert_not_null(dup_e.c, "E is open");
  cr_expect_eq(ws_server_find_device(s, "x"), dup_e.c);
  cr_expect_null(B.c, "B, replaced before it opened, was ended");
  cr_expect_eq(B.closes, 1);
  mt_expect_close(&A, WS_CLOSE_REPLACED);
  ws_server_stats(s, &st, sizeof st);
  cr_expect_eq(st.conns_open, 2, "E, and A closing: %llu",
               (unsigned long long)st.conns_open);
  ws_server_free(s);
  mt_free(&A);
  mt_free(&B);
  mt_free(&dup_e);
}

/* max_posted counted frame bytes only: small posts to a long group name
 * held about 19 times max_posted of heap. */
static void with_64k_posts(ws_config *c) { c->max_posted = 64 * 1024; }

Test(regress, max_posted_bounds_the_heap_posts_hold) {
  char group[256];
  long before;
  int rc, posts = 0;
  ws_server *s = mk(with_64k_posts);
  memset(group, 'g', 255);
  group[255] = '\0';
  before = test_alloc_live_bytes();
  while ((rc = ws_post(s, WS_POST_GROUP, group, "a", NULL, 0)) == WS_OK)
    posts++;
  cr_expect_eq(rc, WS_ELIMIT);
  cr_expect_gt(posts, 100);
  cr_expect_leq(test_alloc_live_bytes() - before, 64 * 1024,
                "%d posts hold %ld bytes", posts,
                test_alloc_live_bytes() - before);
  mt_done(s, NULL, NULL);
}

/* A message that can never fit max_posted got WS_ELIMIT ("retry later")
 * on an empty queue. */
static void with_tiny_posts(ws_config *c) { c->max_posted = 100; }

Test(regress, a_post_larger_than_max_posted_is_etoobig) {
  ws_server *s = mk(with_tiny_posts);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", json_text(200), 200),
               WS_ETOOBIG);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "m", NULL, 0), WS_OK);
  mt_done(s, NULL, NULL);
}

/* From on_log during the refusal of a malformed request (nothing of it
 * kept yet), the host could start the same connection's upgrade again
 * (ws_conn_upgrade): it opened, then the 400 was queued after its 101. */
static void log_reupgrades(ws_server *s, int level, const char *msg,
                           void *ud) {
  (void)s, (void)level, (void)ud;
  if (strstr(msg, "upgrade refused") && g_target->c)
    R.feed_rc = ws_conn_upgrade(g_target->c, "GET", "/ws",
                                "device_id=a", mt_upgrade_headers, 5);
}
static void with_log_reupgrading(ws_config *c) {
  c->on_log = log_reupgrades;
  c->on_open = count_open;
}

Test(regress, upgrade_from_a_callback_of_its_own_refusal_is_estate) {
  mt_conn A;
  ws_server *s = mk(with_log_reupgrading);
  g_target = &A;
  mt_open(&A, s);
  mt_feed_str(&A, "GET /ws HTTP/1.1\r\nHost h\r\n\r\n", MT_WHOLE);
  cr_expect_eq(R.feed_rc, WS_ESTATE);
  cr_expect_eq(R.opens, 0);
  cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 400);
  mt_expect_nothing(&A);
  mt_done(s, &A, NULL);
}

/* A tick delivered the whole post backlog before returning: a backlog
 * fanned out to many connections held the loop (no reads, no accepts) for
 * seconds (examples/reuseport.c under a broadcast flood). A tick now stops
 * after the post that makes its fan-out reach 8192 connections and asks to
 * be called again at once. */
Test(regress, a_tick_delivers_a_bounded_share_of_the_posts) {
  enum { POSTS = 8200, SHARE = 8192 };
  mt_conn A;
  mt_frame f;
  int i, n = 0;
  ws_server *s = mk(NULL);
  mt_connect(&A, s, "a", MT_WHOLE);
  for (i = 0; i < POSTS; i++)
    cr_assert_eq(ws_post(s, WS_POST_DEVICE, "a", "m", "1", 1), WS_OK);
  cr_expect_eq(ws_server_tick(s, 1), 0, "more posts wait: tick again now");
  while (mt_next_frame(&A, &f)) n++;
  cr_expect_eq(n, SHARE);
  cr_expect_gt(ws_server_tick(s, 2), 0, "the backlog is done");
  while (mt_next_frame(&A, &f)) n++;
  cr_expect_eq(n, POSTS);
  mt_done(s, &A, NULL);
}

/* A header the host passed with a NULL name or value and a non-zero length
 * reached memcpy (a crash at -O2): WS_EINVAL now, from both host-parsed
 * entry points, and the connection is still new (a valid upgrade after it
 * succeeds). */
Test(regress, host_header_with_a_null_pointer_is_einval) {
  ws_header bad[5];
  char accept[WS_ACCEPT_LEN + 1];
  const char *reason;
  int status, which;
  mt_conn A;
  ws_server *s = mk(NULL);
  for (which = 0; which < 2; which++) {
    memcpy(bad, mt_upgrade_headers, sizeof bad);
    if (which) bad[3].value = NULL; /* Sec-WebSocket-Key, 24 bytes */
    else bad[0].name = NULL;        /* Host, 4 bytes */
    mt_open(&A, s);
    cr_expect_eq(ws_conn_upgrade(A.c, "GET", "/ws", "device_id=a", bad, 5),
                 WS_EINVAL);
    cr_expect_eq(ws_conn_upgrade_answer(A.c, "GET", "/ws", "device_id=a", bad,
                                        5, &status, &reason, accept),
                 WS_EINVAL);
    cr_expect_eq(A.len, 0, "nothing answered");
    cr_assert_eq(ws_conn_upgrade(A.c, "GET", "/ws", "device_id=a",
                                 mt_upgrade_headers, 5),
                 WS_OK);
    cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 101);
    ws_conn_abort(A.c);
    mt_free(&A);
  }
  /* A NULL value of no bytes is an empty one (an empty Host is valid
   * HTTP/1.1, RFC 7230 5.4), not an error. */
  memcpy(bad, mt_upgrade_headers, sizeof bad);
  bad[0].value = NULL;
  bad[0].value_len = 0;
  mt_open(&A, s);
  cr_expect_eq(ws_conn_upgrade(A.c, "GET", "/ws", "device_id=a", bad, 5),
               WS_OK);
  cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 101);
  mt_done(s, &A, NULL);
}

/* The clock started at 0 whatever the host's origin: a connection made
 * before the first tick, which gave CLOCK_MONOTONIC's 3 days, was past its
 * handshake deadline at that tick (and an upgraded one past its idle
 * deadline). The first tick is now the library's zero. */
Test(regress, the_first_tick_is_the_clock_origin) {
  enum { T0 = 259200000 }; /* 3 days of uptime, in ms */
  mt_conn A, B;
  mt_frame f;
  char req[256];
  size_t n;
  ws_server *s = mk(NULL);
  mt_open(&A, s);                   /* before any tick: handshake pending */
  mt_connect(&B, s, "b", MT_WHOLE); /* before any tick: open */
  cr_expect_eq(ws_server_tick(s, T0), 10000, "A's handshake deadline");
  cr_expect_eq(A.closes, 0, "closed at the first tick");
  cr_expect_eq(B.closes, 0);
  cr_expect_eq(mt_unread(&B), 0, "neither pinged nor closed");
  n = mt_request(req, sizeof req, "a", NULL);
  mt_feed(&A, req, n, MT_WHOLE);
  cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 101);
  ws_server_tick(s, T0 + 29999);
  cr_expect_eq(mt_unread(&B), 0, "pinged before ping_interval_ms");
  ws_server_tick(s, T0 + 30000);
  mt_expect_frame(&B, &f);
  cr_expect_eq(f.opcode, MT_PING, "the ping at 30 s from the first tick");
  cr_expect_eq(R.on_close, 0);
  mt_done(s, &A, &B);
}

/* ---- the tenth review ------------------------------------------------ */

/* An empty value may come as NULL with length 0 from a host's parser; two
 * Sec-WebSocket-Protocol lines, one of them such, were joined with
 * memcpy(o, NULL, 0) (undefined: UBSan stops there; found by
 * fuzz_upgrade). Joined as an empty element, the other one is chosen. */
static const char *const k_chat[] = {"chat"};
static void offers_chat(ws_config *c) {
  c->subprotocols = k_chat;
  c->subprotocols_count = 1;
}

Test(regress, an_empty_protocol_line_given_as_null_is_joined) {
  ws_header h[7];
  mt_conn A;
  ws_server *s = mk(offers_chat);
  memcpy(h, mt_upgrade_headers, sizeof mt_upgrade_headers);
  h[5] = (ws_header){"Sec-WebSocket-Protocol", 22, NULL, 0};
  h[6] = (ws_header){"Sec-WebSocket-Protocol", 22, "chat", 4};
  mt_open(&A, s);
  cr_assert_eq(ws_conn_upgrade(A.c, "GET", "/ws", "device_id=a", h, 7), WS_OK);
  cr_expect_eq(mt_http_response(&A, NULL, 0, NULL, NULL), 101);
  cr_expect_str_eq(ws_conn_subprotocol(A.c), "chat");
  mt_done(s, &A, NULL);
}

/* close_timeout_ms = 0 ("disabled") cleared every deadline of a closing
 * connection: a peer gone silent after our close (idle deadline sent it)
 * and a slow consumer being drained (4001, it never reads) stayed forever,
 * ws_server_tick answering -1. The idle and write deadlines still hold. */
static void no_close_timeout(ws_config *c) {
  c->close_timeout_ms = 0;
  c->idle_timeout_ms = 1000;
  c->ping_interval_ms = 0;
  c->write_timeout_ms = 500;
}

Test(regress, without_a_close_timeout_a_silent_closing_peer_still_ends) {
  mt_conn A;
  ws_server *s = mk(no_close_timeout);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_expect_gt(ws_server_tick(s, 1000), 0, "idle: close sent, then a wait");
  mt_expect_close(&A, WS_CLOSE_TIMEOUT);
  ws_server_tick(s, 1500);
  mt_send_frame(&A, MT_PING, 0, "x", 1, MT_WHOLE); /* moves the deadline */
  ws_server_tick(s, 2000);
  ws_server_tick(s, 2499);
  cr_expect_eq(A.closes, 0, "ended though the peer spoke at 1500");
  cr_expect_eq(ws_server_tick(s, 2500), -1);
  cr_expect_eq(A.closes, 1, "a silent closing peer is never let go");
  cr_expect_eq(R.on_close, 1);
  cr_expect_eq(R.code, WS_CLOSE_TIMEOUT);
  mt_done(s, &A, NULL);
}

/* Nor with the write deadline off too: a peer that sends its close and
 * then never reads our answer (DRAINING) is ended by the idle deadline
 * from its last byte, as in OPEN and CLOSING (it was held forever). */
static void idle_deadline_only(ws_config *c) {
  no_close_timeout(c);
  c->write_timeout_ms = 0;
}

Test(regress, without_close_and_write_timeouts_a_draining_peer_still_ends) {
  mt_conn A;
  mt_bytes close_frame = {0};
  ws_server *s = mk(idle_deadline_only);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1;
  cr_assert_eq(ws_conn_send_text(A.c, "never taken", 11), WS_OK);
  ws_server_tick(s, 400);
  mt_close_add(&close_frame, 1000, NULL);
  mt_feed(&A, close_frame.p, close_frame.len, MT_WHOLE); /* at 400 */
  mt_bytes_free(&close_frame);
  ws_server_tick(s, 1399);
  cr_expect_eq(A.closes, 0, "ended before the idle deadline");
  ws_server_tick(s, 1400);
  cr_expect_eq(A.closes, 1, "a draining peer that never reads is held");
  mt_done(s, &A, NULL);
}

Test(regress, without_a_close_timeout_a_peer_that_never_reads_still_ends) {
  mt_conn A, B;
  mt_bytes close_frame = {0};
  ws_server *s = mk(no_close_timeout);
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  mt_connect(&B, s, "b", MT_WHOLE);
  A.would_block = B.would_block = 1;
  /* A: we close first (CLOSING); B: the peer closes first, our answer
   * waits (DRAINING). Neither takes a byte. */
  cr_assert_eq(ws_conn_close(A.c, 4001, "slow"), WS_OK);
  mt_close_add(&close_frame, 1000, NULL);
  mt_feed(&B, close_frame.p, close_frame.len, MT_WHOLE);
  mt_bytes_free(&close_frame);
  cr_expect_eq(ws_server_tick(s, 499), 1);
  cr_expect_eq(A.closes + B.closes, 0);
  ws_server_tick(s, 500);
  cr_expect_eq(A.closes, 1, "a close frame never taken holds CLOSING");
  cr_expect_eq(B.closes, 1, "a close answer never taken holds DRAINING");
  mt_done(s, &A, &B);
}

/* ws_server_shutdown delivers what was posted before its 1001; called from
 * a handler it queued the whole backlog before flushing any of it, so a
 * peer that takes every byte was closed as a slow consumer (4001) when
 * the backlog exceeded max_queued. Each post goes out before the next. */
static int shutdown_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_server_shutdown(ws_conn_server(c), 1000);
}
static void small_queue_shutdown_handler(ws_config *c) {
  c->handler = shutdown_handler;
  c->max_queued = 1000;
}

Test(regress, shutdown_from_a_handler_sends_a_post_backlog_past_max_queued) {
  char data[302];
  mt_conn A;
  mt_frame f;
  ws_stats st;
  int i;
  ws_server *s = mk(small_queue_shutdown_handler);
  mt_connect(&A, s, "a", MT_WHOLE);
  memset(data, 'x', sizeof data);
  data[0] = data[sizeof data - 1] = '"';
  for (i = 0; i < 10; i++) /* 3 KB in all, each frame about 320 bytes */
    cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "p", data, sizeof data), WS_OK);
  mt_send_text(&A, "{\"action\":\"stop\"}", MT_WHOLE);
  for (i = 0; i < 10; i++) {
    mt_expect_frame(&A, &f);
    cr_expect_eq(f.opcode, MT_TEXT, "post %d", i);
  }
  mt_expect_close(&A, WS_CLOSE_GOING_AWAY);
  ws_server_stats(s, &st, sizeof st);
  cr_expect_eq(st.drops_queue_full, 0);
  mt_done(s, &A, NULL);
}

/* A device id was kept as whatever bytes its percent-encoding gave; the
 * README's own handler (cJSON_CreateString of the id) then failed with
 * WS_EJSON and the client was closed 1011. Ids must be UTF-8: 400. */
Test(regress, a_device_id_that_is_not_utf8_is_refused) {
  static const char *const bad[] = {"%ff%fe", "ab%c3", "%ed%a0%80",
                                    "%c0%af"};
  const uint8_t *body;
  size_t i, bl, n;
  char req[256];
  ws_stats st;
  mt_conn A;
  ws_server *s = mk(NULL);
  for (i = 0; i < sizeof bad / sizeof *bad; i++) {
    n = mt_request(req, sizeof req, bad[i], NULL);
    mt_open(&A, s);
    mt_feed(&A, req, n, MT_WHOLE);
    cr_expect_eq(mt_http_response(&A, NULL, 0, &body, &bl), 400, "%s", bad[i]);
    cr_expect(bl >= 22 && memcmp(body, "device_id is not UTF-8", 22) == 0,
              "%.*s", (int)bl, body);
    cr_expect_eq(A.closes, 1);
    mt_free(&A);
  }
  ws_server_stats(s, &st, sizeof st);
  cr_expect_eq(st.refusals[WS_REFUSE_BAD_REQUEST], 4);
  mt_connect(&A, s, "caf%C3%A9-%F0%9F%93%B1", MT_WHOLE);
  cr_expect_str_eq(ws_conn_device_id(A.c), "caf\xc3\xa9-\xf0\x9f\x93\xb1");
  mt_done(s, &A, NULL);
}

/* A tick that ended a shutdown's drain answered the deadline of a
 * connection it had just closed (its 5 s close timeout): one spurious
 * wake-up after the server was done. That tick answers 0 (a loop waiting
 * on it comes back to see on_shutdown's flag), and the next one -1. */
Test(regress, the_tick_that_ends_a_drain_has_no_deadline_left) {
  mt_conn A;
  ws_server *s = mk(with_count_shutdown); /* on_shutdown counts R.opens */
  ws_server_tick(s, 0);
  mt_connect(&A, s, "a", MT_WHOLE);
  A.would_block = 1; /* the 1001 cannot go out */
  cr_assert_eq(ws_server_shutdown(s, 0), WS_OK);
  cr_expect_eq(A.closes, 0, "still draining");
  cr_expect_eq(ws_server_tick(s, 0), 0);
  cr_expect_eq(A.closes, 1);
  cr_expect_eq(R.opens, 1, "on_shutdown fired");
  cr_expect_eq(ws_server_tick(s, 0), -1, "no deadline left");
  mt_done(s, &A, NULL);
}

/* ---- the fifteenth review -------------------------------------------- */

/* A message too big for any queue is WS_ETOOBIG from its length alone:
 * the JSON paths checked (read) the whole text and allocated its frame
 * first, so a wrong length was an over-read, and a 50 MiB text cost a
 * 50 MiB frame before the refusal. One byte really exists here; a read
 * past it is an ASan report, and an allocation shows in the count. */
Test(regress, too_big_is_told_from_the_length_before_the_bytes) {
  mt_conn A;
  ws_server *s = mk(NULL);
  static const char one[1] = {'1'};
  size_t huge = SIZE_MAX / 2;
  mt_connect(&A, s, "a", MT_WHOLE);
  test_alloc_reset(0);
  cr_expect_eq(ws_conn_send_json(A.c, "a", one, huge), WS_ETOOBIG);
  cr_expect_eq(ws_conn_send_text(A.c, one, huge), WS_ETOOBIG);
  cr_expect_eq(ws_conn_send_binary(A.c, one, huge), WS_ETOOBIG);
  cr_expect_eq(ws_broadcast_json(s, "a", one, huge, NULL, 0), WS_ETOOBIG);
  cr_expect_eq(ws_post(s, WS_POST_ALL, NULL, "a", one, huge), WS_ETOOBIG);
  cr_expect_eq(test_alloc_count(), 0, "%ld allocations", test_alloc_count());
  mt_expect_nothing(&A);
  mt_done(s, &A, NULL);
}

#if SIZE_MAX > UINT32_MAX
/* With max_queued at SIZE_MAX ("no limit") a message past a frame's
 * 32-bit length is still too big, not out of memory. */
static void unlimited_queue(ws_config *c) { c->max_queued = SIZE_MAX; }
Test(regress, past_a_frames_length_is_too_big_even_unlimited) {
  mt_conn A;
  ws_server *s = mk(unlimited_queue);
  static const char one[1] = {'1'};
  size_t five_gib = (size_t)5 << 30;
  mt_connect(&A, s, "a", MT_WHOLE);
  cr_expect_eq(ws_conn_send_binary(A.c, one, five_gib), WS_ETOOBIG);
  cr_expect_eq(ws_conn_send_text(A.c, one, five_gib), WS_ETOOBIG);
  cr_expect_eq(ws_conn_send_json(A.c, "a", one, five_gib), WS_ETOOBIG);
  /* Under 4 GiB but past a frame buffer (less the envelope's room): told
   * from the length too, not found by a 4 GiB allocation and copy. */
  test_alloc_reset(0);
  cr_expect_eq(ws_conn_send_binary(A.c, one, (size_t)UINT32_MAX - 100),
               WS_ETOOBIG);
  cr_expect_eq(ws_conn_send_json(A.c, "a", one, (size_t)UINT32_MAX - 2000),
               WS_ETOOBIG);
  cr_expect_eq(test_alloc_count(), 0);
  mt_expect_nothing(&A);
  mt_done(s, &A, NULL);
}
#endif

#if SIZE_MAX <= UINT32_MAX
/* With a 32-bit size_t, max_posted and max_queued at SIZE_MAX ("no
 * limit") and long device ids allowed, a post's cost (a frame near 4 GiB,
 * the device id, the bookkeeping) adds up past SIZE_MAX: the sum wrapped
 * to a few bytes, the post was taken to fit, and its data_json was read
 * (here invalid: WS_EJSON) and allocated for, where it never fits. */
static void unlimited_posts(ws_config *c) {
  c->max_queued = SIZE_MAX;
  c->max_posted = SIZE_MAX;
  c->max_device_id = 4096;
}
Test(regress, a_post_past_size_max_in_all_is_too_big_on_32_bits) {
  ws_server *s = mk(unlimited_posts);
  static char id[2061];
  static const char bad[16] = {'\xff'}; /* refused at its first byte */
  /* WS__MESSAGE_MAX: the longest data the API takes at all. */
  size_t len = (size_t)UINT32_MAX - 32 - 2048;
  memset(id, 'd', sizeof(id) - 1); /* id and data: SIZE_MAX - 20 bytes */
  test_alloc_reset(0);
  cr_expect_eq(ws_post(s, WS_POST_DEVICE, id, "m", bad, len), WS_ETOOBIG);
  cr_expect_eq(test_alloc_count(), 0, "%ld allocations", test_alloc_count());
  mt_done(s, NULL, NULL);
}
#endif

/* ---- cost ------------------------------------------------------------- */

/* A head arriving in pieces was parsed again from its first byte whenever
 * a line ended: O(lines x bytes), 16 M instructions for an 8 KiB head of
 * 64 lines sent a byte at a time (59 M with 256 headers) where the same
 * head in one read costs 0.6 M. A line once taken is not read again until
 * the head is complete: here a byte of the request line, changed in the
 * buffer after it was taken, to one no head holds, goes unseen while the
 * headers come (the old code answered 400 at the next line), and the
 * whole head is read once more when its empty line comes (a 101 with the
 * byte put back). */
Test(regress, head_lines_taken_are_not_parsed_again) {
  ws_server *s = mk(NULL);
  mt_conn a;
  char req[1024];
  size_t n = mt_request(req, sizeof req, "d1", "X-A: 1\r\nX-B: 2\r\n");
  const char *line = req, *nl;
  int lines = 0;
  mt_open(&a, s);
  for (; (nl = memchr(line, '\n', n - (size_t)(line - req))); line = nl + 1) {
    if (nl + 1 == req + n) break; /* the empty line: fed last */
    cr_assert_eq(ws_conn_feed(a.c, line, (size_t)(nl + 1 - line)), WS_OK);
    if (++lines == 2) a.c->buf[0] = ' '; /* "GET" was taken: now " ET" */
  }
  cr_expect_eq(a.len, 0, "answered while the head came: %.12s", a.out);
  cr_expect_eq(lines, 8);
  a.c->buf[0] = 'G';
  cr_assert_eq(ws_conn_feed(a.c, "\r\n", 2), WS_OK);
  cr_expect_eq(mt_http_response(&a, NULL, 0, NULL, NULL), 101);
  mt_done(s, &a, NULL);
}
