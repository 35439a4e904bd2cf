// The tcp proxy (PROTO_PROXY_TCP) on the bare core with the fake host: what
// the core asks for when a connect is refused, pending or timed out, how it
// passes a FIN on, and that backpressure stops reading the side whose peer
// does not drain. No OS: the fake kernel answers every request.
import { test } from "uvu";
import * as assert from "uvu/assert";
import abi from "./lib/abi.mjs";
import { FakeHost, HoldHost } from "./lib/fakehost.mjs";

const LISTENER = 3, CLIENT = 10, UP1 = 100, UP2 = 101;
const R = abi.EV_READABLE, W = abi.EV_WRITABLE;

function proxyHost(proxy, config = {}) {
  const h = new FakeHost({ config: { proxy: { balance: abi.BAL_RR, upstreams: [{ port: 9001 }, { port: 9002 }], ...proxy }, ...config } });
  h.listen(LISTENER, abi.PROTO_PROXY_TCP);
  h.pipeFds = new Set(); // every pipe fd handed out (closedFds leaves them out)
  h.failPipes = 0; // OP_PIPEs to answer -EMFILE
  h.answer(abi.OP_PIPE, (sqe, host) => {
    if (h.failPipes > 0) { h.failPipes--; return -abi.EMFILE; }
    h.pipeFds.add(host.nextPipeFd).add(host.nextPipeFd + 1);
    return undefined; // the model makes it
  });
  return h;
}
/** The port of a CONNECT's sockaddr (network byte order at +2). */
const portOf = (h, e) => h.dv.getUint16(e.a0 + abi.SA_PORT, false);
const closedFds = (h) => h.ops(abi.OP_CLOSE).map((e) => e.fd).filter((fd) => !h.pipeFds.has(fd));
const RELAYS = { copy: abi.RELAY_COPY, splice: abi.RELAY_SPLICE };
/** A log entry that reads socket fd: a read into a receive buffer, or a splice into its pipe. */
const readsFrom = (e, fd) => (e.op === abi.OP_READ && e.fd === fd) || (e.op === abi.OP_SPLICE && e.a3 === fd);
/** A log entry that writes to socket fd: a write from the ring, or a splice out of a pipe. */
const writesTo = (e, fd) => ((e.op === abi.OP_WRITE || e.op === abi.OP_WRITEV) && e.fd === fd) || (e.op === abi.OP_SPLICE && e.a0 === fd);
function acceptClient(h) {
  h.queueAccept(LISTENER, CLIENT);
  h.tick([{ fd: LISTENER, events: R }]);
}

for (const relay of ["copy", "splice"]) {
  test(`a refused connect is retried once on the other upstream; the pair then relays [${relay}]`, () => {
    const h = proxyHost({ relay: RELAYS[relay] });
    h.answer(abi.OP_CONNECT, (sqe) => (portOf(h, sqe) === 9001 ? -abi.ECONNREFUSED : 0));
    acceptClient(h);
    const connects = h.ops(abi.OP_CONNECT).map((e) => [e.fd, portOf(h, e), e.res]);
    assert.equal(connects, [[UP1, 9001, -abi.ECONNREFUSED], [UP2, 9002, 0]]);
    assert.equal(h.ops(abi.OP_SOCKET).map((e) => [e.a0, e.a1 & 0xf]), [[abi.AF_INET, 1], [abi.AF_INET, 1]]); // AF_INET, SOCK_STREAM
    // TCP_NODELAY asked for on every upstream socket (Nagle would hold back a relayed reply's last segment)
    assert.equal(h.ops(abi.OP_SOCKET).map((e) => e.a2 & abi.SOCKET_NODELAY), [1, 1]);
    assert.equal(closedFds(h), [UP1], "the refused socket is closed, the client is not");
    if (relay === "splice") assert.is(h.ops(abi.OP_PIPE).length, 2, "a pipe per side once connected");
    h.feed(CLIENT, "hello");
    h.tick([{ fd: CLIENT, events: R }]);
    assert.is(h.output(UP2).toString(), "hello");
    h.feed(UP2, "world");
    h.tick([{ fd: UP2, events: R }]);
    assert.is(h.output(CLIENT).toString(), "world");
    assert.ok(h.logs.some((l) => /connect to upstream 0 failed: errno 111/.test(l.text)), JSON.stringify(h.logs));
  });
}

