// The io_uring backend: the io API's records (ops.ts, io_uring's SQE layout)
// copied into a ring of host/uring/ring.ts (helper "uring"), completions
// noticed through the ring's registered eventfd on the thread's loop.
// Until that driver is merged here, io_uring reports itself unavailable (with
// the test hook WASM_REACTOR_IO_URING_FAIL honoured), so auto falls back.
import * as abi from "../../assembly/abi.ts";
import { errnoName } from "../abi-names.ts";
import type { BackendContext, IoBackend } from "./backend.ts";

export function uringBackend(_ctx: BackendContext): { impl: IoBackend } | { reason: string } {
  const forced = process.env.WASM_REACTOR_IO_URING_FAIL;
  if (forced) {
    const e = (abi as Record<string, unknown>)[forced];
    return { reason: `io_uring_setup: ${typeof e === "number" ? errnoName(e) : forced} (forced by WASM_REACTOR_IO_URING_FAIL)` };
  }
  return { reason: "the io_uring driver (host/uring/ring.ts) is not in this build yet" };
}
