/* request.c: building a ws_request from a view, decoding, lookups, the
 * public accessors' NULL handling, and a failmalloc pass. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "proto.h"
#include "support.h"

#define MAXH 64

/* Each test gets the counting allocator and must end with nothing live. */
static ws__alloc al;

static void setup(void) {
  ws_allocator a = test_alloc();
  cr_assert_eq(ws__alloc_init(&al, &a), WS_OK);
  test_alloc_reset(0);
}

static void teardown(void) {
  cr_expect_eq(test_alloc_live(), 0, "leaked allocations");
  cr_expect_eq(test_alloc_live_bytes(), 0, "leaked bytes");
}

TestSuite(request, .init = setup, .fini = teardown);

static ws_header hbuf[MAXH];

static void view_of(const char *req, ws__reqview *v) {
  size_t consumed;
  cr_assert_eq(ws__http_parse(req, strlen(req), hbuf, MAXH, v, &consumed),
               WS__HTTP_COMPLETE, "%s", req);
}

static ws_request *build_str(const char *req, int with_headers, int *err) {
  ws__reqview v;
  view_of(req, &v);
  return ws__request_build(&al, &v, with_headers, err);
}

static const char upgrade_req[] =
    "GET /ws?device_id=abc HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "X-Empty:\r\n"
    "\r\n";

Test(request, build_from_parsed_view) {
  int err = 1;
  ws_request *r = build_str(upgrade_req, 1, &err);
  cr_assert_not_null(r);
  cr_expect_eq(err, WS_OK);
  cr_expect_str_eq(ws_request_method(r), "GET");
  cr_expect_str_eq(ws_request_path(r), "/ws");
  cr_expect_str_eq(ws_request_query(r, "device_id"), "abc");
  cr_expect_null(ws_request_query(r, "Device_id")); /* exact names */
  cr_expect_null(ws_request_query(r, "missing"));
  cr_assert_eq(ws_request_header_count(r), 6);
  cr_expect_str_eq(ws_request_header(r, "host"), "example.com");
  cr_expect_str_eq(ws_request_header(r, "SEC-WEBSOCKET-KEY"),
                   "dGhlIHNhbXBsZSBub25jZQ==");
  cr_expect_str_eq(ws_request_header(r, "X-Empty"), "");
  cr_expect_null(ws_request_header(r, "X-Missing"));
  const char *name = NULL, *value = NULL;
  cr_expect_eq(ws_request_header_at(r, 0, &name, &value), WS_OK);
  cr_expect_str_eq(name, "Host");
  cr_expect_str_eq(value, "example.com");
  cr_expect_eq(ws_request_header_at(r, 5, &name, &value), WS_OK);
  cr_expect_str_eq(name, "X-Empty");
  cr_expect_str_eq(value, "");
  cr_expect_eq(ws_request_header_at(r, 6, &name, &value), WS_ENOENT);
  /* One allocation, and its size is what ws__request_size reports. */
  cr_expect_eq(test_alloc_live(), 1);
  cr_expect_eq((size_t)test_alloc_live_bytes(), ws__request_size(r));
  ws__request_free(&al, r);
}

Test(request, path_and_query_decoding) {
  int err;
  ws_request *r = build_str(
      "GET /a%20b/c%2Fd+e?x=1&y=a+b%21&flag&=empty&x=2&&z=&q%5B%5D=%3D%26"
      "&eq=a=b& HTTP/1.1\r\n\r\n",
      1, &err);
  cr_assert_not_null(r);
  cr_expect_str_eq(ws_request_path(r), "/a b/c/d+e"); /* '+' kept in path */
  cr_expect_str_eq(ws_request_query(r, "x"), "1");    /* first occurrence */
  cr_expect_str_eq(ws_request_query(r, "y"), "a b!");
  cr_expect_str_eq(ws_request_query(r, "flag"), "");  /* no '=' */
  cr_expect_str_eq(ws_request_query(r, ""), "empty");
  cr_expect_str_eq(ws_request_query(r, "z"), "");
  cr_expect_str_eq(ws_request_query(r, "q[]"), "=&");
  cr_expect_str_eq(ws_request_query(r, "eq"), "a=b"); /* split at first '=' */
  cr_expect_eq(ws_request_header_count(r), 0);
  ws__request_free(&al, r);
}

