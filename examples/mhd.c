/*
 * libwsmux behind libmicrohttpd: MHD serves the HTTP routes and parses
 * every request; /ws requests are checked by libwsmux and upgraded with
 * MHD's upgrade API, then the socket is libwsmux's.
 *
 *   GET /hello                       -> 200 "hello"
 *   ws://HOST:PORT/ws?device_id=ID   -> the ping/pong protocol of
 *                                       examples/pingpong.c
 *                                       (pingpong_app.h)
 *
 * One thread: MHD runs in external mode on its own epoll fd
 * (MHD_USE_EPOLL), which the epoll adapter watches like any host fd, so
 * MHD's callbacks and libwsmux run on the same thread and need no lock.
 *
 * The 101: MHD always writes "HTTP/1.1 101 Switching Protocols" itself, so
 * the access handler calls ws_conn_upgrade_answer (the same checks as
 * ws_conn_upgrade, but no HTTP bytes queued): accepted, it gives the
 * Sec-WebSocket-Accept value for MHD's 101; refused, the status and reason
 * MHD answers with. Until MHD hands over the socket the connection's send
 * callback answers 0, so anything on_open queues waits in the library.
 *
 * Usage: mhd [--port N] [--host ADDR]   (port 0: any free one)
 * SIGINT/SIGTERM: 1001 to every WebSocket client, drain, exit 0.
 */
#include <fcntl.h>
#include <microhttpd.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "adapters/epoll.h"
#include "pingpong_app.h"
#include "wsmux.h"

#define MAX_HEADERS 64
/* MHD owns the request until the upgrade: libwsmux's handshake deadline
 * starts only when MHD hands the request over. MHD's timeout is an idle
 * one (each byte restarts it), so a client dribbling its request would
 * keep its socket, and enough of them every HTTP slot: a request must
 * also arrive whole within HTTP_REQUEST_S of the connection's start (or
 * of its previous request's end), as libwsmux's own handshake deadline. */
#define HTTP_IDLE_S 10
#define HTTP_REQUEST_S 10

/* File descriptors. MHD counts upgraded sockets among its connections
 * until they close, and at its limit (by default FD_SETSIZE - 4, 1020)
 * stops accepting: every route would wait behind idle WebSocket clients.
 * Its limit comes from RLIMIT_NOFILE instead, less a reserve for the
 * listening socket, the epoll fds and stdio; libwsmux's max_connections
 * sits an eighth below it, so that WebSocket clients past it get 503 while
 * HTTP requests still have room. */
#define FD_RESERVE 32

static void fd_budget(unsigned *mhd_limit, size_t *ws_limit) {
  struct rlimit rl;
  rlim_t n = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) n = rl.rlim_cur;
  if (n > 1000000) n = 1000000; /* RLIM_INFINITY included */
  *mhd_limit = n > 2 * FD_RESERVE ? (unsigned)(n - FD_RESERVE) : FD_RESERVE;
  *ws_limit = *mhd_limit - *mhd_limit / 8;
}

/* The transport: an epoll-adapter socket (first member) that has no fd
 * until MHD hands it over after its 101. */
typedef struct mhd_sock {
  wsa_epoll_sock base;
  struct MHD_UpgradeResponseHandle *urh;
  int adopted; /* the loop owns it (else the request below does) */
} mhd_sock;

/* Per MHD request (con_cls), from the raw URI on. */
typedef struct mhd_req {
  char *uri;       /* raw request target: path and query, still encoded */
  mhd_sock *sock;  /* a /ws request's connection until adopted */
  int seen;        /* the access handler ran once */
  int upgrading;   /* a 101 is queued: the socket leaves HTTP */
} mhd_req;

/* Per TCP connection (MHD's socket_context): on g_waiting, oldest first,
 * while a request is due from it. */
typedef struct mhd_peer {
  struct mhd_peer *prev, *next;
  uint64_t due_ms;
  MHD_socket fd;
} mhd_peer;

typedef struct header_list {
  ws_header h[MAX_HEADERS];
  size_t n;
  int overflow; /* more than MAX_HEADERS: answered 431, as when fed */
} header_list;

static wsa_epoll g_ep;
static ws_server *g_srv;
static struct MHD_Daemon *g_mhd;
static mhd_peer g_waiting = {&g_waiting, &g_waiting, 0, MHD_INVALID_SOCKET};

/* ---- the request deadline ---------------------------------------------- */

