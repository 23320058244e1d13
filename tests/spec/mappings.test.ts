import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NotCapableError, isPortableError } from "../../sdk/errors.ts";
import { AWS_INSTANCE_TYPES, awsInstanceTypeFor } from "../../sdk/spec/mappings/aws-instance-types.ts";
import { AZURE_VM_SIZES, azureVmSizeFor } from "../../sdk/spec/mappings/azure-vm-sizes.ts";
import { controllerFor, controllersFor, DISK_BUS_TABLE } from "../../sdk/spec/mappings/disk-bus.ts";
import { awsFirmwareFor, azureFirmwareFor, vsphereFirmwareFor } from "../../sdk/spec/mappings/firmware.ts";
import {
  awsGuestFor,
  azureOsTypeFor,
  cimOsIdFor,
  GUEST_OS_TABLE,
  guestOsFromCimId,
  guestOsFromVirtualBoxType,
  guestOsFromVmwareId,
  vmwareGuestIdFor,
} from "../../sdk/spec/mappings/guest-os.ts";
import { ARCHITECTURES, DISK_BUSES, GUEST_OS_FAMILIES, parseWorkload, type GuestOs } from "../../sdk/spec/workload.ts";

/** Runs a mapping; returns its value, or the NotCapableError it raised. Anything else fails the test. */
function attempt<T>(fn: () => T): { ok: true; value: T } | { ok: false; error: NotCapableError } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    assert.ok(err instanceof NotCapableError, `expected NotCapableError, got ${String(err)}`);
    return { ok: false, error: err };
  }
}

