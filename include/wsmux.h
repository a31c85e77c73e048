/*
 * libwsmux - an embeddable, transport-agnostic WebSocket push server.
 *
 * The one public header. Everything a host needs is here; nothing under lib/
 * is installed. It needs C99 or later (or C++11).
 *
 * Model
 * -----
 * The host keeps its own sockets and event loop. For every accepted socket it
 * creates a connection (ws_conn_new) with its own transport pointer, feeds
 * every byte it reads (ws_conn_feed), tells the library when the socket is
 * writable again (ws_conn_writable) after the library asked for it through
 * the want_write callback, and calls ws_server_tick with the current time each
 * time its loop wakes. The library writes through the host's send callback
 * and tells the host to close the socket through the close callback. The
 * library does no I/O, reads no clock, creates no threads and keeps no global
 * state.
 *
 * Extensions: none is negotiated (no permessage-deflate): the 101 never
 * carries Sec-WebSocket-Extensions, and a frame with a reserved bit set is
 * closed with 1002.
 *
 * Threads: one thread drives a server and all its connections. The only
 * functions that may be called from another thread are those whose doc says
 * "Thread-safe".
 *
 * Re-entrancy: any function may be called from inside any callback,
 * including closing other connections and destroying the server. Memory is
 * released only when the outermost library call returns (deferred free).
 * One exception: ws_conn_feed on a connection whose own ws_conn_feed is
 * still running (from a handler of that feed) returns WS_ESTATE; the host
 * feeds bytes in the order it read them, from its loop.
 *
 * NULL handles: every function taking a ws_server, ws_conn, ws_mux, ws_msg,
 * ws_request or ws_prepared accepts NULL: accessors return NULL or 0,
 * functions returning an error code return WS_EINVAL, void ones do
 * nothing.
 *
 * Callback return values: only handlers' (ws_handler_fn), check_origin's,
 * on_upgrade's and select_subprotocol's are read; the int returned by the
 * other callbacks (want_write, close, on_open, on_close, on_http,
 * on_shutdown, wake) is ignored and reserved: return 0.
 *
 * Lifecycle rules:
 *   - if a call fails, no callback fires for what it would have created;
 *   - on_close (application) is followed by close (transport); after the
 *     transport close callback returns the ws_conn handle is gone;
 *   - data a handler receives is borrowed until it returns;
 *   - send, broadcast and publish functions copy what they are given.
 *
 * JSON: messages are {"action": "...", "data": <any JSON>} on cJSON.
 *
 * Memory: the library's own allocations go through the allocator in
 * ws_config. Two kinds come from the libraries it stands on instead: cJSON
 * allocates JSON trees (the items a handler receives or passes to send) and
 * the text it prints from a tree (freed before the call returns) with its
 * process-wide hooks, which the library never changes; wslay allocates its
 * frame parsers (about 4 KiB each) with malloc: a connection holds one only
 * while it is inside a frame, and a server keeps at most 64 for reuse.
 * The server's own tables (the device index, the deadline heap) double as
 * connections arrive and halve as they leave, so a crowd that came and
 * went leaves no peak behind. The user and group index (uthash) is the
 * exception: its bucket array (16 bytes per 5 to 10 names) stays at the
 * most names there have been while any remains, and goes with the last.
 */
#ifndef WSMUX_H
#define WSMUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* ssize_t */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(WS_STATIC_BUILD)
#define WS_EXTERN __attribute__((visibility("default")))
#else
#define WS_EXTERN
#endif

#define WS_VERSION_MAJOR 0
#define WS_VERSION_MINOR 1
#define WS_VERSION_PATCH 0
#define WS_VERSION "0.1.0"
/* (major << 16) | (minor << 8) | patch */
#define WS_VERSION_NUM \
  ((WS_VERSION_MAJOR << 16) | (WS_VERSION_MINOR << 8) | WS_VERSION_PATCH)

/* Returns the version string of the linked library ("0.1.0"). Thread-safe. */
WS_EXTERN const char *ws_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* One table: code, value, message. Every negative return in this API is one
 * of these. WS_ECALLBACK and WS_EPROTO are reserved: no function returns
 * them (the peer's protocol errors end in a close code or HTTP status, not
 * in a return value). */
#define WS_ERRNO_MAP(X)                                                        \
  X(INVAL, -1, "invalid argument")                                             \
  X(NOMEM, -2, "out of memory")                                                \
  X(STATE, -3, "not allowed in the connection's current state")               \
  X(CLOSED, -4, "connection is closing or closed")                            \
  X(EXIST, -5, "already registered")                                           \
  X(NOENT, -6, "no such entry")                                                \
  X(TOOBIG, -7, "message exceeds the configured limit")                       \
  X(CALLBACK, -8, "a host callback failed")                /* reserved */     \
  X(PROTO, -9, "peer violated the protocol")               /* reserved */     \
  X(LIMIT, -10, "a configured limit was reached")                             \
  X(SHUTDOWN, -11, "server is shutting down")                                  \
  X(JSON, -12, "invalid JSON")                                                 \
  X(QUEUEFULL, -13, "connection's send queue is full")

typedef enum ws_err {
  WS_OK = 0,
#define WS_ERR_ENUM_(name, value, msg) WS_E##name = (value),
  WS_ERRNO_MAP(WS_ERR_ENUM_)
#undef WS_ERR_ENUM_
} ws_err;

/* Static English message for an error code; "success" for WS_OK (0),
 * "unknown error" for any other code not in the table. Never NULL.
 * Thread-safe. */
WS_EXTERN const char *ws_strerror(int err);
/* Static name of an error code ("WS_EINVAL"; "WS_OK" for 0); "WS_UNKNOWN"
 * otherwise. Thread-safe. */
WS_EXTERN const char *ws_err_name(int err);

/* ------------------------------------------------------------------------ */
/* Protocol constants                                                       */
/* ------------------------------------------------------------------------ */

/* RFC 6455 close codes the library sends, plus its own (4000-4099). */
enum ws_close_code {
  WS_CLOSE_NORMAL = 1000,
  WS_CLOSE_GOING_AWAY = 1001,     /* server shutdown */
  WS_CLOSE_PROTOCOL = 1002,       /* framing rule broken */
  WS_CLOSE_UNSUPPORTED = 1003,    /* binary message and no binary handler */
  WS_CLOSE_NO_STATUS = 1005,      /* reported to on_close only, never sent */
  WS_CLOSE_ABNORMAL = 1006,       /* reported to on_close only, never sent */
  WS_CLOSE_INVALID_DATA = 1007,   /* invalid UTF-8 in a text message */
  WS_CLOSE_POLICY = 1008,         /* bad message when bad_message=CLOSE */
  WS_CLOSE_TOO_BIG = 1009,        /* message larger than max_message */
  WS_CLOSE_INTERNAL = 1011,       /* a handler returned an error */
  WS_CLOSE_REPLACED = 4000,       /* a newer connection took this device id */
  WS_CLOSE_SLOW_CONSUMER = 4001,  /* send queue passed max_queued */
  WS_CLOSE_TIMEOUT = 4002         /* read idle or write progress deadline */
};

/* Actions are at most WS_MAX_ACTION bytes of UTF-8: a longer one received
 * is "bad_action"; one sent, or registered with ws_mux_handle, WS_EINVAL.
 * The empty action "" is a valid one (unlike user and group names, which
 * need at least 1 byte): it can be sent, posted and registered, and a
 * received {"action":""} goes to its handler, else to unknown_action. */
#define WS_MAX_ACTION 255

/* Bad messages are answered (bad_message_policy REPLY) with
 *   {"action":"error","data":{"code":CODE,"message":"..."}}
 * where CODE is one of these strings:
 *   "invalid_json"    the text message is not JSON (RFC 8259; a string
 *                     escape that is a lone UTF-16 surrogate counts as
 *                     invalid, as in cJSON, and so does it in the _json
 *                     send variants' ready text: WS_EJSON); so is
 *                     nesting more than 128 arrays and objects deep,
 *                     the envelope object counted
 *   "not_object"      the JSON is not an object
 *   "bad_action"      "action" is missing, not a string, longer than
 *                     WS_MAX_ACTION bytes or holds a NUL (\u0000) (with
 *                     two "action" members the first counts, as in cJSON;
 *                     cJSON reads a key up to a NUL, so "action\u0000" is
 *                     one, and the first: bad_action, whatever follows;
 *                     "data" members are found the same way; keys match
 *                     case-sensitively: a host reading msg->text with
 *                     cJSON finds the same members with
 *                     cJSON_GetObjectItemCaseSensitive, while
 *                     cJSON_GetObjectItem would take "Action" for one)
 *   "unknown_action"  no handler and no fallback; the message names it */

