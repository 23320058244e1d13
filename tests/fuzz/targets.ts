// Fuzz targets: each takes bytes and drives one reader or parser through everything it does
// (open, walk extents, read ranges, close), bounded in extents and bytes read. A target ends with
// success or a coded PortableError; anything else it throws is a crash (engine.ts classify), and
// so is breaking a DiskSource promise (InvariantError): extents out of order or past the virtual
// size, a short read, a read at a negative or fractional offset.
import { crc32 } from "node:zlib";
import { detect } from "../../sdk/disk/open.ts";
import { bufferSource } from "../../sdk/disk/io.ts";
import { formatByName } from "../../sdk/disk/formats/index.ts";
import { crc32c } from "../../sdk/disk/formats/vhdx/crc32c.ts";
import type { ByteSource, DiskSource } from "../../sdk/disk/types.ts";
import { FormatError, isPortableError } from "../../sdk/errors.ts";
import { inspectGuest } from "../../sdk/inspect/inspect.ts";
import { parseManifest } from "../../sdk/ovf/manifest.ts";
import { readOvf } from "../../sdk/ovf/ovf-reader.ts";
import { subRangeSource } from "../../sdk/ovf/sub-range.ts";
import { indexTar } from "../../sdk/ovf/tar-index.ts";
import { parseVmxEntries, readVmx } from "../../sdk/ovf/vmx.ts";
import { faultFromSoap, faultFromTask } from "../../sdk/clouds/vsphere/faults.ts";
import { expect, parseSoapBody, textOf, xs, xsiType, type XValue } from "../../sdk/clouds/vsphere/xml.ts";
import { InvariantError, makeSeed, type Field, type MutationHints, type Seed } from "./engine.ts";

/** Shared by one run: the deadline flips `aborted`, and the next read unwinds the reader. */
export interface RunContext {
  aborted: boolean;
  reads: number;
}

/** Thrown into a reader whose run passed its deadline, so a slow async loop stops. */
export class AbortedRun extends Error {
  override readonly name = "AbortedRun";
}

/** Extents walked per disk: enough for every seed, small enough to bound a lying image. */
export const MAX_EXTENTS = 4096;
/** Bytes read per range, and data extents read: a fuzz run tests parsing, not throughput. */
const READ_BYTES = 64 * 1024;
const MAX_DATA_READS = 16;
/** Reads between macrotask yields, so the deadline timer fires even for in-memory loops. */
const READS_PER_YIELD = 32;

/**
 * An in-memory ByteSource (io.ts bufferSource) that checks the reader's arguments, counts
 * reads, yields to the event loop now and then, and stops the reader once the run is aborted.
 */
export function fuzzSource(name: string, data: Buffer, ctx: RunContext): ByteSource {
  const inner = bufferSource(name, data);
  return {
    name,
    sizeBytes: inner.sizeBytes,
    async read(offsetBytes, lengthBytes, into) {
      if (ctx.aborted) throw new AbortedRun("run passed its deadline");
      if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
        throw new InvariantError(`${name}: read(${offsetBytes}, ${lengthBytes}): offsets and lengths must be whole and non-negative`);
      }
      if (++ctx.reads % READS_PER_YIELD === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      return inner.read(offsetBytes, lengthBytes, into);
    },
    close: inner.close,
  };
}

