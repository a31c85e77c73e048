/* ws_conn_add_header: the host's own header lines on a connection's HTTP
 * response (a 101's Set-Cookie, a 401's WWW-Authenticate, on_http's
 * answers), where they may be added, which names and values are refused,
 * the size bound, and windows nested by a callback that drives another
 * connection's upgrade. Every case in both feed modes where a request is
 * fed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

/* What the callbacks do, set per test. */
static struct {
  const char *name[4], *value[4]; /* lines on_upgrade / on_http add */
  int rc[4];                      /* and what each add returned */
  int status;                     /* on_upgrade's verdict */
  int respond;                    /* on_http answers 200 */
  int close_first;                /* on_upgrade closes the connection */
  int open_rc;                    /* an add from on_open */
  int msg_rc;                     /* an add from the message handler */
  int after_respond_rc;           /* an add after on_http's answer */
  mt_conn *inner;                 /* on_upgrade feeds this one's upgrade */
  int inner_mode;
  char inner_head[1024];          /* and gets this answer */
  int inner_status;
} H;

static int upgrade(ws_server *s, mt_conn *t, const char *id, int mode,
                   char *head, size_t cap);

static void add_lines(ws_conn *c) {
  int i;
  for (i = 0; i < 4 && H.name[i]; i++)
    H.rc[i] = ws_conn_add_header(c, H.name[i], H.value[i]);
}

static int on_upgrade(ws_conn *c, const ws_request *req, const char **reason,
                      void *ud) {
  const char *id = ws_request_query(req, "device_id");
  (void)ud;
  if (strcmp(id, "inner") == 0) {
    cr_assert_eq(ws_conn_add_header(c, "X-Who", "inner"), WS_OK);
    return 0;
  }
  if (H.inner) {
    cr_assert_eq(ws_conn_add_header(c, "X-Before", "outer"), WS_OK);
    H.inner_status = upgrade(ws_conn_server(c), H.inner, "inner",
                             H.inner_mode, H.inner_head, sizeof H.inner_head);
  }
  if (H.close_first) ws_conn_close(c, 1000, NULL);
  add_lines(c);
  *reason = "token required";
  return H.status;
}

static int on_open(ws_conn *c, void *ud) {
  (void)ud;
  H.open_rc = ws_conn_add_header(c, "X-Late", "1");
  return 0;
}

static int on_http(ws_conn *c, const ws_request *req, void *ud) {
  (void)req, (void)ud;
  add_lines(c);
  if (H.respond) {
    cr_assert_eq(ws_conn_http_respond(c, 200, NULL, "ok\n", 3), WS_OK);
    H.after_respond_rc = ws_conn_add_header(c, "X-Late", "1");
  }
  return 0;
}

static int handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  H.msg_rc = ws_conn_add_header(c, "X-Late", "1");
  return 0;
}

typedef int (*upgrade_fn)(ws_conn *, const ws_request *, const char **,
                          void *);

static ws_server *server_with(upgrade_fn up, int dup_refuse) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_upgrade = up;
  cfg.on_open = on_open;
  cfg.on_http = on_http;
  cfg.handler = handler;
  if (dup_refuse) cfg.duplicate_policy = WS_DUP_REFUSE;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
}

static ws_server *server_new(int dup_refuse) {
  return server_with(on_upgrade, dup_refuse);
}

static void server_free(ws_server *s) {
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
}

/* Feeds req to a new connection on t; returns the status and the head. */
static int answer(ws_server *s, mt_conn *t, const char *req, int mode,
                  char *head, size_t cap) {
  mt_open(t, s);
  mt_feed_str(t, req, mode);
  mt_pump(t);
  return mt_http_response(t, head, cap, NULL, NULL);
}

static int upgrade(ws_server *s, mt_conn *t, const char *id, int mode,
                   char *head, size_t cap) {
  char req[512];
  mt_request(req, sizeof req, id, NULL);
  return answer(s, t, req, mode, head, cap);
}

