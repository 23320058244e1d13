// VMDK reader: monolithicSparse and streamOptimized files (a sparse extent with an embedded
// descriptor), and text descriptors whose extents are sparse (hosted, or ESXi's COWD deltas),
// flat (FLAT, VMFS) or ZERO files.
//
// Hand-written because no maintained JavaScript package reads VMDK with bounded memory,
// streaming extents and compressed grains; the semantics follow VMware "Virtual Disk Format 5.0".
// The source is only ever read.
import { FormatError, NotCapableError } from "../../../errors.ts";
import { coalesce } from "../../extents.ts";
import type { OpenOptions } from "../../format.ts";
import { readExact } from "../../io.ts";
import type { ByteSource, DiskSource, Extent } from "../../types.ts";
import { parseDescriptor, VMDK_MAX_DESCRIPTOR_BYTES, VMDK_NO_PARENT_CID, type Descriptor, type DescriptorExtent } from "./descriptor.ts";
import { VMDK_COWD_MAGIC, VMDK_FLAG_COMPRESSED, VMDK_SECTOR_BYTES, VMDK_SPARSE_MAGIC } from "./layout.ts";
import { parseCowdHeader } from "./cowd.ts";
import { parseSparseHeader, SparseExtent, type ParentRange } from "./sparse-extent.ts";

/** One piece of the virtual disk, addressed relative to its own start. */
interface ExtentReader {
  readonly sizeBytes: number;
  extents(): AsyncIterable<Extent>;
  read(offsetBytes: number, lengthBytes: number, out: Buffer, outOffset: number): Promise<void>;
  close(): Promise<void>;
}

class FlatExtent implements ExtentReader {
  readonly sizeBytes: number;
  private readonly source: ByteSource;
  private readonly baseBytes: number;

  constructor(source: ByteSource, baseBytes: number, sizeBytes: number) {
    this.source = source;
    this.baseBytes = baseBytes;
    this.sizeBytes = sizeBytes;
  }

  async *extents(): AsyncGenerator<Extent> {
    yield { offsetBytes: 0, lengthBytes: this.sizeBytes, kind: "data" };
  }

