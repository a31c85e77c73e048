#!/usr/bin/env bash
# bench/run.sh - run the loadgen against a set of servers, several rounds,
# servers interleaved, and print medians and ratios against the raw ceiling.
#
# usage: bench/run.sh [options]
#   --smoke | --quick     ~10 s correctness smoke: tiny scales, 1 round
#   --rounds N            rounds (default 3; every server once per round)
#   --duration S          measurement window per test in seconds (default 3)
#   --server NAME=CMD     add a server (repeatable; replaces the default set).
#                         CMD gets "--port P" appended, or has {PORT} replaced.
#   --servers a,b,...     pick from the default set: raw, lws, wsmux
#   --tests LIST          comma-separated subset of test ids (see --list)
#   --list                print the test ids and exit
#   --out DIR             where logs and results.tsv go
#                         (default build/bench/results/<timestamp>)
#   --no-build            do not run `make -C bench` first
#
# Default servers (paths relative to the repo root):
#   raw   build/bench/raw_epoll         (the ceiling; ratios are against it)
#   lws   build/bench/lws_server
#   wsmux build/examples/pingpong_epoll (only if it exists; the ping/pong
#         server on the epoll adapter: poll(2) is capped at 4096 sockets)
#
# Exit status: 0 when every test passed the loadgen's byte-exact checks and
# no server died, 1 otherwise. The last line is "bench: N passed, N failed".
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOADGEN=$ROOT/build/bench/loadgen

SMOKE=0
ROUNDS=
DURATION=
OUT=
BUILD=1
PICK=
TESTS_FILTER=
LIST=0
declare -a SRV_NAMES=() SRV_CMDS=()

die() { echo "run.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke|--quick) SMOKE=1 ;;
    --rounds) ROUNDS=${2:?}; shift ;;
    --duration) DURATION=${2:?}; shift ;;
    --server)
      spec=${2:?}; shift
      [[ $spec == *=* ]] || die "--server wants NAME=CMD"
      SRV_NAMES+=("${spec%%=*}"); SRV_CMDS+=("${spec#*=}") ;;
    --servers) PICK=${2:?}; shift ;;
    --tests) TESTS_FILTER=${2:?}; shift ;;
    --list) LIST=1 ;;
    --out) OUT=${2:?}; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
  shift
done

# ---------------------------------------------------------------- tests
# id mode conns extra-loadgen-args
if [ "$SMOKE" = 1 ]; then
  : "${ROUNDS:=1}" "${DURATION:=0.4}"
  HOLD=0.3
  PAUSE=0.1
  TESTS=(
    "idle_c200        idle     200"
    "rtt_c1           rtt      1"
    "rtt_c20          rtt      20"
    "pipeline_c10_k4  pipeline 10   --depth 4"
    "fanout_c50_b64   fanout   50   --size 64"
    "fanout_c50_b1k   fanout   50   --size 1024"
  )
else
  : "${ROUNDS:=3}" "${DURATION:=3}"
  HOLD=2
  PAUSE=0.3 # between tests (then settle: the server has closed the last batch)
  TESTS=(
    "idle_c10000         idle     10000"
    "rtt_c1              rtt      1"
    "rtt_c50             rtt      50"
    "rtt_c500            rtt      500"
    "pipeline_c50_k16    pipeline 50    --depth 16"
    "fanout_c1000_b64    fanout   1000  --size 64"
    "fanout_c1000_b1k    fanout   1000  --size 1024"
    "fanout_c10000_b64   fanout   10000 --size 64"
    "fanout_c10000_b1k   fanout   10000 --size 1024"
  )
