// ParallelWriter (host/writer/): every layout, many producers (in this thread
// and in worker threads), payloads larger than a buffer, padding, sizing from
// statfs (Lustre through an injected f_type), and failed writes. Each file is
// checked against an independent model (the payloads each producer wrote, in
// order) by parsing it here, with nothing from the writer: every payload
// appears exactly once, whole, and each producer's in the order it wrote them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readFileSync, writeFileSync, openSync, closeSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { execFileSync } from "node:child_process";
import {
  ParallelWriter, WriteError, SysError, LibcCarrier, writerSizing, probeFileSystem, lustreStripeFromLayout, LUSTRE_SUPER_MAGIC,
} from "../dist/index.js";
import { prng } from "./lib/prng.mjs";
import { distUrl } from "./lib/procs.mjs";

const dir = mkdtempSync(join(tmpdir(), "wr-writer-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const fresh = (name = "out") => join(dir, `${name}-${fileNo++}`);

/** Lines "P<producer>:<seq>:<filler>" of random lengths (some longer than `big`); `lines[p]` is producer p's, in order. */
function makeLines(producers, perProducer, maxFill, seed, big = 0) {
  const rnd = prng(seed);
  return Array.from({ length: producers }, (_, p) => Array.from({ length: perProducer }, (_, i) => {
    const fill = big && rnd() < 0.05 ? big + Math.floor(rnd() * big * 2) : Math.floor(rnd() * maxFill);
    return `P${p}:${i}:${String.fromCharCode(97 + (i % 26)).repeat(fill)}`;
  }));
}

/**
 * The model check of a line file: the non-empty lines, grouped by their
 * producer, are exactly `lines` (nothing lost, doubled, cut or reordered).
 * Returns each payload's [start, end) offsets (its '\n' included).
 */
function checkLines(bytes, lines) {
  const text = bytes.toString("latin1");
  assert.ok(!text.includes("\0"), "no NUL byte (no hole, nothing unwritten)");
  assert.ok(text.length === 0 || text.endsWith("\n"), "the file ends with a whole line");
  const got = lines.map(() => []);
  const spans = [];
  let at = 0;
  for (const line of text.split("\n").slice(0, -1)) {
    if (line !== "") {
      const m = /^P(\d+):(\d+):([a-z]*)$/.exec(line);
      assert.ok(m, `a whole payload: ${JSON.stringify(line.slice(0, 80))}`);
      got[Number(m[1])].push(line);
      spans.push([at, at + line.length + 1]);
    }
    at += line.length + 1;
  }
  lines.forEach((want, p) => {
    assert.is(got[p].length, want.length, `producer ${p}: every payload once`);
    assert.ok(got[p].every((l, i) => l === want[i]), `producer ${p}: its payloads whole and in its order`);
  });
  return spans;
}

/** Writes lines[p] through producers[p], interleaved at random (as producers of one thread would be). */
function interleave(producers, lines, seed) {
  const rnd = prng(seed);
  const next = lines.map(() => 0);
  for (let left = lines.reduce((n, l) => n + l.length, 0); left > 0; left--) {
    let p = Math.floor(rnd() * lines.length);
    while (next[p] === lines[p].length) p = (p + 1) % lines.length;
    producers[p].writeLine(lines[p][next[p]++]);
    if (rnd() < 0.01) producers[p].flush();
  }
}

const total = (lines) => lines.flat().reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);

test("striped: four producers of one file, payloads larger than a buffer, packed: nothing but the payloads", () => {
  const path = fresh();
  const w = new ParallelWriter({ layout: "striped", path, stripeSize: 4096 });
  assert.equal([w.sizing.stripeSize, w.sizing.bufferSize, w.sizing.stripeFrom], [4096, 4096, "option"]);
  const lines = makeLines(4, 400, 120, 1, 4096);
  const ps = lines.map(() => w.producer());
  interleave(ps, lines, 2);
  const st = w.close();
  const bytes = readFileSync(path);
  checkLines(bytes, lines);
  assert.is(bytes.length, total(lines), "packed: the file is the payloads, no padding");
  assert.is(st.payloads, 1600);
  assert.is(st.bytes, bytes.length);
  assert.equal([st.padBytes, st.lostPayloads, st.openProducers], [0, 0, 0]);
  // Coalesced: a write per buffer (or per flush, or per large payload), far fewer than payloads.
  assert.ok(st.writes < 1600 / 4, `${st.writes} writes for 1600 payloads`);
  assert.equal(ps.map((p) => p.stats.payloads), [400, 400, 400, 400]);
});

test("padded: blocks of stripeSize, no payload across a block boundary, '\\n' padding, large payloads start a block", () => {
  const path = fresh();
  const BLOCK = 256;
  const w = new ParallelWriter({ layout: "padded", path, stripeSize: BLOCK, bufferSize: 4 * BLOCK });
  const lines = makeLines(3, 300, 60, 3, BLOCK);
  interleave(lines.map(() => w.producer()), lines, 4);
  const st = w.close();
  const bytes = readFileSync(path);
  assert.is(bytes.length % BLOCK, 0, "whole blocks");
  const spans = checkLines(bytes, lines);
  for (const [s, e] of spans) {
    if (e - s <= BLOCK) assert.is(Math.floor(s / BLOCK), Math.floor((e - 1) / BLOCK), `payload at ${s}..${e} stays in its block`);
    else assert.is(s % BLOCK, 0, `a payload longer than a block (${e - s} bytes) starts one`);
  }
  // What is not a payload is padding, and the writer counted it.
  const payloadBytes = spans.reduce((n, [s, e]) => n + e - s, 0);
  assert.is(st.padBytes, bytes.length - payloadBytes);
  assert.ok(st.padBytes > 0);
  // Any block boundary is a place to start reading: it begins a payload or padding.
  for (let b = BLOCK; b < bytes.length; b += BLOCK) {
    const inside = spans.find(([s, e]) => s < b && b < e);
    if (inside) assert.ok(inside[1] - inside[0] > BLOCK, `block ${b / BLOCK} begins inside a payload only if it is larger than a block`);
  }
});

test("an empty payload is taken and counted, and writes nothing", () => {
  const path = fresh();
  const w = new ParallelWriter({ path, stripeSize: 64 });
  const p = w.producer();
  p.write("");
  p.write(new Uint8Array(0));
  p.write("x");
  p.write("");
  const st = w.close();
  assert.equal([st.payloads, st.bytes, st.writes], [4, 1, 1]);
  assert.is(readFileSync(path, "utf8"), "x");
  const w2 = new ParallelWriter({ path, stripeSize: 64 });
  w2.producer().write("");
  assert.equal([w2.close().payloads, readFileSync(path).length], [1, 0]);
});

test("padded: the pad byte is an option (0 for binary records)", () => {
  const path = fresh();
  const w = new ParallelWriter({ layout: "padded", path, stripeSize: 16, padByte: 0 });
  const p = w.producer();
  p.write(Buffer.from("0123456789")); // 10 bytes
  p.write(Buffer.from("abcdefgh")); // 8: does not fit the 6 left, next block
  w.close();
  assert.equal(readFileSync(path), Buffer.concat([Buffer.from("0123456789"), Buffer.alloc(6), Buffer.from("abcdefgh"), Buffer.alloc(8)]));
});

test("sharded: one file per shard, each exactly its producer's payloads (binary, some larger than a buffer), in order", () => {
  const base = fresh("rec");
  const w = new ParallelWriter({ layout: "sharded", path: base, shards: 3, stripeSize: 1024 });
  assert.equal(w.paths, [`${base}.0`, `${base}.1`, `${base}.2`]);
  const rnd = prng(5);
  const want = [[], [], []];
  const ps = [w.producer(0), w.producer(1), w.producer(2)];
  assert.throws(() => w.producer(1), /shard 1 .* already has a producer/);
  assert.throws(() => w.producer(), /every one of the 3 shards/);
  for (let i = 0; i < 3000; i++) {
    const s = Math.floor(rnd() * 3);
    const b = Buffer.alloc(rnd() < 0.02 ? 1024 + Math.floor(rnd() * 3000) : Math.floor(rnd() * 100));
    for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
    ps[s].write(b);
    want[s].push(b);
  }
  const st = w.close();
  for (let s = 0; s < 3; s++) assert.ok(readFileSync(`${base}.${s}`).equals(Buffer.concat(want[s])), `shard ${s}`);
  assert.is(st.payloads, 3000);
});

test("sharded: a name pattern; a pattern without {shard} for several shards is refused", () => {
  const base = fresh("log");
  const w = new ParallelWriter({ layout: "sharded", path: base, shards: 2, shardName: "{path}-{shard}.txt" });
  w.producer().write("zero");
  w.producer().write("one");
  w.close();
  assert.equal([readFileSync(`${base}-0.txt`, "utf8"), readFileSync(`${base}-1.txt`, "utf8")], ["zero", "one"]);
  assert.throws(() => new ParallelWriter({ layout: "sharded", path: base, shards: 2, shardName: "{path}.x" }), /no \{shard\}/);
});

/** A worker thread that joins the writer and writes `lines` (each a payload + '\n'), then closes its producer. */
const WORKER = `
const { workerData, parentPort } = require("node:worker_threads");
import(workerData.dist).then(({ ParallelWriter }) => {
  const p = ParallelWriter.join(workerData.writer, workerData.shard === undefined ? {} : { shard: workerData.shard });
  for (const line of workerData.lines) p.writeLine(line);
  p.close();
  parentPort.postMessage(p.stats);
}).catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`;

function inWorker(writer, lines, shard) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData: { dist: distUrl, writer: writer.descriptor(), lines, shard } });
    w.once("message", (m) => (m.error ? reject(new Error(m.error)) : resolve(m)));
    w.once("error", reject);
  });
}

