// Timer heap: a fixed pool of timer records and a binary min-heap of record
// indices (each stored with a copy of its key), ordered by (deadline, sequence).
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
// instead of touching whichever timer now lives in that slot. The one hole:
// after a slot has been reused 2047 times, an id JS kept from its first use
// matches again.
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

// Heap entry, 16 bytes (ENTRY_SIZE): a record index plus a copy of its key.
//   +0   deadline    f64  = record.deadline while in the heap
//   +8   sequence    u32  = record.sequence while in the heap
//   +12  slot        i32  the record
// Why the copy: a sift level then reads both children from one cache line
// instead of two random 40-byte records, and the keys of the levels below sit
// at addresses known from positions alone, which is what lets siftDown fetch
// them ahead (see there). The array starts 48 bytes past a 64-byte boundary,
// so every sibling pair (2k+1, 2k+2) shares one cache line. A sift writes one
// field per moved record: heapIndex.
@unmanaged class HeapEntry {
  deadline: f64;
  sequence: u32;
  slot: i32;
}

export const TIMERS_MAX_CAPACITY = 1048576; // 1 << SLOT_BITS

const RECORD_SIZE: usize = offsetof<TimerRecord>();
const ENTRY_SIZE: usize = offsetof<HeapEntry>();
const SLOT_BITS = 20;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const MAX_GENERATION: u32 = 2047; // 31 - SLOT_BITS bits, 0 skipped
const ALLOCATED: i32 = -2;
const NOT_IN_HEAP: i32 = -1;
const END_OF_LIST: i32 = -1;

let records: usize = 0;     // capacity * RECORD_SIZE bytes
let entries: usize = 0;     // capacity * ENTRY_SIZE bytes, the heap array
let allocatedCapacity: i32 = 0;
let capacity: i32 = 0;
let heapSize: i32 = 0;
let liveCount: i32 = 0;
let freeHead: i32 = END_OF_LIST;
// Records are carved lazily: slots [0, carved) have been initialised, the rest
// are untouched memory, so a large capacity costs address space, not RSS.
let carved: i32 = 0;
let nextSequence: u32 = 0;

// ---- helpers (inlined; no calls survive in the sift loops) -----------------

// @ts-ignore: decorator
@inline function record(slot: i32): TimerRecord {
  return changetype<TimerRecord>(records + <usize>slot * RECORD_SIZE);
}

// @ts-ignore: decorator
@inline function entryAddress(pos: i32): usize {
  return entries + <usize>pos * ENTRY_SIZE;
}

// @ts-ignore: decorator
@inline function entry(pos: i32): HeapEntry {
  return changetype<HeapEntry>(entryAddress(pos));
}

// @ts-ignore: decorator
@inline function idOf(slot: i32, r: TimerRecord): i32 {
  return <i32>(r.generation << SLOT_BITS) | slot;
}

/** The slot of a live timer, or -1 for 0, negative, stale or unknown ids. */
function liveSlot(id: i32): i32 {
  if (id <= 0) return -1;
  let slot = id & SLOT_MASK;
  if (slot >= carved) return -1;
  let r = record(slot);
  if (r.link != ALLOCATED || r.generation != <u32>(id >>> SLOT_BITS)) return -1;
  return slot;
}

/** Does key (d, s) pop before heap entry e? Sequences in the heap are unique. */
// @ts-ignore: decorator
@inline function precedes(d: f64, s: u32, e: HeapEntry): bool {
  let ed = e.deadline;
  return d < ed || (d == ed && s < e.sequence);
}

// ---- the heap ---------------------------------------------------------------

/** Places key (d, s) of record `slot` at `pos` or above. Later parents shift
 *  down one level; the moving entry is written once, at the end. */
function siftUp(pos: i32, d: f64, s: u32, slot: i32): void {
  while (pos > 0) {
    let parentPos = (pos - 1) >> 1;
    let p = entry(parentPos);
    let pd = p.deadline;
    if (pd < d || (pd == d && p.sequence < s)) break;
    let parentSlot = p.slot;
    v128.store(entryAddress(pos), v128.load(changetype<usize>(p)));
    record(parentSlot).heapIndex = pos;
    pos = parentPos;
  }
  let e = entry(pos);
  e.deadline = d;
  e.sequence = s;
  e.slot = slot;
  record(slot).heapIndex = pos;
}

