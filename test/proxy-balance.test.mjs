// The upstream table and the balancing policies (assembly/proxy/upstreams.ts,
// balance.ts, maglev.ts) on the bare core: no sockets, no host. Expectations
// come from the definitions (nginx's smooth wrr written out below in JS, the
// shares weights imply, the backoff formula), never from the core's output.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";
import abi from "./lib/abi.mjs";

const core = loadCore();
const x = core.x;
const A = x.arena();
const usable = (u, now = 0) => x.proxyUpstreamUsable(u, now) === 1;

/** Writes a sockaddr_in for 127.0.0.1:port (or the given address) in the arena; -> its address. */
function sockaddr(port, ip = [127, 0, 0, 1], at = A) {
  const dv = core.dv();
  core.u8().fill(0, at, at + 16);
  dv.setUint16(at + abi.SA_FAMILY, abi.AF_INET, true);
  dv.setUint16(at + abi.SA_PORT, port, false);
  core.u8().set(ip, at + abi.SA_IN_ADDR);
  return at;
}

/** A fresh table of upstreams with these weights (ports 9001..), and the config fields given (BCFG_* names). */
function setup(weights, cfg = {}) {
  const c = x.balanceConfig();
  core.u8().fill(0, c, c + abi.BCFG_SIZE);
  for (const [k, v] of Object.entries(cfg)) core.dv().setInt32(c + abi[k], v, true);
  x.proxyUpstreamsReset();
  weights.forEach((w, i) => assert.is(x.proxyUpstreamAdd(sockaddr(9001 + i), 16, w), i));
  x.balanceInit();
}

const pick = (policy, { hash = 0, exclude = -1, now = 0 } = {}) => x.proxyBalancePick(policy, hash >>> 0, exclude, now);

function shares(policy, n, picks, opts) {
  const c = new Array(n).fill(0);
  for (let i = 0; i < picks; i++) c[pick(policy, opts)]++;
  return c.map((k) => k / picks);
}

/** nginx's smooth weighted round robin, from ngx_http_upstream_get_peer's definition. */
function nginxWrr(weights, picks) {
  const cw = weights.map(() => 0), total = weights.reduce((a, b) => a + b, 0), out = [];
  for (let p = 0; p < picks; p++) {
    let best = -1;
    for (let i = 0; i < weights.length; i++) { cw[i] += weights[i]; if (best < 0 || cw[i] > cw[best]) best = i; }
    cw[best] -= total;
    out.push(best);
  }
  return out;
}

function ejectByFailures(u, now, n = 3) { for (let i = 0; i < n; i++) x.proxyUpstreamFailure(u, now); }
/** Field off of u's stats record, written at loop time now (CTL_NOW). */
function stat(u, off, f64 = true, now = 0) {
  core.dv().setFloat64(x.ctlAddress() + abi.CTL_NOW, now, true);
  const buf = x.proxyStatsBuffer();
  assert.ok(x.proxyStatsWrite(buf, abi.UPSTREAMS_MAX * abi.UPSTAT_SIZE) > u);
  const dv = core.dv(), at = buf + u * abi.UPSTAT_SIZE + off;
  return f64 ? dv.getFloat64(at, true) : dv.getInt32(at, true);
}

// ---- the table ---------------------------------------------------------------

test("upstreamAdd copies the address and refuses bad weights, lengths and a full table", () => {
  setup([]);
  assert.is(x.proxyUpstreamAdd(sockaddr(9001), 16, 0), -1, "weight 0");
  assert.is(x.proxyUpstreamAdd(sockaddr(9001), 16, abi.UPSTREAM_WEIGHT_MAX + 1), -1, "weight too large");
  assert.is(x.proxyUpstreamAdd(sockaddr(9001), 29, 1), -1, "longer than a sockaddr_in6");
  assert.is(x.proxyUpstreamAdd(sockaddr(9001), 0, 1), -1, "empty");
  const u = x.proxyUpstreamAdd(sockaddr(9007, [10, 1, 2, 3]), 16, 1);
  assert.is(u, 0);
  core.u8().fill(0, A, A + 16); // the table keeps its own copy
  const p = x.proxyUpstreamAddr(u);
  assert.is(x.proxyUpstreamAddrLen(u), 16);
  assert.equal([...core.get(p + abi.SA_IN_ADDR, 4)], [10, 1, 2, 3]);
  assert.is(core.dv().getUint16(p + abi.SA_PORT, false), 9007);
  for (let i = 1; i < abi.UPSTREAMS_MAX; i++) assert.is(x.proxyUpstreamAdd(sockaddr(10000 + i), 16, 1), i);
  assert.is(x.proxyUpstreamAdd(sockaddr(9999), 16, 1), -1, "table full");
  assert.is(x.proxyUpstreamCount(), abi.UPSTREAMS_MAX);
  assert.is(x.proxyUpstreamAddr(abi.UPSTREAMS_MAX), 0, "out of range");
  assert.not.ok(usable(-1));
});

