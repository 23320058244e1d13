// Destroying a workload leaves nothing behind (issue #22): after destroyMachine, removeDisk per
// disk and forgetWorkload, the local datastore and the state folder hold none of its files and
// no empty folder it made, and the vSphere datastore no folder of it; what other workloads keep
// in the same places stays. The local machine runs a real QEMU (a blank disk: SeaBIOS finds no
// boot device and waits, which is enough to write its logs, arguments, pid file and socket).
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { listDatastoreFolder, removeEmptyDatastoreFolder } from "../../sdk/clouds/vsphere/datastore.ts";
import type { VsphereConnection } from "../../sdk/contracts/vsphere-connection.ts";
import { isPortableError } from "../../sdk/errors.ts";
import { forgetWorkload, placeDisk, readTimings, removeDisk, replicaKey } from "../../sdk/migrate/disk-placement.ts";
import { createMachine, destroyMachine, isRunning, type MachineRequest } from "../../sdk/migrate/machine-placement.ts";
import { diskTargetFor } from "../../sdk/migrate/targets.ts";
import { machineDriver } from "../../sdk/clouds/registry.ts";
import { placementSchema } from "../../sdk/spec/placement.ts";
import { parseWorkload } from "../../sdk/spec/workload.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { connect } from "../clouds/vsphere/helpers.ts";

const MiB = 1024 * 1024;
const DISK_BYTES = 4 * MiB;

/** Every path under `dir`, relative and sorted; [] for an empty folder. */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

/** A 4 MiB raw image with data at its start and at 3 MiB (so some blocks are sent, some skipped). */
async function sourceImage(path: string): Promise<string> {
  const data = Buffer.alloc(DISK_BYTES);
  data.fill(0x5a, 0, 64 * 1024);
  data.fill(0xc3, 3 * MiB, 3 * MiB + 4096);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, data);
  return path;
}

function workloadNamed(name: string) {
  return parseWorkload({ name, memoryMiB: 64, guestOs: { family: "linux" }, disks: [{ id: "disk0", sizeBytes: DISK_BYTES, bootOrder: 0 }] });
}

