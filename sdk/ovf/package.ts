// An OVF package, as a folder (.ovf beside its files) or an OVA (one tar archive): the parsed
// descriptor, its manifest check, and each disk as a DiskSource read in place.
//
// An OVA is read through its tar index (tar-index.ts): only headers are read to list it, the
// descriptor and manifest are read into memory (both size-limited), and a disk is a sub-range
// of the archive handed to the disk format reader, so nothing is extracted to a temp file. A
// gzip-compressed disk (ovf:compression="gzip") is decoded forward through gzip-source.ts.
// openOvaEntry() opens one disk by its entry name, what a `file.ova!entry` location names.
import { basename, dirname, extname, resolve } from "node:path";
import { FormatError, InvalidArgsError } from "../errors.ts";
import { formatByName } from "../disk/formats/index.ts";
import { openFileSource } from "../disk/io.ts";
import { detect, siblingOpener } from "../disk/open.ts";
import type { ByteSource, DiskFormatName, DiskSource } from "../disk/types.ts";
import { GzipSource } from "./gzip-source.ts";
import { formatOvaLocation } from "./ova-location.ts";
import { MANIFEST_MAX_BYTES, parseManifest, verifyManifest, type ManifestLine, type ManifestReport } from "./manifest.ts";
import { readOvf, type OvfDescriptor, type OvfFile, type OvfProblem } from "./ovf-reader.ts";
import { concatSource, subRangeSource } from "./sub-range.ts";
import { indexTar, type TarEntry } from "./tar-index.ts";
import { OVF_MAX_DESCRIPTOR_BYTES } from "./xml.ts";

export interface OvfPackage {
  readonly path: string;
  readonly kind: "ovf" | "ova";
  readonly descriptorName: string;
  readonly descriptor: OvfDescriptor;
  /** Files present in the package (OVA entries, or the descriptor's referenced files that exist). */
  readonly files: readonly string[];
  readonly manifestName?: string;
  readonly manifest?: readonly ManifestLine[];
  /** Package-level problems (entry order, sizes, missing files) after the descriptor's own. */
  readonly problems: readonly OvfProblem[];
  /** Hashes every listed file; undefined when the package has no manifest. */
  verifyManifest(): Promise<ManifestReport | undefined>;
  /** The bytes of a package file as stored (still compressed, if it is). */
  openFile(name: string): Promise<ByteSource>;
  /**
   * A referenced disk, by its DiskSection id, as a DiskSource. Close it before the package.
   * `format` overrides the descriptor's and detection.
   */
  openDisk(diskId: string, options?: { readonly format?: DiskFormatName }): Promise<DiskSource>;
  close(): Promise<void>;
}

/** The ovf:format URI names the disk format (DSP0243 §9.1); detection decides when it does not. */
function formatFromUri(uri: string | undefined): "vmdk" | "vhd" | "vhdx" | "qcow2" | "raw" | undefined {
  if (uri === undefined) return undefined;
  if (/vmdk/i.test(uri)) return "vmdk";
  if (/vhdx/i.test(uri)) return "vhdx";
  if (/vhd/i.test(uri)) return "vhd";
  if (/qcow/i.test(uri)) return "qcow2";
  return undefined;
}

/** Hands package bytes to a format reader: the named format, or the one the bytes show. */
async function openDiskBytes(bytes: ByteSource, named: DiskFormatName | undefined, openRelative: (name: string) => Promise<ByteSource>): Promise<DiskSource> {
  try {
    const format = named === undefined ? await detect(bytes) : formatByName(named);
    return await format.open(bytes, { openRelative });
  } catch (err) {
    await bytes.close();
    throw err;
  }
}

const EXEMPT_FROM_MANIFEST = (file: string): boolean => /\.(mf|cert)$/i.test(file);

/** What every package knows once its descriptor and manifest are read. */
interface PackageFields {
  readonly path: string;
  readonly descriptorName: string;
  readonly descriptor: OvfDescriptor;
  readonly files: readonly string[];
  readonly manifestName?: string;
  readonly manifest?: readonly ManifestLine[];
  readonly problems: readonly OvfProblem[];
}

abstract class PackageBase implements OvfPackage {
  abstract readonly kind: "ovf" | "ova";
  readonly path: string;
  readonly descriptorName: string;
  readonly descriptor: OvfDescriptor;
  readonly files: readonly string[];
  readonly manifestName?: string;
  readonly manifest?: readonly ManifestLine[];
  readonly problems: readonly OvfProblem[];

