// The protocol of the cross-thread runInLoop queue (host/remote.ts), with no
// I/O: a bounded multi-producer, single-consumer ring in a SharedArrayBuffer
// (Vyukov's bounded queue), as the steps each side takes. remote.ts runs them
// in a row; test/remote-queue.test.mjs runs them one at a time, in every order
// (build/remote-queue.js), and checks the properties argued below.
//
// Layout (Int32 words): [0] head, [1] tail, [2] capacity, [3] slot bytes;
// then `capacity` slots of SLOT_BYTES each:
//   +0 i32 sequence, +4 i32 length, +8 payload (UTF-8 JSON)
//
// ## Who writes which word
// - tail: producers only, and only by compareExchange (claim).
// - head: the consumer only (one thread). Producers never read it: a
//   slot's sequence says all they need (head is in the buffer only to keep
//   the queue's state in one place).
// - a slot's sequence (s = its slot, p any position with p & mask = s):
//     seq = p          free for position p     written by init, or by the consumer's release of p - cap
//     seq = p + 1      holds p's message       written by the producer that claimed p (publish)
//   The release of p writes p + cap: "free for position p + cap", one lap on.
//   Every store to a sequence is made by the one agent that owns the slot in
//   the state it leaves.
// - a slot's length and payload: written by the producer that claimed p,
//   between claim and publish; read by the consumer between check and release.
//
// ## Order of a message's life, and why a slot is never reused under a reader
// producer: load tail = p; load seq(s); seq == p? CAS tail p -> p + 1 (the claim);
//           write length, payload; store seq = p + 1 (publish)
// consumer: load seq(s) == head + 1? (check); read length, payload; store
//           seq = head + cap (release); store head = head + 1
// A producer writes slot s only for a position q it has claimed, and only
// after it saw seq(s) == q. While the consumer reads position p in s,
// seq(s) == p + 1, and it stays so until the consumer's release (no one else
// stores to s in that state). p + 1 == q would need q - p = k * cap == 1, so
// it cannot happen for cap >= 2 (which is why the capacity is at least 2: with
// one slot, "holds p" and "free for p + 1" are the same number, and a producer
// would overwrite a message not yet read).
//
// ## ABA
// A claim's check and its CAS are two steps, and another producer may run in
// between. The CAS on tail is the claim's only decision: it succeeds only if
// tail is still p, i.e. no one has claimed p yet. Only p's claimer moves
// seq(s) on from p, so at that moment seq(s) is still the p the producer saw.
// A stale check (the slot moved on, or another producer took p) makes the CAS
// fail. The producer then retries from the tail that the CAS returned, so a
// failed CAS has no effect.
// The one ABA left is tail itself coming back to p, which takes 2^32 claims
// while one producer stalls between two instructions. Every claim must also
// be consumed, since at most cap messages wait, and each one costs an eventfd
// write(2). At 10 million messages/s that is a stall of over 7 minutes. It is
// a bound, not a proof; 64-bit counters (BigInt64Array) would raise it to
// centuries, at the cost of a BigInt per step.
//
// ## Why the counters' wrap is harmless
// Positions and sequences are Int32 and wrap. The capacity is a power of two,
// so it divides 2^32, and `p & (cap - 1)` names the same slot on both sides
// of the wrap. The only comparisons are equality and the sign of
// (seq - p) | 0, for values within cap <= 2^20 of each other, where the
// wrapped difference is the true one. WASM_REACTOR_REMOTE_COUNTER_START
// starts the counters anywhere, to test this.
//
// ## Memory ordering
// Every access to tail and to the sequences is an Atomics operation; these
// are sequentially consistent. Length and payload are plain accesses, and
// their order comes from synchronization. When the consumer's Atomics.load of
// seq reads the value that the producer's Atomics.store (publish) wrote, the
// store synchronizes-with the load (ECMAScript memory model). So the
// producer's earlier plain writes happen-before the consumer's later plain
// reads: the consumer sees the whole message. In the same way, the
// consumer's release store is read by the next lap's claimer: the consumer's
// reads happen-before that producer's writes, and so cannot see them. No
// plain access races with another, so no read can be torn.

