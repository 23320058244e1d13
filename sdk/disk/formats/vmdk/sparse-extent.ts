// One hosted sparse extent (VDF5 §"Hosted Sparse Extents"), plain or stream-optimized: header
// validation, grain directory, a bounded grain-table cache, and grain reads that batch
// contiguous grains into one I/O and inflate compressed grains on worker threads.
import { FormatError, NotCapableError } from "../../../errors.ts";
import { InflateFailure, inflateGrains } from "../../inflate-pool.ts";
import { readExact } from "../../io.ts";
import { isPowerOfTwo, toSafeNumber } from "../../layout.ts";
import type { ByteSource, DiskSource, Extent } from "../../types.ts";
import {
  GRAIN_MARKER,
  METADATA_MARKER,
  SPARSE_EXTENT_HEADER,
  VMDK_COMPRESSION_DEFLATE,
  VMDK_FLAG_COMPRESSED,
  VMDK_FLAG_MARKERS,
  VMDK_FLAG_REDUNDANT_GRAIN_TABLE,
  VMDK_FLAG_VALID_NEWLINE,
  VMDK_FLAG_ZEROED_GRAIN_GTE,
  VMDK_FOOTER_FROM_END_BYTES,
  VMDK_FOOTER_MARKER_FROM_END_BYTES,
  VMDK_GD_AT_END,
  VMDK_GRAIN_MARKER_BYTES,
  VMDK_GTE_BYTES,
  VMDK_GTE_ZEROED,
  VMDK_MARKER_FOOTER,
  VMDK_MAX_VERSION,
  VMDK_NEWLINE_TEST,
  VMDK_SECTOR_BYTES,
  VMDK_SPARSE_MAGIC,
  type SparseExtentHeader,
} from "./layout.ts";

/** VMware writes 64 KiB grains; qemu accepts up to 1 GiB. 16 MiB bounds one inflated grain's buffer. */
export const VMDK_MAX_GRAIN_BYTES = 16 * 1024 * 1024;
/** VDF5 fixes 512 entries per grain table; 4096 (16 KiB tables) tolerates odd writers, bounds memory. */
export const VMDK_MAX_GTES_PER_GT = 4096;
/**
 * 2^22 directory entries (16 MiB in memory) address 64 TiB even with 512 × 64 KiB per table;
 * VMware caps a sparse extent at 2 TiB, which needs 65536.
 */
export const VMDK_MAX_GD_ENTRIES = 1 << 22;
/** Capacity above 2^53 bytes could not be addressed exactly by JavaScript numbers (DESIGN.md). */
const MAX_CAPACITY_SECTORS = BigInt(Math.floor(Number.MAX_SAFE_INTEGER / VMDK_SECTOR_BYTES));
/** Grain tables kept in memory: 512 × 2 KiB = 1 MiB with VMware's table size, covering 16 GiB. */
export const VMDK_GT_CACHE_TABLES = 512;
/** Grain tables fetched in one I/O when they lie back to back: 64 × 2 KiB = 128 KiB. */
export const VMDK_GT_PREFETCH_TABLES = 64;
/** Compressed grains read ahead in one I/O; stream files store grains back to back. */
const COMPRESSED_READ_WINDOW_BYTES = 1024 * 1024;

function fail(code: string, message: string, context: Record<string, number | string | bigint> = {}): never {
  throw new FormatError(code, `vmdk: ${message}`, { context });
}

