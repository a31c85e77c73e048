/*
 * chat: users, rooms and pushes from application logic, on epoll
 * (adapters/epoll.h).
 *
 *   ws://HOST:PORT/ws?device_id=ID&token=TOKEN
 *
 * The token names the user (a static demo table below; a real host asks
 * its session store). No token: 401; unknown token: 403. One user may be
 * connected from several devices at once.
 *
 * Client -> server
 *   {"action":"join","data":"ROOM"}      -> {"action":"joined","data":"ROOM"}
 *   {"action":"leave","data":"ROOM"}     -> {"action":"left","data":"ROOM"}
 *   {"action":"say","data":{"room":"ROOM","text":"TEXT"}}
 *       -> {"action":"said","data":{"room":..,"from":USER,"text":..}} to
 *          every member of ROOM (the sender must be one)
 *   {"action":"ping"}                    -> {"action":"pong","data":""}
 *   mistakes -> {"action":"error","data":{"code":CODE,"message":..}}, the
 *   connection stays open; CODE: bad_request, not_member, already_joined,
 *   too_many_rooms (and the library's own: invalid_json, unknown_action...)
 * Server -> client, unasked
 *   {"action":"welcome","data":{"user":USER,"device":ID}} on open
 *   {"action":"tick","data":{"n":N,"online":M}} to everyone every --tick-ms
 *   {"action":"push","data":TEXT} from the commands below
 *
 * Commands on stdin, one per line; each answers on stdout with
 * "ok <command> <connections reached>" or "error <command> <message>":
 *   push USER TEXT          every connection of USER      (ws_push_user)
 *   send DEVICE TEXT        one device                     (ws_send_device)
 *   devices ID,ID,.. TEXT   a list of devices              (ws_broadcast)
 *   publish ROOM TEXT       every member of ROOM           (ws_publish)
 *   all TEXT                everyone                       (ws_broadcast)
 *   later MS USER TEXT      push to USER from another thread after MS
 *                           milliseconds, at most 3600000 (ws_post; the
 *                           eventfd wakes the loop). Answers "ok later
 *                           queued" at once.
 *   stats                   counters
 * stdout also carries, unasked, "open USER DEVICE" and "close USER DEVICE
 * CODE REASON" as clients come and go, between the answers: a script reads
 * the line that starts with "ok <command>" or "error <command>".
 *
 * Usage: chat [--port N] [--host ADDR] [--tick-ms MS]
 *   --port 0 picks a free port (the "listening" line names it);
 *   --tick-ms 0 turns the timer off (default 30000).
 * SIGINT/SIGTERM: close 1001 to everyone, drain up to 2 s, exit 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <uthash.h>

#include "adapters/epoll.h"
#include "lines.h"
#include "wsmux.h"

#define MAX_ROOMS 16     /* rooms one connection may be in */
#define MAX_ROOM_NAME 64 /* bytes, NUL included */
#define DRAIN_MS 2000
#define LATER_MAX_MS 3600000u /* later: at most an hour ahead */

/* The demo's session store: token -> user. */
static const struct {
  const char *token;
  const char *user;
} g_tokens[] = {
    {.token = "alice-token", .user = "alice"},
    {.token = "bob-token", .user = "bob"},
    {.token = "carol-token", .user = "carol"},
};

/* Per-connection application state, hung on ws_conn_set_user_data from
 * on_open to on_close. The library keeps the user and room indexes
 * (ws_push_user and ws_publish need nothing else); the room list here lets
 * "say" check membership. (ws_conn_user is still readable in on_close;
 * the copy of the name keeps the log lines independent of the binding.) */
typedef struct member {
  char user[64];
  int nrooms;
  char rooms[MAX_ROOMS][MAX_ROOM_NAME];
} member;

/* Who holds each device id, and for which user: set when a connection
 * opens, dropped when the holding connection has closed. The library's
 * device index cannot answer "whose is it?" here: it forgets a connection
 * as soon as that one starts closing (a replaced or timed-out phone may
 * take seconds to finish), and another user must not take the id in that
 * window. One entry per open device id. */
