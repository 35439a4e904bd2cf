// HTTP/1.1 request-head parser (RFC 9112); the chunked-body decoder is
// http/chunked.ts, the byte classes http/bytes.ts.
//
// Why one file of ~650 lines: the request line, the header loop and the
// per-header handlers below share the little-endian word tables (W_*) and
// one pass over the head, as picohttpparser.c keeps them together; split,
// every handler would import a dozen private constants back.
//
// Works only on memory the caller provides: no allocation, no strings, no
// I/O. The caller guarantees 16 readable bytes past `len` (the SIMD helpers
// may load them) and the parser never acts on a byte at or past `len`.
//
// parseRequest runs in two phases, in the manner of picohttpparser:
//   1. find the end of the head (CRLFCRLF), incrementally: each call scans
//      only the bytes that arrived since the previous one (REQ_SCANNED). The
//      scan looks for LF with SIMD and checks the 3 bytes *before* each LF, so
//      a CRLFCRLF straddling two reads is found without backing up. The same
//      pass rejects bare LF and enforces the size limits (414, 431) on partial
//      input, so a slow client cannot make us buffer forever.
//   2. once the head is complete, parse the request line and every header
//      line in one pass, validating bytes with SIMD range checks (target,
//      names, values) and a 256-entry table (the rarer tchars). Header names
//      are matched by length first, then by u64 loads OR'ed with 0x20
//      (ASCII lowercase).
//
// Return value: > 0 head complete (its length), 0 need more bytes,
// < 0 minus the HTTP status to answer with before closing the connection.

import { HT, LF, CR, SP, SEMI, MAX_SAFE, CLASS, C_HOST, isToken, isOws } from "./bytes";
// The chunked decoder is its own file; it is re-exported so the parser module stays the one
// import for HTTP/1.1 framing.
export * from "./chunked";

// ---- REQ record ---------------------------------------------------------
// Size REQ_SIZE bytes, laid over linear memory by the caller; zero it with
// resetRequest() before each request. i32 fields unless noted. *_OFF are
// offsets from `buf`; a header field that was absent has OFF == 0 (a value
// can never start at 0), so an empty value is OFF != 0, LEN == 0.
export const REQ_SIZE = 144;
export const REQ_SCANNED = 0;          // bytes already scanned for the end of the head
export const REQ_METHOD = 4;           // METHOD_*
export const REQ_VERSION = 8;          // 10 or 11
export const REQ_FLAGS = 12;           // RF_* bits
export const REQ_CONTENT_LENGTH = 16;  // f64, valid when RF_HAS_CONTENT_LENGTH
export const REQ_HEADER_COUNT = 24;
export const REQ_HEADER_END = 28;      // length of request line + headers + final CRLF
export const REQ_TARGET_OFF = 32;
export const REQ_TARGET_LEN = 36;
export const REQ_HOST_OFF = 40;
export const REQ_HOST_LEN = 44;
export const REQ_IF_NONE_MATCH_OFF = 48;
export const REQ_IF_NONE_MATCH_LEN = 52;
export const REQ_IF_MODIFIED_SINCE_OFF = 56;
export const REQ_IF_MODIFIED_SINCE_LEN = 60;
export const REQ_IF_MATCH_OFF = 64;
export const REQ_IF_MATCH_LEN = 68;
export const REQ_IF_UNMODIFIED_SINCE_OFF = 72;
export const REQ_IF_UNMODIFIED_SINCE_LEN = 76;
export const REQ_RANGE_OFF = 80;
export const REQ_RANGE_LEN = 84;
export const REQ_IF_RANGE_OFF = 88;
export const REQ_IF_RANGE_LEN = 92;
// phase-1 state, kept between calls
export const REQ_LINE_START = 96;      // 2 when one leading empty line was skipped
export const REQ_LINE_END = 100;       // offset just past the request line's CRLF; 0: not seen yet
// Fields only some features read (precompressed files, the access log, CORS).
// A second line of one of them is not an error: the first line wins, except
// for Accept-Encoding, whose lines together form one list: two of them leave
// an empty value (identity), never a coding the client may have refused.
export const REQ_ACCEPT_ENCODING_OFF = 104;
export const REQ_ACCEPT_ENCODING_LEN = 108;
export const REQ_USER_AGENT_OFF = 112;
export const REQ_USER_AGENT_LEN = 116;
export const REQ_REFERER_OFF = 120;
export const REQ_REFERER_LEN = 124;
export const REQ_ACR_HEADERS_OFF = 128;  // Access-Control-Request-Headers (CORS preflight)
export const REQ_ACR_HEADERS_LEN = 132;
// 136..143 reserved

