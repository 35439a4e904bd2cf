// Connections of the built-in protocols (listeners, echo, HTTP).
//
// Records are fd-indexed, CONN_SIZE = 256 bytes each (layout: abi.ts); the
// table is carved once at init. An idle keep-alive connection owns nothing
// else: receive buffers and write rings come from pools only while there is
// unprocessed input or pending output (see pool.ts).
//
// Each connection has at most one syscall in flight (C_INFLIGHT). Work is
// scheduled through an intrusive run queue: events and completions set flags
// and enqueue the connection; the scheduler runs queued connections while the
// submission queue has room. Nothing here performs I/O: "run" means "emit the
// next request".
import {
  OP_WRITE, OP_WRITEV, OP_SENDFILE, OP_SPLICE, SPLICE_F_MOVE, SPLICE_F_NONBLOCK, OP_CLOSE, OP_SEND, MSG_MORE, EV_READABLE, EV_WRITABLE,
  EV_EDGE, STAT_CLOSED, STAT_LIVE_CONNS, STAT_OVERFLOWS, STAT_BYTES_OUT,
  CFG_WRITE_BUF_MAX, MODE_ET, LOG_DEBUG, LOGEV_CONN_CLOSE, CONN_SIZE, PROTO_METRICS, CLOSE_CLIENT, CLOSE_SERVER, CLOSE_ERROR, CLOSE_OVERFLOW,
  CLOSE_SHUTDOWN, EPIPE, ECONNRESET, C_STATE, C_FLAGS, C_PROTO, C_NEXT, C_RBUF, C_RLEN, C_RPOS, C_WRING, C_WCLS, C_WHEAD, C_WLEN,
  C_INFLIGHT, C_IOV, C_BODY_KIND, C_BODY_PTR, C_BODY_FD, C_BODY_LEFT, C_BODY_OFF, C_IOVECS,
} from "../abi";
import { submit, roundRoom, SQ_FANOUT, ctlI32, ctlAddI32, ctlAddF64, memBase, now, setCurrentFd } from "./ctl";
import { readBufGive, ringTake, ringGive, ringClassFor } from "./pool";
import { handlerInstall, handlerRemove, setInterest } from "./handlers";
import { wheelAttach, wheelArm, wheelCancel } from "./wheel";
import { protoClose, protoBodyFinished } from "./protocol";
import { logOn, logBegin, logStr, logInt, logEnd } from "./log";
import { metricsClosed } from "./metrics";

export const CF_READABLE: i32 = 1;      // the socket may have input (LT: one read per event)
export const CF_WRITABLE: i32 = 2;      // WRITABLE seen since the last EAGAIN
export const CF_QUEUED: i32 = 4;        // in the run queue
export const CF_OUT_ARMED: i32 = 8;     // WRITABLE is in the backend's interest set
export const CF_EOF: i32 = 16;          // peer finished sending (read returned 0 / RDHUP)
export const CF_HUP: i32 = 32;          // the kernel reported the peer's FIN (RDHUP/HUP): a short read is not "drained"
export const CF_CLOSING: i32 = 64;      // close now
export const CF_READ_PAUSED: i32 = 128; // protocol does not want input now
export const CF_NO_READ: i32 = 256;     // READABLE out of the interest set whatever the output (a relay
                                        // side held back by backpressure, or not yet paired): no LT spin
export const CF_ACCEPTED: i32 = 512;    // accepted from a listener: counts against CFG_MAX_CONNECTIONS (listener.ts)
// Bits 24..27: why the connection is closing (abi.ts CLOSE_* + 1; 0: not said),
// for wasm_reactor_connections_closed_total{reason}: no byte of the record.
const CF_REASON_SHIFT = 24;
const CF_REASON_MASK: i32 = 15 << CF_REASON_SHIFT;

export const BODY_NONE = 0;
export const BODY_MEMORY = 1;
export const BODY_FILE = 2;
// A pipe's bytes (the tcp relay's splice mode): C_BODY_FD = the pipe's read
// end, C_BODY_LEFT = the bytes in it. Written with splice(pipe -> socket),
// never together with ring bytes (a splicing relay has none).
export const BODY_PIPE = 3;

export const PROTO_LISTENER = 100;

