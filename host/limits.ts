// What --max-connections asks of the process and the kernel: the fds it
// needs (refused at startup when the hard RLIMIT_NOFILE cannot give them),
// how it is split across workers, and the kernel settings that would cap
// it below what was asked (warned about once, at startup, read from
// /proc/sys). The README's "Kernel tuning" section says how to raise each.
import { readFileSync } from "node:fs";

/** fds a worker holds besides its connections: listeners, epoll, eventfds, the io_uring ring, signalfd, Node's own. */
export const FDS_PER_WORKER = 64;
/** fds serve's open-file cache may hold per worker (assembly/proto/httpfiles.ts: 2048 entries). */
export const FILE_CACHE_FDS = 2048;

export interface ConnectionBudget {
  /** --max-connections: accepted connections open at most, in the whole process. */
  maxConnections: number;
  workers: number;
  /** "serve": + the open-file cache; "proxy": two fds per connection (+ pooled idle upstream connections). */
  kind: "serve" | "echo" | "proxy";
  /** Proxy: upstreams (one health probe each per worker) and idle keep-alive connections kept per upstream and worker. */
  upstreams?: number;
  upstreamKeepalive?: number;
}

/** The RLIMIT_NOFILE the budget needs, and how it is made up (for the refusal line). */
export function fdsNeeded(b: ConnectionBudget): { total: number; perConnection: number; reserve: number } {
  const perConnection = b.kind === "proxy" ? 2 : 1;
  let perWorker = FDS_PER_WORKER + (b.kind === "serve" ? FILE_CACHE_FDS : 0);
  if (b.kind === "proxy") {
    const ups = b.upstreams ?? 1;
    // A pooled idle connection outlives its client: at most keepalive per upstream, and never more than the worker's clients.
    perWorker += ups + Math.min((b.upstreamKeepalive ?? 0) * ups, Math.ceil(b.maxConnections / b.workers));
  }
  const reserve = perWorker * b.workers;
  return { total: b.maxConnections * perConnection + reserve, perConnection, reserve };
}

/**
 * The cap when --max-connections is not given (HAProxy derives its maxconn
 * from ulimit -n the same way): what the soft fd limit holds once fds are
 * set aside for everything that is not a connection (fdsNeeded's reserve,
 * but at most a quarter of the limit, so a low limit still goes mostly to
 * connections). Without it, accepts take every fd and a request that needs
 * one more (a file to open, an upstream to connect to) fails with EMFILE
 * for as long as the connections that hold them wait for it: none is ever
 * served. With it, accepting stops at the cap (new connections wait in the
 * listen queue) while requests still find fds. serve's open-file cache is
 * held to its part of that reserve (fileCacheFds per worker; 0 for the
 * other commands), or cached files would take the fds back.
 */
export function defaultConnectionCap(soft: number, b: Omit<ConnectionBudget, "maxConnections">): { cap: number; reserve: number; fileCacheFds: number } {
  // (A proxy's idle upstream pool is bounded by its clients: take the limit itself as their bound.)
  const need = fdsNeeded({ ...b, maxConnections: soft });
  const reserve = Math.min(need.reserve, Math.floor(soft / 4));
  const cap = Math.floor((soft - reserve) / need.perConnection);
  // serve's open-file cache: its full 2048 per worker if the reserve holds them, else a quarter
  // of each worker's share of the reserve. The rest: the loop, listeners and Node's own fds
  // (about 30 in all for one worker), and the fds an open or a re-check holds for a moment.
  const fileCacheFds = b.kind !== "serve" ? 0 : reserve === need.reserve ? FILE_CACHE_FDS : Math.max(1, Math.floor(reserve / b.workers / 4));
  return { cap: Math.min(2 ** 31 - 1, Math.max(b.workers, cap)), reserve, fileCacheFds };
}

/**
 * Worker i's share of the cap: the cap split as evenly as whole numbers
 * allow (the first `cap % workers` workers take one more). Each worker
 * enforces its own share: SO_REUSEPORT hashes each new connection to one
 * worker's listen queue, and a worker at its share leaves its queue waiting
 * even if another has room.
 */
export function workerShare(cap: number, workers: number, i: number): number {
  return Math.floor(cap / workers) + (i < cap % workers ? 1 : 0);
}

