// Acceptance: a bootable Debian disk, converted by our engine through raw → vmdk
// (streamOptimized) → vhd (fixed) → vhdx → qcow2, still boots and prints its marker under BIOS
// and UEFI; a copy whose boot structures are zeroed ends as "no-bootable-device", quickly; and
// secure boot refusing our unsigned loader is a firmware error, not a hang.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { resolveAccel } from "../../../sdk/clouds/local/accel.ts";
import { classifyConsole, testBoot, type TestBootResult } from "../../../sdk/clouds/local/test-boot.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { formatByName } from "../../../sdk/disk/formats/index.ts";
import { createFileTarget } from "../../../sdk/disk/io.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { buildBootImage, copyWithBootSectorZeroed, type BootFirmware } from "../../harness/boot-image.ts";
import { qemuImg, withTempDir } from "../../harness/disk.ts";

/** A TCG boot of the test image takes 8-12 s on this 2-core box; a loaded CI host gets room. */
const BOOT_TIMEOUT_MS = 120_000;
/** Failure verdicts come from firmware messages within seconds; a generous bound only stops a hang. */
const FAILURE_TIMEOUT_MS = 60_000;

const CHAIN: Array<[format: string, options: Record<string, string>]> = [
  ["vmdk", { subformat: "streamOptimized" }],
  ["vhd", { subformat: "fixed" }],
  ["vhdx", {}],
  ["qcow2", {}],
];

async function convertChain(dir: string, raw: string): Promise<string> {
  let current = raw;
  for (const [index, [format, options]] of CHAIN.entries()) {
    const next = join(dir, `${index + 1}.${format}`);
    const source = await openDisk(current);
    try {
      const sink = await formatByName(format).createWriter(await createFileTarget(next), { ...options, virtualSizeBytes: source.virtualSizeBytes });
      await convert(source, sink);
    } finally {
      await source.close();
    }
    current = next;
  }
  return current;
}

function explain(result: TestBootResult): string {
  return `${result.kind} (${"detail" in result ? result.detail : ""}) accel=${result.accel}\n${result.console}`;
}

describe("local: test boot", () => {
  for (const firmware of ["bios", "uefi"] as const satisfies readonly BootFirmware[]) {
    it(`GIVEN the ${firmware} test image converted raw→vmdk(streamOptimized)→vhd(fixed)→vhdx→qcow2 WHEN test-booted THEN it prints its marker`, { timeout: 300_000 }, async () => {
      const image = await buildBootImage({ firmware });
      await withTempDir(async (dir) => {
        const qcow2 = await convertChain(dir, image.path);
        // The peer agrees the last hop holds the original bytes, so a boot proves the chain.
        await qemuImg("compare", "-f", "raw", "-F", "qcow2", image.path, qcow2);
        const result = await testBoot(qcow2, { firmware, marker: image.marker, timeoutMs: BOOT_TIMEOUT_MS });
        assert.equal(result.kind, "booted", explain(result));
        assert.ok(result.kind === "booted" && result.bootMs > 0);
        assert.match(result.console, new RegExp(`^${image.marker}$`, "m"));
      });
    });

    it(`GIVEN the ${firmware} test image with its boot sector zeroed WHEN test-booted THEN the result is no-bootable-device`, { timeout: 120_000 }, async () => {
      const image = await buildBootImage({ firmware });
      await withTempDir(async (dir) => {
        const broken = join(dir, "broken.raw");
        await copyWithBootSectorZeroed(image, broken);
        const result = await testBoot(broken, { firmware, marker: image.marker, timeoutMs: FAILURE_TIMEOUT_MS, format: "raw" });
        assert.equal(result.kind, "no-bootable-device", explain(result));
        assert.match(result.kind === "no-bootable-device" ? result.detail : "", firmware === "bios" ? /SeaBIOS: No bootable device/ : /OVMF found nothing to boot .*Not Found/);
      });
    });
  }

  it("GIVEN the uefi test image (unsigned GRUB) WHEN booted with secure boot and Microsoft keys THEN the firmware refuses it", { timeout: 120_000 }, async () => {
    const image = await buildBootImage({ firmware: "uefi" });
    const result = await testBoot(image.path, { firmware: "uefi", secureBoot: true, marker: image.marker, timeoutMs: FAILURE_TIMEOUT_MS });
    assert.equal(result.kind, "firmware-error", explain(result));
    assert.match(result.kind === "firmware-error" ? result.detail : "", /secure boot refused Boot\d{4} .*Access Denied/);
  });

  it("GIVEN a marker that never appears WHEN the guest powers off THEN the result is boot-error, not booted", { timeout: 120_000 }, async () => {
    const image = await buildBootImage({ firmware: "bios" });
    const result = await testBoot(image.path, { firmware: "bios", marker: "NEVER-PRINTED", timeoutMs: BOOT_TIMEOUT_MS });
    assert.equal(result.kind, "boot-error", explain(result));
    assert.match(result.kind === "boot-error" ? result.detail : "", /qemu ended/);
  });

  it("GIVEN a short timeout WHEN the guest is still booting THEN the result is timeout", { timeout: 60_000 }, async () => {
    const image = await buildBootImage({ firmware: "bios" });
    const result = await testBoot(image.path, { firmware: "bios", marker: image.marker, timeoutMs: 200 });
    assert.equal(result.kind, "timeout", explain(result));
  });

  it("GIVEN the build twice WHEN nothing changed THEN the cached image is reused (same path)", async () => {
    const a = await buildBootImage({ firmware: "uefi" });
    const b = await buildBootImage({ firmware: "uefi" });
    assert.equal(a.path, b.path);
    assert.deepEqual(a.partitions.map((p) => p.role), ["esp", "linux"]);
  });

  it("GIVEN auto acceleration WHEN resolved THEN it names kvm or tcg with a reason", async () => {
    const accel = await resolveAccel("auto");
    assert.ok(accel.accel === "kvm" || accel.accel === "tcg");
    assert.ok(accel.reason.length > 0);
  });
});

