// VHDX reader ([MS-VHDX] v1.0). Hand-written because no maintained JavaScript package reads
// VHDX with validation, bounded memory and lazy extents.
//
// Opening validates the header section, region table and metadata, and replays a pending
// metadata log in memory (log.ts). The BAT is read lazily in pages through a small LRU cache,
// so memory stays bounded whatever virtual size the metadata claims.
import { FormatError, InvalidArgsError, NotCapableError } from "../../../errors.ts";
import type { OpenOptions } from "../../format.ts";
import { readExact } from "../../io.ts";
import { isPowerOfTwo, toSafeNumber } from "../../layout.ts";
import type { ByteSource, DiskSource, Extent } from "../../types.ts";
import { crc32cWithZeroedField } from "./crc32c.ts";
import {
  BAT_ENTRY_BYTES,
  BAT_REGION_GUID,
  batEntryCount,
  batIndexOfBlock,
  chunkRatio,
  FILE_IDENTIFIER_SIGNATURE,
  FILE_PARAMETERS_BYTES,
  FILE_PARAMETERS_GUID,
  FILE_PARAMETERS_HAS_PARENT,
  FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED,
  FileParameters,
  FORMAT_NAME,
  Header,
  HEADER_BYTES,
  HEADER_CHECKSUM_OFFSET_BYTES,
  HEADER_LOG_VERSION,
  HEADER_SIGNATURE,
  HEADER_VERSION,
  type HeaderFields,
  isZeroGuid,
  LOGICAL_SECTOR_SIZE_GUID,
  METADATA_ENTRY_BYTES,
  METADATA_FLAG_IS_REQUIRED,
  METADATA_ITEM_MIN_OFFSET_BYTES,
  METADATA_REGION_GUID,
  METADATA_TABLE_BYTES,
  METADATA_TABLE_MAX_ENTRIES,
  METADATA_TABLE_SIGNATURE,
  MetadataEntry,
  MetadataTableHeader,
  PAGE83_DATA_GUID,
  PARENT_LOCATOR_GUID,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_NOT_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  PAYLOAD_BLOCK_UNDEFINED,
  PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_ZERO,
  PHYSICAL_SECTOR_SIZE_GUID,
  REGION_ENTRY_BYTES,
  REGION_REQUIRED_FLAG,
  REGION_TABLE_BYTES,
  REGION_TABLE_CHECKSUM_OFFSET_BYTES,
  REGION_TABLE_MAX_ENTRIES,
  REGION_TABLE_SIGNATURE,
  VHDX_REGION_TABLE1_OFFSET_BYTES,
  VHDX_REGION_TABLE2_OFFSET_BYTES,
  RegionEntry,
  RegionTableHeader,
  SECTOR_SIZE_FIELD_BYTES,
  VHDX_ALIGNMENT_BYTES,
  VHDX_HEADER_READ_BYTES,
  VHDX_HEADER_SECTION_BYTES,
  VHDX_HEADER1_OFFSET_BYTES,
  VHDX_HEADER2_OFFSET_BYTES,
  VHDX_MAX_BLOCK_SIZE_BYTES,
  VHDX_MAX_VIRTUAL_SIZE_BYTES,
  VHDX_MIN_BLOCK_SIZE_BYTES,
  VHDX_SECTOR_SIZES_BYTES,
  VIRTUAL_DISK_SIZE_BYTES,
  VIRTUAL_DISK_SIZE_GUID,
} from "./layout.ts";
import { replayLog } from "./log.ts";

/**
 * BAT entries per cached page: 64 KiB of BAT covers 8192 blocks (8 GiB of disk at 1 MiB blocks,
 * 256 GiB at 32 MiB), so a sequential walk reads the BAT in few, large requests.
 */
const BAT_PAGE_ENTRIES = 8192;
/** Pages kept: 32 x 64 KiB = 2 MiB of BAT at most, however large the disk. */
const BAT_CACHE_PAGES = 32;

const MIB = 1024 * 1024;

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

