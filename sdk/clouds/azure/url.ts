// Azure disk locations as the CLI writes them, and the clients behind them.
//
// - `azblob://<account>/<container>/<blob path>`: a page blob in an account (the Import flow).
//   Credentials come from the environment, never from the URL: AZURE_STORAGE_CONNECTION_STRING,
//   or AZURE_STORAGE_KEY (with AZURE_STORAGE_BLOB_ENDPOINT for an emulator or sovereign cloud),
//   or AZURE_STORAGE_SAS_TOKEN, or else DefaultAzureCredential (Entra ID).
// - an http(s) URL with a SAS (`?...&sig=...`): a blob or a managed disk's access SAS (the
//   Upload flow, or a read SAS to export a disk).
// - `azdisk://<subscription id>/<resource group>/<disk name>[?location=…&sku=…&osType=…&hyperVGeneration=…]`:
//   a managed disk. As an output it is created for Upload, written through a write SAS, and its
//   access revoked (managed-disk.ts); as an input it is read through a read SAS, revoked on close.
//   ARM credentials come from DefaultAzureCredential.
// A URL is shown only through redactUrl, so a SAS token never reaches output or logs.
// This module has no Azure SDK import, so the CLI can route arguments without loading the SDK;
// open-url.ts makes the clients.
import { InvalidArgsError } from "../../errors.ts";
import type { Placement } from "../../spec/placement.ts";
import { redactUrl } from "./call.ts";

export const AZBLOB_SCHEME = "azblob:";
export const AZDISK_SCHEME = "azdisk:";

export type AzureDiskLocation =
  | { readonly kind: "azblob"; readonly accountName: string; readonly containerName: string; readonly blobName: string }
  | { readonly kind: "sas"; readonly url: string }
  | {
    readonly kind: "azdisk";
    readonly subscriptionId: string;
    readonly resourceGroupName: string;
    readonly diskName: string;
    /** Query settings for a new disk (location, sku, osType, hyperVGeneration), checked by managed-disk.ts. */
    readonly settings: Readonly<Record<string, string>>;
  };

/** The page blob of disk `name` (file-name safe) on an azure placement: a target. */
export function azblobDiskTarget(placement: Extract<Placement, { kind: "azure" }>, name: string): string {
  return `${AZBLOB_SCHEME}//${placement.storageAccount}/${placement.container}/${name}.vhd`;
}

/** True for `azblob://…` and for http(s) URLs that carry a SAS signature. */
export function isAzureDiskUrl(text: string): boolean {
  if (text.startsWith(`${AZBLOB_SCHEME}//`) || text.startsWith(`${AZDISK_SCHEME}//`)) return true;
  if (!/^https?:\/\//i.test(text)) return false;
  try {
    return new URL(text).searchParams.has("sig");
  } catch {
    return false;
  }
}

/** What to print for a location: an Azure URL loses its query; anything else is unchanged. */
export function displayName(text: string): string {
  return isAzureDiskUrl(text) ? redactUrl(text) : text;
}

function badUrl(text: string, why: string): never {
  throw new InvalidArgsError("AZURE_BAD_URL", `${redactUrl(text)}: ${why} (expected azblob://<account>/<container>/<blob> or a SAS URL)`, {
    context: { url: redactUrl(text) },
  });
}

/** Query keys an azdisk:// URL may carry: settings of the disk to create, never credentials. */
const AZDISK_SETTINGS = new Set(["location", "sku", "osType", "hyperVGeneration"]);

function parseAzdisk(text: string): AzureDiskLocation {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    badUrl(text, "not a URL");
  }
  const subscriptionId = url.hostname;
  const [resourceGroupName, diskName, ...extra] = url.pathname.replace(/^\//, "").split("/").map(decodeURIComponent);
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(subscriptionId)) badUrl(text, `"${subscriptionId}" is not a subscription id`);
  if (resourceGroupName === undefined || resourceGroupName === "" || diskName === undefined || diskName === "" || extra.length > 0) {
    badUrl(text, "expected azdisk://<subscription id>/<resource group>/<disk name>");
  }
  const settings: Record<string, string> = {};
  for (const [key, value] of url.searchParams) {
    if (!AZDISK_SETTINGS.has(key)) badUrl(text, `unknown setting "${key}" (known: ${[...AZDISK_SETTINGS].join(", ")})`);
    settings[key] = value;
  }
  return { kind: "azdisk", subscriptionId, resourceGroupName, diskName, settings };
}

export function parseAzureDiskUrl(text: string): AzureDiskLocation {
  if (text.startsWith(`${AZDISK_SCHEME}//`)) return parseAzdisk(text);
  if (!text.startsWith(`${AZBLOB_SCHEME}//`)) {
    if (!isAzureDiskUrl(text)) badUrl(text, "not an azblob:// URL and no SAS signature (sig=) in the query");
    return { kind: "sas", url: text };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    badUrl(text, "not a URL");
  }
  if (url.search !== "" || url.username !== "" || url.password !== "") badUrl(text, "credentials go in the environment, not in an azblob:// URL");
  const accountName = url.hostname;
  const [containerName, ...rest] = url.pathname.replace(/^\//, "").split("/");
  const blobName = rest.map(decodeURIComponent).join("/");
  // Account names are 3-24 lowercase letters and digits; container names 3-63, lowercase, digits and '-'.
  if (!/^[a-z0-9]{3,24}$/.test(accountName)) badUrl(text, `"${accountName}" is not a storage account name`);
  if (containerName === undefined || !/^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$/.test(containerName)) badUrl(text, "missing or invalid container name");
  if (blobName === "") badUrl(text, "missing blob name");
  return { kind: "azblob", accountName, containerName, blobName };
}
