// The AWS platform's disks (contracts/disk-driver.ts): EBS snapshot chains written through the
// EBS direct APIs (replica-target.ts), named by url.ts. An instance starts from them and never
// writes them: its live disk is its own volume (live-volume.ts).
import { InvalidArgsError } from "../../errors.ts";
import { snapshotSource } from "../../contracts/snapshot-tracking.ts";
import type { DiskDriver, OpenedReplica } from "../../contracts/disk-driver.ts";
import { parseEbsUrl } from "./url.ts";
import { clientsFor } from "./open-url.ts";
import { ebsReplica } from "./replica-target.ts";

async function openEbsReplica(target: string, virtualSizeBytes: number): Promise<OpenedReplica> {
  const url = parseEbsUrl(target);
  if (url.snapshotId !== undefined) {
    throw new InvalidArgsError("REPLICA_TARGET_URL", "a replica is a new snapshot chain: give ebs://?region=R, not a snapshot id");
  }
  const clients = clientsFor(url);
  const snapshot = {
    ...(url.description === undefined ? {} : { description: url.description }),
    ...(Object.keys(url.tags).length === 0 ? {} : { tags: url.tags }),
    ...(url.kmsKeyArn === undefined ? {} : { kmsKeyArn: url.kmsKeyArn }),
    ...(url.timeoutMinutes === undefined ? {} : { timeoutMinutes: url.timeoutMinutes }),
  };
  return { target: ebsReplica({ ebs: clients.ebs, ec2: clients.ec2, virtualSizeBytes, snapshot }), close: () => clients.destroy() };
}

export const awsDiskDriver: DiskDriver = {
  kind: "aws",
  liveDisk: false,
  openReplicaTarget: openEbsReplica,
  // The workload's instance writes to its own volumes, not to our snapshots: while it exists, a
  // move reads a snapshot of the volume at the disk's device (the running instance for a warm
  // pass, the stopped one for the final pass). With no instance, the placed chain is the disk.
  async openLive(target, context) {
    if (context.live === undefined) return undefined;
    const { openWorkloadVolume } = await import("./live-volume.ts");
    const clients = clientsFor(parseEbsUrl(target));
    const { workload, diskId, virtualSizeBytes } = context.live;
    // A volume is whole GiB: the disk is read at its own size, as it was placed.
    const view = await openWorkloadVolume({ clients, workload, diskId, ...(virtualSizeBytes === undefined ? {} : { virtualSizeBytes }) }).catch((error: unknown) => {
      clients.destroy();
      throw error;
    });
    if (view === undefined) {
      clients.destroy();
      return undefined;
    }
    // With tracking, this pass's snapshot may stay as the token the next pass diffs against.
    const tracking = context.track === undefined ? undefined : (await import("./change-tracking.ts")).ebsChangeTracking({
      ebs: clients.ebs,
      ec2: clients.ec2,
      snapshotId: view.snapshotId,
      virtualSizeBytes: view.source.virtualSizeBytes,
      final: context.track.final === true,
      release: (keep) => view.release({ keep }),
    });
    return snapshotSource(view.source, tracking, () => view.release(), () => clients.destroy());
  },
  async stateStore(target) {
    const url = parseEbsUrl(target);
    if (url.stateBucket === undefined) return undefined;
    const { s3StateStore } = await import("./state-store.ts");
    return s3StateStore({ bucket: url.stateBucket, region: url.region ?? process.env.AWS_REGION ?? "us-east-1", ...(url.endpoint === undefined ? {} : { endpoint: url.endpoint }) });
  },
  async remove(target, committed, virtualSizeBytes) {
    const { target: replica, close } = await openEbsReplica(target, virtualSizeBytes);
    try {
      await replica.destroy(committed);
    } finally {
      close();
    }
  },
};
