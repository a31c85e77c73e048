/* outq.c: the outbound queue. Partial writes resume exactly where they
 * stopped, would-block waits for ws_conn_writable, want_write is signalled
 * on each edge, control frames overtake data only at a frame boundary, a
 * failed send ends the connection, and the per-connection cap applies its
 * policy. Scripts from the client are fed whole and one byte at a time. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"

static struct {
  int on_close_calls;
  int on_close_code;
  int slow_log_level; /* level of the slow-consumer log line; -1: none */
} R;

static void rec_on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (strstr(msg, "send queue over")) R.slow_log_level = level;
}

static int rec_on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)c, (void)reason, (void)ud;
  R.on_close_calls++;
  R.on_close_code = code;
  return 0;
}

/* The recording config every test here starts from. */
static void outq_config(ws_config *cfg, int use_sendv) {
  memset(&R, 0, sizeof(R));
  R.slow_log_level = -1;
  ws_config_init(cfg);
  cfg->alloc = test_alloc();
  mt_config(cfg, use_sendv);
  cfg->on_close = rec_on_close;
  cfg->on_log = rec_on_log;
}

static ws_server *server_from(const ws_config *cfg) {
  ws_server *s;
  cr_assert_eq(ws_server_new(cfg, &s), WS_OK);
  return s;
}

static ws_server *server_new(int use_sendv, size_t max_queued, int policy) {
  ws_config cfg;
  outq_config(&cfg, use_sendv);
  if (max_queued) cfg.max_queued = max_queued;
  cfg.queue_policy = policy;
  return server_from(&cfg);
}

static void server_free(ws_server *s) {
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0, "leak: %ld allocations live",
               test_alloc_live());
}

/* The slow-consumer ending: the close frame (4001) is the last thing
 * written, the transport closed once, on_close told 4001 once. */
static void expect_closed_as_slow(mt_conn *t) {
  mt_expect_close(t, 4001);
  mt_expect_nothing(t);
  cr_assert_eq(t->closes, 1);
  cr_assert_eq(R.on_close_calls, 1);
  cr_assert_eq(R.on_close_code, 4001);
}

/* A JSON string value of n 'x' characters: "xxx...". */
static char *json_str(size_t n) {
  static char buf[80000];
  cr_assert_lt(n + 2, sizeof(buf));
  buf[0] = '"';
  memset(buf + 1, 'x', n);
  buf[n + 1] = '"';
  buf[n + 2] = '\0';
  return buf;
}

/* The same traffic for one connection: sizes cover the 7-bit, 16-bit and
 * 64-bit length forms, then a close. (No ping: where its pong lands
 * legitimately depends on how far the queue had got.) */
static void traffic(mt_conn *t) {
  static const size_t sizes[] = {0, 10, 125, 126, 1000, 65535, 70000};
  size_t i;
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    const char *d = json_str(sizes[i]);
    cr_assert_eq(ws_conn_send_json(t->c, "m", d, strlen(d)), WS_OK);
    cr_assert_eq(ws_conn_send_binary(t->c, "raw", 3), WS_OK);
  }
  cr_assert_eq(ws_conn_close(t->c, 1000, "end"), WS_OK);
}

Test(outq, partial_writes_resume_exactly_where_they_stopped) {
  int mode, sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      static const size_t steps[] = {1, 3, 7, 1000};
      mt_conn whole, parts[4];
      ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
      size_t k;
      mt_connect(&whole, s, "whole", mode);
      traffic(&whole);
      cr_assert_gt(whole.len, 130000);
      for (k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        mt_conn *pp = &parts[k];
        char id[16];
        int calls = 0;
        snprintf(id, sizeof(id), "part%zu", k);
        mt_open(pp, s);
        pp->max_per_send = steps[k];
        {
          char req[512];
          size_t n = mt_request(req, sizeof(req), id, NULL);
          cr_assert_eq(mt_feed(pp, req, n, mode), WS_OK);
        }
        if (steps[k] < 100) /* the 101 is longer */
          cr_assert_eq(pp->want, 1, "want_write(1) after a partial write");
        while (pp->c && ws_conn_want_write(pp->c)) {
          ws_conn_writable(pp->c);
          calls++;
        }
        cr_assert_eq(mt_http_response(pp, NULL, 0, NULL, NULL), 101);
        traffic(pp);
        while (pp->c && ws_conn_want_write(pp->c)) {
          cr_assert_eq(pp->want, 1);
          ws_conn_writable(pp->c);
          calls++;
        }
        cr_assert_gt(calls, 1);
        /* Byte-identical to the whole writes from the first frame on. */
        cr_assert_eq(pp->len - pp->rpos, whole.len - whole.rpos,
                     "step %zu (%s, sendv %d): %zu bytes vs %zu", steps[k],
                     MT_MODE_NAME(mode), sendv, pp->len - pp->rpos,
                     whole.len - whole.rpos);
        cr_assert_eq(memcmp(pp->out + pp->rpos, whole.out + whole.rpos,
                            pp->len - pp->rpos),
                     0, "step %zu: output differs", steps[k]);
        cr_assert_eq(pp->want_off, pp->want_on,
                     "want_write(0) once drained");
      }
      /* The close frame went out: the decoder sees every frame. */
      {
        mt_frame f;
        int frames = 0, last = -1;
        while (mt_next_frame(&whole, &f)) frames++, last = f.opcode;
        cr_assert_eq(frames, 7 * 2 + 1);
        cr_assert_eq(last, MT_CLOSE);
      }
      server_free(s);
      mt_free(&whole);
      for (k = 0; k < 4; k++) mt_free(&parts[k]);
    }
  }
}

Test(outq, would_block_then_writable_flushes) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t;
    ws_server *s = server_new(0, 0, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "d", mode);
    cr_assert_eq(t.want_on, 0, "no want_write while nothing is blocked");
    t.would_block = 1;
    cr_assert_eq(ws_conn_send_json(t.c, "a", "1", 1), WS_OK);
    cr_assert_eq(ws_conn_send_json(t.c, "b", "2", 1), WS_OK);
    mt_expect_nothing(&t);
    cr_assert_eq(t.want_on, 1, "want_write(1) when blocked");
    cr_assert_eq(t.want, 1);
    cr_assert_eq(ws_conn_want_write(t.c), 1);
    /* A ping while blocked is queued too. */
    cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "q", 1, mode), WS_OK);
    mt_expect_nothing(&t);
    cr_assert_eq(t.want_on, 1, "want_write(1) signalled once");
    /* Writable while still blocked: nothing, no new signal. */
    cr_assert_eq(ws_conn_writable(t.c), WS_OK);
    mt_expect_nothing(&t);
    cr_assert_eq(t.want_off, 0);
    t.would_block = 0;
    cr_assert_eq(ws_conn_writable(t.c), WS_OK);
    {
      mt_frame f;
      /* Nothing was partially sent: the pong may go first (a frame
       * boundary), then the data in order. */
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG);
      mt_expect_text(&t, "{\"action\":\"a\",\"data\":1}");
      mt_expect_text(&t, "{\"action\":\"b\",\"data\":2}");
    }
    cr_assert_eq(t.want_off, 1, "want_write(0) once drained");
    cr_assert_eq(t.want, 0);
    cr_assert_eq(ws_conn_want_write(t.c), 0);
    cr_assert_eq(t.closes, 0);
    server_free(s);
    mt_free(&t);
  }
}

