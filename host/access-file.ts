// The access log to a file (--access-log-file, LoopOptions.accessLogFile):
// each line goes into a ParallelWriter producer (host/writer/), so lines
// reach the file in large positional writes, never one write(2) per line.
// With --workers N every worker is a producer of ONE striped (packed) file:
// one log to tail, rotate and grep, as nginx writes it; the file never holds
// padding or holes once its writes returned, and each worker's lines stay in
// their order (lines of different workers interleave buffer by buffer, not
// by time: each line carries its own timestamp). The file is opened
// O_APPEND, so logrotate's copytruncate, or another process appending to the
// same file, leaves it whole (see ParallelWriterOptions.append).
//
// When lines go out (the loop calls these):
//   - when the producer's buffer is full;
//   - before the loop sleeps: poll() first waits with a zero timeout, and only
//     if nothing is ready writes the lines, then sleeps (an idle server
//     delays no line; a busy one fills whole buffers). With a hold time
//     (--access-log-flush MS, nginx's `flush=`) lines may wait that long
//     for more: the loop sleeps at most until then instead;
//   - at the end of a round whose oldest buffered line waited MAX_AGE_MS
//     (or the hold time, if longer);
//   - an attached loop (inside Node's event loop) after each tick, and every
//     loop when it stops or closes.
// A failed write (disk full, EIO) never stops the server: it is said on the
// error log with the lines it lost, at most once every WARN_EVERY_MS.
import { ParallelWriter, type Producer } from "./writer/index.ts";

const MAX_AGE_MS = 1000;
const WARN_EVERY_MS = 10_000;

export class AccessFile {
  /** Loop time of the first line buffered since the last flush; -1: none. */
  private since = -1;
  private lost = 0;
  private lastWarn = -Infinity;

  private readonly maxAge: number;

  private constructor(private readonly out: Producer, private readonly owner: ParallelWriter | null,
    private readonly warn: (line: string) => void, private readonly holdMs: number) {
    this.maxAge = Math.max(MAX_AGE_MS, holdMs);
  }

  /**
   * A path (opened for appending, a writer of its own) or a producer of a
   * writer the caller owns (a worker's share). `holdMs`: how long lines may
   * wait for more while the loop is idle (0: written as it goes idle).
   */
  static open(target: string | Producer, warn: (line: string) => void, holdMs = 0): AccessFile {
    if (!(holdMs >= 0 && holdMs <= 2 ** 31 - 1)) throw new RangeError(`accessLogFlushMs must be 0..${2 ** 31 - 1} ms, got ${holdMs}`);
    if (typeof target !== "string") return new AccessFile(target, null, warn, holdMs);
    const writer = new ParallelWriter({ layout: "striped", path: target, append: true });
    return new AccessFile(writer.producer(), writer, warn, holdMs);
  }

  get pending(): boolean { return this.out.buffered > 0; }

  /** How long the buffered lines may still wait before the loop sleeps (ms); 0: write them now. */
  holdFor(now: number): number {
    return this.since < 0 ? 0 : Math.max(0, Math.ceil(this.holdMs - (now - this.since)));
  }

  /** One line (the `n` bytes at `at` of the core's memory), with its '\n'. */
  add(mem: Uint8Array, at: number, n: number, now: number): void {
    if (this.since < 0) this.since = now;
    try { this.out.writeLine(mem.subarray(at, at + n)); } catch (e) { this.failed(e, now); }
  }

  /** End of a round: lines that waited long enough go out. */
  roundDone(now: number): void {
    if (this.since >= 0 && now - this.since >= this.maxAge) this.flush(now);
  }

  flush(now: number): void {
    this.since = -1;
    try { this.out.flush(); } catch (e) { this.failed(e, now); }
  }

  private failed(e: unknown, now: number): void {
    this.lost += (e as { lostPayloads?: number }).lostPayloads ?? 1;
    if (now - this.lastWarn < WARN_EVERY_MS) return;
    this.warn(`access log: ${(e as Error)?.message ?? e} (${this.lost} line(s) lost since the last such message)`);
    this.lost = 0;
    this.lastWarn = now;
  }

  close(now: number): void {
    this.since = -1;
    try { this.out.close(); } catch (e) { this.lastWarn = -Infinity; this.failed(e, now); }
    this.owner?.close();
  }
}
