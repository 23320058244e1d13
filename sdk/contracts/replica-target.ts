// Contracts floor (sdk/contracts): the shapes the platform drivers (sdk/clouds) implement and
// sdk/transfer and sdk/migrate use. It imports only sdk/disk, sdk/spec and sdk/errors.
//
// A replica target: where block replication writes (a file, an EBS snapshot chain, a page blob),
// and what it holds after a pass (a committed replica) or in the middle of one (a pending pass).
// sdk/transfer/replicate.ts drives these; sdk/transfer/checkpoint.ts keeps them.
import type { BlockManifest } from "../disk/manifest.ts";
import type { DiskSource } from "../disk/types.ts";

/** The target's own resumable state, kept in the journal and the committed state (e.g. `{ snapshotId }`). */
export type TargetState = Readonly<Record<string, string | number | boolean>>;

export interface PassFigures {
  readonly bytesSent: number;
  /** Source bytes read and hashed. */
  readonly scannedBytes?: number;
  readonly blocksSent: number;
  readonly seconds: number;
  readonly finishedAt: string;
  /** How the pass found its changes: the source's change tracking, or a full scan. */
  readonly scan?: "tracked" | "full";
  /** The read-back verification after the pass: what the plan estimates a cutover's verify from. */
  readonly verify?: { readonly blocksChecked: number; readonly seconds: number };
}

/** What the target holds after its last completed pass. */
export interface CommittedReplica {
  readonly manifest: BlockManifest;
  /** e.g. a file path, `snap-…`, a blob URL without its SAS. */
  readonly location: string;
  readonly targetState: TargetState;
  /**
   * The source's change-tracking token of the view this pass read (DiskSource.changes): the
   * next pass asks the source what changed since it.
   */
  readonly changeToken?: string;
  readonly passes: number;
  readonly lastPass?: PassFigures;
}

/** A pass interrupted before its commit, as its journal recorded it. */
export interface PendingPass {
  readonly baseDigest: string;
  readonly targetState: TargetState;
  /** Blocks the target acknowledged: manifest hash (undefined for a cleared block) and receipt. */
  readonly done: ReadonlyMap<number, { readonly hash: Buffer | undefined; readonly receipt?: string }>;
  /** Blocks sent without an acknowledgement: their content on the target is unknown. */
  readonly unknown: ReadonlySet<number>;
  /** Every write was done and the target's commit had started (it may have finished). */
  readonly sealing: boolean;
  /**
   * The pass began on another machine (its journal is there): which blocks it wrote is not
   * known, so every block's content on the target is unknown.
   */
  readonly unknownAll?: boolean;
}

/** One pass's writes into a target. Calls to write() may overlap; they never share a block. */
export interface ReplicaPass {
  /** Persisted in the journal so a rerun can reopen the same pass (e.g. `{ snapshotId }`). */
  readonly state: TargetState;
  /**
   * Writes one block at `offsetBytes` (`data` is the block's bytes; the last block of a disk
   * may be short). `zero` means the block became all zeros and must be cleared. Resolves when
   * the target holds it, optionally with a receipt the journal keeps for the commit (e.g. the
   * EBS checksum).
   */
  write(blockIndex: number, offsetBytes: number, data: Buffer, zero: boolean): Promise<string | undefined>;
  /**
   * For a target with `plannedWrites`: every block this pass will write, ascending, before the
   * first write(); the writes then come in that order, one at a time.
   */
  plan?(blocks: readonly number[], blockBytes: number): Promise<void>;
  /** Seals the pass: every block written is durable and readable. */
  commit(): Promise<{ readonly location: string; readonly state: TargetState }>;
  /** Gives up a pass that will not be resumed (e.g. deletes a pending snapshot). */
  abort(): Promise<void>;
}

/** Where replication writes: a file, an EBS snapshot chain, a page blob. */
export interface ReplicaTarget {
  /** For messages, without credentials. */
  readonly name: string;
  readonly virtualSizeBytes: number;
  /** Blocks this target needs: the manifest block size must be a multiple. Default 512. */
  readonly alignmentBytes?: number;
  /** Writes in flight. */
  readonly concurrency?: number;
  /**
   * The target lays its file out before the data (a datastore PUT is sequential, and a delta
   * disk's tables come first): replicate() finds every block to send, gives their list to
   * pass.plan(), then reads them again and sends them in order, one at a time.
   */
  readonly plannedWrites?: boolean;
  /**
   * Starts a pass on top of what the target holds (`base` undefined: a new, all-zero target).
   * `final`: the pass inside a cutover's downtime (the source is stopped), where a target should
   * not do more than the blocks need (a vSphere chain is not collapsed then).
   */
  begin(base: CommittedReplica | undefined, options?: { readonly final?: boolean }): Promise<ReplicaPass>;
  /**
   * Reopens an interrupted pass from its journal. Undefined when that pass can no longer take
   * writes (e.g. its pending snapshot expired): the rerun then starts a new pass from `base`.
   */
  resume(base: CommittedReplica | undefined, pending: PendingPass): Promise<ReplicaPass | undefined>;
  /** Reads back what a committed pass left, for verification. */
  openReadBack(committed: CommittedReplica): Promise<DiskSource>;
  /** Deletes what the replica holds (file, snapshot chain, blob). Missing pieces are not an error. */
  destroy(committed: CommittedReplica | undefined): Promise<void>;
}
