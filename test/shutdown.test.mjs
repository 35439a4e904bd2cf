// Graceful shutdown: stop accepting, close idle connections, finish what is in
// progress (at most the grace period), then stop; a second signal stops now.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { randomBytes } from "node:crypto";
import abi from "./lib/abi.mjs";
import { FakeHost } from "./lib/fakehost.mjs";

const cli = join(dirname(fileURLToPath(import.meta.url)), "..", "bin", "wasm-reactor.js");
const root = mkdtempSync(join(tmpdir(), "wr-shutdown-"));
const BIG = randomBytes(8 << 20);
writeFileSync(join(root, "big.bin"), BIG);
writeFileSync(join(root, "small.txt"), "small\n");
const children = new Set();

// ---- the bare core -----------------------------------------------------------

test("core: shutdown closes thousands of idle connections through the run queue, never overflowing the SQ", () => {
  const h = new FakeHost({ config: { protocol: abi.PROTO_ECHO, maxFds: 4096, maxEvents: 4 } });
  const sqCap = h.ctlI32(abi.CTL_SQ_CAP);
  let biggest = 0;
  const carry = h.carryOut.bind(h);
  h.carryOut = (n) => { biggest = Math.max(biggest, n); return carry(n); };
  h.listen(3, abi.PROTO_ECHO);
  const N = 3000;
  for (let fd = 10; fd < 10 + N; fd++) h.queueAccept(3, fd);
  for (let i = 0; i < 400 && h.stat(abi.STAT_LIVE_CONNS) < N; i++) h.tick([{ fd: 3, events: abi.EV_READABLE }]);
  assert.is(h.stat(abi.STAT_LIVE_CONNS), N);
  const from = h.log.length;
  assert.is(h.x.beginShutdown(1000), N);
  h.flush();
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0, "every idle connection closed");
  assert.is(h.ops(abi.OP_CLOSE, { from }).length, N);
  assert.ok(biggest <= sqCap, `a round of ${biggest} requests, capacity ${sqCap}`);
  assert.equal(h.ops(abi.OP_CTL, { fd: 3, from }).map((e) => e.a0), [abi.INTEREST_DEL], "the listener leaves epoll");
  assert.is(h.ops(abi.OP_STOP, { from }).length, 1, "the core tells the host it is done");
  assert.is(h.x.checkInvariants(), abi.INV_OK);
  // A connection that reaches accept() now is refused, not served.
  h.queueAccept(3, 5000);
  h.tick([{ fd: 3, events: abi.EV_READABLE }]);
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0);
});

test("core: a connection with output owed is flushed before it closes; the grace timer closes the rest", () => {
  const h = new FakeHost({ config: { protocol: abi.PROTO_ECHO } });
  h.listen(3, abi.PROTO_ECHO);
  h.queueAccept(3, 10, 11);
  h.tick([{ fd: 3, events: abi.EV_READABLE }]);
  // fd 10 owes 5 bytes its peer is not reading; fd 11 owes nothing.
  h.socket(10).room = 0;
  h.socket(10).input.push(Buffer.from("hello"));
  h.tick([{ fd: 10, events: abi.EV_READABLE }]);
  assert.ok(h.stat(abi.STAT_WBUF_BYTES) > 0, "output is buffered");
  h.setTime(100);
  h.x.beginShutdown(500);
  h.flush();
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 1, "the idle one closed, the one owing bytes stays");
  h.socket(10).room = Infinity;
  h.tick([{ fd: 10, events: abi.EV_WRITABLE }]);
  assert.is(Buffer.concat(h.socket(10).output).toString(), "hello");
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0, "closed once flushed");

  const g = new FakeHost({ config: { protocol: abi.PROTO_ECHO } });
  g.listen(3, abi.PROTO_ECHO);
  g.queueAccept(3, 10);
  g.tick([{ fd: 3, events: abi.EV_READABLE }]);
  g.socket(10).room = 0;
  g.socket(10).input.push(Buffer.from("stuck"));
  g.tick([{ fd: 10, events: abi.EV_READABLE }]);
  g.x.beginShutdown(500);
  g.flush();
  assert.is(g.stat(abi.STAT_LIVE_CONNS), 1);
  g.setTime(600);
  g.tick();
  assert.is(g.stat(abi.STAT_LIVE_CONNS), 0, "the grace period is over");
});