/* After a short write the socket is full until ws_conn_writable says
 * otherwise: more messages, a ping's pong, a broadcast and a feed only
 * queue, with no send call (each would be a failing system call in the
 * host, per message, for a peer that stopped reading), while an unblocked
 * connection is written at once. */
Test(outq, blocked_connection_gets_no_send_until_writable) {
  int mode, sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      mt_conn t, u;
      mt_frame f;
      int calls, i;
      ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
      mt_connect(&t, s, "t", mode);
      mt_connect(&u, s, "u", mode);
      t.max_per_send = 10;
      cr_assert_eq(ws_conn_send_json(t.c, "a", "1", 1), WS_OK);
      cr_assert_eq(t.len - t.rpos, 10, "the first frame is cut");
      cr_assert_eq(t.want_on, 1);
      calls = t.send_calls;
      for (i = 0; i < 5; i++)
        cr_assert_eq(ws_conn_send_json(t.c, "b", "2", 1), WS_OK);
      cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "P", 1, mode), WS_OK);
      cr_assert_eq(ws_broadcast_json(s, "bc", "3", 1, NULL, 0), 2);
      cr_assert_eq(t.send_calls, calls, "%s sendv %d: no send while blocked",
                   MT_MODE_NAME(mode), sendv);
      cr_assert_eq(t.len - t.rpos, 10);
      mt_expect_text(&u, "{\"action\":\"bc\",\"data\":3}");
      /* Writable, still short: one more call, blocked again, no new signal. */
      cr_assert_eq(ws_conn_writable(t.c), WS_OK);
      cr_assert_eq(t.send_calls, calls + 1);
      cr_assert_eq(t.len - t.rpos, 20);
      cr_assert_eq(ws_conn_send_json(t.c, "b", "2", 1), WS_OK);
      cr_assert_eq(t.send_calls, calls + 1, "blocked again after writable");
      cr_assert_eq(t.want_on, 1);
      t.max_per_send = 0;
      cr_assert_eq(ws_conn_writable(t.c), WS_OK);
      mt_expect_text(&t, "{\"action\":\"a\",\"data\":1}");
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG, "the pong at the first boundary");
      for (i = 0; i < 5; i++) mt_expect_text(&t, "{\"action\":\"b\",\"data\":2}");
      mt_expect_text(&t, "{\"action\":\"bc\",\"data\":3}");
      mt_expect_text(&t, "{\"action\":\"b\",\"data\":2}");
      mt_expect_nothing(&t);
      cr_assert_eq(t.want_off, 1);
      /* Drained: the next message is written at once again. */
      calls = t.send_calls;
      cr_assert_eq(ws_conn_send_json(t.c, "c", "4", 1), WS_OK);
      cr_assert_eq(t.send_calls, calls + 1);
      mt_expect_text(&t, "{\"action\":\"c\",\"data\":4}");
      server_free(s);
      mt_free(&t);
      mt_free(&u);
    }
  }
}

/* A peer that reads nothing while messages keep coming: the socket is
 * tried again only each time the queue passes the next of 1/2, 3/4, 7/8,
 * ... of max_queued (about log2(max_queued / message) calls), not once per
 * message; the messages all wait in order for ws_conn_writable. */
Test(outq, a_peer_that_reads_nothing_costs_a_send_per_halving) {
  int sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    mt_conn t;
    int calls, i;
    const char *d = json_str(1000);
    ws_server *s = server_new(sendv, 1 << 20, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "t", MT_WHOLE);
    t.would_block = 1;
    calls = t.send_calls;
    for (i = 0; i < 1000; i++) /* 1,024,000 bytes of frames: under 1 MiB */
      cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK);
    calls = t.send_calls - calls;
    cr_assert_geq(calls, 2, "sendv %d: tried again as the queue grew", sendv);
    cr_assert_leq(calls, 12, "sendv %d: %d sends for 1000 messages", sendv,
                  calls);
    cr_assert_eq(t.closes, 0);
    t.would_block = 0;
    mt_pump(&t);
    for (i = 0; i < 1000; i++) {
      mt_frame f;
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.len, strlen(d) + strlen("{\"action\":\"m\",\"data\":}"));
    }
    mt_expect_nothing(&t);
    server_free(s);
    mt_free(&t);
  }
}

/* The next retry point is the first one above what is queued: a short
 * write that left exactly max_queued / 2 queued tries again past 3/4,
 * not at the next message (mutation pass: a point equal to the bytes
 * queued taken as the next one cost a send per message from there). */
Test(outq, a_backlog_at_a_retry_point_waits_for_the_next) {
  static const char pad[508];
  mt_conn t;
  int calls;
  ws_server *s = server_new(0, 1024, WS_QUEUE_CLOSE);
  mt_connect(&t, s, "t", MT_WHOLE);
  t.would_block = 1;
  calls = t.send_calls;
  /* 508 bytes: a 4-byte header, 512 queued */
  cr_assert_eq(ws_conn_send_binary(t.c, pad, sizeof pad), WS_OK);
  cr_assert_eq(t.send_calls, calls + 1);
  cr_assert_eq(ws_conn_send_binary(t.c, pad, 1), WS_OK); /* 515 */
  cr_assert_eq(t.send_calls, calls + 1, "under 768: not tried");
  cr_assert_eq(ws_conn_send_binary(t.c, pad, 250), WS_OK); /* 769 */
  cr_assert_eq(t.send_calls, calls + 2, "past 768: tried");
  cr_assert_eq(t.closes, 0);
  server_free(s);
  mt_free(&t);
}

/* The socket full for one send (message "a" waits), then drained by a
 * peer that reads: the connection stays blocked until the host's writable
 * event, which has not come yet. */
static void block_once(mt_conn *t) {
  t->would_block = 1;
  cr_assert_eq(ws_conn_send_json(t->c, "a", "1", 1), WS_OK);
  cr_assert_eq(t->want, 1);
  t->would_block = 0;
}

/* The same for control frames, whose bound (1024 unsent) a burst of pings
 * reaches long before its pongs fill half of max_queued: a socket full
 * once, then a peer that reads everything and sends 1,100 pings in one
 * read. The blocked connection sent none of the pongs until the host's
 * writable event, which comes only after the feed: the 1,025th pong hit
 * the bound and a peer that reads was closed 4001. */
