/*
 * echo_poll: a complete libwsmux host on poll(2), with the host contract
 * spelled out step by step. Copy it as the starting point of your own host.
 *
 *   ws://HOST:PORT/<any path>[?device_id=ID]
 *   every message is sent back to its sender unchanged
 *
 * Text messages are {"action": ..., "data": ...} envelopes: the library
 * answers malformed ones with {"action":"error",...} before any handler
 * runs, so the echo handler sees valid envelopes (and binary messages) only.
 *
 * Usage: echo_poll [--port N] [--host ADDR]
 *   --port 0 picks a free port; the "listening" line names the real one.
 * SIGINT/SIGTERM: graceful shutdown (close 1001 to every client, let queued
 * output drain for up to 2 s), then exit 0.
 *
 * The host contract, and where each step lives below:
 *   1. ws_server_new with a config of callbacks ............ main()
 *   2. ws_conn_new for each accepted socket ................ accept_clients()
 *   3. ws_conn_feed with every byte read ................... read_client()
 *   4. want_write arms POLLOUT; ws_conn_writable on POLLOUT  tr_want_write()
 *   5. ws_server_tick each wake; its answer is the timeout . run()
 *   6. close the socket when the close callback says so .... tr_close()
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "adapters/sockio.h"
#include "lines.h"
#include "wsmux.h"

#define MAX_CLIENTS 1024
#define DRAIN_MS 2000

/* One accepted socket. Its address is the transport pointer libwsmux hands
 * back to every callback; the library never looks inside. */
typedef struct client {
  int fd;        /* -1: slot free */
  short events;  /* what poll should wait for: POLLIN, plus POLLOUT on ask */
  ws_conn *conn; /* the library's handle, valid until tr_close */
} client;

static client g_clients[MAX_CLIENTS];
static int g_listen_fd = -1;
/* Not 0: the listener is not polled until then (ms, now_ms). */
static uint64_t g_accept_resume;
#define ACCEPT_PAUSE_MS 100
static int g_stop; /* SIGINT or SIGTERM was read from the signalfd */
static int g_done;                   /* set by on_shutdown */

/* ---- time: the library reads no clock, the host passes it in ---------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- transport callbacks: the library's only way to touch the socket --- */

/* Write what the kernel takes. 0 means "would block": the library keeps the
 * rest queued and asks for POLLOUT through tr_want_write. */
static ssize_t tr_send(ws_conn *c, void *transport, const void *data,
                       size_t len) {
  client *cl = transport;
  ssize_t n = send(cl->fd, data, len, MSG_NOSIGNAL);
  (void)c;
  if (n >= 0) return n;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
  return -1; /* the library ends the connection (on_close gets 1006) */
}

/* Step 4: arm or disarm write interest. The next poll picks it up. */
static int tr_want_write(ws_conn *c, void *transport, int want) {
  client *cl = transport;
  (void)c;
  if (want)
    cl->events |= POLLOUT;
  else
    cl->events &= (short)~POLLOUT;
  return 0;
}

/* Step 6: the connection is over. Close the socket and free the slot; after
 * this returns the ws_conn handle must not be used again. */
static int tr_close(ws_conn *c, void *transport) {
  client *cl = transport;
  (void)c;
  wsa_close_fd(cl->fd);
  cl->fd = -1;
  cl->events = 0;
  cl->conn = NULL;
  return 0;
}

/* ---- application callbacks -------------------------------------------- */

/* The whole application: send every message back. msg->text is the full
 * payload, borrowed until we return; ws_conn_send_* copy it. */
static int echo(ws_conn *c, const ws_msg *msg, void *user_data) {
  (void)user_data;
  if (msg->binary) return ws_conn_send_binary(c, msg->text, msg->len);
  return ws_conn_send_text(c, msg->text, msg->len);
}

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (level <= WS_LOG_WARN) ex_line(2, "echo_poll: %s\n", msg);
}

/* Fires when the graceful shutdown has closed the last connection. */
static int on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  g_done = 1;
  return 0;
}

/* ---- sockets ----------------------------------------------------------- */

