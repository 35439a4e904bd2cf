// HTTP/1.1 static-file serving: the connection state machine (seed 003, M4;
// RFC 9110/9112, nginx's behaviour where the RFCs leave room).
//
//   HS_IDLE ──bytes──▶ HS_HEAD ──head parsed──▶ [HS_BODY: discard body]
//      ▲                                            │
//      │                          file in cache? ───┴──▶ [HS_WAIT: open in flight]
//      │                                            │
//      └──── keep-alive, next request ◀── HS_WRITE ◀┘ ── error ──▶ HS_LINGER ──▶ close
//
// Requests are parsed in place in the connection's receive buffer (offsets,
// no copies). Pipelined requests are answered in order, one at a time: the
// next is parsed from the buffer only when the previous response is flushed.
// Response headers go into the write ring; bodies are small cached files
// (one writev with the headers) or sendfile(2) from the cached fd. A
// multipart/byteranges body is a sequence of steps, (part header, range)
// per part and the closing delimiter, queued one at a time by the
// body-finished hook (nextPart).
//
// `Expect: 100-continue` on a request whose body has not all arrived gets
// `100 Continue` before the body is read (HS_BODY writes it, input paused,
// then reads on); a request rejected without reading its body (405, 413,
// 417, framing errors) gets its final status alone.
//
// Timeouts: the idle timeout while waiting for a request, reading a body or
// writing; the header timeout from the first byte of a request head until it
// is complete, never extended by trickling bytes (the slow-loris defence).
//
// Options (abi.ts CFG_*): Cache-Control on file responses and listings (the
// host's default is `no-cache`: revalidate with the validators we send);
// CORS (`Access-Control-Allow-Origin: *` on every response, 204 for an
// OPTIONS preflight); precompressed sidecars (X.br / X.gz, chosen by
// Accept-Encoding; every response for X then carries Vary); the access log.
//
// This file is the state machine; static files are httpfiles.ts, response
// formatting httpresponse.ts, the record's fields and options httpstate.ts.
import {
  OP_READ, OP_SENDFILE, OP_SHUTDOWN, EAGAIN, PROTO_HTTP, OP_LIST, STAT_REQUESTS, STAT_RESPONSES_4XX,
  STAT_RESPONSES_5XX, STAT_BYTES_IN, C_STATE, C_INFLIGHT, C_RBUF, C_RLEN, C_RPOS, OP_OPEN, OP_PREAD, CLOSE_SERVER,
  CLOSE_HEADER_TIMEOUT, CLOSE_IDLE_TIMEOUT,
} from "../abi";
import { metricsMethod, metricsStatus, metricsDuration } from "../reactor/metrics";
import { submit, ctlAddI32, ctlAddF64, now } from "../reactor/ctl";
import { readBufTake, readBufGive, readBufCap, readBufSize, READ_SMALL } from "../reactor/pool";
import {
  conn, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppend, connClose, connCloseSoon,
  setDeadline, clearDeadline, connOpen, draining, connSetReason, connSetEndReason, connReason, CF_HUP, CF_READABLE, CF_WRITABLE, CF_OUT_ARMED, CF_READ_PAUSED, OUT_FAILED,
  OUT_DONE, OUT_MORE,
  connCompactRead, connReleaseRead,
} from "../reactor/conn";
import { H_CONN } from "../reactor/handlers";
import { Protocol, protocolOwnsOp } from "../reactor/protocol";
import { budgetCharge, budgetLeft, budgetDefer } from "../reactor/budget";
import {
  REQ_SCANNED, REQ_LINE_START, REQ_LINE_END, REQ_METHOD, REQ_VERSION, REQ_FLAGS, REQ_CONTENT_LENGTH,
  REQ_USER_AGENT_OFF, REQ_USER_AGENT_LEN, REQ_REFERER_OFF, REQ_REFERER_LEN, METHOD_GET, METHOD_HEAD, METHOD_OPTIONS,
  RF_CONN_CLOSE, RF_CONN_KEEPALIVE, RF_CHUNKED, RF_HAS_CONTENT_LENGTH, RF_EXPECT_CONTINUE, RF_EXPECT_OTHER,
  resetRequest, parseRequest, resetChunked, decodeChunked, chunkedDone,
} from "../http/parser";
import { entryForget, cachedBodyBytes } from "../http/filecache";
import {
  HS_BODY, HS_HEAD, HS_IDLE, HS_LINGER, HS_WAIT, HS_WRITE, HX_CHUNKED, HX_CLOSE, HX_CONTINUE, HX_DEFERRED, HX_STARTED,
  H_BODY_DONE, H_BODY_LEFT, H_CHUNK, H_ENTRY, H_FLAGS, H_HEAD_END, H_LINE_END, H_LINE_START, H_REFERER, H_SCANNED,
  H_START, H_STATUS, H_UA, H_WAIT_ENTRY, LINGER_MS, accessLog, cors, headerMs, httpConfigure, idleMs, maxBody,
  maxHeader, maxHeaders, maxLine, req,
} from "./httpstate";
import { bodyFinished, filesInit, httpHeldBytes, httpService, listDone, releaseBuffers, serve } from "./httpfiles";
import { errorResponse, initStatic, keepSpan, lit100, lit100Len, logAccess } from "./httpresponse";

