// The epoll backend (Linux; the default). See types.ts for the contract.
//
// Zero-copy on x86-64: struct epoll_event is packed there (events u32 at +0,
// data u64 at +4), which is exactly the core's event record with data =
// fd | generation << 32. epoll_wait writes straight into the core's event
// area and wait() then rewrites only the bits word of each record, in place
// (one Int32Array pass over n records). On arm64 the struct is 16 bytes with
// data at +8: epoll_wait fills a buffer of ours and wait() writes the records.
import * as abi from "../../assembly/abi.ts";
import { libc, errno, check, addressOf, pollFd, EPOLL_CLOEXEC } from "../libc.ts";
import type { Core } from "../core.ts";
import type { Backend } from "./types.ts";

// Linux UAPI values; they belong here and nowhere else.
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 1 << 31;

/** EV_* interest -> epoll mask. READABLE includes RDHUP: the peer's FIN is news for a reader. */
export function epollMask(bits: number): number {
  let m = 0;
  if (bits & abi.EV_READABLE) m |= EPOLLIN | EPOLLRDHUP;
  if (bits & abi.EV_WRITABLE) m |= EPOLLOUT;
  if (bits & abi.EV_EDGE) m |= EPOLLET;
  return m;
}

/**
 * epoll bits -> EV_*: IN (1) -> READABLE (1), OUT (4) -> WRITABLE (2), ERR
 * (8) -> ERROR (4), HUP (0x10) or RDHUP (0x2000) -> HANGUP (8). Shifts, no
 * branches: this runs once per event.
 */
export const evBits = (e: number): number => (e & 1) | ((e >> 1) & 14) | ((e >> 10) & 8);

const PACKED = process.arch !== "arm64";
const NATIVE_SIZE = PACKED ? 12 : 16;
const NATIVE_DATA = PACKED ? 4 : 8;

export class EpollBackend implements Backend {
  readonly name = "epoll" as const;
  readonly epfd: number;
  // epoll_event for epoll_ctl, and (arm64) epoll_wait's own buffer
  private ctlBuf = new ArrayBuffer(16);
  private readonly ctlView = new DataView(this.ctlBuf);
  private readonly ctlAddr = addressOf(this.ctlBuf);
  private waitBuf: ArrayBuffer | null = null;
  private waitAddr = 0;
  private attached: { stop(): void; close?(): void } | null = null;

  constructor() {
    this.epfd = check("epoll_create1", libc.epoll_create1(EPOLL_CLOEXEC));
  }

  setInterest(fd: number, op: number, bits: number, gen: number): number {
    // INTEREST_* have epoll_ctl's op numbers (abi.ts).
    const v = this.ctlView;
    v.setUint32(0, epollMask(bits) >>> 0, true);
    v.setInt32(NATIVE_DATA, fd, true);
    v.setInt32(NATIVE_DATA + 4, gen, true);
    return libc.epoll_ctl(this.epfd, op, fd, this.ctlAddr) < 0 ? -errno() : 0;
  }

  wait(core: Core, area: number, cap: number, timeoutMs: number): number {
    if (PACKED) {
      const n = libc.epoll_wait(this.epfd, core.base + area, cap, timeoutMs);
      if (n < 0) return -errno();
      // Memory cannot grow inside epoll_wait; the view is the current one.
      const i32 = core.i32;
      for (let w = (area + abi.EVENT_BITS) >> 2, end = w + n * (abi.EVENT_SIZE >> 2); w < end; w += abi.EVENT_SIZE >> 2) {
        i32[w] = evBits(i32[w]);
      }
      return n;
    }
    if (!this.waitBuf || this.waitBuf.byteLength < cap * NATIVE_SIZE) {
      this.waitBuf = new ArrayBuffer(cap * NATIVE_SIZE);
      this.waitAddr = addressOf(this.waitBuf);
    }
    const n = libc.epoll_wait(this.epfd, this.waitAddr, cap, timeoutMs);
    if (n < 0) return -errno();
    const src = new DataView(this.waitBuf);
    const dst = new DataView(core.u8.buffer);
    for (let i = 0; i < n; i++) {
      const s = i * NATIVE_SIZE, d = area + i * abi.EVENT_SIZE;
      dst.setInt32(d + abi.EVENT_BITS, evBits(src.getInt32(s, true)), true);
      dst.setInt32(d + abi.EVENT_FD, src.getInt32(s + NATIVE_DATA, true), true);
      dst.setInt32(d + abi.EVENT_GEN, src.getInt32(s + NATIVE_DATA + 4, true), true);
    }
    return n;
  }

  // The kernel drops a closed fd from the epoll set by itself.
  closed(_fd: number): void {}

  /** libuv watches the epoll fd: it is readable whenever epoll_wait has events. */
  attach(onReady: () => void): void {
    if (this.attached) return;
    this.attached = pollFd(this.epfd, onReady);
  }

  detach(): void {
    if (!this.attached) return;
    // close(), not just stop(): a stopped handle still owns the fd number in
    // libuv, and the next epoll fd to get that number would never be watched.
    this.attached.stop();
    this.attached.close?.();
    this.attached = null;
  }

  close(): void {
    this.detach();
    libc.close(this.epfd);
  }
}
