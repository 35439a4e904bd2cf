// The file pool: the HTTP server's file work (OP_OPEN: openat2 beneath the
// root + statx + MIME; its stat-only re-checks; OP_LIST: directory
// listings; OP_PREAD: a small body into the file cache) carried out on
// worker threads, so that a slow disk, NFS or FUSE path never stalls the
// reactor thread (nginx's `aio threads`, libuv's fs pool). The libc
// executor hands these three ops here instead of calling them itself; their
// completions come back through the executor's reap() in the completion
// phase of a later tick, routed by tag like any other.
//
// Why worker_threads and not koffi's async calls (libuv's pool): the reactor
// thread usually sits in epoll_wait, not in Node's event loop, so a
// completion callback queued on that loop would never run. A worker publishes
// its result in shared memory and writes an eventfd the event backend
// watches: the blocked wait returns, the completion phase reaps.
//
// Shared state (one SharedArrayBuffer, Int32 words):
//   header  JOB_TAIL, JOB_HEAD (workers claim jobs), DONE_TAIL (workers
//           publish), CLOSING, LIVE (workers not yet ended: the last one
//           out closes the eventfd and the pool's own copy of the root fd,
//           which a worker still finishing a request after close() uses;
//           closed earlier, their numbers could be reused), BELL (what an
//           idle worker waits on: every post and close() ring it, so a
//           worker that looked before either cannot sleep through it)
// The counters are Int32 words that wrap; ring positions are `at(counter)`.
//   jobs    a ring of SLOTS slot numbers (+1; 0 = empty) waiting for a worker
//   done    a ring of SLOTS slot numbers (+1) completed, for the reactor
//   slots   SLOTS records of SLOT_WORDS words: the request and its result
// A slot belongs to one request from post() until its completion is reaped,
// so neither ring can overwrite an entry not yet read (each holds at most
// SLOTS entries in flight). Workers write linear memory directly at the
// request's addresses (the FILE record, a listing, a pread's buffer) through
// a view of the same memory: V8 reserves a wasm memory's whole range up
// front, so its base does not move when it grows (checked at every reap).
import { Worker } from "node:worker_threads";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";
import { libc, check, EFD_CLOEXEC, EFD_NONBLOCK } from "./libc.ts";

const F_DUPFD_CLOEXEC = 1030;
const ONE = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]); // an eventfd increment
/**
 * Pools closed while a worker may still run a request: kept reachable (with
 * their core, whose linear memory that worker may still write) until every
 * worker has ended.
 */
const closing = new Set<FilePool>();

export const SLOTS = 256;
export const SLOT_WORDS = 12;
// slot fields
export const S_OP = 0, S_FD = 1, S_ADDR = 2, S_LEN = 3, S_FLAGS = 4, S_OFF = 5, S_MEM = 6, S_TAG_LO = 7, S_TAG_HI = 8, S_RES = 9;
// header words
export const JOB_TAIL = 0, JOB_HEAD = 1, DONE_TAIL = 2, CLOSING = 3, LIVE = 4, BELL = 5;
const HEADER = 6;
/** Ring index of a counter (SLOTS is a power of two; the Int32 counters wrap, the mask stays right). */
export const at = (x: number): number => x & (SLOTS - 1);
export const JOBS_AT = HEADER, DONE_AT = HEADER + SLOTS, SLOTS_AT = HEADER + 2 * SLOTS;
const WORDS = SLOTS_AT + SLOTS * SLOT_WORDS;

/** What a worker is given (workerData). */
export interface FilePoolWorkerData {
  sab: SharedArrayBuffer;
  eventfd: number;
  base: number;
  root: string;
  rootFd: number;
  precompressed: boolean;
  /** Test hook (WASM_REACTOR_FILEPOOL_DELAY="substring:ms"): paths containing substring wait ms before their open. */
  delay: string;
}

export interface FilePoolOptions {
  /** Worker threads (default 4, as libuv's pool). */
  threads?: number;
  root: string;
  rootFd: number;
  precompressed: boolean;
  /** Told when a worker fails (delivered on Node's event loop: in attach mode, or after run() returns). */
  onError?: (line: string) => void;
}

