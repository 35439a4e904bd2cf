// Many connections timing out at random moments, measured from the client
// side (seed 003 M2: "10,000 connections with random 1-10 s idle timeouts each
// close within +-10 ms of their deadline"). Used by test/idle-wheel.test.mjs
// (short) and bench/idle-deadlines.mjs (the full 1-10 s run).
//
// The server's idle timeout is one value (--idle-timeout I). Each client
// talks (one byte, echoed, every `keepaliveMs` < I) from its connect until a
// random moment in [0, spread] after it, then falls silent: its deadline is
// then last activity + I, so the deadlines fall at random between I and
// spread + I after connect, as with per-connection timeouts, and every push
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
export async function idleMass({ port, conns, idle, spread, keepaliveMs = Math.floor(idle / 2), seed = 3, batch = 200, deadlineMs = 120_000 }) {
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
      const row = { send: NaN, echo: NaN, close: NaN, error: null, pending: NaN, stopAt: 0, timer: null };
      rows[k] = row;
      const s = net.connect({ port, host: "127.0.0.1", noDelay: true });
      sockets[k] = s;
      open++;
      const talk = () => {
        if (s.destroyed || !Number.isNaN(row.close)) return;
        row.pending = performance.now();
        s.write("x");
        const at = performance.now() + keepaliveMs;
        if (at < row.stopAt) row.timer = setTimeout(talk, keepaliveMs);
      };
      s.on("connect", () => {
        row.stopAt = performance.now() + rand() * spread;
        talk(); // at once: the accept's own deadline is I from now too
        resolve();
      });
      s.on("data", () => { row.echo = performance.now(); row.send = row.pending; });
      const done = () => {
        if (Number.isNaN(row.close)) { row.close = performance.now(); clearTimeout(row.timer); onClosed(); }
      };
      s.on("end", done);
      s.on("close", done);
      s.on("error", (e) => { row.error = row.error ?? e.code ?? String(e); resolve(); });
    });
  }

  const t0 = performance.now();
  for (let k = 0; k < conns; k += batch) {
    const wave = [];
    for (let j = k; j < Math.min(conns, k + batch); j++) wave.push(start(j));
    await Promise.all(wave);
  }
  const connectMs = performance.now() - t0;
  let timer;
  await Promise.race([closedAll, new Promise((r) => { timer = setTimeout(r, deadlineMs); })]);
  clearTimeout(timer);
  histogram.disable();
  for (const s of sockets) s.destroy();
  for (const r of rows) clearTimeout(r.timer);
  const ms = (ns) => ns / 1e6;
  return {
    conns: rows.map(({ send, echo, close, error }) => ({ send, echo, close, error })),
    idle,
    connectMs,
    loopDelay: { p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max) },
  };
}

/** Early/late figures of idleMass's result: sorted lateness, the worst, the earliest. */
export function summarize({ conns, idle }) {
  const closed = conns.filter((c) => !c.error && !Number.isNaN(c.close) && !Number.isNaN(c.echo));
  const early = closed.map((c) => c.close - (c.send + idle));
  const late = closed.map((c) => c.close - (c.echo + idle)).sort((a, b) => a - b);
  const pick = (q) => late[Math.min(late.length - 1, Math.floor(q * late.length))];
  return {
    closed: closed.length,
    errors: conns.filter((c) => c.error).length,
    unclosed: conns.filter((c) => !c.error && Number.isNaN(c.close)).length,
    earliest: Math.min(...early),
    earlyCount: early.filter((e) => e < 0).length,
    late: { p50: pick(0.5), p99: pick(0.99), max: late[late.length - 1] },
    lateness: late,
  };
}