test("every upstream refusing: the client is closed (tcp mode has no 503)", () => {
  const h = proxyHost({});
  h.answer(abi.OP_CONNECT, -abi.ECONNREFUSED);
  acceptClient(h);
  assert.is(h.ops(abi.OP_CONNECT).length, 2, "the first try and one retry");
  assert.equal(closedFds(h).sort((a, b) => a - b), [CLIENT, UP1, UP2]);
  assert.is(h.stat(abi.STAT_PROXY_NO_UPSTREAM), 1);
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0);
});

test("EINPROGRESS: WRITABLE alone is watched, the connect is asked again, then both sides read", () => {
  const h = proxyHost({});
  h.answer(abi.OP_CONNECT, [-abi.EINPROGRESS, -abi.EALREADY, 0]);
  acceptClient(h);
  assert.is(h.epoll.get(UP1).events & (R | W), W, "connecting: WRITABLE only");
  assert.is(h.epoll.get(CLIENT).events & R, 0, "the client is not read before it is paired");
  h.tick([{ fd: UP1, events: W }]);
  assert.is(h.epoll.get(UP1).events & (R | W), W, "EALREADY: still waiting");
  h.tick([{ fd: UP1, events: W }]);
  assert.is(h.ops(abi.OP_CONNECT).length, 3);
  assert.is(h.epoll.get(UP1).events & (R | W), R);
  assert.is(h.epoll.get(CLIENT).events & (R | W), R);
});

test("connect timeout: the socket is closed, one retry, then the client", () => {
  const h = proxyHost({ connectTimeoutMs: 1000 });
  h.answer(abi.OP_CONNECT, -abi.EINPROGRESS);
  acceptClient(h);
  h.setTime(1001);
  h.tick();
  assert.equal(closedFds(h), [UP1]);
  assert.is(h.ops(abi.OP_CONNECT).length, 2);
  h.setTime(2002 + abi.WHEEL_TICK_MS); // connection deadlines fire up to one wheel tick late
  h.tick();
  assert.equal(closedFds(h).sort((a, b) => a - b), [CLIENT, UP1, UP2]);
  assert.is(h.stat(abi.STAT_PROXY_NO_UPSTREAM), 1);
  assert.ok(h.logs.some((l) => /timed out/.test(l.text)));
});

for (const relay of ["copy", "splice"]) {
  test(`half-close: the client's FIN becomes shutdown(SHUT_WR) upstream after its bytes; the reply still flows; both FINs close both [${relay}]`, () => {
    const h = proxyHost({ relay: RELAYS[relay] });
    acceptClient(h);
    h.feed(CLIENT, "request").peerEof(CLIENT);
    for (let i = 0; i < 3; i++) h.tick([{ fd: CLIENT, events: R }]);
    assert.is(h.output(UP1).toString(), "request");
    const shut = h.ops(abi.OP_SHUTDOWN);
    assert.equal(shut.map((e) => [e.fd, e.a0]), [[UP1, 1]]);
    const lastWrite = Math.max(...h.log.map((e, i) => (writesTo(e, UP1) ? i : -1)));
    assert.ok(h.log.indexOf(shut[0]) > lastWrite, "the FIN goes after the bytes");
    assert.equal(closedFds(h), [], "one FIN closes nothing");
    h.feed(UP1, "reply").peerEof(UP1);
    for (let i = 0; i < 3; i++) h.tick([{ fd: UP1, events: R }]);
    assert.is(h.output(CLIENT).toString(), "reply");
    assert.equal(h.ops(abi.OP_SHUTDOWN).map((e) => e.fd), [UP1, CLIENT]);
    assert.equal(closedFds(h).sort((a, b) => a - b), [CLIENT, UP1]);
    assert.equal(h.openPipeFds(), [], "no pipe left open");
  });
}

test("a side done both ways is closed alone while its peer still drains; a reset after a FIN closes the pair", () => {
  const h = proxyHost({});
  acceptClient(h);
  h.peerEof(CLIENT);
  h.tick([{ fd: CLIENT, events: R }]);
  h.tick([{ fd: CLIENT, events: R }]);
  assert.equal(h.ops(abi.OP_SHUTDOWN).map((e) => e.fd), [UP1]);
  h.room(CLIENT, 0); // the client takes nothing for now
  h.feed(UP1, "late reply").peerEof(UP1);
  for (let i = 0; i < 3; i++) h.tick([{ fd: UP1, events: R }]);
  assert.equal(closedFds(h), [UP1], "the upstream is finished: closed, the client still owed bytes");
  h.room(CLIENT, Infinity);
  h.tick([{ fd: CLIENT, events: W }]);
  assert.is(h.output(CLIENT).toString(), "late reply");
  assert.equal(closedFds(h).sort((a, b) => a - b), [CLIENT, UP1]);

  const g = proxyHost({});
  acceptClient(g);
  g.peerEof(CLIENT);
  g.tick([{ fd: CLIENT, events: R }]);
  g.tick([{ fd: CLIENT, events: R }]);
  assert.equal(closedFds(g), []);
  g.socket(CLIENT).error = abi.ECONNRESET;
  g.tick([{ fd: CLIENT, events: abi.EV_ERROR | abi.EV_HANGUP }]);
  assert.equal(closedFds(g).sort((a, b) => a - b), [CLIENT, UP1], "the error on the half-closed client closes both");
});

