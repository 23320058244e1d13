// A DiskSource from what a user types: an image path (any format, detected), `ebs://snap-…`,
// `azblob://…` / a blob SAS URL / `azdisk://…`. Cloud SDKs load only when their scheme is used.
import { isEbsUrl } from "../clouds/aws/url.ts";
import { isAzureDiskUrl } from "../clouds/azure/url.ts";
import { formatByName } from "../disk/formats/index.ts";
import { openDisk } from "../disk/open.ts";
import type { DiskSource } from "../disk/types.ts";

export async function openSource(text: string, format?: string): Promise<DiskSource> {
  if (isEbsUrl(text)) return (await import("../clouds/aws/open-url.ts")).openEbsUrl(text);
  if (isAzureDiskUrl(text)) return (await import("../clouds/azure/open-url.ts")).openAzureDiskSource(text);
  return openDisk(text, format === undefined ? {} : { format: formatByName(format).name });
}
