// On-disk structures of VHD (Microsoft "Virtual Hard Disk Image Format Specification", v1.0,
// October 2006). Every field is big-endian. Section numbers below are the spec's.
import { ascii, bytes, struct, U16_BE, U32_BE, U64_BE, U8 } from "../../layout.ts";

/** The footer and its copy are one 512-byte sector (§"Hard Disk Footer Format"). */
export const VHD_FOOTER_BYTES = 512;
/** The dynamic disk header is two sectors (§"Dynamic Disk Header Format"). */
export const VHD_DYNAMIC_HEADER_BYTES = 1024;
export const VHD_SECTOR_BYTES = 512;

export const VHD_FOOTER_COOKIE = "conectix";
export const VHD_DYNAMIC_COOKIE = "cxsparse";

/** Features: bit 1 "reserved" must always be set (§Features). */
export const VHD_FEATURES_RESERVED = 0x00000002;
/** File Format Version and Header Version are both 1.0, major in the high 16 bits. */
export const VHD_VERSION_1_0 = 0x00010000;
/** Data Offset of a fixed disk: no further structure. All 64 bits set, as Microsoft's tools expect. */
export const VHD_NO_DATA_OFFSET = 0xffffffffffffffffn;
/** A BAT entry for a block that is not allocated (§"Block Allocation Table"). */
export const VHD_BAT_UNUSED = 0xffffffff;
/** Timestamps count seconds since 2000-01-01T00:00:00Z (§Time Stamp); this is that instant in Unix seconds. */
export const VHD_EPOCH_UNIX_SECONDS = 946_684_800;

export const VHD_DISK_TYPE_FIXED = 2;
export const VHD_DISK_TYPE_DYNAMIC = 3;
export const VHD_DISK_TYPE_DIFFERENCING = 4;

/** Microsoft's tools and qemu write 2 MiB blocks (§"Dynamic Disk Header Format", Block Size). */
export const VHD_DEFAULT_BLOCK_BYTES = 2 * 1024 * 1024;

/**
 * The largest disk the spec allows: 2040 GiB, i.e. 0xff000000 sectors (§"Hard Disk Footer
 * Format", Current Size, and qemu's VHD_MAX_SECTORS).
 */
export const VHD_MAX_SECTORS = 0xff000000;
export const VHD_MAX_SIZE_BYTES = VHD_MAX_SECTORS * VHD_SECTOR_BYTES;

/** The largest geometry CHS can express (Appendix: CHS calculation): 65535 cylinders, 16 heads, 255 sectors. */
export const VHD_CHS_MAX_CYLINDERS = 65535;
export const VHD_CHS_MAX_HEADS = 16;
export const VHD_CHS_MAX_SECTORS_PER_TRACK = 255;
export const VHD_CHS_MAX_TOTAL_SECTORS = VHD_CHS_MAX_CYLINDERS * VHD_CHS_MAX_HEADS * VHD_CHS_MAX_SECTORS_PER_TRACK;

// Ref: VHD spec §"Hard Disk Footer Format" (Table 1)
export const VhdFooter = struct(VHD_FOOTER_BYTES, {
  cookie: [0, ascii(8)],
  features: [8, U32_BE],
  fileFormatVersion: [12, U32_BE],
  dataOffset: [16, U64_BE],
  timestamp: [24, U32_BE],
  creatorApplication: [28, bytes(4)],
  creatorVersion: [32, U32_BE],
  creatorHostOs: [36, bytes(4)],
  originalSize: [40, U64_BE],
  currentSize: [48, U64_BE],
  cylinders: [56, U16_BE],
  heads: [58, U8],
  sectorsPerTrack: [59, U8],
  diskType: [60, U32_BE],
  checksum: [64, U32_BE],
  uniqueId: [68, bytes(16)],
  savedState: [84, U8],
});
export type VhdFooterFields = ReturnType<typeof VhdFooter.get>;
export const VHD_FOOTER_CHECKSUM_OFFSET = 64;

