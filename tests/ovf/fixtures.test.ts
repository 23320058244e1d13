// One test per committed descriptor (tests/fixtures/ovf/README.md says where each came from):
// the Workload read from it must say what the file says.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readOvf, type OvfDescriptor } from "../../sdk/ovf/ovf-reader.ts";
import type { Workload } from "../../sdk/spec/workload.ts";
import { FIXTURES } from "./helpers.ts";

const GiB = 2 ** 30;
const MiB = 2 ** 20;

function read(file: string): OvfDescriptor {
  return readOvf(readFileSync(join(FIXTURES, file)), { name: file });
}

/** The only system's workload; fails the test if the file did not make exactly one valid one. */
function only(descriptor: OvfDescriptor): Workload {
  assert.equal(descriptor.systems.length, 1);
  const workload = descriptor.systems[0]?.workload;
  assert.ok(workload !== undefined, JSON.stringify(descriptor.problems));
  return workload;
}

function shape(w: Workload): unknown {
  return {
    name: w.name,
    vcpus: `${w.cpu.sockets}x${w.cpu.coresPerSocket}`,
    memoryMiB: w.memoryMiB,
    firmware: w.firmware.type,
    disks: w.disks.map((d) => `${d.id} ${d.sizeBytes} ${d.bus}${d.bootOrder === undefined ? "" : ` boot${d.bootOrder}`} ${d.source?.kind === "file" ? d.source.path : "-"}`),
    nics: w.nics.map((n) => `${n.network} ${n.model ?? "-"} ${n.macPolicy.kind === "static" ? n.macPolicy.address : "generated"}`),
    guest: `${w.guestOs.family}/${w.guestOs.distribution ?? "-"}/${w.guestOs.version ?? "-"}/${w.guestOs.architecture}`,
  };
}

