/*
 * libFuzzer target: the opening handshake's pure functions on arbitrary
 * bytes: ws__http_parse, ws__upgrade_validate, ws__origin_allowed,
 * ws__request_build / ws__request_free, ws__response_101.
 *
 * Input: byte 0 picks max_headers (1..64), whether headers are kept in the
 * request and which allocation (if any) fails; byte 1 picks a prefix
 * length; the rest is the request. Each buffer handed to the parser is an
 * exact-size heap copy, so ASan reports any read past its end.
 *
 * Invariants (abort on violation):
 *   - COMPLETE: 0 < consumed <= len, the head ends with LF, every slice
 *     (method, path, query, authority, header names and values) lies
 *     inside buf[0..consumed) (but an absolute-form target's empty path,
 *     the static "/"), the path starts with '/' or is "*", header names
 *     are non-empty tokens, values carry no surrounding whitespace,
 *     header_count <= max_headers;
 *   - no state: a shorter prefix of a COMPLETE head is INCOMPLETE; an
 *     INVALID/TOO_MANY prefix stays so for the longer buffer; an INCOMPLETE
 *     buffer has only INCOMPLETE prefixes; parsing buf[0..consumed) alone
 *     gives the same result;
 *   - resumed (ws__http_parse_resume) from the mark an INCOMPLETE prefix
 *     left, the whole buffer gets the whole parse's verdict (and length);
 *   - upgrade check: status 0/400/426 with a reason exactly when non-zero,
 *     a 24-byte key inside the buffer on success, is_upgrade on success;
 *   - request: built exactly when the path and query decode, its accessors
 *     return the view's values, its size is what was allocated, and
 *     freeing it leaves no live allocation; allocation failure is WS_ENOMEM;
 *     more than WS_MAX_QUERY_PARAMS query parameters is WS_ELIMIT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#define MAXH 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const char *p, size_t n, const char *buf, size_t len) {
  return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static int parse(const uint8_t *src, size_t len, size_t maxh, ws_header *h,
                 ws__reqview *v, size_t *consumed) {
  char *buf = (char *)fz_dup(src, len);
  int r;
  *consumed = 0;
  r = ws__http_parse(buf, len, h, maxh, v, consumed);
  free(buf);
  return r;
}

static void check_complete(const char *buf, size_t len, size_t maxh,
                           const ws__reqview *v, const ws_header *h,
                           size_t consumed) {
  size_t i;
  FZ_CHECK(consumed > 0 && consumed <= len, "consumed out of range");
  FZ_CHECK(buf[consumed - 1] == '\n', "head does not end with LF");
  FZ_CHECK(v->headers == h, "view->headers is not the caller's array");
  FZ_CHECK(v->header_count <= maxh, "more headers than max_headers");
  FZ_CHECK(v->http_minor >= 0 && v->http_minor <= 9, "bad http_minor");
  FZ_CHECK(v->method_len > 0 &&
               inside(v->method, v->method_len, buf, consumed),
           "method slice outside the head");
  for (i = 0; i < v->method_len; i++)
    FZ_CHECK(fz_is_tchar((unsigned char)v->method[i]), "method not a token");
  /* An absolute-form target's empty path is the static "/" (RFC 9110
   * 4.2.3), the one slice outside the head. */
  FZ_CHECK(inside(v->path, v->path_len, buf, consumed) ||
               (v->authority && v->path_len == 1 && v->path[0] == '/'),
           "path slice outside the head");
  FZ_CHECK(v->path_len > 0 && (v->path[0] == '/' || (v->path_len == 1 &&
                                                     v->path[0] == '*')),
           "path neither \"/...\" nor \"*\"");
  FZ_CHECK(v->authority == NULL ||
               (v->authority_len > 0 &&
                memchr(v->authority, '@', v->authority_len) == NULL &&
                inside(v->authority, v->authority_len, buf, consumed)),
           "authority empty or outside the head");
  FZ_CHECK(memchr(v->path, '?', v->path_len) == NULL, "'?' in the path");
  if (v->query) {
    FZ_CHECK(inside(v->query, v->query_len, buf, consumed),
             "query slice outside the head");
    FZ_CHECK(v->query[-1] == '?' &&
                 (!inside(v->path, v->path_len, buf, consumed) ||
                  v->query == v->path + v->path_len + 1),
             "query does not follow the path's '?'");
  } else {
    FZ_CHECK(v->query_len == 0, "query_len without a query");
  }
  FZ_CHECK(v->path_len + (v->query ? v->query_len + 1 : 0) > 0,
           "empty request target");
  for (i = 0; i < v->header_count; i++) {
    const ws_header *x = &h[i];
    size_t k;
    FZ_CHECK(x->name_len > 0 && inside(x->name, x->name_len, buf, consumed),
             "header name outside the head");
    FZ_CHECK(inside(x->value, x->value_len, buf, consumed),
             "header value outside the head");
    for (k = 0; k < x->name_len; k++)
      FZ_CHECK(fz_is_tchar((unsigned char)x->name[k]),
               "header name not a token");
    if (x->value_len) {
      FZ_CHECK(x->value[0] != ' ' && x->value[0] != '\t' &&
                   x->value[x->value_len - 1] != ' ' &&
                   x->value[x->value_len - 1] != '\t',
               "header value not trimmed");
    }
    for (k = 0; k < x->value_len; k++) {
      unsigned char c = (unsigned char)x->value[k];
      FZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7F), "control byte in value");
    }
  }
}

