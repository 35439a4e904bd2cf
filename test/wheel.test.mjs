// Timing wheel (assembly/reactor/wheel.ts) on the bare core, time advanced by
// hand: nothing fires early, everything fires by deadline + G, re-arm moves a
// deadline both ways, cancel removes it, cascades across levels (1 h, 2 days),
// time jumps fire everything due once and in deadline order (to G), the poll
// timeout, and a seeded random sequence against a plain JS model, with
// wheelCheck() after every step.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadCore } from "./lib/core.mjs";
import { prng } from "./lib/prng.mjs";
import abi from "./lib/abi.mjs";

const { x } = loadCore();
const G = abi.WHEEL_TICK_MS;
const ok = (v) => v === 1;
const check = (what) => assert.ok(ok(x.wheelCheck()), `wheelCheck failed after ${what}`);

/** Advances to `now` and pops everything due: [[record, now], ...] in firing order. */
function fire(now) {
  x.wheelAdvance(now);
  const out = [];
  for (let i = x.wheelPopDue(now); i >= 0; i = x.wheelPopDue(now)) out.push(i);
  check(`fire at ${now}`);
  return out;
}

/** Steps time from `from` to `to` by `step` ms, asserting each record fires in [deadline, deadline + G]. */
function runChecked(deadlines, from, to, step) {
  const fired = new Map();
  for (let t = from; t <= to; t += step) {
    for (const i of fire(t)) {
      assert.not.ok(fired.has(i), `record ${i} fired twice`);
      assert.ok(t >= deadlines[i], `record ${i} fired early: at ${t}, deadline ${deadlines[i]}`);
      // The step's own coarseness adds up to one step of lateness to what we can observe.
      assert.ok(t <= deadlines[i] + G + step, `record ${i} fired late: at ${t}, deadline ${deadlines[i]}`);
      fired.set(i, t);
    }
  }
  return fired;
}

test("1000 random deadlines over 10 s: none early, each within G", () => {
  const rand = prng(7);
  x.wheelSetup(1000);
  const start = 123456.789;
  const deadlines = [];
  for (let i = 0; i < 1000; i++) {
    deadlines.push(start + 1 + rand() * 10_000);
    assert.ok(ok(x.wheelArm(i, deadlines[i], start)));
  }
  check("arming");
  assert.is(x.wheelCount(), 1000);
  const fired = runChecked(deadlines, start, start + 10_010, 0.5);
  assert.is(fired.size, 1000, "every deadline fired");
  assert.is(x.wheelCount(), 0);
});

test("re-arm later (lazy) and earlier (moved); cancel removes", () => {
  x.wheelSetup(8);
  x.wheelArm(0, 1000, 0);
  x.wheelArm(1, 1000, 0);
  x.wheelArm(2, 5000, 0);
  x.wheelArm(3, 1000, 0);
  check("arm");
  x.wheelArm(0, 3000, 500); // later: lazy
  x.wheelArm(2, 2000, 500); // earlier: moved
  assert.ok(ok(x.wheelCancel(3)));
  assert.not.ok(ok(x.wheelCancel(3)), "cancel twice");
  assert.not.ok(ok(x.wheelIsArmed(3)));
  check("re-arm + cancel");
  assert.equal(fire(999), []);
  assert.equal(fire(1000), [1]);
  assert.equal(fire(1999), []);
  assert.equal(fire(2000), [2]);
  assert.equal(fire(2999), []);
  assert.equal(fire(3000), [0]);
  assert.equal(fire(10_000), []);
  assert.is(x.wheelCount(), 0);
  assert.not.ok(ok(x.wheelArm(8, 1, 0)), "record out of range");
  assert.not.ok(ok(x.wheelArm(0, NaN, 0)), "NaN deadline");
});

test("a deadline moved later after it was found due does not fire early", () => {
  x.wheelSetup(2);
  x.wheelArm(0, 100, 0);
  x.wheelArm(1, 100, 0);
  x.wheelAdvance(100);
  assert.is(x.wheelDueHead(), 1, "LIFO within a slot is fine: same tick");
  x.wheelArm(1, 200, 100); // e.g. the timeout of record 0 touched record 1
  check("re-arm on the due list");
  assert.is(x.wheelPopDue(100), 0);
  assert.is(x.wheelPopDue(100), -1, "1 went back into the wheel");
  assert.ok(ok(x.wheelIsArmed(1)));
  assert.equal(fire(199), []);
  assert.equal(fire(200), [1]);
});

