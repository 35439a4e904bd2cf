// The io_uring executor: carries a round of the core's kernel requests out
// as ONE io_uring_enter (host/uring/ring.ts), where the libc executor makes
// one koffi call + syscall each. It keeps the executor contract
// (host/executor.ts) exactly:
//
//  - Readiness semantics stay: the core's sockets are O_NONBLOCK and it
//    expects -EAGAIN, never a parked request. io_uring would park a socket
//    op that cannot proceed (arm poll and complete it later), so every
//    socket op is marked non-blocking: MSG_DONTWAIT (RECV, SEND), RWF_NOWAIT
//    (WRITE, WRITEV), IORING_ACCEPT_DONTWAIT (ACCEPT; kernels without it
//    accept through libc). Each then completes inside the enter that
//    submitted it.
//  - Order: the requests of a round are carried out in SQ order. io_uring
//    issues a batch in order, inline; what it punts (a PREAD of a file not
//    in the page cache goes to io-wq) completes later, out of order. So a
//    batch is cut (flushed: enter, wait for all of it) before a request on
//    an fd already in the batch, after PREADs (nothing that could read
//    their buffers goes with them), before any OP_CALL or OP_STOP (JS may do
//    I/O) and before a synchronous request on a batched fd.
//  - What io_uring lacks or does badly runs through libc, in order, like the
//    libc executor (shared code: libcRequest): SENDFILE (no io_uring op;
//    splice through a pipe would be two ops and a pipe per connection),
//    SHUTDOWN (io_uring always punts it to io-wq: a thread hop for a
//    microsecond syscall), and any op the kernel's probe lacks. OP_CTL and
//    the host services go to the backend and the Services (hostRequest).
//  - Completions: every SQE yields one CQE, copied into the core's CQ with
//    the request's tag as it travelled (user_data), in completion order.
//  - The HTTP server's file work (OP_OPEN, OP_PREAD) is NOT waited for: it
//    goes to host/uring-files.ts as ring ops of its own (openat2 + statx +
//    the sidecar checks, read) that complete in a later tick, through
//    reap() and the ring's eventfd. Their CQEs carry a marker (ASYNC in the
//    low word of user_data) and a flush neither copies nor counts them.
//    OP_LIST (no getdents op in io_uring) goes to the file pool if there is
//    one, else runs here, synchronously. Kernels without OPENAT2/STATX (or
//    READ) in the probe, or without eventfd registration: as before (the
//    pool with --file-threads, else synchronous; a PREAD then goes through
//    the ring and its flush waits for it).
//
// Nothing is allocated per request: the batch bookkeeping is typed arrays
// sized once.
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";
import type { Executor, InterestBackend, Services } from "./executor.ts";
import { libcRequest, hostRequest, reportEdge, toFilePool } from "./executor-libc.ts";
import type { FilePool } from "./filepool.ts";
import type { FileServer } from "./files.ts";
import { UringFiles, SLOTS as FILE_SLOTS, MAX_CQES_PER_SLOT } from "./uring-files.ts";
import { SysError, libc, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC } from "./libc.ts";
import {
  Ring, IORING_OP, SQE_W, SQE_WORDS, setU64, MSG_DONTWAIT, RWF_NOWAIT, IORING_ACCEPT_DONTWAIT,
} from "./uring/ring.ts";

const Q_WORDS = abi.SQE_SIZE >> 2, C_WORDS = abi.CQE_SIZE >> 2;
const W_FD = abi.SQE_FD >> 2, W_OFF = abi.SQE_OFF >> 2, W_ADDR = abi.SQE_ADDR >> 2, W_LEN = abi.SQE_LEN >> 2;
const W_FLAGS = abi.SQE_OP_FLAGS >> 2, W_TAG = abi.SQE_USER_DATA >> 2, W_SPLICE = abi.SQE_SPLICE_FD_IN >> 2;
const C_RES = abi.CQE_RES >> 2;

// How each core op is carried out.
const RING = 1; // 0: synchronous (libc, the backend, the services)
const EBUSY = 16;

export interface UringExecutorOptions {
  /** SQ entries of the ring (default: the core's SQ capacity, rounded up, at most 4096). */
  entries?: number;
  /**
   * The file pool (host/filepool.ts): OP_LIST goes to it, and OP_OPEN and
   * OP_PREAD when the ring cannot take them; completing through reap().
   */
  pool?: FilePool | null;
  /** The file server: OP_OPEN and OP_PREAD become ring ops beneath its root (host/uring-files.ts) where the kernel can. */
  files?: FileServer | null;
}

