// The io_uring ring driver (host/uring/ring.ts) and the server's io_uring
// executor (host/executor-uring.ts), against the real kernel on 127.0.0.1:
//  - the ring: NOPs round-trip their user_data, the probe, the eventfd,
//    and the forced failure (WASM_REACTOR_IO_URING_FAIL) with its reason;
//  - the executors' contract, run on BOTH executors (libc and io_uring: the
//    same expectations, written out, not copied from either): recv/accept
//    on nothing and send/write/writev into a full socket buffer complete at
//    once with -EAGAIN; a round's requests take effect in SQ order (writes
//    then a close of one fd, a sendfile between writes, a JS call that
//    reads what the earlier writes sent);
//  - selection: ioBackend / WASM_REACTOR_IO_BACKEND / --io-backend, auto's
//    fallback with its reason, a forced io_uring that is unavailable (exit 2
//    naming why), threadpool refused.
// Bare: no event backend runs (a stub one takes the interest calls), so
// test/run.mjs runs it once.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, writeFileSync, rmSync, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Core, defaultCoreConfig, abi, libc, listenTcp, Server, Reactor,
  uringAvailability, resetUringAvailability, Ring, IORING_OP, UringExecutor, LibcExecutor,
} from "../dist/index.js";
import { socketpair, readFd, writeFd, closeFd, connectNarrow } from "./lib/sys.mjs";
import { runCli, startEcho, echoOnce, cleanup } from "./lib/procs.mjs";

test.after(cleanup);

const avail = uringAvailability();
const HAVE = avail.ok;
if (!HAVE) console.log(`# io_uring is unavailable here (${avail.reason}): its tests are skipped, the fallback tests run`);
const T = HAVE ? test : test.skip;

// ---- the ring ------------------------------------------------------------------

T("Ring: NOPs come back with their user_data (both words) and res 0; the queue bookkeeping adds up", () => {
  const ring = new Ring({ entries: 8 });
  try {
    assert.ok(ring.sqEntries >= 8);
    assert.is(ring.queued, 0);
    const want = [[1, 0], [0x7fffffff, 5], [-1, -1]];
    for (const [lo, hi] of want) {
      const w = ring.sqeSlot();
      assert.ok(w >= 0);
      ring.sqes[w] = IORING_OP.NOP;
      ring.sqes[w + 8] = lo; ring.sqes[w + 9] = hi;
    }
    assert.is(ring.queued, 3);
    assert.is(ring.submit(3), 3);
    assert.is(ring.queued, 0);
    assert.is(ring.cqReady(), 3);
    const got = [];
    for (let h = ring.cqHead(), k = 0; k < 3; k++, h++) {
      const w = ring.cqeWord(h);
      got.push([ring.cqes[w], ring.cqes[w + 1], ring.cqes[w + 2]]);
    }
    ring.cqAdvance(3);
    assert.is(ring.cqReady(), 0);
    assert.equal(got.sort(), want.map(([lo, hi]) => [lo, hi, 0]).sort());
  } finally {
    ring.close();
  }
  ring.close(); // idempotent
  assert.throws(() => ring.submit(0), /io_uring: the ring is closed/);
  assert.throws(() => ring.cqReady(), /the ring is closed/);
});

T("Ring: a full SQ says so (-1) instead of overwriting; pushSqe copies 64 bytes", () => {
  const ring = new Ring({ entries: 2 });
  try {
    const src = new Int32Array(16);
    src[0] = IORING_OP.NOP; src[8] = 42;
    const slots = [];
    for (let i = 0; i < ring.sqEntries; i++) slots.push(ring.pushSqe(src, 0));
    assert.ok(slots.every((w) => w >= 0));
    assert.is(ring.sqeSlot(), -1);
    assert.is(ring.pushSqe(src, 0), -1);
    assert.is(ring.submit(ring.sqEntries), ring.sqEntries);
    let tags = 0;
    for (let h = ring.cqHead(), k = ring.cqReady(); k > 0; k--, h++) tags += ring.cqes[ring.cqeWord(h)];
    assert.is(tags, 42 * ring.sqEntries);
  } finally {
    ring.close();
  }
});

