/* frame.c: the receive path. Every rule RFC 6455 puts on client frames
 * (masking, RSV, opcodes, control frames, continuation order, size, UTF-8,
 * close codes and reasons) is checked with byte scripts fed whole and one
 * byte at a time; each test fails if its rule is not enforced. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

/* ---- fixture ------------------------------------------------------------ */

static struct {
  int msgs;
  char last[4096];
  size_t last_len;
  int last_binary;
  int on_close_calls;
  int on_close_code;
  char reason[128];
  int tcloses_at_on_close; /* transport closes seen when on_close ran */
} R;

static mt_conn T;

/* Records every message; replies {"action":"echo","data":...} to "echo". */
static int rec_handler(ws_conn *c, const ws_msg *m, void *ud) {
  size_t n = m->len < sizeof(R.last) ? m->len : sizeof(R.last);
  (void)ud;
  R.msgs++;
  memcpy(R.last, m->text, n);
  R.last_len = n;
  R.last_binary = m->binary;
  if (m->action && strcmp(m->action, "echo") == 0) {
    size_t dl;
    const char *d = ws_msg_data_json(m, &dl);
    return ws_conn_send_json(c, "echo", d ? d : "null", d ? dl : 4);
  }
  return 0;
}

static int rec_on_close(ws_conn *c, int code, const char *reason, void *ud) {
  mt_conn *t = ws_conn_transport(c);
  (void)ud;
  R.on_close_calls++;
  R.on_close_code = code;
  snprintf(R.reason, sizeof(R.reason), "%s", reason);
  R.tcloses_at_on_close = t->closes;
  return 0;
}

static ws_server *server_new(size_t max_message) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.handler = rec_handler;
  cfg.on_close = rec_on_close;
  if (max_message) cfg.max_message = max_message;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
}

/* A fresh server with one open connection in T. */
static ws_server *setup(int mode, size_t max_message) {
  ws_server *s;
  memset(&R, 0, sizeof(R));
  s = server_new(max_message);
  mt_connect(&T, s, "dev1", mode);
  return s;
}

static void teardown(ws_server *s) {
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  mt_free(&T);
}

/* Feeds script to a fresh connection and expects the server to fail it
 * with code: a close frame with that code is the last output, the
 * transport is closed after it was written, no message reached the
 * handler, on_close got the code. */
static void expect_failure(const mt_bytes *script, int code, const char *what) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1000);
    mt_feed(&T, script->p, script->len, mode);
    cr_assert_eq(T.closes, 1, "%s (%s): transport not closed", what,
                 MT_MODE_NAME(mode));
    cr_assert_null(T.c);
    mt_expect_close(&T, code);
    mt_expect_nothing(&T);
    cr_assert_eq(T.len_at_close, T.len, "%s: close callback before the "
                 "close frame was written", what);
    cr_assert_eq(R.msgs, 0, "%s (%s): a message was delivered", what,
                 MT_MODE_NAME(mode));
    cr_assert_eq(R.on_close_calls, 1);
    cr_assert_eq(R.on_close_code, code, "%s: on_close code", what);
    teardown(s);
  }
}

static const char k_msg[] = "{\"action\":\"note\",\"data\":1}";

/* ---- framing rules ------------------------------------------------------ */

Test(frame, unmasked_client_frame_is_1002) {
  mt_bytes b = {.p = NULL};
  mt_frame_str(&b, MT_TEXT, MT_UNMASKED, k_msg);
  expect_failure(&b, 1002, "unmasked text");
  mt_bytes_free(&b);
  /* An unmasked control frame too. */
  mt_frame_str(&b, MT_PING, MT_UNMASKED, "x");
  expect_failure(&b, 1002, "unmasked ping");
  mt_bytes_free(&b);
}

Test(frame, masked_frame_is_accepted) {
  /* The counterpart of the failures above: the same message, masked. */
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 0);
    cr_assert_eq(mt_send_text(&T, k_msg, mode), WS_OK);
    cr_assert_eq(R.msgs, 1);
    cr_assert_eq(R.last_len, strlen(k_msg));
    cr_assert_eq(memcmp(R.last, k_msg, R.last_len), 0);
    cr_assert_eq(T.closes, 0);
    mt_expect_nothing(&T);
    teardown(s);
  }
}

