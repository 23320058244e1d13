import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { isPortableError } from "../../../sdk/errors.ts";
import { createAwsClients, EBS_MAX_VOLUME_GIB, parseBlockIndex, volumeSizeGiB, waitForSnapshotCompleted } from "../../../sdk/clouds/aws/index.ts";
import { GiB } from "./helpers.ts";

describe("EBS block arithmetic and listing values", () => {
  it("GIVEN disk sizes WHEN rounded to a volume THEN whole GiB up, and sizes past 64 TiB are refused", () => {
    assert.equal(volumeSizeGiB(1), 1);
    assert.equal(volumeSizeGiB(GiB), 1);
    assert.equal(volumeSizeGiB(GiB + 512), 2);
    assert.equal(volumeSizeGiB(EBS_MAX_VOLUME_GIB * GiB), EBS_MAX_VOLUME_GIB);
    assert.throws(() => volumeSizeGiB(EBS_MAX_VOLUME_GIB * GiB + 1), (e: unknown) => isPortableError(e) && e.code === "EBS_VOLUME_TOO_LARGE");
    assert.throws(() => volumeSizeGiB(0), (e: unknown) => isPortableError(e) && e.code === "EBS_INVALID_SIZE");
  });

  it("GIVEN block indexes as the API models them and as moto sends them WHEN parsed THEN both give numbers; garbage is refused", () => {
    assert.equal(parseBlockIndex(3, 2048, "ListSnapshotBlocks", "snap-1"), 3);
    assert.equal(parseBlockIndex("3", 2048, "ListSnapshotBlocks", "snap-1"), 3);
    for (const bad of ["3a", "-1", 2048, 1.5, null, "", "1e3"]) {
      assert.throws(
        () => parseBlockIndex(bad, 2048, "ListSnapshotBlocks", "snap-1"),
        (e: unknown) => isPortableError(e) && e.code === "EBS_BAD_BLOCK_INDEX" && /ListSnapshotBlocks snap-1/.test(e.message),
        String(bad),
      );
    }
  });
});

describe("waiting for a snapshot", () => {
  async function ec2Answering(state: string) {
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/xml" });
        res.end(
          `<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId>` +
            `<snapshotSet><item><snapshotId>snap-0def</snapshotId><status>${state}</status></item></snapshotSet></DescribeSnapshotsResponse>`,
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    process.env.AWS_ACCESS_KEY_ID ??= "AKIAPWTESTKEY0000001";
    process.env.AWS_SECRET_ACCESS_KEY ??= "pw-test-secret-key-moto";
    const clients = createAwsClients({ region: "us-east-1", endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    return {
      ec2: clients.ec2,
      async stop() {
        clients.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it("GIVEN a snapshot that stays pending WHEN waited on with a timeout THEN EBS_WAIT_TIMEOUT names it", async () => {
    const fake = await ec2Answering("pending");
    try {
      await assert.rejects(
        () => waitForSnapshotCompleted(fake.ec2, "snap-0def", { timeoutMs: 300, pollIntervalMs: 50 }),
        (e: unknown) => isPortableError(e) && e.code === "EBS_WAIT_TIMEOUT" && /snap-0def/.test(e.message),
      );
    } finally {
      await fake.stop();
    }
  });

  it("GIVEN a snapshot in state error WHEN waited on THEN EBS_SNAPSHOT_ERROR", async () => {
    const fake = await ec2Answering("error");
    try {
      await assert.rejects(() => waitForSnapshotCompleted(fake.ec2, "snap-0def", { timeoutMs: 5_000 }), (e: unknown) => isPortableError(e) && e.code === "EBS_SNAPSHOT_ERROR");
    } finally {
      await fake.stop();
    }
  });
});
