// Fairness under a pipelining hog (issue 11): one client that sends 10,000
// requests back to back, continuously, beside 100 ordinary keep-alive
// clients at a modest steady rate. What is measured is the ordinary clients'
// latency, open-loop (a request due while its client's previous one is still
// out counts from its scheduled time, so a stalled server is not hidden by
// clients that stop sending: no coordinated omission; one sent by its timer
// counts from its write, so the clients' own timer slop is not charged), with
// the hog and without it, with the per-tick budget (reactor/budget.ts) and
// without it (tickRequests/tickBytes -1). The aim: p99 with the hog within
// 2x of p99 without it, with the budget on.
//
//   node scripts/build.mjs && node bench/fairness.mjs
//   node bench/fairness.mjs --seconds 10 --clients 100 --rate 10 --hog-batch 10000 --hog-nice 19
//   node bench/fairness.mjs --smoke     (a few seconds: 10 clients, 0.5 s per case; the figures mean nothing)
//
// The server (the library's Server, serve's HTTP protocol, ET mode, a fresh
// process per budget setting: the clients alone, then beside the hog) runs pinned to CPU 0 and the clients and the hog to CPU 1
// (taskset; without taskset or a second CPU it says so and runs unpinned).
// The hog runs in a process of its own, so its response traffic does not
// delay the ordinary clients' event loop (it shares their core all the same:
// a 2-core machine has no third one; it runs at nice 19 there, so the clients
// that measure get the core when they need it).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const self = fileURLToPath(import.meta.url);
const usage = `usage: node bench/fairness.mjs [--seconds S] [--warmup S] [--clients N] [--rate R] [--hog-batch N] [--smoke] [--json]
  --seconds S     measured seconds per case (default 10)
  --warmup S      seconds before measuring (default 1)
  --clients N     ordinary keep-alive clients (default 100)
  --rate R        requests per second per ordinary client (default 10)
  --hog-batch N   requests the hog writes back to back per batch, two batches in flight (default 10000)
  --hog-nice N    the hog's nice value on the clients' core (default 19; 0: the clients' own priority)
  --smoke         0.5 s per case, 10 clients, batch 2000: checks that it runs`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      seconds: { type: "string", default: "10" },
      warmup: { type: "string", default: "1" },
      clients: { type: "string", default: "100" },
      rate: { type: "string", default: "10" },
      "hog-batch": { type: "string", default: "10000" },
      "hog-nice": { type: "string", default: "19" },
      smoke: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
      // internal: the child processes
      serve: { type: "string" },       // "budget" | "off"
      hog: { type: "string" },         // port
      root: { type: "string" },        // the server's docroot (made and removed by the parent)
    },
  }));
} catch (e) {
  process.stderr.write(`bench/fairness.mjs: ${e.message} (see --help)\n`);
  process.exit(2);
}
if (values.help) { console.log(usage); process.exit(0); }
if (values.smoke) Object.assign(values, { seconds: "0.5", warmup: "0.1", clients: "10", "hog-batch": "2000" });
const num = (name, min) => {
  const v = Number(values[name]);
  if (!Number.isFinite(v) || v < min) { process.stderr.write(`bench/fairness.mjs: --${name} must be a number >= ${min}, got '${values[name]}'\n`); process.exit(2); }
  return v;
};

const REQ = "GET /small.txt HTTP/1.1\r\nHost: bench\r\n\r\n";


// ---- the server (child) --------------------------------------------------------

async function serve(kind) {
  const { Server } = await import("../dist/index.js");
  const root = values.root;
  const off = kind === "off" ? -1 : 0; // 0: the core's defaults; -1: no limit
  const server = new Server({
    protocol: "http", root, port: 0, mode: "et", idleTimeoutMs: 0, tickRequests: off, tickBytes: off, handleSignals: false,
  });
  process.stdout.write(`port ${server.port}\n`);
  server.run(); // killed by the parent
}

// ---- the hog (child) -----------------------------------------------------------

/** The length of one response to REQ (fixed: same file, same header lengths). */
function responseLength(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(REQ));
    let buf = "";
    s.setEncoding("latin1");
    s.on("data", (d) => {
      buf += d;
      const end = buf.indexOf("\r\n\r\n");
      const m = /\r\ncontent-length: *(\d+)/i.exec(buf);
      if (end >= 0 && m && buf.length >= end + 4 + Number(m[1])) { s.destroy(); resolve(end + 4 + Number(m[1])); }
    });
    s.on("error", reject);
  });
}

