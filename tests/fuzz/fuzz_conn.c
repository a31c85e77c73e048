/*
 * libFuzzer target: whole connections through the public API with an
 * in-memory transport.
 *
 * Input layout:
 *   byte 0  flags: 1 prepend a valid upgrade request for the main
 *           connection; 2 transport has sendv; 4 queue policy DROP;
 *           8 bad-message policy CLOSE; 16 a second (passive) connection,
 *           upgraded first, that broadcasts reach; 32 fail one allocation
 *           (byte 1 says which, counted after setup); 64 no on_http;
 *           128 duplicate policy WS_DUP_REPLACE_SAME_USER.
 *           on_upgrade binds the query's user and, as on_http does, adds
 *           each "X-Add: name:value" request header as a response line
 *           (ws_conn_add_header, whatever it accepts).
 *   byte 1  the allocation to fail (with flag 32)
 *   then    operations, each one byte, some followed by data:
 *     00-7F  feed the next (op + 1) bytes to the main connection
 *     80-9F  feed the next ((op & 31) + 1) * 64 bytes
 *     A0-AF  main transport mode (op & 3: take all, take a few, would
 *            block, fail) and partial size ((op >> 2) & 3; with fail,
 *            2 and 3 make send abort the connection or free the server
 *            first and then read the data it was given)
 *     B0-BF  the same for the second connection
 *     C0-CF  ws_conn_writable (bit 0: on the second connection)
 *     D0-DF  time passes: ((op & 15) * 97 + 1) ms, then ws_server_tick
 *     E0-EF  host actions (close, abort, broadcast, shutdown, post, send)
 *     F0-FE  feed one byte (op & 15 selects a frame-ish byte)
 *     FF     feed everything left
 * The mux has handlers that echo, broadcast, close, fail (-1), abort, join
 * and publish, and free the server. Limits are small (max_message 4096,
 * max_queued 16384) and deadlines short, so every path is reachable.
 *
 * Invariants, checked after every operation (abort on violation):
 *   - queued bytes of a live connection <= max_queued + one frame;
 *   - the want_write signal matches ws_conn_want_write after each call;
 *   - no handler, on_open or send after on_close / the transport close;
 *     on_close at most once and only after on_open; transport close once;
 *   - stats: conns_open / conns_pending match the callbacks seen, each
 *     closes_* counter the codes on_close got; bytes_out is what the
 *     transports took, bytes_in at most what was fed, msgs_out at least
 *     the text and binary frames written; no counter goes down;
 *   - on_close during ws_server_free gets 1006;
 *   - after ws_conn_close answered WS_OK on an open connection, its close
 *     frame (if one goes out) carries that code and reason;
 *   - ws_server_tick answers -1 or at most idle_timeout_ms (the longest
 *     deadline), and not -1 while a connection is left;
 *   - each connection's output is one HTTP response, then only complete,
 *     unmasked server frames with valid opcodes, UTF-8 text that is a
 *     JSON value, valid close codes, nothing after a close frame.
 * At the end ws_server_free (unless a handler freed it) must close every
 * connection, and the counting allocator must show zero live blocks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGE 4096
#define MAX_QUEUED 16384
/* One frame of the largest message plus its envelope and header. */
#define ONE_FRAME (MAX_MESSAGE + 256)
#define NCONN 3

enum { F_VALID = 1, F_SENDV = 2, F_DROP = 4, F_BADCLOSE = 8, F_PEER = 16,
       F_FAILMALLOC = 32, F_NOHTTP = 64, F_SAMEUSER = 128 };
enum { M_ALL = 0, M_PARTIAL, M_BLOCK, M_FAIL };

typedef struct tp {
  ws_conn *c; /* NULL once the transport close callback ran */
  int created, opened, app_closed, tp_closed;
  int mode;
  size_t partial;
  int want; /* last want_write signal */
  fz_out out;
} tp;

