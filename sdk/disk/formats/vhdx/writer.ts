// VHDX writer ([MS-VHDX] v1.0), dynamic (default) or fixed.
//
// File layout, every object 1 MiB aligned (§2.2):
//   0        header section: identifier, two headers, two region tables
//   1 MiB    log (1 MiB, left empty: LogGuid is zero, so nothing needs replay)
//   2 MiB    metadata region (1 MiB: table, then the five required items)
//   3 MiB    BAT region, rounded up to 1 MiB
//   then     payload blocks: in virtual order as data arrives (dynamic) or all of them in
//            order (fixed, whose unwritten blocks stay holes in the file)
//
// The BAT sits before the data at a fixed place, so a dynamic sink keeps only the BAT page
// that covers the current write position and writes it out once the position moves past it.
// The headers are written last, in finish(): an aborted file has no valid header and cannot be
// mistaken for a complete image.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { NotCapableError } from "../../../errors.ts";
import type { WriterOptions } from "../../format.ts";
import { alignUp, encode, isPowerOfTwo } from "../../layout.ts";
import { SinkWriteGuard } from "../../sink-guard.ts";
import { parseWriterOptions } from "../../writer-options.ts";
import type { ByteTarget, DiskSink, SinkResult } from "../../types.ts";
import { copyMembers, put, type FileSpan, type Payload } from "../../file-span.ts";
import { crc32cWithZeroedField } from "./crc32c.ts";
import {
  BAT_ENTRY_BYTES,
  BAT_REGION_GUID,
  batEntryCount,
  batIndexOfBlock,
  chunkRatio,
  FILE_IDENTIFIER_BYTES,
  FILE_IDENTIFIER_CREATOR_BYTES,
  FILE_IDENTIFIER_CREATOR_OFFSET_BYTES,
  FILE_IDENTIFIER_SIGNATURE,
  FILE_PARAMETERS_GUID,
  FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED,
  FileParameters,
  FORMAT_NAME,
  guid,
  Header,
  HEADER_CHECKSUM_OFFSET_BYTES,
  HEADER_LOG_VERSION,
  HEADER_SIGNATURE,
  HEADER_VERSION,
  LOGICAL_SECTOR_SIZE_GUID,
  METADATA_ENTRY_BYTES,
  METADATA_FLAG_IS_REQUIRED,
  METADATA_FLAG_IS_VIRTUAL_DISK,
  METADATA_ITEM_MIN_OFFSET_BYTES,
  METADATA_REGION_GUID,
  METADATA_TABLE_BYTES,
  METADATA_TABLE_SIGNATURE,
  MetadataEntry,
  MetadataTableHeader,
  PAGE83_DATA_GUID,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  putBatEntry,
  PHYSICAL_SECTOR_SIZE_GUID,
  REGION_ENTRY_BYTES,
  REGION_REQUIRED_FLAG,
  REGION_TABLE_BYTES,
  REGION_TABLE_CHECKSUM_OFFSET_BYTES,
  REGION_TABLE_SIGNATURE,
  RegionEntry,
  RegionTableHeader,
  VHDX_ALIGNMENT_BYTES,
  VHDX_HEADER1_OFFSET_BYTES,
  VHDX_HEADER2_OFFSET_BYTES,
  VHDX_MAX_BLOCK_SIZE_BYTES,
  VHDX_MAX_VIRTUAL_SIZE_BYTES,
  VHDX_MIN_BLOCK_SIZE_BYTES,
  VHDX_REGION_TABLE1_OFFSET_BYTES,
  VHDX_REGION_TABLE2_OFFSET_BYTES,
  VIRTUAL_DISK_SIZE_GUID,
} from "./layout.ts";

const MIB = 1024 * 1024;

/**
 * Default payload block size: 32 MiB, Hyper-V's default for dynamic disks. qemu-img instead
 * picks 8 to 64 MiB by disk size; 32 MiB keeps the BAT small and blocks few for typical disks.
 */
export const VHDX_DEFAULT_BLOCK_SIZE_BYTES = 32 * MIB;
/** We always write 512-byte logical sectors (what every hypervisor boots from) and 4 KiB physical. */
export const VHDX_WRITER_LOGICAL_SECTOR_BYTES = 512;
export const VHDX_WRITER_PHYSICAL_SECTOR_BYTES = 4096;

