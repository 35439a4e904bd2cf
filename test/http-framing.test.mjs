// How the HTTP server reads requests off a real socket: any split of a
// request, pipelining (with and without request bodies), keep-alive and
// Connection semantics, and the connection's fate after an error. The
// servers (one per epoll mode) run in this process, attached to Node's event
// loop, on ephemeral ports.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { connect } from "node:net";
import { HttpConn, exchange, fetchOne, get, headerCount, sleep, closeAllConns, parseMultipart } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, startInProcess } from "./lib/http-server.mjs";

const A = "file a\n", B = "file b, longer\n", C = "file c, longest of the three\n";
const BIG = Buffer.alloc(200 * 1024, "0123456789abcdef"); // sent with sendfile, not from memory
const root = makeRoot({ "a.txt": A, "b.txt": B, "c.txt": C, "big.bin": BIG });
// Every test runs against both epoll modes (the CLI's default is et, the
// library's lt); `port` points at the server of the test being run.
const servers = { lt: await startInProcess(root, { mode: "lt" }), et: await startInProcess(root, { mode: "et" }) };
let port = servers.lt.port;

/** Registers the test once per mode. */
function both(name, fn) {
  for (const mode of ["lt", "et"]) {
    test(`${name} [${mode}]`, async () => { port = servers[mode].port; await fn(); });
  }
}

/** The response without the fields that legitimately vary per request. */
function shape(res) {
  return {
    status: res.status,
    headers: res.rawHeaders.filter(([n]) => n !== "Date"),
    body: res.body.toString("latin1"),
  };
}

// ---- split points ---------------------------------------------------------

const SAMPLE = "GET /b.txt?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: split/1.0\r\n" +
  "Accept: */*\r\nIf-None-Match: \"nope\"\r\nRange: bytes=0-\r\nIf-Range: \"nope\"\r\n\r\n";

both("a sample request sent in one write gets 200 with b.txt", async () => {
  const { responses: [res], conn } = await exchange(port, SAMPLE);
  conn.close();
  assert.is(res.status, 200);
  assert.is(res.body.toString(), B);
});

both("the sample request split in two writes at every byte position gets the same 200", async () => {
  const { responses: [ref], conn: c0 } = await exchange(port, SAMPLE);
  c0.close();
  const want = shape(ref);
  const bytes = Buffer.from(SAMPLE, "latin1");
  for (let at = 1; at < bytes.length; at++) {
    const conn = await HttpConn.open(port); // Nagle off: each write is its own segment
    await conn.write(bytes.subarray(0, at));
    await sleep(3);                          // the server reads the first part on its own
    await conn.write(bytes.subarray(at));
    const res = await conn.response();
    conn.close();
    assert.equal(shape(res), want, `split at ${at} (${JSON.stringify(SAMPLE.slice(0, at).slice(-12))} | ...)`);
  }
});

both("the sample request sent one byte per write gets the same 200", async () => {
  const { responses: [ref], conn: c0 } = await exchange(port, SAMPLE);
  c0.close();
  const conn = await HttpConn.open(port);
  for (const byte of Buffer.from(SAMPLE, "latin1")) {
    await conn.write(Buffer.from([byte]));
    await sleep(1);
  }
  const res = await conn.response();
  conn.close();
  assert.equal(shape(res), shape(ref));
});

// ---- pipelining -------------------------------------------------------------

both("three pipelined GETs in one write are answered in order", async () => {
  const { responses, conn } = await exchange(port, get("/a.txt") + get("/b.txt") + get("/c.txt"),
    { methods: ["GET", "GET", "GET"] });
  assert.equal(responses.map((r) => r.status), [200, 200, 200]);
  assert.equal(responses.map((r) => r.body.toString()), [A, B, C]);
  assert.ok(await conn.staysOpen(100), "the connection stays open after the three responses");
  conn.close();
});

both("pipelined GET, HEAD of a sendfile body, GET: in order, the HEAD without a body", async () => {
  const { responses, conn } = await exchange(port, get("/a.txt") + get("/big.bin", { method: "HEAD" }) + get("/big.bin") + get("/c.txt"),
    { methods: ["GET", "HEAD", "GET", "GET"] });
  conn.close();
  assert.equal(responses.map((r) => r.status), [200, 200, 200, 200]);
  assert.is(responses[0].body.toString(), A);
  assert.is(responses[1].headers["content-length"], String(BIG.length));
  assert.is(responses[1].body.length, 0);
  assert.ok(responses[2].body.equals(BIG), "the big body, byte for byte");
  assert.is(responses[3].body.toString(), C);
});

