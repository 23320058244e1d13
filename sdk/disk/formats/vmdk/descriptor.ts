// The VMDK text descriptor (VDF5 §"The Descriptor File"): parsed line by line with hard bounds,
// because a hostile descriptor may be huge or list a million extents, and formatted for the
// writer with the fields ESXi and AWS import look for.
import { FormatError } from "../../../errors.ts";

/** Descriptors VMware writes are a few hundred bytes; 1 MiB leaves room for thousands of extents. */
export const VMDK_MAX_DESCRIPTOR_BYTES = 1024 * 1024;
/** A 64 TiB twoGbMaxExtentSparse disk has 32768 extents; 10000 covers every disk up to ~20 TiB. */
export const VMDK_MAX_EXTENTS = 10000;

export type ExtentAccess = "RW" | "RDONLY" | "NOACCESS";

export interface DescriptorExtent {
  readonly access: ExtentAccess;
  readonly sizeSectors: number;
  /** SPARSE, FLAT, ZERO, VMFS, VMFSSPARSE, VMFSRDM, VMFSRAW, SESPARSE... (upper case). */
  readonly type: string;
  readonly fileName?: string;
  /** Start of the extent's data inside a flat file, in sectors. */
  readonly offsetSectors: number;
  readonly line: number;
}

export interface Descriptor {
  readonly createType?: string;
  readonly cid?: string;
  readonly parentCid?: string;
  readonly parentFileNameHint?: string;
  readonly extents: readonly DescriptorExtent[];
  readonly ddb: ReadonlyMap<string, string>;
}

/** The parentCID of a disk without a parent (VDF5 §"Header": "ffffffff" means no parent). */
export const VMDK_NO_PARENT_CID = "ffffffff";

// Ref: VDF5 §"Extent Descriptions": `<access> <size in sectors> <type> ["<file name>" [<offset>]]`
const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$/;
const KEY_VALUE_LINE = /^([A-Za-z][\w.]*)\s*=\s*(.*?)\s*$/;

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/** Parses descriptor text. `name` is used in messages. */
export function parseDescriptor(text: Buffer, name: string): Descriptor {
  if (text.length > VMDK_MAX_DESCRIPTOR_BYTES) {
    throw new FormatError(
      "VMDK_DESCRIPTOR_TOO_LARGE",
      `vmdk: descriptor of ${text.length} bytes exceeds ${VMDK_MAX_DESCRIPTOR_BYTES} in ${name}`,
      { context: { sizeBytes: text.length } },
    );
  }
  // An embedded descriptor is NUL-padded to its reserved sectors.
  const nul = text.indexOf(0);
  const body = (nul === -1 ? text : text.subarray(0, nul)).toString("utf8");
  const extents: DescriptorExtent[] = [];
  const keys = new Map<string, string>();
  const ddb = new Map<string, string>();
  let lineNumber = 0;
  for (const rawLine of body.split("\n")) {
    lineNumber++;
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (/^(RW|RDONLY|NOACCESS)\s/.test(line)) {
      const match = EXTENT_LINE.exec(line);
      if (match === null) {
        throw new FormatError("VMDK_DESCRIPTOR_INVALID", `vmdk: malformed extent line ${lineNumber} in ${name}: ${line.slice(0, 120)}`, {
          context: { line: lineNumber },
        });
      }
      if (extents.length >= VMDK_MAX_EXTENTS) {
        throw new FormatError("VMDK_TOO_MANY_EXTENTS", `vmdk: descriptor ${name} lists more than ${VMDK_MAX_EXTENTS} extents`, {
          context: { line: lineNumber, maxExtents: VMDK_MAX_EXTENTS },
        });
      }
      const [, access, size, type, fileName, offset] = match;
      const sizeSectors = Number(size);
      const offsetSectors = offset === undefined ? 0 : Number(offset);
      if (!Number.isSafeInteger(sizeSectors) || !Number.isSafeInteger(offsetSectors)) {
        throw new FormatError("VMDK_DESCRIPTOR_INVALID", `vmdk: extent line ${lineNumber} in ${name} has an out-of-range number`, {
          context: { line: lineNumber },
        });
      }
      extents.push({
        access: access as ExtentAccess,
        sizeSectors,
        type: (type ?? "").toUpperCase(),
        ...(fileName === undefined ? {} : { fileName }),
        offsetSectors,
        line: lineNumber,
      });
      continue;
    }
    const kv = KEY_VALUE_LINE.exec(line);
    if (kv === null) continue;
    const key = kv[1] ?? "";
    const value = unquote(kv[2] ?? "");
    if (key.startsWith("ddb.")) ddb.set(key, value);
    else keys.set(key.toLowerCase(), value);
  }
  const createType = keys.get("createtype");
  const cid = keys.get("cid");
  const parentCid = keys.get("parentcid");
  const parentFileNameHint = keys.get("parentfilenamehint");
  return {
    ...(createType === undefined ? {} : { createType }),
    ...(cid === undefined ? {} : { cid }),
    ...(parentCid === undefined ? {} : { parentCid }),
    ...(parentFileNameHint === undefined ? {} : { parentFileNameHint }),
    extents,
    ddb,
  };
}

