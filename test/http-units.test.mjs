// The pure HTTP helpers of the core: request-target normalization, HTTP
// dates, validators and preconditions, byte ranges. Table-driven; each table
// row is one case a reviewer can read on its own.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";

const c = loadCore();
const x = c.x;
const k = (name) => x[name].value;        // exported consts are wasm globals
// The build exports its start function (asconfig `exportStart`), so top-level
// initializers such as the arena's allocation only run once it is called.
if (x.arena() === 0 && x._start) x._start();

const ARENA = x.arena();
const IN = ARENA;                          // input bytes
const OUT = ARENA + 0x40000;               // output bytes
const IN2 = ARENA + 0x80000;               // a second input (etag, ...)
const IN3 = ARENA + 0xa0000;               // more inputs for preconditions
const SLOT = 0x2000;                       // spacing between IN3 slots

const PATH_BAD = k("PATH_BAD");
const PATH_TOO_LONG = k("PATH_TOO_LONG");
const TRAIL = k("PATHF_TRAILING_SLASH");
const DOT = k("PATHF_DOTFILE");

// ---- path -----------------------------------------------------------------------

/** Runs normalizePath on a latin1 string; returns the code or the path. */
function normalize(target, cap = 4096) {
  const n = c.put(IN, target);
  c.u8().fill(0xaa, OUT, OUT + cap + 16);
  const r = x.normalizePath(IN, n, OUT, cap);
  if (r < 0) return { r, flags: x.pathFlags() };
  assert.ok(r <= cap - 1, "fits in cap - 1");
  assert.is(c.u8()[OUT + r], 0, "NUL-terminated");
  return { r, path: c.str(OUT, r), flags: x.pathFlags() };
}

const pathCases = [
  // [target, expected path or error code, flags]
  ["/", "", TRAIL],
  ["/index.html", "index.html", 0],
  ["/a/b/c.txt", "a/b/c.txt", 0],
  ["/a/b/", "a/b", TRAIL],
  ["/a/%2e%2E/b/./c%20d.html?x=1", "b/c d.html", 0],
  // query and fragment
  ["/a?b/../../..", "a", 0],
  ["/a?", "a", 0],
  ["/?x=1", "", TRAIL],
  ["/a#frag", "a", 0],
  ["/dir/?q", "dir", TRAIL],
  ["/a?%zz", "a", 0],                      // the query is not ours to decode
  // slashes and dot segments
  ["/a//b", "a/b", 0],
  ["//etc//passwd", "etc/passwd", 0],
  ["///", "", TRAIL],
  ["/./a", "a", 0],
  ["/a/.", "a", TRAIL],
  ["/a/./", "a", TRAIL],
  ["/a/..", "", TRAIL],
  ["/a/../", "", TRAIL],
  ["/a/b/..", "a", TRAIL],
  ["/a/../x", "x", 0],
  ["/a/b/../../x", "x", 0],
  ["/a/%2e%2e", "", TRAIL],
  ["/a/%2E", "a", TRAIL],
  ["/a/...", "a/...", DOT],                 // three dots is a name
  ["/a/..b", "a/..b", DOT],
  ["/a/b..", "a/b..", 0],
  // traversal attempts
  ["/..", PATH_BAD],
  ["/../etc/passwd", PATH_BAD],
  ["/a/../../x", PATH_BAD],
  ["/a/b/../../../x", PATH_BAD],
  ["/%2e%2e/", PATH_BAD],
  ["/%2E%2e/etc/passwd", PATH_BAD],
  ["/.%2e/x", PATH_BAD],
  ["/%2e./x", PATH_BAD],
  ["/a/%2e%2e/%2e%2e/x", PATH_BAD],
  ["/..%2f", PATH_BAD],
  ["/..%2Fetc%2Fpasswd", PATH_BAD],
  ["/a%2fb", PATH_BAD],
  ["/%5c", PATH_BAD],
  ["/..%5c..%5cwindows", PATH_BAD],
  ["/..\\x", PATH_BAD],
  ["/a\\b", PATH_BAD],
  // double encoding decodes once: a literal name, never a dot segment
  ["/%252e%252e/x", "%2e%2e/x", 0],
  ["/%252e%252e%252fetc", "%2e%2e%2fetc", 0],
  ["/%25", "%", 0],
  // bad escapes
  ["/%zz", PATH_BAD],
  ["/%4", PATH_BAD],
  ["/a%4?x=1", PATH_BAD],
  ["/%", PATH_BAD],
  ["/a%g0", PATH_BAD],
  ["/a%0g", PATH_BAD],
  // NUL and control bytes, raw or decoded
  ["/%00", PATH_BAD],
  ["/index.html%00.png", PATH_BAD],
  ["/a\x00b", PATH_BAD],
  ["/a\x01", PATH_BAD],
  ["/a%1f", PATH_BAD],
  ["/a%7f", PATH_BAD],
  ["/a\x7f", PATH_BAD],
  ["/a\tb", PATH_BAD],
  ["/a b", PATH_BAD],
  ["/a%0d%0aSet-Cookie:x", PATH_BAD],
  // not origin-form
  ["", PATH_BAD],
  ["*", PATH_BAD],
  ["a/b", PATH_BAD],
  ["http://example.com/", PATH_BAD],
  ["%2fetc", PATH_BAD],
  // escapes that are fine
  ["/a/%3F", "a/?", 0],
  ["/%23x", "#x", 0],
  ["/%41%62c", "Abc", 0],
  ["/caf%C3%A9.txt", "caf\xc3\xa9.txt", 0],
  ["/caf\xc3\xa9.txt", "caf\xc3\xa9.txt", 0],  // raw UTF-8
  ["/a+b", "a+b", 0],
  // dotfiles
  ["/.git/config", ".git/config", DOT],
  ["/a/.env", "a/.env", DOT],
  ["/%2egit/HEAD", ".git/HEAD", DOT],
  ["/.well-known/acme", ".well-known/acme", DOT],
  ["/.hidden/", ".hidden", DOT | TRAIL],
  ["/a.b/c.d", "a.b/c.d", 0],
  ["/.git/../x", "x", 0],                   // flags describe the result
  ["/x/.git/..", "x", TRAIL],
];

