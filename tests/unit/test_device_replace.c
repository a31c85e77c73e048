/* A replaced device connection: the header's registry promises, checked
 * where they meet the connection's life (on_close, a newer one's groups). */
#include <criterion/criterion.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static ws_server *S;
static mt_conn C[3];
static struct {
  void (*upgrade)(ws_conn *c); /* run by on_upgrade */
  int closed[3];               /* on_close ran */
  int replaced[3];             /* what the header's recipe said there */
  mt_conn *abort_at_reconnect; /* on_log's "reconnected" line aborts it */
  mt_conn *abort_too;          /* and this one */
} G;

static int idx(ws_conn *c) {
  return (int)((mt_conn *)ws_conn_transport(c) - C);
}

/* The on_close doc's way to tell a connection replaced by a newer one
 * with its device id when the peer answered the 4000 with 1000. */
static int looks_replaced(ws_conn *c) {
  ws_server *s = ws_conn_server(c);
  return ws_server_find_device(s, ws_conn_device_id(c)) != NULL;
}

static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)code, (void)reason, (void)ud;
  G.closed[idx(c)] = 1;
  G.replaced[idx(c)] = looks_replaced(c);
  return 0;
}

static int on_upgrade(ws_conn *c, const ws_request *req, const char **why,
                      void *ud) {
  (void)req, (void)why, (void)ud;
  if (G.upgrade) G.upgrade(c);
  return 0;
}

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)level, (void)ud;
  if (G.abort_at_reconnect && strstr(msg, "reconnected")) {
    ws_conn_abort(G.abort_at_reconnect->c);
    G.abort_at_reconnect = NULL;
    if (G.abort_too) ws_conn_abort(G.abort_too->c);
  }
}

static void fixture(int duplicate_policy) {
  ws_config cfg;
  memset(&G, 0, sizeof G);
  memset(C, 0, sizeof C);
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_close = on_close;
  cfg.on_upgrade = on_upgrade;
  cfg.on_log = on_log;
  cfg.duplicate_policy = duplicate_policy;
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  ws_server_tick(S, 0);
}

static void finish(void) {
  int i;
  ws_server_free(S);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  for (i = 0; i < 3; i++) mt_free(&C[i]);
}

/* The peer answers our close frame with its own code. */
static void peer_close(mt_conn *t, int code) {
  mt_bytes b = {.p = NULL};
  mt_close_add(&b, code, NULL);
  mt_feed(t, b.p, b.len, MT_WHOLE);
  mt_bytes_free(&b);
}

/* on_close's code is the peer's; one that answers a 4000 with 1000 hides
 * the replacement, and the header told hosts to check
 * ws_server_find_device(s, id) != c. In on_close c has ended, so it is
 * never found: that check said "replaced" for every connection, one
 * closed for its own reasons too. What does tell them apart is whether
 * another connection holds the id now. */
Test(device_replace, on_close_tells_a_replaced_connection_apart) {
  fixture(WS_DUP_REPLACE);
  mt_connect(&C[0], S, "phone", MT_WHOLE);
  cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
  peer_close(&C[0], 1000);
  cr_assert(G.closed[0]);
  cr_expect_not(G.replaced[0], "closed by the host, not replaced");
  mt_connect(&C[1], S, "phone", MT_WHOLE);
  mt_connect(&C[2], S, "phone", MT_WHOLE);
  mt_expect_close(&C[1], WS_CLOSE_REPLACED);
  peer_close(&C[1], 1000); /* the peer does not echo 4000 */
  cr_assert(G.closed[1]);
  cr_expect(G.replaced[1], "replaced by C[2], told 1000 by its peer");
  finish();
}

/* A newer connection that replaces an older one with its device id keeps
 * what it bound in on_upgrade when the older, bound to the same user and
 * group, finishes its close: the older's removal takes only its own
 * memberships. (Pins the brief's question; it held.) */
static void bind_u_and_g(ws_conn *c) {
  cr_assert_eq(ws_conn_set_user(c, "u"), WS_OK);
  cr_assert_eq(ws_conn_join(c, "g"), WS_OK);
}

Test(device_replace, a_replaced_older_leaves_the_newers_memberships) {
  fixture(WS_DUP_REPLACE);
  G.upgrade = bind_u_and_g;
  mt_connect(&C[0], S, "phone", MT_WHOLE);
  mt_connect(&C[1], S, "phone", MT_WHOLE);
  mt_expect_close(&C[0], WS_CLOSE_REPLACED);
  peer_close(&C[0], WS_CLOSE_REPLACED);
  cr_assert(G.closed[0]);
  cr_expect_eq(ws_server_user_count(S, "u"), 1);
  cr_expect_eq(ws_server_group_count(S, "g"), 1);
  cr_expect_eq(ws_push_user(S, "u", "to_user", NULL), 1);
  cr_expect_eq(ws_publish(S, "g", "to_group", NULL), 1);
  mt_expect_text(&C[1], "{\"action\":\"to_user\"}");
  mt_expect_text(&C[1], "{\"action\":\"to_group\"}");
  mt_expect_nothing(&C[1]);
  finish();
}

/* A newer connection that on_log ends while it replaces the older one
 * (the "reconnected" line is logged between the two) replaces nothing:
 * the older keeps its device id, open, instead of being closed 4000 for
 * a connection that no longer exists (both were gone before). */
/* C[0] holds "phone"; C[1] asks for it, and on_log's "reconnected" line
 * aborts C[1] (and too, when given). */
static void reconnect_ended_by_on_log(mt_conn *too) {
  char req[512];
  size_t n;
  fixture(WS_DUP_REPLACE);
  mt_connect(&C[0], S, "phone", MT_WHOLE);
  mt_open(&C[1], S);
  G.abort_at_reconnect = &C[1];
  G.abort_too = too;
  n = mt_request(req, sizeof req, "phone", NULL);
  cr_assert_eq(mt_feed(&C[1], req, n, MT_WHOLE), WS_ECLOSED);
  cr_assert_null(G.abort_at_reconnect, "on_log ran");
}

Test(device_replace, a_newer_ended_by_on_log_leaves_the_older_its_id) {
  reconnect_ended_by_on_log(NULL);
  cr_assert_eq(C[1].closes, 1);
  cr_assert_eq(ws_server_find_device(S, "phone"), C[0].c);
  cr_assert_not(G.closed[0]);
  mt_expect_nothing(&C[0]);
  cr_assert_eq(ws_send_device(S, "phone", "still", NULL), 1);
  mt_expect_text(&C[0], "{\"action\":\"still\"}");
  /* A later one replaces it as usual. */
  mt_connect(&C[2], S, "phone", MT_WHOLE);
  mt_expect_close(&C[0], WS_CLOSE_REPLACED);
  cr_assert_eq(ws_server_find_device(S, "phone"), C[2].c);
  finish();
}

/* on_log ending both: neither holds the id, and the index names neither
 * (the older, unindexed by then, must not be put back). */
Test(device_replace, on_log_ending_both_leaves_the_id_free) {
  reconnect_ended_by_on_log(&C[0]);
  cr_assert_eq(C[0].closes + C[1].closes, 2);
  cr_assert_null(ws_server_find_device(S, "phone"));
  cr_assert_eq(ws_send_device(S, "phone", "x", NULL), 0);
  mt_connect(&C[2], S, "phone", MT_WHOLE);
  cr_assert_eq(ws_server_find_device(S, "phone"), C[2].c);
  finish();
}
