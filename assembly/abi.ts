// The one definition of the memory shared by the core (AssemblyScript) and
// the host (TypeScript). Both sides import this file: it holds only integer
// constants, so it is valid AssemblyScript and valid TypeScript at once.
//
// Masks are written as i32 bit patterns (1 << 31 is negative on both sides),
// so the core and the host agree bit for bit without u32/number casts.
//
// Overview (all addresses are offsets into WebAssembly linear memory):
//
//   control block (CTL)   one record; `core.init()` returns its address.
//                         Holds the addresses of the areas below, the config
//                         the host writes before init, the loop time and the
//                         counters.
//   event area            neutral event records {bits, fd, generation}
//                         (EVENT_SIZE each), written by the host's event
//                         backend (host/backend/): EV_* bits, never a
//                         kernel's own mask.
//   submission queue (SQ) the core's syscall requests, SQE_SIZE each.
//   completion queue (CQ) CQE_SIZE each: a request's tag and its result (>= 0, or -errno).
//
// The pump: the host calls a phase function, which returns n = number of
// SQEs; it carries out SQ[0..n) in order, writes CQ[0..n) (each with the
// tag of its request), and calls `complete(n)`, which returns the next n.
// n == 0 means the phase is done.

// ---- control block -------------------------------------------------------
// Size CTL_SIZE bytes. Offsets of i32 fields unless noted.
export const CTL_SIZE = 256;
export const CTL_VERSION = 0;          // ABI_VERSION, written by the core
export const CTL_EVENTS = 4;           // address of the event area
export const CTL_EVENTS_CAP = 8;       // capacity, in events (maxevents)
                                       // 12, 16: reserved (were the epoll_event layout)
export const CTL_SQ = 20;              // address of the submission queue
export const CTL_SQ_CAP = 24;          // capacity, in entries
export const CTL_CQ = 28;              // address of the completion queue
export const CTL_SCRATCH = 32;         // address of a host scratch area (SCRATCH_SIZE bytes)
export const CTL_CURRENT_FD = 36;      // fd the core is working on (-1: none); read after a trap
export const CTL_CQ_ROOM = 40;         // completions the core takes in one reaped(k) call (it writes this)
export const CTL_MEM_BASE = 48;        // u64: absolute address of linear memory (host writes; for iovecs)
export const CTL_NOW = 56;             // f64: monotonic loop time in ms (host writes each tick)
export const CTL_WALL = 64;            // f64: wall-clock time in ms since the epoch (host writes)
// config, written by the host before init (i32 unless noted)
export const CFG_MAX_FDS = 72;         // size of the fd-indexed tables (RLIMIT_NOFILE)
export const CFG_MODE = 76;            // MODE_LT or MODE_ET for the built-in protocols
                                       // 80: CFG_RELAY (tcp-mode relay, below)
export const CFG_IDLE_TIMEOUT = 84;    // ms; 0 = none
export const CFG_HEADER_TIMEOUT = 88;  // ms; 0 = none
export const CFG_WRITE_BUF_MAX = 92;   // bytes per connection (slow-reader limit)
export const CFG_MAX_LINE = 96;        // request-line limit (414)
export const CFG_MAX_HEADER = 100;     // header-block limit (431)
export const CFG_MAX_HEADERS = 104;    // header count limit (431)
export const CFG_MAX_BODY = 108;       // request body limit (413)
export const CFG_MAX_EVENTS = 112;     // events per backend wait (maxevents)
export const CFG_ACCESS_LOG = 116;     // ACCESS_LOG_*: emit OP_LOG access lines (LOG_ACCESS), in this format
export const CFG_READ_BUF = 120;       // size of one receive buffer (bytes)
export const CFG_LISTING = 124;        // 1: list directories that have no index.html
// counters, written by the core (u32 unless noted); observability
export const STAT_ACCEPTED = 128;
export const STAT_CLOSED = 132;
export const STAT_REQUESTS = 136;
export const STAT_RESPONSES_4XX = 140;
export const STAT_RESPONSES_5XX = 144;
export const STAT_TIMEOUTS = 148;      // idle + header timeouts
export const STAT_OVERFLOWS = 152;     // connections closed at the write-buffer limit
export const STAT_LIVE_CONNS = 156;
export const STAT_ACCEPT_PAUSED = 160; // 1 while accepting is paused (EMFILE/ENFILE)
export const STAT_TIMERS = 164;        // live timers
export const STAT_WBUF_BYTES = 168;    // bytes held in write buffers
export const STAT_RBUF_HELD = 172;     // receive buffers held by connections
export const STAT_BYTES_IN = 176;      // f64
export const STAT_BYTES_OUT = 184;     // f64
export const STAT_TRAPS = 192;         // traps contained by recover()
export const STAT_STALE_CQES = 196;    // completions ignored: their tag was stale, unknown or a duplicate
// HTTP response and logging options (fields taken from the top of the block down)
export const STAT_LOG_DROPPED = 240;   // log lines dropped: the round's log area was full
export const CFG_PRECOMPRESSED = 244;  // 1: serve X.br / X.gz sidecars to clients that accept them (FILE_FLAGS)
export const CFG_CORS = 248;           // 1: CORS headers on every response, OPTIONS preflights get 204
export const CFG_CACHE_CONTROL = 252;  // length of the Cache-Control value at CFGT_CACHE_CONTROL (0: no header)

export const ABI_VERSION = 3;          // 2: neutral events and interest (EV_*); 3: tagged io_uring-shaped SQE/CQE
export const SCRATCH_SIZE = 4096;

