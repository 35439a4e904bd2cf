// The protocol table: what the reactor calls for a connection of each
// protocol. reactor/ knows protocols only through this table (it imports
// nothing from proto/ or http/); the protocols register themselves at init
// (assembly/protocols.ts, one line each) and their hooks are their own.
//
// A hook is a first-class function, called through call_indirect (see the
// table below) where there used to be an if-chain on C_PROTO.
//
// Hooks (fd: the connection; the reactor has set CTL_CURRENT_FD to it):
//   open(fd)               a listener of the protocol accepted fd: open the record (connOpen)
//   run(fd)                its turn in the run queue: emit its next request, if any
//   complete(fd, op, res)  one of its requests (READ/WRITE/WRITEV/SENDFILE/SEND/SHUTDOWN/LIST) completed
//   timeout(fd)            its deadline passed (nothing in flight)
//   drain(fd)              a graceful shutdown began: close when idle
//   close(fd)              connClose: give back what the protocol holds beyond the record
//   bodyFinished(fd, sent) the output body (C_BODY_*) is over: sent in full, or abandoned
//                          because the connection closes (see conn.ts outDone)
//   service(op, fd, res)   a host service the protocol owns completed (the request's
//                          arguments are inflight.ts done*): owned ops are routed to
//                          the protocol whatever connection asked, even one gone since
//   connBytes(fd)          ring-pool bytes the connection holds besides its write ring
//   sharedBytes()          ring-pool bytes the protocol holds for no connection (caches)
//   timer(id, arg)         a TimerKind.PROTO timer of the protocol fired (protocolTimerAdd): the hook
//                          re-arms (timerRearm) or frees (timerFree) id; it may submit one request
// The last two feed checkInvariants only.
import { OP_COUNT } from "../abi";
import { timerAdd, timerFree } from "./timers";
import { TimerKind } from "./timerkind";

export type ConnHook = (fd: i32) => void;
export type CompleteHook = (fd: i32, op: i32, res: i32) => void;
export type BodyHook = (fd: i32, sent: bool) => void;
export type ServiceHook = (op: i32, fd: i32, res: i32) => void;
export type BytesHook = (fd: i32) => i32;
export type SharedBytesHook = () => i32;
export type TimerHook = (id: i32, arg: i32) => void;

function noConn(fd: i32): void {}
function noComplete(fd: i32, op: i32, res: i32): void {}
function noBody(fd: i32, sent: bool): void {}
function noService(op: i32, fd: i32, res: i32): void {}
function noBytes(fd: i32): i32 { return 0; }
function noSharedBytes(): i32 { return 0; }
function noTimer(id: i32, arg: i32): void { timerFree(id); }

/** A protocol's hooks; a hook left unset does nothing. */
@final export class Protocol {
  open: ConnHook = noConn;
  run: ConnHook = noConn;
  complete: CompleteHook = noComplete;
  timeout: ConnHook = noConn;
  drain: ConnHook = noConn;
  close: ConnHook = noConn;
  bodyFinished: BodyHook = noBody;
  service: ServiceHook = noService;
  connBytes: BytesHook = noBytes;
  sharedBytes: SharedBytesHook = noSharedBytes;
  timer: TimerHook = noTimer;
}

// The table proper: one row per protocol id (C_PROTO: PROTO_* of abi.ts, and
// the reactor's own PROTO_LISTENER of conn.ts, hence 128 rows), one u32 per
// hook holding the hook's index in the wasm function table. A call is one
// load and a call_indirect: the Protocol record is read only at
// registration (going through it costs two more dependent loads per call).
const MAX_PROTOCOLS = 128;
enum Hook { OPEN, RUN, COMPLETE, TIMEOUT, DRAIN, CLOSE, BODY_FINISHED, SERVICE, CONN_BYTES, SHARED_BYTES, TIMER, COUNT }
const HOOKS = Hook.COUNT;
const ROW_SIZE: usize = HOOKS * 4;
const table: usize = memory.data(MAX_PROTOCOLS * HOOKS * 4);
const known: usize = memory.data(MAX_PROTOCOLS);
// Owner protocol of each host-service op (0: none; the op is the reactor's
// or a connection's).
const owners: usize = memory.data(OP_COUNT * 4);

/** The function-table index of a hook (a function reference is a pointer to its index). */
@inline function fnIndex<T>(f: T): u32 { return load<u32>(changetype<usize>(f)); }

