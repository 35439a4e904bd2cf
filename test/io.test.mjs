// The io API (host/io/, docs/io.md) on real files (a tmpdir) and sockets
// (127.0.0.1, port 0), once per backend available here (named explicitly:
// this file is in test/run.mjs's ONCE set), plus io_uring made unavailable
// (WASM_REACTOR_IO_URING_FAIL=EPERM, in a child process): auto falls back
// and says why, a forced io_uring throws naming why.
//
// Expectations come from node:fs and node:net, never from the code under test.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, writeFileSync, readFileSync, statSync, rmSync, mkdirSync, openSync, closeSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { io, listenTcp, libc, Reactor } from "../dist/index.js";
import { within, distUrl } from "./lib/procs.mjs";

const dir = mkdtempSync(join(tmpdir(), "wr-io-"));
const data = randomBytes(256 * 1024);
const file = join(dir, "data.bin");
writeFileSync(file, data);
mkdirSync(join(dir, "sub"));
writeFileSync(join(dir, "sub", "inner.txt"), "inside");
const openFds = new Set();
test.after(() => { for (const fd of openFds) libc.close(fd); rmSync(dir, { recursive: true, force: true }); });

const { O_RDONLY, O_RDWR, O_CREAT, O_TRUNC, O_DIRECTORY, O_WRONLY } = io;

/** Which backends run here: io_uring only where the ring driver says it can. */
function available() {
  const out = [];
  for (const b of ["io_uring", "epoll_threadpool", "threadpool"]) {
    try { const ex = io.executor({ backend: b }); out.push(b); void ex.stop(); } catch (e) { console.log(`  (${b} not tested here: ${e.message})`); }
  }
  return out;
}
const BACKENDS = available();

/** A connected TCP pair: [our fd (accepted through the executor), the node:net client]. */
async function connectedPair(ex) {
  const l = listenTcp({ port: 0 });
  openFds.add(l.fd);
  const client = net.connect(l.port, "127.0.0.1");
  const connected = new Promise((r) => client.once("connect", r));
  const fd = await ex.accept(l.fd);
  openFds.add(fd);
  await connected;
  libc.close(l.fd); openFds.delete(l.fd);
  return { fd, client };
}

const rejects = async (p, code, what) => {
  try { await p; } catch (e) {
    assert.is(e.code, code, `${what}: code`);
    assert.instance(e, io.SysError, `${what}: a SysError`);
    return e;
  }
  assert.unreachable(`${what}: should have rejected with ${code}`);
};

