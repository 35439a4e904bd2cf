// HTTP response formatting: the small responses (errors, 304-style empty
// answers, redirects, OPTIONS preflight, 416), the header lines every
// response shares, the access-log line, and the constant header text laid
// out once at init.
import { CFG_CACHE_CONTROL, CFGT_CACHE_CONTROL, CACHE_CONTROL_MAX, C_RBUF, C_RLEN, C_RPOS } from "../abi";
import { ctlI32, wallNow, now, cfgText } from "../reactor/ctl";
import { conn, outReserve, outCommit, connClose } from "../reactor/conn";
import { accessLine } from "../http/accesslog";
import { REQ_METHOD, REQ_VERSION, REQ_ACR_HEADERS_OFF, REQ_ACR_HEADERS_LEN, METHOD_HEAD } from "../http/parser";
import { formatHttpDate } from "../http/date";
import {
  HX_CLOSE, H_FLAGS, H_HEAD_END, H_REFERER, H_SENT, H_START, H_STATUS, H_UA, cors, dateBuf, req,
} from "./httpstate";
import { startWrite } from "./http";

/** An error that ends the connection (malformed request, 405, 413...). */
export function errorResponse(fd: i32, status: i32): void {
  const c = conn(fd);
  store<i32>(c + H_FLAGS, load<i32>(c + H_FLAGS) | HX_CLOSE);
  simpleResponse(fd, status);
}

/**
 * A response with a short text body; keeps the connection unless HX_CLOSE.
 * `vary`: a 412 for a file with precompressed sidecars (it depends on which
 * representation the validators named).
 */
export function simpleResponse(fd: i32, status: i32, vary: bool = false): void {
  const p0 = outReserve(fd, 512 + extraHead);
  if (p0 == 0) { connClose(fd); return; }
  let p = statusLine(p0, status);
  p = common(p);
  if (status == 405) p = cors ? putLit(p, litAllowCors, litAllowCorsLen) : putLit(p, litAllow, litAllowLen);
  if (vary) p = putLit(p, litVary, litVaryLen);
  // 503 is only ever a shortage here (out of fds, file cache full): worth a retry soon.
  if (status == 503) p = putLit(p, litRetryAfter, litRetryAfterLen);
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
export function preflight(fd: i32, headPos: usize): void {
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

export function isHead(): bool { return load<i32>(req + REQ_METHOD) == METHOD_HEAD; }

export function redirectSlash(fd: i32, target: usize, targetLen: i32): void {
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

export function rangeNotSatisfiable(fd: i32, size: f64, vary: bool): void {
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
export function endHead(fd: i32, p: usize, contentLength: f64): usize {
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
export function send(fd: i32, p0: usize, p: usize, status: i32, bodyBytes: i32): void {
  outCommit(fd, <i32>(p - p0));
  store<i32>(conn(fd) + H_STATUS, status);
  store<f64>(conn(fd) + H_SENT, <f64>bodyBytes);
  startWrite(fd);
}

/** Cache-Control (unless configured off) and, for files with sidecars, Vary. */
@inline export function cacheHeaders(p: usize, vary: bool): usize {
  if (litCacheControlLen > 0) p = putLit(p, litCacheControl, litCacheControlLen);
  if (vary) p = putLit(p, litVary, litVaryLen);
  return p;
}

export function connectionHeader(fd: i32, p: usize): usize {
  const hx = load<i32>(conn(fd) + H_FLAGS);
  if (hx & HX_CLOSE) return putLit(p, litClose, litCloseLen);
  // HTTP/1.0 keep-alive must be confirmed; 1.1 is persistent by default.
  if (load<i32>(req + REQ_VERSION) == 10) return putLit(p, litKeepAlive, litKeepAliveLen);
  return p;
}

/** A header span of the parse record, as u16 offset and length (0: absent or beyond 64 KiB). */
export function keepSpan(at: usize, offField: i32, lenField: i32): void {
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
export function logAccess(fd: i32, status: i32): void {
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
let dateSecond: f64 = -1;

let statics: usize = 0;
let staticsUsed: i32 = 0;
export let staticSlash: usize = 0;
export let staticIndex: usize = 0;
let litServer: usize = 0; let litServerLen: i32 = 0;
export let litContentLength: usize = 0; export let litContentLengthLen: i32 = 0;
export let litContentRange: usize = 0; export let litContentRangeLen: i32 = 0;
export let litEtag: usize = 0; export let litEtagLen: i32 = 0;
let litClose: usize = 0; let litCloseLen: i32 = 0;
let litKeepAlive: usize = 0; let litKeepAliveLen: i32 = 0;
let litAllow: usize = 0; let litAllowLen: i32 = 0;
let litTextPlain: usize = 0; let litTextPlainLen: i32 = 0;
export let litTextHtml: usize = 0; export let litTextHtmlLen: i32 = 0;
let litLocation: usize = 0; let litLocationLen: i32 = 0;
export let litMultipart: usize = 0; export let litMultipartLen: i32 = 0;
export let lit100: usize = 0; export let lit100Len: i32 = 0;
let litCacheControl: usize = 0; let litCacheControlLen: i32 = 0; // 0: no Cache-Control
let litCors: usize = 0; let litCorsLen: i32 = 0;
let litAllowCors: usize = 0; let litAllowCorsLen: i32 = 0;
let litPreflight: usize = 0; let litPreflightLen: i32 = 0;
let litAllowHeaders: usize = 0; let litAllowHeadersLen: i32 = 0;
let litAllowHeadersFixed: usize = 0; let litAllowHeadersFixedLen: i32 = 0;
let litVaryAcrh: usize = 0; let litVaryAcrhLen: i32 = 0;
let litVary: usize = 0; let litVaryLen: i32 = 0;
let litRetryAfter: usize = 0; let litRetryAfterLen: i32 = 0;
export let litEncBr: usize = 0; export let litEncBrLen: i32 = 0;
export let litEncGzip: usize = 0; export let litEncGzipLen: i32 = 0;
/** Head bytes the options may add to any response (reserved on top of the base sizes). */
export let extraHead: i32 = 0;
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

export function initStatic(): void {
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
  litRetryAfter = lit("Retry-After: 1\r\n"); litRetryAfterLen = 16;
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
    + litVaryLen + litEncGzipLen + litRetryAfterLen;
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

export function statusLine(p: usize, code: i32): usize {
  const e = statusEntry(code);
  const n = load<i32>(e + 8);
  memory.copy(p, <usize>load<i32>(e + 4), <usize>n);
  return p + <usize>n;
}
function reasonOf(code: i32): usize { return <usize>load<i32>(statusEntry(code) + 12); }
function reasonLen(code: i32): i32 { return load<i32>(statusEntry(code) + 16); }

/** "Server: ...\r\nDate: <IMF-fixdate>\r\n"; the date text is formatted once per second. */
export function common(p: usize): usize {
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

@inline export function crlf(p: usize): usize { store<u16>(p, 0x0a0d); return p + 2; }
@inline export function putLit(p: usize, s: usize, n: i32): usize { memory.copy(p, s, <usize>n); return p + <usize>n; }

export function putNum(p: usize, v: f64): usize {
  let x = <u64>v;
  let digits = 1;
  for (let t = x; t >= 10; t /= 10) digits++;
  for (let i = digits - 1; i >= 0; i--) {
    store<u8>(p + <usize>i, <u8>(48 + x % 10));
    x /= 10;
  }
  return p + <usize>digits;
}
