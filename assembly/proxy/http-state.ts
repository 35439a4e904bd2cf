// What the http-mode proxy's files share (http.ts the exchange, http-pool.ts
// the idle pool, http-answer.ts the proxy's own answers and error paths):
// the connection states, the protocol area's fields and flags, the settings
// read at init, the parse and rewrite records (one each: nothing is
// allocated per request) and the counters.
import {
  CFG_IDLE_TIMEOUT, CFG_HEADER_TIMEOUT, CFG_PROXY_CONNECT_TIMEOUT, CFG_PROXY_UPSTREAM_TIMEOUT, CFG_MAX_LINE,
  CFG_MAX_HEADER, CFG_MAX_HEADERS, C_RBUF, C_RLEN, C_RPOS, C_PROTO_AREA, UPSTREAMS_MAX, PXH_SIZE, PXG_SIZE,
} from "../abi";
import { ctlI32 } from "../reactor/ctl";
import { readBufGive, readBufSize } from "../reactor/pool";
import { cget, cset, flags, setFlag, clearFlag, enqueue, connRefreshInterest, CF_READABLE, CF_NO_READ } from "../reactor/conn";
import { REQ_SIZE } from "../http/parser";
import { RESP_SIZE } from "../http/response";
import { XF_PAUSED, xf } from "./link";

// ---- states (C_STATE) ---------------------------------------------------------
export const CS_IDLE = 1;      // client: between requests, no byte of the next one
export const CS_HEAD = 2;      // client: reading a request head
export const CS_PICK = 3;      // client: head parsed; picks an upstream at its next run
export const CS_SOCKET = 4;    // client: OP_SOCKET in flight for its upstream
export const CS_WAIT = 5;      // client: its upstream is connecting
export const CS_FWD = 6;       // client: paired (or its response still flushing)
export const CS_LINGER = 7;    // client: an error answer went out with its write side shut; drain, then close
export const US_CONNECTING = 10;
export const US_ACTIVE = 11;   // upstream: carrying a request
export const US_POOLED = 12;   // upstream: idle in its pool

// ---- the protocol area (112 bytes) ----------------------------------------
// X_PEER, X_UP, X_XF, X_TRIES (client: upstreams tried for this request): link.ts
// client
export const X_REQF = C_PROTO_AREA + 16;    // RQ_* bits of the current request
export const X_HEAD_END = C_PROTO_AREA + 20; // length of the current request head (at C_RPOS)
export const X_BODY_POS = C_PROTO_AREA + 24; // buffer offset of the first body byte not yet forwarded
export const X_SCAN = C_PROTO_AREA + 28;    // request parser phase-1 state
export const X_LSTART = C_PROTO_AREA + 32;
export const X_LEND = C_PROTO_AREA + 36;
export const X_HASH = C_PROTO_AREA + 40;    // the request key's hash (hash / ip-hash)
export const X_STATUS = C_PROTO_AREA + 44;  // status of the response (stats)
export const X_ASKED = C_PROTO_AREA + 48;   // both: bytes the read in flight asked for (ET: fewer came = drained)
// upstream
export const X_POOL_NEXT = C_PROTO_AREA + 12;
export const X_POOL_PREV = C_PROTO_AREA + 16;
export const X_RSCAN = C_PROTO_AREA + 20;   // response parser phase-1 state
export const X_USTATUS = C_PROTO_AREA + 24;
export const X_START = C_PROTO_AREA + 32;   // f64 the request's start (loop ms)
export const X_LAT = C_PROTO_AREA + 40;     // f64 ms to the response head
// both: the body state (http/framing.ts BODYST, 56 bytes): the client's is
// its request body, the upstream's the response body.
export const X_BODYST = C_PROTO_AREA + 56;

// X_XF bits besides link.ts's XF_CLIENT, XF_PAUSED
export const XC_REQ_DONE = 4;       // the request body went into the upstream's ring in full
export const XC_RESP_DONE = 8;      // the response went into our ring in full (flush, then the next request)
export const XC_CLOSE = 16;         // close after this response
export const XC_HEAD_SENT = 32;     // a final response head is in our ring: no error answer any more
export const XC_HEAD_GONE = 64;     // the request head left the buffer (a body streamed past it): no retry
export const XU_HEAD = 128;         // upstream: the final response head was parsed
export const XU_GOT = 256;          // upstream: a response byte came
export const XU_NOREUSE = 512;      // upstream: not back to the pool (it said close, extra bytes...)
export const XU_REUSED = 1024;      // upstream: taken from the pool for this request
export const XU_DECHUNK = 2048;     // upstream: chunked response de-chunked for an HTTP/1.0 client

