#!/usr/bin/env bash
# A/B of two builds of `wasm-reactor serve` in one run: did a change cost
# speed? Each revision is built in its own temporary worktree; then, round
# after round, A and B are started in turn (same flags, server pinned to
# SERVER_CPU), warmed up, and loaded by one pinned wrk thread. Alternating
# the two within each round keeps the machine's drift out of the ratio.
#
#   ./bench/ab.sh 4947b43 HEAD                    # 1 KiB at 50 and 1000 connections
#   ROUNDS=5 CASES=50x1k FLAGS="--access-log" ./bench/ab.sh main HEAD
#   ./bench/ab.sh --help                          # this text
#
# (No --smoke: a run builds two worktrees, which is minutes, not seconds; the
# test suite checks its syntax and this help.)
#
# Environment [defaults]: ROUNDS [3], DURATION seconds per run [8], CASES
# [50x1k,1000x1k], FLAGS extra serve flags for both [none], SERVER_CPU /
# CLIENT_CPU [0 / 1]. Output: per case, the median requests/s and server CPU
# µs per request (utime+stime from /proc/PID/stat) of A and B, and B/A.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
case ${1:-} in
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
esac
if (( $# != 2 )); then echo "usage: bench/ab.sh REV_A REV_B (--help for more)" >&2; exit 2; fi
A=$1
B=$2
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CASES=${CASES:-50x1k,1000x1k}
FLAGS=${FLAGS:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
command -v wrk >/dev/null || { echo "bench/ab.sh: wrk is not installed (apt-get install -y wrk)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/wr-ab.XXXXXX)
SPID=""
cleanup() {
  [[ -n $SPID ]] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null || true
  for t in a b; do git -C "$REPO" worktree remove --force "$WORK/$t" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

build() { # rev dir
  git -C "$REPO" worktree add -q --detach "$2" "$1"
  ln -s "$REPO/node_modules" "$2/node_modules"
  (cd "$2" && node scripts/build.mjs >/dev/null)
}
build "$A" "$WORK/a"
build "$B" "$WORK/b"
mkdir -p "$WORK/root"
head -c 1024 /dev/urandom > "$WORK/root/1k.bin"
head -c 65536 /dev/urandom > "$WORK/root/64k.bin"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_one() { # dir conns file -> "rps us_per_req"
  local port tries
  for tries in 1 2 3; do # a random port may be taken: try another
    port=$((20000 + RANDOM % 20000))
    # shellcheck disable=SC2086
    taskset -c "$SERVER_CPU" node "$1/bin/wasm-reactor.js" serve --root "$WORK/root" --port "$port" $FLAGS \
      > "$WORK/server.log" 2>&1 &
    SPID=$!
    for _ in $(seq 200); do grep -q listening "$WORK/server.log" 2>/dev/null && break; sleep 0.05; done
    grep -q listening "$WORK/server.log" && break
    kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null || true; SPID=""
    if ((tries == 3)); then echo "bench/ab.sh: the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; fi
  done
  taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d2 "http://127.0.0.1:$port/$3" >/dev/null
  local t0; t0=$(cpu_ticks "$SPID")
  local out; out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$DURATION" "http://127.0.0.1:$port/$3")
  local t1; t1=$(cpu_ticks "$SPID")
  kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""
  local reqs; reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  local hz; hz=$(getconf CLK_TCK)
  awk -v r="$reqs" -v d="$DURATION" -v t="$((t1 - t0))" -v hz="$hz" \
    'BEGIN { printf "%.0f %.2f\n", r / d, (t / hz) * 1e6 / r }'
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "A = $A ($(git -C "$REPO" rev-parse --short "$A")), B = $B ($(git -C "$REPO" rev-parse --short "$B")); flags: ${FLAGS:-none}; $ROUNDS rounds of ${DURATION}s"
printf "%-10s %12s %12s %8s %14s %14s %8s\n" case "A req/s" "B req/s" "B/A" "A us/req" "B us/req" "B/A"
IFS=, read -ra cases <<<"$CASES"
for c in "${cases[@]}"; do
  conns=${c%x*}; file=${c#*x}.bin
  : > "$WORK/a.txt"; : > "$WORK/b.txt"
  for ((i = 0; i < ROUNDS; i++)); do
    run_one "$WORK/a" "$conns" "$file" >> "$WORK/a.txt"
    run_one "$WORK/b" "$conns" "$file" >> "$WORK/b.txt"
  done
  ra=$(cut -d' ' -f1 "$WORK/a.txt" | median); rb=$(cut -d' ' -f1 "$WORK/b.txt" | median)
  ua=$(cut -d' ' -f2 "$WORK/a.txt" | median); ub=$(cut -d' ' -f2 "$WORK/b.txt" | median)
  awk -v c="$c" -v ra="$ra" -v rb="$rb" -v ua="$ua" -v ub="$ub" \
    'BEGIN { printf "%-10s %12.0f %12.0f %8.3f %14.2f %14.2f %8.3f\n", c, ra, rb, rb / ra, ua, ub, ub / ua }'
done
