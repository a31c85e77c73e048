/*
 * Conformance, mode 2: every case of cases.c against a running ping/pong
 * server over loopback TCP. This program starts nothing: run_net.sh (or you)
 * starts build/examples/pingpong and passes its port.
 *
 *   conformance_net --port P [--host 127.0.0.1] [--jobs 50]
 *                   [--timeout-ms 5000] [--group NAME] [--quiet]
 *                   [--no-page] [--no-handshake] [--label NAME]
 *
 * --no-page: the server has no page at "/" (the loop adapters' ping/pong
 * examples): the case that expects 200 for GET / expects 404 instead.
 * --no-handshake: every group but the opening handshake's, for a host whose
 * own HTTP server reads the request (examples/mhd.c): what it answers, and
 * whether it keeps the connection, is that server's.
 * --label NAME: summaries read conformance[NAME] (default "net").
 *
 * Each case gets its own non-blocking connection; at most --jobs are open
 * at a time, all driven by one poll loop. The runner sends the upgrade
 * request (unless the case carries its own), then the script's chunks up to
 * stop_after, one send each (later chunks are never sent: an outcome that
 * needs them is a late failure and times out), reads everything, and checks
 * it with conf_verify: exact frames, then the TCP close (read returns 0; a
 * reset is a failure). A case that must stay open, or waits for the
 * client's close, gets its tail (probe or reply) once the script's outcome
 * is in. At a case's sync points the runner holds the next chunk until
 * the frames due are in and the case's pause has passed (a close or a
 * frame more meanwhile fails it). Prints failures, per-group counts and
 *   conformance[net]: N passed, N failed
 * Exit status 0 only when every case passed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"

#define MAX_JOBS 256

typedef struct job {
  const conf_case *cc;
  size_t index;      /* in the table: device id */
  int fd;
  int connected;
  char req[512];     /* the upgrade request (non-raw cases) */
  size_t req_len;
  /* What is being written: the request (seg -1), chunk seg, or the tail. */
  long seg;
  const uint8_t *wp;
  size_t wlen, woff;
  int script_done;   /* request and chunks 0..stop_after written */
  const conf_sync *held; /* waiting at this sync point */
  uint64_t held_until;   /* not released before (the case's pause) */
  long released;         /* the chunk whose sync point was passed */
  int tail_queued;
  uint8_t *in;
  size_t in_len, in_cap;
  uint64_t deadline;
} job;

typedef struct opts {
  const char *host;
  int port;
  int jobs;
  int timeout_ms;
  int group; /* -1: all */
  int quiet;
  int no_page, no_handshake;
  const char *label;
} opts;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- writing: the request, chunks 0..stop_after, then the tail ------- */

/* Points the job at its next segment; sets script_done after the last. */
static void next_segment(job *j) {
  const conf_case *cc = j->cc;
  const conf_sync *y =
      j->seg >= 0 && j->seg != j->released ? conf_sync_at(cc, (size_t)j->seg)
                                           : NULL;
  j->woff = 0;
  j->wlen = 0;
  if (y) { /* hold here: job_step releases it */
    j->held = y;
    j->held_until = now_ms() + (uint64_t)cc->pause_ms;
    j->wp = NULL;
    return;
  }
  for (;;) {
    j->seg++;
    if (j->seg >= (long)cc->nchunks || (size_t)j->seg > cc->stop_after) {
      j->script_done = 1;
      j->wp = NULL;
      return;
    }
    {
      size_t start = j->seg ? cc->ends[j->seg - 1] : 0;
      j->wp = cc->bytes + start;
      j->wlen = cc->ends[j->seg] - start;
    }
    if (j->wlen) return;
  }
}

/* Writes what it can. Returns 0, or -1 with why on a write error. */
static int job_write(job *j, char *why, size_t wn) {
  while (j->wp && j->woff < j->wlen) {
    ssize_t w = send(j->fd, j->wp + j->woff, j->wlen - j->woff, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
      snprintf(why, wn, "write failed (%s): the server closed early",
               strerror(errno));
      return -1;
    }
    j->woff += (size_t)w;
    if (j->woff == j->wlen) {
      if (j->tail_queued) {
        j->wp = NULL; /* the tail is the last thing written */
        return 0;
      }
      next_segment(j);
    }
  }
  return 0;
}

static void queue_tail(job *j) {
  const uint8_t *p;
  size_t n = conf_tail(j->cc, &p);
  j->tail_queued = 1;
  j->wp = p;
  j->wlen = n;
  j->woff = 0;
}

/* ---- one job --------------------------------------------------------- */

