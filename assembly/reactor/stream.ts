// Stream connections: a connected socket handed to the core by JS
// (Reactor.adopt), read and written by the core like the built-in
// protocols' (receive buffers, the write ring, one syscall in flight), with
// the bytes and the events going to JS callbacks. What it adds is
// backpressure that JS can see and that needs no disconnect:
//
//   - write watermarks: JS's writes go into the connection's write ring;
//     once it holds more than `high` bytes, reading from the connection
//     pauses (READABLE out of the interest set: CF_NO_READ), and write()
//     returns false (Node's socket.write contract). Once the ring is back
//     at `low` or below, reading resumes and JS gets one drain call
//     (CALL_STREAM_DRAIN). A drain comes only after a write was told
//     "over high", once per crossing, never otherwise.
//   - the slow-reader disconnect stays the last line of defence: a writer
//     that ignores false and passes CFG_WRITE_BUF_MAX is closed (ENOBUFS).
//   - the fairness budget (budget.ts): bytes read per tick.
//
// JS calls into this file from inside its callbacks, while the host carries
// out a round whose later requests may point into this connection's ring:
// so nothing here closes at once (destroy and end go through the run
// queue), and a write that must grow the ring while a write of it is in
// flight keeps the old ring alive until that write completes (S_OLD_RING).
//
// Protocol area (C_PROTO_AREA + ...):
//   +0  i32 S_ID        JS's id for the connection (CALL_STREAM_* a1)
//   +4  i32 S_HIGH      high watermark, bytes
//   +8  i32 S_LOW       low watermark, bytes
//   +12 i32 S_FLAGS     SX_*
//   +16 i32 S_OLD_RING  a ring still read by the write in flight (0: none)
//   +20 i32 S_OLD_CLS   its size class
//   +24 i32 S_REASON    errno the connection closes with (0: EOF or JS's own end/destroy)
import {
  OP_READ, OP_WRITE, OP_WRITEV, OP_CALL, OP_SHUTDOWN, EAGAIN, ENOBUFS, EBADF, EEXIST, EPIPE, STAT_BYTES_IN, C_PROTO_AREA, C_STATE,
  C_INFLIGHT, C_RBUF, C_RLEN, C_WRING, C_WCLS, C_WLEN, CFG_WRITE_BUF_MAX, FCFG_WRITE_HIGH, FCFG_WRITE_LOW,
  WRITE_HIGH_DEFAULT, CALL_STREAM_DATA, CALL_STREAM_DRAIN, CALL_STREAM_CLOSE, PROTO_STREAM,
} from "../abi";
import { submit, ctlI32, ctlAddF64 } from "./ctl";
import { readBufTake, readBufGive, readBufSize, ringTake, ringGive } from "./pool";
import {
  conn, cget, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppend, connClose, connCloseSoon,
  connOpen, connRefreshInterest, etMode, CF_READABLE, CF_WRITABLE, CF_EOF, CF_OUT_ARMED, CF_READ_PAUSED,
  CF_NO_READ, OUT_FAILED,
} from "./conn";
import { H_CONN, H_NONE, HF_ZOMBIE, slotKind, slotFlags, validFd } from "./handlers";
import { Protocol } from "./protocol";
import { budgetCharge, budgetLeft, budgetDefer, fairnessConfig } from "./budget";
import { doneA0, doneA1 } from "./inflight";

const S_ID = C_PROTO_AREA;
const S_HIGH = C_PROTO_AREA + 4;
const S_LOW = C_PROTO_AREA + 8;
const S_FLAGS = C_PROTO_AREA + 12;
const S_OLD_RING = C_PROTO_AREA + 16;
const S_OLD_CLS = C_PROTO_AREA + 20;
const S_REASON = C_PROTO_AREA + 24;

const SX_OVER_HIGH = 1;   // the ring passed high: reading paused
const SX_DRAIN_OWED = 2;  // a write was told "over high": one drain when the ring is back at low
const SX_END = 4;         // JS's end(): shut the write side once the ring is flushed
const SX_SHUT = 8;        // ... done: read on until the peer's EOF, then close
const SX_READ_TURN = 16;  // the ring is back at low: one read had its turn before the drain call

const SS_OPEN = 1;
const STAGE_SIZE: i32 = 65536;
const stage: usize = memory.data(STAGE_SIZE, 16);

