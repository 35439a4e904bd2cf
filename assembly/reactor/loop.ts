// The loop, core side: the phases of one tick. The host's tick (host/loop.ts)
// reads like libuv's uv_run:
//
//   runTimers()           1. timers: fire those due at loop time; run queue
//   poll(pollTimeout())   2. poll: wait for events (0 ms when work is waiting)
//   dispatch(n)           3. dispatch: JS handlers are called, built-in
//                            connections flagged and queued; at the end of the
//                            batch, deferred modifications; run queue
//   runDeferred()         4. deferred modifications; run queue
//                         5. deferred tasks (JS)
//
// The run queue (runQueue) is the pass that closes phases 1, 3 and 4: every
// connection that an event, a completion or a timer made ready emits its
// next request, through its protocol's run hook (protocol.ts).
//
// After each of those calls the host carries out the returned number of
// submissions and hands their results to complete(n), until a call returns 0.
// So every phase below is resumable: it emits a round of requests, returns,
// and continues from where it stopped when complete() is called. A phase
// yields early after every JS call (OP_CALL), because JS code may change the
// handler table, timers and tasks, and the core must look again afterwards.
//
// Beside the phases: recovery.ts (after a trap), api.ts (the JS-facing API),
// shutdown.ts (graceful shutdown), invariants.ts (structural checks).
import {
  OP_SEND, OP_LIST, OP_CTL, OP_ACCEPT, OP_READ, OP_WRITE, OP_WRITEV, OP_SENDFILE, OP_SPLICE, OP_PIPE, OP_CALL, OP_SHUTDOWN,
  CALL_IO, CALL_TIMER, CALL_TASK, CALL_CTL_ERROR, CFG_MAX_FDS, CFG_MODE, CFG_READ_BUF, STAT_TIMERS,
  STAT_WBUF_BYTES, STAT_RBUF_HELD, STAT_TIMEOUTS, EV_READABLE, EV_WRITABLE, EV_ERROR, EV_HANGUP, CFG_ACCESS_LOG,
  EVENT_SIZE, EVENT_BITS, EVENT_FD, EVENT_GEN, INTEREST_DEL,
  C_STATE, C_PROTO, C_INFLIGHT, CTL_CQ_ROOM, CFG_PEER_ADDRS, CLOSE_IDLE_TIMEOUT,
} from "../abi";
import { metricsLag, metricsEvents } from "./metrics";
import {
  ctlInit, roundDone, handOut, roundRoom, ctlI32, ctlSetI32, ctlAddI32, sqLen, submit, cqeTag, cqeGen, cqeResult, now,
  events, setCurrentFd, SQ_FANOUT,
} from "./ctl";
import { poolInit, readHeld, ringBytesHeld } from "./pool";
import {
  handlersInit, flushMods, endBatch, setDispatching, ctlFailed, slotAccepts, slotKind, slotId, reactorEvents, H_JS,
  H_CONN, validFd, slotGen,
} from "./handlers";
import { tasksInit, taskPassBegin, taskPassNext, tasksPending } from "./tasks";
import {
  connsInit, conn, cget, enqueue, dequeue, runQueueEmpty, roomForOne, setFlag, flags, connClose, connCloseSoon, CF_READABLE,
  CF_WRITABLE, CF_CLOSING, CF_HUP, connReason, connSetReason,
} from "./conn";
import { listenerAccepted, listenersInit, listenersResume } from "./listener";
import { logRoundReset, logConfigure } from "./log";
import {
  timersInit, timerRearm, timerPopDue, timerFree, timerKind, timerOwner, timerInterval, timerDeadline,
  timerIsLive, timerCount, timerPollTimeout,
} from "./timers";
import { wheelAdvance, wheelDueHead, wheelDueTime, wheelPopDue, wheelArm, wheelTimeout, wheelCount } from "./wheel";
import { TimerKind } from "./timerkind";
import { opOwner, protoRun, protoComplete, protoTimeout, protoService, protoTimer } from "./protocol";
import { doomedLen, isDoomed, closeDoomed, trapFd, trapDoneFd, roundStarted, setInCompletions, trapNow, trapCompletionNow } from "./recovery";
import { shutdownDone, closeAllConns } from "./shutdown";
import { inflightFinish, doneOp, doneFd, doneA0, doneA2 } from "./inflight";
import { budgetInit, budgetTickBegin, budgetRequeue, budgetWaiting } from "./budget";
import { streamCallIsData } from "./stream";

