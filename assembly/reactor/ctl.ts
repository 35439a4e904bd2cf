// The control block and the submission queue: the core's only way to ask for
// anything. See assembly/abi.ts for the layout; this file is its core side.
import {
  CTL_SIZE, CTL_VERSION, ABI_VERSION, CTL_EVENTS, CTL_EVENTS_CAP, EVENT_SIZE,
  CTL_SQ, CTL_SQ_CAP, CTL_CQ, CTL_SCRATCH, SCRATCH_SIZE, CTL_CURRENT_FD, CTL_NOW, CTL_WALL,
  CFG_MAX_EVENTS, SQE_SIZE, CQE_SIZE, SQE_OP, SQE_FD, SQE_A0, SQE_A1, SQE_A2, SQE_A3, CTL_MEM_BASE, CFG_TEXT_SIZE,
} from "../abi";

// The control block lives in static memory so the host can find it before
// init() (to write the config) through `ctl()`.
export const ctl: usize = memory.data(CTL_SIZE, 16);
// Text-valued config (abi.ts CFGT_*), static for the same reason.
export const cfgText: usize = memory.data(CFG_TEXT_SIZE, 16);

// Worst case number of SQEs one step of one connection, or one completion,
// emits. The schedulers (connections, accepts, timers, modifications) admit
// work only while the round holds at most sqCap / SQ_FANOUT requests, so the
// requests the round's completions emit (at most SQ_FANOUT each) always fit:
// a completion emits at most one follow-up request of its connection, so the
// connection requests of a round never exceed that bound either.
export const SQ_FANOUT: i32 = 4;

// Two SQ/CQ pairs, swapped each round: while complete() reads the results of
// the round the host just carried out, the requests they lead to go into the
// other pair. CTL_SQ/CTL_CQ always name the pair the host carries out next.
export let sq: usize = 0;
export let cq: usize = 0;
let sqAlt: usize = 0;
let cqAlt: usize = 0;
/** The round being completed (read by complete()). */
export let doneSq: usize = 0;
export let doneCq: usize = 0;
export let sqCap: i32 = 0;
export let sqLen: i32 = 0;
export let events: usize = 0;
export let eventsCap: i32 = 0;

export function ctlI32(off: i32): i32 { return load<i32>(ctl + <usize>off); }
export function ctlSetI32(off: i32, v: i32): void { store<i32>(ctl + <usize>off, v); }
export function ctlAddI32(off: i32, v: i32): void { store<i32>(ctl + <usize>off, load<i32>(ctl + <usize>off) + v); }
export function ctlAddF64(off: i32, v: f64): void { store<f64>(ctl + <usize>off, load<f64>(ctl + <usize>off) + v); }

/** Loop time (monotonic ms), written by the host once per tick. */
export function now(): f64 { return load<f64>(ctl + CTL_NOW); }
/** Wall-clock ms since the epoch, for Date headers only. */
export function wallNow(): f64 { return load<f64>(ctl + CTL_WALL); }
/** Absolute address of linear memory, for native iovecs. */
export function memBase(): u64 { return load<u64>(ctl + CTL_MEM_BASE); }

export function ctlInit(): void {
  store<i32>(ctl + CTL_VERSION, ABI_VERSION);
  let maxEvents = ctlI32(CFG_MAX_EVENTS);
  if (maxEvents <= 0) { maxEvents = 1024; ctlSetI32(CFG_MAX_EVENTS, maxEvents); }
  eventsCap = maxEvents;
  events = heap.alloc(<usize>(maxEvents * EVENT_SIZE + 16));
  // Room for every event to fan out, plus the deferred-mod flush.
  sqCap = maxEvents * SQ_FANOUT + 256;
  sq = heap.alloc(<usize>(sqCap * SQE_SIZE));
  cq = heap.alloc(<usize>(sqCap * CQE_SIZE));
  sqAlt = heap.alloc(<usize>(sqCap * SQE_SIZE));
  cqAlt = heap.alloc(<usize>(sqCap * CQE_SIZE));
  store<i32>(ctl + CTL_EVENTS, <i32>events);
  store<i32>(ctl + CTL_EVENTS_CAP, maxEvents);
  store<i32>(ctl + CTL_SQ, <i32>sq);
  store<i32>(ctl + CTL_SQ_CAP, sqCap);
  store<i32>(ctl + CTL_CQ, <i32>cq);
  store<i32>(ctl + CTL_SCRATCH, <i32>heap.alloc(SCRATCH_SIZE));
  store<i32>(ctl + CTL_CURRENT_FD, -1);
}

@inline export function sqRoom(): i32 { return sqCap - sqLen; }
/** Room left for scheduled work in this round (see SQ_FANOUT). */
@inline export function roundRoom(): i32 { return sqCap / SQ_FANOUT - sqLen; }
@inline export function sqReset(): void { sqLen = 0; }

/**
 * The host carried out SQ[0..n): make those the round to complete and start
 * a fresh SQ in the other pair. Entries past n (emitted by a JS call while
 * the round was being carried out) move to the fresh SQ.
 */
export function sqSwap(n: i32): void {
  doneSq = sq;
  doneCq = cq;
  sq = sqAlt;
  cq = cqAlt;
  sqAlt = doneSq;
  cqAlt = doneCq;
  const extra = sqLen - n;
  if (extra > 0) memory.copy(sq, doneSq + <usize>(n * SQE_SIZE), <usize>(extra * SQE_SIZE));
  sqLen = extra > 0 ? extra : 0;
  store<i32>(ctl + CTL_SQ, <i32>sq);
  store<i32>(ctl + CTL_CQ, <i32>cq);
}

/** Appends one syscall request. Schedulers check roundRoom() first. */
export function submit(op: i32, fd: i32, a0: i32, a1: i32, a2: i32, a3: i32): void {
  // Never overwrite what lies past the queue: a contained trap (the host's
  // recover()) is the worst that may happen.
  if (sqLen >= sqCap) abort("submission queue full");
  const e = sq + <usize>(sqLen * SQE_SIZE);
  store<i32>(e, op, SQE_OP);
  store<i32>(e, fd, SQE_FD);
  store<i32>(e, a0, SQE_A0);
  store<i32>(e, a1, SQE_A1);
  store<i32>(e, a2, SQE_A2);
  store<i32>(e, a3, SQE_A3);
  sqLen++;
}

// Accessors for the round being completed.
@inline export function sqeOp(i: i32): i32 { return load<i32>(doneSq + <usize>(i * SQE_SIZE), SQE_OP); }
@inline export function sqeFd(i: i32): i32 { return load<i32>(doneSq + <usize>(i * SQE_SIZE), SQE_FD); }
@inline export function sqeArg(i: i32, off: i32): i32 { return load<i32>(doneSq + <usize>(i * SQE_SIZE + off)); }
@inline export function cqeResult(i: i32): i32 { return load<i32>(doneCq + <usize>(i * CQE_SIZE)); }

/** Marks which fd the core is working on, so a trap can be pinned to it. */
@inline export function setCurrentFd(fd: i32): void { store<i32>(ctl + CTL_CURRENT_FD, fd); }