export const METHOD_OTHER = 0;         // never returned: an unknown method is answered 501
export const METHOD_GET = 1;
export const METHOD_HEAD = 2;
export const METHOD_POST = 3;
export const METHOD_PUT = 4;
export const METHOD_DELETE = 5;
export const METHOD_OPTIONS = 6;
export const METHOD_PATCH = 7;
export const METHOD_TRACE = 8;
export const METHOD_CONNECT = 9;

export const RF_CONN_CLOSE = 1;        // Connection: close
export const RF_CONN_KEEPALIVE = 2;    // Connection: keep-alive
export const RF_CHUNKED = 4;           // Transfer-Encoding: chunked (the only coding accepted)
export const RF_HAS_CONTENT_LENGTH = 8;
export const RF_EXPECT_CONTINUE = 16;  // Expect: 100-continue
export const RF_HAS_HOST = 32;
export const RF_EXPECT_OTHER = 64;     // Expect names something other than 100-continue (-> 417)

// ---- byte constants: http/bytes.ts ------------------------------------
const COMMA: u32 = 0x2C;
const COLON: u32 = 0x3A;
const CRLFCRLF: u32 = 0x0A0D0A0D;
const LOWER: u64 = 0x2020202020202020; // OR-ing sets the ASCII lowercase bit

// Little-endian words for u32/u64 compares (the text is in the comment).
const W_GET_: u32 = 0x20544547;        // "GET "
const W_PUT_: u32 = 0x20545550;        // "PUT "
const W_HEAD: u32 = 0x44414548;        // "HEAD"
const W_POST: u32 = 0x54534F50;        // "POST"
const W_TRACE: u64 = 0x4543415254;     // "TRACE"
const W_PATCH: u64 = 0x4843544150;     // "PATCH"
const W_DELETE: u64 = 0x4554454C4544;  // "DELETE"
const W_OPTIONS_: u64 = 0x20534E4F4954504F; // "OPTIONS "
const W_CONNECT_: u64 = 0x205443454E4E4F43; // "CONNECT "
const W_HTTP11: u64 = 0x312E312F50545448;   // "HTTP/1.1"
const W_HTTP10: u64 = 0x302E312F50545448;   // "HTTP/1.0"
const W_HTTP_: u64 = 0x2F50545448;          // "HTTP/"
// lowercase header names and list tokens
const W_HOST: u32 = 0x74736F68;             // "host"
const W_RANGE: u64 = 0x65676E6172;          // "range"
const W_EXPECT: u64 = 0x746365707865;       // "expect"
const W_IF_MATCH: u64 = 0x686374616D2D6669; // "if-match"
const W_IF_RANGE: u64 = 0x65676E61722D6669; // "if-range"
const W_CONNECTI: u64 = 0x697463656E6E6F63; // "connecti"  connection +0
const W_NNECTION: u64 = 0x6E6F697463656E6E; // "nnection"  connection +2
const W_IF_NONE_: u64 = 0x2D656E6F6E2D6669; // "if-none-"  if-none-match +0
const W_NE_MATCH: u64 = 0x686374616D2D656E; // "ne-match"  if-none-match +5
const W_CONTENT_: u64 = 0x2D746E65746E6F63; // "content-"  content-length +0
const W_T_LENGTH: u64 = 0x6874676E656C2D74; // "t-length"  content-length +6
const W_TRANSFER: u64 = 0x726566736E617274; // "transfer"  transfer-encoding +0
const W__ENCODIN: u64 = 0x6E69646F636E652D; // "-encodin"  transfer-encoding +8
const W_ENCODING: u64 = 0x676E69646F636E65; // "encoding"  transfer-encoding +9
const W_IF_MODIF: u64 = 0x6669646F6D2D6669; // "if-modif"  if-modified-since +0
const W_IED_SINC: u64 = 0x636E69732D646569; // "ied-sinc"  if-modified-since +8
const W_ED_SINCE: u64 = 0x65636E69732D6465; // "ed-since"  if-modified-since +9, if-unmodified-since +11
const W_IF_UNMOD: u64 = 0x646F6D6E752D6669; // "if-unmod"  if-unmodified-since +0
const W_IFIED_SI: u64 = 0x69732D6465696669; // "ified-si"  if-unmodified-since +8
const W_CLOSE: u64 = 0x65736F6C63;          // "close"
const W_KEEP_ALI: u64 = 0x696C612D7065656B; // "keep-ali"  keep-alive +0
const W_EP_ALIVE: u64 = 0x6576696C612D7065; // "ep-alive"  keep-alive +2
const W_100_CONT: u64 = 0x746E6F632D303031; // "100-cont"  100-continue +0
const W_CONTINUE: u64 = 0x65756E69746E6F63; // "continue"  100-continue +4
const W_CHUNKED: u64 = 0x64656B6E756863;    // "chunked"
const W_REFERER: u64 = 0x72657265666572;    // "referer"
const W_USER_AGE: u64 = 0x6567612D72657375; // "user-age"  user-agent +0
const W_ER_AGENT: u64 = 0x746E6567612D7265; // "er-agent"  user-agent +2
const W_ACCEPT_E: u64 = 0x652D747065636361; // "accept-e"  accept-encoding +0
// "encoding" (W_ENCODING) is accept-encoding +7
const W_ACCESS_C: u64 = 0x632D737365636361; // "access-c"  access-control-request-headers +0
const W_ONTROL_R: u64 = 0x722D6C6F72746E6F; // "ontrol-r"  +8
const W_EQUEST_H: u64 = 0x682D747365757165; // "equest-h"  +16
const W__HEADERS: u64 = 0x737265646165682D; // "-headers"  +22
const MASK5: u64 = 0xFFFFFFFFFF;
const MASK6: u64 = 0xFFFFFFFFFFFF;
const MASK7: u64 = 0xFFFFFFFFFFFFFF;

