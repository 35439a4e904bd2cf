// HTTP/1.1 response-head parser (RFC 9112 4, 5, 6.3), for the proxy's side
// that reads an upstream. Incremental and as strict as the request parser
// (http/parser.ts): a head the proxy cannot frame without guessing is refused,
// and the proxy answers its client 502 (RFC 9112 6.3: "ought to be handled as
// an error"; RFC 9110 15.6.3: 502 is the status for an invalid response).
//
// Works only on memory the caller provides: no allocation, no strings, no
// I/O. The caller guarantees 16 readable bytes past `len` (the LF scan loads
// 16 at a time) and the parser never acts on a byte at or past `len`.
//
// Two phases, as parseRequest: (1) find the end of the head, resuming where
// the previous call stopped (RESP_SCANNED); every LF must follow a CR (bare LF
// is refused, the request parser's choice) and the head must end within
// maxHead bytes, both decided on partial input so any split gives the same
// result; (2) parse the status line and every field line in one pass.
//
// Return value: > 0 head complete (its length), 0 need more bytes, -502 the
// head is invalid (RESP_ERROR names why, RE_* below).

import { HT, LF, CR, SP, MAX_SAFE, isToken, isOws, eqLower } from "./bytes";

// ---- RESP record ----------------------------------------------------------
// Size RESP_SIZE bytes, laid over linear memory by the caller; zero it with
// resetResponse() before each head (an interim 1xx head is followed by
// another head: reset between them). i32 fields unless noted; *_OFF are
// offsets from `buf`.
export const RESP_SIZE = 48;
export const RESP_SCANNED = 0;          // bytes already scanned for the end of the head
export const RESP_STATUS = 4;           // 100..599
export const RESP_VERSION = 8;          // 10 or 11 (1.2..1.9 count as 11, RFC 9110 2.5)
export const RESP_FLAGS = 12;           // RS_* bits
export const RESP_CONTENT_LENGTH = 16;  // f64, valid when RS_HAS_CONTENT_LENGTH
export const RESP_HEADER_COUNT = 24;
export const RESP_HEADER_END = 28;      // length of status line + fields + final CRLF
export const RESP_BODY = 32;            // BODY_* below: how the body is framed
export const RESP_ERROR = 36;           // RE_* when the result was -502
export const RESP_REASON_OFF = 40;      // reason-phrase (may be empty)
export const RESP_REASON_LEN = 44;

export const RS_CONN_CLOSE = 1;         // Connection: close
export const RS_CONN_KEEPALIVE = 2;     // Connection: keep-alive
export const RS_CHUNKED = 4;            // Transfer-Encoding: chunked
export const RS_HAS_CONTENT_LENGTH = 8;
export const RS_INTERIM = 16;           // 1xx (100, 102, 103): forward, then another head follows
export const RS_REUSABLE = 32;          // the upstream connection may carry another request after this body

// Body framing, decided in the order of RFC 9112 6.3.
export const BODY_NONE = 0;             // HEAD, 1xx, 204, 304 (6.3 rule 1), or Content-Length: 0
export const BODY_LENGTH = 1;           // Content-Length (rule 5)
export const BODY_CHUNKED = 2;          // Transfer-Encoding: chunked (rule 4)
export const BODY_CLOSE = 3;            // neither: the body ends when the upstream closes (rule 8)

export const RE_STATUS_LINE = 1;        // not "HTTP/1.x NNN[ reason]", or a control byte in the reason
export const RE_VERSION = 2;            // an HTTP major version other than 1
export const RE_STATUS = 3;             // a status code outside 100..599 (RFC 9110 15: invalid)
export const RE_FIELD = 4;              // bad field line: obs-fold, no colon, space before it, bad byte, bare CR
export const RE_BARE_LF = 5;            // an LF not preceded by CR
export const RE_TOO_LARGE = 6;          // head longer than maxHead
export const RE_TOO_MANY = 7;           // more than maxHeaders field lines
export const RE_CONTENT_LENGTH = 8;     // not 1*DIGIT, a list or lines that disagree, or > 2^53
export const RE_TRANSFER_ENCODING = 9;  // a coding other than chunked, or chunked twice
export const RE_TE_AND_CL = 10;         // both Transfer-Encoding and Content-Length (6.3 rule 3)
export const RE_TE_HTTP10 = 11;         // Transfer-Encoding in an HTTP/1.0 response (6.1)
export const RE_UPGRADE = 12;           // 101 Switching Protocols: not supported

