// Acceptance: guest readiness on real images built from Debian's kernel package and busybox
// (tests/harness/guest-image.ts), BIOS and UEFI, with and without the drivers each target needs.
import assert from "node:assert/strict";
import { after, before, describe, it, mock } from "node:test";
import { fileSha256 } from "../harness/disk.ts";
import { buildGuestImage, DEBIAN_12_OS_RELEASE, ESP_SERIAL, ROOT_UUID, BOOT_UUID } from "../harness/guest-image.ts";
import { inspectGuestCommand } from "../../sdk/cli/inspect-guest.ts";
import { isPortableError } from "../../sdk/errors.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { Ext4Reader } from "../../sdk/inspect/ext4.ts";
import { inspectGuest, type InspectOptions } from "../../sdk/inspect/inspect.ts";
import { NtfsReader } from "../../sdk/inspect/ntfs.ts";
import { readPartitionTable } from "../../sdk/inspect/partitions.ts";
import type { ReadinessReport } from "../../sdk/inspect/types.ts";
import { subVolume } from "../../sdk/inspect/volume.ts";
import { BIOS_NONE, prepareImages, UEFI_ALL, UEFI_BUILTIN_VIRTIO, type Images } from "./images.ts";

async function inspectFile(path: string, options: InspectOptions = {}): Promise<ReadinessReport> {
  const disk = await openDisk(path);
  try {
    return await inspectGuest(disk, options);
  } finally {
    await disk.close();
  }
}

const codes = (report: ReadinessReport, severity?: string): string[] => report.findings.filter((f) => severity === undefined || f.severity === severity).map((f) => f.code);
const missing = (report: ReadinessReport): Record<string, readonly string[]> => Object.fromEntries(report.readiness.map((r) => [r.target, r.missingDrivers]));

