/*
 * The epoll adapter out of descriptors with no spare left to shed the
 * pending connection (wsa_accept returns WSA_ACCEPT_NOFD: with one loop
 * per thread, another thread took the slot the spare freed). The listener
 * stays readable, so the adapter must stop watching it for
 * WSA_EPOLL_ACCEPT_PAUSE_MS instead of waking at once, forever (100% CPU),
 * and must accept the pending client once descriptors are free again.
 * test_reuseport.py's out-of-descriptors test reaches that state only when
 * a race goes its way; here it is made on purpose: every descriptor taken
 * and this thread's spare given up.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/epoll.h"
#include "check.h"

#define NOFILE 64
#define SPAN_MS 400

static int g_fds[NOFILE];
static int g_nfds;

/* Takes every free descriptor below the limit. */
static void exhaust(void) {
  int fd;
  while (g_nfds < NOFILE && (fd = open("/dev/null", O_RDONLY)) >= 0)
    g_fds[g_nfds++] = fd;
  CHECK(errno == EMFILE);
}

static void release(int n) {
  while (n-- > 0 && g_nfds > 0) close(g_fds[--g_nfds]);
}

static int connect_to(int port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(fd >= 0);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  return fd;
}

/* Loop passes that handled an event during ms milliseconds (each pass
 * waits at most 20 ms). */
static int busy_passes(wsa_epoll *p, int ms) {
  uint64_t end = wsa_now_ms() + (uint64_t)ms;
  int busy = 0;
  while (wsa_now_ms() < end)
    if (wsa_epoll_run_once_for(p, 20) > 0) busy++;
  return busy;
}

static void listener_paused_then_resumed(void) {
  static wsa_epoll p;
  static const char req[] =
      "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  struct rlimit rl = {NOFILE, NOFILE};
  ws_config cfg;
  ws_server *srv;
  char head[256] = "";
  int cli, busy, i;
  ssize_t r = 0;
  ws_config_init(&cfg);
  wsa_epoll_config(&cfg);
  cfg.user_data = &p;
  cfg.path = NULL;
  cfg.device_required = 0;
  CHECK(ws_server_new(&cfg, &srv) == WS_OK);
  CHECK(wsa_epoll_init(&p, srv, "127.0.0.1", 0) == 0);
  CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  rl.rlim_cur = NOFILE;
  CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  cli = connect_to(wsa_local_port(p.listener.fd));
  /* The spare given up and its slot taken: wsa_spare cannot reopen it. */
  close(*wsa_spare());
  *wsa_spare() = -1;
  exhaust();
  busy = busy_passes(&p, SPAN_MS);
  /* Paused: each time the pause ends (every 100 ms: the timerfd's pass)
   * the next pass finds the listener still readable and pauses again.
   * Spinning makes hundreds. */
  CHECK(busy >= 2 && busy <= 2 * (SPAN_MS / WSA_EPOLL_ACCEPT_PAUSE_MS) + 4);
  CHECK(p.nsocks == 0);
  printf("adapter-nofd: %d loop passes with events in %d ms\n", busy, SPAN_MS);
  /* Descriptors free again: the pending client is accepted and served. */
  release(4);
  for (i = 0; i < 50 && p.nsocks == 0; i++) wsa_epoll_run_once_for(&p, 20);
  CHECK(p.nsocks == 1);
  CHECK(p.accept_resume == 0);
  CHECK(write(cli, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1);
  for (i = 0; i < 50 && !strstr(head, "\r\n\r\n"); i++) {
    wsa_epoll_run_once_for(&p, 20);
    r = recv(cli, head + strlen(head), sizeof(head) - 1 - strlen(head),
             MSG_DONTWAIT);
    if (r == 0) break;
  }
  CHECK(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
  close(cli);
  release(NOFILE);
  ws_server_free(srv);
  wsa_epoll_destroy(&p);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  listener_paused_then_resumed();
  printf("adapter-nofd: %d passed, %d failed\n", g_checks - g_fail, g_fail);
  return g_fail ? 1 : 0;
}