Test(frame, rsv_bits_are_1002) {
  static const unsigned rsv[] = {MT_RSV1, MT_RSV2, MT_RSV3,
                                 MT_RSV1 | MT_RSV3};
  size_t i;
  for (i = 0; i < sizeof(rsv) / sizeof(rsv[0]); i++) {
    mt_bytes b = {.p = NULL};
    char what[32];
    snprintf(what, sizeof(what), "rsv flags %#x", rsv[i]);
    mt_frame_str(&b, MT_TEXT, rsv[i], k_msg);
    expect_failure(&b, 1002, what);
    mt_bytes_free(&b);
  }
}

Test(frame, reserved_opcodes_are_1002) {
  static const int ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
  size_t i;
  for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
    mt_bytes b = {.p = NULL};
    char what[32];
    snprintf(what, sizeof(what), "opcode %#x", ops[i]);
    mt_frame_str(&b, ops[i], 0, "x");
    expect_failure(&b, 1002, what);
    mt_bytes_free(&b);
  }
}

Test(frame, control_frame_over_125_bytes_is_1002) {
  char big[126];
  mt_bytes b = {.p = NULL};
  memset(big, 'p', sizeof(big));
  mt_frame_add(&b, MT_PING, 0, big, sizeof(big));
  expect_failure(&b, 1002, "126-byte ping");
  mt_bytes_free(&b);
  mt_frame_add(&b, MT_PONG, 0, big, sizeof(big));
  expect_failure(&b, 1002, "126-byte pong");
  mt_bytes_free(&b);
}

Test(frame, fragmented_control_frame_is_1002) {
  mt_bytes b = {.p = NULL};
  mt_frame_str(&b, MT_PING, MT_NOFIN, "ab");
  mt_frame_str(&b, MT_CONT, 0, "cd");
  expect_failure(&b, 1002, "fragmented ping");
  mt_bytes_free(&b);
}

Test(frame, continuation_without_start_is_1002) {
  mt_bytes b = {.p = NULL};
  mt_frame_str(&b, MT_CONT, 0, k_msg);
  expect_failure(&b, 1002, "lone continuation");
  mt_bytes_free(&b);
  /* Also after a complete message: its continuation state is over. */
  mt_frame_str(&b, MT_TEXT, MT_NOFIN, "{\"action\":");
  mt_frame_str(&b, MT_CONT, 0, "\"note\"}");
  mt_frame_str(&b, MT_CONT, 0, "x");
  {
    int mode;
    for (mode = 0; mode < MT_MODES; mode++) {
      ws_server *s = setup(mode, 1000);
      mt_feed(&T, b.p, b.len, mode);
      cr_assert_eq(R.msgs, 1, "the complete message is delivered");
      cr_assert_eq(T.closes, 1);
      mt_expect_close(&T, 1002);
      teardown(s);
    }
  }
  mt_bytes_free(&b);
}

Test(frame, new_data_frame_inside_fragmented_message_is_1002) {
  mt_bytes b = {.p = NULL};
  mt_frame_str(&b, MT_TEXT, MT_NOFIN, "{\"action\":");
  mt_frame_str(&b, MT_TEXT, 0, k_msg);
  expect_failure(&b, 1002, "text inside text");
  mt_bytes_free(&b);
  mt_frame_str(&b, MT_BINARY, MT_NOFIN, "ab");
  mt_frame_str(&b, MT_BINARY, 0, "cd");
  expect_failure(&b, 1002, "binary inside binary");
  mt_bytes_free(&b);
}

/* ---- message size -------------------------------------------------------- */

Test(frame, single_frame_over_max_message_is_1009) {
  char p[1001];
  mt_bytes b = {.p = NULL};
  memset(p, 'a', sizeof(p));
  mt_frame_add(&b, MT_BINARY, 0, p, sizeof(p));
  expect_failure(&b, 1009, "1001-byte binary, max 1000");
  mt_bytes_free(&b);
}

Test(frame, message_of_exactly_max_message_is_delivered) {
  char p[1000];
  int mode;
  memset(p, 'a', sizeof(p));
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s = setup(mode, 1000);
    cr_assert_eq(mt_send_frame(&T, MT_BINARY, 0, p, sizeof(p), mode), WS_OK);
    cr_assert_eq(R.msgs, 1);
    cr_assert_eq(R.last_len, 1000);
    cr_assert(R.last_binary);
    teardown(s);
  }
}

