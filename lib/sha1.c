/*
 * SHA-1 (RFC 3174), used only to compute Sec-WebSocket-Accept. SHA-1 is
 * broken for collision resistance; RFC 6455 uses it as a fixed transform,
 * not for security, so a small portable implementation is all we need.
 */
#include <string.h>

#include "proto.h"

static uint32_t rol32(uint32_t x, unsigned n) {
  return (x << n) | (x >> (32u - n));
}

static uint32_t load_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* One step of RFC 3174 section 5; f is the round function of b, c, d. */
#define SHA1_STEP(f, k)                                                        \
  do {                                                                         \
    uint32_t tmp = rol32(a, 5) + (f) + e + w[t] + (k);                         \
    e = d;                                                                     \
    d = c;                                                                     \
    c = rol32(b, 30);                                                          \
    b = a;                                                                     \
    a = tmp;                                                                   \
  } while (0)

/* Processes one 64-byte block. One loop per round function, so that no step
 * branches on which round it is in (with the branch, a handshake's two
 * blocks cost about 2.5 times as many instructions). The round functions
 * are the RFC's in fewer operations: Ch(b,c,d) = d ^ (b & (c ^ d)),
 * Maj(b,c,d) = (b & c) | (d & (b | c)). */
static void sha1_block(ws__sha1 *ctx, const uint8_t *blk) {
  uint32_t w[80]; /* the message schedule (RFC 3174 method 1) */
  uint32_t a = ctx->h[0], b = ctx->h[1], c = ctx->h[2], d = ctx->h[3],
           e = ctx->h[4];
  unsigned t;
  for (t = 0; t < 16; t++) w[t] = load_be32(blk + 4 * t);
  for (; t < 80; t++)
    w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  for (t = 0; t < 20; t++) SHA1_STEP(d ^ (b & (c ^ d)), 0x5A827999u);
  for (; t < 40; t++) SHA1_STEP(b ^ c ^ d, 0x6ED9EBA1u);
  for (; t < 60; t++) SHA1_STEP((b & c) | (d & (b | c)), 0x8F1BBCDCu);
  for (; t < 80; t++) SHA1_STEP(b ^ c ^ d, 0xCA62C1D6u);
  ctx->h[0] += a;
  ctx->h[1] += b;
  ctx->h[2] += c;
  ctx->h[3] += d;
  ctx->h[4] += e;
}

#undef SHA1_STEP

void ws__sha1_init(ws__sha1 *ctx) {
  ctx->h[0] = 0x67452301u;
  ctx->h[1] = 0xEFCDAB89u;
  ctx->h[2] = 0x98BADCFEu;
  ctx->h[3] = 0x10325476u;
  ctx->h[4] = 0xC3D2E1F0u;
  ctx->len = 0;
  ctx->fill = 0;
}

void ws__sha1_update(ws__sha1 *ctx, const void *data, size_t len) {
  const uint8_t *p = data;
  ctx->len += len;
  while (len > 0) {
    size_t take = 64 - ctx->fill;
    if (take > len) take = len;
    memcpy(ctx->block + ctx->fill, p, take);
    ctx->fill += take;
    p += take;
    len -= take;
    if (ctx->fill == 64) {
      sha1_block(ctx, ctx->block);
      ctx->fill = 0;
    }
  }
}

/* Pads with 0x80, zeros, and the 64-bit big-endian bit length. */
void ws__sha1_final(ws__sha1 *ctx, uint8_t digest[20]) {
  uint64_t bits = ctx->len * 8u;
  ctx->block[ctx->fill++] = 0x80;
  if (ctx->fill > 56) {
    memset(ctx->block + ctx->fill, 0, 64 - ctx->fill);
    sha1_block(ctx, ctx->block);
    ctx->fill = 0;
  }
  memset(ctx->block + ctx->fill, 0, 56 - ctx->fill);
  store_be32(ctx->block + 56, (uint32_t)(bits >> 32));
  store_be32(ctx->block + 60, (uint32_t)bits);
  sha1_block(ctx, ctx->block);
  for (unsigned i = 0; i < 5; i++) store_be32(digest + 4 * i, ctx->h[i]);
}
