#!/usr/bin/env node
// Draws the HTTP benchmark of bench/RESULTS.md as a self-contained SVG: per
// workload, requests/s relative to h2o (left) and server CPU time per request
// (right), one bar per server, all from the same run.
//
//   node bench/chart.mjs [--in bench/RESULTS.md] [--out bench/chart.svg]
//
// It reads the table that bench/http-report.mjs writes under "## HTTP
// (bench/http)" (columns server, case, req/s, CPU/req, found by their header
// names) and the run's Date / build lines above it. bench/http.sh runs it after
// every run that writes RESULTS.md. If the table is missing or malformed it
// exits 1 with the reason and leaves --out as it was: a stale chart is better
// than a wrong one. The SVG has no scripts, fonts or external references and
// its own white background, so GitHub shows it the same in light and dark mode.
import { readFileSync, writeFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = dirname(fileURLToPath(import.meta.url));
const HEADING = "## HTTP (bench/http)";
// Bar order and colours: ours first, then the baseline, then the others.
const SERVERS = [
  { label: "wasm-reactor et", color: "#0969da" },
  { label: "wasm-reactor lt", color: "#80b6f0" },
  { label: "h2o", color: "#57606a" },
  { label: "nginx", color: "#2da44e" },
  { label: "node:http", color: "#bf8700" },
];
const BASELINE = "h2o";
const EXTRA_COLORS = ["#8250df", "#cf222e", "#1b7c83"]; // servers the list does not know

class ChartError extends Error {}

// ---- reading RESULTS.md ----------------------------------------------------------

/** { cases: [{ label, cells: Map<server, { rps, cpu }> }], servers, date, build } */
function readRun(file) {
  let text;
  try { text = readFileSync(file, "utf8"); } catch (e) {
    throw new ChartError(`cannot read ${file}: ${e.code ?? e.message}`);
  }
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.trim() === HEADING);
  if (start < 0) throw new ChartError(`${file} has no "${HEADING}" section (run bench/http.sh)`);
  let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  if (end < 0) end = lines.length;
  const section = lines.slice(start + 1, end);

  const split = (l) => l.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
  const at = section.findIndex((l) => /^\s*\|/.test(l) && split(l).includes("req/s") && split(l).includes("CPU/req"));
  if (at < 0) throw new ChartError(`the "${HEADING}" section of ${file} has no table with req/s and CPU/req columns`);
  const head = split(section[at]);
  const col = Object.fromEntries(["server", "case", "req/s", "CPU/req"].map((name) => {
    const i = head.indexOf(name);
    if (i < 0) throw new ChartError(`the HTTP table of ${file} has no "${name}" column`);
    return [name, i];
  }));

  const cases = [];
  const seen = new Set();
  for (let i = at + 2; i < section.length && /^\s*\|/.test(section[i]); i++) {
    const cells = split(section[i]);
    const where = `${file}, HTTP table row ${i - at - 1}`;
    if (cells.length !== head.length) throw new ChartError(`${where}: ${cells.length} cells, the header has ${head.length}`);
    const server = cells[col.server], kase = cells[col.case];
    const m = /^(\d+) conns \/ (\d+ [KM]iB)$/.exec(kase);
    if (!m) throw new ChartError(`${where}: case "${kase}" is not "N conns / SIZE"`);
    const label = `${m[2]}, ${Number(m[1]).toLocaleString("en-US")} conns`;
    let c = cases.find((x) => x.label === label);
    if (!c) cases.push(c = { label, cells: new Map() });
    c.cells.set(server, { rps: number(cells[col["req/s"]], /^[\d,]+$/, where, "req/s"), cpu: number(cells[col["CPU/req"]], /^[\d.]+ µs$/, where, "CPU/req") });
    seen.add(server);
  }
  if (cases.length === 0) throw new ChartError(`the HTTP table of ${file} has no rows`);
  for (const c of cases) {
    const base = c.cells.get(BASELINE);
    if (!base || !(base.rps > 0)) throw new ChartError(`workload "${c.label}" has no ${BASELINE} row with requests/s to normalise to`);
  }
  if (![...seen].some((s) => s.startsWith("wasm-reactor"))) throw new ChartError(`the HTTP table of ${file} has no wasm-reactor row`);
  const known = SERVERS.filter((s) => seen.has(s.label));
  const extra = [...seen].filter((s) => !SERVERS.some((k) => k.label === s))
    .map((label, i) => ({ label, color: EXTRA_COLORS[i % EXTRA_COLORS.length] }));

  const date = section.find((l) => l.startsWith("Date: "))?.slice(6).trim();
  const buildLine = section.find((l) => l.startsWith("wasm-reactor build: ")) ?? "";
  const commit = /commit ([0-9a-f]{7,40}|unknown)/.exec(buildLine)?.[1];
  const build = commit && `commit ${commit}${buildLine.includes("uncommitted") ? " + uncommitted changes" : ""}`;
  return { cases, servers: [...known, ...extra], date, build };
}

