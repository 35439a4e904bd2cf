// The HTTP server's file work as io_uring ops: the io_uring executor's
// asynchronous part (host/executor-uring.ts hands it OP_OPEN and OP_PREAD).
// Nothing here blocks the loop thread: each request becomes ring ops that
// complete in the kernel (inline, on io-wq, or by task work) and its
// completion goes back to the core in a LATER tick, through the executor's
// reap() (the executor contract, host/executor.ts, "Later").
//
//  OP_OPEN (off = 1: stat only), as files.ts's FileServer.open does it:
//    OPENAT2(root, path, files.ts's open_how: RESOLVE_BENEATH |
//      RESOLVE_NO_MAGICLINKS, O_RDONLY|O_NONBLOCK or O_PATH)  -> fd | -errno
//    STATX(fd, "", AT_EMPTY_PATH)          -> the FILE record (files.ts's
//      writeFileRecord: the same bytes as the libc path and the pool's)
//    with CFG_PRECOMPRESSED, for a regular X: OPENAT2(X.br, O_PATH) and
//      OPENAT2(X.gz, O_PATH) side by side, each found one STATX'ed
//      (regular?) then CLOSEd (hard-linked: the close runs even if the statx
//      failed)
//    CLOSE(fd) when the open only stat'ed, or found no regular file.
//    Each step needs the previous one's fd, so a step is submitted when the
//    previous one's CQE is seen (a small state machine per slot).
//  OP_PREAD: READ(fd, buf, len, off), submitted without waiting.
//
// Completions are told from the round's own by user_data: the low word of a
// core tag is an in-flight index (>= 0), ours has the sign bit set (ASYNC)
// with the slot number; the high word is the step. A slot (fixed arrays and
// one scratch buffer sized once: no allocation per request) lives from the
// request until its completion is handed to the core AND every CQE of its
// steps came back, so at most SLOTS * MAX_CQES_PER_SLOT of ours are ever in
// the CQ: the executor sizes the CQ for that plus a full SQ, so it cannot
// overflow (and IORING_FEAT_NODROP, flushCompletions, backs that up).
//
// Wake-up: an eventfd registered with the ring (the Reactor watches it, as
// the file pool's). The round's own completions would signal it too (one
// idle wake-up per round): signals are off (IORING_CQ_EVENTFD_DISABLED, a
// store) whenever no slot is in use, on from before the first op of a slot
// is submitted. reap() reads the eventfd BEFORE it looks at the ring: a
// completion posted after the read signals again (the order the file pool
// found the hard way).
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";
import { libc, check, addressOf, EFD_CLOEXEC, EFD_NONBLOCK, AT_EMPTY_PATH, STATX_BASIC_STATS, SysError } from "./libc.ts";
import { type Ring, IORING_OP, SQE_W, setU64, IOSQE_IO_HARDLINK, IORING_ENTER_GETEVENTS } from "./uring/ring.ts";
import {
  type FileServer, writeFileRecord, setFileFlags, statxIsRegular, sidecarPath, SIDECARS, SIDECAR_PATH_MAX,
  STATX_SIZE, OPEN_FILE, OPEN_STAT, OPEN_HOW_SIZE, writeOpenHow,
} from "./files.ts";

/** Marks our CQEs: the low word of user_data (a core tag's is an in-flight index, never negative). */
export const ASYNC = 0x80000000 | 0;
/** Requests in flight at most (more: the executor carries them out as before, without the ring's help). */
export const SLOTS = 128;
/** CQEs one slot can have outstanding at once (the sidecar step: two statx + two closes). */
export const MAX_CQES_PER_SLOT = 4;
const CANCEL_SLOT = SLOTS; // user_data slot of our ASYNC_CANCELs (their CQEs are dropped)

// Steps (user_data high word); a slot's steps in flight are the bits of `steps`.
const ST_OPEN = 0, ST_STAT = 1, ST_SIDE_OPEN = 2 /* +i */, ST_SIDE_STAT = 4 /* +i */, ST_SIDE_CLOSE = 6 /* +i */;
const ST_CLOSE = 8, ST_READ = 9, ST_DELAY = 10;
// Slot states
const FREE = 0, BUSY = 1, DONE = 2, DELIVERED = 3;
const K_OPEN = 1, K_PREAD = 2;
const EBUSY = 16;

