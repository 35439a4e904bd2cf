// The host loop: the OS half of the loop. It owns the event backend (epoll
// or poll, host/backend/), the clock and the host services (JS callbacks, log
// lines, files); the pump (host/pump.ts) runs the tick's phases and the libc
// executor (host/executor-libc.ts) carries the core's requests out. It makes
// no decisions; the core decides what to read, write, accept, close and when.
import { writeSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import { Core, type CoreConfig, defaultCoreConfig, corePath } from "./core.ts";
import { Recorder, sha256File, recordCore } from "./record.ts";
import { FileSink } from "./record-file.ts";
import { AccessFile } from "./access-file.ts";
import type { Producer } from "./writer/index.ts";
import { describeErrno, raiseFdLimit } from "./libc.ts";
import { createBackend, backendName, defaultBackendName, type Backend, type BackendName } from "./backend/index.ts";
import { EpollBackend } from "./backend/epoll.ts";
import type { Sink } from "./record.ts";
import { Pump, type TickSource } from "./pump.ts";
import type { Executor, Services } from "./executor.ts";
import { LibcExecutor } from "./executor-libc.ts";
import { FilePool, LIVENESS_MS } from "./filepool.ts";
import { FileServer } from "./files.ts";
import { UringExecutor } from "./executor-uring.ts";
import { defaultIoBackendName, ioBackendName, resolveServerIoBackend, type IoBackendName, type ServerIoBackend } from "./io-backend.ts";

import { Logger, coreLevelName, coreEventName, type LogLevel, type LogOptions, type LogFields } from "./log.ts";

export type { LogLevel, LogOptions, LogFields };

/** What kind of JS callback OP_CALL ran, for the slow-callback line. */
const CALL_KINDS: Record<number, string> = {
  [abi.CALL_IO]: "io", [abi.CALL_TIMER]: "timer", [abi.CALL_TASK]: "task", [abi.CALL_CTL_ERROR]: "error",
};
/** At most one slow-callback line per this many ms; the others are counted into the next. */
const SLOW_LOG_EVERY_MS = 1000;
/** While log lines wait for stderr, the loop sleeps at most this long between tries. */
const LOG_RETRY_MS = 100;

/** Carries out OP_OPEN for the HTTP server (host/files.ts). */
export interface FileOpener {
  open(core: Core, pathPtr: number, pathLen: number, recordPtr: number, statOnly: boolean): number;
  /** OP_LIST: renders the listing of the directory whose path is at buf into buf; returns its length. */
  list(core: Core, buf: number, cap: number, pathLen: number): number;
}

export interface LoopOptions extends Partial<CoreConfig> {
  /**
   * Where log lines go. A function gets every line as `(level, text)`,
   * access lines (level "access") included, up to level info. Settings
   * (host/log.ts LogOptions: format "text"|"json", level
   * "error"|"warn"|"info"|"debug", worker, write) configure the built-in
   * logger. Default: access lines to stdout as they are, everything else to
   * stderr as "level: line", never blocking the loop (host/log.ts).
   */
  log?: ((level: LogLevel, line: string) => void) | LogOptions;
  /**
   * A JS callback (I/O handler, timer, task) that holds the loop longer than
   * this (ms) is logged at warn with its kind and duration, at most one line
   * a second (the others are counted into it). Default 100; 0: off.
   */
  slowCallbackMs?: number;
  files?: FileOpener;
  /**
   * Records every input the core receives (see host/record.ts): into this
   * file, or into a Sink such as a MemorySink (one recording per sink).
   */
  record?: string | Sink;
  /**
   * Access lines (level "access") go to this file instead of stdout or
   * `log`, and the access log is on (accessLog: true): a path (appended to,
   * created if missing) or a producer of a ParallelWriter the caller owns
   * (a worker's share of one file: ParallelWriter.join). See host/access-file.ts.
   */
  accessLogFile?: string | Producer;
  /**
   * With accessLogFile: how long (ms) buffered lines may wait for more while
   * the loop is idle, like nginx's `flush=`; default 0: written as soon as
   * the loop has nothing to do. An attached loop writes after every tick.
   */
  accessLogFlushMs?: number;
  /**
   * The event backend: "epoll" (default) or "poll". Default: the
   * WASM_REACTOR_BACKEND environment variable if set, else "epoll".
   */
  backend?: BackendName;
  /**
   * Worker threads for the HTTP server's file work (opens beneath the root,
   * stats, listings, small-body preads: host/filepool.ts), so that a slow
   * file system never stalls the loop. 0: on the loop thread. Default: 2
   * with ioBackend "epoll_threadpool", else 0. Only with a FileServer as `files`.
   */
  fileThreads?: number;
  /**
   * What carries the core's requests out (host/io-backend.ts): "io_uring"
   * (a round as one io_uring_enter), "epoll_threadpool" (one libc call per
   * request) or "auto" (default; WASM_REACTOR_IO_BACKEND if set). A forced
   * io_uring that is unavailable, and "threadpool", throw.
   */
  ioBackend?: IoBackendName;
  /**
   * OP_METRICS: copies the other workers' metrics snapshots into len bytes
   * at addr of this core's memory -> how many (host/metrics.ts MetricsBoard).
   * Only for a core with metricsPeers > 0.
   */
  metricsGather?: (addr: number, len: number) => number;
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

export class Loop {
  readonly core: Core;
  readonly backend: Backend;
  /** The epoll fd with the epoll backend (kept for code that watched it), else -1. */
  get epfd(): number { return this.backend instanceof EpollBackend ? this.backend.epfd : -1; }
  readonly maxEvents: number;
  readonly recorder: Recorder | null;
  /** The I/O backend in use: "io_uring" or "epoll_threadpool". */
  readonly ioBackend: ServerIoBackend;
  private readonly uring: UringExecutor | null = null;
  /** JS callbacks the core asks for (OP_CALL: kind, id, fd, a2, a3); set by the Reactor. */
  onCall: (kind: number, id: number, fd: number, events: number, extra: number) => void = () => {};
  /** The logger every line goes through (host/log.ts). */
  readonly logger: Logger;
  private readonly userLog: ((level: LogLevel, line: string) => void) | null;
  private readonly slowMs: number;
  private slowLoggedAt = -Infinity;
  private slowSuppressed = 0;
  files: FileOpener | null;
  private running = false;
  private stopRequested = false;
  private attached = false;
  private attachTimer: NodeJS.Timeout | null = null;
  private readonly decoder = new TextDecoder();

  constructor(options: LoopOptions = {}) {
    const config = { ...defaultCoreConfig, ...options };
    if (options.accessLogFile !== undefined) config.accessLog = true;
    // Validated before anything is opened: a bad name throws and leaks nothing.
    const backend = options.backend === undefined ? defaultBackendName() : backendName(options.backend, "backend");
    const requestedIo = options.ioBackend === undefined ? defaultIoBackendName() : ioBackendName(options.ioBackend, "ioBackend");
    const io = resolveServerIoBackend(requestedIo);
    // Not process.stderr: a thread blocked in epoll_wait never flushes async
    // streams (process.stderr in a worker is a message to the main thread).
    const userLog = typeof options.log === "function" ? options.log : null;
    this.userLog = userLog;
    this.logger = new Logger(userLog ? { text: (_level, msg) => msg, write: (line, level) => userLog(level, line) }
      : (options.log as LogOptions | undefined) ?? {});
    config.logLevel = this.logger.level;
    const slowMs = options.slowCallbackMs ?? 100;
    if (!(Number.isFinite(slowMs) && slowMs >= 0)) throw new RangeError(`slowCallbackMs must be a number of ms >= 0, got ${slowMs}`);
    this.slowMs = slowMs;
    if (options.maxFds === undefined) config.maxFds = defaultMaxFds();
    const time: [number, number] = [performance.now(), Date.now()];
    const sink = typeof options.record === "string" ? new FileSink(options.record) : options.record;
    this.accessFile = options.accessLogFile === undefined ? null : AccessFile.open(options.accessLogFile, (line) => this.log("error", line, "access_log_error"), options.accessLogFlushMs);
    this.recorder = sink ? new Recorder(sink, {
      coreSha256: sha256File(corePath),
      config: Object.fromEntries(Object.keys(defaultCoreConfig).map((k) => [k, (config as Record<string, unknown>)[k]])) as unknown as CoreConfig,
      time, arch: process.arch, backend, created: new Date().toISOString(), argv: process.argv.slice(2),
    }) : null;
    this.core = new Core(config, undefined, { time });
    this.maxEvents = config.maxEvents;
    this.backend = createBackend(backend);
    this.files = options.files ?? null;
    this.metricsGather = options.metricsGather ?? null;
    // The file pool: asked for (fileThreads), or implied by the name
    // epoll_threadpool (2 threads), and only for the built-in file server.
    const threads = options.fileThreads ?? (io.backend === "epoll_threadpool" ? 2 : 0);
    this.filePool = threads > 0 && this.files instanceof FileServer
      ? new FilePool(this.core, {
        threads, root: this.files.root, rootFd: this.files.rootFd, precompressed: this.files.precompressed,
        onError: (line) => this.log("error", line, "file_pool"),
      })
      : null;
    let executor: Executor | null = null;
    if (io.backend === "io_uring") {
      try {
        executor = this.uring = new UringExecutor(this.core, this.services(), this.backend, {
          pool: this.filePool, files: this.files instanceof FileServer ? this.files : null,
        });
      } catch (e) {
        // The probe's 2-entry ring worked, this one did not (RLIMIT_MEMLOCK on
        // kernels before 5.12, say): auto falls back, a forced io_uring fails.
        if (requestedIo === "auto") {
          io.fallback = `I/O backend: io_uring ring setup failed (${(e as Error).message}); using epoll_threadpool`;
          io.backend = "epoll_threadpool";
        } else {
          this.filePool?.close();
          this.backend.close();
          this.recorder?.close();
          this.accessFile?.close(0);
          this.logger.close();
          throw e;
        }
      }
    }
    executor ??= new LibcExecutor(this.core, this.services(), this.backend, this.filePool);
    this.ioBackend = io.backend;
    if (this.recorder) executor = recordCore(this.core, this.recorder, executor);
    this.pump = new Pump(this.core, executor, {
      onTrap: (e, fd) => this.log("error", `core trap (${e.message}) while serving fd ${fd}: connection closed, loop continues`, "core_trap", { fd }),
      afterRound: () => this.clock(),
    });
    if (io.fallback) this.log("warn", io.fallback, "io_backend_fallback");
    // Without a log function of the user's, access lines skip the JS
    // strings: their bytes go from linear memory to a buffer, one write(2)
    // to stdout per round.
    this.accessOut = userLog ? null : new AccessWriter(1, (line) => this.log("error", line, "access_log_error"));
  }

  /** The file pool carrying out the HTTP server's file work, if any (its eventfd must be watched: the Reactor does). */
  readonly filePool: FilePool | null;
  /** The io_uring executor's file ops (host/uring-files.ts), if any: their eventfd must be watched too (the Reactor does). */
  get uringFiles(): { readonly eventfd: number; woke(): void } | null { return this.uring?.files ?? null; }

  /**
   * Reads the clock: loop time for what follows (before the timers, after the
   * poll, and after each round's syscalls: Pump's afterRound). The
   * wall clock (only for Date headers) is derived from the monotonic one and
   * re-read once a second, so clock adjustments show up within a second.
   */
  private clock(): void {
    const mono = performance.now();
    this.now = mono;
    if (mono - this.wallSynced >= 1000) {
      this.wallOffset = Date.now() - mono;
      this.wallSynced = mono;
    }
    this.core.setTime(mono, mono + this.wallOffset);
  }
  private wallOffset = 0;
  private wallSynced = -Infinity;
  private readonly accessOut: AccessWriter | null;
  private readonly accessFile: AccessFile | null;
  /** Loop time (ms, monotonic) as the last clock() read it. */
  private now = 0;

  /** One turn of the loop (the phases: Pump.tick). `maxWait` caps the poll timeout (attach mode polls with 0). */
  tick(maxWait = -1): void {
    // A timer callback called stop() (or raised an error): finish this tick
    // without sleeping, or run() would only return once the poll times out.
    this.pump.tick(this.source, maxWait, this.mustNotBlock);
    this.afterTick?.();
    this.throwRaised();
  }

  /** Called at the end of every tick (a worker publishes its metrics snapshot here: host/metrics.ts). */
  afterTick: (() => void) | null = null;
  /** Called before a backend wait that may sleep (timeout not 0). */
  beforeSleep: (() => void) | null = null;
  /**
   * Keep running when a graceful shutdown has finished (the core's OP_STOP),
   * calling onDrained instead of stopping, until release(): the CLI's worker
   * that serves /metrics stays up while the other workers still drain.
   */
  holdAfterDrain = false;
  onDrained: (() => void) | null = null;
  /** Ends holdAfterDrain: stops now if the drain has finished, else when it does. */
  release(): void {
    this.holdAfterDrain = false;
    if (this.finished) this.stop();
  }
  private readonly metricsGather: ((addr: number, len: number) => number) | null;
  private readonly pump: Pump;
  private readonly source: TickSource = { clock: () => this.clock(), poll: (timeout) => this.poll(timeout) };
  private readonly mustNotBlock = () => this.stopRequested || this.raised.length > 0;

  /**
   * Throws `e` out of the current tick once the tick is over (never in the
   * middle of a phase, which would leave the core's round half done): out of
   * run(), or, for an attached loop, as an uncaught exception from Node's
   * event loop. Used for errors nobody handles (a refused interest change
   * with no onError). Outside any phase it throws at once.
   */
  raise(e: unknown): void {
    if (!this.pump.inPhase) throw e;
    this.raised.push(e);
  }
  private raised: unknown[] = [];
  private lastRaised: unknown = undefined;

  private throwRaised(): void {
    if (!this.raised.length) return;
    const [first, ...more] = this.raised;
    this.raised = [];
    for (const e of more) this.log("error", `also raised in this tick: ${(e as Error)?.message ?? e}`, "raised");
    this.lastRaised = first;
    throw first;
  }

  /** True while a phase runs (inside any callback the core calls). */
  get inPhase(): boolean { return this.pump.inPhase; }

  /** Carries out what JS changed outside a phase (register() before run(), ...). */
  flush(): void {
    if (this.pump.inPhase) return; // inside a phase: the phase applies it
    this.clock();
    this.pump.flush();
    this.throwRaised();
  }

  /**
   * The tick's poll. Buffered access-log lines go out before the loop
   * sleeps: with lines pending, a zero-timeout wait first; only if nothing
   * is ready are they written, then the real wait. Lines that may still be
   * held (accessLogFlushMs) cut the sleep short instead.
   */
  private poll(timeout: number): number {
    if (timeout !== 0) this.beforeSleep?.();
    // Requests on the file pool: wake at least every LIVENESS_MS, so a dead
    // worker's requests are noticed (FilePool.reap looks at the workers).
    if (this.filePool !== null && this.filePool.inFlight > 0 && (timeout < 0 || timeout > LIVENESS_MS)) timeout = LIVENESS_MS;
    // Log lines stderr did not take: try again now, and soon if they still wait.
    if (this.logger.pending && !this.logger.flush() && (timeout < 0 || timeout > LOG_RETRY_MS)) timeout = LOG_RETRY_MS;
    const file = this.accessFile;
    if (timeout !== 0 && file?.pending) {
      const hold = file.holdFor(this.now);
      if (hold > 0) {
        if (timeout < 0 || timeout > hold) timeout = hold;
      } else {
        const n = this.wait(0);
        if (n > 0) return n;
        file.flush(this.now);
      }
    }
    return this.wait(timeout);
  }

  /** The backend's wait, into the core's event area; EINTR retried. */
  private wait(timeout: number): number {
    const core = this.core;
    const events = core.ctlI32(abi.CTL_EVENTS);
    for (;;) {
      const n = this.backend.wait(core, events, this.maxEvents, timeout);
      if (n >= 0) return n;
      if (n !== -abi.EINTR) throw new Error(`${this.backend.name} wait: ${describeErrno(-n)}`);
      core.refresh();
    }
  }

  /** The host services the executor hands OP_CALL, OP_LOG, OP_STOP, OP_OPEN and OP_LIST to. */
  private services(): Services {
    return {
      call: (kind, id, fd, events, extra) => this.call(kind, id, fd, events, extra),
      log: (level, ptr, len, event = abi.LOGEV_MESSAGE) => {
        const u8 = this.core.u8;
        if (level === abi.LOG_ACCESS && this.accessFile) this.accessFile.add(u8, ptr, len, this.now);
        else if (level === abi.LOG_ACCESS && this.accessOut) this.accessOut.add(u8, ptr, len);
        else this.log(coreLevelName(level), this.decoder.decode(u8.subarray(ptr, ptr + len)), coreEventName(event));
      },
      stop: () => { // graceful shutdown finished
        this.finished = true;
        if (this.holdAfterDrain) { this.onDrained?.(); return; }
        this.stop();
      },
      metrics: (addr, len) => this.metricsGather ? this.metricsGather(addr, len) : 0,
      open: (pathPtr, pathLen, record, statOnly) => this.files ? this.files.open(this.core, pathPtr, pathLen, record, statOnly) : -abi.ENOENT,
      list: (buf, cap, pathLen) => this.files ? this.files.list(this.core, buf, cap, pathLen) : -abi.ENOENT,
      roundDone: () => { this.accessOut?.flush(); this.accessFile?.roundDone(this.now); },
    };
  }


  /**
   * A log line: `event` names what happened (the JSON `event`), `fields` add
   * to a JSON line. Access lines go to the user's log function. If that
   * throws, the line goes to stderr with the reason: an exception must not
   * escape half-way through a round (the requests after it would never be
   * carried out).
   */
  log(level: LogLevel, line: string, event = "message", fields?: LogFields): void {
    try {
      if (level === "access") this.userLog?.("access", line);
      else this.logger.log(level, event, line, fields);
    } catch (e) {
      writeSync(2, `wasm-reactor: the log function threw (${(e as Error)?.message ?? e}); the line was: ${level}: ${line}\n`);
    }
  }

  private call(kind: number, id: number, fd: number, events: number, extra: number): number {
    const t0 = this.slowMs > 0 ? performance.now() : 0;
    try {
      this.onCall(kind, id, fd, events, extra);
      return 0;
    } catch (e) {
      this.log("error", `callback threw: ${(e as Error)?.stack ?? e}`, "callback_threw");
      return -1;
    } finally {
      if (this.slowMs > 0) {
        const ms = performance.now() - t0;
        if (ms >= this.slowMs) this.slowCallback(kind, ms);
      }
    }
  }

  /** A callback held the loop for `ms`: one warn line a second at most, with a count of the ones in between. */
  private slowCallback(kind: number, ms: number): void {
    const t = performance.now();
    if (t - this.slowLoggedAt < SLOW_LOG_EVERY_MS) { this.slowSuppressed++; return; }
    const more = this.slowSuppressed;
    this.slowSuppressed = 0;
    this.slowLoggedAt = t;
    const name = CALL_KINDS[kind] ?? `kind ${kind}`;
    this.log("warn", `slow callback: a ${name} callback held the loop for ${ms.toFixed(1)} ms (threshold ${this.slowMs} ms)` +
      (more > 0 ? `; ${more} more since the last such line` : ""),
    "slow_callback", { kind: name, duration_ms: Math.round(ms * 1000) / 1000, threshold_ms: this.slowMs, suppressed: more });
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
      this.accessFile?.flush(this.now);
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
      try { this.attachedTick(); } catch (e) { this.log("error", `tick failed: ${(e as Error)?.stack ?? e}`, "tick_failed"); }
    });
    this.attached = true;
    this.flush();
    this.attachedTick();
  }

  detach(): void {
    if (!this.attached) return;
    this.accessFile?.flush(this.now);
    this.backend.detach();
    this.attached = false;
    if (this.attachTimer) { clearTimeout(this.attachTimer); this.attachTimer = null; }
    this.stopped();
  }

  private attachedTick(): void {
    if (!this.attached) return;
    try {
      this.tick(0);
      // Inside Node's loop the next sleep is libuv's: lines go out after every tick.
      if (this.accessFile?.pending) this.accessFile.flush(this.now);
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
    if (!this.attached || this.pump.inPhase) return;
    if (this.attachTimer) { clearTimeout(this.attachTimer); this.attachTimer = null; }
    const t = this.core.x.pollTimeout();
    if (t >= 0) {
      this.attachTimer = setTimeout(() => { this.attachTimer = null; try { this.attachedTick(); } catch (e) { this.log("error", String(e), "tick_failed"); } }, t);
    }
  }

  close(): void {
    // Inside a phase the core is half-way through a round whose requests
    // point at this loop's fds: closing now would leave them to fail.
    if (this.pump.inPhase) throw new Error("close() cannot be called from inside a loop callback: call stop() there, and close() once run() has returned (or from outside the callback)");
    this.detach();
    this.filePool?.close();
    this.backend.close();
    this.uring?.close();
    this.recorder?.close();
    this.accessFile?.close(this.now);
    this.logger.close();
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
