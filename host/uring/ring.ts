// The io_uring ring driver: raw syscalls through koffi (io_uring_setup 425,
// io_uring_enter 426, io_uring_register 427), the rings mmapped and read and
// written through koffi.view ArrayBuffers. No liburing, no SQPOLL (libuv
// turned SQPOLL off by default after CPU regressions). Used by the server's
// executor (host/executor-uring.ts) and the `io` API's io_uring backend
// (host/io/).
//
// Interface (stable: other code builds on it)
//
//   uringAvailability(): { ok: true } | { ok: false, reason }
//       Decided once per process (cached): io_uring works here, or why not, as
//       `kernel.io_uring_disabled = 2` or `io_uring_setup: EPERM (Operation
//       not permitted)`. Probes a 2-entry ring (setup, IORING_REGISTER_PROBE,
//       close). Test hook: WASM_REACTOR_IO_URING_FAIL=<ERRNO NAME> (EPERM,
//       ENOSYS, ...) makes every io_uring_setup fail with that errno.
//
//   new Ring({ entries, cqEntries?, flags?, tuning? })
//       io_uring_setup; throws SysError naming `io_uring_setup` on failure.
//       `tuning` (default true) adds the setup flags that measured to help
//       and that this kernel takes (RING_TUNING_FLAGS, dropped one by one on
//       EINVAL): ring.setupFlags says what is in effect. With
//       IORING_SETUP_SINGLE_ISSUER (in the tuning set) only the thread that
//       created the ring may submit (-EEXIST otherwise): one ring per thread.
//       With IORING_SETUP_DEFER_TASKRUN completions of requests that did not
//       complete inline (punted to io-wq, or waiting on poll) are posted only
//       inside io_uring_enter(GETEVENTS): call flushCompletions() before
//       reading the CQ when woken by the eventfd.
//
//   Submission (no allocation; SQEs are 16 Int32 words, io_uring_sqe's layout,
//   word offsets in SQE_W):
//       ring.sqes                 Int32Array over the SQE array
//       ring.sqeSlot()            word index into ring.sqes of the next SQE,
//                                 zeroed; -1 if the SQ is full (submit first)
//       ring.pushSqe(src, word)   copies 64 bytes from src[word..word+16) in;
//                                 returns the slot's word index or -1
//       ring.queued               SQEs prepared and not yet submitted
//       ring.space                SQEs that can still be prepared
//       ring.submit(minComplete = 0, flags = 0)
//                                 io_uring_enter(queued, minComplete, flags |
//                                 GETEVENTS if minComplete > 0) -> number
//                                 submitted (>= 0) or -errno (-EINTR: call
//                                 again, with what is still queued)
//       ring.enter(toSubmit, minComplete, flags)   the raw syscall -> n or -errno
//       setU64(i32, word, v)      writes a u64 (an absolute address) as two words
//
//   Completion (CQEs are 4 Int32 words: user_data lo, hi, res, flags):
//       ring.cqes                 Int32Array over the CQE array
//       ring.cqReady()            CQEs waiting
//       ring.cqHead()             the head counter (unmasked); the CQE at
//                                 counter h is at word ring.cqeWord(h)
//       ring.cqAdvance(n)         consumes n CQEs (the head store the kernel sees)
//       ring.flushCompletions()   enter(0, 0, GETEVENTS) when the kernel holds
//                                 completions back (DEFER_TASKRUN, task work,
//                                 CQ overflow); a no-op otherwise
//
//   Registration and the rest:
//       ring.registerEventfd(efd) / unregisterEventfd()   the kernel signals efd
//                                 on completions, so an event loop can wait on them
//       ring.setEventfdSignals(on)    IORING_CQ_EVENTFD_DISABLED off/on (5.8+; false: not there)
//       ring.registerFiles(fds) / unregisterFiles()       fixed files (IOSQE_FIXED_FILE)
//       ring.supports(op)         IORING_REGISTER_PROBE's answer for IORING_OP_* op (test
//                                 hook WASM_REACTOR_IO_URING_HIDE_OPS=OPENAT2,STATX denies ops)
//       ring.require(op)          throws a clear error if op is not supported
//       ring.close()              munmap + close; idempotent. Afterwards the methods
//                                 throw, and sqes/cqes must not be touched (unmapped)
//
// Single-threaded consumer: no Atomics. Stores into the mmapped rings are
// plain stores the kernel sees; io_uring_enter is the barrier (no SQPOLL
// thread reads the tail behind our back).
import { readFileSync } from "node:fs";
import * as abi from "../../assembly/abi.ts";
import { libc, errno, SysError, viewOf, pointerAddress, describeErrno } from "../libc.ts";

