/*
 * raw_epoll - the "raw ceiling" server for the ping/pong push protocol.
 *
 * As little work per message as a correct server can do: one thread, epoll
 * (level-triggered), non-blocking sockets, a minimal HTTP upgrade, frame
 * header parsing and unmasking, a byte compare against the ping JSON, a
 * prepared pong frame, and one shared frame written to every socket for a
 * broadcast. Partial writes go to a per-socket pending buffer. Replies to
 * the frames of one read are coalesced into one write.
 *
 * Not a general WebSocket server: no fragmentation (a fragmented message
 * closes the connection), no extensions, no subprotocols, no timeouts.
 *
 * usage: raw_epoll --port N
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/sha1b64.h"

#define MAX_PENDING (64u << 20) /* slow consumer: drop past this */
#define MAX_MESSAGE (16u << 20)
#define MAX_REQUEST 8192

struct conn {
  int fd;
  int ws;      /* handshake done */
  int dead;    /* close after the current event */
  int batching; /* replies go to the buffer, flushed after the read */
  int want_out;
  int list_idx; /* index in the open list, -1 if none */
  unsigned char *in; /* unparsed input (leftover) */
  size_t inlen, incap;
  unsigned char *out; /* pending output */
  size_t outoff, outlen, outcap;
};

static int epfd;
static int spare_fd = -1; /* released to refuse a connection on EMFILE */
static int max_fd;
static struct conn **open_list; /* websocket connections, for broadcast */
static int nopen;
static struct conn **dead_list;
static int ndead;

static const char PING[] = "{\"action\":\"ping\"}";
static const unsigned char PONG_FRAME[] = "\x81\x1b{\"action\":\"pong\",\"data\":\"\"}";
#define PONG_LEN (sizeof PONG_FRAME - 1)
static const char BC_PREFIX_IN[] = "{\"action\":\"broadcast\",\"data\":";
static const char BC_PREFIX_OUT[] = "{\"action\":\"bc\",\"data\":";

static unsigned char rbuf[256 * 1024];
static unsigned char *bcbuf;
static size_t bccap;

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q && n) {
    fprintf(stderr, "raw_epoll: out of memory\n");
    exit(3);
  }
  return q;
}

static void set_out(struct conn *c, int on) {
  if (c->want_out == on)
    return;
  c->want_out = on;
  struct epoll_event e = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
}

static void kill_conn(struct conn *c) {
  if (!c->dead) {
    c->dead = 1;
    dead_list[ndead++] = c;
  }
}

static void reap(void) {
  for (int i = 0; i < ndead; i++) {
    struct conn *c = dead_list[i];
    if (c->list_idx >= 0) {
      struct conn *last = open_list[--nopen];
      open_list[c->list_idx] = last;
      last->list_idx = c->list_idx;
    }
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
  }
  ndead = 0;
}

static void buf_append(struct conn *c, const void *p, size_t n) {
  if (c->outoff + c->outlen + n > c->outcap) {
    if (c->outoff) {
      memmove(c->out, c->out + c->outoff, c->outlen);
      c->outoff = 0;
    }
    if (c->outlen + n > c->outcap) {
      if (c->outlen + n > MAX_PENDING) {
        kill_conn(c);
        return;
      }
      c->outcap = (c->outlen + n) * 2;
      c->out = xrealloc(c->out, c->outcap);
    }
  }
  memcpy(c->out + c->outoff + c->outlen, p, n);
  c->outlen += n;
}

