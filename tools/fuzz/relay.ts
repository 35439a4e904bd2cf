// The relay oracle for the tcp proxy (issue 10): the simulated kernel plays
// the proxy's clients and the upstream servers behind it, and judges what
// the core relays between them without asking the core who is paired with
// whom. Each client's stream starts with its id (one byte, < 128), each
// upstream server's reply with 128 + its id, so the first byte relayed either
// way binds a client to an upstream socket; every later byte must continue
// the bound stream (in order, never another client's), and never run ahead
// of what the core read from the other side. Checked as the core asks:
//
//  - a byte written to an upstream is the next of its client's stream (and
//    already read from the client); likewise for a client and its upstream;
//  - nothing goes to an upstream before its connect succeeded;
//  - shutdown(SHUT_WR) of a side only after the other side's FIN was read
//    and every byte before it was written;
//  - the bytes a pair holds in the core (read from one side, not yet written
//    to the other) stay under one write ring and one receive buffer;
//  - an error reported to the core on one side closes both sides within
//    RESET_TICKS ticks (not counting ticks a side's request is held in the
//    kernel: it is closed once it completes);
//  - at the end (judge()): a pair that ended cleanly carried both streams
//    whole, and a FIN from either end was passed on.

/** Ids: client streams start with 0..CLIENT_IDS-1, upstream replies with 128 + 0..UP_IDS-1. */
export const CLIENT_IDS = 120;
export const UP_IDS = 128;
/** Ticks an errored pair may stay open once the core was told (see above). */
export const RESET_TICKS = 3;

export interface PxLife { closed: boolean; shut: boolean; faulted: boolean; trapped: boolean; draining: boolean; timedOut: boolean; fd: number }

export interface PxSock { input: Uint8Array; pos: number; eof?: boolean; peerClosed: boolean; life?: PxLife; px?: PxSide }

export interface PxSide {
  role: "client" | "up";
  /** Client: its index; upstream: its reply's id (-1: an empty reply). */
  id: number;
  /** Bytes the core wrote to this socket, each checked against the partner's stream. */
  got: number;
  /** The other end of the pair, bound by the first byte relayed either way. */
  partner?: PxSock;
  /** Upstream: the upstream (index) connected to; its connect's course. */
  upstream: number;
  connect: "none" | "pending" | "ok" | "failed";
  /** Pending: the result the connect settles on (0 or -errno; hang: never before the kernel calms). */
  outcome: number;
  hang: boolean;
  /** Upstream: a connect returned 0 (the server accepted). */
  connected: boolean;
  /** An error on this socket is sticky: reads and writes fail from then on. */
  reset: boolean;
  /** The core read this side's FIN (a read returned 0). */
  finRead: boolean;
  /** The core was told of an error here: ticks left for the pair to close; -1: none. */
  closeBy: number;
}

export function newSide(role: "client" | "up", id: number): PxSide {
  return { role, id, got: 0, upstream: -1, connect: "none", outcome: 0, hang: false, connected: false, reset: false, finRead: false, closeBy: -1 };
}

const isCut = (s: PxSock): boolean => {
  const l = s.life!;
  return l.faulted || l.trapped || l.draining || l.timedOut || s.px!.reset;
};

export class Relay {
  readonly clients: PxSock[] = [];
  readonly ups: PxSock[] = [];
  /** Pairs judged whole at the end, and pairs judged as a prefix (cut short). */
  whole = 0;
  cut = 0;

  constructor(private readonly holdLimit: number, private readonly describe: (s: PxSock) => string = () => "") {}

  private who(s: PxSock): string {
    const p = s.px!;
    return `${p.role === "client" ? `proxy client #${p.id}` : `upstream socket (reply id ${p.id}, upstream ${p.upstream})`} on fd ${s.life!.fd}`;
  }

  private bind(s: PxSock, o: PxSock): string | null {
    if (s.px!.partner && s.px!.partner !== o) return `${this.who(s)} is bound to ${this.who(s.px!.partner)} but got bytes of ${this.who(o)}`;
    if (o.px!.partner && o.px!.partner !== s) return `${this.who(o)}'s bytes went to ${this.who(s)}, but it is paired with ${this.who(o.px!.partner)} (one stream, two peers)`;
    const up = s.px!.role === "up" ? s : o;
    if (!up.px!.connected) return `${this.who(up)} relays before its connect succeeded`;
    s.px!.partner = o;
    o.px!.partner = s;
    return null;
  }

