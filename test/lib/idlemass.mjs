// Many connections timing out at random moments, measured from the client
// side (seed 003 M2: "10,000 connections with random 1-10 s idle timeouts each
// close within +-10 ms of their deadline"). Used by test/idle-wheel.test.mjs
// (short) and bench/idle-deadlines.mjs (the full 1-10 s run).
//
// The server's idle timeout is one value (--idle-timeout I). Each client
// talks (one byte, echoed, every `keepaliveMs` < I) from its connect on and
// falls silent at a random moment in [0, spread] after `from`: "start" (once
// all are connected: every connection is live at once and the deadlines are
// clear of the connect storm, at the price of everyone talking during it) or
// "connect" (its own connect: far fewer bytes, deadlines overlap the storm).
// Its deadline is then its last activity + I: at random between I and
// spread + I after `from`, as with per-connection timeouts, and every push
// before it exercised the lazy re-arm. No debug hook in the core.
//
// What the client can know of a deadline: the server's loop time when it read
// the last byte lies between the client's send and its receipt of the echo
// (the echo is written after the read that set the deadline, and before any
// close). So the deadline lies in [send + I, echo + I]:
//   early = close - (send + I) must be >= 0 (never before its deadline),
//   late  = close - (echo + I) is the lateness, <= G + the loops' lag.
// The client's own lag (its event loop, which timestamps the closes) is
// measured alongside (monitorEventLoopDelay), to tell it from the server's.
import net from "node:net";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { prng } from "./prng.mjs";

/**
 * Runs the clients against 127.0.0.1:port. Resolves once every connection has
 * closed (or `deadlineMs` passed): {conns: [{send, echo, close, error}], idle,
 * loopDelay: {p50, p99, max} (ms), connectMs}.
 */
export async function idleMass({ port, conns, idle, spread, keepaliveMs = Math.floor(idle * 0.6), seed = 3, batch = 200, deadlineMs = 120_000, from = "start" }) {
  const rand = prng(seed);
  const rows = [];
  const sockets = [];
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  let open = 0;
  let allClosed;
  const closedAll = new Promise((resolve) => { allClosed = resolve; });
  const onClosed = () => { if (--open === 0 && sockets.length === conns) allClosed(); };

  function start(k) {
    return new Promise((resolve) => {
      const row = { send: NaN, echo: NaN, close: NaN, error: null, reset: false, connected: false, sent: [], stopAt: Infinity, timer: null };
      rows[k] = row;
      const s = net.connect({ port, host: "127.0.0.1", noDelay: true });
      sockets[k] = s;
      open++;
      const talk = () => {
        if (s.destroyed || !Number.isNaN(row.close)) return;
        row.sent.push(performance.now());
        s.write("x");
        if (performance.now() + keepaliveMs < row.stopAt) row.timer = setTimeout(talk, keepaliveMs);
      };
      s.on("connect", () => {
        row.connected = true;
        if (from === "connect") row.stopAt = performance.now() + rand() * spread;
        talk(); // at once: the accept's own deadline is I from now too
        resolve();
      });
      // Each byte echoed answers the oldest byte sent (a stalled client may
      // have sent the next before it reads the last echo).
      s.on("data", (d) => { row.echo = performance.now(); for (let b = 0; b < d.length; b++) row.send = row.sent.shift(); });
      const done = () => {
        if (Number.isNaN(row.close)) { row.close = performance.now(); clearTimeout(row.timer); onClosed(); }
      };
      s.on("end", done);
      s.on("close", done);
      s.on("error", (e) => {
        // A reset after connecting is the server's close too: it closed with
        // our last byte unread (we sent it as the deadline passed: a late
        // client), or our byte met its closed socket after the FIN.
        if (row.connected && (e.code === "ECONNRESET" || e.code === "EPIPE")) { row.reset = true; done(); }
        else row.error = row.error ?? e.code ?? String(e);
        resolve();
      });
    });
  }

  const t0 = performance.now();
  for (let k = 0; k < conns; k += batch) {
    const wave = [];
    for (let j = k; j < Math.min(conns, k + batch); j++) wave.push(start(j));
    await Promise.all(wave);
  }
  const connectMs = performance.now() - t0;
  const start0 = performance.now();
  if (from === "start") for (const row of rows) row.stopAt = start0 + rand() * spread; // each talk() looks at it
  let timer;
  await Promise.race([closedAll, new Promise((r) => { timer = setTimeout(r, deadlineMs); })]);
  clearTimeout(timer);
  histogram.disable();
  for (const s of sockets) s.destroy();
  for (const r of rows) clearTimeout(r.timer);
  const ms = (ns) => ns / 1e6;
  return {
    conns: rows.map(({ send, echo, close, error, reset }) => ({ send, echo, close, error, reset })),
    idle,
    connectMs,
    loopDelay: { p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max) },
  };
}

/**
 * Early/late figures of idleMass's result. `spoke`: closed after at least one
 * echo (the timing checks apply); `silent`: closed before the client's first
 * byte was echoed (a client that lagged past I at connect: no bound on its
 * deadline from this side); `resets`: closes seen as a reset.
 */
export function summarize({ conns, idle }) {
  const closed = conns.filter((c) => !c.error && !Number.isNaN(c.close));
  const spoke = closed.filter((c) => !Number.isNaN(c.echo));
  const early = spoke.map((c) => c.close - (c.send + idle));
  const late = spoke.map((c) => c.close - (c.echo + idle)).sort((a, b) => a - b);
  const pick = (q) => late[Math.min(late.length - 1, Math.floor(q * late.length))];
  return {
    closed: closed.length,
    spoke: spoke.length,
    silent: closed.length - spoke.length,
    resets: closed.filter((c) => c.reset).length,
    errors: conns.filter((c) => c.error).length,
    unclosed: conns.filter((c) => !c.error && Number.isNaN(c.close)).length,
    earliest: Math.min(...early),
    earlyCount: early.filter((e) => e < 0).length,
    late: { p50: pick(0.5), p99: pick(0.99), max: late[late.length - 1] },
    lateness: late,
  };
}
