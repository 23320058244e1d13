// Placing one workload disk on a target, as the Pulumi providers and the CLI do it: open the
// source (wherever the disk is now), replicate it into the target (incrementally when a replica
// exists: flipping a workload back sends only what changed), verify, and report references.
// Pulumi state keeps the returned reference and digest, never the manifest.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, rename, rm, rmdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { FileReplicaStore, recordVerification, type ReplicaStore } from "../transfer/checkpoint.ts";
import { TargetReplicaStore } from "../transfer/target-store.ts";
import type { StateStore } from "../contracts/state-store.ts";
import { diskDriverFor, openSource } from "../clouds/registry.ts";
import type { DiskContext, DiskDriver } from "../contracts/disk-driver.ts";
import { withJobSlot } from "../transfer/job-slots.ts";
import { replicate, type ReplicateProgress } from "../transfer/replicate.ts";
import { verifyPolicyOf, verifyReplica, type VerifyPolicy } from "../transfer/verify.ts";
import { PortableError } from "../errors.ts";
import { plainName } from "./targets.ts";
import type { VsphereConnection } from "../contracts/vsphere-connection.ts";
import type { DiskSource } from "../disk/types.ts";
import type { InspectTarget } from "../inspect/types.ts";
import type { FixupsPolicy, TestBootPolicy } from "../spec/fixups.ts";
import type { Placement } from "../spec/placement.ts";
import type { DiskBus, FirmwareType, Workload } from "../spec/workload.ts";
import type { FixedSource, FixupOutcome } from "../fixups/index.ts";

export interface PlaceDiskArgs {
  readonly workload: string;
  readonly disk: string;
  /**
   * Where the bytes are now: an image path, ebs://snap-…, azblob://…; or `{ replicaOf }`, the
   * target this disk was placed on before (a move reads that replica back, EBS chain included).
   */
  readonly source: string | { readonly replicaOf: string };
  readonly sourceFormat?: string;
  /** Where they go: a raw file path, ebs://?region=R, azblob://…. */
  readonly target: string;
  /**
   * The local cache of replica state: journals of passes, and the manifests of targets whose
   * platform keeps no state beside them (replicaStoreFor).
   */
  readonly stateDir: string;
  readonly verify?: VerifyPolicy;
  readonly onProgress?: (progress: ReplicateProgress) => void;
  /** For vsphere:// targets and sources: where and how to log in. */
  readonly vsphere?: VsphereConnection;
  /** Guest fixups for this (boot) disk: applied to an overlay of the source, which is what gets copied. */
  readonly fixups?: DiskFixups;
  /** Steps worth a line in `pulumi up` (each fixup, the test boot). */
  readonly onStep?: (line: string) => void;
  /**
   * The workload whose machine may run on the source disk now, so its platform can find the
   * live disk through the machine (an EC2 instance's volume) instead of the placed copy.
   */
  readonly live?: { readonly workload: Workload; readonly placement: Placement };
  /**
   * Make the target the disk's recorded placement (what the next plan moves from). A warm or
   * final pass of a cutover leaves it to the cutover's commit (commitPlacement), so that a
   * rolled-back move leaves the record on the source. @default true
   */
  readonly record?: boolean;
  /** The cutover's final pass, inside the downtime (ReplicaTarget.begin). @default false */
  readonly final?: boolean;
}

/** A boot disk's fixups, as the migration policy and the target give them. */
export interface DiskFixups {
  readonly policy: FixupsPolicy;
  readonly target: InspectTarget;
  readonly firmware: FirmwareType;
  readonly bus?: DiskBus;
  readonly testBoot?: TestBootPolicy;
}

export interface AppliedFixups {
  readonly outcomes: readonly FixupOutcome[];
  readonly seconds: number;
  /** Seconds to the test boot's marker, when one ran. */
  readonly testBootSeconds?: number;
}

export interface PlacedDisk {
  readonly key: string;
  readonly location: string;
  readonly virtualSizeBytes: number;
  readonly digest: string;
  readonly reference: string;
  readonly passes: number;
  readonly bytesSent: number;
  readonly blocksSent: number;
  readonly resumed: boolean;
  /** Source bytes read to find the changes, and how (the source's change tracking, or a full scan). */
  readonly bytesRead: number;
  readonly scan: "tracked" | "full";
  readonly verifiedBlocks: number;
  /** What the fixups did, when any ran. */
  readonly fixups?: AppliedFixups;
}

