// A workload disk on a datastore, named by location.ts
// (`vsphere://<host>/<folder>/<name>.vmdk?dc=<datacenter>&ds=<datastore>`): read and deleted
// through the vim25 client. It is written as a chain of layers (replica-target.ts); reading
// follows the chain, and deleting removes every layer.
import { posix } from "node:path";
import type { VsphereConnection } from "../../contracts/vsphere-connection.ts";
import type { DiskSource } from "../../disk/types.ts";
import { VsphereClient } from "./client.ts";
import { openDatastoreDisk, removeEmptyDatastoreFolder } from "./datastore.ts";
import { parseVsphereDiskUrl } from "./location.ts";
import { vsphereReplicaTarget } from "./replica-target.ts";

export async function connectVsphere(connection: VsphereConnection): Promise<VsphereClient> {
  return VsphereClient.connect({
    url: connection.url,
    username: connection.username,
    password: connection.password,
    ...(connection.caPem === undefined ? {} : { caPem: connection.caPem }),
    ...(connection.thumbprint === undefined ? {} : { thumbprint: connection.thumbprint }),
    ...(connection.insecure === undefined ? {} : { insecure: connection.insecure }),
  });
}

export async function openVsphereDisk(client: VsphereClient, text: string): Promise<DiskSource> {
  return openDatastoreDisk(client, parseVsphereDiskUrl(text).file);
}

export interface DeleteVsphereDiskOptions {
  /**
   * Then delete the disk's folder if nothing else is in it (the folder a workload's disks share,
   * which the upload made). Never the datastore's root; a folder holding any file stays.
   * @default false
   */
  readonly removeEmptyFolder?: boolean;
}

export async function deleteVsphereDisk(client: VsphereClient, text: string, options: DeleteVsphereDiskOptions = {}): Promise<void> {
  const { file } = parseVsphereDiskUrl(text);
  // Every layer of the chain, and a flat disk written before chains.
  await vsphereReplicaTarget({ client, file, virtualSizeBytes: 0 }).destroy(undefined);
  const folder = posix.dirname(file.path);
  if (options.removeEmptyFolder === true && folder !== "." && folder !== "") await removeEmptyDatastoreFolder(client, { ...file, path: folder });
}
