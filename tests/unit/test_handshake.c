/* handshake.c: request parsing (every prefix, guard pages, pipelining,
 * limits), RFC 6455 4.2.1 checks with exact refusals, origin rules, and the
 * exact bytes of every response. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto.h"
#include "support.h"

#define MAXH 16

static const char valid_req[] =
    "GET /ws?device_id=abc HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://example.com\r\n"
    "\r\n";

/* The same request with bare LF line ends and odd but legal spacing. */
static const char valid_req_lf[] =
    "GET /ws HTTP/1.1\n"
    "host:example.com\n"
    "UPGRADE: \t websocket \t\n"
    "connection: keep-alive, Upgrade\n"
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\n"
    "SEC-WEBSOCKET-VERSION: 13\n"
    "\n";

static int parse(const char *s, size_t n, ws_header *h, size_t maxh,
                 ws__reqview *v, size_t *consumed) {
  return ws__http_parse(s, n, h, maxh, v, consumed);
}

static int parse_str(const char *s, ws_header *h, ws__reqview *v) {
  size_t consumed = 0;
  return parse(s, strlen(s), h, MAXH, v, &consumed);
}

static int slice_eq(const char *p, size_t n, const char *want) {
  return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* ---- parser: valid input ----------------------------------------------- */

Test(parse, valid_request) {
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0;
  size_t n = strlen(valid_req);
  cr_assert_eq(parse(valid_req, n, h, MAXH, &v, &consumed), WS__HTTP_COMPLETE);
  cr_expect_eq(consumed, n);
  cr_expect(slice_eq(v.method, v.method_len, "GET"));
  cr_expect(slice_eq(v.path, v.path_len, "/ws"));
  cr_expect(slice_eq(v.query, v.query_len, "device_id=abc"));
  cr_expect_eq(v.http_minor, 1);
  cr_expect_eq(v.headers, h);
  cr_assert_eq(v.header_count, 6);
  cr_expect(slice_eq(h[0].name, h[0].name_len, "Host"));
  cr_expect(slice_eq(h[0].value, h[0].value_len, "example.com"));
  cr_expect(slice_eq(h[5].name, h[5].name_len, "Origin"));
  cr_expect(slice_eq(h[5].value, h[5].value_len, "http://example.com"));
}

static void guard_every_prefix(const char *req, size_t n, int full_result);

/* An absolute-form target (RFC 9112 3.2.2) is read from its path on; an
 * empty path is "/" (RFC 9110 4.2.3: "http://h" and "http://h/" are one
 * URI), also before a query. */
Test(parse, absolute_form_targets) {
  static const struct {
    const char *target, *path, *query, *authority;
  } t[] = {
      {"http://example.com/ws?device_id=a", "/ws", "device_id=a",
       "example.com"},
      {"HTTPS://example.com:8443/a/b", "/a/b", NULL, "example.com:8443"},
      {"http://h:1/?", "/", "", "h:1"},
      {"http://example.com", "/", NULL, "example.com"},
      {"http://h?x=/ws", "/", "x=/ws", "h"},
      {"/ws?x", "/ws", "x", NULL},
  };
  size_t i;
  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    char req[256];
    ws_header h[MAXH];
    ws__reqview v;
    size_t consumed = 0;
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n",
                     t[i].target);
    cr_assert_eq(parse(req, (size_t)n, h, MAXH, &v, &consumed),
                 WS__HTTP_COMPLETE, "%s", t[i].target);
    cr_expect(slice_eq(v.path, v.path_len, t[i].path), "%s: %.*s",
              t[i].target, (int)v.path_len, v.path);
    if (t[i].query)
      cr_expect(v.query && slice_eq(v.query, v.query_len, t[i].query), "%s",
                t[i].target);
    else
      cr_expect_null(v.query, "%s", t[i].target);
    if (t[i].authority)
      cr_expect(slice_eq(v.authority, v.authority_len, t[i].authority), "%s",
                t[i].target);
    else
      cr_expect_null(v.authority, "%s", t[i].target);
  }
}

/* A target that is neither origin-form nor absolute-form names no path
 * (RFC 9112 3.2): before, "%2Fws" decoded to the configured "/ws" and
 * "?x" gave the empty path, which a NULL config path accepted. "*" is
 * OPTIONS's alone (3.2.4); an http URI with no host is invalid (RFC 9110
 * 4.2.1). Refused as soon as the first bytes show it, as any bad byte. */
Test(parse, target_that_is_no_path_is_invalid) {
  static const char *const bad[] = {
      "GET %2Fws HTTP/1.1\r\n\r\n", "GET ws HTTP/1.1\r\n\r\n",
      "GET ?device_id=a HTTP/1.1\r\n\r\n", "GET * HTTP/1.1\r\n\r\n",
      "OPTIONS *?x HTTP/1.1\r\n\r\n", "OPTIONS ** HTTP/1.1\r\n\r\n",
      "GET ws://h/ws HTTP/1.1\r\n\r\n", "GET http:/ws HTTP/1.1\r\n\r\n",
      "GET http:///ws HTTP/1.1\r\n\r\n", "GET http:// HTTP/1.1\r\n\r\n",
      "GET https://?x HTTP/1.1\r\n\r\n", "CONNECT h:443 HTTP/1.1\r\n\r\n",
      "GET http://u@h/ws HTTP/1.1\r\n\r\n",
      "GET http://good.example@evil.example?x HTTP/1.1\r\n\r\n",
  };
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0, i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_expect_eq(parse_str(bad[i], h, &v), WS__HTTP_INVALID, "%s", bad[i]);
    guard_every_prefix(bad[i], strlen(bad[i]), WS__HTTP_INVALID);
  }
  cr_expect_eq(parse("GET %", 5, h, MAXH, &v, &consumed), WS__HTTP_INVALID);
  cr_expect_eq(parse("GET htp", 7, h, MAXH, &v, &consumed), WS__HTTP_INVALID);
  cr_expect_eq(parse("GET HTTPS:/", 11, h, MAXH, &v, &consumed),
               WS__HTTP_INCOMPLETE);
  cr_expect_eq(parse_str("OPTIONS * HTTP/1.1\r\n\r\n", h, &v),
               WS__HTTP_COMPLETE);
  cr_expect(slice_eq(v.path, v.path_len, "*"));
}

