// The warm loop and the cutover (DESIGN.md "migrate/"), one sequence for every pair of
// platforms: copy while the source runs, send deltas until the remaining change is small, then
// stop the source, send the last delta, verify, start the target, check its health and commit.
// A failure after the source stopped rolls back: the target is stopped and removed and the
// source started again, and nothing is committed. `cold` stops first and copies once; without a
// cutover only the warm passes run (pre-staging). Every step is recorded with its timestamps,
// and the record is written after each step so that a crash leaves the truth on disk.
import { rename, writeFile } from "node:fs/promises";
import { isPortableError, PortableError } from "../errors.ts";
import { recordVerification, type ReplicaStore } from "../transfer/checkpoint.ts";
import type { BlockManifest } from "../disk/manifest.ts";
import type { ReplicaTarget } from "../contracts/replica-target.ts";
import { replicate } from "../transfer/replicate.ts";
import { verifyReplica, type VerifyPolicy, type VerifyResult } from "../transfer/verify.ts";
import type { DiskPassResult, DiskReplication, HealthResult, Machine, PointInTime } from "./types.ts";

/**
 * The usual DiskReplication: block replication (transfer/replicate.ts) from a point-in-time view
 * of the source into a replica target, verified by reading the target back.
 */
export function blockReplication(options: {
  readonly key: string;
  readonly store: ReplicaStore;
  readonly target: ReplicaTarget;
  readonly openPointInTime: () => Promise<PointInTime>;
  readonly conversion?: string;
}): DiskReplication {
  let last: BlockManifest | undefined;
  return {
    key: options.key,
    ...(options.conversion === undefined ? {} : { conversion: options.conversion }),
    async pass(signal) {
      const view = await options.openPointInTime();
      try {
        const result = await replicate(view.source, options.target, { store: options.store, key: options.key, ...(signal ? { signal } : {}) });
        last = result.manifest;
        return result;
      } finally {
        await view.release();
      }
    },
    async verify(policy, signal) {
      const started = performance.now();
      const committed = await options.store.loadCommitted(options.key);
      if (committed === undefined || last === undefined) throw new PortableError("CUTOVER_NO_REPLICA", `verify: ${options.key} has no pass to verify`);
      const back = await options.target.openReadBack(committed);
      try {
        const result = await verifyReplica(back, last, policy, signal);
        if (result.ok) await recordVerification(options.store, options.key, { blocksChecked: result.blocksChecked, seconds: (performance.now() - started) / 1000 });
        return result;
      } finally {
        await back.close();
      }
    },
  };
}

export interface WarmPolicy {
  /** Stop iterating once a pass sends at most this many bytes. @default 64 MiB */
  readonly deltaThresholdBytes?: number;
  /** Passes before cutover at most (the first full copy included). @default 5 */
  readonly maxPasses?: number;
}

export interface PassRecord {
  readonly pass: number;
  readonly startedAt: string;
  readonly seconds: number;
  readonly bytesSent: number;
  readonly blocksSent: number;
  readonly disks: ReadonlyArray<{ readonly key: string; readonly bytesSent: number; readonly blocksSent: number; readonly resumed: boolean; readonly location: string; readonly bytesRead?: number; readonly scan?: "tracked" | "full" }>;
}

export interface ReplicationHooks {
  readonly onPass?: (record: PassRecord) => void;
  readonly signal?: AbortSignal;
}

/** One pass over every disk. */
export async function replicatePass(disks: readonly DiskReplication[], pass: number, hooks: ReplicationHooks = {}): Promise<{ record: PassRecord; results: DiskPassResult[] }> {
  const startedAt = new Date();
  const results: DiskPassResult[] = [];
  for (const disk of disks) results.push(await disk.pass(hooks.signal));
  const record: PassRecord = {
    pass,
    startedAt: startedAt.toISOString(),
    seconds: (Date.now() - startedAt.getTime()) / 1000,
    bytesSent: results.reduce((s, r) => s + r.bytesSent, 0),
    blocksSent: results.reduce((s, r) => s + r.blocksSent, 0),
    disks: results.map((r, i) => ({ key: disks[i]!.key, bytesSent: r.bytesSent, blocksSent: r.blocksSent, resumed: r.resumed, location: r.location, ...(r.scan === undefined ? {} : { scan: r.scan, bytesRead: r.bytesRead ?? 0 }) })),
  };
  hooks.onPass?.(record);
  return { record, results };
}

