// An echo server written on the `io` API (docs/io.md), for bench/echo.mjs:
// the seed's socket operations (accept, recv, send) as Promises on one
// executor, one async loop per connection, the way a user of the API would
// write it. Same command line and listening line as bench/node-echo.mjs.
//
//   node bench/io-echo.mjs --port 0 --backend io_uring|epoll_threadpool|threadpool
//   -> prints `io-echo: listening on 127.0.0.1:PORT (pid N, backend B)`
//
// Each connection owns one 64 KiB buffer (passed in place) and runs recv ->
// send (all of it) -> recv ...; a recv of 0 (the peer half-closed) or an
// error closes it. Accepts loop on the listening socket, which is
// nonblocking: accept waits for readiness on every backend.
import { parseArgs } from "node:util";
import { io, listenTcp } from "../dist/index.js";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "9000" },
    backend: { type: "string", default: "auto" },
    "idle-timeout": { type: "string", default: "0" }, // accepted for echo.mjs; no idle timeout here
  },
});

const ex = io.executor({ backend: values.backend });
const l = listenTcp({ host: values.host, port: Number(values.port), backlog: 65535 });

async function serve(fd) {
  const buf = new Uint8Array(65536);
  try {
    for (;;) {
      const n = await ex.recv(fd, buf);
      if (n === 0) break;
      let off = 0;
      while (off < n) off += await ex.send(fd, buf.subarray(off, n));
    }
  } catch { /* reset by the peer, or stopped */ }
  await ex.close(fd).catch(() => {});
}

async function acceptLoop() {
  for (;;) {
    let fd;
    try { fd = await ex.accept(l.fd); } catch (e) {
      if (e.code === "ECANCELED") return;
      if (e.code === "EMFILE" || e.code === "ENFILE") { await new Promise((r) => setTimeout(r, 10)); continue; }
      throw e;
    }
    void serve(fd);
  }
}

process.stdout.write(`io-echo: listening on ${values.host}:${l.port} (pid ${process.pid}, backend ${ex.backend})\n`);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
await acceptLoop();