/* The head ends with line, then the blank line: added lines come last. */
static void expect_last_line(const char *head, const char *line) {
  size_t h = strlen(head), n = strlen(line);
  cr_assert(h >= n + 2 && memcmp(head + h - n - 2, line, n) == 0 &&
                memcmp(head + h - 2, "\r\n", 2) == 0,
            "head does not end with %s: %s", line, head);
}

static void reset(void) { memset(&H, 0, sizeof H); }

Test(response_headers, the_101_carries_the_lines_on_upgrade_added) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t, u;
    char head[1024];
    ws_server *s;
    reset();
    H.name[0] = "Set-Cookie", H.value[0] = "sid=abc; HttpOnly";
    H.name[1] = "Set-Cookie", H.value[1] = "theme=dark";
    s = server_new(0);
    cr_assert_eq(upgrade(s, &t, "d1", mode, head, sizeof head), 101);
    cr_assert_eq(H.rc[0], WS_OK);
    cr_assert_eq(H.rc[1], WS_OK);
    cr_assert_not_null(strstr(head, "Sec-WebSocket-Accept: " MT_SAMPLE_ACCEPT
                                    "\r\nSet-Cookie: sid=abc; HttpOnly\r\n"
                                    "Set-Cookie: theme=dark\r\n"),
                       "%s", head);
    expect_last_line(head, "Set-Cookie: theme=dark\r\n");
    cr_assert_eq(H.open_rc, WS_ESTATE, "on_open comes after the 101");
    /* Open: frames flow, and a handler cannot add to a response sent. */
    {
      mt_bytes b = {0};
      mt_frame_add(&b, MT_TEXT, 0, "{\"action\":\"x\"}", 14);
      mt_feed(&t, b.p, b.len, mode);
      mt_bytes_free(&b);
    }
    cr_assert_eq(H.msg_rc, WS_ESTATE);
    /* The next connection's 101 has none of them. */
    H.name[0] = NULL;
    cr_assert_eq(upgrade(s, &u, "d2", mode, head, sizeof head), 101);
    cr_assert_null(strstr(head, "Set-Cookie"), "%s", head);
    expect_last_line(head, "Sec-WebSocket-Accept: " MT_SAMPLE_ACCEPT "\r\n");
    server_free(s);
    mt_free(&t);
    mt_free(&u);
  }
}

Test(response_headers, a_refusal_carries_them_with_its_reason) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t;
    char head[1024];
    ws_server *s;
    reset();
    H.status = 401;
    H.name[0] = "WWW-Authenticate", H.value[0] = "Bearer realm=\"push\"";
    s = server_new(0);
    cr_assert_eq(upgrade(s, &t, "d1", mode, head, sizeof head), 401);
    cr_assert_eq(H.rc[0], WS_OK);
    expect_last_line(head, "Connection: close\r\n"
                           "WWW-Authenticate: Bearer realm=\"push\"\r\n");
    cr_assert_eq(memcmp(t.out + t.len - 15, "token required\n", 15), 0);
    cr_assert_eq(t.closes, 1);
    server_free(s);
    mt_free(&t);
  }
}

/* A 409 the library answers after on_upgrade accepted carries them too. */
Test(response_headers, a_409_after_on_upgrade_carries_them) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t, u;
    char head[1024];
    ws_server *s;
    reset();
    s = server_new(1);
    cr_assert_eq(upgrade(s, &t, "d1", mode, head, sizeof head), 101);
    H.name[0] = "Retry-After", H.value[0] = "30";
    cr_assert_eq(upgrade(s, &u, "d1", mode, head, sizeof head), 409);
    expect_last_line(head, "Retry-After: 30\r\n");
    server_free(s);
    mt_free(&t);
    mt_free(&u);
  }
}

