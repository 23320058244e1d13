// Reader behaviour beyond the real fixtures: problems with paths, units, extensions.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { normalizeMac, readOvf } from "../../sdk/ovf/ovf-reader.ts";
import { bytesPerUnit } from "../../sdk/ovf/units.ts";
import { MINIMAL_OVF } from "./helpers.ts";

function withHardware(items: string, extra = "", envelopeExtra = ""): string {
  return MINIMAL_OVF.replace("</VirtualHardwareSection>", `${items}</VirtualHardwareSection>${extra}`)
    .replace("<References/>", `<References><File ovf:href="d.vmdk" ovf:id="f1" ovf:size="100"/></References><DiskSection><Info>d</Info>${envelopeExtra}</DiskSection>`)
    .replace("<Envelope ", '<Envelope xmlns:vmw="http://www.vmware.com/schema/ovf" ');
}

describe("OVF reader", () => {
  it("GIVEN DMTF unit spellings WHEN converted THEN bytes per unit are exact, and non-byte units are refused", () => {
    assert.equal(bytesPerUnit("byte * 2^20"), 2 ** 20);
    assert.equal(bytesPerUnit("byte*2^30"), 2 ** 30);
    assert.equal(bytesPerUnit("MegaBytes"), 2 ** 20);
    assert.equal(bytesPerUnit("byte * 10^6"), 1e6);
    assert.equal(bytesPerUnit(undefined), 1);
    assert.equal(bytesPerUnit("hertz * 10^6"), undefined);
  });

  it("GIVEN MACs in three spellings WHEN normalised THEN one lower-case colon form, and junk is undefined", () => {
    assert.equal(normalizeMac("00-16-8B-DB-00-5E"), "00:16:8b:db:00:5e");
    assert.equal(normalizeMac("080027FAE441"), "08:00:27:fa:e4:41");
    assert.equal(normalizeMac("0"), undefined);
  });

  it("GIVEN an NVMe controller, a vTPM, secure boot and a disk capacity from a property WHEN read THEN all reach the Workload", () => {
    const text = withHardware(
      `<Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>vmware.nvme.controller</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
       <Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
       <Item><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>vmware.vtpm</rasd:ResourceSubType><rasd:ResourceType>1</rasd:ResourceType></Item>
       <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
       <vmw:Config ovf:required="false" vmw:key="uefi.secureBoot.enabled" vmw:value="true"/>`,
      `<ProductSection><Info>p</Info><Property ovf:key="disk.size" ovf:type="int" ovf:value="3"/></ProductSection>`,
      `<Disk ovf:capacity="\${disk.size}" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="d1" ovf:fileRef="f1"/>`,
    );
    const d = readOvf(text);
    assert.deepEqual(d.problems, []);
    const w = d.systems[0]?.workload;
    assert.deepEqual(w?.firmware, { type: "uefi", secureBoot: true, vtpm: true });
    assert.deepEqual(w?.disks.map((x) => [x.id, x.sizeBytes, x.bus]), [["d1", 3 * 2 ** 30, "nvme"]]);
  });

  it("GIVEN a disk on an unknown controller, an unknown disk and an unconnected NIC WHEN read THEN each is a problem with its path", () => {
    const text = withHardware(
      `<Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>weird</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
       <Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
       <Item><rasd:HostResource>ovf:/disk/ghost</rasd:HostResource><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
       <Item><rasd:InstanceID>6</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>`,
      "",
      `<Disk ovf:capacity="1048576" ovf:diskId="d1" ovf:fileRef="nope"/>`,
    );
    const d = readOvf(text);
    assert.deepEqual(
      d.problems.map((p) => `${p.code} ${p.path}`),
      [
        "OVF_FILE_REF_UNKNOWN DiskSection.Disk[0].fileRef",
        "OVF_DISK_BUS_UNKNOWN VirtualSystem[0].VirtualHardwareSection.Item[3].Parent",
        "OVF_DISK_UNKNOWN VirtualSystem[0].VirtualHardwareSection.Item[4].HostResource",
        "OVF_NIC_UNCONNECTED VirtualSystem[0].VirtualHardwareSection.Item[5].Connection",
      ],
    );
    assert.equal(d.systems[0]?.workload?.disks[0]?.bus, "scsi");
  });

  it("GIVEN a system without memory WHEN read THEN no Workload, and the schema issue is reported at workload.memoryMiB", () => {
    const text = MINIMAL_OVF.replace(/<Item><rasd:AllocationUnits>.*?<\/Item>/s, "");
    const d = readOvf(text);
    assert.equal(d.systems[0]?.workload, undefined);
    const codes = d.problems.map((p) => `${p.code} ${p.path}`);
    assert.ok(codes.includes("OVF_MEMORY_MISSING VirtualSystem[0].VirtualHardwareSection"), codes.join("; "));
    assert.ok(codes.includes("OVF_WORKLOAD_INVALID VirtualSystem[0].workload.memoryMiB"), codes.join("; "));
  });

  it("GIVEN an OVF 2 envelope with an EPASD port and a SASD StorageItem on a SATA controller WHEN read THEN both reach the Workload", () => {
    const text = `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/2" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/2"
      xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
      xmlns:epasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData"
      xmlns:sasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData">
      <References><File ovf:id="f" ovf:href="a.vmdk"/></References>
      <DiskSection><Info>d</Info><Disk ovf:diskId="a" ovf:fileRef="f" ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^30"/></DiskSection>
      <VirtualSystem ovf:id="v2"><Info>i</Info>
        <OperatingSystemSection ovf:id="96" ovf:version="12"><Info>os</Info></OperatingSystemSection>
        <VirtualHardwareSection><Info>h</Info>
          <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
          <Item><rasd:AllocationUnits>byte * 2^30</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
          <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>AHCI</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
          <EthernetPortItem><epasd:Address>52:54:00:12:34:56</epasd:Address><epasd:Connection>lan</epasd:Connection><epasd:InstanceID>4</epasd:InstanceID><epasd:ResourceSubType>virtio</epasd:ResourceSubType><epasd:ResourceType>10</epasd:ResourceType></EthernetPortItem>
          <StorageItem><sasd:HostResource>ovf:/disk/a</sasd:HostResource><sasd:InstanceID>5</sasd:InstanceID><sasd:Parent>3</sasd:Parent><sasd:ResourceType>17</sasd:ResourceType></StorageItem>
        </VirtualHardwareSection>
      </VirtualSystem></Envelope>`;
    const d = readOvf(text);
    assert.equal(d.ovfVersion, "2.x");
    assert.deepEqual(d.problems, []);
    const w = d.systems[0]?.workload;
    assert.equal(w?.memoryMiB, 2048);
    assert.deepEqual(w?.disks.map((x) => [x.id, x.sizeBytes, x.bus]), [["a", 2 * 2 ** 30, "sata"]]);
    assert.deepEqual(w?.nics.map((n) => [n.network, n.model, n.macPolicy]), [["lan", "virtio", { kind: "static", address: "52:54:00:12:34:56" }]]);
    assert.deepEqual(w?.guestOs, { family: "linux", distribution: "debian", version: "12", architecture: "x86_64" });
  });

  it("GIVEN an envelope with no VirtualSystem WHEN read THEN OVF_NO_VIRTUAL_SYSTEM", () => {
    const d = readOvf('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References/></Envelope>');
    assert.deepEqual(
      d.problems.map((p) => p.code),
      ["OVF_NO_VIRTUAL_SYSTEM"],
    );
  });
});
