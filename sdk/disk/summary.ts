// Facts about a disk that plans and `portable inspect` print: how much is really there.
import type { DiskSource } from "./types.ts";

export interface DiskSummary {
  readonly format: string;
  readonly subformat?: string;
  readonly virtualSizeBytes: number;
  /** Bytes in "data" extents: what a conversion has to read. */
  readonly allocatedBytes: number;
  readonly dataExtents: number;
  readonly zeroExtents: number;
}

export async function summarize(source: DiskSource): Promise<DiskSummary> {
  let allocatedBytes = 0;
  let dataExtents = 0;
  let zeroExtents = 0;
  for await (const extent of source.extents()) {
    if (extent.kind === "data") {
      allocatedBytes += extent.lengthBytes;
      dataExtents++;
    } else zeroExtents++;
  }
  return {
    format: source.format,
    ...(source.subformat === undefined ? {} : { subformat: source.subformat }),
    virtualSizeBytes: source.virtualSizeBytes,
    allocatedBytes,
    dataExtents,
    zeroExtents,
  };
}
