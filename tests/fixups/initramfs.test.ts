// The initramfs lister (sdk/inspect/initramfs.ts) on archives built here byte by byte in the
// newc format, as the kernel reads them: an uncompressed early archive followed by a compressed
// main one, gzip and zstd, and hostile ones (bad magic, truncation, absurd lengths, xz).
import assert from "node:assert/strict";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { describe, it } from "node:test";
import { listInitramfs } from "../../sdk/inspect/initramfs.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { inspectGuest } from "../../sdk/inspect/inspect.ts";
import type { DiskBus } from "../../sdk/spec/workload.ts";
import { buildBootImage } from "../harness/boot-image.ts";
import { buildDebianGuest } from "../harness/debian-guest.ts";
import { isPortableError } from "../../sdk/errors.ts";

interface Member {
  readonly name: string;
  readonly data?: Buffer;
  readonly mode?: number;
}

const hex = (n: number): string => n.toString(16).padStart(8, "0");
const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);

/** One newc archive, TRAILER!!! included. */
function newc(members: readonly Member[], options: { nameBytesOverride?: number } = {}): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const member of [...members, { name: "TRAILER!!!" }]) {
    const data = member.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${member.name}\0`);
    const fields = [ino++, member.mode ?? 0o100644, 0, 0, 1, 0, data.length, 0, 0, 0, 0, options.nameBytesOverride ?? name.length, 0];
    const header = Buffer.from(`070701${fields.map(hex).join("")}`, "latin1");
    parts.push(header, name, pad4(header.length + name.length), data, pad4(data.length));
  }
  return Buffer.concat(parts);
}

const module = (path: string, bytes = 100): Member => ({ name: `usr/lib/modules/6.1.0-50-amd64/kernel/${path}`, data: Buffer.alloc(bytes, 7) });

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isPortableError(error), String(error));
    return error.code;
  }
  return "resolved";
}

describe("initramfs module listing", () => {
  it("GIVEN Debian's layout (an early uncompressed archive, then a gzip one) WHEN listed THEN modules of both count, with their suffixes and dashes normalised", async () => {
    const early = newc([{ name: "kernel/x86/microcode/GenuineIntel.bin", data: Buffer.alloc(1000, 1) }]);
    const main = gzipSync(newc([
      { name: "usr", mode: 0o40755 },
      module("drivers/ata/ahci.ko"),
      module("drivers/scsi/vmw_pvscsi.ko.xz"),
      module("drivers/net/hyperv/hv-netvsc.ko.zst"),
      { name: "usr/bin/busybox", data: Buffer.alloc(5000, 3) },
    ]));
    // The kernel accepts zero padding between archives.
    const listing = await listInitramfs(Buffer.concat([early, Buffer.alloc(512 - (early.length % 512)), main]));
    assert.deepEqual(listing.archives, ["none", "gzip"]);
    assert.deepEqual([...listing.modules].sort(), ["ahci", "hv_netvsc", "vmw_pvscsi"]);
    assert.equal(listing.members, 6);
  });

  it("GIVEN a zstd archive with a 16 MiB member WHEN listed THEN the member's data is skipped and the names after it are read", async () => {
    const image = zstdCompressSync(newc([{ name: "big.bin", data: Buffer.alloc(16 * 1024 * 1024, 9) }, module("drivers/block/virtio_blk.ko"), module("drivers/nvme/host/nvme.ko")]));
    const listing = await listInitramfs(image);
    assert.deepEqual(listing.archives, ["zstd"]);
    assert.deepEqual([...listing.modules].sort(), ["nvme", "virtio_blk"]);
  });

  it("GIVEN hostile archives WHEN listed THEN each ends in a coded error", async () => {
    const good = newc([module("drivers/ata/ahci.ko")]);
    assert.equal(await codeOf(listInitramfs(Buffer.from("this is not an archive at all"))), "INSPECT_INITRAMFS_UNSUPPORTED");
    assert.equal(await codeOf(listInitramfs(good.subarray(0, good.length - 40))), "INSPECT_INITRAMFS_INVALID");
    assert.equal(await codeOf(listInitramfs(gzipSync(good.subarray(0, 200)))), "INSPECT_INITRAMFS_INVALID");
    assert.equal(await codeOf(listInitramfs(newc([module("a.ko")], { nameBytesOverride: 100_000 }))), "INSPECT_INITRAMFS_INVALID");
    const badField = Buffer.from(good);
    badField.write("zzzzzzzz", 6 + 6 * 8, "latin1");
    assert.equal(await codeOf(listInitramfs(badField)), "INSPECT_INITRAMFS_INVALID");
    const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(64)]);
    assert.equal(await codeOf(listInitramfs(xz)), "INSPECT_INITRAMFS_UNSUPPORTED");
    const corrupt = gzipSync(good);
    corrupt.fill(0xff, 20, 40);
    assert.equal(await codeOf(listInitramfs(corrupt)), "INSPECT_INITRAMFS_INVALID");
  });
});

describe("the initramfs in readiness", { timeout: 600_000 }, () => {
  async function local(path: string, diskBus: DiskBus) {
    const disk = await openDisk(path, { format: "raw" });
    try {
      const report = await inspectGuest(disk, { targets: ["local"], diskBus });
      return { ready: report.readiness[0]?.ready, findings: report.findings.filter((f) => f.code.startsWith("INSPECT_INITRAMFS")) };
    } finally {
      await disk.close();
    }
  }

  it("GIVEN the VMware guest WHEN judged for the local target per bus THEN its initramfs decides: SATA is ready, NVMe lacks nvme", async () => {
    const guest = await buildDebianGuest();
    const sata = await local(guest.path, "sata");
    assert.equal(sata.ready, true, JSON.stringify(sata.findings));
    const nvme = await local(guest.path, "nvme");
    assert.equal(nvme.ready, false);
    assert.deepEqual(nvme.findings.map((f) => [f.code, f.drivers]), [["INSPECT_INITRAMFS_DRIVER_MISSING", ["nvme"]]]);
  });

  it("GIVEN a guest whose initramfs loads no module (a custom /init) WHEN judged THEN its drivers are not held against it, and it says so", async () => {
    const image = await buildBootImage({ firmware: "bios" });
    const sata = await local(image.path, "sata");
    assert.equal(sata.ready, true);
    assert.deepEqual(sata.findings.map((f) => [f.code, f.severity]), [["INSPECT_INITRAMFS_NO_MODULES", "info"]]);
  });
});
