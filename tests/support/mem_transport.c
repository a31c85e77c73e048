/* The in-memory transport: see mem_transport.h. */
#include "mem_transport.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t k_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- captured output -------------------------------------------------- */

static void out_add(mt_conn *t, const void *p, size_t n) {
  if (n == 0) return; /* a blocked send: out may still be NULL */
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + n) cap *= 2;
    t->out = realloc(t->out, cap);
    cr_assert_not_null(t->out, "mem_transport: out of memory");
    t->cap = cap;
  }
  memcpy(t->out + t->len, p, n);
  t->len += n;
}

/* How much of n bytes this call accepts: 0 when blocked. */
static size_t budget(const mt_conn *t, size_t n) {
  if (t->would_block) return 0;
  if (t->max_per_send && n > t->max_per_send) return t->max_per_send;
  return n;
}

static ssize_t mt_send_cb(ws_conn *c, void *transport, const void *data,
                          size_t len) {
  mt_conn *t = transport;
  size_t n;
  cr_assert_eq(c, t->c, "send for another connection's transport");
  cr_assert_eq(t->closes, 0, "send after the close callback");
  t->send_calls++;
  if (t->fail) return -1;
  n = budget(t, len);
  out_add(t, data, n);
  if (n && t->on_write) t->on_write(t);
  return (ssize_t)n;
}

static ssize_t mt_sendv_cb(ws_conn *c, void *transport, const ws_iovec *iov,
                           int iovcnt) {
  mt_conn *t = transport;
  size_t total = 0, room;
  int i;
  cr_assert_eq(c, t->c, "sendv for another connection's transport");
  cr_assert_eq(t->closes, 0, "sendv after the close callback");
  t->send_calls++;
  if (t->fail) return -1;
  for (i = 0; i < iovcnt; i++) total += iov[i].len;
  room = budget(t, total);
  total = 0;
  for (i = 0; i < iovcnt && total < room; i++) {
    size_t n = iov[i].len < room - total ? iov[i].len : room - total;
    out_add(t, iov[i].base, n);
    total += n;
  }
  if (total && t->on_write) t->on_write(t);
  return (ssize_t)total;
}

static int mt_want_cb(ws_conn *c, void *transport, int want) {
  mt_conn *t = transport;
  cr_assert_eq(c, t->c, "want_write for another connection's transport");
  cr_assert(want == 0 || want == 1, "want_write(%d)", want);
  cr_assert_neq(want, t->want, "want_write(%d) twice in a row", want);
  if (want)
    t->want_on++;
  else
    t->want_off++;
  t->want = want;
  if (t->on_want) t->on_want(t, want);
  return 0;
}

static int mt_close_cb(ws_conn *c, void *transport) {
  mt_conn *t = transport;
  cr_assert_eq(c, t->c, "close for another connection's transport");
  t->closes++;
  cr_assert_eq(t->closes, 1, "close callback called twice");
  t->len_at_close = t->len;
  if (t->on_tclose) t->on_tclose(t);
  t->c = NULL; /* the handle is gone once this returns */
  return 0;
}

void mt_config(ws_config *cfg, int use_sendv) {
  cfg->send = mt_send_cb;
  cfg->sendv = use_sendv ? mt_sendv_cb : NULL;
  cfg->want_write = mt_want_cb;
  cfg->close = mt_close_cb;
}

void mt_open(mt_conn *t, ws_server *s) {
  memset(t, 0, sizeof(*t));
  t->s = s;
  cr_assert_eq(ws_conn_new(s, t, &t->c), WS_OK, "ws_conn_new");
}

void mt_free(mt_conn *t) {
  free(t->out);
  t->out = NULL;
  t->len = t->cap = t->rpos = 0;
}

/* ---- feeding ---------------------------------------------------------- */

int mt_feed(mt_conn *t, const void *p, size_t n, int mode) {
  const uint8_t *b = p;
  size_t i;
  int rc;
  if (t->c == NULL) return WS_ECLOSED;
  if (mode != MT_BYTES) return ws_conn_feed(t->c, p, n);
  for (i = 0; i < n; i++) {
    rc = ws_conn_feed(t->c, b + i, 1);
    if (rc != WS_OK) return rc;
    if (t->c == NULL) return WS_ECLOSED;
  }
  return WS_OK;
}

int mt_feed_str(mt_conn *t, const char *s, int mode) {
  return mt_feed(t, s, strlen(s), mode);
}

void mt_pump(mt_conn *t) {
  while (t->c && ws_conn_want_write(t->c)) {
    size_t before = t->len;
    ws_conn_writable(t->c);
    if (t->len == before) break; /* blocked: no progress */
  }
}