for (const backend of BACKENDS) {
  const t = (name, fn) => test(`${backend}: ${name}`, async () => {
    const ex = io.executor({ backend });
    try {
      assert.is(ex.backend, backend);
      await fn(ex);
    } finally {
      await within(10_000, ex.stop(), "stop()");
    }
  });

  t("open, pread at offsets, fstat as fs.statSync sees it, close", async (ex) => {
    const fd = await ex.open(file, O_RDONLY);
    assert.ok(fd >= 0);
    const buf = new Uint8Array(4096);
    assert.is(await ex.pread(fd, buf, 8192), 4096);
    assert.ok(Buffer.from(buf).equals(data.subarray(8192, 8192 + 4096)), "the bytes at 8192");
    assert.is(await ex.pread(fd, buf, data.length - 100), 100, "short read at the end");
    assert.is(await ex.pread(fd, buf, data.length + 5), 0, "EOF");
    const st = await ex.fstat(fd), want = statSync(file);
    for (const k of ["size", "mtimeMs", "mode", "ino", "dev", "nlink", "uid", "gid", "blksize", "ctimeMs"]) assert.is(st[k], want[k], k);
    assert.ok(st.isFile() && !st.isDirectory());
    assert.is(st.mtime.getTime(), want.mtime.getTime());
    assert.is(await ex.close(fd), 0);
    await rejects(ex.pread(fd, buf, 0), "EBADF", "pread after close");
  });

  t("write, read and lseek at the file position; pwrite; fsync, fdatasync; stat", async (ex) => {
    const p = join(dir, `rw-${backend}`);
    const fd = await ex.open(p, O_RDWR | O_CREAT | O_TRUNC, 0o600);
    assert.is(await ex.write(fd, Buffer.from("hello ")), 6);
    assert.is(await ex.write(fd, Buffer.from("world")), 5);
    assert.is(await ex.pwrite(fd, Buffer.from("W"), 6), 1);
    assert.is(await ex.fsync(fd), 0);
    assert.is(await ex.fdatasync(fd), 0);
    assert.is(readFileSync(p, "utf8"), "hello World");
    assert.is(await ex.lseek(fd, 0, io.SEEK_SET), 0);
    const b = Buffer.alloc(5);
    assert.is(await ex.read(fd, b), 5);
    assert.is(b.toString(), "hello");
    assert.is(await ex.lseek(fd, 0, io.SEEK_CUR), 5);
    assert.is(await ex.lseek(fd, -2, io.SEEK_END), 9);
    const st = await ex.stat(p);
    assert.is(st.size, 11);
    assert.is(st.mode & 0o777, 0o600);
    assert.ok((await ex.stat(dir)).isDirectory());
    const link = join(dir, `link-${backend}`);
    symlinkSync(p, link);
    assert.ok((await ex.lstat(link)).isSymbolicLink(), "lstat: the link itself");
    assert.ok((await ex.stat(link)).isFile(), "stat: what it points to");
    await ex.close(fd);
  });

  t("readv/writev/preadv/pwritev scatter and gather", async (ex) => {
    const p = join(dir, `v-${backend}`);
    const fd = await ex.open(p, O_RDWR | O_CREAT | O_TRUNC);
    assert.is(await ex.writev(fd, [Buffer.from("ab"), Buffer.from("cde"), new Uint8Array(0), Buffer.from("f")]), 6);
    assert.is(await ex.pwritev(fd, [Buffer.from("XY"), Buffer.from("Z")], 1), 3);
    assert.is(readFileSync(p, "utf8"), "aXYZef");
    const a = Buffer.alloc(2), b = Buffer.alloc(10);
    assert.is(await ex.preadv(fd, [a, b], 1), 5);
    assert.is(a.toString(), "XY");
    assert.is(b.subarray(0, 3).toString(), "Zef");
    await ex.lseek(fd, 0, io.SEEK_SET);
    const c = Buffer.alloc(3), d = Buffer.alloc(3);
    assert.is(await ex.readv(fd, [c, d]), 6);
    assert.is(c.toString() + d.toString(), "aXYZef");
    await ex.close(fd);
  });

  t("errors: ENOENT, EBADF, EISDIR as SysError with code, syscall and path; the raw form", async (ex) => {
    const missing = join(dir, "nope");
    const e = await rejects(ex.open(missing, O_RDONLY), "ENOENT", "open of a missing file");
    assert.is(e.syscall, "open");
    assert.is(e.path, missing);
    assert.is(e.errno, 2);
    assert.match(e.message, /ENOENT/);
    await rejects(ex.stat(missing), "ENOENT", "stat");
    await rejects(ex.pread(1_000_000, new Uint8Array(8), 0), "EBADF", "pread of a bad fd");
    const dfd = await ex.open(dir, O_RDONLY | O_DIRECTORY);
    const e2 = await rejects(ex.read(dfd, new Uint8Array(8)), "EISDIR", "read of a directory");
    assert.is(e2.syscall, "read");
    assert.is(await ex.raw.open(missing, O_RDONLY), -2, "raw open: -ENOENT");
    assert.is(await ex.raw.pread(1_000_000, new Uint8Array(8), 0), -9, "raw pread: -EBADF");
    assert.is(await ex.raw.read(dfd, new Uint8Array(8)), -21, "raw read: -EISDIR");
    await ex.close(dfd);
    await rejects(ex.close(1_000_000), "EBADF", "close of a bad fd");
  });

  t("openat beneath a directory fd: inside works, `..` and absolute paths are refused (EXDEV)", async (ex) => {
    const dfd = await ex.open(join(dir, "sub"), O_RDONLY | O_DIRECTORY);
    const fd = await ex.openat(dfd, "inner.txt", O_RDONLY);
    const b = Buffer.alloc(16);
    assert.is(b.subarray(0, await ex.pread(fd, b, 0)).toString(), "inside");
    await ex.close(fd);
    await rejects(ex.openat(dfd, "../data.bin", O_RDONLY), "EXDEV", "openat ..");
    await rejects(ex.openat(dfd, file, O_RDONLY), "EXDEV", "openat of an absolute path");
    await rejects(ex.openat(dfd, "missing", O_RDONLY), "ENOENT", "openat of a missing name");
    const made = await ex.openat(dfd, "made.txt", O_WRONLY | O_CREAT, 0o640);
    await ex.write(made, Buffer.from("ok"));
    await ex.close(made);
    assert.is(readFileSync(join(dir, "sub", "made.txt"), "utf8"), "ok");
    assert.is(statSync(join(dir, "sub", "made.txt")).mode & 0o777, 0o640 & ~process.umask());
    await ex.close(dfd);
  });

  t("sockets: accept, recv, send, connect on 127.0.0.1; sendfile of a file to a socket", async (ex) => {
    const { fd, client } = await connectedPair(ex);
    client.write("ping");
    const b = Buffer.alloc(64);
    const n = await ex.recv(fd, b);
    assert.is(b.subarray(0, n).toString(), "ping");
    const got = new Promise((r) => { let s = Buffer.alloc(0); client.on("data", (d) => { s = Buffer.concat([s, d]); if (s.length >= 4 + 65536) r(s); }); });
    assert.is(await ex.send(fd, Buffer.from("pong")), 4);
    const ffd = await ex.open(file, O_RDONLY);
    let sent = 0;
    while (sent < 65536) sent += await ex.sendfile(fd, ffd, 1000 + sent, 65536 - sent);
    const all = await within(10_000, got, "the client's bytes");
    assert.is(all.subarray(0, 4).toString(), "pong");
    assert.ok(all.subarray(4).equals(data.subarray(1000, 1000 + 65536)), "sendfile's bytes");
    await ex.close(ffd);
    await ex.close(fd);
    client.destroy();

    // connect out through the executor, to a node:net server
    const server = net.createServer((s) => s.end("hi from node"));
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    const s = io.socket();
    openFds.add(s);
    assert.is(await ex.connect(s, server.address().port, "127.0.0.1"), 0);
    let text = "";
    for (;;) { const k = await ex.recv(s, b); if (k === 0) break; text += b.subarray(0, k).toString(); }
    assert.is(text, "hi from node");
    await ex.close(s); openFds.delete(s);
    server.close();
    const refused = io.socket();
    await rejects(ex.connect(refused, server.address()?.port ?? 1, "127.0.0.1"), "ECONNREFUSED", "connect to a closed port");
    await ex.close(refused);
  });

  t("close(fd) settles the recv pending on it with ECANCELED; stop() settles the rest", async (ex) => {
    const { fd, client } = await connectedPair(ex);
    const b = Buffer.alloc(16);
    const pending = rejects(ex.recv(fd, b), "ECANCELED", "recv pending at close");
    const raw = ex.raw.recv(fd, Buffer.alloc(16));
    await new Promise((r) => setTimeout(r, 20));
    assert.is(await ex.close(fd), 0);
    openFds.delete(fd);
    const e = await within(5000, pending, "the cancelled recv");
    assert.is(e.syscall, "recv");
    assert.is(await within(5000, raw, "raw recv"), -125, "raw: -ECANCELED");
    const second = await connectedPair(ex);
    const p2 = rejects(ex.recv(second.fd, b), "ECANCELED", "recv pending at stop");
    const idle = listenTcp({ port: 0 });
    openFds.add(idle.fd);
    const p3 = ex.raw.accept(idle.fd);
    await new Promise((r) => setTimeout(r, 20));
    await ex.stop();
    await within(5000, p2, "recv settled by stop");
    assert.is(await within(5000, p3, "accept settled by stop"), -125);
    await rejects(ex.pread(0, b, 0), "ECANCELED", "an op after stop");
    client.destroy(); second.client.destroy();
  });

  t("buffers: a view of WebAssembly memory, a small plain Uint8Array, 1 MiB and zero-length", async (ex) => {
    const fd = await ex.open(file, O_RDONLY);
    const mem = new WebAssembly.Memory({ initial: 2 });
    const view = new Uint8Array(mem.buffer, 70_000, 4096);
    assert.is(await ex.pread(fd, view, 4096), 4096);
    assert.ok(Buffer.from(mem.buffer, 70_000, 4096).equals(data.subarray(4096, 8192)), "into linear memory, in place");
    const small = new Uint8Array(16); // V8 keeps arrays this small on its heap
    assert.is(await ex.pread(fd, small, 100), 16);
    assert.ok(Buffer.from(small).equals(data.subarray(100, 116)));
    assert.is(await ex.pread(fd, new Uint8Array(0), 0), 0, "zero-length read");
    assert.is(await ex.write(1_000_000, new Uint8Array(0)).catch((e) => e.code), "EBADF", "zero-length write still checks its fd");
    const p = join(dir, `big-${backend}`);
    const wfd = await ex.open(p, O_RDWR | O_CREAT | O_TRUNC);
    const big = randomBytes(1 << 20);
    assert.is(await ex.pwrite(wfd, big, 0), 1 << 20);
    const back = new Uint8Array(1 << 20);
    assert.is(await ex.pread(wfd, back, 0), 1 << 20);
    assert.ok(Buffer.from(back).equals(big), "1 MiB round trip");
    await ex.close(wfd); await ex.close(fd);
  });

  t("256 concurrent preads complete, each with its own bytes, around a recv that completes last", async (ex) => {
    const { fd: sock, client } = await connectedPair(ex);
    const order = [];
    const slow = ex.recv(sock, Buffer.alloc(8)).then((n) => { order.push("recv"); return n; });
    const fd = await ex.open(file, O_RDONLY);
    const offs = Array.from({ length: 256 }, (_, i) => ((i * 7919) % 60) * 4096 + (i % 5));
    const bufs = offs.map(() => new Uint8Array(4096));
    const reads = offs.map((o, i) => ex.pread(fd, bufs[i], o).then((n) => { order.push(i); return n; }));
    const ns = await within(20_000, Promise.all(reads), "256 preads");
    ns.forEach((n, i) => {
      assert.is(n, 4096);
      assert.ok(Buffer.from(bufs[i]).equals(data.subarray(offs[i], offs[i] + 4096)), `pread ${i}`);
    });
    assert.is(order.length, 256, "the recv is still pending: completions came out of submission order");
    client.write("x");
    assert.is(await within(5000, slow, "the recv"), 1);
    await ex.close(fd); await ex.close(sock);
    client.destroy();
  });

  t("copyBuffers: reads and writes go through staging copies", async () => {
    const cx = io.executor({ backend, copyBuffers: true });
    try {
      const fd = await cx.open(file, O_RDONLY);
      const b = new Uint8Array(4096);
      assert.is(await cx.pread(fd, b, 12288), 4096);
      assert.ok(Buffer.from(b).equals(data.subarray(12288, 16384)));
      const [x, y] = [Buffer.alloc(3), Buffer.alloc(5)];
      assert.is(await cx.preadv(fd, [x, y], 10), 8);
      assert.ok(Buffer.concat([x, y]).equals(data.subarray(10, 18)));
      await cx.close(fd);
    } finally { await cx.stop(); }
  });

  t("io.* use the thread's open executor, and fall back to blocking calls once it is stopped", async (ex) => {
    assert.is(io.current(), ex);
    const fd = await io.open(file, O_RDONLY);
    const b = new Uint8Array(8);
    assert.is(await io.pread(fd, b, 0), 8);
    await ex.stop();
    assert.is(io.current(), null);
    assert.is(await io.pread(fd, b, 8), 8, "fallback: the Promise form");
    assert.ok(Buffer.from(b).equals(data.subarray(8, 16)));
    await io.close(fd);
  });

  t("{ reactor }: completions and sockets on an attached Reactor's loop", async () => {
    const reactor = new Reactor({ handleSignals: false });
    reactor.attach();
    const rx = io.executor({ backend, reactor });
    try {
      const fd = await rx.open(file, O_RDONLY);
      const b = new Uint8Array(64);
      assert.is(await rx.pread(fd, b, 64), 64);
      assert.ok(Buffer.from(b).equals(data.subarray(64, 128)));
      const { fd: s, client } = await connectedPair(rx);
      client.write("via reactor");
      const k = await within(5000, rx.recv(s, b), "recv on the reactor");
      assert.is(Buffer.from(b.subarray(0, k)).toString(), "via reactor");
      await rx.close(s); await rx.close(fd);
      client.destroy();
    } finally {
      await rx.stop();
      reactor.close();
    }
  });
}

