// The http-mode proxy (PROTO_PROXY_HTTP) on the bare core with the fake host:
// cases the fuzzer's http-mode iterations found (tools/fuzz/proxyhttp.ts),
// each pinned here with what docs/proxy.md promises. No OS: the fake kernel
// answers every request (connects succeed at once, no upstream pool).
import { test } from "uvu";
import * as assert from "uvu/assert";
import abi from "./lib/abi.mjs";
import { FakeHost, HoldHost } from "./lib/fakehost.mjs";

const LISTENER = 3, CLIENT = 10, UP = 100;
const R = abi.EV_READABLE, W = abi.EV_WRITABLE;
const GET = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";

function httpProxy(config = {}) {
  const h = new FakeHost({ config: { proxy: { balance: abi.BAL_RR, upstreams: [{ port: 9001 }] }, ...config } });
  h.listen(LISTENER, abi.PROTO_PROXY_HTTP);
  h.queueAccept(LISTENER, CLIENT);
  return h;
}

test("an upstream socket beyond the core's fd table: the client gets a 503 (a shortage of ours) and keeps its connection (fuzz seed 2654435763)", () => {
  const h = httpProxy({ maxFds: 64 });
  h.nextSocketFd = 64; // socket() returns an fd the core has no record for
  h.feed(CLIENT, GET);
  h.tick([{ fd: LISTENER, events: R }]);
  // docs/proxy.md: 503 when the proxy is out of fds for an upstream socket; the
  // request was read whole and did not ask to close, so the connection stays.
  assert.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === 64), "the stray socket is closed");
  assert.not.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === CLIENT), "the client is not closed");
  const out = h.output(CLIENT).toString("latin1");
  assert.match(out, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.not.match(out, /Connection: close/i);
  assert.is(h.ops(abi.OP_CONNECT).length, 0, "nothing was connected");
  // the next request on the same connection is served the same way
  h.nextSocketFd = 64;
  h.feed(CLIENT, GET);
  h.tick([{ fd: CLIENT, events: R }]);
  assert.is(h.output(CLIENT).toString("latin1").match(/503 Service Unavailable\r\n/g)?.length, 2);
});

test("socket() failing EMFILE: 503 and the client kept, not a 502, and not a failure of the upstream's; another errno: 502", () => {
  const h = httpProxy({});
  h.answer(abi.OP_SOCKET, [-abi.EMFILE, -abi.EACCES]);
  h.feed(CLIENT, GET);
  h.tick([{ fd: LISTENER, events: R }]);
  assert.match(h.takeOutput(CLIENT).toString("latin1"), /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  h.feed(CLIENT, GET);
  h.tick([{ fd: CLIENT, events: R }]);
  assert.match(h.takeOutput(CLIENT).toString("latin1"), /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  assert.not.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === CLIENT), "the client is not closed");
  assert.is(h.ops(abi.OP_CONNECT).length, 0);
});

test("under a connection cap, an idle upstream connection is pooled only while clients + pooled stay below the cap", () => {
  // The fd budget counts two fds per client and none for the pool: the pool may only use the
  // fds of client slots not taken. Cap 1, one client open: no room to pool its upstream.
  const h = httpProxy({ maxConnections: 1, proxy: { balance: abi.BAL_RR, keepalive: 4, upstreams: [{ port: 9001 }] } });
  h.feed(CLIENT, GET);
  h.tick([{ fd: LISTENER, events: R }]);
  assert.match(h.takeOutput(UP).toString("latin1"), /^GET \/a HTTP\/1\.1\r\n/);
  h.feed(UP, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  h.tick([{ fd: UP, events: R }]);
  assert.match(h.takeOutput(CLIENT).toString("latin1"), /^HTTP\/1\.1 200 OK\r\n[\s\S]*ok$/);
  assert.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === UP), "closed, not pooled");
  assert.not.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === CLIENT), "the client stays");
});

test("under a connection cap, a client accepted when clients + pooled would pass the cap closes a pooled connection", () => {
  const h = httpProxy({ maxConnections: 2, proxy: { balance: abi.BAL_RR, keepalive: 4, upstreams: [{ port: 9001 }] } });
  h.feed(CLIENT, GET);
  h.tick([{ fd: LISTENER, events: R }]);
  h.feed(UP, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  h.tick([{ fd: UP, events: R }]);
  assert.not.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === UP), "pooled: one client, one pooled, cap 2");
  // A second client arrives (and has not asked anything yet): 2 clients + 1 pooled > 2.
  h.queueAccept(LISTENER, CLIENT + 1);
  h.tick([{ fd: LISTENER, events: R }]);
  assert.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === UP), "the pooled connection gave its fd to the client slot");
  assert.is(h.x.checkInvariants(), abi.INV_OK);
});

