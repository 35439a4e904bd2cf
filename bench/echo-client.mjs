// A closed-loop echo load client: N connections, each sends one MSG-byte
// message, waits for all of it to come back, records the round-trip time and
// sends the next. Used by bench/echo.mjs; runs on its own too:
//
//   node bench/echo-client.mjs --port P [--conns 50] [--duration 5] [--warmup 1]
//                              [--size 64] [--server-pid PID] [--drain 1] [--json]
//
// Only the window after the warm-up is measured: messages/s, latency
// percentiles, errors, the client's own CPU (it may be the bottleneck: a
// closed loop cannot offer more load than it can process itself), and, with
// --server-pid, the server's CPU time over exactly the same window, from
// utime + stime in /proc/PID/stat (all threads of the process).
//
// Errors: failed connects, socket errors, unexpected closes, echoes whose
// bytes differ from what was sent, and connections still waiting for an echo
// --drain seconds after the window (stalled).
//
// With --cpus 0,1 it also reports how busy those CPUs were over the window
// (all processes, /proc/stat): on a shared machine, what is busy beyond the
// server's and the client's own CPU time is someone else's load.
import net from "node:net";
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    conns: { type: "string", default: "50" },
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    size: { type: "string", default: "64" },
    "server-pid": { type: "string" },
    cpus: { type: "string" }, // e.g. "0,1": report how busy these CPUs were (all processes)
    drain: { type: "string", default: "1" }, // s to wait for the echoes in flight after the window
    json: { type: "boolean", default: false },
  },
});
if (!values.port) { process.stderr.write("echo-client: --port is required\n"); process.exit(2); }
const PORT = Number(values.port);
const CONNS = Number(values.conns);
const DURATION_MS = Number(values.duration) * 1000;
const WARMUP_MS = Number(values.warmup) * 1000;
const SIZE = Number(values.size);
const SERVER_PID = values["server-pid"] ? Number(values["server-pid"]) : 0;
const CONNECT_PARALLEL = 200; // connects in flight at once; stays far below the listen backlog

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** utime and stime of a process (all its threads), in µs (clock-tick resolution). */
function cpuMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
  return { user: (Number(f[11]) * 1e6) / CLK_TCK, sys: (Number(f[12]) * 1e6) / CLK_TCK };
}

const CPUS = values.cpus ? values.cpus.split(",").map(Number) : [];

/** Busy and total ticks of each CPU in CPUS, from /proc/stat. Busy is user +
 *  nice + system + steal: interrupt and softirq time are left out, because
 *  loopback traffic puts the server's and the client's own packet handling
 *  there (it is not in their utime/stime), and it is not someone else's load. */
function cpuTimes() {
  const lines = readFileSync("/proc/stat", "utf8").split("\n");
  return CPUS.map((cpu) => {
    const f = lines.find((l) => l.startsWith(`cpu${cpu} `)).trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is inside user
    return { busy: f[0] + f[1] + f[2] + f[7], total };
  });
}

let errors = 0;
const errorKinds = new Map();
function error(kind) {
  errors++;
  errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
}

// Latencies of the measured window, in µs.
let lat = new Float64Array(1 << 20);
let latLen = 0;
let measuring = false;
let stopping = false;
let completed = 0; // echoes completed while measuring
let completedAll = 0; // echoes completed over the whole run, warm-up included

class Conn {
  constructor(id, socket) {
    this.socket = socket;
    // Every message is distinct (connection id + sequence number), so a
    // misrouted or reordered echo shows as a mismatch.
    this.msg = Buffer.alloc(SIZE, 0x61 + (id % 26));
    this.id = id;
    this.seq = 0;
    this.got = 0;
    this.sentAt = 0;
    this.waiting = false;
    socket.setNoDelay(true);
    socket.on("data", (chunk) => this.onData(chunk));
    socket.on("error", (e) => error(e.code ?? "socket error"));
    socket.on("close", () => { if (!stopping) error("closed by server"); this.waiting = false; });
  }

  send() {
    if (stopping) return;
    this.seq++;
    if (SIZE >= 8) { this.msg.writeUInt32LE(this.id, 0); this.msg.writeUInt32LE(this.seq, 4); }
    this.got = 0;
    this.waiting = true;
    this.sentAt = performance.now();
    this.socket.write(this.msg);
  }