describe("destroy: a local workload leaves nothing behind", () => {
  let root: string;
  before(async () => {
    // A short folder: QMP's unix socket path must stay under 108 bytes.
    root = await mkdtemp(join(tmpdir(), "pw-dd-"));
  });
  after(() => rm(root, { recursive: true, force: true }));

  for (const neighbour of [false, true]) {
    it(`GIVEN a running local machine on a placed disk${neighbour ? " beside another workload's files" : ""} WHEN destroyed THEN the datastore and the state folder hold ${neighbour ? "only the other workload's files" : "nothing"}`, { timeout: 120_000 }, async () => {
      const dir = join(root, neighbour ? "b" : "a");
      const datastore = join(dir, "ds");
      const stateDir = join(dir, "st");
      const others = ["disks/other-disk0.raw", "machines/other/serial.log", "machines/other/qemu-args.json"];
      if (neighbour) {
        for (const file of others) {
          await mkdir(join(datastore, file, ".."), { recursive: true });
          await writeFile(join(datastore, file), "another workload's\n");
        }
      }
      const workload = workloadNamed("web");
      const placement = placementSchema.parse({ kind: "local", dir: datastore });
      const target = diskTargetFor(placement, workload.name, "disk0");
      const placed = await placeDisk({ workload: workload.name, disk: "disk0", source: await sourceImage(join(dir, "source.raw")), sourceFormat: "raw", target, stateDir });
      const request: MachineRequest = { workload, stateDir, placement, disks: [{ id: "disk0", location: placed.location, target }] };
      let machineId = "";
      try {
        const state = await createMachine(request);
        machineId = state.machineId;
        assert.equal(state.running, true);
        // The files issue #22 found left behind exist now, so their absence later means something.
        const machineFiles = (await readdir(join(datastore, "machines", machineId))).sort();
        for (const file of ["firmware.log", "qemu-args.json", "qemu.log", "qemu.pid", "qmp.sock", "serial.log"]) assert.ok(machineFiles.includes(file), `${file} in ${machineFiles.join(", ")}`);
        assert.ok(readTimings(stateDir, workload.name).local?.bootSeconds !== undefined, "the boot time was recorded");
        assert.ok((await tree(stateDir)).length >= 2, "current placement and timings are kept while the workload lives");
        assert.ok((await tree(join(datastore, ".portable-state"))).some((f) => f.endsWith(".replica.json")), "the replica state is beside the disk, in the datastore");
      } finally {
        // The Pulumi order: the machine (it depends on its disks) goes first, then each disk.
        await destroyMachine(request, machineId || "web");
      }
      assert.equal(await isRunning(request, machineId), false);
      await removeDisk({ workload: workload.name, disk: "disk0", target, stateDir, virtualSizeBytes: placed.virtualSizeBytes });
      await forgetWorkload(stateDir, workload.name);

      assert.deepEqual(await tree(stateDir), [], "the state folder keeps nothing of the workload");
      const expected = neighbour ? ["disks", "disks/other-disk0.raw", "machines", "machines/other", "machines/other/qemu-args.json", "machines/other/serial.log"] : [];
      assert.deepEqual(await tree(datastore), expected, "the datastore folder itself stays; of its contents only other workloads' files");
    });
  }

  it("GIVEN a machine that still runs WHEN its folder is removed directly THEN it is refused; kept state survives a destroy for a recreate, a plain destroy takes it", { timeout: 60_000 }, async () => {
    const dir = join(root, "c");
    const datastore = join(dir, "ds");
    const stateDir = join(dir, "st");
    const workload = workloadNamed("api");
    const placement = placementSchema.parse({ kind: "local", dir: datastore });
    const target = diskTargetFor(placement, workload.name, "disk0");
    const placed = await placeDisk({ workload: workload.name, disk: "disk0", source: await sourceImage(join(dir, "source.raw")), sourceFormat: "raw", target, stateDir });
    const request: MachineRequest = { workload, stateDir, placement, disks: [{ id: "disk0", location: placed.location, target }] };
    const state = await createMachine(request);
    try {
      const local = await import("../../sdk/clouds/local/index.ts");
      const store = await local.openDatastore(datastore);
      await assert.rejects(local.removeMachine(store, state.machineId), (err) => isPortableError(err) && err.code === "LOCAL_MACHINE_RUNNING");
      assert.ok((await readdir(join(datastore, "machines", state.machineId))).includes("qmp.sock"));
      // A recreate on the same placement keeps the folder (NVRAM, logs); the process and its socket go.
      await destroyMachine(request, state.machineId, { keepLocalState: true });
      assert.equal(await isRunning(request, state.machineId), false);
      const kept = (await readdir(join(datastore, "machines", state.machineId))).sort();
      assert.ok(kept.includes("serial.log") && !kept.includes("qmp.sock") && !kept.includes("qemu.pid"), kept.join(", "));
    } finally {
      await destroyMachine(request, state.machineId);
    }
    assert.deepEqual((await tree(datastore)).filter((f) => !f.startsWith(".portable-state")), ["disks", "disks/api-disk0.raw"], "destroyMachine took the machine's folder and machines/, not the disk (nor its replica state)");
  });
});

