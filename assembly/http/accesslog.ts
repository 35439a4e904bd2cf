// The access log: one line per response, formatted in the core (it has the
// request head, the status, the peer address and the clocks) and handed to
// the host with OP_LOG at level LOG_ACCESS. Two formats:
//
//   combined  nginx/Apache's `combined`:
//             $remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//             127.0.0.1 - - [01/Dec/2026:19:57:17 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0"
//             Time in UTC. Escaped as nginx does: `"`, `\`, control bytes and
//             bytes >= 0x7F as \xHH. An absent field is `-`.
//   json      one object per line, ASCII only (`"`, `\` escaped, control and
//             non-ASCII bytes as \u00XX, i.e. read as Latin-1), absent fields null:
//             {"time":"2026-12-01T19:57:17.123Z","client":"127.0.0.1","port":54321,
//              "method":"GET","target":"/","protocol":"HTTP/1.1","status":200,"bytes":612,
//              "duration_ms":0.412,"user_agent":"curl/8.5.0","referer":null}
//
// "bytes" / $body_bytes_sent counts body bytes only (0 for HEAD and 304).
// Each text field is logged up to FIELD_MAX bytes, so a line is bounded
// (about 37 KiB, with every byte escaped) and a round's log area holds
// thousands of ordinary ones.
//
// The head is still in the connection's receive buffer when its response is
// done; the HTTP layer keeps the User-Agent and Referer spans from its parse
// (the shared parse record belongs to whichever request is handled now), and
// the request line is split here, at the spaces the parser checked.
// Measured (bare core, a 190-byte request with a browser User-Agent): 0.3 us
// a combined line, 0.45 us a JSON one; escaping copies clean runs 16 bytes
// at a time (a byte at a time was 6x slower).
import { ACCESS_LOG_JSON, LOG_ACCESS } from "../abi";
import { wallNow } from "../reactor/ctl";
import { logBegin, logReserve, logCommit, logEndWhole, logInit } from "../reactor/log";
import { peersInit, peerFormat, peerPort, dec } from "../reactor/peer";
import { formatLogDate, formatIsoDate } from "./date";

const FIELD_MAX: i32 = 2048;
const ESCAPE_MAX: i32 = 6;       // bytes written per byte logged, at most ("\u00XX")
const FIXED_MAX: i32 = 512;      // everything else on a line: names, address, time, numbers
const LOG_AREA_SIZE: i32 = 1 << 20;

let json = false;

// The constant pieces of a line, laid out once. Each is at most 16 bytes:
// one v128 load and store copies it (the area has 16 bytes of slack, and a
// line's reservation covers the overshoot); a memory.copy per piece costs
// several times more (measured).
const T_DASHES = 0, T_TIME_END = 1, T_REQ_END = 2, T_REF_END = 3, T_NULL = 4, T_J_TIME = 5, T_J_CLIENT = 6,
  T_J_PORT = 7, T_J_METHOD = 8, T_J_TARGET = 9, T_J_PROTOCOL = 10, T_J_STATUS = 11, T_J_BYTES = 12,
  T_J_DURATION = 13, T_J_UA = 14, T_J_REFERER = 15, T_U00 = 16, TEXTS = 17;
let texts: usize = 0;        // TEXTS x {ptr i32, len i32}
let textArea: usize = 0;
let textUsed: i32 = 0;

