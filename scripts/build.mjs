#!/usr/bin/env node
// Builds the core (AssemblyScript -> build/core.wasm), bundles the host
// (esbuild -> dist/, the package), the fuzzer (tools/fuzz/ ->
// build/fuzz.js, a development tool kept out of dist/ and so out of the
// package) and the pump alone (build/pump.js, for test/lib/fakehost.mjs). `--if-needed` skips the work when every output is newer than
// every source, so `npm start` is instant on a second run.
import { execFileSync } from "node:child_process";
import { readdirSync, statSync, existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const ifNeeded = process.argv.includes("--if-needed");

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(join(root, p)).mtimeMs);
  }
  return t;
}
const mtime = (p) => (existsSync(join(root, p)) ? statSync(join(root, p)).mtimeMs : 0);

const outputs = [
  "build/core.wasm", "build/fuzz.js", "build/pump.js", "build/sqe.js", "build/remote-queue.js", "dist/index.js", "dist/cli.js", "dist/worker-entry.js", "dist/filepool-worker.js", "dist/io/worker.js", "dist/types/host/index.d.ts",
];
const sources = Math.max(newest("assembly"), newest("host"), newest("tools"), mtime("asconfig.json"), mtime("package.json"));
if (ifNeeded && outputs.every((o) => mtime(o) > sources)) process.exit(0);

const bin = (name) => join(root, "node_modules", ".bin", name);
// `prepare` runs this on every npm install/ci here, also with --omit=dev.
for (const tool of ["asc", "esbuild", "tsc"]) {
  if (!existsSync(bin(tool))) {
    console.error(`build: node_modules/.bin/${tool} is missing; building needs the devDependencies (npm ci, without --omit=dev)`);
    process.exit(1);
  }
}

mkdirSync(join(root, "build"), { recursive: true });
// A full build starts from an empty dist/, so nothing left from an older
// layout (a renamed entry, a deleted module's .d.ts) reaches `npm pack`.
rmSync(join(root, "dist"), { recursive: true, force: true });
execFileSync(bin("asc"), ["assembly/index.ts", "--target", "release"], { cwd: root, stdio: "inherit" });
const bundle = (entries, out) => execFileSync(
  bin("esbuild"),
  [...entries, "--bundle", "--platform=node", "--format=esm", "--target=node20", out, "--external:koffi", "--log-level=warning",
   "--banner:js=import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);"],
  { cwd: root, stdio: "inherit" },
);
// host/filepool-worker.ts, host/io/worker.ts: the server's file pool and the io pool's threads
// (dist/filepool-worker.js, dist/io/worker.js, beside the bundles that start them).
bundle(["host/index.ts", "host/cli.ts", "host/worker-entry.ts", "host/filepool-worker.ts", "host/io/worker.ts"], "--outdir=dist");
// build/ beside core.wasm: host/core.ts finds ../build/core.wasm from here too.
bundle(["tools/fuzz/fuzz.ts"], "--outfile=build/fuzz.js");
// The pump alone (no koffi, no OS), for the plain-JS fake host of the tests
// and the dispatch benchmark: the same source host/loop.ts runs on.
bundle(["host/pump.ts"], "--outfile=build/pump.js");
bundle(["host/sqe.ts"], "--outfile=build/sqe.js");
// The runInLoop queue's protocol steps alone, for the interleaving test (test/remote-queue.test.mjs).
bundle(["host/remote-queue.ts"], "--outfile=build/remote-queue.js");

// Type declarations for the package entry (dist/types), with the sources'
// ".ts" import specifiers (`from "./x.ts"` and `import("./x.ts")`) rewritten
// to what a consumer resolves: "./x.js" finds x.d.ts under every
// moduleResolution (bundler, node16, nodenext).
// tsconfig.build.json: the library's sources only (tsconfig.json also
// type-checks tools/).
execFileSync(bin("tsc"), ["-p", "tsconfig.build.json", "--noEmit", "false", "--declaration", "--emitDeclarationOnly",
  "--outDir", "dist/types"], { cwd: root, stdio: "inherit" });
(function rewrite(dir) {
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) rewrite(p);
    else if (p.endsWith(".d.ts")) {
      const f = join(root, p);
      writeFileSync(f, readFileSync(f, "utf8").replace(/((?:from\s+|import\()"\.{1,2}\/[^"]+)\.ts"/g, '$1.js"'));
    }
  }
})("dist/types");
