// Tagged completions (bare core, no OS): every request carries a tag
// (SQE_USER_DATA), every completion {tag, result} (abi.ts CQE), and the core
// routes a completion by its tag, not by its position in the CQ. An executor
// that writes a round's completions in a shuffled order (seeded) must give
// the same bytes to every peer as the in-order one; a duplicate or forged
// tag is ignored and counted (STAT_STALE_CQES).
//
// The expectations are independent of the core: echo gives back what was
// sent; the HTTP responses are parsed and checked against the file the
// fake kernel serves (200 with its bytes, 404 for anything else).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { FakeHost } from "./lib/fakehost.mjs";
import abi from "./lib/abi.mjs";
import { prng } from "./lib/prng.mjs";

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

/** The fake kernel's file system: one regular file, everything else ENOENT. */
function serveFile(h) {
  h.answer(abi.OP_OPEN, (sqe, host) => {
    const path = Buffer.from(host.u8.subarray(sqe.a0, sqe.a0 + sqe.a1)).toString("latin1");
    if (path.replace(/^\/+/, "") !== FILE_PATH) return -abi.ENOENT;
    const dv = host.dv, rec = sqe.a2;
    dv.setInt32(rec + abi.FILE_KIND, abi.FILE_REGULAR, true);
    dv.setFloat64(rec + abi.FILE_BYTES, FILE_BODY.length, true);
    dv.setFloat64(rec + abi.FILE_MTIME, 1.6e12, true);
    dv.setFloat64(rec + abi.FILE_INO, 7, true);
    dv.setFloat64(rec + abi.FILE_DEV, 1, true);
    dv.setInt32(rec + abi.FILE_FLAGS, 0, true);
    const mime = Buffer.from("text/plain");
    host.u8.set(mime, rec + abi.FILE_MIME);
    dv.setInt32(rec + abi.FILE_MIME_LEN, mime.length, true);
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
  for (let t = 0; t < 4; t++) h.tick([{ fd: LISTENER, events: abi.EPOLLIN }]);
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
      batch.push({ fd, events: abi.EPOLLIN | abi.EPOLLOUT });
    });
    h.tick(batch);
    if (tick > 40 && left.every((b) => b.length === 0) && rand() < 0.1) break;
  }
  // Drain: unlimited room, a few more ticks of readiness.
  for (let t = 0; t < 20; t++) { fds.forEach((fd) => h.room(fd, Infinity)); h.tick(fds.map((fd) => ({ fd, events: abi.EPOLLIN | abi.EPOLLOUT }))); }
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

for (const seed of [1, 2, 3]) {
  test(`echo (seed ${seed}): completions in shuffled order give every peer back exactly what it sent`, () => {
    const rand = prng(100 + seed);
    const inputs = Array.from({ length: CONNS }, () => Buffer.from(Array.from({ length: 200 + Math.floor(rand() * 2000) }, () => Math.floor(rand() * 256))));
    const shuffled = new ShuffledHost(seed, { config: { mode: seed % 2 ? "et" : "lt" } });
    const got = drive(shuffled, abi.PROTO_ECHO, inputs, seed);
    assert.ok(shuffled.shuffledRounds > 10, `rounds really were shuffled (${shuffled.shuffledRounds})`);
    got.forEach((b, i) => assert.ok(b.equals(inputs[i]), `fd ${FIRST + i}: ${b.length} bytes back of ${inputs[i].length}`));
    const inOrder = drive(new FakeHost({ config: { mode: seed % 2 ? "et" : "lt" } }), abi.PROTO_ECHO, inputs, seed);
    inOrder.forEach((b, i) => assert.ok(b.equals(got[i]), `fd ${FIRST + i}: same bytes as in order`));
    assert.is(shuffled.stat(abi.STAT_STALE_CQES), 0);
  });

  test(`HTTP (seed ${seed}): completions in shuffled order give the same parsed responses as in order`, () => {
    const rand = prng(200 + seed);
    const kinds = [
      ["GET", `GET /${FILE_PATH} HTTP/1.1\r\nHost: a\r\n\r\n`, 200],
      ["HEAD", `HEAD /${FILE_PATH} HTTP/1.1\r\nHost: a\r\n\r\n`, 200],
      ["GET", "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n", 404],
      ["GET", `GET /${FILE_PATH} HTTP/1.1\r\nHost: a\r\nRange: bytes=0-4\r\n\r\n`, 206],
    ];
    const plans = Array.from({ length: CONNS }, () => Array.from({ length: 2 + Math.floor(rand() * 4) }, () => kinds[Math.floor(rand() * kinds.length)]));
    const inputs = plans.map((p) => Buffer.from(p.map(([, text]) => text).join(""), "latin1"));
    const shuffled = new ShuffledHost(seed, { config: { mode: seed % 2 ? "et" : "lt" } });
    const got = drive(shuffled, abi.PROTO_HTTP, inputs, seed);
    assert.ok(shuffled.shuffledRounds > 10, `rounds really were shuffled (${shuffled.shuffledRounds})`);
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
  h.tick([{ fd: LISTENER, events: abi.EPOLLIN }]);
  h.feed(10, "ping");
  h.armed = true; // the round that reads "ping": its READ completes three times
  const from = h.log.length;
  h.tick([{ fd: 10, events: abi.EPOLLIN }]);
  assert.is(h.injected, 1);
  assert.is(h.stat(abi.STAT_STALE_CQES), 3);
  assert.is(h.output(10).toString(), "ping", "echoed once");
  assert.is(h.ops(abi.OP_WRITE, { fd: 10, from }).length, 1, "one write: the duplicate READ result led to nothing");
  h.feed(10, "pong");
  h.tick([{ fd: 10, events: abi.EPOLLIN }]);
  assert.is(h.output(10).toString(), "pingpong", "the connection carries on");
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test("every request carries a distinct live tag; a tag is reused only after its completion, with a new generation", () => {
  const h = new FakeHost({});
  h.listen(LISTENER, abi.PROTO_ECHO);
  h.queueAccept(LISTENER, 10, 11, 12);
  h.tick([{ fd: LISTENER, events: abi.EPOLLIN }]);
  for (const fd of [10, 11, 12]) h.feed(fd, `from ${fd}`);
  h.tick([10, 11, 12].map((fd) => ({ fd, events: abi.EPOLLIN })));
  const seen = new Map(); // slot -> last generation
  for (const e of h.log) {
    assert.ok(e.gen % 2 === 1, `a live entry has an odd generation (${e.name} gen ${e.gen})`);
    if (seen.has(e.tag)) assert.ok(e.gen > seen.get(e.tag), `slot ${e.tag} reused with a newer generation`);
    seen.set(e.tag, e.gen);
  }
  assert.ok(seen.size >= 2 && seen.size < h.log.length, "slots are recycled");
});

test.run();