export let conns: usize = 0;
/** Graceful shutdown in progress: no new work, close when idle (see loop.ts). */
export let draining = false;
export function setDraining(): void { draining = true; }
export let etMode = false;
export let writeBufMax: i32 = 256 * 1024;
let runHead: i32 = -1;
let runTail: i32 = -1;

export function connsInit(maxFds: i32, mode: i32): void {
  conns = heap.alloc(<usize>maxFds * CONN_SIZE);
  // fresh linear memory is zeroed: no fill, so untouched records cost no RSS
  wheelAttach(conns, maxFds); // a zeroed record is an unarmed one
  etMode = mode == MODE_ET;
  const wmax = ctlI32(CFG_WRITE_BUF_MAX);
  writeBufMax = wmax > 0 ? wmax : 256 * 1024;
}

@inline export function conn(fd: i32): usize { return conns + <usize>fd * CONN_SIZE; }
@inline export function cget(fd: i32, off: i32): i32 { return load<i32>(conn(fd) + <usize>off); }
@inline export function cset(fd: i32, off: i32, v: i32): void { store<i32>(conn(fd) + <usize>off, v); }
@inline export function flags(fd: i32): i32 { return load<i32>(conn(fd) + C_FLAGS); }
@inline export function setFlag(fd: i32, f: i32): void { const c = conn(fd); store<i32>(c + C_FLAGS, load<i32>(c + C_FLAGS) | f); }
@inline export function clearFlag(fd: i32, f: i32): void { const c = conn(fd); store<i32>(c + C_FLAGS, load<i32>(c + C_FLAGS) & ~f); }

/** The interest (EV_* bits) a connection wants given its output state. */
@inline function connMask(fd: i32, out: bool): i32 {
  // Waiting to write while the protocol reads nothing (a response blocked on
  // WRITABLE, output owed after the peer's FIN): leave READABLE out, or a
  // level-triggered backend reports the unread input (or the FIN) on every
  // poll and the loop spins. The MOD that arms WRITABLE costs nothing extra.
  const f = flags(fd);
  let m = (out && (f & CF_READ_PAUSED)) || (f & CF_NO_READ) ? (out ? EV_WRITABLE : 0) : EV_READABLE | (out ? EV_WRITABLE : 0);
  if (etMode) m |= EV_EDGE;
  return m;
}

/** Opens a connection record for a built-in protocol and registers the fd. */
export function connOpen(fd: i32, kind: u8, proto: i32, state: i32): void {
  const c = conn(fd);
  // A connection closed while queued stays linked in the run queue (it is
  // skipped when its turn comes); if its fd number is reused at once, keep
  // the link, or everything queued behind it would be lost.
  const queued = load<i32>(c + C_FLAGS) & CF_QUEUED;
  const next = load<i32>(c + C_NEXT);
  wheelCancel(fd); // (a closed record is never armed; the fill must not cut a list)
  memory.fill(c, 0, CONN_SIZE);
  store<i32>(c + C_STATE, state);
  store<i32>(c + C_PROTO, proto);
  store<i32>(c + C_FLAGS, queued);
  store<i32>(c + C_NEXT, queued ? next : -1);
  handlerInstall(fd, kind, proto, connMask(fd, false));
  // The metrics listener's own connections are not the service's: left out
  // of its counters (and so of what a graceful shutdown waits for).
  if (proto != PROTO_LISTENER && proto != PROTO_METRICS) ctlAddI32(STAT_LIVE_CONNS, 1);
}

/** Says why the connection will close (CLOSE_*), replacing what was said before. */
export function connSetReason(fd: i32, reason: i32): void {
  const c = conn(fd);
  store<i32>(c + C_FLAGS, (load<i32>(c + C_FLAGS) & ~CF_REASON_MASK) | ((reason + 1) << CF_REASON_SHIFT));
}
/** The reason said so far (CLOSE_*), or -1. */
export function connReason(fd: i32): i32 { return ((flags(fd) & CF_REASON_MASK) >>> CF_REASON_SHIFT) - 1; }
/** A read or write ended the connection with `res` (0: EOF, or -errno): the peer's doing, or an error. */
export function connSetEndReason(fd: i32, res: i32): void {
  connSetReason(fd, res == 0 || res == -ECONNRESET || res == -EPIPE ? CLOSE_CLIENT : CLOSE_ERROR);
}