static int job_start(job *j, const opts *o, const conf_case *cc, size_t index,
                     char *why, size_t wn) {
  struct sockaddr_in a;
  int one = 1;
  memset(j, 0, sizeof(*j));
  j->cc = cc;
  j->index = index;
  j->deadline = now_ms() + (uint64_t)o->timeout_ms;
  j->released = -2;
  j->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (j->fd < 0) {
    snprintf(why, wn, "socket: %s", strerror(errno));
    return -1;
  }
  setsockopt(j->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)o->port);
  if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
    snprintf(why, wn, "bad host %s", o->host);
    return -1;
  }
  if (connect(j->fd, (struct sockaddr *)&a, sizeof(a)) < 0 &&
      errno != EINPROGRESS) {
    snprintf(why, wn, "connect: %s", strerror(errno));
    return -1;
  }
  if (!cc->raw_http) {
    char dev[32];
    snprintf(dev, sizeof(dev), "net%zu", index);
    j->req_len = conf_upgrade_request(j->req, sizeof(j->req), dev);
    j->seg = -1;
    j->wp = (const uint8_t *)j->req;
    j->wlen = j->req_len;
  } else {
    j->seg = -1;
    next_segment(j);
  }
  return 0;
}

static void job_end(job *j) {
  if (j->fd >= 0) close(j->fd);
  j->fd = -1;
  free(j->in);
  j->in = NULL;
  j->cc = NULL;
}

/* Reads what is there. Returns 1 on EOF, 0 otherwise, -1 on error. */
static int job_read(job *j, char *why, size_t wn) {
  for (;;) {
    ssize_t r;
    if (j->in_cap - j->in_len < 16384) {
      size_t cap = j->in_cap ? j->in_cap * 2 : 65536;
      uint8_t *nb = realloc(j->in, cap);
      if (nb == NULL) {
        snprintf(why, wn, "out of memory");
        return -1;
      }
      j->in = nb;
      j->in_cap = cap;
    }
    r = recv(j->fd, j->in + j->in_len, j->in_cap - j->in_len, 0);
    if (r > 0) {
      j->in_len += (size_t)r;
      continue;
    }
    if (r == 0) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    snprintf(why, wn, "read failed (%s) instead of a clean close",
             strerror(errno));
    return -1;
  }
}

/* Advances a job after an event. Returns CONF_PENDING while it runs, else
 * CONF_PASS or CONF_FAIL (why set). */
static int job_step(job *j, short revents, char *why, size_t wn) {
  int eof = 0, v;
  if (!j->connected) {
    int err = 0;
    socklen_t el = sizeof(err);
    if (!(revents & (POLLOUT | POLLERR | POLLHUP))) return CONF_PENDING;
    getsockopt(j->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
      snprintf(why, wn, "connect: %s", strerror(err));
      return CONF_FAIL;
    }
    j->connected = 1;
  }
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    int r = job_read(j, why, wn);
    if (r < 0) return CONF_FAIL;
    eof = r == 1;
  }
  if (j->held) { /* at a sync point: no close, no frame more, yet */
    size_t n = conf_frames_in(j->cc, j->in, j->in_len);
    if (eof || n > j->held->frames) {
      snprintf(why, wn, "%s at the sync point after chunk %zu (fails early)",
               eof ? "closed" : "a frame more",
               j->held->after_chunk);
      return CONF_FAIL;
    }
    if (n == j->held->frames && now_ms() >= j->held_until) {
      j->released = j->seg;
      j->held = NULL;
      next_segment(j);
    }
  }
  if (!eof && j->wp && job_write(j, why, wn) < 0) return CONF_FAIL;
  v = conf_verify(j->cc, j->in, j->in_len, eof, j->tail_queued, why, wn);
  if (v == CONF_READY_TAIL && j->script_done && !j->tail_queued) {
    queue_tail(j);
    if (job_write(j, why, wn) < 0) return CONF_FAIL;
  }
  if (v == CONF_PASS || v == CONF_FAIL) return v;
  if (eof) {
    snprintf(why, wn, "closed with the outcome incomplete");
    return CONF_FAIL;
  }
  return CONF_PENDING;
}

/* ---- the loop -------------------------------------------------------- */

static int skipped(const opts *o, const conf_case *cc) {
  if (o->no_handshake && cc->group == CONF_G_HANDSHAKE) return 1;
  return o->group >= 0 && cc->group != o->group;
}

/* --no-page: the page case (the only one expecting 200) expects the 404
 * of a server with nothing at "/". Returns how many cases it changed. */
static size_t expect_no_page(conf_table *t) {
  size_t i, n = 0;
  for (i = 0; i < t->n; i++) {
    conf_case *cc = &t->v[i];
    if (!cc->raw_http || cc->http_status != 200) continue;
    cc->http_status = 404;
    snprintf(cc->title, sizeof cc->title, "GET /: 404 (no page)");
    n++;
  }
  return n;
}

static int parse_opts(int argc, char **argv, opts *o) {
  int i, g;
  o->host = "127.0.0.1";
  o->port = 0;
  o->jobs = 50;
  o->timeout_ms = 5000;
  o->group = -1;
  o->quiet = 0;
  o->no_page = o->no_handshake = 0;
  o->label = "net";
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      o->port = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
      o->host = argv[++i];
    } else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
      o->jobs = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
      o->timeout_ms = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc) {
      i++;
      for (g = 0; g < CONF_G_COUNT; g++)
        if (strcmp(argv[i], conf_group_name(g)) == 0) o->group = g;
      if (o->group < 0) return -1;
    } else if (strcmp(argv[i], "--quiet") == 0) {
      o->quiet = 1;
    } else if (strcmp(argv[i], "--no-page") == 0) {
      o->no_page = 1;
    } else if (strcmp(argv[i], "--no-handshake") == 0) {
      o->no_handshake = 1;
    } else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc) {
      o->label = argv[++i];
    } else {
      return -1;
    }
  }
  if (o->port <= 0 || o->port > 65535 || o->jobs < 1 || o->timeout_ms < 1)
    return -1;
  if (o->jobs > MAX_JOBS) o->jobs = MAX_JOBS;
  return 0;
}

