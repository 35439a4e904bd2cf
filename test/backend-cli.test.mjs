// --backend on the command line: serve and echo take it (the listening line
// names the backend in use, workers get it too), --help lists it with its
// default ("Event backend: ..."), a bad value is one line and exit 2, and
// replay refuses it (a replay runs no backend). Runs once per backend (the
// runner sets WASM_REACTOR_BACKEND): the default follows it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { startEcho, echoOnce, runCli, cleanup } from "./lib/procs.mjs";

const DEFAULT = process.env.WASM_REACTOR_BACKEND || "epoll";
const OTHER = DEFAULT === "epoll" ? "poll" : "epoll";
test.after(cleanup);

for (const backend of ["epoll", "poll"]) {
  test(`echo --backend ${backend} --workers 2: the listening line names it, and it echoes`, async () => {
    const s = await startEcho(["--backend", backend, "--workers", "2"]);
    assert.match(s.stdout, new RegExp(`\\(mode lt, 2 workers, backend ${backend}, I\\/O backend \\w+, pid \\d+\\)`));
    for (let i = 0; i < 4; i++) assert.is((await echoOnce(s.port, `hi ${i}`)).toString(), `hi ${i}`);
    const { code } = await s.stop();
    assert.is(code, 0, s.stderr);
  });
}

test("without --backend: the default (WASM_REACTOR_BACKEND, else epoll) is used and named", async () => {
  const s = await startEcho([]);
  assert.match(s.stdout, new RegExp(`backend ${DEFAULT}, I\\/O backend \\w+, pid`));
  assert.is((await s.stop()).code, 0);
});

test("--help of serve and echo: Event backend line and the flag with its default", async () => {
  for (const cmd of ["serve", "echo"]) {
    const { code, stdout } = await runCli([cmd, "--help"]);
    assert.is(code, 0);
    assert.ok(stdout.includes(`Event backend: ${DEFAULT}`), stdout);
    assert.match(stdout, new RegExp(`--backend epoll\\|poll .*\\[default: ${DEFAULT}\\]`, "s"));
  }
});

test("a bad --backend: one line, exit 2; replay refuses --backend; a bad WASM_REACTOR_BACKEND too", async () => {
  const bad = await runCli(["serve", "--backend", "kqueue", "--port", "0"]);
  assert.is(bad.code, 2);
  assert.is(bad.stderr, "wasm-reactor serve: --backend must be epoll or poll, got 'kqueue' (see 'wasm-reactor serve --help')\n");
  const replay = await runCli(["replay", "--backend", OTHER, "x.rec"]);
  assert.is(replay.code, 2);
  assert.match(replay.stderr, /^wasm-reactor replay: --backend does not apply: a replay .* no event backend runs \(see 'wasm-reactor replay --help'\)\n$/);
  const saved = process.env.WASM_REACTOR_BACKEND;
  process.env.WASM_REACTOR_BACKEND = "select";
  try {
    const env = await runCli(["echo", "--port", "0"]);
    assert.is(env.code, 2);
    assert.is(env.stderr.trim().split("\n").length, 1, env.stderr);
    assert.match(env.stderr, /WASM_REACTOR_BACKEND must be epoll or poll, got 'select'/);
  } finally {
    if (saved === undefined) delete process.env.WASM_REACTOR_BACKEND; else process.env.WASM_REACTOR_BACKEND = saved;
  }
});

test.run();