// Scratch layout (one ArrayBuffer; addresses handed to the kernel): shared
// open_hows, an empty path, the test hook's timespec; then per slot three
// statx buffers (the file, sidecar 0, sidecar 1) and two sidecar paths.
const HOW_FILE = 0, HOW_STAT = OPEN_HOW_SIZE, EMPTY = 2 * OPEN_HOW_SIZE, TIMESPEC = EMPTY + 8, SHARED = TIMESPEC + 16;
const PATH_ROOM = (SIDECAR_PATH_MAX + 7) & ~7;
const SLOT_BYTES = 3 * STATX_SIZE + 2 * PATH_ROOM;
const stxAt = (s: number, which: number): number => SHARED + s * SLOT_BYTES + which * STATX_SIZE;
const sidePathAt = (s: number, i: number): number => SHARED + s * SLOT_BYTES + 3 * STATX_SIZE + i * PATH_ROOM;

/** Closed while ops were still running in the kernel (a hung open): kept reachable, as they may still write here. */
const lingering = new Set<unknown>();

export interface UringFilesOptions {
  openOps: boolean;
  preadOps: boolean;
  /**
   * Takes every CQE waiting in the ring: the executor's drain (round CQEs to
   * the core's CQ, ours to onCqe), so a drain from inside a round (the SQ
   * full and the kernel busy) loses none of the round's. Default: ours only.
   */
  drain?: () => unknown;
}

export class UringFiles {
  readonly eventfd: number;
  /** OP_OPEN / OP_PREAD are taken (the probe has the ops they need). */
  readonly opens: boolean;
  readonly preads: boolean;
  private readonly scratch = new ArrayBuffer(SHARED + SLOTS * SLOT_BYTES);
  private readonly sb = new DataView(this.scratch);
  private readonly su8 = new Uint8Array(this.scratch);
  private readonly sAddr: number;
  private readonly wake = Buffer.alloc(8);
  private readonly one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
  // per slot
  private readonly state = new Uint8Array(SLOTS);
  private readonly kind = new Uint8Array(SLOTS);
  private readonly tagLo = new Int32Array(SLOTS);
  private readonly tagHi = new Int32Array(SLOTS);
  private readonly path = new Int32Array(SLOTS);
  private readonly pathLen = new Int32Array(SLOTS);
  private readonly record = new Int32Array(SLOTS);
  private readonly statOnly = new Uint8Array(SLOTS);
  private readonly fd = new Int32Array(SLOTS).fill(-1);   // an fd a step opened and nobody took yet
  private readonly fileKind = new Int32Array(SLOTS);
  private readonly flags = new Int32Array(SLOTS);
  private readonly sides = new Int32Array(SLOTS);         // sidecar checks still running
  private readonly out = new Int32Array(SLOTS);           // CQEs outstanding
  private readonly steps = new Int32Array(SLOTS);         // bit per step in flight
  private readonly result = new Int32Array(SLOTS);
  private readonly free = new Int32Array(SLOTS);
  private freeTop = 0;
  private readonly doneQ = new Int32Array(SLOTS);         // finished, for reap(): a FIFO
  private doneHead = 0;
  private doneLen = 0;
  /** Slots in use (signals are on while > 0). */
  active = 0;
  private base: number;
  private woken = false;
  private closed = false;
  private readonly delayPath: string;
  private readonly delayMs: number;
  private readonly drainAll: () => unknown;

