/*
 * A host built as README's libuv section shows, which does nothing about
 * SIGPIPE: a peer that resets its connection while the adapter still has
 * a uv_write pending. libuv writes with write(2), not send(MSG_NOSIGNAL)
 * as the fd adapters (sockio.h) do, so the write after the reset raised
 * SIGPIPE and its default action killed the server. The adapter must keep
 * a host that left SIGPIPE at its default alive; the connection ends
 * (on_close 1006) and its socket is let go.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "adapters/libuv.h"
#include "check.h"

static int echo(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud;
  return ws_conn_send_text(c, m->text, m->len);
}

/* Runs the loop without blocking for about ms milliseconds, or until
 * *flag (if given) is set. */
static void spin(uv_loop_t *loop, int ms, const int *flag) {
  uint64_t end = wsa_now_ms() + (uint64_t)ms;
  while (wsa_now_ms() < end && !(flag && *flag)) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
}

static void peer_reset_with_a_write_pending(void) {
  static wsa_uv a;
  static char frame[8 + 60000];
  static const char req[] =
      "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in sa;
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  ws_config cfg;
  ws_server *srv;
  ws_stats st;
  char head[512] = "";
  size_t got = 0, sent = 0, total, plen = 60000 - 2;
  int fd, rcvbuf = 4096, opened = 0;
  ws_config_init(&cfg);
  wsa_uv_config(&cfg);
  cfg.user_data = &a;
  cfg.handler = echo;
  cfg.path = NULL;
  cfg.device_required = 0;
  cfg.max_queued = 64u << 20; /* the reset, not the queue cap, ends it */
  CHECK(ws_server_new(&cfg, &srv) == WS_OK);
  CHECK(wsa_uv_init(&a, loop, srv, "127.0.0.1", 0) == 0);

  fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)wsa_uv_port(&a));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  CHECK(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) ==
        (ssize_t)(sizeof(req) - 1));
  /* the 101 */
  {
    uint64_t end = wsa_now_ms() + 5000;
    while (wsa_now_ms() < end && !strstr(head, "\r\n\r\n")) {
      ssize_t r;
      uv_run(loop, UV_RUN_NOWAIT);
      r = recv(fd, head + got, sizeof(head) - 1 - got, MSG_DONTWAIT);
      if (r > 0) got += (size_t)r, head[got] = '\0';
      else usleep(1000);
    }
    opened = strncmp(head, "HTTP/1.1 101 ", 13) == 0;
    CHECK(opened);
  }
  /* 6 MB of echoes the client never reads: the server's socket fills, a
   * uv_write copy waits behind it. Masked with key 0: payload as is. */
  frame[0] = (char)0x81;
  frame[1] = (char)(0x80 | 126);
  frame[2] = (char)(plen >> 8);
  frame[3] = (char)(plen & 0xff);
  memset(frame + 4, 0, 4); /* mask key */
  memcpy(frame + 8, "{\"action\":\"e\",\"data\":\"", 22);
  memset(frame + 8 + 22, 'x', plen - 24);
  memcpy(frame + 8 + plen - 2, "\"}", 2);
  total = 100 * (8 + plen);
  {
    uint64_t end = wsa_now_ms() + 10000;
    while (opened && sent < total && wsa_now_ms() < end) {
      size_t off = sent % (8 + plen);
      ssize_t w = send(fd, frame + off, 8 + plen - off,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) sent += (size_t)w;
      uv_run(loop, UV_RUN_NOWAIT);
    }
    CHECK(sent == total);
  }
  spin(loop, 200, NULL);
  CHECK(a.nsocks == 1);
  /* A reset, unread replies and all; the server goes on writing. */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
  {
    uint64_t end = wsa_now_ms() + 5000;
    while (a.nsocks > 0 && wsa_now_ms() < end) spin(loop, 10, NULL);
  }
  CHECK(a.nsocks == 0); /* alive, and the socket let go */
  ws_server_stats(srv, &st, sizeof(st));
  CHECK(st.closes_1006 == 1);
  ws_server_free(srv);
  wsa_uv_close_handles(&a);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
}

int main(void) {
  signal(SIGPIPE, SIG_DFL); /* as a host that never thought of it */
  peer_reset_with_a_write_pending();
  printf("adapter-sigpipe: %d passed, %d failed\n", g_checks - g_fail, g_fail);
  return g_fail ? 1 : 0;
}
