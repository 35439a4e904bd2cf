// Request-head parser and chunked decoder (assembly/http/parser.ts), driven
// through the wasm exports. Every case writes junk ("\r\n\r\n...") into the
// 16 padding bytes after the data, so a scanner that acts on bytes past
// `len` would be caught.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";

const c = loadCore();
const x = c.x;
if (x._start) x._start(); // runs top-level init once (the arena); guarded against reruns
const K = (name) => x[name].value;

let base = x.arena ? x.arena() : 0;
if (!base) base = x.memory.grow(17) * 65536; // parser compiled alone: no arena
const REQ = base;
const ST = base + 256;
const BUF = base + 1024;
const PAD = Buffer.from("\r\n\r\n".repeat(4), "latin1");

const LIMITS = { maxLine: 8192, maxHeader: 8192, maxHeaders: 100 };

function write(bytes, len = bytes.length) {
  c.put(BUF, bytes.subarray(0, len));
  c.put(BUF + len, PAD);
}

function span(off, len) {
  const o = c.dv().getInt32(REQ + K(off), true);
  const l = c.dv().getInt32(REQ + K(len), true);
  return o === 0 ? null : c.str(BUF + o, l);
}

// Everything the record says, as plain values (for deep comparisons).
function fields() {
  const dv = c.dv();
  const i32 = (name) => dv.getInt32(REQ + K(name), true);
  const flags = i32("REQ_FLAGS");
  return {
    method: i32("REQ_METHOD"),
    version: i32("REQ_VERSION"),
    target: span("REQ_TARGET_OFF", "REQ_TARGET_LEN"),
    host: span("REQ_HOST_OFF", "REQ_HOST_LEN"),
    ifNoneMatch: span("REQ_IF_NONE_MATCH_OFF", "REQ_IF_NONE_MATCH_LEN"),
    ifModifiedSince: span("REQ_IF_MODIFIED_SINCE_OFF", "REQ_IF_MODIFIED_SINCE_LEN"),
    ifMatch: span("REQ_IF_MATCH_OFF", "REQ_IF_MATCH_LEN"),
    ifUnmodifiedSince: span("REQ_IF_UNMODIFIED_SINCE_OFF", "REQ_IF_UNMODIFIED_SINCE_LEN"),
    range: span("REQ_RANGE_OFF", "REQ_RANGE_LEN"),
    ifRange: span("REQ_IF_RANGE_OFF", "REQ_IF_RANGE_LEN"),
    flags,
    contentLength: flags & K("RF_HAS_CONTENT_LENGTH") ? dv.getFloat64(REQ + K("REQ_CONTENT_LENGTH"), true) : null,
    headerCount: i32("REQ_HEADER_COUNT"),
    headerEnd: i32("REQ_HEADER_END"),
  };
}

const bytesOf = (s) => (typeof s === "string" ? Buffer.from(s, "latin1") : s);

function call(len, lim = LIMITS) {
  return x.parseRequest(BUF, len, REQ, lim.maxLine, lim.maxHeader, lim.maxHeaders);
}

/** Parse in one piece; returns { ret, ...fields } (fields only when complete). */
function parse(s, lim = LIMITS) {
  const b = bytesOf(s);
  x.resetRequest(REQ);
  write(b);
  const ret = call(b.length, lim);
  return ret > 0 ? { ret, ...fields() } : { ret };
}

/** Feed the bytes in pieces ending at `cuts`, as a connection would. */
function parsePieces(s, cuts, lim = LIMITS) {
  const b = bytesOf(s);
  x.resetRequest(REQ);
  for (const end of [...cuts, b.length]) {
    write(b, end);
    const ret = call(end, lim);
    if (ret !== 0) return ret > 0 ? { ret, ...fields() } : { ret };
  }
  return { ret: 0 };
}

const SAMPLE =
  "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\nAccept: */*\r\n" +
  'If-None-Match: "abc"\r\nRange: bytes=0-99\r\nConnection: close\r\n\r\n';

