// The subset of the WebAssembly JS API the host uses (TypeScript ships it only
// in lib.dom, which does not belong in a Node program).
declare namespace WebAssembly {
  class Module { constructor(bytes: BufferSource); }
  class Instance { constructor(module: Module, imports?: Record<string, Record<string, unknown>>); readonly exports: Record<string, unknown>; }
  class Memory { readonly buffer: ArrayBuffer | SharedArrayBuffer; grow(pages: number): number; }
  class RuntimeError extends Error {}
}
type BufferSource = ArrayBufferView | ArrayBuffer;
