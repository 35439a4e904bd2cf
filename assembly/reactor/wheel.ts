// Timing wheel for connection deadlines (idle, header, linger, proxy connect
// and upstream timeouts, health probes): hierarchical, Linux-kernel style
// (the cascading wheel of kernel/timer.c before 4.8; uSockets' idea of
// coarse timeouts), linked through the connection records themselves.
//
// Why not the heap (timers.ts): a deadline is pushed several times per
// request. The heap stores it in a 40-byte record plus a 16-byte entry away
// from the connection, so each push reads a cold cache line at 10k+
// connections, and each firing sifts O(log n) entries. Here a record's wheel
// state is 16 bytes inside its connection record (C_WNEXT, C_WPREV, C_WARMED,
// C_WDUE), which the protocol has in cache anyway; add, cancel and re-arm are
// O(1), and a deadline that moves later (the common case: activity) only
// stores its new tick (lazy re-arm, as the heap path was).
//
// Sans-IO: time comes in as f64 ms (the loop's CTL_NOW); nothing reads a clock.
//
// Granularity and jitter. Time is cut into ticks of G = WHEEL_TICK_MS. A
// deadline d is due at tick ceil(d / G), processed once now >= that tick's
// start: it fires no earlier than d and less than G after it (plus the
// loop's own lag). Expiries coalesce: all deadlines of one tick fire in one
// wakeup, and the loop's wait ends at the next tick boundary with work
// (wheelTimeout), never per deadline.
//
// Levels. WHEEL_LEVELS levels of 64 slots; level k's slots are 64^k ticks
// wide (G=4 ms: 4 ms, 256 ms, 16.4 s, 17.5 min, 18.6 h), so the wheel spans
// 2^30 ticks (~49.7 days); a later deadline parks in the top level and comes
// around again. An entry t ticks ahead sits in the lowest level whose span
// holds t, in the slot of its tick's bits at that level. When the current tick
// reaches the start of a level-k slot's block (its lower bits are all zero),
// that slot is cascaded: its entries move to lower levels. So an entry moves at
// most WHEEL_LEVELS - 1 times before it fires, each move O(1).
//
// Advancing skips empty ticks: per-level 64-bit occupancy bitmaps give the next
// tick at which anything happens (an expiry or a non-empty cascade) with one
// rotate + ctz per level, so a large time step (a suspended host, a test's
// jump) costs O(entries x levels), not O(ticks), and fires everything due in
// order of tick.
//
// Ticks are u32 and wrap (after 2^32 G, ~198 days of the host's monotonic
// clock); every comparison is on the signed difference, as with jiffies.
//
// Lists. Each slot is a doubly linked list of record numbers; links are stored
// +1 so that a zeroed record (fresh linear memory) reads "not armed".
//   C_WNEXT: next + 1, 0 at the end.
//   C_WPREV: previous + 1; at a list's head -(list + 1); 0 when not armed.
// The list after the last slot is the due list (FIFO, with a tail): what
// wheelAdvance found expired, in tick order, for the loop to fire.
import {
  CONN_SIZE, C_WNEXT, C_WPREV, C_WARMED, C_WDUE, WHEEL_TICK_MS, WHEEL_LEVEL_BITS, WHEEL_LEVELS,
} from "../abi";

const G: f64 = <f64>WHEEL_TICK_MS;
const SLOTS = 1 << WHEEL_LEVEL_BITS;
const SLOT_MASK: u32 = <u32>SLOTS - 1;
const LISTS = WHEEL_LEVELS * SLOTS;
const DUE = LISTS;                           // the due list's number
const MAX_AHEAD: u32 = 1 << (WHEEL_LEVELS * WHEEL_LEVEL_BITS); // 2^30 ticks
const STRIDE: usize = CONN_SIZE;

let records: usize = 0;   // record i at records + i * CONN_SIZE
let recordCount: i32 = 0;
let heads: usize = 0;     // (LISTS + 1) x i32: first record + 1, 0 = empty
let bitmaps: usize = 0;   // WHEEL_LEVELS x u64: bit j set <=> slot j of that level is non-empty
let dueTail: i32 = -1;
let cur: u32 = 0;         // the next tick to process; every tick before it is done
let started = false;      // cur is set from the first time the wheel sees
let armedCount: i32 = 0;  // records in the wheel or on the due list
let ownTable: usize = 0;  // wheelSetup's table (tests, benchmarks)
let ownCount: i32 = 0;
let madeDue: i32 = 0;     // wheelAdvance's count

// ---- helpers -----------------------------------------------------------------

// @ts-ignore: decorator
@inline function rec(i: i32): usize { return records + <usize>i * STRIDE; }
// @ts-ignore: decorator
@inline function headAt(list: i32): usize { return heads + (<usize>list << 2); }
// @ts-ignore: decorator
@inline function bitmapAt(level: i32): usize { return bitmaps + (<usize>level << 3); }

