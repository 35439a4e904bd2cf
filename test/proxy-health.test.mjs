// Active health checks and passive ejection through the live tcp proxy
// (127.0.0.1): upstreams are node:net / node:http servers in this process;
// what each upstream sees (client connections, probe requests) is counted
// there, never taken from the proxy's own numbers. Short intervals (100 ms)
// keep the file fast; every wait is bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import net from "node:net";
import http from "node:http";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanup, cliPath, within, until, sleep, runCli } from "./lib/procs.mjs";

const { Proxy, replay } = await import("../dist/index.js");

const open = new Set();
const dir = mkdtempSync(join(tmpdir(), "proxy-health-"));
test.after(() => {
  for (const o of open) { try { o.close?.(); o.destroy?.(); } catch { /* gone */ } }
  rmSync(dir, { recursive: true, force: true });
  cleanup();
});

/**
 * A tcp upstream on `port` (0: any) that answers a client's bytes with its
 * name and closes. `served` counts connections that sent something (clients;
 * a tcp probe connects and closes without a byte).
 */
async function named(name, port = 0) {
  const u = { name, served: 0, sockets: new Set(), server: null, port };
  u.listen = async () => {
    u.server = net.createServer((s) => {
      u.sockets.add(s);
      s.on("close", () => u.sockets.delete(s));
      s.on("error", () => {});
      s.once("data", () => { u.served++; s.end(u.name); });
    });
    await new Promise((r, j) => { u.server.once("error", j); u.server.listen(u.port, "127.0.0.1", r); });
    u.port = u.server.address().port;
  };
  u.close = () => new Promise((r) => { for (const s of u.sockets) s.destroy(); u.server.close(() => r()); });
  await u.listen();
  open.add({ close: () => { try { u.server.close(); } catch { /* closed */ } for (const s of u.sockets) s.destroy(); } });
  return u;
}

function proxy(ports, opts = {}) {
  const p = new Proxy({ port: 0, proxyMode: "tcp", upstreams: ports.map((port) => ({ host: "127.0.0.1", port })), ...opts });
  p.attach();
  open.add({ close: () => { try { p.stop(); p.close(); } catch { /* closed */ } } });
  return p;
}

/** One client through the proxy: sends a byte, resolves to what came back (an upstream's name, "" if closed). */
function ask(port) {
  return within(5000, new Promise((resolve) => {
    const c = net.connect({ port, host: "127.0.0.1" });
    let text = "";
    c.on("data", (d) => { text += d; });
    c.on("error", () => {});
    c.on("close", () => resolve(text));
    c.write("?");
  }), "a reply through the proxy");
}
async function askMany(port, n) {
  const seen = {};
  for (let i = 0; i < n; i++) { const who = await ask(port); seen[who] = (seen[who] ?? 0) + 1; }
  return seen;
}
const state = (p, u) => p.stats().upstreams[u].state;
/** An http upstream answering 200 to everything (a second, healthy upstream for the http checks). */
async function okHttp() {
  const server = http.createServer((req, res) => res.end("ok"));
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  open.add({ close: () => server.close() });
  return server.address().port;
}

test("http mode: every upstream down by its checks -> 503, and nothing reaches them", async () => {
  const a = await named("a"), b = await named("b");
  const p = proxy([a.port, b.port], { proxyMode: "http", health: { check: "tcp", checkIntervalMs: 50, checkTimeoutMs: 50, rise: 1, fall: 2 } });
  await a.close(); await b.close();
  await until(3000, () => p.stats().upstreams.every((u) => u.state === "down"), "both down");
  const res = await within(5000, fetch(`http://127.0.0.1:${p.port}/x`), "the proxy's answer");
  assert.is(res.status, 503); // RFC 9110 15.6.4: no upstream can take it (not 502: nothing failed, none was tried)
  await res.arrayBuffer();
  assert.is(p.stats().http.answered503, 1);
  assert.is(a.served + b.served, 0);
});