test("threadpool: more sockets waiting in recv than threads (2 threads, 5 idle) starve no one; close cancels the parked ones", async () => {
  const ex = io.executor({ backend: "threadpool", threads: 2 });
  const pairs = [];
  try {
    for (let i = 0; i < 5; i++) pairs.push(await connectedPair(ex));
    const idle = pairs.map(({ fd }) => rejects(ex.recv(fd, Buffer.alloc(16)), "ECANCELED", "an idle recv at close"));
    await new Promise((r) => setTimeout(r, 50)); // every idle recv has met EAGAIN on a worker
    const busy = await within(5000, connectedPair(ex), "an accept beside 5 idle recvs");
    pairs.push(busy);
    const b = Buffer.alloc(16);
    const got = ex.recv(busy.fd, b);
    busy.client.write("ready");
    const n = await within(5000, got, "the recv of the connection that sent");
    assert.is(b.subarray(0, n).toString(), "ready");
    assert.is(await within(5000, ex.send(busy.fd, Buffer.from("back")), "a send beside them"), 4);
    for (const { fd } of pairs.slice(0, 5)) { await ex.close(fd); openFds.delete(fd); }
    await within(5000, Promise.all(idle), "the parked recvs, cancelled by close");
  } finally {
    await within(10_000, ex.stop(), "stop()");
    for (const { client } of pairs) client.destroy();
  }
});