// ---- round robin, smooth weighted round robin --------------------------------

test("rr cycles in order, weights ignored, skipping unusable and excluded upstreams", () => {
  setup([5, 1, 1]);
  assert.equal(Array.from({ length: 6 }, () => pick(abi.BAL_RR)), [0, 1, 2, 0, 1, 2]);
  for (let i = 0; i < 3; i++) x.proxyUpstreamHealthResult(1, false, 0);
  assert.equal(Array.from({ length: 4 }, () => pick(abi.BAL_RR)), [0, 2, 0, 2]);
  assert.is(pick(abi.BAL_RR, { exclude: 0 }), 2);
  assert.is(pick(abi.BAL_RR, { exclude: 2 }), 0);
});

test("wrr 5:1:1 is nginx's sequence a a b a c a a, repeating", () => {
  setup([5, 1, 1]);
  const seq = Array.from({ length: 14 }, () => "abc"[pick(abi.BAL_WRR)]).join("");
  assert.is(seq, "aabacaa".repeat(2));
});

test("wrr 3:2:1 over 10,000 picks: nginx's order, shares within 1%, no run longer than the weight", () => {
  const weights = [3, 2, 1];
  setup(weights);
  const got = Array.from({ length: 10000 }, () => pick(abi.BAL_WRR));
  assert.equal(got, nginxWrr(weights, 10000));
  const share = weights.map((_, i) => got.filter((u) => u === i).length / got.length);
  weights.forEach((w, i) => assert.ok(Math.abs(share[i] - w / 6) < 0.01, `share of ${i}: ${share[i]}`));
  let run = 1;
  for (let i = 1; i < got.length; i++) {
    run = got[i] === got[i - 1] ? run + 1 : 1;
    assert.ok(run <= weights[got[i]], `run of ${run} x upstream ${got[i]} at pick ${i}`);
  }
});

test("wrr skips an unusable upstream and the excluded one", () => {
  setup([3, 2, 1]);
  for (let i = 0; i < 3; i++) x.proxyUpstreamHealthResult(0, false, 0);
  const s = shares(abi.BAL_WRR, 3, 3000);
  assert.is(s[0], 0);
  assert.ok(Math.abs(s[1] - 2 / 3) < 0.01);
  for (let i = 0; i < 100; i++) assert.is(pick(abi.BAL_WRR, { exclude: 1 }), 2);
});

// ---- least-conn ---------------------------------------------------------------

test("least-conn: the upstream with more active requests gets nothing until the others catch up", () => {
  setup([1, 1, 1]);
  for (let i = 0; i < 4; i++) x.proxyUpstreamRequestStart(0);
  const got = [];
  for (let i = 0; i < 8; i++) { const u = pick(abi.BAL_LEAST_CONN); got.push(u); x.proxyUpstreamRequestStart(u); }
  assert.ok(got.every((u) => u !== 0), `picks: ${got}`);
  assert.equal(got.filter((u) => u === 1).length, 4, "1 and 2 take turns");
  // Now all hold 4: a tie, broken round robin.
  const next = [];
  for (let i = 0; i < 3; i++) { const u = pick(abi.BAL_LEAST_CONN); next.push(u); x.proxyUpstreamRequestStart(u); }
  assert.equal([...next].sort(), [0, 1, 2]);
  // Requests ending make that upstream the least loaded.
  x.proxyUpstreamRequestEnd(2, 200, 1); x.proxyUpstreamRequestEnd(2, 200, 1);
  assert.is(pick(abi.BAL_LEAST_CONN), 2);
});

test("least-conn is weighted: active requests settle in proportion to weight 3:1", () => {
  setup([3, 1]);
  for (let i = 0; i < 400; i++) x.proxyUpstreamRequestStart(pick(abi.BAL_LEAST_CONN));
  assert.is(x.proxyStatsWrite(x.proxyStatsBuffer(), 2 * abi.UPSTAT_SIZE), 2);
  const a = stat(0, abi.UPSTAT_ACTIVE_REQS, false), b = stat(1, abi.UPSTAT_ACTIVE_REQS, false);
  assert.is(a + b, 400);
  assert.ok(Math.abs(a - 300) <= 3, `active ${a}:${b}`);
  // Idle, ties go by smooth wrr, so weights still shape the picks.
  setup([3, 1]);
  const s = shares(abi.BAL_LEAST_CONN, 2, 4000);
  assert.ok(Math.abs(s[0] - 0.75) < 0.01, `idle shares ${s}`);
});

// ---- p2c ------------------------------------------------------------------------