/** Registers protocol `id`; false if the id is out of range or taken. */
export function protocolRegister(id: i32, p: Protocol): bool {
  if (id <= 0 || id >= MAX_PROTOCOLS || load<u8>(known + <usize>id) != 0) return false;
  const r = table + <usize>id * ROW_SIZE;
  store<u32>(r + Hook.OPEN * 4, fnIndex(p.open));
  store<u32>(r + Hook.RUN * 4, fnIndex(p.run));
  store<u32>(r + Hook.COMPLETE * 4, fnIndex(p.complete));
  store<u32>(r + Hook.TIMEOUT * 4, fnIndex(p.timeout));
  store<u32>(r + Hook.DRAIN * 4, fnIndex(p.drain));
  store<u32>(r + Hook.CLOSE * 4, fnIndex(p.close));
  store<u32>(r + Hook.BODY_FINISHED * 4, fnIndex(p.bodyFinished));
  store<u32>(r + Hook.SERVICE * 4, fnIndex(p.service));
  store<u32>(r + Hook.CONN_BYTES * 4, fnIndex(p.connBytes));
  store<u32>(r + Hook.SHARED_BYTES * 4, fnIndex(p.sharedBytes));
  store<u32>(r + Hook.TIMER * 4, fnIndex(p.timer));
  store<u8>(known + <usize>id, 1);
  return true;
}

/** Routes every completion of host-service `op` to protocol `id`'s service hook. */
export function protocolOwnsOp(id: i32, op: i32): void {
  if (op > 0 && op < OP_COUNT) store<i32>(owners + (<usize>op << 2), id);
}

export function protocolKnown(id: i32): bool {
  return id > 0 && id < MAX_PROTOCOLS && load<u8>(known + <usize>id) != 0;
}

/** The protocol that owns host-service op `op`, or 0. */
@inline export function opOwner(op: i32): i32 {
  return op > 0 && op < OP_COUNT ? load<i32>(owners + (<usize>op << 2)) : 0;
}

// The calls. `proto` must be registered (C_PROTO of a live connection is):
// an unregistered row holds index 0, which is no function (a trap).
@inline function hook(proto: i32, h: i32): u32 {
  return load<u32>(table + <usize>(proto & (MAX_PROTOCOLS - 1)) * ROW_SIZE + <usize>(h * 4));
}
@inline export function protoOpen(proto: i32, fd: i32): void { call_indirect<void>(hook(proto, Hook.OPEN), fd); }
@inline export function protoRun(proto: i32, fd: i32): void { call_indirect<void>(hook(proto, Hook.RUN), fd); }
@inline export function protoComplete(proto: i32, fd: i32, op: i32, res: i32): void {
  call_indirect<void>(hook(proto, Hook.COMPLETE), fd, op, res);
}
@inline export function protoTimeout(proto: i32, fd: i32): void { call_indirect<void>(hook(proto, Hook.TIMEOUT), fd); }
@inline export function protoDrain(proto: i32, fd: i32): void { call_indirect<void>(hook(proto, Hook.DRAIN), fd); }
@inline export function protoClose(proto: i32, fd: i32): void { call_indirect<void>(hook(proto, Hook.CLOSE), fd); }
@inline export function protoBodyFinished(proto: i32, fd: i32, sent: bool): void {
  call_indirect<void>(hook(proto, Hook.BODY_FINISHED), fd, sent);
}
@inline export function protoService(proto: i32, op: i32, fd: i32, res: i32): void {
  call_indirect<void>(hook(proto, Hook.SERVICE), op, fd, res);
}
@inline export function protoConnBytes(proto: i32, fd: i32): i32 { return call_indirect<i32>(hook(proto, Hook.CONN_BYTES), fd); }

/** Ring-pool bytes all protocols hold for no connection (invariant check only). */
export function protocolsSharedBytes(): i32 {
  let n = 0;
  for (let id = 1; id < MAX_PROTOCOLS; id++) {
    if (load<u8>(known + <usize>id) != 0) n += call_indirect<i32>(hook(id, Hook.SHARED_BYTES));
  }
  return n;
}

/**
 * A timer of protocol `id` at `deadline` (loop ms): its timer hook gets
 * (timer id, arg) when it fires. arg: 0..2^24-1. -> the timer id, or -1.
 */
export function protocolTimerAdd(id: i32, arg: i32, deadline: f64): i32 {
  return timerAdd(deadline, 0, TimerKind.PROTO, (id & (MAX_PROTOCOLS - 1)) | (arg << 7));
}

/** Fires a TimerKind.PROTO timer (loop.ts): its owner names the protocol and the argument. */
export function protoTimer(id: i32, owner: i32): void {
  const proto = owner & (MAX_PROTOCOLS - 1);
  if (load<u8>(known + <usize>proto) == 0) { timerFree(id); return; }
  call_indirect<void>(hook(proto, Hook.TIMER), id, owner >>> 7);
}
