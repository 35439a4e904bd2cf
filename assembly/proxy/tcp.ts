// The tcp-mode proxy (seed 001, issue 10): accept a client, pick an upstream
// (proxy/balance.ts), connect, relay bytes both ways.
//
// A client and its upstream are two connections of this protocol (fd-indexed
// records, conn.ts), linked through X_PEER. The relay copies: a side's read
// lands in its receive buffer and is appended to the other side's write ring
// (one memcpy through linear memory; reading straight into the peer's ring
// would need the ring to never move under a write in flight, and a relay at
// GB/s is bound by the syscalls, not the copy). Backpressure: a side is not
// read while its peer's ring holds CFG_WRITE_BUF_MAX bytes; it resumes once
// the ring drained below half, so a pair holds at most two rings and two
// receive buffers however slow either end reads. A side that is not read
// leaves READABLE out of its interest (CF_NO_READ): no level-triggered spin.
//
// Connect (the sequence is proxy/link.ts's, shared with http mode and the
// probes): a connect that fails (refused, unreachable, timed out) before any
// byte was relayed is retried once on another upstream.
//
// Splice (CFG_RELAY = RELAY_SPLICE, the default; issue 10): once connected,
// each side gets a pipe (OP_PIPE) for the bytes it reads, which then never
// enter linear memory: splice(socket -> its pipe), splice(pipe -> the peer's
// socket) (the peer's output is a BODY_PIPE, written by conn.ts's outStep).
// A side splices in only while its pipe is empty: a pipe counts buffers (16),
// not bytes, so a splice into a part-full one can fail with EAGAIN while the
// socket still has data, which edge triggering would take for "drained".
// For the same reason a short splice-in is not "drained" (ET): only EAGAIN
// is. So a pair holds at most one pipe's bytes (<= one receive buffer, <=
// CFG_WRITE_BUF_MAX) per direction. A pair costs 6 fds instead of 2: at most
// maxFds / 4 pipes are open (HAProxy's maxpipes = maxconn / 4); a pair past
// that cap, or whose OP_PIPE failed (EMFILE...), relays by copy.
//
// Half-close: a FIN from one side (read 0) becomes shutdown(SHUT_WR) of the
// other once everything before it was written; when both sides sent theirs,
// both close. An error or reset on one side closes both. The idle timeout
// counts activity of either side (both deadlines move together).
import {
  OP_READ, OP_SHUTDOWN, OP_SOCKET, SOCKET_NODELAY, OP_CONNECT, EAGAIN, OP_CLOSE, OP_PIPE, OP_SPLICE, PIPE_FLAGS,
  SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_TO_PIPE, CFG_RELAY, RELAY_SPLICE, C_BODY_KIND, C_BODY_FD, C_BODY_LEFT,
  STAT_BYTES_IN, CFG_IDLE_TIMEOUT, CFG_PROXY_CONNECT_TIMEOUT, STAT_PROXY_NO_UPSTREAM, PROTO_PROXY_TCP,
  C_INFLIGHT, C_RBUF, C_RLEN, C_RPOS, C_WLEN, C_STATE, C_PROTO_AREA, BAL_IP_HASH, PXC_SIZE,
  PXC_MAX_UPSTREAMS, PXU_SIZE, PXU_WEIGHT, PXU_SA_LEN, PXU_SA,
} from "../abi";
import { submit, ctlI32, ctlAddI32, ctlAddF64, now, setCurrentFd } from "../reactor/ctl";
import { readBufTake, readBufGive, readBufSize, READ_SMALL } from "../reactor/pool";
import {
  conn, cget, cset, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppend, outBlocked, connClose,
  setDeadline, etMode, connOpen, connRefreshInterest, writeBufMax, CF_READABLE, CF_WRITABLE, CF_EOF,
  CF_OUT_ARMED, CF_HUP, CF_NO_READ, OUT_FAILED, BODY_NONE, BODY_PIPE, connCloseSoon,
} from "../reactor/conn";
import { H_CONN, maxFds } from "../reactor/handlers";
import { doomedLen, isDoomed } from "../reactor/recovery";
import { Protocol, protocolOwnsOp } from "../reactor/protocol";
import { peersOn, peersInit } from "../reactor/peer";
import {
  upstreamsReset, upstreamAdd, upstreamConnClosed, upstreamRequestStart, upstreamRequestEnd, upstreamSuccess,
  upstreamBytes, upstreamRetried,
} from "./upstreams";
import { balancePick, balanceInit, balancePolicy } from "./balance";
import {
  X_PEER, X_UP, X_XF, X_TRIES, XF_CLIENT, XF_PAUSED, SHUT_WR, xf, xset, xclear, peerOf, linkedBack, closeSafe, peerHash,
  roomIn, pause, resume, askSocket, askConnect, connectAgain, connectOutcome, connectCompleted, socketArrived,
  upstreamOpen, connectFailed as connectDropped, mayRetry, countTry, CONNECT_OK, CONNECT_WAIT,
} from "./link";

