// VHD reader: fixed, dynamic, and differencing when the caller supplies the parent. Written by
// hand because no maintained JavaScript package reads VHD with bounds-checked headers, a
// bounded BAT cache and lazy extents; the semantics follow Microsoft's VHD specification and
// qemu's vpc driver (read for behaviour, not copied).
import { FormatError, InvalidArgsError, NotCapableError } from "../../../errors.ts";
import type { OpenOptions } from "../../format.ts";
import { readExact } from "../../io.ts";
import { coalesce } from "../../extents.ts";
import { toSafeNumber } from "../../layout.ts";
import type { ByteSource, DiskSource, Extent } from "../../types.ts";
import {
  bitmapBytesFor,
  chsTotalSectors,
  VHD_BAT_UNUSED,
  VHD_CHS_MAX_TOTAL_SECTORS,
  VHD_DISK_TYPE_DIFFERENCING,
  VHD_DISK_TYPE_DYNAMIC,
  VHD_DISK_TYPE_FIXED,
  VHD_DYNAMIC_COOKIE,
  VHD_DYNAMIC_HEADER_BYTES,
  VHD_DYNAMIC_HEADER_CHECKSUM_OFFSET,
  VHD_FOOTER_BYTES,
  VHD_FOOTER_CHECKSUM_OFFSET,
  VHD_FOOTER_COOKIE,
  VHD_MAX_SECTORS,
  VHD_SECTOR_BYTES,
  vhdChecksum,
  VhdDynamicHeader,
  VhdFooter,
  type VhdFooterFields,
} from "./layout.ts";

const FORMAT = "vhd";

/**
 * Creator applications whose images are sized by their CHS geometry rather than Current Size:
 * Virtual PC ("vpc "), Virtual Server ("vs  ", the same engine) and qemu before force_size
 * ("qemu"). Everything else (Hyper-V "win ", Disk2vhd "d2v ", qemu "qem2", XenServer "tap\0",
 * Azure "wa\0\0", and ours) is sized by Current Size, as in qemu since 10.0. qemu 7.2 used
 * CHS for every creator it did not know, which differs only for unknown creators.
 */
const CHS_SIZED_CREATORS = new Set(["vpc ", "vs  ", "qemu"]);

/**
 * The largest block we accept. The spec's default is 2 MiB and Hyper-V also writes 512 KiB;
 * a block is the unit of a BAT entry, so a hostile multi-GiB block size is refused rather than
 * trusted.
 */
const MAX_BLOCK_BYTES = 256 * 1024 * 1024;

/** BAT entries per cached page: 16 KiB of table, so one read covers 32 GiB of 2 MiB blocks. */
const BAT_PAGE_ENTRIES = 4096;
/** Pages kept: 256 * 16 KiB = 4 MiB, the whole BAT of a 2040 GiB disk with 2 MiB blocks. */
const BAT_CACHE_PAGES = 256;
/** BAT bytes validated per read while opening: a bounded buffer however large the table. */
const BAT_SCAN_CHUNK_BYTES = 1024 * 1024;
/**
 * Block reads in flight for one read() that spans several blocks: enough to keep a disk or a
 * remote source busy, few enough that small blocks cannot flood it with requests.
 */
const READ_CONCURRENCY = 8;
/** Sector bitmaps kept for a differencing disk: at most 64 * 64 KiB, for 256 MiB blocks. */
const BITMAP_CACHE_ENTRIES = 64;
/** The dynamic header's fields up to and including its checksum (§"Dynamic Disk Header Format"). */
const DYNAMIC_HEADER_FIELDS_BYTES = 40;

export interface VhdSource extends DiskSource {
  readonly subformat: "fixed" | "dynamic" | "differencing";
  /** The block size of a dynamic disk; undefined for a fixed one. */
  readonly blockSizeBytes?: number;
  readonly creatorApplication: string;
}

function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

interface FooterChoice {
  readonly footer: VhdFooterFields;
  readonly where: "tail" | "head";
}

