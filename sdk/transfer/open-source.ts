// A DiskSource from what a user types: an image path (any format, detected), `file.ova!entry` (a
// disk inside an OVA, read in place), `ebs://snap-…`, `azblob://…` / a blob SAS URL /
// `azdisk://…`, `vsphere://…` (a VM's disk or a datastore disk, clouds/vsphere/source-url.ts).
// Cloud SDKs, the vim25 client and the OVF reader load only when their form is used.
import { isEbsUrl } from "../clouds/aws/url.ts";
import { isAzureDiskUrl } from "../clouds/azure/url.ts";
import { formatByName } from "../disk/formats/index.ts";
import { openDisk } from "../disk/open.ts";
import type { DiskSource } from "../disk/types.ts";
import { isOvaFile, resolveOvaLocation } from "../ovf/ova-location.ts";

/**
 * `format` skips detection; for a bare OVA it also skips the OVA_IS_ARCHIVE refusal, so a tar
 * archive can still be read as raw bytes on purpose.
 */
export async function openSource(text: string, format?: string): Promise<DiskSource> {
  if (isEbsUrl(text)) return (await import("../clouds/aws/open-url.ts")).openEbsUrl(text);
  if (isAzureDiskUrl(text)) return (await import("../clouds/azure/open-url.ts")).openAzureDiskSource(text);
  // The scheme alone: clouds/vsphere/disk-url.ts would load the vim25 client into every command.
  if (text.startsWith("vsphere://")) return (await import("../clouds/vsphere/source-url.ts")).openVsphereSource(text);
  const named = format === undefined ? {} : { format: formatByName(format).name };
  const inOva = await resolveOvaLocation(text);
  if (inOva !== undefined) return (await import("../ovf/package.ts")).openOvaEntry(inOva.path, inOva.entry, named);
  if (format === undefined && (await isOvaFile(text))) throw await (await import("../ovf/package.ts")).ovaIsArchiveError(text);
  return openDisk(text, named);
}
