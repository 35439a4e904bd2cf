// The metrics protocol on the bare core (fake host, no OS): the exposition
// the core renders sums its own snapshot with the other workers' ones that
// the host copies in on OP_METRICS; a scrape allocates nothing.
import { test } from "uvu";
import * as assert from "uvu/assert";
import parsePrometheus from "parse-prometheus-text-format";
import { FakeHost } from "./lib/fakehost.mjs";
import abi from "./lib/abi.mjs";

const ECHO = 3, METRICS = 4, READABLE = abi.EV_READABLE;

/** A core serving echo on fd 3 and metrics on fd 4, summing `peers` snapshots from `fill(dv, at, k)`. */
function host(peers, fill) {
  const h = new FakeHost({ config: { metricsPeers: peers } });
  h.listen(ECHO, abi.PROTO_ECHO);
  h.listen(METRICS, abi.PROTO_METRICS);
  h.gathered = 0;
  h.answer(abi.OP_METRICS, ({ a0, a1 }) => {
    const size = h.x.metricsSnapshotSize();
    assert.is(a1, peers * size, "room for every peer");
    h.u8.fill(0, a0, a0 + a1);
    for (let k = 0; k < peers; k++) fill(h.dv, a0 + k * size, k);
    h.gathered++;
    return peers;
  });
  return h;
}

/** One scrape on a fresh connection fd: the response text. */
function scrape(h, fd, path = "/metrics") {
  h.queueAccept(METRICS, fd);
  h.feed(fd, `GET ${path} HTTP/1.1\r\nHost: m\r\n\r\n`);
  h.tick([{ fd: METRICS, events: READABLE }]);
  return h.takeOutput(fd).toString();
}

const sample = (families, name, labels = {}) => {
  const f = families.find((x) => x.name === name);
  const m = f.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  return Number(m.value ?? m.count);
};

test("a scrape sums the core's own counters and two peers' snapshots, bucket by bucket", () => {
  const h = host(2, (dv, at, k) => {
    dv.setUint32(at + abi.MS_CTL + abi.STAT_ACCEPTED, 10 + k, true);
    dv.setInt32(at + abi.MS_CTL + abi.STAT_LIVE_CONNS, 2, true);
    dv.setFloat64(at + abi.MS_CTL + abi.STAT_BYTES_IN, 1000, true);
    dv.setFloat64(at + abi.MS_MX + abi.MX_CLOSED + abi.CLOSE_IDLE_TIMEOUT * 8, 3, true);
    dv.setFloat64(at + abi.MS_MX + abi.MX_METHODS + 1 * 8, 5, true); // GET
    // events per tick: 4 batches of 2 (bucket le=2, index 2), sum 8
    dv.setFloat64(at + abi.MS_MX + abi.MX_EVENTS + 2 * 8, 4, true);
    dv.setFloat64(at + abi.MS_MX + abi.MX_EVENTS + abi.MH_EVENT_BUCKETS * 8, 8, true);
    dv.setFloat64(at + abi.MS_MX + abi.MX_EVENTS + abi.MH_EVENT_BUCKETS * 8 + 8, 4, true);
  });
  // Own traffic: one echo client that sends 5 bytes and closes.
  h.queueAccept(ECHO, 20);
  h.feed(20, "hello").peerEof(20);
  h.tick([{ fd: ECHO, events: READABLE }]);
  h.tick([{ fd: 20, events: READABLE }]); // LT: one read per event; this one meets the EOF
  assert.is(h.output(20).toString(), "hello");
  assert.ok(h.socket(20).closed);
  const ownTicks = 3; // dispatched batches: the accept's, the EOF's, the scrape's
  const res = scrape(h, 30);
  assert.is(h.gathered, 1);
  assert.match(res, /^HTTP\/1\.1 200 OK\r\nContent-Type: text\/plain; version=0\.0\.4; charset=utf-8\r\nContent-Length: (\d+)\r\n/);
  const body = res.slice(res.indexOf("\r\n\r\n") + 4);
  assert.is(Buffer.byteLength(body), Number(/Content-Length: (\d+)/.exec(res)[1]));
  const m = parsePrometheus(body);
  assert.is(sample(m, "wasm_reactor_workers"), 3);
  assert.is(sample(m, "wasm_reactor_connections_accepted_total"), 1 + 10 + 11, "the scrape's connection is not counted");
  assert.is(sample(m, "wasm_reactor_connections_open"), 0 + 2 + 2);
  assert.is(sample(m, "wasm_reactor_received_bytes_total"), 5 + 2000);
  assert.is(sample(m, "wasm_reactor_connections_closed_total", { reason: "client" }), 1);
  assert.is(sample(m, "wasm_reactor_connections_closed_total", { reason: "idle_timeout" }), 6);
  assert.is(sample(m, "wasm_reactor_requests_total", { method: "GET" }), 10, "the scrape is not a request of the service");
  const ev = m.find((f) => f.name === "wasm_reactor_events_per_tick").metrics[0];
  assert.is(Number(ev.buckets["2"]) - Number(ev.buckets["1"]), 8, "the peers' 8 batches of 2 land in le=2");
  assert.is(Number(ev.count), 8 + ownTicks);
  assert.is(ev.buckets["+Inf"], ev.count);
});

