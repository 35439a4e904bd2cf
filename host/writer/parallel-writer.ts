// ParallelWriter (seed 004's parallel file writers): many producers hand it
// small payloads (log lines, recording frames); each producer copies them
// into a buffer of its own and, when the buffer is full or flushed, claims
// the next region of its file and writes the whole buffer there with one
// pwritev(2). Never one syscall per payload, never a lock: the only shared
// step is an Atomics.add on the file's next-free-offset counter.
//
// Layouts:
//   striped  one file; a producer's region is exactly the bytes it holds
//            (packed: no gaps, nothing fills a partly used buffer). Regions
//            of different producers interleave in the order they were claimed.
//   padded   one file cut into blocks of stripeSize bytes; a region is whole
//            blocks, a payload that fits a block never crosses a block
//            boundary, and what a payload leaves unused of a block is filled
//            with the pad byte ('\n' by default: a line reader sees empty
//            lines; use 0 for binary records). A reader may start at any
//            block boundary. A payload larger than a block starts a block
//            and takes as many as it needs.
//   sharded  one file per shard (`{path}.{shard}` by default), one producer
//            each: the shard's file is that producer's payloads, in order.
// Every layout keeps each payload whole (never split across regions or
// shards) and each producer's payloads in the order it wrote them: its
// regions are claimed one after another, so their offsets increase.
//
// Producers in other threads (the server's --workers N) join with
// `ParallelWriter.join(writer.descriptor(), { shard })`: the descriptor is
// plain data (fds, sizes, a SharedArrayBuffer of counters) that
// postMessage/workerData can carry. fds are shared by every thread of the
// process; the writer that opened them closes them, after every producer
// closed (close() refuses otherwise: a late write to a closed, reused fd
// would land in another file).
//
// Memory: one buffer of bufferSize bytes per producer, reused as soon as its
// write returns (the carrier is synchronous). A failed write is reported as a
// WriteError (a SysError: errno name, fd, offset) that counts the payloads
// it lost; counters of bytes, payloads and writes are kept per producer and,
// summed over every thread, per writer.
import { openSync, closeSync, fstatSync, fsyncSync, constants } from "node:fs";
import { SysError } from "../libc.ts";
import { LibcCarrier, type WriteCarrier } from "./carrier.ts";
import { probeFileSystem, writerSizing, type FileSystemInfo, type WriterSizing } from "./sizing.ts";

export type WriterLayout = "striped" | "padded" | "sharded";
export const WRITER_LAYOUTS: readonly WriterLayout[] = ["striped", "padded", "sharded"];

export interface ParallelWriterOptions {
  /** Default "striped". */
  layout?: WriterLayout;
  /** The output file (striped, padded), or the `{path}` of the shard names (sharded). */
  path?: string;
  /** Instead of a path: fds open for writing, one (striped, padded) or one per shard; the caller closes them. */
  fds?: number[];
  /** Sharded: how many shards (default: fds.length, else 1). */
  shards?: number;
  /** Sharded: the name of shard i; `{path}` and `{shard}` are replaced. Default "{path}.{shard}". */
  shardName?: string;
  /**
   * Keep what the file(s) hold and write after it (a log); default:
   * truncate. Striped and sharded files are then opened O_APPEND: on Linux
   * a pwritev on such an fd appends whatever its offset (pwrite(2), BUGS),
   * so each region lands at the end as the kernel sees it, and a file
   * truncated behind the writer's back (logrotate's copytruncate) or
   * appended to by another process stays whole, with no hole. Padded files
   * keep positional writes (their blocks need exact offsets).
   */
  append?: boolean;
  /** Region (striped) / block (padded) size; default from the file system (see sizing.ts). */
  stripeSize?: number;
  /** Bytes each producer buffers; default one stripe. Padded: whole stripes. */
  bufferSize?: number;
  /** Padded: the byte that fills unused block space; default 0x0a ('\n'). */
  padByte?: number;
  /** fsync(2) each file at close(); default false. */
  fsync?: boolean;
  /** The file system as statfs would tell (tests inject Lustre); default: probed with fstatfs. */
  fileSystem?: FileSystemInfo;
  /** How writes reach the kernel; default pwritev through libc. Producers joined in other threads use their own. */
  carrier?: WriteCarrier;
}

/** What a producer in another thread needs: plain data, for postMessage/workerData. */
export interface WriterDescriptor {
  readonly kind: "wasm-reactor/ParallelWriter";
  readonly layout: WriterLayout;
  readonly fds: number[];
  readonly paths: string[];
  readonly stripeSize: number;
  readonly bufferSize: number;
  readonly padByte: number;
  readonly shared: SharedArrayBuffer;
}

