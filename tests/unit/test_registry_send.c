/* registry.c and send.c: the device index and its duplicate policy, users
 * and groups, removal on close, broadcast and its one shared frame, fan-out
 * while handlers change the lists, ws_post from the loop thread, and
 * per-connection order. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

#define MAXC 100

static ws_server *S;
static mt_conn C[MAXC];
static struct {
  int msgs;
  int on_close;
  int on_close_code[MAXC];
  int do_close_others; /* "kick" handler closes C[1] and C[2] */
  int edit_in_close;   /* on_close tries to change memberships */
  int edit_rc[6];
  void (*log_hook)(void); /* run by on_log, once per log line */
} G;

static int cidx(ws_conn *c) {
  return (int)((mt_conn *)ws_conn_transport(c) - C);
}

static int h_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud;
  G.msgs++;
  if (m->action && strcmp(m->action, "kick") == 0) {
    /* Closes others, then broadcasts while they are closing. */
    if (C[1].c) ws_conn_abort(C[1].c);
    if (C[2].c) ws_conn_close(C[2].c, 1000, "kicked");
    cr_assert_eq(ws_broadcast_json(ws_conn_server(c), "after_kick", "1", 1,
                                   NULL, 0),
                 2, "only the open ones: 0 and 3");
  }
  return 0;
}

static int h_on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)reason, (void)ud;
  G.on_close++;
  G.on_close_code[cidx(c)] = code;
  if (G.edit_in_close) {
    cr_assert_str_eq(ws_conn_user(c), "u", "still readable in on_close");
    G.edit_rc[0] = ws_conn_set_user(c, "u");
    G.edit_rc[1] = ws_conn_set_user(c, NULL);
    G.edit_rc[2] = ws_conn_leave(c, "room");
    G.edit_rc[3] = ws_conn_join(c, "other");
    /* A bad name is the caller's error whatever the state, as join says. */
    G.edit_rc[4] = ws_conn_set_user(c, "");
    G.edit_rc[5] = ws_conn_join(c, "");
  }
  return 0;
}

static void h_on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)level, (void)msg, (void)ud;
  if (G.log_hook) G.log_hook();
}

/* The server every test here starts from; max_queued 0 keeps the
 * default. */
static void fixture_queue(size_t max_queued, int queue_policy) {
  ws_config cfg;
  memset(&G, 0, sizeof(G));
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.handler = h_handler;
  cfg.on_close = h_on_close;
  cfg.on_log = h_on_log;
  if (max_queued) cfg.max_queued = max_queued;
  cfg.queue_policy = queue_policy;
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  ws_server_tick(S, 0); /* the host's clock starts at 0 */
}

static void fixture(void) { fixture_queue(0, WS_QUEUE_CLOSE); }

static void finish(void) {
  int i;
  ws_server_free(S);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  for (i = 0; i < MAXC; i++) mt_free(&C[i]);
}

static void connect_n(int n, int mode) {
  int i;
  for (i = 0; i < n; i++) {
    char id[16];
    snprintf(id, sizeof(id), "d%d", i);
    mt_connect(&C[i], S, id, mode);
  }
}

/* The peer answers our close frame, echoing its code. */
static void peer_close(mt_conn *t, int code, int mode) {
  mt_bytes b = {.p = NULL};
  mt_close_add(&b, code, NULL);
  mt_feed(t, b.p, b.len, mode);
  mt_bytes_free(&b);
}

/* ---- the device index ---------------------------------------------- */

Test(registry, device_lookup) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture();
    connect_n(3, mode);
    cr_assert_eq(ws_server_find_device(S, "d0"), C[0].c);
    cr_assert_eq(ws_server_find_device(S, "d1"), C[1].c);
    cr_assert_eq(ws_server_find_device(S, "d2"), C[2].c);
    cr_assert_null(ws_server_find_device(S, "d3"));
    cr_assert_null(ws_server_find_device(S, "D0"));
    cr_assert_null(ws_server_find_device(S, NULL));
    cr_assert_eq(ws_send_device(S, "d1", "hi", NULL), 1);
    mt_expect_text(&C[1], "{\"action\":\"hi\"}");
    cr_assert_eq(ws_send_device_json(S, "d2", "hi", "[1, 2]", 6), 1);
    mt_expect_text(&C[2], "{\"action\":\"hi\",\"data\":[1, 2]}");
    cr_assert_eq(ws_send_device_json(S, "d3", "hi", "1", 1), 0);
    cr_assert_eq(ws_send_device_json(S, "d1", "hi", "[1,", 3), WS_EJSON);
    mt_expect_nothing(&C[0]);
    mt_expect_nothing(&C[1]);
    mt_expect_nothing(&C[2]);
    finish();
  }
}

/* ws_send_device with a NULL id is the caller's error, not an unknown
 * target: WS_EINVAL, and neither unknown_targets nor the fan-out counters
 * move (a NULL inside a device list is different: counted, not fatal). */
Test(registry, send_device_null_id_is_einval_and_counts_nothing) {
  ws_stats a, b;
  fixture();
  connect_n(1, MT_WHOLE);
  ws_server_stats(S, &a, sizeof(a));
  cr_assert_eq(ws_send_device(S, NULL, "hi", NULL), WS_EINVAL);
  cr_assert_eq(ws_send_device_json(S, NULL, "hi", "1", 1), WS_EINVAL);
  ws_server_stats(S, &b, sizeof(b));
  cr_assert_eq(b.unknown_targets, a.unknown_targets);
  cr_assert_eq(b.broadcasts, a.broadcasts);
  cr_assert_eq(b.frames_allocated, a.frames_allocated);
  mt_expect_nothing(&C[0]);
  finish();
}

/* An id of exactly max_device_id bytes is one a connection can hold (the
 * upgrade accepts it), so ws_send_device reaches it; only a longer one is
 * WS_EINVAL (wsmux.h: "longer than max_device_id"). */
Test(registry, send_device_reaches_an_id_of_exactly_max_device_id_bytes) {
  char id[130];
  fixture();
  memset(id, 'k', 128); /* the default max_device_id */
  id[128] = '\0';
  mt_connect(&C[0], S, id, MT_WHOLE);
  cr_assert_eq(ws_server_find_device(S, id), C[0].c);
  cr_assert_eq(ws_send_device(S, id, "hi", NULL), 1);
  mt_expect_text(&C[0], "{\"action\":\"hi\"}");
  cr_assert_eq(ws_send_device_json(S, id, "hi", "1", 1), 1);
  mt_expect_text(&C[0], "{\"action\":\"hi\",\"data\":1}");
  id[128] = 'k';
  id[129] = '\0';
  cr_assert_eq(ws_send_device(S, id, "hi", NULL), WS_EINVAL);
  cr_assert_eq(ws_send_device_json(S, id, "hi", "1", 1), WS_EINVAL);
  mt_expect_nothing(&C[0]);
  finish();
}

/* A connection still in its handshake is not counted as open (nor found,
 * nor sent to); it is counted as pending until its 101. */
Test(registry, conn_count_leaves_out_handshakes) {
  ws_stats st;
  fixture();
  connect_n(1, MT_WHOLE);
  mt_open(&C[1], S);
  mt_feed_str(&C[1], "GET /ws?device_id=d1 HTTP/1.1\r\n", MT_WHOLE);
  cr_assert_eq(ws_server_conn_count(S), 1);
  ws_server_stats(S, &st, sizeof st);
  cr_assert_eq(st.conns_open, 1);
  cr_assert_eq(st.conns_pending, 1);
  cr_assert_null(ws_server_find_device(S, "d1"));
  cr_assert_eq(ws_broadcast(S, "hi", NULL, NULL, 0), 1);
  finish();
}

/* The Go model's bug: a reconnect overwrote the older entry, and when the
 * older connection then closed it deleted the newer one's entry, so the
 * device became unreachable. Here the older is closed with 4000, and after
 * it finished closing the newer is still found and still receives. */
Test(registry, regression_go_model_older_duplicate_close_must_not_unregister_newer) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn *older = &C[0], *newer = &C[1];
    ws_stats st;
    fixture();
    mt_connect(older, S, "phone", mode);
    cr_assert_eq(ws_conn_join(older->c, "room"), WS_OK);
    mt_connect(newer, S, "phone", mode);
    cr_assert_eq(ws_server_find_device(S, "phone"), newer->c);
    mt_expect_close(older, 4000);
    cr_assert_eq(older->closes, 0, "older waits for its peer's close");
    /* The older finishes its close handshake. */
    peer_close(older, 4000, mode);
    cr_assert_eq(older->closes, 1);
    cr_assert_eq(G.on_close_code[0], 4000);
    cr_assert_eq(ws_server_find_device(S, "phone"), newer->c,
                 "the older's close removed the newer's entry");
    cr_assert_eq(ws_send_device(S, "phone", "still", NULL), 1);
    mt_expect_text(newer, "{\"action\":\"still\"}");
    cr_assert_eq(ws_broadcast_json(S, "list", "2", 1,
                                   (const char *const[]){"phone"}, 1),
                 1);
    mt_expect_text(newer, "{\"action\":\"list\",\"data\":2}");
    ws_server_stats(S, &st, sizeof(st));
    cr_assert_eq(st.closes_4000, 1);
    cr_assert_eq(st.conns_open, 1);
    cr_assert_eq(ws_server_group_count(S, "room"), 0);
    cr_assert_eq(newer->closes, 0);
    /* The older timing out instead of answering is the same. */
    mt_connect(&C[2], S, "phone", mode);
    mt_expect_close(newer, 4000);
    ws_server_tick(S, 10000); /* past the 5 s close timeout */
    cr_assert_eq(newer->closes, 1);
    cr_assert_eq(ws_server_find_device(S, "phone"), C[2].c);
    finish();
  }
}

