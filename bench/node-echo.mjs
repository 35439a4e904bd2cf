// The baseline for bench/echo.mjs: a node:net echo server with the same
// command line and behaviour as `wasm-reactor echo`, so the two can be
// swapped under the same load. No socket.pipe(): every 'data' chunk is
// written back with socket.write(), the way the core writes back each read.
//
//   node bench/node-echo.mjs --port 0 --idle-timeout 0
//   -> prints `node-echo: listening on 127.0.0.1:PORT (pid N)`
//
// Same semantics as ours: idle connections close after --idle-timeout ms
// (0 = never); a peer that half-closes gets the rest of its echo, then the
// connection closes; the listen backlog asks for 65535 (the kernel caps it
// at net.core.somaxconn), like host/net.ts.
import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "9000" },
    "idle-timeout": { type: "string", default: "30000" },
  },
});
const idleMs = Number(values["idle-timeout"]);

const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  if (idleMs > 0) socket.setTimeout(idleMs, () => socket.destroy());
  socket.on("data", (chunk) => socket.write(chunk));
  socket.on("end", () => socket.end());   // flush what we owe, then close
  socket.on("error", () => socket.destroy());
});

server.listen({ host: values.host, port: Number(values.port), backlog: 65535 }, () => {
  const { address, port } = server.address();
  process.stdout.write(`node-echo: listening on ${address}:${port} (pid ${process.pid})\n`);
});

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
