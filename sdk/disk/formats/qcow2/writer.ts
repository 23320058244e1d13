// QCOW2 writer: version 3 (compat 1.1) by default, or version 2 (compat 0.10), with 16-bit
// refcounts. Hand-written, like the reader.
//
// Layout, all in one forward pass because DiskSink writes arrive in increasing order:
//   cluster 0                header (written last, so an aborted file is never valid qcow2)
//   clusters 1..k            L1 table, reserved up front because its size follows from the
//                            virtual size; entries are written a window at a time
//   data and L2 tables       data clusters appended as they arrive; each L2 table is appended
//                            once the writes move past the range it maps
//   refcount blocks, table   at the end: every cluster before them is used exactly once, so
//                            every refcount is 1 and no per-cluster bookkeeping is needed
// Memory: one L2 table, one L1 window and the writes in flight, whatever the virtual size.
//
// Target writes are pipelined: write() returns once its data is handed to the target, with at
// most MAX_WRITES_IN_FLIGHT outstanding, so the caller must not modify a buffer after passing
// it (convert() never does: every read yields a fresh buffer). A failed target write is
// reported by the next write() or by finish().
import { z } from "zod";
import { InvalidArgsError, NotCapableError } from "../../../errors.ts";
import type { WriterOptions } from "../../format.ts";
import { encode, isPowerOfTwo } from "../../layout.ts";
import { SinkWriteGuard } from "../../sink-guard.ts";
import type { ByteTarget, DiskSink, SinkResult } from "../../types.ts";
import { copyMembers, FileSpan, put, type Payload } from "../../file-span.ts";
import { parseWriterOptions } from "../../writer-options.ts";
import {
  COMPRESSION_TYPE_ZLIB,
  ENTRY_COPIED_HIGH_FLAG,
  FORMAT_NAME,
  HeaderV2,
  HeaderV3Tail,
  L2_ENTRY_BYTES,
  QCOW2_COMPRESSION_TYPE_OFFSET_BYTES,
  QCOW2_DEFAULT_CLUSTER_BYTES,
  QCOW2_L1_ENTRY_BYTES,
  QCOW2_MAGIC,
  QCOW2_MAX_CLUSTER_BITS,
  QCOW2_MAX_L1_BYTES,
  QCOW2_MIN_CLUSTER_BITS,
  QCOW2_V2_HEADER_BYTES,
  QCOW2_V3_WRITTEN_HEADER_BYTES,
  QCOW2_VERSION_2,
  QCOW2_VERSION_3,
  REFCOUNT_TABLE_ENTRY_BYTES,
  WRITER_REFCOUNT_ENTRY_BYTES,
  WRITER_REFCOUNT_ORDER,
} from "./layout.ts";

const SECTOR_BYTES = 512;
const TWO_POW_32 = 2 ** 32;
/** L1 entries are buffered this many bytes at a time (8192 entries: 4 TiB with 64 KiB clusters). */
const L1_WINDOW_BYTES = 64 * 1024;
/** Refcount blocks and table are written in chunks of at most this size. */
const METADATA_CHUNK_BYTES = 1024 * 1024;
/**
 * Target writes outstanding at once. Four matches libuv's default thread pool, which runs file
 * writes; measured on a file target, four in flight are about 2.5x faster than one.
 */
const MAX_WRITES_IN_FLIGHT = 4;
/** Caps the caller's buffers held by writes in flight, however large each write is. */
const MAX_BYTES_IN_FLIGHT = 32 * 1024 * 1024;

const MIN_CLUSTER_BYTES = 2 ** QCOW2_MIN_CLUSTER_BITS;
const MAX_CLUSTER_BYTES = 2 ** QCOW2_MAX_CLUSTER_BITS;

/** L1 entries needed to map `virtualSizeBytes` with standard (8-byte) L2 entries. */
export function l1EntriesFor(virtualSizeBytes: number, clusterSizeBytes: number): number {
  const l2CoverageBytes = (clusterSizeBytes / L2_ENTRY_BYTES) * clusterSizeBytes;
  return Math.ceil(virtualSizeBytes / l2CoverageBytes);
}

