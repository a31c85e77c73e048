/* A failmalloc pass over a whole session: for N = 1, 2, ... the N-th
 * allocation through the server's allocator fails, until a run completes
 * without reaching N. Every run must end without a crash and with every
 * allocation returned (test_alloc_live() == 0). cJSON's own allocations
 * use libc, outside the hook, by design. The session is fed whole and one
 * byte at a time. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

/* The last connection asks for no device id: its refusal (400) is an
 * allocation path of its own. The others negotiate a subprotocol. */
#define NCONN 4
#define NREFUSED 1

static mt_conn T[NCONN];
static int g_on_close, g_on_open;

static int h_echo(ws_conn *c, const ws_msg *m, void *ud) {
  size_t dl;
  const char *d = ws_msg_data_json(m, &dl);
  (void)ud;
  ws_msg_data(m);
  ws_conn_send_json(c, "echo", d ? d : "null", d ? dl : 4);
  ws_conn_join(c, "room");
  return 0;
}

static int h_on_open(ws_conn *c, void *ud) {
  mt_conn *t = ws_conn_transport(c);
  (void)ud;
  cr_assert_eq(t->closes, 0, "on_open after the transport close");
  g_on_open++;
  ws_conn_set_user(c, "alice");
  return 0;
}

static int h_on_close(ws_conn *c, int code, const char *r, void *ud) {
  mt_conn *t = ws_conn_transport(c);
  (void)code, (void)r, (void)ud;
  cr_assert_eq(t->closes, 0, "on_close after the transport close");
  g_on_close++;
  return 0;
}

static void feed_frame(mt_conn *t, int opcode, unsigned flags, const char *s,
                       int mode) {
  mt_bytes b = {.p = NULL};
  if (!t->c) return;
  mt_frame_str(&b, opcode, flags, s);
  mt_feed(t, b.p, b.len, mode);
  mt_bytes_free(&b);
}

/* One whole session; returns 1 if the failing allocation was reached.
 * no_hs_timer: handshake_timeout_ms = 0, so a connection's first timer
 * entry is made when it opens. */
