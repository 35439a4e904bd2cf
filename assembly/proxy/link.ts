// What the proxy's connection protocols share (tcp.ts, http.ts, health.ts):
// the link between a client and its upstream connection, and the sequence
// that makes an upstream connection.
//
// Fields (the protocol area, the same offsets in every proxy protocol, so
// one accessor serves them all): X_PEER links the two sides of a pair, X_UP
// names the upstream, X_XF holds flags of which the low two bits mean the
// same everywhere (XF_CLIENT, XF_PAUSED); the rest of X_XF and the area from
// X_TRIES on are each protocol's.
//
// Connect: OP_SOCKET on behalf of the client (the new fd is not ours yet),
// then OP_CONNECT on the new fd; -EINPROGRESS waits for WRITABLE and connects
// again (0 / -EISCONN: connected; anything else: failed), so the libc
// executor needs no getsockopt and an io_uring CONNECT that completes late
// fits too. A connect that failed is retried once on another upstream
// (MAX_TRIES, counted in X_TRIES).
import {
  OP_READ, OP_SOCKET, OP_CONNECT, OP_CLOSE, OP_SHUTDOWN, EINPROGRESS, EALREADY, EISCONN, AF_INET, AF_INET6, SA_FAMILY,
  C_INFLIGHT, C_STATE, C_WLEN, C_WRING, C_WCLS, C_PROTO_AREA, LOG_WARN,
} from "../abi";
import { submit, now, setCurrentFd } from "../reactor/ctl";
import {
  conn, cget, cset, flags, setFlag, clearFlag, enqueue, connClose, connCloseSoon, connOpen, connRefreshInterest,
  writeBufMax, CF_READABLE, CF_WRITABLE, CF_EOF, CF_CLOSING, CF_NO_READ,
} from "../reactor/conn";
import { H_CONN, maxFds } from "../reactor/handlers";
import { peerRecord } from "../reactor/peer";
import { logBegin, logStr, logInt, logEnd } from "../reactor/log";
import { upstreamAddr, upstreamAddrLen, upstreamConnOpened, upstreamFailure } from "./upstreams";
import { hashBytes } from "./balance";

export const X_PEER = C_PROTO_AREA;       // the other side's fd, -1: none
export const X_UP = C_PROTO_AREA + 4;     // upstream index, -1: none
export const X_XF = C_PROTO_AREA + 8;     // XF_* flags
export const X_TRIES = C_PROTO_AREA + 12; // client: upstreams tried (connects, or requests in http mode)
export const XF_CLIENT = 1;  // this side is the client
export const XF_PAUSED = 2;  // not read: the peer's ring is full (backpressure)

export const MAX_TRIES = 2; // the first upstream and one retry elsewhere
export const SHUT_WR = 1;
const SOCK_STREAM_NB_CLOEXEC = 1 | 0x800 | 0x80000; // SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC

@inline export function xf(fd: i32): i32 { return cget(fd, X_XF); }
@inline export function xset(fd: i32, f: i32): void { cset(fd, X_XF, cget(fd, X_XF) | f); }
@inline export function xclear(fd: i32, f: i32): void { cset(fd, X_XF, cget(fd, X_XF) & ~f); }
@inline export function peerOf(fd: i32): i32 { return cget(fd, X_PEER); }
@inline export function isClient(fd: i32): bool { return (cget(fd, X_XF) & XF_CLIENT) != 0; }

/** True when `peer` is a live connection linked back to fd (the pair is intact). */
@inline export function linkedBack(fd: i32, peer: i32): bool {
  return peer >= 0 && cget(peer, C_STATE) != 0 && peerOf(peer) == fd;
}

/** Closes now, or once its op in flight completed (its buffers are the kernel's until then). */
export function closeSafe(fd: i32): void {
  if (cget(fd, C_INFLIGHT) != 0) connCloseSoon(fd); else connClose(fd);
}

/** The client address's hash (ip-hash), 0 when unknown. */
export function peerHash(fd: i32): u32 {
  const p = peerRecord(fd);
  if (p == 0) return 0;
  const family = <i32>load<u16>(p);
  if (family == AF_INET) return hashBytes(p + 4, 4);
  if (family == AF_INET6) return hashBytes(p + 4, 16);
  return 0;
}

// ---- backpressure ---------------------------------------------------------

/** Room in `to`'s ring for appending now (a ring with a write in flight must not move). */
export function roomIn(to: i32): i32 {
  let room = writeBufMax - cget(to, C_WLEN);
  const inf = cget(to, C_INFLIGHT);
  if (inf != 0 && inf != OP_READ && inf != OP_SHUTDOWN && inf != OP_CONNECT) {
    const ring = cget(to, C_WRING);
    room = min(room, ring == 0 ? 0 : (4096 << cget(to, C_WCLS)) - cget(to, C_WLEN));
  }
  return room;
}

/** Stop reading fd until its peer's ring drained below half. */
export function pause(fd: i32): void {
  if (xf(fd) & XF_PAUSED) return;
  xset(fd, XF_PAUSED);
  setFlag(fd, CF_NO_READ);
  connRefreshInterest(fd);
}

