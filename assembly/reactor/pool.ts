// Buffer pools. The stub runtime never frees, so every buffer is carved once
// from the heap and then lives on a free list forever: steady state allocates
// nothing. A free buffer's first 4 bytes link to the next free one.
//
// Receive buffers: one size (CFG_READ_BUF, default 32 KiB + 16 bytes of SIMD
// padding). A connection holds one only while it has unprocessed input (a
// partial request, pipelined requests); idle keep-alive connections hold none.
//
// Write rings: power-of-two size classes from 4 KiB up to the write-buffer
// limit. A connection holds one only while it has pending output.

export const SIMD_PAD: i32 = 16;
export let readBufSize: i32 = 32768;
let readFree: usize = 0;
export let readHeld: i32 = 0;
export let readCarved: i32 = 0;

export function poolInit(readSize: i32): void {
  readBufSize = readSize;
}

export function readBufTake(): usize {
  let b = readFree;
  if (b != 0) {
    readFree = load<usize>(b);
  } else {
    b = heap.alloc(<usize>(readBufSize + SIMD_PAD));
    readCarved++;
  }
  readHeld++;
  return b;
}

export function readBufGive(b: usize): void {
  store<usize>(b, readFree);
  readFree = b;
  readHeld--;
}

// Write rings: class k holds 4096 << k bytes.
export const RING_MIN_SHIFT: i32 = 12;
const RING_CLASSES: i32 = 16;
const ringFree: usize = memory.data(RING_CLASSES * 4, 4);
export let ringBytesHeld: i32 = 0;

@inline export function ringClassFor(size: i32): i32 {
  // smallest k with (4096 << k) >= size
  if (size <= 4096) return 0;
  return 32 - clz<i32>(size - 1) - RING_MIN_SHIFT;
}

export function ringTake(cls: i32): usize {
  const slot = ringFree + <usize>(cls * 4);
  let b = load<usize>(slot);
  if (b != 0) {
    store<usize>(slot, load<usize>(b));
  } else {
    b = heap.alloc(<usize>(4096 << cls) + <usize>SIMD_PAD);
  }
  ringBytesHeld += 4096 << cls;
  return b;
}

export function ringGive(b: usize, cls: i32): void {
  const slot = ringFree + <usize>(cls * 4);
  store<usize>(b, load<usize>(slot));
  store<usize>(slot, b);
  ringBytesHeld -= 4096 << cls;
}
