// The metrics record (abi.ts MX_*): the counters and histograms the CTL
// block has no room for. Fixed, static, carved once: counting is a load, an
// add and a store; a histogram sample is a bucket search over at most 15
// bounds. Nothing here allocates. The renderer (proto/metrics.ts) reads it.
//
// Loop lag, as measured here: the lateness of each timer the timers phase
// fires, `loop time of the tick that fires it - its deadline`. The loop time
// is read before the timers run (and again after the poll and after each
// round of syscalls), so a timer due while the
// loop was busy (a long batch, a slow JS callback) shows exactly how long
// it waited; the backend wait's timeout is rounded up to whole ms, so an
// idle loop shows up to 1 ms. Connection deadlines are timers too (one per
// connection, lazily re-armed), so a busy server has plenty of samples; an
// idle one only as many as it has timers. The core has no clock: this is the
// one delay it can measure honestly with the times the host gives it.
import {
  MX_SIZE, MX_CLOSED, MX_CLOSE_REASONS, MX_METHODS, MX_METHOD_COUNT, MX_CLASSES, MX_LAG, MX_EVENTS, MX_DURATION,
  MH_TIME_BUCKETS, MH_EVENT_BUCKETS, MX_FC_HITS, MX_FC_MISSES,
} from "../abi";

export const mx: usize = memory.data(MX_SIZE, 16);

/** The record's address (exported as metricsRecord()). */
export function metricsRecord(): usize { return mx; }

@inline function add(off: i32, v: f64): void { const p = mx + <usize>off; store<f64>(p, load<f64>(p) + v); }

// Bucket bounds (upper, inclusive). Time in ms (the record keeps ms; the
// renderer prints seconds).
const TIME_BOUNDS = memory.data<f64>([0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]);
const EVENT_BOUNDS = memory.data<f64>([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]);

export function timeBound(i: i32): f64 { return load<f64>(TIME_BOUNDS + <usize>(i * 8)); }
export function eventBound(i: i32): f64 { return load<f64>(EVENT_BOUNDS + <usize>(i * 8)); }

function sample(off: i32, bounds: usize, buckets: i32, v: f64): void {
  let i = 0;
  while (i < buckets - 1 && v > load<f64>(bounds + <usize>(i * 8))) i++;
  add(off + i * 8, 1);
  add(off + buckets * 8, v);      // sum
  add(off + buckets * 8 + 8, 1);  // count
}

/** A timer fired `lateMs` after its deadline (loop.ts fireTimers). */
export function metricsLag(lateMs: f64): void { sample(MX_LAG, TIME_BOUNDS, MH_TIME_BUCKETS, lateMs > 0 ? lateMs : 0); }
/** A batch of n events was dispatched. */
export function metricsEvents(n: i32): void { sample(MX_EVENTS, EVENT_BOUNDS, MH_EVENT_BUCKETS, <f64>n); }
/** An HTTP request took `ms` from its head's first byte to its flushed response. */
export function metricsDuration(ms: f64): void { sample(MX_DURATION, TIME_BOUNDS, MH_TIME_BUCKETS, ms > 0 ? ms : 0); }

/** A request parsed, with the parser's METHOD_* (0: unknown / not parsed). */
export function metricsMethod(method: i32): void {
  add(MX_METHODS + (method > 0 && method < MX_METHOD_COUNT ? method : 0) * 8, 1);
}
/** A response flushed, with its status. */
export function metricsStatus(status: i32): void {
  const c = status / 100;
  if (c >= 1 && c <= 5) add(MX_CLASSES + (c - 1) * 8, 1);
}
export function metricsClosed(reason: i32): void {
  add(MX_CLOSED + (reason >= 0 && reason < MX_CLOSE_REASONS ? reason : 1) * 8, 1);
}
export function metricsFileCache(hit: bool): void { add(hit ? MX_FC_HITS : MX_FC_MISSES, 1); }
