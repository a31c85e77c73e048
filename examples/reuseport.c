/*
 * N loop threads on one port: each thread has its own ws_server, its own
 * epoll loop (adapters/epoll.h) and its own SO_REUSEPORT listening socket,
 * so the kernel spreads connections over the threads and no lock is taken
 * on the hot path. A server is driven by its own thread only; the one way
 * across is ws_post, so a broadcast is fanned out by the application: the
 * handler broadcasts on its own server and posts the message to every
 * other one, and each loop delivers it to its clients at its next tick.
 * Posts wait at most POST_LIMIT bytes per server (--post-limit): past it
 * the sender is told ({"action":"error","data":{"code":"busy",...}}) and
 * its connection stays open, so a flood of broadcasts cannot bury a loop
 * under a backlog.
 * The rest of the application is pingpong_app.h.
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to the
 *                                      clients of every thread
 *   {"action":"whoami"}             -> {"action":"thread","data":I}
 *
 * Usage: reuseport [--port N] [--host ADDR] [--threads N]   (default 2)
 *                  [--post-limit BYTES]   (default 1 MiB per server)
 * SIGINT/SIGTERM: every thread sends 1001 to its clients, drains, exits 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "adapters/epoll.h"
#include "pingpong_app.h"
#include "wsmux.h"

#define MAX_THREADS 64
#define POST_LIMIT (1u << 20) /* cfg.max_posted of each server (default) */

typedef struct loop_thread {
  pthread_t th;
  int index;
  int listen_fd;
  ws_server *srv;
  ws_mux *mux; /* one per server: the header promises no sharing */
  wsa_epoll ep;
  int done; /* on_shutdown fired */
} loop_thread;

static loop_thread g_loops[MAX_THREADS];
static int g_nloops; /* --threads */
static volatile int g_stop; /* set by main, read by loops after a wake */
static pthread_barrier_t g_drained;

static int on_whoami(ws_conn *c, const ws_msg *m, void *ud) {
  loop_thread *t = ws_server_user_data(ws_conn_server(c));
  char n[16];
  (void)m, (void)ud;
  snprintf(n, sizeof(n), "%d", t->index);
  return ws_conn_send_json(c, "thread", n, strlen(n));
}

/* Application fan-out, in place of pp_on_broadcast: this server's clients
 * at once, every other server's through ws_post (which frames the message
 * once per server, here on the sending thread). A server shutting down
 * answers WS_ESHUTDOWN: its clients are leaving anyway. A full post queue
 * (WS_ELIMIT) is the sender's answer, not a reason to drop it. */
static int on_broadcast(ws_conn *c, const ws_msg *m, void *ud) {
  static const char busy[] =
      "{\"code\":\"busy\",\"message\":\"other threads are behind\"}";
  ws_server *own = ws_conn_server(c);
  size_t len = 0;
  const char *data = ws_msg_data_json(m, &len); /* NULL, 0: no data member */
  int i, rc, behind = 0;
  (void)ud;
  for (i = 0; i < g_nloops; i++) {
    if (g_loops[i].srv == own) {
      rc = ws_broadcast_json(own, "bc", data, len, NULL, 0);
      if (rc < 0) return -1;
      continue;
    }
    rc = ws_post(g_loops[i].srv, WS_POST_ALL, NULL, "bc", data, len);
    if (rc == WS_ELIMIT) behind = 1;
    else if (rc != WS_OK && rc != WS_ESHUTDOWN) return -1;
  }
  if (behind) ws_conn_send_json(c, "error", busy, sizeof(busy) - 1);
  return 0;
}

static int on_shutdown(ws_server *s, void *ud) {
  (void)s;
  ((loop_thread *)ud)->done = 1;
  return 0;
}

/* The wake callback: user_data is the loop_thread, not the adapter. */
static int on_wake(ws_server *s, void *ud) {
  (void)s;
  return wsa_epoll_notify(&((loop_thread *)ud)->ep);
}

