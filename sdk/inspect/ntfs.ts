// A read-only NTFS directory reader: the boot sector, MFT records (with update-sequence fixups),
// attribute lists, runlists, and $I30 directory indexes ($INDEX_ROOT and $INDEX_ALLOCATION).
// Enough to find `Windows/System32` and list its drivers; no file data, no registry.
// Hand-written: no maintained JavaScript package reads NTFS from a block source, and the
// inspection must not mount a guest disk. Every walk is bounded (records, runs, index blocks,
// entries), so hostile input ends in a coded FormatError (INSPECT_NTFS_*).
//
// Ref: the Linux kernel's NTFS documentation (Documentation/filesystems/ntfs3.rst points to
// it) and the Linux-NTFS project's "NTFS Documentation" (Richard Russon, Yuval Fledel):
// §Boot sector, §FILE record, §Attribute header, §Data runs, §INDEX_ROOT, §INDEX_ALLOCATION,
// §Index entry, §Update sequence.
import { inspectError, readVolume, safeNumber, type Volume } from "./volume.ts";

/** Ref: "Update sequence": fixups protect every 512-byte stride, whatever the sector size. */
const NTFS_FIXUP_STRIDE = 512;
const MFT_RECORD_ROOT = 5;
/** Largest MFT or index record accepted (the format allows up to 64 KiB clusters × small counts). */
const MAX_RECORD_BYTES = 64 * 1024;
/** Largest cluster accepted: 2 MiB is the largest NTFS cluster Windows formats. */
const MAX_CLUSTER_BYTES = 2 * 1024 * 1024;
/** Runs per attribute: a badly fragmented System32 index has hundreds; 65536 bounds the decode. */
const MAX_RUNS = 65536;
/** Extension records followed through one $ATTRIBUTE_LIST. */
const MAX_EXTENSION_RECORDS = 64;
/** Index blocks visited in one directory. */
export const MAX_INDEX_BLOCKS = 16384;
/** Names kept in one directory listing; System32 holds about 5,000. */
export const MAX_INDEX_ENTRIES = 200_000;

// Ref: "Attribute types".
const ATTR_ATTRIBUTE_LIST = 0x20;
const ATTR_DATA = 0x80;
const ATTR_INDEX_ROOT = 0x90;
const ATTR_INDEX_ALLOCATION = 0xa0;
const ATTR_END = 0xffffffff;
/** Index entry flags. */
const INDEX_ENTRY_SUBNODE = 0x1;
const INDEX_ENTRY_LAST = 0x2;
/** FILE_NAME namespace 2 is the DOS 8.3 alias, listed beside the long name. */
const NAMESPACE_DOS = 2;
/** Record flag: the record is in use. */
const RECORD_IN_USE = 0x1;

interface NtfsRun {
  readonly vcn: number;
  /** undefined for a sparse run. */
  readonly lcn: number | undefined;
  readonly length: number;
}

interface Attribute {
  readonly type: number;
  readonly name: string;
  readonly resident: boolean;
  /** Resident value. */
  readonly value?: Buffer;
  /** Non-resident: runs and sizes. */
  readonly startVcn?: number;
  readonly runs?: readonly NtfsRun[];
  readonly dataBytes?: number;
}

export interface NtfsEntry {
  readonly name: string;
  readonly record: number;
}

export class NtfsReader {
  readonly volume: Volume;
  private readonly where: string;
  private readonly clusterBytes: number;
  private readonly totalClusters: number;
  private readonly recordBytes: number;
  private readonly indexRecordBytes: number;
  private mftRuns: readonly NtfsRun[] = [];
  /** Index blocks ($INDEX_ALLOCATION records) read so far; tests check large directories use them. */
  indexBlocksRead = 0;
  private mftBytes = 0;

  private constructor(volume: Volume, clusterBytes: number, totalClusters: number, recordBytes: number, indexRecordBytes: number) {
    this.volume = volume;
    this.where = `${volume.name}: ntfs`;
    this.clusterBytes = clusterBytes;
    this.totalClusters = totalClusters;
    this.recordBytes = recordBytes;
    this.indexRecordBytes = indexRecordBytes;
  }

  private fail(code: string, message: string, context: Readonly<Record<string, number | string>> = {}): never {
    throw inspectError(code, this.where, message, context);
  }