/* 1 if s decodes (the request builder's rules) into out (cap >= n). */
static long decode(char *out, const char *s, size_t n, int plus) {
  return n ? ws__url_decode(out, s, n, plus) : 0;
}

/* The query's segments as ws_request_query must return them: first
 * occurrence of each name wins. Checks only the first few segments. */
/* The query's parameters: its non-empty '&'-separated segments. */
static size_t query_params(const ws__reqview *v) {
  size_t i, n = 0;
  for (i = 0; v->query && i < v->query_len; i++)
    if (v->query[i] != '&' && (i == 0 || v->query[i - 1] == '&')) n++;
  return n;
}

static int query_decodes(const ws__reqview *v) {
  char *tmp;
  long r;
  size_t i = 0, n = v->query_len;
  if (v->query == NULL) return 1;
  tmp = malloc(n + 1);
  if (tmp == NULL) abort();
  while (i < n) {
    size_t start = i, eq, seg;
    while (i < n && v->query[i] != '&') i++;
    seg = i - start;
    if (seg) {
      const char *e = memchr(v->query + start, '=', seg);
      eq = e ? (size_t)(e - (v->query + start)) : seg;
      r = decode(tmp, v->query + start, eq, 1);
      if (r >= 0 && e) r = decode(tmp, e + 1, seg - eq - 1, 1);
      if (r < 0) {
        free(tmp);
        return 0;
      }
    }
    i++;
  }
  free(tmp);
  return 1;
}