/** The tick a time falls in (floor), wrapped to u32. */
// @ts-ignore: decorator
@inline function tickOf(ms: f64): u32 { return <u32><i64>Math.floor(ms / G); }
/** The first tick starting at or after a deadline (ceil): firing there is never early. */
// @ts-ignore: decorator
@inline function tickAtOrAfter(ms: f64): u32 { return <u32><i64>Math.ceil(ms / G); }

function start(nowMs: f64): void {
  if (!started) { cur = tickOf(nowMs); started = true; }
}

/** Links record i at the head of list `list`. */
function push(i: i32, list: i32): void {
  const r = rec(i);
  const h = headAt(list);
  const first = load<i32>(h);
  store<i32>(r + C_WNEXT, first);
  store<i32>(r + C_WPREV, -(list + 1));
  if (first != 0) store<i32>(rec(first - 1) + C_WPREV, i + 1);
  store<i32>(h, i + 1);
}

/** Places record i (not linked) at tick t: the slot it next comes up in. */
function place(i: i32, t: u32): void {
  let ahead = t - cur;
  if (<i32>ahead < 0) { t = cur; ahead = 0; }                // overdue: the next tick processed
  else if (ahead >= MAX_AHEAD) { ahead = MAX_AHEAD - 1; t = cur + ahead; } // parks; comes around again
  // level: the lowest whose span (64^(level+1) ticks) holds `ahead`
  const level = <i32>(31 - clz<u32>(ahead | 1)) / WHEEL_LEVEL_BITS;
  const slot = <i32>((t >> <u32>(level * WHEEL_LEVEL_BITS)) & SLOT_MASK);
  store<u32>(rec(i) + C_WARMED, t);
  push(i, level * SLOTS + slot);
  const b = bitmapAt(level);
  store<u64>(b, load<u64>(b) | (<u64>1 << <u64>slot));
}

/** Unlinks record i from whichever list holds it (it must be linked). */
function unlink(i: i32): void {
  const r = rec(i);
  const prev = load<i32>(r + C_WPREV);
  const next = load<i32>(r + C_WNEXT);
  if (prev > 0) {
    store<i32>(rec(prev - 1) + C_WNEXT, next);
  } else {
    const list = -prev - 1;
    store<i32>(headAt(list), next);
    if (next == 0 && list < LISTS) {
      const b = bitmapAt(list / SLOTS);
      store<u64>(b, load<u64>(b) & ~(<u64>1 << <u64>(list % SLOTS)));
    }
  }
  if (next != 0) store<i32>(rec(next - 1) + C_WPREV, prev); // a new head inherits the head mark
  if (i == dueTail) dueTail = prev > 0 ? prev - 1 : -1;
  store<i32>(r + C_WPREV, 0);
  store<i32>(r + C_WNEXT, 0);
}

function appendDue(i: i32): void {
  const r = rec(i);
  store<i32>(r + C_WNEXT, 0);
  if (dueTail >= 0) {
    store<i32>(r + C_WPREV, dueTail + 1);
    store<i32>(rec(dueTail) + C_WNEXT, i + 1);
  } else {
    store<i32>(r + C_WPREV, -(DUE + 1));
    store<i32>(headAt(DUE), i + 1);
  }
  dueTail = i;
  madeDue++;
}

/** Empties list `list` of `level` and returns its first record + 1 (a chain through C_WNEXT). */
function detach(level: i32, slot: i32): i32 {
  const h = headAt(level * SLOTS + slot);
  const first = load<i32>(h);
  store<i32>(h, 0);
  const b = bitmapAt(level);
  store<u64>(b, load<u64>(b) & ~(<u64>1 << <u64>slot));
  return first;
}

/** Ticks from cur to the next tick at which anything happens (an expiry or a
 *  non-empty cascade), or -1 when the wheel is empty. */
function nextEventAhead(): i64 {
  let best: i64 = -1;
  for (let level = 0; level < WHEEL_LEVELS; level++) {
    const bm = load<u64>(bitmapAt(level));
    if (bm == 0) continue;
    const shift = <u32>(level * WHEEL_LEVEL_BITS);
    // The first block of this level not yet begun: a slot is processed when its
    // block starts; the current block's slot (if cur is inside it) was.
    const block = (cur >> shift) + <u32>((cur & ((<u32>1 << shift) - 1)) != 0);
    const d = <u32>ctz<u64>(rotr<u64>(bm, <u64>(block & SLOT_MASK)));
    const ahead = <i64>(((block + d) << shift) - cur);
    if (best < 0 || ahead < best) best = ahead;
  }
  return best;
}