export class UringExecutor implements Executor {
  readonly ring: Ring;
  private readonly route = new Uint8Array(256);
  private readonly acceptPrio: number;
  private readonly wouldBlock: ((fd: number, bits: number) => void) | null;
  // The batch: SQEs prepared in the ring for this round and not yet flushed.
  private batch = 0;
  private afterPread = false;            // the batch holds PREADs: cut before anything else
  private epoch = 1;                     // fdMark[fd] === epoch: fd has a request in the batch
  private fdMark = new Int32Array(1024);
  private readonly bQ: Int32Array;       // per batch entry: its word in the core's SQ
  private readonly bW: Int32Array;       //   its word in the ring's SQE array
  // The round in progress (set by submit).
  private i32!: Int32Array;
  private base = 0;
  private cqW = 0;                       // next completion's word in the core's CQ

  constructor(private readonly core: Core, private readonly services: Services, private readonly backend: InterestBackend, opts: UringExecutorOptions = {}) {
    const sqCap = core.ctlI32(abi.CTL_SQ_CAP);
    const entries = opts.entries ?? Math.min(4096, 1 << Math.ceil(Math.log2(Math.max(8, sqCap))));
    // The CQ holds a full SQ's completions plus every file op's (each slot
    // has at most MAX_CQES_PER_SLOT in flight): it cannot overflow.
    const cqEntries = opts.files ? Math.max(2 * entries, 1 << Math.ceil(Math.log2(entries + FILE_SLOTS * MAX_CQES_PER_SLOT))) : undefined;
    this.ring = new Ring({ entries, cqEntries });
    try {
      const n = this.ring.sqEntries;
      this.bQ = new Int32Array(n);
      this.bW = new Int32Array(n);
      const r = this.route, ring = this.ring;
      for (const [op, uop] of [
        [abi.OP_READ, IORING_OP.RECV], [abi.OP_WRITE, IORING_OP.WRITE], [abi.OP_SEND, IORING_OP.SEND],
        [abi.OP_WRITEV, IORING_OP.WRITEV], [abi.OP_CLOSE, IORING_OP.CLOSE], [abi.OP_PREAD, IORING_OP.READ],
      ]) if (ring.supports(uop)) r[op] = RING;
      this.acceptPrio = ring.supports(IORING_OP.ACCEPT) && acceptDontWaitWorks(ring) ? IORING_ACCEPT_DONTWAIT : -1;
      if (this.acceptPrio >= 0) r[abi.OP_ACCEPT] = RING;
      this.files = opts.files ? fileOps(core, ring, opts.files, () => this.drain()) : null;
    } catch (e) {
      this.ring.close();
      throw e;
    }
    this.wouldBlock = backend.wouldBlock ? backend.wouldBlock.bind(backend) : null;
    const pool = this.pool = opts.pool ?? null;
    const files = this.files;
    if (files && pool) {
      this.reap = (cq, max) => {
        const k = files.reap(cq, max);
        if (k === max && max > 0) { files.wakeNext(); return k; } // the pool's turn comes next tick
        return k + pool.reap(cq + k * abi.CQE_SIZE, max - k);
      };
    } else if (files) {
      this.reap = (cq, max) => files.reap(cq, max);
    } else if (pool) {
      this.reap = (cq, max) => pool.reap(cq, max);
    }
  }

  private readonly pool: FilePool | null;
  /** The server's file work as ring ops (null: the kernel cannot, or no file server). Its eventfd must be watched: the Reactor does. */
  readonly files: UringFiles | null;
  /** The completion phase: the file work finished since (only with ring file ops or a pool). */
  reap?: (cq: number, max: number) => number;

  /** Which core ops go through the ring (the rest: libc, in order). */
  get ringOps(): number[] { return [...this.route.keys()].filter((op) => this.route[op] === RING); }

