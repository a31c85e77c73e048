/*
 * Outbound frames and the per-connection queue.
 *
 * Server frames are never masked (RFC 6455 5.1), so a message framed once is
 * the same bytes for every receiver: a ws__buf holds header and payload in
 * one allocation and each queue holds a reference. A queue is a ring of
 * references; the head may be partially sent. Control frames may go ahead of
 * queued data, but only at a frame boundary: after the partially sent head
 * and after control frames already waiting there.
 */
#include <limits.h>
#include <string.h>

#include "internal.h"

#define WS__IOV_MAX 64

size_t ws__frame_header_len(size_t len) {
  return len < 126 ? 2 : len <= 0xffff ? 4 : 10;
}

static void frame_header_write(uint8_t *h, int opcode, size_t len) {
  h[0] = (uint8_t)(0x80u | (unsigned)opcode);
  if (len < 126) {
    h[1] = (uint8_t)len;
  } else if (len <= 0xffff) {
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
  } else {
    uint64_t l = len;
    int i;
    h[1] = 127;
    for (i = 0; i < 8; i++) h[2 + i] = (uint8_t)(l >> (56 - 8 * i));
  }
}

ws__buf *ws__buf_raw(ws_server *s, const void *p, size_t len) {
  ws__buf *b;
  if (len > UINT32_MAX - sizeof(*b)) return NULL;
  b = ws__malloc(&s->al, sizeof(*b) + len);
  if (b == NULL) return NULL;
  b->refs = 1; /* the caller's reference; queues take their own */
  b->len = (uint32_t)len;
  b->is_ctrl = 0;
  b->is_close = 0;
  b->is_http = 1; /* ws__buf_frame clears it */
  if (p) memcpy(b->data, p, len);
  return b;
}

ws__buf *ws__buf_frame(ws_server *s, int opcode, size_t len,
                       uint8_t **payload) {
  size_t hl = ws__frame_header_len(len);
  ws__buf *b;
  if (len > WS__FRAME_PAYLOAD_MAX) return NULL;
  b = ws__buf_raw(s, NULL, hl + len);
  if (b == NULL) return NULL;
  frame_header_write(b->data, opcode, len);
  b->is_ctrl = (opcode & 0x8) != 0;
  b->is_close = opcode == WSLAY_CONNECTION_CLOSE;
  b->is_http = 0;
  *payload = b->data + hl;
  return b;
}

ws__buf *ws__buf_frame_copy(ws_server *s, int opcode, const void *p,
                            size_t len) {
  uint8_t *pl;
  ws__buf *b = ws__buf_frame(s, opcode, len, &pl);
  if (b && len) memcpy(pl, p, len);
  return b;
}

void ws__buf_unref(ws_server *s, ws__buf *b) {
  if (b && --b->refs == 0) ws__free(&s->al, b);
}

static ws__buf **slot(ws__outq *q, uint32_t i) {
  return &q->slots[(q->head + i) & (q->cap - 1)];
}

/* Leaving the two inline slots goes straight to 16: a burst of replies
 * (pipelined pings) would otherwise grow 4, 8, 16, an allocation each. */
#define WS__OUTQ_FIRST_GROWTH 16

static int outq_grow(ws_server *s, ws__outq *q) {
  uint32_t ncap = q->slots == q->small ? WS__OUTQ_FIRST_GROWTH : q->cap * 2, i;
  ws__buf **ns;
  if (ncap > (1u << 26)) return WS_ENOMEM;
  ns = ws__malloc(&s->al, ncap * sizeof(*ns));
  if (ns == NULL) return WS_ENOMEM;
  for (i = 0; i < q->count; i++) ns[i] = *slot(q, i);
  if (q->slots != q->small) ws__free(&s->al, q->slots);
  q->slots = ns;
  q->cap = ncap;
  q->head = 0;
  return WS_OK;
}

