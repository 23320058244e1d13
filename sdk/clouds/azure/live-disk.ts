// A point-in-time read of one managed disk of a workload's Azure VM, running or stopped: the
// disk `${workload.name}-${diskId}` in the placement's resource group (components/placements/
// azure.ts names them so) is snapshotted (Snapshots.CreateOrUpdate, createOption "Copy" from the
// disk's id), a read SAS is granted on the snapshot, the SAS is read with our page-blob reader
// (page-blob-source.ts: a managed disk or snapshot SAS serves the fixed VHD like a page blob,
// Get Page Ranges for allocation, ranged Get Blob for bytes), and release() revokes the SAS and
// deletes the snapshot. This is what a move away from Azure must read: the managed disk holds the
// guest's writes since the VM started, while our page blob holds only what we placed.
//
// - A snapshot, not the disk itself: a disk attached to a VM cannot be granted a SAS (ARM
//   refuses while it is Attached), and the snapshot fixes the point in time a pass reads.
// - Full, not incremental, by default: a full snapshot is readable at once and carries no
//   per-family limit on SAS grants (incremental snapshots of one disk share at most a few), and it
//   lives only as long as one pass. `incremental: true` is what change tracking uses (a page-range
//   diff needs two incremental snapshots of one disk, change-tracking.ts); its background copy is
//   waited out (completionPercent reaching 100) before the SAS is granted.
// - A snapshot of a running VM is crash-consistent, as a vSphere snapshot without quiescing is.
//   The cutover's final pass reads a powered-off VM, so the disk it commits is exact.
// - Each snapshot is tagged `portable-purpose: point-in-time` (and the workload and source disk)
//   so one left behind by a killed process can be found and deleted.
// - The SAS lives long enough for a reader at 32 MiB/s to finish the disk, plus an hour, at most a
//   day (sasDurationFor); a pass slower than that sees 403s on its reads.
// - Cleanup: anything that fails after CreateOrUpdate was sent revokes (once granted) and deletes
//   the snapshot before the error is thrown; release() does both once, a second call nothing.
//
// ARM cannot run here (DESIGN.md, "Real parts"). The test (tests/clouds/azure/machine-driver.
// test.ts) stands in for ARM with a recording fake of the operations called here and in the
// machine driver: virtualMachines get / instanceView / powerOff / start, disks get, snapshots
// createOrUpdate / grantAccess / revokeAccess / delete. Its snapshot copies the disk's bytes (an
// Azurite page blob holding a fixed VHD) into a new Azurite page blob, and its grant answers a
// SAS URL to that blob, so the bytes really travel through our reader over HTTP. What the fake
// shows: which disk is snapshotted (sourceResourceId), the order of power off, snapshot, grant,
// reads, revoke and delete, and the cleanup on every failure. What it cannot show: that Azure's
// snapshot holds the guest's writes up to the power off (host-cached ReadWrite disks included),
// how long CreateOrUpdate and GrantAccess really take, ARM's real refusals (a disk with
// dataAccessAuthMode AzureActiveDirectory needs an Entra token for its SAS; a network access
// policy of DenyAll or a private disk access refuses the download), throttling, and whether a
// real managed-disk SAS answers Get Page Ranges exactly as Azurite's page blob does.
import { randomBytes } from "node:crypto";
import type { Snapshot } from "@azure/arm-compute";
import { CloudError } from "../../errors.ts";
import type { PointInTime } from "../../contracts/point-in-time.ts";
import type { Workload } from "../../spec/workload.ts";
import type { CallOptions } from "./call.ts";
import { AZURE_WORKLOAD_TAG, armCall, armFind, workloadTagOf, type AzureComputeApi, type AzurePlacement } from "./compute.ts";
import { pageBlobClientFor } from "./open-url.ts";
import { openPageBlobSource, type PageBlobSource } from "./page-blob-source.ts";

/** The tag (and value) on every snapshot made for a point-in-time read. */
export const POINT_IN_TIME_TAG = "portable-purpose";
export const POINT_IN_TIME_PURPOSE = "point-in-time";

const MIB = 1024 * 1024;
const HOUR_SECONDS = 3600;
/** The slowest read the default SAS lifetime allows for. */
const SAS_READ_BYTES_PER_SECOND = 32 * MIB;
const SAS_MAX_SECONDS = 24 * HOUR_SECONDS;