/** Walks a DiskSource's extents (checking its promises) and reads a few ranges, then closes it. */
export async function exerciseDisk(disk: DiskSource): Promise<void> {
  try {
    const size = disk.virtualSizeBytes;
    if (!Number.isSafeInteger(size) || size < 0) throw new InvariantError(`virtualSizeBytes is ${size}`);
    let expected = 0;
    let count = 0;
    let complete = true;
    const data: { offsetBytes: number; lengthBytes: number }[] = [];
    for await (const extent of disk.extents()) {
      if (extent.offsetBytes !== expected || !Number.isSafeInteger(extent.lengthBytes) || extent.lengthBytes < 0) {
        throw new InvariantError(`extent ${count} at ${extent.offsetBytes} (+${extent.lengthBytes}), expected one at ${expected}`);
      }
      expected += extent.lengthBytes;
      if (expected > size) throw new InvariantError(`extents run to ${expected}, past the virtual size ${size}`);
      if (extent.kind === "data" && extent.lengthBytes > 0 && data.length < MAX_DATA_READS) data.push(extent);
      if (++count >= MAX_EXTENTS) {
        complete = false;
        break;
      }
    }
    if (complete && expected !== size) throw new InvariantError(`extents cover ${expected} of ${size} bytes`);
    const middle = Math.floor(size / 2 / 512) * 512;
    const ranges: [number, number][] = [
      [0, Math.min(READ_BYTES, size)],
      [Math.max(0, size - 4096), Math.min(4096, size)],
      [middle, Math.min(READ_BYTES, size - middle)],
      ...data.map((e): [number, number] => [e.offsetBytes, Math.min(READ_BYTES, e.lengthBytes)]),
    ];
    let n = 0;
    for (const [offsetBytes, lengthBytes] of ranges) {
      if (lengthBytes <= 0) continue;
      // Every other read hands in a buffer, the way convert() recycles them.
      const into = n++ % 2 === 1 ? Buffer.alloc(lengthBytes) : undefined;
      const buf = await disk.read(offsetBytes, lengthBytes, into);
      if (buf.length !== lengthBytes) throw new InvariantError(`read(${offsetBytes}, ${lengthBytes}) returned ${buf.length} bytes`);
    }
  } finally {
    await disk.close();
  }
}

/** Files a descriptor may name, from the seed set; anything else is refused with a code. */
function memoryOpener(files: ReadonlyMap<string, Buffer>, ctx: RunContext): (name: string) => Promise<ByteSource> {
  return async (name) => {
    const data = files.get(name);
    if (data === undefined) throw new FormatError("FUZZ_NO_SUCH_FILE", `fuzz: no file "${name}" beside the image`, { context: { name } });
    return fuzzSource(name, data, ctx);
  };
}

async function openAndExercise(format: string, input: Buffer, ctx: RunContext, files: ReadonlyMap<string, Buffer>): Promise<void> {
  const source = fuzzSource(`input.${format}`, input, ctx);
  const disk = await formatByName(format).open(source, { openRelative: memoryOpener(files, ctx) });
  await exerciseDisk(disk);
}

const be = (offset: number, width: 1 | 2 | 4 | 8, name: string): Field => ({ offset, width, endian: "be", name });
const le = (offset: number, width: 1 | 2 | 4 | 8, name: string): Field => ({ offset, width, endian: "le", name });

// Ref: QEMU docs/interop/qcow2.txt "Header" (big-endian).
const QCOW2_FIELDS: readonly Field[] = [
  be(4, 4, "version"), be(8, 8, "backing_file_offset"), be(16, 4, "backing_file_size"), be(20, 4, "cluster_bits"),
  be(24, 8, "size"), be(32, 4, "crypt_method"), be(36, 4, "l1_size"), be(40, 8, "l1_table_offset"),
  be(48, 8, "refcount_table_offset"), be(56, 4, "refcount_table_clusters"), be(60, 4, "nb_snapshots"),
  be(64, 8, "snapshots_offset"), be(72, 8, "incompatible_features"), be(80, 8, "compatible_features"),
  be(96, 4, "refcount_order"), be(100, 4, "header_length"), be(104, 1, "compression_type"),
];

// Ref: VMware "Virtual Disk Format 5.0", SparseExtentHeader (little-endian); the stream
// footer repeats it 1024 bytes before the end.
const VMDK_HEADER = [
  [4, 4, "version"], [8, 4, "flags"], [12, 8, "capacity"], [20, 8, "grainSize"], [28, 8, "descriptorOffset"],
  [36, 8, "descriptorSize"], [44, 4, "numGTEsPerGT"], [48, 8, "rgdOffset"], [56, 8, "gdOffset"], [64, 8, "overHead"],
  [77, 2, "compressAlgorithm"],
] as const;
const VMDK_FIELDS: readonly Field[] = [
  ...VMDK_HEADER.map(([o, w, n]) => le(o, w, n)),
  ...VMDK_HEADER.map(([o, w, n]) => le(-1024 + o, w, `footer.${n}`)),
  le(-1536 + 12, 4, "footer-marker.type"),
];

