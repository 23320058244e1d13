// The aws and azure placements compose the official providers' resources, which cannot run
// here (no provider plugins): pulumi.runtime.setMocks records what they would create. The
// inputs asserted come from our mappings (firmware → bootMode / hyperVGeneration, size →
// instance type / VM size), so a wrong mapping fails here.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { AwsPlacement } from "../../components/placements/aws.ts";
import { AzurePlacement } from "../../components/placements/azure.ts";
import { Workload } from "../../components/workload.ts";
import { placementSchema } from "../../sdk/spec/placement.ts";
import { parseWorkload } from "../../sdk/spec/workload.ts";
import { awsDeviceNameFor } from "../../sdk/clouds/aws/devices.ts";

interface Created {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
}
const created: Created[] = [];

before(() => {
  pulumi.runtime.setMocks(
    {
      newResource(args) {
        created.push({ type: args.type, name: args.name, inputs: args.inputs });
        return { id: `${args.name}-id`, state: { ...args.inputs, ...dynamicOutputs(args.name, args.inputs), privateIp: "10.0.0.5" } };
      },
      call: (args) => args.inputs,
    },
    "pw-mocks",
    "test",
    false,
  );
});

/**
 * What our dynamic providers would answer, for the Workload tests: the placement (Machine) says
 * where its cutover put each disk (a snapshot or blob named after the cutover), and each Disk
 * records that. The official shells can only learn a disk's location through these outputs.
 */
function dynamicOutputs(name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  if (name.endsWith("-machine")) {
    const plans = JSON.parse(inputs.disks as string) as Array<{ id: string; target: string }>;
    return { placed: JSON.stringify(plans.map((p) => ({ id: p.id, target: p.target, location: p.target.startsWith("ebs://") ? `snap-${p.id}-after-cutover` : `${p.target.replace(/^azblob:\/\/[^/]+\//, "https://acct.blob.core.windows.net/")}` }))) };
  }
  if (typeof inputs.placed === "string") return { location: (JSON.parse(inputs.placed) as { location: string }).location };
  return {};
}

function resolved<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply(resolve));
}

const workload = parseWorkload({
  name: "web",
  cpu: { sockets: 1, coresPerSocket: 4 },
  memoryMiB: 16384,
  firmware: { type: "uefi" },
  disks: [
    { id: "os", sizeBytes: 20 * 1024 ** 3, source: { kind: "file", path: "/img/os.qcow2" }, bootOrder: 0 },
    { id: "data", sizeBytes: 100 * 1024 ** 3 + 1, source: { kind: "file", path: "/img/data.qcow2" } },
  ],
  guestOs: { family: "linux", distribution: "ubuntu", version: "22.04" },
});

describe("aws placement (setMocks)", () => {
  it("GIVEN two snapshots WHEN composed THEN the Ami carries them with the UEFI boot mode and ENA, and the Instance uses the mapped type", async () => {
    created.length = 0;
    const placement = placementSchema.parse({ kind: "aws", region: "eu-west-1", subnetId: "subnet-1", securityGroupIds: ["sg-1"] });
    if (placement.kind !== "aws") throw new Error("unreachable");
    const aws = new AwsPlacement("web", { workload, placement, disks: [{ id: "os", sizeBytes: 20 * 1024 ** 3, snapshotId: "snap-0a" }, { id: "data", sizeBytes: 100 * 1024 ** 3 + 1, snapshotId: "snap-0b" }] });
    await resolved(aws.instance!.id);
    const ami = created.find((c) => c.type === "aws:ec2/ami:Ami")!;
    assert.equal(ami.inputs.bootMode, "uefi");
    assert.equal(ami.inputs.enaSupport, true);
    assert.equal(ami.inputs.architecture, "x86_64");
    assert.equal(ami.inputs.virtualizationType, "hvm");
    const devices = ami.inputs.ebsBlockDevices as Array<Record<string, unknown>>;
    assert.deepEqual(devices.map((d) => [d.deviceName, d.snapshotId, d.volumeSize]), [["/dev/xvda", "snap-0a", 20], ["/dev/sdf", "snap-0b", 101]]);
    assert.equal(ami.inputs.rootDeviceName, "/dev/xvda");
    const instance = created.find((c) => c.type === "aws:ec2/instance:Instance")!;
    assert.equal(instance.inputs.instanceType, "m7i.xlarge", "4 vCPUs and 16 GiB: the smallest m7i that fits");
    assert.equal(instance.inputs.subnetId, "subnet-1");
    assert.deepEqual(instance.inputs.vpcSecurityGroupIds, ["sg-1"]);
    assert.equal(instance.inputs.ami, "web-ami-id");
  });

  it("GIVEN an instance type override and a BIOS arm64 workload WHEN composed THEN the override wins, and BIOS on arm64 is refused", async () => {
    created.length = 0;
    const placement = placementSchema.parse({ kind: "aws", region: "us-east-1", instanceType: "c7i.large" });
    if (placement.kind !== "aws") throw new Error("unreachable");
    const aws = new AwsPlacement("api", { workload, placement, disks: [{ id: "os", sizeBytes: 1024 ** 3, snapshotId: "snap-1" }] });
    await resolved(aws.instance!.id);
    assert.equal(created.find((c) => c.type === "aws:ec2/instance:Instance")!.inputs.instanceType, "c7i.large");
    const arm = parseWorkload({ name: "arm", memoryMiB: 1024, firmware: { type: "bios" }, guestOs: { family: "linux", architecture: "arm64" } });
    assert.throws(() => new AwsPlacement("arm", { workload: arm, placement, disks: [] }), { code: "AWS_FIRMWARE_UNSUPPORTED" });
  });
});

