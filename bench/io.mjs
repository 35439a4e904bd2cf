// The io API against Node's own file I/O (issue 9's benchmarks, file half):
//
//   1. random 4 KiB pread on a page-cached file at queue depth 1, 32 and 256:
//      every io backend available here, koffi's `.async()` pread (libuv's
//      pool: the alternative the threadpool backend was measured against),
//      fs.promises FileHandle.read, and fs.readSync (depth 1: it blocks);
//      in place vs copied buffers (copyBuffers) at depth 32; O_DIRECT where
//      the file system takes it (else the line says it does not);
//   2. sequential 1 MiB writes then reads of the same file, MB/s;
//   2b. the same random preads on a file NOT in the page cache: a 256 MiB
//      file, fsynced, its pages dropped with posix_fadvise(DONTNEED) before
//      every row (this file only: no root, nothing else on the machine is
//      disturbed), POSIX_FADV_RANDOM on each reader's fd (no readahead), and
//      each row reading distinct blocks (a permutation): every read is a
//      miss. A row is a fixed count of reads, not a fixed time;
//   3. the whole file to a TCP socket on 127.0.0.1 (a node:net reader in
//      this process counts the bytes): `ex.sendfile` per backend until all is
//      sent, against fs.createReadStream(...).pipe(socket), MB/s.
//
//   node bench/io.mjs            (64 MiB file, ~1 s per row)
//   node bench/io.mjs --smoke    (4 MiB file, a few hundred ops per row:
//                                 checks that it runs; the figures mean nothing)
//
// Depth D means D loops, each awaiting one request at a time. Offsets come
// from a fixed seed. Rows print as a markdown table (bench/RESULTS.md).
import { mkdtempSync, rmSync, writeFileSync, writeSync, fsyncSync, readFileSync, readSync, openSync, closeSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { createReadStream } from "node:fs";
import net from "node:net";
import { io } from "../dist/index.js";
import { prng } from "../test/lib/prng.mjs";

const args = process.argv.slice(2);
for (const a of args) if (a !== "--smoke") { console.error(`io.mjs: unknown argument ${a} (only --smoke)`); process.exit(2); }
const SMOKE = args.includes("--smoke");
const FILE_MB = SMOKE ? 4 : 64;
const ROW_MS = SMOKE ? 30 : 1000;
const DEPTHS = [1, 32, 256];

const require = createRequire(import.meta.url);
const koffi = require("koffi");
const kpread = koffi.load("libc.so.6").func("int pread(int, intptr, size_t, int64)");

const dir = mkdtempSync(join(tmpdir(), "wr-io-bench-"));
const path = join(dir, "file.bin");
const size = FILE_MB << 20;
const rand = prng(4);
writeFileSync(path, Buffer.alloc(size, 7));
readFileSync(path); // into the page cache
const blocks = size / 4096;
const offsets = Float64Array.from({ length: 1 << 16 }, () => Math.floor(rand() * blocks) * 4096);

/** Untimed: a new executor's threads start, its caches warm. */
const warm = (one) => rate(32, one, SMOKE ? 50 : 300);

/** Runs `one(buf, offset)` (a Promise) from `depth` loops for ROW_MS; ops/s. */
async function rate(depth, one, ms = ROW_MS) {
  let ops = 0, cursor = 0, stop = false;
  const loop = async () => {
    const buf = new Uint8Array(4096);
    while (!stop) { await one(buf, offsets[cursor++ & 0xffff]); ops++; }
  };
  const t0 = performance.now();
  const timer = setTimeout(() => { stop = true; }, ms);
  await Promise.all(Array.from({ length: depth }, loop));
  clearTimeout(timer);
  return ops / ((performance.now() - t0) / 1000);
}

const rows = [];
const fmt = (n) => Math.round(n).toLocaleString("en-US");
const fd = openSync(path, "r");

// fs.promises first: the column every row is compared with.
const fh = await fsp.open(path, "r");
const base = {};
await warm((b, o) => fh.read(b, 0, 4096, o));
for (const d of DEPTHS) base[d] = await rate(d, (b, o) => fh.read(b, 0, 4096, o));
await fh.close();
for (const d of DEPTHS) rows.push(["fs.promises FileHandle.read", d, base[d]]);
{
  const t0 = performance.now(); let ops = 0; const b = new Uint8Array(4096);
  while (performance.now() - t0 < ROW_MS) { readSync(fd, b, 0, 4096, offsets[ops & 0xffff]); ops++; }
  rows.push(["fs.readSync", 1, ops / ((performance.now() - t0) / 1000)]);
}
for (const d of DEPTHS) {
  rows.push(["koffi pread.async (libuv pool)", d, await rate(d, (b, o) => new Promise((res) => kpread.async(fd, Number(koffi.address(b)), 4096, o, (e, r) => res(r))))]);
}
const backends = [];
for (const b of ["io_uring", "epoll_threadpool", "threadpool"]) {
  try { const ex = io.executor({ backend: b }); await ex.stop(); backends.push(b); } catch (e) { console.log(`${b}: not measured (${e.message})`); }
}
for (const b of backends) {
  const ex = io.executor({ backend: b });
  await warm((buf, o) => ex.pread(fd, buf, o));
  for (const d of DEPTHS) rows.push([`io ${b}`, d, await rate(d, (buf, o) => ex.pread(fd, buf, o))]);
  await ex.stop();
  const cx = io.executor({ backend: b, copyBuffers: true });
  await warm((buf, o) => cx.pread(fd, buf, o));
  rows.push([`io ${b}, copyBuffers`, 32, await rate(32, (buf, o) => cx.pread(fd, buf, o))]);
  await cx.stop();
}

// O_DIRECT: 4 KiB-aligned buffers, where the file system accepts the flag.
let direct = "O_DIRECT: ";
{
  const dfd = io.raw.openSync(path, io.O_RDONLY | io.O_DIRECT);
  if (dfd < 0) direct += `not supported here (open: errno ${-dfd}; tmpfs refuses it): no uncached rows`;
  else {
    const ex = io.executor({ backend: backends[0] });
    await warm((buf, o) => ex.pread(fd, buf, o));
    const aligned = () => { const raw = new Uint8Array(8192); const a = Number(koffi.address(raw)); return raw.subarray((4096 - (a % 4096)) % 4096).subarray(0, 4096); };
    let ops = 0, cursor = 0, stop = false;
    const t0 = performance.now();
    const timer = setTimeout(() => { stop = true; }, ROW_MS);
    await Promise.all(Array.from({ length: 32 }, async () => { const b = aligned(); while (!stop) { await ex.pread(dfd, b, offsets[cursor++ & 0xffff]); ops++; } }));
    clearTimeout(timer);
    rows.push([`io ${backends[0]}, O_DIRECT`, 32, ops / ((performance.now() - t0) / 1000)]);
    await ex.stop();
    io.closeSync(dfd);
    direct += "measured (row above)";
  }
}
closeSync(fd);

// ---- cold: not in the page cache ------------------------------------------------
const fadvise = koffi.load("libc.so.6").func("int posix_fadvise(int, int64, int64, int)");
const FADV_RANDOM = 1, FADV_DONTNEED = 4;
const coldPath = join(dir, "cold.bin");
const COLD_MB = SMOKE ? 8 : 256, COLD_READS = SMOKE ? 256 : 8192;
{
  const h = openSync(coldPath, "w");
  const chunk = Buffer.alloc(1 << 20, 5);
  for (let i = 0; i < COLD_MB; i++) writeSync(h, chunk);
  fsyncSync(h);
  closeSync(h);
}
const coldBlocks = (COLD_MB << 20) / 4096;
const perm = Uint32Array.from({ length: coldBlocks }, (_, i) => i);
for (let i = perm.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [perm[i], perm[j]] = [perm[j], perm[i]]; }
/** `reads` distinct cold blocks from `depth` loops of `one(buf, offset)`; ops/s. */
async function coldRate(depth, one, rawFd) {
  fadvise(rawFd, 0, 0, FADV_RANDOM);
  if (fadvise(rawFd, 0, 0, FADV_DONTNEED) !== 0) throw new Error("posix_fadvise(DONTNEED) failed");
  let cursor = 0;
  const loop = async () => { const b = new Uint8Array(4096); while (cursor < COLD_READS) await one(b, perm[cursor++] * 4096); };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: depth }, loop));
  return COLD_READS / ((performance.now() - t0) / 1000);
}
const coldRows = [], coldBase = {};
const COLD_DEPTHS = [1, 32, 256];
{
  const h = await fsp.open(coldPath, "r");
  for (const d of COLD_DEPTHS) { coldBase[d] = await coldRate(d, (b, o) => h.read(b, 0, 4096, o), h.fd); coldRows.push(["fs.promises FileHandle.read", d, coldBase[d]]); }
  await h.close();
  const sfd = openSync(coldPath, "r");
  coldRows.push(["fs.readSync", 1, await coldRate(1, async (b, o) => readSync(sfd, b, 0, 4096, o), sfd)]);
  closeSync(sfd);
}
for (const b of backends) {
  const ex = io.executor({ backend: b });
  const cfd = await ex.open(coldPath, io.O_RDONLY);
  for (const d of COLD_DEPTHS) coldRows.push([`io ${b}`, d, await coldRate(d, (buf, o) => ex.pread(cfd, buf, o), cfd)]);
  await ex.close(cfd);
  await ex.stop();
}
rmSync(coldPath);

