// Micro-benchmark of balancePick (assembly/proxy/balance.ts) per policy, at 3
// and at 256 upstreams (UPSTREAMS_MAX), called from JS in a loop, so every
// figure includes the JS -> wasm call (the "empty call" row). Also the time to
// build the Maglev table (ip-hash, hash), paid once after the upstream set
// changes.
//
//   node bench/balance.mjs            (uses build/core.wasm, or $CORE_WASM)
//   node bench/balance.mjs --smoke    (one short run per cell: checks that it
//                                      runs; the figures mean nothing)
//
// Each cell is the median of RUNS runs of OPS picks, after one warm-up run.
// Loads (active requests) are spread 0..7 over the upstreams so least-conn and
// p2c compare real numbers; keys for the hash policies come from a fixed seed.
import { loadCore } from "../test/lib/core.mjs";
import { prng } from "../test/lib/prng.mjs";
import abi from "../test/lib/abi.mjs";

const args = process.argv.slice(2);
for (const a of args) if (a !== "--smoke") { console.error(`balance.mjs: unknown argument ${a} (only --smoke)`); process.exit(2); }
const SMOKE = args.includes("--smoke");
const OPS = SMOKE ? 2000 : 1_000_000;
const RUNS = SMOKE ? 1 : 7;
const SIZES = [3, abi.UPSTREAMS_MAX];

const core = loadCore();
const { x } = core;
const A = x.arena();
const rand = prng(2024);
const keys = new Uint32Array(1 << 16).map(() => Math.floor(rand() * 2 ** 32));
const MASK = keys.length - 1;

function setup(n) {
  x.proxyUpstreamsReset();
  for (let i = 0; i < n; i++) {
    const dv = core.dv();
    core.u8().fill(0, A, A + 16);
    dv.setUint16(A + abi.SA_FAMILY, abi.AF_INET, true);
    dv.setUint16(A + abi.SA_PORT, 9000 + i, false);
    core.u8().set([10, 0, i >> 8, i & 255], A + abi.SA_IN_ADDR);
    if (x.proxyUpstreamAdd(A, 16, 1 + (i % 3)) !== i) throw new Error("upstreamAdd");
    for (let k = 0; k < i % 8; k++) x.proxyUpstreamRequestStart(i);
  }
  x.balanceInit();
}

const now = () => process.hrtime.bigint();
const POLICIES = [
  ["rr", abi.BAL_RR], ["wrr", abi.BAL_WRR], ["least-conn", abi.BAL_LEAST_CONN], ["p2c", abi.BAL_P2C],
  ["ip-hash", abi.BAL_IP_HASH], ["hash", abi.BAL_HASH], ["random", abi.BAL_RANDOM],
];

/** ns per pick of policy p (0: the empty call) over OPS picks. */
function perPick(p) {
  let sink = 0;
  const t0 = now();
  if (p === 0) for (let i = 0; i < OPS; i++) sink += x.proxyUpstreamCount();
  else for (let i = 0; i < OPS; i++) sink += x.proxyBalancePick(p, keys[i & MASK], -1, 0);
  const ns = Number(now() - t0) / OPS;
  if (sink < 0) throw new Error(`policy ${p} found nothing usable`);
  return ns;
}

const median = (a) => { const s = [...a].sort((p, q) => p - q); return s[s.length >> 1]; };
const cells = new Map();
for (const n of SIZES) {
  setup(n);
  for (const [name, p] of [["empty call (upstreamCount)", 0], ...POLICIES]) {
    perPick(p); // warm-up: JIT, and the Maglev table for the hash policies
    const runs = Array.from({ length: RUNS }, () => perPick(p));
    cells.set(`${name}/${n}`, median(runs));
  }
}
// Maglev build: the first hash pick after the set changed.
const build = SIZES.map((n) => {
  const runs = Array.from({ length: RUNS }, () => {
    setup(n);
    const t0 = now();
    x.proxyBalancePick(abi.BAL_HASH, 1, -1, 0);
    return Number(now() - t0) / 1e6;
  });
  return median(runs);
});

console.log(`balancePick, ns per pick, median of ${RUNS} runs x ${OPS.toLocaleString("en")} picks (node ${process.version})`);
console.log(`| policy | ${SIZES.map((n) => `${n} upstreams`).join(" | ")} |`);
console.log(`| --- |${SIZES.map(() => " ---: |").join("")}`);
for (const name of ["empty call (upstreamCount)", ...POLICIES.map(([n]) => n)]) {
  console.log(`| ${name} | ${SIZES.map((n) => cells.get(`${name}/${n}`).toFixed(1)).join(" | ")} |`);
}
console.log(`| Maglev table build, ms | ${build.map((ms) => ms.toFixed(2)).join(" | ")} |`);
