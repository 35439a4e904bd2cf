// Recording the core's inputs, for deterministic replay (host/replay.ts).
//
// The core is sans-IO: given the same calls with the same arguments, the same
// bytes written into its memory by the host (event batches, bytes read,
// file records, results) and the same time values, it emits the same
// requests. So a recording is exactly that stream, in order, plus the
// core's outputs (return values, submission queues and the bytes each
// request points at) to check against.
//
// File format (little-endian), version 3:
//   header:  "WRREPLAY" (8 bytes) | u32 version | u32 n | n bytes of JSON:
//            { coreSha256, config, time: [mono, wall], arch, created, argv }
//   frames:  u8 type | u32 payload length | payload
//     F_TIME  f64 mono, f64 wall           (setTime)
//     F_CALL  u8 export, f64 args...       (a call into the core)
//     F_RET   f64 value                    (what it returned)
//     F_SQ    n * SQE_SIZE bytes           (the requests it emitted, when it returns a count:
//                                           64-byte io_uring-shaped SQEs, tags included)
//     F_OUT   u8 cut, n * (u32 len | len bytes)
//                                          (once per F_SQ, before the next F_CALL or F_END: the
//                                           out-bytes of each of its n requests, in order)
//     F_MEM   u32 address, bytes           (the host wrote these bytes into linear memory)
//     F_TRAP  (nothing)                    (the call trapped; recover() follows)
//     F_END   (nothing)                    (the recording was closed cleanly)
//
// Out-bytes (F_OUT): what a request hands the kernel or the host beyond
// its SQE, laid end to end per request (the arguments a0..a3 as
// host/sqe.ts decodes them):
//   OP_WRITE, OP_SEND  the a1 bytes at a0
//   OP_WRITEV          a1 entries of {u32 offset in linear memory, u32 length}
//                      (the native iovecs at a0, absolute addresses made
//                      relative with CTL_MEM_BASE, so they compare across
//                      runs), then the bytes of every segment, in order
//   OP_SENDFILE        the 8-byte file offset at a1, as it was before the call
//   (OP_SPLICE         nothing: the bytes move between fds, never through memory;
//    OP_PIPE hands out the two i32 at a0 the host fills: an F_MEM input)
//   OP_OPEN            the path: a1 bytes at a0
//   OP_LIST            the path: a2 bytes at a0
//   OP_LOG             the text: a1 bytes at a0
//   OP_CONNECT         the sockaddr: a3 bytes at a0
//   anything else      nothing (OP_READ/OP_PREAD/OP_ACCEPT hand out buffers
//                      the host fills; what it wrote is an F_MEM input)
// The iovec table, offset, paths and text are taken when the core returns
// the round (the host then overwrites some: the kernel moves the offset, a
// listing replaces its path). Write data (buffer, segments) is taken when
// F_OUT is written, just before complete(n) hands the round's results back
// (after their F_MEM): cut = 1 and the data is cut to what the kernel took
// (its result; none on an error), so a write retried after EAGAIN is not
// stored twice: its rest is compared when the core retries it. A round
// still open at the next other call or at close() is written whole, cut = 0.
// A pointer or length outside linear memory yields the part that lies inside
// (a core bug, but replay then compares the same thing).
// A request's result is the CQE with its tag (completions may be in any
// order, and in a later tick: the reaped(k) call, its CQEs an F_MEM
// before it; the bytes a late READ wrote are recorded then).
// Versions 1 and 2 (24-byte requests, 4-byte results, before tags) are
// refused with their version named: this core emits other requests.
//
// Order, as recordCore() below writes it for every host that drives the
// core through the pump (host/loop.ts, the fuzzer): the time and the memory
// the host wrote (event batch, bytes read, results of the last round) come
// before the call that consumes them; F_RET and F_SQ follow their call,
// F_OUT comes after the round's results (F_MEM), before the complete(n)
// call. host/recording.ts
// reads a recording back; host/replay.ts replays one.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import type { CoreConfig, CoreExports } from "./core.ts";
import type { Executor } from "./executor.ts";
import { decodeSqe, resultsByTag, type Request } from "./sqe.ts";

