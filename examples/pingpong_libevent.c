/*
 * The ping/pong push server on libevent (adapters/libevent.h, no
 * bufferevents). Same protocol as examples/pingpong.c; the application is
 * pingpong_app.h, this file is the loop around it (libevent's own signal
 * events and exit path):
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *
 * Usage: pingpong_libevent [--port N] [--host ADDR] [--post-every MS]
 * (port 0: any free one; --post-every: a worker thread ws_posts
 * {"action":"tick","data":N} to everyone every MS ms, see pingpong_app.h;
 * wsa_ev_wake's event_active wakes the loop for them)
 * SIGINT/SIGTERM: 1001 to every client, drain, exit 0.
 */
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>

#include "adapters/libevent.h"
#include "pingpong_app.h"
#include "wsmux.h"

static wsa_ev g_ev;
static ws_server *g_srv;
static struct event *g_sigint, *g_sigterm;
static pp_poster g_poster;

/* Every connection is gone after the shutdown: leave the loop. */
static int on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  event_base_loopbreak(g_ev.base);
  return 0;
}

/* The events stay added through the drain (deleting them would give a
 * second SIGTERM its default action: death, no drain): repeats are
 * ignored. */
static void on_signal(evutil_socket_t sig, short what, void *arg) {
  static int stopping;
  (void)sig, (void)what, (void)arg;
  if (stopping++) return;
  wsa_ev_stop_listening(&g_ev);
  ws_server_tick(g_srv, wsa_now_ms());
  if (ws_server_shutdown(g_srv, PP_DRAIN_MS) == WS_OK &&
      ws_server_conn_count(g_srv) == 0)
    event_base_loopbreak(g_ev.base);
  else
    wsa_ev_rearm(&g_ev); /* the drain deadline */
}

int main(int argc, char **argv) {
  struct event_base *base;
  pp_args a;
  ws_config cfg;
  ws_mux *mux;

  if (pp_parse_args(&a, argc, argv, 8081, PP_OPT_POST)) return 2;
  if ((mux = pp_mux_new(NULL)) == NULL) return 1;
  evthread_use_pthreads(); /* wsa_ev_wake may run on other threads */
  base = event_base_new();
  if (base == NULL) {
    fprintf(stderr, "event_base_new failed\n");
    return 1;
  }
  ws_config_init(&cfg);
  wsa_ev_config(&cfg);
  cfg.wake = wsa_ev_wake;
  cfg.user_data = &g_ev;
  pp_config(&cfg, mux);
  cfg.on_shutdown = on_shutdown; /* leaves the loop */
  if ((g_srv = pp_server_new(&cfg)) == NULL) return 1;
  if (wsa_ev_init(&g_ev, base, g_srv, a.host, a.port) != 0) {
    perror("listen");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  g_sigint = evsignal_new(base, SIGINT, on_signal, NULL);
  g_sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
  event_add(g_sigint, NULL);
  event_add(g_sigterm, NULL);
  if (pp_poster_start(&g_poster, g_srv, a.post_every) != 0) return 1;
  pp_announce("pingpong_libevent", a.host, wsa_ev_port(&g_ev));

  event_base_dispatch(base);

  pp_poster_stop(&g_poster); /* ws_post must not race ws_server_free */
  ws_server_free(g_srv);
  wsa_ev_destroy(&g_ev);
  event_free(g_sigint);
  event_free(g_sigterm);
  event_base_free(base);
  ws_mux_free(mux);
  printf("pingpong_libevent: stopped\n");
  return 0;
}
