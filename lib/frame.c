/*
 * The receive path: wslay_frame_recv over the fed bytes, and every rule
 * wslay's frame layer leaves to us (RFC 6455 5.2-5.5, 7.4, 8.1): masking,
 * RSV bits, reserved opcodes, continuation order, message size from the
 * frame header before any allocation, UTF-8 checked as bytes arrive, close
 * codes and reasons, ping answered between fragments.
 *
 * wslay keeps a 4 KiB input buffer in each frame context. An idle
 * connection does not need it: the context (inside a ws__rx) is taken from
 * a per-server pool when bytes arrive and returned as soon as wslay has
 * consumed everything it was given at a frame boundary. We know that point
 * without looking inside wslay by counting the bytes handed to it against
 * the header and payload bytes of the frames it returned.
 */
#include <string.h>

#include "internal.h"

#define WS__RX_POOL_MAX 64

/* ---- the rx pool ----------------------------------------------------- */

static ssize_t rx_recv(uint8_t *buf, size_t len, int flags, void *ud) {
  ws__rx *rx = ud;
  size_t n = WS__MIN(len, rx->in_len);
  (void)flags;
  if (n == 0) return -1; /* wslay maps this to WSLAY_ERR_WANT_READ */
  memcpy(buf, rx->in, n);
  rx->in += n;
  rx->in_len -= n;
  rx->given += n;
  return (ssize_t)n;
}

static ssize_t rx_send_unused(const uint8_t *d, size_t l, int f, void *ud) {
  (void)d, (void)l, (void)f, (void)ud;
  return -1;
}

static int rx_genmask_unused(uint8_t *b, size_t l, void *ud) {
  (void)b, (void)l, (void)ud;
  return -1;
}

static ws__rx *rx_acquire(ws_server *s) {
  static const struct wslay_frame_callbacks cbs = {
      .send_callback = rx_send_unused,
      .recv_callback = rx_recv,
      .genmask_callback = rx_genmask_unused};
  ws__rx *rx = s->rx_pool;
  if (rx) {
    s->rx_pool = rx->next_free;
    s->rx_pool_len--;
  } else {
    rx = ws__malloc(&s->al, sizeof(*rx));
    if (rx == NULL) return NULL;
    /* wslay allocates with libc malloc: that part is outside the hook. */
    if (wslay_frame_context_init(&rx->wslay, &cbs, rx) != 0) {
      ws__free(&s->al, rx);
      return NULL;
    }
  }
  rx->next_free = NULL;
  rx->in = NULL;
  rx->in_len = 0;
  rx->given = rx->consumed = rx->frame_left = 0;
  rx->in_frame = 0;
  rx->ctrl_len = 0;
  return rx;
}

/* At a frame boundary with wslay's buffer empty: every byte handed to
 * wslay belongs to a frame it finished. */
static int rx_at_boundary(const ws__rx *rx) {
  return !rx->in_frame && rx->given == rx->consumed;
}

/* A context goes back to the pool only at a boundary (rx_at_boundary),
 * i.e. in the state wslay_frame_context_init leaves it in. Anything else
 * (a protocol error midway) is freed. */
void ws__rx_release(ws_server *s, ws__rx *rx) {
  if (rx_at_boundary(rx) && s->rx_pool_len < WS__RX_POOL_MAX &&
      !s->destroying) {
    rx->next_free = s->rx_pool;
    s->rx_pool = rx;
    s->rx_pool_len++;
    return;
  }
  wslay_frame_context_free(rx->wslay);
  ws__free(&s->al, rx);
}

void ws__rx_pool_free(ws_server *s) {
  while (s->rx_pool) {
    ws__rx *rx = s->rx_pool;
    s->rx_pool = rx->next_free;
    wslay_frame_context_free(rx->wslay);
    ws__free(&s->al, rx);
  }
  s->rx_pool_len = 0;
}

/* ---- frame header rules ---------------------------------------------- */

static size_t header_len(const struct wslay_frame_iocb *f) {
  uint64_t n = f->payload_length;
  return 2 + (n < 126 ? 0 : n <= 0xffff ? 2 : 8) + (f->mask ? 4 : 0);
}

