// A workload's placement, written once over the platforms' machine drivers
// (contracts/machine-driver.ts, chosen in clouds/registry.ts): place its disks and create its
// machine, check it came up, stop, destroy, and move it: warm passes, then the cutover from the
// machine on the old placement to a new one (migrate.ts: stop the source, final delta of every
// disk, verify, start the target, health check, commit; rollback on failure). On AWS and Azure
// the machine is the official provider's instance or VM, created after the cutover: their
// drivers only stop, start and read it as a move's source. Every platform's disks move through
// the same sequence.
import { PortableError } from "../errors.ts";
import type { Placement } from "../spec/placement.ts";
import type { Workload } from "../spec/workload.ts";
import { diskDriverFor, machineDriver, placementContext } from "../clouds/registry.ts";
import type { DestroyMachineOptions, MachineRequest, MachineState, PlacedDiskRef } from "../contracts/machine-driver.ts";
import type { VsphereConnection } from "../contracts/vsphere-connection.ts";
import { checkRecordedState, commitMove, commitPlacement, currentOf, placeDisk, readCommittedMove, readCurrent, recordTimings, refreshSourceRecord, removeDisk, replicaKey, replicaStoreFor, stateStoreBeside, type AppliedFixups, type CommittedMove, type DiskFixups, type PlacedDisk } from "./disk-placement.ts";
import { cutover, CutoverError, type CutoverOptions, type CutoverRecord } from "./migrate.ts";
import { verifyPolicyOf } from "../transfer/verify.ts";
import { acquireLease, fileStateStore, type Lease, type StateStore } from "../contracts/state-store.ts";
import { plainName } from "./targets.ts";
import type { DiskReplication, HealthResult, Machine } from "./types.ts";
import type { ReplicateProgress } from "../transfer/replicate.ts";

export type { DestroyMachineOptions, MachineRequest, MachineState, PlacedDiskRef } from "../contracts/machine-driver.ts";

/** A machine's name where the platform takes one (a local machine's folder and QEMU name). */
function machineName(workload: Workload): string {
  return plainName(workload.name).slice(0, 63);
}

/** Creates the machine on its placed disks and starts it (health-checked) when the placement says so. */
export async function createMachine(request: MachineRequest): Promise<MachineState> {
  const driver = await machineDriver(request.placement.kind);
  // An official provider's machine is created after us, from the disks we placed.
  if (driver.createdAfterCutover === true) return { kind: request.placement.kind, machineId: "", running: false };
  const state = await driver.create(request, machineName(request.workload));
  if (request.stateDir !== undefined && state.bootSeconds !== undefined) await recordTimings(request.stateDir, request.workload.name, state.kind, { bootSeconds: state.bootSeconds });
  return state;
}

/** Stops the machine: graceful first (ACPI / guest shutdown), then hard. */
export async function stopMachine(request: MachineRequest, machineId: string, gracefulTimeoutMs = 30_000): Promise<{ graceful: boolean }> {
  const started = performance.now();
  const result = await (await machineDriver(request.placement.kind)).stop(request, machineId, gracefulTimeoutMs);
  if (request.stateDir !== undefined) await recordTimings(request.stateDir, request.workload.name, request.placement.kind, { stopSeconds: (performance.now() - started) / 1000 });
  return result;
}

export async function isRunning(request: MachineRequest, machineId: string): Promise<boolean> {
  return (await machineDriver(request.placement.kind)).isRunning(request, machineId);
}

/** Starts a stopped machine again (a rollback). */
export async function restartMachine(request: MachineRequest, machineId: string): Promise<void> {
  await (await machineDriver(request.placement.kind)).start(request, machineId);
}

/**
 * Deletes the machine (not its disks: those are portable:Disk resources). A local machine is
 * stopped and its folder (logs, QEMU arguments, UEFI variables, sockets) removed with it.
 */
export async function destroyMachine(request: MachineRequest, machineId: string, options: DestroyMachineOptions = {}): Promise<void> {
  if (machineId === "") return;
  await (await machineDriver(request.placement.kind)).destroy(request, machineId, options);
}