enum ws_log_level {
  WS_LOG_ERROR = 0,
  WS_LOG_WARN = 1,
  WS_LOG_INFO = 2,
  WS_LOG_DEBUG = 3
};

/* What happens when a connection's queued bytes would pass max_queued, or
 * more than 1024 control frames (pongs to a peer that pings without
 * reading) wait unsent. */
enum ws_queue_policy {
  WS_QUEUE_CLOSE = 0, /* default: drop the queue, close with 4001 */
  WS_QUEUE_DROP = 1   /* drop the new message for this receiver, count it */
};

/* A second live connection with a device id already registered. Under
 * either replacing policy the older is closed only for a newer that opens:
 * one that a callback ends on the way (on_log's "reconnected" line comes
 * between the two) leaves the older its id. */
enum ws_duplicate_policy {
  WS_DUP_REPLACE = 0, /* default: newer wins, older closed with 4000 */
  WS_DUP_REFUSE = 1,  /* newer refused with 409 (unless the older one is
                         already closing: then the newer takes its place) */
  /* Newer wins only if bound to the same user as the older (ws_conn_set_user
   * in on_upgrade; two connections bound to none count as the same), else
   * 409, also while the older is closing: a client cannot take over another
   * user's live device by sending its id. (An id no connection holds is
   * anyone's to claim, and the claimant's keeps the owner's out with 409:
   * check in on_upgrade that the id belongs to the user.) */
  WS_DUP_REPLACE_SAME_USER = 2
};

/* An invalid JSON message, or an unknown action with no fallback. */
enum ws_bad_message_policy {
  WS_BADMSG_REPLY = 0, /* default: reply {"action":"error",...}, stay open */
  WS_BADMSG_CLOSE = 1  /* close: 1007 for invalid JSON, 1008 otherwise */
};

/* ------------------------------------------------------------------------ */
/* Handles                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct ws_server ws_server;   /* one per listening endpoint */
typedef struct ws_conn ws_conn;       /* one per accepted socket */
typedef struct ws_mux ws_mux;         /* action -> handler table */
typedef struct ws_request ws_request; /* the HTTP upgrade request's facts */
struct cJSON; /* from <cjson/cJSON.h>; the header does not need it */

/* A received message, borrowed by a handler until it returns. The "data"
 * member is reached with ws_msg_data (a cJSON tree, built on first use) or
 * ws_msg_data_json (its raw text, no parsing at all). */
typedef struct ws_msg {
  const char *action; /* NUL-terminated; NULL for binary messages */
  const char *text;   /* whole payload (not NUL-terminated) */
  size_t len;         /* payload length in bytes */
  int binary;         /* 1 for a binary message */
  void *internal_;    /* library use */
} ws_msg;

/* A handler. Returns 0 on success (a positive value counts as 0, so a
 * send's count can be returned as is); a negative value closes the connection
 * with 1011 and is logged, except WS_EQUEUEFULL: a send's answer handed on
 * (`return ws_conn_send(c, ...)`), for which the queue policy has already
 * applied (WS_QUEUE_DROP drops that one message and keeps the connection).
 * Once the connection is closing, the value changes nothing. A mux is a
 * handler too: see ws_mux_serve. */
typedef int (*ws_handler_fn)(ws_conn *c, const ws_msg *msg, void *user_data);

/* A header as name/value slices (not NUL-terminated). */
typedef struct ws_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} ws_header;

typedef struct ws_iovec {
  const void *base;
  size_t len;
} ws_iovec;

/* Allocator: all three or none. user_data is passed back. */
typedef struct ws_allocator {
  void *(*malloc)(size_t size, void *user_data);
  void *(*realloc)(void *ptr, size_t size, void *user_data);
  void (*free)(void *ptr, void *user_data);
  void *user_data;
} ws_allocator;

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