static int session(long fail_at, int mode, int no_hs_timer) {
  ws_allocator a = test_alloc();
  ws_config cfg;
  ws_server *s = NULL;
  ws_mux *mux;
  int i, failed;
  g_on_close = g_on_open = 0;
  memset(T, 0, sizeof(T));
  test_alloc_reset(fail_at);
  mux = ws_mux_new(&a);
  if (mux) {
    ws_mux_handle(mux, "echo", h_echo, NULL);
    ws_mux_handle(mux, "ping", h_echo, NULL);
  }
  ws_config_init(&cfg);
  cfg.alloc = a;
  mt_config(&cfg, mode == MT_BYTES);
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cfg.on_open = h_on_open;
  cfg.on_close = h_on_close;
  cfg.max_queued = 4096;
  cfg.subprotocols = (const char *const[]){"chat"};
  cfg.subprotocols_count = 1;
  if (no_hs_timer) cfg.handshake_timeout_ms = 0;
  if (mux && ws_server_new(&cfg, &s) == WS_OK) {
    cJSON *data = cJSON_CreateObject();
    ws_server_tick(s, 1000);
    for (i = 0; i < NCONN; i++) {
      char req[512];
      char id[16];
      size_t n;
      snprintf(id, sizeof(id), "dev%d", i % 2); /* a duplicate id too */
      n = mt_request(req, sizeof(req), i < NCONN - NREFUSED ? id : NULL,
                     "Sec-WebSocket-Protocol: chat\r\n");
      T[i].s = s;
      if (ws_conn_new(s, &T[i], &T[i].c) != WS_OK) {
        T[i].c = NULL;
        continue;
      }
      mt_feed(&T[i], req, n, mode);
    }
    if (fail_at == 0) { /* the reference run takes the paths meant */
      cr_assert_str_eq(ws_conn_subprotocol(T[1].c), "chat");
      cr_assert_eq(mt_http_response(&T[NCONN - 1], NULL, 0, NULL, NULL), 400);
    }
    for (i = 0; i < NCONN; i++) {
      feed_frame(&T[i], MT_TEXT, 0, "{\"action\":\"echo\",\"data\":[1,2]}",
                 mode);
      feed_frame(&T[i], MT_TEXT, MT_NOFIN, "{\"action\":\"pi", mode);
      feed_frame(&T[i], MT_PING, 0, "hb", mode);
      feed_frame(&T[i], MT_CONT, 0, "ng\",\"data\":\"x\"}", mode);
      feed_frame(&T[i], MT_TEXT, 0, "not json", mode);
      feed_frame(&T[i], MT_TEXT, 0, "{\"action\":\"unknown\"}", mode);
    }
    cJSON_AddStringToObject(data, "k", "v");
    ws_broadcast(s, "all", data, NULL, 0);
    ws_broadcast_json(s, "some", "[1]", 3,
                      (const char *const[]){"dev0", "nobody"}, 2);
    ws_publish_json(s, "room", "room", "1", 1);
    ws_push_user(s, "alice", "user", data);
    ws_send_device(s, "dev1", "dev", NULL);
    ws_post(s, WS_POST_ALL, NULL, "posted", "2", 1);
    {
      ws_prepared *pr = NULL, *kept = NULL;
      if (ws_prepare(s, "prep", data, &pr) == WS_OK && T[2].c)
        ws_conn_send_prepared(T[2].c, pr);
      ws_prepared_free(pr);
      ws_prepare_json(s, "kept", "{}", 2, &kept); /* left to the server */
    }
    cJSON_Delete(data);
    T[0].would_block = 1;
    if (T[0].c) ws_conn_send_text(T[0].c, "blocked", 7);
    ws_server_tick(s, 2000);
    ws_server_tick(s, 40000); /* server pings */
    if (T[1].c) ws_conn_close(T[1].c, 1000, "bye");
    if (T[1].c) {
      mt_bytes b = {.p = NULL};
      mt_close_add(&b, 1000, NULL);
      mt_feed(&T[1], b.p, b.len, mode);
      mt_bytes_free(&b);
    }
    T[0].would_block = 0;
    if (T[0].c) mt_pump(&T[0]);
    ws_server_shutdown(s, 100);
    ws_server_tick(s, 40050);
    ws_server_free(s);
    for (i = 0; i < NCONN; i++)
      cr_assert_leq(T[i].closes, 1, "n=%ld: closed twice", fail_at);
  }
  ws_mux_free(mux);
  failed = test_alloc_failed();
  test_alloc_reset(0);
  cr_assert_eq(test_alloc_live(), 0, "n=%ld (%s): %ld allocations leaked",
               fail_at, MT_MODE_NAME(mode), test_alloc_live());
  cr_assert_leq(g_on_close, g_on_open, "n=%ld: on_close without on_open",
                fail_at);
  for (i = 0; i < NCONN; i++) mt_free(&T[i]);
  return failed;
}

static void every_allocation_fails_once(int no_hs_timer) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    long n;
    int done = 0;
    /* The run with no failure first: it must be complete and clean. */
    cr_assert_eq(session(0, mode, no_hs_timer), 0);
    cr_assert_eq(g_on_open, NCONN - NREFUSED,
                 "the reference run opened all but the refused");
    for (n = 1; n < 100000 && !done; n++)
      done = !session(n, mode, no_hs_timer);
    cr_assert(done, "no run completed");
    cr_assert_gt(n, 20, "the session makes few allocations: %ld", n);
    printf("failmalloc (%s): %ld allocation points failed, none leaked\n",
           MT_MODE_NAME(mode), n - 2);
    cr_log_info("failmalloc (%s): %ld allocation points", MT_MODE_NAME(mode),
                n - 2);
  }
}

Test(failmalloc, whole_session_every_allocation_fails_once) {
  every_allocation_fails_once(0);
}

/* The timer entry is first made as the connection opens: running out of
 * memory there must refuse the upgrade, not run on_open on a closed one. */
Test(failmalloc, whole_session_without_handshake_timer) {
  every_allocation_fails_once(1);
}