T("Ring: the probe knows the ops the server uses and refuses nonsense with a clear error", () => {
  const ring = new Ring({ entries: 2 });
  try {
    for (const op of ["NOP", "RECV", "SEND", "WRITEV", "WRITE", "READ", "ACCEPT", "CLOSE"]) assert.ok(ring.supports(IORING_OP[op]), op);
    assert.not.ok(ring.supports(250));
    assert.throws(() => ring.require(250, "frobnicate"), /io_uring: IORING_OP_250 \(frobnicate\) is not supported by this kernel/);
  } finally {
    ring.close();
  }
});

T("Ring: a registered eventfd is signalled when a completion is posted", () => {
  const efd = libc.eventfd(0, 0o4000 /* EFD_NONBLOCK */);
  const ring = new Ring({ entries: 2 });
  try {
    ring.registerEventfd(efd);
    assert.is(readFd(efd, 8).n, -1, "nothing yet");
    const w = ring.sqeSlot();
    ring.sqes[w] = IORING_OP.NOP;
    ring.submit(0);
    ring.flushCompletions();
    const r = readFd(efd, 8);
    assert.is(r.n, 8);
    assert.ok(r.data.readBigUInt64LE(0) >= 1n);
    assert.is(ring.cqReady(), 1);
    ring.unregisterEventfd();
  } finally {
    ring.close();
    closeFd(efd);
  }
});

test("WASM_REACTOR_IO_URING_FAIL=EPERM: setup fails as if the kernel said EPERM, and availability says so", () => {
  const saved = process.env.WASM_REACTOR_IO_URING_FAIL;
  process.env.WASM_REACTOR_IO_URING_FAIL = "EPERM";
  try {
    resetUringAvailability();
    assert.equal(uringAvailability(), { ok: false, reason: "io_uring_setup: EPERM (Operation not permitted)" });
    assert.throws(() => new Ring({ entries: 2 }), (e) => e.code === "EPERM" && /^io_uring_setup: EPERM/.test(e.message));
    process.env.WASM_REACTOR_IO_URING_FAIL = "ENOSYS";
    resetUringAvailability();
    assert.equal(uringAvailability(), { ok: false, reason: "io_uring_setup: ENOSYS (Function not implemented)" });
  } finally {
    if (saved === undefined) delete process.env.WASM_REACTOR_IO_URING_FAIL;
    else process.env.WASM_REACTOR_IO_URING_FAIL = saved;
    resetUringAvailability();
  }
  assert.is(uringAvailability().ok, HAVE);
});

// ---- the executors' contract, on both -----------------------------------------------