Test(request, no_query_and_empty_query) {
  int err;
  ws_request *r = build_str("GET / HTTP/1.1\r\n\r\n", 1, &err);
  cr_assert_not_null(r);
  cr_expect_str_eq(ws_request_path(r), "/");
  cr_expect_null(ws_request_query(r, ""));
  ws__request_free(&al, r);
  r = build_str("GET /p? HTTP/1.1\r\n\r\n", 1, &err);
  cr_assert_not_null(r);
  cr_expect_str_eq(ws_request_path(r), "/p");
  cr_expect_null(ws_request_query(r, ""));
  ws__request_free(&al, r);
}

Test(request, without_headers) {
  int err;
  ws_request *r = build_str(upgrade_req, 0, &err);
  cr_assert_not_null(r);
  cr_expect_eq(ws_request_header_count(r), 0);
  cr_expect_null(ws_request_header(r, "Host"));
  const char *name = "untouched";
  cr_expect_eq(ws_request_header_at(r, 0, &name, NULL), WS_ENOENT);
  cr_expect_str_eq(name, "untouched");
  cr_expect_str_eq(ws_request_query(r, "device_id"), "abc");
  cr_expect_str_eq(ws_request_path(r), "/ws");
  ws__request_free(&al, r);
}

Test(request, bad_encoding_is_eproto) {
  static const char *const bad[] = {"GET /%zz HTTP/1.1\r\n\r\n",
                                    "GET /%00 HTTP/1.1\r\n\r\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int err = 0;
    cr_expect_null(build_str(bad[i], 1, &err), "bad[%zu]", i);
    cr_expect_eq(err, WS_EPROTO, "bad[%zu]", i);
    cr_expect_eq(test_alloc_live(), 0, "bad[%zu]", i);
  }
}

/* A query parameter with a bad escape is left out (the upgrade refuses the
 * request for it, on_http gets it without): the request comes back with
 * WS_EPROTO, the other parameters and every header intact. A later
 * parameter of the same name does not take its place as the first. */
Test(request, bad_query_escape_leaves_the_parameter_out) {
  static const char *const bad[] = {
      "GET /ok?a=%4&z=9 HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
      "GET /ok?a%=1&z=9 HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
      "GET /ok?a=%00&z=9 HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
      "GET /ok?z=9&b=%G0 HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
      "GET /ok?%zz&z=9&a=%zz HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
      "GET /ok?a=%zz&z=9&a=admin HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int err = 0;
    const char *name = NULL, *value = NULL;
    ws_request *r = build_str(bad[i], 1, &err);
    cr_assert_not_null(r, "bad[%zu]", i);
    cr_expect_eq(err, WS_EPROTO, "bad[%zu]", i);
    cr_expect_str_eq(ws_request_query(r, "z"), "9", "bad[%zu]", i);
    cr_expect_null(ws_request_query(r, "b"), "bad[%zu]", i);
    if (i != 1) /* "a%" is not a name, "a" is */
      cr_expect_null(ws_request_query(r, "a"), "bad[%zu]", i);
    cr_expect_str_eq(ws_request_path(r), "/ok");
    cr_expect_eq(ws_request_header_count(r), 2);
    cr_expect_str_eq(ws_request_header(r, "Host"), "h", "bad[%zu]", i);
    cr_expect_eq(ws_request_header_at(r, 1, &name, &value), WS_OK);
    cr_expect_str_eq(name, "X");
    cr_expect_str_eq(value, "y");
    ws__request_free(&al, r);
    cr_expect_eq(test_alloc_live(), 0, "bad[%zu]", i);
  }
}

