#!/usr/bin/env node
// ParallelWriter (host/writer/) against the usual ways of writing a stream
// of small payloads (log lines): fs.writeSync per line, one fd with a
// buffer of its own (what FileSink did), and, with worker threads, one
// O_APPEND fd per thread on one file with a write per line (nginx's
// access_log without buffer=). Every configuration writes the same lines
// (--lines in all, --size bytes each, split over the threads); the time runs
// from "go" to the last thread closing its output. Each run's file size is
// checked against the bytes written.
//
//   node bench/writer.mjs [--smoke] [--lines N] [--size BYTES] [--runs R] [--dir DIR]
import { isMainThread, parentPort, workerData, Worker } from "node:worker_threads";
import { openSync, closeSync, writeSync, statSync, rmSync, mkdtempSync, constants } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { ParallelWriter } from "../dist/index.js";

const VARIANTS = 16;
/** `VARIANTS` different lines of `size` bytes, '\n' included. */
function makeLines(size, seed) {
  return Array.from({ length: VARIANTS }, (_, v) => {
    const b = Buffer.alloc(size, 97 + ((v + seed) % 26));
    b.write(`${seed}:${v} `, 0, "latin1");
    b[size - 1] = 0x0a;
    return b;
  });
}

/** One thread's share of a configuration: `n` lines into `how`. Returns the syscalls it made (PW: its writes). */
function produce(how, n, size, seed, target) {
  const lines = makeLines(size, seed);
  switch (how) {
    case "writeSync": case "append": {
      const fd = openSync(target.path, how === "append" ? constants.O_WRONLY | constants.O_APPEND : constants.O_WRONLY);
      for (let i = 0; i < n; i++) writeSync(fd, lines[i % VARIANTS]);
      closeSync(fd);
      return n;
    }
    case "buffered": {
      const fd = openSync(target.path, constants.O_WRONLY);
      const buf = Buffer.allocUnsafe(1 << 20);
      let used = 0, writes = 0;
      for (let i = 0; i < n; i++) {
        const l = lines[i % VARIANTS];
        if (used + l.length > buf.length) { writeSync(fd, buf, 0, used); used = 0; writes++; }
        l.copy(buf, used);
        used += l.length;
      }
      if (used) { writeSync(fd, buf, 0, used); writes++; }
      closeSync(fd);
      return writes;
    }
    default: { // a ParallelWriter producer (its payloads carry their '\n')
      const p = ParallelWriter.join(target.writer, target.shard === undefined ? {} : { shard: target.shard });
      for (let i = 0; i < n; i++) p.write(lines[i % VARIANTS]);
      p.close();
      return p.stats.writes;
    }
  }
}

if (!isMainThread) {
  const { how, n, size, seed, target } = workerData;
  parentPort.once("message", () => parentPort.postMessage(produce(how, n, size, seed, target)));
  parentPort.postMessage("ready");
} else {
  await main();
}

async function main() {
  const args = process.argv.slice(2);
  const opt = { lines: 1_000_000, size: 100, runs: 3, dir: tmpdir() };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--smoke") { opt.lines = 20_000; opt.runs = 1; continue; }
    const key = a.replace(/^--/, "");
    if (!(key in opt) || args[i + 1] === undefined) { process.stderr.write(`bench/writer.mjs: unknown flag ${a} (--smoke, --lines N, --size BYTES, --runs R, --dir DIR)\n`); process.exit(2); }
    opt[key] = key === "dir" ? args[++i] : Number(args[++i]);
  }
  const dir = mkdtempSync(join(opt.dir, "wr-bench-writer-"));
  const CONFIGS = [
    ["fs.writeSync per line", "writeSync", 1],
    ["one fd, own 1 MiB buffer", "buffered", 1],
    ["ParallelWriter striped", "striped", 1],
    ["O_APPEND fd per thread, write per line", "append", 2],
    ["ParallelWriter striped", "striped", 2],
    ["ParallelWriter padded", "padded", 2],
    ["ParallelWriter sharded", "sharded", 2],
  ];
  const fsType = execFileSync("stat", ["-f", "-c", "%T", dir], { encoding: "utf8" }).trim();
  console.log(`writer throughput, ${opt.lines.toLocaleString("en-US")} lines of ${opt.size} bytes, median of ${opt.runs} runs, files on ${fsType} (${dir}); indicative on a busy machine`);
  console.log("");
  console.log("| method | threads | lines/s | MB/s | syscalls |");
  console.log("| --- | --- | --- | --- | --- |");
  let bad = 0;
  for (const [label, how, threads] of CONFIGS) {
    const times = [];
    let syscalls = 0;
    for (let r = 0; r < opt.runs; r++) {
      const path = join(dir, `${how}-${threads}-${r}`);
      const per = Math.floor(opt.lines / threads);
      const { target, finish } = prepare(how, path, threads);
      const jobs = Array.from({ length: threads }, (_, t) => ({ how, n: per, size: opt.size, seed: t, target: { ...target, shard: how === "sharded" ? t : undefined } }));
      let t0, counts;
      if (threads === 1) {
        t0 = performance.now();
        counts = [produce(how, per, opt.size, 0, jobs[0].target)];
      } else {
        const workers = jobs.map((j) => new Worker(new URL(import.meta.url), { workerData: j }));
        await Promise.all(workers.map((w) => new Promise((ok) => w.once("message", ok))));
        t0 = performance.now();
        const done = workers.map((w) => new Promise((ok, fail) => { w.once("message", ok); w.once("error", fail); }));
        for (const w of workers) w.postMessage("go");
        counts = await Promise.all(done);
        for (const w of workers) await w.terminate();
      }
      const size = finish();
      times.push(performance.now() - t0);
      syscalls = counts.reduce((a, b) => a + b, 0);
      const want = per * threads * opt.size;
      const ok = how === "padded" ? size >= want && size % (1 << 20) === 0 : size === want;
      if (!ok) { bad++; console.error(`${label} x${threads}: file(s) hold ${size} bytes, expected ${want}`); }
      rmSync(path, { force: true });
      for (let t = 0; t < threads; t++) rmSync(`${path}.${t}`, { force: true });
    }
    times.sort((a, b) => a - b);
    const ms = times[Math.floor(times.length / 2)];
    const n = Math.floor(opt.lines / threads) * threads;
    const fmt = (v, d = 0) => v.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
    console.log(`| ${label} | ${threads} | ${fmt(n / (ms / 1000))} | ${fmt((n * opt.size) / 1e6 / (ms / 1000), 1)} | ${fmt(syscalls)} |`);
  }
  rmSync(dir, { recursive: true, force: true });
  console.log("");
  console.log(bad ? `sizes: ${bad} run(s) wrong` : "sizes: every file holds the bytes written");
  process.exit(bad ? 1 : 0);
}

/** The output of one run: what the threads write to, and finish() -> bytes on disk. */
function prepare(how, path, threads) {
  if (how === "writeSync" || how === "append" || how === "buffered") {
    closeSync(openSync(path, "w"));
    return { target: { path }, finish: () => statSync(path).size };
  }
  const writer = how === "sharded"
    ? new ParallelWriter({ layout: "sharded", path, shards: threads })
    : new ParallelWriter({ layout: how, path });
  return {
    target: { writer: writer.descriptor() },
    finish: () => {
      writer.close();
      return writer.paths.reduce((n, p) => n + statSync(p).size, 0);
    },
  };
}