const COMMA: u32 = 0x2C;
const COLON: u32 = 0x3A;
const CRLFCRLF: u32 = 0x0A0D0A0D;
const W_HTTP11: u64 = 0x312E312F50545448;   // "HTTP/1.1"
const W_HTTP10: u64 = 0x302E312F50545448;   // "HTTP/1.0"
const W_HTTP_: u64 = 0x2F50545448;          // "HTTP/"
const MASK5: u64 = 0xFFFFFFFFFF;
// Lowercase field names as little-endian words, as parser.ts matches them (the
// same values; its constants are private to it). OR-ing 0x20 lowercases a
// name of tchars without mapping any other tchar onto a letter or "-".
const LOWER: u64 = 0x2020202020202020;
const W_CONNECTI: u64 = 0x697463656E6E6F63; // "connecti"  connection +0
const W_NNECTION: u64 = 0x6E6F697463656E6E; // "nnection"  connection +2
const W_CONTENT_: u64 = 0x2D746E65746E6F63; // "content-"  content-length +0
const W_T_LENGTH: u64 = 0x6874676E656C2D74; // "t-length"  content-length +6
const W_TRANSFER: u64 = 0x726566736E617274; // "transfer"  transfer-encoding +0
const W__ENCODIN: u64 = 0x6E69646F636E652D; // "-encodin"  transfer-encoding +8
const W_ENCODING: u64 = 0x676E69646F636E65; // "encoding"  transfer-encoding +9
@inline function lower64(p: usize): u64 { return load<u64>(p) | LOWER; }

export function resetResponse(resp: usize): void {
  const z = i64x2.splat(0);
  v128.store(resp, z, 0); v128.store(resp, z, 16); v128.store(resp, z, 32);
}

@inline function fail(resp: usize, code: i32): i32 {
  store<i32>(resp, code, RESP_ERROR);
  return -502;
}

/**
 * Parses the response head in buf[0..len). `headRequest`: the request was
 * HEAD (its response has no body whatever the fields say). maxHead bounds
 * the whole head, CRLFCRLF included; maxHeaders the number of field lines.
 */
export function parseResponse(buf: usize, len: i32, resp: usize, headRequest: bool, maxHead: i32, maxHeaders: i32): i32 {
  const done = load<i32>(resp, RESP_HEADER_END);
  if (done > 0) return done;
  if (load<i32>(resp, RESP_ERROR) != 0) return -502;
  const stop = min(len, maxHead);
  const seen = load<i32>(resp, RESP_SCANNED);
  for (let at = seen & ~15; at < stop; at += 16) {
    const p = buf + <usize>at;
    let m = i8x16.bitmask(i8x16.eq(v128.load(p), i8x16.splat(<i8>LF)));
    for (; m != 0; m &= m - 1) {
      const q = at + ctz(m);
      if (q >= stop) break;
      if (q < seen) continue;                            // seen by an earlier call
      if (q == 0 || load<u8>(buf + <usize>q - 1) != CR) return fail(resp, RE_BARE_LF);
      if (q >= 3 && load<u32>(buf + <usize>q - 3) == CRLFCRLF) {
        store<i32>(resp, q + 1, RESP_SCANNED);
        const r = parseHead(buf, q + 1, resp, headRequest, maxHeaders);
        if (r > 0) store<i32>(resp, r, RESP_HEADER_END);
        return r;
      }
    }
  }
  store<i32>(resp, stop, RESP_SCANNED);
  if (len >= maxHead) return fail(resp, RE_TOO_LARGE);   // the head cannot end within the limit
  return 0;
}