// ---- config text -----------------------------------------------------------
// Text-valued settings. The export `configText()` returns the address of
// CFG_TEXT_SIZE bytes (static, like the control block) where the host writes
// them before init(); a CFG_* field above gives each one's length. The host
// validates them (printable ASCII); the core copies them into its headers.
export const CFG_TEXT_SIZE = 512;
export const CFGT_CACHE_CONTROL = 0;    // Cache-Control value, at most CACHE_CONTROL_MAX bytes
export const CACHE_CONTROL_MAX = 256;

// CFG_ACCESS_LOG values
export const ACCESS_LOG_OFF = 0;
export const ACCESS_LOG_COMBINED = 1;   // nginx/Apache "combined"
export const ACCESS_LOG_JSON = 2;       // one JSON object per line

// modes, and the protocols listen(fd, proto) serves
export const MODE_LT = 0;
export const MODE_ET = 1;
export const PROTO_ECHO = 1;
export const PROTO_HTTP = 2;

// ---- submission queue entry (SQE): io_uring's layout ----------------------
// Size 64 bytes, field for field `struct io_uring_sqe` (liburing
// io_uring.h), so an io_uring executor can pass kernel ops through:
//   +0  u8  opcode        OP_*
//   +1  u8  flags         (IOSQE_*; 0 today)
//   +2  u16 ioprio        (0)
//   +4  i32 fd
//   +8  u64 off           file offset (-1: the fd's position; sockets ignore it) / addr2
//   +16 u64 addr          buffer, iovec array, sockaddr, path (see below)
//   +24 u32 len           bytes, iovec count, shutdown's how
//   +28 u32 op_flags      msg_flags (send), accept_flags (accept), ...
//   +32 u64 user_data     the tag: the completion carries it back (CQE_USER_DATA)
//   +40 u16 buf_index     (0)
//   +42 u16 personality   (0)
//   +44 i32 splice_fd_in  sendfile's input fd
//   +48 u64 addr3         (0)
//   +56 8 bytes pad
// Addresses (off/addr) are offsets into linear memory, not absolute
// addresses: memory.grow may give linear memory a new base between the
// core writing a request and the host carrying it out (a JS call in the same
// round), so only the executor, at the moment it issues the call, adds the
// base (an io_uring executor adds it while copying into its ring; a 64-byte
// copy and one add). It also keeps recordings free of addresses that change
// from run to run. Native iovecs (OP_WRITEV's array) hold absolute
// addresses, as the kernel reads them itself.
// Kernel ops use IORING_OP_* numbers; what io_uring lacks (sendfile) and
// what is not a kernel op (interest changes, for the event backend; host
// services) use codes from 0x80 up, outside io_uring's range.
export const SQE_SIZE = 64;
export const SQE_OPCODE = 0;    // u8
export const SQE_FLAGS = 1;     // u8
export const SQE_IOPRIO = 2;    // u16
export const SQE_FD = 4;        // i32
export const SQE_OFF = 8;       // u64
export const SQE_ADDR = 16;     // u64
export const SQE_LEN = 24;      // u32
export const SQE_OP_FLAGS = 28; // u32
export const SQE_USER_DATA = 32; // u64: lo word = in-flight slot, hi word = its generation
export const SQE_BUF_INDEX = 40; // u16
export const SQE_PERSONALITY = 42; // u16
export const SQE_SPLICE_FD_IN = 44; // i32
export const SQE_ADDR3 = 48;    // u64
// ---- completion queue entry (CQE): io_uring's layout -----------------------
// Size 16 bytes, `struct io_uring_cqe`: the tag of the request it completes
// and its result (>= 0, or -errno). complete(n) takes n of them, in any
// order; the core routes each by its tag.
export const CQE_SIZE = 16;
export const CQE_USER_DATA = 0; // u64, copied from SQE_USER_DATA
export const CQE_RES = 8;       // i32
export const CQE_FLAGS = 12;    // u32 (0)

// ops, with their fields (io_uring's where io_uring has the op). Op 0
// (IORING_OP_NOP) is unused, so an SQE of zeroed memory is never a request.
export const OP_WRITEV = 2;    // IORING_OP_WRITEV: writev(fd, addr = native iovecs (absolute addresses), len = count) -> bytes
export const OP_ACCEPT = 13;   // IORING_OP_ACCEPT: accept4(fd, addr, off = addr + SA_LEN, op_flags) -> new fd; addr 0: NULL, NULL.
                               // addr is an ACCEPT_ADDR slot: the core writes the capacity at +SA_LEN, the
                               // kernel the peer's sockaddr and its length (the recorder keeps all 32 bytes)
export const OP_CLOSE = 19;    // IORING_OP_CLOSE: close(fd) -> 0
export const OP_PREAD = 22;    // IORING_OP_READ: pread(fd, addr, len, off) -> bytes (files)
export const OP_WRITE = 23;    // IORING_OP_WRITE: write(fd, addr, len), off = 0 (sockets: ignored) -> bytes
export const OP_SEND = 26;     // IORING_OP_SEND: send(fd, addr, len, op_flags = msg_flags) -> bytes (a head with MSG_MORE before sendfile)
export const OP_READ = 27;     // IORING_OP_RECV: recv(fd, addr, len, 0), a read of a socket -> bytes
export const OP_SHUTDOWN = 34; // IORING_OP_SHUTDOWN: shutdown(fd, len = how) -> 0
export const OP_CONNECT = 16;  // IORING_OP_CONNECT: connect(fd, addr = sockaddr, off = its length) -> 0 or -errno. Non-blocking:
                               // -EINPROGRESS; the core waits for WRITABLE and issues it again: 0 (or -EISCONN)
                               // once connected, -EALREADY while pending, the error (ECONNREFUSED...) if it failed
                               // (Linux's connect() reports SO_ERROR so). io_uring's own CONNECT completes at the end.
