/*
 * The conformance case table (see cases.h): a small builder that writes
 * masked client frames and cuts them into chunks, one generator per group,
 * and the outcome checker both runners share.
 *
 * Cases are generated where a rule has many instances: every close code
 * 0..5000, UTF-8 sequences split at every byte, every RSV value, every
 * reserved opcode, header bytes cut at every position. Expected outcomes
 * come from this file's own reading of RFC 6455 (and a reference UTF-8
 * check written the slow, obvious way), never from the library.
 */
#include "cases.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 6455 1.3's sample key and its accept value. */
#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

#define MAX_MESSAGE 65536 /* ws_config default max_message */
#define NO_STOP ((size_t)-1)
#define STOP_HEADER ((size_t)-2) /* put_frame_x: due once the header is in */

static const char *const group_names[CONF_G_COUNT] = {
    [CONF_G_FRAMING] = "framing",
    [CONF_G_PINGPONG] = "pingpong",
    [CONF_G_RSV] = "reserved bits",
    [CONF_G_OPCODES] = "opcodes",
    [CONF_G_FRAGMENTS] = "fragmentation",
    [CONF_G_UTF8] = "utf8",
    [CONF_G_LIMITS] = "limits",
    [CONF_G_CLOSE] = "close",
    [CONF_G_HANDSHAKE] = "handshake",
};

const char *conf_group_name(int group) {
  return group >= 0 && group < CONF_G_COUNT ? group_names[group] : "?";
}

/* ======================================================================== */
/* Reference checks                                                         */
/* ======================================================================== */

/* Well-formed UTF-8 byte sequences (Unicode 15, table 3-7): a lead range
 * and the allowed range of each following byte. */
typedef struct utf8_row {
  uint8_t lo[4], hi[4];
  int n;
} utf8_row;

static const utf8_row utf8_rows[] = {
    {.lo = {0x00}, .hi = {0x7F}, .n = 1},
    {.lo = {0xC2, 0x80}, .hi = {0xDF, 0xBF}, .n = 2},
    {.lo = {0xE0, 0xA0, 0x80}, .hi = {0xE0, 0xBF, 0xBF}, .n = 3},
    {.lo = {0xE1, 0x80, 0x80}, .hi = {0xEC, 0xBF, 0xBF}, .n = 3},
    {.lo = {0xED, 0x80, 0x80}, .hi = {0xED, 0x9F, 0xBF}, .n = 3},
    {.lo = {0xEE, 0x80, 0x80}, .hi = {0xEF, 0xBF, 0xBF}, .n = 3},
    {.lo = {0xF0, 0x90, 0x80, 0x80}, .hi = {0xF0, 0xBF, 0xBF, 0xBF}, .n = 4},
    {.lo = {0xF1, 0x80, 0x80, 0x80}, .hi = {0xF3, 0xBF, 0xBF, 0xBF}, .n = 4},
    {.lo = {0xF4, 0x80, 0x80, 0x80}, .hi = {0xF4, 0x8F, 0xBF, 0xBF}, .n = 4},
};

/* Index of the first byte that no valid UTF-8 text can have there, or n
 * when p[0..n) is a prefix of valid text. *whole is set when p[0..n) ends
 * at a character boundary. */
static size_t ref_utf8_bad_at(const uint8_t *p, size_t n, int *whole) {
  size_t i = 0;
  *whole = 1;
  while (i < n) {
    const utf8_row *r = NULL;
    size_t k;
    for (k = 0; k < sizeof(utf8_rows) / sizeof(utf8_rows[0]); k++)
      if (p[i] >= utf8_rows[k].lo[0] && p[i] <= utf8_rows[k].hi[0])
        r = &utf8_rows[k];
    if (r == NULL) return i;
    for (k = 1; k < (size_t)r->n; k++) {
      if (i + k >= n) {
        *whole = 0;
        return n;
      }
      if (p[i + k] < r->lo[k] || p[i + k] > r->hi[k]) return i + k;
    }
    i += (size_t)r->n;
  }
  return n;
}

static int ref_utf8_valid(const uint8_t *p, size_t n) {
  int whole;
  return ref_utf8_bad_at(p, n, &whole) == n && whole;
}

/* Close codes a peer may send (RFC 6455 7.4.1, 7.4.2 and the IANA
 * registry): 1000-1003, 1007-1014 (1012-1014 registered since), 3000-4999.
 * 0-999, 1004-1006, 1015 and 1016-2999 must not appear on the wire. */
static int ref_close_code_valid(int code) {
  if (code >= 3000 && code <= 4999) return 1;
  if (code >= 1000 && code <= 1003) return 1;
  return code >= 1007 && code <= 1014;
}

/* ======================================================================== */
/* Builder                                                                  */
/* ======================================================================== */

typedef struct builder {
  conf_table *t;
  size_t cap, ends_cap, syncs_cap;
  int oom;       /* an allocation failed */
  int bad_table; /* an entry contradicts the reference checks */
} builder;

static conf_case *cur(builder *b) { return &b->t->v[b->t->n - 1]; }

static uint32_t rng_next(conf_table *t) {
  uint32_t x = t->rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  t->rng = x;
  return x;
}

static void *grow(builder *b, void *p, size_t *cap, size_t need, size_t esz) {
  size_t nc;
  void *np;
  if (need <= *cap) return p;
  nc = *cap ? *cap : 16;
  while (nc < need) nc *= 2;
  np = realloc(p, nc * esz);
  if (np == NULL) {
    b->oom = 1;
    return NULL;
  }
  *cap = nc;
  return np;
}

static conf_case *add_case(builder *b, int group, int sub, const char *rfc,
                           const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static conf_case *add_case(builder *b, int group, int sub, const char *rfc,
                           const char *fmt, ...) {
  conf_table *t = b->t;
  conf_case *c;
  va_list ap;
  conf_case *nv = grow(b, t->v, &t->cap, t->n + 1, sizeof(*t->v));
  if (nv == NULL) return NULL;
  t->v = nv;
  c = &t->v[t->n++];
  memset(c, 0, sizeof(*c));
  snprintf(c->id, sizeof(c->id), "%d.%d.%d", group + 1, sub,
           ++t->counters[group][sub & 15]);
  c->group = group;
  c->rfc = rfc;
  c->http_status = 101;
  c->stop_after = NO_STOP;
  c->end = CONF_CLOSES;
  va_start(ap, fmt);
  vsnprintf(c->title, sizeof(c->title), fmt, ap);
  va_end(ap);
  b->cap = b->ends_cap = b->syncs_cap = 0;
  return c;
}

static void put(builder *b, const void *p, size_t n) {
  conf_case *c = cur(b);
  uint8_t *nb;
  if (n == 0) return;
  nb = grow(b, c->bytes, &b->cap, c->len + n, 1);
  if (nb == NULL) return;
  c->bytes = nb;
  memcpy(c->bytes + c->len, p, n);
  c->len += n;
}

static void puts0(builder *b, const char *s) { put(b, s, strlen(s)); }

/* Ends the current chunk here (no empty chunks). */
static void cut(builder *b) {
  conf_case *c = cur(b);
  size_t *ne;
  if (c->len == (c->nchunks ? c->ends[c->nchunks - 1] : 0)) return;
  ne = grow(b, c->ends, &b->ends_cap, c->nchunks + 1, sizeof(*c->ends));
  if (ne == NULL) return;
  c->ends = ne;
  c->ends[c->nchunks++] = c->len;
}

/* Ends a chunk at absolute offset off (after the last end, within the
 * script): for cutting a frame that was written whole. */
static void cut_at(builder *b, size_t off) {
  conf_case *c = cur(b);
  size_t *ne;
  if (off <= (c->nchunks ? c->ends[c->nchunks - 1] : 0) || off >= c->len)
    return;
  ne = grow(b, c->ends, &b->ends_cap, c->nchunks + 1, sizeof(*c->ends));
  if (ne == NULL) return;
  c->ends = ne;
  c->ends[c->nchunks++] = off;
}

/* Like cut_at, and the outcome is due there. */
static void stop_at(builder *b, size_t off) {
  cut_at(b, off);
  if (cur(b)->stop_after == NO_STOP) cur(b)->stop_after = cur(b)->nchunks - 1;
}

/* The outcome must be complete once the bytes so far are sent. */
static void stop(builder *b) {
  cut(b);
  if (cur(b)->stop_after == NO_STOP) cur(b)->stop_after = cur(b)->nchunks - 1;
}

/* Makes the chunk so far a sync point: the runner sends no more until
 * exactly `frames` expected frames are in (see cases.h). sync_here ends
 * the chunk here first. */
static void add_sync(builder *b, size_t frames) {
  conf_case *c = cur(b);
  conf_sync *ns;
  if (c->nchunks == 0) {
    b->bad_table = 1;
    return;
  }
  ns = grow(b, c->syncs, &b->syncs_cap, c->nsyncs + 1, sizeof(*c->syncs));
  if (ns == NULL) return;
  c->syncs = ns;
  c->syncs[c->nsyncs].after_chunk = c->nchunks - 1;
  c->syncs[c->nsyncs].frames = frames;
  c->nsyncs++;
}

static void sync_here(builder *b, size_t frames) {
  cut(b);
  add_sync(b, frames);
}

/* The same at absolute offset off (see cut_at). */
static void sync_at(builder *b, size_t off, size_t frames) {
  cut_at(b, off);
  add_sync(b, frames);
}

/* Cuts the bytes from offset from on into chunks of size bytes. */
static void chop(builder *b, size_t from, size_t size) {
  size_t k;
  for (k = from + size; k < cur(b)->len; k += size) cut_at(b, k);
}

/* A client frame: b0 carries FIN, RSV and opcode; claimed is the length
 * written in the header (form 0: minimal, 16 or 64: that encoding); n
 * payload bytes follow, masked unless masked is 0. With stop_byte < n the
 * chunk is cut right after payload byte stop_byte and the outcome marked
 * due there (stop); with STOP_HEADER, right after the header: what the
 * header says wrong is judged before any payload arrives. */
static void put_frame_x(builder *b, int b0, int masked, uint64_t claimed,
                        int form, const void *payload, size_t n,
                        size_t stop_byte) {
  uint8_t h[14], key[4];
  const uint8_t *p = payload;
  size_t hl = 2, i;
  uint32_t k = rng_next(b->t);
  h[0] = (uint8_t)b0;
  if (form == 0) form = claimed < 126 ? 7 : claimed <= 0xffff ? 16 : 64;
  if (form == 7) {
    h[1] = (uint8_t)claimed;
  } else if (form == 16) {
    h[1] = 126;
    h[2] = (uint8_t)(claimed >> 8);
    h[3] = (uint8_t)claimed;
    hl = 4;
  } else {
    h[1] = 127;
    for (i = 0; i < 8; i++) h[2 + i] = (uint8_t)(claimed >> (56 - 8 * i));
    hl = 10;
  }
  if (masked) {
    h[1] |= 0x80;
    for (i = 0; i < 4; i++) key[i] = (uint8_t)(k >> (8 * i));
    memcpy(h + hl, key, 4);
    hl += 4;
  }
  put(b, h, hl);
  if (stop_byte == STOP_HEADER) stop(b);
  for (i = 0; i < n; i++) {
    uint8_t x = (uint8_t)(masked ? p[i] ^ key[i % 4] : p[i]);
    put(b, &x, 1);
    if (i == stop_byte) stop(b);
  }
}

static int b0_of(int fin, int rsv, int opcode) {
  return (fin ? 0x80 : 0) | (rsv << 4) | opcode;
}

/* A masked, minimally encoded frame. */
static void frame(builder *b, int fin, int opcode, const void *p, size_t n) {
  put_frame_x(b, b0_of(fin, 0, opcode), 1, n, 0, p, n, NO_STOP);
}

static void text(builder *b, const char *s) {
  frame(b, 1, OP_TEXT, s, strlen(s));
}

static void close_frame(builder *b, int code, const void *reason,
                        size_t rlen) {
  uint8_t p[256];
  size_t n = 0;
  if (code >= 0) {
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    n = 2;
  }
  if (rlen) memcpy(p + n, reason, rlen);
  frame(b, 1, OP_CLOSE, p, n + rlen);
}

static void exp_push(builder *b, conf_frames *fs, int opcode, int code,
                     const void *p, size_t n) {
  conf_frame *f;
  conf_frame *nv = grow(b, fs->v, &fs->cap, fs->n + 1, sizeof(*fs->v));
  if (nv == NULL) return;
  fs->v = nv;
  f = &fs->v[fs->n];
  memset(f, 0, sizeof(*f));
  f->opcode = (uint8_t)opcode;
  f->code = code;
  f->len = n;
  if (n) {
    f->payload = malloc(n);
    if (f->payload == NULL) {
      b->oom = 1;
      return;
    }
    memcpy(f->payload, p, n);
  }
  fs->n++;
}

static void exp_frame(builder *b, int opcode, const void *p, size_t n) {
  exp_push(b, &cur(b)->expect, opcode, 0, p, n);
}

static void exp_text(builder *b, const char *s) {
  exp_frame(b, OP_TEXT, s, strlen(s));
}

static void exp_close(builder *b, int code) {
  exp_push(b, &cur(b)->expect, OP_CLOSE, code, NULL, 0);
}

/* Seals the case: the last chunk, the stop point, the default reply; and
 * checks it is consistent (a WebSocket case that ends closed expects a
 * close frame last, one that stays open expects none). */
static void done(builder *b, int end) {
  conf_case *c = cur(b);
  size_t i, ncl = 0;
  cut(b);
  c->end = end;
  for (i = 0; i < c->expect.n; i++) ncl += c->expect.v[i].opcode == OP_CLOSE;
  if (c->http_status == 101 &&
      (end == CONF_STAYS_OPEN
           ? ncl != 0
           : ncl != 1 || c->expect.v[c->expect.n - 1].opcode != OP_CLOSE))
    b->bad_table = 1;
  if (c->http_status != 101 && (c->expect.n || end != CONF_CLOSES))
    b->bad_table = 1;
  if (c->stop_after == NO_STOP || end != CONF_CLOSES)
    c->stop_after = c->nchunks ? c->nchunks - 1 : 0;
  /* Sync points come before the outcome is due, in order, each expecting
   * no fewer frames than the last, and no close. */
  for (i = 0; i < c->nsyncs; i++) {
    const conf_sync *y = &c->syncs[i];
    size_t k;
    if (y->after_chunk >= c->stop_after || y->frames > c->expect.n ||
        (i && (y->after_chunk <= c->syncs[i - 1].after_chunk ||
               y->frames < c->syncs[i - 1].frames)))
      b->bad_table = 1;
    for (k = 0; k < y->frames && k < c->expect.n; k++)
      if (c->expect.v[k].opcode == OP_CLOSE) b->bad_table = 1;
  }
  if (end == CONF_AWAITS_REPLY && c->reply == NULL) {
    static const uint8_t close1000[] = {0x88, 0x82, 0x5a, 0xa5, 0x0f, 0xf0,
                                        0x03 ^ 0x5a, 0xe8 ^ 0xa5};
    c->reply = malloc(sizeof(close1000));
    if (c->reply == NULL) {
      b->oom = 1;
      return;
    }
    memcpy(c->reply, close1000, sizeof(close1000));
    c->reply_len = sizeof(close1000);
  }
}

/* Sets a custom reply for CONF_AWAITS_REPLY (bytes from small_frame). */
static void set_reply(builder *b, const uint8_t *p, size_t n) {
  conf_case *c = cur(b);
  c->reply = malloc(n);
  if (c->reply == NULL) {
    b->oom = 1;
    return;
  }
  memcpy(c->reply, p, n);
  c->reply_len = n;
}

/* Writes a masked frame into out (at most 8 + 125 bytes). */
static size_t small_frame(uint8_t *out, int opcode, const void *p, size_t n) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  const uint8_t *s = p;
  size_t i;
  out[0] = (uint8_t)(0x80 | opcode);
  out[1] = (uint8_t)(0x80 | n);
  memcpy(out + 2, key, 4);
  for (i = 0; i < n; i++) out[6 + i] = (uint8_t)(s[i] ^ key[i % 4]);
  return 6 + n;
}