describe("local: console classification", () => {
  // Lines as Debian's OVMF (edk2 2022.11) and SeaBIOS 1.16 print them.
  const OVMF_SHELL = [
    'BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0): Not Found',
    'BdsDxe: loading Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)',
  ].join("\r\n");
  const OVMF_SECURE = [
    'BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0): Access Denied',
    'BdsDxe: failed to start Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1): Security Violation',
    "BdsDxe: No bootable option or device was found.",
  ].join("\r\n");

  it("GIVEN OVMF falling back to its shell THEN no-bootable-device names the failed option", () => {
    assert.deepEqual(classifyConsole(`\u001b[2J${OVMF_SHELL}`, "", "MARKER", "uefi"), { kind: "no-bootable-device", detail: 'OVMF found nothing to boot (Boot0001 "UEFI Misc Device": Not Found)' });
  });

  it("GIVEN OVMF refusing a loader under secure boot THEN firmware-error, and the shell's own refusal is not counted", () => {
    assert.deepEqual(classifyConsole(OVMF_SECURE, "", "MARKER", "uefi"), { kind: "firmware-error", detail: 'OVMF secure boot refused Boot0001 "UEFI Misc Device": Access Denied' });
  });

  it("GIVEN OVMF still trying options THEN no verdict yet", () => {
    assert.equal(classifyConsole('BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)', "", "MARKER", "uefi"), undefined);
  });

  it("GIVEN SeaBIOS's debug port saying no bootable device THEN no-bootable-device", () => {
    assert.deepEqual(classifyConsole("", "Booting from Hard Disk...\nBoot failed: not a bootable disk\n\nenter handle_18:\n  NULL\nNo bootable device.\n", "MARKER", "bios"), {
      kind: "no-bootable-device",
      detail: "SeaBIOS: No bootable device (tried Hard Disk)",
    });
  });

  it("GIVEN the marker or a kernel panic THEN booted or boot-error", () => {
    assert.deepEqual(classifyConsole("Welcome\r\nPORTABLE-BOOT-OK\r\n", "", "PORTABLE-BOOT-OK", "bios"), { kind: "booted" });
    assert.equal(classifyConsole("linux /boot/vmlinuz marker=PORTABLE-BOOT-OK\r\n", "", "PORTABLE-BOOT-OK", "bios"), undefined, "only a line of its own counts");
    assert.equal(classifyConsole("[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n", "", "MARKER", "uefi")?.kind, "boot-error");
  });
});
