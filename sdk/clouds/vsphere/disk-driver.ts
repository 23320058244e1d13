// The vSphere platform's disks (contracts/disk-driver.ts): flat VMDKs on a datastore, named by
// location.ts. A datastore PUT replaces a whole file (no writes at an offset), so every copy is
// a whole disk; the placement layer still keeps its manifest, so moving it away is
// incremental elsewhere. Each call logs in with the context's connection and out again.
import { PortableError } from "../../errors.ts";
import type { DiskContext, DiskDriver } from "../../contracts/disk-driver.ts";
import type { VsphereConnection } from "../../contracts/vsphere-connection.ts";
import type { VsphereClient } from "./client.ts";
import { connectVsphere, copyToVsphereDisk, deleteVsphereDisk, openVsphereDisk } from "./disk-url.ts";

function connectionOf(context: DiskContext, target: string): VsphereConnection {
  if (context.vsphere === undefined) throw new PortableError("VSPHERE_CONNECTION_MISSING", `${target}: a vSphere disk needs the vCenter connection and its password: set VSPHERE_PASSWORD (or the variable the placement names in passwordEnv) for the program and the engine`);
  return context.vsphere;
}

async function withClient<T>(context: DiskContext, target: string, fn: (client: VsphereClient) => Promise<T>): Promise<T> {
  const client = await connectVsphere(connectionOf(context, target));
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => {});
  }
}

export const vsphereDiskDriver: DiskDriver = {
  kind: "vsphere",
  writes: "whole-disk",
  liveDisk: true,
  connection: "vsphere",
  writeWhole(source, target, context, onProgress) {
    return withClient(context, target, (client) => copyToVsphereDisk(client, source, target, onProgress === undefined ? {} : { progress: onProgress }));
  },
  async openLive(target, context) {
    const client = await connectVsphere(connectionOf(context, target));
    try {
      const source = await openVsphereDisk(client, target);
      return { ...source, extents: () => source.extents(), read: (o, l, into) => source.read(o, l, into), close: async () => { await source.close(); await client.logout().catch(() => {}); } };
    } catch (error) {
      await client.logout().catch(() => {});
      throw error;
    }
  },
  async remove(target, _committed, _virtualSizeBytes, context) {
    await withClient(context, target, (client) => deleteVsphereDisk(client, target, { removeEmptyFolder: true }));
  },
};
