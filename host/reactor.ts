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
//
// register() on an fd that is already registered modifies it (seed 003's
// contract: EPOLL_CTL_MOD): the new callback and interest replace the old.
//
// A change the kernel refuses (epoll_ctl: EPERM for a regular file, EBADF
// for a closed fd, ...) is never swallowed, and the registration is removed
// (what it asked for is not in effect). Applied at once (outside a phase),
// it throws SysError from register()/modify(). Applied later (the call was
// made inside a callback; the core applies changes after the batch), it goes
// to the registration's onError, else the Reactor's onError, else it is
// thrown out of the tick (out of run(); attached: an uncaught exception).
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
/** Gets a refused change that was applied later, in a phase (see the top of this file). */
export type ErrorCallback = (err: SysError, fd: number) => void;

export interface RegisterOptions {
  /** A refused change of this registration, applied later in a phase; default: the Reactor's onError. */
  onError?: ErrorCallback;
}

/** What a stream connection (Reactor.adopt) tells you. */
export interface ConnectionHandlers {
  /** Bytes read: a Buffer (typed as Uint8Array, so the declarations need no @types/node), a copy yours to keep. */
  onData?: (conn: Connection, data: Uint8Array) => void;
  /**
   * The write buffer is back at the low watermark after a write() returned
   * false (or it passed the high watermark): write again. Once per crossing,
   * never without one.
   */
  onDrain?: (conn: Connection) => void;
  /**
   * The connection is closed (the core closed the fd): `err` is null after
   * the peer's EOF or your end()/destroy(), else a SysError (ECONNRESET,
   * EPIPE, ENOBUFS when writes went past writeBufMax). The last call.
   */
  onClose?: (conn: Connection, err: SysError | null) => void;
}

export interface ConnectionOptions {
  /** Bytes buffered above which write() returns false and reading pauses; default: the Reactor's writeHighWaterMark. */
  highWaterMark?: number;
  /** Bytes buffered at or below which reading resumes and onDrain fires; default: a quarter of the high one. */
  lowWaterMark?: number;
}

/**
 * A connected socket read and written by the core (Reactor.adopt): writes go
 * into the connection's write ring, with watermarks (see ConnectionHandlers).
 */
export class Connection {
  /** Set once onClose has been called (or is about to be). */
  closed = false;
  constructor(private readonly reactor: Reactor, readonly fd: number, readonly id: number, readonly handlers: ConnectionHandlers) {}

  /**
   * Queues `data` for the socket. Returns true while the bytes buffered stay
   * below the high watermark, false at or above it (keep the rest until
   * onDrain, as with Node's socket.write), and false after the connection
   * closed or ended (nothing is written then). A writer that ignores false
   * and passes writeBufMax is disconnected (onClose with ENOBUFS).
   */
  write(data: string | Uint8Array): boolean {
    if (this.closed) return false;
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const core = this.reactor.loop.core;
    const stage = core.x.streamStage();
    const cap = core.x.streamStageSize();
    let r = bytes.length === 0 ? core.x.streamBuffered(this.fd, this.id) : 0;
    for (let at = 0; at < bytes.length && r >= 0; at += cap) {
      const n = Math.min(cap, bytes.length - at);
      core.refresh();
      core.u8.set(bytes.subarray(at, at + n), stage);
      r = core.x.streamWrite(this.fd, this.id, n);
    }
    this.reactor[kick]();
    return r >= 0 && r < this.highWaterMark;
  }

  /** Bytes written and not yet taken by the kernel (uWebSockets.js's name); 0 once closed. */
  getBufferedAmount(): number {
    if (this.closed) return 0;
    const r = this.reactor.loop.core.x.streamBuffered(this.fd, this.id);
    return r < 0 ? 0 : r;
  }

  /** No more writes: the core closes the fd once what is buffered is written (then onClose). */
  end(data?: string | Uint8Array): void {
    if (this.closed) return;
    if (data !== undefined) this.write(data);
    this.reactor.loop.core.x.streamEnd(this.fd, this.id);
    this.reactor[kick]();
  }

  /** Closes at once; buffered bytes are dropped (then onClose). */
  destroy(): void {
    if (this.closed) return;
    this.reactor.loop.core.x.streamDestroy(this.fd, this.id);
    this.reactor[kick]();
  }

  /** The high watermark in force for this connection. */
  highWaterMark = 0;
  lowWaterMark = 0;
}

/** Runs what a call made outside a phase queued (Connection methods). */
const kick = Symbol("kick");

export interface ReactorOptions extends LoopOptions {
  /** run() on the main thread stops cleanly on SIGINT/SIGTERM (default true). */
  handleSignals?: boolean;
  /** Refused changes applied in a phase, for registrations without their own onError. */
  onError?: ErrorCallback;
}

