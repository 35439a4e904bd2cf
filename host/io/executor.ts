// The io executor: the front every backend sits behind. It owns the request
// table (host/io/table.ts), the promise of each slot (keyed by the slot's
// tag: slot number and generation, as abi.ts's SQE_USER_DATA), cancellation,
// and the choice of backend.
//
// Lifetimes: a slot is taken at the call and given back only at its
// completion, when the backend is done with it; its buffers stay referenced
// until then, even when the promise was settled earlier (ECANCELED by
// close(fd) or stop()). close(fd) cancels what is pending on fd, waits until
// the backend has returned every one of those slots (so no thread still uses
// the fd number), and then closes it.
import { writeSync } from "node:fs";
import * as abi from "../../assembly/abi.ts";
import { SysError, libc, errno } from "../libc.ts";
import type { Reactor } from "../reactor.ts";
import { RequestTable, ARG_BYTES } from "./table.ts";
import { W_TAG } from "./ops.ts";
import { fill, copyBack, SYSCALL, pathOf, fdOf, R_FD, R_STAT, type OpName, type Rec } from "./requests.ts";
import { IoStats } from "./stats.ts";
import { NodeLoopWatcher, ReactorWatcher, type FdWatcher } from "./watch.ts";
import { chooseBackend } from "./choose.ts";
import type { IoBackend, IoBackendChoice, IoBackendName } from "./backend.ts";
import { defaultIoBackend, ioBackendName } from "./backend.ts";

export interface ExecutorOptions {
  /** Default: WASM_REACTOR_IO_BACKEND, else "auto" (io_uring, else epoll_threadpool, else threadpool). */
  backend?: IoBackendChoice;
  /** Wait for completions and sockets on this Reactor's loop instead of Node's. */
  reactor?: Reactor;
  /** Pool threads (threadpool, epoll_threadpool's files). Default: WASM_REACTOR_IO_THREADS, else 4. */
  threads?: number;
  /** Requests in flight at once (more wait for a slot). Default 1024. */
  capacity?: number;
  /** Copy buffers through staging memory instead of passing them in place. Default false. */
  copyBuffers?: boolean;
  /** Where auto's one fallback line goes. Default: stderr. */
  log?: (line: string) => void;
}

/** A path: a string, its bytes (a Buffer), or a file: URL (Node's types stay out of the public declarations). */
export type IoPath = string | Uint8Array | { readonly href: string; readonly pathname: string };

interface Pending {
  op: OpName;
  fd: number;
  raw: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  rec: Rec;
  path: string | undefined;
  settled: boolean;
}

const STAGE_MAX = 64 * 1024;

/** The executors open on this thread, innermost last: io.* uses the last one. */
export const openExecutors: IoExecutor[] = [];

