/*
 * The opening handshake: an HTTP/1.x request-head parser, the RFC 6455
 * 4.2.1 checks, and the bytes of the 101 and of refusals.
 *
 * The parser is a pure function over the caller's bytes (picohttpparser's
 * model): it keeps no state between calls, so the caller simply calls it
 * again with the longer buffer when it answers INCOMPLETE, from the mark
 * the answer left (ws__http_parse_resume) when the head arrives in many
 * pieces: the lines before it are not read again. It reads bytes
 * strictly in order and checks the bound before every read, so it never
 * looks past buf+len; every malformed byte is refused as soon as it is seen
 * rather than after the whole head has arrived.
 */
#include <string.h>

#include "proto.h"

/* ======================================================================== */
/* Character classes (RFC 9110 5.6.2, 5.5)                                  */
/* ======================================================================== */

static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9'))
    return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int ws__is_token(const char *s) {
  if (s == NULL || *s == '\0') return 0;
  while (*s && is_tchar((unsigned char)*s)) s++;
  return *s == '\0';
}

static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* A byte allowed inside a field value: VCHAR, SP, HTAB or obs-text. */
static int is_field_byte(unsigned char c) {
  return is_ows(c) || (c >= 0x21 && c != 0x7F);
}

int ws__field_text_ok(const char *v) {
  for (; v && *v; v++)
    if ((unsigned char)*v < 0x20 || *v == 0x7F) return 0;
  return 1;
}

int ws__header_well_formed(const ws_header *h) {
  size_t i;
  if (h->name_len == 0) return 0;
  for (i = 0; i < h->name_len; i++)
    if (!is_tchar((unsigned char)h->name[i])) return 0;
  for (i = 0; i < h->value_len; i++)
    if (!is_field_byte((unsigned char)h->value[i])) return 0;
  return 1;
}

static unsigned char ascii_lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

int ws__ascii_caseeq(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen) return 0;
  for (size_t i = 0; i < alen; i++)
    if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
      return 0;
  return 1;
}

/* ======================================================================== */
/* Request-head parser                                                      */
/* ======================================================================== */

/* Every step returns COMPLETE (done, cursor advanced), INCOMPLETE (ran out
 * of bytes before deciding) or INVALID. */
typedef struct cursor {
  const unsigned char *p;
  size_t len;
  size_t pos;
} cursor;

static int at_end(const cursor *c) { return c->pos >= c->len; }

static int expect_byte(cursor *c, unsigned char want) {
  if (at_end(c)) return WS__HTTP_INCOMPLETE;
  if (c->p[c->pos] != want) return WS__HTTP_INVALID;
  c->pos++;
  return WS__HTTP_COMPLETE;
}

/* CRLF, or a bare LF (RFC 9112 2.2 allows a recipient to accept it). A CR
 * not followed by LF is refused. */
static int parse_eol(cursor *c) {
  if (at_end(c)) return WS__HTTP_INCOMPLETE;
  if (c->p[c->pos] == '\r') c->pos++;
  return expect_byte(c, '\n');
}

/* One or more tchars; stops (without consuming) at the first other byte. */
static int parse_token(cursor *c, const char **tok, size_t *tok_len) {
  size_t start = c->pos;
  while (!at_end(c) && is_tchar(c->p[c->pos])) c->pos++;
  if (at_end(c)) return WS__HTTP_INCOMPLETE;
  if (c->pos == start) return WS__HTTP_INVALID;
  *tok = (const char *)c->p + start;
  *tok_len = c->pos - start;
  return WS__HTTP_COMPLETE;
}

/* The length of the scheme prefix "http://" or "https://" (either case)
 * that t[0..n) starts with, else 0. With partial, a t shorter than the
 * prefix that could still become it counts too. */
