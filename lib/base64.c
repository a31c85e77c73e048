/*
 * Base64 (RFC 4648 section 4, standard alphabet, padded). Decoding is
 * strict because its one use is checking Sec-WebSocket-Key: no whitespace,
 * no missing padding, no characters outside the alphabet, and the unused
 * bits before the padding must be zero (RFC 4648 3.5), so each byte string
 * has exactly one accepted encoding.
 */
#include <limits.h>

#include "proto.h"

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ws__base64_encode(const uint8_t *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = b64_alphabet[(v >> 18) & 63];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    /* NOLINTBEGIN(bugprone-narrowing-conversions): '=' is an int in C,
     * which makes each choice one; an ASCII char either way. */
    out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    /* NOLINTEND(bugprone-narrowing-conversions) */
  }
  return o;
}

/* Value of one alphabet character, or -1. Written as ranges rather than a
 * 256-entry table: the input is a 24-byte key, speed is irrelevant. */
static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Number of '=' at the end of a length-n (n % 4 == 0, n > 0) input. Any
 * '=' before those is rejected later as a non-alphabet character. */
static size_t b64_padding(const char *in, size_t n) {
  if (in[n - 1] != '=') return 0;
  return in[n - 2] == '=' ? 2 : 1;
}

long ws__base64_decode(const char *in, size_t n, uint8_t *out, size_t cap) {
  if (n % 4 != 0) return -1;
  if (n == 0) return 0;
  size_t pad = b64_padding(in, n);
  size_t outlen = n / 4 * 3 - pad;
  if (outlen > cap || outlen > (size_t)LONG_MAX) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int last = i + 4 == n;
    size_t chars = last ? 4 - pad : 4;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; j++) {
      int d = j < chars ? b64_value((unsigned char)in[i + j]) : 0;
      if (d < 0) return -1;
      v = (v << 6) | (uint32_t)d;
    }
    /* Canonical form: bits that fall into the padding must be zero. */
    if (last && ((pad == 1 && (v & 0xFFu)) || (pad == 2 && (v & 0xFFFFu))))
      return -1;
    out[o++] = (uint8_t)(v >> 16);
    if (chars > 2) out[o++] = (uint8_t)(v >> 8);
    if (chars > 3) out[o++] = (uint8_t)v;
  }
  return (long)o;
}
