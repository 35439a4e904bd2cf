// The Prometheus text exposition (format 0.0.4) of one or more snapshots
// (abi.ts MS_*), summed: counters and gauges add up, histograms bucket by
// bucket. Written into a buffer carved at init (sized for the upstream
// count), from static strings and integers: no allocation per scrape.
//
// Conventions (prometheus.io/docs/practices/naming): every name starts with
// wasm_reactor_, counters end in _total, base units (seconds, bytes), each
// family has one HELP and one TYPE line before its samples, histograms give
// cumulative _bucket{le=...} ending in le="+Inf" (== _count), then _sum and
// _count.
import {
  MS_CTL, MS_MX, MS_PXG, MS_UP, STAT_LIVE_CONNS, STAT_ACCEPTED, STAT_BYTES_IN, STAT_BYTES_OUT, STAT_WBUF_BYTES,
  STAT_RBUF_HELD, STAT_TIMERS, STAT_TRAPS, STAT_LOG_DROPPED, STAT_STALE_CQES, STAT_ACCEPT_PAUSED, STAT_PROXY_NO_UPSTREAM,
  STAT_FAIR_DEFERRED,
  MX_CLOSED, MX_CLOSE_REASONS, MX_METHODS, MX_METHOD_COUNT, MX_CLASSES, MX_FC_HITS, MX_FC_MISSES, MX_FC_ENTRIES,
  MX_SCRAPES, MX_LAG, MX_EVENTS, MX_DURATION, MH_TIME_BUCKETS, MH_EVENT_BUCKETS, MX_DRAINING, MX_HOST_UNREADY,
  UPSTAT_SIZE, PXH_SIZE, UPSTAT_STATE, UPSTATE_UP, UPSTATE_DOWN, UPSTATE_EJECTED, UPSTAT_ACTIVE_CONNS,
  UPSTAT_ACTIVE_REQS, UPSTAT_CONNS, UPSTAT_FAILURES, UPSTAT_RETRIES, UPSTAT_BYTES_TO, UPSTAT_BYTES_FROM,
  UPSTAT_EJECTIONS, UPSTAT_STATUS, UPSTAT_LATENCY, UPSTAT_BUCKETS, UPSTAT_LATENCY_SUM, PXH_REUSES, PXH_CONNECTS,
  PXG_RETRIES, PXG_502, PXG_503, PXG_504, PXG_4XX, PXG_TRUNCATED, PXG_POOL_DROPPED,
} from "../abi";
import { timeBound, eventBound } from "../reactor/metrics";
import { upstreamCount, upstreamAddr, upstreamLatencyLe } from "../proxy/upstreams";
import { sockaddrFormat } from "../reactor/peer";

export let renderBuf: usize = 0;
export let renderLen: i32 = 0;
let cap: i32 = 0;
let w: usize = 0;       // write cursor
let end: usize = 0;
let over = false;       // the buffer was too small: the scrape fails (500)
export let headBuf: usize = 0;
export const HEAD_CAP: i32 = 256;
export let textBuf: usize = 0;
const label: usize = memory.data(64);
let labelLen = 0;

// the sources being summed
let first: usize = 0;   // this core's snapshot
let rest: usize = 0;    // the others', one after the other
let restCount = 0;
let stride: usize = 0;

/** Bytes the render buffer holds. */
export function renderCap(): i32 { return cap; }

export function renderInit(upstreams: i32): void {
  // measured: 7.3 KiB for the fixed families, 2.7 KiB per upstream; twice that and more
  cap = 32768 + upstreams * 8192;
  renderBuf = heap.alloc(<usize>cap);
  headBuf = heap.alloc(<usize>HEAD_CAP);
  textBuf = heap.alloc(64);
}

// ---- writing --------------------------------------------------------------

function put(s: string): void {
  const n = s.length;
  if (w + <usize>n > end) { over = true; return; }
  for (let i = 0; i < n; i++) store<u8>(w + <usize>i, <u8>s.charCodeAt(i));
  w += <usize>n;
}
function putBytes(p: usize, n: i32): void {
  if (w + <usize>n > end) { over = true; return; }
  memory.copy(w, p, <usize>n);
  w += <usize>n;
}
function putChar(c: u8): void { if (w >= end) { over = true; return; } store<u8>(w++, c); }

