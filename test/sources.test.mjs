// Hygiene of the core's sources that no compiler checks: asc says nothing
// about an unused import (tsc's noUnusedLocals covers host/ and tools/).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []);
}

test("every name assembly/ imports is used in its file (outside comments)", () => {
  const unused = [];
  for (const file of sources(join(root, "assembly"))) {
    const src = readFileSync(file, "utf8");
    const imports = /import\s*\{([^}]*)\}\s*from\s*"[^"]+";?/g;
    const names = [...src.matchAll(imports)].flatMap((m) => m[1].split(",").map((n) => n.trim().split(/\s+as\s+/).pop()).filter(Boolean));
    // The code without its imports and comments (a "//" inside a string would cut a line short: none in assembly/).
    const code = src.replace(imports, "").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    for (const n of names) if (!new RegExp(`\\b${n}\\b`).test(code)) unused.push(`${relative(root, file)}: ${n}`);
  }
  assert.equal(unused, []);
});

test.run();