/** Moves the entries of a level >= 1 slot down (their block begins now). */
function cascade(level: i32, slot: i32): void {
  let next = detach(level, slot);
  while (next != 0) {
    const i = next - 1;
    const r = rec(i);
    next = load<i32>(r + C_WNEXT);
    store<i32>(r + C_WPREV, 0);
    // At the deadline's own tick, not the armed one: a lazy re-arm is done here
    // for free.
    place(i, load<u32>(r + C_WDUE));
  }
}

/** Processes tick cur (cascades first, so an entry cascaded to this very tick fires). */
function processTick(): void {
  const t = cur;
  for (let level = 1; level < WHEEL_LEVELS; level++) {
    const shift = <u32>(level * WHEEL_LEVEL_BITS);
    if ((t & ((<u32>1 << shift) - 1)) != 0) break;
    cascade(level, <i32>((t >> shift) & SLOT_MASK));
  }
  let next = detach(0, <i32>(t & SLOT_MASK));
  while (next != 0) {
    const i = next - 1;
    const r = rec(i);
    next = load<i32>(r + C_WNEXT);
    store<i32>(r + C_WPREV, 0);
    const due = load<u32>(r + C_WDUE);
    if (<i32>(due - t) > 0) place(i, due); // moved later since it was placed: lazy re-arm
    else { store<u32>(r + C_WARMED, t); appendDue(i); }
  }
}

// ---- API (the reactor's; exported for tests and benchmarks) ------------------------

/** Lays the wheel over `count` records of CONN_SIZE bytes at `base` (the
 *  connection table), all unarmed (zeroed) there. */
export function wheelAttach(base: usize, count: i32): void {
  records = base;
  recordCount = count;
  if (heads == 0) {
    heads = heap.alloc(<usize>(LISTS + 1) << 2);
    bitmaps = heap.alloc(<usize>WHEEL_LEVELS << 3);
  }
  memory.fill(heads, 0, <usize>(LISTS + 1) << 2);
  memory.fill(bitmaps, 0, <usize>WHEEL_LEVELS << 3);
  dueTail = -1;
  armedCount = 0;
  started = false;
  cur = 0;
}

/** Tests and benchmarks: a wheel over a table of its own of `count` zeroed
 *  records (CONN_SIZE bytes each, like the connection table). Do not call it
 *  in a running reactor: it detaches the wheel from the connections. */
export function wheelSetup(count: i32): void {
  if (count < 0) count = 0;
  if (count > ownCount) { ownTable = heap.alloc(<usize>count * STRIDE); ownCount = count; }
  else memory.fill(ownTable, 0, <usize>ownCount * STRIDE);
  wheelAttach(ownTable, count);
}

/**
 * Arms (or re-arms) record i to fire at `deadlineMs` (>= now). O(1): an
 * unarmed record is placed; one whose deadline moves later only stores it
 * (the entry moves when its slot comes up); one that moves earlier than
 * where it is placed is moved at once. false for a bad record or NaN.
 */
export function wheelArm(i: i32, deadlineMs: f64, nowMs: f64): bool {
  if (<u32>i >= <u32>recordCount || isNaN(deadlineMs)) return false;
  start(nowMs);
  const r = rec(i);
  const due = tickAtOrAfter(deadlineMs);
  store<u32>(r + C_WDUE, due);
  if (load<i32>(r + C_WPREV) == 0) armedCount++;
  // Linked: a deadline at or after the armed tick needs no move. (On the due
  // list the armed tick is the one processed, <= any deadline set since.)
  else if (<i32>(due - load<u32>(r + C_WARMED)) >= 0) return true;
  else unlink(i);
  if (<i32>(due - cur) < 0) { store<u32>(r + C_WARMED, due); appendDue(i); } // its tick is past: due now
  else place(i, due);
  return true;
}

/** Disarms record i; false if it was not armed. O(1). */
export function wheelCancel(i: i32): bool {
  if (<u32>i >= <u32>recordCount || load<i32>(rec(i) + C_WPREV) == 0) return false;
  unlink(i);
  armedCount--;
  return true;
}

export function wheelIsArmed(i: i32): bool {
  return <u32>i < <u32>recordCount && load<i32>(rec(i) + C_WPREV) != 0;
}

/** The start (ms) of a record's deadline tick: when it is due. -1 if unarmed. */
export function wheelDueTime(i: i32): f64 {
  if (!wheelIsArmed(i)) return -1;
  return <f64>load<u32>(rec(i) + C_WDUE) * G;
}

/** Processes every tick up to now's: expired records go to the due list, in
 *  tick order. Returns how many records it made due. */