// Phase 2: buf[0..headEnd) is complete, every LF in it follows a CR and it
// ends with the first CRLFCRLF, so every scan below stops at a CR at the latest.
function parseHead(buf: usize, headEnd: i32, resp: usize, headRequest: bool, maxHeaders: i32): i32 {
  // -- status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
  // The SP after the code is required by the grammar; a line that ends right
  // after the code is accepted, as llhttp and picohttpparser do: the reason
  // carries no meaning (RFC 9112 4: a client SHOULD ignore it).
  const v = load<u64>(buf);
  let version = 11;
  if (v == W_HTTP10) version = 10;
  else if (v != W_HTTP11) {
    const major = <u32>load<u8>(buf, 5) - 0x30, minor = <u32>load<u8>(buf, 7) - 0x30;
    if ((v & MASK5) != W_HTTP_ || major > 9 || load<u8>(buf, 6) != 0x2E || minor > 9) return fail(resp, RE_STATUS_LINE);
    if (major != 1) return fail(resp, RE_VERSION);
  }
  if (load<u8>(buf, 8) != SP) return fail(resp, RE_STATUS_LINE);
  let status = 0;
  for (let i: usize = 9; i < 12; i++) {
    const d = <u32>load<u8>(buf + i) - 0x30;
    if (d > 9) return fail(resp, RE_STATUS_LINE);
    status = status * 10 + <i32>d;
  }
  let p = buf + 12;
  let reason = p;
  if (load<u8>(p) == SP) {
    reason = ++p;
    p = skipText(p);
  }
  if (load<u8>(p) != CR || load<u8>(p, 1) != LF) return fail(resp, RE_STATUS_LINE);
  // RFC 9110 15: values outside 100..599 are invalid; a client treats them as
  // 5xx, a proxy cannot forward them as anything meaningful.
  if (status < 100 || status > 599) return fail(resp, RE_STATUS);
  if (status == 101) return fail(resp, RE_UPGRADE);
  store<i32>(resp, status, RESP_STATUS);
  store<i32>(resp, version, RESP_VERSION);
  store<i32>(resp, <i32>(reason - buf), RESP_REASON_OFF);
  store<i32>(resp, <i32>(p - reason), RESP_REASON_LEN);

  // -- field-line = field-name ":" OWS field-value OWS CRLF
  let s = p + 2;
  let count = 0;
  let flags = 0;
  let teSeen = false;
  while (true) {
    if (load<u8>(s) == CR) {
      if (s + 2 == buf + <usize>headEnd) break;       // the empty line that ends the head
      return fail(resp, RE_FIELD);                    // a line starting with a bare CR
    }
    // A name is 1*tchar followed at once by ":"; this refuses obs-fold (a
    // line starting with SP/HT, RFC 9112 5.2: a proxy MUST reject or unfold,
    // we reject), whitespace before the colon (5.1: MUST reject) and NUL.
    const name = s;
    while (isToken(load<u8>(s))) s++;
    if (s == name || load<u8>(s) != COLON) return fail(resp, RE_FIELD);
    const nameLen = <i32>(s - name);
    let vs = s + 1;
    const q = skipText(vs);
    if (load<u8>(q) != CR || load<u8>(q, 1) != LF) return fail(resp, RE_FIELD); // bare CR, NUL, controls
    s = q + 2;
    while (vs < q && isOws(load<u8>(vs))) vs++;
    let ve = q;
    while (ve > vs && isOws(load<u8>(ve - 1))) ve--;
    if (++count > maxHeaders) return fail(resp, RE_TOO_MANY);
    if (nameLen == 14) {
      if (lower64(name) == W_CONTENT_ && lower64(name + 6) == W_T_LENGTH) {
        flags = onContentLength(resp, flags, vs, ve);
        if (flags < 0) return -502;
      }
    } else if (nameLen == 17) {
      if (lower64(name) == W_TRANSFER && lower64(name + 8) == W__ENCODIN && lower64(name + 9) == W_ENCODING) {
        teSeen = true;
        flags = onTransferEncoding(resp, flags, vs, ve);
        if (flags < 0) return -502;
      }
    } else if (nameLen == 10) {
      if (lower64(name) == W_CONNECTI && lower64(name + 2) == W_NNECTION) flags |= connectionOptions(vs, ve);
    }
  }
  store<i32>(resp, count, RESP_HEADER_COUNT);

  // -- framing, RFC 9112 6.3 in order. A faulty framing field is refused
  // even where rule 1 makes the body empty: the next bytes on the connection
  // would be read as another head, and we would rather not guess (6.1: TE in
  // HTTP/1.0 "MUST treat the message as if the framing is faulty").
  if (teSeen) {
    if ((flags & RS_CHUNKED) == 0) return fail(resp, RE_TRANSFER_ENCODING);  // an empty value
    if (version == 10) return fail(resp, RE_TE_HTTP10);
    // 6.3 rule 3: TE + CL "ought to be handled as an error"; we do.
    if (flags & RS_HAS_CONTENT_LENGTH) return fail(resp, RE_TE_AND_CL);
  }
  let body = BODY_CLOSE;
  if (headRequest || status < 200 || status == 204 || status == 304) body = BODY_NONE;  // rule 1
  else if (flags & RS_CHUNKED) body = BODY_CHUNKED;                                      // rule 4
  else if (flags & RS_HAS_CONTENT_LENGTH) {                                              // rule 5
    body = load<f64>(resp, RESP_CONTENT_LENGTH) == 0 ? BODY_NONE : BODY_LENGTH;
  }
  // Persistence (RFC 9112 9.3): 1.1 unless "close", 1.0 only with
  // "keep-alive"; a body delimited by the close cannot be followed by anything.
  const persistent = version == 11 ? (flags & RS_CONN_CLOSE) == 0 : (flags & RS_CONN_KEEPALIVE) != 0 && (flags & RS_CONN_CLOSE) == 0;
  if (status < 200) flags |= RS_INTERIM;                    // reuse is decided by the final head
  else if (persistent && body != BODY_CLOSE) flags |= RS_REUSABLE;
  store<i32>(resp, flags, RESP_FLAGS);
  store<i32>(resp, body, RESP_BODY);
  return headEnd;
}

