// Azure: page-blob disks (fixed VHD) as a DiskSource and a DiskSink, resync by block
// manifest, the managed-disk calls of the Upload flow, and the workload's VM (machine driver)
// with point-in-time reads of its managed disks. Clients are passed in.
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
export {
  armCall, armFind, AZURE_WORKLOAD_TAG, computeClientFor, isArmNotFound, subscriptionIdOf,
  type AzureComputeApi, type AzureComputeFactory, type AzurePlacement,
} from "./compute.ts";
export {
  AZURE_FORCE_STOP_TIMEOUT_MS, AZURE_START_TIMEOUT_MS, AZURE_VM_POLL_INTERVAL_MS, azureMachineDriver, createAzureMachineDriver, powerStateOf,
  type AzureMachineDriverOptions, type AzurePowerState,
} from "./machine-driver.ts";
export {
  azureManagedDiskName, openWorkloadManagedDisk, pointInTimeSnapshotName, POINT_IN_TIME_PURPOSE, POINT_IN_TIME_TAG, sasDurationFor,
  type ManagedDiskPointInTime, type OpenWorkloadManagedDiskOptions,
} from "./live-disk.ts";
