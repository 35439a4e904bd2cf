// The metrics listener's protocol (--metrics HOST:PORT): HTTP/1.1 with
// keep-alive, parsed by the server's own request parser, answering
//
//   GET|HEAD /metrics   Prometheus text exposition format 0.0.4, rendered here
//   GET|HEAD /healthz   200 while the loop runs
//   GET|HEAD /readyz    200 while serving; 503 once a graceful shutdown began
//                       or the host said one is coming (MX_HOST_UNREADY)
//   anything else       404; a method other than GET/HEAD 405; a bad head 400
//
// Its connections are not the service's: they stay out of the service's
// counters and of what a graceful shutdown drains or waits for, and the
// listener keeps accepting while the service drains (reactor/listener.ts).
//
// Workers: every core can render the sum of several snapshots (abi.ts MS_*):
// its own, taken at the scrape, and CFG_METRICS_PEERS others that the host
// copies into `gather` when asked (OP_METRICS, a host service answered in
// its round) just before rendering. Counters and histograms are summed
// (bucket by bucket), gauges too.
//
// Memory: the render buffer, the snapshots and the parse record are carved
// at init; a scrape allocates nothing (its write ring comes from the pool
// and goes back to it). A response goes into the connection's write ring,
// bounded by the render buffer rather than --write-buf-max.
import {
  OP_READ, OP_METRICS, EAGAIN, PROTO_METRICS, C_STATE, C_INFLIGHT, C_RBUF, C_RLEN, C_RPOS, C_PROTO, C_PROTO_AREA,
  CTL_SIZE, MX_SIZE, MS_CTL, MS_MX, MS_PXG, MS_UP, MS_UP_SIZE, CFG_METRICS_PEERS, PXG_SIZE, UPSTAT_SIZE, PXH_SIZE,
  MX_HOST_UNREADY, MX_DRAINING, MX_FC_ENTRIES, MX_UPSTREAMS, MX_SCRAPES, CLOSE_CLIENT,
} from "../abi";
import { ctl, submit, ctlI32, now } from "../reactor/ctl";
import { readBufTake, readBufCap, READ_SMALL } from "../reactor/pool";
import {
  conn, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppendUpTo, connClose, setDeadline, connOpen,
  connSetReason, connSetEndReason, draining, CF_READABLE, CF_WRITABLE, CF_OUT_ARMED, CF_READ_PAUSED, OUT_FAILED, OUT_DONE,
  connCompactRead, connReleaseRead,
} from "../reactor/conn";
import { H_CONN } from "../reactor/handlers";
import { Protocol, protocolOwnsOp } from "../reactor/protocol";
import { mx } from "../reactor/metrics";
import {
  REQ_SIZE, REQ_METHOD, REQ_VERSION, REQ_FLAGS, REQ_TARGET_OFF, REQ_TARGET_LEN, REQ_CONTENT_LENGTH, METHOD_GET, METHOD_HEAD,
  RF_CONN_CLOSE, RF_CONN_KEEPALIVE, RF_CHUNKED, RF_HAS_CONTENT_LENGTH, resetRequest, parseRequest,
} from "../http/parser";
import { fcLive } from "../http/filecache";
import { upstreamCount, upstreamsStatsWrite } from "../proxy/upstreams";
import { proxyHttpStats, proxyHttpUpstreamStats } from "../proxy/http";
import { renderMetrics, renderBuf, renderLen, renderInit, renderCap, headInto, headBuf, textInto, textBuf } from "./metricsrender";

// states (C_STATE)
const MS_READ = 1;    // reading a request head
const MS_GATHER = 2;  // OP_METRICS in flight: the other workers' snapshots are being copied in
const MS_WRITE = 3;   // writing a response
// fields in the protocol area
const M_FLAGS = C_PROTO_AREA;        // MF_*
const M_HEAD_END = C_PROTO_AREA + 4; // length of the request head being answered
const MF_CLOSE = 1;
const MF_HEAD = 2;                   // HEAD: headers only

const IDLE_MS: f64 = 30000;          // a metrics connection quiet this long is closed (scrapes come every 15-60 s)

let req: usize = 0;
let snapSize: i32 = 0;
let own: usize = 0;                  // this core's snapshot, taken at each scrape
let gather: usize = 0;               // peers x snapSize: the other workers', copied in by the host
let peers: i32 = 0;

/** The size of one snapshot (abi.ts MS_*), with this core's upstream count. */
export function metricsSnapshotSize(): i32 { return snapSize; }

/**
 * Takes this core's snapshot (counters as of now) into its static area and
 * returns its address: what a worker publishes for the others' scrapes.
 */
export function metricsSnapshot(): usize { snapshot(own); return own; }

