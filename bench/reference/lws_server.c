/*
 * lws_server - the ping/pong push protocol on libwebsockets (4.1), written
 * the way lws recommends: one thread, lws_service() loop, one protocol
 * callback, a per-session write queue drained one message per
 * LWS_CALLBACK_SERVER_WRITEABLE, lws_callback_on_writable() to ask for more.
 * A broadcast builds one reference-counted message shared by every queue.
 *
 * Messages are recognised the same cheap way as raw_epoll (exact ping bytes,
 * broadcast prefix), so the comparison measures the WebSocket layer.
 *
 * usage: lws_server --port N
 */
#include <libwebsockets.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_QUEUE 65536u       /* messages queued per session before drop */
#define MAX_MESSAGE (16u << 20)

struct msg {
  unsigned refs; /* 0 = static, never freed */
  size_t len;
  unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
};

struct pss {
  struct pss *prev, *next; /* all open sessions, for broadcast */
  struct lws *wsi;
  struct msg **q; /* ring of queued messages */
  unsigned qhead, qlen, qcap;
  unsigned char *rx; /* reassembly of a message split over callbacks */
  size_t rxlen, rxcap;
  int dropping;
  char device_id[129];
};

static struct pss *sessions;
static struct msg *pong_msg;

static const char PING[] = "{\"action\":\"ping\"}";
static const char PONG[] = "{\"action\":\"pong\",\"data\":\"\"}";
static const char BC_PREFIX_IN[] = "{\"action\":\"broadcast\",\"data\":";
static const char BC_PREFIX_OUT[] = "{\"action\":\"bc\",\"data\":";

static struct msg *msg_new(size_t len) {
  struct msg *m = malloc(sizeof *m + LWS_PRE + len);
  if (m) {
    m->refs = 0;
    m->len = len;
  }
  return m;
}

static void msg_unref(struct msg *m) {
  if (m->refs && --m->refs == 0)
    free(m);
}

/* Queue m on p; returns -1 when the session must be dropped. */
static int enqueue(struct pss *p, struct msg *m, int counted) {
  if (p->dropping)
    return -1;
  if (p->qlen == p->qcap) {
    if (p->qcap >= MAX_QUEUE)
      return -1;
    unsigned ncap = p->qcap ? p->qcap * 2 : 8;
    struct msg **nq = malloc(ncap * sizeof *nq);
    if (!nq)
      return -1;
    for (unsigned i = 0; i < p->qlen; i++)
      nq[i] = p->q[(p->qhead + i) % p->qcap];
    free(p->q);
    p->q = nq;
    p->qhead = 0;
    p->qcap = ncap;
  }
  p->q[(p->qhead + p->qlen) % p->qcap] = m;
  p->qlen++;
  if (counted)
    m->refs++;
  lws_callback_on_writable(p->wsi);
  return 0;
}

