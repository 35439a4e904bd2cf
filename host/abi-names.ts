// Readable names for the codes of assembly/abi.ts, built from abi.ts in this
// one place: request ops (4 -> "WRITE"), errnos (11 -> "EAGAIN") and the
// core's invariant codes (INV_*). No koffi here: replay and the fuzzer name
// things without loading libc.
import * as abi from "../assembly/abi.ts";

type AbiName = keyof typeof abi;

function named(pick: (k: string) => boolean, name: (k: string) => string = (k) => k): Record<number, string> {
  return Object.fromEntries(Object.entries(abi).filter(([k]) => pick(k)).map(([k, v]) => [v, name(k)]));
}

/** op -> its name without "OP_": 4 -> "WRITE". */
export const OP_NAMES = named((k) => k.startsWith("OP_") && k !== "OP_COUNT", (k) => k.slice(3));

/** errno -> name: every E* constant of abi.ts without an underscore (EV_*, EVENT_* are not) is an errno. */
const ERRNO_NAMES = named((k) => /^E[A-Z0-9]+$/.test(k));

/** `EADDRINUSE`; `errno 7` for a number abi.ts does not name. */
export function errnoName(e: number): string { return ERRNO_NAMES[e] ?? `errno ${e}`; }

// Every INV_* code but INV_OK, in words; the type makes tsc refuse a code
// added to abi.ts without its text here.
const INVARIANT_TEXT: Record<Exclude<Extract<AbiName, `INV_${string}`>, "INV_OK">, string> = {
  INV_TIMER_HEAP: "timer heap broken (order, index map or counts)",
  INV_ZOMBIE: "a handler slot is both zombie and live outside a batch",
  INV_CONN_HANDLER: "a built-in connection and its handler slot disagree",
  INV_RBUF_BOUNDS: "receive-buffer offsets out of range",
  INV_WRING_BOUNDS: "write ring over the limit or over its own size",
  INV_RUN_QUEUE: "run-queue cycle or queued flag out of sync",
  INV_RBUF_HELD: "receive buffers held != connections holding one",
  INV_RING_BYTES: "ring-pool bytes held != write rings + response buffers + cached bodies",
  INV_TIMER_WHEEL: "timing wheel broken (links, a record's slot, bitmaps or counts)",
};

/** `invariant 3 (a built-in connection and its handler slot disagree)`. */
export function describeInvariant(code: number): string {
  const text = Object.entries(INVARIANT_TEXT).find(([k]) => abi[k as AbiName] === code)?.[1];
  return `invariant ${code} (${text ?? "unknown code"})`;
}
