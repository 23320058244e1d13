// EBS as a replication target: every pass is a new snapshot, an incremental child of the last
// pass's snapshot (ParentSnapshotId), holding only the blocks that changed; blocks that became
// zeros are written as zero blocks so the child does not inherit the parent's data.
//
// Resume: the pending snapshot's id is in the journal. EBS keeps a pending snapshot writable
// until its StartSnapshot timeout, so a rerun writes the remaining blocks into the same snapshot
// and completes it with the checksums of every block written by both runs (journal receipts).
//
// Read-back follows the chain newest-first, block by block. On AWS a child lists its inherited
// blocks too, so the newest snapshot answers every block; moto ignores ParentSnapshotId
// (DESIGN.md), so there the older links answer the inherited blocks. Either way the bytes read
// are what the chain holds.
import type { EBSClient } from "@aws-sdk/client-ebs";
import { DeleteSnapshotCommand, DescribeSnapshotsCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { InvalidArgsError } from "../../errors.ts";
import type { DiskSource, Extent } from "../../disk/types.ts";
import type { CommittedReplica, PendingPass, ReplicaPass, ReplicaTarget, TargetState } from "../../contracts/replica-target.ts";
import { callAws } from "./call.ts";
import { completeSnapshot, waitForSnapshotCompleted } from "./complete-snapshot.ts";
import { EBS_BLOCK_BYTES, sha256 } from "./ebs-block.ts";
import { putSnapshotBlock } from "./put-snapshot-block.ts";
import { EbsSnapshotSource } from "./snapshot-source.ts";
import { listSnapshotBlocks } from "./list-blocks.ts";
import { startSnapshot, type StartSnapshotOptions } from "./start-snapshot.ts";
import { EBS_PUT_CONCURRENCY } from "./snapshot-sink.ts";

export interface EbsReplicaOptions {
  readonly ebs: EBSClient;
  readonly ec2: EC2Client;
  readonly virtualSizeBytes: number;
  /** Description, tags, KMS key and timeout of each pass's snapshot. */
  readonly snapshot?: Omit<StartSnapshotOptions, "parentSnapshotId" | "clientToken" | "virtualSizeBytes">;
  /** PutSnapshotBlock calls in flight. @default EBS_PUT_CONCURRENCY */
  readonly concurrency?: number;
  /** Wait for `completed` after each pass. @default true */
  readonly waitForCompletion?: boolean;
}

/** targetState keys: the newest snapshot, and the chain newest-first (comma-separated). */
const SNAPSHOT = "snapshotId";
const CHAIN = "chain";

export function ebsReplica(options: EbsReplicaOptions): ReplicaTarget {
  const { ebs, ec2, virtualSizeBytes } = options;
  const chainOf = (base: CommittedReplica | undefined): string[] => {
    const chain = base?.targetState[CHAIN];
    return typeof chain === "string" && chain !== "" ? chain.split(",") : [];
  };

  const makePass = (snapshotId: string, chain: readonly string[], receipts: Map<number, Buffer>, completed = false): ReplicaPass => {
    const state: TargetState = { [SNAPSHOT]: snapshotId, [CHAIN]: [snapshotId, ...chain].join(",") };
    return {
      state,
      async write(blockIndex, _offset, data) {
        let block = data;
        if (data.length !== EBS_BLOCK_BYTES) {
          block = Buffer.alloc(EBS_BLOCK_BYTES);
          data.copy(block);
        }
        const checksum = sha256(block);
        await putSnapshotBlock(ebs, snapshotId, blockIndex, block, checksum);
        receipts.set(blockIndex, checksum);
        return checksum.toString("base64");
      },
      async commit() {
        if (!completed) await completeSnapshot(ebs, snapshotId, receipts);
        if (options.waitForCompletion !== false) await waitForSnapshotCompleted(ec2, snapshotId);
        return { location: snapshotId, state };
      },
      async abort() {
        await callAws({ operation: "DeleteSnapshot", code: "EC2_DELETE_SNAPSHOT_FAILED", context: { snapshotId } }, () =>
          ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId })),
        );
      },
    };
  };

  return {
    name: "ebs",
    virtualSizeBytes,
    alignmentBytes: EBS_BLOCK_BYTES,
    concurrency: options.concurrency ?? EBS_PUT_CONCURRENCY,
    async begin(base) {
      const chain = chainOf(base);
      const started = await startSnapshot(ebs, { ...options.snapshot, virtualSizeBytes, ...(chain[0] === undefined ? {} : { parentSnapshotId: chain[0] }) });
      return makePass(started.snapshotId, chain, new Map());
    },
    async resume(base, pending: PendingPass) {
      const snapshotId = pending.targetState[SNAPSHOT];
      if (typeof snapshotId !== "string") return undefined;
      const out = await callAws({ operation: "DescribeSnapshots", code: "EC2_DESCRIBE_SNAPSHOTS_FAILED", context: { snapshotId } }, () =>
        ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] })),
      ).catch(() => undefined);
      const state = out?.Snapshots?.[0]?.State;
      // A snapshot we started and never sealed is still ours to write. (moto reports every
      // snapshot "completed" at once; AWS says "pending" until CompleteSnapshot.)
      if (state === undefined || state === "error" || state === "recoverable") return undefined;
      if (state === "completed" && pending.sealing) return makePass(snapshotId, chainOf(base), new Map(), true);
      const receipts = new Map<number, Buffer>();
      for (const [index, { receipt }] of pending.done) if (receipt !== undefined) receipts.set(index, Buffer.from(receipt, "base64"));
      return makePass(snapshotId, chainOf(base), receipts);
    },
    async openReadBack(committed) {
      return openEbsChain(ebs, chainOf(committed), committed.manifest.virtualSizeBytes);
    },
    async destroy(committed) {
      for (const snapshotId of chainOf(committed)) {
        await callAws({ operation: "DeleteSnapshot", code: "EC2_DELETE_SNAPSHOT_FAILED", context: { snapshotId } }, () =>
          ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId })),
        ).catch((error: unknown) => {
          if (!/NotFound/.test(String((error as Error).message))) throw error;
        });
      }
    },
  };
}