typedef struct world {
  fz_alloc fa;
  ws_server *s;
  ws_mux *mux;
  int freed; /* a handler called ws_server_free */
  tp t[NCONN];
  uint64_t now;
  int in_call;
  long closes_by[FZ_CLOSE_BUCKETS]; /* on_close codes, by closes_* counter */
  int freeing;        /* inside ws_server_free */
  uint64_t taken, fed; /* bytes the transports took / fed */
  ws_stats last;      /* the stats at the last check */
} world;

/* One world per input; callbacks find it through here. */
static world *W;

static const char valid_req[] =
    "GET /ws?device_id=a HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static const char peer_req[] =
    "GET /ws?device_id=b HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static tp *tp_of(ws_conn *c) {
  tp *t = ws_conn_transport(c);
  FZ_CHECK(t >= W->t && t < W->t + NCONN, "unknown transport pointer");
  FZ_CHECK(t->c == c, "callback for a connection whose transport closed");
  return t;
}

/* ---- transport ---------------------------------------------------------- */

static size_t tp_accept(tp *t, size_t want) {
  switch (t->mode) {
  case M_PARTIAL: return want < t->partial ? want : t->partial;
  case M_BLOCK: return 0;
  default: return want;
  }
}

/* A failing send that first ends its connection (or the server), as a
 * host that drops a dead socket does, then reads what it was given: that
 * data must stay valid for the whole call (ASan sees it otherwise). */
static void server_free(void) {
  W->freed = W->freeing = 1;
  ws_server_free(W->s);
  W->freeing = 0;
}

static ssize_t fail_send(tp *t, const ws_iovec *iov, int iovcnt) {
  volatile unsigned sum = 0;
  int i;
  size_t k;
  if (t->partial == 100) {
    ws_conn_abort(t->c);
  } else if (t->partial == 1000 && !W->freed) {
    server_free();
  }
  for (i = 0; i < iovcnt; i++)
    for (k = 0; k < iov[i].len; k++) sum += ((const uint8_t *)iov[i].base)[k];
  (void)sum;
  return -1;
}

static ssize_t on_send(ws_conn *c, void *transport, const void *p,
                       size_t len) {
  tp *t = tp_of(c);
  size_t n;
  FZ_CHECK(transport == t, "send with a foreign transport");
  FZ_CHECK(len > 0, "send of zero bytes");
  if (t->mode == M_FAIL) {
    ws_iovec one = {p, len};
    return fail_send(t, &one, 1);
  }
  n = tp_accept(t, len);
  fz_out_append(&t->out, p, n);
  W->taken += n;
  return (ssize_t)n;
}

static ssize_t on_sendv(ws_conn *c, void *transport, const ws_iovec *iov,
                        int iovcnt) {
  tp *t = tp_of(c);
  size_t total = 0, left;
  int i;
  FZ_CHECK(transport == t, "sendv with a foreign transport");
  FZ_CHECK(iovcnt > 0, "sendv with no buffers");
  if (t->mode == M_FAIL) return fail_send(t, iov, iovcnt);
  for (i = 0; i < iovcnt; i++) {
    FZ_CHECK(iov[i].len > 0, "sendv with an empty buffer");
    total += iov[i].len;
  }
  left = tp_accept(t, total);
  total = left;
  W->taken += total;
  for (i = 0; i < iovcnt && left > 0; i++) {
    size_t n = iov[i].len < left ? iov[i].len : left;
    fz_out_append(&t->out, iov[i].base, n);
    left -= n;
  }
  return (ssize_t)total;
}

static int on_want_write(ws_conn *c, void *transport, int want) {
  tp *t = tp_of(c);
  (void)transport;
  FZ_CHECK(want == 0 || want == 1, "want_write not 0/1");
  FZ_CHECK(want != t->want, "want_write repeated the same signal");
  t->want = want;
  return 0;
}

static int on_tp_close(ws_conn *c, void *transport) {
  tp *t = tp_of(c);
  (void)transport;
  FZ_CHECK(t->tp_closed == 0, "transport closed twice");
  FZ_CHECK(!t->opened || t->app_closed == 1,
           "transport closed without on_close for an opened connection");
  t->tp_closed = 1;
  t->c = NULL;
  return 0;
}

/* ---- application callbacks --------------------------------------------- */

