// wasm-reactor command line: `echo`, `serve`, `proxy` and `replay`. No command: the
// usage on stderr, exit 2. A bad flag prints one line naming the problem and
// where the help is, and exits 2 (as git and cargo do: the whole help would
// bury the one line that matters). A startup error (port in use, missing
// root, a host name that does not resolve) prints one line and exits 1.
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { Worker } from "node:worker_threads";
import type { ServerOptions } from "./server.ts";
import { cacheControlProblem } from "./core.ts";
import { RemoteLoop } from "./remote.ts";
import { replayCommand } from "./replay.ts";
import { resolveHost, hostPort, HostError } from "./net.ts";
import { BALANCE_POLICIES, DEFAULT_RELAY, proxyConfig, resolveUpstreams } from "./proxy.ts";
import { parseHealthCheck } from "./balance.ts";
import { UPSTREAM_WEIGHT_MAX } from "../assembly/abi.ts";
import { BACKEND_NAMES, defaultBackendName } from "./backend/types.ts";
import type { WorkerMessage, WorkerStart } from "./worker-entry.ts";
import { ParallelWriter } from "./writer/index.ts";
import { MetricsBoard, parseMetricsAddress, snapshotSize } from "./metrics.ts";
import { IO_BACKEND_NAMES, defaultIoBackendName, resolveServerIoBackend, IoBackendError, type IoBackendName } from "./io-backend.ts";
import { availableParallelism } from "node:os";
import { Logger, LOG_LEVELS, LOG_FORMATS, type LogFormat, type LogLevelName } from "./log.ts";
import { fdLimits, raiseFdLimit } from "./libc.ts";
import { FILE_CACHE_FDS, defaultConnectionCap, fdLimitProblem, fdsNeeded, kernelLimitWarnings, workerShare, type ConnectionBudget } from "./limits.ts";
import { allowedCpus, cpuForWorker } from "./affinity.ts";

/** The I/O backends the server can run on (threadpool cannot: sockets need readiness). */
const SERVER_IO_BACKENDS = IO_BACKEND_NAMES.filter((n) => n !== "threadpool");

type Kind = "int" | "string" | "bool" | "mode" | "workers";
interface Flag {
  kind: Kind;
  help: string;
  def?: string | number | boolean;
  /** The default as the help shows it, when the value alone would not say it. */
  defText?: string;
  /** The value's name in the help (default: N for numbers, VALUE for strings). */
  arg?: string;
}

const common: Record<string, Flag> = {
  host: {
    kind: "string", arg: "HOST", def: "127.0.0.1",
    help: "IP address or name to listen on; a name listens on every address it resolves to " +
      "(localhost: 127.0.0.1, and ::1 where the resolver lists it), :: on every IPv4 and IPv6 address (dual-stack), " +
      "0.0.0.0 on every IPv4 address",
  },
  mode: { kind: "mode", help: "event mode: lt (level-triggered) or et (edge-triggered)" },
  backend: {
    kind: "string", arg: BACKEND_NAMES.join("|"),
    help: "event backend: epoll (Linux), or poll (poll(2), the portable fallback: no fd limit, but each wait costs " +
      "O(watched fds)); the default comes from WASM_REACTOR_BACKEND if set",
    def: "epoll",
  },
  "io-backend": {
    kind: "string", arg: SERVER_IO_BACKENDS.join("|"),
    help: "what carries the requests out: io_uring (each round of accepts, reads, writes and closes as one io_uring_enter), " +
      "epoll_threadpool (one syscall per request), or auto (io_uring where the kernel allows it, else epoll_threadpool, " +
      "saying why); the default comes from WASM_REACTOR_IO_BACKEND if set",
    def: "auto",
  },
  "idle-timeout": { kind: "int", arg: "MS", help: "close connections idle this long (ms); 0 = never", def: 30000 },
  "max-events": { kind: "int", help: "events per backend wait (epoll_wait maxevents)", def: 1024 },
  "write-buf-max": { kind: "int", arg: "BYTES", help: "per-connection write buffer limit (bytes)", def: 262144, defText: "262144 = 256 KiB" },
  workers: {
    kind: "workers", arg: "N|auto",
    help: "reactors, one worker thread each, sharing the port (SO_REUSEPORT); auto: one per CPU this process may use (its affinity mask)",
    def: 1,
  },
  "cpu-affinity": { kind: "bool", help: "pin worker i to the i-th CPU this process may use (sched_setaffinity; round robin if there are more workers than CPUs)" },
  "max-connections": {
    kind: "int",
    help: "accepted connections open at most, for the whole process, split evenly across the workers; beyond it new connections " +
      "wait in the kernel's listen queue (not refused) until one closes; refused at startup if RLIMIT_NOFILE cannot hold it; " +
      "0: no cap (accepts run until EMFILE)",
    defText: "the fd limit, less fds kept for files and the loop",
  },
  "log-format": { kind: "string", arg: LOG_FORMATS.join("|"), help: "log lines as text, or as JSON objects (time, level, worker, event, msg, fields); the access log keeps its own format", def: "text" },
  "log-level": { kind: "string", arg: "LEVEL", help: "the most verbose log lines written: error, warn, info (the listening line is info) or debug (also a line per connection opened and closed)", def: "info" },
  "tick-requests": {
    kind: "int",
    help: "fairness: requests one connection may start per loop turn; the rest of its pipelined input waits for the next turn, " +
      "behind every other ready connection (counted in wasm_reactor_fairness_deferrals_total); 0 = no limit",
    def: 16,
  },
  "tick-bytes": { kind: "int", arg: "BYTES", help: "fairness: bytes one connection may read per loop turn; 0 = no limit", def: 262144, defText: "262144 = 256 KiB" },
  "slow-callback-ms": { kind: "int", arg: "MS", help: "log (warn, at most once a second) a callback that holds the loop longer than this (ms); 0 = off", def: 100 },
  record: {
    kind: "string", arg: "FILE",
    help: "record every input of the core into FILE, for `wasm-reactor replay`; with --workers N, one recording per worker: FILE.0 ... FILE.N-1",
  },
  "shutdown-timeout": { kind: "int", arg: "MS", help: "on SIGINT/SIGTERM, let requests in progress finish for at most this long (ms); a second signal stops at once", def: 10000 },
  metrics: {
    kind: "string", arg: "HOST:PORT",
    help: "serve GET /metrics (Prometheus text, every worker summed), /healthz and /readyz on a listener of their own; " +
      "it stays open until the process exits",
    defText: "off",
  },
  "shutdown-delay": {
    kind: "int", arg: "MS",
    help: "on SIGTERM/SIGINT, answer /readyz with 503 and keep accepting for this long before the graceful drain begins " +
      "(HAProxy's grace, Envoy's drain time), so a load balancer stops sending first",
    def: 0,
  },
  help: { kind: "bool", help: "show this help" },
};