static void flush(struct conn *c) {
  while (c->outlen) {
    ssize_t w = send(c->fd, c->out + c->outoff, c->outlen, MSG_NOSIGNAL);
    if (w > 0) {
      c->outoff += (size_t)w;
      c->outlen -= (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_out(c, 1);
      return;
    } else {
      kill_conn(c);
      return;
    }
  }
  c->outoff = 0;
  set_out(c, 0);
}

/* Write now if nothing is queued, else queue. */
static void send_bytes(struct conn *c, const void *p, size_t n) {
  if (c->dead)
    return;
  if (c->outlen || c->batching) {
    buf_append(c, p, n);
    return;
  }
  const unsigned char *b = p;
  while (n) {
    ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
    if (w > 0) {
      b += w;
      n -= (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      buf_append(c, b, n);
      set_out(c, 1);
      return;
    } else {
      kill_conn(c);
      return;
    }
  }
}

static void broadcast(const unsigned char *data, size_t dlen) {
  size_t plen = sizeof BC_PREFIX_OUT - 1 + dlen + 1;
  size_t need = plen + 10;
  if (need > bccap) {
    bccap = need;
    bcbuf = xrealloc(bcbuf, bccap);
  }
  size_t h;
  bcbuf[0] = 0x81;
  if (plen < 126) {
    bcbuf[1] = (unsigned char)plen;
    h = 2;
  } else if (plen <= 0xFFFF) {
    bcbuf[1] = 126;
    bcbuf[2] = (unsigned char)(plen >> 8);
    bcbuf[3] = (unsigned char)plen;
    h = 4;
  } else {
    bcbuf[1] = 127;
    for (int i = 0; i < 8; i++)
      bcbuf[2 + i] = (unsigned char)((uint64_t)plen >> (56 - 8 * i));
    h = 10;
  }
  memcpy(bcbuf + h, BC_PREFIX_OUT, sizeof BC_PREFIX_OUT - 1);
  memcpy(bcbuf + h + sizeof BC_PREFIX_OUT - 1, data, dlen);
  bcbuf[h + plen - 1] = '}';
  for (int i = 0; i < nopen; i++)
    send_bytes(open_list[i], bcbuf, h + plen);
}

/* Parse frames in p[0..n) (unmasking in place); returns bytes consumed. */
static size_t on_frames(struct conn *c, unsigned char *p, size_t n) {
  size_t off = 0;
  while (!c->dead && n - off >= 2) {
    unsigned char b0 = p[off], b1 = p[off + 1];
    size_t hl = 2;
    uint64_t len = b1 & 0x7F;
    if (len == 126) {
      if (n - off < 4)
        break;
      len = ((uint64_t)p[off + 2] << 8) | p[off + 3];
      hl = 4;
    } else if (len == 127) {
      if (n - off < 10)
        break;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = (len << 8) | p[off + 2 + i];
      hl = 10;
    }
    if (!(b1 & 0x80) || !(b0 & 0x80) || len > MAX_MESSAGE) {
      kill_conn(c); /* unmasked, fragmented or huge */
      return n;
    }
    if (n - off < hl + 4 || n - off - hl - 4 < len)
      break;
    unsigned char *mk = p + off + hl;
    unsigned char *pl = mk + 4;
    for (size_t i = 0; i < len; i++)
      pl[i] ^= mk[i & 3];
    unsigned op = b0 & 0x0F;
    if (op == 0x1) {
      if (len == sizeof PING - 1 && memcmp(pl, PING, len) == 0) {
        send_bytes(c, PONG_FRAME, PONG_LEN);
      } else if (len > sizeof BC_PREFIX_IN && memcmp(pl, BC_PREFIX_IN, sizeof BC_PREFIX_IN - 1) == 0 &&
                 pl[len - 1] == '}') {
        int was = c->batching;
        c->batching = 1; /* keep the sender's own order */
        broadcast(pl + sizeof BC_PREFIX_IN - 1, (size_t)len - (sizeof BC_PREFIX_IN - 1) - 1);
        c->batching = was;
      }
    } else if (op == 0x8) {
      unsigned char cl[4] = {0x88, 0x02, 0x03, 0xE8};
      send_bytes(c, cl, 4);
      flush(c);
      kill_conn(c);
      return n;
    } else if (op == 0x9 && len <= 125) {
      unsigned char pong[2 + 125];
      pong[0] = 0x8A;
      pong[1] = (unsigned char)len;
      memcpy(pong + 2, pl, (size_t)len);
      send_bytes(c, pong, 2 + (size_t)len);
    }
    off += hl + 4 + (size_t)len;
  }
  return off;
}

static void in_append(struct conn *c, const unsigned char *p, size_t n) {
  if (c->inlen + n > c->incap) {
    c->incap = (c->inlen + n) * 2;
    c->in = xrealloc(c->in, c->incap);
  }
  memcpy(c->in + c->inlen, p, n);
  c->inlen += n;
}

static void do_handshake(struct conn *c) {
  unsigned char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
  if (!end) {
    if (c->inlen > MAX_REQUEST)
      kill_conn(c);
    return;
  }
  size_t hlen = (size_t)(end - c->in) + 4;
  const char *key = NULL;
  size_t klen = 0;
  for (unsigned char *l = memmem(c->in, hlen, "\r\n", 2); l && l + 2 < end;
       l = memmem(l + 2, hlen - (size_t)(l + 2 - c->in), "\r\n", 2)) {
    char *s = (char *)l + 2;
    if (strncasecmp(s, "Sec-WebSocket-Key:", 18) == 0) {
      s += 18;
      while (*s == ' ' || *s == '\t')
        s++;
      char *e = s;
      while (*e != '\r' && *e != ' ' && *e != '\t')
        e++;
      key = s;
      klen = (size_t)(e - s);
      break;
    }
  }
  if (memcmp(c->in, "GET ", 4) != 0 || !key || klen == 0 || klen > 64) {
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    send_bytes(c, bad, sizeof bad - 1);
    kill_conn(c);
    return;
  }
  char acc[29];
  bws_accept_key(key, klen, acc);
  char resp[160];
  int rn = snprintf(resp, sizeof resp,
                    "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\n\r\n",
                    acc);
  c->ws = 1;
  c->list_idx = nopen;
  open_list[nopen++] = c;
  c->batching = 1;
  send_bytes(c, resp, (size_t)rn);
  size_t rest = c->inlen - hlen;
  memmove(c->in, c->in + hlen, rest);
  c->inlen = rest;
  if (rest) {
    size_t used = on_frames(c, c->in, c->inlen);
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
  }
  if (c->inlen == 0) { /* the request is done with: an idle socket keeps no buffer */
    free(c->in);
    c->in = NULL;
    c->incap = 0;
  }
  c->batching = 0;
  flush(c);
}

static void on_read(struct conn *c) {
  ssize_t r = read(c->fd, rbuf, sizeof rbuf);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (r <= 0) {
    kill_conn(c);
    return;
  }
  size_t n = (size_t)r;
  if (!c->ws) {
    in_append(c, rbuf, n);
    do_handshake(c);
    return;
  }
  c->batching = 1;
  if (c->inlen == 0) {
    size_t used = on_frames(c, rbuf, n);
    if (!c->dead && used < n)
      in_append(c, rbuf + used, n - used);
  } else {
    in_append(c, rbuf, n);
    size_t used = on_frames(c, c->in, c->inlen);
    if (!c->dead) {
      memmove(c->in, c->in + used, c->inlen - used);
      c->inlen -= used;
    }
  }
  c->batching = 0;
  if (!c->dead)
    flush(c);
}

static void on_accept(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE) {
        /* out of fds: refuse this one instead of spinning on it */
        close(spare_fd);
        fd = accept(lfd, NULL, NULL);
        if (fd >= 0)
          close(fd);
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
          continue;
      }
      return; /* EAGAIN */
    }
    if (fd >= max_fd) {
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->list_idx = -1;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
  }
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: raw_epoll --port N\n");
      return 64;
    }
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: raw_epoll --port N\n");
    return 64;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  max_fd = rl.rlim_cur > 1000000 ? 1000000 : (int)rl.rlim_cur;
  open_list = calloc((size_t)max_fd, sizeof *open_list);
  dead_list = calloc((size_t)max_fd, sizeof *dead_list);
  if (!open_list || !dead_list)
    return 3;

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
    perror("raw_epoll: bind/listen");
    return 1;
  }
  epfd = epoll_create1(EPOLL_CLOEXEC);
  spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &le);
  fprintf(stderr, "raw_epoll: listening on 127.0.0.1:%d\n", port);

  struct epoll_event evs[512];
  for (;;) {
    int n = epoll_wait(epfd, evs, 512, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      perror("raw_epoll: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) {
        on_accept(lfd);
        continue;
      }
      if (c->dead)
        continue;
      if (evs[i].events & EPOLLOUT)
        flush(c);
      if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        on_read(c);
    }
    reap();
  }
}
