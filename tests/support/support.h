/*
 * Shared unit-test helpers. Linked into every unit test (see Makefile).
 *
 * Counting allocator: a ws_allocator whose every allocation is counted and
 * carries a size header, so a test can assert that nothing leaked (live
 * allocations and live bytes back to zero) and can fail exactly the N-th
 * allocation attempt (failmalloc pass). State is process-wide, which is fine
 * here: Criterion runs each test in its own process.
 *
 * Guard-page buffer: places bytes so that they end exactly where an
 * inaccessible page begins; any read past the end crashes the test.
 */
#ifndef WS_TEST_SUPPORT_H
#define WS_TEST_SUPPORT_H

#include <stddef.h>

#include "wsmux.h"

/* ---- counting / failing allocator ------------------------------------- */

/* The allocator to put in ws_config.alloc (or pass to ws__alloc_init). */
ws_allocator test_alloc(void);
/* Resets the counters. fail_at > 0: the fail_at-th allocation attempt
 * (malloc, or realloc that allocates; 1-based, counted from this reset)
 * returns NULL; every other one succeeds. fail_at <= 0: none fails.
 * Live counts are not reset: memory allocated before stays accounted. */
void test_alloc_reset(long fail_at);
/* Allocations currently live (allocated and not yet freed). */
long test_alloc_live(void);
/* Bytes currently live (sum of requested sizes). */
long test_alloc_live_bytes(void);
/* Highest live byte count seen since the last reset (starts at the live
 * bytes at reset time). */
long test_alloc_peak_bytes(void);
/* Allocation attempts since the last reset, including the failed one. */
long test_alloc_count(void);
/* 1 if the fail_at-th attempt was reached (and failed) since the reset. */
int test_alloc_failed(void);

/* ---- guard-page buffer ------------------------------------------------- */

typedef struct test_guard {
  unsigned char *map;  /* whole mapping */
  size_t map_len;
  unsigned char *wall; /* first byte of the PROT_NONE page */
  size_t cap;          /* bytes usable before the wall */
} test_guard;

/* Maps enough read/write pages for max_len bytes followed by one PROT_NONE
 * page. Aborts the test (Criterion assert) on failure. */
void test_guard_init(test_guard *g, size_t max_len);
/* Copies data[0..len) so that its last byte sits right before the wall and
 * returns where it starts. len must be <= cap. */
const char *test_guard_place(test_guard *g, const void *data, size_t len);
void test_guard_free(test_guard *g);

#endif /* WS_TEST_SUPPORT_H */
