// Micro-benchmark of event dispatch inside the core (assembly/reactor/loop.ts)
// with no OS at all: the core is loaded from build/core.wasm, built-in echo
// connections are opened by scripting completions (a listener, OP_ACCEPT
// answered with made-up fds), and each tick a batch of fake EPOLLIN events
// is written into the event area the way epoll_wait would write them.
//
//   node bench/dispatch.mjs          (uses build/core.wasm, or $CORE_WASM;
//                                     RUNS=7 OPS=2000000 to change the effort)
//
// A small "kernel" in JS carries out the core's requests: READ returns 64
// bytes once per event and -EAGAIN after that, WRITE takes everything, CTL
// and CLOSE succeed. It never touches the bytes; echo does not look at them.
//
// Per event, after one warm-up run, median of RUNS runs (min..max shown):
//   stale drop   dispatch(n) of events whose generation is stale: the floor
//                of the ingestion loop (decode, table lookup, drop).
//   dispatch     dispatch(n) of live events: decode, validate, flag, enqueue,
//                then run every queued connection (one OP_READ each). This is
//                the ingestion cost for built-in connections; events of
//                JS-registered fds become OP_CALLs and are not measured here.
//   round trip   a whole tick: runTimers, pollTimeout, dispatch and every
//                completion round it leads to (READ -> WRITE; in ET, a read
//                that fills the buffer is followed by another READ, which
//                gets -EAGAIN), then runDeferred. "core" counts only
//                time inside wasm calls (plus one clock read per call);
//                "total" adds the JS kernel (writing events, CQ results).
//   SQE/event    requests the core emitted per event in the round trip, to
//                show nothing unexpected (an OP_CTL here would be a bug).
import { loadCore } from "../test/lib/core.mjs";
import abi from "../test/lib/abi.mjs";
import { prng } from "../test/lib/prng.mjs";

const RUNS = Number(process.env.RUNS || 7);
const OPS = Number(process.env.OPS || 2_000_000); // events per run
const MSG = 64;                                    // bytes per READ
const LISTEN_FD = 3;
const FIRST_FD = 4;
const NOW_MS = 1000;                               // loop time; never advances, no timer is due
// SQE fields as word indices into the i32 view (abi.SQE_* are byte offsets).
const SQE_WORDS = abi.SQE_SIZE >> 2;
const W_OP = abi.SQE_OP >> 2, W_FD = abi.SQE_FD >> 2, W_A0 = abi.SQE_A0 >> 2, W_A1 = abi.SQE_A1 >> 2, W_A3 = abi.SQE_A3 >> 2;


/** One core instance with N built-in echo connections and a scripted kernel. */
class Bench {
  constructor({ mode, conns, maxFds, idleMs, maxEvents }) {
    this.core = loadCore();
    const x = (this.x = this.core.x);
    this.ctl = x.ctlAddress();
    this.refresh();
    const i32 = this.i32;
    const c = this.ctl >> 2;
    i32[c + (abi.CTL_EVENT_STRIDE >> 2)] = 12; // x86-64 packed struct epoll_event
    i32[c + (abi.CTL_EVENT_DATA >> 2)] = 4;
    i32[c + (abi.CFG_MAX_FDS >> 2)] = maxFds;
    i32[c + (abi.CFG_MODE >> 2)] = mode === "et" ? abi.MODE_ET : abi.MODE_LT;
    i32[c + (abi.CFG_IDLE_TIMEOUT >> 2)] = idleMs;
    i32[c + (abi.CFG_MAX_EVENTS >> 2)] = maxEvents;
    this.f64[(this.ctl + abi.CTL_NOW) >> 3] = NOW_MS;
    this.f64[(this.ctl + abi.CTL_WALL) >> 3] = Date.now();
    x.init();
    this.refresh();
    this.events = this.ctlI32(abi.CTL_EVENTS);
    this.stride = this.ctlI32(abi.CTL_EVENT_STRIDE);

    // kernel state, fd-indexed
    this.gen = new Int32Array(maxFds);      // generation the core put in epoll's data (OP_CTL a3)
    this.pending = new Uint8Array(maxFds);  // 1: a READ returns MSG bytes, then -EAGAIN
    this.ops = new Float64Array(abi.OP_COUNT);
    this.toAccept = conns;
    this.nextFd = FIRST_FD;

    if (x.listen(LISTEN_FD, abi.PROTO_ECHO) < 0) throw new Error("listen failed");
    this.pump(x.flush());
    if (this.ctlI32(abi.STAT_LIVE_CONNS) !== conns) {
      throw new Error(`expected ${conns} connections, core has ${this.ctlI32(abi.STAT_LIVE_CONNS)}`);
    }
    this.fds = Int32Array.from({ length: conns }, (_, i) => FIRST_FD + i);
  }