const commands: Record<string, { summary: string; flags: Record<string, Flag>; positional?: string }> = {
  echo: {
    summary: "TCP echo server (every byte read is written back)",
    flags: { port: { kind: "int", help: "TCP port; 0 = any free port", def: 9000 }, ...common, mode: { ...common.mode, def: "lt" } },
  },
  serve: {
    summary: "HTTP/1.1 static-file server",
    flags: {
      root: { kind: "string", arg: "DIR", help: "directory to serve", def: ".", defText: "the current directory" },
      port: { kind: "int", help: "TCP port; 0 = any free port", def: 8080 },
      ...common,
      mode: { ...common.mode, def: "et" },
      "header-timeout": { kind: "int", arg: "MS", help: "time allowed to send a complete header block (ms)", def: 60000 },
      "access-log": { kind: "bool", help: "log one line per request to stdout (combined format unless --access-log-format)" },
      "access-log-file": {
        kind: "string", arg: "PATH",
        help: "write the access log to PATH instead of stdout (appended; created if missing; one file for every worker; " +
          "lines go out in large writes: when a 1 MiB buffer fills, when the server is idle, and after at most 1 s " +
          "or --access-log-flush); implies --access-log",
      },
      "access-log-flush": {
        kind: "int", arg: "MS",
        help: "with --access-log-file: how long lines may wait in the buffer for more while the server is idle (ms), " +
          "like nginx's flush=; 0: written as soon as the server is idle",
        def: 0,
      },
      "access-log-format": { kind: "string", arg: "FMT", help: "access log format: combined (nginx/Apache) or json", def: "combined" },
      "cache-control": { kind: "string", arg: "VALUE", help: "Cache-Control of file responses and listings; none: no header", def: "no-cache" },
      cors: { kind: "bool", help: "Access-Control-Allow-Origin: * on every response; OPTIONS preflights get 204" },
      precompressed: { kind: "bool", help: "serve FILE.br / FILE.gz beside FILE to clients that accept br / gzip" },
      listing: { kind: "bool", help: "list directories that have no index.html: names, dates (UTC), sizes (off: 404)" },
      "file-threads": { kind: "int", arg: "N", help: "worker threads for file opens, stats, listings and small-file reads (0: on the loop thread; under io_uring, opens and reads are ring ops already and the threads take listings)", defText: "2 with --io-backend epoll_threadpool, else 0" },
      "max-request-line": { kind: "int", arg: "BYTES", help: "longest request line (bytes; longer: 414)", def: 8192 },
      "max-header-size": { kind: "int", arg: "BYTES", help: "largest header block (bytes; larger: 431)", def: 16384 },
      "max-headers": { kind: "int", help: "most header fields (more: 431)", def: 100 },
      "max-body": { kind: "int", arg: "BYTES", help: "largest request body read and discarded (bytes; larger: 413)", def: 1048576, defText: "1048576 = 1 MiB" },
    },
  },
  proxy: {
    summary: "load balancer / reverse proxy: HTTP/1.1 with pooled keep-alive upstream connections (--mode http), " +
      "or relay bytes both ways (--mode tcp) (short form: wasm-reactor proxy PORT UPSTREAM... [-a POLICY])",
    positional: "[PORT UPSTREAM...]",
    flags: {
      listen: { kind: "string", arg: "[HOST:]PORT", help: "address to listen on (a name listens on every address it resolves to); 0 = any free port", def: "127.0.0.1:8080" },
      upstream: {
        kind: "string", arg: "HOST:PORT[:WEIGHT]",
        help: "an upstream (repeat the flag for each; IPv6 as [::1]:9001:2); names are resolved once, at startup; weight 1..10000, default 1",
      },
      balance: { kind: "string", arg: "POLICY", help: "rr, wrr (smooth weighted round robin), least-conn, p2c, ip-hash, hash (http mode, with --hash-key), random (-a POLICY)", def: "wrr" },
      mode: { kind: "string", arg: "tcp|http", help: "http: parse requests, keep-alive both sides, pooled upstream connections; tcp: relay bytes", def: "http" },
      "hash-key": { kind: "string", arg: "path|header:NAME", help: "http mode, --balance hash: the request key hashed (consistent hashing: removing one of N upstreams moves ~1/N of the keys)" },
      "upstream-timeout": { kind: "int", arg: "MS", help: "http mode: answer 504 when an upstream sends no response head this long after the request; 0 = never", def: 60000, defText: "60000, as nginx's proxy_read_timeout" },
      relay: { kind: "string", arg: "copy|splice", help: "tcp mode: splice: splice(2) socket -> pipe -> socket, no copy through memory (4 more fds per pair; falls back to copy when no pipe can be made); copy: read() and write() through linear memory", defText: DEFAULT_RELAY },
      "upstream-keepalive": { kind: "int", arg: "N", help: "http mode: idle keep-alive connections kept per upstream and worker (0 = none); an idle one closes after 60 s (HAProxy keeps every idle one; nginx its keepalive N)", def: 1024 },
      "event-mode": { ...common.mode, def: "et" },
      "connect-timeout": { kind: "int", arg: "MS", help: "give up a connect to an upstream after this long (then one retry on another upstream); 0 = never", def: 5000 },
      "health-check": {
        kind: "string", arg: "tcp|http:/PATH",
        help: "probe every upstream on a connection of its own: tcp = a connect that succeeds; http:/PATH = GET PATH, a 2xx or 3xx response is good; upstreams start up",
        defText: "none",
      },
      "health-interval": { kind: "int", arg: "MS", help: "time between two probes of one upstream (HAProxy's inter; the first probes are spread over it)", def: 2000 },
      "health-timeout": { kind: "int", arg: "MS", help: "a probe with no answer (connect; http: response head) in this long is bad; a probe still out skips the next one", def: 1000 },
      "health-port": {
        kind: "int", arg: "PORT",
        help: "probe this port on each upstream's address instead of its own (HAProxy's check port): e.g. serve's --metrics port, whose /readyz answers 503 while that instance drains",
        def: 0, defText: "the upstream's port",
      },
      "health-rise": { kind: "int", help: "good probes in a row that bring a down upstream up", def: 2 },
      "health-fall": { kind: "int", help: "bad probes in a row that take an up upstream down", def: 3 },
      "max-fails": { kind: "int", help: "passive health: consecutive failed connects (refused, unreachable, timed out) that eject an upstream; 0 = never eject", def: 3 },
      "fail-timeout": { kind: "int", arg: "MS", help: "first ejection's length; the n-th in a row lasts n times this, at most 300000", def: 10000 },
      "slow-start": { kind: "int", arg: "MS", help: "an upstream that comes back (ejection over, or up again) ramps its weight from 10% to 100% over this long; 0 = off", def: 0 },
      backend: common.backend,
      "io-backend": common["io-backend"],
      "idle-timeout": { ...common["idle-timeout"], help: "close a client (and its upstream) when nothing moved for this long (ms); http mode: also an idle keep-alive client; 0 = never", def: undefined, defText: "tcp: 600000 = 10 min, as nginx's proxy_timeout; http: 75000, as nginx's keepalive_timeout" },
      "max-events": common["max-events"],
      "write-buf-max": { ...common["write-buf-max"], help: "per-connection write buffer (bytes): a side is not read while its peer's buffer is this full" },
      workers: common.workers,
      "cpu-affinity": common["cpu-affinity"],
      "max-connections": common["max-connections"],
      "log-format": common["log-format"],
      "log-level": common["log-level"],
      "slow-callback-ms": common["slow-callback-ms"],
      record: common.record,
      metrics: common.metrics,
      "shutdown-delay": common["shutdown-delay"],
      "shutdown-timeout": { ...common["shutdown-timeout"], help: "on SIGINT/SIGTERM, stop accepting and let connections in progress finish for at most this long (ms); a second signal stops at once" },
      help: common.help,
    },
  },
  replay: {
    summary: "replay a recording against this core with no OS; exit 0 if every request matches, 1 at the first divergence or if the core trapped (a core bug, reproduced), 2 if the file is unusable",
    positional: "FILE",
    flags: {
      force: { kind: "bool", help: "replay a recording made by a different core build" },
      check: { kind: "bool", help: "check the core's invariants after every call (fuzzer reproducers)" },
      help: common.help,
    },
  },
};

