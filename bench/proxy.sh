#!/usr/bin/env bash
# The proxy benchmark: wasm-reactor's `proxy` against HAProxy and nginx, all
# in front of the same upstream (nginx serving a 1 KiB file), in tcp mode
# (HAProxy `mode tcp`, nginx `stream`) and http mode (HAProxy `mode http`
# with server-connection reuse, nginx `proxy_pass` to an upstream block with
# `keepalive`), with a "direct" row (wrk straight to the upstream) to give
# the latency the proxy adds. Then bulk transfers in tcp mode: wrk fetching
# 1 MiB and 100 MiB files through each tcp-mode proxy (MB/s, proxy CPU per MB).
#
#   node scripts/build.mjs && ./bench/proxy.sh
#   DURATION=5 CASES=50 PROXIES=wr-tcp,haproxy-tcp ./bench/proxy.sh
#   ./bench/proxy.sh --smoke    # seconds: wr-tcp and direct, 5 connections for 1 s, 1 MiB bulk on one;
#                               # prints, writes nothing; the figures mean nothing
#   ./bench/proxy.sh --help     # this text
#
# Environment (defaults in brackets):
#   DURATION    seconds per measured wrk run [8]
#   WARMUP      seconds of load before each measurement, 0 = none [2]
#   CASES       connection counts; empty = no requests/s table [50,1000]
#   PROXIES     any of wr-tcp,wr-copy-tcp,wr-http,haproxy-tcp,haproxy-http,nginx-tcp,nginx-http,
#               haproxy-splice-tcp (HAProxy with `option splice-auto`; not in the default)
#               (wr-http only once `proxy --mode http` exists) [all but the last that run here]
#   QUIET_WAIT  seconds to wait for both cores to go idle before a run [30]
#   BULK        tcp-mode bulk cases, SIZE:CONNS (SIZE in k or m) [1m:4,100m:1];
#               empty = none
#   SERVER_CPU / CLIENT_CPU  the proxy's core / wrk's and the upstream's [0 / 1]
#   RESULTS     markdown file whose "## Proxy (bench/proxy.sh)" section is
#               replaced; empty = print only [bench/RESULTS.md]
#
# Method. Each proxy is started fresh per case, pinned to SERVER_CPU; the
# upstream (one nginx worker) and wrk (-t1, keep-alive) share CLIENT_CPU, the
# same for every row, so the rows differ only in the proxy. Server CPU per
# request is the proxy's utime+stime (all its processes, /proc/PID/stat)
# over the requests wrk completed; "added p99" is the row's p99 minus the
# direct row's in the same case. Ratios are against HAProxy in the same mode.
# Idle upstream connections kept: wasm-reactor's default --upstream-keepalive
# 1024 and nginx keepalive 1024 (HAProxy's pool has no cap by default), so at
# 1,000 clients no proxy closes and reopens upstream connections per request.
# Bulk: the same placement and keep-alive; MB/s is the payload wrk received
# (responses completed x file size) over the run; proxy CPU per MB is the
# proxy's utime+stime over that payload. haproxy-tcp and nginx-tcp relay by
# copy (read/write): HAProxy's `option splice-auto` is off by default and
# nginx stream has no splice; haproxy-splice-tcp is HAProxy with it on.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
SMOKE=0
case ${1:-} in
  "") ;;
  --smoke) SMOKE=1; DURATION=1 WARMUP=0 CASES=5 PROXIES=wr-tcp QUIET_WAIT=0 RESULTS= BULK=${BULK:-1m:1} ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "bench/proxy.sh: unknown argument '$1' (--smoke, --help; the knobs are environment variables)" >&2; exit 2 ;;