Test(parse, bare_lf_and_whitespace_trimming) {
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0, n = strlen(valid_req_lf);
  cr_assert_eq(parse(valid_req_lf, n, h, MAXH, &v, &consumed),
               WS__HTTP_COMPLETE);
  cr_expect_eq(consumed, n);
  cr_expect_null(v.query);
  cr_expect_eq(v.query_len, 0);
  cr_expect(slice_eq(h[0].value, h[0].value_len, "example.com"));
  cr_expect(slice_eq(h[1].value, h[1].value_len, "websocket"));
}

Test(parse, empty_query_empty_value_obs_text_http10) {
  ws_header h[MAXH];
  ws__reqview v;
  cr_assert_eq(parse_str("GET /ws? HTTP/1.0\r\nX-Empty:\r\nX-Sp:   \r\n"
                         "X-Hi: caf\xc3\xa9\r\n\r\n",
                         h, &v),
               WS__HTTP_COMPLETE);
  cr_expect_not_null(v.query);
  cr_expect_eq(v.query_len, 0);
  cr_expect_eq(v.http_minor, 0);
  cr_assert_eq(v.header_count, 3);
  cr_expect_eq(h[0].value_len, 0);
  cr_expect_eq(h[1].value_len, 0);
  cr_expect(slice_eq(h[2].value, h[2].value_len, "caf\xc3\xa9"));
}

Test(parse, no_headers) {
  ws_header h[1];
  ws__reqview v;
  size_t consumed = 0;
  cr_assert_eq(parse("GET / HTTP/1.1\r\n\r\n", 18, h, 0, &v, &consumed),
               WS__HTTP_COMPLETE);
  cr_expect_eq(consumed, 18);
  cr_expect_eq(v.header_count, 0);
}

Test(parse, pipelined_bytes_are_not_consumed) {
  char buf[512];
  size_t head = strlen(valid_req);
  static const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  memcpy(buf, valid_req, head);
  memcpy(buf + head, frame, sizeof frame - 1);
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0;
  cr_assert_eq(parse(buf, head + sizeof frame - 1, h, MAXH, &v, &consumed),
               WS__HTTP_COMPLETE);
  cr_expect_eq(consumed, head);
  /* A second request pipelined after the first: also left alone. */
  memcpy(buf + head, valid_req, head);
  cr_assert_eq(parse(buf, 2 * head, h, MAXH, &v, &consumed),
               WS__HTTP_COMPLETE);
  cr_expect_eq(consumed, head);
}

/* ---- parser: prefixes and guard pages --------------------------------- */

static void expect_prefixes_incomplete(const char *req) {
  ws_header h[MAXH];
  ws__reqview v;
  size_t n = strlen(req);
  for (size_t k = 0; k < n; k++) {
    size_t consumed = 12345;
    cr_assert_eq(parse(req, k, h, MAXH, &v, &consumed), WS__HTTP_INCOMPLETE,
                 "prefix %zu", k);
    cr_assert_eq(consumed, 12345, "consumed touched at prefix %zu", k);
  }
}

Test(parse, every_truncated_prefix_is_incomplete) {
  expect_prefixes_incomplete(valid_req);
  expect_prefixes_incomplete(valid_req_lf);
}

/* Each prefix sits right before a PROT_NONE page: a read past buf+len
 * crashes the test instead of passing by luck. */
static void guard_every_prefix(const char *req, size_t n, int full_result) {
  test_guard g;
  ws_header h[MAXH];
  ws__reqview v;
  test_guard_init(&g, n);
  for (size_t k = 0; k <= n; k++) {
    const char *p = test_guard_place(&g, req, k);
    size_t consumed = 0;
    int rc = parse(p, k, h, MAXH, &v, &consumed);
    if (k == n) cr_assert_eq(rc, full_result, "full length");
    else cr_assert_neq(rc, WS__HTTP_COMPLETE, "prefix %zu", k);
  }
  test_guard_free(&g);
}

Test(parse, guard_page_every_prefix_valid) {
  guard_every_prefix(valid_req, strlen(valid_req), WS__HTTP_COMPLETE);
  guard_every_prefix(valid_req_lf, strlen(valid_req_lf), WS__HTTP_COMPLETE);
}

/* ---- parser: invalid input --------------------------------------------- */

static const char *const invalid_reqs[] = {
    "GET  / HTTP/1.1\r\n\r\n",               /* double space */
    "GET / HTTP/1.1 \r\n\r\n",               /* trailing space */
    "GET /\tx HTTP/1.1\r\n\r\n",             /* tab in target */
    "GET /\x80 HTTP/1.1\r\n\r\n",            /* non-ASCII target */
    "G(T / HTTP/1.1\r\n\r\n",                /* method not a token */
    " GET / HTTP/1.1\r\n\r\n",               /* leading space */
    "\rGET / HTTP/1.1\r\n\r\n",              /* bare CR first */
    "GET / HTTP/2.0\r\n\r\n",                /* not HTTP/1.x */
    "GET / http/1.1\r\n\r\n",                /* case of HTTP */
    "GET / HTTP/1.x\r\n\r\n",                /* minor not a digit */
    "GET / HTTP/1.11\r\n\r\n",               /* two-digit minor */
    "GET / HTTP/1.1\rX\r\n\r\n",             /* bare CR */
    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",    /* space before colon */
    "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",  /* obs-fold */
    "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", /* obs-fold with tab */
    "GET / HTTP/1.1\r\n Host: x\r\n\r\n",    /* whitespace before 1st header */
    "GET / HTTP/1.1\r\n: v\r\n\r\n",         /* empty header name */
    "GET / HTTP/1.1\r\nNoColon\r\n\r\n",     /* no colon */
    "GET / HTTP/1.1\r\nA(b: c\r\n\r\n",      /* name not a token */
    "GET / HTTP/1.1\r\nA: b\001c\r\n\r\n",   /* control byte in value */
    "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",    /* DEL in value */
    "GET / HTTP/1.1\r\nA: b\r\r\n\r\n",      /* CR CR LF */
    "GET / HTTP/1.1\r\nA: b\r\n\r\r\n",      /* bad empty line */
    "GET\r\n\r\n",                           /* request line cut short */
    "GET /\r\n\r\n",
};