/* ---- groups and users ----------------------------------------------- */

Test(registry, groups_join_leave_and_errors) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture();
    connect_n(3, mode);
    cr_assert_eq(ws_conn_join(C[0].c, "red"), WS_OK);
    cr_assert_eq(ws_conn_join(C[1].c, "red"), WS_OK);
    cr_assert_eq(ws_conn_join(C[1].c, "blue"), WS_OK);
    cr_assert_eq(ws_conn_join(C[0].c, "red"), WS_EEXIST);
    cr_assert_eq(ws_conn_join(C[0].c, ""), WS_EINVAL);
    { /* names are 1 to 255 bytes (review 8: 256 was not tried) */
      char name[257];
      memset(name, 'g', 256);
      name[256] = '\0';
      cr_assert_eq(ws_conn_join(C[0].c, name), WS_EINVAL);
      name[255] = '\0';
      cr_assert_eq(ws_conn_join(C[0].c, name), WS_OK);
      cr_assert_eq(ws_conn_leave(C[0].c, name), WS_OK);
    }
    cr_assert_eq(ws_conn_join(NULL, "red"), WS_EINVAL);
    cr_assert_eq(ws_server_group_count(S, "red"), 2);
    cr_assert_eq(ws_server_group_count(S, "blue"), 1);
    cr_assert_eq(ws_server_group_count(S, "none"), 0);
    cr_assert_eq(ws_conn_leave(C[2].c, "red"), WS_ENOENT);
    cr_assert_eq(ws_conn_leave(C[0].c, "green"), WS_ENOENT);
    /* Publish reaches members only. */
    cr_assert_eq(ws_publish_json(S, "red", "r", "1", 1), 2);
    mt_expect_text(&C[0], "{\"action\":\"r\",\"data\":1}");
    mt_expect_text(&C[1], "{\"action\":\"r\",\"data\":1}");
    mt_expect_nothing(&C[2]);
    cr_assert_eq(ws_conn_leave(C[0].c, "red"), WS_OK);
    cr_assert_eq(ws_conn_leave(C[0].c, "red"), WS_ENOENT);
    cr_assert_eq(ws_server_group_count(S, "red"), 1);
    cr_assert_eq(ws_publish(S, "red", "r2", NULL), 1);
    mt_expect_nothing(&C[0]);
    mt_expect_text(&C[1], "{\"action\":\"r2\"}");
    /* A group is not a user of the same name. */
    cr_assert_eq(ws_push_user_json(S, "red", "u", "1", 1), 0);
    mt_expect_nothing(&C[1]);
    finish();
  }
}

Test(registry, users_with_two_devices) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    cJSON *data = cJSON_CreateObject();
    cJSON_AddNumberToObject(data, "n", 5);
    fixture();
    connect_n(3, mode);
    cr_assert_eq(ws_conn_set_user(C[0].c, "alice"), WS_OK);
    cr_assert_eq(ws_conn_set_user(C[1].c, "alice"), WS_OK);
    cr_assert_eq(ws_conn_set_user(C[2].c, "bob"), WS_OK);
    cr_assert_str_eq(ws_conn_user(C[0].c), "alice");
    cr_assert_eq(ws_server_user_count(S, "alice"), 2);
    cr_assert_eq(ws_push_user(S, "alice", "note", data), 2);
    mt_expect_text(&C[0], "{\"action\":\"note\",\"data\":{\"n\":5}}");
    mt_expect_text(&C[1], "{\"action\":\"note\",\"data\":{\"n\":5}}");
    mt_expect_nothing(&C[2]);
    /* Rebinding moves the connection. */
    cr_assert_eq(ws_conn_set_user(C[1].c, "bob"), WS_OK);
    cr_assert_eq(ws_server_user_count(S, "alice"), 1);
    cr_assert_eq(ws_server_user_count(S, "bob"), 2);
    cr_assert_eq(ws_push_user_json(S, "bob", "b", "[]", 2), 2);
    mt_expect_nothing(&C[0]);
    mt_expect_text(&C[1], "{\"action\":\"b\",\"data\":[]}");
    mt_expect_text(&C[2], "{\"action\":\"b\",\"data\":[]}");
    cr_assert_eq(ws_conn_set_user(C[2].c, NULL), WS_OK);
    cr_assert_null(ws_conn_user(C[2].c));
    cr_assert_eq(ws_server_user_count(S, "bob"), 1);
    cr_assert_eq(ws_push_user_json(S, "nobody", "b", "1", 1), 0);
    finish();
    cJSON_Delete(data);
  }
}

Test(registry, closing_removes_from_every_index) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_stats st;
    fixture();
    connect_n(2, mode);
    cr_assert_eq(ws_conn_set_user(C[0].c, "alice"), WS_OK);
    cr_assert_eq(ws_conn_join(C[0].c, "g1"), WS_OK);
    cr_assert_eq(ws_conn_join(C[0].c, "g2"), WS_OK);
    cr_assert_eq(ws_conn_join(C[1].c, "g1"), WS_OK);
    cr_assert_eq(ws_server_conn_count(S), 2);
    /* Closing: out of the counts at once, even before the handshake ends. */
    cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
    cr_assert_eq(ws_server_user_count(S, "alice"), 0);
    cr_assert_eq(ws_server_group_count(S, "g1"), 1);
    cr_assert_eq(ws_publish_json(S, "g2", "x", "1", 1), 0);
    peer_close(&C[0], 1000, mode);
    cr_assert_eq(C[0].closes, 1);
    cr_assert_null(ws_server_find_device(S, "d0"));
    cr_assert_eq(ws_server_user_count(S, "alice"), 0);
    cr_assert_eq(ws_server_group_count(S, "g1"), 1);
    cr_assert_eq(ws_server_group_count(S, "g2"), 0);
    cr_assert_eq(ws_server_conn_count(S), 1);
    ws_server_stats(S, &st, sizeof(st));
    cr_assert_eq(st.conns_open, 1);
    ws_stats before = st;
    cr_assert_eq(ws_push_user_json(S, "alice", "x", "1", 1), 0);
    ws_server_stats(S, &st, sizeof(st));
    cr_assert_eq(st.unknown_targets, before.unknown_targets + 1,
                 "an emptied user is unknown");
    ws_conn_abort(C[1].c);
    cr_assert_eq(ws_server_group_count(S, "g1"), 0);
    cr_assert_null(ws_server_find_device(S, "d1"));
    cr_assert_eq(ws_server_conn_count(S), 0);
    finish();
  }
}

/* Issue 4 (security): a message for one device never reaches another
 * through a reused handle. A connection bound to a device, a user and a
 * group closes; a new connection on the same transport (and, with libc's
 * allocator, usually the freed handle's memory) opens with another id.
 * Nothing addressed to the old device, user or group reaches it, and what
 * is addressed to it is the first thing it gets. */
Test(registry, a_reused_handle_gets_nothing_meant_for_the_closed_one) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    const char *const old_ids[] = {"d0"};
    ws_conn *old;
    fixture();
    mt_connect(&C[0], S, "d0", mode);
    old = C[0].c;
    cr_assert_eq(ws_conn_set_user(C[0].c, "alice"), WS_OK);
    cr_assert_eq(ws_conn_join(C[0].c, "room"), WS_OK);
    cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
    mt_expect_close(&C[0], 1000);
    peer_close(&C[0], 1000, mode);
    cr_assert_eq(C[0].closes, 1);
    cr_assert_null(C[0].c);
    /* The same transport, a new connection with another device id. */
    mt_free(&C[0]);
    mt_connect(&C[0], S, "d9", mode);
    cr_log_info("handle %s", C[0].c == old ? "reused" : "not reused");
    cr_assert_eq(ws_send_device_json(S, "d0", "x", "1", 1), 0);
    cr_assert_eq(ws_broadcast_json(S, "x", "2", 1, old_ids, 1), 0);
    cr_assert_eq(ws_send_devices_json(S, old_ids, 1, "x", "3", 1), 0);
    cr_assert_eq(ws_push_user_json(S, "alice", "x", "4", 1), 0);
    cr_assert_eq(ws_publish_json(S, "room", "x", "5", 1), 0);
    mt_pump(&C[0]);
    mt_expect_nothing(&C[0]);
    cr_assert_null(ws_conn_user(C[0].c), "the old binding came back");
    cr_assert_eq(ws_server_user_count(S, "alice"), 0);
    cr_assert_eq(ws_server_group_count(S, "room"), 0);
    /* Addressed to the new id: it arrives, and first. */
    cr_assert_eq(ws_send_device_json(S, "d9", "mine", "6", 1), 1);
    mt_pump(&C[0]);
    mt_expect_text(&C[0], "{\"action\":\"mine\",\"data\":6}");
    mt_expect_nothing(&C[0]);
    finish();
  }
}

