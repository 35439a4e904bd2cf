// An in-memory host for the bare core: build/core.wasm with no OS at all.
//
// It plays the part of host/loop.ts and of the kernel behind it. The pump
// is the host's own (host/pump.ts, bundled to build/pump.js): this file is
// only its executor (`carryOut`, a scripted kernel) and its inputs:
//
//   - Time is whatever the test says (`setTime`); nothing reads a clock.
//   - Event batches are whatever the test says (`dispatch([{fd, events}])`),
//     written into the event area as a backend's wait() writes them: event
//     records (abi.ts EVENT_*, through test/lib/abi.mjs writeEvents) with EV_*
//     bits, the fd and the slot generation the core last sent for that fd in
//     an OP_CTL (a2). Pass `gen` to forge a stale event.
//   - Every submission is answered by a script: per op, or per op and fd, a
//     constant, a queue of results, or a function. Without a script a small
//     socket model answers (READ: queued input or -EAGAIN; WRITE: as many
//     bytes as the peer has room for; SENDFILE: the whole chunk (bytes not
//     modelled); ACCEPT: queued fds or -EAGAIN; CTL,
//     CLOSE: 0; CALL: the JS callback registered under that id).
//   - Every SQE carried out is appended to `log` with its result, so a test
//     can assert what the core asked for, in which phase and in which order.
//
// The JS-facing calls (register, modify, deregister, defer, timers, listen)
// go through the core's exports exactly as host/reactor.ts does, including
// the flush of changes made outside a phase.
//
// Deterministic: no clock, no randomness, no I/O. The same calls produce the
// same log, which is what replaying a recorded session needs.
import { loadCore } from "./core.mjs";
import abi, { opName, writeEvents } from "./abi.mjs";
import { Pump } from "../../build/pump.js";
import { decodeSqe, writeCqe } from "../../build/sqe.js";

const CALL_FAILED = -1;       // what host/loop.ts answers when a callback throws
const MAX_ROUNDS = 1_000_000; // per phase; more means the core is looping forever

/** Core config, in host/core.ts's names. Small tables keep each instance cheap. */
export const defaultConfig = {
  maxFds: 256,
  mode: "lt",               // "lt" | "et"
  idleTimeoutMs: 0,
  headerTimeoutMs: 0,
  writeBufMax: 256 * 1024,
  maxLine: 8 * 1024,
  maxHeader: 16 * 1024,
  maxHeaders: 100,
  maxBody: 1024 * 1024,
  maxEvents: 64,
  accessLog: false,
  readBuf: 32 * 1024,
  fileCacheFds: 0,          // files the open-file cache may keep open (0: one per entry)
  maxConnections: 0,        // accepted connections open at most (0: no cap)
  metricsPeers: 0,          // other workers' snapshots a /metrics scrape sums (OP_METRICS: answer() it)
};

const CFG_FIELDS = {
  maxFds: abi.CFG_MAX_FDS, idleTimeoutMs: abi.CFG_IDLE_TIMEOUT,
  headerTimeoutMs: abi.CFG_HEADER_TIMEOUT, writeBufMax: abi.CFG_WRITE_BUF_MAX, maxLine: abi.CFG_MAX_LINE,
  maxHeader: abi.CFG_MAX_HEADER, maxHeaders: abi.CFG_MAX_HEADERS, maxBody: abi.CFG_MAX_BODY,
  maxEvents: abi.CFG_MAX_EVENTS, readBuf: abi.CFG_READ_BUF, metricsPeers: abi.CFG_METRICS_PEERS, fileCacheFds: abi.CFG_FILE_CACHE_FDS,
  maxConnections: abi.CFG_MAX_CONNECTIONS,
};

/**
 * Fills the FILE record at `rec` as the host's open/stat does for a regular
 * file of `size` bytes (mtime 1.6e12 ms, inode 7, device 1, no sidecars;
 * `mime` "" leaves the Content-Type to the core's default).
 */