static size_t scheme_len(const char *t, size_t n, int partial) {
  static const char *const schemes[] = {"http://", "https://"};
  for (size_t i = 0; i < 2; i++) {
    size_t l = strlen(schemes[i]);
    if (n >= l ? ws__ascii_caseeq(t, l, schemes[i], l)
               : partial && ws__ascii_caseeq(t, n, schemes[i], n))
      return l;
  }
  return 0;
}

/* 0 when t[0..n), the first bytes of a target, can begin no target
 * ws__target_path accepts: the parser refuses such a byte when it sees it,
 * as every other. */
static int target_may_start(const char *t, size_t n) {
  if (n == 0 || t[0] == '/') return 1;
  if (t[0] == '*') return n == 1;
  return scheme_len(t, n, 1) != 0;
}

int ws__target_path(ws__reqview *v, const char *t, size_t n) {
  size_t l = scheme_len(t, n, 0), a;
  int star_ok = v->query == NULL && v->method_len == 7 &&
                memcmp(v->method, "OPTIONS", 7) == 0;
  v->authority = NULL;
  v->authority_len = 0;
  if ((n > 0 && t[0] == '/') || (n == 1 && t[0] == '*' && star_ok)) {
    v->path = t;
    v->path_len = n;
    return 0;
  }
  if (l == 0) return -1;
  for (a = l; a < n && t[a] != '/'; a++) {}
  /* No host; or userinfo, which RFC 9110 4.2.4 has a recipient treat as
   * an error (it lets "http://good.example@evil.example/" mislead). */
  if (a == l || memchr(t + l, '@', a - l)) return -1;
  v->authority = t + l;
  v->authority_len = a - l;
  v->path = a < n ? t + a : "/";
  v->path_len = a < n ? n - a : 1;
  return 0;
}

/* A byte of a request target: visible ASCII but '#'. A fragment is never
 * sent (RFC 9112 3.2: no '#' in any request-target form); one would
 * otherwise end up inside a query value. */
static int is_target_byte(unsigned char c) {
  return c >= 0x21 && c <= 0x7E && c != '#';
}

int ws__target_bytes_ok(const char *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_target_byte((unsigned char)t[i])) return 0;
  return 1;
}

/* Request target: target bytes up to SP, split at the first '?';
 * its path (before the '?') as ws__target_path reads it. */
static int parse_target(cursor *c, ws__reqview *v) {
  size_t start = c->pos;
  while (!at_end(c) && is_target_byte(c->p[c->pos])) c->pos++;
  const char *t = (const char *)c->p + start;
  size_t n = c->pos - start;
  if (!target_may_start(t, n)) return WS__HTTP_INVALID;
  if (at_end(c)) return WS__HTTP_INCOMPLETE;
  if (n == 0 || c->p[c->pos] != ' ') return WS__HTTP_INVALID;
  const char *q = memchr(t, '?', n);
  size_t path_len = q ? (size_t)(q - t) : n;
  v->query = q ? q + 1 : NULL;
  v->query_len = q ? n - path_len - 1 : 0;
  return ws__target_path(v, t, path_len) == 0 ? WS__HTTP_COMPLETE
                                              : WS__HTTP_INVALID;
}

/* "HTTP/1." DIGIT. Other major versions are not HTTP/1.x heads. */
static int parse_version(cursor *c, int *minor) {
  static const char lit[] = "HTTP/1.";
  for (size_t i = 0; i < sizeof lit - 1; i++) {
    int rc = expect_byte(c, (unsigned char)lit[i]);
    if (rc != WS__HTTP_COMPLETE) return rc;
  }
  if (at_end(c)) return WS__HTTP_INCOMPLETE;
  unsigned char d = c->p[c->pos];
  if (d < '0' || d > '9') return WS__HTTP_INVALID;
  *minor = d - '0';
  c->pos++;
  return WS__HTTP_COMPLETE;
}

