// VMDK writer: monolithicSparse on a random-access target and streamOptimized on any target,
// including a sequential one. Both follow VMware "Virtual Disk Format 5.0" (VDF5) rather than
// qemu's output, because ESXi and AWS import reject qemu's stream-optimized files.
//
// monolithicSparse layout (as VMware and qemu lay it out): header, descriptor (20 sectors),
// redundant GD, redundant GTs, GD, GTs, then 64 KiB grains appended in write order. Grain
// tables are reserved but only written once they hold an entry, so untouched tables stay holes.
//
// streamOptimized layout (VDF5 §"Stream-Optimized Compressed Sparse Extents"): header with
// gdOffset = GD_AT_END, descriptor, padding to sector 128, then for each non-zero grain a grain
// marker and its zlib stream; after the last grain of each grain table, a GT marker and the
// table; at the end a GD marker and the directory, a footer marker and a header copy with the
// real gdOffset, and the end-of-stream marker.
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { constants, deflate } from "node:zlib";
import { z } from "zod";
import { InvalidArgsError, NotCapableError } from "../../../errors.ts";
import type { WriterOptions } from "../../format.ts";
import { alignUp, encode } from "../../layout.ts";
import { SinkWriteGuard } from "../../sink-guard.ts";
import type { ByteTarget, DiskSink, SinkResult } from "../../types.ts";
import { parseWriterOptions } from "../../writer-options.ts";
import { formatDescriptor, type AdapterType } from "./descriptor.ts";
import { looksIncompressible } from "./incompressible.ts";
import {
  GRAIN_MARKER,
  METADATA_MARKER,
  SPARSE_EXTENT_HEADER,
  VMDK_COMPRESSION_DEFLATE,
  VMDK_COMPRESSION_NONE,
  VMDK_DEFAULT_GRAIN_SECTORS,
  VMDK_EMBEDDED_DESCRIPTOR_SECTORS,
  VMDK_FLAG_COMPRESSED,
  VMDK_FLAG_MARKERS,
  VMDK_FLAG_REDUNDANT_GRAIN_TABLE,
  VMDK_FLAG_VALID_NEWLINE,
  VMDK_GD_AT_END,
  VMDK_GRAIN_MARKER_BYTES,
  VMDK_GTE_BYTES,
  VMDK_GTES_PER_GT,
  VMDK_MARKER_EOS,
  VMDK_MARKER_FOOTER,
  VMDK_MARKER_GD,
  VMDK_MARKER_GT,
  VMDK_NEWLINE_TEST,
  VMDK_SECTOR_BYTES,
  VMDK_SPARSE_MAGIC,
  VMDK_STREAM_OVERHEAD_SECTORS,
  type SparseExtentHeader,
} from "./layout.ts";

const deflateAsync = promisify(deflate);

/**
 * Grain table entries are 32-bit sector numbers, so a sparse file cannot exceed 2^32 sectors
 * (2 TiB); VMware caps a hosted sparse disk at 2 TiB of capacity for the same reason.
 */
export const VMDK_MAX_CAPACITY_BYTES = 2 ** 41;
const MAX_FILE_SECTORS = 0xffffffff;

/**
 * Grains being deflated at once. libuv runs 4 pool threads by default, so 16 keeps every thread
 * fed while results wait their turn to be written in order; memory stays at 16 × 64 KiB inputs.
 */
export const VMDK_DEFLATE_IN_FLIGHT = 16;
/** Stream output is gathered into writes of about this size, not one write per grain. */
const OUTPUT_CHUNK_BYTES = 1024 * 1024;

/**
 * ddb.virtualHWVersion 4 is the default: it marks the disk usable by every ESX/ESXi since 3.x and
 * is what ovftool-made OVA disks commonly carry, and ESXi and AWS import accept it. The value
 * says what the disk needs, not what the VM will run, so the lowest version is the most portable.
 */
export const VMDK_DEFAULT_HW_VERSION = 4;

export const vmdkWriterOptionsSchema = z
  .object({
    virtualSizeBytes: z.coerce.number().int().positive().max(VMDK_MAX_CAPACITY_BYTES),
    subformat: z.enum(["monolithicSparse", "streamOptimized"]).default("monolithicSparse"),
    adapterType: z.enum(["lsilogic", "ide", "buslogic", "pvscsi", "lsisas1068"]).default("lsilogic"),
    hwVersion: z.coerce.number().int().min(3).max(99).default(VMDK_DEFAULT_HW_VERSION),
  })
  .strict();