function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** Reads and checks a sparse extent header at offset 0. The caller has seen the KDMV magic. */
export function parseSparseHeader(buf: Buffer, name: string): SparseExtentHeader {
  const header = SPARSE_EXTENT_HEADER.get(buf, 0);
  if (header.magicNumber !== VMDK_SPARSE_MAGIC) {
    fail("VMDK_BAD_MAGIC", `${name} has no sparse extent magic "KDMV" (found ${hex(header.magicNumber)})`);
  }
  if (header.version < 1 || header.version > VMDK_MAX_VERSION) {
    fail("VMDK_UNSUPPORTED_VERSION", `${name} has sparse extent version ${header.version}; versions 1-${VMDK_MAX_VERSION} are known`, {
      version: header.version,
    });
  }
  const grain = header.grainSizeSectors;
  if (grain === 0n || grain * BigInt(VMDK_SECTOR_BYTES) > BigInt(VMDK_MAX_GRAIN_BYTES) || !isPowerOfTwo(Number(grain))) {
    fail("VMDK_GRAIN_SIZE_INVALID", `${name} has grain size ${grain} sectors; it must be a power of two up to ${VMDK_MAX_GRAIN_BYTES} bytes`, {
      grainSizeSectors: grain,
    });
  }
  if (header.numGTEsPerGT < 1 || header.numGTEsPerGT > VMDK_MAX_GTES_PER_GT) {
    fail("VMDK_GT_SIZE_INVALID", `${name} has ${header.numGTEsPerGT} entries per grain table (expected 1-${VMDK_MAX_GTES_PER_GT}, normally 512)`, {
      numGTEsPerGT: header.numGTEsPerGT,
    });
  }
  if ((header.flags & VMDK_FLAG_COMPRESSED) !== 0) {
    if (header.compressAlgorithm !== VMDK_COMPRESSION_DEFLATE) {
      fail("VMDK_COMPRESSION_UNSUPPORTED", `${name} uses compression algorithm ${header.compressAlgorithm}; only deflate (1) is defined`, {
        compressAlgorithm: header.compressAlgorithm,
      });
    }
    if ((header.flags & VMDK_FLAG_MARKERS) === 0) {
      throw new NotCapableError("VMDK_UNSUPPORTED_FEATURE", `vmdk: ${name} has compressed grains without grain markers`, {
        context: { flags: header.flags },
      });
    }
  }
  return header;
}

/** Where unallocated grains of a delta disk read from: the parent disk, at this extent's offset. */
export interface ParentRange {
  readonly disk: DiskSource;
  readonly baseBytes: number;
}

interface GrainLocation {
  readonly grainIndex: number;
  /** Where in the grain the wanted bytes start, and how many. */
  readonly withinBytes: number;
  readonly lengthBytes: number;
  /** Where they go in the output buffer. */
  readonly outOffset: number;
}

export class SparseExtent {
  readonly sizeBytes: number;
  readonly compressed: boolean;
  readonly header: SparseExtentHeader;
  private readonly source: ByteSource;
  private readonly grainBytes: number;
  private readonly gtesPerGt: number;
  private readonly gd: Uint32Array;
  private readonly zeroedGte: boolean;
  private readonly overHeadBytes: number;
  private readonly gtCache = new Map<number, Promise<Uint32Array>>();
  private lastGrain: { index: number; data: Buffer } | undefined;
  /** Read-ahead windows of compressed grains, reused across reads. */
  private readonly spareWindows: Buffer[] = [];
  private parent: ParentRange | undefined;

  private constructor(source: ByteSource, header: SparseExtentHeader, gd: Uint32Array, sizeBytes: number, parent: ParentRange | undefined) {
    this.source = source;
    this.parent = parent;
    this.header = header;
    this.gd = gd;
    this.sizeBytes = sizeBytes;
    this.grainBytes = Number(header.grainSizeSectors) * VMDK_SECTOR_BYTES;
    this.gtesPerGt = header.numGTEsPerGT;
    this.compressed = (header.flags & VMDK_FLAG_COMPRESSED) !== 0;
    this.zeroedGte = (header.flags & VMDK_FLAG_ZEROED_GRAIN_GTE) !== 0;
    const overHead = header.overHeadSectors * BigInt(VMDK_SECTOR_BYTES);
    this.overHeadBytes = overHead <= BigInt(source.sizeBytes) ? Number(overHead) : 0;
  }