const SYS_io_uring_setup = 425, SYS_io_uring_enter = 426, SYS_io_uring_register = 427;

// ---- constants (linux/io_uring.h) -------------------------------------------
/** IORING_OP_* opcodes. */
export const IORING_OP = {
  NOP: 0, READV: 1, WRITEV: 2, FSYNC: 3, READ_FIXED: 4, WRITE_FIXED: 5, POLL_ADD: 6, POLL_REMOVE: 7,
  SYNC_FILE_RANGE: 8, SENDMSG: 9, RECVMSG: 10, TIMEOUT: 11, TIMEOUT_REMOVE: 12, ACCEPT: 13, ASYNC_CANCEL: 14,
  LINK_TIMEOUT: 15, CONNECT: 16, FALLOCATE: 17, OPENAT: 18, CLOSE: 19, FILES_UPDATE: 20, STATX: 21, READ: 22,
  WRITE: 23, FADVISE: 24, MADVISE: 25, SEND: 26, RECV: 27, OPENAT2: 28, EPOLL_CTL: 29, SPLICE: 30,
  PROVIDE_BUFFERS: 31, REMOVE_BUFFERS: 32, TEE: 33, SHUTDOWN: 34, RENAMEAT: 35, UNLINKAT: 36, MKDIRAT: 37,
  SYMLINKAT: 38, LINKAT: 39, MSG_RING: 40, FSETXATTR: 41, SETXATTR: 42, FGETXATTR: 43, GETXATTR: 44, SOCKET: 45,
  URING_CMD: 46, SEND_ZC: 47, SENDMSG_ZC: 48, READ_MULTISHOT: 49, WAITID: 50, FUTEX_WAIT: 51, FUTEX_WAKE: 52,
  FUTEX_WAITV: 53, FIXED_FD_INSTALL: 54, FTRUNCATE: 55, BIND: 56, LISTEN: 57,
} as const;
const OP_NAME: Record<number, string> = Object.fromEntries(Object.entries(IORING_OP).map(([k, v]) => [v, k]));