/**
 * The footer lives in the last sector; a dynamic disk also keeps a copy in the first. The tail
 * is tried first (it is the primary one, and a fixed disk's data may itself begin with
 * "conectix"); the head copy stands in when the tail is missing or damaged.
 */
async function readFooter(source: ByteSource): Promise<FooterChoice> {
  if (source.sizeBytes < VHD_FOOTER_BYTES) {
    throw new FormatError("TRUNCATED", `${FORMAT}: ${source.name} has ${source.sizeBytes} bytes, less than a 512-byte footer`, {
      context: { fileSizeBytes: source.sizeBytes },
    });
  }
  const candidates: Array<["tail" | "head", number]> = [["tail", source.sizeBytes - VHD_FOOTER_BYTES]];
  if (source.sizeBytes - VHD_FOOTER_BYTES !== 0) candidates.push(["head", 0]);
  let badChecksum: { where: string; stored: number; computed: number } | undefined;
  for (const [where, offsetBytes] of candidates) {
    const buf = await readExact(source, offsetBytes, VHD_FOOTER_BYTES, FORMAT, `footer (${where})`);
    const footer = VhdFooter.get(buf, 0);
    if (footer.cookie !== VHD_FOOTER_COOKIE) continue;
    const computed = vhdChecksum(buf, VHD_FOOTER_CHECKSUM_OFFSET);
    if (computed === footer.checksum) return { footer, where };
    badChecksum ??= { where, stored: footer.checksum, computed };
  }
  if (badChecksum !== undefined) {
    throw new FormatError(
      "VHD_FOOTER_CHECKSUM",
      `${FORMAT}: footer checksum ${hex(badChecksum.stored)} does not match ${hex(badChecksum.computed)} in ${source.name}`,
      { context: { ...badChecksum } },
    );
  }
  throw new FormatError("VHD_BAD_COOKIE", `${FORMAT}: no "conectix" footer at the end or start of ${source.name}`, {
    context: { fileSizeBytes: source.sizeBytes },
  });
}

/** The virtual size qemu's vpc driver reports: see CHS_SIZED_CREATORS. */
function virtualSizeOf(footer: VhdFooterFields, name: string): number {
  const creator = footer.creatorApplication.toString("latin1");
  const chsSectors = chsTotalSectors(footer);
  // The maximum geometry means "too big for CHS": every reader then trusts Current Size.
  const useChs = CHS_SIZED_CREATORS.has(creator) && chsSectors !== VHD_CHS_MAX_TOTAL_SECTORS;
  const sectors = useChs ? BigInt(chsSectors) : footer.currentSize / BigInt(VHD_SECTOR_BYTES);
  if (sectors > BigInt(VHD_MAX_SECTORS)) {
    throw new FormatError(
      "VHD_TOO_LARGE",
      `${FORMAT}: virtual size ${sectors * 512n} bytes exceeds the format's 2040 GiB limit in ${name}`,
      { context: { sizeBytes: sectors * 512n, creator } },
    );
  }
  return Number(sectors) * VHD_SECTOR_BYTES;
}

export async function openVhd(source: ByteSource, options: OpenOptions = {}): Promise<VhdSource> {
  const { footer, where } = await readFooter(source);
  const creatorApplication = footer.creatorApplication.toString("latin1");
  const virtualSizeBytes = virtualSizeOf(footer, source.name);
  switch (footer.diskType) {
    case VHD_DISK_TYPE_FIXED:
      // A fixed disk has no footer copy at its start; a "fixed" footer found only there is
      // disk data of some other image, not this one's footer.
      if (where !== "tail") {
        throw new FormatError("VHD_BAD_COOKIE", `${FORMAT}: fixed disk ${source.name} has no footer in its last sector`, {
          context: { fileSizeBytes: source.sizeBytes },
        });
      }
      return openFixed(source, virtualSizeBytes, creatorApplication);
    case VHD_DISK_TYPE_DYNAMIC:
      return openDynamic(source, footer, virtualSizeBytes, creatorApplication);
    case VHD_DISK_TYPE_DIFFERENCING:
      // A differencing disk is a dynamic disk whose clear bitmap bits and unallocated blocks
      // read from its parent (§"Differencing Hard Disk Image"). Finding the parent from the
      // locators is the caller's job; without one the disk cannot be read.
      if (options.backing === undefined) {
        throw new NotCapableError(
          "VHD_DIFFERENCING",
          `${FORMAT}: ${source.name} is a differencing disk; pass its parent disk as the backing option to read it`,
          { context: { diskType: footer.diskType } },
        );
      }
      return openDynamic(source, footer, virtualSizeBytes, creatorApplication, options.backing);
    default:
      throw new FormatError("VHD_BAD_DISK_TYPE", `${FORMAT}: unknown disk type ${footer.diskType} in ${source.name}`, {
        context: { diskType: footer.diskType },
      });
  }
}

