// The fuzzer inside npm test: a few seconds of it (its seed printed, a
// failure kept in fuzz-failures/ with the command that reproduces it), the
// failure path, and its checks shown able to fail: the HTTP oracle on
// hand-made streams and on a planted wrong Content-Length, edge-only
// delivery on a planted kernel that lies about short reads.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { judge, model, Relay, newSide, HttpWorld, Server, judgeClient } from "../build/fuzz.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = mkdtempSync(join(tmpdir(), "wr-fuzz-"));
const fuzz = (...args) => spawnSync(process.execPath, [join(root, "build/fuzz.js"), ...args], { encoding: "utf8" });

test("the fuzzer runs for its time and finds nothing (its seed is printed; a failure is kept in fuzz-failures/)", () => {
  const seed = String(Date.now() % 1e9);
  // The line to find in npm test's output when this test fails.
  console.log(`fuzz.test: seed ${seed}; a failure is kept in fuzz-failures/ and reproduces with: npm run fuzz -- --seed <the iteration's seed> --seconds 0`);
  const r = fuzz("--seconds", "4", "--seed", seed, "--out", join(root, "fuzz-failures"));
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`^fuzz: seed ${seed}, 4 s\n`));
  const m = /ok, (\d+) iterations, (\d+) ticks, (\d+) responses checked, (\d+) traps recovered/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) >= 3, `only ${m[1]} iterations`);
  assert.ok(Number(m[3]) > 0, "the oracle judged responses");
});

test("a failure (an injected trap) is saved as a reproducer that replays", () => {
  const out = join(tmp, "trap");
  const r = fuzz("--seconds", "0", "--seed", "7", "--inject-trap", "--out", out);
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /FAILED after 1 iterations: trap/);
  assert.match(r.stdout, /reproduce: npm run fuzz -- --seed 7 --seconds 0 --inject-trap\n/);
  const rec = readdirSync(out).find((f) => f.endsWith(".rec"));
  assert.ok(rec);
  assert.match(readFileSync(join(out, `${rec}.txt`), "utf8"), /replay: wasm-reactor replay .* --check/);
  const rp = spawnSync(process.execPath, [join(root, "bin/wasm-reactor.js"), "replay", join(out, rec)], { encoding: "utf8" });
  // The replayed core traps at the same call: a faithful reproduction of a core bug, so exit 1.
  assert.is(rp.status, 1, rp.stdout + rp.stderr);
  assert.match(rp.stderr, /replay matched the recording .*, but the core trapped 1 time:/);
});

// ---- the oracle on hand-made streams ----------------------------------------------

const files = { "f.txt": { kind: "file", size: 10, br: false, gz: false }, d: { kind: "dir" } };
const env = {
  stat: (p) => files[p] ?? { kind: "none" }, list: () => null, faulted: () => false,
  cors: false, listing: false, precompressed: false, maxLine: 8192, maxHeader: 16384, maxHeaders: 100, maxBody: 1 << 20,
};
const b = (s) => Buffer.from(s, "latin1");
const ok200 = (len, extra = "") => `HTTP/1.1 200 OK\r\nETag: "a-1"\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: ${len}\r\n${extra}\r\n` + "A".repeat(len);
const exact = { ended: false, mode: "exact", draining: false };

test("oracle: a right answer passes; a wrong Content-Length, a missing or extra response, a kept-alive error fail", () => {
  const req = b("GET /f.txt HTTP/1.1\r\nHost: a\r\n\r\n");
  const m = model(req, false, env);
  assert.is(m.responses.length, 1);
  assert.is(judge(m, b(ok200(10)), exact), null);
  assert.match(judge(m, b(ok200(11)), exact), /response 0 .*Content-Length 11, expected 10/);
  assert.match(judge(m, b(""), exact), /response 0 .* is missing/);
  assert.match(judge(m, b(ok200(10) + ok200(10)), exact), /one response too many/);
  assert.match(judge(m, b(ok200(10)), { ...exact, ended: true }), /ended a keep-alive connection/);
  // 405 must name what is allowed, and close.
  const post = model(b("POST /f.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"), false, env);
  const r405 = "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 23\r\nConnection: close\r\n\r\n405 Method Not Allowed\n";
  assert.is(judge(post, b(r405.replace("\r\nConnection", "\r\nAllow: GET, HEAD\r\nConnection")), { ...exact, ended: true }), null);
  assert.match(judge(post, b(r405), { ...exact, ended: true }), /405 without Allow/);
  assert.match(judge(post, b(r405.replace("Connection: close\r\n", "Allow: GET, HEAD\r\n")), { ...exact, ended: true }), /without Connection: close/);
});