/** One disk of a workload as its placement resource is given it: where from, where to. */
export interface DiskPlan {
  readonly id: string;
  /** Where its bytes come from when first placed: a path, a URL the openers know (clouds/registry.ts). */
  readonly source: string;
  readonly sourceFormat?: string;
  /** Where it goes on this placement (migrate/targets.ts). */
  readonly target: string;
}

/**
 * A disk as placed: where it is, and what its last copy did (what a portable:Disk records).
 * `bytesSent` and `blocksSent` count every pass of a move, warm and final; `fixups` is what the
 * guest fixups did on the move's first copy of the boot disk (the one with the test boot), the
 * cutover record has the final pass's.
 */
export type PlacedDiskRecord = PlacedDiskRef & Pick<PlacedDisk, "virtualSizeBytes" | "digest" | "reference" | "passes" | "bytesSent" | "blocksSent" | "fixups">;

/** How a placement's copies are made, whatever the operation. */
export interface CopyPolicy {
  readonly stateDir: string;
  readonly verify: "full" | "sampled" | "none";
  /** A progress callback per disk and phase ("copy", "warm pass 2", "final pass"). */
  readonly onDiskProgress?: (diskId: string, phase: string) => ((progress: ReplicateProgress) => void) | undefined;
  /** The boot disk's guest fixups: applied to every copy of it, the test boot on the first only. */
  readonly fixups?: DiskFixups & { readonly disk: string };
  /** Steps of the boot disk's fixups worth a log line (each fixup, the test boot). */
  readonly onStep?: (line: string) => void;
  /** Each cutover step as it ends, as a log line. */
  readonly onCutoverStep?: (line: string) => void;
}

function recordOf(id: string, target: string, placed: PlacedDisk, earlier?: PlacedDiskRecord): PlacedDiskRecord {
  return {
    id,
    target,
    location: placed.location,
    virtualSizeBytes: placed.virtualSizeBytes,
    digest: placed.digest,
    reference: placed.reference,
    passes: placed.passes,
    bytesSent: (earlier?.bytesSent ?? 0) + placed.bytesSent,
    blocksSent: (earlier?.blocksSent ?? 0) + placed.blocksSent,
    ...(earlier?.fixups ?? placed.fixups ? { fixups: (earlier?.fixups ?? placed.fixups)! } : {}),
  };
}

/** Copies one disk from its source onto its target, as the placement's record (a create, a new source). */
async function copyDisk(request: MachineRequest, policy: CopyPolicy, disk: DiskPlan): Promise<PlacedDiskRecord> {
  const onProgress = policy.onDiskProgress?.(disk.id, "copy");
  const fixups = policy.fixups?.disk === disk.id ? { fixups: policy.fixups } : {};
  const placed = await placeDisk({
    workload: request.workload.name,
    disk: disk.id,
    source: disk.source,
    ...(disk.sourceFormat === undefined ? {} : { sourceFormat: disk.sourceFormat }),
    target: disk.target,
    stateDir: policy.stateDir,
    verify: verifyPolicyOf(policy.verify),
    ...(request.vsphere ? { vsphere: request.vsphere } : {}),
    ...(onProgress ? { onProgress } : {}),
    ...fixups,
    ...(policy.onStep ? { onStep: policy.onStep } : {}),
  });
  return recordOf(disk.id, disk.target, placed);
}

/**
 * A workload's first placement: every disk copied from its source onto the placement, then the
 * machine created on them (and started, health-checked, when the placement says so).
 */
export async function placeWorkload(request: MachineRequest, policy: CopyPolicy, plans: readonly DiskPlan[]): Promise<{ state: MachineState; disks: PlacedDiskRecord[] }> {
  const disks: PlacedDiskRecord[] = [];
  for (const plan of plans) disks.push(await copyDisk(request, policy, plan));
  const state = await createMachine({ ...request, disks });
  // The first placement is the committed one (a record left by an earlier stack is not).
  await commitMove(policy.stateDir, request.workload.name, committedOf(state, disks));
  return { state, disks };
}

function committedOf(state: MachineState | undefined, disks: readonly PlacedDiskRef[]): CommittedMove {
  return { machineId: state?.machineId ?? "", targets: Object.fromEntries(disks.map((d) => [d.id, d.target])), committedAt: new Date().toISOString() };
}