@inline function lower64(p: usize): u64 { return load<u64>(p) | LOWER; }

// parseRequest uses the SIMD helpers unless a test switched to their twins.
let useSimd = true;
export function parserSetSimd(on: bool): void { useSimd = on; }

// ---- scanning helpers: each SIMD helper has a scalar twin ----------------
// Unsigned byte compares are written as min/max + eq: V8 lowers i8x16.lt_u
// to five x64 instructions and `eq(min_u(v, k), v)` (v <= k) to two.

@inline function leU(v: v128, k: i8): v128 { return i8x16.eq(i8x16.min_u(v, i8x16.splat(k)), v); }
@inline function geU(v: v128, k: i8): v128 { return i8x16.eq(i8x16.max_u(v, i8x16.splat(k)), v); }

// Bitmask of the LF bytes among the 16 at p (bit i = byte p + i).
@inline function lfMaskSimd(p: usize): i32 {
  return i8x16.bitmask(i8x16.eq(v128.load(p), i8x16.splat(<i8>LF)));
}
@inline function lfMaskScalar(p: usize): i32 {
  let m = 0;
  for (let i = 0; i < 16; i++) m |= i32(load<u8>(p + i) == LF) << i;
  return m;
}

// Position of the ":" that ends a field name starting at p, or 0 when the
// line does not start with a non-empty token followed by ":". The vector
// path takes names under 16 bytes made of [A-Za-z0-9-]; anything else (long
// names, rarer tchars, errors) goes to the scalar twin. Neither can leave the
// line: CR is not a tchar.
@inline function nameEndSimd(p: usize): usize {
  const v = v128.load(p);
  const colon = i8x16.bitmask(i8x16.eq(v, i8x16.splat(<i8>COLON)));
  const alpha = leU(i8x16.sub(v128.or(v, i8x16.splat(0x20)), i8x16.splat(0x61)), 25);
  const digit = leU(i8x16.sub(v, i8x16.splat(0x30)), 9);
  const ok = i8x16.bitmask(v128.or(v128.or(alpha, digit), i8x16.eq(v, i8x16.splat(0x2D))));
  const n = ctz(colon);                       // 32 when there is no colon
  if (n > 0 && n < 16 && (ok | (-1 << n)) == -1) return p + n;
  return nameEndScalar(p);
}
@inline function nameEndScalar(p: usize): usize {
  let q = p;
  while (isToken(load<u8>(q))) q++;
  return q != p && load<u8>(q) == COLON ? q : 0;
}

// First byte outside 0x21..0x7E (the request-target alphabet). The request
// line ends in CRLF before `len`, so the search always stops inside the data.
@inline function skipTargetSimd(p: usize): usize {
  while (true) {
    const bad = i8x16.bitmask(geU(i8x16.sub(v128.load(p), i8x16.splat(0x21)), 0x5E));
    if (bad != 0) return p + ctz(bad);
    p += 16;
  }
}
@inline function skipTargetScalar(p: usize): usize {
  while (<u32>load<u8>(p) - 0x21 < 0x5E) p++;
  return p;
}