Test(outq, ping_burst_after_one_short_write_is_answered) {
  int sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    mt_conn t;
    mt_bytes b = {0};
    mt_frame f;
    ws_stats st;
    int i, pongs = 0, texts = 0;
    ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "t", MT_WHOLE);
    block_once(&t);
    for (i = 0; i < 1100; i++) mt_frame_add(&b, MT_PING, 0, NULL, 0);
    mt_feed(&t, b.p, b.len, MT_WHOLE);
    mt_bytes_free(&b);
    ws_server_stats(s, &st, sizeof st);
    cr_assert_eq(st.drops_queue_full, 0, "sendv %d: a reading peer hit the "
                 "control frame bound (%d sends)", sendv, t.send_calls);
    cr_assert_not_null(t.c);
    mt_pump(&t);
    while (mt_next_frame(&t, &f)) {
      pongs += f.opcode == MT_PONG;
      texts += f.opcode == MT_TEXT; /* pongs may overtake the unsent text */
    }
    cr_assert_eq(pongs, 1100);
    cr_assert_eq(texts, 1);
    server_free(s);
    mt_free(&t);
  }
}

/* A shutdown's deadline cuts what is left after one more try at each
 * socket. A connection blocked since its socket was full once got no try
 * (it waited for the host's writable event, which had not come): a peer
 * that had read everything since lost the message and the 1001 queued for
 * it, where before the blocked rule the 1001 went out with the drain. With
 * a drain as long as the close timeout (5 s), the 1001's close timer fell
 * due at the deadline itself and, run first, cut before the last try. */
Test(outq, shutdown_deadline_tries_a_blocked_connection_once_more) {
  static const uint32_t drain[] = {0, 6000};
  int sendv, d;
  for (d = 0; d < 2; d++) {
    for (sendv = 0; sendv < 2; sendv++) {
      mt_conn t;
      ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
      ws_server_tick(s, 0);
      mt_connect(&t, s, "t", MT_WHOLE);
      block_once(&t);
      cr_assert_eq(ws_server_shutdown(s, drain[d]), WS_OK);
      ws_server_tick(s, drain[d] / 2);
      cr_assert_eq(t.closes, drain[d] == 0, "not before the deadline");
      ws_server_tick(s, drain[d]);
      cr_assert_eq(t.closes, 1, "drain %u sendv %d: cut at the deadline",
                   drain[d], sendv);
      mt_expect_text(&t, "{\"action\":\"a\",\"data\":1}");
      mt_expect_close(&t, 1001);
      mt_expect_nothing(&t);
      server_free(s);
      mt_free(&t);
    }
  }
}

Test(outq, pong_waits_for_frame_boundary_but_overtakes_later_data) {
  int mode, sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    for (mode = 0; mode < MT_MODES; mode++) {
      mt_conn t;
      mt_frame f;
      const char *big = json_str(10000);
      size_t first;
      ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
      mt_connect(&t, s, "d", mode);
      t.max_per_send = 4000;
      cr_assert_eq(ws_conn_send_json(t.c, "big", big, strlen(big)), WS_OK);
      first = t.len - t.rpos;
      cr_assert_eq(first, 4000, "the big frame is half-sent");
      t.would_block = 1;
      cr_assert_eq(ws_conn_send_json(t.c, "later", "1", 1), WS_OK);
      cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "P1", 2, mode), WS_OK);
      cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "P2", 2, mode), WS_OK);
      cr_assert_eq(t.len - t.rpos, first, "nothing written while blocked");
      t.would_block = 0;
      t.max_per_send = 0;
      mt_pump(&t);
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_TEXT, "%s sendv %d", MT_MODE_NAME(mode), sendv);
      cr_assert_eq(f.len, strlen("{\"action\":\"big\",\"data\":}") + 10002);
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG, "pong right after the big frame");
      cr_assert(mt_payload_is(&f, "P1"));
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG, "pongs keep their order");
      cr_assert(mt_payload_is(&f, "P2"));
      mt_expect_text(&t, "{\"action\":\"later\",\"data\":1}");
      mt_expect_nothing(&t);
      server_free(s);
      mt_free(&t);
    }
  }
}

Test(outq, send_failure_ends_the_connection) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t;
    ws_stats st;
    ws_server *s = server_new(0, 0, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "d", mode);
    t.fail = 1;
    ws_conn_send_json(t.c, "a", "1", 1);
    cr_assert_eq(t.closes, 1, "send failure: transport not closed");
    cr_assert_null(t.c);
    cr_assert_eq(R.on_close_calls, 1);
    cr_assert_eq(R.on_close_code, 1006);
    ws_server_stats(s, &st, sizeof(st));
    cr_assert_eq(st.closes_1006, 1);
    cr_assert_eq(st.conns_open, 0);
    cr_assert_eq(ws_server_conn_count(s), 0);
    server_free(s);
    mt_free(&t);
  }
}

Test(outq, send_failure_while_answering_a_ping_ends_the_connection) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t;
    ws_server *s = server_new(0, 0, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "d", mode);
    t.fail = 1;
    cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "x", 1, mode), WS_ECLOSED);
    cr_assert_eq(t.closes, 1);
    cr_assert_eq(R.on_close_code, 1006);
    server_free(s);
    mt_free(&t);
  }
}

/* max_queued 1000, transport blocked: the message that would pass the cap
 * closes the connection with 4001 (default policy). */
Test(outq, queue_cap_closes_slow_consumer_with_4001) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t, other;
    ws_stats st;
    const char *d = json_str(300);
    int i, rc = WS_OK;
    ws_server *s = server_new(0, 1000, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "slow", mode);
    mt_connect(&other, s, "fast", mode);
    t.would_block = 1;
    for (i = 0; i < 3; i++)
      cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK,
                   "message %d fits", i);
    rc = ws_conn_send_json(t.c, "m", d, strlen(d));
    cr_assert_eq(rc, WS_EQUEUEFULL);
    ws_server_stats(s, &st, sizeof(st));
    cr_assert_eq(st.drops_queue_full, 1);
    cr_assert_eq(R.slow_log_level, WS_LOG_WARN, "logged as a warning");
    /* Sending is over for it; the other connection is unaffected. */
    cr_assert_eq(ws_conn_send_json(t.c, "m", "1", 1), WS_ECLOSED);
    cr_assert_eq(ws_conn_send_json(other.c, "m", "1", 1), WS_OK);
    mt_expect_text(&other, "{\"action\":\"m\",\"data\":1}");
    /* The queue was dropped; the close frame goes out once writable, then
     * the transport is closed. */
    t.would_block = 0;
    mt_pump(&t);
    expect_closed_as_slow(&t);
    ws_server_stats(s, &st, sizeof(st));
    cr_assert_eq(st.closes_4001, 1);
    cr_assert_eq(other.closes, 0);
    server_free(s);
    mt_free(&t);
    mt_free(&other);
  }
}

/* The drop policy's outcome with a cap of 1000 bytes and 308-byte frames:
 * two messages dropped (counted), the connection open, and the three
 * frames that fit written once the socket takes them. */
