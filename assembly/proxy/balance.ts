// STAND-IN (helper "proxy"): round robin over usable upstreams, whatever the
// policy, to the interface of the shared brief. The real one (helper
// "balance") replaces this file whole.
import { upstreamCount, upstreamUsable } from "./upstreams";

let next: i32 = 0;

export function balancePick(policy: i32, hash: u32, exclude: i32, now: f64): i32 {
  const n = upstreamCount();
  for (let i = 0; i < n; i++) {
    const u = (next + i) % n;
    if (u == exclude || !upstreamUsable(u, now)) continue;
    next = (u + 1) % n;
    return u;
  }
  return -1;
}

/** FNV-1a, 32 bits. */
export function hashBytes(p: usize, n: i32): u32 {
  let h: u32 = 2166136261;
  for (let i = 0; i < n; i++) { h ^= <u32>load<u8>(p + <usize>i); h *= 16777619; }
  return h;
}