typedef struct ws_config {
  size_t struct_size_; /* set by ws_config_init; do not change */

  /* Allocator for every library allocation. Default: libc. With ws_post
   * in use it must be thread-safe: posting threads allocate a message and
   * the loop thread frees it (or the reverse, for a post refused). */
  ws_allocator alloc;
  /* Server user data, returned by ws_server_user_data() and passed as the
   * user_data argument of on_open, on_close, on_upgrade, on_http, on_log,
   * check_origin, select_subprotocol, on_shutdown and wake. Default NULL.
   * A loop adapter's wake needs its own struct here (wsa_uv_wake, ...):
   * embed that struct in your application's and get back to yours from
   * the pointer (it is the first member, or use offsetof). */
  void *user_data;

  /* --- transport callbacks (the host's socket) ------------------------- */
  /* Required. Write at most len bytes. Return the number written (0 means
   * "would block"), or a negative value to fail the connection (it is then
   * closed without a close frame, on_close gets 1006; a count larger than
   * len is a host bug and fails it the same way). data is borrowed for
   * the call: copy what you keep (after a short write the rest is offered
   * again, not necessarily at the same address: a run of small frames is
   * copied into one buffer, at most 2 KiB, so it takes one call). After a
   * short write (0 included) the library calls send or sendv for that
   * connection again when the host calls ws_conn_writable, when its
   * queue grows past the next of 1/2, 3/4, 7/8, ... of max_queued (or its
   * unsent control frames past the same points of their bound, 1024), or
   * at a shutdown's deadline, before what is left is cut; not for every
   * message: the socket was full, and each attempt would cost a failing
   * system call, while a peer that keeps reading is still written to
   * before the queue policy judges it. */
  ssize_t (*send)(ws_conn *c, void *transport, const void *data, size_t len);
  /* Optional. Like send, over several buffers; used when more than one
   * buffer is queued and they are not a small run (see send). */
  ssize_t (*sendv)(ws_conn *c, void *transport, const ws_iovec *iov,
                   int iovcnt);
  /* Optional. want = 1: the connection has output that send could not take,
   * arm write interest and call ws_conn_writable when writable. want = 0:
   * the queue drained, disarm. Return value is ignored (reserved). A host
   * without it asks ws_conn_want_write instead. want_write(1) is not
   * repeated while it stands: a host that could not arm write interest
   * when it came (see ws_conn_upgrade_answer) asks ws_conn_want_write once
   * it can. */
  int (*want_write)(ws_conn *c, void *transport, int want);
  /* Required. Close the socket. After it returns the handle is gone. The
   * return value is ignored (reserved). Exception: during
   * ws_conn_upgrade_answer the host's HTTP server still owns the socket and
   * answers a refusal on it: the callback then only forgets the handle
   * (examples/mhd.c closes only sockets it adopted after its 101). */
  int (*close)(ws_conn *c, void *transport);

  /* --- application ----------------------------------------------------- */
  /* Handler for every message: a function, or ws_mux_serve with a mux as
   * handler_data. Default NULL: every text message gets unknown_action.
   * Text reaches it only as a valid envelope ({"action": string, ...});
   * other text is answered by bad_message_policy without it. Binary
   * messages reach it as they are (msg->binary): raw payloads go
   * there. */
  ws_handler_fn handler;
  void *handler_data;
  /* Optional. After the 101 was queued; e.g. bind a user. To refuse a
   * client, use on_upgrade (this one cannot: its return is ignored). */
  int (*on_open)(ws_conn *c, void *user_data);
  /* Optional. The connection ended. code is the WebSocket connection close
   * code of RFC 6455 7.1.5: the code in the peer's close frame, also when
   * the server closed first (a peer usually echoes it, but may answer
   * 1000: a replaced connection can be told by ws_server_find_device(s,
   * id) != NULL, another connection holding its id now; c itself is
   * never found here, having ended, nor is a newer one that is closing
   * in turn: a host that must know for sure tracks ids from on_open, as
   * examples/chat.c does); 1005 when the peer's close had no code; the
   * code the server sent, or queued, when no close frame came back
   * (failure, close timeout, the shutdown's drain deadline; a frame still
   * queued behind a blocked socket at the close timeout counts too); 4002
   * for a write deadline (the socket took nothing, so no close frame could
   * be sent); 1006 when no other close frame was exchanged, and for every
   * connection ws_server_free ends, whatever was exchanged. The closes_*
   * counters count the same code. reason is the peer's when code is its
   * close frame's, whichever deadline ended the close handshake (possibly
   * empty; a 1006 carries ours), else the library's own short description
   * ("aborted", "server destroyed", "write timeout", "close handshake
   * timeout", "shutdown deadline", ...) or empty: text to log, not to
   * parse; NUL-terminated, borrowed. The
   * device id, user and request are still readable here; sending to it is
   * no longer possible. Fires only for connections whose upgrade was
   * accepted. */
  int (*on_close)(ws_conn *c, int code, const char *reason, void *user_data);
  /* Optional. Decide on an upgrade after the library's own checks passed,
   * but for three that come after it: a duplicate device id under
   * WS_DUP_REFUSE or WS_DUP_REPLACE_SAME_USER (409), running out of
   * memory (503) and max_connections, checked again for connections that
   * this upgrade's callbacks opened meanwhile (503), may still refuse
   * the connection after on_upgrade returned 0. It then ends without
   * on_open or on_close (what on_upgrade bound with ws_conn_set_user or
   * ws_conn_join is undone by the library): keep the host's own
   * bookkeeping (sessions, metrics) for on_open and on_close.
   * Return 0 to accept, or an HTTP status in 400..599 to refuse (any other
   * value: 500); *reason may be set to a one-line reason: it may point into
   * req (it is copied into the response), except under
   * ws_conn_upgrade_answer, which hands it back to the host after req is
   * gone: there it must be static or long-lived. May call
   * ws_conn_set_user, ws_conn_join, ws_conn_set_user_data, and
   * ws_conn_add_header for the response (a refusal's WWW-Authenticate, a
   * 101's Set-Cookie).
   * req is the whole request, headers included, borrowed for the call;
   * ws_conn_request(c) and ws_conn_device_id(c) are already what the
   * connection keeps for its life (without headers when keep_headers = 0),
   * so pointers taken from them here stay valid. */
  int (*on_upgrade)(ws_conn *c, const ws_request *req, const char **reason,
                    void *user_data);
  /* Optional. A request that is not a WebSocket upgrade for the configured
   * path (e.g. GET / for a page). Answer with ws_conn_http_respond (headers
   * of your own first, with ws_conn_add_header); if the
   * callback returns without answering, the library answers as it does
   * without one: 426 (with Upgrade: websocket) for a non-upgrade request on
   * the path, 404 for other paths. Not called for a request the library
   * cannot read: malformed (400), head too large (431, 414 for the request
   * line), a path with a bad percent-escape (400), a request with two
   * Host headers, an invalid one, or (HTTP/1.1) none (400, RFC 9112
   * 3.2), a request whose content has no known length (400, RFC 9112 6.1
   * and 6.3: a Content-Length that is no number or two that differ, a
   * Transfer-Encoding whose last coding is not chunked or any in
   * HTTP/1.0). The library never reads a request's content: every answer
   * closes the connection. Called the same way for a request the host
   * parsed (ws_conn_upgrade), but not by ws_conn_upgrade_answer. */
  int (*on_http)(ws_conn *c, const ws_request *req, void *user_data);
  /* Optional. Library log lines; the library never prints. msg is
   * NUL-terminated, borrowed for the call. s is NULL only for the line
   * ws_server_new logs when it refuses this config. */
  void (*on_log)(ws_server *s, int level, const char *msg, void *user_data);
  /* Optional. Graceful shutdown finished: no connection is left. Fires
   * once per server, even if more sockets are accepted (and refused with
   * 503) afterwards. */
  int (*on_shutdown)(ws_server *s, void *user_data);

  /* --- handshake ------------------------------------------------------- */
  const char *path;          /* upgrade path; default "/ws"; NULL = any.
                                Compared with the target's path, also in
                                absolute form (GET http://host/ws?...;
                                "http://host" has the path "/"). A target
                                that is neither form (no leading '/': "ws",
                                "%2Fws", "?q") is a 400, as are userinfo
                                ("http://u@host/ws") and "*" but for
                                OPTIONS, and an upgrade whose Host is no
                                host[:port] or that announces content
                                (Transfer-Encoding, Content-Length not 0) */
  const char *device_param;  /* query parameter; default "device_id" */
  int device_required;       /* default 1: 400 "missing device_id" */
  int duplicate_policy;      /* enum ws_duplicate_policy */
  /* Origin: default (no list, no callback) is gorilla's: no Origin header is
   * allowed; otherwise its host[:port] must equal Host, case-insensitively
   * (an absolute-form target's host[:port] instead, which a server uses in
   * place of Host: RFC 9112 3.2.2). With a list, an Origin equal
   * (case-insensitively) to an entry is also allowed. With a callback, it
   * alone decides (return 1 to allow; origin is NULL when the request has
   * none). Two Origin headers are refused (403) in every mode, before the
   * callback. */
  const char *const *allowed_origins;
  size_t allowed_origins_count;
  int (*check_origin)(const ws_request *req, const char *origin,
                      void *user_data);
  /* Subprotocols in preference order; the first one the client offered is
   * chosen (names compare case-sensitively). select_subprotocol, if set,
   * decides instead: offered is the client's Sec-WebSocket-Protocol value
   * (several such lines joined with ", ", one list as RFC 6455 11.3.4 has
   * it; borrowed, for the call); return one of its names (the library copies
   * it, so a pointer into offered is fine) or NULL for none. A name the
   * client did not offer, or one that is not a token, refuses the upgrade
   * with 500. When none matches, the 101 carries no Sec-WebSocket-Protocol
   * (RFC 6455 4.2.2: the client then decides whether to fail). Every entry
   * must be a non-empty token (RFC 9110 5.6.2; RFC 6455 4.1), else
   * ws_server_new fails (WS_EINVAL). */
  const char *const *subprotocols;
  size_t subprotocols_count;
  const char *(*select_subprotocol)(const ws_request *req,
                                    const char *offered, void *user_data);
  /* Keep the request headers for the connection's life, for handlers
   * (ws_request_header on ws_conn_request). Default 0: on_upgrade and
   * on_http see every header; after that only the path, query parameters
   * and device id are kept. 1 costs each connection its request's header
   * bytes (a browser's are 0.5-1 KiB, more than the rest of an idle
   * connection's library heap, about 300 bytes). The query parameters are
   * kept either way, each with 8 bytes of offsets (at most
   * WS_MAX_QUERY_PARAMS of them). */
  int keep_headers;

  /* --- limits (each has a default; none means "unlimited") ----------- */
  /* Every limit is at least 1 (0 is refused with WS_EINVAL). */
  size_t max_handshake;     /* request bytes; default 8192 (431 past it,
                               414 when the request line alone is);
                               64 .. 2^31 - 1 */
  size_t max_headers;       /* header count; default 64 (431 past it);
                               values over 256 count as 256 */
  size_t max_device_id;     /* bytes; default 128 (400 past it); the id
                               must decode to UTF-8 without control
                               bytes (400 otherwise) */
  size_t max_message;       /* assembled message bytes; default 65536;
                               at most 2^31 - 1 */
  size_t max_queued;        /* queued output bytes per conn; default 1 MiB;
                               SIZE_MAX for no limit (kept 256 below it).
                               A pong larger than it (a cap under 127
                               bytes, a long ping) counts as the cap: it
                               needs an empty queue, else queue_policy */
  size_t max_connections;   /* open connections; default 100000 (503);
                               an upgrade past its checks holds its place
                               until it opens (a callback on the way, such
                               as on_log's "reconnected" line, that
                               upgrades another finds it taken) */
  int queue_policy;         /* enum ws_queue_policy */
  int bad_message_policy;   /* enum ws_bad_message_policy */

  /* --- deadlines, in milliseconds (0 disables one) ------------------- */
  /* Default 10000. A request begun and not complete by then is answered
   * 408 (counted as WS_REFUSE_OTHER) and closed; a socket that sent no
   * byte is closed unanswered, and so is one whose complete request a
   * callback of its own (on_upgrade, on_http...) is still processing when
   * a tick from there passes the deadline. A request has one answer:
   * one that a callback of a refusal (its on_log line) brought first (a
   * tick's 408, a 101 from ws_conn_upgrade) stands instead of it. */
  uint32_t handshake_timeout_ms;
  uint32_t idle_timeout_ms;      /* read idle; default 60000 */
  uint32_t ping_interval_ms;     /* server ping after this quiet; 30000 */
  uint32_t write_timeout_ms;     /* no write progress; default 60000 */
  /* Close handshake; default 5000. 0: none of its own, and a closing
   * connection still ends by the idle deadline (counted from our close or
   * the peer's last byte since) and the write deadline. */
  uint32_t close_timeout_ms;

  /* --- cross-thread posting (ws_post) -------------------------------- */
  /* Optional. Called from the posting thread when the loop thread should
   * call ws_server_tick (e.g. write an eventfd, uv_async_send): only when
   * a post finds no other waiting (edge-triggered; posts left for a later
   * tick are announced by ws_server_tick returning 0). Its return value is
   * ignored (reserved): a wake that fails leaves the posts to the loop's
   * next wake-up for any other reason. It runs
   * inside ws_post, outside the library's deferred-free frames (ws_post
   * may come from any thread): it may call only the thread-safe
   * functions (ws_server_free and ws_server_tick are not). */
  int (*wake)(ws_server *s, void *user_data);
  /* Heap bytes held by posts not yet delivered (each: its frame plus
   * about 50 bytes and its target name); default 16 MiB. Past it ws_post
   * answers WS_ELIMIT (producers that outrun the loop thread are told,
   * rather than growing the heap without bound). */
  size_t max_posted;
} ws_config;