console.log(`random 4 KiB pread, ${FILE_MB} MiB page-cached file, ${ROW_MS} ms per row${SMOKE ? " (smoke: figures mean nothing)" : ""}`);
console.log("");
console.log("| reader | depth | ops/s | vs fs.promises |");
console.log("| --- | --- | --- | --- |");
for (const [name, d, r] of rows) console.log(`| ${name} | ${d} | ${fmt(r)} | ${(r / base[d]).toFixed(2)} |`);
console.log("");
console.log(direct);
console.log("");
console.log(`random 4 KiB pread, ${COLD_MB} MiB file NOT in the page cache (posix_fadvise DONTNEED before each row, FADV_RANDOM), ${COLD_READS} distinct blocks per row${SMOKE ? " (smoke: figures mean nothing)" : ""}`);
console.log("");
console.log("| reader | depth | ops/s | vs fs.promises |");
console.log("| --- | --- | --- | --- |");
for (const [name, d, r] of coldRows) console.log(`| ${name} | ${d} | ${fmt(r)} | ${(r / coldBase[d]).toFixed(2)} |`);

// ---- sequential 1 MiB ----------------------------------------------------------
async function sequential(name, write, read) {
  const mb = new Uint8Array(1 << 20).fill(3);
  let t0 = performance.now();
  for (let o = 0; o < size; o += 1 << 20) await write(mb, o);
  const w = FILE_MB / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let o = 0; o < size; o += 1 << 20) await read(mb, o);
  const r = FILE_MB / ((performance.now() - t0) / 1000);
  return [name, w, r];
}
const seq = [];
const sp = join(dir, "seq.bin");
{
  const h = await fsp.open(sp, "w+");
  seq.push(await sequential("fs.promises FileHandle", (b, o) => h.write(b, 0, b.length, o), (b, o) => h.read(b, 0, b.length, o)));
  await h.close();
}
for (const b of backends) {
  const ex = io.executor({ backend: b });
  const f = await ex.open(sp, io.O_RDWR | io.O_CREAT | io.O_TRUNC);
  seq.push(await sequential(`io ${b}`, (buf, o) => ex.pwrite(f, buf, o), (buf, o) => ex.pread(f, buf, o)));
  await ex.close(f);
  await ex.stop();
}
console.log("");
console.log(`sequential 1 MiB pwrite then pread, ${FILE_MB} MiB`);
console.log("");
console.log("| writer/reader | write MB/s | read MB/s |");
console.log("| --- | --- | --- |");
for (const [name, w, r] of seq) console.log(`| ${name} | ${fmt(w)} | ${fmt(r)} |`);

