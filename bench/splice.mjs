// splice(2) through a pipe against the copy through linear memory, for the
// tcp-mode relay (issue 10: "splice if it measurably beats the copy; keep the
// faster as default").
//
//   node scripts/build.mjs && node bench/splice.mjs
//   node bench/splice.mjs --rounds 5 --chunk 65536 --pingpongs 50000
//   node bench/splice.mjs --smoke   (seconds: one round, tiny transfers; checks
//                                    that it runs, the figures mean nothing)
//
// Three relays, the same program but for how bytes move:
//   copy       read(src, linear memory, CHUNK) then write(dst, linear memory, n),
//              koffi calls on a WebAssembly.Memory's address, as host/executor-libc.ts
//              carries the core's OP_READ / OP_WRITE;
//   copy+ring  the same plus one memcpy inside linear memory between them, from
//              the receive buffer to a write area: what assembly/proxy/tcp.ts
//              does today (a read lands in the side's receive buffer and is
//              appended to the peer's write ring);
//   splice     splice(src -> pipe, CHUNK) then splice(pipe -> dst, n), both with
//              SPLICE_F_MOVE | SPLICE_F_NONBLOCK, one pipe per direction, made
//              (pipe2, F_SETPIPE_SZ) when the pair is set up.
// Everything else is shared: one edge-triggered epoll set, both sockets
// registered once (IN | OUT | RDHUP | ET); a direction is pumped until its
// source says EAGAIN or its destination takes less than offered (then it
// waits for that socket's next OUT edge); a FIN becomes shutdown(SHUT_WR) of
// the other side. So all three make the same syscalls in the same order; the
// table shows the counts per MB / per message, and bytes per read (or
// splice-in). A direction reads (splices in) only once what it holds went
// out: for splice that is needed, not just fair: a pipe holds 16 buffers,
// not 64 KiB, so splicing into a non-empty pipe can fail with EAGAIN while
// the socket still has data, and under edge triggering that reads as
// "drained" and stalls the direction.
//
// Placement: the relay alone on --relay-cpu (taskset), both peers (client and
// upstream, two threads of one process doing blocking koffi I/O) on
// --peer-cpu. The relay measures its own CPU (process.cpuUsage: utime+stime,
// µs) from its accept() to the close of the pair, per connection; the client
// measures wall time from its connect() to the last byte. Cases:
//   ping-pong  1 KiB request, 1 KiB response, --pingpongs round trips on one
//              connection: relay CPU per relayed message (2 per round trip);
//   1 MiB      --streams connections one after another, each 1 MiB from the
//              upstream to the client (pair set-up and pipes included);
//   100 MiB    one connection, 100 MiB upstream -> client.
// All three relays stay up (a warm-up first: the JIT); each case runs on each
// in turn, the order rotating by round; the table shows medians over rounds
// and ratios to copy taken within each round.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, workerData } from "node:worker_threads";

const require = createRequire(import.meta.url);
const koffi = require("koffi");
const lib = koffi.load("libc.so.6");
const c = {
  socket: lib.func("int socket(int, int, int)"),
  setsockopt: lib.func("int setsockopt(int, int, int, void *, uint32)"),
  bind: lib.func("int bind(int, void *, uint32)"),
  listen: lib.func("int listen(int, int)"),
  getsockname: lib.func("int getsockname(int, _Out_ void *, _Inout_ uint32 *)"),
  accept4: lib.func("int accept4(int, intptr, intptr, int)"),
  connect: lib.func("int connect(int, void *, uint32)"),
  read: lib.func("int read(int, intptr, size_t)"),
  write: lib.func("int write(int, intptr, size_t)"),
  splice: lib.func("int splice(int, intptr, int, intptr, size_t, uint32)"),
  pipe2: lib.func("int pipe2(intptr, int)"),
  fcntl: lib.func("int fcntl(int, int, int)"),
  shutdown: lib.func("int shutdown(int, int)"),
  close: lib.func("int close(int)"),
  epoll_create1: lib.func("int epoll_create1(int)"),
  epoll_ctl: lib.func("int epoll_ctl(int, int, int, intptr)"),
  epoll_wait: lib.func("int epoll_wait(int, intptr, int, int)"),
};
const errno = () => koffi.errno();
const AF_INET = 2, SOCK_STREAM = 1, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000, SOL_SOCKET = 1, SO_REUSEADDR = 2;
const IPPROTO_TCP = 6, TCP_NODELAY = 1, EAGAIN = 11, SHUT_WR = 1, F_SETFL = 4, O_NONBLOCK = 0o4000, F_SETPIPE_SZ = 1031;
const SPLICE_F_MOVE = 1, SPLICE_F_NONBLOCK = 2;
const EPOLLIN = 1, EPOLLOUT = 4, EPOLLERR = 8, EPOLLHUP = 16, EPOLLRDHUP = 0x2000, EPOLLET = 1 << 31, EPOLL_CTL_ADD = 1;
const EV_SIZE = process.arch === "x64" ? 12 : 16; // struct epoll_event is packed on x86-64 only
const one = Buffer.from([1, 0, 0, 0]);

