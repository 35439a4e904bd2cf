// The event backends on real fds (host/backend/: the contract in types.ts),
// each test once per backend: level vs edge delivery, the errors the core's
// retry logic relies on (EEXIST, ENOENT, EBADF, EPERM), hang-up on a peer's
// close, generations in the records, more ready fds than `cap`, and poll
// past select's 1024-fd limit. Also: attach mode on poll, and the library's
// backend option. Backends are named here explicitly, so this file runs the
// same whatever WASM_REACTOR_BACKEND says.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { openSync, closeSync } from "node:fs";
import {
  createBackend, BACKEND_NAMES, Core, defaultCoreConfig, Reactor, Server, READABLE, abi, libc, defaultMaxFds,
} from "../dist/index.js";
import { socketpair, readFd, writeFd, closeFd, EAGAIN } from "./lib/sys.mjs";

const { EV_READABLE: R, EV_WRITABLE: W, EV_HANGUP: H, EV_EDGE: EDGE, INTEREST_ADD: ADD, INTEREST_MOD: MOD, INTEREST_DEL: DEL } = abi;

// One core, for its event area in linear memory (what wait() writes into).
const core = new Core({ ...defaultCoreConfig, maxFds: 64, maxEvents: 4096 });
const AREA = core.ctlI32(abi.CTL_EVENTS);
const CAP = core.ctlI32(abi.CTL_EVENTS_CAP);

const open = new Set();
function pair() { const p = socketpair(); p.forEach((fd) => open.add(fd)); return p; }
function close(fd) { if (open.delete(fd)) closeFd(fd); }
test.after(() => { for (const fd of open) closeFd(fd); open.clear(); });

/** wait(), decoded independently of the backend: the records as {fd, gen, bits}, sorted by fd. */
function wait(b, cap = CAP, timeout = 0) {
  const n = b.wait(core, AREA, cap, timeout);
  assert.ok(n >= 0, `wait returned ${n}`);
  const dv = new DataView(core.u8.buffer);
  const out = [];
  for (let i = 0; i < n; i++) {
    const e = AREA + i * abi.EVENT_SIZE;
    out.push({ fd: dv.getInt32(e + abi.EVENT_FD, true), gen: dv.getInt32(e + abi.EVENT_GEN, true), bits: dv.getInt32(e + abi.EVENT_BITS, true) });
  }
  return out.sort((x, y) => x.fd - y.fd);
}
const drain = (fd) => { for (;;) { const { n, errno } = readFd(fd, 65536); if (n <= 0) return n < 0 ? -errno : 0; } };

for (const name of BACKEND_NAMES) {
  test(`${name}: level-triggered READABLE is reported on every wait until drained, with fd and generation`, () => {
    const b = createBackend(name);
    const [a, peer] = pair();
    assert.is(b.setInterest(a, ADD, R, 7), 0);
    assert.equal(wait(b), [], "nothing to read yet");
    writeFd(peer, "hello");
    assert.equal(wait(b), [{ fd: a, gen: 7, bits: R }]);
    assert.equal(wait(b), [{ fd: a, gen: 7, bits: R }], "level: again, nothing was read");
    assert.is(drain(a), -EAGAIN);
    assert.equal(wait(b), [], "drained: quiet");
    // MOD replaces the generation (an event for the old incarnation is recognisable).
    writeFd(peer, "x");
    assert.is(b.setInterest(a, MOD, R, 8), 0);
    assert.equal(wait(b), [{ fd: a, gen: 8, bits: R }]);
    assert.is(b.setInterest(a, DEL, 0, 0), 0);
    assert.equal(wait(b), [], "deleted: nothing");
    b.close();
  });

  test(`${name}: EDGE reports once; again after EAGAIN (wouldBlock) and new data, or after a MOD`, () => {
    const b = createBackend(name);
    const [a, peer] = pair();
    assert.is(b.setInterest(a, ADD, R | EDGE, 1), 0);
    writeFd(peer, "one");
    assert.equal(wait(b), [{ fd: a, gen: 1, bits: R }]);
    assert.equal(wait(b), [], "edge: no second report while nothing new happened");
    assert.is(drain(a), -EAGAIN);
    b.wouldBlock?.(a, R); // what the pump says after a read met EAGAIN
    assert.equal(wait(b), [], "drained: nothing");
    writeFd(peer, "two");
    assert.equal(wait(b), [{ fd: a, gen: 1, bits: R }], "a new edge");
    assert.equal(wait(b), []);
    assert.is(b.setInterest(a, MOD, R | EDGE, 2), 0);
    assert.equal(wait(b), [{ fd: a, gen: 2, bits: R }], "a MOD re-evaluates readiness (epoll does)");
    b.close();
  });

  test(`${name}: an always-writable socket with EDGE does not make every wait return`, () => {
    const b = createBackend(name);
    const [a] = pair();
    assert.is(b.setInterest(a, ADD, W | EDGE, 3), 0);
    assert.equal(wait(b), [{ fd: a, gen: 3, bits: W }]);
    for (let i = 0; i < 3; i++) assert.equal(wait(b), [], `wait ${i}: no repeat`);
    b.wouldBlock?.(a, W); // a write fell short
    const again = wait(b);
    assert.ok(again.length <= 1 && (again.length === 0 || again[0].bits === W), JSON.stringify(again));
    // Level-triggered, the same socket is reported every time.
    assert.is(b.setInterest(a, MOD, W, 4), 0);
    assert.equal(wait(b), [{ fd: a, gen: 4, bits: W }]);
    assert.equal(wait(b), [{ fd: a, gen: 4, bits: W }]);
    b.close();
  });

  test(`${name}: the errors the core's retry logic relies on (as epoll_ctl): EEXIST, ENOENT, EBADF, EPERM`, () => {
    const b = createBackend(name);
    const [a, peer] = pair();
    assert.is(b.setInterest(a, MOD, R, 0), -abi.ENOENT, "MOD of an unwatched fd");
    assert.is(b.setInterest(a, DEL, 0, 0), -abi.ENOENT, "DEL of an unwatched fd");
    assert.is(b.setInterest(a, ADD, R, 0), 0);
    assert.is(b.setInterest(a, ADD, R, 0), -abi.EEXIST, "ADD of a watched fd");
    close(peer);
    const [x, y] = pair();
    close(x); close(y);
    assert.is(b.setInterest(x, ADD, R, 0), -abi.EBADF, "a closed fd");
    const file = openSync(new URL(import.meta.url), "r");
    try {
      assert.is(b.setInterest(file, ADD, R, 0), -abi.EPERM, "a regular file (poll would call it ready forever)");
    } finally { closeSync(file); }
    b.close();
  });

  test(`${name}: the peer's close is HANGUP (with READABLE: read returns 0), whatever the interest`, () => {
    const b = createBackend(name);
    const [a, peer] = pair();
    const [c, peer2] = pair();
    assert.is(b.setInterest(a, ADD, R, 5), 0);
    assert.is(b.setInterest(c, ADD, 0, 6), 0); // interest in nothing: HANGUP still comes
    close(peer); close(peer2);
    const got = wait(b);
    assert.is(got.length, 2, JSON.stringify(got));
    assert.ok(got[0].fd === a && (got[0].bits & H) && (got[0].bits & R), `fd ${a}: ${got[0].bits}`);
    assert.ok(got[1].fd === c && (got[1].bits & H), `fd ${c}: ${got[1].bits}`);
    b.close();
  });

  test(`${name}: closed(fd) forgets it, so its reused number can be added again`, () => {
    const b = createBackend(name);
    const [a, peer] = pair();
    assert.is(b.setInterest(a, ADD, R, 1), 0);
    b.closed(a); close(a);
    let reused = -1;
    for (let i = 0; i < 8 && reused !== a; i++) { const [p, q] = pair(); if (p === a) reused = p; else { close(p); close(q); } }
    assert.is(reused, a, "the kernel handed the number out again");
    assert.is(b.setInterest(a, ADD, R, 2), 0, "not EEXIST");
    writeFd(a, "x"); // a is one end of a new pair: its peer gets it, a itself stays quiet
    assert.equal(wait(b), []);
    close(peer);
    b.close();
  });

  test(`${name}: more ready fds than cap: at most cap per wait, and every fd gets its turn`, () => {
    const b = createBackend(name);
    const fds = [];
    for (let i = 0; i < 10; i++) { const [a, peer] = pair(); writeFd(peer, "x"); fds.push(a); b.setInterest(a, ADD, R, i); }
    const seen = new Set();
    for (let i = 0; i < 5; i++) {
      const got = wait(b, 3);
      assert.ok(got.length <= 3, `wait ${i}: ${got.length}`);
      for (const e of got) seen.add(e.fd);
    }
    assert.is(seen.size, 10, `reported: ${[...seen]}`);
    b.close();
  });
}

