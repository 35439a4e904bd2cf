// --metrics: /metrics (Prometheus text, rendered by the core), /healthz and
// /readyz on a listener of their own, live on 127.0.0.1. A known workload is
// driven with raw sockets whose bytes the test counts itself; the scrape is
// parsed with parse-prometheus-text-format and checked against that count
// and against the format's rules. Every server and child is stopped here.
import { test } from "uvu";
import * as assert from "uvu/assert";
import net from "node:net";
import http from "node:http";
import { spawn } from "node:child_process";
import parsePrometheus from "parse-prometheus-text-format";
import { makeRoot, removeRoot, cli, stopChild, runCli } from "./lib/http-server.mjs";

const { Server, Proxy } = await import("../dist/index.js");

const root = makeRoot({ "a.txt": "hello metrics\n" });
const open = new Set();
test.after(() => {
  for (const o of open) { try { o.close?.(); o.kill?.("SIGKILL"); } catch { /* gone */ } }
  removeRoot(root);
});

/** Sends `req` on a fresh connection, reads until the peer closes or `until(buf)`; -> { sent, got, conn }. */
function exchange(port, req, until = null, ms = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer on :${port} within ${ms} ms (got ${got})`)); }, ms);
    const done = () => { clearTimeout(timer); resolve({ sent: Buffer.byteLength(req), got, conn: s }); };
    s.on("connect", () => s.write(req));
    s.on("data", (d) => { got = Buffer.concat([got, d]); if (until && until(got)) done(); });
    s.on("end", () => { s.end(); done(); });
    s.on("error", (e) => { clearTimeout(timer); reject(e); });
  });
}

/** One whole HTTP/1.1 response (Content-Length framed) is in buf. */
const whole = (buf) => {
  const i = buf.indexOf("\r\n\r\n");
  if (i < 0) return false;
  const m = /content-length: (\d+)/i.exec(buf.subarray(0, i).toString());
  return buf.length >= i + 4 + Number(m ? m[1] : 0);
};

/** GET path of the metrics port: { status, headers, body } (Connection: close). */
async function scrape(port, path = "/metrics", method = "GET") {
  const { got } = await exchange(port, `${method} ${path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n`);
  const text = got.toString();
  const i = text.indexOf("\r\n\r\n");
  return { status: Number(text.slice(9, 12)), head: text.slice(0, i), body: text.slice(i + 4) };
}

/**
 * Checks the exposition's rules on the raw text and returns the parsed
 * families by name. Rules: names ^[a-zA-Z_:][a-zA-Z0-9_:]*$ starting with
 * wasm_reactor_; one HELP and TYPE per family, TYPE before its samples;
 * counters end in _total; histograms cumulative, ending in +Inf == _count.
 */
function checkExposition(text) {
  const typed = new Map();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const t = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (t) { assert.not.ok(typed.has(t[1]), `one TYPE for ${t[1]}`); typed.set(t[1], t[2]); continue; }
    if (line.startsWith("# HELP ")) continue;
    const name = /^([^{ ]+)/.exec(line)[1];
    assert.match(name, /^[a-zA-Z_:][a-zA-Z0-9_:]*$/, `name ${name}`);
    const family = typed.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    assert.ok(typed.has(family), `TYPE before the samples of ${name}`);
    assert.match(line, /^\S+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?\d+(\.\d+)?$/, `sample line: ${line}`);
  }
  const parsed = parsePrometheus(text);
  const byName = new Map(parsed.map((f) => [f.name, f]));
  for (const f of parsed) {
    assert.ok(f.name.startsWith("wasm_reactor_"), f.name);
    assert.is(f.type, typed.get(f.name).toUpperCase());
    if (f.type === "COUNTER") assert.ok(f.name.endsWith("_total"), `counter ${f.name} ends in _total`);
    if (f.type === "HISTOGRAM") {
      for (const m of f.metrics) {
        // (object keys: integer-like ones come first; order by the bound)
        const les = Object.keys(m.buckets).sort((x, y) => (x === "+Inf" ? Infinity : Number(x)) - (y === "+Inf" ? Infinity : Number(y)));
        assert.is(les[les.length - 1], "+Inf", `${f.name}: last bucket +Inf`);
        let prev = -1;
        for (const le of les) { assert.ok(Number(m.buckets[le]) >= prev, `${f.name} cumulative at le=${le}`); prev = Number(m.buckets[le]); }
        // (the parser drops _sum/_count of histograms with labels besides le: checked on the text below)
        if (m.count !== undefined) assert.is(m.buckets["+Inf"], m.count, `${f.name}: +Inf == _count`);
      }
    }
  }
  // Every histogram series (labels without le): its +Inf bucket == its _count, on the raw text.
  const inf = new Map(), count = new Map();
  for (const line of text.split("\n")) {
    const b = /^(\w+)_bucket\{(.*?),?le="\+Inf"\} (\d+)$/.exec(line);
    if (b) inf.set(`${b[1]}{${b[2]}}`, b[3]);
    const c = /^(\w+)_count(?:\{(.*)\})? (\d+)$/.exec(line);
    if (c && typed.get(c[1]) === "histogram") count.set(`${c[1]}{${c[2] ?? ""}}`, c[3]);
  }
  assert.ok(inf.size > 0);
  assert.equal([...inf.keys()].sort(), [...count.keys()].sort(), "each histogram series has +Inf and _count");
  for (const [k, v] of inf) assert.is(count.get(k), v, `${k}: +Inf == _count`);
  byName.raw = count;
  return byName;
}

/** The value of a family's sample whose labels include `labels` (0 if there is none such). */
function value(families, name, labels = {}) {
  const f = families.get(name);
  assert.ok(f, `family ${name} present`);
  const m = f.metrics.find((s) => Object.entries(labels).every(([k, v]) => (s.labels ?? {})[k] === v));
  return m ? Number(m.value ?? m.count) : 0;
}

test("serve (library): a known workload, scraped and parsed: requests, statuses, closes by reason, bytes, histograms", async () => {
  const server = new Server({ protocol: "http", root, port: 0, handleSignals: false, metrics: "127.0.0.1:0", idleTimeoutMs: 150 });
  open.add(server);
  server.attach();
  assert.ok(server.metricsPort > 0 && server.metricsPort !== server.port);
  let inBytes = 0, outBytes = 0;
  const statuses = [];
  for (const path of ["/a.txt", "/a.txt", "/nope", "/a.txt", "/nope"]) {
    const r = await exchange(server.port, `GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`, whole);
    r.conn.end(); // the client closes: reason "client"
    inBytes += r.sent; outBytes += r.got.length;
    statuses.push(Number(r.got.toString().slice(9, 12)));
  }
  assert.equal(statuses, [200, 200, 404, 200, 404]);
  // One connection that says nothing: closed by the server at its idle timeout.
  const idle = await exchange(server.port, "");
  assert.is(idle.got.length, 0);
  // Wait until the five client closes are seen (they are asynchronous to us).
  for (let i = 0; i < 100 && server.stats().liveConnections > 0; i++) await new Promise((r) => setTimeout(r, 20));
  const res = await scrape(server.metricsPort);
  assert.is(res.status, 200);
  assert.match(res.head, /\r\nContent-Type: text\/plain; version=0\.0\.4; charset=utf-8\r\n/i);
  const m = checkExposition(res.body);
  assert.is(value(m, "wasm_reactor_requests_total", { method: "GET" }), 5);
  assert.is(value(m, "wasm_reactor_requests_total", { method: "POST" }), 0);
  assert.is(value(m, "wasm_reactor_responses_total", { code: "2xx" }), 3);
  assert.is(value(m, "wasm_reactor_responses_total", { code: "4xx" }), 2);
  assert.is(value(m, "wasm_reactor_connections_accepted_total"), 6, "the scrape's own connection is not counted");
  assert.is(value(m, "wasm_reactor_connections_open"), 0);
  assert.is(value(m, "wasm_reactor_connections_closed_total", { reason: "client" }), 5);
  assert.is(value(m, "wasm_reactor_connections_closed_total", { reason: "idle_timeout" }), 1);
  assert.is(value(m, "wasm_reactor_connections_closed_total", { reason: "error" }), 0);
  assert.is(value(m, "wasm_reactor_received_bytes_total"), inBytes);
  assert.is(value(m, "wasm_reactor_sent_bytes_total"), outBytes);
  const fc = value(m, "wasm_reactor_file_cache_hits_total") + value(m, "wasm_reactor_file_cache_misses_total");
  assert.is(fc, 5, "one file-cache lookup per request");
  assert.ok(value(m, "wasm_reactor_file_cache_misses_total") >= 2, "a.txt and /nope were opened once at least");
  assert.is(m.get("wasm_reactor_request_duration_seconds").metrics[0].count, "5");
  assert.ok(Number(m.get("wasm_reactor_events_per_tick").metrics[0].count) > 0);
  assert.ok(Number(m.get("wasm_reactor_loop_lag_seconds").metrics[0].count) >= 1, "the idle timer fired");
  assert.is(value(m, "wasm_reactor_workers"), 1);
  assert.is(value(m, "wasm_reactor_ready"), 1);
  // Keep-alive on the metrics listener, and HEAD: headers only.
  const both = "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
  const two = (await exchange(server.metricsPort, both)).got.toString();
  assert.is(two.split("HTTP/1.1 200 OK").length - 1, 2);
  assert.match(two, /wasm_reactor_metrics_scrapes_total 2\n/);
  assert.ok(two.endsWith("\r\n\r\n"), "HEAD: no body");
  assert.is((await scrape(server.metricsPort, "/healthz")).status, 200);
  assert.is((await scrape(server.metricsPort, "/readyz")).status, 200);
  assert.is((await scrape(server.metricsPort, "/other")).status, 404);
  const post = await scrape(server.metricsPort, "/metrics", "POST");
  assert.is(post.status, 405);
  assert.match(post.head, /\r\nAllow: GET, HEAD/);
  // Graceful shutdown with a delay: /readyz 503 at once, the service still serves meanwhile.
  const done = server.shutdown(2000, { delayMs: 300 });
  assert.is((await scrape(server.metricsPort, "/readyz")).status, 503);
  assert.is((await scrape(server.metricsPort, "/healthz")).status, 200);
  const during = await exchange(server.port, "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  assert.is(during.got.toString().slice(9, 12), "200", "still accepting during the delay");
  await done;
  server.close();
  open.delete(server);
});

test("echo (library): bytes in and out as the client counts them", async () => {
  const server = new Server({ protocol: "echo", port: 0, handleSignals: false, metrics: "127.0.0.1:0" });
  open.add(server);
  server.attach();
  const payload = "x".repeat(1000);
  const r = await exchange(server.port, payload, (b) => b.length >= 1000);
  r.conn.end();
  for (let i = 0; i < 100 && server.stats().liveConnections > 0; i++) await new Promise((res) => setTimeout(res, 20));
  const m = checkExposition((await scrape(server.metricsPort)).body);
  assert.is(value(m, "wasm_reactor_received_bytes_total"), 1000);
  assert.is(value(m, "wasm_reactor_sent_bytes_total"), 1000);
  assert.is(value(m, "wasm_reactor_connections_closed_total", { reason: "client" }), 1);
  assert.is(value(m, "wasm_reactor_requests_total", { method: "GET" }), 0);
  server.close();
  open.delete(server);
});

test("proxy (library): per-upstream series labelled upstream=\"host:port\"", async () => {
  const up = http.createServer((req, res) => res.end("from upstream"));
  open.add(up);
  await new Promise((r) => up.listen(0, "127.0.0.1", r));
  const upPort = up.address().port;
  const proxy = new Proxy({ upstreams: [{ host: "127.0.0.1", port: upPort }], port: 0, handleSignals: false, metrics: "127.0.0.1:0" });
  open.add(proxy);
  proxy.attach();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 4; i++) {
    const body = await new Promise((resolve, reject) => {
      http.get({ port: proxy.port, host: "127.0.0.1", path: `/r${i}`, agent }, (res) => {
        let b = ""; res.on("data", (d) => { b += d; }); res.on("end", () => resolve(b));
      }).on("error", reject);
    });
    assert.is(body, "from upstream");
  }
  agent.destroy();
  const m = checkExposition((await scrape(proxy.metricsPort)).body);
  const u = { upstream: `127.0.0.1:${upPort}` };
  assert.is(value(m, "wasm_reactor_upstream_requests_total", { ...u, code: "2xx" }), 4);
  assert.is(value(m, "wasm_reactor_upstream_state", { ...u, state: "up" }), 1);
  assert.is(value(m, "wasm_reactor_upstream_reused_requests_total", u) + value(m, "wasm_reactor_upstream_new_connection_requests_total", u), 4);
  assert.is(m.raw.get(`wasm_reactor_upstream_latency_seconds{upstream="${u.upstream}"}`), "4");
  assert.is(value(m, "wasm_reactor_requests_total", { method: "GET" }), 4);
  assert.is(value(m, "wasm_reactor_proxy_error_responses_total", { code: "502" }), 0);
  proxy.close();
  open.delete(proxy);
  up.close();
  open.delete(up);
});

/** `wasm-reactor serve ...` until it prints both lines: { child, port, metricsPort, out() }. */
function spawnWithMetrics(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    open.add(child);
    let out = "", err = "";
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`no listening lines: ${out} ${err}`)); }, 15000);
    child.stdout.on("data", (d) => {
      out += d;
      const a = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out), b = /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(out);
      if (a && b) { clearTimeout(timer); resolve({ child, port: Number(a[1]), metricsPort: Number(b[1]), out: () => out, err: () => err }); }
    });
    child.stderr.on("data", (d) => { err += d; });
  });
}

test("serve --workers 2 --metrics: one scrape sums both workers; SIGTERM with --shutdown-delay: /readyz 503, /healthz 200, then exit 0", async () => {
  const s = await spawnWithMetrics(["serve", "--root", root, "--port", "0", "--workers", "2", "--metrics", "127.0.0.1:0", "--shutdown-delay", "600"]);
  let outBytes = 0;
  const N = 12;
  // Separate connections: SO_REUSEPORT spreads them over the two workers.
  await Promise.all(Array.from({ length: N }, async () => {
    const r = await exchange(s.port, "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    outBytes += r.got.length;
  }));
  // Each worker publishes at the end of its tick; the closes are the last thing it did.
  let m;
  for (let i = 0; i < 50; i++) {
    m = checkExposition((await scrape(s.metricsPort)).body);
    if (value(m, "wasm_reactor_connections_closed_total", { reason: "server" }) === N) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.is(value(m, "wasm_reactor_workers"), 2);
  assert.is(value(m, "wasm_reactor_requests_total", { method: "GET" }), N);
  assert.is(value(m, "wasm_reactor_responses_total", { code: "2xx" }), N);
  assert.is(value(m, "wasm_reactor_connections_accepted_total"), N);
  assert.is(value(m, "wasm_reactor_connections_closed_total", { reason: "server" }), N, "Connection: close: the server closes");
  assert.is(value(m, "wasm_reactor_sent_bytes_total"), outBytes);
  assert.is(m.get("wasm_reactor_request_duration_seconds").metrics[0].count, String(N));
  const exited = new Promise((r) => s.child.once("exit", (code) => r(code)));
  s.child.kill("SIGTERM");
  // The main thread forwards the signal to the worker: wait for it to show.
  let ready;
  for (let i = 0; i < 50 && (ready = await scrape(s.metricsPort, "/readyz")).status === 200; i++) await new Promise((r) => setTimeout(r, 10));
  assert.is(ready.status, 503);
  assert.is((await scrape(s.metricsPort, "/healthz")).status, 200);
  const during = await exchange(s.port, "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  assert.is(during.got.toString().slice(9, 12), "200", "the service keeps accepting during --shutdown-delay");
  assert.is(await exited, 0);
  open.delete(s.child);
});

test("serve --tick-requests: a pipelined burst waits a turn per budget (counted in wasm_reactor_fairness_deferrals_total), every request answered; 0 is no limit", async () => {
  const N = 40;
  // N pipelined requests in one write, the last one also asking to close. The same file each time: after the
  // first, open-file cache hits, answered within the turn (a request that waits for an open ends its turn anyway).
  const burst = Array.from({ length: N }, (_, i) => `GET /a.txt HTTP/1.1\r\nHost: t\r\n${i === N - 1 ? "Connection: close\r\n" : ""}\r\n`).join("");
  const deferrals = {};
  for (const tick of ["4", "0"]) {
    const s = await spawnWithMetrics(["serve", "--root", root, "--port", "0", "--metrics", "127.0.0.1:0", "--tick-requests", tick]);
    const r = await exchange(s.port, burst);
    const statuses = [...r.got.toString().matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => m[1]);
    assert.equal(statuses, Array(N).fill("200"), `--tick-requests ${tick}: all ${N} answered`);
    deferrals[tick] = value(checkExposition((await scrape(s.metricsPort)).body), "wasm_reactor_fairness_deferrals_total");
    s.child.kill("SIGKILL");
    open.delete(s.child);
  }
  // One write of N requests is (on loopback) one read: 4 per turn is ceil(40 / 4) = 10 turns, 9 deferrals;
  // fewer only if the burst came in pieces. With no limit nothing waits.
  assert.ok(deferrals["4"] >= 5 && deferrals["4"] <= N / 4, `--tick-requests 4: ${deferrals["4"]} deferrals`);
  assert.is(deferrals["0"], 0, "--tick-requests 0: no limit");
  const bad = await runCli(["serve", "--root", root, "--tick-bytes", "-1"]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /^wasm-reactor serve: --tick-bytes .*\n$/);
});

test("--metrics needs HOST:PORT: a bad value is one line and exit 2", async () => {
  const r = await runCli(["serve", "--root", root, "--metrics", "9100"]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^wasm-reactor serve: --metrics: metrics address must be HOST:PORT .*\n$/);
  const d = await runCli(["echo", "--shutdown-delay", "soon"]);
  assert.is(d.code, 2);
});

test.run();
