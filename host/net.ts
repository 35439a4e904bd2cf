// Listening sockets. Setup happens once, so it uses Buffers and throws
// SysError with the errno name (EADDRINUSE, EACCES...) on failure.
//
// The socket layer takes IP addresses only; names are resolved before, by
// resolveHost() (asynchronous, through the system resolver), so that a
// constructor never blocks on DNS. A name resolves to every address it has
// (`localhost`: 127.0.0.1 and, where the resolver lists it, ::1) and the
// server listens on each, as nginx does for `listen localhost:80`.
import { isIP } from "node:net";
import { lookup } from "node:dns/promises";
import { networkInterfaces } from "node:os";
import { readFileSync } from "node:fs";
import {
  libc, check, AF_INET, AF_INET6, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET, SO_REUSEADDR,
  SO_REUSEPORT, SO_SNDBUF, IPPROTO_TCP, TCP_NODELAY, TCP_DEFER_ACCEPT, IPPROTO_IPV6, IPV6_V6ONLY, SysError, errno,
} from "./libc.ts";
import { EADDRINUSE } from "../assembly/abi.ts";

export interface ListenOptions {
  /** An IP address (IPv4, or IPv6 without brackets); default 127.0.0.1. Names: resolveHost() first. */
  host?: string;
  port?: number;
  /** Default 65535; the kernel caps it at net.core.somaxconn. */
  backlog?: number;
  reusePort?: boolean;
  /** TCP_DEFER_ACCEPT seconds: accept only once the client has sent data (HTTP). */
  deferAccept?: number;
  /** SO_SNDBUF for accepted connections (they inherit it); default: the kernel's autotuning. */
  sendBuffer?: number;
  /**
   * IPv6 sockets: also accept IPv4 (IPV6_V6ONLY=0), as nginx's `listen [::]:80
   * ipv6only=off` and Node's `listen("::")`. Default: on for `::` (one socket,
   * every address of both families), off for any other address.
   */
  dualStack?: boolean;
}

export interface Listener { fd: number; host: string; port: number; backlog: number; somaxconn: number }

/** An error in a host option: not an IP address, or a name that does not resolve. */
export class HostError extends Error {}

/** The sockaddr_in / sockaddr_in6 bytes for an IP address, for the io API's connect (no Node types in the declarations). */
export function sockaddrBytes(host: string, port: number): Uint8Array { return sockaddr(host, port).addr; }

function sockaddr(host: string, port: number): { family: number; addr: Buffer } {
  const family = isIP(host);
  if (family === 4) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    ipv4Bytes(host).copy(b, 4);
    return { family: AF_INET, addr: b };
  }
  if (family === 6) {
    const b = Buffer.alloc(28);
    b.writeUInt16LE(AF_INET6, 0);
    b.writeUInt16BE(port, 2);
    const [ip, scope] = host.split("%");
    ipv6Bytes(ip).copy(b, 8);
    if (scope !== undefined) b.writeUInt32LE(scopeId(scope), 24);
    return { family: AF_INET6, addr: b };
  }
  throw new HostError(`'${host}' is not an IP address; resolve names first with resolveHost() and pass the addresses as hosts`);
}

function ipv4Bytes(host: string): Buffer {
  return Buffer.from(host.split(".").map(Number));
}

/** 16 bytes of an IPv6 address (isIP already said it is one): a `::` run, an IPv4 tail. */
function ipv6Bytes(host: string): Buffer {
  let text = host;
  if (text.includes(".")) { // ::ffff:192.0.2.1: the last 32 bits written as IPv4
    const colon = text.lastIndexOf(":");
    const v4 = ipv4Bytes(text.slice(colon + 1));
    text = `${text.slice(0, colon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, ""];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/** `fe80::1%2` or `fe80::1%eth0`: the interface index for sin6_scope_id. */
function scopeId(scope: string): number {
  if (/^\d+$/.test(scope)) return Number(scope);
  const index = libc.if_nametoindex(scope);
  if (!index) throw new HostError(`no network interface '${scope}'`);
  return index;
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
    if (family === AF_INET6) {
      // `::` (however it is spelled) is dual-stack by default; an IPv4-mapped
      // address (::ffff:192.0.2.1) binds only on a dual-stack socket.
      const ip = addr.subarray(8, 24);
      const unspecified = ip.every((x) => x === 0);
      const mapped = ip.subarray(0, 10).every((x) => x === 0) && ip.readUInt16BE(10) === 0xffff;
      setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, (opts.dualStack ?? unspecified) || mapped ? 0 : 1);
    }
    // Accepted sockets inherit TCP_NODELAY from the listener: responses are
    // written whole (or corked with MSG_MORE), so Nagle could only add delay.
    setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (opts.deferAccept) setInt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, opts.deferAccept);
    if (opts.sendBuffer) setInt(fd, SOL_SOCKET, SO_SNDBUF, opts.sendBuffer);
    const shown = family === AF_INET6 ? `[${host}]` : host;
    if (libc.bind(fd, addr, addr.length) < 0) throw new SysError(`bind ${shown}:${opts.port ?? 0}`, errno());
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

/**
 * One listener per address, all on one port. Port 0: the first address gets
 * a port from the kernel and the others bind that same port; if it is taken
 * on one of them, everything is closed and tried again with a new port (a
 * few times). `::` is dual-stack unless an IPv4 address is in the list too
 * (an IPv4 socket and a dual-stack one cannot share a port).
 */
export function listenAll(addresses: string[], opts: Omit<ListenOptions, "host"> = {}): Listener[] {
  const hosts = [...new Set(addresses)];
  if (hosts.length === 0) throw new HostError("no address to listen on");
  const withV4 = hosts.some((h) => isIP(h) === 4);
  for (let attempt = 0; ; attempt++) {
    const out: Listener[] = [];
    try {
      for (const host of hosts) {
        const port = out.length ? out[0].port : opts.port;
        // Not dual-stack beside an IPv4 listener: the two would claim the same IPv4 port.
        out.push(listenTcp({ ...opts, host, port, dualStack: opts.dualStack ?? (withV4 ? false : undefined) }));
      }
      return out;
    } catch (e) {
      for (const l of out) libc.close(l.fd);
      const retry = !opts.port && out.length > 0 && e instanceof SysError && e.errno === EADDRINUSE && attempt < 8;
      if (!retry) throw e;
    }
  }
}

/**
 * The addresses to listen on for `host`: an IP address as it is (`[::1]`
 * also), a name through the system resolver (dns.lookup: getaddrinfo, /etc/hosts too),
 * every address it has, IPv4 first, without repeats. IPv6 answers are left
 * out on a machine with IPv6 turned off (no IPv6 address on any interface),
 * so `localhost` still works there. Rejects with a HostError naming the host.
 */
export async function resolveHost(host: string): Promise<string[]> {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (isIP(bare)) return [bare];
  if (bare === "") throw new HostError("empty host");
  let found: { address: string; family: number }[];
  try {
    found = await lookup(bare, { all: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    throw new HostError(`host '${host}' does not resolve${code ? ` (${code})` : ""}`);
  }
  const ipv6 = Object.values(networkInterfaces()).some((list) => list?.some((a) => a.family === "IPv6"));
  const addresses = found.filter((a) => a.family === 4 || ipv6).sort((a, b) => a.family - b.family).map((a) => a.address);
  const unique = [...new Set(addresses)];
  if (unique.length === 0) throw new HostError(`host '${host}' resolves only to IPv6 addresses, and IPv6 is off here`);
  return unique;
}

/** `127.0.0.1:8080`, `[::1]:8080`: an address as it appears in a URL. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
