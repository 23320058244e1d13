// CPUs and memory → an Azure VM size: the smallest that fits, with a series preference.
//
// Source: Microsoft Learn "Sizes for virtual machines in Azure"
// (https://learn.microsoft.com/azure/virtual-machines/sizes/overview: Dsv5, Esv5, Fsv2, Dpsv5,
// Epsv5 and B-series pages), compiled 2026-11-28. Listed: the series with premium storage
// ("s"), Generation 1 and 2 support for the x86 ones, and Arm64 (Gen2 only) for the "p" ones.
import { NotCapableError } from "../../errors.ts";

export interface AzureVmSize {
  readonly name: string;
  readonly series: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly architecture: "x86_64" | "arm64";
}

/** series, architecture, [vCPUs, GiB] per size, and how a size is named from its vCPUs. */
const SERIES: readonly [string, "x86_64" | "arm64", readonly [number, number][], (vcpus: number) => string][] = [
  ["Dsv5", "x86_64", [[2, 8], [4, 16], [8, 32], [16, 64], [32, 128], [48, 192], [64, 256], [96, 384]], (n) => `Standard_D${n}s_v5`],
  ["Fsv2", "x86_64", [[2, 4], [4, 8], [8, 16], [16, 32], [32, 64], [48, 96], [64, 128], [72, 144]], (n) => `Standard_F${n}s_v2`],
  ["Esv5", "x86_64", [[2, 16], [4, 32], [8, 64], [16, 128], [20, 160], [32, 256], [48, 384], [64, 512], [96, 672]], (n) => `Standard_E${n}s_v5`],
  ["Dpsv5", "arm64", [[2, 8], [4, 16], [8, 32], [16, 64], [32, 128], [48, 192], [64, 208]], (n) => `Standard_D${n}ps_v5`],
  ["Epsv5", "arm64", [[2, 16], [4, 32], [8, 64], [16, 128], [32, 208]], (n) => `Standard_E${n}ps_v5`],
];

/** B-series names do not follow a formula: name, vCPUs, GiB. */
const BURSTABLE: readonly [string, number, number][] = [
  ["Standard_B1s", 1, 1],
  ["Standard_B1ms", 1, 2],
  ["Standard_B2s", 2, 4],
  ["Standard_B2ms", 2, 8],
  ["Standard_B4ms", 4, 16],
  ["Standard_B8ms", 8, 32],
];

function buildTable(): AzureVmSize[] {
  const table: AzureVmSize[] = [];
  for (const [series, architecture, sizes, name] of SERIES) {
    for (const [vcpus, gib] of sizes) table.push({ name: name(vcpus), series, vcpus, memoryMiB: gib * 1024, architecture });
  }
  for (const [name, vcpus, gib] of BURSTABLE) table.push({ name, series: "Bs", vcpus, memoryMiB: gib * 1024, architecture: "x86_64" });
  return table;
}

export const AZURE_VM_SIZES: readonly AzureVmSize[] = buildTable();

/** General purpose first, as for AWS (aws-instance-types.ts); burstable B is opt-in. */
export const AZURE_DEFAULT_SERIES_PREFERENCE: readonly string[] = ["Dsv5", "Fsv2", "Esv5", "Dpsv5", "Epsv5"];

export interface AzureSizeRequest {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly architecture: "x86_64" | "arm64";
  /** Series allowed, most preferred first. @default AZURE_DEFAULT_SERIES_PREFERENCE */
  readonly series?: readonly string[];
}

/** Fewest vCPUs, then least memory, then series preference; NotCapableError when none fits. */
export function azureVmSizeFor(request: AzureSizeRequest): AzureVmSize {
  const series = request.series ?? AZURE_DEFAULT_SERIES_PREFERENCE;
  const rank = (s: AzureVmSize): number => series.indexOf(s.series);
  const fits = AZURE_VM_SIZES.filter(
    (s) => rank(s) >= 0 && s.architecture === request.architecture && s.vcpus >= request.vcpus && s.memoryMiB >= request.memoryMiB,
  ).sort((a, b) => a.vcpus - b.vcpus || a.memoryMiB - b.memoryMiB || rank(a) - rank(b));
  const best = fits[0];
  if (best === undefined) {
    throw new NotCapableError(
      "AZURE_NO_VM_SIZE",
      `azure: no ${request.architecture} VM size in series ${series.join(", ")} has ${request.vcpus} vCPUs and ${request.memoryMiB} MiB of memory`,
      { context: { target: "azure", vcpus: request.vcpus, memoryMiB: request.memoryMiB, architecture: request.architecture } },
    );
  }
  return best;
}
