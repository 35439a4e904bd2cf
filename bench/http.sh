#!/usr/bin/env bash
# The HTTP static-file benchmark: wasm-reactor (--mode et and lt) against
# node:http (bench/http-node.mjs, files in memory), nginx and h2o, serving a
# 1 KiB and a 64 KiB file from a temporary docroot.
#
#   node scripts/build.mjs && ./bench/http.sh    # full run: ~8 min on quiet cores
#   DURATION=5 CASES=50x1k,1000x1k IDLE_CONNS=0 ./bench/http.sh  # quick look
#   BACKENDS=epoll,poll SERVERS=et CASES=50x1k,1000x1k,10000x1k ./bench/http.sh  # poll beside epoll
#   IO_BACKENDS=epoll_threadpool SERVERS=et,h2o ./bench/http.sh  # the libc executor only
#   ./bench/http.sh --smoke    # seconds: et only (on epoll and poll), 5 connections for 1 s, 5 idle
#                              # connections, no warm-up, quiet wait, retries or
#                              # sysctl changes; prints, writes nothing. Checks
#                              # that the benchmark runs; the figures mean nothing.
#   ./bench/http.sh --help     # this text
#
# Environment (defaults in brackets):
#   DURATION    seconds per measured wrk run [10]
#   WARMUP      seconds of 50-connection load before each measurement, 0 = none [2]
#   CASES       CONNSxFILE list, FILE is 1k or 64k; empty = none
#               [50x1k,1000x1k,10000x1k,50x64k]
#   SERVERS     any of et,lt,node,nginx,h2o [all five]
#   BACKENDS    event backends for the wasm-reactor servers (et, lt): any of
#               epoll,poll; each one is a server of its own in the tables
#               ("et" on epoll, "et-poll" on poll) [epoll]
#   IO_BACKENDS what carries their requests out (--io-backend): any of
#               epoll_threadpool,io_uring; io_uring ones are servers of their
#               own ("et-uring", "et-poll-uring") [epoll_threadpool,io_uring]
#   IDLE_CONNS  idle keep-alive connections for the memory figure, 0 = skip [10000]
#   IDLE_SETTLE seconds between the idle connections being ready and reading RSS [2]
#   WRK_TIMEOUT wrk's per-request timeout in seconds [2]
#   QUIET_WAIT  seconds to wait for both cores to go idle before a run [30]
#   MAX_OTHER / RETRIES  a run during which other processes took more than
#               MAX_OTHER% of the server's or wrk's core is repeated up to
#               RETRIES times, keeping the least disturbed [10 / 2]
#   SERVER_CPU / CLIENT_CPU  cores for the server and for wrk [0 / 1]
#   RESULTS     markdown file whose "## HTTP (bench/http)" section is replaced;
#               empty = print only [bench/RESULTS.md]
#   CHART       SVG that bench/chart.mjs redraws from that section after the
#               run; empty = none [chart.svg beside RESULTS: bench/chart.svg]
#
# Method. Every case gets a freshly started server pinned to SERVER_CPU, a
# warm-up, then one wrk run (-t1, keep-alive, --latency, bench/http-wrk.lua
# for a parseable summary) pinned to CLIENT_CPU. One wrk thread saturates
# around the rate a good server reaches on one core, so requests/s alone
# can hide differences: the script also reads the server's utime+stime
# (summed over all its processes, e.g. nginx's master and worker) from
# /proc/PID/stat before and after the run and reports CPU µs per request.
# For memory it opens IDLE_CONNS keep-alive connections that have each made
# one request (bench/http-idle.mjs) and reports the RSS growth per connection.
#
# System changes (root only; all traffic is on 127.0.0.1 to the servers
# started here): net.core.somaxconn and net.ipv4.tcp_max_syn_backlog are
# raised to 65535 so 10k simultaneous connects are not dropped at the listen
# queue, and net.ipv4.ip_local_port_range is widened only if it holds too few
# ports. These sysctls are left as set (harmless, and noted in the results);
# `ulimit -n` is raised to the hard limit for this script and its children.
# Every process started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
SMOKE=0
case ${1:-} in
  "") ;;
  --smoke)
    SMOKE=1
    DURATION=1 WARMUP=0 CASES=5x1k SERVERS=et BACKENDS=epoll,poll IO_BACKENDS=epoll_threadpool,io_uring IDLE_CONNS=5 IDLE_SETTLE=0.2 QUIET_WAIT=0 RETRIES=0 RESULTS= CHART= ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "bench/http.sh: unknown argument '$1' (--smoke, --help; the knobs are environment variables)" >&2; exit 2 ;;