test("p2c never picks the clearly busier upstream, and spreads evenly when loads are equal", () => {
  setup([1, 1, 1]);
  for (let i = 0; i < 10; i++) x.proxyUpstreamRequestStart(1);
  const s = shares(abi.BAL_P2C, 3, 3000);
  assert.is(s[1], 0, "the busy one is never the less loaded of a pair");
  assert.ok(Math.abs(s[0] - 0.5) < 0.04, `${s}`);
  setup([1, 1, 1, 1]);
  const even = shares(abi.BAL_P2C, 4, 10000);
  even.forEach((v, i) => assert.ok(Math.abs(v - 0.25) < 0.02, `share of ${i}: ${v}`));
  // Two upstreams: always the less loaded one.
  setup([1, 1]);
  x.proxyUpstreamRequestStart(0);
  for (let i = 0; i < 50; i++) assert.is(pick(abi.BAL_P2C), 1);
  assert.is(pick(abi.BAL_P2C, { exclude: 1 }), 0);
});

test("p2c under load keeps active requests closer together than random choice does", () => {
  // 50 requests in flight over 5 upstreams; each step one random in-flight
  // request ends and a new one is placed. The mean spread (most - least
  // loaded) under p2c is compared with the same process placing uniformly
  // at random: two choices should at least halve it.
  function meanSpread(place) {
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const active = [0, 0, 0, 0, 0], flight = [];
    let sum = 0;
    for (let i = 0; i < 5000; i++) {
      const u = place(rnd); x.proxyUpstreamRequestStart(u); active[u]++; flight.push(u);
      if (flight.length > 50) {
        const k = Math.floor(rnd() * flight.length), v = flight[k];
        flight[k] = flight[flight.length - 1]; flight.pop();
        x.proxyUpstreamRequestEnd(v, 200, 1); active[v]--;
      }
      if (i >= 100) sum += Math.max(...active) - Math.min(...active);
    }
    return sum / 4900;
  }
  setup([1, 1, 1, 1, 1]);
  const p2c = meanSpread(() => pick(abi.BAL_P2C));
  setup([1, 1, 1, 1, 1]);
  const random = meanSpread((rnd) => Math.floor(rnd() * 5));
  assert.ok(p2c < random / 2, `mean spread: p2c ${p2c.toFixed(2)}, random ${random.toFixed(2)}`);
});

// ---- hashing --------------------------------------------------------------------

const keyHash = (s) => { const n = core.put(A + 64, s); return x.proxyHashBytes(A + 64, n) >>> 0; };

test("ip-hash is sticky: the same client address always goes to the same upstream", () => {
  setup([1, 1, 1]);
  const clients = Array.from({ length: 50 }, (_, i) => { core.u8().set([127, 0, 0, 2 + i], A + 64); return x.proxyHashBytes(A + 64, 4) >>> 0; });
  const first = clients.map((h) => pick(abi.BAL_IP_HASH, { hash: h }));
  for (let round = 0; round < 5; round++) {
    pick(abi.BAL_WRR); // other picks in between change nothing
    assert.equal(clients.map((h) => pick(abi.BAL_IP_HASH, { hash: h })), first);
  }
  assert.is(new Set(first).size, 3, "50 clients reach all three upstreams");
});

test("ip-hash's key is the client address without the port; ::ffff:a.b.c.d hashes as a.b.c.d", () => {
  const v4 = (ip, port) => { sockaddr(port, ip, A + 128); return x.proxyHashClientAddr(A + 128) >>> 0; };
  const base = v4([127, 0, 0, 2], 40000);
  assert.is(v4([127, 0, 0, 2], 40001), base, "port ignored");
  assert.is.not(v4([127, 0, 0, 3], 40000), base);
  assert.is.not(v4([127, 0, 1, 2], 40000), base, "the whole address, not nginx's /24");
  core.put(A + 64, Buffer.from([127, 0, 0, 2]));
  assert.is(base, x.proxyHashBytes(A + 64, 4) >>> 0, "hashBytes of the 4 address bytes");
  const v6 = (bytes, port) => {
    const at = A + 128, dv = core.dv();
    core.u8().fill(0, at, at + 32);
    dv.setUint16(at + abi.SA_FAMILY, abi.AF_INET6, true);
    dv.setUint16(at + abi.SA_PORT, port, false);
    core.u8().set(bytes, at + abi.SA_IN6_ADDR);
    return x.proxyHashClientAddr(at) >>> 0;
  };
  assert.is(v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2], 5), base, "v4-mapped");
  const loop6 = v6([...new Array(15).fill(0), 1], 5);
  assert.is(v6([...new Array(15).fill(0), 1], 6), loop6);
  assert.is.not(loop6, base);
});

