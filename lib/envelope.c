/*
 * Messages in and out: {"action": "...", "data": <any JSON>} on cJSON.
 *
 * In: parse once, check the shape, hand the handler borrowed pointers into
 * the tree; bad shapes get an error reply (or a close, by policy).
 * Out: the payload is written straight into a frame buffer in one
 * allocation; a broadcast builds it once for every receiver.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

/* Data the handler may ask for lazily, freed after it returns. */
typedef struct msg_extra {
  char *data_json;
  size_t data_len;
} msg_extra;

/* ---- JSON string escaping -------------------------------------------- */

/* Writes s as a JSON string literal (quotes included) into out, or only
 * measures when out is NULL. Returns the length. */
static size_t json_quote(char *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t len = 0, i;
  if (out) out[len] = '"';
  len++;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
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

ws__buf *ws__envelope_frame(ws_server *s, const char *action, const char *json,
                            size_t json_len) {
  size_t alen = strlen(action), qlen = json_quote(NULL, action, alen);
  size_t len = sizeof(k_head) - 1 + qlen + 1, off;
  uint8_t *p;
  ws__buf *b;
  if (json) len += sizeof(k_data) - 1 + json_len;
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

ws__buf *ws__envelope_frame_cjson(ws_server *s, const char *action,
                                  const struct cJSON *data, int *err) {
  char *text;
  ws__buf *b;
  if (data == NULL) {
    b = ws__envelope_frame(s, action, NULL, 0);
    *err = b ? WS_OK : WS_ENOMEM;
    return b;
  }
  text = cJSON_PrintUnformatted(data);
  if (text == NULL) {
    *err = WS_ENOMEM;
    return NULL;
  }
  b = ws__envelope_frame(s, action, text, strlen(text));
  cJSON_free(text);
  *err = b ? WS_OK : WS_ENOMEM;
  return b;
}

ws__buf *ws__envelope_frame_json(ws_server *s, const char *action,
                                 const char *json, size_t len, int *err) {
  ws__buf *b;
  if (json == NULL) {
    *err = WS_EINVAL;
    return NULL;
  }
  /* The host's text must be one complete JSON value: a receiver must never
   * get a malformed envelope because of it. */
  if (!ws__json_valid(json, len)) {
    *err = WS_EJSON;
    return NULL;
  }
  b = ws__envelope_frame(s, action, json, len);
  *err = b ? WS_OK : WS_ENOMEM;
  return b;
}

/* Human-readable text for each documented error code. */
static const char *error_text(const char *code) {
  if (strcmp(code, "invalid_json") == 0) return "message is not valid JSON";
  if (strcmp(code, "not_object") == 0) return "message must be a JSON object";
  if (strcmp(code, "bad_action") == 0) return "\"action\" must be a string";
  if (strcmp(code, "unknown_action") == 0) return "unknown action";
  return code;
}

void ws__envelope_error(ws_conn *c, const char *code, const char *detail) {
  ws_server *s = c->s;
  char json[400];
  size_t n = 0, dlen = detail ? WS__MIN(strlen(detail), 200) : 0;
  ws__buf *b;
  s->st.bad_messages++;
  if (s->cfg.bad_message_policy == WS_BADMSG_CLOSE) {
    int invalid = strcmp(code, "invalid_json") == 0;
    ws_conn_close(c, invalid ? WS_CLOSE_INVALID_DATA : WS_CLOSE_POLICY, code);
    return;
  }
  n += (size_t)snprintf(json, sizeof(json), "{\"code\":\"%s\",\"message\":",
                        code);
  if (detail) {
    char msg[230];
    int ml = snprintf(msg, sizeof(msg), "%s: %.*s", error_text(code),
                      (int)dlen, detail);
    n += json_quote(json + n, msg, (size_t)ml);
  } else {
    n += json_quote(json + n, error_text(code), strlen(error_text(code)));
  }
  json[n++] = '}';
  b = ws__envelope_frame(s, "error", json, n);
  if (b == NULL) return;
  ws__conn_queue(c, b);
  ws__buf_unref(s, b);
}

/* ---- in -------------------------------------------------------------- */

const char *ws_msg_data_json(const ws_msg *msg, size_t *len) {
  msg_extra *x;
  if (msg == NULL || msg->binary || msg->internal_ == NULL) return NULL;
  x = msg->internal_;
  if (x->data_json == NULL) {
    x->data_json = msg->data ? cJSON_PrintUnformatted(msg->data) : NULL;
    if (msg->data && x->data_json == NULL) return NULL;
    x->data_len = x->data_json ? strlen(x->data_json) : 4;
  }
  if (len) *len = x->data_len;
  return x->data_json ? x->data_json : "null";
}

static void run_handler(ws_conn *c, ws_msg *m) {
  ws_server *s = c->s;
  msg_extra x = {NULL, 0};
  int rc;
  m->internal_ = &x;
  if (s->cfg.handler == NULL) {
    if (m->binary)
      ws_conn_close(c, WS_CLOSE_UNSUPPORTED, "binary messages not accepted");
    else
      ws__envelope_error(c, "unknown_action", m->action);
    return;
  }
  rc = s->cfg.handler(c, m, s->cfg.handler_data);
  if (x.data_json) cJSON_free(x.data_json);
  if (rc < 0 && c->state == WS__OPEN) {
    ws__log(s, WS_LOG_ERROR, "handler for \"%s\" failed (%d): closing",
            m->action ? m->action : "(binary)", rc);
    ws_conn_close(c, WS_CLOSE_INTERNAL, "handler error");
  }
}

void ws__envelope_dispatch(ws_conn *c, int opcode, const uint8_t *p,
                           size_t len) {
  ws_msg m;
  cJSON *root;
  const cJSON *action;
  memset(&m, 0, sizeof(m));
  m.text = (const char *)p;
  m.len = len;
  if (opcode == WSLAY_BINARY_FRAME) {
    m.binary = 1;
    run_handler(c, &m);
    return;
  }
  root = cJSON_ParseWithLength((const char *)p, len);
  if (root == NULL) {
    ws__envelope_error(c, "invalid_json", NULL);
    return;
  }
  action = cJSON_GetObjectItemCaseSensitive(root, "action");
  if (!cJSON_IsObject(root)) {
    ws__envelope_error(c, "not_object", NULL);
  } else if (!cJSON_IsString(action) || action->valuestring == NULL) {
    ws__envelope_error(c, "bad_action", NULL);
  } else {
    m.action = action->valuestring;
    m.data = cJSON_GetObjectItemCaseSensitive(root, "data");
    run_handler(c, &m);
  }
  cJSON_Delete(root);
}