// picohttpparser's bench.c request
const BENCH =
  "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n" +
  "Host: www.kittyhell.com\r\n" +
  "User-Agent: Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; ja-JP-mac; rv:1.9.2.3) Gecko/20100401 Firefox/3.6.3 Pathtraq/0.9\r\n" +
  "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
  "Accept-Language: ja,en-us;q=0.7,en;q=0.3\r\n" +
  "Accept-Encoding: gzip,deflate\r\n" +
  "Accept-Charset: Shift_JIS,utf-8;q=0.7,*;q=0.7\r\n" +
  "Keep-Alive: 115\r\n" +
  "Connection: keep-alive\r\n" +
  "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=xxxxxxxxxx; __utma=xxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.x; " +
  "__utmz=xxxxxxxxx.xxxxxxxxxx.x.x.utmccn=(referral)|utmcsr=reader.livedoor.com|utmcct=/reader/|utmcmd=referral\r\n" +
  "\r\n";

const req = (head, ...lines) => head + "\r\n" + lines.map((l) => l + "\r\n").join("") + "\r\n";
const get11 = (...lines) => req("GET / HTTP/1.1", "Host: a", ...lines);

// Deterministic PRNG (xorshift32) so failures reproduce.
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

// ---- the sample request ----------------------------------------------------

test("sample request: every field", () => {
  const r = parse(SAMPLE);
  assert.is(r.ret, SAMPLE.length);
  assert.equal(r, {
    ret: SAMPLE.length,
    method: K("METHOD_GET"),
    version: 11,
    target: "/index.html",
    host: "example.com",
    ifNoneMatch: '"abc"',
    ifModifiedSince: null,
    ifMatch: null,
    ifUnmodifiedSince: null,
    range: "bytes=0-99",
    ifRange: null,
    flags: K("RF_HAS_HOST") | K("RF_CONN_CLOSE"),
    contentLength: null,
    headerCount: 6,
    headerEnd: SAMPLE.length,
  });
});

test("sample request: split at every byte gives the same result", () => {
  const whole = parse(SAMPLE);
  for (let k = 0; k <= SAMPLE.length; k++) {
    assert.equal(parsePieces(SAMPLE, [k]), whole, `split at ${k}`);
  }
});

test("sample request: one byte at a time; REQ_SCANNED follows the data", () => {
  const { ret, ...want } = parse(SAMPLE);
  const b = bytesOf(SAMPLE);
  x.resetRequest(REQ);
  for (let n = 1; n < b.length; n++) {
    write(b, n);
    assert.is(call(n), 0, `at ${n}`);
    assert.is(c.dv().getInt32(REQ + K("REQ_SCANNED"), true), n);
  }
  write(b);
  assert.is(call(b.length), ret);
  assert.equal(fields(), want);
});

test("resume does not rescan: a bare LF planted in already-scanned bytes goes unseen by phase 1", () => {
  const b = Buffer.from(bytesOf(SAMPLE));
  const cut = SAMPLE.indexOf("Range");
  x.resetRequest(REQ);
  write(b, cut);
  assert.is(call(cut), 0);
  // Rewrite "example.com" -> "exa\nple.com" behind the scan point. A parser
  // that rescanned from 0 would now reject it as a bare LF.
  b[SAMPLE.indexOf("example") + 3] = 0x0a;
  write(b, cut + 3);
  assert.is(call(cut + 3), 0);
  assert.is(c.dv().getInt32(REQ + K("REQ_SCANNED"), true), cut + 3);
  // Once complete, phase 2 still sees it: LF is a control byte in a value.
  write(b);
  assert.is(call(b.length), -400);
});

test("CRLFCRLF straddling two reads is found", () => {
  const s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (const back of [1, 2, 3]) {
    assert.is(parsePieces(s, [s.length - back]).ret, s.length);
    write(bytesOf(s));
    assert.is(x.scanHeaderEndSimd(BUF, s.length - back, s.length), s.length);
    assert.is(x.scanHeaderEndScalar(BUF, s.length - back, s.length), s.length);
  }
});

test("complete result is sticky until resetRequest", () => {
  const r = parse(SAMPLE);
  assert.is(call(SAMPLE.length + 5), r.ret);
});

test("pipelined bytes after the head are left alone", () => {
  const two = SAMPLE + "GET /b HTTP/1.1\r\nHost: b\r\n\r\n";
  const r = parse(two);
  assert.is(r.ret, SAMPLE.length);
  assert.is(r.target, "/index.html");
});