export interface WriterStats {
  /** Bytes written to the file(s), padding included. */
  bytes: number;
  payloads: number;
  /** pwritev calls that succeeded. */
  writes: number;
  padBytes: number;
  lostBytes: number;
  lostPayloads: number;
  failedWrites: number;
}

/** A failed write: the errno (code), fd, offset and what was lost with it. */
export class WriteError extends SysError {
  lostPayloads = 0;
  lostBytes = 0;
  private readonly what: string;
  constructor(e: number, fd: number, readonly path: string, readonly offset: number, lostPayloads: number, lostBytes: number) {
    super(`pwritev ${path} at ${offset}`, e, fd);
    this.what = this.message;
    this.lost(lostPayloads, lostBytes);
  }
  /** Counts more payloads lost with this write (and says so in the message). */
  lost(payloads: number, bytes: number): void {
    this.lostPayloads += payloads;
    this.lostBytes += bytes;
    this.message = `${this.what}; ${this.lostPayloads} payload(s) of ${this.lostBytes} bytes lost`;
  }
}

// Shared memory, i64 slots: [0, F) the next free offset of each file (F = 1,
// or the shard count), then the totals (S_*); then i32 slots: the state, the
// producers open, one "taken" flag per shard.
const S_BYTES = 0, S_PAYLOADS = 1, S_WRITES = 2, S_PAD = 3, S_LOST_BYTES = 4, S_LOST_PAYLOADS = 5, S_FAILED = 6, STATS = 7;
const I_STATE = 0, I_OPEN = 1, I_TAKEN = 2;
const OPEN = 0, CLOSED = 1;
const EINTR = 4, EIO = 5;

class Shared {
  readonly big: BigInt64Array;
  readonly i32: Int32Array;
  constructor(sab: SharedArrayBuffer, readonly files: number) {
    this.big = new BigInt64Array(sab, 0, files + STATS);
    this.i32 = new Int32Array(sab, 8 * (files + STATS), I_TAKEN + files);
  }
  static bytes(files: number): number { return 8 * (files + STATS) + 4 * (I_TAKEN + files); }
  add(slot: number, n: number): void { if (n) Atomics.add(this.big, this.files + slot, BigInt(n)); }
  get(slot: number): number { return Number(Atomics.load(this.big, this.files + slot)); }
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;
const encoder = new TextEncoder();

/** One producer's share of a writer: its buffer, in one thread. */
export class Producer {
  /** The file this producer writes: 0 (striped, padded) or its shard. */
  readonly shard: number;
  readonly stats: WriterStats = { bytes: 0, payloads: 0, writes: 0, padBytes: 0, lostBytes: 0, lostPayloads: 0, failedWrites: 0 };
  private readonly buf: Uint8Array;
  private used = 0;
  private held = 0;
  private padHeld = 0;
  private closed = false;
  /** Padded: the block; 0 otherwise. */
  private readonly block: number;
  private readonly fd: number;
  private readonly path: string;
  private readonly tail = new Uint8Array(new ArrayBuffer(1));
  private padding: Uint8Array | null = null;

  /** Made by ParallelWriter.producer() and ParallelWriter.join(). */
  constructor(private readonly d: WriterDescriptor, private readonly sh: Shared, shard: number, private readonly carrier: WriteCarrier, private readonly onClose?: (p: Producer) => void) {
    this.shard = shard;
    this.fd = d.fds[shard];
    this.path = d.paths[shard];
    this.block = d.layout === "padded" ? d.stripeSize : 0;
    this.buf = new Uint8Array(new ArrayBuffer(d.bufferSize));
  }

  /** Bytes buffered, not yet written. */
  get buffered(): number { return this.used; }

  /** One payload, kept whole. Strings are written as UTF-8. */
  write(payload: Uint8Array | string): void { this.put(payload, -1); }

  /** One payload followed by '\n', kept whole (a log line). */
  writeLine(payload: Uint8Array | string): void { this.put(payload, 0x0a); }

