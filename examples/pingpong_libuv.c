/*
 * The ping/pong push server on libuv (adapters/libuv.h). Same protocol as
 * examples/pingpong.c; the application is pingpong_app.h, this file is the
 * loop around it (libuv's own signal watchers and exit path):
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *
 * Usage: pingpong_libuv [--port N] [--host ADDR] [--post-every MS]
 * (port 0: any free one; --post-every: a worker thread ws_posts
 * {"action":"tick","data":N} to everyone every MS ms, see pingpong_app.h;
 * the uv_async_t of wsa_uv_wake wakes the loop for them)
 * SIGINT/SIGTERM: 1001 to every client, drain, exit 0.
 */
#include <signal.h>
#include <stdio.h>

#include "adapters/libuv.h"
#include "pingpong_app.h"
#include "wsmux.h"

static wsa_uv g_uv; /* large (read buffer): static */
static ws_server *g_srv;
static uv_signal_t g_sigint, g_sigterm;
static uv_timer_t g_guard;
static pp_poster g_poster;

/* Every connection is gone after the shutdown: leave uv_run. */
static int on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  uv_stop(g_uv.loop);
  return 0;
}

/* The watchers stay installed through the drain (stopping them would give
 * a second SIGTERM its default action: death, no drain): repeats are
 * ignored. */
static void on_signal(uv_signal_t *h, int sig) {
  static int stopping;
  (void)sig;
  if (stopping++) return;
  wsa_uv_stop_listening(&g_uv);
  ws_server_tick(g_srv, uv_now(h->loop));
  if (ws_server_shutdown(g_srv, PP_DRAIN_MS) == WS_OK &&
      ws_server_conn_count(g_srv) == 0)
    uv_stop(h->loop);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Bounds the final drain: a peer that stopped reading cannot hold us. The
 * adapter's own lingering sockets end by their timers before it fires;
 * this is the backstop for anything else. */
static void on_guard(uv_timer_t *t) { uv_walk(t->loop, close_any, NULL); }

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  pp_args a;
  ws_config cfg;
  ws_mux *mux;
  int rc;

  if (pp_parse_args(&a, argc, argv, 8081, PP_OPT_POST)) return 2;
  if ((mux = pp_mux_new(NULL)) == NULL) return 1;
  ws_config_init(&cfg);
  wsa_uv_config(&cfg);
  cfg.wake = wsa_uv_wake;
  cfg.user_data = &g_uv;
  pp_config(&cfg, mux);
  cfg.on_shutdown = on_shutdown; /* leaves uv_run */
  if ((g_srv = pp_server_new(&cfg)) == NULL) return 1;
  if ((rc = wsa_uv_init(&g_uv, loop, g_srv, a.host, a.port)) != 0) {
    fprintf(stderr, "listen: %s\n", uv_strerror(rc));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_signal_init(loop, &g_sigint);
  uv_signal_init(loop, &g_sigterm);
  uv_signal_start(&g_sigint, on_signal, SIGINT);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  if (pp_poster_start(&g_poster, g_srv, a.post_every) != 0) return 1;
  pp_announce("pingpong_libuv", a.host, wsa_uv_port(&g_uv));

  uv_run(loop, UV_RUN_DEFAULT);

  pp_poster_stop(&g_poster); /* ws_post must not race ws_server_free */
  ws_server_free(g_srv); /* closes anything the drain left */
  wsa_uv_close_handles(&g_uv);
  uv_close((uv_handle_t *)&g_sigint, NULL);
  uv_close((uv_handle_t *)&g_sigterm, NULL);
  uv_timer_init(loop, &g_guard);
  uv_timer_start(&g_guard, on_guard, WSA_UV_LINGER_MS + 1000, 0);
  uv_unref((uv_handle_t *)&g_guard); /* does not keep the loop alive */
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&g_guard, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  ws_mux_free(mux);
  printf("pingpong_libuv: stopped\n");
  return 0;
}
