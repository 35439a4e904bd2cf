// Reading a recording (format: host/record.ts) without running anything:
// the header, then every call into the core in order, with the bytes the
// host wrote into linear memory before it (its inputs), what it returned,
// the requests it emitted (decoded SQEs) and, once the host carried them
// out, their results. For test suites that want to look at what happened
// (which requests, in which batch) rather than only replay it.
import * as abi from "../assembly/abi.ts";
import {
  MAGIC, FORMAT_VERSION, READ_VERSIONS, F_TIME, F_CALL, F_RET, F_SQ, F_MEM, F_END, F_TRAP, F_OUT, RECORDED_EXPORTS, RETURNS_SQ,
  type RecordingHeader, type RecordedExport,
} from "./record.ts";
import { OP_NAMES } from "./abi-names.ts";
import { decodeSqe } from "./sqe.ts";

/** A file that is not a usable recording: bad magic, truncated, corrupt, other build. */
export class RecordingError extends Error {
  constructor(message: string) { super(message); this.name = "RecordingError"; }
}

export interface Recording {
  version: number;
  header: RecordingHeader;
  calls: RecordedCall[];
  /** dispatch() calls: one per event batch. */
  batches: number;
  /** False if the recording has no end frame (the run died before close()); `calls` are those it holds. */
  complete: boolean;
}

export interface RecordedCall {
  /** 1-based, as replay() counts calls in its messages. */
  index: number;
  /** dispatch() calls so far, this one included. */
  batch: number;
  name: RecordedExport;
  args: number[];
  /** Loop time [monotonic ms, wall-clock ms] the core saw. */
  time: [number, number];
  /** Bytes the host wrote into linear memory since the previous call: this call's inputs. */
  writes: MemoryWrite[];
  /** What it returned; null if it trapped. */
  result: number | null;
  trapped: boolean;
  /** The requests it emitted (for the calls that return a round), with results once carried out. */
  requests: RecordedRequest[];
  /** dispatch(n): the batch of event records (EV_* bits) it was handed. */
  events?: RecordedEvent[];
  /** Byte offset of the call's frame in the recording. */
  offset: number;
}

export interface MemoryWrite {
  /** Offset in linear memory. */
  offset: number;
  /** A view into the recording's bytes. */
  bytes: Uint8Array;
}

export interface RecordedRequest {
  /** OP_* name without the prefix: "READ", "CTL", "CALL"... */
  op: string;
  opcode: number;
  fd: number;
  /** a0..a3; their meaning per op is documented in assembly/abi.ts. */
  args: [number, number, number, number];
  /** Its tag (SQE_USER_DATA): in-flight slot and generation; its completion carries the same. */
  tag: [number, number];
  /** What the host answered (>= 0, or -errno); absent if the recording ends first. */
  result?: number;
  /**
   * The bytes it pointed at when emitted (format 2; format in host/record.ts:
   * write/send buffer, iovec table and segments, path, log text, sendfile
   * offset); empty for ops that hand out nothing, absent in format 1.
   */
  out?: Uint8Array;
}

export interface RecordedEvent { fd: number; events: number; gen: number }

