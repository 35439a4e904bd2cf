// bench/timers.mjs's heap side of "heap vs wheel for connection deadlines":
// the deadline path as conn.ts and loop.ts ran it on the timer heap before the
// timing wheel (setDeadline: lazy, a timer id at +44 and an f64 deadline at +48
// of the connection record; connTimer: re-arm when the deadline moved later),
// over the records of wheelSetup's table, so both sides touch records of the
// same size and stride. Not used by the reactor.
import { CONN_SIZE } from "../abi";
import { timerAdd, timerRearm, timerIsLive, timerDeadline, timerPopDue, timerFree, timerOwner } from "./timers";
import { wheelAdvance, wheelPopDue, wheelArm, wheelRecords } from "./wheel";

const OLD_TIMER = 44;    // i32 timer id, 0 = none (the old C_TIMER)
const OLD_DEADLINE = 48; // f64 deadline, 0 = none (the old C_DEADLINE)

// @ts-ignore: decorator
@inline function rec(i: i32): usize { return wheelRecords() + <usize>i * CONN_SIZE; }

/** The old setDeadline(fd, ms) with d = deadline: store; pull the timer in only if it would fire later. */
export function benchHeapPush(i: i32, deadline: f64): void {
  const c = rec(i);
  store<f64>(c + OLD_DEADLINE, deadline);
  const t = load<i32>(c + OLD_TIMER);
  if (t != 0 && timerIsLive(t)) {
    if (timerDeadline(t) > deadline) timerRearm(t, deadline);
    return;
  }
  const id = timerAdd(deadline, 0, 1, i);
  store<i32>(c + OLD_TIMER, id > 0 ? id : 0);
}

/** The old close path: cancel the timer. */
export function benchHeapCancel(i: i32): void {
  const c = rec(i);
  const t = load<i32>(c + OLD_TIMER);
  if (t != 0) timerFree(t);
  store<i32>(c + OLD_TIMER, 0);
}

// A small LCG for the re-armed deadlines' jitter (the same sequence on both sides).
let lcg: u32 = 1;
export function benchSeed(seed: u32): void { lcg = seed | 1; }
// @ts-ignore: decorator
@inline function jitter(ms: f64): f64 { lcg = lcg * 1664525 + 1013904223; return <f64>(lcg >>> 8) * (ms / 16777216.0); }

/** The old runTimers + connTimer: pops what is due at `now`; a deadline that
 *  moved later re-arms, else the timer is freed (a timeout) and, with
 *  rearmMs >= 0, the record gets a new deadline now + rearmMs + [0, jitterMs)
 *  (a new connection on the fd). -> timeouts. */
export function benchHeapExpire(now: f64, rearmMs: f64, jitterMs: f64): i32 {
  let fired = 0;
  for (let id = timerPopDue(now); id > 0; id = timerPopDue(now)) {
    const i = timerOwner(id);
    const c = rec(i);
    const deadline = load<f64>(c + OLD_DEADLINE);
    if (deadline > now) { timerRearm(id, deadline); continue; }
    timerFree(id);
    store<i32>(c + OLD_TIMER, 0);
    fired++;
    if (rearmMs >= 0) benchHeapPush(i, now + rearmMs + jitter(jitterMs));
  }
  return fired;
}

/** The wheel's side of the same: advance, then take every due record. -> timeouts. */
export function benchWheelExpire(now: f64, rearmMs: f64, jitterMs: f64): i32 {
  wheelAdvance(now);
  let fired = 0;
  for (let i = wheelPopDue(now); i >= 0; i = wheelPopDue(now)) {
    fired++;
    if (rearmMs >= 0) wheelArm(i, now + rearmMs + jitter(jitterMs), now);
  }
  return fired;
}
