// Balancing: which upstream the next request (tcp mode: connection) goes to.
// Pure: the table is upstreams.ts's, time comes in as `now`, randomness from
// a PRNG seeded by the host (BCFG_SEED), so a recorded run replays the same
// picks. No allocation: candidates go into two static arrays.
//
// Every policy skips unusable upstreams (down, ejected) and `exclude` (the
// upstream a retry leaves; strict: if it is the only usable one the pick is
// -1, and the caller decides whether to go back to it with exclude -1).
// "Load" is active requests: the proxy counts a tcp-mode connection as one
// request (upstreamRequestStart at connect, upstreamRequestEnd(u, 0, ms) at
// its end), and in http mode an idle pooled connection is no load (nginx's
// least_conn counts the same way: a kept-alive connection is not "active").
// Weights are effective weights: weight x slow-start ramp (upstreams.ts).
import {
  BAL_RR, BAL_WRR, BAL_LEAST_CONN, BAL_P2C, BAL_IP_HASH, BAL_HASH, BAL_RANDOM, UPSTREAMS_MAX, BCFG_SIZE, BCFG_POLICY,
  BCFG_SEED, BCFG_MAX_FAILS, BCFG_EJECT_BASE, BCFG_EJECT_MAX, BCFG_SLOW_START, BCFG_RISE, BCFG_FALL,
} from "../abi";
import {
  upstreamCount, upstreamUsable, upstreamEffWeight, upstreamActiveRequests, upstreamCw, upstreamSetCw,
  upstreamsConfigure,
} from "./upstreams";
import { hashSeeded, maglevPick } from "./maglev";

// The config record (abi.ts BCFG_*), static so the host can write it before init.
const config: usize = memory.data(BCFG_SIZE, 16);
export function balanceConfig(): usize { return config; }

let policy: i32 = BAL_WRR;
let rng: u32 = 0;
let rrNext: i32 = 0;

const cand: usize = memory.data(UPSTREAMS_MAX * 4);   // i32 upstream
const candW: usize = memory.data(UPSTREAMS_MAX * 4);  // i32 effective weight (<= 10^7)
let candTotal: i64 = 0;

/** Reads the config record: policy, seed, health settings. Resets the cursors and the PRNG. */
export function balanceInit(): void {
  const p = load<i32>(config + BCFG_POLICY);
  policy = p >= BAL_RR && p <= BAL_RANDOM ? p : BAL_WRR;
  balanceSeed(load<u32>(config + BCFG_SEED));
  upstreamsConfigure(load<i32>(config + BCFG_MAX_FAILS), load<i32>(config + BCFG_EJECT_BASE),
    load<i32>(config + BCFG_EJECT_MAX), load<i32>(config + BCFG_SLOW_START), load<i32>(config + BCFG_RISE),
    load<i32>(config + BCFG_FALL));
  rrNext = 0;
  for (let u = 0; u < upstreamCount(); u++) upstreamSetCw(u, 0);
}

/** The configured policy (BCFG_POLICY, BAL_WRR when unset or unknown). */
export function balancePolicy(): i32 { return policy; }

export function balanceSeed(seed: u32): void { rng = seed != 0 ? seed : 0x2545f491; }

/** The hash used for keys and client addresses. */
export function hashBytes(p: usize, n: i32): u32 { return hashSeeded(p, n, 0); }

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

/** The usable upstreams other than exclude, with their effective weights, into cand / candW. */
function collect(exclude: i32, now: f64): i32 {
  const n = upstreamCount();
  let k = 0;
  let total: i64 = 0;
  for (let u = 0; u < n; u++) {
    if (u == exclude || !upstreamUsable(u, now)) continue;
    const w = upstreamEffWeight(u, now);
    store<i32>(cand + <usize>(k * 4), u);
    store<i32>(candW + <usize>(k * 4), w);
    total += w;
    k++;
  }
  candTotal = total;
  return k;
}
@inline function candAt(i: i32): i32 { return load<i32>(cand + <usize>(i * 4)); }
@inline function weightAt(i: i32): i32 { return load<i32>(candW + <usize>(i * 4)); }

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
  const k = collect(exclude, now);
  if (k == 0) return -1;
  return smooth(k, -1, 0);
}

/** Smooth wrr over candidates [0, k); with onlyLoad >= 0, only those whose active / weight is onlyLoad / onlyW (least-conn's ties). */
function smooth(k: i32, onlyLoad: i64, onlyW: i64): i32 {
  let best = -1;
  let bestCw: i64 = 0;
  let total: i64 = 0;
  for (let i = 0; i < k; i++) {
    const u = candAt(i);
    const w = <i64>weightAt(i);
    if (onlyLoad >= 0 && <i64>upstreamActiveRequests(u) * onlyW != onlyLoad * w) continue;
    const cw = upstreamCw(u) + w;
    upstreamSetCw(u, cw);
    total += w;
    if (best < 0 || cw > bestCw) { best = u; bestCw = cw; }
  }
  upstreamSetCw(best, bestCw - total);
  return best;
}

/** nginx's least_conn, weighted: fewest active / weight; ties go by smooth wrr among the tied. */
function pickLeast(exclude: i32, now: f64): i32 {
  const k = collect(exclude, now);
  if (k == 0) return -1;
  let bestLoad: i64 = upstreamActiveRequests(candAt(0)), bestW: i64 = weightAt(0);
  let ties = 1;
  for (let i = 1; i < k; i++) {
    const load = <i64>upstreamActiveRequests(candAt(i)), w = <i64>weightAt(i);
    const lhs = load * bestW, rhs = bestLoad * w; // load / w against bestLoad / bestW
    if (lhs < rhs) { bestLoad = load; bestW = w; ties = 1; } else if (lhs == rhs) ties++;
  }
  if (ties == 1) {
    for (let i = 0; i < k; i++) {
      if (<i64>upstreamActiveRequests(candAt(i)) * bestW == bestLoad * <i64>weightAt(i)) return candAt(i);
    }
  }
  return smooth(k, bestLoad, bestW);
}

/**
 * Power of two choices (Envoy's least_request): two distinct random usable
 * upstreams, the one with the lower (active + 1) / weight (Envoy's weighted
 * form with active_request_bias 1); on a tie the first drawn.
 */
function pickP2c(exclude: i32, now: f64): i32 {
  const k = collect(exclude, now);
  if (k == 0) return -1;
  if (k == 1) return candAt(0);
  const i = <i32>below(<u64>k);
  let j = <i32>below(<u64>(k - 1));
  if (j >= i) j++;
  const a = candAt(i), b = candAt(j);
  const la = <i64>upstreamActiveRequests(a) + 1, lb = <i64>upstreamActiveRequests(b) + 1;
  return lb * <i64>weightAt(i) < la * <i64>weightAt(j) ? b : a;
}

/** Weighted random: a point in [0, total weight) and the candidate it falls on. */
function pickRandom(exclude: i32, now: f64): i32 {
  const k = collect(exclude, now);
  if (k == 0) return -1;
  let r = <i64>below(<u64>candTotal);
  for (let i = 0; i < k; i++) {
    r -= weightAt(i);
    if (r < 0) return candAt(i);
  }
  return candAt(k - 1);
}