describe("real OVF descriptors", () => {
  it("GIVEN vCenter's export of a Converter-made Windows XP VM WHEN read THEN 2 vCPUs, 256 MiB, a 7 GiB BusLogic SCSI disk and a PCNet32 NIC on a dvPortgroup", () => {
    const d = read("vcenter-converter-winxp.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "converter_winxp",
      vcpus: "2x1",
      memoryMiB: 256,
      firmware: "bios",
      disks: [`vmdisk1 ${7 * GiB} scsi boot0 converter_winxp-disk1.vmdk`],
      nics: ["dvportgroup-4574 PCNet32 generated"],
      guest: "windows/windows/xp/i386",
    });
    assert.equal(d.systems[0]?.osSource, "vmw:osType=winXPProGuest");
    assert.equal(d.systems[0]?.virtualSystemType, "vmx-07");
    assert.deepEqual(d.problems, []);
  });

  it("GIVEN an ESX host export of Ubuntu 12.04 WHEN read THEN 4 cores in one socket (vmw:CoresPerSocket), 2 GiB, 40 GiB disk, BIOS", () => {
    const d = read("esx-ubuntu-12.04-server.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "Ubuntu-12.04.2-64-Server-Tools",
      vcpus: "1x4",
      memoryMiB: 2048,
      firmware: "bios",
      disks: [`vmdisk1 ${40 * GiB} scsi boot0 Ubuntu-12.04.2-64-Server-Tools-disk1.vmdk`],
      nics: ["Private E1000 generated"],
      guest: "linux/ubuntu/-/x86_64",
    });
    assert.equal(d.disks[0]?.populatedSizeBytes, 2578120704);
    assert.deepEqual(d.networks, [{ name: "Private", description: "The Private network" }]);
  });

  it("GIVEN ovftool 3.5's export with every element prefixed ovf: WHEN read THEN the prefixed sections read like plain ones", () => {
    const d = read("ovftool-centos-with-tools.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "CentOS-With-Tools",
      vcpus: "2x1",
      memoryMiB: 1512,
      firmware: "bios",
      disks: [`vmdisk-523607fb-e81b-49c3-97b8-b720b5e8e181-2000 ${8 * GiB} scsi boot0 CentOS-With-Tools-disk1.vmdk`],
      nics: ["none VMXNET3 generated"],
      guest: "linux/centos/-/i386",
    });
    assert.equal(d.files[0]?.sizeBytes, 1145731584);
  });

  it("GIVEN ovftool's vCloud export with two PVSCSI disks WHEN read THEN both disks, in order, and the NIC's MAC from rasd:Address", () => {
    const d = read("ovftool-pvscsis.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "Vm1",
      vcpus: "1x1",
      memoryMiB: 256,
      firmware: "bios",
      disks: [
        `vmdisk-c5fd8bd2-4300-487a-b318-d5038d0ea9ae-2000 ${4 * MiB} scsi boot0 PvScsis-disk1.vmdk`,
        `vmdisk-c5fd8bd2-4300-487a-b318-d5038d0ea9ae-2001 ${8 * MiB} scsi PvScsis-disk2.vmdk`,
      ],
      nics: ["VappNetworks PCNet32 00:50:56:0e:00:fa"],
      guest: "linux/rhel/6/i386",
    });
  });

  it("GIVEN Bitnami's Tomcat appliance (ovftool 2.1) WHEN read THEN its long name, 1 GiB, 17 GiB disk and bridged NIC", () => {
    const d = read("bitnami-tomcatstack.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "bitnami-tomcatstack-8.0.36-2-linux-ubuntu-14.04-x86_64",
      vcpus: "1x1",
      memoryMiB: 1024,
      firmware: "bios",
      disks: [`vmdisk1 ${17 * GiB} scsi boot0 bitnami-tomcatstack-8.0.36-2-linux-ubuntu-14.04-x86_64-disk1.vmdk`],
      nics: ["bridged PCNet32 generated"],
      guest: "linux/ubuntu/-/x86_64",
    });
    assert.equal(d.disks[0]?.format, "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized");
  });

  it("GIVEN a VirtualBox 3 export of a default VM WHEN read THEN the CIM id 67 gives Windows XP and the disk sits on IDE", () => {
    const d = read("virtualbox-default-vm.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "vbox1",
      vcpus: "1x1",
      memoryMiB: 192,
      firmware: "bios",
      disks: [`vmdisk1 ${10 * GiB} ide boot0 vbox1.vmdk`],
      nics: ["NAT PCNet32 generated"],
      guest: "windows/windows/xp/i386",
    });
    assert.equal(d.systems[0]?.virtualSystemType, "virtualbox-2.2");
  });

  it("GIVEN a VirtualBox export with IDE and SATA controllers WHEN read THEN each disk gets its controller's bus", () => {
    const d = read("virtualbox-all-storage-controllers.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "vbox5",
      vcpus: "1x1",
      memoryMiB: 384,
      firmware: "bios",
      disks: [`vmdisk1 ${4 * MiB} ide boot0 vbox5.vmdk`, `vmdisk2 ${10 * GiB} sata vbox2.vmdk`],
      nics: ["NAT PCNet32 generated"],
      guest: "linux/ubuntu/-/i386",
    });
  });

  it("GIVEN a VirtualBox 5 export with vbox:Machine WHEN read THEN EFI firmware and the adapter's MAC come from the VirtualBox section", () => {
    const d = read("virtualbox-nxos-efi.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "edev",
      vcpus: "2x1",
      memoryMiB: 8196,
      firmware: "uefi",
      disks: [`vmdisk1 ${4 * GiB} sata boot0 box-disk1.vmdk`],
      nics: ["NAT E1000 08:00:27:e7:92:b6"],
      guest: "linux/-/-/x86_64",
    });
    assert.equal(d.systems[0]?.osSource, "vbox:OSType=Linux_64");
  });

  it("GIVEN vCenter's export of the Nostalgia VM WHEN read THEN a 64 MiB 'other' guest with its byte-sized disk", () => {
    const d = read("vcenter-nostalgia.ovf");
    assert.deepEqual(shape(only(d)), {
      name: "Nostalgia",
      vcpus: "1x1",
      memoryMiB: 64,
      firmware: "bios",
      disks: ["vmdisk1 107373568 scsi boot0 nostalgia-disk1.vmdk"],
      nics: ["VM Network PCNet32 generated"],
      guest: "other/-/-/i386",
    });
    assert.equal(d.systems[0]?.virtualSystemType, "vmx-04");
  });

  it("GIVEN DMTF's OVF 2 example (a collection with EPASD and SASD items) WHEN read THEN two systems, their MACs and product, and the unattached disk as a problem", () => {
    const d = read("dmtf-dsp0243-example3.ovf");
    assert.equal(d.ovfVersion, "2.x");
    assert.deepEqual(
      d.systems.map((s) => s.id),
      ["storage server", "web-server"],
    );
    const [one, two] = d.systems.map((s) => s.workload);
    assert.ok(one !== undefined && two !== undefined);
    assert.deepEqual(shape(one), {
      name: "Virtual Appliance One",
      vcpus: "1x1",
      memoryMiB: 1024,
      firmware: "bios",
      disks: [],
      nics: ["VS Network - 00:16:8b:db:00:5e"],
      guest: "windows/windows-server/2000/i386",
    });
    assert.equal(two.name, "Virtual Appliance Two");
    assert.equal(one.tags["ovf.product"], "The Great Appliance");
    assert.equal(one.tags["ovf.vendor"], "Some Great Corporation");
    assert.deepEqual(
      d.systems[0]?.product?.properties.map((p) => p.key),
      ["adminemail", "app_ip"],
    );
    assert.deepEqual(
      d.problems.map((p) => `${p.code} ${p.path}`),
      [
        "OVF_DISK_UNREFERENCED VirtualSystemCollection[0].VirtualSystem[0].VirtualHardwareSection.StorageItem[0].HostResource",
        "OVF_DISK_UNREFERENCED VirtualSystemCollection[0].VirtualSystem[1].VirtualHardwareSection.StorageItem[0].HostResource",
        "OVF_DISK_UNATTACHED DiskSection.Disk[0]",
      ],
    );
  });
});
