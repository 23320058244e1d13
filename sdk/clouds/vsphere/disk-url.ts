// `vsphere://<host>/<folder>/<name>.vmdk?dc=<datacenter>&ds=<datastore>`: a workload disk on a
// datastore, as the placement layer names it. The connection (URL, user, trust) and the password
// travel separately, so the name holds no secret. A datastore PUT replaces a whole file (no
// writes at an offset), so a disk placed here is a full flat copy, not a block replica; its
// manifest is still kept, so moving it back elsewhere is incremental there.
import { InvalidArgsError } from "../../errors.ts";
import type { DiskSource } from "../../disk/types.ts";
import { convert, type ConvertOptions } from "../../disk/convert.ts";
import { VsphereClient } from "./client.ts";
import { createDatastoreDiskSink, datastorePathOf, deleteDatastoreDisk, openDatastoreDisk, type DatastoreFile } from "./datastore.ts";

export const VSPHERE_SCHEME = "vsphere:";

export interface VsphereConnection {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  readonly caPem?: string;
  readonly thumbprint?: string;
  readonly insecure?: boolean;
}

export function isVsphereDiskUrl(text: string): boolean {
  return text.startsWith("vsphere://");
}

export function parseVsphereDiskUrl(text: string): { readonly host: string; readonly file: DatastoreFile } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgsError("VSPHERE_DISK_URL", `"${text}" is not a vsphere://host/folder/disk.vmdk?dc=…&ds=… URL`);
  }
  const dc = url.searchParams.get("dc");
  const ds = url.searchParams.get("ds");
  const path = decodeURIComponent(url.pathname.replace(/^\/+/, ""));
  if (url.protocol !== VSPHERE_SCHEME || dc === null || ds === null || !path.endsWith(".vmdk") || url.username !== "" || url.password !== "") {
    throw new InvalidArgsError("VSPHERE_DISK_URL", `"${text}" must look like vsphere://host/folder/disk.vmdk?dc=<datacenter>&ds=<datastore> (no credentials)`);
  }
  return { host: url.host, file: { datacenter: dc, datastore: ds, path } };
}

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

export async function deleteVsphereDisk(client: VsphereClient, text: string): Promise<void> {
  await deleteDatastoreDisk(client, parseVsphereDiskUrl(text).file);
}
