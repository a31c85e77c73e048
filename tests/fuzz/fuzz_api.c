/*
 * libFuzzer target: API sequences. The input is a program for a host with
 * up to eight in-memory connections on one server: it makes connections
 * and feeds them upgrade requests and client frames, or upgrades them
 * from requests it parsed itself (ws_conn_upgrade, _answer), turns their
 * sockets slow or dead, and calls the rest of the public API (close,
 * abort, join, leave, set user, the sends and fan-outs, prepared messages,
 * ws_post, ticks, shutdown, free, mux entries, ws_mux_serve with a
 * message the host made). on_http answers plain
 * requests. Its callbacks may run an input-chosen operation re-entrantly.
 *
 * Input layout:
 *   byte 0  config: bits 0-1 duplicate policy (3: REPLACE); 4 queue policy
 *           DROP; 8 bad-message policy CLOSE; 16 sendv; 32 no close
 *           timeout; 64 max_queued 1024 (else 8192); 128 device id
 *           optional
 *   byte 1  0, or the allocation attempt (counted after setup) that fails
 *   byte 2  config: max_connections, subprotocols, Origin, keep_headers,
 *           on_http (configure2)
 *   then    operations: an opcode byte (mod OP_COUNT_, see enum op) and
 *           its argument bytes, read as they are needed (0 when used up).
 *           OP_ARM copies the next 6 bytes into a one-shot program that a
 *           chosen callback runs (nested at most 3 deep). At most 12
 *           connections are made per input.
 * Names come from small alphabets so that they collide: devices d0-d3,
 * users u0-u2, groups g0-g2. A connection's upgrade request carries its
 * device id, user and group (on_upgrade binds them) and may ask on_upgrade
 * to refuse it (403); it may carry an Origin and offer subprotocols, or
 * be a plain request for on_http (build_request).
 *
 * Invariants (abort on violation), in callbacks:
 *   - a callback names only a connection whose transport close has not
 *     run; send, want_write and handlers never after on_close; on_close
 *     once, only after on_open, before the transport close; the transport
 *     close once; on_open never after ws_server_shutdown or ws_server_free;
 *   - no handler after the host's ws_conn_close answered WS_OK, nor after
 *     a completed ws_server_shutdown; a text message has a valid action and
 *     fits max_message;
 *   - on_shutdown once, after ws_server_shutdown answered WS_OK, when every
 *     connection's transport is closed; wake only from ws_post;
 *   - on_close: c is not what ws_server_find_device returns for its id;
 *     for a peer that sent no close frame (no close or raw bytes in its
 *     stream), not 1005, and after our close frame went out whole, its
 *     code or 1006;
 *     called by ws_server_free itself (not from a program one of its
 *     callbacks ran), the code is 1006;
 *   - answers: a second ws_conn_close after WS_OK is WS_ECLOSED; join's and
 *     leave's WS_EEXIST / WS_ENOENT agree with the memberships the host
 *     made; ws_conn_user is what ws_conn_set_user set; ws_send_device
 *     answers 1 only for an id ws_server_find_device found; a fan-out
 *     reaches at most the open connections it names;
 *   - on_open: ws_server_conn_count <= max_connections; the Origin is one
 *     the config allows; ws_conn_subprotocol is the one due (proto_want);
 *     ws_conn_add_header and ws_conn_http_respond are WS_ESTATE;
 *   - on_upgrade and on_http: ws_conn_add_header and ws_conn_http_respond
 *     answer as the header says (hdr_want: WS_OK, WS_ESTATE after an
 *     answer or under ws_conn_upgrade_answer, WS_ECLOSED once closed;
 *     WS_EINVAL for bad arguments); on_http never under
 *     ws_conn_upgrade_answer; check_origin gets the request's Origin;
 *   - ws_conn_upgrade: WS_OK, and an open connection has had on_open;
 *     ws_conn_upgrade_answer: a 101 with on_open and RFC 6455's accept
 *     value, or a status in 400..599 with a reason and c closed; a second
 *     upgrade of an opened connection is WS_ESTATE;
 *   - sends: < 0 before on_open, WS_ECLOSED after the host's
 *     ws_conn_close; ws_prepare's WS_EJSON, WS_EINVAL, WS_ETOOBIG;
 *   - the mux runs the action's own entry, the fallback only for an
 *     action with none, the binary handler only for binary; ws_mux_handle
 *     and ws_mux_remove answer WS_EEXIST / WS_ENOENT as the entries made;
 *     ws_mux_serve of a text message without an action is WS_EINVAL;
 * and after every top-level operation:
 *   - queued bytes <= max_queued + WS__QUEUE_SLACK (lib/internal.h: a close
 *     frame and a ping past the cap); want_write's last signal equals
 *     ws_conn_want_write;
 *   - an opened connection has had on_close exactly when its transport
 *     closed;
 *   - stats: conns_open, conns_pending, conns_total, ws_server_conn_count
 *     and each closes_* counter match the callbacks seen; broadcasts and
 *     fanout at least what the host's fan-out calls answered (the rest
 *     from ws_post deliveries, at most one call per accepted post);
 *   - ws_server_find_device returns the one open, not closing, connection
 *     with that id, or NULL when there is none; ws_server_user_count and
 *     ws_server_group_count count the open, not closing, connections bound
 *     to the user / in the group;
 *   - each connection's output is one HTTP response, then well-formed
 *     server frames (fz_out); after ws_conn_close answered WS_OK on an
 *     open connection, its close frame (if one goes out) carries that
 *     code and reason; the tagged messages (data FZ_SEQ_BASE + n: the
 *     host's ws_conn_send_json and fan-outs of fixed data, one sequence;
 *     its ws_post calls, another) arrive in the order sent, none twice,
 *     and no direct message sent before a post arrives after it;
 *   - stats: bytes_out is what the transports took, bytes_in between the
 *     bytes of the feeds that answered WS_OK and all bytes fed, msgs_out
 *     at least the text and binary frames written, drops_queue_full at
 *     least the host's sends answered WS_EQUEUEFULL, unknown_targets at
 *     least ws_send_device's answers of 0 for an id nobody held, and no
 *     counter (all but conns_open and conns_pending) goes down;
 *   - open connections <= max_connections; after a top-level tick, no
 *     connection the host closed close_timeout_ms ago is left (but during
 *     a shutdown);
 *   - ws_server_tick answers -1 or at most the longest deadline armed
 *     (MAX_WAIT), 0 in the tick in which on_shutdown ran (unless the
 *     server was freed), and at top level not -1 while a connection is
 *     left.
 * At the end (unless the server was freed): every socket takes all, the
 * clock jumps past every deadline; after a ws_server_shutdown every
 * connection has ended and on_shutdown has run. Then ws_server_free ends
 * every connection and no allocation is left.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSLOT 8
#define NDEV 4
#define NUSER 3
#define NGROUP 3
#define MAX_MESSAGE 2048
#define MAX_DEPTH 3
#define ARM_LEN 6   /* an armed program's bytes */
#define MAX_MADE 12 /* connections made per input */
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define KEY_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 1.3 */

enum op {
  OP_NEW, OP_FRAME, OP_FEED, OP_MODE, OP_WRITABLE, OP_CLOSE, OP_ABORT,
  OP_JOIN, OP_LEAVE, OP_USER, OP_SEND_DEVICE, OP_BROADCAST, OP_PUSH,
  OP_POST, OP_TICK, OP_SHUTDOWN, OP_FREE, OP_SEND, OP_ARM, OP_DEVICES,
  OP_UPGRADE, OP_PREP, OP_MUX, OP_COUNT_
};
enum { M_ALL = 0, M_PARTIAL, M_BLOCK, M_FAIL };
/* The callbacks an armed program may run from (wake may not: it may call
 * only the thread-safe ws_post). */
enum cb {
  CB_SEND, CB_WANT, CB_CLOSE, CB_OPEN, CB_ON_CLOSE, CB_LOG, CB_HANDLER,
  CB_UPGRADE, CB_SHUTDOWN, CB_HTTP, CB_COUNT_
};

typedef struct bytes {
  uint8_t *p;
  size_t len, cap;
} bytes;

typedef struct slot {
  ws_conn *c; /* NULL once its transport close ran */
  int created, opened, app_closed, tp_closed;
  int host_closed; /* ws_conn_close answered WS_OK */
  uint64_t closed_at; /* ... at this time */
  int dev;         /* device id index, -1 none */
  unsigned groups; /* bit g: the host joined it to group g */
  int mode;
  int hold;        /* under ws_conn_upgrade_answer: the socket takes 0 */
  int responded;   /* http_respond answered WS_OK (1), WS_ENOMEM (2) */
  uint8_t e;       /* the request's extras: see build_request */
  size_t partial;
  int want;
  int peer_close; /* a close frame or raw bytes went into in */
  bytes in; /* client bytes not fed yet */
  fz_out out;
} slot;

