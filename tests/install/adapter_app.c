/* Built against an installed libwsmux: the epoll adapter from
 * <wsmux/adapters/epoll.h> serves one round trip to a client in the same
 * process (127.0.0.1, an ephemeral port, bounded loop). Proves the
 * installed adapter headers find each other and wsmux.h. */
#include <wsmux/adapters/epoll.h>

#include <poll.h>
#include <stdio.h>

static int on_ping(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)msg, (void)ud;
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

/* Reads what has arrived on fd into buf at *len, without blocking. */
static void take(int fd, char *buf, size_t cap, size_t *len) {
  ssize_t n = recv(fd, buf + *len, cap - 1 - *len, MSG_DONTWAIT);
  if (n > 0) *len += (size_t)n;
  buf[*len] = '\0';
}

/* Runs the server loop until buf holds want (or 500 rounds). */
static int serve_until(wsa_epoll *p, int fd, char *buf, size_t cap,
                       size_t *len, const char *want) {
  int i;
  for (i = 0; i < 500 && strstr(buf, want) == NULL; i++) {
    struct pollfd pf = {fd, POLLIN, 0};
    wsa_epoll_run_once_for(p, 10);
    if (poll(&pf, 1, 0) > 0) take(fd, buf, cap, len);
  }
  return strstr(buf, want) != NULL;
}

int main(void) {
  static wsa_epoll p;
  static const char req[] =
      "GET /ws?device_id=d1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  /* {"action":"ping"}, masked with key 0 (a client frame must be masked;
   * a zero key leaves the payload as it is). */
  static const char frame[] = "\x81\x91\0\0\0\0{\"action\":\"ping\"}";
  char buf[1024] = "";
  size_t len = 0;
  struct sockaddr_in sa;
  ws_config cfg;
  ws_server *srv;
  ws_mux *mux = ws_mux_new(NULL);
  int fd, ok;
  if (mux == NULL || ws_mux_handle(mux, "ping", on_ping, NULL) != WS_OK)
    return 1;
  ws_config_init(&cfg);
  wsa_epoll_config(&cfg);
  cfg.user_data = &p;
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  if (ws_server_new(&cfg, &srv) != WS_OK) return 1;
  if (wsa_epoll_init(&p, srv, "127.0.0.1", 0) != 0) return 1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)wsa_local_port(p.listener.fd));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) return 1;
  if (send(fd, req, sizeof(req) - 1, 0) != (ssize_t)sizeof(req) - 1) return 1;
  ok = serve_until(&p, fd, buf, sizeof(buf), &len, "\r\n\r\n") &&
       strstr(buf, "HTTP/1.1 101") == buf &&
       strstr(buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL;
  len = 0;
  buf[0] = '\0';
  ok = ok && send(fd, frame, sizeof(frame) - 1, 0) == (ssize_t)sizeof(frame) - 1;
  ok = ok && serve_until(&p, fd, buf, sizeof(buf), &len, "\"pong\"") &&
       (unsigned char)buf[0] == 0x81 &&
       strcmp(buf + 2, "{\"action\":\"pong\",\"data\":\"\"}") == 0;
  printf("installed epoll adapter: %s\n", ok ? "101 and pong" : buf);
  close(fd);
  ws_server_free(srv);
  wsa_epoll_destroy(&p);
  ws_mux_free(mux);
  return !ok;
}
