// Change tracking of a managed disk of an Azure VM (contracts: DiskSource.changes): with tracking,
// each pass reads an incremental snapshot of the disk (live-disk.ts) and keeps it as its token;
// the next pass grants a read SAS on the kept snapshot and asks Get Page Ranges with
// `x-ms-previous-snapshot-url` for the pages written or cleared since (page-ranges.ts
// listChangedPageRanges), the API Azure documents for incremental snapshots of managed disks.
// The kept snapshot goes once a later pass commits; a cutover's final pass keeps none.
//
// Any failure (the kept snapshot gone, a refused grant, an answer that may be cut off) means
// "cannot say", and the pass scans everything. Azurite does not compute this diff (it ignores
// the previous-snapshot header and lists every page, never a cleared one), so the tests check the
// client against answers shaped as Azure documents them and, for a whole move, at a proxy that
// answers the diff from the two snapshots' real bytes.
import { CloudError } from "../../errors.ts";
import type { ChangeTracking } from "../../disk/types.ts";
import { snapshotTracking } from "../../contracts/snapshot-tracking.ts";
import { armCall, armFind, type AzureComputeApi } from "./compute.ts";
import { pageBlobClientFor } from "./open-url.ts";
import { listChangedPageRanges } from "./page-ranges.ts";

const TOKEN = "azure-snapshot:";

export function snapshotToken(snapshotName: string): string {
  return `${TOKEN}${snapshotName}`;
}

/** An ARM snapshot name (pointInTimeSnapshotName makes them so). */
const SNAPSHOT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,78}[A-Za-z0-9]$/;

/** The read SAS lifetime asked for the earlier snapshot: long enough for one diff. */
const DIFF_SAS_SECONDS = 3600;

/** Tracking for a pass over the incremental snapshot `snapshotName` (contracts/snapshot-tracking.ts keeps and deletes). */
export function azureChangeTracking(options: {
  readonly compute: Pick<AzureComputeApi, "snapshots">;
  readonly resourceGroupName: string;
  readonly snapshotName: string;
  readonly readSasUrl: string;
  readonly virtualSizeBytes: number;
  readonly final: boolean;
  readonly release: (keep: boolean) => Promise<void>;
}): { readonly changes: ChangeTracking; release(): Promise<void> } {
  const { compute, resourceGroupName } = options;
  const where = (name: string) => `snapshot ${name} in resource group ${resourceGroupName}`;
  return snapshotTracking({
    snapshot: options.snapshotName,
    prefix: TOKEN,
    valid: (name) => SNAPSHOT_NAME.test(name),
    async diff(earlier) {
      const access = await armCall("AZURE_SNAPSHOT_CALL_FAILED", "Grant Read access to", where(earlier), () => compute.snapshots.grantAccess(resourceGroupName, earlier, { access: "Read", durationInSeconds: DIFF_SAS_SECONDS }));
      try {
        if (access.accessSAS === undefined || access.accessSAS === "") throw new CloudError("AZURE_NO_SAS", `Grant Read access to ${where(earlier)}: the answer holds no SAS URL`);
        const client = await pageBlobClientFor({ kind: "sas", url: options.readSasUrl });
        return await listChangedPageRanges(client, options.snapshotName, access.accessSAS, options.virtualSizeBytes);
      } finally {
        await armFind("AZURE_SNAPSHOT_CALL_FAILED", "Revoke access to", where(earlier), () => compute.snapshots.revokeAccess(resourceGroupName, earlier)).catch(() => {});
      }
    },
    releaseView: options.release,
    deleteSnapshot: async (name) => {
      await armFind("AZURE_SNAPSHOT_CALL_FAILED", "Delete", where(name), () => compute.snapshots.delete(resourceGroupName, name));
    },
    final: options.final,
  });
}
