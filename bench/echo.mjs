// The echo server under load, side by side with a node:net echo server, in
// one run: `wasm-reactor echo` in --mode lt and et, and bench/node-echo.mjs,
// each driven by the closed-loop client bench/echo-client.mjs.
//
//   node scripts/build.mjs && node bench/echo.mjs
//   node bench/echo.mjs --rounds 3 --duration 5 --warmup 1 --conns 50,1000 --servers node,lt,et
//   node bench/echo.mjs --bin /tmp/wr-snap/bin/wasm-reactor.js   (a bench/snapshot.sh copy)
//   node bench/echo.mjs --smoke   (a few seconds: 1 round, 4 connections, 0.2 s, no
//                                  quiet wait or retries; checks that it runs, the
//                                  figures mean nothing)
//
// The server is pinned to one core and the client to the other (taskset), so
// they do not steal each other's CPU; a fresh server is started for every
// measurement. The machine may be shared, so every configuration is measured
// in every round, the servers' order rotates from round to round, ratios to
// node:net are taken within a round, and the tables show medians over rounds.
// Before each run it waits (up to --quiet-wait s) for both cores to be nearly
// idle; a run during which other processes took more than --max-other % of
// either core is repeated (up to --retries times) and the least disturbed
// attempt counts. What other processes still took is shown as "other load".
//
// The primary figure is the server's CPU time per message (utime + stime of
// the whole process over the measured window, /proc/PID/stat): the client is
// a Node process on a single core and usually saturates before the server
// does, and then messages/s measures the client as much as the server.
//
//   node bench/echo.mjs --syscalls [--conns 50,1000] [--servers node,lt,et]
//
// counts instead of timing: one short untimed run per server under
// `perf stat -p` (syscall tracepoints, all threads of the server), reported
// as syscalls per message over the whole client run (connects and warm-up
// included). Counting slows the server down, which is why it is a separate
// pass.
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    conns: { type: "string", default: "50,1000" },
    servers: { type: "string", default: "node,lt,et" },
    size: { type: "string", default: "64" },
    "server-cpu": { type: "string", default: "0" },
    "client-cpu": { type: "string", default: "1" },
    syscalls: { type: "boolean", default: false },
    bin: { type: "string" }, // wasm-reactor's bin/wasm-reactor.js; e.g. a bench/snapshot.sh copy
    "quiet-wait": { type: "string", default: "30" },
    "max-other": { type: "string", default: "10" },
    retries: { type: "string", default: "2" },
    drain: { type: "string", default: "1" }, // the client waits this long for echoes in flight
    smoke: { type: "boolean", default: false },
  },
});
if (values.smoke) {
  Object.assign(values, { rounds: "1", duration: "0.2", warmup: "0", conns: "4", "quiet-wait": "0", retries: "0", drain: "0.5" });
  // one CPU (a small CI runner): server and client share it
  if (availableParallelism() < 2) values["client-cpu"] = values["server-cpu"];
}

const path = (p) => fileURLToPath(new URL(p, import.meta.url));
const bin = values.bin ?? path("../bin/wasm-reactor.js");
const SERVERS = {
  node: { label: "node:net", args: [path("./node-echo.mjs"), "--port", "0", "--idle-timeout", "0"] },
  lt: { label: "wasm-reactor lt", args: [bin, "echo", "--port", "0", "--mode", "lt", "--idle-timeout", "0"] },
  et: { label: "wasm-reactor et", args: [bin, "echo", "--port", "0", "--mode", "et", "--idle-timeout", "0"] },
  // The io API's socket operations (bench/io-echo.mjs: accept/recv/send as Promises), per backend.
  "io-uring": { label: "io API, io_uring", args: [path("./io-echo.mjs"), "--port", "0", "--backend", "io_uring"] },
  "io-epoll": { label: "io API, epoll_threadpool", args: [path("./io-echo.mjs"), "--port", "0", "--backend", "epoll_threadpool"] },
  "io-pool": { label: "io API, threadpool", args: [path("./io-echo.mjs"), "--port", "0", "--backend", "threadpool"] },
};
const rounds = Number(values.rounds);
const connCounts = values.conns.split(",").map(Number);
const servers = values.servers.split(",");
for (const s of servers) if (!SERVERS[s]) throw new Error(`unknown server '${s}' (${Object.keys(SERVERS).join(", ")})`);

function startServer(name) {
  return new Promise((resolve, reject) => {
    const child = spawn("taskset", ["-c", values["server-cpu"], process.execPath, ...SERVERS[name].args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on ([\d.]+):(\d+)/.exec(out);
      // taskset execs node, so the child's pid is the server's
      if (m) resolve({ child, port: Number(m[2]), pid: child.pid, stderr: () => err });
    });
    child.on("exit", (code) => reject(new Error(`${name} exited with ${code} before listening: ${err}`)));
  });
}