// ---- SIMD vs scalar ----------------------------------------------------------

function refScan(b, from, len) {
  for (let i = Math.max(from, 3); i < len; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i + 1;
  }
  return -1;
}

test("scanHeaderEnd: SIMD and scalar agree with a reference on random buffers", () => {
  const rand = rng(12345);
  const pick = () => {
    const r = rand();
    return r < 0.35 ? 13 : r < 0.7 ? 10 : r < 0.8 ? 0x20 : Math.floor(rand() * 256);
  };
  for (let n = 0; n < 4000; n++) {
    const len = Math.floor(rand() * 96);
    const align = n % 16;
    const b = Buffer.alloc(len + 16);
    for (let i = 0; i < b.length; i++) b[i] = pick(); // junk past len, too
    const from = Math.floor(rand() * (len + 1));
    c.put(BUF + align, b);
    const want = refScan(b, from, len);
    assert.is(x.scanHeaderEndSimd(BUF + align, from, len), want, `simd n=${n}`);
    assert.is(x.scanHeaderEndScalar(BUF + align, from, len), want, `scalar n=${n}`);
  }
});

test("parseRequest: SIMD and scalar paths agree on mutated requests, at every alignment", () => {
  const rand = rng(777);
  const alphabet = [13, 10, 9, 0x20, 0x3a, 0x2c, 0x7f, 0x00, 0x80, 0x41, 0x61, 0x30];
  const bases = [SAMPLE, BENCH, get11("Content-Length: 12", "Transfer-Encoding: chunked")];
  const run = (b, at) => {
    x.resetRequest(REQ);
    c.put(BUF + at, b);
    c.put(BUF + at + b.length, PAD);
    const ret = x.parseRequest(BUF + at, b.length, REQ, 8192, 8192, 100);
    return ret > 0 ? [ret, c.get(REQ, 128).toString("hex")] : [ret];
  };
  try {
    for (let n = 0; n < 3000; n++) {
      const b = Buffer.from(bases[n % bases.length], "latin1");
      const edits = 1 + Math.floor(rand() * 3);
      for (let e = 0; e < edits; e++) b[Math.floor(rand() * b.length)] = alphabet[Math.floor(rand() * alphabet.length)];
      const at = n % 16;
      x.parserSetSimd(true);
      const a = run(b, at);
      x.parserSetSimd(false);
      const s = run(b, at);
      assert.equal(a, s, `n=${n} ${JSON.stringify(b.toString("latin1"))}`);
    }
  } finally {
    x.parserSetSimd(true);
  }
});

// ---- fields ------------------------------------------------------------------

test("header values are trimmed of OWS; empty values are present with length 0", () => {
  const r = parse(get11("If-None-Match: \t \"x\" , W/\"y\"  \t", "If-Match:", "Range:    ", "X-Tab: a\tb"));
  assert.is(r.ret > 0, true);
  assert.is(r.ifNoneMatch, '"x" , W/"y"');
  assert.is(r.ifMatch, "");
  assert.is(r.range, "");
  assert.is(r.ifRange, null);
});

test("header names match case-insensitively", () => {
  const r = parse(req("POST /u HTTP/1.1",
    "hOsT: h", "CONTENT-LENGTH: 42", "if-none-MATCH: a", "If-Modified-SINCE: b", "IF-MATCH: c",
    "if-unmodified-since: d", "RANGE: e", "If-Range: f", "EXPECT: 100-Continue", "CONNECTION: Keep-Alive"));
  assert.is(r.ret > 0, true);
  assert.is(r.method, K("METHOD_POST"));
  assert.is(r.host, "h");
  assert.is(r.contentLength, 42);
  assert.equal([r.ifNoneMatch, r.ifModifiedSince, r.ifMatch, r.ifUnmodifiedSince, r.range, r.ifRange], ["a", "b", "c", "d", "e", "f"]);
  const want = K("RF_HAS_HOST") | K("RF_HAS_CONTENT_LENGTH") | K("RF_EXPECT_CONTINUE") | K("RF_CONN_KEEPALIVE");
  assert.is(r.flags, want);
  assert.is(r.headerCount, 10);
});