Test(frame, fragmented_message_over_max_message_is_1009) {
  char p[600];
  mt_bytes b = {.p = NULL};
  memset(p, 'a', sizeof(p));
  mt_frame_add(&b, MT_BINARY, MT_NOFIN, p, sizeof(p));
  mt_frame_add(&b, MT_CONT, 0, p, sizeof(p));
  expect_failure(&b, 1009, "600+600 bytes, max 1000");
  mt_bytes_free(&b);
}

/* A continuation announcing 2^32 + 10 bytes after 600: 610 were its length
 * cut to a 32-bit size_t, under max_message. */
Test(frame, continuation_of_2_pow_32_plus_10_bytes_is_1009) {
  char p[600];
  mt_bytes b = {.p = NULL};
  memset(p, 'a', sizeof(p));
  mt_frame_add(&b, MT_BINARY, MT_NOFIN, p, sizeof(p));
  mt_frame_header(&b, MT_CONT, 0, (1ull << 32) + 10);
  mt_bytes_str(&b, "0123456789");
  expect_failure(&b, 1009, "600 + 2^32+10 bytes, max 1000");
  mt_bytes_free(&b);
}

Test(frame, huge_announced_length_is_1009_without_allocating_it) {
  /* 2^32 + 10: 10 in a 32-bit size_t, under max_message. */
  static const uint64_t lens[] = {1001, 1u << 20, (1ull << 32) + 10,
                                  1ull << 40, 0x7fffffffffffffffull};
  size_t i;
  int mode;
  for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      mt_bytes b = {.p = NULL};
      ws_server *s = setup(mode, 1000);
      long before = test_alloc_live_bytes();
      mt_frame_header(&b, MT_BINARY, 0, lens[i]);
      mt_bytes_str(&b, "0123456789");
      test_alloc_reset(0);
      mt_feed(&T, b.p, b.len, mode);
      cr_assert_lt(test_alloc_peak_bytes() - before, 8 * 1024,
                   "len %llu (%s): peak grew by %ld bytes",
                   (unsigned long long)lens[i], MT_MODE_NAME(mode),
                   test_alloc_peak_bytes() - before);
      cr_assert_eq(T.closes, 1, "len %llu (%s): not closed",
                   (unsigned long long)lens[i], MT_MODE_NAME(mode));
      mt_expect_close(&T, 1009);
      cr_assert_eq(R.msgs, 0);
      teardown(s);
      mt_bytes_free(&b);
    }
  }
}

/* A fragmented message of exactly max_message bytes is assembled in a
 * buffer of at most max_message bytes: the buffer doubles as bytes arrive
 * but is capped there (README: max_message bounds the assembled message),
 * where doubling 999 bytes for the last one would take 1998. */
Test(frame, assembled_message_buffer_stays_within_max_message) {
  static const char head[] = "{\"action\":\"note\",\"data\":\"";
  char msg[1001];
  int mode;
  memcpy(msg, head, sizeof(head) - 1);
  memset(msg + sizeof(head) - 1, 'a', 1000 - (sizeof(head) - 1) - 2);
  memcpy(msg + 998, "\"}", 3); /* 1000 bytes and a NUL */
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 1000);
    long before;
    /* A first message, so that the receive context is in the pool and the
     * only allocation left is the message buffer. */
    cr_assert_eq(mt_send_text(&T, k_msg, mode), WS_OK);
    before = test_alloc_live_bytes();
    mt_frame_add(&b, MT_TEXT, MT_NOFIN, msg, 999);
    mt_frame_add(&b, MT_CONT, 0, msg + 999, 1);
    test_alloc_reset(0);
    cr_assert_eq(mt_feed(&T, b.p, b.len, mode), WS_OK);
    cr_assert_eq(R.msgs, 2, "%s: message not delivered", MT_MODE_NAME(mode));
    cr_assert_eq(R.last_len, 1000);
    cr_assert(memcmp(R.last, msg, 1000) == 0);
    cr_assert_leq(test_alloc_peak_bytes() - before, 1000,
                  "%s: peak grew by %ld bytes for a 1000-byte message",
                  MT_MODE_NAME(mode), test_alloc_peak_bytes() - before);
    teardown(s);
    mt_bytes_free(&b);
  }
}

