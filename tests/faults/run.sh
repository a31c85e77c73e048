#!/bin/sh
# Runs the fault tier: run.sh BUILD_DIR TIMEOUT_SECONDS [test ...]
# Each socket test is one fault_client run (one PASS/FAIL line); the
# in-process session test counts its Criterion tests. Prints
# "faults: N passed, N failed" and exits non-zero on any failure.
set -u
dir=$1; limit=$2; shift 2
tests=${*:-"session slow churn slowloris cap pipeline pingflood"}
passed=0; failed=0
for t in $tests; do
  log=$(mktemp)
  start=$(date +%s)
  if [ "$t" = session ]; then
    timeout -k 5 "$limit" "$dir/test_session_faults" --jobs 2 >"$log" 2>&1
    rc=$?
    # A Criterion child's leak report (LSan at its exit) does not fail it.
    [ "$rc" -eq 0 ] && grep -qaEf "$(dirname "$0")/../support/sanitizer.re" "$log" && rc=99
    line=$(grep -a "Synthesis:" "$log" | tail -n 1)
    p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
    f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
    c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
    p=${p:-0}; f=${f:-0}; c=${c:-0}
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && [ "$c" -eq 0 ] && f=1
    if [ "$rc" -eq 0 ]; then
      echo "PASS session: $p Criterion tests ($(grep -a '^session' "$log" | tr '\n' ' '))"
    else
      echo "FAIL session (exit $rc)"; cat "$log"
    fi
    passed=$((passed + p)); failed=$((failed + f + c))
  else
    timeout -k 5 "$limit" "$dir/fault_client" "$dir/fault_server" "$t" >"$log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      [ "$rc" -eq 124 ] && echo "FAIL $t: timed out after $limit s"
    fi
    cat "$log"
  fi
  echo "  ($t: $(( $(date +%s) - start )) s)"
  rm -f "$log"
done
echo "faults: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