  submit(sq: number, cq: number, n: number): number {
    const core = this.core;
    const pool = this.pool, files = this.files;
    core.refresh();
    this.i32 = core.i32;
    this.base = core.base;
    this.cqW = cq >> 2;
    const route = this.route;
    let q = sq >> 2;
    for (let i = 0; i < n; i++, q += Q_WORDS) {
      const i32 = this.i32;
      const op = i32[q] & 0xff, fd = i32[q + W_FD];
      if (files !== null && (op === abi.OP_OPEN || op === abi.OP_PREAD)) {
        if (this.batch > 0 && this.ring.space < 2) this.flush();
        if (files.start(op, i32, q)) continue; // its completion comes through reap()
      }
      if (pool !== null && toFilePool(pool, op, i32, q)) continue; // its completion comes through reap()
      if (route[op] === RING) {
        if (this.ring.space === 0 || (this.batch > 0 && (this.fdMark[fd] === this.epoch || (this.afterPread && op !== abi.OP_PREAD)))) this.flush(); // leaves the SQ empty
        this.queue(op, fd, q);
        continue;
      }
      // Synchronous: first flush the batch if this request could observe it.
      if (this.batch > 0 && (op === abi.OP_CALL || op === abi.OP_STOP || this.afterPread || this.touchesBatch(op, fd, q))) this.flush();
      let r: number;
      if (op < abi.OP_CTL) {
        r = libcRequest(op, i32, q, this.base, this.backend);
      } else {
        r = hostRequest(op, i32, q, this.services, this.backend);
        if (op >= abi.OP_CALL) this.refreshed(); // JS ran: memory may have grown
      }
      if (this.wouldBlock) reportEdge(this.wouldBlock, op, fd, this.i32[q + W_ADDR], this.i32[q + W_LEN], r, this.i32, q);
      this.complete(this.i32[q + W_TAG], this.i32[q + W_TAG + 1], r);
    }
    if (this.batch > 0) this.flush();
    files?.afterRound(); // the file steps this round's completions made go out; a finished one wakes the next tick
    this.services.roundDone();
    return (this.cqW - (cq >> 2)) / C_WORDS;
  }

  /** Does a synchronous request touch an fd with a request in the batch? */
  private touchesBatch(op: number, fd: number, q: number): boolean {
    if (fd >= 0 && fd < this.fdMark.length && this.fdMark[fd] === this.epoch) return true;
    return (op === abi.OP_SENDFILE || op === abi.OP_SPLICE) && this.fdMark[this.i32[q + W_SPLICE]] === this.epoch;
  }

  /** Prepares SQ entry q (a kernel op) in the ring and adds it to the batch. */
  private queue(op: number, fd: number, q: number): void {
    const w = this.ring.sqeSlot(); // never -1: flush() ran when space was 0
    this.fill(w, op, q);
    if (op === abi.OP_CLOSE) this.backend.closed(fd);
    else if (op === abi.OP_PREAD) this.afterPread = true;
    if (fd >= this.fdMark.length) this.growMarks(fd);
    if (fd >= 0) this.fdMark[fd] = this.epoch;
    this.bQ[this.batch] = q;
    this.bW[this.batch] = w;
    this.batch++;
  }

  /**
   * Writes the io_uring SQE for core request q at ring word w: the core's
   * SQE is io_uring's layout, so this is the 64-byte copy with the linear
   * memory base added to the addresses and each op's non-blocking flag.
   * Fields io_uring checks to be zero (off of RECV/SEND, everything but fd
   * of CLOSE) are left zero.
   */
  private fill(w: number, op: number, q: number): void {
    const s = this.ring.sqes, i32 = this.i32, base = this.base;
    const addr = i32[q + W_ADDR];
    s[w + SQE_W.FD] = i32[q + W_FD];
    s[w + SQE_W.USER_DATA] = i32[q + W_TAG];
    s[w + SQE_W.USER_DATA + 1] = i32[q + W_TAG + 1];
    switch (op) {
      case abi.OP_READ: // RECV
        s[w] = IORING_OP.RECV;
        setU64(s, w + SQE_W.ADDR, base + addr);
        s[w + SQE_W.LEN] = i32[q + W_LEN];
        s[w + SQE_W.OP_FLAGS] = MSG_DONTWAIT;
        break;
      case abi.OP_SEND:
        s[w] = IORING_OP.SEND;
        setU64(s, w + SQE_W.ADDR, base + addr);
        s[w + SQE_W.LEN] = i32[q + W_LEN];
        s[w + SQE_W.OP_FLAGS] = i32[q + W_FLAGS] | MSG_DONTWAIT;
        break;
      case abi.OP_WRITE: case abi.OP_WRITEV: // off -1: the fd's position, as write(2)/writev(2)
        s[w] = op === abi.OP_WRITE ? IORING_OP.WRITE : IORING_OP.WRITEV;
        s[w + SQE_W.OFF] = -1; s[w + SQE_W.OFF + 1] = -1;
        setU64(s, w + SQE_W.ADDR, base + addr); // WRITEV: the iovec array (its entries are absolute already)
        s[w + SQE_W.LEN] = i32[q + W_LEN];
        s[w + SQE_W.OP_FLAGS] = RWF_NOWAIT;
        break;
      case abi.OP_ACCEPT:
        s[w] = IORING_OP.ACCEPT | (this.acceptPrio << 16);
        if (addr) {
          setU64(s, w + SQE_W.ADDR, base + addr);
          setU64(s, w + SQE_W.OFF, base + i32[q + W_OFF]); // addr2: the socklen_t
        }
        s[w + SQE_W.OP_FLAGS] = i32[q + W_FLAGS];
        break;
      case abi.OP_CLOSE:
        s[w] = IORING_OP.CLOSE;
        break;
      case abi.OP_PREAD: // READ at an offset; a file may be punted to io-wq (it completes in this flush)
        s[w] = IORING_OP.READ;
        s[w + SQE_W.OFF] = i32[q + W_OFF]; s[w + SQE_W.OFF + 1] = i32[q + W_OFF + 1];
        setU64(s, w + SQE_W.ADDR, base + addr);
        s[w + SQE_W.LEN] = i32[q + W_LEN];
        break;
    }
  }