// First byte a reason-phrase or field value may not contain: a control other
// than HTAB, or DEL (obs-text 0x80..0xFF is allowed). 16 bytes a step, as the
// request parser's skipValueSimd (the same reasoning: min/max + eq, and no
// bound: the line's CR stops it; the 16-byte loads stay within the head plus
// the caller's padding).
@inline function skipText(p: usize): usize {
  while (true) {
    const v = v128.load(p);
    const m = i8x16.bitmask(v128.or(i8x16.eq(i8x16.min_u(v, i8x16.splat(0x1F)), v), i8x16.eq(v, i8x16.splat(0x7F))));
    if (m == 0) { p += 16; continue; }
    p += ctz(m);
    if (load<u8>(p) != HT) return p;
    p++;
  }
}

// Content-Length = 1*DIGIT; a list of identical values or repeated identical
// lines is accepted (RFC 9110 8.6), anything that disagrees is refused: a
// proxy that picked one value could frame differently from the client.
function onContentLength(resp: usize, flags: i32, p: usize, end: usize): i32 {
  let value: u64 = 0;
  let first = true;
  while (true) {
    const s = p;
    let v: u64 = 0;
    while (p < end) {
      const d = <u32>load<u8>(p) - 0x30;
      if (d > 9) break;
      if (v <= MAX_SAFE) v = v * 10 + d;
      p++;
    }
    if (p == s || v > MAX_SAFE || (!first && v != value)) return fail(resp, RE_CONTENT_LENGTH);
    value = v;
    first = false;
    while (p < end && isOws(load<u8>(p))) p++;
    if (p == end) break;
    if (load<u8>(p) != COMMA) return fail(resp, RE_CONTENT_LENGTH);
    p++;
    while (p < end && isOws(load<u8>(p))) p++;
  }
  if (flags & RS_HAS_CONTENT_LENGTH) {
    if (<f64>value != load<f64>(resp, RESP_CONTENT_LENGTH)) return fail(resp, RE_CONTENT_LENGTH);
    return flags;
  }
  store<f64>(resp, <f64>value, RESP_CONTENT_LENGTH);
  return flags | RS_HAS_CONTENT_LENGTH;
}

// Transfer-Encoding: chunked only, once. RFC 9112 6.3 rule 4 would let a
// response whose final coding is not chunked run until the close, and "gzip,
// chunked" is chunked; but the proxy drops Transfer-Encoding as hop-by-hop
// and re-frames, which would strip a coding the client must undo. nginx
// refuses both ("upstream sent unknown Transfer-Encoding", 502); so do we.
// Empty list members are skipped (RFC 9110 5.6.1).
function onTransferEncoding(resp: usize, flags: i32, p: usize, end: usize): i32 {
  while (p < end) {
    const c = <u32>load<u8>(p);
    if (c == COMMA || isOws(c)) { p++; continue; }
    const s = p;
    while (p < end && isToken(load<u8>(p))) p++;
    if (p - s != 7 || !eqLower(s, "chunked") || (flags & RS_CHUNKED)) return fail(resp, RE_TRANSFER_ENCODING);
    flags |= RS_CHUNKED;
    while (p < end && isOws(load<u8>(p))) p++;
    if (p < end && load<u8>(p) != COMMA) return fail(resp, RE_TRANSFER_ENCODING);  // parameters, junk
  }
  return flags;
}

/** RS_CONN_CLOSE / RS_CONN_KEEPALIVE for the members of a Connection value; other options are ignored. */
function connectionOptions(p: usize, end: usize): i32 {
  let flags = 0;
  while (p < end) {
    while (p < end && (load<u8>(p) == COMMA || isOws(load<u8>(p)))) p++;
    const s = p;
    while (p < end && load<u8>(p) != COMMA) p++;
    let e = p;
    while (e > s && isOws(load<u8>(e - 1))) e--;
    const n = e - s;
    if (n == 5 && eqLower(s, "close")) flags |= RS_CONN_CLOSE;
    else if (n == 10 && eqLower(s, "keep-alive")) flags |= RS_CONN_KEEPALIVE;
  }
  return flags;
}
