// The Executor: what carries the core's requests out. Contract first (the
// pump, host/pump.ts, relies on exactly this and nothing more).
//
// The core emits a round of n requests into the submission queue (SQ, n
// io_uring-shaped records of abi.SQE_SIZE bytes at `sq`, each with a tag in
// SQE_USER_DATA); the executor carries out every one of them and writes a
// completion for each into the completion queue (CQ, abi.CQE_SIZE entries
// at `cq`): the request's tag, copied, and its result (>= 0, or -errno).
// submit() returns how many completions it wrote (none returned: n); the
// pump hands them back with complete(k).
//
//  - Order: requests are carried out in SQ order. A later request of the
//    round may depend on an earlier one (a write after a read into the same
//    buffer, a close after the last write).
//  - Completions may be written in any order: the core routes each by its
//    tag, not by its position. A completion whose tag is stale (a duplicate,
//    or one for a request already completed) is ignored and counted
//    (STAT_STALE_CQES).
//  - Later: an executor may keep a kernel I/O request of a connection
//    (READ, WRITE, WRITEV, SEND, SENDFILE, SHUTDOWN) in flight past the
//    round (submit() then returns fewer completions) and hand its completion
//    back in a later tick through reap(). The core keeps that connection's
//    buffers and fd until it has completed. So may the HTTP server's file
//    work, OP_OPEN, OP_LIST and OP_PREAD (the file pool, host/filepool.ts,
//    does): the file-cache entry stays loading, its waiters wait. The fuzzer
//    keeps all of these in flight across ticks. Completed in their round,
//    always: ACCEPT (address slots are reused per batch) and CLOSE.
//    Recording (host/record.ts) follows requests kept in flight by tag;
//    their write data is not compared on replay (only what they read).

//  - Host services (OP_CALL, OP_LOG, OP_STOP, OP_OPEN, OP_LIST) are not
//    kernel calls: every executor completes them synchronously, inside
//    submit(), whatever it does with kernel I/O (but OP_OPEN and OP_LIST,
//    see "Later"). So are interest changes
//    (OP_CTL): they go to the event backend, which answers 0 or -errno at
//    once.
//  - Memory: the SQ and CQ addresses are offsets into the core's linear
//    memory, valid for this call only (the queues are double-buffered). A host
//    service may run JS that grows memory: an executor re-reads its views
//    after one.
//  - Errors: a failed request is a result (-errno), never an exception. An
//    exception out of submit() is a host bug and ends the phase (the pump
//    does not contain it).
//
// Executors: host/libc.ts's koffi calls (LibcExecutor, host/executor-libc.ts),
// the tests' scripted kernel (test/lib/fakehost.mjs), the fuzzer's hostile
// kernel (tools/fuzz/fuzz.ts) and the dispatch benchmark's lean one
// (bench/dispatch.mjs). Recording is a decorator around any of them
// (host/record.ts recordingExecutor).
export interface Executor {
  /** Carries out SQ[0..n) at `sq`, writing completions at `cq` (linear-memory offsets); returns how many (default n). */
  submit(sq: number, cq: number, n: number): number | void;
  /**
   * The completion phase (Pump.tick, after the poll): writes at most `max`
   * completions of requests kept in flight from earlier rounds at `cq`, in
   * any order; returns how many. Absent: every request completes in its round.
   */
  reap?(cq: number, max: number): number;
}

/**
 * Host services: the requests that are not kernel calls. The Loop supplies
 * them to the libc executor; results follow the executor contract.
 */
export interface Services {
  /** OP_CALL: a JS callback (CALL_* kind); 0, or -1 if it threw. */
  call(kind: number, id: number, fd: number, events: number, extra: number): number;
  /** OP_LOG: `len` bytes of text at `ptr` with level LOG_*, about `event` (LOGEV_*; absent: LOGEV_MESSAGE). */
  log(level: number, ptr: number, len: number, event?: number): void;
  /** OP_STOP: the graceful shutdown finished. */
  stop(): void;
  /** OP_OPEN: open (or stat only) the path at pathPtr beneath the root, fill the FILE record -> fd or -errno. */
  open(pathPtr: number, pathLen: number, record: number, statOnly: boolean): number;
  /** OP_LIST: the HTML listing of the directory whose path is at buf, written into buf -> length or -errno. */
  list(buf: number, cap: number, pathLen: number): number;
  /** OP_METRICS: copy the other workers' metrics snapshots into len bytes at addr -> snapshots copied (absent: 0). */
  metrics?(addr: number, len: number): number;
  /** The round is over (buffered output, such as access lines, goes out now). */
  roundDone(): void;
}

/**
 * The event backend, as the executor sees it (host/backend/types.ts has the
 * whole contract): interest changes (OP_CTL: fd, len = INTEREST_*, op_flags
 * = EV_* bits, off = generation), answered synchronously with 0 or -errno;
 * `closed(fd)` before the executor closes an fd; and, for a backend that
 * emulates edges (poll), `wouldBlock(fd, bits)` when an operation met EAGAIN
 * or fell short, so a new edge may be reported.
 */
export interface InterestBackend {
  setInterest(fd: number, op: number, bits: number, gen: number): number;
  closed(fd: number): void;
  wouldBlock?(fd: number, bits: number): void;
}