/* A view given by a host (ws_conn_upgrade): NUL-free slices, no query. */
Test(request, host_supplied_view) {
  const ws_header hs[] = {
      {.name = "Host", .name_len = 4, .value = "h", .value_len = 1},
      {.name = "Cookie", .name_len = 6, .value = "a=b; c=d", .value_len = 8},
  };
  ws__reqview v = {.method = "GET", .method_len = 3, .path = "/x%41",
                   .path_len = 5, .query = NULL, .query_len = 0,
                   .http_minor = 1, .headers = hs, .header_count = 2};
  int err;
  ws_request *r = ws__request_build(&al, &v, 1, &err);
  cr_assert_not_null(r);
  cr_expect_str_eq(ws_request_path(r), "/xA");
  cr_expect_str_eq(ws_request_header(r, "cookie"), "a=b; c=d");
  ws__request_free(&al, r);
  /* Empty everything. */
  ws__reqview e = {.method = NULL, .method_len = 0, .path = NULL};
  r = ws__request_build(&al, &e, 1, &err);
  cr_assert_not_null(r);
  cr_expect_str_eq(ws_request_method(r), "");
  cr_expect_str_eq(ws_request_path(r), "");
  cr_expect_eq(ws_request_header_count(r), 0);
  ws__request_free(&al, r);
}

Test(request, many_params_and_headers) {
  char req[8192];
  size_t n = (size_t)snprintf(req, sizeof req, "GET /m?");
  for (int i = 0; i < 50; i++)
    n += (size_t)snprintf(req + n, sizeof req - n, "k%d=v%%20%d&", i, i);
  n += (size_t)snprintf(req + n, sizeof req - n, " HTTP/1.1\r\n");
  for (int i = 0; i < 40; i++)
    n += (size_t)snprintf(req + n, sizeof req - n, "H-%d: value %d\r\n", i,
                          i);
  snprintf(req + n, sizeof req - n, "\r\n");
  int err;
  ws_request *r = build_str(req, 1, &err);
  cr_assert_not_null(r);
  char name[16], want[32];
  for (int i = 0; i < 50; i++) {
    snprintf(name, sizeof name, "k%d", i);
    snprintf(want, sizeof want, "v %d", i);
    cr_assert_str_eq(ws_request_query(r, name), want);
  }
  cr_assert_eq(ws_request_header_count(r), 40);
  for (int i = 0; i < 40; i++) {
    const char *hn, *hv;
    snprintf(name, sizeof name, "h-%d", i);
    snprintf(want, sizeof want, "value %d", i);
    cr_assert_str_eq(ws_request_header(r, name), want);
    cr_assert_eq(ws_request_header_at(r, (size_t)i, &hn, &hv), WS_OK);
    cr_assert_str_eq(hv, want);
  }
  ws__request_free(&al, r);
}

Test(request, null_arguments) {
  int err;
  ws_request *r = build_str(upgrade_req, 1, &err);
  cr_assert_not_null(r);
  cr_expect_null(ws_request_method(NULL));
  cr_expect_null(ws_request_path(NULL));
  cr_expect_null(ws_request_query(NULL, "device_id"));
  cr_expect_null(ws_request_query(r, NULL));
  cr_expect_null(ws_request_header(NULL, "Host"));
  cr_expect_null(ws_request_header(r, NULL));
  cr_expect_eq(ws_request_header_count(NULL), 0);
  const char *name, *value;
  cr_expect_eq(ws_request_header_at(NULL, 0, &name, &value), WS_EINVAL);
  cr_expect_eq(ws_request_header_at(r, 0, NULL, NULL), WS_OK);
  cr_expect_eq(ws__request_size(NULL), 0);
  ws__request_free(&al, NULL);
  ws__request_free(&al, r);
}

/* Fail allocation N for every N until a build succeeds: each failure must
 * report WS_ENOMEM and leave nothing allocated. */
