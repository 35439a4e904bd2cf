// A server of one of the core's built-in protocols (echo, HTTP) on TCP
// listeners. The protocol runs entirely in the core; this file only opens the
// sockets, sizes the tables to the fd limit and chooses how the loop runs.
//
// The constructor is synchronous, so it takes IP addresses only: a name
// (`localhost`) is resolved first with resolveHost() and its addresses passed
// as `hosts`; the core accepts on every listener (one `listen(fd, proto)`
// each) into one set of connections.
import { backendName } from "./backend/types.ts";
import { ioBackendName, defaultIoBackendName, resolveServerIoBackend } from "./io-backend.ts";
import { isIP } from "node:net";
import * as abi from "../assembly/abi.ts";
import { Reactor, type ReactorOptions } from "./reactor.ts";
import { listenAll, HostError, type Listener } from "./net.ts";
import { raiseFdLimit, libc } from "./libc.ts";
import { FileServer } from "./files.ts";
import { parseMetricsAddress, setReady } from "./metrics.ts";

export interface ServerOptions extends ReactorOptions {
  protocol: "echo" | "http" | "proxy-tcp" | "proxy-http";
  /** An IP address to listen on (default 127.0.0.1; `::` is dual-stack). Not a name: see `hosts`. */
  host?: string;
  /** Several IP addresses, one listener each, all on one port: e.g. `await resolveHost("localhost")`. */
  hosts?: string[];
  port?: number;
  backlog?: number;
  reusePort?: boolean;
  /** HTTP: the directory to serve. */
  root?: string;
  /** SO_SNDBUF of accepted connections (bytes); default: kernel autotuning. */
  sendBuffer?: number;
  /**
   * "HOST:PORT" (an IP address; port 0: any free one): a listener of its own
   * serving GET /metrics (Prometheus text), /healthz and /readyz from the
   * core. It stays open while a graceful shutdown drains the service.
   */
  metrics?: string;
}

/** Options of `server.shutdown()` beyond the grace period. */
export interface ShutdownOptions {
  /**
   * ms to wait before the drain begins: /readyz answers 503 at once and the
   * service keeps accepting meanwhile, so a load balancer stops sending first
   * (HAProxy's grace, Envoy's drain time). Default 0.
   */
  delayMs?: number;
}

/** What `await server.shutdown()` tells. */
export interface ShutdownResult {
  /** Connections still serving a request when the shutdown began (idle ones were closed at once). */
  inProgress: number;
  /** Connections that did not finish: closed at the end of the grace period, or left open by stop(). 0: all finished. */
  forced: number;
}

export class Server {
  readonly reactor: Reactor;
  readonly listeners: Listener[];
  readonly files: FileServer | null;

  constructor(opts: ServerOptions) {
    if (opts.protocol !== "http" && opts.protocol !== "echo" && opts.protocol !== "proxy-tcp" && opts.protocol !== "proxy-http") {
      throw new TypeError(`Server: protocol must be "http", "echo", "proxy-tcp" or "proxy-http", got ${JSON.stringify(opts.protocol)}`);
    }
    // Before any socket is opened: a bad name leaks nothing.
    if (opts.backend !== undefined) backendName(opts.backend, "Server: backend");
    // threadpool, or io_uring forced where it is unavailable: refused before any socket is open.
    resolveServerIoBackend(opts.ioBackend === undefined ? defaultIoBackendName() : ioBackendName(opts.ioBackend, "Server: ioBackend"));
    const { hard } = raiseFdLimit();
    // fd-indexed tables cover every fd this process may open.
    const maxFds = opts.maxFds ?? Math.min(hard, 1 << 20);
    if (opts.host !== undefined && opts.hosts !== undefined) throw new HostError("Server: give host or hosts, not both");
    const hosts = opts.hosts ?? [opts.host ?? "127.0.0.1"];
    const metrics = opts.metrics === undefined ? null : parseMetricsAddress(opts.metrics);
    if (metrics !== null && !isIP(metrics.host)) {
      throw new HostError(`Server: metrics host '${metrics.host}' is not an IP address; the constructor does not resolve names`);
    }
    const named = hosts.find((h) => !isIP(h));
    if (named !== undefined) {
      throw new HostError(`Server: '${named}' is not an IP address; the constructor does not resolve names: ` +
        `pass { hosts: await resolveHost(${JSON.stringify(named)}) } (resolveHost is exported by wasm-reactor)`);
    }
    this.listeners = listenAll(hosts, {
      port: opts.port, backlog: opts.backlog, reusePort: opts.reusePort,
      deferAccept: opts.protocol === "http" || opts.protocol === "proxy-http" ? 1 : 0, sendBuffer: opts.sendBuffer,
    });
    let files: FileServer | null = null;
    let metricsListeners: Listener[] = [];
    try {
      if (metrics !== null) metricsListeners = listenAll([metrics.host], { port: metrics.port, backlog: 128 });
      files = opts.protocol === "http" ? new FileServer(opts.root ?? "public", { precompressed: opts.precompressed }) : null;
      this.reactor = new Reactor({ ...opts, maxFds, files: files ?? undefined });
    } catch (e) {
      for (const l of [...this.listeners, ...metricsListeners]) libc.close(l.fd);
      files?.close();
      throw e;
    }
    this.files = files;
    this.metricsListener = metricsListeners[0] ?? null;
    const proto = opts.protocol === "http" ? abi.PROTO_HTTP : opts.protocol === "proxy-tcp" ? abi.PROTO_PROXY_TCP
      : opts.protocol === "proxy-http" ? abi.PROTO_PROXY_HTTP : abi.PROTO_ECHO;
    const all: [Listener, number][] = this.listeners.map((l) => [l, proto]);
    if (this.metricsListener) all.push([this.metricsListener, abi.PROTO_METRICS]);
    for (const [l, p] of all) {
      if (this.reactor.loop.core.x.listen(l.fd, p) < 0) {
        this.close();
        throw new Error(`listen: fd ${l.fd} beyond the core's tables, or more than the core's 16 listeners`);
      }
    }
    this.reactor.loop.flush();
  }

