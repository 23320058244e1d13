// VM lifecycle from a Workload: CreateVM_Task with CPUs, memory, firmware, disks attached from
// datastore files (a controller per bus) and NICs on named networks; reconfigure; power on; a
// guest shutdown with a timeout, then a hard power-off; snapshots, so a running VM's disks are
// read from frozen files; destroy.
//
// A create that fails leaves nothing: a VM that came to exist is detached from its disks and
// destroyed, and the files CreateVM wrote (.vmx, .nvram, vmware.log) are deleted. The disks the
// caller attached are never deleted by cleanup.
import { CloudError, InvalidArgsError, isPortableError, NotCapableError } from "../../errors.ts";
import { hardwareVersionFor } from "../../ovf/ovf-writer.ts";
import { controllersFor } from "../../spec/mappings/disk-bus.ts";
import { vsphereFirmwareFor } from "../../spec/mappings/firmware.ts";
import { vmwareGuestIdFor } from "../../spec/mappings/guest-os.ts";
import { parseWorkload, type DiskBus, type Workload, type WorkloadInput } from "../../spec/workload.ts";
import type { VsphereClient } from "./client.ts";
import { escapeInventoryName, findDatacenter, findDatastore, findFolder, findHost, findNetwork, findResourcePool, type Datacenter } from "./inventory.ts";
import { getProperties, runTask, waitForTask, watchObject, type TaskOptions } from "./property-collector.ts";
import { expect, textOf, xs, xsiType, type MoRef, type SoapInput } from "./xml.ts";

/** How long a CreateVM, Reconfigure, power or Destroy task may run. Real ones take seconds. */
export const VM_TASK_TIMEOUT_MS = 10 * 60_000;
/** How long cleanup waits for a timed-out CreateVM task to end before giving up on it. */
export const CREATE_CLEANUP_WAIT_MS = 60_000;
/** A guest OS usually shuts down within a minute or two; then the power is cut. */
export const DEFAULT_GUEST_SHUTDOWN_TIMEOUT_MS = 120_000;

/** SCSI unit 7 is the controller itself; 15 devices per controller, up to 4 controllers. */
const SCSI_UNITS = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15];
const MAX_CONTROLLERS = 4;
/** vSphere's default IDE controllers (keys 200 and 201) exist on every new VM, 2 devices each. */
const IDE_CONTROLLER_KEYS = [200, 201];
const SATA_UNITS = 30;
const NVME_UNITS = 15;

const CONTROLLER_TYPE: Readonly<Record<Exclude<DiskBus, "ide">, string>> = {
  scsi: "ParaVirtualSCSIController",
  sata: "VirtualAHCIController",
  nvme: "VirtualNVMEController",
};

const NIC_TYPES: Readonly<Record<string, string>> = {
  vmxnet3: "VirtualVmxnet3",
  vmxnet2: "VirtualVmxnet2",
  e1000: "VirtualE1000",
  e1000e: "VirtualE1000e",
  pcnet32: "VirtualPCNet32",
};

export interface VmPlacement {
  /** Datacenter inventory path; the only datacenter when omitted. */
  readonly datacenter?: string;
  /** Datastore for the VM's own files (.vmx, .nvram, logs) and for blank disks. */
  readonly datastore: string;
  /** Resource pool path below the host folder, e.g. "DC0_C0/Resources". */
  readonly resourcePool?: string;
  /** Folder path below the datacenter's vm folder. */
  readonly folder?: string;
  /** Host path below the host folder, when the VM must land on one host. */
  readonly host?: string;
  /**
   * Existing disk files by Workload disk id, as datastore paths ("[ds] web/disk0.vmdk"). A disk
   * without one is created blank (thin) beside the VM.
   */
  readonly diskFiles?: Readonly<Record<string, string>>;
  /** Workload network name → vSphere network name, when they differ. */
  readonly networks?: Readonly<Record<string, string>>;
}

export interface CreateVmOptions extends TaskOptions {
  /** VM name; the Workload's name when omitted. */
  readonly name?: string;
}

export interface ResolvedPlacement {
  readonly dc: Datacenter;
  readonly datastore: MoRef;
  readonly datastoreName: string;
  readonly pool: MoRef;
  readonly folder: MoRef;
  readonly host?: MoRef;
  readonly networks: ReadonlyMap<string, { readonly ref: MoRef; readonly name: string }>;
}