/**
 * Same placement, new shape: the machine is recreated on its disks; a disk that is new or has a
 * new source is copied (incrementally onto its replica), one no longer in the spec is removed.
 */
export async function reshapeWorkload(from: MachineRequest & { readonly machineId: string }, to: MachineRequest, policy: CopyPolicy, plans: readonly DiskPlan[], previous: readonly (DiskPlan & Partial<PlacedDiskRecord>)[]): Promise<{ state: MachineState; disks: PlacedDiskRecord[] }> {
  await destroyMachine(from, from.machineId, { keepLocalState: true });
  const disks: PlacedDiskRecord[] = [];
  for (const plan of plans) {
    const before = previous.find((d) => d.id === plan.id);
    // Only a source that is known to have changed is copied again: the disk holds the guest's writes.
    const sourceChanged = before?.source !== undefined && (before.source !== plan.source || before.sourceFormat !== plan.sourceFormat);
    const same = before?.location !== undefined && before.target === plan.target && !sourceChanged;
    disks.push(same ? recordOnly(before) : await copyDisk(to, policy, plan));
  }
  for (const gone of previous.filter((d) => !plans.some((p) => p.id === d.id))) {
    await removeDisk({ workload: from.workload.name, disk: gone.id, target: gone.target, stateDir: policy.stateDir, virtualSizeBytes: 0, ...(from.vsphere ? { vsphere: from.vsphere } : {}) });
  }
  const state = await createMachine({ ...to, disks });
  await commitMove(policy.stateDir, to.workload.name, committedOf(state, disks));
  return { state, disks };
}

/** A record without the plan fields a caller merged into it. */
function recordOnly(merged: Partial<DiskPlan> & Partial<PlacedDiskRecord>): PlacedDiskRecord {
  const record = { ...merged };
  delete record.source;
  delete record.sourceFormat;
  return record as PlacedDiskRecord;
}

export interface MoveRequest extends CopyPolicy {
  /** The placement the workload runs on now, its machine and its placed disks. */
  readonly from: MachineRequest & { readonly machineId: string; readonly disks: readonly PlacedDiskRecord[] };
  /** The new placement; its disks' `location` is filled in by the passes. */
  readonly to: MachineRequest;
  /** warm: passes while the source runs, then the cutover; cold: stop first, copy once. */
  readonly mode: "warm" | "cold";
  /** Run the cutover; false pre-stages: warm passes only, the source runs on. @default true */
  readonly cutover?: boolean;
  /** Warm passes at most, the first full copy included. @default 3 */
  readonly maxPasses?: number;
  /** A warm pass sending at most this much ends the warm loop. @default 64 MiB */
  readonly deltaThresholdBytes?: number;
  /** Delete the old machine and its disks after a successful move (else they stay, stopped). */
  readonly deleteSource: boolean;
  /**
   * The target held this workload before (a kept placement, flipping back): its disks are
   * replicas to update, and a rollback leaves them. Otherwise a rollback removes what the move
   * wrote there.
   */
  readonly targetWasKept?: boolean;
  /** The machine kept (stopped) on the target since the workload left it: replaced by the new one. */
  readonly keptMachineId?: string;
  readonly gracefulTimeoutMs?: number;
  /**
   * When the caller's record was last moved (the end of the last move Pulumi state recorded): a
   * commit in the state folder older than that is this machine's stale one (another machine has
   * moved the workload since), never an interrupted run to take over.
   */
  readonly recordedAt?: string;
}

export interface MoveResult {
  readonly record: CutoverRecord;
  /** The machine the workload runs on now: the new one, or the source's when only staged. */
  readonly state: MachineState;
  /** Where its disks are now (the source's when only staged). */
  readonly disks: readonly PlacedDiskRecord[];
  /** Without a cutover: the replicas the warm passes left on the new placement. */
  readonly staged?: readonly PlacedDiskRecord[];
}

/**
 * A placement change, as one sequence for every pair of platforms (migrate.ts cutover): warm
 * passes from the running source's point-in-time view into the new placement, until a pass
 * sends little or maxPasses is reached; then the source stops, each disk gets its final delta
 * and is verified, the new machine starts and must pass its health check, and the new
 * placement is committed (the record a plan moves from). Nothing is committed before: any
 * failure after the stop rolls back (the new machine and what the move wrote are removed, the
 * old machine is started again), and the record says where the workload still runs.
 */
