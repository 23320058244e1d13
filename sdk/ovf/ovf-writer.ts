// Workload → a VMware-compatible OVF 1.x descriptor (DSP0243 1.1, with the `vmw:` extensions
// that vCenter and ovftool write and read: osType, CoresPerSocket, Config firmware).
//
// Choices, each so that vSphere imports the result without edits:
// - RASD fields inside an Item are written in schema order (alphabetical, as the CIM
//   ResourceAllocationSettingData XSD sequence requires; ovftool rejects other orders).
// - SCSI disks go on a PVSCSI controller ("VirtualSCSI"), SATA on AHCI, NVMe on
//   "vmware.nvme.controller", IDE on the IDE controller (see spec/mappings/disk-bus.ts).
// - The virtual hardware version is the lowest that has every feature used: vmx-11 (ESXi 6.0)
//   by default, vmx-13 for NVMe or secure boot (ESXi 6.5), vmx-14 for a vTPM (ESXi 6.7).
// - Tags travel as ProductSection properties "portable.tag.<key>", which readOvf reads back.
import { InvalidArgsError } from "../errors.ts";
import { cimOsIdFor, vmwareGuestIdFor } from "../spec/mappings/guest-os.ts";
import { parseWorkload, vcpuCount, type DiskBus, type Workload } from "../spec/workload.ts";
import { OVF_NAMESPACE_1, TAG_PROPERTY_PREFIX } from "./ovf-reader.ts";

export const VMDK_STREAM_OPTIMIZED_URI = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

export interface OvfDiskFile {
  /** The Workload disk id this file holds. */
  readonly diskId: string;
  readonly href: string;
  readonly sizeBytes?: number;
  readonly populatedSizeBytes?: number;
}

function escapeXml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] as string);
}

function el(name: string, text: string | number): string {
  return `<${name}>${escapeXml(String(text))}</${name}>`;
}

/** An Item's fields in the RASD schema's (alphabetical) order. */
function item(fields: Readonly<Record<string, string | number | undefined>>, extra = "", indent = "      "): string {
  const lines = Object.keys(fields)
    .filter((k) => fields[k] !== undefined)
    .sort()
    .map((k) => `${indent}  ${el(`rasd:${k}`, fields[k] as string | number)}`);
  return `${indent}<Item>\n${lines.join("\n")}${extra === "" ? "" : `\n${indent}  ${extra}`}\n${indent}</Item>`;
}

const CONTROLLER: Readonly<Record<DiskBus, { resourceType: number; subType?: string; name: string; description: string }>> = {
  scsi: { resourceType: 6, subType: "VirtualSCSI", name: "SCSI controller 0", description: "SCSI Controller" },
  sata: { resourceType: 20, subType: "vmware.sata.ahci", name: "SATA controller 0", description: "SATA Controller" },
  nvme: { resourceType: 20, subType: "vmware.nvme.controller", name: "NVME controller 0", description: "NVMe Controller" },
  ide: { resourceType: 5, name: "IDE 0", description: "IDE Controller" },
};

/** Unit numbers per controller: SCSI skips 7 (the controller's own id), IDE has master/slave on 2 channels. */
const MAX_UNITS: Readonly<Record<DiskBus, number>> = { scsi: 15, sata: 30, nvme: 15, ide: 2 };

const NIC_MODELS: Readonly<Record<string, string>> = { e1000: "E1000", e1000e: "E1000e", vmxnet3: "VMXNET3", pcnet32: "PCNet32", vmxnet2: "VmxNet2" };

export function hardwareVersionFor(workload: Workload): string {
  if (workload.firmware.vtpm) return "vmx-14";
  if (workload.firmware.secureBoot || workload.disks.some((d) => d.bus === "nvme")) return "vmx-13";
  return "vmx-11";
}

/**
 * Writes the descriptor. `files` names the file holding each disk; a disk without one is
 * written as a blank disk (DiskSection entry without fileRef). Throws InvalidArgsError for a
 * workload that fails validation or a file naming no disk of it.
 */
