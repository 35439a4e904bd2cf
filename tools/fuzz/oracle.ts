// The fuzzer's reference model of the HTTP server (issue 8, "the fuzzer
// judges responses"): for the bytes a client sent on one connection, the
// responses the server must answer with, in order, and whether it closes.
// Written from RFC 9110/9112 and the README's promises, NOT from the core:
// it parses the requests itself (a strict RFC 9112 reading) and looks the
// paths up in the simulated kernel's file table (files.ts).
//
// Where the model is exact: every request whose bytes it reads with
// certainty (the fuzzer's vocabulary, and mutations that still parse one way
// only). Each expected response names its status (or the few statuses an RFC
// leaves to the server, e.g. several errors in one head), the headers that
// matter (Content-Length, Connection: close / keep-alive, Content-Range for
// 206 and 416, Allow for 405, Location for 301), the body length, an optional
// `100 Continue` before it, and whether the connection ends after it.
//
// Where it is not (a mutation made bytes whose reading an RFC leaves open:
// obs-fold, odd bytes in a method or a header name, an empty Host, a Content-
// Length list, dot segments at the end...), the request is "grey": from it
// on, the documented outcome set is: well-formed HTTP/1.1 responses (exact
// framing) with statuses the server uses, and the server may close after any
// of them. Never "anything".
//
// The judge (judge()) parses what the core wrote (parseResponses(), also
// independent of the core) and compares; the first difference is returned as
// a message naming the request index, expected vs actual.
//
// (Over 500 lines: one model, read top to bottom in the order a server
// decides: request parsing and framing, static files, response parsing,
// judging. Split, each part would need the others' types and rules.)

export interface FileInfo { kind: "file"; size: number; br: boolean; gz: boolean }
export type Stat = FileInfo | { kind: "dir" } | { kind: "none" };

/** What the model knows of the simulated kernel: its files and options. */
export interface Env {
  stat(path: string): Stat;
  /** OP_LIST's answer for a directory: a body length, or null (ENOENT). */
  list(path: string): number | null;
  /** A path whose open failed by an injected fault (EMFILE): its answers may be 404. */
  faulted(path: string): boolean;
  cors: boolean; listing: boolean; precompressed: boolean;
  maxLine: number; maxHeader: number; maxHeaders: number; maxBody: number;
}

/** One acceptable answer. bodyLen null: not predicted (listing, redirect, 416 text). */
export interface Outcome { status: number; bodyLen: number | null; contentRange?: string; multipart?: boolean; location?: string; simple?: boolean; file?: boolean }

export interface Expected {
  index: number;
  line: string;            // the request line, for messages
  head: boolean | null;    // HEAD: no body whatever the Content-Length (null: an error before the method counts)
  /** The acceptable answers, given the response's own ETag (an opaque validator the server picks). */
  outcomes: (etag: string | undefined) => Outcome[];
  close: boolean;          // the server ends the connection after this response
  keepAliveHeader: boolean; // HTTP/1.0 keep-alive: confirmed by `Connection: keep-alive`
  mayContinue: boolean;    // a `100 Continue` may come first
}

export interface Model {
  responses: Expected[];
  /** After the last expected response: "close" (the server must end the stream), "open" (it waits), "grey". */
  tail: "close" | "open" | "grey";
  greyWhy?: string;
}

const enc = (s: string) => Buffer.from(s, "latin1");
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]);
/** Every status the server may send, for grey requests. */
export const SERVER_STATUSES = new Set([100, 200, 204, 206, 301, 304, 400, 403, 404, 405, 408, 412, 413, 414, 416, 417, 431, 500, 501, 503, 505]);

class Grey extends Error {}

// ---- requests -----------------------------------------------------------------