export const OP_SOCKET = 45;   // IORING_OP_SOCKET: socket(domain = fd field, type = off, protocol = len) -> new fd.
                               // The core's submit(OP_SOCKET, owner, domain, type, 0, 0) keeps the fd it acts for
                               // (a proxy's client) in its in-flight entry; the SQE carries io_uring's fields.
                               // Completed in its round, always (as ACCEPT). op_flags = SOCKET_*: options the
                               // executor sets on the new socket (io_uring's SOCKET takes none: an executor that
                               // sends it to the ring clears the field and sets them after)
export const SOCKET_NODELAY = 1; // TCP_NODELAY (as nginx and HAProxy set on upstream connections)
export const OP_SENDFILE = 0x80; // not in io_uring: sendfile(fd, splice_fd_in, addr = i64 offset (kernel-updated), len) -> bytes
export const OP_CTL = 0x81;    // set interest, for the event backend: backend.setInterest(fd, len = INTEREST_*,
                               // op_flags = EV_* bits, off = the slot's generation) -> 0 or -errno (every backend:
                               // EEXIST on ADD of a watched fd, ENOENT on MOD/DEL of an unwatched one, as
                               // epoll_ctl). Carried out by the backend, synchronously, in every executor.
// Host services (not kernel calls: completed synchronously by every executor).
// Their four arguments a0..a3 (reactor/ctl.ts submit()) are addr, len,
// op_flags and off, in that order; so are READ's, WRITE's, SEND's, WRITEV's.
export const OP_CALL = 0x90;   // call JS: addr = CALL_*, len = id, op_flags = events, off = per CALL_* -> 0 (or -1 if it threw)
export const OP_OPEN = 0x91;   // open file addr (NUL-terminated path, relative to the docroot), len = its length,
                               // fill FILE record at op_flags -> fd (or -errno). off = 1: stat only, no open
export const OP_LOG = 0x92;    // log len bytes at addr with level op_flags (LOG_*) -> 0
export const OP_STOP = 0x93;   // stop the loop (shutdown finished) -> 0
export const OP_LIST = 0x94;   // list directory: addr holds its NUL-terminated path (length op_flags, relative to the
                               // docroot); the host writes an HTML listing there, at most len bytes -> length
export const OP_METRICS = 0x95; // copy the other workers' snapshots (MS_*) into addr, len bytes = CFG_METRICS_PEERS
                               // x metricsSnapshotSize(), one after the other -> snapshots copied (metrics block below)
/** Bound of the op codes (tables indexed by op). */
export const OP_COUNT = 0x96;
// accept_flags: SOCK_NONBLOCK | SOCK_CLOEXEC (Linux values), in every OP_ACCEPT
export const ACCEPT_FLAGS = 0x80800;

export const MSG_MORE = 0x8000;

export const CALL_IO = 1;      // a1 = handler id, a2 = REACTOR_* events, fd
export const CALL_TIMER = 2;   // a1 = timer id
export const CALL_TASK = 3;    // a1 = task id
export const CALL_CTL_ERROR = 4; // the backend refused an interest change for JS handler a1 on fd: a2 = errno
                               // (positive), a3 = INTEREST_ADD/MOD. The core removed that handler.

export const LOG_ERROR = 0;
export const LOG_WARN = 1;
export const LOG_INFO = 2;
export const LOG_ACCESS = 3;
export const LOG_DEBUG = 4;            // (ops) below info: built only when OPS_LOG_LEVEL asks for it

// ---- connection record (built-in protocols) --------------------------------
// One per fd in the core's connection table (reactor/conn.ts), CONN_SIZE
// bytes. The host never touches it; the fuzzer's reports read fields through
// the core's debugConnI32/debugConnF64(fd, C_*). Below is the part
// every protocol shares; from C_PROTO_AREA on the bytes are the protocol's
// own (proto/http.ts H_*, reactor/listener.ts).
export const CONN_SIZE = 256;
export const C_STATE = 0;      // i32 protocol state; 0 = free record
export const C_FLAGS = 4;      // i32 CF_*
export const C_PROTO = 8;      // i32 PROTO_* (or PROTO_LISTENER)
export const C_NEXT = 12;      // i32 run-queue link (fd), -1 = end
export const C_RBUF = 16;      // i32 held receive buffer, 0 = none
export const C_RLEN = 20;      // i32 bytes in the receive buffer
export const C_RPOS = 24;      // i32 first unprocessed byte in the receive buffer
export const C_WRING = 28;     // i32 write ring, 0 = none
export const C_WCLS = 32;      // i32 ring size class (size = 4096 << cls)
export const C_WHEAD = 36;     // i32 ring read position
export const C_WLEN = 40;      // i32 bytes in the ring
export const C_WNEXT = 44;     // i32 timing-wheel link: next record + 1 in its slot's list, 0 = end (reactor/wheel.ts)
export const C_WARMED = 48;    // u32 wheel tick of the slot the record is linked in (where it next comes up)
export const C_WDUE = 52;      // u32 wheel tick of the deadline itself (>= C_WARMED: deadlines that move later are lazy)
export const C_INFLIGHT = 56;  // i32 OP_* in flight, 0 = none
export const C_IOV = 60;       // i32 bytes requested by the write in flight
export const C_BODY_KIND = 64; // i32 BODY_*
export const C_BODY_PTR = 68;  // i32 memory body address / file-cache entry
export const C_BODY_FD = 72;   // i32 file fd for sendfile
export const C_WPREV = 76;     // i32 timing-wheel link: previous record + 1, or -(list + 1) at a list's head, 0 = not armed
export const C_BODY_LEFT = 80; // f64 body bytes still to send
export const C_BODY_OFF = 88;  // i64 sendfile offset (the kernel updates it in place)
export const C_IOVECS = 96;    // 3 native iovecs (16 bytes each): 96..143
export const C_PROTO_AREA = 144; // 112 bytes the protocol may use: 144..255

