// Deterministic replay: the committed fixtures, a fresh live recording, and
// what happens to recordings that are truncated, corrupt or from another build.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, readdirSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import http from "node:http";
import { replay, record, RecordingError, Server, abi } from "../dist/index.js";
import { FIXTURES, recordAll, recordFdReuse } from "./fixtures/record.mjs";

const cli = join(dirname(fileURLToPath(import.meta.url)), "..", "bin", "wasm-reactor.js");
const tmp = mkdtempSync(join(tmpdir(), "wr-replay-"));
const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith(".rec")).sort();

test("the five fixture scenarios are committed", () => {
  assert.equal(fixtures, ["fd-reuse.rec", "fragmented.rec", "idle-close.rec", "pipelined.rec", "slow-reader.rec"]);
});

for (const f of fixtures) {
  test(`fixture ${f} replays with identical requests`, () => {
    // force: the core may have been rebuilt since the fixture was recorded;
    // if its behaviour changed on purpose, re-record with `npm run fixtures`.
    const s = replay(readFileSync(join(FIXTURES, f)), { force: true, check: true });
    assert.ok(s.ok, `${f}: ${s.divergence?.message}\n(if the core's behaviour changed on purpose: npm run fixtures)`);
    assert.ok(s.requests > 0 && s.calls > 0);
  });
}

test("the slow-reader fixture really went through EAGAIN: WRITABLE armed, then disarmed", () => {
  const b = readFileSync(join(FIXTURES, "slow-reader.rec"));
  let p = 16 + b.readUInt32LE(12), arm = 0, disarm = 0;
  while (p < b.length) {
    const t = b[p], l = b.readUInt32LE(p + 1), body = p + 5;
    // 64-byte SQEs (io_uring's layout): opcode u8 +0, len +24 (OP_CTL: INTEREST_*), op_flags +28 (its EV_* bits)
    if (t === 4) for (let i = 0; i < l; i += 64) {
      if (b[body + i] === 0x81 /* OP_CTL */ && b.readInt32LE(body + i + 24) === 3 /* INTEREST_MOD */) {
        if (b.readInt32LE(body + i + 28) & 2 /* EV_WRITABLE */) arm++; else disarm++;
      }
    }
    p = body + l;
  }
  assert.ok(arm >= 1 && disarm >= 1, `armed ${arm}, disarmed ${disarm}`);
});

test("a fresh live recording of every scenario replays cleanly (same build, no --force)", async () => {
  const dir = join(tmp, "fresh");
  await recordAll(dir);
  for (const f of readdirSync(dir)) {
    const s = replay(readFileSync(join(dir, f)), { check: true });
    assert.ok(s.ok, `${f}: ${s.divergence?.message}`);
  }
});

test("fd reuse inside one batch: the stale event reaches neither the old nor the new handler", async () => {
  const calls = await recordFdReuse(join(tmp, "reuse.rec"));
  // The swap happens in the first callback of the batch; the other fd's
  // event in that batch is stale. The new handler fires only later.
  assert.ok(calls.oldB + calls.a >= 1);
  assert.is(calls.newB, 1);
  const s = replay(readFileSync(join(tmp, "reuse.rec")));
  assert.ok(s.ok, s.divergence?.message);
});