// phases
enum Phase { IDLE, TIMERS, DISPATCH, DEFERRED, FLUSH, REAP }
let phase = Phase.IDLE;

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

/**
 * Sets the reactor up from the config; false if it already was. The
 * protocols register after it (index.ts init()).
 */
export function reactorInit(): bool {
  if (initialised) return false;
  initialised = true;
  ctlInit();
  logConfigure();
  const fds = ctlI32(CFG_MAX_FDS) > 0 ? ctlI32(CFG_MAX_FDS) : 1024;
  ctlSetI32(CFG_MAX_FDS, fds);
  poolInit(ctlI32(CFG_READ_BUF) > 0 ? ctlI32(CFG_READ_BUF) : 32768);
  ctlSetI32(CFG_READ_BUF, ctlI32(CFG_READ_BUF) > 0 ? ctlI32(CFG_READ_BUF) : 32768);
  handlersInit(fds);
  connsInit(fds, ctlI32(CFG_MODE));
  budgetInit(fds);
  const timerCap = fds * 2 + 262144;
  timersInit(timerCap);
  due = heap.alloc(<usize>timerCap * 4);
  tasksInit(65536);
  // The access log shows the peer's address; the proxy's ip-hash balances on it.
  listenersInit(ctlI32(CFG_ACCESS_LOG) != 0 || ctlI32(CFG_PEER_ADDRS) != 0);
  return true;
}

// ---- phases -------------------------------------------------------------

/** Phase 1: timers that are due at loop time. */
export function runTimers(): i32 {
  phase = Phase.TIMERS;
  dueLen = 0;
  dueNext = 0;
  const t = now();
  for (let id = timerPopDue(t); id > 0; id = timerPopDue(t)) store<i32>(due + <usize>(dueLen++) * 4, id);
  wheelAdvance(t); // connection deadlines: onto the wheel's due list, fired after these
  return advance();
}

/**
 * The backend wait's timeout: 0 when work is waiting (the run queue, tasks,
 * connections whose fairness budget ran out: budget.ts), else until the next timer.
 */
export function pollTimeout(): i32 {
  if (!runQueueEmpty() || tasksPending() > 0 || budgetWaiting()) return 0;
  // The earlier of the exact timers and the wheel's next tick with work (the
  // wheel coalesces: one wakeup per tick, however many deadlines it holds).
  const t = now();
  const heapWait = timerPollTimeout(t), wheelWait = wheelTimeout(t);
  if (heapWait < 0) return wheelWait;
  if (wheelWait < 0) return heapWait;
  return heapWait < wheelWait ? heapWait : wheelWait;
}

/** Phase 3: the host's backend wrote `n` event records into the event area. */
export function dispatch(n: i32): i32 {
  phase = Phase.DISPATCH;
  budgetTickBegin(); // a new tick: fresh fairness budgets
  metricsEvents(n);
  evCount = n;
  evNext = 0;
  setDispatching(true);
  return advance();
}

/** Phases 4 and 5: deferred modifications, then deferred tasks. */
export function runDeferred(): i32 {
  phase = Phase.DEFERRED;
  tasksStarted = false;
  return advance();
}

/** Applies modifications made by JS outside any phase (e.g. before run()). */
export function flush(): i32 {
  if (phase != Phase.IDLE) return 0;
  phase = Phase.FLUSH;
  return advance();
}

/**
 * The completion phase: the host wrote k completions of requests handed out
 * in earlier rounds (an executor that completes later: io_uring, a thread
 * pool) into CQ[0..k), at most CTL_CQ_ROOM. They are routed like any other;
 * the connections they make ready run. Returns the first round, as a phase.
 */
export function reaped(k: i32): i32 {
  if (phase != Phase.IDLE || k <= 0) return 0;
  phase = Phase.REAP;
  return complete(k);
}

/**
 * The host carried out the round it was handed and wrote n completions,
 * CQ[0..n), in any order: each goes to the owner of its tag's request.
 */
