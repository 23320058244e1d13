// The aws placement: the official provider's resources on top of the snapshots our portable:Disk
// resources wrote. aws.ec2.Ami registers them (boot mode, ENA, architecture from the mappings),
// aws.ec2.Instance runs it with the mapped instance type unless the placement overrides it.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { Workload } from "../../sdk/spec/workload.ts";
import type { Placement } from "../../sdk/spec/placement.ts";
import { awsFirmwareFor } from "../../sdk/spec/mappings/firmware.ts";
import { awsInstanceTypeFor } from "../../sdk/spec/mappings/aws-instance-types.ts";
import { vcpuCount } from "../../sdk/spec/workload.ts";
import { awsDeviceNameFor, ROOT_DEVICE } from "../../sdk/clouds/aws/devices.ts";

export interface PlacedSnapshot {
  readonly id: string;
  readonly sizeBytes: number;
  readonly snapshotId: pulumi.Input<string>;
}

export interface AwsPlacementArgs {
  readonly workload: Workload;
  readonly placement: Extract<Placement, { kind: "aws" }>;
  /** Boot disk first. */
  readonly disks: readonly PlacedSnapshot[];
  /**
   * The policy's `source: keep`: when the workload moves away, the AMI and the instance (stopped
   * by the cutover) stay in AWS instead of being deleted with the placement. @default false
   */
  readonly keep?: boolean;
}

const GiB = 1024 ** 3;

export class AwsPlacement extends pulumi.ComponentResource {
  readonly ami: aws.ec2.Ami;
  readonly instance?: aws.ec2.Instance;
  readonly instanceType: string;

  constructor(name: string, args: AwsPlacementArgs, opts?: pulumi.ComponentResourceOptions) {
    super("portable:index:AwsPlacement", name, {}, opts);
    const { workload, placement } = args;
    const arch = workload.guestOs.architecture === "arm64" ? "arm64" : "x86_64";
    const firmware = awsFirmwareFor(workload.firmware, workload.guestOs.architecture);
    this.instanceType = placement.instanceType ?? awsInstanceTypeFor({ vcpus: vcpuCount(workload), memoryMiB: workload.memoryMiB, architecture: arch }).name;
    const provider = new aws.Provider(`${name}-aws`, {
      region: placement.region as aws.Region,
      ...(placement.endpoint === undefined
        ? {}
        : { endpoints: [{ ec2: placement.endpoint }], skipCredentialsValidation: true, skipRequestingAccountId: true, skipMetadataApiCheck: true }),
    }, { parent: this });
    const children = { parent: this, provider, ...(args.keep === true ? { retainOnDelete: true } : {}) };
    this.ami = new aws.ec2.Ami(`${name}-ami`, {
      name: `${workload.name}-${name}`,
      virtualizationType: "hvm",
      architecture: arch,
      bootMode: firmware.bootMode,
      enaSupport: true,
      ...(firmware.tpmSupport === undefined ? {} : { tpmSupport: firmware.tpmSupport }),
      rootDeviceName: ROOT_DEVICE,
      ebsBlockDevices: args.disks.map((disk) => ({
        // The rule a move reads the instance's volumes back by (sdk/clouds/aws/live-volume.ts): the boot disk is the root.
        deviceName: awsDeviceNameFor(workload, disk.id),
        snapshotId: disk.snapshotId,
        volumeSize: Math.max(1, Math.ceil(disk.sizeBytes / GiB)),
        volumeType: "gp3",
        deleteOnTermination: true,
      })),
      tags: { ...workload.tags, "portable:workload": workload.name },
    }, children);
    if (placement.launch) {
      this.instance = new aws.ec2.Instance(`${name}-instance`, {
        ami: this.ami.id,
        instanceType: this.instanceType,
        ...(placement.subnetId === undefined ? {} : { subnetId: placement.subnetId }),
        ...(placement.securityGroupIds.length === 0 ? {} : { vpcSecurityGroupIds: placement.securityGroupIds }),
        ...(placement.keyName === undefined ? {} : { keyName: placement.keyName }),
        tags: { ...workload.tags, Name: workload.name, "portable:workload": workload.name },
      }, children);
    }
    this.registerOutputs({ amiId: this.ami.id, instanceId: this.instance?.id, instanceType: this.instanceType });
  }
}