/* ---- messages --------------------------------------------------------- */

static const char echo_head[] = "{\"action\":\"echo\",\"data\":\"";
static const char echo_tail[] = "\"}";
#define ECHO_OVERHEAD (sizeof(echo_head) - 1 + sizeof(echo_tail) - 1)

/* {"action":"echo","data":"<data>"} in a malloc'd buffer. */
static uint8_t *echo_msg(builder *b, const void *data, size_t n,
                         size_t *len) {
  uint8_t *m = malloc(ECHO_OVERHEAD + n);
  if (m == NULL) {
    b->oom = 1;
    *len = 0;
    return NULL;
  }
  memcpy(m, echo_head, sizeof(echo_head) - 1);
  if (n) memcpy(m + sizeof(echo_head) - 1, data, n);
  memcpy(m + sizeof(echo_head) - 1 + n, echo_tail, sizeof(echo_tail) - 1);
  *len = ECHO_OVERHEAD + n;
  return m;
}

/* An echo message of exactly total bytes (total >= ECHO_OVERHEAD). */
static uint8_t *echo_sized(builder *b, size_t total) {
  size_t n = total - ECHO_OVERHEAD, len, i;
  uint8_t *d = malloc(n ? n : 1), *m;
  if (d == NULL) {
    b->oom = 1;
    return NULL;
  }
  for (i = 0; i < n; i++) d[i] = (uint8_t)('a' + i % 26);
  m = echo_msg(b, d, n, &len);
  free(d);
  return m;
}

/* Sends msg as frames cut at splits[] (payload offsets, increasing), each
 * frame its own chunk; opcode on the first, continuations after. With
 * bad < n the chunk is cut right after payload byte bad and the outcome is
 * due there. */
static void put_fragments(builder *b, int opcode, const uint8_t *msg, size_t n,
                          const size_t *splits, size_t nsplits, size_t bad) {
  size_t start = 0, i;
  for (i = 0; i <= nsplits; i++) {
    size_t end = i < nsplits ? splits[i] : n, flen = end - start;
    int b0 = b0_of(i == nsplits, 0, i == 0 ? opcode : OP_CONT);
    size_t at = bad >= start && bad < end ? bad - start : NO_STOP;
    put_frame_x(b, b0, 1, flen, 0, msg + start, flen, at);
    cut(b);
    start = end;
  }
}

/* The server's error reply for a bad message (ws__envelope_error's text,
 * as documented in wsmux.h). */
static void exp_error(builder *b, const char *code, const char *message) {
  char buf[256];
  snprintf(buf, sizeof(buf),
           "{\"action\":\"error\",\"data\":{\"code\":\"%s\",\"message\":%s}}",
           code, message);
  exp_text(b, buf);
}

/* ======================================================================== */
/* 1 framing                                                                */
/* ======================================================================== */

static void gen_framing(builder *b) {
  static const size_t sizes[] = {27,  28,  100,  125,  126,  127,  128,
                                 1000, 4095, 4096, 4097, 16384, 65535};
  static const size_t cut_sizes[] = {27, 200, 65536};
  size_t i, k;
  const int G = CONF_G_FRAMING;

  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uint8_t *m = echo_sized(b, sizes[i]);
    if (m == NULL) return;
    if (add_case(b, G, 1, "5.2", "text echo, %zu-byte payload", sizes[i])) {
      frame(b, 1, OP_TEXT, m, sizes[i]);
      exp_frame(b, OP_TEXT, m, sizes[i]);
      done(b, CONF_STAYS_OPEN);
    }
    free(m);
  }

  /* Frame header cut at every byte (and the payload after it). */
  for (i = 0; i < sizeof(cut_sizes) / sizeof(cut_sizes[0]); i++) {
    size_t n = cut_sizes[i], hl = 2 + (n < 126 ? 0 : n <= 0xffff ? 2 : 8) + 4;
    uint8_t *m = echo_sized(b, n);
    if (m == NULL) return;
    for (k = 1; k <= hl; k++) {
      if (!add_case(b, G, 2, "5.2", "%zu-byte text, cut after header byte %zu",
                    n, k))
        break;
      frame(b, 1, OP_TEXT, m, n);
      cut_at(b, k);
      exp_frame(b, OP_TEXT, m, n);
      done(b, CONF_STAYS_OPEN);
    }
    free(m);
  }

  if (add_case(b, G, 3, "5.2", "two messages in one chunk")) {
    text(b, "{\"action\":\"echo\",\"data\":\"one\"}");
    text(b, "{\"action\":\"echo\",\"data\":\"two\"}");
    exp_text(b, "{\"action\":\"echo\",\"data\":\"one\"}");
    exp_text(b, "{\"action\":\"echo\",\"data\":\"two\"}");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 3, "5.2", "50 messages in one chunk, order kept")) {
    char m[64];
    for (k = 0; k < 50; k++) {
      snprintf(m, sizeof(m), "{\"action\":\"echo\",\"data\":\"m%zu\"}", k);
      text(b, m);
      exp_text(b, m);
    }
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 3, "5.2", "50 messages, one chunk each")) {
    char m[64];
    for (k = 0; k < 50; k++) {
      snprintf(m, sizeof(m), "{\"action\":\"echo\",\"data\":\"n%zu\"}", k);
      text(b, m);
      cut(b);
      exp_text(b, m);
    }
    done(b, CONF_STAYS_OPEN);
  }

  /* Non-minimal payload lengths (5.2: the minimal number of bytes MUST be
   * used): failed as soon as the length is read. */
  {
    static const struct {
      uint64_t len;
      int form;
    } nm[] = {{0, 16}, {125, 16}, {126, 64}, {65535, 64}};
    uint8_t *pad = calloc(1, 65535);
    if (pad == NULL) {
      b->oom = 1;
      return;
    }
    for (i = 0; i < sizeof(nm) / sizeof(nm[0]); i++) {
      if (add_case(b, G, 4, "5.2",
                   "length %llu in the %d-bit form: 1002 at the length",
                   (unsigned long long)nm[i].len, nm[i].form)) {
        put_frame_x(b, b0_of(1, 0, OP_TEXT), 1, nm[i].len, nm[i].form, pad,
                    (size_t)nm[i].len, NO_STOP);
        stop_at(b, nm[i].form == 16 ? 4 : 10);
        exp_close(b, 1002);
        done(b, CONF_CLOSES);
      }
    }
    free(pad);
    if (add_case(b, G, 4, "5.2", "64-bit length with its top bit set: 1002")) {
      uint8_t h[10] = {0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
      put(b, h, sizeof(h));
      stop(b);
      put(b, "\x01\x02\x03\x04", 4);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
  }

  /* Masking (5.1, 5.3): every client frame must be masked. */
  {
    static const struct {
      int opcode;
      const char *payload;
      const char *what;
    } um[] = {
        {OP_TEXT, "{\"action\":\"echo\",\"data\":\"x\"}", "text"},
        {OP_TEXT, "", "empty text"},
        {OP_BINARY, "abc", "binary"},
        {OP_PING, "hi", "ping"},
        {OP_PING, "", "empty ping"},
        {OP_PONG, "hi", "pong"},
        {OP_CLOSE, "\x03\xe8", "close"},
    };
    for (i = 0; i < sizeof(um) / sizeof(um[0]); i++) {
      if (!add_case(b, G, 5, "5.1", "unmasked %s frame: 1002", um[i].what))
        continue;
      put_frame_x(b, b0_of(1, 0, um[i].opcode), 0, strlen(um[i].payload), 0,
                  um[i].payload, strlen(um[i].payload), NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 5, "5.1", "unmasked text, header alone: 1002")) {
      put_frame_x(b, b0_of(1, 0, OP_TEXT), 0, 10, 0, "0123456789", 10,
                  STOP_HEADER);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 5, "5.1", "echo, then an unmasked text: echo, 1002")) {
      text(b, "{\"action\":\"echo\",\"data\":\"ok\"}");
      put_frame_x(b, b0_of(1, 0, OP_TEXT), 0, 3, 0, "abc", 3, NO_STOP);
      exp_text(b, "{\"action\":\"echo\",\"data\":\"ok\"}");
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 5, "5.3", "all-zero masking key")) {
      static const char m[] = "{\"action\":\"echo\",\"data\":\"zero\"}";
      uint8_t h[6] = {0x81, 0x80 | (sizeof(m) - 1), 0, 0, 0, 0};
      put(b, h, sizeof(h));
      put(b, m, sizeof(m) - 1);
      exp_text(b, m);
      done(b, CONF_STAYS_OPEN);
    }
  }

  /* The message layer on top (ping/pong protocol): observable replies. */
  if (add_case(b, G, 6, "5.6", "{\"action\":\"ping\"} answered by pong")) {
    text(b, "{\"action\":\"ping\"}");
    exp_text(b, "{\"action\":\"pong\",\"data\":\"\"}");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.6", "empty text message: invalid_json reply")) {
    text(b, "");
    exp_error(b, "invalid_json", "\"message is not valid JSON\"");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.6", "text that is not JSON: invalid_json reply")) {
    text(b, "Hello, world");
    exp_error(b, "invalid_json", "\"message is not valid JSON\"");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.6", "JSON array: not_object reply")) {
    text(b, "[1,2,3]");
    exp_error(b, "not_object", "\"message must be a JSON object\"");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.6", "no action: bad_action reply")) {
    text(b, "{\"data\":1}");
    exp_error(b, "bad_action",
              "\"\\\"action\\\" must be a string (at most 255 bytes, no NUL)\"");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.6", "unknown action: unknown_action reply")) {
    text(b, "{\"action\":\"nope\"}");
    exp_error(b, "unknown_action", "\"unknown action: nope\"");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 7, "5.6", "echo of an object, byte for byte")) {
    const char *m =
        "{ \"action\" : \"echo\", \"data\" : {\"a\": [1, 2.5e3, {\"b\": null}]} }";
    text(b, m);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 7, "5.6", "echo with escapes in data")) {
    const char *m = "{\"action\":\"echo\",\"data\":\"tab\\t quote\\\" \\u00e9\"}";
    text(b, m);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }

  /* Autobahn 1.1.8: a frame sent in chops of 997 bytes. */
  {
    uint8_t *m = echo_sized(b, MAX_MESSAGE);
    if (m == NULL) return;
    if (add_case(b, G, 8, "5.2", "65536-byte text in chops of 997: echoed")) {
      frame(b, 1, OP_TEXT, m, MAX_MESSAGE);
      chop(b, 0, 997);
      exp_frame(b, OP_TEXT, m, MAX_MESSAGE);
      done(b, CONF_STAYS_OPEN);
    }
    /* Autobahn 1.2.x: binary of every length form; no binary handler, so
     * the whole message is read, then refused (1003). */
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
      if (sizes[i] < 100) continue;
      if (!add_case(b, G, 9, "5.6", "binary of %zu bytes: close 1003",
                    sizes[i]))
        continue;
      frame(b, 1, OP_BINARY, m, sizes[i]);
      exp_close(b, 1003);
      done(b, CONF_AWAITS_REPLY);
    }
    if (add_case(b, G, 9, "5.6", "65536-byte binary in chops of 997: 1003")) {
      frame(b, 1, OP_BINARY, m, MAX_MESSAGE);
      chop(b, 0, 997);
      exp_close(b, 1003);
      done(b, CONF_AWAITS_REPLY);
    }
    free(m);
  }
}

