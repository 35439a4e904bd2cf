// What the HTTP server answers for files: 200/404/HEAD, validators and
// conditional requests (304, 412), byte ranges (206, 416), directories and
// redirects, dotfiles, Content-Type, the Date/Server/Last-Modified headers,
// and how edits on disk show up (the open-file cache revalidates by path
// about once a second). The server runs in this process on an ephemeral port.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync, readFileSync, renameSync, unlinkSync, statSync, utimesSync, mkdirSync, symlinkSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { HttpConn, exchange, fetchOne, get, headerCount, sleep, closeAllConns, parseMultipart } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, startInProcess } from "./lib/http-server.mjs";

const TEXT = "0123456789abcdefghijklmnopqrstuvwxyz\n";          // 37 bytes, kept in memory
const LARGE = randomBytes(100 * 1024);                           // over 32 KiB: sendfile
const PNG = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
const root = makeRoot({
  "t.txt": TEXT,
  "large.bin": LARGE,
  "page.html": "<!doctype html><p>page</p>\n",
  "style.css": "p { color: red }\n",
  "app.js": "console.log(1);\n",
  "data.json": "{\"a\":1}\n",
  "pixel.png": PNG,
  "clip.mp4": "not really a video",
  "clip.webm": "not really a video",
  "song.mp3": "not really audio",
  "mod.wasm": "\0asm",
  "logo.svg": "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
  "font.woff2": "wOF2",
  "mod.mjs": "export default 1;\n",
  "feed.xml": "<a/>\n",
  "noext": "no extension\n",
  "UPPER.TXT": "upper\n",
  "dir/index.html": "<p>dir index</p>\n",
  "dir/nested/": "",
  "docs/sub/index.html": "<p>sub</p>\n",
  ".env": "SECRET=1\n",
  ".git/config": "[core]\n",
  "dir/.hidden": "hidden\n",
  ".well-known/x.txt": "wk\n",
  "space name.txt": "space\n",
  "café.txt": "utf-8 name\n",
  "empty.txt": "",
});
// A Last-Modified far enough in the past that second-granularity checks are stable.
const PAST = new Date("2024-03-10T12:34:56Z");
for (const f of ["t.txt", "large.bin"]) utimesSync(join(root, f), PAST, PAST);
const srv = await startInProcess(root, { mode: "et" }); // the CLI's default mode
const port = srv.port;
const DAY_RE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

const head = (path, headers = []) => fetchOne(port, path, { method: "HEAD", headers });
const getWith = (path, headers = []) => fetchOne(port, path, { headers });

// ---- 200, 404, HEAD --------------------------------------------------------------

test("GET of a small and a large file: 200 with the exact bytes and Content-Length", async () => {
  const a = await fetchOne(port, "/t.txt");
  assert.is(a.status, 200);
  assert.is(a.body.toString(), TEXT);
  assert.is(a.headers["content-length"], String(TEXT.length));
  const b = await fetchOne(port, "/large.bin");
  assert.is(b.status, 200);
  assert.ok(b.body.equals(LARGE), "large body byte for byte");
  assert.is(b.headers["content-length"], String(LARGE.length));
  assert.is(b.headers["accept-ranges"], "bytes");
});

test("404 for a missing file, with a short text body; a missing directory too", async () => {
  for (const path of ["/nope.txt", "/nope/deeper.txt", "/t.txt/under-a-file"]) {
    const res = await fetchOne(port, path);
    assert.is(res.status, 404, path);
    assert.is(res.headers["content-type"], "text/plain; charset=utf-8", path);
    assert.is(res.body.toString(), "404 Not Found\n", path);
    assert.is(res.headers.etag, undefined, `${path}: no validator on an error`);
  }
});

test("HEAD: the same headers as GET, no body, Content-Length of the whole file", async () => {
  for (const path of ["/t.txt", "/large.bin"]) {
    const g = await fetchOne(port, path);
    // On one connection: HEAD then GET, so a body after HEAD would break the second parse.
    const { responses: [h, g2], conn } = await exchange(port, get(path, { method: "HEAD" }) + get(path), { methods: ["HEAD", "GET"] });
    conn.close();
    const strip = (r) => r.rawHeaders.filter(([n]) => n !== "Date");
    assert.is(h.status, 200, path);
    assert.equal(strip(h), strip(g), `${path}: same headers`);
    assert.is(h.body.length, 0, `${path}: no body`);
    assert.is(h.headers["content-length"], String(g.body.length), `${path}: full length`);
    assert.ok(g2.body.equals(g.body), `${path}: the GET after the HEAD is intact`);
  }
});

test("HEAD of a missing file: 404 headers, no body", async () => {
  const { responses: [h, g], conn } = await exchange(port, get("/nope", { method: "HEAD" }) + get("/t.txt"), { methods: ["HEAD", "GET"] });
  conn.close();
  assert.is(h.status, 404);
  assert.is(h.body.length, 0);
  assert.is(g.body.toString(), TEXT, "the next response parses: the HEAD sent no body");
});

// ---- headers ------------------------------------------------------------------------

