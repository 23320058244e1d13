// The azure placement: azure-native managed disks and a VirtualMachine on top of the page blobs
// our portable:Disk resources wrote. Import creates each disk from its blob; Upload creates an
// empty disk of the blob's size for a writer holding its SAS (the azdisk:// flow of the sdk).
// hyperVGeneration follows the firmware, the size the mapping unless the placement overrides it.
import * as azure from "@pulumi/azure-native";
import * as pulumi from "@pulumi/pulumi";
import type { Placement } from "../../sdk/spec/placement.ts";
import { vcpuCount, type Workload } from "../../sdk/spec/workload.ts";
import { azureFirmwareFor } from "../../sdk/spec/mappings/firmware.ts";
import { azureVmSizeFor } from "../../sdk/spec/mappings/azure-vm-sizes.ts";
import { azureOsTypeFor } from "../../sdk/spec/mappings/guest-os.ts";
import { vhdBlobSizeFor } from "../../sdk/clouds/azure/page-blob-sink.ts";

export interface PlacedBlob {
  readonly id: string;
  readonly sizeBytes: number;
  /** The blob's URL (no SAS). */
  readonly blobUrl: pulumi.Input<string>;
}

export interface AzurePlacementArgs {
  readonly workload: Workload;
  readonly placement: Extract<Placement, { kind: "azure" }>;
  /** OS disk first. */
  readonly disks: readonly PlacedBlob[];
  /** @default "Import" */
  readonly createOption?: "Import" | "Upload";
  /**
   * The policy's `source: keep`: when the workload moves away, the managed disks and the VM stay
   * in Azure (the VM powered off by the cutover) instead of being deleted with the placement.
   * @default false
   */
  readonly keep?: boolean;
}

export class AzurePlacement extends pulumi.ComponentResource {
  readonly disks: azure.compute.Disk[];
  readonly vm?: azure.compute.VirtualMachine;
  readonly vmSize: string;

  constructor(name: string, args: AzurePlacementArgs, opts?: pulumi.ComponentResourceOptions) {
    super("portable:index:AzurePlacement", name, {}, opts);
    const { workload, placement } = args;
    const arch = workload.guestOs.architecture === "arm64" ? "arm64" : "x86_64";
    const firmware = azureFirmwareFor(workload.firmware, workload.guestOs.architecture);
    const osType = azureOsTypeFor(workload.guestOs);
    this.vmSize = placement.vmSize ?? azureVmSizeFor({ vcpus: vcpuCount(workload), memoryMiB: workload.memoryMiB, architecture: arch }).name;
    const createOption = args.createOption ?? "Import";
    const tags = { ...workload.tags, "portable-workload": workload.name };
    this.disks = args.disks.map((disk, index) =>
      new azure.compute.Disk(`${name}-${disk.id}`, {
        resourceGroupName: placement.resourceGroupName,
        location: placement.location,
        diskName: `${workload.name}-${disk.id}`,
        sku: { name: "Premium_LRS" },
        hyperVGeneration: firmware.hyperVGeneration,
        ...(index === 0 ? { osType } : {}),
        creationData: createOption === "Import"
          ? { createOption: "Import", sourceUri: disk.blobUrl, storageAccountId: placement.storageAccountId }
          : { createOption: "Upload", uploadSizeBytes: vhdBlobSizeFor(disk.sizeBytes) },
        tags,
      }, { parent: this, ...(args.keep === true ? { retainOnDelete: true } : {}) }),
    );
    if (placement.launch && this.disks.length > 0) {
      const [osDisk, ...dataDisks] = this.disks;
      this.vm = new azure.compute.VirtualMachine(`${name}-vm`, {
        resourceGroupName: placement.resourceGroupName,
        location: placement.location,
        vmName: workload.name,
        hardwareProfile: { vmSize: this.vmSize },
        storageProfile: {
          osDisk: { createOption: "Attach", osType, managedDisk: { id: osDisk!.id } },
          dataDisks: dataDisks.map((d, lun) => ({ lun, createOption: "Attach", managedDisk: { id: d.id } })),
        },
        ...(placement.networkInterfaceId === undefined ? {} : { networkProfile: { networkInterfaces: [{ id: placement.networkInterfaceId, primary: true }] } }),
        ...(firmware.securityType === undefined
          ? {}
          : { securityProfile: { securityType: firmware.securityType, uefiSettings: { secureBootEnabled: workload.firmware.secureBoot, vTpmEnabled: workload.firmware.vtpm } } }),
        tags,
      }, { parent: this, ...(args.keep === true ? { retainOnDelete: true } : {}) });
    }
    this.registerOutputs({ vmId: this.vm?.id, vmSize: this.vmSize, diskIds: this.disks.map((d) => d.id) });
  }
}
