/*
 * The server: configuration and defaults, lifecycle, the tick entry point,
 * graceful shutdown, counters, and the library-frame bookkeeping that makes
 * re-entrancy safe (ws__enter / ws__leave: output is flushed and closed
 * connections are freed only when the outermost library call returns).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void ws_config_defaults(ws_config *cfg, size_t struct_size) {
  if (cfg == NULL) return;
  memset(cfg, 0, struct_size);
  /* Every version's struct holds the fields below (the first ended before
   * wake); a smaller one was not made by ws_config_init, and writing them
   * would go past it. Left zeroed, ws_server_new refuses it. */
  if (struct_size < offsetof(ws_config, wake)) return;
  cfg->struct_size_ = struct_size;
  cfg->path = "/ws";
  cfg->device_param = "device_id";
  cfg->device_required = 1;
  cfg->duplicate_policy = WS_DUP_REPLACE;
  cfg->keep_headers = 0;
  cfg->max_handshake = 8192;
  cfg->max_headers = 64;
  cfg->max_device_id = 128;
  cfg->max_message = 65536;
  cfg->max_queued = 1u << 20;
  cfg->max_connections = 100000;
  cfg->queue_policy = WS_QUEUE_CLOSE;
  cfg->bad_message_policy = WS_BADMSG_REPLY;
  cfg->handshake_timeout_ms = 10000;
  cfg->idle_timeout_ms = 60000;
  cfg->ping_interval_ms = 30000;
  cfg->write_timeout_ms = 60000;
  cfg->close_timeout_ms = 5000;
  if (struct_size >= offsetof(ws_config, max_posted) + sizeof(cfg->max_posted))
    cfg->max_posted = 16u << 20;
}

/* What is wrong with c, or NULL. */
static const char *config_problem(const ws_config *c) {
  const ws_allocator *a = &c->alloc;
  size_t i;
  if (c->send == NULL || c->close == NULL) return "send or close missing";
  if ((a->malloc || a->realloc || a->free) &&
      !(a->malloc && a->realloc && a->free))
    return "alloc needs malloc, realloc and free, or none";
  /* Buffers are indexed with 32 bits (every byte per connection counts). */
  if (c->max_message > UINT32_MAX / 2 || c->max_handshake > UINT32_MAX / 2)
    return "max_message or max_handshake over 2^31-1";
  if (c->max_handshake < 64) return "max_handshake under 64";
  if (c->max_headers == 0 || c->max_message == 0 || c->max_queued == 0 ||
      c->max_connections == 0 || c->max_device_id == 0 || c->max_posted == 0)
    return "a limit is 0";
  if (c->path && c->path[0] != '/') return "path does not start with '/'";
  if (c->device_required && (c->device_param == NULL || !c->device_param[0]))
    return "device_required without device_param";
  if ((unsigned)c->queue_policy > WS_QUEUE_DROP ||
      (unsigned)c->duplicate_policy > WS_DUP_REPLACE_SAME_USER ||
      (unsigned)c->bad_message_policy > WS_BADMSG_CLOSE)
    return "bad policy value";
  if (c->subprotocols_count && c->subprotocols == NULL)
    return "subprotocols_count without subprotocols";
  for (i = 0; i < c->subprotocols_count; i++)
    if (!ws__is_token(c->subprotocols[i]))
      return "a subprotocol is NULL or not a token";
  if (c->allowed_origins_count && c->allowed_origins == NULL)
    return "allowed_origins_count without allowed_origins";
  return NULL;
}

static void log_refusal(const ws_config *c, const char *why) {
  char line[96];
  if (c->on_log == NULL) return;
  (void)snprintf(line, sizeof line, "ws_server_new: %s", why); /* may cut */
  c->on_log(NULL, WS_LOG_ERROR, line, c->user_data);
}

/* on_log and user_data lie before wake, inside every config size accepted
 * below: a struct of any version has them. */
