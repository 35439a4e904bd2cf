// Backend selection, in one place: a forced backend that cannot run is an
// error naming why; auto takes io_uring, else epoll_threadpool, else
// threadpool, and says in one line why it did not take a better one.
// Availability of io_uring is decided by host/uring/ring.ts (uringAvailability).
import type { BackendContext, IoBackend, IoBackendChoice } from "./backend.ts";
import { BackendUnavailableError } from "./backend.ts";
import { ThreadPool } from "./threadpool.ts";
import { EpollThreadPool } from "./epoll.ts";
import { uringBackend } from "./uring.ts";

export function chooseBackend(choice: IoBackendChoice, ctx: BackendContext): { impl: IoBackend; reason: string | null } {
  const reasons: string[] = [];
  const attempt = (name: "io_uring" | "epoll_threadpool" | "threadpool"): IoBackend | null => {
    try {
      if (name === "io_uring") {
        const r = uringBackend(ctx);
        if ("reason" in r) { reasons.push(`io_uring unavailable (${r.reason})`); return null; }
        return r.impl;
      }
      return name === "epoll_threadpool" ? new EpollThreadPool(ctx) : new ThreadPool(ctx);
    } catch (e) {
      if (choice !== "auto") throw new BackendUnavailableError(name, (e as Error).message);
      reasons.push(`${name} unavailable (${(e as Error).message})`);
      return null;
    }
  };
  if (choice !== "auto") {
    const impl = attempt(choice);
    if (!impl) throw new BackendUnavailableError(choice, reasons[0].replace(/^\S+ unavailable \((.*)\)$/, "$1"));
    return { impl, reason: null };
  }
  for (const name of ["io_uring", "epoll_threadpool", "threadpool"] as const) {
    const impl = attempt(name);
    if (impl) return { impl, reason: reasons.length ? reasons.join("; ") : null };
  }
  throw new BackendUnavailableError("threadpool", reasons.join("; "));
}