/* ======================================================================== */
/* 2 ping / pong                                                            */
/* ======================================================================== */

static void gen_pingpong(builder *b) {
  static const size_t sizes[] = {0, 1, 10, 124, 125};
  const int G = CONF_G_PINGPONG;
  uint8_t bin[126];
  size_t i, k;
  for (i = 0; i < sizeof(bin); i++) bin[i] = (uint8_t)(i * 7 + 3);

  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    if (!add_case(b, G, 1, "5.5.2", "ping with %zu bytes: pong echoes them",
                  sizes[i]))
      continue;
    frame(b, 1, OP_PING, bin, sizes[i]);
    exp_frame(b, OP_PONG, bin, sizes[i]);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "5.5.2", "ping with every byte value 0..124")) {
    uint8_t all[125];
    for (i = 0; i < sizeof(all); i++) all[i] = (uint8_t)(i * 2 + (i & 1) * 3);
    frame(b, 1, OP_PING, all, sizeof(all));
    exp_frame(b, OP_PONG, all, sizeof(all));
    done(b, CONF_STAYS_OPEN);
  }

  /* Too long or fragmented controls: failed at the second header byte. */
  if (add_case(b, G, 2, "5.5", "ping with 126 bytes: 1002")) {
    put_frame_x(b, b0_of(1, 0, OP_PING), 1, 126, 0, bin, 126, NO_STOP);
    stop_at(b, 2);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 2, "5.5", "ping claiming 64-bit length 200: 1002")) {
    uint8_t big[200];
    memset(big, 'p', sizeof(big));
    put_frame_x(b, b0_of(1, 0, OP_PING), 1, 200, 64, big, 200, NO_STOP);
    stop_at(b, 2);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  for (k = 0; k < 2; k++) {
    if (!add_case(b, G, 2, "5.5", "fragmented ping (FIN 0, %s payload): 1002",
                  k ? "5-byte" : "empty"))
      continue;
    put_frame_x(b, b0_of(0, 0, OP_PING), 1, k ? 5 : 0, 0, "hello", k ? 5 : 0,
                NO_STOP);
    stop_at(b, 2);
    frame(b, 1, OP_CONT, "world", 5);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }

  /* Unsolicited pongs are ignored (5.5.3). */
  for (i = 0; i < 3; i++) {
    static const size_t psz[] = {0, 10, 125};
    if (!add_case(b, G, 3, "5.5.3", "unsolicited %zu-byte pong ignored",
                  psz[i]))
      continue;
    frame(b, 1, OP_PONG, bin, psz[i]);
    text(b, "{\"action\":\"echo\",\"data\":\"after pong\"}");
    exp_text(b, "{\"action\":\"echo\",\"data\":\"after pong\"}");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 3, "5.5.3", "10 unsolicited pongs, each its own chunk")) {
    for (k = 0; k < 10; k++) {
      frame(b, 1, OP_PONG, bin, k);
      cut(b);
    }
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 3, "5.5", "pong with 126 bytes: 1002")) {
    put_frame_x(b, b0_of(1, 0, OP_PONG), 1, 126, 0, bin, 126, NO_STOP);
    stop_at(b, 2);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.5", "fragmented pong: 1002")) {
    put_frame_x(b, b0_of(0, 0, OP_PONG), 1, 3, 0, "abc", 3, NO_STOP);
    stop_at(b, 2);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }

  /* Order with data. */
  if (add_case(b, G, 4, "5.5.2", "ping then echo: pong then echo")) {
    frame(b, 1, OP_PING, "p1", 2);
    text(b, "{\"action\":\"echo\",\"data\":\"e1\"}");
    exp_frame(b, OP_PONG, "p1", 2);
    exp_text(b, "{\"action\":\"echo\",\"data\":\"e1\"}");
    done(b, CONF_STAYS_OPEN);
  }
  /* (Echo then ping has no one right order: a pong may overtake a reply
   * still queued, 5.5.3 "as soon as is practical".) */
  if (add_case(b, G, 4, "5.5.2", "10 pings in one chunk: 10 pongs in order")) {
    char p[8];
    for (k = 0; k < 10; k++) {
      snprintf(p, sizeof(p), "#%zu", k);
      frame(b, 1, OP_PING, p, strlen(p));
      exp_frame(b, OP_PONG, p, strlen(p));
    }
    done(b, CONF_STAYS_OPEN);
  }
  for (k = 1; k < 6 + 10; k++) {
    if (!add_case(b, G, 4, "5.5.2", "10-byte ping cut after byte %zu", k))
      continue;
    frame(b, 1, OP_PING, "0123456789", 10);
    cut_at(b, k);
    exp_frame(b, OP_PONG, "0123456789", 10);
    done(b, CONF_STAYS_OPEN);
  }

  /* Control frames between fragments (5.4, 5.5). */
  if (add_case(b, G, 5, "5.4", "ping between two fragments")) {
    frame(b, 0, OP_TEXT, "{\"action\":\"echo\",", 17);
    cut(b);
    frame(b, 1, OP_PING, "mid", 3);
    cut(b);
    frame(b, 1, OP_CONT, "\"data\":\"frag\"}", 14);
    exp_frame(b, OP_PONG, "mid", 3);
    exp_text(b, "{\"action\":\"echo\",\"data\":\"frag\"}");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 5, "5.4", "a ping between every fragment")) {
    static const char m[] = "{\"action\":\"echo\",\"data\":\"many\"}";
    size_t n = sizeof(m) - 1;
    char p[8];
    for (k = 0; k < n; k++) {
      frame(b, k + 1 == n, k ? OP_CONT : OP_TEXT, m + k, 1);
      if (k + 1 < n) {
        snprintf(p, sizeof(p), "%zu", k);
        frame(b, 1, OP_PING, p, strlen(p));
        exp_frame(b, OP_PONG, p, strlen(p));
      }
      cut(b);
    }
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 5, "5.4", "pong between fragments ignored")) {
    frame(b, 0, OP_TEXT, "{\"action\":\"echo\",", 17);
    frame(b, 1, OP_PONG, "x", 1);
    frame(b, 1, OP_CONT, "\"data\":\"frag\"}", 14);
    exp_text(b, "{\"action\":\"echo\",\"data\":\"frag\"}");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 5, "5.4", "ping and pong between fragments, cut up")) {
    frame(b, 0, OP_TEXT, "{\"action\":\"echo\",", 17);
    cut(b);
    frame(b, 1, OP_PING, bin, 125);
    frame(b, 1, OP_PONG, bin, 50);
    cut(b);
    frame(b, 0, OP_CONT, "\"data\":", 7);
    frame(b, 1, OP_PING, "", 0);
    cut(b);
    frame(b, 1, OP_CONT, "\"frag\"}", 7);
    exp_frame(b, OP_PONG, bin, 125);
    exp_frame(b, OP_PONG, "", 0);
    exp_text(b, "{\"action\":\"echo\",\"data\":\"frag\"}");
    done(b, CONF_STAYS_OPEN);
  }

  /* Octet-wise (Autobahn 2.6, 2.11) and a pong before a ping (2.9). */
  if (add_case(b, G, 6, "5.5.2", "125-byte ping, one byte per chunk")) {
    frame(b, 1, OP_PING, bin, 125);
    chop(b, 0, 1);
    exp_frame(b, OP_PONG, bin, 125);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.5.2", "10 pings, one byte per chunk: 10 pongs")) {
    char p[16];
    for (k = 0; k < 10; k++) {
      snprintf(p, sizeof(p), "payload-%zu", k);
      frame(b, 1, OP_PING, p, strlen(p));
      exp_frame(b, OP_PONG, p, strlen(p));
    }
    chop(b, 0, 1);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.5.3", "unsolicited pong, then ping: one pong")) {
    frame(b, 1, OP_PONG, "unsolicited", 11);
    frame(b, 1, OP_PING, "solicited", 9);
    exp_frame(b, OP_PONG, "solicited", 9);
    done(b, CONF_STAYS_OPEN);
  }
  /* Each ping's pong before the next ping is sent. */
  if (add_case(b, G, 6, "5.5.3", "10 pings, each after the last one's pong")) {
    char p[16];
    for (k = 0; k < 10; k++) {
      snprintf(p, sizeof(p), "rtt-%zu", k);
      frame(b, 1, OP_PING, p, strlen(p));
      exp_frame(b, OP_PONG, p, strlen(p));
      if (k < 9) sync_here(b, k + 1);
    }
    done(b, CONF_STAYS_OPEN);
  }
}

/* ======================================================================== */
/* 3 reserved bits                                                          */
/* ======================================================================== */

static void gen_rsv(builder *b) {
  static const char m[] = "{\"action\":\"echo\",\"data\":\"rsv\"}";
  const int G = CONF_G_RSV;
  int rsv;
  for (rsv = 1; rsv <= 7; rsv++) {
    if (add_case(b, G, 1, "5.2", "RSV=%d on a text frame: 1002", rsv)) {
      put_frame_x(b, b0_of(1, rsv, OP_TEXT), 1, sizeof(m) - 1, 0, m,
                  sizeof(m) - 1, NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 2, "5.2", "RSV=%d on an empty text frame: 1002", rsv)) {
      put_frame_x(b, b0_of(1, rsv, OP_TEXT), 1, 0, 0, "", 0, NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 3, "5.2", "RSV=%d on a ping: 1002", rsv)) {
      put_frame_x(b, b0_of(1, rsv, OP_PING), 1, 4, 0, "ping", 4, NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 3, "5.2", "RSV=%d on a pong: 1002", rsv)) {
      put_frame_x(b, b0_of(1, rsv, OP_PONG), 1, 4, 0, "pong", 4, NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 3, "5.2", "RSV=%d on a close: 1002", rsv)) {
      put_frame_x(b, b0_of(1, rsv, OP_CLOSE), 1, 2, 0, "\x03\xe8", 2, NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 4, "5.2", "echo, RSV=%d frame, echo: echo, 1002", rsv)) {
      text(b, m);
      put_frame_x(b, b0_of(1, rsv, OP_TEXT), 1, sizeof(m) - 1, 0, m,
                  sizeof(m) - 1, NO_STOP);
      stop(b);
      text(b, m);
      exp_text(b, m);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 5, "5.2", "RSV=%d on a continuation: 1002", rsv)) {
      frame(b, 0, OP_TEXT, m, 10);
      cut(b);
      put_frame_x(b, b0_of(1, rsv, OP_CONT), 1, sizeof(m) - 11, 0, m + 10,
                  sizeof(m) - 11, NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 7, "5.2", "RSV=%d on a text frame, header alone: 1002",
                 rsv)) {
      put_frame_x(b, b0_of(1, rsv, OP_TEXT), 1, sizeof(m) - 1, 0, m,
                  sizeof(m) - 1, STOP_HEADER);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 6, "5.2", "RSV=%d on a binary frame: 1002", rsv)) {
      put_frame_x(b, b0_of(1, rsv, OP_BINARY), 1, 3, 0, "\x00\x01\x02", 3,
                  NO_STOP);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
  }
}

/* ======================================================================== */
/* 4 opcodes                                                                */
/* ======================================================================== */

static void gen_opcodes(builder *b) {
  static const char m[] = "{\"action\":\"echo\",\"data\":\"op\"}";
  const int G = CONF_G_OPCODES;
  int op;
  for (op = 3; op <= 15; op++) {
    int sub = op < 8 ? 1 : 2;
    if (op >= 8 && op <= 10) continue;
    if (add_case(b, G, sub, "5.2", "reserved opcode %d, empty: 1002", op)) {
      frame(b, 1, op, "", 0);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, sub, "5.2", "reserved opcode %d with payload: 1002",
                 op)) {
      frame(b, 1, op, "reserved", 8);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, sub, "5.2", "reserved opcode %d, header alone: 1002",
                 op)) {
      put_frame_x(b, b0_of(1, 0, op), 1, 8, 0, "reserved", 8, STOP_HEADER);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 3, "5.2", "echo, then opcode %d, then echo: echo, 1002",
                 op)) {
      text(b, m);
      frame(b, 1, op, "r", 1);
      stop(b);
      text(b, m);
      exp_text(b, m);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 4, "5.2", "opcode %d inside a fragmented message: 1002",
                 op)) {
      frame(b, 0, OP_TEXT, m, 5);
      cut(b);
      frame(b, 1, op, "r", 1);
      stop(b);
      frame(b, 1, OP_CONT, m + 5, sizeof(m) - 6);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
  }

  /* Binary: no binary handler, the server closes with 1003 and waits. */
  if (add_case(b, G, 5, "5.6", "binary message: close 1003")) {
    frame(b, 1, OP_BINARY, "\x00\xff\x10", 3);
    exp_close(b, 1003);
    done(b, CONF_AWAITS_REPLY);
  }
  if (add_case(b, G, 5, "5.6", "empty binary message: close 1003")) {
    frame(b, 1, OP_BINARY, "", 0);
    exp_close(b, 1003);
    done(b, CONF_AWAITS_REPLY);
  }
  if (add_case(b, G, 5, "5.6", "echo then binary: echo, close 1003")) {
    text(b, m);
    frame(b, 1, OP_BINARY, "bin", 3);
    exp_text(b, m);
    exp_close(b, 1003);
    done(b, CONF_AWAITS_REPLY);
  }
  if (add_case(b, G, 5, "5.6", "binary then echo: close 1003, no echo")) {
    frame(b, 1, OP_BINARY, "bin", 3);
    text(b, m);
    exp_close(b, 1003);
    done(b, CONF_AWAITS_REPLY);
  }
}

