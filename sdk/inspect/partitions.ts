// MBR and GPT partition tables, read-only. Hand-written: the table layouts are small and fixed,
// and the readers must survive hostile tables (extended-partition loops, absurd entry counts,
// bad CRCs), which generic packages do not promise.
//
// Ref: UEFI Specification 2.10 §5.2 (legacy MBR, protective MBR) and §5.3 (GPT header and
// partition entry array); the extended-partition (EBR) chain as documented in "Extended Boot
// Record" (IBM PC DOS convention, also Linux block/partitions/msdos.c behaviour).
import { crc32 } from "node:zlib";
import type { DiskSource } from "../disk/types.ts";
import type { Finding, PartitionInfo } from "./types.ts";
import { inspectError, readVolume, safeNumber, wholeDisk, type Volume } from "./volume.ts";

export const SECTOR_BYTES = 512;
/** Ref: UEFI 2.10 §5.2.1: the boot signature 0xAA55 at byte 510 of the MBR. */
const MBR_SIGNATURE_OFFSET = 510;
const MBR_SIGNATURE = 0xaa55;
/** Ref: UEFI 2.10 §5.2.1: four 16-byte entries from byte 446 (440 bytes of code, disk id, 2 reserved). */
const MBR_ENTRIES_OFFSET = 446;
const MBR_ENTRY_BYTES = 16;
const MBR_BOOT_CODE_BYTES = 440;
const MBR_TYPE_PROTECTIVE = 0xee;
/** CHS extended (0x05), LBA extended (0x0f), Linux extended (0x85). */
const MBR_EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
/**
 * Linux numbers logical partitions from 5 and its msdos parser stops well before this; 128 is
 * far more than any real disk holds, and bounds the EBR walk.
 */
export const MAX_LOGICAL_PARTITIONS = 128;

/** Ref: UEFI 2.10 §5.3.2 table 5-5: "EFI PART". */
const GPT_SIGNATURE = "EFI PART";
/** Ref: UEFI 2.10 §5.3.2: HeaderSize is at least 92 and at most the block size. */
const GPT_MIN_HEADER_BYTES = 92;
/** Ref: UEFI 2.10 §5.3.3: SizeOfPartitionEntry is 128 × 2^n. 4096 is a sane upper bound. */
const GPT_MAX_ENTRY_BYTES = 4096;
/**
 * The spec reserves at least 16 KiB for the array (128 entries of 128 bytes); tools create 128.
 * 4096 entries allows odd tools a lot of room while keeping the array read to 512 KiB.
 */
export const GPT_MAX_ENTRIES = 4096;

/** GPT partition type GUIDs we name (upper-case text form). Ref: UEFI 2.10 §5.3.3 table 5-7, and each OS's documentation. */
const GPT_TYPES: Readonly<Record<string, string>> = {
  "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "efi-system",
  "21686148-6449-6E6F-744E-656564454649": "bios-boot",
  "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "linux",
  "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "linux-root-x86-64",
  "BC13C2FF-59E6-4262-A352-B275FD6F7172": "linux-extended-boot",
  "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "linux-swap",
  "E6D6D379-F507-44C2-A23C-238F2A3DF928": "linux-lvm",
  "A19D880F-05FC-4D3B-A006-743F0F84911E": "linux-raid",
  "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "microsoft-basic-data",
  "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "microsoft-reserved",
  "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "windows-recovery",
};

const MBR_TYPES: Readonly<Record<number, string>> = {
  0x01: "fat12",
  0x04: "fat16",
  0x05: "extended",
  0x06: "fat16",
  0x07: "ntfs-exfat",
  0x0b: "fat32",
  0x0c: "fat32",
  0x0e: "fat16",
  0x0f: "extended",
  0x27: "windows-recovery",
  0x82: "linux-swap",
  0x83: "linux",
  0x85: "extended",
  0x8e: "linux-lvm",
  0xee: "gpt-protective",
  0xef: "efi-system",
  0xfd: "linux-raid",
};

export interface PartitionTable {
  readonly scheme: "mbr" | "gpt" | "none";
  readonly partitions: readonly PartitionInfo[];
  /** The MBR's 440 bytes of boot code are not all zero (a BIOS boot loader is installed). */
  readonly mbrBootCode: boolean;
  /** Problems that did not stop the read (a bad primary GPT with a good backup, an EBR loop). */
  readonly findings: readonly Finding[];
}

