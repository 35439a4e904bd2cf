// Turning an io API call into its request record (ops.ts), the same way for
// every path: a slot of an executor's table (host/io/executor.ts) or the
// thread's one scratch record of the blocking fallback (host/io/index.ts).
//
// Buffers (Uint8Array or any ArrayBufferView, WebAssembly memory views
// included) are passed IN PLACE by default: the record holds the address of
// their bytes (koffi.address, which also moves a small on-heap typed array's
// bytes off the V8 heap, so the address stays valid) and the view is kept
// referenced until the completion. With `copy` (ExecutorOptions.copyBuffers)
// the bytes go through a staging buffer of the executor's instead: a write
// copies in at submission, a read copies out at completion.
import { addressOf } from "../libc.ts";
import { sockaddrBytes } from "../net.ts";
import {
  prep, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_OPENAT,
  IORING_OP_OPENAT2, IORING_OP_CLOSE, IORING_OP_STATX, IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_SEND,
  IORING_OP_RECV, OP_SENDFILE, IORING_FSYNC_DATASYNC,
} from "./ops.ts";
import { STATX_BASIC_STATS, STATX_BTIME, AT_FDCWD, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW } from "./stats.ts";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const koffi = require("koffi") as typeof import("koffi");

export const RESOLVE_BENEATH = 0x08, RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04;
export const SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;

/** Where one request is being built. */
export interface Rec {
  i32: Int32Array;
  /** Word index of the SQE in i32. */
  w: number;
  /** The argument area (ARG_BYTES): its absolute address, and a view of it. */
  argAddr: number;
  arg: DataView;
  argAt: number;
  /** Stage buffers through copies instead of passing them in place. */
  copy: boolean;
  /** With copy: staging memory for n bytes (the executor reuses each slot's; absent: a fresh buffer). */
  stage?: (n: number) => Uint8Array;
  /** What must stay alive until the completion (buffers, paths, iovecs). */
  keep: unknown;
  /** A read through staging buffers: each copied into its `to` at completion, in order. */
  copyOut: { from: Uint8Array; to: Uint8Array }[] | null;
  /** How the result reads: a number, an fd, or the statx in the argument area. */
  kind: number;
}
export const R_NUMBER = 0, R_FD = 1, R_STAT = 2;

/** The address of a view's first byte (0 for an empty one: the kernel never touches it). */
export function viewAddress(v: ArrayBufferView): number {
  if (v.byteLength === 0) return 0;
  return Number(koffi.address(v));
}

function checkFd(fd: unknown, what = "fd"): number {
  if (typeof fd !== "number" || !Number.isInteger(fd) || fd < -1 || fd > 0x7fffffff) throw new TypeError(`${what} must be an integer fd, got ${String(fd)}`);
  return fd;
}
function checkView(buf: unknown): ArrayBufferView {
  if (!ArrayBuffer.isView(buf)) throw new TypeError(`buffer must be a Uint8Array (or another ArrayBufferView), got ${typeof buf}`);
  return buf;
}
function checkOffset(off: unknown): number {
  if (typeof off === "bigint") off = Number(off);
  if (typeof off !== "number" || !Number.isSafeInteger(off) || off < 0) throw new RangeError(`offset must be an integer >= 0, got ${String(off)}`);
  return off;
}

/** The address the kernel reads or writes for `buf` (staged when r.copy). */
function bufferAddress(r: Rec, buf: ArrayBufferView, reading: boolean): number {
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!r.copy || bytes.length === 0) { r.keep = buf; return viewAddress(bytes); }
  const stage = r.stage ? r.stage(bytes.length) : new Uint8Array(new ArrayBuffer(bytes.length));
  if (reading) (r.copyOut ??= []).push({ from: stage, to: bytes });
  else stage.set(bytes);
  r.keep = stage;
  return viewAddress(stage);
}

/** A NUL-terminated copy of a path (string, Buffer or URL), kept alive with the record. */
function pathAddress(r: Rec, path: unknown): number {
  let bytes: Uint8Array;
  if (typeof path === "string") bytes = Buffer.from(path, "utf8");
  else if (path instanceof URL) bytes = Buffer.from(decodeURIComponent(path.pathname), "utf8");
  else if (path instanceof Uint8Array) bytes = path;
  else throw new TypeError(`path must be a string, Buffer or URL, got ${typeof path}`);
  if (bytes.includes(0)) throw new TypeError("path must not contain NUL bytes");
  const z = new Uint8Array(new ArrayBuffer(bytes.length + 1));
  z.set(bytes);
  r.keep = z;
  return viewAddress(z);
}

