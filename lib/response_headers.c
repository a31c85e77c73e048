/*
 * Header lines the host adds to a connection's HTTP response
 * (ws_conn_add_header): Set-Cookie on a 101, WWW-Authenticate on a 401,
 * Retry-After on a 503.
 *
 * Only a connection whose response is being decided can add them (from
 * on_upgrade until its 101 or refusal is queued, from on_http until its
 * answer is), so the lines live on the server, not on every connection.
 * A callback in such a window may drive another connection's upgrade (it
 * feeds it), so the windows nest like the calls: each starts where the
 * enclosing one's lines end, and its end drops its own lines.
 */
#include <string.h>

#include "internal.h"

/* "Sec-WebSocket-" names, and the ones that frame the response or that the
 * library writes itself: a second copy would contradict it. */
static int reserved_name(const char *name) {
  static const char *const names[] = {"Connection", "Content-Length",
                                      "Content-Type", "Transfer-Encoding",
                                      "Upgrade"};
  static const char sec[] = "Sec-WebSocket-";
  size_t i, n = strlen(name);
  if (n >= sizeof(sec) - 1 &&
      ws__ascii_caseeq(name, sizeof(sec) - 1, sec, sizeof(sec) - 1))
    return 1;
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (ws__ascii_caseeq(name, n, names[i], strlen(names[i]))) return 1;
  return 0;
}

void ws__hdrs_open(ws_conn *c, ws__hdrs_window *w) {
  ws_server *s = c->s;
  w->owner = s->hdr_owner;
  w->start = s->hdr_start;
  s->hdr_owner = c;
  s->hdr_start = s->hdr_len;
}

void ws__hdrs_shut(ws_server *s, ws__hdrs_window *w) {
  w->owner = s->hdr_owner;
  w->start = s->hdr_start;
  s->hdr_owner = NULL;
  s->hdr_start = s->hdr_len;
}

void ws__hdrs_close(ws_server *s, const ws__hdrs_window *w) {
  s->hdr_len = s->hdr_start;
  if (s->hdr_buf) s->hdr_buf[s->hdr_len] = '\0';
  s->hdr_owner = w->owner;
  s->hdr_start = w->start;
}

const char *ws__hdrs_peek(const ws_conn *c) {
  const ws_server *s = c->s;
  if (s->hdr_owner != c) return NULL;
  return s->hdr_len > s->hdr_start ? s->hdr_buf + s->hdr_start : NULL;
}

const char *ws__hdrs_take(ws_conn *c) {
  const char *lines = ws__hdrs_peek(c);
  /* the response is built: later lines would be lost */
  if (c->s->hdr_owner == c) c->s->hdr_owner = NULL;
  return lines;
}

void ws__hdrs_free(ws_server *s) { ws__free(&s->al, s->hdr_buf); }

int ws_conn_add_header(ws_conn *c, const char *name, const char *value) {
  ws_server *s;
  size_t nl, vl, used, need;
  char *p;
  if (c == NULL || !ws__is_token(name) || reserved_name(name) ||
      value == NULL || !ws__field_text_ok(value))
    return WS_EINVAL;
  s = c->s;
  if (s->hdr_owner != c) return WS_ESTATE;
  if (c->state != WS__HANDSHAKE) return WS_ECLOSED; /* closed in the window */
  nl = strlen(name);
  vl = strlen(value);
  used = s->hdr_len - s->hdr_start;
  if (nl > WS_MAX_ADDED_HEADERS || vl > WS_MAX_ADDED_HEADERS ||
      nl + vl + 4 > WS_MAX_ADDED_HEADERS - used)
    return WS_ETOOBIG;
  need = s->hdr_len + nl + vl + 4 + 1; /* "name: value\r\n" and a NUL */
  if (need > s->hdr_cap) {
    size_t cap = need < 256 ? 256 : need * 2;
    if ((p = ws__realloc(&s->al, s->hdr_buf, cap)) == NULL) return WS_ENOMEM;
    s->hdr_buf = p;
    s->hdr_cap = cap;
  }
  p = s->hdr_buf + s->hdr_len;
  memcpy(p, name, nl);
  memcpy(p + nl, ": ", 2);
  memcpy(p + nl + 2, value, vl);
  memcpy(p + nl + 2 + vl, "\r\n", 3);
  s->hdr_len += nl + vl + 4;
  return WS_OK;
}