function checkRange(offsetBytes: number, lengthBytes: number, virtualSizeBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 ||
    offsetBytes + lengthBytes > virtualSizeBytes) {
    throw new InvalidArgsError(
      "VHD_READ_OUT_OF_RANGE",
      `${FORMAT}: read of ${lengthBytes} bytes at ${offsetBytes} lies outside the ${virtualSizeBytes}-byte disk`,
      { context: { offsetBytes, lengthBytes, virtualSizeBytes } },
    );
  }
}

function openFixed(source: ByteSource, virtualSizeBytes: number, creatorApplication: string): VhdSource {
  // A fixed disk is its data followed by the footer (§"Fixed Hard Disk Image").
  const dataBytes = source.sizeBytes - VHD_FOOTER_BYTES;
  if (virtualSizeBytes > dataBytes) {
    throw new FormatError(
      "TRUNCATED",
      `${FORMAT}: fixed disk of ${virtualSizeBytes} bytes needs ${virtualSizeBytes + VHD_FOOTER_BYTES} bytes of file, ` +
        `${source.name} has ${source.sizeBytes}`,
      { context: { virtualSizeBytes, fileSizeBytes: source.sizeBytes } },
    );
  }
  return {
    format: FORMAT,
    subformat: "fixed",
    virtualSizeBytes,
    creatorApplication,
    async *extents(): AsyncGenerator<Extent> {
      if (virtualSizeBytes > 0) yield { offsetBytes: 0, lengthBytes: virtualSizeBytes, kind: "data" };
    },
    async read(offsetBytes, lengthBytes) {
      checkRange(offsetBytes, lengthBytes, virtualSizeBytes);
      return readExact(source, offsetBytes, lengthBytes, FORMAT, "fixed disk data");
    },
    close: () => source.close(),
  };
}

interface Region {
  readonly name: string;
  readonly startBytes: number;
  readonly endBytes: number;
}

