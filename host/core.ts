// Loads the core (build/core.wasm), writes its config into the control block
// and keeps typed-array views of linear memory fresh: memory.grow detaches the
// old ArrayBuffer, and a detached view handed to koffi becomes NULL (EFAULT
// with no exception), so every view is re-created when the buffer changes.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as abi from "../assembly/abi.ts";
import { writeBalanceConfig, type BalanceConfig } from "./balance.ts";
import type { PumpExports } from "./pump.ts";
import { addressOf } from "./libc.ts";
import { sockaddrBytes } from "./net.ts";
import { CoreAbort } from "./pump.ts";
import { coreLogLevel, logLevelName, type LogLevelName } from "./log.ts";

export { CoreAbort };

export interface CoreOptions {
  /** Absolute address of linear memory; replay and fuzzing pass () => 0 (no OS). */
  addressOf?: (buf: ArrayBuffer) => number;
  /** Loop time before init (replay passes the recorded one). */
  time?: [number, number];
}

export interface CoreConfig {
  maxFds: number;
  mode: "lt" | "et";
  idleTimeoutMs: number;
  headerTimeoutMs: number;
  writeBufMax: number;
  maxLine: number;
  maxHeader: number;
  maxHeaders: number;
  maxBody: number;
  maxEvents: number;
  /** HTTP: one line per response through log("access", line); the CLI writes them to stdout. */
  accessLog: boolean;
  /** "combined" (nginx/Apache) or "json" (one object per line). */
  accessLogFormat: "combined" | "json";
  readBuf: number;
  /** HTTP: list directories that have no index.html. */
  listing: boolean;
  /**
   * HTTP: the Cache-Control value of file responses (200, 206, 304) and
   * listings; null sends none. Default "no-cache": caches keep the file but
   * revalidate it with the ETag/Last-Modified sent (cheap 304s), so nothing
   * stale is served after a deploy.
   */
  cacheControl: string | null;
  /** HTTP: Access-Control-Allow-Origin: * on every response; OPTIONS preflights get 204. */
  cors: boolean;
  /** HTTP: serve X.br / X.gz to clients that accept br / gzip, when they exist beside X. */
  precompressed: boolean;
  /** Proxy: the upstreams (IP addresses), weights >= 1. */
  proxyUpstreams: { host: string; port: number; weight: number }[];
  /** Proxy: balancing policy, PRNG seed and upstream health settings (host/balance.ts), written into the core's BCFG record; recorded, so a replay picks the same. */
  proxyBalance: Partial<BalanceConfig>;
  /** Proxy: connect timeout (ms); 0 = none. */
  proxyConnectTimeoutMs: number;
  /** Proxy, http mode: ms from a request's bytes to the response head before a 504; 0 = none. */
  proxyUpstreamTimeoutMs: number;
  /** Proxy, http mode: idle keep-alive connections kept per upstream (0: none; < 0: the core's default, 1024). */
  proxyKeepalive: number;
  /** Proxy, tcp mode: how bytes move (abi.ts RELAY_*: copy through linear memory, or splice(2) through a pipe). */
  proxyRelay: number;
  /** Proxy, http mode: the request key of balance hash ("path" or "header:NAME"), or null. */
  proxyHashKey: string | null;
  /** Proxy, http mode: accepts record client addresses (X-Forwarded-For) even without ip-hash. */
  proxyPeerAddrs: boolean;
  /** The most verbose level of the core's log lines: it does not build the others (the Loop sets it from its logger). */
  logLevel: LogLevelName;
  /** Accepted connections open at most (0: no cap); at the cap, new connections wait in the listen queue. */
  maxConnections: number;
  /** http: files the open-file cache may keep open (0: one per entry, 2048); beyond, a response done with a file closes an unused one. */
  fileCacheFds: number;
  /** Metrics: other workers' snapshots this core's /metrics sums (OP_METRICS asks the host for them); 0: none. */
  metricsPeers: number;
  /**
   * Fairness (http, echo): requests one connection may start per loop tick;
   * the rest of its pipelined input waits for the next tick, so one client
   * cannot hold the loop. 0: the core's default (16); -1: no limit.
   */
  tickRequests: number;
  /** Fairness (http, echo): bytes one connection may read per tick. 0: the core's default (256 KiB); -1: no limit. */
  tickBytes: number;
  /** Stream connections (Reactor.stream): write high watermark in bytes; 0: min(64 KiB, writeBufMax / 2). */
  writeHighWaterMark: number;
  /** Stream connections: low watermark (reading resumes and onDrain fires below it); 0: a quarter of the high one. */
  writeLowWaterMark: number;
}

