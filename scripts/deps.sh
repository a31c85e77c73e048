#!/bin/sh
# Installs what a fresh Debian 12 machine lacks for libwsmux, and nothing
# that is already there. Usage: scripts/deps.sh [run|test|bench|lint]
#   run    build the library and run the examples
#   test   everything the test suite needs (default)
#   bench  the benchmark harness and its reference servers
#   lint   the static analysers of make lint, and the headers the examples
#          include
set -eu
profile=${1:-test}
cd "$(dirname "$0")/.."

# libc6-dev: only a Recommends of gcc, and installs here skip those.
build_pkgs="gcc libc6-dev make pkg-config libwslay-dev libcjson-dev uthash-dev"
test_pkgs="$build_pkgs g++ clang libclang-rt-14-dev valgrind libcriterion-dev \
python3 python3-websockets python3-pytest python3-pytest-xdist \
nodejs npm chromium chromium-driver \
libuv1-dev libevent-dev libmicrohttpd-dev libssl-dev openssl curl procps"
bench_pkgs="$build_pkgs libwebsockets-dev procps"
lint_pkgs="$build_pkgs clang-tidy cppcheck \
libuv1-dev libevent-dev libmicrohttpd-dev libssl-dev"

case "$profile" in
  run) pkgs=$build_pkgs ;;
  test) pkgs=$test_pkgs ;;
  bench) pkgs=$bench_pkgs ;;
  lint) pkgs=$lint_pkgs ;;
  *) echo "usage: $0 [run|test|bench|lint]" >&2; exit 2 ;;
esac

# A machine with node and npm already on PATH (e.g. from nodesource) keeps
# them: Debian's npm package would conflict with that nodejs.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  pkgs=$(echo "$pkgs" | tr ' ' '\n' | grep -v -x -e nodejs -e npm | tr '\n' ' ')
fi

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing$missing (apt-get; minutes on a fresh machine)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "deps: not root and no sudo: as root, run" >&2
      echo "  apt-get update && apt-get install --no-install-recommends$missing" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  # env after sudo: sudo drops the caller's environment
  $sudo env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes \
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# npm packages for the end-to-end tests, pinned by the lockfile.
if [ "$profile" = test ] && [ -f tests/e2e/node/package-lock.json ]; then
  if [ ! -d tests/e2e/node/node_modules ] || \
     [ tests/e2e/node/package-lock.json -nt tests/e2e/node/node_modules ]; then
    echo "deps: npm ci (tests/e2e/node)"
    (cd tests/e2e/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
exit 0
