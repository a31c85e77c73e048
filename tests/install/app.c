/* Built against an installed libwsmux with pkg-config: links and runs. */
#include <stdio.h>
#include <string.h>
#include <wsmux.h>

static ssize_t sink(ws_conn *c, void *t, const void *d, size_t n) {
  (void)c, (void)t, (void)d;
  return (ssize_t)n;
}
static int done(ws_conn *c, void *t) {
  (void)c, (void)t;
  return 0;
}

int main(void) {
  ws_config cfg;
  ws_server *s;
  ws_conn *c;
  int rc;
  ws_config_init(&cfg);
  cfg.send = sink;
  cfg.close = done;
  if ((rc = ws_server_new(&cfg, &s)) != WS_OK) {
    printf("ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  if (ws_conn_new(s, NULL, &c) != WS_OK) return 1;
  ws_server_free(s);
  printf("libwsmux %s: %s\n", ws_version(), ws_strerror(WS_EQUEUEFULL));
  return strcmp(ws_version(), WS_VERSION) != 0;
}