static void *run_loop(void *arg) {
  loop_thread *t = arg;
  (void)wsa_spare(); /* this thread's, for wsa_accept, before any accept */
  while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE))
    if (wsa_epoll_run_once_for(&t->ep, 1000) < 0) break;
  wsa_epoll_stop_listening(&t->ep);
  /* Closed now, not at exit: a connection made during the drain is sent
   * to another thread's socket or refused, instead of waiting in this
   * one's backlog for an accept that never comes. */
  close(t->listen_fd);
  t->listen_fd = -1;
  ws_server_tick(t->srv, wsa_now_ms());
  ws_server_shutdown(t->srv, PP_DRAIN_MS);
  /* Until on_shutdown; an epoll error ends it early (ws_server_free then
   * ends what is left) rather than spinning to the drain deadline. */
  while (!t->done && wsa_epoll_run_once_for(&t->ep, 100) >= 0) {}
  /* Other threads' handlers may still post to this server until every
   * thread has drained: free only after all have (ws_post must not race
   * with ws_server_free). */
  pthread_barrier_wait(&g_drained);
  return NULL;
}

int main(int argc, char **argv) {
  pp_args a;
  int port, i, sig;
  sigset_t set;
  ws_config cfg;

  if (pp_parse_args(&a, argc, argv, 8081, PP_OPT_THREADS | PP_OPT_POST_LIMIT))
    return 2;
  g_nloops = a.threads;
  if (g_nloops < 1 || g_nloops > MAX_THREADS) {
    fprintf(stderr, "--threads: 1..%d\n", MAX_THREADS);
    return 2;
  }
  port = a.port;
  /* Signals go to main only (sigwait below); the loop threads inherit the
   * blocked mask. */
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  pthread_barrier_init(&g_drained, NULL, (unsigned)g_nloops + 1);

  /* Every server and socket exists before any thread runs: a handler may
   * post to any server from its first message on. */
  for (i = 0; i < g_nloops; i++) {
    loop_thread *t = &g_loops[i];
    t->index = i;
    if ((t->mux = pp_mux_new(on_broadcast)) == NULL) return 1;
    if (ws_mux_handle(t->mux, "whoami", on_whoami, NULL) != WS_OK) {
      fprintf(stderr, "mux setup failed\n");
      return 1;
    }
    ws_config_init(&cfg);
    wsa_epoll_config(&cfg);
    cfg.wake = on_wake;
    cfg.user_data = t;
    pp_config(&cfg, t->mux);
    cfg.on_shutdown = on_shutdown; /* per thread: user_data is the thread */
    cfg.max_posted = a.post_limit > 0 ? (size_t)a.post_limit : POST_LIMIT;
    if ((t->srv = pp_server_new(&cfg)) == NULL) return 1;
    t->listen_fd = wsa_listen(a.host, port, 1);
    if (t->listen_fd < 0 || wsa_epoll_init_fd(&t->ep, t->srv, t->listen_fd)) {
      perror("listen");
      return 1;
    }
    if (port == 0) port = wsa_local_port(t->listen_fd); /* the rest follow */
  }
  for (i = 0; i < g_nloops; i++)
    if (pthread_create(&g_loops[i].th, NULL, run_loop, &g_loops[i]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  {
    char what[64];
    snprintf(what, sizeof what, "(%d threads, ws path /ws?device_id=...)",
             g_nloops);
    pp_announce_url("reuseport", "http", a.host, port, what);
  }

  sigwait(&set, &sig);
  __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
  for (i = 0; i < g_nloops; i++) wsa_epoll_notify(&g_loops[i].ep);
  pthread_barrier_wait(&g_drained);
  for (i = 0; i < g_nloops; i++) pthread_join(g_loops[i].th, NULL);
  for (i = 0; i < g_nloops; i++) {
    ws_server_free(g_loops[i].srv);
    wsa_epoll_destroy(&g_loops[i].ep);
    ws_mux_free(g_loops[i].mux);
  }
  pthread_barrier_destroy(&g_drained);
  printf("reuseport: stopped\n");
  return 0;
}
