// Buffer pools. The stub runtime never frees, so every buffer is carved once
// from the heap and then lives on a free list forever: steady state allocates
// nothing. A free buffer's first 4 bytes link to the next free one.
//
// Receive buffers: 4 KiB for a first read, the configured size (CFG_READ_BUF,
// default 32 KiB) when more is needed, each with 16 bytes of SIMD padding. A
// connection holds one only while it has unprocessed input (a partial
// request, pipelined requests); idle keep-alive connections hold none.
//
// Write rings: power-of-two size classes from 4 KiB up to the write-buffer
// limit. A connection holds one only while it has pending output.

export const SIMD_PAD: i32 = 16;
/** Receive buffers come in two sizes: SMALL for a first read (most request
 *  heads fit), and the configured large size (CFG_READ_BUF, default 32 KiB)
 *  when they do not, or for bulk protocols. nginx does the same with
 *  client_header_buffer_size and large_client_header_buffers: it keeps a
 *  connection ramp-up from carving megabytes that stay resident. */
export const READ_SMALL: i32 = 4096;
export let readBufSize: i32 = 32768;
let readFreeSmall: usize = 0;
let readFreeLarge: usize = 0;
export let readHeld: i32 = 0;
export let readCarved: i32 = 0;

export function poolInit(readSize: i32): void {
  readBufSize = max(readSize, READ_SMALL);
}

/**
 * A receive buffer of at least `size` bytes (READ_SMALL or readBufSize), with
 * SIMD_PAD readable bytes after it. Its capacity is stored in the 4 bytes
 * before it (readBufCap).
 */
export function readBufTake(size: i32): usize {
  const small = size <= READ_SMALL;
  let b = small ? readFreeSmall : readFreeLarge;
  if (b != 0) {
    if (small) readFreeSmall = load<usize>(b); else readFreeLarge = load<usize>(b);
  } else {
    const cap = small ? READ_SMALL : readBufSize;
    b = heap.alloc(<usize>(16 + cap + SIMD_PAD)) + 16;
    store<i32>(b - 4, cap);
    readCarved++;
  }
  readHeld++;
  return b;
}

@inline export function readBufCap(b: usize): i32 { return load<i32>(b - 4); }

export function readBufGive(b: usize): void {
  if (readBufCap(b) == READ_SMALL) { store<usize>(b, readFreeSmall); readFreeSmall = b; }
  else { store<usize>(b, readFreeLarge); readFreeLarge = b; }
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
