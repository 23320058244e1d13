// vSphere: a small typed vim25 SOAP client, datastore disks as DiskSource/DiskSink, NFC import
// and the VM lifecycle from a Workload. The client is passed in; see README.md.
export { SESSION_COOKIE, VSPHERE_READ_ATTEMPTS, VSPHERE_REQUEST_TIMEOUT_MS, VsphereClient, type CallOptions, type ServiceContent, type VsphereConnectOptions } from "./client.ts";
export { codeForFault, VSPHERE_FAULT_CODES, VsphereFault } from "./faults.ts";
export {
  containerContents, DEFAULT_TASK_TIMEOUT_MS, getProperties, retrieveProperties, runTask, waitForTask, watchObject,
  type ObjectContent, type PropertyValue, type TaskOptions, type WatchOptions,
} from "./property-collector.ts";
export {
  escapeInventoryName, findByInventoryPath, findDatacenter, findDatastore, findFolder, findHost, findNetwork, findResourcePool, findVm, listVms,
  type Datacenter, type VmSummary,
} from "./inventory.ts";
export {
  createDatastoreDiskSink, datastorePathOf, datastoreUrl, deleteDatastoreDisk, flatDescriptor, listDatastoreFolder, openDatastoreDisk, openDatastoreFile,
  parseDatastorePath, removeEmptyDatastoreFolder, statDatastoreFile, type DatastoreDiskFormat, type DatastoreFile, type DatastoreSinkOptions,
} from "./datastore.ts";
export { importWorkload, NFC_LEASE_READY_TIMEOUT_MS, NFC_PROGRESS_INTERVAL_MS, type ImportDisk, type NfcImportOptions, type NfcImportResult, type NfcProgress, type NfcUpload } from "./nfc-import.ts";
export {
  configSpecFor, createSnapshot, createVm, datacenterOf, destroyVm, parseVmConfig, pickDisk, powerOffVm, powerOnVm, powerState, readVmConfig, reconfigureVm,
  removeSnapshot, resizeVm, snapshotDisks, withSnapshot, type CreateVmOptions, type VmConfig, type VmDisk, type VmNic, type VmPlacement,
} from "./vm.ts";
export { startUpload, type UploadOptions, type UploadTarget } from "./upload.ts";
export { isMoRef, moRef, type MoRef, type SoapInput } from "./xml.ts";
export * from "./disk-url.ts";
export * from "./location.ts";
export * from "./point-in-time.ts";
