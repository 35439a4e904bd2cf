#!/usr/bin/env node
// Runs every test/*.test.mjs with uvu in its own process (tests that start
// servers and workers stay isolated; a hung file is killed at its deadline),
// then prints the totals as one line: `N passed, M failed`.
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

let passed = 0, failed = 0, skipped = 0;
const broken = [];

function runFile(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(here, file)], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let out = "";
    child.stdout.on("data", (d) => { out += d; process.stdout.write(d); });
    child.stderr.on("data", (d) => { process.stderr.write(d); });
    const timer = setTimeout(() => {
      process.stderr.write(`\n${file}: still running after ${PER_FILE_MS / 1000}s; killed\n`);
      try { process.kill(-child.pid, "SIGKILL"); } catch {}
    }, PER_FILE_MS);
    child.on("close", (code) => {
      clearTimeout(timer);
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
      if (bad) broken.push(file);
      resolve();
    });
  });
}

const t0 = Date.now();
for (const f of files) {
  process.stdout.write(`\n# ${f}\n`);
  await runFile(f);
}
process.stdout.write(`\n${files.length} files in ${((Date.now() - t0) / 1000).toFixed(1)}s${broken.length ? `; failing: ${broken.join(", ")}` : ""}\n`);
process.stdout.write(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}\n`);
process.exit(failed ? 1 : 0);
