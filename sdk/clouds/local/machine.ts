// A local machine definition: the Workload with its disks bound to files and its buses mapped
// to QEMU controllers (sdk/spec/mappings/disk-bus.ts, target "local"). Plain data, so the same
// definition renders to a QEMU command line (qemu-args.ts) and to libvirt XML (libvirt-xml.ts).
import { createHash } from "node:crypto";
import { InvalidArgsError, NotCapableError } from "../../errors.ts";
import type { Firmware, Workload } from "../../spec/workload.ts";

/** The buses QEMU offers here: the Workload's four, plus virtio-blk, which only local guests use. */
export const LOCAL_DISK_BUSES = ["virtio", "scsi", "sata", "ide", "nvme"] as const;
export type LocalDiskBus = (typeof LOCAL_DISK_BUSES)[number];

/** QEMU block driver names for the formats the disk engine reads (qemu calls VHD "vpc"). */
export const QEMU_DISK_FORMATS = ["qcow2", "raw", "vmdk", "vhdx", "vpc"] as const;
export type QemuDiskFormat = (typeof QEMU_DISK_FORMATS)[number];

/** Machine and disk ids become file names, QEMU ids and libvirt names: short and plain. */
export const LOCAL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** ich9-ahci has six ports; the i440fx board has two IDE channels of two devices. */
export const AHCI_PORTS = 6;
export const IDE_DEVICES = 4;

export interface LocalDiskAttachment {
  readonly id: string;
  readonly path: string;
  readonly format: QemuDiskFormat;
  readonly bus: LocalDiskBus;
  /** 0 boots first; undefined is not a boot candidate. */
  readonly bootIndex?: number;
  readonly readOnly?: boolean;
  /** Guest writes go to a throw-away overlay (QEMU `snapshot=on`): the file is never changed. */
  readonly snapshot?: boolean;
}

export interface LocalNic {
  readonly macAddress: string;
  /** QEMU device model: virtio-net-pci, e1000, e1000e or vmxnet3. */
  readonly model: "virtio-net-pci" | "e1000" | "e1000e" | "vmxnet3";
}

export interface LocalMachineDefinition {
  readonly name: string;
  /** q35 unless a disk needs the i440fx board's IDE controller. */
  readonly machineType: "q35" | "pc";
  readonly sockets: number;
  readonly coresPerSocket: number;
  readonly memoryMiB: number;
  readonly firmware: Pick<Firmware, "type" | "secureBoot">;
  readonly disks: readonly LocalDiskAttachment[];
  /** User-mode (slirp) networking, one per Workload NIC. */
  readonly nics: readonly LocalNic[];
}

export interface DiskBinding {
  readonly path: string;
  readonly format: QemuDiskFormat;
}

export interface DefineMachineOptions {
  /** Local name (state folder, QEMU -name, libvirt <name>). @default the workload name when it is plain */
  readonly name?: string;
  /** The file behind each Workload disk id. */
  readonly disks: Readonly<Record<string, DiskBinding>>;
  /** Per disk id: attach on this bus instead of the mapped one (e.g. "virtio"). */
  readonly busOverrides?: Readonly<Record<string, LocalDiskBus>>;
}

const NIC_MODELS: Readonly<Record<string, LocalNic["model"]>> = {
  virtio: "virtio-net-pci",
  "virtio-net": "virtio-net-pci",
  vmxnet3: "vmxnet3",
  e1000: "e1000",
  e1000e: "e1000e",
};

/** The Workload bus → QEMU bus (DISK_BUS_TABLE.local names the controllers). */
const WORKLOAD_BUS: Readonly<Record<Workload["disks"][number]["bus"], LocalDiskBus>> = { scsi: "scsi", sata: "sata", ide: "ide", nvme: "nvme" };

/** A stable locally administered MAC (QEMU's 52:54:00 prefix) for a generated-MAC NIC. */
function generatedMac(machine: string, index: number): string {
  const digest = createHash("sha256").update(`${machine}/${index}`).digest();
  return `52:54:00:${[digest[0], digest[1], digest[2]].map((b) => (b as number).toString(16).padStart(2, "0")).join(":")}`;
}

export function checkLocalName(kind: string, name: string): void {
  if (!LOCAL_NAME.test(name)) {
    throw new InvalidArgsError("LOCAL_NAME_INVALID", `local: ${kind} name "${name}" must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`, {
      context: { kind, name },
    });
  }
}