typedef struct device_owner {
  UT_hash_handle hh;
  ws_conn *holder;
  char user[64];
  char device[]; /* the key */
} device_owner;

static device_owner *g_owners;

/* A "later" job: one worker thread at a time, joined before the server is
 * freed (ws_post must not race with ws_server_free). */
typedef struct later_job {
  ws_server *srv;
  unsigned ms;
  char user[64];
  char json[2048]; /* the text as a JSON string */
} later_job;

typedef struct chat {
  ws_server *srv;
  pthread_t later_thread;
  int later_running;
  atomic_int later_done; /* set by the worker just before its ws_post */
  later_job later;
  /* The worker waits on later_cv (CLOCK_MONOTONIC) rather than sleeping,
   * so a shutdown (later_cancel) need not wait for its delay. */
  pthread_mutex_t later_mu;
  pthread_cond_t later_cv;
  int later_cancel;
  wsa_epoll loop;
  wsa_epoll_watcher stdin_w, signal_w;
  char line[4096]; /* stdin line being assembled */
  size_t line_len;
  int line_long;   /* the line being read outgrew line[]: refused whole */
  int stopping, done;
  unsigned long ticks;
} chat;

static chat g_chat; /* large (the adapter, the line): keep it off the stack */

/* ---- helpers ------------------------------------------------------------ */

static int send_error(ws_conn *c, const char *code, const char *message) {
  cJSON *d = cJSON_CreateObject();
  int rc;
  if (d == NULL || !cJSON_AddStringToObject(d, "code", code) ||
      !cJSON_AddStringToObject(d, "message", message)) {
    cJSON_Delete(d);
    return WS_ENOMEM;
  }
  rc = ws_conn_send(c, "error", d);
  cJSON_Delete(d);
  return rc;
}

/* The room name in a message's data, or NULL after telling the client. */
static const char *room_arg(ws_conn *c, const cJSON *item) {
  const char *r = cJSON_IsString(item) ? item->valuestring : NULL;
  if (r == NULL || *r == '\0' || strlen(r) >= MAX_ROOM_NAME) {
    send_error(c, "bad_request", "a room is a string of 1..63 bytes");
    return NULL;
  }
  return r;
}

static int member_find(const member *m, const char *room) {
  int i;
  for (i = 0; i < m->nrooms; i++)
    if (strcmp(m->rooms[i], room) == 0) return i;
  return -1;
}

/* ---- handshake and lifecycle ------------------------------------------- */

static device_owner *owner_find(const char *device) {
  device_owner *o = NULL;
  HASH_FIND_STR(g_owners, device, o);
  return o;
}

static int device_owner_differs(ws_conn *c, const char *user) {
  const device_owner *o = owner_find(ws_conn_device_id(c));
  return o != NULL && strcmp(o->user, user) != 0;
}

/* c holds its device id from now on (replacing its user's older one). */
static int owner_take(ws_conn *c, const char *user) {
  const char *dev = ws_conn_device_id(c);
  device_owner *o = owner_find(dev);
  if (o == NULL) {
    size_t n = strlen(dev) + 1;
    if ((o = calloc(1, sizeof(*o) + n)) == NULL) return -1;
    memcpy(o->device, dev, n);
    HASH_ADD_STR(g_owners, device, o);
  }
  o->holder = c;
  snprintf(o->user, sizeof(o->user), "%s", user);
  return 0;
}

/* c has closed: its id is free unless a newer connection holds it. */
static void owner_release(ws_conn *c) {
  device_owner *o = owner_find(ws_conn_device_id(c));
  if (o == NULL || o->holder != c) return;
  HASH_DEL(g_owners, o);
  free(o);
}

/* Client text on stdout, where the command answers go: control bytes are
 * shown as '?' so a device id or close reason cannot forge an answer line. */
static const char *printable(const char *s, char *buf, size_t cap) {
  size_t i;
  for (i = 0; s[i] && i + 1 < cap; i++)
    /* NOLINTNEXTLINE(bugprone-narrowing-conversions): '?' or s[i] */
    buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  buf[i] = '\0';
  return buf;
}

