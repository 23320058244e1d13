// One call from a path (.ovf, .ova or .vmx) to what the CLI's `ovf` command prints: the
// Workload(s), where each disk's bytes are, the manifest check, and every problem with its path.
// summarizeOva() is what `portable inspect file.ova` prints: the archive's disks, each opened.
import { basename, dirname, extname, resolve } from "node:path";
import type { Readable } from "node:stream";
import { InvalidArgsError } from "../errors.ts";
import { openFileSource } from "../disk/io.ts";
import { openDisk, siblingOpener } from "../disk/open.ts";
import type { Workload } from "../spec/workload.ts";
import type { ManifestReport } from "./manifest.ts";
import type { OvfProblem } from "./ovf-reader.ts";
import { scanOvaStream } from "./ova-stream.ts";
import { formatOvaLocation } from "./ova-location.ts";
import { diskEntries, openOva, openOvfFolder } from "./package.ts";
import { readVmx, VMX_MAX_BYTES } from "./vmx.ts";

export interface DiskReference {
  /** The Workload disk id. */
  readonly id: string;
  /** Where the bytes are: a file path, or `<ova>!<entry>`. */
  readonly location: string;
  readonly format?: string;
  readonly compression?: "gzip";
  /** Size of the stored file, when known. */
  readonly fileSizeBytes?: number;
}

export interface DescribedSystem {
  readonly id: string;
  readonly workload?: Workload;
  readonly disks: readonly DiskReference[];
}

export interface PackageDescription {
  readonly path: string;
  readonly kind: "ovf" | "ova" | "vmx";
  readonly ovfVersion?: "1.x" | "2.x";
  readonly systems: readonly DescribedSystem[];
  /** Undefined when the package has no manifest (and always for a VMX). */
  readonly manifest?: ManifestReport;
  readonly problems: readonly OvfProblem[];
}

async function describeVmx(path: string): Promise<PackageDescription> {
  const bytes = await openFileSource(path);
  let text: string;
  try {
    if (bytes.sizeBytes > VMX_MAX_BYTES) throw new InvalidArgsError("VMX_TOO_LARGE", `vmx: ${path} is over ${VMX_MAX_BYTES} bytes`);
    text = (await bytes.read(0, bytes.sizeBytes)).toString("utf8");
  } finally {
    await bytes.close();
  }
  // First pass finds the disks; each is opened (read-only, inside the VMX's folder) for its size.
  const first = readVmx(text, new Map(), basename(path));
  const sizes = new Map<string, number>();
  const problems: OvfProblem[] = [];
  const open = siblingOpener(path);
  for (const disk of first.disks) {
    try {
      await (await open(disk.fileName)).close();
      const source = await openDisk(resolve(dirname(path), disk.fileName));
      sizes.set(disk.fileName, source.virtualSizeBytes);
      await source.close();
    } catch (err) {
      problems.push({ code: (err as { code?: string }).code ?? "VMX_DISK_UNREADABLE", path: `${disk.device}.fileName`, message: (err as Error).message });
    }
  }
  const result = readVmx(text, sizes, basename(path));
  return {
    path,
    kind: "vmx",
    systems: [
      {
        id: basename(path, extname(path)),
        ...(result.workload === undefined ? {} : { workload: result.workload }),
        disks: result.disks.map((d) => ({ id: d.id, location: resolve(dirname(path), d.fileName), format: "vmdk" })),
      },
    ],
    problems: [...problems, ...result.problems.filter((p) => p.code !== "VMX_DISK_SIZE_UNKNOWN" || !problems.some((q) => q.path === p.path))],
  };
}