test("striped: three worker threads and this thread write one file at once (regions claimed with Atomics)", async () => {
  const path = fresh();
  const w = new ParallelWriter({ layout: "striped", path, stripeSize: 512 });
  const lines = makeLines(4, 3000, 40, 7, 512);
  const mine = w.producer();
  const workers = [1, 2, 3].map((p) => inWorker(w, lines[p]));
  for (const l of lines[0]) mine.writeLine(l);
  mine.close();
  const stats = await Promise.all(workers);
  const st = w.close();
  const bytes = readFileSync(path);
  checkLines(bytes, lines);
  assert.is(bytes.length, total(lines));
  assert.equal(stats.map((s) => s.payloads), [3000, 3000, 3000]);
  assert.is(st.payloads, 12000, "the writer's totals count every thread");
  assert.is(st.bytes, bytes.length);
});

test("padded and sharded with worker threads", async () => {
  const pathP = fresh();
  const wp = new ParallelWriter({ layout: "padded", path: pathP, stripeSize: 128 });
  const lp = makeLines(2, 2000, 50, 9, 128);
  await Promise.all(lp.map((l) => inWorker(wp, l)));
  wp.close();
  const bytes = readFileSync(pathP);
  assert.is(bytes.length % 128, 0);
  for (const [s, e] of checkLines(bytes, lp)) if (e - s <= 128) assert.is(Math.floor(s / 128), Math.floor((e - 1) / 128));

  const base = fresh("shard");
  const ws = new ParallelWriter({ layout: "sharded", path: base, shards: 2, stripeSize: 256 });
  const ls = makeLines(2, 2000, 50, 10, 256);
  await Promise.all(ls.map((l, i) => inWorker(ws, l, i)));
  ws.close();
  ls.forEach((l, i) => assert.is(readFileSync(`${base}.${i}`, "utf8"), l.map((x) => x + "\n").join(""), `shard ${i}`));
});

