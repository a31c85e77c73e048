/* utf8.c: valid and invalid tables (Markus Kuhn's stress-test cases among
 * them), fail-fast positions, every split, and exhaustive cross-checks
 * against a reference written the slow, obvious way. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto.h"

typedef struct seq {
  const char *bytes;
  size_t len; /* 0: strlen(bytes) */
} seq;

static size_t seq_len(const seq *s) {
  return s->len ? s->len : strlen(s->bytes);
}

static const seq valid[] = {
    {"", 0},
    {"hello, world", 0},
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0}, /* kosme */
    {"\x7f", 0},                                         /* U+007F */
    {"\xc2\x80", 0},                                     /* U+0080 */
    {"\xdf\xbf", 0},                                     /* U+07FF */
    {"\xe0\xa0\x80", 0},                                 /* U+0800 */
    {"\xed\x9f\xbf", 0},                                 /* U+D7FF */
    {"\xee\x80\x80", 0},                                 /* U+E000 */
    {"\xef\xbf\xbd", 0},                                 /* U+FFFD */
    {"\xef\xbf\xbe", 0},           /* U+FFFE: noncharacter, still valid */
    {"\xef\xbf\xbf", 0},           /* U+FFFF */
    {"\xf0\x90\x80\x80", 0},       /* U+10000 */
    {"\xf1\x80\x80\x80", 0},       /* U+40000 */
    {"\xf3\xbf\xbf\xbf", 0},       /* U+FFFFF */
    {"\xf4\x8f\xbf\xbf", 0},       /* U+10FFFF */
    {"\0\0\0\0\0\0\0\0\0", 9},     /* NUL is a valid character */
    {"0123456789abcdef\xf0\x9f\x98\x80tail-after-emoji", 0},
    {"1234567\xc3\xa9" "89abcdefgh", 0}, /* non-ASCII inside a word */
};

typedef struct bad {
  const char *bytes;
  size_t len;       /* 0: strlen(bytes) */
  size_t reject_at; /* bytes fed when REJECT first appears */
} bad;

static const bad invalid[] = {
    {"\x80", 0, 1},                      /* stray continuation */
    {"\xbf", 0, 1},
    {"a\x80", 0, 2},
    {"\xc0\x80", 0, 1},                  /* overlong NUL */
    {"\xc0\xaf", 0, 1},                  /* overlong '/' */
    {"\xc1\xbf", 0, 1},                  /* overlong U+007F */
    {"\xe0\x80\xaf", 0, 2},              /* overlong '/' */
    {"\xe0\x9f\xbf", 0, 2},              /* overlong U+07FF */
    {"\xf0\x80\x80\xaf", 0, 2},          /* overlong '/' */
    {"\xf0\x8f\xbf\xbf", 0, 2},          /* overlong U+FFFF */
    {"\xf8\x88\x80\x80\xaf", 0, 1},      /* 5-byte form */
    {"\xfc\x84\x80\x80\x80\xaf", 0, 1},  /* 6-byte form */
    {"\xed\xa0\x80", 0, 2},              /* U+D800 */
    {"\xed\xad\xbf", 0, 2},              /* U+DB7F */
    {"\xed\xbf\xbf", 0, 2},              /* U+DFFF */
    {"\xed\xa0\x80\xed\xb0\x80", 0, 2},  /* surrogate pair */
    {"\xf4\x90\x80\x80", 0, 2},          /* U+110000 */
    {"\xf4\xbf\xbf\xbf", 0, 2},
    {"\xf5\x80\x80\x80", 0, 1},
    {"\xf7\xbf\xbf\xbf", 0, 1},
    {"\xfe", 0, 1},
    {"\xff", 0, 1},
    {"\xc2\x41", 0, 2},                  /* sequence cut by ASCII */
    {"\xe1\x80\x41", 0, 3},
    {"\xf1\x80\x80\x41", 0, 4},
    {"\xf1\x80\x80\xc0", 0, 4},
    {"\xc2\xc2\x80", 0, 2},              /* new lead inside a sequence */
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 0, 13},
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80", 0, 13},
    {"0123456789abcdef\xc3\x28", 0, 18}, /* after the word fast path */
    {"01234567\xff", 0, 9},
    {"0123456\xff" "89abcdef", 0, 8},    /* bad byte inside a word */
    {"\0\0\0\0\0\0\0\0\x80", 9, 9},
};

static size_t bad_len(const bad *b) {
  return b->len ? b->len : strlen(b->bytes);
}

static uint32_t validate_str(uint32_t st, const char *s, size_t n) {
  return ws__utf8_validate(st, (const uint8_t *)s, n);
}

Test(utf8, valid_sequences_whole) {
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
    cr_expect_eq(validate_str(WS__UTF8_ACCEPT, valid[i].bytes,
                              seq_len(&valid[i])),
                 WS__UTF8_ACCEPT, "valid[%zu]", i);
}

