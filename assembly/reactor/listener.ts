// Listening sockets of the built-in protocols. The host creates, binds and
// listens (setup is configuration, not policy); the core decides when to
// accept, how many at a time, and what to do when fds run out.
//
// EMFILE/ENFILE: accepting is paused (the listener's interest is set to
// nothing, so a level-triggered backend does not spin on the pending connection),
// logged once, and resumed when one of our connections closes or, failing
// that, after ACCEPT_RETRY_MS. A resume that runs straight into EMFILE again
// pauses again quietly: one line when the shortage starts, one when an accept
// succeeds again, however many retries lie between.
//
// Peer addresses (for the access log only): each accept of a batch gets its
// own ACCEPT_ADDR slot (abi.ts), listener index * ACCEPT_BATCH + i, carved at
// init (16 listeners x 32 accepts x 32 bytes = 16 KiB). A batch is issued
// only when the previous one has completed, so no slot is in use twice. The
// address moves to the peer table (peer.ts) when its accept succeeds.
import {
  OP_ACCEPT, OP_CLOSE, INTEREST_MOD, EV_READABLE, EV_EDGE, EAGAIN, EMFILE, ENFILE, ENOBUFS, ENOMEM, STAT_ACCEPTED,
  STAT_ACCEPT_PAUSED, LOG_WARN, ACCEPT_ADDR_SIZE, SA_FAMILY, SA_LEN, SA_CAPACITY, C_PROTO_AREA, C_STATE, PROTO_METRICS,
} from "../abi";
import { peerSet } from "./peer";
import { submit, sqRoom, roundRoom, ctlAddI32, ctlSetI32, now, setCurrentFd } from "./ctl";
import { H_LISTENER, maxFds, handlerRemove, emitInterest } from "./handlers";
import {
  connOpen, cget, cset, enqueue, setFlag, clearFlag, flags, etMode, CF_READABLE, PROTO_LISTENER,
  setFdReleasedHook,
} from "./conn";
import { logBegin, logStr, logEnd, logLine } from "./log";
import { timerAdd } from "./timers";
import { Protocol, protocolRegister, protocolKnown, protoOpen } from "./protocol";
import { TimerKind } from "./timerkind";

const L_SERVES = C_PROTO_AREA;       // protocol of accepted connections
const L_OUTSTANDING = C_PROTO_AREA + 4; // accepts in flight
const L_CLEAN = C_PROTO_AREA + 8;    // accepts of this round that returned a connection
const L_BATCH = C_PROTO_AREA + 12;   // accepts to issue next round (adaptive)
const L_INDEX = C_PROTO_AREA + 16;   // position in `listeners`: which address slots are its own
const L_STATE_OPEN = 1;

const ACCEPT_BATCH: i32 = 32;
export const ACCEPT_RETRY_MS: f64 = 1000;

// Listeners are few: keep their fds in a small list for pause/resume.
const MAX_LISTENERS = 16;
const listeners: usize = memory.data(MAX_LISTENERS * 4);
let listenerCount = 0;
let paused = false;
let shortageLogged = false; // the pause line went out; no accept has succeeded since
let acceptAddrs: usize = 0; // MAX_LISTENERS * ACCEPT_BATCH address slots; 0: no addresses asked for

export function listenerAdd(fd: i32, proto: i32): i32 {
  if (fd < 0 || fd >= maxFds || listenerCount == MAX_LISTENERS || proto == PROTO_LISTENER || !protocolKnown(proto)) return -1;
  connOpen(fd, H_LISTENER, PROTO_LISTENER, L_STATE_OPEN);
  cset(fd, L_SERVES, proto);
  cset(fd, L_INDEX, listenerCount);
  store<i32>(listeners + <usize>(listenerCount++) * 4, fd);
  // There may already be connections waiting (ET would never report them).
  setFlag(fd, CF_READABLE);
  enqueue(fd);
  return 0;
}

export function listenerRun(fd: i32): void {
  if (paused || cget(fd, L_OUTSTANDING) > 0 || !(flags(fd) & CF_READABLE)) return;
  // Adaptive batch: one accept when connections trickle in (no wasted
  // EAGAIN syscalls), doubling up to ACCEPT_BATCH while every accept of the
  // previous round returned a connection (bursts, C10K ramp-up).
  // runConns admitted this listener with at least SQ_FANOUT of round room,
  // so n >= 1: never re-enqueue without emitting (that would spin).
  const n = min(ACCEPT_BATCH, max(1, min(max(1, cget(fd, L_BATCH)), roundRoom())));
  for (let i = 0; i < n; i++) {
    let sa: usize = 0;
    if (acceptAddrs != 0) {
      sa = acceptAddrs + <usize>(cget(fd, L_INDEX) * ACCEPT_BATCH + i) * ACCEPT_ADDR_SIZE;
      store<u16>(sa + SA_FAMILY, 0); // the kernel writes it on success
      store<u32>(sa + SA_LEN, SA_CAPACITY);
    }
    submit(OP_ACCEPT, fd, <i32>sa, 0, 0, 0);
  }
  cset(fd, L_OUTSTANDING, n);
  cset(fd, L_CLEAN, 0);
}

