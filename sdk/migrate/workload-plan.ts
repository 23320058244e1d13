// The plan a preview shows for a workload: for each disk, where it is now (the last placement
// recorded in the state directory, else its spec source), where it goes, the bytes to move
// (exact: against the replica's manifest when one exists there, so a flip back is a delta),
// the conversion, the expected downtime, and readiness findings for the target from inspecting
// the guest on the disk. A disk whose replica the source's change tracker answers for (a local
// machine's dirty bitmap) is planned from its count: nothing of it is read, except the boot
// disk's filesystems, which readiness inspects.
import type { CommittedReplica } from "../contracts/replica-target.ts";
import { changedBlocks } from "../disk/manifest.ts";
import { SAMPLED_VERIFY_BLOCKS } from "../transfer/verify.ts";
import type { ReplicaStore } from "../transfer/checkpoint.ts";
import { diskDriverFor, openSource, placementContext, placementKindOf } from "../clouds/registry.ts";
import type { DiskSource } from "../disk/types.ts";
import { inspectGuest } from "../inspect/inspect.ts";
import type { Finding, InspectTarget } from "../inspect/types.ts";
import type { Placement } from "../spec/placement.ts";
import type { Workload } from "../spec/workload.ts";
import { openReplica, readCurrent, readTimings, replicaKey, replicaStoreFor, type CurrentPlacement, type MachineTimings } from "./disk-placement.ts";
import { describePlan, planMigration, type DiskPlanInput, type MigrationPlan } from "./plan.ts";
import { bootDiskOf } from "../spec/workload.ts";
import { formatBytes } from "../units.ts";
import { vsphereConnectionFromEnv } from "../clouds/vsphere/location.ts";
import { findGuestfish, GUESTFS_MISSING } from "../fixups/guestfs.ts";
import { answeredFindings, describeFixup, estimateFixupSeconds, resolveFixups } from "../fixups/derive.ts";
import type { Fixup, FixupsPolicy, TestBootPolicy } from "../spec/fixups.ts";

export interface PlannedDisk {
  readonly disk: string;
  /** "spec" (first placement), "move" (the placement changed) or "in-place". */
  readonly action: "create" | "move" | "in-place";
  readonly from: string;
  readonly to: string;
}

export interface WorkloadPlan {
  readonly workload: string;
  readonly fromKind: string;
  readonly toKind: Placement["kind"];
  readonly mode: "warm" | "cold";
  readonly disks: readonly PlannedDisk[];
  readonly plan: MigrationPlan;
  readonly findings: readonly Finding[];
  /** The guest fixups this move applies to the boot disk, and their time. */
  readonly fixups: PlannedFixups;
  readonly summary: string;
}

export interface PlannedFixups {
  readonly list: readonly Fixup[];
  /** Seconds to apply them: measured on the last application for this target, else estimated. */
  readonly seconds: number;
  readonly measured: boolean;
  /** The test boot the policy asks for, before anything is copied. */
  readonly testBoot?: TestBootPolicy;
  /** Why they cannot run here (libguestfs missing), when that is so. */
  readonly missing?: string;
}