/** The header (after magic and version checks) and where the frames start. */
export function readHeader(bytes: Uint8Array): { header: RecordingHeader; offset: number; version: number } {
  if (bytes.length < 16 || Buffer.from(bytes.subarray(0, 8)).toString("latin1") !== MAGIC) {
    throw new RecordingError("not a wasm-reactor recording (bad magic)");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (!READ_VERSIONS.includes(version)) throw new RecordingError(`recording format version ${version}; this build reads versions ${READ_VERSIONS.join(" and ")} (writes ${FORMAT_VERSION})`);
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
  return { header, offset: 16 + n, version };
}

export interface Frame { type: number; pos: number; body: number; len: number }

/** The frame at `pos`, bounds-checked; null at the end of the bytes. */
export function frameAt(bytes: Uint8Array, dv: DataView, pos: number, index: number): Frame | null {
  if (pos === bytes.length) return null;
  if (pos + 5 > bytes.length) throw new RecordingError(`recording truncated inside a frame header at byte ${pos}`);
  const type = dv.getUint8(pos);
  const len = dv.getUint32(pos + 1, true);
  const body = pos + 5;
  if (body + len > bytes.length) throw new RecordingError(`recording truncated: frame ${index} (type ${type}) needs ${len} bytes at byte ${body}, ${bytes.length - body} left`);
  return { type, pos, body, len };
}

/** A call frame's export and arguments. */
export function decodeCall(dv: DataView, f: Frame): { name: RecordedExport; args: number[] } {
  if (f.len < 1 || (f.len - 1) % 8 !== 0) throw new RecordingError(`corrupt call frame at byte ${f.pos}`);
  const name = RECORDED_EXPORTS[dv.getUint8(f.body)];
  if (!name) throw new RecordingError(`corrupt call frame at byte ${f.pos}: unknown export #${dv.getUint8(f.body)}`);
  const args: number[] = [];
  for (let o = f.body + 1; o < f.body + f.len; o += 8) args.push(dv.getFloat64(o, true));
  return { name, args };
}

/**
 * An F_OUT frame: its flag (1: write data cut to the round's results) and
 * exactly `n` entries (u32 length, bytes) filling it, else RecordingError.
 */
export function decodeOut(bytes: Uint8Array, dv: DataView, f: Frame, n: number): { cut: boolean; out: Uint8Array[] } {
  const out: Uint8Array[] = [];
  if (f.len < 1 || dv.getUint8(f.body) > 1) throw new RecordingError(`corrupt out-bytes frame at byte ${f.pos}: bad flag`);
  let o = f.body + 1;
  const end = f.body + f.len;
  for (let i = 0; i < n; i++) {
    if (o + 4 > end) throw new RecordingError(`corrupt out-bytes frame at byte ${f.pos}: ends inside the length of request ${i} of ${n}`);
    const len = dv.getUint32(o, true);
    if (o + 4 + len > end) throw new RecordingError(`corrupt out-bytes frame at byte ${f.pos}: request ${i} of ${n} needs ${len} bytes, ${end - o - 4} left`);
    out.push(bytes.subarray(o + 4, o + 4 + len));
    o += 4 + len;
  }
  if (o !== end) throw new RecordingError(`corrupt out-bytes frame at byte ${f.pos}: ${end - o} bytes after its ${n} requests`);
  return { cut: dv.getUint8(f.body) === 1, out };
}

/** One SQE, decoded (its arguments as the core's a0..a3: host/sqe.ts). */
export function decodeRequest(b: Uint8Array, off: number): RecordedRequest {
  // A copy (aligned, and a Buffer's slice would not copy).
  const r = decodeSqe(new Int32Array(new Uint8Array(b.subarray(off, off + abi.SQE_SIZE)).buffer), 0);
  return { op: OP_NAMES[r.op] ?? String(r.op), opcode: r.op, fd: r.fd, args: [r.a0, r.a1, r.a2, r.a3], tag: [r.tag, r.gen] };
}

export function describeRequest(r: RecordedRequest): string {
  return `{${r.op} fd=${r.fd} a0=${r.args[0]} a1=${r.args[1]} a2=${r.args[2]} a3=${r.args[3]}}`;
}


/**
 * Parses a recording. Throws RecordingError for bytes that are not one (bad
 * magic, other format version, corrupt frames); a recording cut short (no
 * end frame) is returned with `complete: false`.
 */
export function readRecording(bytes: Uint8Array): Recording {
  const { header, offset, version } = readHeader(bytes);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const calls: RecordedCall[] = [];
  let time: [number, number] = [header.time?.[0] ?? 0, header.time?.[1] ?? 0];
  let writes: MemoryWrite[] = [];
  let last: RecordedCall | null = null;
  let round: RecordedRequest[] = []; // the requests the host is carrying out
  let batches = 0;
  let pos = offset;
  for (let index = 0; ; index++) {
    // Cut short (the run died before close()): what is there is still worth reading.
    if (pos + 5 > bytes.length || pos + 5 + dv.getUint32(pos + 1, true) > bytes.length) {
      return { version, header, calls, batches, complete: false };
    }
    const f = frameAt(bytes, dv, pos, index)!;
    switch (f.type) {
      case F_TIME:
        if (f.len !== 16) throw new RecordingError(`corrupt time frame at byte ${f.pos}`);
        time = [dv.getFloat64(f.body, true), dv.getFloat64(f.body + 8, true)];
        break;
      case F_MEM:
        if (f.len < 4) throw new RecordingError(`corrupt memory frame at byte ${f.pos}`);
        writes.push({ offset: dv.getUint32(f.body, true), bytes: bytes.subarray(f.body + 4, f.body + f.len) });
        break;
      case F_CALL: {
        const { name, args } = decodeCall(dv, f);
        if (name === "dispatch") batches++;
        const call: RecordedCall = {
          index: calls.length + 1, batch: batches, name, args, time, writes, result: null, trapped: false, requests: [], offset: f.pos,
        };
        // complete(n): the host wrote the n results of the round just before it (last write of n * CQE_SIZE).
        if (name === "complete" && round.length === args[0]) {
          const cq = [...writes].reverse().find((w) => w.bytes.length === round.length * abi.CQE_SIZE);
          if (cq) {
            const v = new DataView(cq.bytes.buffer, cq.bytes.byteOffset, cq.bytes.byteLength);
            // Matched by tag: completions may be in any order.
            const res = new Map<string, number>();
            for (let i = 0; i < round.length; i++) {
              const o = i * abi.CQE_SIZE + abi.CQE_USER_DATA;
              res.set(`${v.getInt32(o, true)}/${v.getInt32(o + 4, true)}`, v.getInt32(i * abi.CQE_SIZE + abi.CQE_RES, true));
            }
            round.forEach((r) => { r.result = res.get(`${r.tag[0]}/${r.tag[1]}`); });
          }
        }
        if (name === "dispatch") {
          const n = args[0];
          const area = [...writes].reverse().find((w) => w.bytes.length === n * abi.EVENT_SIZE);
          if (area || n === 0) {
            const v = area ? new DataView(area.bytes.buffer, area.bytes.byteOffset, area.bytes.byteLength) : null;
            call.events = Array.from({ length: n }, (_, i) => ({
              events: v!.getInt32(i * abi.EVENT_SIZE + abi.EVENT_BITS, true),
              fd: v!.getInt32(i * abi.EVENT_SIZE + abi.EVENT_FD, true),
              gen: v!.getInt32(i * abi.EVENT_SIZE + abi.EVENT_GEN, true),
            }));
          }
        }
        calls.push(call);
        last = call;
        writes = [];
        break;
      }
      case F_RET:
        if (f.len !== 8 || !last) throw new RecordingError(`corrupt result frame at byte ${f.pos}`);
        last.result = dv.getFloat64(f.body, true);
        if (RETURNS_SQ.has(last.name) && last.result === 0) round = [];
        break;
      case F_TRAP:
        if (!last) throw new RecordingError(`corrupt trap frame at byte ${f.pos}`);
        last.trapped = true;
        break;
      case F_SQ: {
        if (!last || last.result === null || f.len !== last.result * abi.SQE_SIZE) throw new RecordingError(`corrupt submission frame at byte ${f.pos}`);
        for (let o = 0; o < f.len; o += abi.SQE_SIZE) last.requests.push(decodeRequest(bytes, f.body + o));
        round = last.requests;
        break;
      }
      case F_OUT: {
        if (version < 2 || !last || !last.requests.length || last.requests[0].out) throw new RecordingError(`corrupt recording: out-bytes frame at byte ${f.pos} follows no submission frame`);
        decodeOut(bytes, dv, f, last.requests.length).out.forEach((b, i) => { last!.requests[i].out = b; });
        break;
      }
      case F_END:
        if (f.body + f.len !== bytes.length) throw new RecordingError(`corrupt recording: ${bytes.length - f.body - f.len} bytes after the end frame`);
        return { version, header, calls, batches, complete: true };
      default:
        throw new RecordingError(`corrupt recording: unknown frame type ${f.type} at byte ${f.pos}`);
    }
    pos = f.body + f.len;
  }
}
