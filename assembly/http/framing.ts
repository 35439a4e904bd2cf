// Body framing for a proxy that streams: where does this message's body end?
// The proxy forwards a chunked body as chunked and a Content-Length body as
// is, so it never rewrites body bytes; it only needs to know how many of the
// bytes it holds belong to the message (the rest are the next message) and to
// refuse malformed framing. The chunk grammar is http/chunked.ts's decoder,
// which already consumes exactly up to the final CRLF; this file adds the
// Content-Length countdown and the close-delimited case around it.
//
// Incremental: every variable lives in the caller's record, so any split of
// the input gives the same result. No allocation.
import { CHUNK_SIZE, resetChunked, decodeChunked, chunkedDone, chunkedDataLeft } from "./chunked";
import { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE } from "./response";

// ---- BODYST record ---------------------------------------------------------
// Size BODYST_SIZE bytes; set up with bodyStart() for each message.
export const BODYST_SIZE = 24 + CHUNK_SIZE;  // 56
export const BODYST_MODE = 0;     // i32, BODY_* (http/response.ts)
export const BODYST_OUT = 4;      // i32, data bytes the last bodyDechunk call left at the start of its buffer
export const BODYST_LEFT = 8;     // f64, Content-Length bytes still to come
export const BODYST_MAX = 16;     // f64, largest chunked body accepted (decodeChunked's maxBody)
export const BODYST_CHUNK = 24;   // the chunked decoder's record (CHUNK_SIZE bytes)

/** Starts a message body: `mode` BODY_*, `length` the Content-Length (BODY_LENGTH), `maxBody` the chunked limit. */
export function bodyStart(st: usize, mode: i32, length: f64, maxBody: f64): void {
  store<i32>(st, mode, BODYST_MODE);
  store<i32>(st, 0, 4);
  store<f64>(st, mode == BODY_LENGTH ? length : 0, BODYST_LEFT);
  store<f64>(st, maxBody, BODYST_MAX);
  resetChunked(st + BODYST_CHUNK);
}

/**
 * How many of buf[0..len) belong to the body (forward them unchanged), or
 * minus a status when the framing is malformed (the chunked decoder's -400,
 * -413 over maxBody, -431 oversize trailers; a proxy reading a response
 * answers 502 for any of them). Bytes past the returned count are the next
 * message. A close-delimited body takes everything.
 */
export function bodyFeed(st: usize, buf: usize, len: i32): i32 {
  const mode = load<i32>(st, BODYST_MODE);
  if (mode == BODY_CHUNKED) return decodeChunked(buf, len, st + BODYST_CHUNK, load<f64>(st, BODYST_MAX));
  if (mode == BODY_LENGTH) {
    const left = load<f64>(st, BODYST_LEFT);
    const n = <f64>len >= left ? <i32>left : len;
    store<f64>(st, left - <f64>n, BODYST_LEFT);
    return n;
  }
  if (mode == BODY_CLOSE) return len;
  return 0;
}

/**
 * For a client that cannot take chunked (HTTP/1.0): consumes buf[0..len)
 * like bodyFeed on a chunked body, and moves the chunk data it held to
 * buf[0..BODYST_OUT) in place (data only moves towards the start), dropping
 * sizes, extensions and trailers (RFC 9112 7.1.3 lets a recipient that
 * removes the coding discard trailer fields). The chunk grammar stays the
 * decoder's: framing bytes go through it one at a time (a few per chunk),
 * data bytes in one call per run.
 */
export function bodyDechunk(st: usize, buf: usize, len: i32): i32 {
  const ch = st + BODYST_CHUNK;
  const maxBody = load<f64>(st, BODYST_MAX);
  let i = 0, out = 0;
  while (i < len && !chunkedDone(ch)) {
    const left = chunkedDataLeft(ch);
    if (left > 0) {
      const n = <f64>(len - i) < left ? len - i : <i32>left;
      decodeChunked(buf + <usize>i, n, ch, maxBody);   // data: consumes all n, cannot fail
      memory.copy(buf + <usize>out, buf + <usize>i, <usize>n);
      out += n;
      i += n;
      continue;
    }
    const r = decodeChunked(buf + <usize>i, 1, ch, maxBody);
    if (r < 0) { store<i32>(st, out, BODYST_OUT); return r; }
    i += r;
  }
  store<i32>(st, out, BODYST_OUT);
  return i;
}

/** The body is complete (never true for a close-delimited body: only the close ends it). */
export function bodyDone(st: usize): bool {
  const mode = load<i32>(st, BODYST_MODE);
  if (mode == BODY_CHUNKED) return chunkedDone(st + BODYST_CHUNK);
  if (mode == BODY_LENGTH) return load<f64>(st, BODYST_LEFT) <= 0;
  return mode == BODY_NONE;
}

/**
 * The sender closed: is the message complete? True for a close-delimited
 * body and a finished one; false means truncated (RFC 9112 8: an incomplete
 * message; a proxy must not present it as complete, so it closes its client
 * connection without terminating the framing).
 */
export function bodyEof(st: usize): bool {
  return load<i32>(st, BODYST_MODE) == BODY_CLOSE || bodyDone(st);
}
