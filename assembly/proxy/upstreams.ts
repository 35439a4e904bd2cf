// The upstream table: one fixed record per upstream (address, weight, health,
// counters). Pure state: no I/O, no clock; time comes in as `now` (loop ms,
// read by callers from CTL_NOW). balance.ts picks among these records.
//
// Size: UPSTREAMS_MAX (256) records, allocated statically, never per pick.
// 256 because the Maglev table (maglev.ts) stores one byte per entry, and
// because its 65537 entries keep each upstream's share within ~1% only up to
// a few hundred upstreams (Maglev wants a table >= 100 x upstreams); nginx and
// HAProxy pools that size are rare, and a larger table would cost every pick
// of the O(n) policies (wrr, least-conn scan the table as nginx's do).
//
// Health. An upstream is usable when the active check says up AND it is not
// ejected by passive health:
// - passive (Envoy's outlier detection, nginx's max_fails): `maxFails`
//   consecutive failures (default 3: nginx's 1 ejects on one stray reset,
//   Envoy's 5 keeps sending to a dead upstream longer; 3 is HAProxy's fall)
//   eject it for ejectBase x level ms, capped at ejectMax. level counts
//   ejections in a row: +1 per ejection, -1 per ejectBase ms it stayed usable
//   since it last came back (Envoy decrements its multiplier each interval a
//   host is healthy). A success resets the consecutive count. The last usable
//   upstream is never ejected (Envoy's max_ejection_percent, taken to its
//   safe end: ejecting it would turn a flaky service into none); its failures
//   keep counting and it is ejected at the next one once another is usable.
// - active (HAProxy's check): `rise` good results in a row bring a down
//   upstream up, `fall` bad ones take an up upstream down. Not guarded by
//   "the last usable": a check that fails says the upstream is down.
// Each change of state is logged once and counted (UPSTAT_TRANSITIONS).
// An upstream that becomes usable again ramps its weight from 10% to 100%
// over slowStart ms (HAProxy's / nginx plus's slowstart); not at startup.
//
// Record layout: the first UPSTAT_SIZE bytes are the stats record of abi.ts
// (proxyStatsWrite copies them as they are), then private fields:
//   +256 32 bytes sockaddr (a copy, up to sockaddr_in6)
//   +288 i32 its length
//   +292 i32 good health results in a row   +296 i32 bad ones in a row
//   +300 i32 1: the active check says down  +304 i32 1: ejected
//   +308 i32 ejection level (multiplier)
//   +312 f64 when it last became usable (slow start; -Infinity: never left)
//   +320 f64 when its last ejection ended
// Active requests live in a dense array beside the records (what least-conn
// and p2c read on every pick; proxyStatsWrite copies them into the record).
import {
  UPSTREAMS_MAX, UPSTREAM_WEIGHT_MAX, UPSTAT_SIZE, UPSTAT_STATE, UPSTAT_WEIGHT, UPSTAT_RAMP, UPSTAT_ACTIVE_CONNS,
  UPSTAT_ACTIVE_REQS, UPSTAT_CONSEC_FAILS, UPSTAT_EJECTIONS, UPSTAT_TRANSITIONS, UPSTAT_CONNS, UPSTAT_REQUESTS,
  UPSTAT_FAILURES, UPSTAT_RETRIES, UPSTAT_BYTES_TO, UPSTAT_BYTES_FROM, UPSTAT_LATENCY_SUM, UPSTAT_EJECT_UNTIL,
  UPSTAT_STATUS, UPSTAT_LATENCY, UPSTAT_BUCKETS, UPSTATE_UP, UPSTATE_DOWN, UPSTATE_EJECTED, ACCEPT_ADDR_SIZE,
  SA_FAMILY, SA_PORT, SA_IN_ADDR, SA_IN6_ADDR, AF_INET, AF_INET6, LOG_WARN, LOG_INFO, LOGEV_UPSTREAM_STATE,
} from "../abi";
import { logBegin, logStr, logInt, logBytes, logEnd } from "../reactor/log";

const UP_SIZE: i32 = 384;
const U_SA = 256;
const U_SA_LEN = 288;
const U_GOOD = 292;
const U_BAD = 296;
const U_DOWN = 300;
const U_EJECTED = 304;
const U_LEVEL = 308;
const U_SINCE = 312;
const U_RETURNED = 320;

const table: usize = memory.data(UPSTREAMS_MAX * UP_SIZE, 16);
const active: usize = memory.data(UPSTREAMS_MAX * 4, 16);
let count: i32 = 0;
/** Bumped by every add and reset: maglev.ts rebuilds its table when it changed. */
let version: i32 = 1;
/** Bumped by those and by every change of state: balance.ts re-collects its candidates. */
let stateVersion: i32 = 1;

