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
import {
  OP_READ, OP_SENDFILE, OP_SHUTDOWN, EAGAIN, PROTO_HTTP, FILE_REGULAR, FILE_DIRECTORY,
  CFG_IDLE_TIMEOUT, CFG_HEADER_TIMEOUT, CFG_MAX_LINE, CFG_MAX_HEADER, CFG_MAX_HEADERS, CFG_MAX_BODY, CFG_ACCESS_LOG,
  CFG_LISTING, OP_LIST, STAT_REQUESTS, STAT_RESPONSES_4XX, STAT_RESPONSES_5XX, STAT_BYTES_IN, ENOENT, EACCES,
  ENAMETOOLONG, CFG_MAX_FDS, CFG_CORS, CFG_PRECOMPRESSED, CFG_CACHE_CONTROL, CFGT_CACHE_CONTROL,
  CACHE_CONTROL_MAX, FILE_HAS_BR, FILE_HAS_GZIP, C_STATE, C_INFLIGHT, C_RBUF, C_RLEN, C_RPOS, CONN_SIZE,
  C_BODY_KIND, C_BODY_PTR, C_BODY_FD, C_BODY_LEFT, C_BODY_OFF, C_PROTO_AREA, OP_OPEN, OP_PREAD, SQE_A2, SQE_A3,
} from "../abi";
import { submit, ctlI32, ctlAddI32, ctlAddF64, wallNow, now, cfgText, sqeArg } from "../reactor/ctl";
import { readBufTake, readBufGive, readBufCap, readBufSize, READ_SMALL, ringTake, ringGive } from "../reactor/pool";
import {
  conn, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outReserve, outCommit, outAppend,
  connClose, connCloseSoon, setDeadline, clearDeadline, connOpen, draining,
  CF_READABLE, CF_WRITABLE, CF_OUT_ARMED, CF_READ_PAUSED, BODY_MEMORY, BODY_FILE, OUT_FAILED, OUT_DONE,
  OUT_MORE,
} from "../reactor/conn";
import { H_CONN } from "../reactor/handlers";
import { Protocol, protocolOwnsOp } from "../reactor/protocol";
import { accessLogInit, accessLine } from "../http/accesslog";
import { chooseEncoding, ENC_IDENTITY, ENC_BR } from "../http/encoding";
import {
  REQ_SIZE, REQ_SCANNED, REQ_LINE_START, REQ_LINE_END, REQ_METHOD, REQ_VERSION, REQ_FLAGS, REQ_CONTENT_LENGTH,
  REQ_TARGET_OFF, REQ_TARGET_LEN, REQ_IF_NONE_MATCH_OFF, REQ_IF_NONE_MATCH_LEN, REQ_IF_MODIFIED_SINCE_OFF,
  REQ_IF_MODIFIED_SINCE_LEN, REQ_IF_MATCH_OFF, REQ_IF_MATCH_LEN, REQ_IF_UNMODIFIED_SINCE_OFF,
  REQ_IF_UNMODIFIED_SINCE_LEN, REQ_RANGE_OFF, REQ_RANGE_LEN, REQ_IF_RANGE_OFF, REQ_IF_RANGE_LEN,
  REQ_ACCEPT_ENCODING_OFF, REQ_ACCEPT_ENCODING_LEN, REQ_ACR_HEADERS_OFF, REQ_ACR_HEADERS_LEN,
  REQ_USER_AGENT_OFF, REQ_USER_AGENT_LEN, REQ_REFERER_OFF, REQ_REFERER_LEN,
  METHOD_GET, METHOD_HEAD, METHOD_OPTIONS, RF_CONN_CLOSE, RF_CONN_KEEPALIVE, RF_CHUNKED, RF_HAS_CONTENT_LENGTH,
  RF_EXPECT_CONTINUE, RF_EXPECT_OTHER,
  resetRequest, parseRequest, resetChunked, decodeChunked, chunkedDone,
} from "../http/parser";
import { normalizePath, pathFlags, PATHF_TRAILING_SLASH, PATHF_DOTFILE } from "../http/path";
import { formatHttpDate, parseHttpDate } from "../http/date";
import {
  evaluatePreconditions, parseRange, rangeCount, rangeStartAt, rangeEndAt, ifRangeAllows, RANGE_OK, RANGE_UNSATISFIABLE,
  RANGE_PARTS_MAX,
} from "../http/conditional";
import {
  fileCacheInit, lookup, startOpen, needsRevalidate, startRevalidate, addWaiter, waitersAddr, entryState, entryKind, entryFd,
  entrySize, entryMtime, entryBody, entryHeaders, entryHeadersLen, entryEtag, entryEtagLen, entryRef, entryUnref,
  entryForget, entryFlags, entryCtEnd, entryOfRecord, openCompleted, bodyLoaded, takeWaiters, cachedBodyBytes,
  FC_LOADING, PATH_MAX_CACHED,
} from "../http/filecache";

// states (C_STATE)
const HS_IDLE = 1;    // between requests, no bytes of the next one yet
const HS_HEAD = 2;    // reading a request head
const HS_BODY = 3;    // discarding a request body
const HS_WAIT = 4;    // waiting for the file cache (open in flight)
const HS_WRITE = 5;   // writing a response
const HS_LINGER = 6;  // error sent, write side shut: drain input, then close

// per-connection fields in the protocol area
const H_SCANNED = C_PROTO_AREA;          // i32 parser resume point
const H_FLAGS = C_PROTO_AREA + 4;        // i32 HX_*
const H_BODY_LEFT = C_PROTO_AREA + 8;    // f64 Content-Length bytes still to discard
const H_CHUNK = C_PROTO_AREA + 16;       // CHUNK_SIZE bytes: chunked decoder state
const H_ENTRY = C_PROTO_AREA + 48;       // i32 file-cache entry + 1 held by the response
const H_HEAD_END = C_PROTO_AREA + 52;    // i32 length of the current request head
const H_STATUS = C_PROTO_AREA + 56;      // i32 status of the current response (access log)
const H_WAIT_NEXT = C_PROTO_AREA + 60;   // i32 waiter chain (fd + 1)
const H_SENT = C_PROTO_AREA + 64;        // f64 body bytes of the current response (access log)
const H_BODY_DONE = C_PROTO_AREA + 72;   // i32 body bytes already consumed after the head
const H_LINE_START = C_PROTO_AREA + 76;  // i32 parser phase-1 state: leading empty line skipped
const H_LINE_END = C_PROTO_AREA + 80;    // i32 parser phase-1 state: end of the request line
const H_LIST_BUF = C_PROTO_AREA + 84;    // i32 directory-listing buffer held by the response (0: none)
const H_MULTI = C_PROTO_AREA + 88;       // i32 multipart/byteranges state held by the response (0: none)
const H_WAIT_ENTRY = C_PROTO_AREA + 92;  // i32 file-cache entry + 1 whose waiter chain holds this connection (0: none)
const H_START = C_PROTO_AREA + 96;       // f64 loop time of the request head's first byte (access log)
const H_UA = C_PROTO_AREA + 104;         // u16 offset in the head (0: none), u16 length: User-Agent (access log)
const H_REFERER = C_PROTO_AREA + 108;    // u16 offset, u16 length: Referer (access log)
const H_END = C_PROTO_AREA + 112;        // first byte past the HTTP fields
// Each field has its own offset, and the last must end inside the record:
// httpInit() checks. (A field once added at a taken offset: the fuzzer found it.)