export function fillFileRecord(host, rec, size, mime = "") {
  const dv = host.dv;
  dv.setInt32(rec + abi.FILE_KIND, abi.FILE_REGULAR, true);
  dv.setFloat64(rec + abi.FILE_BYTES, size, true);
  dv.setFloat64(rec + abi.FILE_MTIME, 1.6e12, true);
  dv.setFloat64(rec + abi.FILE_INO, 7, true);
  dv.setFloat64(rec + abi.FILE_DEV, 1, true);
  dv.setInt32(rec + abi.FILE_FLAGS, 0, true);
  const m = Buffer.from(mime);
  host.u8.set(m, rec + abi.FILE_MIME);
  dv.setInt32(rec + abi.FILE_MIME_LEN, m.length, true);
}

/** A peer socket as the fake kernel sees it. */
class FakeSocket {
  input = [];           // Buffers the peer sent, not yet read
  eof = false;          // the peer shut down its side: read() -> 0 once input is empty
  error = 0;            // errno every read/write fails with (ECONNRESET...)
  room = Infinity;      // bytes the send buffer still takes; 0 -> EAGAIN
  output = [];          // Buffers the core wrote
  written = 0;
  closed = false;
}

/** A pipe (OP_PIPE): bytes spliced in from a socket wait here until spliced out to one. */
class FakePipe {
  chunks = [];          // Buffers, oldest first
  bytes = 0;
  cap = 65536;          // what it takes (a real pipe counts 16 buffers; bytes are enough here)
  open = 2;             // ends not closed yet
}