test("normalizePath: table", () => {
  for (const [target, want, flags] of pathCases) {
    const got = normalize(target);
    if (typeof want === "number") {
      assert.is(got.r, want, `${JSON.stringify(target)} -> ${want}`);
      assert.is(got.flags, 0, `${JSON.stringify(target)}: no flags after a failure`);
    } else {
      assert.is(got.path, want, JSON.stringify(target));
      assert.is(got.flags, flags, `${JSON.stringify(target)} flags`);
    }
  }
});

test("normalizePath: capacity and 414", () => {
  assert.is(normalize("/abc", 4).path, "abc");
  assert.is(normalize("/abc", 3).r, PATH_TOO_LONG);
  assert.is(normalize("/a/b", 4).path, "a/b");
  assert.is(normalize("/a/bc", 4).r, PATH_TOO_LONG);
  assert.is(normalize("/", 1).path, "");
  assert.is(normalize("/a", 1).r, PATH_TOO_LONG);
  assert.is(normalize("/", 0).r, PATH_TOO_LONG);
  assert.is(normalize("/" + "a".repeat(5000)).r, PATH_TOO_LONG);
  assert.is(normalize("/" + "a/".repeat(2047)).path, "a/".repeat(2046) + "a");
  assert.is(normalize("/" + "%61".repeat(4095)).path, "a".repeat(4095));
  assert.is(normalize("/" + "%61".repeat(4096)).r, PATH_TOO_LONG);
  // nothing is written past cap - 1 (plus the NUL) even when it fails
  normalize("/" + "b".repeat(100), 16);
  assert.is(c.u8()[OUT + 16], 0xaa);
  // a bad request is bad whatever its length
  assert.is(normalize("/" + "../".repeat(3000)).r, PATH_BAD);
  assert.is(normalize("/" + "x/".repeat(1000) + "../".repeat(1000)).path, "");
  assert.is(normalize("/" + "x/".repeat(1000) + "../".repeat(1001)).r, PATH_BAD);
});

test("normalizePath: reads nothing past len", () => {
  const s = "/a%41";
  c.put(IN, s + "zz/../../..");
  assert.is(x.normalizePath(IN, 4, OUT, 64), PATH_BAD);   // "/a%4" is cut short
  assert.is(x.normalizePath(IN, 5, OUT, 64), 2);
  assert.is(c.str(OUT, 2), "aA");
});

