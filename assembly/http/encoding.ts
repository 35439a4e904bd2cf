// Content negotiation for precompressed files (RFC 9110 §12.5.3
// Accept-Encoding), as nginx's gzip_static/brotli_static and http-server's
// -g/-b use it: which of the sidecars that exist may a client get?
//
//   Accept-Encoding = #( codings [ weight ] ), codings = token / "identity" / "*"
//   weight = OWS ";" OWS "q=" qvalue, qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
//
// A coding named explicitly gets its own q (q=0: refused); `*` gives its q to
// every coding not named; `x-gzip` is gzip (§8.4.1.3). A malformed weight
// counts as q=0: when in doubt the client gets the identity bytes, which it
// can always read. The highest q wins; br wins a tie (smaller for the same
// content). Parameters other than q are ignored. No allocation, no state.
import { FILE_HAS_BR, FILE_HAS_GZIP } from "../abi";

export const ENC_IDENTITY = 0;
export const ENC_BR = 1;
export const ENC_GZIP = 2;

const LOWER: u64 = 0x2020202020202020;
const MASK6: u64 = 0xFFFFFFFFFFFF;

// q-values of the last parse, in thousandths (-1: not named)
let qBr: i32 = -1;
let qGzip: i32 = -1;
let qAny: i32 = -1;

/**
 * Picks the coding to send for an Accept-Encoding value at p (len bytes,
 * trimmed) given the sidecars present (`have`, FILE_HAS_* bits): ENC_BR,
 * ENC_GZIP or ENC_IDENTITY.
 */
export function chooseEncoding(p: usize, len: i32, have: i32): i32 {
  if (len <= 0 || (have & (FILE_HAS_BR | FILE_HAS_GZIP)) == 0) return ENC_IDENTITY;
  qBr = -1; qGzip = -1; qAny = -1;
  const end = p + <usize>len;
  let s = p;
  while (s < end) {
    // one element: coding [; params], up to the next comma
    let e = s;
    while (e < end && load<u8>(e) != 0x2c) e++;
    element(s, e);
    s = e + 1;
  }
  const br = (have & FILE_HAS_BR) != 0 ? (qBr >= 0 ? qBr : max(qAny, 0)) : 0;
  const gz = (have & FILE_HAS_GZIP) != 0 ? (qGzip >= 0 ? qGzip : max(qAny, 0)) : 0;
  if (br <= 0 && gz <= 0) return ENC_IDENTITY;
  return br >= gz ? ENC_BR : ENC_GZIP;
}

@inline function isOws(c: u32): bool { return c == 0x20 || c == 0x09; }

function element(s: usize, e: usize): void {
  while (s < e && isOws(load<u8>(s))) s++;
  let t = s;
  while (t < e && load<u8>(t) != 0x3b && !isOws(load<u8>(t))) t++;
  const n = <i32>(t - s);
  if (n == 0) return; // an empty list element
  const q = weight(t, e);
  // Codings are case-insensitive. Loads read at most 8 bytes from s: the
  // header lies inside the receive buffer, which has 16 bytes of padding.
  const w = load<u64>(s) | LOWER;
  if (n == 2 && (w & 0xFFFF) == 0x7262 /* "br" */) { if (qBr < 0) qBr = q; }
  else if (n == 4 && (w & 0xFFFFFFFF) == 0x70697a67 /* "gzip" */) { if (qGzip < 0) qGzip = q; }
  else if (n == 6 && (w & MASK6) == 0x70697a672d78 /* "x-gzip" */) { if (qGzip < 0) qGzip = q; }
  else if (n == 1 && load<u8>(s) == 0x2a /* "*" */) { if (qAny < 0) qAny = q; }
}

/** The q of the parameters in [p, e) (1000 when there is none; 0 when malformed). */
function weight(p: usize, e: usize): i32 {
  let q = 1000;
  while (p < e) {
    while (p < e && isOws(load<u8>(p))) p++;
    if (p >= e) break;
    if (load<u8>(p) != 0x3b) return 0;       // junk after the coding
    p++;
    while (p < e && isOws(load<u8>(p))) p++;
    const name = p;
    while (p < e && load<u8>(p) != 0x3d && load<u8>(p) != 0x3b && !isOws(load<u8>(p))) p++;
    const isQ = p - name == 1 && (load<u8>(name) | 0x20) == 0x71;
    if (p >= e || load<u8>(p) != 0x3d) { if (isQ) return 0; continue; } // a parameter without a value
    p++;
    const v = p;
    while (p < e && load<u8>(p) != 0x3b && !isOws(load<u8>(p))) p++;
    if (isQ) q = qvalue(v, <i32>(p - v));
  }
  return q;
}

/** qvalue in thousandths, or 0 if it does not follow the grammar. */
function qvalue(p: usize, n: i32): i32 {
  if (n < 1 || n > 5) return 0;
  const lead = <i32>load<u8>(p) - 0x30;
  if (lead != 0 && lead != 1) return 0;
  if (n == 1) return lead * 1000;
  if (load<u8>(p + 1) != 0x2e) return 0;
  let frac = 0;
  let scale = 100;
  for (let i = 2; i < n; i++) {
    const d = <i32>load<u8>(p + <usize>i) - 0x30;
    if (d < 0 || d > 9) return 0;
    frac += d * scale;
    scale /= 10;
  }
  if (lead == 1 && frac != 0) return 0;
  return lead * 1000 + frac;
}
