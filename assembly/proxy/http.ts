// The http-mode proxy (issue 10): requests parsed with serve's parser and
// strictness, forwarded to an upstream over a pool of idle keep-alive
// connections, responses parsed (http/response.ts) and streamed back.
//
// A client and the upstream connection carrying its current request are two
// connections of this protocol, linked through X_PEER while the exchange
// lasts. One request at a time per client (pipelined requests wait in the
// client's buffer or the kernel, so responses go out in request order, as
// serve answers them). Between exchanges an upstream connection sits in its
// upstream's idle pool (LIFO: the most recently used is taken first, its
// TCP state and the upstream's caches are warmest; nginx's keepalive does
// the same), watched for readability: a pooled connection that reads
// anything (the upstream's FIN, a reset, stray bytes) is dropped.
//
// Bodies stream: the request body from the client's receive buffer into the
// upstream's write ring (Content-Length countdown or chunked to its end,
// http/framing.ts), the response body from the upstream's receive buffer
// into the client's ring, with tcp mode's backpressure (a side is not read
// while the other's ring is full; its reads resume below half). A ring with
// a write in flight never moves: only its free space is appended to.
//
// Errors: 502 (the upstream failed before a response head: refused after the
// retry, reset, an invalid head), 504 (no head within CFG_PROXY_UPSTREAM_TIMEOUT),
// 503 (no usable upstream). After a response head went to the client, a
// failure can only be shown by closing the client connection (a truncated
// response, never a mixed-up one).
//
// Retries, once, on another upstream: a connect that failed; or a request
// that got no response byte back on a REUSED pooled connection (the upstream
// closed it idle: the request most likely never reached it), or that is
// idempotent (GET/HEAD) without a body. A request whose body started to
// stream from a second buffer (its first bytes are gone) is never retried.
import {
  OP_READ, OP_SOCKET, OP_CONNECT, OP_CLOSE, OP_SHUTDOWN, EAGAIN, EMFILE,
  STAT_BYTES_IN, STAT_REQUESTS, STAT_RESPONSES_4XX, STAT_RESPONSES_5XX, CFG_IDLE_TIMEOUT, CFG_HEADER_TIMEOUT, CFG_PROXY_CONNECT_TIMEOUT,
  CFG_PROXY_UPSTREAM_TIMEOUT, CFG_PROXY_KEEPALIVE, CFG_PROXY_HASH_KEY, CFG_PEER_ADDRS, CFG_MAX_LINE, CFG_MAX_HEADER, CFG_MAX_HEADERS,
  STAT_PROXY_NO_UPSTREAM, PROTO_PROXY_HTTP, C_PROTO, C_INFLIGHT, C_RBUF, C_RLEN, C_RPOS, C_WLEN,
  C_STATE, C_PROTO_AREA, BAL_IP_HASH, BAL_HASH, LOG_WARN, UPSTREAMS_MAX,
  PXH_SIZE, PXH_REUSES, PXH_CONNECTS, PXH_POOLED, PXG_SIZE, PXG_RETRIES, PXG_502, PXG_503, PXG_504, PXG_4XX,
  PXG_TRUNCATED, PXG_POOL_DROPPED, HASH_KEY_PATH, HASH_KEY_HEADER,
} from "../abi";
import { submit, ctlI32, ctlAddI32, ctlAddF64, now, setCurrentFd } from "../reactor/ctl";
import { readBufTake, readBufGive, readBufCap, readBufSize, READ_SMALL } from "../reactor/pool";
import {
  conn, cget, cset, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppend, connClose,
  connCloseSoon, setDeadline, clearDeadline, etMode, connOpen, connRefreshInterest, writeBufMax, draining,
  CF_READABLE, CF_WRITABLE, CF_EOF, CF_OUT_ARMED, CF_HUP, CF_CLOSING, CF_NO_READ, OUT_FAILED,
} from "../reactor/conn";
import { H_CONN, maxFds } from "../reactor/handlers";
import { Protocol, protocolOwnsOp } from "../reactor/protocol";
import { peersOn, peersInit, peerFormat } from "../reactor/peer";
import { logBegin, logStr, logInt, logEnd } from "../reactor/log";
import {
  REQ_SCANNED, REQ_LINE_START, REQ_LINE_END, REQ_METHOD, REQ_VERSION, REQ_FLAGS, REQ_CONTENT_LENGTH, REQ_SIZE,
  REQ_TARGET_OFF, REQ_TARGET_LEN, METHOD_GET, METHOD_HEAD, RF_CONN_CLOSE, RF_CONN_KEEPALIVE, RF_CHUNKED,
  RF_HAS_CONTENT_LENGTH, RF_EXPECT_OTHER, resetRequest, parseRequest,
} from "../http/parser";
import {
  RESP_SIZE, RESP_SCANNED, RESP_STATUS, RESP_FLAGS, RESP_BODY, RESP_CONTENT_LENGTH, RS_INTERIM, RS_REUSABLE,
  BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE, resetResponse, parseResponse,
} from "../http/response";
import { BODYST_OUT, bodyStart, bodyFeed, bodyDechunk, bodyDone } from "../http/framing";
import { proxyRewriteRequest, proxyRewriteResponse, RW_NEEDS_DECHUNK, RWR_CLOSE, RWR_CLIENT_HTTP10, RWR_DECHUNK } from "./rewrite";
import {
  upstreamConnClosed,
  upstreamRequestStart, upstreamRequestEnd, upstreamFailure, upstreamSuccess, upstreamBytes, upstreamRetried,
} from "./upstreams";
import { balancePick, balancePolicy, hashBytes } from "./balance";
import { proxyUpstreamsLoad, proxyService as tcpService } from "./tcp";
import {
  X_PEER, X_UP, X_XF, X_TRIES, XF_CLIENT, XF_PAUSED, SHUT_WR, xf, xset, xclear, peerOf, isClient, linkedBack, closeSafe,
  peerHash, roomIn, pause, resume, askSocket, askConnect, connectAgain, connectOutcome, connectCompleted, socketArrived,
  upstreamOpen, connectFailed as connectDropped, mayRetry, countTry, CONNECT_OK, CONNECT_WAIT,
} from "./link";

// ---- states (C_STATE) ---------------------------------------------------------
const CS_IDLE = 1;      // client: between requests, no byte of the next one
const CS_HEAD = 2;      // client: reading a request head
const CS_PICK = 3;      // client: head parsed; picks an upstream at its next run
const CS_SOCKET = 4;    // client: OP_SOCKET in flight for its upstream
const CS_WAIT = 5;      // client: its upstream is connecting
const CS_FWD = 6;       // client: paired (or its response still flushing)
const CS_LINGER = 7;    // client: an error answer went out with its write side shut; drain, then close
const US_CONNECTING = 10;
const US_ACTIVE = 11;   // upstream: carrying a request
const US_POOLED = 12;   // upstream: idle in its pool