static void failmalloc_pass(const char *req, int with_headers, int want_err) {
  for (long n = 1;; n++) {
    int err = 0;
    test_alloc_reset(n);
    ws_request *r = build_str(req, with_headers, &err);
    if (!test_alloc_failed()) {
      cr_assert_eq(err, want_err, "no failure injected at %ld", n);
      ws__request_free(&al, r);
      break;
    }
    cr_assert_null(r, "allocation %ld failed but build succeeded", n);
    cr_assert_eq(err, WS_ENOMEM, "allocation %ld", n);
    cr_assert_eq(test_alloc_live(), 0, "leak after failing allocation %ld", n);
    cr_assert_lt(n, 100, "runaway failmalloc loop");
  }
  test_alloc_reset(0);
}

Test(request, failmalloc) {
  failmalloc_pass(upgrade_req, 1, WS_OK);
  failmalloc_pass(upgrade_req, 0, WS_OK);
  failmalloc_pass("GET /%zz HTTP/1.1\r\n\r\n", 1, WS_EPROTO);
}

/* ---- found by mutation testing ------------------------------------------ */

/* Empty segments ("&&", a leading '&') are no parameters: no name "" comes
 * out of them. */
Test(request, empty_query_segments_are_no_parameters) {
  int err;
  ws_request *r = build_str("GET /ws?&a=1&&b=2& HTTP/1.1\r\nHost: h\r\n\r\n",
                            1, &err);
  cr_assert_not_null(r);
  cr_expect_eq(err, WS_OK);
  cr_expect_null(ws_request_query(r, ""));
  cr_expect_str_eq(ws_request_query(r, "a"), "1");
  cr_expect_str_eq(ws_request_query(r, "b"), "2");
  cr_expect_str_eq(ws_request_header(r, "Host"), "h");
  ws__request_free(&al, r);
}

/* A parameter's name is decoded as its value is: "%5F" and '+' too. */
Test(request, query_names_are_form_decoded) {
  int err;
  ws_request *r = build_str("GET /ws?device%5Fid=x&a+b=c HTTP/1.1\r\n\r\n", 1,
                            &err);
  cr_assert_not_null(r);
  cr_expect_eq(err, WS_OK);
  cr_expect_str_eq(ws_request_query(r, "device_id"), "x");
  cr_expect_str_eq(ws_request_query(r, "a b"), "c");
  cr_expect_null(ws_request_query(r, "a+b"));
  ws__request_free(&al, r);
}

static void expect_inside(const ws_request *r, const char *s) {
  const char *base = (const char *)r;
  cr_assert_not_null(s);
  cr_expect(s > base && s + strlen(s) + 1 <= base + ws__request_size(r),
            "'%s' at %td..%zu outside the %zu-byte block", s, s - base,
            (size_t)(s - base) + strlen(s) + 1, ws__request_size(r));
}

/* Names without '=' cost more than their raw bytes (name NUL, empty value
 * and its NUL for a one-byte name and its '&'): every string still lies
 * inside the one block. */
Test(request, flag_parameters_fit_in_the_block) {
  static const char *const names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
  int err;
  ws_request *r = build_str("GET /ws?a&b&c&d&e&f&g&h HTTP/1.1\r\n\r\n", 0,
                            &err);
  cr_assert_not_null(r);
  expect_inside(r, ws_request_method(r));
  expect_inside(r, ws_request_path(r));
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *v = ws_request_query(r, names[i]);
    cr_expect_str_eq(v, "");
    expect_inside(r, v);
  }
  ws__request_free(&al, r);
}

/* ---- the header's promises, one by one (audit of promises vs tests) ---- */

/* ws_request_header gives the first occurrence of a repeated header. */
Test(request, repeated_header_gives_the_first_occurrence) {
  int err;
  ws_request *r = build_str(
      "GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nX-A: 3\r\n\r\n", 1, &err);
  cr_assert_not_null(r);
  cr_expect_str_eq(ws_request_header(r, "X-A"), "1");
  cr_expect_str_eq(ws_request_header(r, "x-a"), "1");
  cr_expect_eq(ws_request_header_count(r), 3);
  ws__request_free(&al, r);
}
