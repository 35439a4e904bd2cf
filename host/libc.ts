// The one koffi binding module: every libc function the host calls, and the
// one place errno is read.
//
// Hot-path functions take pointers as `intptr` numbers (absolute addresses
// into WebAssembly memory): the kernel reads and writes linear memory
// directly and no bytes pass through JS. Setup-time functions take Buffers.
// `read`/`write` & co. are declared as returning `int` so results never come
// back as BigInt.
import { createRequire } from "node:module";
import { errnoName } from "./abi-names.ts";

const require = createRequire(import.meta.url);
// koffi is CommonJS with a native addon; load it the CommonJS way.
const koffi = require("koffi") as typeof import("koffi");

const lib = koffi.load("libc.so.6");

export const libc = {
  epoll_create1: lib.func("int epoll_create1(int)"),
  epoll_ctl: lib.func("int epoll_ctl(int, int, int, intptr)"),
  epoll_wait: lib.func("int epoll_wait(int, intptr, int, int)"),
  poll: lib.func("int poll(intptr, unsigned long, int)"),
  fcntl: lib.func("int fcntl(int, int, int)"),
  socket: lib.func("int socket(int, int, int)"),
  setsockopt: lib.func("int setsockopt(int, int, int, void *, uint32)"),
  getsockopt: lib.func("int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32 *)"),
  bind: lib.func("int bind(int, void *, uint32)"),
  listen: lib.func("int listen(int, int)"),
  getsockname: lib.func("int getsockname(int, _Out_ void *, _Inout_ uint32 *)"),
  if_nametoindex: lib.func("uint32 if_nametoindex(str)"),
  accept4: lib.func("int accept4(int, intptr, intptr, int)"),
  read: lib.func("int read(int, intptr, size_t)"),
  readv: lib.func("int readv(int, intptr, int)"),
  write: lib.func("int write(int, intptr, size_t)"),
  send: lib.func("int send(int, intptr, size_t, int)"),
  writev: lib.func("int writev(int, intptr, int)"),
  sendfile: lib.func("int sendfile(int, int, intptr, size_t)"),
  // splice(fd_in, NULL, fd_out, NULL, len, flags): sockets and pipes take no offsets (intptr 0)
  splice: lib.func("int splice(int, intptr, int, intptr, size_t, uint32)"),
  pipe2At: lib.func("int pipe2(intptr, int)"), // the two fds at an address (linear memory), where pipe2's _Out_ form writes one
  pread: lib.func("int pread(int, intptr, size_t, int64)"),
  shutdown: lib.func("int shutdown(int, int)"),
  close: lib.func("int close(int)"),
  eventfd: lib.func("int eventfd(uint32, int)"),
  pipe2: lib.func("int pipe2(_Out_ int *fds, int)"),
  socketpair: lib.func("int socketpair(int, int, int, _Out_ int *fds)"),
  readBuf: lib.func("int read(int, _Out_ void *, size_t)"),
  sendBuf: lib.func("int send(int, void *, size_t, int)"),
  writeBuf: lib.func("int write(int, void *, size_t)"),
  open: lib.func("int open(str, int, int)"),
  statxBuf: lib.func("int statx(int, str, int, uint32, _Out_ void *)"),
  syscall: lib.func("long syscall(long, ...)"),
  sigemptyset: lib.func("int sigemptyset(_Out_ void *)"),
  sigaddset: lib.func("int sigaddset(_Inout_ void *, int)"),
  pthread_sigmask: lib.func("int pthread_sigmask(int, void *, _Out_ void *)"),
  signalfd: lib.func("int signalfd(int, void *, int)"),
  getrlimit: lib.func("int getrlimit(int, _Out_ void *)"),
  // ---- CPU affinity (host/affinity.ts: --cpu-affinity); gettid through syscall(2), as glibc < 2.30 lacks gettid() ----
  sched_setaffinity: lib.func("int sched_setaffinity(int, size_t, void *)"),
  sched_getaffinity: lib.func("int sched_getaffinity(int, size_t, _Out_ void *)"),
  gettid: lib.func("long syscall(long)"),
  setrlimit: lib.func("int setrlimit(int, void *)"),
  strerror: lib.func("const char *strerror(int)"),
  // ---- ParallelWriter (host/writer/): positional writes, file-system sizing ----
  pwritev: lib.func("int pwritev(int, intptr, int, int64)"),
  fstatfs: lib.func("int fstatfs(int, _Out_ void *)"),
  fgetxattr: lib.func("int fgetxattr(int, str, _Out_ void *, size_t)"),
  // ---- io_uring (host/uring/ring.ts) ----
  // The three io_uring syscalls through syscall(2), each with its own
  // non-variadic prototype: the hot one (enter) then costs a plain koffi call,
  // not a variadic one that parses its types on every call. (glibc's
  // syscall() only moves registers, so the prototype is safe on x86-64 and
  // arm64.) Results are `int`: a ring fd, a count or -1 with errno.
  io_uring_setup: lib.func("int syscall(long, uint32, _Inout_ void *)"),
  io_uring_enter: lib.func("int syscall(long, int, uint32, uint32, uint32, intptr, size_t)"),
  io_uring_register: lib.func("int syscall(long, int, uint32, void *, uint32)"),
  mmap: lib.func("void *mmap(void *, size_t, int, int, int, int64)"),
  munmap: lib.func("int munmap(void *, size_t)"),
  // ---- io API (issue 9, host/io/): pointers as absolute addresses (intptr) ----
  pwrite: lib.func("int pwrite(int, intptr, size_t, int64)"),
  preadv: lib.func("int preadv(int, intptr, int, int64)"),
  // pwritev: the ParallelWriter's binding above (same prototype)
  recv: lib.func("int recv(int, intptr, size_t, int)"),
  connect: lib.func("int connect(int, intptr, uint32)"),
  openat: lib.func("int openat(int, intptr, int, int)"),
  statx: lib.func("int statx(int, intptr, int, uint32, intptr)"),
  fsync: lib.func("int fsync(int)"),
  fdatasync: lib.func("int fdatasync(int)"),
  lseek: lib.func("int64 lseek(int, int64, int)"),
};