/** An integer value (counters are f64 holding integers). */
function putInt(v: f64): void {
  if (!(v == v)) { put("NaN"); return; }
  if (v < 0) { putChar(0x2d); v = -v; }
  let u = <u64>Math.floor(v);
  if (w + 20 > end) { over = true; return; }
  let digits = 1;
  for (let t = u; t >= 10; t /= 10) digits++;
  for (let i = digits - 1; i >= 0; i--) { store<u8>(w + <usize>i, <u8>(0x30 + <u32>(u % 10))); u /= 10; }
  w += <usize>digits;
}

/** ms as seconds, to the microsecond, trailing zeros dropped ("0.0025", "12.5", "3"). */
function putSeconds(ms: f64): void {
  const us = <u64>Math.round((ms > 0 ? ms : 0) * 1000);
  putInt(<f64>(us / 1000000));
  let frac = <u32>(us % 1000000);
  if (frac == 0) return;
  putChar(0x2e);
  let digits = 6;
  while (frac % 10 == 0) { frac /= 10; digits--; }
  for (let d = digits - 1; d >= 0; d--) {
    let p: u32 = 1;
    for (let k = 0; k < d; k++) p *= 10;
    putChar(<u8>(0x30 + (frac / p) % 10));
  }
}

function family(name: string, type: string, help: string): void {
  put("# HELP "); put(name); putChar(0x20); put(help); putChar(0x0a);
  put("# TYPE "); put(name); putChar(0x20); put(type); putChar(0x0a);
}

// ---- summing --------------------------------------------------------------

@inline function src(i: i32): usize { return i == 0 ? first : rest + <usize>(i - 1) * stride; }
@inline function sources(): i32 { return 1 + restCount; }
function sumF(off: i32): f64 { let s: f64 = 0; for (let i = 0; i < sources(); i++) s += load<f64>(src(i) + <usize>off); return s; }
function sumU(off: i32): f64 { let s: f64 = 0; for (let i = 0; i < sources(); i++) s += <f64>load<u32>(src(i) + <usize>off); return s; }
function sumI(off: i32): f64 { let s: f64 = 0; for (let i = 0; i < sources(); i++) s += <f64>load<i32>(src(i) + <usize>off); return s; }

/** `name value` (no labels). */
function plain(name: string, v: f64): void { put(name); putChar(0x20); putInt(v); putChar(0x0a); }
function one(name: string, type: string, help: string, v: f64): void { family(name, type, help); plain(name, v); }

/** A sample with one label. */
function labelled(name: string, key: string, value: string, v: f64): void {
  put(name); putChar(0x7b); put(key); put("=\""); put(value); put("\"} "); putInt(v); putChar(0x0a);
}

/** A sample with the upstream label (in `label`) and optionally one more. */
function upSample(name: string, key: string, value: string, v: f64): void {
  put(name); put("{upstream=\""); putBytes(label, labelLen); putChar(0x22);
  if (key.length > 0) { putChar(0x2c); put(key); put("=\""); put(value); putChar(0x22); }
  put("} "); putInt(v); putChar(0x0a);
}

/**
 * A histogram from non-cumulative buckets at `off` (f64 x buckets, then sum,
 * count) summed over the sources. `time`: bounds and sum in ms, printed in s.
 */
function histogram(name: string, help: string, off: i32, buckets: i32, time: bool): void {
  family(name, "histogram", help);
  let acc: f64 = 0;
  for (let i = 0; i < buckets; i++) {
    acc += sumF(MS_MX + off + i * 8);
    put(name); put("_bucket{le=\"");
    if (i == buckets - 1) put("+Inf");
    else if (time) putSeconds(timeBound(i));
    else putInt(eventBound(i));
    put("\"} "); putInt(acc); putChar(0x0a);
  }
  const sum = sumF(MS_MX + off + buckets * 8);
  put(name); put("_sum "); if (time) putSeconds(sum); else putInt(sum); putChar(0x0a);
  put(name); put("_count "); putInt(sumF(MS_MX + off + buckets * 8 + 8)); putChar(0x0a);
}

const METHODS = ["OTHER", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"];
const REASONS = ["client", "server", "idle_timeout", "header_timeout", "overflow", "error", "shutdown", "trap"];
const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];

