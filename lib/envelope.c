/*
 * Messages in and out: {"action": "...", "data": <any JSON>}.
 *
 * In: one scan (ws__envelope_scan, json_check.c) validates the text and
 * finds action and data without building a tree; the handler borrows the
 * decoded action and data's raw span, and gets a cJSON tree of data only
 * when it asks (ws_msg_data). Bad shapes get an error reply (or a close,
 * by policy).
 * Out: the payload is written straight into a frame buffer in one
 * allocation; a broadcast builds it once for every receiver.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

/* ---- JSON string escaping -------------------------------------------- */

/* Bytes before the first one that needs an escape. Action names are
 * almost always plain, and a plain name is copied with one memcpy. */
static size_t plain_prefix(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && ws__json_plain((unsigned char)s[i])) i++;
  return i;
}

/* Writes s as a JSON string literal (quotes included) into out, or only
 * measures when out is NULL. Returns the length. */
static size_t json_quote(char *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t i = plain_prefix(s, n), len = 1 + i;
  if (out) {
    out[0] = '"';
    memcpy(out + 1, s, i);
  }
  for (; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    /* NOLINTNEXTLINE(bugprone-narrowing-conversions): ASCII or 0 */
    char esc = ch == '"' ? '"' : ch == '\\' ? '\\' : ch == '\n' ? 'n'
             : ch == '\r' ? 'r' : ch == '\t' ? 't' : 0;
    if (esc) {
      if (out) out[len] = '\\', out[len + 1] = esc;
      len += 2;
    } else if (ch < 0x20) {
      if (out) {
        memcpy(out + len, "\\u00", 4);
        out[len + 4] = hex[ch >> 4];
        out[len + 5] = hex[ch & 15];
      }
      len += 6;
    } else {
      if (out) out[len] = (char)ch;
      len++;
    }
  }
  if (out) out[len] = '"';
  return len + 1;
}

/* ---- out ------------------------------------------------------------- */

static const char k_head[] = "{\"action\":";
static const char k_data[] = ",\"data\":";

/* The envelope's bytes around data's json_len (has_data 0: no "data"),
 * for an action of alen bytes. */
static size_t envelope_len(const char *action, size_t alen, int has_data,
                           size_t json_len) {
  size_t len = sizeof(k_head) - 1 + json_quote(NULL, action, alen);
  return len + 1 + (has_data ? sizeof(k_data) - 1 + json_len : 0);
}

size_t ws__envelope_frame_len(const char *action, int has_data,
                              size_t json_len) {
  size_t len = envelope_len(action, strlen(action), has_data, json_len);
  return ws__frame_header_len(len) + len;
}

ws__buf *ws__envelope_frame(ws_server *s, const char *action, const char *json,
                            size_t json_len) {
  size_t alen = strlen(action), off;
  size_t len = envelope_len(action, alen, json != NULL, json_len);
  uint8_t *p;
  ws__buf *b;
  b = ws__buf_frame(s, WSLAY_TEXT_FRAME, len, &p);
  if (b == NULL) return NULL;
  memcpy(p, k_head, sizeof(k_head) - 1);
  off = sizeof(k_head) - 1;
  off += json_quote((char *)p + off, action, alen);
  if (json) {
    memcpy(p + off, k_data, sizeof(k_data) - 1);
    off += sizeof(k_data) - 1;
    memcpy(p + off, json, json_len);
    off += json_len;
  }
  p[off] = '}';
  return b;
}

/* A text frame must be UTF-8 (RFC 6455 8.1): a client fails the connection
 * with 1007 otherwise, so one bad string in a broadcast would drop every
 * receiver. The host's strings are checked once, before any framing. */
static int utf8_ok(const char *p, size_t n) {
  return ws__utf8_validate(0, (const uint8_t *)p, n) == WS__UTF8_ACCEPT;
}

int ws__action_ok(const char *action) {
  size_t n = strlen(action);
  return n <= WS_MAX_ACTION && utf8_ok(action, n);
}

