/*
 * The ping/pong push server on libevent (adapters/libevent.h, no
 * bufferevents). Same protocol as examples/pingpong.c:
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *
 * Usage: pingpong_libevent [--port N] [--host ADDR]   (port 0: any free one)
 * SIGINT/SIGTERM: 1001 to every client, drain, exit 0.
 */
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/libevent.h"
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

static wsa_ev g_ev;
static ws_server *g_srv;
static struct event *g_sigint, *g_sigterm;

/* Every connection is gone after the shutdown: leave the loop. */
static int on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  event_base_loopbreak(g_ev.base);
  return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig, (void)what, (void)arg;
  event_del(g_sigint);
  event_del(g_sigterm);
  wsa_ev_stop_listening(&g_ev);
  ws_server_tick(g_srv, wsa_ev_now_ms());
  if (ws_server_shutdown(g_srv, 2000) == WS_OK && ws_server_conn_count(g_srv) == 0)
    event_base_loopbreak(g_ev.base);
  else
    wsa_ev_rearm(&g_ev); /* the drain deadline */
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 8081, i, rc;
  struct event_base *base;
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
  evthread_use_pthreads(); /* wsa_ev_wake may run on other threads */
  base = event_base_new();
  if (base == NULL) {
    fprintf(stderr, "event_base_new failed\n");
    return 1;
  }
  ws_config_init(&cfg);
  wsa_ev_config(&cfg);
  cfg.wake = wsa_ev_wake;
  cfg.user_data = &g_ev;
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cfg.on_log = on_log;
  cfg.on_shutdown = on_shutdown;
  cfg.keep_headers = 0;
  if ((rc = ws_server_new(&cfg, &g_srv)) != WS_OK) {
    fprintf(stderr, "ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  if (wsa_ev_init(&g_ev, base, g_srv, host, port) != 0) {
    perror("listen");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  g_sigint = evsignal_new(base, SIGINT, on_signal, NULL);
  g_sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
  event_add(g_sigint, NULL);
  event_add(g_sigterm, NULL);
  printf("pingpong_libevent: listening on http://%s:%d/ (ws path /ws?device_id=...)\n",
         host, wsa_ev_port(&g_ev));
  fflush(stdout);

  event_base_dispatch(base);

  ws_server_free(g_srv);
  wsa_ev_destroy(&g_ev);
  event_free(g_sigint);
  event_free(g_sigterm);
  event_base_free(base);
  ws_mux_free(mux);
  printf("pingpong_libevent: stopped\n");
  return 0;
}
