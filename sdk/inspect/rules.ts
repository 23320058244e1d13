// Readiness rules: which drivers each target needs the guest to have, and which firmware it
// must boot with. Tables, not code paths, so a new target is a new row.
//
// Sources (compiled 2026-11-28):
// - AWS Nitro: EBS volumes are NVMe devices and the network is the Elastic Network Adapter;
//   EC2 User Guide, "Amazon EBS and NVMe" and "Enhanced networking with ENA" (Linux modules
//   `nvme`, `ena`; Windows `stornvme.sys` inbox or AWS's NVMe driver, `ena.sys`).
// - Azure: Hyper-V VMBus, synthetic storage and network; Microsoft Learn, "Prepare a Linux VHD
//   for Azure" (modules `hv_vmbus`, `hv_storvsc`, `hv_netvsc`; Windows inbox `vmbus.sys`,
//   `storvsc.sys`, `netvsc.sys`).
// - KVM / local QEMU: virtio over PCI (`virtio_pci`), a virtio disk (`virtio_blk` or
//   `virtio_scsi`) and `virtio_net`; virtio-win names them `viostor.sys`, `vioscsi.sys`,
//   `netkvm.sys` on Windows.
// - vSphere: PVSCSI (`vmw_pvscsi`, `pvscsi.sys`) or the driver of the controller the disk's bus
//   maps to (sdk/spec/mappings/disk-bus.ts), and vmxnet3 or an emulated e1000 NIC.
// - Firmware: every x86 target boots both BIOS and UEFI, but the VM must be created with the
//   firmware the disk boots (sdk/spec/mappings/firmware.ts); arm64 on AWS and Azure is UEFI only.
import type { Architecture, DiskBus, FirmwareType } from "../spec/workload.ts";
import type { BootMode, Finding, InspectTarget } from "./types.ts";

export interface DriverRequirement {
  /** Any one of these satisfies the requirement (module names; `.sys` file names on Windows). */
  readonly anyOf: readonly string[];
  readonly role: "storage" | "network" | "bus";
  /** error: the guest will not boot or reach the network; warning: it likely works less well. */
  readonly severity: "error" | "warning";
}

/** The Linux driver for each vSphere controller (disk-bus.ts names the controllers). */
const VSPHERE_BUS_DRIVER: Readonly<Record<DiskBus, readonly string[]>> = {
  scsi: ["vmw_pvscsi"],
  sata: ["ahci"],
  ide: ["ata_piix"],
  nvme: ["nvme"],
};

const VSPHERE_BUS_WINDOWS_DRIVER: Readonly<Record<DiskBus, readonly string[]>> = {
  scsi: ["pvscsi.sys"],
  sata: ["storahci.sys"],
  ide: ["atapi.sys"],
  nvme: ["stornvme.sys"],
};

/** The Linux driver of the controller each bus maps to on the local QEMU target. */
const LOCAL_BUS_DRIVER: Readonly<Record<DiskBus, readonly string[]>> = {
  scsi: ["virtio_scsi"],
  sata: ["ahci"],
  ide: ["ata_piix"],
  nvme: ["nvme"],
};

export function linuxRequirements(target: InspectTarget, busOfDisk?: DiskBus): DriverRequirement[] {
  const diskBus = busOfDisk ?? "scsi";
  switch (target) {
    case "aws":
      return [
        { anyOf: ["nvme"], role: "storage", severity: "error" },
        { anyOf: ["ena"], role: "network", severity: "error" },
      ];
    case "azure":
      return [
        { anyOf: ["hv_vmbus"], role: "bus", severity: "error" },
        { anyOf: ["hv_storvsc"], role: "storage", severity: "error" },
        { anyOf: ["hv_netvsc"], role: "network", severity: "error" },
      ];
    case "kvm":
      return [
        { anyOf: ["virtio_pci"], role: "bus", severity: "error" },
        { anyOf: ["virtio_blk", "virtio_scsi"], role: "storage", severity: "error" },
        { anyOf: ["virtio_net"], role: "network", severity: "error" },
      ];
    case "local":
      // Our QEMU attaches the disk on the controller its bus maps to (clouds/local/qemu-args.ts);
      // the NIC is virtio-net either way.
      return [
        { anyOf: ["virtio_pci"], role: "bus", severity: "error" },
        { anyOf: busOfDisk === undefined ? ["virtio_blk", "virtio_scsi"] : LOCAL_BUS_DRIVER[busOfDisk], role: "storage", severity: "error" },
        { anyOf: ["virtio_net"], role: "network", severity: "error" },
      ];
    case "vsphere":
      return [
        { anyOf: [...new Set(["vmw_pvscsi", ...VSPHERE_BUS_DRIVER[diskBus]])], role: "storage", severity: "error" },
        { anyOf: ["vmxnet3", "e1000", "e1000e"], role: "network", severity: "warning" },
      ];
  }
}

