/*
 * Helpers shared by the libFuzzer targets in tests/fuzz/ (header only: each
 * target is one translation unit linked with the library's objects).
 *
 *   fz_alloc   a counting allocator for ws_config.alloc: every block has a
 *              size header, live blocks and bytes are counted, and the N-th
 *              allocation attempt can be made to fail (failmalloc).
 *   fz_in      a cursor over the fuzzer's input.
 *   fz_out     a checker for what a server writes on one connection: one
 *              HTTP response, then (after a 101) only complete, unmasked,
 *              well-formed server frames, and nothing after a close frame;
 *              if the harness asks, a close frame with the code and
 *              reason of the host's ws_conn_close, and tagged messages
 *              in the order sent.
 *
 * Every violated invariant calls fz_fail, which prints why and aborts, so
 * libFuzzer records the input as a crash.
 */
#ifndef WS_FUZZ_UTIL_H
#define WS_FUZZ_UTIL_H

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* An RFC 9110 tchar, written here (not the library's) for the checks. */
static inline int fz_is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') ||
         (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* For the checkers' own code: no coverage features and no comparison
 * tracing (the library code they call keeps both). Their branches say
 * nothing about the library, and tracing them took a quarter of
 * fuzz_api's time (fz_head_lines alone 9%). */
#if defined(__clang__)
#define FZ_NOCOV __attribute__((no_sanitize("coverage")))
#else
#define FZ_NOCOV
#endif

__attribute__((noreturn)) static inline void fz_fail(const char *why) {
  fprintf(stderr, "fuzz invariant violated: %s\n", why);
  abort();
}

#define FZ_CHECK(cond, why) \
  do {                      \
    if (!(cond)) fz_fail(why); \
  } while (0)

/* ---- ws_stats against what the callbacks saw ------------------------------ */

/* The closes_* counters, in the order of their codes; the last is
 * closes_other. A harness counts on_close's codes into an array of
 * FZ_CLOSE_BUCKETS by fz_close_bucket and checks it with fz_check_closes. */
enum { FZ_CLOSE_BUCKETS = 13 };

static inline int fz_close_bucket(int code) {
  static const int codes[FZ_CLOSE_BUCKETS - 1] = {
      1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 4000, 4001, 4002};
  int i;
  for (i = 0; i < FZ_CLOSE_BUCKETS - 1; i++)
    if (codes[i] == code) return i;
  return FZ_CLOSE_BUCKETS - 1;
}

/* closes_* equal the codes on_close got; and no counter (every field but
 * the gauges conns_open and conns_pending, the first two) went down since
 * *last, which then becomes st. */
FZ_NOCOV static inline void fz_check_counters(const ws_stats *st,
                                              const long *closes_by,
                                              ws_stats *last) {
  const uint64_t by[FZ_CLOSE_BUCKETS] = {
      st->closes_1000, st->closes_1001, st->closes_1002, st->closes_1003,
      st->closes_1006, st->closes_1007, st->closes_1008, st->closes_1009,
      st->closes_1011, st->closes_4000, st->closes_4001, st->closes_4002,
      st->closes_other};
  uint64_t now[sizeof *st / 8], was[sizeof *st / 8];
  size_t k;
  for (k = 0; k < FZ_CLOSE_BUCKETS; k++)
    FZ_CHECK(by[k] == (uint64_t)closes_by[k],
             "a closes_* counter differs from the codes on_close got");
  memcpy(now, st, sizeof now);
  memcpy(was, last, sizeof was);
  for (k = 2; k < sizeof *st / 8; k++)
    FZ_CHECK(now[k] >= was[k], "a ws_stats counter went down");
  *last = *st;
}

/* ---- counting allocator ------------------------------------------------ */

typedef struct fz_alloc {
  long live;      /* blocks allocated and not freed */
  long live_bytes;
  long attempts;  /* allocation attempts since fz_alloc_reset */
  long fail_at;   /* > 0: that attempt returns NULL */
  int failed;
} fz_alloc;

/* The header keeps the payload 16-byte aligned, as malloc's is. */
typedef union fz_hdr {
  size_t size;
  max_align_t align_;
} fz_hdr;

static inline int fz_alloc_should_fail(fz_alloc *a) {
  a->attempts++;
  if (a->fail_at > 0 && a->attempts == a->fail_at) {
    a->failed = 1;
    return 1;
  }
  return 0;
}

static inline void *fz_malloc(size_t n, void *ud) {
  fz_alloc *a = ud;
  fz_hdr *h;
  if (fz_alloc_should_fail(a) || n > SIZE_MAX - sizeof(*h)) return NULL;
  h = malloc(sizeof(*h) + n);
  if (h == NULL) return NULL;
  h->size = n;
  a->live++;
  a->live_bytes += (long)n;
  return h + 1;
}

static inline void fz_free(void *p, void *ud) {
  fz_alloc *a = ud;
  fz_hdr *h;
  if (p == NULL) return;
  h = (fz_hdr *)p - 1;
  FZ_CHECK(a->live > 0, "free with no live allocation");
  a->live--;
  a->live_bytes -= (long)h->size;
  free(h);
}

static inline void *fz_realloc(void *p, size_t n, void *ud) {
  fz_alloc *a = ud;
  fz_hdr *h, *nh;
  size_t old;
  if (p == NULL) return fz_malloc(n, ud);
  if (fz_alloc_should_fail(a) || n > SIZE_MAX - sizeof(*h)) return NULL;
  h = (fz_hdr *)p - 1;
  old = h->size;
  nh = realloc(h, sizeof(*nh) + n);
  if (nh == NULL) return NULL;
  nh->size = n;
  a->live_bytes += (long)n - (long)old;
  return nh + 1;
}

static inline ws_allocator fz_allocator(fz_alloc *a) {
  ws_allocator al = {
      .malloc = fz_malloc, .realloc = fz_realloc, .free = fz_free,
      .user_data = a};
  return al;
}

static inline void fz_alloc_reset(fz_alloc *a, long fail_at) {
  a->attempts = 0;
  a->fail_at = fail_at;
  a->failed = 0;
}

/* ---- input cursor -------------------------------------------------------- */

typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in;

/* Next byte, or def when the input is used up. */
static inline uint8_t fz_byte(fz_in *in, uint8_t def) {
  if (in->n == 0) return def;
  in->n--;
  return *in->p++;
}

/* Up to want bytes; *got says how many. */
static inline const uint8_t *fz_take(fz_in *in, size_t want, size_t *got) {
  const uint8_t *p = in->p;
  *got = want < in->n ? want : in->n;
  in->p += *got;
  in->n -= *got;
  return p;
}

/* An exact-size heap copy, so ASan sees any read past its end. The caller
 * frees it. */
static inline uint8_t *fz_dup(const uint8_t *p, size_t n) {
  uint8_t *d = malloc(n ? n : 1);
  if (d == NULL) abort();
  if (n) memcpy(d, p, n);
  return d;
}

/* ---- server output checker ---------------------------------------------- */

enum fz_phase {
  FZ_HEAD = 0, /* waiting for the complete HTTP response head */
  FZ_FRAMES,   /* after a 101: server frames */
  FZ_BODY,     /* after a refusal/plain head: Content-Length body bytes */
  FZ_ENDED     /* after a close frame or the body: nothing may follow */
};

typedef struct fz_out {
  uint8_t *buf; /* every byte the transport took */
  size_t len, cap;
  size_t pos; /* bytes verified */
  int phase;
  int status; /* HTTP status of the response */
  size_t body_left;
  int head_request; /* set by the harness: the answer to HEAD has no body */
  unsigned long frames[16]; /* complete frames seen, by opcode */
  int close_code; /* of the complete close frame written (1005: none) */
  int json_text; /* text frames must be JSON envelopes */
  /* Set by the harness: the next close frame carries this code (> 0) and
   * reason (ws_conn_close answered WS_OK on an open connection). */
  int close_want;
  char close_reason[124];
  /* Set by the harness: text frames {"action":"A","data":N} with N of
   * at least FZ_SEQ_BASE are tagged messages; their N rise strictly, one
   * sequence for A "post" (ws_post) and one for the rest. A post's data
   * is [N,D]: D the last direct tag sent before it was posted, which no
   * direct message after it may have (posted from the loop thread, it
   * goes out at a later tick, after what was sent directly before). */
  int seq_check;
  unsigned long seq_last[2];
} fz_out;

#define FZ_SEQ_BASE 100000UL

static inline void fz_out_free(fz_out *o) {
  free(o->buf);
  memset(o, 0, sizeof(*o));
}

FZ_NOCOV static inline const uint8_t *fz_memmem(const uint8_t *h,
                                                size_t hn,
                                                const char *needle) {
  size_t nn = strlen(needle), i;
  for (i = 0; i + nn <= hn; i++) /* the first byte before memcmp */
    if (h[i] == (uint8_t)needle[0] && memcmp(h + i, needle, nn) == 0)
      return h + i;
  return NULL;
}

/* Lines of the head h[0..hl) whose name is name (lower case, with its
 * colon), compared case-insensitively. */
FZ_NOCOV static inline int fz_head_lines(const uint8_t *h, size_t hl,
                                         const char *name) {
  size_t nl = strlen(name), i, k;
  int count = 0;
  for (i = 0; i + 2 + nl <= hl; i++) {
    if (h[i] != '\r' || h[i + 1] != '\n') continue;
    for (k = 0; k < nl && tolower(h[i + 2 + k]) == name[k]; k++) {
    }
    count += k == nl;
  }
  return count;
}

FZ_NOCOV static inline void fz_out_head(fz_out *o) {
  const uint8_t *h = o->buf + o->pos;
  size_t n = o->len - o->pos, hl, i;
  const uint8_t *end = fz_memmem(h, n, "\r\n\r\n"), *cl;
  if (end == NULL) {
    FZ_CHECK(n < 2048 + WS_MAX_ADDED_HEADERS, "response head without an end");
    return;
  }
  hl = (size_t)(end - h) + 4;
  FZ_CHECK(hl >= 13 && memcmp(h, "HTTP/1.1 ", 9) == 0,
           "response does not start with HTTP/1.1");
  for (i = 9; i < 12; i++)
    FZ_CHECK(h[i] >= '0' && h[i] <= '9', "response status not 3 digits");
  FZ_CHECK(h[12] == ' ', "no space after the status");
  o->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
  for (i = 0; i < hl; i++)
    FZ_CHECK(h[i] >= 0x20 || h[i] == '\r' || h[i] == '\n',
             "control byte in the response head");
  /* The lines that frame the response or the upgrade come once, whatever
   * a host added (ws_conn_add_header). */
  FZ_CHECK(fz_head_lines(h, hl, "content-length:") <= 1 &&
               fz_head_lines(h, hl, "connection:") == 1 &&
               fz_head_lines(h, hl, "upgrade:") <= 1 &&
               fz_head_lines(h, hl, "content-type:") <= 1 &&
               fz_head_lines(h, hl, "sec-websocket-accept:") <= 1 &&
               fz_head_lines(h, hl, "sec-websocket-protocol:") <= 1 &&
               fz_head_lines(h, hl, "transfer-encoding:") == 0,
           "a framing or upgrade header twice in the response head");
  o->pos += hl;
  if (o->status == 101) {
    FZ_CHECK(fz_memmem(h, hl, "\r\nUpgrade: websocket\r\n") &&
                 fz_memmem(h, hl, "\r\nConnection: Upgrade\r\n") &&
                 fz_memmem(h, hl, "\r\nSec-WebSocket-Accept: "),
             "101 without the upgrade headers");
    o->phase = FZ_FRAMES;
    return;
  }
  FZ_CHECK(o->status >= 200, "non-101 informational status");
  FZ_CHECK(fz_memmem(h, hl, "\r\nConnection: close\r\n") != NULL ||
               (o->status == 426 &&
                fz_memmem(h, hl, "\r\nConnection: Upgrade, close\r\n")),
           "refusal without Connection: close");
  cl = fz_memmem(h, hl, "\r\nContent-Length: ");
  if (o->status == 204 || o->status == 205 || o->status == 304) {
    /* RFC 9110 6.4.1: no content, so no Content-Length either */
    FZ_CHECK(cl == NULL, "a 204, 205 or 304 with Content-Length");
    o->phase = FZ_ENDED;
    return;
  }
  FZ_CHECK(cl != NULL, "refusal without Content-Length");
  cl += 18;
  o->body_left = 0;
  while (*cl >= '0' && *cl <= '9') o->body_left = o->body_left * 10 + (size_t)(*cl++ - '0');
  FZ_CHECK(*cl == '\r', "bad Content-Length");
  if (o->head_request) o->body_left = 0;
  o->phase = o->body_left ? FZ_BODY : FZ_ENDED;
}

static inline int fz_close_code_ok(int code) {
  if (code >= 3000 && code <= 4999) return 1;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 &&
         code != 1006;
}

/* A tagged message (see seq_check) comes after the last one of its
 * sequence: none duplicated, none overtaken. */
FZ_NOCOV static inline unsigned long fz_out_num(const uint8_t *f, size_t n,
                                                size_t *i) {
  unsigned long v = 0;
  for (; *i < n && f[*i] >= '0' && f[*i] <= '9'; ++*i)
    if (v < FZ_SEQ_BASE * 100) v = v * 10 + (unsigned long)(f[*i] - '0');
  return v;
}

FZ_NOCOV static inline void fz_out_seq(fz_out *o, const uint8_t *f,
                                       size_t n) {
  static const char head[] = "{\"action\":\"", data[] = "\",\"data\":";
  size_t i = sizeof head - 1, a;
  unsigned long v, d = 0;
  int k, list;
  if (n < i || memcmp(f, head, i) != 0) return;
  for (a = i; i < n && f[i] != '"' && f[i] != '\\'; i++) {
  }
  if (n - i < sizeof data - 1 || memcmp(f + i, data, sizeof data - 1))
    return;
  k = i - a == 4 && memcmp(f + a, "post", 4) == 0;
  i += sizeof data - 1;
  list = k && i < n && f[i] == '[';
  i += (size_t)list;
  v = fz_out_num(f, n, &i);
  if (list) {
    if (i >= n || f[i++] != ',') return;
    d = fz_out_num(f, n, &i);
    if (i >= n || f[i++] != ']') return;
  }
  if (i + 1 != n || f[i] != '}' || v < FZ_SEQ_BASE || list != k) return;
  FZ_CHECK(v > o->seq_last[k],
           "a tagged message arrived twice or after a later one");
  o->seq_last[k] = v;
  if (d > o->seq_last[0]) o->seq_last[0] = d;
}

/* One complete frame at o->pos, or returns 0 when it is not all there. */
FZ_NOCOV static inline int fz_out_frame(fz_out *o) {
  const uint8_t *f = o->buf + o->pos;
  size_t n = o->len - o->pos, hl = 2, i;
  uint64_t pl;
  int op;
  if (n < 2) return 0;
  FZ_CHECK(f[0] & 0x80, "server frame without FIN (servers never fragment)");
  FZ_CHECK((f[0] & 0x70) == 0, "server frame with RSV bits");
  op = f[0] & 0x0F;
  FZ_CHECK(op == 1 || op == 2 || op == 8 || op == 9 || op == 10,
           "server frame with a bad opcode");
  FZ_CHECK((f[1] & 0x80) == 0, "masked server frame");
  pl = f[1] & 0x7F;
  if (pl == 126) {
    if (n < 4) return 0;
    pl = (uint64_t)f[2] << 8 | f[3];
    FZ_CHECK(pl >= 126, "non-minimal 16-bit length");
    hl = 4;
  } else if (pl == 127) {
    if (n < 10) return 0;
    pl = 0;
    for (i = 0; i < 8; i++) pl = pl << 8 | f[2 + i];
    FZ_CHECK(pl > 0xFFFF && pl < (UINT64_C(1) << 63),
             "non-minimal or huge 64-bit length");
    hl = 10;
  }
  FZ_CHECK(!(op & 8) || pl <= 125, "control frame over 125 bytes");
  if (n < hl || n - hl < pl) return 0;
  f += hl;
  if (op == 1) {
    FZ_CHECK(ws__utf8_validate(WS__UTF8_ACCEPT, f, (size_t)pl) ==
                 WS__UTF8_ACCEPT,
             "server text frame is not valid UTF-8");
    if (o->json_text)
      FZ_CHECK(ws__json_valid((const char *)f, (size_t)pl, 0),
               "server text frame is not valid JSON");
    if (o->seq_check) fz_out_seq(o, f, (size_t)pl);
  } else if (op == 8) {
    FZ_CHECK(pl == 0 || pl >= 2, "close frame with a 1-byte payload");
    if (pl >= 2) {
      FZ_CHECK(fz_close_code_ok(f[0] << 8 | f[1]),
               "close frame with a code that must not be sent");
      FZ_CHECK(ws__utf8_validate(WS__UTF8_ACCEPT, f + 2, (size_t)pl - 2) ==
                   WS__UTF8_ACCEPT,
               "close reason is not valid UTF-8");
    }
    if (o->close_want) {
      size_t rl = strlen(o->close_reason);
      FZ_CHECK(pl == 2 + rl && (f[0] << 8 | f[1]) == o->close_want &&
                   memcmp(f + 2, o->close_reason, rl) == 0,
               "the close frame differs from the host's ws_conn_close");
    }
  }
  if (op == 8) o->close_code = pl >= 2 ? (f[0] << 8 | f[1]) : 1005;
  o->frames[op]++;
  o->pos += hl + (size_t)pl;
  if (op == 8) o->phase = FZ_ENDED;
  return 1;
}

/* Verifies everything complete that arrived since the last call. */
FZ_NOCOV static inline void fz_out_check(fz_out *o) {
  for (;;) {
    switch (o->phase) {
    case FZ_HEAD:
      fz_out_head(o);
      if (o->phase == FZ_HEAD) return;
      break;
    case FZ_FRAMES:
      if (!fz_out_frame(o)) return;
      break;
    case FZ_BODY: {
      size_t n = o->len - o->pos;
      if (n > o->body_left) n = o->body_left;
      o->pos += n;
      o->body_left -= n;
      if (o->body_left) return;
      o->phase = FZ_ENDED;
      break;
    }
    default:
      FZ_CHECK(o->pos == o->len, "bytes written after the close frame or "
                                 "after the HTTP response");
      return;
    }
  }
}

FZ_NOCOV static inline void fz_out_append(fz_out *o, const void *p, size_t n) {
  if (n == 0) return;
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 1024;
    while (cap < o->len + n) cap *= 2;
    o->buf = realloc(o->buf, cap);
    if (o->buf == NULL) abort();
    o->cap = cap;
  }
  memcpy(o->buf + o->len, p, n);
  o->len += n;
  fz_out_check(o);
}

#endif /* WS_FUZZ_UTIL_H */
