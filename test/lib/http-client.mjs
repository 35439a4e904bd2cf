// A raw HTTP/1.1 client for the server tests: it sends exactly the bytes it
// is given (no header added, no normalisation) and parses responses off the
// byte stream one at a time, so a test can check pipelining, framing and
// what happens to the connection afterwards.
//
// Response framing follows RFC 9112 §6.3 as a client must: no body after
// HEAD, 1xx, 204 and 304; otherwise Content-Length bytes; a response with
// neither Content-Length nor Transfer-Encoding runs to EOF. The server never
// sends chunked responses, so Transfer-Encoding in a response is an error.
import { connect as netConnect } from "node:net";

/** Default bound on any single wait; each wait names what it was waiting for. */
export const WAIT_MS = 5000;

// Every open connection, so a file's test.after can end them all even when
// a failed assertion skipped a close (an open socket keeps the process alive).
const live = new Set();

/** Destroys every connection still open. */
export function closeAllConns() {
  for (const c of live) c.sock.destroy();
  live.clear();
}

export class HttpConn {
  /** Connects to address:port (default 127.0.0.1); resolves once the connection is open. */
  static open(port, { noDelay = true, timeoutMs = WAIT_MS, address = "127.0.0.1" } = {}) {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: address, port });
      const timer = setTimeout(() => { sock.destroy(); reject(new Error(`connect to :${port} timed out after ${timeoutMs} ms`)); }, timeoutMs);
      sock.once("error", (e) => { clearTimeout(timer); reject(e); });
      sock.once("connect", () => {
        clearTimeout(timer);
        sock.removeAllListeners("error");
        sock.setNoDelay(noDelay);
        resolve(new HttpConn(sock));
      });
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.ended = false;      // the server sent FIN
    this.error = null;       // ECONNRESET and friends
    this.closed = false;     // the socket is fully closed
    this.wake = null;
    live.add(this);
    sock.on("data", (d) => { this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d; this.notify(); });
    sock.on("end", () => { this.ended = true; this.notify(); });
    sock.on("error", (e) => { this.error = e; this.notify(); });
    sock.on("close", () => { this.closed = true; live.delete(this); this.notify(); });
  }

  notify() { const w = this.wake; this.wake = null; w?.(); }

  /** Resolves on the next data/end/error/close event, or rejects after ms. */
  next(ms, what) {
    if (this.ended || this.error || this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.wake = null; reject(new Error(`timed out after ${ms} ms waiting for ${what}`)); }, ms);
      this.wake = () => { clearTimeout(timer); resolve(); };
    });
  }

  /** Writes bytes (string as latin1, or Buffer); resolves when handed to the kernel. */
  write(bytes) {
    const b = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes;
    return new Promise((resolve, reject) => this.sock.write(b, (e) => (e ? reject(e) : resolve())));
  }

  /**
   * Reads one response. `method` is the request's method (HEAD responses have
   * no body). Rejects if the connection ends first or nothing complete
   * arrives within timeoutMs.
   */
  async response({ method = "GET", timeoutMs = WAIT_MS } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = parseResponse(this.buf, method, this.ended || this.closed);
      if (r) { this.buf = this.buf.subarray(r.length); return r.response; }
      if (this.ended || this.closed || this.error) {
        const why = this.error ? `error ${this.error.code}` : "EOF";
        throw new Error(`${why} before a complete response; have ${this.buf.length} bytes: ${JSON.stringify(this.buf.subarray(0, 200).toString("latin1"))}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no complete response within ${timeoutMs} ms; have ${this.buf.length} bytes: ${JSON.stringify(this.buf.subarray(0, 200).toString("latin1"))}`);
      await this.next(left, "a response");
    }
  }

  /**
   * Waits until the server closes its side. Resolves with
   * { eof, reset, extra } (extra: bytes that arrived and were not parsed),
   * or rejects after timeoutMs if the connection is still open.
   */
  async closedByServer(timeoutMs = WAIT_MS) {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && !this.error && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the server did not close the connection within ${timeoutMs} ms`);
      await this.next(left, "the server to close the connection");
    }
    const extra = this.buf;
    this.buf = Buffer.alloc(0);
    return { eof: this.ended, reset: this.error?.code === "ECONNRESET", extra };
  }

  /** True if nothing arrived and the connection stayed open for ms. */
  async staysOpen(ms) {
    const before = this.buf.length;
    try { await this.next(ms, "quiet"); } catch { /* timed out: nothing happened */ }
    return !this.ended && !this.error && !this.closed && this.buf.length === before;
  }

  close() { this.sock.destroy(); }
}

/**
 * Parses one response at the start of buf. Returns { response, length } or
 * null if buf holds less than a complete response. `eof`: no more bytes will
 * come (completes a body that runs to EOF).
 */
export function parseResponse(buf, method = "GET", eof = false) {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString("latin1");
  const [statusLine, ...lines] = head.split("\r\n");
  const m = /^HTTP\/(\d\.\d) (\d{3}) (.*)$/.exec(statusLine);
  if (!m) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
  const status = Number(m[2]);
  const headers = {};          // lower-case name -> value (last one wins)
  const rawHeaders = [];       // [name, value] as sent, in order
  for (const line of lines) {
    const c = line.indexOf(":");
    if (c <= 0) throw new Error(`bad header line ${JSON.stringify(line)}`);
    const name = line.slice(0, c), value = line.slice(c + 1).trim();
    rawHeaders.push([name, value]);
    headers[name.toLowerCase()] = value;
  }
  if (headers["transfer-encoding"] !== undefined) throw new Error("unexpected Transfer-Encoding in a response");
  const bodyStart = end + 4;
  let bodyLen;
  const noBody = method === "HEAD" || status < 200 || status === 204 || status === 304;
  if (noBody) bodyLen = 0;
  else if (headers["content-length"] !== undefined) {
    if (!/^\d+$/.test(headers["content-length"])) throw new Error(`bad Content-Length ${headers["content-length"]}`);
    bodyLen = Number(headers["content-length"]);
  } else {
    if (!eof) return null;     // delimited by close
    bodyLen = buf.length - bodyStart;
  }
  if (buf.length < bodyStart + bodyLen) return null;
  const body = Buffer.from(buf.subarray(bodyStart, bodyStart + bodyLen));
  return {
    response: { version: m[1], status, reason: m[3], headers, rawHeaders, body, head },
    length: bodyStart + bodyLen,
  };
}

/** Counts header lines named `name` (case-insensitive) in a response. */
export function headerCount(res, name) {
  return res.rawHeaders.filter(([n]) => n.toLowerCase() === name.toLowerCase()).length;
}

/**
 * One connection, one write, `methods.length` responses (one per method
 * given, in order). Returns { responses, conn } with the connection still
 * open so the caller can check what happens next; the caller closes it.
 */
export async function exchange(port, bytes, { methods = ["GET"], timeoutMs = WAIT_MS, address } = {}) {
  const conn = await HttpConn.open(port, { address });
  await conn.write(bytes);
  const responses = [];
  for (const method of methods) responses.push(await conn.response({ method, timeoutMs }));
  return { responses, conn };
}

/** A GET (or other method) for `path` with Host and extra header lines. */
export function get(path, { method = "GET", headers = [], version = "1.1", host = "t" } = {}) {
  const lines = [`${method} ${path} HTTP/${version}`];
  if (host !== null) lines.push(`Host: ${host}`);
  lines.push(...headers);
  return lines.join("\r\n") + "\r\n\r\n";
}

/** One request on a fresh connection (to opts.address, default 127.0.0.1); returns the response and closes. */
export async function fetchOne(port, path, opts = {}) {
  const { responses, conn } = await exchange(port, get(path, opts), { methods: [opts.method ?? "GET"], address: opts.address });
  conn.close();
  return responses[0];
}

/** Sleeps ms (for pacing writes; never for asserting timings). */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Parses a multipart/byteranges response (RFC 9110 §14.6) strictly: the
 * head's Content-Type names the boundary; the body is, per part, CRLF
 * "--" boundary CRLF, header lines, CRLF, then exactly the bytes its
 * Content-Range names; then CRLF "--" boundary "--" CRLF and nothing else.
 * Throws on any deviation. Returns { boundary, parts: [{ type, first,
 * last, size, data }] }.
 */
export function parseMultipart(res) {
  const m = /^multipart\/byteranges; boundary=([0-9A-Za-z'()+_,.\/:=?-]{1,70})$/.exec(res.headers["content-type"] ?? "");
  if (!m) throw new Error(`not multipart/byteranges: Content-Type ${JSON.stringify(res.headers["content-type"])}`);
  const boundary = m[1];
  const body = res.body;
  const delim = Buffer.from(`\r\n--${boundary}`, "latin1");
  const parts = [];
  let at = 0;
  for (;;) {
    if (!body.subarray(at, at + delim.length).equals(delim)) throw new Error(`no delimiter at body byte ${at}`);
    at += delim.length;
    const tail = body.subarray(at, at + 2).toString("latin1");
    if (tail === "--") {
      if (body.subarray(at + 2).toString("latin1") !== "\r\n") throw new Error("bytes after the closing delimiter, or no CRLF");
      return { boundary, parts };
    }
    if (tail !== "\r\n") throw new Error(`delimiter at ${at} not followed by CRLF`);
    at += 2;
    const end = body.indexOf("\r\n\r\n", at - 2);
    if (end < 0) throw new Error(`unterminated part header at ${at}`);
    const headers = {};
    if (end > at - 2) {
      for (const line of body.subarray(at, end).toString("latin1").split("\r\n")) {
        const c = line.indexOf(":");
        if (c <= 0) throw new Error(`bad part header line ${JSON.stringify(line)}`);
        headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
      }
    }
    const r = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(headers["content-range"] ?? "");
    if (!r) throw new Error(`part without a valid Content-Range: ${JSON.stringify(headers)}`);
    const first = Number(r[1]), last = Number(r[2]), size = Number(r[3]);
    at = end + 4;
    const data = body.subarray(at, at + last - first + 1);
    if (data.length !== last - first + 1) throw new Error(`part ${first}-${last} cut short`);
    at += data.length;
    parts.push({ type: headers["content-type"], first, last, size, data: Buffer.from(data) });
  }
}
