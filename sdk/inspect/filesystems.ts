// Identifies the filesystem on a volume by its superblock magic, and reads its UUID and label.
// Hand-written: a few fixed offsets per filesystem (the same ones blkid probes), and no package
// reads them from a DiskSource.
//
// Refs: ext4 — kernel Documentation/filesystems/ext4/super.rst; XFS — "XFS Algorithms & Data
// Structures" §superblock; btrfs — btrfs docs "On-disk format" (superblock at 64 KiB); NTFS —
// the boot sector (BPB) layout; FAT — Microsoft "FAT32 File System Specification" (BPB);
// swap — Linux include/linux/swap.h union swap_header; LVM2 — lvm2 lib/format_text/layout.h
// (label_header, pv_header).
import type { FilesystemType } from "./types.ts";
import { readVolume, type Volume } from "./volume.ts";

/** ext2/3/4 superblock: 1024 bytes at byte 1024. */
export const EXT4_SUPERBLOCK_OFFSET = 1024;
const EXT4_MAGIC = 0xef53;
/** btrfs: the primary superblock at 64 KiB; magic at +0x40. */
const BTRFS_SUPERBLOCK_OFFSET = 0x10000;
/** Linux swap: "SWAPSPACE2" ends the first page; every x86 guest uses 4 KiB pages. */
const SWAP_PAGE_BYTES = 4096;
/** LVM2: the label may sit in any of the first four sectors. */
const LVM_LABEL_SECTORS = 4;
/** Enough for every probe above: the btrfs superblock ends at 64 KiB + 4 KiB. */
const PROBE_BYTES = BTRFS_SUPERBLOCK_OFFSET + 4096;

export interface Identified {
  readonly type: FilesystemType;
  readonly uuid?: string;
  readonly label?: string;
}

/** Big-endian UUID bytes as text (ext4, xfs, btrfs, swap store them this way). */
function uuidText(buf: Buffer, offset: number): string {
  const h = buf.toString("hex", offset, offset + 16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function cString(buf: Buffer, start: number, length: number): string | undefined {
  const s = buf.toString("utf8", start, start + length).replace(/\0.*$/s, "").trim();
  return s === "" ? undefined : s;
}

function withOptional(type: FilesystemType, uuid: string | undefined, label: string | undefined): Identified {
  return { type, ...(uuid === undefined ? {} : { uuid }), ...(label === undefined ? {} : { label }) };
}

/** ext4 feature bits that only ext4 sets. Ref: ext4 super.rst, s_feature_incompat. */
const EXT4_ONLY_INCOMPAT = 0x0040 /* extents */ | 0x0080 /* 64bit */ | 0x0200 /* flex_bg */ | 0x8000; /* inline_data */
const EXT3_HAS_JOURNAL = 0x0004;

export async function identifyFilesystem(volume: Volume): Promise<Identified> {
  const length = Math.min(PROBE_BYTES, volume.lengthBytes);
  if (length < 512) return { type: "unknown" };
  const head = await readVolume(volume, 0, length, "superblock probe");

  if (head.length >= EXT4_SUPERBLOCK_OFFSET + 1024 && head.readUInt16LE(EXT4_SUPERBLOCK_OFFSET + 0x38) === EXT4_MAGIC) {
    const sb = head.subarray(EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_OFFSET + 1024);
    const incompat = sb.readUInt32LE(0x60);
    const type = (incompat & EXT4_ONLY_INCOMPAT) !== 0 ? "ext4" : (sb.readUInt32LE(0x5c) & EXT3_HAS_JOURNAL) !== 0 ? "ext3" : "ext2";
    return withOptional(type, uuidText(sb, 0x68), cString(sb, 0x78, 16));
  }
  if (head.toString("latin1", 0, 4) === "XFSB") return withOptional("xfs", uuidText(head, 32), cString(head, 108, 12));
  if (head.length >= BTRFS_SUPERBLOCK_OFFSET + 0x12b + 256 && head.toString("latin1", BTRFS_SUPERBLOCK_OFFSET + 0x40, BTRFS_SUPERBLOCK_OFFSET + 0x48) === "_BHRfS_M") {
    return withOptional("btrfs", uuidText(head, BTRFS_SUPERBLOCK_OFFSET + 0x20), cString(head, BTRFS_SUPERBLOCK_OFFSET + 0x12b, 256));
  }
  if (head.toString("latin1", 3, 11) === "NTFS    ") {
    // The volume serial number (BPB offset 0x48), shown as Windows does, 8 hex digits of the low half.
    return withOptional("ntfs", head.readBigUInt64LE(0x48).toString(16).toUpperCase().padStart(16, "0"), undefined);
  }
  if (head.readUInt16LE(510) === 0xaa55) {
    // FAT32 names itself at 82, FAT12/16 at 54; the serial and label follow the same layout.
    if (head.toString("latin1", 82, 87) === "FAT32") return withOptional("vfat", fatSerial(head, 67), fatLabel(head, 71));
    if (head.toString("latin1", 54, 58) === "FAT1") return withOptional("vfat", fatSerial(head, 39), fatLabel(head, 43));
  }
  if (head.length >= SWAP_PAGE_BYTES && head.toString("latin1", SWAP_PAGE_BYTES - 10, SWAP_PAGE_BYTES) === "SWAPSPACE2") {
    return withOptional("swap", uuidText(head, 1024 + 12), cString(head, 1024 + 28, 16));
  }
  for (let s = 0; s < LVM_LABEL_SECTORS; s++) {
    const o = s * 512;
    if (head.length >= o + 64 && head.toString("latin1", o, o + 8) === "LABELONE" && head.toString("latin1", o + 24, o + 32) === "LVM2 001") {
      const offset = head.readUInt32LE(o + 20);
      const pvUuidAt = o + offset;
      const raw = pvUuidAt + 32 <= head.length ? head.toString("latin1", pvUuidAt, pvUuidAt + 32) : undefined;
      // LVM prints PV UUIDs as 6-4-4-4-4-4-6 groups.
      const uuid = raw === undefined ? undefined : [6, 4, 4, 4, 4, 4, 6].reduce<{ parts: string[]; at: number }>((acc, n) => ({ parts: [...acc.parts, raw.slice(acc.at, acc.at + n)], at: acc.at + n }), { parts: [], at: 0 }).parts.join("-");
      return withOptional("lvm2-pv", uuid, undefined);
    }
  }
  return { type: "unknown" };
}

function fatSerial(head: Buffer, offset: number): string {
  const serial = head.readUInt32LE(offset).toString(16).toUpperCase().padStart(8, "0");
  return `${serial.slice(0, 4)}-${serial.slice(4)}`;
}

function fatLabel(head: Buffer, offset: number): string | undefined {
  const label = cString(head, offset, 11);
  return label === "NO NAME" ? undefined : label;
}
