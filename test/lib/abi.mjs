// The shared ABI (assembly/abi.ts) for plain-JS tests, without a build step
// and without the host (which would load koffi and libc).
//
// abi.ts holds nothing but `export const NAME = <integer expression>;` lines,
// so it is already valid JavaScript: it is imported as-is through a data: URL.
// The offsets stay defined in exactly one place.
import { readFileSync } from "node:fs";

const source = readFileSync(new URL("../../assembly/abi.ts", import.meta.url), "utf8");
const abi = await import(`data:text/javascript,${encodeURIComponent(source)}`);

export default abi;

/** Reverse lookup for readable logs and failure messages: 4 -> "OP_WRITE". */
export function opName(op) {
  for (const [k, v] of Object.entries(abi)) if (k.startsWith("OP_") && k !== "OP_COUNT" && v === op) return k;
  return `OP_${op}`;
}

/**
 * Writes event records into the core's event area at `base` (a DataView over
 * its memory), as a backend's wait() does: items {fd, events (EV_* bits),
 * gen}. The one place tests restate nothing of the record's layout.
 */
export function writeEvents(dv, base, batch) {
  batch.forEach(({ fd, events, gen }, k) => {
    const e = base + k * abi.EVENT_SIZE;
    dv.setInt32(e + abi.EVENT_BITS, events, true);
    dv.setInt32(e + abi.EVENT_FD, fd, true);
    dv.setInt32(e + abi.EVENT_GEN, gen, true);
  });
  return batch.length;
}