Test(frame, huge_announced_length_in_fragment_peak_memory_is_small) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 1000);
    long before = test_alloc_live_bytes();
    mt_frame_header(&b, MT_TEXT, MT_NOFIN, 1ull << 40);
    mt_bytes_str(&b, "{\"action\":");
    test_alloc_reset(0);
    mt_feed(&T, b.p, b.len, mode);
    cr_assert_lt(test_alloc_peak_bytes() - before, 8 * 1024,
                 "%s: peak grew by %ld bytes for a 2^40-byte header",
                 MT_MODE_NAME(mode), test_alloc_peak_bytes() - before);
    cr_assert_eq(T.closes, 1);
    mt_expect_close(&T, 1009);
    teardown(s);
    mt_bytes_free(&b);
  }
}

/* ---- fragmentation and control frames ------------------------------------ */

Test(frame, fragmented_message_is_reassembled_and_delivered_once) {
  static const char *parts[] = {"{\"act", "ion\":\"no", "", "te\",\"data\"",
                                ":[1,2,3]}"};
  const char want[] = "{\"action\":\"note\",\"data\":[1,2,3]}";
  int mode;
  size_t i, n = sizeof(parts) / sizeof(parts[0]);
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 0);
    for (i = 0; i < n; i++)
      mt_frame_str(&b, i == 0 ? MT_TEXT : MT_CONT, i + 1 < n ? MT_NOFIN : 0,
                   parts[i]);
    cr_assert_eq(mt_feed(&T, b.p, b.len, mode), WS_OK);
    cr_assert_eq(R.msgs, 1, "%s: delivered %d times", MT_MODE_NAME(mode),
                 R.msgs);
    cr_assert_eq(R.last_len, strlen(want));
    cr_assert_eq(memcmp(R.last, want, R.last_len), 0);
    /* A second fragmented message reuses nothing stale. */
    cr_assert_eq(mt_feed(&T, b.p, b.len, mode), WS_OK);
    cr_assert_eq(R.msgs, 2);
    cr_assert_eq(memcmp(R.last, want, R.last_len), 0);
    cr_assert_eq(T.closes, 0);
    teardown(s);
    mt_bytes_free(&b);
  }
}

Test(frame, ping_is_answered_with_same_payload) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_frame f;
    ws_server *s = setup(mode, 0);
    cr_assert_eq(mt_send_frame(&T, MT_PING, 0, "hello\0ping", 10, mode), WS_OK);
    mt_expect_frame(&T, &f);
    cr_assert_eq(f.opcode, MT_PONG);
    cr_assert(f.fin);
    cr_assert_eq(f.len, 10);
    cr_assert_eq(memcmp(f.payload, "hello\0ping", 10), 0);
    /* An empty ping gets an empty pong. */
    cr_assert_eq(mt_send_frame(&T, MT_PING, 0, "", 0, mode), WS_OK);
    mt_expect_frame(&T, &f);
    cr_assert_eq(f.opcode, MT_PONG);
    cr_assert_eq(f.len, 0);
    /* A pong is not answered. */
    cr_assert_eq(mt_send_frame(&T, MT_PONG, 0, "x", 1, mode), WS_OK);
    mt_expect_nothing(&T);
    cr_assert_eq(R.msgs, 0);
    teardown(s);
  }
}

Test(frame, ping_between_fragments_is_answered_first) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    mt_frame f;
    ws_server *s = setup(mode, 0);
    mt_frame_str(&b, MT_TEXT, MT_NOFIN, "{\"action\":\"ec");
    mt_frame_str(&b, MT_PING, 0, "between");
    mt_frame_str(&b, MT_CONT, 0, "ho\",\"data\":42}");
    cr_assert_eq(mt_feed(&T, b.p, b.len, mode), WS_OK);
    mt_expect_frame(&T, &f);
    cr_assert_eq(f.opcode, MT_PONG, "%s", MT_MODE_NAME(mode));
    cr_assert(mt_payload_is(&f, "between"));
    mt_expect_text(&T, "{\"action\":\"echo\",\"data\":42}");
    cr_assert_eq(R.msgs, 1);
    teardown(s);
    mt_bytes_free(&b);
  }
}