/* Fills *cfg with the defaults documented above. Always call it first, then
 * set fields: new fields may be added at the end in later versions (only
 * the struct_size bytes a program was built with are written). A size
 * smaller than any version's struct is only zeroed, and ws_server_new
 * refuses it. Thread-safe. */
WS_EXTERN void ws_config_defaults(ws_config *cfg, size_t struct_size);
#define ws_config_init(cfg) ws_config_defaults((cfg), sizeof(*(cfg)))

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

/* Creates a server from *cfg (copied; strings and arrays it points to must
 * outlive the server). On success stores the handle in *out and returns 0.
 * Errors: WS_ENOMEM, and WS_EINVAL for: cfg or out NULL, cfg not made by
 * ws_config_init, send or close missing, a partial allocator, a limit out
 * of its documented range (or 0), a bad policy value, a path not starting
 * with '/', device_required without device_param (or with ""), a nonzero
 * *_count with a NULL array. With cfg->on_log set, a refused config is
 * also logged (WS_LOG_ERROR, s NULL) naming what is wrong; one not made by
 * ws_config_init only when zeroed (memset): a struct never initialised
 * has no on_log to trust. */
WS_EXTERN int ws_server_new(const ws_config *cfg, ws_server **out);

/* Destroys the server: every open connection gets on_close (1006) and the
 * transport close callback, then memory is freed. Nothing more is written:
 * peers see the socket close without a close frame, and output still
 * queued (a 101 included) is dropped; ws_server_shutdown first ends
 * connections with 1001 and drains them. Posts not yet delivered are
 * dropped (freed, not sent: ws_server_shutdown delivers them). NULL is
 * accepted. May be called from a callback: the free is deferred. From the
 * callbacks it runs (on_close, close), nothing more is read, written or
 * opened: ws_conn_feed, ws_conn_writable and the upgrade of a new
 * connection answer WS_ECLOSED. */
WS_EXTERN void ws_server_free(ws_server *s);

/* Tells the library the current time (monotonic milliseconds, any origin:
 * the first tick's time is the library's zero, and what happened before it,
 * connections made included, counts from there), fires expired deadlines and
 * posted messages. Call it each time the loop wakes, before feeding bytes:
 * deadlines are measured from the last time given. Returns the milliseconds
 * until the next deadline (0 if one is due now, or if posted messages still
 * wait: a tick delivers what was posted when it began, stopping after the
 * post that makes its fan-out reach 8192 connections so that the loop gets
 * back to its sockets), or -1 when none is pending: usable as a poll(2)
 * timeout (s NULL: -1 as well). Cost is O(expired deadlines) plus the posts
 * it delivers. Callbacks run inside (on_close, on_shutdown when a drain's
 * deadline passes): check the loop's own exit condition after the tick.
 * The tick in which a graceful shutdown ends (on_shutdown ran in it)
 * returns 0, so that a loop which waits on the answer before looking at
 * that condition wakes at once; ticks after it return -1 once nothing is
 * left. */
WS_EXTERN int ws_server_tick(ws_server *s, uint64_t now_ms);

/* Graceful shutdown: stops new upgrades (503), sends 1001 to every open
 * connection, lets queued data drain for up to drain_ms, then closes what is
 * left (on_close: the code each one was sent, 1001 or the host's own from
 * an earlier ws_conn_close). A connection still in its handshake (its
 * request not yet answered) ends at once, without an HTTP answer: the
 * host's close callback, no on_close (it never opened); an upgrade whose
 * own on_upgrade calls this ends the same way. The 503 is for the
 * connections the host creates after this call. At the deadline the tick
 * closes the connections there are then; one the host creates from a
 * callback of that pass (accepting in its close callback) is left to the
 * next tick, which the deadline's tick asks for at once (it returns 0).
 * on_shutdown fires when no connection remains (possibly before this
 * returns). drain_ms counts from the last time given to ws_server_tick, as
 * every deadline does: a loop woken by a signal after a long idle wait
 * ticks first, else the drain may be over at once. Messages ws_post
 * accepted before this call are delivered by it, ahead of the 1001; from
 * then on ws_post answers WS_ESHUTDOWN. Called from a callback that a
 * post's delivery ran (on_log of a full queue), the 1001s wait until that
 * delivery and the other accepted posts are done, so none misses them.
 * Errors:
 * WS_EINVAL, WS_ESHUTDOWN if already shutting down or being destroyed
 * (ws_server_free called from a callback). */
WS_EXTERN int ws_server_shutdown(ws_server *s, uint32_t drain_ms);

/* The server's user data from the config. */
WS_EXTERN void *ws_server_user_data(const ws_server *s);

/* Number of open WebSocket connections (handshake completed), including
 * those in their close handshake: they hold a socket and count against
 * max_connections until they end (a connection ending is no longer
 * counted in its own on_close and transport close callbacks). */
WS_EXTERN size_t ws_server_conn_count(const ws_server *s);

