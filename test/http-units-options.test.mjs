// Pure helpers behind the response options: Accept-Encoding negotiation
// (chooseEncoding), the access log's two time formats, and the parse-record
// fields they read (Accept-Encoding, User-Agent, Referer,
// Access-Control-Request-Headers). Table-driven, against the bare core.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";
import abi from "./lib/abi.mjs";

const c = loadCore();
const x = c.x;
const k = (name) => x[name].value;
if (x.arena() === 0 && x._start) x._start();
const ARENA = x.arena();
const IN = ARENA, OUT = ARENA + 0x40000, REQ = ARENA + 0x80000;

const BR = abi.FILE_HAS_BR, GZ = abi.FILE_HAS_GZIP;
const name = (e) => (e === k("ENC_BR") ? "br" : e === k("ENC_GZIP") ? "gzip" : "identity");
function choose(value, have = BR | GZ) {
  const n = c.put(IN, value);
  c.put(IN + n, "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"); // what follows a header value in the buffer
  return name(x.chooseEncoding(IN, n, have));
}

test("chooseEncoding: RFC 9110 12.5.3 weights, br on a tie, * for codings not named", () => {
  const cases = [
    ["br", "br"], ["gzip", "gzip"], ["gzip, br", "br"], ["br, gzip", "br"], ["gzip, deflate, br, zstd", "br"],
    ["br;q=0", "identity"], ["br;q=0, gzip", "gzip"], ["br;q=0.0, gzip;q=0.001", "gzip"], ["gzip;q=0.5, br;q=0.4", "gzip"],
    ["gzip;q=0.5, br;q=0.5", "br"], ["br;q=1.000, gzip;q=1", "br"], ["gzip;q=1, br;q=0.999", "gzip"],
    ["*", "br"], ["*;q=0", "identity"], ["*;q=0.3, gzip;q=0.5", "gzip"], ["*;q=0.6, gzip;q=0.5", "br"],
    ["br;q=0, *", "gzip"], ["x-gzip", "gzip"], ["X-GZIP;Q=0.5", "gzip"], ["BR", "br"], ["identity", "identity"],
    ["identity;q=0", "identity"], ["deflate", "identity"], ["", "identity"], [" , ,", "identity"],
    ["gzip ; q=0.5 , br ; q=0", "gzip"], ["gzip;level=9", "gzip"], ["gzip;level=9;q=0", "identity"],
    ["br;q=1.5", "identity"], ["br;q=0.1234", "identity"], ["br;q=", "identity"], ["br;q", "identity"], ["br;q=.5", "identity"],
    ["br junk", "identity"], ["brotli, gzipx", "identity"], ["br;q=0, br", "identity"], ["gzip;q=0, x-gzip", "identity"],
  ];
  for (const [value, want] of cases) assert.is(choose(value), want, `Accept-Encoding: ${value}`);
});

test("chooseEncoding: only the sidecars that exist count", () => {
  assert.is(choose("br, gzip", GZ), "gzip");
  assert.is(choose("br", GZ), "identity");
  assert.is(choose("gzip;q=0.1, br", GZ), "gzip");
  assert.is(choose("br, gzip", BR), "br");
  assert.is(choose("gzip", BR), "identity");
  assert.is(choose("br, gzip", 0), "identity");
});

test("formatLogDate / formatIsoDate: random instants agree with JS Date", () => {
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const p2 = (n) => String(n).padStart(2, "0");
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const samples = [0, 951782400000, 4102444799999, 1796150237123];
  for (let i = 0; i < 500; i++) samples.push(Math.floor(rnd() * 4102444800000));
  for (const ms of samples) {
    const d = new Date(ms);
    const n = x.formatLogDate(ms, OUT);
    const want = `${p2(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} +0000`;
    assert.is(c.str(OUT, n), want, `log date of ${ms}`);
    const m = x.formatIsoDate(ms, OUT);
    assert.is(c.str(OUT, m), d.toISOString(), `ISO date of ${ms}`);
  }
});

function parse(head) {
  x.resetRequest(REQ);
  const n = c.put(IN, head);
  c.put(IN + n, "\r\n\r\n".repeat(4));
  const r = x.parseRequest(IN, n, REQ, 8192, 8192, 100);
  const span = (off, len) => {
    const o = c.dv().getInt32(REQ + k(off), true);
    return o === 0 ? null : c.str(IN + o, c.dv().getInt32(REQ + k(len), true));
  };
  return {
    r,
    ae: span("REQ_ACCEPT_ENCODING_OFF", "REQ_ACCEPT_ENCODING_LEN"),
    ua: span("REQ_USER_AGENT_OFF", "REQ_USER_AGENT_LEN"),
    ref: span("REQ_REFERER_OFF", "REQ_REFERER_LEN"),
    acrh: span("REQ_ACR_HEADERS_OFF", "REQ_ACR_HEADERS_LEN"),
  };
}

test("parser: Accept-Encoding, User-Agent, Referer and Access-Control-Request-Headers spans", () => {
  const a = parse("GET / HTTP/1.1\r\nHost: h\r\nuser-AGENT: ua/1 (x)\r\nACCEPT-ENCODING:  gzip, br \r\nReferer: http://r/\r\n"
    + "Access-Control-Request-Headers: x-a, x-b\r\n\r\n");
  assert.ok(a.r > 0);
  assert.equal([a.ae, a.ua, a.ref, a.acrh], ["gzip, br", "ua/1 (x)", "http://r/", "x-a, x-b"]);
  const none = parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  assert.equal([none.ae, none.ua, none.ref, none.acrh], [null, null, null, null]);
  // a repeated User-Agent / Referer is not an error: the first wins
  const twice = parse("GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: one\r\nUser-Agent: two\r\nReferer: a\r\nReferer: b\r\n\r\n");
  assert.ok(twice.r > 0);
  assert.equal([twice.ua, twice.ref], ["one", "a"]);
  // two Accept-Encoding lines leave an empty list: identity, never a coding one of them refused
  const ae2 = parse("GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\nAccept-Encoding: br;q=0\r\n\r\n");
  assert.ok(ae2.r > 0);
  assert.is(ae2.ae, "");
  // names that only look alike are not these fields
  const near = parse("GET / HTTP/1.1\r\nHost: h\r\nReferrer: x\r\nUser-Agents: y\r\nAccept-Encodings: z\r\n\r\n");
  assert.equal([near.ae, near.ua, near.ref], [null, null, null]);
});
test.run();