for (const relay of ["copy", "splice"]) {
  test(`a reset on one side closes the other [${relay}]`, () => {
    const h = proxyHost({ relay: RELAYS[relay] });
    acceptClient(h);
    h.socket(UP1).error = abi.ECONNRESET;
    h.tick([{ fd: UP1, events: R }]);
    assert.equal(closedFds(h).sort((a, b) => a - b), [CLIENT, UP1]);
    assert.equal(h.openPipeFds(), [], "no pipe left open");
  });
}


test("bytes queued for a side while its read is in flight are written when that read completes empty (fuzz seed 535203443)", () => {
  // The upstream's bytes reach the client's ring while the client's own read
  // is in flight (a completion in a later tick), so the client is skipped
  // then. Its read comes back EAGAIN (later: 0, the probe of a client past
  // its FIN): no readiness will follow, so the completion itself must get
  // the bytes written.
  const h = new HoldHost(CLIENT, { config: { proxy: { balance: abi.BAL_RR, upstreams: [{ port: 9001 }] } } });
  h.listen(LISTENER, abi.PROTO_PROXY_TCP);
  acceptClient(h);
  h.holding = true;
  h.tick([{ fd: CLIENT, events: R }]);
  assert.is(h.held.length, 1, "the client's read is in flight");
  h.feed(UP1, "reply");
  h.tick([{ fd: UP1, events: R }]);
  h.holding = false;
  h.tick();
  h.tick();
  assert.is(h.output(CLIENT).toString(), "reply");
  h.peerEof(CLIENT);
  for (let i = 0; i < 2; i++) h.tick([{ fd: CLIENT, events: R }]);
  assert.equal(h.ops(abi.OP_SHUTDOWN).map((e) => e.fd), [UP1]);
  h.holding = true;
  h.tick([{ fd: CLIENT, events: R | abi.EV_HANGUP }]);
  assert.is(h.held.length, 1, "the probe read of the half-closed client is in flight");
  h.feed(UP1, " more");
  h.tick([{ fd: UP1, events: R }]);
  h.holding = false;
  h.tick();
  h.tick();
  assert.is(h.output(CLIENT).toString(), "reply more");

  // The same while the client's first FIN is being read (fuzz seed 1204993651).
  const g = new HoldHost(CLIENT, { config: { proxy: { balance: abi.BAL_RR, upstreams: [{ port: 9001 }] } } });
  g.listen(LISTENER, abi.PROTO_PROXY_TCP);
  acceptClient(g);
  g.holding = true;
  g.peerEof(CLIENT);
  g.tick([{ fd: CLIENT, events: R }]);
  g.feed(UP1, "reply");
  g.tick([{ fd: UP1, events: R }]);
  g.holding = false;
  g.tick();
  g.tick();
  assert.is(g.output(CLIENT).toString(), "reply");
  assert.equal(g.ops(abi.OP_SHUTDOWN).map((e) => e.fd), [UP1]);
});