static int opcode_known(uint8_t op) {
  return op <= WSLAY_BINARY_FRAME ||
         (op >= WSLAY_CONNECTION_CLOSE && op <= WSLAY_PONG);
}

/* Checks a frame's header on its first chunk. Returns 0 or a close code. */
static inline int check_header(ws_conn *c,
                               const struct wslay_frame_iocb *f) {
  uint64_t max = c->s->cfg.max_message;
  if (!f->mask) return WS_CLOSE_PROTOCOL;
  if (f->rsv) return WS_CLOSE_PROTOCOL; /* no extension negotiated */
  if (!opcode_known(f->opcode)) return WS_CLOSE_PROTOCOL;
  if (f->opcode & 0x8) return 0; /* wslay checked <= 125 and FIN */
  if (f->opcode == WSLAY_CONTINUATION_FRAME) {
    if (c->msg_opcode == 0) return WS_CLOSE_PROTOCOL;
  } else if (c->msg_opcode != 0) {
    return WS_CLOSE_PROTOCOL; /* a new message inside a fragmented one */
  }
  if (f->payload_length > max || c->buf_len + f->payload_length > max)
    return WS_CLOSE_TOO_BIG;
  return 0;
}

/* wslay returns a frame's header with its first payload chunk, so a frame
 * whose header arrived without payload would be judged only when a payload
 * byte follows: a peer could send a header claiming 2^63 bytes, or one
 * with an RSV bit, and wait. When wslay wants more bytes between frames,
 * the bytes it holds are such a header (a whole frame would have been
 * returned): they are the tail of what was handed over, this feed's and,
 * for a header split across feeds, the earlier part kept in rx->head by
 * the previous call. Judged as soon as its first two bytes are in (the
 * size once the length is complete). Returns 0 or a close code. */
static int peek_header(ws_conn *c, const uint8_t *p, size_t given_now) {
  ws__rx *rx = c->rx;
  uint64_t held = rx->given - rx->consumed;
  size_t fresh, need;
  struct wslay_frame_iocb f;
  const uint8_t *h = rx->head;
  if (rx->in_frame || held == 0 || held > sizeof(rx->head)) return 0;
  fresh = (size_t)WS__MIN(held, (uint64_t)given_now);
  memcpy(rx->head + (held - fresh), p + given_now - fresh, fresh);
  if (held < 2) return 0;
  memset(&f, 0, sizeof(f));
  f.fin = h[0] >> 7;
  f.rsv = (h[0] >> 4) & 7;
  f.opcode = h[0] & 0xf;
  f.mask = h[1] >> 7;
  need = 2 + ((h[1] & 0x7f) == 126 ? 2 : (h[1] & 0x7f) == 127 ? 8 : 0);
  if ((h[1] & 0x7f) < 126) {
    f.payload_length = h[1] & 0x7f;
  } else if (held >= need) {
    size_t i;
    for (i = 2; i < need; i++) f.payload_length = f.payload_length << 8 | h[i];
  } /* else 0 for now: the size is judged when its bytes are in */
  return check_header(c, &f);
}

/* ---- data messages --------------------------------------------------- */

static int check_utf8(ws_conn *c, const uint8_t *p, size_t n, int fin) {
  if (c->msg_opcode != WSLAY_TEXT_FRAME) return 0;
  c->utf8 = ws__utf8_validate(c->utf8, p, n);
  if (c->utf8 == WS__UTF8_REJECT) return WS_CLOSE_INVALID_DATA;
  if (fin && c->utf8 != WS__UTF8_ACCEPT) return WS_CLOSE_INVALID_DATA;
  return 0;
}

/* The buffer grows with the bytes that arrived, doubling, never with the
 * length a header announces: a peer sending headers and a byte each must
 * not make every connection reserve max_message. */