  private put(payload: Uint8Array | string, tail: number): void {
    if (this.closed) throw new Error(`ParallelWriter: write to a closed producer (${this.path})`);
    const text = typeof payload === "string";
    const len = text ? Buffer.byteLength(payload) : payload.length;
    const n = len + (tail >= 0 ? 1 : 0);
    // Padded: a payload is buffered only if it fits a block; striped: the buffer.
    if (n > (this.block || this.buf.length)) { this.big(text ? Buffer.from(payload) : payload, tail); return; }
    let at = this.used;
    if (this.block && (at % this.block) + n > this.block) at = roundUp(at, this.block); // never across a block boundary
    if (at + n > this.buf.length) {
      try { this.flush(); } catch (e) { throw this.lostToo(e, n); }
      at = 0;
    } else if (at > this.used) {
      this.buf.fill(this.d.padByte, this.used, at);
      this.padHeld += at - this.used;
    }
    if (text) encoder.encodeInto(payload, this.buf.subarray(at, at + len));
    else this.buf.set(payload, at);
    if (tail >= 0) this.buf[at + len] = tail;
    this.used = at + n;
    this.held++;
  }

  /** A write failed while this call's own payload waited for room: it is lost with the rest, and said so. */
  private lostToo(e: unknown, n: number): unknown {
    if (e instanceof WriteError) {
      e.lost(1, n);
      this.stats.lostPayloads++; this.stats.lostBytes += n;
      this.sh.add(S_LOST_PAYLOADS, 1); this.sh.add(S_LOST_BYTES, n);
    }
    return e;
  }

  /** Writes what is buffered (padded: up to the end of its last block). */
  flush(): void {
    if (this.used === 0) {
      // Only empty payloads held: nothing to write, but they were taken.
      if (this.held) { this.stats.payloads += this.held; this.sh.add(S_PAYLOADS, this.held); this.held = 0; }
      return;
    }
    const len = this.padTo(this.used);
    this.region([this.buf.subarray(0, len)], len);
  }

  /** Padded: fills the buffer from `used` to its block's end; returns the length to write. */
  private padTo(used: number): number {
    if (!this.block) return used;
    const end = roundUp(used, this.block);
    this.buf.fill(this.d.padByte, used, end);
    this.padHeld += end - used;
    return end;
  }

  /** A payload larger than a buffer (padded: a block): one region with what is buffered before it, one pwritev. */
  private big(payload: Uint8Array, tail: number): void {
    const chunks: Uint8Array[] = [];
    let len = 0;
    if (this.used) { len = this.padTo(this.used); chunks.push(this.buf.subarray(0, len)); }
    chunks.push(payload);
    len += payload.length;
    if (tail >= 0) { this.tail[0] = tail; chunks.push(this.tail); len++; }
    this.held++;
    if (this.block && len % this.block) {
      const k = roundUp(len, this.block) - len;
      this.padding ??= new Uint8Array(new ArrayBuffer(this.block)).fill(this.d.padByte);
      chunks.push(this.padding.subarray(0, k));
      this.padHeld += k;
      len += k;
    }
    this.region(chunks, len);
  }

  /** Claims `len` bytes of the file and writes `chunks` there (short writes continue; EINTR retries). */
  private region(chunks: Uint8Array[], len: number): void {
    const payloads = this.held, pad = this.padHeld;
    this.used = 0; this.held = 0; this.padHeld = 0;
    if (Atomics.load(this.sh.i32, I_STATE) !== OPEN) {
      this.lost(payloads, len - pad);
      throw new Error(`ParallelWriter: ${this.path} was closed; ${payloads} payload(s) of ${len - pad} bytes not written`);
    }
    const offset = Number(Atomics.add(this.sh.big, this.shard, BigInt(len)));
    let done = 0;
    while (done < len) {
      const r = this.carrier.pwritev(this.fd, chunks, offset + done);
      if (r === -EINTR) continue;
      if (r <= 0) {
        // Part of the region may be in the file, but not every payload whole: all of them count as lost.
        this.lost(payloads, len - pad);
        this.stats.failedWrites++; this.sh.add(S_FAILED, 1);
        throw new WriteError(r === 0 ? EIO : -r, this.fd, this.path, offset + done, payloads, len - pad);
      }
      done += r;
      for (let k = r; k > 0 && done < len;) { // drop what the kernel took
        if (chunks[0].length <= k) { k -= chunks[0].length; chunks.shift(); }
        else { chunks[0] = chunks[0].subarray(k); k = 0; }
      }
    }
    const s = this.stats;
    s.bytes += len; s.payloads += payloads; s.writes++; s.padBytes += pad;
    this.sh.add(S_BYTES, len); this.sh.add(S_PAYLOADS, payloads); this.sh.add(S_WRITES, 1); this.sh.add(S_PAD, pad);
  }

  private lost(payloads: number, bytes: number): void {
    this.stats.lostPayloads += payloads; this.stats.lostBytes += bytes;
    this.sh.add(S_LOST_PAYLOADS, payloads); this.sh.add(S_LOST_BYTES, bytes);
  }

