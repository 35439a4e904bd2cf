// The server's streams through ParallelWriter, live: --access-log-file with
// --workers 2 (one file every worker writes: every request's line, once) and
// --record with --workers 2 (one recording per worker, each replays).
// Expectations come from the requests this test sent.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HttpConn, get, sleep } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, spawnServer, runCli } from "./lib/http-server.mjs";

const root = makeRoot({ "f.txt": "hello\n" });
const dir = mkdtempSync(join(tmpdir(), "wr-writer-live-"));
const servers = [];
test.after(async () => {
  for (const s of servers) await s.stop();
  removeRoot(root);
  rmSync(dir, { recursive: true, force: true });
});

/** `n` requests, each on its own connection (SO_REUSEPORT spreads connections over the workers). */
async function requests(port, n, tag) {
  for (let i = 0; i < n; i++) {
    const conn = await HttpConn.open(port);
    await conn.write(get(`/f.txt?${tag}=${i}`));
    const res = await conn.response();
    conn.close();
    assert.is(res.status, 200);
  }
}

const lines = (path) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").slice(0, -1) : []);

test("--access-log-file with --workers 2: every request's line once, appended to what the file held, nothing on stdout", async () => {
  const log = join(dir, "access.log");
  writeFileSync(log, "a line from before\n");
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--workers", "2", "--access-log-file", log]);
  servers.push(s);
  const N = 40;
  await requests(s.port, N, "n");
  // An idle server writes its buffered lines before it sleeps: no need to stop it to see them.
  const deadline = Date.now() + 10_000;
  while (lines(log).length < N + 1 && Date.now() < deadline) await sleep(25);
  assert.is(lines(log).length, N + 1, `every line while the server runs:\n${lines(log).join("\n")}`);
  assert.is(await s.stop(), 0);
  const all = lines(log);
  assert.is(all[0], "a line from before");
  const seen = all.slice(1).map((l) => {
    const m = /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/f\.txt\?n=(\d+) HTTP\/1\.1" 200 6 "-" "-"$/.exec(l);
    assert.ok(m, `a whole combined line: ${JSON.stringify(l)}`);
    return Number(m[1]);
  }).sort((a, b) => a - b);
  assert.equal(seen, Array.from({ length: N }, (_, i) => i), "each request once");
  assert.not.match(s.stdout(), /GET \/f\.txt/, "stdout has no access lines");
});

test("--access-log-file with --access-log-format json", async () => {
  const log = join(dir, "access.json");
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--access-log-file", log, "--access-log-format", "json"]);
  servers.push(s);
  await requests(s.port, 3, "j");
  assert.is(await s.stop(), 0);
  assert.equal(lines(log).map((l) => JSON.parse(l).target), ["/f.txt?j=0", "/f.txt?j=1", "/f.txt?j=2"]);
});

test("--access-log-flush holds lines while the server is idle; stopping writes them", async () => {
  const log = join(dir, "held.log");
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--workers", "2", "--access-log-file", log, "--access-log-flush", "600000"]);
  servers.push(s);
  await requests(s.port, 5, "h");
  await sleep(200);
  assert.equal(lines(log), [], "held: nothing written yet (a buffer is 1 MiB, the hold ten minutes)");
  assert.is(await s.stop(), 0);
  assert.is(lines(log).length, 5, "every line at the stop");
});

test("--access-log-flush without --access-log-file is a bad command line", async () => {
  const r = await runCli(["serve", "--root", root, "--access-log-flush", "100"]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^wasm-reactor serve: --access-log-flush needs --access-log-file/);
});

test("--access-log-file that cannot be opened: one line naming it, exit 1", async () => {
  const r = await runCli(["serve", "--root", root, "--port", "0", "--access-log-file", join(dir, "no/such/dir/a.log")]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^wasm-reactor serve: --access-log-file: open \S+no\/such\/dir\/a\.log: ENOENT \(No such file or directory\)\n$/);
});

test("--record with --workers 2: FILE.0 and FILE.1, each a recording that replays", async () => {
  const rec = join(dir, "w2.rec");
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--workers", "2", "--record", rec]);
  servers.push(s);
  await requests(s.port, 20, "r");
  assert.is(await s.stop(), 0);
  assert.ok(!existsSync(rec), "no unsuffixed file with several workers");
  for (const shard of [`${rec}.0`, `${rec}.1`]) {
    assert.ok(existsSync(shard), shard);
    assert.is(readFileSync(shard).subarray(0, 8).toString("latin1"), "WRREPLAY");
    const r = await runCli(["replay", shard], { timeoutMs: 30_000 });
    assert.is(r.code, 0, `${shard} replays: ${r.stdout}${r.stderr}`);
  }
});

test("--record with one worker still records into FILE itself", async () => {
  const rec = join(dir, "w1.rec");
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--record", rec]);
  servers.push(s);
  await requests(s.port, 3, "one");
  assert.is(await s.stop(), 0);
  assert.ok(!existsSync(`${rec}.0`));
  const r = await runCli(["replay", rec], { timeoutMs: 30_000 });
  assert.is(r.code, 0, r.stdout + r.stderr);
});

test.run();
