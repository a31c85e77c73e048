/* The device index under churn: random opens and closes, every id checked
 * against a model after each step (linear probing with backward-shift
 * deletion is easy to get subtly wrong). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "wsmux.h"

#define IDS 300

static ssize_t sink(ws_conn *c, void *t, const void *d, size_t n) {
  (void)c, (void)t, (void)d;
  return (ssize_t)n;
}
static int noop_close(ws_conn *c, void *t) {
  (void)c, (void)t;
  return 0;
}

/* A server on the counting allocator that writes nowhere. */
static ws_server *server_new_counted(void) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  cfg.send = sink;
  cfg.close = noop_close;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  return s;
}

static ws_conn *open_device(ws_server *s, int id) {
  char req[256];
  ws_conn *c;
  int n = snprintf(req, sizeof(req),
                   "GET /ws?device_id=dev-%d HTTP/1.1\r\nHost: h\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n", id);
  cr_assert_eq(ws_conn_new(s, NULL, &c), WS_OK);
  cr_assert_eq(ws_conn_feed(c, req, (size_t)n), WS_OK);
  return c;
}

Test(device_index, churn_matches_model) {
  ws_conn *model[IDS] = {0};
  ws_server *s;
  int step, id;
  char name[32];
  s = server_new_counted();
  srand(7);
  for (step = 0; step < 20000; step++) {
    id = rand() % IDS;
    if (model[id] && rand() % 2) {
      ws_conn_abort(model[id]);
      model[id] = NULL;
    } else if (!model[id]) {
      model[id] = open_device(s, id);
    }
    if (step % 97 == 0 || step > 19900) {
      int k;
      for (k = 0; k < IDS; k++) {
        snprintf(name, sizeof(name), "dev-%d", k);
        cr_assert_eq(ws_server_find_device(s, name), model[k], "id %d step %d",
                     k, step);
      }
    }
  }
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

/* Devices that come and go leave the index as they found it: each close
 * takes its entry out of the table's count, so a server that has seen
 * thousands of distinct ids, one at a time, holds no more heap than after
 * the first (a count that only grew would double the table again and
 * again, and find_device would never see it empty). */
Test(device_index, distinct_ids_one_at_a_time_do_not_grow_the_heap) {
  ws_server *s;
  long after_first = 0;
  int id;
  s = server_new_counted();
  for (id = 0; id < 2000; id++) {
    ws_conn *c = open_device(s, id);
    cr_assert_eq(ws_server_find_device(s, "dev-0"), id == 0 ? c : NULL);
    ws_conn_abort(c);
    if (id == 0) after_first = test_alloc_live_bytes();
  }
  cr_assert_eq(test_alloc_live_bytes(), after_first,
               "live heap %ld bytes after 2000 devices, %ld after the first",
               test_alloc_live_bytes(), after_first);
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

/* The table halves only below 1/8 load (1/4 after): a count going down
 * and up by one does not resize it at each step. Closing one of 41
 * devices (128 slots) and opening another costs the allocations of the
 * connection alone, as it does at 10 (the 64-slot minimum) (mutation
 * pass: halved below 1/2 load, each close shrank it and each open grew
 * it again; only the memory given back was tested). */
static long churn_cost(ws_server *s, ws_conn **v, int n) {
  int i;
  test_alloc_reset(0);
  for (i = 0; i < 20; i++) {
    ws_conn_abort(v[n - 1]);
    v[n - 1] = open_device(s, n - 1);
  }
  return test_alloc_count();
}

Test(device_index, a_count_moving_by_one_does_not_resize_the_table) {
  static ws_conn *v[41];
  ws_server *s;
  long at10, at41;
  int id;
  s = server_new_counted();
  for (id = 0; id < 10; id++) v[id] = open_device(s, id);
  at10 = churn_cost(s, v, 10);
  for (; id < 41; id++) v[id] = open_device(s, id);
  at41 = churn_cost(s, v, 41);
  cr_assert_eq(at41, at10, "20 steps: %ld allocations at 41 devices, %ld "
               "at 10", at41, at10);
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

/* A crowd that came and went leaves the table as small as one device
 * did: 10,000 ids open at once grow it to 32,768 slots (256 KiB on a
 * 64-bit host), and it halves back down as they close, instead of keeping
 * its peak for the server's life. */
Test(device_index, a_crowd_that_left_gives_the_table_back) {
  static ws_conn *crowd[10000];
  ws_server *s;
  long after_first, peak;
  int id, n = (int)(sizeof(crowd) / sizeof(crowd[0]));
  s = server_new_counted();
  ws_conn_abort(open_device(s, -1));
  after_first = test_alloc_live_bytes();
  for (id = 0; id < n; id++) crowd[id] = open_device(s, id);
  peak = test_alloc_live_bytes();
  for (id = 0; id < n; id++) {
    ws_conn_abort(crowd[n - 1 - id]);
    if (id == n / 2)
      cr_assert_not_null(ws_server_find_device(s, "dev-0"));
  }
  cr_assert_eq(test_alloc_live_bytes(), after_first,
               "live heap %ld bytes after the crowd left, %ld before it "
               "(%ld at its peak)",
               test_alloc_live_bytes(), after_first, peak);
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}
