// One thread of the io pool (host/io/threadpool.ts): takes request slots from
// the table's submission ring, carries each out as a blocking syscall
// (ops.ts perform(), koffi on this thread), writes its completion and
// publishes it on the completion ring; the first completion after the front
// went to sleep writes the completion eventfd (H_ARMED), the rest ride along.
//
// Sockets never hold a pool thread: recv/send/sendfile go nonblocking first
// (MSG_DONTWAIT, or the socket's own O_NONBLOCK); accept looks for readiness
// first; connect starts the handshake. A request that would wait is PARKED on
// this worker, and the worker goes on taking new requests. With requests
// parked and the queue empty it waits in ONE poll(2) over every parked socket
// plus its wake eventfd, which the front writes when it cancels one of this
// worker's requests (close(fd), stop(): ST_CANCELLED, then completed here with
// ECANCELED) or submits while no worker sleeps on the bell (W_POLLING says
// this worker is in that poll). Ready requests are retried; a thread waits on
// any number of sockets (before, one blocked poll per socket: with more idle
// sockets than threads, ready requests starved in the queue).
import { workerData } from "node:worker_threads";
import * as abi from "../../assembly/abi.ts";
import { libc, errno, addressOf } from "../libc.ts";
import { RequestTable, H_SQ_TAIL, H_SQ_HEAD, H_CQ_TAIL, H_ARMED, H_STOP, H_IDLE, H_EVENTFD, H_BELL, H_EXITED, W_POLLING, ST_QUEUED, ST_RUNNING, ST_CANCELLED } from "./table.ts";
import {
  perform, get64, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_RECV, IORING_OP_SEND, IORING_OP_ACCEPT, OP_SENDFILE,
  IORING_OP_CONNECT, W_OP, W_FD, W_OFF, W_TAG, C_TAG, C_RES, MSG_DONTWAIT,
} from "./ops.ts";

export interface WorkerInit { sab: SharedArrayBuffer; cap: number; index: number; wakeFd: number }

// wakeFd is made and closed by the front (no fd appears or goes behind its back, at any time).
const { sab, cap, index, wakeFd } = workerData as WorkerInit;
const t = new RequestTable(cap, sab);
const h = t.i32;
const POLLIN = 1, POLLOUT = 4;
const pollingWord = t.workerWord(index) + W_POLLING;
const eight = Buffer.alloc(8);
const one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
const soErr = Buffer.alloc(4);
const soLen = [4];

// The parked requests, in parking order: slot, fd, the poll events awaited,
// and what to do when the fd is ready (K_RETRY: the nonblocking call again;
// K_ACCEPT: accept4; K_CONNECT: read the handshake's outcome).
const K_RETRY = 0, K_ACCEPT = 1, K_CONNECT = 2;
const pSlot = new Int32Array(cap), pFd = new Int32Array(cap), pEvents = new Int16Array(cap), pKind = new Uint8Array(cap);
let parked = 0;
// struct pollfd {int fd; short events, revents} for every parked request, then the wake eventfd.
const pollBuf = new ArrayBuffer((cap + 1) * 8);
const pollView = new DataView(pollBuf);
const pollAddr = addressOf(pollBuf);

function park(slot: number, fd: number, events: number, kind: number): void {
  pSlot[parked] = slot; pFd[parked] = fd; pEvents[parked] = events; pKind[parked] = kind;
  parked++;
}

/** Is fd ready for `events` now? (poll with a zero timeout) */
function readyNow(fd: number, events: number): boolean {
  pollView.setInt32(0, fd, true); pollView.setInt16(4, events, true); pollView.setInt16(6, 0, true);
  return libc.poll(pollAddr, 1, 0) === 1;
}

/** One nonblocking attempt of a socket request (recv, send, read/write at the position, sendfile). */
function attempt(w: number, op: number): number {
  if (op === IORING_OP_READ || op === IORING_OP_WRITE) {
    // read/write at the position: a socket goes nonblocking; anything else (ENOTSOCK) blocks as asked.
    h[w + W_OP] = op === IORING_OP_READ ? IORING_OP_RECV : IORING_OP_SEND;
    const r = perform(h, w, MSG_DONTWAIT);
    h[w + W_OP] = op;
    return r === -88 /* ENOTSOCK */ ? perform(h, w) : r;
  }
  return perform(h, w, MSG_DONTWAIT);
}

function connectResult(fd: number): number {
  soLen[0] = 4;
  if (libc.getsockopt(fd, 1 /* SOL_SOCKET */, 4 /* SO_ERROR */, soErr, soLen) < 0) return -errno();
  const e = soErr.readInt32LE(0);
  return e ? -e : 0;
}

/**
 * Starts the slot's request: its result, or PARKED when it waits for its
 * socket (it is then in the parked set, completed later by service()).
 */
const PARKED = 1 << 30;
function start(slot: number, w: number): number {
  const op = h[w + W_OP] & 0xff, fd = h[w + W_FD];
  switch (op) {
    case IORING_OP_RECV: case IORING_OP_SEND: case IORING_OP_READ: case IORING_OP_WRITE: case OP_SENDFILE: {
      if ((op === IORING_OP_READ || op === IORING_OP_WRITE) && get64(h, w + W_OFF) >= 0) return perform(h, w);
      const r = attempt(w, op);
      if (r !== -abi.EAGAIN) return r;
      // sendfile's fd is its output socket: it waits to write, like send.
      park(slot, fd, op === IORING_OP_RECV || op === IORING_OP_READ ? POLLIN : POLLOUT, K_RETRY);
      return PARKED;
    }
    case IORING_OP_ACCEPT: {
      // Readiness first (a blocking listener's accept4 would hold the thread), then accept.
      if (readyNow(fd, POLLIN)) {
        const r = perform(h, w);
        if (r !== -abi.EAGAIN) return r;
      }
      park(slot, fd, POLLIN, K_ACCEPT);
      return PARKED;
    }
    case IORING_OP_CONNECT: {
      // A nonblocking socket: wait for the handshake (parked), then read its outcome.
      const r = perform(h, w);
      if (r !== -abi.EINPROGRESS) return r;
      park(slot, fd, POLLOUT, K_CONNECT);
      return PARKED;
    }
    default: return perform(h, w);
  }
}