/** A bare core (no loop), its SQ/CQ and scratch area, and an executor of `kind` over it. */
function rig(kind, calls = {}, opts = {}) {
  const core = new Core({ ...defaultCoreConfig, maxFds: 4096 });
  const closed = [];
  const services = {
    call: (...a) => (calls.call ? calls.call(...a) : 0), log() {}, stop() {},
    open: () => -abi.ENOENT, list: () => -abi.ENOENT, roundDone() {},
  };
  const backend = { setInterest: () => 0, closed: (fd) => closed.push(fd) };
  const ex = kind === "io_uring" ? new UringExecutor(core, services, backend, opts) : new LibcExecutor(core, services, backend);
  const sq = core.ctlI32(abi.CTL_SQ), cq = core.ctlI32(abi.CTL_CQ), scratch = core.ctlI32(abi.CTL_SCRATCH);
  let tag = 100;
  const r = {
    core, ex, closed, scratch,
    /** Carries out one round of requests [{op, fd, addr, len, flags, off, splice}] -> their results, in request order. */
    round(reqs) {
      core.refresh();
      const dv = new DataView(core.u8.buffer);
      const tags = [];
      reqs.forEach((q, i) => {
        const at = sq + i * abi.SQE_SIZE;
        core.u8.fill(0, at, at + abi.SQE_SIZE);
        dv.setUint8(at + abi.SQE_OPCODE, q.op);
        dv.setInt32(at + abi.SQE_FD, q.fd, true);
        dv.setBigInt64(at + abi.SQE_OFF, BigInt(q.off ?? 0), true);
        dv.setBigInt64(at + abi.SQE_ADDR, BigInt(q.addr ?? 0), true);
        dv.setInt32(at + abi.SQE_LEN, q.len ?? 0, true);
        dv.setInt32(at + abi.SQE_OP_FLAGS, q.flags ?? 0, true);
        dv.setInt32(at + abi.SQE_USER_DATA, ++tag, true);
        dv.setInt32(at + abi.SQE_USER_DATA + 4, tag * 7, true); // a generation: the hi word travels too
        dv.setInt32(at + abi.SQE_SPLICE_FD_IN, q.splice ?? 0, true);
        tags.push(tag);
      });
      const k = ex.submit(sq, cq, reqs.length) ?? reqs.length;
      assert.is(k, reqs.length, "one completion per request");
      core.refresh();
      const cv = new DataView(core.u8.buffer);
      const res = new Map();
      for (let i = 0; i < k; i++) {
        const at = cq + i * abi.CQE_SIZE;
        const t = cv.getInt32(at + abi.CQE_USER_DATA, true);
        assert.is(cv.getInt32(at + abi.CQE_USER_DATA + 4, true), t * 7, "the tag's hi word");
        assert.not.ok(res.has(t), `one completion for tag ${t}`);
        res.set(t, cv.getInt32(at + abi.CQE_RES, true));
      }
      return tags.map((t) => { assert.ok(res.has(t), `a completion for tag ${t}`); return res.get(t); });
    },
    /** Puts bytes into the scratch area at `off`; returns their address (a linear-memory offset). */
    put(off, bytes) { core.refresh(); core.u8.set(Buffer.from(bytes), scratch + off); return scratch + off; },
    get(off, n) { core.refresh(); return Buffer.from(core.u8.subarray(scratch + off, scratch + off + n)); },
    close() { ex.close?.(); },
  };
  return r;
}

const nonblock = (fd) => libc.fcntl(fd, 4 /* F_SETFL */, 0o4000 /* O_NONBLOCK */);
/** A loopback TCP connection: the listener, the server side accepted through the executor, and a non-blocking client fd. */
function tcpPair(r) {
  const l = listenTcp({ host: "127.0.0.1", port: 0 });
  const empty = r.round([{ op: abi.OP_ACCEPT, fd: l.fd, flags: abi.ACCEPT_FLAGS }]);
  assert.equal(empty, [-abi.EAGAIN], "accept on an empty listener: -EAGAIN at once");
  const client = connectNarrow(l.port, { rcvbuf: 4096, mss: 1024 });
  nonblock(client);
  const slot = r.scratch + 2048; // an ACCEPT_ADDR slot: capacity at +SA_LEN
  r.core.refresh();
  new DataView(r.core.u8.buffer).setUint32(slot + abi.SA_LEN, abi.SA_CAPACITY, true);
  const [fd] = r.round([{ op: abi.OP_ACCEPT, fd: l.fd, addr: slot, off: slot + abi.SA_LEN, flags: abi.ACCEPT_FLAGS }]);
  assert.ok(fd >= 0, `accepted: ${fd}`);
  const dv = new DataView(r.core.u8.buffer);
  assert.is(dv.getUint16(slot + abi.SA_FAMILY, true), abi.AF_INET, "the peer's address was written");
  assert.is(dv.getUint32(slot + abi.SA_LEN, true), 16, "and its length");
  return { listener: l.fd, fd, client };
}

/** Reads everything the non-blocking fd has now. */
function drain(fd) {
  const parts = [];
  for (;;) {
    const r = readFd(fd, 65536);
    if (r.n <= 0) return { data: Buffer.concat(parts), eof: r.n === 0 };
    parts.push(r.data);
  }
}

