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
//
// The connection cap (CFG_MAX_CONNECTIONS): accepted connections are counted
// (CF_ACCEPTED; a proxy's upstream connections and probes are not), and a
// batch of accepts never asks for more than the room left. At the cap the
// listeners leave the backend's interest, as for EMFILE, and new
// connections wait in the kernel's listen queue (nginx's worker_connections
// and HAProxy's maxconn do the same: accept-and-close would turn a brief
// peak into refused clients); the first close below the cap re-arms them.
import {
  OP_ACCEPT, OP_CLOSE, INTEREST_MOD, EV_READABLE, EV_EDGE, EAGAIN, EMFILE, ENFILE, ENOBUFS, ENOMEM, STAT_ACCEPTED,
  STAT_ACCEPT_PAUSED, LOG_WARN, ACCEPT_ADDR_SIZE, SA_FAMILY, SA_LEN, SA_CAPACITY, C_PROTO_AREA, C_STATE, PROTO_METRICS,
  CFG_MAX_CONNECTIONS, LOG_DEBUG, LOGEV_ACCEPT_PAUSED, LOGEV_ACCEPT_RESUMED, LOGEV_CONN_LIMIT, LOGEV_CONN_OPEN,
} from "../abi";
import { peerSet } from "./peer";
import { submit, sqRoom, roundRoom, ctlAddI32, ctlSetI32, ctlI32, now, setCurrentFd } from "./ctl";
import { H_LISTENER, maxFds, handlerRemove, emitInterest } from "./handlers";
import {
  connOpen, cget, cset, enqueue, setFlag, clearFlag, flags, etMode, CF_READABLE, CF_ACCEPTED, PROTO_LISTENER,
  setFdReleasedHook,
} from "./conn";
import { logBegin, logStr, logInt, logEnd, logLine, logOn } from "./log";
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

// The connection cap. A "reached" line at most once a minute (warn), the rest
// at debug: a server that sits at its cap crosses it on every close.
const CAP_LOG_EVERY_MS: f64 = 60000;
let maxConns: i32 = 0;      // CFG_MAX_CONNECTIONS; 0: no cap
let clients: i32 = 0;       // accepted connections open
let acceptsOut: i32 = 0;    // accepts in flight, every listener
let full = false;           // at the cap: listeners out of the interest set
let capLoggedAt: f64 = -Infinity;
let capReached: i32 = 0;    // times the cap was reached since the last warn line

/** Accepted connections open now (they count against the cap). */
export function acceptedOpen(): i32 { return clients; }
/** CFG_MAX_CONNECTIONS as read at init; 0: no cap. */
export function connectionCap(): i32 { return maxConns; }

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
  if (paused || full) { disarmListeners(); return; } // a disarm that found no room is retried here
  if (cget(fd, L_OUTSTANDING) > 0 || !(flags(fd) & CF_READABLE)) return;
  // Adaptive batch: one accept when connections trickle in (no wasted
  // EAGAIN syscalls), doubling up to ACCEPT_BATCH while every accept of the
  // previous round returned a connection (bursts, C10K ramp-up).
  // runConns admitted this listener with at least SQ_FANOUT of round room,
  // so n >= 1: never re-enqueue without emitting (that would spin).
  let n = min(ACCEPT_BATCH, max(1, min(max(1, cget(fd, L_BATCH)), roundRoom())));
  if (maxConns > 0) {
    const room = maxConns - clients - acceptsOut;
    if (room <= 0) { capEnter(); return; }
    n = min(n, room);
  }
  acceptsOut += n;
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
  acceptsOut--;
  if (res >= 0) {
    if (cget(fd, C_STATE) == 0 || res >= maxFds) {
      // Shutting down (the listener is stopped), or beyond our tables
      // (maxFds is RLIMIT_NOFILE at start): refuse politely.
      submit(OP_CLOSE, res, 0, 0, 0, 0);
    } else {
      if (cget(fd, L_SERVES) != PROTO_METRICS) ctlAddI32(STAT_ACCEPTED, 1);
      cset(fd, L_CLEAN, cget(fd, L_CLEAN) + 1);
      if (shortageLogged) { shortageLogged = false; logLine(LOG_WARN, "accept: resumed", LOGEV_ACCEPT_RESUMED); }
      setCurrentFd(res);
      if (sa != 0) peerSet(res, sa);
      if (logOn(LOG_DEBUG)) { logBegin(LOGEV_CONN_OPEN); logStr("accept: fd "); logInt(res); logEnd(LOG_DEBUG); }
      protoOpen(cget(fd, L_SERVES), res);
      if (cget(res, C_STATE) != 0) { setFlag(res, CF_ACCEPTED); clients++; }
      if (maxConns > 0 && clients >= maxConns) capEnter();
    }
  } else if (res == -EAGAIN) {
    clearFlag(fd, CF_READABLE);
  } else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
    pause(-res);
  }
  // ECONNABORTED, EPROTO, EINTR...: that connection is gone; carry on.
  if (full) capLeave();
  if (left != 0) return;
  const clean = cget(fd, L_CLEAN);
  const issued = max(1, cget(fd, L_BATCH));
  cset(fd, L_BATCH, clean >= issued ? min(issued * 2, ACCEPT_BATCH) : max(1, clean));
  if (paused || full || !(flags(fd) & CF_READABLE)) return;
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
    logBegin(LOGEV_ACCEPT_PAUSED);
    logStr("accept: out of file descriptors (");
    logStr(err == EMFILE ? "EMFILE" : err == ENFILE ? "ENFILE" : "ENOBUFS");
    logStr("); pausing accepts until a connection closes");
    logEnd(LOG_WARN);
  }
  disarmListeners();
  timerAdd(now() + ACCEPT_RETRY_MS, 0, TimerKind.ACCEPT_RESUME, 0);
}

