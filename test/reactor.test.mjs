// The Reactor API on real file descriptors (127.0.0.1 and socketpairs):
// timers in a blocking run(), edge- vs level-triggered delivery, cross-thread
// runInLoop, EventWatcher, attach() beside Node's own event loop, and memory
// growth in the middle of a phase.
// Blocking runs are bounded by a safety timer inside the loop; everything
// opened is closed in test.after.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { Worker } from "node:worker_threads";
import net from "node:net";
import { randomFillSync } from "node:crypto";
import { Reactor, EventWatcher, WatchFlag, Server, READABLE, WRITABLE, EDGE, libc, listenTcp } from "../dist/index.js";
import { socketpair, readFd, writeFd, closeFd, connectNarrow, EAGAIN } from "./lib/sys.mjs";
import { cleanup, within, distUrl, echoOnce, slowEcho, firstDifference } from "./lib/procs.mjs";

const BACKEND = process.env.WASM_REACTOR_BACKEND || "epoll"; // the runner runs this file once per backend
const SAFETY_MS = 10_000;
const fds = new Set();
const pair = () => { const p = socketpair(); p.forEach((fd) => fds.add(fd)); return p; };

test.after.each(() => {
  for (const fd of fds) closeFd(fd);
  fds.clear();
});
test.after(cleanup);

/** A Reactor for a blocking run(): `stop(reason)` ends it; a safety timer ends it with "safety timeout". */
function blockingReactor() {
  const r = new Reactor({ handleSignals: false, maxFds: 4096 });
  const state = { reason: null };
  const stop = (reason) => { state.reason ??= reason; r.stop(); };
  r.setTimeout(SAFETY_MS, () => stop("safety timeout"));
  return { r, state, stop };
}

test("setInterval(100) fires about 10 times in 1 s of run()", () => {
  const { r, state, stop } = blockingReactor();
  let ticks = 0;
  r.setInterval(100, () => ticks++);
  r.setTimeout(1000, () => stop("done"));
  r.run();
  r.close();
  assert.is(state.reason, "done");
  assert.ok(ticks >= 8 && ticks <= 12, `interval fired ${ticks} times in 1 s (want 8..12)`);
});

test("stop() from a timer callback returns from run() at once, not at the next timer", () => {
  const { r, state, stop } = blockingReactor();
  let later = 0;
  r.setTimeout(5_000, () => later++);
  r.setTimeout(50, () => stop("done"));
  const t0 = performance.now();
  r.run();
  const took = performance.now() - t0;
  r.close();
  assert.is(state.reason, "done");
  assert.is(later, 0);
  assert.ok(took < 4_000, `run() returned after ${Math.round(took)} ms; the 5 s timer was still pending`);
});

test("EDGE: a 10 KB TCP burst is drained to EAGAIN in one callback", () => {
  const { r, state, stop } = blockingReactor();
  const listener = listenTcp({ port: 0 });
  fds.add(listener.fd);
  // The peer, in a child process: one write of 10 KB, then it keeps the connection open.
  const child = spawn(process.execPath, ["-e", `
    const s = require("node:net").connect(${listener.port}, "127.0.0.1", () => s.write(Buffer.alloc(10240, 120)));
    setTimeout(() => {}, 30000);`], { stdio: "ignore" });
  const wakeups = [];
  r.register(listener.fd, READABLE, () => {
    const fd = libc.accept4(listener.fd, 0, 0, 0o4000 | 0o2000000);
    if (fd < 0) return;
    fds.add(fd);
    r.deregister(listener.fd);
    r.register(fd, READABLE | EDGE, (_fd, events) => {
      const reads = [];
      for (;;) {
        const { n, errno } = readFd(fd, 4096);
        reads.push(n < 0 ? -errno : n);
        if (n <= 0) break;
      }
      wakeups.push({ events, reads });
      if (wakeups.length === 1) r.setTimeout(300, () => stop("done")); // room for a second wakeup, if any
    });
  });
  try {
    r.run();
  } finally {
    child.kill("SIGKILL");
    r.close();
  }
  assert.is(state.reason, "done", "the burst arrived");
  assert.is(wakeups.length, 1, `one wakeup (${JSON.stringify(wakeups)})`);
  const { events, reads } = wakeups[0];
  assert.ok(events & READABLE);
  assert.is(reads.slice(0, -1).reduce((a, b) => a + b, 0), 10240, `read everything: ${reads}`);
  assert.is(reads.at(-1), -EAGAIN, "the callback read until EAGAIN");
});