const LOG_OFFSET_BYTES = 1 * MIB;
const LOG_LENGTH_BYTES = 1 * MIB;
const METADATA_OFFSET_BYTES = 2 * MIB;
const METADATA_LENGTH_BYTES = 1 * MIB;
const BAT_OFFSET_BYTES = 3 * MIB;
/** BAT bytes a dynamic sink holds in memory: 1 MiB = 131072 entries, the BAT's own alignment unit. */
const BAT_PAGE_BYTES = MIB;
const BAT_PAGE_ENTRIES = BAT_PAGE_BYTES / BAT_ENTRY_BYTES;
const CREATOR = "portable-workload";

/** "32M", "1GiB", "1048576": the CLI passes sizes as strings. */
function parseSize(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const match = /^\s*(\d+)\s*(?:([KMGT])(?:i?B)?)?\s*$/i.exec(value);
  if (match === null) return value;
  const power = { K: 1, M: 2, G: 3, T: 4 }[(match[2] ?? "").toUpperCase() as "K"] ?? 0;
  return Number(match[1]) * 1024 ** power;
}

const OptionsSchema = z.strictObject({
  virtualSizeBytes: z.preprocess(
    parseSize,
    z
      .number()
      .int()
      .positive()
      .max(VHDX_MAX_VIRTUAL_SIZE_BYTES, "VHDX disks are at most 64 TiB ([MS-VHDX] §2.6.2.2)"),
  ),
  subformat: z.enum(["dynamic", "fixed"]).default("dynamic"),
  blockSize: z
    .preprocess(
      parseSize,
      z
        .number()
        .int()
        .min(VHDX_MIN_BLOCK_SIZE_BYTES)
        .max(VHDX_MAX_BLOCK_SIZE_BYTES)
        .refine(isPowerOfTwo, "block size must be a power of two ([MS-VHDX] §2.6.2.1)"),
    )
    .default(VHDX_DEFAULT_BLOCK_SIZE_BYTES),
});

export type VhdxWriterOptions = z.infer<typeof OptionsSchema>;

/** qemu-img's option names, accepted so that `-o block_size=1M` works as it does there. */
const QEMU_OPTION_NAMES: Readonly<Record<string, keyof VhdxWriterOptions>> = { block_size: "blockSize" };

export function parseVhdxWriterOptions(options: WriterOptions): VhdxWriterOptions {
  const renamed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    const ours = QEMU_OPTION_NAMES[key];
    renamed[ours !== undefined && !(ours in options) ? ours : key] = value;
  }
  return parseWriterOptions(FORMAT_NAME, OptionsSchema, { ...renamed, virtualSizeBytes: options.virtualSizeBytes });
}

export async function createVhdxWriter(target: ByteTarget, options: WriterOptions): Promise<DiskSink> {
  const parsed = parseVhdxWriterOptions(options);
  if (target.sequential) {
    throw new NotCapableError(
      "VHDX_SEQUENTIAL_TARGET",
      `${FORMAT_NAME}: ${target.name} is sequential, but VHDX places its BAT before the data and fills it in last`,
    );
  }
  return new VhdxSink(target, parsed);
}

class VhdxSink implements DiskSink {
  readonly format = FORMAT_NAME;
  readonly virtualSizeBytes: number;
  readonly blockSizeBytes: number;
  /** Pieces of `data` go straight to the target; nothing is kept. */
  readonly releasesData: boolean;
  /** Offered when the target is a file: data blocks are copied by the kernel. */
  declare readonly copy?: (offsetBytes: number, span: FileSpan) => Promise<void>;
  declare readonly copiesFrom?: (fd: number) => boolean;
  readonly #target: ByteTarget;
  readonly #fixed: boolean;
  /** The size asked for; VHDX needs whole logical sectors, so `virtualSizeBytes` may be rounded up. */
  readonly #requestedSizeBytes: number;
  readonly #blockCount: number;
  readonly #chunkRatio: number;
  readonly #batLengthBytes: number;
  readonly #dataStartBytes: number;
  /** Dynamic only: file offset of each allocated block, kept only for the current BAT page. */
  readonly #batPage = Buffer.alloc(BAT_PAGE_BYTES);
  #batPageIndex = 0;
  #batPageDirty = false;
  #lastAllocatedBlock = -1;
  #lastAllocatedOffsetBytes = 0;
  #allocatedBlocks = 0;
  #nextFileOffsetBytes: number;
  #dataBytesWritten = 0;
  readonly #guard: SinkWriteGuard;