function formatError(code: string, message: string, context: Record<string, number | string | bigint> = {}): FormatError {
  return new FormatError(code, `${FORMAT_NAME}: ${message}`, { context });
}

interface FileRange {
  readonly name: string;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

interface Geometry {
  readonly virtualSizeBytes: number;
  readonly blockSizeBytes: number;
  readonly logicalSectorBytes: number;
  readonly physicalSectorBytes: number;
  readonly leaveBlocksAllocated: boolean;
}

/** A decoded payload BAT entry: zero, or the file offset of the block's data. */
type BlockLocation = { readonly kind: "zero" } | { readonly kind: "data"; readonly fileOffsetBytes: number };

const ZERO_BLOCK: BlockLocation = { kind: "zero" };

/**
 * Opens a VHDX image. `_options` is accepted for the DiskFormat contract; differencing disks
 * (the only VHDX that would use `backing`) are refused with VHDX_DIFFERENCING.
 */
export async function openVhdx(source: ByteSource, _options: OpenOptions = {}): Promise<DiskSource> {
  const head = await readExact(source, 0, VHDX_HEADER_READ_BYTES, FORMAT_NAME, "header section");
  if (!head.subarray(0, FILE_IDENTIFIER_SIGNATURE.length).equals(FILE_IDENTIFIER_SIGNATURE)) {
    throw formatError("VHDX_BAD_MAGIC", `${source.name} does not start with the "vhdxfile" identifier`);
  }
  const header = activeHeader(head);
  let data = source;
  if (!isZeroGuid(header.logGuid)) {
    const log = checkedRange(source.sizeBytes, "log", header.logOffsetBytes, header.logLengthBytes, "VHDX_BAD_LOG_REGION");
    data = await replayLog(source, { ...log, guid: header.logGuid });
  }
  const regions = regionTable(head, data.sizeBytes);
  const logRange: FileRange | undefined =
    header.logLengthBytes > 0
      ? { name: "log", offsetBytes: toSafeNumber(header.logOffsetBytes, "log offset", FORMAT_NAME), lengthBytes: header.logLengthBytes }
      : undefined;
  const reserved = [{ name: "header section", offsetBytes: 0, lengthBytes: VHDX_HEADER_SECTION_BYTES }, regions.bat, regions.metadata];
  if (logRange !== undefined) reserved.push(logRange);
  checkNoOverlap(reserved);

  const geometry = await readMetadata(data, regions.metadata);
  return new VhdxSource(data, geometry, regions.bat, reserved);
}

function activeHeader(head: Buffer): HeaderFields {
  // §2.2.2: of the two headers, the valid one with the larger SequenceNumber is current.
  const candidates: HeaderFields[] = [];
  for (const offsetBytes of [VHDX_HEADER1_OFFSET_BYTES, VHDX_HEADER2_OFFSET_BYTES]) {
    const bytes = head.subarray(offsetBytes, offsetBytes + HEADER_BYTES);
    const fields = Header.get(bytes, 0);
    if (fields.signature !== HEADER_SIGNATURE) continue;
    if (crc32cWithZeroedField(bytes, HEADER_CHECKSUM_OFFSET_BYTES) !== fields.checksum) continue;
    candidates.push(fields);
  }
  const current = candidates.sort((a, b) => (a.sequenceNumber > b.sequenceNumber ? -1 : 1))[0];
  if (current === undefined) {
    throw formatError("VHDX_BAD_HEADER", "neither header at 64 KiB nor at 128 KiB has a valid signature and CRC-32C");
  }
  if (current.version !== HEADER_VERSION || current.logVersion !== HEADER_LOG_VERSION) {
    throw new NotCapableError(
      "VHDX_UNSUPPORTED_VERSION",
      `${FORMAT_NAME}: header version ${current.version} / log version ${current.logVersion} (only ${HEADER_VERSION} / ${HEADER_LOG_VERSION} exist in [MS-VHDX] v1.0)`,
      { context: { version: current.version, logVersion: current.logVersion } },
    );
  }
  return current;
}

/** A region of the file given as 64-bit offset and length: 1 MiB aligned and inside the file. */
function checkedRange(fileSizeBytes: number, name: string, offset: bigint, lengthBytes: number, code: string): FileRange {
  if (offset % BigInt(VHDX_ALIGNMENT_BYTES) !== 0n || lengthBytes % VHDX_ALIGNMENT_BYTES !== 0 || lengthBytes === 0) {
    throw formatError(code, `${name} at 0x${offset.toString(16)} (+${hex(lengthBytes)}) is not 1 MiB aligned`, { offset, lengthBytes });
  }
  if (offset < BigInt(VHDX_HEADER_SECTION_BYTES) || offset + BigInt(lengthBytes) > BigInt(fileSizeBytes)) {
    throw formatError(code, `${name} at 0x${offset.toString(16)} (+${hex(lengthBytes)}) lies outside the file (size ${hex(fileSizeBytes)}) or in its header section`, {
      offset,
      lengthBytes,
      fileSizeBytes,
    });
  }
  return { name, offsetBytes: Number(offset), lengthBytes };
}

function regionTable(head: Buffer, fileSizeBytes: number): { bat: FileRange; metadata: FileRange } {
  // §2.2.3: two identical copies; use the first one that checks out.
  let table: Buffer | undefined;
  for (const offsetBytes of [VHDX_REGION_TABLE1_OFFSET_BYTES, VHDX_REGION_TABLE2_OFFSET_BYTES]) {
    const bytes = head.subarray(offsetBytes, offsetBytes + REGION_TABLE_BYTES);
    const fields = RegionTableHeader.get(bytes, 0);
    if (fields.signature !== REGION_TABLE_SIGNATURE) continue;
    if (crc32cWithZeroedField(bytes, REGION_TABLE_CHECKSUM_OFFSET_BYTES) !== fields.checksum) continue;
    table = bytes;
    break;
  }
  if (table === undefined) {
    throw formatError("VHDX_BAD_REGION_TABLE", "neither region table at 192 KiB nor at 256 KiB has a valid signature and CRC-32C");
  }
  const { entryCount } = RegionTableHeader.get(table, 0);
  if (entryCount > REGION_TABLE_MAX_ENTRIES) {
    throw formatError("VHDX_BAD_REGION_TABLE", `region table claims ${entryCount} entries (at most ${REGION_TABLE_MAX_ENTRIES})`, { entryCount });
  }
  let bat: FileRange | undefined;
  let metadata: FileRange | undefined;
  for (let index = 0; index < entryCount; index++) {
    const entry = RegionEntry.get(table, 16 + index * REGION_ENTRY_BYTES);
    const isBat = entry.guid.equals(BAT_REGION_GUID);
    const isMetadata = entry.guid.equals(METADATA_REGION_GUID);
    if (!isBat && !isMetadata) {
      if ((entry.flags & REGION_REQUIRED_FLAG) !== 0) {
        throw new NotCapableError("VHDX_UNKNOWN_REQUIRED_REGION", `${FORMAT_NAME}: region table entry ${index} is an unknown region marked required`, {
          context: { index },
        });
      }
      continue;
    }
    if ((isBat && bat !== undefined) || (isMetadata && metadata !== undefined)) {
      throw formatError("VHDX_BAD_REGION_TABLE", `region table names the ${isBat ? "BAT" : "metadata"} region twice`, { index });
    }
    const range = checkedRange(fileSizeBytes, isBat ? "BAT region" : "metadata region", entry.fileOffsetBytes, entry.lengthBytes, "VHDX_REGION_OUT_OF_RANGE");
    if (isBat) bat = range;
    else metadata = range;
  }
  if (bat === undefined || metadata === undefined) {
    throw formatError("VHDX_BAD_REGION_TABLE", `region table lacks the ${bat === undefined ? "BAT" : "metadata"} region`);
  }
  return { bat, metadata };
}

function checkNoOverlap(ranges: readonly FileRange[]): void {
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const a = ranges[i]!;
      const b = ranges[j]!;
      if (a.offsetBytes < b.offsetBytes + b.lengthBytes && b.offsetBytes < a.offsetBytes + a.lengthBytes) {
        throw formatError("VHDX_REGION_OVERLAP", `${a.name} at ${hex(a.offsetBytes)} overlaps ${b.name} at ${hex(b.offsetBytes)}`);
      }
    }
  }
}