/** Sets the connection's interest (arming or disarming WRITABLE), if it changed. */
function kernelMask(fd: i32, out: bool): void {
  setInterest(fd, connMask(fd, out));
}

/** Re-derives the interest after a protocol changed CF_NO_READ (WRITABLE stays as armed). */
export function connRefreshInterest(fd: i32): void {
  kernelMask(fd, (flags(fd) & CF_OUT_ARMED) != 0);
}

// ---- run queue ----------------------------------------------------------

export function enqueue(fd: i32): void {
  const c = conn(fd);
  const f = load<i32>(c + C_FLAGS);
  if (f & CF_QUEUED) return;
  store<i32>(c + C_FLAGS, f | CF_QUEUED);
  store<i32>(c + C_NEXT, -1);
  if (runTail < 0) runHead = fd; else cset(runTail, C_NEXT, fd);
  runTail = fd;
}

export function runQueueEmpty(): bool { return runHead < 0; }

/** Pops the next queued connection, or -1. */
export function dequeue(): i32 {
  const fd = runHead;
  if (fd < 0) return -1;
  runHead = cget(fd, C_NEXT);
  if (runHead < 0) runTail = -1;
  clearFlag(fd, CF_QUEUED);
  return fd;
}

/** The run queue has no cycle and every queued connection is flagged (invariant check). */
export function runQueueSane(): bool {
  let n = 0;
  for (let fd = runHead; fd >= 0; fd = cget(fd, C_NEXT)) {
    if (!(flags(fd) & CF_QUEUED)) return false;
    if (++n > 1 << 24) return false;
  }
  return true;
}

/** True when the scheduler may run one more connection this round. */
@inline export function roomForOne(): bool { return roundRoom() >= SQ_FANOUT; }

// ---- deadlines (the timing wheel) ------------------------------------------
// A connection has one deadline, kept in the timing wheel (wheel.ts) through
// fields of its own record. Moving it later (activity on a keep-alive
// connection, several times per request) stores one tick in this record and
// touches nothing else: the entry moves when its slot comes up. Moving it
// earlier (a linger or connect deadline after an idle one) relinks it, O(1).

export function setDeadline(fd: i32, ms: f64): void {
  if (ms <= 0) { wheelCancel(fd); return; }
  const t = now();
  wheelArm(fd, t + ms, t);
}

export function clearDeadline(fd: i32): void {
  wheelCancel(fd);
}

// ---- output -------------------------------------------------------------

@inline export function outPending(fd: i32): bool {
  const c = conn(fd);
  return load<i32>(c + C_WLEN) > 0 || load<i32>(c + C_BODY_KIND) != BODY_NONE;
}

/**
 * Appends bytes to the connection's write ring, growing it by size class up
 * to the write-buffer limit. Returns false when the limit would be passed:
 * the caller closes the connection (slow-reader defence).
 */
@inline export function outAppend(fd: i32, src: usize, n: i32): bool { return outAppendUpTo(fd, src, n, writeBufMax); }

/** outAppend with a limit of its own (the metrics listener's responses are not a slow reader's backlog). */
export function outAppendUpTo(fd: i32, src: usize, n: i32, limit: i32): bool {
  if (n <= 0) return true;
  const c = conn(fd);
  const len = load<i32>(c + C_WLEN);
  if (len + n > limit) return false;
  let ring = <usize>load<i32>(c + C_WRING);
  let cls = load<i32>(c + C_WCLS);
  let size = ring == 0 ? 0 : 4096 << cls;
  if (len + n > size) {
    // Take a larger ring and linearise the old contents into it.
    const ncls = ringClassFor(len + n);
    const nring = ringTake(ncls);
    if (ring != 0) {
      ringCopyOut(ring, size, load<i32>(c + C_WHEAD), len, nring);
      ringGive(ring, cls);
    }
    ring = nring; cls = ncls; size = 4096 << cls;
    store<i32>(c + C_WRING, <i32>ring);
    store<i32>(c + C_WCLS, cls);
    store<i32>(c + C_WHEAD, 0);
  }
  const head = load<i32>(c + C_WHEAD);
  let tail = head + len;
  if (tail >= size) tail -= size;
  const first = min(n, size - tail);
  memory.copy(ring + <usize>tail, src, <usize>first);
  if (first < n) memory.copy(ring, src + <usize>first, <usize>(n - first));
  store<i32>(c + C_WLEN, len + n);
  return true;
}

