// The core's structural invariants, checked by the fuzzer and `replay --check`;
// never on the hot path.
import {
  INV_OK, INV_TIMER_HEAP, INV_ZOMBIE, INV_CONN_HANDLER, INV_RBUF_BOUNDS, INV_WRING_BOUNDS, INV_RUN_QUEUE,
  INV_RBUF_HELD, INV_RING_BYTES, INV_TIMER_WHEEL, C_STATE, C_PROTO, C_RBUF, C_RLEN, C_RPOS, C_WRING, C_WCLS, C_WLEN,
} from "../abi";
import { readHeld, ringBytesHeld, readBufCap } from "./pool";
import { slotKind, slotFlags, H_LISTENER, H_CONN, maxFds, validFd, dispatching } from "./handlers";
import { conn, writeBufMax, runQueueSane } from "./conn";
import { timersCheck } from "./timers";
import { wheelCheck } from "./wheel";
import { protocolsSharedBytes, protoConnBytes } from "./protocol";

/**
 * Checks the core's structural invariants; returns INV_OK when they hold,
 * else the INV_* code (abi.ts) of the first that does not. INV_RING_BYTES
 * counts write rings, response buffers (listing, multipart) and cached file
 * bodies: a buffer leaked or given back twice. Never on the hot path.
 */
export function checkInvariants(): i32 {
  if (!timersCheck()) return INV_TIMER_HEAP;
  if (!wheelCheck()) return INV_TIMER_WHEEL;
  let held = 0;
  let ringBytes = protocolsSharedBytes(); // ring-pool bytes accounted for
  for (let fd = 0; fd < maxFds; fd++) {
    const kind = slotKind(fd);
    const hf = slotFlags(fd);
    if (!dispatching && (hf & 1 /* HF_ZOMBIE */) != 0) return INV_ZOMBIE;
    const c = conn(fd);
    const live = load<i32>(c + C_STATE) != 0;
    if ((hf & 1) == 0 && live != (kind == H_CONN || kind == H_LISTENER)) return INV_CONN_HANDLER;
    if (!live) continue;
    const rb = load<i32>(c + C_RBUF);
    const rlen = load<i32>(c + C_RLEN), rpos = load<i32>(c + C_RPOS);
    if (rb != 0) {
      held++;
      if (rpos < 0 || rpos > rlen || rlen > readBufCap(<usize>rb)) return INV_RBUF_BOUNDS;
    } else if (rlen != 0 || rpos != 0) return INV_RBUF_BOUNDS;
    const ring = load<i32>(c + C_WRING), wlen = load<i32>(c + C_WLEN);
    if (wlen < 0 || wlen > writeBufMax) return INV_WRING_BOUNDS;
    if (ring != 0 && wlen > (4096 << load<i32>(c + C_WCLS))) return INV_WRING_BOUNDS;
    if (ring == 0 && wlen != 0) return INV_WRING_BOUNDS;
    if (ring != 0) ringBytes += 4096 << load<i32>(c + C_WCLS);
    ringBytes += protoConnBytes(load<i32>(c + C_PROTO), fd);
  }
  if (held != readHeld) return INV_RBUF_HELD;
  if (ringBytes != ringBytesHeld) return INV_RING_BYTES;
  if (!runQueueSane()) return INV_RUN_QUEUE;
  return INV_OK;
}

/** Reads an i32 field of a connection record (tests and the fuzzer's reports). */
export function debugConnI32(fd: i32, off: i32): i32 { return validFd(fd) ? load<i32>(conn(fd) + <usize>off) : 0; }
/** Reads an f64 field of a connection record. */
export function debugConnF64(fd: i32, off: i32): f64 { return validFd(fd) ? load<f64>(conn(fd) + <usize>off) : 0; }
