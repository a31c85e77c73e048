/*
 * The ping/pong application, shared by the ping/pong examples: what the
 * server does, whatever carries its bytes. pingpong.c (poll),
 * pingpong_epoll.c, pingpong_libuv.c, pingpong_libevent.c, mhd.c, tls.c and
 * reuseport.c each keep only their loop and transport glue.
 *
 *   ws://HOST:PORT/ws?device_id=ID
 *   {"action":"ping"}               -> {"action":"pong","data":""}
 *   {"action":"echo","data":D}      -> the same message back
 *   {"action":"broadcast","data":D} -> {"action":"bc","data":D} to everyone
 *   GET / (pingpong.c only)         -> examples/web/index.html
 *   --post-every MS (examples given PP_OPT_POST)
 *                                   -> {"action":"tick","data":N} to everyone
 *                                      every MS ms, N = 1, 2, ..., sent from
 *                                      a worker thread through ws_post
 *
 * Header-only, one application per process: the page and the stop and done
 * flags are file-scope statics. Typical main():
 *
 *   pp_args a;
 *   if (pp_parse_args(&a, argc, argv, 8081, 0)) return 2;
 *   if ((mux = pp_mux_new(NULL)) == NULL) return 1;
 *   ws_config_init(&cfg);
 *   ... transport callbacks ...
 *   pp_config(&cfg, mux);               // handler, on_log, on_shutdown
 *   if ((srv = pp_server_new(&cfg)) == NULL) return 1;
 *   ... listen, pp_install_signals(), pp_announce(...) ...
 *   pp_poster_start(&poster, srv, a.post_every);   // needs cfg.wake
 *   while (!pp_stop) run the loop once;
 *   ws_server_shutdown(srv, PP_DRAIN_MS);
 *   while (!pp_done) run the loop once;
 *   pp_poster_stop(&poster);            // joined before the server goes
 *   ws_server_free(srv);
 */
#ifndef PINGPONG_APP_H
#define PINGPONG_APP_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lines.h"
#include "wsmux.h"

#ifndef WS_EXAMPLES_DIR
#define WS_EXAMPLES_DIR "examples"
#endif

#define PP_DRAIN_MS 2000 /* graceful shutdown: queued output may drain */

static volatile sig_atomic_t pp_stop; /* SIGINT/SIGTERM arrived */
static int pp_done;                   /* the graceful shutdown finished */
static char *pp_page;                 /* index.html, for pp_on_http */
static size_t pp_page_len;

/* ---- handlers ---------------------------------------------------------- */

/* The model answers Broadcast(pong, deviceID): the sender is that device.
 * The pong never changes, so it is framed once per server (ud: the
 * server's prepared pong, see pp_server_new) and each reply only queues a
 * reference to it. */
static inline int pp_on_ping(ws_conn *c, const ws_msg *m, void *ud) {
  (void)m;
  return ws_conn_send_prepared(c, (const ws_prepared *)ud);
}

static inline int pp_on_echo(ws_conn *c, const ws_msg *m, void *ud) {
  (void)ud;
  return ws_conn_send_text(c, m->text, m->len);
}

/* The data goes out as the client's own JSON text: no parse, no print. */
static inline int pp_on_broadcast(ws_conn *c, const ws_msg *m, void *ud) {
  size_t len;
  const char *data = ws_msg_data_json(m, &len);
  ws_server *s = ws_conn_server(c);
  (void)ud;
  if (data == NULL) return ws_broadcast(s, "bc", NULL, NULL, 0) < 0 ? -1 : 0;
  return ws_broadcast_json(s, "bc", data, len, NULL, 0) < 0 ? -1 : 0;
}

/* A mux with echo and broadcast; pp_server_new adds ping, whose reply is
 * prepared on the server. broadcast NULL: pp_on_broadcast (to this
 * server's clients); a host with several servers passes its own fan-out.
 * Returns NULL (after saying so on stderr) when out of memory. */