typedef struct world {
  fz_alloc fa;
  ws_server *s;
  ws_mux *mux;
  ws_prepared *prep;
  ws_prepared *pp[2]; /* the program's own prepared messages */
  size_t max_conn;
  uint32_t close_to; /* close_timeout_ms */
  int ticked;        /* a tick has run: its time is the library's zero */
  uint64_t zero;
  int origin_mode; /* 0 default, 1 allowed_origins, 2 check_origin */
  int sp_mode;     /* 0 none, 1 subprotocols, 2 select_subprotocol */
  int made;        /* connections made */
  unsigned reg;    /* bit k: actions[k] has a mux entry */
  int fallback_on, binary_on;
  /* Inside ws_conn_upgrade_answer for this connection: the connection,
   * not its slot, which a callback may give a new one once it is closed. */
  ws_conn *answering;
  size_t max_queued;
  int dying;    /* ws_server_free was called */
  int gone;     /* ... and returned: the server must not be touched */
  int shut_ok;  /* ws_server_shutdown answered WS_OK */
  int shut_done; /* ... and a top-level operation has returned since */
  int on_shutdown;
  int in_post; /* inside ws_post: the only place wake may come from */
  int depth;
  int trace; /* FUZZ_TRACE set: the operations on stderr */
  uint64_t now;
  slot t[NSLOT];
  uint8_t arm[CB_COUNT_][ARM_LEN + 1]; /* [0] set: armed; then the program */
  long opens, on_closes, closes_by[FZ_CLOSE_BUCKETS], handlers;
  uint64_t bc_calls, bc_fanout, posts_ok;
  unsigned long seq, pseq; /* the last tags sent directly / posted */
  uint64_t taken;          /* bytes the transports took */
  uint64_t fed_ok, fed;    /* bytes fed: answered WS_OK / in all */
  uint64_t data_frames;    /* text and binary frames of reused slots */
  uint64_t queue_full;     /* the host's sends answered WS_EQUEUEFULL */
  uint64_t unknown;        /* ws_send_device answered 0 for an id nobody
                              held */
  int freeing;             /* inside ws_server_free: depth + 1 */
  ws_stats last;           /* the stats at the last check */
} world;

static world *W;

static const char *const devs[NDEV] = {"d0", "d1", "d2", "d3"};
static const char *const users[NUSER] = {"u0", "u1", "u2"};
static const char *const groups[NGROUP] = {"g0", "g1", "g2"};

static void run_op(fz_in *in);

/* ---- small helpers ------------------------------------------------------ */

static void bytes_add(bytes *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (b->p == NULL) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void bytes_drop(bytes *b, size_t n) {
  if (n == 0) return;
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static slot *slot_of(ws_conn *c) {
  slot *t = ws_conn_transport(c);
  FZ_CHECK(t >= W->t && t < W->t + NSLOT, "unknown transport pointer");
  FZ_CHECK(t->c == c, "callback for a connection whose transport closed");
  return t;
}

/* The server may be called: not freed (from a callback, the free is
 * deferred until the outermost call returns). */
static int live(void) { return !W->gone; }

static slot *pick(fz_in *in) { return &W->t[fz_byte(in, 0) % NSLOT]; }

/* Runs the program armed for callback kind, once, if any. */
static void reenter(int kind) {
  fz_in in;
  if (!W->arm[kind][0] || W->depth >= MAX_DEPTH || !live()) return;
  W->arm[kind][0] = 0;
  in.p = &W->arm[kind][1];
  in.n = ARM_LEN;
  W->depth++;
  run_op(&in);
  W->depth--;
}

/* ---- transport ---------------------------------------------------------- */

static size_t take(slot *t, size_t want) {
  if (t->hold) return 0;
  if (t->mode == M_PARTIAL) return want < t->partial ? want : t->partial;
  return t->mode == M_BLOCK ? 0 : want;
}

static void send_entry(slot *t) {
  FZ_CHECK(!t->app_closed, "send after on_close");
  reenter(CB_SEND);
}

static ssize_t on_send(ws_conn *c, void *tr, const void *p, size_t len) {
  slot *t = slot_of(c);
  size_t n;
  FZ_CHECK(tr == t && len > 0, "send with a foreign transport or no bytes");
  send_entry(t);
  if (t->c != c || t->mode == M_FAIL) return -1;
  n = take(t, len);
  fz_out_append(&t->out, p, n);
  W->taken += n;
  return (ssize_t)n;
}

static ssize_t on_sendv(ws_conn *c, void *tr, const ws_iovec *iov, int n) {
  slot *t = slot_of(c);
  size_t total = 0, left;
  int i;
  FZ_CHECK(tr == t && n > 0, "sendv with a foreign transport or no buffers");
  send_entry(t);
  if (t->c != c || t->mode == M_FAIL) return -1;
  for (i = 0; i < n; i++) total += iov[i].len;
  left = total = take(t, total);
  W->taken += total;
  for (i = 0; i < n && left > 0; i++) {
    size_t k = iov[i].len < left ? iov[i].len : left;
    fz_out_append(&t->out, iov[i].base, k);
    left -= k;
  }
  return (ssize_t)total;
}

static int on_want(ws_conn *c, void *tr, int want) {
  slot *t = slot_of(c);
  (void)tr;
  FZ_CHECK(!t->app_closed, "want_write after on_close");
  FZ_CHECK(want == 0 || want == 1, "want_write not 0 or 1");
  FZ_CHECK(want != t->want, "want_write repeated while it stands");
  t->want = want;
  reenter(CB_WANT);
  return 0;
}

static int on_tp_close(ws_conn *c, void *tr) {
  slot *t = slot_of(c);
  (void)tr;
  FZ_CHECK(!t->tp_closed, "transport closed twice");
  FZ_CHECK(!t->opened || t->app_closed,
           "transport closed without on_close for an opened connection");
  t->tp_closed = 1;
  reenter(CB_CLOSE);
  t->c = NULL;
  return 0;
}

/* ---- application callbacks --------------------------------------------- */

/* Origin: none, one check_origin allows, one no mode allows, the Host's. */
static const char *const origins[4] = {NULL, "http://ok", "http://evil",
                                       "http://h"};

/* Whether Origin o may open under the config's mode: the default allows
 * its Host's, a list adds its entries, a callback alone decides. */
static int origin_ok(int o) {
  static const char ok[3][4] = {{1, 0, 0, 1}, {1, 1, 0, 1}, {1, 1, 0, 0}};
  return ok[W->origin_mode][o];
}

static int check_origin(const ws_request *req, const char *origin,
                        void *ud) {
  const char *h = ws_request_header(req, "Origin");
  (void)ud;
  FZ_CHECK(origin ? h && !strcmp(origin, h) : h == NULL,
           "check_origin: origin differs from the request's");
  return origin == NULL || !strcmp(origin, origins[1]);
}

/* select_subprotocol by the request's b: 1 the last name offered (a
 * pointer into offered), 2 one not offered (500), 3 "json", else none. */
static const char *select_proto(const ws_request *req, const char *offered,
                                void *ud) {
  const char *b = ws_request_query(req, "b"), *p;
  (void)ud;
  if (offered == NULL || b == NULL) return NULL;
  if (b[0] == '2') return "bogus";
  if (b[0] == '3') return "json";
  if (b[0] != '1') return NULL;
  p = strrchr(offered, ',');
  if (p == NULL) return offered;
  for (p++; *p == ' '; p++) {
  }
  return p;
}

static const char REFUSED[] = "refused", ANY[] = "any";

/* The subprotocol t's upgrade gets (see build_request's offers), REFUSED
 * when it may not open, ANY when two Sec-WebSocket-Protocol headers leave
 * what select_subprotocol is offered open (their value joined, or the
 * first: the header does not say). */
static const char *proto_want(const slot *t) {
  static const char *const last[3] = {NULL, "chat", "x"};
  int offer = (t->e >> 2) & 3, beh = t->e >> 6;
  if (W->sp_mode == 0) return NULL;
  if (W->sp_mode == 1) return (offer & 1) ? "chat" : NULL;
  if (offer == 3 && beh) return ANY;
  if (offer == 0 || beh == 0) return NULL;
  if (beh == 1) return last[offer];
  return beh == 3 && offer == 1 ? "json" : REFUSED;
}

static int proto_ok(const slot *t, const char *got) {
  const char *want = proto_want(t);
  if (want == REFUSED) return 0;
  if (want == ANY)
    return got == NULL || !strcmp(got, "chat") || !strcmp(got, "json");
  return want ? got && !strcmp(got, want) : got == NULL;
}

static int on_open(ws_conn *c, void *ud) {
  slot *t = slot_of(c);
  const char *id = ws_conn_device_id(c);
  (void)ud;
  FZ_CHECK(!t->opened, "on_open twice");
  FZ_CHECK(ws_server_conn_count(ws_conn_server(c)) <= W->max_conn,
           "on_open past max_connections");
  FZ_CHECK(origin_ok(t->e & 3), "on_open for an Origin the config refuses");
  FZ_CHECK(proto_ok(t, ws_conn_subprotocol(c)),
           "the subprotocol differs from the one negotiable");
  FZ_CHECK(ws_conn_add_header(c, "X-A", "1") == WS_ESTATE &&
               ws_conn_http_respond(c, 200, NULL, NULL, 0) == WS_ESTATE,
           "add_header or http_respond from on_open: not WS_ESTATE");
  FZ_CHECK(!W->shut_ok && !W->dying, "on_open after shutdown or free");
  FZ_CHECK(t->dev < 0 ? id == NULL : id && !strcmp(id, devs[t->dev]),
           "device id differs from the request's");
  t->opened = 1;
  W->opens++;
  reenter(CB_OPEN);
  return 0;
}

static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  slot *t = slot_of(c);
  (void)ud;
  FZ_CHECK(t->opened && !t->app_closed, "on_close twice or never opened");
  FZ_CHECK(reason != NULL && code >= 1000 && code <= 4999,
           "on_close without a reason or with a code out of range");
  FZ_CHECK(t->dev < 0 || ws_server_find_device(ws_conn_server(c),
                                               devs[t->dev]) != c,
           "on_close: the ended connection is still found by its id");
  /* Called by ws_server_free itself (not from a program a callback of
   * it ran): 1006 whatever was exchanged. */
  FZ_CHECK(W->freeing != W->depth + 1 || code == WS_CLOSE_ABNORMAL,
           "on_close from ws_server_free with a code other than 1006");
  /* The peer sent no close frame (it had none to send: its stream is
   * whole frames, none a close): no 1005, and after a close frame of
   * ours went out whole, its code (or 1006: ws_conn_abort,
   * ws_server_free). */
  if (!t->peer_close) {
    FZ_CHECK(code != WS_CLOSE_NO_STATUS,
             "on_close: 1005 from a peer that sent no close frame");
    FZ_CHECK(!t->out.frames[8] || code == t->out.close_code ||
                 code == WS_CLOSE_ABNORMAL,
             "on_close: a code other than the close frame sent");
  }
  t->app_closed = 1;
  W->on_closes++;
  W->closes_by[fz_close_bucket(code)]++;
  reenter(CB_ON_CLOSE);
  return 0;
}

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  FZ_CHECK(msg != NULL && level >= 0 && level <= 3, "bad log line");
  if (W->trace) fprintf(stderr, "%*slog: %s\n", 2 * W->depth, "", msg);
  reenter(CB_LOG);
}