// ---- timing wheel (reactor/wheel.ts): connection deadlines ------------------
// Deadlines of built-in connections (idle, header, linger, proxy connect and
// upstream, health probes) live in a hierarchical timing wheel linked through
// the connection records (C_W* above); exact timers (JS, protocol, shutdown,
// accept retry) stay in the heap (reactor/timers.ts). A deadline fires no
// earlier than set and at most WHEEL_TICK_MS late (plus the loop's own lag).
export const WHEEL_TICK_MS = 4;        // granularity G: the wheel's slot width, ms
export const WHEEL_LEVEL_BITS = 6;     // 64 slots per level
export const WHEEL_LEVELS = 5;         // level k: slots of G * 64^k ms; the top spans 2^30 G (~49.7 days)

// ---- FILE record (OP_OPEN) -----------------------------------------------
// Size 48 bytes, written by the host:
//   +0  i32 kind   FILE_*
//   +4  i32 mimeLen (bytes written at FILE_MIME, at most FILE_MIME_MAX)
//   +8  f64 size
//   +16 f64 mtimeMs
//   +24 f64 ino
//   +32 f64 dev
//   +40 i32 flags  FILE_HAS_* (regular files; only with CFG_PRECOMPRESSED, else 0)
//   +44 i32 reserved
export const FILE_SIZE = 48;
export const FILE_KIND = 0;
export const FILE_MIME_LEN = 4;
export const FILE_BYTES = 8;
export const FILE_MTIME = 16;
export const FILE_INO = 24;
export const FILE_DEV = 32;
export const FILE_FLAGS = 40;
export const FILE_MIME = 48;            // MIME type text follows the record
export const FILE_MIME_MAX = 80;
export const FILE_RECORD_TOTAL = 128;   // FILE_SIZE + FILE_MIME_MAX, rounded
export const FILE_REGULAR = 1;
export const FILE_DIRECTORY = 2;
export const FILE_OTHER = 3;            // exists, but neither: 403/404
// FILE_FLAGS: precompressed sidecars next to a regular file X, found beneath
// the root (openat2 RESOLVE_BENEATH) and regular themselves. Checked on every
// open and re-check of X: a changed bit is a change of X.
export const FILE_HAS_BR = 1;           // X.br
export const FILE_HAS_GZIP = 2;         // X.gz

// ---- accept address slot (OP_ACCEPT a0) ------------------------------------
// Size 32 bytes: a struct sockaddr_in6 (28 bytes, big enough for sockaddr_in)
// and the socklen_t accept4 reads and updates.
//   +0  u16 family   AF_INET / AF_INET6
//   +2  u16 port     network byte order
//   +4  4 bytes      IPv4 address (sockaddr_in)
//   +8  16 bytes     IPv6 address (sockaddr_in6; +4 is its flowinfo)
//   +28 u32 length   capacity in, the address's length out
export const ACCEPT_ADDR_SIZE = 32;
export const SA_FAMILY = 0;
export const SA_PORT = 2;
export const SA_IN_ADDR = 4;
export const SA_IN6_ADDR = 8;
export const SA_LEN = 28;
export const SA_CAPACITY = 28;          // what the core writes at SA_LEN
export const AF_INET = 2;
export const AF_INET6 = 10;

// ---- events and interest (the core-host contract; no kernel's values) ------
// THE bit set: the core asks for interest in these bits (OP_CTL a1) and reads
// them in event records; JS callbacks see them too (host/reactor.ts exports
// them as READABLE, WRITABLE, ...). A backend (host/backend/*.ts) translates
// them to and from its kernel's (epoll, poll, kqueue) and nothing else.
export const EV_READABLE = 1;           // input, a pending accept, or the peer's FIN (read returns 0)
export const EV_WRITABLE = 2;
export const EV_ERROR = 4;              // always reported, never asked for
export const EV_HANGUP = 8;             // peer hung up (either direction); always reported
export const EV_EDGE = 16;              // interest only: edge-triggered (report a bit once per new readiness)
// JS-facing names of the same bits (kept: the library API has always used them)
export const REACTOR_READABLE = EV_READABLE;
export const REACTOR_WRITABLE = EV_WRITABLE;
export const REACTOR_ERROR = EV_ERROR;
export const REACTOR_HANGUP = EV_HANGUP;
export const REACTOR_EDGE = EV_EDGE;

// OP_CTL a0: what to do with the fd's interest (same numbers as epoll's, so a
// packed epoll backend passes them through; no other code relies on that)
export const INTEREST_ADD = 1;
export const INTEREST_DEL = 2;
export const INTEREST_MOD = 3;

// ---- event record ----------------------------------------------------------
// Size 12 bytes, 4-aligned:
//   +0  i32 bits        EV_* (never EV_EDGE)
//   +4  i32 fd
//   +8  i32 generation  the slot generation the interest request carried (a2)
// Chosen so that epoll on x86-64 writes its packed struct epoll_event
// (events u32 at +0, data u64 = fd | gen << 32 at +4) straight into the
// area and the backend rewrites only the bits word.
export const EVENT_SIZE = 12;
export const EVENT_BITS = 0;
export const EVENT_FD = 4;
export const EVENT_GEN = 8;

