// The device names an aws placement gives a workload's disks: one rule for the AMI's block
// devices (components/placements/aws.ts) and for reading an instance's volumes back
// (live-volume.ts). No AWS SDK code is loaded here.
import { InvalidArgsError } from "../../errors.ts";
import { disksBootFirst, type Workload } from "../../spec/workload.ts";

export const ROOT_DEVICE = "/dev/xvda";
/** Data disks take /dev/sdf … /dev/sdz (EC2's recommended range for EBS starts at f). */
const FIRST_DATA_LETTER = "f".charCodeAt(0);
const LAST_DATA_LETTER = "z".charCodeAt(0);
export const MAX_AWS_DISKS = 1 + LAST_DATA_LETTER - FIRST_DATA_LETTER + 1;

/**
 * The device name the aws placement gives a workload's disk `index` (its position with the boot
 * disk first, disksBootFirst): 0 → /dev/xvda (the AMI's root), 1 → /dev/sdf, … 21 → /dev/sdz.
 * components/placements/aws.ts builds its AMI's block devices by this rule, and live-volume.ts
 * reads an instance's volumes back by it.
 */
export function awsDeviceNameForDisk(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0 || index >= MAX_AWS_DISKS) {
    throw new InvalidArgsError("AWS_TOO_MANY_DISKS", `disk index ${index}: an aws placement names ${MAX_AWS_DISKS} disks at most (/dev/xvda, then /dev/sdf … /dev/sdz)`, { context: { index } });
  }
  return index === 0 ? ROOT_DEVICE : `/dev/sd${String.fromCharCode(FIRST_DATA_LETTER + index - 1)}`;
}

/** The device name of the workload's disk `diskId`: the boot disk is the root, then the others in order. */
export function awsDeviceNameFor(workload: Pick<Workload, "name" | "disks">, diskId: string): string {
  const index = disksBootFirst(workload).findIndex((d) => d.id === diskId);
  if (index < 0) throw new InvalidArgsError("AWS_DISK_UNKNOWN", `workload ${workload.name} has no disk ${diskId}`, { context: { workload: workload.name, disk: diskId } });
  return awsDeviceNameForDisk(index);
}