/* ---- HTTP ------------------------------------------------------------- */

size_t mt_request(char *buf, size_t cap, const char *device_id,
                  const char *extra_headers) {
  int n = snprintf(buf, cap,
                   "GET /ws%s%s HTTP/1.1\r\n"
                   "Host: example.com\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " MT_SAMPLE_KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "%s\r\n",
                   device_id ? "?device_id=" : "", device_id ? device_id : "",
                   extra_headers ? extra_headers : "");
  cr_assert(n > 0 && (size_t)n < cap, "request does not fit");
  return (size_t)n;
}

static const uint8_t *find_crlfcrlf(const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i + 4 <= n; i++)
    if (memcmp(p + i, "\r\n\r\n", 4) == 0) return p + i;
  return NULL;
}

int mt_http_response(mt_conn *t, char *head, size_t head_cap,
                     const uint8_t **body, size_t *body_len) {
  const uint8_t *p = t->out + t->rpos, *end;
  size_t avail = t->len - t->rpos, hlen, clen = 0;
  const char *cl;
  char tmp[16384]; /* heads with WS_MAX_ADDED_HEADERS of lines fit */
  int status;
  if (avail == 0 || (end = find_crlfcrlf(p, avail)) == NULL) return 0;
  hlen = (size_t)(end - p) + 4;
  cr_assert_lt(hlen, sizeof(tmp), "response head too long");
  memcpy(tmp, p, hlen);
  tmp[hlen] = '\0';
  cr_assert_eq(sscanf(tmp, "HTTP/1.1 %d ", &status), 1,
               "not a status line: %.40s", tmp);
  cl = strstr(tmp, "Content-Length: ");
  if (cl) clen = (size_t)strtoul(cl + 16, NULL, 10);
  if (avail < hlen + clen) return 0;
  if (head) {
    cr_assert_lt(hlen, head_cap, "head buffer too small");
    memcpy(head, tmp, hlen + 1);
  }
  if (body) *body = p + hlen;
  if (body_len) *body_len = clen;
  t->rpos += hlen + clen;
  return status;
}

void mt_connect(mt_conn *t, ws_server *s, const char *device_id, int mode) {
  char req[512], head[1024];
  size_t n = mt_request(req, sizeof(req), device_id, NULL);
  int status;
  mt_open(t, s);
  cr_assert_eq(mt_feed(t, req, n, mode), WS_OK, "upgrade feed (%s)",
               MT_MODE_NAME(mode));
  mt_pump(t);
  status = mt_http_response(t, head, sizeof(head), NULL, NULL);
  cr_assert_eq(status, 101, "expected 101 (%s), got %d: %.*s",
               MT_MODE_NAME(mode), status, (int)t->len, (const char *)t->out);
  cr_assert_not_null(strstr(head, "Sec-WebSocket-Accept: " MT_SAMPLE_ACCEPT
                                  "\r\n"),
                     "bad accept key in %s", head);
  cr_assert_not_null(t->c, "connection closed after the 101");
}

/* ---- frames from the server ------------------------------------------- */