export class FilePool {
  readonly eventfd: number;
  readonly threads: number;
  private readonly i32: Int32Array;
  private readonly workers: Worker[] = [];
  private readonly free: number[] = [];
  private doneHead = 0;
  private readonly base: number;
  private readonly wake = Buffer.alloc(8);
  /** Requests posted and not yet reaped. */
  inFlight = 0;

  constructor(private readonly core: Core, options: FilePoolOptions) {
    this.threads = options.threads ?? 4;
    if (!Number.isInteger(this.threads) || this.threads < 1 || this.threads > 64) {
      throw new RangeError(`fileThreads must be an integer 1..64, got ${options.threads}`);
    }
    const sab = new SharedArrayBuffer(WORDS * 4);
    this.i32 = new Int32Array(sab);
    for (let s = SLOTS - 1; s >= 0; s--) this.free.push(s);
    this.eventfd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    this.base = core.base;
    // The workers get their own copy of the root fd: the server may close its
    // own (FileServer.close) while a worker still finishes a request.
    const rootFd = check("fcntl F_DUPFD_CLOEXEC", libc.fcntl(options.rootFd, F_DUPFD_CLOEXEC, 0));
    const data: FilePoolWorkerData = {
      sab, eventfd: this.eventfd, base: core.base, root: options.root, rootFd,
      precompressed: options.precompressed, delay: process.env.WASM_REACTOR_FILEPOOL_DELAY ?? "",
    };
    const entry = new URL("./filepool-worker.js", import.meta.url);
    // A missing worker file would only say so in an 'error' event, which a
    // loop blocked in its wait never delivers: requests would wait forever.
    if (!existsSync(fileURLToPath(entry))) {
      libc.close(this.eventfd);
      throw new Error(`file pool: ${fileURLToPath(entry)} is missing (a partial copy of dist/?)`);
    }
    // Test hook: start the (wrapping) ring counters at this value, e.g. just
    // below 2^31, so a test sees them wrap without 2^31 requests first.
    const start = Number(process.env.WASM_REACTOR_FILEPOOL_COUNTER_START ?? 0) | 0;
    this.i32[JOB_TAIL] = this.i32[JOB_HEAD] = this.i32[DONE_TAIL] = this.doneHead = start;
    this.i32[LIVE] = this.threads;
    try {
      for (let i = 0; i < this.threads; i++) {
        const w = new Worker(entry, { workerData: data });
        w.unref(); // the pool never keeps a process alive by itself
        w.on("error", (e) => options.onError?.(`file pool worker failed: ${e?.stack ?? e}`));
        w.on("exit", () => this.workerEnded());
        this.workers.push(w);
        this.live++;
      }
    } catch (e) {
      this.i32[LIVE] = this.workers.length; // the ones started end on CLOSING and close what they share
      this.close();
      if (this.workers.length === 0) { libc.close(this.eventfd); libc.close(data.rootFd); }
      throw e;
    }
  }

  /** True if the pool can take one more request now (else the executor carries it out itself). */
  get hasRoom(): boolean { return this.free.length > 0; }

  /** Hands a request (the SQE's fields; the tag travels to its completion) to the workers. */
  post(op: number, fd: number, addr: number, len: number, flags: number, off: number, tagLo: number, tagHi: number): void {
    const i = this.i32;
    const s = this.free.pop()!;
    const r = SLOTS_AT + s * SLOT_WORDS;
    i[r + S_OP] = op; i[r + S_FD] = fd; i[r + S_ADDR] = addr; i[r + S_LEN] = len;
    i[r + S_FLAGS] = flags; i[r + S_OFF] = off; i[r + S_MEM] = this.core.x.memory.buffer.byteLength;
    i[r + S_TAG_LO] = tagLo; i[r + S_TAG_HI] = tagHi; i[r + S_RES] = 0;
    const t = i[JOB_TAIL];
    Atomics.store(i, JOBS_AT + at(t), s + 1);
    Atomics.store(i, JOB_TAIL, (t + 1) | 0);
    Atomics.add(i, BELL, 1);
    Atomics.notify(i, BELL, 1);
    this.inFlight++;
  }

