// The kinds of timer the reactor arms. The heap (timers.ts) stores the kind
// opaquely; loop.ts fireTimers() dispatches on it. A file of its own because
// index.ts exports all of timers.ts (tests and benchmarks drive the heap
// directly) and these are not part of the core's exports.

/**
 * What the reactor does when a timer fires (the record's `kind`; the heap
 * itself never looks at it). The one list of kinds: loop.ts dispatches on it.
 */
export enum TimerKind {
  // 1 was CONN: connection deadlines are in the timing wheel (wheel.ts) now.
  /** Accepting resumes after EMFILE/ENFILE (listener.ts). */
  ACCEPT_RESUME = 2,
  /** A JS timer (timerStart); its id is the JS key. */
  JS = 3,
  /** The grace period of a graceful shutdown is over (beginShutdown). */
  SHUTDOWN = 4,
  /** A protocol's own timer (protocol.ts timer hook); owner: protocol id | arg << 7. */
  PROTO = 5,
}
