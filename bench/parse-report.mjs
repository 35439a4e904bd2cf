#!/usr/bin/env node
// Turns a bench/parse.sh result directory into the "## Parser
// (bench/parse.sh)" section of bench/RESULTS.md.
//
//   node bench/parse-report.mjs <dir> [--write]
//
// Prints the section; --write also puts it into bench/RESULTS.md, replacing
// only that section (up to the next "## " heading) or appending it. Other
// sections are written by other benchmarks, possibly at the same time, so
// the file is read right before it is written and nothing else is touched.
import { readFileSync, writeFileSync, existsSync, readdirSync } from "node:fs";

const HEADING = "## Parser (bench/parse.sh)";
const PARSERS = ["wasm", "llhttp-wasm", "node"];
const CORPORA = ["703", "min", "browser"];
const MODES = ["single", "pipelined"];

const dir = process.argv[2];
if (!dir) throw new Error("usage: parse-report.mjs <dir> [--write]");
const write = process.argv.includes("--write");

const meta = JSON.parse(readFileSync(`${dir}/meta.json`, "utf8"));
const inproc = readFileSync(`${dir}/inproc.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const hf = {};
for (const f of readdirSync(dir).filter((f) => /^hf-.*\.json$/.test(f))) {
  hf[f.slice(3, -5)] = JSON.parse(readFileSync(`${dir}/${f}`, "utf8")).results;
}
const passes = {};
for (const line of readFileSync(`${dir}/calibration.tsv`, "utf8").trim().split("\n")) {
  const [p, c, m, n] = line.split("\t");
  passes[`${p} ${c} ${m}`] = Number(n);
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const M = (x) => (Number.isFinite(x) && x > 0 ? `${(x / 1e6).toFixed(2)} M` : "n/a");
const X = (a, b) => (Number.isFinite(a / b) && a > 0 && b > 0 ? `${(a / b).toFixed(2)}x` : "n/a");
const ms = (s) => `${(s * 1000).toFixed(0)}`;

const startup = Object.fromEntries((hf.startup ?? []).map((r) => [r.command, r]));
const corpusBytes = {};
const variant = {};

// Every number of one case, keyed "parser corpus mode".
const rows = {};
for (const c of CORPORA) for (const m of MODES) for (const p of PARSERS) {
  const runs = inproc.filter((r) => r.parser === p && r.corpus === c && r.pipelined === (m === "pipelined"));
  if (!runs.length) continue;
  corpusBytes[c] = runs[0].requestBytes;
  variant[p] = runs[0].variant;
  const copies = runs[0].copies;
  const wall = runs.map((r) => r.reqPerSec);
  const row = {
    copies,
    rounds: runs.length,
    wall: median(wall),
    wallMin: Math.min(...wall),
    wallMax: Math.max(...wall),
    mb: median(runs.map((r) => r.mbPerSec)),
    cpu: median(runs.map((r) => r.reqPerCpuSec)),
  };
  const h = (hf[`${c}-${m}`] ?? []).find((r) => r.command === p);
  const s = startup[p];
  if (h && s) {
    const requests = passes[`${p} ${c} ${m}`] * copies;
    row.hf = { mean: h.mean, stddev: h.stddev, requests };
    row.hfWall = requests / (h.mean - s.mean);
    row.hfCpu = requests / (h.user + h.system - s.user - s.system);
  }
  rows[`${p} ${c} ${m}`] = row;
}

const out = [];
const pipeCopies = Object.entries(rows).find(([k]) => k.endsWith("pipelined"))?.[1].copies;
out.push(HEADING, "");
out.push(`Command: \`${meta.command}\` (${meta.date}, commit ${meta.commit}, build/core.wasm sha256 ${meta.coreSha256}).`);
out.push(`Machine: ${meta.cpu}, ${meta.cores} cores, shared with other work during the run ` +
  `(load average ${meta.loadBefore} before, ${meta.loadAfter ?? "?"} after); Node ${meta.node}; ${meta.hyperfine}.`);
out.push("");
out.push("What a row includes (one request = request line + headers, no body; no sockets, no copies per pass):");
out.push(`- **wasm** (ours, ${variant.wasm ?? "simd"}): \`resetRequest\` + \`parseRequest\` per request, two JS->wasm calls, ` +
  "no callbacks. Result: the REQ record (method, version, flags, Content-Length; target, Host, If-*, Range as " +
  "**offsets** into the buffer); other headers are validated, counted and skipped. No strings.");
out.push(`- **llhttp-wasm** (${variant["llhttp-wasm"] ?? "?"}): one \`llhttp_execute\` per pass on a buffer from its ` +
  "`malloc`; **callbacks** into JS for url, each header name and value, message begin, headers complete and " +
  "message complete, all no-ops returning 0 (message complete also counts). Spans reach JS as offsets; no strings. " +
  "One parser kept across requests, as undici keeps one per socket (llhttp rearms itself after each message).");
