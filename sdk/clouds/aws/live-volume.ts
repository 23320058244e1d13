// A point-in-time read of one disk of a workload's EC2 instance, running or stopped: the EBS
// volume attached at the disk's device name is snapshotted (EC2 CreateSnapshot), the snapshot
// read through the EBS direct APIs like any other (snapshot-source.ts: ListSnapshotBlocks,
// GetSnapshotBlock, each block checked against its SHA-256), and deleted on release. This is
// what a move away from AWS must read: the volume holds the guest's writes since launch, while
// the snapshots we uploaded (the AMI's) hold only what we placed.
//
// - A snapshot of a running instance is crash-consistent (what a power cut would leave), as a
//   vSphere snapshot without quiescing is. The cutover's final pass reads a stopped instance, so
//   the disk it commits is exact.
// - Each snapshot carries `portable:purpose=point-in-time` (and the instance, device and workload)
//   so one left behind by a killed process can be found and deleted. CreateSnapshot has no client
//   token: a retry after a lost answer can leave such an orphan.
// - EBS allows one snapshot of a volume every few seconds (SnapshotCreationPerVolumeRateExceeded);
//   that answer is waited out (SNAPSHOT_RATE_WAIT_MS, a few times) rather than failing a pass.
//
// What moto (the test emulator, 5.2.5) cannot show here, found by experiment and in its source
// (moto/ebs/models.py, moto/ec2/models/elastic_block_store.py):
// - Volumes hold no bytes: a moto Volume is a size, a zone, an optional origin snapshot id and
//   its attachments. An instance's volume therefore has no content to snapshot.
// - EC2 CreateSnapshot of a volume makes a `completed` snapshot in EC2's table only. The EBS
//   direct backend knows only snapshots made by StartSnapshot (EBSBackend.snapshots), so
//   ListSnapshotBlocks / GetSnapshotBlock of it answer HTTP 500 (a KeyError), which our retries
//   treat as transient and then report as EBS_LIST_BLOCKS_FAILED.
// So against moto this module's EC2 half (which volume, CreateSnapshot of it, the wait, the
// cleanup, the order against StopInstances) is real, and the byte path is proven where moto does
// hold bytes: on snapshots written through the EBS direct APIs (tests/clouds/aws/round-trip,
// incremental, odd-size), which is the same EbsSnapshotSource this module returns.
import { CreateSnapshotCommand, DeleteSnapshotCommand, type EC2Client } from "@aws-sdk/client-ec2";
import type { EBSClient } from "@aws-sdk/client-ebs";
import { CloudError } from "../../errors.ts";
import type { PointInTime } from "../../contracts/point-in-time.ts";
import type { Workload } from "../../spec/workload.ts";
import { callAws } from "./call.ts";
import { waitForSnapshotCompleted } from "./complete-snapshot.ts";
import { describeInstance, findWorkloadInstance, WORKLOAD_TAG, type AwsInstance } from "./instances.ts";
import { openEbsSnapshot, type EbsSnapshotSource } from "./snapshot-source.ts";
import { awsDeviceNameFor } from "./devices.ts";

/** The tag (and value) on every snapshot made for a point-in-time read. */
export const POINT_IN_TIME_TAG = "portable:purpose";
export const POINT_IN_TIME_PURPOSE = "point-in-time";

/**
 * How long CreateSnapshot may take to reach `completed`. A volume created from a snapshot is
 * snapshotted incrementally (only blocks changed since), which takes seconds to minutes; a large
 * volume written all over can take much longer, so the bound is generous: two hours.
 */
export const INSTANCE_SNAPSHOT_TIMEOUT_MS = 2 * 60 * 60_000;
/** Wait after SnapshotCreationPerVolumeRateExceeded; AWS asks for some seconds between snapshots of a volume. */
export const SNAPSHOT_RATE_WAIT_MS = 15_000;
export const SNAPSHOT_RATE_ATTEMPTS = 8;

/** "/dev/sdf" and "sdf" name the same mapping. */
const sameDevice = (a: string, b: string) => a.replace(/^\/dev\//, "") === b.replace(/^\/dev\//, "");

export interface OpenInstanceVolumeOptions {
  readonly clients: { readonly ebs: EBSClient; readonly ec2: EC2Client };
  readonly instanceId: string;
  /** As the instance's block device mapping names it (awsDeviceNameForDisk). */
  readonly deviceName: string;
  /** The disk's size when smaller than the volume's whole GiB. @default the volume's size */
  readonly virtualSizeBytes?: number;
  /** Put on the snapshot as `portable:workload`, so an orphan names its owner. */
  readonly workload?: string;
  /** @default INSTANCE_SNAPSHOT_TIMEOUT_MS */
  readonly snapshotTimeoutMs?: number;
  /** DescribeSnapshots poll interval while waiting. @default WAIT_POLL_INTERVAL_MS (2 s) */
  readonly pollIntervalMs?: number;
  /** @default SNAPSHOT_RATE_WAIT_MS */
  readonly rateWaitMs?: number;
  readonly signal?: AbortSignal;
  readonly onRetry?: (error: unknown, attempt: number) => void;
}

export interface InstanceVolumePointInTime extends Omit<PointInTime, "release"> {
  /** Closes the read and deletes the snapshot, unless `keep` (change tracking diffs against it next time). */
  release(options?: { readonly keep?: boolean }): Promise<void>;
  readonly source: EbsSnapshotSource;
  readonly instanceId: string;
  readonly volumeId: string;
  /** The snapshot made for this read; deleted by release() unless kept. */
  readonly snapshotId: string;
  /** The instance's state when the snapshot was taken (running: crash-consistent). */
  readonly instanceState: AwsInstance["state"];
}

function isPerVolumeRateLimit(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { name, Code } = e as { name?: unknown; Code?: unknown };
    if (name === "SnapshotCreationPerVolumeRateExceeded" || Code === "SnapshotCreationPerVolumeRateExceeded") return true;
  }
  return false;
}

