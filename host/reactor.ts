// The JavaScript Reactor API (seed 003, M3) and the EventWatcher shape (seed
// 000), for applications whose handlers are JS functions. The core keeps the
// handler table, timers and task queue (with the zombie guard and the
// deferred-modification queue); JS keeps only the closures, keyed by id.
//
// Guarantees, as in the core: a callback may register, deregister, modify,
// defer and cancel freely. No event of a batch reaches a handler deregistered
// earlier in that batch; a handler registered during a batch receives nothing
// from it; deferred tasks run after I/O dispatch, in order, and a task
// deferred by a task runs on the next pass.
import { isMainThread } from "node:worker_threads";
import * as abi from "../assembly/abi.ts";
import { Loop, type LoopOptions } from "./loop.ts";
import {
  libc, check, SysError, SIG_BLOCK, SIG_SETMASK, SIGINT, SIGTERM, SFD_CLOEXEC, SFD_NONBLOCK,
} from "./libc.ts";
import { createRemoteQueue, RemoteInbox, type RemoteDescriptor } from "./remote.ts";

export const READABLE = abi.REACTOR_READABLE;
export const WRITABLE = abi.REACTOR_WRITABLE;
export const ERROR = abi.REACTOR_ERROR;
export const HANGUP = abi.REACTOR_HANGUP;
/** Pass with READABLE/WRITABLE to register(): edge-triggered. */
export const EDGE = abi.REACTOR_EDGE;

export type IoCallback = (fd: number, events: number) => void;

export interface ReactorOptions extends LoopOptions {
  /** run() on the main thread stops cleanly on SIGINT/SIGTERM (default true). */
  handleSignals?: boolean;
}

export class Reactor {
  readonly loop: Loop;
  private readonly io: (IoCallback | undefined)[] = [];
  private readonly freeIds: number[] = [];
  private readonly timers = new Map<number, () => void>();
  private readonly tasks = new Map<number, () => void>();
  private nextTask = 1;
  private readonly handleSignals: boolean;

  constructor(options: ReactorOptions = {}) {
    this.loop = new Loop(options);
    this.handleSignals = options.handleSignals ?? true;
    this.loop.onCall = (kind, id, fd, events) => {
      if (kind === abi.CALL_IO) {
        this.io[id]?.(fd, events);
      } else if (kind === abi.CALL_TIMER) {
        const cb = this.timers.get(id);
        if (cb && !this.timerLive(id)) this.timers.delete(id); // one-shot: done
        cb?.();
      } else if (kind === abi.CALL_TASK) {
        const fn = this.tasks.get(id);
        this.tasks.delete(id);
        fn?.();
      }
    };
  }

  private timerLive(id: number): boolean {
    // The core frees a one-shot timer before calling it; an interval stays live.
    return this.loop.core.x.timerIsLive(id) !== 0;
  }

  /** Applies a change at once when no phase is running (inside one, the phase does). */
  private settle(): void { this.loop.flush(); }

  private fail(call: string, r: number): void {
    if (r < 0) throw new SysError(call, -r);
  }

  /** Calls `cb(fd, events)` when fd is ready; events is READABLE|WRITABLE (|EDGE). */
  register(fd: number, events: number, cb: IoCallback): void {
    const id = this.freeIds.pop() ?? this.io.length;
    const r = this.loop.core.x.register(fd, events, id);
    if (r < 0) { this.freeIds.push(id); this.fail("register", r); }
    const old = this.fdIds.get(fd);
    if (old !== undefined) this.releaseId(old);
    this.io[id] = cb;
    this.fdIds.set(fd, id);
    this.settle();
  }
  private readonly fdIds = new Map<number, number>();
  private releaseId(id: number): void { this.io[id] = undefined; this.freeIds.push(id); }

  modify(fd: number, events: number): void {
    this.fail("modify", this.loop.core.x.modify(fd, events));
    this.settle();
  }

  /** Stops watching fd. Pass `closing: true` if you close it right after (saves a syscall). */
  deregister(fd: number, closing = false): void {
    this.fail("deregister", this.loop.core.x.deregister(fd, closing ? 1 : 0));
    const id = this.fdIds.get(fd);
    if (id !== undefined) { this.fdIds.delete(fd); this.releaseId(id); }
    this.settle();
  }

  /** Runs fn after the current batch of I/O callbacks, before the next poll. */
  defer(fn: () => void): void {
    const id = this.nextTask++;
    if (!this.loop.core.x.defer(id)) throw new RangeError("defer: the task queue is full (65536 tasks)");
    this.tasks.set(id, fn);
  }

  setTimeout(ms: number, cb: () => void): number { return this.startTimer(ms, 0, cb); }
  setInterval(ms: number, cb: () => void): number { return this.startTimer(ms, ms > 0 ? ms : 1, cb); }

  private startTimer(ms: number, repeat: number, cb: () => void): number {
    if (!this.loop.isRunning) this.loop.core.setTime(performance.now(), Date.now());
    const id = this.loop.core.x.timerStart(ms, repeat);
    this.fail("setTimeout", id);
    this.timers.set(id, cb);
    return id;
  }

  /** Cancels a timer from anywhere (including inside an I/O callback); false if it is gone. */
  cancelTimer(id: number): boolean {
    const ok = this.loop.core.x.timerStop(id) !== 0;
    this.timers.delete(id);
    return ok;
  }

  /** Blocks this thread in the loop until stop() (or SIGINT/SIGTERM on the main thread). */
  run(): void {
    const restore = this.handleSignals && isMainThread ? this.watchSignals() : null;
    try {
      this.loop.run();
    } finally {
      restore?.();
    }
  }