static int parse_request_line(cursor *c, ws__reqview *v) {
  int rc = parse_token(c, &v->method, &v->method_len);
  if (rc == WS__HTTP_COMPLETE) rc = expect_byte(c, ' ');
  if (rc == WS__HTTP_COMPLETE) rc = parse_target(c, v);
  if (rc == WS__HTTP_COMPLETE) rc = expect_byte(c, ' ');
  if (rc == WS__HTTP_COMPLETE) rc = parse_version(c, &v->http_minor);
  if (rc == WS__HTTP_COMPLETE) rc = parse_eol(c);
  return rc;
}

/* field-name ":" OWS field-value OWS EOL. No space before the colon
 * (RFC 9112 5.1 requires refusing it: it enables request smuggling). */
static int parse_header(cursor *c, ws_header *h) {
  int rc = parse_token(c, &h->name, &h->name_len);
  if (rc == WS__HTTP_COMPLETE) rc = expect_byte(c, ':');
  if (rc != WS__HTTP_COMPLETE) return rc;
  size_t start = c->pos;
  while (!at_end(c) && is_field_byte(c->p[c->pos])) c->pos++;
  if (at_end(c)) return WS__HTTP_INCOMPLETE;
  h->value = (const char *)c->p + start;
  h->value_len = ws__trim_ows(&h->value, c->pos - start);
  return parse_eol(c); /* any other control byte fails here */
}

/* Header lines up to the empty line, *count of them read before. A line
 * starting with whitespace is obs-fold (or junk before the first header):
 * refused, never unfolded. *mark follows each line start. */
static int parse_headers(cursor *c, ws_header *headers, size_t max_headers,
                         size_t *count, ws__http_mark *mark) {
  for (;; (*count)++) {
    mark->from = c->pos;
    mark->count = *count;
    if (at_end(c)) return WS__HTTP_INCOMPLETE;
    unsigned char ch = c->p[c->pos];
    if (ch == '\r' || ch == '\n') return parse_eol(c);
    if (is_ows(ch)) return WS__HTTP_INVALID;
    if (*count == max_headers) return WS__HTTP_TOO_MANY;
    int rc = parse_header(c, &headers[*count]);
    if (rc != WS__HTTP_COMPLETE) return rc;
  }
}

/* Empty lines before the request line, which RFC 9112 2.2 asks a server
 * to ignore (a client may end a previous body with an extra CRLF): a few,
 * not up to the head's limit, since each one is a re-parse of the whole
 * buffer when they dribble in. */
static int skip_empty_lines(cursor *c) {
  int rc = WS__HTTP_COMPLETE, n = 0;
  while (rc == WS__HTTP_COMPLETE && !at_end(c) &&
         (c->p[c->pos] == '\r' || c->p[c->pos] == '\n')) {
    if (n++ == WS__HTTP_EMPTY_LINES_MAX) return WS__HTTP_INVALID;
    rc = parse_eol(c);
  }
  return at_end(c) ? WS__HTTP_INCOMPLETE : rc;
}

size_t ws__empty_lines_len(const char *buf, size_t len) {
  size_t i = 0, max = 2 * WS__HTTP_EMPTY_LINES_MAX + 1; /* past it: a 400 */
  while (i < len && i < max && (buf[i] == '\r' || buf[i] == '\n')) i++;
  return i;
}

/* From *m (the start, when m->from is 0), updating it as lines end. */
static int parse_from(const char *buf, size_t len, ws__http_mark *m,
                      ws_header *headers, size_t max_headers,
                      ws__reqview *view, size_t *consumed) {
  cursor c = {.p = (const unsigned char *)buf, .len = len, .pos = m->from};
  size_t count = m->count;
  int rc = WS__HTTP_COMPLETE;
  memset(view, 0, sizeof *view);
  if (m->from == 0) {
    rc = skip_empty_lines(&c);
    if (rc == WS__HTTP_COMPLETE) rc = parse_request_line(&c, view);
  }
  if (rc == WS__HTTP_COMPLETE)
    rc = parse_headers(&c, headers, max_headers, &count, m);
  if (rc != WS__HTTP_COMPLETE) return rc;
  view->headers = headers;
  view->header_count = count;
  *consumed = c.pos;
  return WS__HTTP_COMPLETE;
}