// states (C_STATE)
const S_CLIENT_PICK = 1;    // accepted; picks an upstream at its next run
const S_CLIENT_SOCKET = 2;  // OP_SOCKET in flight for it
const S_CLIENT_WAIT = 3;    // its upstream is connecting
const S_UP_CONNECTING = 4;  // an upstream: connect under way
const S_RELAY = 5;          // paired: bytes flow
const S_PIPING = 6;         // connected, splice mode: its pipe is being made (OP_PIPE in flight) or the peer's

// the protocol area: X_PEER, X_UP (both sides), X_XF, X_TRIES (client:
// connects tried) are link.ts's; then
const X_CONNECT_OP = C_PROTO_AREA + 16; // upstream: the connect attempt's start (f64 at +16..+23)
const X_PIPE_R = C_PROTO_AREA + 24;     // splice: the read end of the pipe this side's input goes through, -1: none
const X_PIPE_W = C_PROTO_AREA + 28;     // its write end (OP_PIPE writes both, read end first)
// X_XF bits besides link.ts's XF_CLIENT, XF_PAUSED
const XF_SHUT_WANTED = 4;  // the peer sent its FIN: shut our write side once our ring is drained
const XF_SHUT_DONE = 8;    // we sent our FIN (shutdown(SHUT_WR) completed)
const XF_SPLICE = 16;      // this side holds a pipe (counted in pipesOpen); with S_RELAY: the pair splices
const XF_SPLICING_IN = 32; // the OP_SPLICE in flight is the splice-in (socket -> pipe), not a splice-out

let idleMs: f64 = 0;
let connectMs: f64 = 0;
let policy: i32 = 0;
let splice = false;     // CFG_RELAY == RELAY_SPLICE
let pipesOpen: i32 = 0; // pipes held (or asked for) by sides with XF_SPLICE
let pipesMax: i32 = 0;

// Upstream config the host writes before init (abi.ts PXC_*). The counters
// per upstream are the upstream table's (upstreams.ts, UPSTAT_*).
const config: usize = memory.data(PXC_SIZE, 8);

/** Where the host writes the upstreams (abi.ts PXC_*) before init(). */
export function proxyConfig(): usize { return config; }

/**
 * Loads the upstream table from the record the host wrote (PXC_*) and the
 * balance settings (BCFG_*). Both proxy modes call it at init; loading again
 * gives the same table (one config), so the order they register in is free.
 */
export function proxyUpstreamsLoad(): void {
  upstreamsReset();
  const n = min(load<i32>(config), PXC_MAX_UPSTREAMS);
  for (let i = 0; i < n; i++) {
    const e = config + 4 + <usize>(i * PXU_SIZE);
    upstreamAdd(e + PXU_SA, load<i32>(e + PXU_SA_LEN), load<i32>(e + PXU_WEIGHT));
  }
  balanceInit(); // the policy, seed and health settings the host wrote (BCFG_*)
}

