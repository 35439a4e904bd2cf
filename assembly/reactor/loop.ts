// The loop, core side. The host's tick (host/loop.ts) reads:
//
//   runTimers() -> poll(pollTimeout()) -> dispatch(n) -> runDeferred()
//
// and after each of those calls it carries out the returned number of
// submissions and hands their results to complete(n), until a call returns 0.
// So every phase below is resumable: it emits a round of requests, returns,
// and continues from where it stopped when complete() is called. A phase
// yields early after every JS call (OP_CALL), because JS code may change the
// handler table, timers and tasks, and the core must look again afterwards.
import {
  OP_STOP, OP_SEND, OP_LIST, OP_CTL, OP_ACCEPT, OP_READ, OP_WRITE, OP_WRITEV, OP_SENDFILE, OP_CALL,
  OP_SHUTDOWN, SQE_A0, SQE_A3, CALL_IO, CALL_TIMER, CALL_TASK, CALL_CTL_ERROR, CFG_MAX_FDS, CFG_MODE,
  CFG_READ_BUF, CTL_CURRENT_FD, STAT_TIMERS, STAT_WBUF_BYTES, STAT_RBUF_HELD, STAT_TRAPS, STAT_TIMEOUTS,
  STAT_LIVE_CONNS, EINVAL, ENOMEM, EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP,
  CFG_ACCESS_LOG, INV_OK, INV_TIMER_HEAP, INV_ZOMBIE, INV_CONN_HANDLER, INV_RBUF_BOUNDS, INV_WRING_BOUNDS,
  INV_RUN_QUEUE, INV_RBUF_HELD, INV_RING_BYTES, C_STATE, C_PROTO, C_INFLIGHT, C_DEADLINE, C_TIMER, C_RBUF, C_RLEN,
  C_RPOS, C_WRING, C_WCLS, C_WLEN,
} from "../abi";
import {
  ctl, cfgText, ctlInit, sqSwap, roundRoom, ctlI32, ctlSetI32, ctlAddI32, sqLen, submit, sqeOp, sqeFd, sqeArg, cqeResult, sqRoom, now,
  events, eventStride, eventData, setCurrentFd, SQ_FANOUT,
} from "./ctl";
import { poolInit, readHeld, ringBytesHeld } from "./pool";
import {
  handlersInit, handlerAdd, handlerModify, handlerRemove, flushMods, endBatch, setDispatching, ctlFailed,
  slotAccepts, slotKind, slotId, slotFlags, reactorEvents, H_JS, H_LISTENER, H_CONN, maxFds, validFd, dispatching,
} from "./handlers";
import { tasksInit, taskPush, taskPassBegin, taskPassNext, tasksPending } from "./tasks";
import {
  connsInit, conn, cget, enqueue, dequeue, runQueueEmpty, roomForOne, setFlag, flags, connClose, CF_READABLE,
  CF_WRITABLE, PROTO_LISTENER, writeBufMax, runQueueSane, draining, setDraining, connCloseSoon,
  CF_CLOSING,
} from "./conn";
import { listenerAdd, listenerAccepted, listenersInit, listenersResume, listenersStop } from "./listener";
import { logRoundReset } from "./log";
import {
  timersInit, timerAdd, timerCancel, timerRearm, timerPopDue, timerFree, timerKind, timerOwner, timerInterval,
  timerDeadline, timerIsLive, timerCount, timerPollTimeout, timersCheck,
} from "./timers";
import { TimerKind } from "./timerkind";
import { readBufCap } from "./pool";
import {
  opOwner, protocolsSharedBytes, protoRun, protoComplete, protoTimeout, protoDrain, protoService, protoConnBytes,
} from "./protocol";

// phases
const PH_IDLE = 0;
const PH_TIMERS = 1;
const PH_DISPATCH = 2;
const PH_DEFERRED = 3;
const PH_FLUSH = 4;
let phase = PH_IDLE;

