// Guest fixups for real (issue 21): libguestfs on a qcow2 overlay of a real Debian 12 guest as
// VMware leaves it (tests/harness/debian-guest.ts), and test boots in QEMU on the target's bus.
// - Without fixups the guest does not boot on virtio: a coded result (its initramfs finds no root).
// - With fixups "auto" it boots (the marker on the serial console), the view the pipe reads
//   carries the changes (inspection no longer finds the problems), and the source is unchanged.
// - The other declared fixups (serial console, packages, services, a file) land in the view.
// - A source QEMU cannot open itself is read through our NBD export, with the same result.
// - Hostile guests (no initramfs tool, an unreadable root, a read-only filesystem) and a machine
//   without libguestfs end in coded errors, the source unchanged.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFile, mkdtemp, open, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDisk } from "../../sdk/disk/open.ts";
import type { DiskSource } from "../../sdk/disk/types.ts";
import { isPortableError, type PortableError } from "../../sdk/errors.ts";
import { applyFixups, fixedSource, type FixedSourceRequest } from "../../sdk/fixups/index.ts";
import { Ext4Reader } from "../../sdk/inspect/ext4.ts";
import { inspectGuest } from "../../sdk/inspect/inspect.ts";
import { subVolume } from "../../sdk/inspect/volume.ts";
import type { Fixup } from "../../sdk/spec/fixups.ts";
import { buildDebianGuest, DEBIAN_GUEST_MARKER, type DebianGuest } from "../harness/debian-guest.ts";
import { fileSha256 } from "../harness/disk.ts";

/** The root filesystem starts at 1 MiB (tests/harness/boot-image.ts assembleBiosDisk). */
const ROOT_OFFSET = 1024 * 1024;

async function rejection(promise: Promise<unknown>): Promise<PortableError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isPortableError(error), String(error));
    return error;
  }
  assert.fail("expected a coded error");
}

