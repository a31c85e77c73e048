/*
 * Sending from application logic: to one connection, to devices, to a
 * user's connections, to a group, to everyone.
 *
 * Every fan-out builds its frame once (one serialisation, one allocation)
 * and queues a reference on each receiver. Targets are collected into an
 * array first: queueing can run host callbacks (a log line, a slow
 * consumer's close) that may change the lists being walked. This file and
 * the registry's lookups are the only place where local delivery happens,
 * so a cross-node bridge can sit in front of them.
 */
#include <string.h>

#include "internal.h"

typedef struct targets {
  ws_conn **v;
  uint8_t *nomem; /* deliver's: 1 where a receiver failed for memory */
  size_t n;
} targets;

static int targets_alloc(ws_server *s, targets *t, size_t max) {
  t->n = 0;
  t->v = NULL;
  t->nomem = NULL;
  if (max == 0) return WS_OK;
  t->v = ws__malloc(&s->al, max * (sizeof(*t->v) + 1));
  if (t->v == NULL) return WS_ENOMEM;
  t->nomem = (uint8_t *)(t->v + max);
  return WS_OK;
}

/* The collecting loops stop at the count they allocated for, not only at
 * the list's end. The count is never below the list's length (ws_conn_new;
 * ws__conn_finish unlinks a connection before its transport close and
 * stops counting it after; member_add and member_remove keep theirs
 * equal), which static analysers cannot see: the bound shows them, and any
 * reader, that t->v is never written past its end, nor at all when a count
 * of 0 left it NULL. */
static int collect_all(ws_server *s, targets *t) {
  size_t max = s->nconns;
  ws_conn *c;
  if (targets_alloc(s, t, max) != WS_OK) return WS_ENOMEM;
  for (c = s->conns; c && t->n < max; c = c->next)
    if (c->state == WS__OPEN) t->v[t->n++] = c;
  return WS_OK;
}

/* A device named twice gets the message once ("how many connections").
 * The marks are cleared before anything is queued: queuing can run host
 * callbacks (on_log) that may build a list of their own. */
static int collect_devices(ws_server *s, targets *t, const char *const *ids,
                           size_t n) {
  size_t i;
  if (targets_alloc(s, t, n) != WS_OK) return WS_ENOMEM;
  for (i = 0; i < n; i++) {
    ws_conn *c = ids[i] ? ws_server_find_device(s, ids[i]) : NULL;
    if (c == NULL)
      s->st.unknown_targets++;
    else if (!(c->marks & WS__M_PICKED))
      c->marks |= WS__M_PICKED, t->v[t->n++] = c;
  }
  for (i = 0; i < t->n; i++) t->v[i]->marks &= (uint8_t)~WS__M_PICKED;
  return WS_OK;
}

/* Open members only: one closing or still in its handshake takes
 * nothing. A user or group with no open connection is not found, as a
 * device whose connection is closing is not (ws_server_find_device). */
static int collect_group(ws_server *s, targets *t, char kind,
                         const char *name) {
  ws__group *g = ws__group_find(s, kind, name);
  ws__member *m;
  size_t max = g ? g->count : 0;
  if (targets_alloc(s, t, max) != WS_OK) return WS_ENOMEM;
  for (m = g ? g->members : NULL; m && t->n < max; m = m->gnext)
    if (m->conn->state == WS__OPEN) t->v[t->n++] = m->conn;
  if (t->n == 0) s->st.unknown_targets++;
  return WS_OK;
}

/* Queues b on every target; returns how many took it. A receiver that
 * could not get it for want of memory is closed (1011) rather than left
 * open with a hole in its stream: every receiver gets every message in
 * order, or ends. */
static int deliver(ws_server *s, ws__buf *b, const targets *t) {
  size_t i, nfail = 0;
  int count = 0, rc;
  /* On every receiver first, with no host callback in between: the queue
   * policy's log line, a close for want of memory (on_log) may send, close
   * or shut down, and must find this message on every receiver that could
   * take it, not overtake it on those not reached yet. The failed ones
   * are moved to the front (nfail <= i), then dealt with. */
  for (i = 0; i < t->n; i++) {
    rc = ws__conn_try_queue(t->v[i], b);
    if (rc == WS_OK) {
      count++;
    } else if (rc == WS_EQUEUEFULL || rc == WS_ENOMEM) {
      t->nomem[nfail] = rc == WS_ENOMEM;
      t->v[nfail++] = t->v[i];
    }
  }
  s->st.broadcasts++;
  s->st.fanout += (uint64_t)count;
  for (i = 0; i < nfail; i++) {
    if (t->nomem[i])
      ws__conn_fail(t->v[i], WS_CLOSE_INTERNAL, "out of memory");
    else
      ws__conn_queue_full(t->v[i]);
  }
  return count;
}

