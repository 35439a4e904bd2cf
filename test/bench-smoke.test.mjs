// Every benchmark in bench/ still runs on the current contract: each one in
// its tiny-effort mode (--smoke, or the smallest flags it has), checked for
// exit status 0 and for printing the figures it exists to print: the same
// table headers (and row labels) as its section of bench/RESULTS.md, every
// cell a number. Their values are never checked, only facts that hold on any
// machine (an echo server echoes without errors, echo's round trip is one
// READ and one WRITE per event). A benchmark that rots fails here instead of
// on the day someone wants its numbers again (bench/dispatch.mjs once kept
// its own copy of the pump, which drifted from the core until it no longer
// ran; it now drives the core through test/lib/fakehost.mjs).
//
// What CI lacks (wrk for bench/http.sh; two worktree builds for bench/ab.sh)
// is checked as far as it goes without it (syntax, --help) and the skip is
// printed. A new file in bench/ must be added to COVERED below.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { root as repo } from "./lib/procs.mjs";

const bench = join(repo, "bench");
const dir = mkdtempSync(join(tmpdir(), "wasm-reactor-bench-smoke-"));
const results = readFileSync(join(bench, "RESULTS.md"), "utf8");
const live = new Set();

/** Kills what is left of a process group we started (servers of a script killed at its deadline). */
function killGroup(child) { try { process.kill(-child.pid, "SIGKILL"); } catch {} }

test.after(() => {
  for (const c of live) killGroup(c);
  rmSync(dir, { recursive: true, force: true });
});

/** Starts cmd in its own process group; `done` resolves {code, signal, stdout, stderr} once it exits. */
function start(cmd, args, { env = {}, ms = 60_000 } = {}) {
  const child = spawn(cmd, args, { cwd: repo, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  live.add(child);
  let stdout = "", stderr = "";
  child.stdout.on("data", (d) => { stdout += d; });
  child.stderr.on("data", (d) => { stderr += d; });
  const timer = setTimeout(() => { stderr += `\n[killed after ${ms} ms]`; killGroup(child); }, ms);
  child.done = new Promise((resolve) => child.on("close", (code, signal) => {
    clearTimeout(timer);
    killGroup(child); // whatever it left running
    live.delete(child);
    resolve({ code, signal, stdout, stderr });
  }));
  child.output = () => stdout;
  return child;
}

const run = (cmd, args, opts) => start(cmd, args, opts).done;

/** Resolves with the match once `re` matches the child's stdout; rejects after ms or at its exit. */
function waitFor(child, re, what, ms = 15_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; stdout: ${child.output()}`)), ms);
    const look = () => {
      const m = re.exec(child.output());
      if (m) { clearTimeout(timer); resolve(m); }
    };
    child.stdout.on("data", look);
    child.on("close", () => { clearTimeout(timer); reject(new Error(`exited before ${what}; stdout: ${child.output()}`)); });
    look();
  });
}

function ok(r, what) {
  assert.is(r.code, 0, `${what} exits 0 (signal ${r.signal}); stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
}

// ---- reading tables ----------------------------------------------------------

const cells = (line) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());

/** The markdown tables of `text`: [{header: "| a | b |", rows: [[cells]]}]. */
function tables(text) {
  const lines = text.split("\n");
  const out = [];
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!/^\|/.test(lines[i]) || !/^\|\s*-{3}/.test(lines[i + 1])) continue;
    const t = { header: lines[i].trim(), rows: [] };
    for (i += 2; i < lines.length && /^\|/.test(lines[i]); i++) t.rows.push(cells(lines[i]));
    out.push(t);
    i--;
  }
  return out;
}

/** The tables of bench/RESULTS.md's section `heading` (up to the next "## "). */
function resultsTables(heading) {
  const at = results.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `bench/RESULTS.md has a "${heading}" section`);
  const rest = results.slice(at + 1);
  const end = rest.indexOf("\n## ", heading.length);
  return tables(end < 0 ? rest : rest.slice(0, end));
}

