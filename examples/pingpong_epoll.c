/*
 * The ping/pong push server on epoll (adapters/epoll.h). Same protocol as
 * examples/pingpong.c:
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *
 * Usage: pingpong_epoll [--port N] [--host ADDR]   (port 0: any free one)
 * SIGINT/SIGTERM: 1001 to every client, drain, exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/epoll.h"
#include "wsmux.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

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

static int g_done;

static int on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  g_done = 1;
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 8081, i, rc;
  static wsa_epoll p;
  struct sigaction sa;
  ws_config cfg;
  ws_server *srv;
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
  wsa_epoll_config(&cfg);
  cfg.wake = wsa_epoll_wake;
  cfg.user_data = &p;
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cfg.on_log = on_log;
  cfg.on_shutdown = on_shutdown;
  cfg.keep_headers = 0;
  if ((rc = ws_server_new(&cfg, &srv)) != WS_OK) {
    fprintf(stderr, "ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  if (wsa_epoll_init(&p, srv, host, port) != 0) {
    perror("listen");
    return 1;
  }
  /* No SA_RESTART: the signal interrupts epoll_wait. */
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  printf("pingpong_epoll: listening on http://%s:%d/ (ws path /ws?device_id=...)\n",
         host, wsa_epoll_port(p.listener.fd));
  fflush(stdout);

  /* The cap bounds the window where a signal lands just before
   * epoll_wait. */
  while (!g_stop)
    if (wsa_epoll_run_once_for(&p, 500) < 0) break;
  wsa_epoll_stop_listening(&p);
  ws_server_tick(srv, wsa_epoll_now_ms());
  ws_server_shutdown(srv, 2000);
  while (!g_done) wsa_epoll_run_once_for(&p, 100);
  ws_server_free(srv);
  wsa_epoll_destroy(&p);
  ws_mux_free(mux);
  printf("pingpong_epoll: stopped\n");
  return 0;
}
