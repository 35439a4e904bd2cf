// Stream connections (Reactor.adopt): write watermarks and drain, on real
// sockets (127.0.0.1, kernel-chosen port), the Reactor attached to this
// process's Node loop so a node:net client can stop and start reading.
import { test } from "uvu";
import * as assert from "uvu/assert";
import net from "node:net";
import { Reactor, READABLE, listenTcp, libc, errno, abi, SOCK_NONBLOCK, SOCK_CLOEXEC } from "../dist/index.js";
import { connectNarrow } from "./lib/sys.mjs";

// Well above what the kernel buffers hold for this client (a narrow one: a
// 4 KiB receive buffer, a 1 KiB MSS), so the ring, not the kernel, holds the backlog.
const HIGH = 256 * 1024;
const LOW = 64 * 1024;
const CHUNK = 16 * 1024;
const TOTAL = 4 * 1024 * 1024;

/** A Reactor whose listener hands each accepted socket to onConn(fd). */
function serve(onConn, options = {}) {
  const reactor = new Reactor({ mode: "et", ...options });
  const listener = listenTcp({ host: "127.0.0.1", port: 0, sendBuffer: 16 * 1024 }); // a small kernel buffer: the ring holds the rest
  reactor.register(listener.fd, READABLE, () => {
    for (;;) {
      const fd = libc.accept4(listener.fd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) { if (errno() !== abi.EAGAIN) throw new Error(`accept4: ${errno()}`); return; }
      onConn(reactor, fd);
    }
  });
  reactor.attach();
  return {
    reactor, port: listener.port,
    close() { reactor.stop(); reactor.deregister(listener.fd, true); libc.close(listener.fd); reactor.close(); },
  };
}

test("watermarks: a client that stops reading pauses the writer and the reading (no disconnect), drain once per crossing, buffered amount honest", async () => {
  const s = { written: 0, falses: 0, drains: 0, owed: false, maxBuffered: 0, dataWhileOver: 0, got: "", spurious: 0, closed: null, earlyFalse: 0 };
  let conn = null;
  let firstFalse;
  const overHigh = new Promise((r) => { firstFalse = r; });
  let closed;
  const done = new Promise((r) => { closed = r; });
  const chunk = Buffer.alloc(CHUNK, "a");
  const pump = (c) => {
    while (s.written < TOTAL) {
      const ok = c.write(chunk);
      s.written += CHUNK;
      s.maxBuffered = Math.max(s.maxBuffered, c.getBufferedAmount());
      if (!ok) {
        const b = c.getBufferedAmount();
        if (b < HIGH) s.earlyFalse++;                // false below high: a wrong answer
        s.falses++; s.owed = true; firstFalse(); return;
      }
    }
    c.end();
  };
  const srv = serve((reactor, fd) => {
    conn = reactor.adopt(fd, {
      onData: (c, d) => { if (c.getBufferedAmount() >= HIGH) s.dataWhileOver++; s.got += d.toString(); },
      onDrain: (c) => {
        if (!s.owed) s.spurious++;
        s.owed = false;
        s.drains++;
        assert.ok(c.getBufferedAmount() <= LOW, `drain at ${c.getBufferedAmount()} bytes, above low`);
        pump(c);
      },
      onClose: (_c, err) => { s.closed = err; closed(); },
    }, { highWaterMark: HIGH, lowWaterMark: LOW });
    assert.is(conn.highWaterMark, HIGH);
    pump(conn);
  }, { writeBufMax: 1 << 20 });
  try {
    // A small receive buffer and MSS: the kernel holds little, the ring the rest.
    const client = new net.Socket({ fd: connectNarrow(srv.port), readable: true, writable: true });
    client.pause();                                  // not reading: the server's ring fills
    const ended = new Promise((r) => client.on("end", r));
    let read = 0, bad = 0;
    client.on("data", (d) => {
      read += d.length;
      // Written by the handler and not yet read by the client: in the ring or in the kernel's buffers.
      if (conn.getBufferedAmount() > s.written - read) bad++;
    });
    await overHigh;
    assert.is(s.falses, 1);
    assert.ok(conn.getBufferedAmount() <= s.written, "never more buffered than written");
    client.write("ping\n");                          // arrives while the server is over high: not read yet
    // Proving an absence needs time to pass: the loop runs meanwhile (attached),
    // and a reader that did not pause would take the ping now. (Too short a
    // wait can only hide a failure, never make one.)
    await new Promise((r) => setTimeout(r, 100));
    assert.is(s.got, "", "reading paused while over high");
    client.resume();
    await done;
    await ended;                                     // the bytes the kernel held arrive after the close
    assert.is(s.closed, null, "closed by end(), not by the slow-reader defence");
    assert.is(read, TOTAL, "every byte written arrived");
    assert.is(bad, 0, "getBufferedAmount never exceeded written - read");
    assert.ok(s.maxBuffered <= HIGH + CHUNK, `buffered at most high + one write (max ${s.maxBuffered})`);
    assert.is(s.spurious, 0, "no drain without a write that said false");
    assert.is(s.earlyFalse, 0, "write() said false only at or above high");
    assert.ok(s.drains === s.falses || s.drains === s.falses - 1, `${s.falses} falses, ${s.drains} drains`);
    assert.ok(s.falses > 1, "the writer was held back more than once");
    assert.is(s.dataWhileOver, 0, "nothing read while over high");
    assert.is(s.got, "ping\n", "the client's bytes were read once reading resumed");
    assert.is(conn.getBufferedAmount(), 0);
    assert.is(conn.write("late"), false, "write after close: false, nothing written");
    client.destroy();
  } finally {
    srv.close();
  }
});

test("the slow-reader defence stays: a writer that ignores false is closed at writeBufMax (ENOBUFS), other state intact", async () => {
  let closedWith;
  const done = new Promise((r) => { closedWith = r; });
  let ignored = 0;
  const srv = serve((reactor, fd) => {
    const c = reactor.adopt(fd, { onClose: (_c, err) => closedWith(err) }, { highWaterMark: 8192 });
    const chunk = Buffer.alloc(32 * 1024, "b");
    for (let i = 0; i < 64 && !c.closed; i++) if (!c.write(chunk)) ignored++;
  }, { writeBufMax: 256 * 1024 });
  try {
    const client = net.connect(srv.port, "127.0.0.1");
    client.pause();
    const err = await done;
    assert.ok(ignored > 0);
    assert.is(err?.code, "ENOBUFS", `closed with ${err?.code}`);
    assert.is(srv.reactor.stats().overflows, 0, "the stream says ENOBUFS itself (no built-in overflow)");
    client.destroy();
  } finally {
    srv.close();
  }
});

test("echo through adopt: onData bytes are the client's, end() flushes then closes, EOF gives onClose(null)", async () => {
  let closedWith;
  const done = new Promise((r) => { closedWith = r; });
  const srv = serve((reactor, fd) => {
    reactor.adopt(fd, {
      onData: (c, d) => { c.write(d.toString().toUpperCase()); },
      onClose: (_c, err) => closedWith(err),
    });
  });
  try {
    const reply = await new Promise((resolve, reject) => {
      const cl = net.connect(srv.port, "127.0.0.1");
      let got = "";
      cl.on("data", (d) => { got += d; if (got === "HELLO STREAM") cl.end(); });
      cl.on("close", () => resolve(got));
      cl.on("error", reject);
      cl.write("hello stream");
    });
    assert.is(reply, "HELLO STREAM");
    assert.is(await done, null);
  } finally {
    srv.close();
  }
});

test.run();
