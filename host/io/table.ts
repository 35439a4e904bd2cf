// The request table: every in-flight io request of one executor, in one
// SharedArrayBuffer, so that the pool's worker threads (and the kernel, by
// address) read the same records the front wrote. Fixed records, counted
// once at creation: nothing is allocated per request here.
//
// Layout (byte offsets; `cap` slots; all Int32 words unless noted):
//   0                  header, HEADER_WORDS words (below)
//   SQ_RING            ringCap words: slot numbers submitted to the pool (a ring)
//   CQ_RING            ringCap words: slot + 1 of each completion (0: not yet published)
//                      (ringCap: cap rounded up to a power of two, so that a
//                      position is `counter & ringMask` and stays consecutive
//                      when the Int32 counters wrap; `% cap` of a non-power-of-two
//                      jumped at 2^32 and overwrote entries still in the ring)
//   STATE              cap words: ST_* of each slot
//   OWNER              cap words: the worker running the slot
//   SQES               cap x 64 bytes: the requests (abi.ts SQE layout, ops.ts fields)
//   CQES               cap x 16 bytes: their completions (abi.ts CQE layout)
//   ARGS               cap x ARG_BYTES: each slot's argument area (statx buffer,
//                      sockaddr + length, open_how, sendfile's offset)
//   WORKERS            MAX_WORKERS x 4 words: each worker's wake eventfd (+0),
//                      W_POLLING (+1): 1 while it waits in poll(2) on parked sockets
import { addressOf } from "../libc.ts";
import * as abi from "../../assembly/abi.ts";

// header words
export const H_SQ_TAIL = 0;   // written by the front (one producer)
export const H_SQ_HEAD = 1;   // advanced by the workers (CAS)
export const H_CQ_TAIL = 2;   // reserved by the workers (fetch-add)
export const H_CQ_HEAD = 3;   // the front's
export const H_ARMED = 4;     // 1: the front waits on the eventfd; the first completion writes it
export const H_STOP = 5;      // 1: workers exit
export const H_IDLE = 6;      // workers waiting for a request
export const H_CAP = 7;
export const H_EVENTFD = 8;   // the completion eventfd
export const H_BELL = 9;      // bumped by every submission and by stop: what an idle worker waits on
export const H_EXITED = 10;   // workers that have left their loop
export const HEADER_WORDS = 16;

// slot states
export const ST_FREE = 0;
export const ST_QUEUED = 1;   // submitted, not yet taken by a worker
export const ST_RUNNING = 2;  // a worker (or the kernel) has it
export const ST_CANCELLED = 3; // the front cancelled it: a worker skips or interrupts it

export const ARG_BYTES = 320; // statx (256) + 64; sockaddr_in6 (28) + socklen; open_how (24); loff_t
export const MAX_WORKERS = 64;
/** Word of a worker's record (workerWord(i) + this): 1 while it polls its parked sockets (the front wakes it through its eventfd). */
export const W_POLLING = 1;

export class RequestTable {
  readonly sab: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly cap: number;
  /** Ring positions: counter & ringMask (ringCap = cap rounded up to a power of two). */
  readonly ringCap: number;
  readonly ringMask: number;
  /** Absolute address of the table's first byte (koffi.address; a SharedArrayBuffer never moves). */
  readonly base: number;
  readonly sqRing: number; readonly cqRing: number; readonly state: number; readonly owner: number;
  readonly sqes: number; readonly cqes: number; readonly args: number; readonly workers: number;

  constructor(cap: number, sab?: SharedArrayBuffer) {
    this.cap = cap;
    this.ringCap = 1 << Math.ceil(Math.log2(cap));
    this.ringMask = this.ringCap - 1;
    let at = HEADER_WORDS * 4;
    const take = (bytes: number) => { const r = at; at += bytes; return r; };
    this.sqRing = take(this.ringCap * 4);
    this.cqRing = take(this.ringCap * 4);
    this.state = take(cap * 4);
    this.owner = take(cap * 4);
    this.sqes = take(cap * abi.SQE_SIZE);
    this.cqes = take(cap * abi.CQE_SIZE);
    this.args = take(cap * ARG_BYTES);
    this.workers = take(MAX_WORKERS * 16);
    this.sab = sab ?? new SharedArrayBuffer(at);
    this.i32 = new Int32Array(this.sab);
    this.u8 = new Uint8Array(this.sab);
    if (!sab) this.i32[H_CAP] = cap;
    // koffi.address takes a typed array over a SharedArrayBuffer (not the SharedArrayBuffer itself).
    this.base = addressOf(this.u8 as unknown as ArrayBuffer);
  }

  /** Word index of slot's SQE. */
  sqe(slot: number): number { return (this.sqes >> 2) + slot * (abi.SQE_SIZE >> 2); }
  /** Word index of slot's CQE. */
  cqe(slot: number): number { return (this.cqes >> 2) + slot * (abi.CQE_SIZE >> 2); }
  /** Byte offset of slot's argument area (absolute address: base + this). */
  arg(slot: number): number { return this.args + slot * ARG_BYTES; }
  stateWord(slot: number): number { return (this.state >> 2) + slot; }
  ownerWord(slot: number): number { return (this.owner >> 2) + slot; }
  workerWord(index: number): number { return (this.workers >> 2) + index * 4; }
}