both("1000 pipelined requests in one write (more than the 32 KiB read buffer): all answered in order", async () => {
  const N = 1000;
  const paths = Array.from({ length: N }, (_, i) => ["/a.txt", "/b.txt", "/c.txt"][i % 3]);
  const { responses, conn } = await exchange(port, paths.map((p) => get(p)).join(""), { methods: paths.map(() => "GET"), timeoutMs: 15000 });
  conn.close();
  const want = { "/a.txt": A, "/b.txt": B, "/c.txt": C };
  const wrong = responses.map((r, i) => (r.status === 200 && r.body.toString() === want[paths[i]] ? null : i)).filter((i) => i !== null);
  assert.equal(wrong, [], "responses out of order or wrong");
});

both("a 10 KiB head that straddles the end of the read buffer, after pipelined requests, is parsed whole", async () => {
  // 29 requests of ~1 KiB fill the 32 KiB buffer to ~30 KiB; the big head
  // starts there and must be moved to the front to be completed.
  const pad = `X-Pad: ${"p".repeat(1000)}`;
  const small = Array.from({ length: 29 }, () => get("/a.txt", { headers: [pad] }));
  const big = get("/b.txt", { headers: Array.from({ length: 10 }, (_, i) => `X-Big${i}: ${"q".repeat(1000)}`) });
  const all = [...small, big, get("/c.txt")];
  const { responses, conn } = await exchange(port, all.join(""), { methods: all.map(() => "GET") });
  conn.close();
  assert.equal(responses.slice(-3).map((r) => r.body.toString()), [A, B, C]);
  assert.ok(responses.every((r) => r.status === 200));
});

both("pipelined GET with a Content-Length body: the body is discarded, the next request parsed right", async () => {
  // The body looks like a request: it must not be answered as one.
  const body = get("/c.txt");
  const bytes = get("/a.txt", { headers: [`Content-Length: ${body.length}`] }) + body + get("/b.txt");
  const { responses, conn } = await exchange(port, bytes, { methods: ["GET", "GET"] });
  assert.equal(responses.map((r) => r.body.toString()), [A, B]);
  assert.ok(await conn.staysOpen(150), "no third response (the body was not taken for a request)");
  conn.close();
});

both("pipelined GET with a chunked body: the body is discarded, the next request parsed right", async () => {
  const inner = get("/c.txt");
  const chunked = `5\r\nhello\r\n${inner.length.toString(16)};ext=1\r\n${inner}\r\n0\r\nTrailer-Field: x\r\n\r\n`;
  const bytes = get("/a.txt", { headers: ["Transfer-Encoding: chunked"] }) + chunked + get("/b.txt");
  const { responses, conn } = await exchange(port, bytes, { methods: ["GET", "GET"] });
  assert.equal(responses.map((r) => r.body.toString()), [A, B]);
  assert.ok(await conn.staysOpen(150), "no third response (the chunk data was not taken for a request)");
  conn.close();
});

both("a request body arriving in pieces, then the next request: both answered", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/a.txt", { headers: ["Content-Length: 10"] }) + "01234");
  await sleep(20);
  await conn.write("567");
  await sleep(20);
  await conn.write("89" + get("/b.txt").slice(0, 7));
  await sleep(20);
  await conn.write(get("/b.txt").slice(7));
  const r1 = await conn.response(), r2 = await conn.response();
  conn.close();
  assert.equal([r1.body.toString(), r2.body.toString()], [A, B]);
});

both("a chunked body split at every byte (one chunked request per split) is discarded correctly", async () => {
  const chunked = "4\r\nwxyz\r\n0\r\n\r\n";
  const bytes = Buffer.from(get("/a.txt", { headers: ["Transfer-Encoding: chunked"] }) + chunked + get("/b.txt"), "latin1");
  const headLen = bytes.indexOf("\r\n\r\n") + 4;
  for (let at = headLen; at < headLen + chunked.length; at++) {
    const conn = await HttpConn.open(port);
    await conn.write(bytes.subarray(0, at));
    await sleep(3);
    await conn.write(bytes.subarray(at));
    const r1 = await conn.response(), r2 = await conn.response();
    conn.close();
    assert.equal([r1.body.toString(), r2.body.toString()], [A, B], `split at body byte ${at - headLen}`);
  }
});

