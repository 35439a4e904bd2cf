// The control block and the submission queue: the core's only way to ask for
// anything. See assembly/abi.ts for the layout; this file is its core side.
import {
  CTL_SIZE, CTL_VERSION, ABI_VERSION, CTL_EVENTS, CTL_EVENTS_CAP, EVENT_SIZE,
  CTL_SQ, CTL_SQ_CAP, CTL_CQ, CTL_SCRATCH, SCRATCH_SIZE, CTL_CURRENT_FD, CTL_NOW, CTL_WALL,
  CFG_MAX_EVENTS, CFG_MAX_FDS, SQE_SIZE, CQE_SIZE, SQE_OPCODE, SQE_FD, SQE_OFF, SQE_ADDR, SQE_LEN, SQE_OP_FLAGS, SQE_USER_DATA,
  SQE_SPLICE_FD_IN, CQE_USER_DATA, CQE_RES, CTL_MEM_BASE, CFG_TEXT_SIZE, OP_PREAD, OP_ACCEPT,
  OP_SENDFILE, OP_SHUTDOWN, OP_CTL, SA_LEN, ACCEPT_FLAGS, OP_SOCKET, OP_SPLICE,
} from "../abi";
import { inflightInit, inflightTake, inflightGen } from "./inflight";

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

/** Loop time (monotonic ms), written by the host before the timers, after the poll and after each round's syscalls. */
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
  // SQE fields the core never sets (buf_index, personality, addr3, pad) stay 0.
  memory.fill(sq, 0, <usize>(sqCap * SQE_SIZE));
  memory.fill(sqAlt, 0, <usize>(sqCap * SQE_SIZE));
  store<i32>(ctl + CTL_EVENTS, <i32>events);
  store<i32>(ctl + CTL_EVENTS_CAP, maxEvents);
  store<i32>(ctl + CTL_SQ, <i32>sq);
  store<i32>(ctl + CTL_SQ_CAP, sqCap);
  store<i32>(ctl + CTL_CQ, <i32>cq);
  store<i32>(ctl + CTL_SCRATCH, <i32>heap.alloc(SCRATCH_SIZE));
  store<i32>(ctl + CTL_CURRENT_FD, -1);
  // Requests in flight: this round's and the next one's (both queues full),
  // plus one per connection whose I/O an executor keeps in flight across
  // ticks (io_uring, a thread pool: at most one request per connection).
  // 32 bytes each, touched only when used.
  const fds = ctlI32(CFG_MAX_FDS) > 0 ? ctlI32(CFG_MAX_FDS) : 1024;
  inflightInit(sqCap * 2 + 16 + fds);
}

// The size of the round the core last handed out (a phase call's, or
// recover()'s, return value): what complete() swaps out, however many
// completions come back with it.
let roundLen: i32 = 0;
/** Hands the queued requests out as the round: returns their number. */
export function handOut(): i32 { roundLen = sqLen; return sqLen; }
/** The host carried the round out: swap it out of the SQ. */
export function roundDone(): void { sqSwap(roundLen); roundLen = 0; }

@inline export function sqRoom(): i32 { return sqCap - sqLen; }
/** Room left for scheduled work in this round (see SQ_FANOUT). */
@inline export function roundRoom(): i32 { return sqCap / SQ_FANOUT - sqLen; }
@inline export function sqReset(): void { sqLen = 0; }

/**
 * The host carried out SQ[0..n) (n: what the core last returned, whatever
 * the number of completions handed back): start a fresh SQ in the other
 * pair; the completions are read from the CQ the host just wrote. Entries
 * past n (emitted by a JS call while the round was being carried out) move
 * to the fresh SQ.
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

/**
 * Appends one request, as an io_uring-shaped SQE (abi.ts gives each op's
 * fields), tagged with a fresh in-flight entry that keeps (op, fd, a0..a3)
 * for its completion. Schedulers check roundRoom() first.
 */
export function submit(op: i32, fd: i32, a0: i32, a1: i32, a2: i32, a3: i32): void {
  // Never overwrite what lies past the queue: a contained trap (the host's
  // recover()) is the worst that may happen.
  if (sqLen >= sqCap) abort("submission queue full");
  const tag = inflightTake(op, fd, a0, a1, a2, a3);
  const e = sq + <usize>(sqLen * SQE_SIZE);
  // The general rule (WRITE, READ, SEND, WRITEV, CLOSE, host services):
  // a0 -> addr, a1 -> len, a2 -> op_flags, a3 -> off; io_uring's own meaning
  // of the fields decides for the others.
  let off: i64 = <i64>a3, addr: i32 = a0, len: i32 = a1, flags: i32 = a2, spliceIn: i32 = 0, sqeFd = fd;
  if (op == OP_PREAD) { off = <i64>a2; flags = 0; }
  else if (op == OP_ACCEPT) { off = a0 != 0 ? <i64>(a0 + SA_LEN) : 0; flags = ACCEPT_FLAGS; len = 0; }
  else if (op == OP_SENDFILE) { spliceIn = a0; addr = a1; len = a2; flags = 0; off = 0; }
  else if (op == OP_SHUTDOWN) { len = a0; addr = 0; }
  else if (op == OP_SPLICE) { sqeFd = a0; spliceIn = a3; addr = 0; off = 0; } // fd_out, len, SPLICE_*, fd_in; fd: the owner
  else if (op == OP_SOCKET) { sqeFd = a0; off = <i64>a1; len = 0; addr = 0; } // domain, type, SOCKET_*; fd: the owner
  else if (op == OP_CTL) { len = a0; flags = a1; off = <i64><u32>a2; addr = 0; } // INTEREST_*, EV_*, generation
  store<u32>(e, <u32>op & 0xff, SQE_OPCODE); // flags, ioprio: 0
  store<i32>(e, sqeFd, SQE_FD);
  store<i64>(e, off, SQE_OFF);
  store<i64>(e, <i64><u32>addr, SQE_ADDR);
  store<i32>(e, len, SQE_LEN);
  store<i32>(e, flags, SQE_OP_FLAGS);
  store<i32>(e, tag, SQE_USER_DATA);
  store<i32>(e, inflightGen(tag), SQE_USER_DATA + 4);
  store<i32>(e, spliceIn, SQE_SPLICE_FD_IN);
  // buf_index, personality, addr3 and the pad are never written: the queues
  // are zeroed once at init (ctlInit), and sqSwap copies whole records.
  sqLen++;
}

// The completions of the round being completed: tag and result.
@inline export function cqeTag(i: i32): i32 { return load<i32>(doneCq + <usize>(i * CQE_SIZE), CQE_USER_DATA); }
@inline export function cqeGen(i: i32): i32 { return load<i32>(doneCq + <usize>(i * CQE_SIZE), CQE_USER_DATA + 4); }
@inline export function cqeResult(i: i32): i32 { return load<i32>(doneCq + <usize>(i * CQE_SIZE), CQE_RES); }

/** Marks which fd the core is working on, so a trap can be pinned to it. */
@inline export function setCurrentFd(fd: i32): void { store<i32>(ctl + CTL_CURRENT_FD, fd); }
