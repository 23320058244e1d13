// ESX sparse extents ("COWD", extent type VMFSSPARSE, createType "vmfsSparse"; VDF5 §"ESXi
// Server Sparse Extents"): the delta disks ESXi keeps for snapshots on VMFS5 and NFS datastores.
// A delta's unallocated grains read from its parent (parentFileNameHint in its descriptor).
//
// Reading maps the header onto the hosted sparse extent's, because the grain directory and grain
// tables work the same way (sparse-extent.ts), with 4096 entries per table and no compression.
// Writing lays a delta out for a writer that knows every sector it will send before the first
// byte (a datastore PUT is sequential, and the header and tables come first): header, grain
// directory, the grain tables of the regions written, then the grains in disk order.
//
// Hand-written like the rest of the VMDK code: no maintained package writes COWD extents.
import { FormatError } from "../../../errors.ts";
import { isPowerOfTwo } from "../../layout.ts";
import { COWD_GTES_PER_GT, COWD_HEADER, COWD_HEADER_SECTORS, VMDK_COWD_MAGIC, VMDK_GTE_BYTES, VMDK_SECTOR_BYTES, type SparseExtentHeader } from "./layout.ts";
import { VMDK_MAX_GRAIN_BYTES } from "./sparse-extent.ts";

/** numSectors and every sector offset are 32 bits: a COWD extent and its file stay under 2 TiB. */
export const COWD_MAX_SECTORS = 0xffffffff;
/** The grain size ESXi writes for vmfsSparse deltas: one sector. */
export const COWD_GRAIN_SECTORS = 1;

const GT_BYTES = COWD_GTES_PER_GT * VMDK_GTE_BYTES;
const GT_SECTORS = GT_BYTES / VMDK_SECTOR_BYTES;

function fail(code: string, message: string, context: Record<string, number>): never {
  throw new FormatError(code, `vmdk: ${message}`, { context });
}

/** Reads and checks a COWD header (its first 32 bytes) as the sparse extent reader's header. */
export function parseCowdHeader(head: Buffer, name: string): SparseExtentHeader {
  const header = COWD_HEADER.get(head, 0);
  if (header.magicNumber !== VMDK_COWD_MAGIC) fail("VMDK_BAD_MAGIC", `${name} has no COWD magic`, { magic: header.magicNumber });
  if (header.version !== 1) fail("VMDK_UNSUPPORTED_VERSION", `${name} is COWD version ${header.version}; version 1 is known`, { version: header.version });
  const grain = header.grainSize;
  if (grain === 0 || !isPowerOfTwo(grain) || grain * VMDK_SECTOR_BYTES > VMDK_MAX_GRAIN_BYTES) {
    fail("VMDK_GRAIN_SIZE_INVALID", `${name} has grain size ${grain} sectors; it must be a power of two up to ${VMDK_MAX_GRAIN_BYTES} bytes`, { grainSizeSectors: grain });
  }
  const expectedEntries = Math.ceil(header.numSectors / (grain * COWD_GTES_PER_GT));
  if (header.numGDEntries < expectedEntries) {
    fail("VMDK_GD_TOO_SMALL", `${name} has ${header.numGDEntries} directory entries; ${header.numSectors} sectors need ${expectedEntries}`, { numGDEntries: header.numGDEntries, expectedEntries });
  }
  if (header.gdOffset < COWD_HEADER_SECTORS) fail("VMDK_GD_OFFSET_INVALID", `${name} puts its grain directory at sector ${header.gdOffset}, inside its header`, { gdOffset: header.gdOffset });
  return {
    magicNumber: header.magicNumber,
    version: header.version,
    // None of the hosted extent's flags (newline test, redundant directory, zeroed grains, compression) apply.
    flags: 0,
    capacitySectors: BigInt(header.numSectors),
    grainSizeSectors: BigInt(grain),
    descriptorOffsetSectors: 0n,
    descriptorSizeSectors: 0n,
    numGTEsPerGT: COWD_GTES_PER_GT,
    rgdOffsetSectors: 0n,
    gdOffsetSectors: BigInt(header.gdOffset),
    overHeadSectors: 0n,
    uncleanShutdown: 0,
    singleEndLineChar: 0,
    nonEndLineChar: 0,
    doubleEndLineChar1: 0,
    doubleEndLineChar2: 0,
    compressAlgorithm: 0,
  };
}

