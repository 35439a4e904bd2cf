// The epoll_threadpool backend: sockets by readiness on this thread, regular
// files (which epoll cannot wait on: always "ready", then block on the disk)
// on the thread pool (host/io/threadpool.ts).
//
// A socket request is tried at once, nonblocking (recv/send with
// MSG_DONTWAIT; accept on a nonblocking listener or one reported readable;
// connect on a nonblocking socket). On EAGAIN it waits in the fd's queue
// (readers: recv, read, accept; writers: send, write, connect) and the fd is
// watched on the thread's loop (Node's, through a libuv poll handle; or the
// Reactor's): Node's own epoll, or the Reactor's epoll/poll backend, does the
// waiting, so no thread is spent per socket. When the fd is ready the queue is
// retried in order until one meets EAGAIN again. Results are delivered in a
// microtask, never inside submit() (backend.ts's contract).
//
// Routing needs to know what an fd is: one statx and one fcntl(F_GETFL) the
// first time an fd is seen, cached until forget(fd) (close through the
// executor, or a new fd with that number from open/accept). An fd closed and
// reopened behind the executor's back keeps its old kind: use ex.close().
import * as abi from "../../assembly/abi.ts";
import { libc, errno, addressOf, O_NONBLOCK } from "../libc.ts";
import type { IoBackend, BackendContext, Complete } from "./backend.ts";
import { ThreadPool } from "./threadpool.ts";
import type { RequestTable } from "./table.ts";
import type { FdWatcher } from "./watch.ts";
import {
  perform, get64, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_RECV, IORING_OP_SEND, IORING_OP_ACCEPT, IORING_OP_CONNECT,
  W_OP, W_FD, W_OFF, MSG_DONTWAIT,
} from "./ops.ts";
import { AT_EMPTY_PATH } from "./stats.ts";

const F_GETFL = 3, SOL_SOCKET = 1, SO_ERROR = 4, S_IFMT = 0o170000, S_IFSOCK = 0o140000, STATX_TYPE = 1;
const AT_POOL = 1, AT_READY = 2;

interface FdState { sock: boolean; nonblock: boolean; readers: number[]; writers: number[] }

export class EpollThreadPool implements IoBackend {
  readonly name = "epoll_threadpool" as const;
  private readonly pool: ThreadPool;
  private readonly t: RequestTable;
  private readonly complete: Complete;
  private readonly watcher: FdWatcher;
  private readonly fds = new Map<number, FdState>();
  private readonly where: Uint8Array;
  private readonly connecting: Uint8Array;
  private done: number[] = [];
  private flushing = false;
  private readonly stx = new ArrayBuffer(256);
  private readonly stxView = new DataView(this.stx);
  private readonly stxAddr = addressOf(this.stx);
  private readonly empty = new ArrayBuffer(8);
  private readonly emptyAddr = addressOf(this.empty);
  private readonly soErr = Buffer.alloc(4);
  private readonly soLen = [4];

  constructor(ctx: BackendContext) {
    this.t = ctx.table;
    this.complete = ctx.complete;
    this.watcher = ctx.watcher;
    this.where = new Uint8Array(ctx.table.cap);
    this.connecting = new Uint8Array(ctx.table.cap);
    this.pool = new ThreadPool(ctx);
  }

  submit(slot: number): void {
    const h = this.t.i32, w = this.t.sqe(slot);
    const op = h[w + W_OP] & 0xff, fd = h[w + W_FD];
    let ready = false;
    switch (op) {
      case IORING_OP_RECV: case IORING_OP_SEND: ready = true; break;
      case IORING_OP_ACCEPT: ready = true; break;
      case IORING_OP_CONNECT: ready = this.state(fd).nonblock; break;
      case IORING_OP_READ: case IORING_OP_WRITE: ready = get64(h, w + W_OFF) < 0 && this.state(fd).sock; break;
    }
    if (!ready) { this.where[slot] = AT_POOL; this.pool.submit(slot); return; }
    this.where[slot] = AT_READY;
    this.connecting[slot] = 0;
    const s = this.state(fd);
    const queue = op === IORING_OP_RECV || op === IORING_OP_READ || op === IORING_OP_ACCEPT ? s.readers : s.writers;
    queue.push(slot);
    // Only the head of a queue may go now (order per fd and direction is kept).
    if (queue.length === 1 && !(op === IORING_OP_ACCEPT && !s.nonblock)) this.retry(fd, s, queue === s.readers);
    this.rewatch(fd, s);
  }