/** An iovec array (16 bytes each: base, length) for bufs, in a buffer of its own. */
function iovecs(r: Rec, bufs: unknown, reading: boolean): { addr: number; count: number } {
  if (!Array.isArray(bufs) || bufs.length === 0 || bufs.length > 1024) throw new TypeError("buffers must be an array of 1 to 1024 Uint8Arrays");
  const iov = new ArrayBuffer(16 * bufs.length);
  const dv = new DataView(iov);
  const keep: unknown[] = [iov];
  bufs.forEach((b, i) => {
    const v = checkView(b);
    const a = bufferAddress(r, v, reading);
    keep.push(r.keep);
    dv.setBigUint64(16 * i, BigInt(a), true);
    dv.setBigUint64(16 * i + 8, BigInt(v.byteLength), true);
  });
  r.keep = keep;
  return { addr: addressOf(iov), count: bufs.length };
}

/** Copies a staged read back (completion of a successful read). */
export function copyBack(r: Pick<Rec, "copyOut">, n: number): void {
  for (const p of r.copyOut ?? []) {
    if (n <= 0) break;
    const k = Math.min(n, p.to.length);
    p.to.set(p.from.subarray(0, k));
    n -= k;
  }
}

// ---- one filler per op: (rec, ...the call's arguments) ----------------------
// Each validates its arguments (TypeError/RangeError) and writes the record.

