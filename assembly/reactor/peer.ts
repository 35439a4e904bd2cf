// Peer addresses of accepted connections, for the access log.
//
// accept4 writes the peer's sockaddr into an ACCEPT_ADDR slot (abi.ts); the
// listener copies the part worth keeping here. The connection record has no
// room left (its generic part is full and the protocol area belongs to the
// protocols), so this is an fd-indexed side table, PEER_SIZE = 20 bytes per
// fd, carved at init only when the access log is on. Fresh linear memory is
// zero and untouched entries cost no RSS: a server with N connections touches
// N * 20 bytes.
//
//   +0  u16 family   AF_INET / AF_INET6, 0 = unknown
//   +2  u16 port     host byte order
//   +4  16 bytes     address (IPv4: the first 4)
import { AF_INET, AF_INET6, SA_FAMILY, SA_PORT, SA_IN_ADDR, SA_IN6_ADDR, SA_LEN } from "../abi";

export const PEER_SIZE: usize = 20;
let peers: usize = 0;
let peerCap: i32 = 0;

export function peersInit(maxFds: i32): void {
  peers = heap.alloc(<usize>maxFds * PEER_SIZE);
  peerCap = maxFds;
}

@inline export function peersOn(): bool { return peers != 0; }

/** Stores the address accept4 wrote at `sa` (an ACCEPT_ADDR slot) for fd. */
export function peerSet(fd: i32, sa: usize): void {
  if (peers == 0 || fd < 0 || fd >= peerCap) return;
  const p = peers + <usize>fd * PEER_SIZE;
  const family = <i32>load<u16>(sa + SA_FAMILY);
  const len = load<u32>(sa + SA_LEN);
  const port = <u16>((<u32>load<u8>(sa + SA_PORT) << 8) | <u32>load<u8>(sa + SA_PORT + 1));
  if (family == AF_INET && len >= 8) {
    store<u16>(p, AF_INET);
    memory.copy(p + 4, sa + SA_IN_ADDR, 4);
  } else if (family == AF_INET6 && len >= 24) {
    store<u16>(p, AF_INET6);
    memory.copy(p + 4, sa + SA_IN6_ADDR, 16);
  } else {
    store<u16>(p, 0);
  }
  store<u16>(p + 2, port);
}

/** fd's PEER_SIZE-byte entry (family, port, address), or 0 when addresses are not kept. */
export function peerRecord(fd: i32): usize {
  if (peers == 0 || fd < 0 || fd >= peerCap) return 0;
  return peers + <usize>fd * PEER_SIZE;
}

/** The peer's port, or -1 when unknown. */
export function peerPort(fd: i32): i32 {
  if (peers == 0 || fd < 0 || fd >= peerCap) return -1;
  const p = peers + <usize>fd * PEER_SIZE;
  return load<u16>(p) == 0 ? -1 : <i32>load<u16>(p + 2);
}

/**
 * Writes the peer's address as text at dst (at least 46 bytes): dotted
 * decimal, or IPv6 in RFC 5952's canonical form (lower case, the longest run
 * of zero groups as "::", an IPv4-mapped address as ::ffff:a.b.c.d), as
 * nginx's $remote_addr shows them. Returns the length; 0 when unknown.
 */
export function peerFormat(fd: i32, dst: usize): i32 {
  if (peers == 0 || fd < 0 || fd >= peerCap) return 0;
  const p = peers + <usize>fd * PEER_SIZE;
  return ipFormat(<i32>load<u16>(p), p + 4, dst);
}

/**
 * A sockaddr_in / sockaddr_in6 (abi.ts SA_*) as "a.b.c.d:port" or
 * "[v6]:port" (RFC 5952 form) at dst (at least 56 bytes); -> its length.
 */
export function sockaddrFormat(sa: usize, dst: usize): i32 {
  const family = <i32>load<u16>(sa + SA_FAMILY);
  const port = (<u32>load<u8>(sa + SA_PORT) << 8) | <u32>load<u8>(sa + SA_PORT + 1);
  let q = dst;
  if (family == AF_INET) q += <usize>ipFormat(family, sa + SA_IN_ADDR, q);
  else if (family == AF_INET6) { store<u8>(q++, 0x5b); q += <usize>ipFormat(family, sa + SA_IN6_ADDR, q); store<u8>(q++, 0x5d); }
  else return 0;
  store<u8>(q++, 0x3a);
  return <i32>(dec(q, port) - dst);
}

/** The address at `a` (4 or 16 bytes, network order) of `family` as text at dst; -> its length (0: unknown family). */
function ipFormat(family: i32, a: usize, dst: usize): i32 {
  if (family == AF_INET) return <i32>(dotted(a, dst) - dst);
  if (family != AF_INET6) return 0;
  let q = dst;
  // IPv4-mapped (::ffff:0:0/96)
  if (load<u64>(a) == 0 && load<u16>(a + 8) == 0 && load<u16>(a + 10) == 0xffff) {
    q = putAscii(q, "::ffff:");
    return <i32>(dotted(a + 12, q) - dst);
  }
  // the longest run of two or more zero groups (the first of equal runs)
  let best = -1, bestLen = 1, run = -1;
  for (let g = 0; g <= 8; g++) {
    if (g < 8 && group(a, g) == 0) { if (run < 0) run = g; continue; }
    if (run >= 0 && g - run > bestLen) { best = run; bestLen = g - run; }
    run = -1;
  }
  for (let g = 0; g < 8; g++) {
    if (g == best) {
      store<u8>(q++, 0x3a);
      if (g == 0) store<u8>(q++, 0x3a);
      g += bestLen - 1;
      continue;
    }
    q = hex16(q, group(a, g));
    if (g < 7) store<u8>(q++, 0x3a);
  }
  return <i32>(q - dst);
}

@inline function group(a: usize, g: i32): u32 {
  return (<u32>load<u8>(a + <usize>(g * 2)) << 8) | <u32>load<u8>(a + <usize>(g * 2 + 1));
}

function hex16(q: usize, v: u32): usize {
  let started = false;
  for (let shift = 12; shift >= 0; shift -= 4) {
    const d = (v >> <u32>shift) & 15;
    if (d == 0 && !started && shift > 0) continue;
    started = true;
    store<u8>(q++, <u8>(d < 10 ? 0x30 + d : 0x57 + d));
  }
  return q;
}

function dotted(a: usize, q: usize): usize {
  for (let i = 0; i < 4; i++) {
    if (i > 0) store<u8>(q++, 0x2e);
    q = dec(q, <u32>load<u8>(a + <usize>i));
  }
  return q;
}

export function dec(q: usize, v: u32): usize {
  let digits = 1;
  for (let t = v; t >= 10; t /= 10) digits++;
  for (let i = digits - 1; i >= 0; i--) { store<u8>(q + <usize>i, <u8>(0x30 + v % 10)); v /= 10; }
  return q + <usize>digits;
}

function putAscii(q: usize, s: string): usize {
  for (let i = 0; i < s.length; i++) store<u8>(q + <usize>i, <u8>s.charCodeAt(i));
  return q + <usize>s.length;
}
