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
import type { ChangeTracking, DirtyRange } from "../../disk/types.ts";
import { armCall, armFind, type AzureComputeApi } from "./compute.ts";
import { pageBlobClientFor } from "./open-url.ts";
import { listChangedPageRanges } from "./page-ranges.ts";

const TOKEN = "azure-snapshot:";

export function snapshotToken(snapshotName: string): string {
  return `${TOKEN}${snapshotName}`;
}

function snapshotOf(token: string): string | undefined {
  const name = token.startsWith(TOKEN) ? token.slice(TOKEN.length) : undefined;
  return name !== undefined && /^[A-Za-z][A-Za-z0-9_.-]{0,78}[A-Za-z0-9]$/.test(name) ? name : undefined;
}

/** The read SAS lifetime asked for the earlier snapshot: long enough for one diff. */
const DIFF_SAS_SECONDS = 3600;

/**
 * Tracking for a pass over the incremental snapshot `snapshotName`. `release()` replaces the
 * view's own release: it keeps this pass's snapshot when the pass committed (and deletes the one
 * it diffed against), else keeps the older one; a final pass keeps neither.
 */
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
  let since: string | undefined;
  let committed = false;
  const where = (name: string) => `snapshot ${name} in resource group ${resourceGroupName}`;
  return {
    changes: {
      token: snapshotToken(options.snapshotName),
      async changedSince(token) {
        const previous = snapshotOf(token);
        if (previous === undefined || previous === options.snapshotName) return undefined;
        since = previous;
        let ranges: DirtyRange[];
        try {
          const access = await armCall("AZURE_SNAPSHOT_CALL_FAILED", "Grant Read access to", where(previous), () => compute.snapshots.grantAccess(resourceGroupName, previous, { access: "Read", durationInSeconds: DIFF_SAS_SECONDS }));
          try {
            if (access.accessSAS === undefined || access.accessSAS === "") return undefined;
            const client = await pageBlobClientFor({ kind: "sas", url: options.readSasUrl });
            ranges = await listChangedPageRanges(client, options.snapshotName, access.accessSAS, options.virtualSizeBytes);
          } finally {
            await armFind("AZURE_SNAPSHOT_CALL_FAILED", "Revoke access to", where(previous), () => compute.snapshots.revokeAccess(resourceGroupName, previous)).catch(() => {});
          }
        } catch {
          return undefined;
        }
        return (async function* () {
          yield* ranges;
        })();
      },
      committed() {
        committed = true;
      },
    },
    async release() {
      await options.release(committed && !options.final);
      // The record now names this pass's snapshot (after a final pass, one no later pass needs).
      if (since !== undefined && committed) {
        const previous = since;
        await armFind("AZURE_SNAPSHOT_CALL_FAILED", "Delete", where(previous), () => compute.snapshots.delete(resourceGroupName, previous)).catch(() => {});
      }
    },
  };
}