test("cascades across levels: 1 h and 2 days fire on time, stepping every 100 ms", () => {
  x.wheelSetup(4);
  const t0 = 5_000_000.25;
  const deadlines = [t0 + 3_600_000, t0 + 3_600_000 + 2.5, t0 + 60_000, t0 + 2 * 86_400_000];
  deadlines.forEach((d, i) => x.wheelArm(i, d, t0));
  check("arm");
  const fired = runChecked(deadlines, t0, t0 + 3_600_100, 100);
  assert.is(fired.size, 3);
  // the 2-day one, in 1 s steps is too long a walk: jump near it, then step
  const fired2 = runChecked(deadlines, t0 + 2 * 86_400_000 - 500, t0 + 2 * 86_400_000 + 10, 1);
  assert.equal([...fired2.keys()], [3]);
});

test("beyond the wheel's span (~49.7 days): parks at the top level and still never fires early", () => {
  x.wheelSetup(1);
  const day = 86_400_000;
  x.wheelArm(0, 60 * day, 0);
  check("arm");
  assert.equal(fire(50 * day), [], "came around at ~49.7 days, not due");
  assert.ok(ok(x.wheelIsArmed(0)));
  assert.equal(fire(60 * day - 1), []);
  assert.equal(fire(60 * day), [0]);
});

test("a time jump fires everything due once, in deadline order (to G)", () => {
  const rand = prng(11);
  const n = 5000;
  x.wheelSetup(n);
  const deadlines = [];
  for (let i = 0; i < n; i++) {
    deadlines.push(1000 + rand() * 7_200_000); // up to 2 h: every level but the top
    x.wheelArm(i, deadlines[i], 1000);
  }
  check("arm");
  const jump = 1000 + 3_600_000; // one CTL_NOW step of an hour
  const order = fire(jump);
  const due = deadlines.filter((d) => d <= jump).length;
  assert.is(order.length, due, "all that is due, once");
  assert.is(new Set(order).size, order.length);
  for (const i of order) assert.ok(deadlines[i] <= jump);
  for (let k = 1; k < order.length; k++) {
    assert.ok(deadlines[order[k]] > deadlines[order[k - 1]] - G,
      `out of order: ${deadlines[order[k - 1]]} then ${deadlines[order[k]]}`);
  }
  assert.is(x.wheelCount(), n - due);
  const rest = fire(1000 + 7_200_001);
  assert.is(rest.length, n - due);
});

test("poll timeout: to the next tick with work, coalesced; -1 empty, 0 due", () => {
  x.wheelSetup(4);
  assert.is(x.wheelTimeout(0), -1);
  x.wheelArm(0, 10.5, 0);
  x.wheelArm(1, 11, 0);   // same tick as 10.5 with G = 4: one wakeup for both
  x.wheelAdvance(0);
  const w = x.wheelTimeout(0);
  assert.ok(w >= 10.5 && w <= 10.5 + G, `wait ${w}`);
  assert.equal(fire(w - 1), [], "not before the tick boundary");
  assert.is(fire(w).length, 2, "both fire in the wakeup at the tick boundary");
  x.wheelArm(2, 100_000, w);
  x.wheelAdvance(w);
  const far = x.wheelTimeout(w);
  assert.ok(far > 0 && far <= 100_000 - w, `a cascade or the deadline, never later: ${far}`);
  x.wheelArm(3, 5, 0); // overdue when armed at a later now: due at the next advance
  x.wheelAdvance(w + 1);
  assert.is(x.wheelTimeout(w + 1), 0);
});

test("seeded random sequence against a JS model", () => {
  const rand = prng(99);
  const n = 64;
  x.wheelSetup(n);
  const model = new Map(); // record -> deadline
  let now = 777.7;
  for (let step = 0; step < 20_000; step++) {
    const r = rand();
    const i = Math.floor(rand() * n);
    if (r < 0.45) {
      const d = now + 1 + rand() * (rand() < 0.9 ? 2000 : 3_000_000);
      x.wheelArm(i, d, now);
      model.set(i, d);
    } else if (r < 0.6) {
      assert.is(ok(x.wheelCancel(i)), model.delete(i), `cancel ${i}`);
    } else {
      now += rand() < 0.95 ? rand() * 20 : rand() * 1_000_000;
      x.wheelAdvance(now);
      for (let k = x.wheelPopDue(now); k >= 0; k = x.wheelPopDue(now)) {
        assert.ok(model.has(k), `fired ${k}, not armed`);
        const d = model.get(k);
        assert.ok(d <= now, `fired early: ${d} > ${now}`);
        model.delete(k);
      }
      // everything still armed is due after now (to G): nothing was forgotten
      for (const [k, d] of model) assert.ok(d > Math.floor(now / G) * G, `record ${k} (deadline ${d}) missed at ${now}`);
    }
    if (step % 97 === 0) check(`step ${step}`);
    assert.is(x.wheelCount(), model.size);
  }
  check("the end");
});

test.run();
