// The threadpool backend: every request on a pool of worker_threads doing
// blocking koffi calls (host/io/worker.ts). Always available.
//
// Chosen over koffi's `.async()` calls (libuv's pool) by measurement (4 KiB
// preads of a page-cached file at depth 32; numbers in the commit and in
// docs/io.md): the requests and completions here are slots of one shared
// table (host/io/table.ts) and one eventfd write wakes the loop for a whole
// batch of completions, where koffi's async calls cost a libuv work item and
// one JS callback each. It also keeps libuv's 4 threads free for Node's own
// fs, dns and zlib, and its completions can be noticed on a Reactor's loop (an
// fd), which libuv's pool cannot (a Reactor blocked in run() never runs
// Node's loop).
//
// Submission: the slot goes on the submission ring (one producer: this
// thread), and one idle worker is woken (Atomics.notify), else, when none
// sleeps on the bell, one worker waiting in poll(2) on its parked sockets
// (host/io/worker.ts) through its wake eventfd. Completion: workers
// publish slots on the completion ring; the eventfd (watched on the thread's
// loop) says some are there; drain() takes them all.
import { Worker } from "node:worker_threads";
import * as abi from "../../assembly/abi.ts";
import { libc, check, EFD_CLOEXEC, EFD_NONBLOCK } from "../libc.ts";
import type { IoBackend, BackendContext, Complete } from "./backend.ts";
import { H_SQ_TAIL, H_SQ_HEAD, H_CQ_TAIL, H_BELL, H_EXITED, H_CQ_HEAD, H_ARMED, H_STOP, H_IDLE, H_EVENTFD, MAX_WORKERS, W_POLLING, ST_QUEUED, ST_RUNNING, ST_CANCELLED, type RequestTable } from "./table.ts";
import type { FdWatcher } from "./watch.ts";

const workerUrl = new URL("./io/worker.js", import.meta.url);
const one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
const eight = Buffer.alloc(8);

export class ThreadPool implements IoBackend {
  readonly name = "threadpool" as const;
  private readonly t: RequestTable;
  private readonly h: Int32Array;
  private readonly complete: Complete;
  private readonly watcher: FdWatcher;
  private readonly efd: number;
  private readonly workers: Worker[] = [];
  private sqTail = 0;
  private closed = false;

  constructor(ctx: BackendContext) {
    this.t = ctx.table;
    this.h = ctx.table.i32;
    this.complete = ctx.complete;
    this.watcher = ctx.watcher;
    this.efd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    Atomics.store(this.h, H_EVENTFD, this.efd);
    Atomics.store(this.h, H_ARMED, 1);
    // Test hook: the (wrapping) ring counters start here, e.g. just below
    // 2^32, so a test sees them wrap without 2^32 requests first.
    const start = Number(process.env.WASM_REACTOR_IO_COUNTER_START ?? 0) | 0;
    this.h[H_SQ_HEAD] = this.h[H_SQ_TAIL] = this.h[H_CQ_TAIL] = this.h[H_CQ_HEAD] = this.sqTail = start;
    const n = Math.max(1, Math.min(MAX_WORKERS, ctx.threads));
    for (let index = 0; index < n; index++) {
      // Each worker's wake eventfd is made here, before it starts, and closed in close() after it exits.
      const wakeFd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      Atomics.store(this.h, this.t.workerWord(index), wakeFd);
      const w = new Worker(workerUrl, { workerData: { sab: this.t.sab, cap: this.t.cap, index, wakeFd } });
      w.unref(); // an idle pool never keeps the process alive; the eventfd watch does while ops are pending
      w.on("error", (e) => { process.nextTick(() => { throw e; }); });
      this.workers.push(w);
    }
    this.watcher.set(this.efd, true, false, () => this.drain());
    process.once("exit", this.onExit);
  }