Test(parse, invalid_requests) {
  ws_header h[MAXH];
  ws__reqview v;
  for (size_t i = 0; i < sizeof invalid_reqs / sizeof invalid_reqs[0]; i++)
    cr_expect_eq(parse_str(invalid_reqs[i], h, &v), WS__HTTP_INVALID,
                 "invalid_reqs[%zu]", i);
}

Test(parse, invalid_requests_every_prefix_on_guard_page) {
  for (size_t i = 0; i < sizeof invalid_reqs / sizeof invalid_reqs[0]; i++)
    guard_every_prefix(invalid_reqs[i], strlen(invalid_reqs[i]),
                       WS__HTTP_INVALID);
}

Test(parse, nul_byte_is_invalid) {
  static const char req[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0;
  cr_expect_eq(parse(req, sizeof req - 1, h, MAXH, &v, &consumed),
               WS__HTTP_INVALID);
}

/* Fail fast: garbage is refused at once, not after a CRLFCRLF arrives. */
Test(parse, invalid_detected_before_head_completes) {
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0;
  cr_expect_eq(parse("\x16\x03\x01", 3, h, MAXH, &v, &consumed),
               WS__HTTP_INVALID);
  cr_expect_eq(parse("GET / HTTP/1.1\r\nBad Name", 24, h, MAXH, &v, &consumed),
               WS__HTTP_INVALID);
}

Test(parse, header_count_limit) {
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0, n = strlen(valid_req);
  cr_expect_eq(parse(valid_req, n, h, 6, &v, &consumed), WS__HTTP_COMPLETE);
  cr_expect_eq(v.header_count, 6);
  cr_expect_eq(parse(valid_req, n, h, 5, &v, &consumed), WS__HTTP_TOO_MANY);
  cr_expect_eq(parse(valid_req, n, h, 0, &v, &consumed), WS__HTTP_TOO_MANY);
  /* Refused as soon as the 6th header starts, without waiting for more. */
  const char *sixth = strstr(valid_req, "Origin");
  size_t upto = (size_t)(sixth - valid_req) + 1;
  cr_expect_eq(parse(valid_req, upto, h, 5, &v, &consumed), WS__HTTP_TOO_MANY);
  cr_expect_eq(parse(valid_req, upto - 1, h, 5, &v, &consumed),
               WS__HTTP_INCOMPLETE);
}

/* Writes to headers[] stay within max_headers. */
Test(parse, header_limit_respects_array_bounds) {
  test_guard g;
  ws__reqview v;
  size_t consumed = 0;
  test_guard_init(&g, 2 * sizeof(ws_header));
  /* Two slots right before the wall: a third write would crash. */
  ws_header *h = (ws_header *)(void *)(g.wall - 2 * sizeof(ws_header));
  cr_expect_eq(parse(valid_req, strlen(valid_req), h, 2, &v, &consumed),
               WS__HTTP_TOO_MANY);
  test_guard_free(&g);
}

/* ---- header helpers ----------------------------------------------------- */

Test(headers, find_and_count_case_insensitive) {
  ws_header h[MAXH];
  ws__reqview v;
  cr_assert_eq(parse_str("GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n",
                         h, &v),
               WS__HTTP_COMPLETE);
  const ws_header *f = ws__find_header(h, v.header_count, "X-a");
  cr_assert_not_null(f);
  cr_expect(slice_eq(f->value, f->value_len, "1"));
  cr_expect_eq(ws__count_header(h, v.header_count, "X-A"), 2);
  cr_expect_eq(ws__count_header(h, v.header_count, "x-b"), 1);
  cr_expect_eq(ws__count_header(h, v.header_count, "X-"), 0);
  cr_expect_null(ws__find_header(h, v.header_count, "X-C"));
  cr_expect_null(ws__find_header(h, 0, "X-A"));
}

Test(headers, has_token) {
  static const struct {
    const char *value, *token;
    int want;
  } t[] = {
      {"Upgrade", "upgrade", 1},          {"keep-alive, Upgrade", "upgrade", 1},
      {"keep-alive,upgrade", "upgrade", 1}, {" \tUPGRADE\t ", "upgrade", 1},
      {"a,,upgrade,", "upgrade", 1},       {"upgrade-x", "upgrade", 0},
      {"x-upgrade", "upgrade", 0},         {"up grade", "upgrade", 0},
      {"", "upgrade", 0},                  {",", "upgrade", 0},
      {"websocket", "websocket", 1},       {"WebSocket", "websocket", 1},
      {"h2c, websocket", "websocket", 1},  {"websocket/13", "websocket", 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    cr_expect_eq(ws__has_token(t[i].value, strlen(t[i].value), t[i].token),
                 t[i].want, "case %zu: '%s'", i, t[i].value);
  cr_expect_eq(ws__has_token(NULL, 0, "upgrade"), 0);
}

/* ---- RFC 6455 4.2.1 checks --------------------------------------------- */

static void validate_raw(const char *req, ws__upgrade_check *out) {
  static ws_header h[MAXH];
  ws__reqview v;
  cr_assert_eq(parse_str(req, h, &v), WS__HTTP_COMPLETE, "parse: %s", req);
  ws__upgrade_validate(&v, out);
}

#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"
#define UPG "Upgrade: websocket\r\n"
#define CON "Connection: Upgrade\r\n"
#define HOST "Host: example.com\r\n"

Test(validate, valid_upgrade) {
  ws__upgrade_check c;
  validate_raw(valid_req, &c);
  cr_expect_eq(c.status, 0);
  cr_expect_null(c.reason);
  cr_expect_eq(c.is_upgrade, 1);
  cr_expect(slice_eq(c.key, c.key_len, "dGhlIHNhbXBsZSBub25jZQ=="));
  validate_raw(valid_req_lf, &c);
  cr_expect_eq(c.status, 0);
}

Test(validate, token_lists_and_case) {
  static const char *const ok[] = {
      "GET / HTTP/1.1\r\n" HOST "Upgrade: WebSocket\r\n"
      "Connection: keep-alive, Upgrade\r\n" KEY VER "\r\n",
      "GET / HTTP/1.1\r\n" HOST "upgrade: h2c, websocket\r\n"
      "CONNECTION: UPGRADE\r\n" KEY VER "\r\n",
      /* No content announced; a Host as an IP literal with a port. */
      "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n" UPG CON KEY VER
      "Content-Length: 0\r\ncontent-length: 00\r\n\r\n",
      /* Tokens split across repeated header lines. */
      "GET / HTTP/1.1\r\n" HOST "Upgrade: h2c\r\n" UPG
      "Connection: keep-alive\r\n" CON KEY VER "\r\n",
      "GET / HTTP/1.9\r\n" HOST UPG CON KEY VER "\r\n",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    ws__upgrade_check c;
    validate_raw(ok[i], &c);
    cr_expect_eq(c.status, 0, "ok[%zu]: %s", i, c.reason);
    cr_expect_eq(c.is_upgrade, 1);
  }
}

typedef struct refusal {
  const char *req;
  int status;
  const char *reason;
  int is_upgrade;
} refusal;

static const refusal refusals[] = {
    {"POST / HTTP/1.1\r\n" HOST UPG CON KEY VER "\r\n", 400,
     "method must be GET", 1},
    {"get / HTTP/1.1\r\n" HOST UPG CON KEY VER "\r\n", 400,
     "method must be GET", 1},
    /* GET's prefix and an extension of it are not GET (review 8). */
    {"GETX / HTTP/1.1\r\n" HOST UPG CON KEY VER "\r\n", 400,
     "method must be GET", 1},
    {"GE / HTTP/1.1\r\n" HOST UPG CON KEY VER "\r\n", 400,
     "method must be GET", 1},
    {"GET / HTTP/1.0\r\n" HOST UPG CON KEY VER "\r\n", 400,
     "HTTP/1.1 required", 1},
    {"GET / HTTP/1.1\r\n" UPG CON KEY VER "\r\n", 400, "missing Host header",
     1},
    {"GET / HTTP/1.1\r\n" HOST HOST UPG CON KEY VER "\r\n", 400,
     "duplicate Host header", 1},
    {"GET / HTTP/1.1\r\n" HOST CON KEY VER "\r\n", 426,
     "missing or invalid Upgrade header", 0},
    {"GET / HTTP/1.1\r\n" HOST "Upgrade: h2c\r\n" CON KEY VER "\r\n", 426,
     "missing or invalid Upgrade header", 0},
    {"GET / HTTP/1.1\r\n" HOST "Upgrade: websocket2\r\n" CON KEY VER "\r\n",
     426, "missing or invalid Upgrade header", 0},
    {"GET / HTTP/1.1\r\n" HOST UPG KEY VER "\r\n", 400,
     "missing Connection: Upgrade", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG "Connection: keep-alive\r\n" KEY VER "\r\n",
     400, "missing Connection: Upgrade", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY "\r\n", 426,
     "unsupported Sec-WebSocket-Version", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY "Sec-WebSocket-Version: 8\r\n\r\n",
     426, "unsupported Sec-WebSocket-Version", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY
     "Sec-WebSocket-Version: 13, 8\r\n\r\n",
     426, "unsupported Sec-WebSocket-Version", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY VER VER "\r\n", 400,
     "duplicate Sec-WebSocket-Version header", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON VER "\r\n", 400,
     "missing Sec-WebSocket-Key", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY KEY VER "\r\n", 400,
     "duplicate Sec-WebSocket-Key header", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON "Sec-WebSocket-Key: hello\r\n" VER
     "\r\n",
     400, "invalid Sec-WebSocket-Key", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON /* 15 bytes */
     "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n" VER "\r\n",
     400, "invalid Sec-WebSocket-Key", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON /* 17 bytes */
     "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n" VER "\r\n",
     400, "invalid Sec-WebSocket-Key", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON "Sec-WebSocket-Key:\r\n" VER "\r\n",
     400, "invalid Sec-WebSocket-Key", 1},
    /* RFC 9112 3.2: a Host whose value is no uri-host[:port] is a 400. */
    {"GET / HTTP/1.1\r\nHost: example.com/evil\r\n" UPG CON KEY VER "\r\n",
     400, "invalid Host header", 1},
    {"GET / HTTP/1.1\r\nHost: exa mple.com\r\n" UPG CON KEY VER "\r\n",
     400, "invalid Host header", 1},
    {"GET / HTTP/1.1\r\nHost: u@h\r\n" UPG CON KEY VER "\r\n", 400,
     "invalid Host header", 1},
    /* Content would be read as frames (RFC 9110 7.8: the client sends it
     * before it speaks WebSocket). */
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY VER "Content-Length: 5\r\n\r\n",
     400, "an upgrade request has no content", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY VER "Content-Length:\r\n\r\n",
     400, "an upgrade request has no content", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY VER
     "Transfer-Encoding: chunked\r\n\r\n",
     400, "an upgrade request has no content", 1},
    {"GET / HTTP/1.1\r\n" HOST UPG CON KEY VER "Content-Length: 0\r\n"
     "transfer-encoding: identity\r\n\r\n",
     400, "an upgrade request has no content", 1},
    /* Plain HTTP (e.g. a page): not an upgrade, first failing check wins. */
    {"GET / HTTP/1.1\r\n" HOST "\r\n", 426,
     "missing or invalid Upgrade header", 0},
    {"GET / HTTP/1.0\r\n\r\n", 400, "HTTP/1.1 required", 0},
};

Test(validate, each_refusal_exact_status_and_reason) {
  for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
    ws__upgrade_check c;
    validate_raw(refusals[i].req, &c);
    cr_expect_eq(c.status, refusals[i].status, "refusals[%zu]", i);
    cr_expect_str_eq(c.reason ? c.reason : "(null)", refusals[i].reason,
                     "refusals[%zu]", i);
    cr_expect_eq(c.is_upgrade, refusals[i].is_upgrade, "refusals[%zu]", i);
    cr_expect_null(c.key, "refusals[%zu]", i);
  }
}

/* ---- origin ---------------------------------------------------------- */

static int origin_ok(const char *host, const char *origin,
                     const char *const *allowed, size_t n) {
  char req[512];
  static ws_header h[MAXH];
  ws__reqview v;
  int len = snprintf(req, sizeof req, "GET / HTTP/1.1\r\n%s%s%s%s%s\r\n",
                     host ? "Host: " : "", host ? host : "",
                     host ? "\r\n" : "", origin ? origin : "",
                     origin ? "\r\n" : "");
  cr_assert(len > 0 && (size_t)len < sizeof req);
  cr_assert_eq(parse_str(req, h, &v), WS__HTTP_COMPLETE, "%s", req);
  return ws__origin_allowed(&v, allowed, n);
}

Test(origin, rules) {
  static const char *const list[] = {"https://App.Example.org", NULL,
                                     "null"};
  cr_expect_eq(origin_ok("example.com", NULL, NULL, 0), 1);
  cr_expect_eq(origin_ok("example.com", "Origin: http://example.com", NULL, 0),
               1);
  cr_expect_eq(origin_ok("example.com", "Origin: https://EXAMPLE.com", NULL,
                         0),
               1);
  cr_expect_eq(origin_ok("Example.com:8080",
                         "Origin: http://example.com:8080", NULL, 0),
               1);
  cr_expect_eq(origin_ok("example.com", "Origin: http://example.com:8080",
                         NULL, 0),
               0);
  cr_expect_eq(origin_ok("example.com", "Origin: http://evil.com", NULL, 0),
               0);
  cr_expect_eq(origin_ok("example.com", "Origin: http://example.com.evil.com",
                         NULL, 0),
               0);
  cr_expect_eq(origin_ok("example.com", "Origin: http://example.com/", NULL,
                         0),
               0);
  cr_expect_eq(origin_ok("example.com", "Origin: example.com", NULL, 0), 0);
  cr_expect_eq(origin_ok("example.com", "Origin: null", NULL, 0), 0);
  cr_expect_eq(origin_ok(NULL, "Origin: http://example.com", NULL, 0), 0);
  cr_expect_eq(origin_ok("", "Origin: http://", NULL, 0), 0);
  /* The allow list: exact, case-insensitive; NULL entries skipped. */
  cr_expect_eq(origin_ok("example.com", "Origin: https://app.example.org",
                         list, 3),
               1);
  cr_expect_eq(origin_ok("example.com", "Origin: https://app.example.org:1",
                         list, 3),
               0);
  cr_expect_eq(origin_ok("example.com", "Origin: null", list, 3), 1);
  cr_expect_eq(origin_ok("example.com", "Origin: http://example.com", list, 3),
               1);
}

/* RFC 9112 3.2.2: with an absolute-form target the server's host is the
 * target's authority, not Host: an Origin equal to Host but not to the
 * target names another site. */
Test(origin, absolute_form_compares_with_the_target_authority) {
  static ws_header h[MAXH];
  ws__reqview v;
  cr_assert_eq(parse_str("GET http://example.com/ws HTTP/1.1\r\n"
                         "Host: evil.example\r\n"
                         "Origin: http://evil.example\r\n\r\n",
                         h, &v),
               WS__HTTP_COMPLETE);
  cr_expect_eq(ws__origin_allowed(&v, NULL, 0), 0);
  cr_assert_eq(parse_str("GET http://example.com:81 HTTP/1.1\r\n"
                         "Host: other\r\n"
                         "Origin: https://EXAMPLE.com:81\r\n\r\n",
                         h, &v),
               WS__HTTP_COMPLETE);
  cr_expect_eq(ws__origin_allowed(&v, NULL, 0), 1);
}

/* ---- responses --------------------------------------------------------- */

static const char resp_101[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "\r\n";

Test(response, exact_101) {
  char out[256];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  size_t n = ws__response_101(out, sizeof out, key, strlen(key), NULL, NULL);
  cr_assert_eq(n, strlen(resp_101));
  cr_expect(memcmp(out, resp_101, n) == 0);
}

Test(response, exact_101_with_subprotocol) {
  static const char want[] =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      "Sec-WebSocket-Protocol: chat.v1\r\n"
      "\r\n";
  char out[256];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  size_t n = ws__response_101(out, sizeof out, key, strlen(key), "chat.v1",
                              NULL);
  cr_assert_eq(n, strlen(want));
  cr_expect(memcmp(out, want, n) == 0);
}

Test(response, small_cap_101_writes_nothing) {
  char out[256];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  size_t need = strlen(resp_101);
  memset(out, '#', sizeof out);
  cr_expect_eq(ws__response_101(out, need - 1, key, strlen(key), NULL, NULL), need);
  for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], '#');
  cr_expect_eq(ws__response_101(out, need, key, strlen(key), NULL, NULL), need);
  cr_expect_eq(ws__response_101(NULL, 0, key, strlen(key), NULL, NULL), need);
}

