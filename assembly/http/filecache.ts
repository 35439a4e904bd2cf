// The open-file cache (nginx's open_file_cache, in the core).
//
// Keyed by the normalised path, an entry keeps the file's open fd (for
// sendfile), its metadata, a precomputed block of response headers
// (Content-Type, Last-Modified, ETag, Accept-Ranges) or, for small files, the
// content itself in linear memory so a response is one writev, and no fd
// (closed once the content is read). At most fdBudget files are kept open
// (CFG_FILE_CACHE_FDS; see fdsHeld). Misses and 404s are
// cached too. An entry is revalidated (stat by path) when it is older than
// VALIDATE_MS, so a replaced or edited file is noticed within a second.
//
// A shortage is not a miss: an open that fails for want of fds or memory
// (EMFILE, ENFILE, ENOMEM, ENOBUFS: transientError) is answered 503 with
// Retry-After, and its entry lasts RETRY_MS rather than VALIDATE_MS, so the
// path is tried again as soon as the shortage may be over (at most one open
// per path per RETRY_MS meanwhile: the waiters share it). Out of fds, the
// cache also closes one unused cached file (shedFd), so that retry can open. A revalidation that
// fails that way keeps the entry it checks (the file is still open and
// served) and checks again after RETRY_MS.
//
// Entries are fixed records (ENTRY_SIZE = 1504 bytes, offsets below) in a
// table carved at init; a hash table of chains finds them. Entries in use by
// responses (refs > 0) are never evicted; a stale one is unlinked at once and
// its fd closed when the last response using it is done.
import {
  OP_OPEN, OP_CLOSE, OP_PREAD, FILE_KIND, FILE_MIME_LEN, FILE_BYTES, FILE_MTIME, FILE_INO, FILE_MIME,
  FILE_REGULAR, FILE_MIME_MAX, FILE_FLAGS, EMFILE, ENFILE, ENOMEM, ENOBUFS,
} from "../abi";
import { submit, now } from "../reactor/ctl";
import { ringTake, ringGive, ringClassFor } from "../reactor/pool";
import { formatHttpDate } from "./date";
import { formatEtag } from "./conditional";

export const ENTRY_SIZE: usize = 1504;
const E_STATE = 0;        // FC_*
const E_FD = 4;           // open fd of a regular file, -1 otherwise
const E_KIND = 8;         // FILE_* on success, or -errno (ENOENT...) for a cached miss
const E_REFS = 12;        // responses using the fd or the body
const E_SIZE = 16;        // f64
const E_MTIME = 24;       // f64 ms
const E_INO = 32;         // f64
const E_VALIDATED = 40;   // f64 loop time of the last stat
const E_HASH = 48;
const E_PATH_LEN = 52;
const E_BODY = 56;        // content in memory (0: none)
const E_BODY_CLS = 60;    // its pool class
const E_HDR_LEN = 64;
const E_ETAG_OFF = 68;    // within the header block
const E_ETAG_LEN = 72;
const E_NEXT = 76;        // hash chain (entry index + 1; 0 ends)
const E_WAITERS = 80;     // first connection (fd + 1) waiting for this entry
const E_USED = 84;        // clock bit for eviction
const E_REVALIDATING = 88;
const E_FLAGS = 92;         // u16 FILE_HAS_* (precompressed sidecars), as the last open or stat saw them
const E_CT_END = 94;        // u16 end of the Content-Type line in the header block
export const E_PATH = 96;   // path, NUL-terminated (PATH_MAX_CACHED bytes)
const E_HDR = 1120;         // header block (HDR_MAX bytes)
const E_RECORD = 1376;      // FILE record the host fills (FILE_RECORD_TOTAL bytes)

export const PATH_MAX_CACHED: i32 = 1024; // longer paths get 414
// The longest block: 14 + FILE_MIME_MAX (80) + 17 + 29 + 8 + 35 (ETag) + 24 = 207.
const HDR_MAX: i32 = 256;

export const FC_FREE = 0;
/** Entries in use (not FC_FREE): wasm_reactor_file_cache_entries. */
export let fcLive: i32 = 0;
export const FC_LOADING = 1;   // open (or body read) in flight
export const FC_READY = 2;
export const FC_STALE = 3;     // replaced; closed when unused

const VALIDATE_MS: f64 = 1000;
const RETRY_MS: f64 = 10;

/** errno is a shortage of fds or memory, not a fact about the file: 503, not cached as a miss. */
export function transientError(err: i32): bool { return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS; }