  /**
   * The process exits with the pool still running (no stop()): the workers
   * are stopped and waited for (2 s at most) here, synchronously. Left to
   * Node's teardown, a worker's exit raced the main thread's and koffi hit a
   * fatal napi_throw in about half the runs. The wait is that long for a
   * worker still starting: it sees the stop only once it has loaded koffi
   * and libc, which took over 200 ms (the old bound) on a loaded machine and
   * aborted the process in about 2 of 30 runs; a worker that is up ends at
   * once, so the wait costs nothing then.
   */
  private readonly onExit = (): void => {
    const h = this.h;
    Atomics.store(h, H_STOP, 1);
    Atomics.add(h, H_BELL, 1);
    Atomics.notify(h, H_BELL);
    this.wakePollers(this.workers.length);
    const end = Date.now() + 2000;
    for (let n; (n = Atomics.load(h, H_EXITED)) < this.workers.length && Date.now() < end;) Atomics.wait(h, H_EXITED, n, 5);
  };

  submit(slot: number): void {
    const h = this.h;
    Atomics.store(h, this.t.stateWord(slot), ST_QUEUED);
    h[(this.t.sqRing >> 2) + (this.sqTail & this.t.ringMask)] = slot;
    this.sqTail = this.sqTail + 1 | 0;
    Atomics.store(h, H_SQ_TAIL, this.sqTail);
    Atomics.add(h, H_BELL, 1);
    if (Atomics.load(h, H_IDLE) > 0) Atomics.notify(h, H_BELL, 1);
    else this.wakePollers(1);
  }

  /**
   * Wakes up to `n` workers waiting in poll(2) on their parked sockets (each
   * claimed by clearing its W_POLLING word, so one submission wakes one).
   * A worker sets that word before its last look at the queue, so a
   * submission it did not see finds it here.
   */
  private wakePollers(n: number): void {
    const h = this.h;
    for (let i = 0; i < this.workers.length && n > 0; i++) {
      const ww = this.t.workerWord(i);
      if (Atomics.load(h, ww + W_POLLING) === 1 && Atomics.compareExchange(h, ww + W_POLLING, 1, 0) === 1) {
        const fd = Atomics.load(h, ww);
        if (fd > 0) libc.writeBuf(fd, one, 8);
        n--;
      }
    }
  }

  cancel(slot: number): void {
    const sw = this.t.stateWord(slot);
    // Queued: the worker that takes it completes it at once with ECANCELED.
    if (Atomics.compareExchange(this.h, sw, ST_QUEUED, ST_CANCELLED) === ST_QUEUED) return;
    // Running: a parked socket request is completed by its worker, woken through its eventfd;
    // a file syscall just finishes (its result is dropped).
    if (Atomics.compareExchange(this.h, sw, ST_RUNNING, ST_CANCELLED) === ST_RUNNING) {
      const fd = Atomics.load(this.h, this.t.workerWord(Atomics.load(this.h, this.t.ownerWord(slot))));
      if (fd > 0) libc.writeBuf(fd, one, 8);
    }
  }

  /** Takes every published completion (the eventfd fired). */
  drain(): void {
    const h = this.h, mask = this.t.ringMask, ring = this.t.cqRing >> 2;
    libc.readBuf(this.efd, eight, 8);
    // Re-armed before the drain: a completion published after it writes the eventfd again.
    Atomics.store(h, H_ARMED, 1);
    let head = h[H_CQ_HEAD];
    for (;;) {
      const at = ring + (head & mask);
      const v = Atomics.load(h, at);
      if (v === 0) break;
      h[at] = 0;
      head = head + 1 | 0;
      const slot = v - 1;
      Atomics.store(h, this.t.stateWord(slot), 0);
      this.complete(slot, h[this.t.cqe(slot) + (abi.CQE_RES >> 2)]);
    }
    h[H_CQ_HEAD] = head;
  }

  /** Every request has completed: the workers exit, then their wake eventfds and the completion eventfd go. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    process.removeListener("exit", this.onExit);
    Atomics.store(this.h, H_STOP, 1);
    Atomics.add(this.h, H_BELL, 1);
    Atomics.notify(this.h, H_BELL);
    this.watcher.remove(this.efd);
    // ref(): stop()'s promise must keep the process alive until the threads are gone.
    const exits = this.workers.map((w) => new Promise<void>((resolve) => { w.ref(); w.once("exit", () => resolve()); }));
    return Promise.all(exits).then(() => {
      for (let i = 0; i < this.workers.length; i++) {
        const ww = this.t.workerWord(i), fd = Atomics.load(this.h, ww);
        if (fd > 0) { libc.close(fd); Atomics.store(this.h, ww, 0); }
      }
      libc.close(this.efd);
    });
  }
}
