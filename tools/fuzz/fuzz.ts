// The fuzzer: the core, in-process and with no sockets, against a simulated
// kernel that is as unkind as the real one may be. A development tool, not
// part of the package (bundled to build/fuzz.js, outside dist/). Each
// iteration is a fresh core with random limits, driven through the same
// phases as host/loop.ts:
//
//  - clients arrive with HTTP requests (valid, pipelined, with bodies,
//    chunked, malformed) or echo bytes, mutated (byte flips, truncation,
//    duplicated segments) and delivered in random splits;
//  - writes are partial or EAGAIN at random; sendfile likewise;
//  - errno injection: ECONNRESET on reads and writes, EMFILE and
//    ECONNABORTED on accept, failed interest changes;
//  - event batches carry duplicated, reordered and stale events (events for
//    fds closed and reused earlier in the batch, older generations);
//  - JS handlers registered through the Reactor API call register,
//    deregister, modify, defer and timers from inside their callbacks;
//  - completions come back shuffled within their round (odd seeds), and in
//    half of those a connection's I/O requests stay in flight and complete
//    in a later tick (the pump's completion phase), so a buffer or fd
//    released while its request is in flight is caught;
//  - time jumps forward so timeouts and timers fire;
//  - a graceful shutdown starts at a random moment.
//
// After every core call the invariants are checked (checkInvariants(): timer
// heap, zombie flags, handler/connection agreement, buffer bounds, run
// queue), along with the simulated kernel's own rules (no request on a closed
// fd, no double close, echo output equals echo input, every
// multipart/byteranges response exact: byteranges.ts). A trap, a broken
// invariant or a livelock stops the run: the iteration's recording is saved
// in fuzz-failures/ and replays with `wasm-reactor replay FILE --check`.
//
//   npm run fuzz -- --seconds 30 [--seed N] [--out DIR]
import { writeEvent } from "./events.ts";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as abi from "../../assembly/abi.ts";
import { Core, CoreAbort, compileCore, corePath, defaultCoreConfig, type CoreConfig } from "../../host/core.ts";
import { Recorder, MemorySink, sha256File, recordCore } from "../../host/record.ts";
import { Pump, LivelockError } from "../../host/pump.ts";
import { decodeSqe, writeCqe } from "../../host/sqe.ts";
import type { Executor } from "../../host/executor.ts";
import { describeInvariant, OP_NAMES } from "../../host/abi-names.ts";
import { checkByteranges, fileByte } from "./byteranges.ts";

class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 0x9e3779b9; }
  next(): number { // mulberry32
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]; }
}

class FuzzFailure extends Error {}

/** What delay mode keeps in flight past its round: a connection's I/O (see host/executor.ts). */
const DELAYABLE = new Set([abi.OP_READ, abi.OP_WRITE, abi.OP_WRITEV, abi.OP_SEND, abi.OP_SENDFILE, abi.OP_SHUTDOWN]);

interface SimSocket {
  kind: "listener" | "conn" | "file" | "js";
  input: Uint8Array;
  pos: number;
  peerClosed: boolean;
  written: number;
  echoed: number[];       // echo: bytes written back, checked against input
  out?: Buffer[];         // HTTP: the bytes written, while under OUT_RECORD_MAX (checkByteranges)
  outBytes?: number;
  inKernel: boolean;
  mask: number;
  gen: number;
}

const enc = new TextEncoder();
/** Bytes of a connection's output kept for checking; past that it goes unchecked. */
const OUT_RECORD_MAX = 512 * 1024;
const REQUESTS = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /index.html HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n",
  "HEAD /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=10-99\r\n\r\n",
  "GET /dir HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /dir/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  "GET /a%2e%2e/b HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
  "GET /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n",
  "POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
  "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
  "BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
  "GET /" + "a".repeat(9000) + " HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
  // several ranges: multipart/byteranges (memory or sendfile body, whichever size the file gets),
  // coalesced, partly unsatisfiable, or too many (whole file)
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9,20-29,-5\r\n\r\n",
  "GET /index.html HTTP/1.1\r\nHost: a\r\nRange: bytes=5-,0-0,2-3,3-4,999999-\r\n\r\n",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=" + Array.from({ length: 17 }, (_, i) => `${2 * i}-${2 * i}`).join(",") + "\r\n\r\n",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=1-1,39990-\r\nIf-Range: \"x\"\r\n\r\n",
  // Expect: 100-continue (the 100 goes out when the body is split from the head), other expectations
  "GET /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  "POST /z HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
  "GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n",
  "GET /app.js HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, deflate, br;q=0.9\r\nUser-Agent: fuzz/1 \"x\"\r\n\r\n",
  "GET /app.js HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br;q=0, gzip;q=0.5, *;q=0.1\r\nRange: bytes=0-9\r\n\r\n",
  "HEAD /big.bin HTTP/1.1\r\nHost: a\r\nAccept-Encoding: *\r\nAccept-Encoding: gzip\r\nReferer: http://r/\xe9\r\n\r\n",
  "OPTIONS /app.js HTTP/1.1\r\nHost: a\r\nOrigin: http://o\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-a, range\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
  "GET /app.js.gz HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip;q=1.000, br;q=1\r\nIf-None-Match: \"1-2\"\r\n\r\n",
  "GET /app.js HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nRange: bytes=0-1,5-9\r\n\r\n",
];

