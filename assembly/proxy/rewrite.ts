// Head rewriting for http-mode forwarding (RFC 9110 7.6, RFC 9112 3.2, RFC
// 7239): the request head the proxy writes to an upstream, and the response
// head it writes back to the client. Pure: both read a head the parsers
// already validated (http/parser.ts, http/response.ts) and write into a
// caller buffer; no allocation, no I/O. Header lines that survive are copied
// byte for byte; only the lines the proxy owns are regenerated.
//
// What is dropped (hop-by-hop, RFC 9110 7.6.1): Connection, Keep-Alive,
// Proxy-Connection, TE, Trailer, Upgrade, Transfer-Encoding, and every field
// the Connection field names (case-insensitive). Framing is regenerated from
// the parse record rather than copied: one "Content-Length: N" (a list of
// identical values such as "5, 5", which the parsers accept, might be read
// differently by the next hop) or "Transfer-Encoding: chunked".
//
// Via: added to requests, not to responses. RFC 9110 7.6.3 says a gateway
// (a reverse proxy) MUST send Via in each inbound request and MAY in
// responses; nginx, HAProxy and Envoy add none by default, but the cost is
// one line and it lets an upstream detect a forwarding loop. Responses go
// without, so clients see what they see behind nginx.
import { REQ_METHOD, REQ_FLAGS, REQ_CONTENT_LENGTH, REQ_TARGET_OFF, REQ_TARGET_LEN,
  REQ_HOST_OFF, REQ_HOST_LEN, REQ_LINE_START, REQ_LINE_END, RF_CHUNKED, RF_HAS_CONTENT_LENGTH, RF_HAS_HOST,
  METHOD_CONNECT } from "../http/parser";
import { RESP_STATUS, RESP_FLAGS, RESP_CONTENT_LENGTH, RESP_BODY, RESP_REASON_OFF, RESP_REASON_LEN,
  RS_HAS_CONTENT_LENGTH, RS_INTERIM, BODY_CHUNKED, BODY_CLOSE } from "../http/response";
import { CR, isOws, eqLower } from "../http/bytes";

// proxyRewriteRequest flags
export const RW_CLOSE = 1;           // ask the upstream to close after this response ("Connection: close")
// proxyRewriteResponse flags
export const RWR_CLOSE = 1;          // the client connection closes after this response
export const RWR_CLIENT_HTTP10 = 2;  // the client spoke HTTP/1.0
export const RWR_DECHUNK = 4;        // the caller de-chunks a chunked body (http/framing.ts bodyDechunk)

// Results besides a length (> 0) and 0 (response: do not forward).
export const RW_NO_ROOM = -1;        // the head does not fit in `cap`
export const RW_NEEDS_DECHUNK = -2;  // a chunked response for an HTTP/1.0 client (see proxyRewriteResponse)

// The options a Connection field names, as (offset from buf, length) pairs.
// More than MAX_OPTIONS is refused with 400: no client needs that many, and
// the table stays fixed.
const MAX_OPTIONS = 32;
const options: usize = memory.data(MAX_OPTIONS * 8);
let optionCount = 0;

// The output cursor. A write that would pass `wEnd` sets `wFull` and is
// dropped; the caller checks once at the end.
let wp: usize = 0;
let wEnd: usize = 0;
let wFull = false;

@inline function putBytes(src: usize, n: usize): void {
  if (wp + n > wEnd) { wFull = true; return; }
  memory.copy(wp, src, n);
  wp += n;
}
function putStr(s: string): void {
  const n = <usize>s.length;
  if (wp + n > wEnd) { wFull = true; return; }
  for (let i: usize = 0; i < n; i++) store<u8>(wp + i, <u8>s.charCodeAt(<i32>i));
  wp += n;
}
function putDec(v: u64): void {
  let digits = 1;
  for (let t = v; t >= 10; t /= 10) digits++;
  if (wp + <usize>digits > wEnd) { wFull = true; return; }
  for (let i = digits - 1; i >= 0; i--) { store<u8>(wp + <usize>i, <u8>(0x30 + v % 10)); v /= 10; }
  wp += <usize>digits;
}

