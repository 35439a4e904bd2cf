// The file pool (host/filepool.ts, `--file-threads N`, Server({ fileThreads })):
// the HTTP server's file work (opens beneath the root, stats, listings,
// small-body reads) runs on worker threads and completes in a later tick, so
// a slow file system does not stall other connections.
//
// A slow open is made with the pool's test hook WASM_REACTOR_FILEPOOL_DELAY
// ("substring:ms": the open of a path containing substring waits ms first, on
// its worker thread), standing in for an NFS/FUSE path or a cold disk. The
// expectations are the files' bytes as this test wrote them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { HttpConn, get, fetchOne, sleep, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, startInProcess, spawnServer } from "./lib/http-server.mjs";

const FILES = {
  "a.txt": "alpha\n",
  "b.txt": "bravo bravo\n",
  "slow-c.txt": "charlie, late\n",
  "dir/d.txt": "delta\n",
};
const root = makeRoot(FILES);
process.env.WASM_REACTOR_FILEPOOL_DELAY = "slow-:1500";
// Under io_uring the opens go to the ring, not the pool (listings stay on
// the pool): the ring's hold hook makes the same open as slow there.
process.env.WASM_REACTOR_IO_URING_OPEN_DELAY = "slow-:1500";

async function body(res) { return res.body.toString("latin1"); }

test("a slow open does not hold up other connections; its own answer comes when it is done", async () => {
  const srv = await startInProcess(root, { fileThreads: 2, listing: true });
  try {
    const warm = await fetchOne(srv.port, "/a.txt"); // the workers are up
    assert.is(warm.status, 200);
    const slow = await HttpConn.open(srv.port);
    await slow.write(get("/slow-c.txt"));
    const slowAnswer = slow.response();
    // Meanwhile, on other connections: files the cache has not seen, a
    // listing, a miss. Each is an open (or a listing) on the pool too.
    const b = await fetchOne(srv.port, "/b.txt");
    const d = await fetchOne(srv.port, "/dir/d.txt");
    const list = await fetchOne(srv.port, "/dir/");
    const miss = await fetchOne(srv.port, "/none.txt");
    assert.is(b.status, 200);
    assert.is(await body(b), FILES["b.txt"]);
    assert.is(await body(d), FILES["dir/d.txt"]);
    assert.is(list.status, 200);
    assert.ok((await body(list)).includes('href="d.txt"'), "the listing names d.txt");
    assert.is(miss.status, 404);
    assert.ok(await Promise.race([slowAnswer.then(() => false), sleep(50).then(() => true)]), "the slow file is still being opened");
    const s = await slowAnswer;
    assert.is(s.status, 200);
    assert.is(await body(s), FILES["slow-c.txt"]);
    slow.close();
  } finally {
    closeAllConns();
    srv.stop();
  }
});

test("through the pool the file cache still revalidates: an edit on disk shows up", async () => {
  const srv = await startInProcess(root, { fileThreads: 1 });
  try {
    writeFileSync(join(root, "e.txt"), "first\n");
    assert.is(await body(await fetchOne(srv.port, "/e.txt")), "first\n");
    writeFileSync(join(root, "e.txt"), "second, longer\n");
    await sleep(1100); // the cache re-checks a file at most once a second
    assert.is(await body(await fetchOne(srv.port, "/e.txt")), "second, longer\n");
  } finally {
    srv.stop();
  }
});

test("closing the server while an open is in flight returns, and the port is closed", async () => {
  const srv = await startInProcess(root, { fileThreads: 1 });
  const c = await HttpConn.open(srv.port);
  await c.write(get("/slow-c.txt"));
  await sleep(100);
  srv.stop(); // the open is still on its worker thread
  await c.closedByServer().catch(() => {});
  c.close();
  let refused = false;
  await HttpConn.open(srv.port, { timeoutMs: 1000 }).then((x) => x.close(), () => { refused = true; });
  assert.ok(refused, "nothing listens any more");
});

test("serve --file-threads 2 (blocking loop): a slow open and a fast file on two connections, each answered", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--file-threads", "2"]);
  try {
    await fetchOne(s.port, "/a.txt");
    const slow = await HttpConn.open(s.port);
    await slow.write(get("/slow-c.txt"));
    const slowAnswer = slow.response();
    const b = await fetchOne(s.port, "/b.txt");
    assert.is(await body(b), FILES["b.txt"], "answered while the slow open waits");
    assert.ok(await Promise.race([slowAnswer.then(() => false), sleep(50).then(() => true)]), "the slow file is still being opened");
    assert.is(await body(await slowAnswer), FILES["slow-c.txt"]);
    slow.close();
  } finally {
    closeAllConns();
    assert.is(await s.stop(), 0, "exits cleanly");
  }
});

