#!/bin/sh
# check-pure.sh LIB.a: the core's promise (include/wsmux.h: no I/O, no
# threads, no clock reads, no global state) checked on the objects, not
# taken on trust. Two rules:
#   - no writable static data: every .data*, .bss*, .sdata*, .sbss*,
#     .tdata* and .tbss* section is empty in every object, and no object
#     has a common symbol (tables are const; .data.rel.ro holds const
#     pointer tables). By prefix, not by name: under -fPIC a pointer
#     table written at run time is in .data.rel.local, under
#     -fdata-sections a counter in .bss.NAME;
#   - the only functions called outside the library, wslay and cJSON are
#     the ones listed below: memory and string functions (bcmp: clang's
#     memcmp(...) == 0 at -O1 and above), formatting into a buffer,
#     getauxval (AT_RANDOM, the hash key's seed), the mutex of the
#     ws_post queue, and what the toolchain adds (the stack protector,
#     the _chk forms of _FORTIFY_SOURCE, i386 PIC's GOT). A read, write,
#     clock_gettime, printf or pthread_create appearing here fails the
#     check. tests/install/check-pure-test.sh shows both rules at work.
# Run on a plain build: sanitizer and coverage builds add calls of their own.
set -eu
lib=${1:?usage: check-pure.sh LIB.a}

allowed='^(malloc|calloc|realloc|free|bcmp|mem(chr|cmp|cpy|move|set)|str(chr|cmp|len|ncmp|nlen|rchr)|v?snprintf|getauxval|pthread_mutex_(init|destroy|lock|unlock)|__stack_chk_fail(_local)?|__(memcpy|memmove|memset|v?snprintf)_chk|_GLOBAL_OFFSET_TABLE_)$'

writable=$(
  size -A "$lib" | awk '$1 ~ /^\.(s?data|s?bss|tdata|tbss)(\.|$)/ &&
    $1 !~ /^\.data\.rel\.ro(\.|$)/ && $2 > 0 { print $1 " " $2 }'
  nm -P "$lib" | awk '$2 == "C" { print "common " $1 }')
if [ -n "$writable" ]; then
  echo "check-pure: writable static data in $lib:"
  echo "$writable"
  exit 1
fi

calls=$(nm -u "$lib" | awk 'NF == 2 {print $2}' | sort -u |
  grep -v -E '^(ws_|ws__|wslay_|cJSON_)' | grep -v -E "$allowed" || true)
if [ -n "$calls" ]; then
  echo "check-pure: $lib calls outside the allowed set:"
  echo "$calls"
  exit 1
fi
echo "check-pure: no writable static data; calls only memory, string," \
  "formatting, getauxval and mutex functions"
