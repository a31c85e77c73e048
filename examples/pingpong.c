/*
 * The ping/pong push server: the Go model rebuilt on libwsmux, on poll(2).
 * The application (handlers, page, options, signals) is pingpong_app.h;
 * this file is the poll loop around it (adapters/poll.h).
 *
 *   ws://HOST:8081/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""} to ID
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *   GET /                           -> examples/web/index.html
 *
 * Usage: pingpong [--port N] [--host ADDR] [--web DIR] [--post-every MS]
 * (--post-every: a worker thread ws_posts {"action":"tick","data":N} to
 * everyone every MS ms, see pingpong_app.h; the adapter's self-pipe,
 * wsa_poll_wake, wakes the loop for them)
 * Exits cleanly on SIGINT/SIGTERM (1001 to every client, then drain).
 */
#include <stdio.h>

#include "adapters/poll.h"
#include "pingpong_app.h"
#include "wsmux.h"

int main(int argc, char **argv) {
  pp_args a;
  ws_config cfg;
  ws_server *srv;
  ws_mux *mux;
  static wsa_poll p; /* large: keep it off the stack */
  static pp_poster poster;

  if (pp_parse_args(&a, argc, argv, 8081, PP_OPT_WEB | PP_OPT_POST)) return 2;
  pp_load_page(a.web);
  if ((mux = pp_mux_new(NULL)) == NULL) return 1;
  ws_config_init(&cfg);
  wsa_poll_config(&cfg);
  cfg.wake = wsa_poll_wake;
  cfg.user_data = &p;
  pp_config(&cfg, mux);
  cfg.on_http = pp_on_http;
  if ((srv = pp_server_new(&cfg)) == NULL) return 1;
  if (wsa_poll_init(&p, srv, a.host, a.port) != 0) {
    perror("listen");
    return 1;
  }
  pp_install_signals();
  if (pp_poster_start(&poster, srv, a.post_every) != 0) return 1;
  /* --port 0 asks the OS for a free one: report the bound port */
  pp_announce("pingpong", a.host, wsa_local_port(p.listen_fd));

  while (!pp_stop) wsa_poll_run_once(&p);
  ws_server_tick(srv, wsa_now_ms());
  ws_server_shutdown(srv, PP_DRAIN_MS);
  while (!pp_done) wsa_poll_run_once_for(&p, 100);
  pp_poster_stop(&poster); /* ws_post must not race ws_server_free */
  ws_server_free(srv);
  wsa_poll_destroy(&p);
  ws_mux_free(mux);
  pp_free_page();
  printf("pingpong: stopped\n");
  return 0;
}