/* Runs after the library's own checks (path, Origin, device id). Binding
 * the user here means the connection is in the user's group before its
 * first message, so a push can never miss a fresh connection. */
static int on_upgrade(ws_conn *c, const ws_request *req, const char **reason,
                      void *ud) {
  const char *token = ws_request_query(req, "token");
  size_t i;
  (void)ud;
  if (token == NULL || *token == '\0') {
    *reason = "missing token";
    return 401;
  }
  for (i = 0; i < sizeof(g_tokens) / sizeof(g_tokens[0]); i++)
    if (strcmp(g_tokens[i].token, token) == 0) break;
  if (i == sizeof(g_tokens) / sizeof(g_tokens[0])) {
    *reason = "unknown token";
    return 403;
  }
  /* Device ids are global and a newer connection replaces an older one
   * with the same id: only its own user may do that. */
  if (device_owner_differs(c, g_tokens[i].user)) {
    *reason = "device_id belongs to another user";
    return 409;
  }
  return ws_conn_set_user(c, g_tokens[i].user) == WS_OK ? 0 : 503;
}

static int on_open(ws_conn *c, void *ud) {
  char dev[256];
  member *m = calloc(1, sizeof(*m));
  cJSON *d = cJSON_CreateObject();
  (void)ud;
  if (m == NULL || d == NULL) {
    free(m);
    cJSON_Delete(d);
    ws_conn_close(c, WS_CLOSE_INTERNAL, "out of memory");
    return 0;
  }
  snprintf(m->user, sizeof(m->user), "%s", ws_conn_user(c));
  ws_conn_set_user_data(c, m);
  if (owner_take(c, m->user) != 0) {
    ws_conn_close(c, WS_CLOSE_INTERNAL, "out of memory");
    cJSON_Delete(d);
    return 0;
  }
  cJSON_AddStringToObject(d, "user", ws_conn_user(c));
  cJSON_AddStringToObject(d, "device", ws_conn_device_id(c));
  ws_conn_send(c, "welcome", d);
  cJSON_Delete(d);
  ex_line(1, "open %s %s\n", ws_conn_user(c),
            printable(ws_conn_device_id(c), dev, sizeof(dev)));
  return 0;
}

/* The last application callback for c: free its state. The library takes
 * c out of its user and room groups after this returns. */
static int on_close(ws_conn *c, int code, const char *reason, void *ud) {
  member *m = ws_conn_user_data(c);
  char dev[256], why[128];
  (void)ud;
  ex_line(1, "close %s %s %d %s\n", m ? m->user : "-",
            printable(ws_conn_device_id(c), dev, sizeof(dev)), code,
            printable(reason, why, sizeof(why)));
  owner_release(c);
  free(m);
  ws_conn_set_user_data(c, NULL);
  return 0;
}

/* ---- actions ------------------------------------------------------------ */

/* on_open failed to set up m: the connection is already closing. */
static int on_join(ws_conn *c, const ws_msg *msg, void *ud) {
  member *m = ws_conn_user_data(c);
  const char *room;
  int rc;
  (void)ud;
  if (m == NULL || (room = room_arg(c, ws_msg_data(msg))) == NULL) return 0;
  if (member_find(m, room) >= 0)
    return send_error(c, "already_joined", room) == WS_ENOMEM ? -1 : 0;
  if (m->nrooms == MAX_ROOMS)
    return send_error(c, "too_many_rooms", room) == WS_ENOMEM ? -1 : 0;
  if ((rc = ws_conn_join(c, room)) != WS_OK) return rc;
  snprintf(m->rooms[m->nrooms++], MAX_ROOM_NAME, "%s", room);
  return ws_conn_send(c, "joined", ws_msg_data(msg));
}

