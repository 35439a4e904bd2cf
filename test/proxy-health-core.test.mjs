// Active health checks (assembly/proxy/health.ts) on the bare core with the
// fake host: when probes are asked for (spread over the interval, never two
// out for one upstream), the exact request an http probe sends, and what a
// response, a close or the timeout count for. No OS, no real clock.
import { test } from "uvu";
import * as assert from "uvu/assert";
import abi from "./lib/abi.mjs";
import { FakeHost } from "./lib/fakehost.mjs";

const R = abi.EV_READABLE, W = abi.EV_WRITABLE;
const ports = (n) => Array.from({ length: n }, (_, k) => ({ port: 9001 + k }));
function host(n, health) {
  const h = new FakeHost({ config: { proxy: { balance: abi.BAL_RR, upstreams: ports(n), health } } });
  h.listen(3, abi.PROTO_PROXY_TCP);
  return h;
}
const portOf = (h, e) => h.dv.getUint16(e.a0 + abi.SA_PORT, false);
/** Ticks at loop times t (ms), returning the ports connected to at each. */
function probesAt(h, times) {
  const out = [];
  for (const t of times) {
    const from = h.log.length;
    h.setTime(t);
    h.tick();
    out.push([t, h.ops(abi.OP_CONNECT, { from }).map((e) => portOf(h, e))]);
  }
  return out;
}

test("first probes spread over the interval; a probe still out skips its upstream's next turn", () => {
  const h = host(3, { check: abi.CHECK_TCP, intervalMs: 300, timeoutMs: 1000 });
  h.answer(abi.OP_CONNECT, -abi.EINPROGRESS); // never connects: every probe stays out until its timeout
  // u0's probe (0) times out at 1000, u1's (100) at 1100, u2's (200) at 1200. A turn that finds its
  // probe out is skipped; a turn the loop was late for is not made up (due 600, run at 1000: next 1300).
  const seen = probesAt(h, [0, 100, 200, 300, 400, 500, 1000, 1200, 1300]);
  assert.equal(seen, [[0, [9001]], [100, [9002]], [200, [9003]], [300, []], [400, []], [500, []], [1000, []], [1200, []], [1300, [9001, 9002]]]);
  assert.is(h.x.proxyHealthLast(0), abi.CHECK_RES_TIMEOUT, "the first probe timed out at 1000");
  assert.is(h.x.proxyHealthProbes(0), 1);
  assert.is(h.x.proxyHealthFailed(0), 1);
  assert.is(h.x.proxyHealthProbes(2), 1);
});

test("tcp probe: a connect is good, and closed at once; refused ones take it down after fall", () => {
  const h = host(2, { check: abi.CHECK_TCP, intervalMs: 100, fall: 3, rise: 2 });
  h.answer(abi.OP_CONNECT, (sqe) => (portOf(h, sqe) === 9002 ? -abi.ECONNREFUSED : 0));
  probesAt(h, [0, 50]);
  assert.is(h.x.proxyHealthLast(0), abi.CHECK_RES_CONNECTED);
  const probeFd = h.ops(abi.OP_CONNECT).find((e) => portOf(h, e) === 9001).fd;
  assert.ok(h.ops(abi.OP_CLOSE).some((e) => e.fd === probeFd), "the probe's socket is closed");
  assert.is(h.x.proxyHealthLast(1), -abi.ECONNREFUSED);
  assert.ok(h.x.proxyUpstreamUsable(1, 50), "one bad probe: still up");
  probesAt(h, [150, 250]);
  assert.is(h.x.proxyHealthFailed(1), 3);
  assert.not.ok(h.x.proxyUpstreamUsable(1, 250), "3 bad probes: down");
  assert.ok(h.logs.some((l) => /upstream 1 \(127\.0\.0\.1:9002\) down: 3 health checks failed/.test(l.text)), JSON.stringify(h.logs));
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0, "no probe left open");
});

test("http probe: the request, then the response head decides; 1xx is skipped; a close before the head is bad", () => {
  const h = host(1, { check: abi.CHECK_HTTP, intervalMs: 100, path: "/health", fall: 1, rise: 1 });
  probesAt(h, [0]);
  const fd = h.ops(abi.OP_CONNECT)[0].fd;
  assert.is(h.output(fd).toString(),
    "GET /health HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nConnection: close\r\nUser-Agent: wasm-reactor-health\r\n\r\n");
  h.feed(fd, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 50");
  h.tick([{ fd, events: R }]);
  assert.is(h.x.proxyHealthProbes(0), 0, "a partial head: still waiting");
  h.feed(fd, "3 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  h.tick([{ fd, events: R }]);
  assert.is(h.x.proxyHealthLast(0), 503);
  assert.not.ok(h.x.proxyUpstreamUsable(0, 0), "fall 1: down");
  probesAt(h, [100]);
  const fd2 = h.ops(abi.OP_CONNECT).at(-1).fd;
  h.feed(fd2, "HTTP/1.0 204 No Content\r\n\r\n");
  h.tick([{ fd: fd2, events: R | W }]);
  assert.is(h.x.proxyHealthLast(0), 204);
  assert.ok(h.x.proxyUpstreamUsable(0, 100), "rise 1: up");
  probesAt(h, [200]);
  const fd3 = h.ops(abi.OP_CONNECT).at(-1).fd;
  h.socket(fd3).eof = true;
  h.tick([{ fd: fd3, events: R }]);
  assert.is(h.x.proxyHealthLast(0), abi.CHECK_RES_CLOSED);
  probesAt(h, [300]);
  const fd4 = h.ops(abi.OP_CONNECT).at(-1).fd;
  h.feed(fd4, "SSH-2.0-OpenSSH\r\n\r\n");
  h.tick([{ fd: fd4, events: R }]);
  assert.is(h.x.proxyHealthLast(0), abi.CHECK_RES_INVALID);
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0);
});

test("graceful shutdown: an open probe is closed with no result, and no probe follows", () => {
  const h = host(1, { check: abi.CHECK_TCP, intervalMs: 100, timeoutMs: 5000 });
  h.answer(abi.OP_CONNECT, -abi.EINPROGRESS);
  probesAt(h, [0]);
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 1);
  h.x.beginShutdown(10_000);
  h.flush();
  assert.is(h.stat(abi.STAT_LIVE_CONNS), 0);
  assert.ok(h.ops(abi.OP_STOP).length === 1, "the core tells the host to stop");
  assert.equal(probesAt(h, [100, 200, 300]).flatMap(([, p]) => p), []);
  assert.is(h.x.proxyHealthProbes(0), 0);
});

test("no check configured: no probe, no timer", () => {
  const h = host(2, undefined);
  assert.equal(probesAt(h, [0, 2000, 4000]).flatMap(([, p]) => p), []);
  assert.is(h.stat(abi.STAT_TIMERS), 0);
});

test.run();
