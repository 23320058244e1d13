// QCOW2 on-disk structures, after QEMU's docs/interop/qcow2.txt ("qcow2 spec" below). All
// integers are big-endian. The file is a sequence of clusters; cluster 0 holds the header, its
// extensions and the backing file name.
import { struct, U32_BE, U64_BE, U8 } from "../../layout.ts";

export const FORMAT_NAME = "qcow2";

const KIB = 1024;
const MIB = 1024 * KIB;

// Ref: qcow2 spec §"Header" — bytes 0-3 are "QFI\xfb".
export const QCOW2_MAGIC = 0x514649fb;
export const QCOW2_VERSION_2 = 2;
export const QCOW2_VERSION_3 = 3;

// Ref: qcow2 spec §"Header", bytes 0-71: the version 2 header, which version 3 extends.
export const QCOW2_V2_HEADER_BYTES = 72;
export const HeaderV2 = struct(QCOW2_V2_HEADER_BYTES, {
  magic: [0, U32_BE],
  version: [4, U32_BE],
  backingFileOffsetBytes: [8, U64_BE],
  backingFileNameBytes: [16, U32_BE],
  clusterBits: [20, U32_BE],
  sizeBytes: [24, U64_BE],
  cryptMethod: [32, U32_BE],
  l1Entries: [36, U32_BE],
  l1TableOffsetBytes: [40, U64_BE],
  refcountTableOffsetBytes: [48, U64_BE],
  refcountTableClusters: [56, U32_BE],
  snapshotCount: [60, U32_BE],
  snapshotsOffsetBytes: [64, U64_BE],
});
export type HeaderV2Fields = ReturnType<typeof HeaderV2.get>;

// Ref: qcow2 spec §"Header", bytes 72-103: version 3 additions. header_length is "at least 104
// bytes and must be a multiple of 8"; byte 104 (compression_type) exists only when it is larger.
export const QCOW2_V3_MIN_HEADER_BYTES = 104;
export const HeaderV3Tail = struct(QCOW2_V3_MIN_HEADER_BYTES, {
  incompatibleFeatures: [72, U64_BE],
  compatibleFeatures: [80, U64_BE],
  autoclearFeatures: [88, U64_BE],
  refcountOrder: [96, U32_BE],
  headerLengthBytes: [100, U32_BE],
});
export type HeaderV3TailFields = ReturnType<typeof HeaderV3Tail.get>;
export const QCOW2_COMPRESSION_TYPE_OFFSET_BYTES = 104;
export const CompressionTypeField = U8;
/** What this library writes: 104 bytes, the compression type byte and 7 bytes of padding. */
export const QCOW2_V3_WRITTEN_HEADER_BYTES = 112;

// Ref: qcow2 spec §"Header", incompatible_features bits.
export const INCOMPAT_DIRTY_BIT = 0n;
export const INCOMPAT_CORRUPT_BIT = 1n;
export const INCOMPAT_EXTERNAL_DATA_FILE_BIT = 2n;
export const INCOMPAT_COMPRESSION_TYPE_BIT = 3n;
export const INCOMPAT_EXTENDED_L2_BIT = 4n;
/** Bits 0-4 are defined by the spec; any other set bit means we cannot read the image safely. */
export const INCOMPAT_KNOWN_MASK = 0b11111n;

// Ref: qcow2 spec §"Header", compression_type: 0 = deflate (zlib, RFC 1951 raw), 1 = zstd.
export const COMPRESSION_TYPE_ZLIB = 0;
export const COMPRESSION_TYPE_ZSTD = 1;

// Ref: qcow2 spec §"Header", cluster_bits: "must be at least 9" (512-byte clusters); QEMU caps
// it at 21 (2 MiB), and images outside [9, 21] are refused by every QEMU release.
export const QCOW2_MIN_CLUSTER_BITS = 9;
export const QCOW2_MAX_CLUSTER_BITS = 21;
export const QCOW2_DEFAULT_CLUSTER_BYTES = 64 * KIB;

// Ref: qcow2 spec §"Header", refcount_order: refcount_bits = 1 << refcount_order, at most 64.
// Version 2 images have no field and always use 16-bit refcounts.
export const QCOW2_MAX_REFCOUNT_ORDER = 6;
export const QCOW2_V2_REFCOUNT_ORDER = 4;