static int on_leave(ws_conn *c, const ws_msg *msg, void *ud) {
  member *m = ws_conn_user_data(c);
  const char *room;
  int i, rc;
  (void)ud;
  if (m == NULL || (room = room_arg(c, ws_msg_data(msg))) == NULL) return 0;
  if ((i = member_find(m, room)) < 0)
    return send_error(c, "not_member", room) == WS_ENOMEM ? -1 : 0;
  if ((rc = ws_conn_leave(c, room)) != WS_OK) return rc;
  m->nrooms--;
  if (i != m->nrooms) memcpy(m->rooms[i], m->rooms[m->nrooms], MAX_ROOM_NAME);
  return ws_conn_send(c, "left", ws_msg_data(msg));
}

/* Built once and published once: the library frames it a single time and
 * shares the bytes among all members. */
static int on_say(ws_conn *c, const ws_msg *msg, void *ud) {
  member *m = ws_conn_user_data(c);
  const cJSON *data = ws_msg_data(msg);
  const cJSON *text = cJSON_GetObjectItemCaseSensitive(data, "text");
  const char *room;
  cJSON *out;
  int n;
  (void)ud;
  if (m == NULL) return 0;
  if (!cJSON_IsObject(data) || !cJSON_IsString(text))
    return send_error(c, "bad_request",
                      "data must be {\"room\":..,\"text\":..}") == WS_ENOMEM
               ? -1
               : 0;
  room = room_arg(c, cJSON_GetObjectItemCaseSensitive(data, "room"));
  if (room == NULL) return 0;
  if (member_find(m, room) < 0)
    return send_error(c, "not_member", room) == WS_ENOMEM ? -1 : 0;
  out = cJSON_CreateObject();
  if (out == NULL || !cJSON_AddStringToObject(out, "room", room) ||
      !cJSON_AddStringToObject(out, "from", m->user) ||
      !cJSON_AddStringToObject(out, "text", text->valuestring)) {
    cJSON_Delete(out);
    return -1;
  }
  n = ws_publish(ws_conn_server(c), room, "said", out);
  cJSON_Delete(out);
  return n < 0 ? n : 0;
}

static int on_ping(ws_conn *c, const ws_msg *msg, void *ud) {
  (void)msg, (void)ud;
  return ws_conn_send_json(c, "pong", "\"\"", 2);
}

/* ---- application logic: commands from stdin ------------------------------ */

/* Splits "word rest" in place: returns rest (maybe ""), word NUL-ended. */
static char *split(char *s) {
  char *sp = strchr(s, ' ');
  if (sp == NULL) return s + strlen(s);
  *sp = '\0';
  return sp + 1;
}

/* "devices a,b,c TEXT": a list of device ids for ws_broadcast. */
static int push_devices(ws_server *s, char *list, const cJSON *text) {
  const char *ids[64];
  size_t n = 0;
  char *tok, *save = NULL;
  for (tok = strtok_r(list, ",", &save); tok && n < 64;
       tok = strtok_r(NULL, ",", &save))
    ids[n++] = tok;
  if (n == 0) return WS_EINVAL;
  return ws_broadcast(s, "push", text, ids, n);
}

/* ---- application logic on another thread -------------------------------- */

/* Runs on its own thread: ws_post is the thread-safe way in. It queues the
 * message and calls cfg.wake (chat_wake: the adapter's eventfd), and the
 * loop thread delivers it at its next tick. */
static void *later_main(void *arg) {
  chat *ch = arg;
  later_job *job = &ch->later;
  struct timespec at;
  int rc, cancelled;
  clock_gettime(CLOCK_MONOTONIC, &at);
  at.tv_sec += job->ms / 1000;
  at.tv_nsec += (long)(job->ms % 1000) * 1000000L;
  if (at.tv_nsec >= 1000000000L) at.tv_sec++, at.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&ch->later_mu);
  while (!ch->later_cancel &&
         pthread_cond_timedwait(&ch->later_cv, &ch->later_mu, &at) != ETIMEDOUT) {
  }
  cancelled = ch->later_cancel;
  pthread_mutex_unlock(&ch->later_mu);
  atomic_store(&ch->later_done, 1); /* from here on, joining is quick */
  if (cancelled) return NULL;       /* shutting down: not delivered */
  rc = ws_post(job->srv, WS_POST_USER, job->user, "push", job->json,
               strlen(job->json));
  if (rc != WS_OK) ex_line(2, "chat: ws_post: %s\n", ws_strerror(rc));
  return NULL;
}