test("a response whose last bytes leave on the client's write completion: the upstream it closed is not touched again (fuzz seed 1)", () => {
  // A 4 KiB client ring: the body fills it, the upstream is paused; the
  // client's write completes, the rest of the body fits, the response ends
  // and the upstream is closed (no pool). Nothing may follow its close.
  const h = httpProxy({ writeBufMax: 4096 });
  h.feed(CLIENT, GET);
  h.tick([{ fd: LISTENER, events: R }]);
  assert.match(h.takeOutput(UP).toString("latin1"), /^GET \/a HTTP\/1\.1\r\n/);
  h.room(CLIENT, 0);
  const body = "b".repeat(4096);
  h.feed(UP, `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  h.tick([{ fd: UP, events: R }]);
  h.room(CLIENT, Infinity);
  h.tick([{ fd: CLIENT, events: W }]);
  const out = h.output(CLIENT).toString("latin1");
  assert.ok(out.endsWith(`\r\n\r\n${body}`), `the whole response reached the client (${out.length} bytes)`);
  const closeAt = h.log.findIndex((e) => e.op === abi.OP_CLOSE && e.fd === UP);
  assert.ok(closeAt >= 0, "the upstream connection is closed once the response ended (no pool)");
  const after = h.log.slice(closeAt + 1).filter((e) => e.fd === UP).map((e) => e.name ?? e.op);
  assert.equal(after, [], "no request on the closed upstream fd");
  assert.equal(h.epollViolations, []);
});

test("a whole head waiting for a slow connect is not cut by the header timeout: the connect timeout answers (fuzz seed 387276930)", () => {
  // The header timeout (README: from a head's first byte) is over once the
  // head is whole; the wait for the upstream runs on the connect timeout,
  // which retries once, then answers. Before, the header timeout closed the
  // client unanswered while its connect was still under way.
  const h = new FakeHost({ config: { headerTimeoutMs: 100, proxy: { balance: abi.BAL_RR, connectTimeoutMs: 1000, upstreams: [{ port: 9001 }] } } });
  h.listen(LISTENER, abi.PROTO_PROXY_HTTP);
  h.queueAccept(LISTENER, CLIENT);
  h.answer(abi.OP_CONNECT, -abi.EINPROGRESS);
  h.feed(CLIENT, GET);
  h.tick([{ fd: LISTENER, events: R }]);
  assert.is(h.ops(abi.OP_CONNECT).length, 1);
  h.setTime(500);
  h.runTimers();
  assert.not.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === CLIENT), "the header timeout passed: the client is still open");
  h.setTime(1200);
  h.runTimers();
  assert.is(h.ops(abi.OP_CONNECT).length, 2, "the connect timed out and was retried once");
  h.setTime(2400);
  h.runTimers();
  assert.match(h.output(CLIENT).toString("latin1"), /^HTTP\/1\.1 50[24] /, "the retry timed out too: an error answer, not a silent close");
});


for (const [how, status] of [["the upstream timeout", 504], ["a reset of the upstream", 502]]) {
  for (const more of ["more body bytes", "EAGAIN"]) {
    test(`an answer queued while the client's body read is in flight (${how}, the read returns ${more}) is written when that read completes (fuzz seed 684428159)`, () => {
      // A PUT whose body outgrows the first read: the head and the first body
      // bytes go to the upstream, the client is read on, and that read is in
      // flight (a completion in a later tick) when the upstream fails before
      // any response: the answer goes into the client's ring, its run is
      // skipped (one op at a time). The read's completion must get it written:
      // the client is not read any more (interest 0), no event will come.
      const h = new HoldHost(CLIENT, { config: { proxy: { balance: abi.BAL_RR, upstreamTimeoutMs: 1000, upstreams: [{ port: 9001 }] } } });
      h.listen(LISTENER, abi.PROTO_PROXY_HTTP);
      h.queueAccept(LISTENER, CLIENT);
      h.feed(CLIENT, `PUT /r HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n${"q".repeat(4000)}`);
      h.tick([{ fd: LISTENER, events: R }]);
      assert.match(h.output(UP).toString("latin1"), /^PUT \/r HTTP\/1\.1\r\n[^]*\r\n\r\nq{4000}$/, "the head and the first body bytes reached the upstream");
      h.holding = true;
      if (more !== "EAGAIN") h.feed(CLIENT, "q".repeat(3000));
      h.tick([{ fd: CLIENT, events: R }]);
      assert.is(h.held.length, 1, "the client's body read is in flight");
      if (status === 504) { h.setTime(1500); h.runTimers(); } else { h.socket(UP).error = abi.ECONNRESET; h.tick([{ fd: UP, events: R }]); }
      assert.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === UP), "the upstream connection is closed");
      h.holding = false;
      h.tick();
      h.tick();
      const out = h.output(CLIENT).toString("latin1");
      assert.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), `the ${status} reached the client (got ${JSON.stringify(out)})`);
      assert.match(out, /Connection: close/i, "the rest of the body is not read past: the connection closes");
      assert.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === CLIENT), "the client is closed once the answer is out");
      assert.equal(h.epollViolations, []);
    });
  }
}

test.run();