Test(response, exact_refusal_400) {
  static const char want[] = "HTTP/1.1 400 Bad Request\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Length: 20\r\n"
                             "Connection: close\r\n"
                             "\r\n"
                             "missing Host header\n";
  char out[256];
  const char *body = "missing Host header\n";
  size_t n =
      ws__response_http(out, sizeof out, 400, NULL, NULL, NULL, body,
                        strlen(body));
  cr_assert_eq(n, strlen(want));
  cr_expect(memcmp(out, want, n) == 0);
}

/* RFC 9110 15.5.22: a 426 MUST name the protocol to upgrade to; 7.8: the
 * sender of Upgrade lists "upgrade" in Connection. */
Test(response, exact_426_with_upgrade_and_version_headers) {
  static const char want[] = "HTTP/1.1 426 Upgrade Required\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Length: 34\r\n"
                             "Connection: Upgrade, close\r\n"
                             "Upgrade: websocket\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "\r\n"
                             "unsupported Sec-WebSocket-Version\n";
  char out[256];
  const char *body = "unsupported Sec-WebSocket-Version\n";
  size_t n = ws__response_http(out, sizeof out, 426, NULL, WS__426_HEADERS,
                               NULL, body, strlen(body));
  cr_assert_eq(n, strlen(want));
  cr_expect(memcmp(out, want, n) == 0);
}

