// wasm-reactor command line: `echo` and `serve`. A bad flag prints why and
// exits 2; a startup error (port in use, missing root) prints one line and
// exits 1.
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { Worker } from "node:worker_threads";
import type { ServerOptions } from "./server.ts";
import { cacheControlProblem } from "./core.ts";
import { RemoteLoop } from "./remote.ts";
import { replayCommand } from "./replay.ts";
import type { WorkerMessage } from "./worker-entry.ts";

type Kind = "int" | "string" | "bool" | "mode";
interface Flag { kind: Kind; help: string; def?: string | number | boolean }

const common: Record<string, Flag> = {
  host: { kind: "string", help: "address to listen on", def: "127.0.0.1" },
  mode: { kind: "mode", help: "epoll mode: lt (level-triggered) or et (edge-triggered)" },
  "idle-timeout": { kind: "int", help: "close connections idle this long (ms; 0 = never)", def: 30000 },
  "max-events": { kind: "int", help: "events per epoll_wait", def: 1024 },
  "write-buf-max": { kind: "int", help: "per-connection write buffer limit (bytes)", def: 262144 },
  workers: { kind: "int", help: "reactors, one worker thread each, sharing the port (SO_REUSEPORT)", def: 1 },
  record: { kind: "string", help: "record every input of the core into FILE, for `wasm-reactor replay` (needs --workers 1)" },
  "shutdown-timeout": { kind: "int", help: "on SIGINT/SIGTERM, let requests in progress finish for at most this long (ms); a second signal stops at once", def: 10000 },
  help: { kind: "bool", help: "show this help" },
};

const commands: Record<string, { summary: string; flags: Record<string, Flag>; positional?: string }> = {
  echo: {
    summary: "TCP echo server (every byte read is written back)",
    flags: { port: { kind: "int", help: "TCP port (0 = any free port)", def: 9000 }, ...common, mode: { ...common.mode, def: "lt" } },
  },
  serve: {
    summary: "HTTP/1.1 static-file server",
    flags: {
      root: { kind: "string", help: "directory to serve", def: "public" },
      port: { kind: "int", help: "TCP port (0 = any free port)", def: 8080 },
      ...common,
      mode: { ...common.mode, def: "et" },
      "header-timeout": { kind: "int", help: "time allowed to send a complete header block (ms)", def: 60000 },
      "access-log": { kind: "bool", help: "log one line per request to stdout" },
      "access-log-format": { kind: "string", help: "access log format: combined (nginx/Apache) or json", def: "combined" },
      "cache-control": { kind: "string", help: "Cache-Control of file responses and listings; none: no header", def: "no-cache" },
      cors: { kind: "bool", help: "Access-Control-Allow-Origin: * on every response; OPTIONS preflights get 204" },
      precompressed: { kind: "bool", help: "serve FILE.br / FILE.gz beside FILE to clients that accept br / gzip" },
      listing: { kind: "bool", help: "list directories that have no index.html (off: 404)" },
      "max-request-line": { kind: "int", help: "longest request line (bytes; longer: 414)", def: 8192 },
      "max-header-size": { kind: "int", help: "largest header block (bytes; larger: 431)", def: 16384 },
      "max-headers": { kind: "int", help: "most header fields (more: 431)", def: 100 },
      "max-body": { kind: "int", help: "largest request body read and discarded (bytes; larger: 413)", def: 1048576 },
    },
  },
  replay: {
    summary: "replay a recording against this core with no OS; exit 0 if every request matches, 1 at the first divergence, 2 if the file is unusable",
    positional: "FILE",
    flags: {
      force: { kind: "bool", help: "replay a recording made by a different core build" },
      check: { kind: "bool", help: "check the core's invariants after every call (fuzzer reproducers)" },
      help: common.help,
    },
  },
};

