// Datastore transfers against vcsim, whose /folder handler keeps the bytes (it is a plain file
// server): what we upload is what we read back.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { createDatastoreDiskSink, openDatastoreDisk, openDatastoreFile, parseDatastorePath, statDatastoreFile } from "../../../sdk/clouds/vsphere/datastore.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { isPortableError } from "../../../sdk/errors.ts";
import { qemuImg, qemuRawSha256, sourceSha256 } from "../../harness/disk.ts";
import { startVcsim, type Vcsim } from "../../harness/vcsim.ts";
import { buildSparseRaw, connect, GiB, MiB } from "./helpers.ts";

describe("vSphere datastore source and sink (vcsim)", () => {
  let sim: Vcsim;
  let client: VsphereClient;
  let dir: string;
  before(async () => {
    sim = await startVcsim();
    client = await connect(sim);
    dir = await mkdtemp(join(tmpdir(), "pw-vsphere-ds-"));
  });
  after(async () => {
    await client?.logout().catch(() => {});
    await sim?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a 2 GiB mixed disk WHEN uploaded as a flat VMDK and read back through the datastore source THEN the hashes equal qemu-img's", async () => {
    const raw = join(dir, "mixed.raw");
    await buildSparseRaw(raw, 2 * GiB, 7);
    const qcow2 = join(dir, "mixed.qcow2");
    await qemuImg("convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
    const file = parseDatastorePath("[LocalDS_0] disks/mixed.vmdk", "DC0");
    const source = await openDisk(qcow2);
    const sink = await createDatastoreDiskSink(client, file, { virtualSizeBytes: source.virtualSizeBytes, adapterType: "lsilogic" });
    const result = await convert(source, sink).finally(() => source.close());
    assert.equal(result.location, "[LocalDS_0] disks/mixed.vmdk");
    assert.equal(await statDatastoreFile(client, { ...file, path: "disks/mixed-flat.vmdk" }), 2 * GiB, "the flat extent holds every byte");

    const back = await openDatastoreDisk(client, file);
    try {
      assert.equal(back.format, "vmdk");
      assert.equal(back.subformat, "vmfs");
      assert.equal(back.virtualSizeBytes, 2 * GiB);
      assert.equal(await sourceSha256(back), await qemuRawSha256(raw, "raw"));
    } finally {
      await back.close();
    }
  });

  it("GIVEN a disk WHEN uploaded streamOptimized THEN qemu-img reads the downloaded file as the same disk, and Range reads return exact slices", async () => {
    const raw = join(dir, "small.raw");
    await buildSparseRaw(raw, 64 * MiB, 3);
    const file = parseDatastorePath("[LocalDS_0] disks/small-stream.vmdk", "DC0");
    const source = await openDisk(raw, { format: "raw" });
    const sink = await createDatastoreDiskSink(client, file, { virtualSizeBytes: source.virtualSizeBytes, subformat: "streamOptimized" });
    await convert(source, sink);
    const bytes = await openDatastoreFile(client, file);
    const whole = await bytes.read(0, bytes.sizeBytes);
    const slice = await bytes.read(1000, 777);
    assert.deepEqual(slice, whole.subarray(1000, 1777));
    const local = join(dir, "downloaded.vmdk");
    await (await import("node:fs/promises")).writeFile(local, whole);
    await qemuImg("check", local);
    await qemuImg("compare", "-f", "raw", "-F", "vmdk", raw, local);
    const back = await openDatastoreDisk(client, file);
    try {
      assert.equal(back.subformat, "streamOptimized");
      assert.equal(await sourceSha256(back), await sourceSha256(source));
    } finally {
      await back.close();
      await source.close();
    }
  });

  it("GIVEN an existing disk WHEN a sink is created without overwrite THEN VSPHERE_FILE_ALREADY_EXISTS; a missing file gives VSPHERE_FILE_NOT_FOUND; a climbing path is refused", async () => {
    const file = parseDatastorePath("[LocalDS_0] disks/small-stream.vmdk", "DC0");
    await assert.rejects(createDatastoreDiskSink(client, file, { virtualSizeBytes: MiB }), (err) => isPortableError(err) && err.code === "VSPHERE_FILE_ALREADY_EXISTS");
    await assert.rejects(openDatastoreDisk(client, { ...file, path: "disks/nope.vmdk" }), (err) => isPortableError(err) && err.code === "VSPHERE_FILE_NOT_FOUND");
    assert.throws(() => parseDatastorePath("[LocalDS_0] ../etc/passwd", "DC0"), (err) => isPortableError(err) && err.code === "VSPHERE_DATASTORE_PATH");
  });
});