describe("guest OS mapping", () => {
  const expectations: readonly { guest: GuestOs; aws: string; azure: string; vmware: string; cim: number }[] = [
    { guest: { family: "linux", distribution: "ubuntu", architecture: "x86_64" }, aws: "Linux/UNIX x86_64", azure: "Linux", vmware: "ubuntu64Guest", cim: 94 },
    { guest: { family: "linux", distribution: "rhel", version: "9", architecture: "x86_64" }, aws: "Linux/UNIX x86_64", azure: "Linux", vmware: "rhel9_64Guest", cim: 80 },
    { guest: { family: "linux", architecture: "arm64" }, aws: "Linux/UNIX arm64", azure: "Linux", vmware: "arm-other-64", cim: 101 },
    { guest: { family: "windows", distribution: "windows-server", version: "2019", architecture: "x86_64" }, aws: "Windows x86_64", azure: "Windows", vmware: "windows2019srv_64Guest", cim: 121 },
    { guest: { family: "freebsd", architecture: "x86_64" }, aws: "Linux/UNIX x86_64", azure: "Linux", vmware: "freebsd64Guest", cim: 78 },
    { guest: { family: "solaris", version: "11", architecture: "x86_64" }, aws: "AWS_GUEST_OS_UNSUPPORTED", azure: "AZURE_GUEST_OS_UNSUPPORTED", vmware: "solaris11_64Guest", cim: 81 },
    { guest: { family: "other", architecture: "x86_64" }, aws: "AWS_GUEST_OS_UNSUPPORTED", azure: "AZURE_GUEST_OS_UNSUPPORTED", vmware: "other64Guest", cim: 102 },
    { guest: { family: "linux", distribution: "centos", architecture: "i386" }, aws: "AWS_GUEST_ARCH_UNSUPPORTED", azure: "AZURE_GUEST_ARCH_UNSUPPORTED", vmware: "centosGuest", cim: 106 },
    // vSphere has no Arm Windows id in the table, so the family's first row stands in.
    { guest: { family: "windows", architecture: "arm64" }, aws: "AWS_GUEST_OS_UNSUPPORTED", azure: "Windows", vmware: "windows2019srv_64Guest", cim: 121 },
  ];
  for (const e of expectations) {
    const label = `${e.guest.family}/${e.guest.distribution ?? "-"}/${e.guest.architecture}`;
    it(`GIVEN guest ${label} WHEN mapped THEN AWS ${e.aws}, Azure ${e.azure}, vSphere ${e.vmware}, CIM ${e.cim}`, () => {
      const aws = attempt(() => awsGuestFor(e.guest));
      assert.equal(aws.ok ? `${aws.value.platform} ${aws.value.architecture}` : aws.error.code, e.aws);
      const azure = attempt(() => azureOsTypeFor(e.guest));
      assert.equal(azure.ok ? azure.value : azure.error.code, e.azure);
      assert.equal(vmwareGuestIdFor(e.guest), e.vmware);
      assert.equal(cimOsIdFor(e.guest), e.cim);
    });
  }

  it("GIVEN every family × architecture in the schema WHEN mapped for every target THEN each maps or raises a coded NotCapableError naming the target", () => {
    let refused = 0;
    for (const family of GUEST_OS_FAMILIES) {
      for (const architecture of ARCHITECTURES) {
        const guest: GuestOs = { family, architecture };
        const maps: readonly [string, () => unknown][] = [
          ["aws", () => awsGuestFor(guest)],
          ["azure", () => azureOsTypeFor(guest)],
          ["vsphere", () => vmwareGuestIdFor(guest)],
        ];
        for (const [target, map] of maps) {
          const result = attempt(map);
          if (!result.ok) {
            refused++;
            assert.ok(isPortableError(result.error));
            assert.match(result.error.code, /^[A-Z_]+$/);
            assert.equal(result.error.context.target, target);
            assert.match(result.error.message, new RegExp(`^${target}: `));
          } else assert.ok(result.value !== undefined);
        }
      }
    }
    assert.ok(refused > 0, "some combinations must be refused (solaris on AWS, i386 everywhere in the cloud)");
  });

  it("GIVEN every row of the table WHEN its VMware id is read and written back THEN the same id and CIM id come out", () => {
    for (const row of GUEST_OS_TABLE) {
      const guest = guestOsFromVmwareId(row.vmwareGuestId);
      assert.ok(guest !== undefined, row.vmwareGuestId);
      assert.equal(vmwareGuestIdFor(guest), row.vmwareGuestId, `round trip of ${row.vmwareGuestId}`);
      assert.equal(cimOsIdFor(guest), row.cimOsId, `CIM id of ${row.vmwareGuestId}`);
    }
  });

  it("GIVEN ids outside the table WHEN read THEN their stem decides family, distribution and architecture", () => {
    assert.deepEqual(guestOsFromVmwareId("rhel10_64Guest"), { family: "linux", distribution: "rhel", version: "10", architecture: "x86_64" });
    assert.deepEqual(guestOsFromVmwareId("windows2022srvNext_64Guest"), { family: "windows", architecture: "x86_64" });
    assert.deepEqual(guestOsFromVmwareId("arm-debian12-64"), { family: "linux", distribution: "debian", architecture: "arm64" });
    assert.equal(guestOsFromVmwareId("zzzGuest"), undefined);
    assert.deepEqual(guestOsFromCimId(96, "12"), { family: "linux", distribution: "debian", version: "12", architecture: "x86_64" });
    assert.deepEqual(guestOsFromCimId(83), { family: "linux", distribution: "suse", architecture: "x86_64" });
    assert.equal(guestOsFromCimId(9999), undefined);
    assert.deepEqual(guestOsFromVirtualBoxType("Ubuntu_arm64"), { family: "linux", distribution: "ubuntu", architecture: "arm64" });
    assert.deepEqual(guestOsFromVirtualBoxType("Windows2019_64"), { family: "windows", architecture: "x86_64" });
    assert.deepEqual(guestOsFromVirtualBoxType("FreeBSD"), { family: "freebsd", architecture: "i386" });
  });
});

