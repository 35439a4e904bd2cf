// Trap recovery: what the core does after a trap (a bug, or an abort) escaped
// one of its calls (the host calls recover(), loop.ts resumes the phase).
import { CTL_CURRENT_FD, STAT_TRAPS, C_STATE, C_PROTO, C_INFLIGHT, CLOSE_TRAP } from "../abi";
import { ctlI32, ctlAddI32, handOut, setCurrentFd } from "./ctl";
import { validFd, slotGen } from "./handlers";
import { conn, cget, PROTO_LISTENER, connCloseSoon, connSetReason } from "./conn";
import { inflightHasFd, inFlight } from "./inflight";

// ---- after a trap -------------------------------------------------------
// A trap (a bug, or an abort) leaves the core mid-way through one connection.
// That connection is doomed: its completions are ignored and it is closed at
// the start of the next round. Everything else carries on.

// Doomed connections: {fd, round of the trap, handler generation}, 12 bytes
// each. The generation tells the doomed connection from a new one on the
// same fd number: one closed some other way (a timeout, a failed epoll_ctl)
// before its doomed close, its fd reused by the next accept.
// (42 of them in the 512 bytes 64 8-byte entries took: the static layout,
// and so every address a recording holds, stays as it was.)
const DOOMED_SIZE = 12;
const DOOMED_MAX = 42;
const doomed: usize = memory.data(512);
export let doomedLen = 0;
let roundNo = 0; // rounds carried out (complete() calls that start a round)
let inCompletions = false;
export let trapFd = -1;
/** debugTrapCompletion's fd: trap once when a completion of this connection's I/O is handled. */
export let trapDoneFd = -1;

/**
 * Called by the host after a trap escaped a core call. Returns -1 if the trap
 * happened while consuming completions (call complete(n) again: it resumes
 * after the one that trapped), else the number of requests emitted so far in
 * this round (carry them out and call complete() as usual; the phase resumes).
 */
export function recover(): i32 {
  ctlAddI32(STAT_TRAPS, 1);
  const fd = ctlI32(CTL_CURRENT_FD);
  setCurrentFd(-1);
  if (validFd(fd) && cget(fd, C_STATE) != 0 && cget(fd, C_PROTO) != PROTO_LISTENER && doomedLen < DOOMED_MAX) {
    const e = doomed + <usize>(doomedLen++) * DOOMED_SIZE;
    store<i32>(e, fd);
    store<i32>(e, roundNo, 4);
    store<i32>(e, <i32>slotGen(fd), 8);
    // Trapped handling its own completion: that request is over (its tag
    // was freed before the handler ran), so it no longer holds the
    // connection. Left marked in flight, the idle timeout would wait for it
    // forever, and an idle server would never close the doomed connection.
    if (inCompletions && !inflightHasFd(fd)) store<i32>(conn(fd) + C_INFLIGHT, 0);
  }
  if (inCompletions) { inCompletions = false; return -1; }
  return handOut();
}

export function isDoomed(fd: i32): bool {
  for (let i = 0; i < doomedLen; i++) {
    const e = doomed + <usize>i * DOOMED_SIZE;
    if (load<i32>(e) == fd && load<i32>(e, 8) == <i32>slotGen(fd)) return true;
  }
  return false;
}

/**
 * Closes doomed connections once every request they emitted before the trap
 * has completed: two rounds later (a request emitted but not yet noted in
 * C_INFLIGHT when the trap hit is carried out by then), or at once when no
 * request at all is in flight, and once no request on the fd is in the
 * in-flight table (a completion may come in a later tick). Closing releases
 * their buffers, and a read still pending into a released buffer would
 * corrupt the pool. The close goes through the run
 * queue (it respects the round's room).
 */
export function closeDoomed(): void {
  let kept = 0;
  for (let i = 0; i < doomedLen; i++) {
    const e = doomed + <usize>i * DOOMED_SIZE;
    const fd = load<i32>(e);
    // Gone already (closed some other way; a new connection on the same fd
    // number is not the doomed one): forget it, whatever the new one has in
    // flight.
    if (cget(fd, C_STATE) == 0 || load<i32>(e, 8) != <i32>slotGen(fd)) continue;
    // With nothing at all in flight, no round may come (an idle server calls
    // in again only for new events), and no request anyone emitted can still
    // point at its buffers: it is closed now, not left open forever.
    if ((roundNo < load<i32>(e, 4) + 2 && inFlight > 0) || inflightHasFd(fd)) {
      memory.copy(doomed + <usize>(kept++) * DOOMED_SIZE, e, DOOMED_SIZE);
      continue;
    }
    {
      store<i32>(conn(fd) + C_INFLIGHT, 0);
      connSetReason(fd, CLOSE_TRAP);
      connCloseSoon(fd);
    }
  }
  doomedLen = kept;
}

/** Fault injection for tests and the fuzzer: trap once when fd is next run. */
export function debugTrapFd(fd: i32): void { trapFd = fd; }

/**
 * Fault injection: trap once when the next completion of fd's own I/O
 * (READ, WRITE, ...) is handled, inside complete() or the completion phase's
 * reaped(): the recovery path that resumes after the completion that trapped.
 */
export function debugTrapCompletion(fd: i32): void { trapDoneFd = fd; }
/** debugTrapCompletion's trap, as its completion is handled. */
export function trapCompletionNow(): void { trapDoneFd = -1; unreachable(); }

/** A round starts (complete() with a fresh CQ): the doomed count their rounds by it. */
export function roundStarted(): void { roundNo++; }
/** complete() is consuming completions (a trap there resumes after the one that trapped). */
export function setInCompletions(on: bool): void { inCompletions = on; }
/** debugTrapFd's trap, when its connection runs. */
export function trapNow(): void { trapFd = -1; unreachable(); }