export class IoExecutor {
  /** The backend in use: "io_uring" | "epoll_threadpool" | "threadpool". */
  readonly backend: IoBackendName;
  /** Why auto did not take a better backend (null: it did, or one was forced). */
  readonly fallbackReason: string | null;
  /** The same operations, resolving to >= 0 (or the op's value) or -errno; never rejecting. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly raw: Record<OpName | "lseek", (...a: any[]) => Promise<any>>;
  private readonly table: RequestTable;
  private readonly impl: IoBackend;
  private readonly watcher: FdWatcher;
  private readonly pending: (Pending | null)[];
  private readonly gens: Int32Array;
  private readonly argViews: DataView[];
  private readonly free: number[] = [];
  private readonly waiting: { run: () => void; cancel: () => void }[] = [];
  private readonly byFd = new Map<number, Set<number>>();
  private readonly fdDrained = new Map<number, (() => void)[]>();
  private readonly copy: boolean;
  private inflight = 0;
  private idle: (() => void)[] = [];
  private stopping: Promise<void> | null = null;

  constructor(options: ExecutorOptions = {}) {
    const choice = options.backend === undefined ? defaultIoBackend() : ioBackendName(options.backend, "backend");
    const cap = options.capacity ?? 1024;
    if (!Number.isInteger(cap) || cap < 1 || cap > 65536) throw new RangeError(`capacity must be 1..65536, got ${cap}`);
    const threads = options.threads ?? (Number(process.env.WASM_REACTOR_IO_THREADS) || 4);
    this.copy = options.copyBuffers === true;
    this.table = new RequestTable(cap);
    this.pending = new Array(cap).fill(null);
    this.gens = new Int32Array(cap);
    this.argViews = Array.from({ length: cap }, (_, i) => new DataView(this.table.sab as unknown as ArrayBuffer, this.table.arg(i), ARG_BYTES));
    for (let i = cap - 1; i >= 0; i--) this.free.push(i);
    this.watcher = options.reactor ? new ReactorWatcher(options.reactor) : new NodeLoopWatcher();
    const { impl, reason } = chooseBackend(choice, {
      table: this.table, complete: (slot, res) => this.complete(slot, res), watcher: this.watcher, threads,
      reactor: options.reactor,
    });
    this.impl = impl;
    this.backend = impl.name;
    this.fallbackReason = reason;
    if (reason) (options.log ?? ((l) => writeSync(2, `${l}\n`)))(`wasm-reactor io: ${reason}; using ${impl.name}`);
    const raw = {} as Record<string, (...a: unknown[]) => Promise<unknown>>;
    for (const op of Object.keys(fill) as OpName[]) raw[op] = (...a: unknown[]) => this.start(op, a, true);
    raw.lseek = (fd: unknown, off: unknown, whence: unknown) => Promise.resolve(lseek(fd as number, off as number, whence as number, true));
    this.raw = raw as IoExecutor["raw"];
    openExecutors.push(this);
  }

  read(fd: number, buf: ArrayBufferView): Promise<number> { return this.start("read", [fd, buf], false) as Promise<number>; }
  write(fd: number, buf: ArrayBufferView): Promise<number> { return this.start("write", [fd, buf], false) as Promise<number>; }
  pread(fd: number, buf: ArrayBufferView, offset: number): Promise<number> { return this.start("pread", [fd, buf, offset], false) as Promise<number>; }
  pwrite(fd: number, buf: ArrayBufferView, offset: number): Promise<number> { return this.start("pwrite", [fd, buf, offset], false) as Promise<number>; }
  readv(fd: number, bufs: ArrayBufferView[]): Promise<number> { return this.start("readv", [fd, bufs], false) as Promise<number>; }
  writev(fd: number, bufs: ArrayBufferView[]): Promise<number> { return this.start("writev", [fd, bufs], false) as Promise<number>; }
  preadv(fd: number, bufs: ArrayBufferView[], offset: number): Promise<number> { return this.start("preadv", [fd, bufs, offset], false) as Promise<number>; }
  pwritev(fd: number, bufs: ArrayBufferView[], offset: number): Promise<number> { return this.start("pwritev", [fd, bufs, offset], false) as Promise<number>; }
  open(path: IoPath, flags = 0, mode = 0o644): Promise<number> { return this.start("open", [path, flags, mode], false) as Promise<number>; }
  openat(dirFd: number, path: IoPath, flags = 0, mode = 0o644): Promise<number> { return this.start("openat", [dirFd, path, flags, mode], false) as Promise<number>; }
  fsync(fd: number): Promise<number> { return this.start("fsync", [fd], false) as Promise<number>; }
  fdatasync(fd: number): Promise<number> { return this.start("fdatasync", [fd], false) as Promise<number>; }
  stat(path: IoPath): Promise<IoStats> { return this.start("stat", [path], false) as Promise<IoStats>; }
  lstat(path: IoPath): Promise<IoStats> { return this.start("lstat", [path], false) as Promise<IoStats>; }
  fstat(fd: number): Promise<IoStats> { return this.start("fstat", [fd], false) as Promise<IoStats>; }
  sendfile(outFd: number, inFd: number, offset: number, length: number): Promise<number> { return this.start("sendfile", [outFd, inFd, offset, length], false) as Promise<number>; }
  accept(fd: number, flags?: number): Promise<number> { return this.start("accept", flags === undefined ? [fd] : [fd, flags], false) as Promise<number>; }
  connect(fd: number, port: number, host?: string): Promise<number> { return this.start("connect", host === undefined ? [fd, port] : [fd, port, host], false) as Promise<number>; }
  recv(fd: number, buf: ArrayBufferView, flags = 0): Promise<number> { return this.start("recv", [fd, buf, flags], false) as Promise<number>; }
  send(fd: number, buf: ArrayBufferView, flags = 0): Promise<number> { return this.start("send", [fd, buf, flags], false) as Promise<number>; }
  /** lseek never blocks: carried out at once on this thread, in every backend. */
  lseek(fd: number, offset: number, whence = 0): Promise<number> {
    try { return Promise.resolve(lseek(fd, offset, whence, false)); } catch (e) { return Promise.reject(e); }
  }