// Ref: qcow2 spec §"Header", backing_file_size: "Must not be longer than 1023 bytes".
export const QCOW2_MAX_BACKING_NAME_BYTES = 1023;

/**
 * QEMU refuses L1 tables above 32 MiB (QCOW_MAX_L1_SIZE); so do we, both as a reader (the L1 is
 * loaded whole) and as a writer. With 64 KiB clusters that still covers 2 PiB.
 */
export const QCOW2_MAX_L1_BYTES = 32 * MIB;
export const QCOW2_L1_ENTRY_BYTES = 8;

// Ref: qcow2 spec §"Header extensions": {type u32, length u32, data padded to 8 bytes}, ending
// with type 0.
export const HeaderExtension = struct(8, {
  type: [0, U32_BE],
  lengthBytes: [4, U32_BE],
});
export const EXTENSION_END = 0x00000000;
export const EXTENSION_BACKING_FORMAT = 0xe2792aca;
export const EXTENSION_FEATURE_NAMES = 0x6803f857;
export const EXTENSION_BITMAPS = 0x23852875;
export const EXTENSION_FULL_DISK_ENCRYPTION = 0x0537be77;
export const EXTENSION_EXTERNAL_DATA_FILE = 0x44415441;
export const EXTENSION_ALIGNMENT_BYTES = 8;

// Ref: qcow2 spec §"Cluster mapping", L1 table entry: bits 9-55 hold the L2 table offset,
// bit 63 the "copied" flag (refcount exactly 1). The masks below act on the high and low
// 32-bit halves so the hot paths need no bigint arithmetic.
export const L1_OFFSET_HIGH_MASK = 0x00ffffff; // bits 32-55
export const L1_OFFSET_LOW_MASK = 0xfffffe00; // bits 9-31
export const ENTRY_COPIED_HIGH_FLAG = 0x80000000; // bit 63
export const L1_ENTRY_COPIED = 1n << 63n;

// Ref: qcow2 spec §"Cluster mapping", L2 table entry: bit 62 compressed, bit 63 copied. For a
// standard cluster bits 9-55 hold the host offset and bit 0 says "reads as zeros" (v3 only).
export const L2_COMPRESSED_HIGH_FLAG = 0x40000000; // bit 62
export const L2_ZERO_LOW_FLAG = 0x00000001; // bit 0
export const L2_STANDARD_OFFSET_HIGH_MASK = 0x00ffffff; // bits 32-55
export const L2_STANDARD_OFFSET_LOW_MASK = 0xfffffe00; // bits 9-31
export const L2_ENTRY_COPIED = 1n << 63n;
export const L2_ENTRY_BYTES = 8;

// Ref: qcow2 spec §"Extended L2 Entries": each entry is the standard 64 bits followed by a 64-bit
// bitmap over 32 subclusters: bits 0-31 "allocated", bits 32-63 "reads as zeros".
export const EXTENDED_L2_ENTRY_BYTES = 16;
export const SUBCLUSTERS_PER_CLUSTER = 32;
/** Subclusters must be at least 512 bytes, so extended L2 needs clusters of 16 KiB or more. */
export const EXTENDED_L2_MIN_CLUSTER_BITS = 14;

// Ref: qcow2 spec §"Compressed Clusters Descriptor": with x = 62 - (cluster_bits - 8), bits
// 0..x-1 hold the host byte offset and bits x..61 the number of additional 512-byte sectors
// beyond the one holding that offset.
export const COMPRESSED_SECTOR_BYTES = 512;
export function compressedOffsetBits(clusterBits: number): number {
  return 62 - (clusterBits - 8);
}

// Ref: qcow2 spec §"Host cluster management": refcount table entries are 64-bit offsets of
// refcount blocks (bits 9-63), and a refcount block is one cluster of refcount_bits entries.
export const REFCOUNT_TABLE_ENTRY_BYTES = 8;
/** The writer uses 16-bit refcounts, QEMU's default and the only width version 2 allows. */
export const WRITER_REFCOUNT_ORDER = 4;
export const WRITER_REFCOUNT_ENTRY_BYTES = 2;
