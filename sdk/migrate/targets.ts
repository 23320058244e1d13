// Where each disk of a workload lives on a placement, as a target string its platform's driver
// understands (clouds/registry.ts), and how a spec's disk source becomes a source string.
import { resolve } from "node:path";
import { diskTargetOn } from "../clouds/registry.ts";
import { formatOvaLocation } from "../ovf/ova-location.ts";
import type { Placement } from "../spec/placement.ts";
import type { DiskSourceRef } from "../spec/workload.ts";

/** File-name-safe form of a workload or disk name. */
export function plainName(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+/, "") || "x";
}

/** Where disk `diskId` of `workload` goes on `placement` (the platform's location module builds it). */
export function diskTargetFor(placement: Placement, workload: string, diskId: string): string {
  return diskTargetOn(placement, { workload, folder: plainName(workload), file: `${plainName(workload)}-${plainName(diskId)}` });
}

/** The source string for a spec disk (a path, a URL the openers know). */
export function diskSourceText(source: DiskSourceRef): { readonly text: string; readonly format?: string } {
  switch (source.kind) {
    case "file":
      return { text: resolve(source.path), ...(source.format === undefined ? {} : { format: source.format }) };
    case "url":
      return { text: source.url };
    case "cloud":
      if (source.provider === "aws") return { text: source.reference.startsWith("ebs://") ? source.reference : `ebs://${source.reference}` };
      return { text: source.reference };
    case "ova":
      // Read in place from the archive by openSource (clouds/registry.ts); nothing is extracted.
      return { text: formatOvaLocation(resolve(source.path), source.entry) };
  }
}
