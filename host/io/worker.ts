// One thread of the io pool (host/io/threadpool.ts): takes request slots from
// the table's submission ring, carries each out as a blocking syscall
// (ops.ts perform(), koffi on this thread), writes its completion and
// publishes it on the completion ring; the first completion after the front
// went to sleep writes the completion eventfd (H_ARMED), the rest ride along.
//
// Sockets never block a pool thread for good: recv/send/sendfile go
// nonblocking first (MSG_DONTWAIT, or the socket's own O_NONBLOCK) and, on
// EAGAIN, poll(2) the socket together with this worker's cancel eventfd, so
// that close(fd) or stop() interrupts the wait (the front sets ST_CANCELLED
// and writes that eventfd). accept polls first, then accepts.
import { workerData } from "node:worker_threads";
import * as abi from "../../assembly/abi.ts";
import { libc, errno, addressOf, EFD_CLOEXEC, EFD_NONBLOCK } from "../libc.ts";
import { RequestTable, H_SQ_TAIL, H_SQ_HEAD, H_CQ_TAIL, H_ARMED, H_STOP, H_IDLE, H_EVENTFD, H_BELL, H_EXITED, ST_QUEUED, ST_RUNNING, ST_CANCELLED } from "./table.ts";
import {
  perform, get64, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_RECV, IORING_OP_SEND, IORING_OP_ACCEPT, OP_SENDFILE,
  IORING_OP_CONNECT, W_OP, W_FD, W_OFF, W_TAG, C_TAG, C_RES, MSG_DONTWAIT,
} from "./ops.ts";

export interface WorkerInit { sab: SharedArrayBuffer; cap: number; index: number }

const { sab, cap, index } = workerData as WorkerInit;
const t = new RequestTable(cap, sab);
const h = t.i32;
const POLLIN = 1, POLLOUT = 4;
const cancelFd = libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
Atomics.store(h, t.workerWord(index), cancelFd);
const pollBuf = new ArrayBuffer(16); // two struct pollfd {int fd; short events, revents}
const pollView = new DataView(pollBuf);
const pollAddr = addressOf(pollBuf);
const eight = Buffer.alloc(8);
const one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
const soErr = Buffer.alloc(4);
const soLen = [4];

/** Waits until fd is ready for `events` or the cancel eventfd fires. */
function waitFor(fd: number, events: number): void {
  pollView.setInt32(0, fd, true); pollView.setInt16(4, events, true); pollView.setInt16(6, 0, true);
  pollView.setInt32(8, cancelFd, true); pollView.setInt16(12, POLLIN, true); pollView.setInt16(14, 0, true);
  libc.poll(pollAddr, 2, -1);
  if (pollView.getInt16(14, true)) libc.readBuf(cancelFd, eight, 8);
}

/** Carries out the slot's request; sockets wait interruptibly (see the top). */
function run(slot: number, w: number): number {
  const op = h[w + W_OP] & 0xff, fd = h[w + W_FD];
  const positional = get64(h, w + W_OFF) >= 0;
  const sw = t.stateWord(slot);
  switch (op) {
    case IORING_OP_RECV: case IORING_OP_SEND: case IORING_OP_READ: case IORING_OP_WRITE: case OP_SENDFILE: case IORING_OP_ACCEPT: {
      if ((op === IORING_OP_READ || op === IORING_OP_WRITE) && positional) return perform(h, w);
      for (;;) {
        if (Atomics.load(h, sw) === ST_CANCELLED) return -abi.ECANCELED;
        let r: number;
        if (op === IORING_OP_ACCEPT) {
          waitFor(fd, POLLIN);
          if (Atomics.load(h, sw) === ST_CANCELLED) return -abi.ECANCELED;
          r = perform(h, w);
        } else if (op === IORING_OP_READ || op === IORING_OP_WRITE) {
          // read/write at the position: a socket goes nonblocking; anything else (ENOTSOCK) blocks as asked.
          h[w + W_OP] = op === IORING_OP_READ ? IORING_OP_RECV : IORING_OP_SEND;
          r = perform(h, w, MSG_DONTWAIT);
          h[w + W_OP] = op;
          if (r === -88 /* ENOTSOCK */) return perform(h, w);
        } else {
          r = perform(h, w, MSG_DONTWAIT);
        }
        if (r !== -abi.EAGAIN) return r;
        // sendfile's fd is its output socket: it waits to write, like send.
        waitFor(fd, op === IORING_OP_RECV || op === IORING_OP_READ ? POLLIN : POLLOUT);
      }
    }
    case IORING_OP_CONNECT: {
      // A nonblocking socket: wait for the handshake (interruptibly), then read its outcome.
      const r = perform(h, w);
      if (r !== -abi.EINPROGRESS) return r;
      for (;;) {
        waitFor(fd, POLLOUT);
        if (Atomics.load(h, sw) === ST_CANCELLED) return -abi.ECANCELED;
        pollView.setInt32(0, fd, true); pollView.setInt16(4, POLLOUT, true); pollView.setInt16(6, 0, true);
        if (libc.poll(pollAddr, 1, 0) === 1) break;
      }
      soLen[0] = 4;
      if (libc.getsockopt(fd, 1 /* SOL_SOCKET */, 4 /* SO_ERROR */, soErr, soLen) < 0) return -errno();
      const e = soErr.readInt32LE(0);
      return e ? -e : 0;
    }
    default: return perform(h, w);
  }
}

function take(): number {
  for (;;) {
    // The bell is read first: a submission or a stop after this read changes
    // it, so the wait below returns at once instead of missing it.
    const bell = Atomics.load(h, H_BELL);
    const head = Atomics.load(h, H_SQ_HEAD), tail = Atomics.load(h, H_SQ_TAIL);
    if (Atomics.load(h, H_STOP)) return -1;
    if (head === tail) {
      Atomics.add(h, H_IDLE, 1);
      Atomics.wait(h, H_BELL, bell);
      Atomics.sub(h, H_IDLE, 1);
      continue;
    }
    const slot = h[(t.sqRing >> 2) + (head >>> 0) % cap];
    if (Atomics.compareExchange(h, H_SQ_HEAD, head, head + 1 | 0) === head) return slot;
  }
}

for (;;) {
  const slot = take();
  if (slot < 0) break;
  const w = t.sqe(slot);
  let res: number;
  if (Atomics.compareExchange(h, t.stateWord(slot), ST_QUEUED, ST_RUNNING) !== ST_QUEUED) {
    res = -abi.ECANCELED; // cancelled before it started: no syscall
  } else {
    Atomics.store(h, t.ownerWord(slot), index);
    res = run(slot, w);
  }
  const c = t.cqe(slot);
  h[c + C_TAG] = h[w + W_TAG];
  h[c + C_TAG + 1] = h[w + W_TAG + 1];
  h[c + C_RES] = res;
  const at = Atomics.add(h, H_CQ_TAIL, 1);
  Atomics.store(h, (t.cqRing >> 2) + (at >>> 0) % cap, slot + 1);
  if (Atomics.exchange(h, H_ARMED, 0) === 1) {
    if (libc.writeBuf(Atomics.load(h, H_EVENTFD), one, 8) < 0) void errno();
  }
}
libc.close(cancelFd);
Atomics.add(h, H_EXITED, 1); // the front may be waiting for this at process exit
Atomics.notify(h, H_EXITED);
