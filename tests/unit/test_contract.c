/* Claims of include/wsmux.h checked against the library, from a contract
 * audit of the header: each Test names the promise it holds the library
 * to. */
#include "pinned.h"

/* ---- on_close's code and reason ---------------------------------------- */

/* The peer closes with 1000 "bye" while our socket takes nothing, so the
 * echo waits; how the close handshake is then cut (close timeout, the
 * shutdown's drain deadline) must not change what on_close reports: the
 * peer's code, and with it the peer's reason. */
static ws_server *peer_closed_blocked(ws_config *cfg, mt_conn *A) {
  ws_server *s;
  mt_bytes b = {0};
  k_cfg(cfg);
  s = k_open(cfg, A);
  A->would_block = 1;
  mt_close_add(&b, 1000, "bye");
  cr_assert_eq(ws_conn_feed(A->c, b.p, b.len), WS_ECLOSED);
  mt_bytes_free(&b);
  cr_assert_eq(K.closes, 0, "the echo still waits");
  return s;
}

Test(contract, peer_reason_survives_the_close_timeout) {
  ws_config cfg;
  static mt_conn A;
  ws_server *s = peer_closed_blocked(&cfg, &A);
  ws_server_tick(s, cfg.close_timeout_ms);
  cr_assert_eq(K.closes, 1);
  cr_assert_eq(K.code, 1000);
  cr_assert_str_eq(K.reason, "bye");
  k_done(s, &A);
}

Test(contract, peer_reason_survives_the_shutdown_deadline) {
  ws_config cfg;
  static mt_conn A;
  ws_server *s = peer_closed_blocked(&cfg, &A);
  cr_assert_eq(ws_server_shutdown(s, 1000), WS_OK);
  ws_server_tick(s, 1000);
  cr_assert_eq(K.closes, 1);
  cr_assert_eq(K.code, 1000);
  cr_assert_str_eq(K.reason, "bye");
  k_done(s, &A);
}

/* Without a close frame from the peer the reason stays ours, and a 1006
 * (the host's abort) carries ours even after the peer's close came. */
Test(contract, our_reason_without_the_peers_code) {
  ws_config cfg;
  static mt_conn A;
  ws_server *s;
  k_cfg(&cfg);
  s = k_open(&cfg, &A);
  A.would_block = 1;
  cr_assert_eq(ws_conn_close(A.c, 4100, "mine"), WS_OK);
  ws_server_tick(s, cfg.close_timeout_ms);
  cr_assert_eq(K.code, 4100, "the code we queued");
  cr_assert_str_eq(K.reason, "close handshake timeout");
  k_done(s, &A);

  s = peer_closed_blocked(&cfg, &A);
  ws_conn_abort(A.c);
  cr_assert_eq(K.code, 1006);
  cr_assert_str_eq(K.reason, "aborted");
  k_done(s, &A);
}
