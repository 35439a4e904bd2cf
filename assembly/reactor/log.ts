// Log lines the core asks the host to print (OP_LOG). Text is formatted into
// a per-round area that stays valid until the host has carried out the
// round's requests. Warnings and errors are rare and short: 8 KiB. With the
// access log on, every response of a round adds a line (typically 100-300
// bytes, about 37 KiB at worst), so logInit() carves a 1 MiB area: room
// for several thousand lines, more responses than one round completes in
// practice. A line that does not fit is dropped whole and counted
// (STAT_LOG_DROPPED), never cut.
//
// Each line carries a level (LOG_*) and an event (LOGEV_*: what it is about,
// for the host's JSON lines) in its OP_LOG request; the host formats it. Lines
// above the configured level (OPS_LOG_LEVEL) are not emitted, and callers of
// debug lines on busy paths ask logOn(LOG_DEBUG) first, so that they are not
// even built.
import { OP_LOG, STAT_LOG_DROPPED, LOG_ACCESS, LOG_INFO, OPS_SIZE, OPS_LOG_LEVEL, LOGEV_MESSAGE } from "../abi";
import { submit, sqRoom, ctlAddI32 } from "./ctl";

/** The ops config record (abi.ts OPS_*), written by the host before init. */
export const opsRecord: usize = memory.data(OPS_SIZE, 16);
/** The ops config record's address (the export opsConfig()). */
export function opsConfig(): usize { return opsRecord; }
let threshold: i32 = LOG_INFO;
let lineEvent: i32 = LOGEV_MESSAGE;

/** Reads the log level from the ops record (at init). */
export function logConfigure(): void {
  const v = load<i32>(opsRecord + OPS_LOG_LEVEL);
  threshold = v > 0 ? v - 1 : LOG_INFO;
}

/** True if lines of `level` are emitted (the access log always is: a stream of its own). */
@inline export function logOn(level: i32): bool { return level == LOG_ACCESS || level <= threshold; }

let LOG_AREA: i32 = 8192;
let area: usize = memory.data(8192);
let used: i32 = 0;
let lineStart: i32 = 0;

/** A larger area, for the access log (once, at init). */
export function logInit(size: i32): void {
  if (size <= LOG_AREA) return;
  area = heap.alloc(<usize>size);
  LOG_AREA = size;
}

/** A new round: the host has consumed every line of the previous one. */
export function logRoundReset(): void { used = 0; lineStart = 0; }

/** Starts a line about `event` (LOGEV_*). */
export function logBegin(event: i32 = LOGEV_MESSAGE): void { lineStart = used; lineEvent = event; }

export function logStr(s: string): void {
  const n = s.length;
  for (let i = 0; i < n && used < LOG_AREA; i++) store<u8>(area + <usize>(used++), <u8>s.charCodeAt(i));
}

export function logBytes(p: usize, n: i32): void {
  const k = min(n, LOG_AREA - used);
  if (k <= 0) return;
  memory.copy(area + <usize>used, p, <usize>k);
  used += k;
}

export function logInt(v: i64): void {
  if (v < 0) { logStr("-"); v = -v; }
  let tmp: u64 = <u64>v;
  let digits = 1;
  for (let t = tmp; t >= 10; t /= 10) digits++;
  if (used + digits > LOG_AREA) { used = LOG_AREA; return; } // full: logEndWhole drops the line
  for (let i = digits - 1; i >= 0; i--) {
    store<u8>(area + <usize>(used + i), <u8>(48 + tmp % 10));
    tmp /= 10;
  }
  used += digits;
}

/** Room for n raw bytes at the end of the line: their address, or 0 (the line is then full). */
export function logReserve(n: i32): usize {
  if (used + n > LOG_AREA) { used = LOG_AREA; return 0; }
  return area + <usize>used;
}
/** Keeps n bytes written at the address logReserve returned. */
export function logCommit(n: i32): void { used += n; }

/** Emits the line formatted since logBegin(). Dropped if the SQ is full. */
export function logEnd(level: i32): void {
  if (!logOn(level) || sqRoom() < 1) { used = lineStart; return; }
  submit(OP_LOG, -1, <i32>(area + <usize>lineStart), used - lineStart, level, lineEvent);
}

/**
 * Like logEnd, for lines that must be whole (the access log): a line that ran
 * into the end of the area is taken back and counted instead.
 */
export function logEndWhole(level: i32): void {
  if (used >= LOG_AREA || sqRoom() < 1) {
    used = lineStart;
    ctlAddI32(STAT_LOG_DROPPED, 1);
    return;
  }
  submit(OP_LOG, -1, <i32>(area + <usize>lineStart), used - lineStart, level, lineEvent);
}

export function logLine(level: i32, s: string, event: i32 = LOGEV_MESSAGE): void {
  if (!logOn(level)) return;
  logBegin(event); logStr(s); logEnd(level);
}