/** The call a refused interest change names: epoll's own (epoll_ctl(EPOLL_CTL_ADD, fd 5)), else neutral. */
function describeInterest(backend: string, op: number, fd: number): string {
  const verb = op === abi.INTEREST_ADD ? "ADD" : op === abi.INTEREST_MOD ? "MOD" : `op ${op}`;
  return backend === "epoll" ? `epoll_ctl(EPOLL_CTL_${verb}, fd ${fd})` : `${backend} interest ${verb.toLowerCase()} (fd ${fd})`;
}

/** Used by EventWatcher (same module) to hand an error to the Reactor's routing. */
const routeError = Symbol("routeError");

export class Reactor {
  readonly loop: Loop;
  private readonly io: (IoCallback | undefined)[] = [];
  private readonly errs: (ErrorCallback | undefined)[] = [];
  private readonly fdIds = new Map<number, number>();
  /** Refused changes applied later, in a phase, for registrations without their own onError; default: thrown out of the tick. */
  onError: ErrorCallback | null;
  /** Collects refusals while a change is applied at once (settle()), to be thrown. */
  private sync: { err: SysError; fd: number; handler?: ErrorCallback }[] | null = null;
  private readonly freeIds: number[] = [];
  private readonly timers = new Map<number, () => void>();
  private readonly tasks = new Map<number, () => void>();
  private nextTask = 1;
  private readonly handleSignals: boolean;
  private readonly conns = new Map<number, Connection>();
  private nextConn = 1;