test("consistent hash: one of 5 leaving moves only its own keys (~1/5), and they come back with it", () => {
  setup([1, 1, 1, 1, 1]);
  const keys = Array.from({ length: 10000 }, (_, i) => keyHash(`user-${i}`));
  const before = keys.map((h) => pick(abi.BAL_HASH, { hash: h }));
  const on2 = before.filter((u) => u === 2).length;
  // Bound: Maglev gives each of 5 equal upstreams 1/5 of the table (+-1
  // entry), and 10,000 random keys stray by ~sqrt(10000 x 0.2 x 0.8) = 40 from
  // that: 2000 +- 200 is five standard deviations.
  assert.ok(Math.abs(on2 - 2000) < 200, `keys on 2: ${on2}`);
  for (let i = 0; i < 3; i++) x.proxyUpstreamHealthResult(2, false, 0);
  const during = keys.map((h) => pick(abi.BAL_HASH, { hash: h }));
  let moved = 0;
  for (let i = 0; i < keys.length; i++) {
    if (before[i] !== 2) assert.is(during[i], before[i], `key ${i} moved off a healthy upstream`);
    else { assert.is.not(during[i], 2); moved++; }
  }
  assert.is(moved, on2);
  // Its keys spread over the other four, not onto one neighbour.
  const spread = [0, 1, 3, 4].map((u) => during.filter((v, i) => before[i] === 2 && v === u).length / moved);
  spread.forEach((s) => assert.ok(s > 0.15 && s < 0.35, `spread ${spread}`));
  for (let i = 0; i < 2; i++) x.proxyUpstreamHealthResult(2, true, 0);
  assert.equal(keys.map((h) => pick(abi.BAL_HASH, { hash: h })), before, "restored");
  // exclude: the key goes to the next usable entry, never to the excluded one.
  keys.slice(0, 200).forEach((h, i) => assert.is.not(pick(abi.BAL_HASH, { hash: h, exclude: before[i] }), before[i]));
});

test("consistent hash respects weights (1:1:2 -> 25/25/50% of keys) and the table size rule", () => {
  setup([1, 1, 2]);
  const m = x.debugProxyMaglevSize();
  assert.ok(m >= 100 * 4 && m <= 65537, `table ${m}`);
  const keys = Array.from({ length: 10000 }, (_, i) => keyHash(`k${i}`));
  const c = [0, 0, 0];
  for (const h of keys) c[pick(abi.BAL_HASH, { hash: h })]++;
  [0.25, 0.25, 0.5].forEach((want, i) => assert.ok(Math.abs(c[i] / 10000 - want) < 0.03, `shares ${c}`));
  // The table itself: entries in proportion to weight, within 1%.
  const e = [0, 0, 0];
  for (let i = 0; i < m; i++) e[x.debugProxyMaglevEntry(i)]++;
  [0.25, 0.25, 0.5].forEach((want, i) => assert.ok(Math.abs(e[i] / m - want) < 0.01, `entries ${e}`));
  setup(new Array(256).fill(1));
  assert.ok(x.debugProxyMaglevSize() >= 25600, "256 upstreams: >= 100 entries each");
  // Weights beyond what 65537 entries resolve: the table stops there, and
  // even the lightest upstream keeps entries (so it gets keys).
  setup([1, 10000]);
  const big = x.debugProxyMaglevSize();
  assert.is(big, 65537);
  let light = 0;
  for (let i = 0; i < big; i++) if (x.debugProxyMaglevEntry(i) === 0) light++;
  assert.ok(light >= 1 && light <= 10, `light upstream's entries: ${light}`);
});

test("hash: nothing usable gives -1, not a loop", () => {
  setup([1, 1]);
  for (const u of [0, 1]) for (let i = 0; i < 3; i++) x.proxyUpstreamHealthResult(u, false, 0);
  assert.is(pick(abi.BAL_HASH, { hash: 12345 }), -1);
  setup([1]);
  assert.is(pick(abi.BAL_HASH, { hash: 1, exclude: 0 }), -1);
  setup([]);
  assert.is(pick(abi.BAL_IP_HASH, { hash: 1 }), -1);
});

// ---- random ---------------------------------------------------------------------

test("random: weighted shares within 2% over 10,000 picks, the same sequence for the same seed", () => {
  setup([3, 1, 1], { BCFG_SEED: 1234 });
  const a = Array.from({ length: 10000 }, () => pick(abi.BAL_RANDOM));
  [0.6, 0.2, 0.2].forEach((want, i) => {
    const s = a.filter((u) => u === i).length / a.length;
    assert.ok(Math.abs(s - want) < 0.02, `share of ${i}: ${s}`);
  });
  setup([3, 1, 1], { BCFG_SEED: 1234 });
  assert.equal(Array.from({ length: 10000 }, () => pick(abi.BAL_RANDOM)), a, "replays");
  setup([3, 1, 1], { BCFG_SEED: 99 });
  assert.not.equal(Array.from({ length: 100 }, () => pick(abi.BAL_RANDOM)), a.slice(0, 100));
});

