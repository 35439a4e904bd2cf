// OP_OPEN for the HTTP server: open a path under the docroot and describe it.
//
// The path comes from the core already normalised (percent-decoded, dot
// segments resolved), NUL-terminated, in linear memory; it is handed to the
// kernel by address. openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) is the
// fence (writeOpenHow): no `..`, absolute path or symlink can lead outside the root (EXDEV),
// whatever the core computed. The MIME type comes from mime-db (the database
// behind `mime-types`/Express), looked up once per file: the core caches the
// result with the open fd. When several types claim an extension, the one
// browsers expect is chosen (buildMimeTable).
import { createRequire } from "node:module";
import { extname } from "node:path";
import { readdirSync } from "node:fs";
import * as abi from "../assembly/abi.ts";
import type { FileOpener } from "./loop.ts";
import {
  libc, errno, check, O_RDONLY, O_CLOEXEC, O_NONBLOCK, O_PATH, O_DIRECTORY, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS,
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
/** Bytes of a struct statx (the kernel writes at most this much). */
export const STATX_SIZE = 256;

/**
 * The core's linear memory as the file server needs it: its absolute base
 * (for addresses the kernel reads), a byte view, and refresh() to re-make
 * the view after memory grew. A Core is one; a file-pool worker makes its
 * own over the same memory (host/filepool-worker.ts).
 */
export interface LinearMemory { readonly base: number; readonly u8: Uint8Array; refresh(): void }

// ---- the FILE record: one writer for every path that opens files --------------
// files.ts's own open (the loop thread and the pool's workers) and the
// io_uring executor's ring ops (host/uring-files.ts) turn the same statx
// buffer into the same bytes through these, so the three cannot drift.

let mimeTable: Map<string, string> | null = null;
/** The MIME table (built once per thread, on first use). */
function mime(): Map<string, string> { return (mimeTable ??= buildMimeTable()); }
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Is the statx at `stx[at..]` a regular file? */
export function statxIsRegular(stx: DataView, at = 0): boolean { return (stx.getUint16(at + 28, true) & S_IFMT) === S_IFREG; }

/**
 * Writes the FILE record (abi.ts FILE_*) at `record` in linear memory from
 * the statx at `stx[at..]` and the path at pathPtr (its extension picks the
 * MIME type of a regular file that is opened, not only stat'ed); FILE_FLAGS
 * is written apart (setFileFlags: the sidecar checks come after). Returns
 * the FILE_* kind.
 */
export function writeFileRecord(core: LinearMemory, stx: DataView, at: number, pathPtr: number, pathLen: number, record: number, statOnly: boolean): number {
  const mode = stx.getUint16(at + 28, true);
  const kind = (mode & S_IFMT) === S_IFREG ? abi.FILE_REGULAR : (mode & S_IFMT) === S_IFDIR ? abi.FILE_DIRECTORY : abi.FILE_OTHER;
  const mtimeMs = Number(stx.getBigInt64(at + 112, true)) * 1000 + Math.floor(stx.getUint32(at + 120, true) / 1e6);
  core.refresh();
  const dv = new DataView(core.u8.buffer);
  dv.setInt32(record + abi.FILE_KIND, kind, true);
  dv.setFloat64(record + abi.FILE_BYTES, Number(stx.getBigUint64(at + 40, true)), true);
  dv.setFloat64(record + abi.FILE_MTIME, mtimeMs, true);
  dv.setFloat64(record + abi.FILE_INO, Number(stx.getBigUint64(at + 32, true)), true);
  dv.setFloat64(record + abi.FILE_DEV, stx.getUint32(at + 136, true) * 65536 + stx.getUint32(at + 140, true), true);
  let mimeLen = 0;
  if (kind === abi.FILE_REGULAR && !statOnly) {
    // Once per file (the core caches the answer): decode the path's extension.
    const path = decoder.decode(core.u8.subarray(pathPtr, pathPtr + pathLen));
    const type = mime().get(extname(path).slice(1).toLowerCase()) ?? "application/octet-stream";
    const bytes = encoder.encode(type).subarray(0, abi.FILE_MIME_MAX);
    core.u8.set(bytes, record + abi.FILE_MIME);
    mimeLen = bytes.length;
  }
  dv.setInt32(record + abi.FILE_MIME_LEN, mimeLen, true);
  return kind;
}

/** FILE_FLAGS of the record at `record` (FILE_HAS_*: the sidecars found). */
export function setFileFlags(core: LinearMemory, record: number, flags: number): void {
  core.refresh();
  new DataView(core.u8.buffer).setInt32(record + abi.FILE_FLAGS, flags, true);
}

/** The sidecars looked for beside a regular file X, each with its FILE_HAS_* bit. */
export const SIDECARS: readonly (readonly [string, number])[] = [[".br", abi.FILE_HAS_BR], [".gz", abi.FILE_HAS_GZIP]];
/** Room for a sidecar's path: a cached path (< 1 KiB) + ".br" + NUL. */
export const SIDECAR_PATH_MAX = 1100;

/**
 * Writes the NUL-terminated path of sidecar `ext` of the path at pathPtr
 * into `out` at `outAt` -> true; false if that file has no sidecars to
 * look for (it is one itself, X.br / X.gz, served as it is; or the path is
 * too long).
 */
export function sidecarPath(core: LinearMemory, pathPtr: number, pathLen: number, ext: string, out: Uint8Array, outAt: number): boolean {
  if (pathLen + 4 > SIDECAR_PATH_MAX) return false;
  const u8 = core.u8;
  if (pathLen >= 3 && u8[pathPtr + pathLen - 3] === 0x2e) {
    const a = u8[pathPtr + pathLen - 2], b = u8[pathPtr + pathLen - 1];
    if ((a === 0x62 && b === 0x72) || (a === 0x67 && b === 0x7a)) return false; // ".br", ".gz"
  }
  out.set(u8.subarray(pathPtr, pathPtr + pathLen), outAt);
  for (let k = 0; k < 3; k++) out[outAt + pathLen + k] = ext.charCodeAt(k);
  out[outAt + pathLen + 3] = 0;
  return true;
}

// The fence and the flags of every open beneath the root (struct open_how:
// flags u64 at 0, mode u64 at 8, resolve u64 at 16; 24 bytes): a file is
// opened O_NONBLOCK (a FIFO someone left in the docroot must not block the
// loop), a stat-only check or a sidecar O_PATH, a listing's directory
// O_DIRECTORY. RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: no `..`, absolute
// path or symlink leads outside the root (EXDEV).
export const OPEN_HOW_SIZE = 24;
export const OPEN_FILE = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
export const OPEN_STAT = O_PATH | O_CLOEXEC;
const OPEN_DIR = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
/** Writes an open_how with `flags` and the root's fence at dv[at..at + 24). */
export function writeOpenHow(dv: DataView, at: number, flags: number): void {
  dv.setBigUint64(at, BigInt(flags), true);
  dv.setBigUint64(at + 8, 0n, true);
  dv.setBigUint64(at + 16, BigInt(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), true);
}
const howOf = (flags: number): Buffer => {
  const b = Buffer.alloc(OPEN_HOW_SIZE);
  writeOpenHow(new DataView(b.buffer, b.byteOffset, OPEN_HOW_SIZE), 0, flags);
  return b;
};

export interface FileServerOptions {
  /**
   * Look for X.br and X.gz beside every regular file X opened or re-checked
   * and report them in FILE_FLAGS (precompressed sidecars). Two to six
   * more syscalls per file per check (once a second at most per hot file).
   */
  precompressed?: boolean;
  /** An O_PATH fd of the root opened already (a file-pool worker shares its server's): not closed by close(). */
  rootFd?: number;
}

export class FileServer implements FileOpener {
  readonly rootFd: number;
  readonly precompressed: boolean;
  private readonly ownsRoot: boolean;
  private readonly sidecarPath = Buffer.alloc(SIDECAR_PATH_MAX);
  private readonly how = howOf(OPEN_FILE);
  private readonly howPath = howOf(OPEN_STAT);
  private readonly howDir = howOf(OPEN_DIR);
  private readonly stx = Buffer.alloc(STATX_SIZE);
  private readonly stxView = new DataView(this.stx.buffer, this.stx.byteOffset, STATX_SIZE);
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();

  constructor(readonly root: string, options: FileServerOptions = {}) {
    this.precompressed = options.precompressed === true;
    this.ownsRoot = options.rootFd === undefined;
    this.rootFd = options.rootFd ?? check(`open ${root}`, libc.open(root, O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
  }

  open(core: LinearMemory, pathPtr: number, pathLen: number, record: number, statOnly: boolean): number {
    const fd = libc.syscall(SYS_openat2, "int", this.rootFd, "intptr", core.base + pathPtr,
      "void *", statOnly ? this.howPath : this.how, "size_t", 24) as number;
    if (fd < 0) return -errno();
    if (libc.statxBuf(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, this.stx) < 0) {
      const e = errno();
      libc.close(fd);
      return -e;
    }
    const kind = writeFileRecord(core, this.stxView, 0, pathPtr, pathLen, record, statOnly);
    setFileFlags(core, record, kind === abi.FILE_REGULAR && this.precompressed ? this.sidecars(core, pathPtr, pathLen) : 0);
    if (statOnly || kind !== abi.FILE_REGULAR) {
      libc.close(fd);
      return 0;
    }
    return fd;
  }

  /**
   * FILE_HAS_* bits for the sidecars of the file at pathPtr: X.br / X.gz that
   * open beneath the root (the same fence as every file) and are regular
   * files. Each costs an openat2(O_PATH), a statx and a close. A sidecar
   * itself (X.br, X.gz) is not looked at: it is served as it is.
   */
  private sidecars(core: LinearMemory, pathPtr: number, pathLen: number): number {
    let flags = 0;
    for (const [ext, bit] of SIDECARS) {
      if (!sidecarPath(core, pathPtr, pathLen, ext, this.sidecarPath, 0)) return 0;
      const fd = libc.syscall(SYS_openat2, "int", this.rootFd, "void *", this.sidecarPath, "void *", this.howPath, "size_t", 24) as number;
      if (fd < 0) continue;
      if (libc.statxBuf(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, this.stx) >= 0 && statxIsRegular(this.stxView)) flags |= bit;
      libc.close(fd);
    }
    return flags;
  }

  /**
   * OP_LIST: an HTML listing of the directory whose NUL-terminated path (from
   * the core, relative to the root) is at `buf`, written over it (at most
   * `cap` bytes): directories first, then files, each by name, with the last
   * modification (UTC) and the size, as nginx's autoindex shows them.
   *
   * The directory is opened beneath the root like any file and read through
   * its fd. Each entry is stat'ed beneath that fd without following links
   * (statx AT_SYMLINK_NOFOLLOW on the bare name), so no entry can lead out of
   * the root. A symlink is resolved beneath the root as a request for it would
   * be (openat2 RESOLVE_BENEATH): listed as what it points to, or left out if
   * it dangles or leads outside (it would be 404). Dotfiles, and entries that
   * are neither files nor directories, are left out too: they are not served.
   */
  list(core: LinearMemory, buf: number, cap: number, pathLen: number): number {
    core.refresh();
    const rel = this.decoder.decode(core.u8.subarray(buf, buf + pathLen));
    const fd = libc.syscall(SYS_openat2, "int", this.rootFd, "intptr", core.base + buf,
      "void *", this.howDir, "size_t", 24) as number;
    if (fd < 0) return -errno();
    let page: string;
    try {
      page = this.renderListing(fd, rel, cap);
    } catch (e) {
      const en = (e as NodeJS.ErrnoException).errno; // Node's errno is negative
      return en ? -Math.abs(en) : -abi.EACCES;
    } finally {
      libc.close(fd);
    }
    core.refresh();
    const bytes = this.encoder.encode(page);
    const len = Math.min(bytes.length, cap);
    core.u8.set(bytes.subarray(0, len), buf);
    return len;
  }

  private renderListing(dirFd: number, rel: string, cap: number): string {
    const entries: ListEntry[] = [];
    for (const d of readdirSync(`/proc/self/fd/${dirFd}`, { withFileTypes: true })) {
      if (d.name.startsWith(".")) continue;
      if (d.isSymbolicLink()) {
        const target = this.statBeneathRoot(`${rel}/${d.name}`);
        if (target) entries.push({ name: d.name, ...target });
      } else if (d.isDirectory() || d.isFile()) {
        entries.push({ name: d.name, dir: d.isDirectory() });
      }
    }
    entries.sort((a, b) => (a.dir !== b.dir ? (a.dir ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

    const title = escapeHtml(rel === "." ? "/" : `/${rel}/`);
    const head = `<!doctype html>\n<html><head><meta charset="utf-8"><title>Index of ${title}</title>\n` +
      `<style>body{font-family:system-ui,sans-serif;margin:2em}td,th{padding:0 2em 0 0;text-align:left}` +
      `.s{text-align:right}</style></head>\n<body>\n<h1>Index of ${title}</h1>\n<table>\n` +
      `<tr><th>Name</th><th>Last modified (UTC)</th><th class="s">Size</th></tr>\n`;
    const parent = rel === "." ? "" : `<tr><td><a href="../">../</a></td><td></td><td class="s">-</td></tr>\n`;
    const tail = "</table>\n</body></html>\n";
    const parts = [head, parent];
    // Room kept for the "(n more not shown)" row.
    let size = Buffer.byteLength(head) + Buffer.byteLength(parent) + Buffer.byteLength(tail) + 64;
    let shown = 0, skipped = 0;
    for (const e of entries) {
      if (e.mtimeMs === undefined && !this.statEntry(dirFd, e)) { skipped++; continue; } // gone meanwhile
      const slash = e.dir ? "/" : "";
      const line = `<tr><td><a href="${encodeURIComponent(e.name)}${slash}">${escapeHtml(e.name)}${slash}</a></td>` +
        `<td>${listingDate(e.mtimeMs!)}</td><td class="s">${e.dir ? "-" : humanSize(e.bytes!)}</td></tr>\n`;
      const n = Buffer.byteLength(line);
      if (size + n > cap) break;
      parts.push(line);
      size += n;
      shown++;
    }
    const left = entries.length - shown - skipped;
    if (left > 0) parts.push(`<tr><td colspan="3">(${left} more not shown)</td></tr>\n`);
    parts.push(tail);
    return parts.join("");
  }

  /** Size and mtime of `e` beneath the directory fd, without following a link; false if it is gone. */
  private statEntry(dirFd: number, e: ListEntry): boolean {
    if (libc.statxBuf(dirFd, e.name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, this.stx) < 0) return false;
    Object.assign(e, statxFields(this.stx));
    return true;
  }

  /** What `path` (relative to the root) leads to, resolved beneath the root; null if nothing or not servable. */
  private statBeneathRoot(path: string): Omit<ListEntry, "name"> | null {
    const fd = libc.syscall(SYS_openat2, "int", this.rootFd, "str", path, "void *", this.howPath, "size_t", 24) as number;
    if (fd < 0) return null;
    const ok = libc.statxBuf(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, this.stx) >= 0;
    libc.close(fd);
    if (!ok) return null;
    const f = statxFields(this.stx);
    return f.dir || f.regular ? f : null;
  }

  close(): void { if (this.ownsRoot) libc.close(this.rootFd); }
}

interface ListEntry { name: string; dir: boolean; bytes?: number; mtimeMs?: number }

function statxFields(s: Buffer): { dir: boolean; regular: boolean; bytes: number; mtimeMs: number } {
  const fmt = s.readUInt16LE(28) & S_IFMT;
  return {
    dir: fmt === S_IFDIR, regular: fmt === S_IFREG,
    bytes: Number(s.readBigUInt64LE(40)), mtimeMs: Number(s.readBigInt64LE(112)) * 1000,
  };
}

/** `2026-12-01 19:57`: minutes, UTC, as nginx's autoindex shows them. */
function listingDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

/** `37 B`, `1.5 KiB`, `121 KiB`, `3.2 MiB`: one decimal below 10, binary units as `ls -lh`. */
function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
