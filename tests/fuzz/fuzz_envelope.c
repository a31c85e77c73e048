/*
 * libFuzzer target: received messages at ws__envelope_dispatch level, the
 * JSON syntax check against cJSON, and the incremental UTF-8 validator.
 *
 * Input: byte 0 flags (1 binary message; 2 no handler: every action is
 * unknown; 4 bad-message policy CLOSE; 8 also feed the message as a masked
 * frame through ws_conn_feed), byte 1 a split point, then the message.
 *
 * Invariants (abort on violation):
 *   - UTF-8: validating in two pieces (split anywhere) or byte by byte gives
 *     the state of validating the whole; ACCEPT exactly for valid UTF-8,
 *     REJECT exactly when no continuation could make it valid (checked
 *     against a plain decoder written here);
 *   - JSON: when ws__json_valid says valid, cJSON must parse exactly the
 *     whole text as one value (both refuse unpaired UTF-16 surrogate
 *     escapes such as "\ud800", which RFC 8259's grammar allows);
 *   - dispatch of a text message: not JSON -> one invalid_json error; JSON
 *     but not an object -> not_object; an object whose first "action" is a
 *     string of at most WS_MAX_ACTION bytes -> the handler, once, with that
 *     action (as cJSON decodes it) and with ws_msg_data / ws_msg_data_json
 *     equal to cJSON's "data" member; otherwise bad_action. A binary message
 *     reaches the handler with its exact bytes;
 *   - every frame the server writes is well formed, text frames are UTF-8
 *     JSON; nothing is left allocated afterwards.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { F_BINARY = 1, F_NOHANDLER = 2, F_BADCLOSE = 4, F_FRAME = 8 };

typedef struct env {
  ws_conn *c;
  int closed;
  fz_out out;
  /* the message and what the handler must see */
  const uint8_t *msg;
  size_t len;
  int binary;
  const char *want_action; /* NULL: no expectation */
  const cJSON *want_data;  /* valid when want_action != NULL */
  int calls;
} env;

static env *E;

/* ---- reference UTF-8 decoder ------------------------------------------ */

/* Decodes one character of need+1 bytes (the lead's payload bits in cp)
 * and judges it by its code point alone: 1 valid, 0 not. */
static int ref_char(const uint8_t *p, size_t need, uint32_t cp) {
  static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
  size_t k;
  for (k = 1; k <= need; k++) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[k] & 0x3Fu);
  }
  return cp >= min[need] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
}

/* 1 valid and complete, 2 valid but ends inside a character, 0 invalid.
 * A cut character is completed with 0x80 bytes: once its first
 * continuation byte is there, later ones cannot make it overlong, a
 * surrogate or too large, so that completion decides; with only the lead
 * there, every first continuation byte is tried. */
static int ref_utf8(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = p[i], tmp[4];
    size_t need, have;
    uint32_t cp;
    if (b < 0x80) {
      i++;
      continue;
    }
    if (b >= 0xC0 && b <= 0xDF) need = 1, cp = b & 0x1Fu;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, cp = b & 0x0Fu;
    else if (b >= 0xF0 && b <= 0xF7) need = 3, cp = b & 0x07u;
    else return 0;
    have = n - i;
    if (have > need) {
      if (!ref_char(p + i, need, cp)) return 0;
      i += need + 1;
      continue;
    }
    memset(tmp, 0x80, sizeof(tmp));
    memcpy(tmp, p + i, have);
    if (have > 1) return ref_char(tmp, need, cp) ? 2 : 0;
    for (tmp[1] = 0x80; tmp[1] <= 0xBF; tmp[1]++) /* try every first one */
      if (ref_char(tmp, need, cp)) return 2;
    return 0;
  }
  return 1;
}

static void check_utf8(const uint8_t *p, size_t n, size_t split) {
  uint32_t whole = ws__utf8_validate(WS__UTF8_ACCEPT, p, n), st;
  int ref = ref_utf8(p, n);
  size_t i;
  st = ws__utf8_validate(WS__UTF8_ACCEPT, p, split);
  st = ws__utf8_validate(st, p + split, n - split);
  FZ_CHECK(st == whole, "UTF-8 state differs when split in two");
  st = WS__UTF8_ACCEPT;
  for (i = 0; i < n; i++) st = ws__utf8_validate(st, p + i, 1);
  FZ_CHECK(st == whole, "UTF-8 state differs byte by byte");
  FZ_CHECK((whole == WS__UTF8_ACCEPT) == (ref == 1),
           "UTF-8 ACCEPT disagrees with the reference decoder");
  FZ_CHECK((whole == WS__UTF8_REJECT) == (ref == 0),
           "UTF-8 REJECT disagrees with the reference decoder");
  FZ_CHECK(ws__utf8_validate(0xFFFFu, p, n) == WS__UTF8_REJECT,
           "UTF-8 accepts a state it never made");
}

/* ---- JSON check vs cJSON ---------------------------------------------- */

static int json_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 if cJSON parses exactly the whole text as one value; *root gets the
 * tree (caller deletes) when it does. */