async function createVolumeSnapshot(options: OpenInstanceVolumeOptions, volumeId: string): Promise<string> {
  const { ec2 } = options.clients;
  const tags = {
    [POINT_IN_TIME_TAG]: POINT_IN_TIME_PURPOSE,
    "portable:instance": options.instanceId,
    "portable:device": options.deviceName,
    ...(options.workload === undefined ? {} : { [WORKLOAD_TAG]: options.workload }),
  };
  for (let attempt = 1; ; attempt++) {
    try {
      const out = await callAws(
        { operation: "CreateSnapshot", code: "EC2_CREATE_SNAPSHOT_FAILED", context: { instanceId: options.instanceId, volumeId, deviceName: options.deviceName }, ...(options.signal ? { signal: options.signal } : {}), ...(options.onRetry ? { onRetry: options.onRetry } : {}) },
        () =>
          ec2.send(
            new CreateSnapshotCommand({
              VolumeId: volumeId,
              Description: `portable-workload: point in time of ${options.instanceId} ${options.deviceName}`,
              TagSpecifications: [{ ResourceType: "snapshot", Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }],
            }),
            options.signal ? { abortSignal: options.signal } : {},
          ),
      );
      if (out.SnapshotId === undefined) throw new CloudError("EC2_CREATE_SNAPSHOT_FAILED", `CreateSnapshot ${volumeId}: the answer carries no SnapshotId`, { context: { volumeId } });
      return out.SnapshotId;
    } catch (error) {
      if (attempt >= SNAPSHOT_RATE_ATTEMPTS || !isPerVolumeRateLimit(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, options.rateWaitMs ?? SNAPSHOT_RATE_WAIT_MS));
      options.signal?.throwIfAborted();
    }
  }
}

/** Deletes a snapshot we made; one already gone is fine. */
export async function deleteSnapshot(ec2: EC2Client, snapshotId: string): Promise<void> {
  try {
    await callAws({ operation: "DeleteSnapshot", code: "EC2_DELETE_SNAPSHOT_FAILED", context: { snapshotId } }, () => ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId })));
  } catch (error) {
    if (!/InvalidSnapshot\.NotFound/.test(`${String(error)} ${String((error as { cause?: unknown }).cause)}`)) throw error;
  }
}

/**
 * Snapshots the volume attached at `deviceName` of `instanceId`, waits for it to complete and
 * opens it as a DiskSource; release() closes it and deletes the snapshot. Anything that fails
 * after the snapshot exists deletes it before the error is thrown.
 */
export async function openInstanceVolume(options: OpenInstanceVolumeOptions): Promise<InstanceVolumePointInTime> {
  const { ec2, ebs } = options.clients;
  const instance = await describeInstance(ec2, options.instanceId);
  if (instance === undefined || instance.state === "terminated" || instance.state === "shutting-down") {
    throw new CloudError("AWS_INSTANCE_NOT_FOUND", `instance ${options.instanceId}: ${instance === undefined ? "not found" : instance.state}; no volume to read`, { context: { instanceId: options.instanceId } });
  }
  const attached = instance.volumes.find((v) => sameDevice(v.deviceName, options.deviceName));
  if (attached === undefined) {
    throw new CloudError("AWS_VOLUME_NOT_FOUND", `instance ${options.instanceId}: no EBS volume at ${options.deviceName} (it has ${instance.volumes.map((v) => `${v.deviceName} ${v.volumeId}`).join(", ") || "none"})`, {
      context: { instanceId: options.instanceId, deviceName: options.deviceName },
    });
  }
  const snapshotId = await createVolumeSnapshot(options, attached.volumeId);
  try {
    await waitForSnapshotCompleted(ec2, snapshotId, {
      timeoutMs: options.snapshotTimeoutMs ?? INSTANCE_SNAPSHOT_TIMEOUT_MS,
      ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const source = await openEbsSnapshot(ebs, snapshotId, {
      ...(options.virtualSizeBytes === undefined ? {} : { virtualSizeBytes: options.virtualSizeBytes }),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onRetry ? { onRetry: options.onRetry } : {}),
    });
    let released: Promise<void> | undefined;
    return {
      source,
      instanceId: options.instanceId,
      volumeId: attached.volumeId,
      snapshotId,
      instanceState: instance.state,
      release(releaseOptions) {
        released ??= (async () => {
          try {
            await source.close();
          } finally {
            if (releaseOptions?.keep !== true) await deleteSnapshot(ec2, snapshotId);
          }
        })();
        return released;
      },
    };
  } catch (error) {
    await deleteSnapshot(ec2, snapshotId).catch(() => {});
    throw error;
  }
}

/**
 * The point in time of a workload's disk on its AWS instance (found by tag), or undefined when
 * the workload has no instance there (launch: false, or not created yet): then its disk is the
 * snapshot we placed, read as a replica.
 */
export async function openWorkloadVolume(options: Omit<OpenInstanceVolumeOptions, "instanceId" | "deviceName" | "workload"> & { readonly workload: Workload; readonly diskId: string }): Promise<InstanceVolumePointInTime | undefined> {
  const deviceName = awsDeviceNameFor(options.workload, options.diskId);
  const instance = await findWorkloadInstance(options.clients.ec2, options.workload.name);
  if (instance === undefined) return undefined;
  const { workload, diskId: _diskId, ...rest } = options;
  return openInstanceVolume({ ...rest, instanceId: instance.instanceId, deviceName, workload: workload.name });
}