// ---- the whole file to a socket ------------------------------------------------
/** A node:net reader on 127.0.0.1 that resolves `done` once it has `want` bytes. */
function reader(want) {
  let got = 0, resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  const server = net.createServer((s) => s.on("data", (d) => { got += d.length; if (got >= want) { resolveDone(); s.destroy(); } }));
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r({ port: server.address().port, done, close: () => server.close() })));
}
const toSocket = [];
{
  const rd = await reader(size);
  const sock = net.connect(rd.port, "127.0.0.1");
  await new Promise((r) => sock.on("connect", r));
  const t0 = performance.now();
  createReadStream(path).pipe(sock);
  await rd.done;
  toSocket.push(["fs.createReadStream().pipe(socket)", FILE_MB / ((performance.now() - t0) / 1000)]);
  sock.destroy();
  rd.close();
}
for (const b of backends) {
  const ex = io.executor({ backend: b });
  const rd = await reader(size);
  const fd = io.socket();
  await ex.connect(fd, rd.port, "127.0.0.1");
  const file = await ex.open(path, io.O_RDONLY);
  const t0 = performance.now();
  for (let off = 0; off < size;) off += await ex.sendfile(fd, file, off, size - off);
  await rd.done;
  toSocket.push([`io ${b} sendfile`, FILE_MB / ((performance.now() - t0) / 1000)]);
  await ex.close(file);
  await ex.close(fd);
  rd.close();
  await ex.stop();
}
console.log("");
console.log(`the ${FILE_MB} MiB file to a TCP socket on 127.0.0.1 (read by node:net in this process)`);
console.log("");
console.log("| sender | MB/s |");
console.log("| --- | --- |");
for (const [name, r] of toSocket) console.log(`| ${name} | ${fmt(r)} |`);
rmSync(dir, { recursive: true, force: true });