let values;
try {
  ({ values } = parseArgs({ options: {
    role: { type: "string", default: "driver" },
    mode: { type: "string" },
    upstream: { type: "string" },
    rounds: { type: "string", default: "3" },
    chunk: { type: "string", default: "32768" },      // bytes per read / splice (the core's read buffer)
    "pipe-size": { type: "string", default: "65536" }, // F_SETPIPE_SZ (the kernel's default; HAProxy's too)
    pingpongs: { type: "string", default: "20000" },
    streams: { type: "string", default: "50" },
    "big-mib": { type: "string", default: "100" },
    "relay-cpu": { type: "string", default: "0" },
    "peer-cpu": { type: "string", default: "1" },
    smoke: { type: "boolean", default: false },
  } }));
} catch (e) { console.error(`splice.mjs: ${e.message}`); process.exit(2); }
const num = (k) => { const n = Number(values[k]); if (!Number.isInteger(n) || n < 1) { console.error(`splice.mjs: --${k} wants a whole number > 0, got '${values[k]}'`); process.exit(2); } return n; };

function check(r, what) { if (r < 0) throw new Error(`${what}: errno ${errno()}`); return r; }
function sockaddr(port) {
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(AF_INET, 0); sa.writeUInt16BE(port, 2); sa.writeUInt32BE(0x7f000001, 4);
  return sa;
}
function listener() {
  const fd = check(c.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
  c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4);
  check(c.bind(fd, sockaddr(0), 16), "bind");
  check(c.listen(fd, 128), "listen");
  const sa = Buffer.alloc(16), len = [16];
  check(c.getsockname(fd, sa, len), "getsockname");
  return { fd, port: sa.readUInt16BE(2) };
}
function connectTo(port) {
  const fd = check(c.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
  c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4);
  check(c.connect(fd, sockaddr(port), 16), `connect ${port}`);
  return fd;
}

// ---- the relay ------------------------------------------------------------------

