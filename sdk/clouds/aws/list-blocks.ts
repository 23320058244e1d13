// ListSnapshotBlocks and ListChangedBlocks, paged. Both answers are normalised the same way:
// indexes parsed as numbers (moto sends strings), sorted, de-duplicated, and checked to lie
// inside the volume. The block size the service reports is not used (moto says 512).
import { ListChangedBlocksCommand, ListSnapshotBlocksCommand, type EBSClient } from "@aws-sdk/client-ebs";
import { CloudError } from "../../errors.ts";
import { callAws } from "./call.ts";
import { EBS_BLOCK_BYTES, GiB, parseBlockIndex } from "./ebs-block.ts";

/** The largest page the API allows: the fewest round trips for a big listing. */
export const LIST_PAGE_SIZE = 10_000;

export interface SnapshotBlock {
  readonly blockIndex: number;
  readonly blockToken: string;
}

export interface SnapshotListing {
  readonly snapshotId: string;
  readonly volumeSizeGiB: number;
  /** Blocks holding data, ascending by index. */
  readonly blocks: readonly SnapshotBlock[];
}

/** Follows NextToken until the last page; a token that comes back twice is a service fault. */
async function* pages<T extends { NextToken?: string | undefined }>(operation: string, snapshotId: string, fetchPage: (token: string | undefined) => Promise<T>): AsyncGenerator<T> {
  const seen = new Set<string>();
  let token: string | undefined;
  do {
    const page = await fetchPage(token);
    yield page;
    token = page.NextToken === "" ? undefined : page.NextToken;
    if (token !== undefined) {
      if (seen.has(token)) throw new CloudError("EBS_LIST_LOOP", `${operation} ${snapshotId}: NextToken repeats; the listing does not end`, { context: { snapshotId, pages: seen.size } });
      seen.add(token);
    }
  } while (token !== undefined);
}

function volumeGiB(value: number | undefined, operation: string, snapshotId: string): number {
  if (value === undefined || !Number.isSafeInteger(value) || value <= 0) {
    throw new CloudError("EBS_BAD_LISTING", `${operation} ${snapshotId}: VolumeSize ${String(value)} is not a positive number of GiB`, { context: { snapshotId } });
  }
  return value;
}

export async function listSnapshotBlocks(ebs: EBSClient, snapshotId: string, signal?: AbortSignal): Promise<SnapshotListing> {
  const byIndex = new Map<number, string>();
  let volumeSizeGiB = 0;
  for await (const page of pages("ListSnapshotBlocks", snapshotId, (token) =>
    callAws({ operation: "ListSnapshotBlocks", code: "EBS_LIST_BLOCKS_FAILED", context: { snapshotId }, ...(signal ? { signal } : {}) }, () =>
      ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId, MaxResults: LIST_PAGE_SIZE, ...(token === undefined ? {} : { NextToken: token }) }), signal ? { abortSignal: signal } : {}),
    ),
  )) {
    volumeSizeGiB = volumeGiB(page.VolumeSize, "ListSnapshotBlocks", snapshotId);
    const blockCount = (volumeSizeGiB * GiB) / EBS_BLOCK_BYTES;
    for (const block of page.Blocks ?? []) {
      const blockIndex = parseBlockIndex(block.BlockIndex, blockCount, "ListSnapshotBlocks", snapshotId);
      if (block.BlockToken === undefined) {
        throw new CloudError("EBS_BAD_LISTING", `ListSnapshotBlocks ${snapshotId}: block ${blockIndex} has no BlockToken`, {
          context: { snapshotId, blockIndex, offsetBytes: blockIndex * EBS_BLOCK_BYTES },
        });
      }
      byIndex.set(blockIndex, block.BlockToken);
    }
  }
  const blocks = [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([blockIndex, blockToken]) => ({ blockIndex, blockToken }));
  return { snapshotId, volumeSizeGiB, blocks };
}

export interface ChangedBlock {
  readonly blockIndex: number;
  /** Token of the block in the first snapshot; absent when the block is new. */
  readonly firstBlockToken?: string;
  /** Token in the second snapshot; absent when the block was cleared. */
  readonly secondBlockToken?: string;
}

/**
 * ListChangedBlocks between two snapshots of one lineage: an optional accelerator only. Deltas
 * that must be right come from our block manifests (sdk/disk/manifest.ts); emulators get
 * this call wrong (DESIGN.md), so nothing here is trusted for correctness.
 */
export async function listChangedBlocks(ebs: EBSClient, firstSnapshotId: string, secondSnapshotId: string, signal?: AbortSignal): Promise<ChangedBlock[]> {
  const byIndex = new Map<number, ChangedBlock>();
  const label = `${firstSnapshotId}..${secondSnapshotId}`;
  for await (const page of pages("ListChangedBlocks", label, (token) =>
    callAws({ operation: "ListChangedBlocks", code: "EBS_LIST_BLOCKS_FAILED", context: { firstSnapshotId, secondSnapshotId }, ...(signal ? { signal } : {}) }, () =>
      ebs.send(
        new ListChangedBlocksCommand({ FirstSnapshotId: firstSnapshotId, SecondSnapshotId: secondSnapshotId, MaxResults: LIST_PAGE_SIZE, ...(token === undefined ? {} : { NextToken: token }) }),
        signal ? { abortSignal: signal } : {},
      ),
    ),
  )) {
    const blockCount = (volumeGiB(page.VolumeSize, "ListChangedBlocks", label) * GiB) / EBS_BLOCK_BYTES;
    for (const block of page.ChangedBlocks ?? []) {
      const blockIndex = parseBlockIndex(block.BlockIndex, blockCount, "ListChangedBlocks", label);
      byIndex.set(blockIndex, {
        blockIndex,
        ...(block.FirstBlockToken === undefined || block.FirstBlockToken === null ? {} : { firstBlockToken: block.FirstBlockToken }),
        ...(block.SecondBlockToken === undefined || block.SecondBlockToken === null ? {} : { secondBlockToken: block.SecondBlockToken }),
      });
    }
  }
  return [...byIndex.values()].sort((a, b) => a.blockIndex - b.blockIndex);
}
