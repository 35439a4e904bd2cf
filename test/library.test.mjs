// The Reactor as a library others build on: EventWatcher's combined flags,
// register() on a registered fd (seed 003: modify), refused epoll_ctl calls
// reaching the caller (at once and from a phase), the fd table sized to the
// process's fd limit, and `await server.shutdown()`. Real fds throughout
// (socketpairs, pipes, regular files, 127.0.0.1); everything opened is closed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { openSync, closeSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import net from "node:net";
import { Reactor, EventWatcher, WatchFlag, Server, SysError, READABLE, WRITABLE, libc, abi } from "../dist/index.js";
import { socketpair, readFd, writeFd, closeFd, connectNarrow } from "./lib/sys.mjs";
const BACKEND = process.env.WASM_REACTOR_BACKEND || "epoll"; // the runner runs this file once per backend
import { within, sleep, distUrl } from "./lib/procs.mjs";
import { Worker } from "node:worker_threads";
import { FakeHost } from "./lib/fakehost.mjs";

const require = createRequire(import.meta.url);
const dup2 = require("koffi").load("libc.so.6").func("int dup2(int, int)");

const SAFETY_MS = 10_000;
const fds = new Set();
const own = (...list) => { list.forEach((fd) => fds.add(fd)); return list; };
const pair = () => own(...socketpair());
const dir = mkdtempSync(join(tmpdir(), "wr-library-"));
writeFileSync(join(dir, "plain.txt"), "a regular file: epoll refuses it\n");
const regularFile = () => own(openSync(join(dir, "plain.txt"), "r"))[0];

