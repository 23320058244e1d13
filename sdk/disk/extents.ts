// Helpers for producing extent maps lazily.
import type { Extent } from "./types.ts";

/**
 * Merges adjacent extents of the same kind and drops empty ones, so a reader can emit one
 * extent per table entry and still hand out a compact map.
 */
export async function* coalesce(extents: AsyncIterable<Extent> | Iterable<Extent>): AsyncGenerator<Extent> {
  let pending: Extent | undefined;
  for await (const extent of extents) {
    if (extent.lengthBytes === 0) continue;
    if (pending !== undefined && pending.kind === extent.kind && pending.offsetBytes + pending.lengthBytes === extent.offsetBytes) {
      pending = { offsetBytes: pending.offsetBytes, lengthBytes: pending.lengthBytes + extent.lengthBytes, kind: pending.kind };
      continue;
    }
    if (pending !== undefined) yield pending;
    pending = extent;
  }
  if (pending !== undefined) yield pending;
}

/**
 * Extents of a disk split into fixed-size blocks (grains, clusters, payload blocks), where
 * `kindOf(blockIndex)` reads the block's table entry. The last block is cut at the virtual size.
 */
export function blockExtents(
  virtualSizeBytes: number,
  blockSizeBytes: number,
  kindOf: (blockIndex: number) => Promise<Extent["kind"]> | Extent["kind"],
): AsyncGenerator<Extent> {
  async function* perBlock(): AsyncGenerator<Extent> {
    const blocks = Math.ceil(virtualSizeBytes / blockSizeBytes);
    for (let blockIndex = 0; blockIndex < blocks; blockIndex++) {
      const offsetBytes = blockIndex * blockSizeBytes;
      yield {
        offsetBytes,
        lengthBytes: Math.min(blockSizeBytes, virtualSizeBytes - offsetBytes),
        kind: await kindOf(blockIndex),
      };
    }
  }
  return coalesce(perBlock());
}