  constructor(options: ReactorOptions = {}) {
    this.loop = new Loop(options);
    // The file pool's completions wake a loop blocked in its wait through this
    // eventfd; the completion phase right after the wait reaps them (and
    // clears the count: FilePool.reap), so the handler only notes the wake-up.
    const pool = this.loop.filePool;
    if (pool) this.register(pool.eventfd, READABLE, () => pool.woke());
    const ringFiles = this.loop.uringFiles; // the same for the io_uring executor's file ops
    if (ringFiles) this.register(ringFiles.eventfd, READABLE, () => ringFiles.woke());
    this.handleSignals = options.handleSignals ?? true;
    this.onError = options.onError ?? null;
    this.loop.onCall = (kind, id, fd, events, extra) => {
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
      } else if (kind === abi.CALL_CTL_ERROR) {
        this.refused(id, fd, events, extra);
      } else if (kind === abi.CALL_STREAM_DATA) {
        const c = this.conns.get(id);
        if (!c?.handlers.onData) return;
        const core = this.loop.core;
        core.refresh();
        c.handlers.onData(c, Buffer.from(core.u8.subarray(extra, extra + events)));
      } else if (kind === abi.CALL_STREAM_DRAIN) {
        const c = this.conns.get(id);
        if (c && !c.closed) c.handlers.onDrain?.(c);
      } else if (kind === abi.CALL_STREAM_CLOSE) {
        const c = this.conns.get(id);
        if (!c) return;
        this.conns.delete(id);
        c.closed = true;
        c.handlers.onClose?.(c, events ? new SysError(`connection (fd ${fd})`, events, fd) : null);
      }
    };
  }

  /** The backend refused handler id's interest change (errno e, INTEREST_* op); the core removed the handler. */
  private refused(id: number, fd: number, e: number, op: number): void {
    const err = new SysError(describeInterest(this.loop.backend.name, op, fd), e, fd);
    const handler = this.errs[id];
    if (this.fdIds.get(fd) === id) this.fdIds.delete(fd);
    this.releaseId(id);
    if (this.sync) this.sync.push({ err, fd, handler });
    else this[routeError](err, fd, handler);
  }

  /** Where a refusal applied in a phase goes: its handler, onError, else out of the tick. */
  [routeError](err: SysError, fd: number, handler?: ErrorCallback): void {
    const to = handler ?? this.onError;
    if (to) to(err, fd);
    else this.loop.raise(err);
  }

  private timerLive(id: number): boolean {
    // The core frees a one-shot timer before calling it; an interval stays live.
    return this.loop.core.x.timerIsLive(id) !== 0;
  }

  /**
   * Applies a change at once when no phase is running and throws what the
   * kernel refused; inside a phase the phase applies it (refusals: onError).
   */
  private settle(): void {
    if (this.loop.inPhase) return;
    const sync: NonNullable<Reactor["sync"]> = [];
    this.sync = sync;
    try {
      this.loop.flush();
    } finally {
      this.sync = null;
    }
    if (!sync.length) return;
    for (const r of sync.slice(1)) this[routeError](r.err, r.fd, r.handler);
    throw sync[0].err;
  }

  private fail(call: string, r: number, fd?: number): void {
    if (r < 0) throw new SysError(fd === undefined ? call : `${call}(fd ${fd})`, -r, fd);
  }

  /**
   * Calls `cb(fd, events)` when fd is ready; events is READABLE|WRITABLE
   * (|EDGE). On an fd that is already registered it modifies the
   * registration: `cb`, `events` and `onError` replace the old ones. Throws
   * SysError if the kernel refuses (outside a phase; see the top of the file).
   */
  register(fd: number, events: number, cb: IoCallback, options: RegisterOptions = {}): void {
    const old = this.fdIds.get(fd);
    if (old !== undefined) {
      this.fail("register", this.loop.core.x.modify(fd, events), fd);
      this.io[old] = cb;
      this.errs[old] = options.onError;
      this.settle();
      return;
    }
    const id = this.freeIds.pop() ?? this.io.length;
    const r = this.loop.core.x.register(fd, events, id);
    if (r < 0) { this.freeIds.push(id); this.fail("register", r, fd); }
    this.io[id] = cb;
    this.errs[id] = options.onError;
    this.fdIds.set(fd, id);
    this.settle();
  }
  private releaseId(id: number): void { this.io[id] = undefined; this.errs[id] = undefined; this.freeIds.push(id); }

  /** True while fd has a registration made through this Reactor. */
  isRegistered(fd: number): boolean { return this.fdIds.has(fd); }

  /** New interest for a registered fd. Throws SysError if the kernel refuses (outside a phase). */
  modify(fd: number, events: number): void {
    this.fail("modify", this.loop.core.x.modify(fd, events), fd);
    this.settle();
  }

  /** Stops watching fd. Pass `closing: true` if you close it right after (saves a syscall). */
  deregister(fd: number, closing = false): void {
    // The caller is about to close fd: a backend that keeps its own fd set
    // (poll) must forget it now, or the number's next owner would meet EEXIST.
    if (closing) this.loop.backend.closed(fd);
    this.fail("deregister", this.loop.core.x.deregister(fd, closing ? 1 : 0), fd);
    const id = this.fdIds.get(fd);
    if (id !== undefined) { this.fdIds.delete(fd); this.releaseId(id); }
    this.settle();
  }

  /**
   * Hands a connected, non-blocking socket to the core, which reads it (ET
   * or LT as the Reactor's `mode`, within the fairness budget) and writes
   * what you write() through its write ring, with high/low watermarks:
   * above high, write() returns false and reading pauses (no disconnect);
   * at low, reading resumes and onDrain fires. The core owns the fd from
   * now on and closes it (onClose). Throws SysError EEXIST if fd is
   * registered, EBADF outside the tables.
   */
  adopt(fd: number, handlers: ConnectionHandlers, options: ConnectionOptions = {}): Connection {
    const high = options.highWaterMark ?? 0;
    const low = options.lowWaterMark ?? 0;
    for (const [name, v] of [["highWaterMark", high], ["lowWaterMark", low]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new RangeError(`adopt: ${name} must be a non-negative integer, got ${v}`);
    }
    const id = this.nextConn++;
    this.fail("adopt", this.loop.core.x.streamAdopt(fd, id, high, low), fd);
    const c = new Connection(this, fd, id, handlers);
    const cfg = this.loop.core.fairI32.bind(this.loop.core);
    c.highWaterMark = high || cfg(abi.FCFG_WRITE_HIGH);
    c.lowWaterMark = low ? Math.min(low, c.highWaterMark) : high ? Math.floor(high / 4) : cfg(abi.FCFG_WRITE_LOW);
    this.conns.set(id, c);
    this[kick]();
    return c;
  }

  /** A Connection call outside a phase: carry its requests out now (attached: and tick again if needed). */
  [kick](): void {
    if (this.loop.inPhase) return;
    this.loop.flush();
    this.loop.rearm();
  }

  /** Runs fn after the current batch of I/O callbacks, before the next poll. */
  defer(fn: () => void): void {
    const id = this.nextTask++;
    if (!this.loop.core.x.defer(id)) throw new RangeError("defer: the task queue is full (65536 tasks)");
    this.tasks.set(id, fn);
    this.loop.rearm(); // attached, called from Node: a tick must come
  }

  setTimeout(ms: number, cb: () => void): number { return this.startTimer(ms, 0, cb); }
  setInterval(ms: number, cb: () => void): number { return this.startTimer(ms, ms > 0 ? ms : 1, cb); }

  private startTimer(ms: number, repeat: number, cb: () => void): number {
    // Outside a phase the loop time may be old (an attached loop sleeps
    // between ticks): count from now.
    if (!this.loop.inPhase) this.loop.core.setTime(performance.now(), Date.now());
    const id = this.loop.core.x.timerStart(ms, repeat);
    this.fail("setTimeout", id);
    this.timers.set(id, cb);
    this.loop.rearm(); // attached, called from Node: the tick must come by the deadline
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

  /**
   * Resolves the next time the loop stops: run() returns (or throws), or an
   * attached loop detaches (stop(), or the end of a graceful shutdown).
   * Resolves at once if the loop is not running.
   */
  whenStopped(): Promise<void> { return this.loop.whenStopped(); }

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
      // One task that throws is logged like any callback; the messages
      // behind it still run (the eventfd was read: nothing would wake us).
      this.register(inbox.d.eventfd, READABLE, () => inbox.drain((name, args) => {
        const fn = this.named.get(name);
        try {
          if (!fn) throw new Error(`runInLoop: no task named ${JSON.stringify(name)} (defineTask it first)`);
          fn(...args);
        } catch (e) {
          this.loop.log("error", `callback threw: ${(e as Error)?.stack ?? e}`);
        }
      }));
    }
    return this.inbox.d;
  }
}

