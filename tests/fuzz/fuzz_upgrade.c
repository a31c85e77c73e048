/*
 * libFuzzer target: the upgrade entry points for hosts that parsed the HTTP
 * request themselves, ws_conn_upgrade and ws_conn_upgrade_answer
 * (lib/upgrade.c run_parsed: header count and size limits, headers the
 * parser would refuse, values trimmed, then the checks bytes get), each on
 * a fresh server with an in-memory transport, and against the same request
 * fed as bytes (ws_conn_feed) to a second server.
 *
 * Input layout:
 *   byte 0  flags: 1 ws_conn_upgrade_answer (else ws_conn_upgrade);
 *           2 keep_headers; 4 cfg.path NULL (any; else "/ws");
 *           8 device_required 0; 16 the byte path feeds the head in two
 *           pieces (byte 3 says where); 32 first a call with a documented
 *           argument error (byte 3 % 5 says which: NULL method, NULL path,
 *           NULL headers with a count, a header with a NULL name of length
 *           1, NULL status in answer mode), which must be WS_EINVAL and do
 *           nothing; 64 empty slices passed as NULL pointers (and NULL
 *           headers when there are none); 128 fail one allocation of the
 *           parsed side (byte 4 says which, counted after ws_conn_new).
 *   byte 1  bits 0-2 subprotocols: 0 none; 1 configured list (chat,
 *           superchat, v2.json); select_subprotocol returning 2 the offer
 *           itself, 3 its first element untrimmed, 4 its first element
 *           trimmed, 5 the constant "chat", 6 NULL, 7 its last element
 *           trimmed. bits 3-5 on_upgrade: 1 accept after join/set_user,
 *           2 refuse 403 (static reason), 3 return 299 (500), 4 refuse 451
 *           with a reason pointing into req (static under
 *           ws_conn_upgrade_answer), 5 refuse 503 with no reason; else
 *           none. bit 6: no on_http. bit 7: on_open aborts the connection.
 *   byte 2  bits 0-5 max_headers (0..55: n + 1; then 64, 255, 256, 257,
 *           300, 512, 1000, 4096); bits 6-7 max_handshake (8192, 64, 256,
 *           1024).
 *   byte 3  where the byte path splits its feed (x/256 of the head), and
 *           the argument error.
 *   byte 4  the allocation to fail (flag 128).
 *   then    fields separated by 0xFE (0xFD x is a literal x): method,
 *           path, query (empty: NULL; a leading '?' is dropped, so "?"
 *           is ""), then header name, value, name, value... (at most
 *           MAXH headers). Method, path and query end at a NUL (C
 *           strings); header slices keep every byte, NUL, CR and LF
 *           included, and each is an exact-size heap copy.
 *
 * Invariants (abort on violation):
 *   - the call returns WS_OK (WS_EINVAL for the argument errors above,
 *     with no callback and no output); a second call on an upgraded
 *     connection is WS_ESTATE and writes nothing;
 *   - limits and well-formedness first, as documented: a request line
 *     the parser would refuse (a method not a token, a path that is no
 *     target's: neither "/..." nor "http(s)://host...", "*" but for
 *     OPTIONS; a byte outside visible ASCII or a '#' in the path or the
 *     query) is 400, then more headers than
 *     max_headers (at most 256) is 431, a head longer than max_handshake
 *     in its shortest wire form is 431 (414 when its request line alone
 *     is: the two paths may differ there, their line ends do), then a
 *     header with a name that is
 *     not a token or a value with a control byte other than HTAB is 400;
 *     so a 101 only for well-formed headers;
 *   - ws_conn_upgrade: the output is one complete HTTP response and
 *     nothing after it: the 101 byte for byte (Sec-WebSocket-Accept
 *     computed here, with this file's SHA-1, from the request's trimmed
 *     key; the subprotocol line present exactly for the expected pick;
 *     every CR and LF in the head part of a CRLF line end: no header line
 *     injected), or a response with status 400..599 (200 only when
 *     on_http answered) whose body is Content-Length bytes; no output only
 *     when an allocation failed or on_open aborted;
 *   - ws_conn_upgrade_answer: no output; *status 101 with *reason NULL and
 *     accept the expected NUL-terminated 28 characters, or 400..599 with a
 *     reason and accept ""; the connection open after a 101, closed
 *     (transport close, no on_close) before return after a refusal;
 *   - a 101 only for GET, one Host, one valid key, version 13; the
 *     connection keeps exactly the headers passed (trimmed, keep_headers)
 *     or none; the offer select_subprotocol sees is every
 *     Sec-WebSocket-Protocol value trimmed and joined with ", "; a pick
 *     that is not a token or not an element of the offer is a 500; the
 *     negotiated subprotocol is the expected one;
 *   - stats: one open connection after a 101, none pending;
 *   - differential: when the request prints as an HTTP/1.1 head the parser
 *     reads back as the same request (method a token, a visible-ASCII
 *     target with no '?' in the path and no absolute form, every header
 *     well formed; printed in the shortest wire form, so both have the
 *     same size), feeding those bytes gives the same answer: under
 *     ws_conn_upgrade identical output bytes (for 431 the same status:
 *     which limit is named may differ), under ws_conn_upgrade_answer the
 *     same status, accept, subprotocol and reason (the refusal's body),
 *     except that the byte path's on_http may answer a plain request that
 *     ws_conn_upgrade_answer refuses with 426 or 404;
 *   - ws_server_free closes what is open (on_close for an opened
 *     connection) and the counting allocator shows zero live blocks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXH 320

enum { F_ANSWER = 1, F_KEEP = 2, F_ANYPATH = 4, F_NODEV = 8, F_SPLIT = 16,
       F_BADARG = 32, F_NULLS = 64, F_FAILMALLOC = 128 };
enum { SP_NONE = 0, SP_LIST, SP_OFFER, SP_FIRST, SP_FIRST_TRIM, SP_CONST,
       SP_NULL, SP_LAST_TRIM };
enum { UP_NONE = 0, UP_JOIN, UP_403, UP_299, UP_451_REQ, UP_503 };

static const char *const k_subprotocols[] = {"chat", "superchat", "v2.json"};

/* One server with one connection. */
typedef struct side {
  fz_alloc fa;
  ws_server *s;
  ws_conn *c; /* NULL once the transport close callback ran */
  int answer_mode;
  int static_reason; /* the test is under ws_conn_upgrade_answer (both sides) */
  int sp_mode, up_mode, abort_on_open;
  int created, opened, app_closed, tp_closed;
  int http_called, http_responded;
  long sends; /* send calls */
  fz_out out;
  /* select_subprotocol's record */
  int select_called;
  char *offered; /* copy of what it saw */
  char *pick_buf;
  const char *pick; /* what it returned */
} side;