// ---- Expect: 100-continue (RFC 9110 §10.1.1) -----------------------------------

const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

/** Reads exactly the bytes of a bare 100 Continue off the connection. */
async function expectContinue(conn) {
  const res = await conn.response();
  assert.is(res.status, 100, `a 100 first, got ${res.status}`);
  assert.is(res.head + "\r\n\r\n", CONTINUE, "the interim response is a bare status line");
}

both("Expect: 100-continue: the 100 comes before the body is sent, then the answer; the next request is served", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/a.txt", { headers: ["Expect: 100-continue", "Content-Length: 10"] }));
  await expectContinue(conn);               // the client sent no body byte yet
  await conn.write("0123456789" + get("/b.txt"));
  const r1 = await conn.response(), r2 = await conn.response();
  assert.ok(await conn.staysOpen(100), "kept alive, nothing more");
  conn.close();
  assert.equal([r1.status, r1.body.toString(), r2.status, r2.body.toString()], [200, A, 200, B]);
});

both("Expect: 100-continue with a chunked body, and on a HEAD of a sendfile body", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/a.txt", { headers: ["Transfer-Encoding: chunked", "Expect: 100-Continue"] }));
  await expectContinue(conn);
  await conn.write("3\r\nabc\r\n0\r\n\r\n");
  assert.is((await conn.response()).body.toString(), A);
  await conn.write(get("/big.bin", { method: "HEAD", headers: ["Expect: 100-continue", "Content-Length: 2"] }));
  await expectContinue(conn);
  await conn.write("xy");
  const h = await conn.response({ method: "HEAD" });
  conn.close();
  assert.equal([h.status, h.headers["content-length"], h.body.length], [200, String(BIG.length), 0]);
});

both("Expect: 100-continue with the body already sent, or with no body: no 100", async () => {
  // The whole body came with the head: answered at once, the 100 left out
  // (RFC 9110 §10.1.1 lets a server omit it once it has the content).
  const { responses, conn } = await exchange(port,
    get("/a.txt", { headers: ["Expect: 100-continue", "Content-Length: 3"] }) + "abc" +
    get("/b.txt", { headers: ["Expect: 100-continue", "Content-Length: 0"] }) +
    get("/c.txt", { headers: ["Expect: 100-continue"] }), { methods: ["GET", "GET", "GET"] });
  assert.ok(await conn.staysOpen(100), "nothing more: no stray 100");
  conn.close();
  assert.equal(responses.map((r) => [r.status, r.body.toString()]), [[200, A], [200, B], [200, C]]);
});

both("HTTP/1.0 with Expect: 100-continue gets no 100 (the expectation is ignored), then its answer", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/a.txt", { version: "1.0", host: null, headers: ["Connection: keep-alive", "Expect: 100-continue", "Content-Length: 4"] }));
  assert.ok(await conn.staysOpen(200), "no interim response for a 1.0 client");
  await conn.write("abcd");
  const res = await conn.response();
  conn.close();
  assert.equal([res.status, res.body.toString(), res.headers.connection], [200, A, "keep-alive"]);
});

both("a request refused without reading its body gets its final status, no 100 (405, 413, 400)", async () => {
  const cases = [
    ["POST", `POST /a.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n`, 405],
    ["PUT chunked", `PUT /a.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n`, 405],
    ["body over the limit", get("/a.txt", { headers: ["Expect: 100-continue", "Content-Length: 2000000"] }), 413],
    ["CL and TE", get("/a.txt", { headers: ["Expect: 100-continue", "Content-Length: 5", "Transfer-Encoding: chunked"] }), 400],
  ];
  for (const [name, head, status] of cases) {
    const { responses: [res], conn } = await exchange(port, head);
    const end = await conn.closedByServer();
    conn.close();
    assert.is(res.status, status, name);
    assert.is(res.headers.connection, "close", `${name}: closes`);
    assert.is(end.extra.length, 0, `${name}: nothing after the final response`);
  }
});

