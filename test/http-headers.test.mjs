// Response options that static servers have (nginx, `serve`, http-server):
// Cache-Control (default no-cache, custom, none), CORS (--cors: headers on
// every response, 204 preflights; without it OPTIONS stays 405) and
// precompressed sidecars (--precompressed: X.br / X.gz by Accept-Encoding,
// with Vary). Servers run in this process on ephemeral ports; expectations
// come from the files on disk and the RFCs, not from the server.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync, unlinkSync, mkdirSync, symlinkSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { brotliCompressSync, gzipSync, brotliDecompressSync, gunzipSync } from "node:zlib";
import { exchange, fetchOne, get, headerCount, sleep, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, startInProcess } from "./lib/http-server.mjs";

const JS = Buffer.from("export const greeting = 'hello';\n".repeat(200));
const CSS = Buffer.from("p { color: red }\n".repeat(100));
const TEXT = "plain text, no sidecar\n";
const files = {
  "app.js": JS, "app.js.br": brotliCompressSync(JS), "app.js.gz": gzipSync(JS),
  "style.css": CSS, "style.css.gz": gzipSync(CSS),                  // gzip only
  "gone.js": JS, "gone.js.br": brotliCompressSync(JS), "gone.js.gz": gzipSync(JS), // removed by a test
  "dir.js": JS, "dir.js.br/": "",                                   // a directory is not a sidecar
  "link.js": JS,                                                    // link.js.gz points outside the root
  "plain.txt": TEXT,
  "sub/index.html": "<p>sub</p>\n",
  "listed/a.txt": "a\n",
};
const root = makeRoot(files);
const outside = join(tmpdir(), `wr-outside-${process.pid}.gz`);
writeFileSync(outside, gzipSync(JS));
symlinkSync(outside, join(root, "link.js.gz"));
const PAST = new Date("2024-03-10T12:34:56Z");
for (const f of ["app.js", "app.js.br", "app.js.gz", "plain.txt"]) utimesSync(join(root, f), PAST, PAST);
const disk = (f) => readFileSync(join(root, f));

const servers = [];
async function server(opts) {
  const s = await startInProcess(root, { mode: "et", ...opts });
  servers.push(s);
  return s.port;
}
const plainPort = await server({ listing: true });                          // defaults: no-cache, no CORS, no sidecars
const customPort = await server({ cacheControl: "public, max-age=60" });
const nonePort = await server({ cacheControl: null });
const corsPort = await server({ cors: true });
const prePort = await server({ precompressed: true });

const req = (port, path, headers = [], method = "GET") => fetchOne(port, path, { headers, method });
const JS_TYPE = "text/javascript; charset=utf-8";

// ---- Cache-Control ---------------------------------------------------------------

test("Cache-Control: no-cache by default on 200, HEAD, 206 and 304, and on a listing", async () => {
  const ok = await req(plainPort, "/plain.txt");
  assert.is(ok.status, 200);
  assert.is(ok.headers["cache-control"], "no-cache");
  assert.is(headerCount(ok, "Cache-Control"), 1);
  assert.is((await req(plainPort, "/plain.txt", [], "HEAD")).headers["cache-control"], "no-cache");
  const part = await req(plainPort, "/plain.txt", ["Range: bytes=0-4"]);
  assert.is(part.status, 206);
  assert.is(part.body.toString(), TEXT.slice(0, 5));
  assert.is(part.headers["cache-control"], "no-cache");
  const nm = await req(plainPort, "/plain.txt", [`If-None-Match: ${ok.headers.etag}`]);
  assert.is(nm.status, 304);
  assert.is(nm.headers["cache-control"], "no-cache", "a 304 carries the Cache-Control a 200 would (RFC 9110 15.4.5)");
  const list = await req(plainPort, "/listed/");
  assert.is(list.status, 200);
  assert.match(list.headers["content-type"], /^text\/html/);
  assert.is(list.headers["cache-control"], "no-cache");
});

test("Cache-Control is not sent on errors and redirects", async () => {
  for (const [path, status, headers] of [["/missing", 404, []], ["/sub", 301, []], ["/plain.txt", 416, ["Range: bytes=999-"]],
    ["/plain.txt", 412, ["If-Match: \"nope\""]], ["/%00", 400, []]]) {
    const r = await req(plainPort, path, headers);
    assert.is(r.status, status, path);
    assert.is(r.headers["cache-control"], undefined, `${status} ${path}`);
  }
});