/** One replica per (workload, disk, target): a flip back to a target reuses its replica. */
export function replicaKey(workload: string, disk: string, target: string): string {
  return `${plainName(workload).slice(0, 40)}.${plainName(disk).slice(0, 40)}.${createHash("sha256").update(target).digest("hex").slice(0, 12)}`;
}

/**
 * Places one disk. Placements in one process share the PORTABLE_MAX_PARALLEL_JOBS limit
 * (transfer/job-slots.ts): beyond it they wait their turn, so memory stays bounded however many
 * disks a stack places at once.
 */
export function placeDisk(args: PlaceDiskArgs): Promise<PlacedDisk> {
  return withJobSlot(() => placeDiskNow(args));
}

/** The state store its platform keeps beside the disk at `target` (DiskDriver.stateStore); undefined when none. */
export async function stateStoreBeside(target: string, vsphere?: VsphereConnection): Promise<StateStore | undefined> {
  return (await diskDriverFor(target)).stateStore?.(target, contextOf(vsphere));
}

/**
 * Where the replica state of the disk at `target` is kept: beside it when its platform keeps it
 * there (DiskDriver.stateStore), with `stateDir` as the cache of pass journals; else in `stateDir`.
 */
export async function replicaStoreFor(target: string, stateDir: string, vsphere?: VsphereConnection): Promise<ReplicaStore> {
  const remote = await stateStoreBeside(target, vsphere);
  const cache = new FileReplicaStore(stateDir);
  return remote === undefined ? cache : new TargetReplicaStore(remote, cache);
}

/**
 * Refuses replica state that is not what Pulumi state recorded: each placed disk's committed
 * manifest must have the digest its record keeps. A mismatch is state changed outside this stack
 * (tampered with) or by a run that Pulumi never recorded (stale), and nothing is planned or moved
 * from it: REPLICA_STATE_MISMATCH.
 */
export async function checkRecordedState(workload: string, disks: ReadonlyArray<{ readonly id: string; readonly target: string; readonly digest?: string }>, stateDir: string, vsphere?: VsphereConnection): Promise<void> {
  for (const disk of disks) {
    if (disk.digest === undefined || disk.digest === "") continue;
    const store = await replicaStoreFor(disk.target, stateDir, vsphere);
    const key = replicaKey(workload, disk.id, disk.target);
    const committed = await store.loadCommitted(key);
    const digest = committed?.manifest.digest();
    if (digest === disk.digest) continue;
    throw new PortableError(
      "REPLICA_STATE_MISMATCH",
      `disk ${disk.id} of ${workload}: the replica state at ${store.reference(key)} ${committed === undefined ? "is missing" : `has manifest digest ${digest}`}, but Pulumi state recorded ${disk.digest}. ` +
        "It was changed outside this stack, or by a run that Pulumi did not record; nothing is planned or moved from it. Put the recorded state back, or run from the machine whose state folder holds it.",
      { context: { workload, disk: disk.id, reference: store.reference(key), recorded: disk.digest, ...(digest === undefined ? {} : { found: digest }) } },
    );
  }
}