static int on_open(ws_conn *c, void *ud) {
  tp *t = tp_of(c);
  (void)ud;
  FZ_CHECK(!t->opened && !t->app_closed, "on_open twice or after on_close");
  t->opened = 1;
  return 0;
}

static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  tp *t = tp_of(c);
  (void)ud;
  FZ_CHECK(t->opened, "on_close without on_open");
  FZ_CHECK(t->app_closed == 0, "on_close twice");
  FZ_CHECK(reason != NULL, "on_close without a reason");
  FZ_CHECK(code >= 1000 && code <= 4999, "on_close code out of range");
  /* No callback here calls into the library: every on_close during
   * ws_server_free is one it ends, with 1006 whatever was exchanged. */
  FZ_CHECK(!W->freeing || code == WS_CLOSE_ABNORMAL,
           "on_close from ws_server_free with a code other than 1006");
  W->closes_by[fz_close_bucket(code)]++;
  t->app_closed = 1;
  return 0;
}

/* Each "X-Add: name:value" header of the request becomes a line of the
 * response, if ws_conn_add_header takes it: the head checks then see
 * whether a line it accepted can break the response. */
static void add_lines(ws_conn *c, const ws_request *req) {
  size_t i, n = ws_request_header_count(req);
  for (i = 0; i < n; i++) {
    const char *name, *value;
    char buf[512];
    char *colon;
    if (ws_request_header_at(req, i, &name, &value) != WS_OK ||
        strcasecmp(name, "X-Add") != 0 || strlen(value) >= sizeof buf)
      continue;
    strcpy(buf, value);
    if ((colon = strchr(buf, ':')) == NULL) continue;
    *colon = '\0';
    (void)ws_conn_add_header(c, buf, colon + 1);
  }
}

static int on_upgrade(ws_conn *c, const ws_request *req, const char **reason,
                      void *ud) {
  const char *user = ws_request_query(req, "user");
  (void)reason, (void)ud;
  (void)tp_of(c);
  if (user) (void)ws_conn_set_user(c, user);
  add_lines(c, req);
  return 0;
}

static int on_http(ws_conn *c, const ws_request *req, void *ud) {
  const char *path = ws_request_path(req);
  (void)ud;
  (void)tp_of(c);
  add_lines(c, req);
  if (path && strcmp(path, "/") == 0)
    ws_conn_http_respond(c, 200, "text/html", "<p>hi</p>", 9);
  return 0;
}

/* ws_conn_close on t: once it answers WS_OK on an open connection, the
 * close frame t's output has (if any) carries code and reason. Set first:
 * the frame may go out before the call returns. */
static void host_close(tp *t, int code, const char *reason) {
  int open = t->c->state == WS__OPEN;
  if (open) {
    t->out.close_want = code;
    snprintf(t->out.close_reason, sizeof t->out.close_reason, "%s",
             reason ? reason : "");
  }
  if (ws_conn_close(t->c, code, reason) != WS_OK && open)
    t->out.close_want = 0;
}

static void handler_entry(ws_conn *c, const ws_msg *msg) {
  tp *t = tp_of(c);
  FZ_CHECK(t->opened && !t->app_closed, "handler outside open..on_close");
  FZ_CHECK(msg->binary || (msg->action && strlen(msg->action) <=
                                              WS_MAX_ACTION),
           "text message without a valid action");
  FZ_CHECK(msg->len <= MAX_MESSAGE, "message over max_message delivered");
}

static int h_echo(ws_conn *c, const ws_msg *msg, void *ud) {
  size_t n;
  const char *d;
  (void)ud;
  handler_entry(c, msg);
  d = ws_msg_data_json(msg, &n);
  if (d) ws_conn_send_json(c, "echo", d, n);
  else ws_conn_send(c, "echo", NULL);
  return 0;
}

static int h_raw(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  ws_conn_send_json(c, "raw", msg->text, msg->len);
  return 0;
}

static int h_bcast(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  ws_broadcast_json(ws_conn_server(c), "bcast", msg->text, msg->len, NULL, 0);
  return 0;
}

