/*
 * Runs one of the README's loop snippets (SNIPPET: the extracted block,
 * SERVE_EPOLL, SERVE_POLL (the epoll one with epoll replaced by poll, as
 * the README says), SERVE_UV or SERVE_EV: which one) as a program, so that
 * test_readme.py drives what a user pastes: a ping -> pong mux served on
 * 127.0.0.1:PORT, and SIGTERM drains every client with 1001, then exits 0.
 *
 * Usage: serve_<loop> PORT
 */
#include SNIPPET

#include <stdlib.h>

static int on_ping(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

#if defined(SERVE_EPOLL) || defined(SERVE_POLL)
/* The snippet's loop runs while running is set: its SIGTERM handler. */
static void on_term(int sig) {
  (void)sig;
  running = 0;
}
#endif

int main(int argc, char **argv) {
  ws_mux *mux = ws_mux_new(NULL);
  int rc, port = argc > 1 ? atoi(argv[1]) : 0;
  if (mux == NULL || ws_mux_handle(mux, "ping", on_ping, NULL) != WS_OK)
    return 1;
  setvbuf(stdout, NULL, _IONBF, 0);
#if defined(SERVE_EPOLL) || defined(SERVE_POLL)
  {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
  }
#ifdef SERVE_EPOLL
  rc = serve_epoll(mux, port);
#else
  rc = serve_poll(mux, port);
#endif
#elif defined(SERVE_UV)
  rc = serve_uv(uv_default_loop(), mux, port);
  if (uv_loop_close(uv_default_loop()) != 0) rc = -1; /* a handle left */
#elif defined(SERVE_EV)
  {
    struct event_base *base = event_base_new();
    rc = base ? serve_ev(base, mux, port) : -1;
    if (base) event_base_free(base);
  }
#else
#error "SERVE_EPOLL, SERVE_POLL, SERVE_UV or SERVE_EV"
#endif
  ws_mux_free(mux);
  printf("stopped: %d\n", rc);
  return rc == 0 ? 0 : 1;
}
