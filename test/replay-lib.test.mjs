// Replay as a library for other test suites: readRecording() (header, calls,
// memory written, decoded requests with their results), record() (a scenario
// recorded in memory), replay()'s divergence and trap reports, and the CLI's
// wording and exit code for a recording that reproduces a trap.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, mkdtempSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import net from "node:net";
import { readRecording, record, replay, Server, Reactor, MemorySink, RecordingError, abi } from "../dist/index.js";
import { FIXTURES } from "./fixtures/record.mjs";
import { within } from "./lib/procs.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "bin", "wasm-reactor.js");
const tmp = mkdtempSync(join(tmpdir(), "wr-replay-lib-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** The bytes a READ request put into memory: the next call's write at its buffer address. */
function bytesRead(rec, call, request) {
  const next = rec.calls[call.index]; // calls are 1-based: this is the call after `call`
  const w = next?.writes.find((m) => m.offset === request.args[0] && m.bytes.length === request.result);
  return w ? Buffer.from(w.bytes).toString("latin1") : null;
}

test("readRecording: the header, and every call with its inputs, requests and their results", () => {
  const bytes = readFileSync(join(FIXTURES, "pipelined.rec"));
  const rec = readRecording(bytes);
  assert.ok(rec.complete);
  assert.is(rec.version, 3);
  assert.match(rec.header.coreSha256, /^[0-9a-f]{64}$/);
  assert.type(rec.header.config.maxFds, "number");
  assert.ok(Array.isArray(rec.header.argv) && typeof rec.header.arch === "string" && rec.header.time.length === 2);
  const s = replay(bytes, { force: true });
  assert.is(rec.calls.length, s.calls);
  assert.is(rec.batches, s.batches);
  assert.is(rec.calls.reduce((n, c) => n + c.requests.length, 0), s.requests);
  // The client wrote three pipelined GETs in one write: some READ brought them in.
  const reads = rec.calls.flatMap((c) => c.requests.filter((r) => r.op === "READ" && r.result > 0).map((r) => bytesRead(rec, c, r)));
  assert.ok(reads.some((t) => t && t.includes("GET /a.txt") && t.includes("GET /c.txt")), `reads: ${JSON.stringify(reads)}`);
  // Each READ went to an fd that some dispatch() batch had reported readable first.
  const readable = new Set(rec.calls.flatMap((c) => (c.events ?? []).filter((e) => e.events & abi.EV_READABLE).map((e) => e.fd)));
  const readFds = new Set(rec.calls.flatMap((c) => c.requests.filter((r) => r.op === "READ").map((r) => r.fd)));
  for (const fd of readFds) assert.ok(readable.has(fd), `fd ${fd} read without a readiness event`);
  // Calls are numbered, batched and timed in order.
  rec.calls.forEach((c, i) => assert.is(c.index, i + 1));
  assert.ok(rec.calls.every((c, i) => i === 0 || (c.batch >= rec.calls[i - 1].batch && c.time[0] >= rec.calls[i - 1].time[0])));
  assert.ok(rec.calls.filter((c) => c.name === "complete").every((c) => c.result !== null));
  // Format 2: every request carries the bytes it pointed at: the paths opened, the responses written.
  const all = rec.calls.flatMap((c) => c.requests);
  assert.ok(all.every((r) => r.out instanceof Uint8Array));
  const text = (op) => all.filter((r) => r.op === op).map((r) => Buffer.from(r.out).toString("latin1"));
  assert.equal(text("OPEN"), ["a.txt", "b.txt", "c.txt"]);
  assert.equal(text("WRITEV").map((t) => t.slice(2 * 8, 2 * 8 + 15)), ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]);
  assert.ok(all.filter((r) => r.op === "READ" || r.op === "CTL" || r.op === "CLOSE").every((r) => r.out.length === 0));
});

test("readRecording: a recording cut short reads as incomplete; bytes that are not one throw RecordingError", () => {
  const bytes = readFileSync(join(FIXTURES, "fragmented.rec"));
  const whole = readRecording(bytes);
  const half = readRecording(bytes.subarray(0, Math.floor(bytes.length / 2)));
  assert.not.ok(half.complete);
  assert.ok(half.calls.length > 0 && half.calls.length < whole.calls.length);
  assert.throws(() => readRecording(Buffer.from("not a recording")), (e) => e instanceof RecordingError && /bad magic/.test(e.message));
});

test("record(): a scenario recorded in memory replays, and shows what the client sent and got back", async () => {
  const bytes = await record(async (opts) => {
    const server = new Server({ protocol: "echo", port: 0, handleSignals: false, maxFds: 4096, ...opts });
    server.attach();
    try {
      const got = await within(5_000, new Promise((resolve, reject) => {
        const s = net.connect(server.port, "127.0.0.1", () => s.write("hello, recorder"));
        s.on("data", (d) => { s.destroy(); resolve(d.toString()); });
        s.on("error", reject);
      }), "the echo");
      assert.is(got, "hello, recorder");
    } finally {
      server.stop();
      server.close();
    }
  });
  const s = replay(bytes);
  assert.ok(s.ok, s.divergence?.message);
  assert.equal(s.traps, []);
  const rec = readRecording(bytes);
  const writes = rec.calls.flatMap((c) => c.requests.filter((r) => r.op === "WRITE" || r.op === "SEND"));
  assert.ok(writes.some((r) => r.args[1] === "hello, recorder".length && r.result === r.args[1]), JSON.stringify(writes));
  const reads = rec.calls.flatMap((c) => c.requests.filter((r) => r.op === "READ" && r.result > 0).map((r) => bytesRead(rec, c, r)));
  assert.ok(reads.includes("hello, recorder"), JSON.stringify(reads));
});

test("record(): a scenario that does not use or does not close the recording is an error, and a sink holds one recording", async () => {
  let e1 = null;
  try { await record(async () => {}); } catch (e) { e1 = e; }
  assert.match(String(e1), /started no Server\/Reactor\/Loop/);
  let leaked = null, e2 = null;
  try { await record(async (opts) => { leaked = new Reactor({ handleSignals: false, maxFds: 256, ...opts }); }); } catch (e) { e2 = e; }
  leaked?.close();
  assert.match(String(e2), /close\(\) the Server\/Reactor/);
  const sink = new MemorySink();
  const first = new Reactor({ handleSignals: false, maxFds: 256, record: sink });
  assert.throws(() => new Reactor({ handleSignals: false, maxFds: 256, record: sink }), /already holds a recording/);
  first.close();
});

test("replay(): a divergence names batch, call, request, byte and field, with expected and actual", () => {
  const bytes = Buffer.from(readFileSync(join(FIXTURES, "pipelined.rec")));
  let p = 16 + bytes.readUInt32LE(12);
  while (bytes[p] !== 4 /* F_SQ */) p += 5 + bytes.readUInt32LE(p + 1);
  bytes[p + 5 + abi.SQE_FD] ^= 0x40; // the first request's fd
  const s = replay(bytes, { force: true });
  assert.not.ok(s.ok);
  const d = s.divergence;
  assert.is(d.kind, "request");
  assert.is(d.request, 0);
  assert.is(d.byteOffset, abi.SQE_FD);
  assert.is(d.field, "fd");
  assert.ok(d.call >= 1 && d.requests >= 1);
  assert.is(d.fileOffset, p);
  assert.match(d.expected, /fd=\d+/);
  assert.ok(d.expected !== d.actual);
  assert.match(d.message, /request 0 of \d+: expected .* got .* \(byte 4: fd\)/);
  // A changed return value.
  const b2 = Buffer.from(readFileSync(join(FIXTURES, "pipelined.rec")));
  let q = 16 + b2.readUInt32LE(12);
  while (b2[q] !== 3 /* F_RET */) q += 5 + b2.readUInt32LE(q + 1);
  b2.writeDoubleLE(b2.readDoubleLE(q + 5) + 7, q + 5);
  const r2 = replay(b2, { force: true });
  assert.is(r2.divergence?.kind, "result");
  assert.is(Number(r2.divergence.expected), Number(r2.divergence.actual) + 7);
});

test("a recording that reproduces a trap: replay() is ok with the trap listed; the CLI says so and exits 1", () => {
  const out = join(tmp, "trap");
  // The fuzzer's injected trap: debugTrapFd(4), so the core traps when it next runs fd 4.
  const fz = spawnSync(process.execPath, [join(root, "build/fuzz.js"), "--seconds", "0", "--seed", "7", "--inject-trap", "--out", out], { encoding: "utf8" });
  assert.is(fz.status, 1, fz.stdout + fz.stderr);
  const file = join(out, readdirSync(out).find((f) => f.endsWith(".rec")));
  const s = replay(readFileSync(file));
  assert.ok(s.ok, "every request matched");
  assert.is(s.traps.length, 1);
  assert.is(s.traps[0].fd, 4);
  assert.is(s.traps[0].message, "unreachable");
  assert.ok(s.traps[0].call >= 1 && s.traps[0].batch >= 1);
  const rec = readRecording(readFileSync(file));
  assert.ok(rec.calls[s.traps[0].call - 1].trapped, "readRecording marks the same call");
  const r = spawnSync(process.execPath, [cli, "replay", file], { encoding: "utf8" });
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.is(r.stdout, "");
  assert.match(r.stderr, /replay matched the recording \(\d+ batches, .*\), but the core trapped 1 time:\n {2}batch \d+, call \d+ \(\w+\([\d, ]*\)\), serving fd 4: unreachable\n/);
  assert.not.match(r.stderr, /replay ok/);
});

test.run();