/** `words` after `prefix`, in lines of at most `width` columns, the later ones indented under the first word. */
function wrap(prefix: string, words: string[], width = 100): string[] {
  const lines: string[] = [];
  let line = prefix, empty = true;
  for (const word of words) {
    if (!empty && line.length + 1 + word.length > width) { lines.push(line); line = " ".repeat(prefix.length) + word; }
    else line += (empty ? "" : " ") + word;
    empty = false;
  }
  lines.push(line);
  return lines;
}

function usage(cmd?: string): string {
  if (!cmd || !commands[cmd]) {
    return [
      "usage: wasm-reactor <command> [flags]", "",
      "commands:",
      ...Object.entries(commands).flatMap(([n, c]) => wrap(`  ${n.padEnd(8)} `, c.summary.split(" "))),
      "", "`wasm-reactor <command> --help` (or `wasm-reactor help <command>`) lists the command's flags.",
      "`wasm-reactor --version` (or -v) prints the version.",
    ].join("\n");
  }
  const pos = commands[cmd].positional ? ` ${commands[cmd].positional}` : "";
  const lines = [`usage: wasm-reactor ${cmd} [flags]${pos}`, "", ...wrap("", commands[cmd].summary.split(" ")), ""];
  // The backend a run would use (the help must print even if WASM_REACTOR_BACKEND is bad: parsing says why).
  let backend = "epoll";
  try { backend = cliDefaultBackend(); } catch { /* reported when the command line is parsed */ }
  if (commands[cmd].flags.backend) lines.push(`Event backend: ${backend} (--backend ${BACKEND_NAMES.join("|")})`);
  if (commands[cmd].flags["io-backend"]) lines.push(`I/O backend: ${helpIoBackend()} (--io-backend ${SERVER_IO_BACKENDS.join("|")})`);
  if (commands[cmd].flags.backend) lines.push("");
  lines.push("flags:");
  // --help last, after the command's own flags.
  const flags = Object.entries(commands[cmd].flags).sort(([a], [b]) => Number(a === "help") - Number(b === "help"));
  for (const [name, f] of flags) {
    const arg = f.kind === "bool" ? "" : f.kind === "mode" ? " lt|et" : ` ${f.arg ?? (f.kind === "int" ? "N" : "VALUE")}`;
    const shown = f.kind === "bool" ? undefined : name === "backend" ? backend : name === "io-backend" ? helpIoDefault() : f.defText ?? f.def;
    const words = f.help.split(" ");
    if (shown !== undefined) words.push(`[default: ${shown}]`); // one word: never split across lines
    lines.push(...wrap(`  --${(name + arg).padEnd(24)} `, words));
  }
  return lines.join("\n");
}

/** A bad command line. `cmd`: the command whose help to point at (none: the top-level help). */
class UsageError extends Error {
  constructor(message: string, readonly cmd?: string) { super(message); }
}