  /** Ref: "Boot sector": the BPB and the NTFS extension. */
  static async open(volume: Volume): Promise<NtfsReader> {
    const where = `${volume.name}: ntfs`;
    const boot = await readVolume(volume, 0, 512, "NTFS boot sector", "INSPECT_NTFS_BOOT");
    if (boot.toString("latin1", 3, 11) !== "NTFS    ") throw inspectError("INSPECT_NTFS_BOOT", where, 'no "NTFS    " OEM id');
    const bytesPerSector = boot.readUInt16LE(0x0b);
    const spcRaw = boot.readUInt8(0x0d);
    // Values above 0x80 encode 2^(256 − value) sectors (large clusters).
    const sectorsPerCluster = spcRaw <= 0x80 ? spcRaw : 2 ** (256 - spcRaw);
    const clusterBytes = bytesPerSector * sectorsPerCluster;
    if (![256, 512, 1024, 2048, 4096].includes(bytesPerSector) || sectorsPerCluster === 0 || clusterBytes > MAX_CLUSTER_BYTES) {
      throw inspectError("INSPECT_NTFS_BOOT", where, `sector size ${bytesPerSector} × ${sectorsPerCluster} sectors per cluster is not a valid cluster`, { bytesPerSector, sectorsPerCluster });
    }
    const totalSectors = safeNumber(boot.readBigUInt64LE(0x28), "INSPECT_NTFS_BOOT", where, "total sectors");
    if (totalSectors * bytesPerSector > volume.lengthBytes + bytesPerSector) {
      throw inspectError("INSPECT_NTFS_SIZE", where, `the volume claims ${totalSectors} sectors (${totalSectors * bytesPerSector} bytes) but its partition holds ${volume.lengthBytes}`, { totalSectors });
    }
    const recordSize = (raw: number): number => (raw < 128 ? raw * clusterBytes : 2 ** (256 - raw));
    const recordBytes = recordSize(boot.readUInt8(0x40));
    const indexRecordBytes = recordSize(boot.readUInt8(0x44));
    for (const [what, size] of [["MFT record", recordBytes], ["index record", indexRecordBytes]] as const) {
      if (size < NTFS_FIXUP_STRIDE || size > MAX_RECORD_BYTES || (size & (size - 1)) !== 0) throw inspectError("INSPECT_NTFS_BOOT", where, `${what} size ${size} is not a power of two in 512..${MAX_RECORD_BYTES}`, { size });
    }
    const totalClusters = Math.floor((totalSectors * bytesPerSector) / clusterBytes);
    const reader: NtfsReader = new NtfsReader(volume, clusterBytes, totalClusters, recordBytes, indexRecordBytes);
    const mftLcn = safeNumber(boot.readBigUInt64LE(0x30), "INSPECT_NTFS_BOOT", where, "MFT LCN");
    if (mftLcn === 0 || mftLcn >= totalClusters) throw inspectError("INSPECT_NTFS_BOOT", where, `$MFT at cluster ${mftLcn} is outside the volume (${totalClusters} clusters)`, { mftLcn });
    // Record 0 ($MFT) describes where the rest of the MFT lives.
    const record0 = await reader.fixup(await readVolume(volume, mftLcn * clusterBytes, recordBytes, "$MFT record 0", "INSPECT_NTFS_BOOT"), "FILE", "MFT record 0");
    const data = reader.attributesOf(record0, 0).find((a) => a.type === ATTR_DATA && a.name === "");
    if (data?.runs === undefined || data.dataBytes === undefined) reader.fail("INSPECT_NTFS_MFT", "$MFT has no non-resident $DATA attribute");
    reader.mftRuns = data.runs;
    reader.mftBytes = data.dataBytes;
    return reader;
  }