/** The printed table whose header line is `header`, with at least one row. */
function table(stdout, header) {
  const t = tables(stdout).find((x) => x.header === header);
  assert.ok(t, `prints the table\n${header}\ngot:\n${stdout}`);
  assert.ok(t.rows.length > 0, `rows under ${header}`);
  return t;
}

const NUM = /^-?\d[\d,]*(\.\d+)?$/;
const RANGE = /^\d+\.\d \(\d+\.\d\.\.\d+\.\d\)$/; // 14.7 (14.3..18.4)
function numeric(cell, what, re = NUM) { assert.match(cell, re, `${what}: "${cell}" is a figure`); }

// ---- the in-process benchmarks --------------------------------------------------

test("dispatch.mjs --smoke: every row of its RESULTS.md table, one READ and one WRITE per event", async () => {
  const r = await run(process.execPath, ["bench/dispatch.mjs", "--smoke"]);
  ok(r, "dispatch.mjs --smoke");
  assert.match(r.stdout, /^event dispatch, ns per event, median of 1 runs/m);
  assert.match(r.stdout, /^fixed costs: performance\.now\(\) \d+\.\d ns, empty wasm call \d+\.\d ns/m);
  const [want] = resultsTables("## Event dispatch (bench/dispatch.mjs)");
  const got = table(r.stdout, want.header);
  assert.equal(got.rows.map((c) => c.slice(0, 4)), want.rows.map((c) => c.slice(0, 4)), "the configurations of bench/RESULTS.md");
  for (const row of got.rows) {
    for (const c of row.slice(4, 8)) numeric(c, row.slice(0, 4).join(" "), RANGE);
    // Echo: each event is one read (64 bytes, a short read is "drained" in ET
    // too) and one write of them; anything else (a CTL, an EAGAIN read) is a
    // wasted syscall the table would have to explain.
    assert.is(row[8], "2.00: READ 1.00, WRITE 1.00", `requests per event, ${row.slice(0, 4).join(" ")}`);
  }
  const bad = await run(process.execPath, ["bench/dispatch.mjs", "--fast"]);
  assert.is(bad.code, 2, "an unknown flag exits 2");
});

test("fairness.mjs --smoke: the rows of its RESULTS.md table, every cell a figure, no errors", async () => {
  const r = await run(process.execPath, ["bench/fairness.mjs", "--smoke"], { ms: 90_000 });
  ok(r, "fairness.mjs --smoke");
  const [want] = resultsTables("## Fairness (bench/fairness.mjs)");
  const got = table(r.stdout, want.header);
  assert.equal(got.rows.map((c) => c.slice(0, 2)), want.rows.map((c) => c.slice(0, 2)), "budget on/off, hog no/yes");
  for (const row of got.rows) {
    for (const c of row.slice(2)) numeric(c, row.slice(0, 2).join(" "));
    assert.ok(Number(row[2]) > 0, `samples taken, ${row.slice(0, 2).join(" ")}`);
    assert.is(row[8], "0", `no errors, ${row.slice(0, 2).join(" ")}`);
  }
  const bad = await run(process.execPath, ["bench/fairness.mjs", "--fast"]);
  assert.is(bad.code, 2, "an unknown flag exits 2");
});

test("timers.mjs --smoke: every operation of its RESULTS.md table", async () => {
  const r = await run(process.execPath, ["bench/timers.mjs", "--smoke"]);
  ok(r, "timers.mjs --smoke");
  assert.match(r.stdout, /^timer heap, 1,000 live timers, median of 1 runs/m);
  const [want] = resultsTables("## Timer heap (bench/timers.mjs)");
  const got = table(r.stdout, want.header);
  assert.equal(got.rows.map((c) => c[0]), want.rows.map((c) => c[0]));
  for (const row of got.rows) for (const c of row.slice(1)) numeric(c, row[0]);
  // heap vs wheel: the operations of RESULTS.md's table (there at 10,000 and 100,000, here at 1,000)
  const [wantD, wantMem] = resultsTables("## Connection deadlines: heap vs wheel (bench/timers.mjs)");
  const gotD = table(r.stdout, wantD.header);
  const ops = (t) => [...new Set(t.rows.map((c) => c[1]))];
  assert.equal(ops(gotD), ops(wantD));
  for (const row of gotD.rows) for (const c of row.slice(2, 5)) numeric(c, row[1]);
  assert.equal(table(r.stdout, wantMem.header).rows, wantMem.rows, "the memory table");
});