/* 0 if the tree holds an item cJSON cannot print (a type byte that is
 * not exactly one of cJSON's types, or a raw item without text): only
 * asked after printing failed, to tell the caller's mistake from running
 * out of memory. */
static int tree_printable(const struct cJSON *item, int depth) {
  const struct cJSON *ch;
  int type = item->type & 0xFF;
  if (depth > 1000) return 1; /* deeper than cJSON builds: not the cause */
  switch (type) {
  case cJSON_False: case cJSON_True: case cJSON_NULL: case cJSON_Number:
  case cJSON_String: case cJSON_Array: case cJSON_Object: break;
  case cJSON_Raw: if (item->valuestring) break; return 0;
  default: return 0;
  }
  for (ch = item->child; ch; ch = ch->next)
    if (!tree_printable(ch, depth + 1)) return 0;
  return 1;
}

/* 1 (and *err WS_ETOOBIG) when data of len bytes makes a message no
 * queue takes: told from the length alone, before the text is read (a
 * host's len may be wrong by far). */
static int too_big(const ws_server *s, size_t len, int *err) {
  if (!WS__TOO_BIG(s, len)) return 0;
  *err = WS_ETOOBIG;
  return 1;
}

/* The envelope around data's JSON text (NULL: no data): the size first,
 * then the text's syntax, then the frame. *err is set either way. */
static ws__buf *frame_text(ws_server *s, const char *action, const char *json,
                           size_t len, int *err) {
  ws__buf *b;
  if (too_big(s, len, err)) return NULL;
  if (json && !ws__json_valid(json, len, 1)) {
    *err = WS_EJSON;
    return NULL;
  }
  b = ws__envelope_frame(s, action, json, len);
  *err = b ? WS_OK : WS_ENOMEM;
  return b;
}

ws__buf *ws__envelope_frame_cjson(ws_server *s, const char *action,
                                  const struct cJSON *data, int *err) {
  char *text;
  ws__buf *b;
  if (!ws__action_ok(action)) {
    *err = WS_EINVAL;
    return NULL;
  }
  if (data == NULL) return frame_text(s, action, NULL, 0, err);
  text = cJSON_PrintUnformatted(data);
  if (text == NULL) {
    *err = tree_printable(data, 0) ? WS_ENOMEM : WS_EJSON;
    return NULL;
  }
  /* cJSON copies string bytes as given, and a raw item's text verbatim:
   * checked as a _json variant's text is, so that no receiver ever gets a
   * malformed envelope (or a raw item's second "action" member). */
  b = frame_text(s, action, text, strlen(text), err);
  cJSON_free(text);
  return b;
}

ws__buf *ws__envelope_frame_json(ws_server *s, const char *action,
                                 const char *json, size_t len, int *err) {
  if ((json == NULL && len) || !ws__action_ok(action)) {
    *err = WS_EINVAL;
    return NULL;
  }
  /* The host's text must be one complete JSON value: a receiver must never
   * get a malformed envelope because of it. */
  return frame_text(s, action, json, len, err);
}

/* Human-readable text for each documented error code. */
static const char *error_text(const char *code) {
  if (strcmp(code, "invalid_json") == 0) return "message is not valid JSON";
  if (strcmp(code, "not_object") == 0) return "message must be a JSON object";
  if (strcmp(code, "bad_action") == 0)
    return "\"action\" must be a string (at most 255 bytes, no NUL)";
  if (strcmp(code, "unknown_action") == 0) return "unknown action";
  return code;
}

static const char k_code[] = "{\"code\":", k_msg[] = ",\"message\":";

/* Copies lit[0..n) to out + at, or only counts it when out is NULL. */
static size_t put_lit(char *out, size_t at, const char *lit, size_t n) {
  if (out) memcpy(out + at, lit, n);
  return n;
}

/* The data of an error reply, the library's or a handler's
 * (ws_conn_send_error): {"code":code,"message":msg}, both quoted, written
 * into out, or only measured when out is NULL. Returns the length: at most
 * 24 + 6 * (cl + ml). */