test("append keeps what the file holds (padded: the gap to the next block is padding)", () => {
  const path = fresh();
  writeFileSync(path, "old line\n");
  const w = new ParallelWriter({ path, append: true });
  w.producer().writeLine("new line");
  w.close();
  assert.is(readFileSync(path, "utf8"), "old line\nnew line\n");
  const padded = fresh();
  writeFileSync(padded, "old\n");
  const wp = new ParallelWriter({ layout: "padded", path: padded, append: true, stripeSize: 16 });
  wp.producer().writeLine("new");
  wp.close();
  assert.is(readFileSync(padded, "utf8"), "old\n" + "\n".repeat(12) + "new\n" + "\n".repeat(12));
  // Without append, the file is truncated.
  const wt = new ParallelWriter({ path });
  wt.producer().write("x");
  wt.close();
  assert.is(readFileSync(path, "utf8"), "x");
});

test("append (striped): a file truncated behind the writer (copytruncate) or appended to by another process stays whole", () => {
  const path = fresh();
  writeFileSync(path, "old\n");
  const w = new ParallelWriter({ path, append: true, stripeSize: 64 });
  const p = w.producer();
  p.writeLine("before the rotation");
  p.flush();
  writeFileSync(path, ""); // logrotate's copytruncate
  p.writeLine("after the rotation");
  p.flush();
  writeFileSync(path, "another process\n", { flag: "a" });
  p.writeLine("last");
  w.close();
  assert.is(readFileSync(path, "latin1"), "after the rotation\nanother process\nlast\n", "no hole, nothing overwritten");
});