export class FakeHost {
  /**
   * @param {object} [options]
   * @param {Partial<typeof defaultConfig>} [options.config]
   * @param {number} [options.time]      initial loop time (ms)
   * @param {bigint} [options.memBase]   the absolute address the core is told its memory lives at;
   *                                     not 0, so an iovec that forgets to add it is caught
   * @param {boolean} [options.rethrow]  rethrow the first error a JS callback threw once the
   *                                     phase is over (default true), instead of only answering -1
   */
  constructor({ config = {}, time = 0, memBase = 1n << 32n, rethrow = true } = {}) {
    this.config = { ...defaultConfig, ...config };
    this.memBase = memBase;
    this.rethrow = rethrow;
    this.core = loadCore();
    this.x = this.core.x;
    this.ctl = this.x.ctlAddress();

    /** Every SQE carried out: {phase, op, name, fd, a0, a1, a2, a3, res}. */
    this.log = [];
    /** false: stop appending to `log` (long soak runs). */
    this.keepLog = true;
    /** OP_LOG lines: {level, text}. */
    this.logs = [];
    /** Traps contained with recover(): {message, fd}. */
    this.traps = [];
    /** Refused epoll_ctl calls the core reported for JS handlers (CALL_CTL_ERROR): {fd, id, errno, op}. */
    this.ctlErrors = [];
    /** Errors thrown by JS callbacks (answered -1, as host/loop.ts does). */
    this.callErrors = [];
    /** The fake interest set: fd -> {events (EV_* bits), gen}; what a backend would hold. */
    this.epoll = new Map();
    /** OP_CTLs a real backend would have refused (ADD of a member, MOD/DEL of a stranger). */
    this.epollViolations = [];
    /** fd -> the generation of the last OP_CTL for it (a2). */
    this.lastGen = new Map();

    this.sockets = new Map();
    this.accepts = new Map();  // listener fd -> queue of accept4 results
    this.answers = new Map();  // "op" or "op:fd" -> script
    this.io = new Map();       // handler id -> cb(fd, events)
    this.timers = new Map();   // timer id -> cb()
    this.tasks = new Map();    // task id -> cb()
    this.nextHandlerId = 1;
    this.nextTaskId = 1;
    // The shared pump; the executor is carryOut() (a subclass may replace it).
    const executor = { submit: (sq, cq, n) => this.carryOut(n, sq, cq) ?? n };
    // A subclass that keeps requests in flight past their round hands their
    // completions back with reapInto(cq, max) -> count (the completion phase).
    if (typeof this.reapInto === "function") executor.reap = (cq, max) => this.reapInto(cq, max);
    this.pump = new Pump(this, executor, {
      onTrap: (e, fd) => this.traps.push({ message: e.message, fd }),
      maxRounds: MAX_ROUNDS,
    });

    const c = this.config;
    const i = this.i32;
    const at = (off) => (this.ctl + off) >> 2;
    for (const [name, off] of Object.entries(CFG_FIELDS)) i[at(off)] = c[name];
    i[at(abi.CFG_MODE)] = c.mode === "et" || c.mode === abi.MODE_ET ? abi.MODE_ET : abi.MODE_LT;
    // true: combined; or an ACCESS_LOG_* value
    i[at(abi.CFG_ACCESS_LOG)] = typeof c.accessLog === "number" ? c.accessLog : c.accessLog ? abi.ACCESS_LOG_COMBINED : 0;
    // Fairness and watermarks (abi.ts FCFG_*): 0 = the core's default, -1 = no limit.
    const fair = this.x.fairnessConfig();
    for (const [name, off] of [["tickRequests", abi.FCFG_TICK_REQUESTS], ["tickBytes", abi.FCFG_TICK_BYTES],
      ["writeHighWaterMark", abi.FCFG_WRITE_HIGH], ["writeLowWaterMark", abi.FCFG_WRITE_LOW]]) {
      this.dv.setInt32(fair + off, c[name] ?? 0, true);
    }
    // The proxy (PROTO_PROXY_TCP): config.proxy = { balance, connectTimeoutMs, upstreamTimeoutMs, upstreams: [{ port, weight }] },
    // upstreams on 127.0.0.1 (sockaddr_in as the host writes it, abi.ts PXC_*).
    if (c.proxy) {
      const px = c.proxy;
      // the balance config record (abi.ts BCFG_*): px.balance is a BAL_* id
      this.dv.setInt32(this.x.balanceConfig() + abi.BCFG_POLICY, px.balance ?? abi.BAL_RR, true);
      i[at(abi.CFG_PEER_ADDRS)] = px.balance === abi.BAL_IP_HASH ? 1 : 0;
      i[at(abi.CFG_PROXY_CONNECT_TIMEOUT)] = px.connectTimeoutMs ?? 0;
      i[at(abi.CFG_PROXY_UPSTREAM_TIMEOUT)] = px.upstreamTimeoutMs ?? 0; // http mode: no response head in time -> 504
      i[at(abi.CFG_PROXY_KEEPALIVE)] = px.keepalive ?? 0; // http mode: idle pooled connections per upstream (0: no pool)
      i[at(abi.CFG_RELAY)] = px.relay ?? abi.RELAY_COPY; // RELAY_SPLICE: OP_PIPE / OP_SPLICE (the pipe model below)
      // active health checks: px.health = { check: CHECK_*, intervalMs, timeoutMs, path, rise, fall }
      if (px.health) {
        const b = this.x.balanceConfig(), hc = px.health;
        this.dv.setInt32(b + abi.BCFG_CHECK, hc.check ?? abi.CHECK_TCP, true);
        this.dv.setInt32(b + abi.BCFG_CHECK_INTERVAL, hc.intervalMs ?? 0, true);
        this.dv.setInt32(b + abi.BCFG_CHECK_TIMEOUT, hc.timeoutMs ?? 0, true);
        this.dv.setInt32(b + abi.BCFG_RISE, hc.rise ?? 0, true);
        this.dv.setInt32(b + abi.BCFG_FALL, hc.fall ?? 0, true);
        const path = Buffer.from(hc.path ?? "", "latin1");
        this.dv.setInt32(b + abi.BCFG_CHECK_PATH_LEN, path.length, true);
        this.u8.set(path, b + abi.BCFG_CHECK_PATH);
      }
      const rec = this.x.proxyConfig();
      const dv = this.dv;
      dv.setInt32(rec, px.upstreams.length, true);
      px.upstreams.forEach((u, k) => {
        const e = rec + 4 + k * abi.PXU_SIZE;
        dv.setInt32(e + abi.PXU_WEIGHT, u.weight ?? 1, true);
        dv.setInt32(e + abi.PXU_SA_LEN, 16, true);
        dv.setUint16(e + abi.PXU_SA, abi.AF_INET, true);
        dv.setUint16(e + abi.PXU_SA + 2, u.port, false);
        dv.setUint32(e + abi.PXU_SA + 4, 0x7f000001, false);
      });
    }
    /** The fd the next OP_SOCKET returns (the proxy's upstream sockets), counting up. */
    this.nextSocketFd = 100;
    /** The fds the next OP_PIPE returns (read end, write end), counting up from here. */
    this.nextPipeFd = 200;
    /** Pipe fd -> { pipe: FakePipe, write: bool (the write end) }; an fd leaves when closed. */
    this.pipeEnds = new Map();
    this.dv.setBigUint64(this.ctl + abi.CTL_MEM_BASE, memBase, true);
    this.setTime(time);
    this.x.init();
  }