// ---- invariant codes -------------------------------------------------------
// What the core's checkInvariants() returns (the fuzzer calls it after every
// core call, `replay --check` too): INV_OK, or the first invariant broken.
// host/abi-names.ts says what each means in words.
export const INV_OK = 0;
export const INV_TIMER_HEAP = 1;       // timer heap: order, index map or counts
export const INV_ZOMBIE = 2;           // a handler slot both zombie and live outside a batch
export const INV_CONN_HANDLER = 3;     // a built-in connection and its handler slot disagree
export const INV_RBUF_BOUNDS = 4;      // receive-buffer offsets out of range
export const INV_WRING_BOUNDS = 5;     // write ring over the limit or over its own size
export const INV_RUN_QUEUE = 6;        // run-queue cycle, or a queued flag out of sync
export const INV_RBUF_HELD = 7;        // receive buffers held != connections holding one
export const INV_RING_BYTES = 8;       // ring-pool bytes held != write rings + response buffers + cached bodies
export const INV_TIMER_WHEEL = 9;      // timing wheel: links, slot of a record, bitmaps or counts

// ---- errno (Linux, same on x86-64 and arm64) ------------------------------
// The one errno table: the core compares results with these, the host names
// errors by them (host/libc.ts errnoName builds its name table from every
// E* constant here except the EV_/EVENT_ ones, so a name is written once).
// Only errno values may have an E name without an underscore.
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5; // file writes (host/writer/): EIO, EFBIG, ENOSPC, EROFS, EDQUOT
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EEXIST = 17;
export const EXDEV = 18;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const EINVAL = 22;
export const ENFILE = 23;
export const EMFILE = 24;
export const EFBIG = 27;
export const ENOSPC = 28;
export const ESPIPE = 29;             // lseek on a pipe or socket (io API)
export const EROFS = 30;
export const EPIPE = 32;
export const ENAMETOOLONG = 36;
export const ENOSYS = 38;
export const ELOOP = 40;
export const EPROTO = 71;
export const ENOTSOCK = 88;            // a socket op on a file (io API)
export const EAFNOSUPPORT = 97;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const ECONNABORTED = 103;
export const ECONNRESET = 104;
export const ENOBUFS = 105;
export const ENOTCONN = 107;
export const ETIMEDOUT = 110;
export const ECONNREFUSED = 111;
export const EINPROGRESS = 115;        // a nonblocking connect under way (io API)
export const EDQUOT = 122;
export const ECANCELED = 125;          // an io API op settled by close(fd) or stop()
export const EALREADY = 114;           // connect: still under way
export const EISCONN = 106;            // connect: already connected (a repeated connect after success)
export const EHOSTUNREACH = 113;
export const ENETUNREACH = 101;

// ---- proxy: upstreams and balancing (assembly/proxy/upstreams.ts, balance.ts) ----
// Balancing policies (balancePick's first argument, BCFG_POLICY).
export const BAL_RR = 1;               // round robin, weights ignored
export const BAL_WRR = 2;              // nginx's smooth weighted round robin
export const BAL_LEAST_CONN = 3;       // fewest active requests / weight, ties by smooth wrr (nginx least_conn)
export const BAL_P2C = 4;              // two random upstreams, the one with fewer active requests / weight (Envoy)
export const BAL_IP_HASH = 5;          // consistent hash (Maglev) of the client address
export const BAL_HASH = 6;             // consistent hash (Maglev) of a request key
export const BAL_RANDOM = 7;           // weighted random
export const UPSTREAMS_MAX = 256;      // table size (one byte per Maglev entry; see upstreams.ts)
export const UPSTREAM_WEIGHT_MAX = 10000;

// Balance config record: `balanceConfig()` returns its address (static, like
// the control block); the host writes it before init, balanceInit() reads
// it. Kept out of CTL so the proxy's own CFG_* fields have the free offsets.
// i32 fields; 0 means the default given.
export const BCFG_SIZE = 64 + 256;     // grown by the health block below (the check's path at BCFG_CHECK_PATH)
export const BCFG_POLICY = 0;          // BAL_* (0: BAL_WRR); what the proxy passes to balancePick
export const BCFG_SEED = 4;            // u32 PRNG seed for p2c / random (0: a fixed seed); replays repeat it
export const BCFG_MAX_FAILS = 8;       // consecutive failures that eject (0: 3; < 0: never eject)
export const BCFG_EJECT_BASE = 12;     // ms of the first ejection; the n-th lasts n x this (0: 10000)
export const BCFG_EJECT_MAX = 16;      // ms, cap of an ejection (0: 300000)
export const BCFG_SLOW_START = 20;     // ms an upstream coming back ramps its weight over, 10% -> 100% (0: off)
export const BCFG_RISE = 24;           // consecutive good health checks that bring a down upstream up (0: 2)
export const BCFG_FALL = 28;           // consecutive bad health checks that take an up upstream down (0: 3)

// Upstream states (UPSTAT_STATE)
export const UPSTATE_UP = 0;
export const UPSTATE_DOWN = 1;         // the active health check says down (fall reached)
export const UPSTATE_EJECTED = 2;      // passive health: ejected until UPSTAT_EJECT_UNTIL

