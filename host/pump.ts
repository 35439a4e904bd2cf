// The pump: the one loop that drives the core. The host loop (host/loop.ts),
// the tests' fake host (test/lib/fakehost.mjs), the fuzzer
// (tools/fuzz/fuzz.ts) and the dispatch benchmark (bench/dispatch.mjs) all
// run the core through it and differ only in the Executor that carries the
// requests out (host/executor.ts) and in where their events and time come
// from. It owns:
//
//  - the tick's phase list (`tick()`, below; libuv's uv_run is the model);
//  - a phase: call the core, carry out the round it returns, hand the
//    results back with complete(n), until the core asks for nothing more;
//  - trap containment: a trap inside the core (a WebAssembly RuntimeError
//    or the core's abort()) is contained to the connection it was working
//    on by recover(), and the phase resumes.
//
// It imports nothing but the ABI (no koffi, no OS), so the plain-JS tests
// load it from build/pump.js.
import * as abi from "../assembly/abi.ts";
import type { Executor } from "./executor.ts";

/** The core's exports the pump calls (read through `core.x` on each phase: recording may wrap them). */
export interface PumpExports {
  runTimers(): number;
  pollTimeout(): number;
  dispatch(n: number): number;
  runDeferred(): number;
  flush(): number;
  complete(n: number): number;
  /** Optional: only executors with reap() need it (a core without it cannot take later completions). */
  reaped?(k: number): number;
  recover(): number;
}

/** What the pump needs of a core: its exports and the control block. */
export interface PumpCore {
  readonly x: PumpExports;
  /** An i32 field of the control block (abi.CTL_*), read from fresh memory. */
  ctlI32(off: number): number;
}

/** Thrown by the core's abort() (out of memory in the stub runtime). */
export class CoreAbort extends Error {}

/** A phase asked for work round after round, past `maxRounds`. */
export class LivelockError extends Error {}

/** Is `e` a trap inside the core (which recover() contains), rather than a host error? */
export function isCoreTrap(e: unknown): boolean {
  return e instanceof WebAssembly.RuntimeError || e instanceof CoreAbort
    || (e instanceof Error && /^core abort at /.test(e.message)); // test/lib/core.mjs's abort()
}

/** Where a tick's inputs come from: the clock, and the wait for events. */
export interface TickSource {
  /**
   * Reads the clock into the core (loop time for the phase that follows):
   * before the timers, and again after the poll (`afterPoll`: it may have slept).
   */
  clock(afterPoll: boolean): void;
  /**
   * Waits for events, at most `timeout` ms (-1: no limit; the core's next
   * timer decides), writes them into the core's event area and returns
   * how many. The epoll backend sleeps in epoll_wait; a fake one returns at
   * once with the batch a test or the fuzzer made.
   */
  poll(timeout: number): number;
}

export interface PumpOptions {
  /**
   * Called with a trap before recover() contains it, with the fd the core
   * was working on. It may log it, count it, or throw to stop (the fuzzer
   * treats a trap as a failure): the phase then ends with that exception.
   */
  onTrap?: (e: Error, fd: number) => void;
  /** Called after every call into the core (the fuzzer checks the invariants here). */
  afterCall?: (phase: string) => void;
  /** Rounds a phase may take before it is a livelock (LivelockError). Default: no limit. */
  maxRounds?: number;
  /**
   * Called after each round's requests were carried out, before the core is
   * handed their completions. The loop re-reads the clock here: a deadline
   * armed from a read then starts no earlier than that read. Without it, a
   * long dispatch (thousands of ready connections on a loaded machine) hands
   * its last reads the time of its poll, and their idle deadlines fall up to
   * that long early from the client's side (151 ms seen in CI).
   */
  afterRound?: () => void;
}

export class Pump {
  /** The phase running ("idle" between phases): for logs and assertions. */
  phase = "idle";
  private readonly onTrap: ((e: Error, fd: number) => void) | null;
  private readonly afterCall: ((phase: string) => void) | null;
  private readonly maxRounds: number;
  private readonly afterRound: (() => void) | null;

  constructor(private readonly core: PumpCore, public executor: Executor, options: PumpOptions = {}) {
    this.onTrap = options.onTrap ?? null;
    this.afterCall = options.afterCall ?? null;
    this.maxRounds = options.maxRounds ?? Infinity;
    this.afterRound = options.afterRound ?? null;
  }