  // ---- memory ---------------------------------------------------------------
  // Views are made afresh on every use: the core may grow its memory in any
  // call, which detaches every view made before (see host/core.ts refresh()).

  get i32() { return new Int32Array(this.x.memory.buffer); }
  get u8() { return new Uint8Array(this.x.memory.buffer); }
  get dv() { return new DataView(this.x.memory.buffer); }
  memoryBytes() { return this.x.memory.buffer.byteLength; }
  ctlI32(off) { return this.dv.getInt32(this.ctl + off, true); }
  ctlF64(off) { return this.dv.getFloat64(this.ctl + off, true); }

  // ---- inputs: time and events ----------------------------------------------

  /** Sets the loop time (CTL_NOW, monotonic ms) and a wall clock derived from it. */
  setTime(ms) {
    this.now = ms;
    this.dv.setFloat64(this.ctl + abi.CTL_NOW, ms, true);
    this.dv.setFloat64(this.ctl + abi.CTL_WALL, 1_700_000_000_000 + ms, true);
  }

  /**
   * Writes a batch into the event area as a backend's wait() would; returns
   * its size. Each item: {fd, events (EV_* bits), gen?}; gen defaults to the
   * generation the core last put in an OP_CTL for that fd.
   */
  events(batch) {
    if (batch.length > this.ctlI32(abi.CTL_EVENTS_CAP)) throw new RangeError(`batch of ${batch.length} exceeds maxevents`);
    return writeEvents(this.dv, this.ctlI32(abi.CTL_EVENTS),
      batch.map(({ fd, events, gen }) => ({ fd, events, gen: gen ?? this.lastGen.get(fd) ?? 0 })));
  }

  // ---- phases (what host/loop.ts's tick() calls) ----------------------------

  runTimers() { this.drain("timers", () => this.x.runTimers()); }
  /** Hands a batch of events to the core (phase 3). */
  dispatch(batch = []) { const n = this.events(batch); this.drain("dispatch", () => this.x.dispatch(n)); }
  runDeferred() { this.drain("deferred", () => this.x.runDeferred()); }
  pollTimeout() { return this.x.pollTimeout(); }
  /** Applies changes made outside a phase; a no-op inside one (the phase applies them). */
  flush() { if (!this.draining) this.drain("flush", () => this.x.flush()); }

  /** The completion phase (only with reapInto): completions of requests kept in flight. */
  reap() { this.pump.reap(); this.rethrowCallErrors(); }

  /** One tick with `batch` standing in for the backend wait's result (the phases of Pump.tick). */
  tick(batch = []) {
    this.runTimers();
    if (this.pump.executor.reap) this.reap();
    this.dispatch(batch);
    this.runDeferred();
  }

  /** The phase running, "idle" between phases (the pump's). */
  get phase() { return this.pump.phase; }
  get draining() { return this.pump.inPhase; }