function httpInit(): void {
  httpConfigure();
  filesInit();
  initStatic();
}

/** Reads the config and returns HTTP's hooks (registered in assembly/protocols.ts). */
export function httpProtocol(): Protocol {
  httpInit();
  const p = new Protocol();
  p.open = httpOpen;
  p.run = httpRun;
  p.complete = httpComplete;
  p.timeout = httpTimeout;
  p.drain = httpDrain;
  p.close = releaseBuffers; // no response buffer outlives its connection
  p.bodyFinished = bodyFinished;
  p.service = httpService;
  p.connBytes = httpHeldBytes;
  p.sharedBytes = cachedBodyBytes;
  protocolOwnsOp(PROTO_HTTP, OP_OPEN);
  protocolOwnsOp(PROTO_HTTP, OP_PREAD);
  return p;
}

export function httpOpen(fd: i32): void {
  connOpen(fd, H_CONN, PROTO_HTTP, HS_IDLE);
  setDeadline(fd, idleMs);
  // TCP_DEFER_ACCEPT: the request is usually there already.
  setFlag(fd, CF_READABLE);
  enqueue(fd);
}

// ---- running ------------------------------------------------------------

export function httpRun(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_INFLIGHT) != 0) return;
  const st = load<i32>(c + C_STATE);
  const f = load<i32>(c + 4 /* C_FLAGS */);
  // Writing a response, or the 100 Continue of a body being read.
  if (st == HS_WRITE || (st == HS_BODY && outPending(fd))) {
    if (f & CF_WRITABLE || !(f & CF_OUT_ARMED)) outStep(fd);
    return;
  }
  // Waiting for a file: only the entry's wake-up (httpWake) resumes it. An
  // event meanwhile (pipelined bytes) must not serve() again: that would
  // link it into a waiter chain a second time.
  if (st == HS_WAIT) { if (load<i32>(c + H_WAIT_ENTRY) == 0) serve(fd); return; }
  // Pipelined requests set aside when the budget ran out (responseDone): the
  // next one is in the buffer already, before any more reading.
  const hx = load<i32>(c + H_FLAGS);
  if (hx & HX_DEFERRED) { store<i32>(c + H_FLAGS, hx & ~HX_DEFERRED); process(fd); return; }
  if (f & CF_READABLE) {
    // A connection that read its share of this tick reads on in the next
    // (CF_READABLE stays: an edge-triggered backend will not say it again).
    if (!budgetLeft(fd)) { budgetDefer(fd); return; }
    startRead(fd);
  }
}

function startRead(fd: i32): void {
  const c = conn(fd);
  let b = <usize>load<i32>(c + C_RBUF);
  if (b == 0) {
    // Most heads fit a small buffer; it grows only for those that do not.
    b = readBufTake(READ_SMALL);
    store<i32>(c + C_RBUF, <i32>b);
    store<i32>(c + C_RLEN, 0);
    store<i32>(c + C_RPOS, 0);
  }
  const st = load<i32>(c + C_STATE);
  if (st != HS_LINGER && load<i32>(c + C_RLEN) == readBufCap(b)) {
    connCompactRead(fd);
    if (load<i32>(c + C_RLEN) == readBufCap(b)) b = growReadBuf(fd);
  }
  const len = st == HS_LINGER ? 0 : load<i32>(c + C_RLEN); // lingering: discard, overwrite
  submit(OP_READ, fd, <i32>(b + <usize>len), readBufCap(b) - len, 0, 0);
  store<i32>(c + C_INFLIGHT, OP_READ);
}

