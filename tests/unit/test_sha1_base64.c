/* sha1.c and base64.c against RFC 3174, RFC 4648 and RFC 6455 vectors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

/* ---- SHA-1 ------------------------------------------------------------- */

static void hex(const uint8_t d[20], char out[41]) {
  for (int i = 0; i < 20; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Digest of `repeat` copies of msg, fed in chunks of `chunk` bytes (0: each
 * copy in one update call). */
static void sha1_hex(const char *msg, size_t repeat, size_t chunk,
                     char out[41]) {
  ws__sha1 ctx;
  uint8_t d[20];
  size_t n = strlen(msg);
  ws__sha1_init(&ctx);
  for (size_t r = 0; r < repeat; r++) {
    if (chunk == 0) {
      ws__sha1_update(&ctx, msg, n);
      continue;
    }
    for (size_t i = 0; i < n; i += chunk)
      ws__sha1_update(&ctx, msg + i, n - i < chunk ? n - i : chunk);
  }
  ws__sha1_final(&ctx, d);
  hex(d, out);
}

typedef struct sha_vec {
  const char *msg;
  size_t repeat;
  const char *digest;
} sha_vec;

/* RFC 3174 section 7.3 TEST1..TEST4, plus the empty message. */
static const sha_vec rfc3174[] = {
    {"abc", 1, "a9993e364706816aba3e25717850c26c9cd0d89d"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
     "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
    {"a", 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"},
    {"0123456701234567012345670123456701234567012345670123456701234567", 10,
     "dea356a2cddd90c7a7ecedc5ebb563934f460452"},
    {"", 1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
};

Test(sha1, rfc3174_vectors) {
  char got[41];
  for (size_t i = 0; i < sizeof rfc3174 / sizeof rfc3174[0]; i++) {
    sha1_hex(rfc3174[i].msg, rfc3174[i].repeat, 0, got);
    cr_expect_str_eq(got, rfc3174[i].digest, "vector %zu", i);
  }
}

Test(sha1, rfc3174_vectors_fed_in_small_chunks) {
  char got[41];
  for (size_t chunk = 1; chunk <= 7; chunk += 3)
    for (size_t i = 0; i < sizeof rfc3174 / sizeof rfc3174[0]; i++) {
      if (rfc3174[i].repeat > 10) continue; /* the million 'a's: slow */
      sha1_hex(rfc3174[i].msg, rfc3174[i].repeat, chunk, got);
      cr_expect_str_eq(got, rfc3174[i].digest, "vector %zu chunk %zu", i,
                       chunk);
    }
}

/* Lengths around the 56-byte padding boundary and the 64-byte block. */
Test(sha1, padding_boundaries) {
  static const struct {
    size_t n;
    const char *digest;
  } v[] = {
      {55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"},
      {56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"},
      {63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"},
      {64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"},
      {65, "11655326c708d70319be2610e8a57d9a5b959d3b"},
      {119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"},
      {120, "f34c1488385346a55709ba056ddd08280dd4c6d6"},
  };
  char got[41];
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    sha1_hex("a", v[i].n, 0, got);
    cr_expect_str_eq(got, v[i].digest, "length %zu", v[i].n);
  }
}

/* ---- base64 ------------------------------------------------------------ */

static const struct {
  const char *raw, *enc;
} rfc4648[] = {
    {"", ""},         {"f", "Zg=="},        {"fo", "Zm8="},
    {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

Test(base64, encode_rfc4648_vectors) {
  for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
    char out[16] = {0};
    size_t n = ws__base64_encode((const uint8_t *)rfc4648[i].raw,
                                 strlen(rfc4648[i].raw), out);
    cr_expect_eq(n, strlen(rfc4648[i].enc));
    cr_expect_str_eq(out, rfc4648[i].enc);
  }
}

Test(base64, decode_rfc4648_vectors) {
  for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
    uint8_t out[16] = {0};
    long n = ws__base64_decode(rfc4648[i].enc, strlen(rfc4648[i].enc), out,
                               sizeof out);
    cr_expect_eq(n, (long)strlen(rfc4648[i].raw), "vector %zu", i);
    cr_expect(memcmp(out, rfc4648[i].raw, strlen(rfc4648[i].raw)) == 0);
  }
}

Test(base64, roundtrip_all_byte_values) {
  uint8_t raw[256], back[256];
  char enc[344];
  for (int i = 0; i < 256; i++) raw[i] = (uint8_t)i;
  for (size_t n = 0; n <= 256; n += 1) {
    size_t e = ws__base64_encode(raw, n, enc);
    cr_assert_eq(e, (n + 2) / 3 * 4);
    cr_assert_eq(ws__base64_decode(enc, e, back, sizeof back), (long)n);
    cr_assert(memcmp(raw, back, n) == 0);
  }
}

Test(base64, decode_rejects) {
  static const char *bad[] = {
      "Zg",        /* missing padding */
      "Zg=",       /* length not a multiple of 4 */
      "Z===",      /* too much padding */
      "====",      /* padding only */
      "Zg==Zg==",  /* padding in the middle */
      "Zm9v\n",    /* whitespace */
      "Zm 9",      /* whitespace inside */
      "Zm9vYg=a",  /* data after padding */
      "Zh==",      /* non-zero bits in the padding (canonical: Zg==) */
      "Zm9=",      /* non-zero bits in the padding (canonical: Zm8=) */
      "Zm9-",      /* base64url alphabet */
      "Zm9_",      /* base64url alphabet */
      "Zm9\x80",   /* high byte */
      "Zm9\0",     /* NUL */
  };
  uint8_t out[16];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = i == sizeof bad / sizeof bad[0] - 1 ? 4 : strlen(bad[i]);
    cr_expect_eq(ws__base64_decode(bad[i], n, out, sizeof out), -1,
                 "case %zu", i);
  }
}

Test(base64, decode_rejects_when_cap_too_small) {
  uint8_t out[6];
  cr_expect_eq(ws__base64_decode("Zm9vYmFy", 8, out, 5), -1);
  cr_expect_eq(ws__base64_decode("Zm9vYmFy", 8, out, 6), 6);
  cr_expect_eq(ws__base64_decode("Zm9vYg==", 8, out, 4), 4);
  cr_expect_eq(ws__base64_decode("Zm9vYg==", 8, out, 3), -1);
}

/* ---- the accept key (RFC 6455 section 1.3) ---------------------------- */

Test(accept_key, rfc6455_example) {
  char out[29];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  ws__accept_key(key, strlen(key), out);
  cr_expect_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
