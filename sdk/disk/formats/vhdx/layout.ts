// VHDX on-disk structures, after Microsoft [MS-VHDX] v1.0. All integers are little-endian
// (§2.1). GUIDs are stored in the Windows mixed-endian form: the first three fields
// little-endian, the last eight bytes as written.
import { bytes, struct, U16_LE, U32_LE, U64_LE } from "../../layout.ts";

export const FORMAT_NAME = "vhdx";

const KIB = 1024;
const MIB = 1024 * KIB;

// Ref: [MS-VHDX] §2.2 — every object in the file is aligned to 1 MiB, and the first 1 MiB
// (the header section) holds the file type identifier, two headers and two region tables.
export const VHDX_ALIGNMENT_BYTES = MIB;
export const VHDX_HEADER_SECTION_BYTES = MIB;
export const VHDX_FILE_IDENTIFIER_OFFSET_BYTES = 0;
export const VHDX_HEADER1_OFFSET_BYTES = 64 * KIB;
export const VHDX_HEADER2_OFFSET_BYTES = 128 * KIB;
export const VHDX_REGION_TABLE1_OFFSET_BYTES = 192 * KIB;
export const VHDX_REGION_TABLE2_OFFSET_BYTES = 256 * KIB;
/** Everything up to the end of the second region table: one read at open. */
export const VHDX_HEADER_READ_BYTES = 320 * KIB;

// Ref: [MS-VHDX] §2.2.1 File Type Identifier (64 KiB; signature then a UTF-16 creator string).
export const FILE_IDENTIFIER_SIGNATURE = Buffer.from("vhdxfile", "latin1");
export const FILE_IDENTIFIER_BYTES = 64 * KIB;
export const FILE_IDENTIFIER_CREATOR_OFFSET_BYTES = 8;
export const FILE_IDENTIFIER_CREATOR_BYTES = 512;

// Ref: [MS-VHDX] §2.2.2 Headers (4 KiB each; the CRC-32C covers all 4 KiB).
export const HEADER_SIGNATURE = 0x64616568; // "head"
export const HEADER_BYTES = 4 * KIB;
export const HEADER_CHECKSUM_OFFSET_BYTES = 4;
export const HEADER_VERSION = 1;
export const HEADER_LOG_VERSION = 0;
export const Header = struct(HEADER_BYTES, {
  signature: [0, U32_LE],
  checksum: [4, U32_LE],
  sequenceNumber: [8, U64_LE],
  fileWriteGuid: [16, bytes(16)],
  dataWriteGuid: [32, bytes(16)],
  logGuid: [48, bytes(16)],
  logVersion: [64, U16_LE],
  version: [66, U16_LE],
  logLengthBytes: [68, U32_LE],
  logOffsetBytes: [72, U64_LE],
});
export type HeaderFields = ReturnType<typeof Header.get>;

// Ref: [MS-VHDX] §2.2.3 Region Table (64 KiB: a 16-byte header then 32-byte entries; the CRC-32C
// covers all 64 KiB).
export const REGION_TABLE_SIGNATURE = 0x69676572; // "regi"
export const REGION_TABLE_BYTES = 64 * KIB;
export const REGION_TABLE_CHECKSUM_OFFSET_BYTES = 4;
/** §2.2.3.1: "EntryCount ... MUST be less than or equal to 2047" ((64 KiB - 16) / 32, rounded down). */
export const REGION_TABLE_MAX_ENTRIES = 2047;
export const RegionTableHeader = struct(16, {
  signature: [0, U32_LE],
  checksum: [4, U32_LE],
  entryCount: [8, U32_LE],
});

// Ref: [MS-VHDX] §2.2.3.2 Region Table Entry.
export const REGION_ENTRY_BYTES = 32;
/** Bit 0 of the last field: an implementation that does not know the region must refuse the file. */
export const REGION_REQUIRED_FLAG = 1;
export const RegionEntry = struct(REGION_ENTRY_BYTES, {
  guid: [0, bytes(16)],
  fileOffsetBytes: [16, U64_LE],
  lengthBytes: [24, U32_LE],
  flags: [28, U32_LE],
});

// Ref: [MS-VHDX] §2.2.3.2 known region GUIDs.
export const BAT_REGION_GUID = guid("2DC27766-F623-4200-9D64-115E9BFD4A08");
export const METADATA_REGION_GUID = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");