esac
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CASES=${CASES-50x1k,1000x1k,10000x1k,50x64k}
SERVERS=${SERVERS:-et,lt,node,nginx,h2o}
BACKENDS=${BACKENDS:-epoll}
IO_BACKENDS=${IO_BACKENDS:-epoll_threadpool,io_uring}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_SETTLE=${IDLE_SETTLE:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-2}
QUIET_WAIT=${QUIET_WAIT:-30}
MAX_OTHER=${MAX_OTHER:-10}
RETRIES=${RETRIES:-2}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RESULTS=${RESULTS-$HERE/RESULTS.md}
CHART=${CHART-${RESULTS:+$(dirname "$RESULTS")/chart.svg}}
COMMAND="DURATION=$DURATION WARMUP=$WARMUP CASES=$CASES SERVERS=$SERVERS BACKENDS=$BACKENDS IO_BACKENDS=$IO_BACKENDS IDLE_CONNS=$IDLE_CONNS"
COMMAND+=" WRK_TIMEOUT=$WRK_TIMEOUT QUIET_WAIT=$QUIET_WAIT MAX_OTHER=$MAX_OTHER RETRIES=$RETRIES ./bench/http.sh"
(( SMOKE )) && COMMAND="./bench/http.sh --smoke"

log() { printf '[http.sh] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
die() { log "error: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk is not installed (apt-get install -y wrk)"
[[ -x /usr/bin/time ]] || die "GNU time is not installed (apt-get install -y time)"
[[ -f $REPO/dist/cli.js ]] || die "dist/cli.js is missing: run node scripts/build.mjs first"

# ---- peers that are not installed are skipped, and the skip is reported ----
NOTES=()
servers=()
for s in ${SERVERS//,/ }; do
  case $s in
    et|lt)
      # one server per backend: "et" is et on epoll (the name the tables have always used), "et-poll" on poll;
      # and per I/O backend: epoll_threadpool (the libc executor) keeps the name, io_uring adds "-uring"
      for b in ${BACKENDS//,/ }; do
        case $b in
          epoll) base=$s ;;
          poll) base=$s-$b ;;
          *) die "unknown backend '$b' (epoll, poll)" ;;
        esac
        for io in ${IO_BACKENDS//,/ }; do
          case $io in
            epoll_threadpool) servers+=("$base") ;;
            io_uring)
              if node -e 'import("'"$REPO"'/dist/index.js").then((m) => process.exit(m.uringAvailability().ok ? 0 : 1))'; then
                servers+=("$base-uring")
              else
                log "io_uring is unavailable here: $base-uring skipped"; NOTES+=("io_uring was unavailable: $base-uring was skipped.")
              fi ;;
            *) die "unknown I/O backend '$io' (epoll_threadpool, io_uring)" ;;
          esac
        done
      done ;;
    node) servers+=("$s") ;;
    nginx|h2o)
      if command -v "$s" >/dev/null; then servers+=("$s")
      else log "$s is not installed: skipped"; NOTES+=("$s was not installed and was skipped."); fi ;;
    *) die "unknown server '$s' (et, lt, node, nginx, h2o)" ;;
  esac
done