/* ---- SHA-1 and base64, written here so the accept check does not use the
 * library's own ------------------------------------------------------- */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
  uint32_t w[80], a, b, c, d, e, f, k, t;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (i = 0; i < 80; i++) {
    if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
    else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
    else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
    else f = b ^ c ^ d, k = 0xCA62C1D6;
    t = rol(a, 5) + f + e + k + w[i];
    e = d, d = c, c = rol(b, 30), b = a, a = t;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const uint8_t *m, size_t n, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476,
                   0xC3D2E1F0};
  uint8_t blk[64];
  size_t i, rest;
  uint64_t bits = (uint64_t)n * 8;
  for (i = 0; i + 64 <= n; i += 64) sha1_block(h, m + i);
  rest = n - i;
  memset(blk, 0, sizeof(blk));
  memcpy(blk, m + i, rest);
  blk[rest] = 0x80;
  if (rest >= 56) {
    sha1_block(h, blk);
    memset(blk, 0, sizeof(blk));
  }
  for (i = 0; i < 8; i++) blk[63 - i] = (uint8_t)(bits >> (8 * i));
  sha1_block(h, blk);
  for (i = 0; i < 20; i++) out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

/* The Sec-WebSocket-Accept value for key: 28 characters and a NUL. */
static void accept_for(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint8_t *m = malloc(key_len + 36), d[21];
  size_t i, o = 0;
  if (m == NULL) abort();
  memcpy(m, key, key_len);
  memcpy(m + key_len, guid, 36);
  sha1(m, key_len + 36, d);
  free(m);
  d[20] = 0;
  for (i = 0; i < 21; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 |
                 (i + 2 < 21 ? d[i + 2] : 0);
    out[o++] = b64[v >> 18 & 63];
    out[o++] = b64[v >> 12 & 63];
    out[o++] = b64[v >> 6 & 63];
    out[o++] = b64[v & 63];
  }
  out[27] = '=';
  out[28] = '\0';
}

/* ---- request model -------------------------------------------------------- */

typedef struct req {
  char *method, *path, *query; /* query may be NULL */
  ws_header h[MAXH];
  size_t hc;
} req;

static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

static int token_n(const char *s, size_t n) {
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++)
    if (!fz_is_tchar((unsigned char)s[i])) return 0;
  return 1;
}

static int well_formed(const ws_header *h) {
  size_t i;
  if (!token_n(h->name, h->name_len)) return 0;
  for (i = 0; i < h->value_len; i++) {
    unsigned char c = (unsigned char)h->value[i];
    if (!(c == '\t' || c == ' ' || (c > 0x20 && c != 0x7F))) return 0;
  }
  return 1;
}

static size_t trim(const char **s, size_t n) {
  while (n && is_ows((unsigned char)**s)) (*s)++, n--;
  while (n && is_ows((unsigned char)(*s)[n - 1])) n--;
  return n;
}

static int name_is(const ws_header *h, const char *name) {
  size_t i, n = strlen(name);
  if (h->name_len != n) return 0;
  for (i = 0; i < n; i++) {
    unsigned char a = (unsigned char)h->name[i], b = (unsigned char)name[i];
    if (a >= 'A' && a <= 'Z') a = (unsigned char)(a + 32);
    if (b >= 'A' && b <= 'Z') b = (unsigned char)(b + 32);
    if (a != b) return 0;
  }
  return 1;
}

static size_t count_named(const req *r, const char *name, size_t *first) {
  size_t i, n = 0;
  for (i = 0; i < r->hc; i++)
    if (name_is(&r->h[i], name)) {
      if (n == 0 && first) *first = i;
      n++;
    }
  return n;
}

/* 1 if tok (NUL-terminated) is exactly an element of the comma list. */
static int list_has_exact(const char *list, const char *tok) {
  size_t n = strlen(list), i = 0, tl = strlen(tok);
  while (i <= n) {
    size_t st = i, len;
    const char *item;
    while (i < n && list[i] != ',') i++;
    item = list + st;
    len = trim(&item, i - st);
    if (len == tl && memcmp(item, tok, tl) == 0) return 1;
    i++;
  }
  return 0;
}