  protected constructor(fields: PackageFields) {
    this.path = fields.path;
    this.descriptorName = fields.descriptorName;
    this.descriptor = fields.descriptor;
    this.files = fields.files;
    if (fields.manifestName !== undefined) this.manifestName = fields.manifestName;
    if (fields.manifest !== undefined) this.manifest = fields.manifest;
    this.problems = fields.problems;
  }

  abstract openFile(name: string): Promise<ByteSource>;
  abstract close(): Promise<void>;

  /** Files a disk names itself (a VMDK descriptor's extents); by default only package files. */
  protected openRelative(name: string): Promise<ByteSource> {
    return this.openFile(name);
  }

  async verifyManifest(): Promise<ManifestReport | undefined> {
    if (this.manifest === undefined) return undefined;
    return verifyManifest(this.manifest, this.files, (f) => this.openFile(f), EXEMPT_FROM_MANIFEST);
  }

  private async fileBytes(file: OvfFile): Promise<ByteSource> {
    if (file.chunkSizeBytes === undefined) return this.openFile(file.href);
    // Chunks are href.000000000, href.000000001, … (DSP0243 §5.3), each chunkSize except the last.
    const chunks = this.files.filter((f) => f.startsWith(`${file.href}.`) && /^\d{9}$/.test(f.slice(file.href.length + 1))).sort();
    if (chunks.length === 0) throw new FormatError("OVF_FILE_MISSING", `ovf: ${this.path}: chunks of "${file.href}" are missing`, { context: { file: file.href } });
    return concatSource(await Promise.all(chunks.map((c) => this.openFile(c))), file.href);
  }

  async openDisk(diskId: string, options: { readonly format?: DiskFormatName } = {}): Promise<DiskSource> {
    const disk = this.descriptor.disks.find((d) => d.diskId === diskId);
    if (disk === undefined) throw new FormatError("OVF_DISK_UNKNOWN", `ovf: ${this.path} has no disk "${diskId}"`, { context: { diskId } });
    const file = disk.file;
    if (file === undefined) throw new FormatError("OVF_DISK_NO_FILE", `ovf: disk "${diskId}" of ${this.path} has no file (a blank disk)`, { context: { diskId } });
    let bytes = await this.fileBytes(file);
    if (file.compression === "gzip") {
      try {
        bytes = await GzipSource.open(bytes, `${this.path}!${file.href} (gunzip)`);
      } catch (err) {
        await bytes.close();
        throw err;
      }
    }
    return openDiskBytes(bytes, options.format ?? formatFromUri(disk.format), (name) => this.openRelative(name));
  }
}

class OvaPackage extends PackageBase {
  readonly kind = "ova";
  private readonly archive: ByteSource;
  private readonly entries: ReadonlyMap<string, TarEntry>;

  constructor(init: {
    path: string;
    archive: ByteSource;
    entries: ReadonlyMap<string, TarEntry>;
    descriptorName: string;
    descriptor: OvfDescriptor;
    manifestName?: string;
    manifest?: readonly ManifestLine[];
    problems: OvfProblem[];
  }) {
    super({ ...init, files: [...init.entries.keys()] });
    this.archive = init.archive;
    this.entries = init.entries;
  }

  async openFile(name: string): Promise<ByteSource> {
    const entry = this.entries.get(name);
    if (entry === undefined) throw new FormatError("OVF_FILE_MISSING", `ova: ${this.path} has no entry "${name}"`, { context: { entry: name } });
    return subRangeSource(this.archive, entry.offsetBytes, entry.sizeBytes, `${this.path}!${name}`);
  }

  close(): Promise<void> {
    return this.archive.close();
  }
}

async function readSmall(source: ByteSource, offsetBytes: number, sizeBytes: number, limit: number, code: string, what: string): Promise<Buffer> {
  if (sizeBytes > limit) throw new FormatError(code, `${what} is ${sizeBytes} bytes, over the ${limit}-byte limit`, { context: { sizeBytes, limitBytes: limit } });
  return source.read(offsetBytes, sizeBytes);
}

