// Reading the core's requests (io_uring-shaped SQEs, assembly/abi.ts) and
// writing their completions, for the hosts that are not the hot path: the
// tests' fake host, the fuzzer, the recorder and replay. (The libc executor
// reads the same fields itself, as Int32Array words.)
//
// decodeSqe() undoes reactor/ctl.ts submit(): it gives a request back as the
// core's (op, fd, a0..a3), the form abi.ts documents each op's arguments in
// and that the tests script against. Only a PREAD's a3 (the core's own
// file-cache entry, kept in its in-flight table) does not travel.
import * as abi from "../assembly/abi.ts";

export interface Request {
  op: number; fd: number; a0: number; a1: number; a2: number; a3: number;
  /** The tag (SQE_USER_DATA): in-flight slot (lo word) and generation (hi word). */
  tag: number; gen: number;
}

export const SQE_WORDS = abi.SQE_SIZE >> 2;
export const CQE_WORDS = abi.CQE_SIZE >> 2;
const W_FD = abi.SQE_FD >> 2, W_OFF = abi.SQE_OFF >> 2, W_ADDR = abi.SQE_ADDR >> 2, W_LEN = abi.SQE_LEN >> 2;
const W_FLAGS = abi.SQE_OP_FLAGS >> 2, W_TAG = abi.SQE_USER_DATA >> 2, W_SPLICE = abi.SQE_SPLICE_FD_IN >> 2;

/** The request at byte offset `at` of `i32`'s memory. */
export function decodeSqe(i32: Int32Array, at: number): Request {
  const w = at >> 2;
  const op = i32[w] & 0xff, fd = i32[w + W_FD];
  const offLo = i32[w + W_OFF], offHi = i32[w + W_OFF + 1], addr = i32[w + W_ADDR];
  const len = i32[w + W_LEN], flags = i32[w + W_FLAGS];
  const r: Request = { op, fd, a0: addr, a1: len, a2: flags, a3: offLo, tag: i32[w + W_TAG], gen: i32[w + W_TAG + 1] };
  switch (op) {
    case abi.OP_PREAD: r.a2 = offLo; r.a3 = 0; break;
    case abi.OP_ACCEPT: r.a1 = 0; r.a2 = 0; r.a3 = 0; break;
    case abi.OP_SENDFILE: r.a0 = i32[w + W_SPLICE]; r.a1 = addr; r.a2 = len; r.a3 = 0; break;
    case abi.OP_SPLICE: r.fd = -1; r.a0 = fd; r.a3 = i32[w + W_SPLICE]; break; // fd_out, len, SPLICE_*, fd_in (the owner fd stays in the core)
    case abi.OP_SHUTDOWN: r.a0 = len; r.a1 = 0; r.a2 = 0; r.a3 = 0; break;
    case abi.OP_SOCKET: r.fd = -1; r.a0 = fd; r.a1 = offLo; r.a3 = 0; break; // domain, type, SOCKET_* (the owner fd stays in the core)
    case abi.OP_CTL: r.a0 = len; r.a1 = flags; r.a2 = offLo; r.a3 = offHi; break;
  }
  return r;
}

/** Writes CQ entry i at byte offset `cq`: the tag of the request at `sqe` and its result. */
export function writeCqe(i32: Int32Array, cq: number, i: number, sqe: number, res: number): void {
  const c = (cq >> 2) + i * CQE_WORDS, s = (sqe >> 2) + W_TAG;
  i32[c] = i32[s];
  i32[c + 1] = i32[s + 1];
  i32[c + 2] = res;
  i32[c + 3] = 0;
}

/** The result of CQ entry i at byte offset `cq`. */
export function cqeResult(i32: Int32Array, cq: number, i: number): number {
  return i32[(cq >> 2) + i * CQE_WORDS + (abi.CQE_RES >> 2)];
}

/**
 * The result of each of the n requests at `sq`, found by tag among the k
 * completions at `cq` (which may be in any order): results[i] completes
 * SQ[i]; a request with no completion there gets `missing`.
 */
export function resultsByTag(i32: Int32Array, sq: number, n: number, cq: number, k: number, missing = -abi.EAGAIN): Int32Array {
  const out = new Int32Array(n);
  const byTag = new Map<number, number>();
  for (let j = 0; j < k; j++) {
    const c = (cq >> 2) + j * CQE_WORDS;
    byTag.set(i32[c] * 0x100000000 + (i32[c + 1] >>> 0), i32[c + (abi.CQE_RES >> 2)]);
  }
  for (let i = 0; i < n; i++) {
    const s = (sq >> 2) + i * SQE_WORDS + W_TAG;
    out[i] = byTag.get(i32[s] * 0x100000000 + (i32[s + 1] >>> 0)) ?? missing;
  }
  return out;
}