static int h_close(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  host_close(tp_of(c), WS_CLOSE_NORMAL, "bye");
  /* Sending after close must be refused, not queued behind the close. */
  FZ_CHECK(ws_conn_send(c, "late", NULL) == WS_ECLOSED,
           "send accepted after ws_conn_close");
  return 0;
}

static int h_fail(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  return -1;
}

static int h_abort(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  ws_conn_abort(c);
  return 0;
}

static int h_join(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  ws_conn_join(c, "room");
  ws_conn_set_user(c, "u1");
  ws_publish_json(ws_conn_server(c), "room", "joined", "{}", 2);
  ws_push_user_json(ws_conn_server(c), "u1", "hello", "[1,2]", 5);
  return 0;
}

static int h_leave(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  ws_conn_leave(c, "room");
  ws_conn_set_user(c, NULL);
  ws_send_device(ws_conn_server(c), "b", "poke", NULL);
  return 0;
}

static int h_free(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  server_free();
  return 0;
}

static int h_binary(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)ud;
  handler_entry(c, msg);
  FZ_CHECK(msg->action == NULL && ws_msg_data_json(msg, NULL) == NULL,
           "binary message with an action or data");
  ws_conn_send_binary(c, msg->text, msg->len);
  return 0;
}

/* ---- invariants --------------------------------------------------------- */

/* The counters against the callbacks and the transports: closes_* count
 * the codes on_close got, bytes_out the bytes the transports took,
 * bytes_in at most those fed, msgs_out at least the text and binary
 * frames written; and no counter (every field but conns_open and
 * conns_pending) goes down. */
FZ_NOCOV static void check_counters(const ws_stats *st) {
  uint64_t frames = 0;
  size_t k;
  for (k = 0; k < NCONN; k++)
    frames += W->t[k].out.frames[1] + W->t[k].out.frames[2];
  FZ_CHECK(st->bytes_out == W->taken,
           "bytes_out differs from the bytes the transports took");
  FZ_CHECK(st->bytes_in <= W->fed, "bytes_in past the bytes fed");
  FZ_CHECK(st->msgs_out >= frames,
           "msgs_out below the text and binary frames written");
  fz_check_counters(st, W->closes_by, &W->last);
}

static void check_world(void) {
  ws_stats st;
  uint64_t open = 0, pending = 0;
  int i;
  for (i = 0; i < NCONN; i++) {
    tp *t = &W->t[i];
    if (!t->created) continue;
    if (t->opened && !t->app_closed) open++;
    if (!t->opened && !t->tp_closed) pending++;
    if (t->c == NULL || W->freed) continue;
    FZ_CHECK(t->c->q.bytes <= MAX_QUEUED + ONE_FRAME,
             "queued bytes past max_queued plus one frame");
    FZ_CHECK(ws_conn_want_write(t->c) == t->want,
             "want_write signal differs from ws_conn_want_write");
  }
  if (W->freed) return;
  if (ws_server_stats(W->s, &st, sizeof(st)) != WS_OK) fz_fail("stats");
  FZ_CHECK(st.conns_open == open, "conns_open differs from callbacks");
  FZ_CHECK(st.conns_pending == pending, "conns_pending differs from callbacks");
  FZ_CHECK(ws_server_conn_count(W->s) == open, "conn_count");
  check_counters(&st);
}

/* ---- setup -------------------------------------------------------------- */

static int conn_new(int i) {
  tp *t = &W->t[i];
  if (ws_conn_new(W->s, t, &t->c) != WS_OK) {
    t->c = NULL;
    return -1;
  }
  t->created = 1;
  t->out.json_text = 1;
  return 0;
}

static void feed(tp *t, const uint8_t *p, size_t n) {
  uint8_t *copy;
  if (t->c == NULL || W->freed) return;
  copy = fz_dup(p, n);
  W->fed += n;
  ws_conn_feed(t->c, copy, n);
  free(copy);
}

static void set_mode(tp *t, uint8_t op) {
  static const size_t partial[4] = {1, 7, 100, 1000};
  t->mode = op & 3;
  t->partial = partial[(op >> 2) & 3];
}