// First byte a field value may not contain: a control other than HTAB, or
// DEL (obs-text 0x80..0xFF is allowed). The caller knows where the line's CR
// is; the scan stops there at the latest, so it needs no bound of its own
// (measured: the loop is instruction-bound, and a bound check costs 20%).
@inline function skipValueSimd(p: usize): usize {
  while (true) {
    const v = v128.load(p);
    const m = i8x16.bitmask(v128.or(leU(v, 0x1F), i8x16.eq(v, i8x16.splat(0x7F))));
    if (m == 0) { p += 16; continue; }
    p += ctz(m);
    if (load<u8>(p) != HT) return p;
    p++; // HTAB is allowed; rare enough to restart the vector here
  }
}
@inline function skipValueScalar(p: usize): usize {
  while (true) {
    const c = <u32>load<u8>(p);
    if ((c < SP && c != HT) || c == 0x7F) return p;
    p++;
  }
}

// Index just past the first CRLFCRLF whose final LF is at or after `from`,
// or -1. Bytes before `from` are only looked at as the 3 bytes preceding an
// LF, which is what makes resuming at the previous scan end correct.
function scanHeaderEnd(buf: usize, from: i32, len: i32, simd: bool): i32 {
  const end = buf + <usize>len;
  for (let p = buf + <usize>from; p < end; p += 16) {
    let m = simd ? lfMaskSimd(p) : lfMaskScalar(p);
    while (m != 0) {
      const q = p + ctz(m);
      if (q >= end) return -1;                 // an LF in the padding is not data
      if (q >= buf + 3 && load<u32>(q - 3) == CRLFCRLF) return <i32>(q + 1 - buf);
      m &= m - 1;
    }
  }
  return -1;
}
export function scanHeaderEndSimd(buf: usize, from: i32, len: i32): i32 { return scanHeaderEnd(buf, from, len, true); }
export function scanHeaderEndScalar(buf: usize, from: i32, len: i32): i32 { return scanHeaderEnd(buf, from, len, false); }

// ---- parseRequest --------------------------------------------------------

export function resetRequest(req: usize): void {
  const z = i64x2.splat(0);
  v128.store(req, z, 0); v128.store(req, z, 16); v128.store(req, z, 32); v128.store(req, z, 48);
  v128.store(req, z, 64); v128.store(req, z, 80); v128.store(req, z, 96); v128.store(req, z, 112);
  v128.store(req, z, 128);
}

export function parseRequest(buf: usize, len: i32, req: usize, maxLine: i32, maxHeader: i32, maxHeaders: i32): i32 {
  const done = load<i32>(req, REQ_HEADER_END);
  if (done > 0) return done;
  // Two copies, each with `simd` constant-folded, keep the test switch off
  // the hot loops.
  return useSimd
    ? parse(buf, len, req, maxLine, maxHeader, maxHeaders, true)
    : parse(buf, len, req, maxLine, maxHeader, maxHeaders, false);
}

@inline function parse(buf: usize, len: i32, req: usize, maxLine: i32, maxHeader: i32, maxHeaders: i32, simd: bool): i32 {
  let lineStart = load<i32>(req, REQ_LINE_START);
  let lineEnd = load<i32>(req, REQ_LINE_END);
  // Phase 1: visit every LF up to the end of the head, but never past the
  // offset where a size limit bites (`limit`): an LF there could only end a
  // line that is already too long. The checks at an LF look only at bytes
  // before it, so the outcome does not depend on how the input was split.
  let limit = scanLimit(lineStart, lineEnd, maxLine, maxHeader);
  let stop = buf + <usize>min<i64>(len, limit);
  const dataEnd = buf + <usize>len;
  for (let p = buf + <usize>load<i32>(req, REQ_SCANNED); p < stop; p += 32) {
    // 32 bytes a step (fewer loop branches); the second load only while it
    // starts inside the data, so it stays within data + 16 bytes of padding.
    let m = simd ? lfMaskSimd(p) : lfMaskScalar(p);
    if (p + 16 < dataEnd) m |= (simd ? lfMaskSimd(p + 16) : lfMaskScalar(p + 16)) << 16;
    for (; m != 0; m &= m - 1) {
      const q = p + ctz(m);
      if (q >= stop) break;
      const at = <i32>(q - buf);
      if (at == 0 || load<u8>(q - 1) != CR) return -400;        // bare LF
      if (lineEnd == 0) {
        // RFC 9112 2.2: a server SHOULD ignore at least one empty line before
        // the request line (old clients send CRLF after a POST body). One only.
        if (at == 1 && lineStart == 0) lineStart = 2;
        else lineEnd = at + 1;
        limit = scanLimit(lineStart, lineEnd, maxLine, maxHeader);
        stop = buf + <usize>min<i64>(len, limit);
        continue;
      }
      if (load<u32>(q - 3) == CRLFCRLF) {
        store<i32>(req, at + 1, REQ_SCANNED);
        store<i32>(req, lineStart, REQ_LINE_START);
        store<i32>(req, lineEnd, REQ_LINE_END);
        const r = simd
          ? parseHead(buf, req, lineStart, lineEnd, at + 1, maxHeaders, true)
          : parseHead(buf, req, lineStart, lineEnd, at + 1, maxHeaders, false);
        if (r > 0) store<i32>(req, r, REQ_HEADER_END);
        return r;
      }
    }
  }
  store<i32>(req, <i32>(stop - buf), REQ_SCANNED);
  store<i32>(req, lineStart, REQ_LINE_START);
  store<i32>(req, lineEnd, REQ_LINE_END);
  if (limit <= <i64>len) return lineEnd == 0 ? -414 : -431;  // limits hold on partial input too
  return 0;
}