function usage(cmd?: string): string {
  if (!cmd || !commands[cmd]) {
    return [
      "usage: wasm-reactor <command> [flags]", "",
      "commands:",
      ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(8)} ${c.summary}`),
      "", "`wasm-reactor <command> --help` lists the command's flags.",
    ].join("\n");
  }
  const pos = commands[cmd].positional ? ` ${commands[cmd].positional}` : "";
  const lines = [`usage: wasm-reactor ${cmd} [flags]${pos}`, "", commands[cmd].summary, "", "flags:"];
  for (const [name, f] of Object.entries(commands[cmd].flags)) {
    const arg = f.kind === "bool" ? "" : f.kind === "mode" ? " lt|et" : f.kind === "int" ? " N" : " VALUE";
    const def = f.def !== undefined && f.kind !== "bool" ? ` (default ${f.def})` : "";
    lines.push(`  --${(name + arg).padEnd(22)} ${f.help}${def}`);
  }
  return lines.join("\n");
}

class UsageError extends Error {}

export function parseArgs(argv: string[]): { cmd: string; opts: Record<string, string | number | boolean>; args: string[] } {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") return { cmd: "help", opts: {}, args: [] };
  const args: string[] = [];
  const spec = commands[cmd];
  if (!spec) throw new UsageError(`unknown command '${cmd}'`);
  const opts: Record<string, string | number | boolean> = {};
  for (const [n, f] of Object.entries(spec.flags)) if (f.def !== undefined) opts[n] = f.def;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "-h") { opts.help = true; continue; }
    if (!a.startsWith("--")) {
      if (spec.positional && args.length === 0) { args.push(a); continue; }
      throw new UsageError(`unexpected argument '${a}'`);
    }
    let [name, value] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const f = spec.flags[name];
    if (!f) throw new UsageError(`unknown flag --${name}`);
    if (f.kind === "bool") {
      if (value !== undefined) throw new UsageError(`--${name} takes no value`);
      opts[name] = true;
      continue;
    }
    if (value === undefined) {
      value = rest[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
    }
    if (f.kind === "int") {
      if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got '${value}'`);
      const v = Number(value);
      if (name === "port" && v > 65535) throw new UsageError(`--port must be 0..65535, got ${v}`);
      if (name === "workers" && (v < 1 || v > 64)) throw new UsageError(`--workers must be 1..64, got ${v}`);
      if ((name === "max-request-line" || name === "max-header-size") && (v < 64 || v > 24576)) {
        throw new UsageError(`--${name} must be 64..24576 (the head must fit a 32 KiB receive buffer), got ${v}`);
      }
      if (name === "max-headers" && v < 1) throw new UsageError(`--max-headers must be at least 1, got ${v}`);
      if (v > 2 ** 31 - 1) throw new UsageError(`--${name} is too large: ${v}`);
      opts[name] = v;
    } else if (f.kind === "mode") {
      if (value !== "lt" && value !== "et") throw new UsageError(`--mode must be lt or et, got '${value}'`);
      opts[name] = value;
    } else {
      if (name === "access-log-format" && value !== "combined" && value !== "json") {
        throw new UsageError(`--access-log-format must be combined or json, got '${value}'`);
      }
      if (name === "cache-control" && value !== "none") {
        const why = cacheControlProblem(value);
        if (why) throw new UsageError(`--cache-control ${JSON.stringify(value)} ${why}`);
      }
      opts[name] = value;
    }
  }
  if (spec.positional && args.length === 0 && !opts.help) throw new UsageError(`${cmd} needs ${spec.positional}`);
  if (opts.record !== undefined && opts.workers !== 1) throw new UsageError("--record needs --workers 1 (one recording per reactor)");
  return { cmd, opts, args };
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`wasm-reactor: ${e.message}\n\n${usage(argv[0])}\n`);
    return 2;
  }
  const { cmd, opts, args } = parsed;
  if (cmd === "help" || opts.help) { process.stdout.write(usage(cmd === "help" ? undefined : cmd) + "\n"); return 0; }
  if (cmd === "replay") return replayCommand(args[0], Boolean(opts.force), Boolean(opts.check));
  let so: ServerOptions;
  try {
    so = serverOptions(cmd, opts);
  } catch (e) {
    if (!(e instanceof StartupError)) throw e;
    process.stderr.write(`wasm-reactor ${cmd}: ${e.message}\n`);
    return 1;
  }
  return serveInWorkers(cmd, so, opts.workers as number, opts.mode as string, opts["shutdown-timeout"] as number);
}

