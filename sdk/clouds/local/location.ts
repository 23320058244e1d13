// Where a workload's disk lives in a local datastore, built and parsed in one place: a raw file
// `<datastore>/disks/<name>.raw`. Any other path is a plain raw file (a CLI replica).
import { basename, dirname, resolve } from "node:path";
import type { Placement } from "../../spec/placement.ts";

/** The disk `name` (file-name safe) on a local placement. */
export function localDiskTarget(placement: Extract<Placement, { kind: "local" }>, name: string): string {
  return resolve(placement.dir, "disks", `${name}.raw`);
}

/** A raw disk in a local datastore's disks/ folder (a machine may run on it). */
export function isLocalDatastoreDisk(target: string): boolean {
  return target.startsWith("/") && basename(dirname(target)) === "disks" && target.endsWith(".raw");
}

/** The datastore a datastore disk is in. */
export function datastoreOfDisk(target: string): string {
  return dirname(dirname(target));
}