async function readMetadata(data: ByteSource, region: FileRange): Promise<Geometry> {
  if (region.lengthBytes < METADATA_TABLE_BYTES) {
    throw formatError("VHDX_BAD_METADATA", `metadata region of ${region.lengthBytes} bytes cannot hold its 64 KiB table`);
  }
  const table = await readExact(data, region.offsetBytes, METADATA_TABLE_BYTES, FORMAT_NAME, "metadata table");
  const tableHeader = MetadataTableHeader.get(table, 0);
  if (!tableHeader.signature.equals(METADATA_TABLE_SIGNATURE)) {
    throw formatError("VHDX_BAD_METADATA", `metadata table at ${hex(region.offsetBytes)} lacks its "metadata" signature`);
  }
  if (tableHeader.entryCount > METADATA_TABLE_MAX_ENTRIES) {
    throw formatError("VHDX_BAD_METADATA", `metadata table claims ${tableHeader.entryCount} entries (at most ${METADATA_TABLE_MAX_ENTRIES})`);
  }
  const known = [FILE_PARAMETERS_GUID, VIRTUAL_DISK_SIZE_GUID, PAGE83_DATA_GUID, LOGICAL_SECTOR_SIZE_GUID, PHYSICAL_SECTOR_SIZE_GUID, PARENT_LOCATOR_GUID];
  const items = new Map<string, { offsetBytes: number; lengthBytes: number }>();
  for (let index = 0; index < tableHeader.entryCount; index++) {
    const entry = MetadataEntry.get(table, 32 + index * METADATA_ENTRY_BYTES);
    const key = entry.itemId.toString("hex");
    if (!known.some((id) => id.equals(entry.itemId))) {
      if ((entry.flags & METADATA_FLAG_IS_REQUIRED) !== 0) {
        throw new NotCapableError("VHDX_UNKNOWN_REQUIRED_METADATA", `${FORMAT_NAME}: metadata entry ${index} is an unknown item marked required`, {
          context: { index },
        });
      }
      continue;
    }
    if (items.has(key)) throw formatError("VHDX_BAD_METADATA", `metadata entry ${index} repeats an item`, { index });
    // §2.6.1.2: item data lies after the table and inside the region.
    if (entry.lengthBytes > 0 && (entry.offsetBytes < METADATA_ITEM_MIN_OFFSET_BYTES || entry.offsetBytes + entry.lengthBytes > region.lengthBytes)) {
      throw formatError("VHDX_BAD_METADATA", `metadata entry ${index} at +${hex(entry.offsetBytes)} (+${entry.lengthBytes}) lies outside the metadata region`, {
        index,
      });
    }
    items.set(key, { offsetBytes: entry.offsetBytes, lengthBytes: entry.lengthBytes });
  }

  async function item(id: Buffer, name: string, minBytes: number, required: boolean): Promise<Buffer | undefined> {
    const found = items.get(id.toString("hex"));
    if (found === undefined) {
      if (!required) return undefined;
      throw formatError("VHDX_MISSING_METADATA", `required metadata item "${name}" is missing`);
    }
    if (found.lengthBytes < minBytes) {
      throw formatError("VHDX_BAD_METADATA", `metadata item "${name}" has ${found.lengthBytes} bytes, needs ${minBytes}`);
    }
    return readExact(data, region.offsetBytes + found.offsetBytes, minBytes, FORMAT_NAME, `metadata item "${name}"`);
  }

  const parameters = FileParameters.get((await item(FILE_PARAMETERS_GUID, "file parameters", FILE_PARAMETERS_BYTES, true))!, 0);
  const sizeField = (await item(VIRTUAL_DISK_SIZE_GUID, "virtual disk size", VIRTUAL_DISK_SIZE_BYTES, true))!.readBigUInt64LE(0);
  const logicalSectorBytes = (await item(LOGICAL_SECTOR_SIZE_GUID, "logical sector size", SECTOR_SIZE_FIELD_BYTES, true))!.readUInt32LE(0);
  // Physical sector size only informs the guest; tolerate its absence as qemu does not rely on it.
  const physicalField = await item(PHYSICAL_SECTOR_SIZE_GUID, "physical sector size", SECTOR_SIZE_FIELD_BYTES, false);
  const physicalSectorBytes = physicalField?.readUInt32LE(0) ?? logicalSectorBytes;

  if ((parameters.flags & FILE_PARAMETERS_HAS_PARENT) !== 0 || items.has(PARENT_LOCATOR_GUID.toString("hex"))) {
    throw new NotCapableError("VHDX_DIFFERENCING", `${FORMAT_NAME}: ${data.name} is a differencing disk (has a parent); differencing VHDX is not supported`);
  }
  const blockSizeBytes = parameters.blockSizeBytes;
  if (!isPowerOfTwo(blockSizeBytes) || blockSizeBytes < VHDX_MIN_BLOCK_SIZE_BYTES || blockSizeBytes > VHDX_MAX_BLOCK_SIZE_BYTES) {
    throw formatError("VHDX_BAD_BLOCK_SIZE", `block size ${blockSizeBytes} is not a power of two from 1 MiB to 256 MiB`, { blockSizeBytes });
  }
  for (const [name, value] of [["logical", logicalSectorBytes], ["physical", physicalSectorBytes]] as const) {
    if (!VHDX_SECTOR_SIZES_BYTES.includes(value)) {
      throw formatError("VHDX_BAD_SECTOR_SIZE", `${name} sector size ${value} is neither 512 nor 4096`, { sectorBytes: value });
    }
  }
  if (sizeField === 0n || sizeField > BigInt(VHDX_MAX_VIRTUAL_SIZE_BYTES) || sizeField % BigInt(logicalSectorBytes) !== 0n) {
    throw formatError("VHDX_BAD_VIRTUAL_SIZE", `virtual disk size ${sizeField} is not a non-zero multiple of ${logicalSectorBytes} up to 64 TiB`, {
      virtualSizeBytes: sizeField,
    });
  }
  return {
    virtualSizeBytes: Number(sizeField),
    blockSizeBytes,
    logicalSectorBytes,
    physicalSectorBytes,
    leaveBlocksAllocated: (parameters.flags & FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED) !== 0,
  };
}