/** Moves the connection's input into a large receive buffer. */
function growReadBuf(fd: i32): usize {
  const c = conn(fd);
  const old = <usize>load<i32>(c + C_RBUF);
  if (readBufCap(old) >= readBufSize) return old;
  const b = readBufTake(readBufSize);
  const len = load<i32>(c + C_RLEN);
  memory.copy(b, old, <usize>len);
  readBufGive(old);
  store<i32>(c + C_RBUF, <i32>b);
  return b;
}

export function httpComplete(fd: i32, op: i32, res: i32): void {
  const c = conn(fd);
  if (op == OP_READ) {
    store<i32>(c + C_INFLIGHT, 0);
    readDone(fd, res);
    return;
  }
  if (op == OP_LIST) { listDone(fd, res); return; }
  if (op == OP_SHUTDOWN) {
    store<i32>(c + C_INFLIGHT, 0);
    setFlag(fd, CF_READABLE);
    enqueue(fd);
    return;
  }
  // a write of the response
  if (res == 0 && load<i32>(c + C_INFLIGHT) == OP_SENDFILE) {
    // sendfile met the end of the file before the Content-Length already
    // sent: the file shrank under us (edited in place). The response cannot
    // be completed, and waiting for WRITABLE would only repeat this (a busy
    // loop in LT mode, a stall until the idle timeout in ET). Close, and
    // forget the entry so the next request reopens the file.
    store<i32>(c + C_INFLIGHT, 0);
    const e = load<i32>(c + H_ENTRY) - 1;
    if (e >= 0) entryForget(e);
    connClose(fd);
    return;
  }
  const r = outDone(fd, res);
  if (r == OUT_FAILED) { connClose(fd); return; }
  if (res > 0) setDeadline(fd, idleMs); // progress: the idle clock restarts
  if (r == OUT_DONE) {
    if (load<i32>(c + C_STATE) == HS_BODY) { continueBody(fd); return; } // a 100 Continue went out
    responseDone(fd);
    return;
  }
  if (r == OUT_MORE) enqueue(fd);
}

function readDone(fd: i32, res: i32): void {
  const c = conn(fd);
  const st = load<i32>(c + C_STATE);
  if (res > 0) {
    ctlAddF64(STAT_BYTES_IN, <f64>res);
    budgetCharge(fd, 0, res);
    // A short read drained the socket: the next bytes will raise a new edge.
    // Not after the peer's FIN, which raises no edge again: the EOF is still
    // to be read (else a client that sends and closes at once would hold the
    // connection open until the idle timeout, in ET mode).
    const cap = readBufCap(<usize>load<i32>(c + C_RBUF));
    const asked = st == HS_LINGER ? cap : cap - load<i32>(c + C_RLEN);
    if (res < asked && !(flags(fd) & CF_HUP)) clearFlag(fd, CF_READABLE);
    if (st == HS_LINGER) { enqueue(fd); return; }
    store<i32>(c + C_RLEN, load<i32>(c + C_RLEN) + res);
    if (st == HS_IDLE) {
      store<i32>(c + C_STATE, HS_HEAD);
      store<f64>(c + H_START, now());
      startHeadTimer(fd);
    }
    process(fd);
    return;
  }
  if (res == -EAGAIN) {
    clearFlag(fd, CF_READABLE);
    if (load<i32>(c + C_RLEN) == load<i32>(c + C_RPOS)) connReleaseRead(fd);
    return;
  }
  // EOF or an error: nothing more will come. (A request in progress is
  // abandoned by the client; nothing to answer.) After an error response
  // (lingering) the close was the server's decision.
  if (st != HS_LINGER) connSetEndReason(fd, res);
  connClose(fd);
}