/** Writes the slot's completion and publishes it (the first after the front went to sleep writes its eventfd). */
function publish(slot: number, res: number): void {
  const w = t.sqe(slot), c = t.cqe(slot);
  h[c + C_TAG] = h[w + W_TAG];
  h[c + C_TAG + 1] = h[w + W_TAG + 1];
  h[c + C_RES] = res;
  const at = Atomics.add(h, H_CQ_TAIL, 1);
  Atomics.store(h, (t.cqRing >> 2) + (at & t.ringMask), slot + 1);
  if (Atomics.exchange(h, H_ARMED, 0) === 1) {
    if (libc.writeBuf(Atomics.load(h, H_EVENTFD), one, 8) < 0) void errno();
  }
}

/**
 * One poll(2) over every parked request and the wake eventfd (timeout in ms,
 * -1: until something happens), then: cancelled requests complete with
 * ECANCELED, ready ones are retried (done: completed; EAGAIN again: still
 * parked). The set stays in parking order.
 */
function service(timeout: number): void {
  for (let i = 0; i < parked; i++) {
    pollView.setInt32(i * 8, pFd[i], true); pollView.setInt16(i * 8 + 4, pEvents[i], true); pollView.setInt16(i * 8 + 6, 0, true);
  }
  const wi = parked * 8;
  pollView.setInt32(wi, wakeFd, true); pollView.setInt16(wi + 4, POLLIN, true); pollView.setInt16(wi + 6, 0, true);
  if (timeout !== 0) {
    // Announced before the last look at the queue: a submission after it wakes us (threadpool.ts wakePoller()).
    Atomics.store(h, pollingWord, 1);
    if (Atomics.load(h, H_SQ_HEAD) !== Atomics.load(h, H_SQ_TAIL) || Atomics.load(h, H_STOP)) timeout = 0;
  }
  const n = libc.poll(pollAddr, parked + 1, timeout);
  Atomics.store(h, pollingWord, 0);
  if (pollView.getInt16(wi + 6, true)) libc.readBuf(wakeFd, eight, 8);
  let keep = 0;
  for (let i = 0; i < parked; i++) {
    const slot = pSlot[i];
    let res = PARKED;
    if (Atomics.load(h, t.stateWord(slot)) === ST_CANCELLED) res = -abi.ECANCELED;
    else if (n > 0 && pollView.getInt16(i * 8 + 6, true) !== 0) {
      const w = t.sqe(slot);
      if (pKind[i] === K_CONNECT) res = connectResult(pFd[i]);
      else {
        const r = pKind[i] === K_ACCEPT ? perform(h, w) : attempt(w, h[w + W_OP] & 0xff);
        if (r !== -abi.EAGAIN) res = r;
      }
    }
    if (res !== PARKED) { publish(slot, res); continue; }
    if (keep !== i) { pSlot[keep] = slot; pFd[keep] = pFd[i]; pEvents[keep] = pEvents[i]; pKind[keep] = pKind[i]; }
    keep++;
  }
  parked = keep;
}

/** The next queued slot, or -1 when the queue is empty. */
function tryTake(): number {
  for (;;) {
    const head = Atomics.load(h, H_SQ_HEAD), tail = Atomics.load(h, H_SQ_TAIL);
    if (head === tail) return -1;
    const slot = h[(t.sqRing >> 2) + (head & t.ringMask)];
    if (Atomics.compareExchange(h, H_SQ_HEAD, head, head + 1 | 0) === head) return slot;
  }
}

/** Nothing parked and nothing queued: sleep on the bell (a submission or a stop changes it). */
function idle(): void {
  // The bell is read first: a submission or a stop after this read changes
  // it, so the wait below returns at once instead of missing it.
  const bell = Atomics.load(h, H_BELL);
  if (Atomics.load(h, H_SQ_HEAD) !== Atomics.load(h, H_SQ_TAIL) || Atomics.load(h, H_STOP)) return;
  Atomics.add(h, H_IDLE, 1);
  Atomics.wait(h, H_BELL, bell);
  Atomics.sub(h, H_IDLE, 1);
}

// New requests between two looks at the parked set when the queue stays busy.
const BATCH = 32;
for (;;) {
  if (Atomics.load(h, H_STOP)) break;
  let taken = 0;
  for (let slot; taken < BATCH && (slot = tryTake()) >= 0; taken++) {
    const w = t.sqe(slot);
    // The owner before the state: a cancel that sees RUNNING must find this
    // worker's wake eventfd (stored after, a cancel in between read the slot's
    // previous owner and woke the wrong worker: a parked connect stayed parked).
    Atomics.store(h, t.ownerWord(slot), index);
    if (Atomics.compareExchange(h, t.stateWord(slot), ST_QUEUED, ST_RUNNING) !== ST_QUEUED) {
      publish(slot, -abi.ECANCELED); // cancelled before it started: no syscall
      continue;
    }
    const res = start(slot, w);
    if (res !== PARKED) publish(slot, res);
  }
  if (parked > 0) service(taken > 0 ? 0 : -1);
  else if (taken === 0) idle();
}
// The front closes wakeFd once every worker has exited (a late wake-up write never meets a reused fd number).
Atomics.add(h, H_EXITED, 1); // the front may be waiting for this at process exit
Atomics.notify(h, H_EXITED);
