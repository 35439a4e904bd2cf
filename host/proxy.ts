// A TCP proxy / load balancer on the core (seed 001, issue 10): the policy
// (balancing, retries, timeouts, backpressure, half-close) runs in the core
// (assembly/proxy/tcp.ts); this class only turns options into the core's
// config and opens the listeners, as Server does for echo and HTTP (it is a
// Server of protocol "proxy-tcp").
//
// Upstreams are IP addresses: the constructor is synchronous, as Server's.
// Names are resolved before (resolveUpstreams(), or the CLI at startup, once:
// as nginx resolves upstream names when it loads its config).
import { isIP } from "node:net";
import * as abi from "../assembly/abi.ts";
import { Server, type ServerOptions, type ShutdownResult, type ShutdownOptions } from "./server.ts";
import { HostError, resolveHost } from "./net.ts";
import { BALANCE_POLICIES, parseHealthCheck, readUpstreamStats, type BalanceConfig, type BalancePolicyName, type UpstreamStats as TableStats } from "./balance.ts";
export { BALANCE_POLICIES }; // (the CLI imports them from here)

export interface Upstream { host: string; port: number; weight?: number }

/** tcp mode's relay when none is asked for (ProxyOptions.relay, the CLI's --relay). */
export const DEFAULT_RELAY: "copy" | "splice" = "splice";


export interface ProxyOptions extends Omit<ServerOptions, "protocol" | "root"> {
  upstreams: Upstream[];
  /** Balancing policy (default wrr). `hash` needs http mode (a request key): refused in tcp mode. */
  balance?: string;
  /**
   * http (default, as the CLI's --mode): parse requests, pool upstream
   * connections; tcp: relay bytes. (`mode` stays the event mode, lt|et, as
   * in every Server.)
   */
  proxyMode?: "tcp" | "http";
  /** http mode: the key of balance hash: "path" or "header:NAME" (required with hash). */
  hashKey?: string;
  /** http mode: ms from a request's bytes to the response head before a 504 (default 60000, nginx's proxy_read_timeout; 0 = none). */
  upstreamTimeoutMs?: number;
  /** http mode: idle keep-alive connections kept per upstream (default 32; 0 = none). */
  upstreamKeepalive?: number;
  /**
   * tcp mode: how bytes move (default splice). splice: splice(2) socket -> pipe -> socket, the bytes never enter
   * JS or linear memory (one pipe per direction, 4 more fds per pair; a pair relays by copy when
   * no pipe can be made, or past maxFds / 4 pipes). copy: read() into linear memory, write().
   */
  relay?: "copy" | "splice";
  /** Connect timeout (ms, default 5000; 0 = none). */
  connectTimeoutMs?: number;
  /** Seed of the core's PRNG for p2c/random (default 1). */
  seed?: number;
  /**
   * Passive/active health and slow start (host/balance.ts BalanceConfig; defaults: 3 failures eject for 10 s,
   * growing to 300 s, no slow start; no active check: check "tcp" or "http:/path" probes every upstream every
   * checkIntervalMs (2000), a probe without an answer in checkTimeoutMs (1000) is bad, rise 2 / fall 3).
   */
  health?: Partial<Omit<BalanceConfig, "policy" | "seed">>;
}

/** One upstream's stats: the upstream table's (host/balance.ts UpstreamStats) with its address. */
export interface UpstreamStats extends TableStats {
  address: string;
  /** Active health check: probes finished, bad ones, the last one's outcome (null: none yet, or no check). */
  check: { probes: number; failed: number; last: string | null };
}

/** A probe's outcome code (abi.ts CHECK_RES_*, an HTTP status, -errno) as stats() shows it. */
export function checkOutcome(code: number): string | null {
  if (code >= 100) return `status ${code}`;
  if (code < 0) return `errno ${-code}`;
  return ({ [abi.CHECK_RES_CONNECTED]: "connected", [abi.CHECK_RES_TIMEOUT]: "timeout", [abi.CHECK_RES_INVALID]: "invalid response",
    [abi.CHECK_RES_CLOSED]: "closed before a response" } as Record<number, string>)[code] ?? null;
}

const HEALTH_KEYS = ["maxFails", "ejectBaseMs", "ejectMaxMs", "slowStartMs", "rise", "fall", "check", "checkIntervalMs", "checkTimeoutMs", "checkPort"];