// ---- the exposition -------------------------------------------------------

/**
 * Renders the sum of snapshot `own` and `count` snapshots at `others`
 * (`size` bytes each) into renderBuf; false if it did not fit.
 */
export function renderMetrics(own: usize, others: usize, count: i32, size: i32): bool {
  first = own; rest = others; restCount = count; stride = <usize>size;
  w = renderBuf; end = renderBuf + <usize>(cap - 64); over = false;
  const C = MS_CTL, M = MS_MX;

  one("wasm_reactor_workers", "gauge", "Reactors (worker threads) whose counters this scrape sums.", <f64>sources());
  let draining: f64 = 0;
  for (let i = 0; i < sources(); i++) if (load<i32>(src(i) + M + MX_DRAINING) != 0 || load<i32>(src(i) + M + MX_HOST_UNREADY) != 0) draining = 1;
  one("wasm_reactor_ready", "gauge", "1 while serving; 0 once a graceful shutdown began or is announced (/readyz answers 503).", 1 - draining);
  one("wasm_reactor_connections_open", "gauge", "Connections open (clients, and upstream sides of the proxy).", sumI(C + STAT_LIVE_CONNS));
  one("wasm_reactor_connections_accepted_total", "counter", "Connections accepted.", sumU(C + STAT_ACCEPTED));
  family("wasm_reactor_connections_closed_total", "counter", "Connections closed, by reason.");
  for (let r = 0; r < MX_CLOSE_REASONS; r++) labelled("wasm_reactor_connections_closed_total", "reason", REASONS[r], sumF(M + MX_CLOSED + r * 8));
  family("wasm_reactor_requests_total", "counter", "HTTP requests parsed (valid or not), by method.");
  for (let m = 1; m <= MX_METHOD_COUNT; m++) {
    const k = m % MX_METHOD_COUNT; // OTHER last
    labelled("wasm_reactor_requests_total", "method", METHODS[k], sumF(M + MX_METHODS + k * 8));
  }
  family("wasm_reactor_responses_total", "counter", "HTTP responses sent in full, by status class.");
  for (let k = 0; k < 5; k++) labelled("wasm_reactor_responses_total", "code", CLASSES[k], sumF(M + MX_CLASSES + k * 8));
  one("wasm_reactor_received_bytes_total", "counter", "Bytes read from client and upstream sockets.", sumF(C + STAT_BYTES_IN));
  one("wasm_reactor_sent_bytes_total", "counter", "Bytes written to client and upstream sockets.", sumF(C + STAT_BYTES_OUT));
  one("wasm_reactor_write_buffer_bytes", "gauge", "Bytes held in write buffers and response buffers.", sumI(C + STAT_WBUF_BYTES));
  one("wasm_reactor_receive_buffers", "gauge", "Receive buffers held by connections.", sumI(C + STAT_RBUF_HELD));
  one("wasm_reactor_timers", "gauge", "Live timers (connection deadlines, user timers).", sumI(C + STAT_TIMERS));
  one("wasm_reactor_accept_paused", "gauge", "Reactors whose accepting is paused (out of file descriptors).", sumI(C + STAT_ACCEPT_PAUSED));
  one("wasm_reactor_traps_contained_total", "counter", "Traps inside the core contained to one connection.", sumU(C + STAT_TRAPS));
  one("wasm_reactor_log_lines_dropped_total", "counter", "Log lines dropped: a round's log area was full.", sumU(C + STAT_LOG_DROPPED));
  one("wasm_reactor_fairness_deferrals_total", "counter", "Times a connection used its per-tick budget (--tick-requests, --tick-bytes) and waited for the next tick.", sumU(C + STAT_FAIR_DEFERRED));
  one("wasm_reactor_stale_completions_total", "counter", "Completions ignored: stale, unknown or duplicate tag.", sumU(C + STAT_STALE_CQES));
  one("wasm_reactor_file_cache_hits_total", "counter", "Open-file cache lookups that found the path.", sumF(M + MX_FC_HITS));
  one("wasm_reactor_file_cache_misses_total", "counter", "Open-file cache lookups that did not (an open follows).", sumF(M + MX_FC_MISSES));
  one("wasm_reactor_file_cache_entries", "gauge", "Open-file cache entries in use.", sumI(M + MX_FC_ENTRIES));
  one("wasm_reactor_metrics_scrapes_total", "counter", "GET/HEAD /metrics answered.", sumF(M + MX_SCRAPES));
  histogram("wasm_reactor_loop_lag_seconds", "How late each timer fired: loop time of the tick that fired it minus its deadline (a connection deadline: minus the start of its 4 ms wheel slot).", MX_LAG, MH_TIME_BUCKETS, true);
  histogram("wasm_reactor_events_per_tick", "Events in each dispatched batch (one per backend wait).", MX_EVENTS, MH_EVENT_BUCKETS, false);
  histogram("wasm_reactor_request_duration_seconds", "HTTP request duration (serve): first byte of the head to the flushed response, on the loop clock.", MX_DURATION, MH_TIME_BUCKETS, true);
  const n = upstreamCount();
  if (n > 0) upstreams(n);
  renderLen = <i32>(w - renderBuf);
  return !over;
}