export function parseArgs(argv: string[]): { cmd: string; opts: Record<string, string | number | boolean>; args: string[] } {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) throw new UsageError("no command");
  if (cmd === "--help" || cmd === "-h") return { cmd: "help", opts: {}, args: [] };
  if (cmd === "help") {
    // `wasm-reactor help serve` = `wasm-reactor serve --help`
    if (rest.length === 0) return { cmd: "help", opts: {}, args: [] };
    if (rest.length > 1 || !commands[rest[0]]) throw new UsageError(`unknown command '${rest.join(" ")}'`);
    return { cmd: rest[0], opts: { help: true }, args: [] };
  }
  const args: string[] = [];
  const spec = commands[cmd];
  if (!spec) throw new UsageError(`unknown command '${cmd}'`);
  // --help wins over anything else on the line, as in git and cargo.
  if (rest.includes("--help") || rest.includes("-h")) return { cmd, opts: { help: true }, args: [] };
  const bad = (why: string) => new UsageError(why, cmd);
  const opts: Record<string, string | number | boolean> = {};
  for (const [n, f] of Object.entries(spec.flags)) if (f.def !== undefined) opts[n] = f.def;
  if (spec.flags.backend) opts.backend = cliDefaultBackend();
  if (spec.flags["io-backend"]) opts["io-backend"] = cliDefaultIoBackend(bad);
  const upstreams: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    let a = rest[i];
    if (cmd === "proxy" && a === "-a") a = "--balance"; // the seed's short form
    if (!a.startsWith("--") || a === "--") {
      if (spec.positional && (args.length === 0 || cmd === "proxy") && a !== "--" && !a.startsWith("-")) { args.push(a); continue; }
      throw bad(`unexpected argument '${a}'`);
    }
    let [name, value] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const f = spec.flags[name];
    if (!f && cmd === "replay" && name === "backend") {
      throw bad("--backend does not apply: a replay feeds the recorded events to the core with no OS, so no event backend runs");
    }
    if (!f && cmd === "replay" && name === "io-backend") {
      throw bad("--io-backend does not apply: a replay answers the core's requests from the recording, so no I/O backend runs");
    }
    if (!f) throw bad(`unknown flag --${name}`);
    if (f.kind === "bool") {
      if (value !== undefined) throw bad(`--${name} takes no value`);
      opts[name] = true;
      continue;
    }
    if (value === undefined) {
      value = rest[++i];
      if (value === undefined || (value.startsWith("--") && value.length > 2)) throw bad(`--${name} needs a value`);
    }
    if (f.kind === "workers") {
      if (value === "auto") { opts[name] = Math.min(64, availableParallelism()); continue; }
      if (!/^\d+$/.test(value)) throw bad(`--${name} must be a whole number or auto, got '${value}'`);
      const v = Number(value);
      if (v < 1 || v > 64) throw bad(`--workers must be 1..64 or auto, got ${v}`);
      opts[name] = v;
    } else if (f.kind === "int") {
      if (!/^\d+$/.test(value)) throw bad(`--${name} must be a whole number, got '${value}'`);
      const v = Number(value);
      if (name === "port" && v > 65535) throw bad(`--port must be 0..65535, got ${v}`);
      if (name === "workers" && (v < 1 || v > 64)) throw bad(`--workers must be 1..64, got ${v}`);
      if ((name === "max-request-line" || name === "max-header-size") && (v < 64 || v > 24576)) {
        throw bad(`--${name} must be 64..24576 (the head must fit a 32 KiB receive buffer), got ${v}`);
      }
      if (name === "max-headers" && v < 1) throw bad(`--max-headers must be at least 1, got ${v}`);
      if (name === "file-threads" && v > 64) throw bad(`--file-threads must be 0..64, got ${v}`);
      if (v > 2 ** 31 - 1) throw bad(`--${name} is too large: ${v}`);
      opts[name] = v;
    } else if (f.kind === "mode") {
      if (value !== "lt" && value !== "et") throw bad(`--${name} must be lt or et, got '${value}'`);
      opts[name] = value;
    } else {
      if (value === "") throw bad(`--${name} needs a value`);
      if (name === "backend" && !(BACKEND_NAMES as readonly string[]).includes(value)) {
        throw bad(`--backend must be ${BACKEND_NAMES.join(" or ")}, got '${value}'`);
      }
      if (name === "io-backend") ioBackendFlag(value, bad);
      if (name === "log-format" && !(LOG_FORMATS as readonly string[]).includes(value)) throw bad(`--log-format must be ${LOG_FORMATS.join(" or ")}, got '${value}'`);
      if (name === "log-level" && !(LOG_LEVELS as readonly string[]).includes(value)) throw bad(`--log-level must be ${LOG_LEVELS.join(", ")}, got '${value}'`);
      if (name === "access-log-format" && value !== "combined" && value !== "json") {
        throw bad(`--access-log-format must be combined or json, got '${value}'`);
      }
      if (name === "cache-control" && value !== "none") {
        const why = cacheControlProblem(value);
        if (why) throw bad(`--cache-control ${JSON.stringify(value)} ${why}`);
      }
      if (name === "upstream") { upstreams.push(value); continue; }
      if (name === "metrics") {
        try { parseMetricsAddress(value); } catch (e) { throw bad(`--metrics: ${(e as Error).message}`); }
      }
      opts[name] = value;
    }
  }
  if (opts["max-connections"] !== undefined && opts["max-connections"] !== 0 && (opts["max-connections"] as number) < (opts.workers as number)) {
    throw bad(`--max-connections ${opts["max-connections"]} is below --workers ${opts.workers}: each worker needs a share of at least 1`);
  }
  if (cmd === "proxy") return proxyArgs(opts, args, upstreams, bad, rest);
  if (spec.positional && args.length === 0) throw bad(`missing ${spec.positional}`);
  if (rest.some((a) => /^--access-log-flush(=|$)/.test(a)) && opts["access-log-file"] === undefined) {
    throw bad("--access-log-flush needs --access-log-file (stdout is written once per loop round)");
  }
  return { cmd, opts, args };
}

/** One upstream, HOST:PORT[:WEIGHT] ([v6]:PORT[:WEIGHT]); throws the one-line reason. */
export function parseUpstream(v: string, bad: (why: string) => UsageError): { host: string; port: number; weight: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d+)(?::(\d+))?$/.exec(v);
  if (!m) throw bad(`--upstream must be HOST:PORT[:WEIGHT], got '${v}'`);
  const port = Number(m[3]), weight = m[4] === undefined ? 1 : Number(m[4]);
  if (port < 1 || port > 65535) throw bad(`upstream port must be 1..65535, got '${v}'`);
  if (weight < 1 || weight > UPSTREAM_WEIGHT_MAX) throw bad(`upstream weight must be 1..${UPSTREAM_WEIGHT_MAX}, got '${v}'`);
  return { host: m[1] ?? m[2], port, weight };
}