export interface FuzzOptions { seconds: number; seed: number; outDir: string; injectTrap?: boolean; log?: (s: string) => void }
export interface FuzzResult { ok: boolean; iterations: number; steps: number; requests: number; reproducer?: string; message?: string }

export function fuzz(opts: FuzzOptions): FuzzResult {
  const module = compileCore();
  const sha = sha256File(corePath);
  const deadline = Date.now() + opts.seconds * 1000;
  let iterations = 0, steps = 0, requests = 0;
  while (Date.now() < deadline || iterations === 0) {
    const seed = (opts.seed + iterations * 0x9e3779b1) >>> 0;
    const it = new Iteration(module, sha, seed, opts.injectTrap === true && iterations === 0);
    try {
      it.run();
    } catch (e) {
      const message = e instanceof FuzzFailure || e instanceof LivelockError ? e.message
        : e instanceof WebAssembly.RuntimeError || e instanceof CoreAbort ? `trap: ${(e as Error).message}` : `host error: ${(e as Error)?.stack ?? e}`;
      mkdirSync(opts.outDir, { recursive: true });
      const file = join(opts.outDir, `seed-${seed}.rec`);
      writeFileSync(file, it.recording());
      writeFileSync(`${file}.txt`, `${message}\nseed ${seed}, step ${it.steps}\nreplay: wasm-reactor replay ${file} --check\n\nlast requests:\n${it.trace.join("\n")}\n`);
      return { ok: false, iterations: iterations + 1, steps: steps + it.steps, requests: requests + it.requests, reproducer: file, message };
    }
    iterations++;
    steps += it.steps;
    requests += it.requests;
  }
  return { ok: true, iterations, steps, requests };
}

class Iteration {
  readonly core: Core;
  private readonly x: Record<string, (...a: number[]) => number>;
  private readonly rng: Rng;
  private readonly sink = new MemorySink();
  private readonly rec: Recorder;
  private readonly pump: Pump;
  private readonly reorder: Rng | null;
  private readonly delay: boolean;
  /** Requests kept in flight (delay mode): carried out when reaped. */
  private held: { op: number; fd: number; a: number[]; tag: number; gen: number }[] = [];
  private holding = true;
  private readonly fds = new Map<number, SimSocket>();
  private readonly pending: Uint8Array[] = [];
  private readonly files = new Map<string, { kind: number; size: number; mtime: number; ino: number; flags: number }>();
  private readonly proto: number;
  private readonly config: CoreConfig;
  private time = 1_000_000;
  private jsHandlers = 0;
  private shutdown = false;
  private tasks = 0;
  steps = 0;
  requests = 0;