test("no peers: no OP_METRICS; /healthz, /readyz (503 once draining or unready), 404; memory does not grow over scrapes", () => {
  const h = host(0, () => {});
  assert.match(scrape(h, 30), /^HTTP\/1\.1 200 OK/);
  assert.is(h.ops(abi.OP_METRICS).length, 0);
  assert.match(scrape(h, 31, "/healthz"), /^HTTP\/1\.1 200 OK[^]*\r\n\r\nok\n$/);
  assert.match(scrape(h, 32, "/readyz"), /^HTTP\/1\.1 200 OK/);
  assert.match(scrape(h, 33, "/nothing"), /^HTTP\/1\.1 404 Not Found/);
  const before = h.memoryBytes();
  for (let i = 0; i < 200; i++) scrape(h, 40 + (i % 50));
  assert.is(h.memoryBytes(), before, "a scrape allocates nothing");
  h.dv.setInt32(h.x.metricsRecord() + abi.MX_HOST_UNREADY, 1, true);
  assert.match(scrape(h, 34, "/readyz"), /^HTTP\/1\.1 503 Service Unavailable/);
  h.dv.setInt32(h.x.metricsRecord() + abi.MX_HOST_UNREADY, 0, true);
  h.x.beginShutdown(1000);
  h.flush();
  assert.match(scrape(h, 35, "/readyz"), /^HTTP\/1\.1 503/, "the listener accepts while the service drains");
  assert.match(scrape(h, 36, "/healthz"), /^HTTP\/1\.1 200/);
});

test("closes by reason: a slow head (header_timeout), a reader that stops reading (overflow), an idle one (idle_timeout)", () => {
  const HTTP = 5;
  const h = new FakeHost({ config: { headerTimeoutMs: 1000, idleTimeoutMs: 5000, writeBufMax: 8192 } });
  h.listen(ECHO, abi.PROTO_ECHO);
  h.listen(METRICS, abi.PROTO_METRICS);
  h.listen(HTTP, abi.PROTO_HTTP);
  // HTTP: half a head, then nothing (slow loris)
  h.queueAccept(HTTP, 20);
  h.feed(20, "GET /a HT");
  h.tick([{ fd: HTTP, events: READABLE }]);
  // echo: sends 64 KiB and never reads: its buffer passes writeBufMax
  h.queueAccept(ECHO, 21);
  h.room(21, 0).feed(21, Buffer.alloc(65536, 0x61));
  h.tick([{ fd: ECHO, events: READABLE }]);
  for (let i = 0; i < 4 && !h.socket(21).closed; i++) h.tick([{ fd: 21, events: READABLE }]);
  assert.ok(h.socket(21).closed, "the slow reader was disconnected");
  // echo: says nothing at all
  h.queueAccept(ECHO, 22);
  h.tick([{ fd: ECHO, events: READABLE }]);
  h.setTime(1500);
  h.tick();
  assert.ok(h.socket(20).closed, "header timeout");
  h.setTime(6000);
  h.tick();
  assert.ok(h.socket(22).closed, "idle timeout");
  const res = scrape(h, 30);
  const m = parsePrometheus(res.slice(res.indexOf("\r\n\r\n") + 4));
  assert.is(sample(m, "wasm_reactor_connections_closed_total", { reason: "header_timeout" }), 1);
  assert.is(sample(m, "wasm_reactor_connections_closed_total", { reason: "overflow" }), 1);
  assert.is(sample(m, "wasm_reactor_connections_closed_total", { reason: "idle_timeout" }), 1);
  assert.is(sample(m, "wasm_reactor_connections_closed_total", { reason: "client" }), 0);
  assert.is(sample(m, "wasm_reactor_connections_open"), 0);
  assert.ok(sample(m, "wasm_reactor_loop_lag_seconds") >= 2, "the two deadlines' timers fired (loop lag samples)");
});

test.run();
