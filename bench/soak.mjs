// Soak and fault runs against `serve` (issue 11, "Soak and faults"):
//
//   node bench/soak.mjs [--case churn,fds,sigterm,long] [flags]   (default: every case)
//   node bench/soak.mjs --smoke          (every case, tiny: checks that it runs)
//
//   churn    --connections N (1,000,000) --concurrency C (64): N connections, one
//            request each (Connection: close), C at a time. Before (after a warm-up
//            of the same concurrency) and after (once the server has closed
//            everything): the core's linear memory and live counters, the process's
//            fds and RSS. Back to baseline: fds and core counters exactly, RSS
//            within --rss-tolerance MiB (8; V8's heap moves).
//   fds      --clients N (1,000) --nofile F (256): the CLI under prlimit --nofile=F,
//            N clients connecting at once, each one request then close; twice. With
//            the default connection cap (what F holds after the fds kept for files):
//            every client served once, the cap logged. With --max-connections 0 (no
//            cap: accepts take every fd): every client answered, 200 or 503 with
//            Retry-After (files cannot be opened while fds are out), the pause logged
//            and resumed. Both: no crash, and no spin: for 1 s after accepting stopped,
//            before any client sent its request (so it has nothing to do but wait),
//            its CPU time is under a tenth of that.
//   sigterm  --seconds S (3) --shutdown-timeout MS (5,000): keep-alive and
//            new-connection clients (1 KiB and 1 MiB files) load the CLI; SIGTERM
//            after S s. Every response complete or never started, exit 0 within MS.
//   long     --minutes T (30) --interval S (10) --rate R (1,000 req/s): steady load
//            (keep-alive clients, one request in ten on a new connection); a sample
//            every S s; RSS slope, accepted - closed == live at every sample, held
//            buffers not growing, everything back to baseline at the end.
//
// Exits 1 if a check fails (each printed as "ok" or "FAIL"), 2 on a bad flag.
// churn and long run bench/soak-server.mjs (serve's Server, as the CLI runs it,
// with its counters on stdin/stdout); fds and sigterm run bin/wasm-reactor.js.
// The case functions are exported for test/soak.test.mjs (the short versions).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import net from "node:net";

const repo = fileURLToPath(new URL("..", import.meta.url));
const cli = join(repo, "bin", "wasm-reactor.js");
const harness = join(repo, "bench", "soak-server.mjs");
const SMALL = 1024, LARGE = 1 << 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const live = new Set(); // child processes to stop whatever happens

/** Kills every server still running (for test.after and this script's exit). */
export function stopAll() { for (const c of live) { try { c.kill("SIGKILL"); } catch {} } live.clear(); }

/** A docroot with small.bin (1 KiB) and large.bin (1 MiB); remove with rmSync. */
export function makeDocroot() {
  const dir = mkdtempSync(join(tmpdir(), "wr-soak-"));
  writeFileSync(join(dir, "small.bin"), Buffer.alloc(SMALL, "s"));
  writeFileSync(join(dir, "large.bin"), Buffer.alloc(LARGE, "L"));
  return dir;
}

// ---- /proc -------------------------------------------------------------------

const TICK = Number(execFileSync("getconf", ["CLK_TCK"]).toString()) || 100;
export const fdCount = (pid) => readdirSync(`/proc/${pid}/fd`).length;
export const rssBytes = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
/** utime + stime of a process (all its threads), in seconds. */
export function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / TICK;
}

// ---- servers -------------------------------------------------------------------

function track(child) {
  live.add(child);
  let out = "", err = "";
  child.stdout.on("data", (d) => { out += d; });
  child.stderr.on("data", (d) => { err += d; });
  child.exited = new Promise((r) => child.on("close", (code, signal) => { live.delete(child); r({ code, signal }); }));
  child.out = () => out;
  child.err = () => err;
  return child;
}