/** Reserves `n` contiguous bytes at the ring's tail for a caller that formats in place. */
export function outReserve(fd: i32, n: i32): usize {
  const c = conn(fd);
  const len = load<i32>(c + C_WLEN);
  if (len + n > writeBufMax) return 0;
  let ring = <usize>load<i32>(c + C_WRING);
  let size = ring == 0 ? 0 : 4096 << load<i32>(c + C_WCLS);
  let tail = load<i32>(c + C_WHEAD) + len;
  if (tail >= size) tail -= size;
  if (ring == 0 || len + n > size || tail + n > size) {
    // Linearise into a ring big enough for contents + n at the end.
    const ncls = ringClassFor(len + n);
    const nring = ringTake(ncls);
    if (ring != 0) {
      ringCopyOut(ring, size, load<i32>(c + C_WHEAD), len, nring);
      ringGive(ring, load<i32>(c + C_WCLS));
    }
    store<i32>(c + C_WRING, <i32>nring);
    store<i32>(c + C_WCLS, ncls);
    store<i32>(c + C_WHEAD, 0);
    ring = nring;
    tail = len;
  }
  return ring + <usize>tail;
}

/** Commits `n` bytes formatted at the pointer outReserve returned. */
export function outCommit(fd: i32, n: i32): void {
  const c = conn(fd);
  store<i32>(c + C_WLEN, load<i32>(c + C_WLEN) + n);
}

function ringCopyOut(ring: usize, size: i32, head: i32, len: i32, dst: usize): void {
  const first = min(len, size - head);
  memory.copy(dst, ring + <usize>head, <usize>first);
  if (first < len) memory.copy(dst + <usize>first, ring, <usize>(len - first));
}

function ringConsume(fd: i32, n: i32): void {
  const c = conn(fd);
  const len = load<i32>(c + C_WLEN) - n;
  const cls = load<i32>(c + C_WCLS);
  if (len == 0) {
    ringGive(<usize>load<i32>(c + C_WRING), cls);
    store<i32>(c + C_WRING, 0);
    store<i32>(c + C_WHEAD, 0);
  } else {
    let head = load<i32>(c + C_WHEAD) + n;
    const size = 4096 << cls;
    if (head >= size) head -= size;
    store<i32>(c + C_WHEAD, head);
  }
  store<i32>(c + C_WLEN, len);
}

@inline function iov(c: usize, i: i32, ptr: usize, len: i32): void {
  const v = c + C_IOVECS + <usize>(i * 16);
  store<u64>(v, memBase() + <u64>ptr);
  store<u64>(v, <u64>len, 8);
}

/**
 * Emits the next write for pending output: ring bytes (one or two segments)
 * plus a memory body in one writev, or sendfile for a file body once the ring
 * is empty. Precondition: outPending(fd).
 */