static inline ws_mux *pp_mux_new(ws_handler_fn broadcast) {
  ws_mux *mux = ws_mux_new(NULL);
  if (mux == NULL || ws_mux_handle(mux, "echo", pp_on_echo, NULL) ||
      ws_mux_handle(mux, "broadcast", broadcast ? broadcast : pp_on_broadcast,
                    NULL)) {
    fprintf(stderr, "mux setup failed\n");
    ws_mux_free(mux);
    return NULL;
  }
  return mux;
}

/* ---- server callbacks and config --------------------------------------- */

static inline void pp_on_log(ws_server *s, int level, const char *msg,
                             void *ud) {
  (void)s, (void)ud;
  if (level <= WS_LOG_WARN) ex_line(2, "wsmux: %s\n", msg);
}

static inline int pp_on_shutdown(ws_server *s, void *ud) {
  (void)s, (void)ud;
  pp_done = 1;
  return 0;
}

/* The application's part of the config: the mux as handler, pp_on_log,
 * pp_on_shutdown (sets pp_done; a loop with its own way out replaces it),
 * and no request headers kept (no handler reads them). Transport callbacks,
 * wake and user_data stay the host's. */
static inline void pp_config(ws_config *cfg, ws_mux *mux) {
  cfg->handler = ws_mux_serve;
  cfg->handler_data = mux;
  cfg->on_log = pp_on_log;
  cfg->on_shutdown = pp_on_shutdown;
  cfg->keep_headers = 0;
}

/* ws_server_new, then the ping handler on the mux that pp_config made the
 * server's handler, with the pong prepared on this server (the server
 * releases it in ws_server_free). One mux per server. Returns NULL after
 * saying why on stderr. */
static inline ws_server *pp_server_new(const ws_config *cfg) {
  ws_server *srv;
  ws_prepared *pong;
  int rc = ws_server_new(cfg, &srv);
  if (rc != WS_OK) {
    fprintf(stderr, "ws_server_new: %s\n", ws_strerror(rc));
    return NULL;
  }
  if ((rc = ws_prepare_json(srv, "pong", "\"\"", 2, &pong)) != WS_OK ||
      (rc = ws_mux_handle((ws_mux *)cfg->handler_data, "ping", pp_on_ping,
                          pong)) != WS_OK) {
    fprintf(stderr, "ping handler: %s\n", ws_strerror(rc));
    ws_server_free(srv);
    return NULL;
  }
  return srv;
}

/* ---- the tick worker (--post-every) ------------------------------------ */

/* One thread that posts {"action":"tick","data":N} to every connection
 * every period_ms, N counting from 1: the cross-thread path (ws_post and
 * the host's cfg.wake) in a running example. The struct is the caller's;
 * zero it (static, or = {0}) so pp_poster_stop is a no-op when nothing was
 * started. */
typedef struct pp_poster {
  ws_server *srv;
  int period_ms;
  int started; /* the thread exists: pp_poster_stop joins it */
  int stop;    /* under mu */
  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled by pp_poster_stop; CLOCK_MONOTONIC */
  pthread_t thread;
} pp_poster;

static inline void pp_poster_deadline(struct timespec *ts, int ms) {
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Sleeps until each deadline on the condition variable (so a stop does
 * not wait out the period), then posts. Deadlines advance by the period
 * from the previous one: no drift. ws_post's error (WS_ESHUTDOWN during
 * the drain) is not this thread's business: the tick is just skipped. */
