// Active health checks (issue 10; HAProxy's `check`): every upstream is
// probed every `interval` ms on a connection of its own (PROTO_PROXY_PROBE),
// and each probe's outcome goes to upstreamHealthResult (upstreams.ts), which
// counts rise/fall, changes the state and logs it once.
//
// Probes: `tcp` = a connect that succeeds, then close; `http` = connect,
// `GET <path> HTTP/1.1` with Host, Connection: close and a User-Agent, and
// the response head parsed by http/response.ts: 2xx or 3xx is good (HAProxy's
// httpchk), anything else, an invalid head, a close or an error before the
// head, or no head within `timeout` ms is bad. The body is never read.
//
// Schedule: one TimerKind.PROTO timer per upstream (protocol.ts), repeating
// every interval; upstream u's first probe is at u/n of the first interval
// (HAProxy spreads its first checks the same way), so n upstreams are not
// probed at the same instant. A timer that fires while its upstream's probe
// is still out does nothing: never more than one probe per upstream, however
// the timeout compares to the interval. Each firing emits one request.
//
// Default timeout 1000 ms (HAProxy's `timeout check` defaults to inter, 2 s):
// half the default interval, so a probe that hangs is over before the next
// one is due and a hung upstream is down after fall x interval, not later.
//
// Nothing is allocated per probe: the connection record, a receive buffer
// from the pool, the write ring for the request (pool.ts), and the records
// below (static, one per upstream).
//
// OP_SOCKET / OP_CONNECT completions are routed to one protocol (protocol.ts
// protocolOwnsOp). This module takes them over only when checks are on and
// hands every one that is not a probe's to the owner registered before it
// (tcp.ts): a probe's OP_SOCKET names no connection (the new fd is not ours
// yet), so it is submitted on behalf of fd -2 - u, which no connection is.
//
// Shutdown: a graceful shutdown drains the probes (closed at once, no result)
// and the next firing of each timer frees it.
import {
  OP_READ, OP_SOCKET, OP_CONNECT, OP_CLOSE, EAGAIN, AF_INET, AF_INET6, SA_FAMILY, SA_IN_ADDR, SA_IN6_ADDR,
  SA_PORT, SA_LEN, C_INFLIGHT, C_RBUF, C_RLEN, C_STATE, C_PROTO, C_PROTO_AREA, UPSTREAMS_MAX,
  PROTO_PROXY_PROBE, BCFG_CHECK, BCFG_CHECK_INTERVAL, BCFG_CHECK_TIMEOUT, BCFG_CHECK_PATH_LEN, BCFG_CHECK_PATH, BCFG_CHECK_PORT,
  CHECK_PATH_MAX, CHECK_NONE, CHECK_HTTP, CHECK_RES_CONNECTED, CHECK_RES_TIMEOUT, CHECK_RES_INVALID, CHECK_RES_CLOSED,
} from "../abi";
import { submit, now, setCurrentFd } from "../reactor/ctl";
import { readBufTake, readBufSize, readBufCap } from "../reactor/pool";
import {
  conn, cget, cset, flags, setFlag, clearFlag, enqueue, outPending, outStep, outDone, outAppend, outBlocked, connClose,
  setDeadline, etMode, connOpen, connRefreshInterest, draining, CF_READABLE, CF_WRITABLE, CF_OUT_ARMED,
  CF_NO_READ, OUT_FAILED,
} from "../reactor/conn";
import { H_CONN, maxFds } from "../reactor/handlers";
import { Protocol, protocolOwnsOp, protocolTimerAdd, opOwner, protoService } from "../reactor/protocol";
import { timerRearm, timerFree, timerDeadline } from "../reactor/timers";
import { parseResponse, resetResponse, RESP_STATUS, RESP_FLAGS, RS_INTERIM } from "../http/response";
import { upstreamCount, upstreamAddr, upstreamAddrLen, upstreamHealthResult } from "./upstreams";
import { balanceConfig } from "./balance";
import {
  X_UP, closeSafe, askSocket, askConnect, connectAgain, connectOutcome, connectCompleted, CONNECT_OK, CONNECT_WAIT,
} from "./link";