test("idle-deadlines.mjs --smoke: 100 live deadlines, none early, every connection closed", async () => {
  const r = await run(process.execPath, ["bench/idle-deadlines.mjs", "--smoke"]);
  ok(r, "idle-deadlines.mjs --smoke");
  const t = table(r.stdout, "| closed | measured | resets | errors | still open | early | late p50 ms | late p99 ms | late max ms | later than 10 ms + G | client loop delay p99 / max ms | connect ms |");
  const [closed, , , errors, open, early] = t.rows[0];
  assert.equal([closed, errors, open, early], ["100", "0", "0", "0"]);
  const bad = await run(process.execPath, ["bench/idle-deadlines.mjs", "--conns", "x"]);
  assert.is(bad.code, 2, "a bad flag exits 2");
});

test("balance.mjs --smoke: every policy of its RESULTS.md table at 3 and 256 upstreams", async () => {
  const r = await run(process.execPath, ["bench/balance.mjs", "--smoke"]);
  ok(r, "balance.mjs --smoke");
  assert.match(r.stdout, /^balancePick, ns per pick, median of 1 runs/m);
  const [want] = resultsTables("## Balancing (bench/balance.mjs)");
  const got = table(r.stdout, want.header);
  assert.equal(got.rows.map((c) => c[0]), want.rows.map((c) => c[0]));
  for (const row of got.rows) for (const c of row.slice(1)) numeric(c, row[0]);
  const bad = await run(process.execPath, ["bench/balance.mjs", "--fast"]);
  assert.is(bad.code, 2, "an unknown flag exits 2");
});

test("uring-ring.mjs --smoke: ns per request for libc and every flag set, both request kinds", async () => {
  const r = await run(process.execPath, ["bench/uring-ring.mjs", "--smoke"]);
  ok(r, "uring-ring.mjs --smoke");
  if (/^io_uring unavailable/.test(r.stdout)) { console.log(`\n  ${r.stdout.trim()}`); return; }
  for (const what of ["recv -> EAGAIN", "send 64 B"]) {
    const block = r.stdout.split(`${what}: ns per request`)[1]?.split("\n\n")[0];
    assert.ok(block, `a table for ${what}`);
    const rows = block.trim().split("\n").slice(2); // the title's tail, the header
    assert.equal(rows.map((l) => l.slice(0, 26).trim()),
      ["libc (one call each)", "none", "SUBMIT_ALL|COOP_TASKRUN", "+SINGLE_ISSUER", "+DEFER_TASKRUN", "+NO_SQARRAY", "+fixed files"]);
    for (const l of rows) for (const c of l.slice(26).trim().split(/\s+/)) assert.match(c, /^\d+$/, `${what}: ${l}`);
  }
});

test("io.mjs --smoke: its RESULTS.md tables, every reader and backend that runs here, every cell a figure", async () => {
  const r = await run(process.execPath, ["bench/io.mjs", "--smoke"]);
  ok(r, "io.mjs --smoke");
  const [want, wantSeq] = resultsTables("## io API (bench/io.mjs)");
  const got = table(r.stdout, want.header);
  const names = new Set(got.rows.map((c) => c[0]));
  const uring = !/^io_uring: not measured/m.test(r.stdout);
  for (const n of ["fs.promises FileHandle.read", "fs.readSync", "koffi pread.async (libuv pool)", "io epoll_threadpool", "io threadpool", "io threadpool, copyBuffers"]) {
    assert.ok(names.has(n), `a row for ${n}`);
  }
  assert.is(names.has("io io_uring"), uring, "io_uring rows exactly where it runs");
  for (const row of got.rows) { numeric(row[1], `${row[0]} depth`); numeric(row[2], `${row[0]} ops/s`); numeric(row[3], `${row[0]} ratio`); }
  assert.match(r.stdout, /^O_DIRECT: (measured|not supported here)/m);
  const seq = table(r.stdout, wantSeq.header);
  for (const row of seq.rows) for (const c of row.slice(1)) numeric(c, row[0]);
  assert.is((await run(process.execPath, ["bench/io.mjs", "--fast"])).code, 2, "an unknown flag exits 2");
});

