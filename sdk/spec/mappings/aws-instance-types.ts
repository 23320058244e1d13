// CPUs and memory → an EC2 instance type: the smallest current-generation type that fits, with
// a family preference.
//
// Source: AWS "Amazon EC2 instance types" specifications
// (https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html, co.html, mo.html), compiled
// 2026-11-28. Only current-generation Nitro families are listed: every one of them exposes EBS
// as NVMe (see disk-bus.ts) and runs 64-bit guests only. The table is generated from each
// family's size ladder because every size within these families keeps the family's fixed
// memory-per-vCPU ratio; t3/t4g are the exception and are listed size by size.
import { NotCapableError } from "../../errors.ts";

export interface InstanceType {
  readonly name: string;
  readonly family: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly architecture: "x86_64" | "arm64";
}

/** EC2's size ladder: suffix → vCPUs, shared by the m/c/r families (".medium" is Graviton only). */
const SIZE_LADDER: readonly [string, number][] = [
  ["medium", 1],
  ["large", 2],
  ["xlarge", 4],
  ["2xlarge", 8],
  ["4xlarge", 16],
  ["8xlarge", 32],
  ["12xlarge", 48],
  ["16xlarge", 64],
  ["24xlarge", 96],
  ["48xlarge", 192],
];

/** family, architecture, GiB of memory per vCPU, smallest and largest vCPU count offered. */
const LADDER_FAMILIES: readonly [string, "x86_64" | "arm64", number, number, number][] = [
  ["m7i", "x86_64", 4, 2, 192],
  ["c7i", "x86_64", 2, 2, 192],
  ["r7i", "x86_64", 8, 2, 192],
  ["m7g", "arm64", 4, 1, 64],
  ["c7g", "arm64", 2, 1, 64],
  ["r7g", "arm64", 8, 1, 64],
];

/** Burstable families: name suffix, vCPUs, GiB. */
const BURSTABLE: readonly [string, number, number][] = [
  ["nano", 2, 0.5],
  ["micro", 2, 1],
  ["small", 2, 2],
  ["medium", 2, 4],
  ["large", 2, 8],
  ["xlarge", 4, 16],
  ["2xlarge", 8, 32],
];

function buildTable(): InstanceType[] {
  const table: InstanceType[] = [];
  for (const [family, architecture, gibPerVcpu, minVcpus, maxVcpus] of LADDER_FAMILIES) {
    for (const [size, vcpus] of SIZE_LADDER) {
      if (vcpus < minVcpus || vcpus > maxVcpus) continue;
      table.push({ name: `${family}.${size}`, family, vcpus, memoryMiB: vcpus * gibPerVcpu * 1024, architecture });
    }
  }
  for (const [family, architecture] of [["t3", "x86_64"], ["t4g", "arm64"]] as const) {
    for (const [size, vcpus, gib] of BURSTABLE) table.push({ name: `${family}.${size}`, family, vcpus, memoryMiB: gib * 1024, architecture });
  }
  return table;
}

export const AWS_INSTANCE_TYPES: readonly InstanceType[] = buildTable();

/**
 * General purpose first: a migrated server's CPU-to-memory ratio is usually unknown, and m keeps
 * 4 GiB per vCPU, the middle of the range. c and r follow so an odd ratio still finds a type;
 * burstable types are opt-in because their CPU credits surprise a steady workload.
 */
export const AWS_DEFAULT_FAMILY_PREFERENCE: readonly string[] = ["m7i", "c7i", "r7i", "m7g", "c7g", "r7g"];

export interface SizeRequest {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly architecture: "x86_64" | "arm64";
  /** Families allowed, most preferred first. @default AWS_DEFAULT_FAMILY_PREFERENCE */
  readonly families?: readonly string[];
}

/**
 * The smallest type that fits: fewest vCPUs, then least memory; among equal sizes the earlier
 * family in the preference wins. Raises NotCapableError when nothing in the families fits.
 */
export function awsInstanceTypeFor(request: SizeRequest): InstanceType {
  const families = request.families ?? AWS_DEFAULT_FAMILY_PREFERENCE;
  const rank = (t: InstanceType): number => families.indexOf(t.family);
  const fits = AWS_INSTANCE_TYPES.filter(
    (t) => rank(t) >= 0 && t.architecture === request.architecture && t.vcpus >= request.vcpus && t.memoryMiB >= request.memoryMiB,
  ).sort((a, b) => a.vcpus - b.vcpus || a.memoryMiB - b.memoryMiB || rank(a) - rank(b));
  const best = fits[0];
  if (best === undefined) {
    throw new NotCapableError(
      "AWS_NO_INSTANCE_TYPE",
      `aws: no ${request.architecture} instance type in families ${families.join(", ")} has ${request.vcpus} vCPUs and ${request.memoryMiB} MiB of memory`,
      { context: { target: "aws", vcpus: request.vcpus, memoryMiB: request.memoryMiB, architecture: request.architecture } },
    );
  }
  return best;
}