test("Cache-Control: a custom value as given, on 200, 206 and 304", async () => {
  const ok = await req(customPort, "/plain.txt");
  assert.is(ok.headers["cache-control"], "public, max-age=60");
  assert.is((await req(customPort, "/plain.txt", ["Range: bytes=1-2"])).headers["cache-control"], "public, max-age=60");
  const nm = await req(customPort, "/plain.txt", [`If-None-Match: ${ok.headers.etag}`]);
  assert.is(nm.status, 304);
  assert.is(nm.headers["cache-control"], "public, max-age=60");
  assert.is((await req(customPort, "/missing")).headers["cache-control"], undefined);
});

test("Cache-Control: none (null) sends no header at all", async () => {
  const ok = await req(nonePort, "/plain.txt");
  assert.is(ok.status, 200);
  assert.is(headerCount(ok, "Cache-Control"), 0);
  assert.is(headerCount(await req(nonePort, "/plain.txt", ["Range: bytes=1-2"]), "Cache-Control"), 0);
  assert.is(headerCount(await req(nonePort, "/plain.txt", [`If-None-Match: ${ok.headers.etag}`]), "Cache-Control"), 0);
});

test("a Cache-Control value that could split the head is refused by the library", async () => {
  const { Server } = await import("../dist/index.js");
  for (const bad of ["no-cache\r\nSet-Cookie: a=1", "caf\u00e9", "", " x", "x".repeat(257)]) {
    assert.throws(() => new Server({ protocol: "http", root, port: 0, handleSignals: false, cacheControl: bad }), /cacheControl/, JSON.stringify(bad));
  }
});

// ---- CORS ------------------------------------------------------------------------

const exposes = (r) => (r.headers["access-control-expose-headers"] ?? "").split(/\s*,\s*/);

test("--cors: Access-Control-Allow-Origin: * and the exposed headers on 200, 206, 304, 404 and 301", async () => {
  const ok = await req(corsPort, "/plain.txt", ["Origin: http://example.test"]);
  const cases = [
    ok,
    await req(corsPort, "/plain.txt", ["Range: bytes=0-1"]),
    await req(corsPort, "/plain.txt", [`If-None-Match: ${ok.headers.etag}`]),
    await req(corsPort, "/missing", ["Origin: http://example.test"]),
    await req(corsPort, "/sub"),
  ];
  assert.equal(cases.map((r) => r.status), [200, 206, 304, 404, 301]);
  for (const r of cases) {
    assert.is(r.headers["access-control-allow-origin"], "*", `${r.status}`);
    assert.is(headerCount(r, "Access-Control-Allow-Origin"), 1);
    for (const h of ["Content-Length", "Content-Range", "ETag", "Last-Modified", "Accept-Ranges", "Content-Encoding"]) {
      assert.ok(exposes(r).includes(h), `${r.status} exposes ${h}: ${r.headers["access-control-expose-headers"]}`);
    }
  }
});