static int on_shutdown(ws_server *s, void *ud) {
  int i;
  (void)s, (void)ud;
  FZ_CHECK(W->shut_ok && !W->on_shutdown, "on_shutdown twice or unasked");
  for (i = 0; i < NSLOT; i++)
    FZ_CHECK(!W->t[i].created || W->t[i].tp_closed,
             "on_shutdown while a connection remains");
  W->on_shutdown = 1;
  reenter(CB_SHUTDOWN);
  return 0;
}

static int on_wake(ws_server *s, void *ud) {
  (void)s, (void)ud;
  FZ_CHECK(W->in_post, "wake outside ws_post");
  return 0;
}

/* WS_ESTATE or WS_ECLOSED: after a WS_ENOMEM from ws_conn_http_respond,
 * which closed the connection in building the answer (the header does
 * not say which of "after the response" and "closed" wins). */
#define EITHER 1

/* What a well-formed ws_conn_add_header or ws_conn_http_respond on t's
 * connection c must answer now. */
static int hdr_want(const slot *t, ws_conn *c) {
  if (t->responded == 2) return EITHER;
  if (t->responded || (t->c == c && W->answering == c)) return WS_ESTATE;
  if (t->c != c || c->state != WS__HANDSHAKE) return WS_ECLOSED;
  return WS_OK;
}

/* An answer rc where want (or WS_ENOMEM for WS_OK) was due. */
static void check_answer(const char *call, int want, int rc) {
  if (rc == want || (want == WS_OK && rc == WS_ENOMEM)) return;
  if (want == EITHER && (rc == WS_ESTATE || rc == WS_ECLOSED)) return;
  fprintf(stderr, "%s answered %s, not %s\n", call, ws_err_name(rc),
          ws_err_name(want));
  fz_fail("an answer differs from the header's");
}

static void add_header(slot *t, ws_conn *c, const char *n, const char *v) {
  int want = hdr_want(t, c);
  check_answer("ws_conn_add_header", want, ws_conn_add_header(c, n, v));
}

/* The request's query: user=uN binds a user, group=gN joins a group,
 * refuse=1 answers 403. */
static int on_upgrade(ws_conn *c, const ws_request *req, const char **reason,
                      void *ud) {
  slot *t = slot_of(c);
  const char *u = ws_request_query(req, "user");
  const char *g = ws_request_query(req, "group");
  (void)ud;
  if (u && ws_conn_set_user(c, u) == WS_OK)
    FZ_CHECK(!strcmp(ws_conn_user(c), u), "user not bound");
  if (g && ws_conn_join(c, g) == WS_OK) t->groups |= 1u << (g[1] - '0');
  add_header(t, c, "Set-Cookie", "s=1");
  FZ_CHECK(ws_conn_http_respond(c, 200, NULL, NULL, 0) == WS_ESTATE,
           "ws_conn_http_respond from on_upgrade: not WS_ESTATE");
  reenter(CB_UPGRADE);
  if (ws_request_query(req, "refuse")) {
    *reason = "refused by the host";
    return 403;
  }
  return 0;
}

/* ---- fan-outs: every one goes through here, so the stats can be checked
 * against what they answered ------------------------------------------- */

/* Open connections that are not closing: the ones a fan-out may reach. */
FZ_NOCOV static int reachable(const slot *t) {
  return t->c && t->c->state == WS__OPEN;
}

FZ_NOCOV static size_t count_reachable(void) {
  size_t n = 0;
  int i;
  for (i = 0; i < NSLOT; i++) n += reachable(&W->t[i]);
  return n;
}

/* A tagged message's data (fz_out's seq_check): FZ_SEQ_BASE plus the
 * next number of the direct sequence, or of the posted one (six digits:
 * at most a few thousand calls per input). */
static const char *tag(char *buf, int posted) {
  unsigned long v = posted ? ++W->pseq : ++W->seq;
  snprintf(buf, 16, "%lu", FZ_SEQ_BASE + v);
  return buf;
}

static void fanout_done(int rc, size_t bound) {
  if (rc < 0) return;
  FZ_CHECK((size_t)rc <= bound, "a fan-out reached more than it names");
  W->bc_calls++;
  W->bc_fanout += (uint64_t)rc;
}

static void broadcast_all(const char *data, size_t len) {
  size_t bound = count_reachable();
  fanout_done(ws_broadcast_json(W->s, "bc", data, len, NULL, 0), bound);
}

/* Distinct ids in the list that name an open connection. */
FZ_NOCOV static size_t found_ids(const char *const *ids, size_t n) {
  size_t i, k, found = 0;
  for (i = 0; i < n; i++) {
    int dup = 0;
    for (k = 0; k < i; k++)
      dup |= ids[i] && ids[k] && !strcmp(ids[i], ids[k]);
    if (!dup && ids[i] && ws_server_find_device(W->s, ids[i])) found++;
  }
  return found;
}

static void send_device(const char *id) {
  int found = id && id[0] && ws_server_find_device(W->s, id) != NULL;
  char b[16];
  int rc = ws_send_device_json(W->s, id, "dev", tag(b, 0), 6);
  FZ_CHECK(rc <= found, "ws_send_device reached an id nobody holds");
  W->unknown += rc == 0 && !found && id && id[0];
  fanout_done(rc, (size_t)found);
}

static void publish(int g) {
  size_t bound = ws_server_group_count(W->s, groups[g]);
  char b[16];
  fanout_done(ws_publish_json(W->s, groups[g], "pub", tag(b, 0), 6), bound);
}

static void push_user(int u) {
  size_t bound = ws_server_user_count(W->s, users[u]);
  char b[16];
  fanout_done(ws_push_user_json(W->s, users[u], "push", tag(b, 0), 6),
              bound);
}

static void post(int target, const char *name) {
  int rc;
  char b[16], d[40];
  snprintf(d, sizeof d, "[%s,%lu]", tag(b, 1), FZ_SEQ_BASE + W->seq);
  W->in_post++;
  rc = ws_post(W->s, target, name, "post", d, strlen(d));
  W->in_post--;
  if (rc == WS_OK) W->posts_ok++;
}

/* ---- the host's membership calls, checked against its own records ---- */

static void join(slot *t, int g) {
  int member = (t->groups >> g) & 1, rc = ws_conn_join(t->c, groups[g]);
  if (rc == WS_EEXIST) FZ_CHECK(member, "join: WS_EEXIST, not a member");
  if (rc != WS_OK) return;
  FZ_CHECK(!member, "join: WS_OK for a member");
  t->groups |= 1u << g;
}

static void leave(slot *t, int g) {
  int member = (t->groups >> g) & 1, rc = ws_conn_leave(t->c, groups[g]);
  if (rc == WS_ENOENT) FZ_CHECK(!member, "leave: WS_ENOENT for a member");
  if (rc != WS_OK) return;
  FZ_CHECK(member, "leave: WS_OK for no member");
  t->groups &= ~(1u << g);
}

