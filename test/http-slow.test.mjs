// Slow and idle clients against the real CLI in a child process: the header
// timeout is not extended by trickling bytes (slow-loris), idle keep-alive
// connections are closed, a slow reader of a large file still gets every
// byte (sendfile resumed on EPOLLOUT, in both epoll modes), and a reader that
// stops reading altogether is let go at the idle timeout. A multipart
// byteranges body read slowly goes through the same EAGAIN/EPOLLOUT path,
// part header and range after part header and range.
//
// Timeouts are asserted with wide bounds: the close must come after the
// configured time has plausibly passed and well before anything else (a
// larger idle timeout, the test's own limit) could explain it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { HttpConn, get, sleep, closeAllConns, parseResponse, parseMultipart } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, spawnServer } from "./lib/http-server.mjs";

const BIG = randomBytes(8 * 1024 * 1024);
const BIG_SHA = createHash("sha256").update(BIG).digest("hex");
const root = makeRoot({ "a.txt": "small a\n", "big.bin": BIG });
const servers = [];

async function serve(...flags) {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", ...flags]);
  servers.push(s);
  return s;
}

// ---- header timeout (slow-loris) -------------------------------------------------

test("slow-loris: a head trickled one byte per 200 ms is closed at the header timeout (1 s)", async () => {
  const s = await serve("--header-timeout", "1000", "--idle-timeout", "20000");
  const conn = await HttpConn.open(s.port);
  const t0 = Date.now();
  await conn.write("GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ");
  let sent = 0;
  while (!conn.ended && !conn.error && !conn.closed && Date.now() - t0 < 8000) {
    await sleep(200);
    try { await conn.write("z"); sent++; } catch { break; }
  }
  const end = await conn.closedByServer(1000);
  const ms = Date.now() - t0;
  conn.close();
  assert.ok(sent >= 3, `the client kept sending (${sent} bytes after the partial head)`);
  assert.ok(ms >= 700, `not closed before the header timeout (${ms} ms)`);
  assert.ok(ms < 5000, `closed at the header timeout, not at the 20 s idle timeout (${ms} ms)`);
  assert.is(end.extra.length, 0, "closed without a response");
});

test("a head completed slowly but within the header timeout is served", async () => {
  const s = await serve("--header-timeout", "3000");
  const conn = await HttpConn.open(s.port);
  const req = get("/a.txt");
  for (let i = 0; i < req.length; i += 8) {
    await conn.write(req.slice(i, i + 8));
    await sleep(40);
  }
  const res = await conn.response();
  conn.close();
  assert.is(res.status, 200);
  assert.is(res.body.toString(), "small a\n");
});

test("slow-loris on the second request of a keep-alive connection is closed too", async () => {
  const s = await serve("--header-timeout", "1000", "--idle-timeout", "20000");
  const conn = await HttpConn.open(s.port);
  await conn.write(get("/a.txt"));
  assert.is((await conn.response()).status, 200);
  const t0 = Date.now();
  await conn.write("GET /a.txt HTTP/1.1\r\n");
  while (!conn.ended && !conn.error && !conn.closed && Date.now() - t0 < 8000) {
    await sleep(200);
    await conn.write("X").catch(() => {});
  }
  await conn.closedByServer(1000);
  const ms = Date.now() - t0;
  conn.close();
  assert.ok(ms >= 700 && ms < 5000, `closed at the header timeout (${ms} ms)`);
});

// ---- idle timeout -----------------------------------------------------------------

test("an idle keep-alive connection is closed at the idle timeout (1 s), cleanly", async () => {
  const s = await serve("--idle-timeout", "1000");
  const conn = await HttpConn.open(s.port);
  await conn.write(get("/a.txt"));
  assert.is((await conn.response()).status, 200);
  const t0 = Date.now();
  const end = await conn.closedByServer(6000);
  const ms = Date.now() - t0;
  conn.close();
  assert.ok(ms >= 700, `not before the idle timeout (${ms} ms)`);
  assert.ok(end.eof, "EOF");
  assert.is(end.extra.length, 0, "nothing sent on an idle close");
});

test("a connection with a request every 300 ms outlives the 1 s idle timeout", async () => {
  const s = await serve("--idle-timeout", "1000");
  const conn = await HttpConn.open(s.port);
  const t0 = Date.now();
  let n = 0;
  while (Date.now() - t0 < 2500) {
    await conn.write(get("/a.txt"));
    assert.is((await conn.response()).status, 200, `request ${n} after ${Date.now() - t0} ms`);
    n++;
    await sleep(300);
  }
  assert.ok(!conn.ended && !conn.closed, "still open");
  conn.close();
  assert.ok(n >= 5);
});

// ---- slow readers ------------------------------------------------------------------

/**
 * GETs path and reads the response through `pace(sock)`, hashing the body as
 * it streams (no buffering of 8 MiB). Resolves { status, length, sha, ended }.
 */
function slowGet(port, path, pace, timeoutMs = 40000) {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port });
    const hash = createHash("sha256");
    let head = Buffer.alloc(0), status = 0, length = -1, got = 0, done = false;
    const timer = setTimeout(() => finish(new Error(`slow GET ${path}: ${got} of ${length} body bytes after ${timeoutMs} ms`)), timeoutMs);
    function finish(err) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve({ status, length, got, sha: hash.digest("hex") });
    }
    sock.on("connect", () => { sock.write(get(path)); pace(sock); });
    sock.on("data", (d) => {
      if (length < 0) {
        head = Buffer.concat([head, d]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const text = head.subarray(0, end).toString("latin1");
        status = Number(text.slice(9, 12));
        length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? -1);
        d = head.subarray(end + 4);
      }
      hash.update(d);
      got += d.length;
      if (got >= length) finish();
    });
    sock.on("error", (e) => finish(new Error(`slow GET ${path}: ${e.code} after ${got} of ${length} body bytes`)));
    sock.on("close", () => finish(new Error(`slow GET ${path}: closed after ${got} of ${length} body bytes`)));
  });
}

