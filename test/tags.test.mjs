// Tagged completions (bare core, no OS): every request carries a tag
// (SQE_USER_DATA), every completion {tag, result} (abi.ts CQE), and the core
// routes a completion by its tag, not by its position in the CQ. An executor
// that writes a round's completions in a shuffled order (seeded) must give
// the same bytes to every peer as the in-order one; a duplicate or forged
// tag is ignored and counted (STAT_STALE_CQES). An executor that keeps a
// connection's I/O requests in flight and completes them in a later tick
// (the completion phase, reap) gives the same bytes too, and a close waits
// for the request in flight.
//
// The expectations are independent of the core: echo gives back what was
// sent; the HTTP responses are parsed and checked against the file the
// fake kernel serves (200 with its bytes, 404 for anything else).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { FakeHost, fillFileRecord } from "./lib/fakehost.mjs";
import abi from "./lib/abi.mjs";
import { prng } from "./lib/prng.mjs";
import { decodeSqe } from "../build/sqe.js";

const LISTENER = 3;
const FIRST = 10, CONNS = 12;
const FILE_PATH = "f.txt", FILE_FD = 200;
const FILE_BODY = Buffer.from("hello, tagged world\n");

/** Writes its completions in a seeded random order: same requests, same results, shuffled CQ. */
class ShuffledHost extends FakeHost {
  constructor(seed, options) {
    super(options);
    this.rand = prng(seed);
    this.shuffledRounds = 0;
  }

  carryOut(n, sq, cq) {
    const k = super.carryOut(n, sq, cq) ?? n;
    if (k < 2) return k;
    const u8 = this.u8, size = abi.CQE_SIZE;
    const entries = Array.from({ length: k }, (_, i) => Buffer.from(u8.subarray(cq + i * size, cq + (i + 1) * size)));
    for (let i = k - 1; i > 0; i--) {
      const j = Math.floor(this.rand() * (i + 1));
      [entries[i], entries[j]] = [entries[j], entries[i]];
    }
    if (entries.some((e, i) => !e.equals(u8.subarray(cq + i * size, cq + (i + 1) * size)))) this.shuffledRounds++;
    entries.forEach((e, i) => u8.set(e, cq + i * size));
    return k;
  }
}

/**
 * Keeps a connection's I/O requests (seeded: about half) in flight past
 * their round and completes them in a later tick, in shuffled order. The
 * kernel's work (bytes read into the buffer, bytes taken from it) happens
 * when the request completes, not when it was submitted: a buffer the core
 * freed or reused meanwhile shows in the bytes.
 */
const HOLDABLE = new Set([abi.OP_READ, abi.OP_WRITE, abi.OP_WRITEV, abi.OP_SEND, abi.OP_SENDFILE, abi.OP_SHUTDOWN]);
class LaterHost extends FakeHost {
  constructor(seed, options) {
    super(options);
    this.rand = prng(seed);
    this.held = [];           // {sqe, tag, gen}
    this.holding = true;      // false: new requests complete in their round (the final drain)
    this.heldTotal = 0;
    this.reapedTotal = 0;
  }

  carryOut(n, sq, cq) {
    let k = 0;
    for (let i = 0; i < n; i++) {
      const { tag, gen, ...sqe } = decodeSqe(this.i32, sq + i * abi.SQE_SIZE);
      if (this.holding && HOLDABLE.has(sqe.op) && this.rand() < 0.5) {
        this.held.push({ sqe, tag, gen });
        this.heldTotal++;
        continue;
      }
      this.finish(cq, k++, sqe, tag, gen);
    }
    return k;
  }

  reapInto(cq, max) {
    // Some of what is held (not always all: completions straggle over ticks), shuffled.
    const take = [];
    for (let i = this.held.length - 1; i >= 0 && take.length < max; i--) {
      if (this.rand() < 0.6) take.push(...this.held.splice(i, 1));
    }
    take.forEach((h, k) => this.finish(cq, k, h.sqe, h.tag, h.gen));
    this.reapedTotal += take.length;
    return take.length;
  }

  /** Carries the request out now and writes its completion at CQ[k]. */
  finish(cq, k, sqe, tag, gen) {
    const res = this.respond(sqe) | 0;
    this.i32.set([tag, gen, res, 0], (cq >> 2) + k * (abi.CQE_SIZE >> 2));
    if (this.keepLog) this.log.push({ phase: this.phase, ...sqe, res, tag, gen });
  }
}

