/*
 * Connection lifecycle: creation, the feed and writable entry points, the
 * close handshake's states, deadlines per state, and the end of a
 * connection. Bytes themselves are handled by upgrade.c (HTTP) and frame.c
 * (WebSocket); output by outq.c.
 */
#include <limits.h>
#include <string.h>

#include "internal.h"

#define NO_DEADLINE UINT64_MAX

/* Control frames waiting ahead of queued data. Each one queued behind
 * others costs a shift of those (outq.c), so a peer that pings without
 * reading its pongs must not pile up more than this: past it the queue
 * policy applies, as for bytes. */
#define WS__CTRL_QUEUED_MAX 1024

int ws_conn_new(ws_server *s, void *transport, ws_conn **out) {
  ws_conn *c;
  if (s == NULL || out == NULL || s->destroying) return WS_EINVAL;
  c = ws__malloc(&s->al, sizeof(*c));
  if (c == NULL) return WS_ENOMEM;
  memset(c, 0, sizeof(*c));
  c->s = s;
  c->transport = transport;
  c->heap_idx = UINT32_MAX;
  c->state = WS__HANDSHAKE;
  c->last_read = c->last_write = s->now; /* handshake deadline base */
  if (s->cfg.handshake_timeout_ms &&
      ws__timer_set(s, c, ws__after_ms(s->now, s->cfg.handshake_timeout_ms)) !=
          WS_OK) {
    ws__free(&s->al, c);
    return WS_ENOMEM;
  }
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->st.conns_pending++;
  *out = c;
  return WS_OK;
}

void ws__conn_mark_dirty(ws_conn *c) {
  ws_server *s = c->s;
  if (c->flags & WS__F_DIRTY) return;
  c->flags |= WS__F_DIRTY;
  c->dirty_next = s->dirty;
  s->dirty = c;
}

ws_conn *ws__dirty_pop(ws_server *s) {
  ws_conn *c = s->dirty;
  s->dirty = c->dirty_next;
  c->dirty_next = NULL;
  c->flags &= (uint8_t)~WS__F_DIRTY;
  return c;
}

/* ---- deadlines ------------------------------------------------------- */

static uint64_t after(uint64_t base, uint32_t ms) {
  return ms ? ws__after_ms(base, ms) : NO_DEADLINE;
}

/* The earliest deadline of an open connection. Reads and writes move the
 * timestamps without touching the heap, so an entry may fire early; it is
 * then simply re-armed. */
static uint64_t open_deadline(const ws_conn *c) {
  const ws_config *cfg = &c->s->cfg;
  uint64_t d = after(c->last_read, cfg->idle_timeout_ms);
  if (!(c->flags & WS__F_PING_SENT))
    d = WS__MIN(d, after(c->last_read, cfg->ping_interval_ms));
  if (c->q.count > 0) d = WS__MIN(d, after(c->last_write, cfg->write_timeout_ms));
  return d;
}

void ws__conn_rearm(ws_conn *c) {
  uint64_t d = c->state == WS__OPEN ? open_deadline(c) : NO_DEADLINE;
  if (d == NO_DEADLINE)
    ws__timer_clear(c->s, c);
  else if (ws__timer_set(c->s, c, d) != WS_OK)
    ws__conn_finish(c, WS_CLOSE_ABNORMAL, "out of memory");
}

/* With close_timeout_ms 0 the close handshake has no deadline of its own,
 * but the others still hold: the peer silent that long (since our close or
 * its last byte, its own close included), or output that made no progress
 * that long, ends a closing connection as it would an open one. Else a
 * peer gone without a FIN, or one that never reads, would hold it
 * forever. */
static uint64_t closing_deadline(const ws_conn *c) {
  const ws_config *cfg = &c->s->cfg;
  uint64_t d = after(c->last_read, cfg->idle_timeout_ms);
  if (c->q.count > 0)
    d = WS__MIN(d, after(c->last_write, cfg->write_timeout_ms));
  return d;
}

/* CLOSING and DRAINING end by close_timeout at the latest (or, without
 * one, closing_deadline), or during a graceful shutdown at its drain
 * deadline if that is later: the host gave the queued data that long to
 * go out. */