static void expect_two_dropped_three_written(ws_server *s, mt_conn *t) {
  ws_stats st;
  int i;
  ws_server_stats(s, &st, sizeof(st));
  cr_assert_eq(st.drops_queue_full, 2);
  cr_assert_eq(t->closes, 0);
  cr_assert_not_null(t->c);
  t->would_block = 0;
  mt_pump(t);
  for (i = 0; i < 3; i++) {
    mt_frame f;
    mt_expect_frame(t, &f);
    cr_assert_eq(f.opcode, MT_TEXT);
    cr_assert_eq(f.len, strlen("{\"action\":\"m\",\"data\":}") + 282);
  }
}

Test(outq, queue_cap_with_drop_policy_drops_and_stays_open) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t;
    const char *d = json_str(280); /* a 308-byte frame: 3 fit in 1000 */
    int i;
    ws_server *s = server_new(0, 1000, WS_QUEUE_DROP);
    mt_connect(&t, s, "slow", mode);
    t.would_block = 1;
    for (i = 0; i < 3; i++)
      cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK);
    cr_assert_eq(ws_conn_send_json(t.c, "dropped", "1", 1), WS_OK,
                 "a small one still fits");
    cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_EQUEUEFULL);
    cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_EQUEUEFULL);
    expect_two_dropped_three_written(s, &t);
    mt_expect_text(&t, "{\"action\":\"dropped\",\"data\":1}");
    mt_expect_nothing(&t);
    /* Still open and usable. */
    cr_assert_eq(ws_conn_send_json(t.c, "after", "2", 1), WS_OK);
    mt_expect_text(&t, "{\"action\":\"after\",\"data\":2}");
    cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "k", 1, mode), WS_OK);
    {
      mt_frame f;
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG);
    }
    cr_assert_eq(R.on_close_calls, 0);
    server_free(s);
    mt_free(&t);
  }
}

/* The README's handler shape, `return ws_conn_send_json(...)`, under the
 * drop policy: a full queue drops that reply and the connection lives on
 * (the handler's WS_EQUEUEFULL closed it with 1011). Any other failure
 * still closes with 1011. */
static int reply_big(ws_conn *c, const ws_msg *m, void *ud) {
  const char *d = json_str(280); /* a 308-byte frame: 3 fit in 1000 */
  (void)ud;
  if (m->len == strlen("{\"action\":\"fail\"}")) return WS_ENOMEM;
  return ws_conn_send_json(c, "r", d, strlen(d));
}

Test(outq, handler_returning_equeuefull_under_drop_keeps_the_connection) {
  mt_conn t;
  ws_config cfg;
  ws_server *s;
  int i;
  outq_config(&cfg, 0);
  cfg.max_queued = 1000;
  cfg.queue_policy = WS_QUEUE_DROP;
  cfg.handler = reply_big;
  s = server_from(&cfg);
  mt_connect(&t, s, "a", MT_WHOLE);
  t.would_block = 1;
  for (i = 0; i < 5; i++)
    cr_assert_eq(mt_send_text(&t, "{\"action\":\"q\"}", MT_WHOLE), WS_OK,
                 "message %d", i);
  cr_assert_eq(R.on_close_calls, 0);
  expect_two_dropped_three_written(s, &t);
  mt_expect_nothing(&t);
  cr_assert_eq(mt_send_text(&t, "{\"action\":\"fail\"}", MT_WHOLE), WS_OK);
  mt_expect_close(&t, 1011);
  server_free(s);
  mt_free(&t);
}

/* Unblocks t's socket and reads what was queued: exactly texts text
 * frames and pings pings, in any order, then nothing. */
static void expect_after_unblocking(mt_conn *t, int texts, int pings) {
  int i, got_pings = 0, got_texts = 0;
  t->would_block = 0;
  mt_pump(t);
  for (i = 0; i < texts + pings; i++) {
    mt_frame f;
    mt_expect_frame(t, &f);
    got_pings += f.opcode == MT_PING;
    got_texts += f.opcode == MT_TEXT;
  }
  mt_expect_nothing(t);
  cr_assert_eq(got_texts, texts);
  cr_assert_eq(got_pings, pings);
}

/* A peer that sends (a pong per ping interval) but never reads, with no
 * write deadline, under the drop policy: msgs 308-byte messages queued
 * first, then `silences` ping intervals, each ending in the peer's pong;
 * pings_want keepalive pings must be queued in all (max_queued 0: the
 * default). */
static void deaf_peer_pings(size_t max_queued, int msgs, uint32_t interval,
                            int silences, int pings_want) {
  mt_conn t;
  ws_config cfg;
  ws_server *s;
  const char *d = json_str(280); /* 308-byte frames: 3 fit in 1000 */
  int i;
  outq_config(&cfg, 0);
  if (max_queued) cfg.max_queued = max_queued;
  cfg.queue_policy = WS_QUEUE_DROP;
  cfg.write_timeout_ms = 0;
  cfg.idle_timeout_ms = 0;
  cfg.ping_interval_ms = interval;
  s = server_from(&cfg);
  ws_server_tick(s, 1);
  mt_connect(&t, s, "deaf", MT_WHOLE);
  t.would_block = 1;
  for (i = 0; i < msgs; i++)
    cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK);
  for (i = 0; i < silences; i++) {
    ws_server_tick(s, 1 + (interval + 1) * (uint64_t)(i + 1));
    cr_assert_eq(mt_send_frame(&t, MT_PONG, 0, "", 0, MT_WHOLE), WS_OK);
  }
  cr_assert_not_null(t.c, "still open: no deadline applies");
  expect_after_unblocking(&t, msgs, pings_want);
  server_free(s);
  mt_free(&t);
}

/* Keepalive pings are queued only while they fit under max_queued. They
 * went past the cap, one per silence, and the queue grew without bound.
 * 3 messages queue 924 bytes: room for ten 7-byte pings, not for 100. */
Test(outq, keepalive_pings_stop_at_the_cap_of_a_peer_that_never_reads) {
  deaf_peer_pings(1000, 3, 1000, 100, 10); /* (1000 - 924) / 7 pings fit */
  /* 924 + 10 * 7 is exactly 994: the tenth ping fills the queue to the
   * cap, which is still under it (only past the cap is a ping skipped). */
  deaf_peer_pings(994, 3, 1000, 100, 10);
  deaf_peer_pings(993, 3, 1000, 100, 9);
}

/* With bytes to spare under max_queued, keepalive pings stop at the
 * control-frame bound, 1024 unsent, as the pongs to the peer's own pings
 * do. They went past it, pushed past the queue policy (2000 here; past
 * 65535 the count wrapped and let pongs in past 1024 again). */
Test(outq, keepalive_pings_stop_at_the_control_frame_bound) {
  deaf_peer_pings(0, 0, 1, 2000, 1024);
}