/** A read SAS's lifetime for a disk of `sizeBytes`: an hour plus a 32 MiB/s read of it, at most a day. */
export function sasDurationFor(sizeBytes: number): number {
  return Math.min(SAS_MAX_SECONDS, HOUR_SECONDS + Math.ceil(Math.max(0, sizeBytes) / SAS_READ_BYTES_PER_SECOND));
}

/** The managed disk the azure placement made for a workload's disk. */
export const azureManagedDiskName = (workload: Workload, diskId: string) => `${workload.name}-${diskId}`;

/**
 * A new snapshot name for a point in time of `diskName`: at most 80 characters of letters,
 * digits, '_', '.', '-', starting with a letter and ending with a digit or letter, unique per call.
 */
export function pointInTimeSnapshotName(diskName: string, now = Date.now()): string {
  const suffix = `${now.toString(36)}${randomBytes(3).toString("hex")}`;
  const room = 80 - "pit--".length - suffix.length;
  const middle = diskName.replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, room);
  return `pit-${middle}-${suffix}`;
}

export interface OpenWorkloadManagedDiskOptions extends CallOptions {
  readonly compute: Pick<AzureComputeApi, "disks" | "snapshots">;
  readonly placement: AzurePlacement;
  readonly workload: Workload;
  readonly diskId: string;
  /** @default sasDurationFor(the disk's size) */
  readonly sasDurationSeconds?: number;
  /** @default false: a full snapshot (see the module comment) */
  readonly incremental?: boolean;
}

export interface ManagedDiskPointInTime extends Omit<PointInTime, "release"> {
  readonly source: PageBlobSource;
  /** The snapshot's read SAS URL (a credential: never logged), for a page-range diff against it. */
  readonly readSasUrl: string;
  /** Closes the read and revokes the SAS; deletes the snapshot unless `keep` (change tracking diffs against it next time). */
  release(options?: { readonly keep?: boolean }): Promise<void>;
  readonly diskName: string;
  /** The managed disk's ARM id: the snapshot's source. */
  readonly diskResourceId: string;
  /** The snapshot made for this read; revoked and deleted by release(). */
  readonly snapshotName: string;
  readonly snapshotResourceId: string;
}

/** How long an incremental snapshot's background copy may take, and how often it is asked. */
export const INCREMENTAL_COPY_TIMEOUT_MS = 2 * 60 * 60_000;
const INCREMENTAL_POLL_MS = 5_000;

/** Waits until the snapshot's copy is complete (an incremental snapshot copies in the background). */
async function completed(compute: Pick<AzureComputeApi, "snapshots">, resourceGroupName: string, name: string, made: Snapshot, where: string): Promise<void> {
  const deadline = Date.now() + INCREMENTAL_COPY_TIMEOUT_MS;
  for (let snapshot = made; snapshot.completionPercent !== undefined && snapshot.completionPercent < 100; ) {
    if (compute.snapshots.get === undefined) return;
    if (Date.now() > deadline) throw new CloudError("AZURE_SNAPSHOT_COPY_TIMEOUT", `${where}: its copy is ${snapshot.completionPercent}% done after ${INCREMENTAL_COPY_TIMEOUT_MS / 60_000} min`, { context: { snapshot: name } });
    await new Promise((resolve) => setTimeout(resolve, INCREMENTAL_POLL_MS));
    snapshot = await armCall("AZURE_SNAPSHOT_CALL_FAILED", "Get", where, () => compute.snapshots.get!(resourceGroupName, name));
  }
}

/** Runs every step, in order, even after one fails; throws the first failure. */
async function allOf(steps: readonly (() => Promise<unknown>)[]): Promise<void> {
  let first: { error: unknown } | undefined;
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      first ??= { error };
    }
  }
  if (first !== undefined) throw first.error;
}

/**
 * The point in time of a workload's disk on its Azure placement: undefined when the managed disk
 * does not exist (launch: false, or not created yet; then its disk is the page blob we placed,
 * read as a replica). A disk of that name not tagged for the workload is AZURE_DISK_NOT_THE_WORKLOADS.
 */