  onData(chunk) {
    if (!this.waiting) { error("unsolicited bytes"); return; }
    const off = this.got;
    this.got += chunk.length;
    if (this.got > SIZE || !chunk.equals(this.msg.subarray(off, off + chunk.length))) {
      error("echo mismatch");
      this.waiting = false;
      this.socket.destroy();
      return;
    }
    if (this.got < SIZE) return;
    this.waiting = false;
    completedAll++;
    if (measuring) {
      if (latLen === lat.length) { const l = new Float64Array(lat.length * 2); l.set(lat); lat = l; }
      lat[latLen++] = (performance.now() - this.sentAt) * 1000;
      completed++;
    }
    this.send();
  }
}

function connect(id) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: values.host, port: PORT });
    socket.once("connect", () => resolve(new Conn(id, socket)));
    socket.once("error", (e) => { error(`connect ${e.code ?? e.message}`); resolve(null); });
  });
}

const conns = [];
for (let i = 0; i < CONNS; i += CONNECT_PARALLEL) {
  const batch = [];
  for (let j = i; j < Math.min(CONNS, i + CONNECT_PARALLEL); j++) batch.push(connect(j));
  for (const c of await Promise.all(batch)) if (c) conns.push(c);
}
const connectErrors = errors;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (const c of conns) c.send();
await sleep(WARMUP_MS);

// the measured window
const server0 = SERVER_PID ? cpuMicros(SERVER_PID) : null;
const client0 = process.cpuUsage();
const cpus0 = cpuTimes();
const t0 = performance.now();
measuring = true;
await sleep(DURATION_MS);
measuring = false;
const wallMs = performance.now() - t0;
const clientCpu = process.cpuUsage(client0);
const cpus1 = cpuTimes();
const server1 = SERVER_PID ? cpuMicros(SERVER_PID) : null;
const serverUser = SERVER_PID ? server1.user - server0.user : 0;
const serverSys = SERVER_PID ? server1.sys - server0.sys : 0;
const serverCpu = serverUser + serverSys;

// Let the echoes in flight come back, then count whoever is still waiting.
stopping = true;
await sleep(Number(values.drain) * 1000);
const stalled = conns.filter((c) => c.waiting).length;
for (let i = 0; i < stalled; i++) error("stalled");
for (const c of conns) c.socket.destroy();

const sorted = lat.subarray(0, latLen).sort();
const pct = (p) => (latLen ? sorted[Math.min(latLen - 1, Math.floor((p / 100) * latLen))] : NaN);
const result = {
  conns: CONNS,
  connected: conns.length,
  size: SIZE,
  seconds: wallMs / 1000,
  messages: completed,
  messagesTotal: completedAll,
  msgPerSec: completed / (wallMs / 1000),
  p50us: pct(50),
  p99us: pct(99),
  p999us: pct(99.9),
  maxUs: latLen ? sorted[latLen - 1] : NaN,
  errors,
  connectErrors,
  errorKinds: Object.fromEntries(errorKinds),
  clientCpuPct: ((clientCpu.user + clientCpu.system) / 1000 / wallMs) * 100,
  serverCpuPct: SERVER_PID ? (serverCpu / 1000 / wallMs) * 100 : NaN,
  serverCpuUsPerMsg: SERVER_PID && completed ? serverCpu / completed : NaN,
  cpuBusyPct: Object.fromEntries(CPUS.map((cpu, i) => [cpu, ((cpus1[i].busy - cpus0[i].busy) / (cpus1[i].total - cpus0[i].total)) * 100])),
  serverUserUsPerMsg: SERVER_PID && completed ? serverUser / completed : NaN,
  serverSysUsPerMsg: SERVER_PID && completed ? serverSys / completed : NaN,
};

if (values.json) {
  process.stdout.write(JSON.stringify(result) + "\n");
} else {
  const r = result;
  process.stdout.write(
    `${r.connected}/${r.conns} conns, ${r.size}-byte messages, ${r.seconds.toFixed(1)} s: ` +
      `${Math.round(r.msgPerSec).toLocaleString("en")} msg/s, p50 ${r.p50us.toFixed(0)} µs, p99 ${r.p99us.toFixed(0)} µs, ` +
      `errors ${r.errors}${r.errors ? ` ${JSON.stringify(r.errorKinds)}` : ""}, client CPU ${r.clientCpuPct.toFixed(0)}%` +
      (SERVER_PID
        ? `, server CPU ${r.serverCpuPct.toFixed(0)}% = ${r.serverCpuUsPerMsg.toFixed(2)} µs/msg ` +
          `(user ${r.serverUserUsPerMsg.toFixed(2)}, sys ${r.serverSysUsPerMsg.toFixed(2)})`
        : "") + "\n",
  );
}
process.exit(0);
