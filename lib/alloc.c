/* Allocator defaults and helpers. */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

static void *libc_malloc(size_t n, void *ud) {
  (void)ud;
  return malloc(n);
}
static void *libc_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  return realloc(p, n);
}
static void libc_free(void *p, void *ud) {
  (void)ud;
  free(p);
}

int ws__alloc_init(ws__alloc *out, const ws_allocator *user) {
  if (user == NULL || (!user->malloc && !user->realloc && !user->free)) {
    out->a.malloc = libc_malloc;
    out->a.realloc = libc_realloc;
    out->a.free = libc_free;
    out->a.user_data = NULL;
    return WS_OK;
  }
  if (!user->malloc || !user->realloc || !user->free) return WS_EINVAL;
  out->a = *user;
  return WS_OK;
}

char *ws__strdup(const ws__alloc *al, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = ws__malloc(al, n);
  if (d) memcpy(d, s, n);
  return d;
}