describe("instance size mapping", () => {
  const aws: readonly [number, number, "x86_64" | "arm64", readonly string[] | undefined, string][] = [
    [2, 8192, "x86_64", undefined, "m7i.large"],
    [2, 4096, "x86_64", undefined, "c7i.large"],
    [2, 16384, "x86_64", undefined, "r7i.large"],
    [3, 4096, "x86_64", undefined, "c7i.xlarge"],
    [2, 20000, "x86_64", undefined, "r7i.xlarge"],
    [4, 16384, "x86_64", undefined, "m7i.xlarge"],
    [1, 1024, "arm64", undefined, "c7g.medium"],
    [64, 65536, "arm64", undefined, "c7g.16xlarge"],
    [1, 1024, "x86_64", ["t3"], "t3.micro"],
    [2, 4096, "x86_64", ["m7i", "t3"], "t3.medium"],
    [192, 768 * 1024, "x86_64", undefined, "m7i.48xlarge"],
  ];
  for (const [vcpus, memoryMiB, architecture, families, expected] of aws) {
    it(`GIVEN ${vcpus} vCPUs and ${memoryMiB} MiB (${architecture}${families ? `, families ${families.join("/")}` : ""}) WHEN sized for AWS THEN ${expected}`, () => {
      const type = awsInstanceTypeFor({ vcpus, memoryMiB, architecture, ...(families === undefined ? {} : { families }) });
      assert.equal(type.name, expected);
      assert.ok(type.vcpus >= vcpus && type.memoryMiB >= memoryMiB);
    });
  }

  it("GIVEN a request no AWS type meets WHEN sized THEN AWS_NO_INSTANCE_TYPE names the target", () => {
    const result = attempt(() => awsInstanceTypeFor({ vcpus: 500, memoryMiB: 1024, architecture: "x86_64" }));
    assert.equal(result.ok ? "mapped" : result.error.code, "AWS_NO_INSTANCE_TYPE");
    if (!result.ok) assert.equal(result.error.context.target, "aws");
  });

  it("GIVEN the AWS table WHEN checked THEN every type is the smallest of its family that fits its own size", () => {
    for (const type of AWS_INSTANCE_TYPES) {
      assert.equal(awsInstanceTypeFor({ vcpus: type.vcpus, memoryMiB: type.memoryMiB, architecture: type.architecture, families: [type.family] }).name, type.name);
    }
  });

  const azure: readonly [number, number, "x86_64" | "arm64", string][] = [
    [2, 8192, "x86_64", "Standard_D2s_v5"],
    [2, 4096, "x86_64", "Standard_F2s_v2"],
    [4, 32768, "x86_64", "Standard_E4s_v5"],
    [1, 512, "x86_64", "Standard_F2s_v2"],
    [2, 8192, "arm64", "Standard_D2ps_v5"],
    [72, 144 * 1024, "x86_64", "Standard_F72s_v2"],
  ];
  for (const [vcpus, memoryMiB, architecture, expected] of azure) {
    it(`GIVEN ${vcpus} vCPUs and ${memoryMiB} MiB (${architecture}) WHEN sized for Azure THEN ${expected}`, () => {
      assert.equal(azureVmSizeFor({ vcpus, memoryMiB, architecture }).name, expected);
    });
  }

  it("GIVEN a request no Azure size meets WHEN sized THEN AZURE_NO_VM_SIZE names the target", () => {
    const result = attempt(() => azureVmSizeFor({ vcpus: 4, memoryMiB: 2 ** 30, architecture: "arm64" }));
    assert.equal(result.ok ? "mapped" : result.error.code, "AZURE_NO_VM_SIZE");
    if (!result.ok) assert.equal(result.error.context.target, "azure");
  });

  it("GIVEN the burstable B series WHEN allowed explicitly THEN it is chosen for a tiny VM", () => {
    assert.equal(azureVmSizeFor({ vcpus: 1, memoryMiB: 1024, architecture: "x86_64", series: ["Bs"] }).name, "Standard_B1s");
    assert.ok(AZURE_VM_SIZES.every((s) => s.name.startsWith("Standard_")));
  });
});