/** A DiskSource over a snapshot chain, newest first: each block comes from the newest link listing it. */
export async function openEbsChain(ebs: EBSClient, chain: readonly string[], virtualSizeBytes: number): Promise<DiskSource> {
  if (chain.length === 0) throw new InvalidArgsError("EBS_EMPTY_CHAIN", "ebs read-back: the replica has no snapshot yet");
  const owner = new Map<number, EbsSnapshotSource>();
  for (const snapshotId of chain) {
    const listing = await listSnapshotBlocks(ebs, snapshotId);
    const source = new EbsSnapshotSource(ebs, listing, { virtualSizeBytes });
    for (const { blockIndex } of listing.blocks) if (!owner.has(blockIndex)) owner.set(blockIndex, source);
  }
  const indexes = [...owner.keys()].filter((i) => i * EBS_BLOCK_BYTES < virtualSizeBytes).sort((a, b) => a - b);
  return {
    format: "ebs",
    virtualSizeBytes,
    async *extents(): AsyncGenerator<Extent> {
      let at = 0;
      for (const index of indexes) {
        const start = index * EBS_BLOCK_BYTES;
        if (start > at) yield { offsetBytes: at, lengthBytes: start - at, kind: "zero" };
        const end = Math.min(virtualSizeBytes, start + EBS_BLOCK_BYTES);
        yield { offsetBytes: start, lengthBytes: end - start, kind: "data" };
        at = end;
      }
      if (at < virtualSizeBytes) yield { offsetBytes: at, lengthBytes: virtualSizeBytes - at, kind: "zero" };
    },
    async read(offsetBytes, lengthBytes) {
      const out = Buffer.alloc(lengthBytes);
      const reads: Array<Promise<void>> = [];
      for (let index = Math.floor(offsetBytes / EBS_BLOCK_BYTES); index * EBS_BLOCK_BYTES < offsetBytes + lengthBytes; index++) {
        const source = owner.get(index);
        if (source === undefined) continue;
        const from = Math.max(offsetBytes, index * EBS_BLOCK_BYTES);
        const to = Math.min(offsetBytes + lengthBytes, (index + 1) * EBS_BLOCK_BYTES);
        reads.push(source.read(from, to - from).then((piece) => void piece.copy(out, from - offsetBytes)));
      }
      await Promise.all(reads);
      return out;
    },
    async close() {},
  };
}
