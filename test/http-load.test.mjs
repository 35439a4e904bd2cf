// 1000 clients at once against the real CLI in a child process, in both
// epoll modes: connections are opened in batches (all of a batch at the
// same moment) and all stay open together; each sends two requests on its
// keep-alive connection, for a mix of in-memory and sendfile bodies, and
// must get exactly the right bytes. Zero errors allowed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash, randomBytes } from "node:crypto";
import { HttpConn, get, closeAllConns } from "./lib/http-client.mjs";
import { makeRoot, removeRoot, spawnServer } from "./lib/http-server.mjs";

const CLIENTS = 1000;
const BATCH = 100;

// Small files (cached in memory, one writev with the head) and large ones
// (sendfile, several writes), with distinct contents.
const files = {};
for (let i = 0; i < 12; i++) files[`small${i}.txt`] = `small file ${i} `.repeat(1 + i * 40);
for (let i = 0; i < 4; i++) files[`large${i}.bin`] = randomBytes(64 * 1024 + i * 50000);
const names = Object.keys(files);
const sha = (b) => createHash("sha256").update(b).digest("hex");
const want = Object.fromEntries(names.map((n) => [n, sha(Buffer.from(files[n]))]));
const root = makeRoot(files);
const servers = [];

/** The two files client i asks for: mostly small, every fourth client a large one too. */
function plan(i) {
  const first = names[i % 12];
  const second = i % 4 === 0 ? names[12 + (i >> 2) % 4] : names[(i * 7 + 3) % 12];
  return [first, second];
}

async function client(port, i, conn) {
  const got = [];
  for (const name of plan(i)) {
    await conn.write(get(`/${name}`));
    const res = await conn.response({ timeoutMs: 20000 });
    got.push({ name, status: res.status, sha: sha(res.body) });
  }
  return got;
}

for (const mode of ["et", "lt"]) {
  test(`${CLIENTS} concurrent keep-alive clients, 2 requests each, --mode ${mode}: every byte right, 0 errors`, async () => {
    const s = await spawnServer(["serve", "--root", root, "--port", "0", "--mode", mode, "--idle-timeout", "30000"]);
    servers.push(s);
    // Open every connection first, a batch at a time (each batch all at once),
    // so all CLIENTS are connected together before any request is sent.
    const conns = [];
    const errors = [];
    for (let b = 0; b < CLIENTS; b += BATCH) {
      const batch = await Promise.allSettled(Array.from({ length: BATCH }, () => HttpConn.open(s.port, { timeoutMs: 10000 })));
      for (const r of batch) {
        if (r.status === "fulfilled") conns.push(r.value); else errors.push(`connect: ${r.reason.message}`);
      }
    }
    assert.equal(errors, [], "every client connected");
    assert.is(conns.length, CLIENTS);
    const results = await Promise.allSettled(conns.map((c, i) => client(s.port, i, c)));
    let bad = 0;
    results.forEach((r, i) => {
      if (r.status === "rejected") { errors.push(`client ${i}: ${r.reason.message.slice(0, 120)}`); return; }
      for (const g of r.value) {
        if (g.status !== 200 || g.sha !== want[g.name]) { bad++; errors.push(`client ${i} ${g.name}: ${g.status}, sha ${g.sha === want[g.name] ? "ok" : "WRONG"}`); }
      }
    });
    assert.equal(errors.slice(0, 10), [], `${errors.length} errors (${bad} wrong responses)`);
    // Every connection is still open (keep-alive) and the server still answers.
    assert.is(conns.filter((c) => c.ended || c.closed).length, 0, "no connection was closed by the server");
    for (const c of conns) c.close();
    const extra = await HttpConn.open(s.port);
    await extra.write(get(`/${names[0]}`));
    assert.is((await extra.response()).status, 200, "served after the crowd left");
    extra.close();
    await s.stop();
  });
}

test.after(async () => {
  closeAllConns();
  await Promise.all(servers.map((s) => s.stop()));
  removeRoot(root);
});

test.run();