  stop(): void { this.loop.stop(); }

  /** Runs the loop inside this thread's Node event loop (see Loop.attach). */
  attach(): void { this.loop.attach(); }
  detach(): void { this.loop.detach(); }

  close(): void {
    this.loop.close();
    this.inbox?.close();
  }

  /** Counters: connections, requests, timeouts, buffers held, traps contained... */
  stats() { return this.loop.core.stats(); }

  // ---- signals (blocking mode) -------------------------------------------
  // A loop blocked in epoll_wait never lets Node run its signal handlers, so
  // SIGINT/SIGTERM are blocked for this thread and read from a signalfd that
  // the loop watches like any fd. Best effort on the main thread: Node's
  // helper threads leave these signals unblocked and often take them first
  // (Node then ends the process). Reliable: run the reactor in a worker and
  // keep the main thread's event loop for signals, as the CLI does.
  private watchSignals(): () => void {
    const set = Buffer.alloc(128);
    const old = Buffer.alloc(128);
    libc.sigemptyset(set);
    libc.sigaddset(set, SIGINT);
    libc.sigaddset(set, SIGTERM);
    check("pthread_sigmask", libc.pthread_sigmask(SIG_BLOCK, set, old));
    const sfd = check("signalfd", libc.signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK));
    const info = Buffer.alloc(128);
    this.register(sfd, READABLE, () => {
      while (libc.readBuf(sfd, info, 128) === 128) this.lastSignal = info.readUInt32LE(0);
      this.stop();
    });
    return () => {
      try { this.deregister(sfd, true); } catch { /* loop closed */ }
      libc.close(sfd);
      libc.pthread_sigmask(SIG_SETMASK, old, Buffer.alloc(128));
    };
  }
  /** The signal that stopped run(), if any. */
  lastSignal = 0;

  // ---- cross-thread ------------------------------------------------------
  private inbox: RemoteInbox | null = null;
  private readonly named = new Map<string, (...args: unknown[]) => void>();

  /** Defines a task that other threads can run in this loop by name. */
  defineTask(name: string, fn: (...args: unknown[]) => void): void { this.named.set(name, fn); }

  /**
   * A descriptor another worker_thread passes to `new RemoteLoop(d)` to run
   * named tasks here with runInLoop(); it wakes a loop blocked in epoll_wait.
   */
  remote(capacity = 1024): RemoteDescriptor {
    if (!this.inbox) {
      this.inbox = new RemoteInbox(createRemoteQueue(capacity));
      const inbox = this.inbox;
      this.register(inbox.d.eventfd, READABLE, () => inbox.drain((name, args) => {
        const fn = this.named.get(name);
        if (!fn) throw new Error(`runInLoop: no task named ${JSON.stringify(name)} (defineTask it first)`);
        fn(...args);
      }));
    }
    return this.inbox.d;
  }
}

// ---- EventWatcher (seed 000) ---------------------------------------------

export const WatchFlag = { READ: READABLE, WRITE: WRITABLE } as const;
export type WatchFlag = (typeof WatchFlag)[keyof typeof WatchFlag];

/**
 * watch(fd, flag, cb) / unwatch(fd, flag) / unwatchAll() / runInLoop(task),
 * on top of the Reactor. A read and a write watch on one fd share one
 * registration; each callback sees only its own readiness (errors and
 * hang-ups go to both, so both get to notice).
 */
export class EventWatcher {
  readonly reactor: Reactor;
  private readonly watches = new Map<number, { read?: IoCallback; write?: IoCallback }>();

  constructor(reactorOrOptions: Reactor | ReactorOptions = {}) {
    this.reactor = reactorOrOptions instanceof Reactor ? reactorOrOptions : new Reactor(reactorOrOptions);
  }

  watch(fd: number, flag: WatchFlag, cb: IoCallback): void {
    const w = this.watches.get(fd) ?? {};
    const had = w.read || w.write;
    if (flag === WatchFlag.READ) w.read = cb; else w.write = cb;
    this.watches.set(fd, w);
    const mask = (w.read ? READABLE : 0) | (w.write ? WRITABLE : 0);
    if (had) this.reactor.modify(fd, mask);
    else this.reactor.register(fd, mask, (f, ev) => this.fire(f, ev));
  }

  private fire(fd: number, ev: number): void {
    const w = this.watches.get(fd);
    if (!w) return;
    const trouble = ev & (ERROR | HANGUP);
    if (w.read && (ev & READABLE || trouble)) w.read(fd, ev);
    const again = this.watches.get(fd); // the read callback may have unwatched
    if (again?.write && (ev & WRITABLE || trouble)) again.write(fd, ev);
  }

  unwatch(fd: number, flag: WatchFlag): void {
    const w = this.watches.get(fd);
    if (!w) return;
    if (flag === WatchFlag.READ) w.read = undefined; else w.write = undefined;
    if (!w.read && !w.write) { this.watches.delete(fd); this.reactor.deregister(fd); return; }
    this.reactor.modify(fd, (w.read ? READABLE : 0) | (w.write ? WRITABLE : 0));
  }

  unwatchAll(): void {
    for (const fd of [...this.watches.keys()]) { this.watches.delete(fd); this.reactor.deregister(fd); }
  }

  /** Runs task in the loop's thread after the current batch (same thread). */
  runInLoop(task: () => void): void { this.reactor.defer(task); }

  run(): void { this.reactor.run(); }
  stop(): void { this.reactor.stop(); }
}
