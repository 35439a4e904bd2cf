// Micro-benchmark of the timers: the heap (assembly/reactor/timers.ts) with
// 100,000 live timers, then connection deadlines on the heap (the path conn.ts
// took before the wheel, kept in assembly/reactor/wheelbench.ts) against the
// timing wheel (assembly/reactor/wheel.ts) at 10,000 and 100,000 connections.
// Called from JS the way the host calls the core, so every heap row includes
// the JS -> wasm call cost (see the "empty call" row); in the deadline rows
// each side is one call per operation too, or a call per 1 ms of loop time
// that expires inside wasm.
//
//   node bench/timers.mjs            (uses build/core.wasm, or $CORE_WASM;
//                                     LIVE=1000 for another heap size,
//                                     CONNS=10000,100000 for the deadline rows)
//   node bench/timers.mjs --smoke    (1,000 timers, one short run per row:
//                                     checks that it runs; the figures mean nothing)
//
// Each row is the median of RUNS runs of OPS operations, after one warm-up
// run; random inputs are generated before timing, from a fixed seed.
import { loadCore } from "../test/lib/core.mjs";
import { prng } from "../test/lib/prng.mjs";
import abi from "../test/lib/abi.mjs";

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
const median = (a) => { const s = [...a].sort((p, q) => p - q); return s[s.length >> 1]; };

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

// ---- connection deadlines: heap vs wheel -------------------------------------------
// Each case gets a side, heap or wheel, with the same calls: push(i, d, now)
// (setDeadline: the request path), cancel(i) (close), expire(now, rearm,
// jitter) (the timers phase of one tick; a timed-out record is re-armed at
// now + rearm + [0, jitter): a new connection on the fd).
const CONNS = (process.env.CONNS || (SMOKE ? "1000" : "10000,100000")).split(",").map(Number);
const IDLE = 30_000;
const sides = {
  heap: {
    setup(n) { x.wheelSetup(n); x.timersInit(n + 16); x.benchSeed(7); },
    pushAt: (i, d) => x.benchHeapPush(i, d),
    cancel: x.benchHeapCancel,
    expire: x.benchHeapExpire,
    timeout: x.timerPollTimeout,
    live: () => x.timerCount(),
    check: () => x.timersCheck(),
  },
  wheel: {
    setup(n) { x.wheelSetup(n); x.timersInit(16); x.benchSeed(7); },
    pushAt: (i, d, now) => x.wheelArm(i, d, now),
    cancel: x.wheelCancel,
    expire: x.benchWheelExpire,
    timeout: x.wheelTimeout,
    live: () => x.wheelCount(),
    check: () => x.wheelCheck(),
  },
};
const picks = new Int32Array(1 << 20);

/** Arms every record at now + IDLE + [0, SPAN). */
function armAll(side, n, now) {
  side.setup(n);
  for (let i = 0; i < n; i++) side.pushAt(i, now + IDLE + rand() * SPAN, now);
}

const deadlineCases = {
  // A request on a random connection pushes its deadline later (3-4 times per
  // request in http.ts): lazy on both sides.
  "push later (per request)"(side, n) {
    for (let k = 0; k < picks.length; k++) picks[k] = Math.floor(rand() * n);
    let now = 1000;
    armAll(side, n, now);
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < OPS; k++) { now += 0.001; side.pushAt(picks[k & MASK], now + IDLE + SPAN, now); }
    return process.hrtime.bigint() - t0;
  },
  // A deadline pulled earlier (linger, connect or header after idle): the
  // heap sifts up, the wheel relinks. Untimed: put them back.
  "push earlier (linger/connect)"(side, n) {
    let now = 1000;
    armAll(side, n, now);
    const ids = new Int32Array(BATCH);
    let ns = 0n;
    for (let done = 0; done < OPS; done += BATCH) {
      for (let k = 0; k < BATCH; k++) ids[k] = Math.floor(rand() * n);
      const t0 = process.hrtime.bigint();
      for (let k = 0; k < BATCH; k++) side.pushAt(ids[k], now + 500 + (k & 1023), now);
      ns += process.hrtime.bigint() - t0;
      for (let k = 0; k < BATCH; k++) { side.cancel(ids[k]); side.pushAt(ids[k], now + IDLE + rand() * SPAN, now); }
    }
    return ns;
  },
  // Close: cancel random armed records (timed), re-arm them (untimed).
  "cancel (close)"(side, n) {
    let now = 1000;
    armAll(side, n, now);
    let ns = 0n;
    for (let done = 0; done < OPS; done += BATCH) {
      // distinct records per batch: a random window of the table
      const base = Math.floor(rand() * Math.max(1, n - BATCH));
      const t0 = process.hrtime.bigint();
      for (let k = 0; k < BATCH && base + k < n; k++) side.cancel(base + k);
      ns += process.hrtime.bigint() - t0;
      for (let k = 0; k < BATCH && base + k < n; k++) side.pushAt(base + k, now + IDLE + rand() * SPAN, now);
    }
    return ns;
  },
};

