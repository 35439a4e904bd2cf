// `wasm-reactor serve` as a user runs it: the access log, startup errors
// (exit 1, one clear line), bad flags (exit 2, one line), the help, the
// default root, host names and dual-stack listening, and a clean stop.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer } from "node:net";
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { exchange, fetchOne, get, sleep, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, spawnServer, runCli, startInProcess } from "./lib/http-server.mjs";

const root = makeRoot({ "a.txt": "logged\n", "sub/index.html": "sub\n" });
const servers = [];
// The IPv6 loopback on this machine (the dual-stack and ::1 checks need it).
const HAVE_IPV6 = Object.values(networkInterfaces()).some((l) => l.some((a) => a.address === "::1"));

test("serve prints its listening line and answers", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0"]);
  servers.push(s);
  assert.match(s.stdout(), /^wasm-reactor serve: listening on http:\/\/127\.0\.0\.1:\d+\/ \(mode et\b.*\bpid \d+\)/);
  assert.is((await fetchOne(s.port, "/a.txt")).body.toString(), "logged\n");
  assert.is(await s.stop(), 0, "SIGTERM: clean exit 0");
});

test("the request limits are flags: --max-headers, --max-request-line, --max-body; out-of-range values exit 2", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--max-headers", "3", "--max-request-line", "100", "--max-body", "10"]);
  servers.push(s);
  const h3 = await fetchOne(s.port, "/a.txt", { headers: ["A: 1", "B: 2"] }); // Host + 2 = 3 fields
  assert.is(h3.status, 200);
  const h4 = await fetchOne(s.port, "/a.txt", { headers: ["A: 1", "B: 2", "C: 3"] });
  assert.is(h4.status, 431);
  assert.is((await fetchOne(s.port, `/${"a".repeat(120)}`)).status, 414);
  const { responses: [big], conn } = await exchange(s.port, "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
  conn.close();
  assert.is(big.status, 413);
  await s.stop();
  for (const bad of [["--max-header-size", "99999"], ["--max-request-line", "10"], ["--max-headers", "0"]]) {
    const r = await runCli(["serve", "--root", root, ...bad]);
    assert.is(r.code, 2, `${bad.join(" ")}: ${r.stderr}`);
  }
});

// Access lines go to stdout, after the listening line (combined format by default).
const accessLines = (s) => s.stdout().split("\n").filter((l) => l && !l.startsWith("wasm-reactor "));

test("--access-log: one combined-format line per response on stdout, with the request line, status and body bytes", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--access-log"]);
  servers.push(s);
  const ok = await fetchOne(s.port, "/a.txt?x=1");
  const missing = await fetchOne(s.port, "/missing");
  assert.is(ok.status, 200);
  assert.is(missing.status, 404);
  const deadline = Date.now() + 5000;
  while (accessLines(s).length < 2 && Date.now() < deadline) await sleep(50);
  const [l1, l2] = accessLines(s);
  const stamp = String.raw`\[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\]`;
  assert.match(l1 ?? "", new RegExp(String.raw`^127\.0\.0\.1 - - ${stamp} "GET \/a\.txt\?x=1 HTTP\/1\.1" 200 \d+ "-" "-"$`), `first line: ${l1}`);
  assert.match(l2 ?? "", new RegExp(String.raw`^127\.0\.0\.1 - - ${stamp} "GET \/missing HTTP\/1\.1" 404 \d+ "-" "-"$`), `second line: ${l2}`);
  // $body_bytes_sent: the body only, as the client received it.
  assert.is(Number(/ (\d+) "-" "-"$/.exec(l1)[1]), ok.body.length, "body bytes of the 200");
  assert.is(Number(/ (\d+) "-" "-"$/.exec(l2)[1]), missing.body.length, "body bytes of the 404");
  assert.not.match(s.stderr(), /access/, "nothing on stderr");
  await s.stop();
});

test("--access-log on one keep-alive connection: each line counts its own response's bytes", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--access-log"]);
  servers.push(s);
  const paths = ["/a.txt", "/missing", "/a.txt?r", "/sub", "/a.txt"];
  const reqs = paths.map((p, i) => get(p, { headers: i === 2 ? ["Range: bytes=100-"] : [] })).join("");
  const { responses, conn } = await exchange(s.port, reqs, { methods: paths.map(() => "GET") });
  conn.close();
  const deadline = Date.now() + 5000;
  while (accessLines(s).length < paths.length && Date.now() < deadline) await sleep(50);
  const logged = accessLines(s).map((l) => /" (\d{3}) (\d+) "/.exec(l).slice(1).map(Number));
  const sent = responses.map((r) => [r.status, r.body.length]);
  assert.equal(logged, sent, "[status, body bytes] per line");
  assert.equal(sent.map(([st]) => st), [200, 404, 416, 301, 200]);
  await s.stop();
});

