// Azure: page-blob disks (fixed VHD) as a DiskSource and a DiskSink, resync by block
// manifest, and the managed-disk calls of the Upload flow. Clients are passed in.
export { azureCall, redactUrl, type CallOptions } from "./call.ts";
export { createPageBlobTarget, PAGE_BLOB_MAX_WRITE_BYTES, PAGE_BLOB_UPLOADS_IN_FLIGHT, PAGE_BYTES, type PageBlobWriteStats } from "./page-blob-target.ts";
export { createPageBlobSink, vhdBlobSizeFor, type PageBlobSink, type PageBlobSinkMode, type PageBlobSinkOptions } from "./page-blob-sink.ts";
export { openPageBlobSource, pageBlobByteSource, pageRangeExtents, type PageBlobSource } from "./page-blob-source.ts";
export { listPageRanges, type PageRange } from "./page-ranges.ts";
export { syncPageBlob, type SyncPageBlobOptions, type SyncPageBlobResult } from "./sync-page-blob.ts";
export {
  createUploadDisk, DEFAULT_SAS_DURATION_SECONDS, grantDiskAccess, revokeDiskAccess, uploadSizeBytesFor, withUploadDisk,
  type ManagedDisksApi,
} from "./managed-disk.ts";
export { AZBLOB_SCHEME, AZDISK_SCHEME, displayName, isAzureDiskUrl, parseAzureDiskUrl, type AzureDiskLocation } from "./url.ts";
export { AZURE_PIPELINE_OPTIONS, AZURE_TRY_TIMEOUT_MS, createAzureDiskSink, openAzureDiskSource, pageBlobClientFor, type AzureDiskSinkOptions, type AzureUrlOptions } from "./open-url.ts";
