#!/bin/sh
# Static analysis (`make lint`, a CI step of its own): gcc -fanalyzer,
# clang-tidy and cppcheck over the library (lib/, include/wsmux.h) and the
# examples (examples/*.c and the adapters they include). Any finding fails.
# clang-tidy's clang-analyzer-* checks are clang's static analyzer (what
# scan-build runs), so it is not run a second time on its own.
# Checks left out, and why: .clang-tidy, examples/.clang-tidy. A single
# false positive is suppressed where it is (NOLINT, cppcheck-suppress),
# with its reason.
# Environment (tests/lint/tier.mk sets them from the Makefile):
#   LINT_CFLAGS   the library's compile flags     LINT_EXFLAGS  the examples'
#   LINT_OUT      directory for the logs          LINT_JOBS     analysers at once
set -u
if [ "${1:-}" = --one ]; then
  # One analyser on one file, run by xargs below; its log in $LINT_OUT.
  tool=$2 f=$3
  case "$f" in examples/*) flags=$LINT_EXFLAGS ;; *) flags=$LINT_CFLAGS ;; esac
  log=$LINT_OUT/$tool-$(echo "$f" | tr / _).log
  # shellcheck disable=SC2086 # $flags: a list of flags, split on purpose
  case "$tool" in
    # -Werror is in the flags: a finding fails the compile.
    gcc) gcc $flags -fanalyzer -c "$f" -o /dev/null >"$log" 2>&1 ;;
    # WarningsAsErrors in .clang-tidy: a finding fails it.
    tidy) clang-tidy --quiet "$f" -- $flags >"$log" 2>&1 ;;
    cppcheck)
      # A directory: every file in it, headers through their includes.
      # --force: every #if configuration, not only the first twelve.
      # The examples are Linux programs (_GNU_SOURCE), one of them on OpenSSL.
      set -- --library=posix -Iinclude -Ilib
      [ "$f" = examples ] &&
        set -- --library=posix,gnu,openssl -D_GNU_SOURCE -Iinclude -Iexamples
      cppcheck --quiet --std=c11 --enable=warning,performance,portability \
        --inconclusive --force --inline-suppr --error-exitcode=1 "$@" \
        --template='{file}:{line}: {severity}:{inconclusive:inconclusive:} {message} [{id}]' \
        "$f" >"$log" 2>&1 ;;
  esac
  rc=$?
  [ $rc -eq 0 ] || { echo "lint: $tool $f"; cat "$log"; }
  exit $rc
fi

cd "$(dirname "$0")/.." || exit 1
scripts/deps.sh lint || exit 1
: "${LINT_CFLAGS:?set by make lint}" "${LINT_EXFLAGS:?set by make lint}"
LINT_OUT=${LINT_OUT:-build/lint}
export LINT_CFLAGS LINT_EXFLAGS LINT_OUT
rm -rf "$LINT_OUT" && mkdir -p "$LINT_OUT" || exit 1
start=$(date +%s)
# clang-tidy first, handshake.c (the slowest) at the head: the long runs
# start early and the short ones fill in around them.
files=lib/handshake.c
for f in lib/*.c examples/*.c; do
  [ "$f" = lib/handshake.c ] || files="$files $f"
done
{
  for f in $files; do echo "tidy $f"; done
  for f in $files; do echo "gcc $f"; done
  echo "cppcheck lib"
  echo "cppcheck examples"
} | xargs -P "${LINT_JOBS:-2}" -L 1 sh scripts/lint.sh --one
rc=$?
n=$(find "$LINT_OUT" -name '*.log' | wc -l)
if [ $rc -ne 0 ]; then
  echo "lint: FAILED ($n runs, $(( $(date +%s) - start )) s; logs in $LINT_OUT)"
  exit 1
fi
echo "lint: $n runs (gcc -fanalyzer, clang-tidy $(clang-tidy --version |
  sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n 1), $(cppcheck --version)), no findings, $(( $(date +%s) - start )) s"