both("an expectation other than 100-continue: 417 Expectation Failed, the connection closes", async () => {
  for (const expect of ["foo", "100-continue, foo", "100-continue;x=1"]) {
    const { responses: [res], conn } = await exchange(port, get("/a.txt", { headers: [`Expect: ${expect}`, "Content-Length: 3"] }) + "abc" + get("/b.txt"));
    const end = await conn.closedByServer();
    conn.close();
    assert.is(res.status, 417, expect);
    assert.is(res.reason, "Expectation Failed");
    assert.is(res.body.toString(), "417 Expectation Failed\n");
    assert.is(res.headers.connection, "close");
    assert.is(end.extra.length, 0, `${expect}: the pipelined GET is not answered`);
  }
  // an empty Expect expects nothing
  const ok = await fetchOne(port, "/a.txt", { headers: ["Expect:"] });
  assert.is(ok.status, 200);
});

both("the body after a 100 is read in pieces; a 404 is the answer after it, and the connection stays", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/missing.txt", { headers: ["Expect: 100-continue", "Content-Length: 6"] }));
  await expectContinue(conn);
  await conn.write("ab");
  await sleep(20);
  await conn.write("cd");
  await sleep(20);
  await conn.write("ef" + get("/a.txt"));
  const r1 = await conn.response(), r2 = await conn.response();
  conn.close();
  assert.equal([r1.status, r2.status, r2.body.toString()], [404, 200, A]);
});

// ---- several ranges in both modes ---------------------------------------------

both("multipart/byteranges of a sendfile and a memory body, pipelined: exact parts, then the next response", async () => {
  const { responses: [big, small, after], conn } = await exchange(port,
    get("/big.bin", { headers: ["Range: bytes=100000-100009,0-4,-3"] }) + get("/a.txt", { headers: ["Range: bytes=0-0,2-"] }) + get("/c.txt"),
    { methods: ["GET", "GET", "GET"] });
  conn.close();
  const parts = (r) => parseMultipart(r).parts.map((p) => [p.first, p.last, p.data.toString("latin1")]);
  const bigText = BIG.toString("latin1");
  const n = BIG.length;
  assert.equal(parts(big), [[0, 4, bigText.slice(0, 5)], [100000, 100009, bigText.slice(100000, 100010)], [n - 3, n - 1, bigText.slice(n - 3)]]);
  assert.equal(parts(small), [[0, 0, A.slice(0, 1)], [2, A.length - 1, A.slice(2)]]);
  assert.is(after.body.toString(), C);
});

// ---- keep-alive and Connection ---------------------------------------------

both("HTTP/1.1 keeps the connection: two requests one after the other on one socket", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/a.txt"));
  const r1 = await conn.response();
  assert.is(r1.headers.connection, undefined, "no Connection header needed in 1.1");
  await conn.write(get("/b.txt"));
  const r2 = await conn.response();
  assert.ok(await conn.staysOpen(100), "still open after the second response");
  conn.close();
  assert.equal([r1.body.toString(), r2.body.toString()], [A, B]);
});

both("Connection: close is honoured after the whole response is flushed (EOF after the body)", async () => {
  for (const path of ["/a.txt", "/big.bin"]) {
    const { responses: [res], conn } = await exchange(port, get(path, { headers: ["Connection: close"] }));
    const end = await conn.closedByServer();
    conn.close();
    assert.is(res.status, 200);
    assert.is(res.headers.connection, "close");
    assert.is(res.body.length, path === "/a.txt" ? A.length : BIG.length, `${path}: the full body before EOF`);
    assert.ok(end.eof && !end.reset, `${path}: a clean EOF, no reset`);
    assert.is(end.extra.length, 0, `${path}: nothing after the body`);
  }
});

both("Connection: close on the first of two pipelined requests: one response, then EOF", async () => {
  const { responses: [res], conn } = await exchange(port, get("/a.txt", { headers: ["Connection: close"] }) + get("/b.txt"));
  const end = await conn.closedByServer();
  conn.close();
  assert.is(res.body.toString(), A);
  assert.is(end.extra.length, 0, "the second request is not answered");
});

both("HTTP/1.0 without keep-alive: the response says close and the connection closes", async () => {
  const { responses: [res], conn } = await exchange(port, get("/a.txt", { version: "1.0", host: null }));
  const end = await conn.closedByServer();
  conn.close();
  assert.is(res.status, 200);
  assert.is(res.version, "1.1");
  assert.is(res.headers.connection, "close");
  assert.is(res.body.toString(), A);
  assert.ok(end.eof, "EOF after the response");
});