test("parse.mjs: --iterations (what hyperfine runs) and --smoke, one parser each", async () => {
  const r = await run(process.execPath, ["bench/parse.mjs", "--parser", "wasm", "--corpus", "min", "--iterations", "5", "--json"]);
  ok(r, "parse.mjs --iterations 5 --json");
  const j = JSON.parse(r.stdout);
  assert.is(j.requests, 5, "5 passes of one request");
  assert.is(j.requestBytes, readFileSync(join(bench, "corpus/min.http")).length);
  for (const k of ["reqPerSec", "mbPerSec", "nsPerReq", "reqPerCpuSec"]) assert.type(j[k], "number", k);

  const t = await run(process.execPath, ["bench/parse.mjs", "--parser", "llhttp-wasm", "--corpus", "browser", "--pipelined", "--smoke"]);
  ok(t, "parse.mjs --smoke");
  assert.match(t.stdout, /^llhttp-wasm browser pipelined x16 +[\d,]+ req\/s +[\d.]+ MB\/s +[\d.]+ ns\/req +[\d,]+ req\/CPU-s +\(\d+ requests in /m);
});

test("parse-response.mjs --smoke: both parsers, every corpus; a bad flag exits 2", async () => {
  for (const parser of ["wasm", "llhttp-wasm"]) for (const corpus of ["nginx", "min", "cdn"]) {
    const r = await run(process.execPath, ["bench/parse-response.mjs", "--parser", parser, "--corpus", corpus, "--pipelined", "--smoke", "--json"]);
    ok(r, `parse-response.mjs ${parser} ${corpus}`);
    const j = JSON.parse(r.stdout);
    assert.is(j.heads % 16, 0, "whole passes of 16 heads");
    for (const k of ["headsPerSec", "mbPerSec", "nsPerHead", "headsPerCpuSec"]) assert.ok(Number.isFinite(j[k]) && j[k] > 0, k);
  }
  assert.is((await run(process.execPath, ["bench/parse-response.mjs", "--parser", "nope"])).code, 2);
});

test("parse.sh --smoke: its RESULTS.md table for every parser and mode of one corpus, nothing written", async () => {
  const r = await run("bash", ["bench/parse.sh", "--smoke"]);
  ok(r, "parse.sh --smoke");
  assert.match(r.stdout, /== hyperfine: skipped \(--smoke\)/);
  assert.match(r.stdout, /^## Parser \(bench\/parse\.sh\)$/m);
  const want = resultsTables("## Parser (bench/parse.sh)");
  const got = table(r.stdout, want[0].header);
  const rows = got.rows.map((c) => c.slice(0, 3).join(" "));
  for (const m of ["single", "pipelined x16"]) for (const p of ["wasm", "llhttp-wasm", "node"]) {
    assert.ok(rows.includes(`703 ${m} ${p}`), `a row for 703 ${m} ${p}: ${rows}`);
  }
  for (const row of got.rows) { numeric(row[4], "MB/s"); assert.match(row[3], /^\d+\.\d\d M \(/); }
  table(r.stdout, want[1].header); // the ratios
  assert.is(readFileSync(join(bench, "RESULTS.md"), "utf8"), results, "bench/RESULTS.md untouched");
});

test("writer.mjs --smoke: every configuration, files the size of what was written", async () => {
  const r = await run(process.execPath, ["bench/writer.mjs", "--smoke", "--dir", dir]);
  ok(r, "writer.mjs --smoke");
  assert.match(r.stdout, /^writer throughput, 20,000 lines of 100 bytes, median of 1 runs/m);
  const got = table(r.stdout, "| method | threads | lines/s | MB/s | syscalls |");
  assert.equal(got.rows.map((c) => `${c[0]} x${c[1]}`), [
    "fs.writeSync per line x1", "one fd, own 1 MiB buffer x1", "ParallelWriter striped x1",
    "O_APPEND fd per thread, write per line x2", "ParallelWriter striped x2", "ParallelWriter padded x2", "ParallelWriter sharded x2",
  ]);
  for (const row of got.rows) for (const c of row.slice(2)) numeric(c, `${row[0]} x${row[1]}`);
  // A write per line: 20,000 syscalls; 2 MB in 1 MiB buffers: a few.
  assert.is(got.rows[0][4], "20,000");
  for (const row of got.rows.slice(1).filter((c) => c[0] !== "O_APPEND fd per thread, write per line")) {
    assert.ok(Number(row[4]) <= 4, `${row[0]} x${row[1]}: ${row[4]} syscalls for 2 MB`);
  }
  assert.match(r.stdout, /^sizes: every file holds the bytes written$/m);
  assert.is((await run(process.execPath, ["bench/writer.mjs", "--fast"])).code, 2, "an unknown flag exits 2");
});

// ---- the benchmarks with servers ------------------------------------------------

/** Runs echo.mjs --smoke with `args`: its table (RESULTS.md's header) has these servers, each echoing everything intact. */
async function echoSmoke(args, servers) {
  const r = await run(process.execPath, ["bench/echo.mjs", "--smoke", ...args]);
  ok(r, `echo.mjs --smoke ${args.join(" ")}`);
  const want = resultsTables("## Echo server (bench/echo.mjs)")[0];
  const got = table(r.stdout, want.header);
  assert.equal(got.rows.map((c) => c[0]), servers);
  for (const row of got.rows) {
    assert.is(row[4], "0", `${row[0]}: no errors (every echo came back intact)`);
    numeric(row[1], `${row[0]} msg/s`);
    assert.ok(Number(row[1].replace(/,/g, "")) > 0, `${row[0]} echoed something`);
  }
}

test("echo.mjs --smoke: node:net, lt and et echo every message (its RESULTS.md table)", () =>
  echoSmoke([], ["node:net", "wasm-reactor lt", "wasm-reactor et"]));

test("echo.mjs --smoke --servers io-uring,io-epoll,io-pool: the io API's echo server (io-echo.mjs) echoes every message on each backend", () =>
  echoSmoke(["--servers", "io-uring,io-epoll,io-pool"], ["io API, io_uring", "io API, epoll_threadpool", "io API, threadpool"]));

test("http-node.mjs serves the docroot, http-idle.mjs holds connections on it", async () => {
  const docroot = join(dir, "root");
  const body = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7) & 0xff));
  mkdirSync(docroot);
  writeFileSync(join(docroot, "1k.bin"), body);
  const server = start(process.execPath, ["bench/http-node.mjs", "--root", docroot, "--port", "0"]);
  const [, port] = await waitFor(server, /node-http: listening on http:\/\/127\.0\.0\.1:(\d+)\/ \(pid \d+\)/, "http-node to listen");
  const got = await new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/1k.bin" }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }));
    }).on("error", reject);
  });
  assert.is(got.status, 200);
  assert.ok(got.body.equals(body), "the file's bytes");

  const idle = start(process.execPath, ["bench/http-idle.mjs", "--port", port, "--conns", "5", "--batch", "5"]);
  await waitFor(idle, /^ready open=5 failed=0$/m, "http-idle's ready line");
  idle.kill("SIGTERM");
  const r = await idle.done;
  ok(r, "http-idle.mjs");
  assert.match(r.stdout, /^exit still_open=5 closed_by_server=0$/m);
  server.kill("SIGTERM");
  await server.done;
});

