// The one registry of where disks live: what a user or a placement names (a file path,
// `file.ova!entry`, `ebs://…`, `azblob://…` / a blob SAS URL / `azdisk://…`, `vsphere://…`) opened
// as a source, or as a replica target. It sits with the drivers it chooses between, above the
// transfer floor (sdk/transfer imports no driver; tests/unit/layering.test.ts). Cloud SDKs, the
// vim25 client and the OVF reader load only when their form is used.
import { isEbsUrl } from "./aws/url.ts";
import { isAzureDiskUrl } from "./azure/url.ts";
import { InvalidArgsError } from "../errors.ts";
import { formatByName } from "../disk/formats/index.ts";
import { openDisk } from "../disk/open.ts";
import type { DiskSource } from "../disk/types.ts";
import { isOvaFile, resolveOvaLocation } from "../ovf/ova-location.ts";
import type { ReplicaTarget } from "../contracts/replica-target.ts";
import type { PlacementKind } from "../spec/placement.ts";
import type { MachineDriver } from "../contracts/machine-driver.ts";

/**
 * `format` skips detection; for a bare OVA it also skips the OVA_IS_ARCHIVE refusal, so a tar
 * archive can still be read as raw bytes on purpose.
 */
export async function openSource(text: string, format?: string): Promise<DiskSource> {
  if (isEbsUrl(text)) return (await import("./aws/open-url.ts")).openEbsUrl(text);
  if (isAzureDiskUrl(text)) return (await import("./azure/open-url.ts")).openAzureDiskSource(text);
  // The scheme alone: vsphere/disk-url.ts would load the vim25 client into every command.
  if (text.startsWith("vsphere://")) return (await import("./vsphere/source-url.ts")).openVsphereSource(text);
  const named = format === undefined ? {} : { format: formatByName(format).name };
  const inOva = await resolveOvaLocation(text);
  if (inOva !== undefined) return (await import("../ovf/package.ts")).openOvaEntry(inOva.path, inOva.entry, named);
  if (format === undefined && (await isOvaFile(text))) throw await (await import("../ovf/package.ts")).ovaIsArchiveError(text);
  return openDisk(text, named);
}

export interface OpenedReplica {
  readonly target: ReplicaTarget;
  /** Releases clients (sockets) the target holds. */
  close(): void;
}

export async function openReplicaTarget(text: string, virtualSizeBytes: number): Promise<OpenedReplica> {
  if (isEbsUrl(text)) {
    const { parseEbsUrl } = await import("./aws/url.ts");
    const { clientsFor } = await import("./aws/open-url.ts");
    const { ebsReplica } = await import("./aws/replica-target.ts");
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
    const { parseAzureDiskUrl } = await import("./azure/url.ts");
    const { pageBlobClientFor } = await import("./azure/open-url.ts");
    const { pageBlobReplica } = await import("./azure/replica-target.ts");
    const location = parseAzureDiskUrl(text);
    if (location.kind === "azdisk") throw new InvalidArgsError("REPLICA_TARGET_URL", "replicate into a page blob (azblob:// or a blob SAS URL); a managed disk is created from it afterwards");
    return { target: pageBlobReplica({ client: await pageBlobClientFor(location), virtualSizeBytes }), close: () => {} };
  }
  const { rawFileReplica } = await import("./local/replica-target.ts");
  return { target: rawFileReplica({ path: text, virtualSizeBytes }), close: () => {} };
}

/**
 * The machine driver of a platform (machine-driver.ts), loaded on first use; undefined for the
 * platforms whose machines are the official providers' resources (aws, azure).
 */
export async function machineDriver(kind: PlacementKind): Promise<MachineDriver | undefined> {
  switch (kind) {
    case "local":
      return (await import("./local/machine-driver.ts")).localMachineDriver;
    case "vsphere":
      return (await import("./vsphere/machine-driver.ts")).vsphereMachineDriver;
    case "aws":
    case "azure":
      return undefined;
  }
}