  /**
   * Opens a sparse extent. `sizeBytes` is how much of it the disk uses (the descriptor's extent
   * size, or the header's capacity for a monolithic file); it may not exceed the capacity.
   */
  static async open(source: ByteSource, header: SparseExtentHeader, sizeBytes?: number, parent?: ParentRange): Promise<SparseExtent> {
    const name = source.name;
    let effective = header;
    if (header.gdOffsetSectors === VMDK_GD_AT_END) effective = await readFooter(source, header);
    const gtCoverageSectors = effective.grainSizeSectors * BigInt(effective.numGTEsPerGT);
    const gdEntriesBig = (effective.capacitySectors + gtCoverageSectors - 1n) / gtCoverageSectors;
    // Every directory entry occupies 4 bytes of the file, so a directory larger than the file
    // (or than our memory bound) is a lie; refuse before allocating it.
    if (gdEntriesBig > BigInt(VMDK_MAX_GD_ENTRIES) || gdEntriesBig * BigInt(VMDK_GTE_BYTES) > BigInt(source.sizeBytes)) {
      fail(
        "VMDK_GD_TOO_LARGE",
        `${name}: grain directory of ${gdEntriesBig} entries (capacity ${effective.capacitySectors} sectors) cannot fit in a file of ${source.sizeBytes} bytes or the ${VMDK_MAX_GD_ENTRIES}-entry limit`,
        { gdEntries: gdEntriesBig, fileSizeBytes: source.sizeBytes },
      );
    }
    if (effective.capacitySectors > MAX_CAPACITY_SECTORS) {
      fail("VMDK_CAPACITY_TOO_LARGE", `${name} claims ${effective.capacitySectors} sectors, beyond 2^53 bytes`, {
        capacitySectors: effective.capacitySectors,
      });
    }
    // VDF5 §"Header": with flag bit 0 set, these four bytes detect a file that a text-mode
    // transfer rewrote (every "\n" turned into "\r\n"), which corrupts every grain after it.
    const newline = [effective.singleEndLineChar, effective.nonEndLineChar, effective.doubleEndLineChar1, effective.doubleEndLineChar2];
    const expected = [VMDK_NEWLINE_TEST.single, VMDK_NEWLINE_TEST.non, VMDK_NEWLINE_TEST.double1, VMDK_NEWLINE_TEST.double2];
    if ((effective.flags & VMDK_FLAG_VALID_NEWLINE) !== 0 && newline.some((value, i) => value !== expected[i])) {
      fail("VMDK_NEWLINE_CORRUPT", `${name} fails the newline test (bytes ${newline.map(hex).join(" ")}); it was probably transferred in text mode`);
    }
    const capacityBytes = Number(effective.capacitySectors) * VMDK_SECTOR_BYTES;
    const usedBytes = sizeBytes ?? capacityBytes;
    if (usedBytes > capacityBytes) {
      fail("VMDK_EXTENT_SIZE_MISMATCH", `descriptor gives ${name} ${usedBytes} bytes but its header holds ${capacityBytes}`, {
        usedBytes,
        capacityBytes,
      });
    }
    const gdEntries = Number(gdEntriesBig);
    let gd: Uint32Array;
    try {
      gd = await loadGrainDirectory(source, effective, effective.gdOffsetSectors, gdEntries, "grain directory");
    } catch (primaryError) {
      // VDF5 keeps a redundant directory for exactly this case: use it when the primary is bad.
      const hasRedundant = (effective.flags & VMDK_FLAG_REDUNDANT_GRAIN_TABLE) !== 0 && effective.rgdOffsetSectors !== 0n;
      if (!(primaryError instanceof FormatError) || !hasRedundant) throw primaryError;
      try {
        gd = await loadGrainDirectory(source, effective, effective.rgdOffsetSectors, gdEntries, "redundant grain directory");
      } catch {
        throw primaryError;
      }
    }
    return new SparseExtent(source, effective, gd, usedBytes, parent);
  }

  private async gt(gdIndex: number): Promise<Uint32Array> {
    const cached = this.gtCache.get(gdIndex);
    if (cached !== undefined) {
      // Re-insert so the Map's order is least-recently-used first.
      this.gtCache.delete(gdIndex);
      this.gtCache.set(gdIndex, cached);
      return cached;
    }
    // Writers lay tables out back to back, so one I/O fetches this table and the next few
    // whose directory entries continue contiguously.
    const gtBytes = this.gtesPerGt * VMDK_GTE_BYTES;
    const firstSector = this.gd[gdIndex] ?? 0;
    let count = 1;
    while (
      count < VMDK_GT_PREFETCH_TABLES &&
      gdIndex + count < this.gd.length &&
      !this.gtCache.has(gdIndex + count) &&
      (this.gd[gdIndex + count] ?? 0) * VMDK_SECTOR_BYTES === firstSector * VMDK_SECTOR_BYTES + count * gtBytes
    ) {
      count++;
    }
    const loading = readExact(this.source, firstSector * VMDK_SECTOR_BYTES, count * gtBytes, "vmdk", `grain table ${gdIndex}`);
    for (let i = 0; i < count; i++) {
      const table = loading.then((buf) => {
        const entries = new Uint32Array(this.gtesPerGt);
        for (let e = 0; e < entries.length; e++) entries[e] = buf.readUInt32LE(i * gtBytes + e * VMDK_GTE_BYTES);
        return entries;
      });
      this.gtCache.set(gdIndex + i, table);
      table.catch(() => this.gtCache.delete(gdIndex + i));
    }
    while (this.gtCache.size > VMDK_GT_CACHE_TABLES) {
      const oldest = this.gtCache.keys().next().value;
      if (oldest === undefined) break;
      this.gtCache.delete(oldest);
    }
    return this.gtCache.get(gdIndex) ?? this.gt(gdIndex);
  }

