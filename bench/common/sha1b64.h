/*
 * Tiny SHA-1 + base64, just enough to compute and check the RFC 6455
 * Sec-WebSocket-Accept value. Benchmark helper shared by bench/loadgen.c and
 * bench/reference/raw_epoll.c. Not constant-time, not for security use.
 */
#ifndef BENCH_SHA1B64_H
#define BENCH_SHA1B64_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  uint32_t h[5];
  uint64_t nbytes;
  unsigned char blk[64];
  size_t blen;
} bsha1_ctx;

static inline uint32_t bsha1_rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

static inline void bsha1_block(bsha1_ctx *c, const unsigned char *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
           ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = bsha1_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = c->h[0], b = c->h[1], d3 = c->h[2], d = c->h[3], e = c->h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & d3) | (~b & d);
      k = 0x5A827999u;
    } else if (i < 40) {
      f = b ^ d3 ^ d;
      k = 0x6ED9EBA1u;
    } else if (i < 60) {
      f = (b & d3) | (b & d) | (d3 & d);
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ d3 ^ d;
      k = 0xCA62C1D6u;
    }
    uint32_t t = bsha1_rol(a, 5) + f + e + k + w[i];
    e = d;
    d = d3;
    d3 = bsha1_rol(b, 30);
    b = a;
    a = t;
  }
  c->h[0] += a;
  c->h[1] += b;
  c->h[2] += d3;
  c->h[3] += d;
  c->h[4] += e;
}

static inline void bsha1_init(bsha1_ctx *c) {
  c->h[0] = 0x67452301u;
  c->h[1] = 0xEFCDAB89u;
  c->h[2] = 0x98BADCFEu;
  c->h[3] = 0x10325476u;
  c->h[4] = 0xC3D2E1F0u;
  c->nbytes = 0;
  c->blen = 0;
}

static inline void bsha1_update(bsha1_ctx *c, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  c->nbytes += n;
  while (n > 0) {
    size_t take = 64 - c->blen;
    if (take > n)
      take = n;
    memcpy(c->blk + c->blen, p, take);
    c->blen += take;
    p += take;
    n -= take;
    if (c->blen == 64) {
      bsha1_block(c, c->blk);
      c->blen = 0;
    }
  }
}

static inline void bsha1_final(bsha1_ctx *c, unsigned char out[20]) {
  uint64_t bits = c->nbytes * 8;
  unsigned char pad = 0x80;
  bsha1_update(c, &pad, 1);
  pad = 0;
  while (c->blen != 56)
    bsha1_update(c, &pad, 1);
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char)(bits >> (56 - 8 * i));
  bsha1_update(c, len, 8);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (unsigned char)(c->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)c->h[i];
  }
}

/* Standard base64 with padding. out must hold 4*ceil(n/3)+1 bytes. Returns
 * the length written (without the NUL). */
static inline size_t bb64_encode(const unsigned char *in, size_t n, char *out) {
  static const char tbl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = tbl[(v >> 6) & 63];
    out[o++] = tbl[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = '=';
    out[o++] = '=';
  } else if (n - i == 2) {
    uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = tbl[(v >> 6) & 63];
    out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (klen bytes, not trimmed
 * here). out receives 28 chars + NUL. */
static inline void bws_accept_key(const char *key, size_t klen, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  bsha1_ctx c;
  unsigned char dig[20];
  bsha1_init(&c);
  bsha1_update(&c, key, klen);
  bsha1_update(&c, guid, sizeof(guid) - 1);
  bsha1_final(&c, dig);
  bb64_encode(dig, 20, out);
}

#endif /* BENCH_SHA1B64_H */
