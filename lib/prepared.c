/*
 * Prepared messages: an envelope framed once and queued by reference as
 * often as the host likes (gorilla/websocket's PreparedMessage). A send is
 * then one queue link and a reference count, the same as one receiver of a
 * broadcast.
 *
 * The server keeps every live one on a list so that ws_server_free can
 * release what the host did not: a handle may be created lazily from a
 * handler and simply left to the server's lifetime.
 */
#include "internal.h"

struct ws_prepared {
  ws_server *s;
  ws__buf *frame; /* one reference, dropped by ws_prepared_free */
  struct ws_prepared *prev, *next;
};

static int prepared_new(ws_server *s, ws__buf *frame, ws_prepared **out) {
  ws_prepared *p;
  if (frame->len > s->cfg.max_queued) { /* no queue could ever take it */
    ws__buf_unref(s, frame);
    return WS_ETOOBIG;
  }
  if ((p = ws__malloc(&s->al, sizeof(*p))) == NULL) {
    ws__buf_unref(s, frame);
    return WS_ENOMEM;
  }
  s->st.frames_allocated++;
  p->s = s;
  p->frame = frame;
  p->prev = NULL;
  p->next = s->prepared;
  if (s->prepared) s->prepared->prev = p;
  s->prepared = p;
  *out = p;
  return WS_OK;
}

int ws_prepare(ws_server *s, const char *action, const struct cJSON *data,
               ws_prepared **out) {
  ws__buf *b;
  int err;
  if (out) *out = NULL;
  if (s == NULL || action == NULL || out == NULL) return WS_EINVAL;
  b = ws__envelope_frame_cjson(s, action, data, &err);
  return b ? prepared_new(s, b, out) : err;
}

int ws_prepare_json(ws_server *s, const char *action, const char *data_json,
                    size_t len, ws_prepared **out) {
  ws__buf *b;
  int err;
  if (out) *out = NULL;
  if (s == NULL || action == NULL || out == NULL) return WS_EINVAL;
  b = ws__envelope_frame_json(s, action, data_json, len, &err);
  return b ? prepared_new(s, b, out) : err;
}

int ws_conn_send_prepared(ws_conn *c, const ws_prepared *p) {
  int rc;
  if (c == NULL) return WS_EINVAL;
  /* The connection first, as in ws_conn_send: a closing one is WS_ECLOSED
   * whatever the handle. */
  if (c->state != WS__OPEN) return ws__conn_sendable(c);
  if (p == NULL || p->s != c->s) return WS_EINVAL;
  ws__enter(c->s);
  rc = ws__conn_queue(c, p->frame);
  ws__leave(c->s);
  return rc;
}

void ws_prepared_free(ws_prepared *p) {
  ws_server *s;
  if (p == NULL) return;
  s = p->s;
  if (p->prev)
    p->prev->next = p->next;
  else
    s->prepared = p->next;
  if (p->next) p->next->prev = p->prev;
  ws__buf_unref(s, p->frame);
  ws__free(&s->al, p);
}

void ws__prepared_free_all(ws_server *s) {
  while (s->prepared) ws_prepared_free(s->prepared);
}