Test(response_headers, on_http_answers_and_fallbacks_carry_them) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    static const char page[] = "GET /page HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char plain[] = "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n";
    mt_conn t, u;
    char head[1024];
    ws_server *s;
    reset();
    H.respond = 1;
    H.name[0] = "Cache-Control", H.value[0] = "no-store";
    s = server_new(0);
    cr_assert_eq(answer(s, &t, page, mode, head, sizeof head), 200);
    expect_last_line(head, "Cache-Control: no-store\r\n");
    cr_assert_eq(H.after_respond_rc, WS_ESTATE, "the answer is queued");
    /* on_http does not answer: the library's 426 carries them after its
     * own Upgrade and Sec-WebSocket-Version. */
    H.respond = 0;
    cr_assert_eq(answer(s, &u, plain, mode, head, sizeof head), 426);
    cr_assert_not_null(strstr(head, "Upgrade: websocket\r\n"));
    expect_last_line(head, "Cache-Control: no-store\r\n");
    server_free(s);
    mt_free(&t);
    mt_free(&u);
  }
}

Test(response_headers, bad_names_and_values_are_einval_and_not_sent) {
  static const char *const bad_names[] = {
      "",           "X Bad",          "X:",
      "X-\xc3\xa9", "connection",     "CONTENT-LENGTH",
      "Content-Type", "transfer-encoding", "Upgrade",
      "Sec-WebSocket-Accept", "sec-websocket-extensions",
      "Sec-WebSocket-", NULL};
  static const char *const bad_values[] = {"a\r\nX-Injected: 1", "a\nb",
                                           "a\tb", "a\x7f", NULL};
  mt_conn t;
  char head[2048];
  ws_server *s;
  size_t i;
  reset();
  s = server_new(0);
  mt_open(&t, s);
  cr_assert_eq(ws_conn_add_header(NULL, "X-A", "1"), WS_EINVAL);
  cr_assert_eq(ws_conn_add_header(t.c, NULL, "1"), WS_EINVAL);
  cr_assert_eq(ws_conn_add_header(t.c, "X-A", NULL), WS_EINVAL);
  for (i = 0; bad_names[i]; i++)
    cr_assert_eq(ws_conn_add_header(t.c, bad_names[i], "1"), WS_EINVAL,
                 "name %s", bad_names[i]);
  for (i = 0; bad_values[i]; i++)
    cr_assert_eq(ws_conn_add_header(t.c, "X-A", bad_values[i]), WS_EINVAL,
                 "value %zu", i);
  /* Well-formed, but outside the callbacks: no response is being made. */
  cr_assert_eq(ws_conn_add_header(t.c, "X-A", "1"), WS_ESTATE);
  cr_assert_eq(ws_conn_add_header(t.c, "Sec-WebSocket", ""), WS_ESTATE,
               "only the Sec-WebSocket- prefix is reserved; empty value ok");
  /* From on_upgrade too: refused, and the 101 holds none of them. */
  H.name[0] = "Sec-WebSocket-Protocol", H.value[0] = "evil";
  H.name[1] = "X-A", H.value[1] = "a\r\nX-Injected: 1";
  H.name[2] = "X-Good", H.value[2] = "";
  {
    char req[512];
    mt_request(req, sizeof req, "d1", NULL);
    mt_feed_str(&t, req, MT_WHOLE);
    mt_pump(&t);
    cr_assert_eq(mt_http_response(&t, head, sizeof head, NULL, NULL), 101);
  }
  cr_assert_eq(H.rc[0], WS_EINVAL);
  cr_assert_eq(H.rc[1], WS_EINVAL);
  cr_assert_eq(H.rc[2], WS_OK);
  cr_assert_null(strstr(head, "evil"));
  cr_assert_null(strstr(head, "Injected"));
  expect_last_line(head, "X-Good: \r\n");
  server_free(s);
  mt_free(&t);
}