export const defaultCoreConfig: CoreConfig = {
  maxFds: 1024,
  mode: "lt",
  idleTimeoutMs: 30_000,
  headerTimeoutMs: 60_000,
  writeBufMax: 256 * 1024,
  maxLine: 8 * 1024,
  maxHeader: 16 * 1024,
  maxHeaders: 100,
  maxBody: 1024 * 1024,
  maxEvents: 1024,
  accessLog: false,
  accessLogFormat: "combined",
  readBuf: 32 * 1024,
  listing: false,
  cacheControl: "no-cache",
  cors: false,
  precompressed: false,
  proxyUpstreams: [],
  proxyBalance: {},
  proxyConnectTimeoutMs: 5_000,
  proxyUpstreamTimeoutMs: 60_000,
  proxyKeepalive: -1, // the core's default (proxy/http.ts DEFAULT_KEEPALIVE: 1024)
  proxyRelay: abi.RELAY_COPY,
  proxyHashKey: null,
  proxyPeerAddrs: false,
  logLevel: "info",
  maxConnections: 0,
  fileCacheFds: 0,
  metricsPeers: 0,
  tickRequests: 0,
  tickBytes: 0,
  writeHighWaterMark: 0,
  writeLowWaterMark: 0,
};

/**
 * The WebAssembly objects in the public types, described structurally: a
 * consumer's declarations may have no WebAssembly namespace at all (it lives
 * in lib.dom, and @types/node 20 has none), and the real WebAssembly.Memory
 * and WebAssembly.Module fit these wherever it does exist.
 */
export interface CoreMemory { readonly buffer: ArrayBuffer | SharedArrayBuffer; grow(pages: number): number }
/** A compiled core (a WebAssembly.Module, from compileCore()). */
export type CoreModule = object;

/**
 * Why a Cache-Control value cannot be sent, or null if it can: it goes into
 * every file response as is, so it must be one line of printable ASCII.
 */
export function cacheControlProblem(v: string): string | null {
  if (v.length === 0) return "is empty";
  if (v.length > abi.CACHE_CONTROL_MAX) return `is longer than ${abi.CACHE_CONTROL_MAX} bytes`;
  if (!/^[\x20-\x7e]*$/.test(v)) return "must be printable ASCII (no control characters, CR or LF)";
  if (v.trim() !== v) return "has leading or trailing spaces";
  return null;
}

/** The core's exports, as the host uses them: the pump's phases (host/pump.ts) and the rest. */
export interface CoreExports extends PumpExports {
  memory: CoreMemory;
  ctlAddress(): number;
  configText(): number;
  init(): number;
  /** The completion phase: k completions of earlier rounds are in the CQ (at most CTL_CQ_ROOM). */
  reaped(k: number): number;
  register(fd: number, interest: number, id: number): number;
  modify(fd: number, interest: number): number;
  deregister(fd: number, closing: number): number;
  timerStart(ms: number, repeatMs: number): number;
  timerStop(id: number): number;
  defer(id: number): number;
  listen(fd: number, proto: number): number;
  debugTrapFd(fd: number): void;
  /** Fault injection: trap once when the next completion of fd's own I/O is handled (inside complete() or reaped()). */
  debugTrapCompletion(fd: number): void;
  timerIsLive(id: number): number;
  checkInvariants(): number;
  beginShutdown(graceMs: number): number;
  closeAll(): number;
  /** The upstream record the host writes before init (abi.ts PXC_*). */
  proxyConfig(): number;
  /** The fairness and watermark record (abi.ts FCFG_*), written before init. */
  fairnessConfig(): number;
  /** Stream connections (assembly/reactor/stream.ts): JS copies write data to the stage, then streamWrite. */
  streamStage(): number;
  streamStageSize(): number;
  streamAdopt(fd: number, id: number, high: number, low: number): number;
  streamWrite(fd: number, id: number, n: number): number;
  streamBuffered(fd: number, id: number): number;
  streamEnd(fd: number, id: number): number;
  streamDestroy(fd: number, id: number): number;
  proxyHttpUpstreamStats(u: number): number;
  proxyHttpStats(): number;
  proxyHashKeyConfig(): number;
  /** The balance config record (abi.ts BCFG_*), written before init. */
  balanceConfig(): number;
  proxyStatsBuffer(): number;
  proxyStatsWrite(ptr: number, cap: number): number;
  proxyLatencyLe(i: number): number;
  /** Active health checks (assembly/proxy/health.ts): probes finished, bad ones, the last one's outcome, CHECK_* in force. */
  proxyHealthProbes(u: number): number;
  proxyHealthFailed(u: number): number;
  proxyHealthLast(u: number): number;
  proxyHealthKind(): number;
  /** The ops config record (abi.ts OPS_*), written before init. */
  opsConfig(): number;
  /** The metrics record (abi.ts MX_*). */
  metricsRecord(): number;
  /** Takes this core's metrics snapshot (abi.ts MS_*) and returns its address. */
  metricsSnapshot(): number;
  metricsSnapshotSize(): number;
}