async function hog(port, batch) {
  const len = await responseLength(port);
  const burst = Buffer.from(REQ.repeat(batch));
  const s = net.connect(port, "127.0.0.1");
  let received = 0, sent = 0;
  const send = () => { s.write(burst); sent += batch; };
  s.on("connect", () => { send(); send(); }); // two batches in flight: never a pause
  s.on("data", (d) => {
    received += d.length;
    // One batch answered: the next goes out at once, back to back.
    if (sent - received / len < batch) send();
  });
  s.on("error", (e) => { process.stderr.write(`hog: ${e.message}\n`); process.exit(1); });
  process.on("SIGTERM", () => { process.stdout.write(`answered ${Math.floor(received / len)}\n`); process.exit(0); });
  setInterval(() => process.stdout.write(`answered ${Math.floor(received / len)}\n`), 250);
}

// ---- the ordinary clients and the report (parent) --------------------------------

function pinArgs(cpu) {
  if (availableParallelism() < 2) return null;
  try { execFileSync("taskset", ["-c", "0", "true"], { stdio: "ignore" }); } catch { return null; }
  return ["taskset", "-c", String(cpu)];
}

function child(args, cpu, nice = 0) {
  const pin = pinArgs(cpu);
  const prefix = [...(pin ?? []), ...(nice ? ["nice", "-n", String(nice)] : [])];
  const [cmd, ...rest] = [...prefix, process.execPath, ...args];
  const c = spawn(cmd, rest, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  c.stdout.setEncoding("utf8");
  c.stdout.on("data", (d) => { out += d; });
  c.output = () => out;
  return c;
}

function waitFor(c, re, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 20_000);
    const look = () => { const m = re.exec(c.output()); if (m) { clearTimeout(t); resolve(m); } };
    c.stdout.on("data", look);
    c.on("exit", (code) => { clearTimeout(t); reject(new Error(`${what}: the child exited (${code})`)); });
    look();
  });
}

const stop = (c) => new Promise((resolve) => { if (c.exitCode !== null) return resolve(); c.on("exit", resolve); c.kill("SIGKILL"); });

/** One ordinary client: a keep-alive connection, one request at a time, on a fixed schedule. */
function client(port, rate, t0, until, sample) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.setNoDelay(true);
    s.setEncoding("latin1");
    const period = 1000 / rate;
    let next = t0 + Math.random() * period; // spread the clients over one period
    let inFlight = -1;                      // the scheduled time of the request in flight (-1: none)
    let since = 0;                          // where its latency counts from (see fire)
    let buf = "";
    let errors = 0;
    let timer = null;
    const finish = () => { clearTimeout(timer); s.destroy(); resolve(errors); };
    // Latency counts from the request's scheduled time when the server made it late (it was due
    // while the previous answer was still out: open-loop, no coordinated omission), and from the
    // moment it was written when only this client's timer made it late (libuv's timers round to
    // the millisecond, and the hog shares this core): the server is not charged for the
    // instrument's own delay.
    const fire = (dueBehindAnswer = false) => {
      timer = null;
      if (inFlight >= 0) return;            // still waiting: sent when the answer comes (late, and measured so)
      if (next >= until) return finish();
      // Node's timers run on libuv's millisecond loop clock, so one can fire up to 1 ms before
      // performance.now() reaches `next`: a request sent then would be answered "before" it was
      // due (the negative p50s this benchmark used to print). Not before its time, then.
      if (performance.now() < next) return arm();
      inFlight = next;
      since = dueBehindAnswer ? next : performance.now();
      next += period;
      s.write(REQ);
    };
    const arm = () => { if (!timer && inFlight < 0) timer = setTimeout(() => fire(), Math.max(0, next - performance.now())); };
    s.on("connect", arm);
    s.on("data", (d) => {
      buf += d;
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const m = /\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end + 2));
        const total = end + 4 + (m ? Number(m[1]) : 0);
        if (buf.length < total) return;
        if (!buf.startsWith("HTTP/1.1 200 ")) errors++;
        buf = buf.slice(total);
        const now = performance.now();
        sample(inFlight, now - since);
        inFlight = -1;
        if (next <= now) fire(true); else arm(); // a request already due goes at once
      }
    });
    s.on("error", () => { errors++; finish(); });
    s.on("close", () => { if (next < until) errors++; finish(); });
  });
}