test("http-report.mjs turns one run of http.sh (its TSV and meta files) into its RESULTS.md tables", async () => {
  // One line of each, in the column order http.sh writes (see its header).
  const runs = join(dir, "runs.tsv"), idle = join(dir, "idle.tsv"), meta = join(dir, "meta.txt");
  writeFileSync(runs, ["et", "50x1k", "40000", "400000", "10000000", "900", "4000", "0", "0", "0", "0", "0", "800", "100", "1", "5", "0", "900", "3"].join("\t") + "\n");
  writeFileSync(idle, ["et", "100", "100", "0", "60000", "61000", "100", "400", "500"].join("\t") + "\n");
  writeFileSync(meta, "command\t./bench/http.sh\ndate\t2026-01-01 00:00 UTC\nbuild\tcommit test\nmachine\ttest\nsysctl\tnone\nload\t0 / 0\n");
  const r = await run(process.execPath, ["bench/http-report.mjs", "--runs", runs, "--idle", idle, "--meta", meta]);
  ok(r, "http-report.mjs");
  const want = resultsTables("## HTTP (bench/http)");
  const got = table(r.stdout, want[0].header);
  assert.equal(got.rows[0].slice(0, 3), ["wasm-reactor et", "50 conns / 1 KiB", "40,000"]);
  table(r.stdout, want[1].header);
});