// Ref: [MS-VHDX] §2.6.1 Metadata Table (64 KiB at the start of the metadata region: a 32-byte
// header then 32-byte entries).
export const METADATA_TABLE_SIGNATURE = Buffer.from("metadata", "latin1");
export const METADATA_TABLE_BYTES = 64 * KIB;
/** §2.6.1.1: "EntryCount ... MUST be less than or equal to 2047". */
export const METADATA_TABLE_MAX_ENTRIES = 2047;
/** §2.6.1.2: item data lies past the table, so an item offset is at least 64 KiB. */
export const METADATA_ITEM_MIN_OFFSET_BYTES = 64 * KIB;
export const MetadataTableHeader = struct(32, {
  signature: [0, bytes(8)],
  entryCount: [10, U16_LE],
});

// Ref: [MS-VHDX] §2.6.1.2 Metadata Table Entry.
export const METADATA_ENTRY_BYTES = 32;
export const METADATA_FLAG_IS_USER = 1;
export const METADATA_FLAG_IS_VIRTUAL_DISK = 2;
export const METADATA_FLAG_IS_REQUIRED = 4;
export const MetadataEntry = struct(METADATA_ENTRY_BYTES, {
  itemId: [0, bytes(16)],
  offsetBytes: [16, U32_LE],
  lengthBytes: [20, U32_LE],
  flags: [24, U32_LE],
});

// Ref: [MS-VHDX] §2.6.2 known metadata items.
export const FILE_PARAMETERS_GUID = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
export const VIRTUAL_DISK_SIZE_GUID = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
export const PAGE83_DATA_GUID = guid("BECA12AB-B2E6-4523-93EF-C309E000C746");
export const LOGICAL_SECTOR_SIZE_GUID = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
export const PHYSICAL_SECTOR_SIZE_GUID = guid("CDA348C7-445D-4471-9CC9-E9885251C556");
export const PARENT_LOCATOR_GUID = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

// Ref: [MS-VHDX] §2.6.2.1 File Parameters.
export const FILE_PARAMETERS_BYTES = 8;
export const FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED = 1;
export const FILE_PARAMETERS_HAS_PARENT = 2;
export const FileParameters = struct(FILE_PARAMETERS_BYTES, {
  blockSizeBytes: [0, U32_LE],
  flags: [4, U32_LE],
});
/** §2.6.2.1: "BlockSize ... MUST be at least 1 MB and not greater than 256 MB, and MUST be a power of 2". */
export const VHDX_MIN_BLOCK_SIZE_BYTES = MIB;
export const VHDX_MAX_BLOCK_SIZE_BYTES = 256 * MIB;

// Ref: [MS-VHDX] §2.6.2.2 Virtual Disk Size; §2.6.2.4 and §2.6.2.5 sector sizes; §2.6.2.3 page 83.
export const VIRTUAL_DISK_SIZE_BYTES = 8;
export const SECTOR_SIZE_FIELD_BYTES = 4;
export const PAGE83_DATA_BYTES = 16;
/** §2.6.2.2: the virtual disk size is at most 64 TiB. */
export const VHDX_MAX_VIRTUAL_SIZE_BYTES = 64 * 1024 * 1024 * MIB;
/** §2.6.2.4 and §2.6.2.5: each sector size is 512 or 4096. */
export const VHDX_SECTOR_SIZES_BYTES: readonly number[] = [512, 4096];

// Ref: [MS-VHDX] §2.5 BAT. Each entry is 64 bits: State in bits 0-2, FileOffsetMB in bits 20-63.
export const BAT_ENTRY_BYTES = 8;
// Ref: [MS-VHDX] §2.5.1.1 payload block states.
export const PAYLOAD_BLOCK_NOT_PRESENT = 0;
export const PAYLOAD_BLOCK_UNDEFINED = 1;
export const PAYLOAD_BLOCK_ZERO = 2;
export const PAYLOAD_BLOCK_UNMAPPED = 3;
export const PAYLOAD_BLOCK_FULLY_PRESENT = 6;
export const PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;
/**
 * §2.5: one sector bitmap block covers 2^23 sectors, so the BAT interleaves one sector bitmap
 * entry after every `chunkRatio` = 2^23 * logical sector size / block size payload entries.
 */
export const SECTORS_PER_BITMAP_BLOCK = 2 ** 23;

export function chunkRatio(logicalSectorBytes: number, blockSizeBytes: number): number {
  return (SECTORS_PER_BITMAP_BLOCK * logicalSectorBytes) / blockSizeBytes;
}

/** BAT index of payload block `blockIndex` (§2.5: payload entries skip the interleaved bitmap entries). */
export function batIndexOfBlock(blockIndex: number, ratio: number): number {
  return blockIndex + Math.floor(blockIndex / ratio);
}

