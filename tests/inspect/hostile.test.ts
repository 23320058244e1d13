// Hostile input: damaged partition tables and filesystems give coded errors or findings and
// never hang. Each case damages a copy of a real image (or builds a table by hand) in memory and
// runs the whole inspection over it; node:test's per-test timeout bounds each case.
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { readFile } from "node:fs/promises";
import { memorySource } from "../harness/disk.ts";
import { isPortableError } from "../../sdk/errors.ts";
import { Ext4Reader } from "../../sdk/inspect/ext4.ts";
import { inspectGuest } from "../../sdk/inspect/inspect.ts";
import { readPartitionTable } from "../../sdk/inspect/partitions.ts";
import type { ReadinessReport } from "../../sdk/inspect/types.ts";
import { subVolume } from "../../sdk/inspect/volume.ts";
import { BIOS_NONE, prepareImages, UEFI_ALL, type Images } from "./images.ts";

/** Generous: each case runs in milliseconds; the bound only turns a hang into a failure. */
const CASE_TIMEOUT_MS = 20_000;
const MiB = 1024 * 1024;
const SECTOR = 512;

const codes = (report: ReadinessReport): string[] => report.findings.map((f) => f.code);

async function inspectBuffer(buf: Buffer): Promise<ReadinessReport> {
  return inspectGuest(memorySource(buf));
}

async function assertFinding(buf: Buffer, code: string, severity?: "error" | "warning"): Promise<ReadinessReport> {
  const report = await inspectBuffer(buf);
  const finding = report.findings.find((f) => f.code === code);
  assert.ok(finding !== undefined, `expected ${code}, got ${JSON.stringify(codes(report))}`);
  if (severity !== undefined) assert.equal(finding.severity, severity);
  return report;
}

async function assertThrows(fn: () => Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(isPortableError(err), String(err));
    assert.equal(err.code, code);
    return true;
  });
}

function mbrEntry(buf: Buffer, sectorOffset: number, index: number, entry: { status?: number; type: number; start: number; length: number }): void {
  const o = sectorOffset + 446 + index * 16;
  buf.writeUInt8(entry.status ?? 0, o);
  buf.writeUInt8(entry.type, o + 4);
  buf.writeUInt32LE(entry.start, o + 8);
  buf.writeUInt32LE(entry.length, o + 12);
  buf.writeUInt16LE(0xaa55, sectorOffset + 510);
}

/** Recomputes a GPT header's CRC (and optionally its entry array's) after a test edits it. */
function fixGptCrc(buf: Buffer, headerLba: number, entries = false): void {
  const h = headerLba * SECTOR;
  if (entries) {
    const lba = Number(buf.readBigUInt64LE(h + 72));
    const bytes = buf.readUInt32LE(h + 80) * buf.readUInt32LE(h + 84);
    buf.writeUInt32LE(crc32(buf.subarray(lba * SECTOR, lba * SECTOR + bytes)), h + 88);
  }
  const size = buf.readUInt32LE(h + 12);
  buf.writeUInt32LE(0, h + 16);
  buf.writeUInt32LE(crc32(buf.subarray(h, h + size)), h + 16);
}

