// Request-target -> relative file path, for opening under the docroot.
//
// normalizePath() takes the request-target exactly as received (origin-form,
// e.g. `/a/%2e%2E/b/./c%20d.html?x=1`) and writes a clean relative path with
// no leading slash, NUL-terminated, ready for openat2(docroot_fd, path,
// RESOLVE_BENEATH). That kernel flag is the real fence; this function makes
// sure the path we hand it is the one the client meant, with no second
// reading possible.
//
// In one pass, left to right:
//   - stop at `?` or `#` (query and fragment are not part of the path);
//   - percent-decode each segment exactly once, so `%252e%252e` becomes the
//     literal name `%2e%2e` and is never taken for `..`;
//   - drop empty segments (`//`) and `.`, and let `..` remove the previous
//     segment (RFC 3986 §5.2.4 remove_dot_segments), comparing the DECODED
//     bytes, so `%2e%2E` is `..` too.
//
// Refused with PATH_BAD (-> 400 Bad Request):
//   - a target that does not start with `/` (not origin-form);
//   - a bad escape: `%zz`, or `%4` cut short by the end or by `?`;
//   - control bytes (< 0x20, 0x7F) raw or decoded, which includes NUL: a
//     decoded NUL would silently cut the C string the host passes on;
//     a raw space cannot be in a request-target either;
//   - a backslash, raw or decoded: no file name here contains one, and a
//     path that means something else on some other system is not worth
//     serving;
//   - an encoded slash `%2f`: it cannot be part of a POSIX file name, so the
//     only thing it could mean is "separator", and a proxy or access rule in
//     front of us that matches on the raw target has not seen that separator
//     (`/public%2f..%2fsecret` passes a `/public/` prefix rule). Rejecting is
//     the one reading nobody can disagree with; Apache refuses it the same
//     way by default (AllowEncodedSlashes Off);
//   - a `..` that would climb above the root (`/../etc/passwd`,
//     `/a/../../x`). nginx answers these with 400 rather than clamping them
//     to `/`: such a request is never a link a browser built from a page we
//     served, so there is nothing to be lenient about.
// Refused with PATH_TOO_LONG (-> 414 URI Too Long): the path does not fit in
// dstCap - 1 bytes (room for the NUL). The check is on the bytes written so
// far, so a long segment later removed by `..` still counts; the request
// line limit bounds the input anyway.
//
// Raw bytes >= 0x80 pass through untouched (UTF-8 file names sent without
// escaping); the request-line parser decides whether it accepts them at all.

/** Not a usable origin-form path: answer 400. */
export const PATH_BAD: i32 = -400;
/** The path does not fit in the destination: answer 414. */
export const PATH_TOO_LONG: i32 = -414;

/** pathFlags() bit: the decoded path ended in `/` (or in `.`/`..`, which
 *  resolve to a directory): serve `index.html` there, and redirect
 *  `/dir` -> `/dir/` (301) when the path names a directory without it. */
export const PATHF_TRAILING_SLASH: i32 = 1;
/** pathFlags() bit: some segment of the result starts with `.` (`.git`,
 *  `.env`, `.well-known`): most static servers hide these (404); the server
 *  decides, e.g. to allow `.well-known`. */
export const PATHF_DOTFILE: i32 = 2;

const SLASH: u8 = 0x2f;
const DOT: u8 = 0x2e;
const PERCENT: u8 = 0x25;
const QUESTION: u8 = 0x3f;
const HASH: u8 = 0x23;
const BACKSLASH: u8 = 0x5c;

let lastFlags: i32 = 0;

/** PATHF_* bits of the last successful normalizePath() call (0 after a
 *  failure). */
export function pathFlags(): i32 {
  return lastFlags;
}

/** Value of one hex digit, or -1. */
@inline function hexDigit(c: u32): i32 {
  if (c - 0x30 < 10) return <i32>(c - 0x30);        // 0-9
  let lower = c | 0x20;                              // A-F -> a-f
  if (lower - 0x61 < 6) return <i32>(lower - 0x61 + 10);
  return -1;
}

/** Writes the normalized form of src[0..len) at dst (see the top of the
 *  file). Returns its length without the NUL (0: the root itself), or
 *  PATH_BAD / PATH_TOO_LONG. */
export function normalizePath(src: usize, len: i32, dst: usize, dstCap: i32): i32 {
  lastFlags = 0;
  if (len < 1 || load<u8>(src) != SLASH) return PATH_BAD;
  if (dstCap < 1) return PATH_TOO_LONG;
  let limit = dstCap - 1;      // last usable index + 1 (the NUL goes at out)

  // dst[0..out) holds the committed segments joined by '/'. Each new segment
  // is decoded at out + 1 (or 0 for the first), leaving dst[out] free for the
  // separator, and only committed once we know it is a real name.
  let out = 0;
  let i = 1;                   // just past a raw '/'
  let lastWasDir = false;      // the final segment was empty, `.` or `..`
  let end = false;
  while (!end) {
    let segStart = out == 0 ? 0 : out + 1;
    let p = segStart;
    // Decode one segment: up to the next raw '/', or the end of the path.
    while (true) {
      if (i >= len) { end = true; break; }
      let c = <u32>load<u8>(src + i);
      if (c == SLASH) { i++; break; }
      if (c == QUESTION || c == HASH) { end = true; break; }
      if (c == PERCENT) {
        if (i + 2 >= len) return PATH_BAD;
        let hi = hexDigit(<u32>load<u8>(src + i + 1));
        let lo = hexDigit(<u32>load<u8>(src + i + 2));
        if ((hi | lo) < 0) return PATH_BAD;
        c = <u32>(hi << 4 | lo);
        if (c == SLASH) return PATH_BAD;
        i += 3;
        if (c < 0x20) return PATH_BAD;       // includes NUL
      } else {
        i++;
        if (c <= 0x20) return PATH_BAD;      // raw control or space
      }
      if (c == 0x7f || c == BACKSLASH) return PATH_BAD;
      if (p >= limit) return PATH_TOO_LONG;
      store<u8>(dst + p, <u8>c);
      p++;
    }

    let segLen = p - segStart;
    let first = segLen > 0 ? load<u8>(dst + segStart) : <u8>0;
    if (segLen == 0 || (segLen == 1 && first == DOT)) {
      lastWasDir = true;                       // `//` or `/./`: nothing to keep
    } else if (segLen == 2 && first == DOT && load<u8>(dst + segStart + 1) == DOT) {
      // `..`: drop the last committed segment; above the root is an error.
      if (out == 0) return PATH_BAD;
      let k = out - 1;
      while (k > 0 && load<u8>(dst + k) != SLASH) k--;
      out = k;                                 // k == 0: back at the root
      lastWasDir = true;
    } else {
      if (out > 0) store<u8>(dst + out, SLASH);
      out = p;
      lastWasDir = false;
    }
  }
  store<u8>(dst + out, 0);

  // Flags describe the result, not the input: `/.git/../x` is just `x`.
  let flags = lastWasDir ? PATHF_TRAILING_SLASH : 0;
  let atSegmentStart = true;
  for (let k = 0; k < out; k++) {
    let c = load<u8>(dst + k);
    if (atSegmentStart && c == DOT) { flags |= PATHF_DOTFILE; break; }
    atSegmentStart = c == SLASH;
  }
  lastFlags = flags;
  return out;
}