static int append_message(ws_conn *c, const uint8_t *p, size_t n) {
  ws_server *s = c->s;
  if (n == 0) return WS_OK; /* c->buf may be NULL and p may be NULL */
  if (c->buf_len + n > c->buf_cap) {
    size_t cap = c->buf_cap ? c->buf_cap * 2 : 256;
    uint8_t *nb;
    if (cap < c->buf_len + n) cap = c->buf_len + n;
    if (cap > s->cfg.max_message) cap = s->cfg.max_message;
    nb = ws__realloc(&s->al, c->buf, cap);
    if (nb == NULL) return WS_ENOMEM;
    c->buf = nb;
    c->buf_cap = cap;
  }
  memcpy(c->buf + c->buf_len, p, n);
  c->buf_len += n;
  return WS_OK;
}

static void message_done(ws_conn *c) {
  ws_server *s = c->s;
  c->msg_opcode = 0;
  c->utf8 = WS__UTF8_ACCEPT;
  ws__free(&s->al, c->buf);
  c->buf = NULL;
  c->buf_len = c->buf_cap = 0;
}

static void deliver(ws_conn *c, int opcode, const uint8_t *p, size_t n) {
  c->s->st.msgs_in++;
  if (c->state != WS__OPEN) return; /* closing: data is discarded */
  ws__envelope_dispatch(c, opcode, p, n);
}

/* A chunk of a data frame. Whole single-frame messages are delivered
 * straight from wslay's buffer; others are assembled in c->buf. */
static int on_data(ws_conn *c, const struct wslay_frame_iocb *f, int first,
                   int last) {
  int code, opcode;
  if (first && f->opcode != WSLAY_CONTINUATION_FRAME) {
    c->msg_opcode = f->opcode;
    c->utf8 = WS__UTF8_ACCEPT;
  }
  opcode = c->msg_opcode;
  code = check_utf8(c, f->data, f->data_length, last && f->fin);
  if (code) return code;
  if (first && last && f->fin && c->buf_len == 0) {
    c->msg_opcode = 0;
    deliver(c, opcode, f->data, f->data_length);
    return 0;
  }
  if (append_message(c, f->data, f->data_length) != WS_OK)
    return WS_CLOSE_INTERNAL;
  if (last && f->fin) {
    /* The handler may close this connection; the buffer stays ours until
     * message_done. Empty fragments only: no buffer was allocated. */
    deliver(c, opcode, c->buf ? c->buf : (const uint8_t *)"", c->buf_len);
    message_done(c);
  }
  return 0;
}

/* ---- control frames -------------------------------------------------- */

static void queue_pong(ws_conn *c, const uint8_t *p, size_t n) {
  ws__buf *b;
  if (c->state != WS__OPEN) return;
  b = ws__buf_frame_copy(c->s, WSLAY_PONG, p, n);
  if (b == NULL) return;
  /* Through the queue policy: a peer that pings without reading must not
   * grow the queue past max_queued. */
  ws__conn_queue(c, b);
  ws__buf_unref(c->s, b);
}

/* The peer's close: validate, answer (echoing the code), drain, close. */
static int on_close_frame(ws_conn *c, const uint8_t *p, size_t n) {
  int code = WS_CLOSE_NO_STATUS, was_open;
  if (n == 1) return WS_CLOSE_PROTOCOL;
  if (n >= 2) {
    code = (p[0] << 8) | p[1];
    if (!ws__close_code_valid(code)) return WS_CLOSE_PROTOCOL;
    if (ws__utf8_validate(0, p + 2, n - 2) != WS__UTF8_ACCEPT)
      return WS_CLOSE_INVALID_DATA;
  }
  c->close_recv = (uint16_t)code;
  /* Nothing is read after a close: a message still being assembled is
   * dropped and c->buf keeps the peer's reason for on_close instead. */
  message_done(c);
  if (n > 2 && (c->buf = ws__malloc(&c->s->al, n - 1)) != NULL) {
    memcpy(c->buf, p + 2, n - 2);
    c->buf[n - 2] = '\0';
    c->buf_len = c->buf_cap = (uint32_t)(n - 1);
  }
  if (c->state == WS__OPEN) {
    uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    size_t echo_len = code == WS_CLOSE_NO_STATUS ? 0 : 2;
    ws__conn_push_new(c, ws__buf_frame_copy(c->s, WSLAY_CONNECTION_CLOSE,
                                            echo, echo_len));
  }
  /* on_close reports the peer's code; close_sent is what ends DRAINING. */
  c->close_sent = (uint16_t)code;
  was_open = c->state == WS__OPEN;
  c->state = WS__DRAINING;
  ws__conn_mark_dirty(c);
  /* A peer that closes and then stops reading our echo is ended by the
   * close deadline (CLOSING armed it when we closed first). */
  if (was_open) ws__conn_arm_close_timer(c);
  return 0;
}