test("names that only resemble known ones are ignored", () => {
  const r = parse(get11("Hosts: b", "Content-Lengths: x", "X-Range: y", "If-Matcher: z", "Connectio: close"));
  assert.is(r.ret > 0, true);
  assert.is(r.host, "a");
  assert.is(r.flags, K("RF_HAS_HOST"));
  assert.is(r.range, null);
});

test("Connection: token lists, several headers, unknown tokens ignored", () => {
  const r = parse(get11("Connection: Upgrade ,  CLOSE", "connection: te,keep-alive ,", "Connection: closed, keep-alive-ish"));
  assert.is(r.flags & (K("RF_CONN_CLOSE") | K("RF_CONN_KEEPALIVE")), K("RF_CONN_CLOSE") | K("RF_CONN_KEEPALIVE"));
  const u = parse(get11("Connection: upgrade, closed"));
  assert.is(u.flags & (K("RF_CONN_CLOSE") | K("RF_CONN_KEEPALIVE")), 0);
});

test("Expect: 100-continue and other expectations; lists and repeated lines accumulate", () => {
  const CONT = K("RF_EXPECT_CONTINUE"), OTHER = K("RF_EXPECT_OTHER");
  const cases = [
    [["Expect: 100-continue"], CONT],
    [["expect: 100-CONTINUE"], CONT],
    [["Expect: \t 100-continue  "], CONT],
    [["Expect: 100-continue", "Expect: 100-continue"], CONT],
    [["Expect: 100-continue,"], CONT],
    [["Expect: , 100-continue ,,"], CONT],
    [["Expect:"], 0],                                   // an empty list expects nothing
    [["Expect:  , ,"], 0],
    [["Expect: foo"], OTHER],
    [["Expect: 100-continue, foo"], CONT | OTHER],
    [["Expect: 100-continue", "Expect: bar=1"], CONT | OTHER],
    [["Expect: 100-continue;x=1"], OTHER],              // 100-continue takes no parameters
    [["Expect: 100-continue=1"], OTHER],
    [["Expect: 100-continuee"], OTHER],
    [["Expect: 100-contin"], OTHER],
    [["Expect: 100 continue"], OTHER],
    [["Expect: 200-continue"], OTHER],
    [["Expects: foo", "X-Expect: foo", "Expec: foo"], 0], // names that only resemble it
  ];
  for (const [lines, want] of cases) {
    const r = parse(get11(...lines));
    assert.ok(r.ret > 0, JSON.stringify(lines));
    assert.is(r.flags & (CONT | OTHER), want, JSON.stringify(lines));
  }
  assert.is(CONT & OTHER, 0);
  // every split gives the same flags
  const whole = get11("Expect: 100-continue, x");
  for (let at = 1; at < whole.length; at++) {
    assert.is(parsePieces(whole, [at]).flags & (CONT | OTHER), CONT | OTHER, `split at ${at}`);
  }
});

test("HTTP/1.0: keep-alive, no Host needed", () => {
  const r = parse(req("HEAD /x HTTP/1.0", "Connection: Keep-Alive"));
  assert.is(r.ret > 0, true);
  assert.is(r.version, 10);
  assert.is(r.method, K("METHOD_HEAD"));
  assert.is(r.flags, K("RF_CONN_KEEPALIVE"));
  assert.is(r.host, null);
});

test("every method", () => {
  const names = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"];
  for (const m of names) {
    const r = parse(req(`${m} / HTTP/1.1`, "Host: a"));
    assert.is(r.method, K(`METHOD_${m}`), m);
  }
  assert.is(parse(req("OPTIONS * HTTP/1.1", "Host: a")).target, "*");
  assert.is(parse(req("CONNECT a.example:443 HTTP/1.1", "Host: a.example:443")).target, "a.example:443");
});

test("Content-Length: repeated identical values, lists, leading zeros, 2^53", () => {
  assert.is(parse(get11("Content-Length: 5", "Content-Length: 5")).contentLength, 5);
  assert.is(parse(get11("Content-Length: 5, 5,5")).contentLength, 5);
  assert.is(parse(get11("Content-Length: 007", "content-length: 7")).contentLength, 7);
  assert.is(parse(get11("Content-Length: 0")).contentLength, 0);
  assert.is(parse(get11("Content-Length: 9007199254740992")).contentLength, 2 ** 53);
});