// Written by siftDown so the engine cannot drop its prefetch loads as dead.
let prefetchSink: i32 = 0;

/** Places key (d, s) of record `slot` at `pos` or below, within [0, heapSize).
 *  The earlier child shifts up one level; the moving entry is written once.
 *
 *  Each level's addresses depend on the previous level's comparison, so with
 *  100k timers (a 1.6 MB array, deeper levels outside L2) the loop waits on
 *  one cache miss per level. Wasm has no prefetch instruction; touching the
 *  three cache lines of the great-grandchildren starts those misses two levels
 *  early, in parallel (measured: add+pop ~300 -> ~170 ns at 100k). */
function siftDown(pos: i32, d: f64, s: u32, slot: i32): void {
  let n = heapSize;
  let sink: i32 = 0;
  while (true) {
    let childPos = 2 * pos + 1;
    if (childPos >= n) break;
    let first = 4 * childPos + 3; // first great-grandchild: 8 * pos + 7
    if (first + 7 < n) {
      sink += load<u8>(entryAddress(first)) + load<u8>(entryAddress(first + 4)) + load<u8>(entryAddress(first + 7));
    }
    if (childPos + 1 < n) {
      // Pick the earlier sibling without a branch: which one wins is a coin
      // flip the CPU cannot predict (measured: ~125 -> ~90 ns at 1k timers).
      let left = entry(childPos), right = entry(childPos + 1);
      let ld = left.deadline, rd = right.deadline;
      childPos += <i32>(rd < ld) | (<i32>(rd == ld) & <i32>(right.sequence < left.sequence));
    }
    let c = entry(childPos);
    let cd = c.deadline, cs = c.sequence;
    if (d < cd || (d == cd && s < cs)) break;
    let childSlot = c.slot;
    v128.store(entryAddress(pos), v128.load(changetype<usize>(c)));
    record(childSlot).heapIndex = pos;
    pos = childPos;
  }
  prefetchSink = sink;
  let e = entry(pos);
  e.deadline = d;
  e.sequence = s;
  e.slot = slot;
  record(slot).heapIndex = pos;
}

function heapPush(slot: i32): void {
  let r = record(slot);
  siftUp(heapSize++, r.deadline, r.sequence, slot);
}

/** Removes the entry at `pos` in O(log n): the last entry fills the hole and
 *  moves up or down, whichever its key asks for. */
function heapRemoveAt(pos: i32): void {
  record(entry(pos).slot).heapIndex = NOT_IN_HEAP;
  let last = --heapSize;
  if (pos == last) return;
  let e = entry(last);
  let d = e.deadline, s = e.sequence, slot = e.slot;
  if (pos > 0 && precedes(d, s, entry((pos - 1) >> 1))) siftUp(pos, d, s, slot);
  else siftDown(pos, d, s, slot);
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
    let min = v128.load(entryAddress(0));
    let e = entry(end);
    heapSize = end;
    siftDown(0, e.deadline, e.sequence, e.slot);
    v128.store(entryAddress(end), min);
  }
  heapSize = n;
  for (let i = 0, j = n - 1; i < j; i++, j--) {
    let t = v128.load(entryAddress(i));
    v128.store(entryAddress(i), v128.load(entryAddress(j)));
    v128.store(entryAddress(j), t);
  }
  for (let i = 0; i < n; i++) {
    let e = entry(i);
    let r = record(e.slot);
    e.sequence = <u32>i;
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
    // + 128: room to start the array at 48 mod 64 (see HeapEntry)
    entries = ((heap.alloc(<usize>cap * ENTRY_SIZE + 128) + 63) & ~<usize>63) + 48;
    allocatedCapacity = cap;
  }
  capacity = cap;
  carved = 0;
  freeHead = END_OF_LIST;
  heapSize = 0;
  liveCount = 0;
  nextSequence = 0;
}

