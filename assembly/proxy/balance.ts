// Balancing: which upstream the next request (tcp mode: connection) goes to.
// Pure: the table is upstreams.ts's, time comes in as `now`, randomness from
// a PRNG seeded by the host (BCFG_SEED), so a recorded run replays the same
// picks. No allocation: candidates go into static arrays.
//
// Every policy skips unusable upstreams (down, ejected) and `exclude` (the
// upstream a retry leaves; strict: if it is the only usable one the pick is
// -1, and the caller decides whether to go back to it with exclude -1).
// "Load" is active requests: the proxy counts a tcp-mode connection as one
// request (upstreamRequestStart at connect, upstreamRequestEnd(u, 0, ms) at
// its end), and in http mode an idle pooled connection is no load (nginx's
// least_conn counts the same way: a kept-alive connection is not "active").
// Weights are effective weights: weight x slow-start ramp (upstreams.ts).
//
// The usable upstreams and their weights are collected into a candidate list
// that is kept until something changes: a change of state (upstreams.ts
// counts them), the end of an ejection, or a ramp in progress (every pick
// then). So a pick is O(1) for rr, p2c, the hash policies, O(log n) for
// random, and O(n) over the usable upstreams for wrr and least-conn, as
// nginx's are (their state, the current weights and the loads, moves with
// every pick).
import {
  BAL_RR, BAL_WRR, BAL_LEAST_CONN, BAL_P2C, BAL_IP_HASH, BAL_HASH, BAL_RANDOM, UPSTREAMS_MAX, BCFG_SIZE, BCFG_POLICY,
  BCFG_SEED, BCFG_MAX_FAILS, BCFG_EJECT_BASE, BCFG_EJECT_MAX, BCFG_SLOW_START, BCFG_RISE, BCFG_FALL,
  SA_FAMILY, SA_IN_ADDR, SA_IN6_ADDR, AF_INET, AF_INET6, ACCEPT_ADDR_SIZE,
} from "../abi";
import {
  upstreamCount, upstreamUsable, upstreamEffWeight, upstreamActiveRequests, upstreamsConfigure, upstreamsVersion,
  upstreamsStateVersion, upstreamNextChange,
} from "./upstreams";
import { hashSeeded, maglevPick } from "./maglev";

// The config record (abi.ts BCFG_*), static so the host can write it before init.
const config: usize = memory.data(BCFG_SIZE, 16);
export function balanceConfig(): usize { return config; }

let policy: i32 = BAL_WRR;
let rng: u32 = 0;
let rrNext: i32 = 0;

const cand: usize = memory.data(UPSTREAMS_MAX * 4, 16);   // i32 upstream, in index order
const candW: usize = memory.data(UPSTREAMS_MAX * 4, 16);  // i32 effective weight (<= 10^7)
const candCum: usize = memory.data(UPSTREAMS_MAX * 8, 16); // i64 weights of cand[0..i], inclusive
const candPos: usize = memory.data(UPSTREAMS_MAX * 4, 16); // i32 upstream -> its index in cand, -1: none
const cw: usize = memory.data(UPSTREAMS_MAX * 8, 16);     // i64 smooth-wrr current weight per upstream
let candK: i32 = 0;
let candTotal: i64 = 0;
let candState: i32 = -1;    // upstreamsStateVersion() it was collected at
let candTable: i32 = -1;    // upstreamsVersion() the current weights belong to
let candNow: f64 = NaN;     // the loop time it was collected at
let candUntil: f64 = -Infinity; // valid for now in [candNow, candUntil)

/** Reads the config record: policy, seed, health settings. Resets the cursors and the PRNG. */
export function balanceInit(): void {
  const p = load<i32>(config + BCFG_POLICY);
  policy = p >= BAL_RR && p <= BAL_RANDOM ? p : BAL_WRR;
  balanceSeed(load<u32>(config + BCFG_SEED));
  upstreamsConfigure(load<i32>(config + BCFG_MAX_FAILS), load<i32>(config + BCFG_EJECT_BASE),
    load<i32>(config + BCFG_EJECT_MAX), load<i32>(config + BCFG_SLOW_START), load<i32>(config + BCFG_RISE),
    load<i32>(config + BCFG_FALL));
  rrNext = 0;
  memory.fill(cw, 0, <usize>(UPSTREAMS_MAX * 8));
  candState = -1;
}

/** The configured policy (BCFG_POLICY, BAL_WRR when unset or unknown). */
export function balancePolicy(): i32 { return policy; }

