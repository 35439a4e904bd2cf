// What the HTTP server refuses, and how: path traversal in every spelling,
// request-smuggling shapes, size limits, methods and versions it does not
// serve. Every refusal of a malformed request must be answered with its
// status, close the connection (EOF), and leave the server serving others.
// The servers (one per epoll mode) run in this process on ephemeral ports.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { symlinkSync, renameSync } from "node:fs";
import { join } from "node:path";
import { HttpConn, exchange, fetchOne, get, sleep, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, startInProcess } from "./lib/http-server.mjs";
import { FakeHost, fillFileRecord } from "./lib/fakehost.mjs";
import abi from "./lib/abi.mjs";

const SECRET = "outside the docroot: must never be served\n";
const A = "inside a\n";
const outside = makeRoot({ "secret.txt": SECRET }, "wr-http-outside-");
const root = makeRoot({ "a.txt": A, "sub/b.txt": "inside b\n", "%2e%2e/note.txt": "a directory literally named %2e%2e\n" });
// Symlinks escaping the root (absolute and relative targets, a directory),
// and two staying inside it (relative targets).
symlinkSync(join(outside, "secret.txt"), join(root, "escape-abs.txt"));
symlinkSync(join("..", outside.split("/").pop(), "secret.txt"), join(root, "escape-rel.txt"));
symlinkSync(outside, join(root, "escape-dir"));
symlinkSync("sub/b.txt", join(root, "link-in.txt"));
symlinkSync("sub", join(root, "link-dir"));
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

/**
 * Sends raw bytes on a fresh connection and expects one response with
 * `status`, then EOF (`closes`), or the connection kept (`closes: false`).
 */
async function expectStatus(bytes, status, { closes = true, method = "GET", what = "" } = {}) {
  const { responses: [res], conn } = await exchange(port, bytes, { methods: [method] });
  const label = what || JSON.stringify(typeof bytes === "string" ? bytes.slice(0, 60) : "bytes");
  assert.is(res.status, status, `${label}: status`);
  assert.not.ok(res.body.includes(SECRET.trim()), `${label}: the outside file's content never appears`);
  if (closes) {
    assert.is(res.headers.connection, "close", `${label}: says it closes`);
    const end = await conn.closedByServer();
    assert.ok(end.eof || end.reset, `${label}: closed`);
    assert.ok(end.eof, `${label}: closed with EOF, not a reset`);
    assert.is(end.extra.length, 0, `${label}: nothing after the response`);
  }
  conn.close();
  return res;
}

/** Another connection is served: the server survived whatever came before. */
async function stillServing(label) {
  const res = await fetchOne(port, "/a.txt");
  assert.is(res.status, 200, `${label}: a second connection is served`);
  assert.is(res.body.toString(), A, `${label}: with the right bytes`);
}

// ---- traversal ----------------------------------------------------------------

// [name, request-target as sent on the wire, expected status]
const traversal = [
  ["raw ../ (curl --path-as-is)", "/../etc/passwd", 400],
  ["raw ../ below a directory", "/sub/../../etc/passwd", 400],
  ["encoded dots %2e%2e", "/%2e%2e/%2e%2e/etc/passwd", 400],
  ["mixed-case encoded dots %2E%2e", "/sub/%2E%2e/%2E%2e/etc/passwd", 400],
  ["half-encoded dots .%2e", "/.%2e/etc/passwd", 400],
  ["double-encoded %252e%252e (a literal name, not dots)", "/%252e%252e/%252e%252e/etc/passwd", 404],
  ["raw backslashes \\..\\", "/\\..\\..\\etc\\passwd", 400],
  ["encoded backslash %5c", "/..%5c..%5cetc%5cpasswd", 400],
  ["encoded backslash %5C after a name", "/sub%5C..%5Ca.txt", 400],
  ["encoded NUL %00", "/a.txt%00.html", 400],
  ["encoded NUL before ../", "/%00/../etc/passwd", 400],
  ["encoded slash %2f", "/sub%2f..%2f..%2fetc%2fpasswd", 400],
  ["absolute-form with ../", "http://t/../etc/passwd", 400],
  ["symlink to a file outside the root (absolute target)", "/escape-abs.txt", 404],
  ["symlink to a file outside the root (relative target)", "/escape-rel.txt", 404],
  ["a file through a symlinked directory outside the root", "/escape-dir/secret.txt", 404],
];