  /**
   * Calls a phase, carries out its rounds until it returns 0 (Pump.run; a
   * trap is contained and noted in `traps`), then rethrows what a JS
   * callback threw.
   */
  drain(phase, start) {
    this.pump.run(phase, start);
    this.rethrowCallErrors();
  }

  rethrowCallErrors() {
    if (this.rethrow && this.callErrors.length) {
      const e = this.callErrors.shift();
      this.callErrors.length = 0;
      throw e;
    }
  }

  /**
   * The executor: carries out SQ[0..n) at sq and writes CQ[0..n) at cq
   * (default: the current queues), in order. A subclass may write them in
   * another order, or more of them, and return how many.
   */
  carryOut(n, sq = this.ctlI32(abi.CTL_SQ), cq = this.ctlI32(abi.CTL_CQ)) {
    for (let k = 0; k < n; k++) {
      const at = sq + k * abi.SQE_SIZE;
      // {op, fd, a0..a3} as abi.ts documents them (host/sqe.ts), and the tag.
      // A JS call may grow memory: a fresh view per entry.
      const { tag, gen, ...sqe } = decodeSqe(this.i32, at);
      const res = this.respond(sqe) | 0;
      writeCqe(this.i32, cq, k, at, res);
      if (this.keepLog) this.log.push({ phase: this.phase, name: opName(sqe.op), ...sqe, res, tag, gen });
    }
  }

  // ---- the syscall answerer -------------------------------------------------

  /**
   * Scripts the result of `op`, for every fd or for one fd:
   *   answer(OP_ACCEPT, -EMFILE)              always this
   *   answer(OP_WRITE, 9, [-EAGAIN, 5])       these, in order, then the default
   *   answer(OP_READ, 9, (sqe, host) => n)    a function; undefined -> the default
   *   answer(OP_WRITE, 9, null)               remove the script
   * A per-fd script wins over a per-op one. A script replaces the socket model
   * for that call (a READ script that returns n > 0 must put the bytes at
   * sqe.a0 itself, with put()).
   */
  answer(op, ...rest) {
    const key = rest.length === 2 ? `${op}:${rest[0]}` : `${op}`;
    const script = rest[rest.length - 1];
    if (script === null) this.answers.delete(key); else this.answers.set(key, script);
    return this;
  }