static void peer_unwait(mhd_peer *p) {
  if (p->next == NULL) return;
  p->prev->next = p->next;
  p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

/* Every deadline is now + HTTP_REQUEST_S, so appending keeps the order. */
static void peer_wait(mhd_peer *p) {
  peer_unwait(p);
  p->due_ms = wsa_now_ms() + HTTP_REQUEST_S * 1000u;
  p->prev = g_waiting.prev;
  p->next = &g_waiting;
  g_waiting.prev->next = p;
  g_waiting.prev = p;
}

static mhd_peer *peer_of(struct MHD_Connection *con) {
  const union MHD_ConnectionInfo *i =
      MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return i ? i->socket_context : NULL;
}

/* Late requests: shut the socket down; MHD reads the end and closes it
 * (then on_connection frees the peer). O(late requests). */
static void expire_requests(void) {
  uint64_t now = wsa_now_ms();
  while (g_waiting.next != &g_waiting && g_waiting.next->due_ms <= now) {
    mhd_peer *p = g_waiting.next;
    peer_unwait(p);
    shutdown(p->fd, SHUT_RDWR);
  }
}

/* ---- transport callbacks: the epoll adapter's, once there is an fd ---- */

static ssize_t mhd_send(ws_conn *c, void *t, const void *d, size_t n) {
  mhd_sock *s = t;
  return s->adopted ? wsa_epoll_send(c, t, d, n) : 0;
}

static ssize_t mhd_sendv(ws_conn *c, void *t, const ws_iovec *iov, int n) {
  mhd_sock *s = t;
  return s->adopted ? wsa_epoll_sendv(c, t, iov, n) : 0;
}

static int mhd_want_write(ws_conn *c, void *t, int want) {
  mhd_sock *s = t;
  return s->adopted ? wsa_epoll_want_write(c, t, want) : 0;
}

/* MHD owns the upgraded fd: it must be closed through MHD_upgrade_action.
 * The struct goes on the adapter's dead list (freed after the batch). */
static int mhd_close(ws_conn *c, void *t) {
  mhd_sock *s = t;
  (void)c;
  s->base.conn = NULL;
  if (!s->adopted) return 0; /* its request frees it */
  epoll_ctl(g_ep.epfd, EPOLL_CTL_DEL, s->base.item.fd, NULL);
  wsa_drain_fd(s->base.item.fd); /* MHD closes it: no reset (sockio.h) */
  MHD_upgrade_action(s->urh, MHD_UPGRADE_ACTION_CLOSE);
  s->base.item.fd = -1;
  s->base.next_dead = g_ep.dead;
  g_ep.dead = &s->base;
  g_ep.nsocks--;
  return 0;
}

/* ---- MHD callbacks ---------------------------------------------------- */

static void on_connection(void *cls, struct MHD_Connection *con, void **ctx,
                          enum MHD_ConnectionNotificationCode what) {
  mhd_peer *p = *ctx;
  const union MHD_ConnectionInfo *i;
  (void)cls;
  if (what == MHD_CONNECTION_NOTIFY_CLOSED) {
    if (p) peer_unwait(p);
    free(p);
    *ctx = NULL;
    return;
  }
  i = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (i == NULL || (p = calloc(1, sizeof(*p))) == NULL) {
    /* No deadline for this one: MHD's idle timeout still applies. */
    return;
  }
  p->fd = i->connect_fd;
  peer_wait(p);
  *ctx = p;
}

/* Keeps the raw request target: MHD hands the access handler a decoded
 * path and parsed arguments, libwsmux wants them as sent. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *con) {
  mhd_req *r = calloc(1, sizeof(*r));
  (void)cls, (void)con;
  if (r) r->uri = strdup(uri);
  return r;
}

static void on_completed(void *cls, struct MHD_Connection *con,
                         void **con_cls, enum MHD_RequestTerminationCode why) {
  mhd_req *r = *con_cls;
  mhd_peer *p;
  (void)cls;
  if (r == NULL) return;
  /* Answered and kept alive: the next request is due in its turn. */
  if (why == MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->upgrading &&
      (p = peer_of(con)) != NULL)
    peer_wait(p);
  if (r->sock && !r->sock->adopted) {
    /* MHD never got to the upgrade (client gone, write error). */
    if (r->sock->base.conn) ws_conn_abort(r->sock->base.conn);
    free(r->sock);
  }
  free(r->uri);
  free(r);
  *con_cls = NULL;
}