export const MAGIC = "WRREPLAY";
export const FORMAT_VERSION = 3;
/**
 * Versions this build reads. 3: io_uring-shaped 64-byte SQEs with tags,
 * 16-byte CQEs. 1 and 2 (24-byte requests, 4-byte results) are refused:
 * their requests are not what this core emits, so they cannot replay.
 */
export const READ_VERSIONS = [3];
export const F_TIME = 1, F_CALL = 2, F_RET = 3, F_SQ = 4, F_MEM = 5, F_END = 6, F_TRAP = 7, F_OUT = 8;

/** Native iovec: u64 base, u64 length (x86-64 and arm64). */
const IOVEC_SIZE = 16;
/** Linux IOV_MAX: a larger count is a core bug; the recorder keeps this many. */
const IOV_MAX = 1024;
/** One iovec entry in the out-bytes: u32 offset, u32 length. */
export const OUT_IOVEC_SIZE = 8;

/** What a part of a request's out-bytes is (Divergence.field). */
export type OutField = "buffer" | "iovec" | "segment" | "offset" | "path" | "text" | "sockaddr";

function u32(mem: Uint8Array, o: number): number {
  return (mem[o] | (mem[o + 1] << 8) | (mem[o + 2] << 16) | (mem[o + 3] << 24)) >>> 0;
}
function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff; b[o + 1] = (v >>> 8) & 0xff; b[o + 2] = (v >>> 16) & 0xff; b[o + 3] = (v >>> 24) & 0xff;
}
/** An Int32Array over the whole buffer of `mem` (the core's memory), made once per buffer. */
const i32Views = new WeakMap<ArrayBufferLike, Int32Array>();
function i32Of(mem: Uint8Array): Int32Array {
  let v = i32Views.get(mem.buffer);
  if (!v) i32Views.set(mem.buffer, (v = new Int32Array(mem.buffer, 0, mem.buffer.byteLength >> 2)));
  return v;
}
/** A u64 as a Number (exact below 2^53: addresses and lengths are). */
function u64(mem: Uint8Array, o: number): number { return u32(mem, o) + u32(mem, o + 4) * 2 ** 32; }
/** `len` bytes at `addr`, cut to what lies inside `mem`. */
function span(mem: Uint8Array, addr: number, len: number): Uint8Array {
  if (!(addr >= 0) || !(len > 0) || addr >= mem.length) return mem.subarray(0, 0);
  return mem.subarray(addr, Math.min(mem.length, addr + len));
}

/**
 * One part of a request's out-bytes, planned when the core emits it. Small
 * parts (iovec table, sendfile offset, path, log text) are copied then: the
 * host overwrites some of them (the kernel updates the offset, a listing
 * replaces its path). Write data is read when the F_OUT frame is written,
 * cut to what the kernel took; the host never writes into it.
 */
export interface OutPart { field: OutField; segment: number; copy: Uint8Array | null; addr: number; len: number }

function part(field: OutField, segment: number, mem: Uint8Array, addr: number, len: number, copy: boolean): OutPart {
  const b = span(mem, addr, len);
  return { field, segment, copy: copy ? new Uint8Array(b) : null, addr, len };
}

/**
 * The plan of the out-bytes of the request at `sqe` in `mem` (format
 * above). `memBase` is the absolute address of linear memory (CTL_MEM_BASE)
 * the core built its iovecs with. The recorder and replay share it, so both
 * sides are cut the same way.
 */
