// The one logger of the host: every line the host, the CLI and the core have
// to say (startup, listening, shutdown, upstream state, worker deaths, limit
// warnings, traps...) goes through a Logger, which filters by level and
// formats as text (the lines as they always were) or JSON (one object per
// line: {"time", "level", "worker", "event", "msg", ...fields}). The access
// log is a stream of its own (loop.ts, access-file.ts) and never comes here.
//
// Writes never block a loop. A reactor thread writes to stderr through a
// NonBlockingSink: what the pipe does not take now waits in a bounded buffer
// (64 KiB) and is retried at the next line and before the loop sleeps;
// beyond that lines are dropped and counted, and the count is said once
// stderr takes data again. (The ParallelWriter is positional, pwritev:
// pipes and terminals refuse it with ESPIPE, so it cannot carry stderr.)
import { writeSync, openSync, closeSync, fstatSync, constants } from "node:fs";
import * as abi from "../assembly/abi.ts";
import { libc, errno, O_NONBLOCK, O_CLOEXEC } from "./libc.ts";

export type LogLevelName = "error" | "warn" | "info" | "debug";
/** A line's level; "access" lines are the access log's (never filtered, never JSON-wrapped). */
export type LogLevel = LogLevelName | "access";
export type LogFormat = "text" | "json";
export const LOG_LEVELS: readonly LogLevelName[] = ["error", "warn", "info", "debug"];
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** Extra fields of a JSON line (numbers, strings, booleans, null). */
export type LogFields = Record<string, string | number | boolean | null>;

/** The built-in logger's settings (LoopOptions.log, ServerOptions.log). */
export interface LogOptions {
  /** "text" (default): `level: message`, as always; "json": one JSON object per line. */
  format?: LogFormat;
  /** The most verbose level written (default "info"); the core does not even build lines above it. */
  level?: LogLevelName;
  /** The `worker` field of JSON lines (the CLI's worker index); default null. */
  worker?: number | null;
  /** Text lines: how a message is written (default `${level}: ${msg}`). */
  text?: (level: LogLevelName, msg: string) => string;
  /** Where finished lines go (without '\n'); default: stderr, never blocking the loop. */
  write?: (line: string, level: LogLevelName) => void;
}

const RANK: Record<LogLevelName, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** A core LOG_* level's name ("access" for the access log). */
export function coreLevelName(level: number): LogLevel {
  switch (level) {
    case abi.LOG_ERROR: return "error";
    case abi.LOG_WARN: return "warn";
    case abi.LOG_ACCESS: return "access";
    case abi.LOG_DEBUG: return "debug";
    default: return "info";
  }
}

/** The value of OPS_LOG_LEVEL for a level: LOG_* + 1. */
export function coreLogLevel(level: LogLevelName): number {
  const v = level === "error" ? abi.LOG_ERROR : level === "warn" ? abi.LOG_WARN : level === "debug" ? abi.LOG_DEBUG : abi.LOG_INFO;
  return v + 1;
}

/** JSON `event` names of the core's LOGEV_* codes. */
const CORE_EVENTS: Record<number, string> = {
  [abi.LOGEV_MESSAGE]: "message",
  [abi.LOGEV_ACCEPT_PAUSED]: "accept_paused",
  [abi.LOGEV_ACCEPT_RESUMED]: "accept_resumed",
  [abi.LOGEV_UPSTREAM_STATE]: "upstream_state",
  [abi.LOGEV_CONN_LIMIT]: "connection_limit",
  [abi.LOGEV_CONN_OPEN]: "connection_open",
  [abi.LOGEV_CONN_CLOSE]: "connection_close",
};
export function coreEventName(event: number): string { return CORE_EVENTS[event] ?? "message"; }

