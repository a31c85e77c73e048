/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed hash for the tables
 * whose keys a peer chooses: device ids, user and group names. With an
 * unkeyed hash a client can pick ids that all land in one probe run or
 * chain (hash flooding), and every insert and lookup then walks it. The
 * key is the server's own and secret (ws__hash_key_init), so such ids
 * cannot be computed from outside.
 */
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h> /* getauxval(AT_RANDOM): random bytes, no syscall */
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#include <stdlib.h> /* arc4random_buf: never fails, never blocks */
#define WS__ARC4RANDOM 1
#endif

#include "proto.h"

static uint64_t rotl64(uint64_t x, unsigned b) {
  return (x << b) | (x >> (64u - b));
}

/* Little-endian 64-bit load. On a little-endian machine this is one load
 * (memcpy: no alignment assumed); elsewhere the bytes are assembled. */
static uint64_t load_le64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
#else
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
#endif
}

/* The last 0-7 bytes as a little-endian word. */
static uint64_t load_tail(const uint8_t *p, size_t n) {
  uint8_t b[8] = {0};
  memcpy(b, p, n);
  return load_le64(b);
}

#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1, v1 = rotl64(v1, 13), v1 ^= v0, v0 = rotl64(v0, 32);              \
    v2 += v3, v3 = rotl64(v3, 16), v3 ^= v2;                                   \
    v0 += v3, v3 = rotl64(v3, 21), v3 ^= v0;                                   \
    v2 += v1, v1 = rotl64(v1, 17), v1 ^= v2, v2 = rotl64(v2, 32);              \
  } while (0)

uint64_t ws__siphash(const uint8_t key[16], const void *data, size_t len) {
  const uint8_t *p = data, *end = p + (len & ~(size_t)7);
  uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
  uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
  uint64_t m, last = (uint64_t)len << 56 | load_tail(end, len & 7);
  for (; p != end; p += 8) {
    m = load_le64(p);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  v3 ^= last;
  SIPROUND;
  SIPROUND;
  v0 ^= last;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* Random bytes: on Linux the kernel's 16 for this process (AT_RANDOM, which
 * libc also seeds its stack guard from: hence the one-way SHA-1 in
 * between), on the BSDs and macOS arc4random_buf; and the salt's address,
 * which tells servers apart (and is all there is on other systems: random
 * only under ASLR). */
void ws__hash_key_init(uint8_t key[16], const void *salt) {
  static const char label[] = "libwsmux table key";
  uintptr_t where[2];
  uint8_t digest[20];
  ws__sha1 ctx;
  where[0] = (uintptr_t)salt;
  where[1] = (uintptr_t)label;
  ws__sha1_init(&ctx);
  ws__sha1_update(&ctx, label, sizeof label - 1);
#if defined(__linux__) && defined(AT_RANDOM)
  {
    const void *r = (const void *)getauxval(AT_RANDOM);
    if (r) ws__sha1_update(&ctx, r, 16);
  }
#elif defined(WS__ARC4RANDOM)
  {
    uint8_t r[16];
    arc4random_buf(r, sizeof r);
    ws__sha1_update(&ctx, r, sizeof r);
  }
#endif
  ws__sha1_update(&ctx, where, sizeof where);
  ws__sha1_final(&ctx, digest);
  memcpy(key, digest, 16);
}