// Offset of the first LF that would break a size limit: the request line
// (CRLF included) may be maxLine bytes, the rest of the head maxHeader bytes.
@inline function scanLimit(lineStart: i32, lineEnd: i32, maxLine: i32, maxHeader: i32): i64 {
  return lineEnd == 0 ? <i64>lineStart + maxLine : <i64>lineEnd + maxHeader;
}

// Phase 2: the head buf[lineStart..headEnd) is complete, every LF in it is
// preceded by CR, and it ends with the first CRLFCRLF. Every scanner stops at
// a CR at the latest, so none needs a bound.
@inline function parseHead(buf: usize, req: usize, lineStart: i32, lineEnd: i32, headEnd: i32, maxHeaders: i32, simd: bool): i32 {
  // -- request-line = method SP request-target SP HTTP-version CRLF
  let p = buf + <usize>lineStart;
  let method = METHOD_GET;
  if (load<u32>(p) == W_GET_) {
    p += 4;
  } else {
    let q = p;
    while (isToken(load<u8>(q))) q++;
    if (q == p || load<u8>(q) != SP) return -400;
    method = methodId(p, <i32>(q - p));
    p = q + 1;
  }
  const target = p;
  p = simd ? skipTargetSimd(p) : skipTargetScalar(p);
  if (p == target || load<u8>(p) != SP) return -400;   // empty target, 2 SPs, CTL, or no version (HTTP/0.9)
  store<i32>(req, <i32>(target - buf), REQ_TARGET_OFF);
  store<i32>(req, <i32>(p - target), REQ_TARGET_LEN);
  p++;
  if (buf + <usize>lineEnd - 2 - p != 8) return -400;  // HTTP-version is exactly 8 bytes
  const v = load<u64>(p);
  let version = 11;
  if (v == W_HTTP10) version = 10;
  else if (v != W_HTTP11) {
    const major = <u32>load<u8>(p, 5) - 0x30, minor = <u32>load<u8>(p, 7) - 0x30;
    if ((v & MASK5) != W_HTTP_ || major > 9 || load<u8>(p, 6) != 0x2E || minor > 9) return -400;
    if (major != 1) return -505;
    // HTTP/1.2..1.9: RFC 9110 2.5 says minor versions are compatible and a
    // server answers with the highest it supports, so these are HTTP/1.1.
  }
  if (method == METHOD_OTHER) return -501;
  store<i32>(req, method, REQ_METHOD);
  store<i32>(req, version, REQ_VERSION);

  // -- field-line = field-name ":" OWS field-value OWS CRLF
  // Lines are located by walking the LF bitmask rather than by parsing to
  // the end of the previous line, so a line's start never waits for the
  // previous line's work and the CPU can overlap lines (measured ~20% less
  // per short header line). Phase 1 checked that every LF follows a CR.
  let s = buf + <usize>lineEnd;    // start of the current line
  let vp = s;
  let m = simd ? lfMaskSimd(vp) : lfMaskScalar(vp);
  let count = 0;
  let teSeen = false;
  while (true) {
    while (m == 0) {
      vp += 16;
      m = simd ? lfMaskSimd(vp) : lfMaskScalar(vp);
    }
    const lf = vp + ctz(m);
    m &= m - 1;
    const cr = lf - 1;
    if (cr == s) break;                                 // the empty line ends the head
    const name = s;
    s = lf + 1;
    // Fails on obs-fold (a line starting with SP/HT), an empty name,
    // whitespace before the colon, a bad name byte, a line without a colon.
    const colon = simd ? nameEndSimd(name) : nameEndScalar(name);
    if (colon == 0) return -400;
    const nameLen = <i32>(colon - name);
    // The value may hold no control byte but HTAB: the first one must be
    // the line's own CR (this also rejects a bare CR).
    if ((simd ? skipValueSimd(colon + 1) : skipValueScalar(colon + 1)) != cr) return -400;
    let vs = colon + 1;
    while (isOws(load<u8>(vs))) vs++;                   // stops at cr at the latest
    let ve = cr;
    while (ve > vs && isOws(load<u8>(ve - 1))) ve--;
    if (++count > maxHeaders) return -431;

    let r = 0;
    switch (nameLen) {
      case 4: {
        if ((load<u32>(name) | 0x20202020) == W_HOST) r = onHost(buf, req, vs, ve);
        break;
      }
      case 5: {
        if ((lower64(name) & MASK5) == W_RANGE) r = setField(buf, req, REQ_RANGE_OFF, vs, ve);
        break;
      }
      case 6: {
        if ((lower64(name) & MASK6) == W_EXPECT) onExpect(req, vs, ve);
        break;
      }
      case 7: {
        if ((lower64(name) & MASK7) == W_REFERER) firstField(buf, req, REQ_REFERER_OFF, vs, ve);
        break;
      }
      case 8: {
        const w = lower64(name);
        if (w == W_IF_MATCH) r = setField(buf, req, REQ_IF_MATCH_OFF, vs, ve);
        else if (w == W_IF_RANGE) r = setField(buf, req, REQ_IF_RANGE_OFF, vs, ve);
        break;
      }
      case 10: {
        const w = lower64(name);
        if (w == W_CONNECTI && lower64(name + 2) == W_NNECTION) onConnection(req, vs, ve);
        else if (w == W_USER_AGE && lower64(name + 2) == W_ER_AGENT) firstField(buf, req, REQ_USER_AGENT_OFF, vs, ve);
        break;
      }
      case 13: {
        if (lower64(name) == W_IF_NONE_ && lower64(name + 5) == W_NE_MATCH) {
          r = setField(buf, req, REQ_IF_NONE_MATCH_OFF, vs, ve);
        }
        break;
      }
      case 14: {
        if (lower64(name) == W_CONTENT_ && lower64(name + 6) == W_T_LENGTH) r = onContentLength(req, vs, ve);
        break;
      }
      case 15: {
        if (lower64(name) == W_ACCEPT_E && lower64(name + 7) == W_ENCODING) onAcceptEncoding(buf, req, vs, ve);
        break;
      }
      case 17: {
        const w = lower64(name);
        if (w == W_TRANSFER && lower64(name + 8) == W__ENCODIN && lower64(name + 9) == W_ENCODING) {
          teSeen = true;
          r = onTransferEncoding(req, vs, ve);
        } else if (w == W_IF_MODIF && lower64(name + 8) == W_IED_SINC && lower64(name + 9) == W_ED_SINCE) {
          r = setField(buf, req, REQ_IF_MODIFIED_SINCE_OFF, vs, ve);
        }
        break;
      }
      case 19: {
        if (lower64(name) == W_IF_UNMOD && lower64(name + 8) == W_IFIED_SI && lower64(name + 11) == W_ED_SINCE) {
          r = setField(buf, req, REQ_IF_UNMODIFIED_SINCE_OFF, vs, ve);
        }
        break;
      }
      case 30: {
        if (lower64(name) == W_ACCESS_C && lower64(name + 8) == W_ONTROL_R && lower64(name + 16) == W_EQUEST_H
            && lower64(name + 22) == W__HEADERS) {
          firstField(buf, req, REQ_ACR_HEADERS_OFF, vs, ve);
        }
        break;
      }
    }
    if (r < 0) return r;
  }
  store<i32>(req, count, REQ_HEADER_COUNT);

  // -- message framing (RFC 9112 6.1, 6.3): refuse anything ambiguous
  const flags = load<i32>(req, REQ_FLAGS);
  if (teSeen) {
    if ((flags & RF_CHUNKED) == 0) return -400;         // Transfer-Encoding with no coding
    if (version == 10) return -400;                     // TE in HTTP/1.0 cannot be trusted
    if (flags & RF_HAS_CONTENT_LENGTH) return -400;     // CL + TE: the classic smuggling vector
  }
  if (version == 11 && (flags & RF_HAS_HOST) == 0) return -400;
  return headEnd;
}

