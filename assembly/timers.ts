// Timer heap: a fixed pool of timer records and a binary min-heap of record
// indices, ordered by (deadline, sequence).
//
// Sans-IO: time is an input (f64 monotonic milliseconds), nothing here reads
// a clock. The reactor asks `timerPollTimeout(now)` for its epoll_wait
// timeout, then drains `timerPopDue(now)` and either re-arms each popped
// timer (`timerRearm`) or frees it (`timerFree`).
//
// Memory you can count: `timersInit(capacity)` allocates the record slab and
// the heap array once; nothing here allocates afterwards (the stub runtime
// never frees, so a per-timer allocation would be a leak).
//
// Ids. A timer id is `(generation << 20) | slot`: 20 bits of slot, 11 bits of
// generation in 1..2047, so ids are positive and never 0. Freeing a record
// bumps its generation, so every function rejects a stale id (false / -1)
// instead of touching whichever timer now lives in that slot. The guard is
// probabilistic only in the sense that a slot reused 2047 times while JS still
// holds an id from the first use would accept that id again.
//
// Ordering. Equal deadlines pop in insertion order (FIFO), as in libuv: each
// add or rearm takes the next value of a u32 sequence counter. Wraparound is
// handled: when the counter is exhausted, the heap is sorted in place and the
// live timers are renumbered 0..n-1 in their current order (O(n log n), once
// every 2^32 adds/rearms).

// Timer record, 40 bytes (RECORD_SIZE), laid over the slab with changetype.
//   +0   deadline    f64  monotonic ms
//   +8   interval    f64  ms; 0 = one-shot (stored for the reactor, unused here)
//   +16  sequence    u32  insertion order, FIFO tie-break among equal deadlines
//   +20  heapIndex   i32  position in the heap array; -1 when not in the heap
//   +24  kind        i32  opaque to the heap: what the reactor does on firing
//   +28  owner       i32  opaque to the heap: whom it fires for
//   +32  generation  u32  1..2047, bumped on free; part of the id
//   +36  link        i32  while free: next free slot (-1 ends the list);
//                         while allocated: ALLOCATED
// deadline and sequence, the two fields every comparison reads, sit in the
// first 20 bytes so a comparison rarely touches two cache lines.
@unmanaged class TimerRecord {
  deadline: f64;
  interval: f64;
  sequence: u32;
  heapIndex: i32;
  kind: i32;
  owner: i32;
  generation: u32;
  link: i32;
}

export const TIMERS_MAX_CAPACITY = 1048576; // 1 << SLOT_BITS

const RECORD_SIZE: usize = offsetof<TimerRecord>();
const SLOT_BITS = 20;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const MAX_GENERATION: u32 = 2047; // 31 - SLOT_BITS bits, 0 skipped
const ALLOCATED: i32 = -2;
const NOT_IN_HEAP: i32 = -1;
const END_OF_LIST: i32 = -1;

let records: usize = 0;     // capacity * RECORD_SIZE bytes
let heapSlots: usize = 0;   // capacity * 4 bytes: i32 slot per heap position
let allocatedCapacity: i32 = 0;
let capacity: i32 = 0;
let heapSize: i32 = 0;
let liveCount: i32 = 0;
let freeHead: i32 = END_OF_LIST;
let nextSequence: u32 = 0;

// ---- helpers (inlined; no calls survive in the sift loops) -----------------

// @ts-ignore: decorator
@inline function record(slot: i32): TimerRecord {
  return changetype<TimerRecord>(records + <usize>slot * RECORD_SIZE);
}

// @ts-ignore: decorator
@inline function heapAt(pos: i32): i32 {
  return load<i32>(heapSlots + (<usize>pos << 2));
}

// @ts-ignore: decorator
@inline function heapSet(pos: i32, slot: i32): void {
  store<i32>(heapSlots + (<usize>pos << 2), slot);
}

// @ts-ignore: decorator
@inline function idOf(slot: i32, r: TimerRecord): i32 {
  return <i32>(r.generation << SLOT_BITS) | slot;
}