  /**
   * close(fd): settles every operation pending on fd with ECANCELED, waits
   * until the backend has given their slots back, then closes fd.
   */
  close(fd: number): Promise<number> {
    if (this.stopping) return this.start("close", [fd], false) as Promise<number>;
    const mine = this.byFd.get(fd);
    if (mine && mine.size) {
      for (const slot of mine) this.cancelSlot(slot);
      return new Promise<void>((resolve) => {
        const list = this.fdDrained.get(fd) ?? [];
        list.push(resolve);
        this.fdDrained.set(fd, list);
      }).then(() => this.close(fd));
    }
    this.impl.forget?.(fd);
    return this.start("close", [fd], false) as Promise<number>;
  }

  /** Settles what is pending (ECANCELED), waits for the backend to give every slot back, then releases it. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const i = openExecutors.indexOf(this);
    if (i >= 0) openExecutors.splice(i, 1);
    for (const w of this.waiting.splice(0)) w.cancel();
    for (let slot = 0; slot < this.pending.length; slot++) if (this.pending[slot]) this.cancelSlot(slot);
    const idle = this.inflight === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.idle.push(resolve));
    this.stopping = idle.then(() => this.impl.close()).then(() => { this.watcher.keepAlive(false); this.watcher.closeAll(); });
    return this.stopping;
  }

  /** Requests in flight (for tests and stats). */
  get inFlight(): number { return this.inflight; }

  // ---- internals -------------------------------------------------------------

  private start(op: OpName, args: unknown[], raw: boolean): Promise<unknown> {
    if (this.stopping) {
      return settleNow(op, args, raw, -abi.ECANCELED);
    }
    const slot = this.free.pop();
    if (slot === undefined) {
      // Every slot is in flight: wait for one (FIFO), or ECANCELED at stop().
      return new Promise((resolve) => {
        this.waiting.push({ run: () => resolve(this.start(op, args, raw)), cancel: () => resolve(settleNow(op, args, raw, -abi.ECANCELED)) });
      });
    }
    const t = this.table;
    const rec: Rec = {
      i32: t.i32, w: t.sqe(slot), argAddr: t.base + t.arg(slot), arg: this.argViews[slot], argAt: 0,
      copy: this.copy, keep: null, copyOut: null, kind: 0,
    };
    if (this.copy) rec.stage = this.stager(slot);
    try {
      (fill[op] as (r: Rec, ...a: unknown[]) => void)(rec, ...args);
    } catch (e) {
      this.free.push(slot);
      return Promise.reject(e);
    }
    const gen = this.gens[slot];
    t.i32[rec.w + W_TAG] = slot;
    t.i32[rec.w + W_TAG + 1] = gen;
    const fd = fdOf(op, args);
    return new Promise((resolve, reject) => {
      this.pending[slot] = { op, fd, raw, resolve, reject, rec, path: pathOf(op, args), settled: false };
      if (fd >= 0 && op !== "close") {
        let s = this.byFd.get(fd);
        if (!s) { s = new Set(); this.byFd.set(fd, s); }
        s.add(slot);
      }
      if (this.inflight++ === 0) this.watcher.keepAlive(true);
      this.impl.submit(slot);
    });
  }

