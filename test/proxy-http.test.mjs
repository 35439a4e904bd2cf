// The http-mode proxy live on 127.0.0.1: a Proxy attached to this process's
// event loop, upstreams that are node:http / node:net servers in this
// process, node:http / node:net clients. Expectations are independent of the
// proxy: what each upstream received (counted and hashed there) and what
// each client received. Every server and socket is closed in the test or in
// test.after; every wait is bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import http from "node:http";
import net from "node:net";
import { createHash, randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { cleanup, within, until, sleep, cliPath, runCli } from "./lib/procs.mjs";

const { Proxy, replay } = await import("../dist/index.js");

const open = new Set();
const dir = mkdtempSync(join(tmpdir(), "proxy-http-"));
test.after(() => {
  for (const o of open) { try { o.close?.(); o.destroy?.(); } catch { /* gone */ } }
  rmSync(dir, { recursive: true, force: true });
  cleanup();
});

/** A node:http upstream; `handler(req, res, body)` gets the request body read in full. Counts connections. */
async function upstream(handler = (req, res) => res.end("ok")) {
  const u = { conns: 0, requests: 0, seen: [] };
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on("data", (d) => parts.push(d));
    req.on("end", () => { u.requests++; u.seen.push(req); handler(req, res, Buffer.concat(parts)); });
  });
  server.keepAliveTimeout = 30_000;
  const sockets = new Set();
  server.on("connection", (s) => { u.conns++; sockets.add(s); s.on("close", () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  Object.assign(u, { server, port: server.address().port, close() { for (const s of sockets) s.destroy(); server.close(); } });
  open.add(u);
  return u;
}
/** A node:net upstream running onConn(socket). */
async function rawUpstream(onConn) {
  const sockets = new Set();
  const u = { conns: 0 };
  const server = net.createServer((s) => { u.conns++; sockets.add(s); s.on("close", () => sockets.delete(s)); s.on("error", () => {}); onConn(s, u); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  Object.assign(u, { server, port: server.address().port, close() { for (const s of sockets) s.destroy(); server.close(); } });
  open.add(u);
  return u;
}
async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}
function proxy(ups, opts = {}) {
  const p = new Proxy({ port: 0, upstreams: ups.map((u) => ({ host: "127.0.0.1", port: u.port ?? u.p ?? u, weight: u.w ?? 1 })), balance: "rr", ...opts });
  p.attach();
  open.add({ close: () => { try { p.stop(); p.close(); } catch { /* closed */ } } });
  return p;
}
/** One request through node:http; resolves { status, headers, body } (body: Buffer), or { error }. */
function request(port, path = "/", { method = "GET", headers = {}, body, agent = false, localAddress } = {}) {
  return new Promise((resolve) => {
    const r = http.request({ host: "127.0.0.1", port, path, method, headers, agent, localAddress }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
      res.on("error", (error) => resolve({ status: res.statusCode, error }));
      res.on("aborted", () => resolve({ status: res.statusCode, error: new Error("aborted") }));
    });
    r.on("error", (error) => resolve({ error }));
    if (body) r.end(body); else r.end();
  });
}
/** Raw bytes to the proxy; resolves everything received until the proxy closes (or `ms`). */
function raw(port, bytes, ms = 3000) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    const parts = [];
    const t = setTimeout(() => { c.destroy(); resolve({ data: Buffer.concat(parts).toString("latin1"), closed: false }); }, ms);
    c.on("data", (d) => parts.push(d));
    c.on("error", () => {});
    c.on("close", () => { clearTimeout(t); resolve({ data: Buffer.concat(parts).toString("latin1"), closed: true }); });
    c.write(bytes);
  });
}
/** `n` GETs pipelined on one connection; resolves once `n` responses came. */
function pipelined(port, n, path = (i) => `/${i}`) {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, "127.0.0.1");
    let text = "", got = 0;
    c.on("data", (d) => {
      text += d.toString("latin1");
      const m = text.match(/HTTP\/1\.1 200 /g);
      got = m ? m.length : 0;
      if (got >= n) { c.destroy(); resolve(got); }
    });
    c.on("error", reject);
    let out = "";
    for (let i = 0; i < n; i++) out += `GET ${path(i)} HTTP/1.1\r\nHost: t\r\n\r\n`;
    c.write(out);
  });
}
const sha = (b) => createHash("sha256").update(b).digest("hex");

