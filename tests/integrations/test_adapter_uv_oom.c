/*
 * The libuv adapter with no memory.
 * - For an accepted connection's socket: libuv holds the accepted
 *   descriptor and stops watching the listener until uv_accept takes it;
 *   the adapter returned without one, so the server never accepted a
 *   connection again. It now accepts it into a handle of its own and
 *   closes it: the refused client sees its connection end, and the next
 *   one is served.
 * - For the copy of what uv_try_write did not take: the send callback
 *   answered the short count as "would block", so the library kept the
 *   rest and asked for want_write; but the adapter calls ws_conn_writable
 *   only from a uv_write completion, and none was pending: the rest waited
 *   for the write deadline (for ever with write_timeout_ms 0) on a socket
 *   that could take it. With nothing pending the send now fails the
 *   connection (as the libevent adapter does when it cannot arm write
 *   interest); with a write pending, "would block" stays right (its
 *   completion calls back).
 * calloc and malloc fail on demand here (the adapter's allocations only:
 * the macros are set before its header).
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
static int g_fail_malloc; /* malloc calls to fail from now on */
static void *test_malloc(size_t size) {
  if (g_fail_malloc > 0) {
    g_fail_malloc--;
    return NULL;
  }
  return malloc(size);
}
#define calloc test_calloc
#define malloc test_malloc

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/libuv.h"
#include "check.h"
#include "nofd.h"
#include "uv_one.h"

#undef calloc
#undef malloc

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

#define BIG (200 * 1024)

/* on_open: a small send buffer, no memory for the copy, one big frame. */
static int on_open(ws_conn *c, void *ud) {
  static char big[BIG];
  wsa_uv_sock *s = ws_conn_transport(c);
  uv_os_fd_t fd;
  int sndbuf = 4096;
  (void)ud;
  if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  memset(big, 'b', sizeof(big));
  /* The flush comes when the library call that ran on_open returns: the
   * adapter's next malloc is the copy of what uv_try_write did not take. */
  g_fail_malloc = 1;
  ws_conn_send_binary(c, big, sizeof(big));
  return 0;
}

static void no_memory_for_the_copy_does_not_stall(void) {
  static wsa_uv a;
  static char buf[BIG + 4096];
  uv_loop_t *loop = uv_default_loop();
  ws_server *srv;
  size_t got = 0, head;
  int fd, eof = 0;
  uint64_t end;
  fd = uv_serve_one(&a, loop, on_open, &srv);
  /* Read while the loop runs, 3 s at most: the whole frame or an end. */
  end = wsa_now_ms() + 3000;
  while (wsa_now_ms() < end && !eof) {
    ssize_t r;
    uv_run(loop, UV_RUN_NOWAIT);
    r = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
    if (r > 0) got += (size_t)r;
    else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = 1;
    else usleep(1000);
  }
  buf[got < sizeof(buf) ? got : sizeof(buf) - 1] = '\0';
  CHECK(strncmp(buf, "HTTP/1.1 101 ", 13) == 0);
  head = strstr(buf, "\r\n\r\n") ? (size_t)(strstr(buf, "\r\n\r\n") - buf) + 4 : 0;
  /* Either all of it (10 bytes of frame header) or the connection ended:
   * not part of it and then silence on an open connection. */
  printf("adapter-uv-oom: %zu of %d payload bytes, %s\n",
         got > head + 10 ? got - head - 10 : 0, BIG,
         eof ? "then the end" : "connection still open");
  CHECK(eof || got == head + 10 + BIG);
  uv_end_one(&a, loop, fd, srv);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  no_memory_refuses_one_and_serves_the_next();
  no_memory_for_the_copy_does_not_stall();
  printf("adapter-uv-oom: %d passed, %d failed\n", g_checks - g_fail, g_fail);
  return g_fail ? 1 : 0;
}
