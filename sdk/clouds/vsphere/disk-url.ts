// A workload disk on a datastore, named by location.ts
// (`vsphere://<host>/<folder>/<name>.vmdk?dc=<datacenter>&ds=<datastore>`): copied, read and
// deleted through the vim25 client. A datastore PUT replaces a whole file (no
// writes at an offset), so a disk placed here is a full flat copy, not a block replica; its
// manifest is still kept, so moving it back elsewhere is incremental there.
import { posix } from "node:path";
import type { VsphereConnection } from "../../contracts/vsphere-connection.ts";
import type { DiskSource } from "../../disk/types.ts";
import { convert, type ConvertOptions } from "../../disk/convert.ts";
import { VsphereClient } from "./client.ts";
import { createDatastoreDiskSink, datastorePathOf, deleteDatastoreDisk, openDatastoreDisk, removeEmptyDatastoreFolder } from "./datastore.ts";
import { parseVsphereDiskUrl } from "./location.ts";

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

/** Copies a whole disk to the datastore as a flat VMDK; returns its datastore path. */
export async function copyToVsphereDisk(client: VsphereClient, source: DiskSource, text: string, options: ConvertOptions = {}): Promise<string> {
  const { file } = parseVsphereDiskUrl(text);
  const sink = await createDatastoreDiskSink(client, file, { virtualSizeBytes: source.virtualSizeBytes, subformat: "flat", overwrite: true });
  await convert(source, sink, options);
  return datastorePathOf(file);
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
  await deleteDatastoreDisk(client, file);
  const folder = posix.dirname(file.path);
  if (options.removeEmptyFolder === true && folder !== "." && folder !== "") await removeEmptyDatastoreFolder(client, { ...file, path: folder });
}