_Static_assert(offsetof(ws_config, on_log) < offsetof(ws_config, wake) &&
                   offsetof(ws_config, user_data) < offsetof(ws_config, wake),
               "on_log and user_data must stay before wake in ws_config");

/* A config from an older header is shorter: the fields it lacks keep their
 * defaults. One not made by ws_config_init is refused; it is logged only
 * when zeroed (memset, then fields set: struct_size_ 0), as its on_log can
 * then be trusted. Any other size may be an uninitialised struct (its
 * on_log garbage), which a newer header's larger size cannot be told
 * apart from. */
static int config_import(ws_config *full, const ws_config *cfg) {
  size_t n = cfg->struct_size_;
  const char *why;
  if (n < offsetof(ws_config, wake) || n > sizeof(*full)) {
    if (n == 0) log_refusal(cfg, "cfg not made by ws_config_init");
    return WS_EINVAL;
  }
  ws_config_defaults(full, sizeof(*full));
  memcpy(full, cfg, n);
  full->struct_size_ = sizeof(*full);
  /* The only frames queued past the cap are one close and, below it, one
   * ping (conn.c): a cap within WS__QUEUE_SLACK of SIZE_MAX could wrap
   * the queued-byte count. Such a cap means "no limit" anyway. */
  if (full->max_queued > SIZE_MAX - WS__QUEUE_SLACK)
    full->max_queued = SIZE_MAX - WS__QUEUE_SLACK;
  if ((why = config_problem(full)) == NULL) return WS_OK;
  log_refusal(full, why);
  return WS_EINVAL;
}

int ws_server_new(const ws_config *cfg, ws_server **out) {
  ws__alloc al;
  ws_config full;
  ws_server *s;
  if (cfg == NULL || out == NULL || config_import(&full, cfg) != WS_OK)
    return WS_EINVAL;
  if (ws__alloc_init(&al, &full.alloc) != WS_OK) return WS_EINVAL;
  s = ws__malloc(&al, sizeof(*s));
  if (s == NULL) return WS_ENOMEM;
  memset(s, 0, sizeof(*s));
  s->cfg = full;
  s->al = al;
  ws__hash_key_init(s->hash_key, s);
  if (ws__post_init(s) != WS_OK) {
    ws__free(&al, s);
    return WS_ENOMEM;
  }
  *out = s;
  return WS_OK;
}

/* Frees the connections ended since the outermost library frame began. */
static void free_dead(ws_server *s) {
  while (s->dead) {
    ws_conn *c = s->dead;
    s->dead = c->next;
    ws__conn_free(c);
  }
}

static void server_destroy(ws_server *s) {
  const ws__alloc al = s->al;
  free_dead(s);
  ws__registry_free(s);
  ws__prepared_free_all(s);
  ws__rx_pool_free(s);
  ws__post_free(s);
  ws__hdrs_free(s);
  ws__free(&al, s->heap);
  ws__free(&al, s);
}

static void finish_all(ws_server *s, int code, const char *reason) {
  while (s->conns) ws__conn_finish(s->conns, code, reason);
}

/* Calls fn once on each connection there is when it starts, in list
 * order. fn may run host callbacks that end any connection (unlinked, its
 * memory kept until the outermost return) or make new ones (at the head):
 * those are not this pass's, or a host that accepts one in each close
 * callback would keep it going. The pass marks its connections first, so
 * that a walk started again from the head (when fn ended the one it was
 * to go on to) passes over the new ones and those done. Nothing is
 * allocated: a shutdown cannot fail for want of memory. */
static void for_each_now(ws_server *s, void (*fn)(ws_conn *c)) {
  ws_conn *c, *next;
  for (c = s->conns; c; c = c->next) c->marks |= WS__M_PASS;
  for (c = s->conns; c; c = next) {
    next = c->next;
    if (!(c->marks & WS__M_PASS)) continue;
    c->marks &= (uint8_t)~WS__M_PASS;
    fn(c);
    if (next && next->state == WS__DEAD) next = s->conns;
  }
}