export const RQ_HEAD = 1, RQ_HTTP10 = 2, RQ_BODY = 4, RQ_IDEMPOTENT = 8;


export let idleMs: f64 = 0;
export let headerMs: f64 = 0;
export let connectMs: f64 = 0;
export let upstreamMs: f64 = 0;
export let maxLine = 8192, maxHeader = 16384, maxHeaders = 100;
export let req: usize = 0;
export let resp: usize = 0;
export let scratch: usize = 0;       // the rewritten request head
export let scratchCap = 0;
// Static records, in one place (their order fixes the static layout, and so
// the heap's start, which the replay fixtures' addresses depend on):
export const addrText: usize = memory.data(64); // the client's address (X-Forwarded-For)
// per upstream: pool head (fd, -1 none) and size (http-pool.ts); counters PXH_*
export const poolHead: usize = memory.data(UPSTREAMS_MAX * 4);
export const poolSize: usize = memory.data(UPSTREAMS_MAX * 4);
export const upStats: usize = memory.data(UPSTREAMS_MAX * PXH_SIZE, 8);
export const globalStats: usize = memory.data(PXG_SIZE, 8);
// the hash key's header name (the host writes it: i32 length, then the name)
export const hashKeyRec: usize = memory.data(68);

/** Per-upstream counters of http mode (abi.ts PXH_*). */
export function proxyHttpUpstreamStats(u: i32): usize { return upStats + <usize>(u * PXH_SIZE); }
/** http mode's global counters (abi.ts PXG_*). */
export function proxyHttpStats(): usize { return globalStats; }
/** Where the host writes the hash key's header name (i32 length, up to 64 bytes). */
export function proxyHashKeyConfig(): usize { return hashKeyRec; }

@inline export function stat(u: i32, off: i32): void { const p = upStats + <usize>(u * PXH_SIZE + off); store<f64>(p, load<f64>(p) + 1); }
@inline export function gstat(off: i32): void { const p = globalStats + <usize>off; store<f64>(p, load<f64>(p) + 1); }

/** Reads the settings (CTL) and allocates the records, once at init. */
export function httpConfigLoad(): void {
  idleMs = <f64>ctlI32(CFG_IDLE_TIMEOUT);
  headerMs = <f64>ctlI32(CFG_HEADER_TIMEOUT);
  connectMs = <f64>ctlI32(CFG_PROXY_CONNECT_TIMEOUT);
  upstreamMs = <f64>ctlI32(CFG_PROXY_UPSTREAM_TIMEOUT);
  if (ctlI32(CFG_MAX_LINE) > 0) maxLine = ctlI32(CFG_MAX_LINE);
  if (ctlI32(CFG_MAX_HEADER) > 0) maxHeader = ctlI32(CFG_MAX_HEADER);
  if (ctlI32(CFG_MAX_HEADERS) > 0) maxHeaders = ctlI32(CFG_MAX_HEADERS);
  if (maxLine + maxHeader > readBufSize - 1024) maxHeader = max(1024, readBufSize - 1024 - maxLine);
  req = heap.alloc(REQ_SIZE);
  resp = heap.alloc(RESP_SIZE);
  // a rewritten head: the received one plus the forwarding fields
  scratchCap = readBufSize + 1024;
  scratch = heap.alloc(<usize>scratchCap + 16);
}

// ---- the receive buffer and read interest -----------------------------------

export function releaseBuf(fd: i32): void {
  const b = <usize>cget(fd, C_RBUF);
  if (b != 0) readBufGive(b);
  cset(fd, C_RBUF, 0); cset(fd, C_RLEN, 0); cset(fd, C_RPOS, 0);
}

/** Stop reading fd (not paused by backpressure: nothing is wanted from it now). */
export function noRead(fd: i32): void {
  if (flags(fd) & CF_NO_READ) return;
  setFlag(fd, CF_NO_READ);
  connRefreshInterest(fd);
}

export function wantRead(fd: i32): void {
  if (!(flags(fd) & CF_NO_READ) || (xf(fd) & XF_PAUSED)) return;
  clearFlag(fd, CF_NO_READ);
  setFlag(fd, CF_READABLE);
  connRefreshInterest(fd);
  enqueue(fd);
}