const KINDS = HAVE ? ["epoll_threadpool", "io_uring"] : ["epoll_threadpool"];
for (const kind of KINDS) {
  test(`${kind}: recv on an empty socket is -EAGAIN at once; then it reads what came`, () => {
    const r = rig(kind);
    const { listener, fd, client } = tcpPair(r);
    try {
      assert.equal(r.round([{ op: abi.OP_READ, fd, addr: r.scratch, len: 512 }]), [-abi.EAGAIN]);
      assert.is(writeFd(client, "hello"), 5);
      assert.equal(r.round([{ op: abi.OP_READ, fd, addr: r.scratch, len: 512 }]), [5]);
      assert.is(r.get(0, 5).toString(), "hello");
      // The peer's FIN: a read of 0, not -EAGAIN.
      closeFd(client);
      assert.equal(r.round([{ op: abi.OP_READ, fd, addr: r.scratch, len: 512 }]), [0]);
    } finally {
      closeFd(fd); closeFd(listener); r.close();
    }
  });

  test(`${kind}: send, write and writev into a full socket buffer are -EAGAIN at once; nothing is lost`, () => {
    const r = rig(kind);
    const { listener, fd, client } = tcpPair(r);
    try {
      const sz = Buffer.alloc(4); sz.writeInt32LE(4096);
      libc.setsockopt(fd, 1 /* SOL_SOCKET */, 7 /* SO_SNDBUF */, sz, 4);
      const chunk = r.put(0, Buffer.alloc(1024, 0x61));
      let sent = 0, res = 0, rounds = 0;
      for (; rounds < 100_000; rounds++) {
        [res] = r.round([{ op: abi.OP_WRITE, fd, addr: chunk, len: 1024 }]);
        if (res < 0) break;
        sent += res;
      }
      assert.is(res, -abi.EAGAIN, `the buffer filled up after ${sent} bytes`);
      // iovecs hold absolute addresses (abi.ts): two of 100 bytes each.
      r.core.refresh();
      const iov = r.scratch + 3072, dv = new DataView(r.core.u8.buffer);
      for (let i = 0; i < 2; i++) {
        dv.setBigUint64(iov + 16 * i, BigInt(r.core.base + chunk), true);
        dv.setBigUint64(iov + 16 * i + 8, 100n, true);
      }
      const full = r.round([
        { op: abi.OP_SEND, fd, addr: chunk, len: 1024 },
        { op: abi.OP_WRITEV, fd, addr: iov, len: 2 },
        { op: abi.OP_WRITE, fd, addr: chunk, len: 1024 },
      ]);
      assert.equal(full, [-abi.EAGAIN, -abi.EAGAIN, -abi.EAGAIN]);
      // The client gets every byte that was reported written, and no more.
      let got = 0;
      for (let spins = 0; got < sent && spins < 10_000; spins++) got += drain(client).data.length;
      assert.is(got, sent);
    } finally {
      closeFd(fd); closeFd(client); closeFd(listener); r.close();
    }
  });

  test(`${kind}: one round's writes and close of one fd take effect in order; the backend hears of the close first`, () => {
    const r = rig(kind);
    const a = tcpPair(r), b = tcpPair(r);
    try {
      const x = r.put(0, "abc"), y = r.put(8, "def"), z = r.put(16, "XYZ");
      const res = r.round([
        { op: abi.OP_WRITE, fd: a.fd, addr: x, len: 3 },
        { op: abi.OP_SEND, fd: b.fd, addr: z, len: 3 },
        { op: abi.OP_WRITE, fd: a.fd, addr: y, len: 3 },
        { op: abi.OP_CLOSE, fd: a.fd },
        { op: abi.OP_WRITE, fd: b.fd, addr: x, len: 3 },
        { op: abi.OP_CLOSE, fd: b.fd },
      ]);
      assert.equal(res, [3, 3, 3, 0, 3, 0]);
      assert.equal(r.closed, [a.fd, b.fd]);
      const ga = drain(a.client), gb = drain(b.client);
      assert.is(ga.data.toString(), "abcdef");
      assert.ok(ga.eof, "then the end");
      assert.is(gb.data.toString(), "XYZabc");
      assert.ok(gb.eof);
    } finally {
      for (const p of [a, b]) { closeFd(p.client); closeFd(p.listener); }
      r.close();
    }
  });

  test(`${kind}: a sendfile between two writes of one fd goes out between them`, () => {
    const r = rig(kind);
    const p = tcpPair(r);
    const dir = mkdtempSync(join(tmpdir(), "wr-uring-"));
    writeFileSync(join(dir, "f"), "-file-");
    const file = openSync(join(dir, "f"), "r");
    try {
      const head = r.put(0, "head"), tail = r.put(8, "tail"), offp = r.scratch + 64;
      r.core.refresh();
      new DataView(r.core.u8.buffer).setBigInt64(offp, 0n, true);
      const res = r.round([
        { op: abi.OP_WRITE, fd: p.fd, addr: head, len: 4 },
        { op: abi.OP_SENDFILE, fd: p.fd, splice: file, addr: offp, len: 6 },
        { op: abi.OP_WRITE, fd: p.fd, addr: tail, len: 4 },
        { op: abi.OP_PREAD, fd: file, addr: r.scratch + 128, len: 6, off: 1 },
        { op: abi.OP_WRITE, fd: p.fd, addr: r.scratch + 128, len: 5 },
      ]);
      assert.equal(res, [4, 6, 4, 5, 5]);
      assert.is(drain(p.client).data.toString(), "head-file-tailfile-");
    } finally {
      closeSync(file); rmSync(dir, { recursive: true, force: true });
      closeFd(p.fd); closeFd(p.client); closeFd(p.listener); r.close();
    }
  });

  test(`${kind}: a JS call sees every request before it carried out (the batch is flushed first)`, () => {
    const [s0, s1] = socketpair();
    let seen = null;
    const r = rig(kind, { call: () => { seen = readFd(s1, 100).data.toString(); return 0; } });
    try {
      const x = r.put(0, "x"), y = r.put(8, "y");
      const res = r.round([
        { op: abi.OP_WRITE, fd: s0, addr: x, len: 1 },
        { op: abi.OP_CALL, fd: -1, addr: abi.CALL_TASK, len: 1 },
        { op: abi.OP_WRITE, fd: s0, addr: y, len: 1 },
      ]);
      assert.equal(res, [1, 0, 1]);
      assert.is(seen, "x");
      assert.is(readFd(s1, 100).data.toString(), "y");
    } finally {
      closeFd(s0); closeFd(s1); r.close();
    }
  });

  test(`${kind}: a bad fd is a result (-EBADF), not an exception, and the rest of the round runs`, () => {
    const [s0, s1] = socketpair();
    const r = rig(kind);
    try {
      const x = r.put(0, "ok");
      assert.equal(r.round([
        { op: abi.OP_WRITE, fd: 4000, addr: x, len: 2 },
        { op: abi.OP_WRITE, fd: s0, addr: x, len: 2 },
        { op: abi.OP_CLOSE, fd: 4001 },
      ]), [-abi.EBADF, 2, -abi.EBADF]);
      assert.is(readFd(s1, 10).data.toString(), "ok");
    } finally {
      closeFd(s0); closeFd(s1); r.close();
    }
  });
}