export type VmdkWriterOptions = z.infer<typeof vmdkWriterOptionsSchema>;

const GRAIN_BYTES = VMDK_DEFAULT_GRAIN_SECTORS * VMDK_SECTOR_BYTES;
/** A grain plus deflate's stored-block overhead, rounded up generously. */
const DEFLATE_CHUNK_BYTES = 2 * GRAIN_BYTES;
const GT_BYTES = VMDK_GTES_PER_GT * VMDK_GTE_BYTES;
const GT_SECTORS = GT_BYTES / VMDK_SECTOR_BYTES;
const ZERO_GRAIN = Buffer.alloc(GRAIN_BYTES);

function isZero(buf: Buffer): boolean {
  for (let offset = 0; offset < buf.length; offset += GRAIN_BYTES) {
    const piece = buf.subarray(offset, Math.min(buf.length, offset + GRAIN_BYTES));
    if (!piece.equals(ZERO_GRAIN.subarray(0, piece.length))) return false;
  }
  return true;
}

function baseName(path: string): string {
  return path.split(/[/\\]/).pop() || "disk.vmdk";
}

function newCid(): string {
  // CID ffffffff would read as "no content"; any other random value identifies this content.
  let cid: string;
  do cid = randomBytes(4).toString("hex");
  while (cid === "ffffffff");
  return cid;
}

function header(fields: Partial<SparseExtentHeader> & Pick<SparseExtentHeader, "version" | "flags" | "capacitySectors">): Buffer {
  return encode(SPARSE_EXTENT_HEADER, {
    magicNumber: VMDK_SPARSE_MAGIC,
    grainSizeSectors: BigInt(VMDK_DEFAULT_GRAIN_SECTORS),
    descriptorOffsetSectors: 1n,
    descriptorSizeSectors: 0n,
    numGTEsPerGT: VMDK_GTES_PER_GT,
    rgdOffsetSectors: 0n,
    gdOffsetSectors: 0n,
    overHeadSectors: 0n,
    uncleanShutdown: 0,
    singleEndLineChar: VMDK_NEWLINE_TEST.single,
    nonEndLineChar: VMDK_NEWLINE_TEST.non,
    doubleEndLineChar1: VMDK_NEWLINE_TEST.double1,
    doubleEndLineChar2: VMDK_NEWLINE_TEST.double2,
    compressAlgorithm: VMDK_COMPRESSION_NONE,
    ...fields,
  });
}

function metadataMarker(numSectors: number, type: number): Buffer {
  return encode(METADATA_MARKER, { numSectors: BigInt(numSectors), sizeBytes: 0, type, pad: Buffer.alloc(496) });
}

function encodeTable(entries: Uint32Array, paddedBytes: number): Buffer {
  const buf = Buffer.alloc(paddedBytes);
  for (let i = 0; i < entries.length; i++) buf.writeUInt32LE(entries[i] ?? 0, i * VMDK_GTE_BYTES);
  return buf;
}

/**
 * The DiskSink contract checks and partial-grain assembly both subformats share. Subclasses
 * receive whole grains in increasing order through `grains()`, all-zero grains already dropped.
 */
abstract class GrainSink implements DiskSink {
  readonly format = "vmdk";
  readonly virtualSizeBytes: number;
  readonly blockSizeBytes = GRAIN_BYTES;
  protected readonly target: ByteTarget;
  protected readonly options: VmdkWriterOptions;
  protected readonly capacitySectors: number;
  protected readonly gtCount: number;
  protected dataBytesWritten = 0;
  private readonly guard: SinkWriteGuard;
  private pending: { grainIndex: number; data: Buffer } | undefined;
  private failure: unknown;
  private closed = false;
  /** See DiskSink: partial grains are copied; whole grains go to the target or to a copy. */
  abstract readonly releasesData: boolean;

  constructor(target: ByteTarget, options: VmdkWriterOptions) {
    this.target = target;
    this.options = options;
    this.virtualSizeBytes = options.virtualSizeBytes;
    this.guard = new SinkWriteGuard("vmdk", target.name, options.virtualSizeBytes);
    // Capacity is counted in sectors; a size that is not a multiple of 512 rounds up.
    this.capacitySectors = Math.ceil(options.virtualSizeBytes / VMDK_SECTOR_BYTES);
    this.gtCount = Math.ceil(this.capacitySectors / (VMDK_GTES_PER_GT * VMDK_DEFAULT_GRAIN_SECTORS));
  }

