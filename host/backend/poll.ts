// The poll(2) backend: the portable fallback (seed 001), with no fd limit
// (select's FD_SETSIZE of 1024 does not apply: the pollfd array grows as
// needed). See types.ts for the contract. Its cost is poll's: every wait
// hands the kernel the whole array and scans it back, O(watched fds), where
// epoll costs O(ready fds).
//
// The pollfd array lives in native memory of ours (an ArrayBuffer whose
// address koffi passes to poll): struct pollfd { int fd; short events;
// short revents; }, 8 bytes. Watched fds are packed at [0, n); an fd's index
// is found through an fd-indexed table, and removal moves the last entry
// into the hole, so ADD, MOD and DEL are O(1).
//
// Edge emulation (how mio's poll selector does it). poll(2) is level-only.
// After an EV_EDGE fd reports a bit, that bit leaves the fd's pollfd events
// until the pump reports an operation on the fd that met EAGAIN or fell
// short (wouldBlock(): read/accept -> READABLE, write/writev/send/sendfile ->
// WRITABLE) or the interest is set again (MOD). Without this, a socket that
// stays writable (or has unread input the core is not reading yet) would make
// every poll return at once, forever: the core in edge mode only looks again
// after EAGAIN, so a level report would spin the loop. After ERROR or HANGUP
// (which poll reports whatever the events) an edge fd leaves the array's
// active part altogether (a negative fd, which poll skips) until re-armed.
import * as abi from "../../assembly/abi.ts";
import { libc, errno, addressOf, pollFd, F_GETFD, AT_EMPTY_PATH, type PollHandle } from "../libc.ts";
import type { Core } from "../core.ts";
import type { Backend } from "./types.ts";

// Linux poll bits (the same values as epoll's, which Linux shares).
const POLLIN = 0x001;
const POLLOUT = 0x004;
const POLLERR = 0x008;
const POLLHUP = 0x010;
const POLLNVAL = 0x020;
const POLLRDHUP = 0x2000;

const PFD_SIZE = 8;
const STATX_TYPE = 1, STX_MODE = 28, S_IFMT = 0o170000, S_IFREG = 0o100000, S_IFDIR = 0o040000;
const RW = abi.EV_READABLE | abi.EV_WRITABLE;

function pollEvents(bits: number): number {
  return (bits & abi.EV_READABLE ? POLLIN | POLLRDHUP : 0) | (bits & abi.EV_WRITABLE ? POLLOUT : 0);
}

/** revents -> EV_*: IN -> READABLE, OUT -> WRITABLE, ERR -> ERROR, HUP or RDHUP -> HANGUP. */
function evBits(r: number): number {
  return (r & POLLIN ? abi.EV_READABLE : 0) | (r & POLLOUT ? abi.EV_WRITABLE : 0) |
    (r & POLLERR ? abi.EV_ERROR : 0) | (r & (POLLHUP | POLLRDHUP) ? abi.EV_HANGUP : 0);
}

export class PollBackend implements Backend {
  readonly name = "poll" as const;
  private n = 0;
  private cap = 0;
  private buf = new ArrayBuffer(0);
  private addr = 0;
  private pfd32 = new Int32Array(0);   // [2i] = pollfd.fd
  private pfd16 = new Int16Array(0);   // [4i + 2] = events, [4i + 3] = revents
  private fdOf = new Int32Array(0);    // the real fd of entry i (pollfd.fd is negated while parked)
  private gen = new Int32Array(0);
  private want = new Int32Array(0);    // EV_* interest, EDGE included
  private armed = new Int32Array(0);   // edge fds: the bits still to report
  private index = new Int32Array(1024); // fd -> entry + 1 (0: not watched)
  private scan = 0;                    // where a wait that filled `cap` left off (fairness)
  private stale: number[] = [];
  private onReady: (() => void) | null = null;
  private readonly handles = new Map<number, { h: PollHandle; mask: number }>();

