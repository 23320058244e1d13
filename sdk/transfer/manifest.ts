// Block manifests: a SHA-256 per block of a virtual disk, the ground truth for incremental
// sync. The emulators get change tracking wrong (DESIGN.md), so deltas come from comparing our
// own manifests, never from a service's changed-block list.
import { createHash } from "node:crypto";
import { InvalidArgsError } from "../errors.ts";
import type { DiskSource } from "../disk/types.ts";

/** 512 KiB: the EBS direct-API block, and a divisor of Azure's 4 MiB page-write limit. */
export const DEFAULT_MANIFEST_BLOCK_BYTES = 512 * 1024;
/** Manifest reads: large enough to keep a source busy, one block multiple. */
const READ_BYTES = 4 * 1024 * 1024;

export interface ManifestJson {
  readonly version: 1;
  readonly virtualSizeBytes: number;
  readonly blockSizeBytes: number;
  /** Hex SHA-256 by block index, for blocks holding any non-zero byte; absent blocks are zero. */
  readonly blocks: Readonly<Record<string, string>>;
}

/**
 * Hashes of the non-zero blocks only, so memory follows the data, not the virtual size: a 1 TiB
 * disk holding 64 MiB keeps 128 entries.
 */
export class BlockManifest {
  readonly virtualSizeBytes: number;
  readonly blockSizeBytes: number;
  readonly #hashes: Map<number, Buffer>;

  constructor(virtualSizeBytes: number, blockSizeBytes = DEFAULT_MANIFEST_BLOCK_BYTES, hashes = new Map<number, Buffer>()) {
    if (!Number.isInteger(blockSizeBytes) || blockSizeBytes < 512 || blockSizeBytes % 512 !== 0) {
      throw new InvalidArgsError("INVALID_BLOCK_SIZE", `manifest: block size must be a multiple of 512, got ${blockSizeBytes}`);
    }
    this.virtualSizeBytes = virtualSizeBytes;
    this.blockSizeBytes = blockSizeBytes;
    this.#hashes = hashes;
  }

  get blockCount(): number {
    return Math.ceil(this.virtualSizeBytes / this.blockSizeBytes);
  }

  /** The block's hash, or undefined for an all-zero block. */
  hash(blockIndex: number): Buffer | undefined {
    return this.#hashes.get(blockIndex);
  }

  /** Records a block from its bytes; an all-zero block is recorded as absent. */
  record(blockIndex: number, data: Buffer): void {
    if (isZero(data)) this.#hashes.delete(blockIndex);
    else this.#hashes.set(blockIndex, createHash("sha256").update(data).digest());
  }

  /** Indexes of non-zero blocks, ascending. */
  dataBlocks(): number[] {
    return [...this.#hashes.keys()].sort((a, b) => a - b);
  }

  toJSON(): ManifestJson {
    const blocks: Record<string, string> = {};
    for (const index of this.dataBlocks()) blocks[index] = this.#hashes.get(index)!.toString("hex");
    return { version: 1, virtualSizeBytes: this.virtualSizeBytes, blockSizeBytes: this.blockSizeBytes, blocks };
  }

  static fromJSON(json: ManifestJson): BlockManifest {
    const hashes = new Map<number, Buffer>();
    for (const [index, hex] of Object.entries(json.blocks)) hashes.set(Number(index), Buffer.from(hex, "hex"));
    return new BlockManifest(json.virtualSizeBytes, json.blockSizeBytes, hashes);
  }
}

const ZERO_BLOCK = Buffer.alloc(DEFAULT_MANIFEST_BLOCK_BYTES);

function isZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZERO_BLOCK.length) {
    const piece = data.subarray(at, Math.min(data.length, at + ZERO_BLOCK.length));
    if (!piece.equals(ZERO_BLOCK.subarray(0, piece.length))) return false;
  }
  return true;
}

/** Hashes a whole source, skipping its zero extents without reading them. */
export async function buildManifest(source: DiskSource, blockSizeBytes = DEFAULT_MANIFEST_BLOCK_BYTES): Promise<BlockManifest> {
  const manifest = new BlockManifest(source.virtualSizeBytes, blockSizeBytes);
  const readBytes = Math.max(blockSizeBytes, Math.floor(READ_BYTES / blockSizeBytes) * blockSizeBytes);
  let nextBlock = 0;
  for await (const extent of source.extents()) {
    if (extent.kind === "zero") continue;
    const end = extent.offsetBytes + extent.lengthBytes;
    // Whole blocks touching this extent, each hashed once even if extents split it.
    let block = Math.max(nextBlock, Math.floor(extent.offsetBytes / blockSizeBytes));
    while (block * blockSizeBytes < end) {
      const start = block * blockSizeBytes;
      const length = Math.min(readBytes, source.virtualSizeBytes - start);
      const data = await source.read(start, length);
      for (let at = 0; at < data.length; at += blockSizeBytes) manifest.record(block++, data.subarray(at, at + blockSizeBytes));
    }
    nextBlock = block;
  }
  return manifest;
}

/** Blocks whose content differs between two manifests of the same geometry, ascending. */
export function changedBlocks(previous: BlockManifest, next: BlockManifest): number[] {
  if (previous.blockSizeBytes !== next.blockSizeBytes) {
    throw new InvalidArgsError("MANIFEST_MISMATCH", `manifests use different block sizes (${previous.blockSizeBytes}, ${next.blockSizeBytes})`);
  }
  const candidates = new Set([...previous.dataBlocks(), ...next.dataBlocks()]);
  const changed: number[] = [];
  for (const index of candidates) {
    const a = previous.hash(index);
    const b = next.hash(index);
    if (a === undefined || b === undefined ? a !== b : !a.equals(b)) changed.push(index);
  }
  return changed.sort((x, y) => x - y);
}
