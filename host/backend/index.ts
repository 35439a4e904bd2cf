// Event backends by name (types.ts: the contract; one file per backend).
import { EpollBackend } from "./epoll.ts";
import { PollBackend } from "./poll.ts";
import { type Backend, type BackendName, backendName } from "./types.ts";

export { type Backend, type BackendName, BACKEND_NAMES, backendName, defaultBackendName } from "./types.ts";

export function createBackend(name: BackendName): Backend {
  switch (backendName(name)) {
    case "epoll": return new EpollBackend();
    case "poll": return new PollBackend();
  }
}
