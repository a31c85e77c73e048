/*
 * The ping/pong push server on libuv (adapters/libuv.h). Same protocol as
 * examples/pingpong.c:
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *
 * Usage: pingpong_libuv [--port N] [--host ADDR]   (port 0: any free one)
 * SIGINT/SIGTERM: 1001 to every client, drain, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/libuv.h"
#include "wsmux.h"

static int on_ping(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

static int on_echo(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud;
  return ws_conn_send_text(c, m->text, m->len);
}

static int on_broadcast(ws_conn *c, const ws_msg *m, void *ud) {
  size_t len;
  const char *data = ws_msg_data_json(m, &len);
  ws_server *s = ws_conn_server(c);
  (void)ud;
  if (data == NULL) return ws_broadcast(s, "bc", NULL, NULL, 0) < 0 ? -1 : 0;
  return ws_broadcast_json(s, "bc", data, len, NULL, 0) < 0 ? -1 : 0;
}

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (level <= WS_LOG_WARN) fprintf(stderr, "wsmux: %s\n", msg);
}

static wsa_uv g_uv; /* large (read buffer): static */
static ws_server *g_srv;
static uv_signal_t g_sigint, g_sigterm;
static uv_timer_t g_guard;

/* Every connection is gone after the shutdown: leave uv_run. */
static int on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  uv_stop(g_uv.loop);
  return 0;
}

static void on_signal(uv_signal_t *h, int sig) {
  (void)sig;
  uv_signal_stop(&g_sigint);
  uv_signal_stop(&g_sigterm);
  wsa_uv_stop_listening(&g_uv);
  ws_server_tick(g_srv, uv_now(h->loop));
  if (ws_server_shutdown(g_srv, 2000) == WS_OK && ws_server_conn_count(g_srv) == 0)
    uv_stop(h->loop);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Bounds the final drain: a peer that stopped reading cannot hold us. */
static void on_guard(uv_timer_t *t) { uv_walk(t->loop, close_any, NULL); }

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 8081, i, rc;
  uv_loop_t *loop = uv_default_loop();
  ws_config cfg;
  ws_mux *mux;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
      host = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--port N] [--host ADDR]\n", argv[0]);
      return 2;
    }
  }
  mux = ws_mux_new(NULL);
  if (mux == NULL || ws_mux_handle(mux, "ping", on_ping, NULL) ||
      ws_mux_handle(mux, "echo", on_echo, NULL) ||
      ws_mux_handle(mux, "broadcast", on_broadcast, NULL)) {
    fprintf(stderr, "mux setup failed\n");
    return 1;
  }
  ws_config_init(&cfg);
  wsa_uv_config(&cfg);
  cfg.wake = wsa_uv_wake;
  cfg.user_data = &g_uv;
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cfg.on_log = on_log;
  cfg.on_shutdown = on_shutdown;
  cfg.keep_headers = 0;
  if ((rc = ws_server_new(&cfg, &g_srv)) != WS_OK) {
    fprintf(stderr, "ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  if ((rc = wsa_uv_init(&g_uv, loop, g_srv, host, port)) != 0) {
    fprintf(stderr, "listen: %s\n", uv_strerror(rc));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_signal_init(loop, &g_sigint);
  uv_signal_init(loop, &g_sigterm);
  uv_signal_start(&g_sigint, on_signal, SIGINT);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  printf("pingpong_libuv: listening on http://%s:%d/ (ws path /ws?device_id=...)\n",
         host, wsa_uv_port(&g_uv));
  fflush(stdout);

  uv_run(loop, UV_RUN_DEFAULT);

  ws_server_free(g_srv); /* closes anything the drain left */
  wsa_uv_close_handles(&g_uv);
  uv_close((uv_handle_t *)&g_sigint, NULL);
  uv_close((uv_handle_t *)&g_sigterm, NULL);
  uv_timer_init(loop, &g_guard);
  uv_timer_start(&g_guard, on_guard, 3000, 0);
  uv_unref((uv_handle_t *)&g_guard); /* does not keep the loop alive */
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&g_guard, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  ws_mux_free(mux);
  printf("pingpong_libuv: stopped\n");
  return 0;
}