  async read(offsetBytes: number, lengthBytes: number, out: Buffer, outOffset: number): Promise<void> {
    const data = await readExact(this.source, this.baseBytes + offsetBytes, lengthBytes, "vmdk", `flat extent ${this.source.name}`);
    data.copy(out, outOffset);
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

class ZeroExtent implements ExtentReader {
  readonly sizeBytes: number;
  constructor(sizeBytes: number) {
    this.sizeBytes = sizeBytes;
  }
  async *extents(): AsyncGenerator<Extent> {
    yield { offsetBytes: 0, lengthBytes: this.sizeBytes, kind: "zero" };
  }
  async read(_offsetBytes: number, lengthBytes: number, out: Buffer, outOffset: number): Promise<void> {
    out.fill(0, outOffset, outOffset + lengthBytes);
  }
  async close(): Promise<void> {}
}

/**
 * A delta disk (VDF5 §"Delta Links") reads its unallocated grains from its parent. Without
 * `options.backing` it is refused; with it, the caller's parent disk is used as is (its CID is
 * not checked, because a DiskSource does not expose one).
 */
function parentOf(descriptor: Descriptor, name: string, options: OpenOptions): DiskSource | undefined {
  const parentCid = descriptor.parentCid?.toLowerCase();
  const differencing = (parentCid !== undefined && parentCid !== VMDK_NO_PARENT_CID) || descriptor.parentFileNameHint !== undefined;
  if (!differencing) return undefined;
  if (options.backing !== undefined) return options.backing;
  throw new NotCapableError(
    "VMDK_DIFFERENCING",
    `vmdk: ${name} is a differencing disk (parentCID ${descriptor.parentCid ?? "?"}, parent "${descriptor.parentFileNameHint ?? "?"}"); open its parent and pass it as options.backing`,
    { context: { parentCid: descriptor.parentCid, parentFileNameHint: descriptor.parentFileNameHint } },
  );
}

/**
 * Extent files must stay beside the descriptor: a relative path without ".." segments. Absolute
 * paths (POSIX, UNC or drive letters) and escapes would let an image read any file on the host.
 */
export function checkExtentPath(fileName: string, descriptorName: string): void {
  const segments = fileName.split(/[/\\]/);
  const escapes =
    fileName === "" ||
    fileName.includes("\0") ||
    fileName.startsWith("/") ||
    fileName.startsWith("\\") ||
    /^[A-Za-z]:/.test(fileName) ||
    segments.some((segment) => segment === "..");
  if (escapes) {
    throw new FormatError("VMDK_EXTENT_PATH", `vmdk: descriptor ${descriptorName} names extent file "${fileName}" outside its folder`, {
      context: { fileName },
    });
  }
}

/** Flat-file extent types: VMFS is ESXi's flat file; RDMs map a raw device the same way. */
const FLAT_TYPES = new Set(["FLAT", "VMFS", "VMFSRAW", "VMFSRDM"]);

async function openDescriptorExtent(
  extent: DescriptorExtent,
  options: OpenOptions,
  descriptorName: string,
  parent: ParentRange | undefined,
): Promise<ExtentReader> {
  const sizeBytes = extent.sizeSectors * VMDK_SECTOR_BYTES;
  if (extent.type === "ZERO") return new ZeroExtent(sizeBytes);
  if (extent.access === "NOACCESS") {
    throw new NotCapableError("VMDK_EXTENT_NOACCESS", `vmdk: extent on line ${extent.line} of ${descriptorName} is NOACCESS`, {
      context: { line: extent.line },
    });
  }
  if (!FLAT_TYPES.has(extent.type) && extent.type !== "SPARSE" && extent.type !== "VMFSSPARSE") {
    throw new NotCapableError("VMDK_EXTENT_TYPE_UNSUPPORTED", `vmdk: extent type ${extent.type} on line ${extent.line} of ${descriptorName} is not supported`, {
      context: { line: extent.line, type: extent.type },
    });
  }
  const fileName = extent.fileName ?? "";
  const openRelative = options.openRelative;
  if (openRelative === undefined) {
    throw new FormatError("VMDK_EXTENT_UNAVAILABLE", `vmdk: ${descriptorName} needs extent file "${fileName}"; pass openRelative to open it`, {
      context: { fileName },
    });
  }
  let source: ByteSource;
  try {
    source = await openRelative(fileName);
  } catch (err) {
    throw new FormatError("VMDK_EXTENT_UNAVAILABLE", `vmdk: cannot open extent file "${fileName}" of ${descriptorName}: ${(err as Error).message}`, {
      context: { fileName },
      cause: err,
    });
  }
  try {
    if (FLAT_TYPES.has(extent.type)) {
      const baseBytes = extent.offsetSectors * VMDK_SECTOR_BYTES;
      if (baseBytes + sizeBytes > source.sizeBytes) {
        throw new FormatError(
          "VMDK_EXTENT_TRUNCATED",
          `vmdk: flat extent "${fileName}" should hold ${sizeBytes} bytes at ${baseBytes} but the file has ${source.sizeBytes}`,
          { context: { fileName, baseBytes, sizeBytes, fileSizeBytes: source.sizeBytes } },
        );
      }
      return new FlatExtent(source, baseBytes, sizeBytes);
    }
    const head = await readExact(source, 0, VMDK_SECTOR_BYTES, "vmdk", `header of ${fileName}`);
    const header = head.readUInt32LE(0) === VMDK_COWD_MAGIC ? parseCowdHeader(head, fileName) : parseSparseHeader(head, fileName);
    return await SparseExtent.open(source, header, sizeBytes, parent);
  } catch (err) {
    await source.close();
    throw err;
  }
}

class VmdkDisk implements DiskSource {
  readonly format = "vmdk";
  readonly subformat: string;
  readonly virtualSizeBytes: number;
  private readonly parts: readonly ExtentReader[];
  /** Start of each part in the virtual disk, for binary search. */
  private readonly starts: readonly number[];
  private readonly owned: ByteSource | undefined;

  constructor(subformat: string, parts: readonly ExtentReader[], owned: ByteSource | undefined) {
    this.subformat = subformat;
    this.parts = parts;
    const starts: number[] = [];
    let total = 0;
    for (const part of parts) {
      starts.push(total);
      total += part.sizeBytes;
    }
    this.starts = starts;
    this.virtualSizeBytes = total;
    this.owned = owned;
  }

  extents(): AsyncIterable<Extent> {
    const parts = this.parts;
    const starts = this.starts;
    async function* all(): AsyncGenerator<Extent> {
      for (const [i, part] of parts.entries()) {
        const base = starts[i] ?? 0;
        for await (const extent of part.extents()) {
          yield { offsetBytes: base + extent.offsetBytes, lengthBytes: extent.lengthBytes, kind: extent.kind };
        }
      }
    }
    return coalesce(all());
  }

  async read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.virtualSizeBytes) {
      throw new RangeError(`vmdk: read of ${lengthBytes} bytes at ${offsetBytes} lies outside the ${this.virtualSizeBytes}-byte disk`);
    }
    const out = into !== undefined && into.length >= lengthBytes ? into.subarray(0, lengthBytes) : Buffer.allocUnsafe(lengthBytes);
    let index = this.partAt(offsetBytes);
    for (let position = offsetBytes; position < offsetBytes + lengthBytes; index++) {
      const part = this.parts[index];
      const start = this.starts[index];
      if (part === undefined || start === undefined) break;
      const within = position - start;
      const length = Math.min(part.sizeBytes - within, offsetBytes + lengthBytes - position);
      if (length > 0) await part.read(within, length, out, position - offsetBytes);
      position += Math.max(0, length);
    }
    return out;
  }