/** A connection closed: below the cap again, or fds to retry accepting with. */
function onFdReleased(accepted: bool): void {
  if (accepted) { clients--; if (full) capLeave(); }
  listenersResume(false);
}

/** The cap is reached: the listeners leave the interest set (connections wait in the listen queue). */
function capEnter(): void {
  if (full) return;
  full = true;
  capReached++;
  disarmListeners();
  const t = now();
  if (t - capLoggedAt >= CAP_LOG_EVERY_MS) {
    logBegin(LOGEV_CONN_LIMIT);
    logStr("connections: limit of "); logInt(maxConns);
    logStr(" reached; new connections wait in the listen queue until one closes");
    if (capReached > 1) { logStr(" (reached "); logInt(capReached); logStr(" times since the last such line)"); }
    logEnd(LOG_WARN);
    capLoggedAt = t;
    capReached = 0;
  } else if (logOn(LOG_DEBUG)) {
    logBegin(LOGEV_CONN_LIMIT); logStr("connections: limit of "); logInt(maxConns); logStr(" reached"); logEnd(LOG_DEBUG);
  }
}

/** Below the cap again (a close, or an accept that returned no connection): accepting resumes. */
function capLeave(): void {
  if (!full || clients + acceptsOut >= maxConns) return;
  full = false;
  if (logOn(LOG_DEBUG)) {
    logBegin(LOGEV_CONN_LIMIT); logStr("connections: below the limit of "); logInt(maxConns); logStr(" again; accepting"); logEnd(LOG_DEBUG);
  }
  if (!paused) armListeners(); // else the EMFILE resume re-arms them
}

// Whether the listeners are in the backend's interest set. Arming and
// disarming need room in the submission queue for one request per
// listener; without it they are tried again later (a disarm at the
// listener's next turn: a level-triggered backend reports it again; an arm
// from a short timer), so neither is ever lost.
let armed = true;
let armRetry = false;

function disarmListeners(): void {
  if (!armed || sqRoom() < listenerCount + 1) return;
  armed = false;
  for (let i = 0; i < listenerCount; i++) {
    const lfd = load<i32>(listeners + <usize>i * 4);
    if (cget(lfd, C_STATE) == 0) continue; // stopped (shutting down)
    emitInterest(lfd, INTEREST_MOD, 0);
  }
}

/** The listeners back in the interest set, and run at once: connections may be waiting (ET reports no old ones). */
function armListeners(): void {
  if (sqRoom() < listenerCount + 4) {
    if (!armRetry) { armRetry = true; timerAdd(now() + 10, 0, TimerKind.ACCEPT_RESUME, 0); }
    return;
  }
  for (let i = 0; i < listenerCount; i++) {
    const lfd = load<i32>(listeners + <usize>i * 4);
    if (cget(lfd, C_STATE) == 0) continue; // stopped (shutting down)
    if (!armed) emitInterest(lfd, INTEREST_MOD, etMode ? EV_READABLE | EV_EDGE : EV_READABLE);
    setFlag(lfd, CF_READABLE);
    enqueue(lfd);
  }
  armed = true;
}

/** Resumes accepting (a connection closed, or the retry timer fired). */
export function listenersResume(fromTimer: bool = false): void {
  if (fromTimer && armRetry) {
    armRetry = false;
    if (!paused && !full) armListeners();
  }
  if (!paused) return;
  if (sqRoom() < listenerCount + 4) {
    // No room this round: the next close retries, and so does a new timer
    // (the one that fired is gone, and no close may ever come).
    if (fromTimer) timerAdd(now() + 10, 0, TimerKind.ACCEPT_RESUME, 0);
    return;
  }
  paused = false;
  ctlSetI32(STAT_ACCEPT_PAUSED, 0);
  if (!full) armListeners();
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
  full = false;
}

/** `peers`: accepts ask for the peer's address (the access log wants it). */
export function listenersInit(peers: bool): void {
  setFdReleasedHook(onFdReleased);
  maxConns = max(0, ctlI32(CFG_MAX_CONNECTIONS));
  // Listeners are connections of the reactor's own protocol: the run queue
  // runs them like any other (they hold nothing else, and never time out).
  const p = new Protocol();
  p.run = listenerRun;
  protocolRegister(PROTO_LISTENER, p);
  if (peers) acceptAddrs = heap.alloc(<usize>(MAX_LISTENERS * ACCEPT_BATCH) * ACCEPT_ADDR_SIZE);
}