/* WS_MAX_ADDED_HEADERS bytes in all, counted as sent ("name: value\r\n"). */
Test(response_headers, the_size_bound_is_exact) {
  static char big[WS_MAX_ADDED_HEADERS];
  mt_conn t, u;
  char head[8192];
  ws_server *s;
  reset();
  /* "X-Big: " + value + CRLF = 4096 bytes: fits; nothing more does */
  memset(big, 'v', sizeof big);
  big[WS_MAX_ADDED_HEADERS - 9] = '\0';
  H.name[0] = "X-Big", H.value[0] = big;
  H.name[1] = "X", H.value[1] = "";
  s = server_new(0);
  cr_assert_eq(upgrade(s, &t, "d1", MT_WHOLE, head, sizeof head), 101);
  cr_assert_eq(H.rc[0], WS_OK);
  cr_assert_eq(H.rc[1], WS_ETOOBIG, "X: and CRLF past the bound");
  cr_assert_eq(strlen(strstr(head, "X-Big: ")), WS_MAX_ADDED_HEADERS + 2,
               "the line and the blank line end the head");
  /* The same line one byte longer is refused whole. */
  big[WS_MAX_ADDED_HEADERS - 9] = 'v';
  big[WS_MAX_ADDED_HEADERS - 8] = '\0';
  H.name[0] = "X-Big", H.value[0] = big;
  H.name[1] = NULL;
  cr_assert_eq(upgrade(s, &u, "d2", MT_WHOLE, head, sizeof head), 101);
  cr_assert_eq(H.rc[0], WS_ETOOBIG);
  cr_assert_null(strstr(head, "X-Big"));
  server_free(s);
  mt_free(&t);
  mt_free(&u);
}

Test(response_headers, closed_in_on_upgrade_is_eclosed) {
  mt_conn t;
  ws_server *s;
  reset();
  H.close_first = 1;
  H.name[0] = "X-A", H.value[0] = "1";
  s = server_new(0);
  mt_open(&t, s);
  {
    char req[512];
    mt_request(req, sizeof req, "d1", NULL);
    mt_feed_str(&t, req, MT_WHOLE);
  }
  cr_assert_eq(H.rc[0], WS_ECLOSED);
  cr_assert_eq(t.closes, 1);
  server_free(s);
  mt_free(&t);
}

/* The allocations of the request's feed come first: each is failed in
 * turn, on a new server, until the first add is the one that fails. */
Test(response_headers, out_of_memory_is_enomem_and_the_upgrade_goes_on) {
  char req[512];
  long n;
  mt_request(req, sizeof req, "d1", NULL);
  for (n = 1; n < 64; n++) {
    mt_conn t;
    char head[1024];
    ws_server *s;
    reset();
    H.name[0] = "X-A", H.value[0] = "1";
    H.name[1] = "X-B", H.value[1] = "2";
    s = server_new(0);
    mt_open(&t, s);
    test_alloc_reset(n);
    mt_feed_str(&t, req, MT_WHOLE);
    test_alloc_reset(0);
    mt_pump(&t);
    if (H.rc[0] == WS_ENOMEM) {
      cr_assert_eq(H.rc[1], WS_OK, "the next add gets its memory");
      cr_assert_eq(mt_http_response(&t, head, sizeof head, NULL, NULL), 101);
      expect_last_line(head, "\r\nX-B: 2\r\n");
      cr_assert_null(strstr(head, "X-A"));
    }
    server_free(s);
    mt_free(&t);
    if (H.rc[0] == WS_ENOMEM) return;
  }
  cr_assert_fail("no allocation failure reached the add");
}

/* on_upgrade of the outer connection (up) drives the inner one's whole
 * upgrade (it feeds it), in every feed mode; with on_upgrade, the outer
 * adds its X-Who line after that when outer_adds. The outer's 101 must end
 * with outer_tail and carry nothing of the inner; the inner's answer is
 * inner_status, ending with inner_tail and carrying no outer_line. */
static void nested_upgrade(upgrade_fn up, int outer_adds,
                           const char *outer_tail, int inner_status,
                           const char *inner_tail, const char *outer_line) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn outer, inner;
    char head[1024];
    ws_server *s;
    reset();
    H.inner = &inner;
    H.inner_mode = mode;
    if (outer_adds) H.name[0] = "X-Who", H.value[0] = "outer";
    s = server_with(up, 0);
    cr_assert_eq(upgrade(s, &outer, "outer", mode, head, sizeof head), 101);
    if (outer_adds) cr_assert_eq(H.rc[0], WS_OK);
    expect_last_line(head, outer_tail);
    cr_assert_null(strstr(head, "inner"), "the inner line leaked: %s", head);
    cr_assert_eq(H.inner_status, inner_status);
    expect_last_line(H.inner_head, inner_tail);
    cr_assert_null(strstr(H.inner_head, outer_line), "%s", H.inner_head);
    server_free(s);
    mt_free(&outer);
    mt_free(&inner);
  }
}