static void drop_session(struct pss *p) {
  /* slow consumer, or out of memory: have lws close it asynchronously */
  p->dropping = 1;
  lws_close_reason(p->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, NULL, 0);
  lws_set_timeout(p->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void on_message(struct pss *p, const unsigned char *d, size_t len) {
  if (len == sizeof PING - 1 && memcmp(d, PING, len) == 0) {
    if (enqueue(p, pong_msg, 0) < 0)
      drop_session(p);
    return;
  }
  size_t pre = sizeof BC_PREFIX_IN - 1;
  if (len > pre && memcmp(d, BC_PREFIX_IN, pre) == 0 && d[len - 1] == '}') {
    size_t dlen = len - pre - 1;
    size_t olen = sizeof BC_PREFIX_OUT - 1 + dlen + 1;
    struct msg *m = msg_new(olen);
    if (!m)
      return;
    unsigned char *o = m->buf + LWS_PRE;
    memcpy(o, BC_PREFIX_OUT, sizeof BC_PREFIX_OUT - 1);
    memcpy(o + sizeof BC_PREFIX_OUT - 1, d + pre, dlen);
    o[olen - 1] = '}';
    m->refs = 1; /* held while fanning out */
    for (struct pss *s = sessions; s; s = s->next)
      if (enqueue(s, m, 1) < 0)
        drop_session(s);
    msg_unref(m);
  }
}

static int callback_pingpong(struct lws *wsi, enum lws_callback_reasons reason,
                             void *user, void *in, size_t len) {
  struct pss *p = user;

  switch (reason) {
  case LWS_CALLBACK_ESTABLISHED:
    memset(p, 0, sizeof *p);
    p->wsi = wsi;
    {
      char arg[160];
      const char *v = lws_get_urlarg_by_name(wsi, "device_id=", arg, (int)sizeof arg);
      if (v)
        snprintf(p->device_id, sizeof p->device_id, "%s", v);
    }
    p->next = sessions;
    if (sessions)
      sessions->prev = p;
    sessions = p;
    break;

  case LWS_CALLBACK_CLOSED:
    if (p->prev)
      p->prev->next = p->next;
    else if (sessions == p)
      sessions = p->next;
    if (p->next)
      p->next->prev = p->prev;
    p->prev = p->next = NULL;
    while (p->qlen) {
      msg_unref(p->q[p->qhead]);
      p->qhead = (p->qhead + 1) % p->qcap;
      p->qlen--;
    }
    free(p->q);
    free(p->rx);
    p->q = NULL;
    p->rx = NULL;
    break;

  case LWS_CALLBACK_RECEIVE:
    if (lws_frame_is_binary(wsi))
      break;
    if (p->rxlen == 0 && lws_is_final_fragment(wsi)) {
      on_message(p, in, len); /* the common case: whole message at once */
      break;
    }
    if (p->rxlen + len > MAX_MESSAGE)
      return -1;
    if (p->rxlen + len > p->rxcap) {
      size_t ncap = (p->rxlen + len) * 2;
      unsigned char *n = realloc(p->rx, ncap);
      if (!n)
        return -1;
      p->rx = n;
      p->rxcap = ncap;
    }
    memcpy(p->rx + p->rxlen, in, len);
    p->rxlen += len;
    if (lws_is_final_fragment(wsi)) {
      on_message(p, p->rx, p->rxlen);
      p->rxlen = 0;
    }
    break;

  case LWS_CALLBACK_SERVER_WRITEABLE: {
    if (!p->qlen)
      break;
    struct msg *m = p->q[p->qhead];
    size_t mlen = m->len;
    int n = lws_write(wsi, m->buf + LWS_PRE, mlen, LWS_WRITE_TEXT);
    p->qhead = (p->qhead + 1) % p->qcap;
    p->qlen--;
    msg_unref(m);
    if (n < (int)mlen)
      return -1;
    if (p->qlen)
      lws_callback_on_writable(wsi);
    break;
  }

  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"pingpong", callback_pingpong, sizeof(struct pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: lws_server --port N\n");
      return 64;
    }
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: lws_server --port N\n");
    return 64;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  pong_msg = msg_new(sizeof PONG - 1);
  if (!pong_msg)
    return 3;
  memcpy(pong_msg->buf + LWS_PRE, PONG, sizeof PONG - 1);

  lws_set_log_level(LLL_ERR, NULL);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = port;
  info.iface = "127.0.0.1";
  info.protocols = protocols;
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
  struct lws_context *ctx = lws_create_context(&info);
  if (!ctx) {
    fprintf(stderr, "lws_server: lws_create_context failed\n");
    return 1;
  }
  fprintf(stderr, "lws_server: listening on 127.0.0.1:%d (libwebsockets %s)\n", port,
          lws_get_library_version());
  int n = 0;
  while (n >= 0)
    n = lws_service(ctx, 0);
  lws_context_destroy(ctx);
  return 0;
}