  constructor() { this.grow(64); }

  private grow(cap: number): void {
    const buf = new ArrayBuffer(cap * PFD_SIZE);
    new Uint8Array(buf).set(new Uint8Array(this.buf));
    const more = <T extends Int32Array>(a: T): T => { const b = new Int32Array(cap) as T; b.set(a); return b; };
    this.fdOf = more(this.fdOf); this.gen = more(this.gen); this.want = more(this.want); this.armed = more(this.armed);
    this.buf = buf;
    this.addr = addressOf(buf);
    this.pfd32 = new Int32Array(buf);
    this.pfd16 = new Int16Array(buf);
    this.cap = cap;
  }

  private at(fd: number): number { return fd < this.index.length ? this.index[fd] - 1 : -1; }

  setInterest(fd: number, op: number, bits: number, gen: number): number {
    if (fd < 0) return -abi.EBADF;
    let i = this.at(fd);
    // epoll_ctl checks the fd first: a closed fd is EBADF (and forgotten).
    if (libc.fcntl(fd, F_GETFD, 0) < 0) {
      const e = errno();
      if (i >= 0) this.remove(i);
      return -e;
    }
    if (op === abi.INTEREST_ADD) {
      if (i >= 0) return -abi.EEXIST;
      if (this.isFile(fd)) return -abi.EPERM;
      if (this.n === this.cap) this.grow(this.cap * 2);
      if (fd >= this.index.length) {
        const index = new Int32Array(Math.max(fd + 1, this.index.length * 2));
        index.set(this.index);
        this.index = index;
      }
      i = this.n++;
      this.index[fd] = i + 1;
      this.fdOf[i] = fd;
    } else if (i < 0) {
      return -abi.ENOENT;
    } else if (op === abi.INTEREST_DEL) {
      this.remove(i);
      return 0;
    } else if (op !== abi.INTEREST_MOD) {
      return -abi.EINVAL;
    }
    this.gen[i] = gen;
    this.want[i] = bits;
    this.armed[i] = bits & RW; // a new interest re-evaluates readiness, as epoll's MOD does
    this.apply(i);
    return 0;
  }

  /**
   * A regular file or a directory: epoll refuses them (EPERM) and so does
   * this backend, or poll would report them ready forever. One statx per
   * ADD (the type only).
   */
  private isFile(fd: number): boolean {
    if (libc.statxBuf(fd, "", AT_EMPTY_PATH, STATX_TYPE, this.stx) < 0) return false;
    const fmt = this.stx.readUInt16LE(STX_MODE) & S_IFMT;
    return fmt === S_IFREG || fmt === S_IFDIR;
  }
  private readonly stx = Buffer.alloc(256);

  /** Writes entry i's pollfd from its interest (and mirrors it to libuv when attached). */
  private apply(i: number): void {
    const fd = this.fdOf[i];
    const edge = (this.want[i] & abi.EV_EDGE) !== 0;
    const bits = edge ? this.armed[i] : this.want[i];
    // An edge fd with nothing left to report is parked: poll skips negative
    // fds, so a lasting HUP cannot make it return at once.
    this.pfd32[2 * i] = edge && (bits & RW) === 0 ? ~fd : fd;
    this.pfd16[4 * i + 2] = pollEvents(bits);
    this.pfd16[4 * i + 3] = 0;
    if (this.onReady) this.mirror(i);
  }

  private remove(i: number): void {
    const fd = this.fdOf[i];
    this.index[fd] = 0;
    this.unmirror(fd);
    const last = --this.n;
    if (i !== last) {
      this.pfd32[2 * i] = this.pfd32[2 * last];
      this.pfd32[2 * i + 1] = this.pfd32[2 * last + 1];
      this.fdOf[i] = this.fdOf[last]; this.gen[i] = this.gen[last];
      this.want[i] = this.want[last]; this.armed[i] = this.armed[last];
      this.index[this.fdOf[i]] = i + 1;
    }
  }