static int has_u_escape(const char *t, size_t n) {
  size_t i;
  for (i = 0; i + 1 < n; i++)
    if (t[i] == '\\' && t[i + 1] == 'u') return 1;
  return 0;
}

static int cjson_whole(const char *t, size_t n, cJSON **root) {
  const char *end = NULL;
  cJSON *r;
  *root = NULL;
  if (n == 0) return 0;
  r = cJSON_ParseWithLengthOpts(t, n, &end, 0);
  if (r == NULL) return 0;
  while (end < t + n && json_ws(*end)) end++;
  if (end != t + n) {
    cJSON_Delete(r);
    return 0;
  }
  *root = r;
  return 1;
}

/* cJSON_Compare calls inf unequal to inf (1e999 parses to inf), so trees
 * are compared by their printed form. */
static int same_json(const cJSON *a, const cJSON *b) {
  char *pa = cJSON_PrintUnformatted(a), *pb = cJSON_PrintUnformatted(b);
  int same = pa && pb && strcmp(pa, pb) == 0;
  cJSON_free(pa);
  cJSON_free(pb);
  return same;
}

/* ---- server plumbing ---------------------------------------------------- */

static ssize_t on_send(ws_conn *c, void *transport, const void *p,
                       size_t len) {
  (void)c;
  FZ_CHECK(transport == E && !E->closed, "send after close");
  fz_out_append(&E->out, p, len);
  return (ssize_t)len;
}

static int on_close(ws_conn *c, void *transport) {
  (void)c;
  FZ_CHECK(transport == E && !E->closed, "closed twice");
  E->closed = 1;
  E->c = NULL;
  return 0;
}

static int handler(ws_conn *c, const ws_msg *m, void *ud) {
  size_t dlen = 0;
  const char *dj;
  const cJSON *d;
  (void)ud;
  E->calls++;
  FZ_CHECK(m->len == E->len && (m->len == 0 || memcmp(m->text, E->msg, m->len) == 0),
           "handler got other bytes than were sent");
  if (E->binary) {
    FZ_CHECK(m->binary && m->action == NULL, "binary message shape");
    FZ_CHECK(ws_msg_data(m) == NULL && ws_msg_data_json(m, &dlen) == NULL &&
                 dlen == 0,
             "binary message with data");
    return 0;
  }
  FZ_CHECK(!m->binary && m->action, "text message without an action");
  FZ_CHECK(strlen(m->action) <= WS_MAX_ACTION, "action over WS_MAX_ACTION");
  if (E->want_action == NULL) return 0; /* no oracle for this input */
  FZ_CHECK(strcmp(m->action, E->want_action) == 0,
           "action differs from cJSON's");
  dj = ws_msg_data_json(m, &dlen);
  d = ws_msg_data(m);
  if (E->want_data == NULL) {
    FZ_CHECK(dj == NULL && dlen == 0 && d == NULL, "data where there is none");
    return 0;
  }
  FZ_CHECK(dj != NULL && d != NULL, "data missing");
  FZ_CHECK(ws__json_valid(dj, dlen, 1), "data_json is not valid JSON");
  FZ_CHECK(same_json(d, E->want_data), "ws_msg_data differs from cJSON");
  {
    cJSON *again = cJSON_ParseWithLength(dj, dlen);
    FZ_CHECK(again && same_json(again, E->want_data),
             "data_json does not parse to cJSON's data");
    cJSON_Delete(again);
  }
  FZ_CHECK(ws_conn_send_json(c, "echo", dj, dlen) == WS_OK,
           "echoing valid data_json failed");
  return 0;
}

static const char request[] =
    "GET /ws?device_id=e HTTP/1.1\r\n"
    "Host: h\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

