// Byte constants and classes shared by the request-head parser (parser.ts),
// the chunked-body decoder (chunked.ts), the response-head parser
// (response.ts) and the proxy's head rewriting (proxy/rewrite.ts).
export const HT: u32 = 0x09;
export const LF: u32 = 0x0A;
export const CR: u32 = 0x0D;
export const SP: u32 = 0x20;
export const SEMI: u32 = 0x3B;
export const MAX_SAFE: u64 = 9007199254740992; // 2^53: the largest length an f64 holds exactly

// Byte classes. Bit 0: tchar (RFC 9110 5.6.2: field names, methods,
// transfer codings). Bit 1: allowed in a Host value (RFC 3986 reg-name,
// IP-literal and port: unreserved, pct-encoded, sub-delims, ":", "[", "]").
export const C_TOKEN: u8 = 1;
export const C_HOST: u8 = 2;
export const CLASS = memory.data<u8>([
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0x00 controls
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0x10 controls
  0, 3, 0, 1, 3, 3, 3, 3, 2, 2, 3, 3, 2, 3, 3, 0,  // 0x20  !"#$%&'()*+,-./
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 0, 2, 0, 0,  // 0x30 0-9:;<=>?
  0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  // 0x40 @A-O
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 0, 2, 1, 3,  // 0x50 P-Z[\]^_
  1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  // 0x60 `a-o
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 1, 0, 3, 0,  // 0x70 p-z{|}~DEL
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 0x80.. obs-text: neither
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]);

@inline export function isToken(c: u32): bool { return (load<u8>(CLASS + c) & C_TOKEN) != 0; }
@inline export function isOws(c: u32): bool { return c == SP || c == HT; }

/**
 * ASCII case-insensitive compare of lit.length bytes at p with a lowercase
 * literal. Callers check the span's length first: it reads lit.length bytes.
 */
export function eqLower(p: usize, lit: string): bool {
  const n = lit.length;
  for (let i = 0; i < n; i++) {
    let c = <u32>load<u8>(p + <usize>i);
    if (c - 0x41 < 26) c |= 0x20;
    if (c != <u32>lit.charCodeAt(i)) return false;
  }
  return true;
}