/** The slot of a live timer, or -1 for 0, negative, stale or unknown ids. */
function liveSlot(id: i32): i32 {
  if (id <= 0) return -1;
  let slot = id & SLOT_MASK;
  if (slot >= capacity) return -1;
  let r = record(slot);
  if (r.link != ALLOCATED || r.generation != <u32>(id >>> SLOT_BITS)) return -1;
  return slot;
}

/** Does timer a pop before timer b? Sequences in the heap are unique. */
// @ts-ignore: decorator
@inline function precedes(a: TimerRecord, b: TimerRecord): bool {
  let ad = a.deadline, bd = b.deadline;
  return ad < bd || (ad == bd && a.sequence < b.sequence);
}

// ---- the heap ---------------------------------------------------------------

/** Moves `slot` from position `pos` towards the root. Parents that come later
 *  shift down one level; the moving timer is written once, at the end. */
function siftUp(pos: i32, slot: i32): void {
  let r = record(slot);
  let d = r.deadline, s = r.sequence;
  while (pos > 0) {
    let parentPos = (pos - 1) >> 1;
    let parentSlot = heapAt(parentPos);
    let p = record(parentSlot);
    let pd = p.deadline;
    if (pd < d || (pd == d && p.sequence < s)) break;
    heapSet(pos, parentSlot);
    p.heapIndex = pos;
    pos = parentPos;
  }
  heapSet(pos, slot);
  r.heapIndex = pos;
}

/** Moves `slot` from position `pos` towards the leaves, within [0, heapSize).
 *  The earlier child shifts up one level; the moving timer is written once. */
function siftDown(pos: i32, slot: i32): void {
  let r = record(slot);
  let d = r.deadline, s = r.sequence;
  let n = heapSize;
  while (true) {
    let childPos = 2 * pos + 1;
    if (childPos >= n) break;
    let childSlot = heapAt(childPos);
    let c = record(childSlot);
    let cd = c.deadline, cs = c.sequence;
    let rightPos = childPos + 1;
    if (rightPos < n) {
      let rightSlot = heapAt(rightPos);
      let rc = record(rightSlot);
      let rd = rc.deadline, rs = rc.sequence;
      if (rd < cd || (rd == cd && rs < cs)) {
        childPos = rightPos; childSlot = rightSlot; c = rc; cd = rd; cs = rs;
      }
    }
    if (d < cd || (d == cd && s < cs)) break;
    heapSet(pos, childSlot);
    c.heapIndex = pos;
    pos = childPos;
  }
  heapSet(pos, slot);
  r.heapIndex = pos;
}

function heapPush(slot: i32): void {
  let pos = heapSize++;
  siftUp(pos, slot);
}

/** Removes the timer at `pos` in O(log n): the last leaf fills the hole and
 *  moves up or down, whichever its key asks for. */
function heapRemoveAt(pos: i32): void {
  record(heapAt(pos)).heapIndex = NOT_IN_HEAP;
  let last = --heapSize;
  if (pos == last) return;
  let lastSlot = heapAt(last);
  if (pos > 0 && precedes(record(lastSlot), record(heapAt((pos - 1) >> 1)))) {
    siftUp(pos, lastSlot);
  } else {
    siftDown(pos, lastSlot);
  }
}

/** The next sequence number; renumbers the heap when the u32 runs out. Call it
 *  before changing any record, so the heap is consistent if it renumbers. */
function takeSequence(): u32 {
  if (nextSequence == u32.MAX_VALUE) renumberSequences();
  return nextSequence++;
}

/** Sorts the heap array in place by (deadline, sequence) and renumbers the
 *  sequences 0..n-1. A sorted array is a valid min-heap, and renumbering in
 *  sorted order keeps the FIFO order of every tie. */
