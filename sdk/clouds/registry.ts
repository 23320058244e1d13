// The one registry of the platforms: where a workload's disk goes on a placement (each
// platform's location module builds and parses its strings), what a user or a placement names
// (a file path, `file.ova!entry`, `ebs://…`, `azblob://…` / a blob SAS URL / `azdisk://…`,
// `vsphere://…`) opened as a source, each platform's disk driver and machine driver. The drivers
// implement the contracts (sdk/contracts) and import nothing from sdk/transfer or sdk/migrate
// (tests/unit/layering.test.ts). Cloud SDKs, the vim25 client and the OVF reader load only when
// their form is used.
import { ebsDiskTarget, isEbsUrl, parseEbsUrl } from "./aws/url.ts";
import { azblobDiskTarget, isAzureDiskUrl } from "./azure/url.ts";
import { localDiskTarget } from "./local/location.ts";
import { isVsphereDiskUrl, vsphereConnectionFromEnv, vsphereDiskTarget, vsphereSettingsOf } from "./vsphere/location.ts";
import { convert, type ConvertProgress } from "../disk/convert.ts";
import { formatByName } from "../disk/formats/index.ts";
import { openDisk } from "../disk/open.ts";
import type { DiskSource } from "../disk/types.ts";
import { isOvaFile, resolveOvaLocation } from "../ovf/ova-location.ts";
import type { DiskContext, DiskDriver, OpenedReplica } from "../contracts/disk-driver.ts";
import type { Placement, PlacementKind } from "../spec/placement.ts";
import type { MachineDriver } from "../contracts/machine-driver.ts";

/**
 * `format` skips detection; for a bare OVA it also skips the OVA_IS_ARCHIVE refusal, so a tar
 * archive can still be read as raw bytes on purpose.
 */
export async function openSource(text: string, format?: string): Promise<DiskSource> {
  if (isEbsUrl(text)) return (await import("./aws/open-url.ts")).openEbsUrl(text);
  if (isAzureDiskUrl(text)) return (await import("./azure/open-url.ts")).openAzureDiskSource(text);
  // vsphere/source-url.ts loads the vim25 client, so only when used.
  if (isVsphereDiskUrl(text)) return (await import("./vsphere/source-url.ts")).openVsphereSource(text);
  const named = format === undefined ? {} : { format: formatByName(format).name };
  const inOva = await resolveOvaLocation(text);
  if (inOva !== undefined) return (await import("../ovf/package.ts")).openOvaEntry(inOva.path, inOva.entry, named);
  if (format === undefined && (await isOvaFile(text))) throw await (await import("../ovf/package.ts")).ovaIsArchiveError(text);
  return openDisk(text, named);
}

/** A cloud that `portable convert` writes a disk into, named by its output string. */
export interface CloudOutput {
  /** For progress lines: "ebs", "azure page blob". */
  readonly label: string;
  /** What the cloud stores, the only output format it takes: EBS raw blocks, a page blob a fixed VHD. */
  readonly format: "raw" | "vhd";
  /** Copies `source` there; `printed` is the line for stdout (ids or the blob), `location` what was written. */
  write(source: DiskSource, options: { readonly overwrite: boolean; readonly concurrency?: number; readonly progress?: (p: ConvertProgress) => void }): Promise<{ readonly location: string; readonly printed: string; readonly dataBytesWritten: number }>;
}

/**
 * The cloud an output string names (`ebs://?…`, `azblob://…`, a blob SAS URL, `azdisk://…`), or
 * undefined for a file or stdout. A malformed `ebs://` fails here, before any input is opened.
 * The cloud SDKs load only in write().
 */