  constructor(private readonly core: Core, private readonly ring: Ring, private readonly files: FileServer, opts: UringFilesOptions) {
    this.opens = opts.openOps;
    this.preads = opts.preadOps;
    this.drainAll = opts.drain ?? (() => this.drain());
    this.sAddr = addressOf(this.scratch);
    this.base = core.base;
    writeOpenHow(this.sb, HOW_FILE, OPEN_FILE);
    writeOpenHow(this.sb, HOW_STAT, OPEN_STAT);
    for (let s = SLOTS - 1; s >= 0; s--) this.free[this.freeTop++] = s;
    // Test hook (WASM_REACTOR_IO_URING_OPEN_DELAY="substring:ms"): the open of
    // a path containing substring waits ms in the kernel first (a TIMEOUT
    // hard-linked before its OPENAT2), standing in for a slow file system.
    const hook = process.env.WASM_REACTOR_IO_URING_OPEN_DELAY ?? "";
    const colon = hook.lastIndexOf(":");
    this.delayPath = colon > 0 ? hook.slice(0, colon) : "";
    this.delayMs = colon > 0 ? Number(hook.slice(colon + 1)) || 0 : 0;
    this.sb.setBigInt64(TIMESPEC, BigInt(Math.floor(this.delayMs / 1000)), true);
    this.sb.setBigInt64(TIMESPEC + 8, BigInt((this.delayMs % 1000) * 1e6), true);
    this.eventfd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    try {
      ring.registerEventfd(this.eventfd); // throws where the kernel cannot (the executor then does without us)
    } catch (e) {
      libc.close(this.eventfd);
      throw e;
    }
    ring.setEventfdSignals(false);
  }

  /**
   * Takes core request SQ entry q (OP_OPEN or OP_PREAD) as ring ops -> true;
   * its completion comes through reap(). False: not taken (another op, no
   * free slot): the caller carries it out itself.
   */
  start(op: number, i32: Int32Array, q: number): boolean {
    if (op === abi.OP_OPEN ? !this.opens : op === abi.OP_PREAD ? !this.preads : true) return false;
    if (this.freeTop === 0 || this.closed) return false;
    // Linear memory may have moved (V8 on 64-bit grows it in place; elsewhere
    // it may not): with nothing in flight, take the new base; with ops in
    // flight the kernel may already have written to the old one: fail loudly.
    const base = this.core.base;
    if (base !== this.base) { if (this.active > 0) this.moved(); this.base = base; }
    const s = this.free[--this.freeTop];
    if (this.active++ === 0) this.ring.setEventfdSignals(true); // before the submit: its completion must wake us
    this.state[s] = BUSY;
    this.tagLo[s] = i32[q + (abi.SQE_USER_DATA >> 2)];
    this.tagHi[s] = i32[q + (abi.SQE_USER_DATA >> 2) + 1];
    this.out[s] = 0; this.steps[s] = 0; this.flags[s] = 0; this.sides[s] = 0; this.fd[s] = -1;
    const addr = i32[q + (abi.SQE_ADDR >> 2)], len = i32[q + (abi.SQE_LEN >> 2)];
    if (op === abi.OP_PREAD) {
      this.kind[s] = K_PREAD;
      const w = this.sqe(IORING_OP.READ, i32[q + (abi.SQE_FD >> 2)], s, ST_READ);
      const sq = this.ring.sqes;
      sq[w + SQE_W.OFF] = i32[q + (abi.SQE_OFF >> 2)]; sq[w + SQE_W.OFF + 1] = i32[q + (abi.SQE_OFF >> 2) + 1];
      setU64(sq, w + SQE_W.ADDR, base + addr);
      sq[w + SQE_W.LEN] = len;
      return true;
    }
    this.kind[s] = K_OPEN;
    this.path[s] = addr; this.pathLen[s] = len;
    this.record[s] = i32[q + (abi.SQE_OP_FLAGS >> 2)];
    const statOnly = this.statOnly[s] = i32[q + (abi.SQE_OFF >> 2)] === 1 ? 1 : 0;
    if (this.delayMs > 0 && this.pathHas(addr, len, this.delayPath)) {
      this.room(2); // a link must not be cut by a submit between its two SQEs
      const w = this.sqe(IORING_OP.TIMEOUT, -1, s, ST_DELAY);
      const sq = this.ring.sqes;
      sq[w] |= IOSQE_IO_HARDLINK << 8;
      setU64(sq, w + SQE_W.ADDR, this.sAddr + TIMESPEC);
      sq[w + SQE_W.LEN] = 1;
    }
    this.openat2(s, base + addr, statOnly ? HOW_STAT : HOW_FILE, ST_OPEN);
    return true;
  }

