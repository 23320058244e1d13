// Where a workload's disk lives on vSphere, built and parsed in one place:
// `vsphere://<host>/<folder>/<name>.vmdk?dc=<datacenter>&ds=<datastore>`. The connection (URL,
// user, trust) and the password travel separately, so the name holds no secret. No vim25 code
// is loaded here, so the registry and the CLI can route a string cheaply. Its connection, whose
// password is read from the environment at run time, is built here too.
import { InvalidArgsError } from "../../errors.ts";
import type { Placement } from "../../spec/placement.ts";
import type { VsphereConnection, VsphereSettings } from "../../contracts/vsphere-connection.ts";
import type { DatastoreFile } from "./datastore.ts";

export const VSPHERE_SCHEME = "vsphere:";

/** The disk `name` (file-name safe) of `workload` on a vsphere placement. */
export function vsphereDiskTarget(placement: Extract<Placement, { kind: "vsphere" }>, folderName: string, name: string): string {
  const folder = placement.folder ?? folderName;
  const params = new URLSearchParams({ dc: placement.datacenter, ds: placement.datastore });
  return `vsphere://${new URL(placement.url).host}/${folder}/${name}.vmdk?${params.toString()}`;
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

/** The vCenter connection of a vsphere placement, without its password. */
export function vsphereSettingsOf(placement: Extract<Placement, { kind: "vsphere" }>): VsphereSettings {
  return {
    url: placement.url,
    username: placement.username,
    insecure: placement.insecure,
    passwordEnv: placement.passwordEnv,
    ...(placement.caPem === undefined ? {} : { caPem: placement.caPem }),
    ...(placement.thumbprint === undefined ? {} : { thumbprint: placement.thumbprint }),
  };
}