/** Sectors a delta holds, in disk order, none overlapping: [startSector, startSector + sectors). */
export interface SectorRun {
  readonly startSector: number;
  readonly sectors: number;
}

/**
 * A delta extent's file, in the order it is sent: `head` (header and grain directory), then each
 * of `tables()`, then the written sectors' data in disk order (grains of one sector).
 */
export interface CowdDeltaLayout {
  readonly head: Buffer;
  tables(): Generator<Buffer>;
  /** Bytes of head and tables, before the first grain. */
  readonly metadataBytes: number;
  /** The whole file. */
  readonly totalBytes: number;
}

/**
 * Lays out a delta of `capacitySectors` holding `runs` (sorted, disjoint). Undefined when its
 * file would pass COWD's 32-bit sector offsets (a delta of almost 2 TiB): write a whole disk instead.
 * Memory: the directory (4 bytes per 2 MiB of disk) and one table at a time.
 */
export function layoutCowdDelta(capacitySectors: number, runs: readonly SectorRun[]): CowdDeltaLayout | undefined {
  if (capacitySectors > COWD_MAX_SECTORS) return undefined;
  const coverage = COWD_GRAIN_SECTORS * COWD_GTES_PER_GT;
  const gdEntries = Math.ceil(capacitySectors / coverage);
  const gdSectors = Math.ceil((gdEntries * VMDK_GTE_BYTES) / VMDK_SECTOR_BYTES);
  const touched: number[] = [];
  let dataSectors = 0;
  let previousEnd = 0;
  for (const run of runs) {
    if (run.sectors <= 0 || run.startSector < previousEnd || run.startSector + run.sectors > capacitySectors) {
      throw new RangeError(`cowd: run ${run.startSector}+${run.sectors} is empty, out of order or past ${capacitySectors} sectors`);
    }
    previousEnd = run.startSector + run.sectors;
    dataSectors += run.sectors;
    for (let g = Math.floor(run.startSector / coverage); g <= Math.floor((previousEnd - 1) / coverage); g++) {
      if (touched[touched.length - 1] !== g) touched.push(g);
    }
  }
  const tablesStart = COWD_HEADER_SECTORS + gdSectors;
  const dataStart = tablesStart + touched.length * GT_SECTORS;
  const totalSectors = dataStart + dataSectors;
  if (totalSectors > COWD_MAX_SECTORS) return undefined;

  const head = Buffer.alloc((COWD_HEADER_SECTORS + gdSectors) * VMDK_SECTOR_BYTES);
  COWD_HEADER.put(head, 0, {
    magicNumber: VMDK_COWD_MAGIC,
    version: 1,
    // What ESXi writes in its deltas (VDF5's example); readers do not interpret it.
    flags: 3,
    numSectors: capacitySectors,
    grainSize: COWD_GRAIN_SECTORS,
    gdOffset: COWD_HEADER_SECTORS,
    numGDEntries: gdEntries,
    freeSector: totalSectors,
  });
  for (const [i, g] of touched.entries()) head.writeUInt32LE(tablesStart + i * GT_SECTORS, COWD_HEADER_SECTORS * VMDK_SECTOR_BYTES + g * VMDK_GTE_BYTES);

  function* tables(): Generator<Buffer> {
    // `before`: written sectors of the runs before runs[r], i.e. where runs[r]'s grains start.
    let r = 0;
    let before = 0;
    for (const g of touched) {
      const table = Buffer.alloc(GT_BYTES);
      const low = g * coverage;
      const high = low + coverage;
      while (r < runs.length && runs[r]!.startSector + runs[r]!.sectors <= low) before += runs[r++]!.sectors;
      for (let i = r, at = before; i < runs.length && runs[i]!.startSector < high; at += runs[i]!.sectors, i++) {
        const run = runs[i]!;
        const end = Math.min(high, run.startSector + run.sectors);
        for (let sector = Math.max(low, run.startSector); sector < end; sector++) {
          table.writeUInt32LE(dataStart + at + (sector - run.startSector), (sector - low) * VMDK_GTE_BYTES);
        }
      }
      yield table;
    }
  }
  return { head, tables, metadataBytes: dataStart * VMDK_SECTOR_BYTES, totalBytes: totalSectors * VMDK_SECTOR_BYTES };
}
