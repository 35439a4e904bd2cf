// The handler table: fd-indexed, O(1). One 16-byte slot per fd.
//
//   +0  u8  kind      H_* (who handles events on this fd)
//   +1  u8  flags     HF_*
//   +2  u16 gen       incarnation; goes into every interest request with the
//                     fd and comes back in its events, so an event queued
//                     for an earlier owner of a reused fd number can be
//                     recognised and dropped
//   +4  i32 interest  EV_* bits the handler asked for
//   +8  i32 id        JS handler id (H_JS) or protocol (H_LISTENER)
//   +12 i32 kernel    EV_* interest last sent to the backend (-1: not watched)
//
// Every interest request (OP_CTL) leaves the core through emitInterest()
// below: the one place that knows the request's arguments.
//
// Zombie guard (seed 003, M3). While a batch of events is being dispatched,
// a deregister marks the slot HF_ZOMBIE at once (later events of the batch
// for that fd are dropped), and a register marks the new slot HF_PENDING (it
// receives nothing from the current batch, whose events predate it). The
// kernel side of every change goes through the deferred-modification queue,
// flushed after the batch, after each JS call outside dispatch, or on demand.
// That closes the fd-reuse race: deregister fd 5, accept returns fd 5,
// register it again -> the old handler never fires, the new one never sees
// the stale event.
import {
  OP_CTL, INTEREST_ADD, INTEREST_MOD, INTEREST_DEL, EV_READABLE, EV_WRITABLE, EV_EDGE, EV_ERROR, EV_HANGUP,
  EBADF, EEXIST, ENOENT, ENOMEM,
} from "../abi";
import { submit, roundRoom } from "./ctl";

export const H_NONE: u8 = 0;
export const H_JS: u8 = 1;
export const H_LISTENER: u8 = 2;
export const H_CONN: u8 = 3;

export const HF_ZOMBIE: u8 = 1;
export const HF_PENDING: u8 = 2;

const SLOT_SIZE: usize = 16;
export let table: usize = 0;
export let maxFds: i32 = 0;

/** True while a batch of events is being handed out. */
export let dispatching = false;
export function setDispatching(on: bool): void { dispatching = on; }

// Deferred-modification queue: a ring of 12-byte records {fd, op, mask}.
const MOD_SIZE: usize = 12;
let mods: usize = 0;
let modCap: i32 = 0;
let modHead: i32 = 0;
let modLen: i32 = 0;
// fds whose slot changed during the current batch (for endBatch)
let touched: usize = 0;
let touchedLen: i32 = 0;

export function handlersInit(fds: i32): void {
  maxFds = fds;
  table = heap.alloc(<usize>fds * SLOT_SIZE);
  memory.fill(table, 0, <usize>fds * SLOT_SIZE);
  for (let fd = 0; fd < fds; fd++) store<i32>(slot(fd), -1, 12);
  modCap = fds * 2 + 64;
  mods = heap.alloc(<usize>modCap * MOD_SIZE);
  touched = heap.alloc(<usize>modCap * 4);
}

function touch(fd: i32): void {
  if (touchedLen < modCap) store<i32>(touched + <usize>(touchedLen++) * 4, fd);
}

@inline export function slot(fd: i32): usize { return table + <usize>fd * SLOT_SIZE; }
@inline export function slotKind(fd: i32): u8 { return load<u8>(slot(fd)); }
@inline export function slotFlags(fd: i32): u8 { return load<u8>(slot(fd), 1); }
@inline export function slotGen(fd: i32): u16 { return load<u16>(slot(fd), 2); }
@inline export function slotInterest(fd: i32): i32 { return load<i32>(slot(fd), 4); }
@inline export function slotId(fd: i32): i32 { return load<i32>(slot(fd), 8); }
@inline export function validFd(fd: i32): bool { return fd >= 0 && fd < maxFds; }

/** What a handler's requested bits become as interest: the bits it may ask for. */
@inline export function interestBits(interest: i32): i32 {
  return interest & (EV_READABLE | EV_WRITABLE | EV_EDGE);
}

/** Event bits as JS callbacks see them (EDGE is interest only). */
@inline export function reactorEvents(ev: i32): i32 {
  return ev & (EV_READABLE | EV_WRITABLE | EV_ERROR | EV_HANGUP);
}

/** The interest last sent to the backend for fd, -1 if it is not watched. */
@inline export function slotKernel(fd: i32): i32 { return load<i32>(slot(fd), 12); }

