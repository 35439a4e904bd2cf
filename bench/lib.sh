# Shell functions shared by bench/http.sh and bench/proxy.sh (sourced).
# They use the caller's globals: SPID (the pid of the process being
# measured; taskset execs it), SERVER_CPU, CLIENT_CPU, QUIET_WAIT, CLK_TCK,
# and its log().

stop_server() {
  [[ -n $SPID ]] || return 0
  local pids p
  pids=$(server_pids)
  if kill -0 "$SPID" 2>/dev/null; then
    kill -TERM "$SPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  fi
  # whatever is left of it (e.g. an nginx worker whose master hung)
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$SPID" 2>/dev/null || true
  SPID=""
}

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# The server's processes: SPID and its descendants (nginx's worker, h2o's helper).
server_pids() {
  local pids=("$SPID") i=0 kids
  while (( i < ${#pids[@]} )); do
    kids=$(pgrep -P "${pids[i]}" || true)
    [[ -n $kids ]] && pids+=($kids)
    i=$((i + 1))
  done
  echo "${pids[@]}"
}
# utime+stime in clock ticks, summed over the server's processes. The comm
# field may contain spaces: cut everything up to the last ')'.
cpu_ticks() {
  local sum=0 p rest
  for p in $(server_pids); do
    rest=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $rest
    sum=$((sum + ${12} + ${13}))
  done
  echo "$sum"
}

rss_kb() {
  local sum=0 p v
  for p in $(server_pids); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# Kernel counters of refused or degraded connects (listen queue full, SYN
# queue full), summed: a connect storm the server does not absorb shows here.
listen_drops() {
  awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) name[i] = $i; h = 1; next }
         for (i = 2; i <= NF; i++) if (name[i] ~ /^(ListenOverflows|ListenDrops|TCPReqQFullDoCookies|TCPReqQFullDrop)$/) n += $i
         print n; exit }' /proc/net/netstat
}

# Busy ticks of one CPU: user+nice+system+steal from /proc/stat. Interrupt
# and softirq time are left out: loopback traffic puts the server's own
# packet handling there, and it is not someone else's load.
cpu_busy() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $9 }' /proc/stat
}
# The machine may be shared: before a measurement, wait up to QUIET_WAIT
# seconds for both cores to be nearly idle, so a run does not start in the
# middle of someone else's burst. (What still lands on the server's core
# during the run is measured and reported as "other".)
quiet_wait() {
  local i a0 b0 a1 b1
  (( QUIET_WAIT > 0 )) || return 0
  for ((i = 0; i < QUIET_WAIT * 2; i++)); do
    a0=$(cpu_busy "$SERVER_CPU"); b0=$(cpu_busy "$CLIENT_CPU")
    sleep 0.5
    a1=$(cpu_busy "$SERVER_CPU"); b1=$(cpu_busy "$CLIENT_CPU")
    # 0.5 s is CLK_TCK/2 ticks; "quiet" = under 10% busy on each core
    if (( (a1 - a0) * 20 < CLK_TCK && (b1 - b0) * 20 < CLK_TCK )); then return 0; fi
  done
  log "cores not quiet after ${QUIET_WAIT}s: measuring anyway"
}