test("every policy: -1 when nothing is usable, never the excluded upstream", () => {
  const policies = [abi.BAL_RR, abi.BAL_WRR, abi.BAL_LEAST_CONN, abi.BAL_P2C, abi.BAL_IP_HASH, abi.BAL_HASH, abi.BAL_RANDOM];
  for (const p of policies) {
    setup([2, 1, 1]);
    for (let i = 0; i < 300; i++) assert.is.not(pick(p, { hash: i * 2654435761, exclude: 1 }), 1, `policy ${p}`);
    for (let i = 0; i < 3; i++) { x.proxyUpstreamHealthResult(0, false, 0); x.proxyUpstreamHealthResult(2, false, 0); }
    assert.is(pick(p, { hash: 5, exclude: 1 }), -1, `policy ${p}: only the excluded one is usable`);
    assert.is(pick(p, { hash: 5 }), 1, `policy ${p}: the one usable`);
  }
  assert.is(pick(99), -1, "unknown policy");
});

// ---- passive health: ejection -----------------------------------------------------

test("ejection after 3 consecutive failures, back after 10 s, growing backoff, capped", () => {
  setup([1, 1], { BCFG_EJECT_MAX: 25000 });
  ejectByFailures(0, 1000, 2);
  x.proxyUpstreamSuccess(0, 1000); // resets the count
  ejectByFailures(0, 1000, 2);
  assert.ok(usable(0, 1000), "4 failures, never 3 in a row");
  x.proxyUpstreamFailure(0, 1000);
  assert.not.ok(usable(0, 1000), "ejected");
  assert.is(stat(0, abi.UPSTAT_STATE, false), abi.UPSTATE_EJECTED);
  assert.is(stat(0, abi.UPSTAT_EJECT_UNTIL), 11000);
  for (let i = 0; i < 50; i++) assert.is(pick(abi.BAL_WRR, { now: 5000 }), 1);
  assert.not.ok(usable(0, 10999));
  assert.ok(usable(0, 11000), "back after base x 1");
  assert.is(stat(0, abi.UPSTAT_STATE, false), abi.UPSTATE_UP);
  // Again at once: twice as long, then the cap (25 s, not 30).
  ejectByFailures(0, 11000);
  assert.not.ok(usable(0, 30999));
  assert.ok(usable(0, 31000), "base x 2");
  ejectByFailures(0, 31000);
  assert.not.ok(usable(0, 55999));
  assert.ok(usable(0, 56000), "capped at 25 s");
  assert.is(stat(0, abi.UPSTAT_EJECTIONS, false), 3);
  assert.is(stat(0, abi.UPSTAT_TRANSITIONS, false), 6);
  assert.is(stat(0, abi.UPSTAT_FAILURES), 11);
  // Usable for 20 s (two base periods) since it came back: the level decays
  // from 3 by 2 to 1, and this ejection is level 2: 20 s.
  ejectByFailures(0, 76000);
  assert.not.ok(usable(0, 95999));
  assert.ok(usable(0, 96000), "decayed");
});

test("ejection: a failure while ejected only counts; the last usable upstream is never ejected", () => {
  setup([1, 1]);
  ejectByFailures(0, 0);
  ejectByFailures(0, 100, 5);
  assert.ok(usable(0, 10000), "late failures did not extend it");
  ejectByFailures(0, 10000);
  ejectByFailures(1, 10000, 10);
  assert.ok(usable(1, 10000), "the last usable one stays in");
  assert.is(stat(1, abi.UPSTAT_EJECTIONS, false), 0);
  assert.ok(usable(0, 30000));
  x.proxyUpstreamFailure(1, 30000);
  assert.not.ok(usable(1, 30000), "ejected at the next failure once another is usable");
  setup([1, 1], { BCFG_MAX_FAILS: -1 });
  ejectByFailures(0, 0, 100);
  assert.ok(usable(0, 0), "max fails < 0: never eject");
  setup([1, 1], { BCFG_MAX_FAILS: 1, BCFG_EJECT_BASE: 500 });
  x.proxyUpstreamFailure(0, 0);
  assert.not.ok(usable(0, 499));
  assert.ok(usable(0, 500));
});

