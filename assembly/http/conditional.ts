// Validators, conditional requests and byte ranges for a static file
// (RFC 9110 §8.8, §13, §14).
//
// The caller has found the file (so a representation exists: `*` always
// matches) and knows its mtime and size. Header values arrive as offsets
// into the request buffer; a zero length means the header is absent. The
// result is a status code to answer with (304, 412), or 0 to go on and
// serve the file, then the range to serve.
//
// Order of evaluation, exactly as RFC 9110 §13.2.2:
//   1. If-Match            present: no strong match -> 412
//   2. If-Unmodified-Since only without If-Match: modified after -> 412
//   3. If-None-Match       present: match -> 304 (GET/HEAD) or 412 (others)
//   4. If-Modified-Since   only without If-None-Match, only GET/HEAD:
//                          not modified since -> 304
//   5. If-Range + Range    only for a GET that got this far: parseRange()
//                          and ifRangeAllows(), called by the server.
// A date that does not parse is ignored (the header counts as absent), as
// §13.1.3 and §13.1.4 require. Dates compare in whole seconds, the
// resolution of Last-Modified.

import { parseHttpDate } from "./date";

const GET: i32 = 1;
const HEAD: i32 = 2;

const SP: u8 = 0x20;
const HTAB: u8 = 0x09;
const COMMA: u8 = 0x2c;
const DQUOTE: u8 = 0x22;
const DASH: u8 = 0x2d;

// ---- entity tags ------------------------------------------------------------

/** Writes a strong ETag built like nginx's, `"<mtime seconds>-<size>"` in
 *  lowercase hex, quotes included; returns its length (at most 36). */
export function formatEtag(mtimeMs: f64, size: f64, dst: usize): i32 {
  let seconds = isFinite(mtimeMs) ? Math.floor(mtimeMs / 1000) : 0;
  let p = dst;
  store<u8>(p++, DQUOTE);
  // A pre-1970 mtime is written as its 64-bit two's complement: still
  // distinct from every other mtime, which is all a validator needs.
  p += writeHex(p, <u64><i64>seconds);
  store<u8>(p++, DASH);
  p += writeHex(p, isFinite(size) && size > 0 ? <u64>size : 0);
  store<u8>(p++, DQUOTE);
  return <i32>(p - dst);
}

function writeHex(dst: usize, v: u64): i32 {
  let digits = v == 0 ? 1 : 16 - <i32>(clz(v) >> 2);
  for (let k = digits - 1; k >= 0; k--) {
    let nibble = <u32>(v & 15);
    store<u8>(dst + <usize>k, <u8>(nibble < 10 ? 0x30 + nibble : 0x61 - 10 + nibble));
    v >>= 4;
  }
  return digits;
}

// Result of scanEntityTag: the opaque-tag without its quotes.
let tagWeak = false;
let tagStart: usize = 0;
let tagLen: i32 = 0;

/** Scans `[W/] DQUOTE *etagc DQUOTE` at p (before end). Returns the address
 *  just past it, or 0 if there is no well-formed entity-tag there. */
function scanEntityTag(p: usize, end: usize): usize {
  tagWeak = false;
  if (p + 1 < end && load<u8>(p) == 0x57 && load<u8>(p + 1) == 0x2f) {   // "W/"
    tagWeak = true;
    p += 2;
  }
  if (p >= end || load<u8>(p) != DQUOTE) return 0;
  p++;
  tagStart = p;
  while (true) {
    if (p >= end) return 0;
    let c = load<u8>(p);
    if (c == DQUOTE) break;
    // etagc = %x21 / %x23-7E / obs-text
    if (c < 0x21 || c == 0x7f) return 0;
    p++;
  }
  tagLen = <i32>(p - tagStart);
  return p + 1;
}

// Our own ETag, split once per call by parseOwnEtag().
let ownWeak = false;
let ownStart: usize = 0;
let ownLen: i32 = 0;

function parseOwnEtag(etag: usize, etagLen: i32): bool {
  if (etagLen <= 0) return false;
  let end = etag + <usize>etagLen;
  if (scanEntityTag(etag, end) != end) return false;
  ownWeak = tagWeak;
  ownStart = tagStart;
  ownLen = tagLen;
  return true;
}

