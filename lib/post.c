/*
 * Messages posted from other threads (ws_post). The posting thread builds
 * the frame (so JSON errors come back to it) and appends it to a
 * mutex-guarded FIFO of at most max_posted bytes; the loop thread pops it
 * one message at a time at its next tick and delivers through the same
 * path as ws_broadcast, flushing after each one like a broadcast does (a
 * backlog must not count against a receiver's max_queued all at once).
 * A callback run by a delivery (on_log, from a full queue's policy) may
 * tick again: that nested tick drains nothing, since the post being fanned
 * out has not reached every receiver yet and the next one must not pass
 * it; the outer drain goes on. One FIFO per server keeps each poster's
 * messages in the order posted. The only lock in the
 * library; nothing else here is touched from another thread.
 */
#include <string.h>

#include "internal.h"

typedef struct ws__post {
  struct ws__post *next;
  ws__buf *frame;
  size_t cost; /* heap bytes it holds: counted against max_posted */
  int kind;    /* enum ws__target */
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

/* Every heap byte a waiting post holds, not only its frame: counted
 * against max_posted. */
static size_t post_cost(size_t nlen, size_t frame_len) {
  return sizeof(ws__post) + nlen + 1 + sizeof(ws__buf) + frame_len;
}

/* Whether a post of frame_len bytes fits an empty queue: not larger than
 * max_queued (as ws__deliver) or max_posted. One that does not is too big,
 * never a reason to retry. ws_post asks it before the frame is built.
 * Not post_cost(nlen, frame_len) <= max_posted: with a 32-bit size_t, a
 * frame near 4 GiB and a long device id add up past SIZE_MAX, and under
 * a max_posted near it ("no limit") the sum would wrap under the cap.
 * post_cost(nlen, 0) does not wrap: the name is a string in memory. */
static int post_fits(const ws_server *s, size_t nlen, size_t frame_len) {
  size_t fixed = post_cost(nlen, 0);
  return frame_len <= s->cfg.max_queued && fixed <= s->cfg.max_posted &&
         frame_len <= s->cfg.max_posted - fixed;
}

/* The message, framed on this thread (so errors come back to it). nlen:
 * name's length (0 for WS__T_ALL). */
static ws__post *post_new(ws_server *s, int kind, const char *name,
                          size_t nlen, const char *action,
                          const char *data_json, size_t len, int *err) {
  ws__post *p = ws__malloc(&s->al, sizeof(*p) + nlen + 1);
  if (p == NULL) {
    *err = WS_ENOMEM;
    return NULL;
  }
  p->frame = ws__envelope_frame_json(s, action, data_json, len, err);
  if (p->frame == NULL) {
    ws__free(&s->al, p);
    return NULL;
  }
  p->cost = post_cost(nlen, p->frame->len);
  p->next = NULL;
  p->kind = kind;
  memcpy(p->name, kind == WS__T_ALL ? "" : name, nlen + 1);
  return p;
}

static void post_free(ws_server *s, ws__post *p) {
  ws__buf_unref(s, p->frame);
  ws__free(&s->al, p);
}

/* Appends p under the lock; wakes the loop when the queue was empty (the
 * callback is read under the lock, like all of s this thread reads). */
static int post_append(ws_server *s, ws__post *p) {
  int (*wake)(ws_server *, void *) = NULL;
  void *ud = NULL;
  int err;
  pthread_mutex_lock(&s->post_lock);
  err = s->post_closed ? WS_ESHUTDOWN
        : s->post_bytes + p->cost > s->cfg.max_posted ? WS_ELIMIT
                                                           : WS_OK;
  if (err == WS_OK) {
    __atomic_store_n(&s->post_bytes, s->post_bytes + p->cost,
                     __ATOMIC_RELAXED);
    if (s->post_head == NULL) wake = s->cfg.wake, ud = s->cfg.user_data;
    if (s->post_tail)
      s->post_tail->next = p;
    else
      __atomic_store_n(&s->post_head, p, __ATOMIC_RELEASE);
    s->post_tail = p;
  }
  pthread_mutex_unlock(&s->post_lock);
  if (err != WS_OK) post_free(s, p);
  else if (wake) wake(s, ud);
  return err;
}

/* Refuses, before the frame is built, a post costing cost bytes (at most
 * max_posted) that the queue cannot take now: a producer that retries on
 * WS_ELIMIT (or has not yet seen the shutdown) then costs two loads per
 * try, not a JSON check, an allocation and a free. A hint: post_append
 * decides under the lock. */
static int post_room(ws_server *s, size_t cost) {
  if (__atomic_load_n(&s->post_closed, __ATOMIC_RELAXED)) return WS_ESHUTDOWN;
  if (__atomic_load_n(&s->post_bytes, __ATOMIC_RELAXED) >
      s->cfg.max_posted - cost)
    return WS_ELIMIT;
  return WS_OK;
}

int ws_post(ws_server *s, int target, const char *name, const char *action,
            const char *data_json, size_t len) {
  int kind = post_kind(target), err;
  size_t nlen, flen;
  ws__post *p;
  if (s == NULL || kind < 0 || action == NULL || !ws__action_ok(action) ||
      (data_json == NULL && len) || (kind != WS__T_ALL && name == NULL) ||
      !ws__target_ok(kind, name, NULL, 0) ||
      (kind == WS__T_DEVICES && !ws__device_id_ok(s, name)))
    return WS_EINVAL;
  if (WS__TOO_BIG(s, len)) return WS_ETOOBIG; /* cfg is read-only: safe */
  /* The frame holds data_json's len bytes as given and its envelope,
   * whose size the action alone tells: whether the post ever fits, and
   * whether it fits now, are both known before data_json is read. A post
   * that never fits is WS_ETOOBIG whatever is waiting; only one that does
   * may be told to retry. flen does not wrap: len is at most
   * WS__MESSAGE_MAX, 2 KiB under a 32-bit size_t's limit, and the
   * envelope adds at most 1.6 KiB. Its cost with the name may (a long
   * device id): post_fits compares without that sum, and the cost it
   * lets through is at most max_posted. */
  nlen = kind == WS__T_ALL ? 0 : strlen(name);
  flen = ws__envelope_frame_len(action, data_json != NULL, len);
  if (!post_fits(s, nlen, flen)) return WS_ETOOBIG;
  if ((err = post_room(s, post_cost(nlen, flen))) != WS_OK) return err;
  p = post_new(s, kind, name, nlen, action, data_json, len, &err);
  return p ? post_append(s, p) : err;
}

/* Every tick calls this, and posts are rare next to ticks: an empty queue
 * is seen without the lock. A post that lands after the check is not lost:
 * it found the queue empty, so it calls the host's wake, and the loop
 * ticks again. */
static ws__post *pop(ws_server *s) {
  ws__post *p;
  if (__atomic_load_n(&s->post_head, __ATOMIC_ACQUIRE) == NULL) return NULL;
  pthread_mutex_lock(&s->post_lock);
  p = s->post_head;
  if (p) {
    __atomic_store_n(&s->post_head, p->next, __ATOMIC_RELAXED);
    if (p->next == NULL) s->post_tail = NULL;
    __atomic_store_n(&s->post_bytes, s->post_bytes - p->cost,
                     __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&s->post_lock);
  return p;
}

/* At most what was queued when it started (so producers faster than the
 * loop cannot keep one tick going forever), and once max_deliveries
 * connections were queued for, at least one post: a backlog fanned out to
 * many connections would otherwise hold the loop (no reads, no accepts)
 * for as long as it takes. Stops if a callback destroys the server. */
void ws__post_drain(ws_server *s, size_t max_deliveries) {
  size_t budget, delivered = 0;
  ws__post *p;
  if (s->post_draining) return;
  s->post_draining = 1;
  pthread_mutex_lock(&s->post_lock);
  budget = s->post_bytes;
  pthread_mutex_unlock(&s->post_lock);
  while (!s->destroying && (p = pop(s)) != NULL) {
    const char *id = p->name;
    size_t cost = p->cost;
    int n;
    n = ws__deliver(s, p->frame, p->kind, p->name, &id, 1);
    if (n >= 0) /* counted as a fan-out's frame: if it did not fail */
      s->st.frames_allocated++;
    else if (n == WS_ENOMEM)
      ws__log(s, WS_LOG_ERROR, "out of memory: a posted message was dropped");
    post_free(s, p);
    /* Out before the next post, as a broadcast's return sends it, so that
     * a backlog does not count against max_queued all at once. Also from
     * a callback (ws_server_shutdown in a handler): a flush is safe at any
     * depth (ws__outq_flush leaves a queue inside its own send alone). */
    ws__flush_dirty(s);
    delivered += n > 0 ? (size_t)n : 0;
    if (!s->shutdown_deferred &&
        (cost >= budget || delivered >= max_deliveries))
      break;
    budget -= cost < budget ? cost : budget;
  }
  s->post_draining = 0;
  /* A shutdown asked for by a callback during the fan-out: its closes wait
   * until every post accepted before it went out (drained above). */
  if (s->shutdown_deferred && !s->destroying) ws__shutdown_close(s);
}

int ws__post_pending(ws_server *s) {
  return __atomic_load_n(&s->post_head, __ATOMIC_ACQUIRE) != NULL;
}

void ws__post_close(ws_server *s) {
  pthread_mutex_lock(&s->post_lock);
  __atomic_store_n(&s->post_closed, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&s->post_lock);
}

void ws__post_free(ws_server *s) {
  ws__post *p;
  ws__post_close(s);
  while ((p = pop(s)) != NULL) post_free(s, p);
  pthread_mutex_destroy(&s->post_lock);
}