describe("hostile partition tables and filesystems", () => {
  let images: Images;
  let gpt: Buffer;
  let mbr: Buffer;
  let windows: Buffer;
  /** The MBR image's root: partition 1 at 1 MiB, ext4 with 4 KiB blocks. */
  const rootAt = MiB;
  let root: Ext4Reader;
  let inodeAt: (path: string) => Promise<number>;
  let firstBlockOf: (path: string) => Promise<number>;
  let blocksCount: number;

  before(async () => {
    images = await prepareImages();
    gpt = await readFile((await images.build(UEFI_ALL, "uefi-all")).path);
    mbr = await readFile((await images.build(BIOS_NONE, "bios-none")).path);
    windows = await readFile(await images.windows("windows"));
    const table = await readPartitionTable(memorySource(mbr));
    const p1 = table.partitions[0];
    assert.equal(p1?.startBytes, rootAt);
    root = await Ext4Reader.open(subVolume(memorySource(mbr), rootAt, p1.lengthBytes, "p1"));
    blocksCount = root.sb.blocksCount;
    inodeAt = async (path) => {
      const inode = await root.resolve(path, { followLast: false });
      assert.ok(inode !== undefined, path);
      return rootAt + (await root.inodeOffsetBytes(inode.ino));
    };
    // The first extent's physical block of a small file or directory (depth-0 extent root).
    firstBlockOf = async (path) => {
      const at = await inodeAt(path);
      assert.equal(mbr.readUInt16LE(at + 0x28 + 6), 0, `${path} has a depth-0 extent tree`);
      return mbr.readUInt32LE(at + 0x28 + 12 + 8);
    };
  });
  after(async () => {
    await images?.cleanup();
  });

  const hostile = (name: string, fn: () => Promise<void>): void => {
    it(name, { timeout: CASE_TIMEOUT_MS }, fn);
  };

  // Partition tables.

  hostile("GIVEN an EBR chain that returns to an EBR WHEN read THEN INSPECT_MBR_EBR_LOOP, and the partitions before the loop survive", async () => {
    const buf = Buffer.alloc(8 * MiB);
    mbrEntry(buf, 0, 0, { type: 0x83, start: 2048, length: 2048 });
    mbrEntry(buf, 0, 1, { type: 0x05, start: 4096, length: 8192 });
    // EBR 1 at the extended start: logical 5, then EBR 2 at extended + 200.
    mbrEntry(buf, 4096 * SECTOR, 0, { type: 0x83, start: 63, length: 100 });
    mbrEntry(buf, 4096 * SECTOR, 1, { type: 0x05, start: 200, length: 300 });
    // EBR 2: logical 6, then "the next EBR" is EBR 2 again.
    mbrEntry(buf, 4296 * SECTOR, 0, { type: 0x83, start: 63, length: 100 });
    mbrEntry(buf, 4296 * SECTOR, 1, { type: 0x05, start: 200, length: 300 });
    const report = await assertFinding(buf, "INSPECT_MBR_EBR_LOOP", "error");
    assert.deepEqual(
      report.partitions.map((p) => p.number),
      [1, 2, 5, 6],
    );
  });

  hostile("GIVEN 200 chained EBRs WHEN read THEN the walk stops at the logical partition limit", async () => {
    const buf = Buffer.alloc(8 * MiB);
    mbrEntry(buf, 0, 0, { type: 0x0f, start: 2048, length: 12000 });
    for (let i = 0; i < 200; i++) {
      const ebr = (2048 + i * 20) * SECTOR;
      mbrEntry(buf, ebr, 0, { type: 0x83, start: 2, length: 10 });
      mbrEntry(buf, ebr, 1, { type: 0x05, start: (i + 1) * 20, length: 20 });
    }
    await assertFinding(buf, "INSPECT_MBR_TOO_MANY_LOGICAL", "error");
  });

  hostile("GIVEN an MBR partition of 2^32-1 sectors on an 8 MiB disk WHEN read THEN INSPECT_PARTITION_OUT_OF_RANGE", async () => {
    const buf = Buffer.alloc(8 * MiB);
    mbrEntry(buf, 0, 0, { type: 0x83, start: 2048, length: 0xffffffff });
    const report = await assertFinding(buf, "INSPECT_PARTITION_OUT_OF_RANGE", "error");
    assert.equal(report.partitions.length, 0);
  });

  hostile("GIVEN two overlapping MBR partitions WHEN read THEN INSPECT_PARTITION_OVERLAP", async () => {
    const buf = Buffer.alloc(8 * MiB);
    mbrEntry(buf, 0, 0, { type: 0x83, start: 2048, length: 4096 });
    mbrEntry(buf, 0, 1, { type: 0x83, start: 4096, length: 4096 });
    await assertFinding(buf, "INSPECT_PARTITION_OVERLAP", "error");
  });

  hostile("GIVEN a disk smaller than one sector WHEN inspected THEN INSPECT_DISK_TOO_SMALL", async () => {
    await assertFinding(Buffer.alloc(100), "INSPECT_DISK_TOO_SMALL", "error");
  });

  hostile("GIVEN a primary GPT header with a bad CRC WHEN read THEN INSPECT_GPT_CRC is a warning and the backup gives the same partitions", async () => {
    const good = await readPartitionTable(memorySource(gpt));
    const buf = Buffer.from(gpt);
    buf.writeUInt8(buf.readUInt8(SECTOR + 40) ^ 0xff, SECTOR + 40);
    const report = await assertFinding(buf, "INSPECT_GPT_CRC", "warning");
    assert.deepEqual(report.partitions, good.partitions);
    assert.equal(report.os.distro, "debian");
  });

  hostile("GIVEN a primary GPT entry array with a bad CRC WHEN read THEN INSPECT_GPT_ENTRIES_CRC and the backup is used", async () => {
    const buf = Buffer.from(gpt);
    buf.writeUInt8(buf.readUInt8(2 * SECTOR + 56) ^ 0x55, 2 * SECTOR + 56);
    const report = await assertFinding(buf, "INSPECT_GPT_ENTRIES_CRC", "warning");
    assert.equal(report.bootMode, "uefi");
  });

  hostile("GIVEN both GPT headers damaged WHEN read THEN INSPECT_GPT_CRC is an error and nothing else is claimed", async () => {
    const buf = Buffer.from(gpt);
    const last = buf.length / SECTOR - 1;
    buf.writeUInt8(buf.readUInt8(SECTOR + 40) ^ 0xff, SECTOR + 40);
    buf.writeUInt8(buf.readUInt8(last * SECTOR + 40) ^ 0xff, last * SECTOR + 40);
    const report = await assertFinding(buf, "INSPECT_GPT_CRC", "error");
    assert.equal(report.partitions.length, 0);
    assert.equal(report.os.family, "unknown");
    await assertThrows(() => readPartitionTable(memorySource(buf)), "INSPECT_GPT_CRC");
  });

  hostile("GIVEN GPT headers claiming 2^32-1 entries with valid CRCs WHEN read THEN INSPECT_GPT_TOO_MANY_ENTRIES, without allocating the array", async () => {
    const buf = Buffer.from(gpt);
    const last = buf.length / SECTOR - 1;
    for (const lba of [1, last]) {
      buf.writeUInt32LE(0xffffffff, lba * SECTOR + 80);
      fixGptCrc(buf, lba);
    }
    await assertThrows(() => readPartitionTable(memorySource(buf)), "INSPECT_GPT_TOO_MANY_ENTRIES");
    await assertFinding(buf, "INSPECT_GPT_TOO_MANY_ENTRIES", "error");
  });

  hostile("GIVEN GPT headers with a 100-byte entry size WHEN read THEN INSPECT_GPT_ENTRY_SIZE", async () => {
    const buf = Buffer.from(gpt);
    const last = buf.length / SECTOR - 1;
    for (const lba of [1, last]) {
      buf.writeUInt32LE(100, lba * SECTOR + 84);
      fixGptCrc(buf, lba);
    }
    await assertThrows(() => readPartitionTable(memorySource(buf)), "INSPECT_GPT_ENTRY_SIZE");
  });

  hostile("GIVEN a GPT entry ending past the last usable LBA (CRCs fixed) WHEN read THEN INSPECT_PARTITION_OUT_OF_RANGE and that entry is skipped", async () => {
    const buf = Buffer.from(gpt);
    const last = buf.length / SECTOR - 1;
    for (const lba of [1, last]) {
      const entriesLba = Number(buf.readBigUInt64LE(lba * SECTOR + 72));
      // Entry 2 (the root) ends at LBA 2^40.
      buf.writeBigUInt64LE(2n ** 40n, entriesLba * SECTOR + 128 + 40);
      fixGptCrc(buf, lba, true);
    }
    const report = await assertFinding(buf, "INSPECT_PARTITION_OUT_OF_RANGE", "error");
    assert.deepEqual(
      report.partitions.map((p) => p.number),
      [1],
    );
  });

  hostile("GIVEN a GPT header whose entry array lies past the disk (CRC fixed) WHEN read THEN INSPECT_GPT_HEADER_RANGE", async () => {
    const buf = Buffer.from(gpt);
    const last = buf.length / SECTOR - 1;
    for (const lba of [1, last]) {
      buf.writeBigUInt64LE(2n ** 50n, lba * SECTOR + 72);
      fixGptCrc(buf, lba);
    }
    await assertThrows(() => readPartitionTable(memorySource(buf)), "INSPECT_GPT_HEADER_RANGE");
  });

  // ext4.

  hostile("GIVEN an ext4 superblock claiming 2^32-1 blocks WHEN inspected THEN INSPECT_EXT4_SIZE", async () => {
    const buf = Buffer.from(mbr);
    buf.writeUInt32LE(0xffffffff, rootAt + 1024 + 0x04);
    const report = await assertFinding(buf, "INSPECT_EXT4_SIZE", "error");
    assert.equal(report.os.family, "unknown");
  });

  hostile("GIVEN s_log_block_size 20 WHEN inspected THEN INSPECT_EXT4_SUPERBLOCK", async () => {
    const buf = Buffer.from(mbr);
    buf.writeUInt32LE(20, rootAt + 1024 + 0x18);
    await assertFinding(buf, "INSPECT_EXT4_SUPERBLOCK", "error");
  });

  hostile("GIVEN s_inodes_per_group 0 WHEN inspected THEN INSPECT_EXT4_SUPERBLOCK", async () => {
    const buf = Buffer.from(mbr);
    buf.writeUInt32LE(0, rootAt + 1024 + 0x28);
    await assertFinding(buf, "INSPECT_EXT4_SUPERBLOCK", "error");
  });

  hostile("GIVEN group 0's inode table pointing past the filesystem WHEN inspected THEN INSPECT_EXT4_BLOCK_RANGE", async () => {
    const buf = Buffer.from(mbr);
    // 4 KiB blocks: the descriptor table is block 1; bg_inode_table_lo at +0x8.
    buf.writeUInt32LE(0x7fffffff, rootAt + 4096 + 0x8);
    await assertFinding(buf, "INSPECT_EXT4_BLOCK_RANGE", "error");
  });

  hostile("GIVEN two extent index entries naming the same child block WHEN a file is read THEN INSPECT_EXT4_EXTENT_LOOP", async () => {
    const buf = Buffer.from(mbr);
    const at = await inodeAt("/usr/lib/os-release");
    const data = await firstBlockOf("/usr/lib/os-release");
    const leaf = blocksCount - 2;
    // Leaf node: depth 0, one extent of one block at the file's real data.
    const leafAt = rootAt + leaf * 4096;
    buf.fill(0, leafAt, leafAt + 4096);
    buf.writeUInt16LE(0xf30a, leafAt);
    buf.writeUInt16LE(1, leafAt + 2);
    buf.writeUInt16LE(340, leafAt + 4);
    buf.writeUInt16LE(0, leafAt + 6);
    buf.writeUInt32LE(0, leafAt + 12);
    buf.writeUInt16LE(1, leafAt + 16);
    buf.writeUInt32LE(data, leafAt + 20);
    // Root: depth 1, two index entries (logical 0 and 1) both naming the leaf.
    const i = at + 0x28;
    buf.writeUInt16LE(0xf30a, i);
    buf.writeUInt16LE(2, i + 2);
    buf.writeUInt16LE(4, i + 4);
    buf.writeUInt16LE(1, i + 6);
    for (const [n, logical] of [0, 1].entries()) {
      buf.writeUInt32LE(logical, i + 12 * (n + 1));
      buf.writeUInt32LE(leaf, i + 12 * (n + 1) + 4);
      buf.writeUInt16LE(0, i + 12 * (n + 1) + 8);
    }
    buf.writeUInt32LE(8192, at + 0x4);
    await assertFinding(buf, "INSPECT_EXT4_EXTENT_LOOP", "error");
  });

  hostile("GIVEN an extent root with depth 6 WHEN a file is read THEN INSPECT_EXT4_EXTENT_DEPTH", async () => {
    const buf = Buffer.from(mbr);
    buf.writeUInt16LE(6, (await inodeAt("/usr/lib/os-release")) + 0x28 + 6);
    await assertFinding(buf, "INSPECT_EXT4_EXTENT_DEPTH", "error");
  });

  hostile("GIVEN an extent node that names itself as its child WHEN a file is read THEN the depth check stops it (INSPECT_EXT4_EXTENT_DEPTH)", async () => {
    const buf = Buffer.from(mbr);
    const at = await inodeAt("/usr/lib/os-release");
    const node = blocksCount - 3;
    const nodeAt = rootAt + node * 4096;
    buf.fill(0, nodeAt, nodeAt + 4096);
    buf.fill(0, at + 0x28, at + 0x28 + 60);
    for (const o of [at + 0x28, nodeAt]) {
      buf.writeUInt16LE(0xf30a, o);
      buf.writeUInt16LE(1, o + 2);
      buf.writeUInt16LE(4, o + 4);
      buf.writeUInt16LE(1, o + 6);
      buf.writeUInt32LE(0, o + 12);
      buf.writeUInt32LE(node, o + 16);
    }
    await assertFinding(buf, "INSPECT_EXT4_EXTENT_DEPTH", "error");
  });

  hostile("GIVEN an extent with a bad header magic WHEN a file is read THEN INSPECT_EXT4_EXTENT_HEADER", async () => {
    const buf = Buffer.from(mbr);
    buf.writeUInt16LE(0x1234, (await inodeAt("/usr/lib/os-release")) + 0x28);
    await assertFinding(buf, "INSPECT_EXT4_EXTENT_HEADER", "error");
  });

  hostile("GIVEN an extent pointing past the end of the filesystem WHEN a file is read THEN INSPECT_EXT4_EXTENT_RANGE", async () => {
    const buf = Buffer.from(mbr);
    buf.writeUInt32LE(blocksCount + 10, (await inodeAt("/usr/lib/os-release")) + 0x28 + 12 + 8);
    await assertFinding(buf, "INSPECT_EXT4_EXTENT_RANGE", "error");
  });

  hostile("GIVEN a directory entry with rec_len 0 WHEN /etc is listed THEN INSPECT_EXT4_DIRENT", async () => {
    const buf = Buffer.from(mbr);
    const block = await firstBlockOf("/etc");
    buf.writeUInt16LE(0, rootAt + block * 4096 + 4);
    await assertFinding(buf, "INSPECT_EXT4_DIRENT", "error");
  });

  hostile("GIVEN a directory entry naming inode 2^32-16 WHEN resolved THEN INSPECT_EXT4_BAD_INODE", async () => {
    const buf = Buffer.from(mbr);
    const block = await firstBlockOf("/etc");
    const at = rootAt + block * 4096;
    // Skip "." and ".." to the first real entry.
    const second = at + buf.readUInt16LE(at + 4);
    const third = second + buf.readUInt16LE(second + 4);
    for (let p = third; p < at + 4096; p += buf.readUInt16LE(p + 4)) {
      if (buf.readUInt32LE(p) !== 0) buf.writeUInt32LE(0xfffffff0, p);
      if (buf.readUInt16LE(p + 4) === 0) break;
    }
    await assertFinding(buf, "INSPECT_EXT4_BAD_INODE", "error");
  });

  hostile("GIVEN /etc/os-release as a symlink to itself WHEN resolved THEN INSPECT_EXT4_SYMLINK_LOOP", async () => {
    const buf = Buffer.from(mbr);
    const at = await inodeAt("/etc/os-release");
    buf.fill(0, at + 0x28, at + 0x28 + 60);
    buf.write("os-release", at + 0x28, "latin1");
    buf.writeUInt32LE("os-release".length, at + 0x4);
    await assertFinding(buf, "INSPECT_EXT4_SYMLINK_LOOP", "error");
  });

  hostile("GIVEN two symlinks naming each other WHEN resolved THEN INSPECT_EXT4_SYMLINK_LOOP", async () => {
    const buf = Buffer.from(mbr);
    // /lib → usr/lib becomes /lib → bin, and /bin → usr/bin becomes /bin → lib.
    for (const [path, target] of [
      ["/lib", "bin"],
      ["/bin", "lib"],
    ] as const) {
      const at = await inodeAt(path);
      buf.fill(0, at + 0x28, at + 0x28 + 60);
      buf.write(target, at + 0x28, "latin1");
      buf.writeUInt32LE(target.length, at + 0x4);
    }
    await assertFinding(buf, "INSPECT_EXT4_SYMLINK_LOOP", "error");
  });

  hostile("GIVEN os-release claiming 1 TiB WHEN read THEN INSPECT_EXT4_FILE_TOO_LARGE, without allocating it", async () => {
    const buf = Buffer.from(mbr);
    buf.writeUInt32LE(256, (await inodeAt("/usr/lib/os-release")) + 0x6c);
    await assertFinding(buf, "INSPECT_EXT4_FILE_TOO_LARGE", "error");
  });

  // NTFS.

  function ntfsBootAt(): number {
    return 2048 * SECTOR;
  }

  hostile("GIVEN an NTFS boot sector claiming 2^40 sectors WHEN inspected THEN INSPECT_NTFS_SIZE", async () => {
    const buf = Buffer.from(windows);
    buf.writeBigUInt64LE(2n ** 40n, ntfsBootAt() + 0x28);
    await assertFinding(buf, "INSPECT_NTFS_SIZE", "error");
  });

  hostile("GIVEN a torn MFT record (a stride's fixup bytes changed) WHEN inspected THEN INSPECT_NTFS_FIXUP", async () => {
    const buf = Buffer.from(windows);
    const boot = ntfsBootAt();
    const cluster = buf.readUInt16LE(boot + 0x0b) * buf.readUInt8(boot + 0x0d);
    const mft = boot + Number(buf.readBigUInt64LE(boot + 0x30)) * cluster;
    // Record 5 (the root directory), 1 KiB records: the end of its first 512-byte stride.
    const record5 = mft + 5 * 1024;
    assert.equal(buf.toString("latin1", record5, record5 + 4), "FILE");
    buf.writeUInt16LE(buf.readUInt16LE(record5 + 510) ^ 0xffff, record5 + 510);
    await assertFinding(buf, "INSPECT_NTFS_FIXUP", "error");
  });

  hostile("GIVEN every INDX block's magic destroyed WHEN System32 is listed THEN INSPECT_NTFS_BAD_RECORD", async () => {
    const buf = Buffer.from(windows);
    let found = 0;
    for (let at = buf.indexOf("INDX", 0, "latin1"); at >= 0; at = buf.indexOf("INDX", at + 4, "latin1")) {
      if (at % 512 === 0) {
        buf.write("XDNI", at, "latin1");
        found++;
      }
    }
    assert.ok(found > 0, "the image has INDX blocks");
    await assertFinding(buf, "INSPECT_NTFS_BAD_RECORD", "error");
  });
});
