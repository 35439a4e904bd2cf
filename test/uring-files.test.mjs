// The HTTP server's file work as io_uring ops (host/uring-files.ts): under
// --io-backend io_uring, OP_OPEN (openat2 beneath the root + statx + the
// sidecar checks) and OP_PREAD are ring ops that complete in a later tick,
// so an open held up in the kernel does not hold up other connections.
//
// The same requests go to every server configuration available here (the
// libc executor with files on the loop thread and on the pool; io_uring with
// ring file ops, with --file-threads (listings on the pool), and with the
// ops hidden from the probe: the fallback), and every answer is checked
// against expectations written here from the files as this test made them
// (fs.statSync for the validators), then the answers are compared across
// configurations as well.
//
// A held open: the test hook WASM_REACTOR_IO_URING_OPEN_DELAY="substring:ms"
// hard-links an IORING_OP_TIMEOUT before the OPENAT2 of a matching path, so
// the open really waits in the kernel, on the ring's own path, with no
// thread (a FIFO cannot hold it: files.ts opens with O_NONBLOCK).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync, statSync, renameSync, utimesSync, symlinkSync, mkdtempSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { uringAvailability } from "../dist/index.js";
import { HttpConn, get, fetchOne, exchange, sleep, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, startInProcess, spawnServer, runCli } from "./lib/http-server.mjs";

const HAVE = uringAvailability().ok;
if (!HAVE) console.log(`# io_uring is unavailable here (${uringAvailability().reason}): only the libc configurations run`);
const T = HAVE ? test : test.skip;

const BIG = randomBytes(100_000); // over the core's in-memory body limit: sent with sendfile
const FILES = {
  "t.txt": "hello, text\n",
  "swap.txt": "before swap\n",
  "big.bin": BIG,
  "app.js": "console.log('js');\n",
  "app.js.br": "BR-BYTES",
  "app.js.gz": "GZ-BYTES",
  "only.css": "p{}\n",
  "only.css.gz": "CSS-GZ",
  "dirbr.txt": "no sidecar here\n",
  "dirbr.txt.br/": "",
  "d/index.html": "index\n",
  "list/a.txt": "a\n",
  "list/sub/": "",
  "slow-1.txt": "slow one\n",
  "slow-2.txt": "slow two\n",
  "fast-1.txt": "fast one\n",
  "fast-2.txt": "fast two\n",
};
const root = makeRoot(FILES, "wr-ufiles-");
const outside = mkdtempSync(join(tmpdir(), "wr-ufiles-out-"));
writeFileSync(join(outside, "secret.txt"), "secret\n");
symlinkSync(join(outside, "secret.txt"), join(root, "esc.txt"));
symlinkSync("t.txt", join(root, "in.txt"));
process.env.WASM_REACTOR_IO_URING_OPEN_DELAY = "slow-:1500";
test.after(() => { closeAllConns(); removeRoot(root); removeRoot(outside); });

const CONFIGS = [
  { name: "epoll_threadpool, files on the loop thread", opts: { ioBackend: "epoll_threadpool", fileThreads: 0 }, ring: false },
  { name: "epoll_threadpool, file pool", opts: { ioBackend: "epoll_threadpool", fileThreads: 2 }, ring: false },
  ...(HAVE ? [
    { name: "io_uring, ring file ops", opts: { ioBackend: "io_uring" }, ring: true },
    { name: "io_uring --file-threads 2 (ring ops; listings on the pool)", opts: { ioBackend: "io_uring", fileThreads: 2 }, ring: true },
    { name: "io_uring, OPENAT2/STATX/READ hidden from the probe (fallback)", opts: { ioBackend: "io_uring" }, ring: false, hide: "OPENAT2,STATX,READ" },
  ] : []),
];

async function start(c, extra = {}) {
  if (c.hide) process.env.WASM_REACTOR_IO_URING_HIDE_OPS = c.hide;
  try {
    return await startInProcess(root, { precompressed: true, listing: true, ...c.opts, ...extra });
  } finally {
    delete process.env.WASM_REACTOR_IO_URING_HIDE_OPS;
  }
}

