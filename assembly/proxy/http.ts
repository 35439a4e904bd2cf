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
// Errors (502 / 503 / 504, 4xx for a refused request): http-answer.ts.
// The idle pool: http-pool.ts. States, fields and settings: http-state.ts.
// The connect sequence and the client/upstream link: link.ts.
//
// Retries, once, on another upstream: a connect that failed; or a request
// that got no response byte back on a REUSED pooled connection (the upstream
// closed it idle: the request most likely never reached it), or that is
// idempotent (GET/HEAD) without a body. A request whose body started to
// stream from a second buffer (its first bytes are gone) is never retried.
import {
  OP_READ, OP_SOCKET, OP_CONNECT, OP_CLOSE, OP_SHUTDOWN, EAGAIN, EMFILE, ENFILE, ENOMEM, ENOBUFS,
  STAT_BYTES_IN, STAT_REQUESTS, STAT_RESPONSES_4XX, STAT_RESPONSES_5XX,
  CFG_PROXY_HASH_KEY, CFG_PEER_ADDRS,
  STAT_PROXY_NO_UPSTREAM, PROTO_PROXY_HTTP, C_PROTO, C_INFLIGHT, C_RBUF, C_RLEN, C_RPOS, C_WLEN,
  C_STATE, BAL_IP_HASH, BAL_HASH, LOG_WARN,
  PXH_REUSES, PXH_CONNECTS, PXG_RETRIES, PXG_502, PXG_503, PXG_504,
  PXG_TRUNCATED, HASH_KEY_PATH, HASH_KEY_HEADER,
} from "../abi";
import { submit, ctlI32, ctlAddI32, ctlAddF64, now, setCurrentFd } from "../reactor/ctl";
import { metricsMethod, metricsStatus } from "../reactor/metrics";
import { readBufTake, readBufGive, readBufCap, readBufSize, READ_SMALL } from "../reactor/pool";
import {
  conn, cget, cset, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppend, connClose,
  connCloseSoon, setDeadline, clearDeadline, etMode, connOpen, connRefreshInterest, writeBufMax, draining,
  CF_READABLE, CF_WRITABLE, CF_OUT_ARMED, CF_HUP, CF_CLOSING, CF_NO_READ, OUT_FAILED,
} from "../reactor/conn";
import { H_CONN, maxFds } from "../reactor/handlers";
import { Protocol, protocolOwnsOp } from "../reactor/protocol";
import { peersOn, peersInit, peerFormat } from "../reactor/peer";
import { logBegin, logStr, logInt, logEnd } from "../reactor/log";
import {
  REQ_SCANNED, REQ_LINE_START, REQ_LINE_END, REQ_METHOD, REQ_VERSION, REQ_FLAGS, REQ_CONTENT_LENGTH,
  REQ_TARGET_OFF, REQ_TARGET_LEN, METHOD_GET, METHOD_HEAD, RF_CONN_CLOSE, RF_CONN_KEEPALIVE, RF_CHUNKED,
  RF_HAS_CONTENT_LENGTH, RF_EXPECT_OTHER, resetRequest, parseRequest,
} from "../http/parser";
import {
  RESP_SCANNED, RESP_STATUS, RESP_FLAGS, RESP_BODY, RESP_CONTENT_LENGTH, RS_INTERIM, RS_REUSABLE,
  BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE, resetResponse, parseResponse,
} from "../http/response";
import { BODYST_OUT, bodyStart, bodyFeed, bodyDechunk, bodyDone } from "../http/framing";
import { proxyRewriteRequest, proxyRewriteResponse, RW_NEEDS_DECHUNK, RWR_CLOSE, RWR_CLIENT_HTTP10, RWR_DECHUNK } from "./rewrite";
import {
  upstreamConnClosed,
  upstreamRequestStart, upstreamFailure, upstreamSuccess, upstreamBytes, upstreamRetried,
} from "./upstreams";
import { balancePick, balancePolicy, hashBytes } from "./balance";
import { proxyUpstreamsLoad, proxyService as tcpService } from "./tcp";
import {
  CS_IDLE, CS_HEAD, CS_PICK, CS_SOCKET, CS_WAIT, CS_FWD, CS_LINGER, US_CONNECTING, US_ACTIVE, US_POOLED,
  X_REQF, X_HEAD_END, X_BODY_POS, X_SCAN, X_LSTART, X_LEND, X_HASH, X_STATUS, X_ASKED, X_POOL_NEXT, X_POOL_PREV,
  X_RSCAN, X_USTATUS, X_START, X_LAT, X_BODYST, XC_REQ_DONE, XC_RESP_DONE, XC_CLOSE, XC_HEAD_SENT, XC_HEAD_GONE,
  XU_HEAD, XU_GOT, XU_NOREUSE, XU_REUSED, XU_DECHUNK, RQ_HEAD, RQ_HTTP10, RQ_BODY, RQ_IDEMPOTENT,
  idleMs, headerMs, connectMs, upstreamMs, maxLine, maxHeader, maxHeaders, req, resp, scratch, scratchCap,
  httpConfigLoad, stat, gstat, releaseBuf, noRead, wantRead, hashKeyRec, addrText,
} from "./http-state";
import { poolInit, poolPut, poolTake, poolDrop, poolUnlink, poolMakeRoom } from "./http-pool";
import { answer, linger, badResponse, truncated, endRequest, badRequestBody } from "./http-answer";
import {
  X_PEER, X_UP, X_XF, X_TRIES, XF_CLIENT, XF_PAUSED, xf, xset, xclear, peerOf, isClient, linkedBack, closeSafe,
  peerHash, roomIn, pause, resume, askSocket, askConnect, connectAgain, connectOutcome, connectCompleted, socketArrived,
  upstreamOpen, connectFailed as connectDropped, mayRetry, countTry, CONNECT_OK, CONNECT_WAIT,
} from "./link";