// ---- the protocol area (112 bytes) ----------------------------------------
// X_PEER, X_UP, X_XF, X_TRIES (client: upstreams tried for this request): link.ts
// client
const X_REQF = C_PROTO_AREA + 16;    // RQ_* bits of the current request
const X_HEAD_END = C_PROTO_AREA + 20; // length of the current request head (at C_RPOS)
const X_BODY_POS = C_PROTO_AREA + 24; // buffer offset of the first body byte not yet forwarded
const X_SCAN = C_PROTO_AREA + 28;    // request parser phase-1 state
const X_LSTART = C_PROTO_AREA + 32;
const X_LEND = C_PROTO_AREA + 36;
const X_HASH = C_PROTO_AREA + 40;    // the request key's hash (hash / ip-hash)
const X_STATUS = C_PROTO_AREA + 44;  // status of the response (stats)
const X_ASKED = C_PROTO_AREA + 48;   // both: bytes the read in flight asked for (ET: fewer came = drained)
// upstream
const X_POOL_NEXT = C_PROTO_AREA + 12;
const X_POOL_PREV = C_PROTO_AREA + 16;
const X_RSCAN = C_PROTO_AREA + 20;   // response parser phase-1 state
const X_USTATUS = C_PROTO_AREA + 24;
const X_START = C_PROTO_AREA + 32;   // f64 the request's start (loop ms)
const X_LAT = C_PROTO_AREA + 40;     // f64 ms to the response head
// both: the body state (http/framing.ts BODYST, 56 bytes): the client's is
// its request body, the upstream's the response body.
const X_BODYST = C_PROTO_AREA + 56;

// X_XF bits besides link.ts's XF_CLIENT, XF_PAUSED
const XC_REQ_DONE = 4;       // the request body went into the upstream's ring in full
const XC_RESP_DONE = 8;      // the response went into our ring in full (flush, then the next request)
const XC_CLOSE = 16;         // close after this response
const XC_HEAD_SENT = 32;     // a final response head is in our ring: no error answer any more
const XC_HEAD_GONE = 64;     // the request head left the buffer (a body streamed past it): no retry
const XU_HEAD = 128;         // upstream: the final response head was parsed
const XU_GOT = 256;          // upstream: a response byte came
const XU_NOREUSE = 512;      // upstream: not back to the pool (it said close, extra bytes...)
const XU_REUSED = 1024;      // upstream: taken from the pool for this request
const XU_DECHUNK = 2048;     // upstream: chunked response de-chunked for an HTTP/1.0 client

const RQ_HEAD = 1, RQ_HTTP10 = 2, RQ_BODY = 4, RQ_IDEMPOTENT = 8;

const POOL_IDLE_MS: f64 = 60000;   // an idle pooled connection is closed after this (nginx keepalive_timeout 60s)
const LINGER_MS: f64 = 2000;
const DEFAULT_KEEPALIVE = 1024; // idle connections kept per upstream: a 1,000-client burst reuses its connections (32 made them churn: bench/RESULTS.md "Proxy")

let idleMs: f64 = 0;
let headerMs: f64 = 0;
let connectMs: f64 = 0;
let upstreamMs: f64 = 0;
let keepalive = DEFAULT_KEEPALIVE;
let policy = 0;
let hashKind = 0;
let maxLine = 8192, maxHeader = 16384, maxHeaders = 100;
let req: usize = 0;
let resp: usize = 0;
let scratch: usize = 0;       // the rewritten request head
let scratchCap = 0;
const addrText: usize = memory.data(64);
// per upstream: pool head (fd, -1 none) and size; counters PXH_*
const poolHead: usize = memory.data(UPSTREAMS_MAX * 4);
const poolSize: usize = memory.data(UPSTREAMS_MAX * 4);
const upStats: usize = memory.data(UPSTREAMS_MAX * PXH_SIZE, 8);
const globalStats: usize = memory.data(PXG_SIZE, 8);
// the hash key's header name (the host writes it: i32 length, then the name)
const hashKeyRec: usize = memory.data(68);

/** Per-upstream counters of http mode (abi.ts PXH_*). */
export function proxyHttpUpstreamStats(u: i32): usize { return upStats + <usize>(u * PXH_SIZE); }
/** http mode's global counters (abi.ts PXG_*). */
export function proxyHttpStats(): usize { return globalStats; }
/** Where the host writes the hash key's header name (i32 length, up to 64 bytes). */
export function proxyHashKeyConfig(): usize { return hashKeyRec; }

@inline function stat(u: i32, off: i32): void { const p = upStats + <usize>(u * PXH_SIZE + off); store<f64>(p, load<f64>(p) + 1); }
@inline function gstat(off: i32): void { const p = globalStats + <usize>off; store<f64>(p, load<f64>(p) + 1); }

export function proxyHttpProtocol(): Protocol {
  idleMs = <f64>ctlI32(CFG_IDLE_TIMEOUT);
  headerMs = <f64>ctlI32(CFG_HEADER_TIMEOUT);
  connectMs = <f64>ctlI32(CFG_PROXY_CONNECT_TIMEOUT);
  upstreamMs = <f64>ctlI32(CFG_PROXY_UPSTREAM_TIMEOUT);
  keepalive = ctlI32(CFG_PROXY_KEEPALIVE);
  if (keepalive < 0) keepalive = DEFAULT_KEEPALIVE; // < 0: default; 0: no pool
  hashKind = ctlI32(CFG_PROXY_HASH_KEY);
  if (ctlI32(CFG_MAX_LINE) > 0) maxLine = ctlI32(CFG_MAX_LINE);
  if (ctlI32(CFG_MAX_HEADER) > 0) maxHeader = ctlI32(CFG_MAX_HEADER);
  if (ctlI32(CFG_MAX_HEADERS) > 0) maxHeaders = ctlI32(CFG_MAX_HEADERS);
  if (maxLine + maxHeader > readBufSize - 1024) maxHeader = max(1024, readBufSize - 1024 - maxLine);
  req = heap.alloc(REQ_SIZE);
  resp = heap.alloc(RESP_SIZE);
  // a rewritten head: the received one plus the forwarding fields
  scratchCap = readBufSize + 1024;
  scratch = heap.alloc(<usize>scratchCap + 16);
  for (let u = 0; u < UPSTREAMS_MAX; u++) { store<i32>(poolHead + <usize>(u * 4), -1); store<i32>(poolSize + <usize>(u * 4), 0); }
  proxyUpstreamsLoad(); // the same table tcp mode loaded (one config)
  policy = balancePolicy();
  // X-Forwarded-For needs every client's address: the host asks for them
  // in http mode (CFG_PEER_ADDRS), so other protocols' cores carry no table.
  if (ctlI32(CFG_PEER_ADDRS) != 0 && !peersOn()) peersInit(maxFds);
  const p = new Protocol();
  p.open = httpProxyOpen;
  p.run = httpProxyRun;
  p.complete = httpProxyComplete;
  p.timeout = httpProxyTimeout;
  p.drain = httpProxyDrain;
  p.close = httpProxyClose;
  p.service = httpProxyService;
  // One owner per op: this one, registered after tcp mode, routes tcp mode's
  // completions back to it (httpProxyService).
  protocolOwnsOp(PROTO_PROXY_HTTP, OP_SOCKET);
  protocolOwnsOp(PROTO_PROXY_HTTP, OP_CONNECT);
  return p;
}

