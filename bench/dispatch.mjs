// Micro-benchmark of event dispatch inside the core (assembly/reactor/loop.ts)
// with no OS at all: the core is loaded from build/core.wasm, built-in echo
// connections are opened through the fake host of the tests, and each tick a
// batch of fake READABLE events is written into the event area the way
// epoll_wait would write them.
//
//   node bench/dispatch.mjs          (uses build/core.wasm, or $CORE_WASM;
//                                     RUNS=7 OPS=2000000 to change the effort)
//   node bench/dispatch.mjs --smoke  (one run of one batch per row: checks
//                                     that it runs; the figures mean nothing)
//
// The pump is the host's own (host/pump.ts, through test/lib/fakehost.mjs),
// not a copy (a copy of it drifted once and this benchmark stopped running):
// this file only supplies its executor (the lean kernel below). Connections are opened with its socket
// and accept model: N in the listener's backlog, the listener reported
// readable every tick until accept4 says EAGAIN, as level-triggered epoll
// would (the core accepts in adaptive batches, assembly/reactor/listener.ts,
// so that takes several ticks). Events are encoded by FakeHost.events() once
// per batch and copied back in before each dispatch.
//
// In the timed loops a lean kernel that allocates nothing per request
// answers READ (64 bytes once per event, -EAGAIN after that) and WRITE
// (everything); CTL and CLOSE go to the fake host's own model. It never
// touches the bytes; echo does not look at them.
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
//                "total" adds the JS kernel and the pump (writing events,
//                CQ results).
//   SQE/event    requests the core emitted per event in the round trip, to
//                show nothing unexpected (an OP_CTL here would be a bug).
import { FakeHost } from "../test/lib/fakehost.mjs";
import { loadCore } from "../test/lib/core.mjs";
import abi from "../test/lib/abi.mjs";
import { prng } from "../test/lib/prng.mjs";
import { decodeSqe } from "../build/sqe.js";

const args = process.argv.slice(2);
for (const a of args) if (a !== "--smoke") { console.error(`dispatch.mjs: unknown argument ${a} (only --smoke)`); process.exit(2); }
const SMOKE = args.includes("--smoke");
const RUNS = SMOKE ? 1 : Number(process.env.RUNS || 7);
const OPS = SMOKE ? 1 : Number(process.env.OPS || 2_000_000); // events per run (at least one batch)
const FIXED_CALLS = SMOKE ? 10_000 : 5_000_000;
const MSG = 64;                                    // bytes per READ
const LISTEN_FD = 3;
const FIRST_FD = 4;
const NOW_MS = 1000;                               // loop time; never advances, no timer is due
// SQE/CQE fields as word indices into the i32 view (abi.SQE_*, CQE_* are byte offsets).
const SQE_WORDS = abi.SQE_SIZE >> 2, CQE_WORDS = abi.CQE_SIZE >> 2;
const W_FD = abi.SQE_FD >> 2, W_LEN = abi.SQE_LEN >> 2, W_TAG = abi.SQE_USER_DATA >> 2, C_RES = abi.CQE_RES >> 2;

/** One core instance with N built-in echo connections and a scripted kernel. */
class Bench extends FakeHost {
  constructor({ mode, conns, maxFds, idleMs, maxEvents }) {
    super({ config: { maxFds, mode, idleTimeoutMs: idleMs, maxEvents, protocol: abi.PROTO_ECHO }, time: NOW_MS });
    this.keepLog = false;
    this.fast = false;                      // true: the lean kernel below answers READ and WRITE
    this.coreMs = 0;
    this.pending = new Uint8Array(maxFds);  // 1: a READ returns MSG bytes, then -EAGAIN
    this.ops = new Float64Array(abi.OP_COUNT);

    // Open the connections the way a kernel would offer them: N in the
    // listener's backlog, the listener readable (LT: reported every tick)
    // until accept4 says EAGAIN.
    this.listen(LISTEN_FD, abi.PROTO_ECHO);
    this.fds = Int32Array.from({ length: conns }, (_, i) => FIRST_FD + i);
    this.queueAccept(LISTEN_FD, ...this.fds);
    for (let ticks = 0; this.stat(abi.STAT_LIVE_CONNS) < conns; ticks++) {
      if (ticks > conns) throw new Error(`expected ${conns} connections, core has ${this.stat(abi.STAT_LIVE_CONNS)} after ${ticks} ticks`);
      this.tick([{ fd: LISTEN_FD, events: abi.EV_READABLE }]);
    }
    if (this.traps.length) throw new Error(`core trapped while connecting: ${this.traps[0].message}`);
    this.events0 = this.ctlI32(abi.CTL_EVENTS);
    this.refresh();
    this.fast = true;
  }

  refresh() {
    const buf = this.x.memory.buffer;
    if (buf === this.buffer) return;
    this.buffer = buf;
    this.fastI32 = new Int32Array(buf);
    this.fastU8 = new Uint8Array(buf);
  }

