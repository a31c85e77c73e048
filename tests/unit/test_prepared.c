/* prepared.c: a message framed once and queued by reference: what each
 * send allocates, the bytes every receiver gets, freeing while queued,
 * argument errors, and what ws_server_free releases. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static ws_server *S, *S2;
static mt_conn C[3];

static void fixture(void) {
  ws_config cfg;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 1);
  cr_assert_eq(ws_server_new(&cfg, &S), WS_OK);
  cr_assert_eq(ws_server_new(&cfg, &S2), WS_OK);
}

static void finish(void) {
  int i;
  ws_server_free(S);
  ws_server_free(S2);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
  for (i = 0; i < 3; i++) mt_free(&C[i]);
}

Test(prepared, sends_the_same_bytes_as_send_json_without_allocating) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    ws_prepared *p;
    ws_stats a, b;
    int i;
    fixture();
    mt_connect(&C[0], S, "d0", mode);
    cr_assert_eq(ws_prepare_json(S, "pong", "\"\"", 2, &p), WS_OK);
    ws_server_stats(S, &a, sizeof(a));
    test_alloc_reset(0);
    for (i = 0; i < 100; i++) cr_assert_eq(ws_conn_send_prepared(C[0].c, p), 0);
    cr_assert_eq(test_alloc_count(), 0, "%ld allocations for 100 sends",
                 test_alloc_count());
    ws_server_stats(S, &b, sizeof(b));
    cr_assert_eq(b.frames_allocated, a.frames_allocated);
    cr_assert_eq(b.msgs_out - a.msgs_out, 100);
    for (i = 0; i < 100; i++)
      mt_expect_text(&C[0], "{\"action\":\"pong\",\"data\":\"\"}");
    mt_expect_nothing(&C[0]);
    ws_prepared_free(p);
    finish();
  }
}

/* frames_allocated counts frames built: ws_prepare_json builds its frame
 * once, so it counts one, and sending it (three times here) builds none,
 * counts none. A host reading the stat to see what prepared messages save
 * must see the one frame they cost. */
Test(prepared, counts_one_frame_allocated_however_often_it_is_sent) {
  ws_prepared *p;
  ws_stats a, b, c;
  int i;
  fixture();
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  ws_server_stats(S, &a, sizeof(a));
  cr_assert_eq(ws_prepare_json(S, "pong", "1", 1, &p), WS_OK);
  ws_server_stats(S, &b, sizeof(b));
  cr_assert_eq(b.frames_allocated - a.frames_allocated, 1,
               "prepare built %llu frames",
               (unsigned long long)(b.frames_allocated - a.frames_allocated));
  for (i = 0; i < 3; i++) cr_assert_eq(ws_conn_send_prepared(C[0].c, p), 0);
  ws_server_stats(S, &c, sizeof(c));
  cr_assert_eq(c.frames_allocated, b.frames_allocated);
  cr_assert_eq(c.msgs_out - b.msgs_out, 3);
  for (i = 0; i < 3; i++)
    mt_expect_text(&C[0], "{\"action\":\"pong\",\"data\":1}");
  mt_expect_nothing(&C[0]);
  ws_prepared_free(p);
  finish();
}

Test(prepared, from_cjson_and_without_data) {
  ws_prepared *p, *q;
  cJSON *d = cJSON_CreateObject();
  fixture();
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  cJSON_AddNumberToObject(d, "n", 7);
  cr_assert_eq(ws_prepare(S, "state", d, &p), WS_OK);
  cr_assert_eq(ws_prepare(S, "hello", NULL, &q), WS_OK);
  cJSON_Delete(d); /* copied: the prepared frame does not borrow it */
  cr_assert_eq(ws_conn_send_prepared(C[0].c, p), 0);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, q), 0);
  mt_expect_text(&C[0], "{\"action\":\"state\",\"data\":{\"n\":7}}");
  mt_expect_text(&C[0], "{\"action\":\"hello\"}");
  ws_prepared_free(p);
  ws_prepared_free(q);
  finish();
}

/* The queues hold their own references: a receiver that cannot take the
 * bytes yet still gets them after the host dropped its handle. */