export function httpProxyOpen(fd: i32): void {
  connOpen(fd, H_CONN, PROTO_PROXY_HTTP, CS_IDLE);
  cset(fd, X_PEER, -1);
  cset(fd, X_UP, -1);
  cset(fd, X_XF, XF_CLIENT);
  setDeadline(fd, idleMs);
  setFlag(fd, CF_READABLE); // TCP_DEFER_ACCEPT: the request is usually there
  enqueue(fd);
}

// ---- running ------------------------------------------------------------------

export function httpProxyRun(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_INFLIGHT) != 0) return;
  const st = load<i32>(c + C_STATE);
  const f = flags(fd);
  if (st == US_CONNECTING) { connectAgain(fd); return; }
  if (st == CS_PICK) { startUpstream(fd); return; }
  const out = outPending(fd);
  if (out && (f & CF_WRITABLE || !(f & CF_OUT_ARMED))) { outStep(fd); return; }
  if (!(f & CF_READABLE) || (f & CF_NO_READ)) return;
  if (st == CS_IDLE || st == CS_HEAD) { readHead(fd); return; }
  if (st == CS_LINGER) { readInto(fd, READ_SMALL, true); return; }
  if (st == US_POOLED) { readInto(fd, READ_SMALL, true); return; } // anything: the upstream closed or misbehaves
  if (st == CS_FWD) { readReqBody(fd); return; }
  if (st == US_ACTIVE) { readResponse(fd); return; }
}

/** A read into a fresh buffer whose bytes are discarded (lingering, a pooled connection's probe). */
function readInto(fd: i32, size: i32, discard: bool): void {
  const c = conn(fd);
  let b = <usize>load<i32>(c + C_RBUF);
  if (b == 0) { b = readBufTake(size); cset(fd, C_RBUF, <i32>b); }
  store<i32>(c + C_RLEN, 0);
  store<i32>(c + C_RPOS, 0);
  cset(fd, X_ASKED, readBufCap(b));
  submit(OP_READ, fd, <i32>b, readBufCap(b), 0, 0);
  store<i32>(c + C_INFLIGHT, OP_READ);
}

function readHead(fd: i32): void {
  const c = conn(fd);
  let b = <usize>load<i32>(c + C_RBUF);
  if (b == 0) {
    b = readBufTake(READ_SMALL);
    cset(fd, C_RBUF, <i32>b); cset(fd, C_RLEN, 0); cset(fd, C_RPOS, 0);
  }
  if (cget(fd, C_RLEN) == readBufCap(b)) {
    compact(fd);
    if (cget(fd, C_RLEN) == readBufCap(b)) b = growBuf(fd);
  }
  const len = cget(fd, C_RLEN);
  cset(fd, X_ASKED, readBufCap(b) - len);
  submit(OP_READ, fd, <i32>(b + <usize>len), readBufCap(b) - len, 0, 0);
  store<i32>(c + C_INFLIGHT, OP_READ);
}

function growBuf(fd: i32): usize {
  const old = <usize>cget(fd, C_RBUF);
  if (readBufCap(old) >= readBufSize) return old;
  const b = readBufTake(readBufSize);
  memory.copy(b, old, <usize>cget(fd, C_RLEN));
  readBufGive(old);
  cset(fd, C_RBUF, <i32>b);
  return b;
}

function compact(fd: i32): void {
  const b = <usize>cget(fd, C_RBUF);
  const pos = cget(fd, C_RPOS), len = cget(fd, C_RLEN);
  if (pos == 0) return;
  memory.copy(b, b + <usize>pos, <usize>(len - pos));
  cset(fd, C_RLEN, len - pos);
  cset(fd, C_RPOS, 0);
  if (cget(fd, X_BODY_POS) >= pos) cset(fd, X_BODY_POS, cget(fd, X_BODY_POS) - pos);
}

function releaseBuf(fd: i32): void {
  const b = <usize>cget(fd, C_RBUF);
  if (b != 0) readBufGive(b);
  cset(fd, C_RBUF, 0); cset(fd, C_RLEN, 0); cset(fd, C_RPOS, 0);
}

/** Stop reading fd (not paused by backpressure: nothing is wanted from it now). */
function noRead(fd: i32): void {
  if (flags(fd) & CF_NO_READ) return;
  setFlag(fd, CF_NO_READ);
  connRefreshInterest(fd);
}
function wantRead(fd: i32): void {
  if (!(flags(fd) & CF_NO_READ) || (xf(fd) & XF_PAUSED)) return;
  clearFlag(fd, CF_NO_READ);
  setFlag(fd, CF_READABLE);
  connRefreshInterest(fd);
  enqueue(fd);
}

// ---- completions ----------------------------------------------------------------

export function httpProxyComplete(fd: i32, op: i32, res: i32): void {
  const c = conn(fd);
  const inflight = load<i32>(c + C_INFLIGHT);
  const st = load<i32>(c + C_STATE);
  if (inflight == OP_READ) { store<i32>(c + C_INFLIGHT, 0); readDone(fd, st, res); return; }
  if (inflight == OP_SHUTDOWN) { store<i32>(c + C_INFLIGHT, 0); setFlag(fd, CF_READABLE); enqueue(fd); return; }
  // a write from the ring
  const before = load<i32>(c + C_WLEN);
  const r = outDone(fd, res);
  if (r == OUT_FAILED) { writeFailed(fd); return; }
  const wrote = before - load<i32>(c + C_WLEN);
  const peer = peerOf(fd);
  if (wrote > 0) {
    setDeadline(fd, idleMs > 0 ? idleMs : 0);
    const u = cget(fd, X_UP);
    if (u >= 0) upstreamBytes(u, isClient(fd) ? 0 : wrote, isClient(fd) ? wrote : 0);
    if (!isClient(fd) && peer >= 0 && !(xf(fd) & XU_HEAD)) {
      // bytes reached the upstream: the wait for its head runs from here
      setDeadline(fd, upstreamMs > 0 ? upstreamMs : idleMs);
    }
  }
  if (isClient(fd)) {
    if ((st == CS_LINGER || st == CS_FWD) && !outPending(fd) && (xf(fd) & XC_RESP_DONE) != 0) { responseFlushed(fd); return; }
    if (peer >= 0) {
      pumpResponse(peer);
      if (peerOf(fd) == peer && (xf(peer) & XF_PAUSED) && cget(fd, C_WLEN) < writeBufMax / 2) resume(peer);
    }
  } else if (peer >= 0) {
    forwardBody(peer);
    if (peerOf(fd) == peer && (xf(peer) & XF_PAUSED) && cget(fd, C_WLEN) < writeBufMax / 2) resume(peer);
  }
  if (cget(fd, C_STATE) != 0) enqueue(fd);
}