export async function resolvePlacement(client: VsphereClient, workload: Workload, placement: VmPlacement): Promise<ResolvedPlacement> {
  const dc = await findDatacenter(client, placement.datacenter);
  const networks = new Map<string, { ref: MoRef; name: string }>();
  for (const nic of workload.nics) {
    const name = placement.networks?.[nic.network] ?? nic.network;
    if (!networks.has(nic.network)) networks.set(nic.network, { ref: await findNetwork(client, dc, name), name });
  }
  const host = placement.host === undefined ? undefined : await findHost(client, dc, placement.host);
  return {
    dc,
    datastore: await findDatastore(client, dc, placement.datastore),
    datastoreName: placement.datastore,
    pool: await findResourcePool(client, dc, placement.resourcePool),
    folder: await findFolder(client, dc, placement.folder),
    ...(host === undefined ? {} : { host }),
    networks,
  };
}

/** The VirtualMachineConfigSpec for a Workload, fields in WSDL order. */
export function configSpecFor(workload: Workload, name: string, placement: ResolvedPlacement, diskFiles: Readonly<Record<string, string>> = {}): SoapInput {
  controllersFor("vsphere", workload.disks);
  const firmware = vsphereFirmwareFor(workload.firmware);
  const deviceChange: SoapInput[] = [];
  const controllers = new Map<string, { key: number; units: number[] }>();
  let nextKey = -100;
  const ideUsed = [0, 0];

  function controllerFor(bus: Exclude<DiskBus, "ide">): { key: number; unit: number } {
    const units = bus === "scsi" ? SCSI_UNITS : Array.from({ length: bus === "sata" ? SATA_UNITS : NVME_UNITS }, (_, i) => i);
    for (let busNumber = 0; busNumber < MAX_CONTROLLERS; busNumber++) {
      const id = `${bus}:${busNumber}`;
      let controller = controllers.get(id);
      if (controller === undefined) {
        controller = { key: nextKey--, units: [...units] };
        controllers.set(id, controller);
        const device: Record<string, SoapInput> = { $type: CONTROLLER_TYPE[bus], key: controller.key, busNumber };
        if (bus === "scsi") device.sharedBus = "noSharing";
        deviceChange.push({ operation: "add", device });
      }
      const unit = controller.units.shift();
      if (unit !== undefined) return { key: controller.key, unit };
    }
    throw new NotCapableError("VSPHERE_TOO_MANY_DISKS", `vsphere: more ${bus} disks than ${MAX_CONTROLLERS} controllers hold`, { context: { bus } });
  }

  workload.disks.forEach((disk, index) => {
    let placementOnBus: { key: number; unit: number };
    if (disk.bus === "ide") {
      const controller = ideUsed[0]! < 2 ? 0 : 1;
      placementOnBus = { key: IDE_CONTROLLER_KEYS[controller]!, unit: ideUsed[controller]!++ };
    } else placementOnBus = controllerFor(disk.bus);
    const file = diskFiles[disk.id];
    deviceChange.push({
      operation: "add",
      fileOperation: file === undefined ? "create" : undefined,
      device: {
        $type: "VirtualDisk",
        key: -1000 - index,
        backing: {
          $type: "VirtualDiskFlatVer2BackingInfo",
          fileName: file ?? `[${placement.datastoreName}]`,
          diskMode: "persistent",
          thinProvisioned: true,
        },
        controllerKey: placementOnBus.key,
        unitNumber: placementOnBus.unit,
        capacityInKB: Math.ceil(disk.sizeBytes / 1024),
        capacityInBytes: disk.sizeBytes,
      },
    });
  });

  workload.nics.forEach((nic, index) => {
    const network = placement.networks.get(nic.network);
    if (network === undefined) throw new InvalidArgsError("VSPHERE_NETWORK_NOT_FOUND", `vsphere: network "${nic.network}" was not resolved`);
    const model = (nic.model ?? "vmxnet3").toLowerCase();
    const type = NIC_TYPES[model];
    if (type === undefined) throw new NotCapableError("VSPHERE_NIC_MODEL", `vsphere: NIC model "${nic.model}" has no vSphere device (use ${Object.keys(NIC_TYPES).join(", ")})`);
    deviceChange.push({
      operation: "add",
      device: {
        $type: type,
        key: -2000 - index,
        backing: { $type: "VirtualEthernetCardNetworkBackingInfo", deviceName: network.name, network: network.ref },
        connectable: { startConnected: true, allowGuestControl: true, connected: false },
        addressType: nic.macPolicy.kind === "static" ? "manual" : "generated",
        macAddress: nic.macPolicy.kind === "static" ? nic.macPolicy.address.toLowerCase() : undefined,
      },
    });
  });

  if (firmware.vtpm) deviceChange.push({ operation: "add", device: { $type: "VirtualTPM", key: -3000 } });

  return {
    name,
    version: hardwareVersionFor(workload),
    guestId: vmwareGuestIdFor(workload.guestOs),
    files: { vmPathName: `[${placement.datastoreName}]` },
    numCPUs: workload.cpu.sockets * workload.cpu.coresPerSocket,
    numCoresPerSocket: workload.cpu.coresPerSocket,
    memoryMB: workload.memoryMiB,
    deviceChange,
    bootOptions: firmware.firmware === "efi" ? { efiSecureBootEnabled: firmware.efiSecureBootEnabled } : undefined,
    firmware: firmware.firmware,
  };
}

