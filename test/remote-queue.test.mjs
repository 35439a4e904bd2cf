// The runInLoop queue (host/remote-queue.ts) under every interleaving of its
// steps: a deterministic model check with no threads. Producers and the
// consumer are state machines that take one real protocol step each turn
// (loadTail, slotState, claim, writeSlot, publish / isPublished, readSlot,
// release, the functions host/remote.ts runs); an explorer runs every order of
// turns, each from a fresh queue. A shadow kept by the test, not read from the
// queue's words, says what must hold after each step:
// - a slot is claimed only when no message occupies it (claimed and not yet
//   released), so no slot is reused under a writer or a reader (ABA);
// - positions are claimed in order, and the consumer gets the messages in
//   claim order, each byte intact, each once;
// - the consumer sees a message as published only after its producer
//   published it, and never misses one that is;
// - FULL only when the slot still holds the message from one lap earlier;
// - at the end, head = tail = start + messages sent.
// Counters start at 0, just below 2^31 and just below 2^32 (the wrap). Broken
// variants (one slot, publish before write, release before read) must be
// caught: the checker can fail.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  createQueueBuffer, queueCapacity, loadTail, slotState, claim, writeSlot, publish, loadHead, isPublished, readSlot, release,
  SLOT_FREE, SLOT_FULL,
} from "../build/remote-queue.js";

const STARTS = [0, 2 ** 31 - 2, -2]; // -2 as Int32 is 2^32 - 2: positions cross 2^31 and 2^32

/** A message unlike every other producer's, in bytes and length. */
const PAYLOADS = [0, 1, 2].map((id) => Uint8Array.from({ length: 3 + id * 5 }, (_, k) => (id * 37 + k * 11 + 1) & 255));
const payloadOf = (id) => PAYLOADS[id];

/** One run: a fresh queue, its agents, and the shadow that checks them. */
function makeWorld({ cap, start, producers, producerSteps = "fine", consumerSteps = "fine", consumerBudget, bug }) {
  const buffer = createQueueBuffer(cap, start);
  const h = new Int32Array(buffer), bytes = new Uint8Array(buffer);
  const owner = new Array(cap).fill(null); // slot -> { id, pos, published } from claim to release
  const claimOrder = [];
  const consumed = [];
  const world = { violation: null, agents: [], claimOrder, consumed };
  const fail = (msg) => { world.violation ??= msg; };
  const slot = (pos) => pos & (cap - 1);

  const producer = (id) => {
    const payload = payloadOf(id);
    const p = { name: `P${id}`, state: "tail", pos: 0, done: false, outcome: null };
    p.fine = () => {
      switch (p.state) {
        case "tail": p.pos = loadTail(h); p.state = "check"; break;
        case "check": {
          const s = slotState(h, cap, p.pos);
          if (s === SLOT_FREE) p.state = "claim";
          else if (s === SLOT_FULL) {
            const o = owner[slot(p.pos)];
            if (!o || o.pos !== ((p.pos - cap) | 0)) fail(`P${id}: FULL at position ${p.pos}, but its slot does not hold position ${(p.pos - cap) | 0}`);
            p.outcome = "full"; p.done = true;
          } else p.state = "tail";
          break;
        }
        case "claim": {
          const prev = claim(h, p.pos);
          if (prev !== p.pos) { p.pos = prev; p.state = "check"; break; }
          const o = owner[slot(p.pos)];
          if (o) fail(`P${id} claimed position ${p.pos} while its slot holds position ${o.pos} (${o.published ? "published" : "being written"})`);
          if (p.pos !== ((start + claimOrder.length) | 0)) fail(`P${id} claimed position ${p.pos}, expected ${(start + claimOrder.length) | 0}`);
          owner[slot(p.pos)] = { id, pos: p.pos, published: false };
          claimOrder.push(id);
          p.state = bug === "publish-before-write" ? "publish" : "write";
          break;
        }
        case "write":
          writeSlot(h, bytes, cap, p.pos, payload);
          if (bug === "publish-before-write") { p.outcome = "sent"; p.done = true; } else p.state = "publish";
          break;
        case "publish":
          publish(h, cap, p.pos);
          if (owner[slot(p.pos)]?.pos === p.pos) owner[slot(p.pos)].published = true;
          if (bug === "publish-before-write") p.state = "write"; else { p.outcome = "sent"; p.done = true; }
          break;
      }
    };
    // Coarse: the claim loop as one turn (as runInLoop runs it), then write + publish as one.
    p.coarse = () => {
      if (p.state === "tail" || p.state === "check" || p.state === "claim") {
        do p.fine(); while (!p.done && (p.state === "tail" || p.state === "check" || p.state === "claim"));
      } else while (!p.done) p.fine();
    };
    p.step = producerSteps === "fine" ? p.fine : p.coarse;
    return p;
  };

  const c = { name: "C", state: "check", pos: 0, done: false, budget: consumerBudget, message: null };
  c.fine = () => {
    switch (c.state) {
      case "check": {
        c.pos = loadHead(h);
        const o = owner[slot(c.pos)];
        const shadowSays = !!o && o.pos === c.pos && o.published;
        if (isPublished(h, cap, c.pos)) {
          if (!shadowSays) fail(`C saw position ${c.pos} published before its producer published it`);
          c.state = bug === "release-before-read" ? "release" : "read";
        } else if (shadowSays) fail(`C missed position ${c.pos}, published`);
        break;
      }
      case "read": {
        const msg = readSlot(h, bytes, cap, c.pos);
        const id = claimOrder[consumed.length];
        if (id === undefined || !sameBytes(msg, payloadOf(id))) fail(`C read position ${c.pos}: [${msg.slice(0, 6)}...] (${msg.length} bytes), not P${id}'s message`);
        consumed.push(id);
        c.state = bug === "release-before-read" ? "check" : "release";
        break;
      }
      case "release":
        release(h, cap, c.pos);
        owner[slot(c.pos)] = null;
        c.state = bug === "release-before-read" ? "read" : "check";
        break;
    }
  };
  c.step = () => {
    if (consumerSteps === "fine") c.fine();
    else { c.fine(); if (c.state !== "check") while (c.state !== "check") c.fine(); }
    if (c.state === "check" && --c.budget <= 0) c.done = true;
  };

  world.agents = [...Array.from({ length: producers }, (_, i) => producer(i)), c];
  /** After the explored turns: everyone finishes, the consumer drains, the totals must add up. */
  world.finish = () => {
    while (c.state !== "check" && !world.violation) c.fine();
    for (const p of world.agents.slice(0, -1)) while (!p.done && !world.violation) p.fine();
    for (let i = 0; i < 4 * cap && !world.violation; i++) c.fine();
    if (world.violation) return;
    const sent = world.agents.filter((a) => a.outcome === "sent").length;
    if (consumed.join() !== claimOrder.join()) fail(`consumed ${consumed.join()} but claimed ${claimOrder.join()}`);
    if (sent !== claimOrder.length) fail(`${sent} sent, ${claimOrder.length} claimed`);
    const end = (start + sent) | 0;
    if (loadHead(h) !== end || loadTail(h) !== end) fail(`head ${loadHead(h)}, tail ${loadTail(h)}; expected both at ${end}`);
  };
  return world;
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Every interleaving of the agents' turns (stateless model checking: each
 * schedule replays from a fresh world; the choice stack walks them all).
 * Returns the number of schedules and the first violation with its trace.
 */