function waitLine(child, re, what, ms = 20_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}\nstdout: ${child.out()}\nstderr: ${child.err()}`)), ms);
    const look = () => { const m = re.exec(child.out()); if (m) { clearTimeout(timer); resolve(m); } };
    child.stdout.on("data", look);
    child.exited.then(() => { clearTimeout(timer); reject(new Error(`exited before ${what}\nstderr: ${child.err()}`)); });
    look();
  });
}

/** bench/soak-server.mjs on `root`: {port, pid, stats(), stop()}. */
export async function startHarness(root) {
  const child = track(spawn(process.execPath, ["--expose-gc", harness, "--root", root], { stdio: ["pipe", "pipe", "pipe"] }));
  const m = await waitLine(child, /^listening (\d+) pid (\d+)$/m, "soak-server.mjs to listen");
  let seen = 0;
  return {
    port: Number(m[1]), pid: Number(m[2]), child,
    async stats() {
      child.stdin.write("stats\n");
      const want = ++seen;
      const re = /^\{"stats".*$/gm;
      for (const end = Date.now() + 10_000; Date.now() < end; await sleep(5)) {
        const all = child.out().match(re) ?? [];
        if (all.length >= want) return JSON.parse(all[want - 1]).stats;
      }
      throw new Error(`no stats from soak-server.mjs; stderr: ${child.err()}`);
    },
    async stop() { child.stdin.end("stop\n"); return child.exited; },
  };
}

/** `wasm-reactor serve --port 0 --root root ...args` (under `prefix`, e.g. prlimit): {port, pid, child}. */
export async function startServe(root, args = [], prefix = []) {
  const argv = [...prefix, process.execPath, cli, "serve", "--port", "0", "--root", root, ...args];
  const child = track(spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] }));
  const m = await waitLine(child, /listening on http:\/\/127\.0\.0\.1:(\d+)\/.*pid (\d+)\)/, "serve to listen");
  return { port: Number(m[1]), pid: Number(m[2]), child };
}

/** Process and core figures of a harness server at one moment. */
async function snapshot(srv) {
  const s = await srv.stats();
  return { ...s, fds: fdCount(srv.pid), rss: rssBytes(srv.pid), cpu: cpuSeconds(srv.pid), at: Date.now() };
}

/** Waits until the server closed every connection, then `settleMs` more. */
async function settle(srv, settleMs) {
  for (const end = Date.now() + 30_000; ; await sleep(50)) {
    const s = await srv.stats();
    if (s.liveConnections === 0) break;
    if (Date.now() > end) throw new Error(`${s.liveConnections} connections still open 30 s after the load`);
  }
  await sleep(settleMs);
  return snapshot(srv);
}

// ---- clients ---------------------------------------------------------------------

const request = (path, close) => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: soak\r\n${close ? "Connection: close\r\n" : ""}\r\n`);

/**
 * Reads HTTP/1.1 responses off a byte stream: each one complete (its whole
 * Content-Length body) is passed to onResponse(status, bodyBytes); `started`
 * says whether a byte of the next one has arrived (a close then truncates it).
 */
class Responses {
  constructor(onResponse) { this.onResponse = onResponse; this.head = null; this.need = -1; this.started = false; }
  feed(d) {
    while (d.length > 0) {
      this.started = true;
      if (this.need < 0) {
        this.head = this.head ? Buffer.concat([this.head, d]) : d;
        const end = this.head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const text = this.head.subarray(0, end).toString("latin1");
        d = this.head.subarray(end + 4);
        this.head = null;
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(text);
        if (!cl) throw new Error(`a response without Content-Length: ${text.split("\r\n")[0]}`);
        this.status = Number(text.slice(9, 12));
        this.retryAfter = /\r\nretry-after:/i.test(text);
        this.need = this.length = Number(cl[1]);
      }
      const take = Math.min(this.need, d.length);
      this.need -= take;
      d = d.subarray(take);
      if (this.need === 0) {
        this.need = -1;
        this.started = false;
        this.onResponse(this.status, this.length);
      }
    }
  }
}

/**
 * One connection, one request (Connection: close): {status, complete, partial, error}.
 * `watch`: a Set that holds {r, sent} while the connection is open (sigterm
 * counts what was in progress at the signal). `go`: a promise to wait for
 * between connecting (`connected()` is called) and sending.
 */