for (const [mode, relay] of [["lt", "copy"], ["et", "copy"], ["lt", "splice"], ["et", "splice"]]) {
  test(`backpressure (${mode}) [${relay}]: a client that takes nothing stops the upstream's reads at the ring limit (splice: one receive buffer's worth in the pipe); all bytes arrive once it reads`, () => {
    const max = 64 * 1024;
    const h = proxyHost({ relay: RELAYS[relay] }, { mode, writeBufMax: max, readBuf: 16 * 1024 });
    acceptClient(h);
    const data = Buffer.alloc(1 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 9)) & 255;
    for (let off = 0; off < data.length; off += 8192) h.feed(UP1, data.subarray(off, off + 8192));
    h.room(CLIENT, 0);
    for (let i = 0; i < 200; i++) h.tick([{ fd: UP1, events: R }]);
    const taken = data.length - h.socket(UP1).input.reduce((n, b) => n + b.length, 0);
    const limit = relay === "splice" ? 16 * 1024 : max + 16 * 1024;
    assert.ok(taken <= limit, `read ${taken} bytes from the upstream with the client taking none (limit ${limit})`);
    assert.ok(h.stat(abi.STAT_WBUF_BYTES) <= max, `ring bytes held ${h.stat(abi.STAT_WBUF_BYTES)}`);
    // (ET splice: READABLE may stay in the interest, edges do not repeat; the side just waits for its pipe)
    if (!(relay === "splice" && mode === "et")) assert.is(h.epoll.get(UP1).events & R, 0, "the upstream's READABLE is out of the interest (no LT spin)");
    const reads = h.log.filter((e) => readsFrom(e, UP1)).length;
    h.tick([{ fd: UP1, events: R }]);
    assert.is(h.log.filter((e) => readsFrom(e, UP1)).length, reads, "no read while paused");
    h.room(CLIENT, Infinity);
    for (let i = 0; i < 400 && h.output(CLIENT).length < data.length; i++) h.tick([{ fd: CLIENT, events: W }, { fd: UP1, events: R }]);
    assert.is(h.output(CLIENT).length, data.length);
    assert.ok(h.output(CLIENT).equals(data), "byte-identical");
    assert.is(h.x.checkInvariants(), abi.INV_OK);
    if (relay === "splice") assert.ok(!h.log.some((e) => e.op === abi.OP_READ || e.op === abi.OP_WRITE || e.op === abi.OP_WRITEV), "no byte went through memory");
  });
}

// ---- splice (CFG_RELAY = RELAY_SPLICE): the fake kernel's pipes (fakehost.mjs FakePipe) ----

const spliceHost = (config = {}) => proxyHost({ relay: abi.RELAY_SPLICE }, config);
const spliceIns = (h, fd) => h.log.filter((e) => e.op === abi.OP_SPLICE && e.a3 === fd);

for (const mode of ["lt", "et"]) {
  test(`splice (${mode}): EAGAIN on the splice-in waits for the next READABLE; the bytes then go socket -> pipe -> socket`, () => {
    const h = spliceHost({ mode });
    acceptClient(h);
    const first = spliceIns(h, CLIENT);
    assert.equal(first.map((e) => e.res), [-abi.EAGAIN], "the optimistic first splice-in: nothing yet");
    assert.ok(first[0].a2 & abi.SPLICE_TO_PIPE && first[0].a2 & abi.SPLICE_F_NONBLOCK, "flags");
    h.tick();
    assert.is(spliceIns(h, CLIENT).length, 1, "no splice without READABLE");
    h.feed(CLIENT, "hello");
    h.tick([{ fd: CLIENT, events: R }]);
    assert.is(h.output(UP1).toString(), "hello");
    assert.ok(h.log.some((e) => e.op === abi.OP_SPLICE && e.a0 === UP1 && e.res === 5), "spliced out to the upstream");
    assert.ok(!h.log.some((e) => e.op === abi.OP_READ || e.op === abi.OP_WRITE || e.op === abi.OP_WRITEV), "no byte through memory");
  });

  test(`splice (${mode}): a short splice-out waits for WRITABLE; the side does not splice in while its pipe holds bytes`, () => {
    const h = spliceHost({ mode });
    acceptClient(h);
    h.room(CLIENT, 3);
    h.feed(UP1, "abcdefgh");
    h.tick([{ fd: UP1, events: R }]);
    assert.is(h.output(CLIENT).toString(), "abc");
    assert.ok(h.epoll.get(CLIENT).events & W, "WRITABLE armed after the short splice-out");
    const ins = spliceIns(h, UP1).length;
    h.feed(UP1, "more");
    h.tick([{ fd: UP1, events: R }]);
    assert.is(spliceIns(h, UP1).length, ins, "the pipe still holds 5 bytes: no splice-in");
    if (mode === "lt") assert.is(h.epoll.get(UP1).events & R, 0, "LT: paused (no spin on its input)");
    h.room(CLIENT, Infinity);
    for (let i = 0; i < 4; i++) h.tick(i === 0 ? [{ fd: CLIENT, events: W }] : []);
    assert.is(h.output(CLIENT).toString(), "abcdefghmore");
  });
}

