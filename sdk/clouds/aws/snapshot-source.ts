// A DiskSource over a completed EBS snapshot: ListSnapshotBlocks gives the extents (listed blocks
// are data, the rest reads as zeros), GetSnapshotBlock reads the data, each block checked
// against its SHA-256. Reads of several blocks fetch them concurrently.
//
// Memory: the listing keeps one index and token per data block (about 100 bytes each), so it
// follows the allocated data, like a BlockManifest, not the virtual size.
import type { EBSClient } from "@aws-sdk/client-ebs";
import { InvalidArgsError } from "../../errors.ts";
import type { DiskSource, Extent } from "../../disk/types.ts";
import { EBS_BLOCK_BYTES, GiB } from "./ebs-block.ts";
import { getSnapshotBlock } from "./get-snapshot-block.ts";
import { listSnapshotBlocks, type SnapshotListing } from "./list-blocks.ts";

/**
 * GetSnapshotBlock requests in flight for one read(). convert() reads 1 MiB chunks (2 blocks)
 * four at a time; a manifest or hash reads 4 MiB (8 blocks). Sixteen covers both without letting
 * one large read flood the service.
 */
export const EBS_GET_CONCURRENCY = 16;

export interface EbsSnapshotSourceOptions {
  /**
   * The disk's size when it is smaller than the snapshot's whole GiB (an image of 2 GiB + 512 B
   * lives in a 3 GiB snapshot). @default the snapshot's volume size
   */
  readonly virtualSizeBytes?: number;
  readonly signal?: AbortSignal;
  readonly onRetry?: (error: unknown, attempt: number) => void;
}

export class EbsSnapshotSource implements DiskSource {
  readonly format = "ebs";
  readonly virtualSizeBytes: number;
  readonly snapshotId: string;
  readonly listing: SnapshotListing;
  readonly #ebs: EBSClient;
  readonly #tokens: ReadonlyMap<number, string>;
  readonly #options: EbsSnapshotSourceOptions;

  constructor(ebs: EBSClient, listing: SnapshotListing, options: EbsSnapshotSourceOptions = {}) {
    const volumeBytes = listing.volumeSizeGiB * GiB;
    const size = options.virtualSizeBytes ?? volumeBytes;
    if (!Number.isSafeInteger(size) || size <= 0 || size > volumeBytes) {
      throw new InvalidArgsError("EBS_INVALID_SIZE", `ebs source ${listing.snapshotId}: virtual size ${size} must be 1..${volumeBytes} bytes`, {
        context: { snapshotId: listing.snapshotId, virtualSizeBytes: size },
      });
    }
    this.#ebs = ebs;
    this.listing = listing;
    this.snapshotId = listing.snapshotId;
    this.virtualSizeBytes = size;
    this.#tokens = new Map(listing.blocks.map((b) => [b.blockIndex, b.blockToken]));
    this.#options = options;
  }

  async *extents(): AsyncGenerator<Extent> {
    let at = 0;
    let run: { start: number; end: number } | undefined;
    function* emit(start: number, end: number): Generator<Extent> {
      if (start > at) yield { offsetBytes: at, lengthBytes: start - at, kind: "zero" };
      yield { offsetBytes: start, lengthBytes: end - start, kind: "data" };
      at = end;
    }
    for (const { blockIndex } of this.listing.blocks) {
      const start = blockIndex * EBS_BLOCK_BYTES;
      if (start >= this.virtualSizeBytes) break;
      const end = Math.min(this.virtualSizeBytes, start + EBS_BLOCK_BYTES);
      if (run !== undefined && run.end === start) run.end = end;
      else {
        if (run !== undefined) yield* emit(run.start, run.end);
        run = { start, end };
      }
    }
    if (run !== undefined) yield* emit(run.start, run.end);
    if (at < this.virtualSizeBytes) yield { offsetBytes: at, lengthBytes: this.virtualSizeBytes - at, kind: "zero" };
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.virtualSizeBytes) {
      throw new InvalidArgsError("EBS_READ_RANGE", `ebs source ${this.snapshotId}: read at offset 0x${offsetBytes.toString(16)} (+${lengthBytes}) lies outside the ${this.virtualSizeBytes}-byte disk`, {
        context: { snapshotId: this.snapshotId, offsetBytes, lengthBytes },
      });
    }
    const out = Buffer.alloc(lengthBytes);
    const first = Math.floor(offsetBytes / EBS_BLOCK_BYTES);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / EBS_BLOCK_BYTES);
    const wanted: number[] = [];
    for (let index = first; index <= last && lengthBytes > 0; index++) if (this.#tokens.has(index)) wanted.push(index);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < wanted.length) {
        const index = wanted[next++]!;
        const block = await getSnapshotBlock(this.#ebs, this.snapshotId, index, this.#tokens.get(index)!, {
          ...(this.#options.signal ? { signal: this.#options.signal } : {}),
          ...(this.#options.onRetry ? { onRetry: this.#options.onRetry } : {}),
        });
        const blockStart = index * EBS_BLOCK_BYTES;
        const from = Math.max(offsetBytes, blockStart);
        const to = Math.min(offsetBytes + lengthBytes, blockStart + EBS_BLOCK_BYTES);
        block.copy(out, from - offsetBytes, from - blockStart, to - blockStart);
      }
    };
    await Promise.all(Array.from({ length: Math.min(EBS_GET_CONCURRENCY, wanted.length) }, worker));
    return out;
  }

  async close(): Promise<void> {}
}

/** Lists the snapshot's blocks (paged) and returns a source over it. */
export async function openEbsSnapshot(ebs: EBSClient, snapshotId: string, options: EbsSnapshotSourceOptions = {}): Promise<EbsSnapshotSource> {
  if (!/^snap-[0-9a-f]+$/.test(snapshotId)) {
    throw new InvalidArgsError("EBS_INVALID_SNAPSHOT_ID", `ebs source: "${snapshotId}" is not a snapshot id such as snap-0123abcd`, { context: { snapshotId } });
  }
  return new EbsSnapshotSource(ebs, await listSnapshotBlocks(ebs, snapshotId, options.signal), options);
}