const Qcow2WriterOptions = z
  .strictObject({
    // QEMU counts qcow2 sizes in 512-byte sectors and refuses other sizes at create time.
    virtualSizeBytes: z.coerce
      .number()
      .int()
      .nonnegative()
      .refine((v) => v % SECTOR_BYTES === 0, { message: `must be a multiple of ${SECTOR_BYTES} bytes` }),
    clusterSize: z.coerce
      .number()
      .int()
      .min(MIN_CLUSTER_BYTES)
      .max(MAX_CLUSTER_BYTES)
      .refine(isPowerOfTwo, { message: "must be a power of two" })
      .default(QCOW2_DEFAULT_CLUSTER_BYTES),
    subformat: z.enum(["v2", "v3"]).default("v3"),
  })
  .superRefine((options, ctx) => {
    const l1Bytes = l1EntriesFor(options.virtualSizeBytes, options.clusterSize) * QCOW2_L1_ENTRY_BYTES;
    if (l1Bytes > QCOW2_MAX_L1_BYTES) {
      ctx.addIssue({
        code: "custom",
        path: ["virtualSizeBytes"],
        message: `needs a ${l1Bytes}-byte L1 table with ${options.clusterSize}-byte clusters (limit ${QCOW2_MAX_L1_BYTES}); use larger clusters`,
      });
    }
  });

/** Puts a cluster offset with the "copied" flag (bit 63: refcount is exactly 1) at `at`. */
function putEntry(buf: Buffer, at: number, hostOffsetBytes: number): void {
  buf.writeUInt32BE((ENTRY_COPIED_HIGH_FLAG | Math.floor(hostOffsetBytes / TWO_POW_32)) >>> 0, at);
  buf.writeUInt32BE(hostOffsetBytes % TWO_POW_32, at + 4);
}