/* A non-blocking listening socket on an IPv4 or IPv6 literal. */
static int listen_on(const char *host, int port) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int one = 1, fd;
  memset(&ss, 0, sizeof(ss));
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return -1;
    sl = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return -1;
    sl = sizeof(*a);
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 512) < 0) {
    close(fd);
    return -1;
  }
  (void)wsa_spare(); /* wsa_accept's spare, taken while descriptors are free */
  return fd;
}

/* The port actually bound (useful with --port 0). */
static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  /* getsockname fills it. Zeroed all the same: under _GNU_SOURCE glibc
   * declares its address as a transparent union, through which clang's
   * static analyzer sees no write and takes ss_family for garbage. */
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Step 2: every accepted socket gets a slot and a ws_conn. If ws_conn_new
 * fails no callback will fire for it, so the host closes the socket itself. */
static void accept_clients(ws_server *srv) {
  for (;;) {
    int one = 1, i;
    /* wsa_accept: accept4 that sheds a connection rather than spin when
     * the process is out of descriptors (adapters/sockio.h). */
    int fd = wsa_accept(g_listen_fd);
    /* The pending connection could not be taken (no memory, no spare
     * descriptor) and the listener stays readable: polling it at once
     * would spin. */
    if (fd == WSA_ACCEPT_NOFD) g_accept_resume = now_ms() + ACCEPT_PAUSE_MS;
    if (fd < 0) return; /* EAGAIN: backlog empty (or a transient error) */
    for (i = 0; i < MAX_CLIENTS && g_clients[i].fd >= 0; i++) {
    }
    if (i == MAX_CLIENTS) {
      close(fd); /* table full */
      continue;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    g_clients[i].fd = fd;
    g_clients[i].events = POLLIN;
    if (ws_conn_new(srv, &g_clients[i], &g_clients[i].conn) != WS_OK) {
      close(fd);
      g_clients[i].fd = -1;
      g_clients[i].conn = NULL;
    }
  }
}

/* Step 3: feed what was read. The library may answer (send), call handlers
 * and even close this connection (tr_close) from inside ws_conn_feed. A
 * read error ends the connection without a close frame. WS_ECLOSED with
 * the connection still there means the close handshake is done and only
 * output remains: stop reading, so that a client that half-closes now
 * (FIN) still gets the rest; an EOF before that ends the connection too. */
static void read_client(client *cl) {
  char buf[16384];
  ssize_t n = recv(cl->fd, buf, sizeof(buf), 0);
  if (n > 0) {
    /* Two statements: cl->conn must be read after the feed (tr_close). */
    int rc = ws_conn_feed(cl->conn, buf, (size_t)n);
    if (wsa_read_done(rc, cl->conn)) cl->events &= (short)~POLLIN;
  } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
                        errno != EINTR)) {
    ws_conn_abort(cl->conn);
  }
}

/* ---- the loop ---------------------------------------------------------- */

/* SIGINT and SIGTERM are blocked and read from a signalfd polled with the
 * sockets: one that lands before the wait makes it return at once, and one
 * that lands while clients keep every wait busy is seen in the same batch
 * (a mask opened only inside ppoll would let it in only when no fd is
 * ready). */
static void read_signals(int sfd) {
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) g_stop = 1;
}