let compiled: CoreModule | null = null;

/** Where the built core lives (build/core.wasm beside host/ and dist/). */
export const corePath = fileURLToPath(new URL("../build/core.wasm", import.meta.url));

export function compileCore(path = corePath): CoreModule {
  if (!compiled) compiled = new WebAssembly.Module(readFileSync(path));
  return compiled;
}

export class Core {
  /** The exports; a recorder replaces them with recording wrappers (host/record.ts recordCore). */
  x: CoreExports;
  /** Called by setTime() with the new times (the recorder's hook: no import of it here). */
  onTime: ((mono: number, wall: number) => void) | null = null;
  private readonly addressOf: (buf: ArrayBuffer) => number;
  readonly ctl: number;
  /** Absolute address of linear memory. */
  base = 0;
  i32!: Int32Array;
  f64!: Float64Array;
  u8!: Uint8Array;
  private buffer: ArrayBuffer | null = null;

  constructor(config: CoreConfig, module: CoreModule = compileCore(), options: CoreOptions = {}) {
    this.addressOf = options.addressOf ?? addressOf;
    const instance = new WebAssembly.Instance(module, {
      env: {
        abort: (_m: number, _f: number, line: number, col: number) => {
          throw new CoreAbort(`core abort at ${line}:${col}`);
        },
        trace: () => {},
        seed: () => 42,
      },
    });
    this.x = instance.exports as unknown as CoreExports;
    this.ctl = this.x.ctlAddress();
    this.refresh();
    const c = this.ctl >> 2;
    const i = this.i32;
    i[c + (abi.CFG_MAX_FDS >> 2)] = config.maxFds;
    i[c + (abi.CFG_MODE >> 2)] = config.mode === "et" ? abi.MODE_ET : abi.MODE_LT;
    i[c + (abi.CFG_IDLE_TIMEOUT >> 2)] = config.idleTimeoutMs;
    i[c + (abi.CFG_HEADER_TIMEOUT >> 2)] = config.headerTimeoutMs;
    i[c + (abi.CFG_WRITE_BUF_MAX >> 2)] = config.writeBufMax;
    i[c + (abi.CFG_MAX_LINE >> 2)] = config.maxLine;
    i[c + (abi.CFG_MAX_HEADER >> 2)] = config.maxHeader;
    i[c + (abi.CFG_MAX_HEADERS >> 2)] = config.maxHeaders;
    i[c + (abi.CFG_MAX_BODY >> 2)] = config.maxBody;
    i[c + (abi.CFG_MAX_EVENTS >> 2)] = config.maxEvents;
    if (config.accessLogFormat !== "combined" && config.accessLogFormat !== "json") {
      throw new TypeError(`accessLogFormat must be "combined" or "json", got ${JSON.stringify(config.accessLogFormat)}`);
    }
    i[c + (abi.CFG_ACCESS_LOG >> 2)] = !config.accessLog ? abi.ACCESS_LOG_OFF
      : config.accessLogFormat === "json" ? abi.ACCESS_LOG_JSON : abi.ACCESS_LOG_COMBINED;
    i[c + (abi.CFG_READ_BUF >> 2)] = config.readBuf;
    i[c + (abi.CFG_LISTING >> 2)] = config.listing ? 1 : 0;
    i[c + (abi.CFG_CORS >> 2)] = config.cors ? 1 : 0;
    i[c + (abi.CFG_PRECOMPRESSED >> 2)] = config.precompressed ? 1 : 0;
    const cc = config.cacheControl;
    if (cc !== null && cc !== undefined) {
      const why = cacheControlProblem(cc);
      if (why) throw new TypeError(`cacheControl ${JSON.stringify(cc)} ${why}`);
      this.u8.set(Buffer.from(cc, "latin1"), this.x.configText() + abi.CFGT_CACHE_CONTROL);
    }
    i[c + (abi.CFG_CACHE_CONTROL >> 2)] = cc ? cc.length : 0;
    const ups = config.proxyUpstreams ?? [];
    if (ups.length > abi.PXC_MAX_UPSTREAMS) throw new TypeError(`at most ${abi.PXC_MAX_UPSTREAMS} upstreams, got ${ups.length}`);
    const pxc = this.x.proxyConfig();
    i[pxc >> 2] = ups.length;
    ups.forEach((u, k) => {
      const e = pxc + 4 + k * abi.PXU_SIZE;
      const sa = sockaddrBytes(u.host, u.port);
      i[(e + abi.PXU_WEIGHT) >> 2] = u.weight;
      i[(e + abi.PXU_SA_LEN) >> 2] = sa.length;
      this.u8.set(sa, e + abi.PXU_SA);
    });
    i[c + (abi.CFG_PROXY_CONNECT_TIMEOUT >> 2)] = config.proxyConnectTimeoutMs ?? 0;
    i[c + (abi.CFG_METRICS_PEERS >> 2)] = config.metricsPeers ?? 0;
    writeBalanceConfig(this.x.memory, this.x.balanceConfig(), config.proxyBalance ?? {});
    i[c + (abi.CFG_PEER_ADDRS >> 2)] = config.proxyBalance?.policy === "ip-hash" || config.proxyPeerAddrs ? 1 : 0;
    i[c + (abi.CFG_PROXY_UPSTREAM_TIMEOUT >> 2)] = config.proxyUpstreamTimeoutMs ?? 60_000;
    i[c + (abi.CFG_PROXY_KEEPALIVE >> 2)] = config.proxyKeepalive ?? -1; // < 0: the core's default (proxy/http.ts)
    i[c + (abi.CFG_RELAY >> 2)] = config.proxyRelay ?? abi.RELAY_COPY;
    const key = config.proxyHashKey ?? null;
    i[c + (abi.CFG_PROXY_HASH_KEY >> 2)] = key === null ? 0 : key === "path" ? abi.HASH_KEY_PATH : abi.HASH_KEY_HEADER;
    if (key !== null && key !== "path") {
      const name = Buffer.from(key.slice("header:".length).toLowerCase(), "latin1");
      const rec = this.x.proxyHashKeyConfig();
      i[rec >> 2] = name.length;
      this.u8.set(name, rec + 4);
    }
    i[(this.x.opsConfig() + abi.OPS_LOG_LEVEL) >> 2] = coreLogLevel(logLevelName(config.logLevel ?? "info", "logLevel"));
    const maxConns = config.maxConnections ?? 0;
    if (!(Number.isInteger(maxConns) && maxConns >= 0 && maxConns <= 2 ** 31 - 1)) {
      throw new RangeError(`maxConnections must be a whole number >= 0 (0: no cap), got ${maxConns}`);
    }
    i[c + (abi.CFG_MAX_CONNECTIONS >> 2)] = maxConns;
    const cacheFds = config.fileCacheFds ?? 0;
    if (!(Number.isInteger(cacheFds) && cacheFds >= 0 && cacheFds <= 2 ** 31 - 1)) {
      throw new RangeError(`fileCacheFds must be a whole number >= 0 (0: one per cache entry), got ${cacheFds}`);
    }
    i[c + (abi.CFG_FILE_CACHE_FDS >> 2)] = cacheFds;
    const fcfg = this.x.fairnessConfig();
    for (const [name, off] of [["tickRequests", abi.FCFG_TICK_REQUESTS], ["tickBytes", abi.FCFG_TICK_BYTES],
      ["writeHighWaterMark", abi.FCFG_WRITE_HIGH], ["writeLowWaterMark", abi.FCFG_WRITE_LOW]] as const) {
      const v = config[name] ?? 0;
      if (!Number.isInteger(v) || v < -1 || v > 0x7fffffff) throw new TypeError(`${name} must be an integer >= -1, got ${v}`);
      i[(fcfg + off) >> 2] = v;
    }
    const [mono, wall] = options.time ?? [performance.now(), Date.now()];
    this.f64[(this.ctl + abi.CTL_NOW) >> 3] = mono;
    this.f64[(this.ctl + abi.CTL_WALL) >> 3] = wall;
    this.x.init();
    this.refresh();
  }