test("splice: the upstream's FIN waits behind its piped bytes; the pair then closes, pipes and all", () => {
  const h = spliceHost();
  acceptClient(h);
  h.peerEof(CLIENT);
  h.tick([{ fd: CLIENT, events: R }]);
  h.tick([{ fd: CLIENT, events: R }]);
  assert.equal(h.ops(abi.OP_SHUTDOWN).map((e) => e.fd), [UP1]);
  h.room(CLIENT, 0);
  h.feed(UP1, "late reply").peerEof(UP1);
  for (let i = 0; i < 3; i++) h.tick([{ fd: UP1, events: R }]);
  assert.equal(closedFds(h), [], "the upstream's bytes are still in its pipe: it stays open");
  assert.is(h.openPipeFds().length, 4);
  h.room(CLIENT, Infinity);
  for (let i = 0; i < 4; i++) h.tick(i === 0 ? [{ fd: CLIENT, events: W }] : []);
  assert.is(h.output(CLIENT).toString(), "late reply");
  assert.equal(h.ops(abi.OP_SHUTDOWN).map((e) => e.fd), [UP1, CLIENT], "the client's FIN after the bytes");
  const shut = h.ops(abi.OP_SHUTDOWN)[1];
  assert.ok(h.log.indexOf(shut) > Math.max(...h.log.map((e, i) => (writesTo(e, CLIENT) ? i : -1))), "the FIN goes after the bytes");
  assert.equal(closedFds(h).sort((a, b) => a - b), [CLIENT, UP1]);
  assert.equal(h.openPipeFds(), [], "every pipe fd closed");
});

test("splice: a reset while bytes wait in the pipe closes both sides and all four pipe fds", () => {
  const h = spliceHost();
  acceptClient(h);
  h.room(CLIENT, 0);
  h.feed(UP1, "stuck");
  h.tick([{ fd: UP1, events: R }]);
  h.socket(CLIENT).error = abi.ECONNRESET;
  h.tick([{ fd: CLIENT, events: W | abi.EV_ERROR }]);
  h.tick();
  assert.equal(closedFds(h).sort((a, b) => a - b), [CLIENT, UP1]);
  assert.equal(h.openPipeFds(), []);
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0);
});

test("splice: OP_PIPE failing (EMFILE) makes that pair relay by copy (its other pipe closed); the next pair splices", () => {
  const h = spliceHost();
  h.failPipes = 1;
  acceptClient(h);
  assert.equal(h.ops(abi.OP_PIPE).map((e) => e.res), [-abi.EMFILE, 0]);
  assert.equal(h.openPipeFds(), [], "the pipe that was made is closed again");
  h.feed(CLIENT, "hello");
  h.tick([{ fd: CLIENT, events: R }]);
  assert.is(h.output(UP1).toString(), "hello");
  assert.ok(h.ops(abi.OP_READ).some((e) => e.fd === CLIENT && e.res === 5), "read through memory");
  h.queueAccept(LISTENER, CLIENT + 1);
  h.tick([{ fd: LISTENER, events: R }]);
  assert.is(h.openPipeFds().length, 4, "the next pair has its pipes");
  h.feed(CLIENT + 1, "spliced");
  h.tick([{ fd: CLIENT + 1, events: R }]);
  assert.is(h.output(UP2).toString(), "spliced");
  assert.ok(spliceIns(h, CLIENT + 1).some((e) => e.res === 7));
});

test("splice: at most maxFds / 8 pipes; a pair past the cap relays by copy; a closed pair's pipes free room", () => {
  const h = spliceHost({ maxFds: 32 }); // 4 pipes: two pairs
  h.nextSocketFd = 13; // upstream sockets inside the fd tables
  for (const fd of [10, 11, 12]) h.queueAccept(LISTENER, fd);
  for (let i = 0; i < 3; i++) h.tick([{ fd: LISTENER, events: R }]);
  assert.equal(h.ops(abi.OP_ACCEPT).filter((e) => e.res >= 0).map((e) => e.res), [10, 11, 12]);
  assert.is(h.ops(abi.OP_PIPE).length, 4, "two pairs got pipes, the third none");
  h.feed(12, "third");
  h.tick([{ fd: 12, events: R }]);
  assert.ok(h.ops(abi.OP_READ).some((e) => e.fd === 12 && e.res === 5), "the third pair copies");
  assert.is(h.output(15).toString(), "third");
  h.socket(10).error = abi.ECONNRESET;
  h.tick([{ fd: 10, events: R }]);
  h.tick();
  assert.is(h.openPipeFds().length, 4, "the reset pair's pipes are closed");
  h.queueAccept(LISTENER, 10);
  h.nextSocketFd = 13; // the reset pair's fds are free again
  h.tick([{ fd: LISTENER, events: R }]);
  assert.is(h.ops(abi.OP_PIPE).length, 6, "the new pair splices");
});

test.run();
