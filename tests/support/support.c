/* Shared unit-test helpers: see support.h. */
#include "support.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- counting / failing allocator ------------------------------------- */

/* Every block is prefixed with this header; the union keeps the user
 * pointer aligned for any type. The magic catches frees of pointers the
 * allocator never handed out, and double frees. */
#define TEST_ALLOC_MAGIC 0x5753414cu /* "WSAL" */
#define TEST_ALLOC_DEAD 0xdeadbeefu
typedef union test_block {
  struct {
    size_t size;
    unsigned magic;
  } h;
  max_align_t align;
} test_block;

static struct {
  long fail_at;
  long count;
  long live;
  long live_bytes;
  long peak_bytes;
  int failed;
} g_alloc;

/* Counts one attempt; 1 if this is the one to fail. */
static int attempt_fails(void) {
  g_alloc.count++;
  if (g_alloc.fail_at > 0 && g_alloc.count == g_alloc.fail_at) {
    g_alloc.failed = 1;
    return 1;
  }
  return 0;
}

static test_block *block_of(void *p) {
  test_block *b = (test_block *)p - 1;
  if (b->h.magic != TEST_ALLOC_MAGIC) {
    fprintf(stderr, "test_alloc: bad or double free of %p\n", p);
    abort();
  }
  return b;
}

static void *t_malloc(size_t n, void *ud) {
  (void)ud;
  if (attempt_fails()) return NULL;
  test_block *b = malloc(sizeof *b + n);
  if (!b) return NULL;
  b->h.size = n;
  b->h.magic = TEST_ALLOC_MAGIC;
  g_alloc.live++;
  g_alloc.live_bytes += (long)n;
  if (g_alloc.live_bytes > g_alloc.peak_bytes)
    g_alloc.peak_bytes = g_alloc.live_bytes;
  return b + 1;
}

static void t_free(void *p, void *ud) {
  (void)ud;
  if (!p) return;
  test_block *b = block_of(p);
  g_alloc.live--;
  g_alloc.live_bytes -= (long)b->h.size;
  b->h.magic = TEST_ALLOC_DEAD;
  /* Poisoned, so a read after free shows without a sanitizer. */
  memset(b + 1, 0xa5, b->h.size);
  free(b);
}

/* realloc(NULL, n) is malloc; realloc(p, 0) frees and returns NULL. A
 * failed realloc leaves p untouched, like libc's. */
static void *t_realloc(void *p, size_t n, void *ud) {
  if (!p) return t_malloc(n, ud);
  if (n == 0) {
    t_free(p, ud);
    return NULL;
  }
  test_block *old = block_of(p);
  size_t old_size = old->h.size;
  if (attempt_fails()) return NULL;
  test_block *b = realloc(old, sizeof *b + n);
  if (!b) return NULL;
  b->h.size = n;
  g_alloc.live_bytes += (long)n - (long)old_size;
  if (g_alloc.live_bytes > g_alloc.peak_bytes)
    g_alloc.peak_bytes = g_alloc.live_bytes;
  return b + 1;
}

ws_allocator test_alloc(void) {
  return (ws_allocator){.malloc = t_malloc,
                        .realloc = t_realloc,
                        .free = t_free,
                        .user_data = NULL};
}

void test_alloc_reset(long fail_at) {
  g_alloc.fail_at = fail_at;
  g_alloc.count = 0;
  g_alloc.failed = 0;
  g_alloc.peak_bytes = g_alloc.live_bytes;
}

long test_alloc_live(void) { return g_alloc.live; }
long test_alloc_live_bytes(void) { return g_alloc.live_bytes; }
long test_alloc_peak_bytes(void) { return g_alloc.peak_bytes; }
long test_alloc_count(void) { return g_alloc.count; }
int test_alloc_failed(void) { return g_alloc.failed; }

/* ---- guard-page buffer ------------------------------------------------- */

void test_guard_init(test_guard *g, size_t max_len) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t data_pages = max_len / page + 1;
  g->map_len = (data_pages + 1) * page;
  void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert(m != MAP_FAILED, "mmap failed");
  g->map = m;
  g->wall = g->map + data_pages * page;
  g->cap = data_pages * page;
  cr_assert(mprotect(g->wall, page, PROT_NONE) == 0, "mprotect failed");
}

const char *test_guard_place(test_guard *g, const void *data, size_t len) {
  cr_assert(len <= g->cap, "guard buffer too small");
  unsigned char *start = g->wall - len;
  if (len > 0) memcpy(start, data, len);
  return (const char *)start;
}

void test_guard_free(test_guard *g) {
  if (g->map) munmap(g->map, g->map_len);
  g->map = NULL;
}