// ---- EventWatcher (seed 000) ---------------------------------------------

export const WatchFlag = { READ: READABLE, WRITE: WRITABLE } as const;
export type WatchFlag = (typeof WatchFlag)[keyof typeof WatchFlag];

/**
 * watch(fd, flags, cb) / unwatch(fd, flags) / unwatchAll() / runInLoop(task),
 * on top of the Reactor. `flags` is WatchFlag.READ, WatchFlag.WRITE or both
 * (READ | WRITE: cb for both, called once per event). A read and a write
 * watch on one fd share one registration; each callback sees only its own
 * readiness (errors and hang-ups go to both, so both get to notice);
 * unwatching one keeps the other. A change the kernel refuses drops the fd's watches: thrown from
 * watch()/unwatch() when applied at once, else handed to the Reactor's
 * onError (default: thrown out of the tick).
 */
export class EventWatcher {
  readonly reactor: Reactor;
  private readonly watches = new Map<number, { read?: IoCallback; write?: IoCallback }>();

  constructor(reactorOrOptions: Reactor | ReactorOptions = {}) {
    this.reactor = reactorOrOptions instanceof Reactor ? reactorOrOptions : new Reactor(reactorOrOptions);
  }

  watch(fd: number, flags: number, cb: IoCallback): void {
    const bits = watchBits("watch", flags);
    const w = this.watches.get(fd) ?? {};
    const had = w.read !== undefined || w.write !== undefined;
    if (bits & READABLE) w.read = cb;
    if (bits & WRITABLE) w.write = cb;
    this.watches.set(fd, w);
    this.apply(fd, w, had);
  }

  unwatch(fd: number, flags: number): void {
    const bits = watchBits("unwatch", flags);
    const w = this.watches.get(fd);
    if (!w) return;
    if (bits & READABLE) w.read = undefined;
    if (bits & WRITABLE) w.write = undefined;
    if (!w.read && !w.write) { this.watches.delete(fd); this.reactor.deregister(fd); return; }
    this.apply(fd, w, true);
  }

  /** Registers or modifies fd for what `w` watches; a refusal drops the fd's watches. */
  private apply(fd: number, w: { read?: IoCallback; write?: IoCallback }, registered: boolean): void {
    const mask = (w.read ? READABLE : 0) | (w.write ? WRITABLE : 0);
    try {
      if (registered) this.reactor.modify(fd, mask);
      else this.reactor.register(fd, mask, (f, ev) => this.fire(f, ev), { onError: (err) => this.refused(fd, err) });
    } catch (e) {
      if (!this.reactor.isRegistered(fd)) this.watches.delete(fd);
      throw e;
    }
  }

  private refused(fd: number, err: SysError): void {
    this.watches.delete(fd);
    this.reactor[routeError](err, fd);
  }

  private fire(fd: number, ev: number): void {
    const w = this.watches.get(fd);
    if (!w) return;
    const trouble = ev & (ERROR | HANGUP);
    let called: IoCallback | undefined;
    if (w.read && (ev & READABLE || trouble)) { called = w.read; called(fd, ev); }
    const again = this.watches.get(fd); // the read callback may have unwatched
    // One callback watching both hears each event once.
    if (again?.write && (ev & WRITABLE || trouble) && again.write !== called) again.write(fd, ev);
  }

  unwatchAll(): void {
    for (const fd of [...this.watches.keys()]) { this.watches.delete(fd); this.reactor.deregister(fd); }
  }

  /** Runs task in the loop's thread after the current batch (same thread). */
  runInLoop(task: () => void): void { this.reactor.defer(task); }

  run(): void { this.reactor.run(); }
  stop(): void { this.reactor.stop(); }
}

/** READ, WRITE or READ | WRITE; anything else is a programming error. */
function watchBits(call: string, flags: number): number {
  const bits = flags & (READABLE | WRITABLE);
  if (bits === 0 || bits !== flags) {
    throw new RangeError(`${call}: flags must be WatchFlag.READ, WatchFlag.WRITE or both, got ${flags}`);
  }
  return bits;
}