export function proxyTcpProtocol(): Protocol {
  idleMs = <f64>ctlI32(CFG_IDLE_TIMEOUT);
  connectMs = <f64>ctlI32(CFG_PROXY_CONNECT_TIMEOUT);
  proxyUpstreamsLoad();
  policy = balancePolicy();
  splice = ctlI32(CFG_RELAY) == RELAY_SPLICE;
  // 2 fds each: pipes take at most a quarter of the fd table, so with the table
  // full the relay still holds 3/4 of the pairs copy alone would (docs/proxy.md)
  pipesMax = maxFds / 8;
  if (policy == BAL_IP_HASH && !peersOn()) peersInit(maxFds); // accepts ask for addresses (loop.ts)
  const p = new Protocol();
  p.open = proxyOpen;
  p.run = proxyRun;
  p.complete = proxyComplete;
  p.timeout = proxyTimeout;
  p.close = proxyClose;
  p.service = proxyService;
  // drain: nothing. A pair finishes its transfer (nginx's stream module does
  // the same); the shutdown's grace timer closes what is left.
  protocolOwnsOp(PROTO_PROXY_TCP, OP_SOCKET);
  protocolOwnsOp(PROTO_PROXY_TCP, OP_CONNECT);
  return p;
}

export function proxyOpen(fd: i32): void {
  connOpen(fd, H_CONN, PROTO_PROXY_TCP, S_CLIENT_PICK);
  cset(fd, X_PEER, -1);
  cset(fd, X_UP, -1);
  cset(fd, X_XF, XF_CLIENT);
  // Not read until it is paired: its bytes wait in the kernel.
  setFlag(fd, CF_NO_READ);
  connRefreshInterest(fd);
  setDeadline(fd, idleMs);
  enqueue(fd);
}

/**
 * fd's peer was doomed by a trap (reactor/recovery.ts): its state is suspect
 * (a read whose completion trapped left its buffer marked as holding what it
 * asked for), so nothing is taken from it or handed to it. fd closes alone;
 * the recovery closes the doomed side once its requests are over. True when
 * that happened (the caller stops).
 */
function peerDoomed(fd: i32): bool {
  const peer = peerOf(fd);
  if (peer < 0 || doomedLen == 0 || !isDoomed(peer)) return false;
  cset(fd, X_PEER, -1);
  closeSafe(fd);
  return true;
}

/** Picks an upstream (not `exclude`) and asks for a socket; no usable one: the client closes. */
function startConnect(fd: i32, exclude: i32): void {
  const u = balancePick(policy, policy == BAL_IP_HASH ? peerHash(fd) : 0, exclude, now());
  if (u < 0) {
    ctlAddI32(STAT_PROXY_NO_UPSTREAM, 1);
    connClose(fd); // tcp mode has no 503
    return;
  }
  countTry(fd, u);
  cset(fd, C_STATE, S_CLIENT_SOCKET);
  askSocket(fd, u, SOCKET_NODELAY); // Nagle would hold a relayed reply's tail
}

/** OP_SOCKET and OP_CONNECT complete here (this protocol owns them). */
export function proxyService(op: i32, fd: i32, res: i32): void {
  if (op == OP_SOCKET) { socketDone(fd, res); return; }
  if (op == OP_CONNECT) {
    if (!connectCompleted(fd, S_UP_CONNECTING) || peerDoomed(fd)) return;
    setCurrentFd(fd);
    connectDone(fd, res);
  }
}

function socketDone(client: i32, res: i32): void {
  if (!socketArrived(client, res, S_CLIENT_SOCKET)) return;
  if (res < 0) { connClose(client); return; } // EMFILE...: this client cannot be served now
  const up = res;
  upstreamOpen(client, up, PROTO_PROXY_TCP, S_UP_CONNECTING, S_CLIENT_WAIT);
  store<f64>(conn(up) + X_CONNECT_OP, now());
  setDeadline(up, connectMs > 0 ? connectMs : idleMs);
  askConnect(up);
}

function connectDone(up: i32, res: i32): void {
  const o = connectOutcome(res);
  if (o == CONNECT_OK) { paired(up); return; }
  if (o == CONNECT_WAIT) {
    outBlocked(up); // WRITABLE (only: CF_NO_READ) reports the outcome
    return;
  }
  connectFailed(up, res);
}