/** [HOST:]PORT of --listen (or the short form's first argument). */
function parseListen(v: string, bad: (why: string) => UsageError): { host: string; port: number } {
  const m = /^(?:(?:\[([^\]]+)\]|([^:\[\]]+)):)?(\d+)$/.exec(v);
  if (!m || Number(m[3]) > 65535) throw bad(`--listen must be [HOST:]PORT with a port 0..65535, got '${v}'`);
  return { host: m[1] ?? m[2] ?? "127.0.0.1", port: Number(m[3]) };
}

/** The proxy's command line, both forms: --listen/--upstream, or PORT UPSTREAM... */
function proxyArgs(opts: Record<string, string | number | boolean>, args: string[], upstreams: string[],
  bad: (why: string) => UsageError, given: string[]): { cmd: string; opts: Record<string, string | number | boolean>; args: string[] } {
  if (opts.mode !== "tcp" && opts.mode !== "http") throw bad(`--mode must be tcp or http, got '${opts.mode}'`);
  if (!Object.prototype.hasOwnProperty.call(BALANCE_POLICIES, String(opts.balance))) {
    throw bad(`--balance must be one of ${Object.keys(BALANCE_POLICIES).join(", ")}, got '${opts.balance}'`);
  }
  if (opts.balance === "hash" && opts.mode === "tcp") throw bad("--balance hash needs a request key (http mode); tcp mode has ip-hash");
  if (opts.balance === "hash" && opts["hash-key"] === undefined) throw bad("--balance hash needs --hash-key path or --hash-key header:NAME");
  if (opts["hash-key"] !== undefined) {
    const k = String(opts["hash-key"]);
    if (opts.mode === "tcp") throw bad("--hash-key is for http mode");
    if (k !== "path" && !/^header:[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/.test(k)) throw bad(`--hash-key must be path or header:NAME, got '${k}'`);
  }
  if (opts.relay !== undefined) {
    if (opts.relay !== "copy" && opts.relay !== "splice") throw bad(`--relay must be copy or splice, got '${opts.relay}'`);
    if (opts.mode !== "tcp") throw bad("--relay is for tcp mode (--mode tcp)");
  }
  if (opts["idle-timeout"] === undefined) opts["idle-timeout"] = opts.mode === "http" ? 75000 : 600000;
  if (opts["health-check"] !== undefined) {
    try { parseHealthCheck(String(opts["health-check"])); } catch (e) { throw bad(`--health-check: ${(e as Error).message}`); }
  }
  for (const f of ["health-interval", "health-timeout", "health-rise", "health-fall"]) {
    if ((opts[f] as number) < 1) throw bad(`--${f} must be at least 1, got ${opts[f]}`);
    if (opts["health-check"] === undefined && given.some((a) => a === `--${f}` || a.startsWith(`--${f}=`))) {
      throw bad(`--${f} needs --health-check`);
    }
  }
  const hp = opts["health-port"] as number;
  if (hp < 0 || hp > 65535) throw bad(`--health-port must be 0..65535 (0: the upstream's own port), got ${hp}`);
  if (opts["health-check"] === undefined && given.some((a) => a === "--health-port" || a.startsWith("--health-port="))) {
    throw bad("--health-port needs --health-check");
  }
  if ((opts["fail-timeout"] as number) < 1) throw bad(`--fail-timeout must be at least 1, got ${opts["fail-timeout"]}`);
  if (args.length > 0) {
    // wasm-reactor proxy 8080 127.0.0.1:9001:3 127.0.0.1:9002:2 -a wrr
    opts.listen = args[0];
    upstreams.push(...args.slice(1));
  }
  const listen = parseListen(String(opts.listen), bad);
  const ups = upstreams.map((u) => parseUpstream(u, bad));
  if (ups.length === 0) throw bad("no upstream: give --upstream HOST:PORT[:WEIGHT] (or the short form PORT UPSTREAM...)");
  if (ups.length > 64) throw bad(`at most 64 upstreams, got ${ups.length}`);
  opts.host = listen.host;
  opts.port = listen.port;
  opts.upstreams = JSON.stringify(ups);
  return { cmd: "proxy", opts, args: [] };
}

/**
 * `wasm-reactor <version>` from the package.json beside this bundle (dist/),
 * so an installed copy reports its own version, wherever it was installed.
 */
function versionLine(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return `wasm-reactor ${pkg.version}`;
}

export async function main(argv: string[]): Promise<number> {
  // --version and -v, as node, npm, serve and http-server spell them.
  if (argv[0] === "--version" || argv[0] === "-v") { process.stdout.write(versionLine() + "\n"); return 0; }
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (argv.length === 0) { process.stderr.write(`${usage()}\n`); return 2; }
    const where = e.cmd ? `wasm-reactor ${e.cmd}` : "wasm-reactor";
    process.stderr.write(`${where}: ${e.message} (see '${where} --help')\n`);
    return 2;
  }
  const { cmd, opts, args } = parsed;
  if (cmd === "help" || opts.help) { process.stdout.write(usage(cmd === "help" ? undefined : cmd) + "\n"); return 0; }
  if (cmd === "replay") return replayCommand(args[0], Boolean(opts.force), Boolean(opts.check));
  // This thread's lines: "wasm-reactor CMD: ..." as text; the listening line
  // on stdout, the rest on stderr (this thread runs no reactor: plain writes).
  const logSettings = { format: opts["log-format"] as LogFormat, level: opts["log-level"] as LogLevelName };
  const text = (_level: LogLevelName, msg: string) => `wasm-reactor ${cmd}: ${msg}`;
  const log = new Logger({ ...logSettings, text, write: (line) => { process.stderr.write(line + "\n"); } });
  const out = new Logger({ ...logSettings, text, write: (line) => { process.stdout.write(line + "\n"); } });
  // The I/O backend, decided once here (the workers get the answer): a forced
  // one that cannot run is a bad command line (exit 2, naming why); auto's
  // fallback is said once, not once per worker.
  let io;
  try {
    io = resolveServerIoBackend(opts["io-backend"] as IoBackendName);
  } catch (e) {
    if (!(e instanceof IoBackendError)) throw e;
    log.error("startup_failed", e.message);
    return 2;
  }
  if (io.fallback) log.warn("io_backend_fallback", io.fallback);
  const workers = opts.workers as number;
  // 0: no cap at all (accepts run until the fd limit); absent: the cap the fd limit holds.
  const noCap = opts["max-connections"] === 0;
  const maxConnections = noCap ? undefined : opts["max-connections"] as number | undefined;
  let so: ServerOptions;
  const outputs = {
    accessLog: opts["access-log-file"] === undefined ? undefined : resolve(String(opts["access-log-file"])),
    record: opts.record === undefined ? undefined : resolve(String(opts.record)),
  };
  try {
    // Upstream names: resolved once, here (the core takes addresses), as nginx
    // resolves the names of an upstream block when it loads its config.
    if (cmd === "proxy") opts.upstreams = JSON.stringify(await resolveUpstreams(JSON.parse(String(opts.upstreams))));
    so = serverOptions(cmd, opts);
    // An auto that found io_uring stays auto in the workers: a worker whose
    // full-size ring cannot be set up then falls back (Loop) instead of failing.
    so.ioBackend = io.backend === "io_uring" && opts["io-backend"] === "auto" ? "auto" : io.backend;
    so.hosts = await resolveHost(String(opts.host));
    if (opts.metrics !== undefined) {
      const m = parseMetricsAddress(String(opts.metrics));
      so.metrics = hostPort((await resolveHost(m.host))[0], m.port);
    }
  } catch (e) {
    if (!(e instanceof StartupError || e instanceof HostError)) throw e;
    log.error("startup_failed", e.message);
    return 1;
  }
  const shape = {
    workers, kind: cmd as ConnectionBudget["kind"],
    upstreams: cmd === "proxy" ? JSON.parse(String(opts.upstreams)).length : 0,
    upstreamKeepalive: opts.mode === "http" ? opts["upstream-keepalive"] as number : 0,
  };
  let fdCap: number | undefined;
  let fileCacheFds: number | undefined; // with the default cap: what serve's open-file cache may hold per worker
  if (noCap) {
    log.debug("connection_cap", "no connection cap (--max-connections 0): accepts run until the fd limit");
  } else if (maxConnections === undefined) {
    const { soft } = fdLimits();
    const d = defaultConnectionCap(soft, shape);
    fdCap = d.cap;
    if (d.fileCacheFds > 0 && d.fileCacheFds < FILE_CACHE_FDS) fileCacheFds = d.fileCacheFds;
    log.debug("connection_cap", `at most ${d.cap} connections open (RLIMIT_NOFILE ${soft}, ${d.reserve} fds kept for files, listeners and the loop` +
      `${fileCacheFds === undefined ? "" : `, of them ${fileCacheFds} per worker for cached open files`}; --max-connections sets it)`,
      { cap: d.cap, nofile: soft, reserve: d.reserve, file_cache_fds: fileCacheFds ?? null });
  } else {
    // The cap must fit the fd limit: refused now (a usage error), rather than
    // found out as EMFILE under load. The soft limit is raised if needed.
    const budget: ConnectionBudget = { maxConnections, ...shape };
    const { soft, hard } = fdLimits();
    const problem = fdLimitProblem(budget, hard);
    if (problem) { log.error("fd_limit", problem); return 2; }
    const need = fdsNeeded(budget).total;
    if (soft < need) {
      const raised = raiseFdLimit().soft;
      log.info("fd_limit_raised", `raised the soft RLIMIT_NOFILE from ${soft} to ${raised} (the hard limit) for --max-connections ${maxConnections}`,
        { from: soft, to: raised, needed: need });
    }
  }
  let cpus: number[] | undefined;
  if (opts["cpu-affinity"]) {
    try { cpus = allowedCpus(); } catch (e) { log.error("startup_failed", `--cpu-affinity: ${(e as Error).message}`); return 1; }
  }
  const relay = opts.mode === "tcp" ? `, relay ${opts.relay ?? DEFAULT_RELAY}` : "";
  const mode = cmd === "proxy" ? `${opts.mode}${relay}, events ${opts["event-mode"]}` : opts.mode as string;
  return serveInWorkers({
    cmd, so, count: workers, mode, graceMs: opts["shutdown-timeout"] as number, outputs, log, out, logSettings, maxConnections, fdCap, fileCacheFds, cpus,
    delayMs: opts["shutdown-delay"] as number,
  });
}

