// The http-mode proxy's answers of its own and its error paths: 4xx for a
// request it refuses (then serve's lingering close), 502 (the upstream failed
// before a response head: refused after the retry, reset, an invalid head),
// 504 (no head within CFG_PROXY_UPSTREAM_TIMEOUT), 503 (no usable upstream).
// After a response head went to the client, a failure can only be shown by
// closing the client connection (a truncated response, never a mixed-up one).
import {
  OP_SHUTDOWN, C_INFLIGHT, C_STATE, PXG_502, PXG_4XX, PXG_TRUNCATED,
} from "../abi";
import { submit, now } from "../reactor/ctl";
import { conn, cget, cset, clearFlag, enqueue, outAppend, setDeadline, connRefreshInterest, CF_NO_READ } from "../reactor/conn";
import { upstreamRequestEnd, upstreamFailure } from "./upstreams";
import { X_PEER, X_UP, SHUT_WR, xf, xset, xclear, peerOf, closeSafe, roomIn } from "./link";
import {
  CS_FWD, CS_LINGER, US_CONNECTING, US_ACTIVE, X_REQF, X_STATUS, X_USTATUS, X_START, X_LAT, XC_REQ_DONE, XC_RESP_DONE,
  XC_CLOSE, XC_HEAD_SENT, RQ_HEAD, idleMs, scratch, gstat, releaseBuf, noRead,
} from "./http-state";

const LINGER_MS: f64 = 2000;

/**
 * A small fixed answer (4xx for a refused request, 502/503/504). `refused`:
 * the request was not understood (serve closes after those, with a
 * lingering close); a 5xx keeps the connection when the request was read in
 * full and the client did not ask to close.
 */
export function answer(fd: i32, status: i32, refused: bool): void {
  if (xf(fd) & XC_HEAD_SENT) { closeSafe(fd); return; }
  const close = refused || (xf(fd) & (XC_CLOSE)) != 0 || (xf(fd) & XC_REQ_DONE) == 0;
  if (status >= 400 && status < 500) gstat(PXG_4XX);
  const reason = reasonOf(status);
  const bodyLen = 4 + reason.length + 1;
  const head = (cget(fd, X_REQF) & RQ_HEAD) != 0;
  let p = scratch;
  p = put(p, "HTTP/1.1 "); p = putNum(p, status); p = put(p, " "); p = put(p, reason);
  p = put(p, "\r\nContent-Type: text/plain\r\nContent-Length: "); p = putNum(p, bodyLen);
  p = put(p, close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n");
  if (!head) { p = putNum(p, status); p = put(p, " "); p = put(p, reason); p = put(p, "\n"); }
  const n = <i32>(p - scratch);
  if (roomIn(fd) < n) { closeSafe(fd); return; }
  outAppend(fd, scratch, n);
  cset(fd, X_STATUS, status);
  xset(fd, XC_HEAD_SENT | XC_RESP_DONE);
  if (close) xset(fd, XC_CLOSE);
  noRead(fd);
  cset(fd, C_STATE, refused ? CS_LINGER : CS_FWD);
  setDeadline(fd, idleMs);
  enqueue(fd);
}

function reasonOf(s: i32): string {
  switch (s) {
    case 400: return "Bad Request";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
  }
  return s < 500 ? "Bad Request" : "Bad Gateway";
}

function put(p: usize, s: string): usize {
  for (let i = 0; i < s.length; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
  return p + <usize>s.length;
}

function putNum(p: usize, v: i32): usize {
  let d = 1;
  for (let t = v; t >= 10; t /= 10) d++;
  for (let i = d - 1; i >= 0; i--) { store<u8>(p + <usize>i, <u8>(0x30 + v % 10)); v /= 10; }
  return p + <usize>d;
}

/** serve's lingering close after a refused request: shut our side, drain theirs briefly. */
export function linger(fd: i32): void {
  cset(fd, C_STATE, CS_LINGER);
  releaseBuf(fd);
  clearFlag(fd, CF_NO_READ);
  connRefreshInterest(fd);
  setDeadline(fd, LINGER_MS);
  submit(OP_SHUTDOWN, fd, SHUT_WR, 0, 0, 0);
  store<i32>(conn(fd) + C_INFLIGHT, OP_SHUTDOWN);
  cset(fd, X_STATUS, 0); // counted once
  xclear(fd, XC_RESP_DONE);
}

/** An invalid response head: 502 (nothing went to the client yet), the connection is dropped. */
export function badResponse(up: i32): void {
  const client = peerOf(up);
  const u = cget(up, X_UP);
  upstreamFailure(u, now());
  cset(up, X_PEER, -1);
  endRequest(up, 502);
  closeSafe(up); // (a read in flight keeps its buffer until it completes)
  if (client < 0) return;
  cset(client, X_PEER, -1);
  if (xf(client) & XC_HEAD_SENT) { gstat(PXG_TRUNCATED); closeSafe(client); return; }
  gstat(PXG_502);
  answer(client, 502, false);
}

/** The upstream failed mid-body: the client sees the response cut off by a close. */
export function truncated(up: i32): void {
  const client = peerOf(up);
  upstreamFailure(cget(up, X_UP), now());
  gstat(PXG_TRUNCATED);
  cset(up, X_PEER, -1);
  endRequest(up, cget(up, X_USTATUS));
  closeSafe(up);
  if (client >= 0) { cset(client, X_PEER, -1); closeSafe(client); }
}

export function endRequest(up: i32, status: i32): void {
  const u = cget(up, X_UP);
  if (u < 0 || cget(up, C_STATE) != US_ACTIVE) return;
  upstreamRequestEnd(u, status, status > 0 ? load<f64>(conn(up) + X_LAT) : now() - load<f64>(conn(up) + X_START));
  cset(up, C_STATE, US_CONNECTING + 100); // ended: not counted again (any non-active state)
}

/** The request body's chunked framing is bad: 400 before any response, else close. */
export function badRequestBody(client: i32, status: i32): void {
  const up = peerOf(client);
  if (up >= 0) { cset(up, X_PEER, -1); cset(client, X_PEER, -1); endRequest(up, 0); closeSafe(up); }
  answer(client, status, true);
}