/** The model for everything `input` holds; `eof`: the client closes after sending it. */
export function model(input: Uint8Array, eof: boolean, env: Env): Model {
  const text = Buffer.from(input.buffer, input.byteOffset, input.length).toString("latin1");
  const responses: Expected[] = [];
  let at = 0;
  try {
    for (;;) {
      if (at >= text.length) return { responses, tail: eof ? "close" : "open" };
      const r = oneRequest(text, at, env, responses.length);
      if (r === null) return { responses, tail: eof ? "close" : "open" }; // incomplete: waits, or abandoned at EOF
      responses.push(r.expected);
      if (r.expected.close) return { responses, tail: "close" };
      at = r.end;
    }
  } catch (e) {
    if (!(e instanceof Grey)) throw e;
    return { responses, tail: "grey", greyWhy: `request ${responses.length}: ${e.message}` };
  }
}

interface Head { method: string; target: string; v10: boolean; fields: Map<string, string[]>; end: number; line: string }

function grey(why: string): never { throw new Grey(why); }

/** Parses one request at `at`: its expected answer and where the next starts, or null if incomplete. */
function oneRequest(text: string, at: number, env: Env, index: number): { expected: Expected; end: number } | null {
  if (text[at] === "\r" || text[at] === "\n") grey("empty line before a request line (RFC 9112 §2.2 lets the server skip it or not)");
  const errors = new Set<number>();
  const lineEnd = text.indexOf("\n", at);
  const lineLen = (lineEnd < 0 ? text.length : lineEnd + 1) - at;
  if (Math.abs(lineLen - env.maxLine) < 8) grey("request line at the length limit");
  if (lineEnd < 0) {
    if (lineLen > env.maxLine) return { expected: errorOnly(index, text.slice(at, at + 40), 414), end: text.length };
    return null;
  }
  if (lineLen > env.maxLine) return { expected: errorOnly(index, text.slice(at, at + 40), 414), end: lineEnd + 1 };
  const headEnd = text.indexOf("\r\n\r\n", at);
  const bareLf = /(^|[^\r])\n/.exec(text.slice(at, headEnd < 0 ? text.length : headEnd + 4));
  const lineRaw = text.slice(at, lineEnd + 1);
  const line = lineRaw.replace(/\r?\n$/, "");
  if (bareLf) return { expected: errorOnly(index, line, 400), end: text.length };
  if (headEnd < 0) {
    if (text.length - at > env.maxHeader - 64) grey("incomplete head near the header size limit");
    // A server may refuse a head at its first bad byte, before it is complete.
    const part = text.slice(at);
    if (/[^\x20-\x7e\r\n\t]|\r(?!\n|$)/.test(part) || /[ \t]\r?$|\r\n[ \t]/.test(part)) grey("a bad byte in an incomplete head");
    return null;
  }
  const headLen = headEnd + 4 - at;
  if (Math.abs(headLen - env.maxHeader) < 64) grey("head at the size limit");
  if (headLen > env.maxHeader) errors.add(431);
  // request-line = method SP request-target SP HTTP-version
  const m = /^([^ ]*) ([^ ]*) ([^ ]*)$/.exec(line);
  let method = "", target = "", v10 = false;
  if (!m || m[1] === "" || m[2] === "") errors.add(400);
  else {
    [, method, target] = m;
    if (/[\x00-\x1f\x7f]/.test(line)) errors.add(400);
    if (!TCHAR.test(method)) grey(`method ${JSON.stringify(method)} is not a token`);
    if (/[\x80-\xff]/.test(target)) grey("obs-text in the request-target");
    const v = /^HTTP\/(\d)\.(\d)$/.exec(m[3]);
    if (!v) errors.add(400);
    else if (v[1] !== "1") errors.add(505);
    else if (v[2] !== "0" && v[2] !== "1") grey(`HTTP/1.${v[2]}`);
    else v10 = v[2] === "0";
    if (v && v[1] === "1" && !KNOWN_METHODS.has(method) && TCHAR.test(method)) errors.add(501);
  }
  // header fields
  const fields = new Map<string, string[]>();
  const lines = text.slice(lineEnd + 1, headEnd + 2).split("\r\n").slice(0, -1);
  if (lines.length > env.maxHeaders) errors.add(431);
  if (Math.abs(lines.length - env.maxHeaders) < 2) grey("field count at the limit");
  for (const l of lines) {
    if (l[0] === " " || l[0] === "\t") grey("obs-fold");
    const colon = l.indexOf(":");
    const name = colon < 0 ? l : l.slice(0, colon);
    if (colon <= 0 || !TCHAR.test(name)) {
      if (/[ \t]$/.test(name) && TCHAR.test(name.trimEnd())) { errors.add(400); continue; } // RFC 9112 §5.1: must reject
      grey(`field name ${JSON.stringify(name.slice(0, 20))}`);
    }
    const value = l.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) { errors.add(400); continue; }
    const k = name.toLowerCase();
    fields.set(k, [...(fields.get(k) ?? []), value]);
  }
  // A field sent twice: RFC 9110 §5.3 lets a recipient combine a list
  // field, and leaves a singleton one (Range, If-Range, Host...) to the
  // server (400 or not). Accept-Encoding is a list.
  for (const [k, v] of fields) if (v.length > 1 && k !== "accept-encoding" && k !== "host") grey(`${v.length} ${k} fields`);
  const head: Head = { method, target, v10, fields, end: headEnd + 4, line };
  const one = (k: string): string | undefined => {
    const v = fields.get(k);
    return v?.join(", ");
  };
  // framing (RFC 9112 §6)
  const host = fields.get("host");
  // RFC 9112 §3.2: exactly one Host in HTTP/1.1, never two; a value that is not a plain authority is grey.
  if (m && !errors.has(505)) {
    if (host && host.length > 1) errors.add(400);
    else if (host && !/^[A-Za-z0-9.\-]+(:\d*)?$/.test(host[0])) grey(`Host ${JSON.stringify(host[0])}`);
    else if (!v10 && !host) errors.add(400);
  }
  const te = one("transfer-encoding");
  const cl = one("content-length");
  let chunked = false, length = 0;
  if (te !== undefined) {
    if (te === "") errors.add(400);
    else if (/,/.test(te)) grey("a Transfer-Encoding list");
    else if (te.toLowerCase() === "chunked") chunked = true;
    else if (TCHAR.test(te)) errors.add(501);
    else grey(`Transfer-Encoding ${JSON.stringify(te)}`);
    if (v10 || cl !== undefined) errors.add(400);
  } else if (cl !== undefined) {
    if (/,/.test(cl)) grey("a Content-Length list");
    if (!/^\d+$/.test(cl)) errors.add(400);
    else if (cl.length > 15) grey("a huge Content-Length");
    else length = Number(cl);
  }
  if (errors.size > 0) return { expected: errorOnly(index, line, ...errors), end: text.length };
  const tokens = (k: string) => (fields.get(k) ?? []).join(",").toLowerCase().split(",").map(ows);
  const conn = tokens("connection");
  let close = conn.includes("close") || (v10 && !conn.includes("keep-alive"));
  const served = method === "GET" || method === "HEAD" || (env.cors && method === "OPTIONS");
  if (!served) return { expected: errorOnly(index, line, 405), end: text.length };
  const expect = fields.get("expect");
  if (expect) {
    if (expect.length !== 1 || expect[0] === "") grey("Expect");
    // A list (RFC 9110 10.1.1: #expectation), whose empty elements a
    // recipient must accept (5.6.1): ",100-continue" is 100-continue.
    const members = expect[0].split(",").map((m) => ows(m).toLowerCase()).filter((m) => m !== "");
    if (members.length > 1 && members.every((m) => m === "100-continue")) grey("Expect repeated");
    if (members.length !== 1 || members[0] !== "100-continue") return { expected: errorOnly(index, line, 417), end: text.length };
  }
  const hasBody = chunked || length > 0;
  const mayContinue = !!expect && !v10 && hasBody;
  // the body: read and discarded, then the request is served
  let end = head.end;
  if (chunked) {
    const r = chunkedEnd(text, end, env.maxBody);
    if (r === null) return null;
    if (r < 0) return { expected: { ...errorOnly(index, line, -r), mayContinue: mayContinue && (-r === 400 || -r === 413) }, end: text.length };
    end = r;
  } else if (length > 0) {
    if (length > env.maxBody) return { expected: errorOnly(index, line, 413), end: text.length };
    if (text.length - end < length) return null;
    end += length;
  }
  const isHead = method === "HEAD";
  if (method !== "OPTIONS") {
    // A target refused as a path is an error that ends the connection (after the body was read).
    const n = normalize(target);
    if (n === 400) return { expected: { ...errorOnly(index, line, 400), head: isHead, mayContinue }, end };
  }
  const outcomes = method === "OPTIONS" ? () => [{ status: 204, bodyLen: 0 }] : staticOutcomes(head, env, one);
  return {
    expected: { index, line, head: isHead, outcomes, close, keepAliveHeader: v10 && !close, mayContinue },
    end,
  };
}