const stat = (p) => statSync(join(root, p));
const etagOf = (st) => `"${Math.floor(st.mtimeMs / 1000).toString(16)}-${st.size.toString(16)}"`;
const lastModified = (st) => new Date(Math.floor(st.mtimeMs / 1000) * 1000).toUTCString();
const req = (port, path, headers = []) => fetchOne(port, path, { headers });
const TEXT = "text/plain; charset=utf-8";

/** The requests, each with its expectation (from the files on disk, not from any server). */
const CASES = [
  ["regular file (small: read into memory)", "/t.txt", [], (r) => {
    const st = stat("t.txt");
    assert.is(r.status, 200);
    assert.is(r.body.toString(), FILES["t.txt"]);
    assert.is(r.headers["content-type"], TEXT);
    assert.is(r.headers["content-length"], String(st.size));
    assert.is(r.headers.etag, etagOf(st));
    assert.is(r.headers["last-modified"], lastModified(st));
  }],
  ["regular file (large: sendfile)", "/big.bin", [], (r) => {
    assert.is(r.status, 200);
    assert.ok(r.body.equals(BIG), "the file's bytes");
    assert.is(r.headers["content-type"], "application/octet-stream");
    assert.is(r.headers.etag, etagOf(stat("big.bin")));
  }],
  ["directory without its slash: 301", "/d", [], (r) => { assert.is(r.status, 301); assert.is(r.headers.location, "/d/"); }],
  ["directory with index.html", "/d/", [], (r) => {
    assert.is(r.status, 200);
    assert.is(r.body.toString(), "index\n");
    assert.is(r.headers["content-type"], "text/html; charset=utf-8");
  }],
  ["directory listing", "/list/", [], (r) => {
    assert.is(r.status, 200);
    const html = r.body.toString();
    assert.ok(html.includes('href="a.txt"') && html.includes('href="sub/"'), html);
  }],
  ["missing: 404", "/none.txt", [], (r) => assert.is(r.status, 404)],
  ["symlink out of the root: 404", "/esc.txt", [], (r) => { assert.is(r.status, 404); assert.not.ok(r.body.toString().includes("secret")); }],
  ["symlink inside the root: its target", "/in.txt", [], (r) => { assert.is(r.status, 200); assert.is(r.body.toString(), FILES["t.txt"]); }],
  ["sidecar .br for Accept-Encoding: br", "/app.js", ["Accept-Encoding: gzip, br"], (r) => {
    assert.is(r.status, 200);
    assert.is(r.headers["content-encoding"], "br");
    assert.is(r.body.toString(), "BR-BYTES");
    assert.match(r.headers["content-type"], /^text\/javascript/);
    assert.is(r.headers.vary, "Accept-Encoding");
  }],
  ["sidecar .gz for Accept-Encoding: gzip", "/app.js", ["Accept-Encoding: gzip"], (r) => {
    assert.is(r.headers["content-encoding"], "gzip");
    assert.is(r.body.toString(), "GZ-BYTES");
  }],
  ["identity without Accept-Encoding (sidecars exist: Vary)", "/app.js", [], (r) => {
    assert.is(r.headers["content-encoding"], undefined);
    assert.is(r.body.toString(), FILES["app.js"]);
    assert.is(r.headers.vary, "Accept-Encoding");
  }],
  ["only a .gz sidecar", "/only.css", ["Accept-Encoding: br, gzip"], (r) => {
    assert.is(r.headers["content-encoding"], "gzip");
    assert.is(r.body.toString(), "CSS-GZ");
  }],
  ["a directory named X.br is no sidecar", "/dirbr.txt", ["Accept-Encoding: br"], (r) => {
    assert.is(r.headers["content-encoding"], undefined);
    assert.is(r.body.toString(), FILES["dirbr.txt"]);
    assert.is(r.headers.vary, undefined);
  }],
  ["If-None-Match with the file's ETag: 304", "/t.txt", () => [`If-None-Match: ${etagOf(stat("t.txt"))}`], (r) => assert.is(r.status, 304)],
  ["If-Modified-Since its Last-Modified: 304", "/t.txt", () => [`If-Modified-Since: ${lastModified(stat("t.txt"))}`], (r) => assert.is(r.status, 304)],
  ["a range of a small file", "/t.txt", ["Range: bytes=2-4"], (r) => {
    assert.is(r.status, 206);
    assert.is(r.body.toString(), FILES["t.txt"].slice(2, 5));
    assert.is(r.headers["content-range"], `bytes 2-4/${FILES["t.txt"].length}`);
  }],
  ["a range of a large file", "/big.bin", ["Range: bytes=1000-1999"], (r) => {
    assert.is(r.status, 206);
    assert.ok(r.body.equals(BIG.subarray(1000, 2000)));
  }],
];

