// A process-wide limit on disk jobs (a placement, a conversion, a replication pass) running at
// once. Each job bounds its own memory (convert: concurrency × 1 MiB chunks; replicate: blocks
// in flight; cloud sinks: their request concurrency), but nothing bounded how many jobs one
// process runs: a Pulumi dynamic provider serves every portable:Disk of a stack from one
// process, and the engine runs up to --parallel operations at once. Jobs beyond the limit wait
// for a slot in arrival order, so memory follows the limit, not the number of jobs started.
//
// The limit is PORTABLE_MAX_PARALLEL_JOBS (1..64), read when a job asks for a slot; default 2.
// Each job is already parallel inside (reads ahead, deflate on the thread pool, 8-64 requests
// in flight), so more jobs than cores mostly add memory: `npm run bench:parallel`, eight 1 GiB
// qcow2 → streamOptimized VMDK conversions on 2 shared cores, took 13-22 s whether 2 or 8 ran
// at once (noise between runs exceeded the difference), with peak RSS 272-289 MiB at a limit
// of 2 and 395-431 MiB at 8. Raise it for many small disks on slow
// links. The semaphore lives on globalThis under a Symbol.for key, so copies of this library
// loaded by one process share it (as errors.ts does).
import { InvalidArgsError } from "../errors.ts";

export const MAX_PARALLEL_JOBS_ENV = "PORTABLE_MAX_PARALLEL_JOBS";
export const DEFAULT_MAX_PARALLEL_JOBS = 2;
/** Above this the limit protects nothing on the machines this runs on. */
export const MAX_PARALLEL_JOBS_LIMIT = 64;

interface Slots {
  running: number;
  readonly waiting: Array<() => void>;
}

const KEY = Symbol.for("portable-workload.jobSlots");

function slots(): Slots {
  const holder = globalThis as unknown as Record<symbol, Slots | undefined>;
  return (holder[KEY] ??= { running: 0, waiting: [] });
}

/** The configured limit: PORTABLE_MAX_PARALLEL_JOBS, or the default. */
export function maxParallelJobs(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const text = env[MAX_PARALLEL_JOBS_ENV];
  if (text === undefined || text.trim() === "") return DEFAULT_MAX_PARALLEL_JOBS;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > MAX_PARALLEL_JOBS_LIMIT) {
    throw new InvalidArgsError("INVALID_MAX_PARALLEL_JOBS", `${MAX_PARALLEL_JOBS_ENV} must be a whole number 1..${MAX_PARALLEL_JOBS_LIMIT}, got "${text}"`);
  }
  return value;
}

/** Jobs running and waiting now (tests and benchmarks check the limit holds). */
export function jobSlotsInUse(): { readonly running: number; readonly waiting: number } {
  const state = slots();
  return { running: state.running, waiting: state.waiting.length };
}

/**
 * Runs `job` once a slot is free and frees the slot when it settles. Do not nest: a job that
 * waits for another slot while holding one can deadlock at a limit of 1.
 */
export async function withJobSlot<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const limit = maxParallelJobs();
  const state = slots();
  if (state.running < limit) state.running++;
  else {
    // Woken by a finishing job, which hands its slot over (running stays counted), so a job
    // arriving in between cannot slip past the limit.
    await new Promise<void>((resolve, reject) => {
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const at = state.waiting.indexOf(wake);
        if (at >= 0) state.waiting.splice(at, 1);
        reject(signal?.reason);
      };
      signal?.throwIfAborted();
      signal?.addEventListener("abort", onAbort, { once: true });
      state.waiting.push(wake);
    });
  }
  try {
    return await job();
  } finally {
    // Hand the slot on, unless the limit was lowered meanwhile and enough still run.
    const next = state.running <= maxParallelJobsOrDefault() ? state.waiting.shift() : undefined;
    if (next !== undefined) next();
    else state.running--;
  }
}

function maxParallelJobsOrDefault(): number {
  try {
    return maxParallelJobs();
  } catch {
    return DEFAULT_MAX_PARALLEL_JOBS;
  }
}