function readDone(fd: i32, st: i32, res: i32): void {
  const c = conn(fd);
  const f = flags(fd);
  if (res > 0) {
    ctlAddF64(STAT_BYTES_IN, <f64>res);
    const asked = cget(fd, X_ASKED);
    if (!etMode || (res < asked && !(f & CF_HUP))) clearFlag(fd, CF_READABLE);
    if (st == CS_LINGER) { enqueue(fd); return; }
    if (st == US_POOLED) { poolDrop(fd); return; } // bytes nobody asked for
    cset(fd, C_RLEN, cget(fd, C_RLEN) + res);
    if (st == CS_IDLE) {
      // serve's slow-loris defence: the head must be complete within the
      // header timeout of its first byte, however the bytes trickle in.
      cset(fd, C_STATE, CS_HEAD);
      setDeadline(fd, headerMs > 0 ? headerMs : idleMs);
    }
    if (st == CS_IDLE || st == CS_HEAD) { parseHead(fd); return; }
    // ET: a full read leaves READABLE set and no new edge comes: read on at our next turn
    if (st == CS_FWD) { setDeadline(fd, idleMs); forwardBody(fd); if (flags(fd) & CF_READABLE && cget(fd, C_STATE) != 0) enqueue(fd); return; }
    if (st == US_ACTIVE) {
      xset(fd, XU_GOT);
      if (xf(fd) & XU_HEAD) { setDeadline(fd, idleMs); const p = peerOf(fd); if (p >= 0) setDeadline(p, idleMs); }
      pumpResponse(fd);
      if (flags(fd) & CF_READABLE && cget(fd, C_STATE) == US_ACTIVE) enqueue(fd);
      return;
    }
    return;
  }
  if (res == -EAGAIN) {
    clearFlag(fd, CF_READABLE);
    if (cget(fd, C_RLEN) == cget(fd, C_RPOS) && (st == CS_IDLE || st == US_POOLED || st == CS_LINGER || st == US_ACTIVE)) releaseBuf(fd);
    return;
  }
  // EOF or an error
  if (st == US_ACTIVE) { upstreamEnded(fd, res); return; }
  if (st == US_POOLED) { poolDrop(fd); return; }
  connClose(fd); // a client: gone (a request in progress is abandoned; its upstream goes too)
}

function writeFailed(fd: i32): void {
  if (isClient(fd)) { connClose(fd); return; }
  upstreamEnded(fd, -32 /* EPIPE */);
}

// ---- the request ------------------------------------------------------------------