  /** Flushes and leaves the writer (a shard becomes free again). A failed last write still closes it, and throws. */
  close(): void {
    if (this.closed) return;
    try {
      this.flush();
    } finally {
      this.closed = true;
      if (this.d.layout === "sharded") Atomics.store(this.sh.i32, I_TAKEN + this.shard, 0);
      Atomics.sub(this.sh.i32, I_OPEN, 1);
      this.onClose?.(this);
    }
  }
}

/** Makes a producer of shard `shard` (sharded: the first free one when undefined). */
function makeProducer(d: WriterDescriptor, shard: number | undefined, carrier: WriteCarrier, onClose?: (p: Producer) => void): Producer {
  if (d?.kind !== "wasm-reactor/ParallelWriter") throw new TypeError("ParallelWriter.join: not a writer descriptor (writer.descriptor())");
  const sh = new Shared(d.shared, d.fds.length);
  if (Atomics.load(sh.i32, I_STATE) !== OPEN) throw new Error(`ParallelWriter: ${d.paths[0]} is closed`);
  let s = shard ?? 0;
  if (d.layout === "sharded") {
    if (shard === undefined) {
      for (s = 0; s < d.fds.length && Atomics.compareExchange(sh.i32, I_TAKEN + s, 0, 1) !== 0; s++);
      if (s === d.fds.length) throw new Error(`ParallelWriter: every one of the ${d.fds.length} shards has its producer`);
    } else if (!(Number.isInteger(s) && s >= 0 && s < d.fds.length)) {
      throw new RangeError(`ParallelWriter: shard must be 0..${d.fds.length - 1}, got ${shard}`);
    } else if (Atomics.compareExchange(sh.i32, I_TAKEN + s, 0, 1) !== 0) {
      throw new Error(`ParallelWriter: shard ${s} (${d.paths[s]}) already has a producer (one producer per shard)`);
    }
  } else if (s !== 0) {
    throw new RangeError(`ParallelWriter: the ${d.layout} layout has one file; shard must be 0 or absent, got ${shard}`);
  }
  Atomics.add(sh.i32, I_OPEN, 1);
  return new Producer(d, sh, s, carrier, onClose);
}

export class ParallelWriter {
  readonly layout: WriterLayout;
  readonly sizing: WriterSizing;
  readonly paths: string[];
  private readonly desc: WriterDescriptor;
  private readonly sh: Shared;
  private readonly ownFds: boolean;
  private readonly carrier: WriteCarrier;
  private readonly mine = new Set<Producer>();
  private readonly fsyncAtClose: boolean;
  private closed = false;

  constructor(opts: ParallelWriterOptions) {
    const layout = opts.layout ?? "striped";
    if (!WRITER_LAYOUTS.includes(layout)) throw new TypeError(`ParallelWriter: layout must be ${WRITER_LAYOUTS.join(", ")}; got ${JSON.stringify(layout)}`);
    const files = layout === "sharded" ? opts.shards ?? opts.fds?.length ?? 1 : 1;
    if (!(Number.isInteger(files) && files >= 1 && files <= 4096)) throw new RangeError(`ParallelWriter: shards must be 1..4096, got ${opts.shards}`);
    if (opts.fds && opts.fds.length !== files) throw new RangeError(`ParallelWriter: ${opts.fds.length} fds for ${files} file(s)`);
    const pad = opts.padByte ?? 0x0a;
    if (!(Number.isInteger(pad) && pad >= 0 && pad <= 255)) throw new RangeError(`ParallelWriter: padByte must be 0..255, got ${pad}`);
    this.layout = layout;
    this.carrier = opts.carrier ?? new LibcCarrier();
    this.fsyncAtClose = Boolean(opts.fsync);
    let fds: number[];
    if (opts.fds) {
      fds = opts.fds.slice();
      this.paths = fds.map((fd) => `fd ${fd}`);
      this.ownFds = false;
    } else {
      if (typeof opts.path !== "string" || opts.path === "") throw new TypeError("ParallelWriter: give a path (or fds)");
      const pattern = opts.shardName ?? "{path}.{shard}";
      if (layout === "sharded" && files > 1 && !pattern.includes("{shard}")) throw new TypeError(`ParallelWriter: shardName ${JSON.stringify(pattern)} has no {shard}: every shard would be one file`);
      this.paths = layout === "sharded"
        ? Array.from({ length: files }, (_, i) => pattern.replaceAll("{path}", opts.path!).replaceAll("{shard}", String(i)))
        : [opts.path];
      // libuv opens with O_CLOEXEC itself.
      const flags = constants.O_WRONLY | constants.O_CREAT
        | (!opts.append ? constants.O_TRUNC : layout === "padded" ? 0 : constants.O_APPEND);
      fds = [];
      try {
        for (const p of this.paths) fds.push(openSync(p, flags, 0o644));
      } catch (e) {
        for (const fd of fds) closeSync(fd);
        const err = e as NodeJS.ErrnoException;
        throw err.errno ? new SysError(`open ${this.paths[fds.length]}`, -err.errno) : e;
      }
      this.ownFds = true;
    }
    try {
      this.sizing = writerSizing(opts.fileSystem ?? probeFileSystem(fds[0]), { stripeSize: opts.stripeSize, bufferSize: opts.bufferSize, layout });
      const shared = new SharedArrayBuffer(Shared.bytes(files));
      this.sh = new Shared(shared, files);
      this.desc = { kind: "wasm-reactor/ParallelWriter", layout, fds, paths: this.paths, stripeSize: this.sizing.stripeSize, bufferSize: this.sizing.bufferSize, padByte: pad, shared };
      if (opts.append) fds.forEach((fd, i) => this.startAtEnd(fd, i));
    } catch (e) {
      if (this.ownFds) for (const fd of fds) closeSync(fd);
      throw e;
    }
  }