  /** Applies the update sequence array in place on a copy; checks the magic and every stride. */
  private fixup(raw: Buffer, magic: string, what: string): Buffer {
    const buf = Buffer.from(raw);
    if (buf.toString("latin1", 0, 4) !== magic) this.fail("INSPECT_NTFS_BAD_RECORD", `${what} has no "${magic}" signature`);
    const usaOffset = buf.readUInt16LE(4);
    const usaCount = buf.readUInt16LE(6);
    if (usaCount - 1 !== buf.length / NTFS_FIXUP_STRIDE || usaOffset + usaCount * 2 > NTFS_FIXUP_STRIDE || usaOffset < 8) {
      this.fail("INSPECT_NTFS_FIXUP", `${what}: update sequence array (offset ${usaOffset}, ${usaCount} entries) does not fit a ${buf.length}-byte record`, { usaOffset, usaCount });
    }
    const usn = buf.readUInt16LE(usaOffset);
    for (let i = 1; i < usaCount; i++) {
      const end = i * NTFS_FIXUP_STRIDE - 2;
      if (buf.readUInt16LE(end) !== usn) this.fail("INSPECT_NTFS_FIXUP", `${what}: stride ${i - 1} ends in 0x${buf.readUInt16LE(end).toString(16)}, not the update sequence number 0x${usn.toString(16)} (a torn write)`, { stride: i - 1 });
      buf.writeUInt16LE(buf.readUInt16LE(usaOffset + i * 2), end);
    }
    return buf;
  }

  /** Ref: "Data runs": a header nibble pair gives the byte widths of length and signed LCN delta. */
  private decodeRuns(buf: Buffer, start: number, end: number, startVcn: number, what: string): NtfsRun[] {
    const runs: NtfsRun[] = [];
    let pos = start;
    let lcn = 0;
    let vcn = startVcn;
    while (pos < end) {
      const header = buf.readUInt8(pos);
      if (header === 0) break;
      const lenSize = header & 0xf;
      const offSize = header >> 4;
      if (lenSize === 0 || lenSize > 8 || offSize > 8 || pos + 1 + lenSize + offSize > end) this.fail("INSPECT_NTFS_RUNLIST", `${what}: run header 0x${header.toString(16)} at byte ${pos} is malformed`, { pos });
      const length = Number(buf.readUIntLE(pos + 1, Math.min(lenSize, 6)));
      if (lenSize > 6 && buf.subarray(pos + 1 + 6, pos + 1 + lenSize).some((b) => b !== 0)) this.fail("INSPECT_NTFS_RUNLIST", `${what}: run length exceeds 2^48 clusters`);
      if (length === 0) this.fail("INSPECT_NTFS_RUNLIST", `${what}: a run of zero clusters`);
      let lcnOut: number | undefined;
      if (offSize > 0) {
        let delta = 0n;
        for (let i = offSize - 1; i >= 0; i--) delta = (delta << 8n) | BigInt(buf.readUInt8(pos + 1 + lenSize + i));
        if ((buf.readUInt8(pos + lenSize + offSize) & 0x80) !== 0) delta -= 1n << BigInt(offSize * 8);
        lcn += Number(delta);
        if (!Number.isSafeInteger(lcn) || lcn < 0 || lcn + length > this.totalClusters) this.fail("INSPECT_NTFS_RUNLIST", `${what}: run at cluster ${lcn} (+${length}) lies outside the volume (${this.totalClusters} clusters)`, { lcn, length });
        lcnOut = lcn;
      }
      runs.push({ vcn, lcn: lcnOut, length });
      if (runs.length > MAX_RUNS) this.fail("INSPECT_NTFS_RUNLIST", `${what}: more than ${MAX_RUNS} runs`);
      vcn += length;
      pos += 1 + lenSize + offSize;
    }
    return runs;
  }

