/*
 * Shared by the out-of-descriptors adapter tests (test_adapter_nofd*.c):
 * a process brought to the state where wsa_accept returns
 * WSA_ACCEPT_NOFD (every descriptor taken and this thread's spare given
 * up, as when another loop thread took the slot the spare freed), and the
 * client whose pending connection must wait, then be served.
 * Its loopback client (connect_to, connect_rcvbuf, nofd_req, upgraded)
 * and adapter_server serve other adapter tests too. Include after
 * sockio.h (through an adapter) and check.h.
 */
#ifndef WS_INTEG_NOFD_H
#define WS_INTEG_NOFD_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOFD_LIMIT 64
#define SPAN_MS 400

static int g_fds[NOFD_LIMIT];
static int g_nfds;

static const char nofd_req[] =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* Takes every free descriptor below the limit. */
static inline void exhaust(void) {
  int fd;
  while (g_nfds < NOFD_LIMIT && (fd = open("/dev/null", O_RDONLY)) >= 0)
    g_fds[g_nfds++] = fd;
  CHECK(errno == EMFILE);
}

static inline void release(int n) {
  while (n-- > 0 && g_nfds > 0) close(g_fds[--g_nfds]);
}

/* A loopback client; rcvbuf > 0 sets its receive buffer before the
 * connect (the window it advertises), to keep a server's writes short. */
static inline int connect_rcvbuf(int port, int rcvbuf) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(fd >= 0);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  return fd;
}

static inline int connect_to(int port) {
  return connect_rcvbuf(port, 0);
}

/* Lowers the descriptor limit to NOFD_LIMIT, connects a client to the
 * listener's port (pending in its backlog), gives up this thread's spare
 * and takes every free descriptor. Returns the client's socket. */
static inline int nofd_enter(int listen_fd) {
  struct rlimit rl;
  int cli;
  CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  rl.rlim_cur = NOFD_LIMIT;
  CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  cli = connect_to(wsa_local_port(listen_fd));
  close(*wsa_spare()); /* the spare given up and its slot taken */
  *wsa_spare() = -1;
  exhaust();
  return cli;
}

/* A server for an adapter test: the adapter's transport callbacks
 * (config), any path, no device id needed; on_shutdown may be NULL. */
static inline ws_server *adapter_server(void *user_data,
                                        void (*config)(ws_config *),
                                        int (*on_shutdown)(ws_server *,
                                                           void *)) {
  ws_config cfg;
  ws_server *srv = NULL;
  ws_config_init(&cfg);
  config(&cfg);
  cfg.user_data = user_data;
  cfg.path = NULL;
  cfg.device_required = 0;
  cfg.on_shutdown = on_shutdown;
  CHECK(ws_server_new(&cfg, &srv) == WS_OK);
  return srv;
}

/* Sends the upgrade on cli, runs pass() (one loop pass, waiting 20 ms at
 * most) until the 101 is back, 50 passes at most. 1 if it came. */
static inline int upgraded(int cli, void (*pass)(void)) {
  char head[256] = "";
  int i;
  CHECK(write(cli, nofd_req, sizeof(nofd_req) - 1) ==
        (ssize_t)sizeof(nofd_req) - 1);
  for (i = 0; i < 50 && !strstr(head, "\r\n\r\n"); i++) {
    size_t have = strlen(head);
    ssize_t r;
    pass();
    r = recv(cli, head + have, sizeof(head) - 1 - have, MSG_DONTWAIT);
    if (r == 0) break;
    if (r > 0) head[have + (size_t)r] = '\0';
  }
  return strncmp(head, "HTTP/1.1 101 ", 13) == 0;
}

/* Descriptors free again (4 of them): the pending client cli upgraded
 * (upgraded), then closed. 1 if its 101 came. */
static inline int nofd_served(int cli, void (*pass)(void)) {
  int ok;
  release(4);
  ok = upgraded(cli, pass);
  close(cli);
  release(NOFD_LIMIT);
  return ok;
}

/* CPU time this process used, in milliseconds. */
static inline double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

#endif /* WS_INTEG_NOFD_H */
