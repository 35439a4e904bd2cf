// Raw file descriptors for Reactor tests: the few libc calls the host does
// not bind (socketpair), plus Buffer-based read/write that report errno the
// way a callback sees it. Uses the host's own koffi binding where it exists.
import { createRequire } from "node:module";
import { libc, errno } from "../../dist/index.js";

const require = createRequire(import.meta.url);
const koffi = require("koffi");
const lib = koffi.load("libc.so.6");
const socketpairRaw = lib.func("int socketpair(int, int, int, _Out_ void *)");

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
export const EAGAIN = 11;

/** A connected pair of non-blocking AF_UNIX stream sockets: [a, b]. */
export function socketpair() {
  const sv = Buffer.alloc(8);
  if (socketpairRaw(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    throw new Error(`socketpair: errno ${errno()}`);
  }
  return [sv.readInt32LE(0), sv.readInt32LE(4)];
}

/** read(2) into a fresh Buffer: {n, errno, data}. */
export function readFd(fd, max = 65536) {
  const buf = Buffer.alloc(max);
  const n = libc.readBuf(fd, buf, max);
  return n < 0 ? { n, errno: errno(), data: Buffer.alloc(0) } : { n, errno: 0, data: buf.subarray(0, n) };
}

/** write(2) of a string or Buffer: bytes written, or -errno. */
export function writeFd(fd, data) {
  const buf = Buffer.from(data);
  const n = libc.writeBuf(fd, buf, buf.length);
  return n < 0 ? -errno() : n;
}

export function closeFd(fd) { libc.close(fd); }

const connectRaw = lib.func("int connect(int, void *, uint32)");
const AF_INET = 2;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;

/**
 * A blocking TCP socket connected to 127.0.0.1:port with a small receive
 * buffer and, if `mss` is given, a small maximum segment size, both set
 * before connect. On loopback the kernel sizes the *server's* send buffer
 * from the MSS (64 KiB segments: over a megabyte), so an ordinary slow reader
 * never makes the server's writes partial; with a small MSS it does, and the
 * server's own write ring is exercised. Wrap the fd with
 * `new net.Socket({ fd })` (libuv makes it non-blocking).
 */
export function connectNarrow(port, { rcvbuf = 4096, mss = 1024 } = {}) {
  const fd = libc.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket: errno ${errno()}`);
  const v = Buffer.alloc(4);
  v.writeInt32LE(rcvbuf);
  libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, v, 4);
  if (mss) { v.writeInt32LE(mss); libc.setsockopt(fd, 6 /* IPPROTO_TCP */, 2 /* TCP_MAXSEG */, v, 4); }
  const addr = Buffer.alloc(16);
  addr.writeUInt16LE(AF_INET, 0);
  addr.writeUInt16BE(port, 2);
  addr.set([127, 0, 0, 1], 4);
  if (connectRaw(fd, addr, 16) < 0) { const e = errno(); libc.close(fd); throw new Error(`connect: errno ${e}`); }
  return fd;
}