  /**
   * Submits the batch with one io_uring_enter that waits for all of it, and
   * copies its completions into the core's CQ.
   */
  private flush(): void {
    const ring = this.ring, k = this.batch, start = this.taken;
    // (this.taken, not drain()'s count: a file step may drain from inside a drain.)
    for (let left = k; left > 0; left = k - ((this.taken - start) | 0)) {
      // min_complete counts the CQEs in the ring: wait for the rest of the batch.
      if (ring.queued > 0 || ring.cqReady() < left) {
        const r = ring.submit(left);
        if (r < 0 && r !== -abi.EINTR && r !== -abi.EAGAIN && r !== -EBUSY) throw new SysError("io_uring_enter", -r);
      }
      this.drain();
    }
    // File steps the drain queued go out now: a flush leaves nothing queued
    // (the next queue() may need the whole SQ).
    while (ring.queued > 0) {
      const r = ring.submit(0);
      if (r < 0 && r !== -abi.EINTR && r !== -abi.EAGAIN && r !== -EBUSY) throw new SysError("io_uring_enter", -r);
      if (r < 0 && r !== -abi.EINTR) this.drain();
    }
    this.batch = 0;
    this.edgeAt = 0;
    this.afterPread = false;
    if (++this.epoch === 0x7fffffff) { this.fdMark.fill(0); this.epoch = 1; }
  }

  /**
   * Copies the round's CQEs waiting in the ring into the core's CQ and hands
   * the file ops' (ASYNC in the low word) to them; returns how many of the
   * round's. Each CQE is consumed before it is handled: a file step may
   * enter the kernel (SQ full) and drain from inside.
   */
  private drain(): number {
    const ring = this.ring, cqes = ring.cqes;
    let round = 0;
    while (ring.cqReady() > 0) {
      const w = ring.cqeWord(ring.cqHead());
      const lo = cqes[w], hi = cqes[w + 1], res = cqes[w + 2];
      ring.cqAdvance(1);
      if (lo < 0) { this.files!.onCqe(lo, hi, res); continue; }
      if (this.wouldBlock) this.edgeOf(lo, hi, res);
      this.complete(lo, hi, res);
      this.taken = (this.taken + 1) | 0;
      round++;
    }
    return round;
  }
  /** The round's CQEs taken so far (an Int32 that wraps: only differences are used). */
  private taken = 0;

  /**
   * Edge emulation for a ring completion (poll backend only): finds its
   * request in the batch by tag, looking first where the last one was found
   * plus one (completions mostly come in submission order: O(1) each).
   */
  private edgeOf(lo: number, hi: number, res: number): void {
    const i32 = this.i32, k = this.batch;
    for (let step = 0, j = this.edgeAt; step < k; step++, j = j + 1 === k ? 0 : j + 1) {
      const q = this.bQ[j];
      if (i32[q + W_TAG] === lo && i32[q + W_TAG + 1] === hi) {
        this.edgeAt = j + 1 === k ? 0 : j + 1;
        reportEdge(this.wouldBlock!, i32[q] & 0xff, i32[q + W_FD], i32[q + W_ADDR], i32[q + W_LEN], res, i32, q);
        return;
      }
    }
  }
  private edgeAt = 0;