/** The fake kernel's file system: one regular file, everything else ENOENT. */
function serveFile(h) {
  h.answer(abi.OP_OPEN, (sqe, host) => {
    const path = Buffer.from(host.u8.subarray(sqe.a0, sqe.a0 + sqe.a1)).toString("latin1");
    if (path.replace(/^\/+/, "") !== FILE_PATH) return -abi.ENOENT;
    fillFileRecord(host, sqe.a2, FILE_BODY.length, "text/plain");
    return sqe.a3 === 1 ? 0 : FILE_FD;
  });
  h.answer(abi.OP_PREAD, (sqe, host) => {
    const part = FILE_BODY.subarray(sqe.a2, sqe.a2 + sqe.a1);
    host.put(sqe.a0, part);
    return part.length;
  });
}

/**
 * Runs one scenario on host `h`: CONNS clients connect, each sends its
 * input in seeded random pieces over many ticks (partial writes too), and
 * the peers' output is returned per client.
 */
function drive(h, proto, inputs, seed) {
  const rand = prng(seed);
  h.listen(LISTENER, proto);
  if (proto === abi.PROTO_HTTP) serveFile(h);
  const fds = inputs.map((_, i) => FIRST + i);
  h.queueAccept(LISTENER, ...fds);
  for (let t = 0; t < 4; t++) h.tick([{ fd: LISTENER, events: abi.EV_READABLE }]);
  const left = inputs.map((b) => Buffer.from(b));
  for (let tick = 0; tick < 400; tick++) {
    const batch = [];
    fds.forEach((fd, i) => {
      if (left[i].length && rand() < 0.7) {
        const k = 1 + Math.floor(rand() * Math.min(left[i].length, 40));
        h.feed(fd, left[i].subarray(0, k));
        left[i] = left[i].subarray(k);
      }
      h.room(fd, rand() < 0.2 ? Math.floor(rand() * 64) : Infinity); // partial writes, EAGAIN
      batch.push({ fd, events: abi.EV_READABLE | abi.EV_WRITABLE });
    });
    h.tick(batch);
    if (tick > 40 && left.every((b) => b.length === 0) && rand() < 0.1) break;
  }
  // Drain: unlimited room, a few more ticks of readiness (and of completions held).
  h.holding = false;
  for (let t = 0; t < 20 || (h.held?.length ?? 0) > 0; t++) {
    if (t > 2000) throw new Error(`requests still held: ${h.held.length}`);
    fds.forEach((fd) => h.room(fd, Infinity));
    h.tick(fds.map((fd) => ({ fd, events: abi.EV_READABLE | abi.EV_WRITABLE })));
  }
  assert.equal(h.traps, [], "no trap");
  return fds.map((fd) => h.output(fd));
}

/** HTTP/1.1 responses, parsed: [{status, headers, body}] (Content-Length framing; HEAD has none). */
function parseResponses(buf, methods) {
  const out = [];
  let p = 0;
  for (const method of methods) {
    const end = buf.indexOf("\r\n\r\n", p);
    if (end < 0) break;
    const lines = buf.subarray(p, end).toString("latin1").split("\r\n");
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
    assert.ok(m, `a status line: ${JSON.stringify(lines[0])}`);
    const headers = Object.fromEntries(lines.slice(1).map((l) => { const i = l.indexOf(":"); return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()]; }));
    const len = method === "HEAD" ? 0 : Number(headers["content-length"] ?? 0);
    out.push({ status: Number(m[1]), headers, body: buf.subarray(end + 4, end + 4 + len) });
    p = end + 4 + len;
  }
  assert.is(p, buf.length, "nothing after the last response");
  return out;
}