export async function moveMachine(request: MoveRequest): Promise<MoveResult> {
  const { from, to } = request;
  const driver = await machineDriver(to.placement.kind);
  // Never cut over twice: a run that committed and was then killed is taken over as it is.
  const adopted = await adoptCommitted(request);
  if (adopted !== undefined) return adopted;
  // The disks are moved from what Pulumi state recorded, or not at all.
  await checkRecordedState(from.workload.name, from.disks, request.stateDir, from.vsphere);
  // The source is the truth until a commit. A machine of this workload on the target is a kept
  // one (a flip back) or one an interrupted cutover started: it goes before anything is written.
  const there = request.keptMachineId ?? (await driver.find?.(to, machineName(to.workload)));
  if (there !== undefined) await destroyMachine(to, there, { keepLocalState: true });
  const latest = new Map<string, PlacedDiskRecord>();
  let state: MachineState | undefined;
  const verifiedBlocks = new Map<string, number>();
  let finalFixups: AppliedFixups | undefined;
  // What the passes are called in progress lines: warm pass 1, 2, …, then the final pass.
  let phase = request.mode === "warm" || request.cutover === false ? "warm pass 1" : "final pass";
  const disks: DiskReplication[] = to.disks.map((disk) => {
    const old = from.disks.find((d) => d.id === disk.id);
    if (old === undefined) throw new PortableError("MOVE_DISK_UNKNOWN", `move ${to.workload.name}: disk ${disk.id} has no copy on the old placement`);
    return {
      key: disk.id,
      async pass() {
        const onProgress = request.onDiskProgress?.(disk.id, phase);
        const boot = request.fixups?.disk === disk.id ? request.fixups : undefined;
        const result = await placeDisk({
          workload: to.workload.name,
          disk: disk.id,
          ...(onProgress === undefined ? {} : { onProgress }),
          // The live disk, read at a point in time while its machine runs (a frozen overlay
          // locally, a snapshot of an EC2 instance's volume), else the placed copy.
          source: { replicaOf: old.target },
          live: { workload: from.workload, placement: from.placement },
          target: disk.target,
          stateDir: request.stateDir,
          verify: verifyPolicyOf(request.verify),
          ...(from.vsphere ?? to.vsphere ? { vsphere: (to.vsphere ?? from.vsphere)! } : {}),
          // The test boot runs on the move's first copy only; every later one gets the fixups again.
          ...(boot === undefined ? {} : { fixups: latest.has(disk.id) ? { ...boot, testBoot: undefined } : boot }),
          ...(request.onStep ? { onStep: request.onStep } : {}),
          record: false,
          final: phase === "final pass",
        });
        if (phase === "final pass" && result.fixups !== undefined) finalFixups = result.fixups;
        latest.set(disk.id, recordOf(disk.id, disk.target, result, latest.get(disk.id)));
        verifiedBlocks.set(disk.id, result.verifiedBlocks);
        return result;
      },
      // placeDisk read the target back already; report what it checked.
      async verify(policy) {
        return { mode: policy.mode, blocksChecked: verifiedBlocks.get(disk.id) ?? 0, bytesRead: 0, mismatches: [], ok: true, seconds: 0 };
      },
    };
  });
  const source: Machine = {
    name: `${from.placement.kind}:${from.machineId}`,
    isRunning: () => isRunning(from, from.machineId),
    start: () => restartMachine(from, from.machineId),
    stop: (options) => stopMachine(from, from.machineId, options?.gracefulTimeoutMs),
  };
  const target: CutoverOptions["target"] = {
    name: `${to.placement.kind}:${to.workload.name}`,
    isRunning: async () => state !== undefined && state.running,
    async start() {
      state = await createMachine({ ...to, disks: to.disks.map((d) => latest.get(d.id) ?? d) });
    },
    async stop() {
      // A machine whose health check failed inside create has no state yet, but has its name.
      await destroyMachine(to, state?.machineId ?? machineName(to.workload));
      return { graceful: true };
    },
    ...(request.targetWasKept === true ? {} : {
      async remove() {
        for (const disk of to.disks) {
          await removeDisk({ workload: to.workload.name, disk: disk.id, target: disk.target, stateDir: request.stateDir, virtualSizeBytes: 0, ...(to.vsphere ? { vsphere: to.vsphere } : {}) });
        }
      },
    }),
  };
  const withFixups = (record: CutoverRecord): CutoverRecord => {
    if (request.fixups !== undefined && finalFixups !== undefined) record.fixups = { disk: request.fixups.disk, seconds: finalFixups.seconds, applied: finalFixups.outcomes.map((o) => ({ kind: o.kind, detail: o.detail, seconds: o.seconds })) };
    return record;
  };
  const warm = request.mode === "warm" || request.cutover === false;
  const maxPasses = request.maxPasses ?? 3;
  const record = withFixups(await cutover({
    source,
    target,
    disks,
    ...(warm ? { warm: { maxPasses, ...(request.deltaThresholdBytes === undefined ? {} : { deltaThresholdBytes: request.deltaThresholdBytes }) } } : {}),
    cutover: request.cutover ?? true,
    verify: verifyPolicyOf(request.verify),
    gracefulTimeoutMs: request.gracefulTimeoutMs ?? 30_000,
    onPass: (p) => {
      phase = `warm pass ${p.pass + 1}`;
    },
    onStep: (s) => {
      if (s.name === "stop-source") phase = "final pass";
      request.onCutoverStep?.(`${s.name}: ${s.ok ? "ok" : "failed"}${s.detail ? ` (${s.detail})` : ""}`);
    },
    healthCheck: async (): Promise<HealthResult> => {
      if (state === undefined) return { ok: false, detail: "the target machine was not created" };
      if (driver.createdAfterCutover === true) return { ok: true, detail: `the ${to.placement.kind} machine is the official provider's resources, created after this cutover` };
      if (!driver.wantsRunning(to.placement)) return { ok: true, detail: "created (not started, as the placement asks)" };
      // A local guest that printed its marker may have powered off by itself: the marker is the proof.
      return { ok: state.running, detail: state.bootSeconds === undefined ? "running" : `up in ${state.bootSeconds.toFixed(1)} s` };
    },
    commit: async () => {
      // Each disk's record, then the move's: only a complete commit is taken over by a later run.
      for (const disk of to.disks) {
        const placed = latest.get(disk.id)!;
        await commitPlacement(request.stateDir, to.workload.name, disk.id, currentOf(await diskDriverFor(disk.target), disk.target, placed.location, placed.virtualSizeBytes, to.vsphere));
        const fixed = request.fixups?.disk === disk.id && (finalFixups?.outcomes.length ?? 0) > 0;
        if (!fixed) await refreshSourceRecord({ stateDir: request.stateDir, workload: to.workload.name, disk: disk.id, source: from.disks.find((d) => d.id === disk.id)!.target, target: disk.target, ...(from.vsphere ?? to.vsphere ? { vsphere: (to.vsphere ?? from.vsphere)! } : {}) });
      }
      await commitMove(request.stateDir, to.workload.name, committedOf(state, to.disks));
    },
  }).catch((error: unknown) => {
    if (error instanceof CutoverError) withFixups(error.record);
    throw error;
  }));
  const placed = to.disks.map((d) => latest.get(d.id)!);
  if (record.state === "staged") return { record, state: { kind: from.placement.kind, machineId: from.machineId, running: await isRunning(from, from.machineId) }, disks: from.disks, staged: placed };
  if (request.deleteSource) await removeWorkload(from, from.machineId, request.stateDir);
  return { record, state: state!, disks: placed };
}