static void host_action(uint8_t op) {
  static const char big[3000] = {0};
  tp *m = &W->t[0], *p = &W->t[1];
  ws_server *s = W->s;
  switch (op & 15) {
  case 0:
    if (m->c) host_close(m, WS_CLOSE_NORMAL, "host");
    break;
  case 1:
    if (m->c) ws_conn_abort(m->c);
    break;
  case 2:
    ws_broadcast_json(s, "news", "{\"n\":1}", 7, NULL, 0);
    break;
  case 3:
    ws_server_shutdown(s, 300);
    break;
  case 4:
    ws_post(s, WS_POST_ALL, NULL, "post", "\"x\"", 3);
    break;
  case 5:
    if (m->c) ws_conn_send_binary(m->c, big, sizeof(big));
    break;
  case 6:
    if (p->c) host_close(p, 4100, NULL);
    break;
  case 7:
    if (m->c) ws_conn_send_text(m->c, "\"txt\"", 5);
    break;
  case 8:
    ws_post(s, WS_POST_DEVICE, "a", "post", "[]", 2);
    break;
  case 9:
    ws_publish_json(s, "room", "pub", "null", 4);
    break;
  case 10:
    if (m->c) ws_conn_send_json(m->c, "big", "\"" "xxxxxxxxxxxxxxxx" "\"", 18);
    break;
  case 11:
    /* A new connection that only ever sends a request. */
    if (!W->t[2].created && conn_new(2) == 0)
      feed(&W->t[2], (const uint8_t *)valid_req, sizeof(valid_req) - 1);
    break;
  default:
    if (m->c) ws_conn_writable(m->c);
    if (p->c) ws_conn_writable(p->c);
    break;
  }
}

/* ws_server_tick's answer: -1, or at most the longest deadline the config
 * arms (idle_timeout_ms; the shutdown's drain is 300); not -1 while a
 * connection is left (each state has a deadline). */
FZ_NOCOV static void check_tick(int rc) {
  int i, left = 0;
  FZ_CHECK(rc >= -1 && rc <= 3000,
           "ws_server_tick: a time past every configured deadline");
  if (W->freed) return;
  for (i = 0; i < NCONN; i++) left |= W->t[i].c != NULL;
  FZ_CHECK(!left || rc >= 0, "ws_server_tick: -1 with a connection left");
}

static void run_ops(fz_in *in) {
  while (in->n > 0 && !W->freed) {
    uint8_t op = fz_byte(in, 0);
    const uint8_t *p;
    size_t got;
    if (op < 0x80) {
      p = fz_take(in, (size_t)op + 1, &got);
      feed(&W->t[0], p, got);
    } else if (op < 0xA0) {
      p = fz_take(in, ((size_t)(op & 31) + 1) * 64, &got);
      feed(&W->t[0], p, got);
    } else if (op < 0xB0) {
      set_mode(&W->t[0], op);
    } else if (op < 0xC0) {
      set_mode(&W->t[1], op);
    } else if (op < 0xD0) {
      tp *t = &W->t[op & 1];
      if (t->c) ws_conn_writable(t->c);
    } else if (op < 0xE0) {
      W->now += (uint64_t)(op & 15) * 97 + 1;
      check_tick(ws_server_tick(W->s, W->now));
    } else if (op < 0xF0) {
      host_action(op);
    } else if (op < 0xFF) {
      static const uint8_t bytes[15] = {0x81, 0x82, 0x88, 0x89, 0x8A, 0x80,
                                        0x01, 0x00, 0x7E, 0x7F, 0xFE, 0x05,
                                        '{',  '}',  '"'};
      feed(&W->t[0], &bytes[op & 15], 1);
    } else {
      p = fz_take(in, in->n, &got);
      feed(&W->t[0], p, got);
    }
    check_world();
  }
}

