// Runs fuzz targets in worker threads with a watchdog: a worker whose current input runs past
// the hang limit (a synchronous spin no timer can interrupt) or whose process RSS passes the
// limit is terminated, its input rebuilt here from (seed, target, index), recorded, and a new
// worker resumes at the next index. Crash inputs are saved as <target>-<hash>.bin.
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { makeInput, type Outcome } from "./engine.ts";
import { loadSeeds } from "./seeds.ts";
import { targetByName } from "./targets.ts";
import type { WorkerInput, WorkerMessage } from "./worker.ts";

export interface FuzzOptions {
  readonly masterSeed: number;
  /** Iterations per target; unbounded when only a time budget is given. */
  readonly iterations?: number;
  /** Wall time per target. */
  readonly timeBudgetMs?: number;
  /** Per-input deadline inside the worker (async hangs); slow targets get three times this. */
  readonly deadlineMs: number;
  /** Watchdog limit for one input (synchronous hangs); above the deadline. */
  readonly hangMs: number;
  readonly rssLimitBytes: number;
  readonly maxAllocBytes: number;
  /** V8 heap limit of the worker; exceeding it is a memory crash. */
  readonly heapLimitMb: number;
  readonly shrink: boolean;
  /** Where crash inputs go; not saved when undefined. */
  readonly crashDir?: string;
  readonly seedDir: string;
  readonly log?: (line: string) => void;
}

export interface CrashRecord {
  readonly target: string;
  readonly index: number;
  readonly kind: "crash" | "hang" | "memory";
  readonly message: string;
  readonly signature: string;
  readonly seed: string;
  readonly file?: string;
}

export interface TargetReport {
  readonly iterations: number;
  readonly crashes: readonly CrashRecord[];
  readonly elapsedMs: number;
  /** How runs ended: "ok" (success) or the PortableError code, with counts. */
  readonly outcomes: Readonly<Record<string, number>>;
}

/** The short hash in a fixture's name. */
export function fixtureName(target: string, input: Uint8Array): string {
  return `${target}-${createHash("sha256").update(input).digest("hex").slice(0, 8)}.bin`;
}

const WATCHDOG_INTERVAL_MS = 100;

export async function fuzzTarget(target: string, options: FuzzOptions): Promise<TargetReport> {
  targetByName(target);
  const started = Date.now();
  const end = options.iterations ?? Number.MAX_SAFE_INTEGER;
  const stopAtMs = options.timeBudgetMs === undefined ? Number.MAX_SAFE_INTEGER : started + options.timeBudgetMs;
  const crashes: CrashRecord[] = [];
  const outcomes: Record<string, number> = {};
  const known = new Set<string>();
  const log = options.log ?? (() => {});

  const record = async (index: number, outcome: Exclude<Outcome, { kind: "ok" }>, input: Uint8Array, seed: string): Promise<void> => {
    let file: string | undefined;
    const first = !known.has(outcome.signature);
    known.add(outcome.signature);
    if (first && options.crashDir !== undefined) {
      await mkdir(options.crashDir, { recursive: true });
      file = join(options.crashDir, fixtureName(target, input));
      await writeFile(file, input);
    }
    crashes.push({ target, index, kind: outcome.kind, message: outcome.message, signature: outcome.signature, seed, ...(file === undefined ? {} : { file }) });
    if (first) log(`fuzz: ${target} #${index} ${outcome.kind}: ${outcome.message} [${outcome.signature}] (seed ${seed}, ${input.length} bytes${file === undefined ? "" : `, saved ${file}`})`);
  };

  /** The input of `index`, rebuilt here after the worker was killed on it. */
  const rebuild = async (index: number): Promise<{ input: Buffer; seed: string }> => {
    const set = await loadSeeds(options.seedDir, [target]);
    const definition = targetByName(target);
    return makeInput(definition.ownSeeds?.() ?? set.byTarget.get(target) ?? [], definition.hints, options.masterSeed, target, index);
  };

  let next = 0;
  while (next < end && Date.now() < stopAtMs) {
    const progress = new SharedArrayBuffer(3 * Float64Array.BYTES_PER_ELEMENT);
    const view = new Float64Array(progress);
    view[0] = next;
    const data: WorkerInput = {
      target,
      masterSeed: options.masterSeed,
      start: next,
      end,
      stopAtMs,
      deadlineMs: options.deadlineMs,
      seedDir: options.seedDir,
      progress,
      maxAllocBytes: options.maxAllocBytes,
      rssLimitBytes: options.rssLimitBytes,
      shrink: options.shrink,
      known: [...known],
    };
    const worker = new Worker(new URL("./worker.ts", import.meta.url), { workerData: data, resourceLimits: { maxOldGenerationSizeMb: options.heapLimitMb } });
    const pending: Promise<void>[] = [];
    const result = await new Promise<{ next: number } | { killed: number; outcome: Exclude<Outcome, { kind: "ok" }> }>((resolve) => {
      let settled = false;
      const settle = (value: { next: number } | { killed: number; outcome: Exclude<Outcome, { kind: "ok" }> }): void => {
        if (settled) return;
        settled = true;
        clearInterval(watchdog);
        resolve(value);
      };
      const watchdog = setInterval(() => {
        const startedAt = view[1] ?? 0;
        const index = view[0] ?? next;
        if (startedAt > 0 && Date.now() - startedAt > options.hangMs) {
          settle({ killed: index, outcome: { kind: "hang", message: `worker stuck for over ${options.hangMs} ms on one input (synchronous loop)`, signature: "hang-sync" } });
        } else if (process.memoryUsage.rss() > options.rssLimitBytes) {
          settle({ killed: index, outcome: { kind: "memory", message: `process RSS ${process.memoryUsage.rss()} bytes over ${options.rssLimitBytes}`, signature: "memory-rss" } });
        }
      }, WATCHDOG_INTERVAL_MS);
      worker.on("message", (message: WorkerMessage) => {
        if (message.type === "crash") pending.push(record(message.index, message.outcome, message.input, message.seed));
        else {
          for (const [key, count] of Object.entries(message.outcomes)) outcomes[key] = (outcomes[key] ?? 0) + count;
          settle({ next: message.next });
        }
      });
      worker.once("error", (err: Error & { code?: string }) => {
        const index = view[0] ?? next;
        const memory = err.code === "ERR_WORKER_OUT_OF_MEMORY";
        settle({ killed: index, outcome: { kind: memory ? "memory" : "crash", message: `worker died: ${err.message}`, signature: memory ? "memory-heap" : `worker-error:${err.name}` } });
      });
      worker.once("exit", (code) => settle({ killed: view[0] ?? next, outcome: { kind: "crash", message: `worker exited with code ${code}`, signature: "worker-exit" } }));
    });
    await worker.terminate();
    await Promise.all(pending);
    if ("next" in result) {
      // The worker stops at the end, at the time budget, or when its RSS grew too large (a
      // fresh worker then carries on).
      next = result.next;
      continue;
    }
    const { input, seed } = await rebuild(result.killed);
    await record(result.killed, result.outcome, input, seed);
    next = result.killed + 1;
  }
  return { iterations: next, crashes, elapsedMs: Date.now() - started, outcomes };
}
