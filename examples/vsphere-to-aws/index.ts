// A VM that runs on vSphere today, placed on AWS: the Workload reads its disk from the datastore
// (vsphere:// source), writes it into EBS snapshots through the EBS direct APIs (no S3, no VM
// Import), registers an AMI (boot mode, ENA from the mappings) and launches the mapped instance.
import * as pulumi from "@pulumi/pulumi";
import { Workload } from "../../components/workload.ts";

const config = new pulumi.Config();
const app = new Workload("erp", {
  spec: {
    name: "erp",
    cpu: { sockets: 2, coresPerSocket: 2 },
    memoryMiB: 8192,
    firmware: { type: "uefi" },
    disks: [{ id: "os", sizeBytes: 40 * 2 ** 30, source: { kind: "file", path: config.require("osDisk") }, bus: "nvme", bootOrder: 0 }],
    nics: [{ network: "prod" }],
    guestOs: { family: "linux", distribution: "rhel", version: "9" },
  },
  placement: {
    kind: "aws",
    region: config.get("region") ?? "eu-west-1",
    subnetId: config.require("subnetId"),
    securityGroupIds: config.requireObject<string[]>("securityGroupIds"),
    // The replica state beside the snapshots, so a CI runner's preview plans the same move.
    stateBucket: config.require("stateBucket"),
  },
  // A VMware guest's initramfs rarely has NVMe, and its fstab says /dev/sda: "auto" adds the driver
  // and names filesystems by UUID, on an overlay of the source (the source is never written).
  migration: { mode: "warm", source: "keep", fixups: "auto" },
});

export const instanceId = app.machineId;
export const snapshots = app.disks;