export function outPlan(mem: Uint8Array, sqe: number, memBase: number): OutPart[] {
  const { op, a0, a1, a2, a3 } = decodeSqe(i32Of(mem), sqe);
  switch (op) {
    case abi.OP_WRITE: case abi.OP_SEND: return [part("buffer", 0, mem, a0, a1, false)];
    case abi.OP_SENDFILE: return [part("offset", 0, mem, a1, 8, true)];
    case abi.OP_OPEN: return [part("path", 0, mem, a0, a1, true)];
    case abi.OP_LIST: return [part("path", 0, mem, a0, a2, true)];
    case abi.OP_LOG: return [part("text", 0, mem, a0, a1, true)];
    case abi.OP_CONNECT: return [part("sockaddr", 0, mem, a0, a3, true)];
    case abi.OP_WRITEV: {
      const n = Math.max(0, Math.min(a1, IOV_MAX));
      const table = Buffer.alloc(n * OUT_IOVEC_SIZE);
      const parts: OutPart[] = [{ field: "iovec", segment: 0, copy: table, addr: -1, len: table.length }];
      for (let i = 0; i < n; i++) {
        const v = a0 + i * IOVEC_SIZE;
        let off = -1, len = 0;
        if (v >= 0 && v + IOVEC_SIZE <= mem.length) { off = u64(mem, v) - memBase; len = u64(mem, v + 8); }
        const inside = off >= 0 && off <= 0xffffffff;
        table.writeUInt32LE(inside ? off : 0xffffffff, i * OUT_IOVEC_SIZE);
        table.writeUInt32LE(Math.min(len, 0xffffffff), i * OUT_IOVEC_SIZE + 4);
        parts.push({ field: "segment", segment: i, copy: null, addr: inside ? off : -1, len: inside ? len : 0 });
      }
      return parts;
    }
    default: return [];
  }
}

/**
 * The bytes of a plan, part by part: `emit(part, bytes)`. Write data (copy
 * null) is read from `mem` now and cut to `took` bytes in all (what the
 * kernel accepted; a negative result: none; Infinity: all of it).
 */
export function outBytes(plan: OutPart[], mem: Uint8Array, took: number, emit: (p: OutPart, bytes: Uint8Array) => void): void {
  let left = took < 0 ? 0 : took;
  for (const p of plan) {
    if (p.copy) { emit(p, p.copy); continue; }
    const b = span(mem, p.addr, Math.min(p.len, left));
    left -= b.length;
    emit(p, b);
  }
}

/** Exports whose calls are recorded, by index (the index is what the file stores). */
export const RECORDED_EXPORTS = [
  "runTimers", "pollTimeout", "dispatch", "runDeferred", "flush", "complete", "recover",
  "register", "modify", "deregister", "timerStart", "timerStop", "defer", "listen", "debugTrapFd", "beginShutdown",
  "closeAll", "reaped", "debugTrapCompletion", // append only: the index is what the file stores
] as const;
export type RecordedExport = (typeof RECORDED_EXPORTS)[number];
/** Exports that return a number of submissions to carry out. */
export const RETURNS_SQ = new Set<RecordedExport>(["runTimers", "dispatch", "runDeferred", "flush", "complete", "recover", "reaped"]);

export interface RecordingHeader {
  coreSha256: string;
  config: CoreConfig;
  time: [number, number];
  arch: string;
  /** The event backend the recording was made with (absent before it was noted; a replay has none). */
  backend?: string;
  created: string;
  argv: string[];
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Where recorded bytes go: a file (FileSink, host/record-file.ts) or memory (fuzzer reproducers). */
export interface Sink { write(b: Uint8Array): void; close(): void }

export class MemorySink implements Sink {
  readonly chunks: Uint8Array[] = [];
  /** The recording is over (its loop closed). */
  closed = false;
  /** Set by the Recorder writing here: one recording per sink. */
  owner: Recorder | null = null;
  // Copy: callers reuse their buffers (and Buffer#slice would not copy).
  write(b: Uint8Array): void { this.chunks.push(new Uint8Array(b)); }
  close(): void { this.closed = true; }
  /** Everything written, in one array (a Buffer; typed as Uint8Array, the public surface needs no Node types). */
  bytes(): Uint8Array { return Buffer.concat(this.chunks); }
}

/**
 * Records a scenario for replay, in memory: calls `scenario({ record })`
 * where `record` is a MemorySink to pass as the `record` option of the one
 * Server, Reactor or Loop the scenario starts (and closes), and resolves to
 * the recording, ready for replay() or readRecording().
 *
 *   const bytes = await record(async (opts) => {
 *     const server = new Server({ protocol: "http", root, port: 0, ...opts });
 *     server.attach(); ...; server.stop(); server.close();
 *   });
 */
export async function record(scenario: (opts: { record: MemorySink }) => unknown): Promise<Uint8Array> {
  const sink = new MemorySink();
  await scenario({ record: sink });
  if (!sink.owner) throw new Error("record(): the scenario started no Server/Reactor/Loop with the `record` option it was given");
  if (!sink.closed) throw new Error("record(): close() the Server/Reactor before the scenario returns (the recording ends when its loop closes)");
  return sink.bytes();
}

export class Recorder {
  private readonly scratch = Buffer.alloc(64);
  private readonly head = this.scratch.subarray(0, 5);
  private closed = false;

