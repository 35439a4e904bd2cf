#!/usr/bin/env node
// Request-head parser throughput, in-process: one parser, one corpus, parsed
// over and over from memory (no sockets, no copies per pass).
//
//   node bench/parse.mjs --parser wasm|node|llhttp-wasm --corpus 703|min|browser
//        [--pipelined [--copies 16]] [--seconds S [--warmup W] | --iterations N]
//        [--json] [--smoke]
//
// --smoke: --seconds 0.02 --warmup 0 (checks that a parser loads and parses
// the corpus; the figures mean nothing).
//
// One *pass* parses the corpus buffer once: one request, or with --pipelined
// `copies` requests back to back in one buffer. --seconds S (default 2) runs
// --warmup W seconds (default 1) untimed first, then times whole batches of
// passes until S seconds have gone. The warm-up is long because V8 runs wasm
// on its baseline compiler (Liftoff) first and swaps in optimized code for
// hot functions from a background thread: on a busy 2-core machine that took
// ~0.5 s for llhttp-wasm, at a tenth of the final speed. --iterations N
// times exactly N passes with no warm-up (what bench/parse.sh runs under
// hyperfine, so those runs include the tier-up); N = 0 loads the parser and
// the corpus and parses nothing: the process start-up cost.
//
// What each parser does per request, and what the caller gets back:
//   wasm         ours (assembly/http/parser.ts, build/core.wasm, or
//                $CORE_WASM): resetRequest(req) + parseRequest(...), two
//                JS->wasm calls per request; pipelined input is walked by
//                the returned head length. No callbacks. The result is the
//                REQ record: method, version, flags, Content-Length, and
//                offsets/lengths into the buffer for the target and the
//                fields the server acts on (Host, If-*, Range); every other
//                header is validated, counted and skipped. No strings.
//   node         Node's own native llhttp through its JS binding:
//                `require("node:_http_common").HTTPParser` (works on Node 20
//                with no flag and no warning; process.binding('http_parser')
//                is deprecated, internalBinding needs --expose-internals).
//                One parser.execute(buffer) per pass, as node:http does per
//                socket read. The binding builds the url and every header
//                name and value as JS strings and calls kOnHeadersComplete
//                (a no-op here) with them; kOnMessageComplete counts.
//   llhttp-wasm  llhttp compiled to wasm as shipped by undici
//                (node_modules/undici/lib/llhttp/llhttp_simd-wasm.js, the
//                plain build if the SIMD one does not compile; undici is a
//                devDependency pinned by the lockfile to 6.24.1, the version
//                Node 20.20 bundles, whose own copy is not reachable). One
//                llhttp_execute(parser, buf, len) per pass on a buffer from
//                its malloc, filled once. llhttp calls a JS import for the
//                url, every header name and value, message begin, headers
//                complete and message complete: all return 0 at once, the
//                last one also counts. The parser is kept across requests
//                (llhttp rearms itself after each keep-alive message), as
//                undici keeps one per socket; llhttp_reset is not called.
//
// Every pass is checked: the whole buffer parsed, `copies` requests seen.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { loadCore } from "../test/lib/core.mjs";

const require = createRequire(import.meta.url);
const CORPORA = ["703", "min", "browser"];

// The server's default limits (assembly/proto/http.ts).
const MAX_LINE = 8192, MAX_HEADER = 16384, MAX_HEADERS = 100;

// ---- parsers: each loads itself, then takes one corpus buffer ---------------
// load(bytes) returns pass(): parses the buffer once, returns the number of
// requests it saw, throws on any error.

