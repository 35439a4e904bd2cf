#!/usr/bin/env bash
# Parser throughput matrix: 3 parsers x 3 corpora x {single, pipelined}
# (see bench/parse.mjs for what each parser does per request).
#
#   bench/parse.sh            full run, ~7 min; writes the "## Parser
#                             (bench/parse.sh)" section of bench/RESULTS.md
#   bench/parse.sh --no-write same, prints the section only
#   bench/parse.sh --smoke    a few seconds: one round of the in-process cases
#                             of corpus 703 at 0.02 s each, no calibration, no
#                             hyperfine; prints the section, writes nothing.
#                             Checks that the pipeline runs; figures mean nothing.
#
# Knobs (environment): ROUNDS=3 in-process rounds, SECONDS_EACH=2 per
# in-process case after WARMUP=1 s untimed, HF_SECONDS=1 target length of a
# hyperfine run, HF_RUNS=5.
#
# 1. calibration: each case runs 0.5 s in-process (after the warm-up); its
#    rate picks the --iterations that make a hyperfine run last ~HF_SECONDS.
# 2. in-process: ROUNDS rounds, each running every case once (--seconds
#    SECONDS_EACH), so the parsers meet the same machine load; medians.
# 3. hyperfine: one invocation per corpus and mode with the three parsers
#    side by side, plus one with `--iterations 0` per parser (start-up:
#    node, module load, wasm compile), which the report subtracts.
#
# The machine is shared: the report gives wall-clock rates and rates per CPU
# second (user + system of the process), and the load average.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-2}
WARMUP=${WARMUP:-1}
HF_SECONDS=${HF_SECONDS:-1}
HF_RUNS=${HF_RUNS:-5}
WRITE=1
SMOKE=0
case "${1:-}" in
  "") ;;
  --no-write) WRITE=0 ;;
  --smoke) WRITE=0; SMOKE=1; ROUNDS=1; SECONDS_EACH=0.02; WARMUP=0 ;;
  *) echo "bench/parse.sh: unknown argument '$1' (--no-write, --smoke)" >&2; exit 2 ;;
esac

if [ "$SMOKE" = 0 ]; then
  command -v hyperfine >/dev/null || { echo "hyperfine not found (apt-get install -y hyperfine)" >&2; exit 1; }
fi
[ -f build/core.wasm ] || node scripts/build.mjs
[ -f node_modules/undici/lib/llhttp/llhttp_simd-wasm.js ] || { echo "undici missing: npm install" >&2; exit 1; }

OUT=$(mktemp -d /tmp/parse-bench.XXXXXX)
# Measure one fixed build even if build/ is rewritten during the run.
cp build/core.wasm "$OUT/core.wasm"
export CORE_WASM="$OUT/core.wasm"
if [ "$SMOKE" = 1 ]; then trap 'rm -rf "$OUT"' EXIT; else echo "results in $OUT"; fi

PARSERS=(wasm llhttp-wasm node)
CORPORA=(703 min browser)
[ "$SMOKE" = 1 ] && CORPORA=(703)
MODES=(single pipelined)
flag() { [ "$1" = pipelined ] && echo --pipelined || true; }
bench() { node bench/parse.mjs "$@"; }

{
  echo "{"
  echo "\"command\": \"ROUNDS=$ROUNDS SECONDS_EACH=$SECONDS_EACH WARMUP=$WARMUP HF_SECONDS=$HF_SECONDS HF_RUNS=$HF_RUNS bench/parse.sh${1:+ $1}\","
  echo "\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "\"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\","
  echo "\"cores\": $(nproc),"
  echo "\"node\": \"$(node --version)\","
  echo "\"hyperfine\": \"$(if [ "$SMOKE" = 1 ]; then echo "hyperfine not run (--smoke)"; else hyperfine --version; fi)\","
  echo "\"commit\": \"$(git rev-parse --short HEAD)\","
  echo "\"coreSha256\": \"$(sha256sum "$CORE_WASM" | cut -c1-16)\","
  echo "\"loadBefore\": \"$(cut -d' ' -f1-3 /proc/loadavg)\""
  echo "}"
} > "$OUT/meta.json"