static void later_join(chat *ch) {
  if (!ch->later_running) return;
  pthread_join(ch->later_thread, NULL);
  ch->later_running = 0;
}

/* At shutdown: wakes a worker still waiting out its delay, then joins. */
static void later_stop(chat *ch) {
  pthread_mutex_lock(&ch->later_mu);
  ch->later_cancel = 1;
  pthread_cond_signal(&ch->later_cv);
  pthread_mutex_unlock(&ch->later_mu);
  later_join(ch);
}

static void later_init(chat *ch) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ch->later_cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&ch->later_mu, NULL);
}

/* 1 when no job is running. A job that has started posting is joined (it
 * is a few microseconds from its end); one still sleeping is left alone so
 * the loop never blocks. */
static int later_idle(chat *ch) {
  if (ch->later_running && atomic_load(&ch->later_done)) later_join(ch);
  return !ch->later_running;
}

/* "later MS USER TEXT" */
static void run_later(chat *ch, char *args) {
  char *user = split(args), *text = split(user), *end;
  unsigned long ms;
  char *json;
  cJSON *str;
  if (!later_idle(ch)) {
    ex_line(1, "error later busy\n");
    return;
  }
  errno = 0;
  ms = strtoul(args, &end, 10);
  if (*user == '\0' || end == args || *end != '\0' || errno ||
      ms > LATER_MAX_MS || strlen(user) >= sizeof(ch->later.user)) {
    ex_line(1, "error later usage: later MS USER TEXT\n");
    return;
  }
  str = cJSON_CreateString(text);
  json = str ? cJSON_PrintUnformatted(str) : NULL;
  cJSON_Delete(str);
  if (json == NULL || strlen(json) >= sizeof(ch->later.json)) {
    cJSON_free(json);
    ex_line(1, "error later text too long\n");
    return;
  }
  ch->later.srv = ch->srv;
  ch->later.ms = (unsigned)ms;
  snprintf(ch->later.user, sizeof(ch->later.user), "%s", user);
  snprintf(ch->later.json, sizeof(ch->later.json), "%s", json);
  cJSON_free(json);
  atomic_store(&ch->later_done, 0);
  if (pthread_create(&ch->later_thread, NULL, later_main, ch) != 0) {
    ex_line(1, "error later cannot start a thread\n");
    return;
  }
  ch->later_running = 1;
  ex_line(1, "ok later queued\n");
}

/* cfg.wake: called on the posting thread when the post queue was empty. */
static int chat_wake(ws_server *s, void *ud) {
  (void)s;
  return wsa_epoll_notify(&((chat *)ud)->loop);
}