int mt_next_frame(mt_conn *t, mt_frame *f) {
  const uint8_t *p = t->out + t->rpos;
  size_t avail = t->len - t->rpos, hl = 2;
  uint64_t len;
  if (avail < 2) return 0;
  cr_assert_eq(p[1] & 0x80, 0, "server frame is masked");
  len = p[1] & 0x7f;
  if (len == 126) {
    hl = 4;
    if (avail < hl) return 0;
    len = ((uint64_t)p[2] << 8) | p[3];
    cr_assert_geq(len, 126, "non-minimal 16-bit length");
  } else if (len == 127) {
    int i;
    hl = 10;
    if (avail < hl) return 0;
    len = 0;
    for (i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
    cr_assert_gt(len, 0xffff, "non-minimal 64-bit length");
  }
  if (avail - hl < len) return 0;
  f->fin = (p[0] & 0x80) != 0;
  f->rsv = (p[0] >> 4) & 7;
  f->opcode = p[0] & 0x0f;
  f->payload = p + hl;
  f->len = (size_t)len;
  t->rpos += hl + (size_t)len;
  return 1;
}

void mt_expect_frame(mt_conn *t, mt_frame *f) {
  cr_assert(mt_next_frame(t, f), "expected a frame; %zu unread bytes",
            t->len - t->rpos);
}

int mt_payload_is(const mt_frame *f, const char *s) {
  return f->len == strlen(s) && memcmp(f->payload, s, f->len) == 0;
}

void mt_expect_text(mt_conn *t, const char *payload) {
  mt_frame f;
  mt_expect_frame(t, &f);
  cr_assert_eq(f.opcode, MT_TEXT, "expected text, got opcode %d", f.opcode);
  cr_assert(f.fin, "text frame without FIN");
  cr_assert(mt_payload_is(&f, payload), "expected %s, got %.*s", payload,
            (int)f.len, (const char *)f.payload);
}

int mt_close_code(const mt_frame *f) {
  if (f->len < 2) return -1;
  return (f->payload[0] << 8) | f->payload[1];
}

size_t mt_expect_close(mt_conn *t, int code) {
  mt_frame f;
  mt_expect_frame(t, &f);
  cr_assert_eq(f.opcode, MT_CLOSE, "expected close %d, got opcode %d: %.*s",
               code, f.opcode, (int)f.len, (const char *)f.payload);
  cr_assert_eq(mt_close_code(&f), code, "close code");
  return f.len >= 2 ? f.len - 2 : 0;
}

size_t mt_unread(const mt_conn *t) { return t->len - t->rpos; }

void mt_expect_nothing(mt_conn *t) {
  cr_assert_eq(t->len - t->rpos, 0, "unexpected output: %zu bytes",
               t->len - t->rpos);
}

/* ---- frames from the client ------------------------------------------- */

void mt_bytes_add(mt_bytes *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    b->p = realloc(b->p, cap);
    cr_assert_not_null(b->p, "mt_bytes: out of memory");
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
}

void mt_bytes_str(mt_bytes *b, const char *s) { mt_bytes_add(b, s, strlen(s)); }

void mt_bytes_free(mt_bytes *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

void mt_frame_header(mt_bytes *b, int opcode, unsigned flags, uint64_t len) {
  uint8_t h[14];
  size_t n = 2;
  int masked = !(flags & MT_UNMASKED);
  h[0] = (uint8_t)((flags & MT_NOFIN ? 0 : 0x80) | (flags & MT_RSV1 ? 0x40 : 0) |
                   (flags & MT_RSV2 ? 0x20 : 0) | (flags & MT_RSV3 ? 0x10 : 0) |
                   (opcode & 0x0f));
  if (len < 126) {
    h[1] = (uint8_t)len;
  } else if (len <= 0xffff) {
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    n = 4;
  } else {
    int i;
    h[1] = 127;
    for (i = 0; i < 8; i++) h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (masked) {
    h[1] |= 0x80;
    memcpy(h + n, k_mask, 4);
    n += 4;
  }
  mt_bytes_add(b, h, n);
}

void mt_frame_add(mt_bytes *b, int opcode, unsigned flags, const void *p,
                  size_t n) {
  const uint8_t *src = p;
  size_t i, at;
  mt_frame_header(b, opcode, flags, n);
  at = b->len;
  mt_bytes_add(b, p, n);
  if (!(flags & MT_UNMASKED))
    for (i = 0; i < n; i++) b->p[at + i] = (uint8_t)(src[i] ^ k_mask[i % 4]);
}

void mt_frame_str(mt_bytes *b, int opcode, unsigned flags, const char *s) {
  mt_frame_add(b, opcode, flags, s, strlen(s));
}

void mt_close_add(mt_bytes *b, int code, const char *reason) {
  uint8_t p[256];
  size_t n = 0, rl = reason ? strlen(reason) : 0;
  if (code >= 0) {
    cr_assert_lt(rl, sizeof(p) - 2);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason ? reason : "", rl);
    n = 2 + rl;
  }
  mt_frame_add(b, MT_CLOSE, 0, p, n);
}

int mt_send_frame(mt_conn *t, int opcode, unsigned flags, const void *p,
                  size_t n, int mode) {
  mt_bytes b = {.p = NULL};
  int rc;
  mt_frame_add(&b, opcode, flags, p, n);
  rc = mt_feed(t, b.p, b.len, mode);
  mt_bytes_free(&b);
  return rc;
}

int mt_send_text(mt_conn *t, const char *s, int mode) {
  return mt_send_frame(t, MT_TEXT, 0, s, strlen(s), mode);
}

void mt_done(ws_server *s, mt_conn *a, mt_conn *b) {
  ws_server_free(s);
  cr_expect_eq(test_alloc_live(), 0, "%ld allocations live", test_alloc_live());
  if (a) mt_free(a);
  if (b) mt_free(b);
}

const ws_header mt_upgrade_headers[MT_UPGRADE_HEADER_COUNT] = {
    {"Host", 4, "x", 1},
    {"Upgrade", 7, "websocket", 9},
    {"Connection", 10, "Upgrade", 7},
    {"Sec-WebSocket-Key", 17, MT_SAMPLE_KEY, 24},
    {"Sec-WebSocket-Version", 21, "13", 2},
};
