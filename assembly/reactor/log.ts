// Log lines the core asks the host to print (OP_LOG). Cold path only: text is
// formatted into a per-round area that stays valid until the host has carried
// out the round's requests.
import { OP_LOG } from "../abi";
import { submit, sqRoom } from "./ctl";

const LOG_AREA: i32 = 8192;
const area: usize = memory.data(LOG_AREA);
let used: i32 = 0;
let lineStart: i32 = 0;

/** A new round: the host has consumed every line of the previous one. */
export function logRoundReset(): void { used = 0; lineStart = 0; }

export function logBegin(): void { lineStart = used; }

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
  if (used + digits > LOG_AREA) return;
  for (let i = digits - 1; i >= 0; i--) {
    store<u8>(area + <usize>(used + i), <u8>(48 + tmp % 10));
    tmp /= 10;
  }
  used += digits;
}

/** Emits the line formatted since logBegin(). Dropped if the SQ is full. */
export function logEnd(level: i32): void {
  if (sqRoom() < 1) return;
  submit(OP_LOG, -1, <i32>(area + <usize>lineStart), used - lineStart, level, 0);
}

export function logLine(level: i32, s: string): void {
  logBegin(); logStr(s); logEnd(level);
}