/* ======================================================================== */
/* 5 fragmentation                                                          */
/* ======================================================================== */

static void gen_fragments(builder *b) {
  static const char m[] = "{\"action\":\"echo\",\"data\":\"fragmented\"}";
  const size_t n = sizeof(m) - 1;
  const int G = CONF_G_FRAGMENTS;
  size_t k;

  if (add_case(b, G, 1, "5.4", "text in 2 fragments")) {
    size_t s[] = {10};
    put_fragments(b, OP_TEXT, (const uint8_t *)m, n, s, 1, NO_STOP);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "5.4", "text in 3 fragments")) {
    size_t s[] = {5, 20};
    put_fragments(b, OP_TEXT, (const uint8_t *)m, n, s, 2, NO_STOP);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "5.4", "empty first fragment")) {
    size_t s[] = {0};
    put_fragments(b, OP_TEXT, (const uint8_t *)m, n, s, 1, NO_STOP);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "5.4", "empty middle fragment")) {
    size_t s[] = {7, 7};
    put_fragments(b, OP_TEXT, (const uint8_t *)m, n, s, 2, NO_STOP);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "5.4", "empty final fragment")) {
    size_t s[] = {n};
    put_fragments(b, OP_TEXT, (const uint8_t *)m, n, s, 1, NO_STOP);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "5.4", "every byte its own fragment")) {
    size_t s[64];
    for (k = 1; k < n; k++) s[k - 1] = k;
    put_fragments(b, OP_TEXT, (const uint8_t *)m, n, s, n - 1, NO_STOP);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "5.4", "100 empty continuations then the final")) {
    frame(b, 0, OP_TEXT, m, 10);
    for (k = 0; k < 100; k++) frame(b, 0, OP_CONT, "", 0);
    frame(b, 1, OP_CONT, m + 10, n - 10);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  for (k = 1; k < n; k++) {
    size_t s[] = {k};
    if (!add_case(b, G, 2, "5.4", "2 fragments split at %zu", k)) continue;
    put_fragments(b, OP_TEXT, (const uint8_t *)m, n, s, 1, NO_STOP);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }

  /* Continuation without a message to continue. */
  if (add_case(b, G, 3, "5.4", "continuation (FIN) without start: 1002")) {
    frame(b, 1, OP_CONT, m, n);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.4", "continuation (no FIN) without start: 1002")) {
    frame(b, 0, OP_CONT, m, n);
    stop(b);
    frame(b, 1, OP_CONT, "", 0);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.4", "continuation without start, header alone: 1002")) {
    put_frame_x(b, b0_of(1, 0, OP_CONT), 1, n, 0, m, n, STOP_HEADER);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.4", "text inside a fragmented one, header alone: 1002")) {
    frame(b, 0, OP_TEXT, m, 5);
    cut(b);
    put_frame_x(b, b0_of(1, 0, OP_TEXT), 1, n, 0, m, n, STOP_HEADER);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.4", "empty continuation without start: 1002")) {
    frame(b, 1, OP_CONT, "", 0);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.4", "continuation after a whole message: 1002")) {
    text(b, m);
    frame(b, 1, OP_CONT, m, n);
    exp_text(b, m);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.4",
               "continuation after a finished fragmented message: 1002")) {
    frame(b, 0, OP_TEXT, m, 10);
    frame(b, 1, OP_CONT, m + 10, n - 10);
    cut(b);
    frame(b, 1, OP_CONT, "x", 1);
    exp_text(b, m);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }

  /* A new data frame while a message is open. */
  {
    static const struct {
      int first, second;
      const char *what;
    } nd[] = {{OP_TEXT, OP_TEXT, "text inside text"},
              {OP_TEXT, OP_BINARY, "binary inside text"},
              {OP_BINARY, OP_TEXT, "text inside binary"},
              {OP_BINARY, OP_BINARY, "binary inside binary"}};
    size_t i;
    for (i = 0; i < sizeof(nd) / sizeof(nd[0]); i++) {
      if (!add_case(b, G, 4, "5.4", "%s: 1002", nd[i].what)) continue;
      frame(b, 0, nd[i].first, m, 10);
      cut(b);
      frame(b, 1, nd[i].second, m, n);
      stop(b);
      frame(b, 1, OP_CONT, m + 10, n - 10);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 4, "5.4", "new text (no FIN) inside text: 1002")) {
      frame(b, 0, OP_TEXT, m, 10);
      frame(b, 0, OP_TEXT, m, 10);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
  }

  if (add_case(b, G, 5, "5.4", "two fragmented messages back to back")) {
    frame(b, 0, OP_TEXT, m, 3);
    frame(b, 1, OP_CONT, m + 3, n - 3);
    frame(b, 0, OP_TEXT, m, 30);
    frame(b, 1, OP_CONT, m + 30, n - 30);
    exp_text(b, m);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 5, "5.4", "fragmented binary: close 1003")) {
    frame(b, 0, OP_BINARY, "ab", 2);
    cut(b);
    frame(b, 1, OP_CONT, "cd", 2);
    exp_close(b, 1003);
    done(b, CONF_AWAITS_REPLY);
  }

  /* Autobahn 5.5, 5.8: octet-wise chops. */
  if (add_case(b, G, 6, "5.4", "text in 2 fragments, one byte per chunk")) {
    frame(b, 0, OP_TEXT, m, 17);
    frame(b, 1, OP_CONT, m + 17, n - 17);
    chop(b, 0, 1);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 6, "5.4",
               "2 fragments, a ping between, one byte per chunk")) {
    frame(b, 0, OP_TEXT, m, 17);
    frame(b, 1, OP_PING, "ping payload", 12);
    frame(b, 1, OP_CONT, m + 17, n - 17);
    chop(b, 0, 1);
    exp_frame(b, OP_PONG, "ping payload", 12);
    exp_text(b, m);
    done(b, CONF_STAYS_OPEN);
  }
  /* Autobahn 5.9-5.11: a continuation with nothing to continue, then a
   * text message that must not be answered: in one chunk, frame-wise,
   * octet-wise (failed at the second header byte, as 2.2). */
  for (k = 0; k < 3; k++) {
    static const char *const how[] = {"one chunk", "frame-wise",
                                      "octet-wise"};
    if (!add_case(b, G, 7, "5.4",
                  "continuation (FIN) without start, then text, %s: 1002",
                  how[k]))
      continue;
    frame(b, 1, OP_CONT, "fragment1", 9);
    text(b, m);
    if (k == 2) cut_at(b, 1);
    if (k) stop_at(b, 2);         /* the opcode and length are in */
    if (k == 1) cut_at(b, 6 + 9); /* the text its own chunk */
    if (k == 2) chop(b, 2, 1);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  /* Autobahn 5.15: a whole fragmented message, then a continuation (no
   * FIN) with nothing to continue, then text: the echo, then 1002. */
  if (add_case(b, G, 7, "5.4",
               "fragmented message, stray continuation (no FIN): echo, 1002")) {
    frame(b, 0, OP_TEXT, m, 9);
    frame(b, 1, OP_CONT, m + 9, n - 9);
    put_frame_x(b, b0_of(0, 0, OP_CONT), 1, 9, 0, "fragment3", 9,
                STOP_HEADER);
    text(b, m);
    exp_text(b, m);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }

  /* Autobahn 5.19, 5.20: five fragments; a ping after the second, whose
   * pong must come before the rest is sent (the runner waits for it, then
   * pauses), a second ping before the last fragment. Sent in two chunks,
   * then every frame its own chunk. */
  for (k = 0; k < 2; k++) {
    static const char msg[] =
        "{\"action\":\"echo\",\"data\":\"fragment1fragment2fragment3"
        "fragment4fragment5\"}";
    const size_t at[] = {0, 34, 43, 52, 61, sizeof(msg) - 1};
    size_t f;
    conf_case *c = add_case(b, G, 8, "5.4",
                            "5 fragments, pings after 2 and 4, a pause "
                            "for the first pong%s",
                            k ? ", frame-wise" : "");
    if (c == NULL) continue;
    c->pause_ms = 100;
    for (f = 0; f < 5; f++) {
      frame(b, f == 4, f ? OP_CONT : OP_TEXT, msg + at[f], at[f + 1] - at[f]);
      if (k) cut(b);
      if (f == 1 || f == 3) {
        frame(b, 1, OP_PING, f == 1 ? "pongme 1!" : "pongme 2!", 9);
        exp_frame(b, OP_PONG, f == 1 ? "pongme 1!" : "pongme 2!", 9);
        if (f == 1) sync_here(b, 1);
        if (k) cut(b);
      }
    }
    exp_text(b, msg);
    done(b, CONF_STAYS_OPEN);
  }
}

/* ======================================================================== */
/* 6 UTF-8                                                                  */
/* ======================================================================== */

typedef struct seq {
  const char *bytes;
  size_t len; /* 0: strlen */
  const char *what;
} seq;

static size_t seq_len(const seq *s) {
  return s->len ? s->len : strlen(s->bytes);
}