/* Each 101 carries only its own lines. */
Test(response_headers, nested_upgrades_keep_their_own_lines) {
  nested_upgrade(on_upgrade, 1, "\r\nX-Before: outer\r\nX-Who: outer\r\n",
                 101,
                 "Sec-WebSocket-Accept: " MT_SAMPLE_ACCEPT "\r\n"
                 "X-Who: inner\r\n",
                 "outer");
}

/* As above, but the outer connection adds nothing after the inner one's
 * upgrade: the inner window's end must cut its lines off the outer's
 * (their text still follows in the shared buffer), not rely on a later
 * add to end the outer's lines again. */
Test(response_headers, nested_upgrade_lines_end_with_the_inner_window) {
  nested_upgrade(on_upgrade, 0, "\r\nX-Before: outer\r\n", 101,
                 "\r\nX-Who: inner\r\n", "outer");
}

/* The outer on_upgrade adds a line, then feeds a connection a malformed
 * request, refused as it is parsed, before any window of its own: the
 * refusal carries no lines, least of all the outer's, whose window is
 * the one open. */
static int upgrade_feeds_a_refused_one(ws_conn *c, const ws_request *req,
                                       const char **reason, void *ud) {
  static const char r[] = "GET /ws HTTP/1.1\r\nno colon here\r\n\r\n";
  (void)req, (void)reason, (void)ud;
  cr_assert_eq(ws_conn_add_header(c, "X-Outer", "1"), WS_OK);
  H.inner_status = answer(ws_conn_server(c), H.inner, r, H.inner_mode,
                          H.inner_head, sizeof H.inner_head);
  return 0;
}

Test(response_headers, a_nested_refusal_does_not_carry_the_outer_lines) {
  nested_upgrade(upgrade_feeds_a_refused_one, 0, "\r\nX-Outer: 1\r\n", 400,
                 "", "X-Outer");
}

/* ws_conn_upgrade_answer: the host's HTTP server writes the response. */
static int answer_on_upgrade(ws_conn *c, const ws_request *req,
                             const char **reason, void *ud) {
  (void)req, (void)reason, (void)ud;
  H.rc[0] = ws_conn_add_header(c, "X-A", "1");
  return 0;
}

#define H_(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}
static const ws_header k_hdrs[] = {
    H_("Host", "a"), H_("Upgrade", "websocket"), H_("Connection", "Upgrade"),
    H_("Sec-WebSocket-Key", MT_SAMPLE_KEY), H_("Sec-WebSocket-Version", "13")};
#undef H_

static ws_server *answer_server(void) {
  return server_with(answer_on_upgrade, 0);
}

/* A request the host parsed, answered by the library: the same lines. */
Test(response_headers, a_pre_parsed_upgrade_carries_them) {
  ws_server *s = answer_server();
  mt_conn t;
  char head[1024];
  reset();
  mt_open(&t, s);
  cr_assert_eq(ws_conn_upgrade(t.c, "GET", "/ws", "device_id=a", k_hdrs, 5),
               WS_OK);
  mt_pump(&t);
  cr_assert_eq(H.rc[0], WS_OK);
  cr_assert_eq(mt_http_response(&t, head, sizeof head, NULL, NULL), 101);
  expect_last_line(head, "\r\nX-A: 1\r\n");
  server_free(s);
  mt_free(&t);
}

Test(response_headers, under_upgrade_answer_is_estate) {
  ws_server *s = answer_server();
  mt_conn t;
  const char *reason = NULL;
  char accept[WS_ACCEPT_LEN + 1];
  int status = 0;
  reset();
  mt_open(&t, s);
  cr_assert_eq(ws_conn_upgrade_answer(t.c, "GET", "/ws", "device_id=a",
                                      k_hdrs, 5, &status, &reason, accept),
               WS_OK);
  cr_assert_eq(status, 101);
  cr_assert_eq(H.rc[0], WS_ESTATE);
  server_free(s);
  mt_free(&t);
}