test("the candidate list follows time and state: an ejection's end, a health change, with only picks between", () => {
  setup([1, 1, 1]);
  ejectByFailures(0, 1000); // until 11000
  for (let i = 0; i < 30; i++) assert.is.not(pick(abi.BAL_WRR, { now: 5000 }), 0);
  assert.ok(shares(abi.BAL_WRR, 3, 300, { now: 11000 })[0] > 0.3, "back at 11000 with no other call in between");
  for (let i = 0; i < 3; i++) x.proxyUpstreamHealthResult(2, false, 12000);
  for (const p of [abi.BAL_WRR, abi.BAL_LEAST_CONN, abi.BAL_P2C, abi.BAL_RANDOM]) {
    assert.is(shares(p, 3, 300, { now: 12000 })[2], 0, `policy ${p}: down`);
  }
  for (let i = 0; i < 2; i++) x.proxyUpstreamHealthResult(2, true, 12000);
  for (const p of [abi.BAL_WRR, abi.BAL_LEAST_CONN, abi.BAL_P2C, abi.BAL_RANDOM]) {
    assert.ok(shares(p, 3, 300, { now: 12000 })[2] > 0.2, `policy ${p}: up again`);
  }
});

test("model check: 20,000 random failures, successes, health results and picks against a JS model of the health rules", () => {
  const N = 5, BASE = 10000, CAP = 300000, MAXF = 3, RISE = 2, FALL = 3;
  setup(new Array(N).fill(0).map((_, i) => 1 + i));
  const m = Array.from({ length: N }, () => ({ down: false, good: 0, bad: 0, consec: 0, ejected: false, until: 0, level: 0, returned: 0 }));
  const mUsable = (u, now) => {
    const s = m[u];
    if (s.down) return false;
    if (!s.ejected) return true;
    if (now < s.until) return false;
    s.ejected = false; s.returned = s.until; s.consec = 0;
    return true;
  };
  const mFailure = (u, now) => {
    if (!mUsable(u, now)) return;
    const s = m[u];
    if (++s.consec < MAXF) return;
    let others = false;
    for (let i = 0; i < N; i++) if (i !== u && mUsable(i, now)) others = true;
    if (!others) return;
    if (s.level > 0) s.level = Math.max(0, s.level - Math.floor((now - s.returned) / BASE));
    s.level++;
    s.ejected = true; s.until = now + Math.min(BASE * s.level, CAP); s.consec = 0;
  };
  const mHealth = (u, ok) => {
    const s = m[u];
    if (ok) { s.bad = 0; if (++s.good >= RISE && s.down) { s.down = false; s.consec = 0; } }
    else { s.good = 0; if (++s.bad >= FALL && !s.down) s.down = true; }
  };
  let seed = 99;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const policies = [abi.BAL_RR, abi.BAL_WRR, abi.BAL_LEAST_CONN, abi.BAL_P2C, abi.BAL_IP_HASH, abi.BAL_HASH, abi.BAL_RANDOM];
  let now = 0, picked = 0, none = 0;
  for (let step = 0; step < 20000; step++) {
    now += Math.floor(rnd() * 4) * 700;
    const u = Math.floor(rnd() * N), r = rnd();
    if (r < 0.35) { x.proxyUpstreamFailure(u, now); mFailure(u, now); }
    else if (r < 0.45) { x.proxyUpstreamSuccess(u, now); m[u].consec = 0; }
    else if (r < 0.55) { const ok = rnd() < 0.5; x.proxyUpstreamHealthResult(u, ok, now); mHealth(u, ok); }
    else {
      const p = policies[Math.floor(rnd() * policies.length)], ex = rnd() < 0.3 ? u : -1;
      const got = pick(p, { hash: Math.floor(rnd() * 2 ** 32), exclude: ex, now });
      const ok = [...Array(N).keys()].filter((v) => v !== ex && mUsable(v, now));
      if (ok.length === 0) { assert.is(got, -1, `step ${step}: none usable`); none++; }
      else { assert.ok(ok.includes(got), `step ${step}, policy ${p}: picked ${got}, usable ${ok}`); picked++; }
      if (r > 0.97) x.proxyUpstreamRequestStart(Math.max(got, 0));
    }
    // Now and then, every upstream's state; not every step, so that picks
    // alone must notice an ejection's end (the candidate list's time bound).
    if (step % 50 === 0) for (let v = 0; v < N; v++) assert.is(usable(v, now), mUsable(v, now), `step ${step}: upstream ${v}`);
  }
  assert.ok(picked > 1000 && none > 10, `both outcomes exercised: ${picked} picks, ${none} with none usable`);
});

// ---- slow start ---------------------------------------------------------------------

