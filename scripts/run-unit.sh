#!/bin/sh
# Runs the unit test binaries given as arguments and prints one summary line
# "N passed, N failed" over all of them (from Criterion's own counts).
# VALGRIND=1 runs each under valgrind memcheck (zero errors, zero leaks).
# UNIT_JOBS=N runs N binaries at once (default 1); the per-binary lines still
# come out in argument order.
# A binary that hangs is stopped (timeout(1): Criterion 2.4's --timeout
# did not stop a test spinning in a loop) and fails instead of holding CI.
set -u
# Criterion runs each test in a child and judges it by its assertions and
# signals alone: a child that leaks (LeakSanitizer at exit) or whose
# memcheck found errors still passes, with the report in its output, and
# neither valgrind's --error-exitcode nor LSan's exit code reaches the
# runner's status. So the output is read: any such report fails the binary.
VG_MARK=WSMUX-VALGRIND-ERROR
REPORT_RE="$VG_MARK|$(cat "$(dirname "$0")/../tests/support/sanitizer.re")"
if [ "${1:-}" = --one ]; then
  # One binary, run by xargs below: number $3 of the list in directory $2
  # (its path in $3.path; paths go through files, not xargs, so that any
  # byte in them is safe), its output in $3.log, its status in $3.rc.
  out=$2/$3
  t=$(cat "$out.path")
  if [ "${VALGRIND:-0}" = 1 ]; then
    # Criterion runs each test in a re-executed child; under valgrind its
    # own --jobs gains little (the runner's fork is slow there), so the
    # parallelism is across binaries (UNIT_JOBS) instead.
    # --read-inline-info=no: every child pays valgrind's start-up, and
    # reading the inlined-call tables of libc's debug info is a fifth of
    # it; errors are found the same, a report only names the function an
    # inlined call sits in instead of the inlined one.
    timeout 1800 valgrind -q --trace-children=yes --error-exitcode=99 \
      --read-inline-info=no --leak-check=full \
      --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
      --error-markers="$VG_MARK",VG-END "$t" --jobs 1 >"$out.log" 2>&1
  else
    timeout 300 "$t" >"$out.log" 2>&1
  fi
  echo $? >"$out.rc"
  exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Binaries with the most tests start first, so that a long one does not
# start last and run alone.
i=0
for t in "$@"; do
  i=$((i + 1))
  printf '%s\n' "$t" >"$dir/$i.path"
  echo "$(timeout 30 "$t" --list 2>/dev/null | grep -c -- '── ') $i"
done | sort -rn | cut -d' ' -f2 | xargs -P "${UNIT_JOBS:-1}" -I{} "$0" --one "$dir" {}
passed=0; failed=0; status=0; i=0
for t in "$@"; do
  i=$((i + 1)); log=$dir/$i.log
  rc=$(cat "$dir/$i.rc" 2>/dev/null || echo 1)
  line=$(grep -a "Synthesis:" "$log" | tail -n 1)
  p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  p=${p:-0}; f=${f:-0}; c=${c:-0}
  reports=$(grep -acE "$REPORT_RE" "$log")
  if [ "$rc" -ne 0 ] || [ -z "$line" ] || [ "$reports" -ne 0 ]; then
    [ "$f" -eq 0 ] && [ "$c" -eq 0 ] && f=1
    status=1
    echo "FAIL $(basename "$t") (exit $rc, $reports sanitizer/valgrind reports)"
    cat "$log"
  else
    echo "ok   $(basename "$t"): $p passed"
  fi
  passed=$((passed + p)); failed=$((failed + f + c))
done
echo "unit: $passed passed, $failed failed"
exit $status