/* Data goes to the tail. A control frame goes to the first frame boundary
 * after the control frames already waiting (ctrl_end), and never ahead of
 * the head when it is partially sent or an HTTP response (the 101 always
 * goes first), nor ahead of what the host's send holds (inflight).
 * Inserting shifts the entries before that index one slot towards the head,
 * which is at most a few entries. */
int ws__outq_push_any(ws_server *s, ws__outq *q, ws__buf *b) {
  uint32_t at, i;
  int head_stays;
  if (q->slots == NULL) {
    q->slots = q->small;
    q->cap = 2;
  }
  if (q->count == q->cap && outq_grow(s, q) != WS_OK) return WS_ENOMEM;
  b->refs++;
  q->bytes += b->len;
  if (!b->is_ctrl || b->is_close) {
    *slot(q, q->count++) = b;
    return WS_OK;
  }
  head_stays = q->off > 0 || (q->count > 0 && (*slot(q, 0))->is_http);
  at = head_stays ? 1u : 0u;
  if (at < q->ctrl_end) at = q->ctrl_end;
  if (at < q->inflight) at = q->inflight;
  if (at > q->count) at = q->count;
  q->head = (q->head - 1) & (q->cap - 1);
  q->count++;
  for (i = 0; i < at; i++) *slot(q, i) = *slot(q, i + 1);
  *slot(q, at) = b;
  q->nctrl++;
  q->ctrl_end = (uint16_t)(at + 1);
  return WS_OK;
}

static void outq_pop(ws_server *s, ws__outq *q) {
  ws__buf *b = *slot(q, 0);
  q->head = (q->head + 1) & (q->cap - 1);
  q->count--;
  q->off = 0;
  if (b->is_ctrl && !b->is_close && q->nctrl > 0) q->nctrl--;
  if (q->ctrl_end > 0) q->ctrl_end--;
  ws__buf_unref(s, b);
}

static void outq_shrink(ws_server *s, ws__outq *q) {
  if (q->count == 0 && q->slots != q->small && q->slots != NULL) {
    ws__free(&s->al, q->slots);
    q->slots = q->small;
    q->cap = 2;
    q->head = 0;
  }
}

/* Drops buffers from the tail until keep are left. */
static void outq_drop_tail(ws_server *s, ws__outq *q, uint32_t keep) {
  while (q->count > keep) {
    ws__buf *b = *slot(q, q->count - 1);
    q->count--;
    q->bytes -= b->len;
    ws__buf_unref(s, b);
  }
}

void ws__outq_truncate(ws_server *s, ws__outq *q) {
  uint32_t keep = q->off > 0 ? 1u : 0u, i;
  /* An unsent 101 (flushed only when the outermost library call returns,
   * so still queued while on_open runs) must precede any close frame: a
   * client would read the frame as a broken handshake. */
  if (q->count > 0 && (*slot(q, 0))->is_http) keep = 1u;
  if (keep < q->inflight) keep = q->inflight;
  outq_drop_tail(s, q, keep);
  q->nctrl = 0;
  for (i = 0; i < q->count; i++) {
    const ws__buf *b = *slot(q, i);
    if (b->is_ctrl && !b->is_close) q->nctrl++;
  }
  if (q->ctrl_end > q->count) q->ctrl_end = (uint16_t)q->count;
  outq_shrink(s, q);
}

/* What the host's send holds right now (inflight) stays until send
 * returns: its data pointer may be the last reference to a buffer, and the
 * host may close the connection from inside send. ws__outq_flush clears
 * the rest then. */
void ws__outq_clear(ws_server *s, ws__outq *q) {
  outq_drop_tail(s, q, q->inflight);
  if (q->count == 0) q->off = 0;
  q->bytes = 0;
  q->nctrl = q->ctrl_end = 0;
  outq_shrink(s, q);
}