// Health config (balanceInit sets it from the BCFG record; these are the defaults).
let maxFails: i32 = 3;
let ejectBase: f64 = 10000;
let ejectMax: f64 = 300000;
let slowStart: f64 = 0;
let rise: i32 = 2;
let fall: i32 = 3;

// Latency bucket bounds in ms (abi.ts UPSTAT_BUCKETS: the last bucket has none).
const HEX: usize = memory.data<u8>([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]);
const LE: usize = memory.data<f64>([1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]);

/** Upper bound (ms) of latency bucket i; the last one has none (Infinity). */
export function upstreamLatencyLe(i: i32): f64 {
  return <u32>i < <u32>(UPSTAT_BUCKETS - 1) ? load<f64>(LE + <usize>(i * 8)) : Infinity;
}

@inline function rec(u: i32): usize { return table + <usize>(u * UP_SIZE); }
@inline function valid(u: i32): bool { return <u32>u < <u32>count; }
@inline function geti(u: i32, off: i32): i32 { return load<i32>(rec(u) + <usize>off); }
@inline function seti(u: i32, off: i32, v: i32): void { store<i32>(rec(u) + <usize>off, v); }
@inline function getf(u: i32, off: i32): f64 { return load<f64>(rec(u) + <usize>off); }
@inline function setf(u: i32, off: i32, v: f64): void { store<f64>(rec(u) + <usize>off, v); }
@inline function addf(u: i32, off: i32, v: f64): void { setf(u, off, getf(u, off) + v); }

/** Health settings (balanceInit); a value <= 0 keeps the default, except maxFails < 0: never eject. */
export function upstreamsConfigure(fails: i32, base: i32, cap: i32, slowMs: i32, riseN: i32, fallN: i32): void {
  maxFails = fails == 0 ? 3 : fails;
  ejectBase = base > 0 ? <f64>base : 10000;
  ejectMax = cap > 0 ? <f64>cap : 300000;
  slowStart = slowMs > 0 ? <f64>slowMs : 0;
  rise = riseN > 0 ? riseN : 2;
  fall = fallN > 0 ? fallN : 3;
}

export function upstreamsReset(): void {
  memory.fill(table, 0, <usize>(count * UP_SIZE));
  memory.fill(active, 0, <usize>(count * 4));
  count = 0;
  version++;
  stateVersion++;
}

/** Copies the sockaddr (saLen bytes, at most a sockaddr_in6); weight 1..UPSTREAM_WEIGHT_MAX. -> index, or -1. */
export function upstreamAdd(sa: usize, saLen: i32, weight: i32): i32 {
  if (count >= UPSTREAMS_MAX || saLen <= 0 || saLen > ACCEPT_ADDR_SIZE - 4) return -1;
  if (weight < 1 || weight > UPSTREAM_WEIGHT_MAX) return -1;
  const u = count++;
  const r = rec(u);
  memory.fill(r, 0, <usize>UP_SIZE);
  memory.copy(r + U_SA, sa, <usize>saLen);
  seti(u, U_SA_LEN, saLen);
  seti(u, UPSTAT_WEIGHT, weight);
  seti(u, UPSTAT_RAMP, 1000);
  setf(u, U_SINCE, -Infinity);
  store<i32>(active + <usize>(u * 4), 0);
  version++;
  stateVersion++;
  return u;
}

export function upstreamCount(): i32 { return count; }
export function upstreamsVersion(): i32 { return version; }
export function upstreamsStateVersion(): i32 { return stateVersion; }
export function upstreamAddr(u: i32): usize { return valid(u) ? rec(u) + U_SA : 0; }
export function upstreamAddrLen(u: i32): i32 { return valid(u) ? geti(u, U_SA_LEN) : 0; }
export function upstreamWeight(u: i32): i32 { return valid(u) ? geti(u, UPSTAT_WEIGHT) : 0; }
/** Active requests of u, which must be a valid index (the balancers' hot loop). */
@inline export function upstreamActiveRequests(u: i32): i32 { return load<i32>(active + <usize>(u * 4)); }
export function upstreamActiveConns(u: i32): i32 { return valid(u) ? geti(u, UPSTAT_ACTIVE_CONNS) : 0; }

export function upstreamConnOpened(u: i32): void {
  if (!valid(u)) return;
  seti(u, UPSTAT_ACTIVE_CONNS, geti(u, UPSTAT_ACTIVE_CONNS) + 1);
  addf(u, UPSTAT_CONNS, 1);
}

export function upstreamConnClosed(u: i32): void {
  if (valid(u) && geti(u, UPSTAT_ACTIVE_CONNS) > 0) seti(u, UPSTAT_ACTIVE_CONNS, geti(u, UPSTAT_ACTIVE_CONNS) - 1);
}