function errorOnly(index: number, line: string, ...statuses: number[]): Expected {
  return {
    index, line, head: line.startsWith("HEAD ") ? null : false, close: true, keepAliveHeader: false, mayContinue: false,
    outcomes: () => statuses.map((status) => ({ status, bodyLen: null, simple: true })),
  };
}

/** Where a chunked body ends (RFC 9112 §7.1), null if incomplete, -status if refused. */
function chunkedEnd(text: string, at: number, maxBody: number): number | null {
  let total = 0;
  // A line of the chunked framing (size, trailer) that holds a bare LF, or a
  // byte no such line may: the server may refuse it at that byte. Grey.
  const oddLine = (from: number) => {
    const eol = text.indexOf("\r\n", from);
    const l = text.slice(from, eol < 0 ? text.length : eol).replace(/\r$/, ""); // a CR at the very end: its LF may follow
    if (/[^\x20-\x7e\t]/.test(l)) grey(`a chunked-framing line ${JSON.stringify(l.slice(0, 20))}`);
  };
  for (;;) {
    oddLine(at);
    const eol = text.indexOf("\r\n", at);
    if (eol < 0) { if (/[^0-9a-fA-F;=a-z]/.test(text.slice(at))) grey("chunk size line"); return null; }
    const m = /^([0-9a-fA-F]+)(;[a-z]+(=[a-z0-9]+)?)?$/.exec(text.slice(at, eol));
    if (!m) grey(`chunk line ${JSON.stringify(text.slice(at, Math.min(eol, at + 20)))}`);
    if (m[1].length > 6) grey("a huge chunk");
    const size = parseInt(m[1], 16);
    total += size;
    if (total > maxBody) return -413;
    at = eol + 2;
    if (size === 0) {
      // trailer section, then the empty line
      for (;;) {
        oddLine(at);
        const e = text.indexOf("\r\n", at);
        if (e < 0) return null;
        const l = text.slice(at, e);
        at = e + 2;
        if (l === "") return at;
        if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+: ?[\x20-\x7e]*$/.test(l)) grey("trailer field");
      }
    }
    // The CRLF after the data: refused at its first wrong byte, before the rest arrives.
    if (text.length > at + size && text[at + size] !== "\r") return -400;
    if (text.length > at + size + 1 && text[at + size + 1] !== "\n") return -400;
    if (text.length < at + size + 2) return null;
    at += size + 2;
  }
}