// ---- balancing ----------------------------------------------------------------

test("wrr 3:2:1: 10,000 requests within 1% at the upstreams, and smooth", async () => {
  const order = [];
  const ups = await Promise.all([0, 1, 2].map((k) => upstream((req, res) => { order.push(k); res.end("x"); })));
  const p = proxy([{ p: ups[0].port, w: 3 }, { p: ups[1].port, w: 2 }, { p: ups[2].port, w: 1 }], { balance: "wrr" });
  await within(15_000, pipelined(p.port, 600), "sequential");
  // one connection, one request at a time: arrival order is pick order
  let run = 1;
  for (let i = 1; i < 600; i++) {
    run = order[i] === order[i - 1] ? run + 1 : 1;
    assert.ok(run <= 3 - order[i] , `a run of ${run} to upstream ${order[i]} at ${i}`);
  }
  await within(20_000, Promise.all([0, 1, 2, 3].map(() => pipelined(p.port, 2350))), "10,000");
  const total = order.length;
  assert.is(total, 10_000);
  const counts = [0, 1, 2].map((k) => order.filter((x) => x === k).length);
  [3 / 6, 2 / 6, 1 / 6].forEach((share, k) => assert.ok(Math.abs(counts[k] / total - share) < 0.01, `${counts}`));
  for (const u of ups) assert.ok(u.conns <= 8, `upstream accepted ${u.conns} connections`);
});

test("least-conn sends fewer requests to a slow upstream; p2c spreads over all", async () => {
  const slow = await upstream((req, res) => setTimeout(() => res.end("s"), 40));
  const fast = await upstream((req, res) => res.end("f"));
  const p = proxy([slow, fast], { balance: "least-conn" });
  await within(15_000, Promise.all(Array.from({ length: 6 }, () => pipelined(p.port, 30))), "least-conn");
  assert.ok(slow.requests * 3 < fast.requests, `slow ${slow.requests} fast ${fast.requests}`);
  const ups = await Promise.all([0, 1, 2].map(() => upstream()));
  const q = proxy(ups, { balance: "p2c" });
  await within(15_000, Promise.all(Array.from({ length: 4 }, () => pipelined(q.port, 100))), "p2c");
  for (const u of ups) assert.ok(u.requests > 40, `${ups.map((x) => x.requests)}`);
});

test("ip-hash: each client address sticks to one upstream", async () => {
  const ups = await Promise.all([0, 1, 2].map(() => upstream((req, res) => res.end(String(req.socket.localPort)))));
  const p = proxy(ups, { balance: "ip-hash" });
  const seenBy = new Map();
  for (let a = 2; a < 10; a++) {
    for (let i = 0; i < 4; i++) {
      const r = await request(p.port, "/", { localAddress: `127.0.0.${a}` });
      assert.is(r.status, 200);
      const set = seenBy.get(a) ?? new Set();
      set.add(r.body.toString());
      seenBy.set(a, set);
    }
  }
  for (const [a, s] of seenBy) assert.is(s.size, 1, `127.0.0.${a} went to ${[...s]}`);
  // what the upstream saw as the client: X-Forwarded-For names the bound address
  const xff = new Set(ups.flatMap((u) => u.seen.map((r) => r.headers["x-forwarded-for"])));
  for (let a = 2; a < 10; a++) assert.ok(xff.has(`127.0.0.${a}`));
  assert.ok(new Set([...seenBy.values()].map((s) => [...s][0])).size >= 2, "all on one upstream");
});