// Upstream stats record: proxyStatsWrite(ptr, cap) writes one per upstream,
// in table order (index = upstream), UPSTAT_SIZE bytes each; cap is in bytes.
// proxyStatsBuffer() is a static area with room for UPSTREAMS_MAX of them.
// Counters that only grow are f64 (exact to 2^53), gauges i32.
export const UPSTAT_SIZE = 256;
export const UPSTAT_STATE = 0;         // i32 UPSTATE_*
export const UPSTAT_WEIGHT = 4;        // i32 configured weight
export const UPSTAT_RAMP = 8;          // i32 slow-start ramp, per mille of the weight in use (1000: full)
export const UPSTAT_ACTIVE_CONNS = 12; // i32
export const UPSTAT_ACTIVE_REQS = 16;  // i32
export const UPSTAT_CONSEC_FAILS = 20; // i32 consecutive failures (reset by a success and by an ejection)
export const UPSTAT_EJECTIONS = 24;    // i32 times ejected
export const UPSTAT_TRANSITIONS = 28;  // i32 state changes (each one logged)
export const UPSTAT_CONNS = 32;        // f64 connections opened
export const UPSTAT_REQUESTS = 40;     // f64 requests ended
export const UPSTAT_FAILURES = 48;     // f64 failures reported
export const UPSTAT_RETRIES = 56;      // f64 requests retried away from this upstream
export const UPSTAT_BYTES_TO = 64;     // f64 bytes sent to the upstream
export const UPSTAT_BYTES_FROM = 72;   // f64 bytes received from it
export const UPSTAT_LATENCY_SUM = 80;  // f64 ms, summed over requests that got a response
export const UPSTAT_EJECT_UNTIL = 88;  // f64 ms (loop time) the current ejection ends; 0: not ejected
export const UPSTAT_STATUS = 96;       // f64 x 6: requests by status class, [0] no response, [1] 1xx .. [5] 5xx
export const UPSTAT_STATUS_CLASSES = 6;
export const UPSTAT_LATENCY = 144;     // f64 x UPSTAT_BUCKETS: responses by latency, NOT cumulative:
                                       // [i] counts le_i-1 < ms <= le_i (the last one: above the last bound)
export const UPSTAT_BUCKETS = 14;      // bounds in ms: 1 2.5 5 10 25 50 100 250 500 1000 2500 5000 10000, +Inf
                                       // 144 + 14 x 8 = 256

// ---- proxy (helper "proxy": outgoing connects, tcp-mode relay) -------------
// CTL offsets taken: 200, 204, 212 (208 is fairness's STAT_FAIR_DEFERRED; the
// policy and seed live in the balance config record, BCFG_*).
export const CFG_PEER_ADDRS = 200;           // 1: accepts ask for the peer's address (the proxy's ip-hash); the access log implies it
export const PROTO_PROXY_TCP = 3;
export const CFG_PROXY_CONNECT_TIMEOUT = 204; // ms; 0 = none
export const STAT_PROXY_NO_UPSTREAM = 212;   // clients closed: no usable upstream (or both tries failed)
// Upstreams: the host writes them before init() into the record at the export
// proxyConfig() (PXC_SIZE bytes, static like the control block):
//   +0 i32 count, then count entries of PXU_SIZE bytes: i32 weight, i32 sockaddr length, 28 bytes sockaddr
export const PXC_MAX_UPSTREAMS = UPSTREAMS_MAX;
export const PXU_SIZE = 36;
export const PXU_WEIGHT = 0;
export const PXU_SA_LEN = 4;
export const PXU_SA = 8;
export const PXC_SIZE = 4 + PXC_MAX_UPSTREAMS * PXU_SIZE;

// ---- tcp-mode relay through splice(2) (helper "spliceimpl", issue 10) -----
// CTL offset taken: 80. Ops: 30 (IORING_OP_SPLICE's number), 0x7f (no io_uring op;
// below OP_CTL, so every executor carries it as a kernel call).
export const CFG_RELAY = 80;        // RELAY_*: how tcp mode moves bytes
export const RELAY_COPY = 0;        // read() into a receive buffer, copy into the peer's write ring, write()
export const RELAY_SPLICE = 1;      // splice(socket -> the direction's pipe), splice(pipe -> the peer's socket)
export const OP_SPLICE = 30;        // IORING_OP_SPLICE: splice(splice_fd_in, NULL, fd (fd_out), NULL, len,
                                    // op_flags & SPLICE_FLAGS) -> bytes. addr and off (the offsets) are unused
                                    // (0: no offsets; sockets and pipes have none). op_flags also holds
                                    // SPLICE_TO_PIPE (not a kernel bit: cleared before the call) when fd_in is the
                                    // socket, so an edge-emulating backend knows which end met EAGAIN
export const OP_PIPE = 0x7f;        // not in io_uring: pipe2(addr = two i32: read end, write end, op_flags) -> 0;
                                    // the executor writes the two fds at addr (recorded, as ACCEPT's address)
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const SPLICE_FLAGS = 0xf;    // the kernel's SPLICE_F_* bits
export const SPLICE_TO_PIPE = 0x100; // the splice-in of a socket into its pipe (READABLE's side), else pipe -> socket
export const PIPE_FLAGS = 0x80800;  // O_NONBLOCK | O_CLOEXEC, in every OP_PIPE