static void print_stats(ws_server *s) {
  ws_stats st;
  ws_server_stats(s, &st, sizeof(st));
  ex_line(1, "ok stats open=%llu total=%llu msgs_in=%llu msgs_out=%llu "
            "broadcasts=%llu fanout=%llu\n",
            (unsigned long long)st.conns_open,
            (unsigned long long)st.conns_total,
            (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out,
            (unsigned long long)st.broadcasts, (unsigned long long)st.fanout);
}

/* One command line: "CMD TARGET TEXT", or "all TEXT", or "stats". The text
 * goes out as a JSON string; each call frames it once for all receivers. */
static void run_command(chat *ch, char *line) {
  ws_server *s = ch->srv;
  char *rest = split(line), *target = rest, *text;
  cJSON *data;
  int n;
  if (*line == '\0') return;
  if (strcmp(line, "stats") == 0) {
    print_stats(s);
    return;
  }
  if (strcmp(line, "later") == 0) {
    run_later(ch, rest);
    return;
  }
  if (strcmp(line, "all") == 0) {
    target = "*";
    text = rest;
  } else {
    text = split(rest);
  }
  if (strcmp(line, "push") != 0 && strcmp(line, "send") != 0 &&
      strcmp(line, "devices") != 0 && strcmp(line, "publish") != 0 &&
      strcmp(line, "all") != 0) {
    ex_line(1, "error unknown command %s (push, send, devices, publish, all, "
              "later, stats)\n", line);
    return;
  }
  if (*target == '\0') {
    ex_line(1, "error %s needs a target\n", line);
    return;
  }
  if ((data = cJSON_CreateString(text)) == NULL) {
    ex_line(1, "error out of memory\n");
    return;
  }
  if (strcmp(line, "push") == 0)
    n = ws_push_user(s, target, "push", data);
  else if (strcmp(line, "send") == 0)
    n = ws_send_device(s, target, "push", data);
  else if (strcmp(line, "devices") == 0)
    n = push_devices(s, target, data);
  else if (strcmp(line, "publish") == 0)
    n = ws_publish(s, target, "push", data);
  else
    n = ws_broadcast(s, "push", data, NULL, 0);
  cJSON_Delete(data);
  if (n < 0)
    ex_line(1, "error %s %s\n", line, ws_strerror(n));
  else
    ex_line(1, "ok %s %d\n", line, n);
}

/* stdin is readable: assemble lines, run each. EOF stops watching stdin;
 * the server goes on. */
static void on_stdin(wsa_epoll *p, wsa_epoll_watcher *w, uint32_t events) {
  chat *ch = w->user_data;
  char buf[1024];
  ssize_t n = read(w->item.fd, buf, sizeof(buf));
  ssize_t i;
  (void)events;
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    wsa_epoll_unwatch(p, w);
    return;
  }
  for (i = 0; i < n; i++) {
    if (buf[i] == '\r') continue;
    if (buf[i] != '\n') {
      if (ch->line_len < sizeof(ch->line) - 1)
        ch->line[ch->line_len++] = buf[i];
      else
        ch->line_long = 1;
      continue;
    }
    ch->line[ch->line_len] = '\0';
    ch->line_len = 0;
    /* A cut line is another command (a shorter push, broken UTF-8):
     * refused, not run. */
    if (ch->line_long)
      ex_line(1, "error line too long (at most %zu bytes)\n",
              sizeof(ch->line) - 1);
    else
      run_command(ch, ch->line);
    ch->line_long = 0;
  }
}

/* ---- timer and signals -------------------------------------------------- */

static void on_tick(chat *ch) {
  cJSON *d = cJSON_CreateObject();
  if (d == NULL) return;
  cJSON_AddNumberToObject(d, "n", (double)++ch->ticks);
  cJSON_AddNumberToObject(d, "online", (double)ws_server_conn_count(ch->srv));
  ws_broadcast(ch->srv, "tick", d, NULL, 0);
  cJSON_Delete(d);
}

/* SIGINT/SIGTERM arrive as a readable signalfd: no handler, no race with
 * the wait. Stop accepting, stop reading commands, close everyone. */
static void on_signal(wsa_epoll *p, wsa_epoll_watcher *w, uint32_t events) {
  chat *ch = w->user_data;
  struct signalfd_siginfo si;
  ssize_t r = read(w->item.fd, &si, sizeof(si));
  (void)events, (void)r;
  if (ch->stopping) return;
  ch->stopping = 1;
  wsa_epoll_stop_listening(p);
  wsa_epoll_unwatch(p, &ch->stdin_w);
  ws_server_shutdown(ch->srv, DRAIN_MS); /* on_shutdown may fire inside */
}

static int on_shutdown(ws_server *s, void *ud) {
  (void)s;
  ((chat *)ud)->done = 1;
  return 0;
}