// timers phase: the due timers are collected first, then fired, so a
// repeating timer fires at most once per tick and a late one catches up one
// interval per tick instead of starving I/O.
let due: usize = 0;
let dueLen: i32 = 0;
let dueNext: i32 = 0;

// dispatch phase
let evCount: i32 = 0;
let evNext: i32 = 0;

// deferred phase
let tasksStarted = false;

// completion cursor: complete() may be re-entered after a trap (recover()).
let cqNext: i32 = 0;

let initialised = false;

/** Address of the control block; the host writes the config there, then calls init(). */
export function ctlAddress(): usize { return ctl; }
/** Address of the config text area (abi.ts CFGT_*), written by the host before init(). */
export function configText(): usize { return cfgText; }

/**
 * Sets the reactor up from the config; false if it already was. The
 * protocols register after it (index.ts init()).
 */
export function reactorInit(): bool {
  if (initialised) return false;
  initialised = true;
  ctlInit();
  const fds = ctlI32(CFG_MAX_FDS) > 0 ? ctlI32(CFG_MAX_FDS) : 1024;
  ctlSetI32(CFG_MAX_FDS, fds);
  poolInit(ctlI32(CFG_READ_BUF) > 0 ? ctlI32(CFG_READ_BUF) : 32768);
  ctlSetI32(CFG_READ_BUF, ctlI32(CFG_READ_BUF) > 0 ? ctlI32(CFG_READ_BUF) : 32768);
  handlersInit(fds);
  connsInit(fds, ctlI32(CFG_MODE));
  const timerCap = fds * 2 + 262144;
  timersInit(timerCap);
  due = heap.alloc(<usize>timerCap * 4);
  tasksInit(65536);
  listenersInit(ctlI32(CFG_ACCESS_LOG) != 0); // the access log shows the peer's address
  return true;
}

// ---- phases -------------------------------------------------------------

/** Phase 1: timers that are due at loop time. */
export function runTimers(): i32 {
  phase = PH_TIMERS;
  dueLen = 0;
  dueNext = 0;
  const t = now();
  for (let id = timerPopDue(t); id > 0; id = timerPopDue(t)) store<i32>(due + <usize>(dueLen++) * 4, id);
  return advance();
}

/** The epoll_wait timeout: 0 when work is waiting, else until the next timer. */
export function pollTimeout(): i32 {
  if (!runQueueEmpty() || tasksPending() > 0) return 0;
  return timerPollTimeout(now());
}

/** Phase 3: the host's epoll_wait wrote `n` events into the event area. */
export function dispatch(n: i32): i32 {
  phase = PH_DISPATCH;
  evCount = n;
  evNext = 0;
  setDispatching(true);
  return advance();
}

/** Phases 4 and 5: deferred modifications, then deferred tasks. */
export function runDeferred(): i32 {
  phase = PH_DEFERRED;
  tasksStarted = false;
  return advance();
}

/** Applies modifications made by JS outside any phase (e.g. before run()). */
export function flush(): i32 {
  if (phase != PH_IDLE) return 0;
  phase = PH_FLUSH;
  return advance();
}

/** The host carried out SQ[0..n) and wrote CQ[0..n). */
export function complete(n: i32): i32 {
  if (cqNext == 0) { sqSwap(n); logRoundReset(); roundNo++; }
  inCompletions = true;
  for (let i = cqNext; i < n; i++) {
    cqNext = i + 1;
    completeOne(i);
  }
  inCompletions = false;
  cqNext = 0;
  return advance();
}

/**
 * Fills the submission queue with the next round of the current phase.
 * Requests emitted between phases (listen(), a JS call made outside the loop)
 * are still queued and go out with it. Returns the number of requests; 0
 * means the phase is over.
 */