test("tcp check: a closed listener goes down after fall probes, traffic avoids it; reopened, it comes back after rise and ramps up (slow start)", async () => {
  const a = await named("a"), b = await named("b"), c = await named("c");
  const p = proxy([a.port, b.port, c.port], {
    balance: "wrr", health: { check: "tcp", checkIntervalMs: 100, checkTimeoutMs: 100, rise: 2, fall: 3, slowStartMs: 1500 },
  });
  await until(3000, () => p.stats().upstreams.every((u) => u.check.probes >= 2), "first probes");
  assert.ok(p.stats().upstreams.every((u) => u.state === "up" && u.check.last === "connected"), JSON.stringify(p.stats().upstreams.map((u) => u.check)));
  // The probes are connections that send nothing: the upstreams saw no client yet.
  assert.is(a.served + b.served + c.served, 0);
  const probesBefore = p.stats().upstreams[1].check.failed;
  await b.close();
  await until(3000, () => state(p, 1) === "down", "b down");
  const st = p.stats().upstreams[1];
  assert.ok(st.check.failed - probesBefore >= 3, `down after ${st.check.failed - probesBefore} failed probes (fall 3)`);
  assert.match(st.check.last, /^errno 111$/); // ECONNREFUSED
  const down = await askMany(p.port, 30);
  assert.is(down.b, undefined, JSON.stringify(down));
  assert.is((down.a ?? 0) + (down.c ?? 0), 30);
  // Same port again: up after rise good probes, then its share ramps from 10%.
  await b.listen();
  await until(3000, () => state(p, 1) === "up", "b up again");
  assert.ok(p.stats().upstreams[1].ramp < 0.5, `ramp ${p.stats().upstreams[1].ramp}`);
  const early = await askMany(p.port, 40);
  assert.ok((early.b ?? 0) <= 8, `while ramping b got ${early.b ?? 0} of 40: ${JSON.stringify(early)}`);
  await until(4000, () => p.stats().upstreams[1].ramp === 1, "ramp done");
  const b0 = b.served;
  const late = await askMany(p.port, 60);
  assert.is(b.served - b0, late.b);
  assert.ok(late.b >= 14 && late.b <= 26, `at full weight b got ${late.b} of 60 (1/3 expected): ${JSON.stringify(late)}`);
  assert.is(p.stats().upstreams[1].transitions, 2, "down, up: one transition each");
});