  constructor(module: WebAssembly.Module, sha: string, seed: number, private readonly injectTrap: boolean) {
    this.rng = new Rng(seed);
    // Every other iteration writes each round's completions in a shuffled
    // order (the core routes them by tag); its own generator, so the
    // kernel's choices for a seed stay what they were. (Not the iteration
    // with an injected trap, a test of the failure path: in order, its trap
    // lands where that test expects.)
    this.reorder = seed % 2 === 1 && !injectTrap ? new Rng(seed ^ 0x5bd1e995) : null;
    // Half of those also keep connections' I/O requests in flight and
    // complete them in a later tick (the completion phase, Pump.reap).
    this.delay = this.reorder !== null && ((seed >>> 1) & 1) === 1;
    const r = this.rng;
    this.config = {
      ...defaultCoreConfig,
      maxFds: 64,
      mode: r.chance(0.5) ? "et" : "lt",
      idleTimeoutMs: r.pick([0, 50, 1000, 30000]),
      headerTimeoutMs: r.pick([0, 30, 1000, 60000]),
      writeBufMax: r.pick([4096, 16384, 65536, 262144]),
      maxEvents: r.pick([1, 4, 16, 64]),
      maxBody: r.pick([16, 1024, 1 << 20]),
      listing: r.chance(0.5),
      accessLog: r.chance(0.5),
      accessLogFormat: r.chance(0.5) ? "combined" : "json",
      cacheControl: r.pick([null, "no-cache", "public, max-age=31536000, immutable"]),
      cors: r.chance(0.5),
      precompressed: r.chance(0.5),
    };
    this.proto = r.chance(0.6) ? abi.PROTO_HTTP : abi.PROTO_ECHO;
    this.rec = new Recorder(this.sink, {
      coreSha256: sha, config: this.config, time: [this.time, this.time], arch: process.arch,
      created: new Date().toISOString(), argv: ["fuzz", `--seed=${seed}`],
    });
    this.core = new Core(this.config, module, { addressOf: () => 0, time: [this.time, this.time] });
    this.pump = this.makePump();
    this.x = this.core.x as unknown as Record<string, (...a: number[]) => number>;
  }

  recording(): Uint8Array { this.rec.close(); return this.sink.bytes(); }

  /** The last requests carried out, for the failure report. */
  readonly trace: string[] = [];

  private fail(msg: string): never { throw new FuzzFailure(msg); }

  private check(where: string): void {
    const code = this.x.checkInvariants();
    if (code !== abi.INV_OK) this.fail(`${describeInvariant(code)} broken after ${where}`);
  }

  private lowestFreeFd(): number {
    for (let fd = 4; fd < this.config.maxFds + 8; fd++) if (!this.fds.has(fd)) return fd;
    return -1;
  }

