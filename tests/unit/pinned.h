/* The fixture of the test_pinned_*.c files: a server with the counting
 * allocator and the in-memory transport, a handler that records the last
 * message (and answers "big" with K.big bytes of text), on_open/on_close
 * counters. */
#ifndef WS_TEST_PINNED_H
#define WS_TEST_PINNED_H
#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static struct {
  int msgs;
  char last[512];
  size_t last_len;
  int closes;
  int code;
  char reason[128];
  int opens;
  size_t big;
} K;
static inline int k_handler(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud;
  K.msgs++;
  size_t n = m->len < sizeof K.last ? m->len : sizeof K.last;
  memcpy(K.last, m->text, n);
  K.last_len = n;
  if (m->action && strcmp(m->action, "big") == 0 && K.big) {
    char *p = malloc(K.big);
    memset(p, 'x', K.big);
    int rc = ws_conn_send_text(c, p, K.big);
    free(p);
    (void)rc;
  }
  return 0;
}
static inline int k_on_close(ws_conn *c, int code, const char *reason,
                             void *ud) {
  (void)c;
  (void)ud;
  K.closes++;
  K.code = code;
  snprintf(K.reason, sizeof K.reason, "%s", reason);
  return 0;
}
static inline int k_on_open(ws_conn *c, void *ud) {
  (void)c;
  (void)ud;
  K.opens++;
  return 0;
}
static inline void k_cfg(ws_config *cfg) {
  ws_config_init(cfg);
  cfg->alloc = test_alloc();
  mt_config(cfg, 0);
  cfg->handler = k_handler;
  cfg->on_close = k_on_close;
  cfg->on_open = k_on_open;
  memset(&K, 0, sizeof K);
}
static inline ws_server *k_server(ws_config *cfg) {
  ws_server *s;
  cr_assert_eq(ws_server_new(cfg, &s), WS_OK);
  ws_server_tick(s, 0); /* the host's clock starts at 0 */
  return s;
}
/* A server from cfg with A connected and upgraded as device "a". */
static inline ws_server *k_open(ws_config *cfg, mt_conn *A) {
  ws_server *s = k_server(cfg);
  mt_connect(A, s, "a", MT_WHOLE);
  return s;
}
/* Frees the server, then A's captured output. */
static inline void k_done(ws_server *s, mt_conn *A) {
  ws_server_free(s);
  mt_free(A);
}
static inline ws_stats k_stats(ws_server *s) {
  ws_stats st;
  memset(&st, 0, sizeof st);
  ws_server_stats(s, &st, sizeof st);
  return st;
}

#endif
