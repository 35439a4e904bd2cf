// Every ```js runnable block of docs/api.md and docs/io.md runs, in its own process with a
// timeout, and must exit 0. The examples assert their own results
// (node:assert), so a wrong example fails here. `import ... from
// "wasm-reactor"` is pointed at this checkout's dist/index.js.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { distUrl } from "./lib/procs.mjs";

const DOC = new URL("../docs/api.md", import.meta.url);
const TIMEOUT_MS = 30_000;
const tmp = mkdtempSync(join(tmpdir(), "wr-docs-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** The runnable blocks: {line, title (the nearest heading above), code}. */
export function runnableBlocks(markdown) {
  const out = [];
  const lines = markdown.split("\n");
  let heading = "(top)";
  for (let i = 0; i < lines.length; i++) {
    const h = /^#{1,6}\s+(.*)/.exec(lines[i]);
    if (h) heading = h[1];
    const open = /^```(\w+)(.*)$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    if (open[1] === "js" && /\brunnable\b/.test(open[2])) out.push({ line: start + 1, title: heading, code: body.join("\n") });
  }
  return out;
}

function run(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    child.stdout.on("data", (d) => { output += d; });
    child.stderr.on("data", (d) => { output += d; });
    const timer = setTimeout(() => {
      output += `\n(killed after ${TIMEOUT_MS} ms)`;
      try { process.kill(-child.pid, "SIGKILL"); } catch {}
    }, TIMEOUT_MS);
    child.on("close", (code, signal) => { clearTimeout(timer); resolve({ code, signal, output }); });
  });
}

const blocks = runnableBlocks(readFileSync(DOC, "utf8"));

test("docs/api.md has runnable examples", () => {
  assert.ok(blocks.length >= 8, `only ${blocks.length} runnable blocks`);
});

test("the extractor finds runnable js blocks only", () => {
  const md = "# A\n```js runnable\nok()\n```\n```js\nnot()\n```\n## B\n```sh runnable\nno\n```\n```js runnable title\nyes()\n```\n";
  assert.equal(runnableBlocks(md).map((b) => [b.title, b.code, b.line]), [["A", "ok()", 2], ["B", "yes()", 12]]);
});

// docs/io.md (the io API) runs the same way.
const ioBlocks = runnableBlocks(readFileSync(new URL("../docs/io.md", import.meta.url), "utf8"));
test("docs/io.md has runnable examples", () => { assert.ok(ioBlocks.length >= 4, `only ${ioBlocks.length} runnable blocks`); });

for (const [doc, list] of [["api.md", blocks], ["io.md", ioBlocks]]) for (const [k, b] of list.entries()) {
  test(`docs/${doc} example ${k + 1} (line ${b.line}, "${b.title}") exits 0`, async () => {
    const code = b.code.replace(/(["'])wasm-reactor\1/g, JSON.stringify(distUrl));
    const file = join(tmp, `${doc}-example-${k + 1}.mjs`);
    writeFileSync(file, code);
    const r = await run(file);
    assert.ok(r.code === 0, `exit ${r.code ?? r.signal}:\n${r.output}`);
  });
}

test.run();
