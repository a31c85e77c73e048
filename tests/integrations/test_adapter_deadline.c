/*
 * An adapter callback whose own tick closes its socket. The libevent
 * adapter ticks before it reads; if the loop thread was busy (a slow host
 * callback) past the socket's deadline while its bytes arrived, that tick
 * closes the socket inside the socket's own read callback, which then
 * must not read from it or hand its freed connection back to the library
 * (a use after free that the ASan tier sees).
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/libevent.h"
#include "check.h"


/* A socket adopted at t0, its deadline passing while the loop is busy,
 * bytes from the peer, then one loop pass: the deadline's close must be
 * the only thing that happens. */
static void busy_loop_past_deadline(void) {
  static wsa_ev a;
  struct event_base *base = event_base_new();
  ws_config cfg;
  ws_server *srv;
  ws_stats st;
  int sv[2];
  ws_config_init(&cfg);
  wsa_ev_config(&cfg);
  cfg.user_data = &a;
  cfg.handshake_timeout_ms = 100;
  CHECK(base != NULL);
  CHECK(ws_server_new(&cfg, &srv) == WS_OK);
  CHECK(wsa_ev_init(&a, base, srv, NULL, 0) == 0);
  wsa_ev_rearm(&a); /* the server's clock at now: the deadline counts from it */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  CHECK(wsa_ev_adopt(&a, sv[0]) == 0);
  wsa_ev_rearm(&a); /* the evtimer at the 100 ms deadline */
  event_base_loop(base, EVLOOP_NONBLOCK);
  usleep(150 * 1000); /* the loop thread busy elsewhere */
  CHECK(write(sv[1], "GET /ws HTTP/1.1\r\n", 18) == 18);
  event_base_loop(base, EVLOOP_ONCE);
  event_base_loop(base, EVLOOP_NONBLOCK);
  ws_server_stats(srv, &st, sizeof(st));
  CHECK(st.conns_pending == 0);
  CHECK(a.nsocks == 0);
  {
    char b;
    /* Closed by the server: an end of file, or a reset since the request
     * bytes were never read. */
    ssize_t r = read(sv[1], &b, 1);
    CHECK(r == 0 || (r < 0 && errno == ECONNRESET));
  }
  ws_server_free(srv);
  wsa_ev_destroy(&a);
  event_base_free(base);
  close(sv[1]);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  busy_loop_past_deadline();
  printf("adapter-deadline: %d passed, %d failed\n", g_checks - g_fail,
         g_fail);
  return g_fail ? 1 : 0;
}