test("EDGE is honoured: a partial read gets no second call; level-triggered calls again until drained", () => {
  const calls = { et: 0, lt: 0 };
  const { r, state, stop } = blockingReactor();
  const [etA, etB] = pair();
  const [ltA, ltB] = pair();
  writeFd(etB, Buffer.alloc(10240, 1));
  writeFd(ltB, Buffer.alloc(10240, 2));
  r.register(etA, READABLE | EDGE, () => { calls.et++; readFd(etA, 1024); });
  r.register(ltA, READABLE, () => { calls.lt++; readFd(ltA, 1024); });
  r.setTimeout(300, () => stop("done"));
  r.run();
  r.close();
  assert.is(state.reason, "done");
  if (BACKEND === "poll") {
    // poll has no kernel edges: a register() callback re-arms its fd (the pump
    // cannot see the callback's own reads), so EDGE behaves level-triggered.
    assert.is(calls.et, 10, "poll: EDGE callbacks are called again until drained");
  } else {
    assert.is(calls.et, 1, "edge-triggered: one call, however much is left unread");
  }
  assert.is(calls.lt, 10, "level-triggered: one call per 1 KB read, until drained");
});

test("runInLoop from a worker_thread wakes a loop blocked in epoll_wait", async () => {
  const { r, state, stop } = blockingReactor();
  const got = [];
  r.defineTask("hello", (...args) => { got.push(args); stop("task"); });
  const ready = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(`
    const { workerData } = require("node:worker_threads");
    import(workerData.dist).then(({ RemoteLoop }) => {
      const flag = new Int32Array(workerData.ready);
      Atomics.wait(flag, 0, 0, 10000);           // the loop is about to block...
      Atomics.wait(flag, 0, 1, 200);             // ...and now it has, long since
      new RemoteLoop(workerData.remote).runInLoop("hello", "from", "worker", 42);
    });`, { eval: true, workerData: { dist: distUrl, remote: r.remote(), ready: ready.buffer } });
  try {
    Atomics.store(ready, 0, 1);
    Atomics.notify(ready, 0);
    const t0 = performance.now();
    r.run();
    assert.is(state.reason, "task", "woken by the worker, not by the safety timer");
    assert.equal(got, [["from", "worker", 42]]);
    assert.ok(performance.now() - t0 >= 150, "the loop was idle until the message came");
  } finally {
    await worker.terminate();
    r.close();
  }
});

test("a full runInLoop queue throws QueueFullError at the producer; nothing is lost", async () => {
  const { r, state, stop } = blockingReactor();
  const got = [];
  r.defineTask("n", (i) => { got.push(i); if (got.length === 4) stop("all four"); });
  const remote = r.remote(4);
  const worker = new Worker(`
    const { workerData, parentPort } = require("node:worker_threads");
    import(workerData.dist).then(({ RemoteLoop, QueueFullError }) => {
      const q = new RemoteLoop(workerData.remote);
      const sent = [];
      try {
        for (let i = 0; i < 6; i++) { q.runInLoop("n", i); sent.push(i); }
        parentPort.postMessage({ sent, error: null });
      } catch (e) {
        parentPort.postMessage({ sent, error: e.name, isQueueFull: e instanceof QueueFullError, message: e.message });
      }
    });`, { eval: true, workerData: { dist: distUrl, remote } });
  try {
    const msg = await within(10_000, new Promise((resolve, reject) => { worker.once("message", resolve); worker.once("error", reject); }),
      "the worker's report");
    assert.equal(msg.sent, [0, 1, 2, 3], "four fit");
    assert.is(msg.error, "QueueFullError", msg.message);
    assert.ok(msg.isQueueFull);
    r.run(); // the loop drains what was queued
    assert.is(state.reason, "all four");
    assert.equal(got, [0, 1, 2, 3], "in order");
  } finally {
    await worker.terminate();
    r.close();
  }
});

for (const [what, start] of [["2^31 (the Int32 sign)", 2 ** 31 - 5], ["2^32 (zero again)", -5]]) {
  test(`runInLoop keeps order and loses nothing when its counters wrap past ${what}`, async () => {
    // The counters start 5 short of the wrap (test hook); 40 messages through 4 slots cross it ten times over.
    process.env.WASM_REACTOR_REMOTE_COUNTER_START = String(start);
    const { r, state, stop } = blockingReactor();
    const got = [];
    r.defineTask("n", (i) => { got.push(i); if (got.length === 40) stop("all forty"); });
    let remote;
    try { remote = r.remote(4); } finally { delete process.env.WASM_REACTOR_REMOTE_COUNTER_START; }
    const worker = new Worker(`
      const { workerData } = require("node:worker_threads");
      import(workerData.dist).then(({ RemoteLoop, QueueFullError }) => {
        const q = new RemoteLoop(workerData.remote);
        const nap = new Int32Array(new SharedArrayBuffer(4));
        for (let i = 0; i < 40; i++) {
          for (;;) {
            try { q.runInLoop("n", i); break; } catch (e) { if (!(e instanceof QueueFullError)) throw e; Atomics.wait(nap, 0, 0, 1); }
          }
        }
      });`, { eval: true, workerData: { dist: distUrl, remote } });
    try {
      r.run();
      assert.is(state.reason, "all forty");
      assert.equal(got, Array.from({ length: 40 }, (_, i) => i), "every message, in order");
    } finally {
      await worker.terminate();
      r.close();
    }
  });
}

