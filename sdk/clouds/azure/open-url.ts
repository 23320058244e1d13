// The clients behind an Azure disk URL (url.ts), with credentials from the environment, and the
// source and sink the CLI opens for one.
import { AnonymousCredential, BlobServiceClient, newPipeline, PageBlobClient, StorageSharedKeyCredential, type ContainerClient, type StoragePipelineOptions } from "@azure/storage-blob";
import { InvalidArgsError } from "../../errors.ts";
import type { DiskSink, DiskSource } from "../../disk/types.ts";
import { createUploadDisk, grantDiskAccess, revokeDiskAccess, type CreateUploadDiskArgs, type ManagedDisksApi } from "./managed-disk.ts";
import { createPageBlobSink, vhdBlobSizeFor, type PageBlobSinkMode } from "./page-blob-sink.ts";
import { openPageBlobSource } from "./page-blob-source.ts";
import { parseAzureDiskUrl, type AzureDiskLocation } from "./url.ts";

/**
 * Our retry policy (sdk/retry.ts, via call.ts) owns retries, so the SDK's own is set to
 * one try: otherwise each of our attempts would hide up to four of the SDK's.
 */
const SDK_MAX_TRIES = 1;
/**
 * A single request that takes longer than this is abandoned and retried by us: a 4 MiB Put Page
 * at even 1 MiB/s finishes in 4 s, so two minutes only ever cuts a hung connection.
 */
export const AZURE_TRY_TIMEOUT_MS = 120_000;

export const AZURE_PIPELINE_OPTIONS: StoragePipelineOptions = {
  retryOptions: { maxTries: SDK_MAX_TRIES, tryTimeoutInMs: AZURE_TRY_TIMEOUT_MS },
};

type Env = Readonly<Record<string, string | undefined>>;

function connectionStringAccount(connectionString: string): string | undefined {
  return /(?:^|;)AccountName=([^;]+)/i.exec(connectionString)?.[1];
}

/** A PageBlobClient for a location, with credentials from `env` (see the module comment). */
export async function pageBlobClientFor(location: AzureDiskLocation, env: Env = process.env): Promise<PageBlobClient> {
  if (location.kind === "sas") return sasClient(location.url);
  if (location.kind === "azdisk") {
    throw new InvalidArgsError("AZURE_BAD_URL", `azdisk:// names a managed disk, not a blob: open it with openAzureDiskSource or createAzureDiskSink`);
  }
  return (await containerClientFor(location.accountName, location.containerName, env)).getPageBlobClient(location.blobName);
}

/** A ContainerClient for an account's container, with credentials from `env` (see the module comment). */
export async function containerClientFor(accountName: string, containerName: string, env: Env = process.env): Promise<ContainerClient> {
  const connectionString = env.AZURE_STORAGE_CONNECTION_STRING;
  if (connectionString !== undefined && connectionString !== "") {
    const named = connectionStringAccount(connectionString);
    if (named !== undefined && named !== accountName) {
      throw new InvalidArgsError("AZURE_ACCOUNT_MISMATCH", `azblob://${accountName}: AZURE_STORAGE_CONNECTION_STRING is for account ${named}`, {
        context: { accountName, connectionStringAccount: named },
      });
    }
    return BlobServiceClient.fromConnectionString(connectionString, AZURE_PIPELINE_OPTIONS).getContainerClient(containerName);
  }
  const endpoint = (env.AZURE_STORAGE_BLOB_ENDPOINT ?? `https://${accountName}.blob.core.windows.net`).replace(/\/+$/, "");
  const key = env.AZURE_STORAGE_KEY;
  const sas = env.AZURE_STORAGE_SAS_TOKEN;
  let service: BlobServiceClient;
  if (key !== undefined && key !== "") {
    service = new BlobServiceClient(endpoint, newPipeline(new StorageSharedKeyCredential(accountName, key), AZURE_PIPELINE_OPTIONS));
  } else if (sas !== undefined && sas !== "") {
    service = new BlobServiceClient(`${endpoint}?${sas.replace(/^\?/, "")}`, newPipeline(new AnonymousCredential(), AZURE_PIPELINE_OPTIONS));
  } else {
    const { DefaultAzureCredential } = await import("@azure/identity");
    service = new BlobServiceClient(endpoint, new DefaultAzureCredential(), AZURE_PIPELINE_OPTIONS);
  }
  return service.getContainerClient(containerName);
}

function sasClient(url: string): PageBlobClient {
  return new PageBlobClient(url, newPipeline(new AnonymousCredential(), AZURE_PIPELINE_OPTIONS));
}