/* The offer as select_subprotocol must see it (NULL: none). Caller frees. */
static char *expected_offer(const req *r) {
  size_t i, need = 1, o = 0;
  char *s;
  if (count_named(r, "Sec-WebSocket-Protocol", NULL) == 0) return NULL;
  for (i = 0; i < r->hc; i++)
    if (name_is(&r->h[i], "Sec-WebSocket-Protocol")) need += r->h[i].value_len + 2;
  s = malloc(need);
  if (s == NULL) abort();
  for (i = 0; i < r->hc; i++) {
    const char *v = r->h[i].value;
    size_t n;
    if (!name_is(&r->h[i], "Sec-WebSocket-Protocol")) continue;
    n = trim(&v, r->h[i].value_len);
    if (o) s[o++] = ',', s[o++] = ' ';
    if (n) memcpy(s + o, v, n);
    o += n;
  }
  s[o] = '\0';
  return s;
}

/* The head in its shortest wire form, or NULL when it would not read back
 * as this request (see the top). *len gets its length. */
static char *print_head(const req *r, size_t *len) {
  size_t i, n, o = 0, ml = strlen(r->method), pl = strlen(r->path);
  size_t ql = r->query ? strlen(r->query) : 0;
  char *b;
  if (!token_n(r->method, ml)) return NULL;
  if (pl + (r->query ? ql + 1 : 0) == 0) return NULL;
  for (i = 0; i < pl; i++)
    if ((unsigned char)r->path[i] < 0x21 || (unsigned char)r->path[i] > 0x7E ||
        r->path[i] == '?')
      return NULL;
  for (i = 0; i < ql; i++)
    if ((unsigned char)r->query[i] < 0x21 || (unsigned char)r->query[i] > 0x7E)
      return NULL;
  if ((pl >= 7 && strncasecmp(r->path, "http://", 7) == 0) ||
      (pl >= 8 && strncasecmp(r->path, "https://", 8) == 0))
    return NULL;
  n = ml + pl + 11 + 1 + (r->query ? 1 + ql : 0);
  for (i = 0; i < r->hc; i++) {
    if (!well_formed(&r->h[i])) return NULL;
    n += r->h[i].name_len + 1 + r->h[i].value_len + 1;
  }
  b = malloc(n);
  if (b == NULL) abort();
  memcpy(b + o, r->method, ml), o += ml;
  b[o++] = ' ';
  memcpy(b + o, r->path, pl), o += pl;
  if (r->query) {
    b[o++] = '?';
    memcpy(b + o, r->query, ql), o += ql;
  }
  memcpy(b + o, " HTTP/1.1\n", 10), o += 10;
  for (i = 0; i < r->hc; i++) {
    if (r->h[i].name_len) memcpy(b + o, r->h[i].name, r->h[i].name_len);
    o += r->h[i].name_len;
    b[o++] = ':';
    if (r->h[i].value_len) memcpy(b + o, r->h[i].value, r->h[i].value_len);
    o += r->h[i].value_len;
    b[o++] = '\n';
  }
  b[o++] = '\n';
  FZ_CHECK(o == n, "harness: printed head size");
  *len = n;
  return b;
}

/* One field of the input: up to the next 0xFE, with 0xFD escapes. The
 * result is an exact-size heap copy (plus a NUL the slices never count).
 * Returns 0 when the input is used up before the field starts. */
static int next_field(fz_in *in, char **out, size_t *n) {
  uint8_t *tmp;
  size_t o = 0;
  if (in->n == 0) return 0;
  tmp = malloc(in->n);
  if (tmp == NULL) abort();
  while (in->n) {
    uint8_t b = fz_byte(in, 0);
    if (b == 0xFE) break;
    if (b == 0xFD && in->n) b = fz_byte(in, 0);
    tmp[o++] = b;
  }
  *out = (char *)fz_dup(tmp, o);
  *n = o;
  free(tmp);
  return 1;
}

/* A C string: the field up to its first NUL, in an exact-size copy. */
static char *c_string(char *f, size_t n) {
  size_t k = f ? strnlen(f, n) : 0;
  char *s = malloc(k + 1);
  if (s == NULL) abort();
  if (k) memcpy(s, f, k);
  s[k] = '\0';
  free(f);
  return s;
}

static void req_decode(fz_in *in, req *r, int nulls) {
  char *f;
  size_t n;
  memset(r, 0, sizeof(*r));
  r->method = next_field(in, &f, &n) ? c_string(f, n) : c_string(NULL, 0);
  r->path = next_field(in, &f, &n) ? c_string(f, n) : c_string(NULL, 0);
  if (next_field(in, &f, &n)) {
    if (n == 0) { /* an empty field: no query */
      free(f);
    } else if (f[0] == '?') {
      r->query = c_string((char *)fz_dup((uint8_t *)f + 1, n - 1), n - 1);
      free(f);
    } else {
      r->query = c_string(f, n);
    }
  }
  while (r->hc < MAXH && next_field(in, &f, &n)) {
    ws_header *h = &r->h[r->hc++];
    h->name = f;
    h->name_len = n;
    if (next_field(in, &f, &n)) {
      h->value = f;
      h->value_len = n;
    } else {
      h->value = (char *)fz_dup(NULL, 0);
      h->value_len = 0;
    }
    if (nulls && h->name_len == 0) free((char *)h->name), h->name = NULL;
    if (nulls && h->value_len == 0) free((char *)h->value), h->value = NULL;
  }
}

static void req_free(req *r) {
  size_t i;
  free(r->method);
  free(r->path);
  free(r->query);
  for (i = 0; i < r->hc; i++) {
    free((char *)r->h[i].name);
    free((char *)r->h[i].value);
  }
}