function parseHead(fd: i32): void {
  const b = <usize>cget(fd, C_RBUF);
  const pos = cget(fd, C_RPOS), len = cget(fd, C_RLEN);
  resetRequest(req);
  store<i32>(req + REQ_SCANNED, cget(fd, X_SCAN));
  store<i32>(req + REQ_LINE_START, cget(fd, X_LSTART));
  store<i32>(req + REQ_LINE_END, cget(fd, X_LEND));
  const r = parseRequest(b + <usize>pos, len - pos, req, maxLine, maxHeader, maxHeaders);
  if (r == 0) {
    cset(fd, X_SCAN, load<i32>(req + REQ_SCANNED));
    cset(fd, X_LSTART, load<i32>(req + REQ_LINE_START));
    cset(fd, X_LEND, load<i32>(req + REQ_LINE_END));
    if (len == readBufCap(b)) compact(fd);
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  cset(fd, X_SCAN, 0); cset(fd, X_LSTART, 0); cset(fd, X_LEND, 0);
  ctlAddI32(STAT_REQUESTS, 1);
  cset(fd, X_XF, XF_CLIENT);
  cset(fd, X_REQF, 0);
  if (r < 0) { answer(fd, -r, true); return; }
  const rf = load<i32>(req + REQ_FLAGS);
  const method = load<i32>(req + REQ_METHOD);
  const v10 = load<i32>(req + REQ_VERSION) == 10;
  let q = 0;
  if (method == METHOD_HEAD) q |= RQ_HEAD;
  if (method == METHOD_GET || method == METHOD_HEAD) q |= RQ_IDEMPOTENT;
  if (v10) q |= RQ_HTTP10;
  if (rf & RF_CONN_CLOSE || (v10 && !(rf & RF_CONN_KEEPALIVE)) || draining) xset(fd, XC_CLOSE);
  cset(fd, X_HEAD_END, r);
  cset(fd, X_BODY_POS, pos + r);
  // An expectation the proxy cannot pass on faithfully: 417, as serve.
  if (rf & RF_EXPECT_OTHER) { cset(fd, X_REQF, q); answer(fd, 417, true); return; }
  const st = conn(fd) + X_BODYST;
  if (rf & RF_CHUNKED) { q |= RQ_BODY; bodyStart(st, BODY_CHUNKED, 0, Infinity); }
  else if ((rf & RF_HAS_CONTENT_LENGTH) && load<f64>(req + REQ_CONTENT_LENGTH) > 0) {
    q |= RQ_BODY; bodyStart(st, BODY_LENGTH, load<f64>(req + REQ_CONTENT_LENGTH), Infinity);
  } else { bodyStart(st, BODY_NONE, 0, 0); xset(fd, XC_REQ_DONE); }
  cset(fd, X_REQF, q);
  // The rewrite can refuse (an absolute-form target it cannot forward,
  // CONNECT): find out before an upstream is taken.
  const n = rewriteHead(fd, false);
  if (n < 0) { answer(fd, n == -1 ? 431 : -n, true); return; }
  rewriteHeadLen = n;
  cset(fd, X_HASH, <i32>requestHash(fd, b + <usize>pos));
  cset(fd, X_TRIES, 0);
  cset(fd, X_UP, -1);
  noRead(fd); // until the upstream is there: body bytes wait in the kernel
  // The head is whole: the header timeout is over. The wait for an upstream
  // runs on the upstream socket's deadlines (connect, then 504).
  clearDeadline(fd);
  startUpstream(fd);
}

/** The hash balancePick gets: the client address (ip-hash), the key (hash), else 0. */
function requestHash(fd: i32, head: usize): u32 {
  if (policy == BAL_IP_HASH) return peerHash(fd);
  if (policy != BAL_HASH) return 0;
  if (hashKind == HASH_KEY_PATH) return hashBytes(head + <usize>load<i32>(req + REQ_TARGET_OFF), load<i32>(req + REQ_TARGET_LEN));
  if (hashKind == HASH_KEY_HEADER) {
    const nlen = load<i32>(hashKeyRec);
    const end = head + <usize>cget(fd, X_HEAD_END);
    let p = head + <usize>load<i32>(req + REQ_LINE_END);
    // The head was validated: lines end in CRLF, each field line has a colon.
    while (p + 2 <= end && load<u8>(p) != 0x0D) {
      let e = p;
      while (load<u8>(e) != 0x0D) e++;
      if (<i32>(e - p) > nlen && load<u8>(p + <usize>nlen) == 0x3A && sameLower(p, hashKeyRec + 4, nlen)) {
        let vs = p + <usize>nlen + 1, ve = e;
        while (vs < ve && (load<u8>(vs) == 0x20 || load<u8>(vs) == 0x09)) vs++;
        while (ve > vs && (load<u8>(ve - 1) == 0x20 || load<u8>(ve - 1) == 0x09)) ve--;
        return hashBytes(vs, <i32>(ve - vs));
      }
      p = e + 2;
    }
    return 0; // no such header: every such request lands on one upstream
  }
  return 0;
}

function sameLower(a: usize, lowerName: usize, n: i32): bool {
  for (let i = 0; i < n; i++) {
    let x = <u32>load<u8>(a + <usize>i);
    if (x - 0x41 < 26) x |= 0x20;
    if (x != <u32>load<u8>(lowerName + <usize>i)) return false;
  }
  return true;
}

/**
 * Rewrites the client's request head (at C_RPOS) into `scratch`; `reparse`:
 * the shared parse record holds another head by now. -> length, or -1 / -status.
 */
function rewriteHead(fd: i32, reparse: bool): i32 {
  const b = <usize>cget(fd, C_RBUF) + <usize>cget(fd, C_RPOS);
  if (reparse) {
    resetRequest(req);
    parseRequest(b, cget(fd, X_HEAD_END), req, maxLine, maxHeader, maxHeaders);
  }
  const alen = peerFormat(fd, addrText);
  return proxyRewriteRequest(b, req, scratch, scratchCap, addrText, alen, addrText, 0, 0);
}

/** Picks an upstream and pairs with an idle pooled connection, or connects. */
function startUpstream(fd: i32): void {
  const tries = cget(fd, X_TRIES);
  const prev = cget(fd, X_UP);
  let u = balancePick(policy, <u32>cget(fd, X_HASH), tries > 0 ? prev : -1, now());
  if (u < 0 && tries > 0) u = balancePick(policy, <u32>cget(fd, X_HASH), -1, now()); // the only one left: again there
  if (u < 0) {
    ctlAddI32(STAT_PROXY_NO_UPSTREAM, 1);
    gstat(PXG_503);
    answer(fd, 503, false);
    return;
  }
  countTry(fd, u);
  const up = poolTake(u);
  if (up >= 0) {
    stat(u, PXH_REUSES);
    xset(up, XU_REUSED);
    pair(fd, up, tries > 0);
    return;
  }
  stat(u, PXH_CONNECTS);
  cset(fd, C_STATE, CS_SOCKET);
  askSocket(fd, u, 0);
}

/** OP_SOCKET / OP_CONNECT: this protocol's, or tcp mode's (one owner per op). */
export function httpProxyService(op: i32, fd: i32, res: i32): void {
  const mine = fd >= 0 && fd < maxFds && cget(fd, C_STATE) != 0 && cget(fd, C_PROTO) == PROTO_PROXY_HTTP;
  if (!mine) { tcpService(op, fd, res); return; }
  if (op == OP_SOCKET) { socketDone(fd, res); return; }
  if (op == OP_CONNECT) {
    if (!connectCompleted(fd, US_CONNECTING)) return;
    setCurrentFd(fd);
    const o = connectOutcome(res);
    if (o == CONNECT_OK) { connected(fd); return; }
    if (o == CONNECT_WAIT) { setFlag(fd, CF_OUT_ARMED); clearFlag(fd, CF_WRITABLE); connRefreshInterest(fd); return; }
    connectFailed(fd, res);
  }
}

function socketDone(client: i32, res: i32): void {
  // An fd beyond the core's tables: to the client, as a socket() that
  // failed (502; tcp mode, which has no answer, closes the client).
  if (res >= maxFds && client >= 0 && client < maxFds && cget(client, C_STATE) == CS_SOCKET && !(flags(client) & CF_CLOSING)) {
    submit(OP_CLOSE, res, 0, 0, 0, 0);
    res = -EMFILE;
  }
  if (!socketArrived(client, res, CS_SOCKET)) return;
  if (res < 0) { gstat(PXG_502); answer(client, 502, false); return; }
  const up = res;
  upstreamOpen(client, up, PROTO_PROXY_HTTP, US_CONNECTING, CS_WAIT);
  cset(up, X_POOL_NEXT, -1);
  cset(up, X_POOL_PREV, -1);
  setDeadline(up, connectMs > 0 ? connectMs : (upstreamMs > 0 ? upstreamMs : idleMs));
  askConnect(up);
}

function connectFailed(up: i32, res: i32): void {
  const u = cget(up, X_UP);
  const client = connectDropped(up, res, CS_WAIT);
  if (client >= 0) retryOr(client, u, res == 0 ? 504 : 502, true);
}

/** Tries the request once more elsewhere when allowed, else answers `status`. */
function retryOr(client: i32, u: i32, status: i32, allowed: bool): void {
  if (allowed && mayRetry(client) && !(xf(client) & XC_HEAD_GONE)) {
    upstreamRetried(u);
    gstat(PXG_RETRIES);
    // the body forwards again from its first byte
    const q = cget(client, X_REQF);
    cset(client, X_BODY_POS, cget(client, C_RPOS) + cget(client, X_HEAD_END));
    if (q & RQ_BODY) {
      xclear(client, XC_REQ_DONE);
      resetRequest(req);
      parseRequest(<usize>cget(client, C_RBUF) + <usize>cget(client, C_RPOS), cget(client, X_HEAD_END), req, maxLine, maxHeader, maxHeaders);
      const rf = load<i32>(req + REQ_FLAGS);
      if (rf & RF_CHUNKED) bodyStart(conn(client) + X_BODYST, BODY_CHUNKED, 0, Infinity);
      else bodyStart(conn(client) + X_BODYST, BODY_LENGTH, load<f64>(req + REQ_CONTENT_LENGTH), Infinity);
    }
    noRead(client);
    cset(client, C_STATE, CS_PICK);
    enqueue(client);
    return;
  }
  if (status == 504) gstat(PXG_504); else gstat(PXG_502);
  answer(client, status, false);
}

function connected(up: i32): void {
  const client = peerOf(up);
  upstreamSuccess(cget(up, X_UP), now());
  pair(client, up, true);
}

/** Client and upstream connection carry the request from now on. */
function pair(client: i32, up: i32, reparse: bool): void {
  const u = cget(up, X_UP);
  cset(up, X_PEER, client);
  cset(client, X_PEER, up);
  cset(up, C_STATE, US_ACTIVE);
  cset(client, C_STATE, CS_FWD);
  xclear(up, XU_HEAD | XU_GOT | XU_NOREUSE | XU_DECHUNK);
  cset(up, X_RSCAN, 0);
  upstreamRequestStart(u);
  store<f64>(conn(up) + X_START, now());
  const n = reparse ? rewriteHead(client, true) : rewriteHeadLen;
  if (n <= 0 || !outAppend(up, scratch, n)) { xset(up, XU_NOREUSE); cset(client, X_PEER, -1); cset(up, X_PEER, -1); connClose(up); answer(client, 502, false); return; }
  // Written at once; read when the kernel says the response is there.
  clearFlag(up, CF_NO_READ | CF_OUT_ARMED);
  setFlag(up, CF_WRITABLE);
  connRefreshInterest(up);
  setDeadline(up, upstreamMs > 0 ? upstreamMs : idleMs);
  clearDeadline(client); // the upstream's deadline (504) runs the wait
  enqueue(up);
  forwardBody(client);
}
let rewriteHeadLen = 0;

/** Request body bytes in the client's buffer -> the upstream's ring, as many as fit. */
function forwardBody(client: i32): void {
  if (cget(client, C_STATE) != CS_FWD) return;
  const up = peerOf(client);
  if (up < 0 || (xf(client) & XC_REQ_DONE)) return;
  const b = <usize>cget(client, C_RBUF);
  const bp = cget(client, X_BODY_POS), len = cget(client, C_RLEN);
  const k = min(roomIn(up), len - bp);
  if (k > 0) {
    const n = bodyFeed(conn(client) + X_BODYST, b + <usize>bp, k);
    if (n < 0) { badRequestBody(client, -n); return; }
    outAppend(up, b + <usize>bp, n);
    cset(client, X_BODY_POS, bp + n);
    enqueue(up);
  }
  if (bodyDone(conn(client) + X_BODYST)) {
    xset(client, XC_REQ_DONE);
    noRead(client); // what follows is the next request: it waits
    if (!(xf(up) & XU_HEAD)) clearDeadline(client); // the upstream's timeout (504) runs the wait
    return;
  }
  if (cget(client, X_BODY_POS) < len) { pause(client); return; } // the ring is full: its drain resumes us
  // All buffered body bytes went: the head leaves too (no retry from here on).
  xset(client, XC_HEAD_GONE);
  cset(client, C_RPOS, 0); cset(client, C_RLEN, 0); cset(client, X_BODY_POS, 0);
  if (readBufCap(b) < readBufSize) { readBufGive(b); cset(client, C_RBUF, <i32>readBufTake(readBufSize)); }
  xclear(client, XF_PAUSED);
  wantRead(client);
}

function readReqBody(fd: i32): void {
  const up = peerOf(fd);
  if (up < 0 || (xf(fd) & XC_REQ_DONE)) { noRead(fd); return; }
  const room = roomIn(up);
  if (room <= 0) { pause(fd); return; }
  const b = <usize>cget(fd, C_RBUF);
  const len = cget(fd, C_RLEN);
  const n = min(room, readBufCap(b) - len);
  if (n <= 0) { pause(fd); return; }
  cset(fd, X_ASKED, n);
  submit(OP_READ, fd, <i32>(b + <usize>len), n, 0, 0);
  store<i32>(conn(fd) + C_INFLIGHT, OP_READ);
}

/** The request body's chunked framing is bad: 400 before any response, else close. */
function badRequestBody(client: i32, status: i32): void {
  const up = peerOf(client);
  if (up >= 0) { cset(up, X_PEER, -1); cset(client, X_PEER, -1); endRequest(up, 0); closeSafe(up); }
  answer(client, status, true);
}

// ---- the response -------------------------------------------------------------

function readResponse(up: i32): void {
  const client = peerOf(up);
  if (client < 0) return;
  if ((xf(up) & XU_HEAD) && roomIn(client) <= 0) { pause(up); return; }
  let b = <usize>cget(up, C_RBUF);
  if (b == 0) { b = readBufTake(readBufSize); cset(up, C_RBUF, <i32>b); cset(up, C_RLEN, 0); cset(up, C_RPOS, 0); }
  const len = cget(up, C_RLEN);
  if (len == readBufCap(b)) {
    if (cget(up, C_RPOS) == 0) { pause(up); return; } // a full buffer waits for the client's ring
    memory.copy(b, b + <usize>cget(up, C_RPOS), <usize>(len - cget(up, C_RPOS)));
    cset(up, C_RLEN, len - cget(up, C_RPOS)); cset(up, C_RPOS, 0);
  }
  const l2 = cget(up, C_RLEN);
  cset(up, X_ASKED, readBufCap(b) - l2);
  submit(OP_READ, up, <i32>(b + <usize>l2), readBufCap(b) - l2, 0, 0);
  store<i32>(conn(up) + C_INFLIGHT, OP_READ);
}

@inline function clientWriting(client: i32): bool {
  const inf = cget(client, C_INFLIGHT);
  return inf != 0 && inf != OP_READ;
}

/** Upstream bytes -> the client's ring: heads (rewritten) and body bytes, as many as fit. */
function pumpResponse(up: i32): void {
  const client = peerOf(up);
  if (client < 0 || cget(up, C_STATE) != US_ACTIVE) return;
  const b = <usize>cget(up, C_RBUF);
  if (b == 0) return;
  while (true) {
    const pos = cget(up, C_RPOS), len = cget(up, C_RLEN);
    if (!(xf(up) & XU_HEAD)) {
      if (pos >= len) break;
      if (clientWriting(client)) return; // a head may need a bigger ring: after the write
      resetResponse(resp);
      store<i32>(resp + RESP_SCANNED, cget(up, X_RSCAN));
      const q = cget(client, X_REQF);
      const r = parseResponse(b + <usize>pos, len - pos, resp, (q & RQ_HEAD) != 0, maxHeader + maxLine, maxHeaders);
      if (r == 0) {
        cset(up, X_RSCAN, load<i32>(resp + RESP_SCANNED));
        if (len == readBufCap(b) && pos > 0) {
          memory.copy(b, b + <usize>pos, <usize>(len - pos));
          cset(up, C_RLEN, len - pos); cset(up, C_RPOS, 0);
        }
        break;
      }
      cset(up, X_RSCAN, 0);
      if (r < 0) { badResponse(up); return; }
      const rf = load<i32>(resp + RESP_FLAGS);
      let wf = (q & RQ_HTTP10) ? RWR_CLIENT_HTTP10 : 0;
      if (xf(client) & XC_CLOSE) wf |= RWR_CLOSE;
      const cap = r + 256;
      if (roomIn(client) < cap) { pause(up); return; }
      let n = proxyRewriteResponse(b + <usize>pos, resp, scratch, scratchCap, wf);
      if (n == RW_NEEDS_DECHUNK) { wf |= RWR_DECHUNK; xset(up, XU_DECHUNK); n = proxyRewriteResponse(b + <usize>pos, resp, scratch, scratchCap, wf); }
      if (n < 0) { badResponse(up); return; }
      if (n > 0) outAppend(client, scratch, n);
      cset(up, C_RPOS, pos + r);
      enqueue(client);
      if (rf & RS_INTERIM) continue; // 1xx: the final head follows
      // the final head
      const status = load<i32>(resp + RESP_STATUS);
      cset(up, X_USTATUS, status);
      cset(client, X_STATUS, status);
      store<f64>(conn(up) + X_LAT, now() - load<f64>(conn(up) + X_START));
      const u = cget(up, X_UP);
      if (status >= 500) upstreamFailure(u, now()); else upstreamSuccess(u, now());
      if (!(rf & RS_REUSABLE)) xset(up, XU_NOREUSE);
      const body = load<i32>(resp + RESP_BODY);
      if (body == BODY_CLOSE || (xf(up) & XU_DECHUNK)) xset(client, XC_CLOSE);
      bodyStart(conn(up) + X_BODYST, body, load<f64>(resp + RESP_CONTENT_LENGTH), Infinity);
      xset(up, XU_HEAD);
      xset(client, XC_HEAD_SENT);
      setDeadline(up, idleMs);
      setDeadline(client, idleMs);
      continue;
    }
    // body bytes
    const st = conn(up) + X_BODYST;
    if (bodyDone(st)) { responseEnded(up, pos < len); return; }
    if (pos >= len) { cset(up, C_RPOS, 0); cset(up, C_RLEN, 0); break; }
    const k = min(roomIn(client), len - pos);
    if (k <= 0) { pause(up); return; }
    if (xf(up) & XU_DECHUNK) {
      const n = bodyDechunk(st, b + <usize>pos, k);
      if (n < 0) { truncated(up); return; }
      outAppend(client, b + <usize>pos, load<i32>(st, BODYST_OUT));
      cset(up, C_RPOS, pos + n);
    } else {
      const n = bodyFeed(st, b + <usize>pos, k);
      if (n < 0) { truncated(up); return; }
      outAppend(client, b + <usize>pos, n);
      cset(up, C_RPOS, pos + n);
    }
    enqueue(client);
  }
}

/** An invalid response head: 502 (nothing went to the client yet), the connection is dropped. */
function badResponse(up: i32): void {
  const client = peerOf(up);
  const u = cget(up, X_UP);
  upstreamFailure(u, now());
  cset(up, X_PEER, -1);
  endRequest(up, 502);
  connClose(up);
  if (client < 0) return;
  cset(client, X_PEER, -1);
  if (xf(client) & XC_HEAD_SENT) { gstat(PXG_TRUNCATED); closeSafe(client); return; }
  gstat(PXG_502);
  answer(client, 502, false);
}

/** The upstream failed mid-body: the client sees the response cut off by a close. */
function truncated(up: i32): void {
  const client = peerOf(up);
  upstreamFailure(cget(up, X_UP), now());
  gstat(PXG_TRUNCATED);
  cset(up, X_PEER, -1);
  endRequest(up, cget(up, X_USTATUS));
  connClose(up);
  if (client >= 0) { cset(client, X_PEER, -1); closeSafe(client); }
}

function endRequest(up: i32, status: i32): void {
  const u = cget(up, X_UP);
  if (u < 0 || cget(up, C_STATE) != US_ACTIVE) return;
  upstreamRequestEnd(u, status, status > 0 ? load<f64>(conn(up) + X_LAT) : now() - load<f64>(conn(up) + X_START));
  cset(up, C_STATE, US_CONNECTING + 100); // ended: not counted again (any non-active state)
}

/** The response body is complete (its bytes are in the client's ring). */
function responseEnded(up: i32, extra: bool): void {
  const client = peerOf(up);
  endRequest(up, cget(up, X_USTATUS));
  cset(up, X_PEER, -1);
  if (client >= 0) cset(client, X_PEER, -1);
  const reqDone = client >= 0 && (xf(client) & XC_REQ_DONE) != 0;
  if (extra || !reqDone || outPending(up) || cget(up, C_INFLIGHT) != 0 || (xf(up) & XU_NOREUSE) || draining || !poolPut(up)) closeSafe(up);
  if (client < 0) return;
  xset(client, XC_RESP_DONE);
  if (!reqDone) xset(client, XC_CLOSE); // the rest of its body would have to be read past: close instead
  if (!outPending(client) && !clientWriting(client)) responseFlushed(client);
  else enqueue(client);
}

/** The upstream's side ended (EOF, reset, write error) before the exchange did. */
function upstreamEnded(up: i32, res: i32): void {
  const client = peerOf(up);
  const x = xf(up);
  const u = cget(up, X_UP);
  if (x & XU_HEAD) {
    if (res == 0 && load<i32>(conn(up) + X_BODYST) == BODY_CLOSE) {
      // a close-delimited body ends here: complete
      pumpResponse(up);
      xset(up, XU_NOREUSE);
      if (cget(up, C_STATE) == US_ACTIVE) responseEnded(up, false);
      return;
    }
    truncated(up);
    return;
  }
  upstreamFailure(u, now());
  cset(up, X_PEER, -1);
  endRequest(up, 0);
  connClose(up);
  if (client < 0) return;
  cset(client, X_PEER, -1);
  setCurrentFd(client);
  if (xf(client) & XC_HEAD_SENT) { gstat(PXG_TRUNCATED); closeSafe(client); return; }
  const q = cget(client, X_REQF);
  const reused = (x & XU_REUSED) != 0;
  const allowed = (x & XU_GOT) == 0 && (reused || ((q & RQ_IDEMPOTENT) != 0 && (q & RQ_BODY) == 0));
  logBegin();
  logStr("proxy: upstream ");
  logInt(u);
  logStr(res == 0 ? " closed before a response" : " failed before a response: errno ");
  if (res != 0) logInt(-res);
  logEnd(LOG_WARN);
  retryOr(client, u, 502, allowed);
}

/** The client's response is flushed: next request, or close. */
function responseFlushed(fd: i32): void {
  const x = xf(fd);
  const st = cget(fd, C_STATE);
  const status = cget(fd, X_STATUS);
  if (status >= 500) ctlAddI32(STAT_RESPONSES_5XX, 1); else if (status >= 400) ctlAddI32(STAT_RESPONSES_4XX, 1);
  if (st == CS_LINGER) { linger(fd); return; }
  if (x & XC_CLOSE) { connClose(fd); return; }
  // keep-alive: the bytes after the request (pipelined) are the next one
  const bp = cget(fd, X_BODY_POS), len = cget(fd, C_RLEN);
  cset(fd, X_XF, XF_CLIENT);
  cset(fd, X_STATUS, 0);
  cset(fd, X_UP, -1);
  setDeadline(fd, idleMs);
  clearFlag(fd, CF_NO_READ);
  connRefreshInterest(fd);
  if (bp >= len) {
    releaseBuf(fd);
    cset(fd, C_STATE, CS_IDLE);
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  cset(fd, C_RPOS, bp);
  cset(fd, X_BODY_POS, 0);
  cset(fd, C_STATE, CS_HEAD);
  compact(fd);
  parseHead(fd);
}

// ---- answers of the proxy's own --------------------------------------------

/**
 * A small fixed answer (4xx for a refused request, 502/503/504). `refused`:
 * the request was not understood (serve closes after those, with a
 * lingering close); a 5xx keeps the connection when the request was read in
 * full and the client did not ask to close.
 */
function answer(fd: i32, status: i32, refused: bool): void {
  if (xf(fd) & XC_HEAD_SENT) { closeSafe(fd); return; }
  const close = refused || (xf(fd) & (XC_CLOSE)) != 0 || (xf(fd) & XC_REQ_DONE) == 0;
  if (status >= 400 && status < 500) gstat(PXG_4XX);
  const reason = reasonOf(status);
  const bodyLen = 4 + reason.length + 1;
  const head = (cget(fd, X_REQF) & RQ_HEAD) != 0;
  let p = scratch;
  p = put(p, "HTTP/1.1 "); p = putNum(p, status); p = put(p, " "); p = put(p, reason);
  p = put(p, "\r\nContent-Type: text/plain\r\nContent-Length: "); p = putNum(p, bodyLen);
  p = put(p, close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n");
  if (!head) { p = putNum(p, status); p = put(p, " "); p = put(p, reason); p = put(p, "\n"); }
  const n = <i32>(p - scratch);
  if (roomIn(fd) < n) { closeSafe(fd); return; }
  outAppend(fd, scratch, n);
  cset(fd, X_STATUS, status);
  xset(fd, XC_HEAD_SENT | XC_RESP_DONE);
  if (close) xset(fd, XC_CLOSE);
  noRead(fd);
  cset(fd, C_STATE, refused ? CS_LINGER : CS_FWD);
  setDeadline(fd, idleMs);
  enqueue(fd);
}

function reasonOf(s: i32): string {
  switch (s) {
    case 400: return "Bad Request";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
  }
  return s < 500 ? "Bad Request" : "Bad Gateway";
}
function put(p: usize, s: string): usize {
  for (let i = 0; i < s.length; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
  return p + <usize>s.length;
}
function putNum(p: usize, v: i32): usize {
  let d = 1;
  for (let t = v; t >= 10; t /= 10) d++;
  for (let i = d - 1; i >= 0; i--) { store<u8>(p + <usize>i, <u8>(0x30 + v % 10)); v /= 10; }
  return p + <usize>d;
}

/** serve's lingering close after a refused request: shut our side, drain theirs briefly. */
function linger(fd: i32): void {
  cset(fd, C_STATE, CS_LINGER);
  releaseBuf(fd);
  clearFlag(fd, CF_NO_READ);
  connRefreshInterest(fd);
  setDeadline(fd, LINGER_MS);
  submit(OP_SHUTDOWN, fd, SHUT_WR, 0, 0, 0);
  store<i32>(conn(fd) + C_INFLIGHT, OP_SHUTDOWN);
  cset(fd, X_STATUS, 0); // counted once
  xclear(fd, XC_RESP_DONE);
}

// ---- the idle pool ----------------------------------------------------------------

/** Puts an idle upstream connection on its pool (LIFO); false when the pool is full. */
function poolPut(up: i32): bool {
  const u = cget(up, X_UP);
  const size = load<i32>(poolSize + <usize>(u * 4));
  if (size >= keepalive) return false;
  releaseBuf(up);
  const head = load<i32>(poolHead + <usize>(u * 4));
  cset(up, X_POOL_NEXT, head);
  cset(up, X_POOL_PREV, -1);
  if (head >= 0) cset(head, X_POOL_PREV, up);
  store<i32>(poolHead + <usize>(u * 4), up);
  store<i32>(poolSize + <usize>(u * 4), size + 1);
  stat(u, PXH_POOLED);
  cset(up, C_STATE, US_POOLED);
  cset(up, X_XF, 0);
  xclear(up, XF_PAUSED);
  // watched for readability: the upstream's FIN or a reset drops it
  clearFlag(up, CF_NO_READ | CF_READABLE);
  connRefreshInterest(up);
  setDeadline(up, POOL_IDLE_MS);
  return true;
}

function poolUnlink(up: i32): void {
  const u = cget(up, X_UP);
  const next = cget(up, X_POOL_NEXT), prev = cget(up, X_POOL_PREV);
  if (prev >= 0) cset(prev, X_POOL_NEXT, next); else store<i32>(poolHead + <usize>(u * 4), next);
  if (next >= 0) cset(next, X_POOL_PREV, prev);
  store<i32>(poolSize + <usize>(u * 4), load<i32>(poolSize + <usize>(u * 4)) - 1);
  cset(up, X_POOL_NEXT, -1);
  cset(up, X_POOL_PREV, -1);
}

/** The most recently pooled usable connection to u, or -1. One with news pending (readable: closed) is dropped. */
function poolTake(u: i32): i32 {
  while (true) {
    const up = load<i32>(poolHead + <usize>(u * 4));
    if (up < 0) return -1;
    poolUnlink(up);
    const f = flags(up);
    if ((f & (CF_READABLE | CF_EOF | CF_HUP | CF_CLOSING)) != 0 || cget(up, C_INFLIGHT) != 0) {
      gstat(PXG_POOL_DROPPED);
      cset(up, C_STATE, US_CONNECTING + 100);
      connClose(up);
      continue;
    }
    return up;
  }
}

function poolDrop(up: i32): void {
  gstat(PXG_POOL_DROPPED);
  connClose(up); // the close hook unlinks it
}

// ---- timeouts, drain, close ---------------------------------------------------

export function httpProxyTimeout(fd: i32): void {
  const st = cget(fd, C_STATE);
  if (st == US_CONNECTING) { connectFailed(fd, 0); return; }
  if (st == US_POOLED) { connClose(fd); return; }
  if (st == US_ACTIVE) {
    if (xf(fd) & XU_HEAD) { truncated(fd); return; } // idle mid-body
    // no response head in time: 504, never retried (the upstream may be working on it)
    const client = peerOf(fd);
    upstreamFailure(cget(fd, X_UP), now());
    cset(fd, X_PEER, -1);
    endRequest(fd, 0);
    connClose(fd);
    if (client >= 0) { cset(client, X_PEER, -1); gstat(PXG_504); answer(client, 504, false); }
    return;
  }
  connClose(fd); // a client: idle, a slow head, a stalled body or a reader that stopped
}

export function httpProxyDrain(fd: i32): void {
  const st = cget(fd, C_STATE);
  if ((st == CS_IDLE && cget(fd, C_INFLIGHT) == 0) || st == US_POOLED) { connCloseSoon(fd); return; }
  if (isClient(fd)) xset(fd, XC_CLOSE); // in progress: finishes, then closes
}

/** connClose's hook: a pooled connection leaves its pool; a client takes its active upstream along. */
export function httpProxyClose(fd: i32): void {
  const st = cget(fd, C_STATE);
  const peer = peerOf(fd);
  cset(fd, X_PEER, -1);
  if (isClient(fd)) {
    if (linkedBack(fd, peer)) {
      cset(peer, X_PEER, -1);
      endRequest(peer, 0);
      closeSafe(peer);
    }
    return;
  }
  const u = cget(fd, X_UP);
  if (st == US_POOLED) poolUnlink(fd);
  if (st == US_ACTIVE) endRequest(fd, 0);
  if (u >= 0) upstreamConnClosed(u);
  if (linkedBack(fd, peer)) {
    // closed under an exchange (shutdown's grace, a trap): the client cannot be answered right
    cset(peer, X_PEER, -1);
    connCloseSoon(peer);
  }
}
