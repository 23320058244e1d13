// Lets a file target write convert()'s read buffers without copying them.
//
// convert() recycles its read buffers: fresh ones cost page faults and GC (docs/decisions/0003).
// A pipelined target must then either copy what it is given (a memcpy of every byte converted)
// or keep it until its write lands and tell the owner when that is. A leased buffer is the
// second way: convert() leases the buffers it owns, a target that sees a leased buffer holds it
// instead of copying, and convert() waits for `idle` before it reads into the buffer again.
// Buffers nobody leased (a writer's tables and headers, which writers may change after writing)
// are still copied by the target.

interface Lease {
  holds: number;
  waiters: Array<() => void>;
}

const leases = new WeakMap<ArrayBufferLike, Lease>();

/** Marks `buffer` as owned by a caller that waits for `idle` before reusing it. */
export function lease(buffer: Buffer): void {
  if (!leases.has(buffer.buffer)) leases.set(buffer.buffer, { holds: 0, waiters: [] });
}

/**
 * Holds `data` (or the leased buffer it is a view of) until the returned function is called.
 * Returns undefined when `data` is not leased: the caller must then copy it to keep it.
 */
export function hold(data: Buffer): (() => void) | undefined {
  const entry = leases.get(data.buffer);
  if (entry === undefined) return undefined;
  entry.holds++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    entry.holds--;
    if (entry.holds === 0) for (const wake of entry.waiters.splice(0)) wake();
  };
}

/** True while a write holds `buffer`. */
export function held(buffer: Buffer): boolean {
  return (leases.get(buffer.buffer)?.holds ?? 0) > 0;
}

/** Resolves once no write holds `buffer` any more (at once if none does). */
export function idle(buffer: Buffer): Promise<void> {
  const entry = leases.get(buffer.buffer);
  if (entry === undefined || entry.holds === 0) return Promise.resolve();
  return new Promise((resolve) => entry.waiters.push(resolve));
}
