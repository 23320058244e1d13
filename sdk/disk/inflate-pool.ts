// Inflates batches of compressed grains (zlib streams) on worker threads.
//
// Inflating a stream VMDK's grains on the main thread costs more in garbage collection than in
// zlib: every call allocates a zlib state and an output buffer, and the main thread's collections
// are the expensive ones (docs/decisions/0008-raw-holes-and-startup.md). On a worker the same
// garbage is cheap, and the main thread stays free for reads and writes. Workers start on first
// use, keep the process alive only while busy, and take one batch at a time; a batch is the
// compressed grains of one read, so its output is bounded by that read.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

/**
 * Workers in the pool: one per core but one (the main thread reads and writes), at most four.
 * On two cores one worker is as fast as two and holds about 75 MiB less. Workers get V8's
 * default heap limits: a smaller young generation kept them near 50 MiB but cost 30 % in
 * collections (bench:convert, streamOptimized → raw).
 */
const POOL_SIZE = Math.max(1, Math.min(4, availableParallelism() - 1));

/** A grain that did not inflate: which one, and zlib's code (ERR_BUFFER_TOO_LARGE past the limit). */
export class InflateFailure extends Error {
  readonly index: number;
  readonly code: string;
  constructor(index: number, code: string, message: string) {
    super(message);
    this.index = index;
    this.code = code;
  }
}

interface Request {
  readonly data: ArrayBuffer;
  readonly out: ArrayBuffer;
  readonly ends: Uint32Array;
  readonly maxOutputBytes: number;
}

interface Reply {
  readonly data: ArrayBuffer;
  readonly out: ArrayBuffer;
  readonly lengths: Uint32Array;
  readonly failure?: { readonly index: number; readonly code: string; readonly message: string };
}

// CommonJS evaluated in the worker: no file to find next to the built or the source module.
// The input and output buffers travel back and forth (transferred, never copied) and are reused.
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const zlib = require("node:zlib");
const { Z_FINISH } = zlib.constants;

// Inflates each grain straight into its slot of the output buffer through one reused zlib
// handle: no zlib state and no output buffer per grain, so no garbage and no fresh pages to
// fault in (2.6 GB of them in bench:convert's stream → raw). The handle is Node's own
// (_handle.writeSync, what inflateSync calls); where it is not there, inflateSync is used.
let stream;
let failed;
function handle() {
  if (stream === undefined) {
    stream = zlib.createInflate();
    if (typeof stream._handle?.writeSync !== "function" || !Array.isArray(stream._writeState) && !(stream._writeState instanceof Uint32Array)) return undefined;
    stream._handle.onerror = (message, errno) => {
      failed = { code: zlib.codes?.[errno] ?? "Z_DATA_ERROR", message };
    };
  }
  return stream._handle;
}
const scratch = new Uint8Array(1);

/** Inflates one grain into target[at, at + max); returns its length, or throws { code, message }. */
function inflateInto(grain, target, at, max) {
  const h = handle();
  if (h === undefined) {
    const out = zlib.inflateSync(grain, { maxOutputLength: max, chunkSize: max });
    target.set(out, at);
    return out.length;
  }
  failed = undefined;
  h.writeSync(Z_FINISH, grain, 0, grain.length, target, at, max);
  let availOut = stream._writeState[0];
  const availIn = stream._writeState[1];
  if (failed === undefined && availOut === 0) {
    // Full: the grain must have nothing left to give, neither input nor a pending copy.
    h.writeSync(Z_FINISH, grain, grain.length - availIn, availIn, scratch, 0, 1);
    if (failed === undefined && stream._writeState[0] === 0) failed = { code: "ERR_BUFFER_TOO_LARGE", message: "Cannot create a Buffer larger than " + max + " bytes" };
  }
  if (failed !== undefined) {
    const f = failed;
    // A handle that saw an error is not trusted again.
    stream = undefined;
    throw f;
  }
  h.reset();
  return max - availOut;
}