test("Transfer-Encoding: chunked sets RF_CHUNKED (any case, empty elements skipped)", () => {
  assert.is(parse(get11("Transfer-Encoding: chunked")).flags & K("RF_CHUNKED"), K("RF_CHUNKED"));
  assert.is(parse(get11("transfer-encoding: , CHUNKED ,")).flags & K("RF_CHUNKED"), K("RF_CHUNKED"));
});

test("version: HTTP/1.2..1.9 are treated as 1.1", () => {
  assert.is(parse(req("GET / HTTP/1.2", "Host: a")).version, 11);
  assert.is(parse(req("GET / HTTP/1.9", "Host: a")).version, 11);
  assert.is(parse(req("GET / HTTP/1.9")).ret, -400); // still needs Host
});

test("one leading empty line is ignored (RFC 9112 2.2), two are not", () => {
  const r = parse("\r\n" + SAMPLE);
  assert.is(r.ret, SAMPLE.length + 2);
  assert.is(r.target, "/index.html");
  for (let k = 0; k <= 6; k++) assert.is(parsePieces("\r\n" + SAMPLE, [k]).ret, SAMPLE.length + 2);
  assert.is(parse("\r\n\r\n" + SAMPLE).ret, -400);
});

test("obs-text in values is allowed; Host value alphabet", () => {
  assert.is(parse(get11("X: caf\xe9")).ret > 0, true);
  assert.is(parse(req("GET / HTTP/1.1", "Host: [::1]:8080")).host, "[::1]:8080");
  assert.is(parse(req("GET / HTTP/1.1", "Host:")).host, "");
  assert.is(parse(req("GET / HTTP/1.1", "Host: a b")).ret, -400);
  assert.is(parse(req("GET / HTTP/1.1", "Host: a/b")).ret, -400);
  assert.is(parse(req("GET / HTTP/1.1", "Host: a@b")).ret, -400);
});

test("the picohttpparser benchmark request", () => {
  assert.ok(Math.abs(BENCH.length - 703) < 10, `length ${BENCH.length}`);
  const r = parse(BENCH);
  assert.is(r.ret, BENCH.length);
  assert.is(r.method, K("METHOD_GET"));
  assert.is(r.target, "/wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg");
  assert.is(r.host, "www.kittyhell.com");
  assert.is(r.flags, K("RF_HAS_HOST") | K("RF_CONN_KEEPALIVE"));
  assert.is(r.headerCount, 9);
  for (let k = 0; k <= BENCH.length; k += 7) assert.equal(parsePieces(BENCH, [k]), r, `split ${k}`);
});

test("no memory growth on the hot path", () => {
  const before = x.memory.buffer.byteLength;
  for (let i = 0; i < 2000; i++) parse(BENCH);
  assert.is(x.memory.buffer.byteLength, before);
});

// ---- golden error cases ------------------------------------------------------