function defineText(id: i32, s: string): void {
  if (s.length > 16) abort("access-log text longer than one vector");
  const p = textArea + <usize>textUsed;
  for (let i = 0; i < s.length; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
  store<i32>(texts + <usize>id * 8, <i32>p);
  store<i32>(texts + <usize>id * 8 + 4, s.length);
  textUsed += s.length;
}

@inline function text(p: usize, id: i32): usize {
  v128.store(p, v128.load(<usize>load<i32>(texts + <usize>id * 8)));
  return p + <usize>load<i32>(texts + <usize>id * 8 + 4);
}

export function accessLogInit(format: i32, maxFds: i32): void {
  json = format == ACCESS_LOG_JSON;
  peersInit(maxFds);
  logInit(LOG_AREA_SIZE);
  texts = heap.alloc(<usize>TEXTS * 8);
  textArea = heap.alloc(256 + 16);
  defineText(T_DASHES, " - - [");
  defineText(T_TIME_END, "] \"");
  defineText(T_REQ_END, "\" ");
  defineText(T_REF_END, "\" \"");
  defineText(T_NULL, "null");
  defineText(T_J_TIME, "{\"time\":\"");
  defineText(T_J_CLIENT, "\",\"client\":");
  defineText(T_J_PORT, ",\"port\":");
  defineText(T_J_METHOD, ",\"method\":");
  defineText(T_J_TARGET, ",\"target\":");
  defineText(T_J_PROTOCOL, ",\"protocol\":");
  defineText(T_J_STATUS, ",\"status\":");
  defineText(T_J_BYTES, ",\"bytes\":");
  defineText(T_J_DURATION, ",\"duration_ms\":");
  defineText(T_J_UA, ",\"user_agent\":");
  defineText(T_J_REFERER, ",\"referer\":");
  defineText(T_U00, "\\u00");
}

/**
 * Logs the response on `fd`. `head` holds the request's bytes (`avail` of
 * them): a parsed head, or, when the request was refused unparsed, whatever
 * arrived. `ua`/`ref`: the User-Agent and Referer values in it (offset from
 * head, 0: absent; and length). `durationMs`: first byte of the head to flushed.
 */
export function accessLine(fd: i32, head: usize, avail: i32, ua: i32, uaLen: i32, ref: i32, refLen: i32,
    status: i32, bytes: f64, durationMs: f64): void {
  // The request line (one leading empty line skipped, as the parser does)
  // and its parts: method [ms, me), target [ts, te), protocol [ps, le).
  let ls = head;
  const end = head + <usize>max(avail, 0);
  if (avail >= 2 && load<u16>(ls) == 0x0a0d) ls += 2;
  let le = ls;
  while (le < end && load<u8>(le) != 0x0d && load<u8>(le) != 0x0a) le++;
  let ms = ls, me = ls;
  while (me < le && load<u8>(me) != 0x20) me++;
  let ts = me < le ? me + 1 : le, te = ts;
  while (te < le && load<u8>(te) != 0x20) te++;
  const ps = te < le ? te + 1 : le;
  if (ua == 0) uaLen = -1;
  if (ref == 0) refLen = -1;
  const uaAt = head + <usize>ua, refAt = head + <usize>ref;

  // Reserve this line's worst case (each field escaped 6:1); a line too big
  // for what is left of the round's area is dropped whole and counted.
  const fields = min(<i32>(le - ls), 3 * FIELD_MAX) + min(max(uaLen, 0), FIELD_MAX) + min(max(refLen, 0), FIELD_MAX);
  logBegin();
  const p0 = logReserve(fields * ESCAPE_MAX + FIXED_MAX);
  if (p0 == 0) { logEndWhole(LOG_ACCESS); return; } // counted as dropped
  let p = p0;
  if (!json) {
    const n = peerFormat(fd, p);
    if (n == 0) store<u8>(p++, 0x2d); else p += <usize>n;
    p = text(p, T_DASHES);
    p += <usize>formatLogDate(wallNow(), p);
    p = text(p, T_TIME_END);
    p = le > ls ? escapeNginx(p, ls, <i32>(le - ls)) : dash(p);
    p = text(p, T_REQ_END);
    p = dec(p, <u32>status);
    store<u8>(p++, 0x20);
    p = decF(p, bytes);
    store<u8>(p, 0x20); store<u8>(p + 1, 0x22); p += 2;   // ' "'
    p = refLen > 0 ? escapeNginx(p, refAt, refLen) : dash(p);
    p = text(p, T_REF_END);
    p = uaLen > 0 ? escapeNginx(p, uaAt, uaLen) : dash(p);
    store<u8>(p++, 0x22);
  } else {
    p = text(p, T_J_TIME);
    p += <usize>formatIsoDate(wallNow(), p);
    p = text(p, T_J_CLIENT);
    const n = peerFormat(fd, p + 1);
    if (n == 0) p = text(p, T_NULL);
    else { store<u8>(p, 0x22); p += <usize>(n + 1); store<u8>(p++, 0x22); }
    p = text(p, T_J_PORT);
    const port = peerPort(fd);
    p = port < 0 ? text(p, T_NULL) : dec(p, <u32>port);
    p = text(p, T_J_METHOD);
    p = jsonStr(p, ms, <i32>(me - ms), me > ms);
    p = text(p, T_J_TARGET);
    p = jsonStr(p, ts, <i32>(te - ts), te > ts);
    p = text(p, T_J_PROTOCOL);
    p = jsonStr(p, ps, <i32>(le - ps), le > ps);
    p = text(p, T_J_STATUS);
    p = dec(p, <u32>status);
    p = text(p, T_J_BYTES);
    p = decF(p, bytes);
    p = text(p, T_J_DURATION);
    p = millis(p, durationMs);
    p = text(p, T_J_UA);
    p = jsonStr(p, uaAt, uaLen, uaLen >= 0);
    p = text(p, T_J_REFERER);
    p = jsonStr(p, refAt, refLen, refLen >= 0);
    store<u8>(p++, 0x7d);
  }
  logCommit(<i32>(p - p0));
  logEndWhole(LOG_ACCESS);
}

// ---- escaping and numbers -------------------------------------------------------

const HEX_UPPER = memory.data<u8>([0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46]);

// Bytes both formats escape: `"`, `\`, controls and >= 0x7F. The vector
// test finds the first one among 16 bytes; clean runs are copied 16 at a
// time (the destination has room: the line reserved 6 bytes per byte).
@inline function leU(v: v128, k: i8): v128 { return i8x16.eq(i8x16.min_u(v, i8x16.splat(k)), v); }
@inline function escapeMask(v: v128): i32 {
  const ctl = leU(v, 0x1f);
  const high = i8x16.eq(i8x16.max_u(v, i8x16.splat(0x7f)), v); // >= 0x7F
  const quote = v128.or(i8x16.eq(v, i8x16.splat(0x22)), i8x16.eq(v, i8x16.splat(0x5c)));
  return i8x16.bitmask(v128.or(v128.or(ctl, high), quote));
}
@inline function needsEscape(c: u32): bool { return c == 0x22 || c == 0x5c || c < 0x20 || c >= 0x7f; }

/** Copies the clean bytes before the next one to escape; returns how many (i advances by it). */
@inline function cleanRun(p: usize, s: usize, i: i32, k: i32): i32 {
  let j = i;
  while (j + 16 <= k) {
    const v = v128.load(s + <usize>j);
    const m = escapeMask(v);
    v128.store(p + <usize>(j - i), v);
    if (m != 0) return j + ctz(m) - i;
    j += 16;
  }
  while (j < k && !needsEscape(<u32>load<u8>(s + <usize>j))) { store<u8>(p + <usize>(j - i), load<u8>(s + <usize>j)); j++; }
  return j - i;
}

// Field escaping. Both styles copy runs of clean bytes 16 at a time
// (cleanRun) and escape the rest one byte at a time: nginx's \xHH, or JSON's
// \" \\ \u00HH. At most FIELD_MAX input bytes are written.
const STYLE_NGINX = 0;
const STYLE_JSON = 1;

function escapeField(p: usize, s: usize, n: i32, style: i32): usize {
  const k = min(n, FIELD_MAX);
  let i = 0;
  while (i < k) {
    const run = cleanRun(p, s, i, k);
    p += <usize>run; i += run;
    if (i >= k) break;
    const c = <u32>load<u8>(s + <usize>(i++));
    if (style == STYLE_JSON && (c == 0x22 || c == 0x5c)) {
      store<u8>(p, 0x5c); store<u8>(p + 1, <u8>c); p += 2;
      continue;
    }
    if (style == STYLE_JSON) p = text(p, T_U00);
    else { store<u8>(p, 0x5c); store<u8>(p + 1, 0x78); p += 2; } // "\x"
    store<u8>(p, load<u8>(HEX_UPPER + (c >> 4)));
    store<u8>(p + 1, load<u8>(HEX_UPPER + (c & 15)));
    p += 2;
  }
  return p;
}

@inline function escapeNginx(p: usize, s: usize, n: i32): usize { return escapeField(p, s, n, STYLE_NGINX); }

/** A JSON string of n bytes at s, or null when !present. */
function jsonStr(p: usize, s: usize, n: i32, present: bool): usize {
  if (!present) return text(p, T_NULL);
  store<u8>(p++, 0x22);
  p = escapeField(p, s, n, STYLE_JSON);
  store<u8>(p++, 0x22);
  return p;
}

@inline function dash(p: usize): usize { store<u8>(p, 0x2d); return p + 1; }

function decF(p: usize, v: f64): usize {
  let x = v > 0 ? <u64>v : 0;
  let digits = 1;
  for (let t = x; t >= 10; t /= 10) digits++;
  for (let i = digits - 1; i >= 0; i--) { store<u8>(p + <usize>i, <u8>(0x30 + x % 10)); x /= 10; }
  return p + <usize>digits;
}

/** Milliseconds with three decimals (microseconds), e.g. 0.412. */
function millis(p: usize, ms: f64): usize {
  const us = ms > 0 ? <u64>Math.round(ms * 1000) : 0;
  p = decF(p, <f64>(us / 1000));
  store<u8>(p++, 0x2e);
  const f = <u32>(us % 1000);
  store<u8>(p, <u8>(0x30 + f / 100));
  store<u8>(p + 1, <u8>(0x30 + f / 10 % 10));
  store<u8>(p + 2, <u8>(0x30 + f % 10));
  return p + 3;
}