static void set_user(slot *t, const char *u) {
  if (ws_conn_set_user(t->c, u) != WS_OK) return;
  FZ_CHECK(u ? ws_conn_user(t->c) && !strcmp(ws_conn_user(t->c), u)
             : ws_conn_user(t->c) == NULL,
           "ws_conn_user differs from what set_user bound");
}

/* The library's clock: the first tick's time is its zero. */
static uint64_t lib_now(void) { return W->ticked ? W->now - W->zero : 0; }

static void host_close(slot *t, int code, const char *reason) {
  int was = t->host_closed, open = t->c->state == WS__OPEN, rc;
  /* Set first: the frame may go out before ws_conn_close returns. */
  if (open) {
    t->out.close_want = code;
    snprintf(t->out.close_reason, sizeof t->out.close_reason, "%s",
             reason ? reason : "");
  }
  rc = ws_conn_close(t->c, code, reason);
  if (rc != WS_OK && open) t->out.close_want = 0;
  if (rc != WS_OK) return;
  FZ_CHECK(!was, "ws_conn_close answered WS_OK twice");
  t->host_closed = 1;
  t->closed_at = lib_now();
}

static void server_free(void) {
  int was = W->freeing;
  W->dying = 1;
  if (!was) W->freeing = W->depth + 1; /* the first call does the work */
  ws_server_free(W->s);
  W->freeing = was;
  if (W->depth == 0) W->gone = 1;
}

/* Marked before the call: on_shutdown may come from inside it. */
static void host_shutdown(uint32_t ms) {
  int was = W->shut_ok;
  W->shut_ok = 1;
  if (ws_server_shutdown(W->s, ms) != WS_OK) W->shut_ok = was;
}

/* ---- handlers ----------------------------------------------------------- */

static const char *const actions[] = {"echo", "bcast", "close", "join",
                                      "leave", "user", "fail", "free",
                                      "nope", "", "pub", "dev"};
#define NACTIONS (sizeof(actions) / sizeof(actions[0]))

/* The mux's handlers are all h_any; user_data tells which one ran. */
static char entry_tag[NACTIONS], fallback_tag, binary_tag;

static int action_index(const char *a) {
  size_t k;
  for (k = 0; a && k < NACTIONS; k++)
    if (!strcmp(a, actions[k])) return (int)k;
  return -1;
}

/* The mux ran the handler it has for the message: the action's entry,
 * else the fallback; binary messages the binary handler. */
static void check_route(const ws_msg *msg, void *ud) {
  int k = msg->binary ? -1 : action_index(msg->action);
  int reg = k >= 0 && ((W->reg >> k) & 1);
  if (ud == &binary_tag)
    FZ_CHECK(msg->binary && W->binary_on, "binary handler for text");
  else if (ud == &fallback_tag)
    FZ_CHECK(!msg->binary && !reg && W->fallback_on,
             "fallback for a registered action or binary message");
  else
    FZ_CHECK(reg && ud == &entry_tag[k], "the entry of another action ran");
}

static slot *handler_entry(ws_conn *c, const ws_msg *msg, void *ud) {
  slot *t = slot_of(c);
  check_route(msg, ud);
  FZ_CHECK(t->opened && !t->app_closed, "handler outside on_open..on_close");
  FZ_CHECK(!t->host_closed, "handler after ws_conn_close");
  FZ_CHECK(!W->shut_done, "handler after ws_server_shutdown");
  FZ_CHECK(msg->binary || (msg->action && strlen(msg->action) <=
                                              WS_MAX_ACTION),
           "text message without a valid action");
  FZ_CHECK(msg->len <= MAX_MESSAGE, "message over max_message delivered");
  W->handlers++;
  reenter(CB_HANDLER);
  return t;
}

/* One handler for every action: what it does is in the name. */
static int h_any(ws_conn *c, const ws_msg *msg, void *ud) {
  slot *t = handler_entry(c, msg, ud);
  const char *a = msg->action ? msg->action : "";
  size_t n;
  const char *d = ws_msg_data_json(msg, &n);
  if (t->c != c || !live()) return 0; /* ended by the armed program */
  if (msg->binary) return ws_conn_send_binary(c, msg->text, msg->len);
  if (!strcmp(a, "echo")) return ws_conn_send_json(c, "echo", d, d ? n : 0);
  if (!strcmp(a, "bcast")) broadcast_all(d, d ? n : 0);
  if (!strcmp(a, "close")) host_close(t, WS_CLOSE_NORMAL, "bye");
  if (!strcmp(a, "join")) join(t, 0);
  if (!strcmp(a, "leave")) leave(t, 0);
  if (!strcmp(a, "user")) set_user(t, users[1]);
  if (!strcmp(a, "pub")) publish(0);
  if (!strcmp(a, "dev")) send_device(devs[1]);
  if (!strcmp(a, "free")) server_free();
  return strcmp(a, "fail") ? 0 : -1;
}

/* ---- on_http ------------------------------------------------------------ */

static void respond(slot *t, ws_conn *c, int status, const char *body,
                    size_t len) {
  int want = hdr_want(t, c);
  int rc = ws_conn_http_respond(c, status, NULL, body, len);
  check_answer("ws_conn_http_respond", want, rc);
  if (rc == WS_OK || rc == WS_ENOMEM) t->responded = rc ? 2 : 1;
}

/* Arguments the header calls invalid, in any state. */
static void bad_answers(ws_conn *c) {
  FZ_CHECK(ws_conn_add_header(c, "Content-Length", "1") == WS_EINVAL &&
               ws_conn_add_header(c, "sec-websocket-x", "1") == WS_EINVAL &&
               ws_conn_add_header(c, "X-B", "a\r\nb") == WS_EINVAL &&
               ws_conn_add_header(c, "X B", "1") == WS_EINVAL,
           "ws_conn_add_header took a reserved name or a bad line");
  FZ_CHECK(ws_conn_http_respond(c, 199, NULL, NULL, 0) == WS_EINVAL &&
               ws_conn_http_respond(c, 600, NULL, NULL, 0) == WS_EINVAL &&
               ws_conn_http_respond(c, 204, NULL, "x", 1) == WS_EINVAL &&
               ws_conn_http_respond(c, 200, "a\nb", NULL, 0) == WS_EINVAL,
           "ws_conn_http_respond took a bad status, body or type");
}

/* By the request's behaviour bits: leave the answer to the library (426
 * or 404, with a line added), answer 200 (a second answer and a line
 * after it: WS_ESTATE), bad arguments then a 204, or close first. */
static int on_http(ws_conn *c, const ws_request *req, void *ud) {
  slot *t = slot_of(c);
  int beh = t->e >> 6;
  (void)req, (void)ud;
  FZ_CHECK(W->answering != c, "on_http under ws_conn_upgrade_answer");
  FZ_CHECK(!t->opened, "on_http for an opened connection");
  reenter(CB_HTTP);
  if (beh == 2) bad_answers(c);
  if (beh == 3 && t->c == c) host_close(t, WS_CLOSE_NORMAL, NULL);
  add_header(t, c, "X-A", "1");
  if (beh == 1) respond(t, c, 200, "hi", 2);
  if (beh) respond(t, c, beh == 2 ? 204 : 200, NULL, 0);
  if (beh == 1) add_header(t, c, "X-A", "1");
  return 0;
}

/* ---- client bytes ------------------------------------------------------- */

static void feed(slot *t, size_t n) {
  ws_conn *c = t->c;
  uint8_t *copy;
  int rc;
  if (c == NULL || !live()) return;
  if (n > t->in.len) n = t->in.len;
  copy = fz_dup(t->in.p, n);
  bytes_drop(&t->in, n); /* first: a callback may feed the next bytes */
  W->fed += n;
  rc = ws_conn_feed(c, copy, n);
  if (rc == WS_OK) W->fed_ok += n;
  if (rc == WS_ESTATE) { /* inside c's own feed */
    bytes tmp = {NULL, 0, 0};
    bytes_add(&tmp, copy, n);
    bytes_add(&tmp, t->in.p, t->in.len);
    free(t->in.p);
    t->in = tmp;
  }
  free(copy);
}

/* How much of what is pending to feed now: all, half, 1 byte or none. */
static void feed_part(slot *t, uint8_t how) {
  static const size_t part[4] = {SIZE_MAX, 0, 1, 0};
  size_t n = part[how & 3];
  if ((how & 3) == 1) n = t->in.len / 2;
  if (n) feed(t, n);
}

static void frame(slot *t, int fin_op, const void *p, size_t n, uint8_t k) {
  uint8_t h[8], mask[4] = {k, (uint8_t)(k ^ 0x55), 0x12, 0x34};
  size_t hl = 2, i;
  h[0] = (uint8_t)fin_op;
  if (n < 126) {
    h[1] = (uint8_t)(0x80 | n);
  } else {
    h[1] = 0x80 | 126;
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
    hl = 4;
  }
  bytes_add(&t->in, h, hl);
  bytes_add(&t->in, mask, 4);
  for (i = 0; i < n; i++) {
    uint8_t b = ((const uint8_t *)p)[i] ^ mask[i & 3];
    bytes_add(&t->in, &b, 1);
  }
}

