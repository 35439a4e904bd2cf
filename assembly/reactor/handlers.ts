// The handler table: fd-indexed, O(1). One 16-byte slot per fd.
//
//   +0  u8  kind      H_* (who handles events on this fd)
//   +1  u8  flags     HF_*
//   +2  u16 gen       incarnation; goes into epoll's data field with the fd,
//                     so an event queued for an earlier owner of a reused fd
//                     number can be recognised and dropped
//   +4  i32 interest  REACTOR_* bits the handler asked for
//   +8  i32 id        JS handler id (H_JS) or protocol (H_LISTENER)
//   +12 i32 kernel    epoll mask last sent to the kernel (-1: not in epoll)
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
  OP_CTL, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL, EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLET,
  EPOLLERR, EPOLLHUP, REACTOR_READABLE, REACTOR_WRITABLE, REACTOR_EDGE, REACTOR_ERROR, REACTOR_HANGUP,
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

/** Reactor bits -> epoll mask. */
export function epollMask(interest: i32): i32 {
  let m = 0;
  if (interest & REACTOR_READABLE) m |= EPOLLIN | EPOLLRDHUP;
  if (interest & REACTOR_WRITABLE) m |= EPOLLOUT;
  if (interest & REACTOR_EDGE) m |= EPOLLET;
  return m;
}

/** epoll bits -> reactor bits, as JS callbacks see them. */
export function reactorEvents(ev: i32): i32 {
  let r = 0;
  if (ev & EPOLLIN) r |= REACTOR_READABLE;
  if (ev & EPOLLOUT) r |= REACTOR_WRITABLE;
  if (ev & EPOLLERR) r |= REACTOR_ERROR;
  if (ev & (EPOLLHUP | EPOLLRDHUP)) r |= REACTOR_HANGUP;
  return r;
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
 * Installs a handler. `interest` is in REACTOR_* bits. Returns 0 or -errno.
 * The kernel registration is queued; the slot is live at once, except that
 * during dispatch it is HF_PENDING until the batch is over.
 */
export function handlerAdd(fd: i32, kind: u8, id: i32, interest: i32): i32 {
  if (!validFd(fd)) return -EBADF;
  const s = slot(fd);
  const k = load<u8>(s);
  if (k != H_NONE && !(load<u8>(s, 1) & HF_ZOMBIE)) return -EEXIST;
  if (!queueMod(fd, EPOLL_CTL_ADD, epollMask(interest))) return -ENOMEM;
  store<u8>(s, kind);
  store<u8>(s, dispatching ? HF_PENDING : 0, 1);
  if (dispatching) touch(fd);
  store<u16>(s, load<u16>(s, 2) + 1, 2);
  store<i32>(s, interest, 4);
  store<i32>(s, id, 8);
  return 0;
}

/**
 * Installs a built-in handler and emits its EPOLL_CTL_ADD now, bypassing the
 * queue: built-in connections are opened from completions, never while a
 * batch is being handed out, so there is nothing to defer. `mask` is the
 * exact epoll mask.
 */
export function handlerInstall(fd: i32, kind: u8, id: i32, mask: i32): void {
  const s = slot(fd);
  store<u8>(s, kind);
  store<u8>(s, 0, 1);
  const gen = load<u16>(s, 2) + 1;
  store<u16>(s, gen, 2);
  store<i32>(s, REACTOR_READABLE, 4);
  store<i32>(s, id, 8);
  const op = load<i32>(s, 12) == -1 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  store<i32>(s, mask, 12);
  submit(OP_CTL, fd, op, mask, fd, <i32>gen);
}

export function handlerModify(fd: i32, interest: i32): i32 {
  if (!validFd(fd)) return -EBADF;
  const s = slot(fd);
  if (load<u8>(s) == H_NONE || (load<u8>(s, 1) & HF_ZOMBIE)) return -ENOENT;
  if (!queueMod(fd, EPOLL_CTL_MOD, epollMask(interest))) return -ENOMEM;
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
 * removes it from epoll by itself, so no EPOLL_CTL_DEL is needed.
 */
export function handlerRemove(fd: i32, closing: bool): i32 {
  if (!validFd(fd)) return -EBADF;
  const s = slot(fd);
  // The fd is about to be closed (and its number may be reused at once):
  // changes still queued for it, even from an earlier deregister, must not
  // reach whatever gets that number next.
  if (closing) { purgeMods(fd); store<i32>(s, -1, 12); }
  if (load<u8>(s) == H_NONE || (load<u8>(s, 1) & HF_ZOMBIE)) return -ENOENT;
  if (!closing && !queueMod(fd, EPOLL_CTL_DEL, 0)) return -ENOMEM;
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
    const s = slot(fd);
    let kop = op;
    const inKernel = load<i32>(s, 12) != -1;
    // Keep the kernel's view consistent with what we believe it holds: a MOD
    // of an fd that is not in epoll becomes an ADD, an ADD of one that is
    // becomes a MOD, a DEL of one that is not is dropped.
    if (op == EPOLL_CTL_MOD && !inKernel) kop = EPOLL_CTL_ADD;
    else if (op == EPOLL_CTL_ADD && inKernel) kop = EPOLL_CTL_MOD;
    else if (op == EPOLL_CTL_DEL && !inKernel) continue;
    store<i32>(s, kop == EPOLL_CTL_DEL ? -1 : mask, 12);
    submit(OP_CTL, fd, kop, mask, fd, <i32>load<u16>(s, 2));
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
 * Called when the kernel refused an OP_CTL (`gen`: the slot generation the
 * request carried): our view of the fd is wrong. If the refused change was a
 * JS handler's ADD or MOD (register/modify), that handler is removed, since
 * what it asked for is not in effect, and its id is returned so that JS can
 * be told (CALL_CTL_ERROR); else -1. A refused DEL reports nothing: the fd
 * is out of epoll either way (ENOENT: it was not there; EBADF: closing it
 * took it out).
 */
export function ctlFailed(fd: i32, op: i32, err: i32, gen: i32): i32 {
  if (!validFd(fd)) return -1;
  const s = slot(fd);
  // Not (or no longer) in epoll: ENOENT, EBADF, or a refused ADD (EPERM for
  // a regular file, ...) unless the kernel already had it (EEXIST).
  if (err == ENOENT || err == EBADF || (op == EPOLL_CTL_ADD && err != EEXIST)) store<i32>(s, -1, 12);
  if (op == EPOLL_CTL_DEL) return -1;
  // Only the incarnation that asked: a handler registered since is not at fault.
  if (load<u8>(s) != H_JS || (load<u8>(s, 1) & HF_ZOMBIE) || <i32>load<u16>(s, 2) != gen) return -1;
  // A MOD of an fd the kernel does not know: it was closed without
  // deregister() and its number reused (register() on a registered fd is a
  // MOD). Register the new file afresh, as libuv does.
  if (op == EPOLL_CTL_MOD && err == ENOENT && queueMod(fd, EPOLL_CTL_ADD, epollMask(load<i32>(s, 4)))) return -1;
  const id = load<i32>(s, 8);
  purgeMods(fd);
  // Still in epoll (a refused MOD, an ADD the kernel already had): take it
  // out, so it cannot wake the loop for a handler that is gone.
  if (load<i32>(s, 12) != -1) queueMod(fd, EPOLL_CTL_DEL, 0);
  retire(fd, s);
  return id;
}

/** A handler that is live for events of the current batch. */
@inline export function slotAccepts(fd: i32, gen: i32): bool {
  const s = slot(fd);
  return load<u8>(s) != H_NONE && load<u8>(s, 1) == 0 && <i32>load<u16>(s, 2) == gen;
}