function oneShot(port, path, watch = null, { go = null, connected = null } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let status = 0, error = null, retryAfter = false;
    const r = new Responses((st) => { status = st; retryAfter = r.retryAfter; });
    const w = { r, sent: false };
    watch?.add(w);
    const send = () => { w.sent = true; s.write(request(path, true)); }; // the server closes (Connection: close), as with curl
    s.on("connect", () => { connected?.(); if (go) go.then(send); else send(); });
    s.on("data", (d) => { try { r.feed(d); } catch (e) { error = e.message; s.destroy(); } });
    s.on("error", (e) => { error = e.code ?? e.message; });
    s.on("close", () => { watch?.delete(w); resolve({ status, retryAfter, complete: status !== 0, partial: r.started, error }); });
  });
}

/** Runs `n` oneShot requests, `concurrency` at a time. */
async function churnLoad(port, n, concurrency, path = "/small.bin", progress = null) {
  let started = 0;
  const tally = { ok: 0, errors: 0, partial: 0, firstError: null };
  const t0 = Date.now();
  const lane = async () => {
    while (started < n) {
      started++;
      const r = await oneShot(port, path);
      if (r.complete && r.status === 200) tally.ok++;
      else { tally.errors++; tally.firstError ??= r.error ?? `status ${r.status}`; }
      if (r.partial) tally.partial++;
      if (progress && (tally.ok + tally.errors) % 100_000 === 0) progress(tally.ok + tally.errors, Date.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane));
  tally.seconds = (Date.now() - t0) / 1000;
  return tally;
}

// ---- checks ------------------------------------------------------------------------

function check(checks, ok, what) { checks.push({ ok: Boolean(ok), what }); }
const CORE = ["liveConnections", "writeBufferBytes", "readBuffersHeld", "timers", "memoryBytes"];
const mib = (b) => (b / 1048576).toFixed(1);

/** Checks `after` against `before`: fds and core counters exactly, RSS within tolerance. */
function backToBaseline(checks, before, after, rssToleranceMiB, label) {
  check(checks, after.fds === before.fds, `${label}: fds ${before.fds} -> ${after.fds}`);
  for (const k of CORE) check(checks, after[k] === before[k], `${label}: ${k} ${before[k]} -> ${after[k]}`);
  check(checks, after.invariants === 0, `${label}: the core's invariants hold (checkInvariants() ${after.invariants})`);
  check(checks, after.accepted - after.closed === after.liveConnections, `${label}: accepted ${after.accepted} - closed ${after.closed} == live ${after.liveConnections}`);
  const grew = after.rss - before.rss;
  check(checks, grew <= rssToleranceMiB * 1048576, `${label}: RSS ${mib(before.rss)} -> ${mib(after.rss)} MiB (${grew >= 0 ? "+" : ""}${mib(grew)}, tolerance +${rssToleranceMiB})`);
}

// ---- the cases ---------------------------------------------------------------------

/** 1. churn. */
export async function churn(root, { connections = 1_000_000, concurrency = 64, warmup = 2_000, settleMs = 1_000, rssToleranceMiB = 8, progress = null } = {}) {
  const srv = await startHarness(root);
  try {
    const fresh = await snapshot(srv);
    // Warm-up: pools, the file cache and V8's code reach the working size of this concurrency.
    await churnLoad(srv.port, warmup, concurrency);
    const before = await settle(srv, settleMs);
    const load = await churnLoad(srv.port, connections, concurrency, "/small.bin", progress);
    const after = await settle(srv, settleMs);
    const checks = [];
    check(checks, load.ok === connections, `every connection got its 200 (${load.ok} of ${connections}; errors ${load.errors}${load.firstError ? `, first: ${load.firstError}` : ""})`);
    check(checks, after.accepted - before.accepted === connections, `the server accepted ${after.accepted - before.accepted} connections`);
    backToBaseline(checks, before, after, rssToleranceMiB, "after churn");
    return { connections, concurrency, fresh, before, after, load, checks, connPerSec: connections / load.seconds };
  } finally { await srv.stop(); }
}

/**
 * 2. fd exhaustion. `noCap` false: as configured by default, the connection
 * cap the fd limit holds (accepting stops at it, fds stay for files); every
 * client is served. true (--max-connections 0): accepts run until EMFILE, so
 * accepting pauses and files cannot be opened meanwhile; every client is
 * answered, 200 or 503 with Retry-After (a shortage, never a 404), none reset.
 */
export async function fds(root, { clients = 1_000, nofile = 256, holdMs = 1_000, noCap = false } = {}) {
  const srv = await startServe(root, noCap ? ["--max-connections", "0"] : [], ["prlimit", `--nofile=${nofile}:${nofile}`]);
  const stopped = noCap ? /accept: out of file descriptors/ : /connections: limit of \d+ reached/;
  try {
    const cpu0 = cpuSeconds(srv.pid), t0 = Date.now();
    // Every client connects (the kernel completes the handshake, the listen
    // queue holds them), then all send at once: the server has `clients`
    // requests waiting and at most `nofile` fds, so it runs out whatever the
    // machine's speed (clients sending as they connect may be served as fast
    // as they come, never holding 256 fds).
    let release, up = 0, allUp;
    const go = new Promise((r) => { release = r; });
    const connectedAll = new Promise((r) => { allUp = r; });
    const connected = () => { if (++up === clients) allUp(); };
    const pending = Array.from({ length: clients }, () => oneShot(srv.port, "/small.bin", null, { go, connected }));
    let timer;
    await Promise.race([connectedAll, new Promise((r) => { timer = setTimeout(r, 30_000); })]);
    clearTimeout(timer); // else it holds the process (a test file) open for the rest of 30 s
    // The no-spin window: the server has accepted what it may (each of those connections waits
    // for a request not yet sent), the rest wait in the listen queue, and it has nothing to do
    // but wait. A server that keeps a level-triggered listener in the interest set while it
    // cannot accept (at its cap, or on EMFILE: the classic bug) spins through the whole window;
    // one that takes it out costs at most a retry a second. Measured before any request is
    // sent, so no real work hides a spin.
    for (const end = Date.now() + 5_000; !stopped.test(srv.child.err()) && Date.now() < end;) await sleep(10);
    const pausedFirst = stopped.test(srv.child.err());
    const hold0 = cpuSeconds(srv.pid), holdT0 = Date.now();
    await sleep(holdMs);
    const holdCpu = cpuSeconds(srv.pid) - hold0, holdWall = (Date.now() - holdT0) / 1000;
    release();
    const results = await Promise.all(pending);
    const wall = (Date.now() - t0) / 1000, cpu = cpuSeconds(srv.pid) - cpu0;
    const served = results.filter((r) => r.complete && r.status === 200).length;
    const unavailable = results.filter((r) => r.complete && r.status === 503 && r.retryAfter).length;
    // The "resumed" line is on the server's stderr pipe: wait for it rather than look once.
    if (noCap) for (const end = Date.now() + 5_000; !/accept: resumed/.test(srv.child.err()) && Date.now() < end;) await sleep(20);
    const err = srv.child.err();
    const firstError = results.find((r) => !r.complete)?.error ?? results.find((r) => r.status !== 200 && !(r.status === 503 && r.retryAfter))?.status ?? "none";
    const checks = [];
    check(checks, up === clients, `every client connected before sending (${up} of ${clients})`);
    if (noCap) {
      check(checks, served + unavailable === clients, `every client answered: ${served} served, ${unavailable} 503 with Retry-After (of ${clients}; first other: ${firstError})`);
      check(checks, /accept: resumed/.test(err), "accepting resumed");
    } else {
      check(checks, served === clients, `every client served once (${served} of ${clients}; first error: ${firstError})`);
    }
    check(checks, stopped.test(err), noCap ? "the accept pause was logged (out of fds)" : "the connection cap was logged (reached)");
    check(checks, srv.child.exitCode === null, "the server is still running");
    check(checks, pausedFirst, "accepting stopped before any client sent (the no-spin window below is the server waiting)");
    check(checks, holdCpu < holdWall / 10, `server CPU ${holdCpu.toFixed(3)} s in the ${holdWall.toFixed(2)} s it waited (no spin: under a tenth)`);
    if (noCap) await sleep(1_000); // as a client that honours Retry-After: 1 would
    const after = await oneShot(srv.port, "/small.bin");
    check(checks, after.status === 200, `a new client is served afterwards${noCap ? " (after the Retry-After second)" : ""}`);
    srv.child.kill("SIGTERM");
    const exit = await srv.child.exited;
    check(checks, exit.code === 0, `exit ${exit.code} after SIGTERM`);
    const cap = /connections: limit of (\d+) reached/.exec(err)?.[1];
    return {
      nofile, noCap, cap: cap === undefined ? null : Number(cap), served, unavailable, clients, connected: up, wall, cpu, holdCpu, holdWall, pausedFirst,
      exit, afterStatus: after.status, pauses: (err.match(stopped) ?? []).length, checks, stderr: err,
    };
  } finally { srv.child.kill("SIGKILL"); }
}

/** The fds case as the script runs it: the default cap, then --max-connections 0; one table, both sets of checks. */
export async function fdsBoth(root, opts = {}) {
  const runs = [await fds(root, opts), await fds(root, { ...opts, noCap: true })];
  return {
    nofile: runs[0].nofile, clients: runs[0].clients, runs,
    checks: runs.flatMap((r) => r.checks.map((c) => ({ ...c, what: `${r.noCap ? "no cap" : "default cap"}: ${c.what}` }))),
  };
}

/** Keep-alive client: requests back to back on one connection until it closes. */
function keepAliveClient(port, paths, tally, watch) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let i = 0;
    const w = { r: null, sent: false };
    const next = () => { w.sent = true; s.write(request(paths[i++ % paths.length], false)); };
    const r = w.r = new Responses((status, length) => {
      w.sent = false;
      tally.complete++; if (length === LARGE) tally.large++; if (status !== 200) tally.bad++;
      next();
    });
    watch.add(w);
    s.on("connect", next);
    s.on("data", (d) => { try { r.feed(d); } catch (e) { tally.bad++; tally.why ??= e.message; s.destroy(); } });
    s.on("error", (e) => { tally.errors[e.code] = (tally.errors[e.code] ?? 0) + 1; });
    s.on("close", () => {
      watch.delete(w);
      if (r.started) tally.partial++;
      else if (w.sent) tally.neverStarted++;
      resolve();
    });
  });
}