/** One server (budget on or off): the ordinary clients alone, then beside the hog. */
async function measure(budget, o) {
  const server = child([self, "--serve", budget ? "budget" : "off", "--root", o.root], 0);
  let hogProc = null;
  try {
    const port = Number((await waitFor(server, /^port (\d+)$/m, "the server's port"))[1]);
    const base = await round(port, null, o);
    // The hog at nice 19: it shares CPU 1 with the clients that measure, and an instrument starved
    // by the load it sits beside measures its own scheduling delay. It still gets all of CPU 1
    // the clients leave (they need a few percent), so it stays as fast as the server lets it be.
    hogProc = child([self, "--hog", String(port), "--hog-batch", String(o.batch)], 1, o.hogNice);
    await waitFor(hogProc, /^answered [1-9]\d*$/m, "the hog's first answers");
    const hogged = await round(port, hogProc, o);
    return { budget, base, hogged };
  } finally {
    if (hogProc) await stop(hogProc);
    await stop(server);
  }
}

/** The ordinary clients' run: warm-up, then the measured seconds. */
async function round(port, hogProc, o) {
  const t0 = performance.now() + 100;
  const from = t0 + o.warmup * 1000;
  const until = from + o.seconds * 1000;
  const lat = [];
  const hogAt = () => Number(/answered (\d+)\n$/.exec(hogProc?.output() ?? "")?.[1] ?? 0);
  let hogFrom = 0;
  setTimeout(() => { hogFrom = hogAt(); }, from - performance.now());
  const errs = await Promise.all(Array.from({ length: o.clients }, () =>
    client(port, o.rate, t0, until, (at, ms) => { if (at >= from) lat.push(ms); })));
  const hogRate = hogProc ? (hogAt() - hogFrom) / o.seconds : 0;
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN);
  return { samples: lat.length, p50: q(0.5), p99: q(0.99), max: lat.at(-1) ?? NaN, errors: errs.reduce((a, b) => a + b, 0), hogRate };
}

async function main() {
  const o = {
    seconds: num("seconds", 0.1), warmup: num("warmup", 0), clients: Math.floor(num("clients", 1)),
    rate: num("rate", 0.1), batch: Math.floor(num("hog-batch", 1)), hogNice: Math.min(19, Math.floor(num("hog-nice", 0))),
  };
  const pinned = pinArgs(0) !== null;
  o.root = mkdtempSync(join(tmpdir(), "wasm-reactor-fairness-"));
  writeFileSync(join(o.root, "small.txt"), "x".repeat(100));
  const cases = [];
  try {
    for (const budget of [true, false]) cases.push(await measure(budget, o));
  } finally {
    rmSync(o.root, { recursive: true, force: true });
  }
  if (values.json) { console.log(JSON.stringify({ ...o, pinned, cases })); return; }
  const f = (v) => (Number.isFinite(v) ? v.toFixed(2) : "-");
  console.log(`${o.clients} clients x ${o.rate} req/s (open-loop), hog: ${o.batch} pipelined requests per batch, 2 in flight, at nice ${o.hogNice}; ` +
    `${o.seconds} s per case after ${o.warmup} s; ${pinned ? "server on CPU 0, clients and hog on CPU 1" : "NOT pinned (no taskset or one CPU)"}`);
  console.log("");
  console.log("| budget | hog | samples | p50 ms | p99 ms | max ms | p99 / no hog | hog req/s | errors |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const { budget, base, hogged } of cases) {
    const name = budget ? "on" : "off";
    for (const [hogName, r] of [["no", base], ["yes", hogged]]) {
      console.log(`| ${name} | ${hogName} | ${r.samples} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.max)} | ${f(r.p99 / base.p99)} | ` +
        `${Math.round(r.hogRate)} | ${r.errors} |`);
    }
  }
}

// Last: everything above is defined by now.
if (values.serve !== undefined) await serve(values.serve);
else if (values.hog !== undefined) await hog(Number(values.hog), num("hog-batch", 1));
else await main();
