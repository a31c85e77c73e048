/*
 * Shared by the libuv adapter tests (test_adapter_uv_*.c): a server on the
 * adapter at an ephemeral loopback port, with on_open set and no path or
 * device id required, and one client upgraded on it through a small
 * receive buffer (so that the server's writes come up short), and the
 * end of it all. Include
 * after adapters/libuv.h, check.h and nofd.h.
 */
#ifndef WS_INTEG_UV_ONE_H
#define WS_INTEG_UV_ONE_H

/* Returns the client's socket; *srv is the server, to free. */
static inline int uv_serve_one(wsa_uv *a, uv_loop_t *loop,
                               int (*on_open)(ws_conn *, void *),
                               ws_server **srv) {
  ws_config cfg;
  int fd;
  ws_config_init(&cfg);
  wsa_uv_config(&cfg);
  cfg.user_data = a;
  cfg.on_open = on_open;
  cfg.path = NULL;
  cfg.device_required = 0;
  CHECK(ws_server_new(&cfg, srv) == WS_OK);
  CHECK(wsa_uv_init(a, loop, *srv, "127.0.0.1", 0) == 0);
  fd = connect_rcvbuf(wsa_uv_port(a), 4096);
  CHECK(send(fd, nofd_req, sizeof(nofd_req) - 1, 0) ==
        (ssize_t)(sizeof(nofd_req) - 1));
  return fd;
}

/* Closes the client, lets the server see it go (5 s at most), frees the
 * server and the adapter's handles, and checks the loop ends empty. */
static inline void uv_end_one(wsa_uv *a, uv_loop_t *loop, int fd,
                              ws_server *srv) {
  uint64_t end = wsa_now_ms() + 5000;
  close(fd);
  while (a->nsocks > 0 && wsa_now_ms() < end) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  ws_server_free(srv);
  wsa_uv_close_handles(a);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
}

#endif /* WS_INTEG_UV_ONE_H */