function stopServer(server) {
  return new Promise((resolve) => {
    if (server.child.exitCode !== null) { resolve(); return; }
    const kill = setTimeout(() => server.child.kill("SIGKILL"), 5000);
    server.child.removeAllListeners("exit");
    server.child.on("exit", () => { clearTimeout(kill); resolve(); });
    server.child.kill("SIGTERM");
  });
}

function runClient(port, pid, conns) {
  return new Promise((resolve, reject) => {
    const args = [
      "-c", values["client-cpu"], process.execPath, path("./echo-client.mjs"), "--json",
      "--port", String(port), "--server-pid", String(pid), "--conns", String(conns),
      "--duration", values.duration, "--warmup", values.warmup, "--size", values.size,
      "--cpus", `${values["server-cpu"]},${values["client-cpu"]}`, "--drain", values.drain,
    ];
    const child = spawn("taskset", args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => { out += d; });
    child.on("exit", (code) => {
      if (code !== 0) reject(new Error(`client exited with ${code}`));
      else resolve(JSON.parse(out));
    });
  });
}

// ---- syscalls per message (--syscalls) -------------------------------------
const TRACEPOINTS = [
  ["all", "raw_syscalls:sys_enter"],
  ["epoll_wait", "syscalls:sys_enter_epoll_wait"],
  ["epoll_wait=0", "syscalls:sys_exit_epoll_wait", "ret == 0"],
  ["epoll_pwait", "syscalls:sys_enter_epoll_pwait"],
  ["epoll_pwait=0", "syscalls:sys_exit_epoll_pwait", "ret == 0"],
  ["read", "syscalls:sys_enter_read"],
  ["read<0", "syscalls:sys_exit_read", "ret < 0"],
  ["write", "syscalls:sys_enter_write"],
  ["writev", "syscalls:sys_enter_writev"],
  ["epoll_ctl", "syscalls:sys_enter_epoll_ctl"],
  ["futex", "syscalls:sys_enter_futex"],
  ["accept4", "syscalls:sys_enter_accept4"],
  ["close", "syscalls:sys_enter_close"],
];

function perfStat(pid) {
  const args = ["stat", "-x", ",", "-p", String(pid)];
  for (const [, ev, filter] of TRACEPOINTS) { args.push("-e", ev); if (filter) args.push("--filter", filter); }
  const child = spawn("perf", args, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (d) => { err += d; });
  const done = new Promise((resolve) => child.on("exit", () => resolve(err)));
  return {
    started: new Promise((r) => setTimeout(r, 300)), // perf attaches to every thread first
    async stop() {
      child.kill("SIGINT");
      const text = await done;
      const counts = text.split("\n").filter((l) => /^\d/.test(l)).map((l) => Number(l.split(",")[0]));
      if (counts.length !== TRACEPOINTS.length) throw new Error(`perf stat: unexpected output:\n${text}`);
      return Object.fromEntries(TRACEPOINTS.map(([name], i) => [name, counts[i]]));
    },
  };
}

if (values.syscalls) {
  console.log(`echo, syscalls per message (perf stat on the server, whole client run; node ${process.version})\n`);
  console.log(`| server | conns | messages | ${TRACEPOINTS.map(([n]) => n).join(" | ")} |`);
  console.log(`| --- | ---: | ---: | ${TRACEPOINTS.map(() => "---:").join(" | ")} |`);
  for (const conns of connCounts) {
    for (const name of servers) {
      const server = await startServer(name);
      let res, counts;
      try {
        const perf = perfStat(server.pid);
        await perf.started;
        res = await runClient(server.port, server.pid, conns);
        counts = await perf.stop();
      } finally {
        await stopServer(server);
      }
      const per = TRACEPOINTS.map(([n]) => (counts[n] / res.messagesTotal).toFixed(3));
      console.log(`| ${SERVERS[name].label} | ${conns} | ${res.messagesTotal} | ${per.join(" | ")} |`);
    }
  }
  process.exit(0);
}

/** Busy ticks (user + nice + system + steal) of each CPU. Interrupt and
 *  softirq time are left out: loopback traffic puts the servers' own packet
 *  handling there, and it is not someone else's load. */
function cpuBusy() {
  const lines = readFileSync("/proc/stat", "utf8").split("\n");
  return (cpu) => {
    const f = lines.find((l) => l.startsWith(`cpu${cpu} `)).trim().split(/\s+/).slice(1).map(Number);
    return f[0] + f[1] + f[2] + f[7];
  };
}
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until both cores were under 10% busy for half a second (or gives up). */
async function quietWait() {
  if (Number(values["quiet-wait"]) <= 0) return;
  const cpus = [values["server-cpu"], values["client-cpu"]];
  for (let i = 0; i < Number(values["quiet-wait"]) * 2; i++) {
    const a = cpuBusy();
    await sleep(500);
    const b = cpuBusy();
    if (cpus.every((c) => (b(c) - a(c)) / (CLK_TCK / 2) < 0.1)) return;
  }
  process.stderr.write(`cores not quiet after ${values["quiet-wait"]} s: measuring anyway\n`);
}