// Method by length, then by word; the compares include the SP after the
// method where the word has room for it.
function methodId(p: usize, n: i32): i32 {
  switch (n) {
    case 3: {
      const w = load<u32>(p);
      if (w == W_GET_) return METHOD_GET;
      if (w == W_PUT_) return METHOD_PUT;
      break;
    }
    case 4: {
      const w = load<u32>(p);
      if (w == W_HEAD) return METHOD_HEAD;
      if (w == W_POST) return METHOD_POST;
      break;
    }
    case 5: {
      const w = load<u64>(p) & MASK5;
      if (w == W_TRACE) return METHOD_TRACE;
      if (w == W_PATCH) return METHOD_PATCH;
      break;
    }
    case 6: {
      if ((load<u64>(p) & MASK6) == W_DELETE) return METHOD_DELETE;
      break;
    }
    case 7: {
      const w = load<u64>(p);
      if (w == W_OPTIONS_) return METHOD_OPTIONS;
      if (w == W_CONNECT_) return METHOD_CONNECT;
      break;
    }
  }
  return METHOD_OTHER;
}

// The record holds one span per field, so a second line of a singleton
// field is refused rather than silently dropped: dropping a second If-Range
// or If-Match line would change what the request means.
function setField(buf: usize, req: usize, field: usize, vs: usize, ve: usize): i32 {
  if (load<i32>(req + field) != 0) return -400;
  store<i32>(req + field, <i32>(vs - buf));
  store<i32>(req + field, <i32>(ve - vs), 4);
  return 0;
}