  /** Consumes whole grains starting at `firstGrainIndex`; `owned` says the buffer is ours to keep. */
  protected abstract grains(firstGrainIndex: number, data: Buffer, owned: boolean): Promise<void>;
  protected abstract complete(): Promise<Record<string, string | number | boolean>>;

  protected descriptorText(createType: "monolithicSparse" | "streamOptimized"): Buffer {
    return Buffer.from(
      formatDescriptor({
        createType,
        fileName: baseName(this.target.name),
        capacitySectors: this.capacitySectors,
        adapterType: this.options.adapterType as AdapterType,
        hwVersion: this.options.hwVersion,
        cid: newCid(),
        longContentId: randomBytes(16).toString("hex"),
      }),
      "utf8",
    );
  }

  private async guarded<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) throw new InvalidArgsError("SINK_CLOSED", `vmdk: ${this.target.name} is already finished or aborted`);
    if (this.failure !== undefined) throw this.failure;
    try {
      return await work();
    } catch (err) {
      this.failure = err;
      throw err;
    }
  }

  write(offsetBytes: number, data: Buffer): Promise<void> {
    return this.guarded(async () => {
      const endBytes = offsetBytes + data.length;
      this.guard.accept(offsetBytes, data.length);
      this.dataBytesWritten += data.length;
      let position = offsetBytes;
      while (position < endBytes) {
        const grainIndex = Math.floor(position / GRAIN_BYTES);
        const withinBytes = position - grainIndex * GRAIN_BYTES;
        const dataOffset = position - offsetBytes;
        if (this.pending !== undefined && this.pending.grainIndex !== grainIndex) await this.flushPending();
        const wholeGrains = withinBytes === 0 ? Math.floor((endBytes - position) / GRAIN_BYTES) : 0;
        if (wholeGrains > 0) {
          await this.grains(grainIndex, data.subarray(dataOffset, dataOffset + wholeGrains * GRAIN_BYTES), false);
          position += wholeGrains * GRAIN_BYTES;
          continue;
        }
        const pieceBytes = Math.min(GRAIN_BYTES - withinBytes, endBytes - position);
        this.pending ??= { grainIndex, data: Buffer.alloc(GRAIN_BYTES) };
        data.copy(this.pending.data, withinBytes, dataOffset, dataOffset + pieceBytes);
        position += pieceBytes;
        // A grain filled to its end (or to the end of the disk) can take no more writes.
        if (withinBytes + pieceBytes === GRAIN_BYTES || position === this.virtualSizeBytes) await this.flushPending();
      }
    });
  }

  private async flushPending(): Promise<void> {
    const pending = this.pending;
    this.pending = undefined;
    if (pending !== undefined) await this.grains(pending.grainIndex, pending.data, true);
  }

  finish(): Promise<SinkResult> {
    return this.guarded(async () => {
      await this.flushPending();
      const details = await this.complete();
      this.closed = true;
      await this.target.close();
      return { location: this.target.name, dataBytesWritten: this.dataBytesWritten, details };
    });
  }

  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pending = undefined;
    await this.target.close();
  }

  /** Splits whole grains into runs of non-zero grains: [firstGrainIndex, buffer] pairs. */
  protected *nonZeroRuns(firstGrainIndex: number, data: Buffer): Generator<[number, Buffer]> {
    const count = Math.ceil(data.length / GRAIN_BYTES);
    let runStart = -1;
    for (let i = 0; i <= count; i++) {
      const zero = i === count || isZero(data.subarray(i * GRAIN_BYTES, (i + 1) * GRAIN_BYTES));
      if (!zero && runStart < 0) runStart = i;
      if (zero && runStart >= 0) {
        yield [firstGrainIndex + runStart, data.subarray(runStart * GRAIN_BYTES, i * GRAIN_BYTES)];
        runStart = -1;
      }
    }
  }
}

class MonolithicSparseSink extends GrainSink {
  // Whole grains are handed to the target as they are.
  readonly releasesData = this.target.releasesData === true;
  private readonly gdSectors: number;
  private readonly rgdOffsetSectors: number;
  private readonly gdOffsetSectors: number;
  private readonly overHeadSectors: number;
  private nextGrainSector: number;
  private grainsWritten = 0;
  private table: { gtIndex: number; entries: Uint32Array } | undefined;

