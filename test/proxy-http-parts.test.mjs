// The pure parts of http-mode proxying, on the bare core: the response-head
// parser (assembly/http/response.ts), body framing (assembly/http/framing.ts)
// and head rewriting (assembly/proxy/rewrite.ts). Expectations come from the
// RFCs named next to each table (RFC 9112 message syntax and framing, RFC
// 9110 semantics, RFC 7239 Forwarded), not from the code's output. Every case
// writes junk ("\r\n\r\n...") into the 16 padding bytes after the data, so a
// scanner acting on bytes past `len` would be caught.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";

const c = loadCore();
const x = c.x;
if (x._start) x._start();
const K = (name) => x[name].value;

const base = x.arena();
const REQ = base;
const RESP = base + 256;
const BODY = base + 512;
const BUF = base + 4096;
const OUT = base + 0x40000;
const PAD = Buffer.from("\r\n\r\n".repeat(4), "latin1");
const bytesOf = (s) => (typeof s === "string" ? Buffer.from(s, "latin1") : s);

function write(bytes, len = bytes.length) {
  c.put(BUF, bytes.subarray(0, len));
  c.put(BUF + len, PAD);
}

// ---- response heads ----------------------------------------------------------

const LIM = { maxHead: 8192, maxHeaders: 100 };
const BODY_NONE = K("BODY_NONE"), BODY_LENGTH = K("BODY_LENGTH"), BODY_CHUNKED = K("BODY_CHUNKED"), BODY_CLOSE = K("BODY_CLOSE");
const RS_REUSABLE = K("RS_REUSABLE"), RS_INTERIM = K("RS_INTERIM");
const E = (name) => K("RE_" + name);

function respFields() {
  const dv = c.dv();
  const i32 = (f) => dv.getInt32(RESP + K(f), true);
  const flags = i32("RESP_FLAGS");
  return {
    status: i32("RESP_STATUS"),
    version: i32("RESP_VERSION"),
    body: i32("RESP_BODY"),
    length: flags & K("RS_HAS_CONTENT_LENGTH") ? dv.getFloat64(RESP + K("RESP_CONTENT_LENGTH"), true) : null,
    reusable: (flags & RS_REUSABLE) !== 0,
    interim: (flags & RS_INTERIM) !== 0,
    reason: c.str(BUF + i32("RESP_REASON_OFF"), i32("RESP_REASON_LEN")),
    headers: i32("RESP_HEADER_COUNT"),
  };
}
const callResp = (len, head, lim) => x.parseResponse(BUF, len, RESP, head ? 1 : 0, lim.maxHead, lim.maxHeaders);
function outcome(ret) {
  if (ret > 0) return { ret, ...respFields() };
  if (ret < 0) return { ret, error: c.dv().getInt32(RESP + K("RESP_ERROR"), true) };
  return { ret };
}
function parseResp(s, { head = false, lim = LIM } = {}) {
  const b = bytesOf(s);
  x.resetResponse(RESP);
  write(b);
  return outcome(callResp(b.length, head, lim));
}
function parseRespPieces(s, cuts, { head = false, lim = LIM } = {}) {
  const b = bytesOf(s);
  x.resetResponse(RESP);
  for (const end of [...cuts, b.length]) {
    write(b, end);
    const ret = callResp(end, head, lim);
    if (ret !== 0) return outcome(ret);
  }
  return { ret: 0 };
}
const resp = (line, ...fields) => line + "\r\n" + fields.map((f) => f + "\r\n").join("") + "\r\n";

