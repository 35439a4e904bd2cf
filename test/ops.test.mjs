// Operating the server (issue 11, helper "ops"): JSON log lines and levels,
// --max-connections (clients beyond the cap wait in the listen queue and are
// served later, none refused), bad values of the new flags (exit 2, one
// line), --workers auto, --cpu-affinity (the mask as the kernel reports it),
// and slow callbacks logged at most once a second.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { connect } from "node:net";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { Reactor, Server, kernelLimitWarnings, workerShare, defaultConnectionCap } from "../dist/index.js";
import { makeRoot, removeRoot, spawnServer, runCli } from "./lib/http-server.mjs";
import { HttpConn, get } from "./lib/http-client.mjs";

const root = makeRoot({ "a.txt": "hello\n" });
const servers = [];

/** The CPUs this process may use, from the kernel (not from the code under test). */
function cpusAllowed(status) {
  const list = /^Cpus_allowed_list:\s*(.*)$/m.exec(status)[1].trim();
  return list.split(",").flatMap((r) => {
    const [a, b] = r.split("-").map(Number);
    return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => a + i);
  });
}

test("--log-format json: every line is one JSON object with time, level, worker and event; --cpu-affinity pins worker i to CPU i", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--log-format", "json", "--workers", "2", "--cpu-affinity"]);
  servers.push(s);
  const mine = cpusAllowed(readFileSync("/proc/self/status", "utf8"));
  // Each worker says where it is pinned before the listening line; its tid lets us ask the kernel.
  const early = s.stderr().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const pins = early.filter((o) => o.event === "cpu_affinity").sort((a, b) => a.worker - b.worker);
  assert.equal(pins.map((o) => o.worker), [0, 1], s.stderr());
  for (const p of pins) {
    const status = readFileSync(`/proc/${s.child.pid}/task/${p.tid}/status`, "utf8");
    assert.equal(cpusAllowed(status), [mine[p.worker % mine.length]], `worker ${p.worker}, tid ${p.tid}`);
  }
  assert.is(await s.stop(), 0);
  const lines = [...s.stdout().split("\n"), ...s.stderr().split("\n")].filter(Boolean);
  const objs = lines.map((l) => { try { return JSON.parse(l); } catch { assert.unreachable(`not JSON: ${l}`); } });
  for (const o of objs) {
    assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, JSON.stringify(o));
    assert.ok(["error", "warn", "info", "debug"].includes(o.level), JSON.stringify(o));
    assert.ok(o.worker === null || Number.isInteger(o.worker), JSON.stringify(o));
    assert.type(o.event, "string");
    assert.type(o.msg, "string");
  }
  const listening = objs.find((o) => o.event === "listening");
  assert.ok(listening, lines.join("\n"));
  assert.is(listening.worker, null);
  assert.is(listening.workers, 2);
  assert.is(listening.pid, s.child.pid);
  assert.ok(objs.some((o) => o.event === "shutdown" && o.level === "info"), lines.join("\n"));
});

test("log levels: debug adds a line per connection (accept, close) built by the core; info has none; warn drops info", async () => {
  const run = async (level) => {
    const lines = [];
    const server = new Server({ protocol: "echo", port: 0, handleSignals: false, log: { level, format: "json", write: (l) => lines.push(JSON.parse(l)) } });
    server.attach();
    await new Promise((resolve, reject) => {
      const c = connect(server.port, "127.0.0.1", () => c.end("x"));
      c.on("data", () => {});
      c.on("error", reject);
      c.on("close", resolve);
    });
    // The close line comes from the server's own close: wait for that tick.
    for (let i = 0; i < 200 && server.stats().liveConnections > 0; i++) await new Promise((r) => setTimeout(r, 5));
    server.reactor.loop.log("info", "an info line", "test_info");
    server.reactor.loop.log("warn", "a warn line", "test_warn");
    server.stop();
    server.close();
    return lines;
  };
  const debug = await run("debug");
  assert.ok(debug.some((o) => o.event === "connection_open" && o.level === "debug" && /^accept: fd \d+$/.test(o.msg)), JSON.stringify(debug));
  assert.ok(debug.some((o) => o.event === "connection_close" && o.level === "debug" && /^close: fd \d+$/.test(o.msg)), JSON.stringify(debug));
  const info = await run("info");
  assert.equal(info.filter((o) => o.level === "debug"), []);
  assert.equal(info.map((o) => o.event), ["test_info", "test_warn"]);
  const warn = await run("warn");
  assert.equal(warn.map((o) => o.event), ["test_warn"]);
});