TMP=$(mktemp -d /tmp/wasm-reactor-http.XXXXXX)
chmod 755 "$TMP"
ROOT=$TMP/root
mkdir -p "$ROOT" "$TMP/out"
head -c 1024 /dev/urandom >"$ROOT/1k.bin"
head -c 65536 /dev/urandom >"$ROOT/64k.bin"
# Others may rebuild dist/ and build/ while this runs: serve from a snapshot
# taken now, so every case measures the same build.
SNAP=$TMP/wasm-reactor
mkdir -p "$SNAP/bin" "$SNAP/dist" "$SNAP/build"
cp "$REPO/bin/wasm-reactor.js" "$SNAP/bin/"
cp -r "$REPO"/dist/* "$SNAP/dist/" # cli.js, worker-entry.js, filepool-worker.js, io/ ...
cp "$REPO/build/core.wasm" "$SNAP/build/"
ln -s "$REPO/node_modules" "$SNAP/node_modules"
cp "$REPO/package.json" "$SNAP/"
BUILD_INFO="commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git -C "$REPO" status --porcelain -- assembly host 2>/dev/null) ]]; then
  BUILD_INFO+=" + uncommitted changes in assembly/ or host/"
fi
BUILD_INFO+="; build/core.wasm of $(date -u -r "$REPO/build/core.wasm" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$SNAP/build/core.wasm" | cut -c1-12)"

RUNS=$TMP/runs.tsv
IDLE=$TMP/idle.tsv
META=$TMP/meta.txt
: >"$RUNS"; : >"$IDLE"

# ---- cleanup: every process started here, and only those ----
SPID=""      # the current server
CPID=""      # the current client (wrk or the idle-connection holder)
cleanup() {
  if [[ -n $CPID ]]; then
    pkill -TERM -P "$CPID" 2>/dev/null || true # wrk under /usr/bin/time
    kill -TERM "$CPID" 2>/dev/null || true
    wait "$CPID" 2>/dev/null || true
  fi
  stop_server
  if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- limits and sysctls ----
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
max_conns=0
for c in ${CASES//,/ } "${IDLE_CONNS}x"; do
  n=${c%%x*}
  if (( n > max_conns )); then max_conns=$n; fi
done
if (( NOFILE < max_conns + 100 )); then log "warning: open-file limit $NOFILE is low for $max_conns connections"; fi
sysctl_changes=()
raise_sysctl() { # name minimum
  local cur; cur=$(sysctl -n "$1")
  if (( cur < $2 )); then
    sysctl -qw "$1=$2" && sysctl_changes+=("$1 $cur → $2") || log "could not set $1"
  else
    sysctl_changes+=("$1 = $cur (unchanged)")
  fi
}
if (( SMOKE )); then
  sysctl_changes+=("none (--smoke)")
elif [[ $(id -u) == 0 ]]; then
  raise_sysctl net.core.somaxconn 65535
  raise_sysctl net.ipv4.tcp_max_syn_backlog 65535
  read -r lo hi < <(sysctl -n net.ipv4.ip_local_port_range)
  # Each run's connections linger in TIME_WAIT on the client side; loopback
  # may reuse them (tcp_tw_reuse=2), but keep room for two runs' worth.
  if (( hi - lo + 1 < 2 * max_conns + 2000 )); then
    sysctl -qw net.ipv4.ip_local_port_range="16384 65535"
    sysctl_changes+=("net.ipv4.ip_local_port_range $lo-$hi → 16384-65535")
  else
    sysctl_changes+=("net.ipv4.ip_local_port_range = $lo-$hi (unchanged, enough)")
  fi
else
  log "not root: sysctls unchanged (10k connects may overflow the listen queue)"
  sysctl_changes+=("none (not run as root)")
fi

# ---- servers ----

# Starts server $1 on port $2 pinned to SERVER_CPU; sets SPID.
start_server() {
  local name=$1 port=$2 out=$TMP/out/$1.server.log
  case $name in
    et|lt|et-*|lt-*)
      # MODE[-poll][-uring]
      local backend=epoll io=epoll_threadpool
      [[ $name == *-poll* ]] && backend=poll
      [[ $name == *-uring ]] && io=io_uring
      taskset -c "$SERVER_CPU" node "$SNAP/bin/wasm-reactor.js" serve --root "$ROOT" --port "$port" \
        --mode "${name%%-*}" --backend "$backend" --io-backend "$io" --idle-timeout 0 >"$out" 2>&1 & ;;
    node)
      taskset -c "$SERVER_CPU" node "$HERE/http-node.mjs" --root "$ROOT" --port "$port" >"$out" 2>&1 & ;;
    nginx)
      sed -e "s|@PREFIX@|$TMP|g; s|@ROOT@|$ROOT|g; s|@PORT@|$port|g; s|@NOFILE@|$NOFILE|g" \
        "$HERE/http-peers/nginx.conf" >"$TMP/nginx.conf"
      taskset -c "$SERVER_CPU" nginx -c "$TMP/nginx.conf" -p "$TMP" -e "$TMP/nginx-error.log" \
        -g 'daemon off;' >"$out" 2>&1 & ;;
    h2o)
      sed -e "s|@PREFIX@|$TMP|g; s|@ROOT@|$ROOT|g; s|@PORT@|$port|g" \
        "$HERE/http-peers/h2o.conf" >"$TMP/h2o.conf"
      taskset -c "$SERVER_CPU" h2o -c "$TMP/h2o.conf" >"$out" 2>&1 & ;;
  esac
  SPID=$! # taskset execs the server, so this is the server's own pid
  for _ in $(seq 100); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/1k.bin"; then return 0; fi
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$out" >&2
  die "$name did not start on port $port"
}


# Resident kB of a WebAssembly linear memory in process $1: V8 maps it as an
# rw-p region directly followed by its multi-GiB guard reservation (---p).
# For wasm-reactor this separates the core's own per-connection memory from
# the rest of the process (V8's heap, which GC may grow or shrink meanwhile).
wasm_rss_kb() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { n++; perm[n] = $2 } /^Size:/ { size[n] = $2 } /^Rss:/ { rss[n] = $2 }
       END { for (i = 1; i < n; i++) if (perm[i] == "rw-p" && perm[i + 1] == "---p" && size[i + 1] > 4194304) { print rss[i]; exit } }' \
    "/proc/$1/smaps" 2>/dev/null || true
}


# wrk under GNU time, which writes wrk's user and system seconds to OUT.time.
run_wrk() { # conns seconds path out
  taskset -c "$CLIENT_CPU" /usr/bin/time -f '%U %S' -o "$4.time" \
    wrk -t1 -c"$1" -d"$2"s --timeout "${WRK_TIMEOUT}s" --latency \
    -s "$HERE/http-wrk.lua" "http://127.0.0.1:$PORT$3" >"$4" 2>&1 &
  CPID=$!
  wait "$CPID" || true
  CPID=""
}

warm_up() { # path out
  if (( WARMUP > 0 )); then run_wrk 50 "$WARMUP" "$1" "$2"; fi
}


CLK_TCK=$(getconf CLK_TCK)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')

# ---- throughput, latency and CPU per request ----
# One measurement of server $1 in case $2 (a fresh server); appends its row
# to $RUNS.tmp and sets OTHER_PCT, the largest share of the server's or the
# client's core that other processes took during the run.
measure() {
  local s=$1 kase=$2 conns=${2%%x*} file=/${2#*x}.bin out=$TMP/out/$1.$2.wrk
  local t0 t1 c0 c1 k0 k1 d0 d1 other other_client wrk_ticks alive line rps kv
  PORT=$(free_port)
  start_server "$s" "$PORT"
  warm_up "$file" "$TMP/out/$s.$kase.warmup"
  quiet_wait
  t0=$(cpu_ticks); c0=$(cpu_busy "$SERVER_CPU"); k0=$(cpu_busy "$CLIENT_CPU"); d0=$(listen_drops)
  run_wrk "$conns" "$DURATION" "$file" "$out"
  t1=$(cpu_ticks); c1=$(cpu_busy "$SERVER_CPU"); k1=$(cpu_busy "$CLIENT_CPU"); d1=$(listen_drops)
  wrk_ticks=$(awk -v hz="$CLK_TCK" '{ printf "%.0f", ($1 + $2) * hz }' "$out.time" 2>/dev/null || echo 0)
  other=$(( c1 - c0 - (t1 - t0) )); (( other >= 0 )) || other=0
  other_client=$(( k1 - k0 - wrk_ticks )); (( other_client >= 0 )) || other_client=0
  alive=1; kill -0 "$SPID" 2>/dev/null || alive=0
  line=$(grep '^WRK ' "$out" || true)
  if [[ -z $line ]]; then
    log "$s $kase: wrk printed no summary:"; cat "$out" >&2
    line="WRK requests=0 duration_us=1 p50_us=0 p99_us=0 connect=0 read=0 write=0 timeout=0 status=0"
  fi
  local -A w=()
  for kv in ${line#WRK }; do w[${kv%%=*}]=${kv#*=}; done
  rps=$(awk -v n="${w[requests]}" -v d="${w[duration_us]}" 'BEGIN { printf "%.0f", n * 1e6 / d }')
  local pct_server=$(( other * 100 * 1000000 / (CLK_TCK * w[duration_us]) ))
  local pct_client=$(( other_client * 100 * 1000000 / (CLK_TCK * w[duration_us]) ))
  OTHER_PCT=$(( pct_server > pct_client ? pct_server : pct_client ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$kase" "$rps" \
    "${w[requests]}" "${w[duration_us]}" "${w[p50_us]}" "${w[p99_us]}" "${w[connect]}" "${w[read]}" \
    "${w[write]}" "${w[timeout]}" "${w[status]}" "$((t1 - t0))" "$CLK_TCK" "$alive" "$other" "$((d1 - d0))" \
    "$wrk_ticks" "$other_client" >"$RUNS.tmp"
  log "$(printf '%-6s %-9s %8s req/s  p50 %6sµs  p99 %8sµs  errors c%s r%s w%s t%s s%s  listen drops %s  ticks server %s wrk %s  other %s%%/%s%%%s' \
    "$s" "$kase" "$rps" "${w[p50_us]}" "${w[p99_us]}" "${w[connect]}" "${w[read]}" "${w[write]}" \
    "${w[timeout]}" "${w[status]}" "$((d1 - d0))" "$((t1 - t0))" "$wrk_ticks" "$pct_server" "$pct_client" \
    "$( ((alive)) || echo ', SERVER DIED')")"
  ((alive)) || tail -20 "$TMP/out/$s.server.log" >&2
  stop_server
}

for kase in ${CASES//,/ }; do
  [[ -f $ROOT/${kase#*x}.bin ]] || die "case $kase: no file /${kase#*x}.bin (use 1k or 64k)"
  for s in "${servers[@]}"; do
    # A run that other processes disturbed (over MAX_OTHER% of the server's or
    # wrk's core) is repeated, up to RETRIES times; the least disturbed counts.
    best=""; best_pct=101
    for ((attempt = 0; attempt <= RETRIES; attempt++)); do
      measure "$s" "$kase"
      # (the first run always counts: "other" is read over a window a little
      # longer than wrk's run, so on a loaded machine it can pass 100%)
      if [[ -z $best ]] || (( OTHER_PCT < best_pct )); then best=$(cat "$RUNS.tmp"); best_pct=$OTHER_PCT; fi
      (( OTHER_PCT > MAX_OTHER )) || break
      if (( attempt < RETRIES )); then log "disturbed (other processes took ${OTHER_PCT}% of a core): again"; fi
    done
    printf '%s\n' "$best" >>"$RUNS"
  done
done

# ---- memory per idle keep-alive connection ----
if (( IDLE_CONNS > 0 )); then
  for s in "${servers[@]}"; do
    PORT=$(free_port)
    start_server "$s" "$PORT"
    warm_up /1k.bin "$TMP/out/$s.idle.warmup"
    quiet_wait
    before=$(rss_kb); wasm_before=""
    [[ $s == et* || $s == lt* ]] && wasm_before=$(wasm_rss_kb "$SPID")
    out=$TMP/out/$s.idle.client
    taskset -c "$CLIENT_CPU" node "$HERE/http-idle.mjs" --port "$PORT" --conns "$IDLE_CONNS" >"$out" 2>&1 &
    CPID=$!
    for _ in $(seq 1200); do grep -q '^ready' "$out" && break; kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
    sleep "$IDLE_SETTLE"
    after=$(rss_kb); wasm_after=""
    [[ $s == et* || $s == lt* ]] && wasm_after=$(wasm_rss_kb "$SPID")
    kill -TERM "$CPID" 2>/dev/null || true
    wait "$CPID" 2>/dev/null || true
    CPID=""
    ready=$(grep '^ready' "$out" || echo "ready open=0 failed=$IDLE_CONNS")
    open=$(sed -n 's/.*open=\([0-9]*\).*/\1/p' <<<"$ready")
    failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$ready")
    still=$(sed -n 's/.*still_open=\([0-9]*\).*/\1/p' "$out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$IDLE_CONNS" "$open" "$failed" "$before" "$after" "${still:-0}" \
      "$wasm_before" "$wasm_after" >>"$IDLE"
    log "$(printf '%-6s idle: %s open, %s failed, RSS %s kB -> %s kB%s' "$s" "$open" "$failed" "$before" "$after" \
      "${wasm_before:+ (wasm memory $wasm_before kB -> $wasm_after kB)}")"
    stop_server
  done
fi

# ---- report ----
cpu_model=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
versions="Node $(node -v), wrk $( (wrk -v 2>&1 || true) | sed -n "s/^wrk \([^ ]*\).*/\1/p" | head -1)"
command -v nginx >/dev/null && versions+=", $(nginx -v 2>&1 | sed 's/.*version: //')"
command -v h2o >/dev/null && versions+=", h2o $(h2o --version | sed -n 's/^h2o version //p')"
{
  printf 'command\t%s\n' "$COMMAND"
  printf 'date\t%s\n' "$START_DATE"
  printf 'build\t%s\n' "$BUILD_INFO"
  printf 'machine\t%s cores (%s), %s, Linux %s, TCP congestion control %s; %s; shared with other work during the run\n' \
    "$(nproc)" "$cpu_model" "$(free -g | awk '/^Mem:/ {print $2 " GiB RAM"}')" "$(uname -r)" \
    "$(sysctl -n net.ipv4.tcp_congestion_control)" "$versions"
  printf 'sysctl\t%s; ulimit -n %s\n' "$(IFS=';'; echo "${sysctl_changes[*]}" | sed 's/;/; /g')" "$NOFILE"
  printf 'load\t%s / %s\n' "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
  if ((${#NOTES[@]})); then printf 'note\t%s\n' "$(IFS=' '; echo "${NOTES[*]}")"; fi
} >"$META"

args=(--runs "$RUNS" --idle "$IDLE" --meta "$META")
[[ -n $RESULTS ]] && args+=(--write "$RESULTS")
echo
node "$HERE/http-report.mjs" "${args[@]}"
[[ -n $RESULTS ]] && log "wrote the HTTP section of $RESULTS"
# The chart is drawn from what was just written, so it shows the same run. If it
# cannot be drawn (e.g. SERVERS left out h2o, its baseline), the results stand
# and the old chart stays: say so rather than fail a finished run.
if [[ -n $RESULTS && -n $CHART ]]; then
  node "$HERE/chart.mjs" --in "$RESULTS" --out "$CHART" ||
    log "warning: $CHART was not redrawn and still shows an earlier run"
fi
exit 0
