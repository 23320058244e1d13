// QCOW2 reader (versions 2 and 3). Hand-written: no maintained JavaScript package reads qcow2
// with compressed clusters, zero clusters, extended L2 entries and bounded memory.
//
// Memory stays bounded whatever the header claims: the L1 table is loaded whole but capped at
// QCOW2_MAX_L1_BYTES and checked against the file size first, L2 tables live in an LRU cache
// with a byte budget, and compressed clusters inflate into at most one cluster each.
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import { FormatError, InvalidArgsError, NotCapableError } from "../../../errors.ts";
import type { OpenOptions } from "../../format.ts";
import { readExact } from "../../io.ts";
import { FileSpan } from "../../file-span.ts";
import { alignUp } from "../../layout.ts";
import type { ByteSource, DiskSource, Extent } from "../../types.ts";
import { openRaw } from "../raw/reader.ts";
import { zstdFrameLength } from "./zstd-frame.ts";
import {
  COMPRESSED_SECTOR_BYTES,
  COMPRESSION_TYPE_ZLIB,
  COMPRESSION_TYPE_ZSTD,
  CompressionTypeField,
  ENTRY_COPIED_HIGH_FLAG,
  EXTENDED_L2_ENTRY_BYTES,
  EXTENDED_L2_MIN_CLUSTER_BITS,
  EXTENSION_ALIGNMENT_BYTES,
  EXTENSION_BACKING_FORMAT,
  EXTENSION_END,
  FORMAT_NAME,
  HeaderExtension,
  HeaderV2,
  HeaderV3Tail,
  INCOMPAT_COMPRESSION_TYPE_BIT,
  INCOMPAT_CORRUPT_BIT,
  INCOMPAT_DIRTY_BIT,
  INCOMPAT_EXTENDED_L2_BIT,
  INCOMPAT_EXTERNAL_DATA_FILE_BIT,
  INCOMPAT_KNOWN_MASK,
  L1_OFFSET_HIGH_MASK,
  L1_OFFSET_LOW_MASK,
  L2_COMPRESSED_HIGH_FLAG,
  L2_ENTRY_BYTES,
  L2_STANDARD_OFFSET_HIGH_MASK,
  L2_STANDARD_OFFSET_LOW_MASK,
  L2_ZERO_LOW_FLAG,
  QCOW2_COMPRESSION_TYPE_OFFSET_BYTES,
  QCOW2_L1_ENTRY_BYTES,
  QCOW2_MAGIC,
  QCOW2_MAX_BACKING_NAME_BYTES,
  QCOW2_MAX_CLUSTER_BITS,
  QCOW2_MAX_L1_BYTES,
  QCOW2_MAX_REFCOUNT_ORDER,
  QCOW2_MIN_CLUSTER_BITS,
  QCOW2_V2_HEADER_BYTES,
  QCOW2_V2_REFCOUNT_ORDER,
  QCOW2_V3_MIN_HEADER_BYTES,
  QCOW2_VERSION_2,
  QCOW2_VERSION_3,
  SUBCLUSTERS_PER_CLUSTER,
  compressedOffsetBits,
} from "./layout.ts";

/**
 * L2 tables kept in memory. 16 MiB holds 256 tables of 64 KiB, which map 128 GiB of a disk with
 * 64 KiB clusters; with 2 MiB clusters it still holds 8 tables (4 TiB).
 */
const L2_CACHE_BUDGET_BYTES = 16 * 1024 * 1024;
/** Inflated compressed clusters kept, so small reads inside one cluster inflate it once. */
const COMPRESSED_CACHE_CLUSTERS = 4;
/**
 * Independent host reads or inflates started at once by one read() call. Four matches libuv's
 * default thread pool, which runs both file reads and zlib work.
 */
const READ_CONCURRENCY = 4;

const TWO_POW_32 = 2 ** 32;
/** Backing files opened through openRelative, nested; a deeper chain is taken to be a loop. */
const MAX_BACKING_CHAIN_DEPTH = 16;

const inflateRaw = promisify(zlib.inflateRaw);
const zstdDecompress = promisify(zlib.zstdDecompress);

/** What one run of a cluster maps to; small integers keep the per-cluster loops cheap. */
const SEG_DATA = 0;
const SEG_ZERO = 1;
const SEG_UNALLOCATED = 2;
const SEG_COMPRESSED = 3;
type SegmentKind = typeof SEG_DATA | typeof SEG_ZERO | typeof SEG_UNALLOCATED | typeof SEG_COMPRESSED;

/** Called for each run of a cluster with one mapping; `hostOffsetBytes` is that run's start. */
type SegmentSink = (
  inClusterOffsetBytes: number,
  lengthBytes: number,
  kind: SegmentKind,
  hostOffsetBytes: number,
  compressedLengthBytes: number,
) => void;

export interface Qcow2Header {
  readonly version: 2 | 3;
  readonly clusterBits: number;
  readonly clusterSizeBytes: number;
  readonly virtualSizeBytes: number;
  readonly l1Entries: number;
  readonly l1TableOffsetBytes: number;
  readonly incompatibleFeatures: bigint;
  readonly compatibleFeatures: bigint;
  readonly autoclearFeatures: bigint;
  readonly refcountOrder: number;
  readonly headerLengthBytes: number;
  readonly compressionType: number;
  readonly extendedL2: boolean;
  readonly backingFileName?: string;
  readonly backingFormat?: string;
}