// probe connection states (C_STATE)
const S_CONNECTING = 1;
const S_SEND = 2;      // the request is being written (http)
const S_RECV = 3;      // reading the response head (http)
// protocol area: X_UP (the upstream probed) is link.ts's; then
const X_RESP = C_PROTO_AREA + 16;     // RESP record (48 bytes) of the head being parsed

// Per-upstream record, R_SIZE bytes.
const R_SIZE = 32;
const R_STATE = 0;     // H_*
const R_FD = 4;        // the probe's fd while H_OPEN
const R_TIMER = 8;     // its timer (0: none)
const R_LAST = 12;     // CHECK_RES_* / HTTP status / -errno of the last probe that finished
const R_PROBES = 16;   // f64 probes finished
const R_FAILED = 24;   // f64 of which bad
const H_IDLE = 0;
const H_SOCKET = 1;    // OP_SOCKET in flight
const H_OPEN = 2;      // a probe connection is open

const MAX_HEADERS = 100;

const recs: usize = memory.data(UPSTREAMS_MAX * R_SIZE, 16);
// The request being formatted (path, Host), copied into the probe's write ring.
const REQ_MAX = CHECK_PATH_MAX + 160;
const req: usize = memory.data(REQ_MAX, 16);
const HEX: usize = memory.data<u8>([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]);

let kind: i32 = CHECK_NONE;
let interval: f64 = 2000;
let timeout: f64 = 1000;
// With a check port (BCFG_CHECK_PORT), each upstream's address with that port:
// SA_SLOT bytes per upstream, allocated once, only when a check port is set
// (0: probes connect to the upstream's own address).
const SA_SLOT = SA_LEN; // sockaddr_in6, the larger of the two
let checkAddrs: usize = 0;
let checkPort: i32 = 0;
let prevSocketOwner: i32 = 0;
let prevConnectOwner: i32 = 0;

@inline function rec(u: i32): usize { return recs + <usize>(u * R_SIZE); }
@inline function rget(u: i32, off: i32): i32 { return load<i32>(rec(u) + <usize>off); }
@inline function rset(u: i32, off: i32, v: i32): void { store<i32>(rec(u) + <usize>off, v); }

/** Reads the check settings (BCFG_CHECK*) and starts the timers; call after the upstreams are loaded. */
export function healthProtocol(): Protocol {
  const cfg = balanceConfig();
  kind = load<i32>(cfg + BCFG_CHECK);
  const iv = load<i32>(cfg + BCFG_CHECK_INTERVAL), to = load<i32>(cfg + BCFG_CHECK_TIMEOUT);
  interval = iv > 0 ? <f64>iv : 2000;
  timeout = to > 0 ? <f64>to : 1000;
  const n = upstreamCount();
  memory.fill(recs, 0, <usize>(UPSTREAMS_MAX * R_SIZE));
  checkPort = load<i32>(cfg + BCFG_CHECK_PORT) & 0xffff;
  if (checkPort != 0) {
    if (checkAddrs == 0) checkAddrs = heap.alloc(<usize>(UPSTREAMS_MAX * SA_SLOT));
    for (let u = 0; u < n; u++) {
      const at = checkAddrs + <usize>(u * SA_SLOT);
      memory.copy(at, upstreamAddr(u), <usize>min(upstreamAddrLen(u), SA_SLOT));
      store<u16>(at + SA_PORT, bswap<u16>(<u16>checkPort));
    }
  }
  const p = new Protocol();
  p.run = probeRun;
  p.complete = probeComplete;
  p.timeout = probeTimeout;
  p.drain = probeDrain;
  p.close = probeClose;
  p.service = probeService;
  p.timer = probeTimer;
  if (kind == CHECK_NONE || n == 0) { kind = CHECK_NONE; return p; }
  prevSocketOwner = opOwner(OP_SOCKET);
  prevConnectOwner = opOwner(OP_CONNECT);
  protocolOwnsOp(PROTO_PROXY_PROBE, OP_SOCKET);
  protocolOwnsOp(PROTO_PROXY_PROBE, OP_CONNECT);
  const t = now();
  for (let u = 0; u < n; u++) {
    rset(u, R_FD, -1);
    const id = protocolTimerAdd(PROTO_PROXY_PROBE, u, t + interval * <f64>u / <f64>n);
    rset(u, R_TIMER, id > 0 ? id : 0);
  }
  return p;
}