/* A push-only client that reads, slowly, under the drop policy: its queue
 * sits within a message of the cap, and its keepalive ping must still be
 * queued (it overtakes the data at the next frame boundary, and the pong
 * keeps the client from the idle deadline). A ping skipped whenever it did
 * not fit under the cap left such a client to be closed for idleness. */
static void keepalive_at_the_cap(size_t max_queued, int pings_want) {
  mt_conn t;
  ws_config cfg;
  ws_server *s;
  const char *d;
  int i;
  outq_config(&cfg, 0);
  cfg.max_queued = max_queued;
  cfg.queue_policy = WS_QUEUE_DROP;
  cfg.ping_interval_ms = 1000;
  s = server_from(&cfg);
  ws_server_tick(s, 1);
  mt_connect(&t, s, "slow", MT_WHOLE);
  t.would_block = 1;
  d = json_str(280); /* frames of 308 bytes (json_str's buffer is static) */
  for (i = 0; i < 3; i++)
    cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK);
  d = json_str(46); /* and one of 72: 996 bytes queued */
  cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK);
  ws_server_tick(s, 1002); /* the ping is due: it passes the cap */
  expect_after_unblocking(&t, 4, pings_want);
  server_free(s);
  mt_free(&t);
}

Test(outq, keepalive_ping_reaches_a_slow_reader_at_the_cap) {
  keepalive_at_the_cap(996, 1); /* exactly full */
  keepalive_at_the_cap(1000, 1); /* 4 bytes of room: less than a ping */
}

/* A cap of SIZE_MAX means no limit (kept just below it, so that the queued
 * byte count cannot wrap): accepted, and frames queue as usual. */
Test(outq, max_queued_of_size_max_is_accepted) {
  mt_conn t;
  ws_config cfg;
  ws_server *s;
  outq_config(&cfg, 0);
  cfg.max_queued = SIZE_MAX;
  s = server_from(&cfg);
  mt_connect(&t, s, "a", MT_WHOLE);
  t.would_block = 1;
  cr_assert_eq(ws_conn_send_json(t.c, "x", "1", 1), WS_OK);
  t.would_block = 0;
  mt_pump(&t);
  mt_expect_text(&t, "{\"action\":\"x\",\"data\":1}");
  server_free(s);
  mt_free(&t);
}

/* ---- the host calling back into the library from inside its send ------- */

/* What the on_write hook does, once, from inside the host's send. */
enum { IN_SEND_OVER_CAP = 1, IN_SEND_PING, IN_SEND_WRITABLE };
static int g_in_send;

static void in_send(mt_conn *t) {
  int what = g_in_send;
  g_in_send = 0;
  if (what == IN_SEND_OVER_CAP) {
    const char *d = json_str(300);
    cr_assert_eq(ws_conn_send_json(t->c, "over", d, strlen(d)),
                 WS_EQUEUEFULL);
  } else if (what == IN_SEND_PING) {
    cr_assert_eq(mt_send_frame(t, MT_PING, 0, "P", 1, MT_WHOLE), WS_OK);
  } else if (what == IN_SEND_WRITABLE) {
    cr_assert_eq(ws_conn_writable(t->c), WS_OK);
  }
}

/* Two messages of 3,000 bytes (too big to be copied into one run) queued
 * while blocked, then written (both in one sendv, or the first alone
 * through send) with the hook armed. */
static char g_a[3100], g_b[3100];
static void two_then_write(mt_conn *t, int what) {
  snprintf(g_a, sizeof(g_a), "{\"action\":\"a\",\"data\":%s}", json_str(3000));
  snprintf(g_b, sizeof(g_b), "{\"action\":\"b\",\"data\":%s}", json_str(3000));
  t->would_block = 1;
  cr_assert_eq(ws_conn_send_json(t->c, "a", g_a + 21, strlen(g_a) - 22), WS_OK);
  cr_assert_eq(ws_conn_send_json(t->c, "b", g_b + 21, strlen(g_b) - 22), WS_OK);
  t->would_block = 0;
  t->on_write = in_send;
  g_in_send = what;
  mt_pump(t);
  cr_assert_eq(g_in_send, 0, "the hook ran");
}

/* A send from inside send that passes the cap: the slow-consumer policy
 * drops the queue but not the frames the host is writing at that moment
 * (they were consumed as freed buffers before). */
Test(outq, over_cap_from_inside_send_keeps_the_frames_being_written) {
  int sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    mt_conn t;
    const char *d = json_str(200);
    ws_server *s = server_new(sendv, 400, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "d", MT_WHOLE);
    t.on_write = in_send;
    g_in_send = IN_SEND_OVER_CAP;
    cr_assert_eq(ws_conn_send_json(t.c, "first", d, strlen(d)), WS_OK);
    cr_assert_eq(g_in_send, 0, "the hook ran");
    {
      mt_frame f;
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_TEXT);
      cr_assert_eq(f.len, strlen("{\"action\":\"first\",\"data\":}") + 202);
    }
    expect_closed_as_slow(&t);
    server_free(s);
    mt_free(&t);
  }
}

/* A ping fed from inside send: its pong goes after the frames in flight,
 * never ahead of bytes the host already took. */
Test(outq, pong_queued_from_inside_send_follows_the_frames_in_flight) {
  int sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    mt_conn t;
    mt_frame f;
    ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "d", MT_WHOLE);
    two_then_write(&t, IN_SEND_PING);
    mt_expect_text(&t, g_a);
    if (!sendv) { /* send writes one buffer: the pong overtakes "b" */
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG);
    }
    mt_expect_text(&t, g_b);
    if (sendv) {
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG);
    }
    cr_assert(mt_payload_is(&f, "P"));
    mt_expect_nothing(&t);
    cr_assert_eq(t.closes, 0);
    server_free(s);
    mt_free(&t);
  }
}

/* ws_conn_writable from inside send writes nothing twice. */
Test(outq, writable_from_inside_send_writes_each_frame_once) {
  int sendv;
  for (sendv = 0; sendv < 2; sendv++) {
    mt_conn t;
    ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "d", MT_WHOLE);
    two_then_write(&t, IN_SEND_WRITABLE);
    mt_expect_text(&t, g_a);
    mt_expect_text(&t, g_b);
    mt_expect_nothing(&t);
    cr_assert_eq(t.closes, 0);
    cr_assert_eq(t.want, 0, "nothing left to write");
    server_free(s);
    mt_free(&t);
  }
}

/* A message larger than max_queued could never fit: every send path
 * refuses it with WS_ETOOBIG up front, queues nothing, and the receiver
 * stays open (it is not a slow consumer). Under the cap, the same calls
 * go through. */