/** The connect failed (res: -errno) or timed out: retry the client elsewhere once. */
function connectFailed(up: i32, res: i32): void {
  const u = cget(up, X_UP);
  const client = connectDropped(up, res, S_CLIENT_WAIT);
  if (client < 0) return;
  if (!mayRetry(client)) {
    ctlAddI32(STAT_PROXY_NO_UPSTREAM, 1);
    connClose(client);
    return;
  }
  upstreamRetried(u);
  cset(client, C_STATE, S_CLIENT_PICK);
  cset(client, X_PEER, -1);
  enqueue(client); // startConnect at its turn (the run queue has the room), excluding X_UP = u
}

/** Connected: both sides relay from now on. */
function paired(up: i32): void {
  const client = peerOf(up);
  const u = cget(up, X_UP);
  upstreamSuccess(u, now());
  upstreamRequestStart(u);
  if (splice && pipesOpen + 2 <= pipesMax) {
    pipesOpen += 2; // counted when asked: the cap holds with OP_PIPEs in flight
    for (let i = 0; i < 2; i++) {
      const fd = i == 0 ? up : client;
      cset(fd, C_STATE, S_PIPING);
      cset(fd, X_PIPE_R, -1); // stays -1 if pipe2 fails (it writes nothing then)
      cset(fd, X_PIPE_W, -1);
      xset(fd, XF_SPLICE);
      submit(OP_PIPE, fd, <i32>(conn(fd) + X_PIPE_R), 0, PIPE_FLAGS, 0);
      store<i32>(conn(fd) + C_INFLIGHT, OP_PIPE);
    }
    return;
  }
  relayStart(up, client);
}

/** fd's OP_PIPE completed: once the peer's did too, relay (by copy if either failed: EMFILE...). */
function pipeDone(fd: i32, res: i32): void {
  store<i32>(conn(fd) + C_INFLIGHT, 0);
  const peer = peerOf(fd);
  if (peer < 0) { closePair(fd); return; }
  if (cget(peer, C_INFLIGHT) == OP_PIPE) return; // the peer's pipe is still coming
  if (res < 0 || cget(fd, X_PIPE_R) < 0 || cget(peer, X_PIPE_R) < 0) { closePipes(fd); closePipes(peer); }
  relayStart(fd, peer);
}

/** Closes fd's pipe, if it holds one (close, trap recovery, the copy fallback). */
function closePipes(fd: i32): void {
  if (!(xf(fd) & XF_SPLICE)) return;
  xclear(fd, XF_SPLICE);
  pipesOpen--;
  const r = cget(fd, X_PIPE_R), w = cget(fd, X_PIPE_W);
  if (r >= 0) submit(OP_CLOSE, r, 0, 0, 0, 0);
  if (w >= 0) submit(OP_CLOSE, w, 0, 0, 0, 0);
  cset(fd, X_PIPE_R, -1);
  cset(fd, X_PIPE_W, -1);
}

/** Both sides relay from now on (splicing if both hold a pipe: XF_SPLICE). */
function relayStart(a: i32, b: i32): void {
  for (let i = 0; i < 2; i++) {
    const fd = i == 0 ? a : b;
    cset(fd, C_STATE, S_RELAY);
    clearFlag(fd, CF_NO_READ | CF_OUT_ARMED);
    setFlag(fd, CF_READABLE | CF_WRITABLE); // optimistic first reads: EAGAIN costs one call
    connRefreshInterest(fd);
    setDeadline(fd, idleMs);
    enqueue(fd);
  }
}