/* Counters. Read with ws_server_stats(s, &st, sizeof st). */
enum ws_refusal {
  /* Counted by status, whoever refused: a 403 or 409 from on_upgrade counts
   * as FORBIDDEN or CONFLICT, a 401 from it as OTHER. */
  WS_REFUSE_BAD_REQUEST = 0, /* 400: malformed or missing required field */
  WS_REFUSE_FORBIDDEN,       /* 403: origin, or on_upgrade */
  WS_REFUSE_NOT_FOUND,       /* 404: path */
  WS_REFUSE_CONFLICT,        /* 409: duplicate device id (WS_DUP_REFUSE,
                                WS_DUP_REPLACE_SAME_USER) */
  WS_REFUSE_VERSION,         /* 426: version or not an upgrade */
  WS_REFUSE_TOO_LARGE,       /* 431: head too large / too many headers;
                                414: request line too long */
  WS_REFUSE_UNAVAILABLE,     /* 503: connection cap or shutting down */
  WS_REFUSE_OTHER,           /* any other status (on_upgrade's, a 500, the
                                408 at the handshake deadline) */
  WS_REFUSE_COUNT_
};
typedef struct ws_stats {
  uint64_t conns_open;        /* open WebSocket connections (as
                                 ws_server_conn_count: closing ones too) */
  uint64_t conns_pending;     /* connections not opened and not ended:
                                 in the handshake, or refused (or
                                 answered by on_http) with that answer
                                 still being written */
  uint64_t conns_total;       /* upgrades accepted since start */
  uint64_t refusals[WS_REFUSE_COUNT_];
  uint64_t msgs_in, bytes_in;   /* messages received, bytes fed */
  uint64_t msgs_out, bytes_out; /* messages queued (per receiver; control
                                   frames are not counted, as in msgs_in),
                                   bytes sent (HTTP answers included) */
  uint64_t closes_1000, closes_1001, closes_1002, closes_1003, closes_1006,
      closes_1007, closes_1008, closes_1009, closes_1011, closes_4000,
      closes_4001, closes_4002, closes_other;
  uint64_t drops_queue_full;   /* frames a full queue refused, per
                                  receiver (pongs too; not the server's
                                  own pings, which a full queue skips
                                  without a policy): each time
                                  queue_policy applied, and in a fan-out
                                  a receiver found full but closed by a
                                  callback of the same fan-out (on_log)
                                  before its policy applied: it misses
                                  the message too */
  uint64_t bad_messages;       /* bad messages received (answered with an
                                  error reply, or closed, per policy;
                                  counted also when the reply found the
                                  queue full) */
  uint64_t broadcasts;         /* broadcast/publish/push calls (and
                                  ws_send_devices, ws_send_device calls
                                  and delivered ws_post messages) that
                                  did not fail */
  uint64_t fanout;             /* receivers queued by those calls */
  uint64_t unknown_targets;    /* device ids (NULL entries included;
                                  per entry of a list, so an unknown id
                                  listed twice counts twice), users
                                  and groups not found (with no
                                  open connection: a closing one, as
                                  for ws_server_find_device, or one
                                  still in its handshake is none) */
  uint64_t frames_allocated;   /* message frames built by calls that did
                                  not fail (send, fan-out, prepare, post;
                                  a send refused with WS_EQUEUEFULL or
                                  WS_ETOOBIG counts none) and for the
                                  library's error replies; a fan-out builds
                                  one for all receivers; a post counts when
                                  the loop delivers it (one ws_post
                                  refused, dropped by destroy, or whose
                                  delivery ran out of memory is not) */
} ws_stats;

/* Copies the counters into *out: the first min(size, sizeof(ws_stats))
 * bytes (a program built against an older, shorter ws_stats gets the
 * fields it knows). Returns 0 or WS_EINVAL (s or out NULL). */
WS_EXTERN int ws_server_stats(const ws_server *s, ws_stats *out, size_t size);

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

/* Creates a connection for an accepted socket. transport is the host's own
 * pointer (fd, uv_tcp_t *, TLS session), passed back to callbacks and never
 * looked into. The handshake deadline starts at the time of the last tick
 * (the first one, for a connection made before any tick).
 * Errors: WS_EINVAL, WS_ENOMEM. On error no callback fires; the host closes
 * its socket itself. */
WS_EXTERN int ws_conn_new(ws_server *s, void *transport, ws_conn **out);

/* Feeds bytes read from the socket (borrowed; not kept after return). The
 * library may call send, want_write, handlers and close from inside. Returns
 * 0, or WS_ECLOSED when the connection has ended or the close handshake is
 * done and only output remains (the close callback has fired or will;
 * further bytes are ignored) or the server is being destroyed (from a
 * callback ws_server_free runs: the bytes are not read, nothing opens),
 * WS_EINVAL, WS_ESTATE (called from inside a feed of the same
 * connection). After ws_conn_close (or a shutdown's 1001),
 * bytes are still read until the peer's close frame arrives; the messages
 * among them are discarded, not handed to the handler (RFC 6455 7.1.4: the
 * connection is closing). Never call it again once the close callback has
 * run: the handle is gone. */
WS_EXTERN int ws_conn_feed(ws_conn *c, const void *data, size_t len);

/* The host's socket is writable: flush queued output (after a short write,
 * the call that resumes it: see send). Returns 0, WS_ECLOSED (also while
 * ws_server_free runs: nothing more is written) or WS_EINVAL. */
WS_EXTERN int ws_conn_writable(ws_conn *c);

/* 1 when the connection has queued output, 0 otherwise. */
WS_EXTERN int ws_conn_want_write(const ws_conn *c);

/* Starts the close handshake with code (1000..4999 except reserved ones)
 * and an optional NUL-terminated reason (at most 123 bytes, UTF-8).
 * Queued data is sent first. If the handshake has not completed, the socket
 * is closed without a frame. Errors: WS_EINVAL, WS_ECLOSED (already
 * closing). */
WS_EXTERN int ws_conn_close(ws_conn *c, int code, const char *reason);

/* Closes immediately: no close frame, queued data dropped. on_close gets
 * 1006. Use when the host's socket failed (reset, EOF). NULL accepted. */
WS_EXTERN void ws_conn_abort(ws_conn *c);

/* Upgrade entry point for hosts that parsed the HTTP request themselves.
 * Use instead of feeding the request bytes, right after ws_conn_new. path is
 * the target's raw path ("/ws"; an absolute-form target's part before '?',
 * "http://host/ws", is read as when fed; one of neither form is a 400, as
 * from bytes); query is the raw (still percent-encoded) query string
 * without '?', or NULL. Split the target at its first '?' before the call:
 * a path that still holds the query ("/ws?device_id=a") is a path that
 * matches no configured one, answered 404 like any unknown path. The
 * library runs the same checks and queues the 101 or the refusal. Bytes read
 * after the request are fed with ws_conn_feed. All arguments are borrowed.
 * The parser's limits apply: more than max_headers headers, or a head
 * longer than max_handshake in its shortest wire form, is refused with 431
 * (414 when the request line alone is). A request line the parser would
 * refuse is a 400, as from bytes: a method that is not a token ("GET X",
 * ""), a path or query with a byte no request target holds (a space, a
 * control byte such as CR or LF, a byte over 0x7E, '#'). The method
 * decides as when fed: the answer to HEAD has no content.
 * There is no version argument: the host checks that the request is
 * HTTP/1.1 (RFC 6455 4.1; the byte-fed path answers 400 otherwise) before
 * calling this or ws_conn_upgrade_answer. Header values may keep the
 * whitespace around them (" 13"): it is dropped, as when parsed from bytes.
 * A header the parser would refuse (a name that is not a token, a control
 * byte other than HTAB in a value) is refused with 400, as from bytes.
 * Returns 0 (accepted or refused: refusals close the connection; running
 * out of memory is a 503 refusal), WS_EINVAL (a NULL method or path, NULL
 * headers with a count, or a header whose name or value is NULL with a
 * non-zero length), WS_ESTATE (not a new connection: one already fed
 * bytes of a request, even part of one, is not), WS_ECLOSED (a new one,
 * from a callback ws_server_free runs: nothing opens). A refusal ends the
 * connection as any end does, through the close callback, which runs before
 * this returns when the refusal could be sent at once: after WS_OK, c is
 * valid only if that callback did not run (as after ws_conn_feed). The
 * outcome: on_open has run before the return for a 101; a refusal is
 * counted in ws_stats.refusals and logged at WS_LOG_INFO ("upgrade
 * refused: <status> <reason>"). A host that must answer or record the
 * status itself uses ws_conn_upgrade_answer. */
WS_EXTERN int ws_conn_upgrade(ws_conn *c, const char *method, const char *path,
                              const char *query, const ws_header *headers,
                              size_t header_count);

/* Query parameters a request may carry (each non-empty '&'-separated
 * segment counts); past it the request is refused with 400 "too many query
 * parameters", fed or parsed by the host. An open connection keeps its
 * query for its life, 8 bytes of offsets per parameter besides its bytes:
 * the bound keeps that near max_handshake. */
#define WS_MAX_QUERY_PARAMS 256

/* Length of a Sec-WebSocket-Accept value (base64 of a SHA-1). */
#define WS_ACCEPT_LEN 28