// ---- proxy: active health checks (helper "health": assembly/proxy/health.ts) ----
// Fields of the balance config record (BCFG_*, above); no CTL offsets taken.
export const PROTO_PROXY_PROBE = 5;          // the probes' connections (never a listener's protocol)
export const BCFG_CHECK = 32;                // CHECK_* (0: none: every upstream stays up as far as checks go)
export const BCFG_CHECK_INTERVAL = 36;       // ms between two probes of one upstream (0: 2000, HAProxy's inter)
export const BCFG_CHECK_TIMEOUT = 40;        // ms a probe may take, connect to response head (0: 1000)
export const BCFG_CHECK_PATH_LEN = 44;       // bytes of the http check's path at BCFG_CHECK_PATH
export const BCFG_CHECK_PORT = 48;           // port the probes connect to (0: the upstream's own; HAProxy's `check port`)
export const BCFG_CHECK_PATH = 64;           // CHECK_PATH_MAX bytes: origin-form path ("/health")
export const CHECK_PATH_MAX = 256;
export const CHECK_NONE = 0;
export const CHECK_TCP = 1;                  // a connect that succeeds is good
export const CHECK_HTTP = 2;                 // GET path: a 2xx or 3xx response head is good
// A probe's outcome (proxyHealthLast(u)): >= 100 the HTTP status; < 0 -errno of the connect, write or read.
export const CHECK_RES_NONE = 0;             // no probe finished yet
export const CHECK_RES_CONNECTED = 1;        // tcp check: connected
export const CHECK_RES_TIMEOUT = 2;          // no answer within the timeout
export const CHECK_RES_INVALID = 3;          // not a valid HTTP/1.x response head (or larger than a receive buffer)
export const CHECK_RES_CLOSED = 4;           // the upstream closed before a complete head
// ---- http-mode proxy (helper "proxy-http") ---------------------------------
// CTL offsets taken: 216, 220, 224.
export const PROTO_PROXY_HTTP = 4;
export const CFG_PROXY_UPSTREAM_TIMEOUT = 216; // ms from the request's bytes to the response head (504); 0 = none
export const CFG_PROXY_KEEPALIVE = 220;        // idle pooled connections per upstream (0: no pool; < 0: 32)
export const CFG_PROXY_HASH_KEY = 224;         // HASH_KEY_*: the request key of --balance hash
export const HASH_KEY_PATH = 1;                // the request target (path and query)
export const HASH_KEY_HEADER = 2;              // a header's value; its name (lower case) at proxyHashKeyConfig(): i32 length, bytes
export const HASH_KEY_NAME_MAX = 64;
// Per upstream, at proxyHttpUpstreamStats(u), PXH_SIZE bytes of f64:
export const PXH_SIZE = 24;
export const PXH_REUSES = 0;                   // requests sent on a pooled connection
export const PXH_CONNECTS = 8;                 // requests that opened a new connection
export const PXH_POOLED = 16;                  // connections put back in the pool
// Global, at proxyHttpStats(), PXG_SIZE bytes of f64:
export const PXG_SIZE = 56;
export const PXG_RETRIES = 0;                  // requests retried on another upstream (or a new connection)
export const PXG_502 = 8;                      // 502 answered (upstream failed before a head, invalid head)
export const PXG_503 = 16;                     // 503 answered (no usable upstream)
export const PXG_504 = 24;                     // 504 answered (no head within the upstream timeout)
export const PXG_4XX = 32;                     // requests refused by the parser (never forwarded)
export const PXG_TRUNCATED = 40;               // responses cut off by a close (the upstream failed mid-body)
export const PXG_POOL_DROPPED = 48;            // pooled connections dropped: closed / readable while idle

// ---- operations (helper "ops"): log levels and events, the connection cap ----
// CTL offsets taken: 228, 232.
export const CFG_FILE_CACHE_FDS = 232;       // fds the open-file cache may keep open (0: as many as it has entries, 2048)
export const CFG_MAX_CONNECTIONS = 228;      // accepted connections open at most (0: no cap). At the cap the
                                             // listeners leave the backend's interest and new connections wait in
                                             // the kernel's listen queue; accepting resumes as soon as one closes
// Ops config record: `opsConfig()` returns its address (static, like the control
// block); the host writes it before init(). i32 fields.
export const OPS_SIZE = 16;
export const OPS_LOG_LEVEL = 0;              // the most verbose level the core emits, as LOG_* + 1 (0: unset = LOG_INFO);
                                             // lines above it are never built (LOG_ACCESS is a stream of its own: always)