function snapshot(dst: usize): void {
  const n = upstreamCount();
  store<i32>(mx + MX_DRAINING, draining ? 1 : 0);
  store<i32>(mx + MX_FC_ENTRIES, fcLive);
  store<i32>(mx + MX_UPSTREAMS, n);
  memory.copy(dst + MS_CTL, ctl, CTL_SIZE);
  memory.copy(dst + MS_MX, mx, MX_SIZE);
  memory.copy(dst + MS_PXG, proxyHttpStats(), PXG_SIZE);
  if (n > 0) {
    upstreamsStatsWrite(dst + MS_UP, n * UPSTAT_SIZE, now());
    memory.copy(dst + MS_UP + <usize>(n * UPSTAT_SIZE), proxyHttpUpstreamStats(0), <usize>(n * PXH_SIZE));
  }
}

/** Reads the config and returns the protocol's hooks (registered last: the upstream table is loaded by then). */
export function metricsProtocol(): Protocol {
  const n = upstreamCount();
  snapSize = MS_UP + n * MS_UP_SIZE;
  peers = max(0, ctlI32(CFG_METRICS_PEERS));
  own = heap.alloc(<usize>snapSize);
  memory.fill(own, 0, <usize>snapSize);
  if (peers > 0) { gather = heap.alloc(<usize>(peers * snapSize)); memory.fill(gather, 0, <usize>(peers * snapSize)); }
  req = heap.alloc(REQ_SIZE);
  renderInit(n);
  const p = new Protocol();
  p.open = metricsOpen;
  p.run = metricsRun;
  p.complete = metricsComplete;
  p.timeout = connClose;
  p.service = metricsService;
  // drain: nothing. The listener and its connections outlive the service's drain.
  protocolOwnsOp(PROTO_METRICS, OP_METRICS);
  return p;
}

function metricsOpen(fd: i32): void {
  connOpen(fd, H_CONN, PROTO_METRICS, MS_READ);
  setDeadline(fd, IDLE_MS);
  setFlag(fd, CF_READABLE);
  enqueue(fd);
}

function metricsRun(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_INFLIGHT) != 0) return;
  const f = flags(fd);
  if (load<i32>(c + C_STATE) == MS_WRITE) {
    if (outPending(fd) && (f & CF_WRITABLE || !(f & CF_OUT_ARMED))) outStep(fd);
    return;
  }
  if (load<i32>(c + C_STATE) != MS_READ || !(f & CF_READABLE)) return;
  let b = <usize>load<i32>(c + C_RBUF);
  if (b == 0) {
    b = readBufTake(READ_SMALL);
    store<i32>(c + C_RBUF, <i32>b);
    store<i32>(c + C_RLEN, 0);
    store<i32>(c + C_RPOS, 0);
  }
  connCompactRead(fd);
  const len = load<i32>(c + C_RLEN);
  submit(OP_READ, fd, <i32>(b + <usize>len), readBufCap(b) - len, 0, 0);
  store<i32>(c + C_INFLIGHT, OP_READ);
}