typedef struct target_spec {
  int kind;                  /* enum ws__target */
  const char *name;          /* user or group */
  const char *const *ids;    /* devices */
  size_t n;
} target_spec;

int ws__deliver(ws_server *s, ws__buf *b, int kind, const char *name,
                const char *const *ids, size_t n) {
  targets t;
  int rc;
  if (b->len > s->cfg.max_queued) return WS_ETOOBIG; /* see ws__conn_queue */
  switch (kind) {
  case WS__T_ALL: rc = collect_all(s, &t); break;
  case WS__T_DEVICES: rc = collect_devices(s, &t, ids, n); break;
  case WS__T_USER: rc = collect_group(s, &t, 'u', name); break;
  default: rc = collect_group(s, &t, 'g', name); break;
  }
  if (rc == WS_OK) rc = deliver(s, b, &t);
  ws__free(&s->al, t.v);
  return rc;
}

int ws__device_id_ok(const ws_server *s, const char *id) {
  return id && id[0] &&
         strnlen(id, s->cfg.max_device_id + 1) <= s->cfg.max_device_id;
}

int ws__target_ok(int kind, const char *name, const char *const *ids,
                  size_t n) {
  switch (kind) {
  case WS__T_ALL: return 1;
  case WS__T_DEVICES: return n == 0 || ids != NULL;
  default: return ws__group_name_ok(name);
  }
}

/* The one fan-out path: frame (from cJSON or ready JSON), collect, queue. */
static int fan_out(ws_server *s, const target_spec *ts, const char *action,
                   const struct cJSON *data, const char *json, size_t len,
                   int use_json) {
  ws__buf *b;
  int err = WS_OK, rc;
  if (s == NULL || action == NULL ||
      !ws__target_ok(ts->kind, ts->name, ts->ids, ts->n))
    return WS_EINVAL;
  ws__enter(s);
  b = use_json ? ws__envelope_frame_json(s, action, json, len, &err)
               : ws__envelope_frame_cjson(s, action, data, &err);
  rc = b ? ws__deliver(s, b, ts->kind, ts->name, ts->ids, ts->n) : err;
  /* Counted for a call that did not fail, as broadcasts is (and as a
   * refused ws_prepare or ws_post counts none): not for a frame too big
   * for any queue, or no memory for the list of receivers. */
  if (rc >= 0) s->st.frames_allocated++;
  ws__buf_unref(s, b);
  ws__leave(s);
  return rc;
}

int ws_broadcast(ws_server *s, const char *action, const struct cJSON *data,
                 const char *const *device_ids, size_t n) {
  target_spec ts = {.kind = n ? WS__T_DEVICES : WS__T_ALL,
                    .ids = device_ids, .n = n};
  return fan_out(s, &ts, action, data, NULL, 0, 0);
}

int ws_broadcast_json(ws_server *s, const char *action, const char *data_json,
                      size_t len, const char *const *device_ids, size_t n) {
  target_spec ts = {.kind = n ? WS__T_DEVICES : WS__T_ALL,
                    .ids = device_ids, .n = n};
  return fan_out(s, &ts, action, NULL, data_json, len, 1);
}

int ws_send_devices(ws_server *s, const char *const *device_ids, size_t n,
                    const char *action, const struct cJSON *data) {
  target_spec ts = {.kind = WS__T_DEVICES, .ids = device_ids, .n = n};
  return fan_out(s, &ts, action, data, NULL, 0, 0);
}

int ws_send_devices_json(ws_server *s, const char *const *device_ids,
                         size_t n, const char *action, const char *data_json,
                         size_t len) {
  target_spec ts = {.kind = WS__T_DEVICES, .ids = device_ids, .n = n};
  return fan_out(s, &ts, action, NULL, data_json, len, 1);
}