// Informational fields (User-Agent, Referer...): the first line wins.
function firstField(buf: usize, req: usize, field: usize, vs: usize, ve: usize): void {
  if (load<i32>(req + field) != 0) return;
  store<i32>(req + field, <i32>(vs - buf));
  store<i32>(req + field, <i32>(ve - vs), 4);
}

// Accept-Encoding is a list: a second line extends it. Rather than join
// spans, two lines leave an empty value, which asks for identity: never a
// coding one of the lines may have refused (q=0).
function onAcceptEncoding(buf: usize, req: usize, vs: usize, ve: usize): void {
  if (load<i32>(req + REQ_ACCEPT_ENCODING_OFF) != 0) { store<i32>(req + REQ_ACCEPT_ENCODING_LEN, 0); return; }
  store<i32>(req + REQ_ACCEPT_ENCODING_OFF, <i32>(vs - buf));
  store<i32>(req + REQ_ACCEPT_ENCODING_LEN, <i32>(ve - vs));
}

// RFC 9112 3.2: exactly one Host, and its value must be a valid authority
// (the bytes of reg-name / IP-literal and port; empty is allowed).
function onHost(buf: usize, req: usize, vs: usize, ve: usize): i32 {
  const flags = load<i32>(req, REQ_FLAGS);
  if (flags & RF_HAS_HOST) return -400;
  for (let p = vs; p < ve; p++) {
    if ((load<u8>(CLASS + <usize>load<u8>(p)) & C_HOST) == 0) return -400;
  }
  store<i32>(req, flags | RF_HAS_HOST, REQ_FLAGS);
  store<i32>(req, <i32>(vs - buf), REQ_HOST_OFF);
  store<i32>(req, <i32>(ve - vs), REQ_HOST_LEN);
  return 0;
}

// The members of a comma list (RFC 9110 5.6.1), empty ones skipped:
// `p = nextMember(p, end)` leaves the next member in [memberStart, memberEnd)
// without its surrounding whitespace and returns where to go on; it returns
// `end` with memberStart == memberEnd when there is none left.
let memberStart: usize = 0;
let memberEnd: usize = 0;
function nextMember(p: usize, end: usize): usize {
  while (p < end) {
    const c = <u32>load<u8>(p);
    if (c != COMMA && !isOws(c)) break;
    p++;
  }
  memberStart = p;
  while (p < end && load<u8>(p) != COMMA) p++;
  let e = p;
  while (e > memberStart && isOws(load<u8>(e - 1))) e--;
  memberEnd = e;
  return p;
}