fi
# Run only when named with --tests: memory per connection near the most
# the file-descriptor limit allows here (20,000 per process), to show the
# idle figure flat from 10,000 up.
EXTRA_TESTS=(
  "idle_c19000         idle     19000"
)
if [ -n "$TESTS_FILTER" ]; then
  declare -a keep=()
  for t in "${TESTS[@]}" "${EXTRA_TESTS[@]}"; do
    id=${t%% *}
    [[ ",$TESTS_FILTER," == *",$id,"* ]] && keep+=("$t")
  done
  [ ${#keep[@]} -gt 0 ] || die "--tests matched nothing (try --list)"
  TESTS=("${keep[@]}")
fi
if [ "$LIST" = 1 ]; then
  for t in "${TESTS[@]}"; do echo "$t"; done
  [ -n "$TESTS_FILTER" ] || for t in "${EXTRA_TESTS[@]}"; do
    echo "$t    (only with --tests)"
  done
  exit 0
fi

# ---------------------------------------------------------------- servers
if [ ${#SRV_NAMES[@]} -eq 0 ]; then
  declare -A DEF=(
    [raw]="$ROOT/build/bench/raw_epoll"
    [lws]="$ROOT/build/bench/lws_server"
    [wsmux]="$ROOT/build/examples/pingpong_epoll"
  )
  for n in ${PICK//,/ }; do [ -n "${DEF[$n]:-}" ] || die "unknown server $n (raw, lws, wsmux)"; done
  for n in raw lws wsmux; do
    if [ -n "$PICK" ] && [[ ",$PICK," != *",$n,"* ]]; then continue; fi
    if [ "$n" = wsmux ] && [ ! -x "${DEF[$n]}" ] && [ -z "$PICK" ]; then
      echo "run.sh: ${DEF[$n]} not built, skipping wsmux" >&2
      continue
    fi
    SRV_NAMES+=("$n"); SRV_CMDS+=("${DEF[$n]}")
  done
fi

if [ "$BUILD" = 1 ]; then
  make -s -C "$ROOT/bench" >&2 || die "make -C bench failed"
fi
[ -x "$LOADGEN" ] || die "$LOADGEN missing (make -C bench)"
for i in "${!SRV_NAMES[@]}"; do
  read -ra argv <<<"${SRV_CMDS[$i]}"
  [ -x "${argv[0]}" ] || command -v "${argv[0]}" >/dev/null ||
    die "server ${SRV_NAMES[$i]}: ${argv[0]} not found/executable"
done

: "${OUT:=$ROOT/build/bench/results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT" || die "cannot create $OUT"
RESULTS=$OUT/results.tsv
: >"$RESULTS"

# ---------------------------------------------------------------- helpers
CLK_TCK=$(getconf CLK_TCK)

cpu_us() { # utime+stime of pid in microseconds
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -1; return; }
  s=${s##*) } # drop "pid (comm) "
  read -ra f <<<"$s"
  # f[0] is field 3 (state); utime is field 14, stime 15
  echo $(((f[11] + f[12]) * 1000000 / CLK_TCK))
}

busy_us() { # machine-wide busy time (all CPUs, idle and iowait excluded) in us
  local l
  read -ra l </proc/stat # cpu user nice system idle iowait irq softirq steal
  echo $(((l[1] + l[2] + l[3] + l[6] + l[7] + l[8]) * 1000000 / CLK_TCK))
}

sched_us() { # CPU time of pid's live threads in microseconds (schedstat: ns), -1 if gone
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1; n++ } END { print n ? int(s / 1000) : -1 }'
}

# Waits until the server is idle (under 2 ms of CPU in 100 ms; at most 10 s):
# a test's connections close when its loadgen exits, and a server still
# closing them would charge that to the next test's window (lws takes about
# 0.3 s of CPU to close 10,000, past PAUSE). Says so on stderr if it never is.
settle() {
  local i c0 c1
  for i in $(seq 1 100); do
    c0=$(sched_us "$SERVER_PID")
    sleep 0.1
    c1=$(sched_us "$SERVER_PID")
    { [ "$c0" -lt 0 ] || [ "$c1" -lt 0 ]; } && return 0
    [ $((c1 - c0)) -lt 2000 ] && return 0
  done
  echo "run.sh: server still busy after 10 s, going on" >&2
}

rss_kib() {
  awk '/^VmRSS:/ {print $2; f=1} END {if (!f) print -1}' "/proc/$1/status" 2>/dev/null || echo -1
}

port_listening() { # is anything listening on 127.0.0.1/0.0.0.0 port $1 (IPv4 or IPv6)?
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {f=1} END {exit !f}' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

free_port() {
  local p tries=0
  while [ $tries -lt 200 ]; do
    p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768+)
    port_listening "$p" || { echo "$p"; return 0; }
    tries=$((tries + 1))
  done
  return 1
}

SERVER_PID=
SERVER_PORT=
start_server() { # name cmd logfile -> sets SERVER_PID/SERVER_PORT
  local name=$1 cmd=$2 log=$3 attempt port
  for attempt in 1 2 3; do
    port=$(free_port) || die "no free port"
    local c=$cmd
    if [[ $c == *"{PORT}"* ]]; then c=${c//\{PORT\}/$port}; else c="$c --port $port"; fi
    read -ra argv <<<"$c"
    echo "### $name: $c" >>"$log"
    "${argv[@]}" >>"$log" 2>&1 </dev/null &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      if port_listening "$port"; then SERVER_PORT=$port; return 0; fi
      sleep 0.05
    done
    stop_server
    echo "run.sh: $name did not come up on port $port (attempt $attempt), see $log" >&2
  done
  return 1
}

# Fails (STOP_STATUS says why) when the server was already gone or did not
# end cleanly: exit 0, or killed by the SIGTERM (143) if it has no handler.
# A crash, a sanitizer exit or a hang past 2 s (SIGKILL: 137) is a failure.
STOP_STATUS=
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  local i st gone=0
  kill -TERM "$SERVER_PID" 2>/dev/null || gone=1
  for i in $(seq 1 40); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  st=$?
  SERVER_PID=
  STOP_STATUS="exit status $st$([ $gone = 1 ] && echo ', already gone before SIGTERM')"
  [ $gone = 0 ] && { [ "$st" = 0 ] || [ "$st" = 143 ]; }
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

PASS=0
FAIL=0
declare -a FAILED=()

run_test() { # round server-name test-spec log
  local round=$1 name=$2 spec=$3 log=$4
  read -ra t <<<"$spec"
  local id=${t[0]} mode=${t[1]} conns=${t[2]}
  local extra=("${t[@]:3}")
  local args=(--port "$SERVER_PORT" --mode "$mode" --conns "$conns" --server-pid "$SERVER_PID"
    --id-prefix "r${round}${name}${id}-")
  case $mode in
    idle) args+=(--hold "$HOLD") ;;
    fanout) if [ "$conns" -ge 5000 ]; then args+=(--duration "$(awk -v d="$DURATION" 'BEGIN{print 2*d}')"); else args+=(--duration "$DURATION"); fi ;;
    *) args+=(--duration "$DURATION") ;;
  esac
  args+=("${extra[@]}")

  local rss_base rss_ready=-1 cpu0 cpu1 result="" rc=255 line busy0 busy1 w0 w1
  rss_base=$(rss_kib "$SERVER_PID")
  cpu0=$(cpu_us "$SERVER_PID")
  busy0=$(busy_us)
  w0=$(date +%s%N)
  echo "### round $round $name $id: loadgen ${args[*]}" >>"$log"
  while IFS= read -r line; do
    case $line in
      READY*) rss_ready=$(rss_kib "$SERVER_PID") ;;
      RESULT*) result=${line#RESULT } ;;
      EXIT\ *) rc=${line#EXIT } ;;
    esac
  done < <("$LOADGEN" "${args[@]}" 2>>"$log"; echo "EXIT $?")
  cpu1=$(cpu_us "$SERVER_PID")
  busy1=$(busy_us)
  w1=$(date +%s%N)
  local alive=1
  kill -0 "$SERVER_PID" 2>/dev/null || alive=0
  local cpu_test=-1
  [ "$cpu0" -ge 0 ] && [ "$cpu1" -ge 0 ] && cpu_test=$((cpu1 - cpu0))
  [ -n "$result" ] || result="errors=1"
  # CPU used by everything else on the machine during the test, in % of one
  # core: machine busy time - server - loadgen. High values mean noise.
  local lg_total=0 kv
  for kv in $result; do [[ $kv == lg_cpu_total_us=* ]] && lg_total=${kv#*=}; done
  local other_pct=-1
  if [ "$cpu_test" -ge 0 ] && [ "$w1" -gt "$w0" ]; then
    other_pct=$(((busy1 - busy0 - cpu_test - lg_total) * 100000 / ((w1 - w0) / 1000)))
    other_pct=$((other_pct < 0 ? 0 : other_pct / 1000))
  fi
  printf '%s\t%s\t%s\trc=%s alive=%s rss_base_kib=%s rss_ready_kib=%s cpu_test_us=%s other_cpu_pct=%s %s\n' \
    "$round" "$name" "$id" "$rc" "$alive" "$rss_base" "$rss_ready" "$cpu_test" "$other_pct" "$result" >>"$RESULTS"
  if [ "$rc" = 0 ] && [ "$alive" = 1 ]; then
    PASS=$((PASS + 1))
    printf '  %-6s %-20s ok    %s\n' "$name" "$id" "$(summary_line "$result")" >&2
  else
    FAIL=$((FAIL + 1))
    FAILED+=("round$round/$name/$id")
    printf '  %-6s %-20s FAIL  rc=%s alive=%s %s\n' "$name" "$id" "$rc" "$alive" "$result" >&2
  fi
  [ "$alive" = 1 ]
}

summary_line() { # key=value... -> short human summary
  local kv ops="" p99="" err=""
  for kv in $1; do
    case $kv in
      ops_per_s=*) ops=${kv#*=} ;;
      p99_us=*) p99=${kv#*=} ;;
      errors=*) err=${kv#*=} ;;
    esac
  done
  echo "ops/s=$ops p99_us=$p99 errors=$err"
}

# ---------------------------------------------------------------- run
nsrv=${#SRV_NAMES[@]}
echo "bench: servers: ${SRV_NAMES[*]}; rounds: $ROUNDS; tests: ${#TESTS[@]}; duration: ${DURATION}s; out: $OUT" >&2
START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((nsrv - 1))); do
    i=$(((k + round - 1) % nsrv)) # rotate the order every round
    name=${SRV_NAMES[$i]}
    log=$OUT/$name.log
    echo "round $round/$ROUNDS: $name" >&2
    if ! start_server "$name" "${SRV_CMDS[$i]}" "$log"; then
      FAIL=$((FAIL + 1)); FAILED+=("round$round/$name/start")
      continue
    fi
    sleep "$PAUSE"
    settle
    for spec in "${TESTS[@]}"; do
      if ! run_test "$round" "$name" "$spec" "$log"; then
        echo "run.sh: $name died, see $log; restarting it" >&2
        stop_server # its death is counted already
        if ! start_server "$name" "${SRV_CMDS[$i]}" "$log"; then
          FAIL=$((FAIL + 1)); FAILED+=("round$round/$name/restart")
          break
        fi
      fi
      sleep "$PAUSE"
      settle
    done
    if [ -n "$SERVER_PID" ] && ! stop_server; then
      echo "run.sh: $name did not stop cleanly ($STOP_STATUS), see $log" >&2
      FAIL=$((FAIL + 1)); FAILED+=("round$round/$name/stop")
    fi
  done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
# Medians over rounds per (test, server); ratios against "raw" when present.
#   ops/s     loadgen ops_per_s (idle: handshakes/s, fanout: deliveries/s)
#   p99_us    loadgen p99 (fanout: send until the last receiver has it)
#   cpu/op    server CPU time (its CPU-time clock, read by loadgen) over the measured window / ops
#             (idle: per handshake). cpu_test_us in results.tsv is the whole
#             test as sampled by this script, setup and teardown included.
#   KiB/conn  idle only: (VmRSS at READY - VmRSS before the test) / conns
#   lg%       loadgen CPU over its window, % of one core: near 100 means the
#             loadgen, not the server, set ops/s (2-core box: trust cpu/op)
#   oth%      CPU used by other processes during the test, % of one core:
#             noise from the rest of the machine
awk -F'\t' -v order="$(printf '%s ' "${SRV_NAMES[@]}")" -v tests="$(for t in "${TESTS[@]}"; do printf '%s ' "${t%% *}"; done)" '
function med(list,   a, n, i, j, x) {
  n = split(list, a, " ")
  if (n == 0) return ""
  for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
  return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function fmt(v) { return v == "" ? "-" : (v >= 100 ? sprintf("%.0f", v) : sprintf("%.2f", v)) }
function ratio(v, r) { return (v == "" || r == "" || r + 0 == 0) ? "-" : sprintf("%.2f", v / r) }
{
  key = $3 SUBSEP $2
  n = split($4, kv, " ")
  delete f
  for (i = 1; i <= n; i++) { p = index(kv[i], "="); f[substr(kv[i], 1, p - 1)] = substr(kv[i], p + 1) }
  if (f["rc"] != 0 || f["alive"] != 1) { bad[key]++; next }
  ops[key] = ops[key] " " f["ops_per_s"]
  if (f["mode"] != "idle") p99[key] = p99[key] " " f["p99_us"]
  if (f["srv_cpu_us"] >= 0 && f["ops"] > 0) cpu[key] = cpu[key] " " f["srv_cpu_us"] / f["ops"]
  lg[key] = lg[key] " " f["lg_cpu_pct"]
  if (f["other_cpu_pct"] >= 0) oth[key] = oth[key] " " f["other_cpu_pct"]
  if (f["mode"] == "idle" && f["rss_ready_kib"] > 0 && f["rss_base_kib"] > 0 && f["conns"] > 0)
    kib[key] = kib[key] " " (f["rss_ready_kib"] - f["rss_base_kib"]) / f["conns"]
}
END {
  ns = split(order, S, " "); nt = split(tests, T, " ")
  printf "%-19s %-6s %11s %6s %10s %6s %9s %6s %8s %6s %4s %4s %4s\n", "test", "server", "ops/s", "x raw", "p99_us", "x raw", "cpu_us/op", "x raw", "KiB/conn", "x raw", "lg%", "oth%", "fail"
  for (t = 1; t <= nt; t++) {
    rk = T[t] SUBSEP "raw"
    ro = med(ops[rk]); rp = med(p99[rk]); rc = med(cpu[rk]); rm = med(kib[rk])
    for (s = 1; s <= ns; s++) {
      k = T[t] SUBSEP S[s]
      o = med(ops[k]); p = med(p99[k]); c = med(cpu[k]); m = med(kib[k])
      l = med(lg[k]); q = med(oth[k])
      printf "%-19s %-6s %11s %6s %10s %6s %9s %6s %8s %6s %4s %4s %4d\n", T[t], S[s], fmt(o), ratio(o, ro), fmt(p), ratio(p, rp), fmt(c), ratio(c, rc), fmt(m), ratio(m, rm), l == "" ? "-" : sprintf("%.0f", l), q == "" ? "-" : sprintf("%.0f", q), bad[k] + 0
    }
  }
}' "$RESULTS" | tee "$OUT/summary.txt"
cat <<'EOF_LEGEND' | tee -a "$OUT/summary.txt"
medians over rounds; "x raw" = server / raw_epoll. ops/s: round trips (idle:
handshakes, fanout: deliveries); p99_us: round trip (fanout: send until the
last receiver has it); cpu_us/op: server CPU time in the measured window
per op (idle: per handshake); KiB/conn: idle VmRSS growth per connection;
lg%: loadgen CPU (near 100 = loadgen-bound); oth%: other processes' CPU.
EOF_LEGEND

echo "bench: raw results in $RESULTS, logs in $OUT, ${ELAPSED}s" >&2
if [ "$FAIL" -gt 0 ]; then
  echo "bench: FAILED: ${FAILED[*]}" >&2
fi
echo "bench: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