  // ---- the steps -----------------------------------------------------------

  /** One of our CQEs (user_data lo has ASYNC): advances its slot. */
  onCqe(lo: number, step: number, res: number): void {
    const s = lo & 0xffff;
    if (s === CANCEL_SLOT) return;
    this.out[s]--;
    this.steps[s] &= ~(1 << step);
    if (this.closed) { this.closing(s, step, res); return; }
    switch (step) {
      case ST_READ: this.finish(s, res); break;
      case ST_OPEN:
        if (res < 0) { this.finish(s, res); break; }
        this.fd[s] = res;
        this.statx(s, res, 0, ST_STAT, 0);
        break;
      case ST_STAT: {
        if (res < 0) { this.closeFd(s); this.finish(s, res); break; }
        const kind = this.fileKind[s] = writeFileRecord(this.core, this.sb, stxAt(s, 0), this.path[s], this.pathLen[s], this.record[s], this.statOnly[s] === 1);
        if (kind === abi.FILE_REGULAR && this.files.precompressed && this.startSidecars(s)) break;
        this.opened(s);
        break;
      }
      case ST_SIDE_OPEN: case ST_SIDE_OPEN + 1: {
        const i = step - ST_SIDE_OPEN;
        if (res < 0) { this.sideDone(s); break; }
        // One link, never cut by a submit: a CLOSE that ran before its STATX
        // could let the statx meet another file's fd of the same number.
        this.room(2);
        this.statx(s, res, 1 + i, ST_SIDE_STAT + i, IOSQE_IO_HARDLINK);
        this.sqe(IORING_OP.CLOSE, res, s, ST_SIDE_CLOSE + i);
        break;
      }
      case ST_SIDE_STAT: case ST_SIDE_STAT + 1: {
        const i = step - ST_SIDE_STAT;
        if (res >= 0 && statxIsRegular(this.sb, stxAt(s, 1 + i))) this.flags[s] |= SIDECARS[i][1];
        this.sideDone(s);
        break;
      }
      default: break; // ST_CLOSE, ST_SIDE_CLOSE, ST_DELAY: nothing to do but count
    }
    if (this.out[s] === 0 && this.state[s] === DELIVERED) this.release(s);
  }

  /** X.br and X.gz beside regular file s, looked for side by side -> false if it has none to look for. */
  private startSidecars(s: number): boolean {
    const at0 = sidePathAt(s, 0), at1 = sidePathAt(s, 1);
    const core = this.core;
    if (!sidecarPath(core, this.path[s], this.pathLen[s], SIDECARS[0][0], this.su8, at0)) return false;
    sidecarPath(core, this.path[s], this.pathLen[s], SIDECARS[1][0], this.su8, at1);
    this.sides[s] = 2;
    this.openat2(s, this.sAddr + at0, HOW_STAT, ST_SIDE_OPEN);
    this.openat2(s, this.sAddr + at1, HOW_STAT, ST_SIDE_OPEN + 1);
    return true;
  }

  private sideDone(s: number): void { if (--this.sides[s] === 0) this.opened(s); }

  /** The record is complete: FILE_FLAGS, then keep the fd (a regular file opened to serve) or close it. */
  private opened(s: number): void {
    setFileFlags(this.core, this.record[s], this.flags[s]);
    if (this.statOnly[s] === 1 || this.fileKind[s] !== abi.FILE_REGULAR) { this.closeFd(s); this.finish(s, 0); return; }
    this.finish(s, this.fd[s]); // the fd stays ours (fd[s]) until the core has it (reap)
  }

  private closeFd(s: number): void {
    this.sqe(IORING_OP.CLOSE, this.fd[s], s, ST_CLOSE);
    this.fd[s] = -1;
  }

  private finish(s: number, res: number): void {
    this.result[s] = res;
    this.state[s] = DONE;
    this.doneQ[(this.doneHead + this.doneLen++) % SLOTS] = s;
  }

  private release(s: number): void {
    this.state[s] = FREE;
    this.free[this.freeTop++] = s;
    if (--this.active === 0 && !this.closed) this.ring.setEventfdSignals(false);
  }

