// bench/chart.mjs on the committed bench/RESULTS.md: the SVG is well-formed,
// names every server and workload of the table, and draws the numbers the
// table holds (read here with a regex of the test's own, not the script's
// parser). Also: no chart from a file without the table, and the committed
// bench/chart.svg is the one the committed results give.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const script = join(repo, "bench/chart.mjs");
const results = join(repo, "bench/RESULTS.md");
const dir = mkdtempSync(join(tmpdir(), "wasm-reactor-chart-"));
const out = join(dir, "chart.svg");

execFileSync(process.execPath, [script, "--in", results, "--out", out], { stdio: ["ignore", "ignore", "pipe"] });
const svg = readFileSync(out, "utf8");
const md = readFileSync(results, "utf8");
const http = md.slice(md.indexOf("## HTTP (bench/http)"));

test.after(() => rmSync(dir, { recursive: true, force: true }));

test("the SVG is well-formed: one root, balanced tags, escaped text", () => {
  assert.ok(svg.startsWith("<svg "), "starts with <svg");
  assert.ok(svg.trimEnd().endsWith("</svg>"), "ends with </svg>");
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  const stack = [];
  let roots = 0;
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)(?:\s[^<>]*?)?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (close) assert.is(stack.pop(), name, `</${name}> closes the open element`);
    else if (!self) { if (stack.length === 0) roots++; stack.push(name); }
  }
  assert.equal(stack, [], "every element closed");
  assert.is(roots, 1, "a single root element");
  const text = svg.replace(/<[^<>]*>/g, "");
  assert.not.match(text, /[<>]/, "no stray angle bracket outside a tag");
  assert.not.match(text, /&(?!(amp|lt|gt|quot|apos);)/, "every & is an entity");
  assert.not.match(svg, /<script|href=|@import|url\(/i, "self-contained: no scripts or external references");
  assert.match(svg, /^<rect width="\d+" height="\d+" fill="#ffffff"\/>$/m, "a white background");
  assert.not.match(svg, /NaN|undefined|Infinity/);
});

test("every server and every workload of the table is in the chart", () => {
  for (const name of ["wasm-reactor et", "wasm-reactor lt", "h2o", "nginx", "node:http"]) {
    assert.ok(http.includes(`| ${name} |`), `the table has ${name}`);
    assert.ok(svg.includes(`>${name}</text>`), `legend names ${name}`);
  }
  const cases = new Set([...http.matchAll(/^\| [^|]+ \| (\d+) conns \/ (\d+ KiB) \|/gm)].map((m) => `${m[2]}, ${Number(m[1]).toLocaleString("en-US")} conns`));
  assert.ok(cases.size >= 1);
  for (const label of cases) assert.ok(svg.includes(`>${label}</text>`), `workload label ${label}`);
});

test("the bars carry the table's numbers (wasm-reactor et against h2o, 50 conns / 1 KiB)", () => {
  const row = (server) => {
    // | server | case | req/s | p50 | p99 | errors | CPU/req | ...
    const m = new RegExp(`^\\| ${server} \\| 50 conns / 1 KiB \\| ([\\d,]+) \\|(?:[^|]*\\|){3} ([\\d.]+) µs \\|`, "m").exec(http);
    assert.ok(m, `the table has a ${server} row for 50 conns / 1 KiB`);
    return { rps: Number(m[1].replace(/,/g, "")), cpu: m[2] };
  };
  const et = row("wasm-reactor et"), h2o = row("h2o");
  const ratio = (et.rps / h2o.rps).toFixed(2);
  const where = "wasm-reactor et, 1 KiB, 50 conns";
  assert.ok(svg.includes(`<title>${where}: ${ratio}× ${(et.rps / 1000).toFixed(1)}k/s</title>`), `req/s bar says ${ratio}×`);
  assert.ok(svg.includes(`<title>${where}: ${et.cpu} µs</title>`), `CPU bar says ${et.cpu} µs`);
  assert.ok(svg.includes(`>${et.cpu} µs</text>`), "and its label shows it");
  // Bar lengths are to scale: within a panel, width ratio = value ratio (widths
  // are rounded to 0.1 px, ~0.15% on these bars).
  const width = (title) => Number(new RegExp(`width="([\\d.]+)" height="\\d+" fill="#[0-9a-f]{6}"><title>${title}`).exec(svg)?.[1]);
  const cpuRatio = width(`${where}: ${et.cpu} µs`) / width(`h2o, 1 KiB, 50 conns: ${h2o.cpu} µs`);
  assert.ok(Math.abs(cpuRatio - Number(et.cpu) / Number(h2o.cpu)) < 0.003, `CPU bars to scale (${cpuRatio})`);
  const rpsRatio = width(`${where}: ${ratio}×`) / width("h2o, 1 KiB, 50 conns: 1.00×");
  assert.ok(Math.abs(rpsRatio - et.rps / h2o.rps) < 0.003, `req/s bars to scale (${rpsRatio})`);
});

test("the run's date and commit are in the caption", () => {
  const date = /^Date: (.+?)\s*$/m.exec(http)?.[1];
  const commit = /^wasm-reactor build: commit ([0-9a-f]+)/m.exec(http)?.[1];
  assert.ok(date && commit, "RESULTS.md has them");
  assert.ok(svg.includes(date), date);
  assert.ok(svg.includes(`commit ${commit}`), commit);
  assert.match(svg, /Same run, pinned cores[^<]*ratios are what compare/);
});

test("no HTTP table: exit 1 with the reason, the old chart left as it was", () => {
  const bad = join(dir, "bad.md");
  writeFileSync(bad, md.replace(/^## HTTP \(bench\/http\)$/m, "## Something else"));
  const fresh = join(dir, "none.svg");
  let r = spawnSync(process.execPath, [script, "--in", bad, "--out", fresh], { encoding: "utf8" });
  assert.is(r.status, 1);
  assert.match(r.stderr, /no "## HTTP \(bench\/http\)" section/);
  assert.not.ok(existsSync(fresh), "nothing written");
  const old = join(dir, "old.svg");
  writeFileSync(old, "previous chart");
  writeFileSync(bad, md.replace(/^\| h2o \| 1000 conns.*\n/m, "")); // a workload without its baseline
  r = spawnSync(process.execPath, [script, "--in", bad, "--out", old], { encoding: "utf8" });
  assert.is(r.status, 1);
  assert.match(r.stderr, /1 KiB, 1,000 conns.*no h2o row/);
  assert.is(readFileSync(old, "utf8"), "previous chart");
  r = spawnSync(process.execPath, [script, "--bogus"], { encoding: "utf8" });
  assert.is(r.status, 2, "a bad flag exits 2");
  assert.is(r.stderr.trim().split("\n").length, 1, "with one line");
});

test("the committed bench/chart.svg is up to date with bench/RESULTS.md", () => {
  const committed = readFileSync(join(repo, "bench/chart.svg"), "utf8");
  assert.ok(committed === svg, "run `node bench/chart.mjs` and commit bench/chart.svg");
});

test.run();
