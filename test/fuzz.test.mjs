// A few seconds of the fuzzer inside npm test, and its failure path: a
// failure is saved as a recording that replays the same way.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = mkdtempSync(join(tmpdir(), "wr-fuzz-"));

test("the fuzzer runs for its time and finds nothing", () => {
  const r = spawnSync(process.execPath, [join(root, "build/fuzz.js"), "--seconds", "4", "--seed", String(Date.now() % 1e9), "--out", tmp], { encoding: "utf8" });
  assert.is(r.status, 0, r.stdout + r.stderr);
  const m = /ok, (\d+) iterations, (\d+) ticks, (\d+) responses/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) >= 5, `only ${m[1]} iterations`);
});

test("a failure (an injected trap) is saved as a reproducer that replays", () => {
  const out = join(tmp, "trap");
  const r = spawnSync(process.execPath, [join(root, "build/fuzz.js"), "--seconds", "0", "--seed", "7", "--inject-trap", "--out", out], { encoding: "utf8" });
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /FAILED after 1 iterations: trap/);
  const rec = readdirSync(out).find((f) => f.endsWith(".rec"));
  assert.ok(rec);
  assert.match(readFileSync(join(out, `${rec}.txt`), "utf8"), /replay: wasm-reactor replay .* --check/);
  const rp = spawnSync(process.execPath, [join(root, "bin/wasm-reactor.js"), "replay", join(out, rec)], { encoding: "utf8" });
  // The replayed core traps at the same call: a faithful reproduction of a core bug, so exit 1.
  assert.is(rp.status, 1, rp.stdout + rp.stderr);
  assert.match(rp.stderr, /replay matched the recording .*, but the core trapped 1 time:/);
});

test("bad fuzz arguments exit 2", () => {
  assert.is(spawnSync(process.execPath, [join(root, "build/fuzz.js"), "--bogus"]).status, 2);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