static void check_request(const ws__reqview *v, int with_headers,
                          long fail_at) {
  fz_alloc fa;
  ws_allocator al;
  ws__alloc a;
  ws_request *r;
  int err = 12345;
  char *path;
  long plen;
  size_t i;
  int decodes;

  memset(&fa, 0, sizeof(fa));
  fz_alloc_reset(&fa, fail_at);
  al = fz_allocator(&fa);
  if (ws__alloc_init(&a, &al) != WS_OK) fz_fail("alloc init");
  path = malloc(v->path_len + 1);
  if (path == NULL) abort();
  plen = decode(path, v->path, v->path_len, 0);
  decodes = query_decodes(v);

  r = ws__request_build(&a, v, with_headers, &err);
  if (query_params(v) > WS_MAX_QUERY_PARAMS) {
    FZ_CHECK(r == NULL && err == WS_ELIMIT && fa.live == 0,
             "a request of too many query parameters not WS_ELIMIT");
    free(path);
    return;
  }
  if (r == NULL) {
    FZ_CHECK(fa.live == 0, "failed request build leaked");
    if (fa.failed)
      FZ_CHECK(err == WS_ENOMEM, "allocation failure not WS_ENOMEM");
    else
      FZ_CHECK(err == WS_EPROTO && plen < 0,
               "request refused although its path decodes");
    free(path);
    return;
  }
  FZ_CHECK(plen >= 0, "request built from a path that does not decode");
  /* A query parameter that does not decode is left out and reported. */
  FZ_CHECK(err == (decodes ? WS_OK : WS_EPROTO),
           "WS_EPROTO not exactly when a query parameter fails to decode");
  FZ_CHECK(fa.live == 1, "request is not one allocation");
  FZ_CHECK((long)ws__request_size(r) == fa.live_bytes,
           "request size differs from its allocation");
  FZ_CHECK(strlen(ws_request_method(r)) == v->method_len &&
               memcmp(ws_request_method(r), v->method, v->method_len) == 0,
           "request method differs from the view");
  FZ_CHECK(strlen(ws_request_path(r)) == (size_t)plen &&
               memcmp(ws_request_path(r), path, (size_t)plen) == 0,
           "request path is not the decoded path");
  FZ_CHECK(ws_request_header_count(r) ==
               (with_headers ? v->header_count : 0),
           "request header count");
  for (i = 0; i < ws_request_header_count(r); i++) {
    const char *name = NULL, *value = NULL;
    const ws_header *h = &v->headers[i];
    FZ_CHECK(ws_request_header_at(r, i, &name, &value) == WS_OK,
             "header_at failed");
    /* A NUL inside a value shortens the C string; the parser refuses
     * control bytes, so lengths must match. */
    FZ_CHECK(strlen(name) == h->name_len &&
                 memcmp(name, h->name, h->name_len) == 0 &&
                 strlen(value) == h->value_len &&
                 memcmp(value, h->value, h->value_len) == 0,
             "kept header differs from the view");
    FZ_CHECK(ws_request_header(r, name) != NULL, "header lookup by name");
  }
  FZ_CHECK(ws_request_header_at(r, i, NULL, NULL) == WS_ENOENT,
           "header_at past the end");
  (void)ws_request_query(r, "device_id");
  (void)ws_request_header(r, "Origin");
  ws__request_free(&a, r);
  FZ_CHECK(fa.live == 0 && fa.live_bytes == 0, "request free leaked");
  free(path);
}

static void check_upgrade(const char *buf, size_t consumed,
                          const ws__reqview *v) {
  static const char *const allowed[] = {"http://example.com", "null"};
  ws__upgrade_check chk;
  char resp[512];
  size_t n;
  int o1, o2;
  memset(&chk, 0x5A, sizeof(chk));
  ws__upgrade_validate(v, &chk);
  FZ_CHECK(chk.status == 0 || chk.status == 400 || chk.status == 426,
           "upgrade status not 0/400/426");
  FZ_CHECK((chk.status != 0) == (chk.reason != NULL),
           "reason set exactly when refused");
  FZ_CHECK(chk.is_upgrade == 0 || chk.is_upgrade == 1, "is_upgrade not 0/1");
  if (chk.status == 0) {
    FZ_CHECK(chk.is_upgrade, "valid upgrade without is_upgrade");
    FZ_CHECK(chk.key_len == 24 && inside(chk.key, chk.key_len, buf, consumed),
             "key slice outside the head");
    FZ_CHECK(v->method_len == 3 && memcmp(v->method, "GET", 3) == 0,
             "valid upgrade with a method other than GET");
    n = ws__response_101(resp, sizeof(resp), chk.key, chk.key_len, "chat",
                         NULL);
    FZ_CHECK(n > 0 && n < sizeof(resp) && memcmp(resp, "HTTP/1.1 101 ", 13) == 0 &&
                 memcmp(resp + n - 4, "\r\n\r\n", 4) == 0,
             "bad 101 response");
  } else if (!chk.is_upgrade) {
    FZ_CHECK(chk.status == 426 || chk.status == 400,
             "non-upgrade refused with an odd status");
  }
  o1 = ws__origin_allowed(v, NULL, 0);
  o2 = ws__origin_allowed(v, allowed, 2);
  FZ_CHECK((o1 == 0 || o1 == 1) && (o2 == 0 || o2 == 1), "origin not 0/1");
  FZ_CHECK(!o1 || o2, "an allow list refused what the default allowed");
  if (!ws__find_header(v->headers, v->header_count, "Origin"))
    FZ_CHECK(o1 && o2, "no Origin header must be allowed");
}