test("proxy.sh: syntax and --help; an unknown argument exits 2", async () => {
  ok(await run("bash", ["-n", "bench/proxy.sh"]), "bash -n bench/proxy.sh");
  const help = await run("bash", ["bench/proxy.sh", "--help"]);
  ok(help, "proxy.sh --help");
  assert.match(help.stdout, /^The proxy benchmark/);
  assert.is((await run("bash", ["bench/proxy.sh", "--fast"])).code, 2, "an unknown argument exits 2");
  const need = ["wrk", "curl", "taskset", "nginx"].filter((t) => !process.env.PATH.split(":").some((p) => existsSync(join(p, t))));
  if (need.length) {
    console.log(`\n  bench/proxy.sh --smoke skipped: ${need.join(", ")} not installed (CI has only what npm ci installs)`);
    return;
  }
  const r = await run("bash", ["bench/proxy.sh", "--smoke"]);
  ok(r, "proxy.sh --smoke");
  const rows = table(r.stdout, "| proxy | conns | requests/s | vs HAProxy | proxy CPU µs/req | vs HAProxy | p50 ms | p99 ms | added p99 ms | errors |").rows;
  assert.equal(rows.map((c) => [c[0], c[1]]), [["direct", "5"], ["wr-tcp", "5"]], r.stdout);
  for (const c of rows) {
    assert.ok(Number(c[2]) > 0, `${c[0]}: requests/s`);
    assert.is(c[9], "0", `${c[0]}: no errors`);
  }
  // tcp-mode bulk (--smoke: 1 MiB on one connection): every response whole, MB/s a figure
  const bulk = table(r.stdout, "| proxy | size | conns | MB/s | vs HAProxy | proxy CPU µs/MB | vs HAProxy | errors |").rows;
  assert.equal(bulk.map((c) => c.slice(0, 3)), [["direct", "1 MiB", "1"], ["wr-tcp", "1 MiB", "1"]], r.stdout);
  for (const c of bulk) {
    assert.ok(Number(c[3]) > 0, `${c[0]}: bulk MB/s`);
    assert.is(c[7], "0", `${c[0]}: no bulk errors`);
  }
  numeric(bulk[1][5], "wr-tcp proxy CPU µs/MB");
  const bad = await run("bash", ["bench/proxy.sh", "--smoke"], { env: { BULK: "1m" } });
  assert.is(bad.code, 2, "BULK without :CONNS exits 2");
  assert.match(bad.stderr, /BULK: '1m' is not SIZE:CONNS/);
});