/** The entry is due for another check RETRY_MS from now (not VALIDATE_MS). */
function retrySoon(e: usize): void { store<f64>(e + E_VALIDATED, now() - VALIDATE_MS + RETRY_MS); }
const SMALL_FILE_MAX: f64 = 32768;       // bodies up to this size live in memory
const MEMORY_BUDGET: i32 = 64 << 20;     // bytes of cached bodies, at most

let entries: usize = 0;
let capacity: i32 = 0;
let buckets: usize = 0;
const BUCKETS: i32 = 4096;
let clockHand: i32 = 0;
let bodyBytes: i32 = 0;
// Fds the cache holds: open files of its entries, and the opens in flight
// (each will hold one). Over fdBudget, a response that lets go of a file
// closes an unused cached one (entryUnref, shedFd), so the cache does not
// keep the fds the connections and the loop were promised (host/limits.ts
// defaultConnectionCap) beyond the files responses are using at the moment.
let fdsHeld: i32 = 0;
let fdBudget: i32 = 0;
// Free entries, a stack (4 bytes per entry): a free entry is taken before the
// clock evicts anything, so nothing is evicted while the cache has room.
let freeList: usize = 0;
let freeCount: i32 = 0;

/** `cap` entries; at most `fds` of them keep their file open (0: all of them). */
export function fileCacheInit(cap: i32, fds: i32 = 0): void {
  capacity = cap;
  fdBudget = fds > 0 ? min(fds, cap) : cap;
  entries = heap.alloc(<usize>cap * ENTRY_SIZE);
  freeList = heap.alloc(<usize>cap * 4);
  for (let i = cap - 1; i >= 0; i--) store<i32>(freeList + <usize>(freeCount++) * 4, i); // entry 0 on top
  buckets = heap.alloc(<usize>BUCKETS * 4);
  memory.fill(buckets, 0, <usize>BUCKETS * 4);
}

@inline export function entry(i: i32): usize { return entries + <usize>i * ENTRY_SIZE; }
@inline export function entryState(i: i32): i32 { return load<i32>(entry(i) + E_STATE); }
@inline export function entryKind(i: i32): i32 { return load<i32>(entry(i) + E_KIND); }
@inline export function entryFd(i: i32): i32 { return load<i32>(entry(i) + E_FD); }
@inline export function entrySize(i: i32): f64 { return load<f64>(entry(i) + E_SIZE); }
@inline export function entryMtime(i: i32): f64 { return load<f64>(entry(i) + E_MTIME); }
@inline export function entryBody(i: i32): usize { return <usize>load<i32>(entry(i) + E_BODY); }
@inline export function entryHeaders(i: i32): usize { return entry(i) + E_HDR; }
@inline export function entryHeadersLen(i: i32): i32 { return load<i32>(entry(i) + E_HDR_LEN); }
@inline export function entryEtag(i: i32): usize { return entry(i) + E_HDR + <usize>load<i32>(entry(i) + E_ETAG_OFF); }
@inline export function entryEtagLen(i: i32): i32 { return load<i32>(entry(i) + E_ETAG_LEN); }
@inline export function entryRecord(i: i32): usize { return entry(i) + E_RECORD; }
@inline export function entryFlags(i: i32): i32 { return <i32>load<u16>(entry(i) + E_FLAGS); }
/** Length of the header block's first line, `Content-Type: ...\r\n`. */
@inline export function entryCtEnd(i: i32): i32 { return <i32>load<u16>(entry(i) + E_CT_END); }
export function entryRef(i: i32): void { const e = entry(i); store<i32>(e + E_REFS, load<i32>(e + E_REFS) + 1); }

export function entryUnref(i: i32): void {
  const e = entry(i);
  const refs = load<i32>(e + E_REFS) - 1;
  store<i32>(e + E_REFS, refs);
  if (refs != 0) return;
  if (load<i32>(e + E_STATE) == FC_STALE) { release(i); return; }
  entryIdle(i);
}

/**
 * A response is done with entry i, or used it without holding it (HEAD,
 * 304, 412, 416, an empty body). Over the fd budget, a cached file nobody
 * is reading closes: the clock's next unused one, this one if there is no
 * other. Only after a use, never on the way to an open: there it could
 * close the file a request has just opened and is about to use (a request
 * for X.br needs X too), and the two would take turns forever.
 */
export function entryIdle(i: i32): void {
  const e = entry(i);
  if (fdsHeld <= fdBudget || load<i32>(e + E_REFS) != 0) return;
  if (!shedFd(i) && load<i32>(e + E_STATE) == FC_READY && load<i32>(e + E_FD) >= 0 && load<i32>(e + E_REVALIDATING) == 0) { unlink(i); release(i); }
}