test("Date is an IMF-fixdate close to now; Server is present; Last-Modified is the file's mtime", async () => {
  const res = await fetchOne(port, "/t.txt");
  assert.ok(DAY_RE.test(res.headers.date), `Date ${res.headers.date}`);
  const skew = Math.abs(Date.parse(res.headers.date) - Date.now());
  assert.ok(skew < 5000, `Date within a few seconds of now (off by ${skew} ms)`);
  assert.is(res.headers.server, "wasm-reactor");
  assert.ok(DAY_RE.test(res.headers["last-modified"]), `Last-Modified ${res.headers["last-modified"]}`);
  assert.is(res.headers["last-modified"], PAST.toUTCString());
  assert.is(res.headers["last-modified"], statSync(join(root, "t.txt")).mtime.toUTCString());
  assert.ok(/^"[0-9a-f]+-[0-9a-f]+"$/.test(res.headers.etag), `strong ETag ${res.headers.etag}`);
  for (const name of ["Server", "Date", "Content-Type", "Content-Length", "Last-Modified", "ETag"]) {
    assert.is(headerCount(res, name), 1, `exactly one ${name}`);
  }
});

test("Date and Server on error responses and redirects too", async () => {
  for (const [path, status] of [["/nope", 404], ["/dir", 301]]) {
    const res = await fetchOne(port, path);
    assert.is(res.status, status);
    assert.ok(DAY_RE.test(res.headers.date ?? ""), `${path}: Date`);
    assert.is(res.headers.server, "wasm-reactor", `${path}: Server`);
  }
});

// [path, Content-Type]
const types = [
  ["/page.html", "text/html; charset=utf-8"],
  ["/style.css", "text/css; charset=utf-8"],
  ["/app.js", "text/javascript; charset=utf-8"],
  ["/data.json", "application/json; charset=utf-8"],
  ["/t.txt", "text/plain; charset=utf-8"],
  ["/UPPER.TXT", "text/plain; charset=utf-8"],
  ["/pixel.png", "image/png"],
  // Extensions mime-db gives several types: the one browsers expect.
  ["/clip.mp4", "video/mp4"],            // not application/mp4
  ["/song.mp3", "audio/mpeg"],           // not audio/mp3
  ["/feed.xml", "application/xml"],      // not text/xml (as mime-types, nginx)
  ["/clip.webm", "video/webm"],
  ["/mod.wasm", "application/wasm"],     // WebAssembly.instantiateStreaming requires it
  ["/logo.svg", "image/svg+xml"],
  ["/font.woff2", "font/woff2"],
  ["/mod.mjs", "text/javascript; charset=utf-8"],
  ["/large.bin", "application/octet-stream"],
  ["/noext", "application/octet-stream"],
  ["/dir/", "text/html; charset=utf-8"],
];
for (const [path, type] of types) {
  test(`Content-Type of ${path} is ${type}`, async () => {
    const res = await fetchOne(port, path);
    assert.is(res.status, 200);
    assert.is(res.headers["content-type"], type);
  });
}

test("a percent-encoded name is decoded once (space name.txt, café.txt in UTF-8)", async () => {
  const res = await fetchOne(port, "/space%20name.txt");
  assert.is(res.status, 200);
  assert.is(res.body.toString(), "space\n");
  const utf8 = await fetchOne(port, "/caf%C3%A9.txt");
  assert.is(utf8.status, 200);
  assert.is(utf8.body.toString(), "utf-8 name\n");
});

test("an empty file: 200 with Content-Length: 0; a range of it: 416 bytes */0", async () => {
  const { responses: [a, b, c], conn } = await exchange(port,
    get("/empty.txt") + get("/empty.txt", { headers: ["Range: bytes=0-"] }) + get("/t.txt"), { methods: ["GET", "GET", "GET"] });
  conn.close();
  assert.is(a.status, 200);
  assert.is(a.headers["content-length"], "0");
  assert.is(b.status, 416);
  assert.is(b.headers["content-range"], "bytes */0");
  assert.is(c.body.toString(), TEXT, "the connection goes on");
});

test("a FIFO in the docroot is refused (403) without blocking the server", async () => {
  try { execFileSync("mkfifo", [join(root, "fifo")]); } catch { return; } // no mkfifo: nothing to test
  const res = await fetchOne(port, "/fifo");
  assert.is(res.status, 403);
  assert.is((await fetchOne(port, "/t.txt")).body.toString(), TEXT);
});

test("more files than the open-file cache holds (2048): every one served right, twice", async () => {
  const N = 2300;
  const names = Array.from({ length: N }, (_, i) => `many/${i}.txt`);
  const content = (i) => `file number ${i}\n`.repeat(1 + (i % 30));
  for (let i = 0; i < N; i++) {
    if (i === 0) mkdirSync(join(root, "many"));
    writeFileSync(join(root, names[i]), content(i));
  }
  const bad = [];
  for (let round = 0; round < 2; round++) {
    for (let b = 0; b < N; b += 100) {
      const idx = Array.from({ length: Math.min(100, N - b) }, (_, k) => b + k);
      const { responses, conn } = await exchange(port, idx.map((i) => get(`/${names[i]}`)).join(""), { methods: idx.map(() => "GET") });
      conn.close();
      responses.forEach((r, k) => { if (r.status !== 200 || r.body.toString() !== content(idx[k])) bad.push(`${round}:${idx[k]}:${r.status}`); });
    }
  }
  assert.equal(bad.slice(0, 10), [], `${bad.length} wrong`);
});

// ---- directories, dotfiles ------------------------------------------------------------