/** 3. SIGTERM under load. */
export async function sigterm(root, { seconds = 3, graceMs = 5_000, keepAlive = 8, fresh = 8 } = {}) {
  const srv = await startServe(root, ["--shutdown-timeout", String(graceMs)]);
  const tally = { complete: 0, large: 0, partial: 0, neverStarted: 0, bad: 0, refused: 0, errors: {}, why: null };
  const watch = new Set(); // the connections open, and where each one's request is
  let stopping = false;
  try {
    const paths = ["/small.bin", "/large.bin", "/small.bin"];
    const ka = Array.from({ length: keepAlive }, (_, k) => (async () => {
      // A keep-alive client reconnects after a close (one the server chose) until the server is gone.
      for (let j = 0; !stopping || j === 0; j++) await keepAliveClient(srv.port, paths.slice(k % 3).concat(paths.slice(0, k % 3)), tally, watch);
    })());
    const fr = Array.from({ length: fresh }, (_, k) => (async () => {
      for (let j = k; ; j++) {
        const r = await oneShot(srv.port, paths[j % 3], watch);
        if (r.complete) { tally.complete++; if (r.status !== 200) tally.bad++; if (j % 3 === 1) tally.large++; }
        else if (r.partial) tally.partial++;
        else if (r.error === "ECONNREFUSED") { tally.refused++; return; }
        else tally.neverStarted++;
      }
    })());
    await sleep(seconds * 1000);
    const before = tally.complete;
    // In progress at the signal: a response partly received, or a request sent and not yet answered.
    const receiving = [...watch].filter((w) => w.r.started).length;
    const waiting = [...watch].filter((w) => w.sent && !w.r.started).length;
    const t0 = Date.now();
    srv.child.kill("SIGTERM");
    stopping = true;
    const exit = await srv.child.exited;
    const exitMs = Date.now() - t0;
    await Promise.all([...ka, ...fr]);
    const checks = [];
    check(checks, before > 0, `load before the signal (${before} responses)`);
    check(checks, receiving + waiting > 0, `requests in progress at the signal (${receiving} receiving, ${waiting} waiting)`);
    check(checks, tally.partial === 0, `no truncated response (${tally.partial} partial; ${tally.complete} complete, ${tally.large} of them 1 MiB; ${tally.neverStarted} never started)`);
    check(checks, tally.bad === 0, `every complete response a 200 (${tally.bad} not)`);
    check(checks, exit.code === 0 && exit.signal === null, `exit ${exit.code}${exit.signal ? ` (${exit.signal})` : ""}`);
    check(checks, exitMs <= graceMs, `exited ${exitMs} ms after SIGTERM (shutdown timeout ${graceMs} ms)`);
    return { ...tally, seconds, graceMs, before, receiving, waiting, exitMs, exit, checks };
  } finally { stopping = true; srv.child.kill("SIGKILL"); }
}

