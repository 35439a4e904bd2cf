// A file-pool worker (host/filepool.ts has the shared layout and why): takes
// the next job from the shared ring, carries it out with blocking calls
// (FileServer's open/stat/list, pread), writes the result into the job's slot,
// publishes the slot and wakes the reactor through the eventfd.
import { workerData } from "node:worker_threads";
import * as abi from "../assembly/abi.ts";
import { FileServer } from "./files.ts";
import { libc, errno, memoryView } from "./libc.ts";
import {
  type FilePoolWorkerData, SLOT_WORDS, S_OP, S_FD, S_ADDR, S_LEN, S_FLAGS, S_OFF, S_MEM, S_RES,
  JOB_TAIL, JOB_HEAD, DONE_TAIL, CLOSING, LIVE, BELL, FDS_CLOSED, JOBS_AT, DONE_AT, SLOTS_AT, WORKERS_AT,
  W_READY, W_ENDED, at,
} from "./filepool.ts";

const data = workerData as FilePoolWorkerData;
const i = new Int32Array(data.sab);
const STATE = WORKERS_AT + 2 * data.id, JOB = STATE + 1; // this worker's liveness words (host/filepool.ts)
let files: FileServer;
const one = Buffer.alloc(8);
one.writeBigUInt64LE(1n);
const [delayPath, delayMs] = data.delay ? [data.delay.slice(0, data.delay.lastIndexOf(":")), Number(data.delay.slice(data.delay.lastIndexOf(":") + 1))] : ["", 0];
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** The reactor's linear memory, seen from this thread (same addresses). */
const memory: { base: number; u8: Uint8Array; size: number; refresh(): void; ensure(bytes: number): void } = {
  base: data.base,
  u8: new Uint8Array(0),
  size: 0,
  refresh() { /* sized per job: ensure() */ },
  ensure(bytes: number) {
    if (bytes > this.size) { this.u8 = memoryView(this.base, bytes); this.size = bytes; }
  },
};

function carry(r: number): number {
  const op = i[r + S_OP], addr = i[r + S_ADDR], len = i[r + S_LEN];
  memory.ensure(i[r + S_MEM]);
  switch (op) {
    case abi.OP_OPEN:
      if (delayMs > 0 && pathAt(addr, len).includes(delayPath)) Atomics.wait(sleeper, 0, 0, delayMs);
      if (data.die && data.die !== "start" && pathAt(addr, len).includes(data.die)) throw new WorkerDeath();
      return files.open(memory, addr, len, i[r + S_FLAGS], i[r + S_OFF] === 1);
    case abi.OP_LIST: return files.list(memory, addr, len, i[r + S_FLAGS]);
    case abi.OP_PREAD: {
      const n = libc.pread(i[r + S_FD], data.base + addr, len, i[r + S_OFF]);
      return n < 0 ? -errno() : n;
    }
    default: return -abi.EINVAL;
  }
}

function pathAt(addr: number, len: number): string { return Buffer.from(memory.u8.subarray(addr, addr + len)).toString("latin1"); }

/** The test hook's death (WASM_REACTOR_FILEPOOL_DIE): not caught per job, it ends the worker. */
class WorkerDeath extends Error { constructor() { super(`test hook WASM_REACTOR_FILEPOOL_DIE=${data.die}: this worker dies`); } }

function serve(): void {
for (;;) {
  // The bell first: a post or close() after this read changes it, so the
  // wait below cannot sleep through either.
  const bell = Atomics.load(i, BELL);
  if (Atomics.load(i, CLOSING)) break;
  const head = Atomics.load(i, JOB_HEAD);
  if (head === Atomics.load(i, JOB_TAIL)) { Atomics.wait(i, BELL, bell); continue; }
  // Read the job before claiming it: while JOB_HEAD is still `head`, job
  // `head` is unclaimed, so its slot is in flight and its ring position
  // cannot have been reused (at most SLOTS requests are in flight). Read
  // after the claim, a worker preempted in between could find the position
  // reused by a later post.
  const v = Atomics.load(i, JOBS_AT + at(head));
  if (Atomics.compareExchange(i, JOB_HEAD, head, (head + 1) | 0) !== head) continue; // another worker took it
  const s = v - 1;
  const rec = SLOTS_AT + s * SLOT_WORDS;
  Atomics.store(i, JOB, v); // if this worker dies now, the loop fails this job (host/filepool.ts liveness)
  let res: number;
  try { res = carry(rec); } catch (e) { if (e instanceof WorkerDeath) throw e; res = -abi.EIO; } // a host bug, never a lost completion
  i[rec + S_RES] = res;
  // Taken back before publishing: the loop cannot fail a job that completed.
  if (Atomics.exchange(i, JOB, 0) === 0) continue; // the loop counted this worker dead and failed it already
  const d = Atomics.add(i, DONE_TAIL, 1);
  Atomics.store(i, DONE_AT + at(d), s + 1);
  libc.writeBuf(data.eventfd, one, 8);
}
}

let normal = false;
try {
  if (data.die === "start") throw new WorkerDeath(); // test hook: a worker that never starts
  files = new FileServer(data.root, { precompressed: data.precompressed, rootFd: data.rootFd });
  Atomics.store(i, STATE, W_READY);
  serve();
  normal = true;
} finally {
  // Dead or closed: the loop sees W_ENDED (a death while the pool is open).
  Atomics.store(i, STATE, W_ENDED);
  // The last worker out closes the eventfd and the root fd copy (host/filepool.ts LIVE;
  // FDS_CLOSED: once, by it or by close() when every worker died before).
  const last = Atomics.sub(i, LIVE, 1) === 1;
  if (last && (normal || Atomics.load(i, CLOSING)) && Atomics.compareExchange(i, FDS_CLOSED, 0, 1) === 0) {
    libc.close(data.eventfd);
    libc.close(data.rootFd);
  }
  Atomics.notify(i, LIVE); // close() may be waiting for the workers to end
}
