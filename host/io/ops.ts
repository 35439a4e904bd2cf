// The io API's requests: one record per operation, in the project's SQE
// layout (assembly/abi.ts: io_uring's `struct io_uring_sqe`, 64 bytes), and
// the one function that carries a record out as a blocking syscall,
// `perform()`. Every backend uses these records: the thread pool's workers
// read them from shared memory and call perform(); epoll_threadpool performs
// socket records on the calling thread (nonblocking variants); io_uring copies
// them into its ring; the blocking fallback calls perform() in place.
//
// Differences from the core's requests (abi.ts), on purpose: addresses here
// are ABSOLUTE (the process's own memory, as io_uring takes them), not
// linear-memory offsets; and the op set is io_uring's, wider than the core's
// (its opcodes are the same numbers: abi.OP_WRITEV, OP_ACCEPT, OP_CLOSE,
// OP_PREAD (IORING_OP_READ), OP_WRITE, OP_SEND and OP_READ (IORING_OP_RECV)
// are reused below, and sendfile is abi.OP_SENDFILE, outside io_uring's range).
//
// Fields per op (liburing's io_uring_prep_* conventions; off = -1: the fd's position):
//   READ/WRITE      fd, addr = buffer, len, off
//   READV/WRITEV    fd, addr = iovec array, len = count, off
//   FSYNC           fd, op_flags = IORING_FSYNC_DATASYNC for fdatasync
//   OPENAT          fd = dirfd, addr = NUL-terminated path, len = mode, op_flags = open flags
//   OPENAT2         fd = dirfd, addr = path, off = struct open_how *, len = its size (24)
//   CLOSE           fd
//   STATX           fd = dirfd, addr = path, op_flags = AT_* flags, len = mask, off = struct statx *
//   ACCEPT          fd, addr = sockaddr, off = socklen_t *, op_flags = accept4 flags
//   CONNECT         fd, addr = sockaddr, off = its length
//   SEND/RECV       fd, addr = buffer, len, op_flags = msg_flags
//   SENDFILE        fd = out, splice_fd_in = in, addr = loff_t * (the kernel advances it), len
import * as abi from "../../assembly/abi.ts";
import { libc, errno, SYS_openat2 } from "../libc.ts";

export const IORING_OP_READV = 1;
export const IORING_OP_WRITEV = abi.OP_WRITEV;   // 2
export const IORING_OP_FSYNC = 3;
export const IORING_OP_ACCEPT = abi.OP_ACCEPT;   // 13
export const IORING_OP_CONNECT = 16;
export const IORING_OP_OPENAT = 18;
export const IORING_OP_CLOSE = abi.OP_CLOSE;     // 19
export const IORING_OP_STATX = 21;
export const IORING_OP_READ = abi.OP_PREAD;      // 22
export const IORING_OP_WRITE = abi.OP_WRITE;     // 23
export const IORING_OP_SEND = abi.OP_SEND;       // 26
export const IORING_OP_RECV = abi.OP_READ;       // 27
export const IORING_OP_OPENAT2 = 28;
export const OP_SENDFILE = abi.OP_SENDFILE;      // 0x80: not an io_uring op
export const IORING_FSYNC_DATASYNC = 1;

export const MSG_DONTWAIT = 0x40;
export const SOCKET_OPS = new Set([IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_SEND, IORING_OP_RECV]);

/** Op code -> the syscall a SysError names (Node names its errors by syscall: `read`, `open`, ...). */
export function syscallName(op: number, positioned: boolean): string {
  switch (op) {
    case IORING_OP_READ: return positioned ? "pread" : "read";
    case IORING_OP_WRITE: return positioned ? "pwrite" : "write";
    case IORING_OP_READV: return positioned ? "preadv" : "readv";
    case IORING_OP_WRITEV: return positioned ? "pwritev" : "writev";
    case IORING_OP_FSYNC: return "fsync";
    case IORING_OP_OPENAT: return "open";
    case IORING_OP_OPENAT2: return "openat";
    case IORING_OP_CLOSE: return "close";
    case IORING_OP_STATX: return "statx";
    case IORING_OP_ACCEPT: return "accept";
    case IORING_OP_CONNECT: return "connect";
    case IORING_OP_SEND: return "send";
    case IORING_OP_RECV: return "recv";
    case OP_SENDFILE: return "sendfile";
    default: return `op ${op}`;
  }
}