/** Opens an OVA: indexes the archive, reads and parses the descriptor and manifest. */
export async function openOva(path: string): Promise<OvfPackage> {
  const archive = await openFileSource(path);
  try {
    const list = await indexTar(archive);
    const problems: OvfProblem[] = [];
    const descriptorEntry = list.find((e) => extname(e.name).toLowerCase() === ".ovf");
    if (descriptorEntry === undefined) throw new FormatError("OVA_NO_DESCRIPTOR", `ova: ${path} holds no .ovf descriptor`, { context: { entries: list.length } });
    if (descriptorEntry.index !== 0) {
      problems.push({ code: "OVA_DESCRIPTOR_NOT_FIRST", path: descriptorEntry.name, message: `the descriptor is entry ${descriptorEntry.index}; DSP0243 §5.3 requires it first, and streaming importers fail otherwise` });
    }
    const extraDescriptors = list.filter((e) => e !== descriptorEntry && extname(e.name).toLowerCase() === ".ovf");
    for (const extra of extraDescriptors) problems.push({ code: "OVA_EXTRA_DESCRIPTOR", path: extra.name, message: `a second descriptor; only ${descriptorEntry.name} is read` });
    const text = await readSmall(archive, descriptorEntry.offsetBytes, descriptorEntry.sizeBytes, OVF_MAX_DESCRIPTOR_BYTES, "OVF_DESCRIPTOR_TOO_LARGE", `ova: descriptor ${descriptorEntry.name}`);
    const descriptor = readOvf(text, { name: `${path}!${descriptorEntry.name}`, sourceFor: (file) => ({ kind: "ova", path, entry: file.href }) });
    const entries = new Map(list.map((e) => [e.name, e]));
    const manifestName = `${descriptorEntry.name.slice(0, -extname(descriptorEntry.name).length)}.mf`;
    const manifestEntry = entries.get(manifestName);
    let manifest: ManifestLine[] | undefined;
    if (manifestEntry !== undefined) {
      const bytes = await readSmall(archive, manifestEntry.offsetBytes, manifestEntry.sizeBytes, MANIFEST_MAX_BYTES, "MANIFEST_TOO_LARGE", `ova: manifest ${manifestName}`);
      manifest = parseManifest(bytes.toString("utf8"), `${path}!${manifestName}`);
    }
    for (const file of descriptor.files) {
      const entry = entries.get(file.href);
      if (entry === undefined) {
        if (file.chunkSizeBytes === undefined) problems.push({ code: "OVF_FILE_MISSING", path: `References.File[${file.id}]`, message: `"${file.href}" is not in the archive` });
      } else if (file.sizeBytes !== undefined && file.sizeBytes !== entry.sizeBytes) {
        problems.push({ code: "OVA_FILE_SIZE_MISMATCH", path: `References.File[${file.id}].size`, message: `"${file.href}" is ${entry.sizeBytes} bytes in the archive but the descriptor says ${file.sizeBytes}` });
      }
    }
    return new OvaPackage({
      path,
      archive,
      entries,
      descriptorName: descriptorEntry.name,
      descriptor,
      ...(manifestEntry === undefined ? {} : { manifestName, manifest: manifest as ManifestLine[] }),
      problems: [...descriptor.problems, ...problems],
    });
  } catch (err) {
    await archive.close();
    throw err;
  }
}

class FolderPackage extends PackageBase {
  readonly kind = "ovf";
  private readonly opener: (name: string) => Promise<ByteSource>;

  constructor(init: { path: string; descriptor: OvfDescriptor; files: string[]; manifestName?: string; manifest?: ManifestLine[]; problems: OvfProblem[] }) {
    super({ ...init, descriptorName: basename(init.path) });
    this.opener = siblingOpener(init.path);
  }

  async openFile(name: string): Promise<ByteSource> {
    if (!this.files.includes(name)) throw new FormatError("OVF_FILE_MISSING", `ovf: ${this.path}: "${name}" is not a file of this package`, { context: { file: name } });
    return this.opener(name);
  }

  /** A descriptor-style VMDK's extent files sit beside it without being References; stay inside the folder. */
  protected override openRelative(name: string): Promise<ByteSource> {
    return this.opener(name);
  }

  async close(): Promise<void> {}
}

async function exists(open: (name: string) => Promise<ByteSource>, name: string): Promise<boolean> {
  try {
    await (await open(name)).close();
    return true;
  } catch (err) {
    if (err instanceof FormatError) throw err;
    return false;
  }
}