/* ---- broadcast ------------------------------------------------------ */

Test(send, broadcast_to_all_and_to_a_list) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_stats st;
    int i;
    const char *const ids[] = {"d0", "ghost", "d2", "d0x", NULL};
    fixture();
    connect_n(4, mode);
    cr_assert_eq(ws_broadcast_json(S, "all", "{\"a\":1}", 7, NULL, 0), 4);
    for (i = 0; i < 4; i++)
      mt_expect_text(&C[i], "{\"action\":\"all\",\"data\":{\"a\":1}}");
    cr_assert_eq(ws_broadcast(S, "some", NULL, ids, 5), 2);
    mt_expect_text(&C[0], "{\"action\":\"some\"}");
    mt_expect_text(&C[2], "{\"action\":\"some\"}");
    mt_expect_nothing(&C[1]);
    mt_expect_nothing(&C[3]);
    ws_server_stats(S, &st, sizeof(st));
    cr_assert_eq(st.unknown_targets, 3, "ghost, d0x and NULL");
    cr_assert_eq(st.broadcasts, 2);
    cr_assert_eq(st.fanout, 6);
    /* A device named twice (or thrice) gets it once and counts once. */
    {
      const char *const twice[] = {"d1", "d3", "d1", "d1"};
      cr_assert_eq(ws_broadcast(S, "dup", NULL, twice, 4), 2);
      mt_expect_text(&C[1], "{\"action\":\"dup\"}");
      mt_expect_text(&C[3], "{\"action\":\"dup\"}");
      mt_expect_nothing(&C[1]);
      mt_expect_nothing(&C[3]);
      cr_assert_eq(ws_broadcast(S, "dup2", NULL, twice, 4), 2, "marks reset");
      mt_expect_text(&C[1], "{\"action\":\"dup2\"}");
      mt_expect_text(&C[3], "{\"action\":\"dup2\"}");
      ws_server_stats(S, &st, sizeof(st));
      cr_assert_eq(st.fanout, 10);
      cr_assert_eq(st.unknown_targets, 3);
    }
    /* An unknown id is counted per entry, as the header says. */
    {
      const char *const ghosts[] = {"ghost", "d1", "ghost"};
      cr_assert_eq(ws_broadcast(S, "g", NULL, ghosts, 3), 1);
      mt_expect_text(&C[1], "{\"action\":\"g\"}");
      ws_server_stats(S, &st, sizeof(st));
      cr_assert_eq(st.unknown_targets, 5);
    }
    /* Invalid JSON is refused before anything is queued. */
    cr_assert_eq(ws_broadcast_json(S, "bad", "{", 1, NULL, 0), WS_EJSON);
    /* A lone surrogate too: no receiver gets what cJSON would refuse. */
    cr_assert_eq(ws_broadcast_json(S, "bad", "\"\\ud800\"", 8, NULL, 0),
                 WS_EJSON);
    for (i = 0; i < 4; i++) mt_expect_nothing(&C[i]);
    cr_assert_eq(ws_broadcast(NULL, "x", NULL, NULL, 0), WS_EINVAL);
    cr_assert_eq(ws_broadcast(S, NULL, NULL, NULL, 0), WS_EINVAL);
    /* Connections still in the handshake are not broadcast to. */
    {
      mt_conn *p = &C[10];
      mt_open(p, S);
      cr_assert_eq(ws_broadcast_json(S, "all", "1", 1, NULL, 0), 4);
      mt_expect_nothing(p);
    }
    finish();
  }
}

/* THE BROADCAST-SHARES-ONE-BUFFER TEST: one frame is built per broadcast
 * whatever the number of receivers, and the allocations made by the call
 * do not grow with it (one frame, one target array). */
Test(send, broadcast_shares_one_buffer) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    static const int ns[] = {1, 10, 100};
    long allocs[3];
    size_t k;
    for (k = 0; k < 3; k++) {
      ws_stats a, b;
      long live_before;
      int i, rc;
      const char *first;
      fixture();
      connect_n(ns[k], mode);
      ws_server_stats(S, &a, sizeof(a));
      live_before = test_alloc_live();
      test_alloc_reset(0);
      rc = ws_broadcast_json(S, "news", "{\"id\":42,\"t\":\"hello\"}", 21, NULL,
                             0);
      allocs[k] = test_alloc_count();
      cr_assert_eq(rc, ns[k], "N=%d: rc %d", ns[k], rc);
      ws_server_stats(S, &b, sizeof(b));
      cr_assert_eq(b.frames_allocated - a.frames_allocated, 1,
                   "N=%d: %llu frames built", ns[k],
                   (unsigned long long)(b.frames_allocated - a.frames_allocated));
      cr_assert_eq(b.fanout - a.fanout, (uint64_t)ns[k]);
      cr_assert_leq(allocs[k], 2, "N=%d: %ld allocations in the call", ns[k],
                    allocs[k]);
      cr_assert_eq(test_alloc_live(), live_before, "all written and released");
      first = "{\"action\":\"news\",\"data\":{\"id\":42,\"t\":\"hello\"}}";
      for (i = 0; i < ns[k]; i++) mt_expect_text(&C[i], first);
      /* With receivers blocked the one buffer is held by all of them: still
       * one frame and the same allocation count. */
      for (i = 0; i < ns[k]; i++) C[i].would_block = 1;
      test_alloc_reset(0);
      cr_assert_eq(ws_broadcast_json(S, "n2", "1", 1, NULL, 0), ns[k]);
      cr_assert_leq(test_alloc_count(), 2, "N=%d blocked: %ld allocations",
                    ns[k], test_alloc_count());
      cr_assert_eq(test_alloc_live(), live_before + 1,
                   "one shared frame is live for %d receivers", ns[k]);
      for (i = 0; i < ns[k]; i++) {
        C[i].would_block = 0;
        mt_pump(&C[i]);
        mt_expect_text(&C[i], "{\"action\":\"n2\",\"data\":1}");
      }
      cr_assert_eq(test_alloc_live(), live_before, "freed after the last");
      finish();
    }
    cr_assert_eq(allocs[0], allocs[2], "allocations grow with N: %ld vs %ld",
                 allocs[0], allocs[2]);
  }
}

/* ---- handlers changing things while the library iterates ------------ */

Test(send, handler_closes_others_and_broadcasts_mid_feed) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_bytes b = {.p = NULL};
    fixture();
    connect_n(4, mode);
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"kick\"}");
    mt_frame_str(&b, MT_TEXT, 0, "{\"action\":\"next\"}");
    mt_feed(&C[0], b.p, b.len, mode);
    cr_assert_eq(G.msgs, 2);
    cr_assert_eq(C[1].closes, 1);
    cr_assert_eq(G.on_close_code[1], 1006);
    mt_expect_close(&C[2], 1000);
    mt_expect_nothing(&C[2]); /* not broadcast to: closing */
    mt_expect_text(&C[0], "{\"action\":\"after_kick\",\"data\":1}");
    mt_expect_text(&C[3], "{\"action\":\"after_kick\",\"data\":1}");
    cr_assert_null(ws_server_find_device(S, "d1"));
    finish();
    mt_bytes_free(&b);
  }
}

/* on_close broadcasting to the others, including during ws_server_free. */
static int h_close_broadcast(ws_conn *c, int code, const char *r, void *ud) {
  (void)code, (void)r, (void)ud;
  G.on_close++;
  ws_broadcast_json(ws_conn_server(c), "left", "1", 1, NULL, 0);
  return 0;
}

/* A write that closes another connection and broadcasts, from inside the
 * library's flush loop. */
static void hook_write_kick(mt_conn *t) {
  if (t != &C[0] || !C[1].c) return;
  ws_conn_abort(C[1].c);
  ws_broadcast_json(S, "from_write", "1", 1, NULL, 0);
}