static void teardown(void) {
  int i;
  if (!W->freed) {
    /* Far in the future every deadline has fired. */
    ws_server_tick(W->s, W->now + 100000);
    check_world();
    if (!W->freed) server_free(); /* a send in that tick may have */
  }
  for (i = 0; i < NCONN; i++) {
    tp *t = &W->t[i];
    if (!t->created) continue;
    if (getenv("FUZZ_TRACE"))
      fprintf(stderr,
              "conn %d: status %d, %zu bytes out, frames text %lu binary %lu "
              "close %lu ping %lu pong %lu, opened %d\n",
              i, t->out.status, t->out.len, t->out.frames[1],
              t->out.frames[2], t->out.frames[8], t->out.frames[9],
              t->out.frames[10], t->opened);
    FZ_CHECK(t->tp_closed == 1, "connection not closed by ws_server_free");
    FZ_CHECK(!t->opened || t->app_closed == 1, "opened without on_close");
    fz_out_free(&t->out);
  }
  ws_mux_free(W->mux);
  FZ_CHECK(W->fa.live == 0 && W->fa.live_bytes == 0,
           "allocations live after ws_server_free and ws_mux_free");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const struct {
    const char *action;
    ws_handler_fn fn;
  } handlers[] = {{"echo", h_echo},   {"raw", h_raw},     {"bcast", h_bcast},
                  {"close", h_close}, {"fail", h_fail},   {"abort", h_abort},
                  {"join", h_join},   {"leave", h_leave}, {"free", h_free}};
  world w;
  ws_config cfg;
  ws_allocator al;
  fz_in in = {data, size};
  uint8_t flags, fail_at;
  size_t i;

  memset(&w, 0, sizeof(w));
  W = &w;
  flags = fz_byte(&in, 0);
  fail_at = fz_byte(&in, 0);
  al = fz_allocator(&w.fa);

  w.mux = ws_mux_new(&al);
  if (w.mux == NULL) fz_fail("mux_new");
  for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
    if (ws_mux_handle(w.mux, handlers[i].action, handlers[i].fn, NULL) != 0)
      fz_fail("mux_handle");
  ws_mux_binary(w.mux, h_binary, NULL);

  ws_config_init(&cfg);
  cfg.alloc = al;
  cfg.send = on_send;
  if (flags & F_SENDV) cfg.sendv = on_sendv;
  cfg.want_write = on_want_write;
  cfg.close = on_tp_close;
  cfg.handler = ws_mux_serve;
  cfg.handler_data = w.mux;
  cfg.on_open = on_open;
  cfg.on_close = on_close;
  if (!(flags & F_NOHTTP)) cfg.on_http = on_http;
  cfg.on_upgrade = on_upgrade;
  if (flags & F_SAMEUSER) cfg.duplicate_policy = WS_DUP_REPLACE_SAME_USER;
  cfg.max_message = MAX_MESSAGE;
  cfg.max_queued = MAX_QUEUED;
  cfg.max_handshake = 2048;
  cfg.max_headers = 16;
  cfg.queue_policy = (flags & F_DROP) ? WS_QUEUE_DROP : WS_QUEUE_CLOSE;
  cfg.bad_message_policy =
      (flags & F_BADCLOSE) ? WS_BADMSG_CLOSE : WS_BADMSG_REPLY;
  cfg.handshake_timeout_ms = 1000;
  cfg.idle_timeout_ms = 3000;
  cfg.ping_interval_ms = 1000;
  cfg.write_timeout_ms = 2000;
  cfg.close_timeout_ms = 500;
  if (ws_server_new(&cfg, &w.s) != WS_OK) fz_fail("server_new");

  if (flags & F_PEER) {
    if (conn_new(1) != 0) fz_fail("conn_new peer");
    feed(&w.t[1], (const uint8_t *)peer_req, sizeof(peer_req) - 1);
    FZ_CHECK(w.t[1].opened, "valid peer request not upgraded");
  }
  if (conn_new(0) != 0) fz_fail("conn_new");
  if (flags & F_VALID) {
    feed(&w.t[0], (const uint8_t *)valid_req, sizeof(valid_req) - 1);
    FZ_CHECK(w.t[0].opened, "valid request not upgraded");
  }
  check_world();
  if (flags & F_FAILMALLOC) fz_alloc_reset(&w.fa, fail_at ? fail_at : 1);

  run_ops(&in);
  teardown();
  W = NULL;
  return 0;
}