T("io_uring: every kernel op but SENDFILE and SHUTDOWN goes through the ring here (6.18 has them all)", () => {
  const r = rig("io_uring");
  try {
    assert.equal(r.ex.ringOps.sort((x, y) => x - y),
      [abi.OP_WRITEV, abi.OP_ACCEPT, abi.OP_CLOSE, abi.OP_PREAD, abi.OP_WRITE, abi.OP_SEND, abi.OP_READ].sort((x, y) => x - y));
  } finally {
    r.close();
  }
});

T("io_uring: a round of many sockets' requests, ten times the ring's size, completes in order", () => {
  const r = rig("io_uring", {}, { entries: 8 }); // a write and a read per pair: the ring fills every 4 pairs
  assert.is(r.ex.ring.sqEntries, 8);
  const pairs = Array.from({ length: 40 }, () => socketpair());
  try {
    const x = r.put(0, "z");
    // 40 writes on 40 fds (the ring fills every 8: cut), then a read of each, then a second write of each.
    const reqs = [
      ...pairs.map(([s0]) => ({ op: abi.OP_WRITE, fd: s0, addr: x, len: 1 })),
      ...pairs.map(([s0]) => ({ op: abi.OP_READ, fd: s0, addr: r.scratch + 64, len: 8 })),
      ...pairs.map(([s0]) => ({ op: abi.OP_WRITE, fd: s0, addr: x + 1, len: 1 })),
    ];
    r.put(1, "!");
    const res = r.round(reqs);
    const n = pairs.length;
    assert.equal(res, [...Array(n).fill(1), ...Array(n).fill(-abi.EAGAIN), ...Array(n).fill(1)]);
    for (const [, s1] of pairs) assert.is(readFd(s1, 8).data.toString(), "z!");
  } finally {
    for (const [s0, s1] of pairs) { closeFd(s0); closeFd(s1); }
    r.close();
  }
});