/* Accounts n written bytes: pops every buffer they complete. */
static void outq_consume(ws_server *s, ws__outq *q, size_t n) {
  q->bytes -= n;
  while (n > 0) {
    ws__buf *b = *slot(q, 0);
    size_t left = b->len - q->off;
    if (n < left) {
      q->off += (uint32_t)n;
      return;
    }
    n -= left;
    outq_pop(s, q);
  }
}

/* A run of frames up to this many bytes in all goes out as one buffer. */
#define WS__COALESCE_MAX 2048

/* How the next write goes: the first *n of the n gathered buffers (whose
 * bytes are *want), copied into one buffer first when *run. One buffer
 * goes through send (a plain send(2) is cheaper in the kernel than
 * sendmsg(2) with one iovec). A run of small frames (pipelined pongs,
 * short replies) is copied into one buffer: the kernel takes one
 * contiguous buffer for less than many tiny iovecs, and a host without
 * sendv still makes one call for the burst. */
static void plan_write(const ws_config *cfg, const ws_iovec *iov, int *n,
                       size_t *want, int *run) {
  size_t len = 0;
  int k = 0;
  *run = 0;
  if (*n == 1) return; /* one frame (the usual reply) goes out as it is */
  while (k < *n && len + iov[k].len <= WS__COALESCE_MAX) len += iov[k++].len;
  *run = k >= 2 && (k == *n || !cfg->sendv); /* else sendv does better */
  if (*run) {
    *n = k;
    *want = len;
  } else if (!cfg->sendv) {
    *n = 1;
    *want = iov[0].len;
  }
}

static ssize_t host_write(ws_conn *c, const ws_iovec *iov, int n, int run) {
  const ws_config *cfg = &c->s->cfg;
  uint8_t buf[WS__COALESCE_MAX];
  size_t len = 0;
  int i;
  if (run) {
    for (i = 0; i < n; i++) {
      memcpy(buf + len, iov[i].base, iov[i].len);
      len += iov[i].len;
    }
    return cfg->send(c, c->transport, buf, len);
  }
  if (n > 1) return cfg->sendv(c, c->transport, iov, n);
  return cfg->send(c, c->transport, iov[0].base, iov[0].len);
}

long ws__outq_flush(ws_conn *c) {
  ws_server *s = c->s;
  ws__outq *q = &c->q;
  long total = 0;
  ws_iovec iov[WS__IOV_MAX];
  /* Called again from inside the host's send (ws_conn_writable, a feed
   * that flushes): the outer call owns the queue's head; it goes on. */
  if (q->inflight) return 0;
  while (q->count > 0) {
    int n = 0, run;
    size_t want = 0;
    ssize_t w;
    uint32_t i;
    for (i = 0; i < q->count && n < WS__IOV_MAX; i++) {
      ws__buf *b = *slot(q, i);
      size_t off = i == 0 ? q->off : 0;
      iov[n].base = b->data + off;
      iov[n].len = b->len - off;
      want += iov[n].len;
      n++;
    }
    plan_write(&s->cfg, iov, &n, &want, &run);
    q->inflight = (uint16_t)n;
    w = host_write(c, iov, n, run);
    q->inflight = 0;
    if (w < 0 || (size_t)w > want) w = -1; /* more than asked: a host bug */
    /* Counted first: a host that closes from inside send still sent them
     * (the server outlives this call: its free is deferred). */
    if (w > 0) s->st.bytes_out += (uint64_t)w;
    /* The host may have closed this connection (or destroyed the server)
     * from inside send: the queue is gone, whatever it reports. */
    if (c->state == WS__DEAD) {
      ws__outq_clear(s, q);
      return -1;
    }
    if (w < 0) return -1;
    if (w > 0) {
      /* Saturated: one flush can write more than a 32-bit long holds
       * (frames queued by reference), and callers only test > 0. */
      total = w > LONG_MAX - total ? LONG_MAX : total + (long)w;
      outq_consume(s, q, (size_t)w);
    }
    if ((size_t)w < want) break; /* would block */
  }
  outq_shrink(s, q);
  return total;
}