export function upstreamRequestStart(u: i32): void {
  if (valid(u)) store<i32>(active + <usize>(u * 4), upstreamActiveRequests(u) + 1);
}

/**
 * A request (tcp mode: a connection) ended with `status` (0: no response) after
 * `ms`. Only requests that got a response enter the latency histogram: a
 * failure's time is the failure's, not the upstream's latency.
 */
export function upstreamRequestEnd(u: i32, status: i32, ms: f64): void {
  if (!valid(u)) return;
  const a = upstreamActiveRequests(u);
  if (a > 0) store<i32>(active + <usize>(u * 4), a - 1);
  addf(u, UPSTAT_REQUESTS, 1);
  const cls = status >= 100 && status <= 599 ? status / 100 : 0;
  addf(u, UPSTAT_STATUS + cls * 8, 1);
  if (cls == 0) return;
  if (!(ms >= 0)) ms = 0; // NaN, negative: a caller's clock step, counted as instant
  addf(u, UPSTAT_LATENCY_SUM, ms);
  let b = 0;
  while (b < UPSTAT_BUCKETS - 1 && ms > load<f64>(LE + <usize>(b * 8))) b++;
  addf(u, UPSTAT_LATENCY + b * 8, 1);
}

export function upstreamBytes(u: i32, toUpstream: i32, fromUpstream: i32): void {
  if (!valid(u)) return;
  if (toUpstream > 0) addf(u, UPSTAT_BYTES_TO, <f64>toUpstream);
  if (fromUpstream > 0) addf(u, UPSTAT_BYTES_FROM, <f64>fromUpstream);
}

/** A request that failed on u is being retried elsewhere (HAProxy's per-server wretr). */
export function upstreamRetried(u: i32): void {
  if (valid(u)) addf(u, UPSTAT_RETRIES, 1);
}

export function upstreamSuccess(u: i32, now: f64): void {
  if (valid(u)) seti(u, UPSTAT_CONSEC_FAILS, 0);
}

/** Up (active check) and not ejected. Ends an ejection whose time is over (logged once). */
export function upstreamUsable(u: i32, now: f64): bool {
  if (!valid(u) || geti(u, U_DOWN) != 0) return false;
  if (geti(u, U_EJECTED) == 0) return true;
  const until = getf(u, UPSTAT_EJECT_UNTIL);
  if (now < until) return false;
  seti(u, U_EJECTED, 0);
  setf(u, UPSTAT_EJECT_UNTIL, 0);
  setf(u, U_RETURNED, until);
  setf(u, U_SINCE, until); // slow start from when it was due back, whenever that is noticed
  seti(u, UPSTAT_CONSEC_FAILS, 0);
  transition(u, UPSTATE_UP);
  logUpstream(u); logStr("back after ejection"); logEnd(LOG_INFO);
  return true;
}

export function upstreamFailure(u: i32, now: f64): void {
  if (!valid(u)) return;
  addf(u, UPSTAT_FAILURES, 1);
  if (!upstreamUsable(u, now)) return; // already out: a late report of a request it had
  const fails = geti(u, UPSTAT_CONSEC_FAILS) + 1;
  seti(u, UPSTAT_CONSEC_FAILS, fails);
  if (maxFails < 0 || fails < maxFails) return;
  if (!othersUsable(u, now)) {
    if (fails == maxFails) { logUpstream(u); logStr("not ejected: it is the last usable upstream"); logEnd(LOG_WARN); }
    return;
  }
  let level = geti(u, U_LEVEL);
  if (level > 0) level = max(0, level - <i32>Math.floor((now - getf(u, U_RETURNED)) / ejectBase));
  level++;
  const ms = min(ejectBase * <f64>level, ejectMax);
  seti(u, U_LEVEL, level);
  seti(u, U_EJECTED, 1);
  setf(u, UPSTAT_EJECT_UNTIL, now + ms);
  seti(u, UPSTAT_CONSEC_FAILS, 0);
  seti(u, UPSTAT_EJECTIONS, geti(u, UPSTAT_EJECTIONS) + 1);
  transition(u, UPSTATE_EJECTED);
  logUpstream(u); logStr("ejected for "); logInt(<i64>ms); logStr(" ms after ");
  logInt(maxFails); logStr(" consecutive failures"); logEnd(LOG_WARN);
}