  constructor(private readonly sink: Sink, header: RecordingHeader) {
    if (sink instanceof MemorySink) {
      if (sink.owner) throw new Error("this MemorySink already holds a recording: use one sink per Server/Reactor");
      sink.owner = this;
    }
    const json = Buffer.from(JSON.stringify(header));
    const h = Buffer.alloc(16);
    h.write(MAGIC, 0, "latin1");
    h.writeUInt32LE(FORMAT_VERSION, 8);
    h.writeUInt32LE(json.length, 12);
    sink.write(h);
    sink.write(json);
  }

  private frame(type: number, payload: Uint8Array): void {
    if (this.closed) return;
    const h = this.scratch;
    h.writeUInt8(type, 0);
    h.writeUInt32LE(payload.length, 1);
    this.sink.write(this.head);
    if (payload.length) this.sink.write(payload);
  }

  time(mono: number, wall: number): void {
    const b = Buffer.alloc(16);
    b.writeDoubleLE(mono, 0);
    b.writeDoubleLE(wall, 8);
    this.frame(F_TIME, b);
  }

  call(index: number, args: number[]): void {
    if (this.plans) throw new Error("Recorder: a call into the core before the last round's out-bytes were written (flushOut)");
    const b = Buffer.alloc(1 + 8 * args.length);
    b.writeUInt8(index, 0);
    args.forEach((a, i) => b.writeDoubleLE(a, 1 + 8 * i));
    this.frame(F_CALL, b);
  }

  trap(): void { this.frame(F_TRAP, new Uint8Array(0)); }

  ret(value: number): void {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(value, 0);
    this.frame(F_RET, b);
  }

  sq(mem: Uint8Array, addr: number, n: number): void { this.frame(F_SQ, mem.subarray(addr, addr + n * abi.SQE_SIZE)); }

  /** The round's out-bytes plans, from the last F_SQ until its F_OUT is written. */
  private plans: OutPart[][] | null = null;

  /** Where the planned round's requests are (their tags find their results). */
  private plannedSq = 0;

  /** A round's F_OUT is still to be written. */
  get outPending(): boolean { return this.plans !== null; }

  /** Plans the out-bytes of the n requests at `addr` (F_OUT follows, see flushOut). */
  planOut(mem: Uint8Array, addr: number, n: number, memBase: number): void {
    this.plans = [];
    this.plannedSq = addr;
    for (let i = 0; i < n; i++) this.plans.push(outPlan(mem, addr + i * abi.SQE_SIZE, memBase));
  }

