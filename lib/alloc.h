/*
 * The per-server allocator: every library allocation goes through it, so a
 * host can account for or fail any of them (the failmalloc tests do). No
 * global allocator exists. Never installed.
 */
#ifndef WS_ALLOC_H
#define WS_ALLOC_H

#include <stddef.h>

#include "wsmux.h"

typedef struct ws__alloc {
  ws_allocator a; /* all three members set (libc defaults filled in) */
} ws__alloc;

/* Fills *out from user (NULL or all-NULL members: libc). Returns WS_EINVAL
 * for a partially set allocator. */
int ws__alloc_init(ws__alloc *out, const ws_allocator *user);

static inline void *ws__malloc(const ws__alloc *al, size_t n) {
  return al->a.malloc(n, al->a.user_data);
}
static inline void *ws__realloc(const ws__alloc *al, void *p, size_t n) {
  return al->a.realloc(p, n, al->a.user_data);
}
static inline void ws__free(const ws__alloc *al, void *p) {
  if (p) al->a.free(p, al->a.user_data);
}
/* Copies a NUL-terminated string; NULL on ENOMEM. */
char *ws__strdup(const ws__alloc *al, const char *s);

#endif /* WS_ALLOC_H */
