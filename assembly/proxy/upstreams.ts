// STAND-IN (helper "proxy"): the minimal upstream table the tcp relay needs to
// run, to the interface of the shared brief. The real one (helper "balance")
// replaces this file whole: weights, passive health, ejection, slow start.
// Here: addresses, weights kept, active counts; every upstream always usable.
const MAX: i32 = 64;
const SA_MAX: i32 = 28;
const addrs: usize = memory.data(MAX * SA_MAX, 8);
const lens: usize = memory.data(MAX * 4, 4);
const weights: usize = memory.data(MAX * 4, 4);
const active: usize = memory.data(MAX * 4, 4);
let count: i32 = 0;

export function upstreamsReset(): void { count = 0; }
export function upstreamAdd(sa: usize, saLen: i32, weight: i32): i32 {
  if (count >= MAX || saLen <= 0 || saLen > SA_MAX) return -1;
  const u = count++;
  memory.copy(addrs + <usize>(u * SA_MAX), sa, <usize>saLen);
  store<i32>(lens + <usize>(u * 4), saLen);
  store<i32>(weights + <usize>(u * 4), weight > 0 ? weight : 1);
  store<i32>(active + <usize>(u * 4), 0);
  return u;
}
export function upstreamCount(): i32 { return count; }
export function upstreamAddr(u: i32): usize { return addrs + <usize>(u * SA_MAX); }
export function upstreamAddrLen(u: i32): i32 { return load<i32>(lens + <usize>(u * 4)); }
export function upstreamConnOpened(u: i32): void { store<i32>(active + <usize>(u * 4), load<i32>(active + <usize>(u * 4)) + 1); }
export function upstreamConnClosed(u: i32): void { store<i32>(active + <usize>(u * 4), load<i32>(active + <usize>(u * 4)) - 1); }
export function upstreamRequestStart(u: i32): void {}
export function upstreamRequestEnd(u: i32, status: i32, ms: f64): void {}
export function upstreamFailure(u: i32, now: f64): void {}
export function upstreamSuccess(u: i32, now: f64): void {}
export function upstreamHealthResult(u: i32, ok: bool, now: f64): void {}
export function upstreamUsable(u: i32, now: f64): bool { return u >= 0 && u < count; }
export function upstreamBytes(u: i32, toUpstream: i32, fromUpstream: i32): void {}