test("--cors: a preflight gets 204 with methods, the asked-for headers and a max age; any path; keep-alive", async () => {
  const preflight = "OPTIONS /missing/anything HTTP/1.1\r\nHost: t\r\nOrigin: http://example.test\r\n"
    + "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-custom, authorization\r\n\r\n";
  const { responses: [p, g], conn } = await exchange(corsPort, preflight + get("/plain.txt"), { methods: ["OPTIONS", "GET"] });
  conn.close();
  assert.is(p.status, 204);
  assert.is(p.body.length, 0);
  assert.is(p.headers["content-length"], undefined, "no Content-Length on 204 (RFC 9110 8.6)");
  assert.is(p.headers["access-control-allow-origin"], "*");
  assert.equal(p.headers["access-control-allow-methods"].split(/\s*,\s*/).sort(), ["GET", "HEAD", "OPTIONS"]);
  assert.is(p.headers["access-control-allow-headers"], "x-custom, authorization");
  assert.match(p.headers.vary ?? "", /Access-Control-Request-Headers/);
  assert.ok(Number(p.headers["access-control-max-age"]) > 0, "max age");
  assert.is(g.status, 200, "the connection stays usable after the preflight");
  assert.is(g.body.toString(), TEXT);
  // the asterisk form (RFC 9112 3.2.4) names no file: 204 too
  const { responses: [star], conn: c2 } = await exchange(corsPort, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", { methods: ["OPTIONS"] });
  c2.close();
  assert.is(star.status, 204);
  assert.is(star.headers["access-control-allow-origin"], "*");
});

test("--cors: a preflight that asks for no headers gets the request headers the server acts on", async () => {
  const r = await req(corsPort, "/plain.txt", ["Origin: http://example.test", "Access-Control-Request-Method: GET"], "OPTIONS");
  assert.is(r.status, 204);
  const allowed = r.headers["access-control-allow-headers"].split(/\s*,\s*/);
  for (const h of ["Range", "If-None-Match", "If-Modified-Since"]) assert.ok(allowed.includes(h), h);
  // a list that is not plain header names is not echoed
  const odd = await req(corsPort, "/plain.txt", ["Access-Control-Request-Headers: a;b=\"c\""], "OPTIONS");
  assert.is(odd.status, 204);
  assert.not.match(odd.headers["access-control-allow-headers"], /b=/);
});

test("without --cors: no CORS headers, and OPTIONS is still 405 with Allow: GET, HEAD", async () => {
  const ok = await req(plainPort, "/plain.txt", ["Origin: http://example.test"]);
  assert.is(ok.headers["access-control-allow-origin"], undefined);
  const { responses: [r], conn } = await exchange(plainPort, get("/plain.txt", { method: "OPTIONS" }), { methods: ["OPTIONS"] });
  assert.is(r.status, 405);
  assert.is(r.headers.allow, "GET, HEAD");
  await conn.closedByServer();
  // with --cors, a POST's 405 names OPTIONS among the allowed methods
  const post = await req(corsPort, "/plain.txt", [], "POST");
  assert.is(post.status, 405);
  assert.is(post.headers.allow, "GET, HEAD, OPTIONS");
  assert.is(post.headers["access-control-allow-origin"], "*", "errors are readable by scripts too");
});

// ---- precompressed sidecars ------------------------------------------------------

const ae = (port, path, value, extra = []) => req(port, path, value === null ? extra : [`Accept-Encoding: ${value}`, ...extra]);

test("--precompressed: br is preferred, with the original's Content-Type, the sidecar's bytes, length and ETag", async () => {
  const ident = await ae(prePort, "/app.js", null);
  const br = await ae(prePort, "/app.js", "gzip, deflate, br");
  assert.is(br.status, 200);
  assert.is(br.headers["content-encoding"], "br");
  assert.is(br.headers["content-type"], JS_TYPE);
  assert.is(br.headers.vary, "Accept-Encoding");
  assert.ok(br.body.equals(disk("app.js.br")), "the sidecar's bytes");
  assert.ok(brotliDecompressSync(br.body).equals(JS), "which decode to the original");
  assert.is(br.headers["content-length"], String(disk("app.js.br").length));
  assert.ok(br.headers.etag && br.headers.etag !== ident.headers.etag, `ETag ${br.headers.etag} differs from ${ident.headers.etag}`);
  assert.is(br.headers["cache-control"], "no-cache");
});

test("--precompressed: gzip when only gzip is accepted, and for a file that only has a .gz", async () => {
  for (const [path, value, file] of [["/app.js", "gzip", "app.js.gz"], ["/app.js", "x-gzip", "app.js.gz"], ["/style.css", "br, gzip", "style.css.gz"]]) {
    const r = await ae(prePort, path, value);
    assert.is(r.headers["content-encoding"], "gzip", `${path} ${value}`);
    assert.ok(r.body.equals(disk(file)), `${path}: ${file}'s bytes`);
    assert.ok(gunzipSync(r.body).equals(readFileSync(join(root, path.slice(1)))));
    assert.is(r.headers.vary, "Accept-Encoding");
  }
  assert.match((await ae(prePort, "/style.css", "gzip")).headers["content-type"], /^text\/css/);
});

test("--precompressed: q-values decide (q=0 refuses, the highest wins, br on a tie, * counts)", async () => {
  const cases = [
    ["br;q=0, gzip", "gzip"], ["br;q=0.5, gzip;q=0.8", "gzip"], ["gzip;q=0.5, br;q=0.5", "br"], ["gzip;q=1.0, br;q=0.999", "gzip"],
    ["*", "br"], ["*;q=0.5, br;q=0", "gzip"], ["gzip;q=0, br;q=0", null], ["*;q=0", null], ["identity", null],
    ["deflate, compress", null], ["GZIP", "gzip"], ["br;q=bogus, gzip;q=0.1", "gzip"], ["", null],
  ];
  for (const [value, want] of cases) {
    const r = await ae(prePort, "/app.js", value);
    assert.is(r.headers["content-encoding"], want ?? undefined, `Accept-Encoding: ${value}`);
    assert.ok(r.body.equals(want === "br" ? disk("app.js.br") : want === "gzip" ? disk("app.js.gz") : JS), `body for ${value}`);
    assert.is(r.headers.vary, "Accept-Encoding", `Vary for ${value}`);
  }
});

test("--precompressed: identity without Accept-Encoding, still with Vary; no Vary for a file without sidecars", async () => {
  const r = await ae(prePort, "/app.js", null);
  assert.is(r.headers["content-encoding"], undefined);
  assert.ok(r.body.equals(JS));
  assert.is(r.headers.vary, "Accept-Encoding");
  const plain = await ae(prePort, "/plain.txt", "br, gzip");
  assert.is(plain.body.toString(), TEXT);
  assert.is(plain.headers.vary, undefined);
  assert.is(plain.headers["content-encoding"], undefined);
});

test("--precompressed: ranges, HEAD and conditionals work on the sidecar", async () => {
  const brFile = disk("app.js.br");
  const part = await ae(prePort, "/app.js", "br", ["Range: bytes=0-9"]);
  assert.is(part.status, 206);
  assert.is(part.headers["content-encoding"], "br");
  assert.ok(part.body.equals(brFile.subarray(0, 10)));
  assert.is(part.headers["content-range"], `bytes 0-9/${brFile.length}`);
  assert.is(part.headers.vary, "Accept-Encoding");
  const head = await req(prePort, "/app.js", ["Accept-Encoding: br"], "HEAD");
  assert.is(head.headers["content-length"], String(brFile.length));
  assert.is(head.headers["content-encoding"], "br");
  const etag = part.headers.etag;
  const nm = await ae(prePort, "/app.js", "br", [`If-None-Match: ${etag}`]);
  assert.is(nm.status, 304);
  assert.is(nm.headers.etag, etag);
  assert.is(nm.headers.vary, "Accept-Encoding");
  // the same validator does not match the identity representation
  const other = await ae(prePort, "/app.js", null, [`If-None-Match: ${etag}`]);
  assert.is(other.status, 200);
  assert.ok(other.body.equals(JS));
});

test("--precompressed: several ranges of a sidecar get the whole sidecar (200); identity still gets multipart", async () => {
  const brFile = disk("app.js.br");
  const whole = await ae(prePort, "/app.js", "br", ["Range: bytes=0-9,20-29"]);
  assert.is(whole.status, 200);
  assert.is(whole.headers["content-encoding"], "br");
  assert.is(whole.headers["content-range"], undefined);
  assert.ok(whole.body.equals(brFile));
  const multi = await ae(prePort, "/app.js", null, ["Range: bytes=0-9,20-29"]);
  assert.is(multi.status, 206);
  assert.match(multi.headers["content-type"], /^multipart\/byteranges; boundary=/);
  assert.is(multi.headers["content-encoding"], undefined);
  assert.ok(multi.body.includes(JS.subarray(20, 30)));
});

test("--precompressed: a direct request for the sidecar serves it as itself", async () => {
  const r = await ae(prePort, "/app.js.gz", "gzip, br");
  assert.is(r.status, 200);
  assert.is(r.headers["content-type"], "application/gzip");
  assert.is(r.headers["content-encoding"], undefined);
  assert.is(r.headers.vary, undefined);
  assert.ok(r.body.equals(disk("app.js.gz")));
});

test("--precompressed: only regular files beneath the root count (a directory, a symlink out of the root)", async () => {
  const d = await ae(prePort, "/dir.js", "br");
  assert.is(d.headers["content-encoding"], undefined);
  assert.ok(d.body.equals(JS));
  const l = await ae(prePort, "/link.js", "gzip");
  assert.is(l.headers["content-encoding"], undefined, "RESOLVE_BENEATH refuses the symlink");
  assert.ok(l.body.equals(JS));
});

test("--precompressed: a removed sidecar is noticed at the next re-check (about a second)", async () => {
  assert.is((await ae(prePort, "/gone.js", "br, gzip")).headers["content-encoding"], "br");
  unlinkSync(join(root, "gone.js.br"));
  await sleep(1200);
  const g = await ae(prePort, "/gone.js", "br, gzip");
  assert.is(g.headers["content-encoding"], "gzip");
  assert.ok(g.body.equals(disk("gone.js.gz")));
  unlinkSync(join(root, "gone.js.gz"));
  await sleep(1200);
  const i = await ae(prePort, "/gone.js", "br, gzip");
  assert.is(i.headers["content-encoding"], undefined);
  assert.ok(i.body.equals(JS));
  assert.is(i.headers.vary, undefined, "no sidecar left: nothing varies");
});

test("without --precompressed: identity and no Vary even when sidecars exist", async () => {
  const r = await ae(plainPort, "/app.js", "br, gzip");
  assert.is(r.headers["content-encoding"], undefined);
  assert.is(r.headers.vary, undefined);
  assert.ok(r.body.equals(JS));
});

test.after(() => {
  closeAllConns();
  for (const s of servers) s.stop();
  removeRoot(root);
  try { unlinkSync(outside); } catch { /* gone */ }
});

test.run();