/**
 * The one emitter of interest requests: OP_CTL(fd, op, bits, generation).
 * Notes what the backend will hold (the retry logic of flushMods and
 * ctlFailed relies on it), so every caller goes through here.
 */
export function emitInterest(fd: i32, op: i32, bits: i32): void {
  const s = slot(fd);
  store<i32>(s, op == INTEREST_DEL ? -1 : bits, 12);
  submit(OP_CTL, fd, op, bits, <i32>load<u16>(s, 2), 0);
}

/** Sets fd's interest to `bits`: ADD if unwatched, MOD if different, nothing if the same. */
export function setInterest(fd: i32, bits: i32): void {
  const k = slotKernel(fd);
  if (k == bits) return;
  emitInterest(fd, k == -1 ? INTEREST_ADD : INTEREST_MOD, bits);
}

function queueMod(fd: i32, op: i32, mask: i32): bool {
  if (modLen == modCap) return false;
  const e = mods + <usize>((modHead + modLen) % modCap) * MOD_SIZE;
  store<i32>(e, fd);
  store<i32>(e, op, 4);
  store<i32>(e, mask, 8);
  modLen++;
  return true;
}

/**
 * Installs a handler. `interest` is in EV_* bits. Returns 0 or -errno.
 * The kernel registration is queued; the slot is live at once, except that
 * during dispatch it is HF_PENDING until the batch is over.
 */
export function handlerAdd(fd: i32, kind: u8, id: i32, interest: i32): i32 {
  if (!validFd(fd)) return -EBADF;
  const s = slot(fd);
  const k = load<u8>(s);
  if (k != H_NONE && !(load<u8>(s, 1) & HF_ZOMBIE)) return -EEXIST;
  if (!queueMod(fd, INTEREST_ADD, interestBits(interest))) return -ENOMEM;
  store<u8>(s, kind);
  store<u8>(s, dispatching ? HF_PENDING : 0, 1);
  if (dispatching) touch(fd);
  store<u16>(s, load<u16>(s, 2) + 1, 2);
  store<i32>(s, interest, 4);
  store<i32>(s, id, 8);
  return 0;
}

/**
 * Installs a built-in handler and emits its INTEREST_ADD now, bypassing the
 * queue: built-in connections are opened from completions, never while a
 * batch is being handed out, so there is nothing to defer. `mask` is the
 * exact interest (EV_* bits).
 */
export function handlerInstall(fd: i32, kind: u8, id: i32, mask: i32): void {
  const s = slot(fd);
  store<u8>(s, kind);
  store<u8>(s, 0, 1);
  store<u16>(s, load<u16>(s, 2) + 1, 2);
  store<i32>(s, EV_READABLE, 4);
  store<i32>(s, id, 8);
  // Always emitted, even for the same bits: the generation changed.
  emitInterest(fd, slotKernel(fd) == -1 ? INTEREST_ADD : INTEREST_MOD, mask);
}

export function handlerModify(fd: i32, interest: i32): i32 {
  if (!validFd(fd)) return -EBADF;
  const s = slot(fd);
  if (load<u8>(s) == H_NONE || (load<u8>(s, 1) & HF_ZOMBIE)) return -ENOENT;
  if (!queueMod(fd, INTEREST_MOD, interestBits(interest))) return -ENOMEM;
  store<i32>(s, interest, 4);
  return 0;
}

/**
 * Takes the handler in slot s (fd) out of the table: during a dispatch it
 * becomes a zombie, so the rest of the batch skips it (its slot is freed when
 * the batch ends); otherwise the slot is free at once.
 */
function retire(fd: i32, s: usize): void {
  if (dispatching) {
    store<u8>(s, HF_ZOMBIE, 1);
    touch(fd);
  } else {
    store<u8>(s, H_NONE);
    store<u8>(s, 0, 1);
  }
  store<i32>(s, 0, 4);
}

/**
 * Removes a handler. `closing`: the caller is about to close the fd, which
 * removes it from the backend (the pump tells it: Backend.closed), so no
 * INTEREST_DEL is needed.
 */
export function handlerRemove(fd: i32, closing: bool): i32 {
  if (!validFd(fd)) return -EBADF;
  const s = slot(fd);
  // The fd is about to be closed (and its number may be reused at once):
  // changes still queued for it, even from an earlier deregister, must not
  // reach whatever gets that number next.
  if (closing) { purgeMods(fd); store<i32>(s, -1, 12); }
  if (load<u8>(s) == H_NONE || (load<u8>(s, 1) & HF_ZOMBIE)) return -ENOENT;
  if (!closing && !queueMod(fd, INTEREST_DEL, 0)) return -ENOMEM;
  retire(fd, s);
  return 0;
}