// Rows timed per timeout or per record rather than per call. The loop is the
// reactor's: wait for the side's poll timeout (the heap: to the next deadline's
// ms; the wheel: to the next tick with work), then run the timers phase.
// Returns [ns, records, wakeups].
function loop(side, now, until, rearm, jitter) {
  let fired = 0, wakeups = 0;
  while (now < until) {
    const w = side.timeout(now);
    if (w < 0 || now + w > until) break;
    now += w > 0 ? w : 0.001;
    fired += side.expire(now, rearm, jitter);
    wakeups++;
  }
  return [until, fired, wakeups];
}

const periodCases = {
  // Steady churn: every deadline times out and a new connection on the fd
  // arms a fresh one (now + IDLE + [0, SPAN)). ns per timeout, the add and
  // the loop's wakeups included.
  "timeout + new deadline (add+expire)"(side, n) {
    let now = 1000;
    armAll(side, n, now);
    [now] = loop(side, now, now + IDLE + SPAN, IDLE, SPAN); // into the steady state
    const t0 = process.hrtime.bigint();
    const [, fired, wakeups] = loop(side, now, now + (IDLE + SPAN) / 2, IDLE, SPAN);
    return [process.hrtime.bigint() - t0, fired, wakeups];
  },
  // Keep-alive connections that stay busy: each deadline was pushed later
  // (lazily, untimed here) before it came up, so when it does the heap pops
  // and re-arms it (O(log n)) and the wheel moves it (O(1), cascades). ns per
  // record per idle period; nothing times out.
  "lazy re-arm per idle period"(side, n) {
    let now = 1000;
    armAll(side, n, now);
    for (let i = 0; i < n; i++) side.pushAt(i, now + 2 * (IDLE + SPAN) + rand() * SPAN, now);
    const t0 = process.hrtime.bigint();
    const [, fired, wakeups] = loop(side, now, now + IDLE + SPAN, -1, 0);
    if (fired !== 0) throw new Error("lazy re-arm: nothing should time out");
    return [process.hrtime.bigint() - t0, n, wakeups];
  },
};

const deadlineRows = [];
for (const n of CONNS) {
  for (const [name, run] of [...Object.entries(deadlineCases), ...Object.entries(periodCases)]) {
    const perOp = { heap: [], wheel: [] }, wakes = { heap: [], wheel: [] };
    for (let r = 0; r <= RUNS; r++) {
      for (const [sideName, side] of Object.entries(sides)) { // interleaved: outside load hits both alike
        const out = run(side, n);
        const [ns, count, wakeups] = Array.isArray(out) ? out : [out, OPS, undefined];
        if (!side.check()) throw new Error(`${sideName} check failed after ${name}`);
        if (r === 0) continue; // warm-up
        perOp[sideName].push(Number(ns) / Math.max(1, count));
        if (wakeups !== undefined) wakes[sideName].push(wakeups);
      }
    }
    deadlineRows.push([n, name, median(perOp.heap), median(perOp.wheel), wakes.heap.length ? [median(wakes.heap), median(wakes.wheel)] : null]);
  }
}

console.log(`timer heap, ${LIVE.toLocaleString("en")} live timers, median of ${RUNS} runs x ${OPS.toLocaleString("en")} ops (node ${process.version})`);
console.log("| operation | ns/op (median) | min | max |");
console.log("| --- | ---: | ---: | ---: |");
for (const [name, med, min, max] of rows) console.log(`| ${name} | ${med.toFixed(1)} | ${min.toFixed(1)} | ${max.toFixed(1)} |`);

console.log(`\nconnection deadlines, heap (the path before the wheel) vs wheel (G = ${abi.WHEEL_TICK_MS} ms), median of ${RUNS} runs, interleaved`);
console.log("| connections | operation | heap ns | wheel ns | heap / wheel | loop wakeups heap / wheel |");
console.log("| ---: | --- | ---: | ---: | ---: | ---: |");
for (const [n, name, h, w, wk] of deadlineRows) {
  const wakeText = wk ? `${wk[0].toLocaleString("en")} / ${wk[1].toLocaleString("en")}` : "";
  console.log(`| ${n.toLocaleString("en")} | ${name} | ${h.toFixed(1)} | ${w.toFixed(1)} | ${(h / w).toFixed(2)} | ${wakeText} |`);
}
console.log("\nmemory per armed connection deadline (bytes)");
console.log("| | in the connection record | elsewhere, per deadline | fixed |");
console.log("| --- | ---: | ---: | ---: |");
console.log("| heap | 12 (timer id, f64 deadline) | 60 (40 record + 16 heap entry + 4 due slot) | 0 |");
console.log(`| wheel | 16 (2 links, 2 ticks) | 0 | ${(abi.WHEEL_LEVELS * (1 << abi.WHEEL_LEVEL_BITS) + 1) * 4 + abi.WHEEL_LEVELS * 8} (slot heads, bitmaps) |`);