export function cloudOutputFor(text: string): CloudOutput | undefined {
  if (isEbsUrl(text)) {
    parseEbsUrl(text);
    return {
      label: "ebs",
      format: "raw",
      async write(source, { concurrency, progress }) {
        const { convertToEbsUrl } = await import("./aws/open-url.ts");
        const result = await convertToEbsUrl(source, text, { ...(progress ? { progress } : {}), ...(concurrency === undefined ? {} : { concurrency }) });
        return { location: result.snapshotId, printed: result.imageId === undefined ? result.snapshotId : `${result.snapshotId} ${result.imageId}`, dataBytesWritten: result.dataBytesWritten };
      },
    };
  }
  if (isAzureDiskUrl(text)) {
    return {
      label: "azure page blob",
      format: "vhd",
      async write(source, { overwrite, concurrency, progress }) {
        const { createAzureDiskSink } = await import("./azure/open-url.ts");
        const sink = await createAzureDiskSink(text, { virtualSizeBytes: source.virtualSizeBytes, overwrite });
        const result = await convert(source, sink, { ...(progress ? { progress } : {}), ...(concurrency === undefined ? {} : { concurrency }) });
        return { location: `${result.location} (fixed vhd)`, printed: result.location, dataBytesWritten: result.dataBytesWritten };
      },
    };
  }
  return undefined;
}

/** The disk driver of the platform a target string names (its location module recognised it). */
export async function diskDriverFor(target: string): Promise<DiskDriver> {
  switch (placementKindOf(target)) {
    case "aws":
      return (await import("./aws/disk-driver.ts")).awsDiskDriver;
    case "azure":
      return (await import("./azure/disk-driver.ts")).azureDiskDriver;
    case "vsphere":
      return (await import("./vsphere/disk-driver.ts")).vsphereDiskDriver;
    case "local":
      return (await import("./local/disk-driver.ts")).localDiskDriver;
  }
}

/** The platform a target string is on; any plain path is a local raw file. */
export function placementKindOf(target: string): PlacementKind {
  if (isEbsUrl(target)) return "aws";
  if (isAzureDiskUrl(target)) return "azure";
  if (isVsphereDiskUrl(target)) return "vsphere";
  return "local";
}

/**
 * Where a workload's disk goes on a placement, as its platform's location module builds it:
 * `file` is the disk's file-name-safe name, `folder` the workload's (a vSphere folder by default).
 */
export function diskTargetOn(placement: Placement, names: { readonly workload: string; readonly folder: string; readonly file: string }): string {
  switch (placement.kind) {
    case "local":
      return localDiskTarget(placement, names.file);
    case "aws":
      return ebsDiskTarget(placement, names.workload, names.file);
    case "azure":
      return azblobDiskTarget(placement, names.file);
    case "vsphere":
      return vsphereDiskTarget(placement, names.folder, names.file);
  }
}

/**
 * What a placement's drivers need besides its strings: the vCenter connection of a vsphere
 * placement, its password read from the environment now (absent when unset: the operation that
 * needs it says VSPHERE_CONNECTION_MISSING).
 */
export function placementContext(placement: Placement, env: NodeJS.ProcessEnv = process.env): DiskContext {
  if (placement.kind !== "vsphere") return {};
  const vsphere = vsphereConnectionFromEnv(vsphereSettingsOf(placement), env);
  return vsphere === undefined ? {} : { vsphere };
}

/** The block replica target at a disk's target string, on whichever platform it names. */
export async function openReplicaTarget(text: string, virtualSizeBytes: number, context: DiskContext = {}): Promise<OpenedReplica> {
  return (await diskDriverFor(text)).openReplicaTarget(text, virtualSizeBytes, context);
}

/**
 * The machine driver of a platform (contracts/machine-driver.ts), loaded on first use. On AWS and
 * Azure the machine is the official provider's, created after the cutover: their drivers stop,
 * start and find a source's machine.
 */
export async function machineDriver(kind: PlacementKind): Promise<MachineDriver> {
  switch (kind) {
    case "local":
      return (await import("./local/machine-driver.ts")).localMachineDriver;
    case "vsphere":
      return (await import("./vsphere/machine-driver.ts")).vsphereMachineDriver;
    case "aws":
      return (await import("./aws/machine-driver.ts")).awsMachineDriver;
    case "azure":
      return (await import("./azure/machine-driver.ts")).azureMachineDriver;
  }
}
