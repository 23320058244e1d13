// Filesystem identification by superblock, on filesystems made by each one's own mkfs (sparse
// files, nothing mounted) and an LVM2 label laid out by hand (lvm2 is not installed here).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { open, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { withTempDir } from "../harness/disk.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { identifyFilesystem, type Identified } from "../../sdk/inspect/filesystems.ts";
import { wholeDisk } from "../../sdk/inspect/volume.ts";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const UUID = "01234567-89ab-4cde-8f01-23456789abcd";

async function identifyFile(path: string): Promise<Identified> {
  const disk = await openDisk(path, { format: "raw" });
  try {
    return await identifyFilesystem(wholeDisk(disk));
  } finally {
    await disk.close();
  }
}

async function blank(path: string, sizeBytes: number): Promise<string> {
  await writeFile(path, "");
  await truncate(path, sizeBytes);
  return path;
}

const MAKERS: readonly { type: string; sizeBytes: number; make: (path: string) => string[]; expect: Identified }[] = [
  { type: "ext2", sizeBytes: 8 * MiB, make: (p) => ["mke2fs", "-q", "-F", "-t", "ext2", "-U", UUID, "-L", "old", p], expect: { type: "ext2", uuid: UUID, label: "old" } },
  { type: "ext3", sizeBytes: 8 * MiB, make: (p) => ["mke2fs", "-q", "-F", "-t", "ext3", "-U", UUID, p], expect: { type: "ext3", uuid: UUID } },
  { type: "ext4", sizeBytes: 8 * MiB, make: (p) => ["mke2fs", "-q", "-F", "-t", "ext4", "-U", UUID, "-L", "root", p], expect: { type: "ext4", uuid: UUID, label: "root" } },
  // mkfs.xfs refuses filesystems below 300 MiB; the file stays sparse.
  { type: "xfs", sizeBytes: 320 * MiB, make: (p) => ["mkfs.xfs", "-q", "-f", "-m", `uuid=${UUID}`, "-L", "data", p], expect: { type: "xfs", uuid: UUID, label: "data" } },
  { type: "btrfs", sizeBytes: 128 * MiB, make: (p) => ["mkfs.btrfs", "-q", "-f", "-U", UUID, "-L", "pool", p], expect: { type: "btrfs", uuid: UUID, label: "pool" } },
  { type: "vfat", sizeBytes: 8 * MiB, make: (p) => ["mkfs.vfat", "--invariant", "-i", "DEADBEEF", "-n", "ESP", p], expect: { type: "vfat", uuid: "DEAD-BEEF", label: "ESP" } },
  { type: "swap", sizeBytes: 8 * MiB, make: (p) => ["mkswap", "-U", UUID, "-L", "swap0", p], expect: { type: "swap", uuid: UUID, label: "swap0" } },
];

describe("filesystem identification", () => {
  for (const maker of MAKERS) {
    it(`GIVEN a ${maker.type} made by its mkfs WHEN identified THEN type, UUID and label match`, async () => {
      await withTempDir(async (dir) => {
        const path = await blank(join(dir, `${maker.type}.img`), maker.sizeBytes);
        const [command, ...args] = maker.make(path);
        await run(command ?? "false", args, { timeout: 60_000 });
        assert.deepEqual(await identifyFile(path), maker.expect);
      });
    });
  }

  it("GIVEN an NTFS made by mkntfs WHEN identified THEN it is ntfs with its serial number", async () => {
    await withTempDir(async (dir) => {
      const path = await blank(join(dir, "ntfs.img"), 8 * MiB);
      await run("mkntfs", ["-F", "-q", "-Q", "-L", "win", path], { timeout: 60_000 });
      const id = await identifyFile(path);
      assert.equal(id.type, "ntfs");
      assert.match(id.uuid ?? "", /^[0-9A-F]{16}$/);
    });
  });

  it("GIVEN an LVM2 label in sector 1 (lvm2 format_text/layout.h) WHEN identified THEN it is an lvm2-pv with its UUID", async () => {
    await withTempDir(async (dir) => {
      const path = await blank(join(dir, "pv.img"), 4 * MiB);
      const sector = Buffer.alloc(512);
      sector.write("LABELONE", 0, "latin1");
      sector.writeBigUInt64LE(1n, 8);
      sector.writeUInt32LE(32, 20);
      sector.write("LVM2 001", 24, "latin1");
      sector.write("abcdef0123456789ABCDEFghijklmnop", 32, "latin1");
      const fh = await open(path, "r+");
      await fh.write(sector, 0, 512, 512);
      await fh.close();
      assert.deepEqual(await identifyFile(path), { type: "lvm2-pv", uuid: "abcdef-0123-4567-89AB-CDEF-ghij-klmnop" });
    });
  });

  it("GIVEN zeros WHEN identified THEN unknown", async () => {
    await withTempDir(async (dir) => {
      assert.deepEqual(await identifyFile(await blank(join(dir, "zero.img"), MiB)), { type: "unknown" });
    });
  });
});
