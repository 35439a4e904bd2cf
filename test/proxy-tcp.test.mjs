// The tcp proxy live on 127.0.0.1: a Proxy attached to this process's event
// loop, upstreams that are node:net servers in this process, node:net
// clients. Bytes are checked by SHA-256 at both ends (what was sent against
// what arrived), never against what the proxy reports. Every server, socket
// and child is closed in the test or in test.after; every wait is bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import net from "node:net";
import { createHash, randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { cleanup, cliPath, within, until, sleep, runCli } from "./lib/procs.mjs";

const { Proxy, replay } = await import("../dist/index.js");

const open = new Set();
const dir = mkdtempSync(join(tmpdir(), "proxy-tcp-"));
test.after(() => {
  for (const o of open) { try { o.close?.(); o.destroy?.(); } catch { /* gone */ } }
  rmSync(dir, { recursive: true, force: true });
  cleanup();
});

/** A node:net upstream running `onConn(socket)`; resolves to { server, port }. */
async function upstream(onConn) {
  const server = net.createServer({ allowHalfOpen: true }, onConn);
  const sockets = new Set();
  server.on("connection", (s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); s.on("error", () => {}); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const u = { server, port: server.address().port, close() { for (const s of sockets) s.destroy(); server.close(); } };
  open.add(u);
  return u;
}
/** A port nothing listens on (bound, then closed). */
async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}
function proxy(upstreams, opts = {}) {
  const p = new Proxy({ port: 0, upstreams: upstreams.map((port) => ({ host: "127.0.0.1", port })), balance: "rr", proxyMode: "tcp", ...opts });
  p.attach();
  open.add({ close: () => { try { p.stop(); p.close(); } catch { /* closed */ } } });
  return p;
}
function client(port, opts = {}) {
  const c = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true, ...opts });
  c.on("error", () => {});
  open.add(c);
  return c;
}
/** Writes `total` bytes of a pseudo-random stream (chunks of 1 MiB) honouring backpressure; resolves to its SHA-256. */
async function sendStream(sock, total, { end = true } = {}) {
  const chunk = randomFillSync(Buffer.alloc(1 << 20));
  const h = createHash("sha256");
  for (let sent = 0, i = 0; sent < total; i++) {
    const n = Math.min(chunk.length, total - sent);
    chunk[0] = i & 255; // no two chunks alike
    const b = Buffer.from(chunk.subarray(0, n));
    h.update(b);
    sent += n;
    if (!sock.write(b)) await new Promise((r) => { sock.once("drain", r); sock.once("close", r); });
    if (sock.destroyed) break;
  }
  if (end) sock.end();
  return h.digest("hex");
}
/** Hashes what arrives until the peer's FIN (or close); resolves to { hash, bytes }. */
function receive(sock) {
  const h = createHash("sha256");
  let bytes = 0;
  sock.on("data", (d) => { h.update(d); bytes += d.length; });
  return new Promise((r) => {
    let done = false;
    const fin = () => { if (!done) { done = true; r({ hash: h.digest("hex"), bytes }); } };
    sock.once("end", fin);
    sock.once("close", fin);
  });
}
const closed = (s) => new Promise((r) => (s.destroyed && s.closed ? r() : s.once("close", r)));

