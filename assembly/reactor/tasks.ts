// Deferred tasks: a FIFO ring of JS task ids, run after I/O dispatch and
// before the next poll. A pass runs only the tasks that were queued when it
// began (a snapshot), so a task that defers itself runs on the next pass and
// cannot starve I/O.
let ring: usize = 0;
let cap: i32 = 0;
let head: i32 = 0;
let len: i32 = 0;
let passLeft: i32 = 0;

export function tasksInit(capacity: i32): void {
  cap = capacity;
  ring = heap.alloc(<usize>cap * 4);
}

/** Queues a task id; false when the queue is full (the caller reports it). */
export function taskPush(id: i32): bool {
  if (len == cap) return false;
  store<i32>(ring + <usize>((head + len) % cap) * 4, id);
  len++;
  return true;
}

export function tasksPending(): i32 { return len; }

/** Starts a pass: only the tasks queued now belong to it. */
export function taskPassBegin(): void { passLeft = len; }

/** Next task id of the current pass, or -1 when the pass is over. */
export function taskPassNext(): i32 {
  if (passLeft == 0) return -1;
  const id = load<i32>(ring + <usize>head * 4);
  head = (head + 1) % cap;
  len--;
  passLeft--;
  return id;
}