/** GUIDs are stored mixed-endian: the first three fields little-endian. Ref: UEFI 2.10 appendix A. */
export function guidToString(buf: Buffer, offset: number): string {
  const hex = (start: number, end: number, reverse: boolean): string => {
    const part = Buffer.from(buf.subarray(offset + start, offset + end));
    return (reverse ? part.reverse() : part).toString("hex");
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`.toUpperCase();
}

interface MbrEntry {
  readonly status: number;
  readonly type: number;
  readonly startSector: number;
  readonly lengthSectors: number;
}

function mbrEntries(sector: Buffer): MbrEntry[] {
  const entries: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const o = MBR_ENTRIES_OFFSET + i * MBR_ENTRY_BYTES;
    entries.push({ status: sector.readUInt8(o), type: sector.readUInt8(o + 4), startSector: sector.readUInt32LE(o + 8), lengthSectors: sector.readUInt32LE(o + 12) });
  }
  return entries;
}

/**
 * Reads the partition table of a disk. A disk with neither table is one `whole-disk`
 * partition (a filesystem written straight onto the disk). Fatal problems throw coded
 * FormatErrors (INSPECT_GPT_CRC when both GPT headers fail); recoverable ones are findings.
 */
export async function readPartitionTable(disk: DiskSource): Promise<PartitionTable> {
  const volume = wholeDisk(disk);
  const findings: Finding[] = [];
  if (disk.virtualSizeBytes < SECTOR_BYTES) {
    throw inspectError("INSPECT_DISK_TOO_SMALL", "disk", `${disk.virtualSizeBytes} bytes cannot hold a partition table`, { diskBytes: disk.virtualSizeBytes });
  }
  const mbr = await readVolume(volume, 0, SECTOR_BYTES, "MBR");
  const hasSignature = mbr.readUInt16LE(MBR_SIGNATURE_OFFSET) === MBR_SIGNATURE;
  const entries = hasSignature ? mbrEntries(mbr) : [];
  // A FAT or NTFS boot sector also ends in 0xAA55; its "entries" are code, so a status byte
  // other than 0x00 or 0x80 means this is not an MBR.
  const validMbr = hasSignature && entries.every((e) => e.status === 0 || e.status === 0x80) && !isFilesystemBootSector(mbr);
  const mbrBootCode = validMbr && mbr.subarray(0, MBR_BOOT_CODE_BYTES).some((b) => b !== 0);

  const gptSignature = disk.virtualSizeBytes >= 2 * SECTOR_BYTES && (await readVolume(volume, SECTOR_BYTES, 8, "GPT signature")).toString("latin1") === GPT_SIGNATURE;
  const protective = validMbr && entries.some((e) => e.type === MBR_TYPE_PROTECTIVE);
  if (gptSignature || protective) {
    const partitions = await readGpt(volume, findings);
    return { scheme: "gpt", partitions, mbrBootCode, findings };
  }
  if (validMbr && entries.some((e) => e.type !== 0)) {
    const partitions = await readMbr(volume, entries, findings);
    return { scheme: "mbr", partitions, mbrBootCode, findings };
  }
  return {
    scheme: "none",
    partitions: [{ number: 1, scheme: "none", startBytes: 0, lengthBytes: disk.virtualSizeBytes, type: "whole-disk", typeName: "whole-disk" }],
    mbrBootCode: false,
    findings,
  };
}

/** FAT and NTFS boot sectors start with a jump and name their filesystem at fixed offsets. */
function isFilesystemBootSector(sector: Buffer): boolean {
  const ntfs = sector.toString("latin1", 3, 11) === "NTFS    ";
  const fat = sector.toString("latin1", 54, 62).startsWith("FAT1") || sector.toString("latin1", 82, 90) === "FAT32   ";
  return (ntfs || fat) && (sector[0] === 0xeb || sector[0] === 0xe9);
}

function checkRange(volume: Volume, number: number, startSector: number, lengthSectors: number, where: string, findings: Finding[]): PartitionInfo | undefined {
  const startBytes = startSector * SECTOR_BYTES;
  const lengthBytes = lengthSectors * SECTOR_BYTES;
  if (lengthSectors === 0) return undefined;
  if (startSector === 0 || startBytes + lengthBytes > volume.lengthBytes) {
    findings.push({
      severity: "error",
      code: "INSPECT_PARTITION_OUT_OF_RANGE",
      message: `partition ${number} (sectors ${startSector}+${lengthSectors}) does not fit the disk (${volume.lengthBytes / SECTOR_BYTES} sectors); it is skipped`,
      evidencePath: where,
      fixHint: "the image may be truncated: convert it again from the source, or check the virtual size",
    });
    return undefined;
  }
  return { number, scheme: "mbr", startBytes, lengthBytes, type: "", typeName: "" };
}

async function readMbr(volume: Volume, entries: readonly MbrEntry[], findings: Finding[]): Promise<PartitionInfo[]> {
  const partitions: PartitionInfo[] = [];
  let extended: MbrEntry | undefined;
  entries.forEach((e, i) => {
    if (e.type === 0) return;
    const checked = checkRange(volume, i + 1, e.startSector, e.lengthSectors, "disk:mbr", findings);
    if (checked === undefined) return;
    if (MBR_EXTENDED_TYPES.has(e.type)) {
      if (extended !== undefined) {
        findings.push({ severity: "warning", code: "INSPECT_MBR_MULTIPLE_EXTENDED", message: `MBR entry ${i + 1} is a second extended partition; only the first is followed`, evidencePath: "disk:mbr" });
        return;
      }
      extended = e;
    }
    partitions.push({ ...checked, type: `0x${e.type.toString(16).padStart(2, "0")}`, typeName: MBR_TYPES[e.type] ?? "unknown", bootable: e.status === 0x80 });
  });
  if (extended !== undefined) partitions.push(...(await readLogical(volume, extended, findings)));
  const overlap = findOverlap(partitions.filter((p) => p.typeName !== "extended"));
  if (overlap !== undefined) findings.push({ severity: "error", code: "INSPECT_PARTITION_OVERLAP", message: overlap, evidencePath: "disk:mbr" });
  return partitions;
}

/**
 * Walks the EBR chain. Each EBR's first entry is a logical partition relative to that EBR; its
 * second points at the next EBR relative to the extended partition's start. A visited set and
 * MAX_LOGICAL_PARTITIONS stop loops; EBRs must lie inside the extended partition.
 */
async function readLogical(volume: Volume, extended: MbrEntry, findings: Finding[]): Promise<PartitionInfo[]> {
  const logical: PartitionInfo[] = [];
  const extStart = extended.startSector;
  const extEnd = extStart + extended.lengthSectors;
  const visited = new Set<number>();
  let ebrSector = extStart;
  for (let hop = 0; ; hop++) {
    if (visited.has(ebrSector)) {
      findings.push({ severity: "error", code: "INSPECT_MBR_EBR_LOOP", message: `the extended partition's EBR chain returns to sector ${ebrSector}; logical partitions after ${4 + logical.length} are ignored`, evidencePath: `disk:ebr@${ebrSector}` });
      break;
    }
    if (hop >= MAX_LOGICAL_PARTITIONS) {
      findings.push({ severity: "error", code: "INSPECT_MBR_TOO_MANY_LOGICAL", message: `more than ${MAX_LOGICAL_PARTITIONS} logical partitions; the rest are ignored`, evidencePath: `disk:ebr@${ebrSector}` });
      break;
    }
    visited.add(ebrSector);
    if (ebrSector < extStart || ebrSector >= extEnd) {
      findings.push({ severity: "error", code: "INSPECT_MBR_EBR_OUT_OF_RANGE", message: `an EBR at sector ${ebrSector} lies outside the extended partition (sectors ${extStart}..${extEnd - 1})`, evidencePath: "disk:mbr" });
      break;
    }
    const sector = await readVolume(volume, ebrSector * SECTOR_BYTES, SECTOR_BYTES, `EBR at sector ${ebrSector}`);
    if (sector.readUInt16LE(MBR_SIGNATURE_OFFSET) !== MBR_SIGNATURE) {
      findings.push({ severity: "error", code: "INSPECT_MBR_EBR_SIGNATURE", message: `the EBR at sector ${ebrSector} has no 0xAA55 signature; the chain ends there`, evidencePath: `disk:ebr@${ebrSector}` });
      break;
    }
    const [entry, next] = mbrEntries(sector);
    if (entry !== undefined && entry.type !== 0) {
      const number = 5 + logical.length;
      const start = ebrSector + entry.startSector;
      const checked = start + entry.lengthSectors <= extEnd ? checkRange(volume, number, start, entry.lengthSectors, `disk:ebr@${ebrSector}`, findings) : undefined;
      if (start + entry.lengthSectors > extEnd) {
        findings.push({ severity: "error", code: "INSPECT_PARTITION_OUT_OF_RANGE", message: `logical partition ${number} (sectors ${start}+${entry.lengthSectors}) runs past its extended partition`, evidencePath: `disk:ebr@${ebrSector}` });
      }
      if (checked !== undefined) logical.push({ ...checked, type: `0x${entry.type.toString(16).padStart(2, "0")}`, typeName: MBR_TYPES[entry.type] ?? "unknown", bootable: entry.status === 0x80 });
    }
    if (next === undefined || next.type === 0 || next.startSector === 0) break;
    ebrSector = extStart + next.startSector;
  }
  return logical;
}

