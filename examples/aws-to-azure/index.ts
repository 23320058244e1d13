// A workload moved from AWS to Azure by changing one line: set `portable:target` to azure and
// run `pulumi up`. The disk is read back from its EBS snapshot chain and written as a fixed VHD
// page blob; azure-native imports it as a managed disk and creates the VM (Gen2 for UEFI).
import * as pulumi from "@pulumi/pulumi";
import { Workload } from "../../components/workload.ts";

const config = new pulumi.Config();
const target = config.get("target") ?? "aws";

const app = new Workload("shop", {
  spec: {
    name: "shop",
    cpu: { sockets: 1, coresPerSocket: 2 },
    memoryMiB: 4096,
    firmware: { type: "uefi" },
    disks: [{ id: "os", sizeBytes: 30 * 2 ** 30, source: { kind: "file", path: config.require("osDisk") }, bootOrder: 0 }],
    guestOs: { family: "linux", distribution: "ubuntu", version: "22.04" },
  },
  placement: target === "azure"
    ? {
        kind: "azure",
        location: "westeurope",
        resourceGroupName: config.require("resourceGroup"),
        storageAccount: config.require("storageAccount"),
        storageAccountId: config.require("storageAccountId"),
        container: "disks",
        networkInterfaceId: config.require("nicId"),
      }
    : { kind: "aws", region: "eu-west-1", subnetId: config.require("subnetId"), stateBucket: config.require("stateBucket") },
  migration: { mode: "warm", source: "keep" },
});

export const machine = app.machineId;
export const disks = app.disks;