const GOLDEN = [
  // smuggling vectors
  ["CL + TE", -400, get11("Content-Length: 5", "Transfer-Encoding: chunked")],
  ["TE + CL", -400, get11("Transfer-Encoding: chunked", "Content-Length: 5")],
  ["duplicate CL, differing", -400, get11("Content-Length: 5", "Content-Length: 6")],
  ["CL list, differing", -400, get11("Content-Length: 5, 6")],
  ["CL not digits (+)", -400, get11("Content-Length: +5")],
  ["CL not digits (-)", -400, get11("Content-Length: -1")],
  ["CL not digits (hex)", -400, get11("Content-Length: 0x5")],
  ["CL digits with inner space", -400, get11("Content-Length: 5 5")],
  ["CL empty", -400, get11("Content-Length:")],
  ["CL trailing comma", -400, get11("Content-Length: 5,")],
  ["TE in HTTP/1.0", -400, req("POST / HTTP/1.0", "Transfer-Encoding: chunked")],
  ["TE chunked twice", -400, get11("Transfer-Encoding: chunked, chunked")],
  ["TE chunked twice over two lines", -400, get11("Transfer-Encoding: chunked", "Transfer-Encoding: chunked")],
  ["TE empty", -400, get11("Transfer-Encoding: ")],
  ["TE not a token", -400, get11('Transfer-Encoding: "chunked"')],
  ["whitespace before colon", -400, req("GET / HTTP/1.1", "Host : a")],
  ["tab before colon", -400, get11("Content-Length\t: 5")],
  ["obs-fold", -400, get11("X-A: a", " folded")],
  ["obs-fold with tab", -400, get11("X-A: a", "\tfolded")],
  ["first header line starts with SP", -400, req("GET / HTTP/1.1", " Host: a")],
  ["bare LF ending the request line", -400, "GET / HTTP/1.1\nHost: a\r\n\r\n"],
  ["bare LF ending a header", -400, "GET / HTTP/1.1\r\nHost: a\n\r\n"],
  ["bare LF as the empty line", -400, "GET / HTTP/1.1\r\nHost: a\r\n\n"],
  ["LF LF only", -400, "GET / HTTP/1.1\n\n"],
  ["bare CR in a value", -400, get11("X: a\rb")],
  ["bare CR in the request line", -400, "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"],
  ["bare CR starting a line", -400, "GET / HTTP/1.1\r\nHost: a\r\n\rX: b\r\n\r\n"],
  ["missing Host in HTTP/1.1", -400, req("GET / HTTP/1.1", "Accept: */*")],
  ["duplicate Host", -400, get11("Host: b")],
  ["duplicate Host, same value", -400, get11("host: a")],
  ["invalid name char", -400, get11("X@Y: a")],
  ["invalid name char (quote)", -400, get11('X"Y: a')],
  ["name with obs-text", -400, get11("X\xe9: a")],
  ["empty name", -400, get11(": a")],
  ["line without colon", -400, get11("NoColon")],
  ["CTL in value", -400, get11("X: a\x01b")],
  ["NUL in value", -400, get11("X: a\x00b")],
  ["DEL in value", -400, get11("X: a\x7fb")],
  ["ESC in Host", -400, req("GET / HTTP/1.1", "Host: a\x1b")],
  ["duplicate If-None-Match", -400, get11("If-None-Match: a", "If-None-Match: b")],
  ["duplicate Range", -400, get11("Range: bytes=0-1", "Range: bytes=2-3")],
  ["duplicate If-Range", -400, get11("If-Range: a", "If-Range: a")],
  // request line
  ["two SP after method", -400, req("GET  / HTTP/1.1", "Host: a")],
  ["two SP before version", -400, req("GET /  HTTP/1.1", "Host: a")],
  ["leading SP", -400, req(" GET / HTTP/1.1", "Host: a")],
  ["trailing SP", -400, req("GET / HTTP/1.1 ", "Host: a")],
  ["HTAB separator", -400, req("GET\t/ HTTP/1.1", "Host: a")],
  ["HTTP/0.9 style", -400, "GET /\r\n\r\n"],
  ["no target", -400, req("GET HTTP/1.1", "Host: a")],
  ["DEL in target", -400, req("GET /a\x7fb HTTP/1.1", "Host: a")],
  ["obs-text in target", -400, req("GET /caf\xe9 HTTP/1.1", "Host: a")],
  ["method not a token", -400, req("GE(T / HTTP/1.1", "Host: a")],
  ["lowercase protocol", -400, req("GET / http/1.1", "Host: a")],
  ["two-digit minor", -400, req("GET / HTTP/1.10", "Host: a")],
  ["no minor", -400, req("GET / HTTP/1", "Host: a")],
  ["letter version", -400, req("GET / HTTP/x.1", "Host: a")],
  ["empty request line", -400, "\r\n\r\n\r\n"],
  // 5xx
  ["unknown method", -501, req("FOO / HTTP/1.1", "Host: a")],
  ["method is case-sensitive", -501, req("get / HTTP/1.1", "Host: a")],
  ["unknown TE", -501, get11("Transfer-Encoding: gzip")],
  ["TE last coding not chunked", -501, get11("Transfer-Encoding: chunked, gzip")],
  ["TE coding before chunked", -501, get11("Transfer-Encoding: gzip, chunked")],
  ["TE identity", -501, get11("Transfer-Encoding: identity")],
  ["TE chunked with parameters", -501, get11("Transfer-Encoding: chunked;q=1")],
  ["HTTP/2.0", -505, req("GET / HTTP/2.0", "Host: a")],
  ["HTTP/0.9 as version", -505, req("GET / HTTP/0.9", "Host: a")],
  // sizes
  ["huge CL", -413, get11("Content-Length: 9007199254740993")],
  ["very huge CL", -413, get11("Content-Length: 123456789012345678901234567890")],
];