function wasmParser() {
  const core = loadCore();
  const x = core.x;
  if (x._start) x._start();
  const REQ = x.arena();
  const BUF = REQ + 256;          // the arena has 1 MiB + 64 bytes of padding
  return {
    variant: "simd",
    load(bytes) {
      core.u8().fill(0, BUF, BUF + bytes.length + 16);   // 16 padding bytes
      core.put(BUF, bytes);
      const len = bytes.length;
      const { resetRequest, parseRequest } = x;
      return function pass() {
        let off = 0, n = 0;
        while (off < len) {
          resetRequest(REQ);
          const r = parseRequest(BUF + off, len - off, REQ, MAX_LINE, MAX_HEADER, MAX_HEADERS);
          if (r <= 0) throw new Error(`wasm: parseRequest returned ${r} at offset ${off}`);
          off += r;
          n++;
        }
        return n;
      };
    },
  };
}

function nodeParser() {
  const { HTTPParser } = require("node:_http_common");
  const parser = new HTTPParser();
  let messages = 0;
  const noop = () => 0;
  parser[HTTPParser.kOnMessageBegin] = noop;
  parser[HTTPParser.kOnHeaders] = noop;            // only for > 32 header lines
  parser[HTTPParser.kOnHeadersComplete] = noop;    // 0: not a HEAD response, parse on
  parser[HTTPParser.kOnBody] = noop;
  parser[HTTPParser.kOnMessageComplete] = () => { messages++; };
  // (type, async resource, max header size (0: default 16 KiB), lenient flags)
  parser.initialize(HTTPParser.REQUEST, {}, 0, HTTPParser.kLenientNone);
  return {
    variant: `llhttp ${process.versions.llhttp}, native`,
    load(bytes) {
      const buf = Buffer.from(bytes);
      const len = buf.length;
      return function pass() {
        const before = messages;
        const r = parser.execute(buf);
        if (r !== len) throw new Error(`node: execute returned ${r}`);
        return messages - before;
      };
    },
  };
}

function llhttpWasmParser() {
  let simd = true;
  let module;
  try {
    module = new WebAssembly.Module(require("undici/lib/llhttp/llhttp_simd-wasm.js"));
  } catch {
    simd = false;
    module = new WebAssembly.Module(require("undici/lib/llhttp/llhttp-wasm.js"));
  }
  let messages = 0;
  // Each callback declares as many parameters as its wasm signature has:
  // V8 calls a JS import whose arity differs through a slower adapter.
  const onEvent = (p) => 0;
  const onSpan = (p, at, len) => 0;
  const instance = new WebAssembly.Instance(module, {
    env: {
      wasm_on_message_begin: onEvent,
      wasm_on_url: onSpan,
      wasm_on_status: onSpan,
      wasm_on_header_field: onSpan,
      wasm_on_header_value: onSpan,
      wasm_on_headers_complete: (p, statusCode, upgrade, shouldKeepAlive) => 0,
      wasm_on_body: onSpan,
      wasm_on_message_complete: (p) => { messages++; return 0; },
    },
  });
  const ll = instance.exports;
  const { TYPE, ERROR } = require("undici/lib/llhttp/constants.js");
  const parser = ll.llhttp_alloc(TYPE.REQUEST);
  const undiciVersion = require("undici/package.json").version;
  return {
    variant: `${simd ? "SIMD" : "non-SIMD"} build, undici ${undiciVersion}`,
    load(bytes) {
      const len = bytes.length;
      const size = Math.ceil(len / 4096) * 4096;   // as undici sizes its buffer
      const ptr = ll.malloc(size);
      new Uint8Array(ll.memory.buffer, ptr, len).set(bytes);
      const execute = ll.llhttp_execute;
      return function pass() {
        const before = messages;
        const r = execute(parser, ptr, len);
        if (r !== ERROR.OK) throw new Error(`llhttp-wasm: llhttp_execute returned ${ERROR[r] ?? r}`);
        return messages - before;
      };
    },
  };
}

const PARSERS = { wasm: wasmParser, node: nodeParser, "llhttp-wasm": llhttpWasmParser };

// ---- measuring ---------------------------------------------------------------