/* ---- transport and callbacks --------------------------------------------- */

static side *side_of(ws_conn *c) {
  side *sd = ws_conn_transport(c);
  FZ_CHECK(sd != NULL && sd->c == c, "callback for an unknown connection");
  return sd;
}

static ssize_t on_send(ws_conn *c, void *transport, const void *p,
                       size_t len) {
  side *sd = side_of(c);
  FZ_CHECK(transport == sd, "send with a foreign transport");
  FZ_CHECK(len > 0, "send of zero bytes");
  sd->sends++;
  /* Under ws_conn_upgrade_answer the host's HTTP server owns the socket
   * until its 101 is out: the library's output waits. */
  if (sd->answer_mode) return 0;
  fz_out_append(&sd->out, p, len);
  return (ssize_t)len;
}

static int on_tp_close(ws_conn *c, void *transport) {
  side *sd = side_of(c);
  (void)transport;
  FZ_CHECK(!sd->tp_closed, "transport closed twice");
  FZ_CHECK(!sd->opened || sd->app_closed,
           "transport closed without on_close for an opened connection");
  sd->tp_closed = 1;
  sd->c = NULL;
  return 0;
}

static int on_open(ws_conn *c, void *ud) {
  side *sd = side_of(c);
  FZ_CHECK(ud == sd, "on_open user data");
  FZ_CHECK(!sd->opened, "on_open twice");
  sd->opened = 1;
  if (sd->abort_on_open) ws_conn_abort(c);
  return 0;
}

static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  side *sd = side_of(c);
  (void)ud;
  FZ_CHECK(sd->opened && !sd->app_closed, "on_close without on_open or twice");
  FZ_CHECK(reason != NULL && code >= 1000 && code <= 4999, "on_close args");
  sd->app_closed = 1;
  return 0;
}

static int on_http(ws_conn *c, const ws_request *r, void *ud) {
  side *sd = side_of(c);
  const char *path = ws_request_path(r);
  (void)ud;
  FZ_CHECK(!sd->answer_mode, "on_http under ws_conn_upgrade_answer");
  sd->http_called = 1;
  if (path && strcmp(path, "/") == 0 &&
      ws_conn_http_respond(c, 200, "text/html", "<p>hi</p>", 9) == WS_OK)
    sd->http_responded = 1;
  return 0;
}

static const char *select_sp(const ws_request *r, const char *offered,
                             void *ud) {
  side *sd = ud;
  const char *p, *e;
  size_t n;
  (void)r;
  FZ_CHECK(offered != NULL, "select_subprotocol without an offer");
  FZ_CHECK(!sd->select_called, "select_subprotocol called twice");
  sd->select_called = 1;
  sd->offered = (char *)fz_dup((const uint8_t *)offered, strlen(offered) + 1);
  switch (sd->sp_mode) {
  case SP_OFFER:
    sd->pick_buf = (char *)fz_dup((const uint8_t *)offered, strlen(offered) + 1);
    sd->pick = sd->pick_buf;
    return offered; /* the library's own pointer, as a host would */
  case SP_FIRST:
  case SP_FIRST_TRIM:
  case SP_LAST_TRIM:
    if (sd->sp_mode == SP_LAST_TRIM) {
      p = strrchr(offered, ',');
      p = p ? p + 1 : offered;
    } else {
      p = offered;
    }
    e = strchr(p, ',');
    n = e ? (size_t)(e - p) : strlen(p);
    if (sd->sp_mode != SP_FIRST) n = trim(&p, n);
    sd->pick_buf = malloc(n + 1);
    if (sd->pick_buf == NULL) abort();
    memcpy(sd->pick_buf, p, n);
    sd->pick_buf[n] = '\0';
    sd->pick = sd->pick_buf;
    break;
  case SP_CONST: sd->pick = "chat"; break;
  default: sd->pick = NULL; break;
  }
  return sd->pick;
}

static int on_upgrade(ws_conn *c, const ws_request *r, const char **reason,
                      void *ud) {
  side *sd = side_of(c);
  const char *v = NULL;
  FZ_CHECK(ud == sd, "on_upgrade user data");
  FZ_CHECK(r != NULL && reason != NULL && *reason == NULL, "on_upgrade args");
  switch (sd->up_mode) {
  case UP_JOIN:
    ws_conn_join(c, "room");
    ws_conn_set_user(c, "u1");
    return 0;
  case UP_403: *reason = "go away"; return 403;
  case UP_299: return 299;
  case UP_451_REQ:
    if (sd->static_reason || ws_request_header_at(r, 0, NULL, &v) != WS_OK)
      v = "unavailable for legal reasons";
    *reason = v;
    return 451;
  case UP_503: return 503;
  default: return 0;
  }
}

/* ---- one side ----------------------------------------------------------- */