/** 4. long: steady load, sampled. */
export async function long(root, { minutes = 30, intervalS = 10, rate = 1_000, conns = 50, warmup = 2_000, settleMs = 1_000, rssToleranceMiB = 8, onSample = null } = {}) {
  const srv = await startHarness(root);
  let running = true;
  const tally = { ok: 0, errors: 0, partial: 0, firstError: null };
  try {
    await churnLoad(srv.port, warmup, 64);
    const before = await settle(srv, settleMs);
    // Open-loop pacing: every 10 ms, the requests due by now; nine in ten go
    // to an idle keep-alive connection, the tenth on a new connection.
    const idle = [];
    for (let i = 0; i < conns; i++) idle.push(openKeepAlive(srv.port, tally, idle));
    const t0 = Date.now();
    let issued = 0, skipped = 0;
    const pacer = setInterval(() => {
      const due = Math.floor(((Date.now() - t0) / 1000) * rate);
      for (; issued < due; issued++) {
        if (issued % 10 === 9) {
          oneShot(srv.port, "/small.bin").then((r) => {
            if (r.complete && r.status === 200) tally.ok++; else { tally.errors++; tally.firstError ??= r.error ?? `status ${r.status}`; }
          });
        } else {
          // Oldest idle first (a queue, not a stack): every connection takes its turn, so none sits
          // unused until the server's idle timeout closes it (a stack left 40 of 50 idle at the
          // bottom for 30 s, closed on time by the server and counted here as errors).
          const c = idle.shift();
          if (c) c.send(); else skipped++; // every connection busy: the server is behind, counted
        }
      }
    }, 10);
    const samples = [];
    const end = t0 + minutes * 60_000;
    while (Date.now() < end) {
      await sleep(Math.min(intervalS * 1000, Math.max(0, end - Date.now())));
      const s = await snapshot(srv);
      samples.push({ ...s, t: (s.at - t0) / 1000, ok: tally.ok });
      onSample?.(samples.at(-1));
    }
    clearInterval(pacer);
    running = false;
    for (const c of idle) c.close();
    for (const end2 = Date.now() + 10_000; tally.open > 0 && Date.now() < end2;) await sleep(20);
    const after = await settle(srv, settleMs);
    const checks = [];
    check(checks, tally.errors === 0 && tally.partial === 0, `no errors (${tally.errors}${tally.firstError ? `, first: ${tally.firstError}` : ""}), no partial responses (${tally.partial})`);
    check(checks, samples.every((s) => s.accepted - s.closed === s.liveConnections), "accepted - closed == live at every sample");
    check(checks, samples.every((s) => s.memoryBytes === before.memoryBytes), "the core's memory did not grow during the load");
    const slope = (k) => slopePerMinute(samples.map((s) => [s.t, s[k]]));
    const rbuf = Math.max(...samples.map((s) => s.readBuffersHeld));
    check(checks, rbuf <= conns + 16, `receive buffers held stay bounded by the connections open (max ${rbuf})`);
    backToBaseline(checks, before, after, rssToleranceMiB, "after the load");
    return { minutes, intervalS, rate, before, after, samples, checks, errors: tally.errors, partial: tally.partial, firstError: tally.firstError, requests: issued, skipped, served: tally.ok, servedPerSec: (samples.at(-1)?.ok ?? 0) / ((samples.at(-1)?.t) || 1), rssSlope: slope("rss"), fdSlope: slope("fds") };
  } finally { running = false; await srv.stop(); }

  function openKeepAlive(port, t, pool) {
    t.open = (t.open ?? 0) + 1;
    const s = net.connect(port, "127.0.0.1");
    const c = { send: () => s.write(request("/small.bin", false)), close: () => s.end() };
    const r = new Responses((status) => { if (status === 200) t.ok++; else t.errors++; if (running) pool.push(c); });
    s.on("data", (d) => r.feed(d));
    s.on("error", (e) => { t.firstError ??= e.code; });
    s.on("close", () => { t.open--; if (r.started) t.partial++; if (running) { t.errors++; t.firstError ??= "keep-alive connection closed"; } });
    return c;
  }
}