// Ref: Microsoft "Virtual Hard Disk Image Format Specification" (big-endian); the footer is the
// last 512 bytes, copied at 0 for dynamic disks; the dynamic header usually sits at 512.
const VHD_FOOTER = [[16, 8, "dataOffset"], [40, 8, "originalSize"], [48, 8, "currentSize"], [56, 2, "cylinders"], [58, 1, "heads"], [59, 1, "sectorsPerTrack"], [60, 4, "diskType"], [28, 4, "creatorApp"]] as const;
const VHD_FIELDS: readonly Field[] = [
  ...VHD_FOOTER.map(([o, w, n]) => be(-512 + o, w, n)),
  ...VHD_FOOTER.map(([o, w, n]) => be(o, w, `copy.${n}`)),
  be(512 + 8, 8, "dyn.dataOffset"), be(512 + 16, 8, "dyn.tableOffset"), be(512 + 28, 4, "dyn.maxTableEntries"), be(512 + 32, 4, "dyn.blockSize"),
];

/** VHD checksum: one's complement of the byte sum, the checksum field counting as zero. */
function vhdChecksum(buf: Buffer, fieldOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < fieldOffset || i >= fieldOffset + 4) sum = (sum + (buf[i] as number)) >>> 0;
  return ~sum >>> 0;
}

function fixVhd(input: Buffer): void {
  const footers = [input.length - 512, 0].filter((o) => o >= 0 && o + 512 <= input.length && input.toString("latin1", o, o + 8) === "conectix");
  for (const at of footers) {
    const footer = input.subarray(at, at + 512);
    footer.writeUInt32BE(vhdChecksum(footer, 64), 64);
    const dataOffset = Number(footer.readBigUInt64BE(16) & 0xffffffffffffn);
    if (dataOffset + 1024 <= input.length && input.toString("latin1", dataOffset, dataOffset + 8) === "cxsparse") {
      const header = input.subarray(dataOffset, dataOffset + 1024);
      header.writeUInt32BE(vhdChecksum(header, 36), 36);
    }
  }
}

// Ref: [MS-VHDX] §2.2.2 header (at 64 KiB and 128 KiB) and §2.2.3 region table (192 KiB, 256 KiB).
const KiB = 1024;
const VHDX_FIELDS: readonly Field[] = [
  ...[64 * KiB, 128 * KiB].flatMap((h) => [le(h + 8, 8, "sequence"), le(h + 64, 2, "logVersion"), le(h + 66, 2, "version"), le(h + 68, 4, "logLength"), le(h + 72, 8, "logOffset")]),
  ...[192 * KiB, 256 * KiB].flatMap((r) => [
    le(r + 8, 4, "entryCount"),
    ...[0, 1].flatMap((e) => [le(r + 16 + 32 * e + 16, 8, `entry${e}.offset`), le(r + 16 + 32 * e + 24, 4, `entry${e}.length`), le(r + 16 + 32 * e + 28, 4, `entry${e}.required`)]),
  ]),
];

function crc32cZeroed(buf: Buffer, fieldOffset: number): number {
  const copy = Buffer.from(buf);
  copy.writeUInt32LE(0, fieldOffset);
  return crc32c(copy);
}

