// Contracts floor (sdk/contracts): the shapes the platform drivers (sdk/clouds) implement and
// sdk/transfer and sdk/migrate use. It imports only sdk/disk, sdk/spec and sdk/errors.
//
// The disk half of a platform driver: how a disk placed there (named by its target string,
// built and parsed by the driver's location module) is written, read as it is now, and removed.
// sdk/migrate places, moves and removes disks over this contract and asks capabilities, never
// platforms; clouds/registry.ts picks the driver for a target.
import type { DiskSource } from "../disk/types.ts";
import type { Placement } from "../spec/placement.ts";
import type { Workload } from "../spec/workload.ts";
import type { CommittedReplica, ReplicaTarget } from "./replica-target.ts";
import type { VsphereConnection } from "./vsphere-connection.ts";
import type { StateStore } from "./state-store.ts";

/** What a driver may need besides the target string: connections whose secrets travel apart. */
export interface DiskContext {
  readonly vsphere?: VsphereConnection;
  /**
   * The workload whose machine may be running on this disk now, for the platforms that find the
   * live disk through its machine (an EC2 instance's volume at the disk's device).
   */
  readonly live?: {
    readonly workload: Workload;
    readonly diskId: string;
    readonly placement: Placement;
    /** The placed disk's size, which a cloud volume (whole GiB) may exceed. */
    readonly virtualSizeBytes?: number;
  };
  /**
   * The replica a pass reading the live disk commits to: a platform that tracks changes
   * (DiskSource.changes) keeps its tracking per replica.
   */
  readonly track?: {
    readonly key: string;
    /** The cutover's final pass: no later pass will diff against it, so nothing is kept for one. */
    readonly final?: boolean;
  };
}

export interface OpenedReplica {
  readonly target: ReplicaTarget;
  /** Releases clients (sockets) the target holds. */
  close(): void;
}

export interface DiskDriver {
  readonly kind: "local" | "vsphere" | "aws" | "azure";
  /**
   * Its machines write to the placed disk itself (a local or vSphere disk), so the replica's
   * record goes stale while one runs; on the clouds the placed disk is a snapshot or blob the
   * machine only starts from.
   */
  readonly liveDisk: boolean;
  /** The connection this platform needs in the context, named in errors; undefined when none. */
  readonly connection?: "vsphere";
  /** The replica target at `target`: it takes only the blocks that changed. */
  openReplicaTarget(target: string, virtualSizeBytes: number, context: DiskContext): Promise<OpenedReplica>;
  /**
   * The placed disk as it is now, where a machine may be writing to it: a point-in-time view (a
   * frozen overlay of a local disk, a snapshot of an instance's volume) or the disk itself.
   * Undefined: read the committed replica back (a snapshot chain, a blob).
   */
  openLive?(target: string, context: DiskContext): Promise<DiskSource | undefined>;
  /**
   * Bytes the live disk at `target` changed since a pass's change token, from its change
   * tracking and without reading the disk (what a plan moves). Undefined when it cannot say.
   */
  changedBytesSince?(target: string, token: string, context: DiskContext): Promise<number | undefined>;
  /** Deletes the disk at `target` (and folders it leaves empty), given its replica record. */
  remove(target: string, committed: CommittedReplica | undefined, virtualSizeBytes: number, context: DiskContext): Promise<void>;
  /** A local image file QEMU can open as a backing file (fixups), when the disk is one. */
  localImage?(target: string): string | undefined;
  /**
   * Where the replica state of the disk at `target` is kept beside it (the local datastore's
   * folder, the placement's S3 bucket, the page blobs' container). Undefined: nowhere there, so
   * the state stays in the caller's state folder.
   */
  stateStore?(target: string, context: DiskContext): Promise<StateStore | undefined>;
}
