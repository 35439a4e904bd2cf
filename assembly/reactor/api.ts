// The JS-facing reactor API: handlers, timers and tasks whose callbacks live
// in JS, keyed by id, and the listening sockets of the built-in protocols.
import { EINVAL, ENOMEM } from "../abi";
import { ctl, cfgText, now } from "./ctl";
import { handlerAdd, handlerModify, handlerRemove, slotKind, H_JS, H_LISTENER, H_CONN, validFd } from "./handlers";
import { taskPush } from "./tasks";
import { listenerAdd } from "./listener";
import { timerAdd, timerCancel, timerKind, timerIsLive } from "./timers";
import { TimerKind } from "./timerkind";

/** Address of the control block; the host writes the config there, then calls init(). */
export function ctlAddress(): usize { return ctl; }
/** Address of the config text area (abi.ts CFGT_*), written by the host before init(). */
export function configText(): usize { return cfgText; }

// Handlers, timers and tasks whose callbacks live in JS, keyed by id.

export function register(fd: i32, interest: i32, id: i32): i32 { return handlerAdd(fd, H_JS, id, interest); }
export function modify(fd: i32, interest: i32): i32 {
  if (validFd(fd) && slotKind(fd) != H_JS) return -EINVAL;
  return handlerModify(fd, interest);
}
export function deregister(fd: i32, closing: bool): i32 {
  // Built-in handlers are not JS's to remove; anything else goes through, so
  // that `closing` always purges queued changes for the fd.
  if (validFd(fd) && (slotKind(fd) == H_CONN || slotKind(fd) == H_LISTENER)) return -EINVAL;
  return handlerRemove(fd, closing);
}
/** A JS timer; returns its id (> 0) or -ENOMEM. */
export function timerStart(ms: f64, repeatMs: f64): i32 {
  const id = timerAdd(now() + (ms > 0 ? ms : 0), repeatMs > 0 ? repeatMs : 0, TimerKind.JS, 0);
  return id > 0 ? id : -ENOMEM;
}
export function timerStop(id: i32): bool {
  if (!timerIsLive(id) || timerKind(id) != TimerKind.JS) return false;
  return timerCancel(id);
}
export function defer(id: i32): bool { return taskPush(id); }

/** A listening socket of a built-in protocol (PROTO_ECHO, PROTO_HTTP). */
export function listen(fd: i32, proto: i32): i32 { return listenerAdd(fd, proto); }