function fixVhdx(input: Buffer): void {
  for (const at of [64 * KiB, 128 * KiB]) {
    if (at + 4 * KiB <= input.length && input.toString("latin1", at, at + 4) === "head") {
      const header = input.subarray(at, at + 4 * KiB);
      header.writeUInt32LE(crc32cZeroed(header, 4), 4);
    }
  }
  for (const at of [192 * KiB, 256 * KiB]) {
    if (at + 64 * KiB <= input.length && input.toString("latin1", at, at + 4) === "regi") {
      const table = input.subarray(at, at + 64 * KiB);
      table.writeUInt32LE(crc32cZeroed(table, 4), 4);
    }
  }
}

/** ustar header checksum: the byte sum with the checksum field read as spaces (POSIX pax §ustar). */
function fixTar(input: Buffer): void {
  let position = 0;
  for (let headers = 0; headers < 64 && position + 512 <= input.length; headers++) {
    const header = input.subarray(position, position + 512);
    if (header.every((b) => b === 0)) return;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] as number);
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
    const sizeText = header.toString("latin1", 124, 136).replace(/\0.*$/s, "").trim();
    const size = /^[0-7]+$/.test(sizeText) ? parseInt(sizeText, 8) : 0;
    position += 512 + Math.ceil(size / 512) * 512;
  }
}

const MiB = 1024 * 1024;

// Ref: UEFI 2.10 §5.2.1 (MBR partition records), §5.3.2 (GPT header), §5.3.3 (entries); the
// ext4 superblock (kernel.org ext4 "Super Block") and NTFS boot sector of the seed images,
// whose first partition starts at 1 MiB and second (the GPT image's root) at 3 MiB.
const INSPECT_FIELDS: readonly Field[] = [
  ...[0, 1, 2, 3].flatMap((p) => [le(446 + 16 * p + 4, 1, `mbr${p}.type`), le(446 + 16 * p + 8, 4, `mbr${p}.start`), le(446 + 16 * p + 12, 4, `mbr${p}.sectors`)]),
  le(512 + 12, 4, "gpt.headerSize"), le(512 + 24, 8, "gpt.myLba"), le(512 + 32, 8, "gpt.alternateLba"), le(512 + 40, 8, "gpt.firstUsable"),
  le(512 + 48, 8, "gpt.lastUsable"), le(512 + 72, 8, "gpt.entriesLba"), le(512 + 80, 4, "gpt.entryCount"), le(512 + 84, 4, "gpt.entrySize"),
  ...[0, 1].flatMap((e) => [le(1024 + 128 * e + 32, 8, `gpt${e}.firstLba`), le(1024 + 128 * e + 40, 8, `gpt${e}.lastLba`)]),
  ...[1 * MiB, 3 * MiB].flatMap((p) => [
    le(p + 1024 + 0, 4, "ext4.inodesCount"), le(p + 1024 + 4, 4, "ext4.blocksCount"), le(p + 1024 + 20, 4, "ext4.firstDataBlock"),
    le(p + 1024 + 24, 4, "ext4.logBlockSize"), le(p + 1024 + 32, 4, "ext4.blocksPerGroup"), le(p + 1024 + 40, 4, "ext4.inodesPerGroup"),
    le(p + 1024 + 76, 4, "ext4.revLevel"), le(p + 1024 + 88, 2, "ext4.inodeSize"), le(p + 1024 + 96, 4, "ext4.featureIncompat"),
    le(p + 1024 + 254, 2, "ext4.descSize"), le(p + 1024 + 336, 4, "ext4.blocksCountHi"),
    le(p + 11, 2, "ntfs.bytesPerSector"), le(p + 13, 1, "ntfs.sectorsPerCluster"), le(p + 40, 8, "ntfs.totalSectors"),
    le(p + 48, 8, "ntfs.mftLcn"), le(p + 64, 1, "ntfs.clustersPerMftRecord"), le(p + 68, 1, "ntfs.clustersPerIndex"),
  ]),
];