/** Probes of u that finished, and how many of them were bad; the last one's outcome (CHECK_RES_*, status, -errno). */
export function healthProbes(u: i32): f64 { return <u32>u < <u32>UPSTREAMS_MAX ? load<f64>(rec(u) + R_PROBES) : 0; }
export function healthFailed(u: i32): f64 { return <u32>u < <u32>UPSTREAMS_MAX ? load<f64>(rec(u) + R_FAILED) : 0; }
export function healthLast(u: i32): i32 { return <u32>u < <u32>UPSTREAMS_MAX ? rget(u, R_LAST) : 0; }
/** CHECK_* in force (CHECK_NONE when off or without upstreams). */
export function healthKind(): i32 { return kind; }

function probeTimer(id: i32, u: i32): void {
  if (draining || kind == CHECK_NONE || u >= upstreamCount()) { timerFree(id); if (u < UPSTREAMS_MAX) rset(u, R_TIMER, 0); return; }
  const t = now();
  let next = timerDeadline(id) + interval;
  if (next <= t) next = t + interval; // the loop stalled: no burst of probes to catch up
  timerRearm(id, next);
  if (rget(u, R_STATE) != H_IDLE) return; // the previous probe is still out
  rset(u, R_STATE, H_SOCKET);
  askSocket(-2 - u, u, 0);
}

/** OP_SOCKET and OP_CONNECT: the probes' here, every other to the owner before us. */
function probeService(op: i32, fd: i32, res: i32): void {
  if (op == OP_SOCKET) {
    if (fd <= -2) { socketDone(-2 - fd, res); return; }
    if (prevSocketOwner != 0) protoService(prevSocketOwner, op, fd, res);
    else if (res >= 0) submit(OP_CLOSE, res, 0, 0, 0, 0);
    return;
  }
  if (op == OP_CONNECT) {
    if (fd >= 0 && fd < maxFds && cget(fd, C_STATE) != 0 && cget(fd, C_PROTO) == PROTO_PROXY_PROBE) {
      if (!connectCompleted(fd, S_CONNECTING)) return;
      setCurrentFd(fd);
      connectDone(fd, res);
      return;
    }
    if (prevConnectOwner != 0) protoService(prevConnectOwner, op, fd, res);
  }
}

function socketDone(u: i32, res: i32): void {
  if (<u32>u >= <u32>upstreamCount() || rget(u, R_STATE) != H_SOCKET) {
    if (res >= 0) submit(OP_CLOSE, res, 0, 0, 0, 0);
    return;
  }
  rset(u, R_STATE, H_IDLE);
  if (res >= 0 && (draining || res >= maxFds)) { submit(OP_CLOSE, res, 0, 0, 0, 0); return; } // no result: not the upstream's doing
  if (res < 0) { result(u, false, res); return; } // EMFILE...: a bad probe, as HAProxy counts a socket error
  const fd = res;
  connOpen(fd, H_CONN, PROTO_PROXY_PROBE, S_CONNECTING);
  setCurrentFd(fd);
  cset(fd, X_UP, u);
  rset(u, R_STATE, H_OPEN);
  rset(u, R_FD, fd);
  setFlag(fd, CF_NO_READ); // WRITABLE only, until the request is out
  connRefreshInterest(fd);
  setDeadline(fd, timeout);
  askConnect(fd, probeAddr(u));
}

