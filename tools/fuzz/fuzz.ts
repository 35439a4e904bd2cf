// The fuzzer: the core, in-process and with no sockets, against a simulated
// kernel that is as unkind as the real one may be. A development tool, not
// part of the package (bundled to build/fuzz.js, outside dist/). Each
// iteration is a fresh core with random limits, driven through the same
// phases as host/loop.ts:
//
//  - clients arrive with HTTP requests (valid, pipelined, with bodies,
//    chunked, malformed) or echo bytes, mutated (byte flips, truncation,
//    duplicated segments) and delivered in random splits;
//  - writes are partial or EAGAIN at random; sendfile likewise;
//  - errno injection: ECONNRESET on reads and writes, EMFILE and
//    ECONNABORTED on accept, failed interest changes;
//  - event batches carry duplicated, reordered and stale events (events for
//    fds closed and reused earlier in the batch, older generations);
//  - JS handlers registered through the Reactor API call register,
//    deregister, modify, defer and timers from inside their callbacks;
//  - completions come back shuffled within their round (odd seeds), and in
//    half of those a connection's I/O requests stay in flight and complete
//    in a later tick (the pump's completion phase), so a buffer or fd
//    released while its request is in flight is caught;
//  - time jumps forward so timeouts and timers fire;
//  - a graceful shutdown starts at a random moment.
//
//  - readiness is delivered as the kernel does (deliver()): by level in LT,
//    only on a new edge in ET, so a core that stops before EAGAIN stalls;
//  - traps at random points (debugTrapFd), recovered as host/loop.ts does;
//  - in a third of the iterations a tcp-proxy listener beside the other: the
//    kernel plays its clients and the upstream servers its connects reach
//    (connects done at once, refused, in progress, timed out or hanging;
//    servers that reply and FIN at any point), with the hostility above on
//    both sides; relay.ts judges the relay as it goes and at the end.
//
// After every core call the invariants are checked (checkInvariants(): timer
// heap, zombie flags, handler/connection agreement, buffer bounds, run
// queue), along with the simulated kernel's own rules (no request on a closed
// fd, no double close, no write after shutdown, echo output equals echo
// input, every multipart/byteranges response exact: byteranges.ts). After the
// last tick the kernel settles (every byte arrives, peers read, no faults)
// and every connection is judged: HTTP against a reference model of the
// server (oracle.ts, files.ts), echo against its input. A trap, a broken
// invariant, a wrong answer or a livelock stops the run: the iteration's
// recording is saved in fuzz-failures/ (replays with `wasm-reactor replay
// FILE --check`), and `npm run fuzz -- --seed S --seconds 0` repeats it.
//
//   npm run fuzz -- --seconds 30 [--seed N] [--out DIR] [--no-traps] [--plant wrong-length|short-reads]
//
// (FUZZ_HIST=N: a relay failure lists the last N requests of each open proxy side.)
//
// (Over 500 lines: the simulated kernel is one class whose parts share its
// state; the parts that stand alone are in oracle.ts, files.ts, byteranges.ts.)
import { writeEvent } from "./events.ts";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as abi from "../../assembly/abi.ts";
import { Core, CoreAbort, compileCore, corePath, defaultCoreConfig, type CoreConfig } from "../../host/core.ts";
import { Recorder, MemorySink, sha256File, recordCore } from "../../host/record.ts";
import { Pump, LivelockError } from "../../host/pump.ts";
import { decodeSqe, writeCqe } from "../../host/sqe.ts";
import type { Executor } from "../../host/executor.ts";
import { describeInvariant, OP_NAMES } from "../../host/abi-names.ts";
import { checkByteranges, fileByte } from "./byteranges.ts";
import { judge, model, type Env } from "./oracle.ts";
import { FileTable } from "./files.ts";
import { Relay, newSide, CLIENT_IDS, UP_IDS, type PxSide } from "./relay.ts";
import { HttpWorld, Server, clientStream, judgeClient, type HReq } from "./proxyhttp.ts";

class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 0x9e3779b9; }
  next(): number { // mulberry32
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]; }
}

class FuzzFailure extends Error {}

/** Bytes the kernel spliced out of a pipe to a proxy side, over the run (the summary: splice mode was exercised). */
let splicedBytes = 0;

/** What delay mode keeps in flight past its round: a connection's I/O (see host/executor.ts). */
const DELAYABLE = new Set([abi.OP_READ, abi.OP_WRITE, abi.OP_WRITEV, abi.OP_SEND, abi.OP_SENDFILE, abi.OP_SHUTDOWN,
  // the HTTP server's file work, as a thread pool or io_uring carries it out (on the file fd: PREAD)
  abi.OP_OPEN, abi.OP_LIST, abi.OP_PREAD]);

/** Requests on a socket itself: on a proxy side, the relay model carries them out (execProxy). */
const PX_SOCKET_OPS = new Set([abi.OP_READ, abi.OP_WRITE, abi.OP_WRITEV, abi.OP_SEND, abi.OP_SENDFILE, abi.OP_SHUTDOWN, abi.OP_CTL, abi.OP_CLOSE]);

interface SimSocket {
  kind: "listener" | "conn" | "file" | "js";
  input: Uint8Array;
  pos: number;
  peerClosed: boolean;
  written: number;
  echoed: number[];       // echo: bytes written back, checked against input
  out?: Buffer[];         // HTTP: the bytes written, while under OUT_RECORD_MAX (checkByteranges)
  outBytes?: number;
  inKernel: boolean;
  mask: number;
  gen: number;
  // The kernel model's state for readiness (deliver()): bytes of `input`
  // that reached the socket so far, edges not yet reported (ET), a full send
  // buffer, and what the oracle needs to know about the connection's life.
  arrived?: number;
  eof?: boolean;       // the peer's FIN reached the socket (after all its bytes, some ticks later)
  rdEdge?: boolean;
  wrEdge?: boolean;
  wblocked?: boolean;
  life?: Life;
  px?: PxSide;        // a side of a tcp-proxy pair (relay.ts)
  hreqs?: HReq[];     // an http-mode proxy client: the requests it sends (proxyhttp.ts)
  srv?: Server;       // an http-mode proxy's upstream socket: the server behind it
  pipe?: { chunks: Uint8Array[]; bytes: number; write: boolean; other: SimSocket }; // an end of a pipe (OP_PIPE; kind "file")
}

/** What happened to a connection, for judging it (oracle.ts) at the end. */
interface Life {
  born: number;        // loop time at accept
  died?: number;       // loop time at close
  closed: boolean;
  shut: boolean;       // shutdown(SHUT_WR): no byte may follow
  faulted: boolean;    // the fuzzer injected an error on it (reset, HUP/ERR, failed epoll_ctl)
  trapped: boolean;    // the core trapped while serving it
  draining: boolean;   // a graceful shutdown began while it was open
  timedOut: boolean;   // closed while timers ran (idle, header, linger timeouts)
  fd: number;
  hist: string[];      // the last requests on it, for the failure message
}

const enc = new TextEncoder();
/** Bytes of a connection's output kept for checking; past that it goes unchecked. */
const OUT_RECORD_MAX = 8 * 1024 * 1024;
/** Requests kept for the failure report (FUZZ_TRACE=N in the environment: more). */
const TRACE_MAX = Number(process.env.FUZZ_TRACE) > 0 ? Number(process.env.FUZZ_TRACE) : 400;
const REQUESTS = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /index.html HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n",
  "HEAD /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=10-99\r\n\r\n",
  "GET /dir HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /dir/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  "GET /a%2e%2e/b HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
  "GET /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n",
  "POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
  "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
  "BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
  "GET /" + "a".repeat(9000) + " HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
  // several ranges: multipart/byteranges (memory or sendfile body, whichever size the file gets),
  // coalesced, partly unsatisfiable, or too many (whole file)
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9,20-29,-5\r\n\r\n",
  "GET /index.html HTTP/1.1\r\nHost: a\r\nRange: bytes=5-,0-0,2-3,3-4,999999-\r\n\r\n",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=" + Array.from({ length: 17 }, (_, i) => `${2 * i}-${2 * i}`).join(",") + "\r\n\r\n",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=1-1,39990-\r\nIf-Range: \"x\"\r\n\r\n",
  // Expect: 100-continue (the 100 goes out when the body is split from the head), other expectations
  "GET /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
  "GET /big.bin HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  "POST /z HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
  "GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n",
  "GET /app.js HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, deflate, br;q=0.9\r\nUser-Agent: fuzz/1 \"x\"\r\n\r\n",
  "GET /app.js HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br;q=0, gzip;q=0.5, *;q=0.1\r\nRange: bytes=0-9\r\n\r\n",
  "HEAD /big.bin HTTP/1.1\r\nHost: a\r\nAccept-Encoding: *\r\nAccept-Encoding: gzip\r\nReferer: http://r/\xe9\r\n\r\n",
  "OPTIONS /app.js HTTP/1.1\r\nHost: a\r\nOrigin: http://o\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-a, range\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
  "GET /app.js.gz HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip;q=1.000, br;q=1\r\nIf-None-Match: \"1-2\"\r\n\r\n",
  "GET /app.js HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nRange: bytes=0-1,5-9\r\n\r\n",
];

/**
 * Planted faults, to show the checks can fail (test/fuzz.test.mjs):
 * "wrong-length": the kernel sees every Content-Length one too big (the
 * oracle must say so); "short-reads": reads return less than the socket
 * holds and no new edge follows (a kernel that lies; in ET the core, which
 * rightly takes a short read for drained, stalls and the oracle sees the
 * missing answers).
 */
export type Plant = "wrong-length" | "short-reads";
export interface FuzzOptions { seconds: number; seed: number; outDir: string; injectTrap?: boolean; traps?: boolean; plant?: Plant; log?: (s: string) => void }
export interface FuzzResult { ok: boolean; iterations: number; steps: number; requests: number; traps: number; judged?: number; cutShort?: number; pairs?: number; httpClients?: number; reproducer?: string; message?: string; seed?: number }