/** A qcow2 DiskSource, with the facts a caller may want to report. */
export interface Qcow2Source extends DiskSource {
  readonly header: Qcow2Header;
  /**
   * The image was not closed cleanly (incompatible bit 0). Only its refcounts may be stale, and
   * this reader never uses refcounts, so the data reads correctly.
   */
  readonly dirty: boolean;
}

function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

function formatError(code: string, message: string, context: Record<string, string | number | bigint | boolean>): FormatError {
  return new FormatError(code, `${FORMAT_NAME}: ${message}`, { context });
}

function bit(value: bigint, index: bigint): boolean {
  return ((value >> index) & 1n) === 1n;
}

/** Parses and checks everything in cluster 0; throws before any large allocation. */
export async function readHeader(source: ByteSource): Promise<Qcow2Header> {
  const fileSizeBytes = source.sizeBytes;
  const v2 = HeaderV2.get(await readExact(source, 0, QCOW2_V2_HEADER_BYTES, FORMAT_NAME, "header"), 0);
  if (v2.magic !== QCOW2_MAGIC) {
    throw formatError("QCOW2_BAD_MAGIC", `bad magic ${hex(v2.magic)} in ${source.name} (expected QFI\\xfb)`, {
      magic: v2.magic,
    });
  }
  if (v2.version !== QCOW2_VERSION_2 && v2.version !== QCOW2_VERSION_3) {
    throw new NotCapableError("QCOW2_BAD_VERSION", `${FORMAT_NAME}: version ${v2.version} is not 2 or 3 in ${source.name}`, {
      context: { version: v2.version },
    });
  }
  const version = v2.version;
  if (v2.clusterBits < QCOW2_MIN_CLUSTER_BITS || v2.clusterBits > QCOW2_MAX_CLUSTER_BITS) {
    throw formatError(
      "QCOW2_BAD_CLUSTER_BITS",
      `cluster_bits ${v2.clusterBits} outside [${QCOW2_MIN_CLUSTER_BITS}, ${QCOW2_MAX_CLUSTER_BITS}] in ${source.name}`,
      { clusterBits: v2.clusterBits },
    );
  }
  const clusterBits = v2.clusterBits;
  const clusterSizeBytes = 2 ** clusterBits;

  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = QCOW2_V2_REFCOUNT_ORDER;
  let headerLengthBytes = QCOW2_V2_HEADER_BYTES;
  let compressionType = COMPRESSION_TYPE_ZLIB;
  if (version === QCOW2_VERSION_3) {
    const tail = HeaderV3Tail.get(await readExact(source, 0, QCOW2_V3_MIN_HEADER_BYTES, FORMAT_NAME, "v3 header"), 0);
    ({ incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder, headerLengthBytes } = tail);
    // Ref: qcow2 spec §"Header": header_length is at least 104 and a multiple of 8; the header
    // must also leave cluster 0 room for its own end.
    if (
      headerLengthBytes < QCOW2_V3_MIN_HEADER_BYTES ||
      headerLengthBytes % EXTENSION_ALIGNMENT_BYTES !== 0 ||
      headerLengthBytes > clusterSizeBytes
    ) {
      throw formatError("QCOW2_BAD_HEADER_LENGTH", `header_length ${headerLengthBytes} is invalid in ${source.name}`, {
        headerLengthBytes,
      });
    }
    if (headerLengthBytes > QCOW2_COMPRESSION_TYPE_OFFSET_BYTES) {
      const raw = await readExact(source, QCOW2_COMPRESSION_TYPE_OFFSET_BYTES, 1, FORMAT_NAME, "compression type");
      compressionType = CompressionTypeField.get(raw, 0);
    }
  }

  if (v2.cryptMethod !== 0) {
    throw new NotCapableError("QCOW2_ENCRYPTED", `${FORMAT_NAME}: ${source.name} is encrypted (crypt_method ${v2.cryptMethod})`, {
      context: { cryptMethod: v2.cryptMethod },
    });
  }
  if (bit(incompatibleFeatures, INCOMPAT_CORRUPT_BIT)) {
    throw formatError("QCOW2_CORRUPT", `${source.name} is marked corrupt (incompatible bit 1); run qemu-img check -r`, {
      incompatibleFeatures,
    });
  }
  if (bit(incompatibleFeatures, INCOMPAT_EXTERNAL_DATA_FILE_BIT)) {
    throw new NotCapableError(
      "QCOW2_EXTERNAL_DATA_FILE",
      `${FORMAT_NAME}: ${source.name} keeps its data in an external data file, which is not supported`,
      { context: { incompatibleFeatures } },
    );
  }
  const unknown = incompatibleFeatures & ~INCOMPAT_KNOWN_MASK;
  if (unknown !== 0n) {
    throw new NotCapableError(
      "QCOW2_INCOMPATIBLE_FEATURE",
      `${FORMAT_NAME}: ${source.name} uses unknown incompatible features ${hex(unknown)}`,
      { context: { incompatibleFeatures } },
    );
  }
  const compressionBit = bit(incompatibleFeatures, INCOMPAT_COMPRESSION_TYPE_BIT);
  if (compressionType !== COMPRESSION_TYPE_ZLIB && compressionType !== COMPRESSION_TYPE_ZSTD) {
    throw new NotCapableError(
      "QCOW2_COMPRESSION_TYPE",
      `${FORMAT_NAME}: unknown compression type ${compressionType} in ${source.name}`,
      { context: { compressionType } },
    );
  }
  if (compressionType !== COMPRESSION_TYPE_ZLIB && !compressionBit) {
    // Ref: qcow2 spec §"Header" incompatible bit 3: a non-zlib type must set the bit, so old
    // readers refuse the image rather than inflate zstd data as deflate.
    throw formatError("QCOW2_COMPRESSION_TYPE", `compression type ${compressionType} without incompatible bit 3 in ${source.name}`, {
      compressionType,
    });
  }
  if (refcountOrder > QCOW2_MAX_REFCOUNT_ORDER) {
    throw formatError("QCOW2_BAD_REFCOUNT_ORDER", `refcount_order ${refcountOrder} exceeds ${QCOW2_MAX_REFCOUNT_ORDER} in ${source.name}`, {
      refcountOrder,
    });
  }
  const extendedL2 = bit(incompatibleFeatures, INCOMPAT_EXTENDED_L2_BIT);
  if (extendedL2 && clusterBits < EXTENDED_L2_MIN_CLUSTER_BITS) {
    throw formatError(
      "QCOW2_BAD_CLUSTER_BITS",
      `extended L2 entries need clusters of at least ${2 ** EXTENDED_L2_MIN_CLUSTER_BITS} bytes, ${source.name} has ${clusterSizeBytes}`,
      { clusterBits },
    );
  }

  if (v2.sizeBytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw formatError("QCOW2_SIZE_TOO_LARGE", `virtual size ${v2.sizeBytes} exceeds 2^53 in ${source.name}`, { sizeBytes: v2.sizeBytes });
  }
  const virtualSizeBytes = Number(v2.sizeBytes);
  const l2EntryBytes = extendedL2 ? EXTENDED_L2_ENTRY_BYTES : L2_ENTRY_BYTES;
  const l2CoverageBytes = (clusterSizeBytes / l2EntryBytes) * clusterSizeBytes;
  const l1NeededEntries = Math.ceil(virtualSizeBytes / l2CoverageBytes);
  const l1Bytes = v2.l1Entries * QCOW2_L1_ENTRY_BYTES;
  if (l1Bytes > QCOW2_MAX_L1_BYTES) {
    throw formatError("QCOW2_L1_TOO_LARGE", `L1 table of ${v2.l1Entries} entries exceeds ${QCOW2_MAX_L1_BYTES} bytes in ${source.name}`, {
      l1Entries: v2.l1Entries,
    });
  }
  if (v2.l1Entries < l1NeededEntries) {
    throw formatError(
      "QCOW2_L1_TOO_SMALL",
      `L1 table of ${v2.l1Entries} entries cannot map virtual size ${virtualSizeBytes} (needs ${l1NeededEntries}) in ${source.name}`,
      { l1Entries: v2.l1Entries, l1NeededEntries },
    );
  }
  const l1TableOffsetBytes = checkedL1Offset(v2.l1TableOffsetBytes, l1Bytes, clusterSizeBytes, fileSizeBytes, source.name);
  // This reader never reads refcounts, but a misaligned table means the header is not qcow2's.
  if (v2.refcountTableOffsetBytes % BigInt(clusterSizeBytes) !== 0n) {
    throw formatError("QCOW2_UNALIGNED_OFFSET", `refcount table offset ${hex(v2.refcountTableOffsetBytes)} is not cluster-aligned in ${source.name}`, {
      offsetBytes: v2.refcountTableOffsetBytes,
    });
  }

  const headerCluster = await readExact(source, 0, Math.min(clusterSizeBytes, fileSizeBytes), FORMAT_NAME, "header cluster");
  let backingFileName: string | undefined;
  let extensionsEndBytes = headerCluster.length;
  if (v2.backingFileOffsetBytes !== 0n) {
    const nameOffset = v2.backingFileOffsetBytes;
    const nameLength = v2.backingFileNameBytes;
    // Ref: qcow2 spec §"Header": the name is not NUL-terminated, at most 1023 bytes, and QEMU
    // keeps it inside cluster 0.
    if (
      nameLength > QCOW2_MAX_BACKING_NAME_BYTES ||
      nameOffset < BigInt(headerLengthBytes) ||
      nameOffset + BigInt(nameLength) > BigInt(headerCluster.length)
    ) {
      throw formatError(
        "QCOW2_BAD_BACKING_NAME",
        `backing file name (offset ${hex(nameOffset)}, ${nameLength} bytes) does not lie in cluster 0 of ${source.name}`,
        { backingFileOffsetBytes: nameOffset, backingFileNameBytes: nameLength },
      );
    }
    backingFileName = headerCluster.toString("utf8", Number(nameOffset), Number(nameOffset) + nameLength);
    extensionsEndBytes = Number(nameOffset);
  }

  let backingFormat: string | undefined;
  // Ref: qcow2 spec §"Header extensions": they follow the header and end with type 0. Each step
  // moves forward by at least 8 bytes and stops at the end of cluster 0, so hostile lengths
  // cannot loop.
  let positionBytes = headerLengthBytes;
  for (;;) {
    if (positionBytes + HeaderExtension.len > extensionsEndBytes) {
      // Old writers put the backing file name straight after the header, with no end marker.
      if (positionBytes === extensionsEndBytes) break;
      throw formatError("QCOW2_BAD_EXTENSION", `header extensions run past ${hex(extensionsEndBytes)} in ${source.name}`, {
        positionBytes,
      });
    }
    const extension = HeaderExtension.get(headerCluster, positionBytes);
    if (extension.type === EXTENSION_END) break;
    const dataOffsetBytes = positionBytes + HeaderExtension.len;
    if (dataOffsetBytes + extension.lengthBytes > extensionsEndBytes) {
      throw formatError(
        "QCOW2_BAD_EXTENSION",
        `header extension ${hex(extension.type)} at ${hex(positionBytes)} (length ${extension.lengthBytes}) runs past ${hex(extensionsEndBytes)} in ${source.name}`,
        { type: extension.type, positionBytes, lengthBytes: extension.lengthBytes },
      );
    }
    if (extension.type === EXTENSION_BACKING_FORMAT) {
      backingFormat = headerCluster.toString("utf8", dataOffsetBytes, dataOffsetBytes + extension.lengthBytes);
    }
    positionBytes = dataOffsetBytes + alignUp(extension.lengthBytes, EXTENSION_ALIGNMENT_BYTES);
  }

  return {
    version,
    clusterBits,
    clusterSizeBytes,
    virtualSizeBytes,
    l1Entries: v2.l1Entries,
    l1TableOffsetBytes,
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLengthBytes,
    compressionType,
    extendedL2,
    ...(backingFileName === undefined ? {} : { backingFileName }),
    ...(backingFormat === undefined ? {} : { backingFormat }),
  };
}