  /** Writes at most `max` completions (CQEs) at `cq`; returns how many. */
  reap(cq: number, max: number): number {
    // Clear the wake-up count before looking: a completion published after
    // this read writes the eventfd again, so none can be left unreaped
    // without a wake-up pending (clearing after the look would lose it).
    if (this.inFlight === 0 && !this.woken) return 0;
    this.woken = false;
    libc.readBuf(this.eventfd, this.wake, 8);
    const i = this.i32;
    let k = 0;
    let cqi: Int32Array | null = null;
    while (k < max) {
      const e = DONE_AT + at(this.doneHead);
      const v = Atomics.load(i, e);
      if (v === 0) break;
      Atomics.store(i, e, 0);
      this.doneHead = (this.doneHead + 1) | 0;
      const s = v - 1, rec = SLOTS_AT + s * SLOT_WORDS;
      if (cqi === null) {
        this.core.refresh();
        if (this.core.base !== this.base) throw new Error("file pool: linear memory moved while file work was in flight");
        cqi = this.core.i32;
      }
      const c = (cq >> 2) + k * (abi.CQE_SIZE >> 2);
      cqi[c] = i[rec + S_TAG_LO];
      cqi[c + 1] = i[rec + S_TAG_HI];
      cqi[c + 2] = i[rec + S_RES];
      cqi[c + 3] = 0;
      this.free.push(s);
      this.inFlight--;
      k++;
    }
    // Stopped by `max` with more published: their workers' wake-ups were
    // cleared above, so wake the loop for them (its next wait returns at once).
    if (k === max && Atomics.load(i, DONE_AT + at(this.doneHead)) !== 0) libc.writeBuf(this.eventfd, ONE, 8);
    return k;
  }

  /**
   * The event backend reported the eventfd readable (dispatch, after this
   * tick's reap): the next reap clears it even with nothing in flight (a
   * worker's write can land after the reap that took its completion).
   */
  woke(): void { this.woken = true; }
  private woken = false;

  /**
   * Stops the workers. Requests still in flight are abandoned: an fd an
   * abandoned open produced is closed, when it was published before the end
   * (a worker finishing a request after close() keeps its fd: a leak only
   * until the process ends, as in any pool stopped mid-request).
   */
  close(): void {
    // The workers see CLOSING and end by themselves (unref'd: they keep
    // nothing alive). Not terminate(): a worker still loading (inside
    // koffi's binding calls) or in a call is killed mid-native-call, which
    // aborted the process (koffi's napi_throw during termination).
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.i32, CLOSING, 1);
    Atomics.add(this.i32, BELL, 1);
    Atomics.notify(this.i32, BELL);
    // Wait (2 s at most) for the workers to end: a worker thread torn down
    // with its parent while still loading koffi can hang or abort the
    // process, and one still in a request writes this core's memory. A
    // worker stuck longer (a hung NFS open) is left behind, kept reachable.
    const deadline = Date.now() + 2000;
    for (;;) {
      const live = Atomics.load(this.i32, LIVE);
      const left = deadline - Date.now();
      if (live <= 0 || left <= 0) break;
      Atomics.wait(this.i32, LIVE, live, left);
    }
    if (Atomics.load(this.i32, LIVE) > 0) closing.add(this);
    for (;;) {
      const e = DONE_AT + at(this.doneHead);
      const v = Atomics.load(this.i32, e);
      if (v === 0) break;
      Atomics.store(this.i32, e, 0);
      this.doneHead = (this.doneHead + 1) | 0;
      const rec = SLOTS_AT + (v - 1) * SLOT_WORDS;
      if (this.i32[rec + S_OP] === abi.OP_OPEN && this.i32[rec + S_RES] > 0) libc.close(this.i32[rec + S_RES]);
    }
    // The eventfd and the root fd copy: closed by the last worker to end (LIVE).
  }
  private closed = false;
  private live = 0;

  /** A worker thread ended (Node's 'exit' event): the last one releases the closed pool. */
  private workerEnded(): void {
    if (--this.live === 0) closing.delete(this);
  }
}
