/* The in-memory transport (see mem_transport.h). */
#include "mem_transport.h"

#include <stdlib.h>
#include <string.h>

static size_t take(mem_transport *t, const void *p, size_t n) {
  if (t->turn) {
    if (n > t->budget) n = t->budget;
    t->budget -= n;
  }
  if (n == 0) return 0;
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap : 1024;
    uint8_t *nb;
    while (cap < t->len + n) cap *= 2;
    nb = realloc(t->out, cap);
    if (nb == NULL) {
      t->failed = 1;
      return 0;
    }
    t->out = nb;
    t->cap = cap;
  }
  memcpy(t->out + t->len, p, n);
  t->len += n;
  return n;
}

static ssize_t mem_send(ws_conn *c, void *transport, const void *data,
                        size_t len) {
  mem_transport *t = transport;
  (void)c;
  if (t->closed) { /* no write after close: counted, the runner fails it */
    t->late++;
    return -1;
  }
  return (ssize_t)take(t, data, len);
}

static ssize_t mem_sendv(ws_conn *c, void *transport, const ws_iovec *iov,
                         int iovcnt) {
  mem_transport *t = transport;
  size_t total = 0;
  int i;
  (void)c;
  if (t->closed) {
    t->late++;
    return -1;
  }
  for (i = 0; i < iovcnt; i++) {
    size_t n = take(t, iov[i].base, iov[i].len);
    total += n;
    if (n < iov[i].len) break;
  }
  return (ssize_t)total;
}

static int mem_want_write(ws_conn *c, void *transport, int want) {
  mem_transport *t = transport;
  (void)c;
  t->want = want;
  return 0;
}

static int mem_close(ws_conn *c, void *transport) {
  mem_transport *t = transport;
  (void)c;
  t->closed = 1;
  t->closes++;
  return 0;
}

void mem_transport_config(ws_config *cfg, int use_sendv) {
  cfg->send = mem_send;
  cfg->sendv = use_sendv ? mem_sendv : NULL;
  cfg->want_write = mem_want_write;
  cfg->close = mem_close;
}

void mem_turn(mem_transport *t) { t->budget = t->turn; }

void mem_transport_free(mem_transport *t) {
  free(t->out);
  memset(t, 0, sizeof(*t));
}
