// HTTP static files: a request's answer from the file cache (200, 206 with
// one range or multipart/byteranges, 304, 412/416, directory listings,
// precompressed sidecars), the waits for an open in flight, and what a
// response holds until its body is over. The state machine (http.ts) calls
// serve(); the file cache's completions come back through httpService.
// (Some 530 lines: serving, waiting for the cache, listings and multipart
// bodies share the state a response holds; apart, most of it would be
// exported back and forth.)
import {
  FILE_REGULAR, FILE_DIRECTORY, OP_LIST, ENOENT, EACCES, ENAMETOOLONG, FILE_HAS_BR, FILE_HAS_GZIP, C_STATE,
  C_INFLIGHT, C_RBUF, C_RPOS, C_BODY_KIND, C_BODY_PTR, C_BODY_FD, C_BODY_LEFT, C_BODY_OFF, OP_OPEN, CFG_FILE_CACHE_FDS,
} from "../abi";
import { submit, wallNow, ctlI32 } from "../reactor/ctl";
import { doneA2, doneA3 } from "../reactor/inflight";
import { metricsFileCache } from "../reactor/metrics";
import { ringTake, ringGive } from "../reactor/pool";
import { conn, enqueue, outReserve, outCommit, outAppend, connClose, BODY_MEMORY, BODY_FILE } from "../reactor/conn";
import { chooseEncoding, ENC_IDENTITY, ENC_BR } from "../http/encoding";
import {
  REQ_METHOD, REQ_TARGET_OFF, REQ_TARGET_LEN, REQ_IF_NONE_MATCH_OFF, REQ_IF_NONE_MATCH_LEN,
  REQ_IF_MODIFIED_SINCE_OFF, REQ_IF_MODIFIED_SINCE_LEN, REQ_IF_MATCH_OFF, REQ_IF_MATCH_LEN,
  REQ_IF_UNMODIFIED_SINCE_OFF, REQ_IF_UNMODIFIED_SINCE_LEN, REQ_RANGE_OFF, REQ_RANGE_LEN, REQ_IF_RANGE_OFF,
  REQ_IF_RANGE_LEN, REQ_ACCEPT_ENCODING_OFF, REQ_ACCEPT_ENCODING_LEN, METHOD_GET, METHOD_OPTIONS, resetRequest,
  parseRequest,
} from "../http/parser";
import { normalizePath, pathFlags, PATHF_TRAILING_SLASH, PATHF_DOTFILE } from "../http/path";
import { parseHttpDate } from "../http/date";
import {
  evaluatePreconditions, parseRange, rangeCount, rangeStartAt, rangeEndAt, ifRangeAllows, RANGE_OK,
  RANGE_UNSATISFIABLE, RANGE_PARTS_MAX,
} from "../http/conditional";
import {
  fileCacheInit, lookup, startOpen, needsRevalidate, startRevalidate, addWaiter, waitersAddr, entryState, entryKind,
  entryFd, entrySize, entryMtime, entryBody, entryHeaders, entryHeadersLen, entryEtag, entryEtagLen, entryRef,
  entryUnref, entryFlags, entryCtEnd, entryOfRecord, openCompleted, bodyLoaded, takeWaiters, FC_LOADING, transientError, entryIdle,
  PATH_MAX_CACHED,
} from "../http/filecache";
import {
  HS_WAIT, HX_CLOSE, HX_LOOKED_UP, H_ENTRY, H_FLAGS, H_HEAD_END, H_LIST_BUF, H_MULTI, H_SENT, H_STATUS, H_WAIT_ENTRY, H_WAIT_NEXT,
  PATH_CAP, listing, maxHeader, maxHeaders, maxLine, pathBuf, precompressed, req,
} from "./httpstate";
import { startWrite } from "./http";
import {
  cacheHeaders, common, connectionHeader, crlf, endHead, errorResponse, extraHead, isHead, litContentLength,
  litContentLengthLen, litContentRange, litContentRangeLen, litEncBr, litEncBrLen, litEncGzip, litEncGzipLen,
  litEtag, litEtagLen, litMultipart, litMultipartLen, litTextHtml, litTextHtmlLen, preflight, putLit, putNum,
  rangeNotSatisfiable, redirectSlash, send, simpleResponse, staticIndex, staticSlash, statusLine,
} from "./httpresponse";

