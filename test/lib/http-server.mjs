// Docroots and servers for the HTTP tests: a temporary docroot built from a
// { path: content } map, the server either in this process (attached to
// Node's event loop: cheap, for many quick cases) or as a child process
// running the real CLI (for timeouts, slow clients, logs and exit codes).
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const cli = join(repo, "bin", "wasm-reactor.js");

/**
 * Creates a temporary directory holding `files` (relative path -> string or
 * Buffer; a path ending in "/" makes an empty directory). Returns its path.
 */
export function makeRoot(files = {}, prefix = "wr-http-") {
  const root = mkdtempSync(join(tmpdir(), prefix));
  for (const [rel, content] of Object.entries(files)) {
    const p = join(root, rel);
    if (rel.endsWith("/")) { mkdirSync(p, { recursive: true }); continue; }
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
  return root;
}

export function removeRoot(root) {
  if (root) rmSync(root, { recursive: true, force: true });
}

/**
 * Starts the HTTP server inside this process on an ephemeral port. Returns
 * { port, server, stop() }; stop() is idempotent.
 */
export async function startInProcess(root, opts = {}) {
  const { Server } = await import("../../dist/index.js");
  const server = new Server({ protocol: "http", root, host: "127.0.0.1", port: 0, handleSignals: false, ...opts });
  server.attach();
  let stopped = false;
  return {
    port: server.port,
    server,
    stop() {
      if (stopped) return;
      stopped = true;
      server.stop();
      server.close();
    },
  };
}

/**
 * Runs `wasm-reactor <args>` as a child process (in `cwd`, default this
 * one's). Resolves once it printed its listening line, with { port, child,
 * stdout(), stderr(), stop() } (port: the first URL's); rejects with its
 * output if it exits first or does not come up within timeoutMs.
 */
export function spawnServer(args, { timeoutMs = 10000, cwd, prefix = [] } = {}) {
  return new Promise((resolve, reject) => {
    // prefix: a command that execs the server in its own process (prlimit --nofile=N:N), so the pid is the server's.
    const argv = [...prefix, process.execPath, cli, ...args];
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], cwd });
    let out = "", err = "", up = false;
    const fail = (why) => {
      if (up) return;
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${why}\nstdout: ${out}\nstderr: ${err}`));
    };
    const timer = setTimeout(() => fail(`server did not print its listening line within ${timeoutMs} ms`), timeoutMs);
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on http:\/\/(?:127\.0\.0\.1|\[[0-9a-f:.%]+\]|[\d.]+):(\d+)\//.exec(out);
      if (m && !up) {
        up = true;
        clearTimeout(timer);
        resolve({ port: Number(m[1]), child, stdout: () => out, stderr: () => err, stop: () => stopChild(child) });
      }
    });
    child.stderr.on("data", (d) => { err += d; });
    child.on("exit", (code, sig) => fail(`server exited early (code ${code}, signal ${sig})`));
  });
}

/** SIGTERM, then SIGKILL if it is still there after 10 s (a clean stop takes milliseconds; under the suite's load one took over 5 s); resolves with the exit code. */
export function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(child.exitCode); return; }
    const kill = setTimeout(() => child.kill("SIGKILL"), 10000);
    child.once("exit", (code) => { clearTimeout(kill); resolve(code); });
    child.kill("SIGTERM");
  });
}

/** Runs the CLI to completion; resolves { code, stdout, stderr } or rejects after timeoutMs. */
export function runCli(args, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`wasm-reactor ${args.join(" ")} still running after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}