Test(send, callbacks_broadcast_and_close_during_iteration) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_config cfg;
    int i;
    memset(&G, 0, sizeof(G));
    ws_config_init(&cfg);
    cfg.alloc = test_alloc();
    mt_config(&cfg, 0);
    cfg.on_close = h_close_broadcast;
    cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
    connect_n(5, mode);
    C[0].on_write = hook_write_kick;
    /* Broadcast: flushing C[0] aborts C[1] (next in line, or already
     * written) and broadcasts again from inside the flush. */
    cr_assert_eq(ws_broadcast_json(S, "go", "1", 1, NULL, 0), 5);
    cr_assert_eq(C[1].closes, 1);
    for (i = 2; i < 5; i++) {
      mt_frame f;
      int go = 0, left = 0, from_write = 0;
      while (mt_next_frame(&C[i], &f)) {
        go += mt_payload_is(&f, "{\"action\":\"go\",\"data\":1}");
        left += mt_payload_is(&f, "{\"action\":\"left\",\"data\":1}");
        from_write += mt_payload_is(&f, "{\"action\":\"from_write\",\"data\":1}");
      }
      cr_assert_eq(go, 1);
      cr_assert_eq(left, 1, "conn %d: on_close's broadcast", i);
      cr_assert_eq(from_write, 1, "conn %d: the write hook's broadcast", i);
    }
    C[0].on_write = NULL;
    ws_server_free(S);
    cr_assert_eq(G.on_close, 5);
    cr_assert_eq(test_alloc_live(), 0);
    for (i = 0; i < MAXC; i++) mt_free(&C[i]);
  }
}

/* ---- ws_post from the loop thread ------------------------------------ */

Test(send, post_from_same_thread_is_delivered_at_next_tick_in_order) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    fixture();
    connect_n(2, mode);
    cr_assert_eq(ws_conn_set_user(C[1].c, "u"), WS_OK);
    cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "p1", "1", 1), WS_OK);
    cr_assert_eq(ws_post(S, WS_POST_DEVICE, "d0", "p2", "2", 1), WS_OK);
    cr_assert_eq(ws_post(S, WS_POST_USER, "u", "p3", "3", 1), WS_OK);
    cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "p4", "4", 1), WS_OK);
    cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "bad", "{", 1), WS_EJSON);
    cr_assert_eq(ws_post(S, 99, NULL, "x", "1", 1), WS_EINVAL);
    /* Not before the tick, even with other traffic. */
    cr_assert_eq(mt_send_text(&C[0], "{\"action\":\"x\"}", mode), WS_OK);
    mt_expect_nothing(&C[0]);
    mt_expect_nothing(&C[1]);
    ws_server_tick(S, 1);
    mt_expect_text(&C[0], "{\"action\":\"p1\",\"data\":1}");
    mt_expect_text(&C[0], "{\"action\":\"p2\",\"data\":2}");
    mt_expect_text(&C[0], "{\"action\":\"p4\",\"data\":4}");
    mt_expect_nothing(&C[0]);
    mt_expect_text(&C[1], "{\"action\":\"p1\",\"data\":1}");
    mt_expect_text(&C[1], "{\"action\":\"p3\",\"data\":3}");
    mt_expect_text(&C[1], "{\"action\":\"p4\",\"data\":4}");
    mt_expect_nothing(&C[1]);
    /* Posted but never delivered: freed with the server. */
    cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "late", "1", 1), WS_OK);
    finish();
  }
}

/* A post's fan-out can run a host callback half-way (on_log, when one
 * receiver's queue is full) and that callback may tick or shut the server
 * down. The post being fanned out must still reach the receivers it has
 * not reached yet before the next post does: a nested drain used to
 * deliver the next post first (and a nested shutdown closed them before
 * the first reached them). Each receiver in turn is the full one, so that
 * some are reached before it and some after, whatever the fan-out order. */
static void tick_from_log(void) { ws_server_tick(S, 2); }
static void shutdown_from_log(void) { ws_server_shutdown(S, 1000); }
/* The drain deadline passes inside the fan-out (review): the nested tick
 * must not end the connections the post has not reached, and the 1001s
 * queued after it must still go out before the cut. */
static void shutdown_then_tick_past_it(void) {
  ws_server_shutdown(S, 0);
  ws_server_tick(S, 5);
}

static void check_post_order_around(void (*hook)(void), int then_1001,
                                    int full_still_open) {
  enum { N = 4 };
  char big[300];
  int full, i;
  memset(big, 'x', sizeof big - 3);
  big[0] = '"', big[sizeof big - 3] = '"', big[sizeof big - 2] = '\0';
  for (full = 0; full < N; full++) {
    fixture_queue(512, WS_QUEUE_CLOSE);
    connect_n(N, MT_WHOLE);
    C[full].would_block = 1;
    cr_assert_eq(ws_send_device_json(S, "d", "pad", big, strlen(big)), 0);
    cr_assert_eq(ws_conn_send_json(C[full].c, "pad", big, strlen(big)),
                 WS_OK);
    cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "p1", big, strlen(big)),
                 WS_OK);
    cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "p2", "2", 1), WS_OK);
    G.log_hook = hook;
    ws_server_tick(S, 1);
    G.log_hook = NULL;
    for (i = 0; i < N; i++) {
      char want[400];
      if (i == full) continue;
      snprintf(want, sizeof want, "{\"action\":\"p1\",\"data\":%s}", big);
      mt_expect_text(&C[i], want);
      mt_expect_text(&C[i], "{\"action\":\"p2\",\"data\":2}");
      if (then_1001) mt_expect_close(&C[i], WS_CLOSE_GOING_AWAY);
      mt_expect_nothing(&C[i]);
    }
    if (full_still_open)
      cr_assert_eq(G.on_close_code[full], 0, "still closing (4001 unsent)");
    else /* cut at the deadline: the code it was sent */
      cr_assert_eq(G.on_close_code[full], WS_CLOSE_SLOW_CONSUMER);
    finish();
  }
}

Test(send, post_fanout_keeps_order_when_a_callback_ticks_inside_it) {
  check_post_order_around(tick_from_log, 0, 1);
}

Test(send, post_fanout_finishes_before_a_shutdown_from_a_callback) {
  check_post_order_around(shutdown_from_log, 1, 1);
}

Test(send, post_fanout_finishes_before_a_drain_deadline_passed_inside_it) {
  check_post_order_around(shutdown_then_tick_past_it, 1, 0);
}

/* A receiver whose queue cannot take a fan-out's message for want of
 * memory (its queue's growth fails) is closed with 1011: it must not stay
 * open with a hole in its stream (a post's producer was told WS_OK long
 * before). Every allocation of a broadcast fails once in turn; each
 * receiver then has the message or a 1011 close after what it had. */
Test(send, receiver_missing_a_fanout_for_want_of_memory_is_closed_1011) {
  enum { N = 3 };
  long k;
  int i, n, got, closed, ever_closed = 0;
  for (k = 1; k <= 8; k++) {
    fixture();
    connect_n(N, MT_WHOLE);
    for (i = 0; i < N; i++) {
      C[i].would_block = 1;
      cr_assert_eq(ws_conn_send_json(C[i].c, "a", "1", 1), WS_OK);
      cr_assert_eq(ws_conn_send_json(C[i].c, "b", "2", 1), WS_OK);
    }
    test_alloc_reset(k); /* each queue is full: the message needs growth */
    n = ws_broadcast_json(S, "m", "3", 1, NULL, 0);
    test_alloc_reset(0);
    got = closed = 0;
    for (i = 0; i < N; i++) {
      mt_frame f;
      C[i].would_block = 0;
      mt_pump(&C[i]);
      mt_expect_text(&C[i], "{\"action\":\"a\",\"data\":1}");
      mt_expect_text(&C[i], "{\"action\":\"b\",\"data\":2}");
      if (n == WS_ENOMEM) { /* framing failed: nobody got anything */
        mt_expect_nothing(&C[i]);
        continue;
      }
      mt_expect_frame(&C[i], &f);
      if (f.opcode == MT_TEXT) {
        cr_assert(mt_payload_is(&f, "{\"action\":\"m\",\"data\":3}"));
        got++;
      } else {
        cr_assert_eq(mt_close_code(&f), WS_CLOSE_INTERNAL, "k=%ld", k);
        closed++;
      }
      mt_expect_nothing(&C[i]);
    }
    if (n != WS_ENOMEM) {
      cr_assert_eq(n, got, "k=%ld: returned %d, %d got it", k, n, got);
      cr_assert_eq(got + closed, N);
    }
    ever_closed += closed;
    finish();
  }
  cr_assert_gt(ever_closed, 0, "no queue's growth was made to fail");
}

/* A tick's post delivery is capped by connections reached, not by posts:
 * it stops after the post whose fan-out reaches 8192 connections, so a
 * backlog sent to everyone on a big server leaves the loop free for its
 * sockets between ticks. With 8192 open connections and three posts to
 * all, each tick delivers exactly the next post to every connection and
 * returns 0 while posts still wait. */