// ---- field lines of a validated head ---------------------------------------
// nextLine(p) reads the line at p into lineName/lineNameLen/lineVs/lineVe and
// returns the start of the next line; at the final empty line it returns 0.
let lineName: usize = 0;
let lineNameLen = 0;
let lineVs: usize = 0;
let lineVe: usize = 0;
function nextLine(p: usize): usize {
  if (load<u8>(p) == CR) return 0;
  lineName = p;
  while (load<u8>(p) != 0x3A) p++;              // the parser proved there is a colon
  lineNameLen = <i32>(p - lineName);
  let vs = p + 1;
  let e = vs;
  while (load<u8>(e) != CR) e++;
  while (vs < e && isOws(load<u8>(vs))) vs++;
  let ve = e;
  while (ve > vs && isOws(load<u8>(ve - 1))) ve--;
  lineVs = vs;
  lineVe = ve;
  return e + 2;
}

// Collects the members of every Connection line from `first`; false when
// there are more than MAX_OPTIONS.
function collectOptions(first: usize): bool {
  optionCount = 0;
  for (let p = nextLine(first); p != 0; p = nextLine(p)) {
    if (lineNameLen != 10 || !eqLower(lineName, "connection")) continue;
    let q = lineVs;
    const end = lineVe;
    while (q < end) {
      while (q < end && (load<u8>(q) == 0x2C || isOws(load<u8>(q)))) q++;
      const s = q;
      while (q < end && load<u8>(q) != 0x2C) q++;
      let e = q;
      while (e > s && isOws(load<u8>(e - 1))) e--;
      if (e == s) continue;
      if (optionCount == MAX_OPTIONS) return false;
      store<u32>(options + <usize>optionCount * 8, <u32>s);
      store<i32>(options + <usize>optionCount * 8, <i32>(e - s), 4);
      optionCount++;
    }
  }
  return true;
}

/** Field names equal, ASCII case-insensitively. */
function sameName(a: usize, b: usize, n: i32): bool {
  for (let i = 0; i < n; i++) {
    let x = <u32>load<u8>(a + <usize>i), y = <u32>load<u8>(b + <usize>i);
    if (x - 0x41 < 26) x |= 0x20;
    if (y - 0x41 < 26) y |= 0x20;
    if (x != y) return false;
  }
  return true;
}

function namedByConnection(name: usize, n: i32): bool {
  for (let i = 0; i < optionCount; i++) {
    const at = options + <usize>i * 8;
    if (load<i32>(at, 4) == n && sameName(<usize>load<u32>(at), name, n)) return true;
  }
  return false;
}

// Hop-by-hop fields and the framing fields regenerated from the record.
function isHopByHop(name: usize, n: i32): bool {
  switch (n) {
    case 2: return eqLower(name, "te");
    case 7: return eqLower(name, "trailer") || eqLower(name, "upgrade");
    case 10: return eqLower(name, "connection") || eqLower(name, "keep-alive");
    case 14: return eqLower(name, "content-length");
    case 16: return eqLower(name, "proxy-connection");
    case 17: return eqLower(name, "transfer-encoding");
  }
  return false;
}

/** Writes the values of every line named `lit` from `first`, joined with ", "; returns how many there were. */
function putJoined(first: usize, lit: string): i32 {
  let count = 0;
  const n = lit.length;
  for (let p = nextLine(first); p != 0; p = nextLine(p)) {
    if (lineNameLen != n || !eqLower(lineName, lit) || lineVe == lineVs) continue;
    if (count++ > 0) putStr(", ");
    putBytes(lineVs, lineVe - lineVs);
  }
  return count;
}

// ---- the request ------------------------------------------------------------

/**
 * Writes the upstream request head for the request parsed from `buf` (its
 * REQ record `req`) into out[0..cap). `client`/`clientLen`: the client
 * address as text (reactor/peer.ts peerFormat; empty: unknown).
 * `host`/`hostLen`: the Host to send when the request has none (an HTTP/1.0
 * request in origin-form), e.g. the upstream's address.
 * Returns the head's length, RW_NO_ROOM, or minus the status to answer the
 * client with: 400 (a target that cannot be forwarded, too many Connection
 * options), 501 (CONNECT: the proxy does not tunnel).
 */
