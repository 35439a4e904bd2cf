// The libc executor: carries the core's requests out with one koffi call
// each (host/libc.ts), in SQ order, synchronously (see the contract in
// host/executor.ts). Host services go to the Services the Loop supplies;
// interest changes go to the event backend, at one call site
// (hostRequest, shared with the io_uring executor, host/executor-uring.ts).
// With a file pool (host/filepool.ts, `fileThreads`), the HTTP server's file
// work (OP_OPEN, OP_LIST, OP_PREAD) goes to its worker threads instead and
// completes in a later tick, through reap() (toFilePool, shared too).
//
// The hot path: SQE fields are read through the core's Int32Array as word
// indices (derived from abi.ts's byte offsets once, at load), results are
// written the same way; nothing is allocated per request.
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";
import type { Executor, InterestBackend, Services } from "./executor.ts";
import { libc, errno, SOCK_NONBLOCK, SOCK_CLOEXEC, IPPROTO_TCP, TCP_NODELAY } from "./libc.ts";

const one = Buffer.from([1, 0, 0, 0]); // setsockopt's int 1, made once
import type { FilePool } from "./filepool.ts";

const SQE_WORDS = abi.SQE_SIZE >> 2, CQE_WORDS = abi.CQE_SIZE >> 2;
const W_FD = abi.SQE_FD >> 2, W_OFF = abi.SQE_OFF >> 2, W_ADDR = abi.SQE_ADDR >> 2, W_LEN = abi.SQE_LEN >> 2;
const W_FLAGS = abi.SQE_OP_FLAGS >> 2, W_TAG = abi.SQE_USER_DATA >> 2, W_SPLICE = abi.SQE_SPLICE_FD_IN >> 2;
const C_RES = abi.CQE_RES >> 2;
// The core writes accept4's flags into every OP_ACCEPT (abi.ts): they must be these.
if (abi.ACCEPT_FLAGS !== (SOCK_NONBLOCK | SOCK_CLOEXEC)) throw new Error("abi.ACCEPT_FLAGS is not SOCK_NONBLOCK | SOCK_CLOEXEC");

export class LibcExecutor implements Executor {
  private readonly wouldBlock: ((fd: number, bits: number) => void) | null;
  constructor(private readonly core: Core, private readonly services: Services, private readonly backend: InterestBackend,
    private readonly pool: FilePool | null = null) {
    this.wouldBlock = backend.wouldBlock ? backend.wouldBlock.bind(backend) : null;
    if (pool) this.reap = (cq, max) => pool.reap(cq, max);
  }

  /** The completion phase: the file pool's finished work (only with a pool). */
  reap?: (cq: number, max: number) => number;

  submit(sq: number, cq: number, n: number): number {
    const core = this.core;
    core.refresh();
    let i32 = core.i32;
    const base = core.base;
    const pool = this.pool;
    let q = sq >> 2, c = cq >> 2;
    for (let i = 0; i < n; i++, q += SQE_WORDS) {
      const op = i32[q] & 0xff;
      if (pool !== null && toFilePool(pool, op, i32, q)) continue; // its completion comes through reap()
      let r: number;
      if (op < abi.OP_CTL) {
        r = libcRequest(op, i32, q, base, this.backend);
      } else {
        r = hostRequest(op, i32, q, this.services, this.backend);
        // JS ran (a callback, the file server, a log function): memory may have grown, views must follow.
        if (op >= abi.OP_CALL) { core.refresh(); i32 = core.i32; }
      }
      if (this.wouldBlock) reportEdge(this.wouldBlock, op, i32[q + W_FD], i32[q + W_ADDR], i32[q + W_LEN], r, i32, q);
      i32[c] = i32[q + W_TAG]; // the completion: the request's tag, its result
      i32[c + 1] = i32[q + W_TAG + 1];
      i32[c + C_RES] = r;
      i32[c + 3] = 0;
      c += CQE_WORDS;
    }
    this.services.roundDone();
    return (c - (cq >> 2)) / CQE_WORDS;
  }
}

/**
 * Hands SQ entry `q` to the file pool if it is file work (OP_OPEN, OP_LIST,
 * OP_PREAD) and the pool has room -> true: its completion comes through the
 * pool's reap(). Else false: the caller carries it out itself.
 */
export function toFilePool(pool: FilePool, op: number, i32: Int32Array, q: number): boolean {
  if ((op !== abi.OP_OPEN && op !== abi.OP_LIST && op !== abi.OP_PREAD) || !pool.hasRoom) return false;
  pool.post(op, i32[q + W_FD], i32[q + W_ADDR], i32[q + W_LEN], i32[q + W_FLAGS], i32[q + W_OFF], i32[q + W_TAG], i32[q + W_TAG + 1]);
  return true;
}

/**
 * Carries out kernel request SQ entry `q` (a word index into `i32`, the
 * core's memory at absolute address `base`) with one libc call -> result or
 * -errno. Shared with the io_uring executor (its requests io_uring lacks).
 */
