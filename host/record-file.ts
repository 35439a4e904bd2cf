// A recording's file: the one Sink that touches the OS, kept out of
// host/record.ts so replay and the fuzzer (which read and write recordings
// in memory) load no koffi. The bytes go through a ParallelWriter
// (host/writer/): buffered, one pwritev per MiB, synchronous.
import { ParallelWriter, type Producer } from "./writer/index.ts";
import type { Sink } from "./record.ts";

export class FileSink implements Sink {
  private readonly writer: ParallelWriter | null;
  private readonly out: Producer;
  /**
   * `target`: a path (created or truncated; one shard named exactly that)
   * or a producer of a sharded writer someone else owns (a worker's shard:
   * `ParallelWriter.join(descriptor, { shard })`), which close() closes.
   */
  constructor(target: string | Producer) {
    if (typeof target === "string") {
      this.writer = new ParallelWriter({ layout: "sharded", path: target, shardName: "{path}" });
      this.out = this.writer.producer(0);
    } else {
      this.writer = null;
      this.out = target;
    }
  }
  write(b: Uint8Array): void { this.out.write(b); }
  close(): void {
    try { this.out.close(); } finally { this.writer?.close(); }
  }
}