export const fill = {
  read(r: Rec, fd: number, buf: ArrayBufferView) {
    const v = checkView(buf);
    prep(r.i32, r.w, IORING_OP_READ, checkFd(fd), bufferAddress(r, v, true), v.byteLength, -1);
  },
  write(r: Rec, fd: number, buf: ArrayBufferView) {
    const v = checkView(buf);
    prep(r.i32, r.w, IORING_OP_WRITE, checkFd(fd), bufferAddress(r, v, false), v.byteLength, -1);
  },
  pread(r: Rec, fd: number, buf: ArrayBufferView, offset: number) {
    const v = checkView(buf);
    prep(r.i32, r.w, IORING_OP_READ, checkFd(fd), bufferAddress(r, v, true), v.byteLength, checkOffset(offset));
  },
  pwrite(r: Rec, fd: number, buf: ArrayBufferView, offset: number) {
    const v = checkView(buf);
    prep(r.i32, r.w, IORING_OP_WRITE, checkFd(fd), bufferAddress(r, v, false), v.byteLength, checkOffset(offset));
  },
  readv(r: Rec, fd: number, bufs: ArrayBufferView[]) {
    const { addr, count } = iovecs(r, bufs, true);
    prep(r.i32, r.w, IORING_OP_READV, checkFd(fd), addr, count, -1);
  },
  writev(r: Rec, fd: number, bufs: ArrayBufferView[]) {
    const { addr, count } = iovecs(r, bufs, false);
    prep(r.i32, r.w, IORING_OP_WRITEV, checkFd(fd), addr, count, -1);
  },
  preadv(r: Rec, fd: number, bufs: ArrayBufferView[], offset: number) {
    const off = checkOffset(offset);
    const { addr, count } = iovecs(r, bufs, true);
    prep(r.i32, r.w, IORING_OP_READV, checkFd(fd), addr, count, off);
  },
  pwritev(r: Rec, fd: number, bufs: ArrayBufferView[], offset: number) {
    const off = checkOffset(offset);
    const { addr, count } = iovecs(r, bufs, false);
    prep(r.i32, r.w, IORING_OP_WRITEV, checkFd(fd), addr, count, off);
  },
  open(r: Rec, path: string, flags = 0, mode = 0o644) {
    r.kind = R_FD;
    prep(r.i32, r.w, IORING_OP_OPENAT, AT_FDCWD, pathAddress(r, path), mode >>> 0, 0, flags | 0);
  },
  /** openat2 beneath dirFd (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): `..`, absolute paths and symlinks out fail with EXDEV. */
  openat(r: Rec, dirFd: number, path: string, flags = 0, mode = 0o644, resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) {
    r.kind = R_FD;
    const a = r.argAt;
    r.arg.setBigUint64(a, BigInt(flags >>> 0), true);
    r.arg.setBigUint64(a + 8, BigInt(flags & 0o100 || flags & 0o20000000 ? mode >>> 0 : 0), true); // mode only with O_CREAT/O_TMPFILE (openat2 refuses it otherwise)
    r.arg.setBigUint64(a + 16, BigInt(resolve >>> 0), true);
    prep(r.i32, r.w, IORING_OP_OPENAT2, checkFd(dirFd, "dirFd"), pathAddress(r, path), 24, r.argAddr);
  },
  close(r: Rec, fd: number) { prep(r.i32, r.w, IORING_OP_CLOSE, checkFd(fd), 0, 0, 0); },
  fsync(r: Rec, fd: number) { prep(r.i32, r.w, IORING_OP_FSYNC, checkFd(fd), 0, 0, 0); },
  fdatasync(r: Rec, fd: number) { prep(r.i32, r.w, IORING_OP_FSYNC, checkFd(fd), 0, 0, 0, IORING_FSYNC_DATASYNC); },
  stat(r: Rec, path: string) {
    r.kind = R_STAT;
    prep(r.i32, r.w, IORING_OP_STATX, AT_FDCWD, pathAddress(r, path), STATX_BASIC_STATS | STATX_BTIME, r.argAddr, 0);
  },
  lstat(r: Rec, path: string) {
    r.kind = R_STAT;
    prep(r.i32, r.w, IORING_OP_STATX, AT_FDCWD, pathAddress(r, path), STATX_BASIC_STATS | STATX_BTIME, r.argAddr, AT_SYMLINK_NOFOLLOW);
  },
  fstat(r: Rec, fd: number) {
    r.kind = R_STAT;
    prep(r.i32, r.w, IORING_OP_STATX, checkFd(fd), pathAddress(r, ""), STATX_BASIC_STATS | STATX_BTIME, r.argAddr, AT_EMPTY_PATH);
  },
  /** sendfile(outFd, inFd, offset, len): offset -1 reads from inFd's position. */
  sendfile(r: Rec, outFd: number, inFd: number, offset: number, len: number) {
    const at = offset === -1 ? 0 : r.argAddr;
    if (offset !== -1) r.arg.setBigInt64(r.argAt, BigInt(checkOffset(offset)), true);
    if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`length must be an integer >= 0, got ${len}`);
    prep(r.i32, r.w, OP_SENDFILE, checkFd(outFd, "outFd"), at, Math.min(len, 0x7ffff000), 0, 0, checkFd(inFd, "inFd"));
  },
  /** accept4: the new socket is nonblocking and close-on-exec unless flags say otherwise. */
  accept(r: Rec, fd: number, flags = SOCK_NONBLOCK | SOCK_CLOEXEC) {
    r.kind = R_FD;
    prep(r.i32, r.w, IORING_OP_ACCEPT, checkFd(fd), 0, 0, 0, flags);
  },
  /** connect to an IP address (no name lookup: resolve first, as net.ts does). */
  connect(r: Rec, fd: number, port: number, host = "127.0.0.1") {
    const addr = sockaddrBytes(host, port);
    new Uint8Array(r.arg.buffer, r.arg.byteOffset + r.argAt, addr.length).set(addr);
    prep(r.i32, r.w, IORING_OP_CONNECT, checkFd(fd), r.argAddr, 0, addr.length);
  },
  recv(r: Rec, fd: number, buf: ArrayBufferView, flags = 0) {
    const v = checkView(buf);
    prep(r.i32, r.w, IORING_OP_RECV, checkFd(fd), bufferAddress(r, v, true), v.byteLength, 0, flags);
  },
  send(r: Rec, fd: number, buf: ArrayBufferView, flags = 0) {
    const v = checkView(buf);
    prep(r.i32, r.w, IORING_OP_SEND, checkFd(fd), bufferAddress(r, v, false), v.byteLength, 0, flags);
  },
};

export type OpName = keyof typeof fill;
export const OP_NAMES = Object.keys(fill) as OpName[];
/** The call a SysError names for each op (Node's `syscall` field). */
export const SYSCALL: Record<OpName, string> = {
  read: "read", write: "write", pread: "pread", pwrite: "pwrite", readv: "readv", writev: "writev", preadv: "preadv",
  pwritev: "pwritev", open: "open", openat: "openat2", close: "close", fsync: "fsync", fdatasync: "fdatasync",
  stat: "statx", lstat: "statx", fstat: "statx", sendfile: "sendfile", accept: "accept4", connect: "connect",
  recv: "recv", send: "send",
};
/** The path a call names (open, openat, stat, lstat), for the error. */
export function pathOf(op: OpName, args: unknown[]): string | undefined {
  if (op === "open" || op === "stat" || op === "lstat") return String(args[0]);
  if (op === "openat") return String(args[1]);
  return undefined;
}
/** The fd an op works on (close(fd) cancels what is pending on it); -1: none. */
export function fdOf(op: OpName, args: unknown[]): number {
  if (op === "open" || op === "stat" || op === "lstat") return -1;
  return typeof args[0] === "number" ? args[0] : -1;
}

