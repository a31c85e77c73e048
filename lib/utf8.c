/*
 * Incremental UTF-8 validator (RFC 3629) for text frames, which may arrive
 * split at any byte. The state says which bytes may come next, so a bad
 * sequence is rejected at the first byte that rules it out (RFC 6455 8.1
 * lets an endpoint fail fast; Autobahn tests that it does).
 *
 * States:
 *   ACCEPT (0)   at a character boundary
 *   REJECT (1)   sticky failure
 *   S_TAIL1..3   need 1..3 more plain continuation bytes (80..BF)
 *   S_E0         after E0: next must be A0..BF (no overlong 3-byte form)
 *   S_ED         after ED: next must be 80..9F (no UTF-16 surrogates)
 *   S_F0         after F0: next must be 90..BF (no overlong 4-byte form)
 *   S_F4         after F4: next must be 80..8F (nothing past U+10FFFF)
 * The four special states each narrow only the first continuation byte;
 * after it they continue as a plain S_TAIL state.
 */
#include <string.h>

#include "proto.h"

enum {
  S_TAIL1 = 2,
  S_TAIL2,
  S_TAIL3,
  S_E0,
  S_ED,
  S_F0,
  S_F4,
  S_COUNT
};

/* For each in-sequence state: the allowed range of the next byte and the
 * state after it. Indexed by state; entries 0 and 1 are unused. */
static const uint8_t cont_lo[S_COUNT] = {0, 0, 0x80, 0x80, 0x80,
                                         0xA0, 0x80, 0x90, 0x80};
static const uint8_t cont_hi[S_COUNT] = {0, 0, 0xBF, 0xBF, 0xBF,
                                         0xBF, 0x9F, 0xBF, 0x8F};
static const uint8_t cont_next[S_COUNT] = {0,       0,       WS__UTF8_ACCEPT,
                                           S_TAIL1, S_TAIL2, S_TAIL1,
                                           S_TAIL1, S_TAIL2, S_TAIL2};

/* State after a lead byte seen at a character boundary. C0, C1 (overlong
 * 2-byte forms), F5..FF (past U+10FFFF) and 80..BF (stray continuation)
 * are rejected here, at their own position. */
static uint32_t lead_byte(uint8_t b) {
  if (b < 0x80) return WS__UTF8_ACCEPT;
  if (b < 0xC2) return WS__UTF8_REJECT;
  if (b < 0xE0) return S_TAIL1;
  if (b == 0xE0) return S_E0;
  if (b == 0xED) return S_ED;
  if (b < 0xF0) return S_TAIL2;
  if (b == 0xF0) return S_F0;
  if (b < 0xF4) return S_TAIL3;
  if (b == 0xF4) return S_F4;
  return WS__UTF8_REJECT;
}

static uint32_t step(uint32_t state, uint8_t b) {
  if (state == WS__UTF8_ACCEPT) return lead_byte(b);
  if (b < cont_lo[state] || b > cont_hi[state]) return WS__UTF8_REJECT;
  return cont_next[state];
}

/* 1 if the 8 bytes at p are all ASCII. memcpy, not a cast: p has no
 * alignment guarantee and compilers turn this into one load. */
static int ascii8(const uint8_t *p) {
  uint64_t w;
  memcpy(&w, p, sizeof w);
  return (w & UINT64_C(0x8080808080808080)) == 0;
}

uint32_t ws__utf8_validate(uint32_t state, const uint8_t *p, size_t n) {
  size_t i = 0;
  if (state >= S_COUNT) return WS__UTF8_REJECT; /* not a state we made */
  if (state == WS__UTF8_ACCEPT) { /* an ASCII run first, in a tight loop */
    while (n - i >= 8 && ascii8(p + i)) i += 8;
    while (i < n && p[i] < 0x80) i++;
  }
  while (i < n && state != WS__UTF8_REJECT) {
    /* Text is mostly ASCII: skip it a word at a time at boundaries. */
    if (state == WS__UTF8_ACCEPT && n - i >= 8 && ascii8(p + i)) {
      i += 8;
      continue;
    }
    state = step(state, p[i++]);
  }
  return state;
}
