/* libevent adapter: wsa_ev_init failing (its port taken) frees what it
 * made: nothing is left for the host to free (under ASan, LeakSanitizer
 * checks at exit), errno says why, the base has nothing pending, and a
 * host that calls wsa_ev_destroy anyway frees nothing twice. */
#include <stdio.h>
#include <unistd.h>

#include "check.h"

#include "adapters/libevent.h"

/* One failed init on its own base; 1 when it failed cleanly. */
static int init_fails_clean(int busy_port, int destroy_after) {
  struct event_base *base = event_base_new();
  ws_config cfg;
  ws_server *srv;
  wsa_ev a;
  int rc, err, ok;
  if (base == NULL) return 0;
  ws_config_init(&cfg);
  wsa_ev_config(&cfg);
  cfg.user_data = &a;
  if (ws_server_new(&cfg, &srv) != WS_OK) return 0;
  errno = 0;
  rc = wsa_ev_init(&a, base, srv, "127.0.0.1", busy_port);
  err = errno;
  ok = rc == -1 && err == EADDRINUSE && a.listen_fd == -1 &&
       a.timer == NULL && a.wake == NULL && a.accept_ev == NULL;
  if (!ok) fprintf(stderr, "ev-initfail: rc %d errno %d\n", rc, err);
  ws_server_free(srv);
  if (destroy_after) wsa_ev_destroy(&a);
  /* Nothing pending: the loop has no events and returns at once (1). */
  ok = ok && event_base_loop(base, EVLOOP_NONBLOCK) == 1;
  event_base_free(base);
  return ok;
}

int main(void) {
  int busy = wsa_listen("127.0.0.1", 0, 0);
  if (busy < 0) return 2;
  CHECK(init_fails_clean(wsa_local_port(busy), 0));
  CHECK(init_fails_clean(wsa_local_port(busy), 1));
  close(busy);
  printf("adapter-ev-initfail: %d passed, %d failed\n", g_checks - g_fail,
         g_fail);
  return g_fail != 0;
}