int ws__http_parse(const char *buf, size_t len, ws_header *headers,
                   size_t max_headers, ws__reqview *view, size_t *consumed) {
  ws__http_mark m = {0, 0};
  return parse_from(buf, len, &m, headers, max_headers, view, consumed);
}

int ws__http_parse_resume(const char *buf, size_t len, ws__http_mark *mark,
                          ws_header *headers, size_t max_headers,
                          ws__reqview *view, size_t *consumed) {
  ws__http_mark m = *mark;
  int rc = parse_from(buf, len, &m, headers, max_headers, view, consumed);
  if (rc == WS__HTTP_INCOMPLETE) *mark = m;
  /* The lines skipped are read once more, into headers[] and view: once
   * per request, when its head is complete. */
  if (rc == WS__HTTP_COMPLETE && mark->from > 0)
    rc = ws__http_parse(buf, len, headers, max_headers, view, consumed);
  return rc;
}

/* ======================================================================== */
/* Header helpers                                                           */
/* ======================================================================== */

const ws_header *ws__find_header(const ws_header *h, size_t n,
                                 const char *name) {
  size_t name_len = strlen(name);
  for (size_t i = 0; i < n; i++)
    if (ws__ascii_caseeq(h[i].name, h[i].name_len, name, name_len))
      return &h[i];
  return NULL;
}

size_t ws__count_header(const ws_header *h, size_t n, const char *name) {
  size_t name_len = strlen(name), count = 0;
  for (size_t i = 0; i < n; i++)
    count += (size_t)ws__ascii_caseeq(h[i].name, h[i].name_len, name,
                                      name_len);
  return count;
}

size_t ws__trim_ows(const char **s, size_t len) {
  while (len && is_ows((unsigned char)**s)) (*s)++, len--;
  while (len && is_ows((unsigned char)(*s)[len - 1])) len--;
  return len;
}

static int list_has(const char *value, size_t len, const char *token,
                    int exact) {
  size_t token_len = strlen(token), i = 0;
  if (value == NULL) return 0;
  while (i <= len) {
    size_t start = i;
    while (i < len && value[i] != ',') i++;
    const char *item = value + start;
    size_t n = ws__trim_ows(&item, i - start);
    if (exact ? n == token_len && memcmp(item, token, token_len) == 0
              : ws__ascii_caseeq(item, n, token, token_len))
      return 1;
    i++; /* past the comma (or past the end, which stops the loop) */
  }
  return 0;
}

int ws__has_token(const char *value, size_t len, const char *token) {
  return list_has(value, len, token, 0);
}

int ws__has_token_exact(const char *value, size_t len, const char *token) {
  return list_has(value, len, token, 1);
}

/* 1 if any header named name lists token: Connection and Upgrade may be
 * sent as several header lines (RFC 9110 5.3). */
static int any_header_has_token(const ws__reqview *rv, const char *name,
                                const char *token) {
  size_t name_len = strlen(name);
  for (size_t i = 0; i < rv->header_count; i++) {
    const ws_header *h = &rv->headers[i];
    if (ws__ascii_caseeq(h->name, h->name_len, name, name_len) &&
        ws__has_token(h->value, h->value_len, token))
      return 1;
  }
  return 0;
}

/* ======================================================================== */
/* RFC 6455 4.2.1 checks                                                    */
/* ======================================================================== */

/* Each check returns 0 or a status, setting *why to a static reason. They
 * run in the order a client most likely got wrong first, so the reason
 * names the most basic mistake. */
static int check_request_line(const ws__reqview *rv, const char **why) {
  if (rv->method_len != 3 || memcmp(rv->method, "GET", 3) != 0) {
    *why = "method must be GET";
    return 400;
  }
  if (rv->http_minor < 1) {
    *why = "HTTP/1.1 required";
    return 400;
  }
  return 0;
}

