/*
 * The ping/pong push server: the Go model rebuilt on libwsmux, on poll(2).
 *
 *   ws://HOST:8081/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""} to ID
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *   GET /                           -> examples/web/index.html
 *
 * Usage: pingpong [--port N] [--host ADDR] [--web DIR]
 * Exits cleanly on SIGINT/SIGTERM (1001 to every client, then drain).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/poll.h"
#include "wsmux.h"

#ifndef WS_EXAMPLES_DIR
#define WS_EXAMPLES_DIR "examples"
#endif

static volatile sig_atomic_t g_stop;
static char *g_page;
static size_t g_page_len;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* The model answers Broadcast(pong, deviceID): the sender is that device. */
static int on_ping(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

static int on_echo(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud;
  return ws_conn_send_text(c, m->text, m->len);
}

/* The data goes out as the client's own JSON text: no parse, no print. */
static int on_broadcast(ws_conn *c, const ws_msg *m, void *ud) {
  size_t len;
  const char *data = ws_msg_data_json(m, &len);
  ws_server *s = ws_conn_server(c);
  (void)ud;
  if (data == NULL) return ws_broadcast(s, "bc", NULL, NULL, 0) < 0 ? -1 : 0;
  return ws_broadcast_json(s, "bc", data, len, NULL, 0) < 0 ? -1 : 0;
}

static int on_http(ws_conn *c, const ws_request *req, void *ud) {
  const char *path = ws_request_path(req);
  (void)ud;
  if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
    if (g_page)
      return ws_conn_http_respond(c, 200, "text/html; charset=utf-8", g_page,
                                  g_page_len);
    return ws_conn_http_respond(c, 500, "text/plain", "page not found\n", 15);
  }
  return 0; /* the library answers 404 */
}

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (level <= WS_LOG_WARN) fprintf(stderr, "wsmux: %s\n", msg);
}

static int on_shutdown(ws_server *s, void *ud) {
  (void)s;
  *(int *)ud = 1;
  return 0;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
    *len = fread(buf, 1, (size_t)n, f);
  }
  fclose(f);
  return buf;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *web = WS_EXAMPLES_DIR "/web";
  int port = 8081, i, done = 0, rc;
  char path[4096];
  ws_config cfg;
  ws_server *srv;
  ws_mux *mux;
  static wsa_poll p; /* large: keep it off the stack */

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
      host = argv[++i];
    else if (strcmp(argv[i], "--web") == 0 && i + 1 < argc)
      web = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--port N] [--host ADDR] [--web DIR]\n",
              argv[0]);
      return 2;
    }
  }
  snprintf(path, sizeof(path), "%s/index.html", web);
  g_page = read_file(path, &g_page_len);

  mux = ws_mux_new(NULL);
  if (mux == NULL || ws_mux_handle(mux, "ping", on_ping, NULL) ||
      ws_mux_handle(mux, "echo", on_echo, NULL) ||
      ws_mux_handle(mux, "broadcast", on_broadcast, NULL)) {
    fprintf(stderr, "mux setup failed\n");
    return 1;
  }
  ws_config_init(&cfg);
  wsa_poll_config(&cfg);
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cfg.on_http = on_http;
  cfg.on_log = on_log;
  cfg.on_shutdown = on_shutdown;
  cfg.user_data = &done;
  cfg.keep_headers = 0; /* no handler here reads headers */
  if ((rc = ws_server_new(&cfg, &srv)) != WS_OK) {
    fprintf(stderr, "ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  if (wsa_poll_init(&p, srv, host, port) != 0) {
    perror("listen");
    return 1;
  }
  { /* report the bound port: --port 0 asks the OS for a free one */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(p.listen_fd, (struct sockaddr *)&ss, &sl) == 0)
      port = ntohs(ss.ss_family == AF_INET6
                       ? ((struct sockaddr_in6 *)&ss)->sin6_port
                       : ((struct sockaddr_in *)&ss)->sin_port);
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  printf("pingpong: listening on http://%s:%d/ (ws path /ws?device_id=...)\n",
         host, port);
  fflush(stdout);

  while (!g_stop) wsa_poll_run_once(&p);
  ws_server_tick(srv, wsa_now_ms());
  ws_server_shutdown(srv, 2000);
  while (!done) wsa_poll_run_once_for(&p, 100);
  ws_server_free(srv);
  wsa_poll_destroy(&p);
  ws_mux_free(mux);
  free(g_page);
  printf("pingpong: stopped\n");
  return 0;
}