// ---- the CLI, on real sockets --------------------------------------------------

function startServe(args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, "serve", "--root", root, "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let out = "", err = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) resolve({ child, port: Number(m[1]), stderr: () => err });
    });
    child.stderr.on("data", (d) => { err += d; });
    child.once("exit", (code) => reject(new Error(`server exited early (${code}): ${err}`)));
    setTimeout(() => reject(new Error("server did not start")), 10_000);
  });
}

const exited = (child, ms) => new Promise((resolve) => {
  if (child.exitCode !== null) return resolve(child.exitCode);
  const t = setTimeout(() => resolve("still running"), ms);
  child.once("exit", (code, signal) => { clearTimeout(t); resolve(code ?? signal); });
});

/** A client downloading big.bin slowly; resolves with the bytes it got when the server closes. */
function slowDownload(port) {
  const s = net.connect(port, "127.0.0.1");
  let got = 0;
  s.on("connect", () => s.write("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"));
  s.on("data", (d) => { got += d.length; s.pause(); setTimeout(() => s.resume(), 5); });
  s.on("error", () => {});
  const done = new Promise((resolve) => s.on("close", () => resolve(got)));
  return { socket: s, done, started: new Promise((r) => s.once("data", r)) };
}

function idleKeepAlive(port) {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => {});
  const answered = new Promise((r) => s.once("data", r));
  s.on("connect", () => s.write("GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"));
  const closed = new Promise((r) => s.on("close", () => r(Date.now())));
  return { answered, closed };
}

test("SIGTERM: idle keep-alive closes at once, the download in progress completes, nothing new is served, exit 0", async () => {
  const { child, port, stderr } = await startServe();
  const dl = slowDownload(port);
  const idle = idleKeepAlive(port);
  await Promise.all([dl.started, idle.answered]);
  const t0 = Date.now();
  child.kill("SIGTERM");
  const idleClosedAt = await idle.closed;
  assert.ok(idleClosedAt - t0 < 2000, `idle connection closed after ${idleClosedAt - t0} ms`);
  // A new client is not served (it may connect into the backlog, but gets no answer).
  const late = net.connect(port, "127.0.0.1");
  let lateData = 0;
  late.on("data", (d) => { lateData += d.length; });
  late.on("error", () => {});
  late.on("connect", () => late.write("GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"));
  const got = await dl.done;
  assert.ok(got >= BIG.length, `download got ${got} of ${BIG.length} bytes`);
  assert.is(await exited(child, 10_000), 0);
  assert.is(lateData, 0, "a connection made after the signal is not served");
  assert.match(stderr(), /shutting down/);
  late.destroy();
});

test("a second signal stops at once; --shutdown-timeout bounds the wait for a client that stopped reading", async () => {
  {
    const { child, port } = await startServe();
    const dl = slowDownload(port);
    await dl.started;
    dl.socket.pause(); // stops reading altogether
    child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    assert.is(child.exitCode, null, "still draining after the first signal");
    const t0 = Date.now();
    child.kill("SIGTERM");
    assert.is(await exited(child, 5000), 0);
    assert.ok(Date.now() - t0 < 3000);
    dl.socket.destroy();
  }
  {
    const { child, port } = await startServe(["--shutdown-timeout", "400"]);
    const dl = slowDownload(port);
    await dl.started;
    dl.socket.pause();
    const t0 = Date.now();
    child.kill("SIGINT");
    assert.is(await exited(child, 8000), 0);
    const took = Date.now() - t0;
    assert.ok(took >= 300 && took < 6000, `stopped after ${took} ms with a 400 ms grace period`);
    dl.socket.destroy();
  }
});

test.after(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
});
test.run();
