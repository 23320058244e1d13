// VHD writer: fixed and dynamic disks, streamed in the DiskSink order (increasing offsets).
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { InvalidArgsError, NotCapableError } from "../../../errors.ts";
import type { WriterOptions } from "../../format.ts";
import { alignUp, encode } from "../../layout.ts";
import { SinkWriteGuard } from "../../sink-guard.ts";
import { copyMembers, FileSpan, put, type Payload } from "../../file-span.ts";
import type { ByteTarget, DiskSink, SinkResult } from "../../types.ts";
import { parseWriterOptions } from "../../writer-options.ts";
import {
  bitmapBytesFor,
  chsGeometryCovering,
  chsGeometryFor,
  chsTotalSectors,
  type ChsGeometry,
  VHD_BAT_UNUSED,
  VHD_CHS_MAX_GEOMETRY,
  VHD_DEFAULT_BLOCK_BYTES,
  VHD_DISK_TYPE_DYNAMIC,
  VHD_DISK_TYPE_FIXED,
  VHD_DYNAMIC_COOKIE,
  VHD_DYNAMIC_HEADER_BYTES,
  VHD_DYNAMIC_HEADER_CHECKSUM_OFFSET,
  VHD_EPOCH_UNIX_SECONDS,
  VHD_FEATURES_RESERVED,
  VHD_FOOTER_BYTES,
  VHD_FOOTER_CHECKSUM_OFFSET,
  VHD_FOOTER_COOKIE,
  VHD_MAX_SIZE_BYTES,
  VHD_NO_DATA_OFFSET,
  VHD_SECTOR_BYTES,
  VHD_VERSION_1_0,
  vhdChecksum,
  VhdDynamicHeader,
  VhdFooter,
} from "./layout.ts";

const FORMAT = "vhd";
const MIB = 1024 * 1024;

/** Our Creator Application (§Creator Application): four characters naming the writer. */
export const VHD_CREATOR_APPLICATION = "pwkl";
/** Creator Version 1.0 (major in the high 16 bits, as in the File Format Version). */
const VHD_CREATOR_VERSION = 0x00010000;
/** Creator Host OS "Wi2k" (§Creator Host OS): Windows, the value Hyper-V and Azure write. */
const VHD_CREATOR_HOST_OS = "Wi2k";

/** The dynamic header follows the footer copy in sector 0, and the BAT follows the header. */
const DYNAMIC_HEADER_OFFSET_BYTES = VHD_FOOTER_BYTES;
const BAT_OFFSET_BYTES = DYNAMIC_HEADER_OFFSET_BYTES + VHD_DYNAMIC_HEADER_BYTES;

/** "true"/"false", "on"/"off", "1"/"0", "yes"/"no" from the CLI's `-o key=value`, or a real boolean. */
const Flag = z.union([z.boolean(), z.stringbool()]);

const VhdWriterOptions = z.strictObject({
  virtualSizeBytes: z.coerce.number().int().positive(),
  /** "dynamic" allocates 2 MiB blocks as data arrives; "fixed" is the disk followed by a footer. */
  subformat: z.enum(["dynamic", "fixed"]).default("dynamic"),
  /**
   * Current Size is exactly the requested size (Hyper-V and Azure read it). Off: the size is
   * rounded up to what the CHS geometry expresses, as Virtual PC needs.
   */
  forceSize: Flag.default(true),
  /** Round the size up to a whole MiB first, which Azure requires of uploaded VHDs. */
  roundToMiB: Flag.default(false),
});
export type VhdWriterOptions = z.infer<typeof VhdWriterOptions>;

export interface VhdPlan {
  readonly virtualSizeBytes: number;
  readonly geometry: ChsGeometry;
}

