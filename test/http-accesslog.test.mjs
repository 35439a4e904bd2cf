// The access log (--access-log): combined format on stdout by default, JSON
// lines with --access-log-format json, the client's address from accept4
// (IPv4 and IPv6), body bytes only, escaping of what clients send. Every
// expectation comes from what the test sent and from the files on disk.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer, connect } from "node:net";
import { HttpConn, get, sleep, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, spawnServer, startInProcess } from "./lib/http-server.mjs";
import { FakeHost } from "./lib/fakehost.mjs";
import abi from "./lib/abi.mjs";

const FILE = "0123456789".repeat(123) + "\n"; // 1231 bytes
const root = makeRoot({ "f.txt": FILE });
const servers = [];

/** One request on its own connection; returns the response and the client's own port. */
async function request(port, path, headers = [], method = "GET") {
  const conn = await HttpConn.open(port);
  const localPort = conn.sock.localPort;
  await conn.write(get(path, { method, headers }));
  const res = await conn.response({ method });
  conn.close();
  return { res, localPort };
}

const accessLines = (s) => s.stdout().split("\n").filter((l) => l && !l.startsWith("wasm-reactor "));
async function waitLines(s, n) {
  const deadline = Date.now() + 5000;
  while (accessLines(s).length < n && Date.now() < deadline) await sleep(25);
  return accessLines(s);
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const COMBINED = /^(\S+) - - \[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) \+0000\] "((?:[^"\\]|\\x[0-9A-F]{2})*)" (\d{3}) (\d+) "((?:[^"\\]|\\x[0-9A-F]{2})*)" "((?:[^"\\]|\\x[0-9A-F]{2})*)"$/;
function parseCombined(line) {
  const m = COMBINED.exec(line);
  assert.ok(m, `combined format: ${line}`);
  const [, addr, d, mon, y, hh, mm, ss, request, status, bytes, referer, ua] = m;
  return { addr, time: Date.UTC(+y, MONTHS.indexOf(mon), +d, +hh, +mm, +ss), request, status: +status, bytes: +bytes, referer, ua };
}
// nginx's escaping, written out independently: ", \, controls and bytes >= 0x7F as \xHH
const nginxEscape = (s) => [...Buffer.from(s, "utf8")].map((b) => (b === 0x22 || b === 0x5c || b < 0x20 || b >= 0x7f
  ? `\\x${b.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(b))).join("");

test("combined: address, UTC time, request line, status, body bytes, referer and user agent, escaped as nginx does", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--access-log"]);
  servers.push(s);
  const UA = 'Mozilla/5.0 (test) "quoted" café';
  const REF = "http://ref.test/page?q=1&r=\\";
  const before = Date.now();
  const a = await request(s.port, "/f.txt?x=1", [`User-Agent: ${Buffer.from(UA).toString("latin1")}`, `Referer: ${REF}`]);
  const b = await request(s.port, "/f.txt", [`If-None-Match: ${a.res.headers.etag}`]);
  const c = await request(s.port, "/f.txt", [], "HEAD");
  const d = await request(s.port, "/nope");
  assert.equal([a.res.status, b.res.status, c.res.status, d.res.status], [200, 304, 200, 404]);
  const lines = await waitLines(s, 4);
  assert.is(lines.length, 4, lines.join("\n"));
  const [la, lb, lc, ld] = lines.map(parseCombined);
  for (const l of [la, lb, lc, ld]) {
    assert.is(l.addr, "127.0.0.1");
    assert.ok(Math.abs(l.time - before) < 120_000, `time ${new Date(l.time).toISOString()} near ${new Date(before).toISOString()}`);
  }
  assert.is(la.request, "GET /f.txt?x=1 HTTP/1.1");
  assert.is(la.status, 200);
  assert.is(la.bytes, Buffer.byteLength(FILE), "body bytes = the file's size");
  assert.is(la.ua, nginxEscape(UA));
  assert.is(la.referer, nginxEscape(REF));
  assert.ok(la.ua.includes("\\x22quoted\\x22") && la.ua.endsWith("caf\\xC3\\xA9"), la.ua);
  assert.equal([lb.status, lb.bytes], [304, 0], "a 304 has no body");
  assert.equal([lc.request, lc.bytes], ["HEAD /f.txt HTTP/1.1", 0], "nor a HEAD");
  assert.equal([ld.status, ld.bytes, ld.referer, ld.ua], [404, d.res.body.length, "-", "-"], "absent fields are -");
  await s.stop();
});

test("combined: a request refused before it parsed is logged with its first line as received", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--access-log"]);
  servers.push(s);
  const conn = await HttpConn.open(s.port);
  await conn.write("GET /f.txt HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n");
  const res = await conn.response();
  conn.close();
  assert.is(res.status, 400);
  const [l] = (await waitLines(s, 1)).map(parseCombined);
  assert.equal([l.request, l.status, l.bytes, l.ua], ["GET /f.txt HTTP/1.1", 400, res.body.length, "-"]);
  await s.stop();
});

test("json: one JSON object per line with the client's address and ephemeral port", async () => {
  const s = await spawnServer(["serve", "--root", root, "--port", "0", "--access-log", "--access-log-format", "json"]);
  servers.push(s);
  const UA = 'agent "with quotes" \\ and café';
  const before = Date.now();
  const a = await request(s.port, "/f.txt", [`User-Agent: ${Buffer.from(UA).toString("latin1")}`, "Referer: http://r.test/"]);
  const b = await request(s.port, "/f.txt", [`If-Modified-Since: ${a.res.headers["last-modified"]}`]);
  const lines = await waitLines(s, 2);
  assert.is(lines.length, 2, lines.join("\n"));
  const [ja, jb] = lines.map((l) => JSON.parse(l));
  assert.equal(Object.keys(ja), ["time", "client", "port", "method", "target", "protocol", "status", "bytes", "duration_ms", "user_agent", "referer"]);
  assert.match(ja.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(ja.time) - before) < 120_000, ja.time);
  assert.is(ja.client, "127.0.0.1");
  assert.is(ja.port, a.localPort, "the client's own port");
  assert.is(jb.port, b.localPort);
  assert.not.equal(ja.port, jb.port);
  assert.equal([ja.method, ja.target, ja.protocol, ja.status, ja.bytes], ["GET", "/f.txt", "HTTP/1.1", 200, Buffer.byteLength(FILE)]);
  assert.ok(typeof ja.duration_ms === "number" && ja.duration_ms >= 0, `duration_ms ${ja.duration_ms}`);
  // non-ASCII bytes are \u00XX: JSON.parse gives them back as Latin-1 characters
  assert.is(ja.user_agent, Buffer.from(UA).toString("latin1"));
  assert.is(ja.referer, "http://r.test/");
  assert.equal([jb.status, jb.bytes, jb.user_agent, jb.referer], [304, 0, null, null]);
  assert.not.match(s.stderr(), /GET/, "nothing on stderr");
  await s.stop();
});

test("library: a log function of the caller's gets (\"access\", line), without the newline", async () => {
  const got = [];
  const srv = await startInProcess(root, { accessLog: true, accessLogFormat: "json", log: (level, line) => got.push([level, line]) });
  servers.push(srv);
  const { localPort } = await request(srv.port, "/f.txt");
  const deadline = Date.now() + 5000;
  while (!got.length && Date.now() < deadline) await sleep(10);
  assert.is(got.length, 1);
  assert.is(got[0][0], "access");
  assert.not.match(got[0][1], /\n/);
  const j = JSON.parse(got[0][1]);
  assert.equal([j.client, j.port, j.status], ["127.0.0.1", localPort, 200]);
});

// IPv6: only where ::1 can be bound (a kernel without IPv6 skips these cleanly).
const haveV6 = await new Promise((resolve) => {
  const probe = createServer();
  probe.once("error", () => resolve(false));
  probe.listen(0, "::1", () => probe.close(() => resolve(true)));
});

(haveV6 ? test : test.skip)("IPv6 client on ::1: the address in both formats", async () => {
  for (const format of ["combined", "json"]) {
    const got = [];
    const srv = await startInProcess(root, { host: "::1", accessLog: true, accessLogFormat: format, log: (level, line) => got.push(line) });
    servers.push(srv);
    const sock = connect({ host: "::1", port: srv.port });
    await new Promise((resolve, reject) => { sock.once("connect", resolve); sock.once("error", reject); });
    const localPort = sock.localPort;
    sock.write(get("/f.txt"));
    await new Promise((resolve) => { let n = 0; sock.on("data", (d) => { n += d.length; if (n > FILE.length) resolve(); }); });
    sock.destroy();
    const deadline = Date.now() + 5000;
    while (!got.length && Date.now() < deadline) await sleep(10);
    if (format === "combined") assert.is(parseCombined(got[0]).addr, "::1");
    else assert.equal([JSON.parse(got[0]).client, JSON.parse(got[0]).port], ["::1", localPort]);
    srv.stop();
  }
});

// Addresses real sockets here cannot produce, through the bare core: accept4's
// sockaddr is scripted, the line is what the core logs. Expected texts are
// RFC 5952's canonical forms, written out by hand.
test("bare core: IPv6 addresses in RFC 5952 form, IPv4-mapped as ::ffff:a.b.c.d, unknown families as -", () => {
  const v6 = (groups) => Buffer.from(groups.flatMap((g) => [g >> 8, g & 255]));
  const cases = [
    [abi.AF_INET6, v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), "2001:db8::1"],
    [abi.AF_INET6, v6([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]), "2001:db8:0:1:1:1:1:1"],
    [abi.AF_INET6, v6([1, 0, 0, 2, 0, 0, 0, 3]), "1:0:0:2::3"],
    [abi.AF_INET6, v6([1, 0, 0, 2, 2, 0, 0, 3]), "1::2:2:0:0:3"],
    [abi.AF_INET6, v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), "fe80::"],
    [abi.AF_INET6, v6([0, 0, 0, 0, 0, 0, 0, 0]), "::"],
    [abi.AF_INET6, v6([0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203]), "::ffff:10.1.2.3"],
    [abi.AF_INET6, v6([0xabcd, 0xef01, 0x2345, 0x6789, 0xabcd, 0xef01, 0x2345, 0x6789]), "abcd:ef01:2345:6789:abcd:ef01:2345:6789"],
    [abi.AF_INET, Buffer.from([192, 168, 0, 255]), "192.168.0.255"],
    [1 /* AF_UNIX */, Buffer.alloc(0), "-"],
  ];
  for (const [family, addr, want] of cases) {
    const h = new FakeHost({ config: { accessLog: true } });
    h.listen(3, abi.PROTO_HTTP);
    let accepted = false;
    h.answer(abi.OP_ACCEPT, (sqe, host) => {
      if (accepted) return -abi.EAGAIN;
      accepted = true;
      assert.ok(sqe.a0 > 0, "accept4 gets an address slot when the access log is on");
      const dv = host.dv;
      dv.setUint16(sqe.a0 + abi.SA_FAMILY, family, true);
      dv.setUint16(sqe.a0 + abi.SA_PORT, 40000, false);
      host.u8.set(addr, sqe.a0 + (family === abi.AF_INET6 ? abi.SA_IN6_ADDR : abi.SA_IN_ADDR));
      dv.setUint32(sqe.a0 + abi.SA_LEN, family === abi.AF_INET6 ? 28 : 16, true);
      return 10;
    });
    h.feed(10, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    h.tick([{ fd: 3, events: abi.EV_READABLE }]);
    const lines = h.logs.filter((l) => l.level === abi.LOG_ACCESS).map((l) => l.text);
    assert.is(lines.length, 1, `${want}: ${JSON.stringify(h.logs)}`);
    assert.is(lines[0].split(" ")[0], want);
  }
});

test.after(async () => {
  closeAllConns();
  await Promise.all(servers.map((s) => s.stop()));
  removeRoot(root);
});

test.run();