static int hex_value(unsigned char c);

/* Bytes of a reg-name or IPv4 address (RFC 3986 3.2.2): unreserved,
 * pct-encoded and sub-delims, but ','. A comma is valid there, yet no DNS
 * name has one and an intermediary may read "a,b" as a list of two.
 * Returns how many bytes at v[i] make one such character (3 for "%XX"),
 * or 0. */
static size_t reg_name_char(const char *v, size_t n, size_t i) {
  unsigned char c = (unsigned char)v[i];
  if (c == '%')
    return i + 2 < n && hex_value((unsigned char)v[i + 1]) >= 0 &&
                   hex_value((unsigned char)v[i + 2]) >= 0
               ? 3
               : 0;
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || (c != '\0' && strchr("-._~!$&'()*+;=", c));
}

/* Host = uri-host [":" port] (RFC 9110 7.2): an IP literal in brackets
 * (hex digits, ':' and '.': IPv6 and IPv4-in-IPv6) or a reg-name, then at
 * most one ':' and a port of at most 5 digits. Empty is allowed (RFC 9110
 * 7.2: a target URI without authority). Not a full address grammar: what
 * cannot be a host, or is two of them, is refused. */
int ws__host_value_ok(const char *v, size_t n) {
  size_t i = 0, port;
  if (n > 0 && v[0] == '[') {
    for (i = 1; i < n && v[i] != ']'; i++)
      if (v[i] == '\0' || !strchr("0123456789abcdefABCDEF:.", v[i])) return 0;
    if (i == n || i == 1) return 0; /* no ']', or "[]" */
    i++;
  } else {
    size_t k;
    while (i < n && (k = reg_name_char(v, n, i)) > 0) i += k;
  }
  if (i == n) return 1;
  if (v[i] != ':') return 0;
  for (port = ++i; i < n && v[i] >= '0' && v[i] <= '9'; i++) {}
  return i == n && n - port <= 5;
}

int ws__check_host(const ws__reqview *rv, const char **why) {
  size_t n = ws__count_header(rv->headers, rv->header_count, "Host");
  const ws_header *h = ws__find_header(rv->headers, rv->header_count, "Host");
  if (n > 1) {
    *why = "duplicate Host header";
  } else if (n == 0 && rv->http_minor >= 1) {
    *why = "missing Host header";
  } else if ((h && !ws__host_value_ok(h->value, h->value_len)) ||
             (rv->authority &&
              !ws__host_value_ok(rv->authority, rv->authority_len))) {
    *why = "invalid Host header";
  } else {
    return 0;
  }
  return 400;
}

/* A Content-Length value: 1*DIGIT, its digits after any leading zeros
 * returned in *d (an empty span for 0). 0 if it is not a number (a
 * list, a sign, nothing). */
static int content_length_digits(const ws_header *h, const char **d,
                                 size_t *n) {
  size_t i = 0;
  if (h->value_len == 0) return 0;
  for (i = 0; i < h->value_len; i++)
    if (h->value[i] < '0' || h->value[i] > '9') return 0;
  for (i = 0; i < h->value_len && h->value[i] == '0'; i++) {}
  *d = h->value + i;
  *n = h->value_len - i;
  return 1;
}

/* The last coding a Transfer-Encoding value lists, OWS trimmed, in *item:
 * its last element that is not empty (RFC 9110 5.6.1.2: a recipient
 * ignores empty list elements, as in "chunked,"). 0 when it has none. */
static size_t last_coding(const ws_header *h, const char **item) {
  size_t end = h->value_len;
  while (end > 0) {
    size_t i = end, n;
    const char *it;
    while (i > 0 && h->value[i - 1] != ',') i--;
    it = h->value + i;
    if ((n = ws__trim_ows(&it, end - i)) > 0) {
      *item = it;
      return n;
    }
    end = i > 0 ? i - 1 : 0; /* before that comma */
  }
  return 0;
}