// Word indices of the SQE fields (derived from abi.ts's byte offsets once).
export const SQE_WORDS = abi.SQE_SIZE >> 2;
export const W_OP = abi.SQE_OPCODE >> 2, W_FD = abi.SQE_FD >> 2, W_OFF = abi.SQE_OFF >> 2, W_ADDR = abi.SQE_ADDR >> 2;
export const W_LEN = abi.SQE_LEN >> 2, W_FLAGS = abi.SQE_OP_FLAGS >> 2, W_TAG = abi.SQE_USER_DATA >> 2;
export const W_SPLICE = abi.SQE_SPLICE_FD_IN >> 2;
export const CQE_WORDS = abi.CQE_SIZE >> 2;
export const C_TAG = abi.CQE_USER_DATA >> 2, C_RES = abi.CQE_RES >> 2;

const TWO32 = 4294967296;

/** Writes a u64 (an address, < 2^53) or an i64 (an offset; -1 is all ones) as two words. */
export function put64(i32: Int32Array, w: number, v: number): void {
  i32[w] = v % TWO32 | 0; // low word (two's complement for negatives)
  i32[w + 1] = Math.floor(v / TWO32);
}
/** Reads what put64 wrote (signed: -1 comes back as -1). */
export function get64(i32: Int32Array, w: number): number {
  return i32[w + 1] * TWO32 + (i32[w] >>> 0);
}

/**
 * Fills the SQE at word w. Fields an op does not use are zero (the record is
 * cleared first, as io_uring_prep_rw does).
 */
export function prep(i32: Int32Array, w: number, op: number, fd: number, addr: number, len: number, off: number, opFlags = 0, splice = 0): void {
  i32.fill(0, w, w + SQE_WORDS);
  i32[w + W_OP] = op;
  i32[w + W_FD] = fd;
  put64(i32, w + W_OFF, off);
  put64(i32, w + W_ADDR, addr);
  i32[w + W_LEN] = len;
  i32[w + W_FLAGS] = opFlags;
  i32[w + W_SPLICE] = splice;
}

/** A 64-bit return of koffi may be a BigInt. */
const num = (r: number | bigint): number => (typeof r === "bigint" ? Number(r) : r);

/**
 * Carries out the record at word w of i32 as one blocking syscall on the
 * calling thread; returns its result, >= 0 or -errno (never throws).
 * `msgFlags` is or-ed into the msg_flags of SEND/RECV (MSG_DONTWAIT for a
 * nonblocking attempt).
 */
export function perform(i32: Int32Array, w: number, msgFlags = 0): number {
  const op = i32[w + W_OP] & 0xff, fd = i32[w + W_FD];
  const addr = get64(i32, w + W_ADDR), len = i32[w + W_LEN] >>> 0, flags = i32[w + W_FLAGS], off = get64(i32, w + W_OFF);
  let r: number;
  switch (op) {
    case IORING_OP_READ: r = off < 0 ? libc.read(fd, addr, len) : libc.pread(fd, addr, len, off); break;
    case IORING_OP_WRITE: r = off < 0 ? libc.write(fd, addr, len) : libc.pwrite(fd, addr, len, off); break;
    case IORING_OP_READV: r = off < 0 ? libc.readv(fd, addr, len) : libc.preadv(fd, addr, len, off); break;
    case IORING_OP_WRITEV: r = off < 0 ? libc.writev(fd, addr, len) : libc.pwritev(fd, addr, len, off); break;
    case IORING_OP_FSYNC: r = flags & IORING_FSYNC_DATASYNC ? libc.fdatasync(fd) : libc.fsync(fd); break;
    case IORING_OP_OPENAT: r = libc.openat(fd, addr, flags, len); break;
    case IORING_OP_OPENAT2: r = num(libc.syscall(SYS_openat2, "int", fd, "intptr", addr, "intptr", off, "size_t", len) as number); break;
    case IORING_OP_CLOSE: r = libc.close(fd); break;
    case IORING_OP_STATX: r = libc.statx(fd, addr, flags, len, off); break;
    case IORING_OP_ACCEPT: r = libc.accept4(fd, addr, off, flags); break;
    case IORING_OP_CONNECT: r = libc.connect(fd, addr, off); break;
    case IORING_OP_SEND: r = libc.send(fd, addr, len, flags | msgFlags); break;
    case IORING_OP_RECV: r = libc.recv(fd, addr, len, flags | msgFlags); break;
    case OP_SENDFILE: r = libc.sendfile(fd, i32[w + W_SPLICE], addr, len); break;
    default: return -abi.EINVAL;
  }
  return r < 0 ? -errno() : r;
}