/* buf[0..plen) answered INCOMPLETE: from the mark it leaves, the whole
 * buffer is answered r (consumed bytes when COMPLETE), as parsed whole. */
static void check_resume(const uint8_t *src, size_t plen, size_t len,
                         size_t maxh, int r, size_t consumed) {
  ws__http_mark m = {0, 0};
  ws_header h[MAXH];
  ws__reqview v;
  size_t used = 0;
  char *buf = (char *)fz_dup(src, len);
  FZ_CHECK(ws__http_parse_resume(buf, plen, &m, h, maxh, &v, &used) ==
               WS__HTTP_INCOMPLETE && m.from <= plen,
           "resumable parse of an INCOMPLETE prefix differs");
  FZ_CHECK(ws__http_parse_resume(buf, len, &m, h, maxh, &v, &used) == r &&
               (r != WS__HTTP_COMPLETE || used == consumed),
           "parse resumed from a prefix's mark differs from the whole one");
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ws_header h[MAXH], h2[MAXH];
  ws__reqview v, v2;
  size_t maxh, consumed, consumed2, plen, len;
  const uint8_t *req;
  uint8_t sel, pre;
  char *buf;
  int r, r2;

  if (size < 2) return 0;
  sel = data[0];
  pre = data[1];
  req = data + 2;
  len = size - 2;
  maxh = (size_t)(sel & 63) + 1;

  r = parse(req, len, maxh, h, &v, &consumed);
  FZ_CHECK(r >= WS__HTTP_COMPLETE && r <= WS__HTTP_TOO_MANY, "bad result");

  /* A prefix: COMPLETE heads have INCOMPLETE prefixes; INVALID/TOO_MANY
   * prefixes stay so; INCOMPLETE buffers have INCOMPLETE prefixes. */
  plen = len ? (size_t)pre * len / 256 : 0;
  r2 = parse(req, plen, maxh, h2, &v2, &consumed2);
  if (r == WS__HTTP_COMPLETE && plen < consumed)
    FZ_CHECK(r2 == WS__HTTP_INCOMPLETE, "prefix of a complete head not "
                                        "INCOMPLETE");
  if (r2 == WS__HTTP_INVALID || r2 == WS__HTTP_TOO_MANY)
    FZ_CHECK(r == r2, "longer buffer changed an INVALID/TOO_MANY verdict");
  if (r == WS__HTTP_INCOMPLETE)
    FZ_CHECK(r2 == WS__HTTP_INCOMPLETE, "prefix of an incomplete head not "
                                        "INCOMPLETE");
  if (r2 == WS__HTTP_INCOMPLETE)
    check_resume(req, plen, len, maxh, r, consumed);
  if (r != WS__HTTP_COMPLETE) return 0;

  /* The head alone, in an exact-size copy that the view now points into. */
  buf = (char *)fz_dup(req, consumed);
  r2 = ws__http_parse(buf, consumed, h2, maxh, &v2, &consumed2);
  FZ_CHECK(r2 == WS__HTTP_COMPLETE && consumed2 == consumed,
           "the head alone parses differently");
  FZ_CHECK(v2.header_count == v.header_count && v2.method_len == v.method_len &&
               v2.path_len == v.path_len && v2.query_len == v.query_len &&
               (v2.query == NULL) == (v.query == NULL),
           "the head alone gives a different view");
  check_complete(buf, consumed, maxh, &v2, h2, consumed2);
  check_upgrade(buf, consumed, &v2);
  check_request(&v2, (sel >> 6) & 1, (sel & 0x80) ? 1 : 0);
  free(buf);
  return 0;
}
