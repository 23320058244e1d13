// Inventory lookups by name or path: datacenter, datastore, resource pool, folder, network,
// host, VM. Paths are vSphere inventory paths ("DC0/host/DC0_C0/Resources"), in which a name
// holding "/" is written "%2f" (and "%" as "%25"), as vCenter and govc escape them.
import { CloudError, InvalidArgsError } from "../../errors.ts";
import type { VsphereClient } from "./client.ts";
import { containerContents, getProperties } from "./property-collector.ts";
import { expect, xs, type MoRef } from "./xml.ts";

/** Escapes one inventory path element. */
export function escapeInventoryName(name: string): string {
  return name.replace(/%/g, "%25").replace(/\//g, "%2f");
}

export function unescapeInventoryName(name: string): string {
  return name.replace(/%2f/gi, "/").replace(/%25/g, "%");
}

/** SearchIndex.FindByInventoryPath: the object at a path, or undefined. */
export async function findByInventoryPath(client: VsphereClient, path: string): Promise<MoRef | undefined> {
  const value = await client.call("FindByInventoryPath", client.serviceContent.searchIndex, { inventoryPath: path });
  return value === undefined ? undefined : expect(xs.ref(), value, `object at ${path}`);
}

async function mustFind(client: VsphereClient, path: string, kind: string, code: string): Promise<MoRef> {
  const ref = await findByInventoryPath(client, path);
  if (ref === undefined) throw new CloudError(code, `vsphere: no ${kind} at inventory path "${path}"`, { context: { path } });
  return ref;
}

export interface Datacenter {
  readonly ref: MoRef;
  readonly name: string;
  /** The inventory path prefix of everything inside, i.e. the escaped name (or folder/name). */
  readonly path: string;
  readonly vmFolder: MoRef;
  readonly hostFolder: MoRef;
  readonly datastoreFolder: MoRef;
  readonly networkFolder: MoRef;
}

/**
 * A datacenter by inventory path ("DC0", "Folder/DC1"); without one, the only datacenter, so
 * that single-datacenter setups need no name (as govc does).
 */
export async function findDatacenter(client: VsphereClient, path?: string): Promise<Datacenter> {
  let ref: MoRef;
  let dcPath: string;
  if (path === undefined) {
    const all = await containerContents(client, client.serviceContent.rootFolder, "Datacenter", ["name"]);
    if (all.length !== 1 || all[0] === undefined) {
      throw new InvalidArgsError("VSPHERE_DATACENTER_AMBIGUOUS", `vsphere: ${all.length} datacenters exist; name one`, { context: { datacenters: all.length } });
    }
    ref = all[0].obj;
    dcPath = escapeInventoryName(expect(xs.string(), all[0].props.get("name"), "datacenter name"));
  } else {
    ref = await mustFind(client, path, "datacenter", "VSPHERE_DATACENTER_NOT_FOUND");
    if (ref.type !== "Datacenter") throw new InvalidArgsError("VSPHERE_DATACENTER_NOT_FOUND", `vsphere: "${path}" is a ${ref.type}, not a datacenter`);
    dcPath = path;
  }
  const props = await getProperties(client, ref, ["name", "vmFolder", "hostFolder", "datastoreFolder", "networkFolder"]);
  return {
    ref,
    name: expect(xs.string(), props.get("name"), "datacenter name"),
    path: dcPath,
    vmFolder: expect(xs.ref(), props.get("vmFolder"), "vmFolder"),
    hostFolder: expect(xs.ref(), props.get("hostFolder"), "hostFolder"),
    datastoreFolder: expect(xs.ref(), props.get("datastoreFolder"), "datastoreFolder"),
    networkFolder: expect(xs.ref(), props.get("networkFolder"), "networkFolder"),
  };
}

export function findDatastore(client: VsphereClient, dc: Datacenter, name: string): Promise<MoRef> {
  return mustFind(client, `${dc.path}/datastore/${escapeInventoryName(name)}`, "datastore", "VSPHERE_DATASTORE_NOT_FOUND");
}

export function findNetwork(client: VsphereClient, dc: Datacenter, name: string): Promise<MoRef> {
  return mustFind(client, `${dc.path}/network/${escapeInventoryName(name)}`, "network", "VSPHERE_NETWORK_NOT_FOUND");
}

/** A folder for VMs, by path below the datacenter's vm folder; the vm folder itself without one. */
export async function findFolder(client: VsphereClient, dc: Datacenter, path?: string): Promise<MoRef> {
  if (path === undefined || path === "") return dc.vmFolder;
  return mustFind(client, `${dc.path}/vm/${path}`, "folder", "VSPHERE_FOLDER_NOT_FOUND");
}

/** A host by path below the host folder ("DC0_C0/DC0_C0_H0", or "DC0_H0" for a standalone host). */
export function findHost(client: VsphereClient, dc: Datacenter, path: string): Promise<MoRef> {
  return mustFind(client, `${dc.path}/host/${path}`, "host", "VSPHERE_HOST_NOT_FOUND");
}

/**
 * A resource pool by path below the host folder ("DC0_C0/Resources", "DC0_C0/Resources/pool1");
 * without one, the root pool of the first cluster or host (alphabetically), so a lab with one
 * cluster needs no configuration.
 */
export async function findResourcePool(client: VsphereClient, dc: Datacenter, path?: string): Promise<MoRef> {
  if (path !== undefined && path !== "") return mustFind(client, `${dc.path}/host/${path}`, "resource pool", "VSPHERE_RESOURCE_POOL_NOT_FOUND");
  const computes = await containerContents(client, dc.hostFolder, "ComputeResource", ["name", "resourcePool"]);
  const sorted = computes
    .map((c) => ({ name: expect(xs.string(), c.props.get("name"), "compute resource name"), pool: c.props.get("resourcePool") }))
    .filter((c) => c.pool !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name));
  const first = sorted[0];
  if (first === undefined) throw new CloudError("VSPHERE_RESOURCE_POOL_NOT_FOUND", `vsphere: datacenter ${dc.name} has no cluster or host with a resource pool`);
  return expect(xs.ref(), first.pool, "resourcePool");
}