/* ---- UTF-8 ---------------------------------------------------------------- */

Test(frame, invalid_utf8_fails_fast_before_the_final_fragment) {
  /* The header and the payload up to the invalid byte: the rest of the
   * fragment and the final fragment are never sent. */
  static const char *bad[] = {"ab\xff", "ab\xc0", "\xed\xa0", "\xf4\x90",
                              "ab\x80"};
  size_t i;
  int mode;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      mt_bytes b = {.p = NULL};
      char payload[100];
      ws_server *s = setup(mode, 0);
      memset(payload, 'x', sizeof(payload));
      memcpy(payload, bad[i], strlen(bad[i]));
      mt_frame_add(&b, MT_TEXT, MT_NOFIN, payload, sizeof(payload));
      /* 6 header bytes (2 + mask key), then the payload's bad prefix. */
      mt_feed(&T, b.p, 6 + strlen(bad[i]), mode);
      cr_assert_eq(T.closes, 1, "case %zu (%s): not closed before the end "
                   "of the fragment", i, MT_MODE_NAME(mode));
      mt_expect_close(&T, 1007);
      cr_assert_eq(R.msgs, 0);
      teardown(s);
      mt_bytes_free(&b);
    }
  }
}

Test(frame, invalid_utf8_in_first_fragment_closes_before_final_fragment) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 0);
    mt_frame_str(&b, MT_TEXT, MT_NOFIN, "{\"action\":\"x\xfe");
    mt_feed(&T, b.p, b.len, mode);
    cr_assert_eq(T.closes, 1);
    mt_expect_close(&T, 1007);
    cr_assert_eq(R.on_close_code, 1007);
    cr_assert_eq(R.msgs, 0);
    teardown(s);
    mt_bytes_free(&b);
  }
}

Test(frame, truncated_utf8_at_message_end_is_1007) {
  mt_bytes b = {.p = NULL};
  mt_frame_str(&b, MT_TEXT, MT_NOFIN, "{\"action\":\"x\",\"data\":\"");
  mt_frame_str(&b, MT_CONT, 0, "\"}\xe2\x82");
  expect_failure(&b, 1007, "text ending inside a sequence");
  mt_bytes_free(&b);
}

Test(frame, multibyte_split_across_fragments_and_feeds_is_accepted) {
  /* U+20AC (3 bytes) split between fragments, U+1D11E (4 bytes) split
   * between feeds inside one frame. */
  const char want[] = "{\"action\":\"note\",\"data\":\"\xe2\x82\xac \xf0\x9d\x84\x9e\"}";
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 0);
    size_t cut;
    mt_frame_str(&b, MT_TEXT, MT_NOFIN, "{\"action\":\"note\",\"data\":\"\xe2\x82");
    mt_frame_str(&b, MT_CONT, 0, "\xac \xf0\x9d\x84\x9e\"}");
    /* Split the feed between 0x9d and 0x84 (7 payload bytes from the end
     * of the script: 84 9e " } are the last 4). */
    cut = b.len - 4;
    cr_assert_eq(mt_feed(&T, b.p, cut, mode), WS_OK);
    cr_assert_eq(R.msgs, 0);
    cr_assert_eq(mt_feed(&T, b.p + cut, b.len - cut, mode), WS_OK);
    cr_assert_eq(R.msgs, 1, "%s", MT_MODE_NAME(mode));
    cr_assert_eq(R.last_len, strlen(want));
    cr_assert_eq(memcmp(R.last, want, R.last_len), 0);
    cr_assert_eq(T.closes, 0);
    teardown(s);
    mt_bytes_free(&b);
  }
}

/* ---- close frames ---------------------------------------------------------- */

Test(frame, close_with_one_byte_payload_is_1002) {
  mt_bytes b = {.p = NULL};
  mt_frame_add(&b, MT_CLOSE, 0, "\x03", 1);
  expect_failure(&b, 1002, "1-byte close");
  mt_bytes_free(&b);
}

Test(frame, invalid_close_codes_are_1002) {
  static const int codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999,
                              5000, 65535};
  size_t i;
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    mt_bytes b = {.p = NULL};
    char what[32];
    snprintf(what, sizeof(what), "close code %d", codes[i]);
    mt_close_add(&b, codes[i], NULL);
    expect_failure(&b, 1002, what);
    mt_bytes_free(&b);
  }
}

