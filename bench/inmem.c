/*
 * In-memory benchmark of the library alone: no sockets, no kernel.
 *
 *  1. ping -> pong through the whole path (frames in, UTF-8, envelope scan,
 *     mux dispatch, reply framed and written through the send callback),
 *     one frame per feed and 32 frames per feed;
 *  2. the cost per receiver of a broadcast to 10,000 connections, at
 *     several message sizes (it should not depend on the size: one frame
 *     is built and shared);
 *     and again with the pong prepared once (ws_prepare_json, as the
 *     ping/pong examples do), so a reply is only a queued reference;
 *     and to 10,000 device ids named in a list (the difference is the
 *     cost of a lookup in the device index);
 *  3. the library heap per idle connection, read through the allocator
 *     hook with the ping/pong examples' config (to set beside the RSS
 *     figure of bench/run.sh's idle test);
 *  4. a reference in the same run: a loop that only unmasks the same ping
 *     frame and copies a prepared pong, the least any server must do. The
 *     ratio to it is what BENCHMARKS.md quotes (the machine is noisy).
 *
 * Usage: inmem [--seconds S] [--conns N]
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsmux.h"

static size_t g_out_bytes;
static unsigned long g_pongs;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static ssize_t sink_send(ws_conn *c, void *t, const void *d, size_t n) {
  (void)c, (void)t, (void)d;
  g_out_bytes += n;
  return (ssize_t)n;
}

static ssize_t sink_sendv(ws_conn *c, void *t, const ws_iovec *iov, int n) {
  size_t total = 0;
  int i;
  (void)c, (void)t;
  for (i = 0; i < n; i++) total += iov[i].len;
  g_out_bytes += total;
  return (ssize_t)total;
}

static int sink_close(ws_conn *c, void *t) {
  (void)c, (void)t;
  return 0;
}

/* ud: the prepared pong, or NULL to build each reply (ws_conn_send_json). */
static int on_ping(ws_conn *c, const ws_msg *m, void *ud) {
  ws_prepared **pong = ud;
  (void)m;
  g_pongs++;
  if (*pong) return ws_conn_send_prepared(c, *pong);
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

static size_t mask_frame(unsigned char *out, const char *payload) {
  static const unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};
  size_t n = strlen(payload), i;
  out[0] = 0x81;
  out[1] = (unsigned char)(0x80 | n);
  memcpy(out + 2, key, 4);
  for (i = 0; i < n; i++) out[6 + i] = (unsigned char)payload[i] ^ key[i % 4];
  return 6 + n;
}

/* A counting allocator: each block carries its size in front. */
static size_t g_live;
typedef union {
  size_t n;
  max_align_t align;
} blk_head;

static void *count_malloc(size_t n, void *ud) {
  blk_head *h = malloc(sizeof(*h) + n);
  (void)ud;
  if (h == NULL) return NULL;
  h->n = n;
  g_live += n;
  return h + 1;
}

static void *count_realloc(void *p, size_t n, void *ud) {
  blk_head *h = p ? (blk_head *)p - 1 : NULL;
  size_t old = h ? h->n : 0;
  (void)ud;
  h = realloc(h, sizeof(*h) + n);
  if (h == NULL) return NULL;
  g_live = g_live - old + n;
  h->n = n;
  return h + 1;
}

static void count_free(void *p, void *ud) {
  (void)ud;
  if (p == NULL) return;
  g_live -= ((blk_head *)p - 1)->n;
  free((blk_head *)p - 1);
}

static ws_server *make_server(ws_mux *mux) {
  ws_config cfg;
  ws_server *s;
  ws_config_init(&cfg);
  cfg.send = sink_send;
  cfg.sendv = sink_sendv;
  cfg.close = sink_close;
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cfg.keep_headers = 0; /* as the ping/pong examples */
  cfg.max_connections = 1000000;
  cfg.alloc.malloc = count_malloc;
  cfg.alloc.realloc = count_realloc;
  cfg.alloc.free = count_free;
  if (ws_server_new(&cfg, &s) != WS_OK) exit(1);
  return s;
}