/**
 * Each reactor blocks in epoll_wait inside its own worker_thread; this
 * thread keeps Node's event loop for SIGINT/SIGTERM (a blocked main thread
 * cannot own them reliably: Node's other threads leave them unblocked) and
 * stops the workers through their RemoteLoop, which wakes a blocked loop.
 * Several workers share the port with SO_REUSEPORT: one reactor per core.
 */
async function serveInWorkers(cmd: string, so: ServerOptions, count: number, mode: string, graceMs: number): Promise<number> {
  const entry = new URL("./worker-entry.js", import.meta.url);
  const workers: { worker: Worker; remote: RemoteLoop | null; done: Promise<void> }[] = [];
  // Signals are ours from the start (before the listening line: a client may
  // signal as soon as it reads it). First signal: graceful shutdown (stop
  // accepting, finish what is in progress, at most graceMs). Second: stop now.
  let signals = 0;
  const deliver = () => {
    const task = signals === 1 ? "shutdown" : "stop";
    for (const w of workers) { try { w.remote?.runInLoop(task, graceMs); } catch { /* already stopping */ } }
  };
  const onSignal = () => {
    if (++signals === 1) process.stderr.write(`wasm-reactor ${cmd}: shutting down (finishing requests in progress, at most ${graceMs} ms; signal again to stop now)\n`);
    deliver();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const start = (options: ServerOptions) => new Promise<{ port: number; host: string; somaxconn: number }>((resolve, reject) => {
    const worker = new Worker(entry, { workerData: { options } });
    const slot = { worker, remote: null as RemoteLoop | null, done: Promise.resolve() };
    slot.done = new Promise<void>((finish) => worker.once("exit", () => finish()));
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "listening") { slot.remote = new RemoteLoop(m.remote); resolve(m); }
      else if (m.type === "error") reject(new StartupError(m.message));
    });
    worker.once("error", (e) => reject(e));
    worker.once("exit", () => reject(new StartupError("worker exited during startup")));
    workers.push(slot);
  });
  let first;
  try {
    first = await start({ ...so, reusePort: count > 1 });
    for (let i = 1; i < count; i++) await start({ ...so, port: first.port, reusePort: true });
  } catch (e) {
    for (const w of workers) await w.worker.terminate();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    process.stderr.write(`wasm-reactor ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
  const shown = first.host.includes(":") ? `[${first.host}]` : first.host;
  const url = cmd === "serve" ? `http://${shown}:${first.port}/` : `${shown}:${first.port}`;
  process.stdout.write(`wasm-reactor ${cmd}: listening on ${url} (mode ${mode}, ${count} worker${count > 1 ? "s" : ""}, pid ${process.pid})\n`);
  if (first.somaxconn < 10000) {
    process.stderr.write(`note: net.core.somaxconn is ${first.somaxconn}; raise it for 10k simultaneous connects\n`);
  }
  if (signals > 0) deliver(); // a signal arrived while the workers were starting
  await Promise.all(workers.map((w) => w.done));
  process.removeListener("SIGINT", onSignal);
  process.removeListener("SIGTERM", onSignal);
  return 0;
}

class StartupError extends Error {}

function serverOptions(cmd: string, o: Record<string, string | number | boolean>): ServerOptions {
  const so: ServerOptions = {
    protocol: cmd === "serve" ? "http" : "echo",
    host: o.host as string,
    port: o.port as number,
    mode: o.mode as "lt" | "et",
    idleTimeoutMs: o["idle-timeout"] as number,
    headerTimeoutMs: (o["header-timeout"] as number) ?? 60000,
    maxEvents: o["max-events"] as number,
    writeBufMax: o["write-buf-max"] as number,
    accessLog: Boolean(o["access-log"]),
    ...(cmd === "serve" ? {
      listing: Boolean(o.listing),
      accessLogFormat: o["access-log-format"] as "combined" | "json",
      cacheControl: o["cache-control"] === "none" ? null : String(o["cache-control"]),
      cors: Boolean(o.cors), precompressed: Boolean(o.precompressed),
      maxLine: o["max-request-line"] as number, maxHeader: o["max-header-size"] as number,
      maxHeaders: o["max-headers"] as number, maxBody: o["max-body"] as number,
    } : {}),
    record: o.record === undefined ? undefined : resolve(String(o.record)),
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
