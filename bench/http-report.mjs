// Turns the raw measurements of bench/http.sh into the markdown section
// "## HTTP (bench/http)" and, with --write FILE, puts it into FILE in place
// of the previous version of that section (or at the end), leaving the rest
// of the file as it is: other benchmarks own the other sections.
//
//   node bench/http-report.mjs --runs runs.tsv --idle idle.tsv --meta meta.txt [--write bench/RESULTS.md]
//
// runs.tsv: server case rps requests duration_us p50_us p99_us connect read
//           write timeout status cpu_ticks clk_tck alive other_ticks listen_drops
//           wrk_ticks other_client_ticks
// idle.tsv: server conns open failed rss_before_kb rss_after_kb still_open
//           [wasm_before_kb wasm_after_kb]
// meta.txt: `key<TAB>value` lines: command, date, build, machine, sysctl, load, note
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    runs: { type: "string" },
    idle: { type: "string" },
    meta: { type: "string" },
    write: { type: "string" },
  },
});

const HEADING = "## HTTP (bench/http)";
const LABEL = {
  et: "wasm-reactor et", lt: "wasm-reactor lt", "et-poll": "wasm-reactor et (poll)", "lt-poll": "wasm-reactor lt (poll)",
  "et-uring": "wasm-reactor et (io_uring)", "lt-uring": "wasm-reactor lt (io_uring)",
  "et-poll-uring": "wasm-reactor et (poll, io_uring)", "lt-poll-uring": "wasm-reactor lt (poll, io_uring)",
  node: "node:http", nginx: "nginx", h2o: "h2o",
};

function tsv(file) {
  if (!file || !existsSync(file)) return [];
  return readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => l.split("\t"));
}

const runs = tsv(values.runs).map(([server, kase, rps, requests, durationUs, p50, p99, connect, read, write, timeout, status, ticks, clk, alive, other, drops, wrkTicks, otherClient]) => {
  const cpuUs = (Number(ticks) * 1e6) / Number(clk);
  return {
    server, kase, rps: Number(rps), requests: Number(requests), seconds: Number(durationUs) / 1e6,
    p50: Number(p50), p99: Number(p99),
    errors: { connect: +connect, read: +read, write: +write, timeout: +timeout, "non-2xx": +status },
    cpuPerReq: Number(requests) > 0 ? cpuUs / Number(requests) : NaN,
    cpuShare: cpuUs / Number(durationUs), // fraction of one core over the run
    alive: alive === "1",
    // other processes' CPU on the server's core over the run, as a share of it
    otherShare: (Number(other ?? 0) * 1e6) / Number(clk) / Number(durationUs),
    listenDrops: Number(drops ?? 0),
    wrkShare: (Number(wrkTicks ?? NaN) * 1e6) / Number(clk) / Number(durationUs),
    otherClientShare: (Number(otherClient ?? NaN) * 1e6) / Number(clk) / Number(durationUs),
  };
});
const idle = tsv(values.idle).map(([server, conns, open, failed, before, after, stillOpen, wasmBefore, wasmAfter]) => ({
  server, conns: +conns, open: +open, failed: +failed, before: +before, after: +after, stillOpen: +stillOpen,
  perConn: +open > 0 ? ((+after - +before) * 1024) / +open : NaN,
  wasmPerConn: wasmBefore && wasmAfter && +open > 0 ? ((+wasmAfter - +wasmBefore) * 1024) / +open : NaN,
}));
const meta = Object.fromEntries(tsv(values.meta).map(([k, ...v]) => [k, v.join("\t")]));

const ms = (us) => (us >= 100000 ? `${(us / 1000).toFixed(0)} ms` : us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(0)} µs`);
const pct = (f) => (Number.isFinite(f) ? `${(f * 100).toFixed(0)}%` : "–");
const num = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–");
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "–");
function errors(e, alive, listenDrops) {
  const parts = Object.entries(e).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`);
  if (listenDrops > 0) parts.push(`(kernel: ${listenDrops} listen/SYN queue drops)`);
  if (!alive) parts.push("**server died**");
  return parts.length ? parts.join(", ") : "0";
}

function find(server, kase) { return runs.find((r) => r.server === server && r.kase === kase); }