test("threadpool: a capacity that is no power of two, with the ring counters wrapping past 2^32 while 600 preads are in flight: every one reads its bytes", async () => {
  // Hook WASM_REACTOR_IO_COUNTER_START: the counters start 100 short of
  // 2^32 (as a u32), so they wrap under load. Indexed `% capacity`, positions
  // jumped at the wrap and entries still in the ring were overwritten.
  process.env.WASM_REACTOR_IO_COUNTER_START = String(-100);
  const ex = io.executor({ backend: "threadpool", threads: 2, capacity: 1000 });
  delete process.env.WASM_REACTOR_IO_COUNTER_START;
  try {
    const fd = await ex.open(file, O_RDONLY);
    for (let round = 0; round < 3; round++) {
      const bufs = Array.from({ length: 600 }, () => new Uint8Array(64));
      const offs = bufs.map((_, k) => ((k * 7919 + round * 131) % 4000) * 64);
      const got = await within(10_000, Promise.all(bufs.map((b, k) => ex.pread(fd, b, offs[k]))), `round ${round}`);
      assert.equal(got, bufs.map(() => 64));
      for (let k = 0; k < bufs.length; k++) assert.ok(Buffer.from(bufs[k]).equals(data.subarray(offs[k], offs[k] + 64)), `pread ${k} of round ${round}`);
    }
    await ex.close(fd);
  } finally {
    await within(10_000, ex.stop(), "stop()");
  }
});