static ws_conn *connect_one(ws_server *s, int id) {
  char req[256];
  ws_conn *c;
  int n = snprintf(req, sizeof(req),
                   "GET /ws?device_id=d%d HTTP/1.1\r\nHost: x\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   id);
  if (ws_conn_new(s, NULL, &c) != WS_OK ||
      ws_conn_feed(c, req, (size_t)n) != WS_OK)
    exit(1);
  return c;
}

/* Feeds `batch` pings per call for `secs` seconds; returns pongs/s. */
static double bench_pingpong(ws_conn *c, int batch, double secs) {
  unsigned char buf[64 * 32];
  size_t one = mask_frame(buf, "{\"action\":\"ping\"}"), len = 0;
  unsigned long start_pongs = g_pongs, iters = 0;
  double t0 = now_s(), t;
  int i;
  for (i = 0; i < batch; i++) memcpy(buf + len, buf, one), len += one;
  do {
    int k;
    for (k = 0; k < 1000; k++) ws_conn_feed(c, buf, len);
    iters += 1000;
    t = now_s();
  } while (t - t0 < secs);
  if (g_pongs - start_pongs != iters * (unsigned long)batch) {
    fprintf(stderr, "lost pongs\n");
    exit(1);
  }
  return (double)(g_pongs - start_pongs) / (t - t0);
}

/* The reference: unmask the same frame and copy a prepared pong. */
static double bench_floor(double secs) {
  unsigned char in[64], work[64], out[64];
  static const char pong[] = "\x81\x1b{\"action\":\"pong\",\"data\":\"\"}";
  size_t n = mask_frame(in, "{\"action\":\"ping\"}"), i;
  unsigned long ops = 0;
  volatile size_t sink = 0;
  double t0 = now_s(), t;
  do {
    int k;
    for (k = 0; k < 100000; k++) {
      memcpy(work, in, n);
      for (i = 6; i < n; i++) work[i] ^= work[2 + (i - 6) % 4];
      if (memcmp(work + 6, "{\"action\":\"ping\"}", n - 6) == 0)
        memcpy(out, pong, sizeof(pong) - 1), sink += out[1];
    }
    ops += 100000;
    t = now_s();
  } while (t - t0 < secs);
  (void)sink;
  return (double)ops / (t - t0);
}

/* ids: NULL for everyone, or nids device ids, each looked up by name (the
 * device index: a keyed hash and a probe per id). */
static double bench_broadcast(ws_server *s, size_t size, int rounds,
                              const char *const *ids, size_t nids) {
  char *data = malloc(size + 3);
  double t0, t;
  int i, n = 0;
  data[0] = '"';
  memset(data + 1, 'x', size);
  data[size + 1] = '"';
  t0 = now_s();
  for (i = 0; i < rounds; i++) {
    n = ws_broadcast_json(s, "bc", data, size + 2, ids, nids);
    ws_server_tick(s, 0);
  }
  if (n != (int)ws_server_conn_count(s)) { /* every one is open */
    fprintf(stderr, "broadcast reached %d of %zu connections\n", n,
            ws_server_conn_count(s));
    exit(1);
  }
  t = now_s();
  free(data);
  return (t - t0) * 1e9 / ((double)rounds * (double)n);
}

int main(int argc, char **argv) {
  double secs = 2.0, floor_ops, pp1, pp32, pr1, pr32;
  ws_prepared *pong = NULL;
  int conns = 10000, i;
  size_t live0;
  ws_mux *mux = ws_mux_new(NULL);
  ws_server *s;
  ws_conn *c;
  size_t sizes[] = {64, 1024, 16384};

  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--seconds") == 0) secs = atof(argv[i + 1]);
    if (strcmp(argv[i], "--conns") == 0) conns = atoi(argv[i + 1]);
  }
  ws_mux_handle(mux, "ping", on_ping, &pong);
  s = make_server(mux);
  c = connect_one(s, 0);

  floor_ops = bench_floor(secs);
  pp1 = bench_pingpong(c, 1, secs);
  pp32 = bench_pingpong(c, 32, secs);
  if (ws_prepare_json(s, "pong", "\"\"", 2, &pong) != WS_OK) return 1;
  pr1 = bench_pingpong(c, 1, secs);
  pr32 = bench_pingpong(c, 32, secs);
  printf("RESULT inmem pingpong_1=%.0f pingpong_32=%.0f floor=%.0f "
         "ratio_1=%.3f ratio_32=%.3f\n",
         pp1, pp32, floor_ops, pp1 / floor_ops, pp32 / floor_ops);
  printf("RESULT inmem prepared pingpong_1=%.0f pingpong_32=%.0f "
         "ratio_1=%.3f ratio_32=%.3f\n",
         pr1, pr32, pr1 / floor_ops, pr32 / floor_ops);

  live0 = g_live;
  for (i = 1; i < conns; i++) connect_one(s, i);
  printf("RESULT inmem idle conns=%d heap_bytes_per_conn=%.0f\n", conns - 1,
         (double)(g_live - live0) / (conns - 1));
  for (i = 0; i < 3; i++) {
    double ns =
        bench_broadcast(s, sizes[i], sizes[i] > 4096 ? 20 : 50, NULL, 0);
    printf("RESULT inmem broadcast conns=%d size=%zu ns_per_receiver=%.1f\n",
           conns, sizes[i], ns);
  }
  {
    /* The same 64 B broadcast to every device named in a list: the
     * difference per receiver is the device lookup. */
    char(*names)[16] = malloc((size_t)conns * sizeof *names);
    const char **ids = malloc((size_t)conns * sizeof *ids);
    double all, listed;
    for (i = 0; i < conns; i++) {
      snprintf(names[i], sizeof names[i], "d%d", i);
      ids[i] = names[i];
    }
    all = bench_broadcast(s, 64, 50, NULL, 0);
    listed = bench_broadcast(s, 64, 50, ids, (size_t)conns);
    printf("RESULT inmem broadcast_ids conns=%d size=64 ns_per_receiver=%.1f "
           "all_ns_per_receiver=%.1f lookup_ns=%.1f\n",
           conns, listed, all, listed - all);
    free(ids);
    free(names);
  }
  ws_server_free(s);
  ws_mux_free(mux);
  return 0;
}