/** Checks the L1 table's place: cluster-aligned, clear of the header, inside the file. */
function checkedL1Offset(offset: bigint, lengthBytes: number, clusterSizeBytes: number, fileSizeBytes: number, name: string): number {
  if (offset % BigInt(clusterSizeBytes) !== 0n) {
    throw formatError("QCOW2_UNALIGNED_OFFSET", `L1 table offset ${hex(offset)} is not cluster-aligned in ${name}`, {
      offsetBytes: offset,
    });
  }
  // An empty L1 (virtual size 0) is never read, so its offset does not matter.
  if (lengthBytes === 0) return 0;
  if (offset < BigInt(clusterSizeBytes)) {
    throw formatError("QCOW2_L1_OVERLAPS_HEADER", `L1 table at ${hex(offset)} overlaps the header cluster in ${name}`, {
      offsetBytes: offset,
    });
  }
  if (offset + BigInt(lengthBytes) > BigInt(fileSizeBytes)) {
    throw formatError(
      "QCOW2_L1_PAST_EOF",
      `L1 table at ${hex(offset)} (+${lengthBytes}) lies past end of file (size ${hex(fileSizeBytes)}) in ${name}`,
      { offsetBytes: offset, lengthBytes, fileSizeBytes },
    );
  }
  return Number(offset);
}