// Connection is a comma list; unknown options (upgrade, te, ...) are ignored.
function onConnection(req: usize, p: usize, end: usize): void {
  let flags = load<i32>(req, REQ_FLAGS);
  while (p < end) {
    p = nextMember(p, end);
    const s = memberStart, n = memberEnd - memberStart;
    if (n == 5 && (lower64(s) & MASK5) == W_CLOSE) flags |= RF_CONN_CLOSE;
    else if (n == 10 && lower64(s) == W_KEEP_ALI && lower64(s + 2) == W_EP_ALIVE) flags |= RF_CONN_KEEPALIVE;
  }
  store<i32>(req, flags, REQ_FLAGS);
}

// Expect = #expectation (RFC 9110 10.1.1). The only one defined is
// "100-continue" (case-insensitive, no parameters): RF_EXPECT_CONTINUE. Any
// other non-empty member, including "100-continue" with parameters, sets
// RF_EXPECT_OTHER, which the server answers with 417. Repeated Expect lines
// are one list (RFC 9110 5.3), so their flags simply accumulate; empty
// members are skipped (5.6.1). A comma inside a quoted parameter splits the
// member in two, which still makes both "other": the outcome is the same.
function onExpect(req: usize, p: usize, end: usize): void {
  let flags = load<i32>(req, REQ_FLAGS);
  while (p < end) {
    p = nextMember(p, end);
    const s = memberStart, e = memberEnd;
    if (s == e) break;
    // The OR-lowercasing cannot confuse a byte here: the bytes it would map
    // onto "1", "0" and "-" (0x11, 0x10, CR) never occur inside a value.
    if (e - s == 12 && lower64(s) == W_100_CONT && lower64(s + 4) == W_CONTINUE) flags |= RF_EXPECT_CONTINUE;
    else flags |= RF_EXPECT_OTHER;
  }
  store<i32>(req, flags, REQ_FLAGS);
}

// Content-Length = 1*DIGIT. RFC 9110 8.6 lets a recipient accept a list of
// identical values ("5, 5") or repeated identical lines; anything else that
// disagrees is a framing ambiguity, hence 400.
function onContentLength(req: usize, p: usize, end: usize): i32 {
  let value: u64 = 0;
  let first = true;
  while (true) {
    const s = p;
    let v: u64 = 0;
    while (p < end) {
      const d = <u32>load<u8>(p) - 0x30;
      if (d > 9) break;
      if (v <= MAX_SAFE) v = v * 10 + d;   // stops growing once too big; no overflow
      p++;
    }
    if (p == s) return -400;
    if (v > MAX_SAFE) return -413;
    if (!first && v != value) return -400;
    value = v;
    first = false;
    while (p < end && isOws(load<u8>(p))) p++;
    if (p == end) break;
    if (load<u8>(p) != COMMA) return -400;
    p++;
    while (p < end && isOws(load<u8>(p))) p++;
  }
  const flags = load<i32>(req, REQ_FLAGS);
  if (flags & RF_HAS_CONTENT_LENGTH) {
    if (<f64>value != load<f64>(req, REQ_CONTENT_LENGTH)) return -400;
  } else {
    store<i32>(req, flags | RF_HAS_CONTENT_LENGTH, REQ_FLAGS);
    store<f64>(req, <f64>value, REQ_CONTENT_LENGTH);
  }
  return 0;
}

// Transfer-Encoding: we implement chunked only (RFC 9112 6.1: the final
// coding of a request must be chunked, and chunked must not be applied
// twice). Any other coding, or parameters, -> 501; a second chunked -> 400.
// Empty list elements are skipped (RFC 9110 5.6.1); an all-empty value is
// caught by the caller (teSeen without RF_CHUNKED).
function onTransferEncoding(req: usize, p: usize, end: usize): i32 {
  while (p < end) {
    const c = <u32>load<u8>(p);
    if (c == COMMA || isOws(c)) { p++; continue; }
    const s = p;
    while (p < end && isToken(load<u8>(p))) p++;
    if (p == s) return -400;
    if (p - s != 7 || (lower64(s) & MASK7) != W_CHUNKED) return -501;
    const flags = load<i32>(req, REQ_FLAGS);
    if (flags & RF_CHUNKED) return -400;
    store<i32>(req, flags | RF_CHUNKED, REQ_FLAGS);
    while (p < end && isOws(load<u8>(p))) p++;
    if (p < end) {
      const d = <u32>load<u8>(p);
      if (d == SEMI) return -501;
      if (d != COMMA) return -400;
    }
  }
  return 0;
}