/** Opens a descriptor on disk with its files beside it. */
export async function openOvfFolder(path: string): Promise<OvfPackage> {
  const bytes = await openFileSource(path);
  let text: Buffer;
  try {
    text = await readSmall(bytes, 0, bytes.sizeBytes, OVF_MAX_DESCRIPTOR_BYTES, "OVF_DESCRIPTOR_TOO_LARGE", `ovf: descriptor ${path}`);
  } finally {
    await bytes.close();
  }
  const folder = dirname(resolve(path));
  const descriptor = readOvf(text, { name: path, sourceFor: (file) => ({ kind: "file", path: resolve(folder, file.href) }) });
  const open = siblingOpener(path);
  const problems: OvfProblem[] = [];
  const files = [basename(path)];
  for (const file of descriptor.files) {
    let present: boolean;
    try {
      present = await exists(open, file.href);
    } catch (err) {
      problems.push({ code: (err as FormatError).code, path: `References.File[${file.id}].href`, message: (err as Error).message });
      continue;
    }
    if (present) files.push(file.href);
    else if (file.chunkSizeBytes === undefined) problems.push({ code: "OVF_FILE_MISSING", path: `References.File[${file.id}]`, message: `"${file.href}" is not beside the descriptor` });
  }
  const manifestName = `${basename(path, extname(path))}.mf`;
  let manifest: ManifestLine[] | undefined;
  if (await exists(open, manifestName)) {
    const source = await open(manifestName);
    try {
      manifest = parseManifest((await readSmall(source, 0, source.sizeBytes, MANIFEST_MAX_BYTES, "MANIFEST_TOO_LARGE", `ovf: manifest ${manifestName}`)).toString("utf8"), manifestName);
    } finally {
      await source.close();
    }
    files.push(manifestName);
  }
  return new FolderPackage({ path, descriptor, files, ...(manifest === undefined ? {} : { manifestName, manifest }), problems: [...descriptor.problems, ...problems] });
}

/** The disk, closing the package after it: the caller holds one handle, not two. */
function closingPackage(disk: DiskSource, pkg: OvfPackage): DiskSource {
  return {
    format: disk.format,
    ...(disk.subformat === undefined ? {} : { subformat: disk.subformat }),
    virtualSizeBytes: disk.virtualSizeBytes,
    extents: () => disk.extents(),
    read: (offsetBytes, lengthBytes, into) => disk.read(offsetBytes, lengthBytes, into),
    async close() {
      try {
        await disk.close();
      } finally {
        await pkg.close();
      }
    },
  };
}

/** The entries the descriptor's disks are stored in (File hrefs), each once, in DiskSection order. */
export function diskEntries(pkg: OvfPackage): string[] {
  return [...new Set(pkg.descriptor.disks.flatMap((d) => (d.file === undefined ? [] : [d.file.href])))];
}

/**
 * A disk inside an OVA by its tar entry name (the File href; the part after "!" in a
 * `file.ova!entry` location), streamed from the archive. An entry a descriptor disk uses opens as
 * that disk (its format, gzip, chunks); an entry no disk uses is read as its bytes say. `format`
 * overrides both. Closing the DiskSource closes the archive.
 */
export async function openOvaEntry(path: string, entry: string, options: { readonly format?: DiskFormatName } = {}): Promise<DiskSource> {
  const pkg = await openOva(path);
  try {
    const disk = pkg.descriptor.disks.find((d) => d.file?.href === entry);
    let source: DiskSource;
    if (disk !== undefined) source = await pkg.openDisk(disk.diskId, options);
    else if (pkg.files.includes(entry)) source = await openDiskBytes(await pkg.openFile(entry), options.format, (name) => pkg.openFile(name));
    else {
      const entries = diskEntries(pkg);
      const disks = entries.length === 0 ? "it holds no disk files" : `its disks: ${entries.map((e) => formatOvaLocation(path, e)).join(", ")}`;
      throw new FormatError("OVA_ENTRY_MISSING", `ova: ${path} has no entry "${entry}"; ${disks}`, { context: { entry, diskEntries: entries.join(", ") } });
    }
    return closingPackage(source, pkg);
  } catch (err) {
    await pkg.close();
    throw err;
  }
}

/**
 * What opening a whole OVA as a disk fails with: an archive is not an image, and reading its
 * tar headers as raw sectors would copy the wrong bytes. The message names the locations to use.
 */
export async function ovaIsArchiveError(path: string): Promise<InvalidArgsError> {
  let detail: string;
  try {
    const pkg = await openOva(path);
    try {
      const entries = diskEntries(pkg);
      detail = entries.length === 0 ? "it holds no disk files" : `name a disk inside it: ${entries.map((e) => formatOvaLocation(path, e)).join(", ")}`;
    } finally {
      await pkg.close();
    }
  } catch (err) {
    detail = `and cannot be read as an OVA: ${(err as Error).message}`;
  }
  return new InvalidArgsError("OVA_IS_ARCHIVE", `${path} is an OVA (a tar archive), not a disk image; ${detail}`, { context: { path } });
}