describe("azure placement (setMocks)", () => {
  it("GIVEN two page blobs WHEN composed with Import THEN the Disks import them as Gen2, the VM attaches them with the mapped size", async () => {
    created.length = 0;
    const placement = placementSchema.parse({
      kind: "azure", location: "westeurope", resourceGroupName: "rg", storageAccount: "acct", container: "disks",
      storageAccountId: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct", networkInterfaceId: "/nic/1",
    });
    if (placement.kind !== "azure") throw new Error("unreachable");
    const azure = new AzurePlacement("web", { workload, placement, disks: [
      { id: "os", sizeBytes: 20 * 1024 ** 3, blobUrl: "https://acct.blob.core.windows.net/disks/web-os.vhd" },
      { id: "data", sizeBytes: 100 * 1024 ** 3, blobUrl: "https://acct.blob.core.windows.net/disks/web-data.vhd" },
    ] });
    await resolved(azure.vm!.id);
    const disks = created.filter((c) => c.type === "azure-native:compute:Disk");
    assert.equal(disks.length, 2);
    for (const disk of disks) {
      assert.equal(disk.inputs.hyperVGeneration, "V2");
      const data = disk.inputs.creationData as Record<string, unknown>;
      assert.equal(data.createOption, "Import");
      assert.equal(data.storageAccountId, placement.storageAccountId);
    }
    const os = disks.find((d) => d.name === "web-os")!;
    assert.equal((os.inputs.creationData as Record<string, unknown>).sourceUri, "https://acct.blob.core.windows.net/disks/web-os.vhd");
    assert.equal(os.inputs.osType, "Linux");
    assert.equal(disks.find((d) => d.name === "web-data")!.inputs.osType, undefined, "only the OS disk has an osType");
    const vm = created.find((c) => c.type === "azure-native:compute:VirtualMachine")!;
    assert.equal((vm.inputs.hardwareProfile as Record<string, unknown>).vmSize, "Standard_D4s_v5");
    const storage = vm.inputs.storageProfile as { osDisk: Record<string, unknown>; dataDisks: Array<Record<string, unknown>> };
    assert.equal(storage.osDisk.createOption, "Attach");
    assert.deepEqual((storage.osDisk.managedDisk as Record<string, unknown>).id, "web-os-id");
    assert.equal(storage.dataDisks.length, 1);
    assert.equal(storage.dataDisks[0]!.lun, 0);
  });

  it("GIVEN the Upload flow and a BIOS workload WHEN composed THEN the Disk is an Upload of the VHD's size and Gen1", async () => {
    created.length = 0;
    const bios = parseWorkload({ ...workload, firmware: { type: "bios" }, disks: [workload.disks[0]] });
    const placement = placementSchema.parse({ kind: "azure", location: "westeurope", resourceGroupName: "rg", storageAccount: "acct", container: "disks", storageAccountId: "/sa", launch: false });
    if (placement.kind !== "azure") throw new Error("unreachable");
    const azure = new AzurePlacement("legacy", { workload: bios, placement, createOption: "Upload", disks: [{ id: "os", sizeBytes: 20 * 1024 ** 3 + 1, blobUrl: "unused" }] });
    await resolved(azure.disks[0]!.id);
    const disk = created.find((c) => c.type === "azure-native:compute:Disk")!;
    assert.equal(disk.inputs.hyperVGeneration, "V1");
    const data = disk.inputs.creationData as Record<string, unknown>;
    assert.equal(data.createOption, "Upload");
    assert.equal(data.uploadSizeBytes, 20 * 1024 ** 3 + 1024 * 1024 + 512, "whole MiB up, plus the 512-byte footer");
    assert.equal(azure.vm, undefined, "launch: false creates no VM");
  });
});

