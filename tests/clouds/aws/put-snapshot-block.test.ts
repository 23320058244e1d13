import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { isPortableError } from "../../../sdk/errors.ts";
import { completeSnapshot, createAwsClients, getSnapshotBlock, linearAggregateChecksum, putSnapshotBlock, startSnapshot } from "../../../sdk/clouds/aws/index.ts";
import { BLOCK, GiB } from "./helpers.ts";

interface Recorded {
  readonly method?: string;
  readonly url?: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A loopback server that records requests and answers each with `answer(request)`. */
async function recorder(answer: (r: Recorded) => { status: number; headers?: Record<string, string>; body: string }) {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const recorded = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(parts) };
      requests.push(recorded);
      const out = answer(recorded);
      res.writeHead(out.status, { "content-type": "application/json", ...out.headers });
      res.end(out.body, "latin1");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  process.env.AWS_ACCESS_KEY_ID ??= "AKIAPWTESTKEY0000001";
  process.env.AWS_SECRET_ACCESS_KEY ??= "pw-test-secret-key-moto";
  const clients = createAwsClients({ region: "us-east-1", endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  return {
    requests,
    clients,
    async stop() {
      clients.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// moto checks neither signatures nor checksums, so what goes on the wire is checked here with a
// loopback server that records one request.
describe("EBS direct-API requests on the wire", () => {
  it("GIVEN a 2 GiB + 512 B disk with a parent, KMS key and tags WHEN StartSnapshot is sent THEN the volume rounds up to 3 GiB and every setting travels", async () => {
    const wire = await recorder(() => ({ status: 201, body: JSON.stringify({ SnapshotId: "snap-0def", VolumeSize: 3, BlockSize: 524288, Status: "pending" }) }));
    try {
      const started = await startSnapshot(wire.clients.ebs, {
        virtualSizeBytes: 2 * GiB + 512,
        description: "web",
        tags: { app: "web" },
        parentSnapshotId: "snap-0abc",
        kmsKeyArn: "arn:aws:kms:us-east-1:111122223333:key/k",
        timeoutMinutes: 120,
      });
      assert.deepEqual(started, { snapshotId: "snap-0def", volumeSizeGiB: 3 });
      const body = JSON.parse(wire.requests[0]!.body.toString("utf8")) as Record<string, unknown>;
      assert.equal(wire.requests[0]!.url, "/snapshots");
      assert.equal(body.VolumeSize, 3);
      assert.equal(body.ParentSnapshotId, "snap-0abc");
      assert.equal(body.KmsKeyArn, "arn:aws:kms:us-east-1:111122223333:key/k");
      assert.equal(body.Encrypted, true);
      assert.equal(body.Timeout, 120);
      assert.equal(body.Description, "web");
      assert.deepEqual(body.Tags, [{ Key: "app", Value: "web" }]);
      assert.match(String(body.ClientToken), /^[0-9a-f-]{36}$/, "a retried StartSnapshot is idempotent");
    } finally {
      await wire.stop();
    }
  });

  it("GIVEN the checksums of the blocks sent WHEN CompleteSnapshot is sent THEN it carries their count and the LINEAR aggregate", async () => {
    const wire = await recorder(() => ({ status: 202, body: JSON.stringify({ Status: "completed" }) }));
    try {
      const a = createHash("sha256").update("a").digest();
      const b = createHash("sha256").update("b").digest();
      // Inserted out of order: LINEAR concatenates by ascending block index.
      const checksums = new Map([[9, b], [2, a]]);
      assert.equal(await completeSnapshot(wire.clients.ebs, "snap-0def", checksums), "completed");
      const headers = wire.requests[0]!.headers;
      assert.equal(wire.requests[0]!.url, "/snapshots/completion/snap-0def");
      assert.equal(headers["x-amz-changedblockscount"], "2");
      assert.equal(headers["x-amz-checksum"], createHash("sha256").update(Buffer.concat([a, b])).digest("base64"));
      assert.equal(headers["x-amz-checksum"], linearAggregateChecksum(checksums));
      assert.equal(headers["x-amz-checksum-algorithm"], "SHA256");
      assert.equal(headers["x-amz-checksum-aggregation-method"], "LINEAR");
    } finally {
      await wire.stop();
    }
  });

  it("GIVEN a block and its SHA-256 WHEN put THEN the signed payload hash and the EBS checksum both match the body", async () => {
    const wire = await recorder(() => ({ status: 201, headers: { "x-amz-checksum": "x", "x-amz-checksum-algorithm": "SHA256" }, body: "{}" }));
    const clients = wire.clients;
    try {
      const block = randomBytes(BLOCK);
      const digest = createHash("sha256").update(block).digest();
      await putSnapshotBlock(clients.ebs, "snap-0abc", 7, block, digest);
      const seen = wire.requests[0];
      assert.ok(seen !== undefined);
      assert.equal(seen.method, "PUT");
      assert.equal(seen.url, "/snapshots/snap-0abc/blocks/7");
      assert.ok(seen.body.equals(block));
      assert.equal(seen.headers["x-amz-content-sha256"], digest.toString("hex"), "the signer signed the body's real hash");
      assert.match(String(seen.headers.authorization), /SignedHeaders=[^,]*x-amz-content-sha256/);
      assert.equal(seen.headers["x-amz-checksum"], digest.toString("base64"));
      assert.equal(seen.headers["x-amz-checksum-algorithm"], "SHA256");
      assert.equal(seen.headers["x-amz-data-length"], String(BLOCK));

      await assert.rejects(
        () => putSnapshotBlock(clients.ebs, "snap-0abc", 8, block.subarray(1), digest),
        (err: unknown) => isPortableError(err) && err.code === "EBS_BLOCK_SIZE" && /snap-0abc block 8/.test(err.message),
      );
    } finally {
      await wire.stop();
    }
  });

  it("GIVEN a block whose bytes do not match the service's checksum WHEN read THEN it is fetched again, then EBS_CHECKSUM_MISMATCH names block and offset", async () => {
    const block = randomBytes(BLOCK);
    const wrong = createHash("sha256").update("other").digest("base64");
    const wire = await recorder(() => ({
      status: 200,
      headers: { "content-type": "application/octet-stream", "x-amz-checksum": wrong, "x-amz-checksum-algorithm": "SHA256", "x-amz-data-length": String(BLOCK) },
      body: block.toString("latin1"),
    }));
    try {
      let retries = 0;
      await assert.rejects(
        () => getSnapshotBlock(wire.clients.ebs, "snap-0def", 5, "token", { attempts: 3, onRetry: () => retries++ }),
        (e: unknown) => isPortableError(e) && e.code === "EBS_CHECKSUM_MISMATCH" && /snap-0def/.test(e.message) && /blockIndex 5/.test(e.message) && /offset 0x280000/.test(e.message),
      );
      assert.equal(retries, 2);
      assert.equal(wire.requests.length, 3);
      assert.equal(wire.requests[0]!.url, "/snapshots/snap-0def/blocks/5?blockToken=token");
    } finally {
      await wire.stop();
    }
  });
});