describe("guest fixups on a real Debian guest (libguestfs, QEMU under TCG)", { timeout: 1_800_000 }, () => {
  let guest: DebianGuest;
  let dir: string;
  let image: string;
  let imageSha: string;
  let source: DiskSource;

  const request = (overrides: Partial<FixedSourceRequest>): FixedSourceRequest => ({
    image,
    format: "raw",
    source,
    policy: "none",
    target: "local",
    firmware: "bios",
    workDir: join(dir, `work-${Math.random().toString(36).slice(2)}`),
    ...overrides,
  });

  before(async () => {
    guest = await buildDebianGuest();
    dir = await mkdtemp(join(tmpdir(), "pw-fixups-"));
    image = join(dir, "guest.raw");
    await copyFile(guest.path, image);
    imageSha = await fileSha256(image);
    source = await openDisk(image, { format: "raw" });
  });
  after(async () => {
    await source?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN the VMware guest and no fixups WHEN test-booted on virtio THEN it fails with TEST_BOOT_FAILED: its initramfs finds no root", async () => {
    const error = await rejection(fixedSource(request({ testBoot: { marker: DEBIAN_GUEST_MARKER, timeoutSeconds: 300 } })));
    assert.equal(error.code, "TEST_BOOT_FAILED");
    assert.equal(error.context.result, "boot-error");
    assert.match(error.message, /root device \/dev\/sda1 was not found/);
    assert.match(String(error.context.console), /Gave up waiting for root file system device/);
    assert.equal(await fileSha256(image), imageSha);
  });

  it("GIVEN fixups auto WHEN applied and test-booted on virtio THEN it boots, the copied view carries the changes, and the source is unchanged", async () => {
    const steps: string[] = [];
    const workDir = join(dir, "auto");
    const fixed = await fixedSource(request({ policy: "auto", testBoot: { marker: DEBIAN_GUEST_MARKER, timeoutSeconds: 300 }, workDir, onStep: (line) => steps.push(line) }));
    try {
      assert.deepEqual(fixed.fixups.map((f) => f.kind), ["initramfs-drivers", "device-names"]);
      const drivers = fixed.fixups[0]?.kind === "initramfs-drivers" ? fixed.fixups[0].drivers : [];
      assert.ok(drivers.includes("virtio_blk") && drivers.includes("virtio_pci"), drivers.join(","));
      assert.equal(fixed.testBoot?.kind, "booted");
      assert.match(fixed.outcomes[0]?.detail ?? "", /update-initramfs|rebuilt/);
      assert.match(fixed.outcomes[1]?.detail ?? "", new RegExp(`fstab /dev/sda1 → UUID=${guest.rootUuid}.*root=/dev/sda1 → root=UUID=${guest.rootUuid}`));
      assert.ok(fixed.seconds > 0 && fixed.outcomes.every((o) => o.seconds > 0));
      assert.equal(steps.filter((s) => s.startsWith("fixup ")).length, 2);
      // What the pipe reads is the fixed guest: the findings the fixups answer are gone there.
      assert.equal(fixed.source.format, "qcow2");
      assert.equal(fixed.source.virtualSizeBytes, source.virtualSizeBytes);
      const before = await inspectGuest(source, { targets: ["local"] });
      const after = await inspectGuest(fixed.source, { targets: ["local"] });
      const codes = (r: typeof before) => r.findings.map((f) => f.code);
      assert.ok(codes(before).includes("INSPECT_INITRAMFS_DRIVER_MISSING") && codes(before).includes("INSPECT_FSTAB_DEVICE_NAME"), codes(before).join(","));
      assert.ok(!codes(after).includes("INSPECT_INITRAMFS_DRIVER_MISSING") && !codes(after).includes("INSPECT_FSTAB_DEVICE_NAME") && !codes(after).includes("INSPECT_GRUB_DEVICE_NAME"), codes(after).join(","));
      assert.equal(after.readiness.find((r) => r.target === "local")?.ready, true);
    } finally {
      await fixed.release();
    }
    assert.equal(existsSync(workDir), false, "the overlay goes with release()");
    assert.equal(await fileSha256(image), imageSha);
  });

  /** A file of the root filesystem as a disk view holds it (our ext4 reader, no mount). */
  async function readRootFile(disk: DiskSource, path: string): Promise<string | undefined> {
    const fs = await Ext4Reader.open(subVolume(disk, ROOT_OFFSET, disk.virtualSizeBytes - ROOT_OFFSET, "p1"));
    return (await fs.readFile(path, 1024 * 1024))?.toString("utf8");
  }

  it("GIVEN the other declared fixups WHEN applied THEN the console, the packages, the services and the file are as declared in the copied view", async () => {
    const fixed = await fixedSource(request({
      policy: [
        { kind: "serial-console", device: "ttyS1", baud: 9600 },
        { kind: "remove-packages", packages: ["grub-pc-bin", "open-vm-tools"] },
        { kind: "disable-services", services: ["vmtoolsd"] },
        { kind: "write-file", path: "/etc/motd", content: "moved by portable-workload\n", mode: 0o600 },
      ],
    }));
    try {
      assert.deepEqual(fixed.outcomes.map((o) => o.kind), ["serial-console", "remove-packages", "disable-services", "write-file"]);
      assert.match(fixed.outcomes[1]?.detail ?? "", /removed grub-pc-bin; not installed: open-vm-tools/);
      assert.match(await readRootFile(fixed.source, "/boot/grub/grub.cfg") ?? "", /linux \/boot\/vmlinuz-\S+ root=\/dev\/sda1 .* console=ttyS1,9600\n/);
      assert.match(await readRootFile(fixed.source, "/etc/default/grub") ?? "", /^GRUB_CMDLINE_LINUX="console=ttyS0,115200 rootdelay=10 console=ttyS1,9600"$/m);
      assert.doesNotMatch(await readRootFile(fixed.source, "/var/lib/dpkg/status") ?? "", /^Package: grub-pc-bin$/m);
      assert.match(await readRootFile(source, "/var/lib/dpkg/status") ?? "", /^Package: grub-pc-bin$/m, "the source keeps it");
      assert.equal(await readRootFile(fixed.source, "/etc/motd"), "moved by portable-workload\n");
    } finally {
      await fixed.release();
    }
    assert.equal(await fileSha256(image), imageSha);
  });

  it("GIVEN a file to write into a folder the guest lacks WHEN applied THEN FIXUP_WRITE_FILE_PARENT", async () => {
    const error = await rejection(applyFixups({ image, format: "raw", fixups: [{ kind: "write-file", path: "/opt/vendor/agent.conf", content: "x", mode: 0o644 }], workDir: join(dir, "no-parent") }));
    assert.equal(error.code, "FIXUP_WRITE_FILE_PARENT");
    assert.equal(await fileSha256(image), imageSha);
  });

  /** A copy of the guest changed by e2fsprogs on its root filesystem (offset syntax, no mount). */
  async function hostileCopy(name: string, command: string, args: string[]): Promise<{ path: string; sha: string }> {
    const path = join(dir, `${name}.raw`);
    await copyFile(guest.path, path);
    execFileSync(command, [...args, `${path}?offset=${ROOT_OFFSET}`], { stdio: "ignore" });
    return { path, sha: await fileSha256(path) };
  }

  const drivers: Fixup[] = [{ kind: "initramfs-drivers", drivers: ["virtio_blk"] }];

  it("GIVEN a guest without an initramfs tool WHEN drivers are added THEN FIXUP_NO_INITRAMFS_TOOL, and the source is unchanged", async () => {
    const copy = await hostileCopy("no-tool", "debugfs", ["-w", "-R", "rm /usr/sbin/update-initramfs"]);
    const error = await rejection(applyFixups({ image: copy.path, format: "raw", fixups: drivers, workDir: join(dir, "no-tool") }));
    assert.equal(error.code, "FIXUP_NO_INITRAMFS_TOOL");
    assert.equal(existsSync(join(dir, "no-tool")), false);
    assert.equal(await fileSha256(copy.path), copy.sha);
  });

  it("GIVEN a guest whose root filesystem is unreadable WHEN fixed up THEN FIXUP_NO_OS, and the source is unchanged", async () => {
    const path = join(dir, "unreadable.raw");
    await copyFile(guest.path, path);
    const handle = await open(path, "r+");
    await handle.write(Buffer.alloc(1024), 0, 1024, ROOT_OFFSET + 1024);
    await handle.close();
    const sha = await fileSha256(path);
    const error = await rejection(applyFixups({ image: path, format: "raw", fixups: drivers, workDir: join(dir, "unreadable") }));
    assert.equal(error.code, "FIXUP_NO_OS");
    assert.equal(await fileSha256(path), sha);
  });

  it("GIVEN a guest whose root filesystem is read-only WHEN fixed up THEN FIXUP_READ_ONLY, and the source is unchanged", async () => {
    const copy = await hostileCopy("read-only", "tune2fs", ["-O", "read-only"]);
    const error = await rejection(applyFixups({ image: copy.path, format: "raw", fixups: drivers, workDir: join(dir, "read-only") }));
    assert.equal(error.code, "FIXUP_READ_ONLY", error.message);
    assert.equal(await fileSha256(copy.path), copy.sha);
  });

  it("GIVEN a source that is no local file WHEN fixed up THEN QEMU reads it through our NBD export, the view carries the change, and the source is unchanged", async () => {
    const { image: _image, ...withoutImage } = request({ policy: [{ kind: "device-names" }] });
    const fixed = await fixedSource(withoutImage);
    try {
      assert.match(fixed.outcomes[0]?.detail ?? "", new RegExp(`fstab /dev/sda1 → UUID=${guest.rootUuid}`));
      const report = await inspectGuest(fixed.source, { targets: ["local"] });
      assert.ok(!report.findings.some((f) => f.code === "INSPECT_FSTAB_DEVICE_NAME" || f.code === "INSPECT_GRUB_DEVICE_NAME"), report.findings.map((f) => f.code).join(","));
    } finally {
      await fixed.release();
    }
    assert.equal(await fileSha256(image), imageSha);
  });

  it("GIVEN a machine without libguestfs WHEN fixups run THEN FIXUP_ENGINE_MISSING names the package, and nothing is made", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(dir, "empty-bin");
    try {
      const error = await rejection(applyFixups({ image, format: "raw", fixups: drivers, workDir: join(dir, "no-guestfs") }));
      assert.equal(error.code, "FIXUP_ENGINE_MISSING");
      assert.match(error.message, /libguestfs-tools/);
    } finally {
      process.env.PATH = path;
    }
    assert.equal(existsSync(join(dir, "no-guestfs")), false);
  });
});
