#!/bin/sh
# Installs what a fresh Debian 12 machine lacks for libwsmux, and nothing
# that is already there. Usage: scripts/deps.sh [run|test|bench|lint|m32]
#   run    build the library and run the examples
#   test   everything the test suite needs (default)
#   bench  the benchmark harness and its reference servers
#   lint   the static analysers of make lint, and the headers the examples
#          include
#   m32    make m32: gcc-multilib, and the i386 libraries unpacked under
#          M32_ROOT (default /opt/wsmux-i386)
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
# m32: the amd64 side (headers, gcc's 32-bit libc) is installed; the i386
# libraries are only unpacked: libwslay-dev is not Multi-Arch (its i386
# package would remove the amd64 one), and an installed i386 library must
# have the very version of its amd64 twin, which a mirror still syncing
# one architecture's security updates does not always have. The rest of
# the list is what libcriterion3 needs.
m32_pkgs="$build_pkgs libcriterion-dev gcc-multilib"
m32_i386="libcjson1 libcjson-dev libwslay1 libcriterion3 libcriterion-dev \
libffi8 libgit2-1.5 libnanomsg5 libhttp-parser2.9 libmbedcrypto7 \
libmbedtls14 libmbedx509-1 libpcre2-8-0 libssh2-1 libssl3 libgssapi-krb5-2 \
libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 zlib1g"

case "$profile" in
  run) pkgs=$build_pkgs ;;
  test) pkgs=$test_pkgs ;;
  bench) pkgs=$bench_pkgs ;;
  lint) pkgs=$lint_pkgs ;;
  m32) pkgs=$m32_pkgs ;;
  *) echo "usage: $0 [run|test|bench|lint|m32]" >&2; exit 2 ;;
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

# A kernel built without IA32 emulation (this project's CI-like VMs) cannot
# run an i386 program: qemu-user then runs them, registered with
# binfmt_misc with flag F so that the programs' own re-executions
# (Criterion runs each test in a re-executed child) go through it too.
m32_exec() {
  probe=$(mktemp -d)
  printf 'int main(void) { return 0; }\n' >"$probe/t.c"
  rc=0
  if gcc -m32 "$probe/t.c" -o "$probe/t" && ! "$probe/t" 2>/dev/null; then
    m32_qemu && "$probe/t" || rc=1
  fi
  rm -rf "$probe"
  [ "$rc" -eq 0 ] || { echo "deps: i386 programs do not run here" >&2; exit 1; }
}
m32_qemu() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: this kernel cannot run i386 programs; as root, run" >&2
    echo "  scripts/deps.sh m32" >&2
    return 1
  fi
  echo "deps: no IA32 emulation in this kernel: i386 programs under qemu-user"
  dpkg-query -W -f='${Status}' qemu-user-static 2>/dev/null |
    grep -q "install ok installed" ||
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends qemu-user-static >/dev/null || return 1
  bf=/proc/sys/fs/binfmt_misc
  [ -e $bf/register ] || mount -t binfmt_misc binfmt_misc $bf || return 1
  # The ELF header of an i386 executable (the kernel reads the \x escapes).
  [ -e $bf/qemu-i386 ] || printf '%s\n' ':qemu-i386:M::\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00:\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-i386-static:F' >$bf/register
}

# The i386 libraries of make m32, unpacked once (.packages says which).
if [ "$profile" = m32 ]; then
  root=${M32_ROOT:-/opt/wsmux-i386}
  if [ "$(cat "$root/.packages" 2>/dev/null)" != "$m32_i386" ]; then
    echo "deps: unpacking i386 libraries into $root"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # i386 for these two commands only: dpkg --add-architecture would stay,
    # and every later apt-get update would fail while a mirror syncs i386.
    # An index that failed fails the download if it holds one of these.
    arch="-o APT::Architectures::=$(dpkg --print-architecture)
          -o APT::Architectures::=i386 -o APT::Sandbox::User=root"
    $sudo apt-get $arch update -qq >/dev/null 2>&1 ||
      echo "deps: apt-get update failed in part; going on"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get $arch download -qq $(printf '%s:i386 ' $m32_i386))
    $sudo mkdir -p "$root"
    for d in "$tmp"/*.deb; do $sudo dpkg -x "$d" "$root"; done
    echo "$m32_i386" | $sudo tee "$root/.packages" >/dev/null
    rm -rf "$tmp"
  fi
  m32_exec
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