/** Least-squares slope of [seconds, value] pairs, per minute. */
function slopePerMinute(pts) {
  if (pts.length < 2) return 0;
  const n = pts.length, mx = pts.reduce((a, p) => a + p[0], 0) / n, my = pts.reduce((a, p) => a + p[1], 0) / n;
  const sxy = pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0), sxx = pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return sxx === 0 ? 0 : (sxy / sxx) * 60;
}

// ---- the command line ----------------------------------------------------------------

const CASES = ["churn", "fds", "sigterm", "long"];

function parse(argv) {
  const o = { cases: CASES, smoke: false, connections: 1_000_000, concurrency: 64, clients: 1_000, nofile: 256, seconds: 3, graceMs: 5_000,
    minutes: 30, interval: 10, rate: 1_000, rssTolerance: 8, warmup: 2_000, settleMs: 1_000, conns: 50 };
  const num = { "--connections": "connections", "--concurrency": "concurrency", "--clients": "clients", "--nofile": "nofile", "--seconds": "seconds",
    "--shutdown-timeout": "graceMs", "--minutes": "minutes", "--interval": "interval", "--rate": "rate", "--rss-tolerance": "rssTolerance" };
  const given = new Set();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--smoke") o.smoke = true;
    else if (a === "--case") {
      o.cases = String(argv[++i] ?? "").split(",");
      const bad = o.cases.find((c) => !CASES.includes(c));
      if (bad !== undefined) throw new Error(`--case: unknown case '${bad}' (cases: ${CASES.join(", ")})`);
    } else if (a in num) {
      const v = Number(argv[++i]);
      if (!(v > 0)) throw new Error(`${a} needs a positive number, got '${argv[i] ?? ""}'`);
      o[num[a]] = v;
      given.add(num[a]);
    } else throw new Error(`unknown argument ${a} (--case ${CASES.join(",")}, --smoke, ${Object.keys(num).join(", ")})`);
  }
  if (o.smoke) {
    const small = { connections: 300, clients: 300, seconds: 0.5, minutes: 2 / 60, interval: 1, rate: 100, warmup: 100, settleMs: 100, conns: 10 };
    for (const [k, v] of Object.entries(small)) if (!given.has(k)) o[k] = v;
  }
  return o;
}