static void text(slot *t, const char *s, uint8_t k) {
  frame(t, 0x81, s, strlen(s), k);
}

/* {"action":A,"data":D}: D a number, a string of w letters, or absent. */
static void envelope(char *buf, size_t cap, uint8_t a, uint8_t d) {
  const char *act = actions[a % NACTIONS];
  char data[700];
  size_t w = (size_t)(d & 0x3F) * 10;
  if (d < 0x40) {
    snprintf(buf, cap, "{\"action\":\"%s\"}", act);
    return;
  }
  if (d < 0x80) {
    snprintf(buf, cap, "{\"action\":\"%s\",\"data\":%u}", act, d);
    return;
  }
  memset(data, 'x', w);
  data[w] = '\0';
  snprintf(buf, cap, "{\"action\":\"%s\",\"data\":\"%s\"}", act, data);
}

static void close_frame(slot *t, uint8_t a, uint8_t d) {
  static const int codes[8] = {1000, 1001, 3000, 4000, 4999, 999, 1006, 1015};
  uint8_t p[8] = {0, 0, 'b', 'y', 'e', 0xC3, 0x28, 0};
  int code = codes[a & 7];
  p[0] = (uint8_t)(code >> 8);
  p[1] = (uint8_t)code;
  frame(t, 0x88, p, 2 + (size_t)(d % 6), d); /* d % 6 > 3: bad UTF-8 */
}

static void fragments(slot *t, uint8_t a, uint8_t d) {
  char msg[1024];
  size_t n, half;
  envelope(msg, sizeof msg, a, d);
  n = strlen(msg);
  half = n / 2;
  frame(t, 0x01, msg, half, d);
  if (d & 1) frame(t, 0x89, "p", 1, d);
  frame(t, 0x80, msg + half, n - half, d);
}

static void client_frame(slot *t, uint8_t kind, uint8_t a, uint8_t d) {
  char msg[1024];
  uint8_t raw[6] = {a, d, 0, 0, 0, 0};
  int k = (kind & 0x3F) % 11;
  /* Without these the stream is whole frames, none a close. */
  t->peer_close |= k == 3 || k == 4 || k == 9;
  switch (k) {
  case 0: envelope(msg, sizeof msg, a, d); text(t, msg, d); break;
  case 1: frame(t, 0x89, "ping-data", d % 10, d); break;
  case 2: frame(t, 0x8A, "pong", d % 5, d); break;
  case 3: close_frame(t, a, d); break;
  case 4: frame(t, 0x88, NULL, 0, d); break;
  case 5: fragments(t, a, d); break;
  case 6: frame(t, 0x82, "\x00\x01\x02\xff binary", d % 12, d); break;
  case 7: text(t, "{\"action\":", d); break;
  case 8: frame(t, 0x81, "\"\xc3\x28\"", 4, d); break;
  case 9: bytes_add(&t->in, raw, 2 + (size_t)(d & 3)); break;
  default: text(t, "[1,2]", d); break;
  }
}

typedef struct req {
  char path[8], query[80];
  ws_header h[10];
  size_t n;
} req;

static void hdr(req *r, const char *name, const char *value) {
  ws_header *h = &r->h[r->n++];
  h->name = name;
  h->name_len = strlen(name);
  h->value = value;
  h->value_len = strlen(value);
}

/* t's request. b: bits 0-1 user (none, u0-u2), 2-3 group, 4 refuse=1.
 * t->e: bits 0-1 Origin (origins[]), 2-3 subprotocols offered (none,
 * "json, chat", "x", "chat" and "json" in two headers), 4-5 kind (2: path
 * /page, 3: no Upgrade: both for on_http), 6-7 b=N in the query: on_http's
 * answer or select_subprotocol's choice. */
static void build_request(req *r, const slot *t, uint8_t b) {
  char dev[16] = "", user[16] = "", group[16] = "";
  int offer = (t->e >> 2) & 3, kind = (t->e >> 4) & 3;
  if (t->dev >= 0) snprintf(dev, sizeof dev, "device_id=%s&", devs[t->dev]);
  if (b & 3) snprintf(user, sizeof user, "user=%s&", users[(b & 3) - 1]);
  if (b & 12)
    snprintf(group, sizeof group, "group=%s&", groups[((b >> 2) & 3) - 1]);
  snprintf(r->query, sizeof r->query, "%s%s%sb=%d%s", dev, user, group,
           t->e >> 6, (b & 16) ? "&refuse=1" : "");
  snprintf(r->path, sizeof r->path, "%s", kind == 2 ? "/page" : "/ws");
  r->n = 0;
  hdr(r, "Host", "h");
  if (kind != 3) hdr(r, "Upgrade", "websocket");
  if (kind != 3) hdr(r, "Connection", "Upgrade");
  hdr(r, "Sec-WebSocket-Key", KEY);
  hdr(r, "Sec-WebSocket-Version", "13");
  if (t->e & 3) hdr(r, "Origin", origins[t->e & 3]);
  if (offer)
    hdr(r, "Sec-WebSocket-Protocol",
        offer == 1 ? "json, chat" : offer == 2 ? "x" : "chat");
  if (offer == 3) hdr(r, "Sec-WebSocket-Protocol", "json");
}

/* The request as bytes to feed. */
static void request(slot *t, uint8_t b) {
  char line[128];
  req r;
  size_t i;
  build_request(&r, t, b);
  snprintf(line, sizeof line, "GET %s?%s HTTP/1.1\r\n", r.path, r.query);
  bytes_add(&t->in, line, strlen(line));
  for (i = 0; i < r.n; i++) {
    bytes_add(&t->in, r.h[i].name, r.h[i].name_len);
    bytes_add(&t->in, ": ", 2);
    bytes_add(&t->in, r.h[i].value, r.h[i].value_len);
    bytes_add(&t->in, "\r\n", 2);
  }
  bytes_add(&t->in, "\r\n", 2);
}

/* Odd headers for the pre-parsed entry points: a second key, whitespace
 * around Host's value, a second Host, the second header dropped or
 * emptied, a control byte in a value, a name that is no token. */
static void mutate(req *r, uint8_t how) {
  switch (how & 7) {
  case 1: hdr(r, "sec-websocket-key", KEY); break;
  case 2: r->h[0].value = " h\t"; r->h[0].value_len = 3; break;
  case 3: hdr(r, "HOST", "h"); break;
  case 4: r->h[1] = r->h[--r->n]; break;
  case 5: r->h[1].value_len = 0; break;
  case 6: hdr(r, "X-C", "a\001b"); break;
  case 7: hdr(r, "Bad Name", "v"); break;
  default: break;
  }
}

/* ---- operations --------------------------------------------------------- */

/* A connection on t (free), for a request with extras e, or NULL. */
static ws_conn *slot_new(slot *t, uint8_t a, uint8_t e) {
  ws_conn *c;
  if (t->c != NULL || W->made >= MAX_MADE) return NULL;
  W->made++;
  W->data_frames += t->out.frames[1] + t->out.frames[2];
  fz_out_free(&t->out);
  free(t->in.p);
  memset(t, 0, sizeof(*t));
  t->dev = (a & 0x20) ? -1 : (a >> 3) % NDEV;
  t->e = e;
  if (ws_conn_new(W->s, t, &c) != WS_OK) return NULL;
  t->c = c;
  t->created = 1;
  t->out.json_text = 1;
  t->out.seq_check = 1;
  return c;
}

/* A new connection on a free slot, its request fed all, half, one byte or
 * none of it (OP_FEED feeds the rest). */
static void op_new(fz_in *in) {
  uint8_t a = fz_byte(in, 0), b = fz_byte(in, 0), e = fz_byte(in, 0);
  slot *t = &W->t[a % NSLOT];
  if (slot_new(t, a, e) == NULL) return;
  request(t, b);
  feed_part(t, (uint8_t)(a >> 6));
}

/* The host writes its own 101 (ws_conn_upgrade_answer), then lets the
 * library's output follow. */
static void answer_101(slot *t, const char *accept) {
  char head[200];
  const char *p = ws_conn_subprotocol(t->c);
  snprintf(head, sizeof head,
           "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
           accept, p ? "Sec-WebSocket-Protocol: " : "", p ? p : "",
           p ? "\r\n" : "");
  fz_out_append(&t->out, head, strlen(head));
  t->hold = 0;
}

static void upgrade_answer(slot *t, ws_conn *c, const req *r,
                           const char *method, const char *path,
                           const char *query, int two_keys) {
  char acc[WS_ACCEPT_LEN + 1];
  const char *reason = NULL;
  int status = 0, rc;
  ws_conn *was = W->answering;
  W->answering = c;
  t->hold = 1;
  rc = ws_conn_upgrade_answer(c, method, path, query, r->h, r->n, &status,
                              &reason, acc);
  W->answering = was;
  FZ_CHECK(rc == WS_OK, "ws_conn_upgrade_answer: not WS_OK");
  if (status != 101) {
    FZ_CHECK(status >= 400 && status <= 599 && reason != NULL,
             "ws_conn_upgrade_answer refused without a status or reason");
    FZ_CHECK(t->c != c, "ws_conn_upgrade_answer refused and kept c");
    return;
  }
  FZ_CHECK(t->c == c && t->opened, "a 101 answer without on_open");
  FZ_CHECK(strlen(acc) == WS_ACCEPT_LEN &&
               (two_keys || !strcmp(acc, KEY_ACCEPT)),
           "Sec-WebSocket-Accept differs from RFC 6455's");
  answer_101(t, acc);
}