export function fuzz(opts: FuzzOptions): FuzzResult {
  const module = compileCore();
  const sha = sha256File(corePath);
  const deadline = Date.now() + opts.seconds * 1000;
  let iterations = 0, steps = 0, requests = 0, traps = 0, judged = 0, cutShort = 0, pairs = 0, httpClients = 0;
  while (Date.now() < deadline || iterations === 0) {
    const seed = (opts.seed + iterations * 0x9e3779b1) >>> 0;
    const it = new Iteration(module, sha, seed, opts.injectTrap === true && iterations === 0, opts.traps !== false && !opts.injectTrap, opts.plant);
    try {
      it.run();
    } catch (e) {
      const message = e instanceof FuzzFailure || e instanceof LivelockError ? e.message
        : e instanceof WebAssembly.RuntimeError || e instanceof CoreAbort ? `trap: ${(e as Error).message}` : `host error: ${(e as Error)?.stack ?? e}`;
      mkdirSync(opts.outDir, { recursive: true });
      const file = join(opts.outDir, `seed-${seed}.rec`);
      writeFileSync(file, it.recording());
      writeFileSync(`${file}.txt`, `${message}\nseed ${seed}, step ${it.steps}\n`
        + `reproduce: npm run fuzz -- --seed ${seed} --seconds 0${rerunFlags(opts)}\n`
        + `replay: wasm-reactor replay ${file} --check\n\nlast requests:\n${it.trace.join("\n")}\n`);
      return { ok: false, iterations: iterations + 1, steps: steps + it.steps, requests: requests + it.requests, traps: traps + it.traps, reproducer: file, message, seed };
    }
    iterations++;
    steps += it.steps;
    requests += it.requests;
    traps += it.traps;
    judged += it.judged;
    cutShort += it.cutShort;
    pairs += it.pairs;
    httpClients += it.httpClients;
  }
  return { ok: true, iterations, steps, requests, traps, judged, cutShort, pairs, httpClients };
}

/** The flags besides --seed that make a run repeat one iteration the same way. */
function rerunFlags(o: FuzzOptions): string {
  return (o.injectTrap ? " --inject-trap" : "") + (o.traps === false ? " --no-traps" : "") + (o.plant ? ` --plant ${o.plant}` : "");
}

class Iteration {
  readonly core: Core;
  private readonly x: Record<string, (...a: number[]) => number>;
  private readonly rng: Rng;
  private readonly sink = new MemorySink();
  private readonly rec: Recorder;
  private readonly pump: Pump;
  private readonly reorder: Rng | null;
  private readonly delay: boolean;
  /** Requests kept in flight (delay mode): carried out when reaped. */
  private held: { op: number; fd: number; a: number[]; tag: number; gen: number }[] = [];
  private holding = true;
  private readonly fds = new Map<number, SimSocket>();
  private readonly pending: Uint8Array[] = [];
  private readonly files: FileTable;
  /** Paths whose open failed by a fault the fuzzer injected (EMFILE): their answer may be 503 (a shortage). */
  private readonly faultedPaths = new Set<string>();
  /** HTTP and echo connections, open or closed, in accept order: judged at the end. */
  private readonly conns: SimSocket[] = [];
  /**
   * Proxy iterations (a third of them, by their own generator so the other
   * iterations' choices stay what they were): a PROTO_PROXY_TCP listener on
   * fd 4 beside the echo or HTTP one, whose clients and upstream servers the
   * kernel plays (relay.ts judges the relay). Their choices come from prng.
   */
  private readonly prng: Rng;
  private readonly proxy: boolean;
  private readonly pxListener = 4;
  private readonly pxPending: Uint8Array[] = [];
  private pxClients = 0;
  private pxSockets = 0;
  /** Per upstream: the chance a connect to it is refused. */
  private upstreamRefuse: number[] = [];
  private readonly relay: Relay;
  /**
   * Half the proxy iterations run the listener in http mode
   * (PROTO_PROXY_HTTP): its clients send HTTP requests and the upstream
   * sockets reach simulated HTTP servers (proxyhttp.ts judges them). Their
   * own choices come from hrng, so tcp iterations stay what they were.
   */
  private readonly pxHttp: boolean;
  private readonly hrng: Rng;
  private readonly world: HttpWorld;
  private readonly pxPendingReqs: HReq[][] = [];
  /** Proxy sides (clients and upstream sockets), open or closed. */
  private readonly pxSides: SimSocket[] = [];
  /** The phase after the last tick: no faults, every byte arrives, peers read (settle()). */
  private calm = false;
  private readonly proto: number;
  private readonly config: CoreConfig;
  private readonly slowClock: boolean;
  private time = 1_000_000;
  private jsHandlers = 0;
  private shutdown = false;
  private tasks = 0;
  steps = 0;
  requests = 0;
  traps = 0;
  /** Connections judged as a prefix only (cut short by a fault, trap, timeout or shutdown). */
  cutShort = 0;
  /** Connections judged (HTTP against the oracle, echo against its input). */
  judged = 0;
  /** Proxy pairs judged whole (both streams, both FINs: relay.ts). */
  pairs = 0;
  /** http-mode proxy clients judged (proxyhttp.ts). */
  httpClients = 0;

  constructor(module: WebAssembly.Module, sha: string, seed: number, private readonly injectTrap: boolean,
    private readonly randomTraps: boolean, private readonly plant: Plant | undefined) {
    this.rng = new Rng(seed);
    // Every other iteration writes each round's completions in a shuffled
    // order (the core routes them by tag); its own generator, so the
    // kernel's choices for a seed stay what they were. (Not the iteration
    // with an injected trap, a test of the failure path: in order, its trap
    // lands where that test expects.)
    this.reorder = seed % 2 === 1 && !injectTrap ? new Rng(seed ^ 0x5bd1e995) : null;
    // Half of those also keep connections' I/O requests in flight and
    // complete them in a later tick (the completion phase, Pump.reap).
    this.delay = this.reorder !== null && ((seed >>> 1) & 1) === 1;
    const r = this.rng;
    this.config = {
      ...defaultCoreConfig,
      maxFds: 64,
      mode: r.chance(0.5) ? "et" : "lt",
      idleTimeoutMs: 0,
      headerTimeoutMs: 0,
      writeBufMax: r.pick([4096, 16384, 65536, 262144]),
      maxEvents: r.pick([1, 4, 16, 64]),
      maxBody: r.pick([16, 1024, 1 << 20]),
      listing: r.chance(0.5),
      accessLog: r.chance(0.5),
      accessLogFormat: r.chance(0.5) ? "combined" : "json",
      cacheControl: r.pick([null, "no-cache", "public, max-age=31536000, immutable"]),
      cors: r.chance(0.5),
      precompressed: r.chance(0.5),
    };
    // Half the iterations keep the clock slow (steps under 200 ms, timeouts
    // of 30 s and more, so none fires before the final phase): there every
    // connection is judged whole, and a stall cannot hide behind a timeout.
    this.slowClock = r.chance(0.5);
    this.config.idleTimeoutMs = this.slowClock ? r.pick([0, 30000]) : r.pick([0, 50, 1000, 30000]);
    this.config.headerTimeoutMs = this.slowClock ? r.pick([0, 60000]) : r.pick([0, 30, 1000, 60000]);
    this.proto = r.chance(0.6) ? abi.PROTO_HTTP : abi.PROTO_ECHO;
    // Half the iterations hold the open-file cache to a few open files (shedFd at every open).
    // (A generator of its own: the other choices stay what they were.)
    this.config.fileCacheFds = new Rng(seed ^ 0x0fc0fd5).pick([0, 0, 1, 3]);
    // (The constant keeps the seeds in test/fuzz.test.mjs, recorded before
    // proxy iterations existed, plain iterations: they replay as they were.)
    this.prng = new Rng(seed ^ 0x934a9b91);
    this.proxy = !injectTrap && this.prng.chance(0.35);
    if (this.proxy) {
      const p = this.prng;
      const n = 1 + p.int(3);
      this.config.proxyUpstreams = Array.from({ length: n }, (_, i) => ({ host: "127.0.0.1", port: 9001 + i, weight: 1 + p.int(3) }));
      this.config.proxyBalance = { policy: p.pick(["rr", "wrr", "least-conn", "p2c", "ip-hash", "random"] as const), seed: 1 + p.int(1000), maxFails: p.pick([0, 3]) };
      this.config.proxyConnectTimeoutMs = this.slowClock ? p.pick([0, 30000]) : p.pick([0, 50, 1000, 5000]);
      this.upstreamRefuse = Array.from({ length: n }, () => p.pick([0, 0, 0.1, 1]));
      // (a generator of its own: the other choices stay what they were)
      this.config.proxyRelay = new Rng(seed ^ 0x5911ce).chance(0.5) ? abi.RELAY_SPLICE : abi.RELAY_COPY;
    }
    this.hrng = new Rng(seed ^ 0x6a09e667);
    this.pxHttp = this.proxy && this.hrng.chance(0.5);
    this.world = new HttpWorld(this.hrng, true);
    if (this.pxHttp) {
      const h = this.hrng;
      this.config.proxyPeerAddrs = true;
      this.config.proxyUpstreamTimeoutMs = this.slowClock ? h.pick([0, 60000]) : h.pick([0, 50, 1000, 60000]);
      this.config.proxyKeepalive = h.pick([-1, 0, 1, 4]);
    }
    this.relay = new Relay(this.config.writeBufMax + Math.max(this.config.readBuf, 16384), (x) => this.pxState(x as SimSocket));
    this.files = new FileTable(seed, this.config.precompressed);
    this.rec = new Recorder(this.sink, {
      coreSha256: sha, config: this.config, time: [this.time, this.time], arch: process.arch,
      created: new Date().toISOString(), argv: ["fuzz", `--seed=${seed}`],
    });
    this.core = new Core(this.config, module, { addressOf: () => 0, time: [this.time, this.time] });
    this.pump = this.makePump();
    this.x = this.core.x as unknown as Record<string, (...a: number[]) => number>;
  }

  recording(): Uint8Array { this.rec.close(); return this.sink.bytes(); }

  /** The last requests carried out, for the failure report. */
  readonly trace: string[] = [];

  private fail(msg: string): never { throw new FuzzFailure(msg); }

  private check(where: string): void {
    const code = this.x.checkInvariants();
    if (code !== abi.INV_OK) this.fail(`${describeInvariant(code)} broken after ${where}`);
  }

  private lowestFreeFd(): number {
    for (let fd = 4; fd < this.config.maxFds + 8; fd++) if (!this.fds.has(fd)) return fd;
    return -1;
  }