const fmt = (n) => Math.round(n).toLocaleString("en-US");

/** The header of each case's table (bench/RESULTS.md's, once the lead puts them there). */
export const TABLES = {
  churn: "| when | fds | RSS MiB | core memory MiB | live conns | wbuf bytes | rbufs held | timers | accepted | closed |",
  fds: "| --max-connections | clients | served | 503 Retry-After | wall s | server CPU s | waiting s | CPU while waiting s |",
  sigterm: "| complete | of them 1 MiB | receiving at the signal | waiting at the signal | truncated | never started | refused after close | exit code | exit ms |",
  long: "| t s | requests ok | RSS MiB | fds | core memory MiB | live conns | accepted - closed | wbuf bytes | rbufs held | timers |",
};

/** Prints case `name`'s result `r` (what churn() etc. returned) with `log`: title, table, figures, checks. True if every check held. */
export function report(name, r, log = console.log) {
  const table = (rows) => {
    log(TABLES[name]);
    log(TABLES[name].replace(/[^|]+/g, " --- ").trim());
    for (const row of rows) log(`| ${row.join(" | ")} |`);
  };
  if (name === "churn") {
    log(`\n## churn: ${fmt(r.connections)} connections, one request each, ${r.concurrency} at a time\n`);
    table([["started", r.fresh], ["before (warm)", r.before], ["after", r.after]].map(([w, s]) =>
      [w, s.fds, mib(s.rss), mib(s.memoryBytes), s.liveConnections, s.writeBufferBytes, s.readBuffersHeld, s.timers, fmt(s.accepted), fmt(s.closed)]));
    log(`\n${fmt(r.connPerSec)} connections/s over ${r.load.seconds.toFixed(1)} s; server CPU ${(r.after.cpu - r.before.cpu).toFixed(1)} s`);
  } else if (name === "fds") {
    log(`\n## fds: prlimit --nofile=${r.nofile}, ${fmt(r.clients)} clients at once\n`);
    table(r.runs.map((x) => [x.noCap ? "0 (no cap)" : `default (${x.cap ?? "?"})`, fmt(x.clients), fmt(x.served), fmt(x.unavailable), x.wall.toFixed(2), x.cpu.toFixed(2), x.holdWall.toFixed(2), x.holdCpu.toFixed(3)]));
    log("");
  } else if (name === "sigterm") {
    log(`\n## sigterm: load for ${r.seconds} s, then SIGTERM (--shutdown-timeout ${r.graceMs})\n`);
    table([[fmt(r.complete), fmt(r.large), r.receiving, r.waiting, r.partial, r.neverStarted, r.refused, r.exit.code, r.exitMs]]);
    log("");
  } else {
    log(`\n## long: ${+r.minutes.toFixed(2)} min at ${fmt(r.rate)} requests/s, a sample every ${r.intervalS} s\n`);
    table(r.samples.map((s) => [s.t.toFixed(0), fmt(s.ok), mib(s.rss), s.fds, mib(s.memoryBytes), s.liveConnections, s.accepted - s.closed, s.writeBufferBytes, s.readBuffersHeld, s.timers]));
    log(`\nRSS slope ${(r.rssSlope / 1024).toFixed(1)} KiB/min, fd slope ${r.fdSlope.toFixed(2)}/min; ${fmt(r.requests)} requests due, ${fmt(r.served)} served (${fmt(r.servedPerSec)}/s), ${fmt(r.skipped)} skipped (every keep-alive connection busy when due)`);
    log(`before: RSS ${mib(r.before.rss)} MiB, fds ${r.before.fds}; after: RSS ${mib(r.after.rss)} MiB, fds ${r.after.fds}`);
  }
  for (const c of r.checks) log(`${c.ok ? "ok  " : "FAIL"} ${c.what}`);
  return r.checks.every((c) => c.ok);
}