function advance(): i32 {
  if (doomedLen > 0) closeDoomed();
  if (ctlErrorCalled && sqLen > 0) {
    // A completion of this round called JS (a refused epoll_ctl): like after
    // every JS call, the phase goes on only once it has run.
    ctlErrorCalled = false;
  } else if (phase == PH_TIMERS) {
    if (fireTimers()) runConns();
  } else if (phase == PH_DISPATCH) {
    if (ingestEvents()) {
      // End of the batch: zombies die, pending handlers go live, the kernel
      // learns every change made during the batch.
      endBatch();
      if (flushMods()) runConns();
    }
  } else if (phase == PH_DEFERRED) {
    if (flushMods() && runConns()) runTasks();
  } else if (phase == PH_FLUSH) {
    if (flushMods()) runConns();
  }
  // Graceful shutdown: the last connection is gone, tell the host.
  if (draining && !stopSent && ctlI32(STAT_LIVE_CONNS) == 0 && sqRoom() > 0) {
    stopSent = true;
    submit(OP_STOP, -1, 0, 0, 0, 0);
  }
  if (sqLen == 0) phase = PH_IDLE;
  setCurrentFd(-1);
  publishStats();
  return sqLen;
}

/** Fires collected timers; false if it yielded (a JS call or a full SQ). */
function fireTimers(): bool {
  if (!flushMods()) return false;
  while (dueNext < dueLen) {
    if (roundRoom() < SQ_FANOUT) return false;
    const id = load<i32>(due + <usize>(dueNext++) * 4);
    if (!timerIsLive(id)) continue; // cancelled by an earlier callback
    const kind = timerKind(id);
    if (kind == TimerKind.JS) {
      const interval = timerInterval(id);
      // Drift-free: the next expiry is counted from this one, not from now.
      // Re-armed before the call so the callback may cancel it.
      if (interval > 0) timerRearm(id, timerDeadline(id) + interval);
      else timerFree(id);
      submit(OP_CALL, -1, CALL_TIMER, id, 0, 0);
      return false;
    } else if (kind == TimerKind.CONN) {
      connTimer(id, timerOwner(id));
    } else if (kind == TimerKind.ACCEPT_RESUME) {
      timerFree(id);
      listenersResume(true);
    } else if (kind == TimerKind.SHUTDOWN) {
      timerFree(id);
      closeAllConns(); // the grace period is over
    } else {
      timerFree(id);
    }
  }
  return true;
}

function connTimer(id: i32, fd: i32): void {
  if (!validFd(fd) || cget(fd, C_TIMER) != id || cget(fd, C_STATE) == 0) { timerFree(id); return; }
  const c = conn(fd);
  const deadline = load<f64>(c + C_DEADLINE);
  if (deadline == 0) { timerFree(id); store<i32>(c + C_TIMER, 0); return; }
  if (deadline > now()) { timerRearm(id, deadline); return; }
  timerFree(id);
  store<i32>(c + C_TIMER, 0);
  if (load<i32>(c + C_INFLIGHT) != 0) {
    // Cannot happen between ticks; if it does, keep a timer rather than none.
    const t = timerAdd(now() + 1000, 0, TimerKind.CONN, fd);
    store<i32>(c + C_TIMER, t > 0 ? t : 0);
    return;
  }
  setCurrentFd(fd);
  ctlAddI32(STAT_TIMEOUTS, 1);
  protoTimeout(cget(fd, C_PROTO), fd);
}

/** Hands events to handlers; false if it yielded for a JS call. */
function ingestEvents(): bool {
  while (evNext < evCount) {
    const e = events + <usize>(evNext * eventStride);
    evNext++;
    const ev = load<i32>(e);
    const fd = load<i32>(e + <usize>eventData);
    const gen = load<i32>(e + <usize>eventData + 4);
    if (!validFd(fd) || !slotAccepts(fd, gen)) continue; // stale: zombie, pending or reused fd
    const kind = slotKind(fd);
    if (kind == H_JS) {
      submit(OP_CALL, fd, CALL_IO, slotId(fd), reactorEvents(ev), 0);
      return false;
    }
    // Built-in handlers: note readiness, run after the batch.
    let f = 0;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) f |= CF_READABLE;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) f |= CF_WRITABLE;
    setFlag(fd, f);
    enqueue(fd);
  }
  return true;
}

