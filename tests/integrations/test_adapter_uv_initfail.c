/* libuv adapter: wsa_uv_init failing (its port taken) leaves nothing
 * active on the host's loop. Before, the prepare handle stayed started:
 * a host that freed its server and ran its loop on had the freed server
 * ticked every turn, and uv_run(UV_RUN_DEFAULT) never returned. A host
 * that calls wsa_uv_close_handles after the failure anyway (the README's
 * libuv snippet does, as after a normal run) must not close twice. */
#include <stdio.h>
#include <unistd.h>

#include "check.h"

#include "adapters/libuv.h"

static wsa_uv a; /* valid until the loop ran the close callbacks */

/* One failed init on its own loop; 1 when the loop closes clean. */
static int init_fails_clean(int busy_port, int close_after) {
  uv_loop_t loop;
  ws_config cfg;
  ws_server *srv;
  int rc;
  if (uv_loop_init(&loop) != 0) return 0;
  ws_config_init(&cfg);
  wsa_uv_config(&cfg);
  cfg.user_data = &a;
  if (ws_server_new(&cfg, &srv) != WS_OK) return 0;
  rc = wsa_uv_init(&a, &loop, srv, "127.0.0.1", busy_port);
  if (rc == 0) {
    fprintf(stderr, "uv-initfail: the taken port was bound\n");
    return 0;
  }
  ws_server_free(srv); /* the host goes on without a WebSocket server */
  if (close_after) wsa_uv_close_handles(&a);
  alarm(10); /* a loop the adapter keeps alive: SIGALRM ends it */
  uv_run(&loop, UV_RUN_DEFAULT);
  alarm(0);
  rc = uv_loop_close(&loop);
  if (rc != 0) fprintf(stderr, "uv-initfail: uv_loop_close: busy\n");
  return rc == 0;
}

int main(void) {
  int busy = wsa_listen("127.0.0.1", 0, 0);
  if (busy < 0) return 2;
  CHECK(init_fails_clean(wsa_local_port(busy), 0));
  CHECK(init_fails_clean(wsa_local_port(busy), 1));
  close(busy);
  printf("adapter-uv-initfail: %d passed, %d failed\n", g_checks - g_fail,
         g_fail);
  return g_fail != 0;
}
