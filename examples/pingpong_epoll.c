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
#include <sys/signalfd.h>
#include <unistd.h>

#include "adapters/epoll.h"
#include "pingpong_app.h"
#include "wsmux.h"

/* SIGINT/SIGTERM arrive as a readable signalfd in the same epoll set: seen
 * in the batch of events where they land, however busy the clients keep
 * the loop (a mask opened only inside epoll_pwait lets a signal in only
 * when no socket is ready), and never lost between the check and the
 * wait. A second one during the drain is read and ignored. */
static void on_signal(wsa_epoll *p, wsa_epoll_watcher *w, uint32_t events) {
  struct signalfd_siginfo si;
  (void)p, (void)events;
  while (read(w->item.fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) continue;
  pp_stop = 1;
}

int main(int argc, char **argv) {
  static wsa_epoll p;
  static wsa_epoll_watcher signal_w;
  static pp_poster poster;
  sigset_t stop_sigs;
  int sfd;
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
  pp_install_signals(); /* for SIGPIPE: SIGINT/SIGTERM come by signalfd */
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGINT);
  sigaddset(&stop_sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL); /* the poster inherits it */
  if ((sfd = signalfd(-1, &stop_sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
      wsa_epoll_watch(&p, &signal_w, sfd, EPOLLIN, on_signal, NULL) != 0) {
    perror("signalfd and its watch");
    return 1;
  }
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
  wsa_epoll_unwatch(&p, &signal_w);
  close(sfd);
  wsa_epoll_destroy(&p);
  ws_mux_free(mux);
  printf("pingpong_epoll: stopped\n");
  return 0;
}