int ws__check_framing(const ws__reqview *rv, const char **why) {
  const char *first = NULL, *d, *te = NULL;
  size_t first_len = 0, n, te_len = 0, i;
  int te_seen = 0;
  for (i = 0; i < rv->header_count; i++) {
    const ws_header *h = &rv->headers[i];
    if (ws__ascii_caseeq(h->name, h->name_len, "Content-Length", 14)) {
      if (!content_length_digits(h, &d, &n) ||
          (first && (n != first_len || memcmp(d, first, n) != 0))) {
        *why = "invalid Content-Length";
        return 400;
      }
      first = d;
      first_len = n;
    } else if (ws__ascii_caseeq(h->name, h->name_len, "Transfer-Encoding",
                                17)) {
      /* Several lines are one list (RFC 9110 5.3): the final coding is
       * the last one any line names. */
      const char *item;
      size_t len = last_coding(h, &item);
      te_seen = 1;
      if (len > 0) te = item, te_len = len;
    }
  }
  /* HTTP/1.0 has no chunked coding: a Transfer-Encoding there is faulty
   * framing whatever it lists (RFC 9112 6.1). */
  if (te_seen &&
      (rv->http_minor < 1 || !ws__ascii_caseeq(te, te_len, "chunked", 7))) {
    *why = "invalid Transfer-Encoding";
    return 400;
  }
  return 0;
}

static int check_upgrade_tokens(const ws__reqview *rv, int is_upgrade,
                                const char **why) {
  if (!is_upgrade) {
    *why = "missing or invalid Upgrade header";
    return 426;
  }
  if (!any_header_has_token(rv, "Connection", "upgrade")) {
    *why = "missing Connection: Upgrade";
    return 400;
  }
  return 0;
}

static int check_version(const ws__reqview *rv, const char **why) {
  const char *name = "Sec-WebSocket-Version";
  if (ws__count_header(rv->headers, rv->header_count, name) > 1) {
    *why = "duplicate Sec-WebSocket-Version header";
    return 400;
  }
  const ws_header *h = ws__find_header(rv->headers, rv->header_count, name);
  if (h && h->value_len == 2 && memcmp(h->value, "13", 2) == 0) return 0;
  *why = "unsupported Sec-WebSocket-Version";
  return 426;
}

static int check_key(const ws__reqview *rv, ws__upgrade_check *out,
                     const char **why) {
  const char *name = "Sec-WebSocket-Key";
  size_t n = ws__count_header(rv->headers, rv->header_count, name);
  if (n != 1) {
    *why = n == 0 ? "missing Sec-WebSocket-Key" :
                    "duplicate Sec-WebSocket-Key header";
    return 400;
  }
  const ws_header *h = ws__find_header(rv->headers, rv->header_count, name);
  uint8_t nonce[16];
  if (ws__base64_decode(h->value, h->value_len, nonce, sizeof nonce) != 16) {
    *why = "invalid Sec-WebSocket-Key";
    return 400;
  }
  out->key = h->value;
  out->key_len = h->value_len;
  return 0;
}

/* The handshake has no content: the client speaks WebSocket right after
 * the head. Content announced anyway (Transfer-Encoding, or a
 * Content-Length other than 0) would be taken for frames, where the client
 * sends it first and its frames only after it (RFC 9110 7.8): 400. */
static int check_no_content(const ws__reqview *rv, const char **why) {
  for (size_t i = 0; i < rv->header_count; i++) {
    const ws_header *h = &rv->headers[i];
    const char *d;
    size_t n;
    int te = ws__ascii_caseeq(h->name, h->name_len, "Transfer-Encoding", 17);
    int cl = ws__ascii_caseeq(h->name, h->name_len, "Content-Length", 14);
    /* n: the digits after any leading zeros, none for a 0 */
    if (te || (cl && (!content_length_digits(h, &d, &n) || n > 0))) {
      *why = "an upgrade request has no content";
      return 400;
    }
  }
  return 0;
}

