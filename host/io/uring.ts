// The io_uring backend: the io API's records (ops.ts: io_uring's own SQE
// layout and field conventions) are copied as they are into a ring of
// host/uring/ring.ts (64 bytes each, their user_data the slot's tag), and
// completions are noticed through the ring's registered eventfd, watched on
// the thread's loop (Node's, or the Reactor's).
//
// Submission is batched: every request made in one JS turn goes to the kernel
// in one io_uring_enter, issued from a microtask (a depth-32 burst of preads is
// one syscall, not 32). What io_uring has no op for (sendfile) or what the
// probe says this kernel lacks goes to a thread pool, started the first time
// it is needed.
//
// Cancellation: IORING_OP_ASYNC_CANCEL naming the request's user_data; its own
// completion carries CANCEL_TAG and is dropped. The cancelled request still
// completes (-ECANCELED, or its result if it was too far along), and only then
// does the front release its buffers.
import * as abi from "../../assembly/abi.ts";
import { libc, check, EFD_CLOEXEC, EFD_NONBLOCK } from "../libc.ts";
import { Ring, IORING_OP, uringAvailability } from "../uring/ring.ts";
import type { BackendContext, IoBackend, Complete } from "./backend.ts";
import { ThreadPool } from "./threadpool.ts";
import { W_OP, W_FD, W_TAG, W_ADDR, OP_SENDFILE } from "./ops.ts";
import type { RequestTable } from "./table.ts";
import type { FdWatcher } from "./watch.ts";

const CANCEL_TAG = -1; // user_data hi word of our ASYNC_CANCEL requests (a slot generation is >= 0)
const eight = Buffer.alloc(8);

export function uringBackend(ctx: BackendContext): { impl: IoBackend } | { reason: string } {
  const a = uringAvailability();
  if (!a.ok) return { reason: a.reason };
  return { impl: new UringBackend(ctx) };
}

class UringBackend implements IoBackend {
  readonly name = "io_uring" as const;
  private readonly ring: Ring;
  private readonly efd: number;
  private readonly t: RequestTable;
  private readonly complete: Complete;
  private readonly watcher: FdWatcher;
  private readonly onPool: Uint8Array;
  private pool: ThreadPool | null = null;
  private flushQueued = false;
  private readonly cancelRec = new Int32Array(16);
  private closed = false;

  constructor(private readonly ctx: BackendContext) {
    this.t = ctx.table;
    this.complete = ctx.complete;
    this.watcher = ctx.watcher;
    this.onPool = new Uint8Array(ctx.table.cap);
    // One SQE per slot at most between two enters; the CQ (twice that) holds
    // every slot's completion plus the cancels'.
    const entries = Math.min(4096, 1 << Math.ceil(Math.log2(Math.max(8, ctx.table.cap))));
    this.ring = new Ring({ entries });
    try {
      this.efd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      this.ring.registerEventfd(this.efd);
    } catch (e) {
      this.ring.close();
      throw e;
    }
    this.watcher.set(this.efd, true, false, () => this.drain());
    process.once("exit", this.onExit);
  }

  /**
   * The process exits without stop(): the eventfd's watch goes now. A signal
   * still pending would otherwise reach koffi during Node's teardown, where it
   * can no longer call into JS (a fatal napi_throw).
   */
  private readonly onExit = (): void => { this.watcher.remove(this.efd); };

  submit(slot: number): void {
    const i32 = this.t.i32, w = this.t.sqe(slot);
    const op = i32[w + W_OP] & 0xff;
    if (op === OP_SENDFILE || !this.ring.supports(op)) {
      this.onPool[slot] = 1;
      (this.pool ??= new ThreadPool(this.ctx)).submit(slot);
      return;
    }
    this.onPool[slot] = 0;
    this.push(i32, w);
  }

  /** Into the ring (entering the kernel first if the SQ is full); the enter itself waits for the microtask. */
  private push(src: Int32Array, w: number): void {
    while (this.ring.pushSqe(src, w) < 0) this.enter();
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => { this.flushQueued = false; this.enter(); });
    }
  }

  private enter(): void {
    if (this.closed || this.ring.queued === 0) return;
    for (;;) {
      const r = this.ring.submit(0);
      if (r >= 0 || (r !== -abi.EINTR && r !== -abi.EAGAIN && r !== -16 /* EBUSY */)) {
        if (r < 0) throw new Error(`io_uring_enter: errno ${-r}`);
        return;
      }
      this.drain(); // the kernel wants its CQ reaped first
    }
  }

  cancel(slot: number): void {
    if (this.onPool[slot]) { this.pool!.cancel(slot); return; }
    const i32 = this.t.i32, w = this.t.sqe(slot), c = this.cancelRec;
    c.fill(0);
    c[W_OP] = IORING_OP.ASYNC_CANCEL;
    c[W_FD] = -1;
    c[W_ADDR] = i32[w + W_TAG]; // addr: the user_data to cancel
    c[W_ADDR + 1] = i32[w + W_TAG + 1];
    c[W_TAG] = slot;
    c[W_TAG + 1] = CANCEL_TAG;
    this.push(c, 0);
  }

  /** The eventfd fired: take every completion the kernel posted. */
  private drain(): void {
    if (this.closed) return;
    // Read before the flush: a completion queued after this read signals
    // again. (The flush's own posting signals too: one idle wake-up later.)
    libc.readBuf(this.efd, eight, 8);
    const ring = this.ring;
    ring.flushCompletions(); // DEFER_TASKRUN: completions are posted inside enter(GETEVENTS)
    for (;;) {
      const n = ring.cqReady();
      if (n === 0) break;
      let h = ring.cqHead();
      for (let i = 0; i < n; i++, h = h + 1 | 0) {
        const c = ring.cqeWord(h);
        const slot = ring.cqes[c], gen = ring.cqes[c + 1], res = ring.cqes[c + 2];
        ring.cqAdvance(1);
        if (gen === CANCEL_TAG) continue;
        this.complete(slot, res);
      }
    }
  }

  forget(): void { /* nothing cached per fd */ }

  close(): Promise<void> | void {
    if (this.closed) return;
    this.closed = true;
    process.removeListener("exit", this.onExit);
    this.watcher.remove(this.efd);
    try { this.ring.unregisterEventfd(); } catch { /* closing anyway */ }
    this.ring.close();
    libc.close(this.efd);
    return this.pool?.close();
  }
}