export function proxyRun(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_INFLIGHT) != 0) return;
  const state = load<i32>(c + C_STATE);
  if (state == S_CLIENT_PICK) {
    const tries = cget(fd, X_TRIES);
    startConnect(fd, tries > 0 ? cget(fd, X_UP) : -1);
    return;
  }
  if (state == S_UP_CONNECTING) { connectAgain(fd); return; }
  if (state != S_RELAY || peerDoomed(fd)) return;
  const f = flags(fd);
  const out = outPending(fd);
  if (out && (f & CF_WRITABLE || !(f & CF_OUT_ARMED))) { outStep(fd); return; }
  // Output blocked on WRITABLE: nothing in flight, so this side may still read
  // (full duplex: a client that sends while it does not read yet).
  const x = xf(fd);
  if (!out && (x & (XF_SHUT_WANTED | XF_SHUT_DONE)) == XF_SHUT_WANTED && !peerHolds(fd)) {
    submit(OP_SHUTDOWN, fd, SHUT_WR, 0, 0, 0);
    store<i32>(c + C_INFLIGHT, OP_SHUTDOWN);
    return;
  }
  if ((f & (CF_EOF | CF_READABLE)) == (CF_EOF | CF_READABLE) && !out && load<i32>(c + C_RBUF) == 0) {
    // A side past its FIN is watched for nothing, but an error or hang-up is
    // always reported (a level-triggered backend: on every poll): one read
    // tells a reset (-> close the pair) from a stale readiness (0: nothing).
    clearFlag(fd, CF_READABLE);
    const b = readBufTake(READ_SMALL);
    cset(fd, C_RBUF, <i32>b);
    store<i32>(c + C_RLEN, READ_SMALL);
    submit(OP_READ, fd, <i32>b, READ_SMALL, 0, 0);
    store<i32>(c + C_INFLIGHT, OP_READ);
    return;
  }
  if ((f & CF_READABLE) && !(f & (CF_EOF | CF_NO_READ)) && load<i32>(c + C_RBUF) == 0) {
    const peer = peerOf(fd);
    if (peer < 0) return;
    if (x & XF_SPLICE) { spliceIn(fd, peer); return; }
    const room = writeBufMax - cget(peer, C_WLEN);
    if (room <= 0) { pause(fd); return; }
    const b = readBufTake(readBufSize);
    cset(fd, C_RBUF, <i32>b);
    const n = min(room, readBufSize);
    store<i32>(c + C_RLEN, n); // asked; the completion sets what came
    submit(OP_READ, fd, <i32>b, n, 0, 0);
    store<i32>(c + C_INFLIGHT, OP_READ);
  }
}

/**
 * Splices what fd's socket holds into its pipe, once the pipe is empty (the
 * peer wrote all of it out: its BODY_PIPE is over). Until then an LT side is
 * paused, or each poll reports its input again; an ET side just waits (its
 * READABLE stays; the peer's drain runs it again).
 */
function spliceIn(fd: i32, peer: i32): void {
  if (cget(peer, C_BODY_KIND) != BODY_NONE) { if (!etMode) pause(fd); return; }
  xset(fd, XF_SPLICING_IN);
  submit(OP_SPLICE, fd, cget(fd, X_PIPE_W), min(readBufSize, writeBufMax), SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_TO_PIPE, fd);
  store<i32>(conn(fd) + C_INFLIGHT, OP_SPLICE);
}

function spliceInDone(fd: i32, res: i32): void {
  store<i32>(conn(fd) + C_INFLIGHT, 0);
  xclear(fd, XF_SPLICING_IN);
  if (res > 0) {
    ctlAddF64(STAT_BYTES_IN, <f64>res);
    const peer = peerOf(fd);
    if (peer < 0) { closePair(fd); return; } // (cannot happen: a side without its peer is past its FIN)
    setDeadline(fd, idleMs);
    setDeadline(peer, idleMs);
    // LT: one read per readiness event. ET: on until EAGAIN (a short splice
    // may be the pipe's 16 buffers filled by small segments, not a drained socket).
    if (!etMode) clearFlag(fd, CF_READABLE);
    const p = conn(peer);
    store<i32>(p + C_BODY_KIND, BODY_PIPE);
    store<i32>(p + C_BODY_FD, cget(fd, X_PIPE_R));
    store<f64>(p + C_BODY_LEFT, <f64>res);
    enqueue(peer);
    enqueue(fd); // it may have output of its own
    return;
  }
  if (res == -EAGAIN) { clearFlag(fd, CF_READABLE); enqueue(fd); return; }
  if (res < 0) { closePair(fd); return; }
  finReceived(fd);
}

/** Bytes of the peer's still waiting to be appended to our ring (its receive buffer). */
@inline function peerHolds(fd: i32): bool {
  const peer = peerOf(fd);
  return peer >= 0 && cget(peer, C_RBUF) != 0 && cget(peer, C_RPOS) < cget(peer, C_RLEN) && cget(peer, C_INFLIGHT) != OP_READ;
}