export const HEADER_BYTES = 16;
export const SLOT_BYTES = 512;
export const PAYLOAD_MAX = SLOT_BYTES - 8;
const HEAD = 0, TAIL = 1;

/** A claim attempt's verdict on the slot of position p (slotState). */
export const SLOT_FREE = 0, SLOT_FULL = 1, SLOT_STALE = 2;

/** The capacity a request gets: a power of two (slots by mask survive the wrap), at least 2 (see above). */
export function queueCapacity(requested: number): number {
  if (!Number.isInteger(requested) || requested < 1 || requested > 1 << 20) throw new RangeError(`remote queue capacity must be 1..${1 << 20}, got ${requested}`);
  return Math.max(2, 1 << Math.ceil(Math.log2(requested)));
}

/** A new queue's buffer, counters starting at `start`. */
export function createQueueBuffer(capacity: number, start = 0): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(HEADER_BYTES + capacity * SLOT_BYTES);
  const h = new Int32Array(buffer);
  h[HEAD] = h[TAIL] = start | 0;
  h[2] = capacity;
  h[3] = SLOT_BYTES;
  for (let i = 0; i < capacity; i++) {
    const pos = (start + i) | 0;
    h[seqWord(pos, capacity)] = pos;
  }
  return buffer;
}

/** The Int32 index of position `pos`'s sequence word. */
export function seqWord(pos: number, cap: number): number {
  return (HEADER_BYTES + (pos & (cap - 1)) * SLOT_BYTES) >> 2;
}

// ---- producer steps ----

/** Producer, step 1: where the tail is now. */
export function loadTail(h: Int32Array): number {
  return Atomics.load(h, TAIL);
}

/** Producer, step 2: may `pos` be claimed? FREE: try it; FULL: the slot holds an unread message from a lap ago; STALE: another producer took pos, reload the tail. */
export function slotState(h: Int32Array, cap: number, pos: number): number {
  const dif = (Atomics.load(h, seqWord(pos, cap)) - pos) | 0;
  return dif === 0 ? SLOT_FREE : dif < 0 ? SLOT_FULL : SLOT_STALE;
}

/** Producer, step 3: the claim. Returns the tail it found: `pos` if the claim is ours, else where to try next. */
export function claim(h: Int32Array, pos: number): number {
  return Atomics.compareExchange(h, TAIL, pos, (pos + 1) | 0);
}

/** Producer, step 4: the message into the claimed slot (plain writes: ordered by publish). */
export function writeSlot(h: Int32Array, bytes: Uint8Array, cap: number, pos: number, payload: Uint8Array): void {
  const w = seqWord(pos, cap);
  h[w + 1] = payload.length;
  bytes.set(payload, (w << 2) + 8);
}

/** Producer, step 5: publish; the consumer may read the slot from now on. */
export function publish(h: Int32Array, cap: number, pos: number): void {
  Atomics.store(h, seqWord(pos, cap), (pos + 1) | 0);
}

// ---- consumer steps ----

/** Consumer, step 1: the next position to read, and whether its message is published. */
export function loadHead(h: Int32Array): number {
  return h[HEAD];
}
export function isPublished(h: Int32Array, cap: number, pos: number): boolean {
  return Atomics.load(h, seqWord(pos, cap)) === ((pos + 1) | 0);
}

/** Consumer, step 2: a copy of the message (the slot is reused once released). */
export function readSlot(h: Int32Array, bytes: Uint8Array, cap: number, pos: number): Uint8Array {
  const w = seqWord(pos, cap);
  const at = (w << 2) + 8;
  return bytes.slice(at, at + h[w + 1]);
}

/** Consumer, step 3: free the slot for the producer one lap on, and move the head. */
export function release(h: Int32Array, cap: number, pos: number): void {
  Atomics.store(h, seqWord(pos, cap), (pos + cap) | 0);
  Atomics.store(h, HEAD, (pos + 1) | 0);
}