const HX_CLOSE = 1;      // close after this response
const HX_STARTED = 2;    // the head timer is running for this request
const HX_CHUNKED = 4;
const HX_CONTINUE = 8;   // Expect: 100-continue, and no 100 sent yet

// multipart/byteranges state: a ring-pool buffer (class MP_CLASS) taken for
// the response and given back when the closing delimiter is queued or the
// connection closes. Offsets:
const MP_CLASS: i32 = 0;        // 4 KiB; httpInit checks the layout fits
const MP_COUNT = 0;             // i32 parts
const MP_NEXT = 4;              // i32 next step to queue (== MP_COUNT: the closing delimiter)
const MP_BOUNDARY = 8;          // BOUNDARY_LEN bytes
const MP_STEPS = 24;            // per step: first f64, length f64, text offset i32, text length i32
const MP_STEP_SIZE = 24;        // (step MP_COUNT is the closing delimiter, text only)
const MP_TEXT: i32 = MP_STEPS + (RANGE_PARTS_MAX + 1) * MP_STEP_SIZE;  // part headers, then the closing
const PART_HEAD_MAX: i32 = 200; // "\r\n--" boundary CRLF, a Content-Type line (<= 96), Content-Range
const BOUNDARY_LEN = 16;

let idleMs: f64 = 0;
let headerMs: f64 = 0;
let maxLine: i32 = 8192;
let maxHeader: i32 = 16384;
let maxHeaders: i32 = 100;
let maxBody: f64 = 1048576;
let accessLog = false;
let listing = false;
let cors = false;
let precompressed = false;
const LIST_CLASS: i32 = 4;             // listing buffers: 4096 << 4 = 64 KiB from the ring pool
const LINGER_MS: f64 = 2000;   // how long a lingering close drains input at most

let req: usize = 0;           // the parse record (shared: one request is handled at a time)
let pathBuf: usize = 0;       // normalised path scratch
const PATH_CAP: i32 = 4096;
let dateBuf: usize = 0;       // "Date: ...\r\n", refreshed once per second
let dateSecond: f64 = -1;

