/*
 * The libuv adapter's send path when uv_try_write takes part of a batch:
 * the rest is copied into a uv_write, skipping what the kernel took, and
 * that skip can end inside any buffer of the batch, the first one passed
 * whole. A wrong skip puts wrong bytes on the wire with nothing failing, so
 * the peer's bytes are compared with the batch. The kernel's take is kept
 * between the first buffer and the end of the batch by small socket
 * buffers on both sides. (No test of the whole server reached that case:
 * gcov showed the skip loop's "whole buffer" branch never run.)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/libuv.h"
#include "check.h"
#include "nofd.h"
#include "uv_one.h"

static wsa_uv_sock *g_sock; /* the server side of the one connection */

static int on_open(ws_conn *c, void *ud) {
  (void)ud;
  g_sock = ws_conn_transport(c);
  return 0;
}

/* Reads from fd while running the loop, until want bytes came (or 5 s). */
static size_t read_all(uv_loop_t *loop, int fd, char *buf, size_t want) {
  uint64_t end = wsa_now_ms() + 5000;
  size_t got = 0;
  while (got < want && wsa_now_ms() < end) {
    ssize_t r;
    uv_run(loop, UV_RUN_NOWAIT);
    r = recv(fd, buf + got, want - got, MSG_DONTWAIT);
    if (r > 0) got += (size_t)r;
    else if (r == 0) break;
    else usleep(1000);
  }
  return got;
}

static void partial_try_write_skips_into_a_later_buffer(void) {
  static wsa_uv a;
  static char batch[3][20000], want[60000], got[60000];
  uv_loop_t *loop = uv_default_loop();
  ws_server *srv;
  ws_iovec iov[3];
  char head[512] = "";
  size_t lens[3] = {700, 20000, 20000}, total = 0, n;
  ssize_t r;
  uv_os_fd_t sfd;
  int fd, i, sndbuf = 4096;
  fd = uv_serve_one(&a, loop, on_open, &srv);
  for (n = 0; n < sizeof(head) - 1 && !strstr(head, "\r\n\r\n"); n++)
    if (read_all(loop, fd, head + n, 1) != 1) break;
  CHECK(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
  CHECK(g_sock != NULL);
  if (g_sock == NULL) return;
  CHECK(uv_fileno((uv_handle_t *)&g_sock->tcp, &sfd) == 0);
  setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  for (i = 0; i < 3; i++) {
    size_t k;
    for (k = 0; k < lens[i]; k++) batch[i][k] = (char)('a' + (i * 7 + k) % 26);
    memcpy(want + total, batch[i], lens[i]);
    iov[i].base = batch[i];
    iov[i].len = lens[i];
    total += lens[i];
  }
  /* What the library does with a batch of queued frames. */
  r = wsa_uv_sendv(g_sock->conn, g_sock, iov, 3);
  CHECK(r == (ssize_t)total); /* under WSA_UV_MAX_PENDING: all taken */
  CHECK(g_sock->pending > 0 && g_sock->pending < total - lens[0]);
  printf("adapter-uv-copy: the kernel took %zu bytes, the copy %zu\n",
         total - g_sock->pending, g_sock->pending);
  CHECK(read_all(loop, fd, got, total) == total);
  CHECK(memcmp(got, want, total) == 0);
  uv_end_one(&a, loop, fd, srv);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  partial_try_write_skips_into_a_later_buffer();
  printf("adapter-uv-copy: %d passed, %d failed\n", g_checks - g_fail, g_fail);
  return g_fail ? 1 : 0;
}
