// Helpers for tests on real sockets and processes (127.0.0.1 only): bounded
// waits with a message that says what was being waited for, the echo CLI as a
// child process, node:net clients, and cleanup of everything started.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import net from "node:net";

export const root = fileURLToPath(new URL("../..", import.meta.url));
export const cliPath = fileURLToPath(new URL("../../bin/wasm-reactor.js", import.meta.url));
export const distUrl = new URL("../../dist/index.js", import.meta.url).href;

const live = new Set(); // children and sockets to stop at the end

/** Stops every child process and socket still open (call from test.after). */
export function cleanup() {
  for (const r of live) {
    if (r.kill) { if (r.exitCode === null && r.signalCode === null) r.kill("SIGKILL"); }
    else r.destroy();
  }
  live.clear();
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check()` every 10 ms until it returns a truthy value. */
export async function until(ms, check, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs the CLI to completion: {code, signal, stdout, stderr}. */
export function runCli(args, ms = 15_000) {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let stdout = "", stderr = "";
  child.stdout.on("data", (d) => { stdout += d; });
  child.stderr.on("data", (d) => { stderr += d; });
  const done = new Promise((resolve) => child.on("close", (code, signal) => { live.delete(child); resolve({ code, signal, stdout, stderr }); }));
  return within(ms, done, `wasm-reactor ${args.join(" ")} to exit`);
}

/**
 * Starts `wasm-reactor echo --port 0 ...args` and waits for its
 * `listening on 127.0.0.1:PORT` line. `prefix`: a command to run it under
 * (e.g. ["prlimit", "--nofile=40:40"]).
 */
export async function startEcho(args = [], { prefix = [] } = {}) {
  const argv = [...prefix, process.execPath, cliPath, "echo", "--port", "0", ...args];
  const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  const server = {
    child, stdout: "", stderr: "", port: 0, pid: child.pid,
    exited: new Promise((resolve) => child.on("close", (code, signal) => { live.delete(child); resolve({ code, signal }); })),
    /** Sends `signal` and waits for the exit: {code, signal}. */
    async stop(signal = "SIGTERM", ms = 10_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return within(ms, server.exited, `the echo server (pid ${child.pid}) to exit after ${signal}`);
    },
  };
  child.stdout.on("data", (d) => { server.stdout += d; });
  child.stderr.on("data", (d) => { server.stderr += d; });
  const m = await within(10_000, new Promise((resolve, reject) => {
    const look = () => {
      const hit = /listening on 127\.0\.0\.1:(\d+)/.exec(server.stdout);
      if (hit) resolve(hit);
    };
    child.stdout.on("data", look);
    child.on("close", (code) => reject(new Error(`echo server exited (${code}) before listening: ${server.stderr}`)));
  }), `wasm-reactor echo ${args.join(" ")} to print its port`);
  server.port = Number(m[1]);
  return server;
}

/** A connected node:net socket. */
export function connect(port, ms = 5_000) {
  const sock = net.connect(port, "127.0.0.1");
  live.add(sock);
  sock.on("close", () => live.delete(sock));
  return within(ms, new Promise((resolve, reject) => {
    sock.once("connect", () => resolve(sock));
    sock.once("error", reject);
  }), `a connection to 127.0.0.1:${port}`);
}

/** Sends `data` on a new connection and resolves with what came back once as many bytes arrived. */
export async function echoOnce(port, data, ms = 5_000) {
  const sock = await connect(port, ms);
  const want = Buffer.from(data);
  const got = [];
  let n = 0;
  try {
    return await within(ms, new Promise((resolve, reject) => {
      sock.on("data", (d) => { got.push(d); n += d.length; if (n >= want.length) resolve(Buffer.concat(got)); });
      sock.on("error", reject);
      sock.on("close", () => reject(new Error(`closed after echoing ${n} of ${want.length} bytes`)));
      sock.write(want);
    }), `the echo of ${want.length} bytes from 127.0.0.1:${port}`);
  } finally {
    sock.destroy();
  }
}

/**
 * Writes `data` on a connected socket at once and reads the echo slowly: one
 * chunk, then a pause, until as many bytes came back (the server's output
 * backs up meanwhile). Resolves with what came back; destroys the socket.
 */
export async function slowEcho(sock, data, { startAfterMs = 200, pauseMs = 1, ms = 30_000 } = {}) {
  live.add(sock);
  sock.pause();
  const got = [];
  let n = 0;
  const done = new Promise((resolve, reject) => {
    sock.on("data", (d) => {
      got.push(d);
      n += d.length;
      sock.pause();
      if (n >= data.length) resolve(Buffer.concat(got));
      else setTimeout(() => sock.resume(), pauseMs);
    });
    sock.on("error", reject);
    sock.on("close", () => reject(new Error(`connection closed after ${n} of ${data.length} bytes`)));
  });
  sock.write(data);
  setTimeout(() => sock.resume(), startAfterMs);
  try {
    return await within(ms, done, `the echo of ${data.length} bytes (${n} so far)`);
  } finally {
    sock.destroy();
    live.delete(sock);
  }
}

/** Index of the first byte where a and b differ, or -1. */
export function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Resolves when sock closes: {error} with the error code if it failed. */
export function closed(sock) {
  return new Promise((resolve) => {
    let error = null;
    sock.on("error", (e) => { error = e.code ?? e.message; });
    if (sock.destroyed) resolve({ error });
    else sock.on("close", () => resolve({ error }));
  });
}

/** CPU time (user + system) of a process, in clock ticks, from /proc/PID/stat. */
export async function cpuTicks(pid) {
  const { readFile } = await import("node:fs/promises");
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from #3 on
  return Number(fields[11]) + Number(fields[12]); // #14 utime, #15 stime
}