test("a recording made with the file pool (completions in later ticks) replays byte for byte", async () => {
  const { runCli } = await import("./lib/http-server.mjs");
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "wr-fp-rec-"));
  const rec = join(dir, "pool.rec");
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--file-threads", "2", "--listing", "--record", rec]);
  try {
    for (const p of ["/a.txt", "/dir/", "/dir/d.txt", "/none.txt", "/slow-c.txt", "/a.txt"]) await fetchOne(s.port, p);
  } finally {
    closeAllConns();
    assert.is(await s.stop(), 0);
  }
  const r = await runCli(["replay", rec, "--check"], { timeoutMs: 30_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^replay ok:/m);
});

test("many file requests at once through a small completion queue, with the pool's counters wrapping past 2^31: every one answered", async () => {
  // 300 distinct files: 300 opens and preads in flight together, more than
  // one reap may hand back with maxEvents 8, and the pool's ring counters
  // starting just below 2^31 (test hook), so they wrap on the way (an index
  // taken with % of a negative counter threw a RangeError in submit()).
  const many = {};
  for (let k = 0; k < 300; k++) many[`m/${k}.txt`] = `file ${k}\n`;
  const r2 = makeRoot(many, "wr-fp-many-");
  process.env.WASM_REACTOR_FILEPOOL_COUNTER_START = String(2 ** 31 - 100);
  const srv = await startInProcess(r2, { fileThreads: 2, maxEvents: 8 });
  delete process.env.WASM_REACTOR_FILEPOOL_COUNTER_START;
  try {
    const all = await Promise.all(Object.keys(many).map((p) => fetchOne(srv.port, `/${p}`)));
    assert.equal(all.map((x) => x.status), all.map(() => 200));
    assert.equal(all.map((x) => x.body.toString("latin1")), Object.values(many));
  } finally {
    closeAllConns();
    srv.stop();
    removeRoot(r2);
  }
});

// Liveness (test hook WASM_REACTOR_FILEPOOL_DIE): a worker that dies
// mid-request or never starts must not leave requests waiting forever on a
// loop blocked in its wait (which never sees the Worker's 'exit' event).
async function withDyingWorkers(hook, threads, fn) {
  process.env.WASM_REACTOR_FILEPOOL_DIE = hook;
  let s;
  try {
    s = await spawnServer(["serve", "--root", root, "--port", "0", "--file-threads", String(threads), "--io-backend", "epoll_threadpool", "--listing"]);
  } finally {
    delete process.env.WASM_REACTOR_FILEPOOL_DIE;
  }
  try {
    await fn(s);
  } finally {
    closeAllConns();
    assert.is(await s.stop(), 0, "exits cleanly");
  }
  return s.stderr();
}

test("a pool worker that dies holding a request: that request fails (404), later ones are served, one log line", async () => {
  const err = await withDyingWorkers("dir/d", 1, async (s) => {
    const dead = await fetchOne(s.port, "/dir/d.txt"); // kills the only worker
    assert.is(dead.status, 404, "the open failed (EIO): a cached miss, as any failed open");
    assert.is(await body(await fetchOne(s.port, "/a.txt")), FILES["a.txt"], "served on the loop thread");
    assert.ok((await body(await fetchOne(s.port, "/dir/"))).includes('href="d.txt"'), "a listing too");
  });
  assert.is(err.match(/worker 0 ended unexpectedly \(its request fails with EIO\)/g)?.length, 1, err);
  assert.is(err.match(/no worker left; file work runs on the loop thread/g)?.length, 1, err);
});

test("pool workers that never start: the queued requests, and later ones, are carried out on the loop thread", async () => {
  const err = await withDyingWorkers("start", 2, async (s) => {
    const all = await Promise.all(["/a.txt", "/b.txt", "/dir/d.txt"].map((p) => fetchOne(s.port, p)));
    assert.equal(await Promise.all(all.map(body)), [FILES["a.txt"], FILES["b.txt"], FILES["dir/d.txt"]]);
    assert.is((await fetchOne(s.port, "/none.txt")).status, 404);
  });
  assert.is(err.match(/no worker left/g)?.length, 1, err);
});

test("--file-threads out of range: one line, exit 2", async () => {
  const { runCli } = await import("./lib/http-server.mjs");
  const r = await runCli(["serve", "--file-threads", "65"]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /--file-threads must be 0\.\.64/);
  assert.is(r.stderr.trim().split("\n").length, 1);
});

test.after(() => removeRoot(root));
test.run();