void ws__upgrade_validate(const ws__reqview *rv, ws__upgrade_check *out) {
  const char *why = NULL;
  int status;
  memset(out, 0, sizeof *out);
  out->is_upgrade = any_header_has_token(rv, "Upgrade", "websocket");
  status = check_request_line(rv, &why);
  if (!status) status = ws__check_host(rv, &why);
  if (!status) status = check_upgrade_tokens(rv, out->is_upgrade, &why);
  if (!status) status = check_version(rv, &why);
  if (!status) status = check_no_content(rv, &why);
  if (!status) status = check_key(rv, out, &why);
  out->status = status;
  out->reason = status ? why : NULL;
}

/* Compares the origin's host[:port] with Host rather than parsing a URL:
 * the serialized origin (RFC 6454 6.2) is exactly scheme "://" host
 * [":" port], so anything else (a path, "null") simply does not match. */
int ws__origin_allowed(const ws__reqview *rv, const char *const *allowed,
                       size_t allowed_count) {
  const ws_header *o = ws__find_header(rv->headers, rv->header_count, "Origin");
  if (!o) return 1;
  for (size_t i = 0; i < allowed_count; i++)
    if (allowed && allowed[i] &&
        ws__ascii_caseeq(o->value, o->value_len, allowed[i],
                         strlen(allowed[i])))
      return 1;
  /* The server's own host: an absolute-form target's authority, which a
   * server must use instead of Host (RFC 9112 3.2.2). */
  const ws_header *host = ws__find_header(rv->headers, rv->header_count,
                                          "Host");
  const char *hv = rv->authority ? rv->authority : host ? host->value : NULL;
  size_t hn = rv->authority ? rv->authority_len : host ? host->value_len : 0;
  for (size_t i = 0; hv && i + 3 <= o->value_len; i++) {
    if (memcmp(o->value + i, "://", 3) != 0) continue;
    size_t hp = i + 3;
    return hp < o->value_len &&
           ws__ascii_caseeq(o->value + hp, o->value_len - hp, hv, hn);
  }
  return 0;
}

/* ======================================================================== */
/* Responses                                                                */
/* ======================================================================== */

void ws__accept_key(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  uint8_t digest[20];
  ws__sha1 sha;
  ws__sha1_init(&sha);
  ws__sha1_update(&sha, key, key_len);
  ws__sha1_update(&sha, guid, sizeof guid - 1);
  ws__sha1_final(&sha, digest);
  out[ws__base64_encode(digest, sizeof digest, out)] = '\0';
}

/* An appender that counts every byte but stores only while they fit. Each
 * response is built twice, once to size it and once to write it, so the
 * caller's buffer is never left half-written. */
typedef struct outbuf {
  char *p;
  size_t cap;
  size_t len;
} outbuf;

/* The count saturates: a length that would wrap (a host's body size near
 * SIZE_MAX) sizes the response at SIZE_MAX, which no allocation takes. */
static void put(outbuf *o, const void *s, size_t n) {
  if (o->len <= o->cap && n <= o->cap - o->len && n > 0)
    memcpy(o->p + o->len, s, n);
  o->len = n > SIZE_MAX - o->len ? SIZE_MAX : o->len + n;
}

static void puts0(outbuf *o, const char *s) { put(o, s, strlen(s)); }

static void put_uint(outbuf *o, size_t v) {
  char tmp[24];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  put(o, tmp + i, sizeof tmp - i);
}

static void build_101(outbuf *o, const char *accept, const char *subprotocol,
                      const char *host_lines) {
  puts0(o, "HTTP/1.1 101 Switching Protocols\r\n"
           "Upgrade: websocket\r\n"
           "Connection: Upgrade\r\n"
           "Sec-WebSocket-Accept: ");
  puts0(o, accept);
  puts0(o, "\r\n");
  if (subprotocol) {
    puts0(o, "Sec-WebSocket-Protocol: ");
    puts0(o, subprotocol);
    puts0(o, "\r\n");
  }
  if (host_lines) puts0(o, host_lines);
  puts0(o, "\r\n");
}