function relay(mode, upstreamPort, chunk, pipeSize) {
  const mem = new WebAssembly.Memory({ initial: 32 }); // 2 MiB of linear memory
  const base = Number(koffi.address(mem.buffer));
  const bufs = [base, base + chunk];                 // one receive buffer per direction
  const rings = [base + 2 * chunk, base + 3 * chunk]; // copy+ring: where a read is copied to, written from
  const events = base + 4 * chunk, EVENTS = 16, ev = events + EVENTS * EV_SIZE;
  const view = new DataView(mem.buffer), u8 = new Uint8Array(mem.buffer);
  const ringed = mode === "copy+ring";
  const ep = check(c.epoll_create1(0), "epoll_create1");
  const lst = listener();
  process.stdout.write(`relay ${lst.port}\n`);
  const splicing = mode === "splice";
  const fds = [0, 0];
  for (;;) {
    const cfd = c.accept4(lst.fd, 0, 0, SOCK_CLOEXEC);
    if (cfd < 0) throw new Error(`accept4: errno ${errno()}`);
    const t0 = process.cpuUsage(), w0 = performance.now();
    let calls = 0, transfers = 0, waits = 0, ins = 0;
    const ufd = connectTo(upstreamPort);
    c.setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, one, 4);
    c.fcntl(cfd, F_SETFL, O_NONBLOCK); c.fcntl(ufd, F_SETFL, O_NONBLOCK);
    calls += 5;
    // direction 0: client -> upstream, 1: upstream -> client
    const dirs = [0, 1].map((d) => ({ src: d ? ufd : cfd, dst: d ? cfd : ufd, buf: bufs[d], out: ringed ? rings[d] : bufs[d], pend: 0, off: 0, eof: false, pr: -1, pw: -1, bytes: 0 }));
    if (splicing) for (const d of dirs) {
      check(c.pipe2(ev + 16, O_NONBLOCK | SOCK_CLOEXEC), "pipe2");
      const p = [view.getInt32(ev - base + 16, true), view.getInt32(ev - base + 20, true)];
      if (pipeSize !== 65536) check(c.fcntl(p[1], F_SETPIPE_SZ, pipeSize), "F_SETPIPE_SZ");
      d.pr = p[0]; d.pw = p[1];
      calls += pipeSize !== 65536 ? 2 : 1;
    }
    for (const fd of [cfd, ufd]) {
      view.setUint32(ev - base, (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) >>> 0, true);
      view.setUint32(ev - base + 4, fd, true);
      check(c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev), "epoll_ctl");
      calls++;
    }
    fds[0] = cfd; fds[1] = ufd;
    let failed = false;
    // Moves bytes src -> dst until the source is dry or the destination full -> false on an error.
    const pump = (d) => {
      for (;;) {
        if (d.pend === 0) {
          if (d.eof) return true;
          const n = splicing ? c.splice(d.src, 0, d.pw, 0, chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK) : c.read(d.src, d.buf, chunk);
          calls++; transfers++;
          if (n < 0) return errno() === EAGAIN;
          if (n === 0) { d.eof = true; c.shutdown(d.dst, SHUT_WR); calls++; return true; }
          d.pend = n; d.off = 0; ins++;
          if (ringed) u8.copyWithin(d.out - base, d.buf - base, d.buf - base + n); // memmove, as the core's memory.copy
        }
        const w = splicing ? c.splice(d.pr, 0, d.dst, 0, d.pend, SPLICE_F_MOVE | SPLICE_F_NONBLOCK) : c.write(d.dst, d.out + d.off, d.pend);
        calls++; transfers++;
        if (w < 0) return errno() === EAGAIN;
        d.pend -= w; d.off += w; d.bytes += w;
        if (d.pend > 0) return true; // short: wait for the destination's OUT edge
      }
    };
    while (!failed && !(dirs[0].eof && dirs[1].eof && dirs[0].pend === 0 && dirs[1].pend === 0)) {
      const n = c.epoll_wait(ep, events, EVENTS, -1);
      calls++; waits++;
      for (let i = 0; i < n && !failed; i++) {
        const bits = view.getUint32(events - base + i * EV_SIZE, true), fd = view.getUint32(events - base + i * EV_SIZE + 4, true);
        const from = dirs[fd === cfd ? 0 : 1], to = dirs[fd === cfd ? 1 : 0];
        if (bits & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) failed = !pump(from);
        if (!failed && (bits & EPOLLOUT) && to.pend > 0) failed = !pump(to);
      }
    }
    for (const fd of [cfd, ufd, dirs[0].pr, dirs[0].pw, dirs[1].pr, dirs[1].pw]) if (fd >= 0) { c.close(fd); calls++; }
    const u = process.cpuUsage(t0);
    process.stdout.write(JSON.stringify({ conn: 1, failed, up: dirs[0].bytes, down: dirs[1].bytes, cpuUs: u.user + u.system, wallUs: (performance.now() - w0) * 1000, calls, transfers, waits, ins }) + "\n");
  }
}

// ---- the peers: a client (main thread) and an upstream (a worker), blocking I/O ----

/** Reads exactly len bytes (or to EOF) -> bytes read. */
function readFull(fd, at, len) {
  let got = 0;
  while (got < len) { const n = check(c.read(fd, at + got, len - got), "read"); if (n === 0) break; got += n; }
  return got;
}
function writeFull(fd, at, len) { for (let o = 0; o < len;) o += check(c.write(fd, at + o, len - o), "write"); }

const MODES = ["copy", "copy+ring", "splice"];
const MODE_ECHO = 1, MODE_SOURCE = 2, STREAM_CHUNK = 1 << 20;

function upstream(fd) {
  const mem = new Uint8Array(STREAM_CHUNK + 4096).fill(0x5a);
  const at = Number(koffi.address(mem.buffer)), hdr = STREAM_CHUNK;
  const dv = new DataView(mem.buffer);
  for (;;) {
    const s = check(c.accept4(fd, 0, 0, SOCK_CLOEXEC), "accept4");
    c.setsockopt(s, IPPROTO_TCP, TCP_NODELAY, one, 4);
    readFull(s, at + hdr, 16);
    const m = dv.getUint32(hdr, true), size = dv.getUint32(hdr + 4, true), n = dv.getFloat64(hdr + 8, true);
    if (m === MODE_ECHO) { // n round trips of size bytes
      for (let i = 0; i < n; i++) { if (readFull(s, at, size) < size) break; writeFull(s, at, size); }
    } else { // n bytes down
      for (let o = 0; o < n; o += STREAM_CHUNK) writeFull(s, at, Math.min(STREAM_CHUNK, n - o));
      c.shutdown(s, SHUT_WR);
    }
    while (c.read(s, at, STREAM_CHUNK) > 0); // to the client's FIN
    c.close(s);
  }
}