  /** Writes one completion (tag, result) at the next slot of the core's CQ. */
  private complete(lo: number, hi: number, res: number): void {
    const i32 = this.i32, c = this.cqW;
    i32[c] = lo;
    i32[c + 1] = hi;
    i32[c + C_RES] = res;
    i32[c + 3] = 0;
    this.cqW = c + C_WORDS;
  }

  /**
   * After a host service (JS ran): fresh views. Should linear memory have
   * moved (memory.grow may move it; V8 on 64-bit grows in place), the SQEs
   * waiting in the ring are rewritten with the new base before the kernel
   * ever sees them (nothing of the batch has been submitted yet).
   */
  private refreshed(): void {
    const core = this.core;
    core.refresh();
    this.i32 = core.i32;
    if (core.base === this.base) return;
    if (this.files && this.files.active > 0) throw new Error("io_uring: linear memory moved while file work was in flight");
    this.base = core.base;
    for (let j = 0; j < this.batch; j++) {
      const q = this.bQ[j], w = this.bW[j];
      this.ring.sqes.fill(0, w, w + SQE_WORDS);
      this.fill(w, this.i32[q] & 0xff, q);
    }
  }

  private growMarks(fd: number): void {
    const next = new Int32Array(Math.max(fd + 1, this.fdMark.length * 2));
    next.set(this.fdMark);
    this.fdMark = next;
  }

  /** Releases the ring (the Loop's close()): the file ops in flight are cancelled and waited for first. */
  close(): void {
    try { this.files?.close(); } finally { this.ring.close(); }
  }
}

/**
 * The file ops on this ring, or null where the kernel cannot carry them:
 * OP_OPEN needs OPENAT2, STATX and CLOSE in the probe, OP_PREAD needs READ,
 * both an eventfd registration (else they run as before).
 */
function fileOps(core: Core, ring: Ring, files: FileServer, drain: () => number): UringFiles | null {
  const openOps = ring.supports(IORING_OP.OPENAT2) && ring.supports(IORING_OP.STATX) && ring.supports(IORING_OP.CLOSE);
  const preadOps = ring.supports(IORING_OP.READ);
  if (!openOps && !preadOps) return null;
  try {
    return new UringFiles(core, ring, files, { openOps, preadOps, drain });
  } catch (e) {
    if (e instanceof SysError) return null; // io_uring_register(EVENTFD) refused: as before
    throw e;
  }
}

/**
 * Does IORING_ACCEPT_DONTWAIT work here (6.10+)? Older kernels refuse the
 * flag (EINVAL), and without it an accept on an empty listener is parked,
 * not answered -EAGAIN: those kernels accept through libc. Tried once on a
 * listening socket of our own, bound to 127.0.0.1 on a kernel-chosen port.
 */
function acceptDontWaitWorks(ring: Ring): boolean {
  if (acceptProbe !== null) return acceptProbe;
  const s = libc.socket(abi.AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  try {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(abi.AF_INET, 0);
    sa.writeUInt32BE(0x7f000001, 4);
    if (libc.bind(s, sa, 16) < 0 || libc.listen(s, 1) < 0) return false;
    const w = ring.sqeSlot();
    ring.sqes[w] = IORING_OP.ACCEPT | (IORING_ACCEPT_DONTWAIT << 16);
    ring.sqes[w + SQE_W.FD] = s;
    ring.sqes[w + SQE_W.OP_FLAGS] = SOCK_NONBLOCK | SOCK_CLOEXEC;
    if (ring.submit(1) !== 1 || ring.cqReady() !== 1) { ring.cqAdvance(ring.cqReady()); return (acceptProbe = false); }
    const res = ring.cqes[ring.cqeWord(ring.cqHead()) + 2];
    ring.cqAdvance(1);
    if (res >= 0) libc.close(res); // a connection from nowhere: cannot happen, but close it
    acceptProbe = res === -abi.EAGAIN;
    return acceptProbe;
  } finally {
    libc.close(s);
  }
}
let acceptProbe: boolean | null = null;