#define WIDE 8192
Test(send, post_tick_stops_after_its_fanout_reaches_8192_connections) {
  static const char *const want[] = {"{\"action\":\"p\",\"data\":1}",
                                     "{\"action\":\"p\",\"data\":2}",
                                     "{\"action\":\"p\",\"data\":3}"};
  mt_conn *w = calloc(WIDE, sizeof(*w));
  ws_config cfg;
  ws_server *s;
  int i, tick;
  cr_assert_not_null(w);
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.device_required = 0;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  ws_server_tick(s, 0);
  for (i = 0; i < WIDE; i++) mt_connect(&w[i], s, NULL, MT_WHOLE);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "p", "1", 1), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "p", "2", 1), WS_OK);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "p", "3", 1), WS_OK);
  for (tick = 0; tick < 3; tick++) {
    int rc = ws_server_tick(s, (uint64_t)tick + 1);
    for (i = 0; i < WIDE; i++) {
      mt_frame f;
      int got = mt_next_frame(&w[i], &f);
      if (!got || f.opcode != MT_TEXT || !mt_payload_is(&f, want[tick]))
        cr_assert_fail("tick %d, conn %d: expected %s, got %s%.*s", tick + 1,
                       i, want[tick], got ? "" : "nothing",
                       got ? (int)f.len : 0,
                       got ? (const char *)f.payload : "");
      if (mt_unread(&w[i]) != 0)
        cr_assert_fail("tick %d, conn %d: %zu more bytes (the next post "
                       "went out in the same tick)",
                       tick + 1, i, mt_unread(&w[i]));
    }
    if (tick < 2)
      cr_assert_eq(rc, 0, "tick %d: posts still wait, got %d", tick + 1, rc);
    else
      cr_assert_gt(rc, 0, "tick %d: nothing posted is left", tick + 1);
  }
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  for (i = 0; i < WIDE; i++) mt_free(&w[i]);
  free(w);
}

/* ---- per-connection order -------------------------------------------- */

Test(send, order_kept_under_interleaved_sends_and_broadcasts) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    int i, seq, k;
    fixture();
    connect_n(3, mode);
    C[0].max_per_send = 7; /* partial writes throughout */
    C[1].would_block = 1;  /* everything queues */
    for (seq = 0; seq < 200; seq++) {
      char d[16];
      int n = snprintf(d, sizeof(d), "%d", seq);
      switch (seq % 4) {
      case 0: cr_assert_eq(ws_broadcast_json(S, "s", d, (size_t)n, NULL, 0), 3); break;
      case 1: cr_assert_eq(ws_conn_send_json(C[0].c, "s", d, (size_t)n), WS_OK);
              cr_assert_eq(ws_conn_send_json(C[1].c, "s", d, (size_t)n), WS_OK);
              cr_assert_eq(ws_conn_send_json(C[2].c, "s", d, (size_t)n), WS_OK);
              break;
      case 2: cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "s", d, (size_t)n), WS_OK);
              ws_server_tick(S, (uint64_t)seq); break;
      default: {
        const char *const ids[] = {"d2", "d1", "d0"};
        cr_assert_eq(ws_broadcast_json(S, "s", d, (size_t)n, ids, 3), 3);
      }
      }
      if (seq % 10 == 0) {
        cr_assert_eq(mt_send_frame(&C[0], MT_PING, 0, "p", 1, mode), WS_OK);
        ws_conn_writable(C[0].c);
      }
    }
    C[0].max_per_send = 0;
    C[1].would_block = 0;
    for (i = 0; i < 3; i++) mt_pump(&C[i]);
    for (i = 0; i < 3; i++) {
      mt_frame f;
      int next = 0;
      while (mt_next_frame(&C[i], &f)) {
        char want[64];
        if (f.opcode == MT_PONG) continue;
        cr_assert_eq(f.opcode, MT_TEXT);
        snprintf(want, sizeof(want), "{\"action\":\"s\",\"data\":%d}", next);
        cr_assert(mt_payload_is(&f, want), "conn %d: expected %s, got %.*s",
                  i, want, (int)f.len, (const char *)f.payload);
        next++;
      }
      cr_assert_eq(next, 200, "conn %d got %d messages", i, next);
    }
    for (k = 0; k < 3; k++) cr_assert_eq(C[k].closes, 0);
    finish();
  }
}

/* Everything sent is a text frame: bytes that are not UTF-8 in the action
 * or in a cJSON string are refused once, up front, on every path, so no
 * receiver gets a frame it must fail with 1007. */
Test(send, non_utf8_action_or_data_is_refused_before_queuing) {
  cJSON *bad = cJSON_CreateString("caf\xc3");
  cJSON *good = cJSON_CreateString("caf\xc3\xa9");
  ws_prepared *p = NULL;
  const char *ids[] = {"d0"};
  fixture();
  connect_n(2, MT_WHOLE);
  cr_assert_eq(ws_conn_send(C[0].c, "\xff\xfe", NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_send_json(C[0].c, "a\x80", "1", 1), WS_EINVAL);
  cr_assert_eq(ws_conn_send(C[0].c, "a", bad), WS_EJSON);
  cr_assert_eq(ws_broadcast(S, "a", bad, NULL, 0), WS_EJSON);
  cr_assert_eq(ws_broadcast(S, "\xc0\xaf", NULL, ids, 1), WS_EINVAL);
  cr_assert_eq(ws_broadcast_json(S, "\xff", "1", 1, NULL, 0), WS_EINVAL);
  cr_assert_eq(ws_broadcast_json(S, "a", "\"\xc3\"", 3, NULL, 0), WS_EJSON);
  cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "\xff", "1", 1), WS_EINVAL);
  cr_assert_eq(ws_prepare(S, "a", bad, &p), WS_EJSON);
  cr_assert_eq(ws_prepare_json(S, "\xed\xa0\x80", "1", 1, &p), WS_EINVAL);
  cr_assert_null(p);
  ws_server_tick(S, 1);
  mt_expect_nothing(&C[0]);
  mt_expect_nothing(&C[1]);
  /* Valid UTF-8 goes through. */
  cr_assert_eq(ws_broadcast(S, "caf\xc3\xa9", good, NULL, 0), 2);
  mt_expect_text(&C[0], "{\"action\":\"caf\xc3\xa9\",\"data\":\"caf\xc3\xa9\"}");
  mt_expect_text(&C[1], "{\"action\":\"caf\xc3\xa9\",\"data\":\"caf\xc3\xa9\"}");
  cr_assert_eq(C[0].closes + C[1].closes, 0);
  cJSON_Delete(bad);
  cJSON_Delete(good);
  finish();
}

/* In on_close the memberships are readable but no longer changeable: every
 * change is WS_ECLOSED (set_user to the same user and leave returned 0),
 * and a bad name WS_EINVAL, in every state (set_user("") was WS_ECLOSED
 * there while join("") was WS_EINVAL). */
Test(registry, memberships_cannot_change_in_on_close) {
  int i;
  fixture();
  connect_n(1, MT_WHOLE);
  cr_assert_eq(ws_conn_set_user(C[0].c, "u"), WS_OK);
  cr_assert_eq(ws_conn_join(C[0].c, "room"), WS_OK);
  G.edit_in_close = 1;
  ws_conn_abort(C[0].c);
  cr_assert_eq(G.on_close, 1);
  for (i = 0; i < 4; i++) cr_assert_eq(G.edit_rc[i], WS_ECLOSED, "call %d", i);
  cr_assert_eq(G.edit_rc[4], WS_EINVAL, "set_user(\"\"): arguments first");
  cr_assert_eq(G.edit_rc[5], WS_EINVAL, "join(\"\"): arguments first");
  cr_assert_eq(ws_server_user_count(S, "u"), 0);
  cr_assert_eq(ws_server_group_count(S, "room"), 0);
  finish();
}

/* ---- the header's promises, one by one (API review) ------------------ */

/* A connection in its close handshake: still counted by
 * ws_server_conn_count (it holds a socket until its transport close), not
 * found by device id, no longer able to join or bind a new user
 * (WS_ECLOSED), and not sent to: its device counts as unknown. */
Test(registry, a_closing_connection_is_counted_but_not_reachable) {
  ws_stats a, b;
  fixture();
  connect_n(2, MT_WHOLE);
  cr_assert_eq(ws_conn_set_user(C[0].c, "u"), WS_OK);
  cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_server_conn_count(S), 2, "closing ones count");
  ws_server_stats(S, &a, sizeof a);
  cr_assert_eq(a.conns_open, 2);
  cr_assert_null(ws_server_find_device(S, "d0"), "closing: not found");
  cr_assert_eq(ws_conn_join(C[0].c, "room"), WS_ECLOSED);
  cr_assert_eq(ws_conn_set_user(C[0].c, "v"), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_text(C[0].c, "x", 1), WS_ECLOSED);
  cr_assert_eq(ws_send_device(S, "d0", "x", NULL), 0);
  ws_server_stats(S, &b, sizeof b);
  cr_assert_eq(b.unknown_targets, a.unknown_targets + 1);
  cr_assert_eq(ws_broadcast(S, "all", NULL, NULL, 0), 1, "only d1");
  mt_expect_close(&C[0], 1000);
  mt_expect_nothing(&C[0]);
  mt_expect_text(&C[1], "{\"action\":\"all\"}");
  peer_close(&C[0], 1000, MT_WHOLE);
  cr_assert_eq(C[0].closes, 1);
  cr_assert_eq(ws_server_conn_count(S), 1, "gone at its transport close");
  finish();
}

