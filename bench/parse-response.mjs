#!/usr/bin/env node
// Response-head parser throughput, in-process, as bench/parse.mjs measures
// requests: one parser, one response head, parsed over and over from memory.
//
//   node bench/parse-response.mjs --parser wasm|llhttp-wasm --corpus nginx|min|cdn
//        [--pipelined [--copies 16]] [--seconds S [--warmup W]] [--json] [--smoke]
//
// --smoke: --seconds 0.02 --warmup 0 (the parser loads and parses; the
// figures mean nothing). Defaults: --seconds 2 --warmup 1 (see parse.mjs for
// why the warm-up is long: V8 tiers wasm up in the background).
//
//   wasm         ours (assembly/http/response.ts): resetResponse + parseResponse
//                per head; the result is the RESP record (status, version,
//                framing, Content-Length, reason span); every field line is
//                validated and counted, Content-Length, Transfer-Encoding and
//                Connection are interpreted. No callbacks, no strings.
//   llhttp-wasm  llhttp as undici ships it (see parse.mjs), type RESPONSE, one
//                llhttp_execute per pass; a JS import per status, header name
//                and value and per message event, each returning 0 at once.
//
// Every head carries Content-Length: 0 so llhttp completes each message
// without a body and both parsers walk pipelined heads by themselves.
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { loadCore } from "../test/lib/core.mjs";

const require = createRequire(import.meta.url);
const head = (...lines) => Buffer.from(lines.map((l) => l + "\r\n").join("") + "\r\n", "latin1");
const CORPORA = {
  // a static file from nginx 1.24 (what an upstream of this proxy often is)
  nginx: head("HTTP/1.1 200 OK", "Server: nginx/1.24.0", "Date: Wed, 02 Dec 2026 03:00:00 GMT",
    "Content-Type: text/html", "Content-Length: 0", "Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT",
    "Connection: keep-alive", 'ETag: "6568a0f0-267"', "Accept-Ranges: bytes"),
  min: head("HTTP/1.1 204 No Content", "Content-Length: 0"),
  // an API response through a CDN: security headers, cache headers, cookies
  cdn: head("HTTP/1.1 200 OK", "Date: Wed, 02 Dec 2026 03:00:00 GMT", "Content-Type: application/json; charset=utf-8",
    "Content-Length: 0", "Connection: keep-alive", "Cache-Control: private, max-age=0, must-revalidate",
    "Vary: Accept-Encoding, Origin", "Strict-Transport-Security: max-age=63072000; includeSubDomains; preload",
    "X-Content-Type-Options: nosniff", "X-Frame-Options: DENY", "Referrer-Policy: strict-origin-when-cross-origin",
    "Content-Security-Policy: default-src 'self'; img-src 'self' data: https:; script-src 'self' 'unsafe-inline'",
    "Set-Cookie: session=0123456789abcdef0123456789abcdef; Path=/; HttpOnly; Secure; SameSite=Lax",
    "Set-Cookie: prefs=dark; Path=/; Max-Age=31536000", 'ETag: W/"5f3a-1b2c3d4e"', "X-Request-Id: 9f1c2d3e-4b5a-6789-abcd-ef0123456789",
    "CF-Cache-Status: DYNAMIC", "Server: cloudflare", "CF-RAY: 8a1b2c3d4e5f6789-AMS", "Alt-Svc: h3=\":443\"; ma=86400"),
};

function wasmParser() {
  const core = loadCore();
  const x = core.x;
  if (x._start) x._start();
  const RESP = x.arena();
  const BUF = RESP + 256;
  return {
    variant: "ours",
    load(bytes) {
      core.u8().fill(0, BUF, BUF + bytes.length + 16);
      core.put(BUF, bytes);
      const len = bytes.length;
      const { resetResponse, parseResponse } = x;
      return function pass() {
        let off = 0, n = 0;
        while (off < len) {
          resetResponse(RESP);
          const r = parseResponse(BUF + off, len - off, RESP, 0, 16384, 100);
          if (r <= 0) throw new Error(`wasm: parseResponse returned ${r} at offset ${off}`);
          off += r;
          n++;
        }
        return n;
      };
    },
  };
}