parentPort.on("message", ({ data, out, ends, maxOutputBytes }) => {
  const target = new Uint8Array(out);
  const lengths = new Uint32Array(ends.length);
  let failure;
  let start = 0;
  for (let i = 0; i < ends.length && failure === undefined; i++) {
    try {
      lengths[i] = inflateInto(new Uint8Array(data, start, ends[i] - start), target, i * maxOutputBytes, maxOutputBytes);
    } catch (err) {
      failure = { index: i, code: String(err.code ?? "Z_DATA_ERROR"), message: err.message };
    }
    start = ends[i];
  }
  parentPort.postMessage({ data, out, lengths, failure }, [data, out, lengths.buffer]);
});
`;

interface Slot {
  readonly worker: Worker;
  /** Buffers this worker's batches travel in, kept between batches. */
  data: ArrayBuffer;
  out: ArrayBuffer;
  /** Taken by a batch (set when acquired, before its message is posted). */
  busy: boolean;
  /** Where this worker's reply goes. */
  current?: { readonly resolve: (reply: Reply) => void; readonly reject: (err: Error) => void };
}

const slots: Slot[] = [];
const waiting: Array<() => void> = [];

function startWorker(): Slot {
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  const slot: Slot = { worker, busy: false, data: new ArrayBuffer(0), out: new ArrayBuffer(0) };
  worker.on("message", (reply: Reply) => slot.current?.resolve(reply));
  const die = (err: Error): void => {
    if (!slots.includes(slot)) return;
    // This worker's batch fails; later batches get a new worker.
    slots.splice(slots.indexOf(slot), 1);
    slot.current?.reject(err);
    waiting.shift()?.();
  };
  worker.on("error", die);
  worker.on("exit", (code) => die(new Error(`inflate worker exited with code ${code}`)));
  slots.push(slot);
  return slot;
}

/** A free worker, started if the pool has room. It keeps the process alive only while busy. */
async function acquire(): Promise<Slot> {
  for (;;) {
    const free = slots.find((s) => !s.busy) ?? (slots.length < POOL_SIZE ? startWorker() : undefined);
    if (free !== undefined) {
      free.busy = true;
      free.worker.ref();
      return free;
    }
    await new Promise<void>((resolve) => waiting.push(resolve));
  }
}

function release(slot: Slot): void {
  slot.busy = false;
  slot.current = undefined;
  slot.worker.unref();
  waiting.shift()?.();
}

/** `buffer` if it holds `bytes`, otherwise a new one twice as large (so growth is rare). */
function atLeast(buffer: ArrayBuffer, bytes: number): ArrayBuffer {
  return buffer.byteLength >= bytes ? buffer : new ArrayBuffer(Math.max(bytes, 2 * buffer.byteLength));
}

/**
 * Inflates each zlib stream in `grains` to at most `maxOutputBytes` and hands each result, in
 * order, to `each`. The bytes passed to `each` are valid only during the call (the buffer is
 * reused). Throws InflateFailure for the first grain that is corrupt or inflates past the limit;
 * the grains before it have been handed over.
 */
export async function inflateGrains(grains: readonly Buffer[], maxOutputBytes: number, each: (index: number, bytes: Buffer) => void): Promise<void> {
  if (grains.length === 0) return;
  const slot = await acquire();
  let reply: Reply;
  try {
    const ends = new Uint32Array(grains.length);
    let total = 0;
    grains.forEach((grain, i) => {
      total += grain.length;
      ends[i] = total;
    });
    const data = atLeast(slot.data, total);
    const view = new Uint8Array(data);
    grains.forEach((grain, i) => view.set(grain, ends[i]! - grain.length));
    const out = atLeast(slot.out, grains.length * maxOutputBytes);
    reply = await new Promise<Reply>((resolve, reject) => {
      slot.current = { resolve, reject };
      const request: Request = { data, out, ends, maxOutputBytes };
      slot.worker.postMessage(request, [data, out, ends.buffer]);
    });
    slot.data = reply.data;
    slot.out = reply.out;
    const inflated = Buffer.from(reply.out);
    const done = reply.failure?.index ?? grains.length;
    for (let i = 0; i < done; i++) each(i, inflated.subarray(i * maxOutputBytes, i * maxOutputBytes + reply.lengths[i]!));
  } finally {
    release(slot);
  }
  if (reply.failure !== undefined) throw new InflateFailure(reply.failure.index, reply.failure.code, reply.failure.message);
}