/** Runs queued connections while the SQ has room; true when the queue is empty. */
function runConns(): bool {
  while (roomForOne()) {
    const fd = dequeue();
    if (fd < 0) return true;
    if (cget(fd, C_STATE) == 0) continue;
    setCurrentFd(fd);
    if (fd == trapFd) { trapFd = -1; unreachable(); }
    if (doomedLen > 0 && isDoomed(fd)) continue; // its state is suspect: it only gets closed
    if (flags(fd) & CF_CLOSING) {
      if (load<i32>(conn(fd) + C_INFLIGHT) == 0) connClose(fd); // else: after its completion
      continue;
    }
    protoRun(cget(fd, C_PROTO), fd); // listeners too: PROTO_LISTENER
  }
  return runQueueEmpty();
}

function runTasks(): void {
  if (!tasksStarted) { tasksStarted = true; taskPassBegin(); }
  const id = taskPassNext();
  if (id >= 0) submit(OP_CALL, -1, CALL_TASK, id, 0, 0);
}

function completeOne(i: i32): void {
  const op = sqeOp(i);
  const fd = sqeFd(i);
  const res = cqeResult(i);
  if (op == OP_CTL) {
    if (res < 0) {
      const id = ctlFailed(fd, sqeArg(i, SQE_A0), -res, sqeArg(i, SQE_A3));
      if (id >= 0) {
        // Tell JS (its handler is gone). The completion's follow-up budget
        // (SQ_FANOUT) has room for this one request.
        submit(OP_CALL, fd, CALL_CTL_ERROR, id, -res, sqeArg(i, SQE_A0));
        ctlErrorCalled = true;
      }
      // A built-in connection the kernel would not take is useless.
      if (validFd(fd) && slotKind(fd) == H_CONN && sqeArg(i, 8) != 2) { setCurrentFd(fd); connClose(fd); }
    }
    return;
  }
  if (op == OP_ACCEPT) { setCurrentFd(fd); listenerAccepted(fd, res, <usize>sqeArg(i, SQE_A0)); return; }
  // A host service a protocol owns goes to it whoever asked (protocol.ts).
  const owner = opOwner(op);
  if (owner != 0) { protoService(owner, i, op, fd, res); return; }
  if (op == OP_READ || op == OP_WRITE || op == OP_WRITEV || op == OP_SENDFILE || op == OP_SEND || op == OP_SHUTDOWN || op == OP_LIST) {
    if (!validFd(fd) || cget(fd, C_STATE) == 0) return;
    if (doomedLen > 0 && isDoomed(fd)) { store<i32>(conn(fd) + C_INFLIGHT, 0); return; } // trapped: closing
    setCurrentFd(fd);
    protoComplete(cget(fd, C_PROTO), fd, op, res);
  }
  // OP_CLOSE, OP_CALL, OP_LOG: nothing to do.
}

// A completion called JS (CALL_CTL_ERROR): advance() adds nothing more to
// the round, so nothing decided before JS ran is carried out after it.
let ctlErrorCalled = false;

function publishStats(): void {
  ctlSetI32(STAT_TIMERS, timerCount());
  ctlSetI32(STAT_WBUF_BYTES, ringBytesHeld);
  ctlSetI32(STAT_RBUF_HELD, readHeld);
}

// ---- after a trap -------------------------------------------------------
// A trap (a bug, or an abort) leaves the core mid-way through one connection.
// That connection is doomed: its completions are ignored and it is closed at
// the start of the next round. Everything else carries on.

// Doomed connections: {fd, round of the trap}, 8 bytes each.
const doomed: usize = memory.data(64 * 8);
let doomedLen = 0;
let roundNo = 0; // rounds carried out (complete() calls that start a round)
let inCompletions = false;
let trapFd = -1;

