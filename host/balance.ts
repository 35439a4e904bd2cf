// Host side of the upstream table (assembly/proxy/upstreams.ts, balance.ts):
// the names of the balancing policies, the balance config record (abi.ts
// BCFG_*) and the per-upstream stats records (UPSTAT_*), read by the shared
// offsets. The host decides nothing here: policy lives in the core.
import * as abi from "../assembly/abi.ts";
import type { CoreMemory } from "./core.ts";

/** `--balance` names, as nginx / HAProxy / Envoy users know them, and their BAL_* ids. */
export const BALANCE_POLICIES = {
  rr: abi.BAL_RR,
  wrr: abi.BAL_WRR,
  "least-conn": abi.BAL_LEAST_CONN,
  p2c: abi.BAL_P2C,
  "ip-hash": abi.BAL_IP_HASH,
  hash: abi.BAL_HASH,
  random: abi.BAL_RANDOM,
} as const;
export type BalancePolicyName = keyof typeof BALANCE_POLICIES;

/** The BAL_* id of a policy name; throws a one-line error naming the valid ones. */
export function parseBalancePolicy(name: string): number {
  const id = (BALANCE_POLICIES as Record<string, number>)[name];
  if (id === undefined) throw new Error(`unknown balancing policy "${name}" (one of: ${Object.keys(BALANCE_POLICIES).join(", ")})`);
  return id;
}

export interface BalanceConfig {
  policy: BalancePolicyName;
  /** PRNG seed for p2c and random (a recording keeps it, so a replay repeats the picks). */
  seed: number;
  /** Consecutive failures that eject an upstream; 0: never eject. */
  maxFails: number;
  /** First ejection, ms; the n-th lasts n times this, up to ejectMaxMs. */
  ejectBaseMs: number;
  ejectMaxMs: number;
  /** An upstream coming back ramps its weight from 10% to 100% over this many ms; 0: off. */
  slowStartMs: number;
  /** Active health checks: good results in a row that bring an upstream up, bad ones that take it down. */
  rise: number;
  fall: number;
  /** Active health check: "none", "tcp" (a connect that succeeds) or "http:/path" (GET path: 2xx/3xx is good). */
  check: string;
  /** Between two probes of one upstream, ms (HAProxy's inter). */
  checkIntervalMs: number;
  /** A probe with no answer (connect, or response head for http) within this long is bad, ms. */
  checkTimeoutMs: number;
  /** Port the probes connect to on each upstream's address; 0: the upstream's own port (HAProxy's `check port`). */
  checkPort: number;
}

export const defaultBalanceConfig: BalanceConfig = {
  policy: "wrr", seed: 1, maxFails: 3, ejectBaseMs: 10_000, ejectMaxMs: 300_000, slowStartMs: 0, rise: 2, fall: 3,
  check: "none", checkIntervalMs: 2000, checkTimeoutMs: 1000, checkPort: 0,
};

const int = (v: number, what: string, lo: number, hi: number): number => {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`${what} must be an integer from ${lo} to ${hi} (got ${v})`);
  return v;
};

/**
 * A health check spec: "none", "tcp" or "http:/path" (an origin-form path:
 * "/" then visible ASCII, at most CHECK_PATH_MAX bytes). Throws a one-line
 * error. -> the CHECK_* kind and the path.
 */
export function parseHealthCheck(spec: string): { kind: number; path: string } {
  if (spec === "none" || spec === "") return { kind: abi.CHECK_NONE, path: "" };
  if (spec === "tcp") return { kind: abi.CHECK_TCP, path: "" };
  if (spec.startsWith("http:")) {
    const path = spec.slice(5);
    if (!/^\/[\x21-\x7e]*$/.test(path)) throw new Error(`health check path must start with / and hold no spaces or control bytes, got '${path}'`);
    if (path.length > abi.CHECK_PATH_MAX) throw new Error(`health check path is longer than ${abi.CHECK_PATH_MAX} bytes`);
    return { kind: abi.CHECK_HTTP, path };
  }
  throw new Error(`health check must be tcp or http:/path, got '${spec}'`);
}