// RFC 9112 6.3, rule by rule, in the RFC's order. [name, head, HEAD request?, expected]
const framing = [
  // rule 1: HEAD, 1xx, 204, 304 have no body whatever the fields say
  ["HEAD response with Content-Length", resp("HTTP/1.1 200 OK", "Content-Length: 1234"), true, { body: BODY_NONE, length: 1234, reusable: true }],
  ["HEAD response with chunked", resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"), true, { body: BODY_NONE, reusable: true }],
  ["100 Continue is interim, never reusable itself", resp("HTTP/1.1 100 Continue"), false, { status: 100, body: BODY_NONE, interim: true, reusable: false }],
  ["103 Early Hints is interim", resp("HTTP/1.1 103 Early Hints", "Link: </a.css>; rel=preload"), false, { status: 103, body: BODY_NONE, interim: true }],
  ["204 No Content", resp("HTTP/1.1 204 No Content"), false, { status: 204, body: BODY_NONE, reusable: true }],
  ["304 with Content-Length", resp("HTTP/1.1 304 Not Modified", "Content-Length: 99"), false, { status: 304, body: BODY_NONE, length: 99 }],
  // rule 4: chunked as the coding
  ["chunked", resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"), false, { body: BODY_CHUNKED, reusable: true }],
  ["Chunked, any case, empty list members", resp("HTTP/1.1 200 OK", "transfer-encoding: , CHUNKED ,"), false, { body: BODY_CHUNKED }],
  // rule 5: Content-Length
  ["Content-Length", resp("HTTP/1.1 200 OK", "Content-Length: 5"), false, { body: BODY_LENGTH, length: 5, reusable: true }],
  ["Content-Length: 0", resp("HTTP/1.1 200 OK", "Content-Length: 0"), false, { body: BODY_NONE, length: 0, reusable: true }],
  ["identical Content-Length lines (RFC 9110 8.6)", resp("HTTP/1.1 200 OK", "Content-Length: 7", "content-length: 7"), false, { body: BODY_LENGTH, length: 7 }],
  ["identical Content-Length list", resp("HTTP/1.1 200 OK", "Content-Length: 7 , 7,7"), false, { body: BODY_LENGTH, length: 7 }],
  ["Content-Length 2^53", resp("HTTP/1.1 200 OK", "Content-Length: 9007199254740992"), false, { body: BODY_LENGTH, length: 2 ** 53 }],
  // rule 8: neither: read until close, so never reusable
  ["no framing fields: close-delimited", resp("HTTP/1.1 200 OK", "Server: x"), false, { body: BODY_CLOSE, reusable: false }],
  // persistence (RFC 9112 9.3)
  ["1.1 Connection: close", resp("HTTP/1.1 200 OK", "Content-Length: 1", "Connection: close"), false, { body: BODY_LENGTH, reusable: false }],
  ["1.1 Connection list with close", resp("HTTP/1.1 200 OK", "Content-Length: 1", "Connection: x-y, Close"), false, { reusable: false }],
  ["1.0 default close", resp("HTTP/1.0 200 OK", "Content-Length: 1"), false, { version: 10, body: BODY_LENGTH, reusable: false }],
  ["1.0 keep-alive", resp("HTTP/1.0 200 OK", "Content-Length: 1", "Connection: Keep-Alive"), false, { version: 10, reusable: true }],
  ["1.0 no framing", resp("HTTP/1.0 200 OK"), false, { version: 10, body: BODY_CLOSE }],
  // status line forms (RFC 9112 4; RFC 9110 2.5 minor versions)
  ["empty reason after SP", resp("HTTP/1.1 200 ", "Content-Length: 0"), false, { reason: "" }],
  ["no SP, no reason (llhttp, picohttpparser accept)", resp("HTTP/1.1 404", "Content-Length: 0"), false, { status: 404, reason: "" }],
  ["reason with HTAB, SP and obs-text", resp("HTTP/1.1 200 Fine\tand \xe9", "Content-Length: 0"), false, { reason: "Fine\tand \xe9" }],
  ["HTTP/1.2 is 1.1", resp("HTTP/1.2 200 OK", "Content-Length: 0"), false, { version: 11 }],
  ["599", resp("HTTP/1.1 599 x", "Content-Length: 0"), false, { status: 599 }],
  ["empty field value, OWS around values", resp("HTTP/1.1 200 OK", "X-Empty:", "Content-Length:\t 3 \t"), false, { length: 3, headers: 2 }],
];

for (const [name, head, isHead, want] of framing) {
  test(`response framing: ${name}`, () => {
    const r = parseResp(head, { head: isHead });
    assert.is(r.ret, head.length, "head length");
    for (const [k, v] of Object.entries(want)) assert.equal(r[k], v, k);
  });
}

// Every way a head is refused (-502 and the reason). [name, head, RE_*]
const invalid = [
  ["lowercase http (HTTP-name is case-sensitive, RFC 9112 2.3)", resp("http/1.1 200 OK"), "STATUS_LINE"],
  ["not HTTP", resp("ICY 200 OK"), "STATUS_LINE"],
  ["HTTP/1.10", resp("HTTP/1.10 200 OK"), "STATUS_LINE"],
  ["HTTP/11", resp("HTTP/11 200 OK"), "STATUS_LINE"],
  ["HTTP/2.0", resp("HTTP/2.0 200 OK"), "VERSION"],
  ["HTTP/0.9", resp("HTTP/0.9 200 OK"), "VERSION"],
  ["two-digit status", resp("HTTP/1.1 20 OK"), "STATUS_LINE"],
  ["four-digit status", resp("HTTP/1.1 2000 OK"), "STATUS_LINE"],
  ["letters in status", resp("HTTP/1.1 2x0 OK"), "STATUS_LINE"],
  ["two SPs before status", resp("HTTP/1.1  200 OK"), "STATUS_LINE"],
  ["status 099 (RFC 9110 15: outside 100..599)", resp("HTTP/1.1 099 x"), "STATUS"],
  ["status 600", resp("HTTP/1.1 600 x"), "STATUS"],
  ["NUL in reason", resp("HTTP/1.1 200 O\0K"), "STATUS_LINE"],
  ["bare CR in reason", resp("HTTP/1.1 200 O\rK"), "STATUS_LINE"],
  ["101 Switching Protocols (upgrade not supported)", resp("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: upgrade"), "UPGRADE"],
  ["obs-fold (RFC 9112 5.2)", resp("HTTP/1.1 200 OK", "X-A: a", " b", "Content-Length: 0"), "FIELD"],
  ["whitespace before the first field", resp("HTTP/1.1 200 OK", "\tX-A: a"), "FIELD"],
  ["space before the colon (RFC 9112 5.1)", resp("HTTP/1.1 200 OK", "Content-Length : 5"), "FIELD"],
  ["empty field name", resp("HTTP/1.1 200 OK", ": a"), "FIELD"],
  ["no colon", resp("HTTP/1.1 200 OK", "X-A a"), "FIELD"],
  ["non-tchar in name", resp("HTTP/1.1 200 OK", "X(A): a"), "FIELD"],
  ["NUL in name", resp("HTTP/1.1 200 OK", "X\0A: a"), "FIELD"],
  ["NUL in value", resp("HTTP/1.1 200 OK", "X-A: a\0b"), "FIELD"],
  ["DEL in value", resp("HTTP/1.1 200 OK", "X-A: a\x7fb"), "FIELD"],
  ["bare CR in value", resp("HTTP/1.1 200 OK", "X-A: a\rb"), "FIELD"],
  ["line of a bare CR", "HTTP/1.1 200 OK\r\n\rX\r\n\r\n", "FIELD"],
  ["bare LF after the status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "BARE_LF"],
  ["bare LF ending a field", "HTTP/1.1 200 OK\r\nX-A: a\n\r\n", "BARE_LF"],
  ["LF LF end", "HTTP/1.1 200 OK\n\n", "BARE_LF"],
  ["leading LF", "\nHTTP/1.1 200 OK\r\n\r\n", "BARE_LF"],
  ["leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", "STATUS_LINE"],
  ["CL + TE (RFC 9112 6.3 rule 3)", resp("HTTP/1.1 200 OK", "Content-Length: 5", "Transfer-Encoding: chunked"), "TE_AND_CL"],
  ["TE + CL, on a 204 too", resp("HTTP/1.1 204 No Content", "Transfer-Encoding: chunked", "Content-Length: 0"), "TE_AND_CL"],
  ["TE in HTTP/1.0 (RFC 9112 6.1)", resp("HTTP/1.0 200 OK", "Transfer-Encoding: chunked"), "TE_HTTP10"],
  ["gzip, chunked", resp("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked"), "TRANSFER_ENCODING"],
  ["gzip only (6.3 rule 4 would read to close)", resp("HTTP/1.1 200 OK", "Transfer-Encoding: gzip"), "TRANSFER_ENCODING"],
  ["chunked twice (RFC 9112 6.1)", resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), "TRANSFER_ENCODING"],
  ["chunked with a parameter", resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked;q=1"), "TRANSFER_ENCODING"],
  ["empty Transfer-Encoding", resp("HTTP/1.1 200 OK", "Transfer-Encoding: "), "TRANSFER_ENCODING"],
  ["conflicting Content-Length list", resp("HTTP/1.1 200 OK", "Content-Length: 5, 6"), "CONTENT_LENGTH"],
  ["conflicting Content-Length lines", resp("HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 6"), "CONTENT_LENGTH"],
  ["negative Content-Length", resp("HTTP/1.1 200 OK", "Content-Length: -1"), "CONTENT_LENGTH"],
  ["empty Content-Length", resp("HTTP/1.1 200 OK", "Content-Length: "), "CONTENT_LENGTH"],
  ["hex Content-Length", resp("HTTP/1.1 200 OK", "Content-Length: 0x5"), "CONTENT_LENGTH"],
  ["Content-Length with inner space", resp("HTTP/1.1 200 OK", "Content-Length: 5 5"), "CONTENT_LENGTH"],
  ["Content-Length + sign", resp("HTTP/1.1 200 OK", "Content-Length: +5"), "CONTENT_LENGTH"],
  ["Content-Length over 2^53", resp("HTTP/1.1 200 OK", "Content-Length: 99999999999999999999"), "CONTENT_LENGTH"],
  ["conflicting Content-Length on a 304", resp("HTTP/1.1 304 Not Modified", "Content-Length: 1", "Content-Length: 2"), "CONTENT_LENGTH"],
];

for (const [name, head, code] of invalid) {
  test(`response refused: ${name}`, () => {
    const r = parseResp(head);
    assert.is(r.ret, -502);
    assert.is(r.error, E(code), `RE_${code}`);
  });
}

test("response: a control byte at any position of a long value or reason is refused; HTAB anywhere is not", () => {
  const v = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";   // 46 bytes: several 16-byte steps
  for (let i = 0; i < v.length; i++) {
    const put = (ch) => v.slice(0, i) + ch + v.slice(i + 1);
    for (const bad of ["\0", "\x01", "\x1f", "\x7f", "\r"]) {
      assert.equal(parseResp(resp("HTTP/1.1 200 OK", "X-V: " + put(bad), "Content-Length: 0")), { ret: -502, error: E("FIELD") }, `value byte ${i}`);
      assert.equal(parseResp(resp("HTTP/1.1 200 " + put(bad), "Content-Length: 0")), { ret: -502, error: E("STATUS_LINE") }, `reason byte ${i}`);
    }
    assert.is(parseResp(resp("HTTP/1.1 200 OK", "X-V: " + put("\t"), "Content-Length: 0")).headers, 2, `HTAB at ${i}`);
    assert.is(parseResp(resp("HTTP/1.1 200 " + put("\t"), "Content-Length: 0")).reason, put("\t"), `HTAB at ${i}`);
    assert.is(parseResp(resp("HTTP/1.1 200 OK", "X-V: " + put("\xff"), "Content-Length: 0")).headers, 2, `obs-text at ${i}`);
  }
});

test("response limits: a head of exactly maxHead bytes parses; one byte more is refused", () => {
  const lim = { maxHead: 200, maxHeaders: 100 };
  const fill = (n) => resp("HTTP/1.1 200 OK", "Content-Length: 0", "X: " + "a".repeat(n));
  const fixed = fill(0).length;
  const exact = fill(200 - fixed);
  assert.is(exact.length, 200);
  assert.is(parseResp(exact, { lim }).ret, 200);
  const over = fill(201 - fixed);
  assert.equal(parseResp(over, { lim }), { ret: -502, error: E("TOO_LARGE") });
  // a partial head is refused as soon as maxHead bytes hold no end
  assert.equal(parseResp(over.slice(0, 200), { lim }), { ret: -502, error: E("TOO_LARGE") });
  assert.equal(parseResp(over.slice(0, 199), { lim }), { ret: 0 });
});

test("response limits: maxHeaders field lines parse; one more is refused", () => {
  const lines = (n) => Array.from({ length: n }, (_, i) => `X-${i}: v`);
  const lim = { maxHead: 8192, maxHeaders: 10 };
  assert.ok(parseResp(resp("HTTP/1.1 200 OK", ...lines(10)), { lim }).ret > 0);
  assert.equal(parseResp(resp("HTTP/1.1 200 OK", ...lines(11)), { lim }), { ret: -502, error: E("TOO_MANY") });
});

test("response: incomplete heads need more bytes", () => {
  for (const s of ["", "H", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK\r\n", "HTTP/1.1 200 OK\r\nA: b\r\n", "HTTP/1.1 200 OK\r\n\r"]) {
    assert.equal(parseResp(s), { ret: 0 }, JSON.stringify(s));
  }
});

test("response: the body that follows the head is not part of it", () => {
  const head = resp("HTTP/1.1 200 OK", "Content-Length: 4");
  const r = parseResp(head + "abcd" + "HTTP/1.1 200 OK\r\n\r\n");
  assert.is(r.ret, head.length);
});

// Every split point, for every valid and every invalid case above: the
// outcome of feeding the head in two pieces is the outcome of one piece.
test("response: split at every byte boundary gives the same result", () => {
  const all = [...framing.map(([, h, isHead]) => [h, isHead]), ...invalid.map(([, h]) => [h, false])];
  for (const [h, isHead] of all) {
    const whole = parseResp(h, { head: isHead });
    for (let k = 1; k < h.length; k++) {
      assert.equal(parseRespPieces(h, [k], { head: isHead }), whole, `${JSON.stringify(h)} split at ${k}`);
    }
  }
});

test("response: one byte at a time gives the same result", () => {
  for (const [, h, isHead] of framing) {
    const cuts = Array.from({ length: h.length - 1 }, (_, i) => i + 1);
    assert.equal(parseRespPieces(h, cuts, { head: isHead }), parseResp(h, { head: isHead }));
  }
});

test("response: an interim head, reset, then the final head in the same buffer", () => {
  const interim = resp("HTTP/1.1 100 Continue");
  const final = resp("HTTP/1.1 201 Created", "Content-Length: 2");
  const all = bytesOf(interim + final + "ok");
  x.resetResponse(RESP);
  write(all);
  assert.is(callResp(all.length, false, LIM), interim.length);
  assert.ok(respFields().interim);
  x.resetResponse(RESP);
  assert.is(x.parseResponse(BUF + interim.length, all.length - interim.length, RESP, 0, LIM.maxHead, LIM.maxHeaders), final.length);
  assert.equal([respFields().status, respFields().body, respFields().interim], [201, BODY_LENGTH, false]);
});

// ---- body framing --------------------------------------------------------------

const MAXB = 1e15;
function bodyRun(mode, length, bytes, cuts = [], maxBody = MAXB) {
  const b = bytesOf(bytes);
  x.bodyStart(BODY, mode, length, maxBody);
  c.put(BUF, b);
  c.put(BUF + b.length, PAD);
  let at = 0;
  for (const end of [...cuts, b.length]) {
    if (end <= at) continue;
    const given = end - at;
    const r = x.bodyFeed(BODY, BUF + at, given);
    if (r < 0) return { error: r };
    assert.ok(r <= given, "never consumes more than it was given");
    at += r;
    if (x.bodyDone(BODY)) break;
    assert.is(r, given, "an unfinished body consumes everything it is given");
  }
  return { end: at, done: x.bodyDone(BODY) !== 0, eof: x.bodyEof(BODY) !== 0 };
}

// chunked bodies (RFC 9112 7.1): [name, message, expected end]; "NEXT..." after the end is the next message
// [name, message, its data]
const chunkedOk = [
  ["one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"],
  ["two chunks, hex upper and lower", "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n", "0123456789abcdefghijk"],
  ["leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"],
  ["chunk extensions, quoted", '5;name=val;q="a;b"\r\nhello\r\n0;last\r\n\r\n', "hello"],
  ["extension after BWS", "5 ;x\r\nhello\r\n0\r\n\r\n", "hello"],
  ["trailer fields", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", "abc"],
  ["empty body", "0\r\n\r\n", ""],
  ["body bytes that look like framing", "7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n", "0\r\n\r\n\r\n"],
];
for (const [name, msg] of chunkedOk) {
  test(`chunked pass-through: ${name}: the end is found at the message's last byte, any split`, () => {
    const all = msg + "NEXT 1\r\n\r\n";
    assert.equal(bodyRun(BODY_CHUNKED, 0, all), { end: msg.length, done: true, eof: true });
    for (let k = 1; k < all.length; k++) {
      assert.equal(bodyRun(BODY_CHUNKED, 0, all, [k]), { end: msg.length, done: true, eof: true }, `split at ${k}`);
    }
    const cuts = Array.from({ length: all.length }, (_, i) => i + 1);
    assert.equal(bodyRun(BODY_CHUNKED, 0, all, cuts), { end: msg.length, done: true, eof: true }, "byte at a time");
  });
}

/** De-chunks `bytes` fed in pieces ending at `cuts`; returns the data and where the message ended. */
function dechunkRun(bytes, cuts = []) {
  const b = bytesOf(bytes);
  x.bodyStart(BODY, BODY_CHUNKED, 0, MAXB);
  let at = 0, data = "";
  for (const end of [...cuts, b.length]) {
    if (end <= at) continue;
    // each piece arrives in its own buffer, as a read would put it
    c.put(BUF, b.subarray(at, end));
    c.put(BUF + end - at, PAD);
    const r = x.bodyDechunk(BODY, BUF, end - at);
    data += c.str(BUF, c.dv().getInt32(BODY + K("BODYST_OUT"), true));
    if (r < 0) return { error: r, data };
    at += r;
    if (x.bodyDone(BODY)) break;
  }
  return { end: at, data, done: x.bodyDone(BODY) !== 0 };
}
for (const [name, msg, data] of chunkedOk) {
  test(`de-chunking for HTTP/1.0 clients: ${name}: the data, any split`, () => {
    const all = msg + "NEXT";
    assert.equal(dechunkRun(all), { end: msg.length, data, done: true });
    for (let k = 1; k < all.length; k++) assert.equal(dechunkRun(all, [k]), { end: msg.length, data, done: true }, `split at ${k}`);
    const cuts = Array.from({ length: all.length }, (_, i) => i + 1);
    assert.equal(dechunkRun(all, cuts), { end: msg.length, data, done: true }, "byte at a time");
  });
}

test("de-chunking refuses what pass-through refuses", () => {
  assert.is(dechunkRun("5\r\nhelloX\r\n0\r\n\r\n").error, -400);
  assert.is(dechunkRun("zz\r\n").error, -400);
});

const chunkedBad = [
  ["missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", -400],
  ["LF only after data", "5\r\nhello\n0\r\n\r\n", -400],
  ["bare LF after size", "5\nhello\r\n0\r\n\r\n", -400],
  ["non-hex size", "g\r\nx\r\n0\r\n\r\n", -400],
  ["empty size", "\r\nx\r\n0\r\n\r\n", -400],
  ["negative size", "-5\r\nhello\r\n0\r\n\r\n", -400],
  ["0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", -400],
  ["whitespace then CR (BWS only before ';')", "5 \r\nhello\r\n0\r\n\r\n", -400],
  ["size over 2^53", "20000000000001\r\n", -400],
  ["size line over 4096 bytes", "5;" + "x".repeat(5000) + "\r\nhello\r\n0\r\n\r\n", -400],
  ["control byte in extension", "5;a\x01\r\nhello\r\n0\r\n\r\n", -400],
  ["obs-fold in trailers", "0\r\nX: a\r\n b\r\n\r\n", -400],
  ["trailers over 16 KiB", "0\r\nX: " + "a".repeat(17000) + "\r\n\r\n", -431],
  ["final CRLF missing LF", "0\r\n\rX", -400],
];
for (const [name, msg, code] of chunkedBad) {
  test(`chunked pass-through refuses: ${name}, at any split`, () => {
    assert.equal(bodyRun(BODY_CHUNKED, 0, msg), { error: code });
    const step = msg.length > 200 ? 97 : 1;
    for (let k = 1; k < msg.length; k += step) assert.equal(bodyRun(BODY_CHUNKED, 0, msg, [k]), { error: code }, `split at ${k}`);
  });
}

test("chunked pass-through: over maxBody is -413", () => {
  assert.equal(bodyRun(BODY_CHUNKED, 0, "5\r\nhello\r\n0\r\n\r\n", [], 4), { error: -413 });
  assert.equal(bodyRun(BODY_CHUNKED, 0, "5\r\nhello\r\n0\r\n\r\n", [], 5), { end: 15, done: true, eof: true });
});

test("chunked pass-through: a truncated body is not complete at EOF", () => {
  const msg = "5\r\nhello\r\n0\r\n\r\n";
  for (let k = 0; k < msg.length; k++) {
    assert.equal(bodyRun(BODY_CHUNKED, 0, msg.slice(0, k)), { end: k, done: false, eof: false }, `cut at ${k}`);
  }
});

test("Content-Length countdown: ends at the length, any split; truncation shows at EOF", () => {
  const all = "0123456789NEXT";
  for (let k = 1; k < all.length; k++) assert.equal(bodyRun(BODY_LENGTH, 10, all, [k]), { end: 10, done: true, eof: true }, `split at ${k}`);
  assert.equal(bodyRun(BODY_LENGTH, 10, "01234"), { end: 5, done: false, eof: false });
  assert.equal(bodyRun(BODY_LENGTH, 2 ** 40, "0123"), { end: 4, done: false, eof: false });
});

test("no body and close-delimited bodies", () => {
  assert.equal(bodyRun(BODY_NONE, 0, "HTTP/1.1 200 OK\r\n"), { end: 0, done: true, eof: true });
  assert.equal(bodyRun(BODY_CLOSE, 0, "anything at all", [3, 7]), { end: 15, done: false, eof: true });
});

// ---- request rewriting -----------------------------------------------------------

const RLIM = [8192, 8192, 100];
const CLIENT = BUF + 0x8000, HOSTBUF = BUF + 0x8100;
const tail = (client = "192.0.2.1", xff = client, fwd = client.includes(":") ? `for="[${client}]"` : `for=${client}`) =>
  `X-Forwarded-For: ${xff}\r\nX-Forwarded-Proto: http\r\nForwarded: ${fwd};proto=http\r\nVia: 1.1 wasm-reactor\r\n\r\n`;

function rewriteReq(head, { client = "192.0.2.1", host = "127.0.0.1:9001", flags = 0, cap = 8192 } = {}) {
  const b = bytesOf(head);
  x.resetRequest(REQ);
  write(b);
  const pr = x.parseRequest(BUF, b.length, REQ, ...RLIM);
  assert.is(pr, b.length, "the request parser accepts the head");
  const cl = c.put(CLIENT, client), hl = c.put(HOSTBUF, host);
  c.u8().fill(0xee, OUT, OUT + cap + 64);
  const r = x.proxyRewriteRequest(BUF, REQ, OUT, cap, CLIENT, cl, HOSTBUF, hl, flags);
  const canary = c.u8().subarray(OUT + cap, OUT + cap + 64).every((v) => v === 0xee);
  assert.ok(canary, "nothing written past cap");
  return r > 0 ? c.str(OUT, r) : r;
}
const rq = (line, ...fields) => line + "\r\n" + fields.map((f) => f + "\r\n").join("");

test("rewrite: a plain GET gets the forwarding fields and Via, as HTTP/1.1", () => {
  const head = rq("GET /a?b=1 HTTP/1.1", "Host: example.com", "User-Agent: t", "Accept: */*") + "\r\n";
  assert.is(rewriteReq(head), rq("GET /a?b=1 HTTP/1.1", "Host: example.com", "User-Agent: t", "Accept: */*") + tail());
});

test("rewrite: hop-by-hop fields and the fields Connection names are removed, any case (RFC 9110 7.6.1)", () => {
  const head = rq("GET / HTTP/1.1", "Host: a", "Connection: keep-alive, X-Secret", "Keep-Alive: timeout=5",
    "Proxy-Connection: keep-alive", "TE: trailers", "Trailer: X-T", "Upgrade: websocket", "x-secret: 1",
    "X-Keep: yes", "X-SECRET: 2", "connection: X-Other", "x-other: 3", "Connection-Extra: kept", "X-Secret-Not: kept") + "\r\n";
  assert.is(rewriteReq(head), rq("GET / HTTP/1.1", "Host: a", "X-Keep: yes", "Connection-Extra: kept", "X-Secret-Not: kept") + tail());
});

test("rewrite: X-Forwarded-For appends to the client's, all lines joined; Forwarded likewise; X-Forwarded-Proto replaced", () => {
  const head = rq("GET / HTTP/1.1", "Host: a", "X-Forwarded-For: 203.0.113.5", "X-Forwarded-Proto: https",
    "x-forwarded-for: 198.51.100.7, 10.0.0.1", "Forwarded: for=203.0.113.5;proto=https") + "\r\n";
  assert.is(rewriteReq(head), rq("GET / HTTP/1.1", "Host: a") +
    tail("192.0.2.1", "203.0.113.5, 198.51.100.7, 10.0.0.1, 192.0.2.1", "for=203.0.113.5;proto=https, for=192.0.2.1"));
});

test("rewrite: Forwarded for an IPv6 client is quoted and bracketed (RFC 7239 6.1); unknown client (6.2)", () => {
  const head = rq("GET / HTTP/1.1", "Host: a") + "\r\n";
  assert.is(rewriteReq(head, { client: "2001:db8::1" }),
    rq("GET / HTTP/1.1", "Host: a") + tail("2001:db8::1", "2001:db8::1", 'for="[2001:db8::1]"'));
  assert.is(rewriteReq(head, { client: "::ffff:192.0.2.9" }),
    rq("GET / HTTP/1.1", "Host: a") + tail("::ffff:192.0.2.9", "::ffff:192.0.2.9", 'for="[::ffff:192.0.2.9]"'));
  assert.is(rewriteReq(head, { client: "" }), rq("GET / HTTP/1.1", "Host: a") + tail("", "unknown", "for=unknown"));
});

test("rewrite: Host is kept as sent; an HTTP/1.0 request without Host gets the given one", () => {
  assert.is(rewriteReq(rq("GET / HTTP/1.1", "X: 1", "Host: Example.COM:8080") + "\r\n"), rq("GET / HTTP/1.1", "Host: Example.COM:8080", "X: 1") + tail());
  assert.is(rewriteReq(rq("GET /x HTTP/1.0", "X: 1") + "\r\n"), rq("GET /x HTTP/1.1", "Host: 127.0.0.1:9001", "X: 1") + tail());
  assert.is(rewriteReq(rq("GET /x HTTP/1.0", "Host: h") + "\r\n"), rq("GET /x HTTP/1.1", "Host: h") + tail());
});

test("rewrite: absolute-form becomes origin-form, its authority the Host (RFC 9112 3.2.2)", () => {
  assert.is(rewriteReq(rq("GET http://Example.org:81/p?q HTTP/1.1", "Host: other") + "\r\n"), rq("GET /p?q HTTP/1.1", "Host: Example.org:81") + tail());
  assert.is(rewriteReq(rq("GET HTTP://example.org HTTP/1.1", "Host: example.org") + "\r\n"), rq("GET / HTTP/1.1", "Host: example.org") + tail());
  assert.is(rewriteReq(rq("GET https://e.org?x HTTP/1.1", "Host: e.org") + "\r\n"), rq("GET /?x HTTP/1.1", "Host: e.org") + tail());
  assert.is(rewriteReq(rq("OPTIONS * HTTP/1.1", "Host: a") + "\r\n"), rq("OPTIONS * HTTP/1.1", "Host: a") + tail());
  assert.is(rewriteReq(rq("GET http://u:p@e.org/ HTTP/1.1", "Host: e.org") + "\r\n"), -400, "userinfo (RFC 9110 4.2.4)");
  assert.is(rewriteReq(rq("GET http:/// HTTP/1.1", "Host: e.org") + "\r\n"), -400, "empty authority");
  assert.is(rewriteReq(rq("GET ftp://e.org/ HTTP/1.1", "Host: e.org") + "\r\n"), -400, "not http");
  assert.is(rewriteReq(rq("CONNECT e.org:443 HTTP/1.1", "Host: e.org:443") + "\r\n"), -501, "no tunnels");
});

test("rewrite: framing is regenerated: one Content-Length, chunked kept as chunked; Expect kept", () => {
  assert.is(rewriteReq(rq("POST /u HTTP/1.1", "Host: a", "Content-Length: 5, 5", "content-length: 5", "Expect: 100-continue") + "\r\n"),
    rq("POST /u HTTP/1.1", "Host: a", "Expect: 100-continue", "Content-Length: 5") + tail());
  assert.is(rewriteReq(rq("POST /u HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "X: 1") + "\r\n"),
    rq("POST /u HTTP/1.1", "Host: a", "X: 1", "Transfer-Encoding: chunked") + tail());
  assert.is(rewriteReq(rq("PUT /u HTTP/1.1", "Host: a", "Content-Length: 9007199254740992") + "\r\n"),
    rq("PUT /u HTTP/1.1", "Host: a", "Content-Length: 9007199254740992") + tail());
});

test("rewrite: naming a framing field or Host in Connection cannot strip it (a smuggling trick)", () => {
  assert.is(rewriteReq(rq("POST /u HTTP/1.1", "Host: a", "Connection: Content-Length, Host", "Content-Length: 5") + "\r\n"),
    rq("POST /u HTTP/1.1", "Host: a", "Content-Length: 5") + tail());
  assert.is(rewriteReq(rq("POST /u HTTP/1.1", "Host: a", "Connection: transfer-encoding", "Transfer-Encoding: chunked") + "\r\n"),
    rq("POST /u HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + tail());
});

test("rewrite: RW_CLOSE asks the upstream to close; a leading empty line is dropped", () => {
  assert.is(rewriteReq(rq("GET / HTTP/1.1", "Host: a") + "\r\n", { flags: K("RW_CLOSE") }), rq("GET / HTTP/1.1", "Host: a", "Connection: close") + tail());
  assert.is(rewriteReq("\r\n" + rq("GET / HTTP/1.1", "Host: a") + "\r\n"), rq("GET / HTTP/1.1", "Host: a") + tail());
});

test("rewrite: more than 32 Connection options is refused", () => {
  const opts = (n) => Array.from({ length: n }, (_, i) => `o${i}`).join(", ");
  assert.type(rewriteReq(rq("GET / HTTP/1.1", "Host: a", "Connection: " + opts(32)) + "\r\n"), "string");
  assert.is(rewriteReq(rq("GET / HTTP/1.1", "Host: a", "Connection: " + opts(33)) + "\r\n"), -400);
});

test("rewrite: a head that does not fit returns -1 at every smaller cap and writes nothing past cap", () => {
  const head = rq("GET /abc HTTP/1.1", "Host: a", "X-Forwarded-For: 1.2.3.4", "Forwarded: for=1.2.3.4", "Content-Length: 12") + "\r\n";
  const full = rewriteReq(head);
  assert.type(full, "string");
  assert.is(rewriteReq(head, { cap: full.length }), full);
  for (let cap = 0; cap < full.length; cap++) assert.is(rewriteReq(head, { cap }), -1, `cap ${cap}`);
});

// ---- response rewriting ---------------------------------------------------------

function rewriteResp(head, { isHead = false, flags = 0, cap = 8192 } = {}) {
  const r0 = parseResp(head, { head: isHead });
  assert.is(r0.ret, bytesOf(head).length, "the response parser accepts the head");
  c.u8().fill(0xee, OUT, OUT + cap + 64);
  const r = x.proxyRewriteResponse(BUF, RESP, OUT, cap, flags);
  assert.ok(c.u8().subarray(OUT + cap, OUT + cap + 64).every((v) => v === 0xee), "nothing written past cap");
  return r > 0 ? c.str(OUT, r) : r;
}
const CLOSE = K("RWR_CLOSE"), H10 = K("RWR_CLIENT_HTTP10");

test("rewrite response: hop-by-hop and Connection-named fields dropped; the client's keep-alive decides Connection", () => {
  const head = resp("HTTP/1.1 200 OK", "Server: up", "Connection: close, X-Up", "X-Up: 1", "Keep-Alive: timeout=3",
    "Upgrade: h2c", "Content-Length: 5", "Date: x");
  assert.is(rewriteResp(head), resp("HTTP/1.1 200 OK", "Server: up", "Date: x", "Content-Length: 5"));
  assert.is(rewriteResp(head, { flags: CLOSE }), resp("HTTP/1.1 200 OK", "Server: up", "Date: x", "Content-Length: 5", "Connection: close"));
  assert.is(rewriteResp(head, { flags: H10 }), resp("HTTP/1.1 200 OK", "Server: up", "Date: x", "Content-Length: 5", "Connection: keep-alive"));
});

test("rewrite response: framing", () => {
  // close-delimited can only be framed by the close
  assert.is(rewriteResp(resp("HTTP/1.0 200 OK", "X: 1")), resp("HTTP/1.1 200 OK", "X: 1", "Connection: close"));
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")), resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"));
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"), { flags: H10 }), K("RW_NEEDS_DECHUNK"));
  // an HTTP/1.0 client cannot take chunked (RFC 9112 7.1): de-chunked, the close ends the body
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "X: 1"), { flags: H10 | K("RWR_DECHUNK") }),
    resp("HTTP/1.1 200 OK", "X: 1", "Connection: close"));
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"), { flags: K("RWR_DECHUNK") }),
    resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"), "an HTTP/1.1 client gets chunked as is");
  // RFC 9110 8.6: no Content-Length in a 204; HEAD and 304 keep theirs
  assert.is(rewriteResp(resp("HTTP/1.1 204 No Content", "Content-Length: 0")), resp("HTTP/1.1 204 No Content"));
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Content-Length: 1234"), { isHead: true }), resp("HTTP/1.1 200 OK", "Content-Length: 1234"));
  assert.is(rewriteResp(resp("HTTP/1.1 304 Not Modified", "ETag: \"x\"", "Content-Length: 10")), resp("HTTP/1.1 304 Not Modified", "ETag: \"x\"", "Content-Length: 10"));
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Content-Length: 3, 3")), resp("HTTP/1.1 200 OK", "Content-Length: 3"));
});

test("rewrite response: Connection naming Content-Length or Transfer-Encoding cannot strip the framing", () => {
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Connection: Content-Length", "Content-Length: 5")), resp("HTTP/1.1 200 OK", "Content-Length: 5"));
  assert.is(rewriteResp(resp("HTTP/1.1 200 OK", "Connection: Transfer-Encoding", "Transfer-Encoding: chunked")), resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"));
});

test("rewrite response: interim 1xx forwarded without framing; never to an HTTP/1.0 client (RFC 9110 15.2)", () => {
  assert.is(rewriteResp(resp("HTTP/1.1 100 Continue")), resp("HTTP/1.1 100 Continue"));
  assert.is(rewriteResp(resp("HTTP/1.1 103 Early Hints", "Link: </s.css>; rel=preload")), resp("HTTP/1.1 103 Early Hints", "Link: </s.css>; rel=preload"));
  assert.is(rewriteResp(resp("HTTP/1.1 100 Continue"), { flags: H10 }), 0);
});

test("rewrite response: our own version and the status line's SP even when the reason is empty", () => {
  assert.is(rewriteResp(resp("HTTP/1.0 404", "Content-Length: 0", "Connection: keep-alive")), resp("HTTP/1.1 404 ", "Content-Length: 0"));
});

test("rewrite response: does not fit returns -1 at every smaller cap", () => {
  const head = resp("HTTP/1.1 200 OK", "Server: up", "Content-Length: 5");
  const full = rewriteResp(head, { flags: CLOSE });
  for (let cap = 0; cap < full.length; cap++) assert.is(rewriteResp(head, { flags: CLOSE, cap }), -1, `cap ${cap}`);
  assert.is(rewriteResp(head, { flags: CLOSE, cap: full.length }), full);
});

test.run();