function renumberSequences(): void {
  let n = heapSize;
  // Heapsort: move the minimum behind a shrinking heap -> descending order.
  for (let end = n - 1; end > 0; end--) {
    let minSlot = heapAt(0);
    heapSize = end;
    siftDown(0, heapAt(end));
    heapSet(end, minSlot);
  }
  heapSize = n;
  for (let i = 0, j = n - 1; i < j; i++, j--) {
    let t = heapAt(i);
    heapSet(i, heapAt(j));
    heapSet(j, t);
  }
  for (let i = 0; i < n; i++) {
    let r = record(heapAt(i));
    r.sequence = <u32>i;
    r.heapIndex = i;
  }
  nextSequence = <u32>n;
}

function freeRecord(slot: i32): void {
  let r = record(slot);
  r.generation = r.generation >= MAX_GENERATION ? 1 : r.generation + 1;
  r.link = freeHead;
  freeHead = slot;
  liveCount--;
}

// ---- exported API -------------------------------------------------------------

/** Allocates (or reuses, when large enough) fixed regions for `cap` live
 *  timers and empties them. `cap` is clamped to [0, TIMERS_MAX_CAPACITY].
 *  Ids issued before a re-init must not be used afterwards. */
export function timersInit(cap: i32): void {
  if (cap < 0) cap = 0;
  if (cap > TIMERS_MAX_CAPACITY) cap = TIMERS_MAX_CAPACITY;
  if (cap > allocatedCapacity) {
    records = heap.alloc(<usize>cap * RECORD_SIZE);
    heapSlots = heap.alloc(<usize>cap << 2);
    allocatedCapacity = cap;
  }
  capacity = cap;
  for (let slot = 0; slot < cap; slot++) {
    let r = record(slot);
    r.deadline = 0;
    r.interval = 0;
    r.sequence = 0;
    r.heapIndex = NOT_IN_HEAP;
    r.kind = 0;
    r.owner = 0;
    r.generation = 1;
    r.link = slot + 1 < cap ? slot + 1 : END_OF_LIST;
  }
  freeHead = cap > 0 ? 0 : END_OF_LIST;
  heapSize = 0;
  liveCount = 0;
  nextSequence = 0;
}

/** Adds a timer; returns its id, or -1 when full or when deadline is NaN or
 *  interval is negative or NaN. */
export function timerAdd(deadline: f64, interval: f64, kind: i32, owner: i32): i32 {
  if (isNaN(deadline) || !(interval >= 0)) return -1;
  let slot = freeHead;
  if (slot < 0) return -1;
  let sequence = takeSequence();
  let r = record(slot);
  freeHead = r.link;
  r.link = ALLOCATED;
  r.deadline = deadline;
  r.interval = interval;
  r.sequence = sequence;
  r.kind = kind;
  r.owner = owner;
  liveCount++;
  heapPush(slot);
  return idOf(slot, r);
}

/** Removes a live timer from the heap (if it is there) and frees it. */
export function timerCancel(id: i32): bool {
  let slot = liveSlot(id);
  if (slot < 0) return false;
  let pos = record(slot).heapIndex;
  if (pos >= 0) heapRemoveAt(pos);
  freeRecord(slot);
  return true;
}

/** Frees a timer popped by timerPopDue. Same effect as timerCancel: a timer
 *  still in the heap is removed first, so the heap never holds a free record. */
export function timerFree(id: i32): bool {
  return timerCancel(id);
}

/** Moves a live timer, in the heap or popped, to `deadline`. It takes a fresh
 *  sequence number: it queues behind timers already due at that deadline. */
export function timerRearm(id: i32, deadline: f64): bool {
  let slot = liveSlot(id);
  if (slot < 0 || isNaN(deadline)) return false;
  let sequence = takeSequence();
  let r = record(slot);
  let previous = r.deadline;
  r.deadline = deadline;
  r.sequence = sequence;
  let pos = r.heapIndex;
  if (pos < 0) heapPush(slot);
  // Same deadline: the new sequence is larger, so the key grew -> down.
  else if (deadline < previous) siftUp(pos, slot);
  else siftDown(pos, slot);
  return true;
}

/** Earliest deadline in the heap, or Infinity when it is empty. */
export function timerPeekDeadline(): f64 {
  return heapSize > 0 ? record(heapAt(0)).deadline : Infinity;
}

