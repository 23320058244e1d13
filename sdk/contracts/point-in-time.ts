// Contracts floor (sdk/contracts): the shapes the platform drivers (sdk/clouds) implement and
// sdk/transfer and sdk/migrate use. It imports only sdk/disk, sdk/spec and sdk/errors.
import type { DiskSource } from "../disk/types.ts";

/**
 * A consistent read of a source disk for one pass, released when the pass ends: a frozen local
 * overlay (clouds/local/point-in-time.ts), a vSphere snapshot (clouds/vsphere/point-in-time.ts).
 */
export interface PointInTime {
  readonly source: DiskSource;
  release(): Promise<void>;
}