/** The VM named `name` in the folder createVm() would put it in, if there is one. */
export async function findVmFor(client: VsphereClient, input: Workload | WorkloadInput, placement: VmPlacement, name: string): Promise<MoRef | undefined> {
  return findChild(client, (await resolvePlacement(client, parseWorkload(input), placement)).folder, name);
}

async function findChild(client: VsphereClient, folder: MoRef, name: string): Promise<MoRef | undefined> {
  const value = await client.call("FindChild", client.serviceContent.searchIndex, { entity: folder, name });
  return value === undefined ? undefined : expect(xs.ref(), value, "FindChild result");
}

/** Deletes the files CreateVM writes beside a VM, never its disks; absent files are fine. */
async function deleteVmFiles(client: VsphereClient, dc: Datacenter, datastore: string, name: string): Promise<void> {
  const fileManager = client.serviceContent.fileManager;
  if (fileManager === undefined) return;
  for (const file of [`${name}/${name}.vmx`, `${name}/${name}.nvram`, `${name}/vmware.log`]) {
    try {
      await runTask(client, "DeleteDatastoreFile_Task", fileManager, { name: `[${datastore}] ${file}`, datacenter: dc.ref }, { timeoutMs: 60_000 });
    } catch (err) {
      if (!(isPortableError(err) && ["VSPHERE_FILE_NOT_FOUND", "VSPHERE_NOT_FOUND"].includes(err.code))) throw err;
    }
  }
}

/**
 * Creates a VM from a Workload and returns its reference. On any failure nothing of it is left
 * (see the module comment), and the original error is thrown; if cleanup itself fails, the
 * error's context says `cleanup: "incomplete"`.
 */
export async function createVm(client: VsphereClient, input: Workload | WorkloadInput, placement: VmPlacement, options: CreateVmOptions = {}): Promise<MoRef> {
  const workload = parseWorkload(input);
  const name = options.name ?? workload.name;
  const resolved = await resolvePlacement(client, workload, placement);
  const spec = configSpecFor(workload, name, resolved, placement.diskFiles);
  if ((await findChild(client, resolved.folder, name)) !== undefined) {
    throw new CloudError("VSPHERE_DUPLICATE_NAME", `vsphere: a VM named "${name}" already exists in that folder`, { context: { name } });
  }
  const task = expect(xs.ref(), await client.call("CreateVM_Task", resolved.folder, { config: spec, pool: resolved.pool, host: resolved.host }), "CreateVM task");
  try {
    const result = await waitForTask(client, task, "CreateVM_Task", { timeoutMs: VM_TASK_TIMEOUT_MS, ...options });
    return expect(xs.ref(), result, "CreateVM result");
  } catch (err) {
    const cleanup = await cleanupFailedCreate(client, task, resolved, name, err).then(
      () => "done",
      () => "incomplete",
    );
    if (isPortableError(err)) {
      (err as { context: object }).context = { ...err.context, vm: name, cleanup };
      throw err;
    }
    throw new CloudError("VSPHERE_CREATE_VM_FAILED", `vsphere: creating VM "${name}" failed: ${String(err)}`, { context: { vm: name, cleanup }, cause: err });
  }
}

async function cleanupFailedCreate(client: VsphereClient, task: MoRef, resolved: ResolvedPlacement, name: string, err: unknown): Promise<void> {
  if (isPortableError(err) && err.code === "VSPHERE_TASK_TIMEOUT") {
    // The task still runs. It is not cancelled: CreateVM is rarely cancelable, and a cancel
    // that only marks the task (as vcsim's does) would let the VM appear after cleanup. Its
    // end is awaited instead, and whatever it made is removed.
    await waitForTask(client, task, "CreateVM_Task", { timeoutMs: CREATE_CLEANUP_WAIT_MS }).catch((e: unknown) => {
      if (isPortableError(e) && e.code === "VSPHERE_TASK_TIMEOUT") throw e;
    });
  }
  const vm = await findChild(client, resolved.folder, name);
  if (vm !== undefined) await destroyVm(client, vm, { keepDisks: true });
  else await deleteVmFiles(client, resolved.dc, resolved.datastoreName, name);
}