/* ws_send_device: 1 for an open device, 0 for an unknown one, which
 * ws_stats.unknown_targets counts; so does an unknown user or group. */
Test(registry, unknown_targets_are_counted) {
  ws_stats a, b;
  fixture();
  connect_n(1, MT_WHOLE);
  ws_server_stats(S, &a, sizeof a);
  cr_assert_eq(ws_send_device(S, "nobody", "x", NULL), 0);
  cr_assert_eq(ws_send_device_json(S, "nobody", "x", "1", 1), 0);
  cr_assert_eq(ws_publish(S, "no-group", "x", NULL), 0);
  cr_assert_eq(ws_push_user(S, "no-user", "x", NULL), 0);
  ws_server_stats(S, &b, sizeof b);
  cr_assert_eq(b.unknown_targets, a.unknown_targets + 4);
  cr_assert_eq(b.fanout, a.fanout);
  cr_assert_eq(ws_send_device(S, "d0", "x", NULL), 1);
  ws_server_stats(S, &a, sizeof a);
  cr_assert_eq(a.unknown_targets, b.unknown_targets);
  cr_assert_eq(a.fanout, b.fanout + 1);
  mt_expect_text(&C[0], "{\"action\":\"x\"}");
  mt_expect_nothing(&C[0]);
  finish();
}

/* ws_broadcast with n == 0 goes to every open connection whatever
 * device_ids is. */
Test(send, broadcast_with_n_0_ignores_the_list) {
  const char *const ids[] = {"d1"};
  int i;
  fixture();
  connect_n(3, MT_WHOLE);
  cr_assert_eq(ws_broadcast(S, "all", NULL, ids, 0), 3);
  cr_assert_eq(ws_broadcast_json(S, "all2", "1", 1, ids, 0), 3);
  for (i = 0; i < 3; i++) {
    mt_expect_text(&C[i], "{\"action\":\"all\"}");
    mt_expect_text(&C[i], "{\"action\":\"all2\",\"data\":1}");
  }
  finish();
}

/* ws_send_devices goes to the listed ids only: n == 0 is nobody (the data
 * still validated), a list is deduplicated, NULL entries and unknown ids
 * are counted, a NULL list with n > 0 is WS_EINVAL. */
Test(send, send_devices_to_an_empty_list_reaches_nobody) {
  const char *const ids[] = {"d1", NULL, "d1", "zz", "d2"};
  cJSON *one = cJSON_CreateNumber(1);
  ws_stats a, b;
  int i;
  fixture();
  connect_n(3, MT_WHOLE);
  ws_server_stats(S, &a, sizeof a);
  cr_assert_eq(ws_send_devices(S, ids, 0, "none", NULL), 0);
  cr_assert_eq(ws_send_devices(S, NULL, 0, "none", one), 0);
  cr_assert_eq(ws_send_devices_json(S, ids, 0, "none", "1", 1), 0);
  cr_assert_eq(ws_send_devices_json(S, ids, 0, "none", "{", 1), WS_EJSON);
  cr_assert_eq(ws_send_devices(S, NULL, 1, "none", NULL), WS_EINVAL);
  cr_assert_eq(ws_send_devices_json(S, NULL, 1, "none", "1", 1), WS_EINVAL);
  for (i = 0; i < 3; i++) mt_expect_nothing(&C[i]);
  cr_assert_eq(ws_send_devices(S, ids, 5, "some", one), 2);
  cr_assert_eq(ws_send_devices_json(S, ids + 4, 1, "d2", "2", 1), 1);
  ws_server_stats(S, &b, sizeof b);
  cr_assert_eq(b.unknown_targets, a.unknown_targets + 2);
  mt_expect_nothing(&C[0]);
  mt_expect_text(&C[1], "{\"action\":\"some\",\"data\":1}");
  mt_expect_nothing(&C[1]);
  mt_expect_text(&C[2], "{\"action\":\"some\",\"data\":1}");
  mt_expect_text(&C[2], "{\"action\":\"d2\",\"data\":2}");
  mt_expect_nothing(&C[2]);
  cJSON_Delete(one);
  finish();
}

/* User names are 1 to 255 bytes, as group names: "" and 256 bytes are
 * WS_EINVAL and leave the binding as it was; NULL unbinds. */
Test(registry, user_name_bounds) {
  char name[257];
  fixture();
  connect_n(1, MT_WHOLE);
  cr_assert_eq(ws_conn_set_user(C[0].c, "alice"), WS_OK);
  cr_assert_eq(ws_conn_set_user(C[0].c, ""), WS_EINVAL);
  memset(name, 'u', 256);
  name[256] = '\0';
  cr_assert_eq(ws_conn_set_user(C[0].c, name), WS_EINVAL);
  cr_assert_str_eq(ws_conn_user(C[0].c), "alice", "binding kept");
  cr_assert_eq(ws_server_user_count(S, "alice"), 1);
  cr_assert_eq(ws_conn_leave(C[0].c, ""), WS_EINVAL);
  cr_assert_eq(ws_conn_leave(C[0].c, NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_join(C[0].c, NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_set_user(C[0].c, NULL), WS_OK);
  cr_assert_null(ws_conn_user(C[0].c));
  cr_assert_eq(ws_server_user_count(S, "alice"), 0);
  cr_assert_eq(ws_conn_set_user(C[0].c, NULL), WS_OK, "unbinding twice");
  finish();
}

/* In on_close the device id and the request are still readable, and
 * sending to the connection is no longer possible (WS_ECLOSED); on_close
 * runs before the transport close. */
static struct {
  char device[16];
  int had_request;
  int send_rc;
  int tclosed_before;
} OC;
static int oc_on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)code, (void)reason, (void)ud;
  snprintf(OC.device, sizeof OC.device, "%s",
           ws_conn_device_id(c) ? ws_conn_device_id(c) : "(null)");
  OC.had_request = ws_conn_request(c) != NULL &&
                   strcmp(ws_request_path(ws_conn_request(c)), "/ws") == 0;
  OC.send_rc = ws_conn_send_text(c, "x", 1);
  OC.tclosed_before = ((mt_conn *)ws_conn_transport(c))->closes;
  return 0;
}
Test(registry, on_close_reads_the_connection_and_cannot_send) {
  ws_config cfg;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_close = oc_on_close;
  memset(&OC, 0, sizeof OC);
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  mt_connect(&C[0], S, "dev7", MT_WHOLE);
  ws_conn_close(C[0].c, 1000, NULL);
  peer_close(&C[0], 1000, MT_WHOLE);
  cr_assert_eq(C[0].closes, 1);
  cr_assert_str_eq(OC.device, "dev7");
  cr_assert(OC.had_request);
  cr_assert_eq(OC.send_rc, WS_ECLOSED);
  cr_assert_eq(OC.tclosed_before, 0, "on_close before the transport close");
  finish();
}

/* ws_post is thread-safe: posts from several threads are all delivered,
 * each thread's in the order it posted them, and wake is called from the
 * posting thread. */
#define POSTERS 4
#define PER_POSTER 200
static int wake_calls, wake_on_loop_thread;
static pthread_t loop_thread;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static int count_wake(ws_server *s, void *ud) {
  (void)s, (void)ud;
  pthread_mutex_lock(&wake_lock);
  wake_calls++;
  if (pthread_equal(pthread_self(), loop_thread)) wake_on_loop_thread++;
  pthread_mutex_unlock(&wake_lock);
  return 0;
}
static void *poster(void *arg) {
  int id = (int)(intptr_t)arg, i;
  for (i = 0; i < PER_POSTER; i++) {
    char data[32];
    int n = snprintf(data, sizeof data, "[%d,%d]", id, i), rc;
    while ((rc = ws_post(S, WS_POST_DEVICE, "d0", "p", data, (size_t)n)) ==
           WS_ELIMIT)
      ;
    if (rc != WS_OK) return (void *)1;
  }
  return NULL;
}
Test(send, post_from_other_threads_keeps_each_threads_order) {
  ws_config cfg;
  pthread_t th[POSTERS];
  int next[POSTERS] = {0}, i, got = 0;
  long spins = 0;
  ws_config_init(&cfg);
  mt_config(&cfg, 0); /* libc allocator: the counting one is not locked */
  cfg.wake = count_wake;
  cfg.max_queued = 64 << 20;
  loop_thread = pthread_self();
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  ws_server_tick(S, 0);
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  for (i = 0; i < POSTERS; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i), 0);
  while (got < POSTERS * PER_POSTER) {
    mt_frame f;
    ws_server_tick(S, 1); /* no clock moves: no ping, no deadline */
    while (mt_next_frame(&C[0], &f)) {
      int id, seq;
      char text[64];
      cr_assert_eq(f.opcode, MT_TEXT);
      cr_assert_lt(f.len, sizeof text);
      memcpy(text, f.payload, f.len);
      text[f.len] = '\0';
      cr_assert_eq(sscanf(text,
                          "{\"action\":\"p\",\"data\":[%d,%d]}", &id, &seq),
                   2);
      cr_assert(id >= 0 && id < POSTERS);
      cr_assert_eq(seq, next[id], "thread %d: %d after %d", id, seq,
                   next[id] - 1);
      next[id]++;
      got++;
    }
    cr_assert_lt(++spins, 100000000L, "posts never arrived");
  }
  for (i = 0; i < POSTERS; i++) {
    void *r;
    pthread_join(th[i], &r);
    cr_assert_null(r, "a post failed");
  }
  ws_server_tick(S, 1);
  mt_expect_nothing(&C[0]);
  cr_assert_geq(wake_calls, 1);
  cr_assert_eq(wake_on_loop_thread, 0, "wake runs on the posting thread");
  cr_assert_leq(wake_calls, POSTERS * PER_POSTER);
  ws_server_free(S);
  mt_free(&C[0]);
}