export function upstreamHealthResult(u: i32, ok: bool, now: f64): void {
  if (!valid(u)) return;
  if (ok) {
    seti(u, U_BAD, 0);
    const good = geti(u, U_GOOD) + 1;
    seti(u, U_GOOD, good);
    if (geti(u, U_DOWN) == 0 || good < rise) return;
    seti(u, U_DOWN, 0);
    seti(u, UPSTAT_CONSEC_FAILS, 0);
    if (geti(u, U_EJECTED) == 0) setf(u, U_SINCE, now);
    transition(u, geti(u, U_EJECTED) != 0 ? UPSTATE_EJECTED : UPSTATE_UP);
    logUpstream(u); logStr("up: "); logInt(rise); logStr(" health checks passed"); logEnd(LOG_INFO);
  } else {
    seti(u, U_GOOD, 0);
    const bad = geti(u, U_BAD) + 1;
    seti(u, U_BAD, bad);
    if (geti(u, U_DOWN) != 0 || bad < fall) return;
    seti(u, U_DOWN, 1);
    transition(u, UPSTATE_DOWN);
    logUpstream(u); logStr("down: "); logInt(fall); logStr(" health checks failed"); logEnd(LOG_WARN);
  }
}

/** Slow-start ramp at now, per mille of the weight (100..1000; 1000 when off or done). */
export function upstreamRamp(u: i32, now: f64): i32 {
  if (slowStart <= 0 || !valid(u)) return 1000;
  const t = now - getf(u, U_SINCE);
  if (!(t < slowStart)) return 1000; // also -Infinity (never came back) and NaN
  if (t <= 0) return 100;
  return 100 + <i32>(900 * t / slowStart);
}

/** The weight balancing uses at now: weight x ramp (per mille), at most 10^7. */
export function upstreamEffWeight(u: i32, now: f64): i32 {
  return geti(u, UPSTAT_WEIGHT) * upstreamRamp(u, now);
}

/**
 * When u's usability or weight may next change with time alone: the end of
 * its ejection, now while it ramps (every moment), else never (Infinity).
 */
export function upstreamNextChange(u: i32, now: f64): f64 {
  if (geti(u, U_DOWN) != 0) return Infinity; // only a health result brings it back: a state change
  if (geti(u, U_EJECTED) != 0) return getf(u, UPSTAT_EJECT_UNTIL);
  return upstreamRamp(u, now) < 1000 ? now : Infinity;
}

function othersUsable(u: i32, now: f64): bool {
  for (let i = 0; i < count; i++) if (i != u && upstreamUsable(i, now)) return true;
  return false;
}

/** Copies the stats records of the upstreams (at most cap bytes' worth) to ptr; -> records written. */
export function upstreamsStatsWrite(ptr: usize, cap: i32, now: f64): i32 {
  const n = min(count, cap / UPSTAT_SIZE);
  for (let u = 0; u < n; u++) {
    upstreamUsable(u, now); // an ejection that is over shows as over
    seti(u, UPSTAT_RAMP, upstreamRamp(u, now));
    seti(u, UPSTAT_ACTIVE_REQS, upstreamActiveRequests(u));
    memory.copy(ptr + <usize>(u * UPSTAT_SIZE), rec(u), <usize>UPSTAT_SIZE);
  }
  return n;
}

// ---- state changes: logged once each, counted ----------------------------

function transition(u: i32, state: i32): void {
  stateVersion++;
  seti(u, UPSTAT_STATE, geti(u, U_DOWN) != 0 ? UPSTATE_DOWN : state);
  seti(u, UPSTAT_TRANSITIONS, geti(u, UPSTAT_TRANSITIONS) + 1);
}

/** Starts a log line "upstream 1 (127.0.0.1:9001) "; the caller adds what happened and ends it. */
function logUpstream(u: i32): void {
  logBegin(LOGEV_UPSTREAM_STATE);
  logStr("upstream "); logInt(u); logStr(" (");
  logAddr(rec(u) + U_SA);
  logStr(") ");
}

function logAddr(sa: usize): void {
  const family = load<u16>(sa + SA_FAMILY);
  const port = <i32>bswap<u16>(load<u16>(sa + SA_PORT));
  if (family == AF_INET) {
    for (let i = 0; i < 4; i++) { if (i > 0) logStr("."); logInt(load<u8>(sa + SA_IN_ADDR + <usize>i)); }
  } else if (family == AF_INET6) {
    logStr("[");
    for (let i = 0; i < 8; i++) {
      if (i > 0) logStr(":");
      const g = <i32>bswap<u16>(load<u16>(sa + SA_IN6_ADDR + <usize>(i * 2)));
      let started = false;
      for (let s = 12; s >= 0; s -= 4) {
        const d = (g >> s) & 15;
        if (d == 0 && !started && s > 0) continue;
        started = true;
        logBytes(HEX + <usize>d, 1);
      }
    }
    logStr("]");
  } else { logStr("family "); logInt(family); return; }
  logStr(":"); logInt(port);
}