for (const [name, status, input] of GOLDEN) {
  test(`golden ${status}: ${name}`, () => {
    assert.is(parse(input).ret, status);
    // the same answer however the bytes arrive
    const n = input.length;
    for (const k of [1, n >> 1, n - 1]) assert.is(parsePieces(input, [k]).ret, status, `split at ${k}`);
  });
}

test("414: request line longer than maxLine, complete or partial", () => {
  const lim = { maxLine: 64, maxHeader: 8192, maxHeaders: 100 };
  const target = "/" + "a".repeat(60);
  const s = req(`GET ${target} HTTP/1.1`, "Host: a");
  assert.is(parse(s, lim).ret, -414);
  for (let k = 0; k <= s.length; k++) assert.is(parsePieces(s, [k], lim).ret, -414, `split at ${k}`);
  // partial: no CRLF in the first maxLine bytes
  const b = bytesOf(s);
  x.resetRequest(REQ);
  write(b, 63);
  assert.is(call(63, lim), 0);
  write(b, 64);
  assert.is(call(64, lim), -414);
  // exactly maxLine bytes including CRLF is fine
  const ok = req("GET /" + "a".repeat(64 - 16) + " HTTP/1.1", "Host: a");
  assert.is(ok.indexOf("\r\n") + 2, 64);
  assert.is(parse(ok, lim).ret, ok.length);
});

test("431: head larger than maxHeader, complete or partial", () => {
  const lim = { maxLine: 8192, maxHeader: 100, maxHeaders: 100 };
  const big = get11("X-Big: " + "b".repeat(200));
  assert.is(parse(big, lim).ret, -431);
  for (let k = 0; k <= big.length; k++) assert.is(parsePieces(big, [k], lim).ret, -431, `split at ${k}`);
  // partial: only the first 120 bytes, no end in sight
  const b = bytesOf(big);
  x.resetRequest(REQ);
  write(b, 120);
  assert.is(call(120, lim), -431);
  // the boundary: headers of exactly maxHeader bytes (after the request line) pass
  const line = "GET / HTTP/1.1\r\n";
  const fill = 100 - "Host: a\r\n".length - "X: \r\n".length - 2;
  const edge = get11("X: " + "x".repeat(fill));
  assert.is(edge.length - line.length, 100);
  assert.is(parse(edge, lim).ret, edge.length);
  assert.is(parse(get11("X: " + "x".repeat(fill + 1)), lim).ret, -431);
});

test("431: more than maxHeaders header lines", () => {
  const lim = { maxLine: 8192, maxHeader: 8192, maxHeaders: 4 };
  assert.is(parse(get11("A: 1", "B: 2", "C: 3"), lim).ret > 0, true);
  assert.is(parse(get11("A: 1", "B: 2", "C: 3", "D: 4"), lim).ret, -431);
});

// ---- chunked decoder ---------------------------------------------------------

const CHUNK_BUF = BUF + 65536;
const DATA26 = "abcdefghijklmnopqrstuvwxyz";
const CHUNKED_BODY =
  "5;name=value\r\nhello\r\n" +
  '1A ; a=b ;c="d e"\r\n' + DATA26 + "\r\n" +
  "000\r\nTrailer-A: x\r\nB:\ty\r\n\r\n";
const NEXT = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

function putChunk(bytes) {
  c.put(CHUNK_BUF, bytes);
  c.put(CHUNK_BUF + bytes.length, PAD);
}

/** Feed `s` in pieces ending at `cuts`, carrying unconsumed bytes over. */
function decodePieces(s, cuts, maxBody = 1e6) {
  const b = bytesOf(s);
  x.resetChunked(ST);
  let off = 0;
  for (const end of [...cuts, b.length]) {
    if (end < off) continue;
    putChunk(b.subarray(off, end));
    const n = x.decodeChunked(CHUNK_BUF, end - off, ST, maxBody);
    if (n < 0) return { status: n };
    off += n;
    if (x.chunkedDone(ST)) break;
  }
  return { consumed: off, done: !!x.chunkedDone(ST), total: c.dv().getFloat64(ST + K("CHUNK_TOTAL"), true) };
}