function hashPath(p: usize, n: i32): u32 {
  let h: u32 = 2166136261;
  for (let i = 0; i < n; i++) h = (h ^ <u32>load<u8>(p + <usize>i)) * 16777619;
  return h;
}

/**
 * Finds the entry for a path (not NUL-terminated), or -1. A found entry is
 * marked used. The caller checks its state.
 */
export function lookup(p: usize, n: i32): i32 {
  if (n >= PATH_MAX_CACHED) return -1;
  const h = hashPath(p, n);
  let i = load<i32>(buckets + <usize>(h & <u32>(BUCKETS - 1)) * 4) - 1;
  while (i >= 0) {
    const e = entry(i);
    if (load<u32>(e + E_HASH) == h && load<i32>(e + E_PATH_LEN) == n && memory.compare(e + E_PATH, p, <usize>n) == 0) {
      store<i32>(e + E_USED, 1);
      return i;
    }
    i = load<i32>(e + E_NEXT) - 1;
  }
  return -1;
}

/**
 * Creates an entry for the path and emits the OP_OPEN that fills it (the
 * completion goes through the connection `connFd`). Returns the entry, or -1
 * if the path is too long to cache or every entry is busy.
 */
export function startOpen(connFd: i32, p: usize, n: i32): i32 {
  if (n >= PATH_MAX_CACHED) return -1;
  const i = allocate();
  if (i < 0) return -1;
  fdsHeld++; // (the budget is kept when responses let go of files: entryUnref)
  const e = entry(i);
  const h = hashPath(p, n);
  memory.copy(e + E_PATH, p, <usize>n);
  store<u8>(e + E_PATH + <usize>n, 0);
  store<u32>(e + E_HASH, h);
  store<i32>(e + E_PATH_LEN, n);
  store<i32>(e + E_STATE, FC_LOADING);
  fcLive++;
  store<i32>(e + E_FD, -1);
  store<i32>(e + E_REFS, 0);
  store<i32>(e + E_BODY, 0);
  store<i32>(e + E_WAITERS, 0);
  store<i32>(e + E_USED, 1);
  store<i32>(e + E_REVALIDATING, 0);
  const b = buckets + <usize>(h & <u32>(BUCKETS - 1)) * 4;
  store<i32>(e + E_NEXT, load<i32>(b));
  store<i32>(b, i + 1);
  submit(OP_OPEN, connFd, <i32>(e + E_PATH), n, <i32>(e + E_RECORD), 0);
  return i;
}

/** True when the entry is due for a stat; the caller then calls startRevalidate. */
export function needsRevalidate(i: i32): bool {
  const e = entry(i);
  return load<i32>(e + E_REVALIDATING) == 0 && now() - load<f64>(e + E_VALIDATED) >= VALIDATE_MS;
}

/** Emits a stat of the entry's path (a3 = 1: no open); the entry stays usable meanwhile. */
export function startRevalidate(connFd: i32, i: i32): void {
  const e = entry(i);
  store<i32>(e + E_REVALIDATING, 1);
  submit(OP_OPEN, connFd, <i32>(e + E_PATH), load<i32>(e + E_PATH_LEN), <i32>(e + E_RECORD), 1);
}

/** The entry whose FILE record is at `record`. */
export function entryOfRecord(record: usize): i32 { return <i32>((record - E_RECORD - entries) / ENTRY_SIZE); }

/** Links a connection (fd) into the entry's waiters; `link` is its chain field. */
export function addWaiter(i: i32, fd: i32, linkAddr: usize): void {
  const e = entry(i);
  store<i32>(linkAddr, load<i32>(e + E_WAITERS));
  store<i32>(e + E_WAITERS, fd + 1);
}

/** Address of the entry's waiter-chain head (fd + 1 of the first waiter, 0 for none). */
export function waitersAddr(i: i32): usize { return entry(i) + E_WAITERS; }

/** Detaches and returns the waiter chain (fd + 1 of the first, 0 for none). */
export function takeWaiters(i: i32): i32 {
  const e = entry(i);
  const w = load<i32>(e + E_WAITERS);
  store<i32>(e + E_WAITERS, 0);
  return w;
}

/**
 * An OP_OPEN came back. Fills the entry from the FILE record. Returns true
 * when the entry is ready (or a cached miss); false while its body is still
 * being read into memory.
 */