/** Parses argv; exits 2 with one line on a bad flag. */
export function options(argv) {
  try { return parse(argv); } catch (e) { console.error(`soak.mjs: ${e.message}`); process.exit(2); }
}

async function main() {
  const o = options(process.argv.slice(2));
  const root = makeDocroot();
  let pass = true;
  const bye = () => { stopAll(); rmSync(root, { recursive: true, force: true }); };
  process.on("SIGINT", () => { bye(); process.exit(130); });
  console.log(`soak against serve, ${new Date().toISOString()}, load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}${o.smoke ? " (--smoke: the figures mean nothing)" : ""}`);
  const progress = (what) => console.error(`  ${what}`);
  const run = {
    churn: () => churn(root, { connections: o.connections, concurrency: o.concurrency, rssToleranceMiB: o.rssTolerance, warmup: o.warmup, settleMs: o.settleMs,
      progress: (n, ms) => progress(`churn: ${fmt(n)} connections, ${fmt(n / (ms / 1000))}/s`) }),
    fds: () => fdsBoth(root, { clients: o.clients, nofile: o.nofile }),
    sigterm: () => sigterm(root, { seconds: o.seconds, graceMs: o.graceMs }),
    long: () => long(root, { minutes: o.minutes, intervalS: o.interval, rate: o.rate, rssToleranceMiB: o.rssTolerance, warmup: o.warmup, settleMs: o.settleMs, conns: o.conns,
      onSample: (s) => progress(`long: ${s.t.toFixed(0)} s, ${fmt(s.ok)} requests, RSS ${mib(s.rss)} MiB, ${s.fds} fds, ${s.liveConnections} live`) }),
  };
  try {
    for (const name of CASES) if (o.cases.includes(name)) pass = report(name, await run[name]()) && pass;
  } finally { bye(); }
  process.exit(pass ? 0 : 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