Test(outq, message_larger_than_the_cap_is_etoobig_and_closes_nothing) {
  mt_conn t;
  ws_stats st;
  char d[1100], ok[16];
  ws_prepared *big = NULL;
  ws_server *s = server_new(0, 1000, WS_QUEUE_CLOSE);
  snprintf(d, sizeof(d), "%s", json_str(1000)); /* a frame > 1000 bytes */
  snprintf(ok, sizeof(ok), "%s", json_str(10));
  mt_connect(&t, s, "d", MT_WHOLE);
  cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_ETOOBIG);
  cr_assert_eq(ws_conn_send_text(t.c, d, strlen(d)), WS_ETOOBIG);
  cr_assert_eq(ws_conn_send_binary(t.c, d, strlen(d)), WS_ETOOBIG);
  cr_assert_eq(ws_broadcast_json(s, "m", d, strlen(d), NULL, 0), WS_ETOOBIG);
  cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, strlen(d)), WS_ETOOBIG);
  cr_assert_eq(ws_prepare_json(s, "m", d, strlen(d), &big), WS_ETOOBIG);
  cr_assert_null(big);
  ws_server_tick(s, 1);
  mt_expect_nothing(&t);
  cr_assert_eq(t.closes, 0);
  ws_server_stats(s, &st, sizeof(st));
  cr_assert_eq(st.drops_queue_full, 0, "not a queue-full drop");
  cr_assert_eq(ws_conn_send_json(t.c, "m", ok, strlen(ok)), WS_OK);
  cr_assert_eq(ws_broadcast_json(s, "b", ok, strlen(ok), NULL, 0), 1);
  mt_expect_text(&t, "{\"action\":\"m\",\"data\":\"xxxxxxxxxx\"}");
  mt_expect_text(&t, "{\"action\":\"b\",\"data\":\"xxxxxxxxxx\"}");
  cr_assert_eq(R.on_close_calls, 0);
  server_free(s);
  mt_free(&t);
}

/* The cap refuses only frames LARGER than max_queued: a frame of exactly
 * max_queued bytes (payload plus its 2- or 4-byte unmasked header) goes
 * out on every path that checks the size up front (send, broadcast, post,
 * prepare), and one byte more is WS_ETOOBIG on each. An off-by-one here
 * would refuse the largest message a host configured room for. */
Test(outq, frame_of_exactly_max_queued_bytes_is_accepted) {
  static const size_t sizes[] = {50, 200}; /* 2- and 4-byte headers */
  size_t k;
  for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
    mt_conn t;
    char d[300], d1[300], want[400];
    size_t payload, frame;
    ws_prepared *p = NULL;
    ws_server *s;
    snprintf(d, sizeof(d), "%s", json_str(sizes[k]));
    snprintf(d1, sizeof(d1), "%s", json_str(sizes[k] + 1));
    payload = (size_t)snprintf(want, sizeof(want),
                               "{\"action\":\"m\",\"data\":%s}", d);
    frame = payload + (payload <= 125 ? 2 : 4);
    s = server_new(0, frame, WS_QUEUE_CLOSE);
    mt_connect(&t, s, "d", MT_WHOLE);
    cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK,
                 "a %zu-byte frame with max_queued %zu", frame, frame);
    mt_expect_text(&t, want);
    cr_assert_eq(ws_broadcast_json(s, "m", d, strlen(d), NULL, 0), 1,
                 "a %zu-byte frame with max_queued %zu", frame, frame);
    mt_expect_text(&t, want);
    cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", d, strlen(d)), WS_OK,
                 "a %zu-byte frame with max_queued %zu", frame, frame);
    ws_server_tick(s, 1);
    mt_expect_text(&t, want);
    cr_assert_eq(ws_prepare_json(s, "m", d, strlen(d), &p), WS_OK,
                 "a %zu-byte frame with max_queued %zu", frame, frame);
    cr_assert_eq(ws_conn_send_prepared(t.c, p), WS_OK);
    mt_expect_text(&t, want);
    ws_prepared_free(p);
    p = NULL;
    /* One byte more. */
    cr_assert_eq(ws_conn_send_json(t.c, "m", d1, strlen(d1)), WS_ETOOBIG);
    cr_assert_eq(ws_broadcast_json(s, "m", d1, strlen(d1), NULL, 0),
                 WS_ETOOBIG);
    cr_assert_eq(ws_post(s, WS_POST_ALL, NULL, "m", d1, strlen(d1)),
                 WS_ETOOBIG);
    cr_assert_eq(ws_prepare_json(s, "m", d1, strlen(d1), &p), WS_ETOOBIG);
    cr_assert_null(p);
    ws_server_tick(s, 2);
    mt_expect_nothing(&t);
    cr_assert_eq(t.closes, 0);
    cr_assert_eq(R.on_close_calls, 0);
    server_free(s);
    mt_free(&t);
  }
}

/* A burst of small frames goes out in one call (without sendv: copied
 * into one run of at most 2 KiB, 40 calls before); a short write inside
 * the run resumes at the exact byte, and a bigger frame after it goes. */
Test(outq, small_frames_go_out_as_one_run_and_resume_inside_it) {
  int sendv, mode;
  for (sendv = 0; sendv < 2; sendv++) {
    for (mode = 0; mode < 2; mode++) { /* 0: all at once, 1: 7 bytes a call */
      mt_conn t;
      char want[64];
      int i, calls;
      ws_server *s = server_new(sendv, 0, WS_QUEUE_CLOSE);
      mt_connect(&t, s, "d", MT_WHOLE);
      t.would_block = 1;
      for (i = 0; i < 40; i++) {
        char d[16];
        snprintf(d, sizeof(d), "%d", i);
        cr_assert_eq(ws_conn_send_json(t.c, "m", d, strlen(d)), WS_OK);
      }
      cr_assert_eq(ws_conn_send_json(t.c, "big", json_str(5000), 5002), WS_OK);
      t.would_block = 0;
      t.max_per_send = mode ? 7 : 0;
      calls = t.send_calls;
      mt_pump(&t);
      /* send: the run, then the big frame; sendv: all in one call (a
       * run is only for bursts that fit it whole). */
      if (!mode)
        cr_assert_eq(t.send_calls - calls, sendv ? 1 : 2, "sendv %d: %d calls",
                     sendv, t.send_calls - calls);
      for (i = 0; i < 40; i++) {
        snprintf(want, sizeof(want), "{\"action\":\"m\",\"data\":%d}", i);
        mt_expect_text(&t, want);
      }
      {
        mt_frame f;
        mt_expect_frame(&t, &f);
        cr_assert_eq(f.len, strlen("{\"action\":\"big\",\"data\":}") + 5002);
      }
      mt_expect_nothing(&t);
      cr_assert_eq(t.want, 0);
      server_free(s);
      mt_free(&t);
    }
  }
}

/* Payload lengths take the shortest form (RFC 6455 5.2): up to 125 in the
 * first byte, 126 to 65535 in 16 bits, 65536 on in 64 (review 8, mutant
 * O01: a 65535-byte frame went out in the 64-bit form unnoticed). */