  run(): void {
    const r = this.rng;
    // listener on fd 3
    this.fds.set(3, { kind: "listener", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
    this.x.listen(3, this.proto);
    this.pump.flush();
    // a few JS handlers on fds the simulated kernel owns
    const js = r.int(3);
    for (let i = 0; i < js; i++) this.registerJs();
    this.pump.flush();
    const ticks = 20 + r.int(60);
    for (let t = 0; t < ticks; t++) {
      this.steps++;
      // new clients
      const arrivals = r.int(4);
      for (let i = 0; i < arrivals; i++) this.pending.push(this.clientInput());
      if (this.injectTrap && t === 3) this.x.debugTrapFd(4);
      if (!this.shutdown && r.chance(0.01)) { this.shutdown = true; this.x.beginShutdown(r.int(3000)); }
      this.pump.tick(this.tickSource);
    }
    // No more arrivals; let every timeout fire (twice: a connection accepted
    // when a paused listener resumes starts its own idle clock): the core
    // must end with no connection stuck.
    this.pending.length = 0;
    this.holding = false;
    for (let round = 0; round < 2 || this.held.length > 0; round++) {
      if (round > 1000) this.fail(`${this.held.length} request(s) kept in flight were never reaped`);
      this.pump.reap();
      this.time += 120_000;
      this.setTime();
      this.pump.run("timers (final)", () => this.x.runTimers());
      this.pump.run("deferred (final)", () => this.x.runDeferred());
    }
    for (const [fd, s] of this.fds) this.checkOutput(fd, s);
    // With timeouts on, two minutes of silence leave no connection behind.
    const timeoutsOn = this.shutdown || (this.config.idleTimeoutMs > 0 && (this.proto === abi.PROTO_ECHO || this.config.headerTimeoutMs > 0));
    const live = this.core.ctlI32(abi.STAT_LIVE_CONNS);
    if (timeoutsOn && live !== 0) {
      const x = this.x;
      const alive = [...this.fds.keys()].filter((fd) => fd > 3 && x.debugConnI32(fd, abi.C_STATE) !== 0)
        .map((fd) => `fd ${fd}: state ${x.debugConnI32(fd, abi.C_STATE)} flags ${x.debugConnI32(fd, abi.C_FLAGS)} timer ${x.debugConnI32(fd, abi.C_TIMER)}`
          + ` deadline ${x.debugConnF64(fd, abi.C_DEADLINE)} inflight ${x.debugConnI32(fd, abi.C_INFLIGHT)}`);
      this.fail(`${live} connection(s) still open after every timeout expired (now ${this.time}): ${alive.slice(0, 4).join("; ")}`);
    }
  }

  /** May n more written bytes be kept for checkOutput? Up to OUT_RECORD_MAX per connection. */
  private keep(s: SimSocket, n: number): boolean {
    s.outBytes! += n;
    if (s.outBytes! > OUT_RECORD_MAX) s.out = undefined;
    return s.out !== undefined;
  }

  private checkOutput(fd: number, s: SimSocket): void {
    if (!s.out) return;
    const why = checkByteranges(Buffer.concat(s.out));
    if (why) this.fail(`fd ${fd}: ${why}`);
  }

  private setTime(): void { this.core.setTime(this.time, this.time + 1.7e12); }

  private advanceTime(): void {
    const r = this.rng;
    this.time += r.chance(0.7) ? r.int(5) : r.chance(0.8) ? r.int(200) : r.int(40_000);
    this.setTime();
  }

  /**
   * The tick's inputs: time moves on before the timers (not again after the
   * poll: the simulated kernel does not sleep) and the poll is a random
   * batch (buildBatch).
   */
  private readonly tickSource = {
    clock: (afterPoll: boolean) => { if (!afterPoll) this.advanceTime(); },
    poll: () => this.buildBatch(),
  };

  private clientInput(): Uint8Array {
    const r = this.rng;
    let bytes: Uint8Array;
    if (this.proto === abi.PROTO_ECHO) {
      bytes = new Uint8Array(r.pick([1, 10, 100, 5000, 70000]));
      for (let i = 0; i < bytes.length; i++) bytes[i] = r.int(256);
      return bytes;
    }
    const parts: string[] = [];
    const count = 1 + r.int(4);
    for (let i = 0; i < count; i++) parts.push(r.pick(REQUESTS));
    bytes = enc.encode(parts.join(""));
    if (r.chance(0.3)) {
      // mutate: flip bytes, truncate, duplicate a segment
      const m = bytes.slice();
      const flips = 1 + r.int(4);
      for (let i = 0; i < flips; i++) m[r.int(m.length)] = r.chance(0.5) ? r.int(256) : r.pick([13, 10, 32, 58, 0, 9]);
      bytes = m;
    }
    if (r.chance(0.1)) bytes = bytes.subarray(0, r.int(bytes.length));
    if (r.chance(0.1)) {
      const a = r.int(bytes.length), b = Math.min(bytes.length, a + r.int(64));
      const d = new Uint8Array(bytes.length + (b - a));
      d.set(bytes.subarray(0, b)); d.set(bytes.subarray(a), b);
      bytes = d;
    }
    return bytes;
  }

  private registerJs(): void {
    const fd = this.lowestFreeFd();
    if (fd < 0 || fd >= this.config.maxFds) return;
    this.fds.set(fd, { kind: "js", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
    const r = this.x.register(fd, abi.REACTOR_READABLE | (this.rng.chance(0.3) ? abi.REACTOR_EDGE : 0), ++this.jsHandlers);
    this.trace.push(`  js: register(${fd}) -> ${r}`);
    if (r < 0) this.fds.delete(fd);
  }

  private buildBatch(): number {
    const r = this.rng;
    const c = this.core;
    c.refresh();
    const cap = c.ctlI32(abi.CTL_EVENTS_CAP);
    const base = c.ctlI32(abi.CTL_EVENTS);
    const dv = new DataView(c.u8.buffer);
    const evs: { fd: number; ev: number; gen: number }[] = [];
    for (const [fd, s] of this.fds) {
      if (!s.inKernel || s.kind === "file") continue;
      let ev = 0;
      if (s.kind === "listener" && this.pending.length > 0) ev |= abi.EV_READABLE;
      if (s.kind === "conn" && (s.pos < s.input.length || s.peerClosed) && r.chance(0.8)) ev |= abi.EV_READABLE | (s.peerClosed ? abi.EV_HANGUP : 0);
      if (s.kind === "conn" && (s.mask & abi.EV_WRITABLE) && r.chance(0.7)) ev |= abi.EV_WRITABLE;
      if (s.kind === "js" && r.chance(0.5)) ev |= abi.EV_READABLE;
      if (s.kind === "conn" && r.chance(0.01)) ev |= abi.EV_HANGUP | abi.EV_ERROR;
      if (ev) evs.push({ fd, ev, gen: s.gen });
    }
    // duplicated, stale and reordered events
    if (evs.length && r.chance(0.2)) evs.push({ ...r.pick(evs) });
    if (r.chance(0.2)) evs.push({ fd: 4 + r.int(this.config.maxFds - 4), ev: abi.EV_READABLE, gen: r.int(3) });
    for (let i = evs.length - 1; i > 0; i--) { const j = r.int(i + 1); [evs[i], evs[j]] = [evs[j], evs[i]]; }
    const n = Math.min(evs.length, cap);
    for (let i = 0; i < n; i++) writeEvent(dv, base, i, evs[i].ev, evs[i].fd, evs[i].gen);
    return n;
  }

  /**
   * The shared pump with the simulated kernel as its executor (recorded):
   * the invariants are checked after every call into the core, a trap is a
   * failure (not contained), a phase that never ends is a livelock.
   */
  private makePump(): Pump {
    const kernel: Executor = { submit: (sq, cq, n) => this.submit(sq, cq, n) };
    if (this.delay) kernel.reap = (cq, max) => this.reap(cq, max);
    const executor = recordCore(this.core, this.rec, kernel);
    return new Pump(this.core, executor, {
      afterCall: (phase) => this.check(phase),
      onTrap: (e) => { throw e; },
      maxRounds: 10_000,
    });
  }

  /** The simulated kernel's executor: SQ[0..n) in order, results into CQ. */
  private submit(sq: number, cq: number, n: number): number {
    const c = this.core;
    c.refresh();
    let k = 0;
    for (let i = 0; i < n; i++) {
      const e = sq + i * abi.SQE_SIZE;
      const { op, fd, a0, a1, a2, a3, tag, gen } = decodeSqe(c.i32, e);
      const a = [a0, a1, a2, a3];
      if (this.delay && this.holding && DELAYABLE.has(op) && this.fds.get(fd)?.kind === "conn" && this.reorder!.chance(0.3)) {
        this.held.push({ op, fd, a, tag, gen });
        continue;
      }
      const res = this.carry(op, fd, a, "");
      c.refresh();
      writeCqe(c.i32, cq, k++, e, res);
    }
    if (this.reorder) this.shuffleCompletions(cq, k, this.reorder);
    return k;
  }

  /** One request carried out, traced. */
  private carry(op: number, fd: number, a: number[], note: string): number {
    if (this.trace.length >= 400) this.trace.shift();
    this.trace.push(`t${this.steps} ${note}${OP_NAMES[op] ?? String(op)} fd=${fd} ${a.join(" ")}`);
    const res = this.exec(op, fd, a);
    this.trace[this.trace.length - 1] += ` -> ${res}`;
    return res;
  }

  /** Delay mode's completion phase: some of the requests kept in flight, carried out now, in random order. */
  private reap(cq: number, max: number): number {
    const r = this.reorder!;
    let k = 0;
    for (let i = this.held.length - 1; i >= 0 && k < max; i--) {
      if (this.holding && !r.chance(0.5)) continue;
      const [h] = this.held.splice(i, 1);
      const res = this.carry(h.op, h.fd, h.a, "late ");
      const c = this.core;
      c.refresh();
      c.i32.set([h.tag, h.gen, res, 0], (cq + k++ * abi.CQE_SIZE) >> 2);
    }
    return k;
  }

  /** Permutes the round's n completions in the CQ (Fisher-Yates). */
  private shuffleCompletions(cq: number, n: number, r: Rng): void {
    const u8 = this.core.u8, size = abi.CQE_SIZE, tmp = new Uint8Array(size);
    for (let i = n - 1; i > 0; i--) {
      const j = r.int(i + 1);
      if (j === i) continue;
      const a = cq + i * size, b = cq + j * size;
      tmp.set(u8.subarray(a, a + size));
      u8.copyWithin(a, b, b + size);
      u8.set(tmp, b);
    }
  }

  private sock(fd: number, op: string): SimSocket {
    const s = this.fds.get(fd);
    if (!s) this.fail(`${op} on fd ${fd}, which is not open`);
    return s;
  }

  private exec(op: number, fd: number, a: number[]): number {
    const r = this.rng;
    const c = this.core;
    switch (op) {
      case abi.OP_CTL: {
        const s = this.sock(fd, "set interest");
        if (r.chance(0.005)) return -abi.ENOMEM;
        if (a[0] === abi.INTEREST_DEL) { if (!s.inKernel) return -abi.ENOENT; s.inKernel = false; return 0; }
        if (a[0] === abi.INTEREST_ADD && s.inKernel) return -abi.EEXIST;
        if (a[0] === abi.INTEREST_MOD && !s.inKernel) return -abi.ENOENT;
        s.inKernel = true; s.mask = a[1]; s.gen = a[2];
        return 0;
      }
      case abi.OP_ACCEPT: {
        this.sock(fd, "accept");
        if (r.chance(0.01)) return -abi.EMFILE;
        if (r.chance(0.01)) return -abi.ECONNABORTED;
        if (!this.pending.length) return -abi.EAGAIN;
        const nfd = this.lowestFreeFd();
        if (nfd < 0) return -abi.EMFILE;
        if (a[0] !== 0) this.peerAddress(a[0]);
        this.fds.set(nfd, { kind: "conn", input: this.pending.shift()!, pos: 0, peerClosed: r.chance(0.3), written: 0, echoed: [], inKernel: false, mask: 0, gen: 0,
          ...(this.proto === abi.PROTO_HTTP ? { out: [], outBytes: 0 } : {}) });
        return nfd;
      }
      case abi.OP_READ: {
        const s = this.sock(fd, "read");
        if (r.chance(0.01)) return -abi.ECONNRESET;
        const left = s.input.length - s.pos;
        if (left === 0) return s.peerClosed ? 0 : -abi.EAGAIN;
        const k = Math.min(a[1], left, r.chance(0.5) ? left : 1 + r.int(left));
        c.refresh();
        c.u8.set(s.input.subarray(s.pos, s.pos + k), a[0]);
        s.pos += k;
        return k;
      }
      case abi.OP_WRITE:
      case abi.OP_SEND:
      case abi.OP_WRITEV: {
        const s = this.sock(fd, "write");
        if (r.chance(0.01)) return -abi.ECONNRESET;
        const segs: [number, number][] = [];
        c.refresh();
        const dv = new DataView(c.u8.buffer);
        if (op === abi.OP_WRITE || op === abi.OP_SEND) segs.push([a[0], a[1]]);
        else for (let i = 0; i < a[1]; i++) segs.push([Number(dv.getBigUint64(a[0] + i * 16, true)), Number(dv.getBigUint64(a[0] + i * 16 + 8, true))]);
        const total = segs.reduce((t, [, l]) => t + l, 0);
        const take = r.chance(0.6) ? total : r.chance(0.5) ? 0 : r.int(total + 1);
        if (take === 0 && total > 0) return -abi.EAGAIN;
        if (this.proto === abi.PROTO_ECHO) {
          let left = take;
          for (const [p, l] of segs) { const k = Math.min(l, left); for (let i = 0; i < k; i++) s.echoed.push(c.u8[p + i]); left -= k; }
          for (let i = s.echoed.length - take; i < s.echoed.length; i++) {
            if (s.echoed[i] !== s.input[i]) this.fail(`echo on fd ${fd}: byte ${i} is ${s.echoed[i]}, sent ${s.input[i]}`);
          }
        } else if (s.written === 0 && take >= 9) {
          const head = Buffer.from(c.u8.subarray(segs[0][0], segs[0][0] + 9)).toString("latin1");
          if (head !== "HTTP/1.1 ") this.fail(`HTTP response on fd ${fd} starts with ${JSON.stringify(head)}`);
          this.requests++;
        }
        if (s.out) {
          let left = take;
          for (const [p, l] of segs) { const k = Math.min(l, left); if (k > 0 && this.keep(s, k)) s.out!.push(Buffer.from(c.u8.subarray(p, p + k))); left -= k; }
        }
        s.written += take;
        return take;
      }
      case abi.OP_SENDFILE: {
        this.sock(fd, "sendfile");
        const f = this.sock(a[0], "sendfile (file)");
        if (f.kind !== "file") this.fail(`sendfile from fd ${a[0]}, which is not a file`);
        const take = r.chance(0.6) ? a[2] : r.chance(0.3) ? 0 : r.int(a[2] + 1);
        if (take === 0 && a[2] > 0) return -abi.EAGAIN;
        c.refresh();
        const dv = new DataView(c.u8.buffer);
        const offset = Number(dv.getBigInt64(a[1], true));
        const s = this.fds.get(fd)!;
        if (s.out && take > 0 && this.keep(s, take)) {
          const b = Buffer.allocUnsafe(take);
          for (let k = 0; k < take; k++) b[k] = fileByte(offset + k);
          s.out.push(b);
        }
        dv.setBigInt64(a[1], dv.getBigInt64(a[1], true) + BigInt(take), true);
        return take;
      }
      case abi.OP_CLOSE: {
        const s = this.sock(fd, "close");
        this.checkOutput(fd, s);
        this.fds.delete(fd);
        return 0;
      }
      case abi.OP_SHUTDOWN:
        this.sock(fd, "shutdown");
        return 0;
      case abi.OP_OPEN: return this.open(a[0], a[1], a[2], a[3] === 1);
      case abi.OP_PREAD: {
        this.sock(fd, "pread");
        const k = r.chance(0.9) ? a[1] : r.int(a[1] + 1);
        c.refresh();
        for (let i = 0; i < k; i++) c.u8[a[0] + i] = fileByte(a[2] + i);
        return k;
      }
      case abi.OP_CALL: return this.jsCall(a[0], fd);
      case abi.OP_LIST: {
        this.sock(fd, "list");
        if (r.chance(0.2)) return -abi.ENOENT;
        const k = Math.min(a[1], r.int(5000));
        c.refresh();
        c.u8.fill(60, a[0], a[0] + k);
        return k;
      }
      case abi.OP_LOG: {
        if (a[2] !== abi.LOG_ACCESS) return 0;
        // Access lines are ASCII and well-formed whatever the client sent.
        c.refresh();
        const line = Buffer.from(c.u8.subarray(a[0], a[0] + a[1])).toString("latin1");
        if (!/^[\x20-\x7e]*$/.test(line)) this.fail(`access line with a byte outside printable ASCII: ${JSON.stringify(line)}`);
        if (this.config.accessLogFormat === "json") {
          try { JSON.parse(line); } catch { this.fail(`access line is not JSON: ${line}`); }
        } else if (!/^\S+ - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" \d{3} \d+ "([^"]*)" "([^"]*)"$/.test(line)) {
          this.fail(`access line is not in the combined format: ${line}`);
        }
        return 0;
      }
      case abi.OP_STOP:
        if (!this.shutdown) this.fail("OP_STOP without a shutdown");
        return 0;
      default: this.fail(`unknown op ${op}`);
    }
  }

  private open(pathPtr: number, len: number, record: number, statOnly: boolean): number {
    const r = this.rng;
    const c = this.core;
    c.refresh();
    const path = Buffer.from(c.u8.subarray(pathPtr, pathPtr + len)).toString("latin1");
    if (c.u8[pathPtr + len] !== 0) this.fail(`OP_OPEN path ${JSON.stringify(path)} is not NUL-terminated`);
    let f = this.files.get(path);
    if (!f || r.chance(0.05)) {
      const roll = r.next();
      // Sidecar bits (only with --precompressed, as the real host reports
      // them) say nothing about whether X.br / X.gz open: the core must cope
      // with a bit set and the sidecar gone, or the reverse.
      const flags = this.config.precompressed ? r.int(4) : 0;
      f = roll < 0.6 ? { kind: abi.FILE_REGULAR, size: r.pick([0, 10, 1000, 40000, 5_000_000]), mtime: 1.6e12 + r.int(1e6) * 1000, ino: r.int(1e6), flags }
        : roll < 0.75 ? { kind: abi.FILE_DIRECTORY, size: 4096, mtime: 1.6e12, ino: r.int(1e6), flags: 0 }
        : { kind: -abi.ENOENT, size: 0, mtime: 0, ino: 0, flags: 0 };
      this.files.set(path, f);
    }
    if (f.kind < 0) return f.kind;
    const dv = new DataView(c.u8.buffer);
    dv.setInt32(record + abi.FILE_KIND, f.kind, true);
    dv.setFloat64(record + abi.FILE_BYTES, f.size, true);
    dv.setFloat64(record + abi.FILE_MTIME, f.mtime, true);
    dv.setFloat64(record + abi.FILE_INO, f.ino, true);
    dv.setFloat64(record + abi.FILE_DEV, 1, true);
    dv.setInt32(record + abi.FILE_FLAGS, f.flags, true);
    const mime = enc.encode("text/html; charset=utf-8");
    c.u8.set(mime, record + abi.FILE_MIME);
    dv.setInt32(record + abi.FILE_MIME_LEN, mime.length, true);
    if (statOnly || f.kind !== abi.FILE_REGULAR) return 0;
    const fd = this.lowestFreeFd();
    if (fd < 0) return -abi.EMFILE;
    this.fds.set(fd, { kind: "file", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
    return fd;
  }

  /** What accept4 writes into an address slot: IPv4, IPv6 (mapped or not) or a family the core does not know. */
  private peerAddress(slot: number): void {
    const r = this.rng;
    const c = this.core;
    c.refresh();
    const dv = new DataView(c.u8.buffer);
    c.u8.fill(0, slot, slot + abi.ACCEPT_ADDR_SIZE);
    const roll = r.next();
    const family = roll < 0.5 ? abi.AF_INET : roll < 0.9 ? abi.AF_INET6 : 1 /* AF_UNIX */;
    dv.setUint16(slot + abi.SA_FAMILY, family, true);
    dv.setUint16(slot + abi.SA_PORT, r.int(65536), false);
    if (family === abi.AF_INET) for (let i = 0; i < 4; i++) c.u8[slot + abi.SA_IN_ADDR + i] = r.int(256);
    else if (family === abi.AF_INET6) {
      for (let i = 0; i < 16; i++) c.u8[slot + abi.SA_IN6_ADDR + i] = r.chance(0.5) ? 0 : r.int(256);
      if (r.chance(0.3)) { c.u8.fill(0, slot + abi.SA_IN6_ADDR, slot + abi.SA_IN6_ADDR + 10); dv.setUint16(slot + abi.SA_IN6_ADDR + 10, 0xffff); }
    }
    dv.setUint32(slot + abi.SA_LEN, family === abi.AF_INET ? 16 : family === abi.AF_INET6 ? 28 : 2, true);
  }

  /** A JS callback: does what application code may do from inside one. */
  private jsCall(kind: number, fd: number): number {
    const r = this.rng;
    const actions = r.int(3);
    for (let i = 0; i < actions; i++) {
      const roll = r.next();
      if (roll < 0.2) {
        const victims = [...this.fds].filter(([, s]) => s.kind === "js").map(([f]) => f);
        if (victims.length) {
          const v = r.pick(victims);
          const closing = r.chance(0.5);
          const res = this.x.deregister(v, closing ? 1 : 0);
          this.trace.push(`  js: deregister(${v}, closing=${closing}) -> ${res}`);
          if (closing) this.fds.delete(v);
        }
      } else if (roll < 0.4) this.registerJs();
      else if (roll < 0.55) { const v = [...this.fds].find(([, s]) => s.kind === "js"); if (v) this.x.modify(v[0], abi.REACTOR_READABLE | (r.chance(0.5) ? abi.REACTOR_WRITABLE : 0)); }
      else if (roll < 0.75) { if (this.tasks < 1000) { this.x.defer(++this.tasks); } }
      else if (roll < 0.9) this.x.timerStart(r.int(100), r.chance(0.3) ? 1 + r.int(50) : 0);
      else this.x.timerStop(1 + r.int(1 << 22));
    }
    void kind; void fd;
    return 0;
  }
}

// ---- command line ----------------------------------------------------------

function main(argv: string[]): number {
  let seconds = 10, seed = Date.now() >>> 0, out = "fuzz-failures", injectTrap = false;
  for (let i = 0; i < argv.length; i++) {
    const [k, v0] = argv[i].split("=", 2);
    const v = v0 ?? argv[i + 1];
    const take = () => { if (v0 === undefined) i++; return v; };
    if (k === "--seconds") seconds = Number(take());
    else if (k === "--seed") seed = Number(take()) >>> 0;
    else if (k === "--out") out = String(take());
    else if (k === "--inject-trap") injectTrap = true;
    else if (k === "--help" || k === "-h") {
      process.stdout.write("usage: npm run fuzz -- [--seconds N] [--seed N] [--out DIR] [--inject-trap]\n");
      return 0;
    } else {
      process.stderr.write(`fuzz: unknown argument ${argv[i]}\n`);
      return 2;
    }
    if (!(seconds >= 0) || Number.isNaN(seed)) { process.stderr.write("fuzz: --seconds and --seed take numbers\n"); return 2; }
  }
  process.stdout.write(`fuzz: seed ${seed}, ${seconds} s\n`);
  const r = fuzz({ seconds, seed, outDir: out, injectTrap });
  if (!r.ok) {
    process.stdout.write(`fuzz: FAILED after ${r.iterations} iterations: ${r.message}\nreproducer: ${r.reproducer}\nreplay: wasm-reactor replay ${r.reproducer} --check\n`);
    return 1;
  }
  process.stdout.write(`fuzz: ok, ${r.iterations} iterations, ${r.steps} ticks, ${r.requests} responses checked\n`);
  return 0;
}

if (process.argv[1] && /fuzz\.(js|ts)$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