  /** Reads `length` bytes at byte `offset` of a non-resident attribute; sparse runs read as zeros. */
  private async readRuns(runs: readonly NtfsRun[], offset: number, length: number, what: string): Promise<Buffer> {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const vcn = Math.floor((offset + done) / this.clusterBytes);
      const run = runs.find((r) => vcn >= r.vcn && vcn < r.vcn + r.length);
      if (run === undefined) this.fail("INSPECT_NTFS_RUNLIST", `${what}: byte ${offset + done} is not mapped by any run`, { offset: offset + done });
      const inRun = (offset + done) - run.vcn * this.clusterBytes;
      const take = Math.min(length - done, run.length * this.clusterBytes - inRun);
      if (run.lcn !== undefined) {
        const chunk = await readVolume(this.volume, run.lcn * this.clusterBytes + inRun, take, what, "INSPECT_NTFS_RUNLIST");
        chunk.copy(out, done);
      }
      done += take;
    }
    return out;
  }

  async readRecord(number: number): Promise<Buffer> {
    const count = Math.floor(this.mftBytes / this.recordBytes);
    if (!Number.isSafeInteger(number) || number < 0 || number >= count) this.fail("INSPECT_NTFS_BAD_RECORD", `MFT record ${number} is outside the MFT (${count} records)`, { record: number });
    const raw = await this.readRuns(this.mftRuns, number * this.recordBytes, this.recordBytes, `MFT record ${number}`);
    const record = this.fixup(raw, "FILE", `MFT record ${number}`);
    if ((record.readUInt16LE(0x16) & RECORD_IN_USE) === 0) this.fail("INSPECT_NTFS_BAD_RECORD", `MFT record ${number} is not in use`, { record: number });
    return record;
  }

  /** Ref: "Attribute header": resident and non-resident forms. */
  private attributesOf(record: Buffer, number: number): Attribute[] {
    const what = `MFT record ${number}`;
    const inUse = record.readUInt32LE(0x18);
    let pos = record.readUInt16LE(0x14);
    if (inUse > record.length || pos >= inUse) this.fail("INSPECT_NTFS_BAD_RECORD", `${what}: attributes at ${pos} past bytes in use ${inUse}`, { record: number });
    const attributes: Attribute[] = [];
    while (pos + 8 <= inUse) {
      const type = record.readUInt32LE(pos);
      if (type === ATTR_END) break;
      const length = record.readUInt32LE(pos + 4);
      if (length < 24 || length % 8 !== 0 || pos + length > inUse) this.fail("INSPECT_NTFS_ATTRIBUTE", `${what}: attribute 0x${type.toString(16)} at ${pos} has length ${length}`, { record: number, pos, length });
      const nonResident = record.readUInt8(pos + 8) !== 0;
      const nameLength = record.readUInt8(pos + 9);
      const nameOffset = record.readUInt16LE(pos + 10);
      if (nameLength > 0 && nameOffset + nameLength * 2 > length) this.fail("INSPECT_NTFS_ATTRIBUTE", `${what}: attribute name runs past the attribute`, { record: number, pos });
      const name = record.toString("utf16le", pos + nameOffset, pos + nameOffset + nameLength * 2);
      if (!nonResident) {
        const valueLength = record.readUInt32LE(pos + 16);
        const valueOffset = record.readUInt16LE(pos + 20);
        if (valueOffset + valueLength > length) this.fail("INSPECT_NTFS_ATTRIBUTE", `${what}: resident value (${valueOffset}+${valueLength}) runs past the attribute (${length})`, { record: number, pos });
        attributes.push({ type, name, resident: true, value: Buffer.from(record.subarray(pos + valueOffset, pos + valueOffset + valueLength)) });
      } else {
        if (length < 64) this.fail("INSPECT_NTFS_ATTRIBUTE", `${what}: non-resident attribute of ${length} bytes`, { record: number, pos });
        const startVcn = safeNumber(record.readBigUInt64LE(pos + 16), "INSPECT_NTFS_ATTRIBUTE", this.where, "starting VCN");
        const runsOffset = record.readUInt16LE(pos + 32);
        const dataBytes = safeNumber(record.readBigUInt64LE(pos + 48), "INSPECT_NTFS_ATTRIBUTE", this.where, "data size");
        if (runsOffset >= length) this.fail("INSPECT_NTFS_ATTRIBUTE", `${what}: runlist offset ${runsOffset} past the attribute`, { record: number, pos });
        const runs = this.decodeRuns(record, pos + runsOffset, pos + length, startVcn, `${what} attribute 0x${type.toString(16)}`);
        attributes.push({ type, name, resident: false, startVcn, runs, dataBytes });
      }
      pos += length;
    }
    return attributes;
  }

  /**
   * Attributes of a file, including those moved to extension records by an $ATTRIBUTE_LIST.
   * Pieces of one non-resident attribute are merged into one run list.
   */
  private async fileAttributes(number: number): Promise<Attribute[]> {
    const base = this.attributesOf(await this.readRecord(number), number);
    const list = base.find((a) => a.type === ATTR_ATTRIBUTE_LIST);
    if (list === undefined) return base;
    const listBytes = list.resident ? list.value ?? Buffer.alloc(0) : await this.readRuns(list.runs ?? [], 0, Math.min(list.dataBytes ?? 0, MAX_RECORD_BYTES * 4), `record ${number} attribute list`);
    const extensions = new Set<number>();
    // Ref: "$ATTRIBUTE_LIST": type u32, record length u16 at 4, base file reference at 16.
    for (let pos = 0; pos + 26 <= listBytes.length; ) {
      const entryLength = listBytes.readUInt16LE(pos + 4);
      if (entryLength < 26) this.fail("INSPECT_NTFS_ATTRIBUTE", `record ${number}: attribute list entry at ${pos} has length ${entryLength}`, { record: number });
      const ref = Number(listBytes.readBigUInt64LE(pos + 16) & 0xffffffffffffn);
      if (ref !== number) extensions.add(ref);
      if (extensions.size > MAX_EXTENSION_RECORDS) this.fail("INSPECT_NTFS_ATTRIBUTE", `record ${number}: more than ${MAX_EXTENSION_RECORDS} extension records`, { record: number });
      pos += entryLength;
    }
    const all = [...base];
    for (const ext of extensions) all.push(...this.attributesOf(await this.readRecord(ext), ext));
    const merged = new Map<string, Attribute>();
    const out: Attribute[] = [];
    for (const a of all.sort((x, y) => (x.startVcn ?? 0) - (y.startVcn ?? 0))) {
      const key = `${a.type}:${a.name}`;
      const previous = merged.get(key);
      if (!a.resident && previous !== undefined && !previous.resident) {
        const joined: Attribute = { ...previous, runs: [...(previous.runs ?? []), ...(a.runs ?? [])], dataBytes: Math.max(previous.dataBytes ?? 0, a.dataBytes ?? 0) };
        merged.set(key, joined);
        out[out.indexOf(previous)] = joined;
      } else {
        merged.set(key, a);
        out.push(a);
      }
    }
    return out;
  }

  /** Ref: "Index entry": file reference, entry length, key length, flags, FILE_NAME key, sub-node VCN. */
  private parseEntries(buf: Buffer, start: number, end: number, what: string, names: NtfsEntry[], subnodes: number[]): void {
    let pos = start;
    if (end > buf.length || start > end) this.fail("INSPECT_NTFS_INDEX", `${what}: entries ${start}..${end} do not fit ${buf.length} bytes`);
    while (pos + 16 <= end) {
      const entryLength = buf.readUInt16LE(pos + 8);
      const keyLength = buf.readUInt16LE(pos + 10);
      const flags = buf.readUInt16LE(pos + 12);
      if (entryLength < 16 || entryLength % 8 !== 0 || pos + entryLength > end || 16 + keyLength > entryLength) this.fail("INSPECT_NTFS_INDEX", `${what}: index entry at ${pos} has length ${entryLength} and key length ${keyLength}`, { pos, entryLength });
      if ((flags & INDEX_ENTRY_SUBNODE) !== 0) {
        if (entryLength < 24) this.fail("INSPECT_NTFS_INDEX", `${what}: sub-node entry at ${pos} too short`, { pos });
        subnodes.push(safeNumber(buf.readBigUInt64LE(pos + entryLength - 8), "INSPECT_NTFS_INDEX", this.where, "sub-node VCN"));
      }
      if ((flags & INDEX_ENTRY_LAST) !== 0) return;
      // Ref: "$FILE_NAME": name length (characters) at 0x40, namespace at 0x41, name at 0x42.
      if (keyLength < 0x42) this.fail("INSPECT_NTFS_INDEX", `${what}: entry at ${pos} has a ${keyLength}-byte key, too short for a file name`, { pos });
      const nameChars = buf.readUInt8(pos + 16 + 0x40);
      if (0x42 + nameChars * 2 > keyLength) this.fail("INSPECT_NTFS_INDEX", `${what}: file name at ${pos} runs past its key`, { pos });
      if (buf.readUInt8(pos + 16 + 0x41) !== NAMESPACE_DOS) {
        names.push({ name: buf.toString("utf16le", pos + 16 + 0x42, pos + 16 + 0x42 + nameChars * 2), record: Number(buf.readBigUInt64LE(pos) & 0xffffffffffffn) });
        if (names.length > MAX_INDEX_ENTRIES) this.fail("INSPECT_NTFS_INDEX", `${what}: more than ${MAX_INDEX_ENTRIES} entries`);
      }
      pos += entryLength;
    }
    this.fail("INSPECT_NTFS_INDEX", `${what}: entries end without a last-entry marker`);
  }

  /** Lists a directory's $I30 index: the root entries, then every index block its sub-nodes name. */
  async listDirectory(number: number): Promise<NtfsEntry[]> {
    const attributes = await this.fileAttributes(number);
    const root = attributes.find((a) => a.type === ATTR_INDEX_ROOT && a.name === "$I30");
    if (root?.value === undefined) this.fail("INSPECT_NTFS_NOT_DIRECTORY", `MFT record ${number} has no $I30 index root`, { record: number });
    const value = root.value;
    // Ref: "$INDEX_ROOT": attribute type, collation, index block size, then the index header at 16.
    if (value.length < 32) this.fail("INSPECT_NTFS_INDEX", `record ${number}: $INDEX_ROOT of ${value.length} bytes`, { record: number });
    const blockBytes = value.readUInt32LE(8);
    const names: NtfsEntry[] = [];
    const pending: number[] = [];
    this.parseEntries(value, 16 + value.readUInt32LE(16), 16 + value.readUInt32LE(20), `record ${number} index root`, names, pending);
    if (pending.length === 0) return names;
    const allocation = attributes.find((a) => a.type === ATTR_INDEX_ALLOCATION && a.name === "$I30");
    if (allocation?.runs === undefined) this.fail("INSPECT_NTFS_INDEX", `record ${number}: index root has sub-nodes but no $INDEX_ALLOCATION`, { record: number });
    if (blockBytes !== this.indexRecordBytes) this.fail("INSPECT_NTFS_INDEX", `record ${number}: index block size ${blockBytes} differs from the boot sector's ${this.indexRecordBytes}`, { record: number });
    // Ref: "$INDEX_ALLOCATION": VCNs count clusters, or 512-byte units when blocks are smaller than a cluster.
    const vcnBytes = blockBytes >= this.clusterBytes ? this.clusterBytes : NTFS_FIXUP_STRIDE;
    const visited = new Set<number>();
    while (pending.length > 0) {
      const vcn = pending.pop() ?? 0;
      if (visited.has(vcn)) this.fail("INSPECT_NTFS_INDEX_LOOP", `record ${number}: index block at VCN ${vcn} is reached twice`, { record: number, vcn });
      visited.add(vcn);
      if (visited.size > MAX_INDEX_BLOCKS) this.fail("INSPECT_NTFS_INDEX", `record ${number}: more than ${MAX_INDEX_BLOCKS} index blocks`, { record: number });
      const offset = vcn * vcnBytes;
      if (offset + blockBytes > (allocation.dataBytes ?? 0)) this.fail("INSPECT_NTFS_INDEX", `record ${number}: index block at VCN ${vcn} lies past the allocation (${allocation.dataBytes} bytes)`, { record: number, vcn });
      this.indexBlocksRead++;
      const block = this.fixup(await this.readRuns(allocation.runs, offset, blockBytes, `record ${number} index block ${vcn}`), "INDX", `record ${number} index block at VCN ${vcn}`);
      // Ref: "INDX record": the index header at 0x18; its offsets are relative to it.
      this.parseEntries(block, 0x18 + block.readUInt32LE(0x18), 0x18 + block.readUInt32LE(0x1c), `record ${number} index block ${vcn}`, names, pending);
    }
    return names;
  }

  /** Resolves a path from the root directory, case-insensitively as Windows does; undefined if missing. */
  async resolve(path: string): Promise<number | undefined> {
    let record = MFT_RECORD_ROOT;
    for (const part of path.split("/").filter((p) => p !== "")) {
      const want = part.toUpperCase();
      const entry = (await this.listDirectory(record)).find((e) => e.name.toUpperCase() === want);
      if (entry === undefined) return undefined;
      record = entry.record;
    }
    return record;
  }
}
