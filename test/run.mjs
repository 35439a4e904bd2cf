#!/usr/bin/env node
// Runs every test/*.test.mjs with uvu in its own process (tests that start
// servers and workers stay isolated; a hung file is killed at its deadline),
// then prints the totals as one line: `N passed, M failed`.
//
// Every file that drives a real event backend runs once per combination of
// event backend and I/O backend in COMBOS, with WASM_REACTOR_BACKEND and
// WASM_REACTOR_IO_BACKEND set for it: the library's defaults (Reactor,
// Server, the CLI and its workers) honour them, so the tests themselves are
// not copied. The files in ONCE never reach a backend, or name theirs
// explicitly, and run once (with the first combination's variables).
// Either variable set by the caller runs every file on that one combination
// (the other at its default: epoll, auto). Totals are printed per
// combination, then summed on the last line.
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith(".test.mjs"))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
const PER_FILE_MS = 120_000;
// Two runs per live file, as before the I/O backend existed (the suite stays
// at its old length): each event backend and each executor meets the whole
// suite once. epoll with io_uring first (the default pair: auto picks io_uring
// where it works), then poll with the libc executor (epoll_threadpool, what
// auto falls back to), which also keeps the poll backend's edge emulation
// tested against one syscall per request. The pairs left out (epoll + libc,
// poll + io_uring) put together parts each tested here; test/uring.test.mjs
// runs both executors' contract directly, and bench/http.sh --smoke serves
// all four.
const uringOk = await import("../dist/index.js").then((m) => m.uringAvailability().ok, () => false);
const COMBOS = process.env.WASM_REACTOR_BACKEND || process.env.WASM_REACTOR_IO_BACKEND
  ? [{ backend: process.env.WASM_REACTOR_BACKEND || "epoll", io: process.env.WASM_REACTOR_IO_BACKEND || "auto" }]
  : [{ backend: "epoll", io: uringOk ? "io_uring" : "epoll_threadpool" }, { backend: "poll", io: "epoll_threadpool" }];
if (!uringOk && COMBOS.length > 1) process.stdout.write("note: io_uring is unavailable here: every file runs on the libc executor\n");
const BACKENDS = COMBOS.map((c) => `${c.backend}+${c.io}`);
const comboOf = Object.fromEntries(COMBOS.map((c, i) => [BACKENDS[i], c]));
// Files that also run once with io_uring made unavailable (the test hook
// WASM_REACTOR_IO_URING_FAIL=EPERM: every io_uring_setup fails), so their
// fallback paths run whole: the io_uring tests skip, auto's fallback is taken.
const UNAVAILABLE = "io_uring unavailable";
const ALSO_UNAVAILABLE = new Set(["io.test.mjs", "uring.test.mjs", "uring-files.test.mjs"]);
comboOf[UNAVAILABLE] = { backend: COMBOS[0].backend, io: "auto", env: { WASM_REACTOR_IO_URING_FAIL: "EPERM" } };
// TEST_JOBS files at once. Default: 2 for the whole suite on both backends
// (measured on the shared 2-core machine: 264 s one at a time, 186 s two at
// a time; no test asserts on time, so slower is never wrong), else 1, which
// streams each file's output as it comes.
const JOBS = Math.max(1, Number(process.env.TEST_JOBS) || (only.length === 0 && BACKENDS.length > 1 ? 2 : 1));
// Once is enough: the bare core with a fake host (core, shutdown, timers,
// http-units*, tags), the fuzzer's simulated kernel, pure code (abi, parser, chart,
// sources), the package's contents, the docs' examples (the same library
// calls the suite makes on both backends), the benchmark smoke runs (which
// choose their backends themselves: bench/http.sh BACKENDS), and the backend
// unit tests (which name each backend), and the ParallelWriter's own tests
// (files and threads, no event backend; writer-live.test.mjs runs on both),
// the deploy/ manifests' checks and the runInLoop queue's interleavings (pure code),
// and the 10,000-connection idle test (the wheel is the core's, the same on
// every backend; twice would cost the suite's budget another ~15 s).
const ONCE = new Set([
  "abi.test.mjs", "backend.test.mjs", "proxy-core.test.mjs", "bench-smoke.test.mjs", "bench-splice.test.mjs", "chart.test.mjs", "core.test.mjs", "docs.test.mjs",
  "fuzz.test.mjs", "http-units.test.mjs", "http-units-options.test.mjs", "io.test.mjs", "metrics-core.test.mjs", "package.test.mjs", "parser.test.mjs", "proxy-http-parts.test.mjs",
  "proxy-balance.test.mjs", "proxy-balance-host.test.mjs", "proxy-health-core.test.mjs",
  "shutdown.test.mjs", "sources.test.mjs", "tags.test.mjs", "timers.test.mjs", "uring.test.mjs", "writer.test.mjs",
  "deploy.test.mjs", "remote-queue.test.mjs", "wheel.test.mjs", "idle-wheel.test.mjs",
]);

