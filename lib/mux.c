/*
 * The action -> handler table. A mux is itself a handler (ws_mux_serve), so
 * a server takes a plain function or a mux the same way. Dispatch is one
 * hash lookup, or none when the action is the one dispatched last (clients
 * send the same action over and over: heartbeats, pings); the entry's
 * function and user data are copied before the call, so a handler may
 * remove itself or any other entry.
 */
#include <string.h>

#include "internal.h"

typedef struct mux_entry {
  char *action;
  ws_handler_fn fn;
  void *user_data;
  UT_hash_handle hh;
} mux_entry;

struct ws_mux {
  ws__alloc al;
  mux_entry *table;
  mux_entry *last; /* the entry dispatched last, or NULL */
  ws_handler_fn fallback, binary;
  void *fallback_data, *binary_data;
};

ws_mux *ws_mux_new(const ws_allocator *alloc) {
  ws__alloc al;
  ws_mux *m;
  if (ws__alloc_init(&al, alloc) != WS_OK) return NULL;
  m = ws__malloc(&al, sizeof(*m));
  if (m == NULL) return NULL;
  memset(m, 0, sizeof(*m));
  m->al = al;
  return m;
}

static void entry_free(ws_mux *m, mux_entry *e) {
  ws__free(&m->al, e->action);
  ws__free(&m->al, e);
}

void ws_mux_free(ws_mux *m) {
  const ws__alloc *hal;
  mux_entry *e, *tmp;
  if (m == NULL) return;
  hal = &m->al;
  HASH_ITER(hh, m->table, e, tmp) {
    HASH_DEL(m->table, e);
    entry_free(m, e);
  }
  ws__free(hal, m);
}

int ws_mux_handle(ws_mux *m, const char *action, ws_handler_fn fn, void *ud) {
  const ws__alloc *hal;
  mux_entry *e;
  int hash_oom = 0;
  if (m == NULL || action == NULL || fn == NULL) return WS_EINVAL;
  if (!ws__action_ok(action)) return WS_EINVAL; /* could never be dispatched */
  hal = &m->al;
  HASH_FIND_STR(m->table, action, e);
  if (e) return WS_EEXIST;
  e = ws__malloc(hal, sizeof(*e));
  if (e == NULL) return WS_ENOMEM;
  memset(e, 0, sizeof(*e));
  if ((e->action = ws__strdup(hal, action)) == NULL) {
    ws__free(hal, e);
    return WS_ENOMEM;
  }
  e->fn = fn;
  e->user_data = ud;
  HASH_ADD_KEYPTR(hh, m->table, e->action, strlen(e->action), e);
  if (hash_oom) {
    entry_free(m, e);
    return WS_ENOMEM;
  }
  return WS_OK;
}

int ws_mux_remove(ws_mux *m, const char *action) {
  const ws__alloc *hal;
  mux_entry *e;
  if (m == NULL || action == NULL) return WS_EINVAL;
  hal = &m->al;
  HASH_FIND_STR(m->table, action, e);
  if (e == NULL) return WS_ENOENT;
  if (m->last == e) m->last = NULL;
  HASH_DEL(m->table, e);
  entry_free(m, e);
  return WS_OK;
}

int ws_mux_fallback(ws_mux *m, ws_handler_fn fn, void *ud) {
  if (m == NULL) return WS_EINVAL;
  m->fallback = fn;
  m->fallback_data = ud;
  return WS_OK;
}

int ws_mux_binary(ws_mux *m, ws_handler_fn fn, void *ud) {
  if (m == NULL) return WS_EINVAL;
  m->binary = fn;
  m->binary_data = ud;
  return WS_OK;
}

static int dispatch(ws_conn *c, const ws_msg *msg, ws_mux *m) {
  mux_entry *e;
  ws_handler_fn fn;
  void *ud;
  if (msg->binary) {
    if (m->binary == NULL) {
      ws_conn_close(c, WS_CLOSE_UNSUPPORTED, "binary messages not accepted");
      return WS_OK;
    }
    return m->binary(c, msg, m->binary_data);
  }
  e = m->last;
  if (e == NULL || strcmp(e->action, msg->action) != 0) {
    HASH_FIND_STR(m->table, msg->action, e);
    if (e) m->last = e;
  }
  if (e) {
    fn = e->fn;
    ud = e->user_data;
  } else {
    fn = m->fallback;
    ud = m->fallback_data;
  }
  if (fn == NULL) {
    ws__envelope_error(c, "unknown_action", msg->action);
    return WS_OK;
  }
  return fn(c, msg, ud);
}

/* A library frame of its own, as every entry point has: a host may call it
 * outside a handler (a message of its own making), and what the handler
 * queues goes out, and what it ends is freed, when this returns. */
int ws_mux_serve(ws_conn *c, const ws_msg *msg, void *mux) {
  ws_server *s;
  int rc;
  if (mux == NULL || c == NULL || msg == NULL ||
      (!msg->binary && msg->action == NULL))
    return WS_EINVAL;
  s = c->s;
  ws__enter(s);
  rc = dispatch(c, msg, mux);
  ws__leave(s);
  return rc;
}