function llhttpWasmParser() {
  let simd = true, module;
  try {
    module = new WebAssembly.Module(require("undici/lib/llhttp/llhttp_simd-wasm.js"));
  } catch {
    simd = false;
    module = new WebAssembly.Module(require("undici/lib/llhttp/llhttp-wasm.js"));
  }
  let messages = 0;
  const onEvent = (p) => 0;
  const onSpan = (p, at, len) => 0;
  const instance = new WebAssembly.Instance(module, {
    env: {
      wasm_on_message_begin: onEvent, wasm_on_url: onSpan, wasm_on_status: onSpan,
      wasm_on_header_field: onSpan, wasm_on_header_value: onSpan,
      wasm_on_headers_complete: (p, statusCode, upgrade, shouldKeepAlive) => 0,
      wasm_on_body: onSpan, wasm_on_message_complete: (p) => { messages++; return 0; },
    },
  });
  const ll = instance.exports;
  const { TYPE, ERROR } = require("undici/lib/llhttp/constants.js");
  const parser = ll.llhttp_alloc(TYPE.RESPONSE);
  return {
    variant: `${simd ? "SIMD" : "non-SIMD"} build, undici ${require("undici/package.json").version}`,
    load(bytes) {
      const len = bytes.length;
      const ptr = ll.malloc(Math.ceil(len / 4096) * 4096);
      new Uint8Array(ll.memory.buffer, ptr, len).set(bytes);
      return function pass() {
        const before = messages;
        const r = ll.llhttp_execute(parser, ptr, len);
        if (r !== ERROR.OK) throw new Error(`llhttp-wasm: llhttp_execute returned ${ERROR[r] ?? r}`);
        return messages - before;
      };
    },
  };
}

const PARSERS = { wasm: wasmParser, "llhttp-wasm": llhttpWasmParser };
const now = () => Number(process.hrtime.bigint()) / 1e9;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

function runPasses(pass, passes, copies) {
  let heads = 0;
  for (let i = 0; i < passes; i++) heads += pass();
  if (heads !== passes * copies) throw new Error(`saw ${heads} heads, expected ${passes * copies}`);
  return heads;
}

// Untimed warm-up, then batches sized to ~10 ms until `seconds` have gone.
function runFor(pass, seconds, warmup, copies) {
  let batch = 1;
  for (let t0 = now(); now() - t0 < warmup;) {
    const s = now();
    runPasses(pass, batch, copies);
    if (now() - s < 0.01) batch *= 2;
  }
  let heads = 0;
  const c0 = cpu(), t0 = now();
  let t = t0;
  while (t - t0 < seconds) { heads += runPasses(pass, batch, copies); t = now(); }
  return { heads, seconds: t - t0, cpuSeconds: cpu() - c0 };
}

function main() {
  let o;
  try {
    ({ values: o } = parseArgs({
      options: {
        parser: { type: "string", default: "wasm" },
        corpus: { type: "string", default: "nginx" },
        pipelined: { type: "boolean", default: false },
        copies: { type: "string", default: "16" },
        seconds: { type: "string", default: "2" },
        warmup: { type: "string", default: "1" },
        json: { type: "boolean", default: false },
        smoke: { type: "boolean", default: false },
      },
    }));
  } catch (e) {
    console.error(`parse-response.mjs: ${e.message}`);
    process.exit(2);
  }
  if (o.smoke) { o.seconds = "0.02"; o.warmup = "0"; }
  const bad = !PARSERS[o.parser] ? `--parser must be one of ${Object.keys(PARSERS).join(", ")}`
    : !CORPORA[o.corpus] ? `--corpus must be one of ${Object.keys(CORPORA).join(", ")}` : null;
  if (bad) { console.error(`parse-response.mjs: ${bad}`); process.exit(2); }
  const one = CORPORA[o.corpus];
  const copies = o.pipelined ? Number(o.copies) : 1;
  const parser = PARSERS[o.parser]();
  const pass = parser.load(Buffer.concat(Array(copies).fill(one)));
  const run = runFor(pass, Number(o.seconds), Number(o.warmup), copies);
  const perSec = run.seconds > 0 ? run.heads / run.seconds : 0;
  const perCpuSec = run.cpuSeconds > 0 ? run.heads / run.cpuSeconds : 0;
  const result = {
    parser: o.parser, variant: parser.variant, corpus: o.corpus, pipelined: o.pipelined, copies,
    headBytes: one.length, heads: run.heads, seconds: run.seconds, headsPerSec: perSec,
    mbPerSec: (perSec * one.length) / 1e6, nsPerHead: run.heads ? (run.seconds * 1e9) / run.heads : 0,
    cpuSeconds: run.cpuSeconds, headsPerCpuSec: perCpuSec, node: process.version,
  };
  if (o.json) { console.log(JSON.stringify(result)); return; }
  const mode = o.pipelined ? `pipelined x${copies}` : "single";
  console.log(
    `${o.parser.padEnd(11)} ${o.corpus.padEnd(6)} ${mode.padEnd(13)} ` +
      `${Math.round(perSec).toLocaleString("en-US").padStart(11)} heads/s ${result.mbPerSec.toFixed(1).padStart(8)} MB/s ` +
      `${result.nsPerHead.toFixed(1).padStart(8)} ns/head  (${run.heads} heads in ${run.seconds.toFixed(3)} s; ${parser.variant})`,
  );
}

main();