/** Compares the tag last scanned with ours (§8.8.3.2): the weak comparison
 *  looks at the opaque-tags only, the strong one also needs both strong. */
function tagMatchesOwn(weak: bool): bool {
  if (!weak && (tagWeak || ownWeak)) return false;
  if (tagLen != ownLen) return false;
  for (let k = 0; k < tagLen; k++) {
    if (load<u8>(tagStart + <usize>k) != load<u8>(ownStart + <usize>k)) return false;
  }
  return true;
}

@inline function isOws(c: u8): bool {
  return c == SP || c == HTAB;
}

/** Does the If-Match / If-None-Match value list[0..listLen) match our ETag?
 *  weak = true for If-None-Match (W/ ignored on both sides), false for
 *  If-Match (a weak tag never matches). `*` alone matches (the file exists).
 *  The list is `1#entity-tag` with OWS around commas and empty elements
 *  allowed (RFC 9110 §5.6.1); anything else makes the whole list a
 *  non-match, even if some well-formed tag in it matched. */
export function etagListMatches(list: usize, listLen: i32, etag: usize, etagLen: i32, weak: bool): bool {
  let p = list;
  let end = list + <usize>max(listLen, 0);
  while (p < end && isOws(load<u8>(p))) p++;
  while (end > p && isOws(load<u8>(end - 1))) end--;
  if (end - p == 1 && load<u8>(p) == 0x2a) return true;            // "*"
  if (!parseOwnEtag(etag, etagLen)) return false;

  let matched = false;
  while (true) {
    while (p < end && (isOws(load<u8>(p)) || load<u8>(p) == COMMA)) p++;
    if (p >= end) break;
    let next = scanEntityTag(p, end);
    if (next == 0) return false;
    if (tagMatchesOwn(weak)) matched = true;
    p = next;
    while (p < end && isOws(load<u8>(p))) p++;
    if (p < end && load<u8>(p) != COMMA) return false;
  }
  return matched;
}

// ---- preconditions ------------------------------------------------------------

/** Last-Modified as the header carries it: whole seconds, in ms. */
@inline function lastModified(mtimeMs: f64): f64 {
  return Math.floor(mtimeMs / 1000) * 1000;
}

/** RFC 9110 §13.2.2 for a file that exists. Returns 0 (go on), 304 or 412.
 *  method: 1 = GET, 2 = HEAD, anything else = another method. */
export function evaluatePreconditions(
  method: i32,
  inm: usize, inmLen: i32,
  ims: usize, imsLen: i32,
  im: usize, imLen: i32,
  ius: usize, iusLen: i32,
  etag: usize, etagLen: i32,
  mtimeMs: f64,
): i32 {
  let safe = method == GET || method == HEAD;
  let modified = lastModified(mtimeMs);

  if (imLen > 0) {
    if (!etagListMatches(im, imLen, etag, etagLen, false)) return 412;
  } else if (iusLen > 0) {
    let date = parseHttpDate(ius, iusLen);
    if (date != -1 && modified > date) return 412;
  }

  if (inmLen > 0) {
    if (etagListMatches(inm, inmLen, etag, etagLen, true)) return safe ? 304 : 412;
  } else if (imsLen > 0 && safe) {
    let date = parseHttpDate(ims, imsLen);
    if (date != -1 && modified <= date) return 304;
  }
  return 0;
}

// ---- ranges -------------------------------------------------------------------
//
// A `bytes=` range set is resolved against the file's size, the way nginx
// and Apache do (RFC 9110 §14.1.2, §14.2 allow each step):
//   - a range-spec past the end (or "-0") is unsatisfiable and dropped;
//   - the rest are sorted by first byte and coalesced where they overlap or
//     touch, so no byte is sent twice and the response is never larger than
//     the file plus the part headers (the "Apache Killer" shape, thousands
//     of overlapping ranges, costs nothing);
//   - none left -> 416; one -> a plain 206; 2..RANGE_PARTS_MAX -> a
//     multipart/byteranges 206; more -> the whole file (200).
// Everything else we do not handle gets the full 200 as well (the server
// MAY ignore Range): no header, a unit other than bytes, any syntax error,
// an invalid spec (last < first), more than RANGE_SPECS_MAX specs. Parts go
// out in ascending order rather than in the order asked (§14.6 says SHOULD
// keep the order, but allows coalescing regardless of it, and coalescing is
// only complete on sorted ranges; clients match parts by Content-Range).
// The server applies Range to GET only (§14.2: "GET is the only method for
// which range handling is defined").