/** Passes while the source runs, until a pass sends at most the threshold or the limit is hit. */
export async function warmReplicate(disks: readonly DiskReplication[], policy: WarmPolicy, hooks: ReplicationHooks = {}): Promise<{ passes: PassRecord[]; converged: boolean }> {
  const threshold = policy.deltaThresholdBytes ?? 64 * 1024 * 1024;
  const maxPasses = Math.max(1, policy.maxPasses ?? 5);
  const passes: PassRecord[] = [];
  for (let pass = 1; pass <= maxPasses; pass++) {
    const { record } = await replicatePass(disks, pass, hooks);
    passes.push(record);
    // The first pass of a new replica moves everything: its size says nothing about the delta.
    if (pass > 1 && record.bytesSent <= threshold) return { passes, converged: true };
  }
  return { passes, converged: false };
}

export type CutoverStepName =
  | "warm-passes"
  | "stop-source"
  | "final-pass"
  | "verify"
  | "start-target"
  | "health-check"
  | "commit"
  | "rollback-stop-target"
  | "rollback-remove-target"
  | "rollback-start-source";

export interface CutoverStep {
  readonly name: CutoverStepName;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly ok: boolean;
  readonly detail?: string;
}

export interface CutoverRecord {
  /** "staged": the warm passes ran and, without a cutover, the source runs on. */
  state: "running" | "staged" | "completed" | "rolled-back" | "rollback-failed";
  readonly mode: "warm" | "cold";
  readonly startedAt: string;
  endedAt?: string;
  readonly steps: CutoverStep[];
  /** From the source's stop to the target's passing health check (or the source's restart). */
  downtimeMs?: number;
  /** The passes while the source ran (warm mode), the first full copy included. */
  warmPasses?: PassRecord[];
  finalPass?: PassRecord;
  /** The guest fixups applied to the final state (inside the final pass, so inside the downtime). */
  fixups?: { readonly disk: string; readonly seconds: number; readonly applied: ReadonlyArray<{ readonly kind: string; readonly detail: string; readonly seconds: number }> };
  verify?: VerifyResult[];
  error?: { readonly code: string; readonly message: string };
  /** An earlier, interrupted run committed this move; this one only took it over (no step ran twice). */
  adopted?: boolean;
}

export interface CutoverOptions extends ReplicationHooks {
  readonly source: Machine;
  readonly target: Machine & {
    /** Deletes what the move made on the target (its machine, its disks): the rollback's last word there. */
    readonly remove?: () => Promise<void>;
  };
  readonly disks: readonly DiskReplication[];
  /**
   * Warm passes while the source runs, before it stops (mode warm). Absent: cold, the source
   * stops first and the final pass is the one copy.
   */
  readonly warm?: WarmPolicy;
  /** Run the cutover after the warm passes; false pre-stages (the source keeps running). @default true */
  readonly cutover?: boolean;
  /** Makes the target the recorded placement: the last step, after the health check. */
  readonly commit?: () => Promise<void>;
  readonly verify?: VerifyPolicy;
  readonly healthCheck: () => Promise<HealthResult>;
  /** Graceful shutdown budget for the source. @default 60 s */
  readonly gracefulTimeoutMs?: number;
  /** Where the record is written after each step (atomically). */
  readonly recordPath?: string;
  readonly onStep?: (step: CutoverStep) => void;
}

export class CutoverError extends PortableError {
  readonly record: CutoverRecord;
  constructor(code: string, message: string, record: CutoverRecord, cause: unknown) {
    super(code, message, { cause });
    this.record = record;
  }
}

/**
 * Runs the cutover. Resolves with the record when the target is up and healthy; otherwise
 * rolls back and throws a CutoverError carrying the record (state "rolled-back", or
 * "rollback-failed" when the source could not be started again).
 */