out.push(`- **node** (${variant.node ?? "?"}, \`require("node:_http_common").HTTPParser\`): one \`parser.execute(buffer)\` ` +
  "per pass; the binding builds the url and every header name and value as **JS strings** and calls " +
  "`kOnHeadersComplete` (a no-op) with them; `kOnMessageComplete` counts.");
const bytes = (c) => corpusBytes[c] ?? "?"; // a corpus that was not run (bench/parse.sh --smoke)
out.push(`- Corpora (bench/corpus/): 703 = picohttpparser's/llhttp's bench request (${bytes("703")} B, 9 headers); ` +
  `min = \`GET / HTTP/1.1\` + Host (${bytes("min")} B); browser = modern Chrome navigation (${bytes("browser")} B, ` +
  `20 headers). single = one request per pass; pipelined = ${pipeCopies} copies back to back in one buffer. ` +
  "MB/s counts request bytes (10^6).");
out.push("");
const r0 = Object.values(rows)[0];
out.push("In-process: `node bench/parse.mjs ... --seconds S --warmup W` (values in the command above), median of " +
  `${r0?.rounds} rounds (range of the wall-clock rate in brackets); every round runs all 18 cases in turn. ` +
  "The warm-up lets V8 replace its baseline wasm code (Liftoff) with optimized code. req/CPU-s divides by the process's " +
  "user + system time, which does not count time spent descheduled: on this shared machine it is the steadier figure. " +
  "hyperfine: mean ± σ of `--iterations N` processes (N calibrated to ~1 s); derived = requests / (mean − start-up " +
  "mean), and per CPU second from user + system minus start-up's. hyperfine runs include the JIT and wasm " +
  "tier-up, so they read lower than in-process.");
out.push("");
out.push("| corpus | mode | parser | req/s in-process (range) | MB/s | req/CPU-s | hyperfine mean ± σ | requests/run | req/s derived | req/CPU-s derived |");
out.push("| --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: |");
for (const c of CORPORA) for (const m of MODES) for (const p of PARSERS) {
  const r = rows[`${p} ${c} ${m}`];
  if (!r) continue;
  const mode = m === "pipelined" ? `pipelined x${r.copies}` : "single";
  const range = `${(r.wallMin / 1e6).toFixed(2)}–${(r.wallMax / 1e6).toFixed(2)}`;
  const h = r.hf ? `${ms(r.hf.mean)} ± ${ms(r.hf.stddev)} ms` : "n/a";
  out.push(`| ${c} | ${mode} | ${p} | ${M(r.wall)} (${range}) | ${r.mb.toFixed(0)} | ${M(r.cpu)} | ${h} | ` +
    `${r.hf?.requests ?? "n/a"} | ${M(r.hfWall)} | ${M(r.hfCpu)} |`);
}
out.push("");
out.push("Ratios, ours / other (in-process wall, in-process CPU, hyperfine derived wall, hyperfine derived CPU):");
out.push("");
out.push("| corpus | mode | ours / llhttp-wasm | ours / node |");
out.push("| --- | --- | --- | --- |");
for (const c of CORPORA) for (const m of MODES) {
  const w = rows[`wasm ${c} ${m}`];
  if (!w) continue;
  const cell = (o) => (o ? [X(w.wall, o.wall), X(w.cpu, o.cpu), X(w.hfWall, o.hfWall), X(w.hfCpu, o.hfCpu)].join(" / ") : "n/a");
  out.push(`| ${c} | ${m} | ${cell(rows[`llhttp-wasm ${c} ${m}`])} | ${cell(rows[`node ${c} ${m}`])} |`);
}
out.push("");
out.push("Start-up (`--iterations 0`: node, module load, wasm compile, corpus load; subtracted above):");
out.push("");
out.push("| parser | mean ± σ | user + sys |");
out.push("| --- | --- | --- |");
for (const p of PARSERS) {
  const s = startup[p];
  if (s) out.push(`| ${p} | ${ms(s.mean)} ± ${ms(s.stddev)} ms | ${ms(s.user + s.system)} ms |`);
}
out.push("");
const section = out.join("\n");
console.log(section);

if (write) {
  const file = new URL("RESULTS.md", import.meta.url);
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.trimEnd() === HEADING);
  let next;
  if (start < 0) {
    next = (text === "" ? "" : text.replace(/\n*$/, "\n\n")) + section;
  } else {
    let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    if (end < 0) end = lines.length;
    const after = lines.slice(end).join("\n");
    next = [...lines.slice(0, start), section, ...(after ? [after] : [])].join("\n");
  }
  writeFileSync(file, next.endsWith("\n") ? next : next + "\n");
  console.error(`wrote ${HEADING} in bench/RESULTS.md`);
}