// io_uring_setup flags
export const IORING_SETUP_IOPOLL = 1 << 0;
export const IORING_SETUP_SQPOLL = 1 << 1;
export const IORING_SETUP_CQSIZE = 1 << 3;
export const IORING_SETUP_CLAMP = 1 << 4;
export const IORING_SETUP_SUBMIT_ALL = 1 << 7;      // 5.18: an SQE failing at prep does not stop the rest
export const IORING_SETUP_COOP_TASKRUN = 1 << 8;    // 5.19: no IPI to run task work; it runs at the next enter
export const IORING_SETUP_TASKRUN_FLAG = 1 << 9;
export const IORING_SETUP_SINGLE_ISSUER = 1 << 12;  // 6.0: one submitting thread
export const IORING_SETUP_DEFER_TASKRUN = 1 << 13;  // 6.1: completions posted at enter(GETEVENTS) only
export const IORING_SETUP_NO_MMAP = 1 << 14;
export const IORING_SETUP_NO_SQARRAY = 1 << 16;     // 6.6: no SQ index array
// io_uring_enter flags
export const IORING_ENTER_GETEVENTS = 1 << 0;
// features
export const IORING_FEAT_SINGLE_MMAP = 1 << 0;
export const IORING_FEAT_NODROP = 1 << 1;
export const IORING_FEAT_EXT_ARG = 1 << 8;
// SQE flags (SQE byte 1)
export const IOSQE_FIXED_FILE = 1 << 0;
export const IOSQE_IO_DRAIN = 1 << 1;
export const IOSQE_IO_LINK = 1 << 2;
export const IOSQE_IO_HARDLINK = 1 << 3;          // 5.5: the chain goes on even if this one fails
export const IOSQE_ASYNC = 1 << 4;
export const IOSQE_CQE_SKIP_SUCCESS = 1 << 6;
// SQ ring flags
const IORING_SQ_CQ_OVERFLOW = 1 << 1, IORING_SQ_TASKRUN = 1 << 2;
// CQ ring flags
const IORING_CQ_EVENTFD_DISABLED = 1 << 0;
// per-op flags
export const RWF_NOWAIT = 0x8;                    // rw_flags: return -EAGAIN instead of waiting
export const MSG_DONTWAIT = 0x40;                 // msg_flags: the same for send/recv
export const IORING_ACCEPT_MULTISHOT = 1 << 0;    // accept: in ioprio
export const IORING_ACCEPT_DONTWAIT = 1 << 1;     // 6.10: -EAGAIN instead of waiting for a connection
// register opcodes
const IORING_REGISTER_FILES = 2, IORING_UNREGISTER_FILES = 3, IORING_REGISTER_EVENTFD = 4, IORING_UNREGISTER_EVENTFD = 5;
const IORING_REGISTER_PROBE = 8;
const IO_URING_OP_SUPPORTED = 1;
// mmap
const PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MAP_POPULATE = 0x8000;
const IORING_OFF_SQ_RING = 0, IORING_OFF_CQ_RING = 0x8000000, IORING_OFF_SQES = 0x10000000;

/** Word offsets of an SQE's fields in ring.sqes (struct io_uring_sqe; abi.ts SQE_* are the byte offsets). */
export const SQE_W = {
  OPCODE: 0, // opcode | flags << 8 | ioprio << 16
  FD: abi.SQE_FD >> 2, OFF: abi.SQE_OFF >> 2, ADDR: abi.SQE_ADDR >> 2, LEN: abi.SQE_LEN >> 2,
  OP_FLAGS: abi.SQE_OP_FLAGS >> 2, USER_DATA: abi.SQE_USER_DATA >> 2, BUF_INDEX: abi.SQE_BUF_INDEX >> 2,
  SPLICE_FD_IN: abi.SQE_SPLICE_FD_IN >> 2, ADDR3: abi.SQE_ADDR3 >> 2,
} as const;
export const SQE_WORDS = 16, CQE_WORDS = 4;
/** Word offsets of a CQE's fields in ring.cqes. */
export const CQE_W = { USER_DATA: 0, RES: 2, FLAGS: 3 } as const;

/** Writes the u64 `v` (a non-negative integer below 2^53: an absolute address, an offset) at i32[word], i32[word + 1]. */
export function setU64(i32: Int32Array, word: number, v: number): void {
  i32[word] = v % 4294967296 | 0;
  i32[word + 1] = (v / 4294967296) | 0;
}

/**
 * Setup flags tried by default, dropped one at a time (highest bit first)
 * while the kernel answers EINVAL. Measured here (bench/uring-ring.mjs, 6.18,
 * busy 2-core VM): see the commit that set them.
 */
export const RING_TUNING_FLAGS = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER
  | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_NO_SQARRAY;
/** What the kernel took last time (so a second ring does not retry). */
let acceptedTuning: number | null = null;

// ---- availability ----------------------------------------------------------
export type UringAvailability = { ok: true } | { ok: false; reason: string };
let availability: UringAvailability | null = null;