async function placeDiskNow(args: PlaceDiskArgs): Promise<PlacedDisk> {
  const store = await replicaStoreFor(args.target, args.stateDir, args.vsphere);
  const key = replicaKey(args.workload, args.disk, args.target);
  const opened = typeof args.source === "string"
    ? await openSource(args.source, args.sourceFormat)
    : await openReplica(args.workload, args.disk, args.source.replicaOf, await replicaStoreFor(args.source.replicaOf, args.stateDir, args.vsphere), args.vsphere, args.live, { key, final: args.final === true });
  let fixed: FixedSource | undefined;
  try {
    fixed = await fixSource(args, opened, key);
    const source = fixed?.source ?? opened;
    const applied = fixed === undefined ? {} : { fixups: appliedOf(fixed) };
    const driver = await diskDriverFor(args.target);
    const { target, close } = await driver.openReplicaTarget(args.target, source.virtualSizeBytes, contextOf(args.vsphere));
    try {
      const result = await replicate(source, target, { store, key, final: args.final === true, ...(args.onProgress ? { onProgress: args.onProgress } : {}) });
      const policy = args.verify ?? verifyPolicyOf("sampled");
      let verifiedBlocks = 0;
      if (policy.mode !== "none") {
        const started = performance.now();
        const committed = await store.loadCommitted(key);
        const back = await target.openReadBack(committed!);
        try {
          const verified = await verifyReplica(back, result.manifest, policy);
          if (!verified.ok) throw new PortableError("VERIFY_MISMATCH", `disk ${args.disk} of ${args.workload}: ${verified.mismatches.length} block(s) on ${result.location} differ from the source`);
          verifiedBlocks = verified.blocksChecked;
          await recordVerification(store, key, { blocksChecked: verified.blocksChecked, seconds: (performance.now() - started) / 1000 });
        } finally {
          await back.close();
        }
      }
      if (args.record !== false) await commitPlacement(args.stateDir, args.workload, args.disk, currentOf(driver, args.target, result.location, source.virtualSizeBytes, args.vsphere));
      return {
        key,
        location: result.location,
        virtualSizeBytes: source.virtualSizeBytes,
        digest: result.digest,
        reference: result.reference,
        passes: result.passes,
        bytesSent: result.bytesSent,
        blocksSent: result.blocksSent,
        resumed: result.resumed,
        bytesRead: result.bytesRead,
        scan: result.scan,
        verifiedBlocks,
        ...applied,
      };
    } finally {
      close();
    }
  } finally {
    await fixed?.release();
    await opened.close();
  }
}

/**
 * The fixed-up view of a boot disk's source, when its fixups change anything or a test boot is
 * asked for. QEMU reads the source as the overlay's backing file: directly when it is a local
 * image (a file, or a replica in a local datastore), through our NBD export otherwise.
 */
async function fixSource(args: PlaceDiskArgs, source: DiskSource, key: string): Promise<FixedSource | undefined> {
  if (args.fixups === undefined || (args.fixups.policy === "none" && args.fixups.testBoot === undefined)) return undefined;
  const image = typeof args.source === "string" ? localImagePath(args.source) : (await diskDriverFor(args.source.replicaOf)).localImage?.(args.source.replicaOf);
  const { fixedSource } = await import("../fixups/index.ts");
  const fixed = await fixedSource({
    ...(image === undefined ? {} : { image }),
    format: source.format,
    source,
    policy: args.fixups.policy,
    target: args.fixups.target,
    firmware: args.fixups.firmware,
    ...(args.fixups.bus === undefined ? {} : { bus: args.fixups.bus }),
    ...(args.fixups.testBoot === undefined ? {} : { testBoot: args.fixups.testBoot }),
    workDir: fixupWorkDir(args.stateDir, key),
    ...(args.onStep ? { onStep: args.onStep } : {}),
  });
  if (fixed.outcomes.length > 0) await recordTimings(args.stateDir, args.workload, args.fixups.target, { fixupSeconds: fixed.seconds });
  return fixed;
}

/** Where fixups of one disk put their overlay: beside the replica state, one folder per replica. */
function fixupWorkDir(stateDir: string, key: string): string {
  return join(stateDir, "fixups", key);
}

function appliedOf(fixed: FixedSource): AppliedFixups {
  return { outcomes: fixed.outcomes, seconds: fixed.seconds, ...(fixed.testBoot?.kind === "booted" ? { testBootSeconds: fixed.testBoot.bootMs / 1000 } : {}) };
}

/** A source string that is a local image file (not a URL, not an entry inside an OVA). */
function localImagePath(source: string): string | undefined {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source) || source.includes("!") ? undefined : source;
}

function contextOf(vsphere: VsphereConnection | undefined): DiskContext {
  return vsphere === undefined ? {} : { vsphere };
}

/**
 * A placed disk as a source (what a move copies from): the live disk where a machine may write
 * to it (at a point in time), else its committed replica read back (an EBS chain, a blob).
 * `trackFor`: the replica the pass commits to, for a platform that tracks changes.
 */