test("under ulimit -n 256, a warm open-file cache leaves the connections their fds: 300 files cached, then 192 keep-alive clients all served", async () => {
  // 150 files over the cache's in-memory size (each kept open for sendfile) and 150 small ones
  // (read into memory, then closed).
  const files = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [[`f${i}.txt`, `${i}`.padEnd(40_000, ".")], [`s${i}.txt`, `small ${i}\n`]]).flat());
  const many = makeRoot(files);
  const t = await spawnServer(["serve", "--root", many, "--port", "0", "--log-level", "debug"], { prefix: ["prlimit", "--nofile=256:256"] });
  servers.push(t);
  try {
    assert.match(t.stderr(), /at most 192 connections open \(RLIMIT_NOFILE 256, 64 fds kept for files, listeners and the loop, of them 16 per worker for cached open files/);
    // One keep-alive connection walks every file: without a budget the cache would keep 300 open.
    const walker = await HttpConn.open(t.port);
    for (const name of Object.keys(files)) {
      await walker.write(get(`/${name}`));
      const r = await walker.response();
      assert.is(r.status, 200, name);
    }
    // Without the budget the 150 large files alone would hold 150 fds.
    const fds = readdirSync(`/proc/${t.child.pid}/fd`).length;
    assert.ok(fds < 100, `${fds} fds open after the walk: the cache kept at most its budget (16)`);
    // Then the rest of the cap, as keep-alive clients that stay: every one is accepted and answered
    // (with the cache holding every large file open, most of them waited for a connection to close).
    const conns = await Promise.all(Array.from({ length: 191 }, () => HttpConn.open(t.port)));
    const got = await Promise.all(conns.map(async (c, i) => { await c.write(get(`/s${i % 150}.txt`)); return (await c.response()).status; }));
    assert.equal(got.filter((s) => s !== 200), []);
    for (const c of [walker, ...conns]) c.close();
    assert.is(await t.stop(), 0);
  } finally { removeRoot(many); }
});

/** One GET /a.txt with Connection: close, sent once `go` resolves; `connected`, then `status` (0: none). */
function oneRequest(port, go) {
  let up, done;
  const r = { connected: new Promise((x) => { up = x; }), status: new Promise((x) => { done = x; }) };
  let got = "";
  const c = connect(port, "127.0.0.1", () => { up(); go.then(() => c.write("GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")); });
  c.on("data", (d) => { got += d; });
  c.on("error", () => { up(); });
  c.on("close", () => done(/\r\n\r\nhello\n$/.test(got) ? Number(got.slice(9, 12)) : 0));
  return r;
}