: > "$OUT/calibration.tsv"
# The calibration only sizes the hyperfine runs, which --smoke skips.
[ "$SMOKE" = 1 ] || echo "== calibration (0.5 s each after ${WARMUP} s warm-up)"
[ "$SMOKE" = 1 ] || for c in "${CORPORA[@]}"; do for m in "${MODES[@]}"; do for p in "${PARSERS[@]}"; do
  j=$(bench --parser "$p" --corpus "$c" $(flag "$m") --seconds 0.5 --warmup "$WARMUP" --json)
  passes=$(node -e 'const r=JSON.parse(process.argv[1]); console.log(Math.max(1, Math.round(r.reqPerSec * process.argv[2] / r.copies)))' "$j" "$HF_SECONDS")
  printf '%s\t%s\t%s\t%s\n' "$p" "$c" "$m" "$passes" >> "$OUT/calibration.tsv"
  echo "$p $c $m: $passes passes"
done; done; done
passes() { awk -v p="$1" -v c="$2" -v m="$3" '$1==p && $2==c && $3==m {print $4}' "$OUT/calibration.tsv"; }

# One summary line from a --json result.
show() { node -e 'const r = JSON.parse(process.argv[1]);
  const f = (x) => (x / 1e6).toFixed(2).padStart(6);
  console.log(`${r.parser.padEnd(11)} ${r.corpus.padEnd(7)} ${(r.pipelined ? "pipelined" : "single").padEnd(9)} ` +
    `${f(r.reqPerSec)} M req/s ${r.mbPerSec.toFixed(0).padStart(5)} MB/s ${f(r.reqPerCpuSec)} M req/CPU-s`)' "$1"; }

echo "== in-process: $ROUNDS rounds x ${SECONDS_EACH} s per case"
: > "$OUT/inproc.jsonl"
for r in $(seq "$ROUNDS"); do
  echo "-- round $r"
  for c in "${CORPORA[@]}"; do for m in "${MODES[@]}"; do for p in "${PARSERS[@]}"; do
    j=$(bench --parser "$p" --corpus "$c" $(flag "$m") --seconds "$SECONDS_EACH" --warmup "$WARMUP" --json)
    echo "$j" >> "$OUT/inproc.jsonl"
    show "$j"
  done; done; done
done

if [ "$SMOKE" = 1 ]; then
  echo "== hyperfine: skipped (--smoke)"
else
  echo "== hyperfine: start-up (--iterations 0)"
  args=()
  for p in "${PARSERS[@]}"; do args+=(-n "$p" "node bench/parse.mjs --parser $p --corpus 703 --iterations 0"); done
  hyperfine -N --style basic --warmup 1 --runs $((HF_RUNS * 2)) --export-json "$OUT/hf-startup.json" "${args[@]}"

  for c in "${CORPORA[@]}"; do for m in "${MODES[@]}"; do
    echo "== hyperfine: corpus $c, $m"
    args=()
    for p in "${PARSERS[@]}"; do
      args+=(-n "$p" "node bench/parse.mjs --parser $p --corpus $c $(flag "$m") --iterations $(passes "$p" "$c" "$m")")
    done
    hyperfine -N --style basic --warmup 1 --runs "$HF_RUNS" --export-json "$OUT/hf-$c-$m.json" "${args[@]}"
  done; done
fi

node -e 'const fs = require("fs"); const f = process.argv[1]; const m = JSON.parse(fs.readFileSync(f));
  m.loadAfter = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  fs.writeFileSync(f, JSON.stringify(m, null, 1));' "$OUT/meta.json"

if [ "$WRITE" = 1 ]; then node bench/parse-report.mjs "$OUT" --write; else node bench/parse-report.mjs "$OUT"; fi
