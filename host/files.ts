// OP_OPEN for the HTTP server: open a path under the docroot and describe it.
//
// The path comes from the core already normalised (percent-decoded, dot
// segments resolved), NUL-terminated, in linear memory; it is handed to the
// kernel by address. openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) is the
// fence: no `..`, absolute path or symlink can lead outside the root (EXDEV),
// whatever the core computed. The MIME type comes from mime-db (the database
// behind `mime-types`/Express), looked up once per file: the core caches the
// result with the open fd. When several types claim an extension, the one
// browsers expect is chosen (buildMimeTable).
import { createRequire } from "node:module";
import { extname } from "node:path";
import { readdirSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";
import type { FileOpener } from "./loop.ts";
import {
  libc, errno, check, O_RDONLY, O_CLOEXEC, O_NONBLOCK, O_PATH, O_DIRECTORY, AT_EMPTY_PATH, STATX_BASIC_STATS,
  RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, SYS_openat2,
} from "./libc.ts";

const require = createRequire(import.meta.url);
type MimeDb = Record<string, { extensions?: string[]; charset?: string; source?: string }>;

// Some extensions are claimed by several types in mime-db (.mp4: application/mp4
// and video/mp4; .js: text/javascript and application/javascript). The one
// browsers expect wins by a score, as in the `mime-types` package (v3):
// the facet first (a plain registered subtype over vnd., x. and x-, and prs.
// last, RFC 6838 section 3), then where mime-db has it from (IANA over
// Apache over nginx), then the top-level type (video/ over application/ for
// .mp4, font/ over application/font-*, application/ over text/ for .xml and
// .rtf), and the shorter name on a tie. Checked against every conflict in
// mime-db 1.54 (48 extensions): each answer is the browsers' type, so no
// override table is needed; one would go here, after the scoring.
const FACET_SCORE: Record<string, number> = { "": 900, "vnd.": 400, "x.": 300, "x-": 200, "prs.": 100 };
const SOURCE_SCORE: Record<string, number> = { iana: 40, "": 30, apache: 20, nginx: 10 };
const TYPE_SCORE: Record<string, number> = { video: 3, font: 2, application: 1 };

function mimeScore(type: string, source = ""): number {
  const [top, sub] = type.split("/");
  const facet = /^(vnd\.|x\.|x-|prs\.)/.exec(sub)?.[1] ?? "";
  return FACET_SCORE[facet] + (SOURCE_SCORE[source] ?? SOURCE_SCORE[""]) + (TYPE_SCORE[top] ?? 0) + (1 - type.length / 100);
}

/** extension (no dot, lower case) -> Content-Type value; text types and JSON with `charset=utf-8`. */
function buildMimeTable(): Map<string, string> {
  const db = require("mime-db") as MimeDb;
  const owner = new Map<string, { type: string; score: number }>();
  for (const type of Object.keys(db)) {
    const score = mimeScore(type, db[type].source);
    for (const ext of db[type].extensions ?? []) {
      const prev = owner.get(ext);
      if (!prev || score > prev.score) owner.set(ext, { type, score });
    }
  }
  const table = new Map<string, string>();
  for (const [ext, { type }] of owner) {
    const textual = type.startsWith("text/") || db[type].charset !== undefined;
    table.set(ext, textual ? `${type}; charset=utf-8` : type);
  }
  return table;
}

const S_IFMT = 0o170000, S_IFREG = 0o100000, S_IFDIR = 0o040000;
const STATX_SIZE = 256;

export class FileServer implements FileOpener {
  readonly rootFd: number;
  private readonly mime = buildMimeTable();
  private readonly how = Buffer.alloc(24);
  private readonly howPath = Buffer.alloc(24);
  private readonly howDir = Buffer.alloc(24);
  private readonly stx = Buffer.alloc(STATX_SIZE);
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();

  constructor(readonly root: string) {
    this.rootFd = check(`open ${root}`, libc.open(root, O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
    const resolve = BigInt(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    // O_NONBLOCK: opening a FIFO someone left in the docroot must not block the loop.
    this.how.writeBigUInt64LE(BigInt(O_RDONLY | O_CLOEXEC | O_NONBLOCK), 0);
    this.how.writeBigUInt64LE(resolve, 16);
    this.howPath.writeBigUInt64LE(BigInt(O_PATH | O_CLOEXEC), 0);
    this.howPath.writeBigUInt64LE(resolve, 16);
    this.howDir.writeBigUInt64LE(BigInt(O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0);
    this.howDir.writeBigUInt64LE(resolve, 16);
  }

  open(core: Core, pathPtr: number, pathLen: number, record: number, statOnly: boolean): number {
    const fd = libc.syscall(SYS_openat2, "int", this.rootFd, "intptr", core.base + pathPtr,
      "void *", statOnly ? this.howPath : this.how, "size_t", 24) as number;
    if (fd < 0) return -errno();
    if (libc.statxBuf(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, this.stx) < 0) {
      const e = errno();
      libc.close(fd);
      return -e;
    }
    const s = this.stx;
    const mode = s.readUInt16LE(28);
    const kind = (mode & S_IFMT) === S_IFREG ? abi.FILE_REGULAR : (mode & S_IFMT) === S_IFDIR ? abi.FILE_DIRECTORY : abi.FILE_OTHER;
    const mtimeMs = Number(s.readBigInt64LE(112)) * 1000 + Math.floor(s.readUInt32LE(120) / 1e6);
    core.refresh();
    const dv = new DataView(core.u8.buffer);
    dv.setInt32(record + abi.FILE_KIND, kind, true);
    dv.setFloat64(record + abi.FILE_BYTES, Number(s.readBigUInt64LE(40)), true);
    dv.setFloat64(record + abi.FILE_MTIME, mtimeMs, true);
    dv.setFloat64(record + abi.FILE_INO, Number(s.readBigUInt64LE(32)), true);
    dv.setFloat64(record + abi.FILE_DEV, s.readUInt32LE(136) * 65536 + s.readUInt32LE(140), true);
    let mimeLen = 0;
    if (kind === abi.FILE_REGULAR && !statOnly) {
      // Once per file (the core caches the answer): decode the path's extension.
      const path = this.decoder.decode(core.u8.subarray(pathPtr, pathPtr + pathLen));
      const type = this.mime.get(extname(path).slice(1).toLowerCase()) ?? "application/octet-stream";
      const bytes = this.encoder.encode(type).subarray(0, abi.FILE_MIME_MAX);
      core.u8.set(bytes, record + abi.FILE_MIME);
      mimeLen = bytes.length;
    }
    dv.setInt32(record + abi.FILE_MIME_LEN, mimeLen, true);
    if (statOnly || kind !== abi.FILE_REGULAR) {
      libc.close(fd);
      return 0;
    }
    return fd;
  }

  /**
   * OP_LIST: an HTML listing of the directory whose NUL-terminated path (from
   * the core, relative to the root) is at `buf`, written over it (at most
   * `cap` bytes). The directory is opened beneath the root like any file and
   * read through its fd; dotfiles are left out, as they are not served.
   */
  list(core: Core, buf: number, cap: number, pathLen: number): number {
    const fd = libc.syscall(SYS_openat2, "int", this.rootFd, "intptr", core.base + buf,
      "void *", this.howDir, "size_t", 24) as number;
    if (fd < 0) return -errno();
    let names: { name: string; dir: boolean }[];
    try {
      names = readdirSync(`/proc/self/fd/${fd}`, { withFileTypes: true })
        .filter((d) => !d.name.startsWith("."))
        .map((d) => ({ name: d.name, dir: d.isDirectory() }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch (e) {
      const en = (e as NodeJS.ErrnoException).errno; // Node's errno is negative
      return en ? -Math.abs(en) : -abi.EACCES;
    } finally {
      libc.close(fd);
    }
    core.refresh();
    const rel = this.decoder.decode(core.u8.subarray(buf, buf + pathLen));
    const title = rel === "." ? "/" : `/${rel}/`;
    const head = `<!doctype html>\n<html><head><meta charset="utf-8"><title>Index of ${escapeHtml(title)}</title></head>\n<body>\n<h1>Index of ${escapeHtml(title)}</h1>\n<ul>\n`;
    const tail = "</ul>\n</body></html>\n";
    const parts = [head, rel === "." ? "" : `<li><a href="../">../</a></li>\n`];
    let size = Buffer.byteLength(head) + Buffer.byteLength(parts[1]) + Buffer.byteLength(tail) + 64;
    let shown = 0;
    for (const { name, dir } of names) {
      const line = `<li><a href="${encodeURIComponent(name)}${dir ? "/" : ""}">${escapeHtml(name)}${dir ? "/" : ""}</a></li>\n`;
      const n = Buffer.byteLength(line);
      if (size + n > cap) break;
      parts.push(line);
      size += n;
      shown++;
    }
    if (shown < names.length) parts.push(`<li>(${names.length - shown} more not shown)</li>\n`);
    parts.push(tail);
    const bytes = this.encoder.encode(parts.join(""));
    const len = Math.min(bytes.length, cap);
    core.u8.set(bytes.subarray(0, len), buf);
    return len;
  }

  close(): void { libc.close(this.rootFd); }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