static void side_setup(side *sd, uint8_t f, uint8_t m, uint8_t lim,
                       int answer_mode) {
  static const size_t maxh_hi[8] = {64, 255, 256, 257, 300, 512, 1000, 4096};
  static const size_t maxhs[4] = {8192, 64, 256, 1024};
  ws_config cfg;
  size_t v = lim & 63;
  memset(sd, 0, sizeof(*sd));
  sd->answer_mode = answer_mode;
  sd->static_reason = f & F_ANSWER;
  sd->sp_mode = m & 7;
  sd->up_mode = (m >> 3) & 7;
  sd->abort_on_open = (m >> 7) & 1;
  ws_config_init(&cfg);
  cfg.alloc = fz_allocator(&sd->fa);
  cfg.user_data = sd;
  cfg.send = on_send;
  cfg.close = on_tp_close;
  cfg.on_open = on_open;
  cfg.on_close = on_close;
  if (!(m & 64)) cfg.on_http = on_http;
  if (sd->up_mode >= UP_JOIN && sd->up_mode <= UP_503) cfg.on_upgrade = on_upgrade;
  if (sd->sp_mode == SP_LIST) {
    cfg.subprotocols = k_subprotocols;
    cfg.subprotocols_count = 3;
  } else if (sd->sp_mode != SP_NONE) {
    cfg.select_subprotocol = select_sp;
  }
  if (f & F_ANYPATH) cfg.path = NULL;
  if (f & F_NODEV) cfg.device_required = 0;
  cfg.keep_headers = (f & F_KEEP) ? 1 : 0;
  cfg.max_headers = v < 56 ? v + 1 : maxh_hi[v - 56];
  cfg.max_handshake = maxhs[lim >> 6];
  if (ws_server_new(&cfg, &sd->s) != WS_OK) fz_fail("server_new");
  if (ws_conn_new(sd->s, sd, &sd->c) != WS_OK) fz_fail("conn_new");
  sd->created = 1;
}

/* ws_server_free closes everything; nothing may stay allocated. */
static void side_free(side *sd) {
  if (sd->s) ws_server_free(sd->s);
  FZ_CHECK(sd->tp_closed, "connection not closed by ws_server_free");
  FZ_CHECK(!sd->opened || sd->app_closed, "opened without on_close");
  FZ_CHECK(sd->fa.live == 0 && sd->fa.live_bytes == 0,
           "allocations live after ws_server_free");
  fz_out_free(&sd->out);
  free(sd->offered);
  free(sd->pick_buf);
}

static int too_large(int status) { return status == 414 || status == 431; }

/* The output is complete: one response, its body, nothing after. */
static void check_complete_output(const side *sd) {
  if (sd->out.len == 0) return;
  FZ_CHECK(sd->out.pos == sd->out.len, "incomplete HTTP response");
  if (sd->out.status == 101) {
    int i;
    FZ_CHECK(sd->out.phase == FZ_FRAMES, "101 phase");
    for (i = 0; i < 16; i++)
      FZ_CHECK(sd->out.frames[i] == 0, "frames after a 101 nobody sent");
  } else {
    FZ_CHECK(sd->out.phase == FZ_ENDED, "response body incomplete");
  }
}

/* The head's CR and LF bytes come only as CRLF pairs, and it has exactly
 * the lines of a 101: status, Upgrade, Connection, Accept, [Protocol]. */
static void check_101_lines(const uint8_t *h, size_t n) {
  size_t i, lines = 0;
  for (i = 0; i < n; i++) {
    if (h[i] == '\r') {
      FZ_CHECK(i + 1 < n && h[i + 1] == '\n', "bare CR in the 101");
      lines++;
      i++;
    } else {
      FZ_CHECK(h[i] != '\n', "bare LF in the 101 (header injection)");
    }
  }
  FZ_CHECK(lines == 5 || lines == 6, "101 with an unexpected header line");
}

/* ---- the oracle ---------------------------------------------------------- */

typedef struct expect {
  int early;         /* 431 or 400 from the checks before any other, or 0 */
  int over_limit;    /* more headers or bytes than the limits allow */
  char accept[29];   /* for a 101 */
  const char *key;   /* trimmed Sec-WebSocket-Key, for a 101 */
  size_t key_len;
  int could_101;     /* GET, one Host, one key of 24, one version "13" */
  char *offer;       /* expected offer, or NULL */
} expect;

/* Every byte of s may stand in a request target: visible ASCII, no '#'
 * (a target never carries a fragment). */
static int target_bytes(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7E || *s == '#')
      return 0;
  return 1;
}

/* The request line as the parser reads it: the method a token; the path a
 * target's: "/...", "*" for OPTIONS without a query, or "http(s)://" and
 * a non-empty host without userinfo (RFC 9112 3.2); path and query of
 * target bytes. */
static int request_line_ok(const req *r) {
  const char *p = r->path;
  size_t l = strncasecmp(p, "http://", 7) == 0    ? 7
             : strncasecmp(p, "https://", 8) == 0 ? 8
                                                  : 0;
  if (!token_n(r->method, strlen(r->method)) || !target_bytes(p) ||
      (r->query && !target_bytes(r->query)))
    return 0;
  if (p[0] == '/') return 1;
  if (strcmp(p, "*") == 0)
    return strcmp(r->method, "OPTIONS") == 0 && r->query == NULL;
  return l > 0 && p[l] != '\0' && p[l] != '/' &&
         strcspn(p + l, "@") >= strcspn(p + l, "/");
}