  /** Re-creates the views (and the base address) if memory grew. Cheap when it did not. */
  refresh(): void {
    const buf = this.x.memory.buffer;
    if (buf === this.buffer) return;
    this.buffer = buf as ArrayBuffer;
    this.i32 = new Int32Array(buf);
    this.f64 = new Float64Array(buf);
    this.u8 = new Uint8Array(buf);
    this.base = this.addressOf(buf as ArrayBuffer);
    new DataView(buf).setBigUint64(this.ctl + abi.CTL_MEM_BASE, BigInt(this.base), true);
  }

  /** Loop time: monotonic ms for timers, wall-clock ms for Date headers. */
  setTime(mono: number, wall: number): void {
    this.onTime?.(mono, wall);
    this.refresh(); // the last core call may have grown memory; a detached view drops writes
    this.f64[(this.ctl + abi.CTL_NOW) >> 3] = mono;
    this.f64[(this.ctl + abi.CTL_WALL) >> 3] = wall;
  }

  // Fresh views first: a detached view reads undefined (an epoll_wait into NaN: EFAULT).
  ctlI32(off: number): number { this.refresh(); return this.i32[(this.ctl + off) >> 2]; }
  ctlF64(off: number): number { this.refresh(); return this.f64[(this.ctl + off) >> 3]; }
  /** An i32 field of the fairness record (abi.ts FCFG_*). */
  fairI32(off: number): number { this.refresh(); return this.i32[(this.x.fairnessConfig() + off) >> 2]; }

