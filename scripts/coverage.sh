#!/bin/sh
# Line coverage (gcov, which comes with gcc), per source file, with every
# line never run.
#   scripts/coverage.sh             lib/ by the unit suite and the in-memory
#                                   conformance suite; fails when the total
#                                   is below COVERAGE_MIN percent (default
#                                   98.5), so that code added without tests
#                                   shows up in CI (make coverage)
#   scripts/coverage.sh --examples  examples/ and examples/adapters/ by the
#                                   e2e tier, the integrations tier's pytest
#                                   run and its adapter tests; a report
#                                   only, no minimum (make coverage-examples)
# Outputs under build/cov. Lines never run in lib/ are mostly out-of-memory
# paths the failmalloc test cannot reach (two failures in a row).
set -eu
cd "$(dirname "$0")/.."
B=build/cov
jobs=$(nproc 2>/dev/null || echo 2)
mode=${1:-lib}

# Counts accumulate across runs: start from none.
find "$B" -name '*.gcda' -delete 2>/dev/null || true
report=$B/gcov
rm -rf "$report" && mkdir -p "$report"

# annotate SRC GCDA: gcov's annotated copy of SRC and of the headers it
# includes, from the counts in GCDA, into the report directory. gcov finds
# the sources by the relative paths compiled in: it runs from here.
annotate() {
  gcov -t -o "$2" "$1" >"$report/$(basename "$2").gcov" 2>/dev/null || true
}

# summarise PATTERN: per file whose path matches PATTERN, the lines run at
# least once in any of the annotated copies (a header included by several
# programs counts once), the total, and every line never run. Each copy
# has parts opening with "-: 0:Source:<path>"; a line's count is "-" (no
# code), "#####" (never run) or a number.
summarise() {
  awk -F: -v pat="$1" '
    $2 + 0 == 0 && $3 == "Source" { src = $4; next }
    src !~ pat || $1 ~ /^ *-$/ { next }
    { k = src ":" ($2 + 0); code[k] = $0; file[k] = src
      if ($1 !~ /#####/) run[k] = 1 }
    END {
      for (k in file) { n[file[k]]++; if (k in run) r[file[k]]++; else miss[k] }
      for (f in n) { printf "%-34s %7.2f%% of %5d\n", f, 100 * r[f] / n[f], n[f] | "sort"
                     tr += r[f]; tn += n[f] }
      close("sort")
      printf "total %.2f%% of %d\n", tn ? 100 * tr / tn : 0, tn
      print "lines never run:"
      for (k in miss) { c = code[k]; sub(/^[^:]*:[^:]*:/, "", c); print k ":" c | "sort -t: -k1,1 -k2,2n" }
    }' "$report"/*.gcov
}

if [ "$mode" = --examples ]; then
  exs=$(ls examples/*.c | sed "s|^examples/|$B/examples/|; s|\.c\$||")
  make --no-print-directory -j"$jobs" BUILD=$B OPT="-O0 --coverage" $B/libwsmux.a $exs
  # Not the TSan stress test: it compiles lib/ again, with these flags.
  rc=0
  for t in e2e integrations-pytest adapter-tests; do
    make --no-print-directory BUILD=$B OPT="-O0 --coverage" "$t" >"$B/$t.log" 2>&1 ||
      { echo "coverage: $t failed (log: $B/$t.log)"; rc=1; }
  done
  for g in $B/examples/*.gcda $B/tests/test_adapter_*.gcda; do
    [ -e "$g" ] || continue
    src=$(basename "$g" .gcda); src=${src#*-}
    case "$src" in test_adapter_*) src=tests/integrations/$src.c ;; *) src=examples/$src.c ;; esac
    annotate "$src" "$g"
  done
  summarise '^examples/'
  exit $rc
fi

min=${COVERAGE_MIN:-98.5}
units=$(ls tests/unit/test_*.c | sed "s|^tests/unit/|$B/tests/|; s|\.c\$||")
conf=$B/conformance/test_conformance_mem
make --no-print-directory -j"$jobs" BUILD=$B OPT="-O0 --coverage" \
  $B/libwsmux.a $units $conf
UNIT_JOBS=$jobs scripts/run-unit.sh $units
# Both this binary and the unit tests build a mem_transport.c: gcov warns
# about their counts' file; only lib/'s counts are read here.
"$conf" >$B/conformance.log 2>&1 || { tail -n 30 $B/conformance.log; exit 1; }
for src in lib/*.c; do annotate "$src" "$B/obj/${src%.c}.gcda"; done
summarise '^lib/[a-z0-9_]+\.c$' | tee "$report/summary.txt"
awk -v min="$min" '/^total / { t = $2 + 0 }
  END { printf "coverage: lib/ lines %.2f%% (minimum %s%%)\n", t, min; exit t < min }' \
  "$report/summary.txt"
