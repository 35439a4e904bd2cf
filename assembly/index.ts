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
export * from "./reactor/wheel";
export * from "./reactor/wheelbench";
// http-mode proxy parts: the response-head parser, body framing, head rewriting
export * from "./http/response";
export * from "./http/framing";
export * from "./proxy/rewrite";

// ---- the reactor ----------------------------------------------------------
export { runTimers, pollTimeout, dispatch, runDeferred, flush, complete, reaped } from "./reactor/loop";
export { recover, debugTrapFd, debugTrapCompletion } from "./reactor/recovery";
export { opsConfig } from "./reactor/log";
export { ctlAddress, configText, register, modify, deregister, timerStart, timerStop, defer, listen } from "./reactor/api";
export { checkInvariants, debugConnI32, debugConnF64 } from "./reactor/invariants";
export { beginShutdown, closeAll } from "./reactor/shutdown";
export { proxyConfig } from "./proxy/tcp";
export { fairnessConfig } from "./reactor/budget";
export { streamStage, streamStageSize, streamAdopt, streamWrite, streamBuffered, streamEnd, streamDestroy } from "./reactor/stream";
export { proxyHttpUpstreamStats, proxyHttpStats, proxyHashKeyConfig } from "./proxy/http";
import { ctl } from "./reactor/ctl";
import { reactorInit } from "./reactor/loop";
import { protocolsInit } from "./protocols";

/** Sets the core up from the config the host wrote (ctlAddress()); returns the control block's address. */
export function init(): usize {
  if (reactorInit()) protocolsInit();
  return ctl;
}

// ---- proxy: upstream table and balancing (bare-core tests, benchmarks, the host) ----
export {
  upstreamsReset as proxyUpstreamsReset, upstreamAdd as proxyUpstreamAdd, upstreamCount as proxyUpstreamCount,
  upstreamAddr as proxyUpstreamAddr, upstreamAddrLen as proxyUpstreamAddrLen,
  upstreamConnOpened as proxyUpstreamConnOpened, upstreamConnClosed as proxyUpstreamConnClosed,
  upstreamRequestStart as proxyUpstreamRequestStart, upstreamRequestEnd as proxyUpstreamRequestEnd,
  upstreamFailure as proxyUpstreamFailure, upstreamSuccess as proxyUpstreamSuccess,
  upstreamHealthResult as proxyUpstreamHealthResult, upstreamUsable as proxyUpstreamUsable,
  upstreamBytes as proxyUpstreamBytes, upstreamRetried as proxyUpstreamRetried,
  upstreamEffWeight as proxyUpstreamEffWeight, upstreamLatencyLe as proxyLatencyLe,
} from "./proxy/upstreams";
export {
  balancePick as proxyBalancePick, hashBytes as proxyHashBytes, hashClientAddr as proxyHashClientAddr, balanceSeed as proxyBalanceSeed,
  balanceConfig, balanceInit, balancePolicy,
} from "./proxy/balance";
export { maglevSize as debugProxyMaglevSize, maglevEntry as debugProxyMaglevEntry } from "./proxy/maglev";
export { proxyStatsBuffer, proxyStatsWrite } from "./proxy/stats";
export { metricsRecord } from "./reactor/metrics";
export { metricsSnapshot, metricsSnapshotSize } from "./proto/metrics";
export { healthProbes as proxyHealthProbes, healthFailed as proxyHealthFailed, healthLast as proxyHealthLast, healthKind as proxyHealthKind } from "./proxy/health";