export async function cutover(options: CutoverOptions): Promise<CutoverRecord> {
  const record: CutoverRecord = { state: "running", mode: options.warm === undefined ? "cold" : "warm", startedAt: new Date().toISOString(), steps: [] };
  const save = async () => {
    if (options.recordPath === undefined) return;
    const temp = `${options.recordPath}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify(record, null, 2));
    await rename(temp, options.recordPath);
  };
  const step = async <T>(name: CutoverStepName, fn: () => Promise<T>, describe?: (value: T) => string): Promise<T> => {
    const startedAt = new Date().toISOString();
    try {
      const value = await fn();
      const entry: CutoverStep = { name, startedAt, endedAt: new Date().toISOString(), ok: true, ...(describe ? { detail: describe(value) } : {}) };
      record.steps.push(entry);
      options.onStep?.(entry);
      await save();
      return value;
    } catch (error) {
      const entry: CutoverStep = { name, startedAt, endedAt: new Date().toISOString(), ok: false, detail: messageOf(error) };
      record.steps.push(entry);
      options.onStep?.(entry);
      await save();
      throw error;
    }
  };

  let downtimeStart: number | undefined;
  let targetStarted = false;
  try {
    await save();
    if (options.warm !== undefined) {
      const warm = await step("warm-passes", () => warmReplicate(options.disks, options.warm!, options), (w) => `${w.passes.length} pass(es), ${w.passes.reduce((s, p) => s + p.bytesSent, 0)} bytes${w.converged ? ", converged" : ", pass limit reached"}`);
      record.warmPasses = warm.passes;
      if (options.cutover === false) {
        record.state = "staged";
        record.endedAt = new Date().toISOString();
        await save();
        return record;
      }
    }
    downtimeStart = performance.now();
    await step("stop-source", () => options.source.stop({ gracefulTimeoutMs: options.gracefulTimeoutMs ?? 60_000 }), (r) => (r.graceful ? "graceful shutdown" : "hard power-off"));
    const finalPass = await step("final-pass", () => replicatePass(options.disks, 0, options), ({ record: r }) => `${r.blocksSent} blocks, ${r.bytesSent} bytes`);
    record.finalPass = finalPass.record;
    const policy = options.verify ?? { mode: "full" };
    record.verify = await step("verify", async () => {
      const results: VerifyResult[] = [];
      for (const disk of options.disks) {
        const result = await disk.verify(policy, options.signal);
        if (!result.ok) throw new PortableError("VERIFY_MISMATCH", `verify ${disk.key}: ${result.mismatches.length} block(s) differ from the source, first ${result.mismatches[0]}`);
        results.push(result);
      }
      return results;
    }, (r) => `${r.reduce((s, x) => s + x.blocksChecked, 0)} blocks checked (${policy.mode})`);
    await step("start-target", async () => {
      targetStarted = true;
      await options.target.start();
    });
    await step("health-check", async () => {
      const health = await options.healthCheck();
      if (!health.ok) throw new PortableError("HEALTH_CHECK_FAILED", `health check of ${options.target.name} failed: ${health.detail}`);
      return health;
    }, (h) => h.detail);
    record.downtimeMs = performance.now() - downtimeStart;
    if (options.commit !== undefined) await step("commit", options.commit);
    record.state = "completed";
    record.endedAt = new Date().toISOString();
    await save();
    return record;
  } catch (error) {
    record.error = { code: isPortableError(error) ? error.code : "CUTOVER_FAILED", message: messageOf(error) };
    try {
      if (targetStarted) await step("rollback-stop-target", () => options.target.stop({ gracefulTimeoutMs: 10_000 }));
      // What the final pass wrote is removed; a failed warm pass keeps its replica to resume from.
      if (downtimeStart !== undefined && options.target.remove !== undefined) await step("rollback-remove-target", options.target.remove);
      if (downtimeStart !== undefined && !(await options.source.isRunning())) await step("rollback-start-source", () => options.source.start());
      record.state = "rolled-back";
    } catch {
      record.state = "rollback-failed";
    }
    if (downtimeStart !== undefined) record.downtimeMs = performance.now() - downtimeStart;
    record.endedAt = new Date().toISOString();
    await save();
    throw new CutoverError(record.state === "rolled-back" ? "CUTOVER_ROLLED_BACK" : "CUTOVER_ROLLBACK_FAILED", `cutover ${record.state}: ${record.error.message}`, record, error);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