static const seq valid_seqs[] = {
    {.bytes = "\xc2\x80", .what = "U+0080"},
    {.bytes = "\xdf\xbf", .what = "U+07FF"},
    {.bytes = "\xe0\xa0\x80", .what = "U+0800"},
    {.bytes = "\xed\x9f\xbf", .what = "U+D7FF"},
    {.bytes = "\xee\x80\x80", .what = "U+E000"},
    {.bytes = "\xef\xbf\xbd", .what = "U+FFFD"},
    {.bytes = "\xef\xbf\xbf", .what = "U+FFFF"},
    {.bytes = "\xf0\x90\x80\x80", .what = "U+10000"},
    {.bytes = "\xf0\x9f\x98\x80", .what = "U+1F600"},
    {.bytes = "\xf3\xbf\xbf\xbf", .what = "U+FFFFF"},
    {.bytes = "\xf4\x8f\xbf\xbf", .what = "U+10FFFF"},
    {.bytes = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
     .what = "Greek word"},
    {.bytes = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", .what = "mixed"},
    /* Autobahn 6.2.1, 6.5.4, 6.9.1, 6.22 (noncharacters), 6.23 (specials):
     * all valid UTF-8. */
    {.bytes = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1"
              "-UTF-8!!",
     .what = "Hello-UTF-8 string"},
    {.bytes = "hello\xf0\xa4\xad\xa2world", .what = "U+24B62 in a word"},
    {.bytes = "\x7f", .what = "U+007F"},
    {.bytes = "\xef\xbf\xbe", .what = "noncharacter U+FFFE"},
    {.bytes = "\xf0\x9f\xbf\xbe", .what = "noncharacter U+1FFFE"},
    {.bytes = "\xf4\x8f\xbf\xbe", .what = "noncharacter U+10FFFE"},
    {.bytes = "\xef\xbf\xb9", .what = "special U+FFF9"},
};

static const seq invalid_seqs[] = {
    {.bytes = "\x80", .what = "lone continuation 80"},
    {.bytes = "\xbf", .what = "lone continuation BF"},
    {.bytes = "\x80\xbf\x80", .what = "three continuations"},
    {.bytes = "\xc0\x80", .what = "overlong NUL"},
    {.bytes = "\xc1\xbf", .what = "overlong U+007F"},
    {.bytes = "\xe0\x80\xaf", .what = "overlong 3-byte '/'"},
    {.bytes = "\xe0\x9f\xbf", .what = "overlong U+07FF"},
    {.bytes = "\xf0\x80\x80\xaf", .what = "overlong 4-byte '/'"},
    {.bytes = "\xf0\x8f\xbf\xbf", .what = "overlong U+FFFF"},
    {.bytes = "\xed\xa0\x80", .what = "surrogate U+D800"},
    {.bytes = "\xed\xbf\xbf", .what = "surrogate U+DFFF"},
    {.bytes = "\xed\xa0\x80\xed\xb0\x80", .what = "surrogate pair"},
    {.bytes = "\xf4\x90\x80\x80", .what = "U+110000"},
    {.bytes = "\xf5\x80\x80\x80", .what = "lead F5"},
    {.bytes = "\xf7\xbf\xbf\xbf", .what = "lead F7"},
    {.bytes = "\xf8\x88\x80\x80\x80", .what = "5-byte form"},
    {.bytes = "\xfc\x84\x80\x80\x80\x80", .what = "6-byte form"},
    {.bytes = "\xfe", .what = "byte FE"},
    {.bytes = "\xff", .what = "byte FF"},
    {.bytes = "\xc2", .what = "truncated 2-byte"},
    {.bytes = "\xe1\x80", .what = "truncated 3-byte"},
    {.bytes = "\xf1\x80\x80", .what = "truncated 4-byte"},
    {.bytes = "\xe1\x41\x42", .what = "lead then ASCII"},
    {.bytes = "\xc2\xc2\x80", .what = "lead then lead"},
    {.bytes = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80tail",
     .what = "valid text then a surrogate"},
    /* From Autobahn 6.10-6.21 (Markus Kuhn's stress test). */
    {.bytes = "\xfd\xbf\xbf\xbf\xbf\xbf", .what = "last 6-byte form"},
    {.bytes = "\x80\xbf\x80\xbf\x80\xbf", .what = "six continuations"},
    {.bytes = "\xdf \xe0 \xef ", .what = "lonely leads, spaces between"},
    {.bytes = "\xe0\x80", .what = "E0 80 (last continuation missing)"},
    {.bytes = "\xf7\xbf\xbf", .what = "F7 BF BF (last continuation missing)"},
    {.bytes = "\xfe\xfe\xff\xff", .what = "FE FE FF FF"},
    {.bytes = "\xe0\x80\x80", .what = "overlong 3-byte NUL"},
    {.bytes = "\xed\xaf\xbf\xed\xbf\xbf", .what = "surrogate pair DBFF DFFF"},
    {.bytes = "\xed\xbe\x80", .what = "surrogate U+DF80"},
};

static void gen_utf8(builder *b) {
  const int G = CONF_G_UTF8;
  const size_t pfx = sizeof(echo_head) - 1;
  size_t i, p, len;

  for (i = 0; i < sizeof(valid_seqs) / sizeof(valid_seqs[0]); i++) {
    const seq *s = &valid_seqs[i];
    uint8_t *m = echo_msg(b, s->bytes, seq_len(s), &len);
    if (m == NULL) return;
    if (!ref_utf8_valid(m, len)) b->bad_table = 1;
    if (add_case(b, G, 1, "8.1", "valid %s in one frame", s->what)) {
      frame(b, 1, OP_TEXT, m, len);
      exp_frame(b, OP_TEXT, m, len);
      done(b, CONF_STAYS_OPEN);
    }
    for (p = pfx; p <= pfx + seq_len(s); p++) {
      size_t sp[] = {p};
      if (!add_case(b, G, 2, "8.1", "valid %s, fragments split at %zu",
                    s->what, p - pfx))
        continue;
      put_fragments(b, OP_TEXT, m, len, sp, 1, NO_STOP);
      exp_frame(b, OP_TEXT, m, len);
      done(b, CONF_STAYS_OPEN);
    }
    if (seq_len(s) == 4 && add_case(b, G, 3, "8.1",
                                    "valid %s, one byte per fragment",
                                    s->what)) {
      size_t sp[4];
      for (p = 0; p < 4; p++) sp[p] = pfx + p;
      put_fragments(b, OP_TEXT, m, len, sp, 4, NO_STOP);
      exp_frame(b, OP_TEXT, m, len);
      done(b, CONF_STAYS_OPEN);
    }
    free(m);
  }

  for (i = 0; i < sizeof(invalid_seqs) / sizeof(invalid_seqs[0]); i++) {
    const seq *s = &invalid_seqs[i];
    int whole;
    uint8_t *m = echo_msg(b, s->bytes, seq_len(s), &len);
    size_t bad;
    if (m == NULL) return;
    bad = ref_utf8_bad_at(m, len, &whole);
    if (bad >= len) b->bad_table = 1; /* must fail inside the message */
    if (add_case(b, G, 4, "8.1", "%s in one frame: 1007 at its byte %zu",
                 s->what, bad - pfx)) {
      put_fragments(b, OP_TEXT, m, len, NULL, 0, bad);
      exp_close(b, 1007);
      done(b, CONF_CLOSES);
    }
    for (p = pfx; p <= pfx + seq_len(s); p++) {
      size_t sp[] = {p};
      if (!add_case(b, G, 5, "8.1", "%s, fragments split at %zu: 1007",
                    s->what, p - pfx))
        continue;
      put_fragments(b, OP_TEXT, m, len, sp, 1, bad);
      exp_close(b, 1007);
      done(b, CONF_CLOSES);
    }
    if (add_case(b, G, 6, "8.1", "echo, then %s: echo, 1007", s->what)) {
      static const char ok[] = "{\"action\":\"echo\",\"data\":\"fine\"}";
      text(b, ok);
      cut(b);
      put_fragments(b, OP_TEXT, m, len, NULL, 0, bad);
      exp_text(b, ok);
      exp_close(b, 1007);
      done(b, CONF_CLOSES);
    }
    free(m);
  }

  /* Truncated at the very end of the message: only FIN can tell. */
  {
    static const seq trunc[] = {
        {.bytes = "\xc3", .what = "C3"},
        {.bytes = "abc\xe2\x82", .what = "E2 82"},
        {.bytes = "\xf0\x9f\x98", .what = "F0 9F 98"},
    };
    for (i = 0; i < sizeof(trunc) / sizeof(trunc[0]); i++) {
      size_t n = seq_len(&trunc[i]);
      if (add_case(b, G, 7, "8.1", "text ending inside %s: 1007",
                   trunc[i].what)) {
        frame(b, 1, OP_TEXT, trunc[i].bytes, n);
        exp_close(b, 1007);
        done(b, CONF_CLOSES);
      }
      if (add_case(b, G, 7, "8.1",
                   "fragments ending inside %s, empty final: 1007",
                   trunc[i].what)) {
        frame(b, 0, OP_TEXT, trunc[i].bytes, n);
        cut(b);
        frame(b, 1, OP_CONT, "", 0);
        exp_close(b, 1007);
        done(b, CONF_CLOSES);
      }
    }
    if (add_case(b, G, 7, "8.1", "sequence completed by the final fragment")) {
      static const char m[] = "{\"action\":\"echo\",\"data\":\"\xf0\x9f\x98\x80\"}";
      frame(b, 0, OP_TEXT, m, 27);
      cut(b);
      frame(b, 1, OP_CONT, m + 27, sizeof(m) - 28);
      exp_text(b, m);
      done(b, CONF_STAYS_OPEN);
    }
  }

  /* Binary payloads are not UTF-8 checked: still the binary refusal. */
  if (add_case(b, G, 8, "8.1", "invalid UTF-8 in a binary message: 1003")) {
    frame(b, 1, OP_BINARY, "\xff\xfe\xc0", 3);
    exp_close(b, 1003);
    done(b, CONF_AWAITS_REPLY);
  }

  /* Autobahn 6.2.3, 6.2.4, 6.3.2: every byte its own fragment. */
  for (i = 0; i < 3; i++) {
    static const seq octet[] = {
        {.bytes = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0"
                  "\xc3\xa1-UTF-8!!",
         .what = "valid Hello-UTF-8 string"},
        {.bytes = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
         .what = "valid Greek word"},
        {.bytes = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
                  "edited",
         .what = "Greek word, surrogate, text"},
    };
    size_t sp[128], ns = 0, bad;
    int whole;
    uint8_t *m = echo_msg(b, octet[i].bytes, seq_len(&octet[i]), &len);
    if (m == NULL) return;
    bad = ref_utf8_bad_at(m, len, &whole);
    if ((i < 2) != (bad == len && whole)) b->bad_table = 1;
    for (p = 1; p < len && ns < sizeof(sp) / sizeof(sp[0]); p++)
      sp[ns++] = p;
    if (add_case(b, G, 9, "8.1", "%s, one byte per fragment%s",
                 octet[i].what, i < 2 ? "" : ": 1007 at the bad byte")) {
      put_fragments(b, OP_TEXT, m, len, sp, ns, i < 2 ? NO_STOP : bad);
      if (i < 2)
        exp_frame(b, OP_TEXT, m, len);
      else
        exp_close(b, 1007);
      done(b, i < 2 ? CONF_STAYS_OPEN : CONF_CLOSES);
    }
    free(m);
  }

  /* Autobahn 6.4.1-6.4.4, fail fast: a message's valid first part, a
   * pause in which nothing may happen, then the part that makes it invalid
   * (U+110000 as F4 90 80 80): 1007 at its 90, before the rest is sent.
   * The part boundary is after the Greek word, or after its F4; the parts
   * are fragments, or chops of one frame. */
  for (i = 0; i < 4; i++) {
    static const char bad_text[] =
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"
        "edited";
    int frames = i < 2, after_f4 = i & 1;
    size_t cut1, bad;
    int whole;
    uint8_t *m = echo_msg(b, bad_text, sizeof(bad_text) - 1, &len);
    conf_case *c;
    if (m == NULL) return;
    bad = ref_utf8_bad_at(m, len, &whole);
    cut1 = pfx + 11 + (size_t)after_f4;
    if (bad != pfx + 12) b->bad_table = 1;
    c = add_case(b, G, 10, "8.1",
                 "valid part (up to %s), pause, U+110000: 1007, %s",
                 after_f4 ? "F4" : "the word",
                 frames ? "3 fragments" : "3 chops of a frame");
    if (c != NULL) {
      c->pause_ms = 100;
      if (frames) {
        frame(b, 0, OP_TEXT, m, cut1);
        sync_here(b, 0);
        put_frame_x(b, b0_of(0, 0, OP_CONT), 1, pfx + 15 - cut1, 0,
                    m + cut1, pfx + 15 - cut1, bad - cut1);
        frame(b, 1, OP_CONT, m + pfx + 15, len - pfx - 15);
      } else {
        size_t hl = 2 + (len < 126 ? 0 : 2) + 4;
        frame(b, 1, OP_TEXT, m, len);
        sync_at(b, hl + cut1, 0);
        stop_at(b, hl + bad + 1);
        cut_at(b, hl + pfx + 15);
      }
      exp_close(b, 1007);
      done(b, CONF_CLOSES);
    }
    free(m);
  }

  /* Autobahn 6.1.2, 6.1.3: empty fragments. An empty text message is
   * valid UTF-8 but no JSON. */
  if (add_case(b, G, 11, "5.4", "3 empty fragments: invalid_json reply")) {
    frame(b, 0, OP_TEXT, "", 0);
    frame(b, 0, OP_CONT, "", 0);
    frame(b, 1, OP_CONT, "", 0);
    exp_error(b, "invalid_json", "\"message is not valid JSON\"");
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 11, "5.4", "empty first and last fragment: echoed")) {
    static const char ok[] = "{\"action\":\"echo\",\"data\":\"middle\"}";
    frame(b, 0, OP_TEXT, "", 0);
    cut(b);
    frame(b, 0, OP_CONT, ok, sizeof(ok) - 1);
    cut(b);
    frame(b, 1, OP_CONT, "", 0);
    exp_text(b, ok);
    done(b, CONF_STAYS_OPEN);
  }
  /* Autobahn 6.7.1: U+0000 is valid UTF-8 (no 1007); raw in a JSON
   * string it is not JSON. */
  if (add_case(b, G, 11, "8.1", "U+0000 in the data: invalid_json, not 1007")) {
    static const char nul[] = "{\"action\":\"echo\",\"data\":\"a\0b\"}";
    frame(b, 1, OP_TEXT, nul, sizeof(nul) - 1);
    exp_error(b, "invalid_json", "\"message is not valid JSON\"");
    done(b, CONF_STAYS_OPEN);
  }
}

/* ======================================================================== */
/* 7 limits                                                                 */
/* ======================================================================== */