/** Pauses for pauseMs, then reads in short bursts with gaps. */
const pausedThenSlow = (pauseMs, burstMs, gapMs) => async (sock) => {
  sock.pause();
  await sleep(pauseMs);
  while (!sock.destroyed) {
    sock.resume();
    await sleep(burstMs);
    sock.pause();
    await sleep(gapMs);
  }
};

for (const mode of ["et", "lt"]) {
  test(`a slow reader of an 8 MiB file gets every byte (sha256), --mode ${mode}`, async () => {
    const s = await serve("--mode", mode, "--idle-timeout", "10000");
    const r = await slowGet(s.port, "/big.bin", pausedThenSlow(1500, 5, 20));
    assert.is(r.status, 200);
    assert.is(r.length, BIG.length);
    assert.is(r.got, BIG.length);
    assert.is(r.sha, BIG_SHA, "body sha256");
    // The server is fine afterwards.
    const conn = await HttpConn.open(s.port);
    await conn.write(get("/a.txt"));
    assert.is((await conn.response()).status, 200);
    conn.close();
  });
}

test("a range of the 8 MiB file read slowly: the right bytes from the right offset", async () => {
  const s = await serve("--idle-timeout", "10000");
  const from = 3 * 1024 * 1024 + 7;
  const want = createHash("sha256").update(BIG.subarray(from)).digest("hex");
  const r = await new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port: s.port });
    const hash = createHash("sha256");
    let head = Buffer.alloc(0), length = -1, got = 0;
    sock.on("connect", () => {
      sock.write(get("/big.bin", { headers: [`Range: bytes=${from}-`] }));
      pausedThenSlow(800, 5, 20)(sock);
    });
    sock.on("data", (d) => {
      if (length < 0) {
        head = Buffer.concat([head, d]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        length = Number(/\r\ncontent-length: *(\d+)/i.exec(head.subarray(0, end).toString())?.[1]);
        d = head.subarray(end + 4);
      }
      hash.update(d);
      got += d.length;
      if (got >= length) { sock.destroy(); resolve({ length, got, sha: hash.digest("hex") }); }
    });
    sock.on("error", reject);
    setTimeout(() => { sock.destroy(); reject(new Error(`range: ${got} of ${length} after 30 s`)); }, 30000).unref();
  });
  assert.is(r.length, BIG.length - from);
  assert.is(r.sha, want);
});

for (const mode of ["et", "lt"]) {
  test(`several ranges of the 8 MiB file read slowly: every part exact (multipart/byteranges), --mode ${mode}`, async () => {
    const s = await serve("--mode", mode, "--idle-timeout", "10000");
    const ranges = [[5_000_000, 6_999_999], [0, 999_999], [BIG.length - 300_000, BIG.length - 1], [2_000_000, 2_000_000]];
    const res = await new Promise((resolve, reject) => {
      const sock = connect({ host: "127.0.0.1", port: s.port });
      const chunks = [];
      let got = 0, need = -1;               // the whole response's length, once its head is in
      const timer = setTimeout(() => { sock.destroy(); reject(new Error(`multipart: ${got} of ${need} bytes after 30 s`)); }, 30000);
      sock.on("connect", () => {
        sock.write(get("/big.bin", { headers: [`Range: bytes=${ranges.map(([a, b]) => `${a}-${b}`).join(",")}`] }));
        pausedThenSlow(800, 5, 20)(sock);
      });
      sock.on("data", (d) => {
        chunks.push(d);
        got += d.length;
        if (need < 0) {
          const all = Buffer.concat(chunks);
          const end = all.indexOf("\r\n\r\n");
          if (end < 0) return;
          need = end + 4 + Number(/\r\ncontent-length: *(\d+)/i.exec(all.subarray(0, end).toString("latin1"))?.[1]);
        }
        if (got < need) return;
        clearTimeout(timer);
        sock.destroy();
        resolve(parseResponse(Buffer.concat(chunks)).response);
      });
      sock.on("error", (e) => { clearTimeout(timer); reject(e); });
    });
    assert.is(res.status, 206);
    const { parts } = parseMultipart(res);
    const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
    assert.equal(parts.map((p) => [p.first, p.last]), sorted);
    for (const p of parts) {
      const want = createHash("sha256").update(BIG.subarray(p.first, p.last + 1)).digest("hex");
      assert.is(createHash("sha256").update(p.data).digest("hex"), want, `part ${p.first}-${p.last}`);
    }
  });
}

test("a reader that stops reading is disconnected at the idle timeout; others are served meanwhile", async () => {
  const s = await serve("--idle-timeout", "1000");
  const conn = await HttpConn.open(s.port);
  conn.sock.pause();                         // never read: the server's writes stall
  await conn.write(get("/big.bin"));
  await sleep(300);
  const other = await HttpConn.open(s.port);  // the server keeps serving
  await other.write(get("/a.txt"));
  assert.is((await other.response()).status, 200);
  other.close();
  // Give the idle timeout time to pass, then drain what was buffered: the
  // stream must end (EOF or reset) well short of the full 8 MiB.
  await sleep(2500);
  conn.sock.resume();
  const end = await conn.closedByServer(5000);
  const received = end.extra.length;
  conn.close();
  assert.ok(received < BIG.length, `cut off after ${received} bytes`);
});

test.after(async () => {
  closeAllConns();
  await Promise.all(servers.map((s) => s.stop()));
  removeRoot(root);
});

test.run();
