// VM lifecycle from a Workload against vcsim: create with disks attached from datastore files,
// read the config back, reconfigure, power, snapshot, destroy; and faults that must leave no
// half-created VM behind.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { createDatastoreDiskSink, openDatastoreDisk, parseDatastorePath } from "../../../sdk/clouds/vsphere/datastore.ts";
import { listVms } from "../../../sdk/clouds/vsphere/inventory.ts";
import {
  createVm, datacenterOf, destroyVm, powerOffVm, powerOnVm, powerState, readVmConfig, resizeVm, withSnapshot,
} from "../../../sdk/clouds/vsphere/vm.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { isPortableError } from "../../../sdk/errors.ts";
import { parseWorkload, type WorkloadInput } from "../../../sdk/spec/workload.ts";
import { memorySource, sourceSha256 } from "../../harness/disk.ts";
import { startVcsim, type Vcsim } from "../../harness/vcsim.ts";
import { connect, MiB } from "./helpers.ts";

const DS = "LocalDS_0";

function workload(name: string, overrides: Partial<WorkloadInput> = {}): WorkloadInput {
  return {
    name,
    cpu: { sockets: 2, coresPerSocket: 2 },
    memoryMiB: 3072,
    firmware: { type: "uefi", secureBoot: true },
    disks: [
      { id: "boot", sizeBytes: 4 * MiB, bus: "scsi", bootOrder: 0 },
      { id: "data", sizeBytes: 2 * MiB, bus: "sata" },
      { id: "old", sizeBytes: MiB, bus: "ide" },
    ],
    nics: [
      { network: "VM Network", model: "vmxnet3", macPolicy: { kind: "static", address: "00:50:56:aa:bb:01" } },
      { network: "VM Network", model: "e1000e" },
    ],
    guestOs: { family: "linux", distribution: "ubuntu", architecture: "x86_64" },
    ...overrides,
  };
}

/** Uploads a small flat disk with a recognisable pattern and returns its datastore path. */
async function uploadDisk(client: VsphereClient, path: string, sizeBytes: number, fill: number): Promise<string> {
  const data = Buffer.alloc(sizeBytes);
  data.fill(fill, 0, 64 * 1024);
  const file = parseDatastorePath(`[${DS}] ${path}`, "DC0");
  const sink = await createDatastoreDiskSink(client, file, { virtualSizeBytes: sizeBytes });
  return (await convert(memorySource(data), sink)).location;
}

async function vmNames(client: VsphereClient): Promise<string[]> {
  return (await listVms(client)).map((vm) => vm.name);
}

