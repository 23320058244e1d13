// A vSphere disk as a source wherever a disk is read (a Workload's spec source, the CLI's convert):
//   vsphere://<host>/vm/<name or moref>?dc=<datacenter>&disk=<index|label>   a VM's disk
//   vsphere://<host>/<folder>/<disk>.vmdk?dc=<datacenter>&ds=<datastore>     a datastore disk
// A running VM is read through a snapshot that freezes its files (point-in-time.ts) and is
// removed when the source closes; a stopped VM or a datastore disk is read as it is. The
// connection comes from the environment, as for `portable vsphere`: VSPHERE_USERNAME, the password
// in VSPHERE_PASSWORD, and the trust settings VSPHERE_CA_FILE, VSPHERE_THUMBPRINT or
// VSPHERE_INSECURE=1; the SDK URL is VSPHERE_URL when it names this host, else https://<host>/sdk.
import { readFile } from "node:fs/promises";
import { InvalidArgsError } from "../../errors.ts";
import type { DiskSource } from "../../disk/types.ts";
import type { VsphereClient } from "./client.ts";
import type { VsphereConnection } from "../../contracts/vsphere-connection.ts";
import { connectVsphere, openVsphereDisk } from "./disk-url.ts";
import { DEFAULT_VSPHERE_PASSWORD_ENV, isVsphereDiskUrl } from "./location.ts";

export interface VsphereVmDiskUrl {
  readonly host: string;
  readonly datacenter: string;
  /** The VM's inventory name (or path), or its managed object id (vm-…). */
  readonly vm: string;
  /** The disk: its index among the VM's disks, or its label ("Hard disk 1"). */
  readonly disk: number | string;
}

/** Parses the VM form; undefined for anything else (a datastore disk URL among them). */
export function parseVsphereVmDiskUrl(text: string): VsphereVmDiskUrl | undefined {
  if (!isVsphereDiskUrl(text)) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  const path = decodeURIComponent(url.pathname.replace(/^\/+/, ""));
  if (!path.startsWith("vm/")) return undefined;
  const datacenter = url.searchParams.get("dc");
  const disk = url.searchParams.get("disk");
  const vm = path.slice("vm/".length);
  if (datacenter === null || disk === null || vm === "" || url.username !== "" || url.password !== "") {
    throw new InvalidArgsError("VSPHERE_SOURCE_URL", `"${text}" must look like vsphere://host/vm/<name>?dc=<datacenter>&disk=<index|label> (no credentials)`);
  }
  return { host: url.host, datacenter, vm, disk: /^\d+$/.test(disk) ? Number(disk) : disk };
}

/** The connection to `host` from the environment (see the header). */
export async function vsphereConnectionForHost(host: string, env: NodeJS.ProcessEnv = process.env): Promise<VsphereConnection> {
  const configured = env.VSPHERE_URL;
  const url = configured !== undefined && new URL(configured).host === host ? configured : `https://${host}/sdk`;
  const username = env.VSPHERE_USERNAME;
  const password = env[DEFAULT_VSPHERE_PASSWORD_ENV];
  if (username === undefined || username === "" || password === undefined || password === "") {
    throw new InvalidArgsError("VSPHERE_CONNECTION_MISSING", `reading a disk on ${host} needs VSPHERE_USERNAME and ${DEFAULT_VSPHERE_PASSWORD_ENV} in the environment`);
  }
  const caFile = env.VSPHERE_CA_FILE;
  return {
    url,
    username,
    password,
    insecure: env.VSPHERE_INSECURE === "1" || env.VSPHERE_INSECURE === "true",
    ...(caFile === undefined || caFile === "" ? {} : { caPem: await readFile(caFile, "utf8") }),
    ...(env.VSPHERE_THUMBPRINT === undefined || env.VSPHERE_THUMBPRINT === "" ? {} : { thumbprint: env.VSPHERE_THUMBPRINT }),
  };
}

/** Opens either vsphere:// form as a source; closing it logs out (and removes a snapshot taken). */
export async function openVsphereSource(text: string, env: NodeJS.ProcessEnv = process.env): Promise<DiskSource> {
  const vmDisk = parseVsphereVmDiskUrl(text);
  const host = vmDisk?.host ?? new URL(text).host;
  const client = await connectVsphere(await vsphereConnectionForHost(host, env));
  try {
    const opened = vmDisk === undefined ? await plain(openVsphereDisk(client, text)) : await openVmDisk(client, vmDisk);
    const { source } = opened;
    return {
      ...source,
      extents: () => source.extents(),
      read: (offsetBytes, lengthBytes, into) => source.read(offsetBytes, lengthBytes, into),
      close: async () => {
        try {
          await opened.close();
        } finally {
          await client.logout().catch(() => {});
        }
      },
    };
  } catch (error) {
    await client.logout().catch(() => {});
    throw error;
  }
}

interface Opened {
  readonly source: DiskSource;
  close(): Promise<void>;
}

async function plain(opening: Promise<DiskSource>): Promise<Opened> {
  const source = await opening;
  return { source, close: () => source.close() };
}

async function openVmDisk(client: VsphereClient, where: VsphereVmDiskUrl): Promise<Opened> {
  const { findVm } = await import("./inventory.ts");
  const { datacenterOf, pickDisk, powerState, readVmConfig } = await import("./vm.ts");
  const { moRef } = await import("./xml.ts");
  const vm = /^vm-\d+$/.test(where.vm) ? moRef("VirtualMachine", where.vm) : await findVm(client, where.vm);
  if ((await powerState(client, vm)) === "poweredOff") {
    const { openDatastoreDisk, parseDatastorePath } = await import("./datastore.ts");
    const disk = pickDisk(await readVmConfig(client, vm), where.disk);
    return plain(openDatastoreDisk(client, parseDatastorePath(disk.fileName, await datacenterOf(client, vm))));
  }
  // A running VM keeps writing: read the files a snapshot froze; closing removes the snapshot.
  const { vspherePointInTime } = await import("./point-in-time.ts");
  const frozen = await vspherePointInTime(client, vm, where.disk);
  return { source: frozen.source, close: () => frozen.release() };
}