test("statfs sizing, generic: the file system's type and block size (as stat -f reads them), 1 MiB stripes", () => {
  const path = fresh();
  writeFileSync(path, "");
  const fd = openSync(path, "r");
  const fs = probeFileSystem(fd);
  closeSync(fd);
  const [type, bsize] = execFileSync("stat", ["-f", "-c", "%t %s", path], { encoding: "utf8" }).trim().split(" ");
  assert.equal([fs.type, fs.blockSize], [parseInt(type, 16), Number(bsize)]);
  assert.is(fs.lustreStripeSize, undefined, "not Lustre here");
  const w = new ParallelWriter({ path });
  assert.equal(w.sizing, { fileSystem: "generic", type: fs.type, blockSize: fs.blockSize, stripeSize: 1 << 20, bufferSize: 1 << 20, stripeFrom: "default" });
  w.close();
  // f_bsize-aligned: a block size that does not divide 1 MiB rounds the stripe up to whole blocks.
  assert.is(writerSizing({ type: 0xef53, blockSize: 3000 }).stripeSize, 350 * 3000);
  assert.equal(writerSizing({ type: 0xef53, blockSize: 4096 }, { stripeSize: 8192, bufferSize: 65536 }), {
    fileSystem: "generic", type: 0xef53, blockSize: 4096, stripeSize: 8192, bufferSize: 65536, stripeFrom: "option",
  });
  assert.throws(() => writerSizing({ type: 0xef53, blockSize: 4096 }, { layout: "padded", stripeSize: 4096, bufferSize: 6000 }), /whole stripes/);
  assert.throws(() => writerSizing({ type: 0xef53, blockSize: 4096 }, { stripeSize: 0 }), /stripeSize must be/);
});

/** A lov_mds_md_v1/v3 (lustre_user.h): magic, pattern, 16-byte ost_id, stripe_size u32, stripe_count u16. */
function lovV1(stripe, magic = 0x0bd10bd0) {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(magic, 0); b.writeUInt32LE(1, 4); b.writeUInt32LE(stripe, 24); b.writeUInt16LE(4, 28);
  return b;
}

test("statfs sizing, Lustre (an injected f_type): the file's stripe size from its layout, 1 MiB when unreadable", () => {
  assert.is(LUSTRE_SUPER_MAGIC, 0x0bd00bd0);
  assert.is(lustreStripeFromLayout(lovV1(2 << 20)), 2 << 20, "v1");
  assert.is(lustreStripeFromLayout(lovV1(4 << 20, 0x0bd30bd0)), 4 << 20, "v3");
  // A composite (PFL) layout: a 32-byte header, 48-byte entries with lcme_offset at +24; the first component counts.
  const comp = Buffer.alloc(80 + 32);
  comp.writeUInt32LE(0x0bd60bd0, 0); comp.writeUInt32LE(comp.length, 4); comp.writeUInt16LE(1, 14);
  comp.writeUInt32LE(80, 32 + 24);
  lovV1(8 << 20).copy(comp, 80);
  assert.is(lustreStripeFromLayout(comp), 8 << 20, "PFL: the first component");
  assert.is(lustreStripeFromLayout(Buffer.from("not a layout at all")), null);
  assert.is(lustreStripeFromLayout(Buffer.alloc(2)), null);

  const lustre = { type: LUSTRE_SUPER_MAGIC, blockSize: 4096 };
  assert.equal(writerSizing({ ...lustre, lustreStripeSize: null }), { fileSystem: "lustre", type: LUSTRE_SUPER_MAGIC, blockSize: 4096, stripeSize: 1 << 20, bufferSize: 1 << 20, stripeFrom: "lustre default" });
  assert.equal(writerSizing({ ...lustre, lustreStripeSize: 4 << 20 }).stripeSize, 4 << 20);
  assert.equal(writerSizing({ ...lustre, lustreStripeSize: 4 << 20 }, { stripeSize: 65536 }).stripeSize, 65536, "an option wins");
  const path = fresh();
  const w = new ParallelWriter({ layout: "padded", path, fileSystem: { ...lustre, lustreStripeSize: 2 << 20 } });
  assert.equal([w.sizing.fileSystem, w.sizing.stripeSize, w.sizing.bufferSize, w.sizing.stripeFrom], ["lustre", 2 << 20, 2 << 20, "lustre layout"]);
  w.producer().writeLine("one line");
  w.close();
  assert.is(readFileSync(path).length, 2 << 20, "one padded stripe");
});