export function libcRequest(op: number, i32: Int32Array, q: number, base: number, backend: InterestBackend): number {
  // Addresses are linear-memory offsets below 2^31 (abi.ts): the low word of addr/off is enough.
  const fd = i32[q + W_FD], addr = i32[q + W_ADDR], len = i32[q + W_LEN];
  let r: number;
  switch (op) {
    case abi.OP_READ: r = libc.read(fd, base + addr, len); break;
    case abi.OP_WRITE: r = libc.write(fd, base + addr, len); break;
    case abi.OP_SEND: r = libc.send(fd, base + addr, len, i32[q + W_FLAGS]); break;
    case abi.OP_WRITEV: r = libc.writev(fd, base + addr, len); break;
    case abi.OP_ACCEPT: r = addr ? libc.accept4(fd, base + addr, base + i32[q + W_OFF], i32[q + W_FLAGS]) : libc.accept4(fd, 0, 0, i32[q + W_FLAGS]); break;
    case abi.OP_SENDFILE: r = libc.sendfile(fd, i32[q + W_SPLICE], base + addr, len); break;
    case abi.OP_SPLICE: r = libc.splice(i32[q + W_SPLICE], 0, fd, 0, len, i32[q + W_FLAGS] & abi.SPLICE_FLAGS); break;
    case abi.OP_PIPE: r = libc.pipe2At(base + addr, i32[q + W_FLAGS]); break;
    case abi.OP_CLOSE: backend.closed(fd); r = libc.close(fd); break;
    case abi.OP_SHUTDOWN: r = libc.shutdown(fd, len); break;
    case abi.OP_SOCKET: // domain, type, protocol (io_uring's fields); op_flags: SOCKET_* options
      r = libc.socket(fd, i32[q + W_OFF], len);
      if (r >= 0 && i32[q + W_FLAGS] & abi.SOCKET_NODELAY) libc.setsockopt(r, IPPROTO_TCP, TCP_NODELAY, one, 4);
      break;
    case abi.OP_CONNECT: r = libc.connect(fd, base + addr, i32[q + W_OFF]); break; // again after WRITABLE: 0 / the error
    case abi.OP_PREAD: r = libc.pread(fd, base + addr, len, i32[q + W_OFF]); break;
    default: return 0;
  }
  return r < 0 ? -errno() : r; // read at once: koffi keeps the last call's
}

/**
 * Carries out a request that is not a kernel call (OP_CTL and the host
 * services, every code from abi.OP_CTL up), synchronously -> 0 or -errno.
 * After an OP_CALL and up (JS ran), the caller re-reads its memory views.
 * Shared by every executor that runs against real services.
 */
export function hostRequest(op: number, i32: Int32Array, q: number, services: Services, backend: InterestBackend): number {
  const fd = i32[q + W_FD], addr = i32[q + W_ADDR], len = i32[q + W_LEN];
  switch (op) {
    // Answered by the backend and the services themselves: >= 0 or -errno.
    case abi.OP_CTL: return backend.setInterest(fd, len, i32[q + W_FLAGS], i32[q + W_OFF]);
    case abi.OP_LOG: services.log(i32[q + W_FLAGS], addr, len, i32[q + W_OFF]); return 0;
    case abi.OP_STOP: services.stop(); return 0;
    case abi.OP_CALL: return services.call(addr, len, fd, i32[q + W_FLAGS], i32[q + W_OFF]);
    case abi.OP_OPEN: return services.open(addr, len, i32[q + W_FLAGS], i32[q + W_OFF] === 1);
    case abi.OP_LIST: return services.list(addr, len, i32[q + W_FLAGS]);
    case abi.OP_METRICS: return services.metrics ? services.metrics(addr, len) : 0;
    default: return 0;
  }
}

/**
 * Edge emulation (backends without kernel edges, host/backend/poll.ts):
 * tells the backend which operations met EAGAIN or fell short, so that a
 * new edge may be reported; a JS callback on fd re-arms it for whatever
 * the callback did (the executor cannot see its reads and writes). `q`:
 * the request's word index in `i32` (OP_SPLICE's flags and fd_in).
 */
export function reportEdge(wb: (fd: number, bits: number) => void, op: number, fd: number, addr: number, len: number, r: number, i32: Int32Array, q: number): void {
  switch (op) {
    case abi.OP_READ: if (r === -abi.EAGAIN || (r > 0 && r < len)) wb(fd, abi.EV_READABLE); break;
    case abi.OP_ACCEPT: if (r === -abi.EAGAIN) wb(fd, abi.EV_READABLE); break;
    case abi.OP_WRITE: case abi.OP_SEND: case abi.OP_SENDFILE:
      if (r === -abi.EAGAIN || (r >= 0 && r < len)) wb(fd, abi.EV_WRITABLE);
      break;
    case abi.OP_SPLICE: // socket -> pipe: the socket is fd_in (READABLE); pipe -> socket: it is fd_out (WRITABLE)
      if (i32[q + W_FLAGS] & abi.SPLICE_TO_PIPE) { if (r === -abi.EAGAIN) wb(i32[q + W_SPLICE], abi.EV_READABLE); }
      else if (r === -abi.EAGAIN || (r >= 0 && r < len)) wb(fd, abi.EV_WRITABLE);
      break;
    case abi.OP_WRITEV: if (r === -abi.EAGAIN || (r >= 0 && r < iovBytes(i32, addr, len))) wb(fd, abi.EV_WRITABLE); break;
    case abi.OP_CALL: if (addr === abi.CALL_IO && fd >= 0) wb(fd, abi.EV_READABLE | abi.EV_WRITABLE); break;
  }
}

/** Bytes a writev's native iovecs (16 bytes each, at `at` in linear memory) ask for. */
function iovBytes(i32: Int32Array, at: number, count: number): number {
  let sum = 0;
  for (let k = 0; k < count; k++) sum += i32[(at + 16 * k + 8) >> 2];
  return sum;
}
