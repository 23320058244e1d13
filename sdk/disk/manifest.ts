// Block manifests: a SHA-256 per block of a virtual disk, the ground truth for incremental
// sync. The emulators get change tracking wrong (DESIGN.md), so deltas come from comparing our
// own manifests, never from a service's changed-block list.
// It lives in sdk/disk, not sdk/contracts: it needs only a DiskSource and sdk/errors, so it sits
// on the lowest floor, where the contracts (a replica's committed state), the drivers
// (sdk/clouds) and sdk/transfer may all use it.
import { createHash } from "node:crypto";
import { InvalidArgsError } from "../errors.ts";
import { z } from "zod";
import type { DiskSource } from "./types.ts";

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

const manifestJsonSchema = z.object({
  version: z.literal(1),
  virtualSizeBytes: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  blockSizeBytes: z.number().int().min(512).multipleOf(512),
  blocks: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)),
});

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

  /** Records a block from its bytes; an all-zero block is recorded as absent. Returns the hash. */
  record(blockIndex: number, data: Buffer): Buffer | undefined {
    const hash = blockHash(data);
    this.set(blockIndex, hash);
    return hash;
  }

  /** Sets a block's hash directly (undefined: the block is all zeros). */
  set(blockIndex: number, hash: Buffer | undefined): void {
    if (hash === undefined) this.#hashes.delete(blockIndex);
    else this.#hashes.set(blockIndex, hash);
  }

  /** Bytes held by non-zero blocks (the last block counted by its real length). */
  dataBytes(): number {
    let total = 0;
    for (const index of this.#hashes.keys()) total += Math.min(this.blockSizeBytes, this.virtualSizeBytes - index * this.blockSizeBytes);
    return total;
  }

  clone(): BlockManifest {
    return new BlockManifest(this.virtualSizeBytes, this.blockSizeBytes, new Map(this.#hashes));
  }

  /**
   * SHA-256 of the canonical JSON: what Pulumi state keeps instead of the manifest itself, and
   * how a checkpoint proves which base it continues.
   */
  digest(): string {
    return createHash("sha256").update(JSON.stringify(this.toJSON())).digest("hex");
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
    const parsed = manifestJsonSchema.safeParse(json);
    if (!parsed.success) {
      throw new InvalidArgsError("MANIFEST_INVALID", `manifest: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
    }
    const { virtualSizeBytes, blockSizeBytes, blocks } = parsed.data;
    const blockCount = Math.ceil(virtualSizeBytes / blockSizeBytes);
    const hashes = new Map<number, Buffer>();
    for (const [key, hex] of Object.entries(blocks)) {
      const index = Number(key);
      if (!Number.isSafeInteger(index) || index < 0 || index >= blockCount || String(index) !== key) {
        throw new InvalidArgsError("MANIFEST_INVALID", `manifest: block index ${JSON.stringify(key)} is not in [0, ${blockCount})`);
      }
      hashes.set(index, Buffer.from(hex, "hex"));
    }
    return new BlockManifest(virtualSizeBytes, blockSizeBytes, hashes);
  }
}

const ZERO_BLOCK = Buffer.alloc(DEFAULT_MANIFEST_BLOCK_BYTES);

/** A block's manifest hash: SHA-256 of its bytes, or undefined when they are all zeros. */
export function blockHash(data: Buffer): Buffer | undefined {
  return isZero(data) ? undefined : createHash("sha256").update(data).digest();
}

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