/** Cancels every queued change for fd (they become no-ops in place). */
function purgeMods(fd: i32): void {
  for (let i = 0; i < modLen; i++) {
    const e = mods + <usize>((modHead + i) % modCap) * MOD_SIZE;
    if (load<i32>(e) == fd) store<i32>(e, -1);
  }
}

/**
 * Applies queued modifications: emits one OP_CTL per change, in order, while
 * the SQ has room (the rest stay queued). After a batch, zombies are cleared
 * and pending handlers go live. Returns true when the queue is empty.
 */
export function flushMods(): bool {
  while (modLen > 0 && roundRoom() > 0) {
    const e = mods + <usize>modHead * MOD_SIZE;
    const fd = load<i32>(e);
    const op = load<i32>(e, 4);
    const mask = load<i32>(e, 8);
    modHead = (modHead + 1) % modCap;
    modLen--;
    if (fd < 0) continue; // purged
    let kop = op;
    const inKernel = slotKernel(fd) != -1;
    // Keep the backend's view consistent with what we believe it holds: a MOD
    // of an fd that is not watched becomes an ADD, an ADD of one that is
    // becomes a MOD, a DEL of one that is not is dropped.
    if (op == INTEREST_MOD && !inKernel) kop = INTEREST_ADD;
    else if (op == INTEREST_ADD && inKernel) kop = INTEREST_MOD;
    else if (op == INTEREST_DEL && !inKernel) continue;
    emitInterest(fd, kop, mask);
  }
  return modLen == 0;
}

/** End of a batch: zombies die, pending handlers go live. */
export function endBatch(): void {
  dispatching = false;
  for (let i = 0; i < touchedLen; i++) {
    const fd = load<i32>(touched + <usize>i * 4);
    const s = slot(fd);
    const f = load<u8>(s, 1);
    if (f & HF_ZOMBIE) {
      // A zombie that nobody re-registered during the batch becomes free.
      store<u8>(s, H_NONE);
    }
    store<u8>(s, 0, 1);
  }
  touchedLen = 0;
}

/**
 * Called when the backend refused an OP_CTL (`gen`: the slot generation the
 * request carried): our view of the fd is wrong. If the refused change was a
 * JS handler's ADD or MOD (register/modify), that handler is removed, since
 * what it asked for is not in effect, and its id is returned so that JS can
 * be told (CALL_CTL_ERROR); else -1. A refused DEL reports nothing: the fd
 * is unwatched either way (ENOENT: it was not there; EBADF: closing it
 * took it out).
 */
export function ctlFailed(fd: i32, op: i32, err: i32, gen: i32): i32 {
  if (!validFd(fd)) return -1;
  const s = slot(fd);
  // A request of an earlier incarnation of the fd (closed, its number
  // reused, and completions handed back out of order): it says nothing
  // about the current one.
  if (<i32>load<u16>(s, 2) != gen) return -1;
  // Not (or no longer) watched: ENOENT, EBADF, or a refused ADD (EPERM for
  // a regular file, ...) unless the kernel already had it (EEXIST).
  if (err == ENOENT || err == EBADF || (op == INTEREST_ADD && err != EEXIST)) store<i32>(s, -1, 12);
  if (op == INTEREST_DEL) return -1;
  // Only the incarnation that asked: a handler registered since is not at fault.
  if (load<u8>(s) != H_JS || (load<u8>(s, 1) & HF_ZOMBIE) || <i32>load<u16>(s, 2) != gen) return -1;
  // A MOD of an fd the kernel does not know: it was closed without
  // deregister() and its number reused (register() on a registered fd is a
  // MOD). Register the new file afresh, as libuv does.
  if (op == INTEREST_MOD && err == ENOENT && queueMod(fd, INTEREST_ADD, interestBits(load<i32>(s, 4)))) return -1;
  const id = load<i32>(s, 8);
  purgeMods(fd);
  // Still watched (a refused MOD, an ADD the kernel already had): take it
  // out, so it cannot wake the loop for a handler that is gone.
  if (slotKernel(fd) != -1) queueMod(fd, INTEREST_DEL, 0);
  retire(fd, s);
  return id;
}

/** A handler that is live for events of the current batch. */
@inline export function slotAccepts(fd: i32, gen: i32): bool {
  const s = slot(fd);
  return load<u8>(s) != H_NONE && load<u8>(s, 1) == 0 && <i32>load<u16>(s, 2) == gen;
}
