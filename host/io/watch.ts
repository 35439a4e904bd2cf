// Where an executor waits for fds (the completion eventfd of the pool, the
// sockets of epoll_threadpool): this thread's Node event loop (koffi.node.poll,
// a libuv poll handle per fd), or a Reactor's loop (its register/modify/
// deregister), when the executor was made with `{ reactor }`.
//
// Contract: set(fd, readable, writable, cb) asks for cb(readable, writable)
// while fd is ready for what is asked (level-triggered: called again while it
// stays ready); set(fd, false, false, cb) stops asking but keeps the watch;
// remove(fd) forgets it (before the fd is closed). keepAlive(on) says whether
// the watches must keep Node's loop alive (an op is pending) or not.
import { pollFd, type PollHandle } from "../libc.ts";
import { Reactor, READABLE, WRITABLE, ERROR, HANGUP } from "../reactor.ts";

export type Ready = (readable: boolean, writable: boolean) => void;

export interface FdWatcher {
  set(fd: number, readable: boolean, writable: boolean, cb: Ready): void;
  remove(fd: number): void;
  keepAlive(on: boolean): void;
  /** Forgets every watch (the executor stopped). */
  closeAll(): void;
  readonly name: "node" | "reactor";
}

interface Handle extends PollHandle { ref(): void; unref(): void }

/** libuv poll handles on this thread's Node loop. */
export class NodeLoopWatcher implements FdWatcher {
  readonly name = "node" as const;
  private readonly handles = new Map<number, { h: Handle; r: boolean; w: boolean; cb: Ready }>();
  private alive = false;

  /** Closes every handle (the executor stopped). */
  closeAll(): void {
    for (const fd of [...this.handles.keys()]) this.remove(fd);
  }

  set(fd: number, readable: boolean, writable: boolean, cb: Ready): void {
    let e = this.handles.get(fd);
    // koffi passes (status, events) or (events) depending on the version: take the last object.
    const call = (...a: unknown[]) => {
      const ev = a[a.length - 1] as { readable?: boolean; writable?: boolean; disconnect?: boolean } | undefined;
      const bad = !ev || typeof ev !== "object" || ev.disconnect === true || (typeof a[0] === "number" && (a[0] as number) < 0);
      try { e!.cb(!!ev?.readable || bad, !!ev?.writable || bad); } catch (err) { process.nextTick(() => { throw err; }); }
    };
    if (!e) {
      if (!readable && !writable) return;
      const h = pollFd(fd, call, { readable, writable }) as Handle;
      e = { h, r: readable, w: writable, cb };
      this.handles.set(fd, e);
      if (!this.alive) h.unref();
      return;
    }
    e.cb = cb;
    if (e.r === readable && e.w === writable) return;
    e.r = readable; e.w = writable;
    if (!readable && !writable) e.h.stop();
    else e.h.start({ readable, writable }, call);
  }

  remove(fd: number): void {
    const e = this.handles.get(fd);
    if (!e) return;
    this.handles.delete(fd);
    e.h.stop();
    e.h.close?.();
  }

  keepAlive(on: boolean): void {
    if (on === this.alive) return;
    this.alive = on;
    for (const e of this.handles.values()) { if (on) e.h.ref(); else e.h.unref(); }
  }
}

/** A Reactor's loop (level-triggered registrations). */
export class ReactorWatcher implements FdWatcher {
  readonly name = "reactor" as const;
  private readonly cbs = new Map<number, { r: boolean; w: boolean; cb: Ready }>();
  constructor(private readonly reactor: Reactor) {}

  set(fd: number, readable: boolean, writable: boolean, cb: Ready): void {
    const e = this.cbs.get(fd);
    const bits = (readable ? READABLE : 0) | (writable ? WRITABLE : 0);
    if (e) {
      e.cb = cb;
      if (e.r === readable && e.w === writable) return;
      // No interest left: deregister (interest 0 would still report a hang-up on every tick).
      if (!bits) { this.remove(fd); return; }
      e.r = readable; e.w = writable;
      this.reactor.modify(fd, bits);
      return;
    }
    if (!bits) return;
    this.cbs.set(fd, { r: readable, w: writable, cb });
    this.reactor.register(fd, bits, (_fd, ev) => {
      const bad = (ev & (ERROR | HANGUP)) !== 0;
      this.cbs.get(fd)?.cb((ev & READABLE) !== 0 || bad, (ev & WRITABLE) !== 0 || bad);
    });
  }

  remove(fd: number): void {
    if (!this.cbs.delete(fd)) return;
    try { this.reactor.deregister(fd); } catch { /* the reactor is closed */ }
  }

  keepAlive(): void { /* the Reactor's own loop decides */ }

  closeAll(): void { for (const fd of [...this.cbs.keys()]) this.remove(fd); }
}