test("every configuration answers every file request as expected, and all answer alike", async () => {
  const servers = [];
  try {
    for (const c of CONFIGS) {
      const srv = await start(c);
      servers.push(srv);
      assert.is(srv.server.reactor.loop.uringFiles !== null, c.ring, `${c.name}: ring file ops ${c.ring ? "on" : "off"}`);
    }
    const seen = new Map();
    for (let pass = 0; pass < 2; pass++) { // the second pass: from the file cache
      for (const [what, path, headers, check] of CASES) {
        for (let k = 0; k < CONFIGS.length; k++) {
          const r = await req(servers[k].port, path, typeof headers === "function" ? headers() : headers);
          try { check(r); } catch (e) { e.message = `${CONFIGS[k].name}, ${what} (pass ${pass + 1}): ${e.message}`; throw e; }
          // Alike across configurations: status, headers but Date, body.
          const key = `${what}#${pass}`;
          const shape = JSON.stringify([r.status, r.rawHeaders.filter(([n]) => n !== "Date"), r.body.toString("base64")]);
          if (!seen.has(key)) seen.set(key, shape);
          else assert.is(shape, seen.get(key), `${CONFIGS[k].name} answers ${what} like ${CONFIGS[0].name}`);
        }
      }
    }
    // A file replaced by one of the same size and mtime: only its inode
    // differs, and the re-check (stat only, at most once a second) sees it.
    for (const srv of servers) assert.is((await req(srv.port, "/swap.txt")).body.toString(), "before swap\n");
    const old = stat("swap.txt");
    writeFileSync(join(root, "swap.tmp"), "after  swap\n");
    utimesSync(join(root, "swap.tmp"), old.atime, old.mtime);
    renameSync(join(root, "swap.tmp"), join(root, "swap.txt"));
    await sleep(1100);
    for (let k = 0; k < servers.length; k++) {
      assert.is((await req(servers[k].port, "/swap.txt")).body.toString(), "after  swap\n", `${CONFIGS[k].name}: the new inode is noticed`);
    }
  } finally {
    closeAllConns();
    for (const s of servers) s.stop();
  }
});

for (const c of CONFIGS.filter((x) => x.ring)) {
  T(`${c.name}: while an open is held in the kernel, other connections are served; then it is answered`, async () => {
    const srv = await start(c);
    try {
      const slow = await HttpConn.open(srv.port);
      await slow.write(get("/slow-1.txt"));
      const slowAnswer = slow.response({ timeoutMs: 10_000 });
      // Meanwhile: files the cache has not seen (ring opens), a listing
      // (the pool, or the loop thread), a miss, a sidecar check.
      const a = await req(srv.port, "/fast-1.txt");
      const l = await req(srv.port, "/list/");
      const m = await req(srv.port, "/nothing.txt");
      const b = await req(srv.port, "/app.js", ["Accept-Encoding: br"]);
      assert.is(a.body.toString(), FILES["fast-1.txt"]);
      assert.ok(l.body.toString().includes('href="a.txt"'));
      assert.is(m.status, 404);
      assert.is(b.body.toString(), "BR-BYTES");
      assert.ok(await Promise.race([slowAnswer.then(() => false), sleep(50).then(() => true)]), "the held open is still held");
      const s = await slowAnswer;
      assert.is(s.status, 200);
      assert.is(s.body.toString(), FILES["slow-1.txt"]);
      assert.is(s.headers.etag, etagOf(stat("slow-1.txt")));
      slow.close();
    } finally {
      closeAllConns();
      srv.stop();
    }
  });
}