export interface WorkloadPlanInput {
  readonly workload: Workload;
  readonly placement: Placement;
  readonly mode: "warm" | "cold";
  /** The policy's cutover: false pre-stages (warm passes only). @default true */
  readonly cutover?: boolean;
  /** The policy's warm pass limit, for the plan's words and the final delta. @default 3 */
  readonly maxPasses?: number;
  /** The policy's verification after the final pass. @default "sampled" */
  readonly verify?: "full" | "sampled" | "none";
  /** The local cache: where a disk is and timings, when `current` and `timings` are not given. */
  readonly stateDir: string;
  /**
   * Where each disk is now, per disk id, as Pulumi state recorded it (the Machine's placed disks):
   * then the plan needs nothing from this machine's state folder. @default read from stateDir
   */
  readonly current?: Readonly<Record<string, CurrentPlacement>>;
  /** Measured timings per placement kind, as Pulumi state recorded them (over those in stateDir). */
  readonly timings?: Readonly<Record<string, MachineTimings>>;
  /** Per disk id: the spec source and the target string. */
  readonly disks: ReadonlyArray<{ readonly id: string; readonly source: string; readonly sourceFormat?: string; readonly target: string }>;
  /** Boot time of the target for the downtime estimate. @default 30 s (clouds), 15 s (local) */
  readonly bootSeconds?: number;
  /**
   * The source's graceful-stop limit (the policy's stopGraceSeconds): the stop estimate until a
   * stop has been measured on this workload. @default 30
   */
  readonly stopGraceSeconds?: number;
  /** Where the vCenter password is read from, to read a disk that is on vSphere now. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** The migration policy's fixups and test boot (the boot disk is the first planned disk). @default "none" */
  readonly fixups?: FixupsPolicy;
  readonly testBoot?: TestBootPolicy;
}

export async function planWorkload(input: WorkloadPlanInput): Promise<WorkloadPlan> {
  const planned: PlannedDisk[] = [];
  const sources: Array<DiskPlanInput & { conversion: string }> = [];
  const findings: Finding[] = [];
  let fromKind = "image";
  try {
    for (const disk of input.disks) {
      const current = input.current === undefined ? readCurrent(input.stateDir, input.workload.name, disk.id) : input.current[disk.id];
      const action = current === undefined ? "create" : current.target === disk.target ? "in-place" : "move";
      if (current !== undefined) fromKind = placementKindOf(current.target);
      planned.push({ disk: disk.id, action, from: current?.target ?? disk.source, to: disk.target });
      if (action === "in-place") continue;
      const key = replicaKey(input.workload.name, disk.id, disk.target);
      const committed = await (await replicaStoreFor(disk.target, input.stateDir, placementContext(input.placement, input.env ?? process.env).vsphere)).loadCommitted(key);
      // The replica state of where the disk is now: beside it, like the target's.
      const store = current === undefined ? undefined : await replicaStoreFor(current.target, input.stateDir, vsphereOf(current, input));
      const tracked = current === undefined || committed === undefined ? undefined : await trackedChange(current, committed, input);
      const known = tracked !== undefined || current === undefined || committed === undefined ? undefined : await manifestChange(current, committed, store!, input.workload.name, disk.id);
      const boot = disk.id === bootDiskOf(input.workload)?.id;
      // The guest is judged on the disk it boots from; a disk a tracker or two manifests answer
      // for is otherwise not opened.
      const source = (tracked === undefined && known === undefined) || boot ? await openPlanSource(current, disk, store, input) : undefined;
      sources.push({
        key: disk.id,
        ...(tracked !== undefined ? { tracked } : known !== undefined ? { known } : { source: source! }),
        ...(committed === undefined ? {} : { committed }),
        conversion: `${source?.format ?? "raw"} → ${input.placement.kind}`,
      });
      if (boot) findings.push(...(await readiness(source!, input)));
    }
    // Timings measured on earlier runs of this workload beat the defaults.
    const timings = { ...readTimings(input.stateDir, input.workload.name), ...input.timings };
    const local = input.placement.kind === "local" || input.placement.kind === "vsphere";
    const bootSeconds = input.bootSeconds ?? timings[input.placement.kind]?.bootSeconds ?? (local ? 15 : 30);
    // A stop waits up to the grace period before powering off hard; a measured stop beats it.
    const stopSeconds = timings[fromKind]?.stopSeconds ?? input.stopGraceSeconds ?? 30;
    const toKind = input.placement.kind;
    // Fixups apply when something moves; an in-place run changes nothing in the guest.
    const bootMoves = planned.some((d) => d.disk === bootDiskOf(input.workload)?.id && d.action !== "in-place");
    const fixups = planFixups(bootMoves ? (input.fixups ?? "none") : "none", bootMoves ? input.testBoot : undefined, findings, toKind, timings[toKind]?.fixupSeconds);
    const verify = input.verify ?? "sampled";
    const plan = await planMigration(sources, {
      mode: input.mode,
      bootSeconds,
      stopSeconds,
      fixupSeconds: fixups.list.length > 0 ? fixups.seconds : 0,
      ...(input.maxPasses === undefined ? {} : { maxPasses: input.maxPasses }),
      ...(verify === "sampled" ? { verifyBlocks: SAMPLED_VERIFY_BLOCKS } : { verifyFraction: verify === "full" ? 1 : 0 }),
    });
    // What the fixups answer is no longer an error that blocks the move.
    const answered = new Set(fixups.missing === undefined ? answeredFindings(fixups.list, findings) : []);
    const judged = findings.map((f) => (answered.has(f) ? { ...f, severity: "info" as const, message: `${f.message} (answered by the fixups)` } : f));
    const lines = [
      `${input.workload.name}: ${fromKind} → ${toKind} (${input.mode}), ${planned.length} disk(s), ${formatBytes(plan.totalBytesToMove)} to move`,
      ...planned.filter((d) => d.action === "in-place").map((d) => `  ${d.disk}: already on ${toKind}`),
      ...(input.mode === "warm" && input.cutover !== false
        ? [`  warm passes while the source runs: up to ${input.maxPasses ?? 3}, until one sends little`]
        : []),
      ...(input.mode === "cold" && input.cutover !== false ? ["  cold: the source stops first, then every disk is copied once"] : []),
      ...(input.cutover === false ? [`  no cutover (migration.cutover: false): replicas are staged on ${toKind} and the source keeps running; the downtime below is for the cutover that follows`] : []),
      ...describePlan(plan).split("\n").slice(1),
      ...fixupLines(fixups),
      ...judged.filter((f) => f.severity !== "info").map((f) => `  readiness ${f.severity}: ${f.code}: ${f.message}${f.fixHint ? ` (fix: ${f.fixHint})` : ""}`),
    ];
    return { workload: input.workload.name, fromKind, toKind, mode: input.mode, disks: planned, plan, findings: judged, fixups, summary: lines.join("\n") };
  } finally {
    for (const s of sources) await s.source?.close();
  }
}