  /** Append: the file's regions start after what it holds (padded: at the next block, the gap padded). */
  private startAtEnd(fd: number, i: number): void {
    const size = fstatSync(fd).size;
    const start = this.layout === "padded" ? roundUp(size, this.sizing.stripeSize) : size;
    if (start > size) {
      const gap = new Uint8Array(start - size).fill(this.desc.padByte);
      const r = this.carrier.pwritev(fd, [gap], size);
      if (r !== gap.length) throw new SysError(`pwritev ${this.paths[i]} (padding to a block)`, r < 0 ? -r : EIO, fd);
    }
    this.sh.big[i] = BigInt(start);
  }

  /** Plain data for producers in other threads: pass it to ParallelWriter.join() there. */
  descriptor(): WriterDescriptor { return this.desc; }

  /** A producer in this thread (sharded: of `shard`, else the first free shard). close() closes it. */
  producer(shard?: number): Producer {
    if (this.closed) throw new Error(`ParallelWriter: ${this.paths[0]} is closed`);
    const p = makeProducer(this.desc, shard, this.carrier, (q) => this.mine.delete(q));
    this.mine.add(p);
    return p;
  }

  /** In any thread: a producer of the writer `d` describes (sharded: of `shard`, else the first free one). */
  static join(d: WriterDescriptor, opts: { shard?: number; carrier?: WriteCarrier } = {}): Producer {
    return makeProducer(d, opts.shard, opts.carrier ?? new LibcCarrier());
  }

  /** Totals over every producer in every thread. */
  stats(): WriterStats & { openProducers: number } {
    const s = this.sh;
    return {
      bytes: s.get(S_BYTES), payloads: s.get(S_PAYLOADS), writes: s.get(S_WRITES), padBytes: s.get(S_PAD),
      lostBytes: s.get(S_LOST_BYTES), lostPayloads: s.get(S_LOST_PAYLOADS), failedWrites: s.get(S_FAILED),
      openProducers: Atomics.load(s.i32, I_OPEN),
    };
  }

  /**
   * Closes this thread's producers (flushing them), then the files it opened
   * (fsync first if asked). Producers of other threads must have closed:
   * otherwise this throws and closes nothing more, unless `force` (their
   * later writes then fail and count as lost). The first failed flush is
   * thrown after everything is closed. Returns the totals.
   */
  close(opts: { force?: boolean } = {}): WriterStats & { openProducers: number } {
    if (this.closed) return this.stats();
    let failure: unknown = null;
    for (const p of [...this.mine]) { try { p.close(); } catch (e) { failure ??= e; } }
    const open = Atomics.load(this.sh.i32, I_OPEN);
    if (open > 0 && !opts.force) {
      throw new Error(`ParallelWriter: ${open} producer(s) in other threads are still open on ${this.paths[0]}; close them first (or close({ force: true }))`);
    }
    Atomics.store(this.sh.i32, I_STATE, CLOSED);
    this.closed = true;
    for (const fd of this.desc.fds) {
      try { if (this.fsyncAtClose) fsyncSync(fd); } catch (e) { failure ??= e; }
      if (this.ownFds) closeSync(fd);
    }
    if (failure) throw failure;
    return this.stats();
  }
}