const KINDS = [
  ["in shuffled order", ShuffledHost, (h) => h.shuffledRounds > 10],
  ["in a later tick", LaterHost, (h) => h.heldTotal > 20 && h.reapedTotal === h.heldTotal],
];
for (const [how, Host, exercised] of KINDS) for (const seed of [1, 2, 3]) {
  test(`echo (seed ${seed}): completions ${how} give every peer back exactly what it sent`, () => {
    const rand = prng(100 + seed);
    const inputs = Array.from({ length: CONNS }, () => Buffer.from(Array.from({ length: 200 + Math.floor(rand() * 2000) }, () => Math.floor(rand() * 256))));
    const shuffled = new Host(seed, { config: { mode: seed % 2 ? "et" : "lt" } });
    const got = drive(shuffled, abi.PROTO_ECHO, inputs, seed);
    assert.ok(exercised(shuffled), "the executor really reordered / held completions");
    got.forEach((b, i) => assert.ok(b.equals(inputs[i]), `fd ${FIRST + i}: ${b.length} bytes back of ${inputs[i].length}`));
    const inOrder = drive(new FakeHost({ config: { mode: seed % 2 ? "et" : "lt" } }), abi.PROTO_ECHO, inputs, seed);
    inOrder.forEach((b, i) => assert.ok(b.equals(got[i]), `fd ${FIRST + i}: same bytes as in order`));
    assert.is(shuffled.stat(abi.STAT_STALE_CQES), 0);
  });

  test(`HTTP (seed ${seed}): completions ${how} give the same parsed responses as in order`, () => {
    const rand = prng(200 + seed);
    const kinds = [
      ["GET", `GET /${FILE_PATH} HTTP/1.1\r\nHost: a\r\n\r\n`, 200],
      ["HEAD", `HEAD /${FILE_PATH} HTTP/1.1\r\nHost: a\r\n\r\n`, 200],
      ["GET", "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n", 404],
      ["GET", `GET /${FILE_PATH} HTTP/1.1\r\nHost: a\r\nRange: bytes=0-4\r\n\r\n`, 206],
    ];
    const plans = Array.from({ length: CONNS }, () => Array.from({ length: 2 + Math.floor(rand() * 4) }, () => kinds[Math.floor(rand() * kinds.length)]));
    const inputs = plans.map((p) => Buffer.from(p.map(([, text]) => text).join(""), "latin1"));
    const shuffled = new Host(seed, { config: { mode: seed % 2 ? "et" : "lt" } });
    const got = drive(shuffled, abi.PROTO_HTTP, inputs, seed);
    assert.ok(exercised(shuffled), "the executor really reordered / held completions");
    const inOrder = drive(new FakeHost({ config: { mode: seed % 2 ? "et" : "lt" } }), abi.PROTO_HTTP, inputs, seed);
    got.forEach((b, i) => {
      const fd = FIRST + i, methods = plans[i].map(([m]) => m);
      const responses = parseResponses(b, methods);
      assert.equal(responses.map((r) => r.status), plans[i].map(([, , s]) => s), `fd ${fd}: one response per request, in order`);
      responses.forEach((r, k) => {
        if (methods[k] === "HEAD") return;
        if (r.status === 200) assert.ok(r.body.equals(FILE_BODY), `fd ${fd} response ${k}: the file's bytes`);
        if (r.status === 206) assert.is(r.body.toString(), FILE_BODY.subarray(0, 5).toString());
      });
      // Date and the like are the same too: both hosts run the same fake clock.
      assert.ok(b.equals(inOrder[i]), `fd ${fd}: the same bytes as the in-order executor`);
    });
  });
}

