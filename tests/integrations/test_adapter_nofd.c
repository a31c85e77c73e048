/*
 * The epoll adapter out of descriptors with no spare left to shed the
 * pending connection (wsa_accept returns WSA_ACCEPT_NOFD: with one loop
 * per thread, another thread took the slot the spare freed). The listener
 * stays readable, so the adapter must stop watching it for
 * WSA_EPOLL_ACCEPT_PAUSE_MS instead of waking at once, forever (100% CPU),
 * and must accept the pending client once descriptors are free again.
 * test_reuseport.py's out-of-descriptors test reaches that state only when
 * a race goes its way; here it is made on purpose (nofd.h). The poll and
 * libevent adapters: test_adapter_nofd_loops.c.
 */
#include <signal.h>
#include <stdio.h>

#include "adapters/epoll.h"
#include "check.h"
#include "nofd.h"

static wsa_epoll g_p;

static void pass(void) { wsa_epoll_run_once_for(&g_p, 20); }

/* Loop passes that handled an event during ms milliseconds (each pass
 * waits at most 20 ms). */
static int busy_passes(int ms) {
  uint64_t end = wsa_now_ms() + (uint64_t)ms;
  int busy = 0;
  while (wsa_now_ms() < end)
    if (wsa_epoll_run_once_for(&g_p, 20) > 0) busy++;
  return busy;
}

static void listener_paused_then_resumed(void) {
  ws_config cfg;
  ws_server *srv;
  int cli, busy;
  ws_config_init(&cfg);
  wsa_epoll_config(&cfg);
  cfg.user_data = &g_p;
  cfg.path = NULL;
  cfg.device_required = 0;
  CHECK(ws_server_new(&cfg, &srv) == WS_OK);
  CHECK(wsa_epoll_init(&g_p, srv, "127.0.0.1", 0) == 0);
  cli = nofd_enter(g_p.listener.fd);
  busy = busy_passes(SPAN_MS);
  /* Paused: each time the pause ends (every 100 ms: the timerfd's pass)
   * the next pass finds the listener still readable and pauses again.
   * Spinning makes hundreds. */
  CHECK(busy >= 2 && busy <= 2 * (SPAN_MS / WSA_EPOLL_ACCEPT_PAUSE_MS) + 4);
  CHECK(g_p.nsocks == 0);
  printf("adapter-nofd: %d loop passes with events in %d ms\n", busy, SPAN_MS);
  /* Descriptors free again: the pending client is accepted and served. */
  CHECK(nofd_served(cli, pass));
  CHECK(g_p.accept_resume == 0);
  ws_server_free(srv);
  wsa_epoll_destroy(&g_p);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  listener_paused_then_resumed();
  printf("adapter-nofd: %d passed, %d failed\n", g_checks - g_fail, g_fail);
  return g_fail ? 1 : 0;
}
