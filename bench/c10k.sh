#!/usr/bin/env bash
# Latency at C10K, measured open-loop (seed 003's definition of done, issue 11):
# 10,000 keep-alive clients each sending at a steady rate, the latency of every
# request taken from its *scheduled* time (no coordinated omission), against
# wasm-reactor `serve` and h2o in the same run. Closed-loop wrk -c10000 cannot
# show this: with every connection re-sending at once, latency is just
# connections / throughput (Little's law).
#
#   ./bench/c10k.sh                 # 10,000 connections at 20,000 and 40,000 req/s, ours and h2o
#   RATES=20000 SERVERS=et ./bench/c10k.sh
#   ./bench/c10k.sh --smoke         # seconds: 50 connections at 500 req/s for 1 s; prints, writes nothing
#   ./bench/c10k.sh --help          # this text
#
# Environment (defaults in brackets):
#   CONNS      keep-alive connections [10000]
#   RATES      total offered requests/s, a list [20000,40000]
#   DURATION   seconds of load per run, warm-up included [15]
#   WARMUP     seconds at the start of each run that are not recorded [3]
#   SERVERS    any of et (wasm-reactor serve, --mode et, one worker on SERVER_CPU),
#              et2 (the same with --workers 2 --cpu-affinity, on SERVER_CPU and
#              CLIENT_CPU: on a 2-core machine the second worker shares loadgen's
#              core; issue 11 asks what that shows), h2o [et,h2o]
#   IO_BACKEND wasm-reactor's --io-backend [auto]
#   QUIET_WAIT seconds to wait for both cores to go idle before a run [30]
#   SERVER_CPU / CLIENT_CPU  cores for the server and for loadgen [0 / 1]
#   LOADGEN    path of a built loadgen binary; default: built here from
#              ../shared/tools/loadgen (beside the repository) into a temp dir
#   RESULTS    markdown file whose "## C10K latency (bench/c10k.sh)" section is
#              replaced; empty = print only [bench/RESULTS.md]
#
# Method. Each (server, rate) gets a fresh server pinned to SERVER_CPU and one
# loadgen run pinned to CLIENT_CPU (one thread, one epoll loop; its README is
# ../shared/tools/loadgen/README.md). loadgen first opens CONNS connections in
# batches (the connect storm: its time and failures, and the kernel's listen
# queue drops over it, are reported separately), then offers RATE requests/s
# spread evenly over them and records each one's latency from its schedule.
# The server's utime+stime over the whole run (connects included) divided by
# the responses gives its CPU per request. Reported: p50/p99/p99.9/max, errors
# of every kind, and the ratios ours / h2o in the same run.
# Sysctls as bench/http.sh sets them (root only): somaxconn and
# tcp_max_syn_backlog 65535. Every process started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
SMOKE=0
case ${1:-} in
  "") ;;
  --smoke) SMOKE=1; CONNS=50 RATES=500 DURATION=1 WARMUP=0 SERVERS=et QUIET_WAIT=0 RESULTS= ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "bench/c10k.sh: unknown argument '$1' (--smoke, --help; the knobs are environment variables)" >&2; exit 2 ;;
esac
CONNS=${CONNS:-10000}
RATES=${RATES:-20000,40000}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
SERVERS=${SERVERS:-et,h2o}
IO_BACKEND=${IO_BACKEND:-auto}
QUIET_WAIT=${QUIET_WAIT:-30}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RESULTS=${RESULTS-$HERE/RESULTS.md}
COMMAND="CONNS=$CONNS RATES=$RATES DURATION=$DURATION WARMUP=$WARMUP SERVERS=$SERVERS IO_BACKEND=$IO_BACKEND ./bench/c10k.sh"
(( SMOKE )) && COMMAND="./bench/c10k.sh --smoke"