static inline void *pp_poster_main(void *arg) {
  pp_poster *p = arg;
  struct timespec next;
  uint64_t n = 0;
  clock_gettime(CLOCK_MONOTONIC, &next);
  pthread_mutex_lock(&p->mu);
  for (;;) {
    char data[24];
    int len;
    pp_poster_deadline(&next, p->period_ms);
    while (!p->stop &&
           pthread_cond_timedwait(&p->cv, &p->mu, &next) != ETIMEDOUT) {
    }
    if (p->stop) break;
    pthread_mutex_unlock(&p->mu);
    len = snprintf(data, sizeof(data), "%llu", (unsigned long long)++n);
    ws_post(p->srv, WS_POST_ALL, NULL, "tick", data, (size_t)len);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Starts the worker when period_ms > 0 (nothing to do otherwise). srv's
 * config must have a wake callback: ws_post only queues, the wake is what
 * makes an idle loop tick and deliver. Returns 0, or -1 after saying why
 * on stderr. */
static inline int pp_poster_start(pp_poster *p, ws_server *srv,
                                  int period_ms) {
  pthread_condattr_t ca;
  sigset_t all, old;
  int rc;
  memset(p, 0, sizeof(*p));
  if (period_ms <= 0) return 0;
  p->srv = srv;
  p->period_ms = period_ms;
  pthread_mutex_init(&p->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  /* The worker takes no signals: SIGINT/SIGTERM go to the loop thread,
   * whose poll or epoll_wait they interrupt. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&p->thread, NULL, pp_poster_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    fprintf(stderr, "pthread_create: %s\n", strerror(rc));
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    return -1;
  }
  p->started = 1;
  return 0;
}

/* Stops and joins the worker (no-op if none was started). Call it before
 * ws_server_free: ws_post must not race with the server's destruction. */
static inline void pp_poster_stop(pp_poster *p) {
  if (!p->started) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  p->started = 0;
}

/* ---- the page ---------------------------------------------------------- */

/* Reads dir/index.html once; pp_on_http answers 500 when it could not. */
static inline void pp_load_page(const char *dir) {
  char path[4096];
  FILE *f;
  long n;
  snprintf(path, sizeof(path), "%s/index.html", dir);
  if ((f = fopen(path, "rb")) == NULL) return;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (pp_page = malloc((size_t)n + 1)) != NULL)
    pp_page_len = fread(pp_page, 1, (size_t)n, f);
  fclose(f);
}

static inline void pp_free_page(void) {
  free(pp_page);
  pp_page = NULL;
  pp_page_len = 0;
}

/* cfg.on_http: GET (or HEAD) / and /index.html serve the page; other
 * methods are 501 (no resource here takes them; the library leaves HEAD's
 * content out); anything else is left to the library (404). */
static inline int pp_on_http(ws_conn *c, const ws_request *req, void *ud) {
  const char *path = ws_request_path(req);
  const char *method = ws_request_method(req);
  (void)ud;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return ws_conn_http_respond(c, 501, "text/plain", "not implemented\n",
                                16);
  if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
    if (pp_page)
      return ws_conn_http_respond(c, 200, "text/html; charset=utf-8", pp_page,
                                  pp_page_len);
    return ws_conn_http_respond(c, 500, "text/plain", "page not found\n", 15);
  }
  return 0; /* the library answers 404 */
}

/* ---- command line, signals, the "listening" line ----------------------- */

/* Options beyond --port and --host, for pp_parse_args. */
enum pp_opt {
  PP_OPT_WEB = 1,     /* [--web DIR] */
  PP_OPT_TLS = 2,     /* --cert FILE --key FILE (both required) */
  PP_OPT_THREADS = 4, /* [--threads N] */
  PP_OPT_POST = 8,     /* [--post-every MS]: see pp_poster_start */
  PP_OPT_POST_LIMIT = 16 /* [--post-limit BYTES]: cfg.max_posted */
};

typedef struct pp_args {
  const char *host; /* --host: IPv4 or IPv6 literal; default 127.0.0.1 */
  int port;         /* --port: 0 picks a free one */
  const char *web;  /* --web: default WS_EXAMPLES_DIR "/web" */
  const char *cert; /* --cert */
  const char *key;  /* --key */
  int threads;      /* --threads: default 2 */
  int post_every;   /* --post-every: ms between ticks; default 0 (none) */
  long post_limit;  /* --post-limit: > 0; default 0 (the caller's own) */
} pp_args;

/* Fills *a with the defaults (port: default_port), then parses --port,
 * --host and the options in opts (enum pp_opt). Returns 0, or 2 after
 * printing the usage line: an unknown option, one without its value, or a
 * required one missing. --help prints it on stdout and exits 0. */
static inline int pp_parse_args(pp_args *a, int argc, char **argv,
                                int default_port, unsigned opts) {
  int i, help;
  memset(a, 0, sizeof(*a));
  a->host = "127.0.0.1";
  a->port = default_port;
  a->web = WS_EXAMPLES_DIR "/web";
  a->threads = 2;
  for (i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) break;
  help = i < argc;
  for (i = 1; !help && i + 1 < argc; i += 2) {
    const char *opt = argv[i], *val = argv[i + 1];
    if (strcmp(opt, "--port") == 0)
      a->port = atoi(val);
    else if (strcmp(opt, "--host") == 0)
      a->host = val;
    else if ((opts & PP_OPT_WEB) && strcmp(opt, "--web") == 0)
      a->web = val;
    else if ((opts & PP_OPT_TLS) && strcmp(opt, "--cert") == 0)
      a->cert = val;
    else if ((opts & PP_OPT_TLS) && strcmp(opt, "--key") == 0)
      a->key = val;
    else if ((opts & PP_OPT_THREADS) && strcmp(opt, "--threads") == 0)
      a->threads = atoi(val);
    else if ((opts & PP_OPT_POST) && strcmp(opt, "--post-every") == 0) {
      if ((a->post_every = atoi(val)) <= 0) break;
    } else if ((opts & PP_OPT_POST_LIMIT) && strcmp(opt, "--post-limit") == 0) {
      if ((a->post_limit = atol(val)) <= 0) break;
    } else
      break;
  }
  if (help || i < argc ||
      ((opts & PP_OPT_TLS) && (a->cert == NULL || a->key == NULL))) {
    fprintf(help ? stdout : stderr,
            "usage: %s%s [--port N] [--host ADDR]%s%s%s%s\n", argv[0],
            opts & PP_OPT_TLS ? " --cert FILE --key FILE" : "",
            opts & PP_OPT_WEB ? " [--web DIR]" : "",
            opts & PP_OPT_THREADS ? " [--threads N]" : "",
            opts & PP_OPT_POST ? " [--post-every MS]" : "",
            opts & PP_OPT_POST_LIMIT ? " [--post-limit BYTES]" : "");
    if (help) exit(0);
    return 2;
  }
  return 0;
}

static inline void pp_on_signal(int sig) {
  (void)sig;
  pp_stop = 1;
}

/* SIGINT and SIGTERM set pp_stop. No SA_RESTART: the signal interrupts
 * poll, so the loop sees the flag at once; one that lands between the
 * loop's check and its poll waits out that poll's cap (1 s, or 500 ms),
 * which is why the poll loops cap their waits (pingpong_epoll reads
 * signals from a signalfd in its epoll set, without that window). SIGPIPE
 * is ignored (sends use MSG_NOSIGNAL too). Loops with their own signal
 * watchers (libuv, libevent, sigwait) only ignore SIGPIPE. */
static inline void pp_install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = pp_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* The line the tests and scripts wait for: "NAME: listening on
 * SCHEME://HOST:PORT/ WHAT", port the bound one, an IPv6 host in brackets
 * so that the URL can be pasted. */
static inline void pp_announce_url(const char *name, const char *scheme,
                                   const char *host, int port,
                                   const char *what) {
  char url[128];
  ex_url(url, sizeof url, scheme, host, port);
  printf("%s: listening on %s/ %s\n", name, url, what);
  fflush(stdout);
}

static inline void pp_announce(const char *name, const char *host, int port) {
  pp_announce_url(name, "http", host, port, "(ws path /ws?device_id=...)");
}

#endif /* PINGPONG_APP_H */
