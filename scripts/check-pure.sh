#!/bin/sh
# check-pure.sh LIB.a: the core's promise (include/wsmux.h: no I/O, no
# threads, no clock reads, no global state) checked on the objects, not
# taken on trust. Two rules:
#   - no writable static data: .data and .bss are empty in every object
#     (tables are const; .data.rel.ro holds const pointer tables);
#   - the only functions called outside the library, wslay and cJSON are
#     the ones listed below: memory and string functions, formatting into
#     a buffer, getauxval (AT_RANDOM, the hash key's seed) and the mutex
#     of the ws_post queue. A read, write, clock_gettime, printf or
#     pthread_create appearing here fails the check.
# Run on a plain build: sanitizer and coverage builds add calls of their own.
set -eu
lib=${1:?usage: check-pure.sh LIB.a}

allowed='^(malloc|calloc|realloc|free|mem(chr|cmp|cpy|move|set)|str(chr|cmp|len|ncmp|nlen|rchr)|v?snprintf|getauxval|pthread_mutex_(init|destroy|lock|unlock)|__stack_chk_fail|__(memcpy|memmove|memset|v?snprintf)_chk)$'

writable=$(size -A "$lib" | awk '$1 == ".data" || $1 == ".bss" { if ($2 > 0) print $1 " " $2 }')
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