  cancel(slot: number): void {
    if (this.where[slot] === AT_POOL) { this.pool.cancel(slot); return; }
    const fd = this.t.i32[this.t.sqe(slot) + W_FD];
    const s = this.fds.get(fd);
    if (!s) return;
    for (const q of [s.readers, s.writers]) {
      const i = q.indexOf(slot);
      if (i >= 0) { q.splice(i, 1); this.deliver(slot, -abi.ECANCELED); }
    }
    this.rewatch(fd, s);
  }

  forget(fd: number): void {
    const s = this.fds.get(fd);
    if (s && (s.readers.length || s.writers.length)) return; // still in use (the executor cancels first)
    this.fds.delete(fd);
    this.watcher.remove(fd);
  }

  close(): Promise<void> {
    for (const fd of this.fds.keys()) this.watcher.remove(fd);
    this.fds.clear();
    return this.pool.close();
  }

  /** What fd is: a socket? nonblocking? (cached; see the top). */
  private state(fd: number): FdState {
    let s = this.fds.get(fd);
    if (s) return s;
    let sock = false;
    if (libc.statx(fd, this.emptyAddr, AT_EMPTY_PATH, STATX_TYPE, this.stxAddr) === 0) sock = (this.stxView.getUint16(28, true) & S_IFMT) === S_IFSOCK;
    const fl = libc.fcntl(fd, F_GETFL, 0);
    s = { sock, nonblock: fl >= 0 && (fl & O_NONBLOCK) !== 0, readers: [], writers: [] };
    this.fds.set(fd, s);
    return s;
  }

  /** One nonblocking attempt of slot's request: its result, or -EAGAIN to wait. */
  private attempt(slot: number): number {
    const h = this.t.i32, w = this.t.sqe(slot);
    const op = h[w + W_OP] & 0xff, fd = h[w + W_FD];
    switch (op) {
      case IORING_OP_READ: case IORING_OP_WRITE: {
        h[w + W_OP] = op === IORING_OP_READ ? IORING_OP_RECV : IORING_OP_SEND;
        const r = perform(h, w, MSG_DONTWAIT);
        h[w + W_OP] = op;
        return r;
      }
      case IORING_OP_CONNECT: {
        if (!this.connecting[slot]) {
          const r = perform(h, w);
          if (r !== -abi.EINPROGRESS) return r;
          this.connecting[slot] = 1;
          return -abi.EAGAIN;
        }
        this.soLen[0] = 4;
        if (libc.getsockopt(fd, SOL_SOCKET, SO_ERROR, this.soErr, this.soLen) < 0) return -errno();
        const e = this.soErr.readInt32LE(0);
        return e ? -e : 0;
      }
      default: return perform(h, w, MSG_DONTWAIT);
    }
  }

  /**
   * Runs the head of one queue while it completes. A blocking listener (its
   * accept4 would block the loop) gets one accept per readiness report.
   */
  private retry(fd: number, s: FdState, readers: boolean): void {
    const q = readers ? s.readers : s.writers;
    while (q.length) {
      const r = this.attempt(q[0]);
      if (r === -abi.EAGAIN) break;
      const slot = q.shift()!;
      this.deliver(slot, r);
      if (!s.nonblock && (this.t.i32[this.t.sqe(slot) + W_OP] & 0xff) === IORING_OP_ACCEPT) break;
    }
  }

  private rewatch(fd: number, s: FdState): void {
    this.watcher.set(fd, s.readers.length > 0, s.writers.length > 0, (readable, writable) => {
      const st = this.fds.get(fd);
      if (!st) return;
      if (readable) this.retry(fd, st, true);
      if (writable) this.retry(fd, st, false);
      this.rewatch(fd, st);
    });
  }

  /** Completions of the readiness path, in a microtask (never inside submit()). */
  private deliver(slot: number, res: number): void {
    this.done.push(slot, res);
    if (this.flushing) return;
    this.flushing = true;
    queueMicrotask(() => {
      this.flushing = false;
      const d = this.done;
      this.done = [];
      for (let i = 0; i < d.length; i += 2) this.complete(d[i], d[i + 1]);
    });
  }
}