function findOverlap(partitions: readonly PartitionInfo[]): string | undefined {
  const sorted = [...partitions].sort((a, b) => a.startBytes - b.startBytes);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    const b = sorted[i];
    if (a !== undefined && b !== undefined && a.startBytes + a.lengthBytes > b.startBytes) return `partitions ${a.number} and ${b.number} overlap`;
  }
  return undefined;
}

interface GptHeader {
  readonly myLba: number;
  readonly alternateLba: number;
  readonly firstUsableLba: number;
  readonly lastUsableLba: number;
  readonly entriesLba: number;
  readonly entryCount: number;
  readonly entryBytes: number;
  readonly entriesCrc: number;
}

/** Reads and checks one GPT header and its entry array; throws a coded error naming what failed. */
async function readGptHeader(volume: Volume, lba: number, which: string): Promise<{ header: GptHeader; entries: Buffer }> {
  const where = `disk:gpt-${which}`;
  const sectors = volume.lengthBytes / SECTOR_BYTES;
  if (!Number.isSafeInteger(lba) || lba < 1 || lba >= sectors) throw inspectError("INSPECT_GPT_HEADER_RANGE", where, `header LBA ${lba} is outside the disk (${Math.floor(sectors)} sectors)`, { lba });
  const sector = await readVolume(volume, lba * SECTOR_BYTES, SECTOR_BYTES, `GPT ${which} header`);
  if (sector.toString("latin1", 0, 8) !== GPT_SIGNATURE) throw inspectError("INSPECT_GPT_SIGNATURE", where, `no "EFI PART" signature at LBA ${lba}`, { lba });
  const headerBytes = sector.readUInt32LE(12);
  if (headerBytes < GPT_MIN_HEADER_BYTES || headerBytes > SECTOR_BYTES) throw inspectError("INSPECT_GPT_HEADER_SIZE", where, `header size ${headerBytes} is outside ${GPT_MIN_HEADER_BYTES}..${SECTOR_BYTES}`, { headerBytes });
  const copy = Buffer.from(sector.subarray(0, headerBytes));
  const storedCrc = copy.readUInt32LE(16);
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== storedCrc) throw inspectError("INSPECT_GPT_CRC", where, `header CRC32 0x${storedCrc.toString(16)} does not match its contents (0x${crc32(copy).toString(16)})`, { lba });
  const header: GptHeader = {
    myLba: safeNumber(sector.readBigUInt64LE(24), "INSPECT_GPT_HEADER_RANGE", where, "MyLBA"),
    alternateLba: safeNumber(sector.readBigUInt64LE(32), "INSPECT_GPT_HEADER_RANGE", where, "AlternateLBA"),
    firstUsableLba: safeNumber(sector.readBigUInt64LE(40), "INSPECT_GPT_HEADER_RANGE", where, "FirstUsableLBA"),
    lastUsableLba: safeNumber(sector.readBigUInt64LE(48), "INSPECT_GPT_HEADER_RANGE", where, "LastUsableLBA"),
    entriesLba: safeNumber(sector.readBigUInt64LE(72), "INSPECT_GPT_HEADER_RANGE", where, "PartitionEntryLBA"),
    entryCount: sector.readUInt32LE(80),
    entryBytes: sector.readUInt32LE(84),
    entriesCrc: sector.readUInt32LE(88),
  };
  if (header.myLba !== lba) throw inspectError("INSPECT_GPT_HEADER_RANGE", where, `header at LBA ${lba} says it is at LBA ${header.myLba}`, { lba });
  if (header.entryCount > GPT_MAX_ENTRIES) throw inspectError("INSPECT_GPT_TOO_MANY_ENTRIES", where, `${header.entryCount} partition entries (limit ${GPT_MAX_ENTRIES})`, { entryCount: header.entryCount });
  if (header.entryBytes < 128 || header.entryBytes > GPT_MAX_ENTRY_BYTES || header.entryBytes % 128 !== 0) {
    throw inspectError("INSPECT_GPT_ENTRY_SIZE", where, `partition entry size ${header.entryBytes} is not 128 × 2^n up to ${GPT_MAX_ENTRY_BYTES}`, { entryBytes: header.entryBytes });
  }
  if (header.firstUsableLba > header.lastUsableLba || header.lastUsableLba >= sectors) {
    throw inspectError("INSPECT_GPT_HEADER_RANGE", where, `usable LBAs ${header.firstUsableLba}..${header.lastUsableLba} do not fit the disk (${Math.floor(sectors)} sectors)`);
  }
  const arrayBytes = header.entryCount * header.entryBytes;
  if (header.entriesLba < 1 || (header.entriesLba * SECTOR_BYTES) + arrayBytes > volume.lengthBytes) {
    throw inspectError("INSPECT_GPT_HEADER_RANGE", where, `the entry array at LBA ${header.entriesLba} (${arrayBytes} bytes) runs past the disk`, { entriesLba: header.entriesLba });
  }
  const entries = await readVolume(volume, header.entriesLba * SECTOR_BYTES, arrayBytes, `GPT ${which} entry array`);
  if (crc32(entries) !== header.entriesCrc) throw inspectError("INSPECT_GPT_ENTRIES_CRC", where, `entry array CRC32 0x${header.entriesCrc.toString(16)} does not match its contents (0x${crc32(entries).toString(16)})`);
  return { header, entries };
}