/** GPT header and entry-array CRC32s (UEFI §5.3.2), primary at LBA 1 and backup at the last LBA. */
function fixGpt(input: Buffer): void {
  for (const at of [512, input.length - 512]) {
    if (at < 0 || at + 92 > input.length || input.toString("latin1", at, at + 8) !== "EFI PART") continue;
    const headerSize = input.readUInt32LE(at + 12);
    if (headerSize < 92 || headerSize > 512) continue;
    const entriesAt = Number(input.readBigUInt64LE(at + 72)) * 512;
    const entriesBytes = input.readUInt32LE(at + 80) * input.readUInt32LE(at + 84);
    if (entriesBytes <= MiB && entriesAt + entriesBytes <= input.length) input.writeUInt32LE(crc32(input.subarray(entriesAt, entriesAt + entriesBytes)), at + 88);
    const header = Buffer.from(input.subarray(at, at + headerSize));
    header.writeUInt32LE(0, 16);
    input.writeUInt32LE(crc32(header), at + 16);
  }
}

const XML_TOKENS = [
  "<", ">", "</", "/>", "&", "&amp;", "&#0;", "&#x110000;", "&#65;", "&unknown;", '"', "'", "=", "<!--", "-->", "<![CDATA[", "]]>",
  "<!DOCTYPE x [<!ENTITY a \"b\">]>", "<?xml version=\"1.0\"?>", "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/2\"",
  "ovf:capacity=\"99999999999999999999\"", "ovf:capacityAllocationUnits=\"byte * 2^60\"", "byte * 2^-1", "-1", "0", "1e400", "NaN",
  "<rasd:ResourceType>17</rasd:ResourceType>", "<rasd:Parent>1</rasd:Parent>", "<rasd:AddressOnParent>99</rasd:AddressOnParent>",
  "<rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>", "ovf:/file/file1", "../../etc/passwd", "xsi:type=\"ManagedObjectReference\"",
  "<returnval>", "</returnval>", "<faultstring>x</faultstring>", "<detail><InvalidPowerStateFault xsi:type=\"InvalidPowerState\"/></detail>",
  "\u0000", "\uffff", "\ud800", "x".repeat(300),
];

const VMX_TOKENS = [
  "\n", "=", "\"", "|22", "|0", "|zz", ".present = \"TRUE\"", "scsi0:0.fileName = \"../x.vmdk\"", "nvme0:15.present = \"TRUE\"", "sata0:99.present = \"TRUE\"",
  "numvcpus = \"0\"", "numvcpus = \"99999999999999999999\"", "memsize = \"-1\"", "cpuid.coresPerSocket = \"0\"", "firmware = \"efi\"",
  "ethernet0.address = \"zz:zz\"", "guestOS = \"windows9srv-64\"", "deviceType = \"cdrom-image\"", "#", "\r\n", "\u00e9",
];

const DESCRIPTOR_TOKENS = [
  "\n", "\"", "RW 0 SPARSE \"x.vmdk\"", "RW 18446744073709551615 FLAT \"flat.vmdk\" 0", "RW 8 ZERO", "RDONLY 4096 VMFS \"a.vmdk\"",
  "createType=\"streamOptimized\"", "createType=\"vmfsSparse\"", "parentCID=12345678", "CID=fffffffe", "ddb.geometry.cylinders = \"0\"",
  "\"../../etc/shadow\"", "\"/abs.vmdk\"", "-1", "99999999999999999999", "0x10", " 9007199254740993 ", "#", "\u0000",
];

const SOAP_FAULT_TASK = xs.object({ state: xs.string().optional(), error: xs.any().optional() });

/** Walks a parsed SOAP value (bounded), calling the helpers the client uses on every node. */
function walkSoap(value: XValue, budget: { nodes: number }): void {
  if (--budget.nodes <= 0) return;
  xsiType(value);
  textOf(value);
  if (typeof value !== "object") return;
  for (const [key, children] of Object.entries(value)) {
    if (key.startsWith("$") || !Array.isArray(children)) continue;
    for (const child of children) walkSoap(child, budget);
  }
}