/** Where the ARM calls of an azdisk:// URL go; tests pass a stand-in, since ARM cannot run here. */
export interface AzureUrlOptions {
  readonly disks?: (subscriptionId: string) => ManagedDisksApi | Promise<ManagedDisksApi>;
}

async function disksFor(location: { readonly subscriptionId: string }, options: AzureUrlOptions): Promise<ManagedDisksApi> {
  if (options.disks !== undefined) return options.disks(location.subscriptionId);
  const [{ ComputeManagementClient }, { DefaultAzureCredential }] = await Promise.all([import("@azure/arm-compute"), import("@azure/identity")]);
  return new ComputeManagementClient(new DefaultAzureCredential(), location.subscriptionId).disks;
}

/**
 * Opens an Azure disk URL for reading: a page blob, a SAS, or a managed disk (read through a
 * read SAS that close() revokes).
 */
export async function openAzureDiskSource(text: string, env: Env = process.env, options: AzureUrlOptions = {}): Promise<DiskSource> {
  const location = parseAzureDiskUrl(text);
  if (location.kind !== "azdisk") return openPageBlobSource(await pageBlobClientFor(location, env));
  const disks = await disksFor(location, options);
  const ref = { resourceGroupName: location.resourceGroupName, diskName: location.diskName };
  const sasUrl = await grantDiskAccess(disks, { ...ref, access: "Read" });
  let source: DiskSource;
  try {
    source = await openPageBlobSource(sasClient(sasUrl));
  } catch (error) {
    await revokeDiskAccess(disks, ref).catch(() => {});
    throw error;
  }
  return {
    ...source,
    close: async () => {
      try {
        await source.close();
      } finally {
        await revokeDiskAccess(disks, ref);
      }
    },
  };
}

export interface AzureDiskSinkOptions {
  readonly virtualSizeBytes: number;
  readonly overwrite?: boolean;
  readonly concurrency?: number;
}

/**
 * A fixed-VHD sink for an Azure disk URL. azblob:// creates a new page blob (Import flow); a
 * SAS URL writes the blob it names if it exists (a managed disk's Upload SAS) and creates it
 * otherwise; azdisk:// creates a managed disk for Upload and revokes its SAS when done.
 */
export async function createAzureDiskSink(
  text: string,
  options: AzureDiskSinkOptions,
  env: Env = process.env,
  urlOptions: AzureUrlOptions = {},
): Promise<DiskSink> {
  const location = parseAzureDiskUrl(text);
  if (location.kind === "azdisk") return createManagedDiskSink(location, options, await disksFor(location, urlOptions));
  const mode: PageBlobSinkMode = location.kind === "azblob" ? "create" : "auto";
  return createPageBlobSink(await pageBlobClientFor(location, env), { ...options, mode });
}

/**
 * The Upload flow behind azdisk://: create the disk at the VHD's size, grant write access, write
 * through the SAS, and revoke access after finish() or abort() (a disk left in ActiveUpload can
 * be neither attached nor deleted).
 */
async function createManagedDiskSink(
  location: Extract<AzureDiskLocation, { kind: "azdisk" }>,
  options: AzureDiskSinkOptions,
  disks: ManagedDisksApi,
): Promise<DiskSink> {
  const ref = { resourceGroupName: location.resourceGroupName, diskName: location.diskName };
  await createUploadDisk(disks, { ...ref, ...location.settings, uploadSizeBytes: vhdBlobSizeFor(options.virtualSizeBytes) } as CreateUploadDiskArgs);
  const sasUrl = await grantDiskAccess(disks, { ...ref, access: "Write" });
  let sink: DiskSink;
  try {
    sink = await createPageBlobSink(sasClient(sasUrl), { ...options, mode: "upload" });
  } catch (error) {
    await revokeDiskAccess(disks, ref).catch(() => {});
    throw error;
  }
  const name = `azdisk://${location.subscriptionId}/${location.resourceGroupName}/${location.diskName}`;
  return {
    format: sink.format,
    virtualSizeBytes: sink.virtualSizeBytes,
    blockSizeBytes: sink.blockSizeBytes,
    write: (offsetBytes, data) => sink.write(offsetBytes, data),
    async finish() {
      let result;
      try {
        result = await sink.finish();
      } catch (error) {
        await revokeDiskAccess(disks, ref).catch(() => {});
        throw error;
      }
      await revokeDiskAccess(disks, ref);
      return { ...result, location: name };
    },
    async abort() {
      try {
        await sink.abort();
      } finally {
        await revokeDiskAccess(disks, ref);
      }
    },
  };
}