test("a path of 1000 bytes is served; one longer than 1 KiB gets 414", async () => {
  const seg = "d".repeat(99);
  const dirs = Array.from({ length: 9 }, () => seg).join("/");        // 9 x 100 bytes with slashes
  const rel = `${dirs}/${"f".repeat(90)}.txt`;                         // 994 bytes
  mkdirSync(join(root, dirs), { recursive: true });
  writeFileSync(join(root, rel), "deep\n");
  const ok = await fetchOne(port, `/${rel}`);
  assert.is(ok.status, 200, `${rel.length}-byte path`);
  assert.is(ok.body.toString(), "deep\n");
  const long = await fetchOne(port, `/${dirs}/${"g".repeat(200)}.txt`);
  assert.is(long.status, 414);
});

test("a directory without its trailing slash: 301 to the slash, keeping the query string", async () => {
  const cases = [["/dir", "/dir/"], ["/dir?x=1&y=%20", "/dir/?x=1&y=%20"], ["/docs/sub", "/docs/sub/"], ["/dir/nested", "/dir/nested/"]];
  for (const [path, location] of cases) {
    const res = await fetchOne(port, path);
    assert.is(res.status, 301, path);
    assert.is(res.headers.location, location, path);
    assert.is(res.headers["content-length"], "0", path);
  }
});

test("a directory with its slash serves its index.html; without one, 404 (no listings)", async () => {
  const a = await fetchOne(port, "/dir/");
  assert.is(a.status, 200);
  assert.is(a.body.toString(), "<p>dir index</p>\n");
  const b = await fetchOne(port, "/docs/sub/?q=1");
  assert.is(b.body.toString(), "<p>sub</p>\n");
  const c = await fetchOne(port, "/dir/nested/");
  assert.is(c.status, 404, "directory without index.html");
  const d = await fetchOne(port, "/docs/");
  assert.is(d.status, 404, "docs/ has no index.html either");
  const e = await fetchOne(port, "/");
  assert.is(e.status, 404, "the root has no index.html");
});

test("--listing: a directory without index.html is listed (escaped, dotfiles hidden, subdirectories with a slash)", async () => {
  const lroot = makeRoot({
    "top.txt": "t\n",
    "d/a&b <x>.txt": "x\n",
    "d/space name.txt": "s\n",
    "d/.hidden": "h\n",
    "d/sub/f.txt": "f\n",
    "withindex/index.html": "<p>index wins</p>\n",
  });
  const ls = await startInProcess(lroot, { mode: "et", listing: true });
  try {
    const a = await fetchOne(ls.port, "/d/");
    assert.is(a.status, 200);
    assert.is(a.headers["content-type"], "text/html; charset=utf-8");
    assert.is(Number(a.headers["content-length"]), a.body.length);
    const html = a.body.toString();
    assert.match(html, /<title>Index of \/d\/<\/title>/);
    assert.match(html, /<a href="\.\.\/">\.\.\/<\/a>/);
    assert.match(html, /<a href="a%26b%20%3Cx%3E\.txt">a&amp;b &lt;x&gt;\.txt<\/a>/, "href percent-encoded, text HTML-escaped");
    assert.match(html, /<a href="space%20name\.txt">space name\.txt<\/a>/);
    assert.match(html, /<a href="sub\/">sub\/<\/a>/);
    assert.not.match(html, /hidden/, "dotfiles are not listed");
    const root = (await fetchOne(ls.port, "/")).body.toString();
    assert.match(root, /<a href="d\/">d\/<\/a>/);
    assert.not.match(root, /href="\.\.\/"/, "no parent link at the root");
    assert.is((await fetchOne(ls.port, "/withindex/")).body.toString(), "<p>index wins</p>\n");
    assert.is((await fetchOne(ls.port, "/missing/")).status, 404);
    assert.is((await fetchOne(ls.port, "/d")).status, 301, "still a redirect without the slash");
    const h = await fetchOne(ls.port, "/d/", { method: "HEAD" });
    assert.is(h.status, 200);
    assert.is(h.body.length, 0);
    assert.is(h.headers["content-length"], a.headers["content-length"]);
    // Listed links work.
    assert.is((await fetchOne(ls.port, "/d/a%26b%20%3Cx%3E.txt")).body.toString(), "x\n");
  } finally {
    ls.stop();
    removeRoot(lroot);
  }
});

