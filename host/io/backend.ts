// The io backend: what carries the io API's requests out. Contract first
// (the front, host/io/index.ts, relies on exactly this; mio's selector is
// the model: one small interface, one file per backend).
//
// - Requests are records in a RequestTable (host/io/table.ts): slot i holds
//   one SQE in io_uring's layout (host/io/ops.ts says each op's fields) and
//   an argument area (paths, statx buffers, sockaddrs) in shared memory, so a
//   worker thread or the kernel can read it by address.
// - submit(slot): the front has filled the slot's SQE; the backend starts it
//   and later calls `complete(slot, res)` (res >= 0, or -errno) exactly
//   once, from the thread's event loop (Node's, or the Reactor's), never
//   synchronously inside submit(). Completions come in any order.
// - cancel(slot): the front has already settled the slot's promise with
//   ECANCELED (close(fd) or stop()). The backend makes the operation return
//   as soon as it can (a queued request is dropped unstarted, a wait for a
//   socket is interrupted) but still calls complete(slot, res) once the
//   kernel and every thread are done with the slot's buffers: only then does
//   the front release the buffers and reuse the slot.
// - pending(): whether any request is in flight (keeps Node's loop alive).
// - close(): called once nothing is in flight; frees threads, fds, rings.
// The backends: threadpool.ts (every op on worker threads), epoll.ts
// (sockets by readiness on the thread's loop, files on the pool), uring.ts
// (an io_uring ring). kqueue + pool would be epoll.ts with kevent: docs/io.md.
import type { RequestTable } from "./table.ts";
import { IO_BACKEND_NAMES, ioBackendName as checkName, defaultIoBackendName, type IoBackendName as Choice } from "../io-backend.ts";

/** A backend that runs (auto resolves to one of these). */
export type IoBackendName = Exclude<Choice, "auto">;
/** What may be asked for: host/io-backend.ts's names, shared with the server (--io-backend). */
export type IoBackendChoice = Choice;
export { IO_BACKEND_NAMES };

export type Complete = (slot: number, res: number) => void;

export interface IoBackend {
  readonly name: IoBackendName;
  submit(slot: number): void;
  cancel(slot: number): void;
  /** fd was closed, or a new file got its number: drop what is known about it (watches, kind). */
  forget?(fd: number): void;
  /** Frees the backend once nothing is in flight; resolves when its threads have exited. */
  close(): Promise<void> | void;
}

/** What a backend is built from: the shared table, the completion callback and the loop to watch fds on. */
export interface BackendContext {
  table: RequestTable;
  complete: Complete;
  watcher: import("./watch.ts").FdWatcher;
  /** Worker threads of the pool (threadpool, and epoll_threadpool's file half). */
  threads: number;
  /** Set when the executor shares a Reactor's loop. */
  reactor?: import("../reactor.ts").Reactor;
}

/** Validates a backend name: a clear error for anything else. */
export function ioBackendName(v: unknown, where = "backend"): IoBackendChoice { return checkName(v, where); }

/** The backend asked for when none is named: WASM_REACTOR_IO_BACKEND, else auto. */
export function defaultIoBackend(): IoBackendChoice { return defaultIoBackendName(); }

/** A forced backend that cannot run here: the reason, as a startup error. */
export class BackendUnavailableError extends Error {
  constructor(readonly backend: IoBackendName, readonly reason: string) {
    super(`io backend ${backend} is unavailable: ${reason}`);
    this.name = "BackendUnavailableError";
  }
}
