// On-disk structures of VMware's hosted sparse extent and its stream-optimized variant, as
// layout tokens. Field offsets are copied from VMware "Virtual Disk Format 5.0" (hereafter
// VDF5); all integers are little-endian.
import { U16_LE, U32_LE, U64_LE, U8, bytes, struct } from "../../layout.ts";

export const VMDK_SECTOR_BYTES = 512;

/** "KDMV" as stored: the bytes 'K' 'D' 'M' 'V', i.e. 0x564d444b read little-endian. */
export const VMDK_SPARSE_MAGIC = 0x564d444b;
/** "COWD": the ESX sparse extent (VMFSSPARSE) of ESXi's delta disks (cowd.ts). */
export const VMDK_COWD_MAGIC = 0x44574f43;

// VDF5 §"Header": version 1 is the original hosted sparse extent, 2 adds zeroed-grain GTEs
// (flag bit 2) and 3 is what ESXi and ovftool write for stream-optimized disks.
export const VMDK_MAX_VERSION = 3;

/** Flag bit 0: the newline-detection characters in the header are valid. */
export const VMDK_FLAG_VALID_NEWLINE = 1 << 0;
/** Flag bit 1: a redundant grain directory (and its grain tables) is present. */
export const VMDK_FLAG_REDUNDANT_GRAIN_TABLE = 1 << 1;
/** Flag bit 2: a grain table entry of 1 means "this grain reads as zeros" (version 2+). */
export const VMDK_FLAG_ZEROED_GRAIN_GTE = 1 << 2;
/** Flag bit 16: grains are deflate-compressed. */
export const VMDK_FLAG_COMPRESSED = 1 << 16;
/** Flag bit 17: grains and metadata are preceded by markers (stream-optimized). */
export const VMDK_FLAG_MARKERS = 1 << 17;

/** The GTE value that marks a zeroed grain when VMDK_FLAG_ZEROED_GRAIN_GTE is set. */
export const VMDK_GTE_ZEROED = 1;

export const VMDK_COMPRESSION_NONE = 0;
/** RFC 1950 zlib streams, one per grain (VDF5 §"Stream-Optimized Compressed Sparse Extents"). */
export const VMDK_COMPRESSION_DEFLATE = 1;

/** gdOffset value meaning "the grain directory's location is in the footer at end of file". */
export const VMDK_GD_AT_END = 0xffffffffffffffffn;

/** VDF5: every VMware disk uses 512 entries of 4 bytes per grain table (one 2 KiB table). */
export const VMDK_GTES_PER_GT = 512;
export const VMDK_GTE_BYTES = 4;

/** VDF5: grains of 128 sectors (64 KiB) are what VMware products create. */
export const VMDK_DEFAULT_GRAIN_SECTORS = 128;

/** The descriptor area qemu and VMware reserve in a monolithicSparse file: 20 sectors (10 KiB). */
export const VMDK_EMBEDDED_DESCRIPTOR_SECTORS = 20;

/**
 * Stream-optimized files put the first grain at sector 128: VMware's writers (and the version-3
 * sample in tests/) set overHead to one grain, leaving room for header and descriptor.
 */
export const VMDK_STREAM_OVERHEAD_SECTORS = 128;

// Ref: VDF5 §"Hosted Sparse Extent Header" (SparseExtentHeader, 512 bytes, packed)
export const SPARSE_EXTENT_HEADER = struct(VMDK_SECTOR_BYTES, {
  magicNumber: [0, U32_LE],
  version: [4, U32_LE],
  flags: [8, U32_LE],
  capacitySectors: [12, U64_LE],
  grainSizeSectors: [20, U64_LE],
  descriptorOffsetSectors: [28, U64_LE],
  descriptorSizeSectors: [36, U64_LE],
  numGTEsPerGT: [44, U32_LE],
  rgdOffsetSectors: [48, U64_LE],
  gdOffsetSectors: [56, U64_LE],
  overHeadSectors: [64, U64_LE],
  uncleanShutdown: [72, U8],
  // Newline test characters: a file mangled by a text-mode FTP transfer changes these.
  singleEndLineChar: [73, U8],
  nonEndLineChar: [74, U8],
  doubleEndLineChar1: [75, U8],
  doubleEndLineChar2: [76, U8],
  compressAlgorithm: [77, U16_LE],
});
export type SparseExtentHeader = ReturnType<typeof SPARSE_EXTENT_HEADER.get>;

/** The newline test bytes VDF5 prescribes: '\n', ' ', '\r', '\n'. */
export const VMDK_NEWLINE_TEST = { single: 0x0a, non: 0x20, double1: 0x0d, double2: 0x0a } as const;

// Ref: VDF5 §"Stream-Optimized Compressed Sparse Extents", grain marker: {lba u64, size u32} then
// `size` bytes of compressed data; the whole record is padded to a sector boundary.
export const GRAIN_MARKER = struct(12, {
  lbaSectors: [0, U64_LE],
  sizeBytes: [8, U32_LE],
});
export const VMDK_GRAIN_MARKER_BYTES = GRAIN_MARKER.len;

// Ref: VDF5 §"Stream-Optimized Compressed Sparse Extents", metadata marker: one sector
// {numSectors u64, size u32 = 0, type u32, pad[496]} followed by numSectors of metadata.
export const METADATA_MARKER = struct(VMDK_SECTOR_BYTES, {
  numSectors: [0, U64_LE],
  sizeBytes: [8, U32_LE],
  type: [12, U32_LE],
  pad: [16, bytes(496)],
});

export const VMDK_MARKER_EOS = 0;
export const VMDK_MARKER_GT = 1;
export const VMDK_MARKER_GD = 2;
export const VMDK_MARKER_FOOTER = 3;

/**
 * A stream ends with: footer marker (1 sector), footer (a header copy, 1 sector), end-of-stream
 * marker (1 sector). So the footer starts 1024 bytes before end of file.
 */
export const VMDK_FOOTER_FROM_END_BYTES = 2 * VMDK_SECTOR_BYTES;
export const VMDK_FOOTER_MARKER_FROM_END_BYTES = 3 * VMDK_SECTOR_BYTES;

// Ref: VDF5 §"ESXi Server Sparse Extents" (COWDisk_Header, 2048 bytes, packed): the fields a
// reader needs. The rest (parent name and generation, name, description, unclean-shutdown flag)
// is informational; a writer leaves it zero.
export const COWD_HEADER = struct(32, {
  magicNumber: [0, U32_LE],
  version: [4, U32_LE],
  flags: [8, U32_LE],
  numSectors: [12, U32_LE],
  grainSize: [16, U32_LE],
  gdOffset: [20, U32_LE],
  numGDEntries: [24, U32_LE],
  freeSector: [28, U32_LE],
});
/** The whole COWD header: 2048 bytes (4 sectors). */
export const COWD_HEADER_SECTORS = 4;
/** VDF5: every COWD grain table holds 4096 entries (16 KiB). */
export const COWD_GTES_PER_GT = 4096;