Test(outq, frame_lengths_take_the_shortest_form) {
  static const size_t lens[] = {125, 126, 65535, 65536};
  static const uint8_t len7[] = {125, 126, 126, 127};
  static char payload[65536];
  size_t i, k;
  for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    mt_conn t;
    ws_server *s = server_new(0, 0, WS_QUEUE_CLOSE);
    size_t at, hl = len7[i] == 127 ? 10 : len7[i] == 126 ? 4 : 2;
    uint64_t n = 0;
    mt_connect(&t, s, "d", MT_WHOLE);
    at = t.len;
    cr_assert_eq(ws_conn_send_binary(t.c, payload, lens[i]), WS_OK);
    cr_assert_eq(t.len - at, hl + lens[i], "%zu bytes", lens[i]);
    cr_assert_eq(t.out[at], 0x82);
    cr_assert_eq(t.out[at + 1], len7[i], "%zu bytes", lens[i]);
    for (k = 2; k < hl; k++) n = n << 8 | t.out[at + k];
    if (hl > 2) cr_assert_eq(n, (uint64_t)lens[i]);
    server_free(s);
    mt_free(&t);
  }
}

/* Without sendv, one writable event writes every queued frame the socket
 * takes, not one frame per event (review 8, mutant O12). */
Test(outq, writable_writes_the_whole_queue_without_sendv) {
  static char payload[3000];
  mt_conn t;
  ws_server *s = server_new(0, 0, WS_QUEUE_CLOSE);
  size_t at;
  int i;
  mt_connect(&t, s, "d", MT_WHOLE);
  t.would_block = 1;
  for (i = 0; i < 3; i++)
    cr_assert_eq(ws_conn_send_binary(t.c, payload, sizeof payload), WS_OK);
  at = t.len;
  t.would_block = 0;
  cr_assert_eq(ws_conn_writable(t.c), WS_OK);
  cr_assert_eq(t.len - at, 3 * (4 + sizeof payload));
  cr_assert_eq(ws_conn_want_write(t.c), 0);
  cr_assert_eq(t.want, 0);
  server_free(s);
  mt_free(&t);
}

/* ---- mutation-testing round: plan_write and host_write with sendv ------ */

static ws_server *server_new_counting_sendv(void);
static int sendv_calls;
static ssize_t (*real_sendv)(ws_conn *, void *, const ws_iovec *, int);
static ssize_t counting_sendv(ws_conn *c, void *t, const ws_iovec *iov,
                              int n) {
  sendv_calls++;
  return real_sendv(c, t, iov, n);
}
static ws_server *server_new_counting_sendv(void) {
  ws_config cfg;
  outq_config(&cfg, 1);
  real_sendv = cfg.sendv;
  cfg.sendv = counting_sendv;
  sendv_calls = 0;
  return server_from(&cfg);
}

/* With sendv, a burst that fits one run whole still goes out through
 * send, copied into one buffer (one frame through send too); frames that
 * do not fit go through sendv, every one of them in the same call. */
Test(outq, with_sendv_a_small_burst_goes_through_send_and_a_big_one_whole) {
  static char payload[1500];
  mt_conn t;
  size_t at;
  int i, calls;
  ws_server *s = server_new_counting_sendv();
  mt_connect(&t, s, "d", MT_WHOLE);
  t.would_block = 1;
  for (i = 0; i < 3; i++)
    cr_assert_eq(ws_conn_send_binary(t.c, "abc", 3), WS_OK);
  t.would_block = 0;
  sendv_calls = 0;
  calls = t.send_calls;
  at = t.len;
  cr_assert_eq(ws_conn_writable(t.c), WS_OK);
  cr_assert_eq(t.len - at, 3 * 5);
  cr_assert_eq(t.send_calls - calls, 1);
  cr_assert_eq(sendv_calls, 0, "a run that fits whole is one send");
  /* Two frames of 1504 bytes: no run; one sendv writes both. */
  t.would_block = 1;
  for (i = 0; i < 2; i++)
    cr_assert_eq(ws_conn_send_binary(t.c, payload, sizeof payload), WS_OK);
  t.would_block = 0;
  sendv_calls = 0;
  calls = t.send_calls;
  at = t.len;
  cr_assert_eq(ws_conn_writable(t.c), WS_OK);
  cr_assert_eq(t.len - at, 2 * (4 + sizeof payload));
  cr_assert_eq(t.send_calls - calls, 1);
  cr_assert_eq(sendv_calls, 1, "sendv calls %d", sendv_calls);
  cr_assert_eq(ws_conn_want_write(t.c), 0);
  server_free(s);
  mt_free(&t);
}

/* A queue grown past its two inline slots by a backlog gives the ring back
 * once the backlog is written: an idle connection holds no queue memory
 * (outq.c outq_shrink after a flush). */
Test(outq, drained_queue_gives_its_grown_ring_back) {
  mt_conn t;
  long live;
  int i;
  ws_server *s = server_new(0, 0, WS_QUEUE_CLOSE);
  mt_connect(&t, s, "d", MT_WHOLE);
  live = test_alloc_live();
  t.would_block = 1;
  for (i = 0; i < 20; i++)
    cr_assert_eq(ws_conn_send_binary(t.c, "abc", 3), WS_OK);
  cr_assert_gt(test_alloc_live(), live);
  t.would_block = 0;
  cr_assert_eq(ws_conn_writable(t.c), WS_OK);
  for (i = 0; i < 20; i++) {
    mt_frame f;
    mt_expect_frame(&t, &f);
    cr_assert_eq(f.len, 3);
  }
  cr_assert_eq(test_alloc_live(), live, "%ld allocations live, %ld before",
               test_alloc_live(), live);
  server_free(s);
  mt_free(&t);
}

/* ---- control frames waiting unsent ------------------------------------- */

static int g_ctrl_log_level;
static void ctrl_on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (strstr(msg, "1024 control frames unsent")) g_ctrl_log_level = level;
}

/* Feeds pings to a connection that reads nothing back until 1024 pongs wait
 * (a few KiB: far below max_queued), then one more. */
static ws_server *pings_unread(mt_conn *t, int policy, int mode) {
  ws_config cfg;
  ws_server *s;
  int i;
  outq_config(&cfg, 0);
  cfg.on_log = ctrl_on_log;
  cfg.queue_policy = policy;
  g_ctrl_log_level = -1;
  s = server_from(&cfg);
  mt_connect(t, s, "pinger", mode);
  t->would_block = 1;
  for (i = 0; i < 1024; i++)
    cr_assert_eq(mt_send_frame(t, MT_PING, 0, "p", 1, MT_WHOLE), WS_OK,
                 "ping %d", i);
  cr_assert_eq(g_ctrl_log_level, -1, "1024 pongs may wait");
  /* The 1025th is one too many: closing logs why; dropping is only
   * counted (as for bytes: one line per dropped message would flood). */
  if (policy == WS_QUEUE_CLOSE) {
    cr_assert_eq(mt_send_frame(t, MT_PING, 0, "x", 1, mode), WS_ECLOSED);
    cr_assert_eq(g_ctrl_log_level, WS_LOG_WARN);
  } else {
    cr_assert_eq(mt_send_frame(t, MT_PING, 0, "x", 1, mode), WS_OK);
    cr_assert_eq(g_ctrl_log_level, -1);
  }
  return s;
}

