// The few things migration needs from a placement, whatever the platform: a machine it can stop
// and start, and per disk a point-in-time readable view of the source and a replica target.
import type { DiskSource } from "../disk/types.ts";
import type { ReplicaTarget } from "../transfer/replicate.ts";

export interface StopResult {
  /** True when the guest shut down by itself within the timeout; false after a hard power-off. */
  readonly graceful: boolean;
}

/** A source or target machine: a QEMU process, a vSphere VM, a cloud instance. */
export interface Machine {
  readonly name: string;
  isRunning(): Promise<boolean>;
  start(): Promise<void>;
  /** A graceful shutdown bounded by `gracefulTimeoutMs`, then a hard power-off. */
  stop(options?: { readonly gracefulTimeoutMs?: number }): Promise<StopResult>;
}

/** A consistent read of a source disk for one pass, released when the pass ends. */
export interface PointInTime {
  readonly source: DiskSource;
  release(): Promise<void>;
}

export interface DiskReplication {
  /** The replica's key in the store, e.g. `web-1-disk0-local`. */
  readonly key: string;
  /**
   * Opens the source at a point in time: a platform snapshot where one exists, a frozen overlay
   * for a running QEMU machine, or the file itself once the machine is stopped.
   */
  openPointInTime(): Promise<PointInTime>;
  readonly target: ReplicaTarget;
  /** Shown in plans, e.g. "qcow2 → raw (local)". */
  readonly conversion?: string;
}

export interface HealthResult {
  readonly ok: boolean;
  readonly detail: string;
}