static size_t error_data(char *out, const char *code, size_t cl,
                         const char *msg, size_t ml) {
  size_t n = put_lit(out, 0, k_code, sizeof(k_code) - 1);
  n += json_quote(out ? out + n : NULL, code, cl);
  n += put_lit(out, n, k_msg, sizeof(k_msg) - 1);
  n += json_quote(out ? out + n : NULL, msg, ml);
  return n + put_lit(out, n, "}", 1);
}

#define ERR_DETAIL_MAX 200 /* bytes of the detail (an action) quoted back */
#define ERR_TEXT_MAX 63    /* error_text's longest is 55 */
#define ERR_CODE_MAX 16    /* the library's codes: "unknown_action" is 14 */

void ws__envelope_error(ws_conn *c, const char *code, const char *detail) {
  ws_server *s = c->s;
  const char *text = error_text(code);
  char msg[ERR_TEXT_MAX + 2 + ERR_DETAIL_MAX];
  /* The detail comes from the peer: every byte of it may be a control
   * character that json_quote writes as \u00XX, six bytes. */
  char json[24 + 6 * (ERR_CODE_MAX + sizeof(msg))];
  size_t n, ml = WS__MIN(strlen(text), ERR_TEXT_MAX);
  ws__buf *b;
  s->st.bad_messages++;
  if (s->cfg.bad_message_policy == WS_BADMSG_CLOSE) {
    int invalid = strcmp(code, "invalid_json") == 0;
    ws_conn_close(c, invalid ? WS_CLOSE_INVALID_DATA : WS_CLOSE_POLICY, code);
    return;
  }
  memcpy(msg, text, ml);
  if (detail) {
    size_t dlen = WS__MIN(strlen(detail), ERR_DETAIL_MAX);
    /* Cut at a character boundary: the reply is a text frame. */
    while (dlen > 0 && ((unsigned char)detail[dlen] & 0xC0) == 0x80) dlen--;
    memcpy(msg + ml, ": ", 2);
    memcpy(msg + ml + 2, detail, dlen);
    ml += 2 + dlen;
  }
  n = error_data(json, code, WS__MIN(strlen(code), ERR_CODE_MAX), msg, ml);
  b = ws__envelope_frame(s, "error", json, n);
  if (b == NULL) return;
  /* A message frame as any send's (ws_conn_send_error's counts). */
  if (ws__conn_queue(c, b) == WS_OK) s->st.frames_allocated++;
  ws__buf_unref(s, b);
}

int ws_conn_send_error(ws_conn *c, const char *code, const char *message) {
  size_t cl, ml, n;
  char *json;
  ws_server *s;
  int rc;
  if (c == NULL) return WS_EINVAL;
  s = c->s;
  /* The connection first, as in ws_conn_send: a closing one is WS_ECLOSED
   * (one without its 101 WS_ESTATE) whatever the arguments. */
  if ((rc = ws__conn_sendable(c)) != WS_OK) return rc;
  if (code == NULL || *code == '\0') return WS_EINVAL;
  if (message == NULL) message = "";
  cl = strlen(code);
  ml = strlen(message);
  if (!utf8_ok(code, cl) || !utf8_ok(message, ml)) return WS_EINVAL;
  /* Past the frame's limit it would not fit anyway; and quoted, a byte
   * takes up to 6, so with a 32-bit size_t the sizes below (and
   * json_quote's count) would wrap and the copy overrun. */
  if (cl > WS__MESSAGE_MAX || ml > WS__MESSAGE_MAX - cl ||
      cl + ml > (SIZE_MAX - sizeof(k_code) - sizeof(k_msg) - 8) / 6)
    return WS_ETOOBIG;
  n = error_data(NULL, code, cl, message, ml);
  if ((json = ws__malloc(&s->al, n)) == NULL) return WS_ENOMEM;
  error_data(json, code, cl, message, ml);
  /* A frame of our own around the send: its flush may end c (a failing
   * socket) or the server (ws_server_free from send), and the text is
   * freed through the server after it. */
  ws__enter(s);
  rc = ws_conn_send_json(c, "error", json, n);
  ws__free(&s->al, json);
  ws__leave(s);
  return rc;
}

/* ---- in ------------------------------------------------------------- */