  /** The lean kernel, the pump's executor: carries out SQ[0..n) and writes CQ[0..n). */
  carryOut(n, sq, cqAt) {
    if (!this.fast) return super.carryOut(n, sq, cqAt);
    if (this.phase === "timers" || this.phase === "deferred") throw new Error(`phase ${this.phase} emitted ${n} requests`);
    this.refresh();
    const i32 = this.fastI32, ops = this.ops, pending = this.pending;
    let q = sq >> 2, c = cqAt >> 2;
    for (let i = 0; i < n; i++, q += SQE_WORDS, c += CQE_WORDS) {
      const op = i32[q] & 0xff, fd = i32[q + W_FD];
      let r;
      ops[op]++;
      if (op === abi.OP_READ) {
        if (pending[fd]) { pending[fd] = 0; r = MSG; } else r = -abi.EAGAIN;
      } else if (op === abi.OP_WRITE) {
        r = i32[q + W_LEN]; // the length
      } else if (op === abi.OP_CTL || op === abi.OP_CLOSE) {
        r = this.respond(decodeSqe(i32, q << 2));
        this.refresh();
      } else {
        throw new Error(`unexpected op ${op} on fd ${fd}`);
      }
      const out = this.fastI32; // the completion: the request's tag and its result
      out[c] = out[q + W_TAG];
      out[c + 1] = out[q + W_TAG + 1];
      out[c + C_RES] = r;
      out[c + 3] = 0;
    }
  }

  /**
   * The core's exports with the calls of a tick timed (into coreMs): the
   * pump reads `this.x` at the start of each phase, so runTicks() swaps
   * this in for its timed loop.
   */
  timedExports() {
    const x = this.x, timed = { ...x };
    for (const name of ["runTimers", "pollTimeout", "dispatch", "runDeferred", "complete", "recover"]) {
      const fn = x[name];
      timed[name] = (...a) => {
        const t0 = performance.now();
        try { return fn(...a); } finally { this.coreMs += performance.now() - t0; }
      };
    }
    return timed;
  }

  /** K batches of `size` distinct fds in random order, as epoll_wait would write them. */
  makeBatches(size, k, rand, stale = false) {
    const batches = [];
    const fds = this.fds.slice();
    const stride = abi.EVENT_SIZE;
    for (let b = 0; b < k; b++) {
      // partial Fisher-Yates: the first `size` entries become a random subset
      for (let i = 0; i < size; i++) {
        const j = i + Math.floor(rand() * (fds.length - i));
        const t = fds[i]; fds[i] = fds[j]; fds[j] = t;
      }
      const items = Array.from(fds.subarray(0, size), (fd) =>
        ({ fd, events: abi.EV_READABLE, gen: stale ? (this.lastGen.get(fd) + 1) & 0xffff : undefined }));
      // FakeHost writes the records; keep a copy to put back before each dispatch
      this.events(items);
      const bytes = this.u8.slice(this.events0, this.events0 + size * stride);
      batches.push({ bytes, fds: fds.slice(0, size) });
    }
    return batches;
  }

  /** "epoll_wait": writes a batch into the event area and marks its fds readable. */
  deliver(batch) {
    this.refresh();
    this.fastU8.set(batch.bytes, this.events0);
    const pending = this.pending, fds = batch.fds;
    for (let i = 0; i < fds.length; i++) pending[fds[i]] = 1;
  }

  /** dispatch(n) only; the reads it emits are answered -EAGAIN untimed. Returns core ms. */
  runDispatch(batches, ops) {
    const x = this.x, size = batches[0].fds.length;
    let coreMs = 0;
    for (let done = 0, b = 0; done < ops; done += size, b++) {
      const batch = batches[b % batches.length];
      this.refresh();
      this.fastU8.set(batch.bytes, this.events0); // nothing pending: the reads get EAGAIN
      this.drain("dispatch", () => {
        const t0 = performance.now();
        const n = x.dispatch(size);
        coreMs += performance.now() - t0;
        return n;
      });
      this.runDeferred();
    }
    return coreMs;
  }

  /** Whole ticks. Returns [core ms, total ms]. */
  runTicks(batches, ops) {
    const size = batches[0].fds.length;
    this.coreMs = 0;
    const plain = this.x;
    this.x = this.timed ??= this.timedExports();
    let b = 0;
    const source = { clock() {}, poll: () => { this.deliver(batches[b++ % batches.length]); return size; } };
    const start = performance.now();
    for (let done = 0; done < ops; done += size) this.pump.tick(source);
    this.x = plain;
    return [this.coreMs, performance.now() - start];
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
  if (p.bench.stat(abi.STAT_LIVE_CONNS) !== p.cfg.conns) throw new Error("connections were lost");
  if (p.bench.traps.length) throw new Error(`the core trapped: ${p.bench.traps[0].message}`);
}

/** The clock read and an empty wasm call: the fixed costs inside each "core" interval. */
function fixedCosts() {
  const { x } = loadCore();
  const N = FIXED_CALLS;
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
console.log(`event dispatch, ns per event, median of ${RUNS} runs x ${SMOKE ? "one batch" : `${OPS.toLocaleString("en")} events`} (min..max) (node ${process.version})`);
console.log(`fixed costs: performance.now() ${fixed.clock.toFixed(1)} ns, empty wasm call ${fixed.call.toFixed(1)} ns (one clock read per core call is inside "core")`);
console.log("| mode | conns | batch | idle timeout | stale drop | dispatch | round trip, core | round trip, total | SQE/event |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
for (const r of rows) {
  console.log(
    `| ${r.mode} | ${r.conns} | ${r.batch} | ${r.idleMs ? `${r.idleMs / 1000} s` : "none"} | ${fmt(r.stale)} | ${fmt(r.dispatch)} | ${fmt(r.core)} | ${fmt(r.total)} | ${r.sqePerEvent.toFixed(2)}: ${r.opMix} |`,
  );
}