  refresh() {
    const buf = this.x.memory.buffer;
    if (buf === this.buffer) return;
    this.buffer = buf;
    this.i32 = new Int32Array(buf);
    this.f64 = new Float64Array(buf);
    this.u8 = new Uint8Array(buf);
  }

  ctlI32(off) { return this.i32[(this.ctl + off) >> 2]; }

  /** The kernel: carries out SQ[0..n) and writes CQ[0..n). */
  carryOut(n) {
    this.refresh();
    const i32 = this.i32, ops = this.ops, pending = this.pending;
    let q = this.ctlI32(abi.CTL_SQ) >> 2;
    const cq = this.ctlI32(abi.CTL_CQ) >> 2;
    for (let i = 0; i < n; i++, q += SQE_WORDS) {
      const op = i32[q + W_OP], fd = i32[q + W_FD];
      let r = 0;
      ops[op]++;
      if (op === abi.OP_READ) {
        if (pending[fd]) { pending[fd] = 0; r = MSG; } else r = -abi.EAGAIN;
      } else if (op === abi.OP_WRITE) {
        r = i32[q + W_A1];
      } else if (op === abi.OP_ACCEPT) {
        if (this.toAccept > 0) { this.toAccept--; r = this.nextFd++; } else r = -abi.EAGAIN;
      } else if (op === abi.OP_CTL) {
        if (i32[q + W_A0] !== abi.EPOLL_CTL_DEL) this.gen[fd] = i32[q + W_A3];
      } else if (op !== abi.OP_CLOSE) {
        throw new Error(`unexpected op ${op} on fd ${fd}`);
      }
      i32[cq + i] = r;
    }
  }

  pump(n) {
    while (n > 0) {
      this.carryOut(n);
      n = this.x.complete(n);
    }
  }

  /** K batches of `size` distinct fds in random order, as epoll_wait would write them. */
  makeBatches(size, k, rand, stale = false) {
    const batches = [];
    const fds = this.fds.slice();
    for (let b = 0; b < k; b++) {
      // partial Fisher-Yates: the first `size` entries become a random subset
      for (let i = 0; i < size; i++) {
        const j = i + Math.floor(rand() * (fds.length - i));
        const t = fds[i]; fds[i] = fds[j]; fds[j] = t;
      }
      const bytes = new Uint8Array(size * this.stride);
      const dv = new DataView(bytes.buffer);
      for (let i = 0; i < size; i++) {
        const fd = fds[i];
        dv.setUint32(i * this.stride, abi.EPOLLIN, true);
        dv.setInt32(i * this.stride + 4, fd, true);
        dv.setInt32(i * this.stride + 8, stale ? (this.gen[fd] + 1) & 0xffff : this.gen[fd], true);
      }
      batches.push({ bytes, fds: fds.slice(0, size) });
    }
    return batches;
  }

  /** "epoll_wait": writes a batch into the event area and marks its fds readable. */
  deliver(batch) {
    this.u8.set(batch.bytes, this.events);
    const pending = this.pending, fds = batch.fds;
    for (let i = 0; i < fds.length; i++) pending[fds[i]] = 1;
  }

  /** dispatch(n) only; the reads it emits are answered -EAGAIN untimed. Returns core ms. */
  runDispatch(batches, ops) {
    const x = this.x, size = batches[0].fds.length;
    let coreMs = 0;
    for (let done = 0, b = 0; done < ops; done += size, b++) {
      const batch = batches[b % batches.length];
      this.u8.set(batch.bytes, this.events); // nothing pending: the reads get EAGAIN
      const t0 = performance.now();
      const n = x.dispatch(size);
      coreMs += performance.now() - t0;
      this.pump(n);
      this.pump(x.runDeferred());
    }
    return coreMs;
  }

  /** Whole ticks. Returns [core ms, total ms]. */
  runTicks(batches, ops) {
    const x = this.x, size = batches[0].fds.length;
    let coreMs = 0;
    const start = performance.now();
    for (let done = 0, b = 0; done < ops; done += size, b++) {
      const batch = batches[b % batches.length];
      let t0 = performance.now();
      let n = x.runTimers();
      x.pollTimeout();
      coreMs += performance.now() - t0;
      if (n > 0) throw new Error("a timer fired");
      this.deliver(batch);
      t0 = performance.now();
      n = x.dispatch(size);
      coreMs += performance.now() - t0;
      while (n > 0) {
        this.carryOut(n);
        t0 = performance.now();
        n = x.complete(n);
        coreMs += performance.now() - t0;
      }
      t0 = performance.now();
      n = x.runDeferred();
      coreMs += performance.now() - t0;
      if (n > 0) throw new Error("runDeferred emitted requests");
    }
    return [coreMs, performance.now() - start];
  }
}