export function proxyRewriteRequest(buf: usize, req: usize, out: usize, cap: i32, client: usize, clientLen: i32,
                                    host: usize, hostLen: i32, flags: i32): i32 {
  if (load<i32>(req, REQ_METHOD) == METHOD_CONNECT) return -501;
  const first = buf + <usize>load<i32>(req, REQ_LINE_END);
  if (!collectOptions(first)) return -400;
  const rflags = load<i32>(req, REQ_FLAGS);
  wp = out; wEnd = out + <usize>cap; wFull = false;

  // -- request line: the method, the target in origin-form, HTTP/1.1 (an
  // intermediary sends its own version, RFC 9110 2.5).
  const lineStart = buf + <usize>load<i32>(req, REQ_LINE_START);
  const target = buf + <usize>load<i32>(req, REQ_TARGET_OFF);
  const targetLen = load<i32>(req, REQ_TARGET_LEN);
  putBytes(lineStart, target - lineStart);        // method and its SP
  let authority: usize = 0, authorityLen = 0;
  const c0 = load<u8>(target);
  if (c0 == 0x2F || (c0 == 0x2A && targetLen == 1)) {
    putBytes(target, targetLen);                    // origin-form, or "*" (OPTIONS)
  } else {
    // absolute-form (RFC 9112 3.2.2): forward its path and query, and use
    // its authority as Host, ignoring any Host field received.
    let skip = 0;
    if (targetLen > 7 && eqLower(target, "http://")) skip = 7;
    else if (targetLen > 8 && eqLower(target, "https://")) skip = 8;
    if (skip == 0) return -400;
    authority = target + <usize>skip;
    const end = target + <usize>targetLen;
    let p = authority;
    while (p < end && load<u8>(p) != 0x2F && load<u8>(p) != 0x3F) {
      if (load<u8>(p) == 0x40) return -400;        // userinfo: RFC 9110 4.2.4, refused
      p++;
    }
    authorityLen = <i32>(p - authority);
    if (authorityLen == 0) return -400;
    if (p == end || load<u8>(p) == 0x3F) putStr("/");
    putBytes(p, end - p);
  }
  putStr(" HTTP/1.1\r\nHost: ");
  if (authorityLen > 0) putBytes(authority, authorityLen);
  else if (rflags & RF_HAS_HOST) putBytes(buf + <usize>load<i32>(req, REQ_HOST_OFF), load<i32>(req, REQ_HOST_LEN));
  else putBytes(host, hostLen);
  putStr("\r\n");

  // -- the client's fields, minus hop-by-hop, Host and the forwarding fields we regenerate
  for (let p = first, next = nextLine(p); next != 0; p = next, next = nextLine(p)) {
    const n = lineNameLen, name = lineName;
    if (isHopByHop(name, n) || namedByConnection(name, n)) continue;
    if (n == 4 && eqLower(name, "host")) continue;
    if (n == 15 && eqLower(name, "x-forwarded-for")) continue;
    if (n == 17 && eqLower(name, "x-forwarded-proto")) continue;   // the client's claim is replaced
    if (n == 9 && eqLower(name, "forwarded")) continue;
    putBytes(p, next - p);
  }

  // -- framing, regenerated
  if (rflags & RF_CHUNKED) putStr("Transfer-Encoding: chunked\r\n");
  else if (rflags & RF_HAS_CONTENT_LENGTH) {
    putStr("Content-Length: ");
    putDec(<u64>load<f64>(req, REQ_CONTENT_LENGTH));
    putStr("\r\n");
  }
  if (flags & RW_CLOSE) putStr("Connection: close\r\n");

  // -- forwarding: X-Forwarded-For appends to what earlier proxies wrote (one
  // line, as nginx's $proxy_add_x_forwarded_for), Forwarded likewise (RFC
  // 7239 4: a list, one element per hop; an IPv6 node is quoted and in
  // brackets, 6.1; an unknown client is "unknown", 6.2).
  putStr("X-Forwarded-For: ");
  const prior = putJoined(first, "x-forwarded-for");
  if (clientLen > 0) { if (prior > 0) putStr(", "); putBytes(client, clientLen); }
  else if (prior == 0) putStr("unknown");
  putStr("\r\nX-Forwarded-Proto: http\r\nForwarded: ");
  if (putJoined(first, "forwarded") > 0) putStr(", ");
  putStr("for=");
  if (clientLen == 0) putStr("unknown");
  else if (hasColon(client, clientLen)) { putStr("\"["); putBytes(client, clientLen); putStr("]\""); }
  else putBytes(client, clientLen);
  putStr(";proto=http\r\nVia: 1.1 wasm-reactor\r\n\r\n");
  return wFull ? RW_NO_ROOM : <i32>(wp - out);
}

