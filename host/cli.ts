// wasm-reactor command line: `echo` and `serve`. A bad flag prints why and
// exits 2; a startup error (port in use, missing root) prints one line and
// exits 1.
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { Server, type ServerOptions } from "./server.ts";
import { SysError } from "./libc.ts";

type Kind = "int" | "string" | "bool" | "mode";
interface Flag { kind: Kind; help: string; def?: string | number | boolean }

const common: Record<string, Flag> = {
  host: { kind: "string", help: "address to listen on", def: "127.0.0.1" },
  mode: { kind: "mode", help: "epoll mode: lt (level-triggered) or et (edge-triggered)" },
  "idle-timeout": { kind: "int", help: "close connections idle this long (ms; 0 = never)", def: 30000 },
  "max-events": { kind: "int", help: "events per epoll_wait", def: 1024 },
  "write-buf-max": { kind: "int", help: "per-connection write buffer limit (bytes)", def: 262144 },
  help: { kind: "bool", help: "show this help" },
};

const commands: Record<string, { summary: string; flags: Record<string, Flag> }> = {
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
      "access-log": { kind: "bool", help: "log one line per request to stderr" },
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
  const lines = [`usage: wasm-reactor ${cmd} [flags]`, "", commands[cmd].summary, "", "flags:"];
  for (const [name, f] of Object.entries(commands[cmd].flags)) {
    const arg = f.kind === "bool" ? "" : f.kind === "mode" ? " lt|et" : f.kind === "int" ? " N" : " VALUE";
    const def = f.def !== undefined && f.kind !== "bool" ? ` (default ${f.def})` : "";
    lines.push(`  --${(name + arg).padEnd(22)} ${f.help}${def}`);
  }
  return lines.join("\n");
}

class UsageError extends Error {}

export function parseArgs(argv: string[]): { cmd: string; opts: Record<string, string | number | boolean> } {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") return { cmd: "help", opts: {} };
  const spec = commands[cmd];
  if (!spec) throw new UsageError(`unknown command '${cmd}'`);
  const opts: Record<string, string | number | boolean> = {};
  for (const [n, f] of Object.entries(spec.flags)) if (f.def !== undefined) opts[n] = f.def;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "-h") { opts.help = true; continue; }
    if (!a.startsWith("--")) throw new UsageError(`unexpected argument '${a}'`);
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
      if (v > 2 ** 31 - 1) throw new UsageError(`--${name} is too large: ${v}`);
      opts[name] = v;
    } else if (f.kind === "mode") {
      if (value !== "lt" && value !== "et") throw new UsageError(`--mode must be lt or et, got '${value}'`);
      opts[name] = value;
    } else {
      opts[name] = value;
    }
  }
  return { cmd, opts };
}

function serverOptions(cmd: string, o: Record<string, string | number | boolean>): ServerOptions {
  return {
    protocol: cmd === "serve" ? "http" : "echo",
    host: o.host as string,
    port: o.port as number,
    mode: o.mode as "lt" | "et",
    idleTimeoutMs: o["idle-timeout"] as number,
    headerTimeoutMs: (o["header-timeout"] as number) ?? 60000,
    maxEvents: o["max-events"] as number,
    writeBufMax: o["write-buf-max"] as number,
    accessLog: Boolean(o["access-log"]),
  };
}

export function main(argv: string[]): number {
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`wasm-reactor: ${e.message}\n\n${usage(argv[0])}\n`);
    return 2;
  }
  const { cmd, opts } = parsed;
  if (cmd === "help" || opts.help) { process.stdout.write(usage(cmd === "help" ? undefined : cmd) + "\n"); return 0; }
  try {
    const server = startServer(cmd, opts);
    const shown = server.listener.host.includes(":") ? `[${server.listener.host}]` : server.listener.host;
    const url = cmd === "serve" ? `http://${shown}:${server.port}/` : `${shown}:${server.port}`;
    process.stdout.write(`wasm-reactor ${cmd}: listening on ${url} (mode ${opts.mode}, pid ${process.pid})\n`);
    if (server.listener.somaxconn < 10000) {
      process.stderr.write(`note: net.core.somaxconn is ${server.listener.somaxconn}; raise it for 10k simultaneous connects\n`);
    }
    server.run();
    server.close();
    return 0;
  } catch (e) {
    if (e instanceof SysError || e instanceof StartupError) {
      process.stderr.write(`wasm-reactor ${cmd}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

class StartupError extends Error {}

function startServer(cmd: string, opts: Record<string, string | number | boolean>): Server {
  const so = serverOptions(cmd, opts);
  if (cmd === "serve") {
    const root = resolve(String(opts.root));
    let st;
    try { st = statSync(root); } catch { throw new StartupError(`root directory ${root} does not exist`); }
    if (!st.isDirectory()) throw new StartupError(`root ${root} is not a directory`);
    return new Server({ ...so, root });
  }
  return new Server(so);
}

process.exitCode = main(process.argv.slice(2));