// multipart/byteranges state: a ring-pool buffer (class MP_CLASS) taken for
// the response and given back when the closing delimiter is queued or the
// connection closes. Offsets:
const MP_CLASS: i32 = 0;        // 4 KiB; filesInit checks the layout fits
const MP_COUNT = 0;             // i32 parts
const MP_NEXT = 4;              // i32 next step to queue (== MP_COUNT: the closing delimiter)
const MP_BOUNDARY = 8;          // BOUNDARY_LEN bytes
const MP_STEPS = 24;            // per step: first f64, length f64, text offset i32, text length i32
const MP_STEP_SIZE = 24;        // (step MP_COUNT is the closing delimiter, text only)
const MP_TEXT: i32 = MP_STEPS + (RANGE_PARTS_MAX + 1) * MP_STEP_SIZE;  // part headers, then the closing
const PART_HEAD_MAX: i32 = 200; // "\r\n--" boundary CRLF, a Content-Type line (<= 96), Content-Range
const BOUNDARY_LEN = 16;

const LIST_CLASS: i32 = 4;             // listing buffers: 4096 << 4 = 64 KiB from the ring pool

/** Checks the multipart layout and sets the file cache up (httpInit). */
export function filesInit(): void {
  if (MP_TEXT + (RANGE_PARTS_MAX + 1) * PART_HEAD_MAX > 4096 << MP_CLASS) abort("multipart layout overflows its buffer");
  fileCacheInit(2048, ctlI32(CFG_FILE_CACHE_FDS));
}

/**
 * The file cache owns its completions (OP_OPEN, OP_PREAD of an entry's
 * body), whoever asked: an entry never stays loading because the connection
 * that started it went away. The connections waiting for the entry wake.
 */
export function httpService(op: i32, fd: i32, res: i32): void {
  if (op == OP_OPEN) {
    const e = entryOfRecord(<usize>doneA2);
    if (openCompleted(e, res, doneA3 == 1)) httpWake(takeWaiters(e));
  } else {
    const e = doneA3;
    bodyLoaded(e, res);
    httpWake(takeWaiters(e));
  }
}

/**
 * Answers the request whose head is at C_RPOS (parsed into `req`, or re-parsed
 * here after a wait). Looks the file up in the cache; on a miss, starts the
 * open and waits (HS_WAIT), to be called again when the entry is ready.
 */
export function serve(fd: i32): void {
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
  const hx = load<i32>(conn(fd) + H_FLAGS);
  if (!(hx & HX_LOOKED_UP)) { store<i32>(conn(fd) + H_FLAGS, hx | HX_LOOKED_UP); metricsFileCache(e >= 0); }
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
    simpleResponse(fd, err == EACCES ? 403 : err == ENAMETOOLONG ? 414 : transientError(err) ? 503 : 404);
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

export function listDone(fd: i32, res: i32): void {
  const c = conn(fd);
  store<i32>(c + C_INFLIGHT, 0);
  // The parse record is shared: parse this request's head again.
  resetRequest(req);
  parseRequest(<usize>load<i32>(c + C_RBUF) + <usize>load<i32>(c + C_RPOS), load<i32>(c + H_HEAD_END), req, maxLine, maxHeader, maxHeaders);
  if (res < 0) { releaseListing(fd); simpleResponse(fd, res == -EACCES ? 403 : transientError(-res) ? 503 : 404); return; }
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
export function releaseBuffers(fd: i32): void {
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
  answerFrom(fd, e, headPos, ct, enc, vary);
  // A response that holds the entry lets go of it when its body is done
  // (entryUnref); one that does not (HEAD, 304, 412, 416, empty) is done now.
  entryIdle(e);
  if (ct != e) entryIdle(ct);
}

function answerFrom(fd: i32, e: i32, headPos: usize, ct: i32, enc: i32, vary: bool): void {
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

export function bodyFinished(fd: i32, sent: bool): void {
  // A multipart body goes on with its next part; the entry stays referenced.
  if (sent && nextPart(fd)) return;
  releaseBuffers(fd);
}