int ws_send_device(ws_server *s, const char *device_id, const char *action,
                   const struct cJSON *data) {
  target_spec ts = {.kind = WS__T_DEVICES, .ids = &device_id, .n = 1};
  if (s && !ws__device_id_ok(s, device_id)) return WS_EINVAL;
  return fan_out(s, &ts, action, data, NULL, 0, 0);
}

int ws_send_device_json(ws_server *s, const char *device_id,
                        const char *action, const char *data_json,
                        size_t len) {
  target_spec ts = {.kind = WS__T_DEVICES, .ids = &device_id, .n = 1};
  if (s && !ws__device_id_ok(s, device_id)) return WS_EINVAL;
  return fan_out(s, &ts, action, NULL, data_json, len, 1);
}

int ws_push_user(ws_server *s, const char *user, const char *action,
                 const struct cJSON *data) {
  target_spec ts = {.kind = WS__T_USER, .name = user};
  return fan_out(s, &ts, action, data, NULL, 0, 0);
}

int ws_push_user_json(ws_server *s, const char *user, const char *action,
                      const char *data_json, size_t len) {
  target_spec ts = {.kind = WS__T_USER, .name = user};
  return fan_out(s, &ts, action, NULL, data_json, len, 1);
}

int ws_publish(ws_server *s, const char *group, const char *action,
               const struct cJSON *data) {
  target_spec ts = {.kind = WS__T_GROUP, .name = group};
  return fan_out(s, &ts, action, data, NULL, 0, 0);
}

int ws_publish_json(ws_server *s, const char *group, const char *action,
                    const char *data_json, size_t len) {
  target_spec ts = {.kind = WS__T_GROUP, .name = group};
  return fan_out(s, &ts, action, NULL, data_json, len, 1);
}

/* ---- one connection -------------------------------------------------- */

/* Takes the caller's reference on b (NULL: building it failed with err). */
static int send_buf(ws_conn *c, ws__buf *b, int err) {
  int rc;
  if (b == NULL) return err;
  rc = ws__conn_queue(c, b);
  /* Only a frame queued counts, as only a fan-out that did not fail. */
  if (rc == WS_OK) c->s->st.frames_allocated++;
  ws__buf_unref(c->s, b);
  return rc;
}

static int conn_sendable(const ws_conn *c) {
  if (c == NULL) return WS_EINVAL;
  return ws__conn_sendable(c);
}

int ws_conn_send(ws_conn *c, const char *action, const struct cJSON *data) {
  int err = conn_sendable(c), rc;
  if (err != WS_OK || action == NULL) return err ? err : WS_EINVAL;
  ws__buf *b;
  ws__enter(c->s);
  b = ws__envelope_frame_cjson(c->s, action, data, &err);
  rc = send_buf(c, b, err);
  ws__leave(c->s);
  return rc;
}

int ws_conn_send_json(ws_conn *c, const char *action, const char *data_json,
                      size_t len) {
  int err = conn_sendable(c), rc;
  if (err != WS_OK || action == NULL) return err ? err : WS_EINVAL;
  ws__buf *b;
  ws__enter(c->s);
  b = ws__envelope_frame_json(c->s, action, data_json, len, &err);
  rc = send_buf(c, b, err);
  ws__leave(c->s);
  return rc;
}

static int send_raw(ws_conn *c, int opcode, const void *p, size_t len) {
  int err = conn_sendable(c), rc;
  if (err != WS_OK) return err;
  if (p == NULL && len) return WS_EINVAL;
  if (WS__TOO_BIG(c->s, len)) return WS_ETOOBIG;
  ws__enter(c->s);
  rc = send_buf(c, ws__buf_frame_copy(c->s, opcode, p, len), WS_ENOMEM);
  ws__leave(c->s);
  return rc;
}

int ws_conn_send_text(ws_conn *c, const char *text, size_t len) {
  int err = conn_sendable(c); /* the connection first, as in ws_conn_send */
  if (err != WS_OK) return err;
  if (WS__TOO_BIG(c->s, len)) return WS_ETOOBIG; /* before reading them */
  if (text && ws__utf8_validate(0, (const uint8_t *)text, len) !=
                  WS__UTF8_ACCEPT)
    return WS_EINVAL;
  return send_raw(c, WSLAY_TEXT_FRAME, text, len);
}

int ws_conn_send_binary(ws_conn *c, const void *data, size_t len) {
  return send_raw(c, WSLAY_BINARY_FRAME, data, len);
}