/** Checks ProxyOptions.health; throws a TypeError naming the problem. */
function checkHealth(h: ProxyOptions["health"]): void {
  if (h === undefined) return;
  if (typeof h !== "object" || h === null) throw new TypeError("Proxy: health must be an object");
  for (const [k, v] of Object.entries(h)) {
    if (!HEALTH_KEYS.includes(k)) throw new TypeError(`Proxy: health.${k}: unknown (one of ${HEALTH_KEYS.join(", ")})`);
    if (v === undefined) continue;
    if (k === "check") {
      if (typeof v !== "string") throw new TypeError(`Proxy: health.check must be "none", "tcp" or "http:/path", got ${JSON.stringify(v)}`);
      try { parseHealthCheck(v); } catch (e) { throw new TypeError(`Proxy: ${(e as Error).message}`); }
      continue;
    }
    const lo = k === "maxFails" || k === "slowStartMs" || k === "checkPort" ? 0 : 1;
    const hi = k === "checkPort" ? 65535 : 2 ** 31 - 1;
    if (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi) {
      throw new TypeError(`Proxy: health.${k} must be a whole number ${lo}..${hi}, got ${JSON.stringify(v)}`);
    }
  }
}

/** Checks proxy options; throws TypeError / HostError naming the problem. Returns the core's config fields. */
export function proxyConfig(opts: ProxyOptions): Pick<ServerOptions, "proxyUpstreams" | "proxyBalance" | "proxyConnectTimeoutMs"
  | "proxyUpstreamTimeoutMs" | "proxyKeepalive" | "proxyHashKey" | "proxyPeerAddrs" | "proxyRelay"> & { protocol: "proxy-tcp" | "proxy-http" } {
  const mode = opts.proxyMode ?? "http";
  if (mode !== "tcp" && mode !== "http") throw new TypeError(`Proxy: mode must be "tcp" or "http", got ${JSON.stringify(mode)}`);
  const balance = opts.balance ?? "wrr";
  const code = (BALANCE_POLICIES as Record<string, number>)[balance];
  if (code === undefined) throw new TypeError(`Proxy: balance must be one of ${Object.keys(BALANCE_POLICIES).join(", ")}, got ${JSON.stringify(balance)}`);
  if (code === abi.BAL_HASH && mode === "tcp") throw new TypeError("Proxy: balance hash needs a request key (http mode); tcp mode has ip-hash");
  const key = opts.hashKey;
  if (key !== undefined) {
    if (mode === "tcp") throw new TypeError("Proxy: hashKey is for http mode");
    const name = key.startsWith("header:") ? key.slice(7) : null;
    if (key !== "path" && (name === null || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/.test(name))) {
      throw new TypeError(`Proxy: hashKey must be "path" or "header:NAME" (a field name, at most ${abi.HASH_KEY_NAME_MAX} bytes), got ${JSON.stringify(key)}`);
    }
  }
  if (code === abi.BAL_HASH && key === undefined) throw new TypeError('Proxy: balance hash needs hashKey ("path" or "header:NAME")');
  const ut = opts.upstreamTimeoutMs ?? 60_000;
  if (!Number.isInteger(ut) || ut < 0) throw new TypeError(`Proxy: upstreamTimeoutMs must be a whole number >= 0, got ${ut}`);
  const ka = opts.upstreamKeepalive ?? -1; // unset: the core's default (proxy/http.ts, 1024)
  if (opts.upstreamKeepalive !== undefined && (!Number.isInteger(ka) || ka < 0 || ka > 65536)) throw new TypeError(`Proxy: upstreamKeepalive must be a whole number 0..65536, got ${ka}`);
  if (!Array.isArray(opts.upstreams) || opts.upstreams.length === 0) throw new TypeError("Proxy: at least one upstream is needed");
  if (opts.upstreams.length > abi.PXC_MAX_UPSTREAMS) throw new TypeError(`Proxy: at most ${abi.PXC_MAX_UPSTREAMS} upstreams`);
  const ups = opts.upstreams.map((u) => {
    if (!isIP(u.host)) {
      throw new HostError(`Proxy: upstream '${u.host}' is not an IP address; the constructor does not resolve names: ` +
        "resolve it first (resolveUpstreams is exported by wasm-reactor)");
    }
    if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) throw new TypeError(`Proxy: upstream port must be 1..65535, got ${u.port}`);
    const weight = u.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 1 || weight > abi.UPSTREAM_WEIGHT_MAX) throw new TypeError(`Proxy: upstream weight must be 1..${abi.UPSTREAM_WEIGHT_MAX}, got ${weight}`);
    return { host: u.host, port: u.port, weight };
  });
  const relay = opts.relay ?? DEFAULT_RELAY;
  if (relay !== "copy" && relay !== "splice") throw new TypeError(`Proxy: relay must be "copy" or "splice", got ${JSON.stringify(relay)}`);
  if (opts.relay !== undefined && mode !== "tcp") throw new TypeError("Proxy: relay is for tcp mode");
  const ct = opts.connectTimeoutMs ?? 5000;
  if (!Number.isInteger(ct) || ct < 0) throw new TypeError(`Proxy: connectTimeoutMs must be a whole number >= 0, got ${ct}`);
  checkHealth(opts.health);
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new TypeError(`Proxy: seed must be an integer 0..2^32-1, got ${seed}`);
  return {
    protocol: mode === "http" ? "proxy-http" : "proxy-tcp",
    proxyUpstreams: ups, proxyBalance: { ...opts.health, policy: balance as BalancePolicyName, seed }, proxyConnectTimeoutMs: ct,
    proxyUpstreamTimeoutMs: ut, proxyKeepalive: ka, proxyHashKey: key ?? null, proxyPeerAddrs: mode === "http",
    proxyRelay: relay === "splice" ? abi.RELAY_SPLICE : abi.RELAY_COPY,
  };
}