/* The echo is written before the transport is closed, even when the socket
 * is blocked when the peer's close arrives. */
Test(frame, valid_close_codes_are_echoed_then_transport_closed) {
  static const int codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                              1010, 1011, 1012, 1013, 1014, 3000, 4999};
  size_t i;
  int mode, blocked;
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      for (blocked = 0; blocked < 2; blocked++) {
        mt_bytes b = {.p = NULL};
        ws_server *s = setup(mode, 0);
        mt_close_add(&b, codes[i], "bye");
        T.would_block = blocked;
        mt_feed(&T, b.p, b.len, mode);
        if (blocked) {
          cr_assert_eq(T.closes, 0, "code %d: closed before the echo was "
                       "written", codes[i]);
          mt_expect_nothing(&T);
          T.would_block = 0;
          mt_pump(&T);
        }
        cr_assert_eq(T.closes, 1, "code %d (%s, blocked %d): not closed",
                     codes[i], MT_MODE_NAME(mode), blocked);
        cr_assert_eq(mt_expect_close(&T, codes[i]), 0, "echo has no reason");
        cr_assert_eq(T.len_at_close, T.len,
                     "close callback ran before the echo was written");
        cr_assert_eq(R.on_close_calls, 1);
        cr_assert_eq(R.on_close_code, codes[i]);
        cr_assert_str_eq(R.reason, "bye");
        cr_assert_eq(R.tcloses_at_on_close, 0, "on_close after close");
        teardown(s);
        mt_bytes_free(&b);
      }
    }
  }
}

Test(frame, close_without_payload_is_echoed_empty_and_reported_1005) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 0);
    mt_close_add(&b, -1, NULL);
    mt_feed(&T, b.p, b.len, mode);
    cr_assert_eq(T.closes, 1);
    mt_expect_close(&T, -1);
    cr_assert_eq(R.on_close_code, 1005);
    teardown(s);
    mt_bytes_free(&b);
  }
}

Test(frame, close_reason_with_invalid_utf8_is_1007) {
  mt_bytes b = {.p = NULL};
  mt_close_add(&b, 1000, "bad \xc3\x28 reason");
  expect_failure(&b, 1007, "invalid reason");
  mt_bytes_free(&b);
}

Test(frame, close_reason_split_across_feeds_is_accepted) {
  const char reason[] = "au revoir \xe2\x82\xac \xf0\x9d\x84\x9e";
  int mode;
  size_t cut;
  for (mode = 0; mode < MT_MODES; mode++) {
    for (cut = 1; cut < 2 + 4 + 2 + sizeof(reason) - 1; cut += 3) {
      mt_bytes b = {.p = NULL};
      ws_server *s = setup(mode, 0);
      mt_close_add(&b, 1000, reason);
      mt_feed(&T, b.p, cut, mode);
      cr_assert_eq(T.closes, 0);
      mt_feed(&T, b.p + cut, b.len - cut, mode);
      cr_assert_eq(T.closes, 1, "cut %zu (%s)", cut, MT_MODE_NAME(mode));
      mt_expect_close(&T, 1000);
      cr_assert_eq(R.on_close_code, 1000);
      cr_assert_str_eq(R.reason, reason);
      teardown(s);
      mt_bytes_free(&b);
    }
  }
}

Test(frame, nothing_is_delivered_after_the_peers_close) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 0);
    mt_close_add(&b, 1000, NULL);
    mt_frame_str(&b, MT_TEXT, 0, k_msg);
    mt_frame_str(&b, MT_PING, 0, "late");
    mt_feed(&T, b.p, b.len, mode);
    cr_assert_eq(R.msgs, 0, "%s: message after close delivered",
                 MT_MODE_NAME(mode));
    cr_assert_eq(T.closes, 1);
    mt_expect_close(&T, 1000);
    mt_expect_nothing(&T); /* no pong for the late ping */
    teardown(s);
    mt_bytes_free(&b);
  }
}

