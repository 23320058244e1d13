// The vSphere platform's disks (contracts/disk-driver.ts): VMDKs on a datastore, named by
// location.ts, kept as a chain of layers (a flat base and ESXi delta disks, replica-target.ts),
// so a pass sends only the blocks that changed. Each call logs in with the context's connection
// and out again.
import { posix } from "node:path";
import { PortableError } from "../../errors.ts";
import type { DiskContext, DiskDriver } from "../../contracts/disk-driver.ts";
import type { VsphereConnection } from "../../contracts/vsphere-connection.ts";
import { connectVsphere, deleteVsphereDisk, openVsphereDisk } from "./disk-url.ts";
import { parseVsphereDiskUrl } from "./location.ts";
import { vsphereReplicaTarget } from "./replica-target.ts";

function connectionOf(context: DiskContext, target: string): VsphereConnection {
  if (context.vsphere === undefined) throw new PortableError("VSPHERE_CONNECTION_MISSING", `${target}: a vSphere disk needs the vCenter connection and its password: set VSPHERE_PASSWORD (or the variable the placement names in passwordEnv) for the program and the engine`);
  return context.vsphere;
}

export const vsphereDiskDriver: DiskDriver = {
  kind: "vsphere",
  liveDisk: true,
  connection: "vsphere",
  async openReplicaTarget(target, virtualSizeBytes, context) {
    const client = await connectVsphere(connectionOf(context, target));
    return {
      target: vsphereReplicaTarget({ client, file: parseVsphereDiskUrl(target).file, virtualSizeBytes }),
      close: () => void client.logout().catch(() => {}),
    };
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
  // Files in the VM's folder on the datastore, beside its disks. Without a connection (a caller
  // that has no vCenter password), the state stays in the caller's state folder.
  async stateStore(target, context) {
    if (context.vsphere === undefined) return undefined;
    const { file } = parseVsphereDiskUrl(target);
    const { vsphereStateStore } = await import("./state-store.ts");
    const folder = posix.dirname(file.path);
    return vsphereStateStore(context.vsphere, { ...file, path: folder === "." ? "" : folder });
  },
  async remove(target, _committed, _virtualSizeBytes, context) {
    const client = await connectVsphere(connectionOf(context, target));
    try {
      await deleteVsphereDisk(client, target, { removeEmptyFolder: true });
    } finally {
      await client.logout().catch(() => {});
    }
  },
};