/* Upgrade entry point for hosts whose HTTP server writes the response
 * itself (libmicrohttpd's MHD_create_response_for_upgrade always writes
 * its own "101 Switching Protocols"). Runs the same checks as
 * ws_conn_upgrade, right after ws_conn_new, but queues no HTTP bytes:
 *   - accepted: *status = 101, accept gets the Sec-WebSocket-Accept value
 *     (NUL-terminated), ws_conn_subprotocol(c) is the Sec-WebSocket-Protocol
 *     to send (NULL: none), and the connection is open (on_open fired). The
 *     host sends its 101 with "Upgrade: websocket", "Connection: Upgrade"
 *     and those headers. Output queued meanwhile (by on_open, a
 *     broadcast) waits in the library while the send callback answers 0;
 *     the want_write(1) this causes comes before the socket is the host's
 *     and is not repeated: once its 101 is out and the socket is its own,
 *     the host arms write interest if ws_conn_want_write(c) and calls
 *     ws_conn_writable when writable (one call alone strands the rest when
 *     that write is short). If on_open ended the connection
 *     (ws_conn_abort, ws_server_free), or so did a send or want_write
 *     callback run for the output on_open queued (it is offered before
 *     the call returns), the handle is gone: the call reports a 503
 *     refusal, reason "connection closed during on_open" (and
 *     "connection closed during the upgrade" when another callback ended
 *     it earlier). One ended in on_open was accepted first: it counts in
 *     conns_total, not in refusals, and on_close (1006) follows its
 *     on_open. One ended earlier counts in neither: the library refused
 *     nothing (fed, the same connection ends unanswered).
 *   - refused: *status is the HTTP status (400..599) and *reason a static
 *     or long-lived one-line reason for the host to answer with (a 426
 *     also carries "Upgrade: websocket" and "Sec-WebSocket-Version: 13",
 *     RFC 9110 15.5.22 and RFC 6455 4.4); the connection is closed
 *     before return (transport close callback, which must leave the socket
 *     open for the host's answer: see the config's close; no on_close, as
 *     it never opened): c is gone. A request that is not an upgrade is
 *     refused too (426 on the configured path, 404 elsewhere): on_http is
 *     not called.
 * All arguments are borrowed. Returns 0 (accepted or refused), WS_EINVAL
 * (as ws_conn_upgrade, or a NULL status, reason or accept), WS_ESTATE (not
 * a new connection), WS_ECLOSED (as ws_conn_upgrade). */
WS_EXTERN int ws_conn_upgrade_answer(ws_conn *c, const char *method,
                                     const char *path, const char *query,
                                     const ws_header *headers,
                                     size_t header_count, int *status,
                                     const char **reason,
                                     char accept[WS_ACCEPT_LEN + 1]);

/* Answers a plain HTTP request from on_http: status line, Content-Type
 * (content_type, or "text/plain" when NULL), Content-Length,
 * Connection: close, body (copied); then the connection is closed once it
 * is written. To a HEAD request the body is left out (Content-Length
 * still says its size, RFC 9110 9.3.2), as from every refusal. status is
 * a final one, 200-599: the connection closes after this answer, so an
 * interim 1xx would leave the client without one. A 204, 205 or 304
 * carries no content (RFC 9110 6.4.1, 15.3.6): no Content-Type,
 * Content-Length or body. Lines added with ws_conn_add_header
 * come after Connection. Errors: WS_EINVAL (status outside
 * 200-599, body NULL with len > 0, a body with 204/205/304, a control
 * character such as CR or LF in content_type), WS_ESTATE (not in on_http,
 * from a callback of another request that on_http drives (answer after it
 * returns), or the request was answered already), WS_ECLOSED (on_http closed it
 * first, e.g. ws_conn_close or ws_server_shutdown: nothing is sent),
 * WS_ETOOBIG (the answer, head and body, would be 4 GiB or more: nothing
 * is sent and the request may still be answered), WS_ENOMEM (the
 * connection is then closed unanswered). */
WS_EXTERN int ws_conn_http_respond(ws_conn *c, int status,
                                   const char *content_type, const void *body,
                                   size_t len);

/* Bytes of header lines ("Name: value" plus CRLF each) that
 * ws_conn_add_header may add to one response. */
#define WS_MAX_ADDED_HEADERS 4096

/* Adds the header line "name: value" to the HTTP response the connection
 * is getting: e.g. Set-Cookie on the 101, WWW-Authenticate on a 401
 * (RFC 9110 11.6.1), Retry-After on a 503. Call it from on_upgrade, where
 * the lines go on whichever response the upgrade ends with (the 101, the
 * hook's own refusal, or a 409 or 503 the library answers after it), or
 * from on_http before ws_conn_http_respond (or the library's 426 or 404 if
 * on_http does not answer). Lines keep the order they were added in; a name
 * may be added more than once. name and value are copied. Errors:
 * WS_EINVAL (c or value NULL, name not an RFC 9110 token, a control
 * character such as CR, LF or HTAB in value, or a name the library writes
 * or that frames the response: Connection, Content-Length, Content-Type
 * (ws_conn_http_respond's argument), Transfer-Encoding, Upgrade and every
 * Sec-WebSocket-* name, compared case-insensitively), WS_ESTATE (outside
 * those two callbacks, after the response was queued, e.g. from on_open,
 * from a callback of another request that the callback drives (add the
 * lines after it returns), or under ws_conn_upgrade_answer, whose
 * responses the host's HTTP server writes: add the lines with its own
 * API), WS_ECLOSED (the callback closed
 * the connection first), WS_ETOOBIG (past WS_MAX_ADDED_HEADERS bytes),
 * WS_ENOMEM. */
WS_EXTERN int ws_conn_add_header(ws_conn *c, const char *name,
                                 const char *value);

/* Accessors. Every ws_conn handle (from ws_conn_new, a callback or
 * ws_server_find_device) is valid until that connection's transport close
 * callback returns; pointers returned below live as long unless said. */
/* The transport pointer given to ws_conn_new. */
WS_EXTERN void *ws_conn_transport(const ws_conn *c);
/* The server the connection belongs to. */
WS_EXTERN ws_server *ws_conn_server(const ws_conn *c);
/* The host's per-connection pointer (default NULL), never looked into;
 * freeing what it points to is the host's job (e.g. in on_close). */
WS_EXTERN void *ws_conn_user_data(const ws_conn *c);
WS_EXTERN void ws_conn_set_user_data(ws_conn *c, void *user_data);
/* Device id from the handshake, NUL-terminated, NULL when none. Borrowed for
 * the connection's life. */
WS_EXTERN const char *ws_conn_device_id(const ws_conn *c);
/* Bound user, NULL when none. Borrowed until the user changes. */
WS_EXTERN const char *ws_conn_user(const ws_conn *c);
/* The upgrade request's facts, kept for the connection's life. NULL before
 * the request was parsed. */
WS_EXTERN const ws_request *ws_conn_request(const ws_conn *c);
/* Negotiated subprotocol or NULL; owned by the connection (valid until its
 * close callback returns). */
WS_EXTERN const char *ws_conn_subprotocol(const ws_conn *c);

/* ------------------------------------------------------------------------ */
/* The upgrade request                                                      */
/* ------------------------------------------------------------------------ */

/* All returned strings are NUL-terminated and borrowed from the request. */
WS_EXTERN const char *ws_request_method(const ws_request *r);
/* Path without the query, percent-decoded ("%2F" is a '/'), and compared
 * with cfg.path as it is: no dot segments are removed ("/a/../ws" is not
 * "/ws"). A host that routes on it in on_http normalises it itself. */
WS_EXTERN const char *ws_request_path(const ws_request *r);
/* Query parameter by exact name, percent-decoded ('+' is a space); the
 * first occurrence; NULL when absent. The whole query is decoded when the
 * request arrives: a bad escape or a %00 in any parameter (one the host
 * never reads included) refuses an upgrade, 400 "bad percent-encoding";
 * on_http gets a plain request with such parameters left out (absent).
 * A bad escape in the path is a 400 either way. */
WS_EXTERN const char *ws_request_query(const ws_request *r, const char *name);
/* Header by case-insensitive name; the first occurrence; NULL when absent
 * (or, with keep_headers 0, on ws_conn_request(c) from on_upgrade on:
 * on_upgrade's own req argument still has every header). */
WS_EXTERN const char *ws_request_header(const ws_request *r, const char *name);
/* Number of headers kept (0 for a NULL request). */
WS_EXTERN size_t ws_request_header_count(const ws_request *r);
/* The i-th (0-based) header kept: *name and *value (NUL-terminated; either
 * pointer may be NULL to skip it). Returns 0, WS_ENOENT when i is out of
 * range, WS_EINVAL for a NULL request. */