/** A table cell as a number; NaN for a run that produced none ("NaN µs", "–"). */
function number(cell, shape, where, name) {
  if (cell === "–" || cell === "-" || /^NaN\b/.test(cell)) return NaN;
  if (!shape.test(cell)) throw new ChartError(`${where}: ${name} "${cell}" is not a number of the expected form`);
  return Number.parseFloat(cell.replace(/,/g, ""));
}

// ---- drawing ---------------------------------------------------------------------

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const px = (n) => Number(n.toFixed(1));

/** Round tick steps (1, 2, 2.5, 5 x 10^k) so the axis has about `count` ticks. */
function axis(max, count) {
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const top = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let t = 0; t <= top + step / 2; t += step) ticks.push(Number(t.toFixed(6)));
  return { top, ticks };
}

function render({ cases, servers, date, build }) {
  const W = 980, LABEL_W = 150, GAP = 34;
  const BAR = 11, BAR_GAP = 2, GROUP_PAD = 9;
  const groupH = servers.length * BAR + (servers.length - 1) * BAR_GAP + 2 * GROUP_PAD;
  const plotTop = 108, plotH = cases.length * groupH, plotBottom = plotTop + plotH;
  const panels = [
    {
      title: "Requests/s relative to h2o (higher is better)",
      axisTitle: "requests/s ÷ h2o's in the same workload",
      x: LABEL_W + 10, w: 400, reserve: 92,
      value: (c, s) => c.cells.get(s)?.rps / c.cells.get(BASELINE).rps,
      text: (c, s, v) => [`${v.toFixed(2)}×`, ` ${(c.cells.get(s).rps / 1000).toFixed(1)}k/s`],
      min: 1.25, // keep the h2o line inside the plot with room to its right
    },
    {
      title: "Server CPU time per request (lower is better)",
      axisTitle: "µs of server CPU (user + system) per request",
      x: LABEL_W + 10 + 400 + GAP, w: W - (LABEL_W + 10 + 400 + GAP) - 16, reserve: 64,
      value: (c, s) => c.cells.get(s)?.cpu,
      text: (c, s, v) => [`${v.toFixed(2)} µs`, ""],
      min: 0,
    },
  ];

  const out = [];
  const H = plotBottom + 96;
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="t d" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="12" fill="#1f2328">`);
  out.push(`<title id="t">HTTP static-file benchmark: wasm-reactor against ${esc(servers.filter((s) => !s.label.startsWith("wasm-reactor")).map((s) => s.label).join(", "))}</title>`);
  out.push(`<desc id="d">Requests per second relative to h2o and server CPU microseconds per request, per workload, from bench/RESULTS.md${date ? `, run of ${esc(date)}` : ""}.</desc>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="16" y="28" font-size="16" font-weight="600">HTTP/1.1 static files, keep-alive: wasm-reactor against ${esc(servers.filter((s) => !s.label.startsWith("wasm-reactor")).map((s) => s.label).join(", "))}</text>`);

  // legend
  let lx = 16;
  for (const s of servers) {
    out.push(`<rect x="${lx}" y="44" width="12" height="12" rx="2" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 17}" y="54.5">${esc(s.label)}</text>`);
    lx += 17 + s.label.length * 6.6 + 20; // no text metrics without a renderer: ~6.6 px a character
  }

  // one band per workload, across both panels, so a row reads left to right
  cases.forEach((c, i) => {
    const y = plotTop + i * groupH;
    if (i % 2 === 0) out.push(`<rect x="8" y="${y}" width="${W - 16}" height="${groupH}" fill="#f6f8fa"/>`);
    out.push(`<text x="${LABEL_W}" y="${px(y + groupH / 2 + 4)}" text-anchor="end" font-weight="600">${esc(c.label)}</text>`);
  });

  for (const p of panels) {
    let max = p.min;
    for (const c of cases) for (const s of servers) { const v = p.value(c, s.label); if (Number.isFinite(v)) max = Math.max(max, v); }
    const { top, ticks } = axis(max, 5);
    const barW = p.w - p.reserve;
    const sx = (v) => p.x + (v / top) * barW;
    out.push(`<text x="${p.x}" y="${plotTop - 14}" font-size="13" font-weight="600">${esc(p.title)}</text>`);
    for (const t of ticks) {
      out.push(`<line x1="${px(sx(t))}" y1="${plotTop}" x2="${px(sx(t))}" y2="${plotBottom}" stroke="#d0d7de" stroke-width="1"/>`);
      out.push(`<text x="${px(sx(t))}" y="${plotBottom + 15}" text-anchor="middle" font-size="11" fill="#57606a">${t}</text>`);
    }
    out.push(`<text x="${px(p.x + barW / 2)}" y="${plotBottom + 32}" text-anchor="middle" font-size="11" fill="#57606a">${esc(p.axisTitle)}</text>`);
    const labels = []; // drawn last, over the h2o line, with a white halo
    cases.forEach((c, i) => {
      servers.forEach((s, j) => {
        const y = plotTop + i * groupH + GROUP_PAD + j * (BAR + BAR_GAP);
        const v = p.value(c, s.label);
        if (!Number.isFinite(v)) {
          out.push(`<text x="${p.x + 3}" y="${y + BAR - 1.5}" font-size="10" fill="#57606a">${esc(s.label)}: no data</text>`);
          return;
        }
        const [main, extra] = p.text(c, s.label, v);
        out.push(`<rect x="${p.x}" y="${y}" width="${px(Math.max(1, sx(v) - p.x))}" height="${BAR}" fill="${s.color}"><title>${esc(`${s.label}, ${c.label}: ${main}${extra}`)}</title></rect>`);
        labels.push(`<text x="${px(sx(v) + 4)}" y="${y + BAR - 1.5}">${esc(main)}${extra ? `<tspan dx="5" fill="#57606a">${esc(extra)}</tspan>` : ""}</text>`);
      });
    });
    out.push(`<line x1="${p.x}" y1="${plotTop}" x2="${p.x}" y2="${plotBottom}" stroke="#57606a" stroke-width="1"/>`);
    if (p.min > 0) { // the h2o reference line of the relative panel
      out.push(`<line x1="${px(sx(1))}" y1="${plotTop - 4}" x2="${px(sx(1))}" y2="${plotBottom}" stroke="#1f2328" stroke-width="1" stroke-dasharray="4 3"/>`);
      out.push(`<text x="${px(sx(1) + 4)}" y="${plotTop - 2}" font-size="10" fill="#57606a">h2o = 1.0</text>`);
    }
    out.push(`<g font-size="10" stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke">`, ...labels, "</g>");
  }

  const run = [date && `run of ${date}`, build && `wasm-reactor ${build}`].filter(Boolean).join(", ");
  out.push(`<text x="16" y="${plotBottom + 62}" font-size="12">Same run, pinned cores (server on one core, one wrk thread on the other): ratios are what compare, not absolute numbers.</text>`);
  out.push(`<text x="16" y="${plotBottom + 80}" font-size="11" fill="#57606a">${esc(`${run ? `${run[0].toUpperCase()}${run.slice(1)}, ` : ""}2-core VM. Latency, errors and memory: bench/RESULTS.md.`)}</text>`);
  out.push("</svg>", "");
  return out.join("\n");
}

// ---- main ----------------------------------------------------------------------

let values;
try {
  ({ values } = parseArgs({
    options: {
      in: { type: "string", default: join(HERE, "RESULTS.md") },
      out: { type: "string", default: join(HERE, "chart.svg") },
    },
  }));
} catch (e) {
  console.error(`chart.mjs: ${e.message} (usage: node bench/chart.mjs [--in RESULTS.md] [--out chart.svg])`);
  process.exit(2);
}

try {
  const run = readRun(values.in);
  const svg = render(run);
  // Write next to the target, then rename: a reader never sees half a chart.
  const tmp = join(dirname(values.out), `.${basename(values.out)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, svg);
    renameSync(tmp, values.out);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  console.error(`chart.mjs: wrote ${values.out} (${run.cases.length} workload(s), ${run.servers.length} server(s))`);
} catch (e) {
  if (!(e instanceof ChartError) && e.code !== "ENOENT") throw e;
  console.error(`chart.mjs: ${e.message}; ${values.out} left unchanged`);
  process.exit(1);
}
