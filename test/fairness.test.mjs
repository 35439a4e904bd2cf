// Fairness (reactor/budget.ts): a per-connection budget per tick, on the bare
// core (fake host: no OS, no clock), so "one tick" is exact. A hog's 10,000
// pipelined requests in its buffer must not keep another connection waiting
// beyond one budget; the budget's leftovers must still all be served, in
// later ticks, with the poll told not to block meanwhile.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { FakeHost } from "./lib/fakehost.mjs";
import abi from "./lib/abi.mjs";

const { EV_READABLE: READABLE, OP_WRITE, OP_WRITEV, OP_READ } = abi;
const LISTENER = 3;
const HOG = 10;
const OTHER = 11;
const REQ = "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n";

function host(proto, config) {
  const h = new FakeHost({ config: { mode: "et", ...config } });
  h.listen(LISTENER, proto);
  for (const fd of [HOG, OTHER]) {
    h.queueAccept(LISTENER, fd);
    h.tick([{ fd: LISTENER, events: READABLE }]);
  }
  return h;
}

/** Responses (status lines) written to fd so far (counted as they are taken: no quadratic re-reads). */
const counted = new WeakMap();
function answered(h, fd) {
  const m = counted.get(h) ?? new Map();
  counted.set(h, m);
  const n = (h.takeOutput(fd).toString("latin1").match(/^HTTP\/1\.1 404 /gm) ?? []).length;
  m.set(fd, (m.get(fd) ?? 0) + n);
  return m.get(fd);
}

test("HTTP: a hog's 10,000 pipelined requests in one read do not starve another connection readable in the same batch", () => {
  const h = host(abi.PROTO_HTTP, {});
  h.feed(HOG, REQ.repeat(10_000));
  h.feed(OTHER, REQ);
  const from = h.log.length;
  h.tick([{ fd: HOG, events: READABLE }, { fd: OTHER, events: READABLE }]);
  assert.is(answered(h, OTHER), 1, "the other connection is answered in the first tick");
  assert.is(answered(h, HOG), abi.FAIR_TICK_REQUESTS, "the hog gets one budget's worth of requests in that tick");
  // The other's response went out inside the hog's first budget window:
  // before the hog's (budget)th response write.
  const writes = h.log.slice(from).filter((e) => e.op === OP_WRITE || e.op === OP_WRITEV);
  const otherAt = writes.findIndex((e) => e.fd === OTHER);
  const hogWrites = writes.slice(0, otherAt).filter((e) => e.fd === HOG).length;
  assert.ok(otherAt >= 0 && hogWrites <= abi.FAIR_TICK_REQUESTS, `other answered after ${hogWrites} hog writes`);
  // The hog's input is buffered (ET: no new edge will come): the poll must not block.
  assert.is(h.pollTimeout(), 0, "work is waiting: the next poll does not block");

  // Later ticks with no events serve the rest, one budget per tick.
  h.keepLog = false;
  let ticks = 1;
  for (let last = answered(h, HOG); last < 10_000; ticks++) {
    h.tick();
    const now = answered(h, HOG);
    assert.ok(now - last >= 1 && now - last <= abi.FAIR_TICK_REQUESTS, `tick ${ticks}: ${now - last} answered`);
    last = now;
  }
  assert.is(answered(h, HOG), 10_000, "every pipelined request answered, in order, none lost");
  assert.is(ticks, Math.ceil(10_000 / abi.FAIR_TICK_REQUESTS));
  assert.is(h.pollTimeout(), -1, "nothing left: the poll may block again");
  assert.is(h.ctlI32(abi.STAT_FAIR_DEFERRED), ticks - 1, "one deferral per tick that ran out");
});

test("HTTP: without the budget (tickRequests -1, tickBytes -1) the hog is served to the end in the first tick", () => {
  const h = host(abi.PROTO_HTTP, { tickRequests: -1, tickBytes: -1 });
  h.feed(HOG, REQ.repeat(2_000));
  h.feed(OTHER, REQ);
  h.tick([{ fd: HOG, events: READABLE }, { fd: OTHER, events: READABLE }]);
  assert.is(answered(h, HOG), 2_000, "the whole pipeline in one tick: what the budget prevents");
  assert.is(answered(h, OTHER), 1);
});

test("HTTP: the request budget is configurable (tickRequests 4)", () => {
  const h = host(abi.PROTO_HTTP, { tickRequests: 4 });
  h.feed(HOG, REQ.repeat(10));
  h.tick([{ fd: HOG, events: READABLE }]);
  assert.is(answered(h, HOG), 4);
  h.tick(); assert.is(answered(h, HOG), 8);
  h.tick(); assert.is(answered(h, HOG), 10);
});

test("echo, ET: a fast sender reads one bytes budget per tick, the rest in later ticks, nothing lost", () => {
  const h = host(abi.PROTO_ECHO, { tickBytes: 64 * 1024 });
  const data = Buffer.alloc(1 << 20, "x");
  h.feed(HOG, data);
  h.feed(OTHER, "hello");
  const from = h.log.length;
  h.tick([{ fd: HOG, events: READABLE }, { fd: OTHER, events: READABLE }]);
  assert.is(h.output(OTHER).toString(), "hello");
  const read = h.ops(OP_READ, { fd: HOG, from }).reduce((n, e) => n + Math.max(e.res, 0), 0);
  // The budget is checked before each read: at most one read past it.
  assert.ok(read >= 64 * 1024 && read < 64 * 1024 + 32 * 1024 + 1, `read ${read} bytes in the first tick`);
  assert.is(h.pollTimeout(), 0);
  let ticks = 0;
  while (h.output(HOG).length < data.length && ticks++ < 100) h.tick();
  assert.ok(h.output(HOG).equals(data), "everything echoed back");
});

test.run();