let defaultHigh: i32 = WRITE_HIGH_DEFAULT;
let defaultLow: i32 = WRITE_HIGH_DEFAULT / 4;

export function streamProtocol(): Protocol {
  const wmax = ctlI32(CFG_WRITE_BUF_MAX) > 0 ? ctlI32(CFG_WRITE_BUF_MAX) : 256 * 1024;
  const h = load<i32>(fairnessConfig() + FCFG_WRITE_HIGH);
  const l = load<i32>(fairnessConfig() + FCFG_WRITE_LOW);
  defaultHigh = h > 0 ? h : min(WRITE_HIGH_DEFAULT, wmax / 2);
  defaultLow = l > 0 ? min(l, defaultHigh) : defaultHigh / 4;
  // The values in force, for the host (Connection.highWaterMark).
  store<i32>(fairnessConfig() + FCFG_WRITE_HIGH, defaultHigh);
  store<i32>(fairnessConfig() + FCFG_WRITE_LOW, defaultLow);
  const p = new Protocol();
  p.run = streamRun;
  p.complete = streamComplete;
  p.timeout = connClose;
  p.drain = streamShutdownDrain;
  p.close = streamClosed;
  p.connBytes = streamHeldBytes;
  return p;
}

// ---- the JS-facing calls (api.ts exports them) ------------------------------

/** The staging area JS copies write data into before streamWrite (STAGE_SIZE bytes). */
export function streamStage(): usize { return stage; }
export function streamStageSize(): i32 { return STAGE_SIZE; }

/** Takes over connected socket fd for JS stream id; high/low 0: the defaults. -> 0 or -errno. */
export function streamAdopt(fd: i32, id: i32, high: i32, low: i32): i32 {
  if (!validFd(fd)) return -EBADF;
  if ((slotKind(fd) != H_NONE && !(slotFlags(fd) & HF_ZOMBIE)) || cget(fd, C_STATE) != 0) return -EEXIST;
  connOpen(fd, H_CONN, PROTO_STREAM, SS_OPEN);
  const c = conn(fd);
  const hi = high > 0 ? high : defaultHigh;
  store<i32>(c + S_ID, id);
  store<i32>(c + S_HIGH, hi);
  store<i32>(c + S_LOW, low > 0 ? min(low, hi) : (high > 0 ? hi / 4 : defaultLow));
  setFlag(fd, CF_READABLE); // read at once: input may be waiting already (ET would not say so again)
  enqueue(fd);
  return 0;
}

@inline function mine(fd: i32, id: i32): bool {
  return validFd(fd) && cget(fd, C_STATE) != 0 && cget(fd, 8 /* C_PROTO */) == PROTO_STREAM && cget(fd, S_ID) == id;
}

/**
 * Appends n staged bytes to the write ring. -> the bytes buffered after it,
 * -EPIPE if the connection is gone or ending, -ENOBUFS if it passed the
 * write-buffer limit (the connection is closed: slow-reader defence).
 */
export function streamWrite(fd: i32, id: i32, n: i32): i32 {
  if (!mine(fd, id) || (cget(fd, S_FLAGS) & SX_END) || (flags(fd) & CF_EOF)) return -EPIPE;
  if (n < 0 || n > STAGE_SIZE) return -EPIPE;
  const c = conn(fd);
  const op = load<i32>(c + C_INFLIGHT);
  const ring = load<i32>(c + C_WRING);
  const len = load<i32>(c + C_WLEN);
  if (ring != 0 && (op == OP_WRITE || op == OP_WRITEV) && load<i32>(c + S_OLD_RING) == 0
      && len + n > (4096 << load<i32>(c + C_WCLS))) {
    // outAppend is about to grow the ring and give the old one back, but
    // the write in flight reads it: work on a copy, keep the old one.
    const cls = load<i32>(c + C_WCLS);
    const copy = ringTake(cls);
    memory.copy(copy, <usize>ring, <usize>(4096 << cls));
    store<i32>(c + S_OLD_RING, ring);
    store<i32>(c + S_OLD_CLS, cls);
    store<i32>(c + C_WRING, <i32>copy);
  }
  if (!outAppend(fd, stage, n)) {
    store<i32>(c + S_REASON, ENOBUFS);
    setFlag(fd, CF_NO_READ);
    connCloseSoon(fd); // closed from the run queue (a request of this round may still point at the ring)
    return -ENOBUFS;
  }
  const buffered = len + n;
  let sx = load<i32>(c + S_FLAGS);
  // At high or above, write() says false (Node's rule): a drain is owed,
  // and reading pauses until the ring is back at low.
  if (buffered >= load<i32>(c + S_HIGH)) sx |= SX_DRAIN_OWED | SX_OVER_HIGH;
  store<i32>(c + S_FLAGS, sx);
  enqueue(fd);
  return buffered;
}

