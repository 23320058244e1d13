// Disk bus → the controller each target attaches the disk to.
//
// Sources (compiled 2026-11-28):
// - AWS: on Nitro instances every EBS volume is an NVMe device, whatever the source bus
//   (EC2 User Guide, "Amazon EBS and NVMe"); a guest without NVMe drivers does not boot.
// - Azure: data and OS disks attach to SCSI, and NVMe only on sizes that offer it, with
//   Generation 2 images (Microsoft Learn, "NVMe overview", diskControllerType "SCSI" | "NVMe").
// - vSphere: ParaVirtualSCSIController (PVSCSI) for SCSI disks, VirtualNVMEController for NVMe,
//   VirtualAHCIController for SATA, VirtualIDEController for IDE (2 controllers × 2 devices, so 4
//   IDE disks at most; vSphere 8 configuration maximums).
// - local (QEMU): virtio-scsi, nvme, ich9-ahci and ide devices.
import { NotCapableError } from "../../errors.ts";
import type { DiskBus, WorkloadDisk } from "../workload.ts";

export type Target = "aws" | "azure" | "vsphere" | "local";

export interface ControllerMapping {
  readonly controller: string;
  /** True when the guest sees a different controller type than on the source and may need a driver. */
  readonly driverChange: boolean;
}

/** controller per target and source bus. */
export const DISK_BUS_TABLE: Readonly<Record<Target, Readonly<Record<DiskBus, string>>>> = {
  aws: { scsi: "nvme", sata: "nvme", ide: "nvme", nvme: "nvme" },
  azure: { scsi: "scsi", sata: "scsi", ide: "scsi", nvme: "nvme" },
  vsphere: { scsi: "pvscsi", sata: "ahci", ide: "ide", nvme: "nvme" },
  local: { scsi: "virtio-scsi", sata: "ahci", ide: "ide", nvme: "nvme" },
};

/** The generic bus a controller presents to the guest, for deciding whether drivers change. */
const CONTROLLER_BUS: Readonly<Record<string, DiskBus>> = {
  nvme: "nvme",
  scsi: "scsi",
  pvscsi: "scsi",
  "virtio-scsi": "scsi",
  ahci: "sata",
  ide: "ide",
};

/** vSphere: two IDE controllers with two devices each. */
export const VSPHERE_MAX_IDE_DISKS = 4;

export function controllerFor(target: Target, bus: DiskBus): ControllerMapping {
  const controller = DISK_BUS_TABLE[target][bus];
  return { controller, driverChange: CONTROLLER_BUS[controller] !== bus };
}

/**
 * Maps every disk of a workload, checking limits that only show across disks. `hyperVGeneration`
 * matters on Azure, where NVMe needs Generation 2.
 */
export function controllersFor(target: Target, disks: readonly WorkloadDisk[], options: { readonly hyperVGeneration?: "V1" | "V2" } = {}): ControllerMapping[] {
  if (target === "vsphere") {
    const ide = disks.filter((d) => d.bus === "ide").length;
    if (ide > VSPHERE_MAX_IDE_DISKS) {
      throw new NotCapableError("VSPHERE_TOO_MANY_IDE_DISKS", `vsphere: ${ide} IDE disks exceed the ${VSPHERE_MAX_IDE_DISKS} that two IDE controllers hold; move some to SCSI`, {
        context: { target, ideDisks: ide },
      });
    }
  }
  if (target === "azure" && options.hyperVGeneration === "V1") {
    const nvme = disks.find((d) => d.bus === "nvme");
    if (nvme !== undefined) {
      throw new NotCapableError("AZURE_NVME_NEEDS_GEN2", `azure: disk "${nvme.id}" is NVMe, which Azure attaches only to Generation 2 (UEFI) VMs; this workload boots BIOS`, {
        context: { target, disk: nvme.id },
      });
    }
  }
  return disks.map((d) => controllerFor(target, d.bus));
}
