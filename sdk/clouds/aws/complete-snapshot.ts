// CompleteSnapshot: seals a pending snapshot with the count of blocks written and their LINEAR
// aggregated checksum, then (optionally) waits through EC2 until the snapshot is `completed`.
import { CompleteSnapshotCommand, type EBSClient } from "@aws-sdk/client-ebs";
import { DescribeSnapshotsCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { CloudError } from "../../errors.ts";
import { callAws } from "./call.ts";
import { linearAggregateChecksum } from "./ebs-block.ts";

/**
 * How long to wait for `pending` to become `completed` after CompleteSnapshot. EBS finishes
 * small snapshots in seconds and large ones in minutes; 30 minutes covers a full 64 TiB volume's
 * processing as AWS documents it and still fails a stuck one within the hour.
 */
export const DEFAULT_WAIT_TIMEOUT_MS = 30 * 60 * 1000;
/** DescribeSnapshots poll interval: often enough to notice, rarely enough not to be throttled. */
export const WAIT_POLL_INTERVAL_MS = 2_000;

/** `checksums` are the SHA-256 digests of the blocks written, by index. */
export async function completeSnapshot(ebs: EBSClient, snapshotId: string, checksums: ReadonlyMap<number, Buffer>, signal?: AbortSignal): Promise<string> {
  const out = await callAws(
    { operation: "CompleteSnapshot", code: "EBS_COMPLETE_SNAPSHOT_FAILED", context: { snapshotId, changedBlocks: checksums.size }, ...(signal ? { signal } : {}) },
    () =>
      ebs.send(
        new CompleteSnapshotCommand({
          SnapshotId: snapshotId,
          ChangedBlocksCount: checksums.size,
          Checksum: linearAggregateChecksum(checksums),
          ChecksumAlgorithm: "SHA256",
          ChecksumAggregationMethod: "LINEAR",
        }),
        signal ? { abortSignal: signal } : {},
      ),
  );
  if (out.Status === "error") {
    throw new CloudError("EBS_SNAPSHOT_ERROR", `CompleteSnapshot ${snapshotId}: the snapshot is in state error`, { context: { snapshotId } });
  }
  return out.Status ?? "pending";
}

export interface WaitOptions {
  readonly timeoutMs?: number;
  readonly pollIntervalMs?: number;
  readonly signal?: AbortSignal;
}

/** Polls EC2 DescribeSnapshots until the snapshot is `completed`; `error` or the timeout throw. */
export async function waitForSnapshotCompleted(ec2: EC2Client, snapshotId: string, options: WaitOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await callAws(
      { operation: "DescribeSnapshots", code: "EC2_DESCRIBE_SNAPSHOTS_FAILED", context: { snapshotId }, ...(options.signal ? { signal: options.signal } : {}) },
      () => ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }), options.signal ? { abortSignal: options.signal } : {}),
    );
    const state = out.Snapshots?.[0]?.State;
    if (state === "completed") return;
    if (state === "error" || state === "recoverable") {
      throw new CloudError("EBS_SNAPSHOT_ERROR", `wait for ${snapshotId}: the snapshot is in state ${state}`, {
        context: { snapshotId, state, message: out.Snapshots?.[0]?.StateMessage },
      });
    }
    if (Date.now() >= deadline) {
      throw new CloudError("EBS_WAIT_TIMEOUT", `wait for ${snapshotId}: still ${state ?? "unknown"} after ${timeoutMs} ms`, {
        context: { snapshotId, state, timeoutMs },
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(options.pollIntervalMs ?? WAIT_POLL_INTERVAL_MS, Math.max(0, deadline - Date.now()))));
    options.signal?.throwIfAborted();
  }
}