Test(frame, nothing_is_delivered_after_the_servers_close) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    ws_server *s = setup(mode, 0);
    cr_assert_eq(ws_conn_close(T.c, 1000, "done"), WS_OK);
    mt_expect_close(&T, 1000);
    mt_frame_str(&b, MT_TEXT, 0, k_msg);
    mt_frame_str(&b, MT_PING, 0, "late");
    cr_assert_eq(mt_feed(&T, b.p, b.len, mode), WS_OK, "still reading for "
                 "the peer's close");
    cr_assert_eq(R.msgs, 0, "%s: message after our close delivered",
                 MT_MODE_NAME(mode));
    mt_expect_nothing(&T); /* no pong after our close frame */
    cr_assert_eq(T.closes, 0);
    mt_bytes_free(&b);
    mt_close_add(&b, 1000, NULL);
    mt_feed(&T, b.p, b.len, mode);
    cr_assert_eq(T.closes, 1);
    mt_expect_nothing(&T); /* no second close frame */
    cr_assert_eq(R.on_close_code, 1000);
    teardown(s);
    mt_bytes_free(&b);
  }
}

/* ---- memory ----------------------------------------------------------------- */

/* What Chromium sends besides the handshake's own headers (about 750
 * bytes, a site's cookies included): with the default config they are not
 * kept past on_upgrade. */
static const char browser_headers[] =
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/156.0.0.0 Safari/537.36\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-GB,en-US;q=0.9,en;q=0.8,de;q=0.7\r\n"
    "Cookie: session=4f0c1f2a9b7e4d6c8a1b3c5d7e9f0a2b; theme=dark; "
    "consent=analytics%3Dno%26ads%3Dno; _ga=GA1.1.1234567890.1764115200; "
    "_ga_X1Y2Z3=GS1.1.1764115200.3.1.1764118800.0.0.0; "
    "csrftoken=Zk3q9XbV2mN8pL4rT6wY1cE5uI7oA0sD; "
    "prefs=%7B%22lang%22%3A%22en%22%2C%22tz%22%3A%22Europe%2FBerlin%22%7D\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

static void connect_like_a_browser(mt_conn *t, ws_server *s, const char *id,
                                   int mode) {
  char req[2048];
  size_t n = mt_request(req, sizeof(req), id, browser_headers);
  mt_open(t, s);
  cr_assert_eq(mt_feed(t, req, n, mode), WS_OK);
  cr_assert_eq(mt_http_response(t, NULL, 0, NULL, NULL), 101);
}

/* An idle open connection after a browser's handshake and an exchange
 * costs at most 1 KiB of library heap with the default config. The
 * server's shared structures (timer heap, device index, the pooled receive
 * context) are paid for by a first connection; the figure is the marginal
 * cost of more. wslay's frame context is allocated with libc inside wslay
 * and is not counted; frame.c returns it to the pool once the connection
 * is idle. (With these headers kept, keep_headers = 1, it is about 1,100
 * bytes.) */
Test(frame, idle_connection_heap_is_at_most_1k) {
  enum { N = 50 };
  static mt_conn conns[N];
  int mode, i;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_server *s;
    long server_only, with_first, with_all, first, per_conn;
    memset(&R, 0, sizeof(R));
    s = server_new(0);
    server_only = test_alloc_live_bytes();
    for (i = 0; i < N; i++) {
      char id[16];
      snprintf(id, sizeof(id), "device-%02d", i);
      connect_like_a_browser(&conns[i], s, id, mode);
      cr_assert_eq(mt_send_text(&conns[i],
                                "{\"action\":\"echo\",\"data\":\"hi\"}", mode),
                   WS_OK);
      mt_expect_text(&conns[i], "{\"action\":\"echo\",\"data\":\"hi\"}");
      if (i == 0) with_first = test_alloc_live_bytes();
    }
    with_all = test_alloc_live_bytes();
    first = with_first - server_only;
    per_conn = (with_all - with_first) / (N - 1);
    printf("idle connection heap (%s): %ld bytes per connection "
           "(first connection incl. shared server structures: %ld)\n",
           MT_MODE_NAME(mode), per_conn, first);
    cr_log_info("idle connection heap (%s): %ld bytes per connection "
                "(first incl. shared structures: %ld)",
                MT_MODE_NAME(mode), per_conn, first);
    cr_assert_leq(per_conn, 1024, "idle connection costs %ld bytes",
                  per_conn);
    ws_server_free(s);
    cr_assert_eq(test_alloc_live(), 0);
    for (i = 0; i < N; i++) mt_free(&conns[i]);
  }
}