test("slow start: an upstream back from ejection ramps from 10% to 100% of its weight", () => {
  const S = 10000;
  setup([1, 1], { BCFG_SLOW_START: S });
  assert.is(x.proxyUpstreamEffWeight(0, 0), 1000, "no slow start at startup");
  ejectByFailures(0, 0); // back at 10000
  const back = 10000;
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const now = back + t * S;
    const ramp = t >= 1 ? 1 : 0.1 + 0.9 * t; // the definition
    const want = ramp / (1 + ramp);
    const s = shares(abi.BAL_WRR, 2, 2000, { now });
    assert.ok(Math.abs(s[0] - want) < 0.01, `at ${t}: share ${s[0]}, want ${want}`);
  }
  // The same ramp after an active-check down/up.
  for (let i = 0; i < 3; i++) x.proxyUpstreamHealthResult(1, false, 50000);
  for (let i = 0; i < 2; i++) x.proxyUpstreamHealthResult(1, true, 60000);
  assert.is(x.proxyUpstreamEffWeight(1, 60000), 100);
  assert.is(x.proxyUpstreamEffWeight(1, 65000), 550);
  assert.is(x.proxyUpstreamEffWeight(1, 70000), 1000);
  // The stats record shows the ramp at the loop time (CTL_NOW).
  assert.is(stat(1, abi.UPSTAT_RAMP, false, 65000), 550);
});

// ---- active health: rise / fall ---------------------------------------------------

test("active health: down after 3 bad results in a row, up after 2 good ones", () => {
  setup([1, 1]);
  const h = (ok) => x.proxyUpstreamHealthResult(0, ok, 0);
  h(false); h(false); h(true); h(false); h(false);
  assert.ok(usable(0), "never 3 bad in a row");
  h(false);
  assert.not.ok(usable(0), "fall 3");
  assert.is(stat(0, abi.UPSTAT_STATE, false), abi.UPSTATE_DOWN);
  h(true); h(false); h(true);
  assert.not.ok(usable(0), "never 2 good in a row");
  h(true);
  assert.ok(usable(0), "rise 2");
  assert.is(stat(0, abi.UPSTAT_TRANSITIONS, false), 2);
  h(false); h(false); h(false); h(false); h(false);
  assert.is(stat(0, abi.UPSTAT_TRANSITIONS, false), 3, "one change, however many results confirm it");
  setup([1, 1], { BCFG_RISE: 1, BCFG_FALL: 1 });
  x.proxyUpstreamHealthResult(0, false, 0);
  assert.not.ok(usable(0));
  x.proxyUpstreamHealthResult(0, true, 0);
  assert.ok(usable(0));
});

// ---- stats record -----------------------------------------------------------------

test("stats record: counters, status classes and latency buckets read through abi.ts offsets", () => {
  setup([4, 1]);
  const u = 0;
  for (let i = 0; i < 3; i++) x.proxyUpstreamConnOpened(u);
  x.proxyUpstreamConnClosed(u);
  const reqs = [[200, 0.5], [204, 1], [404, 3], [503, 20000], [101, 7], [0, 99], [0, 1], [299, 2.5], [302, 10001]];
  for (const [status, ms] of reqs) { x.proxyUpstreamRequestStart(u); x.proxyUpstreamRequestEnd(u, status, ms); }
  x.proxyUpstreamRequestStart(u);
  x.proxyUpstreamBytes(u, 100, 2000); x.proxyUpstreamBytes(u, 5, 0);
  x.proxyUpstreamRetried(u);
  x.proxyUpstreamFailure(u, 0);
  const buf = x.proxyStatsBuffer();
  assert.is(x.proxyStatsWrite(buf, abi.UPSTAT_SIZE * 2 - 1), 1, "cap is in bytes: one record fits");
  assert.is(x.proxyStatsWrite(buf, abi.UPSTAT_SIZE * abi.UPSTREAMS_MAX), 2);
  const dv = core.dv();
  const i32 = (off) => dv.getInt32(buf + off, true), f64 = (off) => dv.getFloat64(buf + off, true);
  assert.is(i32(abi.UPSTAT_STATE), abi.UPSTATE_UP);
  assert.is(i32(abi.UPSTAT_WEIGHT), 4);
  assert.is(i32(abi.UPSTAT_RAMP), 1000);
  assert.is(i32(abi.UPSTAT_ACTIVE_CONNS), 2);
  assert.is(i32(abi.UPSTAT_ACTIVE_REQS), 1);
  assert.is(i32(abi.UPSTAT_CONSEC_FAILS), 1);
  assert.is(f64(abi.UPSTAT_CONNS), 3);
  assert.is(f64(abi.UPSTAT_REQUESTS), reqs.length);
  assert.is(f64(abi.UPSTAT_FAILURES), 1);
  assert.is(f64(abi.UPSTAT_RETRIES), 1);
  assert.is(f64(abi.UPSTAT_BYTES_TO), 105);
  assert.is(f64(abi.UPSTAT_BYTES_FROM), 2000);
  const responded = reqs.filter(([s]) => s > 0);
  assert.is(f64(abi.UPSTAT_LATENCY_SUM), responded.reduce((a, [, ms]) => a + ms, 0));
  const classes = [0, 0, 0, 0, 0, 0];
  for (const [s] of reqs) classes[Math.floor(s / 100)]++;
  assert.equal(Array.from({ length: abi.UPSTAT_STATUS_CLASSES }, (_, k) => f64(abi.UPSTAT_STATUS + 8 * k)), classes);
  // Buckets le= 1 2.5 5 10 25 50 100 250 500 1000 2500 5000 10000 +Inf, not cumulative.
  const LE = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, Infinity];
  assert.is(LE.length, abi.UPSTAT_BUCKETS);
  assert.is(abi.UPSTAT_LATENCY + 8 * abi.UPSTAT_BUCKETS, abi.UPSTAT_SIZE, "the histogram ends the record");
  const buckets = LE.map(() => 0);
  for (const [, ms] of responded) buckets[LE.findIndex((le) => ms <= le)]++;
  assert.equal(Array.from({ length: abi.UPSTAT_BUCKETS }, (_, k) => f64(abi.UPSTAT_LATENCY + 8 * k)), buckets);
  // The second record is the second upstream's.
  assert.is(dv.getInt32(buf + abi.UPSTAT_SIZE + abi.UPSTAT_WEIGHT, true), 1);
  assert.is(dv.getFloat64(buf + abi.UPSTAT_SIZE + abi.UPSTAT_REQUESTS, true), 0);
  // Gauges never go below zero on unmatched ends.
  x.proxyUpstreamConnClosed(1); x.proxyUpstreamRequestEnd(1, 200, 1);
  assert.is(stat(1, abi.UPSTAT_ACTIVE_CONNS, false), 0);
  assert.is(stat(1, abi.UPSTAT_ACTIVE_REQS, false), 0);
});

