// Placing one workload disk on a target, as the Pulumi providers and the CLI do it: open the
// source (wherever the disk is now), replicate it into the target (incrementally when a replica
// exists: flipping a workload back sends only what changed), verify, and report references.
// Pulumi state keeps the returned reference and digest, never the manifest.
import { createHash } from "node:crypto";
import { FileReplicaStore } from "../transfer/checkpoint.ts";
import { openReplicaTarget } from "../transfer/open-replica.ts";
import { openSource } from "../transfer/open-source.ts";
import { replicate, type ReplicateProgress } from "../transfer/replicate.ts";
import { verifyReplica, type VerifyPolicy } from "../transfer/verify.ts";
import { PortableError } from "../errors.ts";
import type { DiskSource } from "../disk/types.ts";

export interface PlaceDiskArgs {
  readonly workload: string;
  readonly disk: string;
  /**
   * Where the bytes are now: an image path, ebs://snap-…, azblob://…; or `{ replicaOf }`, the
   * target this disk was placed on before (a move reads that replica back, EBS chain included).
   */
  readonly source: string | { readonly replicaOf: string };
  readonly sourceFormat?: string;
  /** Where they go: a raw file path, ebs://?region=R, azblob://…. */
  readonly target: string;
  /** Replica state (manifests, journals). */
  readonly stateDir: string;
  readonly verify?: VerifyPolicy;
  readonly onProgress?: (progress: ReplicateProgress) => void;
}

export interface PlacedDisk {
  readonly key: string;
  readonly location: string;
  readonly virtualSizeBytes: number;
  readonly digest: string;
  readonly reference: string;
  readonly passes: number;
  readonly bytesSent: number;
  readonly blocksSent: number;
  readonly resumed: boolean;
  readonly verifiedBlocks: number;
}

/** One replica per (workload, disk, target): a flip back to a target reuses its replica. */
export function replicaKey(workload: string, disk: string, target: string): string {
  const plain = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+/, "").slice(0, 40) || "x";
  return `${plain(workload)}.${plain(disk)}.${createHash("sha256").update(target).digest("hex").slice(0, 12)}`;
}

export async function placeDisk(args: PlaceDiskArgs): Promise<PlacedDisk> {
  const store = new FileReplicaStore(args.stateDir);
  const key = replicaKey(args.workload, args.disk, args.target);
  const source = typeof args.source === "string" ? await openSource(args.source, args.sourceFormat) : await openReplica(args.workload, args.disk, args.source.replicaOf, store);
  try {
    const { target, close } = await openReplicaTarget(args.target, source.virtualSizeBytes);
    try {
      const result = await replicate(source, target, { store, key, ...(args.onProgress ? { onProgress: args.onProgress } : {}) });
      const policy = args.verify ?? { mode: "sampled", blocks: 64 };
      let verifiedBlocks = 0;
      if (policy.mode !== "none") {
        const committed = await store.loadCommitted(key);
        const back = await target.openReadBack(committed!);
        try {
          const verified = await verifyReplica(back, result.manifest, policy);
          if (!verified.ok) throw new PortableError("VERIFY_MISMATCH", `disk ${args.disk} of ${args.workload}: ${verified.mismatches.length} block(s) on ${result.location} differ from the source`);
          verifiedBlocks = verified.blocksChecked;
        } finally {
          await back.close();
        }
      }
      return {
        key,
        location: result.location,
        virtualSizeBytes: source.virtualSizeBytes,
        digest: result.digest,
        reference: result.reference,
        passes: result.passes,
        bytesSent: result.bytesSent,
        blocksSent: result.blocksSent,
        resumed: result.resumed,
        verifiedBlocks,
      };
    } finally {
      close();
    }
  } finally {
    await source.close();
  }
}

/** The committed replica of a disk on `target`, as a source (what a move copies from). */
async function openReplica(workload: string, disk: string, target: string, store: FileReplicaStore): Promise<DiskSource> {
  const key = replicaKey(workload, disk, target);
  const committed = await store.loadCommitted(key);
  if (committed === undefined) throw new PortableError("REPLICA_MISSING", `disk ${disk} of ${workload}: no committed replica on ${target} to move from (state ${store.reference(key)})`);
  const { target: replica, close } = await openReplicaTarget(target, committed.manifest.virtualSizeBytes);
  try {
    const source = await replica.openReadBack(committed);
    return { ...source, extents: () => source.extents(), read: (o, l, into) => source.read(o, l, into), close: async () => { await source.close(); close(); } };
  } catch (error) {
    close();
    throw error;
  }
}

/** Deletes a placed disk's target artefact and its replica state. */
export async function removeDisk(args: { readonly workload: string; readonly disk: string; readonly target: string; readonly stateDir: string; readonly virtualSizeBytes: number }): Promise<void> {
  const store = new FileReplicaStore(args.stateDir);
  const key = replicaKey(args.workload, args.disk, args.target);
  const { target, close } = await openReplicaTarget(args.target, args.virtualSizeBytes);
  try {
    await target.destroy(await store.loadCommitted(key));
    await store.remove(key);
  } finally {
    close();
  }
}