/* ---- mutation testing ---------------------------------------------------- */

/* A 16- or 64-bit length over max_message fails with 1009 as soon as the
 * length's last byte is in, before the mask key: a peer cannot hold the
 * connection by sending the length and stopping there. */
Test(frame, oversize_extended_length_fails_before_the_mask_key) {
  static const struct {
    uint64_t len;
    size_t upto; /* 2 header bytes + the extended length */
  } k[] = {{4096, 4}, {70000, 10}};
  size_t i;
  int mode;
  for (i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      mt_bytes b = {.p = NULL};
      ws_server *s = setup(mode, 1000);
      mt_frame_header(&b, MT_BINARY, 0, k[i].len);
      cr_assert_gt(b.len, k[i].upto);
      mt_feed(&T, b.p, k[i].upto - 1, mode);
      cr_assert_eq(T.closes, 0, "%llu: failed before its length was in",
                   (unsigned long long)k[i].len);
      mt_feed(&T, b.p + k[i].upto - 1, 1, mode);
      cr_assert_eq(T.closes, 1, "%llu (%s): still open with its length in",
                   (unsigned long long)k[i].len, MT_MODE_NAME(mode));
      mt_expect_close(&T, 1009);
      cr_assert_eq(R.on_close_code, 1009);
      teardown(s);
      mt_bytes_free(&b);
    }
  }
}

/* The peer's close in the middle of a fragmented message: the fragments
 * are dropped, on_close gets the close frame's own reason (none, or "bye"),
 * never the partial message, and nothing leaks (teardown). */
Test(frame, close_inside_a_fragmented_message_drops_the_fragments) {
  static const char *const reasons[] = {NULL, "bye"};
  size_t i;
  int mode;
  for (i = 0; i < 2; i++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      mt_bytes b = {.p = NULL};
      ws_server *s = setup(mode, 0);
      mt_frame_str(&b, MT_TEXT, MT_NOFIN, "{\"action\":\"note\",");
      mt_close_add(&b, 1000, reasons[i]);
      mt_feed(&T, b.p, b.len, mode);
      cr_assert_eq(T.closes, 1);
      mt_expect_close(&T, 1000);
      mt_expect_nothing(&T);
      cr_assert_eq(R.msgs, 0);
      cr_assert_eq(R.on_close_code, 1000);
      cr_assert_str_eq(R.reason, reasons[i] ? reasons[i] : "",
                       "(%s) on_close reason", MT_MODE_NAME(mode));
      teardown(s);
      mt_bytes_free(&b);
    }
  }
}

/* One feed larger than wslay's 4 KiB input buffer, with a frame ending
 * where that buffer does (or near it): the frames after it in the same
 * feed are read, none dropped. */
Test(frame, frames_past_4k_in_one_feed_are_all_read) {
  static char payload[4200];
  size_t total;
  for (total = 4088; total <= 4104; total++) {
    mt_bytes b = {.p = NULL};
    size_t plen = total - 8; /* masked, 16-bit length: 8-byte header */
    ws_server *s = setup(MT_WHOLE, 8192);
    static const char head[] = "{\"action\":\"note\",\"data\":\"";
    memcpy(payload, head, sizeof(head) - 1);
    memset(payload + sizeof(head) - 1, 'x', plen - (sizeof(head) - 1) - 2);
    memcpy(payload + plen - 2, "\"}", 2);
    mt_frame_add(&b, MT_TEXT, 0, payload, plen);
    cr_assert_eq(b.len, total);
    mt_frame_str(&b, MT_TEXT, 0, k_msg);
    mt_frame_str(&b, MT_TEXT, 0, k_msg);
    cr_assert_eq(mt_feed(&T, b.p, b.len, MT_WHOLE), WS_OK);
    cr_assert_eq(R.msgs, 3, "first frame of %zu bytes: %d messages", total,
                 R.msgs);
    cr_assert_eq(R.last_len, strlen(k_msg));
    cr_assert_eq(T.closes, 0);
    teardown(s);
    mt_bytes_free(&b);
  }
}