  run(): void {
    const r = this.rng;
    // listener on fd 3
    this.fds.set(3, { kind: "listener", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
    this.x.listen(3, this.proto);
    if (this.proxy) {
      this.fds.set(this.pxListener, { kind: "listener", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
      if (this.x.listen(this.pxListener, this.pxHttp ? abi.PROTO_PROXY_HTTP : abi.PROTO_PROXY_TCP) !== 0) this.fail("listen(proxy) refused");
    }
    this.pump.flush();
    // a few JS handlers on fds the simulated kernel owns
    const js = r.int(3);
    for (let i = 0; i < js; i++) this.registerJs();
    this.pump.flush();
    const ticks = 20 + r.int(60);
    // Traps, or a graceful shutdown, not both: a connection doomed by a trap
    // is closed only once two more rounds ran, so a shutdown that leaves the
    // loop idle never closes it and never ends (a known core limit, see
    // recovery.ts closeDoomed: it waits for two more rounds and for its
    // requests in flight).
    const traps = this.randomTraps && r.chance(0.5);
    for (let t = 0; t < ticks; t++) {
      this.steps++;
      // new clients, and more bytes from the ones connected
      const arrivals = r.int(4);
      for (let i = 0; i < arrivals; i++) this.pending.push(this.clientInput());
      if (arrivals > 0) this.raise(this.fds.get(3)!, "in");
      if (this.proxy) {
        const k = this.prng.int(3);
        for (let i = 0; i < k && this.pxClients < CLIENT_IDS; i++) this.pxPending.push(this.pxHttp ? this.httpClientInput(this.pxClients++) : this.pxClientInput(this.pxClients++));
        if (k > 0) this.raise(this.fds.get(this.pxListener)!, "in");
      }
      this.arrive();
      if (this.injectTrap && t === 3) this.x.debugTrapFd(4);
      else if (traps && r.chance(0.03)) this.trapSomewhere();
      if (!traps && !this.shutdown && r.chance(0.01)) this.startShutdown(r.int(3000));
      this.pump.tick(this.tickSource);
      this.relayTick();
    }
    // A trap still armed would fire in the last phases, with no round left to close its connection.
    if (this.trapArmed >= 0) { this.x.debugTrapFd(-1); this.x.debugTrapCompletion(-1); this.trapArmed = -1; }
    this.settle();
    this.judgeAll();
    if (this.pxHttp) this.judgeHttpClients();
    const why = this.relay.judge();
    if (why) this.fail(`relay: ${why}`);
    this.judged += this.relay.whole + this.relay.cut;
    this.cutShort += this.relay.cut;
    this.pairs += this.relay.whole;
    // No more arrivals; let every timeout fire (twice: a connection accepted
    // when a paused listener resumes starts its own idle clock): the core
    // must end with no connection stuck.
    this.pending.length = 0;
    this.pxPending.length = 0; // (a proxy client accepted now would need a connect and its timeouts: more rounds)
    this.holding = false;
    // (http mode: an exchange that starts in these rounds, e.g. a retry or a
    // pipelined request, runs its own connect and upstream timeouts, and no
    // connect completes here: rounds more, while connections remain.)
    for (let round = 0; round < 2 || this.held.length > 0 || (this.pxHttp && round < 40 && this.core.ctlI32(abi.STAT_LIVE_CONNS) > 0); round++) {
      if (round > 1000) this.fail(`${this.held.length} request(s) kept in flight were never reaped`);
      this.pump.reap();
      this.time += 120_000;
      this.setTime();
      this.pump.run("timers (final)", () => this.x.runTimers());
      this.pump.run("deferred (final)", () => this.x.runDeferred());
      this.relayTick();
    }
    // An error on a proxy side closes its pair (within RESET_TICKS, relayTick): none is left open.
    const errored = this.pxSides.find((s) => s.px!.closeBy >= 0 && [s, s.px!.partner].some((x) => x && !x.life!.closed && !x.life!.trapped));
    if (errored) this.fail(`relay: an error on fd ${errored.life!.fd} was reported to the core and its pair is still open after every timeout`);
    for (const [fd, s] of this.fds) this.checkOutput(fd, s);
    if (this.pxHttp) this.httpLeaks();
    // A trapped connection is doomed: closed once two more rounds ran (with
    // the timeouts above, at the latest).
    const stuck = [...this.conns, ...this.pxSides].find((s) => s.life!.trapped && !s.life!.closed);
    if (stuck && (this.shutdown || this.config.idleTimeoutMs > 0)) this.fail(`connection on fd ${stuck.life!.fd}: the core trapped serving it and it was never closed`);
    // With timeouts on, two minutes of silence leave no connection behind.
    const timeoutsOn = this.shutdown || (this.config.idleTimeoutMs > 0 && (this.proto === abi.PROTO_ECHO || this.config.headerTimeoutMs > 0));
    const live = this.core.ctlI32(abi.STAT_LIVE_CONNS);
    if (timeoutsOn && live !== 0) {
      const x = this.x;
      const alive = [...this.fds.keys()].filter((fd) => fd > 3 && x.debugConnI32(fd, abi.C_STATE) !== 0)
        .map((fd) => `fd ${fd}: state ${x.debugConnI32(fd, abi.C_STATE)} flags ${x.debugConnI32(fd, abi.C_FLAGS)} wheel ${x.debugConnI32(fd, abi.C_WPREV) !== 0 ? "armed" : "-"}`
          + ` due tick ${x.debugConnI32(fd, abi.C_WDUE) >>> 0} inflight ${x.debugConnI32(fd, abi.C_INFLIGHT)}`);
      this.fail(`${live} connection(s) still open after every timeout expired (now ${this.time}): ${alive.slice(0, 4).join("; ")}`);
    }
    // Every proxy side closed: its pipes (splice) too, or they leak.
    if (this.pxSides.every((x) => x.life!.closed)) {
      const pipes = [...this.fds].filter(([, x]) => x.pipe).map(([fd]) => fd);
      if (pipes.length) this.fail(`pipe fd(s) ${pipes.join(", ")} still open with every proxy side closed`);
    }
  }

  private startShutdown(graceMs: number): void {
    this.shutdown = true;
    for (const s of [...this.conns, ...this.pxSides]) if (s.life && !s.life.closed) s.life.draining = true;
    this.x.beginShutdown(graceMs);
  }

  /**
   * Asks the core to trap serving a random live connection (recovered by
   * onTrap()): either the next time the run queue runs it, or while one of
   * its completions is handled (inside complete(), or the completion phase's
   * reaped() when requests are kept in flight): the resume-after-the-trapping-
   * completion path of recover().
   */
  private trapSomewhere(): void {
    const live = [...this.conns, ...this.pxSides].filter((s) => !s.life!.closed);
    if (live.length === 0) return;
    const fd = [...this.fds].find(([, s]) => s === this.rng.pick(live))?.[0];
    if (fd === undefined) return;
    this.x.debugTrapFd(-1); // one armed at a time (an earlier one's connection may have closed untrapped)
    this.x.debugTrapCompletion(-1);
    if (this.rng.chance(0.5)) this.x.debugTrapFd(fd); else this.x.debugTrapCompletion(fd);
    this.trapArmed = fd;
  }

  /**
   * After the last tick, with the loop clock stopped: every byte the clients
   * sent arrives, every peer reads what it is sent, no fault is injected, and
   * the kernel delivers readiness as before (edges in ET). Runs until the
   * core has been quiet for a few rounds. A core that missed a drain to
   * EAGAIN in ET never hears of the bytes it left: its answers go missing
   * (judgeAll()).
   */
  private settle(): void {
    this.calm = true;
    this.holding = false;
    let quiet = 0;
    for (let round = 0; round < 400 && quiet < 4; round++) {
      this.steps++;
      this.arrive();
      const before = this.work;
      this.pump.reap(); // requests kept in flight complete now (holding is off once calm)
      const n = this.buildBatch();
      this.pump.run("dispatch (settle)", () => this.x.dispatch(n));
      this.pump.run("deferred (settle)", () => this.x.runDeferred());
      quiet = this.work === before ? quiet + 1 : 0; // (events that lead to no request, e.g. stale ones, are quiet)
      this.relayTick();
    }
    if (quiet < 4) this.fail("settle: the core was still busy after 400 rounds with nothing new arriving (a livelock?)");
  }

  /** Judges every connection's output against the oracle (HTTP) or its input (echo). */
  private judgeAll(): void {
    const env = this.oracleEnv();
    for (const s of this.conns) {
      const life = s.life!;
      // Cut short, legitimately: by an injected fault, a trap, a timeout,
      // or the end of a shutdown's grace.
      // (A lingering close's timeout comes after the last answer went out: not a cut.)
      const cut = life.faulted || life.trapped || life.draining || (life.timedOut && !life.shut);
      if (cut) this.cutShort++;
      this.judged++;
      const who = `connection #${this.conns.indexOf(s)} on fd ${life.fd} (${life.closed ? "closed" : "open"}${life.faulted ? ", faulted" : ""}${life.trapped ? ", trapped" : ""}${life.draining ? ", draining" : ""})`;
      if (this.proto === abi.PROTO_ECHO) {
        // Echo: every byte sent came back, in order (checked as written),
        // unless a fault, a timeout or a full write buffer cut it short.
        const overflow = s.input.length > this.config.writeBufMax;
        if (!cut && !overflow && !life.draining && s.echoed.length !== s.input.length) {
          this.fail(`echo ${who}: ${s.echoed.length} of ${s.input.length} bytes came back`);
        }
        continue;
      }
      if (!s.out) continue; // too much output to keep
      let out = Buffer.concat(s.out);
      if (this.plant === "wrong-length") out = Buffer.from(out.toString("latin1").replace(/Content-Length: (\d+)/g, (_, n) => `Content-Length: ${Number(n) + 1}`), "latin1");
      const m = model(s.input, s.peerClosed, env);
      const why = judge(m, out, { ended: life.closed || life.shut, mode: cut ? "prefix" : "exact", draining: life.draining });
      if (why) {
        this.fail(`oracle: ${who}, ${m.responses.length} request(s)${m.tail === "grey" ? ` (grey from ${m.greyWhy})` : ""}: ${why}\n`
          + `  sent: ${JSON.stringify(Buffer.from(s.input).toString("latin1").slice(0, 600))}\n`
          + `  got:  ${JSON.stringify(out.toString("latin1").slice(0, 600))}\n`
          + `  its last requests (tick, op, fd, args -> result):\n    ${life.hist.join("\n    ")}`);
      }
      this.requests += m.responses.length;
    }
  }

  private oracleEnv(): Env {
    const c = this.config;
    return {
      stat: (p) => this.files.get(p).stat,
      list: (p) => this.files.list(p),
      faulted: (p) => this.faultedPaths.has(p),
      cors: c.cors, listing: c.listing, precompressed: c.precompressed,
      maxLine: c.maxLine, maxHeader: c.maxHeader, maxHeaders: c.maxHeaders, maxBody: c.maxBody,
    };
  }

  /** May n more written bytes be kept for checkOutput? Up to OUT_RECORD_MAX per connection. */
  private keep(s: SimSocket, n: number): boolean {
    s.outBytes! += n;
    if (s.outBytes! > OUT_RECORD_MAX) s.out = undefined;
    return s.out !== undefined;
  }

  private checkOutput(fd: number, s: SimSocket): void {
    if (!s.out) return;
    const why = checkByteranges(Buffer.concat(s.out));
    if (why) this.fail(`fd ${fd}: ${why}`);
  }

  private setTime(): void { this.core.setTime(this.time, this.time + 1.7e12); }

  private advanceTime(): void {
    const r = this.rng;
    this.time += r.chance(0.7) ? r.int(5) : r.chance(0.8) || this.slowClock ? r.int(200) : r.int(40_000);
    this.setTime();
  }

  /**
   * The tick's inputs: time moves on before the timers (not again after the
   * poll: the simulated kernel does not sleep) and the poll is a random
   * batch (buildBatch).
   */
  private readonly tickSource = {
    clock: (afterPoll: boolean) => { if (!afterPoll) this.advanceTime(); },
    poll: () => this.buildBatch(),
  };

  private clientInput(): Uint8Array {
    const r = this.rng;
    let bytes: Uint8Array;
    if (this.proto === abi.PROTO_ECHO) {
      bytes = new Uint8Array(r.pick([1, 10, 100, 5000, 70000]));
      for (let i = 0; i < bytes.length; i++) bytes[i] = r.int(256);
      return bytes;
    }
    const parts: string[] = [];
    const count = 1 + r.int(4);
    for (let i = 0; i < count; i++) parts.push(r.pick(REQUESTS));
    bytes = enc.encode(parts.join(""));
    if (r.chance(0.3)) {
      // mutate: flip bytes, truncate, duplicate a segment
      const m = bytes.slice();
      const flips = 1 + r.int(4);
      for (let i = 0; i < flips; i++) m[r.int(m.length)] = r.chance(0.5) ? r.int(256) : r.pick([13, 10, 32, 58, 0, 9]);
      bytes = m;
    }
    if (r.chance(0.1)) bytes = bytes.subarray(0, r.int(bytes.length));
    if (r.chance(0.1)) {
      const a = r.int(bytes.length), b = Math.min(bytes.length, a + r.int(64));
      const d = new Uint8Array(bytes.length + (b - a));
      d.set(bytes.subarray(0, b)); d.set(bytes.subarray(a), b);
      bytes = d;
    }
    return bytes;
  }

  private registerJs(): void {
    const fd = this.lowestFreeFd();
    if (fd < 0 || fd >= this.config.maxFds) return;
    this.fds.set(fd, { kind: "js", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
    const r = this.x.register(fd, abi.REACTOR_READABLE | (this.rng.chance(0.3) ? abi.REACTOR_EDGE : 0), ++this.jsHandlers);
    this.trace.push(`  js: register(${fd}) -> ${r}`);
    if (r < 0) this.fds.delete(fd);
  }

  /** More of each client's bytes reach its socket (all of them once calm): a new edge for an ET reader. */
  private arrive(): void {
    for (const s of this.fds.values()) {
      if (s.kind !== "conn") continue;
      const r = s.px ? this.prng : this.rng;
      // An http server's reset, once the core read what it sent before it.
      if (s.srv && s.srv.resetAt >= 0 && s.pos >= s.srv.resetAt && !s.px!.reset) { s.px!.reset = true; s.eof = true; s.srv.resetAt = -1; this.raise(s, "in"); continue; }
      if (s.px?.role === "up" && !s.px.connected) {
        // A connect under way settles (a hanging one only once the kernel calms): WRITABLE tells.
        const p = s.px;
        if (p.connect === "pending" && (this.calm || (!p.hang && r.chance(0.3)))) {
          if (p.outcome === 0) this.connected(s);
          else { p.connect = "failed"; s.wblocked = false; this.raise(s, "out"); }
        }
        continue;
      }
      // The peer reads: a full send buffer has room again (a new EPOLLOUT edge).
      if (s.wblocked && (this.calm || r.chance(0.5))) { s.wblocked = false; this.raise(s, "out"); }
      const left = s.input.length - s.arrived!;
      if (left === 0) {
        // A client that closes does so once it sent everything, sooner or later.
        if (s.peerClosed && !s.eof && (this.calm || r.chance(0.2))) { s.eof = true; this.raise(s, "in"); }
        continue;
      }
      if (!this.calm && r.chance(0.4)) continue;
      s.arrived! += this.calm ? left : 1 + r.int(left);
      this.raise(s, "in");
    }
  }

  /** Interest as the backend sees it (EV_* bits), in one place. */
  private interest(s: SimSocket): { in: boolean; out: boolean; edge: boolean } {
    return { in: (s.mask & abi.EV_READABLE) !== 0, out: (s.mask & abi.EV_WRITABLE) !== 0, edge: (s.mask & abi.EV_EDGE) !== 0 };
  }

  /**
   * Something happened on a socket: in ET, an edge is queued if the socket is
   * registered for that direction (epoll's wake-up callback); an edge while
   * not interested is lost, as in Linux (epoll_ctl MOD re-checks readiness:
   * see OP_CTL).
   */
  private raise(s: SimSocket, dir: "in" | "out"): void {
    if (!s.inKernel) return;
    const want = this.interest(s);
    if (dir === "in" && want.in) s.rdEdge = true;
    if (dir === "out" && want.out) s.wrEdge = true;
  }

  private readable(s: SimSocket): boolean {
    if (s.kind === "listener") return (s === this.fds.get(this.pxListener) && this.proxy ? this.pxPending : this.pending).length > 0;
    return s.arrived! > s.pos || s.eof === true;
  }

  /**
   * The kernel model's event delivery, in one function. LT: level, every
   * readiness that holds (some withheld at random for a batch: a late
   * epoll_wait). ET: only edges, each reported once, so a core that stops
   * reading or writing before EAGAIN is not woken again. Then the fuzzer's
   * extras: duplicated, stale and reordered events, HUP/ERR faults.
   */
  private deliver(): { fd: number; bits: number; gen: number; s?: SimSocket }[] {
    const r = this.rng;
    const evs: { fd: number; bits: number; gen: number; s?: SimSocket }[] = [];
    for (const [fd, s] of this.fds) {
      if (!s.inKernel || s.kind === "file") continue;
      let bits = 0;
      const r = s.px ? this.prng : this.rng;
      if (s.kind === "js") { if (!this.calm && r.chance(0.5)) bits |= abi.EV_READABLE; } // quiet once calm: settle() ends
      else if (this.interest(s).edge) {
        if (!this.calm && r.chance(0.2)) continue; // pending edges wait for the next epoll_wait
        if (s.rdEdge) bits |= abi.EV_READABLE | (s.eof ? abi.EV_HANGUP : 0);
        if (s.wrEdge) bits |= abi.EV_WRITABLE;
      } else {
        const want = this.interest(s);
        if (want.in && this.readable(s) && (this.calm || r.chance(0.8))) bits |= abi.EV_READABLE | (s.eof ? abi.EV_HANGUP : 0);
        if (want.out && !s.wblocked && (this.calm || r.chance(0.7))) bits |= abi.EV_WRITABLE;
      }
      if (s.kind === "conn" && !this.calm && (!s.px || s.px.role === "client" || s.px.connected) && r.chance(0.003)) {
        bits |= abi.EV_HANGUP | abi.EV_ERROR;
        s.life!.faulted = true;
        if (s.px) this.pxReset(s); // a proxy side's reset: every later read and write fails
      }
      if (bits) evs.push({ fd, bits, gen: s.gen, s });
    }
    // duplicated, stale and reordered events (not once calm: settle() waits for quiet)
    if (this.calm) return evs;
    if (evs.length && r.chance(0.2)) { const d = r.pick(evs); evs.push({ fd: d.fd, bits: d.bits, gen: d.gen }); }
    if (r.chance(0.2)) evs.push({ fd: 4 + r.int(this.config.maxFds - 4), bits: abi.EV_READABLE, gen: r.int(3) });
    for (let i = evs.length - 1; i > 0; i--) { const j = r.int(i + 1); [evs[i], evs[j]] = [evs[j], evs[i]]; }
    return evs;
  }

  private buildBatch(): number {
    const c = this.core;
    c.refresh();
    let evs = this.deliver();
    const n = Math.min(evs.length, c.ctlI32(abi.CTL_EVENTS_CAP));
    // More ready than maxevents: Linux moves the fds it reported to the back
    // of its ready list, so every ready fd gets its turn. Rotating the
    // (otherwise fixed, once calm) order does the same; without it the fds
    // past maxevents would starve and look like a core stall.
    if (evs.length > n) { const k = (this.rotation++ * n) % evs.length; evs = evs.slice(k).concat(evs.slice(0, k)); }
    // An edge is reported once; those past maxevents stay queued for the next batch.
    for (let i = 0; i < n; i++) {
      const s = evs[i].s;
      if (!s) continue;
      if (evs[i].bits & abi.EV_READABLE) s.rdEdge = false;
      if (evs[i].bits & abi.EV_WRITABLE) s.wrEdge = false;
    }
    this.writeEvents(evs.slice(0, n));
    return n;
  }

  /** Writes an event batch into the core's event area (events.ts: the one writer of its layout). */
  private writeEvents(evs: { fd: number; bits: number; gen: number }[]): void {
    const c = this.core;
    const base = c.ctlI32(abi.CTL_EVENTS);
    const dv = new DataView(c.u8.buffer);
    for (let i = 0; i < evs.length; i++) writeEvent(dv, base, i, evs[i].bits, evs[i].fd, evs[i].gen);
  }

  /** The fd debugTrapFd() was last called with, until its trap comes. */
  private trapArmed = -1;

  /** Batches cut at maxevents so far: where the next one starts (buildBatch). */
  private rotation = 0;

  /** SQEs carried out so far (settle() watches it to see the core quiet). */
  private work = 0;

  /**
   * The shared pump with the simulated kernel as its executor (recorded):
   * the invariants are checked after every call into the core, a trap is a
   * failure (not contained), a phase that never ends is a livelock.
   */
  private makePump(): Pump {
    const kernel: Executor = { submit: (sq, cq, n) => this.submit(sq, cq, n) };
    if (this.delay) kernel.reap = (cq, max) => this.reap(cq, max);
    const executor = recordCore(this.core, this.rec, kernel);
    return new Pump(this.core, executor, {
      afterCall: (phase) => this.check(phase),
      onTrap: (e, fd) => this.onTrap(e, fd),
      maxRounds: 10_000,
    });
  }

  /**
   * A trap, before the pump contains it with recover() as host/loop.ts does:
   * the trapped connection is doomed, everything else goes on. Only the
   * fuzzer's own traps (debugTrapFd) are recovered; any other trap is a core
   * bug and fails the run, as does an injected one with --inject-trap.
   */
  private onTrap(e: Error, fd: number): void {
    if (this.injectTrap || fd !== this.trapArmed) throw e;
    this.trapArmed = -1;
    const life = this.fds.get(fd)?.life;
    if (life) life.trapped = true;
    this.httpPeerCut(fd);
    this.traps++;
    this.trace.push(`  trap in ${this.pump.phase} serving fd ${fd}: recovered`);
  }

  /** The simulated kernel's executor: SQ[0..n) in order, results into CQ. */
  private submit(sq: number, cq: number, n: number): number {
    const c = this.core;
    c.refresh();
    let k = 0;
    for (let i = 0; i < n; i++) {
      const e = sq + i * abi.SQE_SIZE;
      const { op, fd, a0, a1, a2, a3, tag, gen } = decodeSqe(c.i32, e);
      const a = [a0, a1, a2, a3];
      if (this.delay && this.holding && DELAYABLE.has(op) && this.fds.get(fd)?.kind === "conn" && this.reorder!.chance(0.3)) {
        this.held.push({ op, fd, a, tag, gen });
        continue;
      }
      const res = this.carry(op, fd, a, "");
      c.refresh();
      writeCqe(c.i32, cq, k++, e, res);
    }
    if (this.reorder) this.shuffleCompletions(cq, k, this.reorder);
    return k;
  }

  /** One request carried out, traced. */
  private carry(op: number, fd: number, a: number[], note: string): number {
    if (this.trace.length >= TRACE_MAX) this.trace.shift();
    this.trace.push(`t${this.steps} ${note}${OP_NAMES[op] ?? String(op)} fd=${fd} ${a.join(" ")}`);
    this.work++;
    this.closedNow = op === abi.OP_CLOSE ? this.fds.get(fd) : undefined;
    const res = this.exec(op, fd, a);
    this.trace[this.trace.length - 1] += ` -> ${res}`;
    const h = this.fds.get(fd)?.life?.hist ?? (op === abi.OP_CLOSE ? this.closedNow?.life?.hist : undefined);
    if (h) { if (h.length >= 80) h.shift(); h.push(this.trace[this.trace.length - 1]); }
    return res;
  }

  /** The socket an OP_CLOSE being carried out closes (carry(): its history gets the close). */
  private closedNow: SimSocket | undefined;

  /** Delay mode's completion phase: some of the requests kept in flight, carried out now, in random order. */
  private reap(cq: number, max: number): number {
    const r = this.reorder!;
    let k = 0;
    for (let i = this.held.length - 1; i >= 0 && k < max; i--) {
      if (this.holding && !r.chance(0.5)) continue;
      const [h] = this.held.splice(i, 1);
      const res = this.carry(h.op, h.fd, h.a, "late ");
      const c = this.core;
      c.refresh();
      c.i32.set([h.tag, h.gen, res, 0], (cq + k++ * abi.CQE_SIZE) >> 2);
    }
    return k;
  }

  /** Permutes the round's n completions in the CQ (Fisher-Yates). */
  private shuffleCompletions(cq: number, n: number, r: Rng): void {
    const u8 = this.core.u8, size = abi.CQE_SIZE, tmp = new Uint8Array(size);
    for (let i = n - 1; i > 0; i--) {
      const j = r.int(i + 1);
      if (j === i) continue;
      const a = cq + i * size, b = cq + j * size;
      tmp.set(u8.subarray(a, a + size));
      u8.copyWithin(a, b, b + size);
      u8.set(tmp, b);
    }
  }

  private sock(fd: number, op: string): SimSocket {
    const s = this.fds.get(fd);
    if (!s) this.fail(`${op} on fd ${fd}, which is not open`);
    return s;
  }

  private exec(op: number, fd: number, a: number[]): number {
    if (op === abi.OP_PIPE) return this.pipeMake(a[0], a[2]);
    if (op === abi.OP_SPLICE) return this.splice(a[3], a[0], a[1], a[2]);
    // (OPEN, LIST, CALL, LOG... name their owner in the fd field, which may be closed and reused by now: not the socket's.)
    const px = PX_SOCKET_OPS.has(op) ? this.fds.get(fd)?.px : undefined;
    if (px || op === abi.OP_SOCKET || op === abi.OP_CONNECT || (op === abi.OP_ACCEPT && this.proxy && fd === this.pxListener)) return this.execProxy(op, fd, a, px);
    return this.execOn(op, fd, a, this.rng);
  }

  /**
   * The proxy's requests: accepts on its listener, its outgoing sockets and
   * connects, and I/O on either side of a pair, judged by the relay oracle
   * as it happens (relay.ts). Same hostility as elsewhere, drawn from prng.
   */
  private execProxy(op: number, fd: number, a: number[], px: PxSide | undefined): number {
    const r = this.prng;
    const c = this.core;
    const verdict = (why: string | null) => { if (why) this.fail(`${this.pxHttp ? "proxy http" : "relay"}: ${why}`); };
    switch (op) {
      case abi.OP_ACCEPT: {
        if (r.chance(0.01)) return -abi.EMFILE;
        if (r.chance(0.01)) return -abi.ECONNABORTED;
        if (!this.pxPending.length) return -abi.EAGAIN;
        const nfd = this.lowestFreeFd();
        if (nfd < 0) return -abi.EMFILE;
        const family = a[0] !== 0 ? this.peerAddress(a[0], r) : 0;
        const input = this.pxPending.shift()!;
        if (this.pxHttp) {
          const s = this.pxSocket(nfd, "client", -1, input, r.chance(0.6));
          s.arrived = r.chance(0.5) ? input.length : r.int(input.length + 1);
          s.hreqs = this.pxPendingReqs.shift()!;
          for (const q of s.hreqs) q.addressed = family === abi.AF_INET || family === abi.AF_INET6;
          s.out = [];
          s.outBytes = 0;
          return nfd;
        }
        const id = input.length ? input[0] : this.pxEmptyIds.shift()!;
        const s = this.pxSocket(nfd, "client", id, input, r.chance(0.6));
        s.arrived = r.chance(0.5) ? input.length : r.int(input.length + 1);
        this.relay.clients[id] = s;
        return nfd;
      }
      case abi.OP_SOCKET: {
        if (r.chance(0.01)) return -abi.EMFILE;
        const nfd = this.lowestFreeFd();
        if (nfd < 0) return -abi.EMFILE;
        // A refused connect is retried at most once: two sockets per client at most.
        if (!this.pxHttp && ++this.pxSockets > 2 * this.relay.clients.filter(Boolean).length) this.fail(`relay: socket #${this.pxSockets} for ${this.relay.clients.filter(Boolean).length} proxy clients (one retry each at most)`);
        const s = this.pxSocket(nfd, "up", -1, new Uint8Array(0), false);
        s.wblocked = true; // not writable before it is connected
        return nfd;
      }
      case abi.OP_CONNECT: {
        const s = this.sock(fd, "connect");
        const p = s.px;
        if (!p || p.role !== "up") this.fail(`connect on fd ${fd}, which is not a socket of the proxy's`);
        if (p.connect === "none") {
          c.refresh();
          const port = new DataView(c.u8.buffer).getUint16(a[0] + abi.SA_PORT, false);
          p.upstream = port - 9001;
          if (!(p.upstream >= 0 && p.upstream < this.upstreamRefuse.length)) this.fail(`connect on fd ${fd} to port ${port}, no upstream's`);
          const refused = r.chance(this.upstreamRefuse[p.upstream]);
          if (r.chance(0.4)) { // at once
            if (refused || r.chance(0.05)) { p.connect = "failed"; s.life!.faulted = true; return refused ? -abi.ECONNREFUSED : -abi.ENETUNREACH; }
            this.connected(s);
            return 0;
          }
          p.connect = "pending";
          p.outcome = refused ? -abi.ECONNREFUSED : r.chance(0.1) ? -abi.ETIMEDOUT : 0;
          p.hang = r.chance(0.15); // settles only once the kernel calms: the connect timeout's case
          return -abi.EINPROGRESS;
        }
        if (p.connect === "pending") return -abi.EALREADY;
        if (p.connect === "ok") { if (p.connected) return -abi.EISCONN; this.connected(s); return 0; }
        return p.outcome;
      }
      case abi.OP_CTL:
      case abi.OP_CLOSE:
        return this.execOn(op, fd, a, r);
      case abi.OP_READ: {
        const s = this.sock(fd, "read");
        if (!this.calm && r.chance(0.005)) this.pxReset(s);
        if (px!.reset) { this.relay.error(s); return -abi.ECONNRESET; }
        const left = s.arrived! - s.pos;
        if (left === 0) {
          if (!s.eof) return -abi.EAGAIN;
          if (!this.pxHttp) verdict(this.relay.read(s, 0));
          return 0;
        }
        const k = Math.min(a[1], left);
        c.refresh();
        c.u8.set(s.input.subarray(s.pos, s.pos + k), a[0]);
        s.pos += k;
        if (!this.pxHttp) verdict(this.relay.read(s, k));
        return k;
      }
      case abi.OP_WRITE:
      case abi.OP_SEND:
      case abi.OP_WRITEV: {
        const s = this.sock(fd, "write");
        if (s.life!.shut) this.fail(`write on fd ${fd} after shutdown(SHUT_WR)`);
        if (!this.calm && (px!.role === "client" || px!.connected) && r.chance(0.005)) this.pxReset(s);
        if (px!.reset) { this.relay.error(s); return -abi.ECONNRESET; }
        c.refresh();
        const dv = new DataView(c.u8.buffer);
        const segs: [number, number][] = [];
        if (op === abi.OP_WRITEV) for (let i = 0; i < a[1]; i++) segs.push([Number(dv.getBigUint64(a[0] + i * 16, true)), Number(dv.getBigUint64(a[0] + i * 16 + 8, true))]);
        else segs.push([a[0], a[1]]);
        const total = segs.reduce((t, [, l]) => t + l, 0);
        const take = s.wblocked ? 0 : this.calm || r.chance(0.6) ? total : r.chance(0.5) ? 0 : r.int(total + 1);
        if (take < total) s.wblocked = true;
        if (px!.role === "up" && !px!.connected) verdict(`write on upstream fd ${fd} before its connect succeeded`);
        if (take === 0 && total > 0) return -abi.EAGAIN;
        const data = new Uint8Array(take);
        let at = 0;
        for (const [q, l] of segs) { const k = Math.min(l, take - at); data.set(c.u8.subarray(q, q + k), at); at += k; }
        if (!this.pxHttp) verdict(this.relay.write(s, data));
        else if (s.srv) verdict(s.srv.feed(data));
        else if (s.out && take > 0 && this.keep(s, take)) s.out.push(Buffer.from(data));
        s.written += take;
        return take;
      }
      case abi.OP_SHUTDOWN: {
        const s = this.sock(fd, "shutdown");
        if (!this.pxHttp) verdict(this.relay.shutdown(s));
        s.life!.shut = true;
        return 0;
      }
      default: this.fail(`${OP_NAMES[op] ?? op} on fd ${fd}, a side of a proxy pair`);
    }
  }

  /** pipe2: two fds (lowest free, as the kernel), written at `at`; EMFILE sometimes, or when the table is full. */
  private pipeMake(at: number, flags: number): number {
    if (flags !== abi.PIPE_FLAGS) this.fail(`OP_PIPE with flags ${flags}`);
    if (!this.calm && this.prng.chance(0.05)) return -abi.EMFILE;
    const mk = (): SimSocket => ({ kind: "file", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
    const rd = mk(), wr = mk(), chunks: Uint8Array[] = [];
    const r = this.lowestFreeFd();
    if (r < 0) return -abi.EMFILE;
    this.fds.set(r, rd);
    const w = this.lowestFreeFd();
    if (w < 0) { this.fds.delete(r); return -abi.EMFILE; }
    this.fds.set(w, wr);
    rd.pipe = { chunks, bytes: 0, write: false, other: wr };
    wr.pipe = { chunks, bytes: 0, write: true, other: rd };
    this.core.refresh();
    const dv = new DataView(this.core.u8.buffer);
    dv.setInt32(at, r, true);
    dv.setInt32(at + 4, w, true);
    return 0;
  }

  /**
   * splice(fdIn -> fdOut) between a proxy side and a pipe (16 buffers: here
   * 16 chunks or 64 KiB, whichever first), judged by the relay oracle as
   * READ and WRITE are: a splice-in is a read of the socket, a splice-out
   * a write to it. Same hostility (resets, short and refused writes).
   */
  private splice(fdIn: number, fdOut: number, len: number, flags: number): number {
    const r = this.prng;
    const verdict = (why: string | null) => { if (why) this.fail(`relay: ${why}`); };
    const src = this.sock(fdIn, "splice"), dst = this.sock(fdOut, "splice");
    if ((flags & abi.SPLICE_FLAGS) !== (abi.SPLICE_F_MOVE | abi.SPLICE_F_NONBLOCK)) this.fail(`splice with flags ${flags}`);
    if (dst.pipe && src.px) { // socket -> pipe
      if (!dst.pipe.write || !(flags & abi.SPLICE_TO_PIPE)) this.fail(`splice into fd ${fdOut}, not a pipe's write end (or no SPLICE_TO_PIPE)`);
      const p = dst.pipe.other.pipe!; // (the read end's record holds the count)
      if (!this.calm && r.chance(0.005)) this.pxReset(src);
      if (src.px.reset) { this.relay.error(src); return -abi.ECONNRESET; }
      const left = src.arrived! - src.pos;
      if (left === 0) {
        if (!src.eof) return -abi.EAGAIN;
        verdict(this.relay.read(src, 0));
        return 0;
      }
      if (p.chunks.length >= 16 || p.bytes >= 65536) return -abi.EAGAIN;
      const k = Math.min(len, left, 65536 - p.bytes, this.calm || r.chance(0.7) ? left : 1 + r.int(left));
      p.chunks.push(src.input.slice(src.pos, src.pos + k));
      p.bytes += k;
      src.pos += k;
      verdict(this.relay.read(src, k));
      return k;
    }
    if (src.pipe && dst.px) { // pipe -> socket
      if (src.pipe.write || (flags & abi.SPLICE_TO_PIPE)) this.fail(`splice out of fd ${fdIn}, not a pipe's read end (or SPLICE_TO_PIPE)`);
      const p = src.pipe, px = dst.px;
      if (dst.life!.shut) this.fail(`splice to fd ${fdOut} after shutdown(SHUT_WR)`);
      if (!this.calm && (px.role === "client" || px.connected) && r.chance(0.005)) this.pxReset(dst);
      if (px.reset) { this.relay.error(dst); return -abi.ECONNRESET; }
      if (p.bytes === 0) return -abi.EAGAIN;
      const total = Math.min(len, p.bytes);
      const take = dst.wblocked ? 0 : this.calm || r.chance(0.6) ? total : r.chance(0.5) ? 0 : r.int(total + 1);
      if (take < total) dst.wblocked = true;
      if (take === 0) return -abi.EAGAIN;
      const data = new Uint8Array(take);
      let at = 0;
      while (at < take) {
        const ch = p.chunks[0], k = Math.min(ch.length, take - at);
        data.set(ch.subarray(0, k), at);
        at += k;
        if (k === ch.length) p.chunks.shift(); else p.chunks[0] = ch.subarray(k);
      }
      p.bytes -= take;
      splicedBytes += take;
      verdict(this.relay.write(dst, data));
      dst.written += take;
      return take;
    }
    this.fail(`splice from fd ${fdIn} to fd ${fdOut}: not a proxy side and a pipe`);
  }

  /** A proxy socket (a client accepted on the proxy listener, or an upstream socket) with its oracle state. */
  private pxSocket(fd: number, role: "client" | "up", id: number, input: Uint8Array, peerClosed: boolean): SimSocket {
    const s: SimSocket = { kind: "conn", input, pos: 0, peerClosed, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0, arrived: 0, wblocked: false,
      px: newSide(role, id),
      life: { born: this.time, closed: false, shut: false, faulted: fd >= this.config.maxFds /* beyond the core's tables: closed */, trapped: false, draining: false, timedOut: false, fd, hist: [] } };
    if (this.shutdown) s.life!.draining = true;
    this.fds.set(fd, s);
    this.pxSides.push(s);
    return s;
  }

  /** The upstream server accepted: it has a reply to send (starting with its id), and perhaps a FIN after it. */
  private connected(s: SimSocket): void {
    const r = this.prng, p = s.px!;
    p.connect = "ok";
    p.connected = true;
    s.wblocked = false;
    if (this.pxHttp) {
      s.srv = new Server(this.world, s, (bytes) => {
        const b = Buffer.from(bytes, "latin1"), input = new Uint8Array(s.input.length + b.length);
        input.set(s.input); input.set(b, s.input.length);
        s.input = input;
      }, () => { s.peerClosed = true; });
      s.peerClosed = false;
      this.raise(s, "out");
      return;
    }
    if (this.relay.ups.length < UP_IDS) {
      p.id = this.relay.ups.length;
      this.relay.ups.push(s);
      s.input = this.pxStream(128 + p.id);
    }
    s.peerClosed = r.chance(0.6);
    this.raise(s, "out");
  }

  /** An error on a proxy side: sticky (every later read and write fails), reported at the next request. */
  private pxReset(s: SimSocket): void {
    s.px!.reset = true;
    s.life!.faulted = true;
  }

  /** Random bytes after a one-byte id; sometimes nothing at all (then no id: the stream is empty). */
  private pxStream(id: number): Uint8Array {
    const r = this.prng;
    const n = r.pick([0, 1, 2, 10, 300, 5000, 5000, 70000]);
    const b = new Uint8Array(n);
    for (let i = 1; i < n; i++) b[i] = r.int(256);
    if (n) b[0] = id;
    return b;
  }

  /** Ids of the clients whose stream is empty, in arrival order (an empty stream cannot carry its id). */
  private readonly pxEmptyIds: number[] = [];

  /**
   * No socket the kernel holds open that the core forgot. (Memory: each
   * connection holds one receive buffer and one ring of at most
   * writeBufMax, and every buffer held is some connection's: the core's
   * invariants, checked after every call.)
   */
  private httpLeaks(): void {
    for (const s of this.pxSides) {
      const l = s.life!;
      if (!l.closed && !l.trapped && l.fd < this.config.maxFds && this.x.debugConnI32(l.fd, abi.C_STATE) === 0) {
        this.fail(`proxy http: fd ${l.fd} (${s.px!.role === "client" ? "a client" : "an upstream socket"}) is open in the kernel and the core has no connection on it (an fd leak)`);
      }
    }
  }

  /**
   * An http-mode upstream socket that faults (a refused interest change, a
   * trap) may be closed with the client it serves, unanswered; which client
   * that is, no byte may tell yet (the request may not have reached the
   * server): the core's link (X_PEER) says, used only to excuse that client.
   */
  private httpPeerCut(fd: number): void {
    if (!this.pxHttp || this.fds.get(fd)?.px?.role !== "up") return;
    const client = this.fds.get(this.x.debugConnI32(fd, abi.C_PROTO_AREA));
    if (client?.hreqs) client.life!.faulted = true;
  }

  /** An http-mode proxy client's stream (proxyhttp.ts): its requests are known to the servers by id. */
  private httpClientInput(cid: number): Uint8Array {
    const { bytes, reqs } = clientStream(this.hrng, cid, 1 << 20);
    for (const q of reqs) this.world.reqs.set(q.id, q);
    this.pxPendingReqs.push(reqs);
    return Buffer.from(bytes, "latin1");
  }

  /** After settling: each http-mode proxy client's answers (proxyhttp.ts judgeClient). */
  private judgeHttpClients(): void {
    for (const s of this.pxSides) {
      if (s.px!.role !== "client" || !s.hreqs) continue;
      const life = s.life!;
      const cut = life.faulted || life.trapped || life.draining || life.timedOut || s.px!.reset;
      this.judged++;
      this.httpClients++;
      if (cut) this.cutShort++;
      if (!s.out) continue;
      const out = Buffer.concat(s.out);
      const why = judgeClient(this.world, s.hreqs, out, { ended: life.closed || life.shut, cut, peerClosed: s.peerClosed });
      if (why) {
        this.fail(`proxy http: client on fd ${life.fd} (${life.closed ? "closed" : "open"}${cut ? ", cut short" : ""}${s.peerClosed ? ", sent its FIN" : ""}), ${s.hreqs.length} request(s): ${why}\n`
          + `  sent: ${JSON.stringify(Buffer.from(s.input).toString("latin1").slice(0, 600))}\n`
          + `  got:  ${JSON.stringify(out.toString("latin1").slice(0, 600))}\n`
          + `  its last requests (tick, op, fd, args -> result):\n    ${life.hist.join("\n    ")}`);
      }
      this.requests += s.hreqs.length;
    }
  }

  private pxClientInput(id: number): Uint8Array {
    const b = this.pxStream(id);
    if (!b.length) this.pxEmptyIds.push(id);
    return b;
  }

  /** A proxy side as the kernel and the core see it, for a failure message. */
  private pxState(s: SimSocket): string {
    const fd = s.life!.fd, x = this.x;
    return `kernel: read ${s.pos}/${s.arrived}/${s.input.length}${s.eof ? " eof" : ""}${s.wblocked ? " wblocked" : ""} mask ${s.mask}${s.inKernel ? "" : " (not in epoll)"}`
      + ` got ${s.px!.got}; core: state ${x.debugConnI32(fd, abi.C_STATE)} flags ${x.debugConnI32(fd, abi.C_FLAGS)} wlen ${x.debugConnI32(fd, abi.C_WLEN)}`
      + ` rbuf ${x.debugConnI32(fd, abi.C_RBUF)} rpos ${x.debugConnI32(fd, abi.C_RPOS)} rlen ${x.debugConnI32(fd, abi.C_RLEN)} inflight ${x.debugConnI32(fd, abi.C_INFLIGHT)} xf ${x.debugConnI32(fd, abi.C_PROTO_AREA + 8)} peer ${x.debugConnI32(fd, abi.C_PROTO_AREA)}`
      + (process.env.FUZZ_HIST ? `\n      ${s.life!.hist.slice(-Number(process.env.FUZZ_HIST)).join("\n      ")}\n      partner: ${(s.px!.partner as SimSocket | undefined)?.life!.hist.slice(-Number(process.env.FUZZ_HIST)).join("\n      ")}` : "");
  }

  /** Once a tick: an errored pair closes within RESET_TICKS (relay.ts), and the pair's held memory stays bounded. */
  private relayTick(): void {
    if (!this.proxy) return;
    const held = new Set(this.held.map((h) => h.fd));
    const why = this.relay.tick((fd) => held.has(fd), this.pxSides);
    if (why) this.fail(`relay: ${why}`);
  }

  private execOn(op: number, fd: number, a: number[], r: Rng): number {
    const c = this.core;
    switch (op) {
      case abi.OP_CTL: {
        const s = this.sock(fd, "set interest");
        if (!this.calm && r.chance(0.005)) {
          if (s.life) s.life.faulted = true;
          this.httpPeerCut(fd);
          return -abi.ENOMEM;
        }
        if (a[0] === abi.INTEREST_DEL) { if (!s.inKernel) return -abi.ENOENT; s.inKernel = false; s.rdEdge = s.wrEdge = false; return 0; }
        if (a[0] === abi.INTEREST_ADD && s.inKernel) return -abi.EEXIST;
        if (a[0] === abi.INTEREST_MOD && !s.inKernel) return -abi.ENOENT;
        s.inKernel = true; s.mask = a[1]; s.gen = a[2];
        // ADD and MOD poll the file at once (Linux ep_insert/ep_modify): a
        // socket ready now reports it, edge-triggered or not.
        if (s.kind !== "js") {
          s.rdEdge = s.wrEdge = false;
          if (this.readable(s)) this.raise(s, "in");
          if (s.kind === "conn" && !s.wblocked) this.raise(s, "out");
        }
        return 0;
      }
      case abi.OP_ACCEPT: {
        this.sock(fd, "accept");
        if (r.chance(0.01)) return -abi.EMFILE;
        if (r.chance(0.01)) return -abi.ECONNABORTED;
        if (!this.pending.length) return -abi.EAGAIN;
        const nfd = this.lowestFreeFd();
        if (nfd < 0) return -abi.EMFILE;
        if (a[0] !== 0) this.peerAddress(a[0]);
        const input = this.pending.shift()!;
        const s: SimSocket = { kind: "conn", input, pos: 0, peerClosed: r.chance(0.7), written: 0, echoed: [], inKernel: false, mask: 0, gen: 0,
          ...(this.proto === abi.PROTO_HTTP ? { out: [], outBytes: 0 } : {}),
          arrived: r.chance(0.5) ? input.length : r.int(input.length + 1), wblocked: false,
          life: { born: this.time, closed: false, shut: false, faulted: nfd >= this.config.maxFds /* no slot in the core: closed unanswered */, trapped: false, draining: false, timedOut: false, fd: nfd, hist: [] } };
        this.fds.set(nfd, s);
        this.conns.push(s);
        return nfd;
      }
      case abi.OP_READ: {
        const s = this.sock(fd, "read");
        if (s.kind !== "conn") this.fail(`read on fd ${fd}, a ${s.kind}`);
        if (!this.calm && r.chance(0.005)) { s.life!.faulted = true; return -abi.ECONNRESET; }
        // A read takes what the socket holds, up to the buffer: less than
        // asked means drained (the core relies on it; the next bytes raise a
        // new edge). The random splits come from arrive().
        const left = s.arrived! - s.pos;
        if (left === 0) return s.eof ? 0 : -abi.EAGAIN;
        const k = Math.min(a[1], this.plant === "short-reads" && left > 1 ? 1 + r.int(left - 1) : left);
        c.refresh();
        c.u8.set(s.input.subarray(s.pos, s.pos + k), a[0]);
        s.pos += k;
        return k;
      }
      case abi.OP_WRITE:
      case abi.OP_SEND:
      case abi.OP_WRITEV: {
        const s = this.sock(fd, "write");
        if (s.life?.shut) this.fail(`write on fd ${fd} after shutdown(SHUT_WR)`);
        if (!this.calm && r.chance(0.005)) { if (s.life) s.life.faulted = true; return -abi.ECONNRESET; }
        const segs: [number, number][] = [];
        c.refresh();
        const dv = new DataView(c.u8.buffer);
        if (op === abi.OP_WRITE || op === abi.OP_SEND) segs.push([a[0], a[1]]);
        else for (let i = 0; i < a[1]; i++) segs.push([Number(dv.getBigUint64(a[0] + i * 16, true)), Number(dv.getBigUint64(a[0] + i * 16 + 8, true))]);
        const total = segs.reduce((t, [, l]) => t + l, 0);
        // A full send buffer takes nothing until the peer reads (arrive());
        // a partial write fills it.
        const take = s.wblocked ? 0 : this.calm || r.chance(0.6) ? total : r.chance(0.5) ? 0 : r.int(total + 1);
        if (take < total) s.wblocked = true;
        if (take === 0 && total > 0) return -abi.EAGAIN;
        if (this.proto === abi.PROTO_ECHO) {
          let left = take;
          for (const [p, l] of segs) { const k = Math.min(l, left); for (let i = 0; i < k; i++) s.echoed.push(c.u8[p + i]); left -= k; }
          for (let i = s.echoed.length - take; i < s.echoed.length; i++) {
            if (s.echoed[i] !== s.input[i]) this.fail(`echo on fd ${fd}: byte ${i} is ${s.echoed[i]}, sent ${s.input[i]}`);
          }
        }
        if (s.out) {
          let left = take;
          for (const [p, l] of segs) { const k = Math.min(l, left); if (k > 0 && this.keep(s, k)) s.out!.push(Buffer.from(c.u8.subarray(p, p + k))); left -= k; }
        }
        s.written += take;
        return take;
      }
      case abi.OP_SENDFILE: {
        const out = this.sock(fd, "sendfile");
        if (out.life?.shut) this.fail(`sendfile on fd ${fd} after shutdown(SHUT_WR)`);
        const f = this.sock(a[0], "sendfile (file)");
        if (f.kind !== "file") this.fail(`sendfile from fd ${a[0]}, which is not a file`);
        const take = out.wblocked ? 0 : this.calm || r.chance(0.6) ? a[2] : r.chance(0.3) ? 0 : r.int(a[2] + 1);
        if (take < a[2]) out.wblocked = true;
        if (take === 0 && a[2] > 0) return -abi.EAGAIN;
        c.refresh();
        const dv = new DataView(c.u8.buffer);
        const offset = Number(dv.getBigInt64(a[1], true));
        const s = this.fds.get(fd)!;
        if (s.out && take > 0 && this.keep(s, take)) {
          const b = Buffer.allocUnsafe(take);
          for (let k = 0; k < take; k++) b[k] = fileByte(offset + k);
          s.out.push(b);
        }
        dv.setBigInt64(a[1], dv.getBigInt64(a[1], true) + BigInt(take), true);
        return take;
      }
      case abi.OP_CLOSE: {
        const s = this.sock(fd, "close");
        this.checkOutput(fd, s);
        if (s.life) { s.life.closed = true; s.life.died = this.time; s.life.timedOut = this.pump.phase.startsWith("timers"); }
        this.fds.delete(fd);
        return 0;
      }
      case abi.OP_SHUTDOWN: {
        const s = this.sock(fd, "shutdown");
        if (s.life) s.life.shut = true;
        return 0;
      }
      case abi.OP_OPEN: return this.open(a[0], a[1], a[2], a[3] === 1);
      case abi.OP_PREAD: {
        this.sock(fd, "pread");
        const k = r.chance(0.9) ? a[1] : r.int(a[1] + 1);
        c.refresh();
        for (let i = 0; i < k; i++) c.u8[a[0] + i] = fileByte(a[2] + i);
        return k;
      }
      case abi.OP_CALL: return this.jsCall(a[0], fd);
      case abi.OP_LIST: {
        this.sock(fd, "list");
        c.refresh();
        const listed = this.files.list(Buffer.from(c.u8.subarray(a[0], a[0] + a[2])).toString("latin1"));
        if (listed === null) return -abi.ENOENT;
        const k = Math.min(a[1], listed);
        c.u8.fill(60, a[0], a[0] + k);
        return k;
      }
      case abi.OP_LOG: {
        if (a[2] !== abi.LOG_ACCESS) return 0;
        // Access lines are ASCII and well-formed whatever the client sent.
        c.refresh();
        const line = Buffer.from(c.u8.subarray(a[0], a[0] + a[1])).toString("latin1");
        if (!/^[\x20-\x7e]*$/.test(line)) this.fail(`access line with a byte outside printable ASCII: ${JSON.stringify(line)}`);
        if (this.config.accessLogFormat === "json") {
          try { JSON.parse(line); } catch { this.fail(`access line is not JSON: ${line}`); }
        } else if (!/^\S+ - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" \d{3} \d+ "([^"]*)" "([^"]*)"$/.test(line)) {
          this.fail(`access line is not in the combined format: ${line}`);
        }
        return 0;
      }
      case abi.OP_STOP:
        if (!this.shutdown) this.fail("OP_STOP without a shutdown");
        return 0;
      default: this.fail(`unknown op ${op}`);
    }
  }

  private open(pathPtr: number, len: number, record: number, statOnly: boolean): number {
    const c = this.core;
    c.refresh();
    const path = Buffer.from(c.u8.subarray(pathPtr, pathPtr + len)).toString("latin1");
    if (c.u8[pathPtr + len] !== 0) this.fail(`OP_OPEN path ${JSON.stringify(path)} is not NUL-terminated`);
    const sim = this.files.get(path), st = sim.stat;
    const f = st.kind === "file" ? { kind: abi.FILE_REGULAR, size: st.size, mtime: sim.mtime, ino: sim.ino, flags: (st.br ? abi.FILE_HAS_BR : 0) | (st.gz ? abi.FILE_HAS_GZIP : 0) }
      : st.kind === "dir" ? { kind: abi.FILE_DIRECTORY, size: 4096, mtime: sim.mtime, ino: sim.ino, flags: 0 }
      : { kind: -abi.ENOENT, size: 0, mtime: 0, ino: 0, flags: 0 };
    if (f.kind < 0) return f.kind;
    const dv = new DataView(c.u8.buffer);
    dv.setInt32(record + abi.FILE_KIND, f.kind, true);
    dv.setFloat64(record + abi.FILE_BYTES, f.size, true);
    dv.setFloat64(record + abi.FILE_MTIME, f.mtime, true);
    dv.setFloat64(record + abi.FILE_INO, f.ino, true);
    dv.setFloat64(record + abi.FILE_DEV, 1, true);
    dv.setInt32(record + abi.FILE_FLAGS, f.flags, true);
    const mime = enc.encode("text/html; charset=utf-8");
    c.u8.set(mime, record + abi.FILE_MIME);
    dv.setInt32(record + abi.FILE_MIME_LEN, mime.length, true);
    if (statOnly || f.kind !== abi.FILE_REGULAR) return 0;
    const fd = this.lowestFreeFd();
    if (fd < 0) { this.faultedPaths.add(path); return -abi.EMFILE; }
    this.fds.set(fd, { kind: "file", input: new Uint8Array(0), pos: 0, peerClosed: false, written: 0, echoed: [], inKernel: false, mask: 0, gen: 0 });
    return fd;
  }

  /** What accept4 writes into an address slot: IPv4, IPv6 (mapped or not) or a family the core does not know. */
  private peerAddress(slot: number, r = this.rng): number {
    const c = this.core;
    c.refresh();
    const dv = new DataView(c.u8.buffer);
    c.u8.fill(0, slot, slot + abi.ACCEPT_ADDR_SIZE);
    const roll = r.next();
    const family = roll < 0.5 ? abi.AF_INET : roll < 0.9 ? abi.AF_INET6 : 1 /* AF_UNIX */;
    dv.setUint16(slot + abi.SA_FAMILY, family, true);
    dv.setUint16(slot + abi.SA_PORT, r.int(65536), false);
    if (family === abi.AF_INET) for (let i = 0; i < 4; i++) c.u8[slot + abi.SA_IN_ADDR + i] = r.int(256);
    else if (family === abi.AF_INET6) {
      for (let i = 0; i < 16; i++) c.u8[slot + abi.SA_IN6_ADDR + i] = r.chance(0.5) ? 0 : r.int(256);
      if (r.chance(0.3)) { c.u8.fill(0, slot + abi.SA_IN6_ADDR, slot + abi.SA_IN6_ADDR + 10); dv.setUint16(slot + abi.SA_IN6_ADDR + 10, 0xffff); }
    }
    dv.setUint32(slot + abi.SA_LEN, family === abi.AF_INET ? 16 : family === abi.AF_INET6 ? 28 : 2, true);
    return family;
  }

  /** A JS callback: does what application code may do from inside one. */
  private jsCall(kind: number, fd: number): number {
    const r = this.rng;
    const actions = r.int(3);
    for (let i = 0; i < actions; i++) {
      const roll = r.next();
      if (roll < 0.2) {
        const victims = [...this.fds].filter(([, s]) => s.kind === "js").map(([f]) => f);
        if (victims.length) {
          const v = r.pick(victims);
          const closing = r.chance(0.5);
          const res = this.x.deregister(v, closing ? 1 : 0);
          this.trace.push(`  js: deregister(${v}, closing=${closing}) -> ${res}`);
          if (closing) this.fds.delete(v);
        }
      } else if (roll < 0.4) this.registerJs();
      else if (roll < 0.55) { const v = [...this.fds].find(([, s]) => s.kind === "js"); if (v) this.x.modify(v[0], abi.REACTOR_READABLE | (r.chance(0.5) ? abi.REACTOR_WRITABLE : 0)); }
      else if (roll < 0.75) { if (this.tasks < 1000) { this.x.defer(++this.tasks); } }
      else if (roll < 0.9) this.x.timerStart(r.int(100), r.chance(0.3) ? 1 + r.int(50) : 0);
      else this.x.timerStop(1 + r.int(1 << 22));
    }
    void kind; void fd;
    return 0;
  }
}

// ---- command line ----------------------------------------------------------

function main(argv: string[]): number {
  let seconds = 10, seed = Date.now() >>> 0, out = "fuzz-failures", injectTrap = false, traps = true;
  let plant: Plant | undefined;
  for (let i = 0; i < argv.length; i++) {
    const [k, v0] = argv[i].split("=", 2);
    const v = v0 ?? argv[i + 1];
    const take = () => { if (v0 === undefined) i++; return v; };
    if (k === "--seconds") seconds = Number(take());
    else if (k === "--seed") seed = Number(take()) >>> 0;
    else if (k === "--out") out = String(take());
    else if (k === "--inject-trap") injectTrap = true;
    else if (k === "--no-traps") traps = false;
    else if (k === "--plant") {
      const v = take();
      if (v !== "wrong-length" && v !== "short-reads") { process.stderr.write(`fuzz: --plant takes wrong-length or short-reads, got ${v}\n`); return 2; }
      plant = v;
    }
    else if (k === "--help" || k === "-h") {
      process.stdout.write("usage: npm run fuzz -- [--seconds N] [--seed N] [--out DIR] [--no-traps] [--inject-trap] [--plant wrong-length|short-reads]\n");
      return 0;
    } else {
      process.stderr.write(`fuzz: unknown argument ${argv[i]}\n`);
      return 2;
    }
    if (!(seconds >= 0) || Number.isNaN(seed)) { process.stderr.write("fuzz: --seconds and --seed take numbers\n"); return 2; }
  }
  process.stdout.write(`fuzz: seed ${seed}, ${seconds} s\n`);
  const opts: FuzzOptions = { seconds, seed, outDir: out, injectTrap, traps, plant };
  const r = fuzz(opts);
  if (!r.ok) {
    process.stdout.write(`fuzz: FAILED after ${r.iterations} iterations: ${r.message}\nreproducer: ${r.reproducer} (and ${r.reproducer}.txt)\n`
      + `reproduce: npm run fuzz -- --seed ${r.seed} --seconds 0${rerunFlags(opts)}\nreplay: wasm-reactor replay ${r.reproducer} --check\n`);
    return 1;
  }
  process.stdout.write(`fuzz: ok, ${r.iterations} iterations, ${r.steps} ticks, ${r.requests} responses checked, ${r.traps} traps recovered;`
    + ` ${r.judged} connections judged, ${r.cutShort} of them only as a prefix (cut short by a fault, trap, timeout or shutdown);`
    + ` ${r.pairs} proxy pairs relayed whole, ${r.httpClients} http-mode proxy clients judged; ${splicedBytes} bytes spliced out of pipes\n`);
  return 0;
}

if (process.argv[1] && /fuzz\.(js|ts)$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));

// The oracles, for their own tests (test/fuzz.test.mjs imports build/fuzz.js).
export { judge, model, parseResponses } from "./oracle.ts";
export { Relay, newSide } from "./relay.ts";
export { HttpWorld, Server, judgeClient } from "./proxyhttp.ts";