/* The drain's end cuts each close handshake as its close timeout would:
 * on_close gets the code the connection closed with (the shutdown's 1001,
 * the host's own, or the peer's, with the peer's reason), 1001 for one
 * that has none. */
static void cut_at_deadline(ws_conn *c) {
  ws__conn_cut(c, WS_CLOSE_GOING_AWAY, "shutdown deadline");
}

static void finish_draining(ws_server *s) {
  for_each_now(s, cut_at_deadline);
}

void ws_server_free(ws_server *s) {
  if (s == NULL || s->destroying) return;
  ws__enter(s);
  s->destroying = 1;
  ws__post_close(s); /* on_close below may post: refused, not lost */
  finish_all(s, WS_CLOSE_ABNORMAL, "server destroyed");
  ws__leave(s);
}

void ws__flush_dirty(ws_server *s) {
  while (s->dirty) {
    ws_conn *c = ws__dirty_pop(s);
    if (!s->destroying) ws__conn_flush(c);
  }
}

/* Flushing may run host callbacks that call back into the library; depth
 * stays 1 meanwhile so those calls do not recurse into this loop. */
int ws__leave_outer(ws_server *s) {
  ws__flush_dirty(s);
  free_dead(s);
  s->depth = 0;
  if (!s->destroying) return 0;
  server_destroy(s);
  return 1;
}

void ws__log(ws_server *s, int level, const char *fmt, ...) {
  char line[256];
  va_list ap;
  if (s->cfg.on_log == NULL) return;
  va_start(ap, fmt);
  (void)vsnprintf(line, sizeof(line), fmt, ap); /* a longer line is cut */
  va_end(ap);
  s->cfg.on_log(s, level, line, s->cfg.user_data);
}

static int next_timeout(ws_server *s, int timers) {
  if (s->shutting_down == 1) {
    uint64_t d = s->shutdown_deadline > s->now ? s->shutdown_deadline - s->now
                                                : 0;
    if (timers < 0 || d < (uint64_t)timers) return d > INT32_MAX ? INT32_MAX
                                                                 : (int)d;
  }
  return timers;
}

/* The shutdown's deadline: one more try at each blocked connection's
 * socket, which its peer may have read since it was full, before what is
 * left is cut. Before the timers run: a close timer due at the same time
 * (a drain as long as close_timeout_ms) would cut it first. */
static void retry_before_the_cut(ws_server *s) {
  ws_conn *c;
  for (c = s->conns; c; c = c->next) ws__conn_retry_now(c);
  ws__flush_dirty(s);
}

int ws_server_tick(ws_server *s, uint64_t now_ms) {
  int next, ended_before;
  if (s == NULL) return -1;
  ended_before = s->shutting_down == 2;
  /* The host's clock has any origin: the first tick fixes it, so what came
   * before (connections made, deadlines armed at 0) counts from there. */
  if (!s->clock_set) {
    s->clock_set = 1;
    s->clock_base = now_ms;
  }
  now_ms = now_ms > s->clock_base ? now_ms - s->clock_base : 0;
  if (now_ms > s->now) s->now = now_ms; /* time never goes back */
  ws__enter(s);
  /* From a callback a post's delivery ran, nothing fires: a deadline (the
   * shutdown's above all) would end receivers that post has not reached. */
  if (!s->post_draining) {
    int cut;
    if (!s->shutting_down) ws__post_drain(s, WS__POST_TICK_DELIVERIES);
    cut = s->shutting_down == 1 && s->now >= s->shutdown_deadline;
    if (cut) retry_before_the_cut(s);
    if (!s->destroying) ws__timer_run(s);
    /* Rechecked: the flushes' callbacks may have ended the drain (2), and
     * connections refused after it must not be cut here. */
    if (cut && !s->destroying && s->shutting_down == 1) {
      /* What the drain (a deferred shutdown's 1001s) queued goes out
       * before what is left is cut. */
      ws__flush_dirty(s);
      finish_draining(s);
    }
  }
  if (ws__leave(s)) return -1; /* destroyed from a callback */
  /* A graceful shutdown ended in this tick (on_shutdown ran, also for one
   * a callback asked for here): 0, not the -1 of an empty server, so that
   * a loop waiting on the answer (an adapter's run, with no cap) comes
   * back to its exit condition instead of waiting for an event that will
   * not come. */
  if (!ended_before && s->shutting_down == 2) return 0;
  /* Asked last: the flush in ws__leave may have armed deadlines, and
   * finish_draining may have cleared every one. */
  next = ws__timer_next(s);
  if (!s->shutting_down && ws__post_pending(s)) next = 0;
  return next_timeout(s, next);
}

