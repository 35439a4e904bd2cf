#!/usr/bin/env node
// The io_uring ring driver's cost per request (host/uring/ring.ts), and what
// its setup flags buy: rounds of k requests on k socket pairs, each round one
// io_uring_enter(k, k, GETEVENTS), against the same requests as k libc calls
// (the libc executor's way). Two kinds of request: recv on an empty socket
// (-EAGAIN: the common "nothing yet" of an event loop) and a 64-byte send
// (which the peer's buffer takes).
//
//   node bench/uring-ring.mjs            # k = 1, 8, 64, 512; ~20 s
//   node bench/uring-ring.mjs --smoke    # tiny counts: checks it runs, figures mean nothing
//
// Prints ns per request for each flag set, and with the fds registered as
// fixed files (the last flag set). The machine is shared: figures are
// indicative; compare columns of one run, not runs.
import { createRequire } from "node:module";
import {
  libc, errno, Ring, IORING_OP, uringAvailability,
} from "../dist/index.js";

const SMOKE = process.argv.includes("--smoke");
const require = createRequire(import.meta.url);
const koffi = require("koffi");
const socketpairRaw = koffi.load("libc.so.6").func("int socketpair(int, int, int, _Out_ void *)");

const a = uringAvailability();
if (!a.ok) { console.log(`io_uring unavailable (${a.reason}): nothing to measure`); process.exit(0); }

// Flag values (linux/io_uring.h), as ring.ts spells them.
const SUBMIT_ALL = 1 << 7, COOP_TASKRUN = 1 << 8, SINGLE_ISSUER = 1 << 12, DEFER_TASKRUN = 1 << 13, NO_SQARRAY = 1 << 16;
const SETS = [
  ["none", 0],
  ["SUBMIT_ALL|COOP_TASKRUN", SUBMIT_ALL | COOP_TASKRUN],
  ["+SINGLE_ISSUER", SUBMIT_ALL | COOP_TASKRUN | SINGLE_ISSUER],
  ["+DEFER_TASKRUN", SUBMIT_ALL | COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN],
  ["+NO_SQARRAY", SUBMIT_ALL | COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN | NO_SQARRAY],
];
const KS = SMOKE ? [1, 8] : [1, 8, 64, 512];
const TOTAL = SMOKE ? 2_000 : 400_000; // requests per measurement

const pairs = [];
for (let i = 0; i < Math.max(...KS); i++) {
  const sv = Buffer.alloc(8);
  if (socketpairRaw(1, 1 | 0o4000 | 0o2000000, 0, sv) < 0) throw new Error(`socketpair: errno ${errno()}`);
  pairs.push([sv.readInt32LE(0), sv.readInt32LE(4)]);
}
const buf = new Uint8Array(new ArrayBuffer(4096));
const bufAddr = Number(koffi.address(buf.buffer));
const sink = Buffer.alloc(1 << 20);

function drainPeers(k) {
  for (let i = 0; i < k; i++) while (libc.readBuf(pairs[i][1], sink, sink.length) > 0) { /* empty it */ }
}

function ringRun(flags, k, op, fixed = false) {
  let ring;
  try { ring = new Ring({ entries: 512, flags, tuning: false }); } catch (e) { return `n/a (${e.code ?? e.message})`; }
  // Fixed files: the pairs' fds registered once, SQEs name them by index (IOSQE_FIXED_FILE): no fget/fput per request.
  if (fixed) ring.registerFiles(pairs.map(([x]) => x));
  const s = ring.sqes, rounds = Math.max(1, Math.floor(TOTAL / k));
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < k; i++) {
      const w = ring.sqeSlot();
      s[w] = fixed ? op | (1 << 8) : op; s[w + 1] = fixed ? i : pairs[i][0];
      s[w + 4] = bufAddr % 4294967296 | 0; s[w + 5] = (bufAddr / 4294967296) | 0;
      s[w + 6] = 64; s[w + 7] = 0x40; // MSG_DONTWAIT
      s[w + 8] = i;
    }
    ring.submit(k);
    ring.cqAdvance(ring.cqReady());
    if (op === IORING_OP.SEND && (r & 63) === 63) drainPeers(k);
  }
  const ns = Number(process.hrtime.bigint() - t0) / (rounds * k);
  ring.close();
  if (op === IORING_OP.SEND) drainPeers(k);
  return ns.toFixed(0);
}

function libcRun(k, op) {
  const rounds = Math.max(1, Math.floor(TOTAL / k));
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < k; i++) {
      const n = op === IORING_OP.RECV ? libc.read(pairs[i][0], bufAddr, 64) : libc.send(pairs[i][0], bufAddr, 64, 0x40);
      if (n < 0) errno();
    }
    if (op === IORING_OP.SEND && (r & 63) === 63) drainPeers(k);
  }
  const ns = Number(process.hrtime.bigint() - t0) / (rounds * k);
  if (op === IORING_OP.SEND) drainPeers(k);
  return ns.toFixed(0);
}

for (const [what, op] of [["recv -> EAGAIN", IORING_OP.RECV], ["send 64 B", IORING_OP.SEND]]) {
  console.log(`\n${what}: ns per request (k requests per round)`);
  console.log(["flags".padEnd(26), ...KS.map((k) => `k=${k}`.padStart(8))].join(""));
  console.log(["libc (one call each)".padEnd(26), ...KS.map((k) => libcRun(k, op).padStart(8))].join(""));
  for (const [name, flags] of SETS) console.log([name.padEnd(26), ...KS.map((k) => ringRun(flags, k, op).padStart(8))].join(""));
  const all = SETS[SETS.length - 1][1];
  console.log(["+fixed files".padEnd(26), ...KS.map((k) => ringRun(all, k, op, true).padStart(8))].join(""));
}
for (const [x, y] of pairs) { libc.close(x); libc.close(y); }
