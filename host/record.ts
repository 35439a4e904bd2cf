// Recording the core's inputs, for deterministic replay (host/replay.ts).
//
// The core is sans-IO: given the same calls with the same arguments, the same
// bytes written into its memory by the host (event batches, bytes read,
// file records, results) and the same time values, it emits the same
// requests. So a recording is exactly that stream, in order, plus the
// core's outputs (return values and submission queues) to check against.
//
// File format (little-endian), version 1:
//   header:  "WRREPLAY" (8 bytes) | u32 version | u32 n | n bytes of JSON:
//            { coreSha256, config, time: [mono, wall], arch, created, argv }
//   frames:  u8 type | u32 payload length | payload
//     F_TIME  f64 mono, f64 wall           (setTime)
//     F_CALL  u8 export, f64 args...       (a call into the core)
//     F_RET   f64 value                    (what it returned)
//     F_SQ    n * SQE_SIZE bytes           (the requests it emitted, when it returns a count)
//     F_MEM   u32 address, bytes           (the host wrote these bytes into linear memory)
//     F_TRAP  (nothing)                    (the call trapped; recover() follows)
//     F_END   (nothing)                    (the recording was closed cleanly)
//
// Order, as host/loop.ts writes it: the time and the memory the host wrote
// (event batch, bytes read, results of the last round) come before the call
// that consumes them; F_RET and F_SQ follow their call. host/recording.ts
// reads a recording back; host/replay.ts replays one.
import { createHash } from "node:crypto";
import { openSync, writeSync, closeSync, readFileSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import type { CoreConfig, CoreExports } from "./core.ts";

export const MAGIC = "WRREPLAY";
export const FORMAT_VERSION = 1;
export const F_TIME = 1, F_CALL = 2, F_RET = 3, F_SQ = 4, F_MEM = 5, F_END = 6, F_TRAP = 7;

/** Exports whose calls are recorded, by index (the index is what the file stores). */
export const RECORDED_EXPORTS = [
  "runTimers", "pollTimeout", "dispatch", "runDeferred", "flush", "complete", "recover",
  "register", "modify", "deregister", "timerStart", "timerStop", "defer", "listen", "debugTrapFd", "beginShutdown",
  "closeAll", // append only: the index is what the file stores
] as const;
export type RecordedExport = (typeof RECORDED_EXPORTS)[number];
/** Exports that return a number of submissions to carry out. */
export const RETURNS_SQ = new Set<RecordedExport>(["runTimers", "dispatch", "runDeferred", "flush", "complete", "recover"]);

export interface RecordingHeader {
  coreSha256: string;
  config: CoreConfig;
  time: [number, number];
  arch: string;
  created: string;
  argv: string[];
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Where recorded bytes go: a file (buffered, synchronous) or memory (fuzzer reproducers). */
export interface Sink { write(b: Uint8Array): void; close(): void }

export class FileSink implements Sink {
  private readonly fd: number;
  private buf = Buffer.allocUnsafe(1 << 20);
  private used = 0;
  constructor(path: string) { this.fd = openSync(path, "w"); }
  write(b: Uint8Array): void {
    if (this.used + b.length > this.buf.length) this.flush();
    if (b.length > this.buf.length) { writeSync(this.fd, b); return; }
    this.buf.set(b, this.used);
    this.used += b.length;
  }
  flush(): void { if (this.used) { writeSync(this.fd, this.buf, 0, this.used); this.used = 0; } }
  close(): void { this.flush(); closeSync(this.fd); }
}

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
    this.sink.write(h.subarray(0, 5));
    if (payload.length) this.sink.write(payload);
  }

  time(mono: number, wall: number): void {
    const b = Buffer.alloc(16);
    b.writeDoubleLE(mono, 0);
    b.writeDoubleLE(wall, 8);
    this.frame(F_TIME, b);
  }

  call(index: number, args: number[]): void {
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

  mem(mem: Uint8Array, addr: number, len: number): void {
    if (len <= 0) return;
    const b = Buffer.alloc(4 + len);
    b.writeUInt32LE(addr, 0);
    b.set(mem.subarray(addr, addr + len), 4);
    this.frame(F_MEM, b);
  }

  close(): void {
    if (this.closed) return;
    this.frame(F_END, new Uint8Array(0));
    this.closed = true;
    this.sink.close();
  }
}

/**
 * Wraps the core's exports so every recorded call, its result and (for the
 * calls that return a round) the submission queue go to the recorder.
 * `mem()` gives the current memory bytes and `sqAddr()` the current SQ.
 */
export function recordExports(x: CoreExports, rec: Recorder, mem: () => Uint8Array, sqAddr: () => number): CoreExports {
  // The exports object is frozen: copy it, then replace the recorded calls.
  const wrapped: Record<string, unknown> = { ...(x as unknown as Record<string, unknown>) };
  RECORDED_EXPORTS.forEach((name, index) => {
    const fn = (x as unknown as Record<string, (...a: number[]) => number>)[name];
    if (typeof fn !== "function") return;
    wrapped[name] = (...args: number[]) => {
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
      if (RETURNS_SQ.has(name) && v > 0) rec.sq(mem(), sqAddr(), v);
      return r;
    };
  });
  return wrapped as unknown as CoreExports;
}
