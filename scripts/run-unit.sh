#!/bin/sh
# Runs the unit test binaries given as arguments and prints one summary line
# "N passed, N failed" over all of them (from Criterion's own counts).
# VALGRIND=1 runs each under valgrind memcheck (zero errors, zero leaks).
# A binary that hangs is stopped (timeout(1): Criterion 2.4's --timeout
# did not stop a test spinning in a loop) and fails instead of holding CI.
set -u
passed=0; failed=0; status=0
for t in "$@"; do
  log=$(mktemp)
  if [ "${VALGRIND:-0}" = 1 ]; then
    timeout 1800 valgrind -q --trace-children=yes --error-exitcode=99 --leak-check=full \
      --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
      "$t" --jobs 2 >"$log" 2>&1
  else
    timeout 300 "$t" >"$log" 2>&1
  fi
  rc=$?
  line=$(grep -a "Synthesis:" "$log" | tail -n 1)
  p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  p=${p:-0}; f=${f:-0}; c=${c:-0}
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    [ "$f" -eq 0 ] && [ "$c" -eq 0 ] && f=1
    status=1
    echo "FAIL $(basename "$t") (exit $rc)"
    cat "$log"
  else
    echo "ok   $(basename "$t"): $p passed"
  fi
  passed=$((passed + p)); failed=$((failed + f + c))
  rm -f "$log"
done
echo "unit: $passed passed, $failed failed"
exit $status
