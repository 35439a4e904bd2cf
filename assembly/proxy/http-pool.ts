// The http-mode proxy's idle pool: per upstream, a LIFO list of idle
// keep-alive connections (linked through X_POOL_NEXT / X_POOL_PREV), at most
// CFG_PROXY_KEEPALIVE of them. The most recently used is taken first (its
// TCP state and the upstream's caches are warmest; nginx's keepalive does the
// same). A pooled connection is watched for readability: anything it reads
// (the upstream's FIN, a reset, stray bytes) drops it.
//
// Under a connection cap (CFG_MAX_CONNECTIONS), idle pooled connections
// also live on the fds of client slots not in use: a connection is pooled
// only while the clients open plus the connections pooled stay below the cap,
// and a client accepted when they do not closes one (poolMakeRoom).
// The fd budget (host/limits.ts) counts two fds per client and no pool; this
// keeps it true when the pool would otherwise outgrow the clients.
import { CFG_PROXY_KEEPALIVE, C_INFLIGHT, C_STATE, UPSTREAMS_MAX, PXH_POOLED, PXG_POOL_DROPPED } from "../abi";
import { ctlI32 } from "../reactor/ctl";
import { acceptedOpen, connectionCap } from "../reactor/listener";
import {
  cget, cset, flags, clearFlag, connClose, setDeadline, connRefreshInterest, CF_READABLE, CF_EOF, CF_HUP, CF_CLOSING,
  CF_NO_READ,
} from "../reactor/conn";
import { X_UP, X_XF, XF_PAUSED, xclear, closeSafe } from "./link";
import { US_CONNECTING, US_POOLED, X_POOL_NEXT, X_POOL_PREV, stat, gstat, releaseBuf, poolHead, poolSize } from "./http-state";

const POOL_IDLE_MS: f64 = 60000;   // an idle pooled connection is closed after this (nginx keepalive_timeout 60s)
const DEFAULT_KEEPALIVE = 1024; // idle connections kept per upstream: a 1,000-client burst reuses its connections (32 made them churn: bench/RESULTS.md "Proxy")

let keepalive = DEFAULT_KEEPALIVE;
let pooled: i32 = 0; // every upstream's pool

/** Reads CFG_PROXY_KEEPALIVE and empties the pools, once at init. */
export function poolInit(): void {
  keepalive = ctlI32(CFG_PROXY_KEEPALIVE);
  if (keepalive < 0) keepalive = DEFAULT_KEEPALIVE; // < 0: default; 0: no pool
  for (let u = 0; u < UPSTREAMS_MAX; u++) { store<i32>(poolHead + <usize>(u * 4), -1); store<i32>(poolSize + <usize>(u * 4), 0); }
  pooled = 0;
}

/** Puts an idle upstream connection on its pool (LIFO); false when the pool is full. */
export function poolPut(up: i32): bool {
  const u = cget(up, X_UP);
  const size = load<i32>(poolSize + <usize>(u * 4));
  if (size >= keepalive) return false;
  const cap = connectionCap();
  if (cap > 0 && acceptedOpen() + pooled >= cap) return false;
  pooled++;
  releaseBuf(up);
  const head = load<i32>(poolHead + <usize>(u * 4));
  cset(up, X_POOL_NEXT, head);
  cset(up, X_POOL_PREV, -1);
  if (head >= 0) cset(head, X_POOL_PREV, up);
  store<i32>(poolHead + <usize>(u * 4), up);
  store<i32>(poolSize + <usize>(u * 4), size + 1);
  stat(u, PXH_POOLED);
  cset(up, C_STATE, US_POOLED);
  cset(up, X_XF, 0);
  xclear(up, XF_PAUSED);
  // watched for readability: the upstream's FIN or a reset drops it
  clearFlag(up, CF_NO_READ | CF_READABLE);
  connRefreshInterest(up);
  setDeadline(up, POOL_IDLE_MS);
  return true;
}

export function poolUnlink(up: i32): void {
  const u = cget(up, X_UP);
  const next = cget(up, X_POOL_NEXT), prev = cget(up, X_POOL_PREV);
  if (prev >= 0) cset(prev, X_POOL_NEXT, next); else store<i32>(poolHead + <usize>(u * 4), next);
  if (next >= 0) cset(next, X_POOL_PREV, prev);
  store<i32>(poolSize + <usize>(u * 4), load<i32>(poolSize + <usize>(u * 4)) - 1);
  pooled--;
  cset(up, X_POOL_NEXT, -1);
  cset(up, X_POOL_PREV, -1);
}

/** The most recently pooled usable connection to u, or -1. One with news pending (readable: closed) is dropped. */
export function poolTake(u: i32): i32 {
  while (true) {
    const up = load<i32>(poolHead + <usize>(u * 4));
    if (up < 0) return -1;
    poolUnlink(up);
    const f = flags(up);
    if ((f & (CF_READABLE | CF_EOF | CF_HUP | CF_CLOSING)) != 0 || cget(up, C_INFLIGHT) != 0) {
      gstat(PXG_POOL_DROPPED);
      cset(up, C_STATE, US_CONNECTING + 100);
      closeSafe(up); // (a probe read may be in flight: its buffer is the kernel's until it completes)
      continue;
    }
    return up;
  }
}

/**
 * A client was accepted: if the clients open (it included) plus the
 * connections pooled now exceed the cap, pooled connections close until they
 * do not (the most recently pooled of the first upstream that has one), so the
 * pool never takes the fd of a client slot in use.
 */
export function poolMakeRoom(): void {
  const cap = connectionCap();
  if (cap <= 0) return;
  for (let u = 0; u < UPSTREAMS_MAX && acceptedOpen() + 1 + pooled > cap; u++) {
    while (acceptedOpen() + 1 + pooled > cap) {
      const up = load<i32>(poolHead + <usize>(u * 4));
      if (up < 0) break;
      poolDrop(up);
      if (load<i32>(poolHead + <usize>(u * 4)) == up) return; // (its close hook unlinks it; never loop on one that stays)
    }
  }
}

export function poolDrop(up: i32): void {
  gstat(PXG_POOL_DROPPED);
  connClose(up); // the close hook unlinks it
}