WS_EXTERN int ws_request_header_at(const ws_request *r, size_t i,
                                   const char **name, const char **value);

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* The "data" member as a cJSON tree (parsed on the first call, with cJSON's
 * global hooks), or NULL when absent, for binary messages, or when out of
 * memory. Borrowed: valid until the handler returns. To tell an absent
 * "data" from a failed parse: ws_msg_data_json is NULL only when absent.
 * The text was checked as JSON before dispatch (strictly: a lone surrogate
 * escape such as "\ud800" is invalid_json), so a NULL tree with text
 * present means memory ran out. The tree costs up to 32 bytes of cJSON's
 * heap per byte of data (a 64-byte item for each element of [1,1,...]),
 * until the handler returns: 2 MiB for a message of the default
 * max_message, 32 MiB for one of 1 MiB; ws_msg_data_json costs nothing. */
WS_EXTERN const struct cJSON *ws_msg_data(const ws_msg *msg);

/* The raw JSON text of "data" exactly as the client sent it (a slice of
 * msg->text: not NUL-terminated, no copy, no parsing); *len gets its
 * length. NULL (and *len 0) when data is absent or the message is binary.
 * Borrowed until the handler returns. */
WS_EXTERN const char *ws_msg_data_json(const ws_msg *msg, size_t *len);

/* ------------------------------------------------------------------------ */
/* Mux                                                                      */
/* ------------------------------------------------------------------------ */

/* Creates an empty mux using alloc (copied; NULL, or one with none of the
 * three functions = libc). NULL when out of memory, or for a partial
 * allocator (one or two of the three: ws_server_new's WS_EINVAL). */
WS_EXTERN ws_mux *ws_mux_new(const ws_allocator *alloc);
/* Frees the mux. NULL accepted. Not while a server still uses it. */
WS_EXTERN void ws_mux_free(ws_mux *m);
/* Registers fn for action (exact, case-sensitive; copied). Errors:
 * WS_EINVAL (also an action no peer could send: longer than WS_MAX_ACTION
 * or not UTF-8), WS_EEXIST (already registered), WS_ENOMEM. May be called
 * from a handler. */
WS_EXTERN int ws_mux_handle(ws_mux *m, const char *action, ws_handler_fn fn,
                            void *user_data);
/* Unregisters action. Errors: WS_EINVAL, WS_ENOENT. May be called from a
 * handler, including the one being removed. */
WS_EXTERN int ws_mux_remove(ws_mux *m, const char *action);
/* Handler for actions with no entry (NULL fn: none, the sender gets an
 * unknown_action error). Binary messages go to the binary handler.
 * Replaces an earlier one. Returns 0, or WS_EINVAL for a NULL mux. */
WS_EXTERN int ws_mux_fallback(ws_mux *m, ws_handler_fn fn, void *user_data);
/* Handler for binary messages (NULL: close 1003). Replaces an earlier one.
 * Returns 0, or WS_EINVAL for a NULL mux. */
WS_EXTERN int ws_mux_binary(ws_mux *m, ws_handler_fn fn, void *user_data);
/* A ws_handler_fn that dispatches through the mux given as user_data:
 * cfg.handler = ws_mux_serve; cfg.handler_data = mux. O(1). A mux is used
 * by one thread at a time, as a server is (it caches the last action it
 * dispatched): servers on several loop threads each need their own, even
 * with the same handlers (examples/reuseport.c builds one per server).
 * The host may also call it outside a handler, with a message it made
 * (action set unless binary): what the handler queues is flushed before
 * it returns, as from any entry point. Errors: WS_EINVAL (a NULL argument,
 * or a text message with no action); otherwise the handler's value. */
WS_EXTERN int ws_mux_serve(ws_conn *c, const ws_msg *msg, void *mux);

/* ------------------------------------------------------------------------ */
/* Registry: devices, users and groups                                      */
/* ------------------------------------------------------------------------ */

/* The open connection with this device id, or NULL (also while the one
 * with that id is closing: sends to it would be dropped). O(1). Not an
 * ownership record: a closing connection is not found, which may take up
 * to close_timeout_ms, and a newer one takes its id meanwhile under
 * WS_DUP_REPLACE and WS_DUP_REFUSE (under WS_DUP_REPLACE_SAME_USER only
 * one bound to the same user: another user's gets 409). A host that ties
 * device ids to users keeps its own table, as examples/chat.c does. */
WS_EXTERN ws_conn *ws_server_find_device(const ws_server *s,
                                         const char *device_id);
/* Binds the connection to a user (copied), replacing a previous one; NULL
 * unbinds; the user it already has is a no-op (WS_OK, even while the
 * connection is closing: nothing changes). A user may have many
 * connections. User and group names are 1 to 255 bytes (WS_EINVAL
 * otherwise), in two separate namespaces: user "u1" and group "u1" are
 * different sets (ws_push_user reaches one, ws_publish the other).
 * Errors: WS_EINVAL (checked first, in every state), WS_ENOMEM,
 * WS_ECLOSED. Binding and joining need a connection that is not closing
 * (WS_ECLOSED); unbinding and leaving work until it has ended (from
 * on_close on they are WS_ECLOSED: the library then removes every
 * membership itself). A connection still in its handshake may be bound
 * (on_upgrade is the place meant for it); it is counted
 * (ws_server_user_count, ws_server_group_count) and reached by fan-outs
 * to its user or groups only once open: from on_upgrade those counts do
 * not include it yet, and what fan-outs send before its 101 does not
 * reach it. */
WS_EXTERN int ws_conn_set_user(ws_conn *c, const char *user);
/* Joins / leaves a named group (room). Each call costs O(the groups the
 * connection is in) (it looks for the membership in the connection's own
 * list, the one closing walks): a host that lets clients choose rooms
 * caps how many one may join, as examples/chat.c does (MAX_ROOMS).
 * Errors: WS_EINVAL, WS_ENOMEM, WS_EEXIST (join: already a member),
 * WS_ENOENT (leave: not a member), WS_ECLOSED. */
WS_EXTERN int ws_conn_join(ws_conn *c, const char *group);
WS_EXTERN int ws_conn_leave(ws_conn *c, const char *group);
/* Number of open connections bound to user / in group: upgraded and not
 * closing (unlike ws_server_conn_count, which counts those in their close
 * handshake too); the connections a fan-out to them would reach. Each
 * call walks the members, O(their number), as a fan-out does: a host that
 * tells a room its size at every join counts its members itself (else n
 * joins cost O(n^2): 19,000 took 1.5 G instructions). */
WS_EXTERN size_t ws_server_user_count(const ws_server *s, const char *user);
WS_EXTERN size_t ws_server_group_count(const ws_server *s, const char *group);

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */
/* ------------------------------------------------------------------------ */

/* Every function below builds {"action":action,"data":data} (data NULL,
 * or data_json NULL with len 0: no "data" member), serialises it once,
 * frames it once and queues a reference to the same buffer on each
 * receiver. All arguments are copied or serialised before return.
 * Per-connection order is kept: a fan-out queues on every receiver before
 * any callback it causes runs (on_log, for a full queue's policy), so a
 * send, close or ws_server_shutdown from there comes after it on every
 * receiver. The _json
 * variants take data as ready JSON text (len bytes; validated, WS_EJSON if
 * invalid). Everything sent is a text frame, so it must be UTF-8: an
 * action that is not is WS_EINVAL. A cJSON tree is printed, then checked
 * as the _json variants' text is: a string that is not UTF-8, a raw item
 * (cJSON_CreateRaw) whose text is not one JSON value, an item cJSON cannot
 * print, or data nesting more than 127 arrays and objects deep (128 with
 * the envelope around it, which is what a receiver accepts) is WS_EJSON
 * (checked once per call, before anything is queued). The
 * fan-out functions return the number of connections queued
 * for (>= 0; unknown device ids are counted in ws_stats.unknown_targets, not
 * fatal, and so are NULL entries in a device list) or a negative error:
 * WS_EINVAL (also for a user or group name that is not 1 to 255 bytes, as
 * in ws_conn_join), WS_ENOMEM, WS_EJSON, WS_ETOOBIG. A
 * receiver whose queue is full is handled by queue_policy and not counted.
 * A message whose frame is larger than max_queued, or than 4 GiB less
 * about 2 KiB (a frame buffer's limit less room for the envelope; also
 * with max_queued at SIZE_MAX), could
 * never fit any queue: it is refused with WS_ETOOBIG before anything is
 * queued (data of len bytes past the limit before its bytes are read),
 * and no connection is closed for it (the sender's mistake, not a slow
 * peer). A receiver that cannot take the message for want of memory is
 * closed with 1011 (not counted): no receiver stays open with a message
 * missing from its stream. */