test.after.each(() => {
  for (const fd of fds) closeFd(fd);
  fds.clear();
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

function blockingReactor(options = {}) {
  const r = new Reactor({ handleSignals: false, maxFds: 4096, ...options });
  const state = { reason: null };
  const stop = (reason) => { state.reason ??= reason; r.stop(); };
  r.setTimeout(SAFETY_MS, () => stop("safety timeout"));
  return { r, state, stop };
}

const bits = (ev) => `${ev & READABLE ? "R" : ""}${ev & WRITABLE ? "W" : ""}`;

// ---- EventWatcher -----------------------------------------------------------

test("EventWatcher: READ | WRITE watches both; one callback hears each event once", () => {
  const { r, state, stop } = blockingReactor();
  const w = new EventWatcher(r);
  const [a, b] = pair();
  const seen = [];
  w.watch(a, WatchFlag.READ | WatchFlag.WRITE, (fd, ev) => {
    seen.push(bits(ev));
    if (seen.length === 1) writeFd(b, "x"); // a becomes readable too
    if (ev & READABLE) { readFd(a); stop("read"); }
  });
  r.run();
  r.close();
  assert.is(state.reason, "read", `events seen: ${seen}`);
  assert.is(seen[0], "W", "a socket is writable at once, not readable");
  assert.is(seen.at(-1), "RW", "after the peer's write: readable (and still writable), one call");
});

test("EventWatcher: unwatch(fd, WRITE) keeps the read watch; unwatch(fd, READ) keeps the write watch", () => {
  {
    const { r, state, stop } = blockingReactor();
    const w = new EventWatcher(r);
    const [a, b] = pair();
    const reads = [], writes = [];
    w.watch(a, WatchFlag.READ | WatchFlag.WRITE, (fd, ev) => {
      if (ev & WRITABLE && writes.length === 0) {
        writes.push(bits(ev));
        w.unwatch(a, WatchFlag.WRITE);
        writeFd(b, "ping");
        return;
      }
      if (ev & WRITABLE) writes.push(bits(ev));
      if (ev & READABLE) { reads.push(readFd(a).data.toString()); r.setTimeout(100, () => stop("done")); }
    });
    r.run();
    r.close();
    assert.is(state.reason, "done");
    assert.equal(reads, ["ping"], "the read watch survived unwatch(WRITE)");
    assert.equal(writes, ["W"], "no writable event after unwatch(WRITE), though the socket stays writable");
  }
  {
    const { r, state, stop } = blockingReactor();
    const w = new EventWatcher(r);
    const [a, b] = pair();
    writeFd(b, "unread"); // a is readable from the start and stays so
    const events = [];
    w.watch(a, WatchFlag.READ | WatchFlag.WRITE, (fd, ev) => {
      events.push(bits(ev));
      if (events.length === 1) w.unwatch(a, WatchFlag.READ);
      if (events.length === 3) stop("done");
    });
    r.run();
    r.close();
    assert.is(state.reason, "done");
    assert.is(events[0], "RW");
    assert.equal(events.slice(1), ["W", "W"], "the write watch survived unwatch(READ); the unread data no longer shows");
  }
});

test("EventWatcher: separate read and write callbacks on one fd, flags other than READ/WRITE are refused", () => {
  const { r, state, stop } = blockingReactor();
  const w = new EventWatcher(r);
  const [a, b] = pair();
  const seen = [];
  w.watch(a, WatchFlag.WRITE, (fd, ev) => { seen.push(`write ${bits(ev)}`); w.unwatch(a, WatchFlag.WRITE); writeFd(b, "x"); });
  w.watch(a, WatchFlag.READ, (fd, ev) => { seen.push(`read ${bits(ev)}`); readFd(a); stop("done"); });
  r.run();
  assert.is(state.reason, "done");
  assert.equal(seen, ["write W", "read R"]);
  assert.throws(() => w.watch(a, 0, () => {}), RangeError);
  assert.throws(() => w.watch(a, WatchFlag.READ | 0x100, () => {}), RangeError);
  r.close();
});

// ---- register() on a registered fd ------------------------------------------

test("register() on a registered fd replaces its callback and interest (seed 003: INTEREST_MOD)", () => {
  const { r, state, stop } = blockingReactor();
  const [a] = pair();
  const calls = [];
  r.register(a, READABLE, () => calls.push("first"));
  r.register(a, WRITABLE, (fd, ev) => { calls.push(`second ${bits(ev)}`); r.deregister(a); stop("done"); });
  assert.ok(r.isRegistered(a));
  r.run();
  assert.is(state.reason, "done");
  assert.equal(calls, ["second W"], "only the new callback, with the new interest");
  // From inside a callback too (applied after the batch).
  const [c, d] = pair();
  const inner = [];
  r.register(c, WRITABLE, () => {
    inner.push("writable");
    r.register(c, READABLE, (fd, ev) => { inner.push(`readable ${bits(ev)}`); readFd(c); stop("inner"); });
    writeFd(d, "x");
  });
  state.reason = null;
  r.setTimeout(SAFETY_MS, () => stop("safety timeout"));
  r.run();
  r.close();
  assert.is(state.reason, "inner");
  assert.equal(inner, ["writable", "readable R"]);
});

// ---- refused epoll_ctl ---------------------------------------------------------

test("core: a refused ADD/MOD of a JS handler removes it and calls JS (CALL_CTL_ERROR); a refused DEL does not", () => {
  const h = new FakeHost();
  h.answer(abi.OP_CTL, 10, -abi.EPERM);
  const id = h.register(10, abi.REACTOR_READABLE, () => {});
  assert.equal(h.ctlErrors, [{ fd: 10, id, errno: abi.EPERM, op: abi.INTEREST_ADD }]);
  assert.is(h.x.deregister(10, 0), -abi.ENOENT, "the handler is gone");
  h.answer(abi.OP_CTL, 10, null);
  // A refused MOD of an fd that is in epoll: removed, and taken out of epoll.
  const id2 = h.register(11, abi.REACTOR_READABLE, () => {});
  h.answer(abi.OP_CTL, 11, [-abi.ENOMEM]);
  h.modify(11, abi.REACTOR_READABLE | abi.REACTOR_WRITABLE);
  assert.equal(h.ctlErrors[1], { fd: 11, id: id2, errno: abi.ENOMEM, op: abi.INTEREST_MOD });
  assert.equal(h.ops(abi.OP_CTL, { fd: 11 }).map((e) => e.a0), [abi.INTEREST_ADD, abi.INTEREST_MOD, abi.INTEREST_DEL]);
  // A refused DEL (the fd was closed first) is not an error of anyone's.
  h.register(12, abi.REACTOR_READABLE, () => {});
  h.answer(abi.OP_CTL, 12, -abi.EBADF);
  h.deregister(12);
  assert.is(h.ctlErrors.length, 2);
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test("core: a refusal for an older incarnation of the fd is not reported to the handler registered since", () => {
  const h = new FakeHost();
  // Two tasks of one pass: A registers fd 20 (queued; its ADD goes out with B's call in one
  // round); B closes fd 20 and registers the new file behind the number before that ADD completes.
  let second = 0;
  h.defer(() => { h.x.register(20, abi.REACTOR_READABLE, 1); h.io.set(1, () => {}); });
  h.defer(() => { h.x.deregister(20, 1); h.x.register(20, abi.REACTOR_READABLE, 2); h.io.set(2, () => second++); });
  h.answer(abi.OP_CTL, 20, [-abi.EPERM]);
  h.runDeferred();
  const ctls = h.ops(abi.OP_CTL, { fd: 20 });
  assert.is(ctls.length, 2, JSON.stringify(ctls));
  assert.ok(ctls[0].a2 !== ctls[1].a2, "two generations");
  assert.equal(h.ctlErrors, [], "the refusal was the old handler's");
  h.dispatch([{ fd: 20, events: abi.EV_READABLE }]);
  assert.is(second, 1, "the new handler is live");
});

test("a refused register()/modify() applied at once throws SysError (EPERM, EBADF) and leaves nothing registered", () => {
  const r = new Reactor({ handleSignals: false, maxFds: 4096 });
  const file = regularFile();
  assert.throws(() => r.register(file, READABLE, () => {}), (e) => e instanceof SysError && e.code === "EPERM" && e.fd === file && (BACKEND === "epoll" ? /epoll_ctl\(EPOLL_CTL_ADD, fd \d+\)/ : /poll interest add \(fd \d+\)/).test(e.message));
  assert.not.ok(r.isRegistered(file));
  assert.throws(() => r.deregister(file), (e) => e.code === "ENOENT", "the core forgot it too");
  // A closed fd.
  const p = new Int32Array(2);
  assert.is(libc.pipe2(p, 0o4000 | 0o2000000), 0);
  libc.close(p[0]);
  own(p[1]);
  assert.throws(() => r.register(p[0], READABLE, () => {}), (e) => e.code === "EBADF");
  // modify() of an fd closed behind the reactor's back (no deregister).
  const [a, b] = socketpair();
  own(b);
  r.register(a, READABLE, () => {});
  libc.close(a);
  assert.throws(() => r.modify(a, READABLE | WRITABLE), (e) => e.code === "EBADF" && (BACKEND === "epoll" ? /EPOLL_CTL_MOD/ : /interest mod/).test(e.message));
  assert.not.ok(r.isRegistered(a));
  // The reactor still works.
  const [c] = pair();
  r.register(c, WRITABLE, () => {});
  assert.ok(r.isRegistered(c));
  r.close();
});

test("register() of an fd closed without deregister() and reused: the new file is registered (MOD ENOENT -> ADD)", () => {
  const { r, state, stop } = blockingReactor();
  const [a, b] = socketpair();
  own(b);
  r.register(a, READABLE, () => {});
  libc.close(a);                                   // behind the reactor's back
  const [c, d] = pair();                           // c gets a's number back
  assert.is(c, a, "the kernel reused the fd number");
  const seen = [];
  r.register(c, READABLE, (fd, ev) => { seen.push(bits(ev)); readFd(c); stop("read"); });
  assert.ok(r.isRegistered(c));
  writeFd(d, "x");
  r.run();
  r.close();
  assert.is(state.reason, "read");
  assert.equal(seen, ["R"]);
});

test("a log function that throws loses no request: the line goes to stderr and serving goes on", async () => {
  const root = mkdtempSync(join(tmpdir(), "wr-logthrow-"));
  writeFileSync(join(root, "a.txt"), "hello\n");
  const server = new Server({ protocol: "http", root, port: 0, accessLog: true, handleSignals: false,
    log: (level) => { if (level === "access") throw new Error("log sink failed"); } });
  server.attach();
  try {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${server.port}/a.txt`);
      assert.is(res.status, 200);
      assert.is(await res.text(), "hello\n");
    }
    assert.is(server.stats().requests, 3);
  } finally {
    server.stop(); server.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test("close() from inside a loop callback throws (the round in progress still needs the loop); after run() it works", () => {
  const { r, state, stop } = blockingReactor();
  const [a] = pair();
  let error = null;
  r.register(a, WRITABLE, () => {
    try { r.close(); } catch (e) { error = e; }
    r.deregister(a);
    stop("done");
  });
  r.run();
  assert.is(state.reason, "done");
  assert.ok(error instanceof Error && /inside a loop callback/.test(error.message), String(error));
  r.close();
});

test("a refusal applied later, in a phase, goes to the registration's onError, else the Reactor's onError", () => {
  const errors = [];
  const { r, state, stop } = blockingReactor({ onError: (err, fd) => errors.push(`reactor ${err.code} ${fd}`) });
  const fileA = regularFile();
  const fileB = regularFile();
  const order = [];
  r.setTimeout(10, () => {
    // Inside a phase: queued, applied after this callback returns.
    r.register(fileA, READABLE, () => {}, { onError: (err, fd) => { order.push("onError"); errors.push(`own ${err.code} ${fd}`); } });
    r.register(fileB, READABLE, () => {});
    order.push("callback returned");
    r.setTimeout(50, () => stop("done"));
  });
  r.run();
  assert.is(state.reason, "done");
  assert.equal(errors.sort(), [`own EPERM ${fileA}`, `reactor EPERM ${fileB}`].sort());
  assert.equal(order, ["callback returned", "onError"]);
  assert.not.ok(r.isRegistered(fileA) || r.isRegistered(fileB));
  r.close();
});

test("with no onError a refusal in a phase is thrown out of run() after the tick; run() works again after", () => {
  const { r, stop } = blockingReactor();
  const file = regularFile();
  let tasks = 0;
  r.setTimeout(10, () => {
    r.register(file, READABLE, () => {});
    r.defer(() => tasks++); // the tick finishes before the error leaves
  });
  assert.throws(() => r.run(), (e) => e instanceof SysError && e.code === "EPERM" && e.fd === file);
  assert.is(tasks, 1, "the tick ran to its end");
  assert.not.ok(r.loop.isRunning);
  let again = false;
  r.setTimeout(10, () => { again = true; stop("again"); });
  r.run();
  r.close();
  assert.ok(again);
});

test("attached, an unhandled refusal surfaces as an uncaught exception and the loop carries on", async () => {
  const r = new Reactor({ handleSignals: false, maxFds: 4096 });
  const file = regularFile();
  const caught = new Promise((resolve) => process.prependOnceListener("uncaughtException", resolve));
  try {
    r.attach();
    r.setTimeout(5, () => r.register(file, READABLE, () => {}));
    const err = await within(5_000, caught, "the uncaught exception");
    assert.ok(err instanceof SysError && err.code === "EPERM", String(err));
    assert.ok(r.loop.isRunning, "still attached");
    await within(5_000, new Promise((resolve) => r.setTimeout(10, resolve)), "a timer after the error");
  } finally {
    r.close();
  }
});

// ---- the fd table ---------------------------------------------------------------

test("the default fd table covers the process's fd limit: an fd above 1024 can be registered", () => {
  const hard = Number(spawnSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).stdout.trim());
  assert.ok(hard > 1024, `this test needs a hard fd limit above 1024 (got ${hard})`);
  const r = new Reactor({ handleSignals: false });
  assert.is(r.loop.core.ctlI32(abi.CFG_MAX_FDS), Math.min(hard, 1 << 20));
  const [a] = pair();
  const high = Math.min(hard, 1 << 20) - 1;
  assert.is(dup2(a, high), high, "the soft limit was raised to the hard one");
  own(high);
  r.register(high, WRITABLE, () => {});
  assert.ok(r.isRegistered(high));
  r.close();
});

// ---- await server.shutdown() ---------------------------------------------------

const BIG = Buffer.alloc(4 << 20, 66);
writeFileSync(join(dir, "big.bin"), BIG);
writeFileSync(join(dir, "small.txt"), "small\n");

/** GET over a socket with a small receive buffer, so the response stays in progress while it does not read. */
function slowGet(port, path) {
  const s = new net.Socket({ fd: connectNarrow(port) });
  const chunks = [];
  s.on("data", (d) => chunks.push(d));
  s.on("error", () => {});
  const closed = new Promise((resolve) => s.on("close", () => resolve(Buffer.concat(chunks))));
  const started = new Promise((resolve) => s.once("data", resolve));
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  return { s, closed, started };
}

test("attach mode: await shutdown() settles once the request in progress finished and the loop detached", async () => {
  const server = new Server({ protocol: "http", root: dir, port: 0, handleSignals: false, maxFds: 4096 });
  try {
    server.attach();
    const idle = net.connect(server.port, "127.0.0.1");
    idle.on("error", () => {});
    const idleClosed = new Promise((resolve) => idle.on("close", resolve));
    await new Promise((resolve) => { idle.once("data", resolve); idle.write("GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"); });
    const dl = slowGet(server.port, "/big.bin");
    await dl.started;
    dl.s.pause();
    let settled = false;
    const p = server.shutdown(10_000);
    assert.ok(p instanceof Promise);
    p.then(() => { settled = true; });
    await within(5_000, idleClosed, "the idle keep-alive connection to close");
    await sleep(200);
    assert.not.ok(settled, "a download is still in progress");
    assert.ok(server.reactor.loop.isRunning);
    assert.is(server.shutdown(10_000), p, "a second call returns the same promise");
    dl.s.resume();
    const result = await within(15_000, p, "shutdown to settle");
    assert.equal(result, { inProgress: 1, forced: 0 });
    assert.not.ok(server.reactor.loop.isRunning, "the loop detached");
    const got = await within(5_000, dl.closed, "the download to end");
    const head = got.subarray(0, got.indexOf("\r\n\r\n")).toString();
    assert.match(head, /^HTTP\/1\.1 200/);
    assert.is(got.length - head.length - 4, BIG.length, "the whole body arrived");
  } finally {
    server.close();
  }
});

test("attach mode: a client that stops reading is cut off at the grace deadline and counted as forced", async () => {
  const server = new Server({ protocol: "http", root: dir, port: 0, handleSignals: false, maxFds: 4096 });
  try {
    server.attach();
    const dl = slowGet(server.port, "/big.bin");
    await dl.started;
    dl.s.pause();
    const result = await within(10_000, server.shutdown(200), "shutdown to settle");
    assert.equal(result, { inProgress: 1, forced: 1 });
    assert.not.ok(server.reactor.loop.isRunning);
    dl.s.resume();
    const got = await within(5_000, dl.closed, "the server to close the connection");
    assert.ok(got.length < BIG.length, "it did not get everything");
  } finally {
    server.close();
  }
});

test("shutdown() with nothing in progress settles at once, and the stopped loop stays stopped", async () => {
  const server = new Server({ protocol: "echo", port: 0, handleSignals: false, maxFds: 4096 });
  try {
    server.attach();
    assert.equal(await within(5_000, server.shutdown(1000), "shutdown"), { inProgress: 0, forced: 0 });
    server.attach(); // a finished shutdown is final: nothing listens any more
    assert.not.ok(server.reactor.loop.isRunning);
    server.run(); // returns at once
  } finally {
    server.close();
  }
});

test("runInLoop: a task that throws (or has no definition) is logged; the tasks queued behind it still run", async () => {
  const logs = [];
  const { r, state, stop } = blockingReactor({ log: (level, line) => logs.push(`${level}: ${line}`) });
  r.defineTask("boom", () => { throw new Error("boom"); });
  r.defineTask("last", () => stop("last ran"));
  const worker = new Worker(`
    const { workerData } = require("node:worker_threads");
    import(workerData.dist).then(({ RemoteLoop }) => {
      const q = new RemoteLoop(workerData.remote);
      q.runInLoop("boom"); q.runInLoop("nope"); q.runInLoop("last");
    });`, { eval: true, workerData: { dist: distUrl, remote: r.remote() } });
  try {
    r.run();
  } finally {
    await worker.terminate();
    r.close();
  }
  assert.is(state.reason, "last ran");
  assert.ok(logs.some((l) => /^error: callback threw: Error: boom/.test(l)), logs.join("\n"));
  assert.ok(logs.some((l) => /no task named "nope"/.test(l)), logs.join("\n"));
});

test("close() after stop() closes the connections still open instead of leaking their fds", async () => {
  const server = new Server({ protocol: "echo", port: 0, handleSignals: false, maxFds: 4096 });
  server.attach();
  const clients = await Promise.all([1, 2, 3].map(() => new Promise((resolve, reject) => {
    const s = net.connect(server.port, "127.0.0.1", () => s.write("hi"));
    s.once("data", () => resolve(s));
    s.on("error", reject);
  })));
  assert.is(server.stats().liveConnections, 3);
  const closed = Promise.all(clients.map((s) => new Promise((resolve) => s.on("close", resolve))));
  server.stop();
  server.close();
  await within(5_000, closed, "the clients to see their connections closed");
});

test.run();