test("a changed request is reported at the first divergence with batch and index", () => {
  const bytes = Buffer.from(readFileSync(join(FIXTURES, "pipelined.rec")));
  // Find the first SQ frame (type 4) and change one byte of its first entry's fd.
  const n = bytes.readUInt32LE(12);
  let p = 16 + n;
  while (bytes[p] !== 4) p += 5 + bytes.readUInt32LE(p + 1);
  bytes[p + 5 + 4] ^= 0x40;
  const s = replay(bytes, { force: true });
  assert.not.ok(s.ok);
  assert.match(s.divergence.message, /batch \d+, call \d+/);
  assert.match(s.divergence.message, /request 0 of \d+: expected \{.* fd=/);
});

test("truncated and corrupt recordings get a clear error, never a crash or a hang", () => {
  const good = readFileSync(join(FIXTURES, "pipelined.rec"));
  for (const cut of [0, 7, 15, 40, Math.floor(good.length / 2), good.length - 1]) {
    assert.throws(() => replay(good.subarray(0, cut), { force: true }), (e) => e instanceof RecordingError && /truncated|magic|header/.test(e.message));
  }
  const garbage = Buffer.from(good);
  for (let i = 400; i < garbage.length; i += 97) garbage[i] = 0xff;
  const t0 = Date.now();
  try {
    const s = replay(garbage, { force: true });
    assert.not.ok(s.ok);
  } catch (e) {
    assert.ok(e instanceof RecordingError, String(e));
  }
  assert.ok(Date.now() - t0 < 10_000);
  assert.throws(() => replay(Buffer.from("not a recording at all")), /bad magic/);
});

test("a recording from a different core build is refused unless forced", () => {
  const bytes = readFileSync(join(FIXTURES, "idle-close.rec"));
  const n = bytes.readUInt32LE(12);
  const header = JSON.parse(bytes.subarray(16, 16 + n).toString());
  header.coreSha256 = "0".repeat(64);
  const json = Buffer.from(JSON.stringify(header));
  const h = Buffer.from(bytes.subarray(0, 16));
  h.writeUInt32LE(json.length, 12);
  const other = Buffer.concat([h, json, bytes.subarray(16 + n)]);
  assert.throws(() => replay(other), /different|core build .* --force/);
  assert.ok(replay(other, { force: true }).ok);
  const file = join(tmp, "other.rec");
  writeFileSync(file, other);
  const r = spawnSync(process.execPath, [cli, "replay", file], { encoding: "utf8" });
  assert.is(r.status, 2);
  assert.match(r.stderr, /--force/);
  assert.is(spawnSync(process.execPath, [cli, "replay", file, "--force"]).status, 0);
});

test("replay CLI: 0 with a summary, 1 on divergence, 2 for an unusable file", () => {
  const ok = spawnSync(process.execPath, [cli, "replay", join(FIXTURES, "fragmented.rec"), "--force"], { encoding: "utf8" });
  assert.is(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /replay ok: \d+ batches, \d+ events, \d+ calls, \d+ requests, \d+ bytes/);
  const bytes = Buffer.from(readFileSync(join(FIXTURES, "pipelined.rec")));
  const n = bytes.readUInt32LE(12);
  let p = 16 + n;
  while (bytes[p] !== 4) p += 5 + bytes.readUInt32LE(p + 1);
  bytes[p + 5] ^= 1;
  writeFileSync(join(tmp, "bad.rec"), bytes);
  const bad = spawnSync(process.execPath, [cli, "replay", join(tmp, "bad.rec"), "--force"], { encoding: "utf8" });
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /DIVERGED at batch/);
  const none = spawnSync(process.execPath, [cli, "replay", join(tmp, "missing.rec")], { encoding: "utf8" });
  assert.is(none.status, 2);
  assert.is(spawnSync(process.execPath, [cli, "replay"]).status, 2);
});

// ---- out-bytes (format 2): what each request points at --------------------

/**
 * Every F_OUT frame (type 8), parsed by the format documented in
 * host/record.ts, not by the code under test: its byte offset, the batch
 * and call it belongs to (dispatch() is export #2), and per request of the
 * round before it the op and where its out-bytes lie in the file.
 */
function outFrames(b) {
  let p = 16 + b.readUInt32LE(12), calls = 0, batches = 0, ops = [];
  const found = [];
  while (p < b.length) {
    const t = b[p], l = b.readUInt32LE(p + 1), body = p + 5;
    if (t === 2) { calls++; if (b[body] === 2) batches++; }
    if (t === 4) { ops = []; for (let i = 0; i < l; i += 64) ops.push(b[body + i]); } // 64-byte SQEs, opcode u8 at +0
    if (t === 8) {
      const entries = [];
      let o = body + 1;
      for (const op of ops) { const n = b.readUInt32LE(o); entries.push({ op, start: o + 4, len: n }); o += 4 + n; }
      found.push({ pos: p, len: l, batch: batches, call: calls, requests: ops.length, entries });
    }
    p = body + l;
  }
  return found;
}

/** The n-th (0-based) request with opcode `op` that has out-bytes: its frame and request index. */
function nthOut(b, op, n = 0) {
  for (const f of outFrames(b)) {
    for (let i = 0; i < f.entries.length; i++) {
      if (f.entries[i].op === op && f.entries[i].len > 0 && n-- === 0) return { f, i, e: f.entries[i] };
    }
  }
  throw new Error(`no request with op ${op} #${n} in the recording`);
}