/* Returns 0 or WS_EINVAL, WS_ESTATE (the connection has no 101 yet: called
 * from on_upgrade or on_http; send from on_open on), WS_ECLOSED (closing or
 * closed; answered before the message itself is looked at, so a bad
 * message to a closing connection is WS_ECLOSED too), WS_ENOMEM, WS_EJSON,
 * WS_ETOOBIG, WS_EQUEUEFULL (queue_policy applied). The same for the three
 * below and ws_conn_send_prepared. */
WS_EXTERN int ws_conn_send(ws_conn *c, const char *action,
                           const struct cJSON *data);
WS_EXTERN int ws_conn_send_json(ws_conn *c, const char *action,
                                const char *data_json, size_t len);
/* Sends {"action":"error","data":{"code":code,"message":message}}, the
 * shape of the library's own error replies (above), so a client handles
 * the host's errors and the library's in one place. code is a non-empty
 * string, e.g. "bad_room" (the library's own codes are free to reuse);
 * message NULL sends "". Both must be UTF-8 (WS_EINVAL otherwise); both
 * are copied. Returns as ws_conn_send. */
WS_EXTERN int ws_conn_send_error(ws_conn *c, const char *code,
                                 const char *message);
/* A raw text (must be valid UTF-8: WS_EINVAL otherwise) or binary frame. */
WS_EXTERN int ws_conn_send_text(ws_conn *c, const char *text, size_t len);
WS_EXTERN int ws_conn_send_binary(ws_conn *c, const void *data, size_t len);

/* Prepared messages: a message framed once and sent many times, for
 * constant replies (a heartbeat's pong, a fixed status). ws_prepare and
 * ws_prepare_json validate and frame {"action":action,"data":data} like the
 * send functions; ws_conn_send_prepared then queues a reference to that
 * frame: no serialisation, no validation, no allocation per send.
 * Ownership: *out belongs to the caller and to server s; release it with
 * ws_prepared_free, or leave it to ws_server_free, which releases every
 * one still held (after it, ws_prepared_free must not be called: the
 * handle is gone). Freeing one that is still queued somewhere is safe (the
 * queues hold their own references). Loop thread only, like every call
 * here but ws_post. Returns 0 or WS_EINVAL, WS_ENOMEM, WS_EJSON, WS_ETOOBIG
 * (the frame is larger than max_queued: no queue could take it). */
typedef struct ws_prepared ws_prepared;
WS_EXTERN int ws_prepare(ws_server *s, const char *action,
                         const struct cJSON *data, ws_prepared **out);
WS_EXTERN int ws_prepare_json(ws_server *s, const char *action,
                              const char *data_json, size_t len,
                              ws_prepared **out);
/* Returns as ws_conn_send; WS_EINVAL also when p belongs to another
 * server. */
WS_EXTERN int ws_conn_send_prepared(ws_conn *c, const ws_prepared *p);
WS_EXTERN void ws_prepared_free(ws_prepared *p);

/* To every open connection (n == 0, whatever device_ids is: the Go model's
 * Broadcast(msg) with no ids) or to the listed device ids; an id listed
 * twice gets the message once and counts once. A host that
 * narrows a list of ids down must not pass an empty one: check n first, or
 * use ws_send_devices. */
WS_EXTERN int ws_broadcast(ws_server *s, const char *action,
                           const struct cJSON *data,
                           const char *const *device_ids, size_t n);
WS_EXTERN int ws_broadcast_json(ws_server *s, const char *action,
                                const char *data_json, size_t len,
                                const char *const *device_ids, size_t n);
/* To the listed device ids only: n == 0 sends to nobody (returns 0, the
 * message still validated), unlike ws_broadcast. A list narrowed down to
 * nothing (a private message whose recipients all left) then reaches no
 * one instead of everyone. device_ids NULL with n > 0: WS_EINVAL; a NULL
 * entry counts as an unknown id. Returns as ws_broadcast. */
WS_EXTERN int ws_send_devices(ws_server *s, const char *const *device_ids,
                              size_t n, const char *action,
                              const struct cJSON *data);
WS_EXTERN int ws_send_devices_json(ws_server *s,
                                   const char *const *device_ids, size_t n,
                                   const char *action, const char *data_json,
                                   size_t len);
/* To one device id (NULL, "" or one longer than max_device_id, which no
 * connection can hold: WS_EINVAL; in a device list such an entry counts
 * as unknown, as NULL does). Returns 1, or 0 when no open
 * connection has that id (counted in ws_stats.unknown_targets) or when its
 * queue was full (queue_policy applied, counted in drops_queue_full). */
WS_EXTERN int ws_send_device(ws_server *s, const char *device_id,
                             const char *action, const struct cJSON *data);
WS_EXTERN int ws_send_device_json(ws_server *s, const char *device_id,
                                  const char *action, const char *data_json,
                                  size_t len);
/* To every connection of a user. */
WS_EXTERN int ws_push_user(ws_server *s, const char *user, const char *action,
                           const struct cJSON *data);
WS_EXTERN int ws_push_user_json(ws_server *s, const char *user,
                                const char *action, const char *data_json,
                                size_t len);
/* To every member of a group. */
WS_EXTERN int ws_publish(ws_server *s, const char *group, const char *action,
                         const struct cJSON *data);
WS_EXTERN int ws_publish_json(ws_server *s, const char *group,
                              const char *action, const char *data_json,
                              size_t len);

/* ------------------------------------------------------------------------ */
/* From other threads                                                       */
/* ------------------------------------------------------------------------ */

enum ws_post_target {
  WS_POST_ALL = 0,    /* every open connection; name is ignored (NULL ok) */
  WS_POST_DEVICE = 1, /* name is a device id (as ws_send_device's) */
  WS_POST_USER = 2,   /* name is a user */
  WS_POST_GROUP = 3   /* name is a group */
};

/* Thread-safe. Queues {"action":action,"data":data_json} (data_json NULL
 * with len 0: no "data" member) for delivery by
 * the loop thread at its next ws_server_tick; calls the config's wake
 * callback (from this thread) when the server's post queue was empty, so
 * the host wakes its loop. The frame is built here, once (data_json is
 * validated here: WS_EJSON), so the allocator must be thread-safe (libc's
 * is). Messages posted by one thread reach each client in the order posted.
 * Each tick delivers what was posted when it began, one message at a time,
 * flushing after each (as a ws_broadcast call does): a backlog reaches a
 * client that keeps reading, it does not count against its max_queued all
 * at once. Targets are looked up at delivery: a device id names whichever
 * connection holds it then. Posted from the loop thread itself, a message
 * goes out at the next tick, after what that thread sends directly
 * meanwhile. A tick from a callback that a delivery runs (on_log) delivers
 * nothing: the post under way must reach all of its receivers first.
 * Returns 0, WS_EINVAL, WS_EJSON, WS_ENOMEM, WS_ETOOBIG (larger
 * than max_queued or max_posted: never accepted), WS_ELIMIT (the posts
 * already waiting leave too little of max_posted: retry later), WS_ESHUTDOWN
 * (server shutting down or being destroyed). A post that a full queue or
 * a shutdown refuses is refused before data_json is read or anything is
 * allocated, so a producer's retry costs little: its arguments are checked
 * first (WS_EINVAL), and a post that could never fit is WS_ETOOBIG
 * whatever is waiting, but invalid data_json is told WS_EJSON only once
 * there is room. Must not race with
 * ws_server_free: WS_ESHUTDOWN does not make freeing safe, the call may
 * still be using the server when another thread sees it; stop and join
 * the posting threads first. */
WS_EXTERN int ws_post(ws_server *s, int target, const char *name,
                      const char *action, const char *data_json, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* WSMUX_H */