async function runSoap(input: Buffer): Promise<void> {
  const parsed = parseSoapBody(input.toString("utf8"));
  if (parsed.name === "Fault") {
    const fault = faultFromSoap(parsed.value, "Fuzz");
    if (!isPortableError(fault)) throw new InvariantError("faultFromSoap returned a non-PortableError");
    return;
  }
  walkSoap(parsed.value, { nodes: 100_000 });
  const value = parsed.value;
  if (typeof value !== "object") return;
  const returnval = value.returnval;
  if (returnval === undefined || typeof returnval === "string") return;
  // The shapes the client reads: a RetrievePropertiesEx result, a task's info, a typed error.
  const attempts = [
    () => expect(xs.object({ token: xs.string().optional(), objects: xs.many(xs.object({ obj: xs.ref(), propSet: xs.many(xs.object({ name: xs.string(), val: xs.many(xs.any()) })) })) }), returnval, "RetrieveResult"),
    () => expect(SOAP_FAULT_TASK, returnval, "TaskInfo"),
    () => expect(xs.ref(), returnval, "ManagedObjectReference"),
    () => expect(xs.object({ key: xs.string(), userName: xs.string(), loginTime: xs.string().optional() }), returnval, "UserSession"),
  ];
  for (const attempt of attempts) {
    try {
      attempt();
    } catch (err) {
      if (!isPortableError(err)) throw err;
    }
  }
  for (const item of returnval) {
    if (typeof item === "object" && item.error !== undefined) {
      const fault = faultFromTask(item.error, "FuzzTask", "task-1");
      if (!isPortableError(fault)) throw new InvariantError("faultFromTask returned a non-PortableError");
    }
  }
}

async function runOva(input: Buffer, ctx: RunContext): Promise<void> {
  const archive = fuzzSource("input.ova", input, ctx);
  const entries = await indexTar(archive);
  const descriptor = entries.find((e) => /\.ovf$/i.test(e.name));
  if (descriptor === undefined) return;
  if (descriptor.sizeBytes > 4 * MiB) return;
  const ovf = readOvf(await archive.read(descriptor.offsetBytes, descriptor.sizeBytes), { name: descriptor.name });
  const manifest = entries.find((e) => /\.mf$/i.test(e.name));
  if (manifest !== undefined && manifest.sizeBytes <= MiB) parseManifest((await archive.read(manifest.offsetBytes, manifest.sizeBytes)).toString("utf8"), manifest.name);
  // Each referenced disk is read in place, through detection, as openOva's openDisk does.
  for (const file of ovf.files.slice(0, 4)) {
    const entry = entries.find((e) => e.name === file.href);
    if (entry === undefined) continue;
    const bytes = subRangeSource(archive, entry.offsetBytes, entry.sizeBytes, `input.ova!${entry.name}`);
    try {
      const format = await detect(bytes);
      await exerciseDisk(await format.open(bytes, { openRelative: memoryOpener(new Map(), ctx) }));
    } catch (err) {
      if (!isPortableError(err)) throw err;
    }
  }
}

function runVmx(input: Buffer): void {
  const text = input.toString("utf8");
  const entries = parseVmxEntries(text, "input.vmx");
  // Size every disk the VMX names, as the CLI does after opening each VMDK.
  const sizes = new Map<string, number>();
  for (const [key, value] of entries) if (key.endsWith(".filename")) sizes.set(value, (1 + (sizes.size % 3)) * 2 ** 30);
  const result = readVmx(text, sizes, "input.vmx");
  JSON.stringify(result.workload ?? null);
}

export interface SeedFiles {
  /** Files beside the images that descriptors may name (VMDK extents), by name. */
  readonly companions: ReadonlyMap<string, Buffer>;
}

export interface FuzzTarget {
  readonly name: string;
  readonly hints: MutationHints;
  /** Per-iteration deadline multiplier: inspection and OVA runs do more work per input. */
  readonly slow?: boolean;
  /** Seeds of its own, instead of the seed cache's folder (the harness self-test). */
  readonly ownSeeds?: () => Seed[];
  run(input: Buffer, ctx: RunContext, files: SeedFiles): Promise<void>;
}

