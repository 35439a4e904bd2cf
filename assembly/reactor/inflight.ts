// The in-flight table: every request the core submits holds one entry until
// its completion comes back. The entry's index and generation are the
// request's tag (SQE_USER_DATA, lo and hi word); a completion is routed by
// its tag alone, never by reading the submitted SQE back (the SQ may be
// reused, and completions may come in any order). Fixed records, a free
// list, nothing allocated per request.
//
// Entry, ENTRY_SIZE bytes:
//   +0  i32 generation   odd while in flight, even while free
//   +4  i32 op           OP_*
//   +8  i32 fd
//   +12 i32 a0 .. +24 i32 a3   the request's arguments, as submit() got them
//   +28 i32 next free entry (-1: none)
// A tag whose generation is not the entry's current odd one is stale (a
// duplicate, or a completion for an entry already completed and reused): it
// is ignored and counted (STAT_STALE_CQES).
import { STAT_STALE_CQES } from "../abi";
import { ctlAddI32 } from "./ctl";

const ENTRY_SIZE: i32 = 32;
let table: usize = 0;
let cap: i32 = 0;
let freeHead: i32 = -1;
let unused: i32 = 0;     // entries [unused, cap) were never used (touched lazily)
export let inFlight: i32 = 0;

export function inflightInit(capacity: i32): void {
  cap = capacity;
  table = heap.alloc(<usize>(cap * ENTRY_SIZE));
  freeHead = -1;
  unused = 0;
  inFlight = 0;
}

@inline function entry(i: i32): usize { return table + <usize>(i * ENTRY_SIZE); }

/** Takes an entry for a request; returns its index (the tag's lo word). */
export function inflightTake(op: i32, fd: i32, a0: i32, a1: i32, a2: i32, a3: i32): i32 {
  let i = freeHead;
  if (i >= 0) freeHead = load<i32>(entry(i), 28);
  else if (unused < cap) { i = unused++; store<i32>(entry(i), 0); }
  else abort("in-flight table full");
  const e = entry(i);
  store<i32>(e, load<i32>(e) + 1); // odd: in flight
  store<i32>(e, op, 4);
  store<i32>(e, fd, 8);
  store<i32>(e, a0, 12);
  store<i32>(e, a1, 16);
  store<i32>(e, a2, 20);
  store<i32>(e, a3, 24);
  inFlight++;
  return i;
}

/** Is a request on fd in flight? (A scan: for the rare doomed connection, recovery.ts.) */
export function inflightHasFd(fd: i32): bool {
  for (let i = 0; i < unused; i++) {
    const e = entry(i);
    if ((load<i32>(e) & 1) != 0 && load<i32>(e, 8) == fd) return true;
  }
  return false;
}

/** The generation of entry i (the tag's hi word). */
@inline export function inflightGen(i: i32): i32 { return load<i32>(entry(i)); }

// The request of the completion being handled (set by inflightFinish): its
// entry is free again by then, and may be reused by what the completion submits.
export let doneOp: i32 = 0;
export let doneFd: i32 = -1;
export let doneA0: i32 = 0;
export let doneA1: i32 = 0;
export let doneA2: i32 = 0;
export let doneA3: i32 = 0;

/**
 * A completion with tag {i, gen} arrived: false if the tag is stale or
 * unknown (counted, ignored). Else the request is copied to done* and its
 * entry freed.
 */
export function inflightFinish(i: i32, gen: i32): bool {
  if (i < 0 || i >= unused || (gen & 1) == 0 || load<i32>(entry(i)) != gen) {
    ctlAddI32(STAT_STALE_CQES, 1);
    return false;
  }
  const e = entry(i);
  doneOp = load<i32>(e, 4);
  doneFd = load<i32>(e, 8);
  doneA0 = load<i32>(e, 12);
  doneA1 = load<i32>(e, 16);
  doneA2 = load<i32>(e, 20);
  doneA3 = load<i32>(e, 24);
  store<i32>(e, gen + 1); // even: free; this tag is stale from now on
  store<i32>(e, freeHead, 28);
  freeHead = i;
  inFlight--;
  return true;
}