/** Reads fd again (a side past its FIN stays unread). */
export function resume(fd: i32): void {
  if (!(xf(fd) & XF_PAUSED)) return;
  xclear(fd, XF_PAUSED);
  if (flags(fd) & CF_EOF) return;
  clearFlag(fd, CF_NO_READ);
  setFlag(fd, CF_READABLE); // ET: the edge may have come while paused
  connRefreshInterest(fd);
  enqueue(fd);
}

// ---- the connect sequence -------------------------------------------------

/** Asks for a socket for upstream u on behalf of fd (a client; < 0: nobody's, no op is marked in flight). */
export function askSocket(fd: i32, u: i32, options: i32): void {
  submit(OP_SOCKET, fd, <i32>load<u16>(upstreamAddr(u) + SA_FAMILY), SOCK_STREAM_NB_CLOEXEC, options, 0);
  if (fd >= 0) store<i32>(conn(fd) + C_INFLIGHT, OP_SOCKET);
}

/** Connects fd to its upstream (X_UP). */
export function askConnect(fd: i32): void {
  const u = cget(fd, X_UP);
  submit(OP_CONNECT, fd, <i32>upstreamAddr(u), 0, 0, upstreamAddrLen(u));
  store<i32>(conn(fd) + C_INFLIGHT, OP_CONNECT);
}

/** A connecting fd's run: WRITABLE came, the outcome is the next connect's result. */
export function connectAgain(fd: i32): void {
  if (!(flags(fd) & CF_WRITABLE)) return;
  clearFlag(fd, CF_WRITABLE);
  askConnect(fd);
}

export const CONNECT_OK = 0;
export const CONNECT_WAIT = 1;
export const CONNECT_FAILED = 2;

/** What an OP_CONNECT result means. */
@inline export function connectOutcome(res: i32): i32 {
  if (res == 0 || res == -EISCONN) return CONNECT_OK;
  if (res == -EINPROGRESS || res == -EALREADY) return CONNECT_WAIT;
  return CONNECT_FAILED;
}

/**
 * OP_CONNECT completed for fd: true when fd is still the connection in
 * `connecting` state that asked (nothing is in flight on it any more) and
 * not closing; the caller goes on with the result.
 */
export function connectCompleted(fd: i32, connecting: i32): bool {
  if (fd < 0 || fd >= maxFds || cget(fd, C_STATE) != connecting) return false;
  store<i32>(conn(fd) + C_INFLIGHT, 0);
  if (flags(fd) & CF_CLOSING) { enqueue(fd); return false; }
  return true;
}

/**
 * OP_SOCKET completed for `client` (res: the new fd or -errno). True when
 * the client still waits for it (in state `asking`): the caller pairs res,
 * or handles the error. A socket nobody can take (the client went or
 * closes, an fd beyond our tables) is closed here.
 */
export function socketArrived(client: i32, res: i32, asking: i32): bool {
  const alive = client >= 0 && client < maxFds && cget(client, C_STATE) == asking;
  if (alive) store<i32>(conn(client) + C_INFLIGHT, 0);
  if (res >= 0 && (!alive || res >= maxFds || (flags(client) & CF_CLOSING) != 0)) {
    submit(OP_CLOSE, res, 0, 0, 0, 0); // nobody to pair it with, or beyond our tables
    if (alive) connClose(client);
    return false;
  }
  if (!alive) return false;
  setCurrentFd(client);
  return true;
}

/**
 * Opens the upstream connection `up` of protocol `proto` (state
 * `connecting`) for client (now in state `waiting`), linked both ways and
 * not read yet (WRITABLE reports the connect). The caller sets its deadline
 * and connects (askConnect).
 */
export function upstreamOpen(client: i32, up: i32, proto: i32, connecting: i32, waiting: i32): void {
  const u = cget(client, X_UP);
  connOpen(up, H_CONN, proto, connecting);
  cset(up, X_PEER, client);
  cset(up, X_UP, u);
  cset(up, X_XF, 0);
  setFlag(up, CF_NO_READ);
  cset(client, X_PEER, up);
  cset(client, C_STATE, waiting);
  upstreamConnOpened(u);
}

/**
 * The connect on `up` failed (res: -errno) or timed out (0): counted, logged,
 * closed. -> its client if it still waits (state `waiting`; unlinked, the
 * current fd now), for a retry or an answer; else -1.
 */
export function connectFailed(up: i32, res: i32, waiting: i32): i32 {
  const u = cget(up, X_UP);
  const client = peerOf(up);
  upstreamFailure(u, now());
  logBegin();
  logStr("proxy: connect to upstream ");
  logInt(u);
  logStr(res == 0 ? " timed out" : " failed: errno ");
  if (res != 0) logInt(-res);
  logEnd(LOG_WARN);
  // Unlink first: closing the upstream must not take the client along.
  cset(up, X_PEER, -1);
  connClose(up);
  if (client < 0 || cget(client, C_STATE) != waiting) return -1;
  cset(client, X_PEER, -1);
  setCurrentFd(client);
  return client;
}

/** Another upstream may be tried for client (it has tries left and is not closing). */
@inline export function mayRetry(client: i32): bool {
  return cget(client, X_TRIES) < MAX_TRIES && (flags(client) & CF_CLOSING) == 0;
}

/** client goes to upstream u: one more try. */
@inline export function countTry(client: i32, u: i32): void {
  cset(client, X_UP, u);
  cset(client, X_TRIES, cget(client, X_TRIES) + 1);
}
