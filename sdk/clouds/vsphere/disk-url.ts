// `vsphere://<host>/<folder>/<name>.vmdk?dc=<datacenter>&ds=<datastore>`: a workload disk on a
// datastore, as the placement layer names it. The connection (URL, user, trust) and the password
// travel separately, so the name holds no secret. A datastore PUT replaces a whole file (no
// writes at an offset), so a disk placed here is a full flat copy, not a block replica; its
// manifest is still kept, so moving it back elsewhere is incremental there.
import { posix } from "node:path";
import { InvalidArgsError } from "../../errors.ts";
import type { VsphereConnection, VsphereSettings } from "../../contracts/vsphere-connection.ts";
import type { DiskSource } from "../../disk/types.ts";
import { convert, type ConvertOptions } from "../../disk/convert.ts";
import { VsphereClient } from "./client.ts";
import { createDatastoreDiskSink, datastorePathOf, deleteDatastoreDisk, openDatastoreDisk, removeEmptyDatastoreFolder, type DatastoreFile } from "./datastore.ts";

export const VSPHERE_SCHEME = "vsphere:";

/** Where the vCenter password is read from when a placement names no other variable. */
export const DEFAULT_VSPHERE_PASSWORD_ENV = "VSPHERE_PASSWORD";

/**
 * The connection with its password read at run time from the environment (like cloud SDK
 * credentials), so the password is never a resource input, output or log line. Undefined when
 * the variable is unset: the operation that needs vSphere then fails with VSPHERE_CONNECTION_MISSING.
 */
export function vsphereConnectionFromEnv(settings: VsphereSettings, env: NodeJS.ProcessEnv = process.env): VsphereConnection | undefined {
  const password = env[settings.passwordEnv ?? DEFAULT_VSPHERE_PASSWORD_ENV];
  return password === undefined || password === "" ? undefined : { ...settings, password };
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
