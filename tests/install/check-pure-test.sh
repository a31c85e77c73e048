#!/bin/sh
# check-pure-test.sh [CC]: scripts/check-pure.sh against small archives
# whose answer is known, built as the library is (-fPIC): what compilers
# emit for pure code passes, and writable data in any section (or as a
# common symbol) fails, as a call to I/O does.
set -eu
cc=${1:-${CC:-cc}}
here=$(cd "$(dirname "$0")/../.." && pwd)
check=$here/scripts/check-pure.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# expect pass|fail NAME CFLAGS SOURCE
expect() {
  want=$1 name=$2 flags=$3
  printf '%s\n' "$4" >"$tmp/$name.c"
  # shellcheck disable=SC2086 # flags are words
  $cc -O2 -fPIC $flags -c "$tmp/$name.c" -o "$tmp/$name.o"
  ar rc "$tmp/lib$name.a" "$tmp/$name.o"
  if "$check" "$tmp/lib$name.a" >"$tmp/$name.out" 2>&1; then got=pass
  else got=fail; fi
  if [ "$got" != "$want" ]; then
    echo "check-pure-test: $name: $got, expected $want"
    cat "$tmp/$name.out"
    fails=$((fails + 1))
  fi
}

# clang turns memcmp(...) == 0 into bcmp at -O1 and above.
expect pass bcmp "" '#include <strings.h>
int eq(const void *a, const void *b, unsigned long n) {
  return bcmp(a, b, n) == 0; }'
expect pass const_table "" 'static const char *const t[] = {"a", "b"};
const char *pick(int i) { return t[i]; }'
expect fail puts "" '#include <stdio.h>
void hello(void) { puts("hi"); }'
expect fail bss "" 'static int n; int bump(void) { return ++n; }'
# A pointer table written at run time: .data.rel.local under -fPIC.
expect fail pointer_table "" 'static const char *t[] = {"a", "b"};
void set(int i, const char *v) { t[i] = v; }
const char *get(int i) { return t[i]; }'
expect fail data_sections "-fdata-sections" \
  'static int n; int bump(void) { return ++n; }'
expect fail common "-fcommon" 'int counter;'
expect fail thread_local "-ftls-model=local-exec" \
  'static _Thread_local int n; int bump(void) { return ++n; }'
# i386 PIC: the GOT symbol, and the stack protector's local entry.
if echo 'int x;' | $cc -m32 -x c -c -o /dev/null - 2>/dev/null; then
  expect pass i386_pic "-m32 -fstack-protector-all" '#include <string.h>
void z(char *p, unsigned long n) { char b[64]; memset(b, 0, sizeof b);
  memcpy(p, b, n < 64 ? n : 64); }'
fi

[ "$fails" = 0 ] || exit 1
echo "check-pure-test: passed"
