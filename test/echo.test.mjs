// The echo CLI as a child process, driven over 127.0.0.1 by node:net clients:
// flags and exit codes, signals, large transfers through slow readers, the
// write-buffer limit, idle timeouts, and running out of file descriptors.
// Every child and socket is stopped in test.after; every wait is bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import net from "node:net";
import { randomFillSync } from "node:crypto";
import {
  cleanup, runCli, startEcho, connect, echoOnce, closed, within, until, sleep, cpuTicks, slowEcho, firstDifference,
} from "./lib/procs.mjs";
import { connectNarrow } from "./lib/sys.mjs";

test.after(cleanup);

// ---- command line ------------------------------------------------------------

test("--help exits 0 and lists the flags", async () => {
  const top = await runCli(["--help"]);
  assert.is(top.code, 0, top.stderr);
  assert.match(top.stdout, /echo/);
  assert.match(top.stdout, /serve/);
  const echo = await runCli(["echo", "--help"]);
  assert.is(echo.code, 0, echo.stderr);
  for (const flag of ["--port", "--host", "--mode", "--idle-timeout", "--write-buf-max", "--max-events"]) {
    assert.ok(echo.stdout.includes(flag), `echo --help lists ${flag}:\n${echo.stdout}`);
  }
});

test("bad flags, bad values and unknown commands exit 2 with one line and a pointer to the help", async () => {
  for (const [args, says] of [
    [["echo", "--bogus"], /unknown flag --bogus/],
    [["echo", "--mode", "sideways"], /--mode must be lt or et/],
    [["echo", "--port", "http"], /--port must be a whole number/],
    [["echo", "--port", "70000"], /--port must be 0\.\.65535/],
    [["echo", "--idle-timeout"], /--idle-timeout needs a value/],
    [["frobnicate"], /unknown command 'frobnicate'/],
  ]) {
    const r = await runCli(args);
    assert.is(r.code, 2, `${args.join(" ")} -> exit ${r.code}`);
    assert.match(r.stderr, says);
    const help = args[0] === "echo" ? "wasm-reactor echo --help" : "wasm-reactor --help";
    assert.ok(r.stderr.endsWith(` (see '${help}')\n`), `points at the help: ${r.stderr}`);
    assert.is(r.stderr.split("\n").length, 2, `one line: ${JSON.stringify(r.stderr)}`);
    assert.is(r.stdout, "", "nothing on stdout");
  }
});

