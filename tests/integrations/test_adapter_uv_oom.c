/*
 * The libuv adapter with no memory for an accepted connection's socket.
 * libuv holds the accepted descriptor and stops watching the listener
 * until uv_accept takes it; the adapter returned without one, so the
 * server never accepted a connection again. It now accepts it into a
 * handle of its own and closes it: the refused client sees its connection
 * end, and the next one is served. calloc fails on demand here (the
 * adapter's allocations only: the macro is set before its header).
 */
#include <stdlib.h>

static int g_fail_calloc; /* calloc calls to fail from now on */
static void *test_calloc(size_t n, size_t size) {
  if (g_fail_calloc > 0) {
    g_fail_calloc--;
    return NULL;
  }
  return calloc(n, size);
}
#define calloc test_calloc

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/libuv.h"
#include "check.h"
#include "nofd.h"

#undef calloc

/* Runs the loop until fd has news (bytes or EOF), 2 s at most. Returns
 * recv's answer: > 0 bytes (into buf), 0 EOF, -1 nothing came. */
static ssize_t wait_news(uv_loop_t *loop, int fd, char *buf, size_t cap) {
  uint64_t end = wsa_now_ms() + 2000;
  while (wsa_now_ms() < end) {
    ssize_t r;
    uv_run(loop, UV_RUN_NOWAIT);
    r = recv(fd, buf, cap - 1, MSG_DONTWAIT);
    if (r >= 0) {
      buf[r > 0 ? r : 0] = '\0';
      return r;
    }
    usleep(1000);
  }
  return -1;
}

static void no_memory_refuses_one_and_serves_the_next(void) {
  static wsa_uv a;
  uv_loop_t *loop = uv_default_loop();
  ws_config cfg;
  ws_server *srv;
  char buf[512];
  int port, refused[2], ok, i;
  ws_config_init(&cfg);
  wsa_uv_config(&cfg);
  cfg.user_data = &a;
  cfg.path = NULL;
  cfg.device_required = 0;
  CHECK(ws_server_new(&cfg, &srv) == WS_OK);
  CHECK(wsa_uv_init(&a, loop, srv, "127.0.0.1", 0) == 0);
  port = wsa_uv_port(&a);
  /* Two in a row: the second comes while the first's handle closes. */
  g_fail_calloc = 2;
  for (i = 0; i < 2; i++) refused[i] = connect_to(port);
  for (i = 0; i < 2; i++) {
    CHECK(wait_news(loop, refused[i], buf, sizeof(buf)) == 0);
    close(refused[i]);
  }
  CHECK(g_fail_calloc == 0);
  CHECK(a.nsocks == 0);
  /* Memory again: the next client is accepted and upgraded. */
  ok = connect_to(port);
  CHECK(write(ok, nofd_req, sizeof(nofd_req) - 1) ==
        (ssize_t)sizeof(nofd_req) - 1);
  CHECK(wait_news(loop, ok, buf, sizeof(buf)) > 0);
  CHECK(strncmp(buf, "HTTP/1.1 101 ", 13) == 0);
  close(ok);
  ws_server_free(srv);
  wsa_uv_close_handles(&a);
  uv_run(loop, UV_RUN_DEFAULT);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  no_memory_refuses_one_and_serves_the_next();
  printf("adapter-uv-oom: %d passed, %d failed\n", g_checks - g_fail, g_fail);
  return g_fail ? 1 : 0;
}
