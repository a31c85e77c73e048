/*
 * The poll and libevent adapters out of descriptors with no spare to shed
 * the pending connection (nofd.h; the epoll adapter: test_adapter_nofd.c).
 * Both returned from their accept loop and left the level-triggered
 * listener watched: every wait returned at once, the loop spun (70% of a
 * core, measured) for as long as the client stayed in the backlog. They
 * now unwatch it for their ACCEPT_PAUSE_MS and watch it again after, so
 * the process idles, and the client is served once descriptors are free.
 * A spinning loop burns about SPAN_MS of CPU in SPAN_MS; a paused one,
 * a few milliseconds.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>

#include "adapters/libevent.h"
#include "adapters/poll.h"
#include "check.h"
#include "nofd.h"

#define CPU_MAX_MS (SPAN_MS / 4)


/* ---- poll ---------------------------------------------------------------- */

static wsa_poll g_poll;

static void poll_pass(void) { wsa_poll_run_once_for(&g_poll, 20); }

static void poll_listener_paused_then_resumed(void) {
  ws_server *srv = adapter_server(&g_poll, wsa_poll_config, NULL);
  uint64_t end;
  double cpu;
  int cli, paused = 0;
  CHECK(wsa_poll_init(&g_poll, srv, "127.0.0.1", 0) == 0);
  cli = nofd_enter(g_poll.listen_fd);
  cpu = cpu_ms();
  for (end = wsa_now_ms() + SPAN_MS; wsa_now_ms() < end;) {
    poll_pass();
    paused |= g_poll.accept_resume != 0;
  }
  cpu = cpu_ms() - cpu;
  printf("adapter-nofd-loops: poll used %.0f ms of CPU in %d ms\n", cpu,
         SPAN_MS);
  CHECK(paused);
  CHECK(cpu < CPU_MAX_MS);
  CHECK(g_poll.n == WSA_POLL_FIRST); /* nothing accepted meanwhile */
  CHECK(nofd_served(cli, poll_pass));
  ws_server_free(srv);
  wsa_poll_destroy(&g_poll);
}

/* ---- libevent ------------------------------------------------------------ */

static wsa_ev g_ev;

/* One pass: the loop runs 20 ms (or until it has nothing left to do). */
static void ev_pass(void) {
  struct timeval tv = {0, 20 * 1000};
  event_base_loopexit(g_ev.base, &tv);
  event_base_dispatch(g_ev.base);
}

static void ev_listener_paused_then_resumed(void) {
  struct event_base *base = event_base_new();
  ws_server *srv = adapter_server(&g_ev, wsa_ev_config, NULL);
  uint64_t end;
  double cpu;
  int cli, paused = 0;
  CHECK(base != NULL);
  CHECK(wsa_ev_init(&g_ev, base, srv, "127.0.0.1", 0) == 0);
  cli = nofd_enter(g_ev.listen_fd);
  cpu = cpu_ms();
  for (end = wsa_now_ms() + SPAN_MS; wsa_now_ms() < end;) {
    ev_pass();
    paused |= evtimer_pending(g_ev.accept_pause, NULL) != 0;
  }
  cpu = cpu_ms() - cpu;
  printf("adapter-nofd-loops: libevent used %.0f ms of CPU in %d ms\n", cpu,
         SPAN_MS);
  CHECK(paused);
  CHECK(cpu < CPU_MAX_MS);
  CHECK(g_ev.nsocks == 0);
  CHECK(nofd_served(cli, ev_pass));
  ws_server_free(srv);
  wsa_ev_destroy(&g_ev);
  event_base_free(base);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  poll_listener_paused_then_resumed();
  ev_listener_paused_then_resumed();
  printf("adapter-nofd-loops: %d passed, %d failed\n", g_checks - g_fail,
         g_fail);
  return g_fail ? 1 : 0;
}
