/* The deadline heap (lib/timer.c) driven directly: random arms, moves
 * earlier and later, and removals from any position, with the heap order and
 * every entry's back-index checked after each step. The public-API tests
 * reach the heap only through connection timeouts, whose shapes leave some
 * sift paths unexercised (e.g. a removal that must move the last entry up,
 * not down). */
#include "internal.h"
#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

enum { NC = 300, STEPS = 20000 };

static ws_conn conns[NC];
static int in_heap[NC];

static unsigned rnd(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return *seed >> 8;
}

/* Heap order, back-indexes and membership all agree. */
static void check_heap(const ws_server *s) {
  uint32_t i;
  int members = 0, k;
  for (i = 0; i < s->heap_len; i++) {
    cr_assert_eq(s->heap[i]->heap_idx, i, "entry %u has back-index %u", i,
                 s->heap[i]->heap_idx);
    if (i > 0)
      cr_assert_leq(s->heap[(i - 1) / 2]->deadline, s->heap[i]->deadline,
                    "entry %u is earlier than its parent", i);
  }
  for (k = 0; k < NC; k++) {
    members += in_heap[k];
    cr_assert_eq(conns[k].heap_idx != UINT32_MAX, in_heap[k]);
  }
  cr_assert_eq((uint32_t)members, s->heap_len);
}

static void step(ws_server *s, unsigned *seed) {
  int k = (int)(rnd(seed) % NC);
  ws_conn *c = &conns[k];
  unsigned op = rnd(seed) % 4;
  if (op == 0 && in_heap[k]) {
    ws__timer_clear(s, c);
    in_heap[k] = 0;
    return;
  }
  /* Few distinct values, so ties are common as well. */
  cr_assert_eq(ws__timer_set(s, c, 1000 + rnd(seed) % 500), WS_OK);
  in_heap[k] = 1;
}

Test(timer_heap, order_kept_under_random_arms_moves_and_removals) {
  ws_config cfg;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  ws_server *s = NULL;
  unsigned seed = 7;
  int i;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  memset(conns, 0, sizeof conns);
  for (i = 0; i < NC; i++) conns[i].heap_idx = UINT32_MAX;
  for (i = 0; i < STEPS; i++) {
    step(s, &seed);
    check_heap(s);
  }
  /* Emptied from the top, the deadlines come out in order. */
  uint64_t last = 0;
  while (s->heap_len > 0) {
    ws_conn *c = s->heap[0];
    cr_assert_geq(c->deadline, last);
    last = c->deadline;
    ws__timer_clear(s, c);
    in_heap[c - conns] = 0;
    check_heap(s);
  }
  ws_server_free(s);
}

/* The shape the random walk must not miss: the last entry, moved into a hole
 * under a later parent, has to rise. Heap [1, 10, 2, 11, 12, 3, 4]; removing
 * 11 (index 3) puts 4 under 10. */
Test(timer_heap, removal_moves_the_last_entry_up) {
  static const uint64_t d[7] = {1, 10, 2, 11, 12, 3, 4};
  ws_config cfg;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  ws_server *s = NULL;
  int i;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  memset(conns, 0, sizeof conns);
  memset(in_heap, 0, sizeof in_heap);
  for (i = 0; i < NC; i++) conns[i].heap_idx = UINT32_MAX;
  for (i = 0; i < 7; i++) {
    cr_assert_eq(ws__timer_set(s, &conns[i], d[i]), WS_OK);
    in_heap[i] = 1;
    cr_assert_eq(conns[i].heap_idx, (uint32_t)i); /* inserted in heap order */
  }
  ws__timer_clear(s, &conns[3]);
  in_heap[3] = 0;
  check_heap(s);
  cr_assert_eq(s->heap[1]->deadline, 4);
  while (s->heap_len > 0) ws__timer_clear(s, s->heap[0]);
  ws_server_free(s);
}
