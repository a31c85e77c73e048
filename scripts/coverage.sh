#!/bin/sh
# Line and branch coverage of lib/ by the unit suite and the in-memory
# conformance suite (gcov, which comes with gcc). Prints one line per
# source file, every line never run, and the total; fails when the total
# line coverage is below COVERAGE_MIN percent (default 98.5), so that code
# added without tests shows up in CI.
# Usage: scripts/coverage.sh   (make coverage; outputs under build/cov)
# Lines never run that are out-of-memory paths are expected: the failmalloc
# test covers most of them, some need two failures in a row.
set -eu
cd "$(dirname "$0")/.."
B=build/cov
min=${COVERAGE_MIN:-98.5}
jobs=$(nproc 2>/dev/null || echo 2)
units=$(ls tests/unit/test_*.c | sed "s|^tests/unit/|$B/tests/|; s|\.c\$||")
conf=$B/conformance/test_conformance_mem

# Counts accumulate across runs: start from none.
find "$B" -name '*.gcda' -delete 2>/dev/null || true
make --no-print-directory -j"$jobs" BUILD=$B OPT="-O0 --coverage" \
  $B/libwsmux.a $units $conf
UNIT_JOBS=$jobs scripts/run-unit.sh $units
# Both this binary and the unit tests build a mem_transport.c: gcov warns
# about their counts' file; only lib/'s counts are read here.
"$conf" >$B/conformance.log 2>&1 || { tail -n 30 $B/conformance.log; exit 1; }

report=$B/gcov
rm -rf "$report" && mkdir -p "$report"
# gcov finds the sources by the relative paths compiled in: run from here.
# -n: the summary only; -t: the annotated source on stdout.
for src in lib/*.c; do
  obj=$B/obj/${src%.c}.o
  f=$report/$(basename "$src")
  gcov -b -n -o "$obj" "$src" >"$f.txt" 2>&1 || true
  gcov -t -o "$obj" "$src" >"$f.gcov" 2>/dev/null || true
done
# gcov's summary for each file: "File 'lib/x.c'" then "Lines executed:P% of N"
# and "Taken at least once:P% of N".
awk -v min="$min" '
  FNR == 1 { file = "" }
  /^File / { file = ""; if ($2 ~ /lib\/[a-z0-9_]+\.c.$/) { file = $2; gsub(/.*lib\/|\x27/, "", file) } }
  file != "" && /^Lines executed:/ {
    split($2, a, ":"); pct = a[2] + 0; n = $4 + 0
    run += pct * n / 100; total += n; lp[file] = pct; ln[file] = n }
  file != "" && /^Taken at least once:/ { split($4, a, ":"); bp[file] = $4; file = "" }
  END {
    printf "%-16s %8s %7s %10s\n", "file", "lines", "of", "branches"
    for (f in lp) printf "%-16s %7.2f%% %7d %10s\n", f, lp[f], ln[f], bp[f] | "sort"
    close("sort")
    t = total ? 100 * run / total : 0
    printf "coverage: lib/ lines %.2f%% of %d (minimum %s%%)\n", t, total, min
    exit t < min
  }' "$report"/*.txt || { echo "coverage: below ${min}%"; rc=1; }
echo "lines never run (#####), out-of-memory paths included:"
# Each annotated file holds its .c then the headers it includes, each part
# opening with "-: 0:Source:<path>"; headers are reported once, from any.
awk -F: '
  $2 + 0 == 0 && $3 == "Source" { src = $4; next }
  $1 ~ /#####/ { k = src ":" ($2 + 0); if (!(k in seen)) { seen[k]; print k ":" $0 } }
' "$report"/*.c.gcov | sed 's/: *#####: *[0-9]*:/: /'
exit "${rc:-0}"