Test(prepared, free_while_queued_on_blocked_receivers) {
  ws_prepared *p;
  long live;
  int i;
  fixture();
  for (i = 0; i < 3; i++) {
    char id[8] = "d0";
    id[1] = (char)('0' + i);
    mt_connect(&C[i], S, id, MT_WHOLE);
    C[i].would_block = 1;
  }
  live = test_alloc_live();
  cr_assert_eq(ws_prepare_json(S, "tick", "[1,2]", 5, &p), WS_OK);
  for (i = 0; i < 3; i++) cr_assert_eq(ws_conn_send_prepared(C[i].c, p), 0);
  ws_prepared_free(p);
  cr_assert_eq(test_alloc_live(), live + 1, "the frame lives on in queues");
  for (i = 0; i < 3; i++) {
    C[i].would_block = 0;
    mt_pump(&C[i]);
    mt_expect_text(&C[i], "{\"action\":\"tick\",\"data\":[1,2]}");
  }
  cr_assert_eq(test_alloc_live(), live, "released by the last receiver");
  finish();
}

Test(prepared, errors) {
  ws_prepared *p = (ws_prepared *)&p, *other;
  fixture();
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  cr_assert_eq(ws_prepare_json(S, "x", "{bad", 4, &p), WS_EJSON);
  cr_assert_null(p, "*out is cleared on failure");
  cr_assert_eq(ws_prepare_json(S, "x", NULL, 1, &p), WS_EINVAL);
  cr_assert_eq(ws_prepare_json(NULL, "x", "1", 1, &p), WS_EINVAL);
  cr_assert_eq(ws_prepare_json(S, NULL, "1", 1, &p), WS_EINVAL);
  cr_assert_eq(ws_prepare_json(S, "x", "1", 1, NULL), WS_EINVAL);
  cr_assert_eq(ws_prepare(S, NULL, NULL, &p), WS_EINVAL);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, NULL), WS_EINVAL);
  cr_assert_eq(ws_conn_send_prepared(NULL, NULL), WS_EINVAL);
  /* A handle of another server: its allocator is not this one's. */
  cr_assert_eq(ws_prepare_json(S2, "x", "1", 1, &other), WS_OK);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, other), WS_EINVAL);
  mt_expect_nothing(&C[0]);
  /* A closed connection. */
  cr_assert_eq(ws_prepare_json(S, "x", "1", 1, &p), WS_OK);
  ws_conn_close(C[0].c, 1000, NULL);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, p), WS_ECLOSED);
  ws_prepared_free(NULL); /* a no-op */
  finish(); /* p and other are released by ws_server_free */
}

/* Handles never freed by the host, some still queued, all go with the
 * server: finish() asserts no allocation is left. */
Test(prepared, server_free_releases_what_the_host_kept) {
  ws_prepared *p[4];
  int i;
  fixture();
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  C[0].would_block = 1;
  for (i = 0; i < 4; i++) {
    cr_assert_eq(ws_prepare_json(S, "m", "[]", 2, &p[i]), WS_OK);
    cr_assert_eq(ws_conn_send_prepared(C[0].c, p[i]), 0);
  }
  ws_prepared_free(p[1]); /* the middle of the server's list */
  finish();
}

/* "Returns as ws_conn_send": before the 101 it is WS_ESTATE (a new
 * connection, nothing written), after the close it is WS_ECLOSED; a full
 * queue is WS_EQUEUEFULL and the queue policy applies (default: close
 * with 4001). */
Test(prepared, send_prepared_returns_as_conn_send) {
  ws_prepared *p;
  ws_config cfg;
  ws_server *s;
  fixture();
  cr_assert_eq(ws_prepare_json(S, "x", "1", 1, &p), WS_OK);
  mt_open(&C[0], S);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, p), WS_ESTATE);
  cr_assert_eq(ws_conn_send_json(C[0].c, "x", "1", 1), WS_ESTATE);
  cr_assert_eq(C[0].len, 0);
  ws_conn_abort(C[0].c);
  /* A queue that cannot take the frame. */
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 1);
  cfg.max_queued = 60; /* one 37-byte frame fits, two do not */
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_free(&C[1]);
  mt_connect(&C[1], s, "d1", MT_WHOLE);
  C[1].would_block = 1;
  cr_assert_eq(ws_prepare_json(s, "x", "\"0123456789\"", 12, &p), WS_OK);
  cr_assert_eq(ws_conn_send_prepared(C[1].c, p), WS_OK);
  cr_assert_eq(ws_conn_send_prepared(C[1].c, p), WS_EQUEUEFULL);
  ws_stats st;
  ws_server_stats(s, &st, sizeof st);
  cr_assert_eq(st.drops_queue_full, 1);
  C[1].would_block = 0;
  mt_pump(&C[1]);
  mt_expect_close(&C[1], WS_CLOSE_SLOW_CONSUMER);
  ws_server_free(s);
  finish();
}