Test(response, http_sizing_and_exact_fit) {
  static const char want[] = "HTTP/1.1 200 OK\r\n"
                             "Content-Type: text/html\r\n"
                             "Content-Length: 0\r\n"
                             "Connection: close\r\n"
                             "\r\n";
  char out[128];
  size_t need = ws__response_http(NULL, 0, 200, "text/html", NULL, NULL,
                                  NULL, 0);
  cr_assert_eq(need, strlen(want));
  memset(out, '#', sizeof out);
  cr_expect_eq(ws__response_http(out, need - 1, 200, "text/html", NULL, NULL,
                                 NULL, 0),
               need);
  for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], '#');
  cr_expect_eq(ws__response_http(out, need, 200, "text/html", NULL, NULL,
                                 NULL, 0),
               need);
  cr_expect(memcmp(out, want, need) == 0);
  cr_expect_eq(out[need], '#'); /* no NUL written past the response */
}

Test(response, http_unknown_status_and_binary_body) {
  static const char want[] = "HTTP/1.1 599 Unknown\r\n"
                             "Content-Type: application/octet-stream\r\n"
                             "Content-Length: 3\r\n"
                             "Connection: close\r\n"
                             "\r\n"
                             "a\0b";
  char out[256];
  size_t n = ws__response_http(out, sizeof out, 599,
                               "application/octet-stream", NULL, NULL,
                               "a\0b", 3);
  cr_assert_eq(n, sizeof want - 1);
  cr_expect(memcmp(out, want, n) == 0);
}