export type AdapterType = "ide" | "lsilogic" | "buslogic" | "pvscsi" | "lsisas1068";

export interface Geometry {
  readonly cylinders: number;
  readonly heads: number;
  readonly sectors: number;
}

/** BIOS CHS limit on cylinders that VMware applies to IDE disks. */
const IDE_MAX_CYLINDERS = 16383;
const IDE_HEADS = 16;
/** SCSI adapters' BIOS translation VMware uses for disks of any size. */
const SCSI_HEADS = 255;
const SECTORS_PER_TRACK = 63;

/**
 * CHS geometry VMware records for a disk (VDF5 §"The Disk Database"): IDE uses 16 heads and 63
 * sectors per track with cylinders capped at 16383; SCSI adapters use 255 heads and 63 sectors.
 * Cylinders round down (the geometry never claims more than the capacity) but are at least 1.
 */
export function vmdkGeometry(capacitySectors: number, adapterType: AdapterType): Geometry {
  const heads = adapterType === "ide" ? IDE_HEADS : SCSI_HEADS;
  let cylinders = Math.max(1, Math.floor(capacitySectors / (heads * SECTORS_PER_TRACK)));
  if (adapterType === "ide") cylinders = Math.min(cylinders, IDE_MAX_CYLINDERS);
  return { cylinders, heads, sectors: SECTORS_PER_TRACK };
}

export interface DescriptorSpec {
  /**
   * "vmfs": a descriptor beside a flat extent (ESXi's layout on a datastore); "vmfsSparse": one
   * beside a COWD delta extent (cowd.ts), which names its parent.
   */
  readonly createType: "monolithicSparse" | "streamOptimized" | "vmfs" | "vmfsSparse";
  readonly fileName: string;
  readonly capacitySectors: number;
  readonly adapterType: AdapterType;
  readonly hwVersion: number;
  /** 8 hex digits identifying this content (VDF5 §"Content ID"). */
  readonly cid: string;
  /** 32 hex digits; ESXi writes ddb.longContentID alongside the CID. */
  readonly longContentId: string;
  /** A delta's parent: its CID and its file name, beside this descriptor. */
  readonly parent?: { readonly cid: string; readonly fileNameHint: string };
}

const EXTENT_TYPE: Record<DescriptorSpec["createType"], string> = { monolithicSparse: "SPARSE", streamOptimized: "SPARSE", vmfs: "VMFS", vmfsSparse: "VMFSSPARSE" };

/** The descriptor text in the shape VMware's own tools write. */
export function formatDescriptor(spec: DescriptorSpec): string {
  const geometry = vmdkGeometry(spec.capacitySectors, spec.adapterType);
  // Descriptors name their extent files in quotes; a quote inside would end the name early.
  const fileName = spec.fileName.replaceAll('"', "_");
  return [
    "# Disk DescriptorFile",
    "version=1",
    'encoding="UTF-8"',
    `CID=${spec.cid}`,
    `parentCID=${spec.parent?.cid ?? VMDK_NO_PARENT_CID}`,
    `createType="${spec.createType}"`,
    ...(spec.parent === undefined ? [] : [`parentFileNameHint="${spec.parent.fileNameHint.replaceAll('"', "_")}"`]),
    "",
    "# Extent description",
    `RW ${spec.capacitySectors} ${EXTENT_TYPE[spec.createType]} "${fileName}"`,
    "",
    "# The Disk Data Base",
    "#DDB",
    "",
    `ddb.adapterType = "${spec.adapterType}"`,
    `ddb.geometry.cylinders = "${geometry.cylinders}"`,
    `ddb.geometry.heads = "${geometry.heads}"`,
    `ddb.geometry.sectors = "${geometry.sectors}"`,
    `ddb.longContentID = "${spec.longContentId}"`,
    ...(spec.createType === "vmfs" ? ['ddb.thinProvisioned = "1"'] : []),
    `ddb.virtualHWVersion = "${spec.hwVersion}"`,
    "",
  ].join("\n");
}