  /** The grain's GTE, or 0 when its table is unallocated. */
  private async gte(grainIndex: number): Promise<number> {
    const gdIndex = Math.floor(grainIndex / this.gtesPerGt);
    if ((this.gd[gdIndex] ?? 0) === 0) return 0;
    const table = await this.gt(gdIndex);
    return table[grainIndex % this.gtesPerGt] ?? 0;
  }

  private isZeroGte(gte: number): boolean {
    return gte === 0 || (this.zeroedGte && gte === VMDK_GTE_ZEROED);
  }

  /** Makes unallocated grains read from the parent (a delta disk whose parent the caller opened). */
  attachParent(parent: ParentRange): void {
    this.parent = parent;
  }

  /** Unallocated grains of a delta disk show the parent, which may hold data there. */
  private kindOf(gte: number): Extent["kind"] {
    if (gte === 0) return this.parent === undefined ? "zero" : "data";
    return this.isZeroGte(gte) ? "zero" : "data";
  }

  private async readParent(offsetBytes: number, lengthBytes: number, out: Buffer, outOffset: number): Promise<void> {
    const parent = this.parent;
    const start = (parent?.baseBytes ?? 0) + offsetBytes;
    // A parent smaller than the child reads as zeros past its end.
    const available = parent === undefined ? 0 : Math.max(0, Math.min(lengthBytes, parent.disk.virtualSizeBytes - start));
    if (parent !== undefined && available > 0) (await parent.disk.read(start, available)).copy(out, outOffset);
    out.fill(0, outOffset + available, outOffset + lengthBytes);
  }

  /** Extents relative to this extent's start, one per grain or per unallocated table. */
  async *extents(): AsyncGenerator<Extent> {
    const tableBytes = this.gtesPerGt * this.grainBytes;
    const tables = Math.ceil(this.sizeBytes / tableBytes);
    for (let gdIndex = 0; gdIndex < tables; gdIndex++) {
      const tableStart = gdIndex * tableBytes;
      const tableEnd = Math.min(this.sizeBytes, tableStart + tableBytes);
      if ((this.gd[gdIndex] ?? 0) === 0) {
        yield { offsetBytes: tableStart, lengthBytes: tableEnd - tableStart, kind: this.kindOf(0) };
        continue;
      }
      const table = await this.gt(gdIndex);
      // One extent per run of like grains, so an empty or full table costs one yield, not 512.
      let runStart = tableStart;
      let runKind: Extent["kind"] | undefined;
      for (let i = 0; tableStart + i * this.grainBytes < tableEnd; i++) {
        const kind = this.kindOf(table[i] ?? 0);
        if (kind !== runKind && runKind !== undefined) {
          const offsetBytes = tableStart + i * this.grainBytes;
          yield { offsetBytes: runStart, lengthBytes: offsetBytes - runStart, kind: runKind };
          runStart = offsetBytes;
        }
        runKind = kind;
      }
      if (runKind !== undefined) yield { offsetBytes: runStart, lengthBytes: tableEnd - runStart, kind: runKind };
    }
  }

