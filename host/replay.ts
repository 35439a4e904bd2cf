// Deterministic replay: a fresh core, no OS, fed a recording's inputs in
// order; every return value and every submission queue it emits must match
// the recording byte for byte. See host/record.ts for the format.
import { readFileSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import { Core, CoreAbort, compileCore, corePath, defaultCoreConfig, type CoreExports } from "./core.ts";
import {
  MAGIC, FORMAT_VERSION, F_TIME, F_CALL, F_RET, F_SQ, F_MEM, F_END, F_TRAP, RECORDED_EXPORTS, RETURNS_SQ,
  sha256File, type RecordingHeader,
} from "./record.ts";

export class RecordingError extends Error {}

const INVARIANT_NAMES: Record<number, string> = {
  1: "timer heap", 2: "zombie outside a batch", 3: "connection/handler agreement", 4: "receive-buffer bounds",
  5: "write-ring bounds", 6: "run queue", 7: "receive buffers held", 8: "ring-pool bytes held",
};

export interface ReplaySummary {
  ok: boolean;
  batches: number;
  events: number;
  calls: number;
  requests: number;
  bytes: number;
  frames: number;
  /** Traps the recorded run had, reproduced at the same call. */
  traps: number;
  /** Where and how the replay diverged (ok === false). */
  divergence?: string;
}

const OP_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(abi).filter(([k]) => k.startsWith("OP_") && k !== "OP_COUNT").map(([k, v]) => [v as number, k.slice(3)]),
);

function describeSqe(b: Uint8Array, off: number): string {
  const v = new DataView(b.buffer, b.byteOffset + off, abi.SQE_SIZE);
  const f = (o: number) => v.getInt32(o, true);
  return `{${OP_NAMES[f(abi.SQE_OP)] ?? f(abi.SQE_OP)} fd=${f(abi.SQE_FD)} a0=${f(abi.SQE_A0)} a1=${f(abi.SQE_A1)} a2=${f(abi.SQE_A2)} a3=${f(abi.SQE_A3)}}`;
}

export function readHeader(bytes: Uint8Array): { header: RecordingHeader; offset: number } {
  if (bytes.length < 16 || Buffer.from(bytes.subarray(0, 8)).toString("latin1") !== MAGIC) {
    throw new RecordingError("not a wasm-reactor recording (bad magic)");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== FORMAT_VERSION) throw new RecordingError(`recording format version ${version}; this build reads version ${FORMAT_VERSION}`);
  const n = dv.getUint32(12, true);
  if (16 + n > bytes.length) throw new RecordingError("recording truncated inside its header");
  let header: RecordingHeader;
  try {
    header = JSON.parse(Buffer.from(bytes.subarray(16, 16 + n)).toString("utf8"));
  } catch {
    throw new RecordingError("corrupt recording header (not JSON)");
  }
  if (!header || typeof header.coreSha256 !== "string" || typeof header.config !== "object") {
    throw new RecordingError("corrupt recording header (fields missing)");
  }
  return { header, offset: 16 + n };
}

export interface ReplayOptions {
  /** Replay even if the recording comes from another core build. */
  force?: boolean;
  wasmPath?: string;
  /** Check the core's invariants after every call (fuzzer reproducers). */
  check?: boolean;
}

/**
 * Replays a recording. Throws RecordingError for a file that is not a valid
 * recording (bad magic, truncated, corrupt, other core build without force);
 * returns ok: false with a description at the first divergence.
 */
