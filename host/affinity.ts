// CPU affinity for --cpu-affinity: each reactor's thread pinned to one CPU
// (sched_setaffinity on the thread's own tid: a Node worker is a thread of
// the process, and pid 0 / the pid would name the calling thread or the
// main one). Threads started afterwards by that thread (the file pool's
// workers) inherit its mask; Node's own helper threads are left alone.
import { libc, errno, SysError } from "./libc.ts";

/** Bytes of cpu_set_t passed to the kernel: 1024 CPUs, glibc's CPU_SETSIZE. */
const MASK_BYTES = 128;
/** gettid's syscall number. */
const SYS_gettid = process.arch === "arm64" ? 178 : 186;

/** The calling thread's kernel thread id. */
export function threadId(): number { return Number(libc.gettid(SYS_gettid)); }

/** The CPUs thread `tid` may run on (0: the calling thread), in ascending order. */
export function allowedCpus(tid = 0): number[] {
  const mask = Buffer.alloc(MASK_BYTES);
  if (libc.sched_getaffinity(tid, MASK_BYTES, mask) < 0) throw new SysError("sched_getaffinity", errno());
  const cpus: number[] = [];
  for (let i = 0; i < MASK_BYTES * 8; i++) if (mask[i >> 3] & (1 << (i & 7))) cpus.push(i);
  return cpus;
}

/** Pins the calling thread to `cpu`; returns its tid and the mask as the kernel now reports it. */
export function pinThread(cpu: number): { tid: number; cpus: number[] } {
  if (!(Number.isInteger(cpu) && cpu >= 0 && cpu < MASK_BYTES * 8)) throw new RangeError(`cpu must be 0..${MASK_BYTES * 8 - 1}, got ${cpu}`);
  const tid = threadId();
  const mask = Buffer.alloc(MASK_BYTES);
  mask[cpu >> 3] |= 1 << (cpu & 7);
  if (libc.sched_setaffinity(tid, MASK_BYTES, mask) < 0) throw new SysError(`sched_setaffinity(tid ${tid}, CPU ${cpu})`, errno());
  return { tid, cpus: allowedCpus(tid) };
}

/** The CPU worker `i` is pinned to: the i-th CPU this process may use (round robin when there are more workers). */
export function cpuForWorker(i: number, cpus: readonly number[]): number { return cpus[i % cpus.length]; }
