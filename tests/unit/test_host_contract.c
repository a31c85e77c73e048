/* What the library does with what the host hands it, at the edges of the
 * documented contract: configs from older (shorter) headers, and a send
 * callback that reports more bytes than it was given; which request headers
 * handlers can still read (keep_headers). */
#include "internal.h"
#include "mem_transport.h"
#include "support.h"
#include "wsmux.h"
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* A config as a program built against a header whose ws_config is size
 * bytes long would pass. Larger than ours (a newer header): only the size
 * field says so. */
static int new_with_size(size_t size, ws_server **s) {
  ws_config cfg;
  ws_config_defaults(&cfg, size < sizeof cfg ? size : sizeof cfg);
  cfg.struct_size_ = size;
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  return ws_server_new(&cfg, s);
}

/* A program built against an older wsmux.h passes a shorter config: the
 * oldest accepted layout ends just before `wake`; the fields it lacks keep
 * their defaults. */
Test(host_contract, config_from_an_older_header_is_accepted) {
  ws_server *s = NULL;
  cr_assert_eq(new_with_size(offsetof(ws_config, wake), &s), WS_OK);
  cr_assert_eq(s->cfg.max_posted, (size_t)16 << 20, "max_posted defaulted");
  cr_assert_null(s->cfg.wake);
  ws_server_free(s);
  cr_assert_eq(new_with_size(offsetof(ws_config, max_posted), &s), WS_OK);
  cr_assert_eq(s->cfg.max_posted, (size_t)16 << 20);
  ws_server_free(s);
  cr_assert_eq(test_alloc_live(), 0);
}

Test(host_contract, config_of_unknown_size_is_refused) {
  ws_server *s = (ws_server *)&s;
  cr_assert_eq(new_with_size(offsetof(ws_config, wake) - 1, &s), WS_EINVAL);
  cr_assert_eq(new_with_size(sizeof(ws_config) + 1, &s), WS_EINVAL);
  cr_assert_eq(test_alloc_live(), 0);
}

/* send wrapped so that it claims one byte more than it was offered. */
static ssize_t (*real_send)(ws_conn *, void *, const void *, size_t);
static ssize_t overclaiming_send(ws_conn *c, void *t, const void *p, size_t n) {
  ssize_t w = real_send(c, t, p, n);
  return w > 0 ? w + 1 : w;
}
static int closed_code;
static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  (void)c, (void)reason, (void)ud;
  closed_code = code;
  return 0;
}

Test(host_contract, send_claiming_more_than_len_fails_the_connection) {
  ws_config cfg;
  ws_server *s;
  mt_conn t;
  ws_stats st;
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_close = on_close;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_connect(&t, s, "a", MT_WHOLE);
  cr_assert_not_null(t.c);
  /* Swapped in only now: the 101 went out normally. */
  real_send = cfg.send;
  s->cfg.send = overclaiming_send;
  closed_code = 0;
  cr_assert_geq(ws_conn_send_text(t.c, "hi", 2), 0);
  cr_assert_null(t.c, "the transport was closed");
  cr_assert_eq(t.closes, 1);
  cr_assert_eq(closed_code, WS_CLOSE_ABNORMAL);
  cr_assert_eq(ws_server_stats(s, &st, sizeof st), WS_OK);
  cr_assert_eq(st.conns_open, 0);
  ws_server_free(s);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

/* keep_headers: on_upgrade always sees the request's headers; handlers see
 * them only with keep_headers = 1 (default 0: an idle connection keeps its
 * path, query and device id, not a browser's kilobyte of headers). */
static char in_upgrade[32], in_handler[32];
static void copy_header(char *out, const ws_request *r) {
  const char *v = ws_request_header(r, "X-Token");
  snprintf(out, 32, "%s", v ? v : "(none)");
}
static int upgrade_reads(ws_conn *c, const ws_request *req,
                         const char **reason, void *ud) {
  (void)c, (void)reason, (void)ud;
  copy_header(in_upgrade, req);
  return 0;
}
static int handler_reads(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m, (void)ud;
  copy_header(in_handler, ws_conn_request(c));
  cr_assert_str_eq(ws_request_query(ws_conn_request(c), "device_id"), "a");
  return 0;
}

static void headers_seen(int keep, const char *want_in_handler) {
  ws_config cfg;
  ws_server *s;
  mt_conn t;
  char req[512];
  size_t n = mt_request(req, sizeof req, "a", "X-Token: t0k3n\r\n");
  ws_config_init(&cfg);
  cfg.alloc = test_alloc();
  mt_config(&cfg, 0);
  cfg.on_upgrade = upgrade_reads;
  cfg.handler = handler_reads;
  if (keep >= 0) cfg.keep_headers = keep;
  cr_assert_eq(ws_server_new(&cfg, &s), WS_OK);
  mt_open(&t, s);
  cr_assert_eq(mt_feed(&t, req, n, MT_WHOLE), WS_OK);
  cr_assert_eq(mt_send_text(&t, "{\"action\":\"x\"}", MT_WHOLE), WS_OK);
  cr_expect_str_eq(in_upgrade, "t0k3n");
  cr_expect_str_eq(in_handler, want_in_handler);
  ws_server_free(s);
  mt_free(&t);
  cr_assert_eq(test_alloc_live(), 0);
}

Test(host_contract, headers_reach_handlers_only_when_kept) {
  headers_seen(-1, "(none)"); /* the default */
  headers_seen(0, "(none)");
  headers_seen(1, "t0k3n");
}