  scripted(sqe) {
    for (const key of [`${sqe.op}:${sqe.fd}`, `${sqe.op}`]) {
      const s = this.answers.get(key);
      if (s === undefined) continue;
      if (typeof s === "number") return s;
      if (Array.isArray(s)) { if (s.length) return s.shift(); continue; }
      const r = s(sqe, this);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  respond(sqe) {
    const r = this.scripted(sqe);
    if (sqe.op === abi.OP_CTL) this.trackCtl(sqe, r ?? 0);
    if (sqe.op === abi.OP_CLOSE && this.pipeEnds.has(sqe.fd)) { this.pipeEnds.get(sqe.fd).pipe.open--; this.pipeEnds.delete(sqe.fd); return r ?? 0; }
    if (sqe.op === abi.OP_CLOSE) { this.epoll.delete(sqe.fd); this.socket(sqe.fd).closed = true; }
    return r ?? this.model(sqe);
  }

  /** The default answers: a tiny kernel. */
  model({ op, fd, a0, a1, a2, a3 }) {
    switch (op) {
      case abi.OP_READ: return this.read(fd, a0, a1);
      case abi.OP_WRITE: case abi.OP_SEND: return this.write(fd, [[a0, a1]]);
      case abi.OP_WRITEV: return this.write(fd, this.iovecs(a0, a1));
      case abi.OP_ACCEPT: { const q = this.accepts.get(fd); return q?.length ? q.shift() : -abi.EAGAIN; }
      case abi.OP_CALL: return this.call(a0, a1, fd, a2, a3);
      case abi.OP_LOG:
        this.logs.push({ level: a2, text: Buffer.from(this.u8.subarray(a0, a0 + a1)).toString("latin1") });
        return 0;
      case abi.OP_OPEN: return -abi.ENOENT;
      case abi.OP_SOCKET: { const nfd = this.nextSocketFd++; this.sockets.delete(nfd); return nfd; }
      case abi.OP_PIPE: {
        const pipe = new FakePipe(), r = this.nextPipeFd++, w = this.nextPipeFd++;
        this.pipeEnds.set(r, { pipe, write: false }).set(w, { pipe, write: true });
        this.dv.setInt32(a0, r, true);
        this.dv.setInt32(a0 + 4, w, true);
        return 0;
      }
      case abi.OP_SPLICE: return this.splice(a3, a0, a1, a2);
      case abi.OP_SENDFILE: // the whole chunk, moving the offset at a1 as the kernel does (the bytes are not modelled)
        this.dv.setBigInt64(a1, this.dv.getBigInt64(a1, true) + BigInt(a2), true);
        return a2;
      default: return 0; // CTL, CLOSE, SHUTDOWN, STOP, NOP, CONNECT (connected at once)
    }
  }

  /** Keeps the fake interest set, and notes what a real backend would have refused. */
  trackCtl({ fd, a0: op, a1: events, a2: gen }, res) {
    this.lastGen.set(fd, gen);
    if (res < 0) return;
    const member = this.epoll.has(fd);
    if ((op === abi.INTEREST_ADD && member) || (op !== abi.INTEREST_ADD && !member)) {
      this.epollViolations.push({ fd, op, events, member });
    }
    if (op === abi.INTEREST_DEL) this.epoll.delete(fd);
    else this.epoll.set(fd, { events, gen });
  }

  read(fd, ptr, len) {
    const s = this.socket(fd);
    if (s.error) return -s.error;
    if (s.input.length === 0) return s.eof ? 0 : -abi.EAGAIN;
    let n = 0;
    while (n < len && s.input.length) {
      const chunk = s.input[0];
      const k = Math.min(chunk.length, len - n);
      this.u8.set(chunk.subarray(0, k), ptr + n);
      n += k;
      if (k === chunk.length) s.input.shift(); else s.input[0] = chunk.subarray(k);
    }
    return n;
  }

  /** splice(fdIn -> fdOut): socket -> a pipe's write end, or a pipe's read end -> socket, as the kernel would. */
  splice(fdIn, fdOut, len, flags) {
    if (flags & ~(abi.SPLICE_FLAGS | abi.SPLICE_TO_PIPE)) throw new Error(`OP_SPLICE: unknown flags ${flags}`);
    const inEnd = this.pipeEnds.get(fdIn), outEnd = this.pipeEnds.get(fdOut);
    if (!inEnd === !outEnd) return -abi.EINVAL; // exactly one side is a pipe here (no socket-socket, no pipe-pipe)
    if (outEnd) { // socket -> pipe
      if (!outEnd.write || !(flags & abi.SPLICE_TO_PIPE)) return -abi.EBADF;
      const s = this.socket(fdIn), p = outEnd.pipe;
      if (s.error) return -s.error;
      if (s.input.length === 0) return s.eof ? 0 : -abi.EAGAIN;
      if (p.bytes >= p.cap) return -abi.EAGAIN;
      let n = 0;
      const max = Math.min(len, p.cap - p.bytes);
      while (n < max && s.input.length) {
        const chunk = s.input[0], k = Math.min(chunk.length, max - n);
        p.chunks.push(chunk.subarray(0, k));
        n += k;
        if (k === chunk.length) s.input.shift(); else s.input[0] = chunk.subarray(k);
      }
      p.bytes += n;
      return n;
    }
    if (inEnd.write || (flags & abi.SPLICE_TO_PIPE)) return -abi.EBADF; // pipe -> socket
    const s = this.socket(fdOut), p = inEnd.pipe;
    if (s.error) return -s.error;
    if (p.bytes === 0) return -abi.EAGAIN;
    if (s.room === 0) return -abi.EAGAIN;
    let n = 0;
    const max = Math.min(len, p.bytes, s.room);
    while (n < max) {
      const chunk = p.chunks[0], k = Math.min(chunk.length, max - n);
      s.output.push(Buffer.from(chunk.subarray(0, k)));
      n += k;
      if (k === chunk.length) p.chunks.shift(); else p.chunks[0] = chunk.subarray(k);
    }
    p.bytes -= n;
    if (s.room !== Infinity) s.room -= n;
    s.written += n;
    return n;
  }

  /** Pipe fds open (not closed by the core): a leak check. */
  openPipeFds() { return [...this.pipeEnds.keys()]; }

  /** segments: [[ptr, len], ...] relative to linear memory. */
  write(fd, segments) {
    const s = this.socket(fd);
    if (s.error) return -s.error;
    if (s.room === 0) return -abi.EAGAIN;
    let left = s.room, n = 0;
    for (const [ptr, len] of segments) {
      const k = Math.min(len, left);
      if (k > 0) s.output.push(Buffer.from(this.u8.subarray(ptr, ptr + k)));
      n += k;
      left -= k;
      if (k < len) break;
    }
    if (s.room !== Infinity) s.room -= n;
    s.written += n;
    return n;
  }

  /** Native iovecs (u64 absolute base, u64 length) -> [[ptr, len]] in linear memory. */
  iovecs(at, count) {
    const dv = this.dv, out = [];
    for (let k = 0; k < count; k++) {
      const abs = dv.getBigUint64(at + k * 16, true);
      if (abs < this.memBase) throw new Error(`iovec ${k} points below linear memory (${abs})`);
      out.push([Number(abs - this.memBase), Number(dv.getBigUint64(at + k * 16 + 8, true))]);
    }
    return out;
  }

  call(kind, id, fd, events, extra) {
    if (kind === abi.CALL_CTL_ERROR) {
      // The core removed handler id: the kernel refused its epoll_ctl.
      this.ctlErrors.push({ fd, id, errno: events, op: extra });
      this.io.delete(id);
      return 0;
    }
    const cb = kind === abi.CALL_IO ? this.io.get(id) : kind === abi.CALL_TIMER ? this.timers.get(id) : this.tasks.get(id);
    if (kind === abi.CALL_TASK) this.tasks.delete(id);
    if (!cb) return 0;
    try {
      if (kind === abi.CALL_IO) cb(fd, events); else cb();
      return 0;
    } catch (e) {
      this.callErrors.push(e);
      return CALL_FAILED;
    }
  }

  // ---- the peers: sockets and listeners -------------------------------------

  /** The fake kernel's view of fd (created on first use). */
  socket(fd) {
    let s = this.sockets.get(fd);
    if (!s) this.sockets.set(fd, (s = new FakeSocket()));
    return s;
  }

  /** The peer sends bytes (string or Buffer) on fd; the next READs return them. */
  feed(fd, data) { this.socket(fd).input.push(Buffer.from(data)); return this; }
  /** The peer shuts down its side: READ returns 0 once the input is consumed. */
  peerEof(fd) { this.socket(fd).eof = true; return this; }
  /** The send buffer takes `bytes` more (Infinity: no limit; 0: EAGAIN). */
  room(fd, bytes) { this.socket(fd).room = bytes; return this; }
  /** JS closed fd itself (close(2) outside the core): the kernel drops it from the epoll set. */
  closeFd(fd) { this.epoll.delete(fd); this.sockets.delete(fd); return this; }
  /** Everything the core wrote to fd. */
  output(fd) { return Buffer.concat(this.socket(fd).output); }
  /** Forgets what was written to fd (long runs). */
  takeOutput(fd) { const b = this.output(fd); this.socket(fd).output = []; return b; }
  /** The next accept4() calls on lfd return these (fds or -errno), then -EAGAIN. */
  queueAccept(lfd, ...results) {
    const q = this.accepts.get(lfd) ?? [];
    q.push(...results);
    this.accepts.set(lfd, q);
    for (const r of results) if (r >= 0) this.sockets.delete(r); // a new socket behind a reused number
    return this;
  }
  /** Copies bytes into linear memory (for READ scripts). */
  put(ptr, data) { const b = Buffer.from(data); this.u8.set(b, ptr); return b.length; }

  // ---- the JS-facing API, as host/reactor.ts uses it ------------------------

  /** Calls cb(fd, events) on readiness; events are REACTOR_* bits. Returns the handler id. */
  register(fd, interest, cb) {
    const id = this.nextHandlerId++;
    this.check("register", this.x.register(fd, interest, id));
    this.io.set(id, cb);
    this.flush();
    return id;
  }

  modify(fd, interest) { this.check("modify", this.x.modify(fd, interest)); this.flush(); }

  deregister(fd, closing = false) { this.check("deregister", this.x.deregister(fd, closing ? 1 : 0)); this.flush(); }

  /** Runs cb after the current batch (in the deferred phase). Returns the task id. */
  defer(cb) {
    const id = this.nextTaskId++;
    if (!this.x.defer(id)) throw new RangeError("defer: task queue full");
    this.tasks.set(id, cb);
    return id;
  }

  setTimeout(ms, cb) { return this.timerStart(ms, 0, cb); }
  setInterval(ms, cb) { return this.timerStart(ms, ms > 0 ? ms : 1, cb); }
  timerStart(ms, repeatMs, cb) {
    const id = this.x.timerStart(ms, repeatMs);
    this.check("timerStart", id);
    this.timers.set(id, cb);
    return id;
  }
  /** Cancels a JS timer; false if it was not live. */
  timerStop(id) { return this.x.timerStop(id) !== 0; }

  /** A listening socket served by a built-in protocol (PROTO_ECHO...). */
  listen(fd, proto = abi.PROTO_ECHO) {
    this.check("listen", this.x.listen(fd, proto));
    this.socket(fd);
    this.flush();
  }

  check(call, r) {
    if (r < 0) { const e = new Error(`${call}: -${r}`); e.errno = -r; throw e; }
    return r;
  }

  // ---- reading the log ------------------------------------------------------

  /** Log entries from index `from`, optionally only of op (and fd). */
  ops(op, { fd, from = 0 } = {}) {
    return this.log.slice(from).filter((e) => (op === undefined || e.op === op) && (fd === undefined || e.fd === fd));
  }

  /** The JS calls (OP_CALL) from index `from`, as {kind, id, fd, events}. */
  calls(from = 0) {
    return this.ops(abi.OP_CALL, { from }).map((e) => ({ kind: e.a0, id: e.a1, fd: e.fd, events: e.a2 }));
  }

  stat(off) { return this.ctlI32(off); }
}

/**
 * A FakeHost that keeps fd `holdFd`'s reads (or its `holdOp` requests) in
 * flight while `holding` is true; the completion phase completes them once it
 * is false again (a read that returns in a later tick, as io_uring's or the
 * file pool's do).
 */
export class HoldHost extends FakeHost {
  constructor(holdFd, options) { super(options); this.holdFd = holdFd; this.holdOp = abi.OP_READ; this.holding = false; this.held = []; }
  carryOut(n, sq, cq) {
    let k = 0;
    for (let i = 0; i < n; i++) {
      const { tag, gen, ...sqe } = decodeSqe(this.i32, sq + i * abi.SQE_SIZE);
      if (this.holding && sqe.op === this.holdOp && sqe.fd === this.holdFd) this.held.push({ sqe, tag, gen });
      else this.finish(cq, k++, sqe, tag, gen);
    }
    return k;
  }
  reapInto(cq, max) {
    if (this.holding) return 0;
    const take = this.held.splice(0, max);
    take.forEach(({ sqe, tag, gen }, k) => this.finish(cq, k, sqe, tag, gen));
    return take.length;
  }
  finish(cq, k, sqe, tag, gen) {
    const res = this.respond(sqe) | 0;
    this.i32.set([tag, gen, res, 0], (cq >> 2) + k * (abi.CQE_SIZE >> 2));
    this.log.push({ phase: this.phase, ...sqe, res, tag, gen });
  }
}
