// The ABI constants of assembly/abi.ts for the plain-JS benchmarks. abi.ts
// holds nothing but `export const NAME = <integer expression>;` lines, so it
// is valid JavaScript as it stands: it is imported through a data: URL and the
// offsets stay defined in one place.
import { readFileSync } from "node:fs";

const source = readFileSync(new URL("../assembly/abi.ts", import.meta.url), "utf8");
const abi = await import(`data:text/javascript,${encodeURIComponent(source)}`);

export default abi;