  /**
   * Writes the pending F_OUT, piece by piece (no copy of the data). `cq`:
   * the round's results are there (complete(n) is being called), so write
   * data is cut to what the kernel took; null: all of it.
   */
  flushOut(mem: Uint8Array, cq: number | null): void {
    const plans = this.plans;
    if (!plans || this.closed) return;
    this.plans = null;
    // The frame is built in one reused buffer and written once: no
    // allocation per round, one copy into the sink (which copies anyway).
    let buf = this.outBuf, o = 0;
    const room = (k: number) => {
      if (o + k <= buf.length) return;
      const grown = new Uint8Array(Math.max(2 * buf.length, o + k));
      grown.set(buf.subarray(0, o));
      buf = this.outBuf = grown;
    };
    room(6);
    buf[0] = F_OUT; // the payload length at 1..4 once known
    buf[5] = cq === null ? 0 : 1;
    o = 6;
    // Found by tag among the n entries of the CQ (a request kept in flight
    // past the round has none: cut to nothing; its bytes are taken later by
    // the kernel and not compared). Entries past the completions written
    // hold older tags only, and replay reads the same bytes (every CQ write
    // is an F_MEM).
    const results = cq === null ? null : resultsByTag(i32Of(mem), this.plannedSq, plans.length, cq, plans.length);
    for (let i = 0; i < plans.length; i++) {
      room(4);
      const at = o;
      o += 4; // the entry's length, once known
      const took = results === null ? Infinity : results[i];
      outBytes(plans[i], mem, took, (_p, b) => { room(b.length); buf.set(b, o); o += b.length; });
      writeU32(buf, at, o - at - 4);
    }
    writeU32(buf, 1, o - 5);
    this.sink.write(buf.subarray(0, o));
  }
  private outBuf = new Uint8Array(1 << 16);

  mem(mem: Uint8Array, addr: number, len: number): void {
    if (len <= 0) return;
    const b = Buffer.alloc(4 + len);
    b.writeUInt32LE(addr, 0);
    b.set(mem.subarray(addr, addr + len), 4);
    this.frame(F_MEM, b);
  }

  /** The core's memory, for a round still pending at close() (set by recordExports). */
  memory: (() => Uint8Array) | null = null;