export function replay(bytes: Uint8Array, options: ReplayOptions = {}): ReplaySummary {
  const { header, offset } = readHeader(bytes);
  const wasmPath = options.wasmPath ?? corePath;
  const sha = sha256File(wasmPath);
  if (sha !== header.coreSha256 && !options.force) {
    throw new RecordingError(
      `recorded with core build ${header.coreSha256.slice(0, 12)}, this is ${sha.slice(0, 12)}: ` +
      "the core changed, so its requests may legitimately differ (use --force to replay anyway)");
  }
  const config = { ...defaultCoreConfig, ...header.config };
  const core = new Core(config, compileCore(wasmPath), { addressOf: () => 0, time: header.time });
  const x = core.x as unknown as Record<string, (...a: number[]) => number>;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const s: ReplaySummary = { ok: true, batches: 0, events: 0, calls: 0, requests: 0, bytes: 0, frames: 0, traps: 0 };
  let pos = offset;
  let last: { name: string; args: number[]; result: number | null; trapped: boolean } | null = null;
  const where = () => `batch ${s.batches}, call ${s.calls} (${last ? `${last.name}(${last.args.join(", ")})` : "none"}), frame ${s.frames} at byte ${pos}`;
  const fail = (msg: string): ReplaySummary => ({ ...s, ok: false, divergence: `${where()}: ${msg}` });

  for (;;) {
    if (pos === bytes.length) throw new RecordingError(`recording truncated: no end frame after ${s.frames} frames (${where()})`);
    if (pos + 5 > bytes.length) throw new RecordingError(`recording truncated inside a frame header at byte ${pos}`);
    const type = dv.getUint8(pos);
    const len = dv.getUint32(pos + 1, true);
    const body = pos + 5;
    if (body + len > bytes.length) throw new RecordingError(`recording truncated: frame ${s.frames} (type ${type}) needs ${len} bytes at byte ${body}, ${bytes.length - body} left`);
    s.frames++;
    switch (type) {
      case F_TIME:
        if (len !== 16) throw new RecordingError(`corrupt time frame at byte ${pos}`);
        core.setTime(dv.getFloat64(body, true), dv.getFloat64(body + 8, true));
        break;
      case F_MEM: {
        if (len < 4) throw new RecordingError(`corrupt memory frame at byte ${pos}`);
        const addr = dv.getUint32(body, true);
        core.refresh();
        if (addr + len - 4 > core.u8.length) throw new RecordingError(`corrupt memory frame at byte ${pos}: ${len - 4} bytes at ${addr} lie outside linear memory`);
        core.u8.set(bytes.subarray(body + 4, body + len), addr);
        s.bytes += len - 4;
        break;
      }
      case F_CALL: {
        if (len < 1 || (len - 1) % 8 !== 0) throw new RecordingError(`corrupt call frame at byte ${pos}`);
        const name = RECORDED_EXPORTS[dv.getUint8(body)];
        if (!name || typeof x[name] !== "function") throw new RecordingError(`corrupt call frame at byte ${pos}: unknown export #${dv.getUint8(body)}`);
        const args: number[] = [];
        for (let o = body + 1; o < body + len; o += 8) args.push(dv.getFloat64(o, true));
        s.calls++;
        if (name === "dispatch") { s.batches++; s.events += args[0]; }
        last = { name, args, result: null, trapped: false };
        try {
          const r = x[name](...args);
          last.result = typeof r === "number" ? r : r ? 1 : 0;
        } catch (e) {
          if (!(e instanceof WebAssembly.RuntimeError) && !(e instanceof CoreAbort)) throw e;
          last.trapped = true;
        }
        if (options.check) {
          const code = x.checkInvariants();
          if (code !== 0) return fail(`invariant ${code} broken after this call (${INVARIANT_NAMES[code] ?? "?"})`);
        }
        break;
      }
      case F_TRAP:
        if (!last || !last.trapped) return fail("the recorded run trapped here; the replay did not");
        s.traps++;
        break;
      case F_RET: {
        if (len !== 8 || !last) throw new RecordingError(`corrupt result frame at byte ${pos}`);
        const expected = dv.getFloat64(body, true);
        if (last.trapped) return fail(`the replay trapped; the recorded run returned ${expected}`);
        if (last.result !== expected) return fail(`returned ${last.result}, recorded ${expected}`);
        break;
      }
      case F_SQ: {
        if (!last || last.result === null || len !== last.result * abi.SQE_SIZE) throw new RecordingError(`corrupt submission frame at byte ${pos}`);
        core.refresh();
        const sq = core.ctlI32(abi.CTL_SQ);
        const actual = core.u8.subarray(sq, sq + len);
        const expected = bytes.subarray(body, body + len);
        for (let i = 0; i < last.result; i++) {
          const o = i * abi.SQE_SIZE;
          for (let k = 0; k < abi.SQE_SIZE; k++) {
            if (actual[o + k] !== expected[o + k]) {
              return fail(`request ${i} of ${last.result}: expected ${describeSqe(expected, o)}, got ${describeSqe(actual, o)}`);
            }
          }
        }
        s.requests += last.result;
        break;
      }
      case F_END:
        if (body + len !== bytes.length) throw new RecordingError(`corrupt recording: ${bytes.length - body - len} bytes after the end frame`);
        return s;
      default:
        throw new RecordingError(`corrupt recording: unknown frame type ${type} at byte ${pos}`);
    }
    pos = body + len;
  }
}

/** `wasm-reactor replay FILE [--force]`: 0 clean, 1 divergence, 2 unusable file. */
export function replayCommand(file: string, force: boolean, check = false, out = process.stdout, err = process.stderr): number {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    err.write(`wasm-reactor replay: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return 2;
  }
  let s: ReplaySummary;
  try {
    s = replay(bytes, { force, check });
  } catch (e) {
    if (e instanceof RecordingError) { err.write(`wasm-reactor replay: ${file}: ${e.message}\n`); return 2; }
    throw e;
  }
  if (!s.ok) {
    err.write(`wasm-reactor replay: DIVERGED at ${s.divergence}\n`);
    return 1;
  }
  const traps = s.traps ? `, ${s.traps} trap${s.traps > 1 ? "s" : ""} reproduced` : "";
  out.write(`replay ok: ${s.batches} batches, ${s.events} events, ${s.calls} calls, ${s.requests} requests, ${s.bytes} bytes fed${traps}\n`);
  return 0;
}

export type { CoreExports };