/**
 * The image size and footer geometry for a requested size. The size is first rounded up to
 * whole sectors (a VHD counts sectors) and, with roundToMiB, to whole MiB.
 * - forceSize: Current Size is that size. The geometry is the spec's when it expresses the
 *   size exactly; otherwise it is the maximum geometry 65535/16/255, which every reader
 *   (qemu before and after 10.0, Hyper-V, Azure) takes to mean "use Current Size". The spec's
 *   rounded-down geometry would make qemu before 10.0, which sizes unknown creators by CHS,
 *   cut off the end of the disk. qemu's own force_size does the same.
 * - otherwise: the size is rounded UP to the smallest CHS-expressible size, so no data is cut
 *   off (qemu's rounding); sizes past the CHS maximum keep the maximum geometry.
 */
export function planVhdSize(requestedBytes: number, forceSize: boolean, roundToMiB: boolean): VhdPlan {
  let sizeBytes = roundToMiB ? alignUp(requestedBytes, MIB) : requestedBytes;
  sizeBytes = alignUp(sizeBytes, VHD_SECTOR_BYTES);
  const sectors = sizeBytes / VHD_SECTOR_BYTES;
  let geometry: ChsGeometry;
  if (forceSize) {
    const spec = chsGeometryFor(sectors);
    geometry = chsTotalSectors(spec) === sectors ? spec : VHD_CHS_MAX_GEOMETRY;
  } else {
    geometry = chsGeometryCovering(sectors);
    if (geometry !== VHD_CHS_MAX_GEOMETRY) sizeBytes = chsTotalSectors(geometry) * VHD_SECTOR_BYTES;
  }
  if (sizeBytes > VHD_MAX_SIZE_BYTES) {
    throw new InvalidArgsError(
      "VHD_SIZE_TOO_LARGE",
      `${FORMAT} writer: ${sizeBytes} bytes exceeds the format's 2040 GiB limit (${VHD_MAX_SIZE_BYTES})`,
      { context: { requestedBytes, sizeBytes } },
    );
  }
  return { virtualSizeBytes: sizeBytes, geometry };
}

function footerBytes(plan: VhdPlan, diskType: number, dataOffset: bigint, uniqueId: Buffer): Buffer {
  const size = BigInt(plan.virtualSizeBytes);
  const buf = encode(VhdFooter, {
    cookie: VHD_FOOTER_COOKIE,
    features: VHD_FEATURES_RESERVED,
    fileFormatVersion: VHD_VERSION_1_0,
    dataOffset,
    timestamp: Math.max(0, Math.floor(Date.now() / 1000) - VHD_EPOCH_UNIX_SECONDS) >>> 0,
    creatorApplication: Buffer.from(VHD_CREATOR_APPLICATION, "latin1"),
    creatorVersion: VHD_CREATOR_VERSION,
    creatorHostOs: Buffer.from(VHD_CREATOR_HOST_OS, "latin1"),
    originalSize: size,
    currentSize: size,
    cylinders: plan.geometry.cylinders,
    heads: plan.geometry.heads,
    sectorsPerTrack: plan.geometry.sectorsPerTrack,
    diskType,
    checksum: 0,
    uniqueId,
    savedState: 0,
  });
  buf.writeUInt32BE(vhdChecksum(buf, VHD_FOOTER_CHECKSUM_OFFSET), VHD_FOOTER_CHECKSUM_OFFSET);
  return buf;
}

/** A UUID as 16 bytes, for the footer's Unique Id (§Unique Id). */
function uuidBytes(): Buffer {
  return Buffer.from(randomUUID().replaceAll("-", ""), "hex");
}

/** Zeros to compare writes against: all-zero pieces are left as holes. */
const ZEROS = Buffer.alloc(VHD_DEFAULT_BLOCK_BYTES);

function isAllZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const piece = data.subarray(at, Math.min(data.length, at + ZEROS.length));
    if (!piece.equals(ZEROS.subarray(0, piece.length))) return false;
  }
  return true;
}

export async function createVhdWriter(target: ByteTarget, options: WriterOptions): Promise<DiskSink> {
  const parsed = parseWriterOptions(FORMAT, VhdWriterOptions, options);
  const plan = planVhdSize(parsed.virtualSizeBytes, parsed.forceSize, parsed.roundToMiB);
  if (parsed.subformat === "dynamic") return createDynamicWriter(target, plan);
  // As for raw: with the length set first, every data write lands inside the file rather than
  // extending it, which file systems do faster (docs/decisions/0003-conversion-performance.md).
  if (!target.sequential) await target.truncate(plan.virtualSizeBytes);
  return createFixedWriter(target, plan);
}