test("the BCFG record sets the policy (wrr when unset or unknown)", () => {
  setup([1]);
  assert.is(x.balancePolicy(), abi.BAL_WRR);
  setup([1], { BCFG_POLICY: abi.BAL_P2C });
  assert.is(x.balancePolicy(), abi.BAL_P2C);
  setup([1], { BCFG_POLICY: 42 });
  assert.is(x.balancePolicy(), abi.BAL_WRR);
});

// ---- logging --------------------------------------------------------------------

test("each state change is logged once (OP_LOG), with the upstream's address", () => {
  // A second core, initialised, so log lines reach its submission queue.
  const c2 = loadCore(), y = c2.x;
  const ctl = y.ctlAddress();
  c2.dv().setInt32(ctl + abi.CFG_MAX_FDS, 64, true);
  c2.dv().setInt32(ctl + abi.CFG_MAX_EVENTS, 16, true);
  y.init();
  const B = y.arena(), dv = () => c2.dv();
  dv().setUint16(B + abi.SA_FAMILY, abi.AF_INET, true);
  dv().setUint16(B + abi.SA_PORT, 9001, false);
  c2.u8().set([127, 0, 0, 1], B + abi.SA_IN_ADDR);
  y.proxyUpstreamAdd(B, 16, 1);
  c2.u8().fill(0, B, B + 28);
  dv().setUint16(B + abi.SA_FAMILY, abi.AF_INET6, true);
  dv().setUint16(B + abi.SA_PORT, 443, false);
  c2.u8().set([0x20, 0x01, 0x0d, 0xb8], B + abi.SA_IN6_ADDR);
  c2.u8()[B + abi.SA_IN6_ADDR + 15] = 1;
  y.proxyUpstreamAdd(B, 28, 1);
  y.balanceInit();
  for (let i = 0; i < 6; i++) y.proxyUpstreamFailure(0, 0);
  y.proxyUpstreamUsable(0, 10000); y.proxyUpstreamUsable(0, 10001);
  for (let i = 0; i < 4; i++) y.proxyUpstreamFailure(1, 10001); // the other one is usable: ejected
  for (let i = 0; i < 5; i++) y.proxyUpstreamHealthResult(0, false, 10002); // the last usable one: down all the same
  const lines = [];
  const sq = dv().getInt32(ctl + abi.CTL_SQ, true);
  for (let k = 0; ; k++) {
    const e = sq + k * abi.SQE_SIZE;
    if (c2.u8()[e + abi.SQE_OPCODE] !== abi.OP_LOG) break;
    lines.push(c2.str(Number(dv().getBigUint64(e + abi.SQE_ADDR, true)), dv().getUint32(e + abi.SQE_LEN, true)));
  }
  assert.equal(lines, [
    "upstream 0 (127.0.0.1:9001) ejected for 10000 ms after 3 consecutive failures",
    "upstream 0 (127.0.0.1:9001) back after ejection",
    "upstream 1 ([2001:db8:0:0:0:0:0:1]:443) ejected for 10000 ms after 3 consecutive failures",
    "upstream 0 (127.0.0.1:9001) down: 3 health checks failed",
  ]);
});

test.run();