describe("Workload args (setMocks)", () => {
  it("GIVEN an invalid spec, placement and policy WHEN constructed THEN it logs one error naming every issue and its path, and registers nothing", async () => {
    created.length = 0;
    const logged: string[] = [];
    const original = console.error;
    // Without an engine, pulumi.log.error writes to console.error ("error: [runtime] …").
    console.error = (...args: unknown[]) => void logged.push(args.map(String).join(" "));
    let workload: Workload;
    try {
      workload = new Workload("bad", {
        spec: { name: "", memoryMiB: 0, firmware: { type: "bios", secureBoot: true }, guestOs: { family: "linux" }, disks: [{ id: "d", sizeBytes: -1 }] },
        placement: { kind: "aws" } as never,
        migration: { mode: "lukewarm" } as never,
      });
    } finally {
      console.error = original;
    }
    assert.equal(logged.length, 1, logged.join("\n"));
    assert.match(logged[0]!, /Workload bad: 7 problem\(s\) in its arguments \(WORKLOAD_INVALID\)/);
    for (const path of ["spec.name", "spec.memoryMiB", "spec.firmware.secureBoot", "spec.disks.0.sizeBytes", "spec.disks.0.source", "placement.region", "migration.mode"]) {
      assert.ok(logged[0]!.includes(`\n  ${path}: `), `${path} is reported in:\n${logged[0]}`);
    }
    assert.deepEqual(await resolved(workload.disks), {});
    assert.deepEqual(created.map((c) => c.type), [], "no Disk, Machine or cloud resource was registered");
  });
});

