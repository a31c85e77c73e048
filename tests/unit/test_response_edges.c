/* ws_conn_add_header and WS_DUP_REPLACE_SAME_USER at their edges (from a
 * review of the change that added them): a closing owner keeps its device
 * id, every 503 after on_upgrade carries the lines, an answer from a nested
 * request, and a nested window that grows the line buffer. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static struct {
  mt_conn *inner;
  ws_conn *outer;
  int inner_rc;
} P;

typedef int (*upgrade_fn)(ws_conn *, const ws_request *, const char **,
                          void *);
typedef int (*http_fn)(ws_conn *, const ws_request *, void *);

/* The tests' config: a test that needs one callback more sets it on cfg
 * and makes the server itself. */
static void mk_cfg(ws_config *cfg, int policy, upgrade_fn up, http_fn http) {
  ws_config_init(cfg);
  cfg->alloc = test_alloc();
  mt_config(cfg, 0);
  cfg->duplicate_policy = policy;
  cfg->on_upgrade = up;
  cfg->on_http = http;
}

static ws_server *mk(int policy, upgrade_fn up, http_fn http) {
  ws_config cfg;
  ws_server *s;
  mk_cfg(&cfg, policy, up, http);
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
}

static void done(ws_server *s) {
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

/* Upgrades t with device_id=<id> (more query parameters may follow it). */
static int upgrade_to(ws_server *s, mt_conn *t, const char *id,
                      char *head, size_t cap) {
  char req[512];
  mt_request(req, sizeof req, id, NULL);
  mt_open(t, s);
  mt_feed_str(t, req, MT_WHOLE);
  mt_pump(t);
  return mt_http_response(t, head, cap, NULL, NULL);
}

/* ---- SAME_USER ------------------------------------------------------- */
static int bind_user(ws_conn *c, const ws_request *req, const char **reason,
                     void *ud) {
  const char *user = ws_request_query(req, "user");
  (void)reason, (void)ud;
  return user && ws_conn_set_user(c, user) != WS_OK ? 500 : 0;
}

/* alice's connection is closing (server-side close sent, peer's answer not
 * in): mallory, with alice's device id, takes the id; alice's reconnect is
 * then refused with 409. */
Test(response_edges, same_user_closing_device_taken_by_another_user) {
  mt_conn alice, mallory, alice2;
  char head[1024];
  ws_server *s = mk(WS_DUP_REPLACE_SAME_USER, bind_user, NULL);
  cr_assert_eq(upgrade_to(s, &alice, "d&user=alice", head,
                          sizeof head), 101);
  cr_assert_eq(ws_conn_close(alice.c, 1000, NULL), WS_OK);
  mt_pump(&alice);
  cr_expect_eq(upgrade_to(s, &mallory, "d&user=mallory", head,
                          sizeof head), 409,
               "another user took a closing device's id");
  cr_expect_eq(upgrade_to(s, &alice2, "d&user=alice", head,
                          sizeof head), 101,
               "the owner's reconnect is locked out");
  done(s);
  mt_free(&alice), mt_free(&mallory), mt_free(&alice2);
}

/* An owner whose connection has ended holds its id no more, though the
 * index still names it while on_close runs: another user's upgrade fed
 * from that on_close opens (only a connection still closing keeps its
 * user's id) (mutation pass: an ended holder treated as a closing one,
 * that upgrade got a 409; no test fed one from on_close). */
static mt_conn *feed_at_close;

static int close_feeds_bob(ws_conn *c, int code, const char *r, void *ud) {
  char req[512];
  mt_conn *t = feed_at_close;
  (void)code, (void)r, (void)ud;
  if (t == NULL) return 0;
  feed_at_close = NULL;
  mt_request(req, sizeof req, "d&user=bob", NULL);
  mt_open(t, ws_conn_server(c));
  mt_feed_str(t, req, MT_WHOLE);
  return 0;
}

Test(response_edges, an_ended_owner_holds_its_id_no_more) {
  mt_conn alice, bob;
  char head[1024];
  ws_config cfg;
  ws_server *s;
  mk_cfg(&cfg, WS_DUP_REPLACE_SAME_USER, bind_user, NULL);
  cfg.on_close = close_feeds_bob;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  cr_assert_eq(upgrade_to(s, &alice, "d&user=alice", head, sizeof head), 101);
  feed_at_close = &bob;
  ws_conn_abort(alice.c);
  cr_assert_null(feed_at_close, "on_close ran");
  mt_pump(&bob);
  cr_expect_eq(mt_http_response(&bob, head, sizeof head, NULL, NULL), 101,
               "%s", head);
  cr_expect_eq(ws_server_find_device(s, "d"), bob.c);
  done(s);
  mt_free(&alice), mt_free(&bob);
}

/* As ws_server_find_device and WS_REFUSE_CONFLICT say: a closing holder of
 * an id is not found; under WS_DUP_REPLACE and WS_DUP_REFUSE a newer
 * connection takes the id then, under WS_DUP_REPLACE_SAME_USER only the
 * same user's, another user's 409 counted as CONFLICT. */
Test(response_edges, closing_id_is_taken_per_policy_and_409_is_conflict) {
  static const int policies[] = {WS_DUP_REPLACE, WS_DUP_REFUSE,
                                 WS_DUP_REPLACE_SAME_USER};
  size_t i;
  for (i = 0; i < 3; i++) {
    mt_conn a, b;
    char head[1024];
    ws_stats st;
    ws_server *s = mk(policies[i], bind_user, NULL);
    cr_assert_eq(upgrade_to(s, &a, "d&user=alice", head, sizeof head), 101);
    cr_assert_eq(ws_server_find_device(s, "d"), a.c);
    cr_assert_eq(ws_conn_close(a.c, 1000, NULL), WS_OK);
    cr_assert_null(ws_server_find_device(s, "d"), "closing: not found");
    if (policies[i] == WS_DUP_REPLACE_SAME_USER) {
      cr_assert_eq(upgrade_to(s, &b, "d&user=bob", head, sizeof head), 409);
      cr_assert_null(ws_server_find_device(s, "d"));
    } else {
      cr_assert_eq(upgrade_to(s, &b, "d&user=bob", head, sizeof head), 101,
                   "policy %d", policies[i]);
      cr_assert_eq(ws_server_find_device(s, "d"), b.c);
    }
    ws_server_stats(s, &st, sizeof st);
    cr_assert_eq(st.refusals[WS_REFUSE_CONFLICT],
                 policies[i] == WS_DUP_REPLACE_SAME_USER ? 1u : 0u);
    done(s);
    mt_free(&a), mt_free(&b);
  }
}

/* ---- lines lost on the library's 503 after the 101 was built ----------- */
static int add_line(ws_conn *c, const ws_request *req, const char **reason,
                    void *ud) {
  (void)req, (void)reason, (void)ud;
  P.inner_rc = ws_conn_add_header(c, "Retry-After", "30");
  return 0;
}

Test(response_edges, every_503_after_on_upgrade_carries_the_lines) {
  char req[512];
  long n;
  int seen = 0;
  mt_request(req, sizeof req, "d", NULL);
  for (n = 1; n < 80; n++) {
    mt_conn t;
    char head[1024];
    int st;
    ws_server *s = mk(0, add_line, NULL);
    mt_open(&t, s);
    P.inner_rc = -100;
    test_alloc_reset(n);
    mt_feed_str(&t, req, MT_WHOLE);
    test_alloc_reset(0);
    mt_pump(&t);
    st = mt_http_response(&t, head, sizeof head, NULL, NULL);
    if (st == 503 && strstr(head, "out of memory") == NULL) {
      /* reason is in the body; check the head */
    }
    if (st == 503 && P.inner_rc == WS_OK) {
      seen++;
      cr_expect_not_null(strstr(head, "Retry-After: 30\r\n"),
                         "fail_at %ld: 503 without the line:\n%s", n, head);
    }
    done(s);
    mt_free(&t);
  }
  cr_assert(seen > 0);
}

/* ---- nested: A answered from inside B's on_http ------------------------ */
static int http_nested(ws_conn *c, const ws_request *req, void *ud) {
  (void)ud;
  if (strcmp(ws_request_path(req), "/a") == 0) {
    cr_assert_eq(ws_conn_add_header(c, "X-A", "1"), WS_OK);
    P.outer = c;
    mt_open(P.inner, ws_conn_server(c));
    mt_feed_str(P.inner, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n", MT_WHOLE);
    if (P.inner_rc != WS_OK) /* the nested answer was refused: ours */
      cr_assert_eq(ws_conn_http_respond(c, 200, NULL, "ok", 2), WS_OK);
  } else {
    /* A's lines are out of reach under B's window: told, not lost. */
    cr_assert_eq(ws_conn_add_header(P.outer, "X-B", "1"), WS_ESTATE);
    P.inner_rc = ws_conn_http_respond(P.outer, 200, NULL, "ok", 2);
  }
  return 0;
}

Test(response_edges, answer_from_a_nested_on_http_keeps_its_lines) {
  mt_conn a, b;
  char head[1024];
  ws_server *s = mk(0, NULL, http_nested);
  P.inner = &b;
  mt_open(&a, s);
  mt_feed_str(&a, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n", MT_WHOLE);
  mt_pump(&a);
  cr_assert_eq(mt_http_response(&a, head, sizeof head, NULL, NULL), 200);
  cr_expect_not_null(strstr(head, "X-A: 1\r\n"), "%s", head);
  cr_expect_null(strstr(head, "X-B"), "%s", head);
  done(s);
  mt_free(&a), mt_free(&b);
}

/* ---- realloc of the line buffer by a nested window --------------------- */
static char bigv[4000];
static int up_realloc(ws_conn *c, const ws_request *req, const char **reason,
                      void *ud) {
  (void)reason, (void)ud;
  if (strcmp(ws_request_query(req, "device_id"), "in") == 0) {
    cr_assert_eq(ws_conn_add_header(c, "X-In", bigv), WS_OK);
    return 401;
  }
  cr_assert_eq(ws_conn_add_header(c, "X-Out1", "a"), WS_OK);
  {
    char req2[512];
    mt_request(req2, sizeof req2, "in", NULL);
    mt_open(P.inner, ws_conn_server(c));
    mt_feed_str(P.inner, req2, MT_WHOLE);
  }
  cr_assert_eq(ws_conn_add_header(c, "X-Out2", "b"), WS_OK);
  return 0;
}

Test(response_edges, nested_realloc_is_safe) {
  mt_conn a, b;
  char head[8192];
  ws_server *s;
  memset(bigv, 'v', sizeof bigv - 1);
  s = mk(0, up_realloc, NULL);
  P.inner = &b;
  cr_assert_eq(upgrade_to(s, &a, "out", head, sizeof head), 101);
  cr_assert_not_null(strstr(head, "X-Out1: a\r\nX-Out2: b\r\n\r\n"), "%s", head);
  cr_assert_null(strstr(head, "X-In"));
  mt_pump(&b);
  cr_assert_eq(mt_http_response(&b, head, sizeof head, NULL, NULL), 401);
  cr_assert_not_null(strstr(head, "X-In: vvv"));
  done(s);
  mt_free(&a), mt_free(&b);
}

/* ---- ws_conn_http_respond's WS_ETOOBIG --------------------------------- */
/* An answer that no buffer holds (its head and body past 4 GiB: a body of
 * len under the documented 4 GiB with the lines the host added) is
 * WS_ETOOBIG, the connection untouched, so on_http can still answer
 * (UINT32_MAX - 2080 is the largest len it let through). It
 * was WS_ENOMEM with the connection ended (1006), unanswered. The body is
 * never read: the size is told from len. */
static int big_rc[4];
static int http_big(ws_conn *c, const ws_request *req, void *ud) {
  static char lines[3000], one[1];
  (void)req, (void)ud;
  memset(lines, 'v', sizeof lines - 1);
  cr_assert_eq(ws_conn_add_header(c, "X-A", lines), WS_OK);
  big_rc[0] = ws_conn_http_respond(c, 200, NULL, one,
                                   (size_t)UINT32_MAX - 2080);
  big_rc[1] = ws_conn_http_respond(c, 200, NULL, one, (size_t)UINT32_MAX);
  big_rc[2] = ws_conn_http_respond(c, 413, NULL, "too big", 7);
  /* answered: the state is the error, whatever the size */
  big_rc[3] = ws_conn_http_respond(c, 200, NULL, one, (size_t)UINT32_MAX);
  return 0;
}

Test(response_edges, an_answer_past_a_buffer_is_etoobig_and_leaves_the_request) {
  mt_conn a;
  char head[8192];
  ws_server *s = mk(0, NULL, http_big);
  mt_open(&a, s);
  mt_feed_str(&a, "GET /page HTTP/1.1\r\nHost: a\r\n\r\n", MT_WHOLE);
  mt_pump(&a);
  cr_expect_eq(big_rc[0], WS_ETOOBIG, "%s", ws_err_name(big_rc[0]));
  cr_expect_eq(big_rc[1], WS_ETOOBIG);
  cr_expect_eq(big_rc[2], WS_OK, "%s", ws_err_name(big_rc[2]));
  cr_expect_eq(big_rc[3], WS_ESTATE, "%s", ws_err_name(big_rc[3]));
  cr_expect_eq(mt_http_response(&a, head, sizeof head, NULL, NULL), 413);
  done(s);
  mt_free(&a);
}
