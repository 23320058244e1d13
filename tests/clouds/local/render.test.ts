// Rendering a Workload for the local target: the QEMU argument vector for each firmware and disk
// bus, and libvirt domain XML checked by libvirt's own schema (virt-xml-validate).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { isPortableError } from "../../../sdk/errors.ts";
import { defineMachine, LOCAL_DISK_BUSES, type LocalDiskBus, type LocalMachineDefinition } from "../../../sdk/clouds/local/machine.ts";
import { renderLibvirtXml } from "../../../sdk/clouds/local/libvirt-xml.ts";
import { qemuOptionValue, renderQemuArgs } from "../../../sdk/clouds/local/qemu-args.ts";
import type { ResolvedFirmware } from "../../../sdk/clouds/local/firmware.ts";
import { parseWorkload, type WorkloadInput } from "../../../sdk/spec/workload.ts";
import { withTempDir } from "../../harness/disk.ts";

const run = promisify(execFile);

const FIRMWARES: Record<string, ResolvedFirmware> = {
  bios: { type: "bios" },
  uefi: { type: "uefi", secureBoot: false, codePath: "/fw/CODE.fd", varsTemplatePath: "/fw/VARS.fd", requiresSmm: false, descriptor: "/fw/60.json" },
  "uefi-secure": { type: "uefi", secureBoot: true, codePath: "/fw/CODE.secboot.fd", varsTemplatePath: "/fw/VARS.ms.fd", requiresSmm: true, descriptor: "/fw/40.json" },
};

function workload(firmware: "bios" | "uefi" | "uefi-secure", extra: Partial<WorkloadInput> = {}): WorkloadInput {
  return {
    name: "web-1",
    memoryMiB: 2048,
    cpu: { sockets: 2, coresPerSocket: 2 },
    firmware: { type: firmware === "bios" ? "bios" : "uefi", secureBoot: firmware === "uefi-secure" },
    guestOs: { family: "linux", distribution: "debian", version: "12" },
    disks: [
      { id: "root", sizeBytes: 64 * 2 ** 20, bus: "scsi", bootOrder: 0 },
      { id: "data", sizeBytes: 2 ** 30, bus: "scsi" },
    ],
    nics: [{ network: "lan", macPolicy: { kind: "static", address: "52:54:00:AA:BB:CC" } }, { network: "lan", model: "e1000" }],
    ...extra,
  };
}

function machineFor(firmware: "bios" | "uefi" | "uefi-secure", bus: LocalDiskBus): LocalMachineDefinition {
  return defineMachine(parseWorkload(workload(firmware)), {
    disks: { root: { path: "/store/disks/root.qcow2", format: "qcow2" }, data: { path: "/store/disks/data,1.raw", format: "raw" } },
    busOverrides: { root: bus, data: bus },
  });
}

/** The values that follow each occurrence of `flag`. */
function values(args: readonly string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] as string] : []));
}

const EXPECTED_DEVICES: Record<LocalDiskBus, string[]> = {
  virtio: ["virtio-blk-pci,drive=drive0,id=disk0,bootindex=0", "virtio-blk-pci,drive=drive1,id=disk1"],
  scsi: ["virtio-scsi-pci,id=scsi0", "scsi-hd,bus=scsi0.0,drive=drive0,id=disk0,bootindex=0", "scsi-hd,bus=scsi0.0,drive=drive1,id=disk1"],
  sata: ["ich9-ahci,id=sata0", "ide-hd,bus=sata0.0,drive=drive0,id=disk0,bootindex=0", "ide-hd,bus=sata0.1,drive=drive1,id=disk1"],
  ide: ["ide-hd,bus=ide.0,unit=0,drive=drive0,id=disk0,bootindex=0", "ide-hd,bus=ide.0,unit=1,drive=drive1,id=disk1"],
  nvme: ["nvme,serial=root,drive=drive0,id=disk0,bootindex=0", "nvme,serial=data,drive=drive1,id=disk1"],
};