void ws__conn_arm_close_timer(ws_conn *c) {
  ws_server *s = c->s;
  uint32_t ms = s->cfg.close_timeout_ms;
  uint64_t d = ms ? ws__after_ms(s->now, ms) : closing_deadline(c);
  if (s->shutting_down == 1 && s->shutdown_deadline > d)
    d = s->shutdown_deadline;
  if (d == NO_DEADLINE) {
    ws__timer_clear(s, c);
  } else if (ws__timer_set(s, c, d) != WS_OK) {
    ws__conn_finish(c, WS_CLOSE_ABNORMAL, "out of memory");
  }
}

/* Without a close timeout the idle deadline stands in for it, and it
 * counts from our close, not from the peer's last byte long before (a
 * slow consumer), nor from ws_conn_new (a request answered late). */
void ws__conn_start_closing(ws_conn *c) {
  c->last_read = c->s->now;
  ws__conn_arm_close_timer(c);
}

/* Marked sent even when out of memory: this silence's ping is skipped
 * (the idle deadline still ends it), where leaving the ping due would have
 * the tick pop this connection again and again, forever. Past max_queued
 * it goes only when none of our control frames waits unsent: a slow reader
 * still takes it at the next frame boundary and its pong keeps it alive,
 * but for a peer that does not read at all, one ping per silence would
 * grow the queue without bound when write_timeout_ms is 0. Nor past
 * WS__CTRL_QUEUED_MAX unsent: pushed past the queue policy, pings of a
 * peer that sends a byte per silence and reads none went over that bound
 * (each shifting all the others), and past 65535 the 16-bit count wrapped,
 * letting the peer's pongs in again past 1024. */
static void send_ping(ws_conn *c) {
  c->flags |= WS__F_PING_SENT;
  if (c->q.nctrl >= WS__CTRL_QUEUED_MAX ||
      (c->q.bytes + 7 > c->s->cfg.max_queued && c->q.nctrl > 0))
    return; /* 7: 2 + "wsmux" */
  ws__conn_push_new(c, ws__buf_frame_copy(c->s, WSLAY_PING, "wsmux", 5));
}

/* A closing connection without a close timeout (see closing_deadline):
 * reads and writes since it was armed may have moved the deadline. The
 * write deadline ends it with 4002, as in OPEN: the socket took nothing,
 * so our close frame did not go out (the peer's code, when it sent one,
 * stands). A drain deadline due too ends it as the drain does. */
static void closing_expired(ws_conn *c) {
  ws_server *s = c->s;
  uint64_t now = s->now;
  int drained = s->shutting_down == 1 && now >= s->shutdown_deadline;
  if (now < closing_deadline(c)) {
    ws__conn_arm_close_timer(c);
  } else if (!drained && !c->close_recv && c->q.count > 0 &&
             now >= after(c->last_write, s->cfg.write_timeout_ms)) {
    ws__log(s, WS_LOG_INFO, "write deadline passed");
    ws__conn_finish(c, WS_CLOSE_TIMEOUT, "write timeout");
  } else {
    ws__conn_cut(c, WS_CLOSE_ABNORMAL, "close handshake timeout");
  }
}

void ws__conn_expired(ws_conn *c) {
  ws_server *s = c->s;
  const ws_config *cfg = &s->cfg;
  uint64_t now = s->now;
  switch (c->state) {
  case WS__HANDSHAKE:
    ws__log(s, WS_LOG_INFO, "handshake deadline passed");
    ws__upgrade_expired(c);
    return;
  case WS__OPEN:
    if (c->q.count > 0 && now >= after(c->last_write, cfg->write_timeout_ms)) {
      ws__log(s, WS_LOG_INFO, "write deadline passed");
      ws__conn_finish(c, WS_CLOSE_TIMEOUT, "write timeout");
      return;
    }
    if (now >= after(c->last_read, cfg->idle_timeout_ms)) {
      ws__log(s, WS_LOG_INFO, "read deadline passed");
      ws_conn_close(c, WS_CLOSE_TIMEOUT, "idle timeout");
      return;
    }
    if (!(c->flags & WS__F_PING_SENT) &&
        now >= after(c->last_read, cfg->ping_interval_ms))
      send_ping(c);
    ws__conn_rearm(c);
    return;
  default:
    if (cfg->close_timeout_ms == 0)
      closing_expired(c);
    else
      ws__conn_cut(c, WS_CLOSE_ABNORMAL, "close handshake timeout");
  }
}

/* The peer's reason when on_close reports the peer's code: on_close's
 * code and reason come from the same frame, whichever deadline ends the
 * close handshake (its echo may still wait behind a blocked socket). */