function upstreams(n: i32): void {
  const P = MS_PXG;
  one("wasm_reactor_proxy_no_upstream_total", "counter", "tcp mode: clients closed with no usable upstream.", sumU(MS_CTL + STAT_PROXY_NO_UPSTREAM));
  one("wasm_reactor_proxy_retries_total", "counter", "http mode: requests retried on another upstream or connection.", sumF(P + PXG_RETRIES));
  family("wasm_reactor_proxy_error_responses_total", "counter", "http mode: answers the proxy made itself, by status.");
  labelled("wasm_reactor_proxy_error_responses_total", "code", "502", sumF(P + PXG_502));
  labelled("wasm_reactor_proxy_error_responses_total", "code", "503", sumF(P + PXG_503));
  labelled("wasm_reactor_proxy_error_responses_total", "code", "504", sumF(P + PXG_504));
  one("wasm_reactor_proxy_refused_requests_total", "counter", "http mode: requests refused by the parser, never forwarded.", sumF(P + PXG_4XX));
  one("wasm_reactor_proxy_truncated_responses_total", "counter", "http mode: responses cut off when the upstream failed mid-body.", sumF(P + PXG_TRUNCATED));
  one("wasm_reactor_proxy_pool_dropped_total", "counter", "http mode: idle pooled upstream connections dropped.", sumF(P + PXG_POOL_DROPPED));
  const U = MS_UP, H = MS_UP + n * UPSTAT_SIZE;
  family("wasm_reactor_upstream_state", "gauge", "Reactors that see the upstream in this state.");
  for (let u = 0; u < n; u++) {
    upLabel(u);
    let up: f64 = 0, down: f64 = 0, ej: f64 = 0;
    for (let i = 0; i < sources(); i++) {
      const s = load<i32>(src(i) + <usize>(U + u * UPSTAT_SIZE + UPSTAT_STATE));
      if (s == UPSTATE_UP) up++; else if (s == UPSTATE_DOWN) down++; else if (s == UPSTATE_EJECTED) ej++;
    }
    upSample("wasm_reactor_upstream_state", "state", "up", up);
    upSample("wasm_reactor_upstream_state", "state", "down", down);
    upSample("wasm_reactor_upstream_state", "state", "ejected", ej);
  }
  upI("wasm_reactor_upstream_active_connections", "gauge", "Connections open to the upstream.", n, U + UPSTAT_ACTIVE_CONNS);
  upI("wasm_reactor_upstream_active_requests", "gauge", "Requests in progress on the upstream.", n, U + UPSTAT_ACTIVE_REQS);
  upF("wasm_reactor_upstream_connections_total", "Connections opened to the upstream.", n, U + UPSTAT_CONNS, UPSTAT_SIZE);
  family("wasm_reactor_upstream_requests_total", "counter", "Requests ended on the upstream, by status class (none: no response).");
  for (let u = 0; u < n; u++) {
    upLabel(u);
    for (let k = 0; k < 6; k++) {
      upSample("wasm_reactor_upstream_requests_total", "code", k == 0 ? "none" : CLASSES[k - 1], sumF(U + u * UPSTAT_SIZE + UPSTAT_STATUS + k * 8));
    }
  }
  upF("wasm_reactor_upstream_failures_total", "Failures reported against the upstream (connect refused, timed out, reset...).", n, U + UPSTAT_FAILURES, UPSTAT_SIZE);
  upF("wasm_reactor_upstream_retries_total", "Requests retried away from the upstream.", n, U + UPSTAT_RETRIES, UPSTAT_SIZE);
  upF("wasm_reactor_upstream_sent_bytes_total", "Bytes sent to the upstream.", n, U + UPSTAT_BYTES_TO, UPSTAT_SIZE);
  upF("wasm_reactor_upstream_received_bytes_total", "Bytes received from the upstream.", n, U + UPSTAT_BYTES_FROM, UPSTAT_SIZE);
  upI("wasm_reactor_upstream_ejections_total", "counter", "Times the upstream was ejected (passive health).", n, U + UPSTAT_EJECTIONS);
  upF("wasm_reactor_upstream_reused_requests_total", "http mode: requests sent on a pooled keep-alive connection.", n, H + PXH_REUSES, PXH_SIZE);
  upF("wasm_reactor_upstream_new_connection_requests_total", "http mode: requests that opened a new connection.", n, H + PXH_CONNECTS, PXH_SIZE);
  family("wasm_reactor_upstream_latency_seconds", "histogram", "Upstream latency of requests that got a response (request sent to response head).");
  for (let u = 0; u < n; u++) {
    upLabel(u);
    const base = U + u * UPSTAT_SIZE;
    let acc: f64 = 0;
    for (let i = 0; i < UPSTAT_BUCKETS; i++) {
      acc += sumF(base + UPSTAT_LATENCY + i * 8);
      put("wasm_reactor_upstream_latency_seconds_bucket{upstream=\""); putBytes(label, labelLen); put("\",le=\"");
      if (i == UPSTAT_BUCKETS - 1) put("+Inf"); else putSeconds(upstreamLatencyLe(i));
      put("\"} "); putInt(acc); putChar(0x0a);
    }
    put("wasm_reactor_upstream_latency_seconds_sum{upstream=\""); putBytes(label, labelLen); put("\"} ");
    putSeconds(sumF(base + UPSTAT_LATENCY_SUM)); putChar(0x0a);
    put("wasm_reactor_upstream_latency_seconds_count{upstream=\""); putBytes(label, labelLen); put("\"} ");
    putInt(acc); putChar(0x0a);
  }
}