describe("local: QEMU command line", () => {
  for (const firmware of ["bios", "uefi", "uefi-secure"] as const) {
    for (const bus of LOCAL_DISK_BUSES) {
      if (firmware === "uefi-secure" && bus === "ide") continue;
      it(`GIVEN a ${firmware} workload with ${bus} disks WHEN rendered for TCG THEN the argv attaches them on that bus`, () => {
        const machine = machineFor(firmware, bus);
        const args = renderQemuArgs(machine, {
          accel: "tcg",
          firmware: FIRMWARES[firmware] as ResolvedFirmware,
          varsPath: "/store/machines/web-1/vars.fd",
          serialLogPath: "/store/machines/web-1/serial.log",
          qmpSocketPath: "/store/machines/web-1/qmp.sock",
          pidFilePath: "/store/machines/web-1/qemu.pid",
        });
        assert.deepEqual(values(args, "-accel"), ["tcg"]);
        assert.deepEqual(values(args, "-cpu"), [], "TCG keeps QEMU's default CPU model");
        assert.deepEqual(values(args, "-machine"), [bus === "ide" ? "pc" : firmware === "uefi-secure" ? "q35,smm=on" : "q35"]);
        assert.deepEqual(values(args, "-smp"), ["4,sockets=2,cores=2,threads=1"]);
        assert.deepEqual(values(args, "-m"), ["2048"]);
        assert.deepEqual(values(args, "-boot"), ["strict=on"]);
        assert.deepEqual(values(args, "-pidfile"), ["/store/machines/web-1/qemu.pid"]);
        assert.ok(values(args, "-chardev").includes("socket,id=qmp,path=/store/machines/web-1/qmp.sock,server=on,wait=off"));
        const drives = values(args, "-drive");
        const pflash = drives.filter((d) => d.startsWith("if=pflash"));
        if (firmware === "bios") assert.deepEqual(pflash, []);
        else {
          const fw = FIRMWARES[firmware] as Extract<ResolvedFirmware, { type: "uefi" }>;
          assert.deepEqual(pflash, [`if=pflash,format=raw,unit=0,readonly=on,file=${fw.codePath}`, "if=pflash,format=raw,unit=1,file=/store/machines/web-1/vars.fd"]);
        }
        assert.deepEqual(values(args, "-global"), firmware === "uefi-secure" ? ["driver=cfi.pflash01,property=secure,value=on"] : []);
        // A comma in a path is doubled, so it cannot start a new option.
        assert.deepEqual(drives.filter((d) => !d.startsWith("if=pflash")), [
          "file=/store/disks/root.qcow2,format=qcow2,if=none,id=drive0,cache=writeback",
          "file=/store/disks/data,,1.raw,format=raw,if=none,id=drive1,cache=writeback",
        ]);
        const devices = values(args, "-device");
        assert.deepEqual(devices.filter((d) => !/^(virtio-net-pci|e1000),/.test(d)), EXPECTED_DEVICES[bus]);
        assert.deepEqual(devices.filter((d) => /^(virtio-net-pci|e1000),/.test(d)).length, 2);
        assert.ok(devices.includes("virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc"));
      });
    }
  }

  it("GIVEN KVM WHEN rendered THEN the host CPU is passed through", () => {
    const args = renderQemuArgs(machineFor("bios", "virtio"), { accel: "kvm", firmware: { type: "bios" }, serialLogPath: "/s.log" });
    assert.deepEqual(values(args, "-accel"), ["kvm"]);
    assert.deepEqual(values(args, "-cpu"), ["host"]);
  });

  it("GIVEN disks without a bootOrder WHEN defined THEN the first disk boots", () => {
    const input = workload("bios", { disks: [{ id: "a", sizeBytes: 512, bus: "sata" }, { id: "b", sizeBytes: 512, bus: "sata" }] });
    const machine = defineMachine(parseWorkload(input), { disks: { a: { path: "/a", format: "raw" }, b: { path: "/b", format: "raw" } } });
    assert.deepEqual(machine.disks.map((d) => d.bootIndex), [0, undefined]);
  });

  it("GIVEN a generated MAC WHEN defined twice THEN it is the same locally administered address", () => {
    const a = machineFor("bios", "virtio").nics[1]?.macAddress;
    assert.match(a ?? "", /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(machineFor("bios", "virtio").nics[1]?.macAddress, a);
  });

  const refusals: Array<[string, () => unknown, string]> = [
    ["a vTPM", () => defineMachine(parseWorkload(workload("uefi", { firmware: { type: "uefi", vtpm: true } })), { disks: {} }), "LOCAL_VTPM_UNSUPPORTED"],
    ["an unbound disk", () => defineMachine(parseWorkload(workload("bios")), { disks: { root: { path: "/r", format: "raw" } } }), "LOCAL_DISK_UNBOUND"],
    ["IDE disks with secure boot", () => machineFor("uefi-secure", "ide"), "LOCAL_SECURE_BOOT_NEEDS_Q35"],
    ["seven SATA disks", () => {
      const disks = Array.from({ length: 7 }, (_, i) => ({ id: `d${i}`, sizeBytes: 512, bus: "sata" as const }));
      return defineMachine(parseWorkload(workload("bios", { disks })), { disks: Object.fromEntries(disks.map((d) => [d.id, { path: `/${d.id}`, format: "raw" as const }])) });
    }, "LOCAL_TOO_MANY_SATA_DISKS"],
    ["a machine name with a slash", () => defineMachine(parseWorkload(workload("bios")), { name: "../etc", disks: {} }), "LOCAL_NAME_INVALID"],
    ["an arm64 guest", () => defineMachine(parseWorkload(workload("uefi", { guestOs: { family: "linux", architecture: "arm64" } })), { disks: {} }), "LOCAL_ARCH_UNSUPPORTED"],
    ["a newline in a path", () => qemuOptionValue("/tmp/a\nb"), "LOCAL_PATH_INVALID"],
  ];
  for (const [what, fn, code] of refusals) {
    it(`GIVEN ${what} WHEN rendered THEN it is refused with ${code}`, () => {
      assert.throws(fn, (err: unknown) => isPortableError(err) && err.code === code);
    });
  }
});

describe("local: libvirt domain XML", () => {
  it("GIVEN every firmware and bus WHEN rendered THEN virt-xml-validate accepts each domain", async () => {
    await withTempDir(async (dir) => {
      const files: string[] = [];
      for (const firmware of ["bios", "uefi", "uefi-secure"] as const) {
        for (const bus of LOCAL_DISK_BUSES) {
          if (firmware === "uefi-secure" && bus === "ide") continue;
          for (const accel of ["kvm", "tcg"] as const) {
            const xml = renderLibvirtXml(machineFor(firmware, bus), {
              firmware: FIRMWARES[firmware] as ResolvedFirmware,
              accel,
              varsPath: "/store/machines/web-1/vars.fd",
              ...(accel === "tcg" ? { serialLogPath: "/store/machines/web-1/serial.log" } : {}),
            });
            const file = join(dir, `${firmware}-${bus}-${accel}.xml`);
            await writeFile(file, xml);
            files.push(file);
          }
        }
      }
      for (const file of files) {
        const { stdout, stderr } = await run("virt-xml-validate", [file, "domain"]);
        assert.match(`${stdout}${stderr}`, /validates/, file);
      }
      assert.equal(files.length, 28);
    });
  });

  it("GIVEN a uefi secure-boot machine with NVMe and SATA disks WHEN rendered THEN loader, SMM, targets and passthrough are right", () => {
    const machine = defineMachine(parseWorkload(workload("uefi-secure", {
      disks: [{ id: "root", sizeBytes: 512, bus: "nvme", bootOrder: 0 }, { id: "data", sizeBytes: 512, bus: "sata" }],
    })), { disks: { root: { path: "/s/root.qcow2", format: "qcow2" }, data: { path: "/s/a&b.raw", format: "raw" } } });
    const xml = renderLibvirtXml(machine, { firmware: FIRMWARES["uefi-secure"] as ResolvedFirmware, varsPath: "/s/vars.fd" });
    assert.match(xml, /<domain type="kvm" xmlns:qemu="http:\/\/libvirt.org\/schemas\/domain\/qemu\/1.0">/);
    assert.match(xml, /<loader readonly="yes" secure="yes" type="pflash">\/fw\/CODE.secboot.fd<\/loader>/);
    assert.match(xml, /<nvram template="\/fw\/VARS.ms.fd">\/s\/vars.fd<\/nvram>/);
    assert.match(xml, /<smm state="on"\/>/);
    assert.match(xml, /<source file="\/s\/a&amp;b.raw"\/>\s*<target dev="sda" bus="sata"\/>/);
    assert.match(xml, /<qemu:arg value="nvme,serial=root,drive=nvme-drive0,id=nvme0,bootindex=0"\/>/);
    assert.match(xml, /<topology sockets="2" dies="1" cores="2" threads="1"\/>/);
  });
});