  close(): void {
    if (this.closed) return;
    if (this.plans && this.memory) this.flushOut(this.memory(), null);
    this.plans = null;
    this.frame(F_END, new Uint8Array(0));
    this.closed = true;
    this.sink.close();
  }
}

/** The core as the recorder sees it (host/core.ts Core fits; record.ts needs nothing else of it). */
export interface RecordableCore {
  x: CoreExports;
  onTime: ((mono: number, wall: number) => void) | null;
  readonly u8: Uint8Array;
  /** Absolute address of linear memory (CTL_MEM_BASE). */
  readonly base: number;
  refresh(): void;
  ctlI32(off: number): number;
}

/**
 * Recording, as one decorator on the pump's seam: from now on every input
 * the core gets (time, event batches, the memory and results each round's
 * requests produced) and every output (calls' results, submission queues,
 * out-bytes) goes to `rec`. Wraps the core's exports and its clock hook,
 * and returns `executor` wrapped: the executor the pump must use.
 */
export function recordCore(core: RecordableCore, rec: Recorder, executor: Executor): Executor {
  const mem = () => { core.refresh(); return core.u8; };
  core.x = recordExports(core.x, rec, mem, (off) => core.ctlI32(off), () => core.base);
  core.onTime = (mono, wall) => rec.time(mono, wall);
  return recordingExecutor(executor, rec, mem);
}

/**
 * An executor that records what `inner` wrote into linear memory for each
 * request (the bytes a read or a listing produced, a FILE record, the
 * kernel's sendfile offset, a peer's address) and then the completions it
 * wrote. A request `inner` keeps in flight past its round is remembered by
 * tag and recorded when reap() hands its completion back.
 */
export function recordingExecutor(inner: Executor, rec: Recorder, mem: () => Uint8Array): Executor {
  const held = new Map<string, Request>();
  const key = (tag: number, gen: number) => `${tag}/${gen}`;
  const wrote = (u8: Uint8Array, r: Request, res: number) => {
    // A FILE record whatever the result: a host may fill it and then fail (EMFILE).
    if (r.op === abi.OP_OPEN) rec.mem(u8, r.a2, abi.FILE_RECORD_TOTAL);
    if (res < 0) return;
    if ((r.op === abi.OP_READ || r.op === abi.OP_PREAD || r.op === abi.OP_LIST) && res > 0) rec.mem(u8, r.a0, res);
    else if (r.op === abi.OP_SENDFILE) rec.mem(u8, r.a1, 8);
    else if (r.op === abi.OP_METRICS && res > 0) rec.mem(u8, r.a0, r.a1); // the other workers' snapshots
    else if (r.op === abi.OP_PIPE) rec.mem(u8, r.a0, 8); // the two fds pipe2 wrote
    else if (r.op === abi.OP_ACCEPT && r.a0 !== 0) rec.mem(u8, r.a0, abi.ACCEPT_ADDR_SIZE); // the peer's address
  };
  const executor: Executor = {
    submit(sq: number, cq: number, n: number): number {
      const k0 = inner.submit(sq, cq, n);
      const k = typeof k0 === "number" ? k0 : n;
      const u8 = mem();
      const i32 = i32Of(u8);
      const results = resultsByTag(i32, sq, n, cq, k, MISSING); // any order
      for (let i = 0; i < n; i++) {
        const r = decodeSqe(i32, sq + i * abi.SQE_SIZE);
        if (results[i] === MISSING) held.set(key(r.tag, r.gen), r); // completes in a later tick
        else wrote(u8, r, results[i]);
      }
      if (k > 0) rec.mem(u8, cq, k * abi.CQE_SIZE);
      return k;
    },
  };
  if (inner.reap) {
    const reap = inner.reap.bind(inner);
    executor.reap = (cq: number, max: number): number => {
      const k = reap(cq, max);
      const u8 = mem();
      const i32 = i32Of(u8);
      for (let j = 0; j < k; j++) {
        const c = (cq + j * abi.CQE_SIZE) >> 2;
        const id = key(i32[c + (abi.CQE_USER_DATA >> 2)], i32[c + (abi.CQE_USER_DATA >> 2) + 1]);
        const r = held.get(id);
        if (r) { held.delete(id); wrote(u8, r, i32[c + (abi.CQE_RES >> 2)]); }
      }
      if (k > 0) rec.mem(u8, cq, k * abi.CQE_SIZE);
      return k;
    };
  }
  return executor;
}
/** resultsByTag's mark for a request with no completion in its round. */
const MISSING = -0x80000000;

/**
 * Wraps the core's exports so every recorded call, its result and (for the
 * calls that return a round) the submission queue and its out-bytes go to
 * the recorder; dispatch(n) records the n events it is handed first.
 * `mem()` gives the current memory bytes, `ctl(off)` a control-block field
 * and `memBase()` the absolute address of linear memory.
 */
export function recordExports(x: CoreExports, rec: Recorder, mem: () => Uint8Array, ctl: (off: number) => number, memBase: () => number): CoreExports {
  // The exports object is frozen: copy it, then replace the recorded calls.
  const wrapped: Record<string, unknown> = { ...(x as unknown as Record<string, unknown>) };
  rec.memory = mem;
  RECORDED_EXPORTS.forEach((name, index) => {
    const fn = (x as unknown as Record<string, (...a: number[]) => number>)[name];
    if (typeof fn !== "function") return;
    wrapped[name] = (...args: number[]) => {
      // The last round's out-bytes: cut to its results if this call hands them back.
      if (rec.outPending) rec.flushOut(mem(), name === "complete" ? ctl(abi.CTL_CQ) : null);
      // The event batch the backend wrote: an input, before the call that reads it.
      if (name === "dispatch" && args[0] > 0) rec.mem(mem(), ctl(abi.CTL_EVENTS), args[0] * abi.EVENT_SIZE);
      rec.call(index, args.map(Number));
      let r: number;
      try {
        r = fn(...args);
      } catch (e) {
        rec.trap();
        throw e;
      }
      const v = typeof r === "number" ? r : r ? 1 : 0;
      rec.ret(v);
      if (RETURNS_SQ.has(name) && v > 0) {
        const m = mem(), sq = ctl(abi.CTL_SQ);
        rec.sq(m, sq, v);
        rec.planOut(m, sq, v, memBase());
      }
      return r;
    };
  });
  return wrapped as unknown as CoreExports;
}