test("http.sh: syntax and --help; --smoke where wrk is installed", async () => {
  const syntax = await run("bash", ["-n", "bench/http.sh"]);
  ok(syntax, "bash -n bench/http.sh");
  const help = await run("bash", ["bench/http.sh", "--help"]);
  ok(help, "http.sh --help");
  assert.match(help.stdout, /^The HTTP static-file benchmark/);
  assert.match(help.stdout, /--smoke/);
  assert.is((await run("bash", ["bench/http.sh", "--fast"])).code, 2, "an unknown argument exits 2");

  const need = ["wrk", "curl", "taskset"].filter((t) => !process.env.PATH.split(":").some((p) => existsSync(join(p, t))));
  if (!existsSync("/usr/bin/time")) need.push("/usr/bin/time");
  if (need.length) {
    console.log(`\n  bench/http.sh --smoke skipped: ${need.join(", ")} not installed (CI has only what npm ci installs)`);
    return;
  }
  const r = await run("bash", ["bench/http.sh", "--smoke"]);
  ok(r, "http.sh --smoke");
  const want = resultsTables("## HTTP (bench/http)");
  const got = table(r.stdout, want[0].header);
  // et on each backend and I/O backend (the smoke runs BACKENDS=epoll,poll IO_BACKENDS=epoll_threadpool,io_uring;
  // the io_uring servers only where io_uring works)
  const { uringAvailability } = await import("../dist/index.js");
  const servers = uringAvailability().ok
    ? ["wasm-reactor et", "wasm-reactor et (io_uring)", "wasm-reactor et (poll)", "wasm-reactor et (poll, io_uring)"]
    : ["wasm-reactor et", "wasm-reactor et (poll)"];
  assert.equal(got.rows.map((c) => c.slice(0, 2)), servers.map((s) => [s, "5 conns / 1 KiB"]));
  for (const row of got.rows) assert.is(row[5], "0", `no wrk errors: ${row[0]}`);
  const mem = table(r.stdout, want[1].header);
  assert.equal(mem.rows.map((c) => c.slice(0, 3)), servers.map((s) => [s, "5", "0"]), "5 idle connections open, none failed");
  assert.is(readFileSync(join(bench, "RESULTS.md"), "utf8"), results, "bench/RESULTS.md untouched");
});

test("c10k.sh: syntax and --help; --smoke where loadgen can be built (its source beside the repository, and cc)", async () => {
  ok(await run("bash", ["-n", "bench/c10k.sh"]), "bash -n bench/c10k.sh");
  const help = await run("bash", ["bench/c10k.sh", "--help"]);
  ok(help, "c10k.sh --help");
  assert.match(help.stdout, /^Latency at C10K, measured open-loop/);
  assert.is((await run("bash", ["bench/c10k.sh", "--fast"])).code, 2, "an unknown argument exits 2");
  const src = join(repo, "..", "shared", "tools", "loadgen", "loadgen.c");
  const need = ["cc", "curl", "taskset"].filter((t) => !process.env.PATH.split(":").some((p) => existsSync(join(p, t))));
  if (!existsSync(src)) need.push("../shared/tools/loadgen");
  if (need.length) {
    console.log(`\n  bench/c10k.sh --smoke skipped: ${need.join(", ")} not here`);
    return;
  }
  const r = await run("bash", ["bench/c10k.sh", "--smoke"]);
  ok(r, "c10k.sh --smoke");
  const header = tables(r.stdout)[0]?.header;
  if (results.includes("\n## C10K latency (bench/c10k.sh)\n")) {
    assert.is(header, resultsTables("## C10K latency (bench/c10k.sh)")[0].header, "the same table as RESULTS.md's");
  }
  const got = table(r.stdout, header);
  assert.equal(got.rows.map((c) => c.slice(0, 3)), [["et", "50", "500"]], "50 connections offered 500 requests/s");
  assert.is(got.rows[0][8], "0", "no errors");
  for (const c of got.rows[0].slice(1)) numeric(c, "c10k cell");
  assert.is(readFileSync(join(bench, "RESULTS.md"), "utf8"), results, "bench/RESULTS.md untouched");
});