static void expect_build(expect *x, const req *r, const ws_server *s) {
  size_t i, n, maxh, ki = 0, vi = 0;
  const char *v;
  memset(x, 0, sizeof(*x));
  maxh = s->cfg.max_headers < 256 ? s->cfg.max_headers : 256;
  n = strlen(r->method) + strlen(r->path) + 12 +
      (r->query ? 1 + strlen(r->query) : 0);
  for (i = 0; i < r->hc; i++) n += r->h[i].name_len + r->h[i].value_len + 2;
  x->over_limit = r->hc > maxh || n > s->cfg.max_handshake;
  if (!request_line_ok(r)) {
    x->early = 400; /* the request line comes first */
  } else if (r->hc > maxh || n > s->cfg.max_handshake) {
    x->early = 431;
  } else {
    for (i = 0; i < r->hc; i++)
      if (!well_formed(&r->h[i])) x->early = 400;
  }
  x->offer = x->early ? NULL : expected_offer(r);
  if (x->early || strcmp(r->method, "GET") != 0 ||
      count_named(r, "Host", NULL) != 1 ||
      count_named(r, "Sec-WebSocket-Key", &ki) != 1 ||
      count_named(r, "Sec-WebSocket-Version", &vi) != 1)
    return;
  v = r->h[vi].value;
  n = trim(&v, r->h[vi].value_len);
  if (n != 2 || memcmp(v, "13", 2) != 0) return;
  x->key = r->h[ki].value;
  x->key_len = trim(&x->key, r->h[ki].value_len);
  if (x->key_len != 24) return;
  x->could_101 = 1;
  accept_for(x->key, x->key_len, x->accept);
}

/* The subprotocol a 101 must carry (NULL: none); *bad when the pick
 * refuses the upgrade (500). Valid only when select ran or the list is
 * used and an offer exists. */
static const char *expected_pick(const side *sd, const expect *x, int *bad) {
  size_t i;
  *bad = 0;
  if (x->offer == NULL) return NULL;
  if (sd->sp_mode == SP_LIST) {
    for (i = 0; i < 3; i++)
      if (list_has_exact(x->offer, k_subprotocols[i])) return k_subprotocols[i];
    return NULL;
  }
  if (sd->sp_mode == SP_NONE || !sd->select_called || sd->pick == NULL)
    return NULL;
  if (!token_n(sd->pick, strlen(sd->pick)) ||
      !list_has_exact(x->offer, sd->pick))
    *bad = 1;
  return sd->pick;
}

/* Checks common to both modes after the call. status: the answer's, or the
 * output's; proto: the negotiated subprotocol (101 only). */
static void check_verdict(side *sd, const req *r, const expect *x, int status,
                          const char *proto, int failed) {
  int bad = 0;
  const char *want;
  if (!failed && x->early)
    FZ_CHECK(status == x->early || (x->early == 431 && status == 414),
             "limits and malformed headers not answered first (431/400)");
  if (sd->select_called) {
    FZ_CHECK(x->offer != NULL && strcmp(sd->offered, x->offer) == 0,
             "select_subprotocol's offer is not the trimmed values joined");
  }
  want = expected_pick(sd, x, &bad);
  if (sd->select_called && bad && !failed)
    FZ_CHECK(status == 500, "a pick not a token or not offered: not 500");
  if (status != 101) return;
  FZ_CHECK(!x->early, "101 for a request over a limit or malformed");
  FZ_CHECK(x->could_101, "101 for a request that is not a valid upgrade");
  FZ_CHECK(!bad, "101 with a bad subprotocol pick");
  FZ_CHECK((want == NULL) == (proto == NULL) &&
               (want == NULL || strcmp(want, proto) == 0),
           "negotiated subprotocol is not the expected one");
  if (proto) FZ_CHECK(token_n(proto, strlen(proto)), "subprotocol not a token");
  FZ_CHECK(sd->opened, "101 without on_open");
  if (sd->c) {
    const ws_request *kr = ws_conn_request(sd->c);
    size_t i;
    FZ_CHECK(kr && strcmp(ws_request_method(kr), "GET") == 0,
             "kept request method");
    FZ_CHECK(ws_request_header_count(kr) ==
                 (sd->s->cfg.keep_headers ? r->hc : 0),
             "kept header count");
    for (i = 0; i < ws_request_header_count(kr); i++) {
      const char *name = NULL, *value = NULL, *tv = r->h[i].value;
      size_t tn = trim(&tv, r->h[i].value_len);
      FZ_CHECK(ws_request_header_at(kr, i, &name, &value) == WS_OK,
               "header_at");
      FZ_CHECK(strlen(name) == r->h[i].name_len && r->h[i].name_len &&
                   memcmp(name, r->h[i].name, r->h[i].name_len) == 0 &&
                   strlen(value) == tn && (tn == 0 || memcmp(value, tv, tn) == 0),
               "kept header differs from the trimmed one passed");
    }
  }
}

static void check_stats(const side *sd, int open) {
  ws_stats st;
  if (ws_server_stats(sd->s, &st, sizeof(st)) != WS_OK) fz_fail("stats");
  FZ_CHECK(st.conns_open == (uint64_t)open, "conns_open after the upgrade");
  FZ_CHECK(st.conns_pending == 0, "conns_pending after the upgrade");
}

/* The 101 ws_conn_upgrade must have written. */
static void check_101_bytes(const side *sd, const expect *x,
                            const char *proto) {
  char want[512 + 8192];
  int n = snprintf(want, sizeof(want),
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                   x->accept, proto ? "Sec-WebSocket-Protocol: " : "",
                   proto ? proto : "", proto ? "\r\n" : "");
  check_101_lines(sd->out.buf, sd->out.len);
  FZ_CHECK(n > 0 && (size_t)n < sizeof(want) && sd->out.len == (size_t)n &&
               memcmp(sd->out.buf, want, (size_t)n) == 0,
           "101 differs from the expected bytes (accept or subprotocol)");
}

