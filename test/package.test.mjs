// The package as a consumer gets it: `npm pack` this repo, install the
// tarball into a temporary project with no registry (npm ci --offline, from
// a lockfile whose entries are copied from ours, so only what our own
// `npm ci` put in the npm cache is needed), then use it there: the library
// in attach() mode beside node:http, the bin, and the type declarations
// under tsc's bundler, nodenext and node16 resolution. npm test has just
// built, so the pack skips its prepack build (--ignore-scripts); that the
// scripts exist is checked on package.json itself.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync, existsSync, realpathSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join, dirname, delimiter } from "node:path";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("..", import.meta.url));
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8"));
const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8"));
const tmp = mkdtempSync(join(tmpdir(), "wr-package-"));
const project = join(tmp, "consumer");
const installed = join(project, "node_modules", "wasm-reactor");
// `node` for the bin's `#!/usr/bin/env node` and for npm itself.
const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH}` };
const children = new Set();
// The npm that runs `npm test`, else the one on PATH.
const npm = (args, opts) => process.env.npm_execpath ? run(process.execPath, [process.env.npm_execpath, ...args], opts) : run("npm", args, opts);

/** Runs a command to completion: { code, stdout, stderr }; killed after ms. */
function run(cmd, args, { cwd = project, ms = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`${cmd} ${args.join(" ")}: still running after ${ms} ms\n${stdout}\n${stderr}`)); }, ms);
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    child.on("close", (code) => { clearTimeout(timer); children.delete(child); resolve({ code, stdout, stderr }); });
  });
}
const ok = (r, what) => { assert.is(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`); return r; };

/** GET over a fresh connection (agent: false: Connection: close, nothing kept alive). */
function get(port, path) {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d) => { body += d; }).on("end", () => resolve({ status: res.statusCode, body }));
    }).on("error", reject).end();
  });
}