for (const [name, target, status] of traversal) {
  both(`traversal: ${name} -> ${status}`, async () => {
    // 400s are malformed requests (connection closed); 404s are ordinary misses.
    await expectStatus(`GET ${target} HTTP/1.1\r\nHost: t\r\n\r\n`, status, { closes: status === 400, what: name });
    await stillServing(name);
  });
}

both("traversal: the double-encoded name is served as the literal directory %2e%2e when it exists", async () => {
  const res = await fetchOne(port, "/%252e%252e/note.txt");
  assert.is(res.status, 200);
  assert.is(res.body.toString(), "a directory literally named %2e%2e\n");
});

both("traversal: a relative symlink inside the root is served, and a symlinked directory inside too", async () => {
  const a = await fetchOne(port, "/link-in.txt");
  assert.is(a.status, 200);
  assert.is(a.body.toString(), "inside b\n");
  const b = await fetchOne(port, "/link-dir/b.txt");
  assert.is(b.status, 200);
  assert.is(b.body.toString(), "inside b\n");
});

both("traversal: `..` that stays inside the root is resolved, not refused", async () => {
  const res = await fetchOne(port, "/sub/../a.txt");
  assert.is(res.status, 200);
  assert.is(res.body.toString(), A);
});

test("traversal: a symlink replaced to point outside is refused once the cache revalidates", async () => {
  // Served while it points inside...
  symlinkSync("a.txt", join(root, "flip.txt"));
  assert.is((await fetchOne(port, "/flip.txt")).body.toString(), A);
  // ...then swapped for one that escapes: never the outside content, and 404
  // once the entry is re-checked (within ~1 s).
  const tmp = join(root, "flip.tmp");
  symlinkSync(join(outside, "secret.txt"), tmp);
  renameSync(tmp, join(root, "flip.txt"));
  const deadline = Date.now() + 4000;
  let res;
  for (;;) {
    res = await fetchOne(port, "/flip.txt");
    assert.not.ok(res.body.toString().includes("outside the docroot"), "never the outside file");
    if (res.status === 404 || Date.now() > deadline) break;
    await sleep(100);
  }
  assert.is(res.status, 404, "refused after revalidation");
});

// ---- status codes for requests we do not serve ---------------------------------

both("405 for POST (and other known methods), with Allow: GET, HEAD", async () => {
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) {
    const res = await expectStatus(`${method} /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n`, 405, { what: method });
    assert.is(res.headers.allow, "GET, HEAD", `${method}: Allow`);
  }
  await stillServing("405");
});

both("501 for an unknown method (BREW)", async () => {
  await expectStatus("BREW / HTTP/1.1\r\nHost: t\r\n\r\n", 501);
  await stillServing("501 method");
});