/* The subprotocol line of a 101 in out (NUL-terminated copy), or NULL. */
static char *proto_of_101(const fz_out *o) {
  const uint8_t *p = fz_memmem(o->buf, o->len, "\r\nSec-WebSocket-Protocol: ");
  const uint8_t *e;
  char *s;
  if (p == NULL) return NULL;
  p += 26;
  e = fz_memmem(p, o->len - (size_t)(p - o->buf), "\r\n");
  FZ_CHECK(e != NULL, "protocol line without an end");
  s = malloc((size_t)(e - p) + 1);
  if (s == NULL) abort();
  memcpy(s, p, (size_t)(e - p));
  s[e - p] = '\0';
  return s;
}

/* A refusal's body (after the head). */
static const uint8_t *body_of(const fz_out *o, size_t *n) {
  const uint8_t *e = fz_memmem(o->buf, o->len, "\r\n\r\n");
  FZ_CHECK(e != NULL, "no head end");
  e += 4;
  *n = o->len - (size_t)(e - o->buf);
  return e;
}

/* ---- the calls ------------------------------------------------------------ */

static int call(side *sd, const req *r, int nulls, int *status,
                const char **reason, char accept[WS_ACCEPT_LEN + 1]) {
  const ws_header *h = (nulls && r->hc == 0) ? NULL : r->h;
  if (sd->answer_mode)
    return ws_conn_upgrade_answer(sd->c, r->method, r->path, r->query, h,
                                  r->hc, status, reason, accept);
  return ws_conn_upgrade(sd->c, r->method, r->path, r->query, h, r->hc);
}

/* A documented argument error: WS_EINVAL, no callback, no output. */
static void bad_call(side *sd, const req *r, int which) {
  ws_header *hb = NULL;
  const ws_header *h = r->h;
  const char *method = r->method, *path = r->path, *reason = NULL;
  int st = 0, rc, *stp = &st;
  char acc[WS_ACCEPT_LEN + 1];
  size_t hc = r->hc;
  switch (which) {
  case 0: method = NULL; break;
  case 1: path = NULL; break;
  case 2: h = NULL, hc = hc ? hc : 1; break;
  case 3:
    hb = malloc(sizeof(ws_header) * (hc + 1));
    if (hb == NULL) abort();
    if (hc) memcpy(hb, r->h, sizeof(ws_header) * hc);
    else hb[0].value = NULL, hb[0].value_len = 0, hc = 1;
    hb[0].name = NULL;
    hb[0].name_len = 1;
    h = hb;
    break;
  default:
    if (sd->answer_mode) stp = NULL;
    else method = NULL;
    break;
  }
  if (sd->answer_mode)
    rc = ws_conn_upgrade_answer(sd->c, method, path, r->query, h, hc, stp,
                                &reason, acc);
  else
    rc = ws_conn_upgrade(sd->c, method, path, r->query, h, hc);
  free(hb);
  FZ_CHECK(rc == WS_EINVAL, "argument error not WS_EINVAL");
  FZ_CHECK(sd->c && !sd->tp_closed && !sd->opened && sd->sends == 0 &&
               sd->out.len == 0 && !sd->http_called && !sd->select_called,
           "a call with an argument error did something");
}