/** Bytes in the connection's write ring (written by JS, not yet taken by the kernel); -EPIPE if gone. */
export function streamBuffered(fd: i32, id: i32): i32 {
  if (!mine(fd, id)) return -EPIPE;
  return cget(fd, C_WLEN);
}

/** JS's end(): no more writes; once what is buffered is written, FIN, and close at the peer's EOF. */
export function streamEnd(fd: i32, id: i32): i32 {
  if (!mine(fd, id)) return -EPIPE;
  store<i32>(conn(fd) + S_FLAGS, cget(fd, S_FLAGS) | SX_END);
  enqueue(fd);
  return 0;
}

/** JS's destroy(): close at the connection's next turn, buffered bytes dropped. */
export function streamDestroy(fd: i32, id: i32): i32 {
  if (!mine(fd, id)) return -EPIPE;
  setFlag(fd, CF_NO_READ);
  connCloseSoon(fd);
  return 0;
}

// ---- the protocol's hooks ----------------------------------------------------

function streamRun(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_INFLIGHT) != 0) return;
  // Reading paused at high: READABLE leaves the interest set, so a
  // level-triggered backend does not spin on input we do not read;
  // CF_READABLE keeps what ET said.
  const sx = load<i32>(c + S_FLAGS);
  const noRead = (sx & SX_OVER_HIGH) != 0;
  if (noRead != ((flags(fd) & CF_NO_READ) != 0)) {
    if (noRead) setFlag(fd, CF_NO_READ); else clearFlag(fd, CF_NO_READ);
    connRefreshInterest(fd);
  }
  const f = flags(fd);
  if (outPending(fd)) {
    if (f & CF_WRITABLE || !(f & CF_OUT_ARMED)) { outStep(fd); return; }
  } else if (f & CF_EOF) {
    connClose(fd);
    return;
  } else if ((sx & (SX_END | SX_SHUT)) == SX_END) {
    // end(): everything is written; FIN, then read on to the peer's EOF
    // (closing with its bytes unread would send a RST that can destroy
    // what we wrote, as nginx's lingering close avoids).
    submit(OP_SHUTDOWN, fd, 1 /* SHUT_WR */, 0, 0, 0);
    store<i32>(c + C_INFLIGHT, OP_SHUTDOWN);
    return;
  }
  const canRead = !noRead && (f & CF_READABLE) != 0 && !(f & CF_EOF);
  // Back at low after a write said "over high": the drain call, but a read
  // that can go has its turn first (else a writer that refills on every
  // drain would keep the input waiting for ever).
  if (sx & SX_DRAIN_OWED && !noRead && (!canRead || sx & SX_READ_TURN)) {
    store<i32>(c + S_FLAGS, sx & ~(SX_DRAIN_OWED | SX_READ_TURN));
    // In flight like a read: no read may go out in the round that runs the
    // drain callback, which may well write past high again.
    submit(OP_CALL, fd, CALL_STREAM_DRAIN, load<i32>(c + S_ID), 0, 0);
    store<i32>(c + C_INFLIGHT, OP_CALL);
    return;
  }
  if (!canRead) return;
  if (!budgetLeft(fd)) { budgetDefer(fd); return; }
  if (sx & SX_DRAIN_OWED) store<i32>(c + S_FLAGS, sx | SX_READ_TURN);
  const b = readBufTake(readBufSize);
  store<i32>(c + C_RBUF, <i32>b);
  submit(OP_READ, fd, <i32>b, readBufSize, 0, 0);
  store<i32>(c + C_INFLIGHT, OP_READ);
}