// An independent reading of the rules, to compare against on random input.
function referenceNormalize(target) {
  if (!target.startsWith("/")) return PATH_BAD;
  const raw = target.slice(1).split(/[?#]/)[0];
  const stack = [];
  const segs = raw.split("/");
  let trailing = false;
  for (const seg of segs) {
    let name = "";
    for (let i = 0; i < seg.length; i++) {
      let ch = seg.charCodeAt(i);
      if (ch === 0x25) {
        const h = seg.slice(i + 1, i + 3);
        if (!/^[0-9a-fA-F]{2}$/.test(h)) return PATH_BAD;
        ch = parseInt(h, 16);
        i += 2;
        if (ch === 0x2f) return PATH_BAD;
      } else if (ch === 0x20) return PATH_BAD;
      if (ch < 0x20 || ch === 0x7f || ch === 0x5c) return PATH_BAD;
      name += String.fromCharCode(ch);
    }
    trailing = name === "" || name === "." || name === "..";
    if (name === "..") {
      if (stack.length === 0) return PATH_BAD;
      stack.pop();
    } else if (!trailing) stack.push(name);
  }
  const path = stack.join("/");
  const flags = (trailing ? TRAIL : 0) | (stack.some((s) => s.startsWith(".")) ? DOT : 0);
  return { path, flags };
}

test("normalizePath: random targets agree with a reference", () => {
  const pieces = ["/", "//", "a", "b", ".", "..", "%2e", "%2E%2e", ".%2e", "%2f", "%5c", "%00",
    "%41", "%25", "%2", "%g1", "?", "#", "x.y", ".git", "\\", " ", "%20", "\xc3\xa9", "~"];
  let seed = 12345;
  const rand = (n) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  for (let i = 0; i < 5000; i++) {
    let t = rand(10) === 0 ? "" : "/";
    const count = 1 + rand(8);
    for (let j = 0; j < count; j++) t += pieces[rand(pieces.length)];
    const want = referenceNormalize(t);
    const got = normalize(t);
    if (typeof want === "number") assert.is(got.r, want, JSON.stringify(t));
    else {
      assert.is(got.path, want.path, JSON.stringify(t));
      assert.is(got.flags, want.flags, `${JSON.stringify(t)} flags`);
    }
  }
});

// ---- dates ----------------------------------------------------------------------

function format(ms) {
  const n = x.formatHttpDate(ms, OUT);
  return c.str(OUT, n);
}
function parse(s) {
  return x.parseHttpDate(IN, c.put(IN, s));
}

const RFC_MS = Date.UTC(1994, 10, 6, 8, 49, 37);   // the RFC 9110 example

test("formatHttpDate: fixed cases", () => {
  assert.is(k("HTTP_DATE_LEN"), 29);
  assert.is(format(RFC_MS), "Sun, 06 Nov 1994 08:49:37 GMT");
  assert.is(format(RFC_MS + 999), "Sun, 06 Nov 1994 08:49:37 GMT");
  assert.is(format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  assert.is(format(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
  assert.is(format(Date.UTC(2000, 1, 29, 23, 59, 59)), "Tue, 29 Feb 2000 23:59:59 GMT");
  assert.is(format(Date.UTC(2024, 11, 31, 12, 0, 0)), "Tue, 31 Dec 2024 12:00:00 GMT");
  // out of range: clamped to the years four digits can show
  assert.is(format(NaN), "Thu, 01 Jan 1970 00:00:00 GMT");
  assert.is(format(1e300), "Fri, 31 Dec 9999 23:59:59 GMT");
  assert.is(format(-1e300), "Sat, 01 Jan 0000 00:00:00 GMT");
});

test("formatHttpDate / parseHttpDate: random epochs round-trip against JS", () => {
  const lo = -62135596800000;              // 0001-01-01
  const hi = 253402300799999;              // 9999-12-31T23:59:59.999
  let seed = 7;
  const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  for (let i = 0; i < 20000; i++) {
    // half over the whole range, half near now where it matters
    const ms = i % 2
      ? Math.floor(lo + rand() * (hi - lo))
      : Math.floor(Date.UTC(1990, 0, 1) + rand() * 60 * 365.25 * 86400000);
    const s = format(ms);
    assert.is(s, new Date(ms).toUTCString(), `format ${ms}`);
    assert.is(parse(s), Math.floor(ms / 1000) * 1000, `parse ${s}`);
  }
  // every day of a few leap and non-leap years, including century rules
  for (const y of [1900, 1999, 2000, 2023, 2024, 2100]) {
    for (let d = Date.UTC(y, 0, 1); d < Date.UTC(y + 1, 0, 1); d += 86400000) {
      const s = format(d + 86399000);
      assert.is(s, new Date(d + 86399000).toUTCString());
      assert.is(parse(s), d + 86399000);
    }
  }
});

test("parseHttpDate: the three forms of RFC 9110", () => {
  assert.is(parse("Sun, 06 Nov 1994 08:49:37 GMT"), RFC_MS);
  assert.is(parse("Sunday, 06-Nov-94 08:49:37 GMT"), RFC_MS);
  assert.is(parse("Sun Nov  6 08:49:37 1994"), RFC_MS);
  assert.is(parse("Sun Nov 06 08:49:37 1994"), RFC_MS);        // 2DIGIT day is allowed
  assert.is(parse("Thu Nov 17 08:49:37 1994"), Date.UTC(1994, 10, 17, 8, 49, 37));
  assert.is(parse("Wednesday, 09-Nov-94 08:49:37 GMT"), Date.UTC(1994, 10, 9, 8, 49, 37));
  assert.is(parse("Thursday, 01-Jan-70 00:00:00 GMT"), 0);
  assert.is(parse("  Sun, 06 Nov 1994 08:49:37 GMT\t"), RFC_MS); // OWS around
  assert.is(parse("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
  assert.is(parse("Wed, 31 Dec 1969 23:59:59 GMT"), -1000);     // not the error value
  assert.is(parse("Tue, 29 Feb 2000 00:00:00 GMT"), Date.UTC(2000, 1, 29));
  assert.is(parse("Thu, 29 Feb 2024 00:00:00 GMT"), Date.UTC(2024, 1, 29));
  assert.is(parse("Sat, 31 Dec 2016 23:59:60 GMT"), Date.UTC(2017, 0, 1)); // leap second
  // the weekday must be a day name, but is not checked against the date
  assert.is(parse("Mon, 06 Nov 1994 08:49:37 GMT"), RFC_MS);
});

test("parseHttpDate: two-digit years", () => {
  // default window 1970..2069, as nginx
  assert.is(parse("Thursday, 01-Jan-70 00:00:00 GMT"), Date.UTC(1970, 0, 1));
  assert.is(parse("Tuesday, 01-Jan-69 00:00:00 GMT"), Date.UTC(2069, 0, 1));
  assert.is(parse("Saturday, 01-Jan-00 00:00:00 GMT"), Date.UTC(2000, 0, 1));
  // RFC 9110: more than 50 years in the future means the previous century
  x.setDateNow(Date.UTC(2025, 5, 1));
  assert.is(parse("Sunday, 06-Nov-94 08:49:37 GMT"), RFC_MS);
  assert.is(parse("Monday, 01-Jan-75 00:00:00 GMT"), Date.UTC(2075, 0, 1));
  assert.is(parse("Monday, 01-Jan-76 00:00:00 GMT"), Date.UTC(1976, 0, 1));
  assert.is(parse("Wednesday, 01-Jan-25 00:00:00 GMT"), Date.UTC(2025, 0, 1));
  x.setDateNow(Date.UTC(2090, 0, 1));
  assert.is(parse("Monday, 01-Jan-40 00:00:00 GMT"), Date.UTC(2140, 0, 1));
  assert.is(parse("Monday, 01-Jan-41 00:00:00 GMT"), Date.UTC(2041, 0, 1));
  x.setDateNow(NaN);                                            // ignored
  assert.is(parse("Monday, 01-Jan-41 00:00:00 GMT"), Date.UTC(2041, 0, 1));
  x.setDateNow(Date.UTC(2019, 0, 1));                           // back to the default
  assert.is(parse("Tuesday, 01-Jan-69 00:00:00 GMT"), Date.UTC(2069, 0, 1));
});

const invalidDates = [
  "",
  "x",
  "0",
  "Sun, 30 Feb 1994 08:49:37 GMT",      // no such day
  "Fri, 29 Feb 2023 08:49:37 GMT",
  "Thu, 29 Feb 1900 08:49:37 GMT",
  "Thu, 31 Apr 2024 08:49:37 GMT",
  "Thu, 00 Apr 2024 08:49:37 GMT",
  "Thu, 32 Jan 2024 08:49:37 GMT",
  "Sun, 06 Nov 1994 24:00:00 GMT",      // no such time
  "Sun, 06 Nov 1994 23:60:00 GMT",
  "Sun, 06 Nov 1994 23:59:61 GMT",
  "sun, 06 nov 1994 08:49:37 gmt",      // case-sensitive
  "Sun, 06 NOV 1994 08:49:37 GMT",
  "Sun, 06 Nov 1994 08:49:37 UTC",
  "Sun, 06 Nov 1994 08:49:37 +0000",
  "Sun, 6 Nov 1994 08:49:37 GMT",       // fixed widths
  "Sun, 06 Nov 94 08:49:37 GMT",
  "Sun, 06 Nov 1994 8:49:37 GMT",
  "Sun,  06 Nov 1994 08:49:37 GMT",
  "Sun 06 Nov 1994 08:49:37 GMT",
  "Sun, 06-Nov-1994 08:49:37 GMT",
  "Sun, 06 Nov 1994 08:49:37 GMTX",
  "Sun, 06 Nov 1994 08.49.37 GMT",
  "Sun, 0a Nov 1994 08:49:37 GMT",
  "Sun, 06 Nov 19x4 08:49:37 GMT",
  "Sun, 06 Nov 1994 08:49:37",
  "Xyz, 06 Nov 1994 08:49:37 GMT",
  "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT", // two values joined
  "Sun, 06-Nov-94 08:49:37 GMT",        // RFC 850 needs the full day name
  "Sundae, 06-Nov-94 08:49:37 GMT",
  "Sund, 06-Nov-94 08:49:37 GMT",
  "Sunday, 06 Nov 1994 08:49:37 GMT",
  "Sunday, 06-Nov-94 08:49:37 UTC",
  "Sunday, 31-Feb-94 08:49:37 GMT",
  "Sun Nov 6 08:49:37 1994",            // asctime pads with a space
  "Sun Nov  6 08:49:37 94",
  "Sun Nov x6 08:49:37 1994",
  "Sun Nov  x 08:49:37 1994",
  "Sun Nov  0 08:49:37 1994",
  "Sun Nov 31 08:49:37 1994",
  "Sun Nov  6 08:49:37 1994 GMT",
  "1994-11-06T08:49:37Z",
  "784111777",
];

test("parseHttpDate: invalid values give -1", () => {
  for (const s of invalidDates) assert.is(parse(s), -1, JSON.stringify(s));
  assert.is(x.parseHttpDate(IN, 0), -1);
  assert.is(x.parseHttpDate(IN, -5), -1);
});

// ---- ETags ----------------------------------------------------------------------

function etagOf(ms, size) {
  const n = x.formatEtag(ms, size, OUT);
  return c.str(OUT, n);
}

test("formatEtag: nginx style, hex seconds and hex size", () => {
  assert.is(etagOf(RFC_MS, 1234), `"2ebc98a1-4d2"`);
  assert.is(etagOf(RFC_MS + 999, 0), `"2ebc98a1-0"`);
  assert.is(etagOf(0, 0), `"0-0"`);
  assert.is(etagOf(1700000000123, 2 ** 40), `"6553f100-10000000000"`);
  assert.is(etagOf(-1000, 1), `"ffffffffffffffff-1"`);
  let seed = 3;
  const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  for (let i = 0; i < 1000; i++) {
    const ms = Math.floor(rand() * 4e12);
    const size = Math.floor(rand() * 2 ** 45);
    assert.is(etagOf(ms, size), `"${Math.floor(ms / 1000).toString(16)}-${size.toString(16)}"`);
  }
});

function listMatches(list, etag, weak) {
  const n = c.put(IN, list);
  const m = c.put(IN2, etag);
  return x.etagListMatches(IN, n, IN2, m, weak) !== 0;
}

const etagListCases = [
  // [list, our etag, weak result (If-None-Match), strong result (If-Match)]
  [`"abc"`, `"abc"`, true, true],
  [`W/"abc"`, `"abc"`, true, false],
  [`"abc"`, `W/"abc"`, true, false],
  [`W/"abc"`, `W/"abc"`, true, false],
  [`"abd"`, `"abc"`, false, false],
  [`"ABC"`, `"abc"`, false, false],
  [`""`, `"abc"`, false, false],
  [`""`, `""`, true, true],
  [`*`, `"abc"`, true, true],
  [`  *\t`, `"abc"`, true, true],
  [`"x", "abc"`, `"abc"`, true, true],
  [`"x","abc"`, `"abc"`, true, true],
  [`"x" ,\t"abc"`, `"abc"`, true, true],
  [`"abc", "x"`, `"abc"`, true, true],
  [`, "x",, "abc" ,`, `"abc"`, true, true],   // empty list elements are allowed
  [`W/"x", W/"abc"`, `"abc"`, true, false],
  [`"x", "y"`, `"abc"`, false, false],
  [` "abc" `, `"abc"`, true, true],
  // malformed lists never match, even when a tag in them would
  [`"x" "abc"`, `"abc"`, false, false],
  [`"abc" "x"`, `"abc"`, false, false],
  [`"abc", *`, `"abc"`, false, false],
  [`*, "abc"`, `"abc"`, false, false],
  [`**`, `"abc"`, false, false],
  [`abc`, `"abc"`, false, false],
  [`"abc`, `"abc"`, false, false],
  [`"abc", "x`, `"abc"`, false, false],
  [`w/"abc"`, `"abc"`, false, false],
  [`W "abc"`, `"abc"`, false, false],
  [`"a bc"`, `"a bc"`, false, false],       // SP is not an etagc
  [`"abc";q=1`, `"abc"`, false, false],
  [`,`, `"abc"`, false, false],
  [``, `"abc"`, false, false],
  // our own ETag must be well formed to match a tag (not `*`)
  [`"abc"`, `abc`, false, false],
  [`*`, ``, true, true],
];

test("etagListMatches: weak and strong comparison", () => {
  for (const [list, etag, weak, strong] of etagListCases) {
    assert.is(listMatches(list, etag, true), weak, `weak ${list} vs ${etag}`);
    assert.is(listMatches(list, etag, false), strong, `strong ${list} vs ${etag}`);
  }
});

// ---- preconditions --------------------------------------------------------------

const GET = 1, HEAD = 2, POST = 3, PUT = 4;
const MTIME = Date.UTC(2024, 0, 15, 12, 0, 0) + 500;   // the 500 ms never count
const LM = "Mon, 15 Jan 2024 12:00:00 GMT";           // its Last-Modified
const EARLIER = "Mon, 15 Jan 2024 11:59:59 GMT";
const LATER = "Mon, 15 Jan 2024 12:00:01 GMT";
const ETAG = `"65a51e40-64"`;

/** h: { inm, ims, im, ius } header values; absent ones are left out. */
function evaluate(method, h, etag = ETAG, mtime = MTIME) {
  const at = (i, s) => (s === undefined ? [0, 0] : [IN3 + i * SLOT, c.put(IN3 + i * SLOT, s)]);
  const [inm, inmLen] = at(0, h.inm);
  const [ims, imsLen] = at(1, h.ims);
  const [im, imLen] = at(2, h.im);
  const [ius, iusLen] = at(3, h.ius);
  const [e, eLen] = at(4, etag);
  return x.evaluatePreconditions(method, inm, inmLen, ims, imsLen, im, imLen, ius, iusLen, e, eLen, mtime);
}

const preconditionCases = [
  // [name, method, headers, expected]
  ["no conditions", GET, {}, 0],
  ["INM match -> 304", GET, { inm: ETAG }, 304],
  ["INM match on HEAD -> 304", HEAD, { inm: ETAG }, 304],
  ["INM weak match -> 304", GET, { inm: `W/${ETAG}` }, 304],
  ["INM * -> 304", GET, { inm: "*" }, 304],
  ["INM no match -> 200", GET, { inm: `"other"` }, 0],
  ["INM match on POST -> 412", POST, { inm: ETAG }, 412],
  ["INM * on PUT -> 412", PUT, { inm: "*" }, 412],
  ["INM malformed -> 200", GET, { inm: `${ETAG} "x"` }, 0],
  ["IMS equal -> 304", GET, { ims: LM }, 304],
  ["IMS later -> 304", GET, { ims: LATER }, 304],
  ["IMS earlier -> 200", GET, { ims: EARLIER }, 0],
  ["IMS in RFC 850 form", GET, { ims: "Monday, 15-Jan-24 12:00:00 GMT" }, 304],
  ["IMS in asctime form", GET, { ims: "Mon Jan 15 12:00:00 2024" }, 304],
  ["IMS invalid date ignored", GET, { ims: "yesterday" }, 0],
  ["IMS impossible date ignored", GET, { ims: "Fri, 30 Feb 2024 12:00:00 GMT" }, 0],
  ["IMS ignored for POST", POST, { ims: LATER }, 0],
  ["IMS ignored when INM present (no match)", GET, { inm: `"other"`, ims: LATER }, 0],
  ["IMS ignored when INM present (match)", GET, { inm: ETAG, ims: EARLIER }, 304],
  ["IM match -> 200", GET, { im: ETAG }, 0],
  ["IM in a list -> 200", GET, { im: `"x", ${ETAG}` }, 0],
  ["IM * -> 200", PUT, { im: "*" }, 0],
  ["IM no match -> 412", GET, { im: `"other"` }, 412],
  ["IM weak tag never matches -> 412", GET, { im: `W/${ETAG}` }, 412],
  ["IM malformed -> 412", GET, { im: "junk" }, 412],
  ["IM failing beats INM", GET, { im: `"other"`, inm: ETAG }, 412],
  ["IM failing beats IMS", GET, { im: `"other"`, ims: LATER }, 412],
  ["IM match, then INM match -> 304", GET, { im: ETAG, inm: ETAG }, 304],
  ["IUS earlier -> 412", GET, { ius: EARLIER }, 412],
  ["IUS equal -> 200", GET, { ius: LM }, 0],
  ["IUS later -> 200", PUT, { ius: LATER }, 0],
  ["IUS invalid date ignored", GET, { ius: "not a date" }, 0],
  ["IUS ignored when IM present", GET, { im: ETAG, ius: EARLIER }, 0],
  ["IUS failing beats INM", GET, { ius: EARLIER, inm: ETAG }, 412],
  ["IUS passing, then IMS -> 304", GET, { ius: LATER, ims: LM }, 304],
  ["IUS passing, then INM on POST -> 412", POST, { ius: LM, inm: "*" }, 412],
];

test("evaluatePreconditions: RFC 9110 §13.2.2 order", () => {
  for (const [name, method, headers, want] of preconditionCases) {
    assert.is(evaluate(method, headers), want, name);
  }
  // a file modified within the IMS second is not "modified since"
  assert.is(evaluate(GET, { ims: LM }, ETAG, Date.UTC(2024, 0, 15, 12, 0, 0, 999)), 304);
  assert.is(evaluate(GET, { ims: LM }, ETAG, Date.UTC(2024, 0, 15, 12, 0, 1)), 0);
});

// ---- ranges ---------------------------------------------------------------------

const RANGE_NONE = k("RANGE_NONE");
const RANGE_OK = k("RANGE_OK");
const RANGE_UNSATISFIABLE = k("RANGE_UNSATISFIABLE");

// One range: [start, end]; several: [[start, end], ...] in the order served.
function range(value, size) {
  const r = x.parseRange(IN, c.put(IN, value), size);
  if (r !== RANGE_OK) return r;
  const n = x.rangeCount();
  if (n === 1) return [x.rangeStart(), x.rangeEnd()];
  return Array.from({ length: n }, (_, i) => [x.rangeStartAt(i), x.rangeEndAt(i)]);
}

const rangeCases = [
  // [header value, size, expected: [start, end] or RANGE_*]
  ["bytes=0-99", 1000, [0, 99]],
  ["bytes=100-", 1000, [100, 999]],
  ["bytes=-50", 1000, [950, 999]],
  ["bytes=-1000", 1000, [0, 999]],
  ["bytes=-5000", 1000, [0, 999]],
  ["bytes=0-0", 1000, [0, 0]],
  ["bytes=999-", 1000, [999, 999]],
  ["bytes=999-999", 1000, [999, 999]],
  ["bytes=0-5000", 1000, [0, 999]],
  ["bytes=500-999999999999999999999999", 1000, [500, 999]],
  ["bytes=007-010", 1000, [7, 10]],
  ["Bytes=0-1", 1000, [0, 1]],                  // units are case-insensitive
  ["BYTES=0-1", 1000, [0, 1]],
  ["bytes=0-99 ", 1000, [0, 99]],
  [" bytes=0-99", 1000, [0, 99]],
  ["bytes= 0-99", 1000, [0, 99]],
  ["bytes=0-99,", 1000, [0, 99]],                // empty list elements
  ["bytes=, 0-99", 1000, [0, 99]],
  ["bytes=0-", 2 ** 40, [0, 2 ** 40 - 1]],
  // unsatisfiable -> 416
  ["bytes=-0", 1000, RANGE_UNSATISFIABLE],
  ["bytes=1000-", 1000, RANGE_UNSATISFIABLE],
  ["bytes=1000-2000", 1000, RANGE_UNSATISFIABLE],
  ["bytes=99999999999999999999999-", 1000, RANGE_UNSATISFIABLE],
  ["bytes=0-", 0, RANGE_UNSATISFIABLE],
  ["bytes=0-0", 0, RANGE_UNSATISFIABLE],
  // ignored -> 200 with the whole file
  ["bytes=-5", 0, RANGE_NONE],                   // names no byte of an empty file
  ["bytes=5-2", 1000, RANGE_NONE],               // last < first: invalid
  ["bytes=0-1,5-2", 1000, RANGE_NONE],           // one invalid spec voids the set
  ["bytes=0-1,x", 1000, RANGE_NONE],
  ["bytes=0-1,,5-", 1000, [[0, 1], [5, 999]]],    // empty elements between specs
  ["items=0-1", 1000, RANGE_NONE],
  ["bytes 0-1", 1000, RANGE_NONE],
  ["bytes:0-1", 1000, RANGE_NONE],
  ["bytes", 1000, RANGE_NONE],
  ["bytes=", 1000, RANGE_NONE],
  ["bytes=,", 1000, RANGE_NONE],
  ["bytes=-", 1000, RANGE_NONE],
  ["bytes=--1", 1000, RANGE_NONE],
  ["bytes=1", 1000, RANGE_NONE],
  ["bytes=a-b", 1000, RANGE_NONE],
  ["bytes=1-2-3", 1000, RANGE_NONE],
  ["bytes=0 - 99", 1000, RANGE_NONE],
  ["bytes=0-99 100", 1000, RANGE_NONE],
  ["bytes=+1-2", 1000, RANGE_NONE],
  ["bytes=0x10-20", 1000, RANGE_NONE],
  ["bytes=1.5-2", 1000, RANGE_NONE],
  ["bytes=0-1;x", 1000, RANGE_NONE],
  ["", 1000, RANGE_NONE],
];

// Several ranges: unsatisfiable ones dropped, sorted, overlapping or
// adjacent ones coalesced (RFC 9110 §14.2 lets a server do each).
const multiCases = [
  ["bytes=0-1,5-6", 1000, [[0, 1], [5, 6]]],
  ["bytes=0-1, 5-6", 1000, [[0, 1], [5, 6]]],
  ["bytes=5-6,0-1", 1000, [[0, 1], [5, 6]]],      // served in ascending order
  ["bytes=0-1,0-1", 1000, [0, 1]],                // duplicates: one part, a plain 206
  ["bytes=-1,-2", 1000, [998, 999]],              // suffixes: the longer covers the shorter
  ["bytes=0-4,5-9", 1000, [0, 9]],                // adjacent
  ["bytes=0-5,3-9", 1000, [0, 9]],                // overlapping
  ["bytes=3-9,0-5", 1000, [0, 9]],
  ["bytes=0-4,6-9", 1000, [[0, 4], [6, 9]]],      // a one-byte gap stays a gap
  ["bytes=10-20,0-100", 1000, [0, 100]],          // contained
  ["bytes=0-0,-1,500-600,550-", 1000, [[0, 0], [500, 999]]],
  ["bytes=-500,0-600", 1000, [0, 999]],
  ["bytes=0-0,2000-3000", 1000, [0, 0]],          // the unsatisfiable one is dropped
  ["bytes=2000-,5-6,-0,0-1", 1000, [[0, 1], [5, 6]]],
  ["bytes=990-5000,0-1", 1000, [[0, 1], [990, 999]]], // clamped to the file
  ["bytes=1000-,2000-", 1000, RANGE_UNSATISFIABLE],
  ["bytes=-0,1000-", 1000, RANGE_UNSATISFIABLE],
  ["bytes=0-,1-", 0, RANGE_UNSATISFIABLE],
  ["bytes=0-,-5", 0, RANGE_NONE],                 // a suffix of an empty file: the (empty) whole
];

const disjoint = (n, from = 0) => Array.from({ length: n }, (_, i) => `${from + 2 * i}-${from + 2 * i}`).join(",");

test("parseRange: several ranges are resolved, sorted and coalesced", () => {
  for (const [value, size, want] of multiCases) {
    assert.equal(range(value, size), want, `${JSON.stringify(value)} size ${size}`);
  }
  const parts = k("RANGE_PARTS_MAX"), specs = k("RANGE_SPECS_MAX");
  assert.is(parts, 16);
  assert.is(specs, 200);
  // up to RANGE_PARTS_MAX parts after coalescing; one more: the whole file
  assert.equal(range(`bytes=${disjoint(parts)}`, 1000), Array.from({ length: parts }, (_, i) => [2 * i, 2 * i]));
  assert.is(range(`bytes=${disjoint(parts + 1)}`, 1000), RANGE_NONE);
  // the limit counts parts after coalescing: 40 specs that merge into 2 are fine
  assert.equal(range(`bytes=${disjoint(20)},${disjoint(20)},0-38,500-`, 1000), [[0, 38], [500, 999]]);
  assert.equal(range(`bytes=${disjoint(parts + 1)},0-`, 1000), [0, 999]);
  // RANGE_SPECS_MAX specs are looked at, however they end; more: the whole file
  const same = (n) => Array.from({ length: n }, () => "0-0").join(",");
  assert.equal(range(`bytes=${same(specs)}`, 1000), [0, 0]);
  assert.is(range(`bytes=${same(specs + 1)}`, 1000), RANGE_NONE);
  // a fresh parse forgets the previous one
  assert.equal(range("bytes=0-1,5-6", 1000), [[0, 1], [5, 6]]);
  assert.is(range("bytes=5-", 3), RANGE_UNSATISFIABLE);
  assert.equal(range("bytes=1-1", 3), [1, 1]);
});

test("parseRange: single byte ranges", () => {
  assert.is(RANGE_NONE, 0);
  assert.is(RANGE_OK, 1);
  assert.is(RANGE_UNSATISFIABLE, 2);
  for (const [value, size, want] of rangeCases) {
    assert.equal(range(value, size), want, `${JSON.stringify(value)} size ${size}`);
  }
});

function ifRange(value, etag = ETAG, mtime = MTIME) {
  const n = c.put(IN, value);
  const m = c.put(IN2, etag);
  return x.ifRangeAllows(IN, n, IN2, m, mtime) !== 0;
}

const ifRangeCases = [
  ["", true],                                     // absent: nothing to check
  [ETAG, true],
  [` ${ETAG} `, true],
  [`W/${ETAG}`, false],                            // If-Range needs a strong match
  [`"other"`, false],
  [`${ETAG}, "other"`, false],                     // one validator, not a list
  [`"65a51e40-64`, false],
  [LM, true],
  ["Monday, 15-Jan-24 12:00:00 GMT", true],
  ["Mon Jan 15 12:00:00 2024", true],
  [EARLIER, false],                                // only an exact date matches
  [LATER, false],
  ["yesterday", false],
  ["Wed, 31 Feb 2024 12:00:00 GMT", false],
];

test("ifRangeAllows: strong ETag or exact Last-Modified", () => {
  for (const [value, want] of ifRangeCases) assert.is(ifRange(value), want, JSON.stringify(value));
  assert.is(ifRange(`W/"a"`, `W/"a"`), false);     // a weak ETag of ours never qualifies
  assert.is(ifRange(ETAG, ""), false);
  // dates on a Wednesday start with W, like a weak tag
  const wednesday = Date.UTC(2024, 0, 17, 12, 0, 0);
  assert.is(ifRange("Wed, 17 Jan 2024 12:00:00 GMT", ETAG, wednesday), true);
  assert.is(ifRange("Wednesday, 17-Jan-24 12:00:00 GMT", ETAG, wednesday), true);
  assert.is(ifRange("Wed Jan 17 12:00:00 2024", ETAG, wednesday), true);
  assert.is(ifRange("W/", ETAG, wednesday), false);
  assert.is(ifRange("W", ETAG, wednesday), false);
});

// ---- no allocation --------------------------------------------------------------

test("no call grows memory", () => {
  const before = x.memory.buffer.byteLength;
  for (let i = 0; i < 20000; i++) {
    normalize("/a/%2e%2e/b/./c%20d.html?x=1");
    format(i * 1e9);
    parse("Sunday, 06-Nov-94 08:49:37 GMT");
    evaluate(GET, { inm: `"x", ${ETAG}`, ims: LM });
    range("bytes=0-99", 1000);
    range("bytes=500-,0-9,5-20", 1000);
  }
  assert.is(x.memory.buffer.byteLength, before);
});

test.run();