/**
 * Moves what fd read (its receive buffer, from C_RPOS) into its peer's ring,
 * as much as fits. While the peer has a write in flight its ring must not
 * move (a larger ring is a copy elsewhere), so only its free space is used;
 * the rest waits for the write's completion.
 */
function forward(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  if (b == 0) return;
  const peer = peerOf(fd);
  if (peer < 0) return;
  const pos = load<i32>(c + C_RPOS), len = load<i32>(c + C_RLEN);
  const n = min(roomIn(peer), len - pos); // (a relaying peer has no connect in flight)
  if (n > 0) {
    outAppend(peer, b + <usize>pos, n); // fits: checked against writeBufMax above
    store<i32>(c + C_RPOS, pos + n);
    enqueue(peer);
  }
  if (pos + n >= len) {
    readBufGive(b);
    store<i32>(c + C_RBUF, 0);
    store<i32>(c + C_RLEN, 0);
    store<i32>(c + C_RPOS, 0);
    if (cget(peer, C_WLEN) >= writeBufMax) pause(fd);
    else enqueue(fd);
  } else {
    pause(fd);
  }
}

export function proxyComplete(fd: i32, op: i32, res: i32): void {
  const c = conn(fd);
  const inflight = load<i32>(c + C_INFLIGHT);
  const state = cget(fd, C_STATE);
  if (state != S_RELAY && state != S_PIPING) { store<i32>(c + C_INFLIGHT, 0); return; }
  if (doomedLen > 0 && peerOf(fd) >= 0 && isDoomed(peerOf(fd))) { store<i32>(c + C_INFLIGHT, 0); peerDoomed(fd); return; }
  if (state == S_PIPING) { pipeDone(fd, res); return; }
  if (inflight == OP_READ) { readDone(fd, res); return; }
  if (inflight == OP_SPLICE && (xf(fd) & XF_SPLICING_IN)) { spliceInDone(fd, res); return; }
  if (inflight == OP_SHUTDOWN) {
    store<i32>(c + C_INFLIGHT, 0);
    if (res < 0) { closePair(fd); return; }
    xset(fd, XF_SHUT_DONE);
    if (pairFinished(fd)) { closePair(fd); return; }
    if (flags(fd) & CF_EOF) { closeSide(fd); return; }
    enqueue(fd);
    return;
  }
  // a write from the ring
  const before = load<i32>(c + C_WLEN);
  const r = outDone(fd, res);
  if (r == OUT_FAILED) { closePair(fd); return; }
  const wrote = inflight == OP_SPLICE ? max(res, 0) : before - load<i32>(c + C_WLEN); // (a splice-out: ring untouched)
  if (wrote > 0) {
    const u = cget(fd, X_UP);
    if (u >= 0) {
      const client = (xf(fd) & XF_CLIENT) != 0;
      upstreamBytes(u, client ? 0 : wrote, client ? wrote : 0);
    }
  }
  const peer = peerOf(fd);
  if (peer >= 0) {
    if (cget(peer, C_RBUF) != 0 && cget(peer, C_INFLIGHT) != OP_READ) forward(peer);
    const drained = cget(fd, C_BODY_KIND) == BODY_NONE; // (copy mode: always)
    if ((xf(peer) & XF_PAUSED) && cget(fd, C_WLEN) < writeBufMax / 2 && cget(peer, C_RBUF) == 0 && drained) resume(peer);
    else if (inflight == OP_SPLICE && drained) enqueue(peer); // its pipe is empty: it splices in again
  }
  enqueue(fd);
}