static const char *peer_reason(const ws_conn *c) {
  return c->buf ? (const char *)c->buf : "";
}

void ws__conn_cut(ws_conn *c, int code, const char *ours) {
  if (c->close_recv)
    ws__conn_finish(c, c->close_sent, peer_reason(c));
  else
    ws__conn_finish(c, c->close_sent ? c->close_sent : code, ours);
}

/* ---- output ---------------------------------------------------------- */

static void start_write_clock(ws_conn *c) {
  uint32_t wt = c->s->cfg.write_timeout_ms;
  uint64_t d = ws__after_ms(c->s->now, wt);
  c->last_write = c->s->now;
  if (wt && c->state == WS__OPEN &&
      (c->heap_idx == UINT32_MAX || d < c->deadline))
    ws__timer_set(c->s, c, d);
}

static void apply_queue_policy(ws_conn *c, int ctrl_full) {
  ws_server *s = c->s;
  int state = c->state;
  s->st.drops_queue_full++;
  if (s->cfg.queue_policy == WS_QUEUE_DROP) return;
  if (ctrl_full)
    ws__log(s, WS_LOG_WARN, "%d control frames unsent: closing slow consumer",
            WS__CTRL_QUEUED_MAX);
  else
    ws__log(s, WS_LOG_WARN, "send queue over %zu bytes: closing slow consumer",
            s->cfg.max_queued);
  if (c->state != state) return; /* on_log closed it: that close stands */
  ws__conn_fail(c, WS_CLOSE_SLOW_CONSUMER, "slow consumer");
}

int ws__conn_sendable(const ws_conn *c) {
  if (c->state == WS__OPEN) return WS_OK;
  return c->state == WS__HANDSHAKE ? WS_ESTATE : WS_ECLOSED;
}

/* A control frame past WS__CTRL_QUEUED_MAX: the bound try_queue hit when
 * it was not the bytes. */
static int ctrl_bound_hit(const ws_conn *c, const ws__buf *b) {
  return b->is_ctrl && !b->is_close && c->q.nctrl >= WS__CTRL_QUEUED_MAX;
}

/* Queues b; never runs a host callback: a full queue is WS_EQUEUEFULL,
 * its policy left to the caller (ctrl_bound_hit says which bound). Inline
 * in both callers: every reply passes here. */
static inline int try_queue(ws_conn *c, ws__buf *b) {
  ws_server *s = c->s;
  int was_empty = c->q.count == 0;
  size_t len = b->len;
  /* Only open connections take frames: one still in its handshake (in
   * on_upgrade, or answering plain HTTP in on_http) may already be in a
   * group, and a frame there would go out before the 101 or inside an
   * HTTP answer. */
  if (c->state != WS__OPEN) return ws__conn_sendable(c);
  /* A frame that could never fit even an empty queue is the sender's
   * mistake, not this peer's slowness: refused, the connection untouched.
   * Not a pong: a peer may ping with 125 bytes, which must be answered
   * (RFC 6455 5.5.2). Under a cap smaller than its pong, that pong counts
   * as the cap: it goes alone, on an empty queue. */
  if (len > s->cfg.max_queued) {
    if (!b->is_ctrl) return WS_ETOOBIG;
    len = s->cfg.max_queued;
  }
  /* Not q.bytes + len > max: frames queued by reference (a prepared one,
   * again and again) can add up past SIZE_MAX with a 32-bit size_t and a
   * max_queued near it, and the sum would wrap under the cap. */
  if (ctrl_bound_hit(c, b) || c->q.bytes > s->cfg.max_queued - len)
    return WS_EQUEUEFULL;
  /* Room for the write deadline first: queued data must not wait without
   * one (start_write_clock then cannot fail). */
  if (was_empty && s->cfg.write_timeout_ms && c->heap_idx == UINT32_MAX &&
      ws__timer_reserve(s) != WS_OK)
    return WS_ENOMEM;
  if (ws__outq_push(s, &c->q, b) != WS_OK) return WS_ENOMEM;
  if (!b->is_ctrl) s->st.msgs_out++; /* messages, as msgs_in: not pongs */
  if (was_empty) start_write_clock(c);
  ws__conn_mark_dirty(c);
  return WS_OK;
}

int ws__conn_queue(ws_conn *c, ws__buf *b) {
  int rc = try_queue(c, b);
  /* Nothing moved since try_queue: the bound it hit is still hit. */
  if (rc == WS_EQUEUEFULL) apply_queue_policy(c, ctrl_bound_hit(c, b));
  return rc;
}