/**
 * The backend when --backend is not given: WASM_REACTOR_BACKEND, as the
 * library's default; an unknown value there is a bad command line too.
 */
function cliDefaultBackend(): string {
  try {
    return defaultBackendName();
  } catch {
    throw new UsageError(`WASM_REACTOR_BACKEND must be ${BACKEND_NAMES.join(" or ")}, got '${process.env.WASM_REACTOR_BACKEND}'`);
  }
}

/** A --io-backend value (or WASM_REACTOR_IO_BACKEND's): one of SERVER_IO_BACKENDS. */
function ioBackendFlag(value: string, bad: (why: string) => UsageError, where = "--io-backend"): void {
  if (value === "threadpool") throw bad(`${where} threadpool cannot run the server: its sockets need readiness (use ${SERVER_IO_BACKENDS.join(", ")})`);
  if (!(IO_BACKEND_NAMES as readonly string[]).includes(value)) throw bad(`${where} must be ${SERVER_IO_BACKENDS.join(", ")}, got '${value}'`);
}

/** The I/O backend when --io-backend is not given: WASM_REACTOR_IO_BACKEND, as the library's default. */
function cliDefaultIoBackend(bad: (why: string) => UsageError = (why) => new UsageError(why)): IoBackendName {
  const env = process.env.WASM_REACTOR_IO_BACKEND;
  if (env !== undefined && env !== "") ioBackendFlag(env, bad, "WASM_REACTOR_IO_BACKEND");
  return defaultIoBackendName();
}

/** --help's default for --io-backend (never throws: parsing reports a bad environment). */
function helpIoDefault(): string {
  try { return cliDefaultIoBackend(); } catch { return "auto"; }
}

/** --help's "I/O backend:" line: what a run would use here, with auto resolved. */
function helpIoBackend(): string {
  const requested = helpIoDefault() as IoBackendName;
  try {
    const r = resolveServerIoBackend(requested);
    return requested === "auto" ? `${r.backend} (auto${r.fallback ? `: ${r.fallback.replace(/^I\/O backend: /, "")}` : ""})` : r.backend;
  } catch (e) {
    return `${requested} (${(e as Error).message})`;
  }
}

