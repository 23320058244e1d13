import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { after, before, describe, it } from "node:test";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { buildManifest } from "../../../sdk/disk/manifest.ts";
import { createAwsClients, createEbsSnapshotSink, openEbsSnapshot, type AwsClients } from "../../../sdk/clouds/aws/index.ts";
import { fileSha256, qemuImg, qemuIo, sourceSha256 } from "../../harness/disk.ts";
import { startFaultProxy, type FaultProxy } from "../../harness/fault-proxy.ts";
import { startMoto, type Moto } from "../../harness/moto.ts";
import { buildMixedRaw, GiB, MiB, putsFor, useMotoCredentials } from "./helpers.ts";

// Acceptance "Round trip": a 2 GiB mixed image in each input format uploads; reading the whole
// snapshot back through our source gives the raw content's SHA-256; no zero block was sent.
const IMAGE_BYTES = 2 * GiB;

describe("EBS snapshot sink and source: 2 GiB round trip in every input format (moto)", () => {
  let moto: Moto;
  let proxy: FaultProxy;
  let clients: AwsClients;
  let dir: string;
  let rawSha256: string;
  const images: Record<string, string> = {};

  before(async () => {
    moto = await startMoto();
    useMotoCredentials(moto.credentials);
    // A proxy with no faults: it counts every request that reaches moto.
    proxy = await startFaultProxy(moto.endpoint, () => undefined);
    clients = createAwsClients({ region: moto.region, endpoint: proxy.endpoint });
    dir = await mkdtemp(join(tmpdir(), "pw-ebs-"));
    const raw = join(dir, "mixed.raw");
    const layout = await buildMixedRaw(raw, IMAGE_BYTES, 7);
    assert.ok(layout.zeroUnits > 0 && layout.partialUnits > 0 && layout.randomUnits > 0, JSON.stringify(layout));
    rawSha256 = await fileSha256(raw);
    images.raw = raw;
    images.qcow2 = join(dir, "mixed.qcow2");
    images.vhd = join(dir, "mixed.vhd");
    images.vmdk = join(dir, "mixed.vmdk");
    await Promise.all([
      qemuImg("convert", "-f", "raw", "-O", "qcow2", raw, images.qcow2),
      qemuImg("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on", raw, images.vhd),
      qemuImg("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, images.vmdk),
    ]);
    // Allocated zeros inside the formats that can hold them: data the reader returns that must
    // still not be sent. The guest content is unchanged (those ranges were holes).
    const hole = layout.holeUnits[3]! * MiB;
    await qemuIo("qcow2", images.qcow2, [`write -P 0 ${hole} 1M`]);
    await qemuIo("vpc", images.vhd, [`write -P 0 ${hole} 1M`]);
  });

  after(async () => {
    clients?.destroy();
    await proxy?.stop();
    await moto?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  for (const format of ["raw", "qcow2", "vhd", "vmdk"]) {
    it(`GIVEN a 2 GiB mixed ${format} WHEN converted into a snapshot THEN it reads back with the raw SHA-256 and only non-zero blocks were put`, async () => {
      const source = await openDisk(images[format]!);
      try {
        assert.equal(source.virtualSizeBytes, IMAGE_BYTES);
        const expected = await buildManifest(source);
        const sink = await createEbsSnapshotSink(clients.ebs, { virtualSizeBytes: source.virtualSizeBytes, ec2: clients.ec2, description: `round trip ${format}`, tags: { format } });
        const result = await convert(source, sink);
        assert.equal(result.location, sink.snapshotId);
        assert.equal(result.details?.status, "completed");

        // Exactly the non-zero blocks of our manifest, each once: no zero block went out.
        const puts = putsFor(proxy.forwarded, sink.snapshotId);
        assert.deepEqual([...puts.keys()].sort((a, b) => a - b), expected.dataBlocks());
        assert.ok([...puts.values()].every((n) => n === 1), "each block put once");
        assert.equal(sink.stats.blocksPut, expected.dataBlocks().length);
        assert.deepEqual(sink.manifest().toJSON(), expected.toJSON());
        if (format === "raw" || format === "qcow2" || format === "vhd") {
          assert.ok(sink.stats.zeroBlocksSkipped + result.zeroBytesDetected > 0, "allocated zeros were read and skipped");
        }

        const back = await openEbsSnapshot(clients.ebs, sink.snapshotId);
        assert.equal(back.virtualSizeBytes, IMAGE_BYTES);
        assert.equal(back.listing.blocks.length, expected.dataBlocks().length);
        assert.equal(await sourceSha256(back), rawSha256);
      } finally {
        await source.close();
        // moto keeps every block in memory; drop this format's before the next.
        await moto.reset();
      }
    });
  }
});
