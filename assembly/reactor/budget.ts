// Fairness: a per-connection budget per tick (requests and bytes read).
//
// Without it one connection can hold the loop: a client that pipelines
// 10,000 requests keeps its connection in the run queue round after round
// (each response's completion starts the next request, each full read the
// next read), so the tick never ends, the loop never polls, and every other
// client waits for the hog to run dry. With it, a connection that has used
// its budget in this tick is set aside: its remaining work (buffered input,
// or readiness that an edge-triggered backend will not report again) waits
// in `waiting`, the tick ends, the backend is polled with a 0 timeout (see
// pollTimeout in loop.ts), and the next tick's dispatch puts the connection
// back in the run queue behind the connections that the poll made ready.
// So a hog delays the others by at most one budget per tick.
//
// Which work counts is the protocol's call (budgetCharge): HTTP counts
// requests parsed and bytes read, echo bytes read. The defaults are like
// nginx's and h2o's per-connection per-loop caps (FAIR_TICK_*); the host may
// change them or turn them off (FCFG_TICK_*; < 0: no limit).
//
// Memory: one 16-byte record per fd, carved at init (untouched pages cost
// no RSS), and a list of at most maxFds waiting fds.
//   +0  i32 tick       the tick the counts below belong to
//   +4  i32 requests   requests charged in that tick
//   +8  i32 bytes      bytes charged in that tick
//   +12 i32 deferred   the tick the fd was put in `waiting` (no duplicates)
import {
  FCFG_SIZE, FCFG_TICK_REQUESTS, FCFG_TICK_BYTES, STAT_FAIR_DEFERRED, FAIR_TICK_REQUESTS, FAIR_TICK_BYTES, C_STATE,
} from "../abi";
import { cget, enqueue } from "./conn";
import { ctlAddI32 } from "./ctl";

const RECORD: usize = 16;

/** The config record (abi.ts FCFG_*), static so the host finds it before init. */
const fairCfg: usize = memory.data(FCFG_SIZE, 16);
export function fairnessConfig(): usize { return fairCfg; }

let records: usize = 0;
let waiting: usize = 0;
let waitingLen: i32 = 0;
let tick: i32 = 1;
let requeued: i32 = 0;
let maxRequests: i32 = FAIR_TICK_REQUESTS;
let maxBytes: i32 = FAIR_TICK_BYTES;

export function budgetInit(fds: i32): void {
  records = heap.alloc(<usize>fds * RECORD); // fresh memory is zeroed: tick 0, nothing charged
  waiting = heap.alloc(<usize>fds * 4);
  const r = load<i32>(fairCfg + FCFG_TICK_REQUESTS);
  const b = load<i32>(fairCfg + FCFG_TICK_BYTES);
  maxRequests = r == 0 ? FAIR_TICK_REQUESTS : r < 0 ? i32.MAX_VALUE : r;
  maxBytes = b == 0 ? FAIR_TICK_BYTES : b < 0 ? i32.MAX_VALUE : b;
  store<i32>(fairCfg + FCFG_TICK_REQUESTS, r == 0 ? maxRequests : r);
  store<i32>(fairCfg + FCFG_TICK_BYTES, b == 0 ? maxBytes : b);
}

@inline function rec(fd: i32): usize { return records + <usize>fd * RECORD; }

/** A new tick (dispatch): fresh budgets. */
export function budgetTickBegin(): void { tick++; }

/**
 * The connections set aside in the last tick go back in the run queue, once
 * per tick, behind the ones this tick's events made ready (called at the
 * end of the dispatch batch).
 */
export function budgetRequeue(): void {
  if (requeued == tick) return;
  requeued = tick;
  const n = waitingLen;
  waitingLen = 0;
  // A connection closed meanwhile is skipped; one whose fd was reused gets
  // one run it did not ask for, which finds nothing to do.
  for (let i = 0; i < n; i++) {
    const fd = load<i32>(waiting + <usize>i * 4);
    if (cget(fd, C_STATE) != 0) enqueue(fd);
  }
}

/** Charges work done by fd in this tick. */
export function budgetCharge(fd: i32, requests: i32, bytes: i32): void {
  const r = rec(fd);
  if (load<i32>(r) != tick) { store<i32>(r, tick); store<i32>(r, 0, 4); store<i32>(r, 0, 8); }
  store<i32>(r, load<i32>(r, 4) + requests, 4);
  store<i32>(r, load<i32>(r, 8) + bytes, 8);
}

/** True while fd may start more work in this tick. */
export function budgetLeft(fd: i32): bool {
  const r = rec(fd);
  if (load<i32>(r) != tick) return true;
  return load<i32>(r, 4) < maxRequests && load<i32>(r, 8) < maxBytes;
}

/** Sets fd aside until the next tick (its protocol's run hook resumes it then). */
export function budgetDefer(fd: i32): void {
  const r = rec(fd);
  if (load<i32>(r, 12) == tick) return;
  store<i32>(r, tick, 12);
  store<i32>(waiting + <usize>(waitingLen++) * 4, fd);
  ctlAddI32(STAT_FAIR_DEFERRED, 1);
}

/** Connections wait for the next tick: the poll must not block. */
export function budgetWaiting(): bool { return waitingLen > 0; }