  /** Counters for observability (`stats()` on the loop). */
  stats() {
    return {
      accepted: this.ctlI32(abi.STAT_ACCEPTED),
      closed: this.ctlI32(abi.STAT_CLOSED),
      liveConnections: this.ctlI32(abi.STAT_LIVE_CONNS),
      requests: this.ctlI32(abi.STAT_REQUESTS),
      responses4xx: this.ctlI32(abi.STAT_RESPONSES_4XX),
      responses5xx: this.ctlI32(abi.STAT_RESPONSES_5XX),
      timeouts: this.ctlI32(abi.STAT_TIMEOUTS),
      overflows: this.ctlI32(abi.STAT_OVERFLOWS),
      acceptPaused: this.ctlI32(abi.STAT_ACCEPT_PAUSED) !== 0,
      timers: this.ctlI32(abi.STAT_TIMERS),
      writeBufferBytes: this.ctlI32(abi.STAT_WBUF_BYTES),
      readBuffersHeld: this.ctlI32(abi.STAT_RBUF_HELD),
      bytesIn: this.ctlF64(abi.STAT_BYTES_IN),
      bytesOut: this.ctlF64(abi.STAT_BYTES_OUT),
      trapsContained: this.ctlI32(abi.STAT_TRAPS),
      staleCompletions: this.ctlI32(abi.STAT_STALE_CQES),
      logLinesDropped: this.ctlI32(abi.STAT_LOG_DROPPED),
      /** Times a connection used its fairness budget up and was left for the next tick. */
      budgetDeferrals: this.ctlI32(abi.STAT_FAIR_DEFERRED) >>> 0,
      memoryBytes: this.x.memory.buffer.byteLength,
    };
  }
}