/** A level name, or a TypeError naming where it came from. */
export function logLevelName(v: unknown, where = "log.level"): LogLevelName {
  if (typeof v === "string" && (LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevelName;
  throw new TypeError(`${where} must be ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(v)}`);
}

/** ISO 8601 UTC with milliseconds, as Date.toISOString writes it. */
const isoTime = (): string => new Date().toISOString();

export class Logger {
  readonly format: LogFormat;
  readonly level: LogLevelName;
  readonly worker: number | null;
  private readonly rank: number;
  private readonly text: (level: LogLevelName, msg: string) => string;
  private readonly write: (line: string, level: LogLevelName) => void;
  /** The sink when it is the built-in one (for pending/flush). */
  readonly sink: NonBlockingSink | null;

  constructor(options: LogOptions = {}) {
    const format = options.format ?? "text";
    if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new TypeError(`log.format must be text or json, got ${JSON.stringify(format)}`);
    this.format = format;
    this.level = logLevelName(options.level ?? "info");
    this.rank = RANK[this.level];
    this.worker = options.worker ?? null;
    this.text = options.text ?? ((level, msg) => `${level}: ${msg}`);
    this.sink = options.write ? null : new NonBlockingSink(2);
    const sink = this.sink;
    this.write = options.write ?? ((line) => sink!.write(line));
  }

  /** True if lines of `level` are written: check before building an expensive one. */
  enabled(level: LogLevelName): boolean { return RANK[level] <= this.rank; }

  /** One line: `event` names what happened (JSON), `msg` says it in words (both formats). */
  log(level: LogLevelName, event: string, msg: string, fields?: LogFields): void {
    if (RANK[level] > this.rank) return;
    this.write(this.format === "json" ? this.json(level, event, msg, fields) : this.text(level, msg), level);
  }
  error(event: string, msg: string, fields?: LogFields): void { this.log("error", event, msg, fields); }
  warn(event: string, msg: string, fields?: LogFields): void { this.log("warn", event, msg, fields); }
  info(event: string, msg: string, fields?: LogFields): void { this.log("info", event, msg, fields); }
  debug(event: string, msg: string, fields?: LogFields): void { this.log("debug", event, msg, fields); }

  private json(level: LogLevelName, event: string, msg: string, fields?: LogFields): string {
    // The fixed fields first, in this order; fields cannot override them.
    const o: Record<string, unknown> = { time: isoTime(), level, worker: this.worker, event, msg };
    if (fields) for (const [k, v] of Object.entries(fields)) if (!(k in o)) o[k] = v;
    return JSON.stringify(o);
  }

  /** Lines waiting for stderr to take them (the loop then sleeps briefly, not forever). */
  get pending(): boolean { return this.sink?.pending ?? false; }
  /** Tries to write what waits; true if nothing is left. */
  flush(): boolean { return this.sink ? this.sink.flush() : true; }
  close(): void { this.sink?.close(); }
}

/** Bytes a sink holds for a slow stderr before it drops lines. */
const PENDING_MAX = 64 * 1024;

/**
 * Lines to a file descriptor (stderr) without ever blocking: a pipe or a
 * terminal is reopened through /proc/self/fd with O_NONBLOCK (a file
 * description of our own: the flag must not leak to the one we share with
 * the parent and its other children); a socket (journald's stderr) is
 * written with send(MSG_DONTWAIT); a regular file is written as it is (a
 * file write does not wait for a reader).
 */
export class NonBlockingSink {
  private fd: number;
  private owned = false;
  private socket = false;
  private queue: Buffer[] = [];
  private queued = 0;
  private dropped = 0;

  constructor(fd: number) {
    this.fd = fd;
    try {
      const st = fstatSync(fd);
      if (st.isFIFO() || st.isCharacterDevice()) {
        this.fd = openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        this.owned = true;
      } else if (st.isSocket()) {
        this.socket = true;
      }
    } catch { /* no /proc, or fd closed: write to fd as it is */ }
  }

  get pending(): boolean { return this.queued > 0; }

  write(line: string): void {
    const b = Buffer.from(line + "\n");
    if (this.queued > 0 && !this.flush()) { this.enqueue(b); return; }
    const n = this.tryWrite(b);
    if (n < b.length) this.enqueue(n > 0 ? b.subarray(n) : b);
  }

  /** Writes what waits, as far as the fd takes it; true if nothing is left. */
  flush(): boolean {
    while (this.queue.length > 0) {
      const b = this.queue[0];
      const n = this.tryWrite(b);
      this.queued -= Math.max(0, n);
      if (n < b.length) { if (n > 0) this.queue[0] = b.subarray(n); return false; }
      this.queue.shift();
    }
    if (this.dropped > 0) {
      const note = Buffer.from(`warn: ${this.dropped} log line(s) dropped: stderr was not taking data\n`);
      this.dropped = 0;
      const n = this.tryWrite(note);
      if (n < note.length) this.enqueue(n > 0 ? note.subarray(n) : note);
    }
    return this.queued === 0;
  }

  private enqueue(b: Buffer): void {
    if (this.queued + b.length > PENDING_MAX) { this.dropped++; return; }
    this.queue.push(b);
    this.queued += b.length;
  }

  /** Bytes written (0 when the fd would block or failed). */
  private tryWrite(b: Buffer): number {
    if (this.socket) {
      const r = libc.sendBuf(this.fd, b, b.length, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r >= 0) return r;
      const e = errno();
      return e === abi.EAGAIN || e === abi.EINTR ? 0 : b.length; // a dead socket: the line is gone
    }
    try {
      return writeSync(this.fd, b, 0, b.length);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === "EAGAIN" || code === "EINTR" ? 0 : b.length; // EPIPE...: nobody reads; not worth a loop
    }
  }

  close(): void {
    this.flush();
    if (this.owned) { try { closeSync(this.fd); } catch { /* already gone */ } }
    this.owned = false;
  }
}

const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