/* 1001 to every connection: a close handshake for the open ones, the end
 * for those still in their handshake. */
static void going_away(ws_conn *c) {
  if (c->state == WS__HANDSHAKE)
    ws__conn_finish(c, WS_CLOSE_GOING_AWAY, "server shutting down");
  else if (c->state == WS__OPEN)
    ws_conn_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
}

int ws_server_shutdown(ws_server *s, uint32_t drain_ms) {
  if (s == NULL) return WS_EINVAL;
  if (s->shutting_down || s->destroying) return WS_ESHUTDOWN;
  ws__enter(s);
  /* Marked before the drain below, which runs host callbacks: a nested
   * ws_server_shutdown must find it begun, not run a second one. */
  s->shutting_down = 1;
  s->shutdown_deadline = ws__after_ms(s->now, drain_ms);
  ws__post_close(s);
  /* Inside a post's fan-out (a callback it ran): the closes wait for the
   * drain on the stack, or that post would miss the receivers it has not
   * reached yet. */
  if (s->post_draining)
    s->shutdown_deferred = 1;
  else
    ws__shutdown_close(s);
  ws__leave(s);
  return WS_OK;
}

void ws__shutdown_close(ws_server *s) {
  s->shutdown_deferred = 0;
  ws__post_drain(s, SIZE_MAX); /* what was posted before still goes out */
  if (!s->destroying) for_each_now(s, going_away);
  ws__shutdown_check(s);
}

/* shutting_down: 1 draining, 2 done. Connections accepted after it is done
 * (refused with 503) end too, but the shutdown is not done again. */
void ws__shutdown_check(ws_server *s) {
  /* Destroyed mid-drain: the host ended it; there is no shutdown to end. */
  if (s->shutting_down != 1 || s->nconns != 0 || s->destroying) return;
  s->shutting_down = 2;
  if (s->cfg.on_shutdown) s->cfg.on_shutdown(s, s->cfg.user_data);
}

void *ws_server_user_data(const ws_server *s) {
  return s ? s->cfg.user_data : NULL;
}

size_t ws_server_conn_count(const ws_server *s) {
  return s ? (size_t)s->st.conns_open : 0;
}

void ws__stat_close(ws_server *s, int code) {
  ws_stats *st = &s->st;
  switch (code) {
  case 1000: st->closes_1000++; break;
  case 1001: st->closes_1001++; break;
  case 1002: st->closes_1002++; break;
  case 1003: st->closes_1003++; break;
  case 1006: st->closes_1006++; break;
  case 1007: st->closes_1007++; break;
  case 1008: st->closes_1008++; break;
  case 1009: st->closes_1009++; break;
  case 1011: st->closes_1011++; break;
  case 4000: st->closes_4000++; break;
  case 4001: st->closes_4001++; break;
  case 4002: st->closes_4002++; break;
  default: st->closes_other++; break;
  }
}

int ws_server_stats(const ws_server *s, ws_stats *out, size_t size) {
  if (s == NULL || out == NULL) return WS_EINVAL;
  memcpy(out, &s->st, WS__MIN(size, sizeof(s->st)));
  return WS_OK;
}