Test(response, status_text) {
  cr_expect_str_eq(ws__status_text(101), "Switching Protocols");
  cr_expect_str_eq(ws__status_text(200), "OK");
  cr_expect_str_eq(ws__status_text(400), "Bad Request");
  cr_expect_str_eq(ws__status_text(403), "Forbidden");
  cr_expect_str_eq(ws__status_text(404), "Not Found");
  cr_expect_str_eq(ws__status_text(409), "Conflict");
  cr_expect_str_eq(ws__status_text(426), "Upgrade Required");
  cr_expect_str_eq(ws__status_text(431), "Request Header Fields Too Large");
  cr_expect_str_eq(ws__status_text(503), "Service Unavailable");
  cr_expect_str_eq(ws__status_text(0), "Unknown");
  cr_expect_str_eq(ws__status_text(-1), "Unknown");
}

/* ---- percent-decoding --------------------------------------------------- */

Test(url_decode, decodes) {
  char out[64];
  long n = ws__url_decode(out, "%2Fa%20b%c3%A9+c", 16, 0);
  cr_assert_eq(n, 8);
  cr_expect(memcmp(out, "/a b\xc3\xa9+c", 8) == 0);
  n = ws__url_decode(out, "a+b%2B", 6, 1);
  cr_assert_eq(n, 4);
  cr_expect(memcmp(out, "a b+", 4) == 0);
  cr_expect_eq(ws__url_decode(out, "", 0, 1), 0);
}

Test(url_decode, in_place) {
  char buf[] = "%41%42c%2f";
  long n = ws__url_decode(buf, buf, strlen(buf), 1);
  cr_assert_eq(n, 4);
  cr_expect(memcmp(buf, "ABc/", 4) == 0);
}

Test(url_decode, rejects) {
  static const char *const bad[] = {"%", "a%", "%2", "a%2", "%zz", "%2g",
                                    "%g2", "%00", "a%00b", "%%41"};
  char out[16];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_eq(ws__url_decode(out, bad[i], strlen(bad[i]), 1), -1,
                 "bad[%zu] '%s'", i, bad[i]);
  cr_expect_eq(ws__url_decode(out, "a\0b", 3, 0), -1);
}

/* Escapes cut off at the slice end are refused even if bytes follow. */
Test(url_decode, stops_at_n) {
  char out[16];
  cr_expect_eq(ws__url_decode(out, "ab%41", 4, 0), -1);
  cr_expect_eq(ws__url_decode(out, "ab%41", 2, 0), 2);
}

/* ---- found by mutation testing ------------------------------------------ */

/* A '*' target is OPTIONS's "*" alone: a byte after the '*' is refused as
 * soon as it arrives, not once the request line ends. */
Test(parse, star_target_refused_at_its_second_byte) {
  ws_header h[MAXH];
  ws__reqview v;
  size_t consumed = 0;
  cr_expect_eq(parse("OPTIONS **", 10, h, MAXH, &v, &consumed),
               WS__HTTP_INVALID);
  cr_expect_eq(parse("OPTIONS *?", 10, h, MAXH, &v, &consumed),
               WS__HTTP_INVALID);
  cr_expect_eq(parse("GET *x", 6, h, MAXH, &v, &consumed), WS__HTTP_INVALID);
  cr_expect_eq(parse("OPTIONS *", 9, h, MAXH, &v, &consumed),
               WS__HTTP_INCOMPLETE);
}