/* A pre-parsed request: m bit 0 ws_conn_upgrade_answer, 1-3 mutate(), 4-5
 * the method, 6 an absolute-form target, 7 the query left in the path. */
static void upgrade_call(slot *t, ws_conn *c, req *r, uint8_t m) {
  static const char *const methods[4] = {"GET", "HEAD", "POST", "G T"};
  const char *method = methods[(m >> 4) & 3], *q = (m & 0x80) ? NULL : "";
  char path[128];
  snprintf(path, sizeof path, "%s%s%s%s", (m & 0x40) ? "http://h" : "",
           r->path, q ? "" : "?", q ? "" : r->query);
  if (q) q = r->query;
  mutate(r, (uint8_t)(m >> 1));
  t->out.head_request = (m >> 4 & 3) == 1;
  if (m & 1) {
    upgrade_answer(t, c, r, method, path, q, ((m >> 1) & 7) == 1);
    return;
  }
  FZ_CHECK(ws_conn_upgrade(c, method, path, q, r->h, r->n) == WS_OK,
           "ws_conn_upgrade: not WS_OK");
  FZ_CHECK(t->c != c || c->state != WS__OPEN || t->opened,
           "ws_conn_upgrade opened c without on_open");
}

/* A connection upgraded from a request the host parsed; on an opened one,
 * a second upgrade: WS_ESTATE. */
static void op_upgrade(fz_in *in) {
  uint8_t a = fz_byte(in, 0), b = fz_byte(in, 0), e = fz_byte(in, 0);
  uint8_t m = fz_byte(in, 0);
  slot *t = &W->t[a % NSLOT];
  ws_conn *c = t->c;
  req r;
  if (c && t->opened) {
    FZ_CHECK(ws_conn_upgrade(c, "GET", "/ws", NULL, NULL, 0) == WS_ESTATE,
             "ws_conn_upgrade on an opened connection: not WS_ESTATE");
    return;
  }
  if ((c = slot_new(t, a, e)) == NULL) return;
  build_request(&r, t, b);
  upgrade_call(t, c, &r, m);
}

static void op_frame(fz_in *in) {
  slot *t = pick(in);
  uint8_t kind = fz_byte(in, 0), a = fz_byte(in, 0), d = fz_byte(in, 0);
  if (t->c == NULL) return;
  client_frame(t, kind, a, d);
  feed_part(t, kind >> 6);
}

static void op_mode(fz_in *in) {
  static const size_t partial[4] = {1, 7, 100, 1000};
  uint8_t a = fz_byte(in, 0);
  slot *t = &W->t[a % NSLOT];
  t->mode = (a >> 3) & 3;
  t->partial = partial[a >> 6];
}

static void op_close(fz_in *in) {
  static const int codes[8] = {1000, 1001, 4000, 4999, 1005, 999, 3000, 1011};
  char long_reason[125]; /* one byte past the limit: WS_EINVAL */
  slot *t = pick(in);
  uint8_t a = fz_byte(in, 0);
  const char *reason = (a & 8) ? ((a & 16) ? long_reason : "bye") : NULL;
  memset(long_reason, 'r', 124);
  long_reason[124] = '\0';
  if (t->c) host_close(t, codes[a & 7], reason);
}

/* A top-level tick at or past the close timeout of a ws_conn_close ends
 * that connection (the peer's close frame or not, the socket blocked or
 * not), but during a shutdown, whose drain deadline may be later. */
static void check_close_timeouts(void) {
  int i;
  if (!W->close_to || W->depth > 0 || W->shut_ok || !live()) return;
  for (i = 0; i < NSLOT; i++) {
    const slot *t = &W->t[i];
    FZ_CHECK(!t->c || !t->host_closed ||
                 lib_now() - t->closed_at < W->close_to,
             "a connection outlived the close timeout of ws_conn_close");
  }
}

/* The longest deadline the config can arm (idle_timeout_ms), or the
 * longest drain (op_misc's drains[]). */
#define MAX_WAIT 5000

/* ws_server_tick's answer rc: -1 or the time to a deadline armed from a
 * time already given, so at most MAX_WAIT; 0 from the tick in which a
 * graceful shutdown ended (was: on_shutdown had run before it); after a
 * top-level tick with a connection left, not -1 (every state has a
 * deadline: handshake, idle, close, write, the drain). */
FZ_NOCOV static void check_tick(int rc, int was) {
  int i, left = 0;
  FZ_CHECK(rc >= -1 && rc <= MAX_WAIT,
           "ws_server_tick: a time past every configured deadline");
  if (W->dying) return; /* destroyed from a callback: -1 */
  FZ_CHECK(was || !W->on_shutdown || rc == 0,
           "the tick in which a shutdown ended did not return 0");
  for (i = 0; i < NSLOT; i++) left |= W->t[i].c != NULL;
  FZ_CHECK(W->depth > 0 || !left || rc >= 0,
           "ws_server_tick: -1 with a connection left");
}

static void op_tick(fz_in *in) {
  uint8_t a = fz_byte(in, 0);
  int was = W->on_shutdown;
  if (a < 0xC0) W->now += a;
  else if (a < 0xF0) W->now += (uint64_t)(a & 0x3F) * 250;
  else W->now += 100000;
  if (!W->ticked) W->zero = W->now;
  W->ticked = 1;
  check_tick(ws_server_tick(W->s, W->now), was);
  check_close_timeouts();
}

static void op_member(fz_in *in, int op) {
  slot *t = pick(in);
  uint8_t a = fz_byte(in, 0);
  if (t->c == NULL) return;
  if (op == OP_JOIN) join(t, a % NGROUP);
  else if (op == OP_LEAVE) leave(t, a % NGROUP);
  else set_user(t, a % 4 ? users[a % 4 - 1] : NULL);
}

/* A device id by index: d0-d3, then NULL, "", one nobody has. */
static const char *dev_name(uint8_t a) {
  static const char *const more[3] = {NULL, "", "zz"};
  a %= NDEV + 3;
  return a < NDEV ? devs[a] : more[a - NDEV];
}

static void op_list(fz_in *in, int op) {
  const char *ids[4];
  uint8_t a = fz_byte(in, 0);
  size_t n = a % 5, i, bound;
  int rc;
  char b[16];
  for (i = 0; i < n; i++) ids[i] = dev_name(fz_byte(in, 0));
  bound = found_ids(ids, n);
  if (op == OP_DEVICES) {
    rc = ws_send_devices_json(W->s, ids, n, "devs", tag(b, 0), 6);
  } else {
    if (n == 0) bound = count_reachable();
    rc = ws_broadcast_json(W->s, "bc", tag(b, 0), 6, ids, n);
  }
  fanout_done(rc, bound);
}

static void op_push(fz_in *in) {
  uint8_t a = fz_byte(in, 0);
  if (a & 1) publish((a >> 1) % NGROUP);
  else push_user((a >> 1) % NUSER);
}

static void op_post(fz_in *in) {
  uint8_t a = fz_byte(in, 0);
  int target = a & 3;
  const char *name = target == WS_POST_DEVICE ? dev_name(a >> 2)
                     : target == WS_POST_USER ? users[(a >> 2) % NUSER]
                                              : groups[(a >> 2) % NGROUP];
  post(target, name);
}

static int send_one(ws_conn *c, uint8_t a) {
  char big[600], b[16];
  memset(big, 'y', sizeof big);
  big[0] = big[598] = '"'; /* text frames are JSON: a string */
  switch (a % 6) {
  case 0: return ws_conn_send_json(c, "s", tag(b, 0), 6);
  case 1: return ws_conn_send_text(c, "\"t\"", 3);
  case 2: return ws_conn_send_binary(c, big, sizeof big);
  case 3: return ws_conn_send_prepared(c, W->prep);
  case 4: return ws_conn_send_error(c, "bad_room", "no such room");
  default: return ws_conn_send_text(c, big, sizeof big - 1);
  }
}

/* A send's answer, by what the host knew before it: none succeeds before
 * on_open, and after the host's ws_conn_close each is WS_ECLOSED. */
static void check_send(int opened, int closed, int rc) {
  if (!opened) FZ_CHECK(rc < 0, "a send before on_open succeeded");
  else if (closed) FZ_CHECK(rc == WS_ECLOSED, "a send after ws_conn_close: "
                                              "not WS_ECLOSED");
  W->queue_full += rc == WS_EQUEUEFULL; /* queue_policy applied */
}