function hasColon(p: usize, n: i32): bool {
  for (let i = 0; i < n; i++) if (load<u8>(p + <usize>i) == 0x3A) return true;
  return false;
}

// ---- the response -----------------------------------------------------------

/**
 * Writes the client's response head for the upstream head in `buf` (its RESP
 * record `resp`) into out[0..cap). `flags`: RWR_*.
 * Returns the head's length, RW_NO_ROOM, -502 (more Connection options than
 * the table holds), 0 for an interim (1xx) response an
 * HTTP/1.0 client must not get (RFC 9110 15.2: skip it, wait for the final
 * one), or RW_NEEDS_DECHUNK: a chunked body cannot go to an HTTP/1.0 client
 * (RFC 9112 7.1: chunked is HTTP/1.1); with RWR_DECHUNK the caller promises
 * to de-chunk it (bodyDechunk) and the head is written without
 * Transfer-Encoding, with "Connection: close": the close ends the body, as
 * nginx does for HTTP/1.0 clients.
 * A close-delimited body (BODY_CLOSE) can only be framed by the close, so the
 * head then says "Connection: close" whatever `flags` say; the caller closes
 * the client connection after it.
 */
export function proxyRewriteResponse(buf: usize, resp: usize, out: usize, cap: i32, flags: i32): i32 {
  const rflags = load<i32>(resp, RESP_FLAGS);
  const http10 = (flags & RWR_CLIENT_HTTP10) != 0;
  const interim = (rflags & RS_INTERIM) != 0;
  if (interim && http10) return 0;
  const body = load<i32>(resp, RESP_BODY);
  const dechunk = body == BODY_CHUNKED && http10;
  if (dechunk && (flags & RWR_DECHUNK) == 0) return RW_NEEDS_DECHUNK;
  const status = load<i32>(resp, RESP_STATUS);
  // The status line ends at the reason's end (after it: CRLF, the parser checked).
  const reason = buf + <usize>load<i32>(resp, RESP_REASON_OFF);
  const first = reason + <usize>load<i32>(resp, RESP_REASON_LEN) + 2;
  if (!collectOptions(first)) return -502;        // more Connection options than the table holds
  wp = out; wEnd = out + <usize>cap; wFull = false;
  putStr("HTTP/1.1 ");
  putDec(<u64>status);
  putStr(" ");
  putBytes(reason, load<i32>(resp, RESP_REASON_LEN));
  putStr("\r\n");
  for (let p = first, next = nextLine(p); next != 0; p = next, next = nextLine(p)) {
    if (isHopByHop(lineName, lineNameLen) || namedByConnection(lineName, lineNameLen)) continue;
    putBytes(p, next - p);
  }
  if (!interim) {
    if (body == BODY_CHUNKED) {
      if (!dechunk) putStr("Transfer-Encoding: chunked\r\n");  // de-chunked: framed by the close below
    }
    // RFC 9110 8.6: no Content-Length in a 204; a HEAD or 304 response keeps
    // the one it had (the size a GET would have had).
    else if ((rflags & RS_HAS_CONTENT_LENGTH) && status != 204) {
      putStr("Content-Length: ");
      putDec(<u64>load<f64>(resp, RESP_CONTENT_LENGTH));
      putStr("\r\n");
    }
    if ((flags & RWR_CLOSE) || body == BODY_CLOSE || dechunk) putStr("Connection: close\r\n");
    else if (http10) putStr("Connection: keep-alive\r\n");  // 1.0 keep-alive must be confirmed
  }
  putStr("\r\n");
  return wFull ? RW_NO_ROOM : <i32>(wp - out);
}

