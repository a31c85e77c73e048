/*
 * Structures shared inside lib/. Never installed.
 *
 * Ownership at a glance:
 *   ws_server owns every ws_conn (open list + dead list), the rx pool, the
 *   timer heap, the registry indexes.
 *   ws_conn owns its request (ws_request), its queue slots and one reference
 *   on every ws__buf in its queue, its rx while a frame is in flight, its
 *   message assembly buffer, its group memberships.
 *   A ws__buf is shared by every queue that holds a reference on it.
 */
#ifndef WS_INTERNAL_H
#define WS_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <wslay/wslay.h>

#include "alloc.h"
#include "proto.h"
#include "wsmux.h"

/* uthash allocates through the allocator named `hal` in the calling scope,
 * and reports out-of-memory by setting `hash_oom` instead of exiting. */
#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) ws__malloc(hal, (sz))
#define uthash_free(ptr, sz) ws__free(hal, (ptr))
#define uthash_nonfatal_oom(obj) (hash_oom = 1)
/* For the mux's actions, keys the host registers: FNV-1a beats uthash's
 * default (Jenkins) below a dozen bytes. Keys a peer chooses (device ids,
 * user and group names) use the server's keyed ws__hash instead. */
#define HASH_FUNCTION(keyptr, keylen, hashv) HASH_FNV(keyptr, keylen, hashv)
#include <uthash.h>

/* ---- outq.c: shared frames and the per-connection queue --------------- */

/* One framed message: header and payload in one allocation, immutable once
 * built, shared by reference among receivers. */
typedef struct ws__buf {
  uint32_t refs;
  uint32_t len;     /* bytes in data */
  uint8_t is_ctrl;  /* control frame: may go ahead of queued data */
  uint8_t is_close; /* close frame: nothing is queued after it */
  uint8_t is_http;  /* raw HTTP response: no frame may go ahead of it */
  uint8_t data[];
} ws__buf;

/* The largest payload a frame buffer holds: its len is 32-bit and counts
 * the header (14 bytes at most) and the struct (12). */
#define WS__FRAME_PAYLOAD_MAX ((size_t)UINT32_MAX - 32)
/* The largest message the API takes: a frame buffer's, less room for the
 * JSON envelope around data (at most 10 + 6 * WS_MAX_ACTION + 2 + 9). A
 * message past it, or past max_queued, is WS_ETOOBIG, told from its
 * length before its bytes are read. */
#define WS__MESSAGE_MAX (WS__FRAME_PAYLOAD_MAX - 2048)
#define WS__TOO_BIG(s, len) \
  ((len) > (s)->cfg.max_queued || (len) > WS__MESSAGE_MAX)

/* FIFO of buffer references with the first one partially sent. Two inline
 * slots cover the common case (one reply in flight) without an allocation;
 * it grows onto the heap and falls back when drained. */
typedef struct ws__outq {
  ws__buf **slots; /* small, or a heap array of cap entries */
  ws__buf *small[2];
  uint32_t cap, head, count; /* cap: a power of two */
  uint32_t off;     /* bytes of slots[head] already sent */
  /* Control frames queued (bounded by conn.c's WS__CTRL_QUEUED_MAX), and
   * the index just after the last one that waits ahead of data: the next
   * goes there, so they leave in the order they came. */
  uint16_t nctrl, ctrl_end;
  /* Buffers handed to the host's send that has not returned yet: the host
   * may call back into the library from it, and nothing may then move,
   * drop or get ahead of them (ws__outq_push, ws__outq_truncate). At most
   * outq.c's WS__IOV_MAX. */
  uint16_t inflight;
  /* conn.c's, in what was padding: while blocked (WS__F_WANT_WRITE), a
   * flush tries the socket again once bytes reach max_queued less
   * max_queued >> retry_k, or control frames their bound less the bound
   * >> ctrl_retry_k. */
  uint8_t retry_k, ctrl_retry_k;
  size_t bytes;     /* unsent bytes in the queue */
} ws__outq;

