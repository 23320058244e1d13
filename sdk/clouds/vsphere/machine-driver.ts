// The vSphere platform's machines (machine-driver.ts): VMs created through our vim25 client on
// disks already on a datastore. Each call logs in with the placement's connection and out again.
import { PortableError } from "../../errors.ts";
import type { Placement } from "../../spec/placement.ts";
import type { MachineDriver, MachineRequest } from "../../contracts/machine-driver.ts";
import type { VsphereClient } from "./client.ts";
import { connectVsphere } from "./disk-url.ts";
import { datastorePathOf } from "./datastore.ts";
import { parseVsphereDiskUrl } from "./location.ts";
import { createVm, destroyVm, findVmFor, powerOffVm, powerOnVm, powerState, readVmConfig, type VmPlacement } from "./vm.ts";
import { moRef } from "./xml.ts";

type VspherePlacement = Extract<Placement, { kind: "vsphere" }>;

function vspherePlacement(request: MachineRequest): VspherePlacement {
  if (request.placement.kind !== "vsphere") throw new PortableError("MACHINE_DRIVER_MISMATCH", `the vSphere machine driver was given a ${request.placement.kind} placement`);
  return request.placement;
}

async function withVsphere<T>(request: MachineRequest, fn: (client: VsphereClient) => Promise<T>): Promise<T> {
  if (request.vsphere === undefined) throw new PortableError("VSPHERE_CONNECTION_MISSING", "a vSphere machine needs the vCenter connection and its password: set VSPHERE_PASSWORD (or the variable the placement names in passwordEnv) for the program and the engine");
  const client = await connectVsphere(request.vsphere);
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => {});
  }
}

const vmRef = (machineId: string) => moRef("VirtualMachine", machineId);

function vmPlacementOf(placement: VspherePlacement, request: MachineRequest): VmPlacement {
  return {
    datacenter: placement.datacenter,
    datastore: placement.datastore,
    ...(placement.resourcePool === undefined ? {} : { resourcePool: placement.resourcePool }),
    ...(placement.host === undefined ? {} : { host: placement.host }),
    diskFiles: Object.fromEntries(request.disks.map((d) => [d.id, d.location])),
    networks: placement.networks,
  };
}

export const vsphereMachineDriver: MachineDriver = {
  create(request) {
    const placement = vspherePlacement(request);
    return withVsphere(request, async (client) => {
      const ref = await createVm(client, request.workload, vmPlacementOf(placement, request));
      const started = performance.now();
      if (placement.powerOn) await powerOnVm(client, ref);
      const running = placement.powerOn && (await powerState(client, ref)) === "poweredOn";
      return { kind: "vsphere" as const, machineId: ref.value, running, ...(placement.powerOn ? { bootSeconds: (performance.now() - started) / 1000 } : {}) };
    });
  },
  stop(request, machineId, gracefulTimeoutMs) {
    vspherePlacement(request);
    return withVsphere(request, async (client) => {
      const how = await powerOffVm(client, vmRef(machineId), { guestShutdownTimeoutMs: gracefulTimeoutMs });
      return { graceful: how !== "hard" };
    });
  },
  isRunning(request, machineId) {
    vspherePlacement(request);
    return withVsphere(request, async (client) => (await powerState(client, vmRef(machineId))) === "poweredOn");
  },
  async start(request, machineId) {
    vspherePlacement(request);
    await withVsphere(request, (client) => powerOnVm(client, vmRef(machineId)));
  },
  async destroy(request, machineId) {
    vspherePlacement(request);
    await withVsphere(request, async (client) => {
      await destroyVm(client, vmRef(machineId), { keepDisks: true }).catch((error: unknown) => {
        if ((error as PortableError).code !== "VSPHERE_NOT_FOUND" && !/ManagedObjectNotFound/.test(String(error))) throw error;
      });
    });
  },
  wantsRunning: (placement) => placement.kind === "vsphere" && placement.powerOn,
  /**
   * A VM of the workload's name where createVm() puts it, and only if every disk it has is one of
   * this workload's disks on the placement: a VM an interrupted cutover created. Anybody else's VM
   * of that name is not touched (the create then fails with VSPHERE_DUPLICATE_NAME).
   */
  find(request, name) {
    const placement = vspherePlacement(request);
    return withVsphere(request, async (client) => {
      const ref = await findVmFor(client, request.workload, vmPlacementOf(placement, request), name);
      if (ref === undefined) return undefined;
      const ours = new Set(request.disks.map((d) => datastorePathOf(parseVsphereDiskUrl(d.target).file)));
      const disks = (await readVmConfig(client, ref)).disks;
      return disks.length > 0 && disks.every((d) => ours.has(d.fileName)) ? ref.value : undefined;
    });
  },
};