/** Ignore the Range header: answer 200 with the whole file. */
export const RANGE_NONE: i32 = 0;
/** Satisfiable: 206 with rangeCount() ranges, rangeStartAt(i)..rangeEndAt(i). */
export const RANGE_OK: i32 = 1;
// Not satisfiable: 416 with `Content-Range: bytes */size`.
export const RANGE_UNSATISFIABLE: i32 = 2;

/** Most parts a multipart/byteranges response carries (after coalescing). */
export const RANGE_PARTS_MAX: i32 = 16;
/** Most range-specs looked at (Apache's MaxRanges default); more: whole file. */
export const RANGE_SPECS_MAX: i32 = 200;

// The resolved ranges: [first f64, last f64] per entry, sorted and
// coalesced once parseRange() returns RANGE_OK. One request is parsed at a
// time, so one static table serves every connection.
const rangeTable: usize = memory.data(RANGE_SPECS_MAX * 16, 8);
let rangeN: i32 = 0;

/** Number of ranges found by the last parseRange() == RANGE_OK. */
export function rangeCount(): i32 { return rangeN; }
/** First byte of range i (0 <= i < rangeCount()). */
export function rangeStartAt(i: i32): f64 { return load<f64>(rangeTable + <usize>i * 16); }
/** Last byte (inclusive) of range i, at most size - 1. */
export function rangeEndAt(i: i32): f64 { return load<f64>(rangeTable + <usize>i * 16, 8); }
/** First byte of the first range. */
export function rangeStart(): f64 { return rangeStartAt(0); }
/** Last byte of the first range. */
export function rangeEnd(): f64 { return rangeEndAt(0); }

// Positions saturate: anything above 1e15 (exact in an f64) becomes 1e16,
// larger than any file, so a 40-digit position is simply "beyond the end".
const POS_SATURATED: f64 = 1e16;
let digitsValue: f64 = 0;

/** Reads 1*DIGIT at p into digitsValue; returns the address past them (p
 *  itself if there is no digit). */
function scanDigits(p: usize, end: usize): usize {
  let v: f64 = 0;
  while (p < end) {
    let d = <u32>load<u8>(p) - 0x30;
    if (d >= 10) break;
    v = v > 1e15 ? POS_SATURATED : v * 10 + <f64>d;
    p++;
  }
  digitsValue = v;
  return p;
}

/** Parses a Range header value for a file of `size` bytes; see RANGE_*. */
export function parseRange(src: usize, len: i32, size: f64): i32 {
  let p = src;
  let end = src + <usize>max(len, 0);
  rangeN = 0;
  while (p < end && isOws(load<u8>(p))) p++;
  while (end > p && isOws(load<u8>(end - 1))) end--;
  // "bytes=": range units are case-insensitive (§14.1).
  if (end - p < 6) return RANGE_NONE;
  if ((load<u8>(p) | 0x20) != 0x62 || (load<u8>(p + 1) | 0x20) != 0x79 ||
      (load<u8>(p + 2) | 0x20) != 0x74 || (load<u8>(p + 3) | 0x20) != 0x65 ||
      (load<u8>(p + 4) | 0x20) != 0x73 || load<u8>(p + 5) != 0x3d) return RANGE_NONE;
  p += 6;

  // range-set = 1#range-spec
  let specs = 0;
  let emptySuffix = false;             // a suffix-range on an empty file
  while (true) {
    while (p < end && (isOws(load<u8>(p)) || load<u8>(p) == COMMA)) p++;
    if (p >= end) break;
    if (++specs > RANGE_SPECS_MAX) return RANGE_NONE;
    let suffix = false;
    let first: f64 = 0;
    let last: f64 = -1;                // -1: no last-pos
    if (load<u8>(p) == DASH) {         // suffix-range: "-" suffix-length
      let q = scanDigits(p + 1, end);
      if (q == p + 1) return RANGE_NONE;
      suffix = true;
      first = digitsValue;
      p = q;
    } else {                           // int-range: first-pos "-" [ last-pos ]
      let q = scanDigits(p, end);
      if (q == p || q >= end || load<u8>(q) != DASH) return RANGE_NONE;
      first = digitsValue;
      p = scanDigits(q + 1, end);
      if (p > q + 1) {
        last = digitsValue;
        if (last < first) return RANGE_NONE;   // invalid range-spec (§14.1.1)
      }
    }
    while (p < end && isOws(load<u8>(p))) p++;
    if (p < end && load<u8>(p) != COMMA) return RANGE_NONE;

    if (suffix) {
      // The last `first` bytes. "-0" asks for nothing: unsatisfiable. On an
      // empty file a suffix is satisfiable in principle but names no byte.
      if (first == 0) continue;
      if (size <= 0) { emptySuffix = true; continue; }
      addRange(first >= size ? 0 : size - first, size - 1);
    } else {
      if (first >= size) continue;
      addRange(first, last < 0 || last >= size ? size - 1 : last);
    }
  }
  if (specs == 0) return RANGE_NONE;
  // Nothing satisfiable: 416, except that a suffix on an empty file gets
  // the (empty) whole instead, since there is no byte to put in a 206.
  if (rangeN == 0) return emptySuffix ? RANGE_NONE : RANGE_UNSATISFIABLE;
  coalesce();
  if (rangeN > RANGE_PARTS_MAX) { rangeN = 0; return RANGE_NONE; }
  return RANGE_OK;
}