test.after(() => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

test("package.json: ESM-only for Node >= 20 on Linux, built on pack and on git install, package.json exported", () => {
  assert.is(pkg.type, "module");
  assert.is(pkg.engines.node, ">=20");
  assert.equal(pkg.os, ["linux"]);
  assert.match(pkg.scripts.prepack, /scripts\/build\.mjs/);
  assert.match(pkg.scripts.prepare, /scripts\/build\.mjs/);
  assert.is(pkg.exports["./package.json"], "./package.json");
  assert.ok(existsSync(join(repo, "LICENSE")) && /MIT License/.test(readFileSync(join(repo, "LICENSE"), "utf8")), "an MIT LICENSE");
});

let files = [], tarball = "";
test("npm pack: the tarball holds the bundles, the declarations, the core and the bin; no tests, benchmarks, fixtures or fuzzer", async () => {
  const r = ok(await npm(["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], { cwd: repo }), "npm pack");
  const [info] = JSON.parse(r.stdout);
  files = info.files.map((f) => f.path).sort();
  const needed = [
    "package.json", "README.md", "LICENSE", "bin/wasm-reactor.js", "build/core.wasm",
    "dist/index.js", "dist/cli.js", "dist/worker-entry.js",
    "dist/types/host/index.d.ts", "dist/types/assembly/abi.d.ts",
  ];
  for (const f of needed) assert.ok(files.includes(f), `${f} is in the tarball (has: ${files.join(", ")})`);
  const unwanted = files.filter((f) => /^(test|bench|host|assembly|scripts|public|tools|fuzz-failures)\/|^build\/(?!core\.wasm$)|fuzz|\.rec$/.test(f));
  assert.equal(unwanted, [], "nothing a consumer does not need");
  tarball = join(tmp, info.filename);
});

test("npm ci --offline installs the tarball into a fresh project", async () => {
  mkdirSync(project);
  // The consumer's dependencies: ours (koffi, mime-db) and @types/node for
  // the declaration check, at the versions our lock pins. (tsc is ours: it
  // resolves "wasm-reactor" from the consumer's files wherever it lives.)
  const deps = { "wasm-reactor": `file:${tarball}`, "@types/node": lock.packages["node_modules/@types/node"].version };
  const packages = {};
  const want = [...Object.keys(pkg.dependencies), "@types/node"];
  while (want.length) {
    const name = want.pop(), key = `node_modules/${name}`;
    if (packages[key]) continue;
    const entry = lock.packages[key];
    assert.ok(entry, `${name} is in package-lock.json`);
    const { dev, devOptional, peer, ...rest } = entry; // the flags are the consumer's own
    packages[key] = rest;
    want.push(...Object.keys(entry.dependencies ?? {}), ...Object.keys(entry.optionalDependencies ?? {}));
  }
  const self = { version: pkg.version, resolved: `file:${tarball}`, license: pkg.license, dependencies: pkg.dependencies,
    bin: { "wasm-reactor": "bin/wasm-reactor.js" }, engines: pkg.engines, os: pkg.os };
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true, type: "module", dependencies: deps }, null, 2));
  writeFileSync(join(project, "package-lock.json"), JSON.stringify({
    name: "consumer", version: "1.0.0", lockfileVersion: 3, requires: true,
    packages: { "": { name: "consumer", version: "1.0.0", dependencies: deps }, "node_modules/wasm-reactor": self, ...packages },
  }, null, 2));
  ok(await npm(["ci", "--offline", "--no-audit", "--no-fund"]), "npm ci --offline");
  for (const f of files) assert.ok(existsSync(join(installed, f)), `installed: ${f}`);
});

test("nothing in dist/ needs a devDependency: its bare imports are Node built-ins and our dependencies", () => {
  const allowed = new Set([...Object.keys(pkg.dependencies), ...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
  for (const f of readdirSync(join(installed, "dist")).filter((f) => f.endsWith(".js"))) {
    const src = readFileSync(join(installed, "dist", f), "utf8");
    const specs = [...src.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\d*\s*\(\s*)["']([^"'./][^"']*)["']/g)].map((m) => m[1]);
    assert.ok(specs.length > 0, `${f}: found its imports`);
    const foreign = [...new Set(specs)].filter((s) => !allowed.has(s));
    assert.equal(foreign, [], `${f} imports only built-ins and dependencies`);
  }
  // And the devDependencies really are absent, so the runs below prove it too.
  for (const d of Object.keys(pkg.devDependencies).filter((d) => d !== "@types/node")) {
    assert.not.ok(existsSync(join(project, "node_modules", d)), `${d} is not installed in the consumer`);
  }
});

test("import('wasm-reactor'): Server in attach() mode beside node:http in one process; core.wasm found in the installed package", async () => {
  const docroot = join(tmp, "docroot");
  mkdirSync(docroot);
  writeFileSync(join(docroot, "hello.txt"), "hello from wasm-reactor\n");
  writeFileSync(join(project, "embed.mjs"), `
import { createServer, request } from "node:http";
import { createRequire } from "node:module";
import { Server, corePath } from "wasm-reactor";
const get = (port, path) => new Promise((resolve, reject) => {
  request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
    let body = ""; res.setEncoding("utf8").on("data", (d) => { body += d; }).on("end", () => resolve(res.statusCode + " " + body));
  }).on("error", reject).end();
});
const server = new Server({ protocol: "http", root: process.argv[2], host: "127.0.0.1", port: 0, handleSignals: false });
server.attach();
const plain = createServer((req, res) => res.end("hello from node:http\\n"));
await new Promise((resolve) => plain.listen(0, "127.0.0.1", resolve));
const [a, b] = await Promise.all([get(server.port, "/hello.txt"), get(plain.address().port, "/")]);
server.stop(); server.close(); plain.close();
const version = createRequire(import.meta.url)("wasm-reactor/package.json").version;
process.stdout.write(JSON.stringify({ a, b, corePath, version }));
`);
  const r = ok(await run(process.execPath, ["embed.mjs", docroot], { ms: 20_000 }), "node embed.mjs");
  const out = JSON.parse(r.stdout);
  assert.is(out.a, "200 hello from wasm-reactor\n");
  assert.is(out.b, "200 hello from node:http\n");
  assert.is(out.corePath, join(realpathSync(installed), "build", "core.wasm"));
  assert.is(out.version, pkg.version, "wasm-reactor/package.json is exported");
});

test("the bin: --version, and serve --root --port 0 (the worker entry from the installed package), SIGTERM exits 0", async () => {
  const bin = join(project, "node_modules", ".bin", "wasm-reactor");
  const v = ok(await run(bin, ["--version"]), "wasm-reactor --version");
  assert.is(v.stdout, `wasm-reactor ${pkg.version}\n`);
  const docroot = join(tmp, "docroot");
  const child = spawn(bin, ["serve", "--root", docroot, "--port", "0"], { cwd: project, env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "", err = "";
  child.stderr.on("data", (d) => { err += d; });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in 15 s\nstdout: ${out}\nstderr: ${err}`)), 15_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`exited ${code} before listening\nstderr: ${err}`)); });
  });
  const res = await get(port, "/hello.txt");
  assert.equal(res, { status: 200, body: "hello from wasm-reactor\n" });
  child.kill("SIGTERM");
  const end = await exited;
  children.delete(child);
  assert.equal(end, { code: 0, signal: null }, `stderr: ${err}`);
});

test("tsc --noEmit (skipLibCheck false) on a consumer under moduleResolution bundler, nodenext and node16", async () => {
  // The @ts-expect-error line also fails if the import resolved to `any`.
  const source = `
import { Server, abi, corePath, MemorySink, type ServerOptions, type CoreMemory } from "wasm-reactor";
const options: ServerOptions = { protocol: "http", root: ".", port: 0 };
export const make = (): Server => new Server(options);
export const proto: number = abi.PROTO_HTTP;
export const where: string = corePath;
export const bytes: Uint8Array = new MemorySink().bytes();
export const memory = (s: Server): CoreMemory => s.reactor.loop.core.x.memory;
// @ts-expect-error: protocol is "echo" | "http"
export const bad: ServerOptions = { protocol: "ftp" };
`;
  writeFileSync(join(project, "consumer.ts"), source);
  writeFileSync(join(project, "consumer.mts"), source);
  // Where lib.dom declares WebAssembly, the real objects fit our structural types.
  writeFileSync(join(project, "dom.mts"), `import type { CoreMemory, CoreModule } from "wasm-reactor";
export const memory = (m: WebAssembly.Memory): CoreMemory => m;
export const module = (m: WebAssembly.Module): CoreModule => m;
`);
  // skipLibCheck false: our declarations (and @types/node) are checked;
  // skipDefaultLibCheck leaves out only TypeScript's own lib.*.d.ts.
  const base = { target: "ES2022", strict: true, noEmit: true, skipLibCheck: false, skipDefaultLibCheck: true };
  // Without @types/node and lib.dom (the declarations need neither), and
  // with @types/node and the default lib (dom): still clean.
  const configs = {
    bundler: { compilerOptions: { ...base, module: "esnext", moduleResolution: "bundler", lib: ["ES2022"], types: [] }, files: ["consumer.ts"] },
    node16: { compilerOptions: { ...base, module: "node16", moduleResolution: "node16", lib: ["ES2022"], types: [] }, files: ["consumer.ts", "consumer.mts"] },
    nodenext: { compilerOptions: { ...base, module: "nodenext", moduleResolution: "nodenext", types: ["node"] }, files: ["consumer.ts", "consumer.mts", "dom.mts"] },
  };
  const tsc = join(repo, "node_modules", "typescript", "bin", "tsc");
  for (const [name, config] of Object.entries(configs)) {
    writeFileSync(join(project, `tsconfig.${name}.json`), JSON.stringify(config));
    const r = await run(process.execPath, [tsc, "-p", `tsconfig.${name}.json`]);
    assert.is(r.code, 0, `tsc (${name}):\n${r.stdout}${r.stderr}`);
  }
});

test.run();
