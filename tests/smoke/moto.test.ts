import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  CompleteSnapshotCommand,
  EBSClient,
  GetSnapshotBlockCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
} from "@aws-sdk/client-ebs";
import { startMoto, type Moto } from "../harness/moto.ts";

/** The EBS direct-API block size: every PutSnapshotBlock carries exactly this much. */
const EBS_BLOCK_SIZE_BYTES = 512 * 1024;

describe("moto (AWS emulator): EBS direct APIs", () => {
  let moto: Moto;
  let ebs: EBSClient;
  before(async () => {
    moto = await startMoto();
    ebs = new EBSClient({ endpoint: moto.endpoint, region: moto.region, credentials: moto.credentials, maxAttempts: 1 });
  });
  after(async () => {
    ebs?.destroy();
    await moto?.stop();
  });

  it("GIVEN a new snapshot WHEN one 512 KiB block is put and listed THEN GetSnapshotBlock returns the same bytes", async () => {
    const started = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, Description: "pw smoke" }));
    assert.ok(started.SnapshotId?.startsWith("snap-"));

    const block = randomBytes(EBS_BLOCK_SIZE_BYTES);
    const checksum = createHash("sha256").update(block).digest("base64");
    await ebs.send(
      new PutSnapshotBlockCommand({
        SnapshotId: started.SnapshotId,
        BlockIndex: 3,
        BlockData: block,
        DataLength: block.length,
        Checksum: checksum,
        ChecksumAlgorithm: "SHA256",
      }),
    );

    await ebs.send(new CompleteSnapshotCommand({ SnapshotId: started.SnapshotId, ChangedBlocksCount: 1 }));

    const listed = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: started.SnapshotId }));
    // moto returns BlockIndex as a string (see DESIGN.md), so compare numerically.
    const entry = listed.Blocks?.find((b) => Number(b.BlockIndex) === 3);
    assert.ok(entry?.BlockToken, `block 3 is listed: ${JSON.stringify(listed.Blocks)}`);
    const got = await ebs.send(
      new GetSnapshotBlockCommand({ SnapshotId: started.SnapshotId, BlockIndex: 3, BlockToken: entry.BlockToken }),
    );
    const bytes = Buffer.from(await got.BlockData!.transformToByteArray());
    assert.equal(bytes.length, EBS_BLOCK_SIZE_BYTES);
    assert.ok(bytes.equals(block), "the block reads back byte-exactly");
  });
});