export function openCompleted(i: i32, res: i32, statOnly: bool): bool {
  const e = entry(i);
  const rec = e + E_RECORD;
  if (statOnly) {
    store<i32>(e + E_REVALIDATING, 0);
    if (res < 0 && transientError(-res)) { retrySoon(e); return true; } // the entry stands; check again soon
    const kind = res < 0 ? res : load<i32>(rec + FILE_KIND);
    // A sidecar that appeared or went away (FILE_FLAGS) changes the file too:
    // the entry's responses carry Vary and pick an encoding by those bits.
    const same = kind == load<i32>(e + E_KIND) && (res < 0 ||
      (load<f64>(rec + FILE_BYTES) == load<f64>(e + E_SIZE) && load<f64>(rec + FILE_MTIME) == load<f64>(e + E_MTIME)
        && load<f64>(rec + FILE_INO) == load<f64>(e + E_INO) && (load<i32>(rec + FILE_FLAGS) & 0xffff) == entryFlags(i)));
    if (same) { store<f64>(e + E_VALIDATED, now()); return true; }
    markStale(i);
    return true;
  }
  store<f64>(e + E_VALIDATED, now());
  if (res < 0 || load<i32>(rec + FILE_KIND) != FILE_REGULAR) fdsHeld--; // no fd kept (one of a directory is closed below)
  if (res < 0) {
    store<i32>(e + E_KIND, res); // cached miss: -ENOENT, -EACCES, -EXDEV (outside the root)...
    store<i32>(e + E_STATE, FC_READY);
    if (transientError(-res)) {
      retrySoon(e); // ...or a shortage (503) for RETRY_MS
      if (res == -EMFILE || res == -ENFILE) shedFd();
    }
    return true;
  }
  const kind = load<i32>(rec + FILE_KIND);
  store<i32>(e + E_KIND, kind);
  store<f64>(e + E_SIZE, load<f64>(rec + FILE_BYTES));
  store<f64>(e + E_MTIME, load<f64>(rec + FILE_MTIME));
  store<f64>(e + E_INO, load<f64>(rec + FILE_INO));
  store<u16>(e + E_FLAGS, <u16>(load<i32>(rec + FILE_FLAGS) & 0xffff));
  if (kind != FILE_REGULAR) {
    if (res > 0) submit(OP_CLOSE, res, 0, 0, 0, 0);
    store<i32>(e + E_STATE, FC_READY);
    return true;
  }
  store<i32>(e + E_FD, res);
  buildHeaders(i);
  const size = load<f64>(e + E_SIZE);
  if (size == 0) { // nothing will ever be read from it
    submit(OP_CLOSE, res, 0, 0, 0, 0);
    fdsHeld--;
    store<i32>(e + E_FD, -1);
  }
  if (size > 0 && size <= SMALL_FILE_MAX && bodyBytes + <i32>size <= MEMORY_BUDGET) {
    const cls = ringClassFor(<i32>size);
    const body = ringTake(cls);
    bodyBytes += 4096 << cls;
    store<i32>(e + E_BODY, <i32>body);
    store<i32>(e + E_BODY_CLS, cls);
    submit(OP_PREAD, res, <i32>body, <i32>size, 0, i);
    return false;
  }
  store<i32>(e + E_STATE, FC_READY);
  return true;
}

/** Ring-pool bytes held by cached bodies (for the invariant check). */
export function cachedBodyBytes(): i32 { return bodyBytes; }

/**
 * The small-file body read came back; the entry is ready either way. Whole,
 * the body is served from memory and re-checked by path: the file is closed
 * (a cache of small files holds no fds).
 */
export function bodyLoaded(i: i32, res: i32): void {
  const e = entry(i);
  if (res != <i32>load<f64>(e + E_SIZE)) {
    // Short read (the file is changing under us) or an error: serve it with
    // sendfile instead, and let revalidation notice the change.
    dropBody(e);
  } else {
    const fd = load<i32>(e + E_FD);
    if (fd >= 0) { submit(OP_CLOSE, fd, 0, 0, 0, 0); fdsHeld--; store<i32>(e + E_FD, -1); }
  }
  store<i32>(e + E_STATE, FC_READY);
}

function dropBody(e: usize): void {
  const body = <usize>load<i32>(e + E_BODY);
  if (body == 0) return;
  const cls = load<i32>(e + E_BODY_CLS);
  ringGive(body, cls);
  bodyBytes -= 4096 << cls;
  store<i32>(e + E_BODY, 0);
}

/**
 * Content-Type, Last-Modified, ETag and Accept-Ranges, formatted once per
 * file. Content-Type comes first, so a precompressed sidecar's response can
 * take the original's Content-Type line and the rest from the sidecar.
 */