export async function createQcow2Writer(target: ByteTarget, options: WriterOptions): Promise<DiskSink> {
  const parsed = parseWriterOptions(FORMAT_NAME, Qcow2WriterOptions, options);
  if (target.sequential) {
    throw new NotCapableError(
      "QCOW2_SEQUENTIAL_TARGET",
      `${FORMAT_NAME}: ${target.name} is sequential, but a qcow2 header is written last at offset 0`,
      { context: { target: target.name } },
    );
  }
  const { virtualSizeBytes, subformat } = parsed;
  const clusterSizeBytes = parsed.clusterSize;
  const clusterBits = Math.log2(clusterSizeBytes);
  const l2Entries = clusterSizeBytes / L2_ENTRY_BYTES;
  const l2CoverageBytes = l2Entries * clusterSizeBytes;
  const l1Entries = l1EntriesFor(virtualSizeBytes, clusterSizeBytes);
  const l1TableBytes = l1Entries * QCOW2_L1_ENTRY_BYTES;
  const l1OffsetBytes = clusterSizeBytes;
  // An empty disk has an empty L1 and reserves no cluster for it (a reserved one would leak).
  const l1Clusters = Math.ceil(l1TableBytes / clusterSizeBytes);

  let appendOffsetBytes = l1OffsetBytes + l1Clusters * clusterSizeBytes;
  const guard = new SinkWriteGuard(FORMAT_NAME, target.name, virtualSizeBytes);
  let dataBytesWritten = 0;
  let dataClusters = 0;
  let l2Tables = 0;
  let closed = false;

  // Replaced, not cleared, after each flush: the flushed buffer may still be in flight.
  let l2Table = Buffer.alloc(clusterSizeBytes);
  let l2Index = -1;
  /** The last data cluster allocated: a later write may still fill the rest of it. */
  let openClusterIndex = -1;
  let openClusterHostBytes = 0;

  const l1WindowBytes = Math.min(L1_WINDOW_BYTES, Math.max(l1TableBytes, QCOW2_L1_ENTRY_BYTES));
  let l1Window = Buffer.alloc(l1WindowBytes);
  let l1WindowIndex = -1;
  let l1WindowDirty = false;

  const inFlight = new Set<Promise<void>>();
  let inFlightBytes = 0;
  let failure: { error: unknown } | undefined;
  function throwIfFailed(): void {
    if (failure !== undefined) throw failure.error;
  }

  /** Starts a target write once there is room; its error sticks in `failure`. */
  async function issue(offsetBytes: number, data: Payload): Promise<void> {
    // A target that copies and pipelines by itself (a file) needs no second pipeline here, and
    // awaiting it lets the caller recycle `data` as soon as write() resolves. (Spans only ever
    // come for such a target: copyMembers offers `copy` only to file targets.)
    if (target.releasesData === true || data instanceof FileSpan) {
      throwIfFailed();
      await put(target, offsetBytes, data);
      return;
    }
    while (inFlight.size >= MAX_WRITES_IN_FLIGHT || (inFlight.size > 0 && inFlightBytes + data.length > MAX_BYTES_IN_FLIGHT)) {
      await Promise.race(inFlight);
    }
    throwIfFailed();
    inFlightBytes += data.length;
    const done: Promise<void> = target.write(offsetBytes, data).then(
      () => undefined,
      (error: unknown) => {
        failure ??= { error };
      },
    );
    const tracked = done.finally(() => {
      inFlight.delete(tracked);
      inFlightBytes -= data.length;
    });
    inFlight.add(tracked);
  }

  async function drain(): Promise<void> {
    await Promise.all(inFlight);
    throwIfFailed();
  }

  async function flushL1Window(): Promise<void> {
    if (!l1WindowDirty) return;
    const startBytes = l1WindowIndex * l1Window.length;
    await issue(l1OffsetBytes + startBytes, l1Window.subarray(0, Math.min(l1Window.length, l1TableBytes - startBytes)));
    l1Window = Buffer.alloc(l1WindowBytes);
    l1WindowDirty = false;
  }

  async function setL1Entry(index: number, l2OffsetBytes: number): Promise<void> {
    const windowIndex = Math.floor((index * QCOW2_L1_ENTRY_BYTES) / l1Window.length);
    if (windowIndex !== l1WindowIndex) {
      await flushL1Window();
      l1WindowIndex = windowIndex;
    }
    putEntry(l1Window, index * QCOW2_L1_ENTRY_BYTES - windowIndex * l1Window.length, l2OffsetBytes);
    l1WindowDirty = true;
  }

  async function flushL2(): Promise<void> {
    if (l2Index < 0) return;
    const l2OffsetBytes = appendOffsetBytes;
    appendOffsetBytes += clusterSizeBytes;
    await issue(l2OffsetBytes, l2Table);
    await setL1Entry(l2Index, l2OffsetBytes);
    l2Table = Buffer.alloc(clusterSizeBytes);
    l2Index = -1;
    l2Tables++;
  }

  async function writeOrdered(offsetBytes: number, data: Payload): Promise<void> {
    const endBytes = offsetBytes + data.length;
    let position = offsetBytes;
    while (position < endBytes) {
      const tableIndex = Math.floor(position / l2CoverageBytes);
      const pieceEnd = Math.min(endBytes, (tableIndex + 1) * l2CoverageBytes);
      if (tableIndex !== l2Index) {
        await flushL2();
        l2Index = tableIndex;
      }
      const firstCluster = Math.floor(position / clusterSizeBytes);
      const piece = data.subarray(position - offsetBytes, pieceEnd - offsetBytes);
      if (firstCluster === openClusterIndex) {
        // The rest of a cluster an earlier write started: its host cluster is already reserved.
        const inClusterEnd = Math.min(pieceEnd, (firstCluster + 1) * clusterSizeBytes);
        await issue(openClusterHostBytes + (position - firstCluster * clusterSizeBytes), piece.subarray(0, inClusterEnd - position));
        position = inClusterEnd;
        continue;
      }
      // New clusters get consecutive host clusters, so the whole piece is one target write.
      const clusterCount = Math.ceil(pieceEnd / clusterSizeBytes) - firstCluster;
      const hostBaseBytes = appendOffsetBytes;
      appendOffsetBytes += clusterCount * clusterSizeBytes;
      for (let i = 0; i < clusterCount; i++) {
        putEntry(l2Table, ((firstCluster + i) % l2Entries) * L2_ENTRY_BYTES, hostBaseBytes + i * clusterSizeBytes);
      }
      await issue(hostBaseBytes + (position - firstCluster * clusterSizeBytes), piece);
      dataClusters += clusterCount;
      openClusterIndex = firstCluster + clusterCount - 1;
      openClusterHostBytes = hostBaseBytes + (clusterCount - 1) * clusterSizeBytes;
      position = pieceEnd;
    }
  }

  /** Refcount blocks then the refcount table after everything else, then the header. */
  async function writeMetadata(): Promise<{ fileSizeBytes: number; refcountTableOffsetBytes: number; refcountTableClusters: number }> {
    const usedClusters = appendOffsetBytes / clusterSizeBytes;
    const refcountsPerBlock = clusterSizeBytes / WRITER_REFCOUNT_ENTRY_BYTES;
    const entriesPerTableCluster = clusterSizeBytes / REFCOUNT_TABLE_ENTRY_BYTES;
    // The refcount structures count themselves too: grow until the count stops changing
    // (it converges because each block covers far more clusters than it adds).
    let totalClusters = usedClusters;
    let blockCount: number;
    let tableClusters: number;
    for (;;) {
      blockCount = Math.ceil(totalClusters / refcountsPerBlock);
      tableClusters = Math.ceil(blockCount / entriesPerTableCluster);
      const next = usedClusters + blockCount + tableClusters;
      if (next === totalClusters) break;
      totalClusters = next;
    }
    const blocksOffsetBytes = appendOffsetBytes;
    const tableOffsetBytes = blocksOffsetBytes + blockCount * clusterSizeBytes;

    // Every cluster in [0, totalClusters) has refcount 1; all blocks but the last are full.
    const blocksPerChunk = Math.max(1, Math.floor(METADATA_CHUNK_BYTES / clusterSizeBytes));
    const fullChunk = Buffer.alloc(Math.min(blockCount, blocksPerChunk) * clusterSizeBytes);
    const REFCOUNT_ONE_BE = Buffer.from([0, 1]);
    fullChunk.fill(REFCOUNT_ONE_BE);
    let blockIndex = 0;
    while (blockIndex < blockCount) {
      const count = Math.min(blocksPerChunk, blockCount - blockIndex);
      const coveredClusters = Math.min(count * refcountsPerBlock, totalClusters - blockIndex * refcountsPerBlock);
      const chunk = fullChunk.subarray(0, count * clusterSizeBytes);
      if (coveredClusters < count * refcountsPerBlock) {
        const partial = Buffer.alloc(chunk.length);
        chunk.copy(partial, 0, 0, coveredClusters * WRITER_REFCOUNT_ENTRY_BYTES);
        await issue(blocksOffsetBytes + blockIndex * clusterSizeBytes, partial);
      } else {
        await issue(blocksOffsetBytes + blockIndex * clusterSizeBytes, chunk);
      }
      blockIndex += count;
    }

    const entriesPerChunk = METADATA_CHUNK_BYTES / REFCOUNT_TABLE_ENTRY_BYTES;
    for (let first = 0; first < blockCount; first += entriesPerChunk) {
      const count = Math.min(entriesPerChunk, blockCount - first);
      const chunk = Buffer.alloc(count * REFCOUNT_TABLE_ENTRY_BYTES);
      for (let i = 0; i < count; i++) {
        chunk.writeBigUInt64BE(BigInt(blocksOffsetBytes + (first + i) * clusterSizeBytes), i * REFCOUNT_TABLE_ENTRY_BYTES);
      }
      await issue(tableOffsetBytes + first * REFCOUNT_TABLE_ENTRY_BYTES, chunk);
    }
    return {
      fileSizeBytes: totalClusters * clusterSizeBytes,
      refcountTableOffsetBytes: tableOffsetBytes,
      refcountTableClusters: tableClusters,
    };
  }

  function encodeHeader(refcountTableOffsetBytes: number, refcountTableClusters: number): Buffer {
    const v2Fields = {
      magic: QCOW2_MAGIC,
      version: subformat === "v2" ? QCOW2_VERSION_2 : QCOW2_VERSION_3,
      backingFileOffsetBytes: 0n,
      backingFileNameBytes: 0,
      clusterBits,
      sizeBytes: BigInt(virtualSizeBytes),
      cryptMethod: 0,
      l1Entries,
      l1TableOffsetBytes: BigInt(l1OffsetBytes),
      refcountTableOffsetBytes: BigInt(refcountTableOffsetBytes),
      refcountTableClusters,
      snapshotCount: 0,
      snapshotsOffsetBytes: 0n,
    };
    // The zero bytes after the header are the end-of-extensions marker (qcow2 spec §"Header
    // extensions").
    const END_MARKER_BYTES = 8;
    if (subformat === "v2") {
      const header = Buffer.alloc(QCOW2_V2_HEADER_BYTES + END_MARKER_BYTES);
      encode(HeaderV2, v2Fields).copy(header);
      return header;
    }
    const header = Buffer.alloc(QCOW2_V3_WRITTEN_HEADER_BYTES + END_MARKER_BYTES);
    HeaderV3Tail.put(header, 0, {
      incompatibleFeatures: 0n,
      compatibleFeatures: 0n,
      autoclearFeatures: 0n,
      refcountOrder: WRITER_REFCOUNT_ORDER,
      headerLengthBytes: QCOW2_V3_WRITTEN_HEADER_BYTES,
    });
    HeaderV2.put(header, 0, v2Fields);
    header.writeUInt8(COMPRESSION_TYPE_ZLIB, QCOW2_COMPRESSION_TYPE_OFFSET_BYTES);
    return header;
  }

  // Calls are serialised even if a caller does not await, and the first failure sticks, so an
  // error surfaces on the next call or in finish().
  let tail: Promise<void> = Promise.resolve();
  function enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = tail.then(() => {
      if (failure !== undefined) throw failure.error;
      return step();
    });
    tail = run.then(
      () => undefined,
      (error: unknown) => {
        failure ??= { error };
      },
    );
    return run;
  }

  function ensureOpen(what: string): void {
    if (closed) throw new InvalidArgsError("SINK_CLOSED", `${FORMAT_NAME}: ${what} after finish() or abort() on ${target.name}`);
  }

  // async so that contract violations reject rather than throw; the body up to enqueue() still
  // runs synchronously, which keeps calls in order.
  async function place(offsetBytes: number, data: Payload): Promise<void> {
    ensureOpen("write");
    guard.accept(offsetBytes, data.length);
    if (data.length === 0) return;
    dataBytesWritten += data.length;
    await enqueue(() => writeOrdered(offsetBytes, data));
  }

  return {
    format: FORMAT_NAME,
    virtualSizeBytes,
    blockSizeBytes: clusterSizeBytes,
    releasesData: target.releasesData === true,
    write: place,
    ...copyMembers(target, place),
    async finish(): Promise<SinkResult> {
      ensureOpen("finish");
      closed = true;
      try {
        const layout = await enqueue(async () => {
          await flushL2();
          await flushL1Window();
          const result = await writeMetadata();
          await drain();
          await target.truncate(result.fileSizeBytes);
          await target.write(0, encodeHeader(result.refcountTableOffsetBytes, result.refcountTableClusters));
          return result;
        });
        await target.close();
        return {
          location: target.name,
          dataBytesWritten,
          details: {
            subformat,
            clusterSizeBytes,
            fileSizeBytes: layout.fileSizeBytes,
            dataClusters,
            l2Tables,
          },
        };
      } catch (err) {
        await target.close().catch(() => undefined);
        throw err;
      }
    },
    async abort() {
      if (closed) return;
      closed = true;
      await tail;
      await Promise.all(inFlight);
      await target.close();
    },
  };
}
