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
/* While g_cap is set, the sinks also copy what they are given there (at
 * most g_cap_max bytes; g_cap_len counts all of it), so that the replies
 * can be compared byte for byte outside the timed loops. */
static unsigned char *g_cap;
static size_t g_cap_len, g_cap_max;

static void capture(const void *d, size_t n) {
  if (g_cap && g_cap_len < g_cap_max)
    memcpy(g_cap + g_cap_len, d,
           n < g_cap_max - g_cap_len ? n : g_cap_max - g_cap_len);
  g_cap_len += n;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static ssize_t sink_send(ws_conn *c, void *t, const void *d, size_t n) {
  (void)c, (void)t;
  if (g_cap) capture(d, n);
  g_out_bytes += n;
  return (ssize_t)n;
}

static ssize_t sink_sendv(ws_conn *c, void *t, const ws_iovec *iov, int n) {
  size_t total = 0;
  int i;
  (void)c, (void)t;
  for (i = 0; i < n; i++) {
    if (g_cap) capture(iov[i].base, iov[i].len);
    total += iov[i].len;
  }
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

static const char k_pong[] = "\x81\x1b{\"action\":\"pong\",\"data\":\"\"}";
#define PONG_LEN (sizeof(k_pong) - 1)

/* Runs fn(arg) with the sinks' output captured and checks it is n copies
 * of the frame want (len bytes): no figure comes from wrong replies. */
static void expect_output(void (*fn)(void *), void *arg, const void *want,
                          size_t len, size_t n, const char *what) {
  static unsigned char cap[64 * 1024];
  size_t i;
  g_cap = cap, g_cap_len = 0, g_cap_max = sizeof cap;
  fn(arg);
  g_cap = NULL;
  if (g_cap_len != len * n || len * n > sizeof cap) {
    fprintf(stderr, "%s: %zu bytes out, %zu expected\n", what, g_cap_len,
            len * n);
    exit(1);
  }
  for (i = 0; i < n; i++)
    if (memcmp(cap + i * len, want, len) != 0) {
      fprintf(stderr, "%s: reply %zu differs\n", what, i);
      exit(1);
    }
}

typedef struct feed_arg {
  ws_conn *c;
  const unsigned char *p;
  size_t len;
} feed_arg;

static void feed_once(void *arg) {
  feed_arg *f = arg;
  ws_conn_feed(f->c, f->p, f->len);
}

/* Feeds `batch` pings per call for `secs` seconds; returns pongs/s. The
 * replies to one call are compared byte for byte first, and the bytes of
 * all of them are counted. */
static double bench_pingpong(ws_conn *c, int batch, double secs) {
  unsigned char buf[64 * 32];
  size_t one = mask_frame(buf, "{\"action\":\"ping\"}"), len = 0, out0;
  unsigned long start_pongs, iters = 0;
  double t0, t;
  int i;
  for (i = 0; i < batch; i++) memcpy(buf + len, buf, one), len += one;
  {
    feed_arg f = {c, buf, len};
    expect_output(feed_once, &f, k_pong, PONG_LEN, (size_t)batch, "pong");
  }
  start_pongs = g_pongs, out0 = g_out_bytes, t0 = now_s();
  do {
    int k;
    for (k = 0; k < 1000; k++) ws_conn_feed(c, buf, len);
    iters += 1000;
    t = now_s();
  } while (t - t0 < secs);
  if (g_pongs - start_pongs != iters * (unsigned long)batch ||
      g_out_bytes - out0 != (g_pongs - start_pongs) * PONG_LEN) {
    fprintf(stderr, "lost pongs\n");
    exit(1);
  }
  return (double)(g_pongs - start_pongs) / (t - t0);
}

/* The reference: unmask the same frame and copy a prepared pong. */
static double bench_floor(double secs) {
  unsigned char in[64], work[64], out[64];
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
        memcpy(out, k_pong, PONG_LEN), sink += out[1];
    }
    ops += 100000;
    t = now_s();
  } while (t - t0 < secs);
  (void)sink;
  return (double)ops / (t - t0);
}

typedef struct bc_arg {
  ws_server *s;
  const char *data;
  size_t len;
} bc_arg;

static void broadcast_to_d0(void *arg) {
  bc_arg *b = arg;
  static const char *const d0[] = {"d0"};
  ws_broadcast_json(b->s, "bc", b->data, b->len, d0, 1);
}

/* The frame a receiver gets for {"action":"bc","data":<data>} (len bytes
 * of data, under 64 KiB); malloc'd, its length in *n. */
static unsigned char *bc_frame(const char *data, size_t len, size_t *n) {
  static const char head[] = "{\"action\":\"bc\",\"data\":";
  size_t pl = sizeof(head) - 1 + len + 1, h = pl < 126 ? 2 : 4;
  unsigned char *f = malloc(h + pl);
  f[0] = 0x81;
  if (h == 2) {
    f[1] = (unsigned char)pl;
  } else {
    f[1] = 126, f[2] = (unsigned char)(pl >> 8), f[3] = (unsigned char)pl;
  }
  memcpy(f + h, head, sizeof(head) - 1);
  memcpy(f + h + sizeof(head) - 1, data, len);
  f[h + pl - 1] = '}';
  *n = h + pl;
  return f;
}

/* ids: NULL for everyone, or nids device ids, each looked up by name (the
 * device index: a keyed hash and a probe per id). One receiver's frame is
 * compared byte for byte first, and the bytes to all of them counted. */
static double bench_broadcast(ws_server *s, size_t size, int rounds,
                              const char *const *ids, size_t nids) {
  char *data = malloc(size + 3);
  unsigned char *want;
  size_t flen, out0;
  double t0, t;
  int i, n = 0;
  data[0] = '"';
  memset(data + 1, 'x', size);
  data[size + 1] = '"';
  want = bc_frame(data, size + 2, &flen);
  {
    bc_arg b = {s, data, size + 2};
    expect_output(broadcast_to_d0, &b, want, flen, 1, "broadcast");
  }
  out0 = g_out_bytes;
  t0 = now_s();
  for (i = 0; i < rounds; i++) {
    n = ws_broadcast_json(s, "bc", data, size + 2, ids, nids);
    ws_server_tick(s, 0);
  }
  t = now_s();
  if (n != (int)ws_server_conn_count(s) || /* every one is open */
      g_out_bytes - out0 != (size_t)rounds * (size_t)n * flen) {
    fprintf(stderr, "broadcast reached %d of %zu connections, %zu bytes\n",
            n, ws_server_conn_count(s), g_out_bytes - out0);
    exit(1);
  }
  free(want);
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
