// Entry point of the core. Everything the host, the tests and the benchmarks
// may call is exported from here; the modules themselves stay free of exports
// that only exist for wiring.

// A region the tests and benchmarks may use freely (1 MiB + SIMD padding).
// Nothing in the core touches it.
const ARENA_SIZE: usize = 1 << 20;
const arenaPtr: usize = heap.alloc(ARENA_SIZE + 64);
export function arena(): usize { return arenaPtr; }
export function arenaSize(): usize { return ARENA_SIZE; }

// ---- pure units, exported for tests and benchmarks -------------------------
export * from "./http/parser";
export * from "./http/path";
export * from "./http/date";
export * from "./http/conditional";
export * from "./http/encoding";
export * from "./reactor/timers";

// ---- the reactor ----------------------------------------------------------
export { runTimers, pollTimeout, dispatch, runDeferred, flush, complete, reaped } from "./reactor/loop";
export { recover, debugTrapFd, debugTrapCompletion } from "./reactor/recovery";
export { ctlAddress, configText, register, modify, deregister, timerStart, timerStop, defer, listen } from "./reactor/api";
export { checkInvariants, debugConnI32, debugConnF64 } from "./reactor/invariants";
export { beginShutdown, closeAll } from "./reactor/shutdown";
export { proxyConfig, proxyUpstreamStats } from "./proxy/tcp";
import { ctl } from "./reactor/ctl";
import { reactorInit } from "./reactor/loop";
import { protocolsInit } from "./protocols";

/** Sets the core up from the config the host wrote (ctlAddress()); returns the control block's address. */
export function init(): usize {
  if (reactorInit()) protocolsInit();
  return ctl;
}