/**
 * What the source's change tracker says changed on the disk since the replica's last pass, and
 * over how long: from the platform's count (a dirty bitmap's), never a read. Undefined when the
 * replica has no token or the tracker cannot say.
 */
async function trackedChange(current: CurrentPlacement, committed: CommittedReplica, input: WorkloadPlanInput): Promise<{ changedBytes: number; overSeconds: number } | undefined> {
  const token = committed.changeToken;
  const driver = await diskDriverFor(current.target);
  if (token === undefined || driver.changedBytesSince === undefined) return undefined;
  const vsphere = current.vsphere === undefined ? undefined : vsphereConnectionFromEnv(current.vsphere, input.env);
  const changedBytes = await driver.changedBytesSince(current.target, token, vsphere === undefined ? {} : { vsphere }).catch(() => undefined);
  if (changedBytes === undefined) return undefined;
  // The token was taken as its pass began.
  const last = committed.lastPass;
  const since = last === undefined ? Date.now() : Date.parse(last.finishedAt) - last.seconds * 1000;
  return { changedBytes, overSeconds: Math.max(0.001, (Date.now() - since) / 1000) };
}

/**
 * What moves, from manifests alone: where the disk is now is a replica nothing writes (a cloud
 * snapshot chain or blob; no machine runs on it) and its own record and the target's replica
 * both have a manifest of one geometry. Undefined otherwise (the plan then reads the disk).
 */
