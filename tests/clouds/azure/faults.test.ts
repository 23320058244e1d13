// Acceptance "Faults": dropped connections, 503s and delays between us and the service do not
// stop an upload (or a download) from finishing with the right content; the fault proxy is the
// one the AWS tests use. Also: failures that no retry can cure surface as coded errors naming
// the call, the offset and the blob, without any credential.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BlobSASPermissions, PageBlobClient, newPipeline, AnonymousCredential, type ContainerClient } from "@azure/storage-blob";
import { isPortableError } from "../../../sdk/errors.ts";
import { createPageBlobSink } from "../../../sdk/clouds/azure/page-blob-sink.ts";
import { openPageBlobSource } from "../../../sdk/clouds/azure/page-blob-source.ts";
import { AZURE_PIPELINE_OPTIONS } from "../../../sdk/clouds/azure/open-url.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { startAzurite, type Azurite } from "../../harness/azurite.ts";
import { fileSha256, sourceSha256, withTempDir } from "../../harness/disk.ts";
import { randomFaults, startFaultProxy, type Fault } from "../../harness/fault-proxy.ts";
import { containerFor, downloadPageBlob, MiB, mixedLayout, writeRawImage } from "./helpers.ts";

const SIZE = 256 * MiB;
const FAULTS: readonly Fault[] = [{ kind: "reset" }, { kind: "status", status: 503, body: "" }, { kind: "delay", ms: 300 }];

describe("azure page blobs under injected faults", { timeout: 300_000 }, () => {
  let azurite: Azurite;
  let direct: ContainerClient;

  before(async () => {
    azurite = await startAzurite();
    direct = await containerFor(azurite, "faults");
  });
  after(async () => {
    await azurite?.stop();
  });

  it("GIVEN resets, 503s and delays on a fifth of Put Page calls WHEN a mixed image is uploaded THEN it finishes with the right content", async () => {
    await withTempDir(async (dir) => {
      const raw = join(dir, "mixed.raw");
      await writeRawImage(raw, SIZE, mixedLayout(SIZE));
      const proxy = await startFaultProxy(
        azurite.blobEndpoint.replace(/\/[^/]+$/, ""),
        randomFaults(0.2, FAULTS, (c) => c.method === "PUT" && c.url.includes("comp=page")),
        6,
      );
      try {
        const container = await containerFor(azurite, "faults", proxy.endpoint);
        const blob = container.getPageBlobClient("faulty.vhd");
        const source = await openDisk(raw);
        let retries = 0;
        try {
          const sink = await createPageBlobSink(blob, { virtualSizeBytes: SIZE, onRetry: () => retries++ });
          await convert(source, sink);
        } finally {
          await source.close();
        }
        for (const kind of ["reset", "status", "delay"] as const) assert.ok((proxy.injected.get(kind) ?? 0) > 0, `no ${kind} fault injected`);
        assert.ok(retries >= (proxy.injected.get("reset") ?? 0) + (proxy.injected.get("status") ?? 0) - 1, `retries ${retries}`);
        const downloaded = join(dir, "faulty.vhd");
        await downloadPageBlob(direct.getPageBlobClient("faulty.vhd"), downloaded);
        const vhd = await openDisk(downloaded);
        try {
          assert.equal(vhd.subformat, "fixed");
          assert.equal(await sourceSha256(vhd), await fileSha256(raw));
        } finally {
          await vhd.close();
        }
      } finally {
        await proxy.stop();
      }
    });
  });

  it("GIVEN resets, 503s and truncated bodies on reads WHEN the blob is read through our source THEN every byte is right", async () => {
    await withTempDir(async (dir) => {
      const raw = join(dir, "mixed.raw");
      await writeRawImage(raw, SIZE, mixedLayout(SIZE));
      const source = await openDisk(raw);
      try {
        await convert(source, await createPageBlobSink(direct.getPageBlobClient("read-faults.vhd"), { virtualSizeBytes: SIZE }));
      } finally {
        await source.close();
      }
      const proxy = await startFaultProxy(
        azurite.blobEndpoint.replace(/\/[^/]+$/, ""),
        randomFaults(0.25, [...FAULTS, { kind: "truncate" }], (c) => c.method === "GET"),
        11,
      );
      try {
        const container = await containerFor(azurite, "faults", proxy.endpoint).catch(() => containerFor(azurite, "faults", proxy.endpoint));
        const remote = await openPageBlobSource(container.getPageBlobClient("read-faults.vhd"));
        try {
          assert.equal(await sourceSha256(remote), await fileSha256(raw));
        } finally {
          await remote.close();
        }
        assert.ok((proxy.injected.get("truncate") ?? 0) > 0, "no truncated body injected");
        assert.ok((proxy.injected.get("reset") ?? 0) > 0, "no reset injected");
      } finally {
        await proxy.stop();
      }
    });
  });

  it("GIVEN a service that answers 503 to every Put Page WHEN uploading THEN AZURE_RETRIES_EXHAUSTED names the call, offset and blob", async () => {
    const proxy = await startFaultProxy(
      azurite.blobEndpoint.replace(/\/[^/]+$/, ""),
      (c) => (c.method === "PUT" && c.url.includes("comp=page") ? { kind: "status", status: 503, body: "" } : undefined),
    );
    try {
      const container = await containerFor(azurite, "faults", proxy.endpoint);
      const sink = await createPageBlobSink(container.getPageBlobClient("always-503.vhd"), { virtualSizeBytes: 4 * MiB, attempts: 3 });
      await assert.rejects(
        (async () => {
          await sink.write(MiB, Buffer.alloc(64 * 1024, 1));
          await sink.finish();
        })(),
        (err: unknown) => {
          assert.ok(isPortableError(err));
          assert.equal(err.code, "AZURE_RETRIES_EXHAUSTED");
          assert.match(err.message, /Put Page .*always-503\.vhd at offset 0x100000 \(\+65536\)/);
          assert.equal(err.context.offsetBytes, MiB);
          return true;
        },
      );
    } finally {
      await proxy.stop();
    }
  });

  it("GIVEN a read-only SAS WHEN used as an upload target THEN AZURE_REQUEST_FAILED at once, and no part of the SAS is in the message", async () => {
    const blob = direct.getPageBlobClient("read-only.vhd");
    await blob.create(4 * MiB + 512);
    const sasUrl = await blob.generateSasUrl({ permissions: BlobSASPermissions.parse("r"), expiresOn: new Date(Date.now() + 3_600_000) });
    const signature = new URL(sasUrl).searchParams.get("sig")!;
    const client = new PageBlobClient(sasUrl, newPipeline(new AnonymousCredential(), AZURE_PIPELINE_OPTIONS));
    const sink = await createPageBlobSink(client, { virtualSizeBytes: 4 * MiB, mode: "upload" });
    await assert.rejects(
      (async () => {
        await sink.write(0, Buffer.alloc(4096, 7));
        await sink.finish();
      })(),
      (err: unknown) => {
        assert.ok(isPortableError(err));
        assert.equal(err.code, "AZURE_REQUEST_FAILED");
        assert.equal(err.context.status, 403);
        assert.match(err.message, /Put Page http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/faults\/read-only\.vhd at offset 0x0/);
        assert.ok(!err.message.includes(signature) && !err.message.includes("sig="), err.message);
        assert.ok(!JSON.stringify(err.context).includes(signature));
        return true;
      },
    );
  });
});