const median = (a) => { const s = [...a].sort((p, q) => p - q); return s[s.length >> 1]; };
const fmt = (a) => `${median(a).toFixed(1)} (${Math.min(...a).toFixed(1)}..${Math.max(...a).toFixed(1)})`;

/** Sets up one configuration: a core with its connections and its event batches. */
function prepare(cfg) {
  const bench = new Bench({ maxFds: 16384, maxEvents: 1024, ...cfg });
  const rand = prng(2024);
  return {
    cfg,
    bench,
    live: bench.makeBatches(cfg.batch, 64, rand),
    stale: bench.makeBatches(cfg.batch, 64, rand, true),
    ops: Math.max(cfg.batch, Math.floor(OPS / cfg.batch) * cfg.batch),
    stats: { stale: [], dispatch: [], core: [], total: [] },
    memBefore: 0,
  };
}

/** One run of one configuration; r < 0 is the warm-up (JIT, pools carve their buffers). */
function runOnce(p, r) {
  const { bench, ops, stats } = p;
  if (r === 0) p.memBefore = bench.x.memory.buffer.byteLength;
  const staleMs = bench.runDispatch(p.stale, ops);
  const dispatchMs = bench.runDispatch(p.live, ops);
  bench.ops.fill(0);
  const [coreMs, totalMs] = bench.runTicks(p.live, ops);
  if (r < 0) return;
  stats.stale.push((staleMs * 1e6) / ops);
  stats.dispatch.push((dispatchMs * 1e6) / ops);
  stats.core.push((coreMs * 1e6) / ops);
  stats.total.push((totalMs * 1e6) / ops);
  p.sqePerEvent = bench.ops.reduce((sum, v) => sum + v, 0) / ops;
  p.opMix = ["READ", "WRITE", "CTL", "CLOSE"]
    .map((name) => [name, bench.ops[abi[`OP_${name}`]] / ops])
    .filter(([, v]) => v > 0)
    .map(([name, v]) => `${name} ${v.toFixed(2)}`)
    .join(", ");
}

function check(p) {
  if (p.bench.x.memory.buffer.byteLength !== p.memBefore) throw new Error("memory grew on the hot path");
  if (p.bench.ctlI32(abi.STAT_LIVE_CONNS) !== p.cfg.conns) throw new Error("connections were lost");
}

/** The clock read and an empty wasm call: the fixed costs inside each "core" interval. */
function fixedCosts() {
  const { x } = loadCore();
  const N = 5_000_000;
  let t0 = performance.now();
  let sink = 0;
  for (let i = 0; i < N; i++) sink += performance.now();
  const clock = ((performance.now() - t0) * 1e6) / N;
  t0 = performance.now();
  for (let i = 0; i < N; i++) sink += x.arenaSize();
  const call = ((performance.now() - t0) * 1e6) / N;
  if (sink === 0) throw new Error("sink");
  return { clock, call };
}

const configs = [
  { mode: "lt", conns: 1024, batch: 1024, idleMs: 0 },
  { mode: "et", conns: 1024, batch: 1024, idleMs: 0 },
  { mode: "lt", conns: 10000, batch: 1024, idleMs: 0 },
  { mode: "et", conns: 10000, batch: 1024, idleMs: 0 },
  { mode: "lt", conns: 10000, batch: 1024, idleMs: 30000 },
  { mode: "lt", conns: 1024, batch: 64, idleMs: 0 },
  { mode: "et", conns: 1024, batch: 64, idleMs: 0 },
];

// Runs are interleaved (run 1 of every configuration, then run 2...), so a
// burst of load from elsewhere on a shared machine spreads over all rows
// instead of spoiling one.
const fixed = fixedCosts();
const prepared = configs.map(prepare);
for (let r = -1; r < RUNS; r++) for (const p of prepared) runOnce(p, r);
prepared.forEach(check);
const rows = prepared.map((p) => ({ ...p.cfg, ...p.stats, sqePerEvent: p.sqePerEvent, opMix: p.opMix }));
console.log(`event dispatch, ns per event, median of ${RUNS} runs x ${OPS.toLocaleString("en")} events (min..max) (node ${process.version})`);
console.log(`fixed costs: performance.now() ${fixed.clock.toFixed(1)} ns, empty wasm call ${fixed.call.toFixed(1)} ns (one clock read per core call is inside "core")`);
console.log("| mode | conns | batch | idle timeout | stale drop | dispatch | round trip, core | round trip, total | SQE/event |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
for (const r of rows) {
  console.log(
    `| ${r.mode} | ${r.conns} | ${r.batch} | ${r.idleMs ? `${r.idleMs / 1000} s` : "none"} | ${fmt(r.stale)} | ${fmt(r.dispatch)} | ${fmt(r.core)} | ${fmt(r.total)} | ${r.sqePerEvent.toFixed(2)}: ${r.opMix} |`,
  );
}