/* The byte path: the printed head through ws_conn_feed, whole or split. */
static void feed_side(side *sd, const char *head, size_t n, int split,
                      uint8_t at) {
  size_t k = split ? (size_t)at * n / 256 : n;
  uint8_t *a, *b;
  if (k == 0) k = 1;
  a = fz_dup((const uint8_t *)head, k);
  ws_conn_feed(sd->c, a, k);
  free(a);
  if (k < n && sd->c) {
    b = fz_dup((const uint8_t *)head + k, n - k);
    ws_conn_feed(sd->c, b, n - k);
    free(b);
  }
  check_complete_output(sd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  side A, B;
  req r;
  expect x;
  fz_in in = {data, size};
  uint8_t f, m, lim, at, fail_at;
  int answer, rc, status = -1, failed;
  static const char unset[] = "unset";
  const char *reason = unset;
  char accept[WS_ACCEPT_LEN + 1], *head, *proto = NULL;
  size_t head_len = 0;

  if (size < 5) return 0;
  f = fz_byte(&in, 0);
  m = fz_byte(&in, 0);
  lim = fz_byte(&in, 0);
  at = fz_byte(&in, 0);
  fail_at = fz_byte(&in, 0);
  answer = f & F_ANSWER;
  req_decode(&in, &r, f & F_NULLS);

  side_setup(&A, f, m, lim, answer);
  A.out.head_request = strcmp(r.method, "HEAD") == 0;
  expect_build(&x, &r, A.s);
  memset(accept, 'Z', sizeof(accept));
  if (f & F_BADARG) bad_call(&A, &r, at % 5);
  if (f & F_FAILMALLOC) fz_alloc_reset(&A.fa, (long)fail_at + 1);

  rc = call(&A, &r, f & F_NULLS, &status, &reason, accept);
  FZ_CHECK(rc == WS_OK, "upgrade call did not return WS_OK");
  failed = A.fa.failed;
  fz_alloc_reset(&A.fa, 0);

  if (answer) {
    FZ_CHECK(A.sends == 0 && A.out.len == 0,
             "ws_conn_upgrade_answer wrote HTTP bytes");
    if (status == 101) {
      FZ_CHECK(reason == NULL, "101 with a reason");
      FZ_CHECK(strlen(accept) == WS_ACCEPT_LEN, "accept not 28 characters");
      FZ_CHECK(x.could_101 && memcmp(accept, x.accept, 29) == 0,
               "accept differs from SHA-1(key + GUID)");
      FZ_CHECK(A.c != NULL && !A.tp_closed, "101 but the connection closed");
      proto = A.c && ws_conn_subprotocol(A.c)
                  ? strdup(ws_conn_subprotocol(A.c))
                  : NULL;
    } else {
      FZ_CHECK(status >= 400 && status <= 599, "refusal status not 4xx/5xx");
      FZ_CHECK(reason != NULL && reason != unset && accept[0] == '\0',
               "refusal without a reason or with an accept");
      /* on_close only for one that opened: on_open aborted it. */
      FZ_CHECK(A.tp_closed && A.c == NULL &&
                   (!A.app_closed || (A.abort_on_open && A.opened)),
               "refused connection not closed before return (or on_close)");
      if (A.abort_on_open && A.opened)
        FZ_CHECK(status == 503 && strcmp(reason, "connection closed during "
                                                 "on_open") == 0,
                 "on_open abort not reported as 503");
    }
  } else {
    check_complete_output(&A);
    status = A.out.len ? A.out.status : 0;
    if (status == 0)
      FZ_CHECK(failed || (A.abort_on_open && A.opened),
               "no response and no reason for it");
    else if (status == 200)
      FZ_CHECK(A.http_responded, "200 not from on_http");
    else if (status != 101)
      FZ_CHECK(status >= 400 && status <= 599, "refusal status not 4xx/5xx");
    if (status != 101 || A.abort_on_open)
      FZ_CHECK(A.tp_closed && A.c == NULL, "answered but not closed");
    if (status == 101) {
      proto = proto_of_101(&A.out);
      check_101_bytes(&A, &x, proto);
      if (A.c)
        FZ_CHECK((proto == NULL) == (ws_conn_subprotocol(A.c) == NULL) &&
                     (!proto || strcmp(proto, ws_conn_subprotocol(A.c)) == 0),
                 "101's subprotocol differs from ws_conn_subprotocol");
    }
  }
  if (getenv("FUZZ_TRACE"))
    fprintf(stderr, "parsed: %d%s%s\n", status, answer ? " answer " : "",
            answer && status != 101 ? reason : "");
  check_verdict(&A, &r, &x, status, proto, failed);
  check_stats(&A, A.c != NULL && A.opened);
  if (A.c) { /* a second upgrade of the same connection */
    long sends = A.sends;
    int st2;
    const char *re2;
    char acc2[WS_ACCEPT_LEN + 1];
    FZ_CHECK(call(&A, &r, 0, &st2, &re2, acc2) == WS_ESTATE,
             "second upgrade not WS_ESTATE");
    FZ_CHECK(A.sends == sends && A.c != NULL, "second upgrade did something");
  }

  /* Differential: the same request as bytes. */
  head = failed ? NULL : print_head(&r, &head_len);
  if (head) {
    char *bproto;
    side_setup(&B, f, m, lim, 0);
    B.out.head_request = A.out.head_request;
    feed_side(&B, head, head_len, f & F_SPLIT, at);
    bproto = B.out.status == 101 ? proto_of_101(&B.out) : NULL;
    if (getenv("FUZZ_TRACE"))
      fprintf(stderr, "bytes: %d (%zu bytes out)\n", B.out.status,
              B.out.len);
    if (too_large(status) && too_large(B.out.status)) {
      /* 414 or 431: the line ends the two forms use (the parsed path's
       * size is the shortest, bare LF) can put the request line on either
       * side of the limit. */
    } else if (x.over_limit && !request_line_ok(&r) &&
        (status == 400 || too_large(status)) &&
        (B.out.status == 400 || too_large(B.out.status))) {
      /* Over a limit with a bad request line: the parser answers
       * whichever it meets first in the bytes, 431 when the limit comes
       * before the line's bad byte; the parsed path checks the line
       * first. */
    } else if (!answer) {
      FZ_CHECK(A.out.status == B.out.status,
               "parsed and byte paths answer different statuses");
      if (!too_large(A.out.status))
        FZ_CHECK(A.out.len == B.out.len &&
                     (A.out.len == 0 ||
                      memcmp(A.out.buf, B.out.buf, A.out.len) == 0),
                 "parsed and byte paths wrote different responses");
    } else if (B.http_responded) {
      FZ_CHECK(status == 426 || status == 404,
               "a plain request answered by on_http: not 426/404 here");
    } else if (A.abort_on_open && B.opened) {
      FZ_CHECK(status == 503, "on_open abort not 503");
    } else {
      FZ_CHECK(status == B.out.status,
               "parsed (answer) and byte paths give different statuses");
      if (status == 101) {
        FZ_CHECK((proto == NULL) == (bproto == NULL) &&
                     (!proto || strcmp(proto, bproto) == 0),
                 "answer's subprotocol differs from the byte path's 101");
        FZ_CHECK(fz_memmem(B.out.buf, B.out.len, x.accept) != NULL,
                 "byte path's accept differs");
      } else if (!too_large(status)) {
        size_t bn, rn = strlen(reason);
        const uint8_t *body = body_of(&B.out, &bn);
        if (rn > 158) rn = 158;
        if (B.out.head_request) /* the same answer, without its content */
          FZ_CHECK(bn == 0, "content in the byte path's answer to HEAD");
        else
          FZ_CHECK(bn == rn + 1 && memcmp(body, reason, rn) == 0 &&
                       body[rn] == '\n',
                   "answer's reason differs from the byte path's refusal");
      }
    }
    free(bproto);
    side_free(&B);
    free(head);
  }

  free(proto);
  side_free(&A);
  free(x.offer);
  req_free(&r);
  return 0;
}