/** Resolves upstream names to their first address (dns.lookup, as the rest of the host). */
export async function resolveUpstreams(ups: Upstream[]): Promise<Upstream[]> {
  return Promise.all(ups.map(async (u) => isIP(u.host) ? u : { ...u, host: (await resolveHost(u.host))[0] }));
}

export class Proxy {
  readonly server: Server;
  private readonly upstreams: { host: string; port: number }[];

  constructor(opts: ProxyOptions) {
    const cfg = proxyConfig(opts);
    this.upstreams = cfg.proxyUpstreams!;
    const { proxyMode: _m, balance: _b, upstreams: _u, connectTimeoutMs: _c, seed: _s, health: _h, hashKey: _k,
      upstreamTimeoutMs: _t, upstreamKeepalive: _a, ...rest } = opts;
    this.server = new Server({ ...rest, ...cfg });
  }

  get port(): number { return this.server.port; }
  run(): void { this.server.run(); }
  attach(): void { this.server.attach(); }
  stop(): void { this.server.stop(); }
  /** Graceful: stop accepting; pairs in flight finish (at most graceMs); options.delayMs: /readyz says 503 that long first. */
  shutdown(graceMs = 10_000, options: ShutdownOptions = {}): Promise<ShutdownResult> { return this.server.shutdown(graceMs, options); }
  /** The metrics listener's port (options.metrics), or -1. */
  get metricsPort(): number { return this.server.metricsPort; }
  close(): void { this.server.close(); }

  /** The core's counters and, per upstream, the upstream table's (abi.ts UPSTAT_*). */
  stats() {
    const core = this.server.reactor.loop.core;
    const table = readUpstreamStats(core.x);
    const upstreams: UpstreamStats[] = this.upstreams.map((u, k) => ({
      address: isIP(u.host) === 6 ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`, ...table[k],
      check: { probes: core.x.proxyHealthProbes(k), failed: core.x.proxyHealthFailed(k), last: checkOutcome(core.x.proxyHealthLast(k)) },
    }));
    const x = core.x;
    const f64 = new Float64Array(x.memory.buffer);
    const http = (k: number) => f64[(x.proxyHttpStats() + k) >> 3];
    const withHttp = upstreams.map((s, k) => {
      const p = x.proxyHttpUpstreamStats(k);
      const reuses = f64[(p + abi.PXH_REUSES) >> 3], connects = f64[(p + abi.PXH_CONNECTS) >> 3];
      return { ...s, reuses, connects, reuseRatio: reuses + connects > 0 ? reuses / (reuses + connects) : 0 };
    });
    return {
      ...this.server.stats(), noUpstream: core.ctlI32(abi.STAT_PROXY_NO_UPSTREAM), upstreams: withHttp,
      http: {
        retries: http(abi.PXG_RETRIES), answered502: http(abi.PXG_502), answered503: http(abi.PXG_503),
        answered504: http(abi.PXG_504), refused4xx: http(abi.PXG_4XX), truncated: http(abi.PXG_TRUNCATED),
        poolDropped: http(abi.PXG_POOL_DROPPED),
      },
    };
  }

}
