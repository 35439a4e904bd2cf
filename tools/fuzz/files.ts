// The simulated kernel's file tree (fuzz.ts) and the reference model's view
// of it (oracle.ts): one table per iteration, a pure function of the
// iteration's seed and the path, so that the model knows exactly what every
// open, stat and listing returns, in any order, however often the core's
// file cache re-checks. (Before the oracle, a file could change kind or size
// at random between opens; that made the right answer unknowable.)
import type { Stat } from "./oracle.ts";

/** FNV-1a over the seed and the path, then mixed: a few independent draws per path. */
function hash(seed: number, path: string, salt: number): number {
  let h = (0x811c9dc5 ^ seed ^ Math.imul(salt, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 0x01000193) >>> 0;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b) >>> 0; h ^= h >>> 13;
  return h >>> 0;
}

const SIZES = [0, 10, 1000, 40000, 300_000];

export interface SimFile { stat: Stat; mtime: number; ino: number }

export class FileTable {
  constructor(private readonly seed: number, private readonly precompressed: boolean) {}

  get(path: string): SimFile {
    const roll = hash(this.seed, path, 1) % 100;
    const ino = hash(this.seed, path, 2) % 1_000_000;
    const mtime = 1.6e12 + (hash(this.seed, path, 3) % 1_000_000) * 1000;
    if (roll < 60) {
      const size = SIZES[hash(this.seed, path, 4) % SIZES.length];
      // Sidecar bits (only with --precompressed, as the real host reports
      // them) say nothing about whether X.br / X.gz open: the core must cope
      // with a bit set and the sidecar gone, or the reverse.
      const bits = this.precompressed ? hash(this.seed, path, 5) % 4 : 0;
      return { stat: { kind: "file", size, br: (bits & 1) !== 0, gz: (bits & 2) !== 0 }, mtime, ino };
    }
    if (roll < 75) return { stat: { kind: "dir" }, mtime: 1.6e12, ino };
    return { stat: { kind: "none" }, mtime: 0, ino: 0 };
  }

  /** OP_LIST's answer for the directory at path: the listing's length, or null for ENOENT. */
  list(path: string): number | null {
    if (hash(this.seed, path, 6) % 5 === 0) return null;
    return hash(this.seed, path, 7) % 5000;
  }
}