export async function openReplica(workload: string, disk: string, target: string, store: ReplicaStore, vsphere?: VsphereConnection, running?: { readonly workload: Workload; readonly placement: Placement }, trackFor?: DiskContext["track"]): Promise<DiskSource> {
  const key = replicaKey(workload, disk, target);
  const committed = await store.loadCommitted(key);
  if (committed === undefined) throw new PortableError("REPLICA_MISSING", `disk ${disk} of ${workload}: no committed replica on ${target} to move from (state ${store.reference(key)})`);
  const driver = await diskDriverFor(target);
  const live = await driver.openLive?.(target, {
    ...contextOf(vsphere),
    ...(running === undefined ? {} : { live: { ...running, diskId: disk, virtualSizeBytes: committed.manifest.virtualSizeBytes } }),
    ...(trackFor === undefined ? {} : { track: trackFor }),
  });
  if (live !== undefined) return live;
  const { target: replica, close } = await driver.openReplicaTarget(target, committed.manifest.virtualSizeBytes, contextOf(vsphere));
  try {
    const source = await replica.openReadBack(committed);
    return { ...source, extents: () => source.extents(), read: (o, l, into) => source.read(o, l, into), close: async () => { await source.close(); close(); } };
  } catch (error) {
    close();
    throw error;
  }
}

/**
 * After a committed move away from `source`, records that its replica holds what the final pass
 * read from it (the manifest committed for `target`). A local machine wrote to that disk since it
 * was placed, so its own record is stale: a flip back must compare against the truth, or a block
 * the guest changed there and changed back elsewhere would be skipped. Only where the replica is
 * the running disk itself and takes block writes (local); a boot disk the final pass fixed up
 * differs from what the target got, so the caller leaves it.
 */
export async function refreshSourceRecord(args: { readonly stateDir: string; readonly workload: string; readonly disk: string; readonly source: string; readonly target: string; readonly vsphere?: VsphereConnection }): Promise<void> {
  const driver = await diskDriverFor(args.source);
  // Only a disk its machine writes goes stale.
  if (!driver.liveDisk) return;
  const store = await replicaStoreFor(args.source, args.stateDir, args.vsphere);
  const sourceKey = replicaKey(args.workload, args.disk, args.source);
  const [was, now] = await Promise.all([store.loadCommitted(sourceKey), (await replicaStoreFor(args.target, args.stateDir, args.vsphere)).loadCommitted(replicaKey(args.workload, args.disk, args.target))]);
  if (was === undefined || now === undefined) return;
  // The manifest is no longer what the view of `was.changeToken` read: that token goes with it.
  const { changeToken: _stale, ...rest } = was;
  await store.commit(sourceKey, { ...rest, manifest: now.manifest });
}

/**
 * Deletes a placed disk's target artefact and everything kept for it: its replica state
 * (manifest, journal, a temp file a killed commit left) and, when it is the disk's current
 * placement, the record of that. A local datastore's disks/ folder, a vSphere disk's
 * datastore folder and the state folder's fixups/ go too once nothing else is in them.
 */
export async function removeDisk(args: { readonly workload: string; readonly disk: string; readonly target: string; readonly stateDir: string; readonly virtualSizeBytes: number; readonly vsphere?: VsphereConnection }): Promise<void> {
  const store = await replicaStoreFor(args.target, args.stateDir, args.vsphere);
  const key = replicaKey(args.workload, args.disk, args.target);
  await (await diskDriverFor(args.target)).remove(args.target, await store.loadCommitted(key), args.virtualSizeBytes, contextOf(args.vsphere));
  await store.remove(key);
  // A fixups overlay a killed run left, and the fixups/ folder once no other disk's overlay is in it.
  await rm(fixupWorkDir(args.stateDir, key), { recursive: true, force: true });
  await rmdir(dirname(fixupWorkDir(args.stateDir, key))).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT" && error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
  });
  if (readCurrent(args.stateDir, args.workload, args.disk)?.target === args.target) await rm(currentPath(args.stateDir, args.workload, args.disk), { force: true });
}

