// Which executor carries the server's (and a Reactor's) requests out: the
// I/O backend. Names as issue 9 decided: "io_uring" | "epoll_threadpool" |
// "threadpool" | "auto"; forced by an option (ioBackend), the CLI's
// --io-backend or WASM_REACTOR_IO_BACKEND (option > flag > environment).
//
// For the server's own requests:
//   io_uring          host/executor-uring.ts: a round's kernel requests as one io_uring_enter
//   epoll_threadpool  host/executor-libc.ts: one libc call per request (sockets on the event
//                     backend's readiness; the server's file work is synchronous today)
//   threadpool        refused: sockets need readiness (an executor that parks a recv on a pool
//                     thread per connection is not a C10K server)
//   auto              AUTO_SERVER_BACKEND below (what measured best here), else
//                     epoll_threadpool if io_uring is unavailable, with the reason in one log line
import { uringAvailability } from "./uring/ring.ts";

export type IoBackendName = "io_uring" | "epoll_threadpool" | "threadpool" | "auto";
export const IO_BACKEND_NAMES: readonly IoBackendName[] = ["auto", "io_uring", "epoll_threadpool", "threadpool"];
/** What the server's requests can run on. */
export type ServerIoBackend = "io_uring" | "epoll_threadpool";

/**
 * auto's choice for the server when io_uring is available. Measured
 * (bench/http.sh, io_uring beside epoll): see the commit that set it.
 */
export const AUTO_SERVER_BACKEND: ServerIoBackend = "io_uring";

/** Validates an I/O backend name: a clear error for anything else. */
export function ioBackendName(v: unknown, where = "ioBackend"): IoBackendName {
  if (typeof v === "string" && (IO_BACKEND_NAMES as readonly string[]).includes(v)) return v as IoBackendName;
  throw new TypeError(`${where}: expected one of ${IO_BACKEND_NAMES.join(", ")}, got ${JSON.stringify(v)}`);
}

/** The I/O backend when none is named: WASM_REACTOR_IO_BACKEND if set, else auto. */
export function defaultIoBackendName(): IoBackendName {
  const env = process.env.WASM_REACTOR_IO_BACKEND;
  return env ? ioBackendName(env, "WASM_REACTOR_IO_BACKEND") : "auto";
}

/** A requested backend the server cannot use (threadpool, or io_uring forced where it does not work). */
export class IoBackendError extends Error {}

/**
 * The server's executor for `requested`: `{ backend }`, plus `fallback`
 * (the one line to log) when auto could not have io_uring. Throws
 * IoBackendError for threadpool and for a forced io_uring that is unavailable.
 */
export function resolveServerIoBackend(requested: IoBackendName): { backend: ServerIoBackend; fallback?: string } {
  if (requested === "threadpool") {
    throw new IoBackendError("I/O backend threadpool cannot run the server: its sockets need readiness (use io_uring or epoll_threadpool)");
  }
  if (requested === "epoll_threadpool") return { backend: "epoll_threadpool" };
  if (requested === "auto" && AUTO_SERVER_BACKEND === "epoll_threadpool") return { backend: "epoll_threadpool" };
  const a = uringAvailability();
  if (a.ok) return { backend: "io_uring" };
  if (requested === "io_uring") throw new IoBackendError(`I/O backend io_uring is unavailable: ${a.reason}`);
  return { backend: "epoll_threadpool", fallback: `I/O backend: io_uring unavailable (${a.reason}); using epoll_threadpool` };
}