/** Flips `mask` in the recorded out-byte at `at` and checks that replay names exactly that byte. */
function expectByteDivergence(orig, { f, i }, at, mask, want, options = {}) {
  const bytes = Buffer.from(orig);
  const was = bytes[at];
  bytes[at] ^= mask;
  const s = replay(bytes, options);
  assert.not.ok(s.ok, "a changed out-byte must diverge");
  const d = s.divergence;
  assert.is(d.kind, "bytes", d.message);
  assert.is(d.batch, f.batch);
  assert.is(d.call, f.call);
  assert.is(d.request, i);
  assert.is(d.requests, f.requests);
  assert.is(d.fileOffset, f.pos);
  assert.is(d.expectedByte, was ^ mask);
  assert.is(d.actualByte, was);
  for (const [k, v] of Object.entries(want)) assert.is(d[k], v, `${k}: ${d.message}`);
  return d;
}

test("out-bytes: a flipped byte of a writev response (body, header, iovec table) or of a path is found where it is", () => {
  const rec = readFileSync(join(FIXTURES, "pipelined.rec"));
  const w = nthOut(rec, abi.OP_WRITEV);
  // writev's out-bytes: 2 entries of {u32 offset, u32 length}, the head segment, the body segment.
  const headLen = rec.readUInt32LE(w.e.start + 4);
  const body = w.e.start + 16 + headLen;
  assert.is(rec.subarray(body, body + 6).toString(), "alpha\n", "the body of /a.txt, as test/fixtures/record.mjs writes it");
  expectByteDivergence(rec, w, body + 1, 0x20, { field: "segment", segment: 1, byteOffset: 1 }, { force: true });
  const d = expectByteDivergence(rec, w, w.e.start + 16 + 9, 0x01, { field: "segment", segment: 0, byteOffset: 9 }, { force: true });
  assert.is(d.expected, '0x33 in "HTTP/1.1 [3]00 OK\\r\\nServer: w..."');
  assert.is(d.actual, '0x32 in "HTTP/1.1 [2]00 OK\\r\\nServer: w..."');
  assert.match(d.message, /request \d+ of \d+ \{WRITEV fd=\d+ .*\}: segment 0, byte 9: expected 0x33 in .*, got 0x32 in /);
  assert.ok(d.address > 0);
  expectByteDivergence(rec, w, w.e.start + 8 + 4, 0x01, { field: "iovec", segment: 1, byteOffset: 4 }, { force: true });
  const o = nthOut(rec, abi.OP_OPEN);
  assert.is(rec.subarray(o.e.start, o.e.start + o.e.len).toString(), "a.txt");
  expectByteDivergence(rec, o, o.e.start + 2, 0x01, { field: "path", byteOffset: 2 }, { force: true });
});

/** A live HTTP run that uses every op with out-bytes: writev, send + sendfile, a listing, 404, access log lines. */
async function recordHttp() {
  const root = join(tmp, "www");
  mkdirSync(join(root, "dir"), { recursive: true });
  writeFileSync(join(root, "small.txt"), "hello, bytes\n");
  writeFileSync(join(root, "big.bin"), Buffer.alloc(3 << 20, 7)); // large: send(head, MSG_MORE) + sendfile
  writeFileSync(join(root, "dir", "x.txt"), "x");
  const get = (port, path) => new Promise((resolve, reject) => {
    http.get({ port, host: "127.0.0.1", path, agent: false }, (r) => { r.resume(); r.on("end", () => resolve(r.statusCode)); }).on("error", reject);
  });
  return record(async (opts) => {
    const server = new Server({ protocol: "http", root, port: 0, handleSignals: false, maxFds: 256, listing: true, accessLog: true, log: () => {}, ...opts });
    server.attach();
    try {
      for (const [p, status] of [["/small.txt", 200], ["/big.bin", 200], ["/dir/", 200], ["/missing", 404]]) assert.is(await get(server.port, p), status);
    } finally {
      server.stop();
      server.close();
    }
  });
}