async function readGpt(volume: Volume, findings: Finding[]): Promise<PartitionInfo[]> {
  const lastLba = Math.floor(volume.lengthBytes / SECTOR_BYTES) - 1;
  let primary: { header: GptHeader; entries: Buffer } | undefined;
  let primaryError: unknown;
  try {
    primary = await readGptHeader(volume, 1, "primary");
  } catch (err) {
    primaryError = err;
  }
  // The backup normally sits in the last sector; a primary that survived names it too.
  const backupLba = primary !== undefined && primary.header.alternateLba > 1 && primary.header.alternateLba <= lastLba ? primary.header.alternateLba : lastLba;
  let backup: { header: GptHeader; entries: Buffer } | undefined;
  let backupError: unknown;
  try {
    backup = await readGptHeader(volume, backupLba, "backup");
  } catch (err) {
    backupError = err;
  }
  const codeOf = (err: unknown): string => (err as { code?: string }).code ?? "INSPECT_GPT_CORRUPT";
  const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));
  const chosen = primary ?? backup;
  if (chosen === undefined) {
    throw inspectError(codeOf(primaryError), "disk:gpt", `both GPT headers are unusable: primary: ${messageOf(primaryError)}; backup: ${messageOf(backupError)}`);
  }
  if (primary === undefined) {
    findings.push({ severity: "warning", code: codeOf(primaryError), message: `primary GPT unusable (${messageOf(primaryError)}); read the backup at LBA ${backupLba}`, evidencePath: "disk:gpt-primary", fixHint: "repair the table before migrating, e.g. `sgdisk -e` or gdisk's recovery menu" });
  } else if (backup === undefined) {
    findings.push({ severity: "warning", code: "INSPECT_GPT_BACKUP", message: `backup GPT unusable (${messageOf(backupError)})`, evidencePath: "disk:gpt-backup", fixHint: "after resizing or converting a disk, move the backup table to the end (`sgdisk -e`)" });
  }
  const { header, entries } = chosen;
  const partitions: PartitionInfo[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const o = i * header.entryBytes;
    const type = guidToString(entries, o);
    if (type === "00000000-0000-0000-0000-000000000000") continue;
    const first = safeNumber(entries.readBigUInt64LE(o + 32), "INSPECT_PARTITION_OUT_OF_RANGE", "disk:gpt", `entry ${i + 1} StartingLBA`);
    const last = safeNumber(entries.readBigUInt64LE(o + 40), "INSPECT_PARTITION_OUT_OF_RANGE", "disk:gpt", `entry ${i + 1} EndingLBA`);
    if (first < header.firstUsableLba || last > header.lastUsableLba || last < first) {
      findings.push({ severity: "error", code: "INSPECT_PARTITION_OUT_OF_RANGE", message: `GPT entry ${i + 1} (LBA ${first}..${last}) lies outside the usable LBAs ${header.firstUsableLba}..${header.lastUsableLba}; it is skipped`, evidencePath: "disk:gpt" });
      continue;
    }
    const name = entries.toString("utf16le", o + 56, o + 128).replace(/\0.*$/s, "");
    partitions.push({ number: i + 1, scheme: "gpt", startBytes: first * SECTOR_BYTES, lengthBytes: (last - first + 1) * SECTOR_BYTES, type, typeName: GPT_TYPES[type] ?? "unknown", ...(name === "" ? {} : { name }) });
  }
  const overlap = findOverlap(partitions);
  if (overlap !== undefined) findings.push({ severity: "error", code: "INSPECT_PARTITION_OVERLAP", message: overlap, evidencePath: "disk:gpt" });
  return partitions;
}