function streamComplete(fd: i32, op: i32, res: i32): void {
  const c = conn(fd);
  if (op == OP_SHUTDOWN) {
    store<i32>(c + C_INFLIGHT, 0);
    store<i32>(c + S_FLAGS, cget(fd, S_FLAGS) | SX_SHUT);
    setFlag(fd, CF_READABLE); // read on to the EOF (ET: what was pending is not reported again)
    enqueue(fd);
    return;
  }
  if (op == OP_READ) {
    store<i32>(c + C_INFLIGHT, 0);
    const b = <usize>load<i32>(c + C_RBUF);
    if (res > 0) {
      ctlAddF64(STAT_BYTES_IN, <f64>res);
      budgetCharge(fd, 0, res);
      if (!etMode || res < readBufSize) clearFlag(fd, CF_READABLE);
      // The bytes go to JS; the buffer stays ours until the call is done.
      store<i32>(c + C_RLEN, res);
      submit(OP_CALL, fd, CALL_STREAM_DATA, load<i32>(c + S_ID), res, <i32>b);
      store<i32>(c + C_INFLIGHT, OP_CALL);
      return;
    }
    releaseReadBuf(fd);
    if (res == -EAGAIN) {
      clearFlag(fd, CF_READABLE);
      if (outPending(fd) || cget(fd, S_FLAGS) & SX_DRAIN_OWED) enqueue(fd); // a drain waited for this read's turn
      return;
    }
    if (res == 0) {
      // The peer finished sending: flush what JS wrote, then close (onClose, no error).
      setFlag(fd, CF_EOF | CF_READ_PAUSED);
      if (outPending(fd)) enqueue(fd); else connClose(fd);
      return;
    }
    store<i32>(c + S_REASON, -res);
    connClose(fd);
    return;
  }
  if (op == OP_CALL) {
    // JS had the bytes (CALL_STREAM_DATA), or the drain (the loop routes only these here).
    store<i32>(c + C_INFLIGHT, 0);
    if (doneA0 == CALL_STREAM_DATA) releaseReadBuf(fd);
    enqueue(fd);
    return;
  }
  // a write from the ring
  const r = outDone(fd, res);
  const old = load<i32>(c + S_OLD_RING);
  if (old != 0) { ringGive(<usize>old, load<i32>(c + S_OLD_CLS)); store<i32>(c + S_OLD_RING, 0); }
  if (r == OUT_FAILED) { store<i32>(c + S_REASON, -res); connClose(fd); return; }
  const sx = load<i32>(c + S_FLAGS);
  // Back at the low watermark: reading resumes; the drain owed (if any) is
  // called from the run hook.
  if (sx & SX_OVER_HIGH && load<i32>(c + C_WLEN) <= load<i32>(c + S_LOW)) store<i32>(c + S_FLAGS, sx & ~SX_OVER_HIGH);
  enqueue(fd); // all written: maybe close (EOF), shut down (end), read, drain; else write on
}

/** A completion of OP_CALL is this connection's data or drain call (loop.ts asks before routing it here). */
export function streamCallIsData(fd: i32): bool {
  return (doneA0 == CALL_STREAM_DATA || doneA0 == CALL_STREAM_DRAIN) && validFd(fd) && cget(fd, C_STATE) != 0 && cget(fd, 8 /* C_PROTO */) == PROTO_STREAM
    && cget(fd, C_INFLIGHT) == OP_CALL && cget(fd, S_ID) == doneA1;
}

/** Graceful shutdown: close when nothing is owed, else once it is flushed. */
function streamShutdownDrain(fd: i32): void {
  if (!outPending(fd) && cget(fd, C_INFLIGHT) == 0) { connCloseSoon(fd); return; }
  store<i32>(conn(fd) + S_FLAGS, cget(fd, S_FLAGS) | SX_END);
}

/** connClose: give back the ring a write held, tell JS (CALL_STREAM_CLOSE, errno or 0). */
function streamClosed(fd: i32): void {
  const c = conn(fd);
  const old = load<i32>(c + S_OLD_RING);
  if (old != 0) { ringGive(<usize>old, load<i32>(c + S_OLD_CLS)); store<i32>(c + S_OLD_RING, 0); }
  submit(OP_CALL, fd, CALL_STREAM_CLOSE, load<i32>(c + S_ID), load<i32>(c + S_REASON), 0);
}

function streamHeldBytes(fd: i32): i32 {
  const c = conn(fd);
  return load<i32>(c + S_OLD_RING) != 0 ? 4096 << load<i32>(c + S_OLD_CLS) : 0;
}

function releaseReadBuf(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  if (b != 0) readBufGive(b);
  store<i32>(c + C_RBUF, 0);
  store<i32>(c + C_RLEN, 0);
}