/** One accept4 came back. `res` is the new fd or -errno; `sa` its address slot (0: none). */
export function listenerAccepted(fd: i32, res: i32, sa: usize): void {
  const left = cget(fd, L_OUTSTANDING) - 1;
  cset(fd, L_OUTSTANDING, left);
  if (res >= 0) {
    if (cget(fd, C_STATE) == 0 || res >= maxFds) {
      // Shutting down (the listener is stopped), or beyond our tables
      // (maxFds is RLIMIT_NOFILE at start): refuse politely.
      submit(OP_CLOSE, res, 0, 0, 0, 0);
    } else {
      if (cget(fd, L_SERVES) != PROTO_METRICS) ctlAddI32(STAT_ACCEPTED, 1);
      cset(fd, L_CLEAN, cget(fd, L_CLEAN) + 1);
      if (shortageLogged) { shortageLogged = false; logLine(LOG_WARN, "accept: resumed"); }
      setCurrentFd(res);
      if (sa != 0) peerSet(res, sa);
      protoOpen(cget(fd, L_SERVES), res);
    }
  } else if (res == -EAGAIN) {
    clearFlag(fd, CF_READABLE);
  } else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
    pause(-res);
  }
  // ECONNABORTED, EPROTO, EINTR...: that connection is gone; carry on.
  if (left != 0) return;
  const clean = cget(fd, L_CLEAN);
  const issued = max(1, cget(fd, L_BATCH));
  cset(fd, L_BATCH, clean >= issued ? min(issued * 2, ACCEPT_BATCH) : max(1, clean));
  if (paused || !(flags(fd) & CF_READABLE)) return;
  // The whole batch returned connections: there are probably more. ET must
  // drain to EAGAIN now. LT goes on at once only in a burst (a full batch of
  // several): a lone connection's accept is not followed by one that can
  // only return EAGAIN; the next poll reports the listener again if needed.
  if (etMode || (clean >= issued && issued > 1)) enqueue(fd);
  else clearFlag(fd, CF_READABLE);
}

function pause(err: i32): void {
  if (paused) return;
  paused = true;
  ctlSetI32(STAT_ACCEPT_PAUSED, 1);
  if (!shortageLogged) {
    shortageLogged = true;
    logBegin();
    logStr("accept: out of file descriptors (");
    logStr(err == EMFILE ? "EMFILE" : err == ENFILE ? "ENFILE" : "ENOBUFS");
    logStr("); pausing accepts until a connection closes");
    logEnd(LOG_WARN);
  }
  for (let i = 0; i < listenerCount; i++) {
    const lfd = load<i32>(listeners + <usize>i * 4);
    emitInterest(lfd, INTEREST_MOD, 0);
  }
  timerAdd(now() + ACCEPT_RETRY_MS, 0, TimerKind.ACCEPT_RESUME, 0);
}

function resumeOnClose(): void { listenersResume(false); }

/** Resumes accepting (a connection closed, or the retry timer fired). */
export function listenersResume(fromTimer: bool = false): void {
  if (!paused) return;
  if (sqRoom() < listenerCount + 4) {
    // No room this round: the next close retries, and so does a new timer
    // (the one that fired is gone, and no close may ever come).
    if (fromTimer) timerAdd(now() + 10, 0, TimerKind.ACCEPT_RESUME, 0);
    return;
  }
  paused = false;
  ctlSetI32(STAT_ACCEPT_PAUSED, 0);
  for (let i = 0; i < listenerCount; i++) {
    const lfd = load<i32>(listeners + <usize>i * 4);
    if (cget(lfd, C_STATE) == 0) continue; // stopped (shutting down)
    emitInterest(lfd, INTEREST_MOD, etMode ? EV_READABLE | EV_EDGE : EV_READABLE);
    setFlag(lfd, CF_READABLE);
    enqueue(lfd);
  }
}

/**
 * Graceful shutdown: stop accepting. The listeners leave the backend and the core;
 * their fds stay open (the host owns and closes them), so a client connecting
 * now waits in the backlog until the host closes the socket, then gets a reset.
 */
export function listenersStop(): void {
  for (let i = 0; i < listenerCount; i++) {
    const lfd = load<i32>(listeners + <usize>i * 4);
    if (cget(lfd, C_STATE) == 0) continue;
    // The metrics listener stays: /readyz must say 503 while the service drains.
    if (cget(lfd, L_SERVES) == PROTO_METRICS) continue;
    handlerRemove(lfd, false);
    cset(lfd, C_STATE, 0);
  }
  paused = false;
}

/** `peers`: accepts ask for the peer's address (the access log wants it). */
export function listenersInit(peers: bool): void {
  setFdReleasedHook(resumeOnClose);
  // Listeners are connections of the reactor's own protocol: the run queue
  // runs them like any other (they hold nothing else, and never time out).
  const p = new Protocol();
  p.run = listenerRun;
  protocolRegister(PROTO_LISTENER, p);
  if (peers) acceptAddrs = heap.alloc(<usize>(MAX_LISTENERS * ACCEPT_BATCH) * ACCEPT_ADDR_SIZE);
}