/**
 * Forgets what the state folder keeps for the workload as a whole (its measured boot and stop
 * times), once its machine and every disk are gone: with removeDisk per disk and target, the
 * workload leaves nothing in `stateDir`. The folder itself stays (it is the stack's, and may
 * hold other workloads).
 */
export async function forgetWorkload(stateDir: string, workload: string): Promise<void> {
  await rm(timingsPath(stateDir, workload), { force: true });
  await rm(commitPath(stateDir, workload), { force: true });
}

/**
 * The last committed move of a workload: its machine and the targets of its disks, written by
 * the cutover's commit after every disk's record. A run interrupted after the commit (the
 * caller never heard of it) is recognised by it, so the next run takes the move over instead
 * of cutting over twice.
 */
export interface CommittedMove {
  readonly machineId: string;
  readonly targets: Readonly<Record<string, string>>;
  /** When it was committed (ISO 8601); absent in records written before it was kept. */
  readonly committedAt?: string;
}

function commitPath(stateDir: string, workload: string): string {
  return join(stateDir, `${plainName(workload)}.commit.json`);
}

export async function commitMove(stateDir: string, workload: string, move: CommittedMove): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  const temp = `${commitPath(stateDir, workload)}.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify(move));
  await rename(temp, commitPath(stateDir, workload));
}

export function readCommittedMove(stateDir: string, workload: string): CommittedMove | undefined {
  try {
    const value = JSON.parse(readFileSync(commitPath(stateDir, workload), "utf8")) as CommittedMove;
    return typeof value.machineId === "string" && typeof value.targets === "object" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Where a disk is placed now: what a preview plans a move from. */
export interface CurrentPlacement {
  readonly target: string;
  readonly location: string;
  readonly virtualSizeBytes: number;
  /** For a vsphere:// target: the connection without its password. */
  readonly vsphere?: Omit<VsphereConnection, "password">;
}

function currentPath(stateDir: string, workload: string, disk: string): string {
  return join(stateDir, `${plainName(workload)}.${plainName(disk)}.current.json`);
}

/** The record of a placement: with the connection its platform needs, never its password. */
export function currentOf(driver: DiskDriver, target: string, location: string, virtualSizeBytes: number, vsphere?: VsphereConnection): CurrentPlacement {
  if (driver.connection !== "vsphere" || vsphere === undefined) return { target, location, virtualSizeBytes };
  const { password, ...connection } = vsphere;
  return { target, location, virtualSizeBytes, vsphere: connection };
}

/** Records where a disk is placed now (a copy outside a cutover, or a cutover's commit). */
export async function commitPlacement(stateDir: string, workload: string, disk: string, current: CurrentPlacement): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  await writeFile(currentPath(stateDir, workload, disk), JSON.stringify(current));
}

/** Synchronous on purpose: a Pulumi component reads it while the program is being built. */
export function readCurrent(stateDir: string, workload: string, disk: string): CurrentPlacement | undefined {
  try {
    const value = JSON.parse(readFileSync(currentPath(stateDir, workload, disk), "utf8")) as CurrentPlacement;
    return typeof value.target === "string" && typeof value.location === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Measured machine timings per placement kind, so the next plan estimates from this machine. */
export interface MachineTimings {
  readonly bootSeconds?: number;
  readonly stopSeconds?: number;
  /** The last application of the guest fixups for this target (appliance start included). */
  readonly fixupSeconds?: number;
}

function timingsPath(stateDir: string, workload: string): string {
  return join(stateDir, `${plainName(workload)}.timings.json`);
}

export function readTimings(stateDir: string, workload: string): Readonly<Record<string, MachineTimings>> {
  try {
    return JSON.parse(readFileSync(timingsPath(stateDir, workload), "utf8")) as Record<string, MachineTimings>;
  } catch {
    return {};
  }
}

export async function recordTimings(stateDir: string, workload: string, kind: string, timings: MachineTimings): Promise<void> {
  const all = { ...readTimings(stateDir, workload) };
  all[kind] = { ...all[kind], ...timings };
  await mkdir(stateDir, { recursive: true });
  await writeFile(timingsPath(stateDir, workload), JSON.stringify(all));
}
