/*
 * In-memory transport for unit tests: no sockets. Byte scripts go in with
 * mt_feed (whole, or one byte per ws_conn_feed call), the server's output
 * is captured per connection and read back with a small client-side frame
 * decoder. Names are mt_* (the conformance tier links every .c file of
 * tests/support beside its own mem_transport.c, whose names are mem_*).
 *
 * Ownership: an mt_conn is the transport pointer given to ws_conn_new; it
 * must outlive the connection (it may outlive the server). The captured
 * output is allocated with libc, outside the test allocator, so counting
 * tests see only the library's own allocations.
 */
#ifndef WS_TEST_MEM_TRANSPORT_H
#define WS_TEST_MEM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "wsmux.h"

/* Feed modes: every protocol test runs in both. */
enum { MT_WHOLE = 0, MT_BYTES = 1, MT_MODES = 2 };
#define MT_MODE_NAME(m) ((m) == MT_BYTES ? "byte-at-a-time" : "whole")

/* Opcodes (RFC 6455 5.2). */
enum {
  MT_CONT = 0x0,
  MT_TEXT = 0x1,
  MT_BINARY = 0x2,
  MT_CLOSE = 0x8,
  MT_PING = 0x9,
  MT_PONG = 0xA
};

typedef struct mt_conn mt_conn;
struct mt_conn {
  ws_conn *c;   /* the library's handle; NULL once the close callback ran */
  ws_server *s;
  /* --- captured output (libc memory) --- */
  uint8_t *out;
  size_t len, cap;
  size_t rpos; /* the decoder's read position in out */
  /* --- knobs --- */
  size_t max_per_send; /* accept at most this many bytes per call; 0: all */
  int would_block;     /* send returns 0 */
  int fail;            /* send returns -1 */
  /* --- counters --- */
  int send_calls;   /* send + sendv calls, including blocked ones */
  int closes;       /* close callback calls (must end at most 1) */
  int want_on;      /* want_write(1) calls */
  int want_off;     /* want_write(0) calls */
  int want;         /* last want_write value */
  size_t len_at_close; /* output length when the close callback ran */
  /* --- optional hooks, run inside the callbacks (re-entrancy tests) --- */
  void (*on_want)(mt_conn *t, int want);
  void (*on_tclose)(mt_conn *t); /* before c is cleared: c still valid */
  void (*on_write)(mt_conn *t);  /* after bytes were captured */
  void *ud;
};

/* Installs send, sendv (when use_sendv), want_write and close. */
void mt_config(ws_config *cfg, int use_sendv);

/* Clears t and creates a connection with t as its transport (asserts). */
void mt_open(mt_conn *t, ws_server *s);
/* Frees the captured output. Does not touch the connection. */
void mt_free(mt_conn *t);
/* Frees the server, expects the test allocator (support.h) to hold no
 * allocation then, and frees a's and b's captured output (either may be
 * NULL). */
void mt_done(ws_server *s, mt_conn *a, mt_conn *b);

/* Feeds bytes whole or one byte per call. Stops early once the library
 * stops reading (WS_ECLOSED) or closed the transport. Returns WS_OK when
 * every byte was taken by a connection that is still reading, else the
 * first non-OK result (WS_ECLOSED). */
int mt_feed(mt_conn *t, const void *p, size_t n, int mode);
int mt_feed_str(mt_conn *t, const char *s, int mode);

/* Calls ws_conn_writable while it makes progress and output is queued. */
void mt_pump(mt_conn *t);

/* A valid upgrade request for /ws?device_id=<id> (id NULL: no query) with
 * the RFC 6455 sample key, and extra header lines (each ending CRLF, may be
 * NULL). Returns the length written (asserts it fits). */
size_t mt_request(char *buf, size_t cap, const char *device_id,
                  const char *extra_headers);
/* The Sec-WebSocket-Accept for the sample key (RFC 6455 1.3). */
#define MT_SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define MT_SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/* A valid upgrade's headers (the sample key), for the host-parsed entry
 * points ws_conn_upgrade and ws_conn_upgrade_answer. */
#define MT_UPGRADE_HEADER_COUNT 5
extern const ws_header mt_upgrade_headers[MT_UPGRADE_HEADER_COUNT];

/* Reads an HTTP response head (and Content-Length body) at rpos. Returns
 * the status, 0 if no complete response is there yet. head (may be NULL)
 * gets the NUL-terminated head; body/body_len (may be NULL) point into the
 * output. Advances rpos past the response. */
int mt_http_response(mt_conn *t, char *head, size_t head_cap,
                     const uint8_t **body, size_t *body_len);

/* mt_open, feed a valid upgrade for device_id, assert the 101 (with the
 * right accept key) and consume it. The connection is open after. */
void mt_connect(mt_conn *t, ws_server *s, const char *device_id, int mode);

/* ---- the client side: frames in and out --------------------------------- */

typedef struct mt_frame {
  int fin, rsv, opcode;
  const uint8_t *payload; /* into t->out: valid until more output arrives */
  size_t len;
} mt_frame;

/* Decodes the next server frame at rpos. Returns 1 and advances rpos, or 0
 * when no complete frame is there. Asserts the frame is unmasked. */
int mt_next_frame(mt_conn *t, mt_frame *f);
/* Like mt_next_frame but asserts a frame is there. */
void mt_expect_frame(mt_conn *t, mt_frame *f);
/* Asserts the next frame is a text frame with exactly this payload. */
void mt_expect_text(mt_conn *t, const char *payload);
/* Asserts the next frame is a close frame with this code (-1: no payload)
 * and returns its reason length. */
size_t mt_expect_close(mt_conn *t, int code);
/* Asserts there is no unread output. */
void mt_expect_nothing(mt_conn *t);
/* Unread output bytes. */
size_t mt_unread(const mt_conn *t);
/* Close code of a close frame, -1 when it has no payload. */
int mt_close_code(const mt_frame *f);
/* 1 if f's payload equals s. */
int mt_payload_is(const mt_frame *f, const char *s);

/* A growable byte script (libc memory). */
typedef struct mt_bytes {
  uint8_t *p;
  size_t len, cap;
} mt_bytes;
void mt_bytes_add(mt_bytes *b, const void *p, size_t n);
void mt_bytes_str(mt_bytes *b, const char *s);
void mt_bytes_free(mt_bytes *b);

/* Frame flags for mt_frame_add. */
enum {
  MT_NOFIN = 1u << 0,    /* FIN clear */
  MT_RSV1 = 1u << 1,
  MT_RSV2 = 1u << 2,
  MT_RSV3 = 1u << 3,
  MT_UNMASKED = 1u << 4  /* no mask (a protocol error for a client) */
};

/* Appends a client frame: header and payload masked with a fixed key. */
void mt_frame_add(mt_bytes *b, int opcode, unsigned flags, const void *p,
                  size_t n);
void mt_frame_str(mt_bytes *b, int opcode, unsigned flags, const char *s);
/* Appends only a (masked) header announcing len payload bytes. */
void mt_frame_header(mt_bytes *b, int opcode, unsigned flags, uint64_t len);
/* Appends a close frame: code < 0 means no payload; reason may be NULL. */
void mt_close_add(mt_bytes *b, int code, const char *reason);

/* Builds one masked frame and feeds it. */
int mt_send_frame(mt_conn *t, int opcode, unsigned flags, const void *p,
                  size_t n, int mode);
/* Builds one masked text frame from s and feeds it. */
int mt_send_text(mt_conn *t, const char *s, int mode);

#endif /* WS_TEST_MEM_TRANSPORT_H */