Test(utf8, valid_sequences_split_at_every_position) {
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    size_t n = seq_len(&valid[i]);
    for (size_t cut = 0; cut <= n; cut++) {
      uint32_t st = validate_str(WS__UTF8_ACCEPT, valid[i].bytes, cut);
      cr_assert_neq(st, WS__UTF8_REJECT, "valid[%zu] cut %zu", i, cut);
      st = validate_str(st, valid[i].bytes + cut, n - cut);
      cr_assert_eq(st, WS__UTF8_ACCEPT, "valid[%zu] cut %zu", i, cut);
    }
  }
}

Test(utf8, valid_sequences_one_byte_at_a_time) {
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    uint32_t st = WS__UTF8_ACCEPT;
    for (size_t k = 0; k < seq_len(&valid[i]); k++) {
      st = validate_str(st, valid[i].bytes + k, 1);
      cr_assert_neq(st, WS__UTF8_REJECT, "valid[%zu] byte %zu", i, k);
    }
    cr_assert_eq(st, WS__UTF8_ACCEPT, "valid[%zu]", i);
  }
}

/* Fail fast: every prefix shorter than reject_at is still possible; every
 * prefix from reject_at on is rejected. */
Test(utf8, invalid_rejected_at_exact_prefix) {
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    const bad *b = &invalid[i];
    for (size_t k = 0; k <= bad_len(b); k++) {
      uint32_t st = validate_str(WS__UTF8_ACCEPT, b->bytes, k);
      if (k < b->reject_at)
        cr_assert_neq(st, WS__UTF8_REJECT, "invalid[%zu] prefix %zu", i, k);
      else
        cr_assert_eq(st, WS__UTF8_REJECT, "invalid[%zu] prefix %zu", i, k);
    }
  }
}

Test(utf8, invalid_split_at_every_position) {
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    const bad *b = &invalid[i];
    size_t n = bad_len(b);
    for (size_t cut = 0; cut <= n; cut++) {
      uint32_t st = validate_str(WS__UTF8_ACCEPT, b->bytes, cut);
      cr_assert_eq(st == WS__UTF8_REJECT, cut >= b->reject_at,
                   "invalid[%zu] cut %zu", i, cut);
      st = validate_str(st, b->bytes + cut, n - cut);
      cr_assert_eq(st, WS__UTF8_REJECT, "invalid[%zu] cut %zu", i, cut);
    }
  }
}

Test(utf8, invalid_one_byte_at_a_time_rejects_at_the_bad_byte) {
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    const bad *b = &invalid[i];
    uint32_t st = WS__UTF8_ACCEPT;
    for (size_t k = 0; k < bad_len(b); k++) {
      st = validate_str(st, b->bytes + k, 1);
      cr_assert_eq(st == WS__UTF8_REJECT, k + 1 >= b->reject_at,
                   "invalid[%zu] byte %zu", i, k);
    }
  }
}

Test(utf8, truncated_sequences_end_inside_a_sequence) {
  static const char *cut[] = {"\xc2", "\xe0\xa0", "\xed\x9f", "\xf0\x90\x80",
                              "\xf4\x8f\xbf", "abc\xe2\x82"};
  for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
    uint32_t st = validate_str(WS__UTF8_ACCEPT, cut[i], strlen(cut[i]));
    cr_expect(st != WS__UTF8_ACCEPT && st != WS__UTF8_REJECT, "cut[%zu]", i);
  }
}

Test(utf8, reject_is_sticky_and_unknown_states_reject) {
  cr_expect_eq(validate_str(WS__UTF8_REJECT, "a", 1), WS__UTF8_REJECT);
  cr_expect_eq(validate_str(WS__UTF8_REJECT, "", 0), WS__UTF8_REJECT);
  cr_expect_eq(validate_str(0xFFFFu, "a", 1), WS__UTF8_REJECT);
}

/* The word-at-a-time path at every alignment: one bad byte at every
 * position of a long ASCII run, starting at every offset of the buffer. */
Test(utf8, ascii_fast_path_every_alignment_and_position) {
  char buf[80];
  for (size_t off = 0; off < 8; off++)
    for (size_t bad_pos = 0; bad_pos < 64; bad_pos++) {
      memset(buf, 'x', sizeof buf);
      buf[off + bad_pos] = (char)0x80;
      for (size_t k = 0; k <= 64; k++) {
        uint32_t st = validate_str(WS__UTF8_ACCEPT, buf + off, k);
        cr_assert_eq(st == WS__UTF8_REJECT, k > bad_pos,
                     "off %zu bad %zu prefix %zu", off, bad_pos, k);
      }
    }
}

/* ---- exhaustive cross-checks ------------------------------------------ */

static size_t encode(uint32_t cp, uint8_t out[4]) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xC0 | cp >> 6);
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | cp >> 18);
  out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