export function complete(n: i32): i32 {
  if (cqNext == 0) { roundDone(); logRoundReset(); roundStarted(); }
  setInCompletions(true);
  for (let i = cqNext; i < n; i++) {
    cqNext = i + 1;
    if (inflightFinish(cqeTag(i), cqeGen(i))) completeOne(cqeResult(i));
  }
  setInCompletions(false);
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
    // A completion of this round called JS (a refused interest change): like after
    // every JS call, the phase goes on only once it has run.
    ctlErrorCalled = false;
  } else if (phase == Phase.TIMERS) {
    if (fireTimers()) runQueue();
  } else if (phase == Phase.DISPATCH) {
    if (ingestEvents()) {
      // End of the batch: zombies die, pending handlers go live, the kernel
      // learns every change made during the batch.
      endBatch();
      // Connections whose budget ran out in the last tick run again, behind
      // the ones this batch made ready.
      budgetRequeue();
      if (flushMods()) runQueue();
    }
  } else if (phase == Phase.DEFERRED) {
    if (flushMods() && runQueue()) runTasks();
  } else if (phase == Phase.FLUSH || phase == Phase.REAP) {
    if (flushMods()) runQueue();
  }
  shutdownDone();
  if (sqLen == 0) phase = Phase.IDLE;
  setCurrentFd(-1);
  publishStats();
  return handOut();
}

/** Fires collected timers; false if it yielded (a JS call or a full SQ). */
function fireTimers(): bool {
  if (!flushMods()) return false;
  while (dueNext < dueLen) {
    if (roundRoom() < SQ_FANOUT) return false;
    const id = load<i32>(due + <usize>(dueNext++) * 4);
    if (!timerIsLive(id)) continue; // cancelled by an earlier callback
    metricsLag(now() - timerDeadline(id)); // loop lag: how late it fires (reactor/metrics.ts)
    const kind = timerKind(id);
    if (kind == TimerKind.JS) {
      const interval = timerInterval(id);
      // Drift-free: the next expiry is counted from this one, not from now.
      // Re-armed before the call so the callback may cancel it.
      if (interval > 0) timerRearm(id, timerDeadline(id) + interval);
      else timerFree(id);
      submit(OP_CALL, -1, CALL_TIMER, id, 0, 0);
      return false;
    } else if (kind == TimerKind.ACCEPT_RESUME) {
      timerFree(id);
      listenersResume(true);
    } else if (kind == TimerKind.SHUTDOWN) {
      timerFree(id);
      closeAllConns(); // the grace period is over
    } else if (kind == TimerKind.PROTO) {
      protoTimer(id, timerOwner(id)); // the hook re-arms or frees it
    } else {
      timerFree(id);
    }
  }
  // Connection deadlines the wheel found due (wheelAdvance), in tick order.
  while (wheelDueHead() >= 0) {
    if (roundRoom() < SQ_FANOUT) return false;
    const head = wheelDueHead(), dueAt = wheelDueTime(head);
    const fd = wheelPopDue(now()); // -1 if all that was left moved later meanwhile
    if (fd < 0) continue;
    // loop lag, as for the exact timers: how late its tick (the deadline rounded up to G) was processed
    if (fd == head && dueAt >= 0) metricsLag(now() - dueAt);
    connDeadline(fd);
  }
  return true;
}

/** A connection's deadline passed (it is no longer armed). */
function connDeadline(fd: i32): void {
  if (cget(fd, C_STATE) == 0) return; // (a closed record is never armed)
  if (cget(fd, C_INFLIGHT) != 0) {
    // Its request is still in flight (an executor that completes in a later
    // tick): look again in a second rather than close under it.
    const t = now();
    wheelArm(fd, t + 1000, t);
    return;
  }
  setCurrentFd(fd);
  ctlAddI32(STAT_TIMEOUTS, 1);
  if (connReason(fd) < 0) connSetReason(fd, CLOSE_IDLE_TIMEOUT); // the protocol may say more (a header timeout)
  protoTimeout(cget(fd, C_PROTO), fd);
}

/** Hands events to handlers; false if it yielded for a JS call. */
function ingestEvents(): bool {
  while (evNext < evCount) {
    const e = events + <usize>(evNext * EVENT_SIZE);
    evNext++;
    const ev = load<i32>(e, EVENT_BITS);
    const fd = load<i32>(e, EVENT_FD);
    const gen = load<i32>(e, EVENT_GEN);
    if (!validFd(fd) || !slotAccepts(fd, gen)) continue; // stale: zombie, pending or reused fd
    const kind = slotKind(fd);
    if (kind == H_JS) {
      submit(OP_CALL, fd, CALL_IO, slotId(fd), reactorEvents(ev), 0);
      return false;
    }
    // Built-in handlers: note readiness, run after the batch.
    let f = 0;
    // A hang-up or an error is news for both directions: the next read or
    // write returns 0 or the error (a spurious attempt only meets EAGAIN).
    if (ev & (EV_READABLE | EV_HANGUP | EV_ERROR)) f |= CF_READABLE;
    if (ev & (EV_WRITABLE | EV_HANGUP | EV_ERROR)) f |= CF_WRITABLE;
    // The FIN is reported once (ET): remembered, so a protocol that takes a
    // short read for "drained" still reads on to the EOF.
    if (ev & (EV_HANGUP | EV_ERROR)) f |= CF_HUP;
    setFlag(fd, f);
    enqueue(fd);
  }
  return true;
}