test("a write to a read-only fd is a WriteError (a SysError, EBADF) that counts what it lost; counters say it too", () => {
  const path = fresh();
  writeFileSync(path, "");
  const fd = openSync(path, "r");
  const w = new ParallelWriter({ fds: [fd], stripeSize: 64 });
  const p = w.producer();
  for (let i = 0; i < 5; i++) p.write("0123456789"); // 50 of 64 bytes
  let err;
  try { p.write("0123456789abcdef"); } catch (e) { err = e; } // no room: the flush fails
  assert.ok(err instanceof WriteError && err instanceof SysError, String(err));
  assert.equal([err.code, err.fd, err.offset, err.lostPayloads, err.lostBytes], ["EBADF", fd, 0, 6, 66]);
  assert.match(err.message, /^pwritev fd \d+ at 0: EBADF \(Bad file descriptor\); 6 payload\(s\) of 66 bytes lost$/);
  p.write("x");
  assert.throws(() => p.flush(), (e) => e instanceof WriteError && e.lostPayloads === 1);
  const st = w.close();
  assert.equal([st.lostPayloads, st.lostBytes, st.failedWrites, st.payloads, st.writes], [7, 67, 2, 0, 0]);
  closeSync(fd); // the caller's fd: the writer does not close it
  assert.is(readFileSync(path).length, 0);
});

test("the carrier seam: short writes and EINTR are continued, an ENOSPC is reported", () => {
  const libc = new LibcCarrier();
  let calls = 0;
  const shortWrites = {
    pwritev(fd, chunks, offset) {
      if (++calls % 3 === 0) return -4; // EINTR
      let left = 7; // at most 7 bytes a call, across chunks
      const part = [];
      for (const c of chunks) { if (left <= 0) break; part.push(c.subarray(0, left)); left -= Math.min(left, c.length); }
      return libc.pwritev(fd, part, offset);
    },
  };
  const path = fresh();
  const w = new ParallelWriter({ path, stripeSize: 100, carrier: shortWrites });
  const lines = makeLines(2, 200, 30, 11, 100);
  interleave([w.producer(), w.producer()], lines, 12);
  w.close();
  checkLines(readFileSync(path), lines);
  assert.ok(calls > 100, `${calls} carrier calls`);

  let n = 0;
  const full = { pwritev: (fd, chunks, offset) => (++n > 2 ? -28 : libc.pwritev(fd, chunks, offset)) };
  const w2 = new ParallelWriter({ path: fresh(), stripeSize: 32, carrier: full });
  const p = w2.producer();
  let err;
  try { for (let i = 0; i < 100; i++) p.writeLine(`line ${i}`); } catch (e) { err = e; }
  assert.ok(err instanceof WriteError);
  assert.is(err.code, "ENOSPC");
  assert.is(w2.close().failedWrites, 1);
});

test("close(): refused while a producer elsewhere is open; a closed writer takes no more writes", () => {
  const path = fresh();
  const w = new ParallelWriter({ path, stripeSize: 64 });
  const joined = ParallelWriter.join(w.descriptor()); // as a worker would
  joined.writeLine("from the joined producer");
  assert.throws(() => w.close(), /1 producer\(s\) in other threads are still open/);
  joined.close();
  assert.is(w.close().payloads, 1);
  assert.throws(() => ParallelWriter.join(w.descriptor()), /is closed/);
  assert.throws(() => w.producer(), /is closed/);

  const w2 = new ParallelWriter({ path: fresh(), stripeSize: 64 });
  const late = ParallelWriter.join(w2.descriptor());
  late.writeLine("buffered when the writer was forced closed");
  assert.is(w2.close({ force: true }).openProducers, 1);
  assert.throws(() => late.close(), /was closed; 1 payload\(s\)/);
  assert.is(w2.stats().lostPayloads, 1, "counted as lost");
  assert.throws(() => late.write("x"), /closed producer/);
});

test("bad options are refused before anything is opened", () => {
  const path = fresh();
  assert.throws(() => new ParallelWriter({ path, layout: "mirrored" }), /layout must be striped, padded, sharded/);
  assert.throws(() => new ParallelWriter({ path, padByte: 300 }), /padByte must be 0\.\.255/);
  assert.throws(() => new ParallelWriter({ layout: "sharded", path, shards: 0 }), /shards must be/);
  assert.throws(() => new ParallelWriter({}), /give a path/);
  assert.ok(!existsSync(path));
  assert.throws(() => new ParallelWriter({ path: join(dir, "no/such/dir/file") }), (e) => e instanceof SysError && e.code === "ENOENT");
});

test.run();