function peers() {
  const up = listener();
  new Worker(fileURLToPath(import.meta.url), { workerData: { upstreamFd: up.fd }, argv: ["--role", "upstream"] }).unref();
  process.stdout.write(`upstream ${up.port}\n`);
  const mem = new Uint8Array(STREAM_CHUNK + 4096);
  const at = Number(koffi.address(mem.buffer)), hdr = STREAM_CHUNK;
  const dv = new DataView(mem.buffer);
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    // "pingpong PORT N SIZE" | "stream PORT BYTES COUNT"
    const [what, port, a, b] = line.split(" ");
    const t0 = performance.now();
    let bad = 0;
    const conns = what === "pingpong" ? 1 : Number(b);
    for (let k = 0; k < conns; k++) {
      const s = connectTo(Number(port));
      dv.setUint32(hdr, what === "pingpong" ? MODE_ECHO : MODE_SOURCE, true);
      dv.setUint32(hdr + 4, what === "pingpong" ? Number(b) : 0, true);
      dv.setFloat64(hdr + 8, Number(a), true);
      writeFull(s, at + hdr, 16);
      if (what === "pingpong") {
        const size = Number(b);
        for (let i = 0; i < Number(a); i++) { writeFull(s, at, size); if (readFull(s, at, size) !== size) bad++; }
        c.shutdown(s, SHUT_WR);
        if (readFull(s, at, 1) !== 0) bad++;
      } else {
        let got = 0;
        for (let n; (n = check(c.read(s, at, STREAM_CHUNK), "read")) > 0;) got += n;
        if (got !== Number(a)) bad++;
      }
      c.close(s);
    }
    process.stdout.write(JSON.stringify({ done: what, wallUs: (performance.now() - t0) * 1000, bad }) + "\n");
  });
}

// ---- the driver -----------------------------------------------------------------

