// The pump: the host half of the loop. It owns the event backend (epoll or
// poll, host/backend/), carries out the core's syscall requests and hands
// results back. It makes no decisions; the core decides what to read, write,
// accept, close and when.
//
// One tick (see `tick()`): timers -> poll -> dispatch -> deferred
// modifications and tasks. After each core call, `drain()` carries out the
// returned requests and feeds their results to `complete()` until the core
// has nothing more to ask for in that phase.
import { writeSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import { Core, CoreAbort, type CoreConfig, defaultCoreConfig, corePath } from "./core.ts";
import { Recorder, FileSink, sha256File } from "./record.ts";
import { libc, errno, SOCK_NONBLOCK, SOCK_CLOEXEC, describeErrno, raiseFdLimit } from "./libc.ts";
import { createBackend, backendName, defaultBackendName, type Backend, type BackendName } from "./backend/index.ts";
import { EpollBackend } from "./backend/epoll.ts";
import type { Sink } from "./record.ts";

export type LogLevel = "error" | "warn" | "info" | "access";
const LEVELS: Record<number, LogLevel> = {
  [abi.LOG_ERROR]: "error", [abi.LOG_WARN]: "warn", [abi.LOG_INFO]: "info", [abi.LOG_ACCESS]: "access",
};

/** Carries out OP_OPEN for the HTTP server (host/files.ts). */
export interface FileOpener {
  open(core: Core, pathPtr: number, pathLen: number, recordPtr: number, statOnly: boolean): number;
  /** OP_LIST: renders the listing of the directory whose path is at buf into buf; returns its length. */
  list(core: Core, buf: number, cap: number, pathLen: number): number;
}

export interface LoopOptions extends Partial<CoreConfig> {
  /**
   * Where log lines go. Default: access lines (level "access") to stdout as
   * they are, everything else to stderr as "level: line"; both written
   * synchronously (a thread blocked in the backend's wait never flushes a stream).
   */
  log?: (level: LogLevel, line: string) => void;
  files?: FileOpener;
  /**
   * Records every input the core receives (see host/record.ts): into this
   * file, or into a Sink such as a MemorySink (one recording per sink).
   */
  record?: string | Sink;
  /**
   * The event backend: "epoll" (default) or "poll". Default: the
   * WASM_REACTOR_BACKEND environment variable if set, else "epoll".
   */
  backend?: BackendName;
}

/**
 * The default size of the fd-indexed tables: every fd this process may open.
 * Raises the soft RLIMIT_NOFILE to the hard one first (as servers do);
 * capped at 2^20 (16 bytes of handler table + 256 of connection record per
 * fd, resident only where touched).
 */
export function defaultMaxFds(): number {
  const { soft } = raiseFdLimit();
  return Math.max(64, Math.min(soft, 1 << 20));
}

// submit() reads the SQ through an Int32Array: SQE fields as word indices,
// derived from abi.ts's byte offsets once, at load.
const SQE_WORDS = abi.SQE_SIZE >> 2;
const W_OP = abi.SQE_OP >> 2, W_FD = abi.SQE_FD >> 2;
const W_A0 = abi.SQE_A0 >> 2, W_A1 = abi.SQE_A1 >> 2, W_A2 = abi.SQE_A2 >> 2, W_A3 = abi.SQE_A3 >> 2;
const ACCEPT_FLAGS = SOCK_NONBLOCK | SOCK_CLOEXEC;

export class Loop {
  readonly core: Core;
  readonly backend: Backend;
  /** The epoll fd with the epoll backend (kept for code that watched it), else -1. */
  get epfd(): number { return this.backend instanceof EpollBackend ? this.backend.epfd : -1; }
  readonly maxEvents: number;
  readonly recorder: Recorder | null;
  /** JS callbacks the core asks for (OP_CALL: kind, id, fd, a2, a3); set by the Reactor. */
  onCall: (kind: number, id: number, fd: number, events: number, extra: number) => void = () => {};
  log: (level: LogLevel, line: string) => void;
  files: FileOpener | null;
  private running = false;
  private stopRequested = false;
  private attached = false;
  private attachTimer: NodeJS.Timeout | null = null;
  private readonly decoder = new TextDecoder();

  constructor(options: LoopOptions = {}) {
    const config = { ...defaultCoreConfig, ...options };
    // Validated before anything is opened: a bad name throws and leaks nothing.
    const backend = options.backend === undefined ? defaultBackendName() : backendName(options.backend, "backend");
    if (options.maxFds === undefined) config.maxFds = defaultMaxFds();
    const time: [number, number] = [performance.now(), Date.now()];
    const sink = typeof options.record === "string" ? new FileSink(options.record) : options.record;
    this.recorder = sink ? new Recorder(sink, {
      coreSha256: sha256File(corePath),
      config: Object.fromEntries(Object.keys(defaultCoreConfig).map((k) => [k, (config as Record<string, unknown>)[k]])) as unknown as CoreConfig,
      time, arch: process.arch, backend, created: new Date().toISOString(), argv: process.argv.slice(2),
    }) : null;
    this.core = new Core(config, undefined, { recorder: this.recorder, time });
    this.maxEvents = config.maxEvents;
    this.backend = createBackend(backend);
    this.wouldBlock = this.backend.wouldBlock ? this.backend.wouldBlock.bind(this.backend) : null;
    // Synchronous: a thread blocked in epoll_wait never flushes async streams
    // (process.stderr in a worker is a message to the main thread).
    this.log = options.log ?? ((level, line) => { writeSync(2, `${level}: ${line}\n`); });
    // Without a log function of the user's, access lines skip the JS
    // strings: their bytes go from linear memory to a buffer, one write(2)
    // to stdout per round.
    this.accessOut = options.log ? null : new AccessWriter(1, (line) => this.log("error", line));
    this.files = options.files ?? null;
  }

  /**
   * Reads the clock once: loop time for the whole phase that follows. The
   * wall clock (only for Date headers) is derived from the monotonic one and
   * re-read once a second, so clock adjustments show up within a second.
   */
  private clock(): void {
    const mono = performance.now();
    if (mono - this.wallSynced >= 1000) {
      this.wallOffset = Date.now() - mono;
      this.wallSynced = mono;
    }
    this.core.setTime(mono, mono + this.wallOffset);
  }
  private wallOffset = 0;
  private wallSynced = -Infinity;
  private readonly accessOut: AccessWriter | null;

  /** One turn of the loop. `maxWait` caps the poll timeout (attach mode polls with 0). */
  tick(maxWait = -1): void {
    const x = this.core.x;
    this.clock();
    this.drain(() => x.runTimers());                            // 1. timers that are due
    let timeout = x.pollTimeout();                              // 2. poll, no longer than
    if (maxWait >= 0 && (timeout < 0 || timeout > maxWait)) timeout = maxWait; //    the next timer
    // A timer callback called stop() (or raised an error): finish this tick
    // without sleeping, or run() would only return once the poll times out.
    if (this.stopRequested || this.raised.length) timeout = 0;
    const n = this.poll(timeout);
    this.clock();
    if (this.recorder && n > 0) {
      const c = this.core;
      this.recorder.mem(c.u8, c.ctlI32(abi.CTL_EVENTS), n * abi.EVENT_SIZE);
    }
    this.drain(() => x.dispatch(n));                            // 3. hand the batch to the core
    this.drain(() => x.runDeferred());                          // 4. deferred mods, 5. deferred tasks
    this.throwRaised();
  }

  /**
   * Throws `e` out of the current tick once the tick is over (never in the
   * middle of a phase, which would leave the core's round half done): out of
   * run(), or, for an attached loop, as an uncaught exception from Node's
   * event loop. Used for errors nobody handles (a refused interest change
   * with no onError). Outside any phase it throws at once.
   */
  raise(e: unknown): void {
    if (!this.draining) throw e;
    this.raised.push(e);
  }
  private raised: unknown[] = [];
  private lastRaised: unknown = undefined;

  private throwRaised(): void {
    if (!this.raised.length) return;
    const [first, ...more] = this.raised;
    this.raised = [];
    for (const e of more) this.log("error", `also raised in this tick: ${(e as Error)?.message ?? e}`);
    this.lastRaised = first;
    throw first;
  }

  /** True while a phase runs (inside any callback the core calls). */
  get inPhase(): boolean { return this.draining; }

  /** Carries out what JS changed outside a phase (register() before run(), ...). */
  flush(): void {
    if (this.draining) return; // inside a phase: the phase applies it
    this.clock();
    this.drain(() => this.core.x.flush());
    this.throwRaised();
  }

  /** The backend's wait, into the core's event area; EINTR retried. */
  private poll(timeout: number): number {
    const core = this.core;
    const events = core.ctlI32(abi.CTL_EVENTS);
    for (;;) {
      const n = this.backend.wait(core, events, this.maxEvents, timeout);
      if (n >= 0) return n;
      if (n !== -abi.EINTR) throw new Error(`${this.backend.name} wait: ${describeErrno(-n)}`);
      core.refresh();
    }
  }

  /**
   * Calls a core phase function, then carries out its requests and hands
   * back their results until the phase is over. A trap inside the core is
   * contained to the connection it was working on (see recover()).
   */
  private drain(start: () => number): void {
    const x = this.core.x;
    this.draining = true;
    try {
      let n = this.guard(start);
      while (n > 0) {
        this.submit(n);
        this.recordResults(n);
        n = this.guard(() => x.complete(n));
      }
    } finally {
      this.draining = false;
    }
  }
  private draining = false;

  private guard(call: () => number): number {
    const x = this.core.x;
    for (;;) {
      try {
        return call();
      } catch (e) {
        if (!(e instanceof WebAssembly.RuntimeError) && !(e instanceof CoreAbort)) throw e;
        const fd = this.core.ctlI32(abi.CTL_CURRENT_FD);
        const r = x.recover();
        this.core.refresh();
        this.logLine("error", `core trap (${(e as Error).message}) while serving fd ${fd}: connection closed, loop continues`);
        // r < 0: it trapped consuming completions; complete(n) resumes after
        // the one that trapped. Else r requests were emitted before the trap:
        // carry them out; complete(r) resumes the phase.
        if (r >= 0) {
          this.submit(r);
          this.recordResults(r);
          call = () => x.complete(r);
        }
      }
    }
  }

  /** Carries out SQ[0..n): one syscall (or JS call) per entry, results into CQ. */
  private submit(n: number): void {
    const core = this.core;
    core.refresh();
    let i32 = core.i32;
    const base = core.base;
    let q = core.ctlI32(abi.CTL_SQ) >> 2;
    const cq = core.ctlI32(abi.CTL_CQ) >> 2;
    for (let i = 0; i < n; i++, q += SQE_WORDS) {
      const op = i32[q + W_OP], fd = i32[q + W_FD], a0 = i32[q + W_A0], a1 = i32[q + W_A1], a2 = i32[q + W_A2];
      let r: number;
      switch (op) {
        case abi.OP_READ: r = libc.read(fd, base + a0, a1); break;
        case abi.OP_WRITE: r = libc.write(fd, base + a0, a1); break;
        case abi.OP_SEND: r = libc.send(fd, base + a0, a1, a2); break;
        case abi.OP_WRITEV: r = libc.writev(fd, base + a0, a1); break;
        case abi.OP_ACCEPT: r = a0 ? libc.accept4(fd, base + a0, base + a0 + abi.SA_LEN, ACCEPT_FLAGS) : libc.accept4(fd, 0, 0, ACCEPT_FLAGS); break;
        case abi.OP_SENDFILE: r = libc.sendfile(fd, a0, base + a1, a2); break;
        case abi.OP_CLOSE: this.backend.closed(fd); r = libc.close(fd); break;
        case abi.OP_CTL: r = this.backend.setInterest(fd, a0, a1, a2); break;
        case abi.OP_SHUTDOWN: r = libc.shutdown(fd, a0); break;
        case abi.OP_PREAD: r = libc.pread(fd, base + a0, a1, a2); break;
        case abi.OP_CALL: r = this.call(a0, a1, fd, a2, i32[q + W_A3]); break;
        case abi.OP_OPEN: r = this.open(a0, a1, a2, i32[q + W_A3]); break;
        case abi.OP_LIST: r = this.files ? this.files.list(core, a0, a1, a2) : -abi.ENOENT; break;
        case abi.OP_LOG:
          if (a2 === abi.LOG_ACCESS && this.accessOut) this.accessOut.add(core.u8, a0, a1);
          else this.logLine(LEVELS[a2] ?? "info", this.decoder.decode(core.u8.subarray(a0, a0 + a1)));
          r = 0;
          break;
        case abi.OP_STOP: this.finished = true; this.stop(); r = 0; break; // graceful shutdown finished
        default: r = 0;
      }
      // Results are >= 0 or -errno, read at once (koffi keeps the last call's).
      // (OP_CTL: the backend answers -errno itself.)
      if (r < 0 && op !== abi.OP_CALL && op !== abi.OP_OPEN && op !== abi.OP_LIST && op !== abi.OP_CTL) r = -errno();
      if (this.wouldBlock) this.edge(op, fd, a0, a1, a2, r);
      // A JS call or an open may have grown memory: views must follow.
      if (op === abi.OP_CALL || op === abi.OP_OPEN || op === abi.OP_LIST) { core.refresh(); i32 = core.i32; }
      i32[cq + i] = r;
      if (this.recorder && r >= 0) this.recordMemory(op, a0, a1, a2, r);
    }
    this.accessOut?.flush();
  }

  /** Recording: bytes a syscall wrote into linear memory. */
  private recordMemory(op: number, a0: number, a1: number, a2: number, r: number): void {
    const rec = this.recorder!;
    const u8 = this.core.u8;
    if ((op === abi.OP_READ || op === abi.OP_PREAD || op === abi.OP_LIST) && r > 0) rec.mem(u8, a0, r);
    else if (op === abi.OP_OPEN) rec.mem(u8, a2, abi.FILE_RECORD_TOTAL);
    else if (op === abi.OP_SENDFILE) rec.mem(u8, a1, 8);
    else if (op === abi.OP_ACCEPT && a0 !== 0) rec.mem(u8, a0, abi.ACCEPT_ADDR_SIZE); // the peer's address
  }

  /** Recording: the results of a round, as the core will read them. */
  private recordResults(n: number): void {
    if (!this.recorder || n <= 0) return;
    const c = this.core;
    c.refresh();
    this.recorder.mem(c.u8, c.ctlI32(abi.CTL_CQ), n * abi.CQE_SIZE);
  }

  /**
   * Edge emulation (backends without kernel edges, host/backend/poll.ts):
   * tells the backend which operations met EAGAIN or fell short, so that a
   * new edge may be reported; a JS callback on fd re-arms it for whatever
   * the callback did (the pump cannot see its reads and writes).
   */
  private edge(op: number, fd: number, a0: number, a1: number, a2: number, r: number): void {
    const wb = this.wouldBlock!;
    switch (op) {
      case abi.OP_READ: if (r === -abi.EAGAIN || (r > 0 && r < a1)) wb(fd, abi.EV_READABLE); break;
      case abi.OP_ACCEPT: if (r === -abi.EAGAIN) wb(fd, abi.EV_READABLE); break;
      case abi.OP_WRITE: case abi.OP_SEND: if (r === -abi.EAGAIN || (r >= 0 && r < a1)) wb(fd, abi.EV_WRITABLE); break;
      case abi.OP_SENDFILE: if (r === -abi.EAGAIN || (r >= 0 && r < a2)) wb(fd, abi.EV_WRITABLE); break;
      case abi.OP_WRITEV: if (r === -abi.EAGAIN || (r >= 0 && r < this.iovBytes(a0, a1))) wb(fd, abi.EV_WRITABLE); break;
      case abi.OP_CALL: if (a0 === abi.CALL_IO && fd >= 0) wb(fd, abi.EV_READABLE | abi.EV_WRITABLE); break;
    }
  }
  private readonly wouldBlock: ((fd: number, bits: number) => void) | null;

  /** Bytes a writev's iovecs (native, 16 bytes each, at a0 in linear memory) ask for. */
  private iovBytes(at: number, count: number): number {
    const i32 = this.core.i32;
    let sum = 0;
    for (let k = 0; k < count; k++) sum += i32[(at + 16 * k + 8) >> 2];
    return sum;
  }

  /**
   * A log line to the user's `log`. If that throws, the line goes to stderr
   * with the reason: an exception must not escape half-way through a round
   * (the requests after it would never be carried out).
   */
  private logLine(level: LogLevel, line: string): void {
    try {
      this.log(level, line);
    } catch (e) {
      writeSync(2, `wasm-reactor: the log function threw (${(e as Error)?.message ?? e}); the line was: ${level}: ${line}\n`);
    }
  }

  private call(kind: number, id: number, fd: number, events: number, extra: number): number {
    try {
      this.onCall(kind, id, fd, events, extra);
      return 0;
    } catch (e) {
      this.logLine("error", `callback threw: ${(e as Error)?.stack ?? e}`);
      return -1;
    }
  }

  private open(pathPtr: number, pathLen: number, record: number, statOnly: number): number {
    if (!this.files) return -abi.ENOENT;
    return this.files.open(this.core, pathPtr, pathLen, record, statOnly === 1);
  }

  // ---- ways to run ------------------------------------------------------

  /** Blocks the calling thread in the loop until stop(). */
  run(shouldStop?: () => boolean): void {
    if (this.attached) throw new Error("run(): the loop is attached to Node's event loop; detach() first");
    this.running = true;
    // After a finished graceful shutdown (OP_STOP) the loop stays stopped:
    // nothing is listening any more.
    this.stopRequested = this.finished;
    try {
      this.flush();
      while (!this.stopRequested && !(shouldStop && shouldStop())) this.tick();
    } finally {
      this.running = false;
      this.stopped();
    }
  }

  /** Asks a running loop to return after the current tick (callable from callbacks). */
  stop(): void {
    this.stopRequested = true;
    if (this.attached) this.detach();
    else if (!this.running) this.stopped(); // nothing to wait for
  }

  /**
   * Resolves the next time the loop stops: run() returns (normally or by an
   * exception) or an attached loop detaches. At once if it is not running.
   */
  whenStopped(): Promise<void> {
    if (!this.isRunning) return Promise.resolve();
    return new Promise((resolve) => this.stopWaiters.push(resolve));
  }
  private stopWaiters: (() => void)[] = [];
  private finished = false;

  private stopped(): void {
    const waiters = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of waiters) w();
  }

  get isRunning(): boolean { return this.running || this.attached; }

  /**
   * Runs the loop inside this thread's Node event loop: libuv watches what
   * the backend hands it (epoll: its one fd; poll: each watched fd), and each
   * time that is ready (or the core's next timer is due) one tick runs with a
   * zero poll timeout. Node's own timers, promises and sockets keep working
   * beside it.
   */
  attach(): void {
    if (this.attached || this.finished) return;
    if (this.running) throw new Error("attach(): the loop is already running in blocking mode");
    this.stopRequested = false;
    this.backend.attach(() => {
      try { this.attachedTick(); } catch (e) { this.log("error", `tick failed: ${(e as Error)?.stack ?? e}`); }
    });
    this.attached = true;
    this.flush();
    this.attachedTick();
  }

  detach(): void {
    if (!this.attached) return;
    this.backend.detach();
    this.attached = false;
    if (this.attachTimer) { clearTimeout(this.attachTimer); this.attachTimer = null; }
    this.stopped();
  }

  private attachedTick(): void {
    if (!this.attached) return;
    try {
      this.tick(0);
    } catch (e) {
      if (e === this.lastRaised && e !== undefined) {
        // An error raised for the application (raise()): libuv's poll
        // callback would swallow it, so it surfaces as an uncaught
        // exception, like an 'error' event nobody listens to. The loop stays
        // attached (a process that handles uncaughtException carries on).
        process.nextTick(() => { throw e; });
      } else {
        throw e;
      }
    }
    this.rearm();
  }

  /**
   * Attached: schedules the next tick for the core's next timer, or at once
   * when work is queued. Keep ticking without yielding only while work is
   * queued in the core (bounded, so Node's loop gets its turn); otherwise
   * sleep until the next timer or until libuv reports the backend ready.
   * The Reactor calls it when JS outside the loop added a timer or a task.
   */
  rearm(): void {
    if (!this.attached || this.draining) return;
    if (this.attachTimer) { clearTimeout(this.attachTimer); this.attachTimer = null; }
    const t = this.core.x.pollTimeout();
    if (t >= 0) {
      this.attachTimer = setTimeout(() => { this.attachTimer = null; try { this.attachedTick(); } catch (e) { this.log("error", String(e)); } }, t);
    }
  }

  close(): void {
    // Inside a phase the core is half-way through a round whose requests
    // point at this loop's fds: closing now would leave them to fail.
    if (this.draining) throw new Error("close() cannot be called from inside a loop callback: call stop() there, and close() once run() has returned (or from outside the callback)");
    this.detach();
    this.backend.close();
    this.recorder?.close();
  }
}