  // ---- SQEs ------------------------------------------------------------------

  /** At least n free SQEs (submitting what is queued first if need be). */
  private room(n: number): void { while (this.ring.space < n) this.enter(0); }

  /** The next SQE (zeroed; entering the kernel first if the SQ is full), tagged with slot s and step. */
  private sqe(op: number, fd: number, s: number, step: number): number {
    let w = this.ring.sqeSlot();
    while (w < 0) { this.enter(0); w = this.ring.sqeSlot(); }
    const sq = this.ring.sqes;
    sq[w] = op;
    sq[w + SQE_W.FD] = fd;
    sq[w + SQE_W.USER_DATA] = ASYNC | s;
    sq[w + SQE_W.USER_DATA + 1] = step;
    if (s < SLOTS) { this.out[s]++; this.steps[s] |= 1 << step; }
    return w;
  }

  /** OPENAT2(root, the path at absolute address pathAbs, the open_how at scratch offset how). */
  private openat2(s: number, pathAbs: number, how: number, step: number): void {
    const w = this.sqe(IORING_OP.OPENAT2, this.files.rootFd, s, step), sq = this.ring.sqes;
    setU64(sq, w + SQE_W.ADDR, pathAbs);
    sq[w + SQE_W.LEN] = OPEN_HOW_SIZE;
    setU64(sq, w + SQE_W.OFF, this.sAddr + how); // addr2: the open_how
  }

  /** STATX(fd, "", AT_EMPTY_PATH) into statx buffer `which` of slot s. */
  private statx(s: number, fd: number, which: number, step: number, sqeFlags: number): void {
    const w = this.sqe(IORING_OP.STATX, fd, s, step), sq = this.ring.sqes;
    sq[w] |= sqeFlags << 8;
    setU64(sq, w + SQE_W.ADDR, this.sAddr + EMPTY);
    sq[w + SQE_W.LEN] = STATX_BASIC_STATS;
    setU64(sq, w + SQE_W.OFF, this.sAddr + stxAt(s, which)); // addr2: the statx buffer
    sq[w + SQE_W.OP_FLAGS] = AT_EMPTY_PATH;
  }

  /** Submits what is queued (flags: GETEVENTS to have the kernel post what it holds back). */
  private enter(flags: number): void {
    for (;;) {
      const r = this.ring.submit(0, flags);
      if (r >= 0) return;
      if (r === -abi.EINTR) continue;
      if (r === -abi.EAGAIN || r === -EBUSY) { this.drainAll(); continue; } // the kernel wants its CQ reaped first
      throw new SysError("io_uring_enter", -r);
    }
  }

  // ---- completion --------------------------------------------------------------

  /** The CQEs waiting in the ring, ours handed to onCqe -> how many were taken (a stand-alone ring: no others). */
  private drain(): number {
    const ring = this.ring, cqes = ring.cqes;
    let n = 0;
    // Consumed one by one before each is handled: a step may enter (SQ full) and drain from inside.
    for (; ring.cqReady() > 0; n++) {
      const w = ring.cqeWord(ring.cqHead());
      const lo = cqes[w], hi = cqes[w + 1], res = cqes[w + 2];
      ring.cqAdvance(1);
      if (lo < 0) this.onCqe(lo, hi, res);
    }
    return n;
  }

  /** After a submit: send the steps its completions made, and wake the loop if something is done already. */
  afterRound(): void {
    if (this.ring.queued > 0) this.enter(0);
    if (this.doneLen > 0) libc.writeBuf(this.eventfd, this.one, 8);
  }

