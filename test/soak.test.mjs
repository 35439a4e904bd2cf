// The short versions of bench/soak.mjs (issue 11, "Soak and faults"), against
// `serve`: connection churn back to baseline, fd exhaustion under prlimit,
// SIGTERM under load, and a few seconds of steady load with no counter drift.
// The bench's own checks are not trusted here: each case's figures are
// checked against what must hold whatever the code does (every client got one
// full response, the fd count is the one before, the core holds what it held
// before the load). The long versions, with their figures: bench/RESULTS.md.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { churn, fds, sigterm, long, makeDocroot, stopAll, report, TABLES } from "../bench/soak.mjs";
import { root as repo } from "./lib/procs.mjs";

const root = makeDocroot();
test.after(() => { stopAll(); rmSync(root, { recursive: true, force: true }); });

const CORE = ["liveConnections", "writeBufferBytes", "readBuffersHeld", "timers", "memoryBytes"];
const RSS_MIB = 16; // V8's heap moves (a leak per connection shows in the exact counts: fds, the core's)

/**
 * What bench/soak.mjs prints for case `name` (its report() of `r`): the
 * section, its table with a figure in every cell, a line per check. The
 * checks' verdicts are the bench's; this file asserts its own.
 */
function printed(name, r) {
  const lines = [];
  report(name, r, (l) => lines.push(...l.split("\n")));
  assert.ok(lines.some((l) => l.startsWith(`## ${name}: `)), `a ${name} section:\n${lines.join("\n")}`);
  const at = lines.indexOf(TABLES[name]);
  assert.ok(at >= 0, `the ${name} table`);
  const rows = [];
  for (let i = at + 2; lines[i]?.startsWith("|"); i++) rows.push(lines[i].slice(1, -1).split("|").map((c) => c.trim()));
  assert.ok(rows.length > 0, "rows");
  for (const row of rows) for (const c of row.slice(name === "churn" || name === "fds" ? 1 : 0)) assert.match(c, /^-?\d[\d,]*(\.\d+)?$/, `a figure: ${row.join(" | ")}`);
  assert.is(lines.filter((l) => /^(ok {2}|FAIL) /.test(l)).length, r.checks.length, "a line per check");
}

/** The core and the process hold exactly what they held before (RSS within RSS_MIB). */
function baseline(before, after, what) {
  assert.is(after.fds, before.fds, `${what}: open fds`);
  for (const k of CORE) assert.is(after[k], before[k], `${what}: ${k}`);
  assert.is(after.liveConnections, 0, `${what}: no connection open`);
  assert.is(after.invariants, 0, `${what}: checkInvariants()`);
  assert.is(after.accepted - after.closed, 0, `${what}: every connection accepted was closed`);
  assert.ok(after.rss - before.rss < RSS_MIB * 1048576, `${what}: RSS ${before.rss} -> ${after.rss} bytes`);
}

// No spin, in both: a window in which the server cannot accept with nothing else to do (every
// accepted connection waits for a request not yet sent). A listener left in a level-triggered
// interest set burns all of it; taking it out costs at most a retry a second. (CPU over the
// whole episode could not tell: serving 1,000 clients is itself about half CPU-bound.)
function noSpin(r) {
  assert.ok(r.pausedFirst, "accepting stopped before any client sent");
  assert.ok(r.holdCpu < r.holdWall / 10, `server CPU ${r.holdCpu.toFixed(3)} s in the ${r.holdWall.toFixed(2)} s it waited`);
  assert.is(r.afterStatus, 200, "a new client is served afterwards");
  assert.equal(r.exit, { code: 0, signal: null }, "exit 0 after SIGTERM");
}

test("fd exhaustion: prlimit --nofile=256, 1,000 clients at once, default cap: each served once, no spin, exit 0", async () => {
  const r = await fds(root, { clients: 1_000, nofile: 256 });
  assert.is(r.connected, 1_000, "every client connected before any sent (the listen queue holds them)");
  assert.is(r.served, 1_000, "every client got its response");
  // 256 fds less the 64 kept for files and the loop (host/limits.ts defaultConnectionCap)
  assert.is(r.cap, 192, `the cap was reached (else this tests nothing); stderr:\n${r.stderr}`);
  assert.not.match(r.stderr, /out of file descriptors/, "the cap kept accepts from taking every fd");
  noSpin(r);
  printed("fds", { nofile: r.nofile, clients: r.clients, runs: [r], checks: r.checks });
});