/** The errno WASM_REACTOR_IO_URING_FAIL forces on io_uring_setup (a test hook), or 0. */
function forcedFailure(): number {
  const name = process.env.WASM_REACTOR_IO_URING_FAIL;
  if (!name) return 0;
  const e = (abi as unknown as Record<string, number>)[name.trim().toUpperCase()];
  if (/^E[A-Z0-9]+$/.test(name.trim().toUpperCase()) && typeof e === "number") return e;
  if (/^\d+$/.test(name.trim())) return Number(name.trim());
  return abi.EPERM; // unknown name: still unavailable, as asked
}

/**
 * Whether io_uring works in this process, decided once: the test hook, then
 * kernel.io_uring_disabled (6.6+: 2 = off for everyone, 1 = only for
 * kernel.io_uring_group), then a real 2-entry ring with its probe.
 */
export function uringAvailability(): UringAvailability {
  if (availability) return availability;
  let disabled = -1;
  try { disabled = Number(readFileSync("/proc/sys/kernel/io_uring_disabled", "utf8").trim()); } catch { /* older kernel */ }
  if (disabled === 2 && !forcedFailure()) return (availability = { ok: false, reason: "kernel.io_uring_disabled = 2" });
  try {
    new Ring({ entries: 2 }).close();
    availability = { ok: true };
  } catch (e) {
    const why = e instanceof SysError ? e.message : String((e as Error)?.message ?? e);
    availability = { ok: false, reason: disabled === 1 && /EPERM/.test(why) ? `kernel.io_uring_disabled = 1 (not in kernel.io_uring_group): ${why}` : why };
  }
  return availability;
}

/** Forgets the cached answer (tests that change WASM_REACTOR_IO_URING_FAIL in-process). */
export function resetUringAvailability(): void { availability = null; }

// ---- the ring ----------------------------------------------------------------
export interface RingOptions {
  /** SQ entries (the kernel rounds up to a power of two; at most 32768). */
  entries: number;
  /** CQ entries (default: twice the SQ's). */
  cqEntries?: number;
  /** IORING_SETUP_* flags always wanted (setup fails if the kernel refuses them). */
  flags?: number;
  /** Add RING_TUNING_FLAGS where the kernel takes them (default true). */
  tuning?: boolean;
}

export class Ring {
  readonly fd: number;
  readonly sqEntries: number;
  readonly cqEntries: number;
  /** IORING_SETUP_* in effect. */
  readonly setupFlags: number;
  /** IORING_FEAT_* the kernel reported. */
  readonly features: number;
  /** The SQE array, 16 words per entry. */
  readonly sqes: Int32Array;
  /** The CQE array, 4 words per entry. */
  readonly cqes: Int32Array;
  private readonly sq: Int32Array;     // SQ ring (head, tail, flags, array), words
  private readonly cq: Int32Array;     // CQ ring (head, tail), words
  private readonly sqHeadW: number; private readonly sqTailW: number; private readonly sqFlagsW: number;
  private readonly cqHeadW: number; private readonly cqTailW: number;
  private readonly cqFlagsW: number;   // -1: the kernel has no CQ flags word (< 5.8)
  private readonly sqMask: number; private readonly cqMask: number;
  private sqTail = 0;                  // our tail: prepared SQEs end here
  private submitted = 0;               // the tail the kernel was last given
  private readonly maps: { ptr: unknown; len: number }[] = [];
  private probe: Uint8Array | null = null;
  private closed = false;
  private readonly word = new Int32Array(1); // register arguments (eventfd)

