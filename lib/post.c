/*
 * Messages posted from other threads (ws_post). The posting thread builds
 * the frame (so JSON errors come back to it) and appends it to a
 * mutex-guarded FIFO; the loop thread takes the whole list at its next tick
 * and delivers through the same path as ws_broadcast. One FIFO per server
 * keeps each poster's messages in the order posted. The only lock in the
 * library; nothing else here is touched from another thread.
 */
#include <string.h>

#include "internal.h"

typedef struct ws__post {
  struct ws__post *next;
  ws__buf *frame;
  int kind; /* enum ws__target */
  char name[];
} ws__post;

int ws__post_init(ws_server *s) {
  return pthread_mutex_init(&s->post_lock, NULL) == 0 ? WS_OK : WS_ENOMEM;
}

static int post_kind(int target) {
  switch (target) {
  case WS_POST_ALL: return WS__T_ALL;
  case WS_POST_DEVICE: return WS__T_DEVICES;
  case WS_POST_USER: return WS__T_USER;
  case WS_POST_GROUP: return WS__T_GROUP;
  default: return -1;
  }
}

int ws_post(ws_server *s, int target, const char *name, const char *action,
            const char *data_json, size_t len) {
  int kind = post_kind(target), err, wake;
  size_t nlen;
  ws__post *p;
  if (s == NULL || kind < 0 || action == NULL || (data_json == NULL && len) ||
      (kind != WS__T_ALL && name == NULL) ||
      !ws__target_ok(kind, name, NULL, 0))
    return WS_EINVAL;
  nlen = kind == WS__T_ALL ? 0 : strlen(name);
  p = ws__malloc(&s->al, sizeof(*p) + nlen + 1);
  if (p == NULL) return WS_ENOMEM;
  p->frame = ws__envelope_frame_json(s, action, data_json, len, &err);
  if (p->frame && p->frame->len > s->cfg.max_queued) { /* as ws__deliver */
    ws__buf_unref(s, p->frame);
    p->frame = NULL;
    err = WS_ETOOBIG;
  }
  if (p->frame == NULL) {
    ws__free(&s->al, p);
    return err;
  }
  p->next = NULL;
  p->kind = kind;
  memcpy(p->name, kind == WS__T_ALL ? "" : name, nlen + 1);
  pthread_mutex_lock(&s->post_lock);
  if (s->post_closed) {
    pthread_mutex_unlock(&s->post_lock);
    ws__buf_unref(s, p->frame);
    ws__free(&s->al, p);
    return WS_ESHUTDOWN;
  }
  wake = s->post_head == NULL;
  if (s->post_tail)
    s->post_tail->next = p;
  else
    __atomic_store_n(&s->post_head, p, __ATOMIC_RELEASE);
  s->post_tail = p;
  pthread_mutex_unlock(&s->post_lock);
  if (wake && s->cfg.wake) s->cfg.wake(s, s->cfg.user_data);
  return WS_OK;
}

/* Every tick calls this, and posts are rare next to ticks: an empty queue
 * is seen without the lock. A post that lands after the check is not lost:
 * it found the queue empty, so it calls the host's wake, and the loop
 * ticks again. */
static ws__post *take_all(ws_server *s) {
  ws__post *list;
  if (__atomic_load_n(&s->post_head, __ATOMIC_ACQUIRE) == NULL) return NULL;
  pthread_mutex_lock(&s->post_lock);
  list = s->post_head;
  __atomic_store_n(&s->post_head, NULL, __ATOMIC_RELAXED);
  s->post_tail = NULL;
  pthread_mutex_unlock(&s->post_lock);
  return list;
}

void ws__post_drain(ws_server *s) {
  ws__post *p = take_all(s);
  while (p) {
    ws__post *next = p->next;
    const char *id = p->name;
    s->st.frames_allocated++;
    ws__deliver(s, p->frame, p->kind, p->name, &id, 1);
    ws__buf_unref(s, p->frame);
    ws__free(&s->al, p);
    p = next;
  }
}

void ws__post_close(ws_server *s) {
  pthread_mutex_lock(&s->post_lock);
  s->post_closed = 1;
  pthread_mutex_unlock(&s->post_lock);
}

void ws__post_free(ws_server *s) {
  ws__post *p;
  ws__post_close(s);
  p = take_all(s);
  while (p) {
    ws__post *next = p->next;
    ws__buf_unref(s, p->frame);
    ws__free(&s->al, p);
    p = next;
  }
  pthread_mutex_destroy(&s->post_lock);
}