test("chunked: whole body, pipelined request left unconsumed", () => {
  const r = decodePieces(CHUNKED_BODY + NEXT, []);
  assert.equal(r, { consumed: CHUNKED_BODY.length, done: true, total: 31 });
  // once done, nothing more is consumed
  putChunk(bytesOf(NEXT));
  assert.is(x.decodeChunked(CHUNK_BUF, NEXT.length, ST, 1e6), 0);
});

test("chunked: split at every byte, and one byte at a time", () => {
  const s = CHUNKED_BODY + NEXT;
  const want = { consumed: CHUNKED_BODY.length, done: true, total: 31 };
  for (let k = 0; k <= s.length; k++) assert.equal(decodePieces(s, [k]), want, `split at ${k}`);
  const each = Array.from({ length: s.length }, (_, i) => i + 1);
  assert.equal(decodePieces(s, each), want);
});

test("chunked: not done until the final CRLF", () => {
  const s = "0\r\nX: y\r\n";
  const r = decodePieces(s, []);
  assert.equal(r, { consumed: s.length, done: false, total: 0 });
});

const CHUNK_BAD = [
  ["non-hex size", "g\r\n"],
  ["empty size", "\r\n"],
  ["size then junk", "5x\r\nhello\r\n0\r\n\r\n"],
  ["BWS without extension", "5 \r\nhello\r\n0\r\n\r\n"],
  ["bare LF after size", "5\nhello\r\n0\r\n\r\n"],
  ["bare LF after data", "5\r\nhello\n0\r\n\r\n"],
  ["missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n"],
  ["data longer than size", "3\r\nhello\r\n0\r\n\r\n"],
  ["size above 2^53", "20000000000001\r\n"],
  ["size overflowing 64 bits", "fffffffffffffffffffffff\r\n"],
  ["CTL in extension", "5;a=\x01\r\nhello\r\n0\r\n\r\n"],
  ["size line too long", "5;" + "x".repeat(4096) + "\r\nhello\r\n0\r\n\r\n"],
  ["obs-fold in trailer", "0\r\nA: b\r\n c\r\n\r\n"],
  ["bare LF ending trailers", "0\r\nA: b\r\n\n"],
  ["bare CR in trailer", "0\r\nA: b\rc\r\n\r\n"],
  ["negative size", "-5\r\n"],
];

for (const [name, body] of CHUNK_BAD) {
  test(`chunked 400: ${name}`, () => {
    assert.equal(decodePieces(body, []), { status: -400 });
    assert.equal(decodePieces(body, Array.from({ length: body.length }, (_, i) => i + 1)), { status: -400 });
  });
}

test("chunked: extension with BWS and the largest size line are accepted", () => {
  assert.is(decodePieces("5 \t; a = b\r\nhello\r\n0\r\n\r\n", []).done, true);
  const ext = ";" + "x".repeat(4096 - 4);                // "5" + ext + CRLF = 4096 bytes
  assert.is(decodePieces("5" + ext + "\r\nhello\r\n0\r\n\r\n", []).done, true);
  assert.is(decodePieces("20000000000000\r\n", [], 2 ** 60).done, false); // 2^53 itself is a size
});

test("chunked: body limit -> 413, exactly at the limit passes", () => {
  const s = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
  assert.equal(decodePieces(s, [], 10), { consumed: s.length, done: true, total: 10 });
  assert.equal(decodePieces(s, [], 9), { status: -413 });
  assert.equal(decodePieces("ffffffff\r\n", [], 1e6), { status: -413 });
});

test("chunked: trailer section limit -> 431", () => {
  const line = "X: " + "t".repeat(1000) + "\r\n";
  const s = "0\r\n" + line.repeat(17) + "\r\n";
  assert.equal(decodePieces(s, []), { status: -431 });
  assert.is(decodePieces("0\r\n" + line.repeat(16) + "\r\n", []).done, true);
});

test.run();
