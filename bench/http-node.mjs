// The node:http baseline for bench/http.sh: a static-file server that reads
// every regular file under --root into memory at startup and answers GET and
// HEAD from there, with keep-alive and no timeouts that would close an idle
// connection (the others run with --idle-timeout 0 or hour-long timeouts).
//
//   node bench/http-node.mjs --root DIR --port 0
//   -> prints `node-http: listening on http://127.0.0.1:PORT/ (pid N)`
//
// Serving from memory is the most favourable setup for node:http: no fs call
// on the hot path, only http's own parsing, header writing and socket write.
// The headers match what the file servers send (type, length, validators).
import http from "node:http";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    root: { type: "string", default: "public" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "8080" },
  },
});

/** url path -> { body, headers } for every regular file under root. */
const files = new Map();
function load(dir, prefix) {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, ent.name);
    if (ent.isDirectory()) { load(full, `${prefix}${ent.name}/`); continue; }
    if (!ent.isFile()) continue;
    const st = statSync(full);
    const body = readFileSync(full);
    files.set(`${prefix}${ent.name}`, {
      body,
      headers: {
        "Content-Type": "application/octet-stream",
        "Content-Length": String(body.length),
        "Last-Modified": st.mtime.toUTCString(),
        "ETag": `"${Math.floor(st.mtimeMs / 1000).toString(16)}-${body.length.toString(16)}"`,
        "Accept-Ranges": "bytes",
      },
    });
  }
}
load(resolve(values.root), "/");

const server = http.createServer((req, res) => {
  const f = files.get(req.url);
  if (!f) { res.writeHead(404, { "Content-Length": "0" }); res.end(); return; }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { "Allow": "GET, HEAD", "Content-Length": "0" });
    res.end();
    return;
  }
  res.writeHead(200, f.headers);
  res.end(req.method === "HEAD" ? undefined : f.body);
});
// Keep idle keep-alive connections open as long as the client wants them.
server.keepAliveTimeout = 0;
server.requestTimeout = 0;
server.headersTimeout = 0;

server.listen({ host: values.host, port: Number(values.port), backlog: 65535 }, () => {
  const { address, port } = server.address();
  process.stdout.write(`node-http: listening on http://${address}:${port}/ (pid ${process.pid})\n`);
});

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