test("--listing: directories first, then files, by name; last-modified (UTC) and size of each", async () => {
  const lroot = makeRoot({
    "top.txt": "top\n",
    "d/b.txt": TEXT,                        // 37 bytes
    "d/big.bin": Buffer.alloc(150 * 1024),  // 150 KiB
    "d/A.txt": "capital\n",
    "d/zdir/z.txt": "z\n",
    "d/adir/": "",
  });
  const d = join(lroot, "d");
  symlinkSync("b.txt", join(d, "link.txt"));       // inside the directory: listed as its target
  symlinkSync("../top.txt", join(d, "up.txt"));    // elsewhere beneath the root: listed too
  symlinkSync("zdir", join(d, "linkdir"));         // to a directory: a directory
  symlinkSync("../..", join(d, "escape"));         // leads outside the root: left out
  symlinkSync("/etc/hostname", join(d, "abs"));    // absolute: left out (refused beneath the root)
  symlinkSync("nothing-here", join(d, "dangling")); // dangles: left out
  execFileSync("mkfifo", [join(d, "fifo")]);       // not a file: left out
  const WHEN = new Date("2026-12-01T19:57:30Z");
  for (const f of ["b.txt", "big.bin", "A.txt", "adir", "zdir", "../top.txt"]) utimesSync(join(d, f), WHEN, WHEN);
  const ls = await startInProcess(lroot, { mode: "et", listing: true });
  try {
    const res = await fetchOne(ls.port, "/d/");
    assert.is(res.status, 200);
    const html = res.body.toString();
    const rows = [...html.matchAll(/<tr><td><a href="([^"]*)">([^<]*)<\/a><\/td><td>([^<]*)<\/td><td[^>]*>([^<]*)<\/td><\/tr>/g)]
      .map((m) => m.slice(1));
    assert.equal(rows.map((r) => r[1]), ["../", "adir/", "linkdir/", "zdir/", "A.txt", "b.txt", "big.bin", "link.txt", "up.txt"],
      "parent, directories, then files, each by name; links out of the root, dangling links and the FIFO left out");
    const row = Object.fromEntries(rows.map((r) => [r[1], r]));
    assert.equal(row["b.txt"], ["b.txt", "b.txt", "2026-12-01 19:57", "37 B"]);
    assert.equal(row["big.bin"], ["big.bin", "big.bin", "2026-12-01 19:57", "150 KiB"]);
    assert.equal(row["adir/"], ["adir/", "adir/", "2026-12-01 19:57", "-"], "directories: date, no size");
    assert.equal(row["link.txt"].slice(2), ["2026-12-01 19:57", "37 B"], "a symlink shows its target");
    assert.equal(row["up.txt"].slice(2), ["2026-12-01 19:57", "4 B"]);
    assert.is(row["linkdir/"][3], "-");
    assert.not.match(html, /escape|abs|dangling|fifo/);
    // What the listing links to is served.
    assert.is((await fetchOne(ls.port, "/d/up.txt")).body.toString(), "top\n");
    assert.is((await fetchOne(ls.port, "/d/linkdir/")).status, 200, "listed too");
  } finally {
    ls.stop();
    removeRoot(lroot);
  }
});