/**
 * Access lines for stdout: collected during a round, written with one
 * write(2) at its end, synchronously. stdout may be a non-blocking pipe
 * (shared with the parent): EAGAIN waits a millisecond and retries, so lines
 * are delayed rather than lost. Another error (EPIPE: nobody reads) stops the
 * access output, said once through `warn`.
 */
class AccessWriter {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  private broken = false;
  private readonly pause = new Int32Array(new SharedArrayBuffer(4));
  constructor(private readonly fd: number, private readonly warn: (line: string) => void) {}

  add(mem: Uint8Array, at: number, n: number): void {
    if (this.broken) return;
    if (this.used + n + 1 > this.buf.length) {
      this.flush();
      if (n + 1 > this.buf.length) this.buf = Buffer.allocUnsafe(n + 1);
    }
    this.buf.set(mem.subarray(at, at + n), this.used);
    this.buf[this.used + n] = 0x0a;
    this.used += n + 1;
  }

  flush(): void {
    let off = 0;
    while (off < this.used && !this.broken) {
      try {
        off += writeSync(this.fd, this.buf, off, this.used - off);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") { Atomics.wait(this.pause, 0, 0, 1); continue; }
        this.broken = true;
        this.warn(`access log: writing to fd ${this.fd} failed (${(e as NodeJS.ErrnoException).code ?? e}); access lines are no longer written`);
      }
    }
    this.used = 0;
  }
}
