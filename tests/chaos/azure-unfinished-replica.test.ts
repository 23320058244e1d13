// A page-blob replica whose first pass was cut between creating the blob and journalling the
// pass (a kill in that window, or a Put Blob whose answer was lost, so the retry met
// If-None-Match: *) left a footer-less blob and no replica state. Found by reading
// sdk/clouds/azure/replica-target.ts for the chaos work: the rerun failed with TARGET_EXISTS
// forever. Now an unfinished blob of the replica's size is recreated, so the rerun ends correct
// (stale pages included: they are cleared); a finished disk (one with a VHD footer) is still
// refused.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ContainerClient } from "@azure/storage-blob";
import { pageBlobReplica } from "../../sdk/clouds/azure/replica-target.ts";
import { fixedVhdFooter, vhdBlobSizeFor } from "../../sdk/clouds/azure/page-blob-sink.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import { replicate } from "../../sdk/transfer/replicate.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { fileSha256, sourceSha256 } from "../harness/disk.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { buildChaosImage } from "./chaos-runner.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

describe("page-blob replica: a first pass cut before its journal began", () => {
  let azurite: Azurite;
  let container: ContainerClient;
  let dir: string;
  before(async () => {
    azurite = await startAzurite();
    container = await containerFor(azurite, "unfinished");
    dir = await mkdtemp(join(tmpdir(), "pw-unfinished-"));
  });
  after(async () => {
    await azurite?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a footer-less blob of the replica's size holding stale pages and no state WHEN replicated THEN the pass succeeds and the blob reads back as the source", async () => {
    const image = join(dir, "a.raw");
    await buildChaosImage(image, SIZE, 1);
    const client = container.getPageBlobClient("a.vhd");
    await client.create(vhdBlobSizeFor(SIZE));
    // Stale data where the source has none: the killed run's (or anyone's) leftovers.
    const stale = Buffer.alloc(512 * 1024, 0xee);
    for (const at of [0, 5 * MiB, 11 * MiB]) await client.uploadPages(stale, at, stale.length);

    const source = await openDisk(image, { format: "raw" });
    try {
      const target = pageBlobReplica({ client, virtualSizeBytes: SIZE });
      const result = await replicate(source, target, { store: new FileReplicaStore(join(dir, "state-a")), key: "a" });
      const store = new FileReplicaStore(join(dir, "state-a"));
      const back = await target.openReadBack((await store.loadCommitted("a"))!);
      assert.equal(await sourceSha256(back), await fileSha256(image), "the replica equals the source, stale pages cleared");
      await back.close();
      assert.equal(result.passes, 1);
    } finally {
      await source.close();
    }
  });

  it("GIVEN a finished disk blob (VHD footer present) WHEN a new replica would take its name THEN it is refused with TARGET_EXISTS", async () => {
    const image = join(dir, "b.raw");
    await buildChaosImage(image, SIZE, 2);
    const client = container.getPageBlobClient("b.vhd");
    const blobSize = vhdBlobSizeFor(SIZE);
    await client.create(blobSize);
    const footer = await fixedVhdFooter(SIZE);
    await client.uploadPages(footer, blobSize - footer.length, footer.length);
    const source = await openDisk(image, { format: "raw" });
    try {
      const target = pageBlobReplica({ client, virtualSizeBytes: SIZE });
      await assert.rejects(replicate(source, target, { store: new FileReplicaStore(join(dir, "state-b")), key: "b" }), { code: "TARGET_EXISTS" });
    } finally {
      await source.close();
    }
  });
});