function details(plan: VhdPlan, subformat: string, extra: Record<string, number>): SinkResult["details"] {
  return {
    subformat,
    virtualSizeBytes: plan.virtualSizeBytes,
    cylinders: plan.geometry.cylinders,
    heads: plan.geometry.heads,
    sectorsPerTrack: plan.geometry.sectorsPerTrack,
    creatorApplication: VHD_CREATOR_APPLICATION,
    ...extra,
  };
}

/**
 * Fixed disk (§"Fixed Hard Disk Image"): the disk's bytes, then the footer. On a file, zero
 * ranges stay holes; on a sequential target they are streamed as zeros by `truncate`.
 */
function createFixedWriter(target: ByteTarget, plan: VhdPlan): DiskSink {
  const { virtualSizeBytes } = plan;
  const guard = new SinkWriteGuard(FORMAT, target.name, virtualSizeBytes);
  /** Where a sequential target stands: the end of the last bytes sent to it. */
  let targetEndBytes = 0;
  let dataBytesWritten = 0;
  async function place(offsetBytes: number, data: Payload): Promise<void> {
    guard.accept(offsetBytes, data.length);
    // Zeros become holes on a file; a sequential target gets them from the next truncate.
    if (data instanceof Buffer && isAllZero(data)) return;
    if (target.sequential && offsetBytes > targetEndBytes) await target.truncate(offsetBytes);
    await put(target, offsetBytes, data);
    targetEndBytes = offsetBytes + data.length;
    dataBytesWritten += data.length;
  }
  return {
    format: FORMAT,
    virtualSizeBytes,
    // A fixed disk has no allocation unit; this sizes convert()'s zero detection.
    blockSizeBytes: VHD_DEFAULT_BLOCK_BYTES,
    // Pieces of `data` go straight to the target; nothing is kept.
    releasesData: target.releasesData === true,
    write: place,
    ...copyMembers(target, place),
    async finish() {
      await target.truncate(virtualSizeBytes);
      await target.write(virtualSizeBytes, footerBytes(plan, VHD_DISK_TYPE_FIXED, VHD_NO_DATA_OFFSET, uuidBytes()));
      await target.close();
      return {
        location: target.name,
        dataBytesWritten,
        details: details(plan, "fixed", { fileSizeBytes: virtualSizeBytes + VHD_FOOTER_BYTES }),
      };
    },
    abort: () => target.close(),
  };
}

/**
 * Dynamic disk (§"Dynamic Hard Disk Image"): footer copy, dynamic header, BAT, then blocks
 * appended in the order data arrives (each a sector bitmap, all ones, and the block), then the
 * footer. The BAT is at most 4 MiB (2040 GiB in 2 MiB blocks) and is kept in memory until
 * finish(), which writes it, the footer and, last, the footer copy in sector 0, so an aborted
 * file carries no cookie and is never taken for a complete image.
 */