  constructor(opts: RingOptions) {
    const forced = forcedFailure();
    if (forced) throw new SysError("io_uring_setup", forced);
    const params = Buffer.alloc(120);
    const want = opts.flags ?? 0;
    let tuning = opts.tuning === false ? 0 : (acceptedTuning ?? RING_TUNING_FLAGS);
    let fd = -1;
    for (;;) {
      params.fill(0);
      let flags = want | tuning;
      if (opts.cqEntries) { flags |= IORING_SETUP_CQSIZE; params.writeUInt32LE(opts.cqEntries, 4); }
      params.writeUInt32LE(flags, 8);
      fd = libc.io_uring_setup(SYS_io_uring_setup, opts.entries, params);
      if (fd >= 0) break;
      const e = errno();
      // An older kernel refuses a flag it does not know with EINVAL: drop the highest tuning flag, retry.
      if (e === abi.EINVAL && tuning) { tuning &= ~(1 << (31 - Math.clz32(tuning))); continue; }
      throw new SysError("io_uring_setup", e);
    }
    if (opts.tuning !== false && !want) acceptedTuning = tuning;
    this.fd = fd;
    try {
      this.sqEntries = params.readUInt32LE(0);
      this.cqEntries = params.readUInt32LE(4);
      this.setupFlags = params.readUInt32LE(8);
      this.features = params.readUInt32LE(20);
      // sq_off at 40: head, tail, ring_mask, ring_entries, flags, dropped, array; cq_off at 80: ..., cqes at +20
      const sqOff = (k: number) => params.readUInt32LE(40 + 4 * k), cqOff = (k: number) => params.readUInt32LE(80 + 4 * k);
      const noArray = (this.setupFlags & IORING_SETUP_NO_SQARRAY) !== 0;
      const sqLen = noArray ? Math.max(sqOff(0), sqOff(1), sqOff(4), sqOff(5)) + 4 : sqOff(6) + this.sqEntries * 4;
      const cqLen = cqOff(5) + this.cqEntries * 16;
      let sqMem: ArrayBuffer, cqMem: ArrayBuffer;
      if (this.features & IORING_FEAT_SINGLE_MMAP) {
        sqMem = cqMem = this.map(Math.max(sqLen, cqLen), IORING_OFF_SQ_RING);
      } else {
        sqMem = this.map(sqLen, IORING_OFF_SQ_RING);
        cqMem = this.map(cqLen, IORING_OFF_CQ_RING);
      }
      this.sqes = new Int32Array(this.map(this.sqEntries * 64, IORING_OFF_SQES));
      this.sq = new Int32Array(sqMem);
      this.cq = new Int32Array(cqMem);
      this.sqHeadW = sqOff(0) >> 2; this.sqTailW = sqOff(1) >> 2; this.sqFlagsW = sqOff(4) >> 2;
      this.sqMask = this.sq[sqOff(2) >> 2];
      this.cqHeadW = cqOff(0) >> 2; this.cqTailW = cqOff(1) >> 2;
      this.cqFlagsW = cqOff(6) > 0 ? cqOff(6) >> 2 : -1;
      this.cqMask = this.cq[cqOff(2) >> 2];
      this.cqes = new Int32Array(cqMem, cqOff(5), this.cqEntries * CQE_WORDS);
      // The index array, if any, is the identity, written once: SQE i sits in slot i.
      if (!noArray) for (let i = 0; i < this.sqEntries; i++) this.sq[(sqOff(6) >> 2) + i] = i;
      this.sqTail = this.submitted = this.sq[this.sqTailW];
      this.loadProbe();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private map(len: number, offset: number): ArrayBuffer {
    const ptr = libc.mmap(null, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, this.fd, offset);
    if (pointerAddress(ptr) === -1) throw new SysError("mmap (io_uring ring)", errno());
    this.maps.push({ ptr, len });
    return viewOf(ptr, len);
  }

  private loadProbe(): void {
    const buf = Buffer.alloc(16 + 256 * 8);
    if (libc.io_uring_register(SYS_io_uring_register, this.fd, IORING_REGISTER_PROBE, buf, 256) < 0) return; // < 5.6: unknown
    const opsLen = buf[1];
    const probe = new Uint8Array(256);
    for (let i = 0; i < opsLen; i++) {
      const at = 16 + i * 8;
      if (buf.readUInt16LE(at + 2) & IO_URING_OP_SUPPORTED) probe[buf[at]] = 1;
    }
    // Test hook: WASM_REACTOR_IO_URING_HIDE_OPS="OPENAT2,STATX" makes the
    // probe deny those ops (names as IORING_OP_*), as an older kernel would.
    for (const name of (process.env.WASM_REACTOR_IO_URING_HIDE_OPS ?? "").split(",")) {
      const op = (IORING_OP as Record<string, number>)[name.trim().toUpperCase()];
      if (op !== undefined) probe[op] = 0;
    }
    this.probe = probe;
  }

  // ---- probe ----
  /** Does this kernel support IORING_OP_* `op`? (Without IORING_REGISTER_PROBE, < 5.6: only the 5.1 ops.) */
  supports(op: number): boolean {
    if (this.probe) return this.probe[op & 0xff] === 1;
    return op <= IORING_OP.SYNC_FILE_RANGE;
  }

  /** Throws a clear error if `op` is not supported (call at setup, not per request). */
  require(op: number, what = "this operation"): void {
    if (!this.supports(op)) {
      throw new Error(`io_uring: IORING_OP_${OP_NAME[op] ?? op} (${what}) is not supported by this kernel (${process.platform} ${osRelease()})`);
    }
  }

  // ---- submission ----
  /** SQEs prepared and not yet submitted. */
  get queued(): number { return (this.sqTail - this.submitted) | 0; }
  /** SQEs that can still be prepared before a submit. */
  get space(): number { return this.sqEntries - ((this.sqTail - this.sq[this.sqHeadW]) | 0); }

  /** Word index (into `sqes`) of the next SQE, zeroed; -1 if the SQ is full. */
  sqeSlot(): number {
    if (this.closed) throw closedError();
    if (((this.sqTail - this.sq[this.sqHeadW]) | 0) >= this.sqEntries) return -1;
    const w = (this.sqTail & this.sqMask) * SQE_WORDS;
    this.sqTail = (this.sqTail + 1) | 0;
    this.sqes.fill(0, w, w + SQE_WORDS);
    return w;
  }

  /** Copies the 64-byte SQE at src[word] into the next slot; returns its word index or -1 (SQ full). */
  pushSqe(src: Int32Array, word: number): number {
    if (this.closed) throw closedError();
    if (((this.sqTail - this.sq[this.sqHeadW]) | 0) >= this.sqEntries) return -1;
    const w = (this.sqTail & this.sqMask) * SQE_WORDS;
    this.sqTail = (this.sqTail + 1) | 0;
    const d = this.sqes;
    for (let k = 0; k < SQE_WORDS; k++) d[w + k] = src[word + k];
    return w;
  }

  /**
   * Submits what is queued and waits for `minComplete` completions (adds
   * GETEVENTS if > 0). Returns the number submitted (>= 0) or -errno; on
   * -EINTR (a signal) or -EAGAIN/-EBUSY (kernel out of resources, CQ
   * overflowing) what was not taken stays queued: reap, then call again.
   */
  submit(minComplete = 0, flags = 0): number {
    if (this.closed) throw closedError();
    const n = (this.sqTail - this.submitted) | 0;
    this.sq[this.sqTailW] = this.sqTail; // publish (the kernel reads it inside enter)
    if (minComplete > 0) flags |= IORING_ENTER_GETEVENTS;
    const r = libc.io_uring_enter(SYS_io_uring_enter, this.fd, n, minComplete, flags, 0, 0);
    if (r < 0) {
      const e = errno();
      // What the kernel did take is between the old submitted mark and its head.
      this.submitted = this.sq[this.sqHeadW];
      return -e;
    }
    this.submitted = (this.submitted + r) | 0;
    return r;
  }

  /** The raw io_uring_enter (no queue bookkeeping) -> n or -errno. */
  enter(toSubmit: number, minComplete: number, flags: number): number {
    if (this.closed) throw closedError();
    const r = libc.io_uring_enter(SYS_io_uring_enter, this.fd, toSubmit, minComplete, flags, 0, 0);
    return r < 0 ? -errno() : r;
  }

  // ---- completion ----
  /** CQEs waiting to be read. */
  cqReady(): number { if (this.closed) throw closedError(); return (this.cq[this.cqTailW] - this.cq[this.cqHeadW]) | 0; }
  /** The CQ head counter (unmasked). */
  cqHead(): number { return this.cq[this.cqHeadW]; }
  /** Word index (into `cqes`) of the CQE at head counter `h`. */
  cqeWord(h: number): number { return (h & this.cqMask) * CQE_WORDS; }
  /** Consumes `n` CQEs: the kernel may reuse their slots. */
  cqAdvance(n: number): void { if (this.closed) throw closedError(); this.cq[this.cqHeadW] = (this.cq[this.cqHeadW] + n) | 0; }

  /**
   * Makes the kernel post the completions it holds back: with
   * DEFER_TASKRUN always (they are posted only inside enter(GETEVENTS)),
   * otherwise only if it flagged pending task work or a CQ overflow.
   * Returns 0 or -errno.
   */
  flushCompletions(): number {
    if ((this.setupFlags & IORING_SETUP_DEFER_TASKRUN) === 0
      && (this.sq[this.sqFlagsW] & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) === 0) return 0;
    const r = this.enter(0, 0, IORING_ENTER_GETEVENTS);
    return r < 0 ? r : 0;
  }

  // ---- registration ----
  /** The kernel writes to eventfd `efd` when a completion is posted (an event loop waits on efd). */
  registerEventfd(efd: number): void {
    this.word[0] = efd;
    this.register("IORING_REGISTER_EVENTFD", IORING_REGISTER_EVENTFD, Buffer.from(this.word.buffer), 1);
  }
  unregisterEventfd(): void { this.register("IORING_UNREGISTER_EVENTFD", IORING_UNREGISTER_EVENTFD, null, 0); }
  /**
   * Turns the registered eventfd's signals off or on (IORING_CQ_EVENTFD_DISABLED
   * in the CQ ring's flags, 5.8+: a store, no syscall), so completions the
   * caller reaps itself wake nobody. A completion posted while off signals
   * nothing, ever: turn it on before submitting what must wake a sleeper.
   * Returns false if this kernel has no such flag (signals stay on).
   */
  setEventfdSignals(on: boolean): boolean {
    if (this.closed) throw closedError();
    if (this.cqFlagsW < 0) return false;
    this.cq[this.cqFlagsW] = on ? this.cq[this.cqFlagsW] & ~IORING_CQ_EVENTFD_DISABLED : this.cq[this.cqFlagsW] | IORING_CQ_EVENTFD_DISABLED;
    return true;
  }

  /** Fixed files: SQEs with IOSQE_FIXED_FILE name fds[i] by i (-1: an empty slot). */
  registerFiles(fds: ArrayLike<number>): void {
    const b = Buffer.alloc(fds.length * 4);
    for (let i = 0; i < fds.length; i++) b.writeInt32LE(fds[i], i * 4);
    this.register("IORING_REGISTER_FILES", IORING_REGISTER_FILES, b, fds.length);
  }
  unregisterFiles(): void { this.register("IORING_UNREGISTER_FILES", IORING_UNREGISTER_FILES, null, 0); }

  private register(what: string, opcode: number, arg: Buffer | null, nr: number): void {
    if (libc.io_uring_register(SYS_io_uring_register, this.fd, opcode, arg, nr) < 0) {
      throw new SysError(`io_uring_register(${what})`, errno());
    }
  }

  /**
   * Unmaps the rings and closes the ring fd (requests still in flight are
   * cancelled by the kernel). Idempotent. Afterwards the methods throw; the
   * `sqes`/`cqes` views must not be touched (unmapped memory: a crash).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.maps) libc.munmap(m.ptr, m.len);
    this.maps.length = 0;
    if (this.fd >= 0) libc.close(this.fd);
  }
}

function closedError(): Error { return new Error("io_uring: the ring is closed"); }

function osRelease(): string {
  try { return readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(); } catch { return "unknown kernel"; }
}

/** `io_uring_setup: EPERM (Operation not permitted)` for errno e: the reason format of uringAvailability(). */
export function setupFailure(e: number): string { return `io_uring_setup: ${describeErrno(e)}`; }
