// A consistent read of a running VM's disk for warm replication: the snapshot's frozen file
// reads as the disk was, and release removes the snapshot.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { createDatastoreDiskSink } from "../../../sdk/clouds/vsphere/datastore.ts";
import { vspherePointInTime } from "../../../sdk/clouds/vsphere/point-in-time.ts";
import { getProperties } from "../../../sdk/clouds/vsphere/property-collector.ts";
import { createVm, destroyVm, powerOnVm } from "../../../sdk/clouds/vsphere/vm.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { memorySource, sourceSha256 } from "../../harness/disk.ts";
import { startVcsim, type Vcsim } from "../../harness/vcsim.ts";
import { connect, MiB } from "./helpers.ts";

describe("vSphere point in time (snapshot, vcsim)", () => {
  let sim: Vcsim;
  let client: VsphereClient;
  before(async () => {
    sim = await startVcsim();
    client = await connect(sim);
  });
  after(async () => {
    await client?.logout().catch(() => {});
    await sim?.stop();
  });

  it("GIVEN a powered-on VM WHEN a pass opens its disk THEN it reads the frozen file, and release removes the snapshot", async () => {
    const data = Buffer.alloc(4 * MiB);
    data.fill(0x5c, MiB, MiB + 128 * 1024);
    const sink = await createDatastoreDiskSink(client, { datacenter: "DC0", datastore: "LocalDS_0", path: "pit/pit.vmdk" }, { virtualSizeBytes: data.length });
    await convert(memorySource(data), sink);
    const vm = await createVm(client, { name: "pit", memoryMiB: 256, disks: [{ id: "d0", sizeBytes: data.length }], guestOs: { family: "linux" } }, { datastore: "LocalDS_0", diskFiles: { d0: "[LocalDS_0] pit/pit.vmdk" } });
    await powerOnVm(client, vm);
    const view = await vspherePointInTime(client, vm, 0);
    const during = (await getProperties(client, vm, ["snapshot"])).get("snapshot");
    assert.ok(during !== undefined, "a snapshot exists while the pass reads");
    assert.equal(await sourceSha256(view.source), await sourceSha256(memorySource(data)));
    await view.release();
    assert.equal((await getProperties(client, vm, ["snapshot"])).get("snapshot"), undefined, "release removed the snapshot");
    await destroyVm(client, vm, { keepDisks: true });
  });
});
