// fs.Stats-shaped results of stat/fstat/lstat, read from a `struct statx`
// (linux/stat.h, 256 bytes). Field for field what Node's fs.Stats offers, with
// the same numbers (dev as glibc's makedev(major, minor), times in ms as
// sec * 1e3 + nsec / 1e6), so code written against fs.Stats reads it as is.
export const STATX_SIZE = 256;
export const STATX_BASIC_STATS = 0x7ff;
export const STATX_BTIME = 0x800;
export const AT_FDCWD = -100;
export const AT_EMPTY_PATH = 0x1000;
export const AT_SYMLINK_NOFOLLOW = 0x100;

const S_IFMT = 0o170000;

/** glibc's makedev: what stat(2)'s st_dev holds, and so what Node reports. */
function makedev(major: number, minor: number): number {
  return ((major & 0xfff) * 256 + (minor & 0xff) + (minor & ~0xff) * 4096) + (major & ~0xfff) * 4294967296;
}

export class IoStats {
  dev = 0; ino = 0; mode = 0; nlink = 0; uid = 0; gid = 0; rdev = 0; size = 0; blksize = 0; blocks = 0;
  atimeMs = 0; mtimeMs = 0; ctimeMs = 0; birthtimeMs = 0;

  /** From the statx bytes at `at` in `b`. */
  static from(b: DataView, at: number): IoStats {
    const s = new IoStats();
    const u64 = (o: number) => b.getUint32(at + o, true) + b.getUint32(at + o + 4, true) * 4294967296;
    const ms = (o: number) => (b.getUint32(at + o, true) + b.getInt32(at + o + 4, true) * 4294967296) * 1e3 + b.getUint32(at + o + 8, true) / 1e6;
    s.blksize = b.getUint32(at + 4, true);
    s.nlink = b.getUint32(at + 16, true);
    s.uid = b.getUint32(at + 20, true);
    s.gid = b.getUint32(at + 24, true);
    s.mode = b.getUint16(at + 28, true);
    s.ino = u64(32);
    s.size = u64(40);
    s.blocks = u64(48);
    s.atimeMs = ms(64);
    s.birthtimeMs = ms(80);
    s.ctimeMs = ms(96);
    s.mtimeMs = ms(112);
    s.rdev = makedev(b.getUint32(at + 128, true), b.getUint32(at + 132, true));
    s.dev = makedev(b.getUint32(at + 136, true), b.getUint32(at + 140, true));
    return s;
  }

  // Rounded to the millisecond, as fs.Stats' dates are (new Date() truncates
  // a fractional ms: .5 and up differed from fs.statSync's in half the runs).
  get atime(): Date { return new Date(Math.round(this.atimeMs)); }
  get mtime(): Date { return new Date(Math.round(this.mtimeMs)); }
  get ctime(): Date { return new Date(Math.round(this.ctimeMs)); }
  get birthtime(): Date { return new Date(Math.round(this.birthtimeMs)); }
  isFile(): boolean { return (this.mode & S_IFMT) === 0o100000; }
  isDirectory(): boolean { return (this.mode & S_IFMT) === 0o040000; }
  isSymbolicLink(): boolean { return (this.mode & S_IFMT) === 0o120000; }
  isFIFO(): boolean { return (this.mode & S_IFMT) === 0o010000; }
  isSocket(): boolean { return (this.mode & S_IFMT) === 0o140000; }
  isCharacterDevice(): boolean { return (this.mode & S_IFMT) === 0o020000; }
  isBlockDevice(): boolean { return (this.mode & S_IFMT) === 0o060000; }
}