/** Small LRU map; Map iteration order is insertion order, so the first key is the oldest. */
class Lru<V> {
  private readonly entries = new Map<number, V>();
  private readonly capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
  }
  get(key: number): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }
  set(key: number, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
  }
  delete(key: number): void {
    this.entries.delete(key);
  }
}

/**
 * Opens a backing file named by an image through `openRelative`: qcow2 (recursively, up to
 * MAX_BACKING_CHAIN_DEPTH) or raw. Raw is used only when the image names it in its backing
 * format extension, because probing a raw backing file is unsafe (QEMU refuses it too).
 */
async function openBackingFile(
  header: Qcow2Header,
  imageName: string,
  openRelative: NonNullable<OpenOptions["openRelative"]>,
  depth: number,
): Promise<DiskSource> {
  const name = header.backingFileName ?? "";
  if (depth > MAX_BACKING_CHAIN_DEPTH) {
    throw formatError("QCOW2_BACKING_CHAIN_TOO_DEEP", `backing chain of ${imageName} is deeper than ${MAX_BACKING_CHAIN_DEPTH} (a loop?)`, {
      backingFile: name,
    });
  }
  const bytes = await openRelative(name);
  try {
    const head = await bytes.read(0, 8);
    const looksQcow2 = head.length === 8 && head.readUInt32BE(0) === QCOW2_MAGIC;
    const format = header.backingFormat ?? (looksQcow2 ? FORMAT_NAME : undefined);
    if (format === FORMAT_NAME) return await openChain(bytes, { openRelative }, depth);
    if (format === "raw") return openRaw(bytes);
    throw new NotCapableError(
      "QCOW2_BACKING_FORMAT",
      `${FORMAT_NAME}: backing file "${name}" of ${imageName} is ${format === undefined ? "of unnamed format" : `"${format}"`}; ` +
        "open it and pass it as options.backing",
      { context: { backingFile: name, backingFormat: format } },
    );
  } catch (err) {
    await bytes.close();
    throw err;
  }
}

export function openQcow2(source: ByteSource, options: OpenOptions = {}): Promise<Qcow2Source> {
  return openChain(source, options, 0);
}