describe("vSphere VM lifecycle (vcsim)", () => {
  let sim: Vcsim;
  let client: VsphereClient;
  let files: { boot: string; data: string; old: string };
  before(async () => {
    sim = await startVcsim();
    client = await connect(sim);
    files = {
      boot: await uploadDisk(client, "disks/web-boot.vmdk", 4 * MiB, 0xb0),
      data: await uploadDisk(client, "disks/web-data.vmdk", 2 * MiB, 0xda),
      old: await uploadDisk(client, "disks/web-old.vmdk", MiB, 0x01),
    };
  });
  after(async () => {
    await client?.logout().catch(() => {});
    await sim?.stop();
  });

  it("GIVEN a Workload WHEN a VM is created from it THEN its config reads back with the same CPUs, memory, firmware, disks and NICs", async () => {
    const vm = await createVm(client, workload("web-1"), { datastore: DS, diskFiles: files });
    const config = await readVmConfig(client, vm);
    assert.equal(config.name, "web-1");
    assert.equal(config.cpus, 4);
    assert.equal(config.coresPerSocket, 2);
    assert.equal(config.memoryMiB, 3072);
    assert.equal(config.firmware, "efi");
    assert.equal(config.guestId, "ubuntu64Guest");
    assert.equal(config.version, "vmx-13");
    assert.deepEqual(
      config.disks.map((d) => [d.fileName, d.capacityBytes, d.bus]),
      [
        [files.boot, 4 * MiB, "scsi"],
        [files.data, 2 * MiB, "sata"],
        [files.old, MiB, "ide"],
      ].sort((a, b) => config.disks.findIndex((d) => d.fileName === a[0]) - config.disks.findIndex((d) => d.fileName === b[0])),
    );
    assert.equal(new Set(config.disks.map((d) => d.fileName)).size, 3);
    assert.deepEqual(config.nics.map((n) => [n.type, n.network]), [["VirtualVmxnet3", "VM Network"], ["VirtualE1000e", "VM Network"]]);
    assert.equal(config.nics[0]?.macAddress, "00:50:56:aa:bb:01");
    assert.equal(await datacenterOf(client, vm), "DC0");

    await resizeVm(client, vm, { cpus: 8, coresPerSocket: 4, memoryMiB: 4096 });
    const resized = await readVmConfig(client, vm);
    assert.deepEqual([resized.cpus, resized.coresPerSocket, resized.memoryMiB], [8, 4, 4096]);
  });

  it("GIVEN the VM WHEN powered on, snapshotted, read, powered off and destroyed THEN each step lands and its disks read back through the snapshot", async () => {
    const [vm] = (await listVms(client)).filter((v) => v.name === "web-1").map((v) => v.ref);
    assert.ok(vm !== undefined);
    await powerOnVm(client, vm);
    assert.equal(await powerState(client, vm), "poweredOn");
    const hash = await withSnapshot(client, vm, "copy", async (disks) => {
      const boot = disks.find((d) => d.fileName === files.boot);
      assert.ok(boot !== undefined, "the snapshot names the boot disk file");
      const source = await openDatastoreDisk(client, parseDatastorePath(boot.fileName, await datacenterOf(client, vm)));
      try {
        return await sourceSha256(source);
      } finally {
        await source.close();
      }
    });
    const expected = Buffer.alloc(4 * MiB);
    expected.fill(0xb0, 0, 64 * 1024);
    assert.equal(hash, await sourceSha256(memorySource(expected)));
    assert.equal(await powerOffVm(client, vm, { guestShutdownTimeoutMs: 30_000 }), "guest");
    assert.equal(await powerState(client, vm), "poweredOff");
    await destroyVm(client, vm, { keepDisks: true });
    assert.ok(!(await vmNames(client)).includes("web-1"));
    const kept = await openDatastoreDisk(client, parseDatastorePath(files.boot, "DC0"));
    await kept.close();
  });

  it("GIVEN a disk file that does not exist WHEN creating THEN VSPHERE_FILE_NOT_FOUND, no VM is left, and the same name can be created afterwards", async () => {
    await assert.rejects(
      createVm(client, workload("web-2"), { datastore: DS, diskFiles: { ...files, data: `[${DS}] disks/missing.vmdk` } }),
      (err) => isPortableError(err) && err.code === "VSPHERE_FILE_NOT_FOUND" && err.context.cleanup === "done",
    );
    assert.ok(!(await vmNames(client)).includes("web-2"));
    const vm = await createVm(client, workload("web-2"), { datastore: DS, diskFiles: files });
    await assert.rejects(createVm(client, workload("web-2"), { datastore: DS, diskFiles: files }), (err) => isPortableError(err) && err.code === "VSPHERE_DUPLICATE_NAME");
    await destroyVm(client, vm, { keepDisks: true });
  });

  it("GIVEN a network that does not exist WHEN creating THEN VSPHERE_NETWORK_NOT_FOUND before anything is created", async () => {
    const before = await vmNames(client);
    await assert.rejects(
      createVm(client, workload("web-3", { nics: [{ network: "No Such Net" }] }), { datastore: DS, diskFiles: files }),
      (err) => isPortableError(err) && err.code === "VSPHERE_NETWORK_NOT_FOUND",
    );
    assert.deepEqual(await vmNames(client), before);
    assert.ok(parseWorkload(workload("x")).disks.length === 3);
  });
});

describe("vSphere VM faults (vcsim with task delays)", () => {
  let sim: Vcsim;
  let client: VsphereClient;
  before(async () => {
    // Task names as vcsim keys them; LockHandoff:0 lets other calls run while a task sleeps.
    // No model VMs (-vm 0, -standalone-host 0): vcsim builds them with the delayed CreateVm task.
    sim = await startVcsim(["-vm", "0", "-standalone-host", "0", "-method-delay", "CreateVm:2000,ShutdownGuest:2000,LockHandoff:0"]);
    client = await connect(sim);
  });
  after(async () => {
    await client?.logout().catch(() => {});
    await sim?.stop();
  });

  it("GIVEN a CreateVM task slower than the timeout WHEN creating THEN VSPHERE_TASK_TIMEOUT, and the VM it made later is cleaned up", async () => {
    const files = { boot: await uploadDisk(client, "disks/slow-boot.vmdk", 4 * MiB, 1), data: await uploadDisk(client, "disks/slow-data.vmdk", 2 * MiB, 2), old: await uploadDisk(client, "disks/slow-old.vmdk", MiB, 3) };
    await assert.rejects(
      createVm(client, workload("slow-1"), { datastore: DS, diskFiles: files }, { timeoutMs: 500 }),
      (err) => isPortableError(err) && err.code === "VSPHERE_TASK_TIMEOUT" && err.context.cleanup === "done",
    );
    assert.ok(!(await vmNames(client)).includes("slow-1"), "no half-created VM");
    // The disks the caller attached survive the cleanup.
    const kept = await openDatastoreDisk(client, parseDatastorePath(files.boot, "DC0"));
    await kept.close();
  });

  it("GIVEN a guest that does not shut down in time WHEN powering off THEN the power is cut", async () => {
    const files = { boot: await uploadDisk(client, "disks/stubborn-boot.vmdk", 4 * MiB, 1), data: await uploadDisk(client, "disks/stubborn-data.vmdk", 2 * MiB, 2), old: await uploadDisk(client, "disks/stubborn-old.vmdk", MiB, 3) };
    const vm = await createVm(client, workload("stubborn"), { datastore: DS, diskFiles: files });
    await powerOnVm(client, vm);
    assert.equal(await powerOffVm(client, vm, { guestShutdownTimeoutMs: 300 }), "hard");
    assert.equal(await powerState(client, vm), "poweredOff");
  });
});