async function openDynamic(
  source: ByteSource,
  footer: VhdFooterFields,
  virtualSizeBytes: number,
  creatorApplication: string,
  parent?: DiskSource,
): Promise<VhdSource> {
  const fileSizeBytes = source.sizeBytes;
  // Only the first 40 bytes (cookie to checksum) are needed to size the BAT; the full 1024
  // bytes are needed only for the checksum, which is checked after the bounds.
  if (footer.dataOffset > BigInt(Math.max(0, fileSizeBytes - DYNAMIC_HEADER_FIELDS_BYTES))) {
    throw new FormatError(
      "VHD_HEADER_OUT_OF_RANGE",
      `${FORMAT}: dynamic header offset ${hex(footer.dataOffset)} lies past end of file (${hex(fileSizeBytes)}) in ${source.name}`,
      { context: { dataOffset: footer.dataOffset, fileSizeBytes } },
    );
  }
  const headerOffsetBytes = Number(footer.dataOffset);
  // The header must not share bytes with the footer copy in sector 0 (a loop back onto it).
  if (headerOffsetBytes < VHD_FOOTER_BYTES) {
    throw new FormatError(
      "VHD_HEADER_OVERLAP",
      `${FORMAT}: dynamic header offset ${hex(headerOffsetBytes)} overlaps the footer copy in ${source.name}`,
      { context: { headerOffsetBytes } },
    );
  }
  const headerBuf = Buffer.alloc(VHD_DYNAMIC_HEADER_BYTES);
  const headerPresentBytes = Math.min(VHD_DYNAMIC_HEADER_BYTES, fileSizeBytes - headerOffsetBytes);
  (await readExact(source, headerOffsetBytes, headerPresentBytes, FORMAT, "dynamic header")).copy(headerBuf);
  const header = VhdDynamicHeader.get(headerBuf, 0);
  if (header.cookie !== VHD_DYNAMIC_COOKIE) {
    throw new FormatError(
      "VHD_BAD_DYNAMIC_COOKIE",
      `${FORMAT}: no "cxsparse" dynamic header at ${hex(headerOffsetBytes)} in ${source.name}`,
      { context: { headerOffsetBytes } },
    );
  }

  // Bounds first, checksum after: a bound names what is wrong, and the fuzzed images the
  // vectors carry are refused for their table size whatever their checksum.
  const blockBytes = header.blockSize;
  if (blockBytes < VHD_SECTOR_BYTES || blockBytes > MAX_BLOCK_BYTES || (blockBytes & (blockBytes - 1)) !== 0) {
    throw new FormatError(
      "VHD_BAD_BLOCK_SIZE",
      `${FORMAT}: block size ${blockBytes} is not a power of two between 512 bytes and 256 MiB in ${source.name}`,
      { context: { blockBytes } },
    );
  }
  const blocks = Math.ceil(virtualSizeBytes / blockBytes);
  const maxTableEntries = header.maxTableEntries;
  if (maxTableEntries < blocks) {
    throw new FormatError(
      "VHD_BAT_TOO_SMALL",
      `${FORMAT}: Max Table Entries ${maxTableEntries} cannot map ${virtualSizeBytes} bytes in ${blockBytes}-byte blocks ` +
        `(needs ${blocks}) in ${source.name}`,
      { context: { maxTableEntries, blocks, blockBytes } },
    );
  }
  const batBytes = maxTableEntries * 4;
  if (batBytes > fileSizeBytes) {
    throw new FormatError(
      "VHD_BAT_TOO_LARGE",
      `${FORMAT}: Max Table Entries too large (${maxTableEntries}): a ${batBytes}-byte BAT cannot fit in the ` +
        `${fileSizeBytes}-byte file ${source.name}`,
      { context: { maxTableEntries, batBytes, fileSizeBytes } },
    );
  }
  if (header.tableOffset > BigInt(fileSizeBytes - batBytes)) {
    throw new FormatError(
      "VHD_BAT_OUT_OF_RANGE",
      `${FORMAT}: BAT at ${hex(header.tableOffset)} (+${batBytes}) lies past end of file (${hex(fileSizeBytes)}) in ${source.name}`,
      { context: { tableOffset: header.tableOffset, batBytes, fileSizeBytes } },
    );
  }
  const batOffsetBytes = toSafeNumber(header.tableOffset, "BAT offset", FORMAT);
  const metadata: Region[] = [
    { name: "footer copy", startBytes: 0, endBytes: VHD_FOOTER_BYTES },
    { name: "dynamic header", startBytes: headerOffsetBytes, endBytes: headerOffsetBytes + VHD_DYNAMIC_HEADER_BYTES },
    { name: "BAT", startBytes: batOffsetBytes, endBytes: batOffsetBytes + batBytes },
  ];
  for (const region of metadata.slice(0, 2)) {
    if (overlaps(region, metadata[2] as Region)) {
      throw new FormatError(
        "VHD_BAT_OVERLAP",
        `${FORMAT}: BAT at ${hex(batOffsetBytes)} (+${batBytes}) overlaps the ${region.name} in ${source.name}`,
        { context: { batOffsetBytes, batBytes } },
      );
    }
  }
  if (headerPresentBytes < VHD_DYNAMIC_HEADER_BYTES) {
    throw new FormatError(
      "TRUNCATED",
      `${FORMAT}: dynamic header at ${hex(headerOffsetBytes)} is cut off by end of file (${hex(fileSizeBytes)}) in ${source.name}`,
      { context: { headerOffsetBytes, fileSizeBytes } },
    );
  }
  const storedChecksum = header.checksum;
  const computedChecksum = vhdChecksum(headerBuf, VHD_DYNAMIC_HEADER_CHECKSUM_OFFSET);
  if (storedChecksum !== computedChecksum) {
    throw new FormatError(
      "VHD_DYNAMIC_HEADER_CHECKSUM",
      `${FORMAT}: dynamic header checksum ${hex(storedChecksum)} does not match ${hex(computedChecksum)} in ${source.name}`,
      { context: { storedChecksum, computedChecksum } },
    );
  }

  const bitmapBytes = bitmapBytesFor(blockBytes);
  const blockSpanBytes = bitmapBytes + blockBytes;

  /** Checks one BAT entry and returns the file offset of its block's data, or -1 if unallocated. */
  function dataOffsetOf(blockIndex: number, entry: number): number {
    if (entry === VHD_BAT_UNUSED) return -1;
    const startBytes = entry * VHD_SECTOR_BYTES;
    if (startBytes + blockSpanBytes > fileSizeBytes) {
      throw new FormatError(
        "VHD_BLOCK_OUT_OF_RANGE",
        `${FORMAT}: BAT entry ${blockIndex} points past end of file (offset ${hex(startBytes)}, block ${hex(blockSpanBytes)}, ` +
          `file ${hex(fileSizeBytes)}) in ${source.name}`,
        { context: { blockIndex, offsetBytes: startBytes, fileSizeBytes } },
      );
    }
    const block: Region = { name: `block ${blockIndex}`, startBytes, endBytes: startBytes + blockSpanBytes };
    for (const region of metadata) {
      if (overlaps(block, region)) {
        throw new FormatError(
          "VHD_BLOCK_OVERLAP",
          `${FORMAT}: BAT entry ${blockIndex} (offset ${hex(startBytes)}) overlaps the ${region.name} in ${source.name}`,
          { context: { blockIndex, offsetBytes: startBytes } },
        );
      }
    }
    return startBytes + bitmapBytes;
  }

  // Validate every BAT entry that maps the disk once, streaming through the table in bounded
  // chunks, so that a bad entry is reported by open() rather than midway through a copy.
  const usedBatBytes = blocks * 4;
  for (let doneBytes = 0; doneBytes < usedBatBytes; doneBytes += BAT_SCAN_CHUNK_BYTES) {
    const lengthBytes = Math.min(BAT_SCAN_CHUNK_BYTES, usedBatBytes - doneBytes);
    const chunk = await readExact(source, batOffsetBytes + doneBytes, lengthBytes, FORMAT, "BAT");
    const firstIndex = doneBytes / 4;
    for (let i = 0; i < lengthBytes / 4; i++) dataOffsetOf(firstIndex + i, chunk.readUInt32BE(i * 4));
  }

  // A bounded LRU of BAT pages (Map iteration order is insertion order).
  const batPages = new Map<number, Uint32Array>();
  async function batPage(pageIndex: number): Promise<Uint32Array> {
    const cached = batPages.get(pageIndex);
    if (cached !== undefined) {
      batPages.delete(pageIndex);
      batPages.set(pageIndex, cached);
      return cached;
    }
    const firstEntry = pageIndex * BAT_PAGE_ENTRIES;
    const entries = Math.min(BAT_PAGE_ENTRIES, blocks - firstEntry);
    const raw = await readExact(source, batOffsetBytes + firstEntry * 4, entries * 4, FORMAT, `BAT page ${pageIndex}`);
    const page = new Uint32Array(entries);
    for (let i = 0; i < entries; i++) page[i] = raw.readUInt32BE(i * 4);
    if (batPages.size >= BAT_CACHE_PAGES) {
      const oldest = batPages.keys().next().value;
      if (oldest !== undefined) batPages.delete(oldest);
    }
    batPages.set(pageIndex, page);
    return page;
  }
  async function blockDataOffset(blockIndex: number): Promise<number> {
    const page = await batPage(Math.floor(blockIndex / BAT_PAGE_ENTRIES));
    return dataOffsetOf(blockIndex, page[blockIndex % BAT_PAGE_ENTRIES] as number);
  }

  /** Runs of allocated ("data") and unallocated ("zero") blocks, one BAT page at a time. */
  async function* blockRuns(): AsyncGenerator<Extent> {
    let runStart = 0;
    let runKind: Extent["kind"] | undefined;
    for (let pageIndex = 0; pageIndex * BAT_PAGE_ENTRIES < blocks; pageIndex++) {
      const page = await batPage(pageIndex);
      for (let i = 0; i < page.length; i++) {
        const kind: Extent["kind"] = page[i] === VHD_BAT_UNUSED ? "zero" : "data";
        if (kind === runKind) continue;
        const offsetBytes = (pageIndex * BAT_PAGE_ENTRIES + i) * blockBytes;
        if (runKind !== undefined) yield { offsetBytes: runStart, lengthBytes: offsetBytes - runStart, kind: runKind };
        runStart = offsetBytes;
        runKind = kind;
      }
    }
    if (runKind !== undefined) yield { offsetBytes: runStart, lengthBytes: virtualSizeBytes - runStart, kind: runKind };
  }

  /** Sector bitmaps of a differencing disk's blocks, in a bounded LRU like the BAT pages. */
  const bitmaps = new Map<number, Buffer>();
  async function bitmapOf(blockIndex: number, dataOffsetBytes: number): Promise<Buffer> {
    const cached = bitmaps.get(blockIndex);
    if (cached !== undefined) {
      bitmaps.delete(blockIndex);
      bitmaps.set(blockIndex, cached);
      return cached;
    }
    const bitmap = await readExact(source, dataOffsetBytes - bitmapBytes, bitmapBytes, FORMAT, `bitmap of block ${blockIndex}`);
    if (bitmaps.size >= BITMAP_CACHE_ENTRIES) {
      const oldest = bitmaps.keys().next().value;
      if (oldest !== undefined) bitmaps.delete(oldest);
    }
    bitmaps.set(blockIndex, bitmap);
    return bitmap;
  }

  interface Piece {
    /** Where the piece starts in the virtual disk, and in the caller's buffer. */
    readonly position: number;
    readonly at: number;
    readonly length: number;
    /** Where the bytes are in this file, or -1 when they come from the parent (or are zero). */
    readonly fileOffset: number;
  }

  /** Splits [offsetBytes, +lengthBytes) into pieces that each come from one place. */
  async function piecesOf(offsetBytes: number, lengthBytes: number): Promise<Piece[]> {
    const pieces: Piece[] = [];
    for (let at = 0; at < lengthBytes;) {
      const position = offsetBytes + at;
      const blockIndex = Math.floor(position / blockBytes);
      const inBlock = position - blockIndex * blockBytes;
      const length = Math.min(blockBytes - inBlock, lengthBytes - at);
      const dataOffset = await blockDataOffset(blockIndex);
      if (dataOffset < 0 || parent === undefined) {
        // qemu reads an allocated block of a dynamic disk whole and ignores its bitmap; so do
        // we, which is what makes our bytes match qemu-img's.
        pieces.push({ position, at, length, fileOffset: dataOffset < 0 ? -1 : dataOffset + inBlock });
      } else {
        // A set bit (most significant first, §"Block Allocation Table") means this file holds
        // the sector; a clear one means the parent does.
        const bitmap = await bitmapOf(blockIndex, dataOffset);
        const bitOf = (sector: number): boolean => (((bitmap[sector >> 3] as number) << (sector & 7)) & 0x80) !== 0;
        for (let done = 0; done < length;) {
          const sector = Math.floor((inBlock + done) / VHD_SECTOR_BYTES);
          const present = bitOf(sector);
          let endSector = sector + 1;
          while (endSector * VHD_SECTOR_BYTES < inBlock + length && bitOf(endSector) === present) endSector++;
          const runLength = Math.min(endSector * VHD_SECTOR_BYTES, inBlock + length) - (inBlock + done);
          pieces.push({
            position: position + done,
            at: at + done,
            length: runLength,
            fileOffset: present ? dataOffset + inBlock + done : -1,
          });
          done += runLength;
        }
      }
      at += length;
    }
    return pieces;
  }

  async function readParent(offsetBytes: number, lengthBytes: number): Promise<Buffer | undefined> {
    // A parent smaller than its child reads as zeros past its end.
    if (parent === undefined || offsetBytes >= parent.virtualSizeBytes) return undefined;
    return parent.read(offsetBytes, Math.min(lengthBytes, parent.virtualSizeBytes - offsetBytes));
  }

  async function fill(out: Buffer, p: Piece): Promise<void> {
    const data = p.fileOffset >= 0
      ? await readExact(source, p.fileOffset, p.length, FORMAT, "block data")
      : await readParent(p.position, p.length);
    data?.copy(out, p.at);
  }

  return {
    format: FORMAT,
    subformat: parent === undefined ? "dynamic" : "differencing",
    virtualSizeBytes,
    blockSizeBytes: blockBytes,
    creatorApplication,
    async *extents(): AsyncGenerator<Extent> {
      if (parent === undefined) {
        // An empty 2 TiB disk is one extent.
        yield* blockRuns();
        return;
      }
      yield* coalesce(withParentExtents(blockRuns(), parent, virtualSizeBytes));
    },
    async read(offsetBytes, lengthBytes, into) {
      checkRange(offsetBytes, lengthBytes, virtualSizeBytes);
      const pieces = await piecesOf(offsetBytes, lengthBytes);
      const only = pieces[0];
      if (pieces.length === 1 && only !== undefined && only.fileOffset >= 0) {
        return readExact(source, only.fileOffset, only.length, FORMAT, "block data", into);
      }
      const out = into !== undefined && into.length >= lengthBytes ? into.subarray(0, lengthBytes).fill(0) : Buffer.alloc(lengthBytes);
      const wanted = pieces.filter((p) => p.fileOffset >= 0 || parent !== undefined);
      for (let first = 0; first < wanted.length; first += READ_CONCURRENCY) {
        await Promise.all(wanted.slice(first, first + READ_CONCURRENCY).map((p) => fill(out, p)));
      }
      return out;
    },
    close: () => source.close(),
  };
}