/** Reads a package or VMX by its extension; `verify` hashes every file listed in the manifest. */
export async function describePackage(path: string, options: { readonly verify?: boolean } = {}): Promise<PackageDescription> {
  const extension = extname(path).toLowerCase();
  if (extension === ".vmx") return describeVmx(path);
  if (extension !== ".ovf" && extension !== ".ova") {
    throw new InvalidArgsError("OVF_UNKNOWN_EXTENSION", `ovf: ${path} is not a .ovf, .ova or .vmx file`, { context: { path } });
  }
  const pkg = extension === ".ova" ? await openOva(path) : await openOvfFolder(path);
  try {
    const manifest = options.verify === false ? undefined : await pkg.verifyManifest();
    const folder = dirname(resolve(path));
    return {
      path,
      kind: pkg.kind,
      ovfVersion: pkg.descriptor.ovfVersion,
      systems: pkg.descriptor.systems.map((system) => ({
        id: system.id,
        ...(system.workload === undefined ? {} : { workload: system.workload }),
        disks: system.attachments.map((a) => ({
          id: a.id,
          location: a.file === undefined ? "(blank)" : pkg.kind === "ova" ? formatOvaLocation(path, a.file.href) : resolve(folder, a.file.href),
          ...(a.format === undefined ? {} : { format: a.format }),
          ...(a.file?.compression === undefined ? {} : { compression: a.file.compression }),
          ...(a.file?.sizeBytes === undefined ? {} : { fileSizeBytes: a.file.sizeBytes }),
        })),
      })),
      ...(manifest === undefined ? {} : { manifest }),
      problems: pkg.problems,
    };
  } finally {
    await pkg.close();
  }
}

/**
 * An OVA arriving on a stream (`portable ovf -`): one pass that parses the descriptor, hashes
 * every entry and checks the manifest. Disk locations are `<name>!<entry>`.
 */
export async function describeOvaStream(input: Readable, name = "stdin"): Promise<PackageDescription> {
  const scan = await scanOvaStream(input, name);
  const sizes = new Map(scan.entries.map((e) => [e.name, e.sizeBytes]));
  return {
    path: name,
    kind: "ova",
    ovfVersion: scan.descriptor.ovfVersion,
    systems: scan.descriptor.systems.map((system) => ({
      id: system.id,
      ...(system.workload === undefined ? {} : { workload: system.workload }),
      disks: system.attachments.map((a) => ({
        id: a.id,
        location: a.file === undefined ? "(blank)" : formatOvaLocation(name, a.file.href),
        ...(a.format === undefined ? {} : { format: a.format }),
        ...(a.file?.compression === undefined ? {} : { compression: a.file.compression }),
        ...(a.file === undefined || sizes.get(a.file.href) === undefined ? {} : { fileSizeBytes: sizes.get(a.file.href) as number }),
      })),
    })),
    ...(scan.manifest === undefined ? {} : { manifest: scan.manifest }),
    problems: scan.problems,
  };
}

/** One disk entry of an OVA, as `portable inspect` lists it. */
export interface OvaDiskSummary {
  /** The tar entry (File href). */
  readonly entry: string;
  /** `<ova>!<entry>`: what every command that reads a disk accepts. */
  readonly location: string;
  /** DiskSection ids stored in this entry (usually one). */
  readonly diskIds: readonly string[];
  readonly format: string;
  readonly subformat?: string;
  readonly virtualSizeBytes: number;
}

export interface OvaSummary {
  readonly path: string;
  readonly kind: "ova";
  /** The descriptor's entry name. */
  readonly descriptor: string;
  readonly disks: readonly OvaDiskSummary[];
}

/** Opens each disk entry of an OVA in place for its format and virtual size. */
export async function summarizeOva(path: string): Promise<OvaSummary> {
  const pkg = await openOva(path);
  try {
    const disks: OvaDiskSummary[] = [];
    for (const entry of diskEntries(pkg)) {
      const diskIds = pkg.descriptor.disks.filter((d) => d.file?.href === entry).map((d) => d.diskId);
      const source = await pkg.openDisk(diskIds[0] as string);
      try {
        disks.push({
          entry,
          location: formatOvaLocation(path, entry),
          diskIds,
          format: source.format,
          ...(source.subformat === undefined ? {} : { subformat: source.subformat }),
          virtualSizeBytes: source.virtualSizeBytes,
        });
      } finally {
        await source.close();
      }
    }
    return { path, kind: "ova", descriptor: pkg.descriptorName, disks };
  } finally {
    await pkg.close();
  }
}
