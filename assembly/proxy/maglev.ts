// Consistent hashing for ip-hash and hash: a Maglev lookup table (Eisenbud et
// al., NSDI 2016), weighted as Envoy's MaglevTable does. Chosen over a ring
// with virtual nodes: a lookup is one modulo and one byte load (a ring is a
// binary search over ~100 x N points), the table is built once, and each
// upstream's share of keys is within ~1% of its weight's share by
// construction (a ring needs hundreds of virtual nodes to get there).
//
// The table is built over EVERY upstream, usable or not, and only rebuilt when
// the set changes (an add or a reset: upstreamsVersion()). A key whose entry
// is not usable (down, ejected, the excluded one) takes the next entry in the
// table that is: entries are in pseudo-random order, so the keys of an
// upstream that leaves spread over the others in proportion to their shares,
// no other key moves, and when it comes back its keys return to it. Slow
// start does not apply here (ramping would move keys back and forth).
//
// Size: the smallest prime of PRIMES that gives the lightest upstream >= 100
// entries (>= 100 x N when weights are equal), at most 65537 (Envoy's default).
// Built in O(M x N) at worst (one light upstream among heavy ones); a pick is
// O(1) while the key's own entry is usable.
import { UPSTREAMS_MAX } from "../abi";
import { upstreamCount, upstreamsVersion, upstreamWeight, upstreamAddr, upstreamAddrLen, upstreamUsable } from "./upstreams";

const TABLE_MAX: i32 = 65537;
const PRIMES: usize = memory.data<i32>([307, 1009, 2003, 5003, 10007, 20011, 40009, 65537]);
const PRIME_COUNT: i32 = 8;
const lookup: usize = memory.data(TABLE_MAX);                 // u8 upstream per entry
const filled: usize = memory.data((TABLE_MAX + 31) / 32 * 4);  // build-time bitmap
const pos: usize = memory.data(UPSTREAMS_MAX * 4);            // each upstream's permutation position
const skip: usize = memory.data(UPSTREAMS_MAX * 4);
const target: usize = memory.data(UPSTREAMS_MAX * 8);         // f64 weight turn (Envoy's target_weight)
let size: i32 = 0;
let built: i32 = 0;

/** FNV-1a over n bytes, finished with murmur3's fmix32 so every bit of the key reaches the low bits. */
export function hashSeeded(p: usize, n: i32, seed: u32): u32 {
  let h: u32 = 2166136261 ^ seed;
  for (let i = 0; i < n; i++) h = (h ^ <u32>load<u8>(p + <usize>i)) * 16777619;
  h ^= h >> 16; h *= 0x85ebca6b; h ^= h >> 13; h *= 0xc2b2ae35; h ^= h >> 16;
  return h;
}

export function maglevSize(): i32 { if (built != upstreamsVersion()) build(); return size; }
/** The upstream of table entry i (tests: each upstream's share of entries). */
export function maglevEntry(i: i32): i32 { return <u32>i < <u32>size ? <i32>load<u8>(lookup + <usize>i) : -1; }

function build(): void {
  built = upstreamsVersion();
  const n = upstreamCount();
  size = 0;
  if (n == 0) return;
  let minW = upstreamWeight(0), maxW = minW, sumW: f64 = 0;
  for (let u = 0; u < n; u++) {
    const w = upstreamWeight(u);
    minW = min(minW, w); maxW = max(maxW, w); sumW += <f64>w;
  }
  const want = 100 * sumW / <f64>minW;
  let m = TABLE_MAX;
  for (let k = 0; k < PRIME_COUNT; k++) {
    const p = load<i32>(PRIMES + <usize>(k * 4));
    if (<f64>p >= want) { m = p; break; }
  }
  size = m;
  // Each upstream's permutation of the entries: offset + j x skip (mod m),
  // from two hashes of its address, so it keeps its entries whatever its
  // index or the other upstreams' order.
  for (let u = 0; u < n; u++) {
    const a = upstreamAddr(u), len = upstreamAddrLen(u);
    store<i32>(pos + <usize>(u * 4), <i32>(hashSeeded(a, len, 0x9e3779b9) % <u32>m));
    store<i32>(skip + <usize>(u * 4), <i32>(hashSeeded(a, len, 0x7f4a7c15) % <u32>(m - 1)) + 1);
    store<f64>(target + <usize>(u * 8), 0);
  }
  memory.fill(filled, 0, <usize>((m + 31) / 32 * 4));
  // Envoy's weighting: an upstream of the largest weight takes an entry every
  // round, one of a third of it every third round.
  let taken = 0;
  for (let round: f64 = 1; taken < m; round++) {
    for (let u = 0; u < n && taken < m; u++) {
      const w = <f64>upstreamWeight(u);
      const t = load<f64>(target + <usize>(u * 8));
      if (round * w < t) continue;
      store<f64>(target + <usize>(u * 8), t + <f64>maxW);
      let c = load<i32>(pos + <usize>(u * 4));
      const s = load<i32>(skip + <usize>(u * 4));
      while (isFilled(c)) { c += s; if (c >= m) c -= m; }
      setFilled(c);
      store<u8>(lookup + <usize>c, <u8>u);
      c += s; if (c >= m) c -= m;
      store<i32>(pos + <usize>(u * 4), c);
      taken++;
    }
  }
}

@inline function isFilled(c: i32): bool { return (load<u32>(filled + <usize>((c >> 5) << 2)) & (1 << (c & 31))) != 0; }
@inline function setFilled(c: i32): void {
  const a = filled + <usize>((c >> 5) << 2);
  store<u32>(a, load<u32>(a) | (1 << (c & 31)));
}

/** The upstream for key hash h: its entry's, or the next usable entry's (skipping exclude); -1: none usable. */
export function maglevPick(h: u32, exclude: i32, now: f64): i32 {
  if (built != upstreamsVersion()) build();
  const m = size;
  if (m == 0) return -1;
  let i = <i32>(h % <u32>m);
  let u = <i32>load<u8>(lookup + <usize>i);
  if (u != exclude && upstreamUsable(u, now)) return u;
  // Walk on only if someone is usable: the walk then ends within ~1/(usable share) entries.
  const n = upstreamCount();
  let any = false;
  for (let k = 0; k < n; k++) if (k != exclude && upstreamUsable(k, now)) { any = true; break; }
  if (!any) return -1;
  // Every upstream holds at least one entry (each takes one in the first
  // round), so this finds one; the bound only guards that.
  for (let k = 1; k < m; k++) {
    if (++i == m) i = 0;
    u = <i32>load<u8>(lookup + <usize>i);
    if (u != exclude && upstreamUsable(u, now)) return u;
  }
  return -1;
}
