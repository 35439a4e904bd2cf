// Idle keep-alive connections for bench/http.sh's memory measurement: opens
// --conns connections, sends one GET on each and reads the whole response (so
// every connection is past accept and its first request, the state a real
// idle keep-alive client leaves behind), then holds them all open.
//
//   node bench/http-idle.mjs --port P --conns 10000 [--path /1k.bin]
//   -> prints `ready open=N failed=F` once every connection is idle,
//      and `exit still_open=N closed_by_server=K` on SIGTERM/SIGINT
//
// Connects are issued --batch at a time so the listen queue never overflows:
// the measurement is about memory per established connection, not about
// surviving a connect storm (the 10k wrk case covers that).
import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    conns: { type: "string", default: "10000" },
    path: { type: "string", default: "/1k.bin" },
    batch: { type: "string", default: "200" },
  },
});
if (!values.port) throw new Error("--port is required");
const total = Number(values.conns);
const batch = Number(values.batch);
const request = `GET ${values.path} HTTP/1.1\r\nHost: ${values.host}:${values.port}\r\n\r\n`;

const sockets = [];
let failed = 0;
let closedByServer = 0;
let holding = false;

/** Resolves true once one full response has arrived on a fresh connection. */
function openOne() {
  return new Promise((resolve) => {
    const s = net.connect({ host: values.host, port: Number(values.port) });
    let buf = Buffer.alloc(0);
    let settled = false;
    const settle = (ok) => {
      if (settled) return;
      settled = true;
      if (ok) sockets.push(s); else { failed++; s.destroy(); }
      resolve(ok);
    };
    s.on("connect", () => s.write(request));
    s.on("data", (d) => {
      if (settled) return;
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString("latin1"));
      if (!m) { settle(false); return; }
      if (buf.length >= end + 4 + Number(m[1])) { buf = null; settle(true); }
    });
    s.on("error", () => settle(false));
    s.on("close", () => {
      if (!settled) settle(false);
      else if (holding) closedByServer++;
    });
  });
}

let next = 0;
async function worker() {
  while (next < total) { next++; await openOne(); }
}
await Promise.all(Array.from({ length: Math.min(batch, total) }, worker));
holding = true;

function finish() {
  const stillOpen = sockets.filter((s) => !s.destroyed).length;
  process.stdout.write(`exit still_open=${stillOpen} closed_by_server=${closedByServer}\n`);
  process.exit(0);
}
// Before the ready line: whoever reads it may signal at once.
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, finish);
process.stdout.write(`ready open=${sockets.length} failed=${failed}\n`);
setInterval(() => {}, 1 << 30); // hold the loop open until signalled