test("out-bytes: a flipped byte of a log line, a send head, a sendfile offset or a listing path is found where it is", async () => {
  const rec = Buffer.from(await recordHttp());
  assert.ok(replay(rec).ok);
  const log = nthOut(rec, abi.OP_LOG);
  assert.match(rec.subarray(log.e.start, log.e.start + log.e.len).toString(), /^127\.0\.0\.1 - - \[.*\] "GET \/small\.txt HTTP\/1\.1" 200 13 /);
  expectByteDivergence(rec, log, log.e.start + 20, 0x01, { field: "text", byteOffset: 20 });
  const send = nthOut(rec, abi.OP_SEND);
  assert.is(rec.subarray(send.e.start, send.e.start + 15).toString(), "HTTP/1.1 200 OK");
  expectByteDivergence(rec, send, send.e.start + 5, 0x01, { field: "buffer", byteOffset: 5 });
  // The second sendfile starts where the first ended: offset 1 MiB (byte 2 = 0x10), as it was before the call.
  const sf = nthOut(rec, abi.OP_SENDFILE, 1);
  assert.is(sf.e.len, 8);
  assert.ok(rec.readBigUInt64LE(sf.e.start) > 0n);
  expectByteDivergence(rec, sf, sf.e.start + 2, 0x01, { field: "offset", byteOffset: 2 });
  const list = nthOut(rec, abi.OP_LIST);
  assert.is(rec.subarray(list.e.start, list.e.start + list.e.len).toString(), "dir");
  expectByteDivergence(rec, list, list.e.start, 0x01, { field: "path", byteOffset: 0 });
});

test("out-bytes: a recording with more bytes than the request points at diverges past the end", () => {
  const rec = readFileSync(join(FIXTURES, "idle-close.rec"));
  const w = nthOut(rec, abi.OP_WRITE);
  // One more byte in that request's entry (entry and frame lengths grown to match).
  const end = w.e.start + w.e.len;
  const grown = Buffer.concat([rec.subarray(0, end), Buffer.from("!"), rec.subarray(end)]);
  grown.writeUInt32LE(w.f.len + 1, w.f.pos + 1);
  grown.writeUInt32LE(w.e.len + 1, w.e.start - 4);
  const d = replay(grown, { force: true }).divergence;
  assert.is(d?.kind, "bytes");
  assert.is(d.request, w.i);
  assert.is(d.byteOffset, w.e.len);
  assert.is(d.expectedByte, 0x21);
  assert.is(d.actualByte, -1);
  assert.match(d.actual, /end of data/);
});

test("out-bytes: a corrupt, missing or truncated out-bytes frame is a RecordingError (CLI: exit 2)", () => {
  const rec = readFileSync(join(FIXTURES, "pipelined.rec"));
  const w = nthOut(rec, abi.OP_WRITEV);
  const long = Buffer.from(rec);
  long.writeUInt32LE(w.e.len + 1000, w.e.start - 4); // an entry longer than its frame
  assert.throws(() => replay(long, { force: true }), (e) => e instanceof RecordingError && /corrupt out-bytes frame at byte \d+: request \d+ of \d+ needs/.test(e.message));
  const flag = Buffer.from(rec);
  flag[w.f.pos + 5] = 9;
  assert.throws(() => replay(flag, { force: true }), (e) => e instanceof RecordingError && /corrupt out-bytes frame .*bad flag/.test(e.message));
  const missing = Buffer.concat([rec.subarray(0, w.f.pos), rec.subarray(w.f.pos + 5 + w.f.len)]);
  assert.throws(() => replay(missing, { force: true }), (e) => e instanceof RecordingError && /has no out-bytes frame/.test(e.message));
  assert.throws(() => replay(rec.subarray(0, w.e.start + 2), { force: true }), (e) => e instanceof RecordingError && /truncated/.test(e.message));
  const file = join(tmp, "bad-out.rec");
  writeFileSync(file, long);
  const r = spawnSync(process.execPath, [cli, "replay", file, "--force"], { encoding: "utf8" });
  assert.is(r.status, 2, r.stderr);
  assert.match(r.stderr, /^wasm-reactor replay: .*bad-out\.rec: corrupt out-bytes frame/);
});

test("recordings of formats 1 and 2 (before tagged, io_uring-shaped requests) are refused, naming the version", () => {
  const rec = readFileSync(join(FIXTURES, "pipelined.rec"));
  for (const version of [1, 2, 4]) {
    const old = Buffer.from(rec);
    old.writeUInt32LE(version, 8);
    assert.throws(() => replay(old, { force: true }), new RegExp(`format version ${version}; this build reads versions 3`));
    const file = join(tmp, `v${version}.rec`);
    writeFileSync(file, old);
    const r = spawnSync(process.execPath, [cli, "replay", file, "--force"], { encoding: "utf8" });
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`format version ${version}`));
  }
  const v3 = spawnSync(process.execPath, [cli, "replay", join(FIXTURES, "pipelined.rec"), "--force"], { encoding: "utf8" });
  assert.match(v3.stdout, /^replay ok: .*, \d+ out-bytes compared\n$/);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