let passed = 0, failed = 0, skipped = 0;
const broken = [];
const per = Object.fromEntries([...BACKENDS, UNAVAILABLE].map((b) => [b, { passed: 0, failed: 0, files: 0 }]));

const took = [];
function runFile(file, backend, label) {
  const start = Date.now();
  return new Promise((resolve) => {
    const c = comboOf[backend];
    const env = { ...process.env, WASM_REACTOR_BACKEND: c.backend, WASM_REACTOR_IO_BACKEND: c.io, ...c.env };
    const child = spawn(process.execPath, [join(here, file)], { stdio: ["ignore", "pipe", "pipe"], detached: true, env });
    let out = "", err = "";
    // One job at a time: output as it comes. Several: each file's output
    // whole, once it is done, so files do not interleave.
    child.stdout.on("data", (d) => { out += d; if (JOBS === 1) process.stdout.write(d); });
    child.stderr.on("data", (d) => { err += d; if (JOBS === 1) process.stderr.write(d); });
    const timer = setTimeout(() => {
      process.stderr.write(`\n${file}: still running after ${PER_FILE_MS / 1000}s; killed\n`);
      try { process.kill(-child.pid, "SIGKILL"); } catch {}
    }, PER_FILE_MS);
    child.on("close", (code) => {
      clearTimeout(timer);
      const secs = (Date.now() - start) / 1000;
      took.push({ label, secs });
      if (JOBS > 1) { process.stdout.write(`\n# ${label} (${secs.toFixed(1)}s)\n${out}`); if (err) process.stderr.write(err); }
      // Kill anything the file left behind in its process group.
      try { process.kill(-child.pid, "SIGKILL"); } catch {}
      const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
      const p = /Passed:\s+(\d+)/.exec(plain), t = /Total:\s+(\d+)/.exec(plain), s = /Skipped:\s+(\d+)/.exec(plain);
      const total = t ? Number(t[1]) : 0, ok = p ? Number(p[1]) : 0, sk = s ? Number(s[1]) : 0;
      passed += ok; skipped += sk;
      // uvu's Total counts the tests that ran (skipped ones are not in it).
      let bad = Math.max(0, total - ok);
      if (code !== 0 && bad === 0) bad = 1; // crashed or timed out before reporting
      failed += bad;
      per[backend].passed += ok; per[backend].failed += bad; per[backend].files++;
      if (bad) broken.push(backend === UNAVAILABLE || (BACKENDS.length > 1 && !ONCE.has(file)) ? `${file} [${backend}]` : file);
      resolve();
    });
  });
}

const t0 = Date.now();
const jobs = files.flatMap((f) => [...(ONCE.has(f) ? BACKENDS.slice(0, 1) : BACKENDS), ...(ALSO_UNAVAILABLE.has(f) ? [UNAVAILABLE] : [])]
  .map((backend) => ({ f, backend })));
const runs = jobs.length;
async function lane() {
  for (let j = jobs.shift(); j; j = jobs.shift()) {
    const label = `${j.f}${ONCE.has(j.f) && j.backend !== UNAVAILABLE ? "" : ` [${j.backend}]`}`;
    if (JOBS === 1) process.stdout.write(`\n# ${label}\n`);
    await runFile(j.f, j.backend, label);
  }
}
await Promise.all(Array.from({ length: JOBS }, lane));
// The slowest runs, to keep the suite inside its 5-minute budget.
took.sort((a, b) => b.secs - a.secs);
process.stdout.write(`\nslowest: ${took.slice(0, 8).map((t) => `${t.label} ${t.secs.toFixed(1)}s`).join(", ")}\n`);
process.stdout.write(`\n${files.length} files (${runs} runs) in ${((Date.now() - t0) / 1000).toFixed(1)}s${broken.length ? `; failing: ${broken.join(", ")}` : ""}\n`);
if (BACKENDS.length > 1) {
  // ONCE files count under the first backend.
  const shown = per[UNAVAILABLE].files ? [...BACKENDS, UNAVAILABLE] : BACKENDS;
  process.stdout.write(shown.map((b) => `${b}: ${per[b].passed} passed, ${per[b].failed} failed (${per[b].files} runs)`).join("; ") + "\n");
}
process.stdout.write(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}\n`);
process.exit(failed ? 1 : 0);
