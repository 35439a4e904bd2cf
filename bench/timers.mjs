// Micro-benchmark of the timer heap (assembly/reactor/timers.ts) with 100,000 live
// timers, called from JS the way the host calls it, so every number includes
// the JS -> wasm call cost (see the "empty call" row).
//
//   node bench/timers.mjs            (uses build/core.wasm, or $CORE_WASM;
//                                     LIVE=1000 for another heap size)
//   node bench/timers.mjs --smoke    (1,000 timers, one short run per row:
//                                     checks that it runs; the figures mean nothing)
//
// Each row is the median of RUNS runs of OPS operations, after one warm-up
// run; random inputs are generated before timing, from a fixed seed.
import { loadCore } from "../test/lib/core.mjs";
import { prng } from "../test/lib/prng.mjs";

const args = process.argv.slice(2);
for (const a of args) if (a !== "--smoke") { console.error(`timers.mjs: unknown argument ${a} (only --smoke)`); process.exit(2); }
const SMOKE = args.includes("--smoke");
const LIVE = SMOKE ? 1000 : Number(process.env.LIVE || 100_000);
const BATCH = SMOKE ? 1000 : 10_000;   // ops timed together; untimed work restores the heap
const OPS = SMOKE ? 10_000 : 2_000_000; // per run
const RUNS = SMOKE ? 1 : 7;
const SPAN = 60_000;      // deadlines spread over a minute, ms

const { x } = loadCore();

const rand = prng(2024);
const offsets = new Float64Array(1 << 20).map(() => rand() * SPAN);
const MASK = offsets.length - 1;
let cursor = 0;
const nextOffset = () => offsets[cursor++ & MASK];

function fill(capacity) {
  x.timersInit(capacity);
  const ids = new Int32Array(capacity);
  for (let i = 0; i < LIVE; i++) ids[i] = x.timerAdd(nextOffset(), 0, 0, i);
  return ids;
}

const now = () => process.hrtime.bigint();

// Each function returns the nanoseconds spent in OPS timed operations.
const cases = {
  "empty call (timerCount)"() {
    fill(LIVE);
    const t0 = now();
    let sink = 0;
    for (let i = 0; i < OPS; i++) sink += x.timerCount();
    const ns = now() - t0;
    if (sink !== LIVE * OPS) throw new Error("sink");
    return ns;
  },
  timerAdd() {
    // add BATCH (timed), cancel them again (untimed): 100k..110k live
    fill(LIVE + BATCH);
    const ids = new Int32Array(BATCH);
    let ns = 0n;
    for (let done = 0; done < OPS; done += BATCH) {
      const t0 = now();
      for (let i = 0; i < BATCH; i++) ids[i] = x.timerAdd(nextOffset(), 0, 0, i);
      ns += now() - t0;
      for (let i = 0; i < BATCH; i++) x.timerCancel(ids[i]);
    }
    return ns;
  },
  "timerCancel (random live id)"() {
    // cancel BATCH random live timers (timed), add replacements (untimed):
    // 110k..100k live
    const ids = fill(LIVE + BATCH);
    for (let i = LIVE; i < LIVE + BATCH; i++) ids[i] = x.timerAdd(nextOffset(), 0, 0, i);
    const n = ids.length;
    let ns = 0n;
    for (let done = 0; done < OPS; done += BATCH) {
      // move BATCH random ids to the front: a partial Fisher-Yates shuffle
      for (let i = 0; i < BATCH; i++) {
        const j = i + Math.floor(rand() * (n - i));
        const t = ids[i]; ids[i] = ids[j]; ids[j] = t;
      }
      const t0 = now();
      for (let i = 0; i < BATCH; i++) x.timerCancel(ids[i]);
      ns += now() - t0;
      for (let i = 0; i < BATCH; i++) ids[i] = x.timerAdd(nextOffset(), 0, 0, i);
    }
    return ns;
  },
  "add+pop+free"() {
    // the one-shot path at steady state: add one, pop the earliest, free it;
    // `base` advances so new deadlines stay ahead of the heap's minimum
    fill(LIVE + 1);
    let base = 0;
    const step = SPAN / LIVE;
    const t0 = now();
    for (let i = 0; i < OPS; i++) {
      x.timerAdd((base += step) + nextOffset(), 0, 0, i);
      x.timerFree(x.timerPopDue(Infinity));
    }
    return now() - t0;
  },
  "pop+rearm"() {
    // the interval path: pop the earliest and re-arm it later
    fill(LIVE);
    let base = 0;
    const step = SPAN / LIVE;
    const t0 = now();
    for (let i = 0; i < OPS; i++) x.timerRearm(x.timerPopDue(Infinity), (base += step) + nextOffset());
    return now() - t0;
  },
};

const median = (a) => { const s = [...a].sort((p, q) => p - q); return s[s.length >> 1]; };
const rows = [];
for (const [name, run] of Object.entries(cases)) {
  run(); // warm-up: JIT and caches
  const perOp = [];
  for (let r = 0; r < RUNS; r++) {
    perOp.push(Number(run()) / OPS);
    if (!x.timersCheck()) throw new Error(`timersCheck failed after ${name}`);
  }
  rows.push([name, median(perOp), Math.min(...perOp), Math.max(...perOp)]);
}

console.log(`timer heap, ${LIVE.toLocaleString("en")} live timers, median of ${RUNS} runs x ${OPS.toLocaleString("en")} ops (node ${process.version})`);
console.log("| operation | ns/op (median) | min | max |");
console.log("| --- | ---: | ---: | ---: |");
for (const [name, med, min, max] of rows) console.log(`| ${name} | ${med.toFixed(1)} | ${min.toFixed(1)} | ${max.toFixed(1)} |`);