/** ReconfigVM_Task with a raw VirtualMachineConfigSpec (fields in WSDL order). */
export async function reconfigureVm(client: VsphereClient, vm: MoRef, spec: SoapInput, options: TaskOptions = {}): Promise<void> {
  await runTask(client, "ReconfigVM_Task", vm, { spec }, { timeoutMs: VM_TASK_TIMEOUT_MS, ...options });
}

/** Changes CPUs and memory (the usual resize). */
export function resizeVm(client: VsphereClient, vm: MoRef, change: { readonly cpus?: number; readonly coresPerSocket?: number; readonly memoryMiB?: number }, options: TaskOptions = {}): Promise<void> {
  return reconfigureVm(client, vm, { numCPUs: change.cpus, numCoresPerSocket: change.coresPerSocket, memoryMB: change.memoryMiB }, options);
}

export async function powerState(client: VsphereClient, vm: MoRef): Promise<string> {
  return expect(xs.string(), (await getProperties(client, vm, ["runtime.powerState"])).get("runtime.powerState"), "powerState");
}

/** Powers a VM on; a VM already on is left as is. */
export async function powerOnVm(client: VsphereClient, vm: MoRef, options: TaskOptions = {}): Promise<void> {
  if ((await powerState(client, vm)) === "poweredOn") return;
  await runTask(client, "PowerOnVM_Task", vm, {}, { timeoutMs: VM_TASK_TIMEOUT_MS, ...options });
}

export interface PowerOffOptions extends TaskOptions {
  /** How long the guest may take to shut down before the power is cut. @default 120 s */
  readonly guestShutdownTimeoutMs?: number;
}

/**
 * Asks the guest to shut down (VMware Tools) and waits up to `guestShutdownTimeoutMs`; if the
 * guest cannot be asked or does not stop in time, cuts the power. Returns how it stopped.
 */