export function balanceSeed(seed: u32): void { rng = seed != 0 ? seed : 0x2545f491; }

/** The hash used for keys and client addresses. */
export function hashBytes(p: usize, n: i32): u32 { return hashSeeded(p, n, 0); }

/**
 * ip-hash's key: the hash of a client sockaddr's address bytes (an ACCEPT_ADDR
 * slot), without the port, which changes with every connection. The whole
 * address, as HAProxy's `balance source` (nginx's ip_hash keeps only an IPv4
 * /24, which would send every 127.x test client, or a whole office, to one
 * upstream). An IPv4-mapped IPv6 address (::ffff:a.b.c.d, a dual-stack
 * listener) hashes as the IPv4 address it is. Another family: its bytes.
 */
export function hashClientAddr(sa: usize): u32 {
  const family = <i32>load<u16>(sa + SA_FAMILY);
  if (family == AF_INET) return hashSeeded(sa + SA_IN_ADDR, 4, 0);
  if (family == AF_INET6) {
    const a = sa + SA_IN6_ADDR;
    if (load<u64>(a) == 0 && load<u32>(a + 8) == 0xffff0000) return hashSeeded(a + 12, 4, 0);
    return hashSeeded(a, 16, 0);
  }
  return hashSeeded(sa, ACCEPT_ADDR_SIZE - 4, 0);
}

/** -> the upstream for the next request, -1: none usable. hash: for BAL_IP_HASH / BAL_HASH. */
export function balancePick(pol: i32, hash: u32, exclude: i32, now: f64): i32 {
  switch (pol) {
    case BAL_RR: return pickRr(exclude, now);
    case BAL_WRR: return pickWrr(exclude, now);
    case BAL_LEAST_CONN: return pickLeast(exclude, now);
    case BAL_P2C: return pickP2c(exclude, now);
    case BAL_IP_HASH:
    case BAL_HASH: return maglevPick(hash, exclude, now);
    case BAL_RANDOM: return pickRandom(exclude, now);
    default: return -1;
  }
}

// mulberry32: 32 bits of state, passes BigCrush's smaller batteries; plenty
// for spreading picks, and one add and three multiplies.
function next32(): u32 {
  rng += 0x6d2b79f5;
  let t = rng;
  t = (t ^ (t >> 15)) * (t | 1);
  t ^= t + (t ^ (t >> 7)) * (t | 61);
  return t ^ (t >> 14);
}
/** Uniform in [0, n), n < 2^32, without a division (Lemire's multiply-shift). */
@inline function below(n: u64): u64 { return (<u64>next32() * n) >> 32; }

@inline function candAt(i: i32): i32 { return load<i32>(cand + <usize>(i << 2)); }
@inline function weightAt(i: i32): i32 { return load<i32>(candW + <usize>(i << 2)); }
@inline function cumAt(i: i32): i64 { return load<i64>(candCum + <usize>(i << 3)); }
@inline function posOf(u: i32): i32 { return <u32>u < <u32>upstreamCount() ? load<i32>(candPos + <usize>(u << 2)) : -1; }
@inline function cwOf(u: i32): i64 { return load<i64>(cw + <usize>(u << 3)); }
@inline function setCw(u: i32, v: i64): void { store<i64>(cw + <usize>(u << 3), v); }

/** The usable upstreams and their effective weights at now, collected again only when they may have changed. */
function candidates(now: f64): i32 {
  if (candState == upstreamsStateVersion() && (now == candNow || (now > candNow && now < candUntil))) return candK;
  if (candTable != upstreamsVersion()) { memory.fill(cw, 0, <usize>(UPSTREAMS_MAX * 8)); candTable = upstreamsVersion(); rrNext = 0; }
  const n = upstreamCount();
  let k = 0;
  let total: i64 = 0;
  let until: f64 = Infinity;
  for (let u = 0; u < n; u++) {
    store<i32>(candPos + <usize>(u << 2), -1);
    const ok = upstreamUsable(u, now); // may end an ejection (a state change)
    until = min(until, upstreamNextChange(u, now));
    if (!ok) continue;
    const w = upstreamEffWeight(u, now);
    store<i32>(cand + <usize>(k << 2), u);
    store<i32>(candW + <usize>(k << 2), w);
    total += w;
    store<i64>(candCum + <usize>(k << 3), total);
    store<i32>(candPos + <usize>(u << 2), k);
    k++;
  }
  candK = k; candTotal = total;
  candState = upstreamsStateVersion(); candNow = now; candUntil = until;
  return k;
}