static void gen_limits(builder *b) {
  const int G = CONF_G_LIMITS;
  uint8_t *max = echo_sized(b, MAX_MESSAGE);
  uint8_t *over = echo_sized(b, MAX_MESSAGE + 1);
  size_t k;
  if (max == NULL || over == NULL) goto out;

  if (add_case(b, G, 1, "10.4", "text of max_message (65536) bytes: echoed")) {
    frame(b, 1, OP_TEXT, max, MAX_MESSAGE);
    exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 1, "10.4", "text of 65537 bytes: 1009 at the header")) {
    put_frame_x(b, b0_of(1, 0, OP_TEXT), 1, MAX_MESSAGE + 1, 0, over,
                MAX_MESSAGE + 1, STOP_HEADER);
    exp_close(b, 1009);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 1, "10.4", "binary of 65537 bytes: 1009 before 1003")) {
    put_frame_x(b, b0_of(1, 0, OP_BINARY), 1, MAX_MESSAGE + 1, 0, over,
                MAX_MESSAGE + 1, STOP_HEADER);
    exp_close(b, 1009);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 1, "10.4", "binary of 65536 bytes: 1003")) {
    frame(b, 1, OP_BINARY, max, MAX_MESSAGE);
    exp_close(b, 1003);
    done(b, CONF_AWAITS_REPLY);
  }
  {
    static const uint64_t claims[] = {65537,          1u << 20,
                                      UINT64_C(1) << 32,
                                      (UINT64_C(1) << 63) - 1};
    for (k = 0; k < sizeof(claims) / sizeof(claims[0]); k++) {
      if (!add_case(b, G, 2, "10.4", "frame claiming %llu bytes: 1009",
                    (unsigned long long)claims[k]))
        continue;
      put_frame_x(b, b0_of(1, 0, OP_TEXT), 1, claims[k], 0, max, 16,
                  STOP_HEADER);
      exp_close(b, 1009);
      done(b, CONF_CLOSES);
    }
  }

  if (add_case(b, G, 3, "10.4", "65536 bytes in 2 fragments: echoed")) {
    size_t s[] = {MAX_MESSAGE / 2};
    put_fragments(b, OP_TEXT, max, MAX_MESSAGE, s, 1, NO_STOP);
    exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 3, "10.4", "65536 bytes in 16 fragments: echoed")) {
    size_t s[15];
    for (k = 0; k < 15; k++) s[k] = (k + 1) * 4096;
    put_fragments(b, OP_TEXT, max, MAX_MESSAGE, s, 15, NO_STOP);
    exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 3, "10.4", "65536 bytes then an empty final: echoed")) {
    frame(b, 0, OP_TEXT, max, MAX_MESSAGE);
    cut(b);
    frame(b, 1, OP_CONT, "", 0);
    exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 3, "10.4", "fragments summing to 65537: 1009")) {
    size_t s[] = {MAX_MESSAGE};
    put_fragments(b, OP_TEXT, over, MAX_MESSAGE + 1, s, 1, MAX_MESSAGE);
    exp_close(b, 1009);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "10.4", "first fragment of 65537: 1009")) {
    put_frame_x(b, b0_of(0, 0, OP_TEXT), 1, MAX_MESSAGE + 1, 0, over,
                MAX_MESSAGE + 1, STOP_HEADER);
    frame(b, 1, OP_CONT, "", 0);
    exp_close(b, 1009);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "10.4", "65 fragments of 1024 overflow: 1009")) {
    uint8_t kb[1024];
    memset(kb, 'k', sizeof(kb));
    frame(b, 0, OP_TEXT, kb, sizeof(kb));
    for (k = 1; k < 64; k++) frame(b, 0, OP_CONT, kb, sizeof(kb));
    cut(b);
    put_frame_x(b, b0_of(1, 0, OP_CONT), 1, 1, 0, "k", 1, STOP_HEADER);
    exp_close(b, 1009);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 4, "10.4", "pings inside a 65536-byte message")) {
    for (k = 0; k < 4; k++) {
      frame(b, k == 3, k ? OP_CONT : OP_TEXT, max + k * 16384, 16384);
      cut(b);
      if (k < 3) {
        frame(b, 1, OP_PING, max, 125);
        exp_frame(b, OP_PONG, max, 125);
      }
    }
    exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
    done(b, CONF_STAYS_OPEN);
  }
  if (add_case(b, G, 4, "10.4", "two 65536-byte messages in a row")) {
    frame(b, 1, OP_TEXT, max, MAX_MESSAGE);
    cut(b);
    frame(b, 1, OP_TEXT, max, MAX_MESSAGE);
    exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
    exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
    done(b, CONF_STAYS_OPEN);
  }

  /* Autobahn 9.1-9.6 and 10.1.1, scaled to max_message: one message of
   * 65536 bytes in fragments of 64 .. 16384 (9.3) and of 1300 (10.1.1,
   * auto-fragmentation), one frame in chops of 64 .. 2048 (9.5); binary
   * the same (9.4, 9.6): read whole, then refused. */
  {
    static const size_t fsz[] = {64, 256, 1024, 1300, 16384};
    static const size_t csz[] = {64, 128, 256, 512, 1024, 2048};
    for (k = 0; k < sizeof(fsz) / sizeof(fsz[0]); k++) {
      size_t f = fsz[k], off, nf = (MAX_MESSAGE + f - 1) / f;
      if (add_case(b, G, 5, "10.4", "65536 bytes in %zu fragments of %zu: "
                   "echoed", nf, f)) {
        for (off = 0; off < MAX_MESSAGE; off += f) {
          size_t l = MAX_MESSAGE - off < f ? MAX_MESSAGE - off : f;
          frame(b, off + l == MAX_MESSAGE, off ? OP_CONT : OP_TEXT,
                max + off, l);
          if (f >= 1024) cut(b);
        }
        exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
        done(b, CONF_STAYS_OPEN);
      }
      if ((f == 64 || f == 1024) &&
          add_case(b, G, 5, "10.4",
                   "binary of 65536 bytes in fragments of %zu: 1003", f)) {
        for (off = 0; off < MAX_MESSAGE; off += f)
          frame(b, off + f == MAX_MESSAGE, off ? OP_CONT : OP_BINARY,
                max + off, f);
        exp_close(b, 1003);
        done(b, CONF_AWAITS_REPLY);
      }
    }
    if (add_case(b, G, 5, "10.4",
                 "binary fragments of 64 summing to 65537: 1009")) {
      for (k = 0; k < MAX_MESSAGE / 64; k++)
        frame(b, 0, k ? OP_CONT : OP_BINARY, max, 64);
      cut(b);
      put_frame_x(b, b0_of(1, 0, OP_CONT), 1, 1, 0, "k", 1, STOP_HEADER);
      exp_close(b, 1009);
      done(b, CONF_CLOSES);
    }
    for (k = 0; k < sizeof(csz) / sizeof(csz[0]); k++) {
      if (!add_case(b, G, 6, "10.4",
                    "65536-byte text in chops of %zu: echoed", csz[k]))
        continue;
      frame(b, 1, OP_TEXT, max, MAX_MESSAGE);
      chop(b, 0, csz[k]);
      exp_frame(b, OP_TEXT, max, MAX_MESSAGE);
      done(b, CONF_STAYS_OPEN);
    }
    for (k = 0; k < 2; k++) {
      if (!add_case(b, G, 6, "10.4",
                    "65536-byte binary in chops of %d: 1003", k ? 2048 : 64))
        continue;
      frame(b, 1, OP_BINARY, max, MAX_MESSAGE);
      chop(b, 0, k ? 2048 : 64);
      exp_close(b, 1003);
      done(b, CONF_AWAITS_REPLY);
    }
  }

  /* Autobahn 9.7, scaled: 100 round trips, each message sent once the
   * last one's echo is in. (9.8, binary, has no echo here: 1003.) */
  {
    static const size_t rsz[] = {ECHO_OVERHEAD, 64, 256, 1024, 4096};
    for (k = 0; k < sizeof(rsz) / sizeof(rsz[0]); k++) {
      uint8_t *m = echo_sized(b, rsz[k]);
      size_t r;
      if (m == NULL) break;
      if (add_case(b, G, 7, "5.6", "100 round trips of %zu-byte messages",
                   rsz[k])) {
        for (r = 0; r < 100; r++) {
          frame(b, 1, OP_TEXT, m, rsz[k]);
          exp_frame(b, OP_TEXT, m, rsz[k]);
          if (r < 99) sync_here(b, r + 1);
        }
        done(b, CONF_STAYS_OPEN);
      }
      free(m);
    }
  }
out:
  free(max);
  free(over);
}

/* ======================================================================== */
/* 8 close                                                                  */
/* ======================================================================== */

static void gen_close(builder *b) {
  static const char m[] = "{\"action\":\"echo\",\"data\":\"bye\"}";
  const int G = CONF_G_CLOSE;
  char reason[130];
  int code;
  size_t k;

  if (add_case(b, G, 1, "5.5.1", "empty close: empty close back")) {
    close_frame(b, -1, NULL, 0);
    exp_close(b, CONF_NO_CODE);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 1, "5.5.1", "close with a 1-byte payload: 1002")) {
    frame(b, 1, OP_CLOSE, "\x03", 1);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }

  if (add_case(b, G, 2, "5.5.1", "close 1000 with a reason")) {
    close_frame(b, 1000, "bye", 3);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 2, "5.5.1", "close 1000 with a 123-byte reason")) {
    memset(reason, 'r', 123);
    close_frame(b, 1000, reason, 123);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 2, "5.5", "close with a 124-byte reason (126): 1002")) {
    memset(reason, 'r', 124);
    close_frame(b, 1000, reason, 124);
    stop_at(b, 2);
    exp_close(b, 1002);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 2, "5.5.1", "close 1001 with a multi-byte reason")) {
    static const char r[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80";
    close_frame(b, 1001, r, sizeof(r) - 1);
    exp_close(b, 1001);
    done(b, CONF_CLOSES);
  }
  {
    static const seq bad[] = {
        {.bytes = "\xff", .what = "byte FF"},
        {.bytes = "bye\xc3", .what = "truncated sequence"},
        {.bytes = "\xed\xa0\x80", .what = "surrogate"},
        {.bytes = "\xc0\xaf", .what = "overlong"},
    };
    for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
      if (!add_case(b, G, 2, "7.4.1", "close reason with %s: 1007",
                    bad[k].what))
        continue;
      close_frame(b, 1000, bad[k].bytes, seq_len(&bad[k]));
      exp_close(b, 1007);
      done(b, CONF_CLOSES);
    }
  }

  if (add_case(b, G, 3, "5.5.1", "close, close: one close back")) {
    close_frame(b, 1000, NULL, 0);
    close_frame(b, 1000, NULL, 0);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.5.1", "close, then text: no echo")) {
    close_frame(b, 1000, NULL, 0);
    text(b, m);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.5.1", "close, then ping: no pong")) {
    close_frame(b, 1000, NULL, 0);
    frame(b, 1, OP_PING, "p", 1);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 3, "5.5.1", "close, then a broken frame: ignored")) {
    close_frame(b, 1000, NULL, 0);
    put_frame_x(b, b0_of(1, 7, 5), 0, 3, 0, "bad", 3, NO_STOP);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 4, "5.4", "close between fragments: no message")) {
    frame(b, 0, OP_TEXT, m, 10);
    cut(b);
    close_frame(b, 1000, NULL, 0);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 4, "5.5.1", "echo then close: echo, close")) {
    text(b, m);
    close_frame(b, 1000, NULL, 0);
    exp_text(b, m);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  if (add_case(b, G, 4, "5.5.1", "close with reason, one byte per chunk")) {
    close_frame(b, 3000, "one byte at a time", 18);
    for (k = 1; k < cur(b)->len; k++) cut_at(b, k);
    exp_close(b, 3000);
    done(b, CONF_CLOSES);
  }

  /* Every code 0..5000: valid ones echoed, the rest failed with 1002. */
  for (code = 0; code <= 5000; code++) {
    int ok = ref_close_code_valid(code);
    if (!add_case(b, G, 5, "7.4", "close code %d: %s", code,
                  ok ? "echoed" : "1002"))
      continue;
    close_frame(b, code, NULL, 0);
    exp_close(b, ok ? code : 1002);
    done(b, CONF_CLOSES);
  }

  /* Server-initiated close (binary -> 1003), then the client's answers. */
  if (add_case(b, G, 6, "7.1.2", "1003, client replies with empty close")) {
    uint8_t r[8];
    frame(b, 1, OP_BINARY, "b", 1);
    exp_close(b, 1003);
    set_reply(b, r, small_frame(r, OP_CLOSE, "", 0));
    done(b, CONF_AWAITS_REPLY);
  }
  if (add_case(b, G, 6, "7.1.2", "1003, client replies with 1003")) {
    uint8_t r[8];
    frame(b, 1, OP_BINARY, "b", 1);
    exp_close(b, 1003);
    set_reply(b, r, small_frame(r, OP_CLOSE, "\x03\xeb", 2));
    done(b, CONF_AWAITS_REPLY);
  }
  if (add_case(b, G, 6, "7.1.2",
               "1003, client sends text, ping, then close: no reply")) {
    uint8_t r[128];
    size_t n = small_frame(r, OP_TEXT, m, sizeof(m) - 1);
    n += small_frame(r + n, OP_PING, "x", 1);
    n += small_frame(r + n, OP_CLOSE, "\x03\xe8", 2);
    frame(b, 1, OP_BINARY, "b", 1);
    exp_close(b, 1003);
    set_reply(b, r, n);
    done(b, CONF_AWAITS_REPLY);
  }
  if (add_case(b, G, 6, "7.4", "1003, client replies with code 5000")) {
    uint8_t r[8];
    frame(b, 1, OP_BINARY, "b", 1);
    exp_close(b, 1003);
    set_reply(b, r, small_frame(r, OP_CLOSE, "\x13\x88", 2));
    done(b, CONF_AWAITS_REPLY);
  }

  /* Autobahn 7.1.5: a fragment, a close, then the final fragment: the
   * message is dropped, the close echoed. */
  if (add_case(b, G, 7, "5.5.1", "fragment, close, final fragment: no echo")) {
    frame(b, 0, OP_TEXT, m, 10);
    close_frame(b, 1000, NULL, 0);
    frame(b, 1, OP_CONT, m + 10, sizeof(m) - 11);
    exp_close(b, 1000);
    done(b, CONF_CLOSES);
  }
  /* Autobahn 7.1.6, scaled: a large message, a small one, a close and a
   * ping back to back. The echoes are queued first: both, then the close;
   * the ping after the close gets no pong. */
  if (add_case(b, G, 7, "5.5.1",
               "65536-byte echo, echo, close, ping: echoes, close")) {
    uint8_t *big = echo_sized(b, MAX_MESSAGE);
    if (big != NULL) {
      frame(b, 1, OP_TEXT, big, MAX_MESSAGE);
      text(b, m);
      close_frame(b, 1000, NULL, 0);
      frame(b, 1, OP_PING, "p", 1);
      exp_frame(b, OP_TEXT, big, MAX_MESSAGE);
      exp_text(b, m);
      exp_close(b, 1000);
      free(big);
    }
    done(b, CONF_CLOSES);
  }
  /* Autobahn 7.13.2 and codes past 5000: not valid on the wire. */
  {
    static const int hi[] = {5001, 9999, 32768, 65535};
    for (k = 0; k < sizeof(hi) / sizeof(hi[0]); k++) {
      if (!add_case(b, G, 7, "7.4", "close code %d: 1002", hi[k])) continue;
      close_frame(b, hi[k], NULL, 0);
      exp_close(b, 1002);
      done(b, CONF_CLOSES);
    }
  }
}