test("outside an executor: the blocking fallback, Promise and Sync forms, raw and SysError", async () => {
  assert.is(io.current(), null);
  const fd = io.openSync(file, O_RDONLY);
  const b = new Uint8Array(32);
  assert.is(io.preadSync(fd, b, 32), 32);
  assert.ok(Buffer.from(b).equals(data.subarray(32, 64)));
  assert.is(await io.pread(fd, b, 0), 32);
  assert.is(io.fstatSync(fd).size, data.length);
  assert.is(io.raw.openSync(join(dir, "nope"), O_RDONLY), -2);
  assert.is(await io.raw.open(join(dir, "nope"), O_RDONLY), -2);
  try { io.openSync(join(dir, "nope"), O_RDONLY); assert.unreachable("throws"); } catch (e) {
    assert.instance(e, io.SysError); assert.is(e.code, "ENOENT"); assert.is(e.syscall, "open");
  }
  await rejects(io.stat(join(dir, "nope")), "ENOENT", "stat fallback");
  io.closeSync(fd);
  assert.is(io.raw.closeSync(fd), -9, "closed: EBADF");
  const fromNode = openSync(file, "r");
  assert.is(io.lseekSync(fromNode, 0, io.SEEK_END), data.length);
  closeSync(fromNode);
});

test("a process that never stops its executor exits cleanly (0), on every backend, a few times each", () => {
  const script = join(dir, "no-stop.mjs");
  writeFileSync(script, `
    import { io } from ${JSON.stringify(distUrl)};
    const ex = io.executor({ backend: process.argv[2] });
    const fd = await ex.open(${JSON.stringify(file)}, 0);
    console.log(await ex.pread(fd, new Uint8Array(64), 0));
  `);
  for (const b of BACKENDS) for (let i = 0; i < 4; i++) {
    const r = spawnSync(process.execPath, [script, b], { encoding: "utf8", timeout: 30_000 });
    assert.is(r.status, 0, `${b} run ${i}: exit ${r.status ?? r.signal}\n${r.stderr.slice(0, 400)}`);
    assert.is(r.stdout.trim(), "64");
  }
});