/* ---- frame.c: receive state that lives only while a frame is in flight */
typedef struct ws__rx {
  struct ws__rx *next_free;      /* pool link */
  wslay_frame_context_ptr wslay; /* its 4 KiB input buffer is why we pool */
  const uint8_t *in;             /* the bytes being fed, not yet given */
  size_t in_len;
  uint64_t given;    /* bytes handed to wslay */
  uint64_t consumed; /* bytes of frames wslay finished or is inside */
  uint64_t frame_left; /* payload bytes of the current frame still due */
  uint8_t in_frame;
  uint8_t ctrl_len;
  uint8_t ctrl[125];
  uint8_t head[14]; /* a header wslay holds without payload (peek_header) */
} ws__rx;

/* ---- registry.c ------------------------------------------------------- */
typedef struct ws__group ws__group;
typedef struct ws__member {
  ws__group *group;
  ws_conn *conn;
  struct ws__member *gprev, *gnext; /* in the group's list */
  struct ws__member *cnext;         /* in the connection's list */
} ws__member;

struct ws__group {
  char *name; /* kind byte ('u' user, 'g' group) then the name */
  ws__member *members;
  size_t count;
  UT_hash_handle hh;
};

/* ---- connection ------------------------------------------------------- */
enum ws__state {
  WS__HANDSHAKE = 0, /* reading the HTTP request */
  WS__OPEN,          /* upgraded */
  WS__CLOSING,       /* we sent a close frame; waiting for the peer's */
  WS__DRAINING,      /* write what is queued, then close the transport */
  WS__DEAD           /* transport closed; freed at the outermost return */
};

enum ws__conn_flag {
  WS__F_DIRTY = 1u << 0,      /* on the server's flush list */
  WS__F_WANT_WRITE = 1u << 1, /* want_write(1) was signalled */
  WS__F_PING_SENT = 1u << 2,  /* server ping since the last read */
  WS__F_OPENED = 1u << 3,     /* on_open fired: on_close will */
  WS__F_IN_HTTP = 1u << 4,    /* inside on_http */
  WS__F_RESPONDED = 1u << 5,  /* an HTTP response was queued */
  WS__F_REGISTERED = 1u << 6, /* in the device index */
  WS__F_COUNTED = 1u << 7     /* counted in conns_open */
};

enum ws__conn_mark {
  WS__M_PICKED = 1u << 0, /* send.c: already in the target list being built */
  WS__M_FEEDING = 1u << 1, /* inside ws_conn_feed or ws_conn_upgrade* */
  WS__M_HEAD = 1u << 2,    /* upgrade.c: the request is HEAD: no content */
  WS__M_PASS = 1u << 3     /* server.c: not yet reached by for_each_now */
};

struct ws_conn {
  ws_server *s;
  void *transport;
  void *user_data;
  uint8_t state;
  uint8_t flags;
  uint8_t msg_opcode; /* 0, or the opcode of the message being assembled */
  uint8_t marks;      /* WS__M_*: transient marks */
  union {
    uint32_t utf8;       /* validator state across fragments and feeds */
    /* In WS__HANDSHAKE, upgrade.c's instead (utf8 is first used after the
     * 101): the head lines buffered and already parsed, valid (the
     * request line and headers), plus 1; 0 when none. */
    uint32_t head_lines;
  };
  uint32_t heap_idx;  /* position in the timer heap, UINT32_MAX if none */
  uint16_t close_sent, close_recv;
  uint64_t deadline;  /* when the timer heap wakes this connection */
  uint64_t last_read, last_write;
  ws__rx *rx;
  uint8_t *buf; /* handshake bytes, an assembling message, or (after the
                   peer's close frame) its NUL-terminated reason */
  uint32_t buf_len, buf_cap; /* bounded by max_handshake / max_message */
  ws__outq q;
  ws_conn *prev, *next;  /* all live connections */
  ws_conn *dirty_next;   /* flush list */
  const char *device_id; /* borrowed from req */
  ws__member *members;   /* groups; the user's is the one of kind 'u' */
  ws_request *req;
  char *subprotocol;     /* owned copy of the negotiated one, or NULL */
};

