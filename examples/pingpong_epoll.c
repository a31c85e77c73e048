/*
 * The ping/pong push server on epoll (adapters/epoll.h). Same protocol as
 * examples/pingpong.c; the application is pingpong_app.h, this file is the
 * loop around it.
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *
 * Usage: pingpong_epoll [--port N] [--host ADDR] [--post-every MS]
 * (port 0: any free one; --post-every: a worker thread ws_posts
 * {"action":"tick","data":N} to everyone every MS ms, see pingpong_app.h)
 * SIGINT/SIGTERM: 1001 to every client, drain, exit 0.
 */
#include <signal.h>
#include <stdio.h>

#include "adapters/epoll.h"
#include "pingpong_app.h"
#include "wsmux.h"

int main(int argc, char **argv) {
  static wsa_epoll p;
  static pp_poster poster;
  static sigset_t stop_sigs, wait_mask;
  pp_args a;
  ws_config cfg;
  ws_server *srv;
  ws_mux *mux;

  if (pp_parse_args(&a, argc, argv, 8081, PP_OPT_POST)) return 2;
  if ((mux = pp_mux_new(NULL)) == NULL) return 1;
  ws_config_init(&cfg);
  wsa_epoll_config(&cfg);
  cfg.wake = wsa_epoll_wake;
  cfg.user_data = &p;
  pp_config(&cfg, mux);
  if ((srv = pp_server_new(&cfg)) == NULL) return 1;
  if (wsa_epoll_init(&p, srv, a.host, a.port) != 0) {
    perror("listen");
    return 1;
  }
  pp_install_signals();
  /* SIGINT/SIGTERM are let in only while the loop sleeps (epoll_pwait), so
   * one that lands just before the wait still ends it at once, with no
   * timeout on the wait (see adapters/epoll.h). */
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGINT);
  sigaddset(&stop_sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_sigs, &wait_mask);
  p.wait_mask = &wait_mask;
  if (pp_poster_start(&poster, srv, a.post_every) != 0) return 1;
  pp_announce("pingpong_epoll", a.host, wsa_local_port(p.listener.fd));

  while (!pp_stop)
    if (wsa_epoll_run_once(&p) < 0) break;
  wsa_epoll_stop_listening(&p);
  ws_server_tick(srv, wsa_now_ms());
  ws_server_shutdown(srv, PP_DRAIN_MS);
  while (!pp_done) wsa_epoll_run_once_for(&p, 100);
  pp_poster_stop(&poster); /* ws_post must not race ws_server_free */
  ws_server_free(srv);
  wsa_epoll_destroy(&p);
  ws_mux_free(mux);
  printf("pingpong_epoll: stopped\n");
  return 0;
}
