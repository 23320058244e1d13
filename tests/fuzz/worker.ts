// The fuzz worker thread: runs iterations [start, end) of one target and reports crashes. It
// runs in a worker so the parent can kill it when a reader spins synchronously (a deadline timer
// cannot fire then) or its memory runs away; the parent rebuilds the input from its index.
import { parentPort, workerData } from "node:worker_threads";
import { classify, makeInput, shrink, type Outcome } from "./engine.ts";
import { loadSeeds } from "./seeds.ts";
import { targetByName, type FuzzTarget, type RunContext, type SeedFiles } from "./targets.ts";

export interface WorkerInput {
  readonly target: string;
  readonly masterSeed: number;
  readonly start: number;
  readonly end: number;
  /** Epoch ms after which no new iteration starts. */
  readonly stopAtMs: number;
  readonly deadlineMs: number;
  readonly seedDir: string;
  /** [current index, its start time (epoch ms), iterations finished]. */
  readonly progress: SharedArrayBuffer;
  readonly maxAllocBytes: number;
  readonly rssLimitBytes: number;
  readonly shrink: boolean;
  /** Crash signatures already found, which are not shrunk again. */
  readonly known: readonly string[];
}

export type WorkerMessage =
  | { readonly type: "crash"; readonly index: number; readonly outcome: Exclude<Outcome, { kind: "ok" }>; readonly input: Uint8Array; readonly seed: string }
  | { readonly type: "done"; readonly next: number; readonly outcomes: Readonly<Record<string, number>> };

/** An allocation larger than any honest reader makes for these inputs: a header trusted blindly. */
export class AllocationLimitError extends Error {
  override readonly name = "AllocationLimitError";
}

function limitAllocations(maxBytes: number): void {
  for (const key of ["alloc", "allocUnsafe", "allocUnsafeSlow"] as const) {
    const original = Buffer[key] as (size: number, ...rest: unknown[]) => Buffer;
    (Buffer as unknown as Record<string, unknown>)[key] = function limited(size: number, ...rest: unknown[]): Buffer {
      if (typeof size === "number" && size > maxBytes) throw new AllocationLimitError(`Buffer.${key}(${size}) exceeds the fuzz limit of ${maxBytes} bytes`);
      return original.call(Buffer, size, ...rest);
    };
  }
}

/** One run with a deadline; past it the run is aborted (its next read throws) and reported as a hang. */
export async function runOnce(target: FuzzTarget, input: Buffer, files: SeedFiles, deadlineMs: number): Promise<Outcome> {
  const ctx: RunContext = { aborted: false, reads: 0 };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), deadlineMs)));
  try {
    const result = await Promise.race([
      target.run(input, ctx, files).then(
        () => ({ err: undefined as unknown }),
        (err: unknown) => ({ err }),
      ),
      timeout,
    ]);
    if (result === "timeout") {
      ctx.aborted = true;
      return { kind: "hang", message: `no result within ${deadlineMs} ms (${ctx.reads} reads)`, signature: "hang" };
    }
    return classify(result.err);
  } finally {
    clearTimeout(timer);
  }
}

async function main(data: WorkerInput): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error("worker.ts runs as a worker thread");
  limitAllocations(data.maxAllocBytes);
  const target = targetByName(data.target);
  const set = await loadSeeds(data.seedDir, [data.target]);
  const seeds = target.ownSeeds?.() ?? set.byTarget.get(data.target) ?? [];
  if (seeds.length === 0) throw new Error(`no seeds for ${data.target} in ${data.seedDir}`);
  const files: SeedFiles = { companions: set.companions };
  const progress = new Float64Array(data.progress);
  const known = new Set(data.known);
  const deadlineMs = data.deadlineMs * (target.slow === true ? 3 : 1);
  // How runs ended: "ok" or the error code, to see how deep the inputs get.
  const outcomes: Record<string, number> = {};
  let index = data.start;
  for (; index < data.end && Date.now() < data.stopAtMs; index++) {
    progress[0] = index;
    progress[1] = Date.now();
    const { input, seed } = makeInput(seeds, target.hints, data.masterSeed, data.target, index);
    const outcome = await runOnce(target, input, files, deadlineMs);
    const key = outcome.kind === "ok" ? (outcome.code ?? "ok") : outcome.kind;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
    if (outcome.kind !== "ok") {
      let reported = input;
      if (data.shrink && !known.has(outcome.signature)) {
        // Shrinking re-runs the target many times: clear the start time so the parent's
        // watchdog judges each re-run, not the whole shrink.
        reported = await shrink(input, async (candidate) => {
          progress[1] = Date.now();
          const again = await runOnce(target, candidate, files, deadlineMs);
          return again.kind !== "ok" && again.signature === outcome.signature;
        });
      }
      known.add(outcome.signature);
      port.postMessage({ type: "crash", index, outcome, input: reported, seed } satisfies WorkerMessage);
    }
    progress[2] = index + 1;
    if (process.memoryUsage.rss() > data.rssLimitBytes) {
      port.postMessage({ type: "crash", index, outcome: { kind: "memory", message: `RSS ${process.memoryUsage.rss()} bytes after this input`, signature: "memory" }, input, seed } satisfies WorkerMessage);
      index++;
      break;
    }
  }
  progress[1] = 0;
  port.postMessage({ type: "done", next: index, outcomes } satisfies WorkerMessage);
}

if (parentPort !== null) await main(workerData as WorkerInput);