/**
 * The run-queue pass, which ends every phase: connections that events,
 * completions or timers made ready emit their next request, in queue order,
 * while the round has room (SQ_FANOUT each). True when the queue is empty;
 * else the phase resumes the pass in its next round.
 */
function runQueue(): bool {
  while (roomForOne()) {
    const fd = dequeue();
    if (fd < 0) return true;
    if (cget(fd, C_STATE) == 0) continue;
    setCurrentFd(fd);
    if (fd == trapFd) trapNow();
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

/** The completion of the request in done* (inflight.ts), with its result. */
function completeOne(res: i32): void {
  const op = doneOp;
  const fd = doneFd;
  const a0 = doneA0;
  if (op == OP_CTL) {
    if (res < 0) {
      const id = ctlFailed(fd, a0, -res, doneA2);
      if (id >= 0) {
        // Tell JS (its handler is gone). The completion's follow-up budget
        // (SQ_FANOUT) has room for this one request.
        submit(OP_CALL, fd, CALL_CTL_ERROR, id, -res, a0);
        ctlErrorCalled = true;
      }
      // A built-in connection the backend would not take is useless. If an op
      // of it is in flight (completions come in any order), its buffers stay
      // until that op completes: closed then, through the run queue. Only
      // the incarnation that asked: the fd may have been closed and reused
      // since (its completion came after the accept's).
      if (validFd(fd) && slotKind(fd) == H_CONN && a0 != INTEREST_DEL && <i32>slotGen(fd) == doneA2) {
        setCurrentFd(fd);
        if (load<i32>(conn(fd) + C_INFLIGHT) != 0) connCloseSoon(fd); else connClose(fd);
      }
    }
    return;
  }
  if (op == OP_ACCEPT) { setCurrentFd(fd); listenerAccepted(fd, res, <usize>a0); return; }
  // A host service a protocol owns goes to it whoever asked (protocol.ts).
  const owner = opOwner(op);
  if (owner != 0) { protoService(owner, op, fd, res); return; }
  if (op == OP_READ || op == OP_WRITE || op == OP_WRITEV || op == OP_SENDFILE || op == OP_SPLICE || op == OP_PIPE || op == OP_SEND || op == OP_SHUTDOWN || op == OP_LIST
      || (op == OP_CALL && streamCallIsData(fd))) { // a stream connection's bytes were with JS (stream.ts)
    if (!validFd(fd) || cget(fd, C_STATE) == 0) return;
    if (doomedLen > 0 && isDoomed(fd)) { store<i32>(conn(fd) + C_INFLIGHT, 0); return; } // trapped: closing
    if (flags(fd) & CF_CLOSING) {
      // Closing: it only waited for this op (runQueue), whose result no longer matters.
      store<i32>(conn(fd) + C_INFLIGHT, 0);
      enqueue(fd);
      return;
    }
    setCurrentFd(fd);
    if (fd == trapDoneFd) trapCompletionNow();
    protoComplete(cget(fd, C_PROTO), fd, op, res);
  }
  // OP_CLOSE, other OP_CALLs, OP_LOG: nothing to do.
}

// A completion called JS (CALL_CTL_ERROR): advance() adds nothing more to
// the round, so nothing decided before JS ran is carried out after it.
let ctlErrorCalled = false;

function publishStats(): void {
  // Each completion may emit SQ_FANOUT requests: room for that many.
  const room = roundRoom();
  ctlSetI32(CTL_CQ_ROOM, room > 0 ? room : 0);
  ctlSetI32(STAT_TIMERS, timerCount() + wheelCount());
  ctlSetI32(STAT_WBUF_BYTES, ringBytesHeld);
  ctlSetI32(STAT_RBUF_HELD, readHeld);
}