test("hash on a header: stopping one of 3 upstreams moves about 1/3 of the keys, the others stay", async () => {
  const ups = await Promise.all([0, 1, 2].map((k) => upstream((req, res) => res.end(String(k)))));
  const p = proxy(ups, { balance: "hash", hashKey: "header:X-User" });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const where = async () => {
    const m = [];
    for (let i = 0; i < 300; i++) m.push((await request(p.port, "/", { agent, headers: { "x-user": `user-${i}` } })).body.toString());
    return m;
  };
  const before = await where();
  const again = await where();
  assert.equal(again, before); // sticky
  ups[1].close();
  await sleep(50);
  const after = await where();
  let moved = 0;
  for (let i = 0; i < 300; i++) {
    if (before[i] !== "1") assert.is(after[i], before[i], `key ${i} moved off a live upstream`);
    else { assert.ok(after[i] !== "1"); moved++; }
  }
  assert.ok(moved > 300 * 0.2 && moved < 300 * 0.47, `moved ${moved}/300`);
  agent.destroy();
});

// ---- the pool -------------------------------------------------------------------

test("keep-alive pool: 1,000 requests over 4 client connections open a handful of upstream connections (reuse >= 99%)", async () => {
  const u = await upstream((req, res) => res.end("pooled"));
  const p = proxy([u]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  for (let i = 0; i < 250; i++) {
    const rs = await Promise.all([0, 1, 2, 3].map(() => request(p.port, `/${i}`, { agent })));
    for (const r of rs) { assert.is(r.status, 200); assert.is(r.body.toString(), "pooled"); }
  }
  agent.destroy();
  assert.is(u.requests, 1000);
  assert.ok(u.conns <= 6, `upstream accepted ${u.conns}`);
  const s = p.stats().upstreams[0];
  assert.ok(s.reuseRatio >= 0.99, JSON.stringify(s));
  assert.is(s.reuses + s.connects, 1000);
});

test("a pooled connection the upstream closed is dropped, and a reset on reuse is retried: 200", async () => {
  // closes every connection after its first response (no Connection: close): the pool learns by EOF
  const u1 = await rawUpstream((s) => s.once("data", () => s.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")));
  const p = proxy([u1]);
  for (let i = 0; i < 5; i++) { const r = await request(p.port); assert.is(r.status, 200); await sleep(20); }
  assert.ok(p.stats().http.poolDropped >= 1);
  // answers the first request of a connection, then resets on the next (the idle-close race)
  const u2 = await rawUpstream((s) => {
    let n = 0;
    s.on("data", () => { if (n++ === 0) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); else s.resetAndDestroy(); });
  });
  const q = proxy([u2]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 4; i++) { const r = await request(q.port, "/", { agent }); assert.is(r.status, 200, JSON.stringify(r)); }
  agent.destroy();
  assert.ok(q.stats().http.retries >= 1);
});

// ---- what goes through ------------------------------------------------------------

test("hop-by-hop fields dropped, X-Forwarded-For / Forwarded / Via added (as the upstream saw them)", async () => {
  const u = await upstream((req, res) => res.writeHead(200, { "Keep-Alive": "timeout=5", "X-Drop": "1", Connection: "X-Drop" }).end("h"));
  const p = proxy([u]);
  const r = await raw(p.port, "GET /a?b HTTP/1.1\r\nHost: site\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n" +
    "Keep-Alive: 300\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Keep: k\r\nConnection: close\r\n\r\n");
  assert.match(r.data, /^HTTP\/1\.1 200 /);
  assert.not.match(r.data, /x-drop|keep-alive: timeout/i);
  const h = u.seen[0].headers;
  assert.is(u.seen[0].url, "/a?b");
  assert.is(h.host, "site");
  assert.is(h["x-keep"], "k");
  for (const gone of ["x-secret", "keep-alive", "te", "proxy-connection"]) assert.is(h[gone], undefined, gone);
  assert.is(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
  assert.is(h.forwarded, "for=127.0.0.1;proto=http");
  assert.is(h.via, "1.1 wasm-reactor");
});

test("requests serve refuses get the 4xx and never reach the upstream", async () => {
  const u = await upstream();
  const p = proxy([u]);
  for (const [bytes, status] of [
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n", 400],
    ["GET / HTTP/1.1\nHost: a\n\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nExpect: nothing-you-know\r\n\r\n", 417],
  ]) {
    const r = await raw(p.port, bytes);
    assert.ok(r.data.startsWith(`HTTP/1.1 ${status} `), `${JSON.stringify(bytes)} -> ${r.data.slice(0, 60)}`);
    assert.match(r.data, /Connection: close/);
    assert.ok(r.closed);
  }
  // a bad chunk in a forwarded body: 400 to the client (no response yet)
  const r = await raw(p.port, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  assert.ok(r.data.startsWith("HTTP/1.1 400 "), r.data.slice(0, 60));
  assert.is(u.requests, 0);
});

for (const [size, mode] of [[1 << 20, "lt"], [1 << 20, "et"]]) {
  test(`bodies of ${size >> 20} MiB byte-identical both ways (upload Content-Length and chunked; download Content-Length, chunked, close-delimited), events ${mode}`, async () => {
    const data = randomFillSync(Buffer.alloc(size));
    const want = sha(data);
    const u = await upstream((req, res, body) => {
      if (req.url === "/up") { res.end(sha(body)); return; }
      if (req.url === "/cl") { res.writeHead(200, { "Content-Length": size }).end(data); return; }
      res.writeHead(200); // chunked (node's default without a length)
      for (let i = 0; i < size; i += 1 << 20) res.write(data.subarray(i, i + (1 << 20)));
      res.end();
    });
    const closeUp = await rawUpstream((s) => s.once("data", () => { s.write("HTTP/1.1 200 OK\r\n\r\n"); s.end(data); }));
    const p = proxy([u], { mode });
    const q = proxy([closeUp], { mode });
    const upCl = await request(p.port, "/up", { method: "PUT", body: data, headers: { "content-length": size } });
    assert.is(upCl.body.toString(), want);
    const chunked = await new Promise((resolve) => {
      const r = http.request({ host: "127.0.0.1", port: p.port, path: "/up", method: "POST" }, (res) => {
        let s = ""; res.on("data", (d) => { s += d; }); res.on("end", () => resolve(s));
      });
      for (let i = 0; i < size; i += 1 << 20) r.write(data.subarray(i, i + (1 << 20)));
      r.end();
    });
    assert.is(chunked, want);
    const dl = await request(p.port, "/cl");
    assert.is(dl.headers["content-length"], String(size));
    assert.is(sha(dl.body), want);
    const dch = await request(p.port, "/chunked");
    assert.is(dch.headers["transfer-encoding"], "chunked");
    assert.is(sha(dch.body), want);
    const dclose = await request(q.port, "/");
    assert.is(dclose.headers.connection, "close");
    assert.is(sha(dclose.body), want);
    assert.is(u.requests, 4);
  });
}

test("100 MiB up (Content-Length) and down (chunked) byte-identical", async () => {
  const size = 100 << 20;
  const data = randomFillSync(Buffer.alloc(size));
  const want = sha(data);
  const u = await upstream((req, res, body) => {
    if (req.url === "/up") { res.end(sha(body)); return; }
    res.writeHead(200);
    for (let i = 0; i < size; i += 1 << 20) res.write(data.subarray(i, i + (1 << 20)));
    res.end();
  });
  const p = proxy([u]);
  const up = await request(p.port, "/up", { method: "PUT", body: data, headers: { "content-length": size } });
  assert.is(up.body.toString(), want);
  const down = await request(p.port, "/down");
  assert.is(sha(down.body), want);
});

test("pipelined requests: responses in request order; HEAD, 204, 304 and 1xx framed right; chunked to HTTP/1.0 de-chunked", async () => {
  const u = await upstream((req, res) => {
    const n = Number(req.url.slice(1));
    if (req.url === "/204") { res.writeHead(204).end(); return; }
    if (req.url === "/304") { res.writeHead(304, { ETag: '"e"' }).end(); return; }
    if (req.url === "/103") { res.writeEarlyHints({ link: "</a.css>; rel=preload" }); res.end("after hints"); return; }
    if (req.url === "/chunked") { res.writeHead(200); res.write("one,"); res.end("two"); return; }
    setTimeout(() => res.end(`body ${n}`), (7 - n) * 15); // later requests answer sooner upstream
  });
  const p = proxy([u]);
  let out = "";
  for (let i = 0; i < 6; i++) out += `GET /${i} HTTP/1.1\r\nHost: a\r\n\r\n`;
  out += "HEAD /5 HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\n" +
    "GET /103 HTTP/1.1\r\nHost: a\r\n\r\nGET /6 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  const r = await raw(p.port, out, 5000);
  assert.ok(r.closed);
  const bodies = [...r.data.matchAll(/body (\d)/g)].map((m) => m[1]).join("");
  assert.is(bodies, "0123456");
  const heads = r.data.split("HTTP/1.1 ").slice(1).map((x) => x.slice(0, 3));
  assert.equal(heads, ["200", "200", "200", "200", "200", "200", "200", "204", "304", "103", "200", "200"]);
  assert.match(r.data, /after hints/);
  const ten = await raw(p.port, "GET /chunked HTTP/1.0\r\n\r\n");
  assert.ok(ten.closed);
  assert.not.match(ten.data, /transfer-encoding/i);
  assert.ok(ten.data.endsWith("\r\n\r\none,two"), JSON.stringify(ten.data));
});

test("a head trickled in slower than the header timeout: closed, nothing forwarded", async () => {
  const u = await upstream();
  const p = proxy([u], { headerTimeoutMs: 300 });
  const c = net.connect(p.port, "127.0.0.1");
  c.on("error", () => {});
  open.add(c);
  const closed = new Promise((r) => c.on("close", r));
  c.write("GET / HTTP/1.1\r\n");
  const drip = setInterval(() => c.write("X-A: b\r\n"), 100); // activity, but the head never ends
  await within(3000, closed, "closed at the header timeout");
  clearInterval(drip);
  assert.is(u.requests, 0);
});

// ---- faults -------------------------------------------------------------------

test("an upstream killed mid-response: the client gets a truncated response and a close, never another's bytes", async () => {
  const u = await rawUpstream((s) => s.once("data", () => {
    s.write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + "a".repeat(5000));
    setTimeout(() => s.resetAndDestroy(), 30);
  }));
  const p = proxy([u]);
  const r = await raw(p.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.ok(r.closed);
  assert.match(r.data, /^HTTP\/1\.1 200 /);
  const body = r.data.slice(r.data.indexOf("\r\n\r\n") + 4);
  assert.ok(body.length < 100000 && /^a*$/.test(body), `body ${body.length}`);
  assert.ok(p.stats().http.truncated >= 1);
});

test("refused connect: retried on another upstream (200); both refuse: 502 after the retry", async () => {
  const dead = await deadPort();
  const u = await upstream((req, res) => res.end("alive"));
  const p = proxy([dead, u.port]);
  for (let i = 0; i < 4; i++) {
    const r = await request(p.port);
    assert.is(r.status, 200);
    assert.is(r.body.toString(), "alive");
  }
  assert.ok(p.stats().http.retries >= 1);
  const q = proxy([await deadPort(), await deadPort()]);
  const r = await request(q.port);
  assert.is(r.status, 502);
  assert.is(r.body.toString(), "502 Bad Gateway\n");
  assert.is(q.stats().http.retries, 1);
});

test("an upstream that accepts but never answers: 504 at the upstream timeout", async () => {
  const u = await rawUpstream(() => {});
  const p = proxy([u], { upstreamTimeoutMs: 300 });
  const t0 = Date.now();
  const r = await within(5000, request(p.port), "504");
  assert.is(r.status, 504);
  assert.ok(Date.now() - t0 >= 250);
});

test("5xx answers eject an upstream after maxFails: the rest go to the healthy one", async () => {
  const bad = await upstream((req, res) => { res.statusCode = 500; res.end("bad"); });
  const good = await upstream((req, res) => res.end("good"));
  const p = proxy([bad, good], { health: { maxFails: 3 } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 8; i++) await request(p.port, "/", { agent });
  const before = bad.requests;
  assert.is(before, 3);
  for (let i = 0; i < 10; i++) assert.is((await request(p.port, "/", { agent })).body.toString(), "good");
  assert.is(bad.requests, before);
  assert.is(p.stats().upstreams[0].state, "ejected");
  agent.destroy();
});

test("graceful shutdown with requests in flight: they complete", async () => {
  const u = await upstream((req, res) => setTimeout(() => res.end("late"), 300));
  const p = proxy([u]);
  const rs = [0, 1, 2].map(() => request(p.port));
  await until(3000, () => u.requests === 3);
  const done = p.shutdown(5000);
  const got = await within(5000, Promise.all(rs), "responses");
  for (const r of got) { assert.is(r.status, 200); assert.is(r.body.toString(), "late"); }
  const res = await within(8000, done, "shutdown");
  assert.is(res.forced, 0);
});

test("replay: a recorded http-mode proxy run replays byte-identical", async () => {
  const file = join(dir, "proxy-http.rec");
  const dead = await deadPort();
  const u = await upstream((req, res, body) => res.end(`got ${body.length}`));
  const p = proxy([dead, u.port], { record: file });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 4; i++) {
    const r = await request(p.port, "/", { method: "POST", body: Buffer.alloc(10_000 * i, 1), agent });
    assert.is(r.body.toString(), `got ${10_000 * i}`);
  }
  agent.destroy();
  await within(10_000, p.shutdown(1000), "shutdown");
  p.close();
  const r = replay(readFileSync(file));
  assert.ok(r.ok, JSON.stringify(r.divergence ?? r, null, 1)?.slice(0, 2000));
});

test("CLI: http is the default mode; bad http-mode flags exit 2 with one line", async () => {
  const u = await upstream((req, res) => res.end(`cli ${req.headers["x-forwarded-for"]}`));
  const child = spawn(process.execPath, [cliPath, "proxy", "--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${u.port}`], { stdio: ["ignore", "pipe", "pipe"] });
  open.add({ close: () => child.kill("SIGKILL") });
  let outText = "";
  child.stdout.on("data", (d) => { outText += d; });
  await within(10_000, until(10_000, () => /listening on 127\.0\.0\.1:(\d+)/.test(outText)), "listening");
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(outText)[1]);
  const r = await request(port);
  assert.is(r.body.toString(), "cli 127.0.0.1");
  child.kill("SIGTERM");
  await within(10_000, new Promise((res) => child.once("exit", res)), "exit");
  for (const [args, says] of [
    [["proxy", "--upstream", "127.0.0.1:1", "--balance", "hash"], /--balance hash needs --hash-key/],
    [["proxy", "--upstream", "127.0.0.1:1", "--balance", "hash", "--hash-key", "cookie"], /--hash-key must be path or header:NAME/],
    [["proxy", "--upstream", "127.0.0.1:1", "--mode", "tcp", "--hash-key", "path"], /--hash-key is for http mode/],
    [["proxy", "--upstream", "127.0.0.1:1", "--upstream-timeout", "soon"], /--upstream-timeout must be a whole number/],
  ]) {
    const res = await runCli(args);
    assert.is(res.code, 2, `${args.join(" ")} -> ${res.code}: ${res.stderr}`);
    assert.match(res.stderr, says);
    assert.is(res.stderr.trim().split("\n").length, 1, res.stderr);
  }
  const help = await runCli(["proxy", "--help"]);
  for (const flag of ["--mode tcp|http", "[default: http]", "--hash-key", "--upstream-timeout", "--upstream-keepalive"]) assert.ok(help.stdout.includes(flag), flag);
});

test.run();