both("501 for Transfer-Encoding: gzip (and gzip, chunked)", async () => {
  await expectStatus("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
  await expectStatus("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
  await stillServing("501 coding");
});

both("505 for an HTTP/2.0 request line", async () => {
  await expectStatus("GET /a.txt HTTP/2.0\r\nHost: t\r\n\r\n", 505);
  await stillServing("505");
});

both("HTTP/1.2 is served as 1.1 (compatible minor version)", async () => {
  const { responses: [res], conn } = await exchange(port, "GET /a.txt HTTP/1.2\r\nHost: t\r\n\r\n");
  conn.close();
  assert.is(res.status, 200);
  assert.is(res.version, "1.1");
});

// ---- limits -------------------------------------------------------------------------

both("414 for a request line over 8 KiB, even before the line is complete", async () => {
  await expectStatus(`GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: t\r\n\r\n`, 414);
  // No CRLF ever: the limit holds on partial input.
  await expectStatus(`GET /${"a".repeat(9000)}`, 414, { what: "unterminated long line" });
  await stillServing("414");
});

both("a request line just under 8 KiB is parsed, not refused (a long query; 404: no such file)", async () => {
  const line = `GET /missing.txt?q=${"q".repeat(8100)} HTTP/1.1\r\n`;
  assert.ok(line.length < 8192, "under the limit");
  await expectStatus(line + "Host: t\r\n\r\n", 404, { closes: false });
});

both("431 for a header block over 16 KiB (one big field, and many fields)", async () => {
  await expectStatus(`GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Big: ${"v".repeat(17 * 1024)}\r\n\r\n`, 431, { what: "one big field" });
  const many = Array.from({ length: 90 }, (_, i) => `X-F${i}: ${"w".repeat(200)}`).join("\r\n");
  await expectStatus(`GET /a.txt HTTP/1.1\r\nHost: t\r\n${many}\r\n\r\n`, 431, { what: "90 fields of 200 bytes" });
  await stillServing("431 size");
});

both("431 for more than 100 header fields; exactly 100 is fine", async () => {
  const fields = (n) => Array.from({ length: n }, (_, i) => `X-H${i}: ${i}`).join("\r\n");
  await expectStatus(`GET /a.txt HTTP/1.1\r\nHost: t\r\n${fields(100)}\r\n\r\n`, 431, { what: "101 fields with Host" });
  const { responses: [ok], conn } = await exchange(port, `GET /a.txt HTTP/1.1\r\nHost: t\r\n${fields(99)}\r\n\r\n`);
  conn.close();
  assert.is(ok.status, 200, "100 fields with Host");
  await stillServing("431 count");
});

both("413 for a Content-Length above the 1 MiB body limit; exactly 1 MiB is read and discarded", async () => {
  const MiB = 1024 * 1024;
  await expectStatus(`GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: ${MiB + 1}\r\n\r\n`, 413);
  await expectStatus(`GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\r\n`, 413, { what: "huge CL" });
  const conn = await HttpConn.open(port);
  await conn.write(`GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: ${MiB}\r\n\r\n`);
  await conn.write(Buffer.alloc(MiB, "z"));
  await conn.write(get("/sub/b.txt"));
  const r1 = await conn.response(), r2 = await conn.response();
  conn.close();
  assert.is(r1.status, 200, "1 MiB body: served");
  assert.is(r2.body.toString(), "inside b\n", "and the request after it");
});

both("413 for a chunked body whose chunks add up to more than 1 MiB", async () => {
  const conn = await HttpConn.open(port);
  await conn.write(`GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n`);
  await conn.write(Buffer.alloc(0x80000, "c"));
  await conn.write(`\r\n80001\r\n`);
  const res = await conn.response();
  const end = await conn.closedByServer();
  conn.close();
  assert.is(res.status, 413);
  assert.ok(end.eof, "closed");
  await stillServing("413 chunked");
});

// ---- request smuggling shapes: 400 and close ---------------------------------------

const smuggling = [
  ["Content-Length with Transfer-Encoding", "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
  ["Transfer-Encoding before Content-Length", "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"],
  ["differing duplicate Content-Length lines", "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"],
  ["differing Content-Length list", "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nabcdef"],
  ["signed Content-Length", "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nabcde"],
  ["bad chunk size", "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"],
  ["chunk size with a 0x prefix", "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"],
  ["chunk data longer than its size", "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"],
  ["chunked twice", "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"],
  ["Transfer-Encoding in HTTP/1.0", "GET /a.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
  ["whitespace before the colon", "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nabcde"],
  ["tab before the colon", "GET /a.txt HTTP/1.1\r\nHost\t: t\r\n\r\n"],
  ["missing Host in HTTP/1.1", "GET /a.txt HTTP/1.1\r\nUser-Agent: x\r\n\r\n"],
  ["duplicate Host", "GET /a.txt HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n"],
  ["Host with a space", "GET /a.txt HTTP/1.1\r\nHost: t u\r\n\r\n"],
  ["obs-fold (continuation line)", "GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n"],
  ["obs-fold of Transfer-Encoding", "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"],
  ["bare LF line endings", "GET /a.txt HTTP/1.1\nHost: t\n\n"],
  ["bare LF after a CRLF line", "GET /a.txt HTTP/1.1\r\nHost: t\nX: y\r\n\r\n"],
  ["bare CR in a value", "GET /a.txt HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n"],
  ["NUL in a field value", "GET /a.txt HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n"],
  ["two spaces in the request line", "GET  /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"],
  ["HTTP/0.9 style request line", "GET /a.txt\r\n\r\n"],
  ["lower-case version", "GET /a.txt http/1.1\r\nHost: t\r\n\r\n"],
  ["two leading empty lines", "\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"],
];

for (const [name, bytes] of smuggling) {
  both(`smuggling: ${name} -> 400 and close`, async () => {
    // A pipelined GET after it must never be answered.
    await expectStatus(bytes + get("/sub/b.txt"), 400, { what: name });
    await stillServing(name);
  });
}

both("one leading empty line before the request line is tolerated (RFC 9112 §2.2)", async () => {
  const { responses: [res], conn } = await exchange(port, "\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
  conn.close();
  assert.is(res.status, 200);
  assert.is(res.body.toString(), A);
});

both("identical duplicate Content-Length is accepted and framed right", async () => {
  const bytes = "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nxyz" + get("/sub/b.txt");
  const { responses, conn } = await exchange(port, bytes, { methods: ["GET", "GET"] });
  conn.close();
  assert.equal(responses.map((r) => r.status), [200, 200]);
  assert.is(responses[1].body.toString(), "inside b\n");
});

both("a smuggling attempt split over many writes is refused the same way", async () => {
  const bytes = "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  const conn = await HttpConn.open(port);
  for (let i = 0; i < bytes.length; i += 7) {
    await conn.write(bytes.slice(i, i + 7));
    await sleep(2);
  }
  const res = await conn.response();
  const end = await conn.closedByServer();
  conn.close();
  assert.is(res.status, 400);
  assert.ok(end.eof);
});

// Out of fds is a shortage, not a missing file: 503 with Retry-After (never a
// cached 404 that outlives the shortage), the path tried again once it may be
// over, and an entry already cached keeps being served when its re-check
// cannot get an fd. On the bare core: the fake kernel decides what open returns.
test("out of fds: an open that fails EMFILE is 503 Retry-After, not a cached 404; the path is retried; a cached file survives its re-check failing", () => {
  const BODY = "shortage test body\n";
  let mode = "emfile";
  const opens = []; // [a3 (1: stat only), result]
  const h = new FakeHost({});
  h.answer(abi.OP_OPEN, (sqe, host) => {
    let r;
    if (mode === "emfile") r = -abi.EMFILE;
    else {
      fillFileRecord(host, sqe.a2, BODY.length);
      r = sqe.a3 === 1 ? 0 : 20;
    }
    opens.push([sqe.a3, r]);
    return r;
  });
  h.answer(abi.OP_PREAD, (sqe, host) => host.put(sqe.a0, BODY.slice(sqe.a2, sqe.a2 + sqe.a1)));
  h.listen(3, abi.PROTO_HTTP);
  h.setTime(1_000);
  const REQ = "GET /f.txt HTTP/1.1\r\nHost: a\r\n\r\n";
  h.queueAccept(3, 10);
  h.feed(10, REQ);
  h.tick([{ fd: 3, events: abi.EV_READABLE }]);
  const ask = (t) => {
    h.setTime(t);
    h.feed(10, REQ);
    h.tick([{ fd: 10, events: abi.EV_READABLE }]);
    return h.takeOutput(10).toString("latin1");
  };
  const first = h.takeOutput(10).toString("latin1");
  assert.match(first, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(first, /\r\nRetry-After: 1\r\n/i);
  assert.not.match(first, /Connection: close/i, "the connection is kept: the next request may find an fd");
  // 5 ms later (within the 10 ms retry window), still short: answered from the shared failure, no second open.
  assert.match(ask(1_005), /^HTTP\/1\.1 503 /);
  assert.equal(opens, [[0, -abi.EMFILE]], "one open for both requests");
  // Once fds are back, the next request after the retry window gets the file (a 404 cached for a
  // second, the old behaviour, would still answer 404 here).
  mode = "ok";
  const ok = ask(1_100);
  assert.match(ok, /^HTTP\/1\.1 200 OK\r\n/);
  assert.ok(ok.endsWith(BODY), ok);
  // The file is cached. Its re-check (due after a second) fails EMFILE: the entry is kept and
  // served, and no fresh open is tried for it.
  mode = "emfile";
  const n = opens.length;
  const kept = ask(2_500);
  assert.match(kept, /^HTTP\/1\.1 200 OK\r\n/, "served from the cached entry");
  assert.ok(kept.endsWith(BODY));
  assert.equal(opens.slice(n), [[1, -abi.EMFILE]], "one stat, no open");
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test("out of fds: the file cache gives back an unused cached file's fd, so the retry can open", () => {
  const failing = new Set(["b.txt"]);
  const fds = { "a.txt": 20, "b.txt": 21 };
  const h = new FakeHost({});
  h.answer(abi.OP_OPEN, (sqe, host) => {
    const path = Buffer.from(host.u8.subarray(sqe.a0, sqe.a0 + sqe.a1)).toString("latin1").replace(/^\/+/, "");
    if (failing.has(path)) return -abi.EMFILE;
    fillFileRecord(host, sqe.a2, 40_000); // over the in-memory size: kept open, sent with sendfile
    return sqe.a3 === 1 ? 0 : fds[path];
  });
  h.listen(3, abi.PROTO_HTTP);
  h.setTime(1_000);
  h.queueAccept(3, 10);
  const ask = (t, path, batch = [{ fd: 10, events: abi.EV_READABLE }]) => {
    h.setTime(t);
    h.feed(10, `GET /${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
    const from = h.log.length;
    h.tick(batch);
    return { text: h.takeOutput(10).toString("latin1"), from };
  };
  assert.match(ask(1_000, "a.txt", [{ fd: 3, events: abi.EV_READABLE }]).text, /^HTTP\/1\.1 200 /);
  const b = ask(1_001, "b.txt");
  assert.match(b.text, /^HTTP\/1\.1 503 /);
  assert.equal(h.ops(abi.OP_CLOSE, { from: b.from }).map((o) => o.fd), [20], "a.txt's cached fd closed");
  failing.clear(); // the fd it gave back is there to take
  assert.match(ask(1_020, "b.txt").text, /^HTTP\/1\.1 200 /);
  // a.txt is no longer cached: opened again.
  const a = ask(1_021, "a.txt");
  assert.match(a.text, /^HTTP\/1\.1 200 /);
  assert.is(h.ops(abi.OP_OPEN, { from: a.from }).filter((o) => o.a3 === 0).length, 1, "a.txt reopened");
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test("the open-file cache keeps at most fileCacheFds files open: a response done with a file closes a cached one not in use (clock order); small files keep none", () => {
  // *.txt: 40,000 bytes, over the in-memory size: kept open for sendfile. *.small: read into memory, then closed.
  const BODY = "x\n";
  const h = new FakeHost({ config: { fileCacheFds: 2 } });
  const fdOf = (path) => 100 + path.charCodeAt(0) + (path.endsWith(".small") ? 50 : 0); // a.txt -> 197...
  h.answer(abi.OP_OPEN, (sqe, host) => {
    const path = Buffer.from(host.u8.subarray(sqe.a0, sqe.a0 + sqe.a1)).toString("latin1").replace(/^\/+/, "");
    fillFileRecord(host, sqe.a2, path.endsWith(".small") ? BODY.length : 40_000);
    return sqe.a3 === 1 ? 0 : fdOf(path);
  });
  h.answer(abi.OP_PREAD, (sqe, host) => host.put(sqe.a0, BODY));
  h.listen(3, abi.PROTO_HTTP);
  h.queueAccept(3, 10);
  let first = true;
  const get = (path, method = "GET") => {
    h.feed(10, `${method} /${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
    const from = h.log.length;
    h.tick([{ fd: first ? 3 : 10, events: abi.EV_READABLE }]);
    first = false;
    assert.match(h.takeOutput(10).toString("latin1"), /^HTTP\/1\.1 200 /, path);
    return { opens: h.ops(abi.OP_OPEN, { from }).filter((o) => o.a3 === 0).length, closes: h.ops(abi.OP_CLOSE, { from }).map((o) => o.fd) };
  };
  const s = get("s.small");
  assert.equal(s, { opens: 1, closes: [fdOf("s.small")] }, "a small file: read, then closed");
  assert.equal(get("a.txt"), { opens: 1, closes: [] });
  assert.equal(get("b.txt"), { opens: 1, closes: [] }, "two files open: the budget");
  assert.equal(get("a.txt"), { opens: 0, closes: [] }, "a cache hit opens nothing");
  const c = get("c.txt");
  assert.is(c.opens, 1);
  assert.is(c.closes.length, 1, "one cached file closed for the third");
  assert.ok([fdOf("a.txt"), fdOf("b.txt")].includes(c.closes[0]), `a cached file's fd: ${c.closes}`);
  // Every further new file keeps it at two open: one close per open.
  for (const p of ["d.txt", "e.txt", "f.txt"]) assert.equal(get(p).closes.length, 1, p);
  // HEAD holds no file (nothing is sent from it): the budget is kept all the same.
  for (const p of ["g.txt", "h.txt", "i.txt"]) assert.equal(get(p, "HEAD").closes.length, 1, `HEAD ${p}`);
  // The small file stayed cached through all of that (nothing is evicted while the cache has room).
  assert.equal(get("s.small"), { opens: 0, closes: [] });
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test.after(() => {
  closeAllConns();
  servers.lt.stop();
  servers.et.stop();
  removeRoot(root);
  removeRoot(outside);
});

test.run();