// ---- selection -----------------------------------------------------------------

/** Runs fn with the environment variables set (undefined: unset), then restores them. */
async function withEnv(vars, fn) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  resetUringAvailability();
  try { return await fn(); } finally {
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
    resetUringAvailability();
  }
}

test("Server/Reactor ioBackend: the one asked for is used; threadpool and nonsense are refused before any socket opens", async () => {
  const names = HAVE ? ["io_uring", "epoll_threadpool"] : ["epoll_threadpool"];
  for (const ioBackend of names) {
    const s = new Server({ protocol: "echo", port: 0, handleSignals: false, ioBackend });
    try {
      assert.is(s.reactor.loop.ioBackend, ioBackend);
      s.attach();
      assert.is((await echoOnceInProcess(s.port, `via ${ioBackend}`)), `via ${ioBackend}`);
    } finally {
      s.stop(); s.close();
    }
  }
  assert.throws(() => new Server({ protocol: "echo", port: 0, ioBackend: "threadpool" }), /threadpool cannot run the server: its sockets need readiness/);
  assert.throws(() => new Reactor({ handleSignals: false, ioBackend: "uring" }), (e) => e instanceof TypeError && /ioBackend: expected one of auto, io_uring, epoll_threadpool, threadpool, got "uring"/.test(e.message));
});

test("io_uring forced unavailable: ioBackend io_uring throws naming why; auto falls back and logs why, once", async () => {
  await withEnv({ WASM_REACTOR_IO_URING_FAIL: "EPERM", WASM_REACTOR_IO_BACKEND: undefined }, () => {
    assert.throws(() => new Server({ protocol: "echo", port: 0, ioBackend: "io_uring" }),
      /I\/O backend io_uring is unavailable: io_uring_setup: EPERM \(Operation not permitted\)/);
    const lines = [];
    const r = new Reactor({ handleSignals: false, ioBackend: "auto", log: (level, line) => lines.push(`${level}: ${line}`) });
    try {
      assert.is(r.loop.ioBackend, "epoll_threadpool");
      assert.equal(lines, ["warn: I/O backend: io_uring unavailable (io_uring_setup: EPERM (Operation not permitted)); using epoll_threadpool"]);
    } finally {
      r.close();
    }
  });
});

test("WASM_REACTOR_IO_BACKEND picks the default; an option overrides it", async () => {
  await withEnv({ WASM_REACTOR_IO_BACKEND: "epoll_threadpool" }, () => {
    const a = new Reactor({ handleSignals: false });
    const b = HAVE ? new Reactor({ handleSignals: false, ioBackend: "io_uring" }) : null;
    try {
      assert.is(a.loop.ioBackend, "epoll_threadpool");
      if (b) assert.is(b.loop.ioBackend, "io_uring");
    } finally {
      a.close(); b?.close();
    }
  });
});