test("ab.sh: syntax, --help, and a usage error without two revisions (a run builds two worktrees: not here)", async () => {
  ok(await run("bash", ["-n", "bench/ab.sh"]), "bash -n bench/ab.sh");
  const help = await run("bash", ["bench/ab.sh", "--help"]);
  ok(help, "ab.sh --help");
  assert.match(help.stdout, /^A\/B of two builds/);
  const usage = await run("bash", ["bench/ab.sh", "HEAD"]);
  assert.is(usage.code, 2);
  assert.match(usage.stderr, /^usage: bench\/ab\.sh REV_A REV_B/);
});

test("snapshot.sh copies a build that runs (the core the benchmarks would measure)", async () => {
  const snap = join(dir, "snap");
  const r = await run("sh", ["bench/snapshot.sh", snap]);
  ok(r, "snapshot.sh");
  const sha = (f) => createHash("sha256").update(readFileSync(f)).digest("hex");
  const core = sha(join(repo, "build/core.wasm"));
  assert.match(r.stdout, new RegExp(`^core\\.wasm sha256 ${core.slice(0, 16)}$`, "m"));
  assert.is(sha(join(snap, "build/core.wasm")), core);
  const v = await run(process.execPath, [join(snap, "bin/wasm-reactor.js"), "--version"]);
  ok(v, "the snapshot's CLI");
  const t = await run(process.execPath, ["bench/timers.mjs", "--smoke"], { env: { CORE_WASM: join(snap, "build/core.wasm") } });
  ok(t, "timers.mjs --smoke on the snapshot's core");
});

// ---- nothing in bench/ escapes --------------------------------------------------

// Every file in bench/ and where it is exercised.
const COVERED = {
  "ab.sh": "syntax and --help above",
  "balance.mjs": "--smoke above",
  "c10k.sh": "syntax, --help and --smoke above (--smoke where loadgen's source and cc are here)",
  "chart.mjs": "test/chart.test.mjs (draws bench/RESULTS.md)",
  "dispatch.mjs": "--smoke above",
  "echo-client.mjs": "by echo.mjs --smoke",
  "echo.mjs": "--smoke above",
  "io-echo.mjs": "by echo.mjs --smoke --servers io-uring,io-epoll,io-pool",
  "http-idle.mjs": "above, against http-node.mjs",
  "idle-deadlines.mjs": "--smoke above",
  "http-node.mjs": "above",
  "http-report.mjs": "above, and by http.sh --smoke",
  "http-wrk.lua": "by http.sh --smoke (wrk)",
  "io.mjs": "--smoke above",
  "parse-response.mjs": "--smoke above",
  "http.sh": "--smoke above where wrk is installed; else syntax and --help",
  "node-echo.mjs": "by echo.mjs --smoke",
  "parse-report.mjs": "by parse.sh --smoke",
  "parse.mjs": "above, and by parse.sh --smoke",
  "parse.sh": "--smoke above",
  "snapshot.sh": "above",
  "splice.mjs": "--smoke in test/bench-splice.test.mjs (a file of its own: this one is near the runner's 120 s per file)",
  "soak.mjs": "test/soak.test.mjs (each case's short version and its table; --smoke --case sigterm through the command line)",
  "soak-server.mjs": "test/soak.test.mjs (the churn and steady-load cases run it)",
  "uring-ring.mjs": "--smoke above",
  "timers.mjs": "--smoke above",
  "fairness.mjs": "--smoke above",
  "writer.mjs": "--smoke above",
  "RESULTS.md": "data: the tables every smoke run is compared with",
  "chart.svg": "data: test/chart.test.mjs",
  "corpus": "data: parse.mjs",
  "http-peers": "data: http.sh (nginx, h2o)",
  "lib.sh": "sourced by http.sh and proxy.sh (their runs above)",
  "proxy.sh": "syntax, --help and --smoke above (--smoke where wrk and nginx are installed)",
  "proxy-peers": "data: proxy.sh (HAProxy, nginx)",
};

test("every file in bench/ has a smoke run here (or says why not)", () => {
  const missing = readdirSync(bench).filter((f) => !(f in COVERED));
  assert.equal(missing, [], `add a smoke run to test/bench-smoke.test.mjs for: ${missing.join(", ")}`);
});

test.run();