describe("destroy: a vSphere disk's datastore folder goes with its last file (vcsim)", () => {
  let sim: Vcsim;
  let root: string;
  let connection: VsphereConnection;
  before(async () => {
    sim = await startVcsim();
    root = await mkdtemp(join(tmpdir(), "pw-dv-"));
    connection = { url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem };
  });
  after(async () => {
    await sim?.stop();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  async function folderOnDatastore(path: string): Promise<string[] | undefined> {
    const client = await connect(sim);
    try {
      return (await listDatastoreFolder(client, { datacenter: "DC0", datastore: "LocalDS_0", path }))?.sort();
    } finally {
      await client.logout();
    }
  }

  function vsphereTarget(folder: string, name: string): string {
    return `vsphere://${new URL(sim.url).host}/${folder}/${name}.vmdk?dc=DC0&ds=LocalDS_0`;
  }

  it("GIVEN a VM on a placed disk WHEN the VM is destroyed and the disk removed THEN its folder is gone and the state folder is empty", { timeout: 120_000 }, async () => {
    const stateDir = join(root, "st-vm");
    const workload = workloadNamed("web");
    const placement = placementSchema.parse({ kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem, powerOn: false });
    const target = diskTargetFor(placement, workload.name, "disk0");
    const placed = await placeDisk({ workload: workload.name, disk: "disk0", source: await sourceImage(join(root, "vm.raw")), sourceFormat: "raw", target, stateDir, vsphere: connection });
    const request: MachineRequest = { workload, stateDir, placement, disks: [{ id: "disk0", location: placed.location, target }], vsphere: connection };
    const state = await createMachine(request);
    assert.ok((await folderOnDatastore("web"))?.includes("web-disk0-flat.vmdk"));
    // What an interrupted cutover leaves is found by its disks, never by its name alone.
    const driver = await machineDriver("vsphere");
    assert.equal(await driver.find!({ ...request, disks: [{ id: "disk0", location: "", target }] }, "web"), state.machineId, "the VM on this workload's disks is ours");
    assert.equal(await driver.find!({ ...request, disks: [{ id: "disk0", location: "", target: vsphereTarget("web", "other-disk0") }] }, "web"), undefined, "a VM of that name on other disks is not");
    assert.equal(await driver.find!(request, "nobody"), undefined);
    await destroyMachine(request, state.machineId);
    await removeDisk({ workload: workload.name, disk: "disk0", target, stateDir, virtualSizeBytes: placed.virtualSizeBytes, vsphere: connection });
    await forgetWorkload(stateDir, workload.name);

    assert.equal(await folderOnDatastore("web"), undefined, "[LocalDS_0] web/ is gone");
    assert.deepEqual(await tree(stateDir), []);
  });

  it("GIVEN a folder that also holds another workload's disk WHEN one disk is removed THEN the folder and the other disk stay, and go with the last one", { timeout: 120_000 }, async () => {
    const stateDir = join(root, "st-shared");
    const source = await sourceImage(join(root, "shared.raw"));
    const mine = vsphereTarget("shared", "mine-disk0");
    const theirs = vsphereTarget("shared", "theirs-disk0");
    const placed = await placeDisk({ workload: "mine", disk: "disk0", source, sourceFormat: "raw", target: mine, stateDir, vsphere: connection, verify: { mode: "none" } });
    await placeDisk({ workload: "theirs", disk: "disk0", source, sourceFormat: "raw", target: theirs, stateDir, vsphere: connection, verify: { mode: "none" } });

    await removeDisk({ workload: "mine", disk: "disk0", target: mine, stateDir, virtualSizeBytes: placed.virtualSizeBytes, vsphere: connection });
    assert.deepEqual(await folderOnDatastore("shared"), ["portable-state", "theirs-disk0-flat.vmdk", "theirs-disk0-pw1.vmdk", "theirs-disk0.vmdk"], "only my disk went; the folder stays");
    assert.deepEqual(await folderOnDatastore("shared/portable-state"), [`${replicaKey("theirs", "disk0", theirs)}.replica.json`], "my replica state beside the disks is gone, theirs stays");
    assert.ok((await tree(stateDir)).every((file) => file.startsWith("theirs.")), "my current placement is gone, theirs stays");

    await removeDisk({ workload: "theirs", disk: "disk0", target: theirs, stateDir, virtualSizeBytes: placed.virtualSizeBytes, vsphere: connection });
    assert.equal(await folderOnDatastore("shared"), undefined, "the last disk took the folder with it");
    assert.deepEqual(await tree(stateDir), []);
  });

  it("GIVEN the datastore's root WHEN asked to remove it as an empty folder THEN it is refused", async () => {
    const client = await connect(sim);
    try {
      for (const path of ["", "/", "a/../.."]) {
        await assert.rejects(removeEmptyDatastoreFolder(client, { datacenter: "DC0", datastore: "LocalDS_0", path }), (err) => isPortableError(err) && err.code === "VSPHERE_DATASTORE_PATH", JSON.stringify(path));
      }
    } finally {
      await client.logout();
    }
  });
});
