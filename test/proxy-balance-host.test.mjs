// The host side of the upstream table (host/balance.ts): policy names, the
// BCFG config record it writes, the UPSTAT stats records it decodes. Against
// the bare core (test/lib/core.mjs): no sockets.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";
import { abi, BALANCE_POLICIES, parseBalancePolicy, writeBalanceConfig, readUpstreamStats } from "../dist/index.js";

const core = loadCore();
const x = core.x;
const A = x.arena();

function add(port, weight) {
  const dv = core.dv();
  core.u8().fill(0, A, A + 16);
  dv.setUint16(A + abi.SA_FAMILY, abi.AF_INET, true);
  dv.setUint16(A + abi.SA_PORT, port, false);
  core.u8().set([127, 0, 0, 1], A + abi.SA_IN_ADDR);
  return x.proxyUpstreamAdd(A, 16, weight);
}

test("policy names are the CLI's, each a distinct BAL_* id; an unknown one is a one-line error naming them", () => {
  assert.equal(Object.keys(BALANCE_POLICIES), ["rr", "wrr", "least-conn", "p2c", "ip-hash", "hash", "random"]);
  assert.is(parseBalancePolicy("least-conn"), abi.BAL_LEAST_CONN);
  assert.is(new Set(Object.values(BALANCE_POLICIES)).size, 7);
  assert.throws(() => parseBalancePolicy("leastconn"), /unknown balancing policy "leastconn" \(one of: rr, wrr, least-conn, p2c, ip-hash, hash, random\)/);
});

test("writeBalanceConfig: the core applies what it wrote (policy, max fails, backoff, never-eject, bad values refused)", () => {
  x.proxyUpstreamsReset();
  add(9001, 1); add(9002, 1);
  writeBalanceConfig(x.memory, x.balanceConfig(), { policy: "p2c", maxFails: 2, ejectBaseMs: 1000 });
  x.balanceInit();
  assert.is(x.balancePolicy(), abi.BAL_P2C);
  x.proxyUpstreamFailure(0, 0); x.proxyUpstreamFailure(0, 0);
  assert.is(x.proxyUpstreamUsable(0, 999), 0, "ejected after 2, for 1 s");
  assert.is(x.proxyUpstreamUsable(0, 1000), 1);
  writeBalanceConfig(x.memory, x.balanceConfig(), { maxFails: 0 });
  x.balanceInit();
  for (let i = 0; i < 10; i++) x.proxyUpstreamFailure(1, 5000);
  assert.is(x.proxyUpstreamUsable(1, 5000), 1, "maxFails 0: never eject (nginx's max_fails=0)");
  assert.is(x.balancePolicy(), abi.BAL_WRR, "the default policy");
  assert.throws(() => writeBalanceConfig(x.memory, x.balanceConfig(), { rise: 0 }), /rise must be an integer from 1/);
  assert.throws(() => writeBalanceConfig(x.memory, x.balanceConfig(), { policy: "fastest" }), /unknown balancing policy/);
});

test("readUpstreamStats decodes every record by the abi.ts offsets, latency cumulative as Prometheus wants", () => {
  x.proxyUpstreamsReset();
  writeBalanceConfig(x.memory, x.balanceConfig(), {});
  x.balanceInit();
  add(9001, 3); add(9002, 1);
  x.proxyUpstreamConnOpened(0); x.proxyUpstreamConnOpened(0); x.proxyUpstreamConnClosed(0);
  for (const [s, ms] of [[200, 0.4], [200, 30], [502, 3000], [0, 5]]) { x.proxyUpstreamRequestStart(0); x.proxyUpstreamRequestEnd(0, s, ms); }
  x.proxyUpstreamBytes(0, 10, 20);
  for (let i = 0; i < 3; i++) x.proxyUpstreamHealthResult(1, false, 0);
  const st = readUpstreamStats(x);
  assert.is(st.length, 2);
  const [a, b] = st;
  assert.is(a.state, "up"); assert.is(b.state, "down");
  assert.is(a.weight, 3); assert.is(a.ramp, 1);
  assert.is(a.activeConns, 1); assert.is(a.conns, 2);
  assert.is(a.requests, 4);
  assert.equal(a.status, [1, 0, 2, 0, 0, 1]);
  assert.is(a.bytesToUpstream, 10); assert.is(a.bytesFromUpstream, 20);
  assert.is(b.transitions, 1);
  assert.is(a.latency.length, abi.UPSTAT_BUCKETS);
  assert.equal(a.latency.map((l) => l.le), [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, Infinity]);
  const count = (le) => a.latency.find((l) => l.le === le).count;
  assert.is(count(1), 1); assert.is(count(25), 1); assert.is(count(50), 2); assert.is(count(2500), 2); assert.is(count(5000), 3);
  assert.is(count(Infinity), 3, "+Inf: every response (the no-response request is not in it)");
});

test.run();