describe("firmware mapping", () => {
  const rows: readonly [string, { type: "bios" | "uefi"; secureBoot: boolean; vtpm: boolean }, "x86_64" | "arm64", string, string, string][] = [
    ["bios", { type: "bios", secureBoot: false, vtpm: false }, "x86_64", "legacy-bios", "V1", "bios"],
    ["uefi", { type: "uefi", secureBoot: false, vtpm: false }, "x86_64", "uefi", "V2", "efi"],
    ["uefi + secure boot + vTPM", { type: "uefi", secureBoot: true, vtpm: true }, "x86_64", "uefi tpm=v2.0 sb", "V2 TrustedLaunch", "efi sb vtpm"],
    ["bios on arm64", { type: "bios", secureBoot: false, vtpm: false }, "arm64", "AWS_FIRMWARE_UNSUPPORTED", "AZURE_FIRMWARE_UNSUPPORTED", "bios"],
    ["uefi on arm64", { type: "uefi", secureBoot: false, vtpm: false }, "arm64", "uefi", "V2", "efi"],
  ];
  for (const [label, firmware, architecture, aws, azure, vsphere] of rows) {
    it(`GIVEN ${label} WHEN mapped THEN AWS ${aws}, Azure ${azure}, vSphere ${vsphere}`, () => {
      const a = attempt(() => awsFirmwareFor(firmware, architecture));
      assert.equal(a.ok ? [a.value.bootMode, a.value.tpmSupport === undefined ? "" : `tpm=${a.value.tpmSupport}`, a.value.secureBoot ? "sb" : ""].filter(Boolean).join(" ") : a.error.code, aws);
      const z = attempt(() => azureFirmwareFor(firmware, architecture));
      assert.equal(z.ok ? [z.value.hyperVGeneration, z.value.securityType ?? ""].filter(Boolean).join(" ") : z.error.code, azure);
      const v = vsphereFirmwareFor(firmware);
      assert.equal([v.firmware, v.efiSecureBootEnabled ? "sb" : "", v.vtpm ? "vtpm" : ""].filter(Boolean).join(" "), vsphere);
    });
  }
});

describe("disk bus mapping", () => {
  const expected: Readonly<Record<string, readonly [string, boolean]>> = {
    "aws scsi": ["nvme", true],
    "aws nvme": ["nvme", false],
    "aws ide": ["nvme", true],
    "azure scsi": ["scsi", false],
    "azure sata": ["scsi", true],
    "azure nvme": ["nvme", false],
    "vsphere scsi": ["pvscsi", false],
    "vsphere nvme": ["nvme", false],
    "vsphere sata": ["ahci", false],
    "vsphere ide": ["ide", false],
    "local scsi": ["virtio-scsi", false],
  };
  for (const [key, [controller, driverChange]] of Object.entries(expected)) {
    it(`GIVEN a ${key.split(" ")[1]} disk WHEN placed on ${key.split(" ")[0]} THEN it attaches to ${controller}${driverChange ? " with a driver change" : ""}`, () => {
      const [target, bus] = key.split(" ") as ["aws" | "azure" | "vsphere" | "local", "scsi" | "sata" | "nvme" | "ide"];
      assert.deepEqual(controllerFor(target, bus), { controller, driverChange });
    });
  }

  it("GIVEN every target and bus WHEN looked up THEN the table has an entry", () => {
    for (const target of Object.keys(DISK_BUS_TABLE) as (keyof typeof DISK_BUS_TABLE)[]) {
      for (const bus of DISK_BUSES) assert.ok(controllerFor(target, bus).controller.length > 0, `${target} ${bus}`);
    }
  });

  it("GIVEN five IDE disks WHEN placed on vSphere THEN VSPHERE_TOO_MANY_IDE_DISKS", () => {
    const w = parseWorkload({ name: "x", memoryMiB: 512, guestOs: { family: "linux" }, disks: [1, 2, 3, 4, 5].map((i) => ({ id: `d${i}`, sizeBytes: 512, bus: "ide" })) });
    const result = attempt(() => controllersFor("vsphere", w.disks));
    assert.equal(result.ok ? "mapped" : result.error.code, "VSPHERE_TOO_MANY_IDE_DISKS");
    assert.equal(controllersFor("aws", w.disks).length, 5);
  });

  it("GIVEN an NVMe disk on a BIOS (Generation 1) Azure VM WHEN placed THEN AZURE_NVME_NEEDS_GEN2 names the disk", () => {
    const w = parseWorkload({ name: "x", memoryMiB: 512, guestOs: { family: "linux" }, disks: [{ id: "fast", sizeBytes: 512, bus: "nvme" }] });
    const result = attempt(() => controllersFor("azure", w.disks, { hyperVGeneration: "V1" }));
    assert.equal(result.ok ? "mapped" : result.error.code, "AZURE_NVME_NEEDS_GEN2");
    if (!result.ok) assert.match(result.error.message, /"fast"/);
    assert.equal(controllersFor("azure", w.disks, { hyperVGeneration: "V2" })[0]?.controller, "nvme");
  });
});