/* Control payloads (<= 125 bytes) are collected in rx->ctrl, so a ping or a
 * close split across feeds is handled whole. */
static int on_control(ws_conn *c, const struct wslay_frame_iocb *f, int last) {
  ws__rx *rx = c->rx;
  memcpy(rx->ctrl + rx->ctrl_len, f->data, f->data_length);
  rx->ctrl_len = (uint8_t)(rx->ctrl_len + f->data_length);
  if (!last) return 0;
  switch (f->opcode) {
  case WSLAY_PING:
    queue_pong(c, rx->ctrl, rx->ctrl_len);
    return 0;
  case WSLAY_PONG:
    return 0;
  default:
    return on_close_frame(c, rx->ctrl, rx->ctrl_len);
  }
}

/* ---- the loop -------------------------------------------------------- */

/* One chunk returned by wslay. Returns 0 or a close code to fail with. */
static int on_chunk(ws_conn *c, const struct wslay_frame_iocb *f) {
  ws__rx *rx = c->rx;
  int first = !rx->in_frame, last, code;
  if (first) {
    code = check_header(c, f);
    if (code) return code;
    rx->in_frame = 1;
    rx->frame_left = f->payload_length;
    rx->ctrl_len = 0;
    rx->consumed += header_len(f);
  }
  rx->frame_left -= f->data_length;
  rx->consumed += f->data_length;
  last = rx->frame_left == 0;
  if (last) rx->in_frame = 0;
  if (f->opcode & 0x8) return on_control(c, f, last);
  return on_data(c, f, first, last);
}

static int reading(const ws_conn *c) {
  return (c->state == WS__OPEN || c->state == WS__CLOSING) &&
         !c->s->destroying;
}

static void fail(ws_conn *c, int code) {
  ws__conn_fail(c, code, code == WS_CLOSE_TOO_BIG        ? "message too big"
                         : code == WS_CLOSE_INVALID_DATA ? "invalid UTF-8"
                                                         : "protocol error");
}

void ws__frame_feed(ws_conn *c, const uint8_t *p, size_t n) {
  ws_server *s = c->s;
  struct wslay_frame_iocb f;
  if (c->rx == NULL && (c->rx = rx_acquire(s)) == NULL) {
    ws__conn_finish(c, WS_CLOSE_ABNORMAL, "out of memory");
    return;
  }
  c->rx->in = p;
  c->rx->in_len = n;
  while (reading(c)) {
    ssize_t r;
    int code;
    memset(&f, 0, sizeof(f));
    r = wslay_frame_recv(c->rx->wslay, &f);
    if (r == WSLAY_ERR_WANT_READ) {
      if ((code = peek_header(c, p, n - c->rx->in_len)) != 0) fail(c, code);
      break;
    }
    if (r < 0) {
      fail(c, WS_CLOSE_PROTOCOL);
      break;
    }
    if ((code = on_chunk(c, &f)) != 0) {
      fail(c, code);
      break;
    }
    /* Bound what one feed can queue before anything is written (bytes,
     * and pongs: a chunk of pipelined pings must not reach the control
     * frame bound of ws__conn_queue while the socket is writable). */
    if (c->q.bytes > 65536 || c->q.nctrl >= 64) ws__conn_flush(c);
    /* Every fed byte was handed over and ended a frame: another call would
     * only report WANT_READ. (Not reading any more ends the loop anyway;
     * the rx stays until ws__conn_free.) */
    if (c->rx->in_len == 0 && rx_at_boundary(c->rx)) break;
  }
  if (c->rx && c->state != WS__DEAD) {
    c->rx->in = NULL;
    c->rx->in_len = 0;
    if (rx_at_boundary(c->rx)) {
      ws__rx_release(s, c->rx);
      c->rx = NULL;
    }
  }
}
