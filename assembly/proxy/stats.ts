// The per-upstream stats export: one UPSTAT_SIZE record per upstream (abi.ts
// UPSTAT_*), so the host reads fields by the shared offsets and nothing here
// is restated on its side.
import { UPSTREAMS_MAX, UPSTAT_SIZE } from "../abi";
import { now } from "../reactor/ctl";
import { upstreamsStatsWrite } from "./upstreams";

const buffer: usize = memory.data(UPSTREAMS_MAX * UPSTAT_SIZE, 16);

/** A static area with room for every upstream's record (UPSTREAMS_MAX x UPSTAT_SIZE bytes). */
export function proxyStatsBuffer(): usize { return buffer; }

/** Writes the records at ptr (cap bytes of room), state as of the loop time (CTL_NOW); -> records written. */
export function proxyStatsWrite(ptr: usize, cap: i32): i32 { return upstreamsStatsWrite(ptr, cap, now()); }