  /** Reads [offsetBytes, +lengthBytes) of this extent into `out` at `outOffset`. */
  async read(offsetBytes: number, lengthBytes: number, out: Buffer, outOffset: number): Promise<void> {
    const compressedGrains: { location: GrainLocation; gte: number }[] = [];
    let run: { fileOffset: number; length: number; outOffset: number } | undefined;
    const flushRun = async (): Promise<void> => {
      if (run === undefined) return;
      const data = await readExact(this.source, run.fileOffset, run.length, "vmdk", `grains at ${hex(run.fileOffset)}`);
      data.copy(out, run.outOffset);
      run = undefined;
    };
    let parentRun: { offsetBytes: number; length: number; outOffset: number } | undefined;
    const flushParentRun = async (): Promise<void> => {
      if (parentRun === undefined) return;
      await this.readParent(parentRun.offsetBytes, parentRun.length, out, parentRun.outOffset);
      parentRun = undefined;
    };
    const end = offsetBytes + lengthBytes;
    for (let position = offsetBytes; position < end; ) {
      const grainIndex = Math.floor(position / this.grainBytes);
      const withinBytes = position - grainIndex * this.grainBytes;
      const pieceBytes = Math.min(this.grainBytes - withinBytes, end - position);
      const pieceOut = outOffset + (position - offsetBytes);
      const gte = await this.gte(grainIndex);
      if (gte === 0 && this.parent !== undefined) {
        if (parentRun !== undefined && parentRun.offsetBytes + parentRun.length === position) {
          parentRun.length += pieceBytes;
        } else {
          await flushParentRun();
          parentRun = { offsetBytes: position, length: pieceBytes, outOffset: pieceOut };
        }
      } else if (this.isZeroGte(gte)) {
        out.fill(0, pieceOut, pieceOut + pieceBytes);
      } else {
        const grainOffset = gte * VMDK_SECTOR_BYTES;
        if (grainOffset >= this.source.sizeBytes || grainOffset < this.overHeadBytes) {
          fail(
            "VMDK_GRAIN_OUT_OF_RANGE",
            `grain ${grainIndex} of ${this.source.name} points to ${hex(grainOffset)}, outside the data area (${hex(this.overHeadBytes)}..${hex(this.source.sizeBytes)})`,
            { grainIndex, grainOffset, fileSizeBytes: this.source.sizeBytes },
          );
        }
        if (this.compressed) {
          compressedGrains.push({ location: { grainIndex, withinBytes, lengthBytes: pieceBytes, outOffset: pieceOut }, gte });
        } else {
          const fileOffset = grainOffset + withinBytes;
          if (run !== undefined && run.fileOffset + run.length === fileOffset && run.outOffset + run.length === pieceOut) {
            run.length += pieceBytes;
          } else {
            await flushRun();
            run = { fileOffset, length: pieceBytes, outOffset: pieceOut };
          }
        }
      }
      position += pieceBytes;
    }
    await flushRun();
    await flushParentRun();
    if (compressedGrains.length > 0) await this.readCompressed(compressedGrains, out);
  }

  private async readCompressed(grains: readonly { location: GrainLocation; gte: number }[], out: Buffer): Promise<void> {
    // Grains are fetched in order through a read-ahead window (stream files store them back to
    // back), checked against their markers, then inflated as one batch on the worker pool.
    let window: { offset: number; data: Buffer } | undefined;
    // Window buffers are recycled once the batch is inflated: fresh ones cost page faults and GC.
    const windows: Buffer[] = [];
    try {
      await this.inflateBatch(grains, out, async (offset, length, grainIndex) => {
        if (window === undefined || offset < window.offset || offset + length > window.offset + window.data.length) {
          // A window never shrinks below `length`, so a grain past end of file is TRUNCATED.
          const available = this.source.sizeBytes - offset;
          const want = Math.max(length, Math.min(available, COMPRESSED_READ_WINDOW_BYTES));
          const into = want <= COMPRESSED_READ_WINDOW_BYTES ? (this.spareWindows.pop() ?? Buffer.allocUnsafeSlow(COMPRESSED_READ_WINDOW_BYTES)) : undefined;
          if (into !== undefined) windows.push(into);
          window = { offset, data: await readExact(this.source, offset, want, "vmdk", `grain ${grainIndex}`, into) };
        }
        return window.data.subarray(offset - window.offset, offset - window.offset + length);
      });
    } finally {
      this.spareWindows.push(...windows);
    }
  }