static void op_send(fz_in *in) {
  slot *t = pick(in);
  uint8_t a = fz_byte(in, 0);
  int opened = t->opened, closed = t->host_closed;
  if (t->c == NULL) return;
  check_send(opened, closed, send_one(t->c, a));
}

/* A prepared message of the program's own, or none. */
static void prep_new(ws_prepared **pp, int tree) {
  cJSON *d = tree ? cJSON_CreateString("tree") : NULL;
  int rc;
  ws_prepared_free(*pp);
  *pp = NULL;
  rc = tree ? ws_prepare(W->s, "pt", d, pp)
            : ws_prepare_json(W->s, "pp", "[1,{}]", 6, pp);
  cJSON_Delete(d);
  FZ_CHECK(rc == WS_OK || rc == WS_ENOMEM, "ws_prepare refused good data");
  if (rc != WS_OK) *pp = NULL;
}

/* Invalid JSON, an action that is not UTF-8, a frame past max_queued. */
static void prep_bad(void) {
  static char big[1200];
  ws_prepared *p = NULL;
  int rc;
  FZ_CHECK(ws_prepare_json(W->s, "p", "{", 1, &p) == WS_EJSON &&
               ws_prepare_json(W->s, "\xff", "1", 1, &p) == WS_EINVAL,
           "ws_prepare took invalid JSON or action");
  memset(big, 'z', sizeof big);
  big[0] = big[sizeof big - 1] = '"';
  rc = ws_prepare_json(W->s, "p", big, sizeof big, &p);
  if (W->max_queued < sizeof big)
    FZ_CHECK(rc == WS_ETOOBIG, "ws_prepare: a frame past max_queued");
  if (rc == WS_OK) ws_prepared_free(p);
}

/* Sends one (and may free it while it is queued). */
static void prep_send(slot *t, ws_prepared **pp, int free_it) {
  int opened = t->opened, closed = t->host_closed, rc;
  const ws_prepared *p = *pp; /* a callback of the send may free *pp */
  if (t->c == NULL) return;
  rc = ws_conn_send_prepared(t->c, p);
  /* NULL: WS_EINVAL, or the connection's state first (prepared.c), as
   * ws_conn_send answers before it looks at the message */
  FZ_CHECK(p || rc < 0, "ws_conn_send_prepared sent a NULL prepared");
  check_send(opened, closed, rc);
  if (!free_it || W->dying) return; /* ws_server_free releases them */
  ws_prepared_free(*pp);
  *pp = NULL;
}

/* a: bit 0 which handle; the rest: make (JSON text or a tree), bad
 * arguments, free, send, send and free. */
static void op_prep(fz_in *in) {
  uint8_t a = fz_byte(in, 0);
  ws_prepared **pp = &W->pp[a & 1];
  int what = (a >> 1) % 6;
  if (W->dying) return; /* the handles are the server's to release */
  if (what < 2) prep_new(pp, what);
  else if (what == 2) prep_bad();
  else if (what == 3) ws_prepared_free(*pp);
  if (what == 3) *pp = NULL;
  if (what > 3) prep_send(pick(in), pp, what == 5);
}

static void mux_entry(int k, int add) {
  int reg = (W->reg >> k) & 1, rc;
  if (add) {
    rc = ws_mux_handle(W->mux, actions[k], h_any, &entry_tag[k]);
    FZ_CHECK(rc == (reg ? WS_EEXIST : WS_OK) || (!reg && rc == WS_ENOMEM),
             "ws_mux_handle's answer differs from the entries made");
  } else {
    rc = ws_mux_remove(W->mux, actions[k]);
    FZ_CHECK(rc == (reg ? WS_OK : WS_ENOENT),
             "ws_mux_remove's answer differs from the entries made");
  }
  if (rc == WS_OK) W->reg ^= 1u << k;
}

/* a: bits 0-1 add an entry, remove one, switch the fallback or the binary
 * handler; 2-7 the action. */
/* The host hands the mux a message it made (ws_mux_serve outside any
 * handler), to a connection a handler may run on; the armed programs
 * re-enter from the handler as for a peer's message. Without an action
 * it is WS_EINVAL. */
static void host_serve(slot *t, uint8_t b) {
  ws_msg m;
  if (t->c == NULL || !t->opened || t->app_closed || t->host_closed ||
      W->shut_done)
    return;
  memset(&m, 0, sizeof m);
  m.text = "{}";
  m.len = 2;
  if (b == 0xFF) {
    FZ_CHECK(ws_mux_serve(t->c, &m, W->mux) == WS_EINVAL,
             "ws_mux_serve took a text message without an action");
    return;
  }
  m.action = actions[b % NACTIONS];
  ws_mux_serve(t->c, &m, W->mux); /* the handler's value: any */
}

static void op_mux(fz_in *in) {
  static char too_long[WS_MAX_ACTION + 2];
  uint8_t a = fz_byte(in, 0);
  int k = (a >> 2) % (int)NACTIONS;
  if (a == 0xFE) {
    slot *t = &W->t[fz_byte(in, 0) % NSLOT];
    host_serve(t, fz_byte(in, 0));
  } else if (a == 0xFF) {
    memset(too_long, 'a', WS_MAX_ACTION + 1);
    FZ_CHECK(ws_mux_handle(W->mux, too_long, h_any, NULL) == WS_EINVAL,
             "ws_mux_handle took an action longer than WS_MAX_ACTION");
  } else if ((a & 3) < 2) {
    mux_entry(k, !(a & 1));
  } else if ((a & 3) == 2) {
    W->fallback_on ^= 1;
    ws_mux_fallback(W->mux, W->fallback_on ? h_any : NULL, &fallback_tag);
  } else {
    W->binary_on ^= 1;
    ws_mux_binary(W->mux, W->binary_on ? h_any : NULL, &binary_tag);
  }
}

static void op_arm(fz_in *in) {
  uint8_t kind = fz_byte(in, 0) % CB_COUNT_;
  int i;
  W->arm[kind][0] = 1;
  for (i = 1; i <= ARM_LEN; i++) W->arm[kind][i] = fz_byte(in, 0);
}

static void op_misc(fz_in *in, int op) {
  static const uint32_t drains[4] = {0, 1, 300, 5000};
  uint8_t a = fz_byte(in, 0);
  slot *t = &W->t[a % NSLOT];
  switch (op) {
  case OP_FEED: if (t->c) feed_part(t, a >> 3); break;
  case OP_WRITABLE: if (t->c) ws_conn_writable(t->c); break;
  case OP_ABORT: if (t->c) ws_conn_abort(t->c); break;
  case OP_SEND_DEVICE: send_device(dev_name(a)); break;
  case OP_SHUTDOWN: host_shutdown(drains[a & 3]); break;
  default: if ((a & 7) == 0) server_free(); break; /* OP_FREE, rarely */
  }
}

static void run_op(fz_in *in) {
  int op = fz_byte(in, 0) % OP_COUNT_;
  if (!live()) return;
  if (W->trace) fprintf(stderr, "%*sop %d\n", 2 * W->depth, "", op);
  switch (op) {
  case OP_NEW: op_new(in); break;
  case OP_FRAME: op_frame(in); break;
  case OP_MODE: op_mode(in); break;
  case OP_CLOSE: op_close(in); break;
  case OP_TICK: op_tick(in); break;
  case OP_JOIN: case OP_LEAVE: case OP_USER: op_member(in, op); break;
  case OP_BROADCAST: case OP_DEVICES: op_list(in, op); break;
  case OP_PUSH: op_push(in); break;
  case OP_POST: op_post(in); break;
  case OP_SEND: op_send(in); break;
  case OP_ARM: op_arm(in); break;
  case OP_UPGRADE: op_upgrade(in); break;
  case OP_PREP: op_prep(in); break;
  case OP_MUX: op_mux(in); break;
  default: op_misc(in, op); break;
  }
}

/* ---- invariants between operations ------------------------------------- */

FZ_NOCOV static void check_slot(const slot *t) {
  if (t->opened)
    FZ_CHECK(t->app_closed == t->tp_closed,
             "on_close and the transport close out of step");
  if (t->c == NULL) return;
  FZ_CHECK(t->c->q.bytes <= W->max_queued + WS__QUEUE_SLACK,
           "queued bytes past max_queued plus a close frame and a ping");
  FZ_CHECK(ws_conn_want_write(t->c) == t->want,
           "want_write signal differs from ws_conn_want_write");
}

FZ_NOCOV static uint64_t data_frames(void) {
  uint64_t n = 0;
  int i;
  for (i = 0; i < NSLOT; i++)
    n += W->t[i].out.frames[1] + W->t[i].out.frames[2];
  return n;
}