// The data path runs in both relay modes (proxy/tcp.ts): splice, the default, and copy.
for (const relay of ["splice", "copy"]) {
  for (const [size, label, mode] of [[1 << 20, "1 MiB", "et"], [100 << 20, "100 MiB", "et"], [1 << 20, "1 MiB", "lt"]]) {
    test(`${label} each way at once, byte-identical (${mode}) [${relay}]`, async () => {
      const seen = [];
      const up = await upstream((s) => {
        const got = receive(s);
        const sent = sendStream(s, size);
        seen.push(Promise.all([got, sent]));
      });
      const p = proxy([up.port], { relay, mode });
      const c = client(p.port);
      const got = receive(c);
      const sent = await within(20_000, sendStream(c, size), "client send");
      const back = await within(20_000, got, "client receive");
      const [upGot, upSent] = await within(20_000, seen[0] ?? until(5000, () => seen[0]).then(() => seen[0]), "upstream");
      assert.is(upGot.bytes, size);
      assert.is(upGot.hash, sent, "client -> upstream");
      assert.is(back.bytes, size);
      assert.is(back.hash, upSent, "upstream -> client");
      await within(5000, closed(c), "client closed after both FINs");
      const st = p.stats().upstreams[0];
      assert.is(st.bytesToUpstream, size);
      assert.is(st.bytesFromUpstream, size);
      await within(5000, until(5000, () => p.stats().liveConnections === 0), "pair closed");
    });
  }

  test(`half-close: the client shuts its write side, the upstream still replies, then both close [${relay}]`, async () => {
    let upSawEnd = false;
    const up = await upstream((s) => {
      let req = "";
      s.on("data", (d) => { req += d; });
      s.on("end", () => { upSawEnd = true; s.end(`reply to ${req}`); });
    });
    const p = proxy([up.port], { relay });
    const c = client(p.port);
    const got = receive(c);
    let text = "";
    c.on("data", (d) => { text += d; });
    c.end("question");
    await within(5000, got, "reply");
    assert.ok(upSawEnd, "the client's FIN reached the upstream");
    assert.is(text, "reply to question");
    await within(5000, closed(c), "closed");
    await within(5000, until(5000, () => p.stats().liveConnections === 0), "both closed");
  });

  test(`refused connect: retried on another upstream; all down: the client is closed [${relay}]`, async () => {
    const dead = await deadPort();
    const up = await upstream((s) => s.pipe(s));
    const p = proxy([dead, up.port], { relay });
    for (let i = 0; i < 4; i++) {
      const c = client(p.port);
      const got = receive(c);
      c.end(`ping ${i}`);
      const r = await within(5000, got, "echo through the proxy");
      assert.is(r.bytes, `ping ${i}`.length);
    }
    const st = p.stats().upstreams;
    assert.ok(st[0].failures >= 1 && st[0].retries >= 1, JSON.stringify(st));
    assert.is(st[1].conns, 4);
    p.stop(); p.close();
    const dead2 = await deadPort();
    const q = proxy([dead, dead2], { relay });
    const c = client(q.port);
    const r = await within(5000, receive(c), "closed by the proxy");
    assert.is(r.bytes, 0);
    assert.is(q.stats().noUpstream, 1);
  });

  test(`an upstream that accepts and never answers: the idle timeout closes both [${relay}]`, async () => {
    let upClosed = false;
    const up = await upstream((s) => { s.once("close", () => { upClosed = true; }); s.on("end", () => s.end()); s.resume(); });
    const p = proxy([up.port], { relay, idleTimeoutMs: 300 });
    const c = client(p.port);
    const fin = receive(c);
    c.write("anyone there?");
    await within(5000, fin, "the proxy's FIN at the idle timeout");
    c.end();
    await until(5000, () => upClosed, "upstream side closed too");
    assert.ok(p.stats().timeouts >= 1);
  });

  test(`a client that does not read while the upstream sends 100 MiB: memory stays bounded, all arrives once it reads [${relay}]`, async () => {
    const size = 100 << 20, wmax = 256 * 1024;
    let upSent = null;
    const up = await upstream((s) => { upSent = sendStream(s, size); });
    const p = proxy([up.port], { relay, writeBufMax: wmax });
    const c = client(p.port);
    c.pause();
    await until(5000, () => upSent !== null);
    // Let the upstream fill everything it can: kernel buffers, then the proxy's ring.
    let peak = 0, rbufs = 0;
    for (let i = 0; i < 20; i++) {
      await sleep(50);
      const st = p.stats();
      peak = Math.max(peak, st.writeBufferBytes);
      rbufs = Math.max(rbufs, st.readBuffersHeld);
    }
    assert.ok(peak <= 2 * wmax + 64 * 1024, `ring bytes held ${peak} (limit ${wmax} per connection, 2 connections)`);
    assert.ok(rbufs <= 2, `receive buffers held ${rbufs}`);
    assert.ok(p.stats().upstreams[0].bytesFromUpstream < size, "the transfer is held back, not finished");
    const got = receive(c);
    c.resume();
    const r = await within(30_000, got, "all bytes");
    assert.is(r.bytes, size);
    assert.is(r.hash, await upSent);
  });

  test(`graceful shutdown with transfers in flight: they finish [${relay}]`, async () => {
    const size = 8 << 20;
    const sent = [];
    const up = await upstream((s) => { sent.push(sendStream(s, size)); s.resume(); });
    const p = proxy([up.port], { relay });
    const clients = [0, 1, 2].map(() => client(p.port));
    // Each client sends its FIN once the upstream's arrived: both FINs end a pair.
    const got = clients.map((c) => receive(c).then((r) => { c.end(); return r; }));
    await until(5000, () => sent.length === 3 && p.stats().upstreams[0].bytesFromUpstream > 0);
    const done = p.shutdown(10_000);
    const results = await within(20_000, Promise.all(got), "transfers");
    const res = await within(20_000, done, "shutdown");
    for (let i = 0; i < 3; i++) assert.is(results[i].bytes, size);
    const hashes = new Set(await Promise.all(sent));
    for (const r of results) assert.ok(hashes.has(r.hash));
    assert.is(res.forced, 0);
  });

  test(`replay: a recorded proxy run replays byte-identical [${relay}]`, async () => {
    const file = join(dir, `proxy-${relay}.rec`);
    const dead = await deadPort();
    const up = await upstream((s) => s.pipe(s));
    const p = proxy([dead, up.port], { relay, record: file });
    for (let i = 0; i < 3; i++) {
      const c = client(p.port);
      const got = receive(c);
      c.end(Buffer.alloc(100_000 + i, 7 + i));
      assert.is((await within(5000, got, "echo")).bytes, 100_000 + i);
    }
    await within(10_000, p.shutdown(1000), "shutdown");
    p.close();
    const r = replay(readFileSync(file));
    assert.ok(r.ok, JSON.stringify(r.divergence ?? r, null, 1)?.slice(0, 2000));
  });
}

