// `wasm-reactor serve` as a user runs it: the access log, startup errors
// (exit 1, one clear line) and bad flags (exit 2), and a clean stop.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer } from "node:net";
import { exchange, fetchOne, get, sleep, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, spawnServer, runCli } from "./lib/http-server.mjs";

const root = makeRoot({ "a.txt": "logged\n", "sub/index.html": "sub\n" });
const servers = [];

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

test("bad flags exit 2 with the reason and the usage", async () => {
  const cases = [
    [["serve", "--port", "70000"], /--port must be 0\.\.65535/],
    [["serve", "--port", "abc"], /--port must be a whole number/],
    [["serve", "--mode", "xx"], /--mode must be lt or et/],
    [["serve", "--no-such-flag"], /unknown flag --no-such-flag/],
    [["serve", "--root"], /--root needs a value/],
    [["serve", "--access-log=yes"], /--access-log takes no value/],
    [["serve", "--access-log-format", "xml"], /--access-log-format must be combined or json/],
    [["serve", "--cache-control", "a\r\nSet-Cookie: x=1"], /--cache-control .* must be printable ASCII/],
    [["serve", "--cache-control", ""], /--cache-control "" is empty/],
    [["serve", "--cache-control", "x".repeat(300)], /--cache-control .* is longer than 256 bytes/],
    [["frobnicate"], /unknown command 'frobnicate'/],
  ];
  for (const [args, why] of cases) {
    const r = await runCli(args);
    assert.is(r.code, 2, args.join(" "));
    assert.match(r.stderr, why, args.join(" "));
    assert.match(r.stderr, /usage: wasm-reactor/, `${args.join(" ")}: usage`);
    assert.is(r.stdout, "", `${args.join(" ")}: no listening line`);
  }
});

test("serve --help exits 0 and lists the timeouts and the access log", async () => {
  const r = await runCli(["serve", "--help"]);
  assert.is(r.code, 0);
  for (const flag of ["--root", "--port", "--mode", "--idle-timeout", "--header-timeout", "--access-log",
    "--access-log-format", "--cache-control", "--cors", "--precompressed"]) {
    assert.ok(r.stdout.includes(flag), flag);
  }
});

test.after(async () => {
  closeAllConns();
  await Promise.all(servers.map((s) => s.stop()));
  removeRoot(root);
});

test.run();
