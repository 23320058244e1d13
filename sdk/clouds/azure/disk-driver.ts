// The Azure platform's disks (contracts/disk-driver.ts): fixed-VHD page blobs written page by
// page (replica-target.ts), named by url.ts; a managed disk is created from one afterwards. A
// machine starts from a managed disk and never writes the blob, so it is read back as it is.
import { InvalidArgsError } from "../../errors.ts";
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
  writes: "blocks",
  liveDisk: false,
  openReplicaTarget: openPageBlobReplica,
  async remove(target, committed, virtualSizeBytes) {
    const { target: replica, close } = await openPageBlobReplica(target, virtualSizeBytes);
    try {
      await replica.destroy(committed);
    } finally {
      close();
    }
  },
};
