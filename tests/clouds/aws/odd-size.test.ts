import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { isPortableError } from "../../../sdk/errors.ts";
import { createAwsClients, createEbsSnapshotSink, EbsSnapshotSource, openEbsSnapshot, type AwsClients } from "../../../sdk/clouds/aws/index.ts";
import { fileSha256, sourceSha256 } from "../../harness/disk.ts";
import { startMoto, type Moto } from "../../harness/moto.ts";
import { BLOCK, GiB, MiB, useMotoCredentials } from "./helpers.ts";

describe("EBS sink with a disk that is not a whole number of blocks (moto)", () => {
  let moto: Moto;
  let clients: AwsClients;
  let dir: string;
  before(async () => {
    moto = await startMoto();
    useMotoCredentials(moto.credentials);
    clients = createAwsClients({ region: moto.region, endpoint: moto.endpoint });
    dir = await mkdtemp(join(tmpdir(), "pw-ebs-odd-"));
  });
  after(async () => {
    clients?.destroy();
    await moto?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a 3 MiB + 4 KiB disk with data in its last sector and across a block boundary WHEN uploaded THEN a 1 GiB snapshot reads back the same bytes", async () => {
    const sizeBytes = 3 * MiB + 4096;
    const path = join(dir, "odd.raw");
    const file = await open(path, "w");
    await file.write(randomBytes(8192), 0, 8192, BLOCK - 4096);
    await file.write(randomBytes(512), 0, 512, sizeBytes - 512);
    await file.truncate(sizeBytes);
    await file.close();
    const source = await openDisk(path);
    try {
      const sink = await createEbsSnapshotSink(clients.ebs, { virtualSizeBytes: sizeBytes, ec2: clients.ec2 });
      const result = await convert(source, sink);
      assert.equal(sink.volumeSizeGiB, 1);
      assert.deepEqual(sink.manifest().dataBlocks(), [0, 1, 6]);
      assert.equal(result.details?.blocksPut, 3);
      const back = await openEbsSnapshot(clients.ebs, sink.snapshotId, { virtualSizeBytes: sizeBytes });
      assert.equal(await sourceSha256(back), await fileSha256(path));
      const whole = await openEbsSnapshot(clients.ebs, sink.snapshotId);
      assert.equal(whole.virtualSizeBytes, GiB);
      assert.ok((await whole.read(sizeBytes, 4096)).equals(Buffer.alloc(4096)), "the padding past the disk reads as zeros");
      assert.throws(() => new EbsSnapshotSource(clients.ebs, back.listing, { virtualSizeBytes: 2 * GiB }), (e: unknown) => isPortableError(e) && e.code === "EBS_INVALID_SIZE");
      await assert.rejects(() => sink.write(0, Buffer.alloc(512, 1)), (e: unknown) => isPortableError(e) && e.code === "EBS_SINK_CLOSED");
    } finally {
      await source.close();
    }
  });
});
