// Timer heap (assembly/reactor/timers.ts): ordering, FIFO ties, O(log n) cancel from
// anywhere, stale-id rejection, the poll timeout, and a seeded random
// sequence checked against a plain JS model with timersCheck() after every op.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";
import { prng } from "./lib/prng.mjs";

const core = loadCore();
const x = core.x;
const check = (what) => assert.ok(x.timersCheck(), `timersCheck failed after ${what}`);
const ok = (v) => v === 1; // wasm bool -> 0 / 1

// mulberry32: small, seeded, good enough to shuffle operations.

test("1000 random timers pop in (deadline, insertion) order", () => {
  const rand = prng(1);
  x.timersInit(1000);
  const order = new Map(); // id -> insertion index
  for (let i = 0; i < 1000; i++) {
    const id = x.timerAdd(Math.floor(rand() * 50), 0, 0, i); // ~20 per deadline
    assert.ok(id > 0);
    order.set(id, i);
    check(`add #${i}`);
  }
  assert.is(x.timerCount(), 1000);
  assert.is(x.timerHeapSize(), 1000);
  let prevDeadline = -Infinity, prevIndex = -1, popped = 0;
  for (;;) {
    const peek = x.timerPeekDeadline();
    const id = x.timerPopDue(1e9);
    if (id === -1) break;
    check(`pop #${popped}`);
    const d = x.timerDeadline(id);
    assert.is(d, peek);
    assert.ok(d >= prevDeadline, "deadlines non-decreasing");
    if (d === prevDeadline) assert.ok(order.get(id) > prevIndex, "FIFO among equal deadlines");
    prevDeadline = d;
    prevIndex = order.get(id);
    assert.is(x.timerOwner(id), prevIndex);
    assert.ok(ok(x.timerFree(id)));
    check(`free #${popped}`);
    popped++;
  }
  assert.is(popped, 1000);
  assert.is(x.timerCount(), 0);
  assert.is(x.timerPeekDeadline(), Infinity);
});

test("popDue respects now", () => {
  x.timersInit(8);
  const a = x.timerAdd(10, 0, 0, 0);
  const b = x.timerAdd(20, 0, 0, 0);
  assert.is(x.timerPopDue(9.999), -1);
  assert.is(x.timerPopDue(10), a);
  assert.is(x.timerPopDue(10), -1);
  assert.is(x.timerPopDue(NaN), -1);
  assert.is(x.timerPopDue(25), b);
  assert.is(x.timerHeapSize(), 0);
  assert.is(x.timerCount(), 2, "popped timers stay allocated");
  assert.ok(ok(x.timerIsLive(a)) && ok(x.timerIsLive(b)));
  check("pops");
});

// Builds a heap of 15 timers with distinct deadlines; returns ids by deadline.
function fifteen() {
  x.timersInit(16);
  const ids = [];
  for (const d of [8, 3, 12, 1, 14, 6, 10, 2, 15, 5, 9, 4, 13, 7, 11]) ids[d] = x.timerAdd(d, 0, 0, d);
  check("build");
  return ids;
}