export { errnoName };

/** errno of the libc call that just failed. Read it before anything else. */
export const errno = (): number => koffi.errno();

/** A byte view of `len` bytes of this process's memory at absolute address `base` (a file-pool worker's view of linear memory). */
export const memoryView = (base: number, len: number): Uint8Array => new Uint8Array(koffi.view(base, len) as ArrayBuffer);
/** An ArrayBuffer over `len` bytes of native memory at `ptr` (an mmapped io_uring ring: host/uring/ring.ts). */
export const viewOf = (ptr: unknown, len: number): ArrayBuffer => koffi.view(ptr, len);

/** Absolute address of a native pointer (as mmap returns), as a number; MAP_FAILED is -1. */
export const pointerAddress = (ptr: unknown): number => Number(BigInt.asIntN(64, koffi.address(ptr)));

/** Absolute address of an ArrayBuffer's first byte (WebAssembly memory). */
export const addressOf = (buf: ArrayBuffer): number => Number(koffi.address(buf));

/** A libuv poll handle (koffi.node.poll). */
export interface PollHandle { start(opts: { readable?: boolean; writable?: boolean }, cb: () => void): void; stop(): void; close?(): void }

/** `koffi.node.poll`: watch an fd from the calling thread's own libuv loop (readable, unless told otherwise). */
export function pollFd(fd: number, cb: () => void, opts: { readable?: boolean; writable?: boolean } = { readable: true }): PollHandle {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const k = koffi as any;
  const handle = k.node.poll(fd, opts, cb);
  return handle;
}

// ---- constants (Linux) ----------------------------------------------------
export { AF_INET, AF_INET6 } from "../assembly/abi.ts";
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_REUSEPORT = 15;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const TCP_DEFER_ACCEPT = 9;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const EPOLL_CLOEXEC = 0o2000000;
export const F_GETFD = 1;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const SFD_CLOEXEC = 0o2000000;
export const SFD_NONBLOCK = 0o4000;
export const AF_UNIX = 1;
export const O_RDONLY = 0;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;
export const AT_EMPTY_PATH = 0x1000;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const STATX_BASIC_STATS = 0x7ff;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_BENEATH = 0x08;
export const SYS_openat2 = 437;
export const SIG_BLOCK = 0;
export const SIG_SETMASK = 2;
export const SIGINT = 2;
export const SIGTERM = 15;
export const RLIMIT_NOFILE = 7;

/** `EADDRINUSE (Address already in use)`: an OS error keeps its errno name. */
export function describeErrno(e: number): string { return `${errnoName(e)} (${libc.strerror(e)})`; }

/**
 * An OS error as a JS Error carrying `code` (the errno name), `errno` (positive)
 * and, when one is concerned, `fd`; the io API also sets `syscall` (the call
 * that failed) and `path`, the fields Node's own errors carry.
 */
export class SysError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly fd?: number;
  readonly syscall?: string;
  readonly path?: string;
  constructor(call: string, e: number, fd?: number, info?: { syscall?: string; path?: string }) {
    super(`${call}: ${describeErrno(e)}`);
    this.name = "SysError";
    this.code = errnoName(e);
    this.errno = e;
    if (fd !== undefined) this.fd = fd;
    if (info?.syscall !== undefined) this.syscall = info.syscall;
    if (info?.path !== undefined) this.path = info.path;
  }
}

/** Throws a SysError when a setup call failed. */
export function check(call: string, r: number): number {
  if (r < 0) throw new SysError(call, errno());
  return r;
}

/** The soft and hard RLIMIT_NOFILE as they are (capped at 2^30, as raiseFdLimit reports them). */
export function fdLimits(): { soft: number; hard: number } {
  const b = Buffer.alloc(16);
  check("getrlimit", libc.getrlimit(RLIMIT_NOFILE, b));
  const cap = (v: bigint) => (v > 1n << 30n ? 1 << 30 : Number(v));
  return { soft: cap(b.readBigUInt64LE(0)), hard: cap(b.readBigUInt64LE(8)) };
}

/** The soft and hard RLIMIT_NOFILE; raises the soft limit to the hard one. */
export function raiseFdLimit(): { soft: number; hard: number } {
  const b = Buffer.alloc(16);
  check("getrlimit", libc.getrlimit(RLIMIT_NOFILE, b));
  const hard = b.readBigUInt64LE(8);
  b.writeBigUInt64LE(hard, 0);
  libc.setrlimit(RLIMIT_NOFILE, b);
  libc.getrlimit(RLIMIT_NOFILE, b);
  const cap = (v: bigint) => (v > 1n << 30n ? 1 << 30 : Number(v));
  return { soft: cap(b.readBigUInt64LE(0)), hard: cap(hard) };
}