  constructor(target: ByteTarget, options: VmdkWriterOptions) {
    super(target, options);
    this.gdSectors = Math.ceil((this.gtCount * VMDK_GTE_BYTES) / VMDK_SECTOR_BYTES);
    this.rgdOffsetSectors = 1 + VMDK_EMBEDDED_DESCRIPTOR_SECTORS;
    this.gdOffsetSectors = this.rgdOffsetSectors + this.gdSectors + this.gtCount * GT_SECTORS;
    const metadataEndSectors = this.gdOffsetSectors + this.gdSectors + this.gtCount * GT_SECTORS;
    // Grains start on a grain boundary, as VMware lays the file out (overHead is a grain multiple).
    this.overHeadSectors = alignUp(metadataEndSectors, VMDK_DEFAULT_GRAIN_SECTORS);
    this.nextGrainSector = this.overHeadSectors;
  }

  /** Tables follow their directory: table i at directory + directory size + 4 sectors × i. */
  private gtSector(gdOffsetSectors: number, gtIndex: number): number {
    return gdOffsetSectors + this.gdSectors + gtIndex * GT_SECTORS;
  }

  protected async grains(firstGrainIndex: number, data: Buffer): Promise<void> {
    for (const [grainIndex, run] of this.nonZeroRuns(firstGrainIndex, data)) {
      const grainCount = Math.ceil(run.length / GRAIN_BYTES);
      const runSectors = grainCount * VMDK_DEFAULT_GRAIN_SECTORS;
      if (this.nextGrainSector + runSectors > MAX_FILE_SECTORS) {
        throw new NotCapableError("VMDK_FILE_TOO_LARGE", `vmdk: ${this.target.name} would pass 2^32 sectors, the limit of grain table entries`);
      }
      // A short final grain (a disk size that is not a grain multiple) is still stored whole.
      const padded = run.length === grainCount * GRAIN_BYTES ? run : Buffer.concat([run, ZERO_GRAIN.subarray(0, grainCount * GRAIN_BYTES - run.length)]);
      await this.target.write(this.nextGrainSector * VMDK_SECTOR_BYTES, padded);
      for (let i = 0; i < grainCount; i++) {
        await this.record(grainIndex + i, this.nextGrainSector);
        this.nextGrainSector += VMDK_DEFAULT_GRAIN_SECTORS;
      }
      this.grainsWritten += grainCount;
    }
  }

  private async record(grainIndex: number, sector: number): Promise<void> {
    const gtIndex = Math.floor(grainIndex / VMDK_GTES_PER_GT);
    if (this.table !== undefined && this.table.gtIndex !== gtIndex) await this.flushTable();
    this.table ??= { gtIndex, entries: new Uint32Array(VMDK_GTES_PER_GT) };
    this.table.entries[grainIndex % VMDK_GTES_PER_GT] = sector;
  }

  /** Writes the current grain table to both copies once the writes have moved past it. */
  private async flushTable(): Promise<void> {
    const table = this.table;
    this.table = undefined;
    if (table === undefined) return;
    const bytes = encodeTable(table.entries, GT_BYTES);
    await this.target.write(this.gtSector(this.rgdOffsetSectors, table.gtIndex) * VMDK_SECTOR_BYTES, bytes);
    await this.target.write(this.gtSector(this.gdOffsetSectors, table.gtIndex) * VMDK_SECTOR_BYTES, bytes);
  }

  protected async complete(): Promise<Record<string, string | number | boolean>> {
    await this.flushTable();
    const directory = (gdOffsetSectors: number): Buffer => {
      const entries = new Uint32Array(this.gtCount);
      for (let i = 0; i < this.gtCount; i++) entries[i] = this.gtSector(gdOffsetSectors, i);
      return encodeTable(entries, this.gdSectors * VMDK_SECTOR_BYTES);
    };
    await this.target.write(this.rgdOffsetSectors * VMDK_SECTOR_BYTES, directory(this.rgdOffsetSectors));
    await this.target.write(this.gdOffsetSectors * VMDK_SECTOR_BYTES, directory(this.gdOffsetSectors));
    const descriptor = this.descriptorText("monolithicSparse");
    if (descriptor.length > VMDK_EMBEDDED_DESCRIPTOR_SECTORS * VMDK_SECTOR_BYTES) {
      throw new InvalidArgsError("VMDK_DESCRIPTOR_TOO_LARGE", `vmdk: descriptor for ${this.target.name} does not fit its 20 sectors`);
    }
    // The header goes last, so a file whose writing stopped early is not a valid VMDK.
    const head = Buffer.alloc((1 + VMDK_EMBEDDED_DESCRIPTOR_SECTORS) * VMDK_SECTOR_BYTES);
    header({
      version: 1,
      flags: VMDK_FLAG_VALID_NEWLINE | VMDK_FLAG_REDUNDANT_GRAIN_TABLE,
      capacitySectors: BigInt(this.capacitySectors),
      descriptorSizeSectors: BigInt(VMDK_EMBEDDED_DESCRIPTOR_SECTORS),
      rgdOffsetSectors: BigInt(this.rgdOffsetSectors),
      gdOffsetSectors: BigInt(this.gdOffsetSectors),
      overHeadSectors: BigInt(this.overHeadSectors),
    }).copy(head, 0);
    descriptor.copy(head, VMDK_SECTOR_BYTES);
    await this.target.write(0, head);
    const fileSizeBytes = this.nextGrainSector * VMDK_SECTOR_BYTES;
    await this.target.truncate(fileSizeBytes);
    return { subformat: "monolithicSparse", fileSizeBytes, grainsWritten: this.grainsWritten, adapterType: this.options.adapterType };
  }
}

