// Deterministic replay: a fresh core, no OS, fed a recording's inputs in
// order; every return value, every submission queue it emits and (format 2)
// every byte those requests point at must match the recording byte for byte.
// See host/record.ts for the format and host/recording.ts for reading one
// without running it.
import { readFileSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import { Core, CoreAbort, compileCore, corePath, defaultCoreConfig, type CoreExports } from "./core.ts";
import { F_TIME, F_CALL, F_RET, F_SQ, F_MEM, F_END, F_TRAP, F_OUT, OUT_IOVEC_SIZE, outPlan, outBytes, sha256File, type OutField, type OutPart } from "./record.ts";
import { describeInvariant } from "./abi-names.ts";
import { resultsByTag } from "./sqe.ts";
import { RecordingError, readHeader, frameAt, decodeCall, decodeOut, decodeRequest, describeRequest } from "./recording.ts";

export { RecordingError };

/** The SQE's fields by byte offset and size, to name the one a differing byte falls in. */
const SQE_FIELDS: [number, number, string][] = [
  [abi.SQE_OPCODE, 1, "opcode"], [abi.SQE_FLAGS, 1, "flags"], [abi.SQE_IOPRIO, 2, "ioprio"], [abi.SQE_FD, 4, "fd"],
  [abi.SQE_OFF, 8, "off"], [abi.SQE_ADDR, 8, "addr"], [abi.SQE_LEN, 4, "len"], [abi.SQE_OP_FLAGS, 4, "op_flags"],
  [abi.SQE_USER_DATA, 8, "user_data"], [abi.SQE_BUF_INDEX, 2, "buf_index"], [abi.SQE_PERSONALITY, 2, "personality"],
  [abi.SQE_SPLICE_FD_IN, 4, "splice_fd_in"], [abi.SQE_ADDR3, 8, "addr3"], [abi.SQE_ADDR3 + 8, 8, "pad"],
];

export interface ReplayResult {
  /** Every return value and request matched the recording. Traps reproduced do not make it false: see `traps`. */
  ok: boolean;
  batches: number;
  events: number;
  calls: number;
  requests: number;
  /** Bytes fed into linear memory. */
  bytes: number;
  /**
   * The bytes the requests point at were compared too (format 2). False for
   * a format 1 recording: only requests and results were compared.
   */
  bytesCompared: boolean;
  /** Out-bytes compared (write/send buffers, iovecs and segments, paths, log text). */
  outBytes: number;
  frames: number;
  /** Traps the recorded run had, reproduced at the same call. Each is a core bug. */
  traps: ReplayTrap[];
  /** Where and how the replay diverged (ok === false). */
  divergence?: Divergence;
}
/** The name this result had before it carried traps and divergence as objects. */
export type ReplaySummary = ReplayResult;

export interface ReplayTrap {
  batch: number;
  call: number;
  callName: string;
  args: number[];
  /** The trap, as the replayed core raised it ("unreachable", "core abort at 12:3"...). */
  message: string;
  /** The fd the core was serving (CTL_CURRENT_FD; -1: none). */
  fd: number;
  /** Byte offset of the trap frame in the recording. */
  fileOffset: number;
}

export interface Divergence {
  /**
   * result: a different return value; request: a different request record;
   * bytes: a different byte among those a request points at; trap: one side
   * trapped; invariant: --check.
   */
  kind: "result" | "request" | "bytes" | "trap" | "invariant";
  batch: number;
  /** 1-based call number, and the call. */
  call: number;
  callName: string | null;
  args: number[];
  /**
   * kinds "request" and "bytes": which request (0-based) of how many, and the
   * first differing byte. "request": byteOffset in the 24-byte record, field
   * op/fd/a0..a3. "bytes": field buffer (write/send), iovec (writev's table:
   * segment = entry, byteOffset 0-3 its offset, 4-7 its length), segment
   * (writev: segment = which), offset (sendfile), path (open/list) or text
   * (log); byteOffset within it; address where that byte lies in linear memory.
   */
  request?: number;
  requests?: number;
  byteOffset?: number;
  field?: string;
  segment?: number;
  address?: number;
  /** kind "bytes": the differing byte on each side, -1 past the end of the data. */
  expectedByte?: number;
  actualByte?: number;
  /** kind "bytes": the byte in hex with a printable excerpt around it, the byte in [brackets]. */
  expected: string;
  actual: string;
  /** Frame number and its byte offset in the recording. */
  frame: number;
  fileOffset: number;
  /** All of the above in one line. */
  message: string;
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
export function replay(bytes: Uint8Array, options: ReplayOptions = {}): ReplayResult {
  const { header, offset, version } = readHeader(bytes);
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
  const s: ReplayResult = { ok: true, batches: 0, events: 0, calls: 0, requests: 0, bytes: 0, bytesCompared: version >= 2, outBytes: 0, frames: 0, traps: [] };
  let pos = offset;
  // Format 2: the out-bytes plans of the last F_SQ's requests, made from the
  // replayed core's memory when it returned; its F_OUT comes before the next call.
  let plans: OutPart[][] | null = null;
  let last: { name: string; args: number[]; result: number | null; trap: string | null; fd: number } | null = null;
  const callText = () => (last ? `${last.name}(${last.args.join(", ")})` : "none");
  const where = () => `batch ${s.batches}, call ${s.calls} (${callText()}), frame ${s.frames} at byte ${pos}`;
  const diverge = (kind: Divergence["kind"], expected: string, actual: string, detail: string, extra: Partial<Divergence> = {}): ReplayResult => ({
    ...s, ok: false,
    divergence: {
      kind, batch: s.batches, call: s.calls, callName: last?.name ?? null, args: last?.args ?? [],
      expected, actual, frame: s.frames, fileOffset: pos, ...extra, message: `${where()}: ${detail}`,
    },
  });

  for (;;) {
    const f = frameAt(bytes, dv, pos, s.frames);
    if (!f) throw new RecordingError(`recording truncated: no end frame after ${s.frames} frames (${where()})`);
    const { type, body, len } = f;
    s.frames++;
    if (plans && type !== F_OUT && type !== F_MEM && type !== F_TIME) throw new RecordingError(`corrupt recording: the submission frame before byte ${pos} has no out-bytes frame`);
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
        const { name, args } = decodeCall(dv, f);
        if (typeof x[name] !== "function") throw new RecordingError(`corrupt call frame at byte ${pos}: this core has no export ${name}`);
        s.calls++;
        if (name === "dispatch") { s.batches++; s.events += args[0]; }
        last = { name, args, result: null, trap: null, fd: -1 };
        try {
          const r = x[name](...args);
          last.result = typeof r === "number" ? r : r ? 1 : 0;
        } catch (e) {
          if (!(e instanceof WebAssembly.RuntimeError) && !(e instanceof CoreAbort)) throw e;
          last.trap = (e as Error).message;
          last.fd = core.ctlI32(abi.CTL_CURRENT_FD);
        }
        if (options.check) {
          const code = x.checkInvariants();
          if (code !== abi.INV_OK) {
            const inv = describeInvariant(code);
            return diverge("invariant", "invariants hold", `${inv} broken`, `${inv} broken after this call`);
          }
        }
        break;
      }
      case F_TRAP:
        if (!last || last.trap === null) return diverge("trap", "a trap", `returned ${last?.result}`, "the recorded run trapped here; the replay did not");
        s.traps.push({ batch: s.batches, call: s.calls, callName: last.name, args: last.args, message: last.trap, fd: last.fd, fileOffset: pos });
        break;
      case F_RET: {
        if (len !== 8 || !last) throw new RecordingError(`corrupt result frame at byte ${pos}`);
        const expected = dv.getFloat64(body, true);
        if (last.trap !== null) return diverge("trap", `returned ${expected}`, `trap: ${last.trap}`, `the replay trapped (${last.trap}); the recorded run returned ${expected}`);
        if (last.result !== expected) return diverge("result", String(expected), String(last.result), `returned ${last.result}, recorded ${expected}`);
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
            if (actual[o + k] === expected[o + k]) continue;
            const e = describeRequest(decodeRequest(expected, o)), a = describeRequest(decodeRequest(actual, o));
            const field = SQE_FIELDS.find(([o, size]) => k >= o && k < o + size)?.[2] ?? `byte ${k}`;
            return diverge("request", e, a, `request ${i} of ${last.result}: expected ${e}, got ${a} (byte ${k}: ${field})`,
              { request: i, requests: last.result, byteOffset: k, field });
          }
        }
        s.requests += last.result;
        if (s.bytesCompared) plans = Array.from({ length: last.result }, (_, i) => outPlan(core.u8, sq + i * abi.SQE_SIZE, core.base));
        break;
      }
      case F_OUT: {
        if (!plans || !last) throw new RecordingError(`corrupt recording: out-bytes frame at byte ${pos} follows no submission frame`);
        const round = plans;
        plans = null;
        const n = round.length;
        const { cut, out: expected } = decodeOut(bytes, dv, f, n);
        core.refresh();
        const sq = core.ctlI32(abi.CTL_SQ), cq = core.ctlI32(abi.CTL_CQ);
        // Cut: the recorded results are in the CQ now (an F_MEM before this frame), found by tag.
        const results = cut ? resultsByTag(core.i32, sq, n, cq, n) : null;
        for (let i = 0; i < n; i++) {
          const took = results ? results[i] : Infinity;
          const d = compareOut(round[i], core.u8, took, expected[i]);
          s.outBytes += expected[i].length;
          if (!d) continue;
          const req = describeRequest(decodeRequest(core.u8, sq + i * abi.SQE_SIZE));
          const at = d.field === "iovec" ? `iovec ${d.segment} ${d.byteOffset < 4 ? "offset" : "length"} (byte ${d.byteOffset})`
            : d.field === "segment" ? `segment ${d.segment}, byte ${d.byteOffset}` : `${d.field}, byte ${d.byteOffset}`;
          return diverge("bytes", d.expected, d.actual, `request ${i} of ${n} ${req}: ${at}: expected ${d.expected}, got ${d.actual}`,
            { request: i, requests: n, ...d });
        }
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

interface OutDiff {
  field: OutField; segment: number; byteOffset: number; address?: number;
  expectedByte: number; actualByte: number; expected: string; actual: string;
}

/**
 * The replayed core's out-bytes for the request at `sqe`, against the
 * recorded ones: the first differing byte, located by part, or null. A
 * length difference differs at the first byte past the shorter side.
 */
function compareOut(plan: OutPart[], mem: Uint8Array, took: number, expected: Uint8Array): OutDiff | null {
  let o = 0; // offset in the request's out-bytes
  let found: OutDiff | null = null;
  let lastPart: { field: OutField; segment: number; bytes: Uint8Array; start: number } | null = null;
  outBytes(plan, mem, took, ({ field, segment }, b) => {
    if (found) return;
    lastPart = { field, segment, bytes: b, start: o };
    // Equal parts (nearly all) in one native compare; the byte loop only finds where.
    const e = expected.subarray(o, o + b.length);
    if (e.length === b.length && Buffer.compare(e, b) === 0) { o += b.length; return; }
    for (let k = 0; k < b.length; k++) {
      if (o + k < expected.length && expected[o + k] === b[k]) continue;
      found = locate(field, segment, b, k, expected, o, mem);
      return;
    }
    o += b.length;
  });
  if (found) return found;
  if (o === expected.length) return null;
  // The recording has more bytes than the replayed request points at.
  const p = lastPart as { field: OutField; segment: number; bytes: Uint8Array; start: number } | null;
  return p ? locate(p.field, p.segment, p.bytes, o - p.start, expected, p.start, mem)
    : { field: "buffer", segment: 0, byteOffset: 0, expectedByte: expected[0], actualByte: -1, expected: byteText(expected, 0), actual: "no bytes (this op hands out none)" };
}

function locate(field: OutField, segment: number, b: Uint8Array, k: number, expected: Uint8Array, start: number, mem: Uint8Array): OutDiff {
  const exp = expected.subarray(start, start + Math.max(b.length, k + 1) + 16);
  let seg = segment, off = k;
  if (field === "iovec") { seg = Math.floor(k / OUT_IOVEC_SIZE); off = k % OUT_IOVEC_SIZE; }
  const d: OutDiff = {
    field, segment: seg, byteOffset: off,
    expectedByte: k < exp.length ? exp[k] : -1, actualByte: k < b.length ? b[k] : -1,
    expected: byteText(exp, k), actual: byteText(b, k),
  };
  // b is a view into linear memory, except writev's table (a copy).
  if (field !== "iovec" && b.buffer === mem.buffer && k < b.length) d.address = b.byteOffset - mem.byteOffset + k;
  return d;
}

/** `0x32 in "HTTP/1.1 [2]00 OK\r\n"`: the byte in hex, up to 16 bytes either side, printable. */
function byteText(b: Uint8Array, k: number): string {
  if (k >= b.length) return `end of data (${b.length} bytes)`;
  const from = Math.max(0, k - 16), to = Math.min(b.length, k + 17);
  const esc = (c: number) => c === 0x0d ? "\\r" : c === 0x0a ? "\\n" : c === 0x09 ? "\\t" : c === 0x22 || c === 0x5c ? "\\" + String.fromCharCode(c)
    : c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
  let t = from > 0 ? "..." : "";
  for (let i = from; i < to; i++) t += i === k ? `[${esc(b[i])}]` : esc(b[i]);
  if (to < b.length) t += "...";
  return `0x${b[k].toString(16).padStart(2, "0")} in "${t}"`;
}

/** Where replayCommand writes (process.stdout / process.stderr by default). */
export interface TextOut { write(text: string): unknown }

/** One line per reproduced trap: where, which fd, the message. */
export function describeTrap(t: ReplayTrap): string {
  return `batch ${t.batch}, call ${t.call} (${t.callName}(${t.args.join(", ")})), serving fd ${t.fd}: ${t.message}`;
}

/**
 * `wasm-reactor replay FILE [--force] [--check]`: 0 matched, 1 diverged or
 * the core trapped (a reproduced trap is a core bug), 2 unusable file.
 */
export function replayCommand(file: string, force: boolean, check = false, out: TextOut = process.stdout, err: TextOut = process.stderr): number {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    err.write(`wasm-reactor replay: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return 2;
  }
  let s: ReplayResult;
  try {
    s = replay(bytes, { force, check });
  } catch (e) {
    if (e instanceof RecordingError) { err.write(`wasm-reactor replay: ${file}: ${e.message}\n`); return 2; }
    throw e;
  }
  if (!s.ok) {
    err.write(`wasm-reactor replay: DIVERGED at ${s.divergence!.message}\n`);
    return 1;
  }
  const summary = `${s.batches} batches, ${s.events} events, ${s.calls} calls, ${s.requests} requests, ${s.bytes} bytes fed`;
  if (s.traps.length) {
    const n = s.traps.length;
    err.write(`wasm-reactor replay: replay matched the recording (${summary}), but the core trapped ${n} time${n > 1 ? "s" : ""}:\n` +
      s.traps.map((t) => `  ${describeTrap(t)}\n`).join("") +
      "a trap is a bug in the core: the recording reproduces it\n");
    return 1;
  }
  out.write(`replay ok: ${summary}${s.bytesCompared ? `, ${s.outBytes} out-bytes compared` : ""}\n`);
  if (!s.bytesCompared) out.write("(format 1 recording: requests and results compared, not the bytes they point at; re-record to compare those)\n");
  return 0;
}

export type { CoreExports };