static void run(ws_server *srv, int sfd) {
  struct pollfd pfd[MAX_CLIENTS + 2];
  int owner[MAX_CLIENTS + 2]; /* pfd index -> g_clients index (<0: ours) */
  int shutting_down = 0;

  while (!g_done) {
    /* Step 5: tell the library the time; it fires due deadlines (server
     * pings, idle and write timeouts) and says how long we may sleep. */
    int timeout = ws_server_tick(srv, now_ms());
    nfds_t n = 0, k;
    int i;

    /* The tick may have ended the drain (on_shutdown): with nothing left
     * it answers -1, and polling on that would wait forever. */
    if (g_done) break;

    if (g_stop && !shutting_down) {
      /* Graceful stop: 1001 to every client, drain, then on_shutdown. */
      shutting_down = 1;
      close(g_listen_fd); /* no new clients */
      g_listen_fd = -1;
      ws_server_shutdown(srv, DRAIN_MS);
      continue; /* on_shutdown may already have fired */
    }

    pfd[n].fd = sfd;
    pfd[n].events = POLLIN;
    owner[n++] = -2;
    if (g_accept_resume) { /* wake when the pause ends */
      uint64_t now = now_ms();
      int left = now >= g_accept_resume ? 0 : (int)(g_accept_resume - now);
      if (left == 0) g_accept_resume = 0;
      else if (timeout < 0 || timeout > left) timeout = left;
    }
    if (g_accept_resume == 0 && g_listen_fd >= 0) {
      pfd[n].fd = g_listen_fd;
      pfd[n].events = POLLIN;
      owner[n++] = -1;
    }
    for (i = 0; i < MAX_CLIENTS; i++) {
      if (g_clients[i].fd < 0) continue;
      pfd[n].fd = g_clients[i].fd;
      pfd[n].events = g_clients[i].events;
      owner[n++] = i;
    }
    if (poll(pfd, n, timeout) < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      exit(1);
    }
    if (pfd[0].revents & POLLIN) read_signals(sfd);

    /* Deadlines are measured from the last tick: tick again before feeding
     * so the reads below count from now, not from before the sleep. */
    ws_server_tick(srv, now_ms());

    /* Clients first, the listener last: slots are refilled only by
     * accept_clients, so during this walk a slot either still holds the
     * socket polled or was emptied by tr_close (a handler, a broadcast or
     * the tick above may close any connection). */
    for (k = 0; k < n; k++) {
      client *cl;
      short ev = pfd[k].revents;
      if (ev == 0 || owner[k] < 0) continue;
      cl = &g_clients[owner[k]];
      if (cl->conn == NULL) continue; /* closed since poll returned */
      if (ev & POLLOUT) {
        /* Step 4: the socket drained; the library flushes its queue and
         * disarms through tr_want_write when it is empty. */
        if (ws_conn_writable(cl->conn) != WS_OK) continue; /* closed */
      }
      if (ev & (POLLIN | POLLHUP | POLLERR)) read_client(cl);
    }
    if (n > 1 && owner[1] == -1 && (pfd[1].revents & POLLIN))
      accept_clients(srv);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 8081, i, rc;
  ws_config cfg;
  ws_server *srv;
  sigset_t block;
  int sfd;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
      host = argv[++i];
    else {
      int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
      fprintf(help ? stdout : stderr, "usage: %s [--port N] [--host ADDR]\n",
              argv[0]);
      return help ? 0 : 2;
    }
  }
  for (i = 0; i < MAX_CLIENTS; i++) g_clients[i].fd = -1;

  /* Step 1: the config. ws_config_init fills every default first, so a
   * field added in a later version never leaves garbage here. */
  ws_config_init(&cfg);
  cfg.send = tr_send;
  cfg.want_write = tr_want_write;
  cfg.close = tr_close;
  cfg.handler = echo; /* a plain handler function: no mux needed */
  cfg.on_log = on_log;
  cfg.on_shutdown = on_shutdown;
  cfg.path = NULL;           /* upgrade on any path */
  cfg.device_required = 0;   /* any WebSocket client may connect */
  cfg.keep_headers = 0;      /* the handler reads no headers */
  if ((rc = ws_server_new(&cfg, &srv)) != WS_OK) {
    fprintf(stderr, "ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }

  g_listen_fd = listen_on(host, port);
  if (g_listen_fd < 0) {
    perror("listen");
    ws_server_free(srv);
    return 1;
  }

  /* Signals: blocked, and read from the loop (see run). */
  signal(SIGPIPE, SIG_IGN); /* tr_send uses MSG_NOSIGNAL; belt and braces */
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, NULL);
  if ((sfd = signalfd(-1, &block, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
    perror("signalfd");
    ws_server_free(srv);
    return 1;
  }

  {
    char url[128];
    ex_url(url, sizeof url, "ws", host, bound_port(g_listen_fd));
    printf("echo_poll: listening on %s/\n", url);
  }
  fflush(stdout);

  run(srv, sfd);
  close(sfd);

  /* Every connection is closed (on_shutdown fired): free the server. */
  ws_server_free(srv);
  printf("echo_poll: stopped\n");
  return 0;
}