esac
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
CASES=${CASES-50,1000}
BULK=${BULK-1m:4,100m:1}
for spec in ${BULK//,/ }; do
  [[ $spec =~ ^[0-9]+[km]?:[1-9][0-9]*$ ]] || { echo "bench/proxy.sh: BULK: '$spec' is not SIZE:CONNS (e.g. 1m:4)" >&2; exit 2; }
done
QUIET_WAIT=${QUIET_WAIT:-30}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RESULTS=${RESULTS-$HERE/RESULTS.md}
log() { printf '[proxy.sh] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
die() { log "error: $*"; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed (apt-get install -y wrk)"
command -v nginx >/dev/null || die "nginx is not installed (apt-get install -y nginx-light libnginx-mod-stream): it is the upstream"
[[ -f $REPO/dist/cli.js ]] || die "dist/cli.js is missing: run node scripts/build.mjs first"

# http mode is measured once the proxy has it (until then `--mode http` says "not built yet").
wr_http=1
probe=$(timeout 5 node "$REPO/bin/wasm-reactor.js" proxy --mode http --listen 127.0.0.1:0 --upstream 127.0.0.1:9 2>&1 || true)
[[ $probe == *"not built"* ]] && wr_http=0
if [[ -z ${PROXIES:-} ]]; then
  PROXIES=wr-tcp
  (( wr_http )) && PROXIES+=,wr-http
  command -v haproxy >/dev/null && PROXIES+=,haproxy-tcp,haproxy-http
  [[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] && PROXIES+=,nginx-tcp
  PROXIES+=,nginx-http
fi
COMMAND="DURATION=$DURATION WARMUP=$WARMUP CASES=$CASES BULK=$BULK PROXIES=$PROXIES QUIET_WAIT=$QUIET_WAIT ./bench/proxy.sh"
(( SMOKE )) && COMMAND="./bench/proxy.sh --smoke"

TMP=$(mktemp -d /tmp/wasm-reactor-proxy.XXXXXX)
chmod 755 "$TMP"
mkdir -p "$TMP/root" "$TMP/out"
head -c 1024 /dev/urandom >"$TMP/root/1k.bin"
# bulk files: SIZE -> bytes (k/m suffix), written once each
bulk_bytes() { case $1 in *k) echo $(( ${1%k} << 10 )) ;; *m) echo $(( ${1%m} << 20 )) ;; *) echo "$1" ;; esac; }
for spec in ${BULK//,/ }; do
  size=${spec%%:*}
  [[ -f $TMP/root/$size.bin ]] || head -c "$(bulk_bytes "$size")" /dev/urandom >"$TMP/root/$size.bin"
done
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
CLK_TCK=$(getconf CLK_TCK)
if [[ $(id -u) == 0 ]] && (( ! SMOKE )); then
  for k in net.core.somaxconn net.ipv4.tcp_max_syn_backlog; do
    (( $(sysctl -n $k) >= 65535 )) || sysctl -qw $k=65535
  done
fi

SPID=""; UPID=""; CPID=""
cleanup() {
  [[ -n $CPID ]] && { kill -TERM "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; }
  stop_server
  if [[ -n $UPID ]]; then SPID=$UPID; stop_server; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fill() { # template out port
  sed -e "s|@PREFIX@|$TMP|g; s|@ROOT@|$TMP/root|g; s|@PORT@|$3|g; s|@UPORT@|$UPORT|g; s|@NOFILE@|$NOFILE|g" \
    -e "s|@MODE@|${MODE:-tcp}|g; s|@MAXCONN@|${MAXCONN:-$((NOFILE / 2 - 100))}|g; s|@SPLICE@|${SPLICE:-# no splice}|g" "$1" >"$2"
}

# The upstream: one nginx worker serving $TMP/root, pinned with wrk.
UPORT=$(free_port)
fill "$HERE/http-peers/nginx.conf" "$TMP/upstream.conf" "$UPORT"
sed -i "s|pid .*;|pid $TMP/upstream.pid;|" "$TMP/upstream.conf"
taskset -c "$CLIENT_CPU" nginx -c "$TMP/upstream.conf" -p "$TMP" -e "$TMP/upstream-error.log" -g 'daemon off;' >"$TMP/out/upstream.log" 2>&1 &
UPID=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$UPORT/1k.bin" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$UPORT/1k.bin" || die "the upstream nginx did not start"

start_proxy() { # name port
  local name=$1 port=$2 out=$TMP/out/$1.log
  case $name in
    wr-tcp|wr-http|wr-copy-tcp)
      # wr-copy-tcp: tcp mode with --relay copy (wr-tcp splices, the default)
      local relay=()
      [[ $name == wr-copy-tcp ]] && relay=(--relay copy)
      taskset -c "$SERVER_CPU" node "$REPO/bin/wasm-reactor.js" proxy --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$UPORT" --mode "${name##*-}" "${relay[@]}" --idle-timeout 0 >"$out" 2>&1 & ;;
    haproxy-*)
      # splice: HAProxy keeps up to maxconn/4 pipes (2 fds each) beside 2 fds per connection
      SPLICE="" MAXCONN=""
      [[ $name == haproxy-splice-* ]] && SPLICE="option splice-auto" MAXCONN=$((NOFILE * 2 / 5 - 100))
      MODE=${name##*-} SPLICE=$SPLICE MAXCONN=$MAXCONN fill "$HERE/proxy-peers/haproxy.cfg" "$TMP/haproxy.cfg" "$port"
      taskset -c "$SERVER_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$out" 2>&1 & ;;
    nginx-*)
      fill "$HERE/proxy-peers/$name.conf" "$TMP/proxy-nginx.conf" "$port"
      taskset -c "$SERVER_CPU" nginx -c "$TMP/proxy-nginx.conf" -p "$TMP" -e "$TMP/proxy-nginx-error.log" -g 'daemon off;' >"$out" 2>&1 & ;;
    direct) SPID=""; return 0 ;;
    *) die "unknown proxy '$name'" ;;
  esac
  SPID=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/1k.bin" && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$out" >&2
  die "$name did not start on port $port"
}

run_wrk() { # conns seconds port out [file [timeout]]
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$1" -d"$2"s --timeout "${6:-2}s" --latency -s "$HERE/http-wrk.lua" \
    "http://127.0.0.1:$3/${5:-1k.bin}" >"$4" 2>&1 &
  CPID=$!
  wait "$CPID" || true
  CPID=""
}

ROWS=$TMP/rows.tsv
: >"$ROWS"
for conns in ${CASES//,/ }; do
  for p in direct ${PROXIES//,/ }; do
    port=$UPORT
    [[ $p == direct ]] || port=$(free_port)
    start_proxy "$p" "$port"
    (( WARMUP > 0 )) && run_wrk "$conns" "$WARMUP" "$port" "$TMP/out/$p.$conns.warm"
    quiet_wait
    t0=0; [[ -n $SPID ]] && t0=$(cpu_ticks)
    run_wrk "$conns" "$DURATION" "$port" "$TMP/out/$p.$conns.wrk"
    t1=0; [[ -n $SPID ]] && t1=$(cpu_ticks)
    line=$(grep '^WRK ' "$TMP/out/$p.$conns.wrk" || echo "WRK requests=0 duration_us=1 p50_us=0 p99_us=0 connect=0 read=0 write=0 timeout=0 status=0")
    declare -A w=()
    for kv in ${line#WRK }; do w[${kv%%=*}]=${kv#*=}; done
    errors=$(( w[connect] + w[read] + w[write] + w[timeout] + w[status] ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$conns" "${w[requests]}" "${w[duration_us]}" "${w[p50_us]}" \
      "${w[p99_us]}" "$errors" "$((t1 - t0))" >>"$ROWS"
    log "$(printf '%-13s %5s conns  %8s requests  p99 %7sµs  errors %s  proxy ticks %s' "$p" "$conns" "${w[requests]}" "${w[p99_us]}" "$errors" "$((t1 - t0))")"
    unset w
    [[ $p == direct ]] || stop_server
  done
done

# ---- bulk: tcp-mode proxies only ----
BULKROWS=$TMP/bulk.tsv
: >"$BULKROWS"
for spec in ${BULK//,/ }; do
  size=${spec%%:*} conns=${spec#*:}
  for p in direct ${PROXIES//,/ }; do
    [[ $p == direct || $p == *-tcp ]] || continue
    port=$UPORT
    [[ $p == direct ]] || port=$(free_port)
    start_proxy "$p" "$port"
    out=$TMP/out/$p.bulk.$size
    (( WARMUP > 0 )) && run_wrk "$conns" "$WARMUP" "$port" "$out.warm" "$size.bin" 30
    quiet_wait
    t0=0; [[ -n $SPID ]] && t0=$(cpu_ticks)
    run_wrk "$conns" "$DURATION" "$port" "$out.wrk" "$size.bin" 30
    t1=0; [[ -n $SPID ]] && t1=$(cpu_ticks)
    line=$(grep '^WRK ' "$out.wrk" || echo "WRK requests=0 duration_us=1 connect=0 read=0 write=0 timeout=0 status=0")
    declare -A w=()
    for kv in ${line#WRK }; do w[${kv%%=*}]=${kv#*=}; done
    errors=$(( w[connect] + w[read] + w[write] + w[timeout] + w[status] ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$size" "$(bulk_bytes "$size")" "$conns" "${w[requests]}" \
      "${w[duration_us]}" "$errors" "$((t1 - t0))" >>"$BULKROWS"
    log "$(printf '%-13s %5s x%s conns  %6s responses  errors %s  proxy ticks %s' "$p" "$size" "$conns" "${w[requests]}" "$errors" "$((t1 - t0))")"
    unset w
    [[ $p == direct ]] || stop_server
  done
done

# ---- report ----
machine="$(nproc) cores, Linux $(uname -r), $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | sed 's/.*version: //')"
report="## Proxy (bench/proxy.sh)

Command: \`$COMMAND\`, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown); $machine."
[[ -s $ROWS ]] && report+=$'\n'$(awk -F'\t' -v hz="$CLK_TCK" '
  { n++; name[n] = $1; c[n] = $2; rps[n] = $3 * 1e6 / $4; p50[n] = $5; p99[n] = $6; err[n] = $7
    cpu[n] = $3 > 0 ? $8 * 1e6 / hz / $3 : 0
    if ($1 == "direct") d99[$2] = $6
    if ($1 == "haproxy-tcp" || $1 == "haproxy-http") { m = substr($1, 9); hr[m, $2] = rps[n]; hc[m, $2] = cpu[n] } }
  END {
    print "Proxy pinned to one core; wrk (-t1) and the upstream (one nginx worker serving 1 KiB) on the other."
    print "Ratios are against HAProxy in the same mode and case; \"added p99\" is p99 minus the direct row'"'"'s."
    print ""
    print "| proxy | conns | requests/s | vs HAProxy | proxy CPU µs/req | vs HAProxy | p50 ms | p99 ms | added p99 ms | errors |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for (i = 1; i <= n; i++) {
      m = name[i]; sub(/^.*-/, "", m)
      vr = (name[i] != "direct" && hr[m, c[i]] > 0) ? sprintf("%.2f", rps[i] / hr[m, c[i]]) : "–"
      vc = (name[i] != "direct" && hc[m, c[i]] > 0) ? sprintf("%.2f", cpu[i] / hc[m, c[i]]) : "–"
      cp = name[i] == "direct" ? "–" : sprintf("%.1f", cpu[i])
      ad = name[i] == "direct" ? "–" : sprintf("%.2f", (p99[i] - d99[c[i]]) / 1000)
      printf "| %s | %d | %.0f | %s | %s | %s | %.2f | %.2f | %s | %d |\n", name[i], c[i], rps[i], vr, cp, vc, p50[i] / 1000, p99[i] / 1000, ad, err[i]
    }
  }' "$ROWS")
if [[ -s $BULKROWS ]]; then
  report+=$'\n\n'$(awk -F'\t' -v hz="$CLK_TCK" '
    { n++; name[n] = $1; sz[n] = $2; c[n] = $4; err[n] = $7
      mb = $5 * $3 / 1e6; mbs[n] = mb * 1e6 / $6; cpu[n] = mb > 0 ? $8 * 1e6 / hz / mb : 0
      if ($1 == "haproxy-tcp") { hr[$2] = mbs[n]; hc[$2] = cpu[n] } }
    END {
      print "Bulk in tcp mode: wrk fetching one file over and over on CONNS keep-alive connections; MB/s is"
      print "the payload received (responses x size) per second, proxy CPU per MB its utime+stime over that payload."
      print ""
      print "| proxy | size | conns | MB/s | vs HAProxy | proxy CPU µs/MB | vs HAProxy | errors |"
      print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
      for (i = 1; i <= n; i++) {
        d = name[i] == "direct"
        vr = (!d && hr[sz[i]] > 0) ? sprintf("%.2f", mbs[i] / hr[sz[i]]) : "–"
        vc = (!d && hc[sz[i]] > 0) ? sprintf("%.2f", cpu[i] / hc[sz[i]]) : "–"
        cp = d ? "–" : sprintf("%.0f", cpu[i])
        s = toupper(sz[i]); sub(/[KM]$/, " &iB", s)
        printf "| %s | %s | %d | %.0f | %s | %s | %s | %d |\n", name[i], s, c[i], mbs[i], vr, cp, vc, err[i]
      }
    }' "$BULKROWS")
fi
echo "$report"
if [[ -n $RESULTS ]]; then
  node -e '
    const fs = require("fs"), [file, section] = [process.argv[1], fs.readFileSync(0, "utf8").trim() + "\n"];
    const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
    const start = text.indexOf("## Proxy (bench/proxy.sh)");
    if (start < 0) { fs.writeFileSync(file, text.replace(/\n*$/, "\n\n") + section); process.exit(0); }
    const next = text.indexOf("\n## ", start + 3);
    fs.writeFileSync(file, text.slice(0, start) + section + (next < 0 ? "" : "\n" + text.slice(next + 1)));
  ' "$RESULTS" <<<"$report"
  log "wrote the proxy section of $RESULTS"
fi