/**
 * The move as an earlier run committed it, when one did and was interrupted before its caller
 * recorded it: the target's machine runs (started again if it stopped), the source is stopped,
 * and the disks are where the commit put them. Undefined when the last commit was elsewhere.
 */
async function adoptCommitted(request: MoveRequest): Promise<MoveResult | undefined> {
  const { from, to } = request;
  const committed = readCommittedMove(request.stateDir, to.workload.name);
  if (committed === undefined) return undefined;
  if (request.recordedAt !== undefined && !(committed.committedAt !== undefined && committed.committedAt > request.recordedAt)) return undefined;
  const at = (disks: readonly PlacedDiskRef[]) => disks.length === Object.keys(committed.targets).length && disks.every((d) => committed.targets[d.id] === d.target);
  if (at(from.disks)) return undefined;
  if (!at(to.disks)) {
    throw new PortableError("MOVE_COMMITTED_ELSEWHERE", `move ${to.workload.name}: an interrupted run committed this workload to ${Object.values(committed.targets).join(", ")}, which is neither where the caller's record has it nor the new placement. Run up with that placement first (it takes the move over), then move on`);
  }
  const disks: PlacedDiskRecord[] = [];
  for (const disk of to.disks) {
    const current = readCurrent(request.stateDir, to.workload.name, disk.id);
    const key = replicaKey(to.workload.name, disk.id, disk.target);
    const store = await replicaStoreFor(disk.target, request.stateDir, to.vsphere);
    const replica = await store.loadCommitted(key);
    if (current?.target !== disk.target || replica === undefined) return undefined;
    disks.push({ id: disk.id, target: disk.target, location: current.location, virtualSizeBytes: current.virtualSizeBytes, digest: replica.manifest.digest(), reference: store.reference(key), passes: replica.passes, bytesSent: 0, blocksSent: 0 });
  }
  const startedAt = new Date().toISOString();
  if (await isRunning(from, from.machineId)) await stopMachine(from, from.machineId, request.gracefulTimeoutMs ?? 30_000);
  const driver = await machineDriver(to.placement.kind);
  let running = committed.machineId !== "" && (await isRunning(to, committed.machineId));
  if (!running && committed.machineId !== "" && driver.wantsRunning(to.placement)) {
    await restartMachine(to, committed.machineId);
    running = true;
  }
  const record: CutoverRecord = { state: "completed", mode: request.mode, startedAt, endedAt: new Date().toISOString(), steps: [], adopted: true };
  request.onCutoverStep?.(`adopted: an earlier run committed this move to ${to.placement.kind}; nothing was copied again`);
  if (request.deleteSource) await removeWorkload(from, from.machineId, request.stateDir);
  return { record, state: { kind: to.placement.kind, machineId: committed.machineId, running }, disks };
}