FZ_NOCOV static void check_gauges(void) {
  ws_stats st;
  uint64_t open = 0, pending = 0;
  int i;
  for (i = 0; i < NSLOT; i++) {
    const slot *t = &W->t[i];
    open += t->opened && !t->tp_closed;
    pending += t->created && !t->opened && !t->tp_closed;
  }
  FZ_CHECK(ws_server_stats(W->s, &st, sizeof st) == WS_OK, "stats");
  FZ_CHECK(st.conns_open == open && ws_server_conn_count(W->s) == open,
           "conns_open differs from the connections opened and not closed");
  FZ_CHECK(open <= W->max_conn, "open connections past max_connections");
  FZ_CHECK(st.conns_pending == pending, "conns_pending differs");
  FZ_CHECK(st.conns_total == (uint64_t)W->opens, "conns_total != on_opens");
  FZ_CHECK(st.bytes_out == W->taken,
           "bytes_out differs from the bytes the transports took");
  FZ_CHECK(st.bytes_in >= W->fed_ok && st.bytes_in <= W->fed,
           "bytes_in differs from the bytes fed");
  FZ_CHECK(st.msgs_out >= W->data_frames + data_frames(),
           "msgs_out below the text and binary frames written");
  FZ_CHECK(st.drops_queue_full >= W->queue_full,
           "drops_queue_full below the sends answered WS_EQUEUEFULL");
  FZ_CHECK(st.unknown_targets >= W->unknown,
           "unknown_targets below ws_send_device's unknown ids");
  FZ_CHECK(st.broadcasts >= W->bc_calls && st.fanout >= W->bc_fanout &&
               st.broadcasts - W->bc_calls <= W->posts_ok,
           "broadcasts / fanout differ from the fan-outs answered");
  fz_check_counters(&st, W->closes_by, &W->last);
}

/* The one reachable connection holding device d, or NULL. */
FZ_NOCOV static ws_conn *holder(int d) {
  ws_conn *found = NULL;
  int i;
  for (i = 0; i < NSLOT; i++) {
    const slot *t = &W->t[i];
    if (!reachable(t) || t->dev != d) continue;
    FZ_CHECK(found == NULL, "two open connections hold one device id");
    found = t->c;
  }
  return found;
}

FZ_NOCOV static void check_registry(void) {
  size_t nu[NUSER] = {0}, ng[NGROUP] = {0};
  int i, k;
  for (i = 0; i < NDEV; i++)
    FZ_CHECK(ws_server_find_device(W->s, devs[i]) == holder(i),
             "ws_server_find_device differs from the open holder");
  for (i = 0; i < NSLOT; i++) {
    const slot *t = &W->t[i];
    const char *u = t->c ? ws_conn_user(t->c) : NULL;
    if (!reachable(t)) continue;
    for (k = 0; k < NUSER; k++) nu[k] += u && !strcmp(u, users[k]);
    for (k = 0; k < NGROUP; k++) ng[k] += (t->groups >> k) & 1;
  }
  for (k = 0; k < NUSER; k++)
    FZ_CHECK(ws_server_user_count(W->s, users[k]) == nu[k],
             "ws_server_user_count differs from the bound connections");
  for (k = 0; k < NGROUP; k++)
    FZ_CHECK(ws_server_group_count(W->s, groups[k]) == ng[k],
             "ws_server_group_count differs from the members joined");
}

FZ_NOCOV static void check_world(void) {
  int i;
  for (i = 0; i < NSLOT; i++) check_slot(&W->t[i]);
  if (!live()) return;
  check_gauges();
  check_registry();
}

/* ---- setup and teardown -------------------------------------------------- */

/* The second config byte: bits 0-1 max_connections (default, 1, 2, 3),
 * 2-3 subprotocols (none, a list, select_subprotocol, both: the callback
 * decides), 4-5 Origin (the default, a list, check_origin, both), 6
 * keep_headers, 7 no on_http. */
static void configure2(ws_config *cfg, uint8_t f) {
  static const char *const protos[2] = {"chat", "json"};
  static const size_t caps[4] = {100000, 1, 2, 3};
  cfg->max_connections = W->max_conn = caps[f & 3];
  W->sp_mode = (f >> 2) & 3 ? 1 + ((f >> 3) & 1) : 0;
  if (f & 4) cfg->subprotocols = protos, cfg->subprotocols_count = 2;
  if (f & 8) cfg->select_subprotocol = select_proto;
  W->origin_mode = (f >> 4) & 3 ? 1 + ((f >> 5) & 1) : 0;
  if (f & 16) cfg->allowed_origins = origins + 1;
  if (f & 16) cfg->allowed_origins_count = 1;
  if (f & 32) cfg->check_origin = check_origin;
  cfg->keep_headers = (f >> 6) & 1;
  if (!(f & 128)) cfg->on_http = on_http;
}

static void configure(ws_config *cfg, uint8_t flags, uint8_t flags2) {
  ws_config_init(cfg);
  cfg->alloc = fz_allocator(&W->fa);
  cfg->send = on_send;
  if (flags & 16) cfg->sendv = on_sendv;
  cfg->want_write = on_want;
  cfg->close = on_tp_close;
  cfg->handler = ws_mux_serve;
  cfg->handler_data = W->mux;
  cfg->on_open = on_open;
  cfg->on_close = on_close;
  cfg->on_upgrade = on_upgrade;
  cfg->on_log = on_log;
  cfg->on_shutdown = on_shutdown;
  cfg->wake = on_wake;
  cfg->duplicate_policy = (flags & 3) == 3 ? WS_DUP_REPLACE : flags & 3;
  cfg->queue_policy = (flags & 4) ? WS_QUEUE_DROP : WS_QUEUE_CLOSE;
  cfg->bad_message_policy = (flags & 8) ? WS_BADMSG_CLOSE : WS_BADMSG_REPLY;
  cfg->close_timeout_ms = W->close_to = (flags & 32) ? 0 : 500;
  cfg->max_queued = W->max_queued = (flags & 64) ? 1024 : 8192;
  cfg->device_required = !(flags & 128);
  cfg->max_message = MAX_MESSAGE;
  cfg->handshake_timeout_ms = 1000;
  cfg->idle_timeout_ms = 4000;
  cfg->ping_interval_ms = 1500;
  cfg->write_timeout_ms = 2000;
  configure2(cfg, flags2);
}

static void setup(uint8_t flags, uint8_t flags2) {
  ws_allocator al = fz_allocator(&W->fa);
  ws_config cfg;
  W->mux = ws_mux_new(&al);
  if (W->mux == NULL ||
      ws_mux_fallback(W->mux, h_any, &fallback_tag) != WS_OK ||
      ws_mux_binary(W->mux, h_any, &binary_tag) != WS_OK)
    fz_fail("mux");
  W->fallback_on = W->binary_on = 1;
  configure(&cfg, flags, flags2);
  if (ws_server_new(&cfg, &W->s) != WS_OK) fz_fail("server_new");
  if (ws_prepare_json(W->s, "prep", "1", 1, &W->prep) != WS_OK)
    fz_fail("prepare");
}

/* Every socket takes all; the clock passes every deadline. After a
 * shutdown nothing may be left then: the drain is over. */
static void drain(void) {
  int round, i;
  memset(W->arm, 0, sizeof W->arm);
  for (round = 0; round < 4 && live(); round++) {
    for (i = 0; i < NSLOT && live(); i++) {
      W->t[i].mode = M_ALL;
      if (W->t[i].c) ws_conn_writable(W->t[i].c);
    }
    W->now += 100000;
    if (live()) ws_server_tick(W->s, W->now);
    if (W->dying) W->gone = 1;
    check_world();
  }
  if (!live() || !W->shut_ok) return;
  for (i = 0; i < NSLOT; i++)
    FZ_CHECK(W->t[i].c == NULL, "a connection outlived the shutdown");
  FZ_CHECK(W->on_shutdown, "shutdown over without on_shutdown");
}

static void teardown(void) {
  int i;
  drain();
  if (live()) server_free();
  for (i = 0; i < NSLOT; i++) {
    slot *t = &W->t[i];
    FZ_CHECK(!t->created || t->tp_closed, "connection never closed");
    FZ_CHECK(!t->opened || t->app_closed, "opened without on_close");
    fz_out_free(&t->out);
    free(t->in.p);
  }
  ws_mux_free(W->mux);
  if (W->trace)
    fprintf(stderr, "opens %ld on_close %ld handlers %ld fan-outs %lu "
            "posts %lu shutdown %d/%d freed %d\n", W->opens, W->on_closes,
            W->handlers, (unsigned long)W->bc_calls,
            (unsigned long)W->posts_ok, W->shut_ok, W->on_shutdown, W->dying);
  FZ_CHECK(W->fa.live == 0 && W->fa.live_bytes == 0,
           "allocations live after ws_server_free and ws_mux_free");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  world w;
  fz_in in = {data, size};
  uint8_t flags, flags2, fail_at;
  memset(&w, 0, sizeof w);
  W = &w;
  w.trace = getenv("FUZZ_TRACE") != NULL;
  flags = fz_byte(&in, 0);
  fail_at = fz_byte(&in, 0);
  flags2 = fz_byte(&in, 0);
  setup(flags, flags2);
  fz_alloc_reset(&w.fa, fail_at);
  while (in.n > 0 && live()) {
    run_op(&in);
    if (w.dying) w.gone = 1; /* outside every callback: gone */
    if (w.shut_ok) w.shut_done = 1;
    check_world();
  }
  teardown();
  W = NULL;
  return 0;
}
