// Change tracking of a disk on an EC2 instance (contracts: DiskSource.changes): each pass reads a
// snapshot of the instance's volume (live-volume.ts); with tracking, the pass's snapshot is kept
// as its token, and the next pass asks EBS ListChangedBlocks between that snapshot and its own
// for the blocks to read. The kept snapshot goes once a later pass commits; a cutover's final
// pass keeps nothing (no later pass will ask), so a move leaves no snapshot behind.
//
// EBS computes the answer from the snapshots' own block maps: what AWS MGN and backup tools use.
// Any failure (the kept snapshot deleted or expired, snapshots of different volumes, a throttled
// or broken answer) means "cannot say", and the pass scans everything. moto answers this call
// wrongly (it lists only blocks of the first snapshot, so a block new in the second is never
// listed, moto/ebs/models.py list_changed_blocks), and it cannot list changes of an EC2
// CreateSnapshot snapshot at all: the tests check this client against answers shaped as AWS
// documents them (pages, tokens, a block only in one snapshot), not against moto.
import type { EBSClient } from "@aws-sdk/client-ebs";
import type { EC2Client } from "@aws-sdk/client-ec2";
import type { ChangeTracking, DirtyRange } from "../../disk/types.ts";
import { snapshotTracking } from "../../contracts/snapshot-tracking.ts";
import { EBS_BLOCK_BYTES } from "./ebs-block.ts";
import { listChangedBlocks } from "./list-blocks.ts";
import { deleteSnapshot } from "./live-volume.ts";

const TOKEN = "ebs-snapshot:";

export function snapshotToken(snapshotId: string): string {
  return `${TOKEN}${snapshotId}`;
}

const SNAPSHOT_ID = /^snap-[0-9a-f]{8,32}$/;

/**
 * The ranges of the changed blocks between two snapshots, merged and clipped to the disk's size
 * (a volume is whole GiB). Blocks new in the second snapshot and blocks cleared in it both count.
 */
export async function changedRanges(ebs: EBSClient, first: string, second: string, virtualSizeBytes: number, signal?: AbortSignal): Promise<DirtyRange[]> {
  const ranges: DirtyRange[] = [];
  for (const block of await listChangedBlocks(ebs, first, second, signal)) {
    const offsetBytes = block.blockIndex * EBS_BLOCK_BYTES;
    if (offsetBytes >= virtualSizeBytes) break;
    const lengthBytes = Math.min(EBS_BLOCK_BYTES, virtualSizeBytes - offsetBytes);
    const last = ranges.at(-1);
    if (last !== undefined && last.offsetBytes + last.lengthBytes === offsetBytes) ranges[ranges.length - 1] = { offsetBytes: last.offsetBytes, lengthBytes: last.lengthBytes + lengthBytes };
    else ranges.push({ offsetBytes, lengthBytes });
  }
  return ranges;
}

/** Tracking for a pass over the snapshot `snapshotId` of a volume (contracts/snapshot-tracking.ts keeps and deletes). */
export function ebsChangeTracking(options: {
  readonly ebs: EBSClient;
  readonly ec2: EC2Client;
  readonly snapshotId: string;
  readonly virtualSizeBytes: number;
  readonly final: boolean;
  readonly release: (keep: boolean) => Promise<void>;
}): { readonly changes: ChangeTracking; release(): Promise<void> } {
  return snapshotTracking({
    snapshot: options.snapshotId,
    prefix: TOKEN,
    valid: (id) => SNAPSHOT_ID.test(id),
    diff: (earlier) => changedRanges(options.ebs, earlier, options.snapshotId, options.virtualSizeBytes),
    releaseView: options.release,
    deleteSnapshot: (id) => deleteSnapshot(options.ec2, id),
    final: options.final,
  });
}