export function outStep(fd: i32): void {
  const c = conn(fd);
  const len = load<i32>(c + C_WLEN);
  const bodyKind = load<i32>(c + C_BODY_KIND);
  if (len > 0) {
    const ring = <usize>load<i32>(c + C_WRING);
    const size = 4096 << load<i32>(c + C_WCLS);
    const head = load<i32>(c + C_WHEAD);
    const first = min(len, size - head);
    let n = 0;
    let total = 0;
    iov(c, n++, ring + <usize>head, first); total += first;
    if (first < len) { iov(c, n++, ring, len - first); total += len - first; }
    if (bodyKind == BODY_MEMORY) {
      const left = <i32>load<f64>(c + C_BODY_LEFT);
      iov(c, n++, <usize>load<i32>(c + C_BODY_PTR), left); total += left;
    }
    store<i32>(c + C_IOV, total);
    if (n == 1 && bodyKind == BODY_FILE) {
      // A head before a sendfile body: MSG_MORE holds the partial segment so
      // head and body share packets (TCP_NODELAY is on: nothing else would).
      submit(OP_SEND, fd, <i32>(ring + <usize>head), first, MSG_MORE, 0);
      store<i32>(c + C_INFLIGHT, OP_SEND);
    } else if (n == 1) {
      submit(OP_WRITE, fd, <i32>(ring + <usize>head), first, 0, 0);
      store<i32>(c + C_INFLIGHT, OP_WRITE);
    } else {
      submit(OP_WRITEV, fd, <i32>(c + C_IOVECS), n, 0, 0);
      store<i32>(c + C_INFLIGHT, OP_WRITEV);
    }
  } else if (bodyKind == BODY_MEMORY) {
    const left = <i32>load<f64>(c + C_BODY_LEFT);
    store<i32>(c + C_IOV, left);
    submit(OP_WRITE, fd, load<i32>(c + C_BODY_PTR), left, 0, 0);
    store<i32>(c + C_INFLIGHT, OP_WRITE);
  } else if (bodyKind == BODY_PIPE) {
    const left = <i32>load<f64>(c + C_BODY_LEFT); // at most one pipe's worth
    store<i32>(c + C_IOV, left);
    submit(OP_SPLICE, fd, fd, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK, load<i32>(c + C_BODY_FD));
    store<i32>(c + C_INFLIGHT, OP_SPLICE);
  } else {
    // sendfile: the kernel reads and advances the i64 offset in the record.
    const left = load<f64>(c + C_BODY_LEFT);
    const chunk = left > 1048576.0 ? 1048576 : <i32>left;
    store<i32>(c + C_IOV, chunk);
    submit(OP_SENDFILE, fd, load<i32>(c + C_BODY_FD), <i32>(c + C_BODY_OFF), chunk, 0);
    store<i32>(c + C_INFLIGHT, OP_SENDFILE);
  }
}

export const OUT_DONE = 0;     // everything pending was written
export const OUT_MORE = 1;     // progress; more to write now
export const OUT_BLOCKED = 2;  // the socket is full: WRITABLE armed, wait
export const OUT_FAILED = 3;   // EPIPE, ECONNRESET...: close

/** Accounts for a write completion; arms or disarms WRITABLE as needed. */
export function outDone(fd: i32, res: i32): i32 {
  const c = conn(fd);
  const op = load<i32>(c + C_INFLIGHT);
  store<i32>(c + C_INFLIGHT, 0);
  if (res < 0) {
    if (res == -11 /* EAGAIN */) { outBlocked(fd); return OUT_BLOCKED; }
    connSetEndReason(fd, res);
    return OUT_FAILED;
  }
  if (load<i32>(c + C_PROTO) != PROTO_METRICS) ctlAddF64(STAT_BYTES_OUT, <f64>res);
  let n = res;
  if (op != OP_SENDFILE && op != OP_SPLICE) {
    const r = min(n, load<i32>(c + C_WLEN));
    if (r > 0) ringConsume(fd, r);
    n -= r;
  }
  const kind = load<i32>(c + C_BODY_KIND);
  if (kind != BODY_NONE && n > 0) {
    // the rest went out of the body (sendfile advanced C_BODY_OFF itself)
    if (kind == BODY_MEMORY) store<i32>(c + C_BODY_PTR, load<i32>(c + C_BODY_PTR) + n);
    const left = load<f64>(c + C_BODY_LEFT) - <f64>n;
    store<f64>(c + C_BODY_LEFT, left);
    if (left <= 0) {
      // The protocol may queue the next step of a body made of several
      // (a multipart/byteranges part): the checks below then see it pending.
      store<i32>(c + C_BODY_KIND, BODY_NONE);
      bodyFinished(fd, true);
    }
  }
  if (!outPending(fd)) {
    if (flags(fd) & CF_OUT_ARMED) { clearFlag(fd, CF_OUT_ARMED); kernelMask(fd, false); }
    return OUT_DONE;
  }
  // A short write means the socket buffer is full: wait for WRITABLE rather
  // than spin into EAGAIN. (sendfile is chunked, so a full chunk is not short.)
  if (res < load<i32>(c + C_IOV)) { outBlocked(fd); return OUT_BLOCKED; }
  return OUT_MORE;
}

/** The socket took less than offered: arm WRITABLE (once) and wait. */
export function outBlocked(fd: i32): void {
  clearFlag(fd, CF_WRITABLE);
  if (!(flags(fd) & CF_OUT_ARMED)) { setFlag(fd, CF_OUT_ARMED); kernelMask(fd, true); }
}

