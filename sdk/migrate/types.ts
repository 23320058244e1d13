// The few things migration needs from a placement, whatever the platform: a machine it can stop
// and start, and per disk a point-in-time readable view of the source and a replica target.
import type { VerifyPolicy, VerifyResult } from "../transfer/verify.ts";

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

export type { PointInTime } from "../contracts/point-in-time.ts";

/** What one pass over one disk did. */
export interface DiskPassResult {
  readonly bytesSent: number;
  readonly blocksSent: number;
  readonly resumed: boolean;
  readonly location: string;
  /** Source bytes read to find the changes, and how: the source's change tracking or a full scan. */
  readonly bytesRead?: number;
  readonly scan?: "tracked" | "full";
}

/** One disk's replication, however the target takes it (block replica, full copy). */
export interface DiskReplication {
  /** The replica's key in the store, e.g. `web-1.disk0.3f2a…`. */
  readonly key: string;
  /** Shown in plans, e.g. "qcow2 → raw (local)". */
  readonly conversion?: string;
  /** Copies what changed since the last pass, from a point-in-time view of the source. */
  pass(signal?: AbortSignal): Promise<DiskPassResult>;
  /** Reads the target back and compares it with what the last pass recorded. */
  verify(policy: VerifyPolicy, signal?: AbortSignal): Promise<VerifyResult>;
}

export interface HealthResult {
  readonly ok: boolean;
  readonly detail: string;
}