int ws__conn_try_queue(ws_conn *c, ws__buf *b) { return try_queue(c, b); }

void ws__conn_queue_full(ws_conn *c) {
  if (c->state == WS__OPEN)
    apply_queue_policy(c, 0);
  else /* a callback closed it meanwhile: dropped, nothing to apply */
    c->s->st.drops_queue_full++;
}

int ws__conn_push(ws_conn *c, ws__buf *b) {
  if (c->q.count == 0) c->last_write = c->s->now;
  if (ws__outq_push(c->s, &c->q, b) != WS_OK) return WS_ENOMEM;
  ws__conn_mark_dirty(c);
  return WS_OK;
}

int ws__conn_push_new(ws_conn *c, ws__buf *b) {
  int rc;
  if (b == NULL) return WS_ENOMEM;
  rc = ws__conn_push(c, b);
  ws__buf_unref(c->s, b);
  return rc;
}

static void signal_want_write(ws_conn *c, int want) {
  int on = (c->flags & WS__F_WANT_WRITE) != 0;
  if (on == want) return;
  c->flags ^= WS__F_WANT_WRITE;
  if (c->s->cfg.want_write) c->s->cfg.want_write(c, c->transport, want);
}

/* Where a blocked connection tries the socket anyway: max_queued less
 * max_queued >> k, k = 1, 2, ...: at half of it, then at each further
 * half of the room left. k is the first point above what is queued. The
 * same for control frames against WS__CTRL_QUEUED_MAX: a burst of pings
 * is small in bytes, and its pongs must not reach that bound unsent. */
#define WS__SIZE_BITS (sizeof(size_t) * CHAR_BIT)
static size_t retry_point(size_t max, unsigned k) {
  return k < WS__SIZE_BITS ? max - (max >> k) : max;
}
static uint8_t next_retry(size_t max, size_t bytes) {
  unsigned k = 1;
  while (k < WS__SIZE_BITS && retry_point(max, k) <= bytes) k++;
  return (uint8_t)k;
}

/* blocked: the host's send last took less than offered and write interest
 * is armed. The socket was full then; until the host says it is writable
 * again (ws_conn_writable), a send per message queued would mostly be a
 * system call that fails (a peer that stopped reading, on every
 * broadcast). See retry_point for when to try anyway. */
static void conn_flush(ws_conn *c, int blocked) {
  long w;
  int tried = c->q.count > 0 && !blocked;
  if (c->state == WS__DEAD) return;
  w = tried ? ws__outq_flush(c) : 0;
  if (w < 0) {
    ws__conn_finish(c, WS_CLOSE_ABNORMAL, "send failed");
    return;
  }
  if (w > 0) c->last_write = c->s->now;
  /* Short: the next attempt before ws_conn_writable comes at the next
   * retry point. A peer that keeps reading has drained the socket since,
   * and a backlog sent before the host's next writable event (a tick's
   * posts, broadcasts from the loop) must not be counted against
   * max_queued all at once; a peer that reads nothing costs one failing
   * call per halving. */
  if (tried && c->q.count > 0) {
    c->q.retry_k = next_retry(c->s->cfg.max_queued, c->q.bytes);
    c->q.ctrl_retry_k = next_retry(WS__CTRL_QUEUED_MAX, c->q.nctrl);
  }
  signal_want_write(c, c->q.count > 0);
  /* on_close gets the peer's reason when the peer sent a close frame. */
  if (c->state == WS__DRAINING && c->q.count == 0)
    ws__conn_cut(c, WS_CLOSE_NORMAL, "");
}

void ws__conn_flush(ws_conn *c) {
  conn_flush(c, (c->flags & WS__F_WANT_WRITE) != 0 &&
                    c->q.bytes < retry_point(c->s->cfg.max_queued,
                                             c->q.retry_k) &&
                    c->q.nctrl < retry_point(WS__CTRL_QUEUED_MAX,
                                             c->q.ctrl_retry_k));
}

/* One more try at the socket before the connection is cut (a shutdown's
 * deadline): a blocked one's peer may have read since its socket was
 * full, and the host's writable event may not come first. */
void ws__conn_retry_now(ws_conn *c) {
  if (c->q.count == 0) return;
  c->q.retry_k = 0; /* retry_point(max, 0) is 0: not blocked */
  ws__conn_mark_dirty(c);
}