// Ref: VHD spec §"Dynamic Disk Header Format" (Table 2)
export const VhdDynamicHeader = struct(VHD_DYNAMIC_HEADER_BYTES, {
  cookie: [0, ascii(8)],
  dataOffset: [8, U64_BE],
  tableOffset: [16, U64_BE],
  headerVersion: [24, U32_BE],
  maxTableEntries: [28, U32_BE],
  blockSize: [32, U32_BE],
  checksum: [36, U32_BE],
  parentUniqueId: [40, bytes(16)],
  parentTimestamp: [56, U32_BE],
  // Parent Unicode Name (UTF-16BE, 512 bytes) at 64 and the eight 24-byte Parent Locator
  // entries at 576 matter only to differencing disks, which this reader refuses.
});
export type VhdDynamicHeaderFields = ReturnType<typeof VhdDynamicHeader.get>;
export const VHD_DYNAMIC_HEADER_CHECKSUM_OFFSET = 36;

/**
 * The spec's checksum (§Checksum): the one's complement of the byte sum of the structure with
 * its own checksum field taken as zero.
 */
export function vhdChecksum(buf: Uint8Array, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) {
    if (i >= checksumOffset && i < checksumOffset + 4) continue;
    sum += buf[i] as number;
  }
  // A 1024-byte header sums to at most 261120, far from 2^32, so no wrap is needed before `~`.
  return ~sum >>> 0;
}

/**
 * Bytes of the sector bitmap in front of each block: one bit per sector, padded to a whole
 * sector (§"Block Allocation Table": "the bitmap is padded to a 512-byte sector boundary").
 */
export function bitmapBytesFor(blockBytes: number): number {
  return Math.ceil(blockBytes / VHD_SECTOR_BYTES / 8 / VHD_SECTOR_BYTES) * VHD_SECTOR_BYTES;
}

export interface ChsGeometry {
  readonly cylinders: number;
  readonly heads: number;
  readonly sectorsPerTrack: number;
}

export function chsTotalSectors(g: ChsGeometry): number {
  return g.cylinders * g.heads * g.sectorsPerTrack;
}

/**
 * The spec's geometry for a disk of `totalSectors` (Appendix: CHS calculation). It rounds
 * down, so C*H*S*512 may be a little smaller than the disk; sizes past 65535*16*255 sectors
 * (about 127 GiB) are capped at that geometry.
 */
export function chsGeometryFor(totalSectors: number): ChsGeometry {
  const sectors = Math.min(Math.max(0, Math.floor(totalSectors)), VHD_CHS_MAX_TOTAL_SECTORS);
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  // Disks of 65535*16*63 sectors or more use the 255-sector translation (the spec's first branch).
  if (sectors >= VHD_CHS_MAX_CYLINDERS * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
  } else {
    // Otherwise try 17, then 31, then 63 sectors per track, keeping cylinders under 1024 per
    // head as the spec's ATA-era algorithm does.
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

export const VHD_CHS_MAX_GEOMETRY: ChsGeometry = {
  cylinders: VHD_CHS_MAX_CYLINDERS,
  heads: VHD_CHS_MAX_HEADS,
  sectorsPerTrack: VHD_CHS_MAX_SECTORS_PER_TRACK,
};

/**
 * The smallest CHS-expressible disk of at least `totalSectors`: the spec's geometry rounds
 * down, so try successively larger sizes until the geometry covers the request (qemu's
 * `calculate_rounded_image_size` rounds up the same way, so that no data is cut off). Past
 * the CHS maximum the maximum geometry is returned, and readers use Current Size instead.
 */
export function chsGeometryCovering(totalSectors: number): ChsGeometry {
  if (totalSectors >= VHD_CHS_MAX_TOTAL_SECTORS) return VHD_CHS_MAX_GEOMETRY;
  // The geometry loses less than sectorsPerTrack * (heads + 1) <= 255 * 17 sectors, so this
  // loop ends within a few thousand steps.
  for (let candidate = totalSectors; ; candidate++) {
    const geometry = chsGeometryFor(candidate);
    if (chsTotalSectors(geometry) >= totalSectors) return geometry;
  }
}
