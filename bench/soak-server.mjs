// The HTTP static-file server of `wasm-reactor serve`, arranged as the CLI
// arranges it (one Server blocking in run() inside a worker_thread, the main
// thread keeping Node's event loop and reaching the loop through a
// RemoteLoop), plus the one thing the CLI does not have: its core's counters
// on demand, while it serves. bench/soak.mjs needs them to say "back to
// baseline" about the core (live connections, write-buffer bytes, receive
// buffers held, timers, linear memory), which the process's /proc entries
// cannot show.
//
//   node bench/soak-server.mjs --root DIR [--idle-timeout MS]
//
// Prints `listening PORT pid PID`, then reads commands from stdin, one a line:
//   stats   -> one JSON line: {"stats": <Server.stats() + invariants>} (after a GC in both
//              threads, so the RSS read next is not a V8 heap's mood)
//   stop    -> stops the loop and exits 0 (so does the end of stdin: a parent
//              that dies takes this server with it)
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { createInterface } from "node:readline";
import { resolve } from "node:path";

const dist = new URL("../dist/index.js", import.meta.url).href;

if (isMainThread) {
  const argv = process.argv.slice(2);
  const opts = { root: null, idleTimeoutMs: 30_000 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--root") opts.root = resolve(argv[++i]);
    else if (argv[i] === "--idle-timeout") opts.idleTimeoutMs = Number(argv[++i]);
    else { console.error(`soak-server.mjs: unknown argument ${argv[i]}`); process.exit(2); }
  }
  if (!opts.root) { console.error("soak-server.mjs: --root DIR is required"); process.exit(2); }
  const { RemoteLoop } = await import(dist);
  const worker = new Worker(new URL(import.meta.url), { workerData: opts });
  let remote = null;
  const early = []; // commands read before the loop was up
  worker.on("message", (m) => {
    if (m.type === "listening") {
      remote = new RemoteLoop(m.remote);
      process.stdout.write(`listening ${m.port} pid ${process.pid}\n`);
      for (const line of early.splice(0)) command(line);
    } else if (m.type === "stats") {
      globalThis.gc?.();
      process.stdout.write(`${JSON.stringify({ stats: m.stats })}\n`);
    }
  });
  worker.on("error", (e) => { console.error(`soak-server.mjs: ${e.stack ?? e}`); process.exit(1); });
  worker.on("exit", (code) => process.exit(code));
  let stopping = false;
  const stop = () => {
    if (!remote) { if (!stopping) early.push("stop"); stopping = true; return; }
    try { remote.runInLoop("stop"); } catch { /* stopping already */ }
  };
  function command(line) {
    if (!remote) early.push(line);
    else if (line === "stats") remote.runInLoop("stats");
    else if (line === "stop") stop();
    else console.error(`soak-server.mjs: unknown command ${JSON.stringify(line)}`);
  }
  const lines = createInterface({ input: process.stdin });
  lines.on("line", command);
  lines.on("close", stop);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  const { Server } = await import(dist);
  const server = new Server({ protocol: "http", host: "127.0.0.1", port: 0, handleSignals: false, ...workerData });
  server.reactor.defineTask("stop", () => server.stop());
  server.reactor.defineTask("stats", () => {
    globalThis.gc?.();
    // The core's structural invariants too (abi.ts INV_*; 0 = they hold): a
    // ring or receive buffer leaked or given back twice shows here by name.
    const invariants = server.reactor.loop.core.x.checkInvariants();
    parentPort.postMessage({ type: "stats", stats: { ...server.stats(), invariants } });
  });
  parentPort.postMessage({ type: "listening", port: server.port, remote: server.reactor.remote(16) });
  server.run();
  server.close();
}