interface QueuedGrain {
  readonly grainIndex: number;
  readonly compressed: Promise<Buffer>;
}

class StreamOptimizedSink extends GrainSink {
  // Deflate reads a copy of every grain it did not allocate itself.
  readonly releasesData = true;
  private readonly gd: Uint32Array;
  private readonly queue: QueuedGrain[] = [];
  private readonly output: Buffer[] = [];
  private outputBytes = 0;
  /** Bytes handed to the target so far; with `outputBytes`, the stream position. */
  private writtenBytes = 0;
  private table: { gtIndex: number; entries: Uint32Array } | undefined;
  private grainsWritten = 0;
  /** Set by start(); the footer repeats it. */
  private descriptorSectors = 0;

  constructor(target: ByteTarget, options: VmdkWriterOptions) {
    super(target, options);
    this.gd = new Uint32Array(this.gtCount);
  }

  private headerFields(gdOffsetSectors: bigint, descriptorSizeSectors: number): Buffer {
    return header({
      // Version 3 with the compressed and markers flags is what ESXi and ovftool write.
      version: 3,
      flags: VMDK_FLAG_VALID_NEWLINE | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS,
      capacitySectors: BigInt(this.capacitySectors),
      descriptorSizeSectors: BigInt(descriptorSizeSectors),
      gdOffsetSectors,
      overHeadSectors: BigInt(VMDK_STREAM_OVERHEAD_SECTORS),
      compressAlgorithm: VMDK_COMPRESSION_DEFLATE,
    });
  }

  /** Header, descriptor and padding up to the first grain at sector 128. */
  start(): void {
    const descriptor = this.descriptorText("streamOptimized");
    this.descriptorSectors = Math.ceil(descriptor.length / VMDK_SECTOR_BYTES);
    const head = Buffer.alloc(VMDK_STREAM_OVERHEAD_SECTORS * VMDK_SECTOR_BYTES);
    this.headerFields(VMDK_GD_AT_END, this.descriptorSectors).copy(head, 0);
    descriptor.copy(head, VMDK_SECTOR_BYTES);
    this.emit(head);
  }

  private get positionSectors(): number {
    return (this.writtenBytes + this.outputBytes) / VMDK_SECTOR_BYTES;
  }

  private emit(buf: Buffer): void {
    this.output.push(buf);
    this.outputBytes += buf.length;
  }

  private async flushOutput(): Promise<void> {
    if (this.outputBytes === 0) return;
    const chunk = this.output.length === 1 ? (this.output[0] as Buffer) : Buffer.concat(this.output, this.outputBytes);
    this.output.length = 0;
    const at = this.writtenBytes;
    this.writtenBytes += this.outputBytes;
    this.outputBytes = 0;
    await this.target.write(at, chunk);
  }

  protected async grains(firstGrainIndex: number, data: Buffer, owned: boolean): Promise<void> {
    for (const [grainIndex, run] of this.nonZeroRuns(firstGrainIndex, data)) {
      for (let offset = 0; offset < run.length; offset += GRAIN_BYTES) {
        // The caller may reuse its buffer once write() returns, but deflate reads it later.
        const piece = run.subarray(offset, offset + GRAIN_BYTES);
        const input = owned ? piece : Buffer.from(piece);
        // One output chunk per grain (deflate's worst case is a few bytes over its input), so
        // zlib makes one callback and no concat per grain.
        // Incompressible grains are stored: same or smaller output, a fraction of the CPU.
        const level = looksIncompressible(input) ? constants.Z_NO_COMPRESSION : constants.Z_DEFAULT_COMPRESSION;
        const compressed = deflateAsync(input, { chunkSize: DEFLATE_CHUNK_BYTES, level });
        // Marked handled here; the failure is rethrown when this grain's turn comes.
        compressed.catch(() => {});
        this.queue.push({ grainIndex: grainIndex + offset / GRAIN_BYTES, compressed });
        while (this.queue.length >= VMDK_DEFLATE_IN_FLIGHT) await this.drainOne();
      }
    }
  }

