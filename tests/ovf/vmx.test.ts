import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FormatError } from "../../sdk/errors.ts";
import { parseVmxEntries, readVmx } from "../../sdk/ovf/vmx.ts";

/** A VMX as ESXi 8 writes one for an EFI Ubuntu VM with PVSCSI and NVMe disks, a CD-ROM and two NICs. */
export const ESXI_VMX = `.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "20"
displayName = "web |22prod|22 01"
numvcpus = "4"
cpuid.coresPerSocket = "2"
memSize = "8192"
firmware = "efi"
uefi.secureBoot.enabled = "TRUE"
vtpm.present = "TRUE"
guestOS = "ubuntu-64"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "web-01.vmdk"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "web-01_1.vmdk"
nvme0.present = "TRUE"
nvme0:0.present = "TRUE"
nvme0:0.fileName = "web-01_2.vmdk"
sata0.present = "TRUE"
sata0:0.present = "TRUE"
sata0:0.deviceType = "cdrom-image"
sata0:0.fileName = "/vmfs/volumes/ds/iso/ubuntu.iso"
ide1:0.present = "FALSE"
ide1:0.fileName = "old.vmdk"
bios.hddOrder = "nvme0:0"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.networkName = "VM Network"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:AA:BB:CC"
ethernet1.present = "TRUE"
ethernet1.virtualDev = "e1000e"
ethernet1.networkName = "backup"
ethernet1.addressType = "vpx"
ethernet1.generatedAddress = "00:50:56:9a:01:02"
`;

const SIZES = new Map([
  ["web-01.vmdk", 16 * 2 ** 30],
  ["web-01_1.vmdk", 2 ** 30],
  ["web-01_2.vmdk", 4 * 2 ** 30],
]);

describe("VMX reader", () => {
  it("GIVEN an ESXi VMX WHEN read THEN name (unescaped), 2×2 CPUs, 8 GiB, EFI with secure boot and vTPM, and an Ubuntu guest", () => {
    const result = readVmx(ESXI_VMX, SIZES, "web-01.vmx");
    assert.deepEqual(result.problems, []);
    const w = result.workload;
    assert.equal(w?.name, 'web "prod" 01');
    assert.deepEqual(w?.cpu, { sockets: 2, coresPerSocket: 2 });
    assert.equal(w?.memoryMiB, 8192);
    assert.deepEqual(w?.firmware, { type: "uefi", secureBoot: true, vtpm: true });
    assert.deepEqual(w?.guestOs, { family: "linux", distribution: "ubuntu", architecture: "x86_64" });
    assert.equal(w?.tags["vmx.virtualHW.version"], "20");
  });

  it("GIVEN disks on three controllers, a CD-ROM and an absent IDE disk WHEN read THEN the three disks, boot disk first per bios.hddOrder", () => {
    const w = readVmx(ESXI_VMX, SIZES).workload;
    assert.deepEqual(
      w?.disks.map((d) => [d.id, d.sizeBytes, d.bus, d.bootOrder, d.source?.kind === "file" ? d.source.path : ""]),
      [
        ["nvme0-0", 4 * 2 ** 30, "nvme", 0, "web-01_2.vmdk"],
        ["scsi0-0", 16 * 2 ** 30, "scsi", undefined, "web-01.vmdk"],
        ["scsi0-1", 2 ** 30, "scsi", undefined, "web-01_1.vmdk"],
      ],
    );
  });

  it("GIVEN a static and a vCenter-assigned MAC WHEN read THEN the static one is kept and the other is generated", () => {
    const w = readVmx(ESXI_VMX, SIZES).workload;
    assert.deepEqual(w?.nics, [
      { network: "VM Network", macPolicy: { kind: "static", address: "00:50:56:aa:bb:cc" }, addressing: { kind: "dhcp" }, model: "vmxnet3" },
      { network: "backup", macPolicy: { kind: "generated" }, addressing: { kind: "dhcp" }, model: "e1000e" },
    ]);
  });

  it("GIVEN a disk whose size is unknown WHEN read THEN it is left out with VMX_DISK_SIZE_UNKNOWN at its device", () => {
    const result = readVmx(ESXI_VMX, new Map([["web-01.vmdk", 2 ** 30]]));
    assert.deepEqual(
      result.problems.map((p) => `${p.code} ${p.path}`),
      ["VMX_DISK_SIZE_UNKNOWN nvme0:0.fileName", "VMX_DISK_SIZE_UNKNOWN scsi0:1.fileName"],
    );
    assert.deepEqual(result.workload?.disks.map((d) => d.id), ["scsi0-0"]);
  });

  it("GIVEN odd cores per socket, no memory and an unknown guest WHEN read THEN each problem is named and no Workload is made", () => {
    const result = readVmx('numvcpus = "3"\ncpuid.coresPerSocket = "2"\nguestOS = "zzz"\n', new Map());
    assert.equal(result.workload, undefined);
    assert.deepEqual(
      result.problems.map((p) => p.code),
      ["VMX_CORES_PER_SOCKET_INVALID", "VMX_MEMORY_MISSING", "VMX_GUEST_OS_UNKNOWN", "VMX_WORKLOAD_INVALID"],
    );
  });

  it("GIVEN a line that is not key = value WHEN parsed THEN VMX_SYNTAX with its line number", () => {
    assert.throws(
      () => parseVmxEntries('a = "1"\nthis is not vmx\n', "bad.vmx"),
      (err: unknown) => err instanceof FormatError && err.code === "VMX_SYNTAX" && err.context.line === 2,
    );
  });
});