// OP_LOG's `off` field: what the line is about, named by host/log.ts (the `event` of a JSON line).
export const LOGEV_MESSAGE = 0;              // no event of its own ("message")
export const LOGEV_ACCEPT_PAUSED = 1;        // out of fds (EMFILE/ENFILE): accepting paused
export const LOGEV_ACCEPT_RESUMED = 2;       // an accept succeeded again after a pause
export const LOGEV_UPSTREAM_STATE = 3;       // an upstream went up, down, was ejected or came back
export const LOGEV_CONN_LIMIT = 4;           // --max-connections reached (accepting stops) / left (resumes); debug
export const LOGEV_CONN_OPEN = 5;            // a connection accepted (debug)
export const LOGEV_CONN_CLOSE = 6;           // a connection closed (debug)
export const LOGEV_COUNT = 7;
// ---- metrics (helper "metrics": assembly/reactor/metrics.ts, assembly/proto/metrics.ts) ----
// The /metrics, /healthz and /readyz listener is a protocol of the core; the
// core renders the Prometheus text itself. CTL offset taken: 44.
export const PROTO_METRICS = 6;
export const CFG_METRICS_PEERS = 44;   // snapshots of other workers the host copies in before each scrape (OP_METRICS); 0: none
// Metrics record: `metricsRecord()` returns its address (static). Counters the
// CTL block has no room for; f64 (exact to 2^53) unless noted.
// Histograms: MH_BUCKETS... f64 bucket counts, NOT cumulative ([i] counts
// bound_i-1 < v <= bound_i, the last one above the last bound), then the sum
// (ms for time, the value otherwise) and the count.
export const MX_SIZE = 640;
export const MX_HOST_UNREADY = 0;      // i32, host writes: 1 = /readyz answers 503 (a shutdown is coming: --shutdown-delay)
export const MX_DRAINING = 4;          // i32, core writes: 1 once a graceful shutdown began
export const MX_FC_ENTRIES = 8;        // i32, core writes: file-cache entries in use
export const MX_UPSTREAMS = 12;        // i32, core writes: upstreams in the table (the snapshot's MS_UP records)
export const MX_CLOSED = 16;           // f64 x MX_CLOSE_REASONS: connections closed, by reason (CLOSE_*)
export const MX_CLOSE_REASONS = 8;
export const CLOSE_CLIENT = 0;         // the peer closed (EOF) or reset (ECONNRESET, EPIPE)
export const CLOSE_SERVER = 1;         // the server ended it (Connection: close, after an error response, a protocol's choice)
export const CLOSE_IDLE_TIMEOUT = 2;
export const CLOSE_HEADER_TIMEOUT = 3; // HTTP: the request head was not complete in time
export const CLOSE_OVERFLOW = 4;       // the write buffer would pass --write-buf-max
export const CLOSE_ERROR = 5;          // a read or write failed otherwise
export const CLOSE_SHUTDOWN = 6;       // closed by a graceful shutdown (idle, or at the end of the grace)
export const CLOSE_TRAP = 7;           // the connection a contained trap was serving
export const MX_METHODS = 80;          // f64 x MX_METHOD_COUNT: requests by method, index = the parser's METHOD_* (0: OTHER)
export const MX_METHOD_COUNT = 10;
export const MX_CLASSES = 160;         // f64 x 5: responses by status class, [0] 1xx .. [4] 5xx
export const MX_FC_HITS = 200;         // f64 file-cache lookups that found the path
export const MX_FC_MISSES = 208;       // f64 file-cache lookups that did not (an open follows)
export const MX_SCRAPES = 216;         // f64 /metrics requests answered
export const MX_LAG = 224;             // histogram, MH_TIME_BUCKETS: loop lag (timer lateness), ms
export const MX_EVENTS = 360;          // histogram, MH_EVENT_BUCKETS: events per dispatched batch
export const MX_DURATION = 480;        // histogram, MH_TIME_BUCKETS: HTTP request duration (head's first byte to flushed response), ms
export const MH_TIME_BUCKETS = 15;     // bounds in s: .0005 .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10, +Inf (17 f64 with sum, count)
export const MH_EVENT_BUCKETS = 13;    // bounds: 0 1 2 4 8 16 32 64 128 256 512 1024, +Inf (15 f64)
// Snapshot: what one worker publishes and another's scrape sums (the host
// copies it between threads byte for byte). metricsSnapshot() fills the
// core's own and returns its address; its size is metricsSnapshotSize() =
// MS_UP + upstreams x MS_UP_SIZE.
export const MS_CTL = 0;               // CTL_SIZE bytes: the control block (STAT_* counters)
export const MS_MX = 256;              // MX_SIZE bytes: the metrics record
export const MS_PXG = 896;             // PXG_SIZE bytes: the http-mode proxy's global counters
export const MS_UP = 952;              // upstreams x UPSTAT_SIZE (proxyStatsWrite records), then upstreams x PXH_SIZE
export const MS_UP_SIZE = 280;         // UPSTAT_SIZE + PXH_SIZE
// ---- fairness and write watermarks (helper "fairness": reactor/budget.ts, reactor/stream.ts) ----
// No CTL offsets taken: a record of its own at the export fairnessConfig()
// (FCFG_SIZE bytes, static like the control block); the host writes the
// settings before init, the core writes the counters. i32 fields.
export const FCFG_SIZE = 32;
export const FCFG_TICK_REQUESTS = 0;   // requests one connection may start per tick (0: 16; < 0: no limit)
export const FCFG_TICK_BYTES = 4;      // bytes one connection may read per tick (0: 256 KiB; < 0: no limit)
export const FCFG_WRITE_HIGH = 8;      // stream connections: write high watermark, bytes (0: min(64 KiB, write-buf-max / 2))
export const FCFG_WRITE_LOW = 12;      // stream connections: low watermark, bytes (0: high / 4)
                                       // 16..31: free
export const STAT_FAIR_DEFERRED = 208; // CTL u32, core: connections whose budget ran out, left for the next tick
export const FAIR_TICK_REQUESTS = 16;  // defaults (nginx/h2o-like: a fair share, not a throttle)
export const FAIR_TICK_BYTES = 256 * 1024;
export const WRITE_HIGH_DEFAULT = 64 * 1024;
// Stream connections (Reactor.adopt): a socket JS hands to the core, which reads and writes it
// with the write ring and its watermarks, and calls JS with what happens:
export const PROTO_STREAM = 7;             // (6 is PROTO_METRICS)
export const CALL_STREAM_DATA = 5;     // a1 = stream id, a2 = byte count, a3 = their address (valid during the call), fd
export const CALL_STREAM_DRAIN = 6;    // a1 = stream id: the write ring is back at the low watermark after a write said "over high"
export const CALL_STREAM_CLOSE = 7;    // a1 = stream id, a2 = errno (positive; 0: the peer's EOF, or JS's end/destroy). Last call.
