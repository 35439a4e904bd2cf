// Cross-thread runInLoop: a bounded multi-producer, single-consumer queue in
// a SharedArrayBuffer plus an eventfd that wakes a loop blocked in
// epoll_wait. Producers (any worker_thread) reserve a slot with a CAS on the
// tail, write the message, then publish it by storing the slot's sequence
// number (Vyukov's bounded queue); the loop thread consumes in order. A full
// queue throws QueueFullError at the producer: nothing is dropped silently.
//
// Layout (Int32 words): [0] head (consumer), [1] tail (producers), [2] capacity,
// [3] slot bytes; then `capacity` slots of SLOT_BYTES each:
//   +0 i32 sequence, +4 i32 length, +8 payload (UTF-8 JSON)
//
// Positions and sequence numbers are Int32 counters that wrap: the capacity
// is a power of two, a slot is `pos & (cap - 1)`, and positions are compared
// as Int32 differences ((a - b) | 0), so the queue keeps working past 2^31
// and 2^32 messages (test hook WASM_REACTOR_REMOTE_COUNTER_START=N starts
// the counters at N to see it).
import { libc, check, EFD_CLOEXEC, EFD_NONBLOCK, errno, SysError } from "./libc.ts";

const HEADER_BYTES = 16;
export const SLOT_BYTES = 512;
const PAYLOAD_MAX = SLOT_BYTES - 8;

export class QueueFullError extends Error {
  constructor(capacity: number) {
    super(`runInLoop: the loop's queue is full (${capacity} messages waiting); retry later`);
    this.name = "QueueFullError";
  }
}

/** What a worker needs to reach a loop: pass it in workerData or postMessage. */
export interface RemoteDescriptor {
  buffer: SharedArrayBuffer;
  eventfd: number;
}

export function createRemoteQueue(requested = 1024): RemoteDescriptor {
  if (!Number.isInteger(requested) || requested < 1 || requested > 1 << 20) throw new RangeError(`remote queue capacity must be 1..${1 << 20}, got ${requested}`);
  const capacity = 1 << Math.ceil(Math.log2(requested)); // a power of two: slots by mask survive the wrap
  const start = Number(process.env.WASM_REACTOR_REMOTE_COUNTER_START ?? 0) | 0;
  const buffer = new SharedArrayBuffer(HEADER_BYTES + capacity * SLOT_BYTES);
  const h = new Int32Array(buffer, 0, 4);
  h[0] = h[1] = start;
  h[2] = capacity;
  h[3] = SLOT_BYTES;
  for (let i = 0; i < capacity; i++) {
    const pos = (start + i) | 0;
    new Int32Array(buffer, HEADER_BYTES + (pos & (capacity - 1)) * SLOT_BYTES, 1)[0] = pos;
  }
  const eventfd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  return { buffer, eventfd };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);

/** The producer side, used from any thread. */
export class RemoteLoop {
  private readonly h: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly capacity: number;

  constructor(private readonly d: RemoteDescriptor) {
    this.h = new Int32Array(d.buffer);
    this.bytes = new Uint8Array(d.buffer);
    this.capacity = this.h[2];
  }

  /** Runs the task named `name` (defined with EventWatcher.defineTask) in the loop's thread. */
  runInLoop(name: string, ...args: unknown[]): void {
    const payload = encoder.encode(JSON.stringify([name, args]));
    if (payload.length > PAYLOAD_MAX) throw new RangeError(`runInLoop: message of ${payload.length} bytes exceeds ${PAYLOAD_MAX}`);
    const h = this.h;
    const cap = this.capacity;
    let pos = Atomics.load(h, 1);
    for (;;) {
      const slot = HEADER_BYTES + (pos & (cap - 1)) * SLOT_BYTES;
      const seq = Atomics.load(h, slot >> 2);
      const dif = (seq - pos) | 0;
      if (dif === 0) {
        const prev = Atomics.compareExchange(h, 1, pos, (pos + 1) | 0);
        if (prev === pos) {
          h[(slot >> 2) + 1] = payload.length;
          this.bytes.set(payload, slot + 8);
          Atomics.store(h, slot >> 2, (pos + 1) | 0); // publish
          break;
        }
        pos = prev;
      } else if (dif < 0) {
        throw new QueueFullError(cap);
      } else {
        pos = Atomics.load(h, 1);
      }
    }
    // Wake the loop: an eventfd write never blocks short of 2^64-2 pending.
    if (libc.writeBuf(this.d.eventfd, one, 8) < 0) throw new SysError("eventfd write", errno());
  }
}

/** The consumer side, on the loop's thread. */
export class RemoteInbox {
  private readonly h: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly capacity: number;
  private readonly scratch = Buffer.alloc(8);

  constructor(readonly d: RemoteDescriptor) {
    this.h = new Int32Array(d.buffer);
    this.bytes = new Uint8Array(d.buffer);
    this.capacity = this.h[2];
  }

  /** Clears the eventfd and hands every published message to `each`, in order. */
  drain(each: (name: string, args: unknown[]) => void): void {
    libc.readBuf(this.d.eventfd, this.scratch, 8);
    const h = this.h;
    const cap = this.capacity;
    for (;;) {
      const pos = h[0];
      const slot = HEADER_BYTES + (pos & (cap - 1)) * SLOT_BYTES;
      if (Atomics.load(h, slot >> 2) !== ((pos + 1) | 0)) return; // empty, or not yet published
      const len = h[(slot >> 2) + 1];
      const [name, args] = JSON.parse(decoder.decode(this.bytes.slice(slot + 8, slot + 8 + len)));
      Atomics.store(h, slot >> 2, (pos + cap) | 0); // free the slot for the lap after next
      Atomics.store(h, 0, (pos + 1) | 0);
      each(name, args);
    }
  }

  close(): void { libc.close(this.d.eventfd); }
}