function buildHeaders(i: i32): void {
  const e = entry(i);
  const rec = e + E_RECORD;
  let p = e + E_HDR;
  p = put(p, "Content-Type: ");
  const mimeLen = min(load<i32>(rec + FILE_MIME_LEN), FILE_MIME_MAX);
  if (mimeLen > 0) { memory.copy(p, rec + FILE_MIME, <usize>mimeLen); p += <usize>mimeLen; }
  else p = put(p, "application/octet-stream");
  p = put(p, "\r\n");
  store<u16>(e + E_CT_END, <u16>(p - (e + E_HDR)));
  p = put(p, "Last-Modified: ");
  p += <usize>formatHttpDate(load<f64>(e + E_MTIME), p);
  p = put(p, "\r\nETag: ");
  store<i32>(e + E_ETAG_OFF, <i32>(p - (e + E_HDR)));
  const etagLen = formatEtag(load<f64>(e + E_MTIME), load<f64>(e + E_SIZE), p);
  store<i32>(e + E_ETAG_LEN, etagLen);
  p += <usize>etagLen;
  p = put(p, "\r\nAccept-Ranges: bytes\r\n");
  store<i32>(e + E_HDR_LEN, <i32>(p - (e + E_HDR)));
}

// Cold path (once per file): a static string, byte by byte.
function put(p: usize, s: string): usize {
  for (let i = 0; i < s.length; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
  return p + <usize>s.length;
}

/**
 * Drops a ready entry whose file turned out to differ from what it recorded
 * (sendfile hit the end before the cached size: the file was truncated in
 * place). The next request reopens the path. If a revalidation is in flight,
 * it will notice the change itself.
 */
export function entryForget(i: i32): void {
  const e = entry(i);
  if (load<i32>(e + E_STATE) == FC_READY && load<i32>(e + E_REVALIDATING) == 0) markStale(i);
}

function markStale(i: i32): void {
  unlink(i);
  store<i32>(entry(i) + E_STATE, FC_STALE);
  if (load<i32>(entry(i) + E_REFS) == 0) release(i);
}

function unlink(i: i32): void {
  const e = entry(i);
  const b = buckets + <usize>(load<u32>(e + E_HASH) & <u32>(BUCKETS - 1)) * 4;
  let prev: usize = b;
  let j = load<i32>(b) - 1;
  while (j >= 0) {
    if (j == i) { store<i32>(prev, load<i32>(e + E_NEXT)); return; }
    prev = entry(j) + E_NEXT;
    j = load<i32>(prev) - 1;
  }
}

/** Frees an unlinked, unused entry: closes its fd, returns its body memory. */
function release(i: i32): void {
  const e = entry(i);
  const fd = load<i32>(e + E_FD);
  if (fd >= 0) { submit(OP_CLOSE, fd, 0, 0, 0, 0); fdsHeld--; }
  dropBody(e);
  store<i32>(e + E_FD, -1);
  store<i32>(e + E_STATE, FC_FREE);
  fcLive--;
  store<i32>(freeList + <usize>(freeCount++) * 4, i);
}

/**
 * Gives one fd back: closes an unused cached file (the clock's next victim
 * among the entries holding one; not `keep`), for the fd budget (entryUnref)
 * or when an open met EMFILE, so that the retry after RETRY_MS can open: the
 * cache shrinks to what the fd limit leaves it rather than answer 503 while
 * it sits on fds nobody is reading. False if every cached fd is in use.
 */
function shedFd(keep: i32 = -1): bool {
  for (let scanned = 0; scanned < capacity * 2; scanned++) {
    const i = clockHand;
    clockHand = (clockHand + 1) % capacity;
    const e = entry(i);
    if (i == keep || load<i32>(e + E_STATE) != FC_READY || load<i32>(e + E_FD) < 0 || load<i32>(e + E_REFS) > 0
      || load<i32>(e + E_REVALIDATING) != 0) continue;
    if (load<i32>(e + E_USED) != 0) { store<i32>(e + E_USED, 0); continue; }
    unlink(i);
    release(i);
    return true;
  }
  return false;
}

/** A free entry, else one evicted (the clock's next unused one); -1 if all are busy. */
function allocate(): i32 {
  if (freeCount == 0) {
    for (let scanned = 0; scanned < capacity * 2 && freeCount == 0; scanned++) {
      const i = clockHand;
      clockHand = (clockHand + 1) % capacity;
      const e = entry(i);
      if (load<i32>(e + E_STATE) != FC_READY || load<i32>(e + E_REFS) > 0 || load<i32>(e + E_REVALIDATING) != 0) continue;
      if (load<i32>(e + E_USED) != 0) { store<i32>(e + E_USED, 0); continue; }
      unlink(i);
      release(i); // onto the free list
    }
    if (freeCount == 0) return -1;
  }
  return load<i32>(freeList + <usize>(--freeCount) * 4);
}
