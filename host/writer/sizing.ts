// How big a ParallelWriter's regions and buffers are, from the file system
// the output lives on (seed 004: "Sizing is Lustre-aware").
//
//   Lustre (statfs f_type LUSTRE_SUPER_MAGIC 0x0BD00BD0): the stripe is the
//     file's own Lustre stripe size, read from its layout (the `lustre.lov`
//     extended attribute: lov_user_md v1/v3, or the first component of a
//     composite/PFL layout); 1 MiB (Lustre's default) when it cannot be read.
//     A region of one stripe then lands on one OST object.
//   anything else: 1 MiB rounded up to a multiple of f_bsize (the block the
//     file system prefers for I/O), so region boundaries are block boundaries.
//   The buffer of each producer is one stripe (one full buffer = one region
//     = one pwritev). Explicit `stripeSize` / `bufferSize` options win.
//
// Written from Lustre's uapi headers (lustre_user.h); not run on Lustre here:
// the Lustre path is tested with an injected f_type and layout bytes.
import { libc, errno, SysError } from "../libc.ts";

export const LUSTRE_SUPER_MAGIC = 0x0bd00bd0;
/** Stripe size when nothing says otherwise (also Lustre's own default). */
export const DEFAULT_STRIPE_SIZE = 1 << 20;
/** Largest stripe or buffer: a pwritev result must fit the binding's int. */
export const MAX_REGION_SIZE = 1 << 30;

/** What the writer needs to know of a file system; tests inject it. */
export interface FileSystemInfo {
  /** statfs f_type (the file system's magic number). */
  type: number;
  /** statfs f_bsize: the preferred I/O block size. */
  blockSize: number;
  /** Lustre only: the file's stripe size, or null when its layout could not be read. */
  lustreStripeSize?: number | null;
}

export interface WriterSizing {
  fileSystem: "lustre" | "generic";
  type: number;
  blockSize: number;
  /** Region size (striped), block (padded): what a full buffer covers. */
  stripeSize: number;
  /** Bytes each producer buffers before it writes. */
  bufferSize: number;
  /** Where stripeSize came from: "option", "lustre layout", "lustre default" or "default". */
  stripeFrom: string;
}

// struct statfs on 64-bit Linux (x86-64 and arm64 alike): f_type i64 at +0, f_bsize i64 at +8; 120 bytes.
const STATFS_SIZE = 120;
const LOV_MAGIC_V1 = 0x0bd10bd0, LOV_MAGIC_V3 = 0x0bd30bd0;
const LOV_MAGIC_COMP_V1 = 0x0bd60bd0;
/** lov_mds_md_v1/v3: magic u32, pattern u32, ost_id (16 bytes), then stripe_size u32. */
const LMM_STRIPE_SIZE = 24;
/** lov_comp_md_v1: a 32-byte header, then 48-byte entries whose lcme_offset (u32 at +24) locates the component's lov_mds_md. */
const LCM_HEADER = 32, LCME_OFFSET = 24;

/** The stripe size in a Lustre layout (`lustre.lov` bytes), or null if these are not one this code reads. */
export function lustreStripeFromLayout(b: Uint8Array): number | null {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const at = (o: number) => (o + 4 <= b.length ? dv.getUint32(o, true) : -1);
  let lmm = 0;
  if (at(0) === LOV_MAGIC_COMP_V1) {
    lmm = at(LCM_HEADER + LCME_OFFSET); // the first component: where the file starts
    if (lmm < 0) return null;
  }
  const magic = at(lmm);
  if (magic !== LOV_MAGIC_V1 && magic !== LOV_MAGIC_V3) return null;
  const size = at(lmm + LMM_STRIPE_SIZE);
  return size > 0 ? size : null;
}

/** fstatfs(2) of `fd`, and on Lustre the file's stripe size (null when its layout is unreadable). */
export function probeFileSystem(fd: number): FileSystemInfo {
  const st = Buffer.alloc(STATFS_SIZE);
  if (libc.fstatfs(fd, st) < 0) throw new SysError("fstatfs", errno(), fd);
  const type = Number(st.readBigInt64LE(0) & 0xffffffffn);
  const blockSize = Number(st.readBigInt64LE(8));
  if (type !== LUSTRE_SUPER_MAGIC) return { type, blockSize };
  const lov = Buffer.alloc(4096);
  const n = libc.fgetxattr(fd, "lustre.lov", lov, lov.length);
  return { type, blockSize, lustreStripeSize: n > 0 ? lustreStripeFromLayout(lov.subarray(0, n)) : null };
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

function checkSize(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= 1 && v <= MAX_REGION_SIZE)) {
    throw new RangeError(`ParallelWriter: ${name} must be a whole number of bytes, 1..${MAX_REGION_SIZE}, got ${v}`);
  }
}

/**
 * Stripe and buffer sizes for `fs`; explicit options override. The padded
 * layout needs a buffer of whole stripes (it pads each block it fills).
 */
export function writerSizing(fs: FileSystemInfo, opts: { stripeSize?: number; bufferSize?: number; layout?: string } = {}): WriterSizing {
  checkSize("stripeSize", opts.stripeSize);
  checkSize("bufferSize", opts.bufferSize);
  const lustre = fs.type === LUSTRE_SUPER_MAGIC;
  const block = fs.blockSize > 0 ? fs.blockSize : 4096;
  let stripeSize: number, stripeFrom: string;
  if (opts.stripeSize !== undefined) { stripeSize = opts.stripeSize; stripeFrom = "option"; }
  else if (lustre && fs.lustreStripeSize) { stripeSize = fs.lustreStripeSize; stripeFrom = "lustre layout"; }
  else if (lustre) { stripeSize = DEFAULT_STRIPE_SIZE; stripeFrom = "lustre default"; }
  else { stripeSize = roundUp(DEFAULT_STRIPE_SIZE, block); stripeFrom = "default"; }
  stripeSize = Math.min(stripeSize, MAX_REGION_SIZE);
  const bufferSize = opts.bufferSize ?? stripeSize;
  if (opts.layout === "padded" && bufferSize % stripeSize !== 0) {
    throw new RangeError(`ParallelWriter: the padded layout needs a bufferSize of whole stripes (${stripeSize} bytes), got ${bufferSize}`);
  }
  return { fileSystem: lustre ? "lustre" : "generic", type: fs.type, blockSize: block, stripeSize, bufferSize, stripeFrom };
}