/* ---- closing --------------------------------------------------------- */

/* Queues a close frame behind what is already queued. */
static void queue_close_frame(ws_conn *c, int code, const char *reason) {
  uint8_t p[125];
  size_t rl = reason ? WS__MIN(strlen(reason), sizeof(p) - 2) : 0;
  ws__buf *b;
  p[0] = (uint8_t)(code >> 8);
  p[1] = (uint8_t)code;
  if (rl) memcpy(p + 2, reason, rl);
  b = ws__buf_frame_copy(c->s, WSLAY_CONNECTION_CLOSE, p, 2 + rl);
  c->close_sent = (uint16_t)code;
  ws__conn_push_new(c, b); /* out of memory: the close timer ends it */
}

void ws__conn_fail(ws_conn *c, int code, const char *reason) {
  int state;
  if (c->state == WS__HANDSHAKE) {
    ws__conn_finish(c, code, reason);
    return;
  }
  if (c->state != WS__OPEN && c->state != WS__CLOSING) return;
  state = c->state;
  ws__log(c->s, WS_LOG_INFO, "failing connection: %d %s", code, reason);
  /* on_log may have closed it (or destroyed the server) meanwhile: that
   * close stands (truncating now would drop its close frame). */
  if (c->state != state) return;
  /* A slow consumer's queue is dropped (its size is the problem); after a
   * protocol error what was already queued (the 101, replies to earlier
   * messages) still goes out, ahead of the close frame. */
  if (code == WS_CLOSE_SLOW_CONSUMER) ws__outq_truncate(c->s, &c->q);
  if (c->state == WS__OPEN) queue_close_frame(c, code, reason);
  c->state = WS__DRAINING;
  ws__conn_mark_dirty(c);
  /* Failed while CLOSING: the close handshake began at our close, and its
   * deadline stands (a peer's bad frame must not buy it more time). */
  if (state == WS__CLOSING) return;
  ws__conn_start_closing(c);
}

int ws__close_code_valid(int code) {
  if (code >= 3000 && code <= 4999) return 1;
  if (code < 1000 || code > 1014) return 0;
  return code != 1004 && code != 1005 && code != 1006;
}

int ws_conn_close(ws_conn *c, int code, const char *reason) {
  if (c == NULL || !ws__close_code_valid(code) ||
      (reason && strlen(reason) > 123) ||
      (reason && ws__utf8_validate(0, (const uint8_t *)reason,
                                   strlen(reason)) != WS__UTF8_ACCEPT))
    return WS_EINVAL;
  if (c->state == WS__HANDSHAKE) {
    ws__enter(c->s);
    ws__conn_finish(c, code, reason ? reason : "");
    ws__leave(c->s);
    return WS_OK;
  }
  if (c->state != WS__OPEN) return WS_ECLOSED;
  ws__enter(c->s);
  queue_close_frame(c, code, reason);
  c->state = WS__CLOSING;
  ws__conn_start_closing(c);
  ws__leave(c->s);
  return WS_OK;
}

void ws_conn_abort(ws_conn *c) {
  if (c == NULL || c->state == WS__DEAD) return;
  ws__enter(c->s);
  ws__conn_finish(c, WS_CLOSE_ABNORMAL, "aborted");
  ws__leave(c->s);
}

static void unlink_live(ws_conn *c) {
  ws_server *s = c->s;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = NULL;
  c->next = s->dead;
  s->dead = c;
}

void ws__conn_finish(ws_conn *c, int code, const char *reason) {
  ws_server *s = c->s;
  if (c->state == WS__DEAD) return;
  c->state = WS__DEAD;
  ws__timer_clear(s, c);
  unlink_live(c);
  if (c->flags & WS__F_COUNTED)
    s->st.conns_open--;
  else
    s->st.conns_pending--;
  ws__outq_clear(s, &c->q);
  if (c->flags & WS__F_OPENED) {
    ws__stat_close(s, code);
    if (s->cfg.on_close)
      s->cfg.on_close(c, code, reason ? reason : "", s->cfg.user_data);
  }
  /* After on_close, so it can still read the user and device id; the
   * connection is DEAD already, so nothing can be queued on it. */
  ws__registry_remove(c);
  s->cfg.close(c, c->transport);
  /* Counted until its transport is closed: a shutdown is over only then.
   * A callback above (on_close) may end the others, and the last of them
   * must not run on_shutdown while this socket is still the host's. */
  s->nconns--;
  ws__shutdown_check(s);
}

