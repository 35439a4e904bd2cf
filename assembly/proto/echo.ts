// The echo protocol (seed 003, M1-M2): every byte read is written back.
//
// LT mode does one read per readiness event; ET mode reads until EAGAIN.
// A read's bytes go straight back to the socket from the receive buffer; what
// the kernel does not take is copied into the connection's write ring and
// WRITABLE is armed. A client that stops reading while it keeps sending grows
// the ring until CFG_WRITE_BUF_MAX, and is then disconnected; other clients
// are not affected. Idle connections close after CFG_IDLE_TIMEOUT.
import {
  OP_READ, OP_WRITE, OP_SHUTDOWN, EAGAIN, STAT_BYTES_IN, STAT_BYTES_OUT, CFG_IDLE_TIMEOUT, PROTO_ECHO, C_INFLIGHT, C_RBUF, C_RLEN,
  C_IOV,
} from "../abi";
import { submit, ctlI32, ctlAddF64 } from "../reactor/ctl";
import { readBufTake, readBufGive, readBufSize } from "../reactor/pool";
import {
  conn, cset, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppend, outBlocked, connClose,
  connCloseSoon, connOverflow, connSetEndReason, setDeadline, etMode, connOpen, CF_READABLE, CF_WRITABLE, CF_EOF, CF_OUT_ARMED,
  CF_READ_PAUSED, OUT_FAILED, OUT_DONE,
} from "../reactor/conn";
import { H_CONN } from "../reactor/handlers";
import { Protocol } from "../reactor/protocol";
import { budgetCharge, budgetLeft, budgetDefer } from "../reactor/budget";

const ES_OPEN = 1;
const OP_DIRECT_WRITE = 100; // a write straight from the receive buffer

let idleMs: f64 = 0;

/** Reads the config and returns echo's hooks (registered in assembly/protocols.ts). */
export function echoProtocol(): Protocol {
  idleMs = <f64>ctlI32(CFG_IDLE_TIMEOUT);
  const p = new Protocol();
  p.open = echoOpen;
  p.run = echoRun;
  p.complete = echoComplete;
  p.timeout = connClose; // idle: close without a word
  p.drain = echoDrain;
  return p;
}

export function echoOpen(fd: i32): void {
  connOpen(fd, H_CONN, PROTO_ECHO, ES_OPEN);
  setDeadline(fd, idleMs);
  // Optimistic first read: the client usually speaks first.
  setFlag(fd, CF_READABLE);
  enqueue(fd);
}

export function echoRun(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_INFLIGHT) != 0) return;
  const f = flags(fd);
  if (outPending(fd)) {
    if (f & CF_WRITABLE || !(f & CF_OUT_ARMED)) { outStep(fd); return; }
  } else if (f & CF_EOF) {
    connClose(fd);
    return;
  }
  if ((f & CF_READABLE) && !(f & CF_EOF)) {
    // Fairness: a fast sender (ET: read until EAGAIN) reads its share of
    // this tick, then the next tick's (CF_READABLE stays set meanwhile).
    if (!budgetLeft(fd)) { budgetDefer(fd); return; }
    const b = readBufTake(readBufSize); // bulk: the large size
    cset(fd, C_RBUF, <i32>b);
    submit(OP_READ, fd, <i32>b, readBufSize, 0, 0);
    store<i32>(c + C_INFLIGHT, OP_READ);
  }
}

export function echoComplete(fd: i32, op: i32, res: i32): void {
  if (op == OP_SHUTDOWN) return; // echo never shuts a socket down
  const c = conn(fd);
  const inflight = load<i32>(c + C_INFLIGHT);
  if (inflight == OP_READ) {
    store<i32>(c + C_INFLIGHT, 0);
    const b = <usize>load<i32>(c + C_RBUF);
    if (res > 0) {
      ctlAddF64(STAT_BYTES_IN, <f64>res);
      budgetCharge(fd, 0, res);
      setDeadline(fd, idleMs);
      // LT: one read per readiness event. ET: read until drained; a short
      // read means the socket was empty (new bytes raise a new edge), which
      // saves the final read that would return EAGAIN.
      if (!etMode || res < readBufSize) clearFlag(fd, CF_READABLE);
      if (!outPending(fd)) {
        // Straight back to the socket; the buffer stays ours until it completes.
        store<i32>(c + C_RLEN, res);
        store<i32>(c + C_IOV, res);
        submit(OP_WRITE, fd, <i32>b, res, 0, 0);
        store<i32>(c + C_INFLIGHT, OP_DIRECT_WRITE);
        return;
      }
      // Output is already queued: keep the order, append behind it. (Append
      // before releasing: a free buffer's first bytes hold the free-list link.)
      const ok = outAppend(fd, b, res);
      releaseReadBuf(fd, b);
      if (!ok) { connOverflow(fd); return; }
      enqueue(fd);
      return;
    }
    releaseReadBuf(fd, b);
    if (res == -EAGAIN) { clearFlag(fd, CF_READABLE); if (outPending(fd)) enqueue(fd); return; }
    if (res == 0) {
      // Peer finished sending: flush what we owe, then close. Nothing more
      // to read, so a blocked flush waits on WRITABLE alone (no LT spin on the FIN).
      setFlag(fd, CF_EOF | CF_READ_PAUSED);
      if (outPending(fd)) enqueue(fd); else connClose(fd);
      return;
    }
    connSetEndReason(fd, res);
    connClose(fd); // ECONNRESET and friends
    return;
  }
  if (inflight == OP_DIRECT_WRITE) {
    store<i32>(c + C_INFLIGHT, 0);
    const b = <usize>load<i32>(c + C_RBUF);
    const n = load<i32>(c + C_RLEN);
    if (res < 0 && res != -EAGAIN) { releaseReadBuf(fd, b); connSetEndReason(fd, res); connClose(fd); return; }
    const written = res < 0 ? 0 : res;
    if (written > 0) ctlAddF64(STAT_BYTES_OUT, <f64>written);
    if (written < n) {
      // The kernel took part of it: the rest waits in the ring for WRITABLE.
      const ok = outAppend(fd, b + <usize>written, n - written);
      releaseReadBuf(fd, b);
      if (!ok) { connOverflow(fd); return; }
      outBlocked(fd);
    } else {
      releaseReadBuf(fd, b);
    }
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  // a write from the ring
  const r = outDone(fd, res);
  if (r == OUT_FAILED) { connClose(fd); return; }
  if (r == OUT_DONE && (flags(fd) & CF_EOF)) { connClose(fd); return; }
  if (r != OUT_DONE || (flags(fd) & CF_READABLE)) enqueue(fd);
}

/** Graceful shutdown: close now, or once the bytes owed are flushed. */
export function echoDrain(fd: i32): void {
  if (!outPending(fd) && load<i32>(conn(fd) + C_INFLIGHT) == 0) { connCloseSoon(fd); return; }
  setFlag(fd, CF_EOF | CF_READ_PAUSED);
}

function releaseReadBuf(fd: i32, b: usize): void {
  readBufGive(b);
  cset(fd, C_RBUF, 0);
  cset(fd, C_RLEN, 0);
}