const lines = [HEADING, ""];
if (meta.command) lines.push("Command (from the repository root, as root):", "", "```", meta.command, "```", "");
if (meta.date) lines.push(`Date: ${meta.date}  `);
if (meta.build) lines.push(`wasm-reactor build: ${meta.build}  `);
if (meta.machine) lines.push(`Machine: ${meta.machine}  `);
if (meta.sysctl) lines.push(`Sysctls for the run (left in place): ${meta.sysctl}  `);
if (meta.load) lines.push(`Load average (1/5/15 min) before / after: ${meta.load}`);
lines.push("");
lines.push(
  "Each server runs pinned to CPU 0 (`taskset -c 0`), wrk to CPU 1 with one thread (`wrk -t1`, keep-alive, " +
  "`--latency`); every case gets a freshly started server and a warm-up. *CPU/req* is the server's utime+stime " +
  "(all its processes, /proc/PID/stat) over the wrk run divided by the requests wrk completed (softirq time is not in " +
  "these counters: on loopback it also carries the peer's receive path); *server* and *wrk* are " +
  "their CPU time as a share of one core over the run: a server well below 100% with wrk near 100% means the single " +
  "wrk thread, not the server, was the limit, and then CPU/req is the fairer comparison. *other* is CPU time that other " +
  "processes took on the server's / wrk's core during the run (user+system+steal from /proc/stat minus the server's or " +
  "wrk's own; the machine is shared, and a large value means the figures of that row are disturbed). Ratios are to h2o and node:http in the same case " +
  "(req/s: higher is better; CPU/req: lower is better). *errors* are wrk's (connect, read, write, timeout, non-2xx), " +
  "plus the kernel's listen-queue and SYN-queue overflow counters (/proc/net/netstat) when they moved during the run.",
  "",
);
lines.push(
  "| server | case | req/s | p50 | p99 | errors | CPU/req | server | wrk | other | req/s vs h2o | CPU/req vs h2o | req/s vs node | CPU/req vs node |",
  "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
);
const cases = [...new Set(runs.map((r) => r.kase))];
for (const kase of cases) {
  const h2o = find("h2o", kase);
  const node = find("node", kase);
  for (const r of runs.filter((x) => x.kase === kase)) {
    lines.push(`| ${LABEL[r.server] ?? r.server} | ${kase.replace("x", " conns / ").replace(/k$/, " KiB")} | ${num(r.rps)} | ${ms(r.p50)} | ${ms(r.p99)} | ${errors(r.errors, r.alive, r.listenDrops)} | ${r.cpuPerReq.toFixed(2)} µs | ${pct(r.cpuShare)} | ${pct(r.wrkShare)} | ${pct(r.otherShare)} / ${pct(r.otherClientShare)} | ${ratio(r.rps, h2o?.rps)} | ${ratio(r.cpuPerReq, h2o?.cpuPerReq)} | ${ratio(r.rps, node?.rps)} | ${ratio(r.cpuPerReq, node?.cpuPerReq)} |`);
  }
}
lines.push("");

if (idle.length) {
  lines.push(
    "### Memory per idle keep-alive connection",
    "",
    "`bench/http-idle.mjs` opens the connections (200 connects in flight at a time), sends one `GET /1k.bin` on each, " +
    "reads the response and holds them open; the figure is (RSS with them open − RSS before) / connections open, " +
    "summed over all the server's processes (VmRSS), measured after a warm-up, with the cores quiet, and 2 s after the last connection went idle. " +
    "For wasm-reactor, *of which wasm* is the same difference for the core's linear memory alone (its resident pages, from /proc/PID/smaps): " +
    "the rest of the process is V8, whose heap a garbage collection may shrink or grow by a few MiB while the connections open.",
    "",
    "| server | connections open | failed | RSS before | RSS with them open | bytes per connection | of which wasm | vs h2o |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  const h2o = idle.find((x) => x.server === "h2o");
  for (const r of idle) {
    const stillOpen = r.stillOpen !== r.open ? ` (${r.stillOpen} still open at the end)` : "";
    lines.push(`| ${LABEL[r.server] ?? r.server} | ${num(r.open)}${stillOpen} | ${num(r.failed)} | ${(r.before / 1024).toFixed(1)} MiB | ${(r.after / 1024).toFixed(1)} MiB | ${num(r.perConn)} | ${num(r.wasmPerConn)} | ${ratio(r.perConn, h2o?.perConn)} |`);
  }
  lines.push("");
}
if (meta.note) lines.push(...meta.note.split("\\n"), "");

const section = lines.join("\n");
process.stdout.write(section);

if (values.write) {
  // Re-read just before writing: someone else may have edited other sections.
  const old = existsSync(values.write) ? readFileSync(values.write, "utf8") : "";
  const all = old.split("\n");
  const start = all.findIndex((l) => l.trim() === HEADING);
  let out;
  if (start < 0) {
    out = (old === "" ? "" : old.replace(/\n*$/, "\n\n")) + section;
  } else {
    let end = all.findIndex((l, i) => i > start && /^## /.test(l));
    if (end < 0) end = all.length;
    const before = all.slice(0, start).join("\n");
    const after = all.slice(end).join("\n");
    out = (before ? before + "\n" : "") + section + (after ? "\n" + after : "");
  }
  if (!out.endsWith("\n")) out += "\n";
  writeFileSync(values.write, out);
}