class VhdxSource implements DiskSource {
  readonly format = FORMAT_NAME;
  readonly subformat: string;
  readonly virtualSizeBytes: number;
  readonly #data: ByteSource;
  readonly #geometry: Geometry;
  readonly #bat: FileRange;
  readonly #reserved: readonly FileRange[];
  readonly #blockCount: number;
  readonly #chunkRatio: number;
  /** Insertion-ordered, so the first key is the least recently used page. */
  readonly #pages = new Map<number, Promise<Buffer>>();

  constructor(data: ByteSource, geometry: Geometry, bat: FileRange, reserved: readonly FileRange[]) {
    this.#data = data;
    this.#geometry = geometry;
    this.#bat = bat;
    this.#reserved = reserved;
    this.virtualSizeBytes = geometry.virtualSizeBytes;
    this.subformat = geometry.leaveBlocksAllocated ? "fixed" : "dynamic";
    this.#blockCount = Math.ceil(geometry.virtualSizeBytes / geometry.blockSizeBytes);
    this.#chunkRatio = chunkRatio(geometry.logicalSectorBytes, geometry.blockSizeBytes);
    const entries = batEntryCount(this.#blockCount, this.#chunkRatio);
    // The BAT region lies inside the file (checked above), so this also bounds the claimed size.
    if (entries * BAT_ENTRY_BYTES > bat.lengthBytes) {
      throw formatError("VHDX_BAT_TOO_SMALL", `BAT region of ${bat.lengthBytes} bytes cannot hold ${entries} entries for ${geometry.virtualSizeBytes} bytes`, {
        entries,
        batLengthBytes: bat.lengthBytes,
      });
    }
  }

  #page(pageIndex: number): Promise<Buffer> {
    const cached = this.#pages.get(pageIndex);
    if (cached !== undefined) {
      this.#pages.delete(pageIndex);
      this.#pages.set(pageIndex, cached);
      return cached;
    }
    const startBytes = pageIndex * BAT_PAGE_ENTRIES * BAT_ENTRY_BYTES;
    const lengthBytes = Math.min(BAT_PAGE_ENTRIES * BAT_ENTRY_BYTES, this.#bat.lengthBytes - startBytes);
    const page = readExact(this.#data, this.#bat.offsetBytes + startBytes, lengthBytes, FORMAT_NAME, `BAT page ${pageIndex}`);
    page.catch(() => this.#pages.delete(pageIndex));
    this.#pages.set(pageIndex, page);
    if (this.#pages.size > BAT_CACHE_PAGES) this.#pages.delete(this.#pages.keys().next().value!);
    return page;
  }

  /** Decodes payload entry `blockIndex` from its page, validating state and offset (§2.5.1). */
  #decode(page: Buffer, blockIndex: number, batIndex: number): BlockLocation {
    const at = (batIndex % BAT_PAGE_ENTRIES) * BAT_ENTRY_BYTES;
    const low = page.readUInt32LE(at);
    const high = page.readUInt32LE(at + 4);
    const state = low & 7;
    switch (state) {
      case PAYLOAD_BLOCK_NOT_PRESENT:
      case PAYLOAD_BLOCK_UNDEFINED:
      case PAYLOAD_BLOCK_ZERO:
      case PAYLOAD_BLOCK_UNMAPPED:
        // Without a parent these all read as zeros (§2.5.1.1).
        return ZERO_BLOCK;
      case PAYLOAD_BLOCK_PARTIALLY_PRESENT:
        throw new NotCapableError("VHDX_DIFFERENCING", `${FORMAT_NAME}: BAT entry ${batIndex} is PARTIALLY_PRESENT, which only a differencing disk may use`, {
          context: { batIndex },
        });
      case PAYLOAD_BLOCK_FULLY_PRESENT:
        break;
      default:
        throw formatError("VHDX_BAD_BAT_ENTRY", `BAT entry ${batIndex} has undefined state ${state}`, { batIndex, state });
    }
    // FileOffsetMB is bits 20-63: the low word's top 12 bits and the whole high word.
    const fileOffsetMib = high * 4096 + (low >>> 20);
    const blockStartBytes = blockIndex * this.#geometry.blockSizeBytes;
    const neededBytes = Math.min(this.#geometry.blockSizeBytes, this.virtualSizeBytes - blockStartBytes);
    if (fileOffsetMib * MIB + neededBytes > this.#data.sizeBytes) {
      throw formatError(
        "VHDX_BAT_OUT_OF_RANGE",
        `BAT entry ${batIndex} points past end of file (offset 0x${(BigInt(fileOffsetMib) * BigInt(MIB)).toString(16)}, file ${hex(this.#data.sizeBytes)})`,
        { batIndex, fileOffsetMib, fileSizeBytes: this.#data.sizeBytes },
      );
    }
    const fileOffsetBytes = fileOffsetMib * MIB;
    for (const range of this.#reserved) {
      if (fileOffsetBytes < range.offsetBytes + range.lengthBytes && range.offsetBytes < fileOffsetBytes + neededBytes) {
        throw formatError("VHDX_BAT_ENTRY_OVERLAP", `BAT entry ${batIndex} places block ${blockIndex} at ${hex(fileOffsetBytes)}, inside the ${range.name}`, {
          batIndex,
          fileOffsetBytes,
        });
      }
    }
    return { kind: "data", fileOffsetBytes };
  }

  async #locate(blockIndex: number): Promise<BlockLocation> {
    const batIndex = batIndexOfBlock(blockIndex, this.#chunkRatio);
    const page = await this.#page(Math.floor(batIndex / BAT_PAGE_ENTRIES));
    return this.#decode(page, blockIndex, batIndex);
  }

  async *extents(): AsyncGenerator<Extent> {
    const blockSizeBytes = this.#geometry.blockSizeBytes;
    let runKind: Extent["kind"] | undefined;
    let runStartBytes = 0;
    let pageIndex = -1;
    let page: Buffer | undefined;
    for (let blockIndex = 0; blockIndex < this.#blockCount; blockIndex++) {
      const batIndex = batIndexOfBlock(blockIndex, this.#chunkRatio);
      if (Math.floor(batIndex / BAT_PAGE_ENTRIES) !== pageIndex || page === undefined) {
        pageIndex = Math.floor(batIndex / BAT_PAGE_ENTRIES);
        page = await this.#page(pageIndex);
      }
      const kind = this.#decode(page, blockIndex, batIndex).kind;
      if (kind !== runKind) {
        const blockStartBytes = blockIndex * blockSizeBytes;
        if (runKind !== undefined) yield { offsetBytes: runStartBytes, lengthBytes: blockStartBytes - runStartBytes, kind: runKind };
        runKind = kind;
        runStartBytes = blockStartBytes;
      }
    }
    if (runKind !== undefined) yield { offsetBytes: runStartBytes, lengthBytes: this.virtualSizeBytes - runStartBytes, kind: runKind };
  }

  async read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.virtualSizeBytes) {
      throw new InvalidArgsError("READ_OUT_OF_RANGE", `${FORMAT_NAME}: read at ${offsetBytes} (+${lengthBytes}) lies outside the ${this.virtualSizeBytes}-byte disk`);
    }
    const blockSizeBytes = this.#geometry.blockSizeBytes;
    // Gather contiguous file runs first, so adjacent blocks stored back to back become one read.
    const runs: { diskOffsetBytes: number; fileOffsetBytes: number; lengthBytes: number }[] = [];
    const zeroPieces: { diskOffsetBytes: number; lengthBytes: number }[] = [];
    const endBytes = offsetBytes + lengthBytes;
    for (let position = offsetBytes; position < endBytes; ) {
      const blockIndex = Math.floor(position / blockSizeBytes);
      const withinBytes = position - blockIndex * blockSizeBytes;
      const pieceBytes = Math.min(blockSizeBytes - withinBytes, endBytes - position);
      const location = await this.#locate(blockIndex);
      if (location.kind === "zero") {
        zeroPieces.push({ diskOffsetBytes: position, lengthBytes: pieceBytes });
      } else {
        const fileOffsetBytes = location.fileOffsetBytes + withinBytes;
        const last = runs[runs.length - 1];
        if (last !== undefined && last.diskOffsetBytes + last.lengthBytes === position && last.fileOffsetBytes + last.lengthBytes === fileOffsetBytes) {
          last.lengthBytes += pieceBytes;
        } else {
          runs.push({ diskOffsetBytes: position, fileOffsetBytes, lengthBytes: pieceBytes });
        }
      }
      position += pieceBytes;
    }
    const only = runs[0];
    if (runs.length === 1 && zeroPieces.length === 0 && only !== undefined) {
      return readExact(this.#data, only.fileOffsetBytes, only.lengthBytes, FORMAT_NAME, `data at disk offset ${hex(only.diskOffsetBytes)}`, into);
    }
    const out = into !== undefined && into.length >= lengthBytes ? into.subarray(0, lengthBytes) : Buffer.allocUnsafe(lengthBytes);
    for (const zero of zeroPieces) out.fill(0, zero.diskOffsetBytes - offsetBytes, zero.diskOffsetBytes - offsetBytes + zero.lengthBytes);
    await Promise.all(
      runs.map(async (run) => {
        const bytes = await readExact(this.#data, run.fileOffsetBytes, run.lengthBytes, FORMAT_NAME, `data at disk offset ${hex(run.diskOffsetBytes)}`);
        bytes.copy(out, run.diskOffsetBytes - offsetBytes);
      }),
    );
    return out;
  }

  close(): Promise<void> {
    this.#pages.clear();
    return this.#data.close();
  }
}