test("EventWatcher: read and write watches on one fd, unwatch, runInLoop, unwatchAll", () => {
  const { r, state, stop } = blockingReactor();
  const w = new EventWatcher(r);
  const [a, b] = pair();
  const seen = [];
  w.watch(a, WatchFlag.READ, (fd, ev) => {
    const { data } = readFd(fd);
    seen.push(`a read ${data} (${ev & READABLE ? "R" : ""}${ev & WRITABLE ? "W" : ""})`);
    w.runInLoop(() => {
      seen.push("task");
      w.unwatchAll();
      writeFd(b, "ignored"); // nobody watches any more
      r.setTimeout(200, () => stop("done"));
    });
    seen.push("a read returns");
  });
  w.watch(a, WatchFlag.WRITE, (fd, ev) => {
    seen.push(`a writable (${ev & READABLE ? "R" : ""}${ev & WRITABLE ? "W" : ""})`);
    w.unwatch(a, WatchFlag.WRITE); // level-triggered: without this it would fire every tick
    writeFd(a, "ping");
  });
  w.watch(b, WatchFlag.READ, (fd) => {
    const { data } = readFd(fd);
    seen.push(`b read ${data}`);
    writeFd(b, "pong");
  });
  r.run();
  r.close();
  assert.is(state.reason, "done");
  assert.equal(seen, ["a writable (W)", "b read ping", "a read pong (R)", "a read returns", "task"]);
});

test("attach(): the reactor serves echo while Node timers and a node:net server keep working", async () => {
  const server = new Server({ protocol: "echo", port: 0, handleSignals: false, maxFds: 4096 });
  let nodeTicks = 0;
  const ticker = setInterval(() => nodeTicks++, 10);
  const plain = net.createServer((s) => s.pipe(s));
  try {
    server.attach();
    await new Promise((resolve) => plain.listen(0, "127.0.0.1", resolve));
    const payload = (i) => Buffer.alloc(10_000 + i, 65 + (i % 26));
    const echoes = Array.from({ length: 20 }, (_, i) => echoOnce(server.port, payload(i)));
    const nodeRoundTrip = echoOnce(plain.address().port, "through node:net");
    const results = await within(10_000, Promise.all(echoes), "20 echo clients");
    results.forEach((got, i) => assert.ok(got.equals(payload(i)), `client ${i} got its bytes back`));
    assert.is((await nodeRoundTrip).toString(), "through node:net");
    const before = nodeTicks;
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(nodeTicks - before >= 5, `Node's setInterval kept ticking (${nodeTicks - before} ticks in 200 ms)`);
    const s = server.stats();
    assert.is(s.accepted, 20);
  } finally {
    clearInterval(ticker);
    plain.close();
    server.stop();
    server.close();
  }
});

test("linear memory growing inside a phase (a big write ring) does not break the loop", async () => {
  const logs = [];
  const server = new Server({
    protocol: "echo", port: 0, handleSignals: false, maxFds: 4096, writeBufMax: 16 << 20,
    log: (level, line) => logs.push(`${level}: ${line}`),
  });
  try {
    server.attach();
    const before = server.stats().memoryBytes;
    const data = randomFillSync(Buffer.alloc(6 << 20));
    const got = await slowEcho(new net.Socket({ fd: connectNarrow(server.port) }), data, { pauseMs: 0, ms: 15_000 })
      .catch((e) => { throw new Error(`${e.message}; stats ${JSON.stringify(server.stats())}; log ${JSON.stringify(logs.slice(0, 5))}`); });
    assert.ok(server.stats().memoryBytes > before, "the ring needed more linear memory");
    assert.equal(logs, [], "no errors from the loop");
    const at = firstDifference(got, data);
    assert.ok(at === -1, `echo differs at byte ${at} of ${data.length}`);
    // The loop clock still moves: a reactor timer set now fires.
    await within(2_000, new Promise((resolve) => server.reactor.setTimeout(20, resolve)), "a reactor timer after the growth");
  } finally {
    server.stop();
    server.close();
  }
});

test.run();