  /** The core wrote `data` to s (what the kernel took of the write). */
  write(s: PxSock, data: Uint8Array): string | null {
    const p = s.px!;
    if (p.role === "up" && !p.connected) return `write on ${this.who(s)} before its connect succeeded`;
    if (data.length === 0) return null;
    if (!p.partner) {
      const b = data[0];
      const o = p.role === "up" ? (b < CLIENT_IDS ? this.clients[b] : undefined) : (b >= 128 ? this.ups[b - 128] : undefined);
      if (!o) return `${this.who(s)} received first byte ${b}, which starts no ${p.role === "up" ? "client's" : "upstream's"} stream`;
      const why = this.bind(s, o);
      if (why) return why;
    }
    const o = p.partner!;
    const src = o.input;
    for (let i = 0; i < data.length; i++) {
      const k = p.got + i;
      if (k >= o.pos) return `${this.who(s)} received byte ${k} of ${this.who(o)}'s stream, which the core had read only ${o.pos} of (${src.length} sent)`;
      if (src[k] !== data[i]) return `${this.who(s)}: byte ${k} is ${data[i]}, ${this.who(o)} sent ${src[k]} (a mixed-up or reordered stream)`;
    }
    p.got += data.length;
    return null;
  }

  /** A read on s returned res bytes (0: its FIN). */
  read(s: PxSock, res: number): string | null {
    const p = s.px!;
    if (res === 0) p.finRead = true;
    const held = s.pos - (p.partner?.px!.got ?? 0);
    if (held > this.holdLimit) return `${this.who(s)}: the core holds ${held} bytes read from it and not yet written to its peer (limit ${this.holdLimit}: a ring and a receive buffer)`;
    return null;
  }

  /** shutdown(SHUT_WR) of s: the FIN of its partner passed on. */
  shutdown(s: PxSock): string | null {
    const p = s.px!;
    const o = p.partner;
    if (!o) {
      // Nothing was relayed to s: a FIN is right only if some end not bound
      // elsewhere sent an empty stream and its FIN was read.
      const pool = p.role === "up" ? this.clients : this.ups;
      if (!pool.some((c) => c && !c.px!.partner && c.px!.finRead && c.input.length === 0)) return `shutdown(SHUT_WR) of ${this.who(s)}, which no FIN read led to`;
      return null;
    }
    if (!o.px!.finRead) return `shutdown(SHUT_WR) of ${this.who(s)} before the core read the FIN of ${this.who(o)}`;
    if (p.got !== o.input.length) return `FIN passed on to ${this.who(s)} after ${p.got} of the ${o.input.length} bytes before it`;
    return null;
  }

  /** The core was given an error result on s. */
  error(s: PxSock): void {
    if (s.px!.closeBy < 0) s.px!.closeBy = RESET_TICKS;
  }

  /** Once a tick: an errored side and its partner close within RESET_TICKS (held: fds with a request in the kernel). */
  tick(held: (fd: number) => boolean, all: readonly PxSock[]): string | null {
    for (const s of all) {
      const p = s.px!;
      if (p.closeBy < 0) continue;
      const open = [s, p.partner].filter((x) => x && !x.life!.closed && !x.life!.trapped) as PxSock[];
      if (open.length === 0) { p.closeBy = -1; continue; }
      if (open.some((x) => held(x.life!.fd))) continue;
      if (--p.closeBy < 0) return `an error on ${this.who(s)} was reported to the core ${RESET_TICKS} ticks ago, and ${open.map((x) => this.who(x)).join(" and ")} is still open`;
    }
    return null;
  }

  /** After the kernel calmed (every byte arrived, every peer read): each pair against its streams. */
  judge(): string | null {
    const why = this.judgePairs();
    if (!why) return null;
    const open = [...this.clients, ...this.ups].filter((x) => x && !x.life!.closed);
    return `${why}\n  open proxy sides: ${open.map((x) => `${this.who(x)}: ${this.describe(x)}`).join("\n    ")}`;
  }

  private judgePairs(): string | null {
    for (const c of this.clients) {
      if (!c) continue;
      const u = c.px!.partner;
      if (!u) {
        if (c.input.length > 0 && !c.life!.closed && !isCut(c)) return `${this.who(c)}: none of its ${c.input.length} bytes reached an upstream and it is still open (a stall?)`;
        continue;
      }
      if (isCut(c) || isCut(u)) { this.cut++; continue; }
      if (u.px!.got !== c.input.length) return `${this.who(c)}: its upstream (${this.who(u)}) received ${u.px!.got} of its ${c.input.length} bytes, with no fault to cut it short`;
      if (c.px!.got !== u.input.length) return `${this.who(c)} received ${c.px!.got} of its upstream's ${u.input.length} bytes (${this.who(u)}), with no fault to cut it short`;
      if (c.peerClosed && !u.life!.shut) return `${this.who(c)} sent its FIN, which never reached its upstream (${this.who(u)})`;
      if (u.peerClosed && !c.life!.shut) return `${this.who(u)} sent its FIN, which never reached its client (${this.who(c)})`;
      if (c.peerClosed && u.peerClosed && !(c.life!.closed && u.life!.closed)) return `both ends of ${this.who(c)}'s pair sent their FIN and were answered, yet the pair is still open`;
      this.whole++;
    }
    for (const u of this.ups) {
      if (u && !u.px!.partner && u.input.length > 0 && !u.life!.closed && !isCut(u)) return `${this.who(u)}: none of its ${u.input.length} bytes reached a client and it is still open (a stall?)`;
    }
    return null;
  }
}
