// The io API: `import { io } from "wasm-reactor"` (docs/io.md is the reference).
//
//   const ex = io.executor({ backend: "auto" });  // ex.backend: what runs
//   const n = await ex.pread(fd, buf, offset);    // every op a Promise
//   await io.pread(fd, buf, offset);              // the thread's open executor,
//                                                 // or the blocking fallback
//   io.preadSync(fd, buf, offset);                // always the blocking syscall
//   await io.raw.pread(...);                      // >= 0 or -errno, never rejects
//
// "The thread's open executor" is the most recently created executor of the
// calling thread that is not stopped (each worker_thread has its own list;
// none is shared between threads). Inside a Reactor callback it is the same
// rule. With none open, io.* performs the blocking syscall on the calling
// thread and returns a settled Promise (the seed's sync fallback).
import * as abi from "../../assembly/abi.ts";
import { addressOf, libc, check, SysError, AF_INET, AF_INET6, SOCK_STREAM } from "../libc.ts";
import { perform } from "./ops.ts";
import { ARG_BYTES } from "./table.ts";
import { fill, fdOf, pathOf, R_STAT, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, SOCK_NONBLOCK, SOCK_CLOEXEC, type OpName, type Rec } from "./requests.ts";
import { IoExecutor, openExecutors, ioError, lseek, type ExecutorOptions, type IoPath } from "./executor.ts";
import { IoStats } from "./stats.ts";
import { IO_BACKEND_NAMES, BackendUnavailableError, type IoBackendChoice, type IoBackendName } from "./backend.ts";

export { IoExecutor, IoStats, BackendUnavailableError, IO_BACKEND_NAMES };
export type { ExecutorOptions, IoBackendChoice, IoBackendName, IoPath };

// ---- the blocking fallback: one scratch record per thread ----------------------
const scratch = new ArrayBuffer(abi.SQE_SIZE + ARG_BYTES);
const scratchI32 = new Int32Array(scratch);
const scratchArg = new DataView(scratch, abi.SQE_SIZE, ARG_BYTES);
const scratchArgAddr = addressOf(scratch) + abi.SQE_SIZE;

function runSync(op: OpName, args: unknown[], raw: boolean): unknown {
  const rec: Rec = { i32: scratchI32, w: 0, argAddr: scratchArgAddr, arg: scratchArg, argAt: 0, copy: false, keep: null, copyOut: null, kind: 0 };
  (fill[op] as (r: Rec, ...a: unknown[]) => void)(rec, ...args);
  const res = perform(scratchI32, 0);
  void rec.keep; // alive until here: the syscall has returned
  if (res < 0) {
    if (raw) return res;
    throw ioError(op, -res, fdOf(op, args), pathOf(op, args));
  }
  return rec.kind === R_STAT ? IoStats.from(scratchArg, 0) : res;
}

const current = (): IoExecutor | undefined => openExecutors[openExecutors.length - 1];

type AnyFn = (...a: any[]) => any; // eslint-disable-line @typescript-eslint/no-explicit-any

function asyncOp<K extends OpName>(op: K): IoExecutor[K] {
  return ((...a: unknown[]) => {
    const ex = current();
    if (ex) return (ex[op] as AnyFn)(...a);
    try { return Promise.resolve(runSync(op, a, false)); } catch (e) { return Promise.reject(e); }
  }) as IoExecutor[K];
}
function rawOp(op: OpName): AnyFn {
  return (...a: unknown[]) => {
    const ex = current();
    if (ex) return ex.raw[op](...a);
    try { return Promise.resolve(runSync(op, a, true)); } catch (e) { return Promise.reject(e); }
  };
}
const syncOp = (op: OpName): AnyFn => (...a: unknown[]) => runSync(op, a, false);
const rawSyncOp = (op: OpName): AnyFn => (...a: unknown[]) => runSync(op, a, true);

// ---- constants (Linux; O_DIRECT and friends differ on arm64) -----------------------
const ARM = process.arch === "arm64";
export const constants = {
  O_RDONLY: 0, O_WRONLY: 1, O_RDWR: 2, O_CREAT: 0o100, O_EXCL: 0o200, O_NOCTTY: 0o400, O_TRUNC: 0o1000,
  O_APPEND: 0o2000, O_NONBLOCK: 0o4000, O_DSYNC: 0o10000, O_SYNC: 0o4010000, O_CLOEXEC: 0o2000000, O_PATH: 0o10000000,
  O_DIRECT: ARM ? 0o200000 : 0o40000, O_DIRECTORY: ARM ? 0o40000 : 0o200000, O_NOFOLLOW: ARM ? 0o100000 : 0o400000,
  O_NOATIME: 0o1000000, O_TMPFILE: ARM ? 0o20040000 : 0o20200000,
  SEEK_SET: 0, SEEK_CUR: 1, SEEK_END: 2,
  AF_INET, AF_INET6, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC,
  MSG_PEEK: 0x2, MSG_DONTWAIT: 0x40, MSG_WAITALL: 0x100, MSG_NOSIGNAL: 0x4000, MSG_MORE: 0x8000,
  RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS,
} as const;

const OPS: OpName[] = Object.keys(fill) as OpName[];
const byName = <T>(make: (op: OpName) => T) => Object.fromEntries(OPS.map((op) => [op, make(op)])) as Record<OpName, T>;

/** A TCP socket for connect(): nonblocking, close-on-exec (blocking calls are the executor's business). */
function socket(family: number = AF_INET): number {
  return check("socket", libc.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

const asyncOps = byName(asyncOp);
const syncOps = Object.fromEntries(OPS.map((op) => [`${op}Sync`, syncOp(op)]));

export const io = {
  /** A new executor on this thread (see ExecutorOptions); io.* use it until its stop(). */
  executor: (options?: ExecutorOptions) => new IoExecutor(options),
  /** The thread's open executor, or null (io.* then use the blocking fallback). */
  current: (): IoExecutor | null => current() ?? null,
  ...asyncOps,
  lseek: (fd: number, offset: number, whence = 0): Promise<number> => {
    try { return Promise.resolve(lseek(fd, offset, whence, false)); } catch (e) { return Promise.reject(e); }
  },
  ...(syncOps as { [K in OpName as `${K}Sync`]: AnyFn }),
  lseekSync: (fd: number, offset: number, whence = 0): number => lseek(fd, offset, whence, false),
  /** The seed's raw form: resolves to the result (>= 0; an fd; a stat object) or -errno; never rejects for an errno. */
  raw: {
    ...byName(rawOp),
    ...(Object.fromEntries(OPS.map((op) => [`${op}Sync`, rawSyncOp(op)])) as { [K in OpName as `${K}Sync`]: AnyFn }),
    lseek: (fd: number, offset: number, whence = 0): Promise<number> => Promise.resolve(lseek(fd, offset, whence, true)),
    lseekSync: (fd: number, offset: number, whence = 0): number => lseek(fd, offset, whence, true),
  },
  socket,
  SysError,
  IoStats,
  BackendUnavailableError,
  backends: IO_BACKEND_NAMES,
  constants,
  ...constants,
};