test("oracle: ranges, directories, HEAD, pipelining, and a mutation it cannot read exactly", () => {
  const m = model(b("GET /f.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=2-4\r\n\r\nHEAD /f.txt HTTP/1.1\r\nHost: a\r\n\r\nGET /d HTTP/1.1\r\nHost: a\r\n\r\n"), true, env);
  const partial = `HTTP/1.1 206 Partial Content\r\nETag: "a-1"\r\nLast-Modified: x\r\nContent-Length: 3\r\nContent-Range: bytes 2-4/10\r\n\r\nCDE`;
  const head = `HTTP/1.1 200 OK\r\nETag: "a-1"\r\nLast-Modified: x\r\nContent-Length: 10\r\n\r\n`;
  const moved = "HTTP/1.1 301 Moved Permanently\r\nLocation: /d/\r\nContent-Length: 0\r\n\r\n";
  const end = { ...exact, ended: true };
  assert.is(judge(m, b(partial + head + moved), end), null);
  assert.match(judge(m, b(partial.replace("2-4/10", "2-5/10") + head + moved), end), /Content-Range bytes 2-5\/10, expected bytes 2-4\/10/);
  assert.match(judge(m, b(partial + head + moved.replace("/d/", "/d")), end), /Location \/d, expected \/d\//);
  assert.match(judge(m, b(partial + head + moved), exact), /should end the connection/, "the client closed: so must the server");
  // A header line folded onto the next (obs-fold): grey from there on, any well-formed answer.
  const g = model(b("GET /f.txt HTTP/1.1\r\nHost: a\r\n x\r\n\r\n"), false, env);
  assert.is(g.tail, "grey");
  assert.is(judge(g, b("HTTP/1.1 400 Bad Request\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"), end), null);
  assert.match(judge(g, b("HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\n400 Bad Request\n"), end), /is not a status line/);
  assert.match(judge(g, b("HTTP/1.1 400 Bad Request\r\nContent-Length: 99\r\n\r\n400 Bad Request\n"), exact), /cut short .* still open/);
  assert.match(judge(g, b("HTTP/1.1 299 Odd\r\nContent-Length: 0\r\n\r\n"), end), /not one the server sends/);
});

// ---- the relay oracle (tcp proxy) on hand-made pairs -------------------------------

const side = (role, id, input, fd) => ({
  input: b(input), pos: 0, peerClosed: false, px: newSide(role, id),
  life: { closed: false, shut: false, faulted: false, trapped: false, draining: false, timedOut: false, fd },
});
function pair() {
  const r = new Relay(100);
  const c0 = side("client", 0, "\x00hello", 10), c1 = side("client", 1, "\x01world", 11);
  const u = side("up", 0, "\x80reply", 20);
  u.px.connected = true;
  r.clients.push(c0, c1);
  r.ups.push(u);
  c0.pos = c1.pos = 6;
  c1.life.closed = true; // (its stream only has to exist: no stall to report at the end)
  return { r, c0, c1, u };
}

test("relay oracle: a faithful relay passes; mixed, early, reordered or short streams and early FINs fail", () => {
  let { r, c0, u } = pair();
  assert.is(r.write(u, b("\x00he")), null);
  assert.is(r.write(u, b("llo")), null);
  u.pos = 6;
  assert.is(r.write(c0, b("\x80reply")), null);
  assert.is(r.read(c0, 0), null);
  assert.is(r.shutdown(u), null, "the client's FIN after all its bytes");
  assert.is(r.judge(), null);
  // another client's bytes into a bound upstream
  ({ r, u } = pair());
  assert.is(r.write(u, b("\x00h")), null);
  assert.match(r.write(u, b("\x01")), /byte 2 is 1, proxy client #0 .* sent 101 \(a mixed-up/);
  // one client's bytes to two upstreams
  ({ r, c0, u } = pair());
  const u2 = side("up", 1, "\x81", 21);
  u2.px.connected = true;
  r.ups.push(u2);
  assert.is(r.write(u, b("\x00")), null);
  assert.match(r.write(u2, b("\x00")), /one stream, two peers/);
  // before the connect succeeded; before the bytes were read from the client
  ({ r, c0, u } = pair());
  u.px.connected = false;
  assert.match(r.write(u, b("\x00")), /before its connect succeeded/);
  ({ r, c0, u } = pair());
  c0.pos = 2;
  assert.match(r.write(u, b("\x00he")), /had read only 2/);
  // a FIN passed on before the bytes before it, or before the FIN was read
  ({ r, c0, u } = pair());
  assert.is(r.write(u, b("\x00hel")), null);
  assert.match(r.shutdown(u), /before the core read the FIN/);
  r.read(c0, 0);
  assert.match(r.shutdown(u), /after 4 of the 6 bytes/);
  // a clean pair that ends short
  ({ r, c0, u } = pair());
  assert.is(r.write(u, b("\x00hel")), null);
  assert.match(r.judge(), /received 4 of its 6 bytes, with no fault/);
  u.life.faulted = true;
  assert.is(r.judge(), null, "cut short by a fault: a prefix is right");
  // too many bytes held in the core between the sides
  ({ r, c0, u } = pair());
  c0.pos = 101;
  assert.match(r.read(c0, 101), /holds 101 bytes/);
  // an error whose pair stays open
  ({ r, c0, u } = pair());
  r.write(u, b("\x00"));
  r.error(u);
  for (let i = 0; i < 3; i++) assert.is(r.tick(() => false, [c0, u]), null);
  assert.match(r.tick(() => false, [c0, u]), /still open/);
});

// ---- the http-mode proxy oracle (proxyhttp.ts) on hand-made exchanges -------------

const first = { int: () => 0, chance: () => false, pick: (a) => a[0] }; // a server that answers 200, Content-Length: 0
const hreq = (id, extra = {}) => ({ id, method: "GET", refused: null, bodyRefused: false, body: "", complete: true, v10: false, xff: null, ...extra });
const upSock = (fd) => ({ input: new Uint8Array(0), pos: 0, peerClosed: false, life: { faulted: false, timedOut: false, trapped: false, fd } });
function server(w, s) {
  return new Server(w, s, (bytes) => { s.input = Buffer.concat([s.input, Buffer.from(bytes, "latin1")]); }, () => { s.peerClosed = true; });
}
const fwd = (id, extra = "") => b(`GET /r/${id} HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\nVia: 1.1 wasm-reactor\r\n${extra}\r\n`);

test("http proxy oracle, servers: a forwarded request passes; hop-by-hop fields, a refused request, a shared connection, a retry after response bytes fail", () => {
  const w = new HttpWorld(first, true);
  for (const q of [hreq("0.0"), hreq("0.1"), hreq("0.2", { refused: [400] })]) w.reqs.set(q.id, q);
  const s = upSock(20), srv = server(w, s);
  assert.is(srv.feed(fwd("0.0")), null);
  assert.match(b(s.input).toString(), /^HTTP\/1\.1 200 OK\r\nX-Id: 0\.0\r\n/);
  assert.match(srv.feed(fwd("0.1")), /previous answer unread \(a connection shared by two requests\)/);
  assert.match(server(w, upSock(21)).feed(fwd("0.1", "Connection: close\r\n")), /hop-by-hop field connection/);
  assert.match(server(w, upSock(22)).feed(fwd("0.2")), /serve refuses it \(400\)/);
  assert.match(server(w, upSock(23)).feed(b("GET /r/0.1 HTTP/1.1\r\nHost: a\r\nVia: 1.1 wasm-reactor\r\n\r\n")), /X-Forwarded-For undefined/);
  s.pos = s.input.length; // the core read the answer to 0.0: a second try of 0.0 breaks the retry rules
  assert.match(server(w, upSock(24)).feed(fwd("0.0")), /retried after its first upstream \(fd 20\) had sent \d+ response bytes/);
});

test("http proxy oracle, clients: each answer is its request's; another's, a wrong body, a stall, a refused request without its 4xx fail", () => {
  const w = new HttpWorld(first, true);
  const sock = upSock(20);
  const ans = (id, body) => w.answers.set(id, [{ id, status: 200, body, short: false, never: false, sock, start: 0, reused: false }]);
  ans("0.0", "abc");
  ans("0.1", "xy");
  const q = [hreq("0.0"), hreq("0.1")];
  const r = (id, body) => `HTTP/1.1 200 OK\r\nX-Id: ${id}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const open = { ended: false, cut: false, peerClosed: false };
  assert.is(judgeClient(w, q, b(r("0.0", "abc") + r("0.1", "xy")), open), null);
  assert.match(judgeClient(w, q, b(r("0.1", "xy") + r("0.0", "abc")), open), /another request's answer \(mixed up or reordered\)/);
  assert.match(judgeClient(w, q, b(r("0.0", "abd") + r("0.1", "xy")), open), /a body of 3 bytes/);
  assert.match(judgeClient(w, q, b(r("0.0", "abc")), open), /0\.1 \(GET\) is unanswered and the connection still open/);
  assert.match(judgeClient(w, q, b(r("0.0", "abc") + r("0.1", "xy").slice(0, -1)), { ...open, ended: true }), /cut short .* with no fault/);
  const e = (st, reason, close) => `HTTP/1.1 ${st} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${st.length + reason.length + 2}\r\n${close ? "Connection: close\r\n" : ""}\r\n${st} ${reason}\n`;
  assert.is(judgeClient(w, q, b(r("0.0", "abc") + e("502", "Bad Gateway")), open), null, "the proxy's own 502 answers a forwarded request");
  const bad = [hreq("0.2", { refused: [400] })];
  const ended = { ended: true, cut: false, peerClosed: false };
  assert.is(judgeClient(w, bad, b(e("400", "Bad Request", true)), ended), null);
  assert.match(judgeClient(w, bad, b(e("502", "Bad Gateway", true)), ended), /expected 400 \(serve refuses it\)/);
  assert.match(judgeClient(w, bad, b(e("400", "Bad Request", false)), ended), /without Connection: close/);
});

// ---- planted faults: the checks fail when they should -----------------------------

test("a planted wrong Content-Length is caught by the oracle, kept, and reproduced by its seed", () => {
  const out = join(tmp, "wrong-length");
  const r = fuzz("--seconds", "3", "--seed", "11", "--plant", "wrong-length", "--no-traps", "--out", out);
  assert.is(r.status, 1, r.stdout + r.stderr);
  // A wrong length shows as a wrong Content-Length or, when the body is framed by it, as a broken stream.
  assert.match(r.stdout, /FAILED after \d+ iterations: oracle: connection #\d+ on fd \d+ .*(Content-Length \d+|status line|cut short)/);
  const cmd = /reproduce: npm run fuzz -- --seed (\d+) --seconds 0 --no-traps --plant wrong-length\n/.exec(r.stdout);
  assert.ok(cmd, r.stdout);
  const first = /FAILED after \d+ iterations: (.*)/.exec(r.stdout)[1];
  const again = fuzz("--seconds", "0", "--seed", cmd[1], "--no-traps", "--plant", "wrong-length", "--out", join(out, "again"));
  assert.is(again.status, 1, again.stdout);
  assert.is(/FAILED after 1 iterations: (.*)/.exec(again.stdout)?.[1], first, "the seed alone reproduces the failure");
});

test("ET edge-only delivery finds a stall: a kernel whose short reads do not drain (planted) leaves answers missing", () => {
  // Seed 18: one ET HTTP iteration. Without the plant it passes, with it the
  // core (rightly) takes a short read for drained and waits for an edge that
  // never comes.
  const args = ["--seconds", "0", "--seed", "18", "--no-traps", "--out", join(tmp, "short")];
  const clean = fuzz(...args);
  assert.is(clean.status, 0, clean.stdout + clean.stderr);
  const r = fuzz(...args, "--plant", "short-reads");
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /FAILED after 1 iterations: oracle: .* is missing: .* still open \(a stall\?\)/);
});

// Seeds that once found a core bug: each replays its one iteration clean.
const REGRESSIONS = [
  // Odd seed: completions shuffled. A refused interest change of fd 25's
  // earlier incarnation completed after the accept that reused the number,
  // and closed the new connection unanswered (no generation check).
  [3581482883, "a stale interest failure closed the reused fd's new connection"],
  // The oracle's own gap: "Expect: ,100-continue" is a list holding
  // 100-continue (empty elements are allowed), not an unknown expectation.
  [1574907512, "an Expect list with an empty element is 100-continue"],
  // The oracle's own gap: a mutated byte 0xA0 (NBSP in latin1) before the
  // first range-spec; String#trim stripped it, an HTTP parser must not
  // (OWS is SP and HTAB only): the Range is invalid and 200 right.
  [3730458387, "NBSP is not OWS: an invalid Range is ignored"],
  // The kernel model's own gap: more fds ready than maxevents, in a fixed
  // order once calm, starved the last ones (Linux rotates its ready list).
  [3690227929, "every ready fd gets its turn past maxevents"],
  // Odd seed, a trap inside a READ completion reaped in a later tick: the
  // trapped connection stayed marked in flight, so its idle timeout waited
  // for a request that had already completed, and it was never closed.
  [2447210943, "a connection trapped in its own completion is closed by its idle timeout"],
  // A proxy iteration: a trap in the READ completion of a client doomed it
  // with its receive buffer still marked as holding the 32 KiB it asked for;
  // its upstream's next write completion forwarded those stale bytes (the
  // relay oracle: the upstream got more than the client sent). The peer of
  // a doomed side now closes alone and takes nothing from it.
  [3348960226, "the peer of a trapped proxy side takes nothing from it"],
  // An http-mode proxy iteration: a client's write completion pumped the
  // last bytes of a response, which ended the exchange and closed the
  // upstream (no pool); the completion then resumed that closed upstream
  // (it had been paused by the full client ring): epoll_ctl ADD on a closed
  // fd. (test/proxy-http-core.test.mjs pins it too.)
  [1, "http mode: the upstream an ended response closed is not resumed"],
  // http mode: socket() returned an fd beyond the core's table; the proxy
  // closed it and the client with it, unanswered. Now a 502, as for a
  // socket() that failed (test/proxy-http-core.test.mjs).
  [2654435763, "http mode: an upstream fd beyond the table is a 502"],
  // http mode: a whole head waited for a connect in progress and the
  // client's header timeout (still running from the head's first byte)
  // closed it unanswered; the connect timeout now decides (retry, then 5xx).
  [387276930, "http mode: the header timeout ends with the head"],
  // http mode, completions kept in flight: a pooled connection whose probe
  // read was still in the kernel was dropped by the next request's pool
  // take with a plain close; the read then completed on a closed fd.
  [4010499595, "http mode: a pooled connection with a read in flight closes once it completes"],
  // Odd seed, completions kept in flight: a trap in the late completion of
  // a write resumed on WRITABLE doomed the connection, whose close waited
  // for two more rounds; the server was idle, none came, and the response
  // stayed cut short on an open connection. Now closed with nothing in flight.
  [2691418391, "a trapped connection on an idle server is closed without waiting for rounds"],
];
for (const [seed, what] of REGRESSIONS) {
  test(`regression seed ${seed}: ${what}`, () => {
    const r = fuzz("--seconds", "0", "--seed", String(seed), "--out", join(tmp, `reg-${seed}`));
    assert.is(r.status, 0, r.stdout + r.stderr);
  });
}

test("bad fuzz arguments exit 2", () => {
  assert.is(fuzz("--bogus").status, 2);
  assert.is(fuzz("--plant", "nothing").status, 2);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