/* Every visible ASCII byte may appear in a target, '!' (0x21) and '~'
 * (0x7E) at the edges of the range included. */
Test(parse, target_bytes_at_the_edges_of_vchar) {
  ws_header h[MAXH];
  ws__reqview v;
  cr_assert_eq(parse_str("GET /~user/!ws?x=~1! HTTP/1.1\r\nHost: h\r\n\r\n",
                         h, &v),
               WS__HTTP_COMPLETE);
  cr_expect(slice_eq(v.path, v.path_len, "/~user/!ws"));
  cr_expect(slice_eq(v.query, v.query_len, "x=~1!"));
}

/* '`' is a tchar (RFC 9110 5.6.2): in a header name, a method and a
 * subprotocol name. */
Test(parse, backtick_is_a_tchar) {
  ws_header h[MAXH];
  ws__reqview v;
  cr_assert_eq(parse_str("G`T / HTTP/1.1\r\nX-`a: v\r\n\r\n", h, &v),
               WS__HTTP_COMPLETE);
  cr_expect(slice_eq(v.method, v.method_len, "G`T"));
  cr_assert_eq(v.header_count, 1);
  cr_expect(slice_eq(h[0].name, h[0].name_len, "X-`a"));
  cr_expect_eq(ws__is_token("chat`v1"), 1);
  cr_expect_eq(ws__is_token("chat v1"), 0);
}

/* Every status the table names, with its RFC 9110 reason phrase. */
Test(response, status_text_whole_table) {
  static const struct {
    int status;
    const char *text;
  } t[] = {{204, "No Content"}, {301, "Moved Permanently"}, {302, "Found"},
           {304, "Not Modified"}, {401, "Unauthorized"},
           {405, "Method Not Allowed"}, {408, "Request Timeout"},
           {413, "Content Too Large"}, {429, "Too Many Requests"},
           {500, "Internal Server Error"}, {501, "Not Implemented"}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    cr_expect_str_eq(ws__status_text(t[i].status), t[i].text, "%d",
                     t[i].status);
  {
    static const char want[] = "HTTP/1.1 413 Content Too Large\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 4\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "big\n";
    char out[256];
    size_t n = ws__response_http(out, sizeof out, 413, NULL, NULL, NULL,
                                 "big\n", 4);
    cr_assert_eq(n, strlen(want));
    cr_expect(memcmp(out, want, n) == 0);
  }
}

/* A 1xx status has no content (RFC 9110 6.4.1): no Content-Type nor
 * Content-Length in its head, from 100 up to 199. */
Test(response, informational_status_has_no_content_headers) {
  static const char want[] = "HTTP/1.1 199 Unknown\r\n"
                             "Connection: close\r\n"
                             "\r\n";
  char out[128];
  size_t n = ws__response_http(out, sizeof out, 199, "text/plain", NULL, NULL,
                               NULL, 0);
  cr_assert_eq(n, strlen(want));
  cr_expect(memcmp(out, want, n) == 0);
  cr_expect_eq(ws__status_has_content(100), 0);
  cr_expect_eq(ws__status_has_content(103), 0);
  cr_expect_eq(ws__status_has_content(199), 0);
  cr_expect_eq(ws__status_has_content(200), 1);
  cr_expect_eq(ws__status_has_content(204), 0);
  cr_expect_eq(ws__status_has_content(205), 0); /* RFC 9110 15.3.6 */
  cr_expect_eq(ws__status_has_content(206), 1);
  cr_expect_eq(ws__status_has_content(304), 0);
}

/* The minor version is one DIGIT: the bytes just below '0' and just above
 * '9' are refused, not read as a negative or a two-digit version. */
Test(parse, version_minor_digit_edges) {
  ws_header h[MAXH];
  ws__reqview v;
  cr_expect_eq(parse_str("GET / HTTP/1./\r\n\r\n", h, &v), WS__HTTP_INVALID);
  cr_expect_eq(parse_str("GET / HTTP/1.:\r\n\r\n", h, &v), WS__HTTP_INVALID);
  cr_assert_eq(parse_str("GET / HTTP/1.0\r\n\r\n", h, &v), WS__HTTP_COMPLETE);
  cr_expect_eq(v.http_minor, 0);
  cr_assert_eq(parse_str("GET / HTTP/1.9\r\n\r\n", h, &v), WS__HTTP_COMPLETE);
  cr_expect_eq(v.http_minor, 9);
}

/* Host = uri-host [":" port]: checked as a host, not as a set of bytes
 * (review 15: "host:abc", "[::1", "a:b:c" and "a,b" passed). */
Test(parse, host_value_is_host_and_port) {
  static const char *const good[] = {
      "example.com", "example.com:8081", "EXAMPLE.com:65535", "127.0.0.1",
      "127.0.0.1:80", "[::1]", "[::1]:8081", "[::ffff:127.0.0.1]:1",
      "localhost:", "xn--bcher-kva.example", "a%20b", "",
  };
  static const char *const bad[] = {
      "host:abc", "host:123456", "[::1", "::1", "a:b:c", "a,b", "[]",
      "[::1]x", "[::1]:8x", "[g::1]", "h/x", "u@h", "a b", "h:80:80",
      "a%zz", "a%2", "%", /* a '%' starts two hex digits */
  };
  size_t i;
  for (i = 0; i < sizeof good / sizeof good[0]; i++)
    cr_expect(ws__host_value_ok(good[i], strlen(good[i])), "%s", good[i]);
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect(!ws__host_value_ok(bad[i], strlen(bad[i])), "%s", bad[i]);
  cr_expect(!ws__host_value_ok("[::1\0]", 6), "a NUL inside brackets");
}

/* Empty lines before the request line are skipped (RFC 9112 2.2); a CR
 * not followed by LF there is still malformed. */
Test(parse, empty_lines_before_the_request_line) {
  static const char req[] = "\r\n\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
  ws_header h[4];
  ws__reqview v;
  size_t used = 0;
  cr_assert_eq(ws__http_parse(req, sizeof req - 1, h, 4, &v, &used),
               WS__HTTP_COMPLETE);
  cr_assert_eq(used, sizeof req - 1);
  cr_assert_eq(v.path_len, 2);
  cr_assert_eq(ws__http_parse("\r\n", 2, h, 4, &v, &used),
               WS__HTTP_INCOMPLETE);
  cr_assert_eq(ws__http_parse("\r", 1, h, 4, &v, &used), WS__HTTP_INCOMPLETE);
  cr_assert_eq(ws__http_parse("\rGET", 4, h, 4, &v, &used), WS__HTTP_INVALID);
  /* A fragment is never part of a request target (RFC 9112 3.2). */
  cr_assert_eq(ws__http_parse("GET /ws#x HTTP/1.1\r\n\r\n", 22, h, 4, &v,
                              &used), WS__HTTP_INVALID);
}

/* ---- parser: resumed from a mark --------------------------------------- */

/* Feeds req's prefixes growing by step to ws__http_parse_resume, as
 * upgrade.c does for a head arriving in pieces: every answer (and on
 * COMPLETE everything filled in) is the whole parse's of that prefix. */
static void resume_like_whole(const char *req, size_t n, size_t step,
                              size_t maxh) {
  ws_header h1[MAXH], h2[MAXH];
  ws__reqview v1, v2;
  ws__http_mark m = {0, 0};
  size_t len = 0, u1 = 0, u2 = 0, i;
  int r1, r2 = WS__HTTP_INCOMPLETE;
  while (r2 == WS__HTTP_INCOMPLETE && len < n) {
    len = len + step < n ? len + step : n;
    r1 = ws__http_parse(req, len, h1, maxh, &v1, &u1);
    r2 = ws__http_parse_resume(req, len, &m, h2, maxh, &v2, &u2);
    cr_assert_eq(r2, r1, "%.20s...: prefix %zu, step %zu", req, len, step);
  }
  if (r2 != WS__HTTP_COMPLETE) return;
  cr_assert_eq(u2, u1);
  cr_assert_eq(v2.header_count, v1.header_count);
  cr_assert(v2.method == v1.method && v2.path == v1.path &&
            v2.query == v1.query && v2.path_len == v1.path_len);
  for (i = 0; i < v1.header_count; i++)
    cr_assert(h2[i].name == h1[i].name && h2[i].value == h1[i].value &&
              h2[i].value_len == h1[i].value_len, "header %zu", i);
}

Test(parse, resumed_parse_answers_as_the_whole_one) {
  static const char lead[] = "\r\n\nGET /x?q HTTP/1.1\r\nA: 1\r\n\r\n";
  static const size_t steps[] = {1, 2, 3, 7, 40};
  for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
    resume_like_whole(valid_req, strlen(valid_req), steps[k], MAXH);
    resume_like_whole(valid_req_lf, strlen(valid_req_lf), steps[k], MAXH);
    resume_like_whole(lead, strlen(lead), steps[k], MAXH);
    for (size_t i = 0; i < 3; i++) /* past max_headers: TOO_MANY */
      resume_like_whole(valid_req, strlen(valid_req), steps[k], i);
    for (size_t i = 0; i < sizeof invalid_reqs / sizeof invalid_reqs[0]; i++)
      resume_like_whole(invalid_reqs[i], strlen(invalid_reqs[i]), steps[k],
                        MAXH);
  }
}