export function writeOvf(input: Workload, files: readonly OvfDiskFile[] = []): string {
  const workload = parseWorkload(input);
  for (const file of files) {
    if (!workload.disks.some((d) => d.id === file.diskId)) {
      throw new InvalidArgsError("OVF_FILE_DISK_UNKNOWN", `ovf: file "${file.href}" is for disk "${file.diskId}", which the workload does not have`, { context: { diskId: file.diskId } });
    }
  }
  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(
    `<Envelope xmlns="${OVF_NAMESPACE_1}" xmlns:ovf="${OVF_NAMESPACE_1}" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" ` +
      `xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" ` +
      `xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" ` +
      `xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`,
  );
  out.push("  <References>");
  files.forEach((file, i) => {
    const size = file.sizeBytes === undefined ? "" : ` ovf:size="${file.sizeBytes}"`;
    out.push(`    <File ovf:href="${escapeXml(file.href)}" ovf:id="file${i + 1}"${size}/>`);
  });
  out.push("  </References>");
  out.push("  <DiskSection>");
  out.push("    <Info>Virtual disk information</Info>");
  for (const disk of workload.disks) {
    const fileIndex = files.findIndex((f) => f.diskId === disk.id);
    const file = files[fileIndex];
    const fileRef = file === undefined ? "" : ` ovf:fileRef="file${fileIndex + 1}" ovf:format="${VMDK_STREAM_OPTIMIZED_URI}"`;
    const populated = file?.populatedSizeBytes === undefined ? "" : ` ovf:populatedSize="${file.populatedSizeBytes}"`;
    // Capacity in bytes: exact for any size, and every importer reads the default unit.
    out.push(`    <Disk ovf:capacity="${disk.sizeBytes}" ovf:capacityAllocationUnits="byte" ovf:diskId="${escapeXml(disk.id)}"${fileRef}${populated}/>`);
  }
  out.push("  </DiskSection>");
  const networks = [...new Set(workload.nics.map((n) => n.network))];
  out.push("  <NetworkSection>");
  out.push("    <Info>The list of logical networks</Info>");
  for (const network of networks) out.push(`    <Network ovf:name="${escapeXml(network)}">\n      ${el("Description", `The ${network} network`)}\n    </Network>`);
  out.push("  </NetworkSection>");
  out.push(`  <VirtualSystem ovf:id="${escapeXml(workload.name)}">`);
  out.push("    <Info>A virtual machine</Info>");
  out.push(`    ${el("Name", workload.name)}`);
  out.push(`    <OperatingSystemSection ovf:id="${cimOsIdFor(workload.guestOs)}"${workload.guestOs.version === undefined ? "" : ` ovf:version="${escapeXml(workload.guestOs.version)}"`} vmw:osType="${vmwareGuestIdFor(workload.guestOs)}">`);
  out.push("      <Info>The kind of installed guest operating system</Info>");
  out.push("    </OperatingSystemSection>");
  out.push("    <VirtualHardwareSection>");
  out.push("      <Info>Virtual hardware requirements</Info>");
  out.push("      <System>");
  out.push(`        ${el("vssd:ElementName", "Virtual Hardware Family")}`);
  out.push(`        ${el("vssd:InstanceID", 0)}`);
  out.push(`        ${el("vssd:VirtualSystemIdentifier", workload.name)}`);
  out.push(`        ${el("vssd:VirtualSystemType", hardwareVersionFor(workload))}`);
  out.push("      </System>");
  let instance = 1;
  const vcpus = vcpuCount(workload);
  out.push(
    item(
      { AllocationUnits: "hertz * 10^6", Description: "Number of Virtual CPUs", ElementName: `${vcpus} virtual CPU(s)`, InstanceID: instance++, ResourceType: 3, VirtualQuantity: vcpus },
      `<vmw:CoresPerSocket ovf:required="false">${workload.cpu.coresPerSocket}</vmw:CoresPerSocket>`,
    ),
  );
  out.push(item({ AllocationUnits: "byte * 2^20", Description: "Memory Size", ElementName: `${workload.memoryMiB}MB of memory`, InstanceID: instance++, ResourceType: 4, VirtualQuantity: workload.memoryMiB }));
  const controllerIds = new Map<DiskBus, number>();
  for (const bus of ["scsi", "sata", "nvme", "ide"] as const) {
    if (!workload.disks.some((d) => d.bus === bus)) continue;
    const c = CONTROLLER[bus];
    controllerIds.set(bus, instance);
    out.push(item({ Address: 0, Description: c.description, ElementName: c.name, InstanceID: instance++, ResourceSubType: c.subType, ResourceType: c.resourceType }));
  }
  const units = new Map<DiskBus, number>();
  // Boot order: disks with one first (lowest first), the rest after, so the boot disk is first in hardware order.
  const ordered = [...workload.disks].sort((a, b) => (a.bootOrder ?? Number.MAX_SAFE_INTEGER) - (b.bootOrder ?? Number.MAX_SAFE_INTEGER));
  for (const disk of ordered) {
    let unit = units.get(disk.bus) ?? 0;
    if (disk.bus === "scsi" && unit === 7) unit++;
    if (unit > MAX_UNITS[disk.bus]) {
      throw new InvalidArgsError("OVF_TOO_MANY_DISKS", `ovf: more ${disk.bus} disks than one controller holds (${MAX_UNITS[disk.bus]})`, { context: { bus: disk.bus } });
    }
    units.set(disk.bus, unit + 1);
    out.push(item({ AddressOnParent: unit, ElementName: `disk ${disk.id}`, HostResource: `ovf:/disk/${disk.id}`, InstanceID: instance++, Parent: controllerIds.get(disk.bus), ResourceType: 17 }));
  }
  workload.nics.forEach((nic, i) => {
    const model = NIC_MODELS[(nic.model ?? "vmxnet3").toLowerCase()] ?? "VMXNET3";
    out.push(
      item({
        Address: nic.macPolicy.kind === "static" ? nic.macPolicy.address : undefined,
        AddressOnParent: i + 7,
        AutomaticAllocation: "true",
        Connection: nic.network,
        Description: `${model} ethernet adapter on "${nic.network}"`,
        ElementName: `Network adapter ${i + 1}`,
        InstanceID: instance++,
        ResourceSubType: model,
        ResourceType: 10,
      }),
    );
  });
  if (workload.firmware.vtpm) out.push(item({ ElementName: "Virtual TPM", InstanceID: instance++, ResourceSubType: "vmware.vtpm", ResourceType: 1 }));
  out.push(`      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="${workload.firmware.type === "uefi" ? "efi" : "bios"}"/>`);
  if (workload.firmware.secureBoot) out.push(`      <vmw:Config ovf:required="false" vmw:key="uefi.secureBoot.enabled" vmw:value="true"/>`);
  out.push("    </VirtualHardwareSection>");
  const tags = Object.entries(workload.tags);
  if (tags.length > 0) {
    out.push("    <ProductSection>");
    out.push("      <Info>Information about the installed software</Info>");
    if (workload.tags["ovf.product"] !== undefined) out.push(`      ${el("Product", workload.tags["ovf.product"])}`);
    if (workload.tags["ovf.vendor"] !== undefined) out.push(`      ${el("Vendor", workload.tags["ovf.vendor"])}`);
    if (workload.tags["ovf.version"] !== undefined) out.push(`      ${el("Version", workload.tags["ovf.version"])}`);
    for (const [key, value] of tags) {
      if (key.startsWith("ovf.")) continue;
      out.push(`      <Property ovf:key="${escapeXml(TAG_PROPERTY_PREFIX + key)}" ovf:type="string" ovf:userConfigurable="false" ovf:value="${escapeXml(value)}"/>`);
    }
    out.push("    </ProductSection>");
  }
  out.push("  </VirtualSystem>");
  out.push("</Envelope>");
  return `${out.join("\n")}\n`;
}