/**
 * Each reactor blocks in its backend's wait inside its own worker_thread; this
 * thread keeps Node's event loop for SIGINT/SIGTERM (a blocked main thread
 * cannot own them reliably: Node's other threads leave them unblocked) and
 * stops the workers through their RemoteLoop, which wakes a blocked loop.
 * Several workers share the port with SO_REUSEPORT: one reactor per core.
 */
async function serveInWorkers(run: {
  cmd: string; so: ServerOptions; count: number; mode: string; graceMs: number;
  outputs: { accessLog?: string; record?: string }; log: Logger; out: Logger;
  logSettings: { format: LogFormat; level: LogLevelName }; maxConnections?: number; cpus?: number[];
  /** With no --max-connections: the cap the fd limit holds (defaultConnectionCap). */
  fdCap?: number;
  /** With it, when the fd limit is low: the fds each worker's open-file cache may keep open. */
  fileCacheFds?: number;
  /** --shutdown-delay: ms between /readyz turning 503 and the listeners closing. */
  delayMs?: number;
}): Promise<number> {
  const { cmd, so, count, mode, graceMs, outputs, log } = run;
  const delayMs = run.delayMs ?? 0;
  const entry = new URL("./worker-entry.js", import.meta.url);
  // The files every worker writes are opened here, once: the access log (one
  // striped file, every worker a producer) and the recordings (one shard per
  // worker; --workers 1 records into FILE itself). Workers join them.
  const writers: ParallelWriter[] = [];
  let accessLog: ParallelWriter | undefined, record: ParallelWriter | undefined;
  try {
    if (outputs.accessLog) writers.push(accessLog = new ParallelWriter({ layout: "striped", path: outputs.accessLog, append: true }));
    if (outputs.record) {
      writers.push(record = new ParallelWriter({ layout: "sharded", path: outputs.record, shards: count, shardName: count > 1 ? "{path}.{shard}" : "{path}" }));
    }
  } catch (e) {
    closeWriters(log, writers);
    log.error("startup_failed", `${outputs.accessLog && !accessLog ? "--access-log-file" : "--record"}: ${(e as Error).message}`);
    return 1;
  }
  const workers: { worker: Worker; remote: RemoteLoop | null; done: Promise<void>; stopped: boolean }[] = [];
  // --metrics: worker 0 serves /metrics and sums the others' snapshots,
  // which they publish into a board of one slot each (host/metrics.ts).
  const upstreamCount = so.proxyUpstreams?.length ?? 0;
  const board = so.metrics === undefined ? null : new MetricsBoard({ slots: count, snapshotSize: snapshotSize(upstreamCount) });
  // Signals are ours from the start (before the listening line: a client may
  // signal as soon as it reads it). First signal: /readyz says 503 at once;
  // after --shutdown-delay, graceful shutdown (stop accepting, finish what is
  // in progress, at most graceMs). Second: stop now.
  let signals = 0;
  let serving = false;
  let drainTimer: NodeJS.Timeout | null = null;
  const send = (task: string, arg?: unknown, which = workers) => {
    for (const w of which) { try { w.remote?.runInLoop(task, arg); } catch { /* already stopping */ } }
  };
  const drain = () => {
    drainTimer = null;
    send("shutdown", graceMs);
    // Worker 0 keeps /metrics up until every other worker has exited.
    if (board !== null) void Promise.all(workers.slice(1).map((w) => w.done)).then(() => send("release", undefined, workers.slice(0, 1)));
  };
  const deliver = () => {
    if (signals === 1) {
      send("unready");
      if (delayMs > 0) drainTimer = setTimeout(drain, delayMs); else drain();
    } else {
      if (drainTimer) { clearTimeout(drainTimer); drainTimer = null; }
      send("stop");
    }
  };
  const onSignal = () => {
    if (++signals === 1) {
      const wait = delayMs > 0 ? `in ${delayMs} ms (/readyz says 503 now), ` : "";
      log.info("shutdown", `shutting down ${wait}(finishing requests in progress, at most ${graceMs} ms; signal again to stop now)`,
        { grace_ms: graceMs, delay_ms: delayMs });
    }
    deliver();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const start = (options: ServerOptions) => new Promise<{ port: number; hosts: string[]; somaxconn: number; metricsPort?: number }>((resolve, reject) => {
    const index = workers.length;
    const data: WorkerStart = {
      options: {
        ...options,
        ...(run.maxConnections ?? run.fdCap) !== undefined ? { maxConnections: workerShare((run.maxConnections ?? run.fdCap)!, count, index) } : {},
        ...(run.fileCacheFds !== undefined ? { fileCacheFds: run.fileCacheFds } : {}),
      },
      worker: index,
      log: run.logSettings,
      cpu: run.cpus ? cpuForWorker(index, run.cpus) : undefined,
      accessLog: accessLog?.descriptor(),
      record: record ? { writer: record.descriptor(), shard: index } : undefined,
      metrics: board ? { board: board.descriptor(), index } : undefined,
    };
    const worker = new Worker(entry, { workerData: data });
    const slot = { worker, remote: null as RemoteLoop | null, done: Promise.resolve(), stopped: false };
    slot.done = new Promise<void>((finish) => worker.once("exit", (code) => {
      // A worker that ends without having stopped (an uncaught error, a crash
      // of its thread) is a state change worth a line: the others carry on.
      if (serving && !slot.stopped) log.error("worker_exit", `worker ${index} exited unexpectedly (exit code ${code}); the other workers carry on`, { exited: index, code });
      finish();
    }));
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "listening") { slot.remote = new RemoteLoop(m.remote); resolve(m); }
      else if (m.type === "error") reject(new StartupError(m.message));
      else if (m.type === "stopped") slot.stopped = true;
    });
    worker.once("error", (e) => {
      if (serving) log.error("worker_error", `worker ${index}: ${(e as Error)?.stack ?? e}`, { exited: index });
      reject(e);
    });
    worker.once("exit", () => reject(new StartupError("worker exited during startup")));
    workers.push(slot);
  });
  let first;
  try {
    first = await start({ ...so, reusePort: count > 1 });
    const { metrics: _m, ...others } = so; // only worker 0 listens for /metrics
    for (let i = 1; i < count; i++) await start({ ...others, port: first.port, reusePort: true });
  } catch (e) {
    for (const w of workers) await w.worker.terminate();
    closeWriters(log, writers);
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    log.error("startup_failed", (e as Error).message);
    return 1;
  }
  serving = true;
  const urls = first.hosts.map((h) => (cmd === "serve" ? `http://${hostPort(h, first.port)}/` : hostPort(h, first.port)));
  const ioName = so.ioBackend === "auto" ? "io_uring" : so.ioBackend;
  run.out.info("listening", `listening on ${urls.join(", ")} (mode ${mode}, ${count} worker${count > 1 ? "s" : ""}, backend ${so.backend}, I/O backend ${ioName}, pid ${process.pid})`,
    { urls: urls.join(" "), port: first.port, mode, workers: count, backend: so.backend ?? "epoll", io_backend: ioName ?? "", pid: process.pid });
  if (first.metricsPort !== undefined && first.metricsPort >= 0) {
    const m = parseMetricsAddress(so.metrics!);
    const url = `http://${hostPort(m.host, first.metricsPort)}/metrics`;
    run.out.info("metrics_listening", `metrics on ${url} (/healthz, /readyz)`, { url, port: first.metricsPort });
  }
  // Kernel limits too low for the connections asked for: one line each, once.
  for (const w of kernelLimitWarnings({ maxConnections: run.maxConnections, backlog: 65535, outgoing: cmd === "proxy" })) log.warn(w.event, w.msg, w.fields);
  if (signals > 0) deliver(); // a signal arrived while the workers were starting
  await Promise.all(workers.map((w) => w.done));
  serving = false;
  process.removeListener("SIGINT", onSignal);
  process.removeListener("SIGTERM", onSignal);
  return closeWriters(log, writers) ? 0 : 1;
}