/** A child whose stdout lines are awaited one at a time. */
function child(cpu, args) {
  const p = spawn("taskset", ["-c", cpu, process.execPath, fileURLToPath(import.meta.url), ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const queue = [], waiting = [];
  let dead = null;
  createInterface({ input: p.stdout }).on("line", (l) => { const w = waiting.shift(); if (w) w.resolve(l); else queue.push(l); });
  p.on("exit", (code, sig) => { dead = new Error(`${args.join(" ")} exited (${code ?? sig})`); for (const w of waiting.splice(0)) w.reject(dead); });
  p.next = () => new Promise((resolve, reject) => {
    if (queue.length) return resolve(queue.shift());
    if (dead) return reject(dead);
    waiting.push({ resolve, reject });
  });
  return p;
}

async function driver() {
  if (values.smoke) {
    Object.assign(values, { rounds: "1", pingpongs: "200", streams: "3", "big-mib": "4" });
    if (availableParallelism() < 2) values["peer-cpu"] = values["relay-cpu"]; // one CPU (a small CI runner): shared
  }
  const rounds = num("rounds"), chunk = num("chunk"), pipeSize = num("pipe-size");
  const pingpongs = num("pingpongs"), streams = num("streams"), big = num("big-mib") << 20;
  if (chunk < 1024 || chunk > 262144) { console.error("splice.mjs: --chunk wants 1024..262144"); process.exit(2); }
  const cases = [
    { name: "ping-pong 1 KiB", cmd: (p) => `pingpong ${p} ${pingpongs} 1024`, conns: 1, msgs: 2 * pingpongs, bytes: 2 * 1024 * pingpongs },
    { name: "1 MiB streams", cmd: (p) => `stream ${p} ${1 << 20} ${streams}`, conns: streams, msgs: streams, bytes: streams << 20 },
    { name: `${big >> 20} MiB stream`, cmd: (p) => `stream ${p} ${big} 1`, conns: 1, msgs: 1, bytes: big },
  ];
  const warm = [`pingpong PORT 2000 1024`, `stream PORT ${8 << 20} 4`];
  const res = {}; // case name -> mode -> [per round {cpuUs, wallUs, calls, ...}]
  const peer = child(values["peer-cpu"], ["--role", "peers"]);
  const uport = (await peer.next()).split(" ")[1];
  const relays = {};
  try {
    for (const mode of MODES) {
      relays[mode] = child(values["relay-cpu"], ["--role", "relay", "--mode", mode, "--upstream", uport, "--chunk", String(chunk), "--pipe-size", String(pipeSize)]);
      relays[mode].port = (await relays[mode].next()).split(" ")[1];
    }
    /** Runs peer command `cmd` through relay `rel` -> the relay's connections summed, the client's wall time. */
    const once = async (rel, cmd, conns) => {
      peer.stdin.write(cmd(rel.port) + "\n");
      const done = JSON.parse(await peer.next());
      const sum = { cpuUs: 0, wallUs: done.wallUs, calls: 0, transfers: 0, waits: 0, ins: 0, bad: done.bad, up: 0, down: 0 };
      for (let i = 0; i < conns; i++) {
        const l = JSON.parse(await rel.next());
        for (const f of ["cpuUs", "calls", "transfers", "waits", "ins", "up", "down"]) sum[f] += l[f];
        if (l.failed) sum.bad++;
      }
      return sum;
    };
    for (const mode of MODES) { // warm-up: the JIT, every relay (--smoke: a token one)
      await once(relays[mode], (p) => `pingpong ${p} ${values.smoke ? 20 : 2000} 1024`, 1);
      await once(relays[mode], (p) => `stream ${p} ${values.smoke ? 1 << 20 : 8 << 20} ${values.smoke ? 1 : 4}`, values.smoke ? 1 : 4);
    }
    // Every relay stays up; each case runs on each in turn, the order
    // rotating by round, so a burst of someone else's load lands on all
    // alike and the ratios are taken within a round.
    for (let r = 0; r < rounds; r++) {
      for (const k of cases) {
        for (const mode of MODES.map((_, i) => MODES[(i + r) % MODES.length])) {
          ((res[k.name] ??= {})[mode] ??= []).push(await once(relays[mode], k.cmd, k.conns));
        }
      }
    }
  } finally {
    peer.kill("SIGKILL");
    for (const r of Object.values(relays)) r.kill("SIGKILL");
  }
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
  const f = (n, d = 0) => n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  console.log(`relay: copy (read/write through linear memory), copy+ring (and a memcpy between), splice (socket -> pipe -> socket), chunk ${chunk} B, pipe ${pipeSize} B, median of ${rounds} rounds (ratios: median of the rounds' own, and their range); relay on CPU ${values["relay-cpu"]}, peers on CPU ${values["peer-cpu"]}${values.smoke ? " (smoke: figures mean nothing)" : ""}`);
  console.log("");
  console.log("| case | relay | relay CPU | per | vs copy | throughput | vs copy | syscalls per | bytes per read / splice-in | errors |");
  console.log("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const k of cases) {
    const ping = k.name.startsWith("ping");
    const cpuOf = (x) => ping ? x.cpuUs / k.msgs : x.cpuUs / 1000 / (k.bytes / 1e9);       // µs/msg, ms/GB
    const tputOf = (x) => ping ? k.msgs / 2 / (x.wallUs / 1e6) : k.bytes / 1e6 / (x.wallUs / 1e6); // rt/s, MB/s
    const cx = res[k.name].copy;
    // mode/copy within each round: the median, and the range over rounds
    const ratio = (mode, of) => {
      const rs = cx.map((x, i) => of(res[k.name][mode][i]) / of(x));
      return `${med(rs).toFixed(2)}${rs.length > 1 ? ` (${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)})` : ""}`;
    };
    for (const mode of MODES) {
      const xs = res[k.name][mode];
      const sys = med(xs.map((x) => ping ? x.calls / k.msgs : x.calls / (k.bytes / 1e6)));
      const bpt = med(xs.map((x) => (x.up + x.down) / x.ins));
      const bad = xs.reduce((a, x) => a + x.bad + (x.up + x.down === k.bytes + 16 * k.conns ? 0 : 1), 0);
      const copy = mode === "copy";
      console.log(`| ${k.name} | ${mode} | ${f(med(xs.map(cpuOf)), ping ? 2 : 0)} | ${ping ? "µs/msg" : "ms/GB"} | ${copy ? "–" : ratio(mode, cpuOf)} | ` +
        `${f(med(xs.map(tputOf)))} ${ping ? "rt/s" : "MB/s"} | ${copy ? "–" : ratio(mode, tputOf)} | ${f(sys, 2)} /${ping ? "msg" : "MB"} | ${f(bpt)} | ${bad} |`);
    }
  }
}

if (!isMainThread) upstream(workerData.upstreamFd);
else if (values.role === "relay") relay(values.mode, Number(values.upstream), num("chunk"), num("pipe-size"));
else if (values.role === "peers") peers();
else if (values.role === "driver") await driver();
else { console.error(`splice.mjs: unknown --role ${values.role}`); process.exit(2); }
