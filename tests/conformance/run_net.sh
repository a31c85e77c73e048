#!/bin/sh
# Starts the ping/pong server on a free loopback port, runs conformance_net
# against it, stops the server (by its pid) and exits with the client's
# status. Usage: run_net.sh PINGPONG_BIN CONFORMANCE_NET_BIN [client args]
set -u
server=$1; client=$2; shift 2
log=$(mktemp); pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -f "$log"' EXIT INT TERM

# A port the kernel just handed out and released; retried if taken since
# (the server says so and exits).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

for attempt in 1 2 3 4 5; do
  port=$(free_port)
  : >"$log"
  "$server" --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
  pid=$!
  i=0
  while [ $i -lt 100 ]; do           # up to 5 s for "listening"
    grep -q listening "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05; i=$((i + 1))
  done
  grep -q listening "$log" && break
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=
  # Retried only for a port taken in between: a crash, a hang or any
  # other error at start fails the tier.
  grep -qi "address already in use" "$log" || break
done
if [ -z "$pid" ]; then
  echo "conformance[net]: could not start $server"; cat "$log"
  echo "conformance[net]: 0 passed, 1 failed"; exit 1
fi

# Bounded: a hang fails the tier (124) instead of holding CI.
timeout -k 5 600 "$client" --port "$port" --quiet "$@"
rc=$?
[ $rc -eq 124 ] && echo "conformance[net]: the client hung (600 s)"
# pingpong stops cleanly on SIGTERM (exit 0) and logs nothing (it prints
# the library's warnings and errors as "wsmux: ..."); anything else (a
# sanitizer report, a crash, a library error, not stopping within 10 s)
# fails the tier.
kill "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
  echo "conformance[net]: the server did not stop on SIGTERM within 10 s"
  kill -9 "$pid" 2>/dev/null
fi
wait "$pid"; src=$?; pid=
if [ $src -ne 0 ] || grep -q "wsmux:\|ERROR\|runtime error" "$log"; then
  echo "server exited with status $src; its log:"; head -n 40 "$log"
  echo "conformance[net]: the server's exit or log fails the tier"
  rc=1
fi
exit $rc