/* A masked client frame carrying msg, with mask key from the message. */
static uint8_t *client_frame(int opcode, const uint8_t *m, size_t n,
                             size_t *out_len) {
  uint8_t key[4] = {0x12, 0x34, 0x56, (uint8_t)n};
  size_t hl = n < 126 ? 6 : 8, i;
  uint8_t *f = malloc(hl + n + 1);
  if (f == NULL) abort();
  f[0] = (uint8_t)(0x80 | opcode);
  if (n < 126) {
    f[1] = (uint8_t)(0x80 | n);
  } else {
    f[1] = 0x80 | 126;
    f[2] = (uint8_t)(n >> 8);
    f[3] = (uint8_t)n;
  }
  memcpy(f + hl - 4, key, 4);
  for (i = 0; i < n; i++) f[hl + i] = m[i] ^ key[i & 3];
  *out_len = hl + n;
  return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int report = -1;
  fz_alloc fa;
  ws_allocator al;
  ws_config cfg;
  ws_server *s;
  ws_stats st0, st1;
  env e;
  uint8_t flags, *msg;
  size_t len, split;
  cJSON *root = NULL;
  int valid, cj, binary, expect_error = 0;
  const char *t;

  if (report < 0) report = getenv("FUZZ_JSON_REPORT") != NULL;
  if (size < 2) return 0;
  flags = data[0];
  len = size - 2;
  split = len ? data[1] % (len + 1) : 0;
  msg = fz_dup(data + 2, len);
  t = (const char *)msg;
  binary = flags & F_BINARY;

  check_utf8(msg, len, split);

  valid = ws__json_valid(t, len, 0);
  cj = cjson_whole(t, len, &root);
  if (valid && !cj)
    fz_fail("ws__json_valid accepts what cJSON refuses");
  if (report && valid != cj)
    fprintf(stderr, "json disagreement: valid=%d cjson=%d len=%zu: %.*s\n",
            valid, cj, len, (int)(len < 200 ? len : 200), t);

  memset(&e, 0, sizeof(e));
  E = &e;
  e.msg = msg;
  e.len = len;
  e.binary = binary;
  e.out.json_text = 1;
  if (binary) {
    /* no JSON expectation */
  } else if (!valid) {
    expect_error = 1; /* invalid_json */
  } else if (cj && cJSON_IsObject(root)) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "action");
    if (cJSON_IsString(a) && a->valuestring &&
        strlen(a->valuestring) <= WS_MAX_ACTION) {
      e.want_action = a->valuestring;
      e.want_data = cJSON_GetObjectItemCaseSensitive(root, "data");
    } else {
      expect_error = 1; /* bad_action */
    }
  } else if (cj) {
    expect_error = 1; /* not_object */
  } else {
    /* Valid, but cJSON refuses it (a known disagreement): only a
     * non-object is sure to be an error. */
    size_t i = 0;
    while (i < len && json_ws(t[i])) i++;
    expect_error = i == len || t[i] != '{';
  }

  memset(&fa, 0, sizeof(fa));
  al = fz_allocator(&fa);
  ws_config_init(&cfg);
  cfg.alloc = al;
  cfg.send = on_send;
  cfg.close = on_close;
  cfg.handler = (flags & F_NOHANDLER) ? NULL : handler;
  cfg.max_message = 1 << 20;
  cfg.bad_message_policy =
      (flags & F_BADCLOSE) ? WS_BADMSG_CLOSE : WS_BADMSG_REPLY;
  if (ws_server_new(&cfg, &s) != WS_OK) fz_fail("server_new");
  if (ws_conn_new(s, &e, &e.c) != WS_OK) fz_fail("conn_new");
  ws_conn_feed(e.c, request, sizeof(request) - 1);
  FZ_CHECK(e.c && e.out.phase == FZ_FRAMES, "handshake failed");

  /* ws__envelope_dispatch's precondition: text is valid UTF-8 (frame.c
   * checks it as bytes arrive and closes with 1007 otherwise). Escapes in
   * the action are decoded by the library, not as cJSON does (NUL is
   * bad_action), so no delivery is predicted for them. */
  if (!binary && has_u_escape(t, len)) {
    e.want_action = NULL;
    expect_error = 0;
  }
  if (binary || ws__utf8_validate(0, (const uint8_t *)t, len) == 0) {
    ws_server_stats(s, &st0, sizeof(st0));
    ws__enter(s);
    ws__envelope_dispatch(e.c, binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME,
                          msg, len);
    ws__leave(s);
    ws_server_stats(s, &st1, sizeof(st1));

    if (flags & F_NOHANDLER) {
      FZ_CHECK(e.calls == 0, "handler called although none is set");
      if (!binary)
        FZ_CHECK(st1.bad_messages == st0.bad_messages + 1,
                 "a text message with no handler is not one error");
      else
        FZ_CHECK(e.closed || e.out.frames[8] == 1, "binary without a handler "
                                                    "did not close");
    } else if (binary) {
      FZ_CHECK(e.calls == 1, "binary message not delivered once");
    } else {
      FZ_CHECK(e.calls + (int)(st1.bad_messages - st0.bad_messages) == 1,
               "a message is neither handled nor answered exactly once");
      if (e.want_action)
        FZ_CHECK(e.calls == 1, "valid envelope not delivered");
      if (expect_error)
        FZ_CHECK(e.calls == 0, "invalid envelope delivered to the handler");
    }
    if (!(flags & F_NOHANDLER) && (flags & F_BADCLOSE) && e.calls == 0 &&
        !binary)
      FZ_CHECK(e.out.frames[8] == 1 || e.closed, "CLOSE policy did not close");
  }

  /* The same message through the frame layer, when it is UTF-8 text or
   * binary and the connection is still open. */
  if ((flags & F_FRAME) && e.c && len <= 0xFFFF) {
    size_t fl;
    uint8_t *f = client_frame(binary ? 2 : 1, msg, len, &fl);
    int calls = e.calls;
    ws_conn_feed(e.c, f, fl);
    free(f);
    if (!binary && ws__utf8_validate(0, msg, len) != WS__UTF8_ACCEPT)
      FZ_CHECK(e.calls == calls, "invalid UTF-8 text reached the handler");
  }

  ws_server_free(s);
  FZ_CHECK(e.closed, "connection not closed by ws_server_free");
  FZ_CHECK(fa.live == 0, "allocations live after ws_server_free");
  fz_out_free(&e.out);
  cJSON_Delete(root);
  free(msg);
  E = NULL;
  return 0;
}