const disk = (format: string, hints: MutationHints): FuzzTarget => ({
  name: format,
  hints,
  run: (input, ctx, files) => openAndExercise(format, input, ctx, files.companions),
});

export const TARGETS: readonly FuzzTarget[] = [
  disk("vmdk", { fields: VMDK_FIELDS, maxBytes: 8 * MiB }),
  {
    name: "vmdk-descriptor",
    hints: { text: true, tokens: DESCRIPTOR_TOKENS, maxBytes: 64 * KiB },
    run: (input, ctx, files) => openAndExercise("vmdk", input, ctx, files.companions),
  },
  disk("vhd", { fields: VHD_FIELDS, fixup: fixVhd, maxBytes: 8 * MiB }),
  disk("vhdx", { fields: VHDX_FIELDS, fixup: fixVhdx, maxBytes: 20 * MiB }),
  disk("qcow2", { fields: QCOW2_FIELDS, maxBytes: 8 * MiB }),
  {
    name: "raw-detect",
    hints: { fields: [...QCOW2_FIELDS.slice(0, 4), ...VHD_FIELDS.slice(0, 4), ...VMDK_FIELDS.slice(0, 4)], fixup: (b) => (fixVhd(b), fixVhdx(b)), maxBytes: 20 * MiB },
    async run(input, ctx, files) {
      const source = fuzzSource("input.img", input, ctx);
      const format = await detect(source);
      await exerciseDisk(await format.open(source, { openRelative: memoryOpener(files.companions, ctx) }));
    },
  },
  {
    name: "ovf",
    hints: { text: true, tokens: XML_TOKENS, maxBytes: 4 * MiB },
    async run(input) {
      const ovf = readOvf(input, { name: "input.ovf" });
      JSON.stringify(ovf.systems.map((s) => s.workload ?? null));
    },
  },
  {
    name: "ova",
    slow: true,
    hints: { tokens: [...XML_TOKENS.slice(0, 12), "00000000000", "77777777777", "0000001000\u0000", "\u0080\u0000\u0000\u0000\u0000\u0000\u0000\u0001\u0000\u0000\u0000\u0000"], fixup: fixTar, maxBytes: 4 * MiB },
    run: (input, ctx) => runOva(input, ctx),
  },
  { name: "vmx", hints: { text: true, tokens: VMX_TOKENS, maxBytes: 256 * KiB }, run: async (input) => runVmx(input) },
  { name: "soap", hints: { text: true, tokens: XML_TOKENS, maxBytes: 1 * MiB }, run: (input) => runSoap(input) },
  {
    name: "inspect",
    slow: true,
    hints: { fields: INSPECT_FIELDS, fixup: fixGpt, maxBytes: 40 * MiB },
    async run(input, ctx) {
      const source = fuzzSource("input.raw", input, ctx);
      const disk = await formatByName("raw").open(source);
      try {
        const report = await inspectGuest(disk);
        JSON.stringify(report);
      } finally {
        await disk.close();
      }
    },
  },
];

/**
 * A target that misbehaves on purpose, by input length: a synchronous spin no timer can stop, a
 * TypeError, or success. Only the harness test uses it (the worker threads see it through the
 * environment they inherit), to prove the watchdog kills, records and carries on.
 */
const SELFTEST: FuzzTarget = {
  name: "selftest",
  hints: {},
  ownSeeds: () => [makeSeed("selftest/zeros", Buffer.alloc(64))],
  async run(input) {
    const mode = input.length % 5;
    if (mode === 0) for (;;);
    if (mode === 1) throw new TypeError("selftest: deliberate TypeError");
  },
};

export function targetByName(name: string): FuzzTarget {
  if (name === SELFTEST.name && process.env.PW_FUZZ_SELFTEST === "1") return SELFTEST;
  const target = TARGETS.find((t) => t.name === name);
  if (target === undefined) throw new Error(`unknown fuzz target "${name}" (known: ${TARGETS.map((t) => t.name).join(", ")})`);
  return target;
}
