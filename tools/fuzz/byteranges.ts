// A fuzzer check (fuzz.ts): every multipart/byteranges response in
// what the core wrote to one connection is well formed, exactly as long as
// its Content-Length, and carries the file's bytes at each part's
// Content-Range. The simulated kernel's files hold a known byte at every
// offset (fileByte), whether the core read them into memory (pread) or sent
// them with sendfile, so a part at the wrong offset, a header counted wrong,
// a step skipped or repeated under partial writes all show up here.

const MARK = "\r\nContent-Type: multipart/byteranges; boundary=";

/** The byte the simulated kernel's files hold at `offset`. */
export function fileByte(offset: number): number { return 65 + (offset % 26); }

/**
 * Checks the multipart responses in `out`, the bytes written to one
 * connection so far. Returns null, or what is wrong. A response cut short
 * by the end of `out` (connection reset, closed at a timeout) is not judged.
 */
export function checkByteranges(out: Uint8Array): string | null {
  const text = Buffer.from(out.buffer, out.byteOffset, out.length).toString("latin1");
  let from = 0;
  for (;;) {
    const mark = text.indexOf(MARK, from);
    if (mark < 0) return null;
    const headStart = text.lastIndexOf("HTTP/1.1 ", mark);
    const headEnd = text.indexOf("\r\n\r\n", mark);
    if (headEnd < 0) return null;
    const head = text.slice(headStart, headEnd + 2);
    if (!head.startsWith("HTTP/1.1 206 ")) return `multipart body on a ${head.slice(9, 12)} response`;
    const boundary = text.slice(mark + MARK.length, text.indexOf("\r\n", mark + 2));
    if (!/^[0-9a-f]{16}$/.test(boundary)) return `boundary ${JSON.stringify(boundary)}`;
    const cl = /\r\nContent-Length: (\d+)\r\n/.exec(head);
    if (!cl) return "multipart response without Content-Length";
    if (/\r\nContent-Range:/.test(head)) return "Content-Range in a multipart head";
    const bodyStart = headEnd + 4;
    const bodyEnd = bodyStart + Number(cl[1]);
    if (bodyEnd > text.length) return null;
    const why = checkBody(text, bodyStart, bodyEnd, boundary);
    if (why) return `multipart body at stream byte ${bodyStart}: ${why}`;
    // Next: the end, or another response (perhaps cut short itself).
    const next = text.slice(bodyEnd, bodyEnd + 9);
    if (!"HTTP/1.1 ".startsWith(next)) {
      return `after a multipart body of Content-Length ${cl[1]}: ${JSON.stringify(text.slice(bodyEnd, bodyEnd + 20))}`;
    }
    from = bodyEnd;
  }
}

function checkBody(text: string, at: number, end: number, boundary: string): string | null {
  const delim = `\r\n--${boundary}`;
  let parts = 0;
  let lastEnd = -2;
  for (;;) {
    if (!text.startsWith(delim, at)) return `no delimiter at ${at}`;
    at += delim.length;
    if (text.startsWith("--\r\n", at)) {
      if (at + 4 !== end) return `closing delimiter ends at ${at + 4}, Content-Length says ${end}`;
      return parts >= 2 ? null : `${parts} part(s): a multipart response needs two or more`;
    }
    if (!text.startsWith("\r\n", at)) return "delimiter not followed by CRLF";
    const hEnd = text.indexOf("\r\n\r\n", at);
    if (hEnd < 0 || hEnd > end) return "part header runs past the body";
    const m = /\r\nContent-Range: bytes (\d+)-(\d+)\/(\d+)$/.exec(text.slice(at, hEnd));
    if (!m || !/^\r\nContent-Type: [^\r\n]+\r\n/.test(text.slice(at, hEnd + 2))) {
      return `part header ${JSON.stringify(text.slice(at, hEnd))}`;
    }
    const first = Number(m[1]), last = Number(m[2]), size = Number(m[3]);
    if (last < first || last >= size) return `range ${first}-${last}/${size}`;
    if (first <= lastEnd + 1) return `part ${first}-${last} overlaps or touches the previous one (ends ${lastEnd})`;
    lastEnd = last;
    at = hEnd + 4;
    if (at + last - first + 1 > end) return `part ${first}-${last} runs past the body`;
    for (let k = 0; k <= last - first; k++) {
      if (text.charCodeAt(at + k) !== fileByte(first + k)) return `part ${first}-${last}: byte ${first + k} is wrong`;
    }
    at += last - first + 1;
    parts++;
  }
}