/* A loop that ticks only when woken (or when a tick said 0), as the
 * adapters do, with producers that post one message and wait until it
 * arrived before the next: every post finds the queue empty, the
 * sharpest race between a drain ending and a post deciding to wake. A
 * lost wake-up leaves a post undelivered: the wait times out (5 s). */
enum { PINGPONG_PRODUCERS = 2, PINGPONG_ROUNDS = 1500 };
static int wake_pipe[2];
static int pp_delivered[PINGPONG_PRODUCERS];

static int pipe_wake(ws_server *s, void *ud) {
  (void)s, (void)ud;
  return write(wake_pipe[1], "w", 1) == 1 || errno == EAGAIN ? 0 : -1;
}

static void *pingpong_poster(void *arg) {
  int id = (int)(intptr_t)arg, i;
  char dev[16];
  snprintf(dev, sizeof dev, "d%d", id);
  for (i = 0; i < PINGPONG_ROUNDS; i++) {
    long spins = 0;
    if (ws_post(S, WS_POST_DEVICE, dev, "p", "1", 1) != WS_OK)
      return (void *)1;
    while (__atomic_load_n(&pp_delivered[id], __ATOMIC_ACQUIRE) <= i) {
      if (++spins > 50000000L) return (void *)2; /* the loop's 5 s fails first */
      sched_yield();
    }
  }
  return NULL;
}

Test(send, post_wakes_a_loop_that_sleeps_between_ticks) {
  ws_config cfg;
  pthread_t th[PINGPONG_PRODUCERS];
  int i, total = 0, due = 0;
  char sink[256];
  cr_assert_eq(pipe(wake_pipe), 0);
  for (i = 0; i < 2; i++)
    cr_assert_eq(fcntl(wake_pipe[i], F_SETFL, O_NONBLOCK), 0);
  ws_config_init(&cfg);
  mt_config(&cfg, 0); /* libc allocator: the counting one is not locked */
  cfg.wake = pipe_wake;
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  ws_server_tick(S, 0);
  for (i = 0; i < PINGPONG_PRODUCERS; i++) {
    char dev[16];
    snprintf(dev, sizeof dev, "d%d", i);
    mt_connect(&C[i], S, dev, MT_WHOLE);
  }
  for (i = 0; i < PINGPONG_PRODUCERS; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, pingpong_poster,
                                (void *)(intptr_t)i), 0);
  while (total < PINGPONG_PRODUCERS * PINGPONG_ROUNDS) {
    struct pollfd pfd = {.fd = wake_pipe[0], .events = POLLIN};
    if (!due) {
      cr_assert_eq(poll(&pfd, 1, 5000), 1, "a post waited with no wake-up "
                   "(%d of %d delivered)", total,
                   PINGPONG_PRODUCERS * PINGPONG_ROUNDS);
      while (read(wake_pipe[0], sink, sizeof sink) > 0) {}
    }
    due = ws_server_tick(S, 1) == 0;
    for (i = 0; i < PINGPONG_PRODUCERS; i++) {
      mt_frame f;
      while (mt_next_frame(&C[i], &f)) {
        cr_assert(mt_payload_is(&f, "{\"action\":\"p\",\"data\":1}"));
        __atomic_add_fetch(&pp_delivered[i], 1, __ATOMIC_RELEASE);
        total++;
      }
    }
  }
  for (i = 0; i < PINGPONG_PRODUCERS; i++) {
    void *r;
    pthread_join(th[i], &r);
    cr_assert_null(r, "producer %d failed", i);
  }
  ws_server_free(S);
  for (i = 0; i < PINGPONG_PRODUCERS; i++) mt_free(&C[i]);
  close(wake_pipe[0]);
  close(wake_pipe[1]);
}

/* ---- mutation-testing round: gaps in registry.c and send.c ------------ */

/* ws_conn_send and ws_conn_send_json return the connection's own error
 * (WS_ECLOSED once closing), not WS_EINVAL; a NULL action is WS_EINVAL for
 * both, on an open connection too, and queues nothing. */
Test(send, conn_send_returns_eclosed_when_closing_and_einval_without_action) {
  fixture();
  connect_n(1, MT_WHOLE);
  cr_assert_eq(ws_conn_send(C[0].c, NULL, NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_send_json(C[0].c, NULL, "1", 1), WS_EINVAL);
  cr_assert_eq(ws_conn_send_json(C[0].c, NULL, NULL, 0), WS_EINVAL);
  mt_expect_nothing(&C[0]);
  cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_conn_send(C[0].c, "x", NULL), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_json(C[0].c, "x", "1", 1), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_binary(C[0].c, "x", 1), WS_ECLOSED);
  /* Closing comes first: not the message's own error. */
  cr_assert_eq(ws_conn_send_json(C[0].c, "x", "[1,", 3), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_json(C[0].c, NULL, "1", 1), WS_ECLOSED);
  {
    static char big[(1u << 20) + 1];
    cr_assert_eq(ws_conn_send_binary(C[0].c, big, sizeof big), WS_ECLOSED);
  }
  mt_expect_close(&C[0], 1000);
  mt_expect_nothing(&C[0]);
  peer_close(&C[0], 1000, MT_WHOLE);
  finish();
}

/* The count functions take any name: one longer than a group name can be
 * (256 bytes) names no group, 0, without touching memory past the name's
 * key (run under ASan). */
Test(registry, counts_of_an_overlong_name_are_zero) {
  char name[258];
  fixture();
  connect_n(1, MT_WHOLE);
  memset(name, 'g', 255);
  name[255] = '\0';
  cr_assert_eq(ws_conn_join(C[0].c, name), WS_OK, "255 bytes is a name");
  cr_assert_eq(ws_server_group_count(S, name), 1);
  name[255] = 'g';
  name[256] = '\0';
  cr_assert_eq(ws_server_group_count(S, name), 0);
  cr_assert_eq(ws_server_user_count(S, name), 0);
  name[256] = 'g';
  name[257] = '\0';
  cr_assert_eq(ws_server_group_count(S, name), 0);
  cr_assert_eq(ws_server_group_count(S, NULL), 0);
  cr_assert_eq(ws_server_user_count(S, NULL), 0);
  cr_assert_eq(ws_server_group_count(S, ""), 0);
  finish();
}

/* Binding another user moves the connection, whatever the names share
 * (a prefix here): the old user's count drops, the new one's rises. */
Test(registry, set_user_to_another_user_moves_the_binding) {
  fixture();
  connect_n(1, MT_WHOLE);
  cr_assert_eq(ws_conn_set_user(C[0].c, "alice"), WS_OK);
  cr_assert_eq(ws_conn_set_user(C[0].c, "amy"), WS_OK);
  cr_assert_str_eq(ws_conn_user(C[0].c), "amy");
  cr_assert_eq(ws_server_user_count(S, "alice"), 0);
  cr_assert_eq(ws_server_user_count(S, "amy"), 1);
  cr_assert_eq(ws_conn_set_user(C[0].c, "amy2"), WS_OK);
  cr_assert_str_eq(ws_conn_user(C[0].c), "amy2");
  cr_assert_eq(ws_server_user_count(S, "amy"), 0);
  cr_assert_eq(ws_push_user(S, "amy", "x", NULL), 0);
  cr_assert_eq(ws_push_user(S, "amy2", "x", NULL), 1);
  mt_expect_text(&C[0], "{\"action\":\"x\"}");
  finish();
}

/* One tick delivers at most what was posted when it began: a post made
 * while the backlog is delivered (here from inside the transport's send)
 * waits for the next tick. */
static int post_in_write_done;
static void post_in_write(mt_conn *t) {
  (void)t;
  if (post_in_write_done++) return;
  cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "late", NULL, 0), WS_OK);
}
Test(send, post_made_during_a_tick_waits_for_the_next) {
  fixture();
  connect_n(1, MT_WHOLE);
  post_in_write_done = 0;
  cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "a", NULL, 0), WS_OK);
  cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "b", NULL, 0), WS_OK);
  C[0].on_write = post_in_write;
  cr_assert_eq(ws_server_tick(S, 1), 0, "a post is still pending");
  C[0].on_write = NULL;
  mt_expect_text(&C[0], "{\"action\":\"a\"}");
  mt_expect_text(&C[0], "{\"action\":\"b\"}");
  mt_expect_nothing(&C[0]);
  ws_server_tick(S, 2);
  mt_expect_text(&C[0], "{\"action\":\"late\"}");
  mt_expect_nothing(&C[0]);
  finish();
}