  wait(core: Core, area: number, cap: number, timeoutMs: number): number {
    const n = this.n;
    const r = libc.poll(this.addr, n, timeoutMs);
    if (r < 0) return -errno();
    if (r === 0 || n === 0) return 0;
    const i32 = core.i32, pfd16 = this.pfd16;
    let w = area >> 2, out = 0, seen = 0;
    const start = this.scan < n ? this.scan : 0;
    this.scan = 0;
    for (let k = 0; k < n && seen < r; k++) {
      const i = start + k < n ? start + k : start + k - n;
      const rev = pfd16[4 * i + 3];
      if (rev === 0) continue;
      seen++;
      if (rev & POLLNVAL) { this.stale.push(i); continue; } // closed behind our back: epoll would forget it
      if (out === cap) { this.scan = i; break; } // the rest are still ready: the next wait starts here
      const bits = evBits(rev);
      i32[w + (abi.EVENT_BITS >> 2)] = bits;
      i32[w + (abi.EVENT_FD >> 2)] = this.fdOf[i];
      i32[w + (abi.EVENT_GEN >> 2)] = this.gen[i];
      w += abi.EVENT_SIZE >> 2;
      out++;
      if (this.want[i] & abi.EV_EDGE) {
        this.armed[i] = bits & (abi.EV_ERROR | abi.EV_HANGUP) ? 0 : this.armed[i] & ~bits;
        this.apply(i);
      }
    }
    // Highest index first: removal moves the last entry into the hole.
    if (this.stale.length) {
      for (const i of this.stale.sort((a, b) => b - a)) this.remove(i);
      this.stale.length = 0;
    }
    return out;
  }

  wouldBlock(fd: number, bits: number): void {
    const i = this.at(fd);
    if (i < 0 || !(this.want[i] & abi.EV_EDGE)) return;
    const add = bits & this.want[i] & RW;
    if ((this.armed[i] & add) === add) return;
    this.armed[i] |= add;
    this.apply(i);
  }

  closed(fd: number): void {
    const i = this.at(fd);
    if (i >= 0) this.remove(i);
  }

  // ---- attach mode ----------------------------------------------------------
  // There is no one fd to hand to libuv, so each watched fd gets a libuv poll
  // handle of its own, watching what its pollfd asks for (parked edge fds
  // nothing, or libuv would report the level forever). A readiness calls
  // onReady, whose tick polls with timeout 0.

  attach(onReady: () => void): void {
    if (this.onReady) return;
    this.onReady = onReady;
    for (let i = 0; i < this.n; i++) this.mirror(i);
  }

  detach(): void {
    if (!this.onReady) return;
    this.onReady = null;
    for (const fd of [...this.handles.keys()]) this.unmirror(fd);
  }

  private mirror(i: number): void {
    const fd = this.fdOf[i];
    const mask = this.pfd32[2 * i] < 0 ? 0 : this.pfd16[4 * i + 2] & (POLLIN | POLLOUT);
    const have = this.handles.get(fd);
    if (have && have.mask === mask) return;
    const opts = { readable: (mask & POLLIN) !== 0, writable: (mask & POLLOUT) !== 0 };
    const cb = this.onReady!;
    if (have) {
      have.mask = mask;
      if (mask === 0) have.h.stop(); else have.h.start(opts, () => cb());
    } else if (mask !== 0) {
      this.handles.set(fd, { h: pollFd(fd, () => cb(), opts), mask });
    }
  }

  /** Closes fd's libuv handle (before the fd itself is closed: libuv must not watch a reused number). */
  private unmirror(fd: number): void {
    const have = this.handles.get(fd);
    if (!have) return;
    this.handles.delete(fd);
    have.h.stop();
    have.h.close?.();
  }

  close(): void {
    this.detach();
    this.n = 0;
  }
}
