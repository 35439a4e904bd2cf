// Cross-thread runInLoop: a bounded multi-producer, single-consumer queue in
// a SharedArrayBuffer plus an eventfd that wakes a loop blocked in
// epoll_wait. Producers (any worker_thread) reserve a slot with a CAS on the
// tail, write the message, then publish it by storing the slot's sequence
// number (Vyukov's bounded queue); the loop thread consumes in order. A full
// queue throws QueueFullError at the producer: nothing is dropped silently.
// The protocol's steps, its layout and the argument that it is safe (who
// writes which word, why a slot is not reused under its reader, ABA, counter
// wrap, memory ordering) are in host/remote-queue.ts; this file adds the
// eventfd and the messages' encoding.
import { libc, check, EFD_CLOEXEC, EFD_NONBLOCK, errno, SysError } from "./libc.ts";
import {
  PAYLOAD_MAX, SLOT_FREE, SLOT_FULL, queueCapacity, createQueueBuffer, loadTail, slotState, claim, writeSlot, publish,
  loadHead, isPublished, readSlot, release,
} from "./remote-queue.ts";

export { SLOT_BYTES } from "./remote-queue.ts";

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
  const capacity = queueCapacity(requested);
  const start = Number(process.env.WASM_REACTOR_REMOTE_COUNTER_START ?? 0) | 0;
  const buffer = createQueueBuffer(capacity, start);
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
    let pos = loadTail(h);
    for (;;) {
      const state = slotState(h, cap, pos);
      if (state === SLOT_FREE) {
        const prev = claim(h, pos);
        if (prev === pos) break;
        pos = prev;
      } else if (state === SLOT_FULL) {
        throw new QueueFullError(cap);
      } else {
        pos = loadTail(h);
      }
    }
    writeSlot(h, this.bytes, cap, pos, payload);
    publish(h, cap, pos);
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
      const pos = loadHead(h);
      if (!isPublished(h, cap, pos)) return; // empty, or not yet published
      const message = readSlot(h, this.bytes, cap, pos);
      release(h, cap, pos);
      const [name, args] = JSON.parse(decoder.decode(message));
      each(name, args);
    }
  }

  close(): void { libc.close(this.d.eventfd); }
}