/* The rx (whose buffer a handler may still be reading through msg->text)
 * and the message buffer go only here, when no library frame is on the
 * stack. */
void ws__conn_free(ws_conn *c) {
  ws_server *s = c->s;
  if (c->rx) ws__rx_release(s, c->rx);
  ws__request_free(&s->al, c->req);
  ws__free(&s->al, c->buf);
  ws__free(&s->al, c->subprotocol);
  ws__free(&s->al, c);
}

/* ---- entry points ---------------------------------------------------- */

int ws_conn_feed(ws_conn *c, const void *data, size_t len) {
  const uint8_t *p = data;
  ws_server *s;
  int rc;
  if (c == NULL || (data == NULL && len > 0)) return WS_EINVAL;
  if (c->state == WS__DEAD || c->state == WS__DRAINING || c->s->destroying)
    return WS_ECLOSED;
  /* From a callback of this same feed: the outer call is still reading
   * (the request buffer, wslay's context) and its bytes come first. */
  if (c->marks & WS__M_FEEDING) return WS_ESTATE;
  s = c->s;
  ws__enter(s);
  c->marks |= WS__M_FEEDING;
  s->st.bytes_in += len;
  if (c->state == WS__HANDSHAKE) {
    long used = ws__upgrade_feed(c, p, len);
    /* Refused or ended: nothing more is read. (Not used = len: a long
     * cannot hold a feed over 2 GiB where it is 32 bits.) */
    if (used < 0) {
      len = 0;
    } else {
      p += used;
      len -= (size_t)used;
    }
  }
  if (len > 0 && (c->state == WS__OPEN || c->state == WS__CLOSING)) {
    c->last_read = s->now;
    if (c->flags & WS__F_PING_SENT) {
      /* The heap entry was armed without a ping due; the next one is due
       * earlier than it, which the lazy re-arm cannot see (once per
       * ping interval, not per read). */
      c->flags &= (uint8_t)~WS__F_PING_SENT;
      if (c->state == WS__OPEN) ws__conn_rearm(c);
    }
    ws__frame_feed(c, p, len);
  }
  /* Flush now, as the outermost ws__leave would, so that a close this feed
   * causes (a failed send, a drained close handshake) is in the result.
   * The whole list, until it is empty: c may stand behind connections a
   * handler wrote to, and a flush of c left on the list would run again in
   * ws__leave, after the result (a send failing there closed c behind a
   * WS_OK). Nothing then runs between the result and ws__leave. */
  if (s->depth == 1) ws__flush_dirty(s);
  rc = c->state == WS__OPEN || c->state == WS__HANDSHAKE ||
               c->state == WS__CLOSING
           ? WS_OK
           : WS_ECLOSED;
  c->marks &= (uint8_t)~WS__M_FEEDING;
  ws__leave(s);
  return rc;
}

int ws_conn_writable(ws_conn *c) {
  int rc;
  if (c == NULL) return WS_EINVAL;
  if (c->state == WS__DEAD || c->s->destroying) return WS_ECLOSED;
  ws__enter(c->s);
  conn_flush(c, 0);
  /* As in ws_conn_feed: what the flush made dirty (a callback writing to
   * c) goes out before the result, not after it in ws__leave. */
  if (c->s->depth == 1) ws__flush_dirty(c->s);
  rc = c->state == WS__DEAD ? WS_ECLOSED : WS_OK;
  ws__leave(c->s);
  return rc;
}

int ws_conn_want_write(const ws_conn *c) {
  return c && c->state != WS__DEAD && c->q.count > 0;
}

/* ---- accessors ------------------------------------------------------- */

void *ws_conn_transport(const ws_conn *c) { return c ? c->transport : NULL; }
ws_server *ws_conn_server(const ws_conn *c) { return c ? c->s : NULL; }
void *ws_conn_user_data(const ws_conn *c) { return c ? c->user_data : NULL; }
void ws_conn_set_user_data(ws_conn *c, void *ud) {
  if (c) c->user_data = ud;
}
const char *ws_conn_device_id(const ws_conn *c) {
  return c ? c->device_id : NULL;
}
const ws_request *ws_conn_request(const ws_conn *c) {
  return c ? c->req : NULL;
}
const char *ws_conn_subprotocol(const ws_conn *c) {
  return c ? c->subprotocol : NULL;
}