T("closing the server while an open is held returns, the port is closed, and no fd is left open", async () => {
  const c = CONFIGS.find((x) => x.ring);
  const warm = await start(c); // whatever Node opens lazily is opened now
  await req(warm.port, "/t.txt");
  closeAllConns();
  warm.stop();
  await sleep(50);
  const before = readdirSync("/proc/self/fd").length;
  const srv = await start(c);
  const conn = await HttpConn.open(srv.port);
  await conn.write(get("/slow-2.txt"));
  await sleep(200); // the open is in the kernel, behind its timeout
  srv.stop();
  await conn.closedByServer().catch(() => {});
  conn.close();
  let refused = false;
  await HttpConn.open(srv.port, { timeoutMs: 1000 }).then((x) => x.close(), () => { refused = true; });
  assert.ok(refused, "nothing listens any more");
  await sleep(50);
  assert.is(readdirSync("/proc/self/fd").length, before, "the ring, its eventfd and the held open's fd are closed");
});

T("more file requests at once than the ring has slots, through a small completion queue: every one answered", async () => {
  // 300 distinct files with maxEvents 8: more opens in flight than the 128
  // slots (the rest run as before) and more completions than one reap hands back.
  const many = {};
  for (let k = 0; k < 300; k++) many[`m/${k}.txt`] = `file ${k}\n`;
  const r2 = makeRoot(many, "wr-ufiles-many-");
  for (const fileThreads of [0, 2]) {
    const { Server } = await import("../dist/index.js");
    const server = new Server({ protocol: "http", root: r2, host: "127.0.0.1", port: 0, handleSignals: false, ioBackend: "io_uring", maxEvents: 8, fileThreads });
    server.attach();
    try {
      const all = await Promise.all(Object.keys(many).map((p) => fetchOne(server.port, `/${p}`)));
      assert.equal(all.map((x) => x.status), all.map(() => 200), `fileThreads ${fileThreads}`);
      assert.equal(all.map((x) => x.body.toString("latin1")), Object.values(many));
    } finally {
      closeAllConns();
      server.stop();
      server.close();
    }
  }
  removeRoot(r2);
});

T("keep-alive: a held open and a pipelined request behind it on the same connection come back in order", async () => {
  const srv = await start(CONFIGS.find((x) => x.ring));
  try {
    const { responses: [x, y], conn } = await exchange(srv.port, get("/slow-2.txt") + get("/fast-2.txt"), { methods: ["GET", "GET"], timeoutMs: 10_000 });
    conn.close();
    assert.is(x.body.toString(), FILES["slow-2.txt"]);
    assert.is(y.body.toString(), FILES["fast-2.txt"]);
  } finally {
    closeAllConns();
    srv.stop();
  }
});

T("a recording made under io_uring with ring file ops (completions in later ticks) replays byte for byte", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wr-ufiles-rec-"));
  const rec = join(dir, "ring.rec");
  // The child inherits the hold hook: slow-* opens complete ticks later.
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--io-backend", "io_uring", "--listing", "--precompressed", "--record", rec]);
  try {
    for (const p of ["/t.txt", "/list/", "/d/", "/none.txt", "/slow-1.txt", "/big.bin", "/app.js", "/t.txt"]) await fetchOne(s.port, p, { headers: ["Accept-Encoding: br"] });
  } finally {
    closeAllConns();
    assert.is(await s.stop(), 0);
  }
  const r = await runCli(["replay", rec, "--check"], { timeoutMs: 30_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^replay ok:/m);
});

test.run();