/* A host allocator may answer malloc(0) with NULL (C11 7.22.3): a
 * broadcast that has no receiver must not ask for 0 bytes and call it
 * running out of memory. */
static ws_allocator Z_inner;
static void *z_malloc(size_t n, void *ud) {
  return n == 0 ? NULL : Z_inner.malloc(n, ud);
}
Test(send, broadcast_to_nobody_is_0_with_an_allocator_that_refuses_size_0) {
  ws_config cfg;
  memset(&G, 0, sizeof(G));
  ws_config_init(&cfg);
  Z_inner = test_alloc();
  cfg.alloc = Z_inner;
  cfg.alloc.malloc = z_malloc;
  mt_config(&cfg, 0);
  cfg.handler = h_handler;
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  ws_server_tick(S, 0);
  cr_assert_eq(ws_broadcast(S, "all", NULL, NULL, 0), 0);
  cr_assert_eq(ws_broadcast_json(S, "all", "1", 1, NULL, 0), 0);
  connect_n(1, MT_WHOLE);
  cr_assert_eq(ws_broadcast(S, "all", NULL, NULL, 0), 1);
  mt_expect_text(&C[0], "{\"action\":\"all\"}");
  finish();
}

/* ---- the header's promises, one by one (audit of promises vs tests) ---- */

/* ws_send_device to a full queue: 0, counted in drops_queue_full (not as
 * an unknown target), and the policy applied (default: closed with 4001). */
Test(send, send_device_to_a_full_queue_is_0_and_applies_the_policy) {
  static char fill[90];
  ws_stats a, b;
  fixture_queue(100, WS_QUEUE_CLOSE);
  connect_n(1, MT_WHOLE);
  C[0].would_block = 1;
  cr_assert_eq(ws_conn_send_binary(C[0].c, fill, sizeof fill), WS_OK);
  ws_server_stats(S, &a, sizeof a);
  cr_assert_eq(ws_send_device(S, "d0", "x", NULL), 0, "92 + 16 bytes > 100");
  ws_server_stats(S, &b, sizeof b);
  cr_assert_eq(b.drops_queue_full, a.drops_queue_full + 1);
  cr_assert_eq(b.unknown_targets, a.unknown_targets);
  cr_assert_eq(b.fanout, a.fanout);
  C[0].would_block = 0;
  mt_pump(&C[0]);
  mt_expect_close(&C[0], WS_CLOSE_SLOW_CONSUMER);
  mt_expect_nothing(&C[0]);
  finish();
}

/* Every fan-out leaves a receiver whose queue is full out of its count and
 * of ws_stats.fanout (WS_QUEUE_DROP: dropped for it alone, it stays). */
Test(send, fan_out_leaves_a_receiver_with_a_full_queue_out_of_its_count) {
  static char fill[90];
  const char *const ids[] = {"d0", "d1", "d2"};
  ws_stats a, b;
  mt_frame f;
  int i;
  fixture_queue(100, WS_QUEUE_DROP);
  connect_n(3, MT_WHOLE);
  for (i = 0; i < 3; i++) {
    cr_assert_eq(ws_conn_join(C[i].c, "room"), WS_OK);
    cr_assert_eq(ws_conn_set_user(C[i].c, "u"), WS_OK);
  }
  C[1].would_block = 1;
  cr_assert_eq(ws_conn_send_binary(C[1].c, fill, sizeof fill), WS_OK);
  ws_server_stats(S, &a, sizeof a);
  cr_assert_eq(ws_broadcast(S, "all", NULL, NULL, 0), 2);
  cr_assert_eq(ws_broadcast(S, "list", NULL, ids, 3), 2);
  cr_assert_eq(ws_publish(S, "room", "pub", NULL), 2);
  cr_assert_eq(ws_push_user(S, "u", "usr", NULL), 2);
  ws_server_stats(S, &b, sizeof b);
  cr_assert_eq(b.drops_queue_full, a.drops_queue_full + 4);
  cr_assert_eq(b.fanout, a.fanout + 8);
  for (i = 0; i < 3; i += 2) {
    mt_expect_text(&C[i], "{\"action\":\"all\"}");
    mt_expect_text(&C[i], "{\"action\":\"list\"}");
    mt_expect_text(&C[i], "{\"action\":\"pub\"}");
    mt_expect_text(&C[i], "{\"action\":\"usr\"}");
    mt_expect_nothing(&C[i]);
  }
  cr_assert_eq(C[1].closes, 0, "dropped for, not closed");
  C[1].would_block = 0;
  mt_pump(&C[1]);
  mt_expect_frame(&C[1], &f);
  cr_assert_eq(f.opcode, MT_BINARY);
  mt_expect_nothing(&C[1]);
  finish();
}

/* Unbinding and leaving work until the connection has ended: while it is
 * closing they take effect (WS_OK), where joining is already WS_ECLOSED. */
Test(registry, unbinding_and_leaving_work_while_closing) {
  fixture();
  connect_n(1, MT_WHOLE);
  cr_assert_eq(ws_conn_set_user(C[0].c, "u"), WS_OK);
  cr_assert_eq(ws_conn_join(C[0].c, "room"), WS_OK);
  cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_conn_set_user(C[0].c, NULL), WS_OK);
  cr_assert_null(ws_conn_user(C[0].c));
  cr_assert_eq(ws_conn_leave(C[0].c, "room"), WS_OK);
  cr_assert_eq(ws_conn_leave(C[0].c, "room"), WS_ENOENT, "it left");
  cr_assert_eq(ws_conn_join(C[0].c, "room"), WS_ECLOSED);
  mt_expect_close(&C[0], 1000);
  peer_close(&C[0], 1000, MT_WHOLE);
  cr_assert_eq(C[0].closes, 1);
  finish();
}

/* ws_conn_send_text answers the connection's state before looking at the
 * text, as ws_conn_send: bad UTF-8 to a closing one is WS_ECLOSED. */
Test(send, send_text_answers_the_connection_state_before_the_text) {
  fixture();
  connect_n(1, MT_WHOLE);
  mt_open(&C[1], S); /* still in its handshake */
  cr_assert_eq(ws_conn_send_text(C[1].c, "\xff", 1), WS_ESTATE);
  cr_assert_eq(ws_conn_send_text(C[0].c, "\xff", 1), WS_EINVAL);
  cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_conn_send_text(C[0].c, "\xff", 1), WS_ECLOSED);
  mt_expect_close(&C[0], 1000);
  mt_expect_nothing(&C[0]);
  cr_assert_eq(C[1].len, 0);
  peer_close(&C[0], 1000, MT_WHOLE);
  finish();
}

/* Out of memory is WS_ENOMEM (not WS_EJSON or WS_ELIMIT) from every send
 * path and from binding a user, and nothing is queued or counted. */
Test(send, out_of_memory_is_enomem_and_sends_nothing) {
  ws_stats a, b;
  fixture();
  connect_n(2, MT_WHOLE);
  ws_server_stats(S, &a, sizeof a);
  test_alloc_reset(1); /* the frame */
  cr_assert_eq(ws_conn_send_json(C[0].c, "x", "1", 1), WS_ENOMEM);
  test_alloc_reset(1);
  cr_assert_eq(ws_broadcast_json(S, "x", "1", 1, NULL, 0), WS_ENOMEM);
  test_alloc_reset(2); /* the targets, after the frame */
  cr_assert_eq(ws_broadcast_json(S, "x", "1", 1, NULL, 0), WS_ENOMEM);
  cr_assert(test_alloc_failed());
  test_alloc_reset(1); /* the post's record */
  cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "x", "1", 1), WS_ENOMEM);
  test_alloc_reset(2); /* its frame */
  cr_assert_eq(ws_post(S, WS_POST_ALL, NULL, "x", "1", 1), WS_ENOMEM);
  cr_assert(test_alloc_failed());
  test_alloc_reset(1);
  cr_assert_eq(ws_conn_set_user(C[0].c, "u"), WS_ENOMEM);
  test_alloc_reset(0);
  cr_assert_eq(ws_server_tick(S, 1), 30000 - 1, "no post waits");
  ws_server_stats(S, &b, sizeof b);
  cr_assert_eq(b.broadcasts, a.broadcasts);
  cr_assert_eq(b.fanout, a.fanout);
  cr_assert_eq(b.msgs_out, a.msgs_out);
  mt_expect_nothing(&C[0]);
  mt_expect_nothing(&C[1]);
  cr_assert_eq(ws_server_user_count(S, "u"), 0);
  finish();
}