test("a duplicate completion, a freed slot's tag and an unknown slot are ignored and counted; the request they copy completes once", () => {
  class Duplicating extends FakeHost {
    carryOut(n, sq, cq) {
      super.carryOut(n, sq, cq);
      if (!this.armed) return n;
      const u8 = this.u8, size = abi.CQE_SIZE;
      // CQ[n]: a copy of CQ[0] (a duplicate); CQ[n+1]: CQ[0]'s slot with the even generation
      // it gets once free (never a live one); CQ[n+2]: a slot the table does not have.
      // (A tag with a future odd generation could be taken for the request that
      // reuses the slot next: tags are checks against mistakes, not against forgery.)
      u8.copyWithin(cq + n * size, cq, cq + size);
      u8.copyWithin(cq + (n + 1) * size, cq, cq + size);
      u8.copyWithin(cq + (n + 2) * size, cq, cq + size);
      const dv = this.dv;
      dv.setInt32(cq + (n + 1) * size + abi.CQE_USER_DATA + 4, dv.getInt32(cq + abi.CQE_USER_DATA + 4, true) + 1, true);
      dv.setInt32(cq + (n + 2) * size + abi.CQE_USER_DATA, 1 << 30, true);
      this.armed = false;
      this.injected++;
      return n + 3;
    }
  }
  const h = new Duplicating({});
  h.injected = 0;
  h.listen(LISTENER, abi.PROTO_ECHO);
  h.queueAccept(LISTENER, 10);
  h.tick([{ fd: LISTENER, events: abi.EV_READABLE }]);
  h.feed(10, "ping");
  h.armed = true; // the round that reads "ping": its READ completes three times
  const from = h.log.length;
  h.tick([{ fd: 10, events: abi.EV_READABLE }]);
  assert.is(h.injected, 1);
  assert.is(h.stat(abi.STAT_STALE_CQES), 3);
  assert.is(h.output(10).toString(), "ping", "echoed once");
  assert.is(h.ops(abi.OP_WRITE, { fd: 10, from }).length, 1, "one write: the duplicate READ result led to nothing");
  h.feed(10, "pong");
  h.tick([{ fd: 10, events: abi.EV_READABLE }]);
  assert.is(h.output(10).toString(), "pingpong", "the connection carries on");
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test("the SQE and CQE are io_uring's: field offsets and op numbers of liburing's io_uring.h, bytes as the core writes them", () => {
  // struct io_uring_sqe / io_uring_cqe, enum io_uring_op (liburing src/include/liburing/io_uring.h)
  const sqe = { SQE_SIZE: 64, SQE_OPCODE: 0, SQE_FLAGS: 1, SQE_IOPRIO: 2, SQE_FD: 4, SQE_OFF: 8, SQE_ADDR: 16, SQE_LEN: 24,
    SQE_OP_FLAGS: 28, SQE_USER_DATA: 32, SQE_BUF_INDEX: 40, SQE_PERSONALITY: 42, SQE_SPLICE_FD_IN: 44, SQE_ADDR3: 48,
    CQE_SIZE: 16, CQE_USER_DATA: 0, CQE_RES: 8, CQE_FLAGS: 12 };
  for (const [k, v] of Object.entries(sqe)) assert.is(abi[k], v, k);
  const ops = { OP_WRITEV: 2, OP_ACCEPT: 13, OP_CLOSE: 19, OP_PREAD: 22 /* READ */, OP_WRITE: 23, OP_SEND: 26, OP_READ: 27 /* RECV */, OP_SHUTDOWN: 34 };
  for (const [k, v] of Object.entries(ops)) assert.is(abi[k], v, k);
  for (const k of ["OP_SENDFILE", "OP_CTL", "OP_CALL", "OP_OPEN", "OP_LOG", "OP_STOP", "OP_LIST"]) assert.ok(abi[k] >= 0x80 && abi[k] < 0x100, `${k} outside io_uring's range`);
  // The raw bytes of what the core emits (not decoded by host/sqe.ts).
  class Raw extends FakeHost {
    carryOut(n, sq, cq) { for (let i = 0; i < n; i++) this.raw.push(Buffer.from(this.u8.subarray(sq + i * 64, sq + i * 64 + 64))); return super.carryOut(n, sq, cq); }
  }
  const h = new Raw({ config: { readBuf: 16384, accessLog: true } });
  h.raw = [];
  h.listen(LISTENER, abi.PROTO_ECHO);
  h.queueAccept(LISTENER, 10);
  h.feed(10, "x");
  h.tick([{ fd: LISTENER, events: abi.EV_READABLE }]);
  h.tick([{ fd: 10, events: abi.EV_READABLE }]);
  const accept = h.raw.find((b) => b[0] === 13), read = h.raw.find((b) => b[0] === 27);
  assert.ok(accept && read, "an ACCEPT and a READ were emitted");
  assert.is(accept.readInt32LE(4), LISTENER);
  assert.is(accept.readUInt32LE(28), 0x80800, "accept_flags: SOCK_NONBLOCK | SOCK_CLOEXEC");
  assert.is(Number(accept.readBigUInt64LE(8)), Number(accept.readBigUInt64LE(16)) + 28, "off = addr2: the socklen_t after the sockaddr");
  assert.is(read.readInt32LE(4), 10);
  assert.is(read.readUInt32LE(24), 16384, "len: the receive buffer");
  assert.ok(read.readUInt32LE(36) % 2 === 1, "user_data: slot, then an odd generation");
  assert.ok(read.subarray(40).every((b) => b === 0) && read[1] === 0 && read.readUInt16LE(2) === 0, "flags, ioprio, buf_index.. pad: 0");
});

test("every request carries a distinct live tag; a tag is reused only after its completion, with a new generation", () => {
  const h = new FakeHost({});
  h.listen(LISTENER, abi.PROTO_ECHO);
  h.queueAccept(LISTENER, 10, 11, 12);
  h.tick([{ fd: LISTENER, events: abi.EV_READABLE }]);
  for (const fd of [10, 11, 12]) h.feed(fd, `from ${fd}`);
  h.tick([10, 11, 12].map((fd) => ({ fd, events: abi.EV_READABLE })));
  const seen = new Map(); // slot -> last generation
  for (const e of h.log) {
    assert.ok(e.gen % 2 === 1, `a live entry has an odd generation (${e.name} gen ${e.gen})`);
    if (seen.has(e.tag)) assert.ok(e.gen > seen.get(e.tag), `slot ${e.tag} reused with a newer generation`);
    seen.set(e.tag, e.gen);
  }
  assert.ok(seen.size >= 2 && seen.size < h.log.length, "slots are recycled");
});

/**
 * Keeps the next READ of each fd in holdFds in flight (once per fd) until
 * `release`; then the completion phase hands them back, in the order held.
 */
class Holding extends FakeHost {
  constructor(options) {
    super(options);
    this.held = [];
    this.holdFds = new Set();
    this.release = false;
  }
  carryOut(n, sq, cq) {
    let k = 0;
    for (let i = 0; i < n; i++) {
      const { tag, gen, ...sqe } = decodeSqe(this.i32, sq + i * abi.SQE_SIZE);
      if (this.holdFds.has(sqe.fd) && sqe.op === abi.OP_READ) { this.held.push({ sqe, tag, gen }); this.holdFds.delete(sqe.fd); continue; }
      const res = this.respond(sqe) | 0;
      this.i32.set([tag, gen, res, 0], (cq >> 2) + k++ * 4);
      this.log.push({ phase: this.phase, ...sqe, res, tag, gen });
    }
    return k;
  }
  reapInto(cq, max) {
    if (!this.release) return 0;
    const take = this.held.splice(0, max);
    take.forEach(({ sqe, tag, gen }, k) => {
      const res = this.respond(sqe) | 0;
      this.i32.set([tag, gen, res, 0], (cq >> 2) + k * 4);
      this.log.push({ phase: this.phase, ...sqe, res, tag, gen, late: true });
    });
    return take.length;
  }
}

test("a close waits for the request in flight: the buffer stays the connection's, close(2) comes after the completion", () => {
  const h = new Holding({ config: { idleTimeoutMs: 100 } });
  h.holdFds.add(10);
  h.listen(LISTENER, abi.PROTO_ECHO);
  h.queueAccept(LISTENER, 10);
  h.tick([{ fd: LISTENER, events: abi.EV_READABLE }]);
  h.feed(10, "late");
  h.tick([{ fd: 10, events: abi.EV_READABLE }]);
  assert.is(h.held.length, 1, "fd 10's READ is in flight");
  const buf = h.held[0].sqe.a0;
  // The idle timeout passes and everything is closed: fd 10 must wait for its READ.
  h.setTime(10_000);
  h.tick([]);
  h.x.closeAll();
  h.flush();
  h.queueAccept(LISTENER, 11);
  h.feed(11, "other");
  h.tick([{ fd: LISTENER, events: abi.EV_READABLE }, { fd: 11, events: abi.EV_READABLE }]);
  assert.is(h.ops(abi.OP_CLOSE, { fd: 10 }).length, 0, "not closed while its READ is in flight");
  assert.ok(h.log.every((e) => e.fd === 10 || !(e.op === abi.OP_READ && e.a0 === buf)), "its buffer is not given to anyone else");
  h.release = true;
  h.tick([]);
  h.tick([]);
  const late = h.log.findIndex((e) => e.late);
  const close = h.log.findIndex((e) => e.op === abi.OP_CLOSE && e.fd === 10);
  assert.ok(late >= 0 && close > late, `close(10) at ${close}, after the READ completed at ${late}`);
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test("a trap while a completion of the completion phase is handled is contained: the completions after it in the batch are handled", () => {
  const h = new Holding({});
  h.listen(LISTENER, abi.PROTO_ECHO);
  for (const fd of [10, 11, 12]) { h.queueAccept(LISTENER, fd); h.tick([{ fd: LISTENER, events: abi.EV_READABLE }]); }
  h.holdFds.add(10).add(11);
  h.feed(10, "ten").feed(11, "eleven").feed(12, "twelve");
  h.tick([10, 11, 12].map((fd) => ({ fd, events: abi.EV_READABLE })));
  assert.is(h.held.length, 2, "the READs of fd 10 and 11 are in flight");
  assert.is(h.output(12).toString(), "twelve");
  h.x.debugTrapCompletion(10);
  h.release = true;
  h.tick([]);                            // the completion phase: fd 10's READ, then fd 11's
  assert.is(h.traps.length, 1);
  assert.is(h.traps[0].fd, 10);
  assert.is(h.output(11).toString(), "eleven", "fd 11's completion, after the one that trapped, was handled");
  assert.is(h.output(10).length, 0);
  for (let i = 0; i < 3; i++) { h.feed(11, "+"); h.tick([{ fd: 11, events: abi.EV_READABLE }]); }
  assert.is(h.ops(abi.OP_CLOSE, { fd: 10 }).length, 1, "the trapped fd 10 is closed");
  assert.is(h.output(11).toString(), "eleven+++");
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test.run();
