// The fuzzer's one writer of event records (abi.ts layout), so the kernel
// model never restates it.
import * as abi from "../../assembly/abi.ts";

/** Writes event record i of the area at `base`: EV_* bits, fd, generation. */
export function writeEvent(dv: DataView, base: number, i: number, bits: number, fd: number, gen: number): void {
  const e = base + i * abi.EVENT_SIZE;
  dv.setInt32(e + abi.EVENT_BITS, bits, true);
  dv.setInt32(e + abi.EVENT_FD, fd, true);
  dv.setInt32(e + abi.EVENT_GEN, gen, true);
}
