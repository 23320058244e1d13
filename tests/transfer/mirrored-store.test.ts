// The committed replica state mirrored beside the target (block blobs in Azurite): a machine with
// an empty state directory finds it there, and the next pass is incremental.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDisk } from "../../sdk/disk/open.ts";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import { blobObjectStore, MirroredReplicaStore } from "../../sdk/transfer/mirrored-store.ts";
import { rawFileReplica } from "../../sdk/clouds/local/replica-target.ts";
import { replicate } from "../../sdk/transfer/replicate.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { MiB, spread, writeBlocks } from "./replica-helpers.ts";

describe("MirroredReplicaStore (Azurite block blobs)", () => {
  let azurite: Azurite;
  let dir: string;
  before(async () => {
    azurite = await startAzurite();
    dir = await mkdtemp(join(tmpdir(), "pw-mirror-"));
  });
  after(async () => {
    await azurite?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a replica committed through the mirror WHEN the local state is lost THEN the next pass finds the manifest remotely and sends only the change", async () => {
    const container = await containerFor(azurite, "disks");
    const source = join(dir, "src.raw");
    const target = join(dir, "dst.raw");
    await writeBlocks(source, 32 * MiB, spread(20, 64), "v1");
    const pass = async (stateDir: string) => {
      const disk = await openDisk(source, { format: "raw" });
      try {
        return await replicate(disk, rawFileReplica({ path: target, virtualSizeBytes: disk.virtualSizeBytes }), { store: new MirroredReplicaStore(new FileReplicaStore(stateDir), blobObjectStore(container)), key: "web.disk0" });
      } finally {
        await disk.close();
      }
    };
    const first = await pass(join(dir, "state-a"));
    assert.equal(first.blocksSent, 20);
    assert.match(first.reference, /\/disks\/portable-replicas\/web\.disk0\.replica\.json$/);
    await rm(join(dir, "state-a"), { recursive: true });
    await writeBlocks(source, undefined, [7], "v2");
    const second = await pass(join(dir, "state-b"));
    assert.equal(second.passes, 2, "the committed state came from the blob");
    assert.equal(second.blocksSent, 1);
  });
});
