/*
 * accept4 failing for want of kernel memory (ENOBUFS, ENOMEM: socket
 * buffer limits, memory pressure) with a client pending. wsa_accept
 * answered -1, "backlog empty", and the poll, epoll and libevent adapters
 * went back to waiting on a listener that stays readable: every wait
 * returned at once and the loop spun for as long as the kernel refused
 * (adding to the pressure). They must pause the listener as when out of
 * descriptors, and serve the client once accept works again.
 *
 * accept4 is this file's own (the executable's definition is the one the
 * adapters' calls bind to): it fails with ENOBUFS while g_refuse is set,
 * and is the system call otherwise.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>

#include "adapters/epoll.h"
#include "adapters/libevent.h"
#include "adapters/poll.h"
#include "check.h"
#include "nofd.h"

#define CPU_MAX_MS (SPAN_MS / 4)

static volatile int g_refuse;

/* Declared as glibc does under _GNU_SOURCE (a transparent union for the
 * address), so that the two declarations agree. */
int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len,
            int flags) {
  if (g_refuse) {
    errno = ENOBUFS;
    return -1;
  }
  return (int)syscall(SYS_accept4, fd, addr.__sockaddr__, len, flags);
}

static ws_server *server(void *user_data, void (*config)(ws_config *)) {
  ws_config cfg;
  ws_server *srv;
  ws_config_init(&cfg);
  config(&cfg);
  cfg.user_data = user_data;
  cfg.path = NULL;
  cfg.device_required = 0;
  CHECK(ws_server_new(&cfg, &srv) == WS_OK);
  return srv;
}

/* Runs pass() for SPAN_MS with accept refused; returns the CPU it took. */
static double refused_span(int listen_fd, void (*pass)(void), int *cli) {
  uint64_t end;
  double cpu;
  *cli = connect_to(wsa_local_port(listen_fd));
  g_refuse = 1;
  cpu = cpu_ms();
  for (end = wsa_now_ms() + SPAN_MS; wsa_now_ms() < end;) pass();
  cpu = cpu_ms() - cpu;
  g_refuse = 0;
  return cpu;
}

/* accept works again: the pending client gets its 101. */
static int served(int cli, void (*pass)(void)) {
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
  close(cli);
  return strncmp(head, "HTTP/1.1 101 ", 13) == 0;
}

/* ---- poll ---------------------------------------------------------------- */

static wsa_poll g_poll;

static void poll_pass(void) { wsa_poll_run_once_for(&g_poll, 20); }

static void poll_paused(void) {
  ws_server *srv = server(&g_poll, wsa_poll_config);
  double cpu;
  int cli;
  CHECK(wsa_poll_init(&g_poll, srv, "127.0.0.1", 0) == 0);
  cpu = refused_span(g_poll.listen_fd, poll_pass, &cli);
  printf("adapter-nomem: poll used %.0f ms of CPU in %d ms\n", cpu, SPAN_MS);
  CHECK(cpu < CPU_MAX_MS);
  CHECK(served(cli, poll_pass));
  ws_server_free(srv);
  wsa_poll_destroy(&g_poll);
}

/* ---- epoll --------------------------------------------------------------- */

static wsa_epoll g_ep;

static void epoll_pass(void) { wsa_epoll_run_once_for(&g_ep, 20); }

static void epoll_paused(void) {
  ws_server *srv = server(&g_ep, wsa_epoll_config);
  double cpu;
  int cli;
  CHECK(wsa_epoll_init(&g_ep, srv, "127.0.0.1", 0) == 0);
  cpu = refused_span(g_ep.listener.fd, epoll_pass, &cli);
  printf("adapter-nomem: epoll used %.0f ms of CPU in %d ms\n", cpu, SPAN_MS);
  CHECK(cpu < CPU_MAX_MS);
  CHECK(served(cli, epoll_pass));
  ws_server_free(srv);
  wsa_epoll_destroy(&g_ep);
}

/* ---- libevent ------------------------------------------------------------ */

static wsa_ev g_ev;

static void ev_pass(void) {
  struct timeval tv = {0, 20 * 1000};
  event_base_loopexit(g_ev.base, &tv);
  event_base_dispatch(g_ev.base);
}

static void ev_paused(void) {
  struct event_base *base = event_base_new();
  ws_server *srv = server(&g_ev, wsa_ev_config);
  double cpu;
  int cli;
  CHECK(base != NULL);
  CHECK(wsa_ev_init(&g_ev, base, srv, "127.0.0.1", 0) == 0);
  cpu = refused_span(g_ev.listen_fd, ev_pass, &cli);
  printf("adapter-nomem: libevent used %.0f ms of CPU in %d ms\n", cpu,
         SPAN_MS);
  CHECK(cpu < CPU_MAX_MS);
  CHECK(served(cli, ev_pass));
  ws_server_free(srv);
  wsa_ev_destroy(&g_ev);
  event_base_free(base);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  poll_paused();
  epoll_paused();
  ev_paused();
  printf("adapter-nomem: %d passed, %d failed\n", g_checks - g_fail, g_fail);
  return g_fail ? 1 : 0;
}