/** A keep-alive client that sends one GET and collects what comes back; `leave`: it closes once answered. */
function client(port, leave = false) {
  const c = { got: "", error: null, closed: false, sock: null };
  c.sock = connect(port, "127.0.0.1", () => c.sock.write("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
  c.sock.on("data", (d) => { c.got += d; if (leave && answered(c)) c.sock.end(); });
  c.sock.on("error", (e) => { c.error = e; });
  c.sock.on("close", () => { c.closed = true; });
  return c;
}
const answered = (c) => /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nhello\n/.test(c.got);
async function until(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("--max-connections N with N+5 clients: N served, 5 wait in the listen queue (none refused) and are served once others close", async () => {
  const N = 3;
  const server = new Server({ protocol: "http", root, port: 0, handleSignals: false, maxConnections: N, log: () => {} });
  server.attach();
  try {
    const first = Array.from({ length: N }, () => client(server.port));
    await until("the first N answers", () => first.every(answered));
    // Each of these leaves once answered, making room for the next.
    const waiting = Array.from({ length: 5 }, () => client(server.port, true));
    await until("the waiting clients' connects", () => waiting.every((c) => c.sock.readyState === "open"));
    // A round trip on a served connection: the loop has run with the new
    // connections pending in its listen queue, and not accepted them.
    first[0].got = "";
    first[0].sock.write("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    await until("the second answer on a served connection", () => answered(first[0]));
    assert.is(server.stats().accepted, N);
    assert.equal(waiting.map((c) => c.got), ["", "", "", "", ""]);
    // Below the cap again: the waiting ones are accepted and served, at most N at a time.
    for (const c of first) c.sock.end();
    await until("the waiting clients' answers", () => waiting.every(answered));
    assert.is(server.stats().accepted, N + 5);
    assert.ok(server.stats().liveConnections <= N);
    assert.equal([...first, ...waiting].map((c) => c.error), Array(N + 5).fill(null), "none refused or reset");
    for (const c of waiting) c.sock.destroy();
  } finally {
    server.stop();
    server.close();
  }
});

test("bad values of the new flags exit 2 with one line", async () => {
  const limits = readFileSync("/proc/self/limits", "utf8");
  const hard = Number(/^Max open files\s+\d+\s+(\d+)/m.exec(limits)?.[1]);
  const cases = [
    [["--log-format", "xml"], /--log-format must be text or json, got 'xml'/],
    [["--log-level", "trace"], /--log-level must be error, warn, info, debug, got 'trace'/],
    [["--workers", "0"], /--workers must be 1\.\.64 or auto, got 0/],
    [["--workers", "many"], /--workers must be a whole number or auto, got 'many'/],
    [["--max-connections", "-1"], /--max-connections must be a whole number, got '-1'/],
    [["--max-connections", "1", "--workers", "2"], /--max-connections 1 is below --workers 2/],
    [["--slow-callback-ms", "x"], /--slow-callback-ms must be a whole number, got 'x'/],
    [["--cpu-affinity=yes"], /--cpu-affinity takes no value/],
  ];
  if (Number.isInteger(hard) && hard < 2 ** 29) {
    cases.push([["--max-connections", String(hard)], new RegExp(`--max-connections ${hard} needs RLIMIT_NOFILE >= \\d+ .*the hard limit is ${hard}`)]);
  }
  for (const [args, want] of cases) {
    const r = await runCli(["serve", "--root", root, "--port", "0", ...args]);
    assert.is(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    const lines = r.stderr.split("\n").filter(Boolean);
    assert.is(lines.length, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(lines[0], want);
  }
  // proxy and echo take them too
  for (const cmd of [["echo"], ["proxy", "--upstream", "127.0.0.1:9"]]) {
    const r = await runCli([...cmd, "--log-level", "loud"]);
    assert.is(r.code, 2, r.stderr);
    assert.match(r.stderr, /--log-level must be/);
  }
});

test("--workers auto: one worker per CPU this process may use", async () => {
  const n = Math.min(64, availableParallelism());
  const t = await spawnServer(["serve", "--root", root, "--port", "0", "--workers", "auto"], { timeoutMs: 20000 });
  servers.push(t);
  assert.match(t.stdout(), new RegExp(`\\(mode et, ${n} worker${n > 1 ? "s" : ""},`));
  assert.is(await t.stop(), 0);
});

test("a slow callback is logged at warn with its kind and duration, at most once a second, with a count of the ones in between", () => {
  const lines = [];
  const r = new Reactor({ handleSignals: false, slowCallbackMs: 20, log: { format: "json", write: (l) => lines.push(JSON.parse(l)) } });
  const spin = (ms) => { const end = performance.now() + ms; while (performance.now() < end); };
  let firstAt = 0;
  r.setTimeout(0, () => {
    spin(25); // logged
    firstAt = performance.now();
    for (let i = 0; i < 4; i++) r.defer(() => spin(25)); // within the second: counted
    r.setTimeout(0, () => {
      // After the second is over (this callback is itself slow): logged, with the 4 counted.
      spin(Math.max(25, 1050 - (performance.now() - firstAt)));
      r.defer(() => r.stop());
    });
  });
  r.run();
  r.close();
  const slow = lines.filter((o) => o.event === "slow_callback");
  assert.is(slow.length, 2, JSON.stringify(lines));
  assert.is(slow[0].level, "warn");
  assert.is(slow[0].kind, "timer");
  assert.ok(slow[0].duration_ms >= 20, JSON.stringify(slow[0]));
  assert.is(slow[0].suppressed, 0);
  assert.is(slow[1].kind, "timer");
  assert.is(slow[1].suppressed, 4);
  assert.match(slow[1].msg, /4 more since the last such line/);
});

test("startup warnings: each kernel setting below --max-connections is named once; the cap splits evenly over workers", () => {
  const dir = mkdtempSync(join(tmpdir(), "wr-sys-"));
  const put = (name, v) => { mkdirSync(join(dir, ...name.split(".").slice(0, -1)), { recursive: true }); writeFileSync(join(dir, ...name.split(".")), v); };
  try {
    put("net.core.somaxconn", "128\n");
    put("net.ipv4.tcp_max_syn_backlog", "256\n");
    put("net.ipv4.ip_local_port_range", "32768\t60999\n");
    const w = kernelLimitWarnings({ maxConnections: 30000, backlog: 65535, outgoing: true, procSys: dir });
    assert.equal(w.map((x) => x.fields.setting), ["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.ip_local_port_range"]);
    assert.match(w[0].msg, /somaxconn is 128\b.*--max-connections 30000/);
    assert.match(w[2].msg, /28232 source ports/);
    // serve (no outgoing connections): the port range does not matter; a cap the settings hold: nothing.
    assert.is(kernelLimitWarnings({ maxConnections: 30000, procSys: dir }).length, 2);
    assert.equal(kernelLimitWarnings({ maxConnections: 100, outgoing: true, procSys: dir }), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal([0, 1, 2].map((i) => workerShare(10, 3, i)), [4, 3, 3]);
});

test("with no --max-connections the cap is what the fd limit holds after the reserve (at most a quarter of it)", () => {
  // serve, 1 worker: 64 fds for the loop + 2048 for the file cache; ulimit -n 256 keeps a quarter (64).
  // The cache then keeps a quarter of each worker's share of the reserve open (the rest: the loop, Node, opens in progress).
  assert.equal(defaultConnectionCap(256, { workers: 1, kind: "serve" }), { cap: 192, reserve: 64, fileCacheFds: 16 });
  assert.equal(defaultConnectionCap(1024, { workers: 2, kind: "serve" }), { cap: 768, reserve: 256, fileCacheFds: 32 });
  // A limit that holds the whole reserve: the cache's full 2048 per worker.
  assert.equal(defaultConnectionCap(20_000, { workers: 2, kind: "serve" }), { cap: 20_000 - 2 * 2112, reserve: 2 * 2112, fileCacheFds: 2048 });
  // echo keeps only the loop's 64; a proxy connection holds two fds.
  assert.equal(defaultConnectionCap(1024, { workers: 1, kind: "echo" }), { cap: 960, reserve: 64, fileCacheFds: 0 });
  assert.equal(defaultConnectionCap(10_000, { workers: 1, kind: "proxy", upstreams: 2, upstreamKeepalive: 0 }), { cap: Math.floor((10_000 - 66) / 2), reserve: 66, fileCacheFds: 0 });
  // Never below one per worker, never beyond an i32.
  assert.equal(defaultConnectionCap(3, { workers: 4, kind: "serve" }).cap, 4);
  assert.is(defaultConnectionCap(2 ** 40, { workers: 1, kind: "echo" }).cap, 2 ** 31 - 1);
});

test("with no --max-connections under ulimit -n 256, 600 clients at once are all served (accepting stops at the cap, files still open)", async () => {
  const t = await spawnServer(["serve", "--root", root, "--port", "0", "--log-level", "debug"], { prefix: ["prlimit", "--nofile=256:256"] });
  servers.push(t);
  assert.match(t.stderr(), /at most 192 connections open \(RLIMIT_NOFILE 256, 64 fds kept/);
  // All connect first (the kernel completes each handshake; past the cap they wait in the listen
  // queue), then all send: the cap is reached whatever the machine's speed.
  let release;
  const go = new Promise((r) => { release = r; });
  const clients = Array.from({ length: 600 }, () => oneRequest(t.port, go));
  await Promise.all(clients.map((c) => c.connected));
  release();
  const statuses = await Promise.all(clients.map((c) => c.status));
  assert.equal(statuses.filter((s) => s !== 200), [], "every client got a 200");
  assert.match(t.stderr(), /connections: limit of 192 reached/, "the cap was reached (else this tests nothing)");
  assert.is(await t.stop(), 0);
});

test.after(async () => {
  for (const s of servers) await s.stop();
  removeRoot(root);
});

test.run();