/* MHD wrote its 101: the socket is ours (to be closed through MHD). */
static void on_upgraded(void *cls, struct MHD_Connection *con, void *con_cls,
                        const char *extra, size_t extra_len, MHD_socket fd,
                        struct MHD_UpgradeResponseHandle *urh) {
  mhd_req *r = con_cls;
  mhd_sock *s = r->sock;
  struct epoll_event ev;
  ws_conn *c;
  (void)cls, (void)con;
  r->sock = NULL; /* the loop owns it now */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  /* MHD leaves Nagle on after its 101 (it turns TCP_NODELAY off): a push
   * right after a reply then waited for the client's delayed ACK, ~40 ms.
   * Small frames go out at once, as on the adapters' accepted sockets. */
  wsa_nodelay(fd);
  s->urh = urh;
  s->adopted = 1;
  s->base.item.kind = WSA_EPOLL_CONN;
  s->base.item.fd = fd;
  s->base.owner = &g_ep;
  g_ep.nsocks++;
  if ((c = s->base.conn) == NULL) { /* closed while MHD wrote the 101 */
    s->base.next_dead = g_ep.dead;
    g_ep.dead = &s->base;
    g_ep.nsocks--;
    s->base.item.fd = -1;
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    return;
  }
  /* Output queued before now (on_open, a broadcast) waits for EPOLLOUT. */
  s->base.events = EPOLLIN | (ws_conn_want_write(c) ? EPOLLOUT : 0);
  memset(&ev, 0, sizeof(ev));
  ev.events = s->base.events;
  ev.data.ptr = &s->base.item;
  if (epoll_ctl(g_ep.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ws_conn_abort(c);
    return;
  }
  if (extra_len) { /* pipelined frames, maybe a close: as wsa_epoll_read */
    int rc = ws_conn_feed(c, extra, extra_len);
    s->base.read_done = wsa_read_done(rc, s->base.conn);
  }
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind,
                                      const char *key, const char *value) {
  header_list *l = cls;
  (void)kind;
  if (l->n == MAX_HEADERS) {
    l->overflow = 1;
    return MHD_NO;
  }
  l->h[l->n].name = key;
  l->h[l->n].name_len = strlen(key);
  l->h[l->n].value = value ? value : "";
  l->h[l->n].value_len = value ? strlen(value) : 0;
  l->n++;
  return MHD_YES;
}

static enum MHD_Result answer_text(struct MHD_Connection *con,
                                   unsigned status, const char *text) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ret;
  if (resp == NULL) return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; charset=utf-8");
  if (status == 426) { /* RFC 9110 15.5.22; RFC 6455 4.4 */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Version", "13");
  }
  ret = MHD_queue_response(con, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* /ws: libwsmux decides; MHD writes the answer. */
static enum MHD_Result answer_ws(struct MHD_Connection *con, mhd_req *r,
                                 const char *method) {
  header_list hl = {.n = 0};
  char path[2048], accept[WS_ACCEPT_LEN + 1], line[256];
  const char *query = strchr(r->uri, '?'), *reason, *proto;
  struct MHD_Response *resp;
  enum MHD_Result ret;
  size_t plen = query ? (size_t)(query - r->uri) : strlen(r->uri);
  int status;
  mhd_sock *s;

  if (plen >= sizeof(path)) return answer_text(con, 414, "URI too long\n");
  memcpy(path, r->uri, plen);
  path[plen] = '\0';
  if (query) query++;
  MHD_get_connection_values(con, MHD_HEADER_KIND, collect_header, &hl);
  if (hl.overflow) return answer_text(con, 431, "too many headers\n");
  if ((s = calloc(1, sizeof(*s))) == NULL) return MHD_NO;
  s->base.item.fd = -1;
  if (ws_conn_new(g_srv, s, &s->base.conn) != WS_OK) {
    free(s);
    return answer_text(con, 503, "unavailable\n");
  }
  r->sock = s;
  if (ws_conn_upgrade_answer(s->base.conn, method, path, query, hl.h, hl.n,
                             &status, &reason, accept) != WS_OK) {
    ws_conn_abort(s->base.conn);
    return MHD_NO;
  }
  if (status != 101) { /* refused: the connection is already closed */
    snprintf(line, sizeof(line), "%s\n", reason);
    return answer_text(con, (unsigned)status, line);
  }
  resp = MHD_create_response_for_upgrade(on_upgraded, NULL);
  if (resp == NULL) return MHD_NO; /* on_completed aborts the connection */
  r->upgrading = 1;
  /* MHD adds "Connection: Upgrade" itself. */
  MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
  MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
  if ((proto = ws_conn_subprotocol(s->base.conn)) != NULL)
    MHD_add_response_header(resp, "Sec-WebSocket-Protocol", proto);
  ret = MHD_queue_response(con, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* The path a request is routed on. An absolute-form target
 * ("GET http://host/ws", RFC 9112 3.2.2: a server must accept it) reaches
 * the handler whole, scheme and authority included; libwsmux reads it as
 * its path (ws_conn_upgrade_answer), so routing does too. */
static const char *route_of(const char *url) {
  const char *p;
  if (strncasecmp(url, "http://", 7) == 0)
    p = url + 7;
  else if (strncasecmp(url, "https://", 8) == 0)
    p = url + 8;
  else
    return url; /* origin form: the path itself */
  p = strchr(p, '/');
  return p ? p : "/";
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  mhd_req *r = *con_cls;
  mhd_peer *p;
  (void)cls, (void)upload;
  if (r == NULL || r->uri == NULL) return MHD_NO;
  if (*upload_size) { /* no route takes a body */
    *upload_size = 0;
    return MHD_YES;
  }
  if (!r->seen) { /* headers are in; wait for the end of the request */
    r->seen = 1;
    return MHD_YES;
  }
  if ((p = peer_of(con)) != NULL) peer_unwait(p); /* it came in time */
  url = route_of(url);
  if (strcmp(url, "/hello") == 0)
    return answer_text(con, MHD_HTTP_OK, "hello\n");
  /* ws_conn_upgrade_answer takes no version: an upgrade is HTTP/1.1's
   * (RFC 6455 4.1), and MHD would refuse to send the 101 for 1.0 after
   * the library had accepted it (and replaced an older device). */
  if (strcmp(url, "/ws") == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) != 0)
    return answer_text(con, MHD_HTTP_BAD_REQUEST, "HTTP/1.1 required\n");
  if (strcmp(url, "/ws") == 0) return answer_ws(con, r, method);
  return answer_text(con, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* MHD's epoll fd is ready: let MHD work (accept, read, callbacks). */
static void on_mhd_ready(wsa_epoll *p, wsa_epoll_watcher *w, uint32_t ev) {
  (void)p, (void)w, (void)ev;
  MHD_run(g_mhd);
}

/* One loop turn, bounded by MHD's own timeout and cap_ms. */
static void run_once(int cap_ms) {
  MHD_UNSIGNED_LONG_LONG t;
  if (MHD_get_timeout(g_mhd, &t) == MHD_YES && t < (MHD_UNSIGNED_LONG_LONG)cap_ms)
    cap_ms = (int)t;
  wsa_epoll_run_once_for(&g_ep, cap_ms);
  expire_requests();
  MHD_run(g_mhd); /* MHD's timeouts */
}

int main(int argc, char **argv) {
  pp_args a;
  MHD_socket lfd;
  int listen_fd;
  const union MHD_DaemonInfo *info;
  wsa_epoll_watcher mhd_watch;
  ws_config cfg;
  ws_mux *mux;
  unsigned mhd_limit;

  if (pp_parse_args(&a, argc, argv, 8081, 0)) return 2;
  /* The listening socket is ours, handed to MHD: one code path for IPv4
   * and IPv6 (MHD_OPTION_SOCK_ADDR would need MHD_USE_IPv6 besides). */
  if ((listen_fd = wsa_listen(a.host, a.port, 0)) < 0) {
    int bad_host = errno == EINVAL;
    perror(bad_host ? "--host: an IPv4 or IPv6 address" : "listen");
    return bad_host ? 2 : 1;
  }
  if ((mux = pp_mux_new(NULL)) == NULL) return 1;
  ws_config_init(&cfg);
  cfg.send = mhd_send;
  cfg.sendv = mhd_sendv;
  cfg.want_write = mhd_want_write;
  cfg.close = mhd_close;
  pp_config(&cfg, mux);
  fd_budget(&mhd_limit, &cfg.max_connections);
  if ((g_srv = pp_server_new(&cfg)) == NULL) return 1;
  if (wsa_epoll_init_fd(&g_ep, g_srv, -1) != 0) { /* MHD listens */
    perror("epoll");
    return 1;
  }
  g_mhd = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG, 0, NULL, NULL,
      on_request, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd,
      MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_S,
      MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_END);
  if (g_mhd == NULL ||
      (info = MHD_get_daemon_info(g_mhd, MHD_DAEMON_INFO_EPOLL_FD)) == NULL ||
      wsa_epoll_watch(&g_ep, &mhd_watch, info->epoll_fd, EPOLLIN, on_mhd_ready,
                      NULL) != 0) {
    fprintf(stderr, "MHD_start_daemon failed\n");
    return 1;
  }
  a.port = wsa_local_port(listen_fd);
  pp_install_signals();
  pp_announce_url("mhd", "http", a.host, a.port,
                  "(GET /hello, ws path /ws?device_id=...)");

  while (!pp_stop) run_once(500);
  /* No new HTTP connections: the listening socket is ours now, and closed
   * at once, so that a client connecting during the drain is refused
   * instead of waiting in the backlog for an accept that never comes. */
  lfd = MHD_quiesce_daemon(g_mhd);
  if (lfd != MHD_INVALID_SOCKET) close(lfd);
  ws_server_tick(g_srv, wsa_now_ms());
  ws_server_shutdown(g_srv, PP_DRAIN_MS);
  while (!pp_done) run_once(100);
  ws_server_free(g_srv); /* closes through MHD_upgrade_action */
  wsa_epoll_unwatch(&g_ep, &mhd_watch);
  MHD_stop_daemon(g_mhd);
  wsa_epoll_destroy(&g_ep);
  ws_mux_free(mux);
  printf("mhd: stopped\n");
  return 0;
}