describe("Workload with a cloud placement (setMocks)", () => {
  const spec = { ...workload, disks: workload.disks.map((d) => ({ ...d, sizeBytes: 20 * 1024 ** 3 })) };

  /** Each resource's retainOnDelete, as a transformation sees its options. */
  const retained = new Map<string, boolean | undefined>();
  const watch: pulumi.ResourceTransformation = (args) => {
    retained.set(args.name, args.opts.retainOnDelete);
    return undefined;
  };

  it("GIVEN an aws placement WHEN composed THEN the Ami takes the snapshots the cutover (portable:Machine) placed, through the Disk records", async () => {
    created.length = 0;
    retained.clear();
    const web = new Workload("web", { spec, placement: { kind: "aws", region: "eu-west-1", subnetId: "subnet-1" }, migration: { mode: "cold", maxPasses: 4 }, stateDir: "/tmp/pw-mock-state" }, { transformations: [watch] });
    await resolved(web.machineId);
    const machine = created.find((c) => c.name === "web-machine")!;
    assert.ok(machine, "the placement and its cutover is a resource on aws too");
    assert.equal(JSON.parse(machine.inputs.placement as string).kind, "aws");
    assert.deepEqual(JSON.parse(machine.inputs.migration as string), { mode: "cold", cutover: true, maxPasses: 4 });
    assert.deepEqual((JSON.parse(machine.inputs.disks as string) as Array<{ target: string }>).map((d) => d.target.split("?")[0]), ["ebs://", "ebs://"]);
    const records = created.filter((c) => c.name === "web-os" || c.name === "web-data");
    assert.equal(records.length, 2);
    assert.ok(records.every((r) => typeof r.inputs.placed === "string" && r.inputs.source === undefined), "the Disks record the Machine's placement; they copy nothing");
    const ami = created.find((c) => c.type === "aws:ec2/ami:Ami")!;
    const devices = ami.inputs.ebsBlockDevices as Array<Record<string, unknown>>;
    assert.deepEqual(devices.map((d) => d.snapshotId), ["snap-os-after-cutover", "snap-data-after-cutover"], "only the cutover's outputs name the snapshots: the Ami waits for it");
    assert.equal(await resolved(web.disks).then((d) => d.os), "snap-os-after-cutover");
    // source: keep (the default): the stopped instance and its AMI outlive a move away from AWS.
    assert.equal(retained.get("web-aws-ami"), true);
    assert.equal(retained.get("web-aws-instance"), true);
  });

  it("GIVEN a boot disk listed after a data disk WHEN composed on aws and on azure THEN the boot disk is the AMI's root device and the VM's OS disk, and a move reads it back at the root device", async () => {
    created.length = 0;
    // Data first in the spec; the boot disk is the one with bootOrder.
    const reordered = { ...spec, name: "late", disks: [{ ...spec.disks[1]!, id: "data" }, { ...spec.disks[0]!, id: "os" }] };
    const onAws = new Workload("late", { spec: reordered, placement: { kind: "aws", region: "eu-west-1" }, stateDir: "/tmp/pw-mock-state" });
    await resolved(onAws.machineId);
    const ami = created.find((c) => c.type === "aws:ec2/ami:Ami")!;
    const devices = (ami.inputs.ebsBlockDevices as Array<Record<string, unknown>>).map((d) => [d.deviceName, d.snapshotId]);
    assert.deepEqual(devices, [["/dev/xvda", "snap-os-after-cutover"], ["/dev/sdf", "snap-data-after-cutover"]]);
    assert.equal(ami.inputs.rootDeviceName, "/dev/xvda");
    const parsed = parseWorkload(reordered);
    assert.equal(awsDeviceNameFor(parsed, "os"), "/dev/xvda", "live-volume reads the boot disk at the root device");
    assert.equal(awsDeviceNameFor(parsed, "data"), "/dev/sdf");

    created.length = 0;
    const onAzure = new Workload("late-az", {
      spec: { ...reordered, name: "late-az" },
      placement: { kind: "azure", location: "westeurope", resourceGroupName: "rg", storageAccount: "acct", container: "disks", storageAccountId: "/sa", networkInterfaceId: "/nic/1" },
      stateDir: "/tmp/pw-mock-state",
    });
    await resolved(onAzure.machineId);
    const vm = created.find((c) => c.type === "azure-native:compute:VirtualMachine")!;
    const storage = vm.inputs.storageProfile as { osDisk: { managedDisk: { id: string } }; dataDisks: Array<{ managedDisk: { id: string } }> };
    assert.equal(storage.osDisk.managedDisk.id, "late-az-azure-os-id");
    assert.deepEqual(storage.dataDisks.map((d) => d.managedDisk.id), ["late-az-azure-data-id"]);
    const osDisk = created.find((c) => c.type === "azure-native:compute:Disk" && c.name === "late-az-azure-os")!;
    assert.ok(osDisk.inputs.osType !== undefined, "the OS type is on the boot disk");
  });

  it("GIVEN source: delete WHEN composed THEN the AMI and the instance go when the workload leaves AWS", async () => {
    retained.clear();
    const web = new Workload("gone", { spec: { ...spec, name: "gone" }, placement: { kind: "aws", region: "eu-west-1" }, migration: { source: "delete" }, stateDir: "/tmp/pw-mock-state" }, { transformations: [watch] });
    await resolved(web.machineId);
    assert.equal(retained.get("gone-aws-ami"), undefined);
    assert.equal(retained.get("gone-aws-instance"), undefined);
  });

  it("GIVEN an azure placement WHEN composed THEN the managed disks import the blobs the cutover placed", async () => {
    created.length = 0;
    const web = new Workload("app", {
      spec: { ...spec, name: "app" },
      placement: { kind: "azure", location: "westeurope", resourceGroupName: "rg", storageAccount: "acct", container: "disks", storageAccountId: "/sa", networkInterfaceId: "/nic/1" },
      stateDir: "/tmp/pw-mock-state",
    });
    await resolved(web.machineId);
    assert.ok(created.some((c) => c.name === "app-machine"));
    const disks = created.filter((c) => c.type === "azure-native:compute:Disk");
    assert.deepEqual(disks.map((d) => (d.inputs.creationData as Record<string, unknown>).sourceUri).sort(), [
      "https://acct.blob.core.windows.net/disks/app-data.vhd",
      "https://acct.blob.core.windows.net/disks/app-os.vhd",
    ]);
  });
});
