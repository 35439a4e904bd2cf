// Listening sockets. Setup happens once, so it uses Buffers and throws
// SysError with the errno name (EADDRINUSE, EACCES...) on failure.
import { isIP } from "node:net";
import { readFileSync } from "node:fs";
import {
  libc, check, AF_INET, AF_INET6, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET, SO_REUSEADDR,
  SO_REUSEPORT, SO_SNDBUF, IPPROTO_TCP, TCP_NODELAY, TCP_DEFER_ACCEPT, IPPROTO_IPV6, IPV6_V6ONLY, SysError, errno,
} from "./libc.ts";

export interface ListenOptions {
  host?: string;
  port?: number;
  /** Default 65535; the kernel caps it at net.core.somaxconn. */
  backlog?: number;
  reusePort?: boolean;
  /** TCP_DEFER_ACCEPT seconds: accept only once the client has sent data (HTTP). */
  deferAccept?: number;
  /** SO_SNDBUF for accepted connections (they inherit it); default: the kernel's autotuning. */
  sendBuffer?: number;
}

export interface Listener { fd: number; host: string; port: number; backlog: number; somaxconn: number }

function sockaddr(host: string, port: number): { family: number; addr: Buffer } {
  const family = isIP(host);
  if (family === 4) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    host.split(".").forEach((p, i) => b.writeUInt8(Number(p), 4 + i));
    return { family: AF_INET, addr: b };
  }
  if (family === 6) {
    const b = Buffer.alloc(28);
    b.writeUInt16LE(AF_INET6, 0);
    b.writeUInt16BE(port, 2);
    ipv6Bytes(host).copy(b, 8);
    return { family: AF_INET6, addr: b };
  }
  throw new SysError(`bind ${host}`, 22 /* EINVAL: not an IP address */);
}

function ipv6Bytes(host: string): Buffer {
  const [head, tail] = host.includes("::") ? host.split("::") : [host, ""];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g || "0", 16), i * 2));
  return b;
}

export function somaxconn(): number {
  try { return Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim()); } catch { return 4096; }
}

function setInt(fd: number, level: number, name: number, value: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  check("setsockopt", libc.setsockopt(fd, level, name, v, 4));
}

/** socket + SO_REUSEADDR + bind + listen; returns the fd and the bound port. */
export function listenTcp(opts: ListenOptions = {}): Listener {
  const host = opts.host ?? "127.0.0.1";
  const { family, addr } = sockaddr(host, opts.port ?? 0);
  const fd = check("socket", libc.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (opts.reusePort) setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (family === AF_INET6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    // Accepted sockets inherit TCP_NODELAY from the listener: responses are
    // written whole (or corked with MSG_MORE), so Nagle could only add delay.
    setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (opts.deferAccept) setInt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, opts.deferAccept);
    if (opts.sendBuffer) setInt(fd, SOL_SOCKET, SO_SNDBUF, opts.sendBuffer);
    if (libc.bind(fd, addr, addr.length) < 0) throw new SysError(`bind ${host}:${opts.port ?? 0}`, errno());
    const backlog = opts.backlog ?? 65535;
    check("listen", libc.listen(fd, backlog));
    const out = Buffer.alloc(28);
    const len = [28];
    check("getsockname", libc.getsockname(fd, out, len));
    return { fd, host, port: out.readUInt16BE(2), backlog, somaxconn: somaxconn() };
  } catch (e) {
    libc.close(fd);
    throw e;
  }
}
