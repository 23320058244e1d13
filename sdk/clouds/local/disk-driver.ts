// The local platform's disks (contracts/disk-driver.ts): raw files, written as block replicas
// (replica-target.ts). A datastore disk may have a running QEMU machine on it, so it is read
// under a frozen overlay (point-in-time.ts), with QEMU's dirty bitmaps tracking its changes
// (change-tracking.ts), and QEMU can back a fixups overlay with it directly.
import { join } from "node:path";
import type { DiskDriver } from "../../contracts/disk-driver.ts";
import { datastoreOfDisk, isLocalDatastoreDisk } from "./location.ts";
import { rawFileReplica } from "./replica-target.ts";

export const localDiskDriver: DiskDriver = {
  kind: "local",
  liveDisk: true,
  async openReplicaTarget(target, virtualSizeBytes) {
    return { target: rawFileReplica({ path: target, virtualSizeBytes }), close: () => {} };
  },
  async openLive(target, context) {
    if (!isLocalDatastoreDisk(target)) return undefined;
    const { openDatastore } = await import("./datastore.ts");
    const { freezeFile } = await import("./point-in-time.ts");
    const frozen = await freezeFile(await openDatastore(datastoreOfDisk(target)), target, "raw", context.track);
    return { ...frozen.source, extents: () => frozen.source.extents(), read: (o, l, into) => frozen.source.read(o, l, into), close: () => frozen.release() };
  },
  async changedBytesSince(target, token) {
    if (!isLocalDatastoreDisk(target)) return undefined;
    const { openDatastore } = await import("./datastore.ts");
    const { trackedChangedBytes } = await import("./point-in-time.ts");
    return trackedChangedBytes(await openDatastore(datastoreOfDisk(target)), target, token);
  },
  async remove(target, committed, virtualSizeBytes) {
    await rawFileReplica({ path: target, virtualSizeBytes }).destroy(committed);
    if (isLocalDatastoreDisk(target)) {
      const { removeEmptyDatastoreFolders } = await import("./datastore.ts");
      await removeEmptyDatastoreFolders(datastoreOfDisk(target));
    }
  },
  // A folder in the datastore, beside disks/.
  async stateStore(target) {
    if (!isLocalDatastoreDisk(target)) return undefined;
    const { fileStateStore } = await import("../../contracts/state-store.ts");
    return fileStateStore(join(datastoreOfDisk(target), ".portable-state"));
  },
  localImage: (target) => (isLocalDatastoreDisk(target) ? target : undefined),
};