test("a port in use exits 1 with one line naming EADDRINUSE", async () => {
  const taken = net.createServer();
  await new Promise((resolve) => taken.listen(0, "127.0.0.1", resolve));
  try {
    const r = await runCli(["echo", "--port", String(taken.address().port)]);
    assert.is(r.code, 1, `exit ${r.code}: ${r.stderr}`);
    const lines = r.stderr.trim().split("\n");
    assert.is(lines.length, 1, `one line: ${JSON.stringify(r.stderr)}`);
    assert.match(lines[0], /EADDRINUSE/);
  } finally {
    taken.close();
  }
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  test(`${signal} stops the echo server cleanly with exit code 0`, async () => {
    const server = await startEcho();
    assert.equal([...(await echoOnce(server.port, "before the signal"))], [...Buffer.from("before the signal")]);
    const sock = await connect(server.port); // an open connection must not keep it alive
    const { code, signal: killedBy } = await server.stop(signal);
    sock.destroy();
    assert.is(killedBy, null, `exited by itself, not killed by ${killedBy}`);
    assert.is(code, 0, server.stderr);
  });
}

// ---- data --------------------------------------------------------------------

for (const mode of ["lt", "et"]) {
  test(`1 MB echoed to a slow reader arrives byte-identical (--mode ${mode})`, async () => {
    // The limit is above the payload: this is about order and integrity
    // through partial writes and the write ring, not about the limit.
    const server = await startEcho(["--mode", mode, "--write-buf-max", String(4 << 20)]);
    const data = randomFillSync(Buffer.alloc(1 << 20));
    // A narrow peer (small window and MSS): the server's writes go partial
    // and its write ring carries most of the megabyte.
    const got = await slowEcho(new net.Socket({ fd: connectNarrow(server.port) }), data);
    const at = firstDifference(got, data);
    assert.ok(at === -1, `echo differs from what was sent at byte ${at} of ${data.length} (got ${got.length} bytes)`);
    const { code } = await server.stop();
    assert.is(code, 0);
  });
}

test("a client that never reads is disconnected at --write-buf-max; another client is still served", async () => {
  const server = await startEcho(["--write-buf-max", "65536"]);
  const flood = await connect(server.port);
  flood.pause(); // never reads
  const chunk = Buffer.alloc(65536, 0x66);
  const CAP = 64 << 20;
  let sent = 0;
  const end = closed(flood);
  const pump = async () => {
    while (!flood.destroyed && sent < CAP) {
      sent += chunk.length;
      if (!flood.write(chunk)) {
        await Promise.race([new Promise((r) => flood.once("drain", r)), end, sleep(200)]);
      }
    }
  };
  const pumping = pump();
  // While the flood goes on, another client is served.
  assert.is((await echoOnce(server.port, "meanwhile")).toString(), "meanwhile");
  const { error } = await within(20_000, end, `the server to disconnect the client that never reads (${sent} bytes sent)`);
  await pumping;
  assert.ok(sent < CAP, `disconnected after ${sent} bytes, before ${CAP}`);
  assert.ok(error === null || /ECONNRESET|EPIPE/.test(error), `ended by the server (${error})`);
  assert.is((await echoOnce(server.port, "afterwards")).toString(), "afterwards");
  assert.is((await server.stop()).code, 0);
});

test("an idle connection is closed after --idle-timeout; a talking one is not", async () => {
  // 1 s against traffic every 50 ms: a wide margin for a loaded machine.
  const server = await startEcho(["--idle-timeout", "1000"]);
  const idle = await connect(server.port);
  const talker = await connect(server.port);
  const idleClosed = closed(idle);
  const talkerClosed = closed(talker);
  let replies = 0;
  talker.on("data", () => replies++);
  let talking = true;
  talker.write("hi");
  const chatter = setInterval(() => talking && talker.write("hi"), 50);
  try {
    await within(5_000, idleClosed, "the server to close the idle connection");
    await sleep(300);
    assert.ok(!talker.destroyed, "a connection with traffic every 50 ms stays open");
    assert.ok(replies >= 3, `the talker was answered (${replies} replies)`);
    talking = false; // now it goes quiet too
    await within(5_000, talkerClosed, "the server to close the connection once it went quiet");
  } finally {
    clearInterval(chatter);
  }
  assert.is((await server.stop()).code, 0);
});

// ---- running out of file descriptors -------------------------------------------

test("EMFILE under prlimit --nofile=40: pause logged once, no spinning, no crash, serving again after", async () => {
  const server = await startEcho([], { prefix: ["prlimit", "--nofile=40:40"] });
  const pauses = () => (server.stderr.match(/out of file descriptors/g) ?? []).length;
  const clients = [];
  for (let i = 0; i < 60; i++) clients.push(await connect(server.port));
  await until(5_000, () => pauses() > 0, `the server to log the accept pause; stderr: ${server.stderr}`);
  const pausedAt = Date.now();
  // Accepted connections are served while the pause lasts.
  const served = await Promise.allSettled(clients.slice(0, 5).map((s) => within(2_000, new Promise((resolve) => {
    s.once("data", (d) => resolve(d.toString()));
    s.write("ok?");
  }), "an echo from an accepted connection")));
  assert.ok(served.some((r) => r.status === "fulfilled" && r.value === "ok?"), "accepted connections still echo");

  const cpu0 = await cpuTicks(server.pid);
  await sleep(1_000);
  const cpu1 = await cpuTicks(server.pid);
  assert.ok(cpu1 - cpu0 < 30, `the server used ${cpu1 - cpu0} clock ticks of CPU in 1 s while paused (spinning?)`);
  assert.is(server.child.exitCode, null, `the server is still running; stderr: ${server.stderr}`);
  // The retry timer (1 s) has run into EMFILE again by now: still one line.
  await sleep(Math.max(0, pausedAt + 1_500 - Date.now()));
  assert.is(pauses(), 1, `the pause was logged once while the shortage lasted:\n${server.stderr}`);

  // Once the clients go, the backlog drains (possibly running short again
  // for a moment, which is a new shortage and may be logged) and new clients
  // are served.
  for (const s of clients) s.destroy();
  await until(10_000, async () => {
    try { return (await echoOnce(server.port, "back", 1_000)).toString() === "back"; } catch { return false; }
  }, "the server to serve a new client after the others closed");
  // The line is on the server's stderr pipe, the echo on a socket: which one
  // this process reads first is up to its event loop (under load, often the
  // socket), so wait for the line rather than look once.
  await until(5_000, () => /accept: resumed/.test(server.stderr), `the "accept: resumed" line; stderr: ${server.stderr}`);
  const { code, signal } = await server.stop();
  assert.is(signal, null);
  assert.is(code, 0, server.stderr);
});

test.run();