/** Where probes of u connect: its address, with the check port if one is set. */
function probeAddr(u: i32): usize {
  return checkPort != 0 ? checkAddrs + <usize>(u * SA_SLOT) : upstreamAddr(u);
}

function connectDone(fd: i32, res: i32): void {
  const o = connectOutcome(res);
  if (o == CONNECT_WAIT) { outBlocked(fd); return; } // WRITABLE reports the outcome
  if (o != CONNECT_OK) { finish(fd, false, res); return; }
  if (kind != CHECK_HTTP) { finish(fd, true, CHECK_RES_CONNECTED); return; }
  const n = formatRequest(cget(fd, X_UP));
  if (!outAppend(fd, req, n)) { finish(fd, false, CHECK_RES_INVALID); return; } // a write buffer limit below the request
  cset(fd, C_STATE, S_SEND);
  clearFlag(fd, CF_OUT_ARMED);
  setFlag(fd, CF_WRITABLE); // connected: writable
  connRefreshInterest(fd);
  enqueue(fd);
}

function probeRun(fd: i32): void {
  const c = conn(fd);
  if (load<i32>(c + C_INFLIGHT) != 0) return;
  const state = load<i32>(c + C_STATE);
  const f = flags(fd);
  if (state == S_CONNECTING) { connectAgain(fd, probeAddr(cget(fd, X_UP))); return; }
  if (state == S_SEND) {
    if (outPending(fd) && (f & CF_WRITABLE || !(f & CF_OUT_ARMED))) outStep(fd);
    return;
  }
  if (state == S_RECV && (f & CF_READABLE)) {
    let b = <usize>load<i32>(c + C_RBUF);
    if (b == 0) {
      b = readBufTake(readBufSize);
      store<i32>(c + C_RBUF, <i32>b);
      store<i32>(c + C_RLEN, 0);
      resetResponse(c + X_RESP);
    }
    const len = load<i32>(c + C_RLEN);
    submit(OP_READ, fd, <i32>(b + <usize>len), readBufCap(b) - len, 0, 0);
    store<i32>(c + C_INFLIGHT, OP_READ);
  }
}

function probeComplete(fd: i32, op: i32, res: i32): void {
  const c = conn(fd);
  const state = load<i32>(c + C_STATE);
  if (state == S_SEND) {
    if (outDone(fd, res) == OUT_FAILED) { finish(fd, false, res < 0 ? res : CHECK_RES_CLOSED); return; }
    if (!outPending(fd)) {
      cset(fd, C_STATE, S_RECV);
      clearFlag(fd, CF_NO_READ);
      setFlag(fd, CF_READABLE); // optimistic: EAGAIN costs one call
      connRefreshInterest(fd);
    }
    enqueue(fd);
    return;
  }
  store<i32>(c + C_INFLIGHT, 0);
  if (state != S_RECV || op != OP_READ) return;
  if (res == -EAGAIN) { clearFlag(fd, CF_READABLE); return; }
  if (res < 0) { finish(fd, false, res); return; }
  if (res == 0) { finish(fd, false, CHECK_RES_CLOSED); return; }
  const b = <usize>load<i32>(c + C_RBUF);
  const cap = readBufCap(b);
  const asked = cap - load<i32>(c + C_RLEN);
  let len = load<i32>(c + C_RLEN) + res;
  store<i32>(c + C_RLEN, len);
  const resp = c + X_RESP;
  while (true) {
    const r = parseResponse(b, len, resp, false, cap, MAX_HEADERS);
    if (r < 0) { finish(fd, false, CHECK_RES_INVALID); return; }
    if (r == 0) break;
    const status = load<i32>(resp + RESP_STATUS);
    if ((load<i32>(resp + RESP_FLAGS) & RS_INTERIM) == 0) { finish(fd, status >= 200 && status < 400, status); return; }
    // 1xx (103 Early Hints...): another head follows
    memory.copy(b, b + <usize>r, <usize>(len - r));
    len -= r;
    store<i32>(c + C_RLEN, len);
    resetResponse(resp);
  }
  if (len >= cap) { finish(fd, false, CHECK_RES_INVALID); return; } // a head larger than a receive buffer
  // LT: one read per readiness event. ET: on until a short read (drained).
  if (!etMode || res < asked) clearFlag(fd, CF_READABLE);
  enqueue(fd);
}