// ---- command line ------------------------------------------------------------

async function startCli(args) {
  const child = spawn(process.execPath, [cliPath, "proxy", "--mode", "tcp", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  open.add({ close: () => child.kill("SIGKILL") });
  let out = "", err = "";
  child.stdout.on("data", (d) => { out += d; });
  child.stderr.on("data", (d) => { err += d; });
  await within(10_000, until(10_000, () => /listening on 127\.0\.0\.1:(\d+)/.test(out) || child.exitCode !== null), `listening (${err})`);
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
  return { child, port, out: () => out, err: () => err };
}

test("CLI: both command forms start it and relay", async () => {
  const up = await upstream((s) => s.pipe(s));
  for (const args of [
    ["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${up.port}:3`, "--upstream", `localhost:${up.port}:2`, "--balance", "wrr"],
    ["0", `127.0.0.1:${up.port}:3`, `127.0.0.1:${up.port}:2`, "-a", "wrr", "--event-mode", "lt", "--relay", "copy"],
  ]) {
    const { child, port, err } = await startCli(args);
    assert.ok(port > 0, err());
    const c = client(port);
    const got = receive(c);
    c.end("via cli");
    assert.is((await within(5000, got, "echo")).bytes, 7);
    child.kill("SIGTERM");
    const code = await within(15_000, new Promise((r) => child.once("exit", r)), "exit");
    assert.is(code, 0, err());
  }
});

test("CLI: bad flags exit 2 with one line", async () => {
  for (const [args, says] of [
    [["proxy", "--upstream", "nothing"], /--upstream must be HOST:PORT\[:WEIGHT\]/],
    [["proxy", "--upstream", "127.0.0.1:1", "--mode", "udp"], /--mode must be tcp or http/],
    [["proxy", "--upstream", "127.0.0.1:1", "--balance", "fastest"], /--balance must be one of/],
    [["proxy", "--upstream", "127.0.0.1:1:0"], /weight must be 1\.\.1000/],
    [["proxy", "--listen", "127.0.0.1:8080"], /no upstream/],
    [["proxy", "--upstream", "127.0.0.1:1", "--event-mode", "sideways"], /--event-mode must be lt or et/],
    [["proxy", "--upstream", "127.0.0.1:1", "--connect-timeout", "soon"], /--connect-timeout must be a whole number/],
    [["proxy", "--upstream", "127.0.0.1:1", "--mode", "tcp", "--relay", "sendfile"], /--relay must be copy or splice, got 'sendfile'/],
    [["proxy", "--upstream", "127.0.0.1:1", "--relay", "splice"], /--relay is for tcp mode/],
  ]) {
    const r = await runCli(args);
    assert.is(r.code, 2, `${args.join(" ")} -> exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, says);
    assert.is(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  const help = await runCli(["proxy", "--help"]);
  assert.is(help.code, 0);
  assert.match(help.stdout, /Event backend: /);
  for (const flag of ["--listen", "--upstream", "--balance", "--mode", "--relay", "--workers", "--connect-timeout", "--idle-timeout", "--shutdown-timeout", "--record"]) {
    assert.ok(help.stdout.includes(flag), flag);
  }
});

test.run();