/**
 * Called by the host after a trap escaped a core call. Returns -1 if the trap
 * happened while consuming completions (call complete(n) again: it resumes
 * after the one that trapped), else the number of requests emitted so far in
 * this round (carry them out and call complete() as usual; the phase resumes).
 */
export function recover(): i32 {
  ctlAddI32(STAT_TRAPS, 1);
  const fd = ctlI32(CTL_CURRENT_FD);
  setCurrentFd(-1);
  if (validFd(fd) && cget(fd, C_STATE) != 0 && cget(fd, C_PROTO) != PROTO_LISTENER && doomedLen < 64) {
    const e = doomed + <usize>(doomedLen++) * 8;
    store<i32>(e, fd);
    store<i32>(e, roundNo, 4);
  }
  if (inCompletions) { inCompletions = false; return -1; }
  return sqLen;
}

function isDoomed(fd: i32): bool {
  for (let i = 0; i < doomedLen; i++) if (load<i32>(doomed + <usize>i * 8) == fd) return true;
  return false;
}

/**
 * Closes doomed connections once every request they may have emitted before
 * the trap has been carried out (two rounds later): closing releases their
 * buffers, and a read still pending into a released buffer would corrupt the
 * pool. The close goes through the run queue (it respects the round's room).
 */
function closeDoomed(): void {
  let kept = 0;
  for (let i = 0; i < doomedLen; i++) {
    const e = doomed + <usize>i * 8;
    const fd = load<i32>(e);
    if (roundNo < load<i32>(e, 4) + 2) {
      const k = doomed + <usize>(kept++) * 8;
      store<i32>(k, fd);
      store<i32>(k, load<i32>(e, 4), 4);
      continue;
    }
    if (cget(fd, C_STATE) != 0) {
      store<i32>(conn(fd) + C_INFLIGHT, 0);
      connCloseSoon(fd);
    }
  }
  doomedLen = kept;
}

/** Fault injection for tests and the fuzzer: trap once when fd is next run. */
export function debugTrapFd(fd: i32): void { trapFd = fd; }

// ---- the JS-facing reactor API -----------------------------------------
// Handlers, timers and tasks whose callbacks live in JS, keyed by id.

export function register(fd: i32, interest: i32, id: i32): i32 { return handlerAdd(fd, H_JS, id, interest); }
export function modify(fd: i32, interest: i32): i32 {
  if (validFd(fd) && slotKind(fd) != H_JS) return -EINVAL;
  return handlerModify(fd, interest);
}
export function deregister(fd: i32, closing: bool): i32 {
  // Built-in handlers are not JS's to remove; anything else goes through, so
  // that `closing` always purges queued changes for the fd.
  if (validFd(fd) && (slotKind(fd) == H_CONN || slotKind(fd) == H_LISTENER)) return -EINVAL;
  return handlerRemove(fd, closing);
}
/** A JS timer; returns its id (> 0) or -ENOMEM. */
export function timerStart(ms: f64, repeatMs: f64): i32 {
  const id = timerAdd(now() + (ms > 0 ? ms : 0), repeatMs > 0 ? repeatMs : 0, TimerKind.JS, 0);
  return id > 0 ? id : -ENOMEM;
}
export function timerStop(id: i32): bool {
  if (!timerIsLive(id) || timerKind(id) != TimerKind.JS) return false;
  return timerCancel(id);
}
export function defer(id: i32): bool { return taskPush(id); }

/** A listening socket of a built-in protocol (PROTO_ECHO, PROTO_HTTP). */
export function listen(fd: i32, proto: i32): i32 { return listenerAdd(fd, proto); }


// ---- invariants (fuzzer, replay --check) ---------------------------------

/**
 * Checks the core's structural invariants; returns INV_OK when they hold,
 * else the INV_* code (abi.ts) of the first that does not. INV_RING_BYTES
 * counts write rings, response buffers (listing, multipart) and cached file
 * bodies: a buffer leaked or given back twice. Never on the hot path.
 */