  /**
   * The completion phase: at most `max` finished requests as CQEs at `cq`
   * (the core's tags, their results); returns how many.
   */
  reap(cq: number, max: number): number {
    if (this.active === 0 && !this.woken) return 0;
    this.woken = false;
    // Clear the wake-up count before looking (a completion posted after this
    // read signals again; cleared after the look, it would be lost).
    libc.readBuf(this.eventfd, this.wake, 8);
    // Submit the next steps and post what the kernel holds (DEFER_TASKRUN:
    // only inside enter(GETEVENTS)) until a look finds nothing new.
    // A completion after the last look signals the eventfd: the next tick takes it.
    do { this.enter(IORING_ENTER_GETEVENTS); this.drainAll(); } while (this.ring.queued > 0);
    if (this.doneLen === 0) return 0;
    const core = this.core;
    core.refresh();
    if (core.base !== this.base) { if (this.active > 0) this.moved(); this.base = core.base; }
    const i32 = core.i32;
    let k = 0;
    for (let c = cq >> 2; k < max && this.doneLen > 0; k++, c += abi.CQE_SIZE >> 2) {
      const s = this.doneQ[this.doneHead];
      this.doneHead = (this.doneHead + 1) % SLOTS;
      this.doneLen--;
      i32[c] = this.tagLo[s];
      i32[c + 1] = this.tagHi[s];
      i32[c + 2] = this.result[s];
      i32[c + 3] = 0;
      this.state[s] = DELIVERED;
      if (this.kind[s] === K_OPEN) this.fd[s] = -1; // the core's now
      if (this.out[s] === 0) this.release(s);
    }
    // Stopped by `max` with more done: wake the next tick for them.
    if (this.doneLen > 0) libc.writeBuf(this.eventfd, this.one, 8);
    return k;
  }

  /** Makes the next tick's wait return at once (the executor's reap was cut short by `max`). */
  wakeNext(): void { libc.writeBuf(this.eventfd, this.one, 8); }

  /** The event backend reported the eventfd readable: the next reap looks even with nothing in flight. */
  woke(): void { this.woken = true; }

  private moved(): never { throw new Error("io_uring file ops: linear memory moved while file work was in flight"); }

  private pathHas(addr: number, len: number, what: string): boolean {
    return Buffer.from(this.core.u8.subarray(addr, addr + len)).toString("latin1").includes(what);
  }

  // ---- close ---------------------------------------------------------------------

  /**
   * Before the ring closes (the Loop's close()): cancels what is in flight
   * and waits (2 s at most) for every CQE, so the kernel never writes into
   * memory that is freed afterwards (the core's, this scratch buffer). An fd
   * a cancelled or abandoned open produced is closed. Ops still running
   * after that (an open hung in a dead NFS mount) keep this object and the
   * core reachable for good: the kernel's ring teardown waits for them.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.active > 0) {
      for (let s = 0; s < SLOTS; s++) {
        for (let bits = this.steps[s], step = 0; bits !== 0; step++, bits >>>= 1) {
          if ((bits & 1) === 0 || step === ST_CLOSE || step === ST_SIDE_CLOSE || step === ST_SIDE_CLOSE + 1) continue;
          const w = this.sqe(IORING_OP.ASYNC_CANCEL, -1, CANCEL_SLOT, 0);
          this.ring.sqes[w + SQE_W.ADDR] = ASYNC | s; // addr: the user_data to cancel
          this.ring.sqes[w + SQE_W.ADDR + 1] = step;
        }
      }
      const pause = new Int32Array(new SharedArrayBuffer(4));
      const deadline = Date.now() + 2000;
      for (;;) {
        this.enter(IORING_ENTER_GETEVENTS);
        this.drainAll();
        if (!this.out.some((n) => n > 0) || Date.now() > deadline) break;
        Atomics.wait(pause, 0, 0, 1);
      }
      for (let s = 0; s < SLOTS; s++) {
        if (this.state[s] !== FREE && this.state[s] !== DELIVERED && this.fd[s] >= 0) { libc.close(this.fd[s]); this.fd[s] = -1; }
      }
      if (this.out.some((n) => n > 0)) lingering.add({ files: this, core: this.core });
    }
    try { this.ring.unregisterEventfd(); } catch { /* the ring closes anyway */ }
    libc.close(this.eventfd);
  }

  /** A CQE after close(): no more steps; an fd an open produced is closed. */
  private closing(s: number, step: number, res: number): void {
    if (step === ST_OPEN && res >= 0) this.fd[s] = res;
    else if ((step === ST_SIDE_OPEN || step === ST_SIDE_OPEN + 1) && res >= 0) libc.close(res);
  }
}