/**
 * §2.5: total entries for a disk without a parent: the payload blocks plus a sector bitmap entry
 * after each full chunk, except that no bitmap entry trails the last payload entry.
 */
export function batEntryCount(payloadBlocks: number, ratio: number): number {
  return payloadBlocks === 0 ? 0 : payloadBlocks + Math.floor((payloadBlocks - 1) / ratio);
}

/**
 * Writes a BAT entry at `at` without bigint arithmetic (a fixed 64 TiB disk has 64 Mi entries):
 * FileOffsetMB's low 12 bits share the low word with State, the rest fill the high word.
 */
export function putBatEntry(buf: Buffer, at: number, state: number, fileOffsetBytes: number): void {
  const fileOffsetMib = fileOffsetBytes / VHDX_ALIGNMENT_BYTES;
  buf.writeUInt32LE((((fileOffsetMib % 4096) << 20) | state) >>> 0, at);
  buf.writeUInt32LE(Math.floor(fileOffsetMib / 4096), at + 4);
}

// Ref: [MS-VHDX] §2.3.1.1 Log Entry Header (64 bytes, followed by 32-byte descriptors; the
// CRC-32C covers the whole entry, EntryLength bytes).
export const LOG_ENTRY_SIGNATURE = 0x65676f6c; // "loge"
export const LOG_ENTRY_HEADER_BYTES = 64;
export const LOG_ENTRY_CHECKSUM_OFFSET_BYTES = 4;
/** §2.3.1: log entries, descriptor areas and data sectors are laid out in 4 KiB units. */
export const LOG_SECTOR_BYTES = 4 * KIB;
export const LogEntryHeader = struct(LOG_ENTRY_HEADER_BYTES, {
  signature: [0, U32_LE],
  checksum: [4, U32_LE],
  entryLengthBytes: [8, U32_LE],
  tailBytes: [12, U32_LE],
  sequenceNumber: [16, U64_LE],
  descriptorCount: [24, U32_LE],
  logGuid: [32, bytes(16)],
  flushedFileOffsetBytes: [48, U64_LE],
  lastFileOffsetBytes: [56, U64_LE],
});

// Ref: [MS-VHDX] §2.3.1.2 Zero Descriptor (32 bytes).
export const LOG_DESCRIPTOR_BYTES = 32;
export const LOG_ZERO_DESCRIPTOR_SIGNATURE = 0x6f72657a; // "zero"
export const LogZeroDescriptor = struct(LOG_DESCRIPTOR_BYTES, {
  signature: [0, U32_LE],
  zeroLengthBytes: [8, U64_LE],
  fileOffsetBytes: [16, U64_LE],
  sequenceNumber: [24, U64_LE],
});

// Ref: [MS-VHDX] §2.3.1.3 Data Descriptor (32 bytes; same signature, offset and sequence positions).
export const LOG_DATA_DESCRIPTOR_SIGNATURE = 0x63736564; // "desc"
export const LogDataDescriptor = struct(LOG_DESCRIPTOR_BYTES, {
  signature: [0, U32_LE],
  trailingBytes: [4, bytes(4)],
  leadingBytes: [8, bytes(8)],
  fileOffsetBytes: [16, U64_LE],
  sequenceNumber: [24, U64_LE],
});

// Ref: [MS-VHDX] §2.3.1.4 Data Sector: the first 8 and last 4 bytes of the 4 KiB sector being
// logged live in the descriptor; the sector carries a signature and the sequence number there.
export const LOG_DATA_SECTOR_SIGNATURE = 0x61746164; // "data"
export const LOG_DATA_SECTOR_LEADING_BYTES = 8;
export const LOG_DATA_SECTOR_TRAILING_BYTES = 4;
export const LogDataSector = struct(LOG_SECTOR_BYTES, {
  signature: [0, U32_LE],
  sequenceHigh: [4, U32_LE],
  sequenceLow: [4092, U32_LE],
});

/** Encodes a GUID written as text into its 16-byte on-disk (mixed-endian) form. */
export function guid(text: string): Buffer {
  const hex = text.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`not a GUID: ${text}`);
  const raw = Buffer.from(hex, "hex");
  const out = Buffer.from(raw);
  out.writeUInt32LE(raw.readUInt32BE(0), 0);
  out.writeUInt16LE(raw.readUInt16BE(4), 4);
  out.writeUInt16LE(raw.readUInt16BE(6), 6);
  return out;
}

export function isZeroGuid(value: Uint8Array): boolean {
  return value.every((byte) => byte === 0);
}