export interface VmSummary {
  readonly ref: MoRef;
  readonly name: string;
  readonly powerState: string;
  readonly numCpu?: number;
  readonly memoryMiB?: number;
  readonly guestId?: string;
  readonly template: boolean;
}

const optional = <T>(fn: () => T): T | undefined => {
  try {
    return fn();
  } catch {
    return undefined;
  }
};

/** Every VM below a folder (default: the whole inventory), with a few summary fields. */
export async function listVms(client: VsphereClient, options: { readonly container?: MoRef; readonly maxObjects?: number } = {}): Promise<VmSummary[]> {
  const contents = await containerContents(
    client,
    options.container ?? client.serviceContent.rootFolder,
    "VirtualMachine",
    ["name", "runtime.powerState", "config.hardware.numCPU", "config.hardware.memoryMB", "config.guestId", "config.template"],
    options.maxObjects === undefined ? {} : { maxObjects: options.maxObjects },
  );
  return contents
    .map((c) => {
      const p = c.props;
      const numCpu = optional(() => expect(xs.int(), p.get("config.hardware.numCPU"), "numCPU"));
      const memoryMiB = optional(() => expect(xs.int(), p.get("config.hardware.memoryMB"), "memoryMB"));
      const guestId = optional(() => expect(xs.string(), p.get("config.guestId"), "guestId"));
      return {
        ref: c.obj,
        name: expect(xs.string(), p.get("name"), "VM name"),
        powerState: expect(xs.string(), p.get("runtime.powerState"), "powerState"),
        ...(numCpu === undefined ? {} : { numCpu }),
        ...(memoryMiB === undefined ? {} : { memoryMiB }),
        ...(guestId === undefined ? {} : { guestId }),
        template: optional(() => expect(xs.bool(), p.get("config.template"), "template")) ?? false,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** A VM by inventory path ("DC0/vm/web-1") or, failing that, by exact name anywhere. */
export async function findVm(client: VsphereClient, nameOrPath: string): Promise<MoRef> {
  if (nameOrPath.includes("/")) {
    const ref = await findByInventoryPath(client, nameOrPath);
    if (ref !== undefined && ref.type === "VirtualMachine") return ref;
  }
  const matches = (await listVms(client)).filter((vm) => vm.name === nameOrPath);
  if (matches.length === 0 || matches[0] === undefined) throw new CloudError("VSPHERE_VM_NOT_FOUND", `vsphere: no VM named "${nameOrPath}"`, { context: { name: nameOrPath } });
  if (matches.length > 1) {
    throw new InvalidArgsError("VSPHERE_VM_AMBIGUOUS", `vsphere: ${matches.length} VMs are named "${nameOrPath}"; give an inventory path`, { context: { name: nameOrPath } });
  }
  return matches[0].ref;
}