async function openChain(source: ByteSource, options: OpenOptions, depth: number): Promise<Qcow2Source> {
  const header = await readHeader(source);
  if (header.backingFileName !== undefined && options.backing === undefined && options.openRelative === undefined) {
    throw new NotCapableError(
      "QCOW2_BACKING_FILE",
      `${FORMAT_NAME}: ${source.name} has backing file "${header.backingFileName}"; open it and pass it as options.backing`,
      { context: { backingFile: header.backingFileName, backingFormat: header.backingFormat } },
    );
  }
  const fileSizeBytes = source.sizeBytes;
  const { clusterSizeBytes, clusterBits, virtualSizeBytes, extendedL2 } = header;
  const l2EntryBytes = extendedL2 ? EXTENDED_L2_ENTRY_BYTES : L2_ENTRY_BYTES;
  const l2Entries = clusterSizeBytes / l2EntryBytes;
  const l2CoverageBytes = l2Entries * clusterSizeBytes;
  const l1NeededEntries = Math.ceil(virtualSizeBytes / l2CoverageBytes);
  // Only the entries that map the virtual disk matter; QEMU may leave spare ones for growth.
  const l1 = await readExact(source, header.l1TableOffsetBytes, l1NeededEntries * QCOW2_L1_ENTRY_BYTES, FORMAT_NAME, "L1 table");
  const l1EndBytes = header.l1TableOffsetBytes + header.l1Entries * QCOW2_L1_ENTRY_BYTES;
  // Each allocated L1 entry needs its own L2 cluster in the file. More entries than the file has
  // clusters means L2 tables are shared, which would let a small file make extents() walk
  // millions of tables; refusing it bounds that work by the file size.
  let allocatedL1Entries = 0;
  for (let at = 0; at < l1.length; at += QCOW2_L1_ENTRY_BYTES) {
    if ((l1.readUInt32BE(at) & L1_OFFSET_HIGH_MASK) !== 0 || (l1.readUInt32BE(at + 4) & L1_OFFSET_LOW_MASK) !== 0) allocatedL1Entries++;
  }
  if (allocatedL1Entries > fileSizeBytes / clusterSizeBytes) {
    throw formatError(
      "QCOW2_L2_TABLES_EXCEED_FILE",
      `${allocatedL1Entries} L1 entries point at L2 tables, but ${source.name} holds only ${Math.floor(fileSizeBytes / clusterSizeBytes)} clusters`,
      { allocatedL1Entries, fileSizeBytes },
    );
  }
  const subclusterBytes = clusterSizeBytes / SUBCLUSTERS_PER_CLUSTER;
  const compressedBits = compressedOffsetBits(clusterBits);
  const compressedOffsetMask = (1n << BigInt(compressedBits)) - 1n;
  const compressedSectorsMask = (1n << BigInt(62 - compressedBits)) - 1n;

  const l2Cache = new Lru<Promise<Buffer>>(Math.max(1, Math.floor(L2_CACHE_BUDGET_BYTES / clusterSizeBytes)));
  const compressedCache = new Lru<Promise<Buffer>>(COMPRESSED_CACHE_CLUSTERS);

  // Opened last, once this image is known to be sound. A backing disk we open is ours to close;
  // one the caller passed stays the caller's.
  let backing: DiskSource | undefined;
  let ownedBacking: DiskSource | undefined;
  if (header.backingFileName !== undefined) {
    backing = options.backing;
    if (backing === undefined && options.openRelative !== undefined) {
      ownedBacking = await openBackingFile(header, source.name, options.openRelative, depth + 1);
      backing = ownedBacking;
    }
  }
  const backingSizeBytes = backing?.virtualSizeBytes ?? 0;

  function l2OffsetOf(l1Index: number): number {
    const high = l1.readUInt32BE(l1Index * QCOW2_L1_ENTRY_BYTES);
    const low = l1.readUInt32BE(l1Index * QCOW2_L1_ENTRY_BYTES + 4);
    return (high & L1_OFFSET_HIGH_MASK) * TWO_POW_32 + ((low & L1_OFFSET_LOW_MASK) >>> 0);
  }

  function loadL2(l1Index: number, l2OffsetBytes: number): Promise<Buffer> {
    const cached = l2Cache.get(l2OffsetBytes);
    if (cached !== undefined) return cached;
    const context = { l1Index, offsetBytes: l2OffsetBytes, fileSizeBytes };
    if (l2OffsetBytes % clusterSizeBytes !== 0) {
      throw formatError("QCOW2_UNALIGNED_OFFSET", `L1 entry ${l1Index} points at unaligned L2 table ${hex(l2OffsetBytes)}`, context);
    }
    if (l2OffsetBytes + clusterSizeBytes > fileSizeBytes) {
      throw formatError(
        "QCOW2_L2_PAST_EOF",
        `L1 entry ${l1Index} points past end of file (offset ${hex(l2OffsetBytes)}, file ${hex(fileSizeBytes)})`,
        context,
      );
    }
    if (l2OffsetBytes < clusterSizeBytes || (l2OffsetBytes < l1EndBytes && l2OffsetBytes + clusterSizeBytes > header.l1TableOffsetBytes)) {
      throw formatError("QCOW2_L2_OVERLAPS_METADATA", `L1 entry ${l1Index} points at ${hex(l2OffsetBytes)}, inside the header or L1 table`, context);
    }
    const loading = readExact(source, l2OffsetBytes, clusterSizeBytes, FORMAT_NAME, `L2 table ${l1Index}`);
    l2Cache.set(l2OffsetBytes, loading);
    loading.catch(() => l2Cache.delete(l2OffsetBytes));
    return loading;
  }

  function clusterPastEof(clusterIndex: number, hostOffsetBytes: number): FormatError {
    return formatError(
      "QCOW2_CLUSTER_PAST_EOF",
      `L2 entry for cluster ${clusterIndex} points past end of file (offset ${hex(hostOffsetBytes)}, file ${hex(fileSizeBytes)})`,
      { clusterIndex, offsetBytes: hostOffsetBytes, fileSizeBytes },
    );
  }

  /**
   * Reports the runs of one cluster to `sink`, from `fromBytes` to `toBytes` within the cluster.
   * Ref: qcow2 spec §"Cluster mapping" and §"Extended L2 Entries".
   */
  function mapCluster(table: Buffer, clusterIndex: number, fromBytes: number, toBytes: number, sink: SegmentSink): void {
    const entryOffset = (clusterIndex % l2Entries) * l2EntryBytes;
    const high = table.readUInt32BE(entryOffset);
    const low = table.readUInt32BE(entryOffset + 4);
    if ((high & L2_COMPRESSED_HIGH_FLAG) !== 0) {
      if (extendedL2 && (table.readUInt32BE(entryOffset + 8) !== 0 || table.readUInt32BE(entryOffset + 12) !== 0)) {
        throw formatError("QCOW2_BAD_L2_ENTRY", `compressed cluster ${clusterIndex} has a non-zero subcluster bitmap`, { clusterIndex });
      }
      const entry = (BigInt(high & ~ENTRY_COPIED_HIGH_FLAG & ~L2_COMPRESSED_HIGH_FLAG) << 32n) | BigInt(low >>> 0);
      const hostOffset = entry & compressedOffsetMask;
      const extraSectors = (entry >> BigInt(compressedBits)) & compressedSectorsMask;
      if (hostOffset >= BigInt(fileSizeBytes)) throw clusterPastEof(clusterIndex, Number(hostOffset));
      const hostOffsetBytes = Number(hostOffset);
      // Ref: qcow2 spec §"Compressed Clusters Descriptor": the data spans the sector holding the
      // offset plus `extraSectors` more; the file may end inside the last one.
      const spanBytes = (Number(extraSectors) + 1) * COMPRESSED_SECTOR_BYTES - (hostOffsetBytes % COMPRESSED_SECTOR_BYTES);
      sink(fromBytes, toBytes - fromBytes, SEG_COMPRESSED, hostOffsetBytes, Math.min(spanBytes, fileSizeBytes - hostOffsetBytes));
      return;
    }
    const hostOffsetBytes = (high & L2_STANDARD_OFFSET_HIGH_MASK) * TWO_POW_32 + ((low & L2_STANDARD_OFFSET_LOW_MASK) >>> 0);
    if (!extendedL2) {
      if ((low & L2_ZERO_LOW_FLAG) !== 0) sink(fromBytes, toBytes - fromBytes, SEG_ZERO, 0, 0);
      else if (hostOffsetBytes === 0) sink(fromBytes, toBytes - fromBytes, SEG_UNALLOCATED, 0, 0);
      else {
        checkDataCluster(clusterIndex, hostOffsetBytes);
        sink(fromBytes, toBytes - fromBytes, SEG_DATA, hostOffsetBytes + fromBytes, 0);
      }
      return;
    }
    const zeroBits = table.readUInt32BE(entryOffset + 8);
    const allocatedBits = table.readUInt32BE(entryOffset + 12);
    if ((zeroBits & allocatedBits) !== 0 || (hostOffsetBytes === 0 && allocatedBits !== 0)) {
      throw formatError(
        "QCOW2_BAD_L2_ENTRY",
        `cluster ${clusterIndex} has an invalid subcluster bitmap (allocated ${hex(allocatedBits >>> 0)}, zero ${hex(zeroBits >>> 0)})`,
        { clusterIndex },
      );
    }
    if (allocatedBits !== 0) checkDataCluster(clusterIndex, hostOffsetBytes);
    let runStart = fromBytes;
    let runKind: SegmentKind | undefined;
    const first = Math.floor(fromBytes / subclusterBytes);
    const last = Math.ceil(toBytes / subclusterBytes);
    for (let sub = first; sub < last; sub++) {
      const mask = 1 << sub;
      const kind = (allocatedBits & mask) !== 0 ? SEG_DATA : (zeroBits & mask) !== 0 ? SEG_ZERO : SEG_UNALLOCATED;
      const start = Math.max(fromBytes, sub * subclusterBytes);
      if (runKind !== undefined && kind !== runKind) {
        sink(runStart, start - runStart, runKind, runKind === SEG_DATA ? hostOffsetBytes + runStart : 0, 0);
        runStart = start;
      }
      runKind = kind;
    }
    if (runKind !== undefined) sink(runStart, toBytes - runStart, runKind, runKind === SEG_DATA ? hostOffsetBytes + runStart : 0, 0);
  }

  function checkDataCluster(clusterIndex: number, hostOffsetBytes: number): void {
    if (hostOffsetBytes % clusterSizeBytes !== 0) {
      throw formatError("QCOW2_UNALIGNED_OFFSET", `L2 entry for cluster ${clusterIndex} is unaligned (${hex(hostOffsetBytes)})`, {
        clusterIndex,
        offsetBytes: hostOffsetBytes,
      });
    }
    // QEMU reads a data cluster that ends past EOF as zero-padded (a file cut inside its last
    // cluster), so only a cluster starting at or past EOF is refused.
    if (hostOffsetBytes >= fileSizeBytes) throw clusterPastEof(clusterIndex, hostOffsetBytes);
  }

  function unallocatedKind(): Extent["kind"] {
    return backing === undefined ? "zero" : "data";
  }

  async function* extents(): AsyncGenerator<Extent> {
    let pendingStart = 0;
    let pendingLength = 0;
    let pendingKind: Extent["kind"] = "zero";
    const ready: Extent[] = [];
    const push = (offsetBytes: number, lengthBytes: number, kind: Extent["kind"]): void => {
      if (lengthBytes === 0) return;
      if (kind === pendingKind && pendingStart + pendingLength === offsetBytes) {
        pendingLength += lengthBytes;
        return;
      }
      if (pendingLength > 0) ready.push({ offsetBytes: pendingStart, lengthBytes: pendingLength, kind: pendingKind });
      pendingStart = offsetBytes;
      pendingLength = lengthBytes;
      pendingKind = kind;
    };
    // Unallocated ranges read from the backing disk up to its end, and as zeros past it.
    const pushUnallocated = (offsetBytes: number, lengthBytes: number): void => {
      const backedBytes = Math.max(0, Math.min(lengthBytes, backingSizeBytes - offsetBytes));
      push(offsetBytes, backedBytes, unallocatedKind());
      push(offsetBytes + backedBytes, lengthBytes - backedBytes, "zero");
    };
    let clusterStart = 0;
    const pushSegment: SegmentSink = (from, length, kind) => {
      if (kind === SEG_UNALLOCATED) pushUnallocated(clusterStart + from, length);
      else push(clusterStart + from, length, kind === SEG_ZERO ? "zero" : "data");
    };
    for (let l1Index = 0; l1Index < l1NeededEntries; l1Index++) {
      const rangeStart = l1Index * l2CoverageBytes;
      const rangeEnd = Math.min(virtualSizeBytes, rangeStart + l2CoverageBytes);
      const l2OffsetBytes = l2OffsetOf(l1Index);
      if (l2OffsetBytes === 0) {
        pushUnallocated(rangeStart, rangeEnd - rangeStart);
      } else {
        const table = await loadL2(l1Index, l2OffsetBytes);
        for (clusterStart = rangeStart; clusterStart < rangeEnd; clusterStart += clusterSizeBytes) {
          const clusterEnd = Math.min(rangeEnd, clusterStart + clusterSizeBytes);
          mapCluster(table, clusterStart / clusterSizeBytes, 0, clusterEnd - clusterStart, pushSegment);
        }
      }
      yield* ready;
      ready.length = 0;
    }
    if (pendingLength > 0) yield { offsetBytes: pendingStart, lengthBytes: pendingLength, kind: pendingKind };
  }

  /** Reads host bytes; a data cluster cut short by the end of the file reads as zero-padded. */
  async function readHost(hostOffsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    const availableBytes = Math.min(lengthBytes, fileSizeBytes - hostOffsetBytes);
    const data = await readExact(source, hostOffsetBytes, availableBytes, FORMAT_NAME, "data cluster", into);
    if (availableBytes === lengthBytes) return data;
    const padded = Buffer.alloc(lengthBytes);
    data.copy(padded);
    return padded;
  }

  async function inflateCluster(hostOffsetBytes: number, compressedLengthBytes: number, clusterIndex: number): Promise<Buffer> {
    const compressed = await readExact(source, hostOffsetBytes, compressedLengthBytes, FORMAT_NAME, `compressed cluster ${clusterIndex}`);
    const context = { clusterIndex, offsetBytes: hostOffsetBytes, compressedLengthBytes };
    let output: Buffer;
    try {
      if (header.compressionType === COMPRESSION_TYPE_ZSTD) {
        const frameLength = zstdFrameLength(compressed);
        if (frameLength < 0) throw new Error("no complete zstd frame");
        output = await zstdDecompress(compressed.subarray(0, frameLength), { maxOutputLength: clusterSizeBytes });
      } else {
        // Z_SYNC_FLUSH instead of Z_FINISH: QEMU accepts a stream that fills the cluster even if
        // its end marker is missing, and the span may also hold the next cluster's first bytes.
        output = await inflateRaw(compressed, { maxOutputLength: clusterSizeBytes, finishFlush: zlib.constants.Z_SYNC_FLUSH, chunkSize: Math.max(clusterSizeBytes, 64) });
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        throw new FormatError(
          "QCOW2_COMPRESSED_OVERFLOW",
          `${FORMAT_NAME}: compressed cluster ${clusterIndex} at ${hex(hostOffsetBytes)} inflates beyond the cluster size ${clusterSizeBytes}`,
          { context, cause: err },
        );
      }
      throw new FormatError(
        "QCOW2_BAD_COMPRESSED_CLUSTER",
        `${FORMAT_NAME}: compressed cluster ${clusterIndex} at ${hex(hostOffsetBytes)} does not decompress: ${(err as Error).message}`,
        { context, cause: err },
      );
    }
    if (output.length !== clusterSizeBytes) {
      throw new FormatError(
        "QCOW2_BAD_COMPRESSED_CLUSTER",
        `${FORMAT_NAME}: compressed cluster ${clusterIndex} at ${hex(hostOffsetBytes)} inflates to ${output.length} bytes, not ${clusterSizeBytes}`,
        { context },
      );
    }
    return output;
  }

  function compressedCluster(hostOffsetBytes: number, compressedLengthBytes: number, clusterIndex: number): Promise<Buffer> {
    const cached = compressedCache.get(hostOffsetBytes);
    if (cached !== undefined) return cached;
    const inflating = inflateCluster(hostOffsetBytes, compressedLengthBytes, clusterIndex);
    compressedCache.set(hostOffsetBytes, inflating);
    inflating.catch(() => compressedCache.delete(hostOffsetBytes));
    return inflating;
  }

  async function readBacking(out: Buffer, destBytes: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    const backedBytes = Math.max(0, Math.min(lengthBytes, backingSizeBytes - offsetBytes));
    if (backing !== undefined && backedBytes > 0) (await backing.read(offsetBytes, backedBytes)).copy(out, destBytes);
    out.fill(0, destBytes + backedBytes, destBytes + lengthBytes);
  }

  interface ReadOp {
    kind: SegmentKind;
    destBytes: number;
    lengthBytes: number;
    hostOffsetBytes: number;
    compressedLengthBytes: number;
    clusterIndex: number;
    inClusterOffsetBytes: number;
  }

  /**
   * The reads a range takes, merging runs that are contiguous both in the disk and in the file,
   * so a run of clusters laid out in order costs one read.
   */
  async function plan(offsetBytes: number, lengthBytes: number): Promise<ReadOp[]> {
    const ops: ReadOp[] = [];
    const endBytes = offsetBytes + lengthBytes;
    let position = offsetBytes;
    const add = (kind: SegmentKind, destBytes: number, length: number, host: number, compressedLength: number, clusterIndex: number, inCluster: number): void => {
      const last = ops[ops.length - 1];
      if (
        last !== undefined &&
        last.kind === kind &&
        kind !== SEG_COMPRESSED &&
        (kind !== SEG_DATA || last.hostOffsetBytes + last.lengthBytes === host)
      ) {
        last.lengthBytes += length;
        return;
      }
      ops.push({ kind, destBytes, lengthBytes: length, hostOffsetBytes: host, compressedLengthBytes: compressedLength, clusterIndex, inClusterOffsetBytes: inCluster });
    };
    while (position < endBytes) {
      const l1Index = Math.floor(position / l2CoverageBytes);
      const tableEnd = Math.min(endBytes, (l1Index + 1) * l2CoverageBytes);
      const l2OffsetBytes = l2OffsetOf(l1Index);
      if (l2OffsetBytes === 0) {
        add(SEG_UNALLOCATED, position - offsetBytes, tableEnd - position, 0, 0, 0, 0);
        position = tableEnd;
        continue;
      }
      const table = await loadL2(l1Index, l2OffsetBytes);
      while (position < tableEnd) {
        const clusterIndex = Math.floor(position / clusterSizeBytes);
        const clusterStart = clusterIndex * clusterSizeBytes;
        const clusterEnd = Math.min(tableEnd, clusterStart + clusterSizeBytes);
        mapCluster(table, clusterIndex, position - clusterStart, clusterEnd - clusterStart, (from, length, kind, host, compressedLength) => {
          add(kind, clusterStart + from - offsetBytes, length, host, compressedLength, clusterIndex, from);
        });
        position = clusterEnd;
      }
    }

    return ops;
  }

  /** The range as runs of the image file, when it is all uncompressed clusters of this image. */
  async function fileSpan(offsetBytes: number, lengthBytes: number): Promise<FileSpan | undefined> {
    const fd = source.fd;
    if (fd === undefined || offsetBytes < 0 || lengthBytes <= 0 || offsetBytes + lengthBytes > virtualSizeBytes) return undefined;
    const ops = await plan(offsetBytes, lengthBytes);
    if (ops.some((op) => op.kind !== SEG_DATA || op.hostOffsetBytes + op.lengthBytes > fileSizeBytes)) return undefined;
    return new FileSpan(ops.map((op) => ({ fd, fileOffsetBytes: op.hostOffsetBytes, lengthBytes: op.lengthBytes })));
  }

  async function read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > virtualSizeBytes) {
      throw new InvalidArgsError(
        "READ_OUT_OF_RANGE",
        `${FORMAT_NAME}: read at ${offsetBytes} (+${lengthBytes}) lies outside the virtual disk (${virtualSizeBytes} bytes) of ${source.name}`,
        { context: { offsetBytes, lengthBytes, virtualSizeBytes } },
      );
    }
    const ops = await plan(offsetBytes, lengthBytes);
    const only = ops[0];
    if (ops.length === 1 && only !== undefined && only.kind === SEG_DATA) return readHost(only.hostOffsetBytes, lengthBytes, into);
    const out = into !== undefined && into.length >= lengthBytes ? into.subarray(0, lengthBytes) : Buffer.allocUnsafe(lengthBytes);
    const run = async (op: ReadOp): Promise<void> => {
      switch (op.kind) {
        case SEG_DATA:
          (await readHost(op.hostOffsetBytes, op.lengthBytes)).copy(out, op.destBytes);
          return;
        case SEG_ZERO:
          out.fill(0, op.destBytes, op.destBytes + op.lengthBytes);
          return;
        case SEG_UNALLOCATED:
          await readBacking(out, op.destBytes, offsetBytes + op.destBytes, op.lengthBytes);
          return;
        case SEG_COMPRESSED: {
          const cluster = await compressedCluster(op.hostOffsetBytes, op.compressedLengthBytes, op.clusterIndex);
          cluster.copy(out, op.destBytes, op.inClusterOffsetBytes, op.inClusterOffsetBytes + op.lengthBytes);
          return;
        }
      }
    };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ops.length) {
        const op = ops[next++];
        if (op !== undefined) await run(op);
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, ops.length) }, worker));
    return out;
  }

  return {
    format: FORMAT_NAME,
    subformat: header.version === QCOW2_VERSION_2 ? "v2" : "v3",
    virtualSizeBytes,
    header,
    dirty: bit(header.incompatibleFeatures, INCOMPAT_DIRTY_BIT),
    extents,
    read,
    fileSpan,
    async close() {
      await source.close();
      await ownedBacking?.close();
    },
  };
}
