/*
 * RFC 6455 conformance cases, organised like the Autobahn|Testsuite server
 * case groups, in one table shared by two runners:
 *   test_conformance_mem.c  an in-process ws_server over a memory transport
 *   conformance_net.c       a client against a running examples/pingpong
 *
 * The server under test speaks the ping/pong protocol, so outcomes are
 * observable: {"action":"echo","data":D} comes back byte for byte,
 * {"action":"ping"} gets {"action":"pong","data":""}, binary messages are
 * refused with close 1003 (no binary handler), bad JSON gets an error reply.
 *
 * A case is a client script (bytes cut into chunks) and the exact outcome:
 * the HTTP status, the server frames in order, and how the connection ends.
 * Fail-fast is part of the outcome: once chunk stop_after has been sent the
 * outcome must be complete; later chunks are never sent (the net runner)
 * and the in-memory runner checks that the close came while that chunk was
 * being fed, not earlier and not later.
 *
 * Every case ends with the server closing the TCP connection:
 *   CONF_CLOSES       the server closes right after its last frame;
 *   CONF_STAYS_OPEN   the server must keep the connection: the runner then
 *                     sends a close 1000 and expects it echoed and the TCP
 *                     close (so stray frames cannot go unnoticed);
 *   CONF_AWAITS_REPLY the server sent a close of its own and waits: the
 *                     runner sends the case's reply (a close 1000 unless the
 *                     case says otherwise), then expects the TCP close.
 *
 * A case may also have sync points (Autobahn's "wait, then send the rest"):
 * after chunk after_chunk the runner sends nothing more until exactly
 * `frames` of the expected frames are in, and (net) pause_ms has passed;
 * a close, or a frame more, by then is a failure. So an answer that must
 * come before the rest of a message is sent (a pong between fragments, a
 * message's echo in a round trip) is asserted, and so is one that must not
 * come yet (no close for the valid first part of a message that turns
 * invalid later: that close is due at stop_after, not before).
 */
#ifndef WS_CONF_CASES_H
#define WS_CONF_CASES_H

#include <stddef.h>
#include <stdint.h>

enum conf_group {
  CONF_G_FRAMING = 0,
  CONF_G_PINGPONG,
  CONF_G_RSV,
  CONF_G_OPCODES,
  CONF_G_FRAGMENTS,
  CONF_G_UTF8,
  CONF_G_LIMITS,
  CONF_G_CLOSE,
  CONF_G_HANDSHAKE,
  CONF_G_COUNT
};

/* "framing", "pingpong", ... Static; "?" for an unknown group. */
const char *conf_group_name(int group);

enum conf_end {
  CONF_CLOSES = 0,
  CONF_STAYS_OPEN,
  CONF_AWAITS_REPLY
};

#define CONF_NO_CODE (-1) /* a close frame with an empty payload */

/* One expected server frame. Server frames are unmasked, FIN set, RSV 0. */
typedef struct conf_frame {
  uint8_t opcode;
  int code;         /* close: the code, or CONF_NO_CODE; any valid UTF-8
                       reason is accepted. Other opcodes: unused */
  uint8_t *payload; /* other opcodes: the exact payload (owned) */
  size_t len;
} conf_frame;

typedef struct conf_frames {
  conf_frame *v;
  size_t n, cap;
} conf_frames;

typedef struct conf_sync {
  size_t after_chunk; /* index of the chunk the runner waits after */
  size_t frames;      /* expected frames in by then, exactly */
} conf_sync;

typedef struct conf_case {
  char id[20];       /* "8.2.13": group number, subgroup, index */
  int group;         /* enum conf_group */
  const char *rfc;   /* the RFC 6455 section checked, e.g. "5.5.2" */
  char title[112];
  /* 0: the runner sends the standard upgrade request (conf_upgrade_request)
   * as an extra first chunk and expects a 101. 1: the script carries its
   * own request. */
  int raw_http;
  int http_status;         /* expected status */
  const char *http_header; /* "Name: value" the response must carry, or
                              NULL (name case-insensitive, value exact) */
  uint8_t *bytes;    /* the whole script (owned) */
  size_t len;
  size_t *ends;      /* chunk i is bytes[i ? ends[i-1] : 0 .. ends[i]) */
  size_t nchunks;
  size_t stop_after; /* index of the chunk after which the outcome must be
                        complete; nchunks - 1 unless the case fails fast */
  conf_frames expect; /* server frames in answer to the script */
  int end;           /* enum conf_end */
  uint8_t *reply;    /* CONF_AWAITS_REPLY: the client's answer (owned) */
  size_t reply_len;
  conf_frames after; /* frames expected after the tail (probe or reply) */
  conf_sync *syncs;  /* sync points, by increasing chunk (owned) */
  size_t nsyncs;
  int pause_ms;      /* net: the least wait at each sync point */
} conf_case;

typedef struct conf_table {
  conf_case *v;
  size_t n, cap;
  uint32_t rng;      /* masking keys: deterministic */
  int counters[CONF_G_COUNT][16]; /* last index used per group.subgroup */
} conf_table;

/* Builds every case. Returns 0, -1 when out of memory, -2 when a table
 * entry contradicts the reference checks (a bug in cases.c). */
int conf_table_build(conf_table *t);
void conf_table_free(conf_table *t);

/* The standard upgrade request for a non-raw case, with device_id as the
 * device id and the RFC 6455 sample key. Returns its length, or 0 when cap
 * is too small. */
size_t conf_upgrade_request(char *out, size_t cap, const char *device_id);

/* The tail the runner sends once the script's outcome is in: the probe
 * close (CONF_STAYS_OPEN) or the reply (CONF_AWAITS_REPLY). Returns its
 * length (0 for CONF_CLOSES). *p is borrowed from the case or static. */
size_t conf_tail(const conf_case *c, const uint8_t **p);

/* Frames expected after the tail: c->after for a reply, a close 1000 for a
 * probe. */
const conf_frames *conf_tail_expect(const conf_case *c);

/* The sync point after chunk i, or NULL. */
const conf_sync *conf_sync_at(const conf_case *c, size_t i);

/* How many complete server frames follow a complete 101 response in
 * out[0..len) (0 while the head is incomplete). Whether they are the
 * expected ones is conf_verify's to say. */
size_t conf_frames_in(const conf_case *c, const uint8_t *out, size_t len);

enum conf_verdict {
  CONF_PENDING = 0, /* everything so far matches; more output is due */
  CONF_READY_TAIL,  /* the script's outcome is in: send the tail now */
  CONF_PASS,        /* the whole outcome matched, TCP closed */
  CONF_FAIL
};

/* Compares what the server wrote so far (out[0..len)), whether it closed
 * the connection (closed) and whether the tail was sent (tail_sent) with
 * the case's outcome. On CONF_FAIL, why gets a one-line reason. */
int conf_verify(const conf_case *c, const uint8_t *out, size_t len,
                int closed, int tail_sent, char *why, size_t why_len);

#endif /* WS_CONF_CASES_H */
