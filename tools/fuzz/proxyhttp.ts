// The http-mode proxy's oracle (issue 10): the simulated kernel plays the
// proxy's clients and the upstream HTTP servers behind it, and judges what
// the core forwards without asking the core who is paired with whom. Every
// request carries an id in its path (/r/C.K: client C's K-th request); an
// upstream server answers it with `X-Id: C.K` and a body that is a function
// of the id, so each response a client gets names the request it answers.
//
// The servers (Server.feed(), as the core writes to an upstream socket)
// check, as the bytes come:
//  - each request is a client's, one serve would accept (a refused one
//    never reaches an upstream whole), framed once (Content-Length or
//    chunked), with its body byte for byte, its hop-by-hop fields gone and
//    X-Forwarded-For (after the client's own value) and Via present;
//  - a connection carries one request at a time: a request never arrives
//    while the previous response is unread (a pooled connection shared by
//    two requests), nor after the server ended the connection;
//  - a request reaches servers at most twice, and a second time only when
//    the first got no response byte and went out on a reused connection or
//    is a GET/HEAD without body (the retry rules of docs/proxy.md).
// After the kernel calmed, each client connection is judged (judgeClient()):
// its responses, in order, are each the upstream's answer to THAT request
// (status and body as the server sent them), or the proxy's own error
// (the 4xx serve gives a refused request, with a close; 502/503/504 for a
// forwarded one); a response cut short ends the connection; nothing is
// missing without a cause (a fault, a server that never answers, a close
// the proxy announced).
//
// (The server answers each request in one of several ways: chunked, Content-
// Length or close-delimited bodies, 1xx first, 204/304, garbage heads,
// resets or FINs before or after the head, never.)

export interface R { int(n: number): number; chance(p: number): boolean; pick<T>(a: readonly T[]): T }

/** One request a client sends. */
export interface HReq {
  id: string;
  method: string;
  /** Statuses the proxy may refuse it with (serve's), or null: it is forwarded. */
  refused: number[] | null;
  /** Refused only once its (chunked) body is read: its head may reach an upstream, never its whole body. */
  bodyRefused: boolean;
  body: string;
  /** The client sent every byte of it (a FIN mid-request cuts the last one short). */
  complete: boolean;
  v10: boolean;
  xff: string | null;
  /** The proxy knows the client's address (IPv4 or IPv6, not AF_UNIX): X-Forwarded-For gets it. */
  addressed?: boolean;
}

const ID_RE = /^\/r\/(\d+\.\d+)$/;

/** The body a request or a response of this id carries: a function of it. */
function bodyOf(id: string, n: number, salt: string): string {
  const unit = `<${salt}${id}>`;
  return unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
}

function chunk(body: string, r: R): string {
  let out = "", at = 0;
  while (at < body.length) {
    const k = Math.min(body.length - at, 1 + r.int(r.chance(0.5) ? 64 : 20000));
    out += `${k.toString(16)}${r.chance(0.2) ? ";x=1" : ""}\r\n${body.slice(at, at + k)}\r\n`;
    at += k;
  }
  return out + (r.chance(0.3) ? "0\r\nX-T: 1\r\n\r\n" : "0\r\n\r\n");
}

/** A client's stream: valid requests, pipelined, perhaps a hostile one (which ends what is meaningful), perhaps cut short. */
export function clientStream(r: R, cid: number, maxBody: number): { bytes: string; reqs: HReq[] } {
  const reqs: HReq[] = [];
  const ends: number[] = [];
  let bytes = "";
  const n = r.pick([0, 1, 1, 2, 3, 5]);
  for (let k = 0; k < n; k++) {
    const id = `${cid}.${k}`;
    const hostile = r.chance(0.12);
    const one = hostile ? hostileRequest(r, id) : validRequest(r, id, maxBody);
    reqs.push({ ...one.req, complete: true });
    bytes += one.text;
    ends.push(bytes.length);
    if (hostile || one.closes) break; // nothing after it is read
  }
  if (reqs.length && r.chance(0.1)) {
    // a FIN mid-request: the last one is cut short
    const last = reqs[reqs.length - 1];
    const cut = r.int(bytes.length);
    const startOfLast = ends.length > 1 ? ends[ends.length - 2] : 0; // (cut inside the last request, or not at all)
    if (cut > startOfLast) { bytes = bytes.slice(0, cut); last.complete = false; }
  }
  return { bytes, reqs };
}