/* Every scalar value, split at every position, ends in ACCEPT without
 * passing through REJECT; every surrogate is rejected. */
Test(utf8, every_code_point_split_at_every_position) {
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    uint8_t b[4];
    size_t n = encode(cp, b);
    int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    for (size_t cut = 0; cut <= n; cut++) {
      uint32_t st = ws__utf8_validate(WS__UTF8_ACCEPT, b, cut);
      if (!surrogate) cr_assert_neq(st, WS__UTF8_REJECT, "U+%04X", cp);
      st = ws__utf8_validate(st, b + cut, n - cut);
      cr_assert_eq(st, surrogate ? WS__UTF8_REJECT : WS__UTF8_ACCEPT,
                   "U+%04X cut %zu", cp, cut);
    }
  }
}

/* Reference: decode the way RFC 3629 defines it, then check the range. */
static int reference_valid(const uint8_t *b, size_t n) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t need;
  uint32_t cp;
  if (b[0] < 0x80) need = 1, cp = b[0];
  else if ((b[0] & 0xE0) == 0xC0) need = 2, cp = b[0] & 0x1Fu;
  else if ((b[0] & 0xF0) == 0xE0) need = 3, cp = b[0] & 0x0Fu;
  else if ((b[0] & 0xF8) == 0xF0) need = 4, cp = b[0] & 0x07u;
  else return 0;
  if (need != n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((b[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (b[i] & 0x3Fu);
  }
  return cp >= min_cp[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
}

Test(utf8, all_two_and_three_byte_inputs_match_reference) {
  uint8_t b[3];
  for (unsigned x = 0; x < 256; x++)
    for (unsigned y = 0; y < 256; y++) {
      b[0] = (uint8_t)x;
      b[1] = (uint8_t)y;
      if (x >= 0xC0 && x < 0xE0) /* only leads that need 2 bytes */
        cr_assert_eq(ws__utf8_validate(0, b, 2) == WS__UTF8_ACCEPT,
                     reference_valid(b, 2), "%02X %02X", x, y);
      if (x < 0xE0 || x >= 0xF0) continue;
      for (unsigned z = 0; z < 256; z++) {
        b[2] = (uint8_t)z;
        cr_assert_eq(ws__utf8_validate(0, b, 3) == WS__UTF8_ACCEPT,
                     reference_valid(b, 3), "%02X %02X %02X", x, y, z);
      }
    }
}

Test(utf8, four_byte_inputs_match_reference) {
  static const uint8_t tails[] = {0x00, 0x7F, 0x80, 0x8F, 0x90,
                                  0xBF, 0xC0, 0xFF};
  uint8_t b[4];
  for (unsigned x = 0xF0; x < 0x100; x++)
    for (unsigned y = 0; y < 256; y++)
      for (size_t i = 0; i < sizeof tails; i++)
        for (size_t j = 0; j < sizeof tails; j++) {
          b[0] = (uint8_t)x;
          b[1] = (uint8_t)y;
          b[2] = tails[i];
          b[3] = tails[j];
          cr_assert_eq(ws__utf8_validate(0, b, 4) == WS__UTF8_ACCEPT,
                       reference_valid(b, 4), "%02X %02X %02X %02X", x, y,
                       b[2], b[3]);
        }
}

/* ---- mutation-testing round ------------------------------------------- */

/* The first number past the last state the validator makes (9: S_F4 is
 * 8) is not a state either: REJECT, also with no bytes to read. */
Test(utf8, the_first_state_past_the_last_rejects) {
  uint32_t st;
  for (st = 9; st < 12; st++) {
    cr_expect_eq(validate_str(st, "", 0), WS__UTF8_REJECT, "state %u", st);
    cr_expect_eq(validate_str(st, "\x80", 1), WS__UTF8_REJECT, "state %u", st);
  }
  cr_expect_eq(validate_str(UINT32_MAX, "", 0), WS__UTF8_REJECT);
}

/* Inside a sequence the ASCII word skip must not run: a lead byte then
 * eight or more ASCII bytes fails at the first of them, and a
 * continuation byte after them must not complete the sequence. */
Test(utf8, ascii_run_inside_a_sequence_rejects) {
  static const char *runs[] = {"\xc3" "abcdefgh", "\xc3" "abcdefgh\x80",
                               "\xe2\x82" "abcdefghijklmnop\xac",
                               "\xf0\x90" "12345678\x80\x80"};
  size_t i;
  for (i = 0; i < sizeof runs / sizeof runs[0]; i++)
    cr_expect_eq(validate_str(WS__UTF8_ACCEPT, runs[i], strlen(runs[i])),
                 WS__UTF8_REJECT, "runs[%zu]", i);
  /* Split after the lead byte: the same. */
  cr_expect_eq(validate_str(validate_str(WS__UTF8_ACCEPT, "\xc3", 1),
                            "abcdefgh\x80", 9),
               WS__UTF8_REJECT);
}