function readDone(fd: i32, res: i32): void {
  const c = conn(fd);
  store<i32>(c + C_INFLIGHT, 0);
  const b = <usize>load<i32>(c + C_RBUF);
  const asked = load<i32>(c + C_RLEN);
  if (res > 0) {
    ctlAddF64(STAT_BYTES_IN, <f64>res);
    const peer = peerOf(fd);
    setDeadline(fd, idleMs);
    if (peer >= 0) setDeadline(peer, idleMs); // idle counts both sides
    // LT: one read per readiness event. ET: on until a short read (drained),
    // unless the FIN was reported: then on to the read that returns 0.
    if (!etMode || (res < asked && !(flags(fd) & CF_HUP))) clearFlag(fd, CF_READABLE);
    store<i32>(c + C_RLEN, res);
    store<i32>(c + C_RPOS, 0);
    forward(fd);
    enqueue(fd); // (see below: forward may pause fd with bytes of its own to write)
    return;
  }
  readBufGive(b);
  store<i32>(c + C_RBUF, 0);
  store<i32>(c + C_RLEN, 0);
  // While the read was in flight the peer may have queued bytes (or its FIN)
  // for this side, and proxyRun skipped it (one request at a time): run it
  // again, or they wait for a readiness event that may never come.
  if (res == -EAGAIN) { clearFlag(fd, CF_READABLE); enqueue(fd); return; }
  if (res < 0) { closePair(fd); return; } // a reset on one side closes the other
  if (flags(fd) & CF_EOF) { enqueue(fd); return; } // the probe of a side past its FIN (proxyRun): still just closed for reading
  finReceived(fd);
}

/** fd's read (or splice-in) returned 0: no more input here; the peer sends its own FIN once it wrote all before it. */
function finReceived(fd: i32): void {
  setFlag(fd, CF_EOF | CF_NO_READ);
  connRefreshInterest(fd);
  const peer = peerOf(fd);
  if (peer < 0) { closePair(fd); return; }
  xset(peer, XF_SHUT_WANTED);
  if (pairFinished(fd)) { closePair(fd); return; }
  if (xf(fd) & XF_SHUT_DONE) { closeSide(fd); return; }
  enqueue(peer);
  enqueue(fd);
}

/**
 * fd is done both ways (its FIN came, ours went) while its peer still
 * drains: close fd alone. Kept open, a level-triggered backend would report
 * its hang-up on every poll until the peer finished.
 */
function closeSide(fd: i32): void {
  const peer = peerOf(fd);
  cset(fd, X_PEER, -1);
  connClose(fd);
  if (peer >= 0) { cset(peer, X_PEER, -1); enqueue(peer); }
}

/** Both sides sent their FIN and each FIN was passed on: the pair is done. */
function pairFinished(fd: i32): bool {
  const peer = peerOf(fd);
  if (peer < 0) return true;
  return (flags(fd) & CF_EOF) != 0 && (flags(peer) & CF_EOF) != 0 && (xf(fd) & XF_SHUT_DONE) != 0 && (xf(peer) & XF_SHUT_DONE) != 0;
}

/** Closes fd and its peer (close() of either closes both: proxyClose). */
function closePair(fd: i32): void { connClose(fd); }

export function proxyTimeout(fd: i32): void {
  if (cget(fd, C_STATE) == S_UP_CONNECTING) { connectFailed(fd, 0); return; }
  closePair(fd); // idle (both sides: their deadlines move together)
}

/** connClose's hook: the pair goes together; the upstream's counts end. */
export function proxyClose(fd: i32): void {
  const peer = peerOf(fd);
  const u = cget(fd, X_UP);
  const client = (xf(fd) & XF_CLIENT) != 0;
  if (!client && u >= 0) {
    upstreamConnClosed(u);
    // (counted from paired(): a close while the pipes are being made ends it too)
    const st = cget(fd, C_STATE);
    if (st == S_RELAY || st == S_PIPING) upstreamRequestEnd(u, 0, now() - load<f64>(conn(fd) + X_CONNECT_OP));
  }
  closePipes(fd); // (its pipe is empty, or the pair goes: nothing in it is owed)
  cset(fd, X_PEER, -1);
  if (!linkedBack(fd, peer)) return;
  cset(peer, X_PEER, -1);
  // Its op in flight keeps its buffers until it completes: close it then. A
  // peer with a pipe closes at its turn in the run queue: its close and its
  // pipe's (3 requests) and ours would pass one completion's SQ_FANOUT.
  if (xf(peer) & XF_SPLICE) connCloseSoon(peer); else closeSafe(peer);
}
