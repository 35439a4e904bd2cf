// The event backend: the host's one seam to the kernel's readiness API
// (epoll, poll(2); kqueue would be a third file). It translates, and only
// translates, between the core's neutral contract (assembly/abi.ts: EV_*
// bits, INTEREST_* ops, event records {bits, fd, generation}) and its
// kernel's calls. It makes no decisions; Redis's ae_epoll.c is the model.
//
// Contract (what every backend guarantees; the core relies on nothing else):
//
// - Interest. setInterest(fd, INTEREST_ADD | MOD | DEL, bits, gen) answers
//   synchronously 0 or -errno, with epoll_ctl's errors for the cases the
//   core's retry logic tells apart: -EEXIST for an ADD of a watched fd,
//   -ENOENT for a MOD or DEL of an unwatched one, -EBADF for an fd that is
//   not open. `bits` are EV_READABLE | EV_WRITABLE, optionally | EV_EDGE;
//   0 keeps the fd watched for EV_ERROR and EV_HANGUP only. A MOD replaces
//   bits and generation and re-evaluates readiness (an edge fd that is ready
//   is reported again, as epoll does on EPOLL_CTL_MOD).
// - Events. wait() writes at most `cap` event records into the core's event
//   area and returns how many (or -errno, -EINTR included: the caller
//   retries). A record's bits are EV_READABLE, EV_WRITABLE, EV_ERROR,
//   EV_HANGUP (never EV_EDGE); fd and generation are the ones of the fd's
//   last ADD/MOD, so the core can drop an event meant for an earlier owner of
//   a reused fd number. EV_ERROR and EV_HANGUP are reported whatever the
//   interest. An fd appears at most once per wait.
// - Level vs edge. Without EV_EDGE a bit is reported on every wait while the
//   condition holds. With EV_EDGE it is reported once, and again only after
//   new readiness: after an operation on the fd met EAGAIN (or fell short,
//   see wouldBlock) or the interest was set again. A backend without kernel
//   edges (poll) emulates them from that hook.
// - Spurious events are allowed: a reported bit is a hint, the operation that
//   follows may still meet EAGAIN. Missed events are not.
// - Closed fds. The pump calls closed(fd) before it closes an fd that may be
//   watched; from then on nothing is reported for it and its number is free
//   for an ADD (epoll forgets a closed fd by itself; poll must be told).
// - wait() within a tick happens before the requests that follow it; the
//   backend needs no locking: one backend, one thread, no thread-safety.
// - Attach mode (Node's own event loop drives the ticks): attach(onReady)
//   asks libuv to call onReady whenever wait() would report something;
//   detach() undoes it. The loop then calls wait() with timeout 0.
import type { Core } from "../core.ts";

export type BackendName = "epoll" | "poll";
export const BACKEND_NAMES: readonly BackendName[] = ["epoll", "poll"];

export interface Backend {
  readonly name: BackendName;
  /** Changes fd's interest (INTEREST_* op, EV_* bits, generation); 0 or -errno. */
  setInterest(fd: number, op: number, bits: number, gen: number): number;
  /**
   * Waits up to timeoutMs (-1: forever, 0: don't block) and writes the event
   * records at `area` (an offset into the core's memory); n >= 0 or -errno.
   */
  wait(core: Core, area: number, cap: number, timeoutMs: number): number;
  /**
   * An operation on fd met EAGAIN or fell short for `bits` (READABLE: read,
   * accept; WRITABLE: write, writev, send, sendfile): a new edge may come.
   * Absent on backends with kernel edges (the pump then skips the work).
   */
  wouldBlock?(fd: number, bits: number): void;
  /** The pump is about to close fd: forget it. */
  closed(fd: number): void;
  /** Attach mode: call onReady (from libuv) when wait() has something to report. */
  attach(onReady: () => void): void;
  detach(): void;
  /** Frees the backend's own fds and memory; nothing may be called after. */
  close(): void;
}

/** Validates a backend name: a clear error for anything else. */
export function backendName(v: unknown, where = "backend"): BackendName {
  if (typeof v === "string" && (BACKEND_NAMES as readonly string[]).includes(v)) return v as BackendName;
  throw new TypeError(`${where}: expected one of ${BACKEND_NAMES.join(", ")}, got ${JSON.stringify(v)}`);
}

/**
 * The backend used when none is named: WASM_REACTOR_BACKEND if set (so a
 * whole test suite or an application can be switched without code), else
 * epoll.
 */
export function defaultBackendName(): BackendName {
  const env = process.env.WASM_REACTOR_BACKEND;
  return env ? backendName(env, "WASM_REACTOR_BACKEND") : "epoll";
}
