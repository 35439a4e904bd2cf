// OP_OPEN for the HTTP server: open a path under the docroot and describe it.
//
// The path comes from the core already normalised (percent-decoded, dot
// segments resolved), NUL-terminated, in linear memory; it is handed to the
// kernel by address. openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) is the
// fence: no `..`, absolute path or symlink can lead outside the root (EXDEV),
// whatever the core computed. The MIME type comes from mime-db (the database
// behind `mime-types`/Express), looked up once per file: the core caches the
// result with the open fd.
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

/** extension (no dot, lower case) -> Content-Type value. */
function buildMimeTable(): Map<string, string> {
  const db = require("mime-db") as MimeDb;
  const table = new Map<string, string>();
  // Prefer IANA-registered types when an extension appears twice (as mime-types does).
  const rank = (t: string) => ({ nginx: 1, apache: 2, iana: 3 } as Record<string, number>)[db[t].source ?? ""] ?? 0;
  const owner = new Map<string, string>();
  for (const type of Object.keys(db)) {
    for (const ext of db[type].extensions ?? []) {
      const prev = owner.get(ext);
      if (prev && rank(prev) >= rank(type)) continue;
      owner.set(ext, type);
    }
  }
  for (const [ext, type] of owner) {
    const textual = type.startsWith("text/") || db[type].charset !== undefined;
    table.set(ext, textual ? `${type}; charset=utf-8` : type);
  }
  return table;
}

const S_IFMT = 0o170000, S_IFREG = 0o100000, S_IFDIR = 0o040000;
const STATX_SIZE = 256;

export interface FileServerOptions {
  /**
   * Look for X.br and X.gz beside every regular file X opened or re-checked
   * and report them in FILE_FLAGS (precompressed sidecars). Two to six
   * more syscalls per file per check (once a second at most per hot file).
   */
  precompressed?: boolean;
}

const SIDECARS: [string, number][] = [[".br", abi.FILE_HAS_BR], [".gz", abi.FILE_HAS_GZIP]];

export class FileServer implements FileOpener {
  readonly rootFd: number;
  private readonly precompressed: boolean;
  private readonly sidecarPath = Buffer.alloc(1100); // a cached path (< 1 KiB) + ".br" + NUL
  private readonly mime = buildMimeTable();
  private readonly how = Buffer.alloc(24);
  private readonly howPath = Buffer.alloc(24);
  private readonly howDir = Buffer.alloc(24);
  private readonly stx = Buffer.alloc(STATX_SIZE);
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();

  constructor(readonly root: string, options: FileServerOptions = {}) {
    this.precompressed = options.precompressed === true;
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
    const flags = kind === abi.FILE_REGULAR && this.precompressed ? this.sidecars(core, pathPtr, pathLen) : 0;
    dv.setInt32(record + abi.FILE_FLAGS, flags, true);
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
  private sidecars(core: Core, pathPtr: number, pathLen: number): number {
    if (pathLen + 4 > this.sidecarPath.length) return 0;
    const path = this.sidecarPath;
    path.set(core.u8.subarray(pathPtr, pathPtr + pathLen), 0);
    const tail = path.toString("latin1", Math.max(0, pathLen - 3), pathLen);
    if (tail === ".br" || tail === ".gz") return 0;
    let flags = 0;
    for (const [ext, bit] of SIDECARS) {
      path.write(ext, pathLen, "latin1");
      path[pathLen + 3] = 0;
      const fd = libc.syscall(SYS_openat2, "int", this.rootFd, "void *", path, "void *", this.howPath, "size_t", 24) as number;
      if (fd < 0) continue;
      if (libc.statxBuf(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, this.stx) >= 0
          && (this.stx.readUInt16LE(28) & S_IFMT) === S_IFREG) flags |= bit;
      libc.close(fd);
    }
    return flags;
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
