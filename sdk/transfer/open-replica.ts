// A replica target from what a user types: a file path (a raw replica), `ebs://?region=R`
// (a chain of EBS snapshots) or `azblob://account/container/blob` / a blob SAS URL (a fixed-VHD
// page blob). Cloud SDKs load only when their scheme is used.
import { isEbsUrl } from "../clouds/aws/url.ts";
import { isAzureDiskUrl } from "../clouds/azure/url.ts";
import { InvalidArgsError } from "../errors.ts";
import { rawFileReplica } from "./raw-file-replica.ts";
import type { ReplicaTarget } from "./replicate.ts";

export interface OpenedReplica {
  readonly target: ReplicaTarget;
  /** Releases clients (sockets) the target holds. */
  close(): void;
}

export async function openReplicaTarget(text: string, virtualSizeBytes: number): Promise<OpenedReplica> {
  if (isEbsUrl(text)) {
    const { parseEbsUrl } = await import("../clouds/aws/url.ts");
    const { clientsFor } = await import("../clouds/aws/open-url.ts");
    const { ebsReplica } = await import("../clouds/aws/replica-target.ts");
    const url = parseEbsUrl(text);
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
  if (isAzureDiskUrl(text)) {
    const { parseAzureDiskUrl } = await import("../clouds/azure/url.ts");
    const { pageBlobClientFor } = await import("../clouds/azure/open-url.ts");
    const { pageBlobReplica } = await import("../clouds/azure/replica-target.ts");
    const location = parseAzureDiskUrl(text);
    if (location.kind === "azdisk") throw new InvalidArgsError("REPLICA_TARGET_URL", "replicate into a page blob (azblob:// or a blob SAS URL); a managed disk is created from it afterwards");
    return { target: pageBlobReplica({ client: await pageBlobClientFor(location), virtualSizeBytes }), close: () => {} };
  }
  return { target: rawFileReplica({ path: text, virtualSizeBytes }), close: () => {} };
}