/* The point of the mark (review: a head dribbled a line at a time was read
 * again from its first byte at every line end, O(lines x bytes)): the
 * bytes before it are not read at all. They lie on a page that cannot be
 * read here; every later prefix short of the whole head is parsed from
 * the mark alone. */
Test(parse, resumed_parse_reads_nothing_before_its_mark) {
  size_t n = strlen(valid_req), page = (size_t)sysconf(_SC_PAGESIZE), i, j;
  unsigned char *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ws_header h[MAXH];
  ws__reqview v;
  size_t used;
  cr_assert(map != MAP_FAILED && n < page);
  cr_assert_eq(mprotect(map, page, PROT_NONE), 0);
  for (i = 1; i < n; i++) {
    ws__http_mark m = {0, 0};
    if (ws__http_parse_resume(valid_req, i, &m, h, MAXH, &v, &used) !=
            WS__HTTP_INCOMPLETE || m.from == 0)
      continue;
    memcpy(map + page, valid_req + m.from, n - m.from);
    for (j = i; j < n; j++) {
      const char *buf = (const char *)map + page - m.from;
      ws__http_mark mj = m;
      cr_assert_eq(ws__http_parse_resume(buf, j, &mj, h, MAXH, &v, &used),
                   ws__http_parse(valid_req, j, h, MAXH, &v, &used),
                   "prefix %zu from the mark of prefix %zu", j, i);
    }
  }
  munmap(map, 2 * page);
}

/* At most WS__HTTP_EMPTY_LINES_MAX empty lines first (review: up to the
 * head's limit, each a re-parse when they dribble in). */
Test(parse, empty_lines_first_are_bounded) {
  char req[64];
  ws_header h[4];
  ws__reqview v;
  size_t used, k;
  for (k = 0; k <= WS__HTTP_EMPTY_LINES_MAX + 1; k++) {
    int n = snprintf(req, sizeof req, "%.*sGET / HTTP/1.1\r\n\r\n", (int)k,
                     "\n\n\n\n\n\n\n\n");
    int rc = ws__http_parse(req, (size_t)n, h, 4, &v, &used);
    cr_expect_eq(rc, k <= WS__HTTP_EMPTY_LINES_MAX ? WS__HTTP_COMPLETE
                                                   : WS__HTTP_INVALID,
                 "%zu empty lines", k);
  }
}