/**
 * Closes the shared output files once the workers are gone (each worker
 * flushed and closed its own producer on its way out). A worker that died
 * without closing lost what it buffered: said on stderr, as is a failed
 * close. True if everything closed cleanly.
 */
function closeWriters(log: Logger, writers: ParallelWriter[]): boolean {
  let clean = true;
  for (const w of writers) {
    try {
      const st = w.close({ force: true });
      if (st.openProducers > 0) {
        clean = false;
        log.error("output_lost", `${st.openProducers} worker(s) exited without closing ${w.paths.join(", ")}: what they buffered is lost`);
      }
      if (st.lostPayloads > 0) log.error("output_lost", `${st.lostPayloads} write(s) to ${w.paths.join(", ")} were lost (said above)`);
    } catch (e) {
      clean = false;
      log.error("output_lost", `closing ${w.paths.join(", ")}: ${(e as Error).message}`);
    }
  }
  return clean;
}

class StartupError extends Error {}

function serverOptions(cmd: string, o: Record<string, string | number | boolean>): ServerOptions {
  if (cmd === "proxy") {
    return {
      port: o.port as number,
      slowCallbackMs: o["slow-callback-ms"] as number,
      mode: o["event-mode"] as "lt" | "et",
      backend: o.backend as "epoll" | "poll",
      idleTimeoutMs: o["idle-timeout"] as number,
      maxEvents: o["max-events"] as number,
      writeBufMax: o["write-buf-max"] as number,
      ...proxyConfig({
        upstreams: JSON.parse(String(o.upstreams)), balance: String(o.balance), proxyMode: o.mode as "tcp" | "http",
        connectTimeoutMs: o["connect-timeout"] as number, seed: Math.floor(Math.random() * 2 ** 31),
        health: {
          check: o["health-check"] === undefined ? "none" : String(o["health-check"]),
          checkIntervalMs: o["health-interval"] as number, checkTimeoutMs: o["health-timeout"] as number,
          rise: o["health-rise"] as number, fall: o["health-fall"] as number, checkPort: o["health-port"] as number,
          maxFails: o["max-fails"] as number, ejectBaseMs: o["fail-timeout"] as number, slowStartMs: o["slow-start"] as number,
        },
        hashKey: o["hash-key"] === undefined ? undefined : String(o["hash-key"]),
        upstreamTimeoutMs: o["upstream-timeout"] as number, upstreamKeepalive: o["upstream-keepalive"] as number,
        relay: o.relay === undefined ? undefined : o.relay as "copy" | "splice",
      }),
    };
  }
  const so: ServerOptions = {
    protocol: cmd === "serve" ? "http" : "echo",
    port: o.port as number,
    mode: o.mode as "lt" | "et",
    backend: o.backend as "epoll" | "poll",
    idleTimeoutMs: o["idle-timeout"] as number,
    headerTimeoutMs: (o["header-timeout"] as number) ?? 60000,
    slowCallbackMs: o["slow-callback-ms"] as number,
    maxEvents: o["max-events"] as number,
    writeBufMax: o["write-buf-max"] as number,
    // 0 on the command line is "no limit", the core's -1 (its 0 is "the default")
    tickRequests: o["tick-requests"] === 0 ? -1 : o["tick-requests"] as number,
    tickBytes: o["tick-bytes"] === 0 ? -1 : o["tick-bytes"] as number,
    accessLog: Boolean(o["access-log"]) || o["access-log-file"] !== undefined,
    accessLogFlushMs: o["access-log-flush"] as number | undefined,
    ...(cmd === "serve" ? {
      listing: Boolean(o.listing), fileThreads: o["file-threads"] as number,
      accessLogFormat: o["access-log-format"] as "combined" | "json",
      cacheControl: o["cache-control"] === "none" ? null : String(o["cache-control"]),
      cors: Boolean(o.cors), precompressed: Boolean(o.precompressed),
      maxLine: o["max-request-line"] as number, maxHeader: o["max-header-size"] as number,
      maxHeaders: o["max-headers"] as number, maxBody: o["max-body"] as number,
    } : {}),
  };
  if (cmd === "serve") {
    const root = resolve(String(o.root));
    let st;
    try { st = statSync(root); } catch { throw new StartupError(`root directory ${root} does not exist`); }
    if (!st.isDirectory()) throw new StartupError(`root ${root} is not a directory`);
    so.root = root;
  }
  return so;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