function metricsComplete(fd: i32, op: i32, res: i32): void {
  const c = conn(fd);
  if (op == OP_READ) {
    store<i32>(c + C_INFLIGHT, 0);
    if (res > 0) {
      const b = <usize>load<i32>(c + C_RBUF);
      const len = load<i32>(c + C_RLEN);
      if (res < readBufCap(b) - len) clearFlag(fd, CF_READABLE);
      store<i32>(c + C_RLEN, len + res);
      setDeadline(fd, IDLE_MS);
      process(fd);
      return;
    }
    if (res == -EAGAIN) {
      clearFlag(fd, CF_READABLE);
      if (load<i32>(c + C_RLEN) == load<i32>(c + C_RPOS)) connReleaseRead(fd);
      return;
    }
    connSetEndReason(fd, res);
    connClose(fd);
    return;
  }
  // a write of the response
  const r = outDone(fd, res);
  if (r == OUT_FAILED) { connClose(fd); return; }
  if (r != OUT_DONE) { enqueue(fd); return; }
  if (load<i32>(c + M_FLAGS) & MF_CLOSE) { connSetReason(fd, CLOSE_CLIENT); connClose(fd); return; }
  // keep-alive: drop the request's bytes; a pipelined one is answered next
  clearFlag(fd, CF_READ_PAUSED);
  store<i32>(c + C_STATE, MS_READ);
  store<i32>(c + C_RPOS, load<i32>(c + C_RPOS) + load<i32>(c + M_HEAD_END));
  setDeadline(fd, IDLE_MS);
  if (load<i32>(c + C_RPOS) >= load<i32>(c + C_RLEN)) {
    connReleaseRead(fd);
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  process(fd);
}

/** Parses the buffered head, if complete, and answers it. */
function process(fd: i32): void {
  const c = conn(fd);
  const b = <usize>load<i32>(c + C_RBUF);
  const pos = load<i32>(c + C_RPOS);
  const len = load<i32>(c + C_RLEN);
  resetRequest(req);
  const r = parseRequest(b + <usize>pos, len - pos, req, 2048, READ_SMALL - 2048 - 64, 64);
  if (r == 0) {
    if (len - pos >= readBufCap(b)) { answer(fd, 431, true, false); return; } // no room for more
    if (flags(fd) & CF_READABLE) enqueue(fd);
    return;
  }
  if (r < 0) { answer(fd, -r, true, false); return; }
  store<i32>(c + M_HEAD_END, r);
  const rf = load<i32>(req + REQ_FLAGS);
  const method = load<i32>(req + REQ_METHOD);
  // A body is never expected: answer, then close (it is not read).
  let close = (rf & RF_CONN_CLOSE) != 0 || (load<i32>(req + REQ_VERSION) == 10 && !(rf & RF_CONN_KEEPALIVE))
    || (rf & RF_CHUNKED) != 0 || ((rf & RF_HAS_CONTENT_LENGTH) != 0 && load<f64>(req + REQ_CONTENT_LENGTH) > 0);
  if (method != METHOD_GET && method != METHOD_HEAD) { answer(fd, 405, true, false); return; }
  const head = method == METHOD_HEAD;
  const t = b + <usize>(pos + load<i32>(req + REQ_TARGET_OFF));
  let tl = load<i32>(req + REQ_TARGET_LEN);
  for (let i = 0; i < tl; i++) if (load<u8>(t + <usize>i) == 0x3f) { tl = i; break; } // the query does not matter
  if (isPath(t, tl, "/metrics")) {
    store<f64>(mx + MX_SCRAPES, load<f64>(mx + MX_SCRAPES) + 1);
    if (peers > 0) {
      // The others' snapshots first: answered within this round.
      store<i32>(c + M_FLAGS, (close ? MF_CLOSE : 0) | (head ? MF_HEAD : 0));
      store<i32>(c + C_STATE, MS_GATHER);
      submit(OP_METRICS, fd, <i32>gather, peers * snapSize, 0, 0);
      store<i32>(c + C_INFLIGHT, OP_METRICS);
      return;
    }
    metricsAnswer(fd, 0, close, head);
  } else if (isPath(t, tl, "/healthz")) {
    answer(fd, 200, close, head);
  } else if (isPath(t, tl, "/readyz")) {
    answer(fd, ready() ? 200 : 503, close, head);
  } else {
    answer(fd, 404, close, head);
  }
}

@inline function isPath(p: usize, n: i32, lit: string): bool {
  if (n != lit.length) return false;
  for (let i = 0; i < n; i++) if (<i32>load<u8>(p + <usize>i) != lit.charCodeAt(i)) return false;
  return true;
}

/** Serving: no graceful shutdown began here or in a peer, and the host has not said one is coming. */
function ready(): bool {
  if (draining || load<i32>(mx + MX_HOST_UNREADY) != 0) return false;
  return true;
}

/** OP_METRICS completed: `res` snapshots were copied in (the host may have fewer than asked). */
function metricsService(op: i32, fd: i32, res: i32): void {
  if (op != OP_METRICS || fd < 0) return;
  const c = conn(fd);
  if (load<i32>(c + C_STATE) != MS_GATHER || load<i32>(c + C_PROTO) != PROTO_METRICS) return; // gone meanwhile
  store<i32>(c + C_INFLIGHT, 0);
  const mf = load<i32>(c + M_FLAGS);
  metricsAnswer(fd, res > 0 ? min(res, peers) : 0, (mf & MF_CLOSE) != 0, (mf & MF_HEAD) != 0);
}

function metricsAnswer(fd: i32, gathered: i32, close: bool, head: bool): void {
  snapshot(own);
  if (!renderMetrics(own, gather, gathered, snapSize)) { answer(fd, 500, true, false); return; }
  respond(fd, 200, "text/plain; version=0.0.4; charset=utf-8", renderBuf, renderLen, close, head);
}

function answer(fd: i32, status: i32, close: bool, head: bool): void {
  const n = textInto(status == 200 ? "ok\n" : status == 503 ? "shutting down\n" : status == 404 ? "not found\n"
    : status == 405 ? "method not allowed\n" : status == 431 ? "request header fields too large\n"
    : status == 500 ? "metrics too large\n" : "bad request\n");
  respond(fd, status, "text/plain; charset=utf-8", textBuf, n, close, head);
}

function respond(fd: i32, status: i32, type: string, body: usize, bodyLen: i32, close: bool, head: bool): void {
  const c = conn(fd);
  store<i32>(c + M_FLAGS, close ? MF_CLOSE : 0);
  const hl = headInto(status, type, bodyLen, close);
  // Not --write-buf-max: an exposition with many upstreams may be larger
  // (about 2.7 KiB each); the render buffer bounds it.
  const limit = hl + renderCap();
  if (!outAppendUpTo(fd, headBuf, hl, limit) || (!head && !outAppendUpTo(fd, body, bodyLen, limit))) { connClose(fd); return; }
  store<i32>(c + C_STATE, MS_WRITE);
  setFlag(fd, CF_READ_PAUSED);
  if (load<i32>(c + C_INFLIGHT) == 0) outStep(fd);
}
