// HTTP, shared by its parts (http.ts: the connection state machine;
// httpfiles.ts: static files; httpresponse.ts: response formatting): the
// protocol's fields in the connection record, its states, its options and
// the scratch areas one request at a time uses. Options are written here
// only (httpConfigure); the other parts read them.
import {
  CFG_IDLE_TIMEOUT, CFG_HEADER_TIMEOUT, CFG_MAX_LINE, CFG_MAX_HEADER, CFG_MAX_HEADERS, CFG_MAX_BODY, CFG_ACCESS_LOG,
  CFG_LISTING, CFG_MAX_FDS, CFG_CORS, CFG_PRECOMPRESSED, CONN_SIZE, C_PROTO_AREA,
} from "../abi";
import { ctlI32 } from "../reactor/ctl";
import { readBufSize } from "../reactor/pool";
import { accessLogInit } from "../http/accesslog";
import { REQ_SIZE } from "../http/parser";

// states (C_STATE)
export const HS_IDLE = 1;    // between requests, no bytes of the next one yet
export const HS_HEAD = 2;    // reading a request head
export const HS_BODY = 3;    // discarding a request body
export const HS_WAIT = 4;    // waiting for the file cache (open in flight)
export const HS_WRITE = 5;   // writing a response
export const HS_LINGER = 6;  // error sent, write side shut: drain input, then close

// per-connection fields in the protocol area
export const H_SCANNED = C_PROTO_AREA;          // i32 parser resume point
export const H_FLAGS = C_PROTO_AREA + 4;        // i32 HX_*
export const H_BODY_LEFT = C_PROTO_AREA + 8;    // f64 Content-Length bytes still to discard
export const H_CHUNK = C_PROTO_AREA + 16;       // CHUNK_SIZE bytes: chunked decoder state
export const H_ENTRY = C_PROTO_AREA + 48;       // i32 file-cache entry + 1 held by the response
export const H_HEAD_END = C_PROTO_AREA + 52;    // i32 length of the current request head
export const H_STATUS = C_PROTO_AREA + 56;      // i32 status of the current response (access log)
export const H_WAIT_NEXT = C_PROTO_AREA + 60;   // i32 waiter chain (fd + 1)
export const H_SENT = C_PROTO_AREA + 64;        // f64 body bytes of the current response (access log)
export const H_BODY_DONE = C_PROTO_AREA + 72;   // i32 body bytes already consumed after the head
export const H_LINE_START = C_PROTO_AREA + 76;  // i32 parser phase-1 state: leading empty line skipped
export const H_LINE_END = C_PROTO_AREA + 80;    // i32 parser phase-1 state: end of the request line
export const H_LIST_BUF = C_PROTO_AREA + 84;    // i32 directory-listing buffer held by the response (0: none)
export const H_MULTI = C_PROTO_AREA + 88;       // i32 multipart/byteranges state held by the response (0: none)
export const H_WAIT_ENTRY = C_PROTO_AREA + 92;  // i32 file-cache entry + 1 whose waiter chain holds this connection (0: none)
export const H_START = C_PROTO_AREA + 96;       // f64 loop time of the request head's first byte (access log)
export const H_UA = C_PROTO_AREA + 104;         // u16 offset in the head (0: none), u16 length: User-Agent (access log)
export const H_REFERER = C_PROTO_AREA + 108;    // u16 offset, u16 length: Referer (access log)
const H_END = C_PROTO_AREA + 112;        // first byte past the HTTP fields
// Each field has its own offset, and the last must end inside the record:
// httpConfigure() checks. (A field once added at a taken offset: the fuzzer found it.)

export const HX_CLOSE = 1;      // close after this response
export const HX_STARTED = 2;    // the head timer is running for this request
export const HX_CHUNKED = 4;
export const HX_CONTINUE = 8;   // Expect: 100-continue, and no 100 sent yet
export const HX_LOOKED_UP = 16; // the request's file-cache lookup is counted (a wait for the open looks again)
export const HX_DEFERRED = 32;  // a pipelined request waits in the buffer: the tick's budget ran out (reactor/budget.ts)

export let idleMs: f64 = 0;
export let headerMs: f64 = 0;
export let maxLine: i32 = 8192;
export let maxHeader: i32 = 16384;
export let maxHeaders: i32 = 100;
export let maxBody: f64 = 1048576;
export let accessLog = false;
export let listing = false;
export let cors = false;
export let precompressed = false;

export const LINGER_MS: f64 = 2000;   // how long a lingering close drains input at most

export let req: usize = 0;           // the parse record (shared: one request is handled at a time)
export let pathBuf: usize = 0;       // normalised path scratch
export const PATH_CAP: i32 = 4096;
export let dateBuf: usize = 0;       // "Date: ...\r\n", refreshed once per second

/** Reads the HTTP options and carves the shared scratch areas (called first by httpInit). */
export function httpConfigure(): void {
  if (H_END > CONN_SIZE) abort("HTTP fields overflow the connection record");
  idleMs = <f64>ctlI32(CFG_IDLE_TIMEOUT);
  headerMs = <f64>ctlI32(CFG_HEADER_TIMEOUT);
  if (ctlI32(CFG_MAX_LINE) > 0) maxLine = ctlI32(CFG_MAX_LINE);
  if (ctlI32(CFG_MAX_HEADER) > 0) maxHeader = ctlI32(CFG_MAX_HEADER);
  if (ctlI32(CFG_MAX_HEADERS) > 0) maxHeaders = ctlI32(CFG_MAX_HEADERS);
  if (ctlI32(CFG_MAX_BODY) > 0) maxBody = <f64>ctlI32(CFG_MAX_BODY);
  accessLog = ctlI32(CFG_ACCESS_LOG) != 0;
  listing = ctlI32(CFG_LISTING) != 0;
  cors = ctlI32(CFG_CORS) != 0;
  precompressed = ctlI32(CFG_PRECOMPRESSED) != 0;
  if (accessLog) accessLogInit(ctlI32(CFG_ACCESS_LOG), ctlI32(CFG_MAX_FDS));
  // The whole head must fit the receive buffer with room to spare.
  if (maxLine + maxHeader > readBufSize - 1024) {
    maxHeader = max(1024, readBufSize - 1024 - maxLine);
  }
  req = heap.alloc(REQ_SIZE);
  pathBuf = heap.alloc(<usize>PATH_CAP + 32);
  dateBuf = heap.alloc(64);
}
