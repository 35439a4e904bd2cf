// Chunked transfer-coding decoder (RFC 9112 7.1), incremental: any split of
// the input gives the same result. No allocation; state in a caller record.
import { HT, LF, CR, SP, SEMI, MAX_SAFE, isToken, isOws } from "./bytes";

// State record, CHUNK_SIZE bytes; zero it with resetChunked().
export const CHUNK_SIZE = 32;
export const CHUNK_STATE = 0;          // i32, CS_* below
export const CHUNK_LINE = 4;           // i32, bytes of the current chunk-size line
export const CHUNK_REMAINING = 8;      // u64, size being read, then data bytes left in the chunk
export const CHUNK_TOTAL = 16;         // f64, data bytes so far (against maxBody)
export const CHUNK_TRAILER = 24;       // i32, trailer-section bytes so far
export const CHUNK_LINE_MAX = 4096;    // longest chunk-size line (with extensions) -> else 400
export const CHUNK_TRAILER_MAX = 16384; // largest trailer section -> else 431

const CS_SIZE_START = 0;  // first hex digit of chunk-size
const CS_SIZE = 1;        // more hex digits, ";", BWS or CR
const CS_SIZE_WS = 2;     // BWS after the size: only ";" may follow
const CS_EXT = 3;         // chunk-ext, skipped up to CR
const CS_SIZE_LF = 4;
const CS_DATA = 5;
const CS_DATA_CR = 6;
const CS_DATA_LF = 7;
const CS_TRAILER_START = 8; // start of a trailer line, or the final CRLF
const CS_TRAILER = 9;
const CS_TRAILER_LF = 10;
const CS_FINAL_LF = 11;
const CS_DONE = 12;

export function resetChunked(st: usize): void {
  const z = i64x2.splat(0);
  v128.store(st, z, 0);
  v128.store(st, z, 16);
}

export function chunkedDone(st: usize): bool { return load<i32>(st, CHUNK_STATE) == CS_DONE; }

/** Data bytes left in the current chunk; 0 when the decoder is not inside chunk data (for de-chunking). */
export function chunkedDataLeft(st: usize): f64 {
  return load<i32>(st, CHUNK_STATE) == CS_DATA ? <f64>load<u64>(st, CHUNK_REMAINING) : 0;
}

@inline function hexValue(c: u32): u32 {
  const d = c - 0x30;
  if (d <= 9) return d;
  const h = (c | 0x20) - 0x61;
  return h <= 5 ? h + 10 : 0xFF;
}

// Consumes what it can of buf[0..len) and returns the count, or minus a
// status. Stops right after the final CRLF: what follows is the next
// pipelined request. Every variable lives in the state record between
// calls, so any split of the input gives the same result.
export function decodeChunked(buf: usize, len: i32, st: usize, maxBody: f64): i32 {
  let state = load<i32>(st, CHUNK_STATE);
  let line = load<i32>(st, CHUNK_LINE);
  let size = load<u64>(st, CHUNK_REMAINING);
  let total = load<f64>(st, CHUNK_TOTAL);
  let trailer = load<i32>(st, CHUNK_TRAILER);
  let i = 0;
  while (i < len && state != CS_DONE) {
    if (state == CS_DATA) {
      const n = min(size, <u64>(len - i));
      i += <i32>n;
      size -= n;
      if (size == 0) state = CS_DATA_CR;
      continue;
    }
    const c = <u32>load<u8>(buf + <usize>i);
    i++;
    if (state <= CS_SIZE_LF && ++line > CHUNK_LINE_MAX) return -400;
    switch (state) {
      case CS_SIZE_START: {
        const h = hexValue(c);
        if (h > 15) return -400;
        size = h;
        state = CS_SIZE;
        break;
      }
      case CS_SIZE: {
        const h = hexValue(c);
        if (h <= 15) {
          size = (size << 4) | h;
          if (size > MAX_SAFE) return -400;
        } else if (c == CR) state = CS_SIZE_LF;
        else if (c == SEMI) state = CS_EXT;
        else if (isOws(c)) state = CS_SIZE_WS;
        else return -400;
        break;
      }
      case CS_SIZE_WS: {
        if (c == SEMI) state = CS_EXT;
        else if (!isOws(c)) return -400;
        break;
      }
      case CS_EXT: {
        if (c == CR) state = CS_SIZE_LF;
        else if ((c < SP && c != HT) || c == 0x7F) return -400;
        break;
      }
      case CS_SIZE_LF: {
        if (c != LF) return -400;
        line = 0;
        if (size == 0) {
          state = CS_TRAILER_START;
        } else {
          total += <f64>size;
          if (total > maxBody) return -413;
          state = CS_DATA;
        }
        break;
      }
      case CS_DATA_CR: if (c != CR) return -400; state = CS_DATA_LF; break; // the one byte allowed here
      case CS_DATA_LF: if (c != LF) return -400; state = CS_SIZE_START; break; // the one byte allowed here
      case CS_TRAILER_START: {
        if (c == CR) { state = CS_FINAL_LF; break; }
        if (!isToken(c)) return -400;                   // obs-fold, bare LF, junk
        if (++trailer > CHUNK_TRAILER_MAX) return -431;
        state = CS_TRAILER;
        break;
      }
      case CS_TRAILER: {
        if (++trailer > CHUNK_TRAILER_MAX) return -431;
        if (c == CR) state = CS_TRAILER_LF;
        else if ((c < SP && c != HT) || c == 0x7F) return -400;
        break;
      }
      case CS_TRAILER_LF: if (c != LF) return -400; state = CS_TRAILER_START; break; // the one byte allowed here
      case CS_FINAL_LF: if (c != LF) return -400; state = CS_DONE; break; // the one byte allowed here
    }
  }
  store<i32>(st, state, CHUNK_STATE);
  store<i32>(st, line, CHUNK_LINE);
  store<u64>(st, size, CHUNK_REMAINING);
  store<f64>(st, total, CHUNK_TOTAL);
  store<i32>(st, trailer, CHUNK_TRAILER);
  return i;
}