test("http check: 500 on the path takes it down, 200 brings it back; the probe's request is GET path with Host", async () => {
  let code = 200, served500 = 0;
  const heads = [];
  const server = http.createServer((req, res) => {
    heads.push({ method: req.method, url: req.url, host: req.headers.host, ua: req.headers["user-agent"], conn: req.headers.connection });
    if (code === 500) served500++;
    res.writeHead(code, { "content-type": "text/plain" });
    res.end(code === 200 ? "ok" : "bad");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  open.add({ close: () => server.close() });
  const port = server.address().port;
  const p = proxy([port, await okHttp()], { health: { check: "http:/health?deep=1", checkIntervalMs: 100, checkTimeoutMs: 500 } });
  await until(3000, () => p.stats().upstreams[0].check.probes >= 2, "probes");
  assert.equal(heads[0], { method: "GET", url: "/health?deep=1", host: `127.0.0.1:${port}`, ua: "wasm-reactor-health", conn: "close" });
  assert.is(p.stats().upstreams[0].check.last, "status 200");
  code = 500;
  await until(3000, () => state(p, 0) === "down", "down on 500");
  assert.ok(served500 >= 3, `down after ${served500} responses 500 (fall 3)`);
  assert.is(p.stats().upstreams[0].check.last, "status 500");
  // 3xx counts as good (HAProxy's httpchk)
  code = 302;
  await until(3000, () => state(p, 0) === "up", "up on 302");
  code = 500;
  await until(3000, () => state(p, 0) === "down", "down again");
  code = 200;
  await until(3000, () => state(p, 0) === "up", "up on 200");
  assert.is(p.stats().upstreams[1].state, "up");
  server.close();
});

test("http check on a port of its own (--health-port): the probes go there, traffic to the upstreams' ports", async () => {
  // Two upstreams on two loopback addresses, each with a service port and, on one port number shared by both
  // (as --health-port is), a check server: serve's --metrics listener with its /readyz.
  let ready = 200, checks = 0, served = 0;
  const listen = async (s, host, port = 0) => {
    await new Promise((r, j) => { s.once("error", j); s.listen(port, host, r); });
    open.add({ close: () => s.close() });
    return s.address().port;
  };
  const svcA = await listen(http.createServer((req, res) => { served++; res.end("A"); }), "127.0.0.1");
  const svcB = await listen(http.createServer((req, res) => res.end("B")), "127.0.0.2");
  const chkPort = await listen(http.createServer((req, res) => { checks++; res.writeHead(req.url === "/readyz" ? ready : 404); res.end(); }), "127.0.0.1");
  await listen(http.createServer((req, res) => { res.writeHead(req.url === "/readyz" ? 200 : 404); res.end(); }), "127.0.0.2", chkPort);
  const p = new Proxy({ port: 0, proxyMode: "http", upstreams: [{ host: "127.0.0.1", port: svcA }, { host: "127.0.0.2", port: svcB }],
    health: { check: "http:/readyz", checkPort: chkPort, checkIntervalMs: 50, checkTimeoutMs: 500 } });
  p.attach();
  open.add({ close: () => { try { p.stop(); p.close(); } catch { /* closed */ } } });
  await until(3000, () => checks >= 2, "probes on the check port");
  assert.is(served, 0, "no probe reached the service port");
  assert.is(p.stats().upstreams[0].check.last, "status 200");
  ready = 503; // A drains
  await until(3000, () => state(p, 0) === "down", "down on 503 from the check port");
  const before = served;
  for (let i = 0; i < 4; i++) assert.is(await (await fetch(`http://127.0.0.1:${p.port}/`)).text(), "B", "traffic avoids A");
  assert.is(served, before);
  assert.is(state(p, 1), "up");
  ready = 200;
  await until(3000, () => state(p, 0) === "up", "up again");
});

test("http check: a probe that gets no answer is bad at the timeout", async () => {
  let accepted = 0;
  const mute = net.createServer((s) => { accepted++; s.on("error", () => {}); s.resume(); open.add(s); });
  await new Promise((r) => mute.listen(0, "127.0.0.1", r));
  open.add({ close: () => mute.close() });
  const p = proxy([mute.address().port, await okHttp()], { health: { check: "http:/", checkIntervalMs: 100, checkTimeoutMs: 150 } });
  await until(4000, () => state(p, 0) === "down", "down by timeouts");
  const st = p.stats().upstreams[0];
  assert.is(st.check.last, "timeout");
  assert.ok(st.check.failed >= 3 && accepted >= 3, `${st.check.failed} failed, ${accepted} accepted`);
  // Never more than one probe out per upstream: the timeout (150) exceeds the interval (100).
  assert.ok(accepted <= st.check.probes + 1, `${accepted} probe connections for ${st.check.probes} probes`);
  assert.is(p.stats().upstreams[1].state, "up");
});

test("passive ejection: max-fails refused connects eject it; it is tried again only after the fail timeout", async () => {
  const live = await named("live");
  const gone = await named("gone");
  await gone.close(); // its port now refuses connects
  const p = proxy([gone.port, live.port], { balance: "rr", health: { maxFails: 2, ejectBaseMs: 1500 } });
  // One failure (< max-fails): still in rotation. Seen at the upstream: reopened, it gets clients.
  await until(3000, async () => { await ask(p.port); return p.stats().upstreams[0].failures >= 1; }, "a failed connect");
  assert.is(state(p, 0), "up");
  await gone.listen();
  await until(3000, async () => { await ask(p.port); return gone.served > 0; }, "gone reached while under max-fails");
  await gone.close();
  // Second failure in a row: ejected. Reopened at once, it sees nobody until the fail timeout is over.
  const f0 = p.stats().upstreams[0].failures;
  await until(3000, async () => { await ask(p.port); return p.stats().upstreams[0].failures >= f0 + 2; }, "two failures in a row");
  assert.is(state(p, 0), "ejected");
  await gone.listen();
  const s0 = gone.served;
  const t0 = Date.now();
  const during = await askMany(p.port, 20);
  assert.ok(Date.now() - t0 < 1200, "the clients went through within the ejection");
  assert.is(gone.served - s0, 0, JSON.stringify(during));
  assert.is(during.live, 20);
  await sleep(1600 - (Date.now() - t0));
  const after = await askMany(p.port, 10);
  assert.ok(gone.served - s0 >= 4, `after the fail timeout gone got ${gone.served - s0} of 10: ${JSON.stringify(after)}`);
  assert.is(state(p, 0), "up");
});

test("graceful shutdown with checks: probes stop and their connections close", async () => {
  let conns = 0, live = 0;
  const up = net.createServer((s) => { conns++; live++; s.on("close", () => live--); s.on("error", () => {}); s.resume(); });
  await new Promise((r) => up.listen(0, "127.0.0.1", r));
  open.add({ close: () => up.close() });
  // A probe that hangs (timeout 5 s) is open when the shutdown begins.
  const p = proxy([up.address().port], { health: { check: "http:/", checkIntervalMs: 50, checkTimeoutMs: 5000 } });
  await until(3000, () => conns >= 1, "a probe connected");
  const res = await within(3000, p.shutdown(10_000), "shutdown (not the grace period)");
  assert.is(res.forced, 0);
  p.close();
  await until(2000, () => live === 0, "the probe's connection closed");
  const n = conns;
  await sleep(200);
  assert.is(conns, n, "no probe after the shutdown");
});

test("replay: a run with checks replays byte-identical", async () => {
  const file = join(dir, "health.rec");
  const a = await named("a");
  const dead = await named("dead");
  await dead.close();
  const p = proxy([a.port, dead.port], { record: file, health: { check: "tcp", checkIntervalMs: 50 } });
  await until(3000, () => state(p, 1) === "down", "dead down");
  assert.is((await askMany(p.port, 3)).a, 3);
  await within(5000, p.shutdown(1000), "shutdown");
  p.close();
  const r = replay(readFileSync(file));
  assert.ok(r.ok, JSON.stringify(r.divergence ?? r, null, 1)?.slice(0, 2000));
});

// ---- command line ------------------------------------------------------------

test("CLI: the health flags reach the core (an upstream answering 500 is logged down)", async () => {
  const server = http.createServer((req, res) => { res.writeHead(req.url === "/ok" ? 200 : 500); res.end(); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  open.add({ close: () => server.close() });
  const port = server.address().port;
  const child = spawn(process.execPath, [cliPath, "proxy", "0", `127.0.0.1:${port}`, "--health-check", "http:/bad",
    "--health-interval", "50", "--health-fall", "2", "--max-fails", "0", "--fail-timeout", "500", "--slow-start", "100"],
  { stdio: ["ignore", "pipe", "pipe"] });
  open.add({ close: () => child.kill("SIGKILL") });
  let err = "";
  child.stderr.on("data", (d) => { err += d; });
  child.stdout.resume();
  await until(8000, () => /down: 2 health checks failed/.test(err), `the down line (${err})`);
  assert.is(err.match(/down: 2 health checks failed/g).length, 1, "logged once");
  child.kill("SIGTERM");
  assert.is(await within(15_000, new Promise((r) => child.once("exit", r)), "exit"), 0, err);
  server.close();
});

test("CLI: bad health values exit 2 with one line", async () => {
  const cases = [
    [["--health-check", "udp"], /--health-check: health check must be tcp or http:\/path/],
    [["--health-check", "http:health"], /must start with \//],
    [["--health-check", "http:/a b"], /must start with \//],
    [["--health-check", "tcp", "--health-interval", "0"], /--health-interval must be at least 1/],
    [["--health-check", "tcp", "--health-timeout", "x"], /--health-timeout must be a whole number/],
    [["--health-check", "tcp", "--health-rise", "0"], /--health-rise must be at least 1/],
    [["--health-check", "tcp", "--health-fall", "-1"], /--health-fall needs a value|must be a whole number/],
    [["--health-interval", "100"], /--health-interval needs --health-check/],
    [["--max-fails", "many"], /--max-fails must be a whole number/],
    [["--fail-timeout", "0"], /--fail-timeout must be at least 1/],
    [["--slow-start", "1.5"], /--slow-start must be a whole number/],
    [["--health-check", "tcp", "--health-port", "70000"], /--health-port must be 0..65535/],
    [["--health-port", "9100"], /--health-port needs --health-check/],
  ];
  // in parallel: each is a process start
  const results = await Promise.all(cases.map(([args]) => runCli(["proxy", "--upstream", "127.0.0.1:1", ...args])));
  for (const [k, [args, says]] of cases.entries()) {
    const r = results[k];
    assert.is(r.code, 2, `${args.join(" ")} -> exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, says);
    assert.is(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  const help = await runCli(["proxy", "--help"]);
  for (const flag of ["--health-check", "--health-interval", "--health-timeout", "--health-rise", "--health-fall", "--health-port", "--max-fails", "--fail-timeout", "--slow-start"]) {
    assert.ok(help.stdout.includes(flag), flag);
  }
  assert.throws(() => new Proxy({ port: 0, upstreams: [{ host: "127.0.0.1", port: 1 }], health: { check: "ping" } }), /health check must be tcp or http/);
  assert.throws(() => new Proxy({ port: 0, upstreams: [{ host: "127.0.0.1", port: 1 }], health: { checkIntervalMs: 0 } }), /checkIntervalMs must be/);
  assert.throws(() => new Proxy({ port: 0, upstreams: [{ host: "127.0.0.1", port: 1 }], health: { interval: 5 } }), /health.interval: unknown/);
});

test.run();