export function checkInvariants(): i32 {
  if (!timersCheck()) return INV_TIMER_HEAP;
  let held = 0;
  let ringBytes = protocolsSharedBytes(); // ring-pool bytes accounted for
  for (let fd = 0; fd < maxFds; fd++) {
    const kind = slotKind(fd);
    const hf = slotFlags(fd);
    if (!dispatching && (hf & 1 /* HF_ZOMBIE */) != 0) return INV_ZOMBIE;
    const c = conn(fd);
    const live = load<i32>(c + C_STATE) != 0;
    if ((hf & 1) == 0 && live != (kind == H_CONN || kind == H_LISTENER)) return INV_CONN_HANDLER;
    if (!live) continue;
    const rb = load<i32>(c + C_RBUF);
    const rlen = load<i32>(c + C_RLEN), rpos = load<i32>(c + C_RPOS);
    if (rb != 0) {
      held++;
      if (rpos < 0 || rpos > rlen || rlen > readBufCap(<usize>rb)) return INV_RBUF_BOUNDS;
    } else if (rlen != 0 || rpos != 0) return INV_RBUF_BOUNDS;
    const ring = load<i32>(c + C_WRING), wlen = load<i32>(c + C_WLEN);
    if (wlen < 0 || wlen > writeBufMax) return INV_WRING_BOUNDS;
    if (ring != 0 && wlen > (4096 << load<i32>(c + C_WCLS))) return INV_WRING_BOUNDS;
    if (ring == 0 && wlen != 0) return INV_WRING_BOUNDS;
    if (ring != 0) ringBytes += 4096 << load<i32>(c + C_WCLS);
    ringBytes += protoConnBytes(load<i32>(c + C_PROTO), fd);
  }
  if (held != readHeld) return INV_RBUF_HELD;
  if (ringBytes != ringBytesHeld) return INV_RING_BYTES;
  if (!runQueueSane()) return INV_RUN_QUEUE;
  return INV_OK;
}

/** Reads an i32 field of a connection record (tests and the fuzzer's reports). */
export function debugConnI32(fd: i32, off: i32): i32 { return validFd(fd) ? load<i32>(conn(fd) + <usize>off) : 0; }
/** Reads an f64 field of a connection record. */
export function debugConnF64(fd: i32, off: i32): f64 { return validFd(fd) ? load<f64>(conn(fd) + <usize>off) : 0; }

// ---- graceful shutdown -----------------------------------------------------

let stopSent = false;

/**
 * Starts a graceful shutdown (nginx's "graceful quit"): stop accepting, close
 * idle connections now, let requests in progress finish (HTTP answers them
 * with `Connection: close`), and after `graceMs` close whatever is left. When
 * no connection remains the core emits OP_STOP and the host ends the loop.
 * Returns the number of connections still open.
 */
export function beginShutdown(graceMs: f64): i32 {
  if (!draining) {
    setDraining();
    listenersStop();
    for (let fd = 0; fd < maxFds; fd++) {
      if (cget(fd, C_STATE) == 0 || cget(fd, C_PROTO) == PROTO_LISTENER) continue;
      setCurrentFd(fd);
      protoDrain(cget(fd, C_PROTO), fd);
    }
    setCurrentFd(-1);
    timerAdd(now() + (graceMs > 0 ? graceMs : 0), 0, TimerKind.SHUTDOWN, 0);
  }
  return ctlI32(STAT_LIVE_CONNS);
}

/**
 * Closes every connection now (the host is closing the loop: nothing may
 * stay open behind it). The closes go out with the next flush(). Returns
 * how many connections there were.
 */
export function closeAll(): i32 {
  const n = ctlI32(STAT_LIVE_CONNS);
  closeAllConns();
  return n;
}

function closeAllConns(): void {
  for (let fd = 0; fd < maxFds; fd++) {
    if (cget(fd, C_STATE) == 0 || cget(fd, C_PROTO) == PROTO_LISTENER) continue;
    connCloseSoon(fd);
  }
}
