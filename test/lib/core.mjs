// Loads the core WebAssembly module for tests and benchmarks, with no OS:
// the instance's exports plus helpers to move bytes in and out of memory.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const defaultPath = fileURLToPath(new URL("../../build/core.wasm", import.meta.url));

export function loadCore(path = process.env.CORE_WASM || defaultPath) {
  const module = new WebAssembly.Module(readFileSync(path));
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(msg, file, line, col) { throw new Error(`core abort at ${line}:${col}`); },
      trace() {},
      seed() { return 42; },
    },
  });
  const x = instance.exports;
  const u8 = () => new Uint8Array(x.memory.buffer);
  return {
    x,
    memory: x.memory,
    u8,
    dv: () => new DataView(x.memory.buffer),
    /** Write a string or bytes at ptr; returns byte length. */
    put(ptr, data) {
      const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
      u8().set(bytes, ptr);
      return bytes.length;
    },
    get(ptr, len) { return Buffer.from(u8().slice(ptr, ptr + len)); },
    str(ptr, len) { return Buffer.from(u8().subarray(ptr, ptr + len)).toString("latin1"); },
  };
}
