#!/bin/sh
# Writes each ```c block that follows a "<!-- readme-test: NAME -->" line of
# README.md to DIR/NAME.c, so the README's code is compiled as a test.
set -eu
out=$1
mkdir -p "$out"
rm -f "$out"/*.c # a block no longer in README.md must not be tested from a past run
awk -v out="$out" '
  /^<!-- readme-test: [a-z0-9_-]+ -->$/ { name = $3; next }
  name != "" && /^```c$/ { file = out "/" name ".c"; printf "" > file; inblk = 1; next }
  inblk && /^```$/ { inblk = 0; close(file); name = ""; next }
  inblk { print >> file }
' README.md