/** Removes and returns the earliest timer with deadline <= now, or -1. The
 *  record stays allocated: the caller re-arms it or frees it. */
export function timerPopDue(now: f64): i32 {
  if (heapSize == 0) return -1;
  let slot = heapAt(0);
  let r = record(slot);
  if (!(r.deadline <= now)) return -1;
  heapRemoveAt(0);
  return idOf(slot, r);
}

/** epoll_wait timeout in whole ms: -1 with no timers, 0 when the earliest is
 *  due, else ceil(deadline - now) capped at 2^31-1. Rounding up means the loop
 *  never wakes just before a deadline and spins on a zero timeout. */
export function timerPollTimeout(now: f64): i32 {
  if (heapSize == 0) return -1;
  let wait = record(heapAt(0)).deadline - now;
  if (!(wait > 0)) return 0; // due, or now is NaN: do not sleep
  let ms = Math.ceil(wait);
  return ms >= <f64>i32.MAX_VALUE ? i32.MAX_VALUE : <i32>ms;
}

// Getters: -1 (or false) for a stale or unknown id.
export function timerDeadline(id: i32): f64 {
  let slot = liveSlot(id);
  return slot < 0 ? -1 : record(slot).deadline;
}

export function timerInterval(id: i32): f64 {
  let slot = liveSlot(id);
  return slot < 0 ? -1 : record(slot).interval;
}

export function timerKind(id: i32): i32 {
  let slot = liveSlot(id);
  return slot < 0 ? -1 : record(slot).kind;
}

export function timerOwner(id: i32): i32 {
  let slot = liveSlot(id);
  return slot < 0 ? -1 : record(slot).owner;
}

export function timerIsLive(id: i32): bool {
  return liveSlot(id) >= 0;
}

/** Allocated records: in the heap or popped and not yet freed. */
export function timerCount(): i32 {
  return liveCount;
}

export function timerHeapSize(): i32 {
  return heapSize;
}

/** Test hook: sets the sequence counter, so tests can cross the u32
 *  wraparound without 2^32 adds. */
export function timerSetNextSequence(sequence: u32): void {
  nextSequence = sequence;
}

/** Full consistency check, O(capacity): the heap order including the FIFO
 *  tie-break, every heap entry's back-pointer, the free list, and the counts.
 *  For tests and the fuzzer; never on the hot path. */
export function timersCheck(): bool {
  if (heapSize < 0 || heapSize > liveCount || liveCount > capacity) return false;
  for (let pos = 0; pos < heapSize; pos++) {
    let slot = heapAt(pos);
    if (slot < 0 || slot >= capacity) return false;
    let r = record(slot);
    if (r.link != ALLOCATED || r.heapIndex != pos || isNaN(r.deadline)) return false;
    if (r.sequence >= nextSequence) return false;
    if (pos > 0 && !precedes(record(heapAt((pos - 1) >> 1)), r)) return false;
  }
  let live = 0, inHeap = 0;
  for (let slot = 0; slot < capacity; slot++) {
    let r = record(slot);
    if (r.generation < 1 || r.generation > MAX_GENERATION) return false;
    if (r.link == ALLOCATED) {
      live++;
      if (r.heapIndex >= 0) {
        if (r.heapIndex >= heapSize || heapAt(r.heapIndex) != slot) return false;
        inHeap++;
      } else if (r.heapIndex != NOT_IN_HEAP) return false;
    } else if (r.heapIndex != NOT_IN_HEAP) return false;
  }
  if (live != liveCount || inHeap != heapSize) return false;
  // The free list holds exactly the free records (bounded walk: no cycles).
  let free = 0;
  for (let slot = freeHead; slot != END_OF_LIST; slot = record(slot).link) {
    if (slot < 0 || slot >= capacity || free > capacity - liveCount) return false;
    if (record(slot).link == ALLOCATED) return false;
    free++;
  }
  return free == capacity - liveCount;
}