test("without --access-log nothing is logged per request", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0"]);
  servers.push(s);
  await fetchOne(s.port, "/a.txt");
  await sleep(200);
  assert.equal(accessLines(s), [], "stdout: the listening line only");
  assert.not.match(s.stderr(), /GET/);
  await s.stop();
});

test("serve --root /nonexistent exits 1 with one clear line", async () => {
  const r = await runCli(["serve", "--root", "/nonexistent-wr-root", "--port", "0"]);
  assert.is(r.code, 1);
  const lines = r.stderr.trim().split("\n");
  assert.is(lines.length, 1, `one line: ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0], /nonexistent-wr-root/);
  assert.match(lines[0], /does not exist/);
  assert.is(r.stdout, "", "no listening line");
});

test("serve --root pointing at a file exits 1 with one clear line", async () => {
  const r = await runCli(["serve", "--root", `${root}/a.txt`, "--port", "0"]);
  assert.is(r.code, 1);
  assert.is(r.stderr.trim().split("\n").length, 1);
  assert.match(r.stderr, /not a directory/);
});

test("a port in use: exit 1 naming EADDRINUSE", async () => {
  const blocker = createServer();
  await new Promise((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const port = blocker.address().port;
  try {
    const r = await runCli(["serve", "--root", root, "--port", String(port)]);
    assert.is(r.code, 1);
    assert.match(r.stderr, /EADDRINUSE/);
    assert.is(r.stderr.trim().split("\n").length, 1, `one line: ${JSON.stringify(r.stderr)}`);
  } finally {
    blocker.close();
  }
});

test("bad flags exit 2 with one line naming the problem and where the help is", async () => {
  const serveHelp = "(see 'wasm-reactor serve --help')";
  const cases = [
    [["serve", "--port", "70000"], "wasm-reactor serve: --port must be 0..65535, got 70000", serveHelp],
    [["serve", "--port", "abc"], "wasm-reactor serve: --port must be a whole number, got 'abc'", serveHelp],
    [["serve", "--mode", "xx"], "wasm-reactor serve: --mode must be lt or et, got 'xx'", serveHelp],
    [["serve", "--prot", "80"], "wasm-reactor serve: unknown flag --prot", serveHelp],
    [["serve", "--root"], "wasm-reactor serve: --root needs a value", serveHelp],
    [["serve", "--root", "--port", "0"], "wasm-reactor serve: --root needs a value", serveHelp],
    [["serve", "--access-log=yes"], "wasm-reactor serve: --access-log takes no value", serveHelp],
    [["serve", "public"], "wasm-reactor serve: unexpected argument 'public'", serveHelp],
    [["replay"], "wasm-reactor replay: missing FILE", "(see 'wasm-reactor replay --help')"],
    [["frobnicate"], "wasm-reactor: unknown command 'frobnicate'", "(see 'wasm-reactor --help')"],
    [["serve", "--access-log-format", "xml"], "wasm-reactor serve: --access-log-format must be combined or json, got 'xml'", serveHelp],
    [["serve", "--cache-control", "a\r\nSet-Cookie: x=1"], "wasm-reactor serve: --cache-control \"a\\r\\nSet-Cookie: x=1\" must be printable ASCII (no control characters, CR or LF)", serveHelp],
    [["serve", "--cache-control", ""], "wasm-reactor serve: --cache-control needs a value", serveHelp],
    [["serve", "--cache-control", "x".repeat(300)], `wasm-reactor serve: --cache-control "${"x".repeat(300)}" is longer than 256 bytes`, serveHelp],
  ];
  for (const [args, why, pointer] of cases) {
    const r = await runCli(args);
    const what = args.join(" ");
    assert.is(r.code, 2, what);
    assert.is(r.stderr, `${why} ${pointer}\n`, `${what}: one line`);
    assert.is(r.stdout, "", `${what}: nothing on stdout`);
  }
});

test("no command: the usage on stderr, exit 2", async () => {
  const r = await runCli([]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^usage: wasm-reactor <command>/);
  for (const cmd of ["serve", "echo", "replay"]) assert.match(r.stderr, new RegExp(`^  ${cmd} `, "m"), cmd);
  assert.is(r.stdout, "");
});

test("--help and -h print the help on stdout and exit 0, also after a bad flag; `help serve` too", async () => {
  for (const args of [["--help"], ["-h"], ["help"]]) {
    const r = await runCli(args);
    assert.is(r.code, 0, args.join(" "));
    assert.match(r.stdout, /^usage: wasm-reactor <command>/, args.join(" "));
    assert.is(r.stderr, "", args.join(" "));
  }
  for (const args of [["serve", "--help"], ["serve", "-h"], ["serve", "--prot", "--help"], ["help", "serve"]]) {
    const r = await runCli(args);
    assert.is(r.code, 0, args.join(" "));
    assert.match(r.stdout, /^usage: wasm-reactor serve \[flags\]/, args.join(" "));
    assert.is(r.stderr, "", args.join(" "));
  }
});

test("serve --help: the flags with their defaults, the default root, what --host takes", async () => {
  const r = await runCli(["serve", "--help"]);
  assert.is(r.code, 0);
  for (const flag of ["--root", "--port", "--host", "--mode", "--idle-timeout", "--header-timeout", "--access-log", "--listing",
    "--access-log-format", "--cache-control", "--cors", "--precompressed"]) {
    assert.ok(r.stdout.includes(flag), flag);
  }
  const help = r.stdout.replace(/\n +/g, " "); // continuation lines joined
  assert.match(help, /--root DIR +directory to serve \[default: the current directory\]/);
  assert.match(help, /--port N .*\[default: 8080\]/);
  assert.match(help, /--mode lt\|et .*\[default: et\]/);
  assert.match(help, /--host HOST .*name.*localhost.*:: .*dual-stack.*0\.0\.0\.0 .*\[default: 127\.0\.0\.1\]/);
  assert.ok(r.stdout.split("\n").every((l) => l.length <= 100), "lines fit 100 columns");
});

// ---- default root, host names, dual-stack ---------------------------------------

test("serve without --root serves the current directory", async () => {
  const s = await spawnServer(["serve", "--port", "0"], { cwd: root });
  servers.push(s);
  const res = await fetchOne(s.port, "/a.txt");
  assert.is(res.status, 200);
  assert.is(res.body.toString(), "logged\n");
  assert.is(await s.stop(), 0);
});

test("npm start still serves public/ (package.json passes --root public)", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.match(pkg.scripts.start, /wasm-reactor\.js serve --root public\b/);
});

const url = (address, port) => `http://${address.includes(":") ? `[${address}]` : address}:${port}/`;
const resolved = async (name) =>
  [...new Set((await lookup(name, { all: true })).sort((a, b) => a.family - b.family).map((a) => a.address))];

test("--host localhost listens on every address localhost resolves to, each named in the listening line", async () => {
  // The system resolver is the independent expectation: one URL per address, IPv4 first.
  const want = await resolved("localhost");
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--host", "localhost"]);
  servers.push(s);
  const line = `wasm-reactor serve: listening on ${want.map((a) => url(a, s.port)).join(", ")} (mode et`;
  assert.ok(s.stdout().startsWith(line), `${s.stdout()} starts with ${line}`);
  for (const address of want) {
    assert.is((await fetchOne(s.port, "/a.txt", { address })).body.toString(), "logged\n", address);
  }
  assert.is(await s.stop(), 0);
});

test("--host ::: one dual-stack socket, reached over IPv4 and IPv6; 0.0.0.0: IPv4 only", async () => {
  const dual = await spawnServer(["serve", "--root", root, "--port", "0", "--host", "::"]);
  servers.push(dual);
  assert.ok(dual.stdout().startsWith(`wasm-reactor serve: listening on http://[::]:${dual.port}/ (mode`), dual.stdout());
  assert.is((await fetchOne(dual.port, "/a.txt", { address: "127.0.0.1" })).status, 200, "IPv4 on ::");
  if (HAVE_IPV6) assert.is((await fetchOne(dual.port, "/a.txt", { address: "::1" })).status, 200, "IPv6 on ::");
  assert.is(await dual.stop(), 0);
  const v4 = await spawnServer(["serve", "--root", root, "--port", "0", "--host", "0.0.0.0"]);
  servers.push(v4);
  assert.ok(v4.stdout().startsWith(`wasm-reactor serve: listening on http://0.0.0.0:${v4.port}/ (mode`), v4.stdout());
  assert.is((await fetchOne(v4.port, "/a.txt", { address: "127.0.0.1" })).status, 200, "IPv4 on 0.0.0.0");
  if (HAVE_IPV6) {
    const err = await fetchOne(v4.port, "/a.txt", { address: "::1" }).then(() => null, (e) => e.code);
    assert.is(err, "ECONNREFUSED", "no IPv6 on 0.0.0.0");
  }
  assert.is(await v4.stop(), 0);
});

test("--workers 2 --host ::: every worker listens (SO_REUSEPORT) and both families are served", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--host", "::", "--workers", "2"]);
  servers.push(s);
  assert.match(s.stdout(), /\(mode et, 2 workers/);
  const addresses = HAVE_IPV6 ? ["127.0.0.1", "::1"] : ["127.0.0.1"];
  for (let i = 0; i < 20; i++) {
    const address = addresses[i % addresses.length];
    assert.is((await fetchOne(s.port, "/a.txt", { address })).body.toString(), "logged\n", `${address} #${i}`);
  }
  assert.is(await s.stop(), 0);
});

test("--host ::1 (also written [::1]) listens on the IPv6 loopback only", async () => {
  if (!HAVE_IPV6) return;
  for (const host of ["::1", "[::1]"]) {
    const s = await spawnServer(["serve", "--root", root, "--port", "0", "--host", host]);
    servers.push(s);
    assert.ok(s.stdout().startsWith(`wasm-reactor serve: listening on http://[::1]:${s.port}/ (`), s.stdout());
    assert.is((await fetchOne(s.port, "/a.txt", { address: "::1" })).status, 200, host);
    const err = await fetchOne(s.port, "/a.txt", { address: "127.0.0.1" }).then(() => null, (e) => e.code);
    assert.is(err, "ECONNREFUSED", `${host}: not on IPv4`);
    assert.is(await s.stop(), 0);
  }
});

test("a host name that does not resolve: exit 1, one line naming it", async () => {
  const r = await runCli(["serve", "--root", root, "--port", "0", "--host", "no-such-host.invalid"]);
  assert.is(r.code, 1);
  assert.is(r.stderr.trim().split("\n").length, 1, JSON.stringify(r.stderr));
  assert.match(r.stderr, /^wasm-reactor serve: host 'no-such-host\.invalid' does not resolve/);
  assert.is(r.stdout, "");
});

// ---- the library: Server takes addresses; names go through resolveHost ----------

test("new Server({ hosts }) listens on each address, on one port (port 0: the kernel's, shared)", async () => {
  const hosts = HAVE_IPV6 ? ["127.0.0.1", "::1"] : ["127.0.0.1", "127.0.0.2"];
  const s = await startInProcess(root, { host: undefined, hosts });
  try {
    assert.equal(s.server.listeners.map((l) => l.host), hosts);
    assert.ok(s.server.listeners.every((l) => l.port === s.port), "one port for all");
    for (const address of hosts) assert.is((await fetchOne(s.port, "/a.txt", { address })).status, 200, address);
  } finally {
    s.stop();
  }
});

test("new Server({ host: 'localhost' }) throws, saying to resolve first; resolveHost does", async () => {
  const { Server, resolveHost, HostError } = await import("../dist/index.js");
  assert.throws(() => new Server({ protocol: "http", root, host: "localhost", port: 0 }),
    (e) => e instanceof HostError && /'localhost' is not an IP address/.test(e.message) && /resolveHost\("localhost"\)/.test(e.message));
  assert.throws(() => new Server({ protocol: "http", root, host: "127.0.0.1", hosts: ["::1"], port: 0 }), /host or hosts, not both/);
  assert.equal(await resolveHost("127.0.0.1"), ["127.0.0.1"]);
  assert.equal(await resolveHost("[::1]"), ["::1"]);
  assert.equal(await resolveHost("localhost"), await resolved("localhost"));
  const err = await resolveHost("no-such-host.invalid").then(() => null, (e) => e);
  assert.ok(err instanceof HostError && /no-such-host\.invalid/.test(err.message), String(err));
});

test.after(async () => {
  closeAllConns();
  await Promise.all(servers.map((s) => s.stop()));
  removeRoot(root);
});

test.run();