function validRequest(r: R, id: string, maxBody: number): { req: Omit<HReq, "complete">; text: string; closes: boolean } {
  const method = r.pick(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE"]);
  const v10 = r.chance(0.1);
  let head = `${method} /r/${id} HTTP/1.${v10 ? 0 : 1}\r\n`;
  if (!v10 || r.chance(0.5)) head += "Host: a.example\r\n";
  let closes = false;
  const conn: string[] = [];
  if (v10 ? r.chance(0.6) : false) conn.push("keep-alive"); else if (v10) closes = true;
  if (r.chance(0.1)) { conn.push("close"); closes = true; }
  if (r.chance(0.2)) { conn.push("X-Hop"); head += "X-Hop: secret\r\n"; }
  if (r.chance(0.1)) head += "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n";
  if (r.chance(0.1)) head += "TE: trailers\r\nUpgrade: h2c\r\n";
  if (conn.length) head += `Connection: ${conn.join(", ")}\r\n`;
  const xff = r.chance(0.2) ? "10.9.8.7" : null;
  if (xff) head += `X-Forwarded-For: ${xff}\r\n`;
  if (r.chance(0.2)) head += `User-Agent: fuzz\r\nAccept: */*\r\n`;
  let body = "", text: string;
  const withBody = method === "POST" || method === "PUT" || r.chance(0.05);
  if (withBody) {
    const len = Math.min(maxBody, r.pick([0, 1, 10, 300, 5000, 70000]));
    body = bodyOf(id, len, "q");
    if (r.chance(0.15)) head += "Expect: 100-continue\r\n";
    if (!v10 && r.chance(0.4)) text = `${head}Transfer-Encoding: chunked\r\n\r\n${chunk(body, r)}`;
    else text = `${head}Content-Length: ${len}\r\n\r\n${body}`;
  } else text = `${head}\r\n`;
  return { req: { id, method, refused: null, bodyRefused: false, body, v10, xff }, text, closes };
}

/** Requests serve refuses (README: the same 4xx, never forwarded), each with the statuses it may get. */
function hostileRequest(r: R, id: string): { req: Omit<HReq, "complete">; text: string; closes: boolean } {
  const t = `/r/${id}`;
  const cases: [string, string, number[], boolean?][] = [
    ["POST", `POST ${t} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400]],
    ["POST", `POST ${t} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, [400]],
    ["POST", `POST ${t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, [400], true],
    ["POST", `POST ${t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n`, [400], true],
    ["GET", `GET ${t} HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n b\r\n\r\n`, [400]],
    ["GET", `GET ${t} HTTP/1.1\nHost: a\n\n`, [400]],
    ["GET", `GET ${t} HTTP/1.1\r\nHost : a\r\n\r\n`, [400]],
    ["GET", `GET ${t} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, [400]],
    ["GET", `GET ${t} HTTP/1.1\r\n\r\n`, [400]],
    ["GET", `GET ${t} HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n`, [417]],
    ["GET", `GET ${t} HTTP/2.0\r\nHost: a\r\n\r\n`, [505]],
    ["POST", `POST ${t} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n`, [501, 400]],
    ["POST", `POST ${t} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400]],
    ["POST", `POST ${t} HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n`, [400]],
    ["GET", `GET http://u@a${t} HTTP/1.1\r\nHost: a\r\n\r\n`, [400]],
    ["CONNECT", `CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nX-Id: ${id}\r\n\r\n`, [400, 501]],
    ["GET", `GET ${t}?${"a".repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`, [414]],
    ["GET", `GET ${t} HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(17000)}\r\n\r\n`, [431]],
    ["GET", `GET ${t} HTTP/1.1\r\nHost: a\r\nX\x00Y: 1\r\n\r\n`, [400]],
  ];
  const [method, text, statuses, bodyRefused] = r.pick(cases);
  return { req: { id, method, refused: statuses, bodyRefused: bodyRefused === true, body: "", v10: text.includes("HTTP/1.0"), xff: null }, text, closes: true };
}

// ---- the upstream servers ---------------------------------------------------------

/** What a server answered one request with. */
export interface Answer {
  id: string;
  status: number;        // 0: no final head (garbage, reset, FIN, never)
  body: string;          // the decoded body it sent (all of it)
  /** The response ends short of its framing (reset or FIN mid-body), or there is none: the proxy's 502/504 or a close. */
  short: boolean;
  never: boolean;
  /** The socket it went out on: its reads (how much of the answer the core took). */
  sock: SrvSock;
  /** Where the answer starts in the socket's stream, and whether it is the connection's first request. */
  start: number;
  reused: boolean;
}

/** The kernel's side of an upstream socket, as far as the server needs it. */
export interface SrvSock { input: Uint8Array; pos: number; peerClosed: boolean; life?: { faulted: boolean; timedOut: boolean; trapped: boolean; fd: number } }

export type Verdict = string | null;

/** Per iteration: every client's requests by id, and what the servers did with them. */
export class HttpWorld {
  readonly reqs = new Map<string, HReq>();
  readonly answers = new Map<string, Answer[]>();
  /** Attempts (request lines seen by servers) per id. */
  readonly attempts = new Map<string, Answer[]>();
  responses = 0;
  constructor(readonly rng: R, readonly clientAddrCheck: boolean) {}
}

/** A simulated upstream HTTP server on one socket the proxy connected. */
export class Server {
  private buf = "";
  private cur: { id: string; req: HReq; head: Map<string, string[]>; bodyEnd: number; att: Answer } | null = null;
  private served = 0;
  /** What it answered so far, for failure messages. */
  private readonly said: string[] = [];
  /** The server ended the connection (FIN or reset decided): no request may follow. */
  done = false;
  /** Its last answer never comes: nothing may follow on this connection either. */
  hung = false;
  /** A reset to deliver once the core has read this much of the stream. */
  resetAt = -1;

  constructor(private readonly w: HttpWorld, private readonly s: SrvSock, private readonly emit: (bytes: string) => void,
    private readonly fin: () => void) {}

  /** The core wrote these bytes to the server. */
  feed(data: Uint8Array): Verdict {
    this.buf += Buffer.from(data).toString("latin1");
    for (;;) {
      if (!this.cur) {
        const le = this.buf.indexOf("\r\n");
        if (le < 0) return null;
        const why = this.startRequest(this.buf.slice(0, le));
        if (why) return why;
      }
      const c = this.cur!;
      if (c.head.size === 0) {
        const he = this.buf.indexOf("\r\n\r\n");
        if (he < 0) return null;
        const why = this.checkHead(this.buf.slice(0, he + 2));
        if (why) return why;
        this.buf = this.buf.slice(he + 4);
      }
      const body = this.body();
      if (typeof body === "string" && body.startsWith("!")) return body.slice(1);
      if (body === null) return null;
      const [data, used] = body as [string, number];
      if (c.req.refused) return `the upstream got request ${c.id} (${JSON.stringify(c.req.method)}) whole, which serve refuses (${c.req.refused.join("/")})`;
      if (data !== c.req.body) return `request ${c.id}: the upstream got a body of ${data.length} bytes, the client sent ${c.req.body.length} (${JSON.stringify(data.slice(0, 40))} vs ${JSON.stringify(c.req.body.slice(0, 40))})`;
      this.buf = this.buf.slice(used);
      this.answer(c.att, c.req);
      this.cur = null;
      if (this.buf.length > 0 && (this.done || this.hung)) return `upstream fd ${this.s.life?.fd}: bytes after request ${c.id}, whose answer ends the connection or never comes`;
    }
  }

  private startRequest(line: string): Verdict {
    const fd = this.s.life?.fd;
    const m = /^([A-Z]+) (\S+) HTTP\/1\.1$/.exec(line);
    if (!m) return `upstream fd ${fd}: request line ${JSON.stringify(line.slice(0, 60))} (the proxy sends HTTP/1.1)`;
    const id = ID_RE.exec(m[2])?.[1];
    const req = id ? this.w.reqs.get(id) : undefined;
    if (!id || !req) return `upstream fd ${fd}: request line ${JSON.stringify(line.slice(0, 60))} names no client's request`;
    if (req.refused && !req.bodyRefused) return `request ${id} reached an upstream (fd ${fd}), and serve refuses it (${req.refused.join("/")}): ${JSON.stringify(line.slice(0, 60))}`;
    if (m[1] !== req.method) return `request ${id}: method ${m[1]} upstream, ${req.method} sent`;
    if (this.done || this.hung) return `request ${id} went to upstream fd ${fd}, whose server ${this.done ? "ended the connection" : "still owes an answer"} (one request at a time per connection; its answers: ${this.said.join("; ")})`;
    if (this.s.pos < this.s.input.length) return `request ${id} went to upstream fd ${fd} with ${this.s.input.length - this.s.pos} bytes of the previous answer unread (a connection shared by two requests)`;
    const att: Answer = { id, status: 0, body: "", short: true, never: false, sock: this.s, start: this.s.input.length, reused: this.served > 0 };
    const prev = this.w.attempts.get(id) ?? [];
    if (prev.length >= 2) return `request ${id} reached upstreams ${prev.length + 1} times (one retry at most)`;
    if (prev.length === 1) {
      const a = prev[0];
      const got = a.sock.pos > a.start;
      const idem = (req.method === "GET" || req.method === "HEAD") && req.body.length === 0;
      if (got) return `request ${id} retried after its first upstream (fd ${a.sock.life?.fd}) had sent ${a.sock.pos - a.start} response bytes the core read`;
      if (!a.reused && !idem) return `request ${id} (${req.method}, ${req.body.length}-byte body) retried although its first try went out on a fresh connection (fd ${a.sock.life?.fd}) and it is not idempotent`;
    }
    prev.push(att);
    this.w.attempts.set(id, prev);
    this.served++;
    this.cur = { id, req, head: new Map(), bodyEnd: 0, att };
    this.buf = this.buf.slice(line.length + 2);
    return null;
  }

  private checkHead(fields: string): Verdict {
    const c = this.cur!;
    const h = c.head;
    for (const l of fields.split("\r\n").slice(0, -1)) {
      const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?(.*)$/.exec(l);
      if (!m) return `request ${c.id}: upstream field line ${JSON.stringify(l.slice(0, 60))}`;
      const k = m[1].toLowerCase();
      h.set(k, [...(h.get(k) ?? []), m[2].trim()]);
    }
    h.set(":", []); // (non-empty: the head is parsed)
    for (const k of ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-hop"]) {
      if (h.has(k)) return `request ${c.id}: hop-by-hop field ${k} reached the upstream`;
    }
    const xff = h.get("x-forwarded-for");
    if (c.req.addressed !== false || c.req.xff) {
      if (!xff || xff.length !== 1) return `request ${c.id}: X-Forwarded-For ${JSON.stringify(xff)} upstream (one line expected)`;
      if (c.req.xff && !xff[0].startsWith(c.req.addressed !== false ? `${c.req.xff}, ` : c.req.xff)) return `request ${c.id}: X-Forwarded-For ${JSON.stringify(xff[0])} does not keep the client's ${c.req.xff}`;
      if (c.req.addressed !== false && !/(^|, )[0-9a-f.:]+$/.test(xff[0])) return `request ${c.id}: X-Forwarded-For ${JSON.stringify(xff[0])} does not end with the client's address`;
    }
    if (!h.get("via")?.some((v) => v.includes("wasm-reactor"))) return `request ${c.id}: no Via upstream`;
    if (!h.has("host")) return `request ${c.id}: no Host upstream`;
    const te = h.get("transfer-encoding"), cl = h.get("content-length");
    if (te && cl) return `request ${c.id}: both Transfer-Encoding and Content-Length upstream`;
    if (te && (te.length !== 1 || te[0] !== "chunked")) return `request ${c.id}: Transfer-Encoding ${te} upstream`;
    if (cl && (cl.length !== 1 || !/^\d+$/.test(cl[0]))) return `request ${c.id}: Content-Length ${cl} upstream`;
    return null;
  }

  /** The body so far: [decoded, bytes used] when complete, null when more is needed, "!why" when malformed. */
  private body(): [string, number] | null | string {
    const c = this.cur!, b = this.buf;
    const cl = c.head.get("content-length"), te = c.head.get("transfer-encoding");
    if (!te) {
      const n = cl ? Number(cl[0]) : 0;
      return b.length >= n ? [b.slice(0, n), n] : null;
    }
    let at = 0, out = "";
    for (;;) {
      const le = b.indexOf("\r\n", at);
      if (le < 0) return null;
      const m = /^([0-9a-fA-F]+)(;.*)?$/.exec(b.slice(at, le));
      if (!m) return `!request ${c.id}: the upstream got a bad chunk line ${JSON.stringify(b.slice(at, le).slice(0, 30))} (the proxy forwards only valid framing)`;
      const size = parseInt(m[1], 16);
      at = le + 2;
      if (size === 0) {
        for (;;) {
          const e = b.indexOf("\r\n", at);
          if (e < 0) return null;
          const l = b.slice(at, e);
          at = e + 2;
          if (l === "") return [out, at];
        }
      }
      if (b.length < at + size + 2) return null;
      if (b.slice(at + size, at + size + 2) !== "\r\n") return `!request ${c.id}: chunk data not followed by CRLF upstream`;
      out += b.slice(at, at + size);
      at += size + 2;
    }
  }

  /** The server's answer to a whole request: one of the ways a server may answer. */
  private answer(att: Answer, req: HReq): void {
    const r = this.w.rng, id = att.id;
    const head = req.method === "HEAD";
    const roll = r.int(100);
    const n = r.pick([0, 5, 300, 5000, 70000]);
    const body = bodyOf(id, n, "s");
    const close = r.chance(0.15);
    const hdr = (status: string, extra = "") => `HTTP/1.1 ${status}\r\nX-Id: ${id}\r\nServer: sim\r\n${close ? "Connection: close\r\n" : ""}${extra}`;
    const done = (status: number, sent: string, short: boolean) => {
      this.said.push(`${req.method} ${id} roll ${roll}${close ? " close" : ""}: ${status}${short ? " short" : ""}, ${sent.length} body bytes, stream at ${this.s.input.length}, core read ${this.s.pos}`);
      att.status = status; att.body = sent; att.short = short;
      (this.w.answers.get(id) ?? this.w.answers.set(id, []).get(id)!).push(att);
    };
    const closeAfter = () => { this.done = true; this.fin(); };
    if (roll < 35) { // Content-Length
      const st = r.chance(0.1) ? 500 : 200;
      this.emit(hdr(st === 500 ? "500 Oops" : "200 OK", `Content-Length: ${n}\r\n\r\n`) + (head ? "" : body));
      done(st, head ? "" : body, false);
      if (close) closeAfter();
    } else if (roll < 50) { // chunked
      this.emit(hdr("200 OK", "Transfer-Encoding: chunked\r\n\r\n") + (head ? "" : chunk(body, r)));
      done(200, head ? "" : body, false);
      if (close) closeAfter();
    } else if (roll < 57) { // close-delimited
      // (to a HEAD, a head without a length is whole: the close that follows must be announced, or the proxy may rightly reuse the connection)
      this.emit(`HTTP/1.1 200 OK\r\nX-Id: ${id}\r\n${head ? "Connection: close\r\n" : ""}\r\n${head ? "" : body}`);
      done(200, head ? "" : body, false);
      closeAfter();
    } else if (roll < 65) { // 1xx first
      this.emit(`${r.chance(0.5) ? "HTTP/1.1 100 Continue\r\n\r\n" : "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"}${hdr("201 Created", `Content-Length: ${n}\r\n\r\n`)}${head ? "" : body}`);
      done(201, head ? "" : body, false);
      if (close) closeAfter();
    } else if (roll < 72) { // no body whatever the framing says
      const st = r.chance(0.5) ? "204 No Content" : "304 Not Modified";
      this.emit(hdr(st, st.startsWith("304") && r.chance(0.5) ? `Content-Length: ${n}\r\n\r\n` : "\r\n"));
      done(Number(st.slice(0, 3)), "", false);
      if (close) closeAfter();
    } else if (roll < 78) { // a garbage head
      this.emit(r.pick(["HTTP/1.1 2x0 What\r\n\r\n", "HTTTP/1.1 200 OK\r\n\r\n", `HTTP/1.1 200 OK\r\nX-Id: ${id}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n`,
        `HTTP/1.1 200 OK\r\nX-Id: ${id}\r\n folded\r\n\r\n`, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", `HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n`, "\x00\x01garbage\r\n\r\n"]));
      done(0, "", true);
      closeAfter();
    } else if (roll < 84) { // reset or FIN before any byte
      done(0, "", true);
      this.done = true;
      if (r.chance(0.5)) this.resetAt = this.s.input.length; else this.fin();
    } else if (roll < 92 && !head && n > 0) { // the head, part of the body, then a reset or a FIN
      const cut = r.int(n);
      this.emit(hdr("200 OK", `Content-Length: ${n}\r\n\r\n`) + body.slice(0, cut));
      done(200, body.slice(0, cut), true);
      this.done = true;
      if (r.chance(0.5)) this.resetAt = this.s.input.length; else this.fin();
    } else if (roll < 96) { // never
      done(0, "", true);
      att.never = true;
      this.hung = true;
    } else {
      this.emit(hdr("200 OK", `Content-Length: ${n}\r\n\r\n`) + (head ? "" : body));
      done(200, head ? "" : body, false);
      if (close) closeAfter();
    }
    this.w.responses++;
  }
}

// ---- the clients' side --------------------------------------------------------------

interface Got { status: number; reason: string; headers: Map<string, string[]>; body: string; complete: boolean; interim: number[] }

/** Parses the responses a client got; bodyless(k): the k-th final answers a HEAD. A string: malformed. */
function parse(text: string, head: (k: number) => boolean): Got[] | string {
  const list: Got[] = [];
  let at = 0, interim: number[] = [];
  while (at < text.length) {
    const he = text.indexOf("\r\n\r\n", at);
    if (he < 0) {
      if (!text.startsWith("HTTP/1.1 ".slice(0, text.length - at), at) && !text.startsWith("HTTP/1.1 ", at)) return `stream byte ${at}: ${JSON.stringify(text.slice(at, at + 30))} is not a status line`;
      list.push({ status: 0, reason: "", headers: new Map(), body: "", complete: false, interim });
      return list;
    }
    const lines = text.slice(at, he).split("\r\n");
    const sl = /^HTTP\/1\.1 (\d{3}) ([\x20-\x7e]*)$/.exec(lines[0]);
    if (!sl) return `stream byte ${at}: status line ${JSON.stringify(lines[0].slice(0, 60))}`;
    const headers = new Map<string, string[]>();
    for (const l of lines.slice(1)) {
      const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([\x20-\x7e\t]*)$/.exec(l);
      if (!m) return `stream byte ${at}: header line ${JSON.stringify(l.slice(0, 60))}`;
      const k = m[1].toLowerCase();
      headers.set(k, [...(headers.get(k) ?? []), m[2].trim()]);
    }
    const status = Number(sl[1]);
    at = he + 4;
    if (status < 200) { interim.push(status); continue; }
    const g: Got = { status, reason: sl[2], headers, body: "", complete: true, interim };
    interim = [];
    list.push(g);
    const te = headers.get("transfer-encoding"), cl = headers.get("content-length");
    if (head(list.length - 1) || status === 204 || status === 304) continue;
    if (te) {
      if (te.join(",") !== "chunked" || cl) return `response ${list.length - 1}: Transfer-Encoding ${te} with Content-Length ${cl}`;
      for (;;) {
        const le = text.indexOf("\r\n", at);
        const m = le < 0 ? null : /^([0-9a-fA-F]+)(;.*)?$/.exec(text.slice(at, le));
        if (le < 0) { g.complete = false; return list; }
        if (!m) return `response ${list.length - 1}: chunk line ${JSON.stringify(text.slice(at, le).slice(0, 30))}`;
        const size = parseInt(m[1], 16);
        at = le + 2;
        if (size === 0) {
          for (;;) {
            const e = text.indexOf("\r\n", at);
            if (e < 0) { g.complete = false; return list; }
            const l = text.slice(at, e);
            at = e + 2;
            if (l === "") break;
          }
          break;
        }
        g.body += text.slice(at, at + size);
        if (text.length < at + size + 2) { g.complete = false; return list; }
        if (text.slice(at + size, at + size + 2) !== "\r\n") return `response ${list.length - 1}: chunk data not followed by CRLF`;
        at += size + 2;
      }
    } else if (cl) {
      if (cl.length !== 1 || !/^\d+$/.test(cl[0])) return `response ${list.length - 1}: Content-Length ${cl}`;
      const n = Number(cl[0]);
      g.body = text.slice(at, at + n);
      if (text.length < at + n) { g.complete = false; return list; }
      at += n;
    } else {
      // close-delimited: to the end of the stream (complete only if the proxy ended it: checked by the caller)
      g.body = text.slice(at);
      at = text.length;
      g.complete = false;
      (g as Got & { closeDelimited?: boolean }).closeDelimited = true;
      return list;
    }
  }
  return list;
}

export interface ClientEnd {
  /** The proxy closed the client connection, or shut it for writing. */
  ended: boolean;
  /** A fault, trap, timeout or shutdown cut the connection short: a prefix is right. */
  cut: boolean;
  /** The client sent its FIN after its bytes. */
  peerClosed: boolean;
}

const OWN = [502, 503, 504];

/** One client connection's answers against its requests and what the servers did with them. */
export function judgeClient(w: HttpWorld, reqs: HReq[], out: Uint8Array, end: ClientEnd): string | null {
  const text = Buffer.from(out).toString("latin1");
  const got = parse(text, (k) => k < reqs.length && reqs[k].method === "HEAD");
  if (typeof got === "string") return got;
  // A request whose upstream the fuzzer faulted (an injected reset, a
  // trap), that timed out mid-response, or whose server sent a head and
  // failed mid-body: any prefix of an answer, or none (the proxy closes;
  // what of the head it had queued may be lost).
  const excused = (q: HReq) => (w.attempts.get(q.id) ?? []).some((a) => a.sock.life?.faulted || a.sock.life?.trapped || a.sock.life?.timedOut || (a.status > 0 && a.short));
  const tried = (q: HReq) => (w.attempts.get(q.id) ?? []).map((a) => `upstream fd ${a.sock.life?.fd}${a.reused ? " (reused)" : ""}: `
    + `${a.never ? "never answered" : a.status ? `${a.status}${a.short ? " cut short" : ""}` : "no head"}, core read ${a.sock.pos - a.start} of ${a.sock.input.length - a.start}${a.sock.life?.faulted ? ", faulted" : ""}`).join("; ") || "it reached no upstream";
  let closed = false;
  for (let k = 0; k < got.length; k++) {
    const g = got[k];
    if (k >= reqs.length) return `response ${k} (${g.status}) answers no request: the client sent ${reqs.length}`;
    const q = reqs[k];
    const where = `response ${k} (to ${q.method} /r/${q.id})`;
    if (closed) return `${where} after a response that said Connection: close`;
    const conn = (g.headers.get("connection") ?? []).join(",").toLowerCase();
    const cd = (g as Got & { closeDelimited?: boolean }).closeDelimited === true;
    if (conn === "close" || q.refused) closed = true; // (nothing may follow it)
    if (cd && g.status !== 0) {
      if (conn !== "close") return `${where}: a body framed by the close without Connection: close`;
      if (!end.ended) return `${where}: a close-delimited body and the connection is still open (a stall?)`;
    }
    // (a body framed by the close is whole when the proxy closed, unless a fault may have closed it early)
    const complete = g.complete || (cd && end.ended && !end.cut && !excused(q));
    if (!complete && !end.ended) return `${where} cut short and the connection is still open (a stall?)`;
    const xid = g.headers.get("x-id");
    if (g.status === 0) {
      if (!end.cut && !excused(q) && !(w.answers.get(q.id) ?? []).some((a) => a.short)) return `${where}: a head cut short with no fault`;
      break;
    }
    if (xid) {
      if (xid.length !== 1 || xid[0] !== q.id) return `${where} carries X-Id ${xid}: another request's answer (mixed up or reordered)`;
      if (q.refused) return `${where}: an upstream's answer to a request serve refuses (${q.refused.join("/")})`;
      const answers = (w.answers.get(q.id) ?? []).filter((a) => a.status === g.status);
      if (!answers.length) return `${where}: status ${g.status}, the upstream answered ${(w.answers.get(q.id) ?? []).map((a) => a.status).join(", ") || "nothing"}`;
      if (complete) {
        if (!answers.some((a) => a.body === g.body)) return `${where}: a body of ${g.body.length} bytes (${JSON.stringify(g.body.slice(0, 30))}), the upstream sent ${answers.map((a) => a.body.length).join(" or ")}`;
      } else {
        if (!answers.some((a) => a.body.startsWith(g.body))) return `${where}: a truncated body that is not a prefix of the upstream's`;
        if (!end.cut && !excused(q) && !answers.some((a) => a.short)) return `${where}: cut short (${g.body.length} body bytes) with no fault and a whole answer upstream`;
        break;
      }
      if (q.v10 && g.interim.length) return `${where}: ${g.interim} sent to an HTTP/1.0 client`;
    } else {
      // (a bad chunk is found only as the body streams, after the connect: the upstream may fail first)
      const allowed = q.bodyRefused ? [...q.refused!, ...OWN] : q.refused ?? OWN;
      if (!allowed.includes(g.status)) return `${where}: the proxy's own ${g.status}, expected ${allowed.join(" or ")}${q.refused ? " (serve refuses it)" : ""}`;
      const ct = (g.headers.get("content-type") ?? []).join(",");
      const body = `${g.status} ${g.reason}\n`;
      if (ct !== "text/plain" || Number(g.headers.get("content-length")?.[0]) !== body.length) return `${where}: an error answer framed ${JSON.stringify([ct, g.headers.get("content-length")])}`;
      if (complete && q.method !== "HEAD" && g.body !== body) return `${where}: error body ${JSON.stringify(g.body)}`;
      if (q.refused && conn !== "close") return `${where}: ${g.status} for a refused request without Connection: close`;
      if (!complete) break;
    }
  }
  if (end.cut) return null;
  const answered = got.filter((g) => g.complete || end.ended).length;
  const pending = reqs.slice(answered).filter((q) => q.complete);
  const lastCut = got.length > 0 && !got[got.length - 1].complete && !((got[got.length - 1] as Got & { closeDelimited?: boolean }).closeDelimited);
  if (end.ended) {
    if (pending.length && !closed && !lastCut && !excused(pending[0])) return `request ${pending[0].id} (${pending[0].method}) is unanswered and the proxy closed, with no Connection: close before (${tried(pending[0])})`;
    if (!pending.length && !closed && !lastCut && !end.peerClosed && reqs.every((q) => q.complete)) return `after ${answered} response(s) the proxy ended a keep-alive connection the client still holds`;
  } else {
    if (pending.length) {
      const q = pending[0];
      const hung = (w.answers.get(q.id) ?? []).some((a) => a.never);
      if (!hung && !excused(q)) return `request ${q.id} (${q.method}) is unanswered and the connection still open (a stall?): ${tried(q)}`;
    } else if (closed) return `after a response that said Connection: close the connection is still open`;
    else if (end.peerClosed) return `the client sent its FIN after ${reqs.length} request(s), all answered, and the connection is still open`;
  }
  return null;
}