test("fd exhaustion with --max-connections 0: accepting pauses on EMFILE and resumes; every client answered, 200 or 503 Retry-After; no spin", async () => {
  const r = await fds(root, { clients: 1_000, nofile: 256, noCap: true });
  assert.is(r.connected, 1_000);
  assert.is(r.served + r.unavailable, 1_000, "every client got a 200, or a 503 with Retry-After (never a 404, never a reset)");
  assert.match(r.stderr, /accept: out of file descriptors/, `the limit was reached (else this tests nothing); stderr:\n${r.stderr}`);
  assert.match(r.stderr, /accept: resumed/);
  noSpin(r);
  printed("fds", { nofile: r.nofile, clients: r.clients, runs: [r], checks: r.checks });
});

// 5,000: ~1,000 connections/s here on a busy day (the client is node:net);
// `node bench/soak.mjs --case churn --connections 20000` for more.
test("churn: 5,000 connections of one request each; fds, core counters and memory back to where they were", async () => {
  const N = 5_000;
  const r = await churn(root, { connections: N, concurrency: 64, warmup: 500, settleMs: 300 });
  assert.is(r.load.ok, N, `every connection got a full 200 (first error: ${r.load.firstError})`);
  assert.is(r.load.partial, 0);
  assert.is(r.after.accepted - r.before.accepted, N, "the server accepted each connection once");
  assert.is(r.after.requests - r.before.requests, N, "one request each");
  baseline(r.before, r.after, "after the churn");
  printed("churn", r);
});

test("SIGTERM under load (keep-alive and new connections, 1 KiB and 1 MiB): no truncated response, exit 0 within the timeout", async () => {
  const graceMs = 5_000;
  const r = await sigterm(root, { seconds: 1.5, graceMs });
  assert.ok(r.before > 0 && r.large > 0, `load before the signal, 1 MiB responses among it (${r.before}, ${r.large})`);
  assert.ok(r.receiving + r.waiting > 0, "requests were in progress at the signal (else this tests nothing)");
  assert.is(r.partial, 0, `responses cut short (${r.complete} complete, ${r.neverStarted} never started)`);
  assert.is(r.bad, 0, "every complete response a 200");
  assert.equal(r.exit, { code: 0, signal: null });
  assert.ok(r.exitMs <= graceMs, `exited ${r.exitMs} ms after SIGTERM`);
  printed("sigterm", r);
});

test("steady load for 4 s: accepted - closed == live at every sample, no growth of held buffers, back to baseline", async () => {
  const r = await long(root, { minutes: 4 / 60, intervalS: 1, rate: 300, conns: 20, warmup: 300, settleMs: 300 });
  assert.ok(r.samples.length >= 3, `samples: ${r.samples.length}`);
  assert.ok(r.samples.at(-1).ok > 0, "requests were served");
  for (const s of r.samples) {
    assert.is(s.accepted - s.closed, s.liveConnections, `at ${s.t} s`);
    assert.ok(s.liveConnections <= 20 + 30, `at ${s.t} s: ${s.liveConnections} connections (20 keep-alive + the new ones in flight)`);
    assert.ok(s.readBuffersHeld <= s.liveConnections, `at ${s.t} s: ${s.readBuffersHeld} receive buffers for ${s.liveConnections} connections`);
    assert.is(s.memoryBytes, r.before.memoryBytes, `at ${s.t} s: the core's memory`);
  }
  assert.is(r.errors, 0, `errors (first: ${r.firstError})`);
  assert.is(r.partial, 0, "responses cut short");
  baseline(r.before, r.after, "after the load");
  printed("long", r);
});

test("the command line: --smoke --case sigterm runs and exits 0; a bad case or number exits 2 with one line", () => {
  const soak = (...args) => spawnSync(process.execPath, ["bench/soak.mjs", ...args], { cwd: repo, encoding: "utf8", timeout: 60_000 });
  const r = soak("--smoke", "--case", "sigterm");
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^## sigterm: load for 0\.5 s/m);
  assert.ok(r.stdout.includes(TABLES.sigterm), r.stdout);
  assert.not.match(r.stdout, /^FAIL/m);
  for (const bad of [["--case", "nope"], ["--minutes", "-1"], ["--fast"]]) {
    const b = soak(...bad);
    assert.is(b.status, 2, bad.join(" "));
    assert.match(b.stderr, /^soak\.mjs: .+\n$/, `one line for ${bad.join(" ")}`);
  }
});

test("bench/RESULTS.md's Soak section has each case's table as the script prints it", () => {
  const results = readFileSync(`${repo}/bench/RESULTS.md`, "utf8");
  const at = results.indexOf("\n## Soak (bench/soak.mjs)\n");
  assert.ok(at >= 0, "a Soak section");
  const section = results.slice(at + 1).split(/\n## /)[0];
  for (const name of Object.keys(TABLES)) assert.ok(section.includes(`\n${TABLES[name]}\n`), `the ${name} table's header`);
});

test.run();
