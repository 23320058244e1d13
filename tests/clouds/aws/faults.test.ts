import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { isPortableError } from "../../../sdk/errors.ts";
import { buildManifest } from "../../../sdk/disk/manifest.ts";
import { createAwsClients, createEbsSnapshotSink, openEbsSnapshot } from "../../../sdk/clouds/aws/index.ts";
import { qemuImg, sourceSha256 } from "../../harness/disk.ts";
import { randomFaults, startFaultProxy, type Fault } from "../../harness/fault-proxy.ts";
import { startMoto, type Moto } from "../../harness/moto.ts";
import { buildMixedRaw, MiB, putsFor, useMotoCredentials } from "./helpers.ts";

// Acceptance "Faults": dropped connections, 503s, throttling errors and delays on loopback do
// not stop an upload (or a read back) from finishing with correct content.
const IMAGE_BYTES = 192 * MiB;

const FAULTS: readonly Fault[] = [
  { kind: "reset" },
  { kind: "status", status: 503, body: JSON.stringify({ message: "Service Unavailable" }) },
  { kind: "status", status: 429, body: JSON.stringify({ message: "Rate exceeded" }), headers: { "x-amzn-errortype": "ThrottlingException" } },
  { kind: "status", status: 400, body: JSON.stringify({ message: "Rate exceeded" }), headers: { "x-amzn-errortype": "ThrottlingException" } },
  { kind: "delay", ms: 250 },
  { kind: "truncate" },
];

describe("EBS sink and source under injected faults (moto behind a fault proxy)", () => {
  let moto: Moto;
  let dir: string;
  let qcow2: string;

  before(async () => {
    moto = await startMoto();
    useMotoCredentials(moto.credentials);
    dir = await mkdtemp(join(tmpdir(), "pw-ebs-faults-"));
    const raw = join(dir, "mixed.raw");
    await buildMixedRaw(raw, IMAGE_BYTES, 33);
    qcow2 = join(dir, "mixed.qcow2");
    await qemuImg("convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
  });
  after(async () => {
    await moto?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN 20% of requests faulted (resets, 503, throttling, delays, cut answers) WHEN a qcow2 uploads and reads back THEN the content is exact", async () => {
    const proxy = await startFaultProxy(moto.endpoint, randomFaults(0.2, FAULTS), 20261128);
    const clients = createAwsClients({ region: moto.region, endpoint: proxy.endpoint });
    const source = await openDisk(qcow2);
    try {
      const expected = await buildManifest(source);
      const sink = await createEbsSnapshotSink(clients.ebs, { virtualSizeBytes: source.virtualSizeBytes, ec2: clients.ec2 });
      await convert(source, sink);
      assert.ok(sink.stats.retries > 5, `retries happened: ${sink.stats.retries}`);
      for (const kind of ["reset", "status", "delay", "truncate"] as const) assert.ok((proxy.injected.get(kind) ?? 0) > 0, `${kind} faults were injected`);
      // Retries re-put some blocks, but every data block arrived and no other block was sent.
      assert.deepEqual([...putsFor(proxy.forwarded, sink.snapshotId).keys()].sort((a, b) => a - b), expected.dataBlocks());

      let readRetries = 0;
      const back = await openEbsSnapshot(clients.ebs, sink.snapshotId, { virtualSizeBytes: IMAGE_BYTES, onRetry: () => readRetries++ });
      assert.equal(await sourceSha256(back), await sourceSha256(source));
      assert.ok(readRetries > 0, "reads were retried too");
    } finally {
      await source.close();
      clients.destroy();
      await proxy.stop();
    }
  });

  it("GIVEN PutSnapshotBlock answers that hang past the request timeout WHEN uploading THEN the hung requests are retried and the content is exact", async () => {
    let hung = 0;
    // The first four block uploads hang for 3 s; the client gives up after 500 ms and retries.
    const proxy = await startFaultProxy(moto.endpoint, (c) => (c.method === "PUT" && hung++ < 4 ? { kind: "delay", ms: 3_000 } : undefined));
    const clients = createAwsClients({ region: moto.region, endpoint: proxy.endpoint, requestTimeoutMs: 500 });
    const source = await openDisk(qcow2);
    try {
      const sink = await createEbsSnapshotSink(clients.ebs, { virtualSizeBytes: source.virtualSizeBytes, ec2: clients.ec2 });
      await convert(source, sink);
      assert.ok(sink.stats.retries >= 4, `timeouts were retried: ${sink.stats.retries}`);
      const back = await openEbsSnapshot(clients.ebs, sink.snapshotId, { virtualSizeBytes: IMAGE_BYTES });
      assert.equal(await sourceSha256(back), await sourceSha256(source));
    } finally {
      await source.close();
      clients.destroy();
      await proxy.stop();
    }
  });

  it("GIVEN every PutSnapshotBlock refused with AccessDenied WHEN converting THEN it fails fast with EBS_PUT_BLOCK_FAILED naming snapshot, block and offset, and no secret", async () => {
    const proxy = await startFaultProxy(
      moto.endpoint,
      (c) => (c.method === "PUT" ? { kind: "status", status: 403, body: JSON.stringify({ message: "denied" }), headers: { "x-amzn-errortype": "AccessDeniedException" } } : undefined),
    );
    const clients = createAwsClients({ region: moto.region, endpoint: proxy.endpoint });
    const source = await openDisk(qcow2);
    try {
      const sink = await createEbsSnapshotSink(clients.ebs, { virtualSizeBytes: source.virtualSizeBytes, ec2: clients.ec2 });
      const error = await convert(source, sink).then(
        () => assert.fail("the upload must fail"),
        (err: unknown) => err,
      );
      assert.ok(isPortableError(error), String(error));
      assert.equal(error.code, "EBS_PUT_BLOCK_FAILED");
      assert.match(error.message, new RegExp(`PutSnapshotBlock \\(snapshotId ${sink.snapshotId}, blockIndex \\d+, offset 0x[0-9a-f]+\\)`));
      assert.equal(error.context.snapshotId, sink.snapshotId);
      assert.doesNotMatch(error.message, new RegExp(`${moto.credentials.secretAccessKey}|${moto.credentials.accessKeyId}`));
      // Not retried: a refusal is not transient. The aborted sink deleted its pending snapshot.
      assert.ok(sink.stats.retries === 0);
      assert.equal(proxy.forwarded.get(`POST /`) !== undefined, true, "DeleteSnapshot went to EC2");
      await assert.rejects(() => sink.write(0, Buffer.alloc(512, 1)), (err: unknown) => isPortableError(err));
    } finally {
      await source.close();
      clients.destroy();
      await proxy.stop();
    }
  });
});