  /** Writes the oldest queued grain; grains leave in submission order whatever order they finish. */
  private async drainOne(): Promise<void> {
    const head = this.queue.shift();
    if (head === undefined) return;
    const compressed = await head.compressed;
    const gtIndex = Math.floor(head.grainIndex / VMDK_GTES_PER_GT);
    if (this.table !== undefined && this.table.gtIndex !== gtIndex) this.emitTable();
    this.table ??= { gtIndex, entries: new Uint32Array(VMDK_GTES_PER_GT) };
    const sector = this.positionSectors;
    if (sector > MAX_FILE_SECTORS) {
      throw new NotCapableError("VMDK_FILE_TOO_LARGE", `vmdk: ${this.target.name} would pass 2^32 sectors, the limit of grain table entries`);
    }
    this.table.entries[head.grainIndex % VMDK_GTES_PER_GT] = sector;
    const recordBytes = alignUp(VMDK_GRAIN_MARKER_BYTES + compressed.length, VMDK_SECTOR_BYTES);
    const marker = Buffer.alloc(VMDK_GRAIN_MARKER_BYTES);
    GRAIN_MARKER.put(marker, 0, { lbaSectors: BigInt(head.grainIndex) * BigInt(VMDK_DEFAULT_GRAIN_SECTORS), sizeBytes: compressed.length });
    this.emit(marker);
    this.emit(compressed);
    this.emit(ZERO_GRAIN.subarray(0, recordBytes - VMDK_GRAIN_MARKER_BYTES - compressed.length));
    this.grainsWritten++;
    if (this.outputBytes >= OUTPUT_CHUNK_BYTES) await this.flushOutput();
  }

  /** GT marker and table, after every grain the table points to (VDF5 stream order). */
  private emitTable(): void {
    const table = this.table;
    this.table = undefined;
    if (table === undefined) return;
    this.emit(metadataMarker(GT_SECTORS, VMDK_MARKER_GT));
    this.gd[table.gtIndex] = this.positionSectors;
    this.emit(encodeTable(table.entries, GT_BYTES));
  }

  protected async complete(): Promise<Record<string, string | number | boolean>> {
    while (this.queue.length > 0) await this.drainOne();
    this.emitTable();
    // Tables that never got a grain stay 0 in the directory: VDF5 readers treat them as unallocated.
    const gdSectors = Math.max(1, Math.ceil((this.gtCount * VMDK_GTE_BYTES) / VMDK_SECTOR_BYTES));
    this.emit(metadataMarker(gdSectors, VMDK_MARKER_GD));
    const gdOffsetSectors = this.positionSectors;
    this.emit(encodeTable(this.gd, gdSectors * VMDK_SECTOR_BYTES));
    this.emit(metadataMarker(1, VMDK_MARKER_FOOTER));
    this.emit(this.headerFields(BigInt(gdOffsetSectors), this.descriptorSectors));
    this.emit(metadataMarker(0, VMDK_MARKER_EOS));
    await this.flushOutput();
    return {
      subformat: "streamOptimized",
      fileSizeBytes: this.writtenBytes,
      grainsWritten: this.grainsWritten,
      adapterType: this.options.adapterType,
    };
  }
}

export async function createVmdkWriter(target: ByteTarget, rawOptions: WriterOptions): Promise<DiskSink> {
  const options = parseWriterOptions("vmdk", vmdkWriterOptionsSchema, rawOptions);
  if (options.subformat === "streamOptimized") {
    const sink = new StreamOptimizedSink(target, options);
    sink.start();
    return sink;
  }
  if (target.sequential) {
    throw new NotCapableError(
      "VMDK_SEQUENTIAL_TARGET",
      `vmdk: monolithicSparse needs a random-access target, and ${target.name} is sequential; use subformat=streamOptimized`,
    );
  }
  return new MonolithicSparseSink(target, options);
}