export { proxyHttpUpstreamStats, proxyHttpStats, proxyHashKeyConfig } from "./http-state";

// The hash key: policy BAL_HASH / BAL_IP_HASH and CFG_PROXY_HASH_KEY.
let policy = 0;
let hashKind = 0;

export function proxyHttpProtocol(): Protocol {
  httpConfigLoad();
  hashKind = ctlI32(CFG_PROXY_HASH_KEY);
  poolInit();
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
  poolMakeRoom(); // (before it counts as open: the listener counts it after this hook)
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



// ---- completions ----------------------------------------------------------------

export function httpProxyComplete(fd: i32, op: i32, res: i32): void {
  const c = conn(fd);
  const inflight = load<i32>(c + C_INFLIGHT);
  const st = load<i32>(c + C_STATE);
  if (inflight == OP_READ) {
    store<i32>(c + C_INFLIGHT, 0);
    readDone(fd, st, res);
    // Bytes put in its ring while the read was in flight (an answer of ours
    // after the upstream went, response bytes) were enqueued then, but the
    // run returned on the read: write them now (no event may come for them).
    if (cget(fd, C_STATE) != 0 && cget(fd, C_INFLIGHT) == 0 && outPending(fd)) enqueue(fd);
    return;
  }
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
  metricsMethod(load<i32>(req + REQ_METHOD));
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
  // failed for want of fds (tcp mode, which has no answer, closes the client).
  if (res >= maxFds && client >= 0 && client < maxFds && cget(client, C_STATE) == CS_SOCKET && !(flags(client) & CF_CLOSING)) {
    submit(OP_CLOSE, res, 0, 0, 0, 0);
    res = -EMFILE;
  }
  if (!socketArrived(client, res, CS_SOCKET)) return;
  if (res < 0) {
    // Out of fds or memory here is this proxy's shortage, not the upstream's
    // fault (not counted against it): 503, as serve answers one. Else 502.
    const short = res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS;
    gstat(short ? PXG_503 : PXG_502);
    answer(client, short ? 503 : 502, false);
    return;
  }
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
  // A read in flight owns the buffer's positions: its completion pumps (as tcp.ts forward)
  if (cget(up, C_INFLIGHT) == OP_READ) return;
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
  metricsStatus(status);
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
