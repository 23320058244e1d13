import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { BlobServiceClient } from "@azure/storage-blob";
import { startAzurite, type Azurite } from "../harness/azurite.ts";

/** Page blobs are written in whole 512-byte pages. */
const PAGE_SIZE_BYTES = 512;

describe("Azurite (Azure Storage emulator): page blobs", () => {
  let azurite: Azurite;
  before(async () => {
    azurite = await startAzurite();
  });
  after(() => azurite?.stop());

  it("GIVEN a page blob WHEN pages are written at two offsets THEN each reads back byte-exactly and the gap is zero", async () => {
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const container = service.getContainerClient("smoke");
    await container.create();
    const blob = container.getPageBlobClient("disk.vhd");
    const blobSizeBytes = 4 * 1024 * 1024;
    await blob.create(blobSizeBytes);

    const first = randomBytes(8 * PAGE_SIZE_BYTES);
    const second = randomBytes(2 * PAGE_SIZE_BYTES);
    const secondOffsetBytes = blobSizeBytes - second.length;
    await blob.uploadPages(first, 0, first.length);
    await blob.uploadPages(second, secondOffsetBytes, second.length);

    const whole = await blob.downloadToBuffer(0, blobSizeBytes);
    assert.equal(whole.length, blobSizeBytes);
    assert.ok(whole.subarray(0, first.length).equals(first), "first range");
    assert.ok(whole.subarray(secondOffsetBytes).equals(second), "second range");
    assert.ok(whole.subarray(first.length, secondOffsetBytes).every((b) => b === 0), "unwritten pages read as zero");
  });
});
