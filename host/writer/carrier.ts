// The seam between a ParallelWriter and the kernel: one positional,
// vectored write. Today a synchronous pwritev(2) through koffi; the `io` API
// (host/io/) can carry the same call later without the writer changing.
import { libc, errno, addressOf } from "../libc.ts";

export interface WriteCarrier {
  /**
   * One pwritev(2): the bytes of `chunks`, in order, at `offset` of `fd`.
   * Returns the bytes the kernel took (possibly fewer than all: the writer
   * writes the rest) or -errno. Called with at most a few chunks.
   */
  pwritev(fd: number, chunks: readonly Uint8Array[], offset: number): number;
}

/** Native iovec: u64 base, u64 length (x86-64 and arm64). */
const IOVEC_SIZE = 16;

/**
 * pwritev through libc. The iovec table is a buffer of its own, passed by
 * address; each chunk by the address of its bytes (an ArrayBuffer's
 * backing store does not move; `.buffer` moves a small on-heap typed array's
 * bytes off the heap for good before the address is taken).
 */
export class LibcCarrier implements WriteCarrier {
  private table = new Uint8Array(new ArrayBuffer(8 * IOVEC_SIZE));
  private view = new DataView(this.table.buffer);
  private tableAt = addressOf(this.table.buffer);

  pwritev(fd: number, chunks: readonly Uint8Array[], offset: number): number {
    if (chunks.length * IOVEC_SIZE > this.table.length) {
      this.table = new Uint8Array(new ArrayBuffer(chunks.length * IOVEC_SIZE));
      this.view = new DataView(this.table.buffer);
      this.tableAt = addressOf(this.table.buffer);
    }
    const v = this.view;
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i];
      v.setBigUint64(i * IOVEC_SIZE, BigInt(addressOf(c.buffer as ArrayBuffer) + c.byteOffset), true);
      v.setBigUint64(i * IOVEC_SIZE + 8, BigInt(c.length), true);
    }
    const r = libc.pwritev(fd, this.tableAt, chunks.length, offset);
    return r < 0 ? -errno() : r;
  }
}