async function createDynamicWriter(target: ByteTarget, plan: VhdPlan): Promise<DiskSink> {
  if (target.sequential) {
    // The BAT and the header in front of the blocks must hold every block's offset, and which
    // blocks hold data is known only once the last write has arrived.
    throw new NotCapableError(
      "VHD_SEQUENTIAL_DYNAMIC",
      `${FORMAT} writer: a dynamic VHD cannot be streamed to the sequential target ${target.name}; ` +
        "write it to a file or use subformat=fixed",
      { context: { target: target.name } },
    );
  }
  const { virtualSizeBytes } = plan;
  const blockBytes = VHD_DEFAULT_BLOCK_BYTES;
  const bitmapBytes = bitmapBytesFor(blockBytes);
  const blocks = Math.ceil(virtualSizeBytes / blockBytes);
  const batBytes = alignUp(blocks * 4, VHD_SECTOR_BYTES);
  const bat = Buffer.alloc(batBytes, 0xff);
  // Every allocated block starts with a bitmap of ones: all its sectors hold data (§"Block
  // Allocation Table"); the block's unwritten parts are file holes and read as zeros.
  const bitmap = Buffer.alloc(bitmapBytes, 0xff);
  const uniqueId = uuidBytes();
  const footer = footerBytes(plan, VHD_DISK_TYPE_DYNAMIC, BigInt(DYNAMIC_HEADER_OFFSET_BYTES), uniqueId);

  const header = encode(VhdDynamicHeader, {
    cookie: VHD_DYNAMIC_COOKIE,
    // No further structure; all 64 bits set, as Microsoft's tools expect (the spec says 0xFFFFFFFF).
    dataOffset: VHD_NO_DATA_OFFSET,
    tableOffset: BigInt(BAT_OFFSET_BYTES),
    headerVersion: VHD_VERSION_1_0,
    maxTableEntries: blocks,
    blockSize: blockBytes,
    checksum: 0,
    parentUniqueId: Buffer.alloc(16),
    parentTimestamp: 0,
  });
  header.writeUInt32BE(vhdChecksum(header, VHD_DYNAMIC_HEADER_CHECKSUM_OFFSET), VHD_DYNAMIC_HEADER_CHECKSUM_OFFSET);
  await target.write(DYNAMIC_HEADER_OFFSET_BYTES, header);
  // An all-unused BAT now, so that even an aborted file maps no block to sector 0.
  await target.write(BAT_OFFSET_BYTES, bat);

  let nextFreeBytes = BAT_OFFSET_BYTES + batBytes;
  const guard = new SinkWriteGuard(FORMAT, target.name, virtualSizeBytes);
  let dataBytesWritten = 0;
  let blocksAllocated = 0;

  async function writePiece(blockIndex: number, inBlockBytes: number, piece: Payload): Promise<void> {
    let entry = bat.readUInt32BE(blockIndex * 4);
    if (entry === VHD_BAT_UNUSED) {
      entry = nextFreeBytes / VHD_SECTOR_BYTES;
      bat.writeUInt32BE(entry, blockIndex * 4);
      await target.write(nextFreeBytes, bitmap);
      nextFreeBytes += bitmapBytes + blockBytes;
      blocksAllocated++;
    }
    await put(target, entry * VHD_SECTOR_BYTES + bitmapBytes + inBlockBytes, piece);
    dataBytesWritten += piece.length;
  }

  async function place(offsetBytes: number, data: Payload): Promise<void> {
    guard.accept(offsetBytes, data.length);
    for (let at = 0; at < data.length; ) {
      const position = offsetBytes + at;
      const blockIndex = Math.floor(position / blockBytes);
      const inBlockBytes = position - blockIndex * blockBytes;
      const length = Math.min(blockBytes - inBlockBytes, data.length - at);
      const piece = data.subarray(at, at + length);
      // Zeros need no block, and in an allocated block they are already a hole. (A span has
      // none: convert() checked.)
      if (piece instanceof FileSpan || !isAllZero(piece)) await writePiece(blockIndex, inBlockBytes, piece);
      at += length;
    }
  }

  return {
    format: FORMAT,
    virtualSizeBytes,
    blockSizeBytes: blockBytes,
    // Pieces of `data` go straight to the target; nothing is kept.
    releasesData: target.releasesData === true,
    write: place,
    ...copyMembers(target, place),
    async finish() {
      await target.write(BAT_OFFSET_BYTES, bat);
      await target.write(nextFreeBytes, footer);
      await target.write(0, footer);
      await target.close();
      return {
        location: target.name,
        dataBytesWritten,
        details: details(plan, "dynamic", {
          blockSizeBytes: blockBytes,
          blocksAllocated,
          fileSizeBytes: nextFreeBytes + VHD_FOOTER_BYTES,
        }),
      };
    },
    abort: () => target.close(),
  };
}