/* What a handler may ask for, released after it returns: the raw span of
 * "data" in the message, and a cJSON tree of it built on demand. */
typedef struct msg_extra {
  const char *data; /* raw span of "data", or NULL */
  size_t data_len;
  cJSON *tree;      /* ws_msg_data's parse of the span */
} msg_extra;

const struct cJSON *ws_msg_data(const ws_msg *msg) {
  msg_extra *x;
  if (msg == NULL || msg->binary || msg->internal_ == NULL) return NULL;
  x = msg->internal_;
  if (x->data && x->tree == NULL)
    x->tree = cJSON_ParseWithLength(x->data, x->data_len);
  return x->tree;
}

const char *ws_msg_data_json(const ws_msg *msg, size_t *len) {
  msg_extra *x;
  if (len) *len = 0;
  if (msg == NULL || msg->binary || msg->internal_ == NULL) return NULL;
  x = msg->internal_;
  if (len && x->data) *len = x->data_len;
  return x->data;
}

static inline void run_handler(ws_conn *c, ws_msg *m) {
  ws_server *s = c->s;
  int rc;
  if (s->cfg.handler == NULL) {
    if (m->binary)
      ws_conn_close(c, WS_CLOSE_UNSUPPORTED, "binary messages not accepted");
    else
      ws__envelope_error(c, "unknown_action", m->action);
    return;
  }
  rc = s->cfg.handler(c, m, s->cfg.handler_data);
  /* WS_EQUEUEFULL is a send's answer handed on (return ws_conn_send(...)),
   * not the handler failing: the queue policy already decided what a full
   * queue costs (under WS_QUEUE_DROP, one message, not the connection). */
  if (rc < 0 && rc != WS_EQUEUEFULL && c->state == WS__OPEN) {
    ws__log(s, WS_LOG_ERROR, "handler for \"%s\" failed (%d): closing",
            m->action ? m->action : "(binary)", rc);
    ws_conn_close(c, WS_CLOSE_INTERNAL, "handler error");
  }
}

/* The action from the scan's raw span, decoded NUL-terminated into buf;
 * NULL when it is not a string, too long, or holds a NUL (a C string would
 * silently cut it there), or when its key does ("action\u0000": cJSON
 * reads it as "action", so a later plain "action" must not be taken). */
static const char *action_of(const ws__env_scan *sc, char *buf) {
  size_t raw_len;
  long n;
  if (sc->action == NULL || sc->action[0] != '"' || sc->action_nul_key)
    return NULL;
  raw_len = sc->action_len - 2;
  if (sc->action_plain) { /* nothing to decode, no NUL: copied as is */
    if (raw_len > WS_MAX_ACTION) return NULL;
    memcpy(buf, sc->action + 1, raw_len);
    buf[raw_len] = '\0';
    return buf;
  }
  n = ws__json_unescape(sc->action + 1, raw_len, buf, WS_MAX_ACTION);
  if (n < 0) return NULL;
  buf[n] = '\0';
  return buf;
}

void ws__envelope_dispatch(ws_conn *c, int opcode, const uint8_t *p,
                           size_t len) {
  char action[WS_MAX_ACTION + 1];
  msg_extra x;
  ws__env_scan sc;
  ws_msg m;
  int r;
  memset(&m, 0, sizeof(m));
  memset(&x, 0, sizeof(x));
  m.text = (const char *)p;
  m.len = len;
  m.internal_ = &x;
  if (opcode == WSLAY_BINARY_FRAME) {
    m.binary = 1;
    run_handler(c, &m);
    return;
  }
  r = ws__envelope_scan(m.text, len, &sc);
  if (r != WS__ENV_OK) {
    ws__envelope_error(c, r == WS__ENV_NOT_OBJECT ? "not_object"
                                                  : "invalid_json", NULL);
    return;
  }
  m.action = action_of(&sc, action);
  x.data = sc.data;
  x.data_len = sc.data_len;
  if (m.action == NULL)
    ws__envelope_error(c, "bad_action", NULL);
  else
    run_handler(c, &m);
  if (x.tree) cJSON_Delete(x.tree);
}