/* ---- server ----------------------------------------------------------- */
struct ws_server {
  ws_config cfg;
  ws__alloc al;
  uint8_t hash_key[16]; /* ws__hash's secret key */
  uint64_t now;        /* ms since the first tick (the host's clock - base) */
  uint64_t clock_base; /* the host's time at the first tick */
  uint8_t clock_set;   /* a tick has fixed clock_base */
  int depth;          /* library frames on the stack */
  uint8_t destroying; /* ws_server_free was called inside a callback */
  uint8_t shutting_down;
  uint64_t shutdown_deadline;
  ws_conn *conns;     /* all live (not DEAD) connections */
  /* Upgrades past decide()'s cap check and not open yet: their places
   * are held against the cap (see at_cap in upgrade.c). */
  size_t opening;
  ws_conn *dead;      /* closed, freed when depth returns to 0 */
  ws_conn *dirty;     /* connections with output to flush */
  ws_conn **dev_slots; /* device index: open addressing, linear probing */
  uint32_t dev_cap, dev_count;
  ws__group *groups;  /* uthash by kind+name */
  ws_conn **heap;     /* timer min-heap on conn->deadline */
  uint32_t heap_len, heap_cap;
  ws__rx *rx_pool;
  uint32_t rx_pool_len;
  size_t nconns;      /* live connections (any state), and ending ones
                         until their transport close returns */
  ws_stats st;
  struct ws_prepared *prepared; /* prepared.c: live prepared messages */
  /* post.c: messages from other threads, guarded by post_lock */
  pthread_mutex_t post_lock;
  struct ws__post *post_head, *post_tail;
  size_t post_bytes; /* heap bytes posts hold, at most cfg.max_posted */
  int post_closed;
  uint8_t post_draining;      /* ws__post_drain is on the stack */
  uint8_t shutdown_deferred;  /* ws_server_shutdown ran inside a drain */
  /* upgrade.c: set while ws_conn_upgrade_answer runs (host writes HTTP) */
  struct ws__answer *answer;
  /* response_headers.c: lines hosts add to responses being decided, the
   * innermost window's from hdr_start; hdr_owner may add (NULL: none) */
  char *hdr_buf;
  size_t hdr_len, hdr_cap, hdr_start;
  ws_conn *hdr_owner;
};

/* The hash of a key a peer chooses (a device id, a group key): keyed with
 * the server's secret, so colliding keys cannot be computed outside. */
static inline uint32_t ws__hash(const ws_server *s, const void *p, size_t n) {
  return (uint32_t)ws__siphash(s->hash_key, p, n);
}

/* ---- response_headers.c: ws_conn_add_header's lines -------------------- */
/* What a window replaced, restored at its end. */
typedef struct ws__hdrs_window {
  ws_conn *owner;
  size_t start;
} ws__hdrs_window;
/* From here until ws__hdrs_close, c may add lines to its response. */
void ws__hdrs_open(ws_conn *c, ws__hdrs_window *w);
/* From here until ws__hdrs_close, no connection may (the enclosing
 * window's one included): a request being processed inside another's
 * callback. */
void ws__hdrs_shut(ws_server *s, ws__hdrs_window *w);
/* Drops the window's lines, back to the enclosing one. */
void ws__hdrs_close(ws_server *s, const ws__hdrs_window *w);
/* The lines for the response c is getting now (NULL: none), valid until
 * the window closes; no more can be added after it. */
const char *ws__hdrs_take(ws_conn *c);
/* The same lines, still c's to add to (for a response that may yet fail
 * and give way to a refusal, which must carry them). */
const char *ws__hdrs_peek(const ws_conn *c);
void ws__hdrs_free(ws_server *s);

/* ---- server.c: entry/exit of library frames --------------------------- */
/* Inline: every API call enters and leaves, and a handler's send does so
 * once per message, nested in the feed, where leaving is a decrement. */
static inline void ws__enter(ws_server *s) { s->depth++; }
/* The outermost ws__leave: flushes, frees, destroys (see ws__leave). */
int ws__leave_outer(ws_server *s);
/* Leaves a library frame; at the outermost one flushes dirty connections,
 * frees dead ones and, if asked, the server: returns 1 when it did (the
 * caller must not touch s again). */