export function windowsRequirements(target: InspectTarget, diskBus: DiskBus = "scsi"): DriverRequirement[] {
  switch (target) {
    case "aws":
      return [
        { anyOf: ["stornvme.sys", "awsnvme.sys"], role: "storage", severity: "error" },
        { anyOf: ["ena.sys"], role: "network", severity: "error" },
      ];
    case "azure":
      return [
        { anyOf: ["vmbus.sys"], role: "bus", severity: "error" },
        { anyOf: ["storvsc.sys"], role: "storage", severity: "error" },
        { anyOf: ["netvsc.sys"], role: "network", severity: "error" },
      ];
    case "kvm":
    case "local":
      return [
        { anyOf: ["viostor.sys", "vioscsi.sys"], role: "storage", severity: "error" },
        { anyOf: ["netkvm.sys"], role: "network", severity: "error" },
      ];
    case "vsphere":
      return [
        { anyOf: [...new Set(["pvscsi.sys", ...VSPHERE_BUS_WINDOWS_DRIVER[diskBus]])], role: "storage", severity: "error" },
        { anyOf: ["vmxnet3.sys", "e1g6032e.sys", "e1i63x64.sys"], role: "network", severity: "warning" },
      ];
  }
}

/** Every Linux module name any rule mentions (what KernelInfo.drivers reports). */
export const READINESS_MODULES: readonly string[] = [
  ...new Set((["aws", "azure", "kvm", "local", "vsphere"] as const).flatMap((t) => (["scsi", "sata", "ide", "nvme"] as const).flatMap((b) => linuxRequirements(t, b).flatMap((r) => r.anyOf)))),
].sort();

const LINUX_FIX_HINT: Readonly<Record<InspectTarget, string>> = {
  aws: "install a kernel built with NVMe and ENA drivers (most distribution kernels have them) and add them to the initramfs (`dracut --add-drivers 'nvme ena'` or /etc/initramfs-tools/modules, then `update-initramfs -u`)",
  azure: "install a kernel with the Hyper-V drivers and add hv_vmbus, hv_storvsc and hv_netvsc to the initramfs (`dracut --add-drivers` or /etc/initramfs-tools/modules)",
  kvm: "install a kernel with virtio drivers and add virtio_pci, virtio_blk/virtio_scsi and virtio_net to the initramfs",
  local: "install a kernel with virtio drivers and add virtio_pci, virtio_blk/virtio_scsi and virtio_net to the initramfs",
  vsphere: "install a kernel with vmw_pvscsi (or the driver of the chosen controller) and vmxnet3, and add the storage driver to the initramfs",
};

const WINDOWS_FIX_HINT: Readonly<Record<InspectTarget, string>> = {
  aws: "install the AWS NVMe and ENA drivers (or run AWS's EC2 drivers package) before migrating",
  azure: "Hyper-V drivers ship with Windows; make sure they are not disabled, e.g. with the Azure VM preparation steps",
  kvm: "install the virtio-win drivers (viostor or vioscsi, netkvm) before migrating",
  local: "install the virtio-win drivers (viostor or vioscsi, netkvm) before migrating",
  vsphere: "install VMware Tools (pvscsi, vmxnet3) before migrating",
};

export function driverFixHint(target: InspectTarget, family: "linux" | "windows"): string {
  return family === "linux" ? LINUX_FIX_HINT[target] : WINDOWS_FIX_HINT[target];
}

/** The firmware type a boot mode needs, or undefined when either works (hybrid) or it is unknown. */
export function firmwareFor(bootMode: BootMode): FirmwareType | undefined {
  return bootMode === "bios" ? "bios" : bootMode === "uefi" ? "uefi" : undefined;
}

export interface FirmwareRuleOptions {
  readonly targets: readonly InspectTarget[];
  /** The firmware the Workload (and so the target VM) is declared with. */
  readonly firmware?: FirmwareType;
  readonly architecture?: Architecture;
}

/** Firmware compatibility: the disk's boot mode against the Workload's firmware and each target. */
export function firmwareFindings(bootMode: BootMode, evidencePath: string, options: FirmwareRuleOptions): Finding[] {
  const findings: Finding[] = [];
  const needed = firmwareFor(bootMode);
  if (bootMode === "unknown") {
    findings.push({ severity: "warning", code: "INSPECT_BOOT_MODE_UNKNOWN", message: "no EFI system partition and no BIOS boot code: the disk may not be bootable", evidencePath, fixHint: "install a boot loader (grub-install) for the firmware the target uses" });
    return findings;
  }
  if (options.firmware !== undefined && needed !== undefined && options.firmware !== needed) {
    findings.push({
      severity: "error",
      code: "INSPECT_FIRMWARE_MISMATCH",
      message: `the disk boots ${needed === "uefi" ? "UEFI only (EFI system partition, no BIOS boot code)" : "BIOS only (no EFI system partition)"}, but the workload's firmware is ${options.firmware}`,
      evidencePath,
      fixHint: `set the workload's firmware to ${needed}${needed === "uefi" ? " (AWS bootMode uefi, Azure Generation 2, vSphere efi)" : " (AWS legacy-bios, Azure Generation 1, vSphere bios)"}, or install a ${options.firmware} boot loader in the guest`,
    });
  }
  if (options.architecture === "arm64" && bootMode === "bios") {
    for (const target of options.targets.filter((t) => t === "aws" || t === "azure")) {
      findings.push({ severity: "error", code: "INSPECT_FIRMWARE_UNSUPPORTED", message: `${target}: arm64 machines boot UEFI only, and this disk boots BIOS only`, evidencePath, target, fixHint: "add an EFI system partition with a UEFI boot loader (grub-install --target=arm64-efi)" });
    }
  }
  if (options.firmware === undefined && needed !== undefined) {
    findings.push({ severity: "info", code: "INSPECT_FIRMWARE_REQUIRED", message: `the disk boots ${needed} only; create the target VM with ${needed} firmware`, evidencePath });
  }
  return findings;
}
