// Deterministic replay: the committed fixtures, a fresh live recording, and
// what happens to recordings that are truncated, corrupt or from another build.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, readdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { replay, RecordingError } from "../dist/index.js";
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

test("the slow-reader fixture really went through EAGAIN: EPOLLOUT armed, then disarmed", () => {
  const b = readFileSync(join(FIXTURES, "slow-reader.rec"));
  let p = 16 + b.readUInt32LE(12), arm = 0, disarm = 0;
  while (p < b.length) {
    const t = b[p], l = b.readUInt32LE(p + 1), body = p + 5;
    if (t === 4) for (let i = 0; i < l; i += 24) {
      if (b.readInt32LE(body + i) === 1 /* OP_CTL */ && b.readInt32LE(body + i + 8) === 3 /* MOD */) {
        if (b.readInt32LE(body + i + 12) & 4 /* EPOLLOUT */) arm++; else disarm++;
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

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
