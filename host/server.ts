// A server of one of the core's built-in protocols (echo, HTTP) on a TCP
// listener. The protocol runs entirely in the core; this file only opens the
// socket, sizes the tables to the fd limit and chooses how the loop runs.
import * as abi from "../assembly/abi.ts";
import { Reactor, type ReactorOptions } from "./reactor.ts";
import { listenTcp, type Listener } from "./net.ts";
import { raiseFdLimit, libc } from "./libc.ts";
import { FileServer } from "./files.ts";

export interface ServerOptions extends ReactorOptions {
  protocol: "echo" | "http";
  host?: string;
  port?: number;
  backlog?: number;
  reusePort?: boolean;
  /** HTTP: the directory to serve. */
  root?: string;
  /** SO_SNDBUF of accepted connections (bytes); default: kernel autotuning. */
  sendBuffer?: number;
}

export class Server {
  readonly reactor: Reactor;
  readonly listener: Listener;
  readonly files: FileServer | null;

  constructor(opts: ServerOptions) {
    const { hard } = raiseFdLimit();
    // fd-indexed tables cover every fd this process may open.
    const maxFds = opts.maxFds ?? Math.min(hard, 1 << 20);
    this.listener = listenTcp({
      host: opts.host, port: opts.port, backlog: opts.backlog, reusePort: opts.reusePort,
      deferAccept: opts.protocol === "http" ? 1 : 0, sendBuffer: opts.sendBuffer,
    });
    try {
      this.files = opts.protocol === "http" ? new FileServer(opts.root ?? "public", { precompressed: opts.precompressed }) : null;
      this.reactor = new Reactor({ ...opts, maxFds, files: this.files ?? undefined });
    } catch (e) {
      libc.close(this.listener.fd);
      throw e;
    }
    const proto = opts.protocol === "http" ? abi.PROTO_HTTP : abi.PROTO_ECHO;
    if (this.reactor.loop.core.x.listen(this.listener.fd, proto) < 0) throw new Error("listen: fd beyond the core's tables");
    this.reactor.loop.flush();
  }

  get port(): number { return this.listener.port; }
  /** Blocks this thread serving until stop() or SIGINT/SIGTERM. */
  run(): void { this.reactor.run(); }
  /** Serves from inside this thread's Node event loop. */
  attach(): void { this.reactor.attach(); }
  stop(): void { this.reactor.stop(); }
  /**
   * Graceful shutdown: stop accepting, close idle connections, let requests
   * in progress finish (at most `graceMs`), then the loop stops by itself
   * (run() returns; an attached loop detaches). Returns the connections left.
   */
  shutdown(graceMs = 10_000): number {
    const left = this.reactor.loop.core.x.beginShutdown(graceMs);
    this.reactor.loop.flush();
    return left;
  }
  close(): void { this.reactor.close(); libc.close(this.listener.fd); this.files?.close(); }
  stats() { return this.reactor.stats(); }
}