/**
 * Runs `work` holding the workload's lease beside each of `targets` (their platform's state
 * store; the state folder for a target that keeps none): a second run of the same workload, from
 * any machine, fails with STATE_LEASE_HELD naming the holder instead of writing the same replicas.
 */
export async function withWorkloadLease<T>(workload: string, targets: readonly string[], stateDir: string, purpose: string, vsphere: VsphereConnection | undefined, work: () => Promise<T>): Promise<T> {
  const stores = new Map<string, { store: StateStore; beside: boolean }>();
  for (const target of new Set(targets)) {
    const beside = await stateStoreBeside(target, vsphere);
    const store = beside ?? fileStateStore(stateDir);
    stores.set(store.reference, { store, beside: beside !== undefined });
  }
  const leases: Lease[] = [];
  try {
    for (const [, { store }] of [...stores].sort(([a], [b]) => a.localeCompare(b))) leases.push(await acquireLease(store, `${plainName(workload)}.lease.json`, purpose));
    return await work();
  } finally {
    for (const lease of leases.reverse()) await lease.release().catch(() => {});
    for (const { store, beside } of stores.values()) if (beside) await store.tidy?.();
  }
}

/** Deletes a workload's machine on a placement and every disk it has there. */
export async function removeWorkload(request: MachineRequest, machineId: string, stateDir: string): Promise<void> {
  await destroyMachine(request, machineId);
  for (const disk of request.disks) {
    await removeDisk({ workload: request.workload.name, disk: disk.id, target: disk.target, stateDir, virtualSizeBytes: 0, ...(request.vsphere ? { vsphere: request.vsphere } : {}) });
  }
}

/** The vCenter connection of a vsphere placement, its password read from the environment now. */
export function vsphereConnectionFor(placement: Placement, env: NodeJS.ProcessEnv = process.env): VsphereConnection | undefined {
  return placementContext(placement, env).vsphere;
}
