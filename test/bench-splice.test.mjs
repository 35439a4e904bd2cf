// bench/splice.mjs in its smoke mode (a file of its own: bench-smoke.test.mjs
// is near test/run.mjs's 120 s per file on a busy machine). As there: exit 0,
// the table of its bench/RESULTS.md section with every relay and case, every
// cell a figure, and the one fact that holds on any machine: each relay
// carried every byte both ways (errors 0). Values are never checked.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { root as repo } from "./lib/procs.mjs";

const results = readFileSync(join(repo, "bench/RESULTS.md"), "utf8");

/** Runs node with args in the repo -> {code, stdout, stderr}; killed (group) after ms. */
function run(args, ms = 60_000) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: repo, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    const kill = () => { try { process.kill(-child.pid, "SIGKILL"); } catch {} };
    const timer = setTimeout(() => { stderr += `\n[killed after ${ms} ms]`; kill(); }, ms);
    child.on("close", (code) => { clearTimeout(timer); kill(); resolve({ code, stdout, stderr }); });
  });
}

const cells = (line) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
/** The rows of the markdown table under header line `header` in text. */
function rowsUnder(text, header) {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.trim() === header);
  assert.ok(at >= 0 && /^\|\s*-{3}/.test(lines[at + 1] ?? ""), `a table under\n${header}\nin:\n${text}`);
  const rows = [];
  for (let i = at + 2; i < lines.length && /^\|/.test(lines[i]); i++) rows.push(cells(lines[i]));
  return rows;
}
const numeric = (cell, what) => assert.match(cell, /^-?\d[\d,]*(\.\d+)?$/, `${what}: "${cell}" is a figure`);

test("splice.mjs --smoke: the copy, copy+ring and splice relays carry every case intact (its RESULTS.md table); bad flags exit 2", async () => {
  const r = await run(["bench/splice.mjs", "--smoke"]);
  assert.is(r.code, 0, `splice.mjs --smoke exits 0; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
  // the section's first table header, as bench/RESULTS.md has it
  const section = results.slice(results.indexOf("\n## Splice vs copy relay (bench/splice.mjs)\n"));
  assert.ok(section.length < results.length, "bench/RESULTS.md has the section");
  const header = section.split("\n").find((l) => l.startsWith("| "));
  const got = { rows: rowsUnder(r.stdout, header) };
  const cases = ["ping-pong 1 KiB", "1 MiB streams", "4 MiB stream"];
  assert.equal(got.rows.map((c) => c.slice(0, 2)), cases.flatMap((k) => [[k, "copy"], [k, "copy+ring"], [k, "splice"]]));
  for (const row of got.rows) {
    const what = row.slice(0, 2).join(" ");
    assert.is(row[9], "0", `${what}: every byte relayed, both ways, and counted at both ends`);
    numeric(row[2], `${what} relay CPU`);
    numeric(row[5].split(" ")[0], `${what} throughput`);
    numeric(row[8], `${what} bytes per read`);
    if (row[1] !== "copy") { numeric(row[4], `${what} CPU vs copy`); numeric(row[6], `${what} throughput vs copy`); }
  }
  for (const bad of [["--chunk", "10"], ["--fast"]]) {
    const b = await run(["bench/splice.mjs", ...bad]);
    assert.is(b.code, 2, `${bad.join(" ")} exits 2`);
    assert.is(b.stderr.trim().split("\n").length, 1, `${bad.join(" ")}: one line`);
  }
});

test.run();