export function wheelAdvance(nowMs: f64): i32 {
  if (isNaN(nowMs)) return 0;
  start(nowMs);
  const target = tickOf(nowMs);
  madeDue = 0;
  while (true) {
    const ahead = nextEventAhead();
    if (ahead < 0 || <i32>(cur + <u32>ahead - target) > 0) break;
    cur += <u32>ahead;
    processTick();
    cur++;
  }
  if (<i32>(target + 1 - cur) > 0) cur = target + 1;
  return madeDue;
}

/** The first due record, or -1; it stays on the due list. */
export function wheelDueHead(): i32 {
  return load<i32>(headAt(DUE)) - 1;
}

/**
 * Takes the first due record off the due list and disarms it, or -1. A record
 * whose deadline moved past now since wheelAdvance found it due is re-armed
 * instead (skipped): nothing fires before its deadline's tick.
 */
export function wheelPopDue(nowMs: f64): i32 {
  const nowTick = tickOf(nowMs);
  while (true) {
    const first = load<i32>(headAt(DUE));
    if (first == 0) return -1;
    const i = first - 1;
    unlink(i);
    const due = load<u32>(rec(i) + C_WDUE);
    if (<i32>(due - nowTick) > 0) { place(i, due); continue; }
    armedCount--;
    return i;
  }
}

/** The loop's wait: -1 with nothing armed, 0 when something is due (or now is
 *  NaN), else the ms (ceil) to the start of the next tick with work, capped. */
export function wheelTimeout(nowMs: f64): i32 {
  if (load<i32>(headAt(DUE)) != 0) return 0;
  if (armedCount == 0 || isNaN(nowMs)) return armedCount == 0 ? -1 : 0;
  start(nowMs);
  const ahead = nextEventAhead();
  if (ahead < 0) return -1;
  // The tick's start minus now, both from now's tick (ticks wrap, ms do not).
  const nowTick = tickOf(nowMs);
  const sinceTick = nowMs - Math.floor(nowMs / G) * G;
  const wait = <f64><i32>(cur + <u32>ahead - nowTick) * G - sinceTick;
  if (!(wait > 0)) return 0;
  const ms = Math.ceil(wait);
  return ms >= <f64>i32.MAX_VALUE ? i32.MAX_VALUE : <i32>ms;
}

/** Records armed: in the wheel or on the due list. */
export function wheelCount(): i32 { return armedCount; }

/** The base of the records the wheel is laid over (benchmarks). */
export function wheelRecords(): usize { return records; }

/** The next tick to process (tests). */
export function wheelCurrentTick(): u32 { return cur; }

/**
 * Full consistency check, O(records): every list's links both ways, each
 * entry in the slot its armed tick and the current tick give, armed <= due
 * (wrap-aware), bitmaps = non-empty slots, the due list's tail, the count,
 * and every armed record on exactly one list. For tests and the fuzzer.
 */
export function wheelCheck(): bool {
  if (heads == 0) return recordCount == 0 || records == 0;
  let seen = 0;
  for (let list = 0; list <= LISTS; list++) {
    let prev = -(list + 1);
    let n = 0, last = -1;
    for (let link = load<i32>(headAt(list)); link != 0; ) {
      const i = link - 1;
      if (i < 0 || i >= recordCount || ++n > recordCount) return false;
      const r = rec(i);
      if (load<i32>(r + C_WPREV) != prev) return false;
      const armed = load<u32>(r + C_WARMED);
      if (<i32>(load<u32>(r + C_WDUE) - armed) < 0) return false;
      if (list < LISTS) {
        const level = list / SLOTS, slot = list % SLOTS;
        const shift = <u32>(level * WHEEL_LEVEL_BITS);
        if (<i32>((armed >> shift) & SLOT_MASK) != slot) return false;
        const ahead = armed - cur;
        if (<i32>ahead < 0 || ahead >= MAX_AHEAD) return false;
        // a level's entries come up within one revolution of it
        if ((ahead >> shift) >= <u32>SLOTS) return false;
        // a level >= 1 slot of the block cur is inside was cascaded already
        if (level > 0 && (armed >> shift) == (cur >> shift) && (cur & ((<u32>1 << shift) - 1)) != 0) return false;
      }
      prev = i + 1; last = i;
      link = load<i32>(r + C_WNEXT);
    }
    if (list < LISTS) {
      const bit = (load<u64>(bitmapAt(list / SLOTS)) >> <u64>(list % SLOTS)) & 1;
      if ((bit != 0) != (n > 0)) return false;
    } else if (last != dueTail) return false;
    seen += n;
  }
  if (seen != armedCount) return false;
  let linked = 0;
  for (let i = 0; i < recordCount; i++) if (load<i32>(rec(i) + C_WPREV) != 0) linked++;
  return linked == armedCount;
}
