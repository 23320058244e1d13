// An OVA made by other tools (qemu-img's streamOptimized VMDK of a bootable guest, a hand-written
// OVF and a SHA-256 manifest) as a Workload disk source, through the real engine: the disk is
// streamed out of the archive (no extraction) onto the local target, where the guest boots, and
// onto vSphere (vcsim), where the datastore disk hashes equal to the guest image. Destroy leaves
// nothing behind on either.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Workload } from "../../components/workload.ts";
import { listDatastoreFolder } from "../../sdk/clouds/vsphere/datastore.ts";
import type { WorkloadInput } from "../../sdk/spec/workload.ts";
import { buildBootImage } from "../harness/boot-image.ts";
import { fileSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { connect, vsphereDiskSha256 } from "../clouds/vsphere/helpers.ts";
import { buildOva, type BuiltOva } from "../ovf/helpers.ts";

describe("Workload: an OVA disk source through the Pulumi engine", { timeout: 900_000 }, () => {
  let sim: Vcsim;
  let env: InlineStack;
  let ova: BuiltOva;
  let expected = "";
  let marker = "";

  before(async () => {
    const [started, image] = await Promise.all([startVcsim(), buildBootImage({ firmware: "bios" })]);
    sim = started;
    marker = image.marker;
    expected = await fileSha256(image.path);
    process.env.VSPHERE_PASSWORD = sim.password;
    env = await createInlineStack("pw-ova", async () => {
      const spec = (name: string): WorkloadInput => ({
        name,
        memoryMiB: 256,
        disks: [{ id: "disk0", sizeBytes: ova.virtualSizeBytes, source: { kind: "ova", path: ova.ova, entry: ova.entry }, bus: "sata", bootOrder: 0 }],
        nics: [{ network: "VM Network" }],
        guestOs: { family: "linux", distribution: "debian", version: "12" },
      });
      const local = new Workload("ova-local", { spec: spec("ova-local"), placement: { kind: "local", dir: join(env.dir, "local"), bootMarker: marker }, stateDir: join(env.dir, "state") });
      const vsphere = new Workload("ova-vs", {
        spec: spec("ova-vs"),
        placement: { kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem },
        // vcsim's VMs report no guest: the readiness of a vSphere guest is not what this test is about.
        migration: { readiness: "warn" },
        stateDir: join(env.dir, "state"),
      });
      return { local: local.disks, vsphere: vsphere.disks };
    });
    ova = await buildOva(env.dir, { raw: image.path });
  });
  after(async () => {
    await env?.cleanup();
    await sim?.stop();
  });

  it("GIVEN a Workload whose disk is inside an OVA WHEN up THEN the guest boots on local and the vSphere disk equals the image", async () => {
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const localDisk = (result.outputs.local!.value as Record<string, string>).disk0!;
    assert.equal(await fileSha256(localDisk), expected, "the local disk is the guest image, streamed out of the OVA");
    const state = await env.stack.exportStack();
    const machine = state.deployment.resources.find((r: { type: string; urn: string }) => r.type === "pulumi-nodejs:dynamic/portable:Machine" && r.urn.endsWith("ova-local-machine"));
    assert.equal(machine.outputs.running, true, "the guest printed its marker on the serial console");
    const client = await connect(sim);
    try {
      assert.equal(await vsphereDiskSha256(client, "vsphere://x/ova-vs/ova-vs-disk0.vmdk?dc=DC0&ds=LocalDS_0"), expected);
    } finally {
      await client.logout();
    }
  });

  it("WHEN destroyed THEN the local datastore, the vSphere datastore and the state folder hold nothing of either workload", async () => {
    const result = await env.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    const client = await connect(sim);
    try {
      assert.equal(await listDatastoreFolder(client, { datacenter: "DC0", datastore: "LocalDS_0", path: "ova-vs" }), undefined);
    } finally {
      await client.logout();
    }
    assert.deepEqual(await readdir(join(env.dir, "local")).catch(() => []), []);
    assert.deepEqual(await readdir(join(env.dir, "state")).catch(() => []), []);
  });
});