function startHeadTimer(fd: i32): void {
  const c = conn(fd);
  store<i32>(c + H_FLAGS, load<i32>(c + H_FLAGS) | HX_STARTED);
  if (headerMs <= 0) { clearDeadline(fd); return; }
  // The header deadline may be earlier than the timer armed for idle.
  setDeadline(fd, headerMs);
}

/**
 * Sets the deadline to now + ms and pulls the connection's timer in if it
 * would fire later. (setDeadline only records a new deadline while a timer
 * is live, which suits deadlines that move later, the common case.)
 */
/** Parses and acts on buffered bytes: a head, a body, or the next pipelined request. */
function process(fd: i32): void {
  const c = conn(fd);
  const st = load<i32>(c + C_STATE);
  if (st == HS_BODY) { discardBody(fd); return; }
  if (st != HS_HEAD) return;
  const b = <usize>load<i32>(c + C_RBUF);
  const pos = load<i32>(c + C_RPOS);
  const len = load<i32>(c + C_RLEN);
  // Resume the incremental scan: its whole phase-1 state (how far it got,
  // where the request line ends) lives in the connection between reads.
  resetRequest(req);
  store<i32>(req + REQ_SCANNED, load<i32>(c + H_SCANNED));
  store<i32>(req + REQ_LINE_START, load<i32>(c + H_LINE_START));
  store<i32>(req + REQ_LINE_END, load<i32>(c + H_LINE_END));
  const r = parseRequest(b + <usize>pos, len - pos, req, maxLine, maxHeader, maxHeaders);
  if (r == 0) {
    store<i32>(c + H_SCANNED, load<i32>(req + REQ_SCANNED));
    store<i32>(c + H_LINE_START, load<i32>(req + REQ_LINE_START));
    store<i32>(c + H_LINE_END, load<i32>(req + REQ_LINE_END));
    // Need more bytes: make room at the end if the head started late.
    if (len == readBufCap(b)) connCompactRead(fd);
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  store<i32>(c + H_SCANNED, 0);
  store<i32>(c + H_LINE_START, 0);
  store<i32>(c + H_LINE_END, 0);
  ctlAddI32(STAT_REQUESTS, 1);
  metricsMethod(load<i32>(req + REQ_METHOD));
  budgetCharge(fd, 1, 0);
  if (r < 0) { errorResponse(fd, -r); return; }
  store<i32>(c + H_HEAD_END, r);
  if (accessLog) {
    // What the log line needs from this parse; the parse record is shared.
    keepSpan(c + H_UA, REQ_USER_AGENT_OFF, REQ_USER_AGENT_LEN);
    keepSpan(c + H_REFERER, REQ_REFERER_OFF, REQ_REFERER_LEN);
  }
  store<i32>(c + H_BODY_DONE, 0);
  // Keep-alive (RFC 9112 §9.3): 1.1 unless "close"; 1.0 only if asked.
  const rf = load<i32>(req + REQ_FLAGS);
  let hx = load<i32>(c + H_FLAGS) & ~(HX_CLOSE | HX_CHUNKED | HX_CONTINUE);
  const v10 = load<i32>(req + REQ_VERSION) == 10;
  if (rf & RF_CONN_CLOSE || (v10 && !(rf & RF_CONN_KEEPALIVE)) || draining) hx |= HX_CLOSE;
  const method = load<i32>(req + REQ_METHOD);
  if (method != METHOD_GET && method != METHOD_HEAD && !(cors && method == METHOD_OPTIONS)) {
    // Valid but not for static files: 405 names what is allowed. The body
    // (if any) is not read; the connection closes after the answer.
    // (With CORS on, OPTIONS is a preflight: answered in serve().)
    store<i32>(c + H_FLAGS, hx);
    errorResponse(fd, 405);
    return;
  }
  // An expectation we cannot meet: 417, body unread (RFC 9110 §10.1.1).
  // 100-continue is honoured in HTTP/1.1 only: a 1.0 client may not know
  // 1xx responses, and §10.1.1 says to ignore it there.
  if (rf & RF_EXPECT_OTHER) { store<i32>(c + H_FLAGS, hx); errorResponse(fd, 417); return; }
  if (rf & RF_EXPECT_CONTINUE && !v10) hx |= HX_CONTINUE;
  // A body on GET/HEAD is unusual but legal: read and discard it first, so
  // the next pipelined request parses from the right place.
  if (rf & RF_CHUNKED) {
    hx |= HX_CHUNKED;
    resetChunked(c + H_CHUNK);
    store<i32>(c + H_FLAGS, hx);
    store<i32>(c + C_STATE, HS_BODY);
    clearDeadline(fd); setDeadline(fd, idleMs);
    discardBody(fd);
    return;
  }
  store<i32>(c + H_FLAGS, hx);
  if (rf & RF_HAS_CONTENT_LENGTH && load<f64>(req + REQ_CONTENT_LENGTH) > 0) {
    const cl = load<f64>(req + REQ_CONTENT_LENGTH);
    if (cl > maxBody) { errorResponse(fd, 413); return; }
    store<f64>(c + H_BODY_LEFT, cl);
    store<i32>(c + C_STATE, HS_BODY);
    setDeadline(fd, idleMs);
    discardBody(fd);
    return;
  }
  serve(fd);
}

/** Consumes body bytes that follow the head; serves the request when the body is over. */
function discardBody(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  const bodyStart = load<i32>(c + C_RPOS) + load<i32>(c + H_HEAD_END);
  const len = load<i32>(c + C_RLEN);
  const avail = len - bodyStart;
  let used = 0;
  let done = false;
  if (load<i32>(c + H_FLAGS) & HX_CHUNKED) {
    const r = decodeChunked(b + <usize>bodyStart, avail, c + H_CHUNK, maxBody);
    if (r < 0) {
      // The answer reads the method and version from the parse record, which
      // is shared: another connection's head may be in it since this body
      // began (a later tick). Re-parse this head first.
      reparseHead(fd);
      errorResponse(fd, -r);
      return;
    }
    used = r;
    done = chunkedDone(c + H_CHUNK);
  } else {
    const left = load<f64>(c + H_BODY_LEFT);
    used = <f64>avail >= left ? <i32>left : avail;
    store<f64>(c + H_BODY_LEFT, left - <f64>used);
    done = left - <f64>used <= 0;
  }
  // Drop the consumed body bytes, keeping the head in place and anything
  // after the body (the next pipelined request) right behind it.
  if (used > 0) {
    memory.copy(b + <usize>bodyStart, b + <usize>(bodyStart + used), <usize>(avail - used));
    store<i32>(c + C_RLEN, len - used);
  }
  if (!done) {
    // The client may be waiting for our word before it sends the rest.
    if (load<i32>(c + H_FLAGS) & HX_CONTINUE) { sendContinue(fd); return; }
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  reparseHead(fd);
  serve(fd);
}

/** Parses the connection's head (kept in its buffer) into the shared parse record again. */
function reparseHead(fd: i32): void {
  const c = conn(fd);
  resetRequest(req);
  parseRequest(<usize>load<i32>(c + C_RBUF) + <usize>load<i32>(c + C_RPOS), load<i32>(c + H_HEAD_END), req, maxLine, maxHeader, maxHeaders);
}

/**
 * `Expect: 100-continue` and the body has not all arrived (and nothing about
 * the head made us refuse it): tell the client to send it. Input stays
 * paused until the interim response is flushed (an LT loop would otherwise
 * spin on input we do not read); continueBody() then reads on. A client
 * that sent the body anyway, or some of it, gets the 100 all the same, which
 * RFC 9110 §15.2 requires it to tolerate.
 */
function sendContinue(fd: i32): void {
  const c = conn(fd);
  store<i32>(c + H_FLAGS, load<i32>(c + H_FLAGS) & ~HX_CONTINUE);
  if (!outAppend(fd, lit100, lit100Len)) { connClose(fd); return; }
  setFlag(fd, CF_READ_PAUSED);
  // Nothing is in flight here (we come from a read completion or the end of
  // the previous response); if something were, httpRun writes it later.
  if (load<i32>(c + C_INFLIGHT) == 0) outStep(fd);
}

/** The 100 Continue is flushed: read the body. */
function continueBody(fd: i32): void {
  clearFlag(fd, CF_READ_PAUSED);
  if (flags(fd) & CF_READABLE) enqueue(fd);
}

export function startWrite(fd: i32): void {
  const c = conn(fd);
  store<i32>(c + C_STATE, HS_WRITE);
  // No reading until this response is flushed (pipelined input waits in the
  // socket): if the write blocks, WRITABLE is armed without READABLE.
  setFlag(fd, CF_READ_PAUSED);
  setDeadline(fd, idleMs);
  if (load<i32>(c + C_INFLIGHT) == 0) {
    // Write at once: most responses complete directly, with no epoll_ctl.
    if (outPending(fd)) outStep(fd); else responseDone(fd);
  }
}

/** The response is flushed: log it, then close or go on with the next request. */
function responseDone(fd: i32): void {
  const c = conn(fd);
  clearFlag(fd, CF_READ_PAUSED);
  const status = load<i32>(c + H_STATUS);
  if (status >= 500) ctlAddI32(STAT_RESPONSES_5XX, 1); else if (status >= 400) ctlAddI32(STAT_RESPONSES_4XX, 1);
  metricsStatus(status);
  metricsDuration(now() - load<f64>(c + H_START));
  if (accessLog) logAccess(fd, status);
  const hx = load<i32>(c + H_FLAGS);
  if (hx & HX_CLOSE) {
    if (status >= 400) { linger(fd); return; }
    connClose(fd);
    return;
  }
  // Keep-alive: drop the request's bytes, then the next one (pipelined) or idle.
  const end = load<i32>(c + C_RPOS) + load<i32>(c + H_HEAD_END);
  store<i32>(c + H_FLAGS, 0);
  store<i32>(c + H_HEAD_END, 0);
  if (end >= load<i32>(c + C_RLEN)) {
    connReleaseRead(fd);
    store<i32>(c + C_STATE, HS_IDLE);
    setDeadline(fd, idleMs);
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  store<i32>(c + C_RPOS, end);
  store<i32>(c + C_STATE, HS_HEAD);
  store<f64>(c + H_START, now()); // a pipelined request starts when its turn comes
  startHeadTimer(fd);
  // Fairness: a client that pipelines thousands of requests gets its
  // budget's worth per tick (reactor/budget.ts); the rest waits in the buffer.
  if (!budgetLeft(fd)) { store<i32>(c + H_FLAGS, load<i32>(c + H_FLAGS) | HX_DEFERRED); budgetDefer(fd); return; }
  process(fd);
}

/**
 * After an error response: shut the write side and read until the client
 * closes (or a short timeout), so the kernel does not answer its unread
 * bytes with a RST that could destroy the response in flight (nginx's
 * lingering close).
 */
function linger(fd: i32): void {
  const c = conn(fd);
  store<i32>(c + C_STATE, HS_LINGER);
  connSetReason(fd, CLOSE_SERVER);
  store<i32>(c + C_RPOS, 0);
  store<i32>(c + C_RLEN, 0);
  setDeadline(fd, LINGER_MS);
  submit(OP_SHUTDOWN, fd, 1 /* SHUT_WR */, 0, 0, 0);
  store<i32>(c + C_INFLIGHT, OP_SHUTDOWN);
}

/**
 * Graceful shutdown: an idle keep-alive connection closes now; one with a
 * request in progress finishes it, answers with `Connection: close` and
 * closes (process() marks every request parsed from now on).
 */
export function httpDrain(fd: i32): void {
  const c = conn(fd);
  const st = load<i32>(c + C_STATE);
  if (st == HS_IDLE && load<i32>(c + C_INFLIGHT) == 0) { connCloseSoon(fd); return; }
  if (st == HS_WRITE || st == HS_WAIT || st == HS_BODY) store<i32>(c + H_FLAGS, load<i32>(c + H_FLAGS) | HX_CLOSE);
}

export function httpTimeout(fd: i32): void {
  // Idle keep-alive, slow-loris head, stalled body or a reader that stopped
  // reading: close without a word, as nginx does. A head still coming is
  // the header timeout's doing (the reactor said idle).
  if (load<i32>(conn(fd) + C_STATE) == HS_HEAD && connReason(fd) == CLOSE_IDLE_TIMEOUT) connSetReason(fd, CLOSE_HEADER_TIMEOUT);
  connClose(fd);
}