static inline int ws__leave(ws_server *s) {
  if (s->depth <= 1) return ws__leave_outer(s);
  s->depth--;
  return 0;
}
/* Flushes every connection with new output (the outermost frame only). */
void ws__flush_dirty(ws_server *s);
/* Fires on_shutdown, once, when a shutdown has no connection left. */
void ws__shutdown_check(ws_server *s);
/* The second half of ws_server_shutdown: drain the posts, 1001 to all. */
void ws__shutdown_close(ws_server *s);
void ws__log(ws_server *s, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- conn.c ----------------------------------------------------------- */
/* Fails the connection (protocol error, policy): queues a close frame with
 * code behind what is queued (a slow consumer's queue is dropped first) and
 * moves to DRAINING: written out, then the transport is closed, without
 * waiting for the peer's close. */
void ws__conn_fail(ws_conn *c, int code, const char *reason);
/* Ends the connection now: on_close, registry removal, transport close;
 * memory is freed at the outermost return. */
void ws__conn_finish(ws_conn *c, int code, const char *reason);
/* Ends a connection cut in its close handshake (a close or drain deadline)
 * with code: the peer's close code and reason once its close frame came,
 * else code and ours. */
void ws__conn_cut(ws_conn *c, int code, const char *ours);
/* Puts c on the server's flush list (flushed at the outermost return). */
void ws__conn_mark_dirty(ws_conn *c);
/* Takes the head off the (non-empty) flush list and returns it. */
ws_conn *ws__dirty_pop(ws_server *s);
/* CLOSING and DRAINING (an HTTP answer, a close) end by close_timeout. */
void ws__conn_arm_close_timer(ws_conn *c);
/* Our side ends the connection now (a close frame, a failure, an HTTP
 * answer): idle counts from here, then the close timer is armed. */
void ws__conn_start_closing(ws_conn *c);
/* Recomputes the connection's deadline from its state and timestamps. */
void ws__conn_rearm(ws_conn *c);
/* Called by the timer when c's deadline passed. */
void ws__conn_expired(ws_conn *c);
void ws__conn_free(ws_conn *c);
/* Flushes c's queue through the host's send/sendv, unless the last send
 * would block and ws_conn_writable has not been called since (and the
 * queue has not grown to its retry point meanwhile). */
void ws__conn_flush(ws_conn *c);
void ws__conn_retry_now(ws_conn *c);
/* Queues buf (takes a new reference) honouring the queue policy. Returns
 * 0, WS_EQUEUEFULL (dropped or closed by policy), WS_ECLOSED. */
int ws__conn_queue(ws_conn *c, ws__buf *b);
/* As ws__conn_queue, but runs no host callback: WS_EQUEUEFULL leaves the
 * queue policy to ws__conn_queue_full (a fan-out applies it once the
 * message is on every receiver that can take it). Data frames only. */
int ws__conn_try_queue(ws_conn *c, ws__buf *b);
void ws__conn_queue_full(ws_conn *c);
/* Queues buf (takes a new reference) past the queue policy: the frames and
 * HTTP answers a connection's own progress depends on (101, refusal, ping,
 * close). On an empty queue the write deadline's base moves to now (it
 * counts from the oldest unsent byte). Returns 0 or WS_ENOMEM. */
int ws__conn_push(ws_conn *c, ws__buf *b);
/* ws__conn_push of a buffer just built: takes the caller's reference,
 * queued or not. NULL (building it failed) is WS_ENOMEM. */
int ws__conn_push_new(ws_conn *c, ws__buf *b);
/* How far past max_queued those take an open connection's queue at most:
 * one close frame (127 bytes) and one ping (7; conn.c send_ping). (The 101
 * and HTTP answers are pushed before it opens, on an empty queue.)
 * max_queued is kept at least this far below SIZE_MAX. */
#define WS__QUEUE_SLACK 256
/* Whether c takes frames: WS_OK when open, WS_ESTATE before its 101 (from
 * on_upgrade or on_http), WS_ECLOSED once closing. */
int ws__conn_sendable(const ws_conn *c);
/* An action a peer could send: valid UTF-8, at most WS_MAX_ACTION bytes. */
int ws__action_ok(const char *action);
/* Counts a close code into the stats. */
void ws__stat_close(ws_server *s, int code);

/* ---- upgrade.c: the HTTP side of a connection -------------------------- */
/* Feeds bytes while in WS__HANDSHAKE. Returns bytes consumed (the rest
 * belongs to the WebSocket stream) or a negative error when the connection
 * was refused/closed. */
long ws__upgrade_feed(ws_conn *c, const uint8_t *p, size_t n);
/* The handshake deadline passed: a 408 to a request begun, else a close. */
void ws__upgrade_expired(ws_conn *c);

/* ---- frame.c ---------------------------------------------------------- */
/* Feeds WebSocket bytes. Returns when all bytes are consumed or the
 * connection stopped reading. */
void ws__frame_feed(ws_conn *c, const uint8_t *p, size_t n);
void ws__rx_release(ws_server *s, ws__rx *rx);
void ws__rx_pool_free(ws_server *s);
/* prepared.c */
void ws__prepared_free_all(ws_server *s);
/* 1 if a close code may appear on the wire (RFC 6455 7.4, IANA). */
int ws__close_code_valid(int code);

/* ---- outq.c ----------------------------------------------------------- */
/* Bytes of a server frame's header for a payload of len bytes. */
size_t ws__frame_header_len(size_t len);
/* A frame with room for len payload bytes; header written, payload not. */
ws__buf *ws__buf_frame(ws_server *s, int opcode, size_t len, uint8_t **payload);
ws__buf *ws__buf_frame_copy(ws_server *s, int opcode, const void *p,
                            size_t len);
/* A raw byte buffer (HTTP responses). */
ws__buf *ws__buf_raw(ws_server *s, const void *p, size_t len);
void ws__buf_unref(ws_server *s, ws__buf *b);
int ws__outq_push_any(ws_server *s, ws__outq *q, ws__buf *b);
/* Queues b (one more reference). Returns WS_OK or WS_ENOMEM. A data frame
 * on a queue with room is the usual case (every reply): it only goes to
 * the tail, inline; the rest (control frames, growth) is outq.c's. */
static inline int ws__outq_push(ws_server *s, ws__outq *q, ws__buf *b) {
  if (b->is_ctrl || q->count == q->cap) /* cap 0: no slots yet */
    return ws__outq_push_any(s, q, b);
  b->refs++;
  q->bytes += b->len;
  q->slots[(q->head + q->count++) & (q->cap - 1)] = b;
  return WS_OK;
}
/* Drops everything but a partially sent head. */
void ws__outq_truncate(ws_server *s, ws__outq *q);
void ws__outq_clear(ws_server *s, ws__outq *q);
/* Writes as much as the host takes. Returns bytes written (>= 0, at most
 * LONG_MAX) or a negative value when the host's send failed. */
long ws__outq_flush(ws_conn *c);

/* ---- timer.c: min-heap on conn->deadline ------------------------------ */
int ws__timer_set(ws_server *s, ws_conn *c, uint64_t when);
/* Room for one more entry, so that the next ws__timer_set of a connection
 * not in the heap cannot fail. Returns WS_OK or WS_ENOMEM. */
int ws__timer_reserve(ws_server *s);
void ws__timer_clear(ws_server *s, ws_conn *c);
/* Fires the expired deadlines. */
void ws__timer_run(ws_server *s);
/* ms to the earliest deadline (0: due), or -1 when none is armed. */
int ws__timer_next(const ws_server *s);

/* ---- envelope.c ------------------------------------------------------- */
/* A complete message arrived: parse, route, reply errors. */
void ws__envelope_dispatch(ws_conn *c, int opcode, const uint8_t *p,
                           size_t len);
/* Builds the frame for {"action":action,"data":json} (json NULL: no data)
 * with one allocation. NULL on ENOMEM. */
ws__buf *ws__envelope_frame(ws_server *s, const char *action,
                            const char *json, size_t json_len);
/* The length of that frame, header included, told without reading json:
 * what ws__envelope_frame's buffer holds (its ws__buf.len). */
size_t ws__envelope_frame_len(const char *action, int has_data,
                              size_t json_len);
/* Serialises data (cJSON) and frames it. *err gets WS_ENOMEM/WS_EINVAL. */
ws__buf *ws__envelope_frame_cjson(ws_server *s, const char *action,
                                  const struct cJSON *data, int *err);
/* Replies {"action":"error","data":{"code":code,"message":...}} to the
 * sender, or closes it when bad_message_policy says so. detail (may be NULL)
 * is appended to the message (e.g. the unknown action's name). */
void ws__envelope_error(ws_conn *c, const char *code, const char *detail);
/* Validates json text then frames it; *err gets WS_EJSON/WS_ENOMEM. */
ws__buf *ws__envelope_frame_json(ws_server *s, const char *action,
                                 const char *json, size_t len, int *err);

/* ---- registry.c ------------------------------------------------------- */
/* Checks c's device id against the duplicate policy and makes room for it:
 * 0, WS_EEXIST when the policy refuses, WS_ENOMEM. Indexes nothing. */
int ws__registry_reserve_device(ws_conn *c);
/* Indexes c's device id after a successful reserve (nothing in between
 * may run host code); an older open connection with the id is closed
 * with 4000. */
void ws__registry_add_device(ws_conn *c);
/* Removes c from every index: O(its memberships). */
void ws__registry_remove(ws_conn *c);
void ws__registry_free(ws_server *s);
/* The group (kind 'u' user, 'g' group) or NULL. */
ws__group *ws__group_find(const ws_server *s, char kind, const char *name);
/* A user or group name: 1 to 255 bytes. */
int ws__group_name_ok(const char *name);

/* ---- send.c: the one local-delivery path ------------------------------ */
enum ws__target { WS__T_ALL, WS__T_DEVICES, WS__T_USER, WS__T_GROUP };
/* Queues b (caller keeps its reference) on every target; returns the count
 * or WS_ENOMEM. */
int ws__deliver(ws_server *s, ws__buf *b, int kind, const char *name,
                const char *const *ids, size_t n);
/* Whether a target is well formed: a device list with its array, a user
 * or group name as ws__group_name_ok (an unknown device id, NULL entries
 * included, is only counted: ws_stats.unknown_targets). */
int ws__target_ok(int kind, const char *name, const char *const *ids,
                  size_t n);
/* An id a connection could hold: 1 to max_device_id bytes. */
int ws__device_id_ok(const ws_server *s, const char *id);

/* ---- post.c ----------------------------------------------------------- */
int ws__post_init(ws_server *s);
/* Delivers what was posted when it began (loop thread, inside a library
 * frame), stopping after the post that reaches max_deliveries. */
void ws__post_drain(ws_server *s, size_t max_deliveries);
/* A tick's share of a post backlog, in connections queued for. */
#define WS__POST_TICK_DELIVERIES 8192
/* Posts are waiting: the next tick is due now (their posters woke no one). */
int ws__post_pending(ws_server *s);
/* From now on ws_post answers WS_ESHUTDOWN (shutdown, destroy). */
void ws__post_close(ws_server *s);
void ws__post_free(ws_server *s);

/* ---- json_check.c ----------------------------------------------------- */
/* 1 if text[0..len) is exactly one JSON value (surrounding whitespace
 * allowed) in valid UTF-8, nested at most 128 arrays and objects deep
 * counting outer ones around it (1: an envelope's data). No allocation. */
int ws__json_valid(const char *text, size_t len, int outer);

/* One pass over a received text message (already valid UTF-8: frame.c
 * checks text messages as they arrive): validates it as JSON and notes the
 * raw spans of the first "action" and "data" members. */
typedef struct ws__env_scan {
  const char *action; /* raw value span (with quotes if a string) */
  size_t action_len;
  int action_plain;   /* 1: a string without escapes (copy it as is) */
  int action_nul_key; /* 1: its key is "action" only up to a NUL */
  const char *data;
  size_t data_len;
} ws__env_scan;
enum { WS__ENV_OK = 0, WS__ENV_INVALID_JSON, WS__ENV_NOT_OBJECT };
int ws__envelope_scan(const char *text, size_t len, ws__env_scan *out);
/* Decodes the inside of a validated JSON string literal into out (UTF-8).
 * Returns the length, or -1 when it holds a NUL or does not fit in cap.
 * (Validation refuses lone surrogates.) */
long ws__json_unescape(const char *raw, size_t n, char *out, size_t cap);
/* A byte that stands for itself inside a JSON string: not '"', not '\\',
 * not a control character (RFC 8259 section 7). A table (json_check.c):
 * one load per byte where three compares were, in the loops that run
 * over every received action name and every string of a sent text. */
extern const unsigned char ws__json_plain_tab[256];
static inline int ws__json_plain(unsigned char c) {
  return ws__json_plain_tab[c];
}

/* ---- small helpers ---------------------------------------------------- */
#define WS__MIN(a, b) ((a) < (b) ? (a) : (b))

/* A deadline ms after t, saturated: one past the clock's end is never
 * (UINT64_MAX), not a time in the past. */
static inline uint64_t ws__after_ms(uint64_t t, uint64_t ms) {
  return t > UINT64_MAX - ms ? UINT64_MAX : t + ms;
}

#endif /* WS_INTERNAL_H */