function explore(config, { stopAtFirst = false } = {}) {
  const choices = [], widths = [];
  let schedules = 0, fullRuns = 0, first = null;
  for (;;) {
    const world = makeWorld(config);
    const agents = world.agents, turns = [], states = [];
    let depth = 0;
    for (;;) {
      let width = 0, agent = null;
      for (const a of agents) if (!a.done && width++ === (choices[depth] ?? 0)) agent = a;
      if (width === 0 || world.violation) break;
      if (depth === choices.length) choices.push(0);
      widths[depth] = width;
      turns.push(agent.name); states.push(agent.state); // the trace, cheap until a violation prints it
      agent.step();
      depth++;
    }
    if (!world.violation) world.finish();
    schedules++;
    if (world.agents.some((a) => a.outcome === "full")) fullRuns++;
    if (world.violation && !first) {
      first = { violation: world.violation, trace: turns.map((n, i) => `${n}.${states[i]}`).join(" ") };
      if (stopAtFirst) break;
    }
    choices.length = depth;
    while (choices.length && choices.at(-1) + 1 >= widths[choices.length - 1]) choices.pop();
    if (!choices.length) break;
    choices[choices.length - 1]++;
  }
  return { schedules, fullRuns, first };
}

const report = (r) => (r.first ? `${r.first.violation}\n  after: ${r.first.trace}` : null);

for (const start of STARTS) {
  test(`2 producers step by step (tail, check, claim, write, publish) and a consumer, counters from ${start}`, () => {
    const r = explore({ cap: 2, start, producers: 2, consumerSteps: "coarse", consumerBudget: 2 });
    assert.is(report(r), null);
    assert.ok(r.schedules > 1000, `only ${r.schedules} schedules`);
  });

  test(`3 producers x 2 steps (claim, send) into 2 slots and a consumer step by step (check, read, release), counters from ${start}`, () => {
    const r = explore({ cap: 2, start, producers: 3, producerSteps: "coarse", consumerBudget: 3 });
    assert.is(report(r), null);
    assert.ok(r.fullRuns > 0, "no schedule filled the queue: the lap reuse was not exercised");
    assert.ok(r.schedules > 1000, `only ${r.schedules} schedules`);
  });
}

test("2 producers and the consumer, all step by step, across the 2^32 wrap", () => {
  const r = explore({ cap: 2, start: -3, producers: 2, consumerBudget: 2 });
  assert.is(report(r), null);
});

test("the checker catches a broken queue: one slot, publish before write, release before read", () => {
  // One slot: "holds p" and "free for p + 1" are the same sequence number.
  // queueCapacity never gives 1 (it did before this test: createRemoteQueue(1)).
  const one = explore({ cap: 1, start: 0, producers: 2, producerSteps: "coarse", consumerSteps: "coarse", consumerBudget: 2 }, { stopAtFirst: true });
  assert.match(String(one.first?.violation), /claimed position 1 while its slot holds position 0 \(published\)/);
  assert.is(queueCapacity(1), 2);
  assert.is(queueCapacity(3), 4);
  const early = explore({ cap: 2, start: 0, producers: 2, consumerBudget: 2, bug: "publish-before-write" }, { stopAtFirst: true });
  assert.match(String(early.first?.violation), /C read position \d+: .* not P\d's message/);
  const late = explore({ cap: 2, start: 0, producers: 3, producerSteps: "coarse", consumerBudget: 3, bug: "release-before-read" }, { stopAtFirst: true });
  assert.match(String(late.first?.violation), /not P\d's message/);
});

test.run();