  /** True while a phase runs (inside any callback the core asks for). */
  get inPhase(): boolean { return this.phase !== "idle"; }

  /**
   * One turn of the loop, in order:
   *   1. timers that are due           runTimers()
   *   2. poll for I/O, no longer than   pollTimeout() -> source.poll()
   *      the next timer (capped by `maxWait` >= 0; 0 when `mustNotBlock`)
   *   3. completions of requests        executor.reap() -> reaped(k)
   *      kept in flight (io_uring...)
   *   4. dispatch the batch             dispatch(n): ready connections run
   *   5. deferred modifications,        runDeferred()
   *   6. deferred tasks
   */
  tick(source: TickSource, maxWait = -1, mustNotBlock?: () => boolean): void {
    const x = this.core.x;
    source.clock(false);
    this.run("timers", () => x.runTimers());
    let timeout = x.pollTimeout();
    if (maxWait >= 0 && (timeout < 0 || timeout > maxWait)) timeout = maxWait;
    // A timer callback asked to stop: finish this tick without sleeping.
    if (mustNotBlock && mustNotBlock()) timeout = 0;
    const n = source.poll(timeout);
    source.clock(true);
    if (this.executor.reap) this.reap();
    this.run("dispatch", () => x.dispatch(n));
    this.run("deferred", () => x.runDeferred());
  }

  /** The completion phase: what the executor completed since its requests' rounds. */
  reap(): void {
    const reap = this.executor.reap;
    if (!reap) return;
    // The executor is asked once. If the core traps handling one of the k
    // completions, recover() returns -1 and guard() calls this again: it must
    // then resume those k with complete(k), not reap a second batch (which
    // would land in the other CQ and be lost).
    let k = -1;
    this.run("completions", () => {
      if (k >= 0) return this.core.x.complete(k);
      k = reap.call(this.executor, this.core.ctlI32(abi.CTL_CQ), this.core.ctlI32(abi.CTL_CQ_ROOM));
      return k > 0 ? this.core.x.reaped!(k) : 0;
    });
  }

  /** Applies what JS changed outside a phase (a register() before run(), ...). */
  flush(): void { this.run("flush", () => this.core.x.flush()); }

  /**
   * One phase: calls `start` (a core phase function, which returns the size
   * of its first round), then carries out each round and hands it back
   * with complete(n) until the core returns 0.
   */
  run(phase: string, start: () => number): void {
    if (this.phase !== "idle") throw new Error(`pump: phase ${phase} started inside phase ${this.phase}`);
    this.phase = phase;
    try {
      const x = this.core.x;
      let n = this.guard(start);
      for (let rounds = 1; n > 0; rounds++) {
        if (rounds > this.maxRounds) throw new LivelockError(`livelock: ${phase} still asking for work after ${this.maxRounds} rounds`);
        const k = this.round(n);
        n = this.guard(() => x.complete(k));
      }
    } finally {
      this.phase = "idle";
    }
  }

  /**
   * Carries out SQ[0..n) through the executor (the queues are
   * double-buffered: re-read each round); returns the completions written.
   */
  private round(n: number): number {
    const k = this.executor.submit(this.core.ctlI32(abi.CTL_SQ), this.core.ctlI32(abi.CTL_CQ), n);
    this.afterRound?.();
    return typeof k === "number" ? k : n;
  }

  /**
   * Calls into the core; a trap is contained by recover() and the phase
   * resumes. recover() returns r < 0 if the core trapped consuming
   * completions (complete(n) resumes after the one that trapped, with
   * nothing new to carry out), else the r requests emitted before the trap:
   * they are carried out and complete(r) resumes the phase.
   */
  private guard(call: () => number): number {
    for (;;) {
      let r: number;
      try {
        r = call();
      } catch (e) {
        if (!isCoreTrap(e)) throw e;
        const fd = this.core.ctlI32(abi.CTL_CURRENT_FD);
        this.onTrap?.(e as Error, fd);
        const x = this.core.x;
        const emitted = x.recover();
        this.afterCall?.(this.phase);
        if (emitted >= 0) {
          const k = this.round(emitted);
          call = () => x.complete(k);
        }
        continue;
      }
      this.afterCall?.(this.phase);
      return r;
    }
  }
}
