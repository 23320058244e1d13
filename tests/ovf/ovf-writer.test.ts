import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgsError } from "../../sdk/errors.ts";
import { readOvf } from "../../sdk/ovf/ovf-reader.ts";
import { hardwareVersionFor, writeOvf } from "../../sdk/ovf/ovf-writer.ts";
import { parseXml } from "../../sdk/ovf/xml.ts";
import { parseWorkload, type WorkloadInput } from "../../sdk/spec/workload.ts";

const BASE: WorkloadInput = {
  name: 'R&D <"lab"> box',
  cpu: { sockets: 2, coresPerSocket: 2 },
  memoryMiB: 3072,
  disks: [
    { id: "data", sizeBytes: 5 * 2 ** 30, bus: "sata" },
    { id: "boot", sizeBytes: 2 ** 30 + 512, bus: "scsi", bootOrder: 0 },
    { id: "legacy", sizeBytes: 2 ** 20, bus: "ide" },
  ],
  nics: [
    { network: "front & back", model: "e1000" },
    { network: "mgmt", macPolicy: { kind: "static", address: "00:50:56:00:00:01" } },
  ],
  guestOs: { family: "windows", distribution: "windows-server", version: "2019" },
  tags: { "ovf.product": "Widget", owner: "ops" },
};

describe("OVF writer", () => {
  it("GIVEN a workload with awkward characters, three buses and two NICs WHEN written and read back THEN the same Workload comes out", () => {
    const workload = parseWorkload(BASE);
    const text = writeOvf(workload, [{ diskId: "boot", href: "box-disk1.vmdk", sizeBytes: 1234, populatedSizeBytes: 999 }]);
    const d = readOvf(text);
    assert.deepEqual(d.problems, []);
    const read = d.systems[0]?.workload;
    assert.ok(read !== undefined);
    assert.equal(read.name, workload.name);
    assert.deepEqual(read.cpu, workload.cpu);
    assert.equal(read.memoryMiB, 3072);
    // The boot disk comes first in hardware order, which is how OVF says "boot from this".
    assert.deepEqual(
      read.disks.map((x) => [x.id, x.sizeBytes, x.bus, x.bootOrder]),
      [
        ["boot", 2 ** 30 + 512, "scsi", 0],
        ["data", 5 * 2 ** 30, "sata", undefined],
        ["legacy", 2 ** 20, "ide", undefined],
      ],
    );
    assert.deepEqual(read.disks[0]?.source, { kind: "file", path: "box-disk1.vmdk" });
    assert.equal(read.disks[1]?.source, undefined, "a disk without a file is blank");
    assert.deepEqual(
      read.nics.map((n) => [n.network, n.model, n.macPolicy]),
      [
        ["front & back", "E1000", { kind: "generated" }],
        ["mgmt", "VMXNET3", { kind: "static", address: "00:50:56:00:00:01" }],
      ],
    );
    assert.deepEqual(read.guestOs, { family: "windows", distribution: "windows-server", version: "2019", architecture: "x86_64" });
    assert.equal(read.tags.owner, "ops");
    assert.equal(read.tags["ovf.product"], "Widget");
    assert.equal(d.files[0]?.sizeBytes, 1234);
    assert.equal(d.disks.find((x) => x.diskId === "boot")?.populatedSizeBytes, 999);
  });

  it("GIVEN the written descriptor WHEN its Items are inspected THEN RASD fields are in schema (alphabetical) order and the VMware extensions are present", () => {
    const text = writeOvf(parseWorkload(BASE));
    const envelope = parseXml(text, "out.ovf");
    const hardware = envelope.children.find((c) => c.name === "VirtualSystem")?.children.find((c) => c.name === "VirtualHardwareSection");
    const items = hardware?.children.filter((c) => c.name === "Item") ?? [];
    assert.ok(items.length >= 8);
    for (const item of items) {
      const fields = item.children.filter((c) => c.prefix === "rasd").map((c) => c.name);
      assert.deepEqual(fields, [...fields].sort(), fields.join(","));
    }
    assert.match(text, /vmw:osType="windows2019srv_64Guest"/);
    assert.match(text, /<OperatingSystemSection ovf:id="121"/);
    assert.match(text, /vmw:key="firmware" vmw:value="bios"/);
    assert.match(text, /<vssd:VirtualSystemType>vmx-11<\/vssd:VirtualSystemType>/);
    assert.match(text, /<rasd:ResourceSubType>VirtualSCSI<\/rasd:ResourceSubType>/);
  });

  it("GIVEN NVMe, secure boot or a vTPM WHEN the hardware version is chosen THEN the lowest version with the feature", () => {
    const base = parseWorkload({ name: "v", memoryMiB: 64, guestOs: { family: "linux" } });
    assert.equal(hardwareVersionFor(base), "vmx-11");
    assert.equal(hardwareVersionFor({ ...base, disks: [{ id: "n", sizeBytes: 512, bus: "nvme" }] }), "vmx-13");
    assert.equal(hardwareVersionFor({ ...base, firmware: { type: "uefi", secureBoot: true, vtpm: false } }), "vmx-13");
    assert.equal(hardwareVersionFor({ ...base, firmware: { type: "uefi", secureBoot: false, vtpm: true } }), "vmx-14");
  });

  it("GIVEN a file for a disk the workload lacks, or an invalid workload WHEN written THEN InvalidArgsError with a code", () => {
    assert.throws(
      () => writeOvf(parseWorkload(BASE), [{ diskId: "nope", href: "x.vmdk" }]),
      (err: unknown) => err instanceof InvalidArgsError && err.code === "OVF_FILE_DISK_UNKNOWN",
    );
    assert.throws(
      () => writeOvf({ ...parseWorkload(BASE), memoryMiB: 0 }),
      (err: unknown) => err instanceof InvalidArgsError && err.code === "WORKLOAD_INVALID",
    );
  });
});