/**
 * Binds a parsed Workload to files and controllers. Boot order follows the disks' `bootOrder`
 * (ranked to 0, 1, ...); when no disk has one, the first disk boots, as on the source hypervisors.
 */
export function defineMachine(workload: Workload, options: DefineMachineOptions): LocalMachineDefinition {
  const name = options.name ?? workload.name;
  checkLocalName("machine", name);
  if (workload.guestOs.architecture !== "x86_64") {
    throw new NotCapableError("LOCAL_ARCH_UNSUPPORTED", `local: machine "${name}" is ${workload.guestOs.architecture}; the local target runs x86_64 guests`, {
      context: { architecture: workload.guestOs.architecture },
    });
  }
  if (workload.firmware.vtpm) {
    throw new NotCapableError("LOCAL_VTPM_UNSUPPORTED", `local: machine "${name}" wants a vTPM, which needs swtpm; the local target does not run one`);
  }
  const ranked = workload.disks.filter((d) => d.bootOrder !== undefined).sort((a, b) => (a.bootOrder as number) - (b.bootOrder as number));
  const bootIndex = new Map<string, number>(ranked.map((d, i) => [d.id, i]));
  if (ranked.length === 0 && workload.disks[0] !== undefined) bootIndex.set(workload.disks[0].id, 0);
  const disks = workload.disks.map((disk): LocalDiskAttachment => {
    const binding = options.disks[disk.id];
    if (binding === undefined) {
      throw new InvalidArgsError("LOCAL_DISK_UNBOUND", `local: machine "${name}" has no file for disk "${disk.id}"`, { context: { disk: disk.id } });
    }
    const index = bootIndex.get(disk.id);
    return {
      id: disk.id,
      path: binding.path,
      format: binding.format,
      bus: options.busOverrides?.[disk.id] ?? WORKLOAD_BUS[disk.bus],
      ...(index === undefined ? {} : { bootIndex: index }),
    };
  });
  const definition: LocalMachineDefinition = {
    name,
    machineType: disks.some((d) => d.bus === "ide") ? "pc" : "q35",
    sockets: workload.cpu.sockets,
    coresPerSocket: workload.cpu.coresPerSocket,
    memoryMiB: workload.memoryMiB,
    firmware: { type: workload.firmware.type, secureBoot: workload.firmware.secureBoot },
    disks,
    nics: workload.nics.map((nic, i) => ({
      macAddress: nic.macPolicy.kind === "static" ? nic.macPolicy.address.toLowerCase() : generatedMac(name, i),
      model: NIC_MODELS[(nic.model ?? "virtio").toLowerCase()] ?? "virtio-net-pci",
    })),
  };
  checkMachine(definition);
  return definition;
}

/** Limits that only show across the whole definition; renderers call it too. */
export function checkMachine(machine: LocalMachineDefinition): void {
  checkLocalName("machine", machine.name);
  for (const disk of machine.disks) checkLocalName("disk", disk.id);
  const count = (bus: LocalDiskBus): number => machine.disks.filter((d) => d.bus === bus).length;
  if (count("sata") > AHCI_PORTS) {
    throw new NotCapableError("LOCAL_TOO_MANY_SATA_DISKS", `local: ${count("sata")} SATA disks exceed the ${AHCI_PORTS} ports of one AHCI controller`);
  }
  if (count("ide") > IDE_DEVICES) {
    throw new NotCapableError("LOCAL_TOO_MANY_IDE_DISKS", `local: ${count("ide")} IDE disks exceed the ${IDE_DEVICES} devices of two IDE channels`);
  }
  if (count("ide") > 0 && machine.machineType !== "pc") {
    throw new NotCapableError("LOCAL_IDE_NEEDS_PC", `local: IDE disks need the i440fx ("pc") board; q35 has only AHCI`);
  }
  // OVMF's secure-boot builds store variables in SMM and are described for q35 only.
  if (machine.firmware.secureBoot && machine.machineType !== "q35") {
    throw new NotCapableError("LOCAL_SECURE_BOOT_NEEDS_Q35", `local: machine "${machine.name}" has IDE disks (i440fx board) and secure boot, which OVMF offers on q35 only; move the disks to SATA`);
  }
  if (machine.firmware.secureBoot && machine.firmware.type !== "uefi") {
    throw new InvalidArgsError("LOCAL_SECURE_BOOT_NEEDS_UEFI", `local: secure boot needs uefi firmware`);
  }
}