  private partAt(offsetBytes: number): number {
    let low = 0;
    let high = this.starts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((this.starts[mid] ?? 0) <= offsetBytes) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled([...this.parts.map((part) => part.close()), ...(this.owned === undefined ? [] : [this.owned.close()])]);
    const failed = results.find((result) => result.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }
}

/** Text that starts like a VMDK descriptor (VDF5 §"The Descriptor File"). */
export function looksLikeDescriptor(head: Buffer): boolean {
  const text = head.subarray(0, 1024).toString("latin1");
  return /^\s*# Disk DescriptorFile/.test(text) || (/^[\t\n\r\x20-\x7e]*$/.test(text) && /createType\s*=/.test(text));
}

/**
 * Opens a VMDK. The returned source owns `source` (and every extent file it opens) and closes
 * them in close(); if open fails, the caller still owns `source`.
 */
export async function openVmdk(source: ByteSource, options: OpenOptions = {}): Promise<DiskSource> {
  const name = source.name;
  if (source.sizeBytes < 4) {
    throw new FormatError("TRUNCATED", `vmdk: ${name} is only ${source.sizeBytes} bytes`, { context: { fileSizeBytes: source.sizeBytes } });
  }
  const magic = (await readExact(source, 0, 4, "vmdk", "magic")).readUInt32LE(0);
  if (magic === VMDK_SPARSE_MAGIC) return openMonolithic(source, options);
  if (magic === VMDK_COWD_MAGIC) {
    throw new NotCapableError("VMDK_EXTENT_TYPE_UNSUPPORTED", `vmdk: ${name} is an ESX COWD sparse extent on its own; open its descriptor (the .vmdk that names it), which names its parent`);
  }
  const head = await readExact(source, 0, Math.min(source.sizeBytes, 1024), "vmdk", "descriptor");
  if (!looksLikeDescriptor(head)) {
    throw new FormatError("VMDK_BAD_MAGIC", `vmdk: ${name} is neither a sparse extent (KDMV) nor a text descriptor`, {
      context: { magic },
    });
  }
  if (source.sizeBytes > VMDK_MAX_DESCRIPTOR_BYTES) {
    throw new FormatError("VMDK_DESCRIPTOR_TOO_LARGE", `vmdk: descriptor ${name} is ${source.sizeBytes} bytes, over ${VMDK_MAX_DESCRIPTOR_BYTES}`, {
      context: { fileSizeBytes: source.sizeBytes },
    });
  }
  const descriptor = parseDescriptor(await readExact(source, 0, source.sizeBytes, "vmdk", "descriptor"), name);
  const parent = parentOf(descriptor, name, options);
  if (descriptor.extents.length === 0) {
    throw new FormatError("VMDK_DESCRIPTOR_INVALID", `vmdk: descriptor ${name} lists no extents`);
  }
  // Check every name before opening any file, so a hostile descriptor opens nothing.
  let totalSectors = 0;
  for (const extent of descriptor.extents) {
    if (extent.type !== "ZERO") {
      if (extent.fileName === undefined) {
        throw new FormatError("VMDK_DESCRIPTOR_INVALID", `vmdk: extent on line ${extent.line} of ${name} names no file`, { context: { line: extent.line } });
      }
      checkExtentPath(extent.fileName, name);
    }
    totalSectors += extent.sizeSectors;
  }
  if (totalSectors * VMDK_SECTOR_BYTES > Number.MAX_SAFE_INTEGER) {
    throw new FormatError("VMDK_CAPACITY_TOO_LARGE", `vmdk: extents of ${name} add up to ${totalSectors} sectors, beyond 2^53 bytes`, {
      context: { totalSectors },
    });
  }
  const parts: ExtentReader[] = [];
  try {
    let baseBytes = 0;
    for (const extent of descriptor.extents) {
      const part = await openDescriptorExtent(extent, options, name, parent === undefined ? undefined : { disk: parent, baseBytes });
      parts.push(part);
      baseBytes += part.sizeBytes;
    }
  } catch (err) {
    await Promise.allSettled(parts.map((part) => part.close()));
    throw err;
  }
  return new VmdkDisk(descriptor.createType ?? "unknown", parts, source);
}

async function openMonolithic(source: ByteSource, options: OpenOptions): Promise<DiskSource> {
  const name = source.name;
  const header = parseSparseHeader(await readExact(source, 0, VMDK_SECTOR_BYTES, "vmdk", "header"), name);
  // Structure first (sizes, directory, tables), then the descriptor: a lying header is refused
  // for what it claims, whatever else is broken.
  const extent = await SparseExtent.open(source, header);
  let subformat = (header.flags & VMDK_FLAG_COMPRESSED) !== 0 ? "streamOptimized" : "monolithicSparse";
  if (header.descriptorOffsetSectors !== 0n && header.descriptorSizeSectors !== 0n) {
    const sizeBytes = header.descriptorSizeSectors * BigInt(VMDK_SECTOR_BYTES);
    const offsetBytes = header.descriptorOffsetSectors * BigInt(VMDK_SECTOR_BYTES);
    if (sizeBytes > BigInt(VMDK_MAX_DESCRIPTOR_BYTES)) {
      throw new FormatError("VMDK_DESCRIPTOR_TOO_LARGE", `vmdk: embedded descriptor of ${name} is ${sizeBytes} bytes, over ${VMDK_MAX_DESCRIPTOR_BYTES}`, {
        context: { sizeBytes },
      });
    }
    if (offsetBytes + sizeBytes > BigInt(source.sizeBytes)) {
      throw new FormatError("TRUNCATED", `vmdk: embedded descriptor of ${name} at 0x${offsetBytes.toString(16)} lies past end of file`, {
        context: { offsetBytes, sizeBytes, fileSizeBytes: source.sizeBytes },
      });
    }
    const descriptor = parseDescriptor(await readExact(source, Number(offsetBytes), Number(sizeBytes), "vmdk", "embedded descriptor"), name);
    const parent = parentOf(descriptor, name, options);
    if (parent !== undefined) extent.attachParent({ disk: parent, baseBytes: 0 });
    if (descriptor.createType !== undefined) subformat = descriptor.createType;
  }
  return new VmdkDisk(subformat, [extent], undefined);
}