/** One measurement with a fresh server. */
async function measure(name, conns) {
  await quietWait();
  const server = await startServer(name);
  let res;
  try {
    res = await runClient(server.port, server.pid, conns);
  } finally {
    await stopServer(server);
  }
  // Expected lines: the somaxconn note at start, the graceful-shutdown line on SIGTERM.
  const noise = server.stderr().split("\n").filter((l) => l && !/net\.core\.somaxconn/.test(l) && !/: shutting down \(/.test(l));
  if (noise.length) process.stderr.write(`  ${name} stderr: ${noise.join(" | ")}\n`);
  return res;
}

/** CPU time of other processes on the server's and the client's core, in % of each core. */
const otherLoad = (res) => [
  Math.max(0, res.cpuBusyPct[values["server-cpu"]] - res.serverCpuPct),
  Math.max(0, res.cpuBusyPct[values["client-cpu"]] - res.clientCpuPct),
];
const others = (res) => otherLoad(res).map((v) => `${v.toFixed(0)}%`).join("/");

// results[conns][server] = [result per round]
const results = Object.fromEntries(connCounts.map((c) => [c, Object.fromEntries(servers.map((s) => [s, []]))]));
for (let r = 0; r < rounds; r++) {
  for (const conns of connCounts) {
    const order = servers.map((_, i) => servers[(i + r) % servers.length]);
    for (const name of order) {
      let res = null;
      for (let attempt = 0; attempt <= Number(values.retries); attempt++) {
        const a = await measure(name, conns);
        if (!res || Math.max(...otherLoad(a)) < Math.max(...otherLoad(res))) res = a;
        if (Math.max(...otherLoad(a)) <= Number(values["max-other"]) || attempt === Number(values.retries)) break;
        process.stderr.write(`  ${name} ${conns}: disturbed (other load ${others(a)}), again\n`);
      }
      results[conns][name][r] = res;
      process.stderr.write(
        `round ${r + 1} ${String(conns).padStart(5)} conns ${SERVERS[name].label.padEnd(16)} ` +
          `${Math.round(res.msgPerSec).toString().padStart(7)} msg/s p50 ${res.p50us.toFixed(0).padStart(6)} µs ` +
          `p99 ${res.p99us.toFixed(0).padStart(6)} µs err ${res.errors} server ${res.serverCpuPct.toFixed(0)}% ` +
          `${res.serverCpuUsPerMsg.toFixed(2)} µs/msg (user ${res.serverUserUsPerMsg.toFixed(2)} sys ${res.serverSysUsPerMsg.toFixed(2)}) ` +
          `client ${res.clientCpuPct.toFixed(0)}% other ${others(res)}\n`,
      );
    }
  }
}

const median = (a) => { const s = [...a].sort((p, q) => p - q); return s[s.length >> 1]; };
const range = (a, d = 2) => `${median(a).toFixed(d)} (${Math.min(...a).toFixed(d)}..${Math.max(...a).toFixed(d)})`;

console.log(
  `echo, ${values.size}-byte messages, closed loop, ${values.warmup} s warm-up + ${values.duration} s measured, ` +
    `median of ${rounds} rounds (min..max); server on CPU ${values["server-cpu"]}, client on CPU ${values["client-cpu"]} (node ${process.version}; ${bin})`,
);
for (const conns of connCounts) {
  console.log(`\n${conns} connections\n`);
  console.log("| server | msg/s | p50 µs | p99 µs | errors | server CPU | server µs/msg | user / sys µs/msg | client CPU | other load, server / client core | msg/s vs node | µs/msg vs node |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const name of servers) {
    const rs = results[conns][name];
    const base = servers.includes("node") ? results[conns].node : null;
    const ratio = (f) => (base ? range(rs.map((x, i) => f(x) / f(base[i]))) : "-");
    console.log(
      `| ${SERVERS[name].label} | ${Math.round(median(rs.map((x) => x.msgPerSec))).toLocaleString("en")} ` +
        `| ${median(rs.map((x) => x.p50us)).toFixed(0)} | ${median(rs.map((x) => x.p99us)).toFixed(0)} ` +
        `| ${rs.reduce((s, x) => s + x.errors, 0)} | ${median(rs.map((x) => x.serverCpuPct)).toFixed(0)}% ` +
        `| ${range(rs.map((x) => x.serverCpuUsPerMsg))} ` +
        `| ${median(rs.map((x) => x.serverUserUsPerMsg)).toFixed(2)} / ${median(rs.map((x) => x.serverSysUsPerMsg)).toFixed(2)} ` +
        `| ${median(rs.map((x) => x.clientCpuPct)).toFixed(0)}% ` +
        `| ${median(rs.map((x) => otherLoad(x)[0])).toFixed(0)}% / ${median(rs.map((x) => otherLoad(x)[1])).toFixed(0)}% ` +
        `| ${name === "node" ? "1" : ratio((x) => x.msgPerSec)} | ${name === "node" ? "1" : ratio((x) => x.serverCpuUsPerMsg)} |`,
    );
  }
}
