// NFC import against vcsim. vcsim hashes lease uploads and throws the bytes away, so the stream
// is teed to local files that qemu-img must accept as the same disks, and the server's manifest
// (size and SHA-1 of what it received) must match what we sent.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { listVms } from "../../../sdk/clouds/vsphere/inventory.ts";
import { importWorkload, type NfcProgress } from "../../../sdk/clouds/vsphere/nfc-import.ts";
import { readVmConfig } from "../../../sdk/clouds/vsphere/vm.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import type { DiskSource } from "../../../sdk/disk/types.ts";
import { isPortableError } from "../../../sdk/errors.ts";
import type { WorkloadInput } from "../../../sdk/spec/workload.ts";
import { qemuImg } from "../../harness/disk.ts";
import { startVcsim, type Vcsim } from "../../harness/vcsim.ts";
import { buildSparseRaw, connect, MiB } from "./helpers.ts";

function workload(name: string): WorkloadInput {
  // SCSI and IDE only: vcsim's OVF import maps no SATA/NVMe controllers (tests/ovf/vcsim-import.test.ts).
  return {
    name,
    cpu: { sockets: 1, coresPerSocket: 2 },
    memoryMiB: 2048,
    disks: [
      { id: "boot", sizeBytes: 64 * MiB, bus: "scsi", bootOrder: 0 },
      { id: "legacy", sizeBytes: 16 * MiB, bus: "ide" },
    ],
    nics: [{ network: "VM Network", model: "vmxnet3" }],
    guestOs: { family: "linux", distribution: "debian", architecture: "x86_64" },
  };
}

/** A source that fails after `okBytes` of reads: a disk that breaks mid-upload. */
function failingAfter(source: DiskSource, okBytes: number): DiskSource {
  let read = 0;
  return {
    ...source,
    extents: () => source.extents(),
    async read(offsetBytes, lengthBytes, into) {
      read += lengthBytes;
      if (read > okBytes) throw new Error("injected read failure");
      return source.read(offsetBytes, lengthBytes, into);
    },
    close: () => source.close(),
  };
}

describe("vSphere NFC import (vcsim)", () => {
  let sim: Vcsim;
  let client: VsphereClient;
  let dir: string;
  before(async () => {
    sim = await startVcsim();
    client = await connect(sim);
    dir = await mkdtemp(join(tmpdir(), "pw-vsphere-nfc-"));
    await buildSparseRaw(join(dir, "boot.raw"), 64 * MiB, 11);
    await buildSparseRaw(join(dir, "legacy.raw"), 16 * MiB, 12);
  });
  after(async () => {
    await client?.logout().catch(() => {});
    await sim?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a Workload and two disks WHEN imported THEN the lease reaches 100% and completes, the VM exists, and the teed streams are valid VMDKs equal to the sources", async () => {
    const boot = await openDisk(join(dir, "boot.raw"), { format: "raw" });
    const legacy = await openDisk(join(dir, "legacy.raw"), { format: "raw" });
    const progress: NfcProgress[] = [];
    const teed = new Map<string, string>();
    const result = await importWorkload(client, workload("imported-1"), [{ diskId: "boot", source: boot }, { diskId: "legacy", source: legacy }], {
      datastore: "LocalDS_0",
      onProgress: (p) => progress.push(p),
      progressIntervalMs: 50,
      tee: (diskId) => {
        const path = join(dir, `${diskId}.teed.vmdk`);
        teed.set(diskId, path);
        return createWriteStream(path);
      },
    }).finally(() => Promise.all([boot.close(), legacy.close()]));

    assert.equal(progress.at(-1)?.percent, 100);
    assert.ok(progress.every((p, i) => i === 0 || p.percent >= (progress[i - 1]?.percent ?? 0)), "progress never goes back");
    assert.ok(progress.slice(0, -1).every((p) => p.percent < 100), "100% only once everything is sent");
    assert.ok((await listVms(client)).some((vm) => vm.name === "imported-1" && vm.ref.value === result.vm.value));
    const config = await readVmConfig(client, result.vm);
    assert.deepEqual([config.cpus, config.memoryMiB, config.disks.length, config.nics.length], [2, 2048, 2, 1]);

    for (const upload of result.uploads) {
      assert.equal(upload.verifiedByServer, true, `vcsim's manifest matches what we sent for ${upload.diskId}`);
      const path = teed.get(upload.diskId);
      assert.ok(path !== undefined);
      const bytes = await readFile(path);
      assert.equal(bytes.length, upload.bytesSent);
      assert.equal(createHash("sha1").update(bytes).digest("hex"), upload.sha1, "the tee saw exactly the bytes the server hashed");
      await qemuImg("check", path);
      await qemuImg("compare", "-f", "raw", "-F", "vmdk", join(dir, `${upload.diskId}.raw`), path);
      const info = JSON.parse(await qemuImg("info", "--output=json", path)) as { "format-specific": { data: { "create-type": string } } };
      assert.equal(info["format-specific"].data["create-type"], "streamOptimized");
    }
  });

  it("GIVEN a disk that fails mid-upload WHEN imported THEN the error surfaces, the lease is aborted and no VM is left", async () => {
    const boot = await openDisk(join(dir, "boot.raw"), { format: "raw" });
    const legacy = await openDisk(join(dir, "legacy.raw"), { format: "raw" });
    await assert.rejects(
      importWorkload(client, workload("imported-2"), [{ diskId: "boot", source: failingAfter(boot, 2 * MiB) }, { diskId: "legacy", source: legacy }], { datastore: "LocalDS_0" }),
      (err) => isPortableError(err) && err.code === "VSPHERE_NFC_UPLOAD_FAILED" && /injected read failure/.test(err.message),
    ).finally(() => Promise.all([boot.close(), legacy.close()]));
    assert.ok(!(await listVms(client)).some((vm) => vm.name === "imported-2"), "no half-imported VM");
  });
});