/** Adds a timer; returns its id, or -1 when full or when deadline is NaN or
 *  interval is negative or NaN. */
export function timerAdd(deadline: f64, interval: f64, kind: i32, owner: i32): i32 {
  if (isNaN(deadline) || !(interval >= 0)) return -1;
  let slot = freeHead;
  if (slot < 0) {
    if (carved == capacity) return -1;
    slot = carved++;
    let fresh = record(slot);
    fresh.generation = 1;
    fresh.heapIndex = NOT_IN_HEAP;
    fresh.link = END_OF_LIST;
  }
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
  else if (deadline < previous) siftUp(pos, deadline, sequence, slot);
  else siftDown(pos, deadline, sequence, slot);
  return true;
}

/** Earliest deadline in the heap, or Infinity when it is empty. */
export function timerPeekDeadline(): f64 {
  return heapSize > 0 ? entry(0).deadline : Infinity;
}

/** Removes and returns the earliest timer with deadline <= now, or -1. The
 *  record stays allocated: the caller re-arms it or frees it. */
export function timerPopDue(now: f64): i32 {
  if (heapSize == 0) return -1;
  let root = entry(0);
  if (!(root.deadline <= now)) return -1;
  let slot = root.slot;
  heapRemoveAt(0);
  return idOf(slot, record(slot));
}

/** epoll_wait timeout in whole ms: -1 with no timers, 0 when the earliest is
 *  due, else ceil(deadline - now) capped at 2^31-1. Rounding up means the loop
 *  never wakes just before a deadline and spins on a zero timeout. */
export function timerPollTimeout(now: f64): i32 {
  if (heapSize == 0) return -1;
  let wait = entry(0).deadline - now;
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

/** Test hook: sets the sequence counter while the heap is empty, so tests can
 *  cross the u32 wraparound without 2^32 adds. */
export function timerSetNextSequence(sequence: u32): void {
  if (heapSize == 0) nextSequence = sequence; // with an empty heap, nothing to reorder
}

/** Full consistency check, O(capacity): the heap order including the FIFO
 *  tie-break, every heap entry's back-pointer, the free list, and the counts.
 *  For tests and the fuzzer; never on the hot path. */
export function timersCheck(): bool {
  if (heapSize < 0 || heapSize > liveCount || liveCount > capacity) return false;
  for (let pos = 0; pos < heapSize; pos++) {
    let e = entry(pos);
    let slot = e.slot;
    if (slot < 0 || slot >= capacity) return false;
    let r = record(slot);
    if (r.link != ALLOCATED || r.heapIndex != pos || isNaN(r.deadline)) return false;
    if (e.deadline != r.deadline || e.sequence != r.sequence) return false;
    if (r.sequence >= nextSequence) return false;
    if (pos > 0) {
      let parent = entry((pos - 1) >> 1);
      if (!precedes(parent.deadline, parent.sequence, e)) return false;
    }
  }
  let live = 0, inHeap = 0;
  for (let slot = 0; slot < carved; slot++) {
    let r = record(slot);
    if (r.generation < 1 || r.generation > MAX_GENERATION) return false;
    if (r.link == ALLOCATED) {
      live++;
      if (r.heapIndex >= 0) {
        if (r.heapIndex >= heapSize || entry(r.heapIndex).slot != slot) return false;
        inHeap++;
      } else if (r.heapIndex != NOT_IN_HEAP) return false;
    } else if (r.heapIndex != NOT_IN_HEAP) return false;
  }
  if (live != liveCount || inHeap != heapSize) return false;
  // The free list holds exactly the free records (bounded walk: no cycles).
  let free = 0;
  for (let slot = freeHead; slot != END_OF_LIST; slot = record(slot).link) {
    if (slot < 0 || slot >= carved || free > carved - liveCount) return false;
    if (record(slot).link == ALLOCATED) return false;
    free++;
  }
  return free == carved - liveCount;
}