/* ws_prepare clears *out on failure as ws_prepare_json does (the
 * mutation-testing round on the files not tested before). */
Test(prepared, prepare_from_cjson_clears_out_on_failure) {
  ws_prepared *p = (ws_prepared *)&p;
  cJSON *bad = cJSON_CreateNull();
  fixture();
  cr_assert_eq(ws_prepare(S, NULL, NULL, &p), WS_EINVAL);
  cr_assert_null(p, "*out is cleared on failure");
  p = (ws_prepared *)&p;
  bad->type = 1 << 12; /* no cJSON type */
  cr_assert_eq(ws_prepare(S, "x", bad, &p), WS_EJSON);
  cr_assert_null(p, "*out is cleared on failure");
  p = (ws_prepared *)&p;
  cr_assert_eq(ws_prepare(NULL, "x", NULL, &p), WS_EINVAL);
  cr_assert_null(p);
  cJSON_Delete(bad);
  finish();
}

/* ---- the header's promises, one by one (audit of promises vs tests) ---- */

/* ws_conn_send_prepared "returns as ws_conn_send": the state first, so a
 * bad handle to a closing connection is WS_ECLOSED, not WS_EINVAL. */
Test(prepared, connection_state_is_answered_before_the_handle) {
  ws_prepared *other;
  fixture();
  cr_assert_eq(ws_prepare_json(S2, "x", "1", 1, &other), WS_OK);
  mt_open(&C[1], S); /* still in its handshake */
  cr_assert_eq(ws_conn_send_prepared(C[1].c, NULL), WS_ESTATE);
  cr_assert_eq(ws_conn_send_prepared(C[1].c, other), WS_ESTATE);
  mt_connect(&C[0], S, "d0", MT_WHOLE);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, other), WS_EINVAL);
  cr_assert_eq(ws_conn_close(C[0].c, 1000, NULL), WS_OK);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, NULL), WS_ECLOSED);
  cr_assert_eq(ws_conn_send_prepared(C[0].c, other), WS_ECLOSED);
  mt_expect_close(&C[0], 1000);
  mt_expect_nothing(&C[0]);
  cr_assert_eq(C[1].len, 0);
  finish();
}

/* Out of memory at each allocation, ws_prepare and ws_prepare_json answer
 * WS_ENOMEM, clear *out and leak nothing. */
Test(prepared, out_of_memory_is_enomem) {
  cJSON *d = cJSON_CreateArray();
  int which;
  fixture();
  for (which = 0; which < 2; which++) {
    long n, live = test_alloc_live();
    ws_prepared *p = NULL;
    int rc;
    for (n = 1;; n++) {
      p = (ws_prepared *)&p;
      test_alloc_reset(n);
      rc = which ? ws_prepare(S, "x", d, &p)
                 : ws_prepare_json(S, "x", "1", 1, &p);
      if (!test_alloc_failed()) break;
      cr_assert_eq(rc, WS_ENOMEM, "#%d, allocation %ld: %s", which, n,
                   ws_err_name(rc));
      cr_assert_null(p, "#%d, allocation %ld", which, n);
      cr_assert_eq(test_alloc_live(), live, "#%d, allocation %ld", which, n);
    }
    test_alloc_reset(0);
    cr_assert_eq(rc, WS_OK);
    cr_assert_gt(n, 2, "#%d: the frame and the handle both failed", which);
    ws_prepared_free(p);
  }
  cJSON_Delete(d);
  finish();
}