// The protocol's bodyFinished hook: the body (C_BODY_*) is over, `sent` in
// full, or abandoned because the connection closes. After a body sent in
// full the hook may queue the next step of the same response (ring bytes
// with outAppend and/or a new C_BODY_*), which outDone then writes like any
// pending output; the ring is empty at that moment (it is written before the
// body). Otherwise it releases what the body used (file-cache reference,
// buffers).
function bodyFinished(fd: i32, sent: bool): void { protoBodyFinished(cget(fd, C_PROTO), fd, sent); }

// ---- close --------------------------------------------------------------

/**
 * Closes a connection now: releases its buffers, timer and handler slot and
 * emits close(2). The fd leaves epoll by itself when it is closed.
 */
export function connClose(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_STATE) == 0) return;
  setCurrentFd(fd);
  const accepted = (load<i32>(c + C_FLAGS) & CF_ACCEPTED) != 0;
  if (logOn(LOG_DEBUG)) { logBegin(LOGEV_CONN_CLOSE); logStr("close: fd "); logInt(fd); logEnd(LOG_DEBUG); }
  protoClose(load<i32>(c + C_PROTO), fd); // what the protocol holds goes back first
  const rb = <usize>load<i32>(c + C_RBUF);
  if (rb != 0) readBufGive(rb);
  const ring = <usize>load<i32>(c + C_WRING);
  if (ring != 0) ringGive(ring, load<i32>(c + C_WCLS));
  wheelCancel(fd);
  if (load<i32>(c + C_BODY_KIND) != BODY_NONE) {
    store<i32>(c + C_BODY_KIND, BODY_NONE);
    bodyFinished(fd, false);
  }
  handlerRemove(fd, true);
  store<i32>(c + C_STATE, 0);
  store<i32>(c + C_RBUF, 0);
  store<i32>(c + C_WRING, 0);
  store<i32>(c + C_WLEN, 0);
  submit(OP_CLOSE, fd, 0, 0, 0, 0);
  if (load<i32>(c + C_PROTO) != PROTO_METRICS) {
    ctlAddI32(STAT_CLOSED, 1);
    ctlAddI32(STAT_LIVE_CONNS, -1);
    // Said, or else: a shutdown's, the peer's (its FIN seen), the server's.
    let reason = connReason(fd);
    if (reason < 0) reason = draining ? CLOSE_SHUTDOWN : flags(fd) & (CF_EOF | CF_HUP) ? CLOSE_CLIENT : CLOSE_SERVER;
    metricsClosed(reason);
  }
  fdReleased(accepted);
}

/**
 * Closes a connection at its next turn in the run queue, which only runs as
 * many connections as the submission queue has room for: the way to close
 * many at once (shutdown) without overflowing it.
 */
export function connCloseSoon(fd: i32): void {
  setFlag(fd, CF_CLOSING);
  enqueue(fd);
}

/** Called when the write ring would overflow: the slow-reader defence. */
export function connOverflow(fd: i32): void {
  ctlAddI32(STAT_OVERFLOWS, 1);
  connSetReason(fd, CLOSE_OVERFLOW);
  connClose(fd);
}

// Hook for the listener (resume accepting after EMFILE, or below the
// connection cap: `accepted` says whether the fd was a client's); set by listener.ts.
let fdReleasedHook: (accepted: bool) => void = (accepted: bool): void => {};
export function setFdReleasedHook(f: (accepted: bool) => void): void { fdReleasedHook = f; }
function fdReleased(accepted: bool): void { fdReleasedHook(accepted); }

// ---- the receive buffer, for protocols that parse in place (http, metrics) ----

/** Moves unprocessed bytes (C_RPOS..C_RLEN) to the front of the receive buffer. */
export function connCompactRead(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  const pos = load<i32>(c + C_RPOS);
  if (pos == 0) return;
  const len = load<i32>(c + C_RLEN);
  memory.copy(b, b + <usize>pos, <usize>(len - pos));
  store<i32>(c + C_RLEN, len - pos);
  store<i32>(c + C_RPOS, 0);
}

/** Gives the receive buffer back to the pool (an idle connection holds none). */
export function connReleaseRead(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  if (b != 0) readBufGive(b);
  store<i32>(c + C_RBUF, 0);
  store<i32>(c + C_RLEN, 0);
  store<i32>(c + C_RPOS, 0);
}
