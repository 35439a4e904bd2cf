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
