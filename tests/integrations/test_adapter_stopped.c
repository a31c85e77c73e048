/*
 * A graceful stop whose drain deadline passes while the process is
 * stopped (SIGSTOP: Ctrl-Z, a debugger). On SIGCONT epoll_wait fails
 * with EINTR however late it is (it is never restarted after a stop,
 * signal(7)); the epoll adapter returned from there without its second
 * tick, so the deadline ran in the next run's first tick: on_shutdown
 * fired there, the tick had no deadline left, and that run's wait (no cap,
 * as in "while (!drained) wsa_epoll_run_once") had nothing left to end it.
 * poll(2) is restarted after a stop, but a handled signal interrupts it
 * the same way, and the poll adapter ticks after EINTR too: both must end
 * the drain in the run the stop interrupted.
 *
 * The same run, uncapped, must end a drain whose deadline passed between
 * two runs (the host busy elsewhere): that run's first tick ends it, and
 * answered -1 (nothing pending), which left the wait with no end; the
 * tick a shutdown ends in now answers 0.
 *
 * A child process stops and continues this one; SIGALRM (2 s) ends a
 * hung wait so that the test reports instead of hanging.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include "adapters/epoll.h"
#include "adapters/poll.h"
#include "check.h"
#include "nofd.h"

#define DRAIN_MS 100
#define STOPPED_MS 400

static int g_drained;
static volatile sig_atomic_t g_alarm;

static void on_alarm(int sig) {
  (void)sig;
  g_alarm = 1;
}

static int on_shutdown(ws_server *s, void *ud) {
  (void)s;
  (void)ud;
  g_drained = 1;
  return 0;
}

/* A client upgraded through pass(), which then never answers the 1001:
 * the drain runs to its deadline. Returns its socket. */
static int silent_client(int port, void (*pass)(void)) {
  int cli = connect_to(port);
  CHECK(upgraded(cli, pass));
  return cli;
}

/* Stops this process 20 ms from now for STOPPED_MS, from a child. */
static pid_t stop_me_soon(void) {
  pid_t me = getpid(), pid = fork();
  if (pid == 0) {
    usleep(20 * 1000);
    kill(me, SIGSTOP);
    usleep(STOPPED_MS * 1000);
    kill(me, SIGCONT);
    _exit(0);
  }
  CHECK(pid > 0);
  return pid;
}

/* Runs run() uncapped until on_shutdown, or until SIGALRM (2 s) ends a
 * hung wait. 1 if the drain ended. */
static int run_until_drained(int (*run)(void)) {
  alarm(2);
  while (!g_drained && !g_alarm) run();
  alarm(0);
  return g_drained && !g_alarm;
}

static void shut_down(ws_server *srv) {
  g_drained = 0;
  g_alarm = 0;
  CHECK(ws_server_shutdown(srv, DRAIN_MS) == WS_OK);
}

/* Shuts srv down and drains with run() while a child stops us past the
 * drain deadline. 1 if the drain ended in time. */
static int drained_after_stop(ws_server *srv, int (*run)(void)) {
  uint64_t t0;
  pid_t child;
  int ok;
  shut_down(srv);
  child = stop_me_soon();
  t0 = wsa_now_ms();
  ok = run_until_drained(run);
  printf("adapter-stopped: drained after %d ms (stopped %d ms)\n",
         (int)(wsa_now_ms() - t0), STOPPED_MS);
  CHECK(waitpid(child, NULL, 0) == child);
  return ok;
}

/* Shuts srv down and lets the drain deadline pass before any run, then
 * drains with run(). 1 if the drain ended. */
static int drained_after_pause(ws_server *srv, int (*run)(void)) {
  shut_down(srv);
  usleep((DRAIN_MS + 50) * 1000);
  return run_until_drained(run);
}

typedef int (*drain_fn)(ws_server *srv, int (*run)(void));

static wsa_poll g_poll;
static void poll_pass(void) { wsa_poll_run_once_for(&g_poll, 20); }
static int poll_run(void) { return wsa_poll_run_once(&g_poll); }

static void poll_drain(drain_fn drain) {
  ws_server *srv = adapter_server(&g_poll, wsa_poll_config, on_shutdown);
  int cli;
  CHECK(wsa_poll_init(&g_poll, srv, "127.0.0.1", 0) == 0);
  cli = silent_client(wsa_local_port(g_poll.listen_fd), poll_pass);
  wsa_poll_stop_listening(&g_poll);
  CHECK(drain(srv, poll_run));
  close(cli);
  ws_server_free(srv);
  wsa_poll_destroy(&g_poll);
}

static wsa_epoll g_ep;
static void epoll_pass(void) { wsa_epoll_run_once_for(&g_ep, 20); }
static int epoll_run(void) { return wsa_epoll_run_once(&g_ep); }

static void epoll_drain(drain_fn drain) {
  ws_server *srv = adapter_server(&g_ep, wsa_epoll_config, on_shutdown);
  int cli;
  CHECK(wsa_epoll_init(&g_ep, srv, "127.0.0.1", 0) == 0);
  cli = silent_client(wsa_local_port(g_ep.listener.fd), epoll_pass);
  wsa_epoll_stop_listening(&g_ep);
  CHECK(drain(srv, epoll_run));
  close(cli);
  ws_server_free(srv);
  wsa_epoll_destroy(&g_ep);
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_alarm; /* no SA_RESTART: a hung wait returns EINTR */
  sigaction(SIGALRM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  poll_drain(drained_after_stop);
  epoll_drain(drained_after_stop);
  poll_drain(drained_after_pause);
  epoll_drain(drained_after_pause);
  printf("adapter-stopped: %d passed, %d failed\n", g_checks - g_fail,
         g_fail);
  return g_fail ? 1 : 0;
}