  constructor(target: ByteTarget, options: VhdxWriterOptions) {
    this.#target = target;
    this.releasesData = target.releasesData === true;
    this.#fixed = options.subformat === "fixed";
    this.#requestedSizeBytes = options.virtualSizeBytes;
    this.virtualSizeBytes = alignUp(options.virtualSizeBytes, VHDX_WRITER_LOGICAL_SECTOR_BYTES);
    this.blockSizeBytes = options.blockSize;
    this.#blockCount = Math.ceil(this.virtualSizeBytes / this.blockSizeBytes);
    this.#chunkRatio = chunkRatio(VHDX_WRITER_LOGICAL_SECTOR_BYTES, this.blockSizeBytes);
    this.#batLengthBytes = Math.max(VHDX_ALIGNMENT_BYTES, alignUp(batEntryCount(this.#blockCount, this.#chunkRatio) * BAT_ENTRY_BYTES, VHDX_ALIGNMENT_BYTES));
    this.#dataStartBytes = BAT_OFFSET_BYTES + this.#batLengthBytes;
    this.#nextFileOffsetBytes = this.#dataStartBytes;
    this.#guard = new SinkWriteGuard(FORMAT_NAME, target.name, this.virtualSizeBytes);
    Object.assign(this, copyMembers(target, (offsetBytes, data) => this.#place(offsetBytes, data)));
  }

  #check(offsetBytes: number, data: Payload): void {
    this.#guard.accept(offsetBytes, data.length);
  }

  /** File offset of payload block `blockIndex`, allocating it (dynamic) on first use. */
  async #blockFileOffset(blockIndex: number): Promise<number> {
    if (this.#fixed) return this.#dataStartBytes + blockIndex * this.blockSizeBytes;
    if (blockIndex === this.#lastAllocatedBlock) return this.#lastAllocatedOffsetBytes;
    const fileOffsetBytes = this.#nextFileOffsetBytes;
    this.#nextFileOffsetBytes += this.blockSizeBytes;
    this.#lastAllocatedBlock = blockIndex;
    this.#lastAllocatedOffsetBytes = fileOffsetBytes;
    this.#allocatedBlocks++;
    const batIndex = batIndexOfBlock(blockIndex, this.#chunkRatio);
    const pageIndex = Math.floor(batIndex / BAT_PAGE_ENTRIES);
    if (pageIndex !== this.#batPageIndex) {
      // Writes only move forward, so a page left behind is final.
      await this.#flushBatPage();
      this.#batPage.fill(0);
      this.#batPageIndex = pageIndex;
    }
    putBatEntry(this.#batPage, (batIndex % BAT_PAGE_ENTRIES) * BAT_ENTRY_BYTES, PAYLOAD_BLOCK_FULLY_PRESENT, fileOffsetBytes);
    this.#batPageDirty = true;
    return fileOffsetBytes;
  }

  async #flushBatPage(): Promise<void> {
    if (!this.#batPageDirty) return;
    const startBytes = this.#batPageIndex * BAT_PAGE_BYTES;
    // A copy: the page buffer is reused, and the target may still hold what it was given.
    const page = Buffer.from(this.#batPage.subarray(0, Math.min(BAT_PAGE_BYTES, this.#batLengthBytes - startBytes)));
    await this.#target.write(BAT_OFFSET_BYTES + startBytes, page);
    this.#batPageDirty = false;
  }

  write(offsetBytes: number, data: Buffer): Promise<void> {
    return this.#place(offsetBytes, data);
  }

  async #place(offsetBytes: number, data: Payload): Promise<void> {
    this.#check(offsetBytes, data);
    if (data.length === 0) return;
    // Split at block boundaries, then merge pieces that land back to back in the file, so a
    // write of several whole new blocks stays one target write.
    let runFileOffsetBytes = -1;
    let runStart = 0;
    let position = 0;
    while (position < data.length) {
      const diskOffsetBytes = offsetBytes + position;
      const blockIndex = Math.floor(diskOffsetBytes / this.blockSizeBytes);
      const withinBytes = diskOffsetBytes - blockIndex * this.blockSizeBytes;
      const pieceBytes = Math.min(this.blockSizeBytes - withinBytes, data.length - position);
      const fileOffsetBytes = (await this.#blockFileOffset(blockIndex)) + withinBytes;
      if (runFileOffsetBytes < 0 || runFileOffsetBytes + (position - runStart) !== fileOffsetBytes) {
        if (runFileOffsetBytes >= 0) await put(this.#target, runFileOffsetBytes, data.subarray(runStart, position));
        runFileOffsetBytes = fileOffsetBytes;
        runStart = position;
      }
      position += pieceBytes;
    }
    await put(this.#target, runFileOffsetBytes, data.subarray(runStart));
    this.#dataBytesWritten += data.length;
  }

  async finish(): Promise<SinkResult> {
    this.#guard.finishing();
    try {
      if (this.#fixed) await this.#writeFixedBat();
      else await this.#flushBatPage();
      await this.#writeMetadata();
      const regionTable = this.#regionTable();
      await this.#target.write(VHDX_REGION_TABLE1_OFFSET_BYTES, regionTable);
      await this.#target.write(VHDX_REGION_TABLE2_OFFSET_BYTES, regionTable);
      const fileWriteGuid = guid(randomUUID());
      const dataWriteGuid = guid(randomUUID());
      // §2.2.2: readers take the valid header with the larger sequence number; both are valid here.
      await this.#target.write(VHDX_HEADER1_OFFSET_BYTES, this.#header(1n, fileWriteGuid, dataWriteGuid));
      await this.#target.write(VHDX_HEADER2_OFFSET_BYTES, this.#header(2n, fileWriteGuid, dataWriteGuid));
      await this.#target.write(0, this.#fileIdentifier());
      const fileSizeBytes = this.#fixed ? this.#dataStartBytes + this.#blockCount * this.blockSizeBytes : this.#nextFileOffsetBytes;
      await this.#target.truncate(fileSizeBytes);
      await this.#target.close();
      return {
        location: this.#target.name,
        dataBytesWritten: this.#dataBytesWritten,
        details: {
          subformat: this.#fixed ? "fixed" : "dynamic",
          blockSizeBytes: this.blockSizeBytes,
          virtualSizeBytes: this.virtualSizeBytes,
          roundedUpToSector: this.virtualSizeBytes !== this.#requestedSizeBytes,
          allocatedBlocks: this.#fixed ? this.#blockCount : this.#allocatedBlocks,
          fileSizeBytes,
        },
      };
    } catch (err) {
      await this.#target.close().catch(() => {});
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (!this.#guard.close()) return;
    await this.#target.close();
  }

  async #writeFixedBat(): Promise<void> {
    // Every payload entry is FULLY_PRESENT at its place in the fixed layout; sector bitmap
    // entries stay zero (NOT_PRESENT) as a disk without a parent has none (§2.5.1.2).
    const page = Buffer.alloc(Math.min(BAT_PAGE_BYTES, this.#batLengthBytes));
    const entryCount = batEntryCount(this.#blockCount, this.#chunkRatio);
    for (let startBytes = 0; startBytes < entryCount * BAT_ENTRY_BYTES; startBytes += page.length) {
      page.fill(0);
      const firstEntry = startBytes / BAT_ENTRY_BYTES;
      const lastEntry = Math.min(entryCount, firstEntry + page.length / BAT_ENTRY_BYTES);
      for (let batIndex = firstEntry; batIndex < lastEntry; batIndex++) {
        // Every (chunkRatio + 1)-th entry is a sector bitmap entry.
        if ((batIndex + 1) % (this.#chunkRatio + 1) === 0) continue;
        const blockIndex = batIndex - Math.floor(batIndex / (this.#chunkRatio + 1));
        const fileOffsetBytes = this.#dataStartBytes + blockIndex * this.blockSizeBytes;
        putBatEntry(page, (batIndex - firstEntry) * BAT_ENTRY_BYTES, PAYLOAD_BLOCK_FULLY_PRESENT, fileOffsetBytes);
      }
      await this.#target.write(BAT_OFFSET_BYTES + startBytes, page.subarray(0, (lastEntry - firstEntry) * BAT_ENTRY_BYTES));
    }
  }

  async #writeMetadata(): Promise<void> {
    // §2.6: a 64 KiB table, then the items packed from 64 KiB on.
    const itemSizeBytes = Buffer.alloc(8);
    itemSizeBytes.writeBigUInt64LE(BigInt(this.virtualSizeBytes));
    const logical = Buffer.alloc(4);
    logical.writeUInt32LE(VHDX_WRITER_LOGICAL_SECTOR_BYTES);
    const physical = Buffer.alloc(4);
    physical.writeUInt32LE(VHDX_WRITER_PHYSICAL_SECTOR_BYTES);
    const items: [Buffer, number, Buffer][] = [
      [
        FILE_PARAMETERS_GUID,
        METADATA_FLAG_IS_REQUIRED,
        encode(FileParameters, { blockSizeBytes: this.blockSizeBytes, flags: this.#fixed ? FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED : 0 }),
      ],
      [VIRTUAL_DISK_SIZE_GUID, METADATA_FLAG_IS_REQUIRED | METADATA_FLAG_IS_VIRTUAL_DISK, itemSizeBytes],
      // §2.6.2.3: a unique id the guest sees as the SCSI page 83 identifier.
      [PAGE83_DATA_GUID, METADATA_FLAG_IS_REQUIRED | METADATA_FLAG_IS_VIRTUAL_DISK, guid(randomUUID())],
      [LOGICAL_SECTOR_SIZE_GUID, METADATA_FLAG_IS_REQUIRED | METADATA_FLAG_IS_VIRTUAL_DISK, logical],
      [PHYSICAL_SECTOR_SIZE_GUID, METADATA_FLAG_IS_REQUIRED | METADATA_FLAG_IS_VIRTUAL_DISK, physical],
    ];
    const region = Buffer.alloc(METADATA_ITEM_MIN_OFFSET_BYTES + 64);
    MetadataTableHeader.put(region, 0, { signature: METADATA_TABLE_SIGNATURE, entryCount: items.length });
    let itemOffsetBytes = METADATA_TABLE_BYTES;
    items.forEach(([itemId, flags, value], index) => {
      MetadataEntry.put(region, 32 + index * METADATA_ENTRY_BYTES, { itemId, offsetBytes: itemOffsetBytes, lengthBytes: value.length, flags });
      value.copy(region, itemOffsetBytes);
      itemOffsetBytes += value.length;
    });
    await this.#target.write(METADATA_OFFSET_BYTES, region);
  }

  #regionTable(): Buffer {
    const table = Buffer.alloc(REGION_TABLE_BYTES);
    RegionTableHeader.put(table, 0, { signature: REGION_TABLE_SIGNATURE, checksum: 0, entryCount: 2 });
    RegionEntry.put(table, 16, { guid: BAT_REGION_GUID, fileOffsetBytes: BigInt(BAT_OFFSET_BYTES), lengthBytes: this.#batLengthBytes, flags: REGION_REQUIRED_FLAG });
    RegionEntry.put(table, 16 + REGION_ENTRY_BYTES, {
      guid: METADATA_REGION_GUID,
      fileOffsetBytes: BigInt(METADATA_OFFSET_BYTES),
      lengthBytes: METADATA_LENGTH_BYTES,
      flags: REGION_REQUIRED_FLAG,
    });
    table.writeUInt32LE(crc32cWithZeroedField(table, REGION_TABLE_CHECKSUM_OFFSET_BYTES), REGION_TABLE_CHECKSUM_OFFSET_BYTES);
    return table;
  }

  #header(sequenceNumber: bigint, fileWriteGuid: Buffer, dataWriteGuid: Buffer): Buffer {
    const header = encode(Header, {
      signature: HEADER_SIGNATURE,
      checksum: 0,
      sequenceNumber,
      fileWriteGuid,
      dataWriteGuid,
      logGuid: Buffer.alloc(16),
      logVersion: HEADER_LOG_VERSION,
      version: HEADER_VERSION,
      logLengthBytes: LOG_LENGTH_BYTES,
      logOffsetBytes: BigInt(LOG_OFFSET_BYTES),
    });
    header.writeUInt32LE(crc32cWithZeroedField(header, HEADER_CHECKSUM_OFFSET_BYTES), HEADER_CHECKSUM_OFFSET_BYTES);
    return header;
  }

  #fileIdentifier(): Buffer {
    const identifier = Buffer.alloc(FILE_IDENTIFIER_BYTES);
    FILE_IDENTIFIER_SIGNATURE.copy(identifier, 0);
    const creator = Buffer.from(CREATOR, "utf16le");
    creator.copy(identifier, FILE_IDENTIFIER_CREATOR_OFFSET_BYTES, 0, Math.min(creator.length, FILE_IDENTIFIER_CREATOR_BYTES));
    return identifier;
  }
}
