// A point-in-time view of a vSphere VM's disk, for warm replication: a snapshot freezes the
// disk's files (the VM writes to new delta files from then on), we read the frozen file through
// the datastore, and releasing removes the snapshot, which consolidates the deltas back.
import type { PointInTime } from "../../contracts/point-in-time.ts";
import type { VsphereClient } from "./client.ts";
import { openDatastoreDisk, parseDatastorePath } from "./datastore.ts";
import { createSnapshot, datacenterOf, pickDisk, readVmConfig, removeSnapshot, snapshotDisks } from "./vm.ts";
import type { MoRef } from "./xml.ts";

/** Snapshots `vm` and opens disk `which` (index or label) as the snapshot froze it. */
export async function vspherePointInTime(client: VsphereClient, vm: MoRef, which: number | string, name = `portable-pass-${Date.now()}`): Promise<PointInTime> {
  const config = await readVmConfig(client, vm);
  const wanted = pickDisk(config, which);
  const datacenter = await datacenterOf(client, vm);
  const snapshot = await createSnapshot(client, vm, name, { description: "portable-workload: a consistent read for replication" });
  try {
    const frozen = (await snapshotDisks(client, snapshot)).find((d) => d.key === wanted.key) ?? wanted;
    const source = await openDatastoreDisk(client, parseDatastorePath(frozen.fileName, datacenter));
    return {
      source,
      async release() {
        try {
          await source.close();
        } finally {
          await removeSnapshot(client, snapshot);
        }
      },
    };
  } catch (error) {
    await removeSnapshot(client, snapshot).catch(() => {});
    throw error;
  }
}