  /** The first listener (the only one unless several hosts were given). */
  get listener(): Listener { return this.listeners[0]; }
  /** The port every listener is bound to. */
  get port(): number { return this.listeners[0].port; }
  /** The metrics listener (options.metrics), if any. */
  readonly metricsListener: Listener | null;
  /** The metrics listener's port, or -1. */
  get metricsPort(): number { return this.metricsListener?.port ?? -1; }
  /**
   * What /readyz says besides the core's own shutdown: false makes it answer
   * 503 (and wasm_reactor_ready 0) while the service still serves.
   */
  setReady(ready: boolean): void { setReady(this.reactor.loop.core, ready); }
  /** Blocks this thread serving until stop() or SIGINT/SIGTERM. */
  run(): void { this.reactor.run(); }
  /** Serves from inside this thread's Node event loop. */
  attach(): void { this.reactor.attach(); }
  stop(): void { this.reactor.stop(); }
  /**
   * Graceful shutdown: stop accepting, close idle connections, let requests
   * in progress finish (at most `graceMs`, then the rest is closed), then
   * the loop stops by itself (run() returns; an attached loop detaches).
   * The promise settles once the loop has stopped, so `await
   * server.shutdown(1000)` is the end of serving; calling it again returns
   * the same promise. Call it while the loop runs: on a loop that is not
   * running it settles at once.
   */
  shutdown(graceMs = 10_000, options: ShutdownOptions = {}): Promise<ShutdownResult> {
    if (this.shuttingDown) return this.shuttingDown;
    const delay = options.delayMs ?? 0;
    if (!Number.isInteger(delay) || delay < 0) throw new TypeError(`shutdown: delayMs must be a whole number >= 0, got ${delay}`);
    this.setReady(false);
    if (delay > 0) {
      // The loop's own timer: the drain begins inside the loop, as if called there.
      this.shuttingDown = new Promise((resolve) => {
        this.reactor.setTimeout(delay, () => { this.shuttingDown = null; resolve(this.shutdown(graceMs)); });
      });
      return this.shuttingDown;
    }
    const r = this.reactor;
    // Equal deadlines fire in FIFO order, so this timer runs just before the
    // core's grace timer closes what is left: it counts what is cut off.
    let atDeadline = -1;
    const deadline = r.setTimeout(graceMs, () => { atDeadline = this.stats().liveConnections; });
    const stopped = r.whenStopped();
    r.loop.core.x.beginShutdown(graceMs);
    // Idle connections close through the run queue: count what is left once
    // it ran (at once outside a phase; inside one, after the batch).
    let inProgress = -1;
    const count = () => { inProgress = this.stats().liveConnections; };
    if (r.loop.inPhase) r.defer(count);
    else { r.loop.flush(); count(); }
    this.shuttingDown = stopped.then(() => {
      r.cancelTimer(deadline);
      return { inProgress: Math.max(inProgress, 0), forced: atDeadline >= 0 ? atDeadline : this.stats().liveConnections };
    });
    return this.shuttingDown;
  }
  private shuttingDown: Promise<ShutdownResult> | null = null;
  /** Closes every connection still open (stop() leaves them), the loop, the listener and the file cache. */
  close(): void {
    const loop = this.reactor.loop;
    if (!loop.inPhase && this.stats().liveConnections > 0) {
      loop.stop();
      loop.core.x.closeAll();
      loop.flush();
    }
    this.reactor.close();
    this.closeServiceListeners();
    if (this.metricsListener) libc.close(this.metricsListener.fd);
    this.files?.close();
  }

  /**
   * Closes the service's listening sockets (the metrics listener stays):
   * after a finished drain, so that a process that keeps serving /metrics
   * (the CLI's first worker, while the others drain) leaves no connection
   * waiting in a backlog that nobody accepts from. Once only.
   */
  closeServiceListeners(): void {
    if (this.serviceListenersClosed) return;
    this.serviceListenersClosed = true;
    for (const l of this.listeners) libc.close(l.fd);
  }
  private serviceListenersClosed = false;
  stats() { return this.reactor.stats(); }
}