test("a bad backend name is a TypeError naming the choices", () => {
  assert.throws(() => io.executor({ backend: "kqueue" }), /expected one of auto, io_uring, epoll_threadpool, threadpool/);
});

test("io_uring made unavailable (WASM_REACTOR_IO_URING_FAIL=EPERM): auto falls back and says why; forced io_uring throws naming why", () => {
  const code = `
    import { io } from ${JSON.stringify(distUrl)};
    const lines = [];
    const ex = io.executor({ backend: "auto", log: (l) => lines.push(l) });
    console.log(JSON.stringify({ backend: ex.backend, lines }));
    await ex.stop();
    try { io.executor({ backend: "io_uring" }); console.log("no throw"); } catch (e) { console.log(e.name + ": " + e.message); }
    process.env.WASM_REACTOR_IO_BACKEND = "io_uring";
    try { io.executor(); console.log("no throw"); } catch (e) { console.log("env: " + e.message); }
  `;
  const script = join(dir, "uring-fail.mjs");
  writeFileSync(script, code);
  const r = spawnSync(process.execPath, [script], { env: { ...process.env, WASM_REACTOR_IO_URING_FAIL: "EPERM" }, encoding: "utf8", timeout: 30_000 });
  assert.is(r.status, 0, r.stderr);
  const [first, second, third] = r.stdout.trim().split("\n");
  const j = JSON.parse(first);
  assert.is(j.backend, "epoll_threadpool", "auto's next choice");
  assert.is(j.lines.length, 1, "one log line");
  assert.match(j.lines[0], /io_uring_setup: EPERM/);
  assert.match(j.lines[0], /using epoll_threadpool/);
  assert.match(second, /^BackendUnavailableError: io backend io_uring is unavailable: .*EPERM/);
  assert.match(third, /^env: io backend io_uring is unavailable: .*EPERM/);
});

test.run();