/** Writes the config into the core's BCFG record (`balanceConfig()`); the core's balanceInit() reads it. */
export function writeBalanceConfig(memory: CoreMemory, at: number, cfg: Partial<BalanceConfig> = {}): void {
  const c = { ...defaultBalanceConfig, ...cfg };
  const dv = new DataView(memory.buffer);
  const max = 2 ** 31 - 1;
  dv.setInt32(at + abi.BCFG_POLICY, parseBalancePolicy(c.policy), true);
  dv.setUint32(at + abi.BCFG_SEED, int(c.seed, "seed", 0, 2 ** 32 - 1), true);
  // 0 in the record means "the default"; "never eject" is written as -1.
  dv.setInt32(at + abi.BCFG_MAX_FAILS, int(c.maxFails, "maxFails", 0, max) || -1, true);
  dv.setInt32(at + abi.BCFG_EJECT_BASE, int(c.ejectBaseMs, "ejectBaseMs", 1, max), true);
  dv.setInt32(at + abi.BCFG_EJECT_MAX, int(c.ejectMaxMs, "ejectMaxMs", 1, max), true);
  dv.setInt32(at + abi.BCFG_SLOW_START, int(c.slowStartMs, "slowStartMs", 0, max), true);
  dv.setInt32(at + abi.BCFG_RISE, int(c.rise, "rise", 1, max), true);
  dv.setInt32(at + abi.BCFG_FALL, int(c.fall, "fall", 1, max), true);
  const hc = parseHealthCheck(c.check);
  dv.setInt32(at + abi.BCFG_CHECK, hc.kind, true);
  dv.setInt32(at + abi.BCFG_CHECK_INTERVAL, int(c.checkIntervalMs, "checkIntervalMs", 1, max), true);
  dv.setInt32(at + abi.BCFG_CHECK_TIMEOUT, int(c.checkTimeoutMs, "checkTimeoutMs", 1, max), true);
  dv.setInt32(at + abi.BCFG_CHECK_PATH_LEN, hc.path.length, true);
  dv.setInt32(at + abi.BCFG_CHECK_PORT, int(c.checkPort, "checkPort", 0, 65535), true);
  new Uint8Array(memory.buffer, at + abi.BCFG_CHECK_PATH, abi.CHECK_PATH_MAX).fill(0).set(Buffer.from(hc.path, "latin1"));
}

export type UpstreamState = "up" | "down" | "ejected";

export interface UpstreamStats {
  state: UpstreamState;
  weight: number;
  /** Slow start: the share of the weight in use, 0.1..1. */
  ramp: number;
  activeConns: number;
  activeRequests: number;
  consecutiveFailures: number;
  ejections: number;
  /** State changes (each one logged). */
  transitions: number;
  conns: number;
  requests: number;
  failures: number;
  retries: number;
  bytesToUpstream: number;
  bytesFromUpstream: number;
  /** Summed latency of the requests that got a response, ms. */
  latencySumMs: number;
  /** Loop time (ms) the current ejection ends; 0: not ejected. */
  ejectedUntil: number;
  /** Requests by status class: [0] no response, [1] 1xx .. [5] 5xx. */
  status: number[];
  /** Responses by latency, Prometheus style: cumulative counts per upper bound (ms; the last is Infinity). */
  latency: { le: number; count: number }[];
}

/** The core exports the stats need (Core's exports have them). */
export interface StatsExports {
  memory: CoreMemory;
  proxyStatsBuffer(): number;
  proxyStatsWrite(ptr: number, cap: number): number;
  proxyLatencyLe(i: number): number;
}

const STATE_NAMES: Record<number, UpstreamState> = {
  [abi.UPSTATE_UP]: "up", [abi.UPSTATE_DOWN]: "down", [abi.UPSTATE_EJECTED]: "ejected",
};

/** Every upstream's stats, in table order (index = upstream), as of the core's loop time. */
export function readUpstreamStats(x: StatsExports): UpstreamStats[] {
  const buf = x.proxyStatsBuffer();
  const n = x.proxyStatsWrite(buf, abi.UPSTREAMS_MAX * abi.UPSTAT_SIZE);
  const dv = new DataView(x.memory.buffer);
  const les = Array.from({ length: abi.UPSTAT_BUCKETS }, (_, i) => x.proxyLatencyLe(i));
  const out: UpstreamStats[] = [];
  for (let u = 0; u < n; u++) {
    const r = buf + u * abi.UPSTAT_SIZE;
    const i32 = (off: number) => dv.getInt32(r + off, true);
    const f64 = (off: number) => dv.getFloat64(r + off, true);
    let cum = 0;
    out.push({
      state: STATE_NAMES[i32(abi.UPSTAT_STATE)] ?? "down",
      weight: i32(abi.UPSTAT_WEIGHT),
      ramp: i32(abi.UPSTAT_RAMP) / 1000,
      activeConns: i32(abi.UPSTAT_ACTIVE_CONNS),
      activeRequests: i32(abi.UPSTAT_ACTIVE_REQS),
      consecutiveFailures: i32(abi.UPSTAT_CONSEC_FAILS),
      ejections: i32(abi.UPSTAT_EJECTIONS),
      transitions: i32(abi.UPSTAT_TRANSITIONS),
      conns: f64(abi.UPSTAT_CONNS),
      requests: f64(abi.UPSTAT_REQUESTS),
      failures: f64(abi.UPSTAT_FAILURES),
      retries: f64(abi.UPSTAT_RETRIES),
      bytesToUpstream: f64(abi.UPSTAT_BYTES_TO),
      bytesFromUpstream: f64(abi.UPSTAT_BYTES_FROM),
      latencySumMs: f64(abi.UPSTAT_LATENCY_SUM),
      ejectedUntil: f64(abi.UPSTAT_EJECT_UNTIL),
      status: Array.from({ length: abi.UPSTAT_STATUS_CLASSES }, (_, k) => f64(abi.UPSTAT_STATUS + 8 * k)),
      latency: les.map((le, k) => ({ le, count: (cum += f64(abi.UPSTAT_LATENCY + 8 * k)) })),
    });
  }
  return out;
}