int main(int argc, char **argv) {
  static job jobs[MAX_JOBS];
  struct pollfd pfd[MAX_JOBS];
  int map[MAX_JOBS];
  size_t passed[CONF_G_COUNT] = {0}, failed[CONF_G_COUNT] = {0};
  size_t next = 0, running = 0, shown = 0, tp = 0, tf = 0;
  conf_table t;
  opts o;
  int i, rc;
  char why[256];

  if (parse_opts(argc, argv, &o) != 0) {
    fprintf(stderr,
            "usage: %s --port P [--host ADDR] [--jobs N] [--timeout-ms MS] "
            "[--group NAME] [--quiet] [--no-page] [--no-handshake] "
            "[--label NAME]\n",
            argv[0]);
    return 2;
  }
  if ((rc = conf_table_build(&t)) != 0) {
    fprintf(stderr, "conf_table_build failed (%d)\n", rc);
    return 2;
  }
  if (o.no_page && expect_no_page(&t) != 1) {
    fprintf(stderr, "--no-page: expected one page case\n");
    return 2;
  }
  for (i = 0; i < MAX_JOBS; i++) jobs[i].fd = -1;

  for (;;) {
    int n = 0, timeout = -1;
    uint64_t now = now_ms();
    /* Fill free slots. */
    for (i = 0; i < o.jobs && next < t.n; i++) {
      if (jobs[i].cc) continue;
      while (next < t.n && skipped(&o, &t.v[next])) next++;
      if (next >= t.n) break;
      if (job_start(&jobs[i], &o, &t.v[next], next, why, sizeof(why)) != 0) {
        fprintf(stderr, "FAIL %s: %s\n", t.v[next].id, why);
        failed[t.v[next].group]++;
        job_end(&jobs[i]);
      } else {
        running++;
      }
      next++;
    }
    if (running == 0 && next >= t.n) break;
    for (i = 0; i < o.jobs; i++) {
      job *j = &jobs[i];
      int left;
      if (!j->cc) continue;
      pfd[n].fd = j->fd;
      pfd[n].events = (short)(POLLIN | (!j->connected || j->wp ? POLLOUT : 0));
      pfd[n].revents = 0;
      map[n++] = i;
      left = j->deadline > now ? (int)(j->deadline - now) : 0;
      /* A pause still running wakes the loop; once it is over, the
       * frames due do (POLLIN). */
      if (j->held && j->held_until > now && j->held_until < j->deadline)
        left = (int)(j->held_until - now);
      if (timeout < 0 || left < timeout) timeout = left;
    }
    if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
      perror("poll");
      return 2;
    }
    now = now_ms();
    for (i = 0; i < n; i++) {
      job *j = &jobs[map[i]];
      int v = CONF_PENDING;
      why[0] = '\0';
      if (pfd[i].revents || (j->held && now >= j->held_until))
        v = job_step(j, pfd[i].revents, why, sizeof(why));
      if (v == CONF_PENDING && now >= j->deadline) {
        char got[160];
        int pv = conf_verify(j->cc, j->in, j->in_len, 0, j->tail_queued, got,
                             sizeof(got));
        snprintf(why, sizeof(why), "timed out after %d ms (%zu bytes in; %s)",
                 o.timeout_ms, j->in_len,
                 pv == CONF_FAIL ? got
                 : pv == CONF_READY_TAIL ? "outcome in, no close"
                                         : "outcome incomplete");
        v = CONF_FAIL;
      }
      if (v == CONF_PENDING) continue;
      if (v == CONF_PASS) {
        passed[j->cc->group]++;
      } else {
        failed[j->cc->group]++;
        if (!o.quiet || shown < 50)
          fprintf(stderr, "FAIL %s [%s] %s (RFC 6455 %s): %s\n", j->cc->id,
                  conf_group_name(j->cc->group), j->cc->title, j->cc->rfc,
                  why);
        shown++;
      }
      job_end(j);
      running--;
    }
  }

  for (i = 0; i < CONF_G_COUNT; i++) {
    if (passed[i] + failed[i] == 0) continue;
    printf("conformance[%s] %s: %zu passed, %zu failed\n", o.label,
           conf_group_name(i), passed[i], failed[i]);
    tp += passed[i];
    tf += failed[i];
  }
  printf("conformance[%s]: %zu passed, %zu failed\n", o.label, tp, tf);
  conf_table_free(&t);
  return tf == 0 && tp > 0 ? 0 : 1;
}