/** Plain round robin: the next usable one after the last pick, weights ignored. */
function pickRr(exclude: i32, now: f64): i32 {
  const n = upstreamCount();
  for (let k = 0; k < n; k++) {
    let u = rrNext + k;
    if (u >= n) u -= n;
    if (u != exclude && upstreamUsable(u, now)) { rrNext = u + 1 < n ? u + 1 : 0; return u; }
  }
  return -1;
}

/**
 * nginx's smooth weighted round robin (ngx_http_upstream_get_peer): each
 * candidate's current weight grows by its weight, the largest is picked
 * (the first of equals) and loses the total. 5:1:1 gives a a b a c a a.
 */
function pickWrr(exclude: i32, now: f64): i32 {
  const k = candidates(now);
  let best = -1;
  let bestCw: i64 = 0;
  let total: i64 = 0;
  for (let i = 0; i < k; i++) {
    const u = candAt(i);
    if (u == exclude) continue;
    const w = <i64>weightAt(i);
    const c = cwOf(u) + w;
    setCw(u, c);
    total += w;
    if (best < 0 || c > bestCw) { best = u; bestCw = c; }
  }
  if (best >= 0) setCw(best, bestCw - total);
  return best;
}

/**
 * nginx's least_conn, weighted: fewest active / weight (compared as
 * active_a x w_b < active_b x w_a); ties go by smooth wrr among the tied.
 */
function pickLeast(exclude: i32, now: f64): i32 {
  const k = candidates(now);
  let bestLoad: i64 = -1, bestW: i64 = 1, first = -1;
  let ties = 0;
  for (let i = 0; i < k; i++) {
    const u = candAt(i);
    if (u == exclude) continue;
    const load = <i64>upstreamActiveRequests(u), w = <i64>weightAt(i);
    if (first < 0) { bestLoad = load; bestW = w; first = i; ties = 1; continue; }
    const lhs = load * bestW, rhs = bestLoad * w;
    if (lhs < rhs) { bestLoad = load; bestW = w; first = i; ties = 1; } else if (lhs == rhs) ties++;
  }
  if (first < 0) return -1;
  if (ties == 1) return candAt(first);
  let best = -1;
  let bestCw: i64 = 0;
  let total: i64 = 0;
  for (let i = first; i < k; i++) {
    const u = candAt(i);
    const w = <i64>weightAt(i);
    if (u == exclude || <i64>upstreamActiveRequests(u) * bestW != bestLoad * w) continue;
    const c = cwOf(u) + w;
    setCw(u, c);
    total += w;
    if (best < 0 || c > bestCw) { best = u; bestCw = c; }
  }
  setCw(best, bestCw - total);
  return best;
}

/**
 * Power of two choices (Envoy's least_request): two distinct random usable
 * upstreams, the one with the lower (active + 1) / weight (Envoy's weighted
 * form with active_request_bias 1); on a tie the first drawn.
 */
function pickP2c(exclude: i32, now: f64): i32 {
  const k = candidates(now);
  const ex = posOf(exclude);
  const m = ex >= 0 ? k - 1 : k; // candidates left once the excluded one is taken out
  if (m <= 0) return -1;
  let i = <i32>below(<u64>m);
  if (ex >= 0 && i >= ex) i++;
  if (m == 1) return candAt(i);
  let j = <i32>below(<u64>(m - 1));
  // the j-th of the candidates other than ex and i
  const lo = ex >= 0 ? min(ex, i) : i, hi = ex >= 0 ? max(ex, i) : 0x7fffffff;
  if (j >= lo) j++;
  if (j >= hi) j++;
  const a = candAt(i), b = candAt(j);
  const la = <i64>upstreamActiveRequests(a) + 1, lb = <i64>upstreamActiveRequests(b) + 1;
  return lb * <i64>weightAt(i) < la * <i64>weightAt(j) ? b : a;
}

/** Weighted random: a point in [0, total weight) and the candidate it falls on (binary search of the sums). */
function pickRandom(exclude: i32, now: f64): i32 {
  const k = candidates(now);
  const ex = posOf(exclude);
  const exW: i64 = ex >= 0 ? <i64>weightAt(ex) : 0;
  const total = candTotal - exW;
  if (total <= 0) return -1;
  let r = <i64>below(<u64>total);
  if (ex >= 0 && r >= cumAt(ex) - exW) r += exW; // step over the excluded one's stretch
  let lo = 0, hi = k - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cumAt(mid) > r) hi = mid; else lo = mid + 1;
  }
  return candAt(lo);
}