// ---- static files -------------------------------------------------------------

/** Target -> relative path (README: decoded once, dot segments resolved, refusals), or a status. */
function normalize(target: string): { path: string; slash: boolean } | number {
  if (target[0] !== "/") { if (target === "*" || /^https?:/i.test(target)) grey("asterisk or absolute form"); return 400; }
  const raw = target.split(/[?#]/, 1)[0];
  const segs = raw.split("/").slice(1);
  const slash = raw.endsWith("/");
  if (slash) segs.pop();
  const out: string[] = [];
  for (const seg of segs) {
    let d = "";
    for (let i = 0; i < seg.length; i++) {
      if (seg[i] !== "%") { d += seg[i]; continue; }
      const h = seg.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(h)) return 400;
      d += String.fromCharCode(parseInt(h, 16));
      i += 2;
    }
    if (/[\x00-\x1f\x7f\\/]/.test(d)) return 400;
    if (d === "" || d === "." || d === "..") grey("empty or dot segments"); // resolved by RFC 3986 §5.2.4: not in the vocabulary
    if (/[\x80-\xff]/.test(d)) grey("non-ASCII path");
    out.push(d);
  }
  if (out.some((s) => s.startsWith("."))) return 404; // dotfiles hidden
  return { path: out.join("/"), slash };
}

const NOT_FOUND: Outcome = { status: 404, bodyLen: null, simple: true };
/** An open that failed for want of fds (the fuzzer's EMFILE): a shortage, answered 503 with Retry-After, never a 404. */
const UNAVAILABLE: Outcome = { status: 503, bodyLen: null, simple: true };

function staticOutcomes(h: Head, env: Env, one: (k: string) => string | undefined): (etag: string | undefined) => Outcome[] {
  const n = normalize(h.target);
  if (typeof n === "number") return () => [{ status: n, bodyLen: null, simple: true }];
  const open = n.slash ? (n.path ? `${n.path}/index.html` : "index.html") : n.path || ".";
  const st = env.stat(open);
  const fault = env.faulted(open) ? [UNAVAILABLE] : [];
  if (st.kind === "none") {
    if (env.listing && n.slash) {
      const l = env.list(n.path || ".");
      return () => [l === null ? NOT_FOUND : { status: 200, bodyLen: l }, ...fault];
    }
    return () => [NOT_FOUND];
  }
  if (st.kind === "dir") {
    if (n.slash) return () => [NOT_FOUND, ...fault];
    const loc = h.target.replace(/^([^?]*)/, "$1/");
    return () => [{ status: 301, bodyLen: 0, location: loc }, ...fault];
  }
  // Representations the server may pick (README --precompressed): the file, or a sidecar it has.
  const reps: { size: number; sidecar: boolean }[] = [{ size: st.size, sidecar: false }];
  if (env.precompressed && one("accept-encoding") !== undefined) {
    for (const [bit, ext] of [[st.br, ".br"], [st.gz, ".gz"]] as const) {
      const s = env.stat(open + ext);
      if (bit && s.kind === "file") reps.push({ size: s.size, sidecar: true });
    }
  }
  const inm = one("if-none-match"), ims = one("if-modified-since");
  const range = h.method === "GET" ? one("range") : undefined;
  const ifRange = one("if-range");
  if (one("if-match") !== undefined || one("if-unmodified-since") !== undefined) grey("If-Match / If-Unmodified-Since");
  if (ims !== undefined && inm === undefined && Date.parse(ims) > 1.5e12) grey("an If-Modified-Since after the files' times");
  if (inm !== undefined) inmList(inm);
  if (range !== undefined) rangeOutcomes(range, 1, false); // its grey cases do not depend on the size: found now, not while judging
  if (range !== undefined && ifRange !== undefined && !ifRange.startsWith("\"")) grey("If-Range with a date or a weak tag");
  return (etag) => {
    const all: Outcome[] = [...fault];
    for (const rep of reps) {
      // RFC 9110 §13.2.2: If-None-Match, else If-Modified-Since (files are newer than 1994: never 304 by date)
      if (inm !== undefined && etag !== undefined && inmMatches(inm, etag)) { all.push({ status: 304, bodyLen: 0, file: true }); continue; }
      if (range === undefined) { all.push({ status: 200, bodyLen: rep.size, file: true }); continue; }
      if (ifRange !== undefined) {
        if (etag === undefined || etag.startsWith("W/") || ifRange !== etag) { all.push({ status: 200, bodyLen: rep.size, file: true }); continue; }
      }
      all.push(...rangeOutcomes(range, rep.size, rep.sidecar));
    }
    return all;
  };
}

/** RFC 9110 §13.1.2: weak comparison against any listed tag, or `*`. */
function inmMatches(inm: string, etag: string): boolean {
  const list = inmList(inm);
  return list === "*" || list.includes(etag.replace(/^W\//, ""));
}

/** If-None-Match's opaque tags (weak or not), or "*"; anything else is grey (checked while modelling). */
function inmList(inm: string): string[] | "*" {
  if (ows(inm) === "*") return "*";
  const list = inm.split(",").map((t) => ows(t).replace(/^W\//, ""));
  if (list.some((t) => !/^"[\x21\x23-\x7e\x80-\xff]*"$/.test(t))) grey(`If-None-Match ${JSON.stringify(inm)}`);
  return list;
}

/** RFC 9110 §14 and the README's rules (merge, 16 parts, 200 specs, malformed: whole file). */
/** Strips OWS (SP and HTAB, RFC 9110 5.6.3) only: String#trim also strips
 * NBSP and other Unicode spaces, which an HTTP parser must not. */
function ows(s: string): string { return s.replace(/^[ \t]+|[ \t]+$/g, ""); }

function rangeOutcomes(range: string, size: number, sidecar: boolean): Outcome[] {
  const whole: Outcome = { status: 200, bodyLen: size, file: true };
  const m = /^bytes=(.*)$/i.exec(range);
  if (!m) { if (/^bytes/i.test(range)) grey("Range unit"); return [whole]; }
  // 1#range-spec allows OWS only around the commas (RFC 9110 5.6.1): space
  // before the first spec or after the last makes the field invalid, which
  // a server may ignore (200) or read leniently (206): either is right.
  if (/^[ \t]|[ \t]$/.test(m[1])) grey("whitespace around the range-set");
  const specs = m[1].split(",").map(ows);
  if (specs.length > 200) return [whole];
  const sat: [number, number][] = [];
  for (const s of specs) {
    if (s === "") grey("empty range-spec");
    const r = /^(\d*)-(\d*)$/.exec(s);
    if (!r || (r[1] === "" && r[2] === "")) return [whole];
    if (r[1].length > 12 || r[2].length > 12) grey("huge range numbers");
    if (r[1] === "") { // suffix
      const k = Number(r[2]);
      if (k > 0 && size > 0) sat.push([Math.max(0, size - k), size - 1]);
      continue;
    }
    const a = Number(r[1]), b = r[2] === "" ? size - 1 : Math.min(Number(r[2]), size - 1);
    if (r[2] !== "" && Number(r[2]) < a) return [whole];
    if (a < size) sat.push([a, b]);
  }
  if (size === 0) return [whole, { status: 416, bodyLen: null, contentRange: `bytes */0` }];
  if (sat.length === 0) return [{ status: 416, bodyLen: null, contentRange: `bytes */${size}` }];
  sat.sort((x, y) => x[0] - y[0]);
  const merged: [number, number][] = [];
  for (const r of sat) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else merged.push([...r]);
  }
  if (merged.length > 16) return [whole];
  if (merged.length === 1) {
    const [a, b] = merged[0];
    return [{ status: 206, bodyLen: b - a + 1, contentRange: `bytes ${a}-${b}/${size}`, file: true }];
  }
  if (sidecar) return [whole];
  return [{ status: 206, bodyLen: null, multipart: true }];
}

// ---- responses ----------------------------------------------------------------

export interface Response {
  status: number; reason: string; headers: Map<string, string[]>;
  start: number; bodyStart: number; bodyLen: number; end: number;
  complete: boolean; // the whole head and body are in the stream
}

/**
 * Parses the responses in `out` (RFC 9112 §6.3 framing). `bodyless(i)`: whether
 * the i-th final response answers a HEAD (true), not (false), or unknown (null:
 * then a head followed by another status line counts as bodyless).
 * Returns the responses, or a message saying where the stream is malformed.
 */
export function parseResponses(out: Uint8Array, bodyless: (i: number) => boolean | null): Response[] | string {
  const text = Buffer.from(out.buffer, out.byteOffset, out.length).toString("latin1");
  const list: Response[] = [];
  let at = 0, finals = 0;
  while (at < text.length) {
    const he = text.indexOf("\r\n\r\n", at);
    if (he < 0) {
      if (!"HTTP/1.1 ".startsWith(text.slice(at, at + 9)) && !text.startsWith("HTTP/1.1 ", at)) return `stream byte ${at}: ${JSON.stringify(text.slice(at, at + 30))} is not a status line`;
      list.push({ status: 0, reason: "", headers: new Map(), start: at, bodyStart: text.length, bodyLen: 0, end: text.length, complete: false });
      return list;
    }
    const lines = text.slice(at, he).split("\r\n");
    const sl = /^HTTP\/1\.1 (\d{3}) ([\x20-\x7e]*)$/.exec(lines[0]);
    if (!sl) return `stream byte ${at}: status line ${JSON.stringify(lines[0].slice(0, 60))}`;
    const headers = new Map<string, string[]>();
    for (const l of lines.slice(1)) {
      // field-value (RFC 9110 §5.5): visible bytes, SP and HTAB inside (the server sends no obs-text)
      const h = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ((?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?)$/.exec(l);
      if (!h) return `stream byte ${at}: header line ${JSON.stringify(l.slice(0, 60))}`;
      const k = h[1].toLowerCase();
      headers.set(k, [...(headers.get(k) ?? []), h[2]]);
    }
    const status = Number(sl[1]);
    const bodyStart = he + 4;
    let len = 0;
    const interim = status >= 100 && status < 200;
    const cls = headers.get("content-length");
    if (headers.has("transfer-encoding")) return `response at stream byte ${at}: Transfer-Encoding (the server sends lengths)`;
    if (!interim && status !== 204 && status !== 304) {
      if (!cls || cls.length !== 1 || !/^\d+$/.test(cls[0])) return `response at stream byte ${at} (${status}): Content-Length ${JSON.stringify(cls)}`;
      let noBody = bodyless(finals);
      if (noBody === null) noBody = text.startsWith("HTTP/1.1 ", bodyStart) || bodyStart === text.length;
      len = noBody ? 0 : Number(cls[0]);
    } else if (cls && status !== 304) return `response at stream byte ${at} (${status}) carries Content-Length`;
    const end = bodyStart + len;
    list.push({ status, reason: sl[2], headers, start: at, bodyStart, bodyLen: len, end: Math.min(end, text.length), complete: end <= text.length });
    if (!interim) finals++;
    at = end;
  }
  return list;
}

// ---- judging ------------------------------------------------------------------

export interface Ending {
  /** The server ended the stream (close, or shutdown for writing). */
  ended: boolean;
  /** Exact: every expected response must be there. Prefix: a fault, a timeout or a trap may have cut it short. */
  mode: "exact" | "prefix";
  /** A graceful shutdown happened while the connection was open: `Connection: close` and an early end are allowed. */
  draining: boolean;
}

/** Compares what the core wrote with the model; null, or the first difference. */
export function judge(m: Model, out: Uint8Array, end: Ending): string | null {
  const exp = m.responses;
  const parsed = parseResponses(out, (i) => (i < exp.length ? exp[i].head : null));
  if (typeof parsed === "string") return parsed;
  const text = Buffer.from(out.buffer, out.byteOffset, out.length).toString("latin1");
  let i = 0;
  let prevInterim = false;
  for (let k = 0; k < parsed.length; k++) {
    const r = parsed[k];
    const where = `response ${i}${i < exp.length ? ` (to ${JSON.stringify(exp[i].line.slice(0, 60))})` : ""}`;
    if (!r.complete) {
      if (!end.ended) return `${where} cut short at stream byte ${r.end} and the connection is still open (a stall)`;
      if (end.mode === "exact" && i < exp.length) return `${where} cut short at stream byte ${r.end}: the server closed mid-response`;
      return null;
    }
    if (r.status === 100) {
      if (i < exp.length && !exp[i].mayContinue) return `${where}: a 100 Continue the request did not ask for`;
      if (prevInterim) return `${where}: two 100 Continue`;
      prevInterim = true;
      continue;
    }
    prevInterim = false;
    if (i >= exp.length) {
      if (m.tail !== "grey") return `response ${i}: ${r.status} is one response too many (expected ${exp.length}${m.tail === "close" ? ", then close" : ""})`;
      if (!SERVER_STATUSES.has(r.status)) return `response ${i} (after a grey request: ${m.greyWhy}): status ${r.status} is not one the server sends`;
      const why = checkSimple(r, text, null);
      if (why) return `response ${i} (after a grey request): ${why}`;
      i++;
      continue;
    }
    const e = exp[i];
    const why = checkOne(e, r, text, end.draining);
    if (why) return `${where}: ${why}`;
    i++;
  }
  if (i < exp.length && end.mode === "exact" && !(end.draining && end.ended)) {
    return `response ${i} (to ${JSON.stringify(exp[i].line.slice(0, 60))}) is missing: ${i} of ${exp.length} answered, connection ${end.ended ? "ended" : "still open (a stall?)"}`;
  }
  if (end.mode === "exact" && i === exp.length && !end.draining) {
    if (m.tail === "close" && !end.ended) return `after ${i} response(s) the server should end the connection, and it is still open`;
    if (m.tail === "open" && end.ended) return `after ${i} response(s) the server ended a keep-alive connection the client still holds`;
  }
  return null;
}

function header(r: Response, k: string): string | undefined { return r.headers.get(k)?.join(", "); }

function checkOne(e: Expected, r: Response, text: string, draining: boolean): string | null {
  const etag = header(r, "etag");
  const outcomes = e.outcomes(etag);
  const fits = outcomes.filter((o) => o.status === r.status);
  if (fits.length === 0) return `status ${r.status}, expected ${[...new Set(outcomes.map((o) => o.status))].join(" or ")}`;
  const conn = (header(r, "connection") ?? "").toLowerCase();
  if (e.close && conn !== "close") return `status ${r.status} without Connection: close, and the server must close after it`;
  if (!e.close && conn === "close" && !draining) return `Connection: close on a keep-alive request`;
  if (e.keepAliveHeader && !draining && conn !== "keep-alive") return "HTTP/1.0 keep-alive not confirmed with Connection: keep-alive";
  const cl = header(r, "content-length");
  const problems: string[] = [];
  for (const o of fits) {
    const p = checkOutcome(o, r, text, cl, e.head);
    if (!p) return null;
    problems.push(p);
  }
  return problems.join("; or ");
}

function checkOutcome(o: Outcome, r: Response, text: string, cl: string | undefined, isHead: boolean | null): string | null {
  if (o.bodyLen !== null && r.status !== 304 && r.status !== 204 && Number(cl) !== o.bodyLen) return `Content-Length ${cl}, expected ${o.bodyLen}`;
  if (isHead === true && r.bodyLen !== 0) return "a body on a HEAD response";
  const crange = header(r, "content-range");
  if (o.contentRange !== undefined && crange !== o.contentRange) return `Content-Range ${crange}, expected ${o.contentRange}`;
  if (o.contentRange === undefined && crange !== undefined) return `Content-Range ${crange} on a ${r.status}`;
  const ct = header(r, "content-type") ?? "";
  if (o.multipart && !ct.startsWith("multipart/byteranges; boundary=")) return `Content-Type ${ct}, expected multipart/byteranges`;
  if (!o.multipart && ct.startsWith("multipart/")) return `Content-Type ${ct} on a single representation`;
  if (r.status === 405 && header(r, "allow") === undefined) return "405 without Allow";
  if (r.status === 405 && !/^GET, HEAD(, OPTIONS)?$/.test(header(r, "allow")!)) return `Allow: ${header(r, "allow")}`;
  if (o.location !== undefined && header(r, "location") !== o.location) return `Location ${header(r, "location")}, expected ${o.location}`;
  if (o.file && (header(r, "etag") === undefined || header(r, "last-modified") === undefined)) return "a file response without ETag or Last-Modified";
  if (o.simple) return checkSimple(r, text, isHead);
  return null;
}

/** An error or simple response: `NNN Reason\n` in text/plain, as its status line says (README: errors). */
function checkSimple(r: Response, text: string, isHead: boolean | null): string | null {
  if (r.status < 400 || r.status === 416) return null; // 416: Content-Range and no body
  const body = `${r.status} ${r.reason}\n`;
  if (Number(header(r, "content-length")) !== body.length) return `Content-Length ${header(r, "content-length")} for the body ${JSON.stringify(body)}`;
  if (isHead !== true && r.bodyLen > 0 && text.slice(r.bodyStart, r.end) !== body) return `body ${JSON.stringify(text.slice(r.bodyStart, r.end))}, expected ${JSON.stringify(body)}`;
  return null;
}

export { enc as latin1 };