/* ======================================================================== */
/* 9 handshake                                                              */
/* ======================================================================== */

size_t conf_upgrade_request(char *out, size_t cap, const char *device_id) {
  int n = snprintf(out, cap,
                   "GET /ws?device_id=%s HTTP/1.1\r\n"
                   "Host: 127.0.0.1\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   device_id);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* A handshake case: line is the request line with %s for the device id,
 * headers the header lines (CRLF each), then the blank line. */
static conf_case *hs_case_dev(builder *b, int sub, const char *rfc,
                              int status, const char *line,
                              const char *headers, const char *title,
                              size_t dev_len) {
  char dev[256], l[512];
  size_t n;
  conf_case *c = add_case(b, CONF_G_HANDSHAKE, sub, rfc, "%s", title);
  if (c == NULL) return NULL;
  c->raw_http = 1;
  c->http_status = status;
  n = (size_t)snprintf(dev, sizeof(dev), "hs%zu-", b->t->n);
  if (dev_len > n && dev_len < sizeof(dev)) {
    memset(dev + n, 'd', dev_len - n);
    dev[dev_len] = '\0';
  }
  snprintf(l, sizeof(l), line, dev);
  puts0(b, l);
  puts0(b, headers);
  puts0(b, "\r\n");
  return c;
}

static conf_case *hs_case(builder *b, int sub, const char *rfc, int status,
                          const char *line, const char *headers,
                          const char *title) {
  return hs_case_dev(b, sub, rfc, status, line, headers, title, 0);
}

#define H_HOST "Host: 127.0.0.1\r\n"
#define H_UPG "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_KEY "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
#define H_VER "Sec-WebSocket-Version: 13\r\n"
#define H_ALL H_HOST H_UPG H_CONN H_KEY H_VER
#define LINE "GET /ws?device_id=%s HTTP/1.1\r\n"

static void gen_handshake(builder *b) {
  static const struct {
    int status;
    const char *rfc, *line, *headers, *title;
  } t[] = {
      {101, "4.2.2", LINE, H_ALL, "valid request: 101, accept key"},
      {101, "4.2.1", LINE,
       "host: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
       "sec-websocket-key: " SAMPLE_KEY "\r\nsec-websocket-version: 13\r\n",
       "lower-case header names"},
      {101, "4.2.1", LINE,
       H_HOST "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" H_KEY
           H_VER,
       "Upgrade: WebSocket, Connection: keep-alive, Upgrade"},
      {101, "4.2.1", LINE, H_ALL "X-Extra: 1\r\nUser-Agent: conformance\r\n",
       "unknown headers ignored"},
      {101, "4.2.1", LINE,
       H_ALL "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: "
             "permessage-deflate\r\n",
       "unsupported subprotocol and extension offered"},
      {101, "4.2.1", LINE, H_ALL "Origin: http://127.0.0.1\r\n",
       "Origin matching Host"},
      {403, "4.2.2", LINE, H_ALL "Origin: http://evil.example\r\n",
       "foreign Origin: 403"},
      {403, "4.2.2", LINE,
       H_ALL "Origin: http://127.0.0.1\r\nOrigin: http://127.0.0.1\r\n",
       "two Origin headers: 403"},
      {400, "4.2.1", "POST /ws?device_id=%s HTTP/1.1\r\n", H_ALL,
       "POST: 400"},
      {400, "4.2.1", "get /ws?device_id=%s HTTP/1.1\r\n", H_ALL,
       "lower-case method: 400"},
      {400, "4.2.1", "GET /ws?device_id=%s HTTP/1.0\r\n", H_ALL,
       "HTTP/1.0: 400"},
      {400, "4.2.1", LINE, H_UPG H_CONN H_KEY H_VER, "missing Host: 400"},
      {400, "4.2.1", LINE, H_ALL H_HOST, "duplicate Host: 400"},
      {426, "4.2.1", LINE, H_HOST H_CONN H_KEY H_VER,
       "no Upgrade header: plain HTTP on the path, 426"},
      {426, "4.2.1", LINE, H_HOST "Upgrade: h2c\r\n" H_CONN H_KEY H_VER,
       "Upgrade: h2c: plain HTTP on the path, 426"},
      {400, "4.2.1", LINE, H_HOST H_UPG H_KEY H_VER,
       "missing Connection: 400"},
      {400, "4.2.1", LINE, H_HOST H_UPG "Connection: keep-alive\r\n" H_KEY H_VER,
       "Connection without upgrade: 400"},
      {426, "4.4", LINE, H_HOST H_UPG H_CONN H_KEY,
       "missing Sec-WebSocket-Version: 426"},
      {426, "4.4", LINE, H_HOST H_UPG H_CONN H_KEY "Sec-WebSocket-Version: 8\r\n",
       "version 8: 426"},
      {426, "4.4", LINE,
       H_HOST H_UPG H_CONN H_KEY "Sec-WebSocket-Version: 14\r\n",
       "version 14: 426"},
      {426, "4.4", LINE,
       H_HOST H_UPG H_CONN H_KEY "Sec-WebSocket-Version: 13, 8\r\n",
       "version list \"13, 8\": 426"},
      {400, "4.2.1", LINE, H_HOST H_UPG H_CONN H_VER,
       "missing Sec-WebSocket-Key: 400"},
      {400, "4.2.1", LINE,
       H_HOST H_UPG H_CONN "Sec-WebSocket-Key: not a key!\r\n" H_VER,
       "key not base64: 400"},
      {400, "4.2.1", LINE,
       H_HOST H_UPG H_CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n" H_VER,
       "key of 15 bytes: 400"},
      {400, "4.2.1", LINE, H_ALL H_KEY, "duplicate key: 400"},
      {404, "4.2.1", "GET /chat?device_id=%s HTTP/1.1\r\n", H_ALL,
       "wrong path: 404"},
      {101, "4.2.1", "GET http://127.0.0.1/ws?device_id=%s HTTP/1.1\r\n",
       H_ALL, "absolute-form target: 101"},
      {101, "4.2.1",
       "GET HTTPS://127.0.0.1:8443/ws?device_id=%s HTTP/1.1\r\n", H_ALL,
       "absolute-form target, https and a port: 101"},
      {404, "4.2.1", "GET http://127.0.0.1/chat?device_id=%s HTTP/1.1\r\n",
       H_ALL, "absolute-form target, wrong path: 404"},
      {400, "4.2.1", "GET ws://127.0.0.1/ws?device_id=%s HTTP/1.1\r\n",
       H_ALL, "ws:// target (neither origin- nor http absolute-form): 400"},
      {400, "4.2.1", "GET %%2Fws?device_id=%s HTTP/1.1\r\n", H_ALL,
       "target without a leading '/': 400"},
      {400, "4.2.1",
       "GET http://u@127.0.0.1/ws?device_id=%s HTTP/1.1\r\n", H_ALL,
       "absolute-form target with userinfo: 400"},
      {400, "4.2.1", LINE, H_ALL "Content-Length: 2\r\n",
       "upgrade announcing content: 400"},
      {400, "4.2.1", "GET /ws?x=%s HTTP/1.1\r\n", H_ALL,
       "no device_id: 400"},
      {400, "4.2.1", "GET /ws?device_id=&x=%s HTTP/1.1\r\n", H_ALL,
       "empty device_id: 400"},
      {400, "4.2.1", LINE, H_ALL " folded\r\n", "obs-fold: 400"},
      {400, "4.2.1", "GET /ws?device_id=%s\r\n", H_ALL,
       "request line without version: 400"},
      {400, "4.2.1", LINE, "Host : 127.0.0.1\r\n" H_UPG H_CONN H_KEY H_VER,
       "space before colon: 400"},
      {101, "4.2.1", "GET /ws?device_id=%s HTTP/1.1\n",
       "Host: 127.0.0.1\nUpgrade: websocket\nConnection: Upgrade\n"
       "Sec-WebSocket-Key: " SAMPLE_KEY "\nSec-WebSocket-Version: 13\n",
       "bare LF line ends accepted"},
      {400, "4.2.1", LINE, "Host: 127.0.0.1,evil.example\r\n" H_UPG H_CONN
       H_KEY H_VER, "Host naming two hosts (a comma): 400"},
      {400, "4.2.1", LINE, "Host: 127.0.0.1:http\r\n" H_UPG H_CONN H_KEY H_VER,
       "Host with a port that is no number: 400"},
      {400, "4.2.1", "GET /ws?device_id=%s#frag HTTP/1.1\r\n", H_ALL,
       "fragment in the target: 400"},
      {400, "4.2.1", "GET /ws?device_id=%s%%0d%%0a HTTP/1.1\r\n", H_ALL,
       "device_id decoding to a control byte: 400"},
      {101, "4.2.1", "\r\nGET /ws?device_id=%s HTTP/1.1\r\n", H_ALL,
       "empty line before the request line skipped: 101"},
      {400, "4.2.1", "GET /?x=%s HTTP/1.1\r\n", "",
       "plain GET / without Host: 400, not the page"},
      {200, "4.2.1", "GET /?x=%s HTTP/1.1\r\n", H_HOST, "GET /: 200 page"},
      /* A request whose content has no known length (RFC 9112 6.1, 6.3)
       * is a 400 whatever it asks for. */
      {400, "4.2.1", "GET /?x=%s HTTP/1.1\r\n",
       H_HOST "Content-Length: abc\r\n",
       "GET / with a Content-Length that is no number: 400, not the page"},
      {400, "4.2.1", "GET /?x=%s HTTP/1.1\r\n",
       H_HOST "Content-Length: 1\r\nContent-Length: 2\r\n",
       "GET / with two Content-Lengths that differ: 400"},
      {400, "4.2.1", "GET /?x=%s HTTP/1.1\r\n",
       H_HOST "Transfer-Encoding: gzip\r\n",
       "GET / with a Transfer-Encoding not ending in chunked: 400"},
      {400, "4.2.1", "GET /?x=%s HTTP/1.0\r\n",
       "Transfer-Encoding: chunked\r\n",
       "HTTP/1.0 GET / with a Transfer-Encoding: 400"},
      {404, "4.2.1", "GET /nothing?x=%s HTTP/1.1\r\n", H_HOST,
       "GET /nothing: 404"},
  };
  size_t i, k;
  conf_case *c;

  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    c = hs_case(b, 1 + (t[i].status != 101), t[i].rfc, t[i].status,
                t[i].line, t[i].headers, t[i].title);
    if (c == NULL) continue;
    if (t[i].status == 426) c->http_header = "Sec-WebSocket-Version: 13";
    done(b, t[i].status == 101 ? CONF_STAYS_OPEN : CONF_CLOSES);
  }

  if ((c = hs_case(b, 3, "4.2.1", 101, LINE, H_ALL,
                   "request and a frame in one chunk")) != NULL) {
    text(b, "{\"action\":\"echo\",\"data\":\"early\"}");
    exp_text(b, "{\"action\":\"echo\",\"data\":\"early\"}");
    done(b, CONF_STAYS_OPEN);
  }
  if ((c = hs_case(b, 3, "4.2.1", 101, LINE, H_ALL,
                   "request cut at every line")) != NULL) {
    for (k = 0; k < c->len; k++)
      if (c->bytes[k] == '\n') cut_at(b, k + 1);
    done(b, CONF_STAYS_OPEN);
  }
  if ((c = hs_case(b, 3, "4.2.1", 101, LINE, H_ALL,
                   "request cut mid-line, frame cut in its mask")) != NULL) {
    text(b, "{\"action\":\"echo\",\"data\":\"x\"}");
    cut_at(b, 20);
    cut_at(b, cur(b)->len - 30);
    exp_text(b, "{\"action\":\"echo\",\"data\":\"x\"}");
    done(b, CONF_STAYS_OPEN);
  }
  if ((c = hs_case(b, 3, "4.2.1", 101, LINE, H_ALL,
                   "request one byte per chunk")) != NULL) {
    for (k = 1; k < c->len; k++) cut_at(b, k);
    done(b, CONF_STAYS_OPEN);
  }

  /* Limits on the request (max_device_id 128, max_headers 64,
   * max_handshake 8192). */
  if (hs_case_dev(b, 4, "4.2.1", 101, LINE, H_ALL,
                  "device_id of 128 bytes: 101", 128) != NULL)
    done(b, CONF_STAYS_OPEN);
  if (hs_case_dev(b, 4, "4.2.1", 400, LINE, H_ALL,
                  "device_id of 129 bytes: 400", 129) != NULL)
    done(b, CONF_CLOSES);
  {
    char hdrs[4096];
    size_t n = 0;
    /* 5 standard headers + 59 = 64. */
    n += (size_t)snprintf(hdrs + n, sizeof(hdrs) - n, "%s", H_ALL);
    for (k = 0; k < 59; k++)
      n += (size_t)snprintf(hdrs + n, sizeof(hdrs) - n, "X-H%zu: v\r\n", k);
    if (hs_case(b, 4, "4.2.1", 101, LINE, hdrs, "64 headers: 101") != NULL)
      done(b, CONF_STAYS_OPEN);
    snprintf(hdrs + n, sizeof(hdrs) - n, "X-Last: v\r\n");
    if (hs_case(b, 4, "4.2.1", 431, LINE, hdrs, "65 headers: 431") != NULL)
      done(b, CONF_CLOSES);
  }
  {
    /* A head of exactly 8192 bytes passes; one of 8193 cannot, which is
     * known once byte 8192 arrives without the blank line: 431 there. */
    static char pad[8192];
    int over;
    for (over = 0; over < 2; over++) {
      size_t base, fill;
      c = hs_case(b, 4, "4.2.1", over ? 431 : 101, LINE, H_ALL "X-Pad: ",
                  over ? "request head of 8193 bytes: 431 at byte 8192"
                       : "request head of exactly 8192 bytes: 101");
      if (c == NULL) continue;
      /* hs_case ended the head: drop the blank line, pad, end it again. */
      base = c->len - 2;
      c->len = base;
      fill = 8192 - base - 4 + (size_t)over;
      memset(pad, 'p', fill);
      put(b, pad, fill);
      puts0(b, "\r\n\r\n");
      if (over) stop_at(b, 8192);
      done(b, over ? CONF_CLOSES : CONF_STAYS_OPEN);
    }
    /* A request line alone past the limit: its target is too long, 414
     * (RFC 9112 3), known at byte 8192 too. */
    if ((c = add_case(b, CONF_G_HANDSHAKE, 4, "4.2.1", "%s",
                      "request line past 8192 bytes: 414 at byte 8192"))) {
      c->raw_http = 1;
      c->http_status = 414;
      puts0(b, "GET /ws?device_id=long&pad=");
      memset(pad, 'p', sizeof(pad));
      put(b, pad, sizeof(pad));
      puts0(b, " HTTP/1.1\r\n" H_ALL "\r\n");
      stop_at(b, 8192);
      done(b, CONF_CLOSES);
    }
  }
}

/* ======================================================================== */
/* Table                                                                    */
/* ======================================================================== */

static void frames_free(conf_frames *fs) {
  size_t i;
  for (i = 0; i < fs->n; i++) free(fs->v[i].payload);
  free(fs->v);
  memset(fs, 0, sizeof(*fs));
}

void conf_table_free(conf_table *t) {
  size_t i;
  if (t == NULL) return;
  for (i = 0; i < t->n; i++) {
    conf_case *c = &t->v[i];
    free(c->bytes);
    free(c->ends);
    free(c->reply);
    free(c->syncs);
    frames_free(&c->expect);
    frames_free(&c->after);
  }
  free(t->v);
  memset(t, 0, sizeof(*t));
}

int conf_table_build(conf_table *t) {
  builder b = {.t = t};
  memset(t, 0, sizeof(*t));
  t->rng = 0x9e3779b9u;
  gen_framing(&b);
  gen_pingpong(&b);
  gen_rsv(&b);
  gen_opcodes(&b);
  gen_fragments(&b);
  gen_utf8(&b);
  gen_limits(&b);
  gen_close(&b);
  gen_handshake(&b);
  if (b.oom || b.bad_table) {
    conf_table_free(t);
    return b.oom ? -1 : -2;
  }
  return 0;
}

/* ======================================================================== */
/* Tail and verification                                                    */
/* ======================================================================== */

/* A masked close 1000, and the close 1000 expected back. */
static const uint8_t probe_close[] = {0x88, 0x82, 0x11, 0x22, 0x33, 0x44,
                                      0x03 ^ 0x11, 0xe8 ^ 0x22};
static conf_frame probe_expect_frame = {.opcode = OP_CLOSE, .code = 1000};
static const conf_frames probe_expect = {.v = &probe_expect_frame, .n = 1};

size_t conf_tail(const conf_case *c, const uint8_t **p) {
  if (c->end == CONF_STAYS_OPEN) {
    *p = probe_close;
    return sizeof(probe_close);
  }
  if (c->end == CONF_AWAITS_REPLY) {
    *p = c->reply;
    return c->reply_len;
  }
  *p = NULL;
  return 0;
}

const conf_frames *conf_tail_expect(const conf_case *c) {
  return c->end == CONF_STAYS_OPEN ? &probe_expect : &c->after;
}

static int fail(char *why, size_t n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(char *why, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (why && n) vsnprintf(why, n, fmt, ap);
  va_end(ap);
  return CONF_FAIL;
}

static int lower(int ch) {
  return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static int caseeq(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

/* The value of header name in head[0..n) (trimmed), or NULL. */
static const char *find_header(const char *head, size_t n, const char *name,
                               size_t *vlen) {
  size_t nl = strlen(name), i = 0;
  while (i < n) {
    const char *line = head + i, *eol = memchr(line, '\n', n - i);
    size_t ll = eol ? (size_t)(eol - line) : n - i;
    if (ll && line[ll - 1] == '\r') ll--;
    if (ll > nl && line[nl] == ':' && caseeq(line, name, nl)) {
      const char *v = line + nl + 1, *e = line + ll;
      while (v < e && (*v == ' ' || *v == '\t')) v++;
      while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
      *vlen = (size_t)(e - v);
      return v;
    }
    if (eol == NULL) break;
    i = (size_t)(eol - head) + 1;
  }
  return NULL;
}

static int header_is(const char *head, size_t n, const char *name,
                     const char *want, int nocase) {
  size_t vl;
  const char *v = find_header(head, n, name, &vl);
  if (v == NULL || vl != strlen(want)) return 0;
  return nocase ? caseeq(v, want, vl) : memcmp(v, want, vl) == 0;
}

/* Checks the response head; *body_end gets where frames (101) or the end
 * of the body (others) is. Returns CONF_PENDING, CONF_PASS (head fine) or
 * CONF_FAIL. */
static int check_http(const conf_case *c, const uint8_t *out, size_t len,
                      size_t *body_end, char *why, size_t wn) {
  const char *s = (const char *)out;
  const uint8_t *e = NULL;
  size_t i, hl, vl;
  int status;
  for (i = 0; i + 3 < len; i++)
    if (memcmp(out + i, "\r\n\r\n", 4) == 0) {
      e = out + i;
      break;
    }
  if (e == NULL) return len > 16384 ? fail(why, wn, "HTTP head too long")
                                    : CONF_PENDING;
  hl = (size_t)(e - out) + 4;
  if (hl < 13 || memcmp(s, "HTTP/1.1 ", 9) != 0 || s[9] < '1' || s[9] > '5')
    return fail(why, wn, "bad status line");
  status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
  if (status != c->http_status)
    return fail(why, wn, "HTTP status %d, expected %d", status,
                c->http_status);
  if (c->http_header) {
    const char *colon = strchr(c->http_header, ':');
    char name[64];
    size_t nlen = (size_t)(colon - c->http_header);
    memcpy(name, c->http_header, nlen);
    name[nlen] = '\0';
    if (!header_is(s, hl, name, colon + 2, 0))
      return fail(why, wn, "response lacks \"%s\"", c->http_header);
  }
  if (status == 101) {
    if (!header_is(s, hl, "Sec-WebSocket-Accept", SAMPLE_ACCEPT, 0))
      return fail(why, wn, "wrong or missing Sec-WebSocket-Accept");
    if (!header_is(s, hl, "Upgrade", "websocket", 1))
      return fail(why, wn, "101 without Upgrade: websocket");
    if (find_header(s, hl, "Connection", &vl) == NULL)
      return fail(why, wn, "101 without Connection");
    *body_end = hl;
    return CONF_PASS;
  }
  {
    const char *v = find_header(s, hl, "Content-Length", &vl);
    size_t clen = 0;
    if (v == NULL) return fail(why, wn, "refusal without Content-Length");
    for (i = 0; i < vl; i++) clen = clen * 10 + (size_t)(v[i] - '0');
    if (len < hl + clen) return CONF_PENDING;
    *body_end = hl + clen;
    return CONF_PASS;
  }
}

/* One server frame at out[0..len): its total size, 0 if incomplete, or
 * (size_t)-1 when malformed for a server frame. */
typedef struct sframe {
  int opcode;
  const uint8_t *p;
  size_t len;
} sframe;

static size_t parse_frame(const uint8_t *out, size_t len, sframe *f,
                          char *why, size_t wn) {
  size_t hl = 2, i;
  uint64_t n;
  if (len < 2) return 0;
  if ((out[0] & 0x80) == 0 || (out[0] & 0x70) != 0 || (out[1] & 0x80) != 0) {
    fail(why, wn, "server frame with FIN 0, RSV or mask (%02x %02x)", out[0],
         out[1]);
    return (size_t)-1;
  }
  n = out[1] & 0x7f;
  if (n == 126) {
    if (len < 4) return 0;
    n = (uint64_t)out[2] << 8 | out[3];
    hl = 4;
  } else if (n == 127) {
    if (len < 10) return 0;
    for (n = 0, i = 0; i < 8; i++) n = n << 8 | out[2 + i];
    hl = 10;
  }
  if (n > (uint64_t)(len - hl)) return 0;
  f->opcode = out[0] & 0x0f;
  f->p = out + hl;
  f->len = (size_t)n;
  return hl + (size_t)n;
}

/* 1 if the frame is the expected one; else 0 and why. */
static int frame_matches(const conf_frame *want, const sframe *got, char *why,
                         size_t wn) {
  int code;
  if (got->opcode != want->opcode) {
    fail(why, wn, "got opcode %d (%zu bytes), expected %d", got->opcode,
         got->len, want->opcode);
    return 0;
  }
  if (want->opcode != OP_CLOSE) {
    if (got->len == want->len &&
        (want->len == 0 || memcmp(got->p, want->payload, want->len) == 0))
      return 1;
    fail(why, wn, "opcode %d payload differs (%zu bytes, expected %zu)",
         got->opcode, got->len, want->len);
    return 0;
  }
  if (got->len == 0) {
    if (want->code == CONF_NO_CODE) return 1;
    fail(why, wn, "empty close, expected %d", want->code);
    return 0;
  }
  code = got->len >= 2 ? got->p[0] << 8 | got->p[1] : -2;
  if (code != want->code) {
    fail(why, wn, "close %d (%zu bytes), expected %d", code, got->len,
         want->code);
    return 0;
  }
  if (!ref_utf8_valid(got->p + 2, got->len - 2)) {
    fail(why, wn, "close reason not UTF-8");
    return 0;
  }
  return 1;
}

int conf_verify(const conf_case *c, const uint8_t *out, size_t len,
                int closed, int tail_sent, char *why, size_t wn) {
  const conf_frames *b = conf_tail_expect(c);
  size_t off = 0, nf = 0, need_a = c->expect.n;
  int has_tail = c->end != CONF_CLOSES;
  int r = check_http(c, out, len, &off, why, wn);
  if (r == CONF_FAIL) return r;
  if (r == CONF_PENDING)
    return closed ? fail(why, wn, "closed before a complete HTTP response")
                  : CONF_PENDING;
  if (c->http_status != 101) {
    if (len > off) return fail(why, wn, "%zu bytes after the response",
                               len - off);
    return closed ? CONF_PASS : CONF_PENDING;
  }
  while (off < len) {
    sframe f;
    const conf_frame *want;
    size_t used = parse_frame(out + off, len - off, &f, why, wn);
    if (used == (size_t)-1) return CONF_FAIL;
    if (used == 0) {
      if (closed) return fail(why, wn, "closed inside a frame");
      break;
    }
    if (nf < need_a)
      want = &c->expect.v[nf];
    else if (tail_sent && nf - need_a < b->n)
      want = &b->v[nf - need_a];
    else
      return fail(why, wn, "unexpected frame #%zu (opcode %d, %zu bytes)",
                  nf + 1, f.opcode, f.len);
    if (!frame_matches(want, &f, why, wn)) return CONF_FAIL;
    nf++;
    off += used;
  }
  if (nf < need_a)
    return closed ? fail(why, wn, "closed after %zu of %zu frames", nf, need_a)
                  : CONF_PENDING;
  if (!tail_sent) {
    if (has_tail)
      return closed ? fail(why, wn, "closed, but should %s",
                           c->end == CONF_STAYS_OPEN
                               ? "have stayed open"
                               : "have waited for the reply")
                    : CONF_READY_TAIL;
    return closed ? CONF_PASS : CONF_PENDING;
  }
  if (nf < need_a + b->n)
    return closed ? fail(why, wn, "closed after %zu of %zu frames", nf,
                         need_a + b->n)
                  : CONF_PENDING;
  return closed ? CONF_PASS : CONF_PENDING;
}

const conf_sync *conf_sync_at(const conf_case *c, size_t i) {
  size_t k;
  for (k = 0; k < c->nsyncs; k++)
    if (c->syncs[k].after_chunk == i) return &c->syncs[k];
  return NULL;
}

size_t conf_frames_in(const conf_case *c, const uint8_t *out, size_t len) {
  size_t off = 0, n = 0;
  char why[8];
  if (c->http_status != 101 ||
      check_http(c, out, len, &off, why, sizeof(why)) != CONF_PASS)
    return 0;
  while (off < len) {
    sframe f;
    size_t used = parse_frame(out + off, len - off, &f, why, sizeof(why));
    if (used == 0 || used == (size_t)-1) break;
    n++;
    off += used;
  }
  return n;
}
