// A running vSphere VM (vcsim) as a Workload's disk source, through the real engine: the disk is
// read through a snapshot that freezes it while the VM keeps running, placed on the local
// target, where the guest boots; the snapshot is gone afterwards and the source VM still runs.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Workload } from "../../components/workload.ts";
import { convert } from "../../sdk/disk/convert.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { createDatastoreDiskSink } from "../../sdk/clouds/vsphere/datastore.ts";
import { getProperties } from "../../sdk/clouds/vsphere/property-collector.ts";
import { createVm, powerOnVm, powerState } from "../../sdk/clouds/vsphere/vm.ts";
import type { MoRef } from "../../sdk/clouds/vsphere/xml.ts";
import { buildBootImage, type BootImage } from "../harness/boot-image.ts";
import { fileSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { connect } from "../clouds/vsphere/helpers.ts";

describe("Workload: a running vSphere VM as the disk source, through the Pulumi engine", { timeout: 900_000 }, () => {
  let sim: Vcsim;
  let env: InlineStack;
  let image: BootImage;
  let vm: MoRef;

  before(async () => {
    [sim, image] = await Promise.all([startVcsim(), buildBootImage({ firmware: "bios" })]);
    // The source: the guest's disk on the datastore, attached to a VM that runs.
    const client = await connect(sim);
    try {
      const source = await openDisk(image.path, { format: "raw" });
      try {
        const sink = await createDatastoreDiskSink(client, { datacenter: "DC0", datastore: "LocalDS_0", path: "src/src-disk0.vmdk" }, { virtualSizeBytes: source.virtualSizeBytes });
        await convert(source, sink);
      } finally {
        await source.close();
      }
      vm = await createVm(client, { name: "src", memoryMiB: 256, disks: [{ id: "disk0", sizeBytes: image.sizeBytes }], guestOs: { family: "linux" } }, { datacenter: "DC0", datastore: "LocalDS_0", diskFiles: { disk0: "[LocalDS_0] src/src-disk0.vmdk" } });
      await powerOnVm(client, vm);
    } finally {
      await client.logout();
    }
    env = await createInlineStack("pw-vsrc", async () => {
      const workload = new Workload("app", {
        spec: {
          name: "app",
          memoryMiB: 256,
          disks: [{ id: "disk0", sizeBytes: image.sizeBytes, source: { kind: "cloud", provider: "vsphere", reference: `vsphere://${new URL(sim.url).host}/vm/src?dc=DC0&disk=0` }, bus: "sata", bootOrder: 0 }],
          guestOs: { family: "linux", distribution: "debian", version: "12" },
        },
        placement: { kind: "local", dir: join(env.dir, "local"), bootMarker: image.marker },
        stateDir: join(env.dir, "state"),
      });
      return { disks: workload.disks };
    });
    // The connection, as for `portable vsphere`: the program and the provider processes read it.
    const caFile = join(env.dir, "vcsim-ca.pem");
    await writeFile(caFile, sim.caPem);
    Object.assign(process.env, { VSPHERE_USERNAME: sim.username, VSPHERE_PASSWORD: sim.password, VSPHERE_CA_FILE: caFile });
  });
  after(async () => {
    await env?.stack.destroy().catch(() => {});
    await env?.cleanup();
    await sim?.stop();
  });

  it("GIVEN a Workload whose disk is a running VM's WHEN up THEN it boots on local with the same bytes, and the VM runs on without a snapshot", async () => {
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const disk = (result.outputs.disks!.value as Record<string, string>).disk0!;
    assert.equal(await fileSha256(disk), await fileSha256(image.path));
    const state = await env.stack.exportStack();
    const machine = state.deployment.resources.find((r: { type: string }) => r.type === "pulumi-nodejs:dynamic/portable:Machine");
    assert.equal(machine.outputs.running, true, "the guest printed its marker on the serial console");
    const client = await connect(sim);
    try {
      assert.equal(await powerState(client, vm), "poweredOn", "the source VM was never stopped");
      assert.equal((await getProperties(client, vm, ["snapshot"])).get("snapshot"), undefined, "the read's snapshot was removed");
    } finally {
      await client.logout();
    }
  });
});
