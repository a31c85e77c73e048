/*
 * An in-memory transport for the conformance runner: the server's output is
 * captured in a growing buffer, the close callback only records that it
 * fired. A per-turn budget makes it a slow socket: send takes at most
 * `turn` bytes until the runner grants another turn (mem_turn) and calls
 * ws_conn_writable, so the library's partial-write and want_write paths
 * run too.
 */
#ifndef WS_CONF_MEM_TRANSPORT_H
#define WS_CONF_MEM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "wsmux.h"

typedef struct mem_transport {
  uint8_t *out;     /* everything the server wrote (owned) */
  size_t len, cap;
  size_t turn;      /* bytes per writable turn; 0 = unlimited */
  size_t budget;    /* bytes left in this turn */
  int closed;       /* the close callback fired */
  int closes;       /* how many times it fired (must stay <= 1) */
  int want;         /* last want_write value */
  int failed;       /* out of memory while capturing */
  int late;         /* send or sendv calls after the close callback */
} mem_transport;

/* Sets send (or sendv when use_sendv), want_write and close in cfg. The
 * transport pointer given to ws_conn_new must be a mem_transport. */
void mem_transport_config(ws_config *cfg, int use_sendv);

/* Starts a new writable turn (refills the budget). */
void mem_turn(mem_transport *t);

void mem_transport_free(mem_transport *t);

#endif /* WS_CONF_MEM_TRANSPORT_H */