/** Why the budget cannot run under a hard fd limit of `hard`, or null. */
export function fdLimitProblem(b: ConnectionBudget, hard: number): string | null {
  const need = fdsNeeded(b);
  if (need.total <= hard) return null;
  const per = need.perConnection === 1 ? "1 fd per connection" : `${need.perConnection} fds per connection (client and upstream)`;
  return `--max-connections ${b.maxConnections} needs RLIMIT_NOFILE >= ${need.total} (${per} + ${need.reserve} for ${b.workers} worker(s)` +
    `${b.kind === "serve" ? " and their open-file caches" : ""}), the hard limit is ${hard} (see "Kernel tuning" in the README)`;
}

export interface LimitWarning { event: string; msg: string; fields: Record<string, number | string> }

/** A /proc/sys value as numbers (ip_local_port_range has two), or null where it cannot be read. */
export function readSysctl(name: string, root = "/proc/sys"): number[] | null {
  try {
    const v = readFileSync(`${root}/${name.replace(/\./g, "/")}`, "utf8").trim().split(/\s+/).map(Number);
    return v.every(Number.isFinite) ? v : null;
  } catch {
    return null;
  }
}

export interface KernelLimitOptions {
  /** --max-connections (0 or absent: the server's C10K target, 10,000, is what is checked). */
  maxConnections?: number;
  /** The backlog listen(2) asked for (host/net.ts: 65535). */
  backlog?: number;
  /** Outgoing connections too (the proxy): the local port range matters. */
  outgoing?: boolean;
  /** Where /proc/sys is (tests point it elsewhere). */
  procSys?: string;
}

/**
 * The kernel settings that are too low for the connections asked for, one
 * warning each: net.core.somaxconn and net.ipv4.tcp_max_syn_backlog (the
 * accept and SYN queues, where a connect storm, and every connection beyond
 * the cap, waits), and for outgoing connections net.ipv4.ip_local_port_range
 * (source ports towards one upstream address). Unreadable values are skipped.
 */
export function kernelLimitWarnings(o: KernelLimitOptions = {}): LimitWarning[] {
  const out: LimitWarning[] = [];
  const root = o.procSys ?? "/proc/sys";
  const cap = o.maxConnections && o.maxConnections > 0 ? o.maxConnections : 0;
  const want = Math.min(cap || 10_000, o.backlog ?? 65535);
  const somaxconn = readSysctl("net.core.somaxconn", root)?.[0];
  if (somaxconn !== undefined && somaxconn < want) {
    out.push({
      event: "kernel_limit",
      // Without --max-connections: the line as it always was.
      msg: cap === 0 ? `net.core.somaxconn is ${somaxconn}; raise it for 10k simultaneous connects`
        : `net.core.somaxconn is ${somaxconn}: at most ${somaxconn} connections can wait to be accepted, fewer than ` +
          `--max-connections ${cap}; beyond it connects are dropped and retried (sysctl -w net.core.somaxconn=${want})`,
      fields: { setting: "net.core.somaxconn", value: somaxconn, wanted: want },
    });
  }
  const syn = readSysctl("net.ipv4.tcp_max_syn_backlog", root)?.[0];
  if (cap > 0 && syn !== undefined && syn < want) {
    out.push({
      event: "kernel_limit",
      msg: `net.ipv4.tcp_max_syn_backlog is ${syn}, below --max-connections ${cap}: a connect storm overflows the SYN queue ` +
        `(SYN cookies, or dropped SYNs retried after 1 s) (sysctl -w net.ipv4.tcp_max_syn_backlog=${want})`,
      fields: { setting: "net.ipv4.tcp_max_syn_backlog", value: syn, wanted: want },
    });
  }
  const range = readSysctl("net.ipv4.ip_local_port_range", root);
  if (cap > 0 && o.outgoing && range && range.length === 2) {
    const ports = range[1] - range[0] + 1;
    if (ports < cap) {
      out.push({
        event: "kernel_limit",
        msg: `net.ipv4.ip_local_port_range is ${range[0]}-${range[1]}: ${ports} source ports per upstream address, fewer than ` +
          `--max-connections ${cap} connections towards one upstream (and each port lingers in TIME_WAIT after a close) ` +
          `(sysctl -w net.ipv4.ip_local_port_range="1024 65535")`,
        fields: { setting: "net.ipv4.ip_local_port_range", value: `${range[0]}-${range[1]}`, wanted: cap },
      });
    }
  }
  return out;
}