describe("guest readiness on Debian images", () => {
  let images: Images;
  before(async () => {
    images = await prepareImages();
  });
  after(async () => {
    await images?.cleanup();
  });

  it("GIVEN a UEFI Debian 12 image with every driver WHEN inspected THEN it is ready everywhere and says so with evidence", async () => {
    const image = await images.build(UEFI_ALL, "uefi-all");
    const report = await inspectFile(image.path);
    assert.deepEqual(report.os, { family: "linux", distro: "debian", version: "12", prettyName: "Debian GNU/Linux 12 (bookworm)" });
    assert.equal(report.bootMode, "uefi");
    assert.equal(report.partitionScheme, "gpt");
    assert.deepEqual(
      report.filesystems.map((f) => [f.partition, f.type, f.uuid, f.role]),
      [
        [1, "vfat", ESP_SERIAL, "esp"],
        [2, "ext4", ROOT_UUID, "root"],
      ],
    );
    assert.equal(report.kernels.length, 1);
    const kernel = report.kernels[0];
    assert.equal(kernel?.version, images.kernel.version);
    assert.equal(kernel?.default, true);
    // ena ships as .ko.xz and hv_netvsc as .ko.zst: both still count as module files.
    assert.equal(kernel?.drivers.ena, "module");
    assert.equal(kernel?.drivers.hv_netvsc, "module");
    assert.equal(kernel?.moduleFileCount, UEFI_ALL.modules.length);
    assert.ok(report.readiness.every((r) => r.ready && r.missingDrivers.length === 0), JSON.stringify(report.readiness));
    // This image carries modules but no initramfs: said, as information, not held against it.
    assert.deepEqual(codes(report), ["INSPECT_NO_INITRAMFS", "INSPECT_FIRMWARE_REQUIRED"]);
  });

  it("GIVEN a BIOS image with only ahci and e1000 and /dev names in fstab WHEN inspected THEN each target lists exactly the missing drivers, and fstab and grub get warnings", async () => {
    const image = await images.build(BIOS_NONE, "bios-none");
    const report = await inspectFile(image.path);
    assert.equal(report.bootMode, "bios");
    assert.equal(report.partitionScheme, "mbr");
    assert.deepEqual(report.kernels[0]?.drivers, { ahci: "module", e1000: "module" });
    assert.deepEqual(missing(report), {
      aws: ["nvme", "ena"],
      azure: ["hv_vmbus", "hv_storvsc", "hv_netvsc"],
      vsphere: ["vmw_pvscsi"],
      local: ["virtio_pci", "virtio_blk|virtio_scsi", "virtio_net"],
      kvm: ["virtio_pci", "virtio_blk|virtio_scsi", "virtio_net"],
    });
    assert.ok(report.readiness.every((r) => !r.ready));
    const fstab = report.findings.filter((f) => f.code === "INSPECT_FSTAB_DEVICE_NAME");
    assert.deepEqual(
      fstab.map((f) => f.evidencePath),
      ["p1:/etc/fstab:3", "p1:/etc/fstab:4"],
    );
    // /dev/sda1 is partition 1 of this disk, so the hint names its UUID; /dev/xvdb1 is another disk.
    assert.equal(fstab[0]?.fixHint, `replace /dev/sda1 with UUID=${ROOT_UUID}`);
    assert.doesNotMatch(fstab[1]?.fixHint ?? "", /UUID=6a1f/);
    assert.equal(codes(report).filter((c) => c === "INSPECT_GRUB_DEVICE_NAME").length, 2);
    const driverErrors = report.findings.filter((f) => f.code === "INSPECT_DRIVER_MISSING");
    assert.equal(driverErrors.length, 2 + 3 + 1 + 3 + 3);
    assert.ok(driverErrors.every((f) => f.evidencePath === `p1:/lib/modules/${images.kernel.version}` && f.fixHint !== undefined && f.target !== undefined));
  });

  it("GIVEN the BIOS image on vSphere with a SATA boot disk WHEN inspected THEN ahci satisfies the storage rule", async () => {
    const image = await images.build(BIOS_NONE, "bios-none");
    const report = await inspectFile(image.path, { targets: ["vsphere"], diskBus: "sata" });
    assert.deepEqual(report.readiness, [{ target: "vsphere", ready: true, missingDrivers: [] }]);
    assert.ok(!report.findings.some((f) => f.code === "INSPECT_DRIVER_MISSING"));
  });

  it("GIVEN a kernel with virtio built in and /boot on its own ext2 partition WHEN inspected THEN KVM is ready through modules.builtin and grub.cfg is read from /boot", async () => {
    const image = await images.build(UEFI_BUILTIN_VIRTIO, "uefi-builtin");
    const report = await inspectFile(image.path);
    assert.deepEqual(
      report.filesystems.map((f) => [f.partition, f.type, f.uuid, f.role]),
      [
        [1, "vfat", ESP_SERIAL, "esp"],
        [2, "ext2", BOOT_UUID, "boot"],
        [3, "ext4", ROOT_UUID, "root"],
      ],
    );
    assert.deepEqual(report.kernels[0]?.drivers, { ahci: "module", virtio_blk: "builtin", virtio_net: "builtin", virtio_pci: "builtin" });
    assert.deepEqual(missing(report).kvm, []);
    assert.deepEqual(missing(report).local, []);
    assert.deepEqual(missing(report).aws, ["nvme", "ena"]);
    assert.ok(!codes(report).includes("INSPECT_NO_GRUB_CONFIG"), "grub.cfg on the /boot partition was found");
    assert.ok(!codes(report).includes("INSPECT_FSTAB_UNKNOWN_UUID"), "every fstab UUID is on this disk");
  });

  it("GIVEN workload firmware and architecture WHEN they contradict the disk THEN firmware findings are errors", async () => {
    const bios = await images.build(BIOS_NONE, "bios-none");
    const uefi = await images.build(UEFI_ALL, "uefi-all");
    assert.ok(codes(await inspectFile(bios.path, { firmware: "uefi" }), "error").includes("INSPECT_FIRMWARE_MISMATCH"));
    assert.ok(codes(await inspectFile(uefi.path, { firmware: "bios" }), "error").includes("INSPECT_FIRMWARE_MISMATCH"));
    assert.ok(!codes(await inspectFile(uefi.path, { firmware: "uefi" })).includes("INSPECT_FIRMWARE_MISMATCH"));
    const arm = await inspectFile(bios.path, { architecture: "arm64", targets: ["aws", "kvm"] });
    assert.deepEqual(
      arm.findings.filter((f) => f.code === "INSPECT_FIRMWARE_UNSUPPORTED").map((f) => f.target),
      ["aws"],
    );
  });

  it("GIVEN the ext4 reader on the root WHEN reading through symlinks, an htree directory and a slow symlink THEN it returns the files' bytes", async () => {
    const image = await images.build(UEFI_ALL, "uefi-all");
    const disk = await openDisk(image.path);
    try {
      const table = await readPartitionTable(disk);
      const root = table.partitions.find((p) => p.number === image.rootPartition);
      assert.ok(root !== undefined);
      const fs = await Ext4Reader.open(subVolume(disk, root.startBytes, root.lengthBytes, "p2"));
      // /etc/os-release → ../usr/lib/os-release; /lib → usr/lib (merged /usr).
      assert.equal((await fs.readFile("/etc/os-release", 4096))?.toString(), DEBIAN_12_OS_RELEASE);
      assert.equal((await fs.readFile("/etc/long-link", 4096))?.toString(), DEBIAN_12_OS_RELEASE);
      assert.ok(((await fs.resolve("/etc/long-link", { followLast: false }))?.sizeBytes ?? 0) >= 60, "a slow symlink");
      const usrLib = await fs.resolve("/usr/lib");
      // EXT4_INDEX_FL (0x1000): e2fsck -D indexed the 400-entry directory as an htree.
      assert.equal((usrLib?.flags ?? 0) & 0x1000, 0x1000);
      assert.equal((await fs.readFile("/lib/filler-0399.conf", 64))?.toString(), "# filler 399\n");
      const modules = await fs.listTree(`/lib/modules/${images.kernel.version}/kernel`, { maxFiles: 1000, maxDepth: 12 });
      assert.ok(modules?.files.includes("drivers/net/ethernet/amazon/ena/ena.ko.xz"), JSON.stringify(modules?.files));
      assert.equal(modules?.truncated, false);
      assert.equal(await fs.readFile("/etc/missing", 64), undefined);
    } finally {
      await disk.close();
    }
  });

  it("GIVEN an NTFS volume with Windows/System32 WHEN inspected THEN it is Windows, and its drivers decide readiness", async () => {
    const path = await images.windows("windows");
    const report = await inspectFile(path);
    assert.equal(report.os.family, "windows");
    assert.equal(report.filesystems[0]?.role, "windows");
    assert.deepEqual(missing(report), {
      aws: ["stornvme.sys|awsnvme.sys", "ena.sys"],
      azure: [],
      vsphere: ["pvscsi.sys", "vmxnet3.sys|e1g6032e.sys|e1i63x64.sys"],
      local: ["viostor.sys|vioscsi.sys", "netkvm.sys"],
      kvm: ["viostor.sys|vioscsi.sys", "netkvm.sys"],
    });
    const disk = await openDisk(path);
    try {
      const table = await readPartitionTable(disk);
      const part = table.partitions[0];
      assert.ok(part !== undefined);
      const ntfs = await NtfsReader.open(subVolume(disk, part.startBytes, part.lengthBytes, "p1"));
      const system32 = await ntfs.resolve("windows/SYSTEM32");
      assert.ok(system32 !== undefined);
      const names = (await ntfs.listDirectory(system32)).map((e) => e.name);
      assert.ok(names.includes("library-with-a-long-name-119.dll") && names.includes("drivers"), names.join(","));
      // 120 long names do not fit a resident $INDEX_ROOT: the listing came from INDX blocks.
      assert.ok(ntfs.indexBlocksRead > 0);
    } finally {
      await disk.close();
    }
  });

  it("GIVEN the same spec built twice WHEN hashed THEN the images are identical (deterministic builder)", async () => {
    const first = await images.build(BIOS_NONE, "bios-none");
    const second = await buildGuestImage(images.dir, images.kernel, BIOS_NONE, "bios-none-again");
    assert.equal(await fileSha256(second.path), await fileSha256(first.path));
  });

  it("GIVEN `portable inspect --guest` WHEN run on a ready and an unready image THEN it prints the report and exits 0 or 1", async () => {
    const ready = await images.build(UEFI_ALL, "uefi-all");
    const unready = await images.build(BIOS_NONE, "bios-none");
    const log = mock.method(console, "log", () => {});
    try {
      assert.equal(await inspectGuestCommand(["--guest", ready.path, "--target", "aws", "--firmware", "uefi"]), 0);
      const text = String(log.mock.calls.at(-1)?.arguments[0]);
      assert.match(text, /os: Debian GNU\/Linux 12 \(bookworm\) \(debian 12\)/);
      assert.match(text, /boot mode: uefi \(gpt partition table\)/);
      assert.match(text, /aws {6}ready/);

      assert.equal(await inspectGuestCommand(["--guest", unready.path, "--target", "aws,azure", "--json"]), 1);
      const json = JSON.parse(String(log.mock.calls.at(-1)?.arguments[0])) as ReadinessReport & { image: string };
      assert.equal(json.image, unready.path);
      assert.deepEqual(
        json.readiness.map((r) => [r.target, r.ready]),
        [
          ["aws", false],
          ["azure", false],
        ],
      );
    } finally {
      log.mock.restore();
    }
    await assert.rejects(
      () => inspectGuestCommand(["--guest", ready.path, "--target", "gcp"]),
      (err: unknown) => isPortableError(err) && err.code === "USAGE",
    );
  });
});