function httpInit(): void {
  if (H_END > CONN_SIZE) abort("HTTP fields overflow the connection record");
  if (MP_TEXT + (RANGE_PARTS_MAX + 1) * PART_HEAD_MAX > 4096 << MP_CLASS) abort("multipart layout overflows its buffer");
  idleMs = <f64>ctlI32(CFG_IDLE_TIMEOUT);
  headerMs = <f64>ctlI32(CFG_HEADER_TIMEOUT);
  if (ctlI32(CFG_MAX_LINE) > 0) maxLine = ctlI32(CFG_MAX_LINE);
  if (ctlI32(CFG_MAX_HEADER) > 0) maxHeader = ctlI32(CFG_MAX_HEADER);
  if (ctlI32(CFG_MAX_HEADERS) > 0) maxHeaders = ctlI32(CFG_MAX_HEADERS);
  if (ctlI32(CFG_MAX_BODY) > 0) maxBody = <f64>ctlI32(CFG_MAX_BODY);
  accessLog = ctlI32(CFG_ACCESS_LOG) != 0;
  listing = ctlI32(CFG_LISTING) != 0;
  cors = ctlI32(CFG_CORS) != 0;
  precompressed = ctlI32(CFG_PRECOMPRESSED) != 0;
  if (accessLog) accessLogInit(ctlI32(CFG_ACCESS_LOG), ctlI32(CFG_MAX_FDS));
  // The whole head must fit the receive buffer with room to spare.
  if (maxLine + maxHeader > readBufSize - 1024) {
    maxHeader = max(1024, readBufSize - 1024 - maxLine);
  }
  req = heap.alloc(REQ_SIZE);
  pathBuf = heap.alloc(<usize>PATH_CAP + 32);
  dateBuf = heap.alloc(64);
  fileCacheInit(2048);
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

/**
 * The file cache owns its completions (OP_OPEN, OP_PREAD of an entry's
 * body), whoever asked: an entry never stays loading because the connection
 * that started it went away. The connections waiting for the entry wake.
 */
function httpService(i: i32, op: i32, fd: i32, res: i32): void {
  if (op == OP_OPEN) {
    const e = entryOfRecord(<usize>sqeArg(i, SQE_A2));
    if (openCompleted(e, res, sqeArg(i, SQE_A3) == 1)) httpWake(takeWaiters(e));
  } else {
    const e = sqeArg(i, SQE_A3);
    bodyLoaded(e, res);
    httpWake(takeWaiters(e));
  }
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
  if (f & CF_READABLE) startRead(fd);
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
    compact(fd);
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

/** Moves unprocessed bytes to the front of the receive buffer. */
function compact(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  const pos = load<i32>(c + C_RPOS);
  const len = load<i32>(c + C_RLEN);
  if (pos == 0) return;
  memory.copy(b, b + <usize>pos, <usize>(len - pos));
  store<i32>(c + C_RLEN, len - pos);
  store<i32>(c + C_RPOS, 0);
}

function releaseReadBuf(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  if (b != 0) readBufGive(b);
  store<i32>(c + C_RBUF, 0);
  store<i32>(c + C_RLEN, 0);
  store<i32>(c + C_RPOS, 0);
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
    // be completed, and waiting for EPOLLOUT would only repeat this (a busy
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
    // A short read drained the socket: the next bytes will raise a new edge.
    const cap = readBufCap(<usize>load<i32>(c + C_RBUF));
    const asked = st == HS_LINGER ? cap : cap - load<i32>(c + C_RLEN);
    if (res < asked) clearFlag(fd, CF_READABLE);
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
    if (load<i32>(c + C_RLEN) == load<i32>(c + C_RPOS)) releaseReadBuf(fd);
    return;
  }
  // EOF or an error: nothing more will come. (A request in progress is
  // abandoned by the client; nothing to answer.)
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
    if (len == readBufCap(b)) compact(fd);
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  store<i32>(c + H_SCANNED, 0);
  store<i32>(c + H_LINE_START, 0);
  store<i32>(c + H_LINE_END, 0);
  ctlAddI32(STAT_REQUESTS, 1);
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
    if (r < 0) { errorResponse(fd, -r); return; }
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
  // Re-parse the head for serve(): the parse record is shared.
  resetRequest(req);
  parseRequest(b + <usize>load<i32>(c + C_RPOS), load<i32>(c + H_HEAD_END), req, maxLine, maxHeader, maxHeaders);
  serve(fd);
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

// ---- serving ------------------------------------------------------------

/**
 * Answers the request whose head is at C_RPOS (parsed into `req`, or re-parsed
 * here after a wait). Looks the file up in the cache; on a miss, starts the
 * open and waits (HS_WAIT), to be called again when the entry is ready.
 */
function serve(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  const headPos = b + <usize>load<i32>(c + C_RPOS);
  if (load<i32>(c + C_STATE) == HS_WAIT) {
    resetRequest(req);
    parseRequest(headPos, load<i32>(c + H_HEAD_END), req, maxLine, maxHeader, maxHeaders);
  }
  if (load<i32>(req + REQ_METHOD) == METHOD_OPTIONS) { preflight(fd, headPos); return; }
  let target = headPos + <usize>load<i32>(req + REQ_TARGET_OFF);
  let targetLen = load<i32>(req + REQ_TARGET_LEN);
  // absolute-form (RFC 9112 §3.2.2): the path starts after the authority.
  if (targetLen > 7 && (load<u8>(target) | 0x20) == 0x68 /* h */ && (load<u8>(target + 1) | 0x20) == 0x74) {
    let i = 0;
    while (i < targetLen && load<u8>(target + <usize>i) != 0x3a /* : */) i++;
    if (i + 2 < targetLen && load<u8>(target + <usize>(i + 1)) == 0x2f && load<u8>(target + <usize>(i + 2)) == 0x2f) {
      let j = i + 3;
      while (j < targetLen && load<u8>(target + <usize>j) != 0x2f) j++;
      if (j == targetLen) { target = staticSlash; targetLen = 1; }
      else { target += <usize>j; targetLen -= j; }
    }
  }
  let n = normalizePath(target, targetLen, pathBuf, PATH_CAP - 16);
  if (n < 0) { errorResponse(fd, -n); return; }
  const pf = pathFlags();
  if (pf & PATHF_DOTFILE) { simpleResponse(fd, 404); return; }
  const dirLen = n; // the directory's own path, when the target names one
  if (pf & PATHF_TRAILING_SLASH) {
    // A directory: serve its index.html.
    if (n > 0) store<u8>(pathBuf + <usize>(n++), 0x2f);
    memory.copy(pathBuf + <usize>n, staticIndex, 10);
    n += 10;
    store<u8>(pathBuf + <usize>n, 0);
  }
  if (n == 0) { store<u8>(pathBuf, 0x2e); n = 1; store<u8>(pathBuf + 1, 0); } // "."
  let e = lookup(pathBuf, n);
  if (e < 0) {
    if (n >= PATH_MAX_CACHED) { simpleResponse(fd, 414); return; }
    e = startOpen(fd, pathBuf, n);
    if (e < 0) { simpleResponse(fd, 503); return; }
    wait(fd, e);
    return;
  }
  const st = entryState(e);
  if (st == FC_LOADING) { wait(fd, e); return; }
  if (needsRevalidate(e)) {
    // Re-check the file before answering from the entry: the first request
    // after a quiet spell must not get content replaced long ago. The stat
    // is carried out in this same round; the answer comes from the entry if
    // nothing changed, from a fresh open otherwise.
    startRevalidate(fd, e);
    wait(fd, e);
    return;
  }
  const kind = entryKind(e);
  if (kind < 0) {
    const err = -kind;
    // A directory without index.html: a listing, if asked for (--listing).
    if (err == ENOENT && listing && (pf & PATHF_TRAILING_SLASH)) { startListing(fd, dirLen); return; }
    simpleResponse(fd, err == EACCES ? 403 : err == ENAMETOOLONG ? 414 : 404);
    return;
  }
  if (kind == FILE_DIRECTORY) {
    if (pf & PATHF_TRAILING_SLASH) { simpleResponse(fd, 404); return; }
    redirectSlash(fd, target, targetLen);
    return;
  }
  if (kind != FILE_REGULAR) { simpleResponse(fd, 403); return; }
  const have = precompressed ? entryFlags(e) & (FILE_HAS_BR | FILE_HAS_GZIP) : 0;
  if (have != 0) { serveEncoded(fd, e, n, have, headPos); return; }
  fileResponse(fd, e, headPos, e, ENC_IDENTITY, false);
}

/**
 * The regular file X at pathBuf[0..n) (entry e) has precompressed sidecars
 * (nginx's gzip_static/brotli_static): the one Accept-Encoding prefers is
 * served from its own cache entry, "X.br" or "X.gz", which is opened,
 * re-checked and waited for like any file; its bytes, length and validators
 * with X's Content-Type. Every answer for X varies by Accept-Encoding, the
 * identity one too, so caches keep them apart. A sidecar that went away since
 * X's last check (its entry is a miss) falls back to identity.
 */
function serveEncoded(fd: i32, e: i32, n: i32, have: i32, headPos: usize): void {
  const aeOff = load<i32>(req + REQ_ACCEPT_ENCODING_OFF);
  const enc = aeOff == 0 ? ENC_IDENTITY
    : chooseEncoding(headPos + <usize>aeOff, load<i32>(req + REQ_ACCEPT_ENCODING_LEN), have);
  if (enc == ENC_IDENTITY || n + 3 >= PATH_MAX_CACHED) { fileResponse(fd, e, headPos, e, ENC_IDENTITY, true); return; }
  const tail = pathBuf + <usize>n;
  store<u8>(tail, 0x2e);                                                  // "."
  if (enc == ENC_BR) store<u16>(tail + 1, 0x7262); else store<u16>(tail + 1, 0x7a67); // "br" / "gz"
  store<u8>(tail + 3, 0);
  let s = lookup(pathBuf, n + 3);
  if (s < 0) {
    s = startOpen(fd, pathBuf, n + 3);
    if (s < 0) { fileResponse(fd, e, headPos, e, ENC_IDENTITY, true); return; } // cache full: identity
    wait(fd, s);
    return;
  }
  if (entryState(s) == FC_LOADING) { wait(fd, s); return; }
  if (needsRevalidate(s)) { startRevalidate(fd, s); wait(fd, s); return; }
  if (entryKind(s) != FILE_REGULAR) { fileResponse(fd, e, headPos, e, ENC_IDENTITY, true); return; }
  fileResponse(fd, s, headPos, e, enc, true);
}

/**
 * Asks the host for an HTML listing of the directory at pathBuf[0..len) into
 * a 64 KiB buffer the response then sends as its body (OP_LIST).
 */
function startListing(fd: i32, len: i32): void {
  const c = conn(fd);
  const buf = ringTake(LIST_CLASS);
  if (len == 0) { store<u8>(buf, 0x2e); len = 1; } else memory.copy(buf, pathBuf, <usize>len);
  store<u8>(buf + <usize>len, 0);
  store<i32>(c + H_LIST_BUF, <i32>buf);
  store<i32>(c + C_STATE, HS_WAIT);
  store<i32>(c + C_INFLIGHT, OP_LIST);
  submit(OP_LIST, fd, <i32>buf, (4096 << LIST_CLASS) - 16, len, 0);
}

function listDone(fd: i32, res: i32): void {
  const c = conn(fd);
  store<i32>(c + C_INFLIGHT, 0);
  // The parse record is shared: parse this request's head again.
  resetRequest(req);
  parseRequest(<usize>load<i32>(c + C_RBUF) + <usize>load<i32>(c + C_RPOS), load<i32>(c + H_HEAD_END), req, maxLine, maxHeader, maxHeaders);
  if (res < 0) { releaseListing(fd); simpleResponse(fd, res == -EACCES ? 403 : 404); return; }
  const p0 = outReserve(fd, 512 + extraHead);
  if (p0 == 0) { releaseListing(fd); connClose(fd); return; }
  let p = statusLine(p0, 200);
  p = common(p);
  p = putLit(p, litTextHtml, litTextHtmlLen);
  p = cacheHeaders(p, false);
  p = endHead(fd, p, <f64>res);
  if (isHead()) {
    releaseListing(fd);
  } else {
    store<i32>(c + C_BODY_KIND, BODY_MEMORY);
    store<i32>(c + C_BODY_PTR, load<i32>(c + H_LIST_BUF));
    store<f64>(c + C_BODY_LEFT, <f64>res);
  }
  send(fd, p0, p, 200, isHead() ? 0 : res);
}

function releaseListing(fd: i32): void {
  const c = conn(fd);
  const buf = <usize>load<i32>(c + H_LIST_BUF);
  if (buf != 0) { ringGive(buf, LIST_CLASS); store<i32>(c + H_LIST_BUF, 0); }
}

function releaseMultipart(fd: i32): void {
  const c = conn(fd);
  const mp = <usize>load<i32>(c + H_MULTI);
  if (mp != 0) { ringGive(mp, MP_CLASS); store<i32>(c + H_MULTI, 0); }
}

/** Ring-pool bytes the connection's response holds besides its write ring (invariant check). */
export function httpHeldBytes(fd: i32): i32 {
  const c = conn(fd);
  return (load<i32>(c + H_LIST_BUF) != 0 ? 4096 << LIST_CLASS : 0) + (load<i32>(c + H_MULTI) != 0 ? 4096 << MP_CLASS : 0);
}

/** The close hook: whatever buffer a response in progress holds goes back. */
/**
 * Drops what a response holds: its file-cache reference, listing and
 * multipart buffers. The end of a body and the close of the connection both
 * come here, so nothing outlives the connection, whatever state it was in
 * (a close or a trap between taking the entry and setting the body included);
 * a connection closed while it waits for a file leaves the entry's waiters.
 */
function releaseBuffers(fd: i32): void {
  const c = conn(fd);
  const e = load<i32>(c + H_ENTRY) - 1;
  if (e >= 0) { store<i32>(c + H_ENTRY, 0); entryUnref(e); }
  releaseListing(fd);
  releaseMultipart(fd);
  unwait(fd);
}

function wait(fd: i32, e: i32): void {
  const c = conn(fd);
  store<i32>(c + C_STATE, HS_WAIT);
  if (load<i32>(c + H_WAIT_ENTRY) != 0) return; // already linked (see httpRun)
  store<i32>(c + H_WAIT_ENTRY, e + 1);
  addWaiter(e, fd, c + H_WAIT_NEXT);
}

/** Takes the connection out of the waiter chain it is linked into, if any. */
function unwait(fd: i32): void {
  const c = conn(fd);
  const e = load<i32>(c + H_WAIT_ENTRY) - 1;
  if (e < 0) return;
  store<i32>(c + H_WAIT_ENTRY, 0);
  let link = waitersAddr(e);
  let w = load<i32>(link);
  while (w != 0) {
    if (w - 1 == fd) { store<i32>(link, load<i32>(c + H_WAIT_NEXT)); break; }
    link = conn(w - 1) + H_WAIT_NEXT;
    w = load<i32>(link);
  }
  store<i32>(c + H_WAIT_NEXT, 0);
}

/** The file-cache entry this connection waited for is ready: wake it and its peers. */
function httpWake(chain: i32): void {
  let w = chain;
  while (w != 0) {
    const fd = w - 1;
    const c = conn(fd);
    w = load<i32>(c + H_WAIT_NEXT);
    store<i32>(c + H_WAIT_NEXT, 0);
    store<i32>(c + H_WAIT_ENTRY, 0);
    if (load<i32>(c + C_STATE) == HS_WAIT) enqueue(fd);
  }
}

/**
 * Answers from the ready entry e: 200, 206, 304 or 412/416. `ct` is the entry
 * whose Content-Type the response carries (e itself, or the original file
 * when e is its sidecar, coded `enc`); `vary`: the file has sidecars.
 */
function fileResponse(fd: i32, e: i32, headPos: usize, ct: i32, enc: i32, vary: bool): void {
  const c = conn(fd);
  const method = load<i32>(req + REQ_METHOD);
  const etag = entryEtag(e);
  const etagLen = entryEtagLen(e);
  const mtime = entryMtime(e);
  const size = entrySize(e);
  // If-Modified-Since later than our clock is not a valid validator (RFC
  // 9110 §13.1.3 interprets it on the origin's clock; a future date would turn
  // every later edit into a 304): ignore it.
  let imsLen = load<i32>(req + REQ_IF_MODIFIED_SINCE_LEN);
  if (imsLen > 0 && parseHttpDate(hdr(headPos, REQ_IF_MODIFIED_SINCE_OFF), imsLen) > wallNow()) imsLen = 0;
  const pre = evaluatePreconditions(method,
    hdr(headPos, REQ_IF_NONE_MATCH_OFF), load<i32>(req + REQ_IF_NONE_MATCH_LEN),
    hdr(headPos, REQ_IF_MODIFIED_SINCE_OFF), imsLen,
    hdr(headPos, REQ_IF_MATCH_OFF), load<i32>(req + REQ_IF_MATCH_LEN),
    hdr(headPos, REQ_IF_UNMODIFIED_SINCE_OFF), load<i32>(req + REQ_IF_UNMODIFIED_SINCE_LEN),
    etag, etagLen, mtime);
  if (pre == 412) { simpleResponse(fd, 412, vary); return; }
  let status = 200;
  let start: f64 = 0;
  let length = size;
  let parts = 0;      // > 1: a multipart/byteranges body, `length` its total
  if (pre == 304) {
    status = 304;
  } else if (method == METHOD_GET && load<i32>(req + REQ_RANGE_LEN) > 0) {
    const irLen = load<i32>(req + REQ_IF_RANGE_LEN);
    if (irLen == 0 || ifRangeAllows(hdr(headPos, REQ_IF_RANGE_OFF), irLen, etag, etagLen, mtime)) {
      const r = parseRange(hdr(headPos, REQ_RANGE_OFF), load<i32>(req + REQ_RANGE_LEN), size);
      if (r == RANGE_UNSATISFIABLE) { rangeNotSatisfiable(fd, size, vary); return; }
      if (r == RANGE_OK) {
        status = 206;
        if (rangeCount() == 1) {
          start = rangeStartAt(0);
          length = rangeEndAt(0) - start + 1;
        } else if (enc != ENC_IDENTITY) {
          // Several ranges of a compressed sidecar: a multipart body would
          // sit under a Content-Encoding it does not have. The whole file
          // (RFC 9110 lets a server ignore Range), as for too many ranges.
          status = 200;
        } else {
          parts = rangeCount();
          length = multipartLayout(fd, e, size);
        }
      }
    }
  }
  // Head: status line, Server, Date, the entry's headers, length, connection.
  const p0 = outReserve(fd, 640 + extraHead);
  if (p0 == 0) { connClose(fd); return; }
  let p = p0;
  p = statusLine(p, status);
  p = common(p);
  const eh = entryHeadersLen(e);
  if (status == 304) {
    // 304 carries the validators, not the representation's metadata, but
    // with the Cache-Control and Vary a 200 would have (RFC 9110 §15.4.5).
    p = putLit(p, litEtag, litEtagLen);
    memory.copy(p, etag, <usize>etagLen); p += <usize>etagLen;
    p = crlf(p);
    p = cacheHeaders(p, vary);
  } else {
    if (parts > 1) {
      // The entry's block without its Content-Type line, which moves into
      // each part (RFC 9110 §14.6).
      p = putLit(p, litMultipart, litMultipartLen);
      memory.copy(p, <usize>load<i32>(c + H_MULTI) + MP_BOUNDARY, BOUNDARY_LEN); p += BOUNDARY_LEN;
      p = crlf(p);
      const own = entryCtEnd(e);
      memory.copy(p, entryHeaders(e) + <usize>own, <usize>(eh - own));
      p += <usize>(eh - own);
    } else if (enc != ENC_IDENTITY) {
      // the original's Content-Type line, then the sidecar's own headers
      const ctLen = entryCtEnd(ct), own = entryCtEnd(e);
      memory.copy(p, entryHeaders(ct), <usize>ctLen); p += <usize>ctLen;
      memory.copy(p, entryHeaders(e) + <usize>own, <usize>(eh - own)); p += <usize>(eh - own);
      p = enc == ENC_BR ? putLit(p, litEncBr, litEncBrLen) : putLit(p, litEncGzip, litEncGzipLen);
    } else {
      memory.copy(p, entryHeaders(e), <usize>eh);
      p += <usize>eh;
    }
    p = cacheHeaders(p, vary);
    p = putLit(p, litContentLength, litContentLengthLen);
    p = putNum(p, length);
    p = crlf(p);
    if (status == 206 && parts <= 1) {
      p = putLit(p, litContentRange, litContentRangeLen);
      p = putNum(p, start); store<u8>(p++, 0x2d);
      p = putNum(p, start + length - 1); store<u8>(p++, 0x2f);
      p = putNum(p, size);
      p = crlf(p);
    }
  }
  p = connectionHeader(fd, p);
  p = crlf(p);
  outCommit(fd, <i32>(p - p0));
  store<i32>(c + H_STATUS, status);
  store<f64>(c + H_SENT, status != 304 && method == METHOD_GET ? length : 0);
  if (status != 304 && method == METHOD_GET && length > 0) {
    entryRef(e);
    store<i32>(c + H_ENTRY, e + 1);
    if (parts <= 1) setBody(fd, e, start, length);
    else if (!nextPart(fd)) { connClose(fd); return; } // part 0's header joins the head in the ring
  }
  startWrite(fd);
}

@inline function hdr(headPos: usize, off: i32): usize { return headPos + <usize>load<i32>(req + off); }

/** The body is `length` bytes of the entry's file from `start`: from memory if cached, else sendfile. */
function setBody(fd: i32, e: i32, start: f64, length: f64): void {
  const c = conn(fd);
  const body = entryBody(e);
  if (body != 0) {
    store<i32>(c + C_BODY_KIND, BODY_MEMORY);
    store<i32>(c + C_BODY_PTR, <i32>(body + <usize>(<i32>start)));
  } else {
    store<i32>(c + C_BODY_KIND, BODY_FILE);
    store<i32>(c + C_BODY_FD, entryFd(e));
    store<i64>(c + C_BODY_OFF, <i64>start);
  }
  store<f64>(c + C_BODY_LEFT, length);
}


// ---- multipart/byteranges (RFC 9110 §14.6) ----------------------------------
// Body: for each range "\r\n--B\r\nContent-Type: t\r\nContent-Range: bytes
// a-b/size\r\n\r\n" and the bytes, then "\r\n--B--\r\n". Every part header
// is formatted once, up front, into the state buffer: that gives the exact
// Content-Length for the head, and each step then only copies its header
// into the ring. The boundary B is 16 hex digits mixed from the wall clock
// and a per-core counter: fixed-length (so lengths are known), different for
// every response, and so not a string a file can hold by accident (a
// constant would be, e.g. in this server's own source or in a saved
// response of it).

/** Takes the state buffer, formats every step's text; returns the body length. */
function multipartLayout(fd: i32, e: i32, size: f64): f64 {
  const mp = ringTake(MP_CLASS);
  store<i32>(conn(fd) + H_MULTI, <i32>mp);
  const n = rangeCount();
  store<i32>(mp + MP_COUNT, n);
  store<i32>(mp + MP_NEXT, 0);
  newBoundary(mp + MP_BOUNDARY);
  const ct = entryHeaders(e);
  const ctLen = entryCtEnd(e);
  let t = mp + <usize>MP_TEXT;
  let total: f64 = 0;
  for (let i = 0; i <= n; i++) {
    const step = mp + MP_STEPS + <usize>(i * MP_STEP_SIZE);
    const text = t;
    store<u32>(t, 0x2d2d0a0d); t += 4;                  // CRLF "--"
    memory.copy(t, mp + MP_BOUNDARY, BOUNDARY_LEN); t += BOUNDARY_LEN;
    let length: f64 = 0;
    if (i < n) {
      const first = rangeStartAt(i);
      length = rangeEndAt(i) - first + 1;
      t = crlf(t);
      t = putLit(t, ct, ctLen);
      t = putLit(t, litContentRange, litContentRangeLen);
      t = putNum(t, first); store<u8>(t++, 0x2d);
      t = putNum(t, first + length - 1); store<u8>(t++, 0x2f);
      t = putNum(t, size);
      t = crlf(crlf(t));
      store<f64>(step, first);
    } else {
      store<u16>(t, 0x2d2d); t += 2;                     // the closing "--"
      t = crlf(t);
      store<f64>(step, 0);
    }
    store<f64>(step, length, 8);
    store<i32>(step, <i32>(text - mp), 16);
    store<i32>(step, <i32>(t - text), 20);
    total += <f64>(t - text) + length;
  }
  return total;
}

let boundarySeq: u64 = 0;

function newBoundary(dst: usize): void {
  // splitmix64 of (wall clock, counter): inputs the core is given, so a
  // replay reproduces the same boundaries.
  let z = (<u64>wallNow() << 20) + (++boundarySeq) * 0x9E3779B97F4A7C15;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
  z ^= z >> 31;
  for (let i = BOUNDARY_LEN - 1; i >= 0; i--) {
    const d = <u32>(z & 15);
    store<u8>(dst + <usize>i, <u8>(d < 10 ? 0x30 + d : 0x61 - 10 + d));
    z >>= 4;
  }
}

/**
 * Queues the next step of a multipart body: a part's header into the ring
 * and its range as the body, or, after the last part, the closing delimiter
 * (then the state buffer goes back). Returns true while a part's range
 * was queued, false once the body has nothing more to send from the file.
 */
function nextPart(fd: i32): bool {
  const c = conn(fd);
  const mp = <usize>load<i32>(c + H_MULTI);
  if (mp == 0) return false;
  const i = load<i32>(mp + MP_NEXT);
  const n = load<i32>(mp + MP_COUNT);
  const step = mp + MP_STEPS + <usize>(i * MP_STEP_SIZE);
  // The ring holds the head at most (a body is written after the ring), so
  // this fails only under a write-buffer limit below ~1 KiB. Then the
  // response cannot be completed: it ends with the connection.
  if (!outAppend(fd, mp + <usize>load<i32>(step, 16), load<i32>(step, 20))) {
    store<i32>(c + H_FLAGS, load<i32>(c + H_FLAGS) | HX_CLOSE);
    releaseMultipart(fd);
    return false;
  }
  if (i == n) { releaseMultipart(fd); return false; }
  store<i32>(mp + MP_NEXT, i + 1);
  setBody(fd, load<i32>(c + H_ENTRY) - 1, load<f64>(step), load<f64>(step, 8));
  return true;
}

function bodyFinished(fd: i32, sent: bool): void {
  // A multipart body goes on with its next part; the entry stays referenced.
  if (sent && nextPart(fd)) return;
  releaseBuffers(fd);
}

function startWrite(fd: i32): void {
  const c = conn(fd);
  store<i32>(c + C_STATE, HS_WRITE);
  // No reading until this response is flushed (pipelined input waits in the
  // socket): if the write blocks, EPOLLOUT is armed without EPOLLIN.
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
    releaseReadBuf(fd);
    store<i32>(c + C_STATE, HS_IDLE);
    setDeadline(fd, idleMs);
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  store<i32>(c + C_RPOS, end);
  store<i32>(c + C_STATE, HS_HEAD);
  store<f64>(c + H_START, now()); // a pipelined request starts when its turn comes
  startHeadTimer(fd);
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
  // reading: close without a word, as nginx does.
  connClose(fd);
}

// ---- small responses --------------------------------------------------------

/** An error that ends the connection (malformed request, 405, 413...). */
function errorResponse(fd: i32, status: i32): void {
  const c = conn(fd);
  store<i32>(c + H_FLAGS, load<i32>(c + H_FLAGS) | HX_CLOSE);
  simpleResponse(fd, status);
}

/**
 * A response with a short text body; keeps the connection unless HX_CLOSE.
 * `vary`: a 412 for a file with precompressed sidecars (it depends on which
 * representation the validators named).
 */
function simpleResponse(fd: i32, status: i32, vary: bool = false): void {
  const p0 = outReserve(fd, 512 + extraHead);
  if (p0 == 0) { connClose(fd); return; }
  let p = statusLine(p0, status);
  p = common(p);
  if (status == 405) p = cors ? putLit(p, litAllowCors, litAllowCorsLen) : putLit(p, litAllow, litAllowLen);
  if (vary) p = putLit(p, litVary, litVaryLen);
  p = putLit(p, litTextPlain, litTextPlainLen);
  const reason = reasonOf(status);
  const bodyLen = 4 + reasonLen(status) + 1;
  p = endHead(fd, p, <f64>bodyLen);
  if (!isHead()) {
    p = putNum(p, <f64>status); store<u8>(p++, 0x20);
    p = putLit(p, reason, reasonLen(status));
    store<u8>(p++, 0x0a);
  }
  send(fd, p0, p, status, isHead() ? 0 : bodyLen);
}

/**
 * A CORS preflight (OPTIONS, with CORS on): 204 with what a browser needs to
 * go ahead, whatever the path (nothing is read from disk). The headers a
 * script may send are the ones it asks for (Access-Control-Request-Headers):
 * a static server ignores request headers it does not use, so allowing them
 * costs nothing, and a fixed list would break scripts that send their own
 * (Authorization, X-Requested-With...). Asked-for lists that are not a plain
 * token list, or are too long, and requests that ask nothing (not a browser)
 * get the headers this server acts on.
 */
function preflight(fd: i32, headPos: usize): void {
  const off = load<i32>(req + REQ_ACR_HEADERS_OFF);
  const len = load<i32>(req + REQ_ACR_HEADERS_LEN);
  const asked = headPos + <usize>off;
  const echo = off != 0 && len > 0 && len <= ACR_ECHO_MAX && tokenList(asked, len);
  const p0 = outReserve(fd, 512 + extraHead + (echo ? len : 0));
  if (p0 == 0) { connClose(fd); return; }
  let p = statusLine(p0, 204);
  p = common(p);
  p = putLit(p, litPreflight, litPreflightLen);
  if (echo) {
    p = putLit(p, litAllowHeaders, litAllowHeadersLen);
    memory.copy(p, asked, <usize>len); p += <usize>len;
    p = crlf(p);
    p = putLit(p, litVaryAcrh, litVaryAcrhLen);
  } else {
    p = putLit(p, litAllowHeadersFixed, litAllowHeadersFixedLen);
  }
  // 204: no Content-Length (RFC 9110 §8.6)
  p = connectionHeader(fd, p);
  p = crlf(p);
  send(fd, p0, p, 204, 0);
}

const ACR_ECHO_MAX: i32 = 1024;

/** Only tchars, commas and whitespace: a list of header names. */
function tokenList(p: usize, n: i32): bool {
  for (let i = 0; i < n; i++) {
    const c = <u32>load<u8>(p + <usize>i);
    if (c == 0x2c || c == 0x20 || c == 0x09) continue;
    if (c >= 0x30 && c <= 0x39 || (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) continue;
    if (c == 0x2d || c == 0x5f || c == 0x2e || c == 0x21 || c == 0x23 || c == 0x24 || c == 0x25 || c == 0x26
        || c == 0x27 || c == 0x2a || c == 0x2b || c == 0x5e || c == 0x60 || c == 0x7c || c == 0x7e) continue;
    return false;
  }
  return true;
}

function isHead(): bool { return load<i32>(req + REQ_METHOD) == METHOD_HEAD; }

function redirectSlash(fd: i32, target: usize, targetLen: i32): void {
  const p0 = outReserve(fd, 512 + extraHead + targetLen);
  if (p0 == 0) { connClose(fd); return; }
  let p = statusLine(p0, 301);
  p = common(p);
  p = putLit(p, litLocation, litLocationLen);
  // The path as the client sent it, plus "/", plus the query if any.
  let q = 0;
  while (q < targetLen && load<u8>(target + <usize>q) != 0x3f) q++;
  memory.copy(p, target, <usize>q); p += <usize>q;
  store<u8>(p++, 0x2f);
  memory.copy(p, target + <usize>q, <usize>(targetLen - q)); p += <usize>(targetLen - q);
  p = crlf(p);
  send(fd, p0, endHead(fd, p, 0), 301, 0);
}

function rangeNotSatisfiable(fd: i32, size: f64, vary: bool): void {
  const p0 = outReserve(fd, 512 + extraHead);
  if (p0 == 0) { connClose(fd); return; }
  let p = statusLine(p0, 416);
  p = common(p);
  p = putLit(p, litContentRange, litContentRangeLen);
  store<u8>(p++, 0x2a); store<u8>(p++, 0x2f); // "*/"
  p = putNum(p, size);
  p = crlf(p);
  if (vary) p = putLit(p, litVary, litVaryLen);
  send(fd, p0, endHead(fd, p, 0), 416, 0);
}

/** Content-Length, Connection (if needed) and the blank line that ends the head. */
function endHead(fd: i32, p: usize, contentLength: f64): usize {
  p = putLit(p, litContentLength, litContentLengthLen);
  p = putNum(p, contentLength);
  p = crlf(p);
  p = connectionHeader(fd, p);
  return crlf(p);
}

/**
 * Commits the response formatted in the ring at [p0, p) and starts writing
 * it; `bodyBytes` of it (or of the body after it) are body, for the log.
 */
function send(fd: i32, p0: usize, p: usize, status: i32, bodyBytes: i32): void {
  outCommit(fd, <i32>(p - p0));
  store<i32>(conn(fd) + H_STATUS, status);
  store<f64>(conn(fd) + H_SENT, <f64>bodyBytes);
  startWrite(fd);
}

/** Cache-Control (unless configured off) and, for files with sidecars, Vary. */
@inline function cacheHeaders(p: usize, vary: bool): usize {
  if (litCacheControlLen > 0) p = putLit(p, litCacheControl, litCacheControlLen);
  if (vary) p = putLit(p, litVary, litVaryLen);
  return p;
}

function connectionHeader(fd: i32, p: usize): usize {
  const hx = load<i32>(conn(fd) + H_FLAGS);
  if (hx & HX_CLOSE) return putLit(p, litClose, litCloseLen);
  // HTTP/1.0 keep-alive must be confirmed; 1.1 is persistent by default.
  if (load<i32>(req + REQ_VERSION) == 10) return putLit(p, litKeepAlive, litKeepAliveLen);
  return p;
}

/** A header span of the parse record, as u16 offset and length (0: absent or beyond 64 KiB). */
function keepSpan(at: usize, offField: i32, lenField: i32): void {
  const off = load<i32>(req + offField);
  const ok = off > 0 && off <= 0xffff;
  store<u16>(at, ok ? <u16>off : 0);
  store<u16>(at + 2, ok ? <u16>min(load<i32>(req + lenField), 0xffff) : 0);
}

/**
 * The access-log line of the response just flushed (http/accesslog.ts
 * formats it). The request's head is still at C_RPOS; a request refused
 * before it parsed (H_HEAD_END 0) shows its first line and no header fields.
 */
function logAccess(fd: i32, status: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  const pos = load<i32>(c + C_RPOS);
  const avail = b != 0 ? load<i32>(c + C_RLEN) - pos : 0;
  const parsed = b != 0 && load<i32>(c + H_HEAD_END) > 0;
  accessLine(fd, b + <usize>pos, avail,
    parsed ? <i32>load<u16>(c + H_UA) : 0, <i32>load<u16>(c + H_UA + 2),
    parsed ? <i32>load<u16>(c + H_REFERER) : 0, <i32>load<u16>(c + H_REFERER + 2),
    status, load<f64>(c + H_SENT), now() - load<f64>(c + H_START));
}

// ---- formatting -------------------------------------------------------------
// Constant header text is laid out once at init; per response it is memcpy.

let statics: usize = 0;
let staticsUsed: i32 = 0;
let staticSlash: usize = 0;
let staticIndex: usize = 0;
let litServer: usize = 0; let litServerLen: i32 = 0;
let litContentLength: usize = 0; let litContentLengthLen: i32 = 0;
let litContentRange: usize = 0; let litContentRangeLen: i32 = 0;
let litEtag: usize = 0; let litEtagLen: i32 = 0;
let litClose: usize = 0; let litCloseLen: i32 = 0;
let litKeepAlive: usize = 0; let litKeepAliveLen: i32 = 0;
let litAllow: usize = 0; let litAllowLen: i32 = 0;
let litTextPlain: usize = 0; let litTextPlainLen: i32 = 0;
let litTextHtml: usize = 0; let litTextHtmlLen: i32 = 0;
let litLocation: usize = 0; let litLocationLen: i32 = 0;
let litMultipart: usize = 0; let litMultipartLen: i32 = 0;
let lit100: usize = 0; let lit100Len: i32 = 0;
let litCacheControl: usize = 0; let litCacheControlLen: i32 = 0; // 0: no Cache-Control
let litCors: usize = 0; let litCorsLen: i32 = 0;
let litAllowCors: usize = 0; let litAllowCorsLen: i32 = 0;
let litPreflight: usize = 0; let litPreflightLen: i32 = 0;
let litAllowHeaders: usize = 0; let litAllowHeadersLen: i32 = 0;
let litAllowHeadersFixed: usize = 0; let litAllowHeadersFixedLen: i32 = 0;
let litVaryAcrh: usize = 0; let litVaryAcrhLen: i32 = 0;
let litVary: usize = 0; let litVaryLen: i32 = 0;
let litEncBr: usize = 0; let litEncBrLen: i32 = 0;
let litEncGzip: usize = 0; let litEncGzipLen: i32 = 0;
/** Head bytes the options may add to any response (reserved on top of the base sizes). */
let extraHead: i32 = 0;
const STATICS_SIZE: i32 = 8192;
const STATUS_CODES: i32 = 24;
let status500: usize = 0; // the table entry of 500, the answer for an unknown code
let statusTable: usize = 0; // [code i32, line ptr i32, line len i32, reason ptr i32, reason len i32] * STATUS_CODES

function lit(s: string): usize {
  if (staticsUsed + s.length > STATICS_SIZE) abort("HTTP static text overflows its area");
  const p = statics + <usize>staticsUsed;
  for (let i = 0; i < s.length; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
  staticsUsed += s.length;
  return p;
}

function addStatus(i: i32, code: i32, reason: string): void {
  const e = statusTable + <usize>i * 20;
  if (code == 500 && status500 == 0) status500 = e;
  store<i32>(e, code);
  const line = lit("HTTP/1.1 ");
  lit(code.toString());
  lit(" ");
  const r = lit(reason);
  lit("\r\n");
  store<i32>(e + 4, <i32>line);
  store<i32>(e + 8, 9 + 3 + 1 + reason.length + 2);
  store<i32>(e + 12, <i32>r);
  store<i32>(e + 16, reason.length);
}

function initStatic(): void {
  statics = heap.alloc(<usize>STATICS_SIZE);
  statusTable = heap.alloc(<usize>STATUS_CODES * 20);
  staticSlash = lit("/");
  staticIndex = lit("index.html");
  litServer = lit("Server: wasm-reactor\r\nDate: "); litServerLen = 28;
  litContentLength = lit("Content-Length: "); litContentLengthLen = 16;
  litContentRange = lit("Content-Range: bytes "); litContentRangeLen = 21;
  litEtag = lit("ETag: "); litEtagLen = 6;
  litClose = lit("Connection: close\r\n"); litCloseLen = 19;
  litKeepAlive = lit("Connection: keep-alive\r\n"); litKeepAliveLen = 24;
  litAllow = lit("Allow: GET, HEAD\r\n"); litAllowLen = 18;
  litTextPlain = lit("Content-Type: text/plain; charset=utf-8\r\n"); litTextPlainLen = 41;
  litTextHtml = lit("Content-Type: text/html; charset=utf-8\r\n"); litTextHtmlLen = 40;
  litLocation = lit("Location: "); litLocationLen = 10;
  litMultipart = lit("Content-Type: multipart/byteranges; boundary="); litMultipartLen = 45;
  lit100 = lit("HTTP/1.1 100 Continue\r\n\r\n"); lit100Len = 25;
  litVary = lit("Vary: Accept-Encoding\r\n"); litVaryLen = 23;
  litEncBr = lit("Content-Encoding: br\r\n"); litEncBrLen = 22;
  litEncGzip = lit("Content-Encoding: gzip\r\n"); litEncGzipLen = 24;
  // The config text is validated by the host (printable ASCII, no CR/LF);
  // only the length is checked here.
  const ccLen = min(ctlI32(CFG_CACHE_CONTROL), CACHE_CONTROL_MAX);
  if (ccLen > 0) {
    litCacheControl = lit("Cache-Control: ");
    memory.copy(statics + <usize>staticsUsed, cfgText + CFGT_CACHE_CONTROL, <usize>ccLen);
    staticsUsed += ccLen;
    lit("\r\n");
    litCacheControlLen = 15 + ccLen + 2;
  }
  // CORS: every response may be read by a script from any origin; these are
  // the response headers it may want that are not CORS-safelisted already.
  const corsText = "Access-Control-Allow-Origin: *\r\n"
    + "Access-Control-Expose-Headers: Content-Length, Content-Range, Content-Encoding, Accept-Ranges, ETag, Last-Modified\r\n";
  litCors = lit(corsText); litCorsLen = corsText.length;
  litAllowCors = lit("Allow: GET, HEAD, OPTIONS\r\n"); litAllowCorsLen = 27;
  // Max-Age: a day (Firefox's cap; Chromium caps at two hours).
  const pre = "Allow: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
    + "Access-Control-Max-Age: 86400\r\n";
  litPreflight = lit(pre); litPreflightLen = pre.length;
  litAllowHeaders = lit("Access-Control-Allow-Headers: "); litAllowHeadersLen = 30;
  // the request headers this server acts on
  const fixed = "Access-Control-Allow-Headers: Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range\r\n";
  litAllowHeadersFixed = lit(fixed); litAllowHeadersFixedLen = fixed.length;
  litVaryAcrh = lit("Vary: Access-Control-Request-Headers\r\n"); litVaryAcrhLen = 38;
  extraHead = litCacheControlLen + (cors ? litCorsLen + litPreflightLen + litAllowHeadersFixedLen + litVaryAcrhLen : 0)
    + litVaryLen + litEncGzipLen;
  let i = 0;
  addStatus(i++, 200, "OK");
  addStatus(i++, 204, "No Content");
  addStatus(i++, 206, "Partial Content");
  addStatus(i++, 301, "Moved Permanently");
  addStatus(i++, 304, "Not Modified");
  addStatus(i++, 400, "Bad Request");
  addStatus(i++, 403, "Forbidden");
  addStatus(i++, 404, "Not Found");
  addStatus(i++, 405, "Method Not Allowed");
  addStatus(i++, 408, "Request Timeout");
  addStatus(i++, 412, "Precondition Failed");
  addStatus(i++, 413, "Content Too Large");
  addStatus(i++, 414, "URI Too Long");
  addStatus(i++, 416, "Range Not Satisfiable");
  addStatus(i++, 417, "Expectation Failed");
  addStatus(i++, 431, "Request Header Fields Too Large");
  addStatus(i++, 500, "Internal Server Error");
  addStatus(i++, 501, "Not Implemented");
  addStatus(i++, 503, "Service Unavailable");
  addStatus(i++, 505, "HTTP Version Not Supported");
  while (i < STATUS_CODES) addStatus(i++, 500, "Internal Server Error");
}

function statusEntry(code: i32): usize {
  for (let i = 0; i < STATUS_CODES; i++) {
    const e = statusTable + <usize>i * 20;
    if (load<i32>(e) == code) return e;
  }
  return status500;
}

function statusLine(p: usize, code: i32): usize {
  const e = statusEntry(code);
  const n = load<i32>(e + 8);
  memory.copy(p, <usize>load<i32>(e + 4), <usize>n);
  return p + <usize>n;
}
function reasonOf(code: i32): usize { return <usize>load<i32>(statusEntry(code) + 12); }
function reasonLen(code: i32): i32 { return load<i32>(statusEntry(code) + 16); }

/** "Server: ...\r\nDate: <IMF-fixdate>\r\n"; the date text is formatted once per second. */
function common(p: usize): usize {
  const wall = wallNow();
  const sec = Math.floor(wall / 1000);
  if (sec != dateSecond) {
    dateSecond = sec;
    formatHttpDate(sec * 1000, dateBuf);
  }
  memory.copy(p, litServer, <usize>litServerLen);
  p += <usize>litServerLen;
  memory.copy(p, dateBuf, 29);
  p += 29;
  p = crlf(p);
  if (cors) p = putLit(p, litCors, litCorsLen);
  return p;
}

@inline function crlf(p: usize): usize { store<u16>(p, 0x0a0d); return p + 2; }
@inline function putLit(p: usize, s: usize, n: i32): usize { memory.copy(p, s, <usize>n); return p + <usize>n; }

function putNum(p: usize, v: f64): usize {
  let x = <u64>v;
  let digits = 1;
  for (let t = x; t >= 10; t /= 10) digits++;
  for (let i = digits - 1; i >= 0; i--) {
    store<u8>(p + <usize>i, <u8>(48 + x % 10));
    x /= 10;
  }
  return p + <usize>digits;
}
