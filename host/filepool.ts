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
//   workers two words per worker: its state (W_STARTING, W_READY, W_ENDED)
//           and the job it is carrying out (slot + 1; 0 = none)
// A slot belongs to one request from post() until its completion is reaped,
// so neither ring can overwrite an entry not yet read (each holds at most
// SLOTS entries in flight). Workers write linear memory directly at the
// request's addresses (the FILE record, a listing, a pread's buffer) through
// a view of the same memory: V8 reserves a wasm memory's whole range up
// front, so its base does not move when it grows (checked at every reap).
//
// Liveness: a worker that dies (an exception out of its loop) or never
// starts would leave the requests it holds, or every queued one, waiting
// forever, and a loop blocked in its wait never sees the Worker's 'exit'
// event. So a worker marks its state in shared memory (ending: W_ENDED, in
// a finally), the Loop caps its wait at LIVENESS_MS while requests are in
// flight, and reap() looks at the states at most once per LIVENESS_MS: the
// job a dead worker held fails with -EIO (it may be what killed it), and
// with no live worker left the queued jobs, and every later request, are
// carried out on the loop thread (hasRoom is false), as without a pool. One
// log line per dead worker. A worker not READY within START_DEADLINE_MS
// (its module failed to load: no JS of ours ran) counts as dead, unless it
// turns READY later.
import { Worker } from "node:worker_threads";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";
import { libc, check, errno, EFD_CLOEXEC, EFD_NONBLOCK } from "./libc.ts";
import { FileServer } from "./files.ts";

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
export const JOB_TAIL = 0, JOB_HEAD = 1, DONE_TAIL = 2, CLOSING = 3, LIVE = 4, BELL = 5, FDS_CLOSED = 6;
const HEADER = 7;
/** Ring index of a counter (SLOTS is a power of two; the Int32 counters wrap, the mask stays right). */
export const at = (x: number): number => x & (SLOTS - 1);
export const JOBS_AT = HEADER, DONE_AT = HEADER + SLOTS, SLOTS_AT = HEADER + 2 * SLOTS;
export const MAX_THREADS = 64;
/** Worker `id`'s state word; its job word follows. */
export const WORKERS_AT = SLOTS_AT + SLOTS * SLOT_WORDS;
export const W_STARTING = 0, W_READY = 1, W_ENDED = 2;
const WORDS = WORKERS_AT + 2 * MAX_THREADS;
/** How often a loop with requests on the pool wakes to look at its workers (ms), at most. */
export const LIVENESS_MS = 1000;
const START_DEADLINE_MS = 10_000;

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
  /** Test hook (WASM_REACTOR_FILEPOOL_DIE): "start": the worker throws before it is ready; else a substring: it throws out of its loop on an open of a matching path. */
  die: string;
  /** This worker's index (its words at WORKERS_AT + 2 * id). */
  id: number;
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
    if (!Number.isInteger(this.threads) || this.threads < 1 || this.threads > MAX_THREADS) {
      throw new RangeError(`fileThreads must be an integer 1..64, got ${options.threads}`);
    }
    const sab = new SharedArrayBuffer(WORDS * 4);
    this.i32 = new Int32Array(sab);
    for (let s = SLOTS - 1; s >= 0; s--) this.free.push(s);
    this.eventfd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    this.base = core.base;
    // The workers get their own copy of the root fd: the server may close its
    // own (FileServer.close) while a worker still finishes a request.
    const rootFd = this.rootFdCopy = check("fcntl F_DUPFD_CLOEXEC", libc.fcntl(options.rootFd, F_DUPFD_CLOEXEC, 0));
    const data: FilePoolWorkerData = {
      sab, eventfd: this.eventfd, base: core.base, root: options.root, rootFd,
      precompressed: options.precompressed, delay: process.env.WASM_REACTOR_FILEPOOL_DELAY ?? "",
      die: process.env.WASM_REACTOR_FILEPOOL_DIE ?? "", id: 0,
    };
    this.options = options;
    this.started = performance.now();
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
        const w = new Worker(entry, { workerData: { ...data, id: i } });
        w.unref(); // the pool never keeps a process alive by itself
        w.on("error", (e) => options.onError?.(`file pool worker failed: ${e?.stack ?? e}`));
        w.on("exit", () => this.workerEnded(i));
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
  get hasRoom(): boolean { return this.free.length > 0 && !this.allDead; }

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
    if (this.inFlight > 0 && performance.now() - this.lastLook >= LIVENESS_MS) this.lookAtWorkers();
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
   * Liveness (see the top of the file): a worker that ended while the pool
   * is open is dead; its job fails with -EIO; with none alive, the queued
   * jobs run here. Completions are published as a worker's are (the reap
   * that called this takes them).
   */
  private lookAtWorkers(): void {
    this.lastLook = performance.now();
    const i = this.i32;
    let alive = 0;
    for (let id = 0; id < this.threads; id++) {
      const st = Atomics.load(i, WORKERS_AT + 2 * id);
      const late = st === W_STARTING && this.lastLook - this.started > START_DEADLINE_MS;
      if (st === W_READY || (st === W_STARTING && !late)) { alive++; continue; }
      if (this.dead[id]) continue;
      if (st === W_ENDED) {
        this.dead[id] = 1;
        const job = Atomics.exchange(i, WORKERS_AT + 2 * id + 1, 0);
        if (job !== 0) this.publish(job - 1, -abi.EIO);
        this.options.onError?.(`file pool: worker ${id} ended unexpectedly${job ? " (its request fails with EIO)" : ""}; ` +
          `${this.threads - this.dead.reduce((a, b) => a + b, 0)} of ${this.threads} left`);
      } else if (!this.lateSaid[id]) {
        this.lateSaid[id] = 1;
        this.options.onError?.(`file pool: worker ${id} has not started after ${START_DEADLINE_MS / 1000} s; counted out until it does`);
      }
    }
    if (alive > 0) { this.allDead = false; return; }
    if (!this.allDead) this.options.onError?.("file pool: no worker left; file work runs on the loop thread");
    this.allDead = true;
    // Claim what is queued, as a worker would (a late starter may race: the CAS decides).
    for (;;) {
      const head = Atomics.load(i, JOB_HEAD);
      if (head === Atomics.load(i, JOB_TAIL)) break;
      const v = Atomics.load(i, JOBS_AT + at(head));
      if (Atomics.compareExchange(i, JOB_HEAD, head, (head + 1) | 0) !== head) continue;
      this.publish(v - 1, this.carryHere(SLOTS_AT + (v - 1) * SLOT_WORDS));
    }
  }
  private readonly dead = new Uint8Array(MAX_THREADS);
  private readonly lateSaid = new Uint8Array(MAX_THREADS);
  private allDead = false;
  private lastLook = 0;
  private readonly started: number;
  private readonly options: FilePoolOptions;
  private here: FileServer | null = null;

  /** A job carried out on the loop thread (no worker left), with the server's own root fd. */
  private carryHere(r: number): number {
    const i = this.i32, op = i[r + S_OP], addr = i[r + S_ADDR], len = i[r + S_LEN];
    const files = this.here ??= new FileServer(this.options.root, { precompressed: this.options.precompressed, rootFd: this.options.rootFd });
    switch (op) {
      case abi.OP_OPEN: return files.open(this.core, addr, len, i[r + S_FLAGS], i[r + S_OFF] === 1);
      case abi.OP_LIST: return files.list(this.core, addr, len, i[r + S_FLAGS]);
      case abi.OP_PREAD: {
        const n = libc.pread(i[r + S_FD], this.core.base + addr, len, i[r + S_OFF]);
        return n < 0 ? -errno() : n;
      }
      default: return -abi.EINVAL;
    }
  }

  /** Publishes slot s's completion with result res, as a worker does. */
  private publish(s: number, res: number): void {
    const i = this.i32;
    i[SLOTS_AT + s * SLOT_WORDS + S_RES] = res;
    const d = Atomics.add(i, DONE_TAIL, 1);
    Atomics.store(i, DONE_AT + at(d), s + 1);
  }

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
    // No worker left to close what they share (they all died): close it here (FDS_CLOSED: exactly once).
    else if (Atomics.compareExchange(this.i32, FDS_CLOSED, 0, 1) === 0) { libc.close(this.eventfd); libc.close(this.rootFdCopy); }
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
  private readonly rootFdCopy: number;

  /**
   * A worker thread ended (Node's 'exit' event; delivered only when Node's
   * loop runs: attached, or after run()): the last one releases the closed
   * pool. One that ended while the pool is open wakes the loop, whose next
   * reap looks at the workers.
   */
  private workerEnded(id: number): void {
    if (--this.live === 0) closing.delete(this);
    if (!this.closed) {
      Atomics.store(this.i32, WORKERS_AT + 2 * id, W_ENDED); // it may have died before its own finally
      this.lastLook = 0;
      this.woken = true;
      libc.writeBuf(this.eventfd, ONE, 8);
    }
  }
}