log() { printf '[c10k.sh] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
die() { log "error: $*"; exit 1; }
[[ -f $REPO/dist/cli.js ]] || die "dist/cli.js is missing: run node scripts/build.mjs first"

TMP=$(mktemp -d /tmp/wasm-reactor-c10k.XXXXXX)
chmod 755 "$TMP"
ROOT=$TMP/root
mkdir -p "$ROOT" "$TMP/out"
head -c 1024 /dev/urandom >"$ROOT/1k.bin"
SPID="" CPID=""
cleanup() {
  if [[ -n $CPID ]]; then kill -TERM "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; fi
  stop_server
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- loadgen ----
if [[ -z ${LOADGEN:-} ]]; then
  src=$REPO/../shared/tools/loadgen/loadgen.c
  [[ -f $src ]] || die "no loadgen: set LOADGEN=/path/to/loadgen, or put ../shared/tools/loadgen beside the repository"
  command -v cc >/dev/null || die "no C compiler to build loadgen (apt-get install -y gcc)"
  cc -O2 -Wall -Wextra -o "$TMP/loadgen" "$src"
  LOADGEN=$TMP/loadgen
fi
[[ -x $LOADGEN ]] || die "LOADGEN=$LOADGEN is not executable"

# ---- peers ----
servers=()
for s in ${SERVERS//,/ }; do
  case $s in
    et|et2) servers+=("$s") ;;
    h2o) if command -v h2o >/dev/null; then servers+=(h2o); else log "h2o is not installed: skipped"; fi ;;
    *) die "unknown server '$s' (et, et2, h2o)" ;;
  esac
done

ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
(( NOFILE >= CONNS + 100 )) || die "open-file limit $NOFILE is too low for $CONNS connections"
sysctl_note="none"
if (( ! SMOKE )) && [[ $(id -u) == 0 ]]; then
  for k in net.core.somaxconn net.ipv4.tcp_max_syn_backlog; do
    (( $(sysctl -n $k) >= 65535 )) || sysctl -qw "$k=65535"
  done
  sysctl_note="somaxconn $(sysctl -n net.core.somaxconn), tcp_max_syn_backlog $(sysctl -n net.ipv4.tcp_max_syn_backlog)"
fi

start_server() { # name port
  local out=$TMP/out/$1.server.log
  case $1 in
    et) taskset -c "$SERVER_CPU" node "$REPO/bin/wasm-reactor.js" serve --root "$ROOT" --port "$2" --mode et \
          --io-backend "$IO_BACKEND" --idle-timeout 0 >"$out" 2>&1 & ;;
    et2) taskset -c "$SERVER_CPU,$CLIENT_CPU" node "$REPO/bin/wasm-reactor.js" serve --root "$ROOT" --port "$2" --mode et \
          --io-backend "$IO_BACKEND" --idle-timeout 0 --workers 2 --cpu-affinity >"$out" 2>&1 & ;;
    h2o) sed -e "s|@PREFIX@|$TMP|g; s|@ROOT@|$ROOT|g; s|@PORT@|$2|g" "$HERE/http-peers/h2o.conf" >"$TMP/h2o.conf"
         taskset -c "$SERVER_CPU" h2o -c "$TMP/h2o.conf" >"$out" 2>&1 & ;;
  esac
  SPID=$!
  for _ in $(seq 100); do
    if curl -sf -o /dev/null "http://127.0.0.1:$2/1k.bin"; then return 0; fi
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$out" >&2
  die "$1 did not start on port $2"
}