test("--listing of a large directory stops before 64 KiB and says how many entries are not shown", async () => {
  const files = {};
  const N = 2000;
  for (let i = 0; i < N; i++) files[`big/file-${String(i).padStart(4, "0")}-${"x".repeat(30)}.txt`] = "";
  const lroot = makeRoot(files);
  const ls = await startInProcess(lroot, { mode: "et", listing: true });
  try {
    const res = await fetchOne(ls.port, "/big/");
    assert.is(res.status, 200);
    assert.ok(res.body.length <= 64 * 1024, `${res.body.length} bytes`);
    const html = res.body.toString();
    assert.ok(html.endsWith("</table>\n</body></html>\n"), "the page is complete");
    const shown = [...html.matchAll(/<a href="file-/g)].length;
    const more = Number(/\((\d+) more not shown\)/.exec(html)?.[1]);
    assert.ok(shown > 100, `${shown} shown`);
    assert.is(shown + more, N, `${shown} shown + ${more} more`);
    assert.match(html, /file-0000-x+\.txt/, "the first names by order");
  } finally {
    ls.stop();
    removeRoot(lroot);
  }
});

test("a file requested with a trailing slash is not served as a directory", async () => {
  const res = await fetchOne(port, "/t.txt/");
  assert.is(res.status, 404);
});

test("dotfiles and dot-directories are hidden: 404", async () => {
  for (const path of ["/.env", "/.git/config", "/dir/.hidden", "/%2eenv", "/.well-known/x.txt", "/.git/"]) {
    const res = await fetchOne(port, path);
    assert.is(res.status, 404, path);
    assert.not.ok(res.body.toString().includes("SECRET"), path);
  }
});

// ---- conditional requests ---------------------------------------------------------------

test("304 for If-None-Match with the ETag from a previous response (and for HEAD)", async () => {
  for (const path of ["/t.txt", "/large.bin"]) {
    const first = await fetchOne(port, path);
    const etag = first.headers.etag;
    const res = await getWith(path, [`If-None-Match: ${etag}`]);
    assert.is(res.status, 304, path);
    assert.is(res.body.length, 0, `${path}: no body`);
    assert.is(res.headers.etag, etag, `${path}: the validator is repeated`);
    assert.ok(DAY_RE.test(res.headers.date), `${path}: Date`);
    const listed = await getWith(path, [`If-None-Match: "other", W/${etag}`]);
    assert.is(listed.status, 304, `${path}: a weak match in a list is enough for If-None-Match`);
    const h = await head(path, [`If-None-Match: ${etag}`]);
    assert.is(h.status, 304, `${path}: HEAD`);
    const other = await getWith(path, [`If-None-Match: "not-it"`]);
    assert.is(other.status, 200, `${path}: another tag gets the file`);
  }
});

test("a 304 on a keep-alive connection is followed by a correctly framed response", async () => {
  const { headers: { etag } } = await fetchOne(port, "/t.txt");
  const { responses: [a, b], conn } = await exchange(port, get("/t.txt", { headers: [`If-None-Match: ${etag}`] }) + get("/t.txt"),
    { methods: ["GET", "GET"] });
  conn.close();
  assert.is(a.status, 304);
  assert.is(b.status, 200);
  assert.is(b.body.toString(), TEXT);
});

test("304 for If-Modified-Since with the Last-Modified from a previous response; 200 for an older date", async () => {
  const { headers } = await fetchOne(port, "/t.txt");
  const lm = headers["last-modified"];
  assert.is((await getWith("/t.txt", [`If-Modified-Since: ${lm}`])).status, 304);
  const later = new Date(Date.parse(lm) + 3600e3).toUTCString();
  assert.is((await getWith("/t.txt", [`If-Modified-Since: ${later}`])).status, 304, "a later date");
  const earlier = new Date(Date.parse(lm) - 1000).toUTCString();
  const res = await getWith("/t.txt", [`If-Modified-Since: ${earlier}`]);
  assert.is(res.status, 200, "one second earlier: modified since");
  assert.is(res.body.toString(), TEXT);
  const bad = await getWith("/t.txt", ["If-Modified-Since: yesterday"]);
  assert.is(bad.status, 200, "an unparsable date is ignored");
  const future = new Date(Date.now() + 86400e3).toUTCString();
  assert.is((await getWith("/t.txt", [`If-Modified-Since: ${future}`])).status, 200, "a date in the future is ignored");
  // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
  const both = await getWith("/t.txt", ['If-None-Match: "not-it"', `If-Modified-Since: ${lm}`]);
  assert.is(both.status, 200, "If-None-Match present: If-Modified-Since is not evaluated");
});

test("412 for If-Match that does not match, and If-Unmodified-Since in the past", async () => {
  const { headers: { etag, "last-modified": lm } } = await fetchOne(port, "/t.txt");
  const r1 = await getWith("/t.txt", ['If-Match: "something-else"']);
  assert.is(r1.status, 412);
  assert.is(r1.body.toString(), "412 Precondition Failed\n");
  assert.is((await getWith("/t.txt", [`If-Match: W/${etag}`])).status, 412, "a weak tag never matches If-Match");
  assert.is((await getWith("/t.txt", [`If-Match: ${etag}`])).status, 200, "the right tag");
  assert.is((await getWith("/t.txt", ["If-Match: *"])).status, 200, "* matches an existing file");
  const past = new Date(Date.parse(lm) - 86400e3).toUTCString();
  assert.is((await getWith("/t.txt", [`If-Unmodified-Since: ${past}`])).status, 412);
  assert.is((await getWith("/t.txt", [`If-Unmodified-Since: ${lm}`])).status, 200, "not modified since its own Last-Modified");
  // 412 is not an error of the request: the connection is kept.
  const { responses: [a, b], conn } = await exchange(port, get("/t.txt", { headers: ['If-Match: "x"'] }) + get("/t.txt"), { methods: ["GET", "GET"] });
  conn.close();
  assert.equal([a.status, b.status], [412, 200]);
});

// ---- ranges ---------------------------------------------------------------------------------

for (const [name, path, content] of [["memory body", "/t.txt", Buffer.from(TEXT)], ["sendfile body", "/large.bin", LARGE]]) {
  const size = content.length;
  const cases = [
    ["bytes=0-9", 0, 9],
    ["bytes=-5", size - 5, size - 1],
    ["bytes=10-", 10, size - 1],
    ["bytes=3-3", 3, 3],
    [`bytes=${size - 2}-${size + 100}`, size - 2, size - 1],   // the end is clamped to the file
  ];
  for (const [range, first, last] of cases) {
    test(`206 for Range: ${range} (${name})`, async () => {
      const res = await getWith(path, [`Range: ${range}`]);
      assert.is(res.status, 206);
      assert.is(res.headers["content-range"], `bytes ${first}-${last}/${size}`);
      assert.is(res.headers["content-length"], String(last - first + 1));
      assert.ok(res.body.equals(content.subarray(first, last + 1)), "the requested bytes");
    });
  }
  test(`416 for Range: bytes=1000000- (${name}), with Content-Range: bytes */size`, async () => {
    const res = await getWith(path, ["Range: bytes=1000000-"]);
    assert.is(res.status, 416);
    assert.is(res.headers["content-range"], `bytes */${size}`);
    assert.is(res.body.length, 0);
  });
}

test("a range on HEAD, an unknown unit, or a stale If-Range gets the whole file", async () => {
  const h = await head("/t.txt", ["Range: bytes=0-9"]);
  assert.is(h.status, 200);
  assert.is(h.headers["content-length"], String(TEXT.length));
  const unit = await getWith("/t.txt", ["Range: items=0-9"]);
  assert.is(unit.status, 200);
  assert.is(unit.body.toString(), TEXT);
  const stale = await getWith("/t.txt", ["Range: bytes=0-9", 'If-Range: "old"']);
  assert.is(stale.status, 200);
  assert.is(stale.body.toString(), TEXT);
  const { headers: { etag } } = await fetchOne(port, "/t.txt");
  const fresh = await getWith("/t.txt", ["Range: bytes=0-9", `If-Range: ${etag}`]);
  assert.is(fresh.status, 206, "If-Range with the current ETag allows the range");
});

test("pipelined ranges of a sendfile body come back in order, each with its own bytes", async () => {
  const reqs = ["bytes=0-99", "bytes=50000-50099", "bytes=-100"];
  const bytes = reqs.map((r) => get("/large.bin", { headers: [`Range: ${r}`] })).join("");
  const { responses, conn } = await exchange(port, bytes, { methods: ["GET", "GET", "GET"] });
  conn.close();
  assert.ok(responses[0].body.equals(LARGE.subarray(0, 100)));
  assert.ok(responses[1].body.equals(LARGE.subarray(50000, 50100)));
  assert.ok(responses[2].body.equals(LARGE.subarray(LARGE.length - 100)));
});

// ---- several ranges: multipart/byteranges ------------------------------------------------------
// Each part is checked against the file as read from disk here, not against
// what the server was given.

/** The parts as [first, last] pairs, after checking each part's bytes and type against the file. */
function checkParts(res, file, type) {
  const disk = readFileSync(join(root, file));
  assert.is(res.status, 206);
  assert.is(res.headers["content-range"], undefined, "no Content-Range in the head of a multipart response");
  assert.is(res.headers["content-length"], String(res.body.length), "Content-Length is the body's exact length");
  const { boundary, parts } = parseMultipart(res);
  assert.ok(/^[0-9a-f]{16}$/.test(boundary), `boundary ${boundary}`);
  for (const p of parts) {
    assert.is(p.size, disk.length, "Content-Range names the file's size");
    assert.is(p.type, type, "each part has the file's Content-Type");
    assert.ok(p.data.equals(disk.subarray(p.first, p.last + 1)), `part ${p.first}-${p.last}: the file's bytes`);
  }
  return parts.map((p) => [p.first, p.last]);
}

const TXT_TYPE = "text/plain; charset=utf-8", BIN_TYPE = "application/octet-stream";

for (const [name, path, file, type] of [["memory body", "/t.txt", "t.txt", TXT_TYPE], ["sendfile body", "/large.bin", "large.bin", BIN_TYPE]]) {
  const size = statSync(join(root, file)).size;
  test(`several ranges (${name}): 206 multipart/byteranges, parts in ascending order with the file's bytes`, async () => {
    const res = await getWith(path, [`Range: bytes=20-29,0-9,-5`]);
    assert.equal(checkParts(res, file, type), [[0, 9], [20, 29], [size - 5, size - 1]]);
    // the rest of the head is the single-range head's, Content-Type aside
    const one = await getWith(path, ["Range: bytes=0-9"]);
    const names = (r) => r.rawHeaders.map(([n]) => n).filter((n) => n !== "Content-Range");
    assert.equal(names(res), names(one));
    assert.is(res.headers.etag, one.headers.etag);
  });
  test(`overlapping and adjacent ranges are coalesced; unsatisfiable ones dropped (${name})`, async () => {
    const res = await getWith(path, [`Range: bytes=0-9,5-14,15-16,30-,-3,${size}-,${size + 5}-${size + 9}`]);
    assert.equal(checkParts(res, file, type), [[0, 16], [30, size - 1]]);
  });
  test(`ranges that coalesce into one get a plain 206 (${name})`, async () => {
    const res = await getWith(path, ["Range: bytes=2-5,0-3,4-9,9-9"]);
    assert.is(res.status, 206);
    assert.is(res.headers["content-type"], type);
    assert.is(res.headers["content-range"], `bytes 0-9/${size}`);
    assert.ok(res.body.equals(readFileSync(join(root, file)).subarray(0, 10)));
  });
  test(`several ranges, none satisfiable: 416 with Content-Range: bytes */size (${name})`, async () => {
    const res = await getWith(path, [`Range: bytes=${size}-,${size + 10}-${size + 20},-0`]);
    assert.is(res.status, 416);
    assert.is(res.headers["content-range"], `bytes */${size}`);
    assert.is(res.body.length, 0);
  });
  test(`16 ranges are served as 16 parts; 17 get the whole file (200) (${name})`, async () => {
    const spec = (n) => Array.from({ length: n }, (_, i) => `${2 * i}-${2 * i}`).join(",");
    const sixteen = await getWith(path, [`Range: bytes=${spec(16)}`]);
    assert.equal(checkParts(sixteen, file, type), Array.from({ length: 16 }, (_, i) => [2 * i, 2 * i]));
    const more = await getWith(path, [`Range: bytes=${spec(17)}`]);
    assert.is(more.status, 200);
    assert.is(more.headers["content-length"], String(size));
    assert.ok(more.body.equals(readFileSync(join(root, file))));
  });
}

test("several ranges with If-Range: the current ETag allows them, another gets the whole file", async () => {
  const { headers: { etag, "last-modified": lm } } = await fetchOne(port, "/large.bin");
  const fresh = await getWith("/large.bin", ["Range: bytes=0-0,-1", `If-Range: ${etag}`]);
  assert.equal(checkParts(fresh, "large.bin", BIN_TYPE), [[0, 0], [LARGE.length - 1, LARGE.length - 1]]);
  const byDate = await getWith("/large.bin", ["Range: bytes=0-0,-1", `If-Range: ${lm}`]);
  assert.is(byDate.status, 206);
  const stale = await getWith("/large.bin", ["Range: bytes=0-0,-1", 'If-Range: "old"']);
  assert.is(stale.status, 200);
  assert.ok(stale.body.equals(readFileSync(join(root, "large.bin"))));
});

test("HEAD with several ranges: Range is ignored (RFC 9110 §14.2), the GET head, no body", async () => {
  for (const path of ["/t.txt", "/large.bin"]) {
    // On one connection: a body after HEAD would break the next parse.
    const range = "Range: bytes=0-1,5-6";
    const { responses: [h, g, plain], conn } = await exchange(port,
      get(path, { method: "HEAD", headers: [range] }) + get(path, { headers: [range] }) + get(path), { methods: ["HEAD", "GET", "GET"] });
    conn.close();
    assert.is(h.status, 200, path);
    assert.is(h.body.length, 0);
    const strip = (r) => r.rawHeaders.filter(([n]) => n !== "Date");
    assert.equal(strip(h), strip(plain), `${path}: HEAD's head is the plain GET's`);
    assert.is(g.status, 206, `${path}: the GET after it is parsed and answered`);
  }
});

test("multipart responses on one keep-alive connection: pipelined, in order, fresh boundaries", async () => {
  const reqs = [
    get("/large.bin", { headers: ["Range: bytes=0-99,50000-50099,-100"] }),
    get("/t.txt", { headers: ["Range: bytes=0-0,36-36"] }),
    get("/t.txt"),
    get("/large.bin", { headers: ["Range: bytes=1-1,3-3"] }),
  ];
  const { responses: [a, b, c, d], conn } = await exchange(port, reqs.join(""), { methods: ["GET", "GET", "GET", "GET"] });
  assert.ok(await conn.staysOpen(100), "kept alive");
  conn.close();
  assert.equal(checkParts(a, "large.bin", BIN_TYPE), [[0, 99], [50000, 50099], [LARGE.length - 100, LARGE.length - 1]]);
  assert.equal(checkParts(b, "t.txt", TXT_TYPE), [[0, 0], [36, 36]]);
  assert.is(c.body.toString(), TEXT);
  assert.equal(checkParts(d, "large.bin", BIN_TYPE), [[1, 1], [3, 3]]);
  const boundaries = [a, b, d].map((r) => parseMultipart(r).boundary);
  assert.is(new Set(boundaries).size, 3, `a boundary per response: ${boundaries}`);
});

test("hundreds of multipart and Expect requests: linear memory and held buffers stay where they were", async () => {
  const batch = [
    get("/t.txt", { headers: ["Range: bytes=0-1,5-6,-2"] }),
    get("/large.bin", { headers: ["Range: bytes=0-99,60000-60099"] }),
    get("/t.txt", { headers: ["Expect: 100-continue", "Content-Length: 4"] }) + "body",
    get("/large.bin", { headers: [`Range: bytes=${Array.from({ length: 16 }, (_, i) => `${3 * i}-${3 * i}`).join(",")}`] }),
  ].join("").repeat(10);
  const round = async () => {
    const { responses, conn } = await exchange(port, batch, { methods: Array(40).fill("GET") });
    conn.close();
    assert.ok(responses.every((r) => r.status === 206 || r.status === 200));
  };
  for (let i = 0; i < 3; i++) await round();   // warm the pools
  await sleep(50);                             // the closed connections are gone
  const before = srv.server.stats();
  for (let i = 0; i < 15; i++) await round();
  await sleep(50);
  const after = srv.server.stats();
  assert.is(after.memoryBytes, before.memoryBytes, "no allocation per request");
  assert.is(after.writeBufferBytes, before.writeBufferBytes, "every multipart buffer and ring given back");
  assert.is(after.liveConnections, before.liveConnections);
});

// ---- changes on disk ---------------------------------------------------------------------------

/**
 * Polls `path` every 100 ms until check(res) holds; returns the response
 * and how long it took. Fails after limitMs with the last response.
 */
async function until(path, check, limitMs, what) {
  const t0 = Date.now();
  let res;
  for (;;) {
    res = await fetchOne(port, path).catch((e) => ({ status: -1, error: e.message, headers: {}, body: Buffer.alloc(0) }));
    if (check(res)) return { res, ms: Date.now() - t0 };
    if (Date.now() - t0 > limitMs) {
      assert.unreachable(`${what}: not seen within ${limitMs} ms; last: ${res.status} ${res.error ?? res.body.subarray(0, 60).toString()}`);
    }
    await sleep(100);
  }
}

// The cache re-checks a file at most once a second; 1.5 s is the promise,
// the bound below leaves room for a loaded machine.
const FRESH_MS = 3000;

test("a long Content-Type (.docx) keeps its headers intact across the once-a-second re-check", async () => {
  writeFileSync(join(root, "report.docx"), "PK fake docx\n");
  const a = await fetchOne(port, "/report.docx");
  assert.is(a.headers["content-type"], "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
  await sleep(1300); // past the re-check interval: the host rewrites the entry's file record
  const b = await fetchOne(port, "/report.docx");
  assert.is(b.status, 200);
  assert.is(b.head, a.head.replace(/Date: [^\r]*/, /Date: [^\r]*/.exec(b.head)[0]), "same head, byte for byte");
  assert.is(b.body.toString(), "PK fake docx\n");
});

test("a file edited in place is served fresh within ~1.5 s, with a new ETag", async () => {
  const p = join(root, "edit.txt");
  writeFileSync(p, "version 1\n");
  const v1 = await fetchOne(port, "/edit.txt");
  assert.is(v1.body.toString(), "version 1\n");
  writeFileSync(p, "version 2, longer\n");
  const { res, ms } = await until("/edit.txt", (r) => r.body.toString() === "version 2, longer\n", FRESH_MS, "the edit");
  assert.is.not(res.headers.etag, v1.headers.etag, "the ETag changed");
  assert.is(res.headers["content-length"], String("version 2, longer\n".length));
  assert.ok(ms <= FRESH_MS, `fresh after ${ms} ms`);
});

test("edits made while nobody asks are seen by the first request ~1.5 s later (edit, rename, delete)", async () => {
  // No polling here: one request after the quiet spell must already be fresh,
  // not the one that triggers the re-check.
  writeFileSync(join(root, "q-edit.txt"), "quiet 1\n");
  writeFileSync(join(root, "q-swap.txt"), "quiet swap 1\n");
  writeFileSync(join(root, "q-gone.txt"), "quiet gone\n");
  writeFileSync(join(root, "q-big.bin"), LARGE);
  for (const f of ["q-edit.txt", "q-swap.txt", "q-gone.txt", "q-big.bin"]) assert.is((await fetchOne(port, `/${f}`)).status, 200, f);
  const bigger = Buffer.concat([LARGE, Buffer.from("more")]);
  writeFileSync(join(root, "q-edit.txt"), "quiet 2, edited\n");
  writeFileSync(join(root, "q-swap.tmp"), "quiet swap 2, renamed\n");
  renameSync(join(root, "q-swap.tmp"), join(root, "q-swap.txt"));
  unlinkSync(join(root, "q-gone.txt"));
  writeFileSync(join(root, "q-big.bin"), bigger);
  await sleep(1600);
  assert.is((await fetchOne(port, "/q-edit.txt")).body.toString(), "quiet 2, edited\n", "edited in place");
  assert.is((await fetchOne(port, "/q-swap.txt")).body.toString(), "quiet swap 2, renamed\n", "replaced by rename");
  assert.is((await fetchOne(port, "/q-gone.txt")).status, 404, "deleted");
  assert.ok((await fetchOne(port, "/q-big.bin")).body.equals(bigger), "large file edited in place");
});

test("a large file edited in place (shorter) is never sent with a wrong length, and is served fresh", async () => {
  const p = join(root, "shrink.bin");
  const before = randomBytes(200 * 1024), after = randomBytes(60 * 1024);
  writeFileSync(p, before);
  assert.ok((await fetchOne(port, "/shrink.bin")).body.equals(before));
  writeFileSync(p, after); // same inode, now shorter than the cached size
  // Every response until the cache notices: either complete and correct, or
  // cut short by a close. Never a hang.
  const t0 = Date.now();
  for (;;) {
    const conn = await HttpConn.open(port);
    await conn.write(get("/shrink.bin"));
    let res = null;
    try { res = await conn.response({ timeoutMs: 2000 }); } catch (e) {
      assert.ok(conn.ended || conn.error, `no hang: the connection is closed when the body cannot be completed (${e.message.slice(0, 80)})`);
    }
    conn.close();
    if (res && res.body.equals(after)) break;
    if (res) assert.ok(res.body.equals(before), "a complete response is the old or the new content");
    assert.ok(Date.now() - t0 < FRESH_MS, "served fresh in time");
    await sleep(100);
  }
});

test("a file replaced by rename is served fresh within ~1.5 s, with a new ETag", async () => {
  const p = join(root, "swap.txt");
  writeFileSync(p, "old content\n");
  const v1 = await fetchOne(port, "/swap.txt");
  assert.is(v1.body.toString(), "old content\n");
  writeFileSync(join(root, "swap.tmp"), "new content!\n");
  renameSync(join(root, "swap.tmp"), p);
  const { res, ms } = await until("/swap.txt", (r) => r.body.toString() === "new content!\n", FRESH_MS, "the rename");
  assert.is.not(res.headers.etag, v1.headers.etag);
  assert.ok(ms <= FRESH_MS, `fresh after ${ms} ms`);
});

test("a large file replaced by rename: old content until then, each response whole", async () => {
  const p = join(root, "swap.bin");
  const v1 = randomBytes(64 * 1024), v2 = randomBytes(80 * 1024);
  writeFileSync(p, v1);
  assert.ok((await fetchOne(port, "/swap.bin")).body.equals(v1));
  writeFileSync(join(root, "swap.bin.tmp"), v2);
  renameSync(join(root, "swap.bin.tmp"), p);
  await until("/swap.bin", (r) => {
    assert.ok(r.body.equals(v1) || r.body.equals(v2), "whole old or whole new content");
    return r.body.equals(v2);
  }, FRESH_MS, "the rename of a large file");
});

test("a deleted file becomes 404 within ~1.5 s; re-created, it is served again", async () => {
  const p = join(root, "gone.txt");
  writeFileSync(p, "here\n");
  assert.is((await fetchOne(port, "/gone.txt")).status, 200);
  unlinkSync(p);
  await until("/gone.txt", (r) => r.status === 404, FRESH_MS, "the deletion");
  writeFileSync(p, "back\n");
  await until("/gone.txt", (r) => r.status === 200 && r.body.toString() === "back\n", FRESH_MS, "the re-creation");
});

test("a 404 is not cached forever: a file created after a miss is served within ~1.5 s", async () => {
  assert.is((await fetchOne(port, "/late.txt")).status, 404);
  writeFileSync(join(root, "late.txt"), "late\n");
  await until("/late.txt", (r) => r.status === 200, FRESH_MS, "the new file");
});

test("If-None-Match with the old ETag after an edit: the new content (200), not 304", async () => {
  const p = join(root, "etag.txt");
  writeFileSync(p, "one\n");
  const { headers: { etag } } = await fetchOne(port, "/etag.txt");
  writeFileSync(p, "two, changed\n");
  await until("/etag.txt", (r) => r.body.toString() === "two, changed\n", FRESH_MS, "the edit");
  const res = await getWith("/etag.txt", [`If-None-Match: ${etag}`]);
  assert.is(res.status, 200);
  assert.is(res.body.toString(), "two, changed\n");
});

test.after(() => {
  closeAllConns();
  srv.stop();
  removeRoot(root);
});

test.run();