size_t ws__response_101(char *out, size_t cap, const char *key, size_t key_len,
                        const char *subprotocol, const char *host_lines) {
  char accept[29];
  outbuf size = {.p = NULL, .cap = 0, .len = 0};
  /* An accept value is always 28 characters: sizing needs no hash, so a
   * size-then-write caller pays for one SHA-1, not two. */
  memset(accept, 'A', 28);
  accept[28] = '\0';
  build_101(&size, accept, subprotocol, host_lines);
  if (size.len <= cap) {
    outbuf o = {.p = out, .cap = cap, .len = 0};
    ws__accept_key(key, key_len, accept);
    build_101(&o, accept, subprotocol, host_lines);
  }
  return size.len;
}

int ws__status_has_content(int status) {
  return !(status < 200 || status == 204 || status == 205 || status == 304);
}

static void build_http(outbuf *o, int status, const char *ctype,
                       const char *extra, const char *host_lines,
                       const void *body, size_t body_len) {
  puts0(o, "HTTP/1.1 ");
  put_uint(o, status < 0 ? 0u : (size_t)status);
  puts0(o, " ");
  puts0(o, ws__status_text(status));
  if (ws__status_has_content(status)) {
    puts0(o, "\r\nContent-Type: ");
    puts0(o, ctype ? ctype : "text/plain");
    puts0(o, "\r\nContent-Length: ");
    put_uint(o, body_len);
  }
  /* A 426 carries Upgrade (WS__426_HEADERS): its sender lists "upgrade"
   * in Connection (RFC 9110 7.8). */
  puts0(o, status == 426 && extra ? "\r\nConnection: Upgrade, close\r\n"
                                  : "\r\nConnection: close\r\n");
  if (extra) puts0(o, extra);
  if (host_lines) puts0(o, host_lines);
  puts0(o, "\r\n");
  put(o, body, body_len);
}

size_t ws__response_http(char *out, size_t cap, int status, const char *ctype,
                         const char *extra, const char *host_lines,
                         const void *body, size_t body_len) {
  outbuf size = {.p = NULL, .cap = 0, .len = 0};
  build_http(&size, status, ctype, extra, host_lines, body, body_len);
  if (size.len <= cap) {
    outbuf o = {.p = out, .cap = cap, .len = 0};
    build_http(&o, status, ctype, extra, host_lines, body, body_len);
  }
  return size.len;
}

const char *ws__status_text(int status) {
  static const struct {
    int status;
    const char *text;
  } table[] = {
      {101, "Switching Protocols"}, {200, "OK"},
      {204, "No Content"},          {301, "Moved Permanently"},
      {302, "Found"},               {304, "Not Modified"},
      {400, "Bad Request"},         {401, "Unauthorized"},
      {403, "Forbidden"},           {404, "Not Found"},
      {405, "Method Not Allowed"},  {408, "Request Timeout"},
      {409, "Conflict"},            {413, "Content Too Large"},
      {414, "URI Too Long"},
      {426, "Upgrade Required"},    {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"}, {501, "Not Implemented"},
      {503, "Service Unavailable"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].status == status) return table[i].text;
  return "Unknown";
}

/* ======================================================================== */
/* Percent-decoding                                                         */
/* ======================================================================== */

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* In place is safe: each output byte is written at or before the input
 * byte(s) it came from. A NUL, literal or decoded, is refused because the
 * results are handed out as C strings. */
long ws__url_decode(char *dst, const char *src, size_t n, int plus_is_space) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)src[i];
    if (c == '%') {
      if (n - i < 3) return -1;
      int hi = hex_value((unsigned char)src[i + 1]);
      int lo = hex_value((unsigned char)src[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = (unsigned char)(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') return -1;
    dst[o++] = (char)c;
  }
  return (long)o;
}
