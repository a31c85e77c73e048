/*
 * Deadlines: a binary min-heap of connections keyed by conn->deadline.
 *
 * Each connection has at most one entry, its earliest deadline. Reads and
 * writes only update timestamps on the connection (no heap work on the
 * per-message path); when an entry fires, conn.c recomputes the real
 * deadline and re-arms it if it moved. A tick therefore costs O(expired
 * entries x log n), and nothing for connections with no deadline due.
 */
#include <limits.h>

#include "internal.h"

#define NO_INDEX UINT32_MAX
#define MIN_CAP 64u

static void heap_place(ws_server *s, uint32_t i, ws_conn *c) {
  s->heap[i] = c;
  c->heap_idx = i;
}

static void sift_up(ws_server *s, uint32_t i) {
  ws_conn *c = s->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (s->heap[p]->deadline <= c->deadline) break;
    heap_place(s, i, s->heap[p]);
    i = p;
  }
  heap_place(s, i, c);
}

static void sift_down(ws_server *s, uint32_t i) {
  ws_conn *c = s->heap[i];
  for (;;) {
    uint32_t l = 2 * i + 1, m = i;
    uint64_t best = c->deadline;
    if (l < s->heap_len && s->heap[l]->deadline < best) {
      m = l;
      best = s->heap[l]->deadline;
    }
    if (l + 1 < s->heap_len && s->heap[l + 1]->deadline < best) m = l + 1;
    if (m == i) break;
    heap_place(s, i, s->heap[m]);
    i = m;
  }
  heap_place(s, i, c);
}

int ws__timer_reserve(ws_server *s) {
  uint32_t ncap;
  ws_conn **nh;
  if (s->heap_len < s->heap_cap) return WS_OK;
  ncap = s->heap_cap ? s->heap_cap * 2 : MIN_CAP;
  nh = ws__realloc(&s->al, s->heap, ncap * sizeof(*nh));
  if (nh == NULL) return WS_ENOMEM;
  s->heap = nh;
  s->heap_cap = ncap;
  return WS_OK;
}

int ws__timer_set(ws_server *s, ws_conn *c, uint64_t when) {
  if (c->heap_idx == NO_INDEX) {
    if (ws__timer_reserve(s) != WS_OK) return WS_ENOMEM;
    c->deadline = when;
    heap_place(s, s->heap_len++, c);
    sift_up(s, c->heap_idx);
    return WS_OK;
  }
  if (when < c->deadline) {
    c->deadline = when;
    sift_up(s, c->heap_idx);
  } else if (when > c->deadline) {
    c->deadline = when;
    sift_down(s, c->heap_idx);
  }
  return WS_OK;
}

/* A heap that grew for a crowd gives its memory back as the crowd leaves:
 * halved below 1/8 full (1/4 after, so a count moving around one size
 * does not resize at every step, and a reserved slot stays free). If the
 * smaller block cannot be had, the larger one simply stays. */
static void shrink_if_sparse(ws_server *s) {
  ws_conn **nh;
  if (s->heap_cap <= MIN_CAP || (uint64_t)s->heap_len * 8 >= s->heap_cap)
    return;
  nh = ws__realloc(&s->al, s->heap, (s->heap_cap / 2) * sizeof(*nh));
  if (nh == NULL) return;
  s->heap = nh;
  s->heap_cap /= 2;
}

void ws__timer_clear(ws_server *s, ws_conn *c) {
  uint32_t i = c->heap_idx;
  ws_conn *last;
  if (i == NO_INDEX) return;
  c->heap_idx = NO_INDEX;
  last = s->heap[--s->heap_len];
  if (last != c) {
    heap_place(s, i, last);
    sift_down(s, i);
    sift_up(s, last->heap_idx);
  }
  shrink_if_sparse(s);
}

void ws__timer_run(ws_server *s) {
  while (s->heap_len > 0 && s->heap[0]->deadline <= s->now) {
    ws_conn *c = s->heap[0];
    ws__timer_clear(s, c);
    ws__conn_expired(c);
  }
}

int ws__timer_next(const ws_server *s) {
  uint64_t d;
  if (s->heap_len == 0) return -1;
  d = s->heap[0]->deadline;
  d = d <= s->now ? 0 : d - s->now;
  return d > INT_MAX ? INT_MAX : (int)d;
}