function probeTimeout(fd: i32): void { finish(fd, false, CHECK_RES_TIMEOUT); }

/** Shutdown: the probe goes now, with no result. */
function probeDrain(fd: i32): void { closeSafe(fd); }

/** connClose's hook (whoever closes it: finish, drain, closeAll, a contained trap). */
function probeClose(fd: i32): void {
  const u = cget(fd, X_UP);
  if (<u32>u < <u32>UPSTREAMS_MAX && rget(u, R_STATE) == H_OPEN && rget(u, R_FD) == fd) {
    rset(u, R_STATE, H_IDLE);
    rset(u, R_FD, -1);
  }
}

/** The probe on fd is over: close it and report. Nothing of it is in flight. */
function finish(fd: i32, ok: bool, code: i32): void {
  const u = cget(fd, X_UP);
  connClose(fd);
  result(u, ok, code);
}

function result(u: i32, ok: bool, code: i32): void {
  const r = rec(u);
  store<f64>(r + R_PROBES, load<f64>(r + R_PROBES) + 1);
  if (!ok) store<f64>(r + R_FAILED, load<f64>(r + R_FAILED) + 1);
  rset(u, R_LAST, code);
  upstreamHealthResult(u, ok, now());
}

// ---- the request ------------------------------------------------------------

let w: usize = 0;
function put(s: string): void {
  for (let i = 0; i < s.length; i++) store<u8>(w++, <u8>s.charCodeAt(i));
}
function putInt(v: i32): void {
  if (v >= 10) putInt(v / 10);
  store<u8>(w++, <u8>(48 + v % 10));
}

/** GET <path> HTTP/1.1 with Host: the address probed (as HAProxy's `http-check send hdr Host`). -> its length. */
function formatRequest(u: i32): i32 {
  const cfg = balanceConfig();
  w = req;
  put("GET ");
  const plen = min(load<i32>(cfg + BCFG_CHECK_PATH_LEN), CHECK_PATH_MAX);
  if (plen > 0) { memory.copy(w, cfg + BCFG_CHECK_PATH, <usize>plen); w += <usize>plen; } else put("/");
  put(" HTTP/1.1\r\nHost: ");
  const sa = probeAddr(u);
  const family = <i32>load<u16>(sa + SA_FAMILY);
  if (family == AF_INET6) {
    put("[");
    for (let i = 0; i < 8; i++) {
      if (i > 0) put(":");
      const g = <i32>bswap<u16>(load<u16>(sa + SA_IN6_ADDR + <usize>(i * 2)));
      let started = false;
      for (let s = 12; s >= 0; s -= 4) {
        const d = (g >> s) & 15;
        if (d == 0 && !started && s > 0) continue;
        started = true;
        store<u8>(w++, load<u8>(HEX + <usize>d));
      }
    }
    put("]");
  } else if (family == AF_INET) {
    for (let i = 0; i < 4; i++) { if (i > 0) put("."); putInt(<i32>load<u8>(sa + SA_IN_ADDR + <usize>i)); }
  }
  put(":");
  putInt(<i32>bswap<u16>(load<u16>(sa + SA_PORT)));
  put("\r\nConnection: close\r\nUser-Agent: wasm-reactor-health\r\n\r\n");
  return <i32>(w - req);
}
