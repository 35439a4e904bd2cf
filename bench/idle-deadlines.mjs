// Seed 003 M2 in full: 10,000 connections to the echo CLI whose idle
// deadlines fall at random 1-10 s after the start each close within +-10 ms
// (+ the wheel's granularity G) of their deadline, none early. The clients
// and the measurement are test/lib/idlemass.mjs's (test/idle-wheel.test.mjs
// runs a 1-3 s version in npm test); the server is a child process, so this
// process holds one end of each connection (the fd hard limit here is
// ~20,000).
//
//   node bench/idle-deadlines.mjs [--conns 10000] [--spread 9000] [--idle 1000] [--from start|connect]
//   node bench/idle-deadlines.mjs --smoke     (100 connections, 0.2-0.5 s)
//
// Prints the lateness distribution, how many closed outside the bound, and
// the client's own event-loop delay (it timestamps the closes: a busy client
// shows up as lateness too). Exits 1 if a connection failed, stayed open or
// closed before its deadline; lateness beyond the bound is reported, not fatal
// (it is a timing goal, and a loaded machine misses it).
import { parseArgs } from "node:util";
import { cleanup, startEcho } from "../test/lib/procs.mjs";
import { idleMass, summarize } from "../test/lib/idlemass.mjs";
import abi from "../test/lib/abi.mjs";

let values;
try {
  ({ values } = parseArgs({
    options: {
      conns: { type: "string", default: "10000" },
      spread: { type: "string", default: "9000" },
      idle: { type: "string", default: "1000" },
      from: { type: "string", default: "start" },
      smoke: { type: "boolean", default: false },
    },
  }));
} catch (e) {
  console.error(`idle-deadlines.mjs: ${e.message}`);
  process.exit(2);
}
const conns = values.smoke ? 100 : Number(values.conns);
const spread = values.smoke ? 300 : Number(values.spread);
const idle = values.smoke ? 200 : Number(values.idle);
for (const [k, v] of Object.entries({ conns, spread, idle })) {
  if (!(Number.isInteger(v) && v > 0)) { console.error(`idle-deadlines.mjs: --${k} needs a positive integer`); process.exit(2); }
}
if (!["start", "connect"].includes(values.from)) { console.error("idle-deadlines.mjs: --from is start or connect"); process.exit(2); }
const G = abi.WHEEL_TICK_MS;
const BOUND = 10 + G;

const server = await startEcho(["--idle-timeout", String(idle)]);
try {
  const run = await idleMass({ port: server.port, conns, idle, spread, from: values.from, deadlineMs: spread + idle + 120_000 });
  const s = summarize(run);
  const outside = s.lateness.filter((l) => l > BOUND).length;
  console.log(`idle deadlines: ${conns.toLocaleString("en")} connections, idle ${idle} ms, silent after [0, ${spread}] ms: deadlines ${idle}-${idle + spread} ms after ${values.from === "start" ? "all connected" : "each connect"} (G ${G} ms)`);
  console.log("| closed | measured | resets | errors | still open | early | late p50 ms | late p99 ms | late max ms | later than 10 ms + G | client loop delay p99 / max ms | connect ms |");
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  console.log(`| ${s.closed} | ${s.spoke} | ${s.resets} | ${s.errors} | ${s.unclosed} | ${s.earlyCount} | ${s.late.p50.toFixed(1)} | ${s.late.p99.toFixed(1)} | ${s.late.max.toFixed(1)}`
    + ` | ${outside} | ${run.loopDelay.p99.toFixed(1)} / ${run.loopDelay.max.toFixed(1)} | ${run.connectMs.toFixed(0)} |`);
  console.log(`earliest close: ${s.earliest.toFixed(2)} ms after its last send + idle (>= 0: none early)`);
  await server.stop();
  process.exitCode = s.errors || s.unclosed || s.earlyCount ? 1 : 0;
} finally {
  cleanup();
}