export async function openWorkloadManagedDisk(options: OpenWorkloadManagedDiskOptions): Promise<ManagedDiskPointInTime | undefined> {
  const { compute, placement, workload } = options;
  const resourceGroupName = placement.resourceGroupName;
  const diskName = azureManagedDiskName(workload, options.diskId);
  const diskWhere = `disk ${diskName} in resource group ${resourceGroupName}`;
  const disk = await armFind("AZURE_DISK_CALL_FAILED", "Get", diskWhere, () => compute.disks.get(resourceGroupName, diskName));
  if (disk === undefined) return undefined;
  const tagged = workloadTagOf(disk.tags);
  if (tagged !== workload.name) {
    throw new CloudError("AZURE_DISK_NOT_THE_WORKLOADS", `${diskWhere} is not tagged ${AZURE_WORKLOAD_TAG}=${workload.name} (${tagged === undefined ? "no such tag" : `it says ${tagged}`}); it is not workload ${workload.name}'s disk`, {
      context: { workload: workload.name, disk: diskName, resourceGroup: resourceGroupName, tag: tagged ?? "" },
    });
  }
  if (disk.id === undefined || disk.id === "") {
    throw new CloudError("AZURE_DISK_CALL_FAILED", `Get ${diskWhere}: the answer carries no id`, { context: { disk: diskName, resourceGroup: resourceGroupName } });
  }
  const diskResourceId = disk.id;

  const snapshotName = pointInTimeSnapshotName(diskName);
  const snapshotWhere = `snapshot ${snapshotName} (of ${diskName}) in resource group ${resourceGroupName}`;
  const deleteSnapshot = async () => {
    await armFind("AZURE_SNAPSHOT_CALL_FAILED", "Delete", snapshotWhere, () => compute.snapshots.delete(resourceGroupName, snapshotName));
  };
  let granted = false;
  const revoke = async () => {
    if (!granted) return;
    await armFind("AZURE_SNAPSHOT_CALL_FAILED", "Revoke access to", snapshotWhere, () => compute.snapshots.revokeAccess(resourceGroupName, snapshotName));
  };

  let source: PageBlobSource;
  let snapshotResourceId: string;
  let readSasUrl: string;
  try {
    const snapshot = await armCall("AZURE_SNAPSHOT_CALL_FAILED", "Create", snapshotWhere, () =>
      compute.snapshots.createOrUpdate(resourceGroupName, snapshotName, {
        location: disk.location ?? placement.location,
        ...(options.incremental === true ? { incremental: true } : { incremental: false, sku: { name: "Standard_LRS" } }),
        creationData: { createOption: "Copy", sourceResourceId: diskResourceId },
        tags: { [AZURE_WORKLOAD_TAG]: workload.name, [POINT_IN_TIME_TAG]: POINT_IN_TIME_PURPOSE, "portable-source-disk": diskName },
      }),
    );
    snapshotResourceId = snapshot.id ?? "";
    await completed(compute, resourceGroupName, snapshotName, snapshot, snapshotWhere);
    const durationInSeconds = options.sasDurationSeconds ?? sasDurationFor(disk.diskSizeBytes ?? (disk.diskSizeGB ?? 0) * 1024 * MIB);
    const access = await armCall("AZURE_SNAPSHOT_CALL_FAILED", "Grant Read access to", snapshotWhere, () => {
      // Set before the call: a grant whose answer is lost may still have been made.
      granted = true;
      return compute.snapshots.grantAccess(resourceGroupName, snapshotName, { access: "Read", durationInSeconds });
    });
    if (access.accessSAS === undefined || access.accessSAS === "") {
      throw new CloudError("AZURE_NO_SAS", `Grant Read access to ${snapshotWhere}: the answer holds no SAS URL`, { context: { snapshot: snapshotName } });
    }
    const callOptions: CallOptions = {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.onRetry === undefined ? {} : { onRetry: options.onRetry }),
      ...(options.attempts === undefined ? {} : { attempts: options.attempts }),
    };
    readSasUrl = access.accessSAS;
    source = await openPageBlobSource(await pageBlobClientFor({ kind: "sas", url: access.accessSAS }), callOptions);
  } catch (error) {
    // Also after a failed Create: ARM may have made the snapshot before the answer was lost.
    await allOf([revoke, deleteSnapshot]).catch(() => {});
    throw error;
  }

  let released: Promise<void> | undefined;
  return {
    source,
    diskName,
    diskResourceId,
    snapshotName,
    snapshotResourceId,
    readSasUrl,
    release(releaseOptions) {
      released ??= allOf([() => source.close(), revoke, ...(releaseOptions?.keep === true ? [] : [deleteSnapshot])]);
      return released;
    },
  };
}