  /** Checks each grain's marker, then inflates the batch into `out`; `slice` reads the file. */
  private async inflateBatch(
    grains: readonly { location: GrainLocation; gte: number }[],
    out: Buffer,
    slice: (offset: number, length: number, grainIndex: number) => Promise<Buffer>,
  ): Promise<void> {
    const batch: { location: GrainLocation; compressed: Buffer }[] = [];
    for (const { location, gte } of grains) {
      const { grainIndex } = location;
      if (this.lastGrain?.index === grainIndex) {
        copyInflated(this.lastGrain.data, location, out);
        continue;
      }
      const markerOffset = gte * VMDK_SECTOR_BYTES;
      const marker = GRAIN_MARKER.get(await slice(markerOffset, VMDK_GRAIN_MARKER_BYTES, grainIndex), 0);
      // Deflate never grows data by more than a few bytes per 16 KiB block; twice the grain
      // plus a sector is far past any honest compressed grain.
      if (marker.sizeBytes === 0 || marker.sizeBytes > 2 * this.grainBytes + VMDK_SECTOR_BYTES) {
        fail("VMDK_GRAIN_MARKER_INVALID", `grain ${grainIndex} of ${this.source.name} has a marker of ${marker.sizeBytes} bytes at ${hex(markerOffset)}`, {
          grainIndex,
          markerOffset,
          sizeBytes: marker.sizeBytes,
        });
      }
      const expectedLba = BigInt(grainIndex) * this.header.grainSizeSectors;
      if (marker.lbaSectors !== expectedLba) {
        fail("VMDK_GRAIN_LBA_MISMATCH", `grain ${grainIndex} of ${this.source.name} at ${hex(markerOffset)} is marked for sector ${marker.lbaSectors}, not ${expectedLba}`, {
          grainIndex,
          markerOffset,
          lbaSectors: marker.lbaSectors,
        });
      }
      batch.push({ location, compressed: await slice(markerOffset + VMDK_GRAIN_MARKER_BYTES, marker.sizeBytes, grainIndex) });
    }
    try {
      await inflateGrains(
        batch.map((b) => b.compressed),
        this.grainBytes,
        (i, grain) => {
          copyInflated(grain, batch[i]!.location, out);
          // The last grain is kept (in a buffer of its own) for a read that ends inside it.
          if (i === batch.length - 1) {
            const data = this.lastGrain?.data.buffer.byteLength === this.grainBytes ? Buffer.from(this.lastGrain.data.buffer) : Buffer.allocUnsafeSlow(this.grainBytes);
            grain.copy(data);
            this.lastGrain = { index: batch[i]!.location.grainIndex, data: data.subarray(0, grain.length) };
          }
        },
      );
    } catch (err) {
      if (!(err instanceof InflateFailure)) throw err;
      const grainIndex = batch[err.index]!.location.grainIndex;
      if (err.code === "ERR_BUFFER_TOO_LARGE") {
        throw new FormatError("VMDK_GRAIN_INFLATE_OVERFLOW", `vmdk: grain ${grainIndex} of ${this.source.name} inflates past ${this.grainBytes} bytes`, {
          context: { grainIndex, grainBytes: this.grainBytes },
          cause: err,
        });
      }
      throw new FormatError("VMDK_GRAIN_CORRUPT", `vmdk: grain ${grainIndex} of ${this.source.name} does not inflate: ${err.message}`, {
        context: { grainIndex },
        cause: err,
      });
    }
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

/**
 * Copies a piece of an inflated grain into `out`. A grain may inflate to fewer bytes than the
 * grain size (the last grain of a disk whose size is not a whole number of grains); what it
 * lacks reads as zeros, whether the grain was just inflated or is the cached last one.
 */
function copyInflated(grain: Buffer, location: GrainLocation, out: Buffer): void {
  const available = Math.max(0, Math.min(location.lengthBytes, grain.length - location.withinBytes));
  if (available > 0) grain.copy(out, location.outOffset, location.withinBytes, location.withinBytes + available);
  out.fill(0, location.outOffset + available, location.outOffset + location.lengthBytes);
}

/**
 * A stream-optimized file whose header says GD_AT_END keeps the real header in a footer
 * (VDF5 §"The Footer"): footer marker, footer, end-of-stream marker at the end of the file.
 */
async function readFooter(source: ByteSource, header: SparseExtentHeader): Promise<SparseExtentHeader> {
  const name = source.name;
  if (source.sizeBytes < VMDK_FOOTER_MARKER_FROM_END_BYTES + VMDK_SECTOR_BYTES) {
    fail("VMDK_FOOTER_INVALID", `${name} is too short (${source.sizeBytes} bytes) to hold a stream footer`, { fileSizeBytes: source.sizeBytes });
  }
  const tail = await readExact(source, source.sizeBytes - VMDK_FOOTER_MARKER_FROM_END_BYTES, VMDK_FOOTER_MARKER_FROM_END_BYTES, "vmdk", "footer");
  const marker = METADATA_MARKER.get(tail, 0);
  const footerBuf = tail.subarray(VMDK_FOOTER_MARKER_FROM_END_BYTES - VMDK_FOOTER_FROM_END_BYTES);
  if (marker.sizeBytes !== 0 || marker.type !== VMDK_MARKER_FOOTER || footerBuf.readUInt32LE(0) !== VMDK_SPARSE_MAGIC) {
    fail("VMDK_FOOTER_INVALID", `${name} has gdOffset GD_AT_END but no valid footer before end of file (truncated stream?)`, {
      fileSizeBytes: source.sizeBytes,
    });
  }
  const footer = parseSparseHeader(footerBuf, `footer of ${name}`);
  if (footer.gdOffsetSectors === VMDK_GD_AT_END) {
    fail("VMDK_FOOTER_INVALID", `footer of ${name} still has gdOffset GD_AT_END`);
  }
  if (footer.capacitySectors !== header.capacitySectors || footer.grainSizeSectors !== header.grainSizeSectors || footer.numGTEsPerGT !== header.numGTEsPerGT) {
    fail("VMDK_FOOTER_INVALID", `footer of ${name} disagrees with its header on capacity, grain size or table size`);
  }
  return footer;
}

async function loadGrainDirectory(
  source: ByteSource,
  header: SparseExtentHeader,
  gdOffsetSectors: bigint,
  gdEntries: number,
  what: string,
): Promise<Uint32Array> {
  const name = source.name;
  const gdBytes = gdEntries * VMDK_GTE_BYTES;
  const gdOffsetBytes = gdOffsetSectors * BigInt(VMDK_SECTOR_BYTES);
  if (gdOffsetSectors === 0n || gdOffsetBytes + BigInt(gdBytes) > BigInt(source.sizeBytes)) {
    fail("VMDK_GD_OUT_OF_RANGE", `${what} of ${name} at ${hex(gdOffsetBytes)} (+${gdBytes}) lies outside the file (size ${hex(source.sizeBytes)})`, {
      gdOffsetBytes,
      gdBytes,
      fileSizeBytes: source.sizeBytes,
    });
  }
  const gdStart = toSafeNumber(gdOffsetBytes, "gdOffset", "vmdk");
  const raw = await readExact(source, gdStart, gdBytes, "vmdk", what);
  const gd = new Uint32Array(gdEntries);
  for (let i = 0; i < gdEntries; i++) gd[i] = raw.readUInt32LE(i * VMDK_GTE_BYTES);

  // Tables must lie inside the file, clear of the header and the directory itself, and must
  // not share sectors with each other: an aliased table would make two disk ranges one.
  const gtBytes = header.numGTEsPerGT * VMDK_GTE_BYTES;
  const gdEnd = gdStart + gdBytes;
  const allocated: number[] = [];
  for (let i = 0; i < gdEntries; i++) {
    const entry = gd[i] ?? 0;
    if (entry === 0) continue;
    const gtStart = entry * VMDK_SECTOR_BYTES;
    if (gtStart + gtBytes > source.sizeBytes) {
      fail("VMDK_GT_OUT_OF_RANGE", `${what} entry ${i} of ${name} points past end of file (offset ${hex(gtStart)}, file ${hex(source.sizeBytes)})`, {
        gdIndex: i,
        gtOffsetBytes: gtStart,
        fileSizeBytes: source.sizeBytes,
      });
    }
    if (gtStart < VMDK_SECTOR_BYTES || (gtStart < gdEnd && gtStart + gtBytes > gdStart)) {
      fail("VMDK_GT_OVERLAP", `${what} entry ${i} of ${name} points into the header or the directory itself (offset ${hex(gtStart)})`, {
        gdIndex: i,
        gtOffsetBytes: gtStart,
      });
    }
    allocated.push(entry);
  }
  const sorted = Uint32Array.from(allocated).sort();
  for (let i = 1; i < sorted.length; i++) {
    const previous = (sorted[i - 1] ?? 0) * VMDK_SECTOR_BYTES;
    const current = (sorted[i] ?? 0) * VMDK_SECTOR_BYTES;
    if (current < previous + gtBytes) {
      fail("VMDK_GT_OVERLAP", `${what} of ${name} has grain tables that overlap or repeat (offsets ${hex(previous)} and ${hex(current)})`, {
        gtOffsetBytes: current,
      });
    }
  }
  return gd;
}