test("CLI: --io-backend is named on the listening line and in --help; bad values and threadpool are one line, exit 2", async () => {
  if (HAVE) {
    const s = await startEcho(["--io-backend", "io_uring"]);
    assert.match(s.stdout, /, I\/O backend io_uring, pid \d+\)/);
    assert.is((await echoOnce(s.port, "ring")).toString(), "ring");
    assert.is((await s.stop()).code, 0, s.stderr);
  }
  const e = await startEcho(["--io-backend", "epoll_threadpool"]);
  assert.match(e.stdout, /, I\/O backend epoll_threadpool, pid \d+\)/);
  assert.is((await echoOnce(e.port, "libc")).toString(), "libc");
  assert.is((await e.stop()).code, 0, e.stderr);
  for (const cmd of ["serve", "echo"]) {
    const h = await runCli([cmd, "--help"]);
    assert.is(h.code, 0);
    assert.match(h.stdout, /I\/O backend: \S+.* \(--io-backend auto\|io_uring\|epoll_threadpool\)/);
    const def = process.env.WASM_REACTOR_IO_BACKEND || "auto"; // test/run.mjs may set it
    assert.match(h.stdout, new RegExp(`--io-backend auto\\|io_uring\\|epoll_threadpool .*\\[default: ${def}\\]`, "s"));
  }
  for (const [args, says] of [
    [["echo", "--io-backend", "threadpool"], /^wasm-reactor echo: --io-backend threadpool cannot run the server: its sockets need readiness/],
    [["serve", "--io-backend", "kqueue"], /^wasm-reactor serve: --io-backend must be auto, io_uring, epoll_threadpool, got 'kqueue'/],
    [["replay", "x.rec", "--io-backend", "io_uring"], /--io-backend does not apply/],
  ]) {
    const r = await runCli(args);
    assert.is(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, says);
    assert.is(r.stderr.split("\n").length, 2, `one line: ${JSON.stringify(r.stderr)}`);
  }
});

test("CLI with io_uring forced unavailable: --io-backend io_uring exits 2 naming why; auto serves on epoll_threadpool and says why once", async () => {
  await withEnv({ WASM_REACTOR_IO_URING_FAIL: "EPERM", WASM_REACTOR_IO_BACKEND: undefined }, async () => {
    const r = await runCli(["echo", "--port", "0", "--io-backend", "io_uring"]);
    assert.is(r.code, 2, r.stderr);
    assert.is(r.stderr, "wasm-reactor echo: I/O backend io_uring is unavailable: io_uring_setup: EPERM (Operation not permitted)\n");
    const s = await startEcho(["--workers", "2"]);
    assert.match(s.stdout, /, I\/O backend epoll_threadpool, pid \d+\)/);
    assert.is((await echoOnce(s.port, "fallback")).toString(), "fallback");
    assert.is((await s.stop()).code, 0);
    const why = s.stderr.split("\n").filter((l) => /io_uring/.test(l));
    assert.equal(why, ["wasm-reactor echo: I/O backend: io_uring unavailable (io_uring_setup: EPERM (Operation not permitted)); using epoll_threadpool"]);
  });
  await withEnv({ WASM_REACTOR_IO_BACKEND: "threadpool" }, async () => {
    const r = await runCli(["serve", "--port", "0"]);
    assert.is(r.code, 2);
    assert.match(r.stderr, /^wasm-reactor serve: WASM_REACTOR_IO_BACKEND threadpool cannot run the server/);
  });
});

T("CLI: --record works with io_uring (recording is a decorator): the recording replays cleanly", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wr-uring-rec-"));
  try {
    const file = join(dir, "echo.rec");
    const s = await startEcho(["--io-backend", "io_uring", "--record", file]);
    for (let i = 0; i < 3; i++) assert.is((await echoOnce(s.port, `rec ${i}`)).toString(), `rec ${i}`);
    assert.is((await s.stop()).code, 0, s.stderr);
    const r = await runCli(["replay", file]);
    assert.is(r.code, 0, r.stdout + r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** One echo exchange with an in-process (attached) server. */
async function echoOnceInProcess(port, text) {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1", () => sock.write(text));
    let got = "";
    sock.on("data", (d) => { got += d; if (got.length >= text.length) { sock.destroy(); resolve(got); } });
    sock.on("error", reject);
    setTimeout(() => { sock.destroy(); reject(new Error("echo timed out")); }, 5000).unref();
  });
}

test.run();
