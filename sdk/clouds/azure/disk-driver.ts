// The Azure platform's disks (contracts/disk-driver.ts): fixed-VHD page blobs written page by
// page (replica-target.ts), named by url.ts; a managed disk is created from one afterwards. The
// VM writes its managed disk, never the blob: that is the live disk (live-disk.ts).
import { InvalidArgsError } from "../../errors.ts";
import { snapshotSource } from "../../contracts/snapshot-tracking.ts";
import type { DiskDriver, OpenedReplica } from "../../contracts/disk-driver.ts";
import { parseAzureDiskUrl } from "./url.ts";
import { pageBlobClientFor } from "./open-url.ts";
import { pageBlobReplica } from "./replica-target.ts";

async function openPageBlobReplica(target: string, virtualSizeBytes: number): Promise<OpenedReplica> {
  const location = parseAzureDiskUrl(target);
  if (location.kind === "azdisk") throw new InvalidArgsError("REPLICA_TARGET_URL", "replicate into a page blob (azblob:// or a blob SAS URL); a managed disk is created from it afterwards");
  return { target: pageBlobReplica({ client: await pageBlobClientFor(location), virtualSizeBytes }), close: () => {} };
}

export const azureDiskDriver: DiskDriver = {
  kind: "azure",
  liveDisk: false,
  openReplicaTarget: openPageBlobReplica,
  // The VM writes to its managed disk, not to our blob: while the disk exists, a move reads a
  // snapshot of it through a read SAS (live-disk.ts). `launch: false` made no managed disk.
  async openLive(_target, context) {
    const live = context.live;
    if (live === undefined || live.placement.kind !== "azure" || !live.placement.launch) return undefined;
    const [{ openWorkloadManagedDisk }, { computeClientFor }, { azureChangeTracking }] = await Promise.all([import("./live-disk.ts"), import("./compute.ts"), import("./change-tracking.ts")]);
    const compute = await computeClientFor(live.placement);
    // With tracking, the snapshot is incremental (a page-range diff needs two of one disk) and may
    // stay as the token the next pass diffs against.
    const view = await openWorkloadManagedDisk({ compute, placement: live.placement, workload: live.workload, diskId: live.diskId, incremental: context.track !== undefined });
    if (view === undefined) return undefined;
    const tracking = context.track === undefined ? undefined : azureChangeTracking({
      compute,
      resourceGroupName: live.placement.resourceGroupName,
      snapshotName: view.snapshotName,
      readSasUrl: view.readSasUrl,
      virtualSizeBytes: view.source.virtualSizeBytes,
      final: context.track.final === true,
      release: (keep) => view.release({ keep }),
    });
    return snapshotSource(view.source, tracking, () => view.release());
  },
  // Block blobs beside the page blobs, in their container.
  async stateStore(target) {
    const location = parseAzureDiskUrl(target);
    if (location.kind !== "azblob") return undefined;
    const [{ containerClientFor }, { blobStateStore }] = await Promise.all([import("./open-url.ts"), import("./state-store.ts")]);
    return blobStateStore(await containerClientFor(location.accountName, location.containerName));
  },
  async remove(target, committed, virtualSizeBytes) {
    const { target: replica, close } = await openPageBlobReplica(target, virtualSizeBytes);
    try {
      await replica.destroy(committed);
    } finally {
      close();
    }
  },
};