both("HTTP/1.0 with Connection: keep-alive: confirmed in the response, the connection stays", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/a.txt", { version: "1.0", headers: ["Connection: keep-alive"] }));
  const r1 = await conn.response();
  assert.is(r1.headers.connection, "keep-alive");
  await conn.write(get("/b.txt", { version: "1.0", headers: ["Connection: keep-alive"] }));
  const r2 = await conn.response();
  assert.is(r2.headers.connection, "keep-alive");
  assert.ok(await conn.staysOpen(100), "still open");
  conn.close();
  assert.equal([r1.body.toString(), r2.body.toString()], [A, B]);
});

both("a 404 keeps the connection (not an error in the request)", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(get("/missing.txt") + get("/a.txt"));
  const r1 = await conn.response(), r2 = await conn.response();
  assert.ok(await conn.staysOpen(100), "still open");
  conn.close();
  assert.is(r1.status, 404);
  assert.is(r1.headers.connection, undefined);
  assert.is(r2.body.toString(), A);
});

// ---- after an error ---------------------------------------------------------

both("after an error response the connection closes, pipelined requests are dropped, others are served", async () => {
  const cases = [
    ["bad escape", "GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400],
    ["unknown method", "BREW /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", 501],
    ["POST", "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", 405],
  ];
  for (const [name, bad, status] of cases) {
    const { responses: [res], conn } = await exchange(port, bad + get("/b.txt"));
    const end = await conn.closedByServer();
    conn.close();
    assert.is(res.status, status, name);
    assert.is(res.headers.connection, "close", `${name}: says it closes`);
    assert.ok(end.eof, `${name}: EOF`);
    assert.is(end.extra.length, 0, `${name}: the pipelined GET is not answered`);
    const other = await fetchOne(port, "/c.txt");
    assert.is(other.body.toString(), C, `${name}: another connection is served`);
  }
});

both("an error response is readable even when the client keeps sending (lingering close, no reset)", async () => {
  const conn = await HttpConn.open(port);
  // 405 without reading the 64 KiB body: the server must not reset the
  // connection under the response because of the unread bytes.
  await conn.write(`POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n`);
  const res = await conn.response();
  await conn.write(Buffer.alloc(65536, "x")).catch(() => {});
  const end = await conn.closedByServer();
  conn.close();
  assert.is(res.status, 405);
  assert.is(res.body.toString(), "405 Method Not Allowed\n");
  assert.ok(end.eof, "EOF after the answer");
});

test("after an error, a client that never closes its side is let go by the lingering close (2 s), not the idle timeout", async () => {
  // A server of its own, so its connection count is this test's alone.
  const own = await startInProcess(root, { idleTimeoutMs: 20000, headerTimeoutMs: 20000 });
  try {
    const sock = connect({ host: "127.0.0.1", port: own.port, allowHalfOpen: true });
    let got = "", ended = false;
    sock.on("data", (d) => { got += d; });
    sock.on("end", () => { ended = true; });
    sock.on("error", () => {});
    await new Promise((resolve) => sock.once("connect", resolve));
    sock.write("GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n");
    const t0 = Date.now();
    while (!ended && Date.now() - t0 < 5000) await sleep(10);
    assert.ok(ended, "the server shut its write side after the response");
    assert.ok(got.startsWith("HTTP/1.1 400 "), got.slice(0, 40));
    while (own.server.stats().liveConnections > 0 && Date.now() - t0 < 12000) await sleep(50);
    const ms = Date.now() - t0;
    sock.destroy();
    assert.is(own.server.stats().liveConnections, 0, `the server closed its end (after ${ms} ms)`);
    assert.ok(ms < 10000, `within the lingering time, far from the 20 s timeouts (${ms} ms)`);
  } finally {
    own.stop();
  }
});

both("Server and Date are on every response; one of each", async () => {
  const res = await fetchOne(port, "/a.txt");
  assert.is(headerCount(res, "Server"), 1);
  assert.is(headerCount(res, "Date"), 1);
  assert.is(headerCount(res, "Content-Length"), 1);
});

test.after(() => {
  closeAllConns();
  servers.lt.stop();
  servers.et.stop();
  removeRoot(root);
});

test.run();
