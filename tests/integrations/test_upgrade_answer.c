/*
 * ws_conn_upgrade_answer, in memory: the host's HTTP server writes the
 * response, so the library must write no HTTP bytes, report the accept
 * value or the refusal, and hold output until the host lets it through.
 */
#include <stdio.h>
#include <string.h>

#include "wsmux.h"
#include "check.h"


typedef struct tp {
  int open_socket; /* 0: the host's 101 is not out yet, send answers 0 */
  unsigned char out[4096];
  size_t out_len;
  int closed, want, http_calls, opened;
} tp;

static ssize_t t_send(ws_conn *c, void *t, const void *d, size_t n) {
  tp *p = t;
  (void)c;
  if (!p->open_socket) return 0;
  if (n > sizeof(p->out) - p->out_len) n = sizeof(p->out) - p->out_len;
  memcpy(p->out + p->out_len, d, n);
  p->out_len += n;
  return (ssize_t)n;
}

static int t_want(ws_conn *c, void *t, int want) {
  (void)c;
  ((tp *)t)->want = want;
  return 0;
}

static int t_close(ws_conn *c, void *t) {
  (void)c;
  ((tp *)t)->closed++;
  return 0;
}

static int on_open(ws_conn *c, void *ud) {
  (void)ud;
  ((tp *)ws_conn_transport(c))->opened++;
  return ws_conn_send_json(c, "hello", "1", 1);
}

static int on_http(ws_conn *c, const ws_request *r, void *ud) {
  (void)r, (void)ud;
  ((tp *)ws_conn_transport(c))->http_calls++;
  return 0;
}

static const ws_header k_upgrade[] = {
    {"Host", 4, "example.com", 11},
    {"Upgrade", 7, "websocket", 9},
    {"Connection", 10, "Upgrade", 7},
    {"Sec-WebSocket-Key", 17, "dGhlIHNhbXBsZSBub25jZQ==", 24},
    {"Sec-WebSocket-Version", 21, "13", 2},
};

int main(void) {
  ws_config cfg;
  ws_server *s;
  ws_conn *c;
  tp a, b, d, e;
  int status;
  const char *reason;
  char accept[WS_ACCEPT_LEN + 1];

  ws_config_init(&cfg);
  cfg.send = t_send;
  cfg.want_write = t_want;
  cfg.close = t_close;
  cfg.on_open = on_open;
  cfg.on_http = on_http;
  if (ws_server_new(&cfg, &s) != WS_OK) return 1;
  ws_server_tick(s, 1000);

  /* accepted: 101 reported, the RFC 6455 example key's accept value, no
   * HTTP bytes, on_open's message held until the socket is the host's */
  memset(&a, 0, sizeof(a));
  CHECK(ws_conn_new(s, &a, &c) == WS_OK);
  CHECK(ws_conn_upgrade_answer(c, "GET", "/ws", "device_id=a", k_upgrade, 5,
                               &status, &reason, accept) == WS_OK);
  CHECK(status == 101);
  CHECK(reason == NULL);
  CHECK(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
  CHECK(a.opened == 1 && a.closed == 0);
  CHECK(a.out_len == 0 && a.want == 1 && ws_conn_want_write(c) == 1);
  CHECK(ws_server_conn_count(s) == 1);
  CHECK(ws_server_find_device(s, "a") == c);
  a.open_socket = 1; /* the host's 101 is out */
  CHECK(ws_conn_writable(c) == WS_OK);
  CHECK(a.want == 0);
  /* exactly one unmasked text frame: {"action":"hello","data":1} */
  CHECK(a.out_len == 2 + 27 && a.out[0] == 0x81 && a.out[1] == 27);
  CHECK(a.out_len == 29 &&
        memcmp(a.out + 2, "{\"action\":\"hello\",\"data\":1}", 27) == 0);

  /* refused: the status and reason, closed before return, nothing sent */
  memset(&b, 0, sizeof(b));
  b.open_socket = 1;
  CHECK(ws_conn_new(s, &b, &c) == WS_OK);
  CHECK(ws_conn_upgrade_answer(c, "GET", "/ws", NULL, k_upgrade, 5, &status,
                               &reason, accept) == WS_OK);
  CHECK(status == 400);
  CHECK(reason != NULL && strcmp(reason, "missing device_id") == 0);
  CHECK(accept[0] == '\0');
  CHECK(b.closed == 1 && b.opened == 0 && b.out_len == 0);

  /* not an upgrade: 426 on the path, on_http not called, nothing sent */
  memset(&d, 0, sizeof(d));
  d.open_socket = 1;
  CHECK(ws_conn_new(s, &d, &c) == WS_OK);
  CHECK(ws_conn_upgrade_answer(c, "GET", "/ws", "device_id=d", k_upgrade, 1,
                               &status, &reason, accept) == WS_OK);
  CHECK(status == 426 && d.http_calls == 0 && d.closed == 1 && d.out_len == 0);

  /* a duplicate device id replaces the older connection, as usual */
  memset(&e, 0, sizeof(e));
  e.open_socket = 1;
  CHECK(ws_conn_new(s, &e, &c) == WS_OK);
  CHECK(ws_conn_upgrade_answer(c, "GET", "/ws", "device_id=a", k_upgrade, 5,
                               &status, &reason, accept) == WS_OK);
  CHECK(status == 101 && ws_server_find_device(s, "a") == c);
  CHECK(a.out_len > 29 && a.out[29] == 0x88); /* close frame to the old */

  /* argument and state errors */
  CHECK(ws_conn_upgrade_answer(c, "GET", "/ws", NULL, k_upgrade, 5, &status,
                               &reason, accept) == WS_ESTATE);
  CHECK(ws_conn_upgrade_answer(NULL, "GET", "/ws", NULL, NULL, 0, &status,
                               &reason, accept) == WS_EINVAL);

  memset(&d, 0, sizeof(d));
  CHECK(ws_conn_new(s, &d, &c) == WS_OK);
  CHECK(ws_conn_upgrade_answer(c, "GET", "/ws", NULL, k_upgrade, 5, NULL,
                               &reason, accept) == WS_EINVAL);
  ws_conn_abort(c);

  ws_server_free(s);
  printf("upgrade-answer: %d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