/**
 * A differencing disk's extents: its allocated blocks are data (their clear bitmap bits make
 * them partly the parent's, which is still data to read), and its unallocated runs take the
 * parent's extents for the same range. Walks both lazily.
 */
async function* withParentExtents(runs: AsyncIterable<Extent>, parent: DiskSource, virtualSizeBytes: number): AsyncGenerator<Extent> {
  const parentExtents = parent.extents()[Symbol.asyncIterator]();
  let current = (await parentExtents.next()).value as Extent | undefined;
  for await (const run of runs) {
    if (run.kind === "data") {
      yield run;
      continue;
    }
    const endBytes = Math.min(run.offsetBytes + run.lengthBytes, virtualSizeBytes);
    for (let position = run.offsetBytes; position < endBytes;) {
      while (current !== undefined && current.offsetBytes + current.lengthBytes <= position) {
        current = (await parentExtents.next()).value as Extent | undefined;
      }
      if (current === undefined) {
        yield { offsetBytes: position, lengthBytes: endBytes - position, kind: "zero" };
        break;
      }
      const pieceEnd = Math.min(endBytes, current.offsetBytes + current.lengthBytes);
      yield { offsetBytes: position, lengthBytes: pieceEnd - position, kind: current.kind };
      position = pieceEnd;
    }
  }
  await parentExtents.return?.();
}

function overlaps(a: Region, b: Region): boolean {
  return a.startBytes < b.endBytes && b.startBytes < a.endBytes;
}