function runPasses(pass, passes, copies) {
  let requests = 0;
  for (let i = 0; i < passes; i++) requests += pass();
  if (requests !== passes * copies) throw new Error(`saw ${requests} requests, expected ${passes * copies}`);
  return requests;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
// CPU time of the process (user + system), in seconds. On a shared machine
// this is the steadier measure: it does not count time spent descheduled.
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

// Untimed warm-up, then batches of passes sized to ~10 ms each, so reading
// the clock costs nothing measurable, until `seconds` have gone.
function runFor(pass, seconds, warmup, copies) {
  let batch = 1;
  for (let t0 = now(); now() - t0 < warmup;) {
    const s = now();
    runPasses(pass, batch, copies);
    if (now() - s < 0.01) batch *= 2;
  }
  let requests = 0;
  const c0 = cpu();
  const t0 = now();
  let t = t0;
  while (t - t0 < seconds) {
    requests += runPasses(pass, batch, copies);
    t = now();
  }
  return { requests, seconds: t - t0, cpuSeconds: cpu() - c0 };
}

function main() {
  const { values: o } = parseArgs({
    options: {
      parser: { type: "string", default: "wasm" },
      corpus: { type: "string", default: "703" },
      pipelined: { type: "boolean", default: false },
      copies: { type: "string", default: "16" },
      seconds: { type: "string" },
      warmup: { type: "string", default: "1" },
      iterations: { type: "string" },
      json: { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
    },
  });
  if (o.smoke && o.iterations === undefined) { o.seconds ??= "0.02"; o.warmup = "0"; }
  const make = PARSERS[o.parser];
  if (!make) throw new Error(`--parser must be one of ${Object.keys(PARSERS).join(", ")}`);
  if (!CORPORA.includes(o.corpus)) throw new Error(`--corpus must be one of ${CORPORA.join(", ")}`);
  if (o.seconds !== undefined && o.iterations !== undefined) throw new Error("--seconds or --iterations, not both");

  const one = readFileSync(new URL(`corpus/${o.corpus}.http`, import.meta.url));
  const copies = o.pipelined ? Number(o.copies) : 1;
  const bytes = Buffer.concat(Array(copies).fill(one));

  const parser = make();
  const pass = parser.load(bytes);

  let run;
  if (o.iterations !== undefined) {
    const passes = Number(o.iterations);
    const c0 = cpu();
    const t0 = now();
    const requests = runPasses(pass, passes, copies);
    run = { requests, seconds: now() - t0, cpuSeconds: cpu() - c0 };
  } else {
    run = runFor(pass, Number(o.seconds ?? 2), Number(o.warmup), copies);
  }

  const perSec = run.seconds > 0 ? run.requests / run.seconds : 0;
  const perCpuSec = run.cpuSeconds > 0 ? run.requests / run.cpuSeconds : 0;
  const result = {
    parser: o.parser,
    variant: parser.variant,
    corpus: o.corpus,
    pipelined: o.pipelined,
    copies,
    requestBytes: one.length,
    requests: run.requests,
    seconds: run.seconds,
    reqPerSec: perSec,
    mbPerSec: (perSec * one.length) / 1e6,
    nsPerReq: run.requests ? (run.seconds * 1e9) / run.requests : 0,
    cpuSeconds: run.cpuSeconds,
    reqPerCpuSec: perCpuSec,
    node: process.version,
  };
  if (o.json) {
    console.log(JSON.stringify(result));
  } else {
    const mode = o.pipelined ? `pipelined x${copies}` : "single";
    console.log(
      `${o.parser.padEnd(11)} ${o.corpus.padEnd(7)} ${mode.padEnd(13)} ` +
        `${Math.round(perSec).toLocaleString("en-US").padStart(11)} req/s ` +
        `${result.mbPerSec.toFixed(1).padStart(8)} MB/s ${result.nsPerReq.toFixed(1).padStart(8)} ns/req  ` +
        `${Math.round(perCpuSec).toLocaleString("en-US").padStart(11)} req/CPU-s  ` +
        `(${run.requests} requests in ${run.seconds.toFixed(3)} s; ${parser.variant})`,
    );
  }
}

main();