function upLabel(u: i32): void { labelLen = sockaddrFormat(upstreamAddr(u), label); }
function upF(name: string, help: string, n: i32, off: i32, size: i32): void {
  family(name, "counter", help);
  for (let u = 0; u < n; u++) { upLabel(u); upSample(name, "", "", sumF(off + u * size)); }
}
function upI(name: string, type: string, help: string, n: i32, off: i32): void {
  family(name, type, help);
  for (let u = 0; u < n; u++) { upLabel(u); upSample(name, "", "", sumI(off + u * UPSTAT_SIZE)); }
}

// ---- response heads ---------------------------------------------------------

/** Writes a response head into headBuf; -> its length. */
export function headInto(status: i32, type: string, bodyLen: i32, close: bool): i32 {
  w = headBuf; end = headBuf + <usize>HEAD_CAP; over = false;
  put("HTTP/1.1 ");
  put(status == 200 ? "200 OK" : status == 503 ? "503 Service Unavailable" : status == 404 ? "404 Not Found"
    : status == 405 ? "405 Method Not Allowed" : status == 431 ? "431 Request Header Fields Too Large"
    : status == 500 ? "500 Internal Server Error" : status == 414 ? "414 URI Too Long" : status == 505 ? "505 HTTP Version Not Supported"
    : status == 501 ? "501 Not Implemented" : "400 Bad Request");
  put("\r\nContent-Type: "); put(type);
  put("\r\nContent-Length: "); putInt(<f64>bodyLen);
  if (status == 405) put("\r\nAllow: GET, HEAD");
  put("\r\nCache-Control: no-store");
  if (close) put("\r\nConnection: close");
  put("\r\n\r\n");
  return <i32>(w - headBuf);
}

/** Writes a short ASCII text into textBuf; -> its length. */
export function textInto(s: string): i32 {
  const n = min(s.length, 64);
  for (let i = 0; i < n; i++) store<u8>(textBuf + <usize>i, <u8>s.charCodeAt(i));
  return n;
}