/* A peer that pings without reading its pongs is a slow consumer by count,
 * not only by bytes (wsmux.h ws_queue_policy): closed with 4001. */
Test(outq, pongs_past_1024_unsent_close_the_pinger_with_4001) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t;
    ws_stats st;
    ws_server *s = pings_unread(&t, WS_QUEUE_CLOSE, mode);
    ws_server_stats(s, &st, sizeof(st));
    cr_assert_eq(st.drops_queue_full, 1);
    cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "y", 1, mode), WS_ECLOSED);
    t.would_block = 0;
    mt_pump(&t);
    /* The queued pongs were dropped with the queue: the close comes first. */
    expect_closed_as_slow(&t);
    server_free(s);
    mt_free(&t);
  }
}

/* With WS_QUEUE_DROP the pong past the count is dropped and counted; the
 * 1024 waiting go out in order and the connection stays open. */
Test(outq, pongs_past_1024_unsent_with_drop_policy_drop_the_newest) {
  int mode;
  for (mode = 0; mode < MT_MODES; mode++) {
    mt_conn t;
    ws_stats st;
    mt_frame f;
    int i;
    ws_server *s = pings_unread(&t, WS_QUEUE_DROP, mode);
    ws_server_stats(s, &st, sizeof(st));
    cr_assert_eq(st.drops_queue_full, 1);
    t.would_block = 0;
    mt_pump(&t);
    for (i = 0; i < 1024; i++) {
      mt_expect_frame(&t, &f);
      cr_assert_eq(f.opcode, MT_PONG, "frame %d", i);
      cr_assert(mt_payload_is(&f, "p"), "pong %d answers its own ping", i);
    }
    mt_expect_nothing(&t);
    cr_assert_eq(mt_send_frame(&t, MT_PING, 0, "z", 1, mode), WS_OK);
    mt_expect_frame(&t, &f);
    cr_assert(mt_payload_is(&f, "z"));
    cr_assert_eq(t.closes, 0);
    cr_assert_eq(R.on_close_calls, 0);
    server_free(s);
    mt_free(&t);
  }
}

/* ---- GiBs queued by reference (a 32-bit size_t) -------------------------- */

/* A prepared frame queued over and over adds up to GiBs that take no
 * memory: with a 32-bit size_t, sums of those counts wrap. The transport
 * here counts and drops what it is given (capturing GiBs would not fit). */
static struct {
  int blocked; /* send takes nothing */
  uint64_t written;
  int closes;
} Z;

static ssize_t sink_send(ws_conn *c, void *tr, const void *d, size_t len) {
  (void)c, (void)tr, (void)d;
  if (Z.blocked) return 0;
  Z.written += len;
  return (ssize_t)len;
}

static int sink_close(ws_conn *c, void *tr) {
  (void)c, (void)tr;
  Z.closes++;
  return 0;
}

/* A server whose queues may hold 4 GiB - 1, one open connection on the
 * sink, and a prepared frame of about 16 MiB, whose size *flen is measured
 * by sending it once. The sink is left blocked. */
static ws_server *sink_setup(int policy, ws_conn **c, ws_prepared **p,
                             uint64_t *flen) {
  static const size_t n = 16u << 20;
  char req[512], *json = malloc(n + 2);
  size_t rn = mt_request(req, sizeof(req), "big", NULL);
  ws_config cfg;
  ws_server *s;
  uint64_t before;
  memset(&Z, 0, sizeof(Z));
  outq_config(&cfg, 0);
  cfg.send = sink_send;
  cfg.want_write = NULL;
  cfg.close = sink_close;
  cfg.max_queued = UINT32_MAX;
  cfg.queue_policy = policy;
  s = server_from(&cfg);
  cr_assert_eq(ws_conn_new(s, &Z, c), WS_OK);
  cr_assert_eq(ws_conn_feed(*c, req, rn), WS_OK);
  cr_assert_not_null(json);
  json[0] = '"';
  memset(json + 1, 'x', n);
  json[n + 1] = '"';
  cr_assert_eq(ws_prepare_json(s, "a", json, n + 2, p), WS_OK);
  free(json);
  before = Z.written;
  cr_assert_eq(ws_conn_send_prepared(*c, *p), WS_OK);
  *flen = Z.written - before;
  cr_assert_gt(*flen, n);
  Z.blocked = 1;
  return s;
}

/* The cap holds as the queued bytes near 4 GiB: q.bytes + len wrapped
 * past SIZE_MAX with a 32-bit size_t and took frames far over the cap. */
Test(outq, queue_cap_near_4_gib_is_counted_without_wrapping) {
  ws_conn *c;
  ws_prepared *p;
  uint64_t flen, fit, i;
  ws_server *s = sink_setup(WS_QUEUE_DROP, &c, &p, &flen);
  fit = UINT32_MAX / flen;
  for (i = 0; i < fit; i++)
    cr_assert_eq(ws_conn_send_prepared(c, p), WS_OK, "frame %llu",
                 (unsigned long long)i);
  cr_assert_eq(ws_conn_send_prepared(c, p), WS_EQUEUEFULL,
               "%llu frames of %llu bytes queued under a cap of 2^32 - 1",
               (unsigned long long)fit + 1, (unsigned long long)flen);
  cr_assert_eq(Z.closes, 0);
  ws_prepared_free(p);
  server_free(s);
}

/* One flush writing more than 2 GiB succeeded but its byte count, a long,
 * went negative where long is 32 bits: the connection was ended as if its
 * send had failed. */
Test(outq, one_flush_of_over_2_gib_keeps_the_connection) {
  ws_conn *c;
  ws_prepared *p;
  uint64_t flen, before;
  int i, frames;
  ws_server *s = sink_setup(WS_QUEUE_CLOSE, &c, &p, &flen);
  frames = (int)(((uint64_t)1 << 31) / flen) + 32; /* 2.5 GiB or so */
  for (i = 0; i < frames; i++)
    cr_assert_eq(ws_conn_send_prepared(c, p), WS_OK, "frame %d", i);
  Z.blocked = 0;
  before = Z.written;
  cr_assert_eq(ws_conn_writable(c), WS_OK);
  cr_assert_eq(Z.written - before, (uint64_t)frames * flen);
  cr_assert_eq(ws_conn_want_write(c), 0);
  cr_assert_eq(Z.closes, 0);
  cr_assert_eq(R.on_close_calls, 0, "closed with %d", R.on_close_code);
  ws_prepared_free(p);
  server_free(s);
}