async function manifestChange(current: CurrentPlacement, committed: CommittedReplica, store: ReplicaStore, workload: string, diskId: string): Promise<{ bytesToMove: number; blocksToMove: number; allocatedBytes: number; virtualSizeBytes: number } | undefined> {
  if ((await diskDriverFor(current.target)).liveDisk) return undefined;
  const here = await store.loadCommitted(replicaKey(workload, diskId, current.target));
  const there = committed.manifest;
  if (here === undefined || here.manifest.blockSizeBytes !== there.blockSizeBytes || here.manifest.virtualSizeBytes !== there.virtualSizeBytes) return undefined;
  const block = there.blockSizeBytes;
  const size = there.virtualSizeBytes;
  const changed = changedBlocks(there, here.manifest);
  const bytesToMove = changed.filter((i) => here.manifest.hash(i) !== undefined).reduce((sum, i) => sum + Math.min(block, size - i * block), 0);
  return { bytesToMove, blocksToMove: changed.length, allocatedBytes: here.manifest.dataBlocks().length * block, virtualSizeBytes: size };
}

async function openPlanSource(current: CurrentPlacement | undefined, disk: WorkloadPlanInput["disks"][number], store: ReplicaStore | undefined, input: WorkloadPlanInput): Promise<DiskSource> {
  if (current === undefined || store === undefined) return openSource(disk.source, disk.sourceFormat);
  return openReplica(input.workload.name, disk.id, current.target, store, vsphereOf(current, input));
}

function vsphereOf(current: CurrentPlacement, input: WorkloadPlanInput) {
  return current.vsphere === undefined ? undefined : vsphereConnectionFromEnv(current.vsphere, input.env);
}

/** The guest's readiness for the target: findings, never an exception (a plan must print). */
async function readiness(source: DiskSource, input: WorkloadPlanInput): Promise<Finding[]> {
  const target: InspectTarget = input.placement.kind;
  try {
    const bus = bootDiskOf(input.workload)?.bus;
    const report = await inspectGuest(source, { targets: [target], firmware: input.workload.firmware.type, architecture: input.workload.guestOs.architecture, ...(bus === undefined ? {} : { diskBus: bus }) });
    return [...report.findings];
  } catch (error) {
    return [{ severity: "warning", code: "INSPECT_FAILED", message: `the guest could not be inspected: ${(error as Error).message}`, evidencePath: "", fixHint: "" } as Finding];
  }
}

function planFixups(policy: FixupsPolicy, testBoot: TestBootPolicy | undefined, findings: readonly Finding[], target: Placement["kind"], measuredSeconds: number | undefined): PlannedFixups {
  const list = resolveFixups(policy, findings, target);
  // A test boot alone needs QEMU only; fixups need libguestfs.
  const missing = list.length > 0 ? libguestfsMissing() : undefined;
  return {
    list,
    seconds: measuredSeconds ?? estimateFixupSeconds(list),
    measured: measuredSeconds !== undefined,
    ...(testBoot === undefined ? {} : { testBoot }),
    ...(missing === undefined ? {} : { missing }),
  };
}

/** The plan names what is missing when libguestfs is not installed. */
function libguestfsMissing(): string | undefined {
  return findGuestfish() === undefined ? GUESTFS_MISSING : undefined;
}

function fixupLines(fixups: PlannedFixups): string[] {
  if (fixups.list.length === 0 && fixups.testBoot === undefined) return [];
  return [
    ...(fixups.list.length === 0 ? [] : [`  guest fixups (${fixups.list.length}, ${fixups.measured ? "measured" : "estimated"} ${fixups.seconds.toFixed(1)} s, on a copy-on-write overlay; the source is not changed):`]),
    ...fixups.list.map((f) => `    ${f.kind}: ${describeFixup(f)}`),
    ...(fixups.testBoot === undefined ? [] : [`  test boot before copying: wait up to ${fixups.testBoot.timeoutSeconds} s for "${fixups.testBoot.marker}" on the serial console`]),
    ...(fixups.missing === undefined ? [] : [`  fixups cannot run here: ${fixups.missing}`]),
  ];
}