static void on_log(ws_server *s, int level, const char *msg, void *ud) {
  (void)s, (void)ud;
  if (level <= WS_LOG_WARN) ex_line(2, "chat: %s\n", msg);
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv) {
  chat *ch = &g_chat;
  const char *host = "127.0.0.1";
  int port = 8081, tick_ms = 30000, i, rc, sfd;
  uint64_t next_tick = 0;
  ws_config cfg;
  ws_mux *mux;
  sigset_t sigs;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
      host = argv[++i];
    else if (strcmp(argv[i], "--tick-ms") == 0 && i + 1 < argc)
      tick_ms = atoi(argv[++i]);
    else {
      int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
      fprintf(help ? stdout : stderr,
              "usage: %s [--port N] [--host ADDR] [--tick-ms MS]\n", argv[0]);
      return help ? 0 : 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* startup lines out before ex_line's */
  later_init(ch);

  mux = ws_mux_new(NULL);
  if (mux == NULL || ws_mux_handle(mux, "join", on_join, NULL) ||
      ws_mux_handle(mux, "leave", on_leave, NULL) ||
      ws_mux_handle(mux, "say", on_say, NULL) ||
      ws_mux_handle(mux, "ping", on_ping, NULL)) {
    fprintf(stderr, "chat: mux setup failed\n");
    return 1;
  }

  ws_config_init(&cfg);
  wsa_epoll_config(&cfg);
  cfg.user_data = ch;
  cfg.handler = ws_mux_serve;
  cfg.handler_data = mux;
  cfg.on_upgrade = on_upgrade;
  cfg.on_open = on_open;
  cfg.on_close = on_close;
  cfg.on_shutdown = on_shutdown;
  cfg.on_log = on_log;
  cfg.wake = chat_wake; /* for ws_post from the "later" thread */
  if ((rc = ws_server_new(&cfg, &ch->srv)) != WS_OK) {
    fprintf(stderr, "chat: ws_server_new: %s\n", ws_strerror(rc));
    return 1;
  }
  if (wsa_epoll_init(&ch->loop, ch->srv, host, port) != 0) {
    perror("chat: listen");
    return 1;
  }

  /* Signals as an fd: block them, then read them from the loop. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0 ||
      wsa_epoll_watch(&ch->loop, &ch->signal_w, sfd, EPOLLIN, on_signal, ch)) {
    perror("chat: signalfd");
    return 1;
  }
  /* stdin may be a file or /dev/null, which epoll refuses: no commands. */
  if (wsa_epoll_watch(&ch->loop, &ch->stdin_w, 0, EPOLLIN, on_stdin, ch))
    fprintf(stderr, "chat: stdin is not pollable; commands disabled\n");

  {
    char url[128];
    ex_url(url, sizeof url, "ws", host, wsa_local_port(ch->loop.listener.fd));
    printf("chat: listening on %s/ws?device_id=ID&token=TOKEN\n", url);
  }

  if (tick_ms > 0) next_tick = wsa_now_ms() + (uint64_t)tick_ms;
  while (!ch->done) {
    /* The library's next deadline and ours: whichever comes first. While
     * stopping, the tick inside may end the drain (on_shutdown) and leave
     * nothing to wake the wait: look at done every 100 ms. */
    int cap = ch->stopping ? 100
              : tick_ms > 0 ? wsa_epoll_ms_until(next_tick) : -1;
    if (wsa_epoll_run_once_for(&ch->loop, cap) < 0) {
      perror("chat: epoll_wait");
      break;
    }
    if (tick_ms > 0 && !ch->stopping && wsa_now_ms() >= next_tick) {
      on_tick(ch);
      next_tick += (uint64_t)tick_ms;
      if (next_tick < wsa_now_ms()) /* we fell behind: skip */
        next_tick = wsa_now_ms() + (uint64_t)tick_ms;
    }
  }

  later_stop(ch); /* no ws_post may race with ws_server_free */
  ws_server_free(ch->srv);
  wsa_epoll_unwatch(&ch->loop, &ch->signal_w);
  close(sfd);
  wsa_epoll_destroy(&ch->loop);
  ws_mux_free(mux);
  ex_line(1, "chat: stopped\n"); /* a stalled terminal must not hold the exit */
  return 0;
}