  /**
   * copyBuffers: each slot keeps its staging memory (up to STAGE_MAX bytes,
   * grown to the largest request it served) and reuses it, since a slot is
   * reused only after its completion; larger requests get a fresh buffer.
   */
  private stager(slot: number): (n: number) => Uint8Array {
    let used = 0;
    return (n) => {
      if (used + n > STAGE_MAX) return new Uint8Array(new ArrayBuffer(n));
      let b = this.stages[slot];
      if (!b || b.length < used + n) {
        // Views of the old buffer taken for this request stay alive through rec.keep.
        b = new Uint8Array(new ArrayBuffer(Math.min(STAGE_MAX, Math.max(4096, 2 ** Math.ceil(Math.log2(used + n))))));
        this.stages[slot] = b;
      }
      const v = b.subarray(used, used + n);
      used += n;
      return v;
    };
  }
  private readonly stages: (Uint8Array | null)[] = [];

  private cancelSlot(slot: number): void {
    const p = this.pending[slot];
    if (!p || p.settled) return;
    settle(p, -abi.ECANCELED);
    this.impl.cancel(slot);
  }

  /** The backend is done with slot: settle (unless cancelled), release its buffers, reuse it. */
  private complete(slot: number, res: number): void {
    const p = this.pending[slot];
    if (!p) return; // a stale completion: not ours any more
    this.pending[slot] = null;
    this.gens[slot]++;
    this.free.push(slot);
    if (!p.settled) {
      if (res >= 0 && p.rec.copyOut) copyBack(p.rec, res);
      if (res >= 0 && (p.rec.kind === R_FD)) this.impl.forget?.(res); // a new file under that number
      settle(p, res);
    } else if (res >= 0 && p.rec.kind === R_FD) {
      // Cancelled (ECANCELED went out), but the open or accept won the race
      // and made an fd nobody will ever see: close it, or it leaks (and an
      // accepted client would hang).
      libc.close(res);
    }
    if (p.fd >= 0) {
      const s = this.byFd.get(p.fd);
      if (s) {
        s.delete(slot);
        if (s.size === 0) {
          this.byFd.delete(p.fd);
          const d = this.fdDrained.get(p.fd);
          if (d) { this.fdDrained.delete(p.fd); for (const f of d) f(); }
        }
      }
    }
    const next = this.waiting.shift();
    if (next) next.run();
    if (--this.inflight === 0) {
      this.watcher.keepAlive(false);
      const idle = this.idle.splice(0);
      for (const f of idle) f();
    }
  }
}

/** Resolves or rejects p for result res (mapping fds and statx results). */
function settle(p: Pending, res: number): void {
  p.settled = true;
  if (res < 0) {
    if (p.raw) p.resolve(res);
    else p.reject(ioError(p.op, -res, p.fd, p.path));
    return;
  }
  p.resolve(p.rec.kind === R_STAT ? IoStats.from(p.rec.arg, p.rec.argAt) : res);
}

function settleNow(op: OpName, args: unknown[], raw: boolean, res: number): Promise<unknown> {
  if (raw) return Promise.resolve(res);
  return Promise.reject(ioError(op, -res, fdOf(op, args), pathOf(op, args)));
}

/** `open '/nope': ENOENT (No such file or directory)`, with code, errno, syscall, path, fd. */
export function ioError(op: OpName | "lseek", e: number, fd: number, path?: string): SysError {
  const syscall = op === "lseek" ? "lseek" : SYSCALL[op];
  const call = path !== undefined ? `${syscall} '${path}'` : fd >= 0 ? `${syscall}(fd ${fd})` : syscall;
  return new SysError(call, e, fd >= 0 ? fd : undefined, { syscall, path });
}

/** lseek(2) -> the new offset (or -errno when raw). */
export function lseek(fd: number, offset: number, whence: number, raw: boolean): number {
  const r = Number(libc.lseek(fd, offset, whence));
  if (r >= 0) return r;
  const e = errno();
  if (raw) return -e;
  throw ioError("lseek", e, fd);
}