export async function powerOffVm(client: VsphereClient, vm: MoRef, options: PowerOffOptions = {}): Promise<"already" | "guest" | "hard"> {
  if ((await powerState(client, vm)) === "poweredOff") return "already";
  const timeoutMs = options.guestShutdownTimeoutMs ?? DEFAULT_GUEST_SHUTDOWN_TIMEOUT_MS;
  let asked = false;
  try {
    await client.call("ShutdownGuest", vm);
    asked = true;
  } catch (err) {
    // No tools, or tools not running: a guest shutdown is impossible, not an error.
    if (!isPortableError(err) || !["VSPHERE_INVALID_STATE", "VSPHERE_FAULT", "VSPHERE_NOT_SUPPORTED"].includes(err.code)) throw err;
  }
  if (asked) {
    try {
      await watchObject(client, vm, ["runtime.powerState"], (p) => (textOf(p.get("runtime.powerState")) === "poweredOff" ? true : undefined), {
        timeoutMs,
        what: `guest shutdown of ${vm.value}`,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      return "guest";
    } catch (err) {
      if (!isPortableError(err) || err.code !== "VSPHERE_WAIT_TIMEOUT") throw err;
    }
  }
  try {
    await runTask(client, "PowerOffVM_Task", vm, {}, { timeoutMs: VM_TASK_TIMEOUT_MS, ...options });
  } catch (err) {
    // The guest may have stopped between our last look and the power-off.
    if (!(isPortableError(err) && err.code === "VSPHERE_INVALID_STATE" && (await powerState(client, vm)) === "poweredOff")) throw err;
  }
  return "hard";
}

export interface DestroyOptions extends PowerOffOptions {
  /** Detach the disks first, so Destroy deletes the VM but not its disk files. */
  readonly keepDisks?: boolean;
}

/** Powers a VM off (hard, at once) if needed and destroys it. */
export async function destroyVm(client: VsphereClient, vm: MoRef, options: DestroyOptions = {}): Promise<void> {
  await powerOffVm(client, vm, { guestShutdownTimeoutMs: 0, ...options });
  if (options.keepDisks === true) {
    const disks = (await readVmConfig(client, vm)).disks;
    if (disks.length > 0) {
      await reconfigureVm(client, vm, {
        deviceChange: disks.map((d) => ({ operation: "remove", device: d.raw })),
      });
    }
  }
  await runTask(client, "Destroy_Task", vm, {}, { timeoutMs: VM_TASK_TIMEOUT_MS, ...options });
}

export interface VmDisk {
  readonly key: number;
  readonly label: string;
  /** Datastore path of the disk's (current) file. */
  readonly fileName: string;
  readonly capacityBytes: number;
  readonly controllerKey: number;
  readonly unitNumber?: number;
  /** The Workload bus of its controller. */
  readonly bus: DiskBus | "unknown";
  /** The device as the server described it, for ReconfigVM edits and removals. */
  readonly raw: SoapInput;
}

export interface VmNic {
  readonly key: number;
  readonly type: string;
  readonly network: string;
  readonly macAddress?: string;
  readonly addressType?: string;
}

export interface VmConfig {
  readonly name: string;
  readonly cpus: number;
  readonly coresPerSocket: number;
  readonly memoryMiB: number;
  readonly firmware: string;
  readonly guestId: string;
  readonly version: string;
  readonly disks: readonly VmDisk[];
  readonly nics: readonly VmNic[];
}

const deviceSchema = xs.object({
  key: xs.int(),
  deviceInfo: xs.object({ label: xs.string() }).optional(),
  controllerKey: xs.int().optional(),
  unitNumber: xs.int().optional(),
  backing: xs.any().optional(),
});

const BUS_OF_CONTROLLER: Readonly<Record<string, DiskBus>> = {
  ParaVirtualSCSIController: "scsi",
  VirtualLsiLogicController: "scsi",
  VirtualLsiLogicSASController: "scsi",
  VirtualBusLogicController: "scsi",
  VirtualIDEController: "ide",
  VirtualAHCIController: "sata",
  VirtualNVMEController: "nvme",
};

const hardwareSchema = xs.object({ numCPU: xs.int(), numCoresPerSocket: xs.int().optional(), memoryMB: xs.int(), device: xs.many(xs.any()) });

/** Parses a VirtualMachineConfigInfo (a VM's or a snapshot's `config`). */
export function parseVmConfig(raw: unknown): VmConfig {
  const config = expect(
    xs.object({ name: xs.string(), guestId: xs.string().optional(), version: xs.string().optional(), firmware: xs.string().optional(), hardware: hardwareSchema }),
    raw,
    "VirtualMachineConfigInfo",
  );
  const devices = config.hardware.device.map((d) => ({ type: xsiType(d) ?? "VirtualDevice", device: expect(deviceSchema, d, "VirtualDevice"), raw: d as SoapInput }));
  const controllerTypes = new Map(devices.map((d) => [d.device.key, d.type]));
  const disks: VmDisk[] = devices
    .filter((d) => d.type === "VirtualDisk")
    .map((d) => {
      const disk = expect(xs.object({ capacityInKB: xs.int(), capacityInBytes: xs.int().optional(), backing: xs.object({ fileName: xs.string() }) }), d.raw, "VirtualDisk");
      const controller = controllerTypes.get(d.device.controllerKey ?? -1);
      return {
        key: d.device.key,
        label: d.device.deviceInfo?.label ?? `disk ${d.device.key}`,
        fileName: disk.backing.fileName,
        capacityBytes: disk.capacityInBytes ?? disk.capacityInKB * 1024,
        controllerKey: d.device.controllerKey ?? -1,
        ...(d.device.unitNumber === undefined ? {} : { unitNumber: d.device.unitNumber }),
        bus: (controller === undefined ? undefined : BUS_OF_CONTROLLER[controller]) ?? "unknown",
        raw: d.raw,
      };
    });
  const nics: VmNic[] = devices
    .filter((d) => /^Virtual(Vmxnet\d?|E1000e?|PCNet32|Sriov.*)$/.test(d.type))
    .map((d) => {
      const nic = expect(xs.object({ macAddress: xs.string().optional(), addressType: xs.string().optional(), backing: xs.object({ deviceName: xs.string().optional() }).optional() }), d.raw, "VirtualEthernetCard");
      return {
        key: d.device.key,
        type: d.type,
        network: nic.backing?.deviceName ?? "",
        ...(nic.macAddress === undefined ? {} : { macAddress: nic.macAddress }),
        ...(nic.addressType === undefined ? {} : { addressType: nic.addressType }),
      };
    });
  return {
    name: config.name,
    cpus: config.hardware.numCPU,
    coresPerSocket: config.hardware.numCoresPerSocket ?? 1,
    memoryMiB: config.hardware.memoryMB,
    firmware: config.firmware ?? "bios",
    guestId: config.guestId ?? "",
    version: config.version ?? "",
    disks,
    nics,
  };
}

export async function readVmConfig(client: VsphereClient, vm: MoRef): Promise<VmConfig> {
  const raw = (await getProperties(client, vm, ["config"])).get("config");
  if (raw === undefined) throw new CloudError("VSPHERE_VM_NO_CONFIG", `vsphere: VM ${vm.value} has no config (is it still being created?)`);
  return parseVmConfig(raw);
}

/** A disk by index (0-based, in device order) or by label ("Hard disk 1"). */
export function pickDisk(config: VmConfig, which: string | number): VmDisk {
  const disk = typeof which === "number" || /^\d+$/.test(which) ? config.disks[Number(which)] : config.disks.find((d) => d.label === which);
  if (disk === undefined) {
    throw new InvalidArgsError("VSPHERE_DISK_NOT_FOUND", `vsphere: VM ${config.name} has no disk ${JSON.stringify(which)} (it has ${config.disks.map((d, i) => `${i}: ${d.label}`).join(", ") || "none"})`);
  }
  return disk;
}

export interface SnapshotOptions extends TaskOptions {
  readonly description?: string;
  /** Include the guest's memory (only for a powered-on VM). @default false */
  readonly memory?: boolean;
  /** Quiesce the guest file systems through VMware Tools. @default false */
  readonly quiesce?: boolean;
}

export async function createSnapshot(client: VsphereClient, vm: MoRef, name: string, options: SnapshotOptions = {}): Promise<MoRef> {
  const result = await runTask(client, "CreateSnapshot_Task", vm, { name, description: options.description ?? "", memory: options.memory ?? false, quiesce: options.quiesce ?? false }, { timeoutMs: VM_TASK_TIMEOUT_MS, ...options });
  return expect(xs.ref(), result, "snapshot");
}

/** Removes a snapshot, consolidating its changes into the disks. */
export async function removeSnapshot(client: VsphereClient, snapshot: MoRef, options: TaskOptions = {}): Promise<void> {
  await runTask(client, "RemoveSnapshot_Task", snapshot, { removeChildren: false, consolidate: true }, { timeoutMs: VM_TASK_TIMEOUT_MS, ...options });
}

/**
 * The disks as a snapshot froze them: the snapshot's own config names the files that stop
 * changing once it exists (the running VM writes to new delta files), so they read consistently.
 */
export async function snapshotDisks(client: VsphereClient, snapshot: MoRef): Promise<readonly VmDisk[]> {
  const raw = (await getProperties(client, snapshot, ["config"])).get("config");
  return parseVmConfig(raw).disks;
}

/** Takes a snapshot, hands its frozen disks to `fn`, and removes the snapshot whatever happens. */
export async function withSnapshot<T>(client: VsphereClient, vm: MoRef, name: string, fn: (disks: readonly VmDisk[], snapshot: MoRef) => Promise<T>, options: SnapshotOptions = {}): Promise<T> {
  const snapshot = await createSnapshot(client, vm, name, options);
  try {
    return await fn(await snapshotDisks(client, snapshot), snapshot);
  } finally {
    await removeSnapshot(client, snapshot);
  }
}

/** The inventory path of the datacenter that holds an object (for datastore URLs of its disks). */
export async function datacenterOf(client: VsphereClient, entity: MoRef): Promise<string> {
  const chain: { ref: MoRef; name: string }[] = [];
  let ref: MoRef | undefined = entity;
  // Inventory trees are shallow; the bound stops a server that reports a parent cycle.
  for (let depth = 0; ref !== undefined && depth < 64 && ref.value !== client.serviceContent.rootFolder.value; depth++) {
    const props = await getProperties(client, ref, ["name", "parent"]);
    chain.push({ ref, name: expect(xs.string(), props.get("name"), "name") });
    const parent = props.get("parent");
    ref = parent === undefined ? undefined : expect(xs.ref(), parent, "parent");
  }
  const index = chain.findIndex((c) => c.ref.type === "Datacenter");
  if (index < 0) throw new CloudError("VSPHERE_DATACENTER_NOT_FOUND", `vsphere: ${entity.type} ${entity.value} is in no datacenter`);
  return chain.slice(index).reverse().map((c) => escapeInventoryName(c.name)).join("/");
}