CLK_TCK=$(getconf CLK_TCK)
RUNS=$TMP/runs.jsonl
: >"$RUNS"
for rate in ${RATES//,/ }; do
  for s in "${servers[@]}"; do
    port=$(free_port)
    start_server "$s" "$port"
    quiet_wait
    t0=$(cpu_ticks); d0=$(listen_drops)
    taskset -c "$CLIENT_CPU" "$LOADGEN" -h 127.0.0.1 -p "$port" -u /1k.bin -c "$CONNS" -r "$rate" \
      -d "$DURATION" -w "$WARMUP" -o json >"$TMP/out/$s.$rate.json" 2>"$TMP/out/$s.$rate.err" &
    CPID=$!
    wait "$CPID" || true
    CPID=""
    t1=$(cpu_ticks); d1=$(listen_drops)
    alive=1; kill -0 "$SPID" 2>/dev/null || alive=0
    line=$(tail -1 "$TMP/out/$s.$rate.json")
    [[ -n $line ]] || { cat "$TMP/out/$s.$rate.err" >&2; die "$s at $rate req/s: loadgen printed nothing"; }
    node -e '
      const [server, rate, ticks, hz, drops, alive] = process.argv.slice(1);
      const r = JSON.parse(process.argv[7]);
      console.log(JSON.stringify({ server, rate: Number(rate), ticks: Number(ticks), hz: Number(hz),
        listen_drops: Number(drops), alive: alive === "1", ...r }));' \
      "$s" "$rate" "$((t1 - t0))" "$CLK_TCK" "$((d1 - d0))" "$alive" "$line" >>"$RUNS"
    log "$s at $rate req/s: $(tail -1 "$RUNS" | cut -c1-300)"
    stop_server
  done
done

# ---- report ----
node - "$RUNS" "$COMMAND" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$sysctl_note; ulimit -n $NOFILE" "${RESULTS:-}" <<'EOF'
const fs = require("fs");
const [runsFile, command, date, load, sys, results] = process.argv.slice(2);
const runs = fs.readFileSync(runsFile, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
const num = (v, d = 1) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "n/a");
// every error kind loadgen counts, plus connections that never opened
const errs = (r) => Object.values(r.errors || {}).reduce((a, b) => a + (Number(b) || 0), 0) + (Number(r.connect_failed) || 0);
const cpu = (r) => (r.completed > 0 ? (r.ticks / r.hz) * 1e6 / r.completed : NaN);
const lines = [];
lines.push("## C10K latency (bench/c10k.sh)", "");
lines.push(`\`${command}\`, ${date}, load average ${load}; ${sys}.`, "");
lines.push("| server | conns | offered req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | connect storm ms | listen drops | server CPU µs/req | loadgen lag p99 ms |");
lines.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of runs) {
  const l = r.latency_ms || {};
  lines.push(`| ${r.server}${r.alive ? "" : " (DIED)"} | ${r.conns ?? r.connections ?? "n/a"} | ${num(r.offered_rps, 0)} | ${num(r.achieved_rps, 0)} | ${num(l.p50, 2)} | ${num(l.p99, 2)} | ${num(l.p999, 2)} | ${num(l.max, 1)} | ${errs(r)} | ${num(r.connect_ms, 0)} | ${r.listen_drops} | ${num(cpu(r), 2)} | ${num((r.gen_lag_ms || {}).p99, 2)} |`);
}
const ours = runs.filter((r) => r.server === "et"), h2o = runs.filter((r) => r.server === "h2o");
if (ours.length && h2o.length) {
  lines.push("", "| rate | p99 et / h2o | p99.9 et / h2o | CPU per request et / h2o |", "| ---: | ---: | ---: | ---: |");
  for (const o of ours) {
    const h = h2o.find((x) => x.rate === o.rate);
    if (!h) continue;
    lines.push(`| ${o.rate} | ${num(o.latency_ms.p99 / h.latency_ms.p99, 2)}x | ${num(o.latency_ms.p999 / h.latency_ms.p999, 2)}x | ${num(cpu(o) / cpu(h), 2)}x |`);
  }
}
const section = lines.join("\n") + "\n";
process.stdout.write("\n" + section);
if (results) {
  const text = fs.readFileSync(results, "utf8");
  const start = text.indexOf("## C10K latency (bench/c10k.sh)");
  let out;
  if (start < 0) out = text.replace(/\s*$/, "\n\n") + section;
  else {
    const next = text.indexOf("\n## ", start + 3);
    out = text.slice(0, start) + section + (next < 0 ? "" : "\n" + text.slice(next + 1));
  }
  fs.writeFileSync(results, out);
  process.stderr.write(`[c10k.sh] wrote the C10K section of ${results}\n`);
}
EOF
