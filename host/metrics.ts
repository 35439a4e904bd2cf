// Metrics across workers: each worker's core takes a snapshot of its
// counters (abi.ts MS_*: the CTL block, the metrics record, the proxy's
// records) at the end of a tick, and its host copies it into that
// worker's slot of a SharedArrayBuffer (the board). The core that serves
// /metrics asks its host for the others' snapshots (OP_METRICS) before it
// renders; its host copies them out of the board into linear memory and the
// core sums them. Counter records, not request bytes: copying them is not
// what the zero-copy rule is about.
//
// Consistency: a slot is a seqlock (an even sequence number before it, odd
// while its worker writes), so a reader never sums half of one tick and
// half of the next. Staleness: counters only change inside a tick; a worker
// publishes at the end of a tick when a millisecond has passed since its
// last publish, and always before a wait that may sleep (worker-entry.ts).
// So a scrape sees every other worker as of at most 1 ms plus one tick ago,
// and a worker blocked in its wait exactly as it is.
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";

/** Bytes of one snapshot for a table of `upstreams` upstreams (what the core's metricsSnapshotSize() says). */
export function snapshotSize(upstreams: number): number { return abi.MS_UP + upstreams * abi.MS_UP_SIZE; }

const HEADER = 8; // i32 sequence, i32 pad: the snapshot stays 8-aligned

/** What a worker is handed to publish into, or to gather from. */
export interface MetricsBoardDescriptor { buffer: SharedArrayBuffer; slots: number; snapshotSize: number }

export class MetricsBoard {
  readonly buffer: SharedArrayBuffer;
  readonly slots: number;
  readonly snapshotSize: number;
  private readonly seq: Int32Array;
  private readonly bytes: Uint8Array;

  constructor(d: MetricsBoardDescriptor | { slots: number; snapshotSize: number }) {
    this.slots = d.slots;
    this.snapshotSize = d.snapshotSize;
    this.buffer = "buffer" in d ? d.buffer : new SharedArrayBuffer(d.slots * (HEADER + d.snapshotSize));
    this.seq = new Int32Array(this.buffer);
    this.bytes = new Uint8Array(this.buffer);
  }

  descriptor(): MetricsBoardDescriptor { return { buffer: this.buffer, slots: this.slots, snapshotSize: this.snapshotSize }; }

  private at(slot: number): number { return slot * (HEADER + this.snapshotSize); }

  /** Worker `slot`: its core's snapshot, now, into its slot. */
  publish(slot: number, core: Core): void {
    const addr = core.x.metricsSnapshot();
    core.refresh();
    const at = this.at(slot);
    Atomics.add(this.seq, at >> 2, 1); // odd: being written
    this.bytes.set(core.u8.subarray(addr, addr + this.snapshotSize), at + HEADER);
    Atomics.add(this.seq, (at >> 2), 1); // even: whole
  }

  /**
   * The host service OP_METRICS for the core of worker `self`: the other
   * slots that were ever published, one after the other, into len bytes at
   * addr in its memory -> how many.
   */
  gather(self: number, core: Core, addr: number, len: number): number {
    core.refresh();
    const size = this.snapshotSize;
    let n = 0;
    for (let slot = 0; slot < this.slots && (n + 1) * size <= len; slot++) {
      if (slot === self) continue;
      const at = this.at(slot), word = at >> 2;
      if (Atomics.load(this.seq, word) === 0) continue; // never published (still starting)
      const dst = addr + n * size;
      // A writer takes a microsecond; a reader that keeps meeting one copies what it has.
      for (let tries = 0; tries < 1000; tries++) {
        const before = Atomics.load(this.seq, word);
        if (before & 1) continue;
        core.u8.set(this.bytes.subarray(at + HEADER, at + HEADER + size), dst);
        if (Atomics.load(this.seq, word) === before) break;
      }
      n++;
    }
    return n;
  }
}

/** Sets what /readyz says (the host's half: MX_HOST_UNREADY); the core's half is its own graceful shutdown. */
export function setReady(core: Core, ready: boolean): void {
  core.refresh();
  core.i32[(core.x.metricsRecord() + abi.MX_HOST_UNREADY) >> 2] = ready ? 0 : 1;
}

/**
 * "HOST:PORT" or "[V6]:PORT" -> its parts (the host as given: the CLI
 * resolves names, the library wants an IP address). Throws a one-line Error.
 */
export function parseMetricsAddress(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`metrics address must be HOST:PORT (e.g. 127.0.0.1:9100, [::1]:9100), got '${s}'`);
  return { host: m[1] ?? m[2], port };
}