function addRange(first: f64, last: f64): void {
  const e = rangeTable + <usize>rangeN * 16;
  store<f64>(e, first);
  store<f64>(e, last, 8);
  rangeN++;
}

/** Sorts the table by first byte (insertion sort: at most RANGE_SPECS_MAX
 *  entries, usually a handful) and merges overlapping or adjacent entries. */
function coalesce(): void {
  for (let i = 1; i < rangeN; i++) {
    const a = load<f64>(rangeTable + <usize>i * 16);
    const b = load<f64>(rangeTable + <usize>i * 16, 8);
    let j = i - 1;
    while (j >= 0 && load<f64>(rangeTable + <usize>j * 16) > a) {
      v128.store(rangeTable + <usize>(j + 1) * 16, v128.load(rangeTable + <usize>j * 16));
      j--;
    }
    store<f64>(rangeTable + <usize>(j + 1) * 16, a);
    store<f64>(rangeTable + <usize>(j + 1) * 16, b, 8);
  }
  let n = 0;                           // entries kept so far
  for (let i = 0; i < rangeN; i++) {
    const a = load<f64>(rangeTable + <usize>i * 16);
    const b = load<f64>(rangeTable + <usize>i * 16, 8);
    if (n > 0) {
      const prev = rangeTable + <usize>(n - 1) * 16;
      if (a <= load<f64>(prev, 8) + 1) {           // overlaps or touches the previous one
        if (b > load<f64>(prev, 8)) store<f64>(prev, b, 8);
        continue;
      }
    }
    store<f64>(rangeTable + <usize>n * 16, a);
    store<f64>(rangeTable + <usize>n * 16, b, 8);
    n++;
  }
  rangeN = n;
}

/** If-Range (§13.1.5): may the Range be honoured? True for an absent header
 *  (len 0), for a strong entity-tag that strongly matches ours, or for an
 *  HTTP-date equal to our Last-Modified; anything else (weak tag, other
 *  tag, other or invalid date) means: ignore Range, send the full 200.
 *  Like nginx, an exact date match is trusted without asking whether the
 *  file changed within that second. */
export function ifRangeAllows(src: usize, len: i32, etag: usize, etagLen: i32, mtimeMs: f64): bool {
  let p = src;
  let end = src + <usize>max(len, 0);
  while (p < end && isOws(load<u8>(p))) p++;
  while (end > p && isOws(load<u8>(end - 1))) end--;
  if (p == end) return true;
  // An entity-tag starts with DQUOTE or "W/"; a date never does (though
  // "Wed" starts with W).
  let c = load<u8>(p);
  if (c == DQUOTE || (c == 0x57 && end - p > 1 && load<u8>(p + 1) == 0x2f)) {
    if (!parseOwnEtag(etag, etagLen)) return false;
    if (scanEntityTag(p, end) != end) return false;
    return tagMatchesOwn(false);
  }
  let date = parseHttpDate(p, <i32>(end - p));
  return date != -1 && date == lastModified(mtimeMs);
}