test("poll: no 1024-fd limit: 1,100 pipes watched, the ready ones past fd 1024 reported", () => {
  const limit = defaultMaxFds(); // raises the soft RLIMIT_NOFILE to the hard one
  if (limit < 2400) { console.log(`  (skipped: RLIMIT_NOFILE ${limit})`); return; }
  const b = createBackend("poll");
  const ends = [];
  try {
    for (let i = 0; i < 1100; i++) {
      const p = new Int32Array(2);
      assert.is(libc.pipe2(p, 0o4000 | 0o2000000), 0);
      ends.push([p[0], p[1]]);
      assert.is(b.setInterest(p[0], ADD, R, i), 0);
    }
    const ready = ends.filter((_, i) => i % 100 === 99);
    for (const [, w] of ready) writeFd(w, "x");
    const got = wait(b);
    assert.equal(got.map((e) => e.fd), ready.map(([r]) => r).sort((x, y) => x - y));
    assert.ok(got.some((e) => e.fd > 1024), `highest reported fd ${got.at(-1).fd}`);
  } finally {
    for (const [r, w] of ends) { closeFd(r); closeFd(w); }
    b.close();
  }
});

test("attach mode on poll: libuv watches each fd; a callback runs beside Node's own timers", async () => {
  const r = new Reactor({ handleSignals: false, backend: "poll", maxFds: 4096 });
  assert.is(r.loop.backend.name, "poll");
  const [a, peer] = pair();
  const got = [];
  r.register(a, READABLE, () => { got.push(readFd(a).data.toString()); });
  r.attach();
  try {
    setTimeout(() => writeFd(peer, "ping"), 20);
    for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(got, ["ping"]);
    writeFd(peer, "pong");
    for (let i = 0; i < 200 && got.length === 1; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(got, ["ping", "pong"]);
  } finally {
    r.deregister(a);
    r.loop.detach();
    r.close();
  }
});

test("the backend option: Reactor and Server take a name, an unknown one is a clear error", () => {
  for (const name of BACKEND_NAMES) {
    const r = new Reactor({ handleSignals: false, backend: name, maxFds: 256 });
    assert.is(r.loop.backend.name, name);
    r.close();
  }
  assert.throws(() => new Reactor({ handleSignals: false, backend: "kqueue" }), (e) => e instanceof TypeError && /backend: expected one of epoll, poll, got "kqueue"/.test(e.message));
  assert.throws(() => new Server({ protocol: "echo", port: 0, backend: "select" }), (e) => e instanceof TypeError && /Server: backend: expected one of epoll, poll/.test(e.message));
});
test.run();