function drain() {
  const out = [];
  for (let id; (id = x.timerPopDue(Infinity)) !== -1;) { out.push(x.timerDeadline(id)); x.timerFree(id); check("drain"); }
  return out;
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test("cancel from the middle, the root and the last element", () => {
  let ids = fifteen();
  // middle: deadline 8 sits somewhere inside, not at the root or the end
  assert.ok(ok(x.timerCancel(ids[8])));
  check("cancel middle");
  assert.not.ok(ok(x.timerCancel(ids[8])), "second cancel is rejected");
  assert.equal(drain(), range(1, 15).filter((d) => d !== 8));

  ids = fifteen();
  assert.is(x.timerPeekDeadline(), 1);
  assert.ok(ok(x.timerCancel(ids[1])));
  check("cancel root");
  assert.is(x.timerPeekDeadline(), 2);
  assert.equal(drain(), range(2, 15));

  ids = fifteen();
  // The last heap position holds the last inserted timer unless it moved up;
  // deadline 11 went in last and 11 > its parent, so it stayed at the end.
  assert.ok(ok(x.timerCancel(ids[11])));
  check("cancel last");
  assert.is(x.timerHeapSize(), 14);
  assert.equal(drain(), range(1, 15).filter((d) => d !== 11));

  // every position in turn
  for (let d = 1; d <= 15; d++) {
    ids = fifteen();
    assert.ok(ok(x.timerCancel(ids[d])));
    check(`cancel ${d}`);
    assert.equal(drain(), range(1, 15).filter((e) => e !== d));
  }
});

test("a last leaf moved up past an equal deadline keeps FIFO order", () => {
  // The only sift-up whose mover is not the newest timer: cancel X, the last
  // leaf L (deadline 5, older) climbs into X's branch and must pass A
  // (deadline 5, newer). Positions (level order), built so nothing moves:
  //   0:d0  1:d1  2:A  3:d2  5:P d6  7:d3  11:X d7  15:L d5  others d20
  x.timersInit(16);
  const d = [0, 1, 4, 2, 20, 6, 20, 3, 20, 20, 20, 7, 20, 20, 20, 5];
  const ids = d.map((deadline, pos) => x.timerAdd(deadline, 0, 0, pos));
  const [A, X, L] = [ids[2], ids[11], ids[15]];
  assert.ok(ok(x.timerRearm(A, 5))); // A: deadline 5, and now newer than L
  check("setup");
  assert.ok(ok(x.timerCancel(X)));
  check("cancel X");
  const popped = [];
  for (let id; (id = x.timerPopDue(5)) !== -1;) popped.push(id);
  assert.equal(popped, [ids[0], ids[1], ids[3], ids[7], L, A]);
});

test("rearm moves up, down, back in after a pop, and behind equal deadlines", () => {
  let ids = fifteen();
  assert.ok(ok(x.timerRearm(ids[15], 0.5))); // up to the root
  check("rearm up");
  assert.is(x.timerPeekDeadline(), 0.5);
  assert.ok(ok(x.timerRearm(ids[1], 100))); // down to a leaf
  check("rearm down");
  assert.equal(drain(), [0.5, ...range(2, 14), 100]);

  x.timersInit(8);
  const a = x.timerAdd(5, 0, 0, 0), b = x.timerAdd(5, 0, 0, 0), c = x.timerAdd(5, 0, 0, 0);
  assert.ok(ok(x.timerRearm(a, 5))); // same deadline: goes behind b and c
  check("rearm same deadline");
  assert.is(x.timerPopDue(5), b);
  assert.is(x.timerPopDue(5), c);
  const popped = x.timerPopDue(5);
  assert.is(popped, a);
  assert.ok(ok(x.timerRearm(popped, 7))); // popped, not freed: back into the heap
  check("rearm popped");
  assert.is(x.timerHeapSize(), 1);
  assert.is(x.timerPopDue(7), a);
  assert.not.ok(ok(x.timerRearm(a, NaN)), "NaN deadline rejected");
});

test("stale ids are rejected after free and reuse", () => {
  x.timersInit(4);
  const old = x.timerAdd(10, 25, 3, 77);
  assert.is(x.timerKind(old), 3);
  assert.is(x.timerOwner(old), 77);
  assert.is(x.timerInterval(old), 25);
  assert.ok(ok(x.timerCancel(old)));
  const reused = x.timerAdd(20, 0, 4, 88); // LIFO free list: same slot
  assert.is.not(reused, old);
  assert.is(reused & 0xfffff, old & 0xfffff, "same slot, new generation");
  for (const stale of [old, 0, -1, -5, reused ^ (1 << 20), (1 << 20) | 3, 0x7fffffff]) {
    assert.not.ok(ok(x.timerIsLive(stale)), `isLive(${stale})`);
    assert.not.ok(ok(x.timerCancel(stale)), `cancel(${stale})`);
    assert.not.ok(ok(x.timerFree(stale)), `free(${stale})`);
    assert.not.ok(ok(x.timerRearm(stale, 1)), `rearm(${stale})`);
    assert.is(x.timerDeadline(stale), -1);
    assert.is(x.timerInterval(stale), -1);
    assert.is(x.timerKind(stale), -1);
    assert.is(x.timerOwner(stale), -1);
  }
  check("stale calls");
  assert.is(x.timerDeadline(reused), 20, "the new owner is untouched");
  assert.is(x.timerOwner(reused), 88);
  assert.is(x.timerPopDue(100), reused);
});

test("generations wrap within 11 bits and ids stay positive", () => {
  x.timersInit(1);
  const seen = new Set();
  let first = 0;
  for (let i = 0; i < 2047; i++) {
    const id = x.timerAdd(1, 0, 0, 0);
    assert.ok(id > 0 && id <= 0x7fffffff);
    if (i === 0) first = id;
    seen.add(id);
    assert.ok(ok(x.timerFree(id)));
  }
  assert.is(seen.size, 2047, "every generation 1..2047 used once");
  assert.is(x.timerAdd(1, 0, 0, 0), first, "then the generation wraps to 1");
  check("wrap");
});

test("capacity full returns -1, a free makes room", () => {
  x.timersInit(3);
  const ids = [x.timerAdd(1, 0, 0, 0), x.timerAdd(2, 0, 0, 0), x.timerAdd(3, 0, 0, 0)];
  assert.ok(ids.every((id) => id > 0));
  assert.is(x.timerAdd(4, 0, 0, 0), -1);
  check("full");
  assert.ok(ok(x.timerCancel(ids[1])));
  assert.ok(x.timerAdd(4, 0, 0, 0) > 0);
  assert.is(x.timerAdd(5, 0, 0, 0), -1);
  x.timersInit(0);
  assert.is(x.timerAdd(1, 0, 0, 0), -1);
  check("capacity 0");
});

test("invalid arguments are rejected", () => {
  x.timersInit(4);
  assert.is(x.timerAdd(NaN, 0, 0, 0), -1);
  assert.is(x.timerAdd(1, -1, 0, 0), -1);
  assert.is(x.timerAdd(1, NaN, 0, 0), -1);
  assert.is(x.timerCount(), 0);
  assert.ok(x.timerAdd(Infinity, 0, 0, 0) > 0, "a timer that never fires is allowed");
  check("invalid");
});

test("pollTimeout: -1 empty, 0 due, ceil otherwise, capped", () => {
  x.timersInit(4);
  assert.is(x.timerPollTimeout(0), -1);
  assert.is(x.timerPeekDeadline(), Infinity);
  const id = x.timerAdd(100, 0, 0, 0);
  assert.is(x.timerPollTimeout(100), 0);
  assert.is(x.timerPollTimeout(150), 0);
  assert.is(x.timerPollTimeout(99.7), 1, "0.3 ms -> 1");
  assert.is(x.timerPollTimeout(99), 1);
  assert.is(x.timerPollTimeout(98.9999), 2);
  assert.is(x.timerPollTimeout(0), 100);
  assert.is(x.timerPollTimeout(NaN), 0);
  x.timerRearm(id, 1e12);
  assert.is(x.timerPollTimeout(0), 2 ** 31 - 1);
  x.timerRearm(id, Infinity);
  assert.is(x.timerPollTimeout(0), 2 ** 31 - 1);
  x.timerPopDue(Infinity);
  assert.is(x.timerPollTimeout(0), -1, "popped timers do not count");
});

test("sequence wraparound keeps FIFO order", () => {
  x.timersInit(64);
  const rand = prng(7);
  x.timerSetNextSequence(0xffffffff - 20);
  const order = new Map();
  for (let i = 0; i < 60; i++) {
    const id = x.timerAdd(Math.floor(rand() * 4), 0, 0, 0);
    order.set(id, i);
    check(`add across wrap #${i}`);
  }
  let prevD = -1, prevI = -1;
  for (let id; (id = x.timerPopDue(Infinity)) !== -1;) {
    const d = x.timerDeadline(id);
    assert.ok(d > prevD || (d === prevD && order.get(id) > prevI));
    prevD = d; prevI = order.get(id);
    x.timerFree(id);
    check("pop across wrap");
  }
});

test("re-init reuses memory; nothing allocates on the hot path", () => {
  x.timersInit(1000);
  const bytes = core.memory.buffer.byteLength;
  x.timersInit(500);
  x.timersInit(1000);
  const rand = prng(3);
  const ids = [];
  for (let i = 0; i < 20000; i++) {
    if (ids.length < 900 && rand() < 0.6) ids.push(x.timerAdd(rand() * 1000, 0, 0, 0));
    else if (ids.length) x.timerCancel(ids.splice(Math.floor(rand() * ids.length), 1)[0]);
  }
  assert.is(core.memory.buffer.byteLength, bytes);
});

// A plain JS model of the heap: live timers in a Map, the due one found by a
// linear scan. The wasm heap must agree with it on every answer.
function modelRun(seed, capacity, ops, firstSequence = 0) {
  const rand = prng(seed);
  x.timersInit(capacity);
  x.timerSetNextSequence(firstSequence);
  const model = new Map(); // id -> { deadline, seq, inHeap, interval, kind, owner }
  const stale = [];
  let seq = 0, now = 0;
  const live = () => [...model.keys()];
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  const deadline = () => now + Math.floor(rand() * 40); // coarse: many ties
  const earliest = () => {
    let best = null;
    for (const [id, t] of model) {
      if (!t.inHeap) continue;
      if (!best || t.deadline < best[1].deadline || (t.deadline === best[1].deadline && t.seq < best[1].seq)) best = [id, t];
    }
    return best;
  };
  for (let step = 0; step < ops; step++) {
    const r = rand();
    let what;
    if (r < 0.35) {
      what = "add";
      const d = deadline(), interval = rand() < 0.5 ? 0 : 10, kind = step & 7, owner = step;
      const id = x.timerAdd(d, interval, kind, owner);
      if (model.size === capacity) assert.is(id, -1, "full");
      else {
        assert.ok(id > 0 && !model.has(id));
        model.set(id, { deadline: d, seq: seq++, inHeap: true, interval, kind, owner });
      }
    } else if (r < 0.5) {
      what = "cancel";
      if (rand() < 0.2 && stale.length) assert.not.ok(ok(x.timerCancel(pick(stale))), "stale cancel");
      else if (model.size) {
        const id = pick(live());
        assert.ok(ok(x.timerCancel(id)));
        model.delete(id);
        stale.push(id);
      }
    } else if (r < 0.65) {
      what = "rearm";
      if (rand() < 0.2 && stale.length) assert.not.ok(ok(x.timerRearm(pick(stale), now)), "stale rearm");
      else if (model.size) {
        const id = pick(live()), d = deadline();
        assert.ok(ok(x.timerRearm(id, d)));
        Object.assign(model.get(id), { deadline: d, seq: seq++, inHeap: true });
      }
    } else if (r < 0.85) {
      what = "pop";
      now += rand() * 6;
      const e = earliest();
      const expected = e && e[1].deadline <= now ? e[0] : -1;
      assert.is(x.timerPopDue(now), expected, `pop at ${now}`);
      if (expected !== -1) {
        const t = model.get(expected);
        t.inHeap = false;
        // the reactor's choice: re-arm intervals, free one-shots
        if (t.interval > 0 && rand() < 0.7) {
          assert.ok(ok(x.timerRearm(expected, t.deadline + t.interval)));
          Object.assign(t, { deadline: t.deadline + t.interval, seq: seq++, inHeap: true });
        } else if (rand() < 0.8) {
          assert.ok(ok(x.timerFree(expected)));
          model.delete(expected);
          stale.push(expected);
        } // else: leave it popped for a while; a later cancel/rearm/free finds it
      }
    } else {
      what = "query";
      const e = earliest();
      assert.is(x.timerPeekDeadline(), e ? e[1].deadline : Infinity);
      const timeout = x.timerPollTimeout(now);
      if (!e) assert.is(timeout, -1);
      else assert.is(timeout, e[1].deadline <= now ? 0 : Math.ceil(e[1].deadline - now));
      if (model.size) {
        const id = pick(live()), t = model.get(id);
        assert.is(x.timerDeadline(id), t.deadline);
        assert.is(x.timerInterval(id), t.interval);
        assert.is(x.timerKind(id), t.kind);
        assert.is(x.timerOwner(id), t.owner);
      }
      if (stale.length) {
        const id = pick(stale);
        if (!model.has(id)) assert.not.ok(ok(x.timerIsLive(id)), "stale isLive");
      }
    }
    assert.is(x.timerCount(), model.size, `count after ${what}`);
    assert.is(x.timerHeapSize(), [...model.values()].filter((t) => t.inHeap).length, `heap size after ${what}`);
    assert.ok(x.timersCheck(), `timersCheck after step ${step} (${what})`);
  }
}

test("random add/cancel/rearm/pop against a JS model (seed 11, capacity 64)", () => {
  modelRun(11, 64, 4000);
});

test("random add/cancel/rearm/pop against a JS model (seed 12, capacity 512)", () => {
  modelRun(12, 512, 4000);
});

test("random ops across the sequence wraparound (seed 13)", () => {
  // 3000 ops take fewer than 3000 sequence numbers: start 500 below the wrap.
  modelRun(13, 128, 3000, 0xffffffff - 500);
});

test.run();
