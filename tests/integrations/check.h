/*
 * The CHECK counter of the integrations tier's small C tests: a failed
 * check is printed and counted, the test goes on, and main prints
 * "N passed, N failed" (or "N checks, N failed") from g_checks and g_fail.
 * One translation unit per test program, so the counters are static.
 */
#ifndef WS_INTEG_CHECK_H
#define WS_INTEG_CHECK_H

#include <stdio.h>

static int g_fail, g_checks;
#define CHECK(cond)                                                          \
  do {                                                                       \
    g_checks++;                                                              \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,       \
              #cond);                                                        \
      g_fail++;                                                              \
    }                                                                        \
  } while (0)

#endif /* WS_INTEG_CHECK_H */
