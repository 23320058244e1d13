// The page-blob sink and source at their edges: the 4 MiB Put Page limit (which Azurite does
// not enforce), sizes that are not whole MiB, the Upload flow's existing blob, refusals, and
// blobs that hold a raw disk.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ContainerClient } from "@azure/storage-blob";
import { createPageBlobSink, vhdBlobSizeFor } from "../../../sdk/clouds/azure/page-blob-sink.ts";
import { openPageBlobSource } from "../../../sdk/clouds/azure/page-blob-source.ts";
import { crc64Nvme } from "../../../sdk/clouds/azure/crc64.ts";
import { PAGE_BLOB_MAX_WRITE_BYTES } from "../../../sdk/clouds/azure/page-blob-target.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { openVhd } from "../../../sdk/disk/formats/vhd/reader.ts";
import { bufferSource } from "../../../sdk/disk/io.ts";
import type { DiskSource, Extent } from "../../../sdk/disk/types.ts";
import { startAzurite, type Azurite } from "../../harness/azurite.ts";
import { sourceSha256 } from "../../harness/disk.ts";
import { containerFor, KiB, MiB, startRecordingProxy, type RecordingProxy } from "./helpers.ts";

/** A DiskSource over bytes in memory, all one data extent, for small exact cases. */
function memoryDisk(data: Buffer): DiskSource {
  return {
    format: "raw",
    virtualSizeBytes: data.length,
    async *extents(): AsyncGenerator<Extent> {
      yield { offsetBytes: 0, lengthBytes: data.length, kind: "data" };
    },
    read: async (offsetBytes, lengthBytes) => Buffer.from(data.subarray(offsetBytes, offsetBytes + lengthBytes)),
    close: async () => {},
  };
}

function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buf[i] = ((i * 31 + seed) % 251) + 1;
  return buf;
}

describe("azure page-blob sink and source", { timeout: 120_000 }, () => {
  let azurite: Azurite;
  let proxy: RecordingProxy;
  let container: ContainerClient;

  before(async () => {
    azurite = await startAzurite();
    proxy = await startRecordingProxy(azurite.blobEndpoint.replace(/\/[^/]+$/, ""));
    container = await containerFor(azurite, "edges", proxy.endpoint);
  });
  after(async () => {
    await proxy?.stop();
    await azurite?.stop();
  });

  it("GIVEN 19 MiB of contiguous data WHEN uploaded THEN no Put Page exceeds 4 MiB (Azurite would accept more)", async () => {
    const data = pattern(19 * MiB, 3);
    proxy.reset();
    const result = await convert(memoryDisk(data), await createPageBlobSink(container.getPageBlobClient("big-run.vhd"), { virtualSizeBytes: data.length }));
    const writes = proxy.ops.filter((op) => op.kind === "update");
    assert.ok(writes.every((op) => op.lengthBytes <= PAGE_BLOB_MAX_WRITE_BYTES), writes.map((op) => op.lengthBytes).join(","));
    assert.ok(writes.some((op) => op.lengthBytes === PAGE_BLOB_MAX_WRITE_BYTES), "adjacent writes are coalesced up to the limit");
    assert.equal(writes.length, 5 + 1, "19 MiB in 4 MiB pages, then the footer");
    assert.equal(result.details?.largestPageWriteBytes, PAGE_BLOB_MAX_WRITE_BYTES);
  });

  it("GIVEN a disk of 3 MiB + 1000 bytes WHEN uploaded THEN the blob is a 4 MiB fixed VHD and reads back with zeros after the data", async () => {
    const data = pattern(3 * MiB + 1000, 9);
    const blob = container.getPageBlobClient("odd-size.vhd");
    const sink = await createPageBlobSink(blob, { virtualSizeBytes: data.length });
    assert.equal(sink.virtualSizeBytes, 4 * MiB);
    assert.equal(vhdBlobSizeFor(data.length), 4 * MiB + 512);
    await convert(memoryDisk(data), sink);
    const whole = await blob.downloadToBuffer();
    assert.equal(whole.length, 4 * MiB + 512);
    const vhd = await openVhd(bufferSource("odd-size.vhd", whole));
    assert.equal(vhd.subformat, "fixed");
    assert.equal(vhd.virtualSizeBytes, 4 * MiB);
    const expected = Buffer.alloc(4 * MiB);
    data.copy(expected);
    assert.ok((await vhd.read(0, 4 * MiB)).equals(expected));
  });

  it("GIVEN an existing blob WHEN created again without overwrite THEN TARGET_EXISTS; with overwrite THEN replaced", async () => {
    const blob = container.getPageBlobClient("exists.vhd");
    await convert(memoryDisk(pattern(MiB, 1)), await createPageBlobSink(blob, { virtualSizeBytes: MiB }));
    await assert.rejects(createPageBlobSink(blob, { virtualSizeBytes: MiB }), { code: "TARGET_EXISTS" });
    const second = Buffer.alloc(MiB);
    pattern(4 * KiB, 2).copy(second, 512 * KiB);
    await convert(memoryDisk(second), await createPageBlobSink(blob, { virtualSizeBytes: MiB, overwrite: true }));
    const remote = await openPageBlobSource(blob);
    assert.ok((await remote.read(0, MiB)).equals(second));
  });

  it("GIVEN the Upload flow's existing empty blob WHEN written in upload mode THEN it is used in place; a wrong size or a missing blob is refused", async () => {
    const blob = container.getPageBlobClient("managed-disk-sas.vhd");
    await assert.rejects(createPageBlobSink(blob, { virtualSizeBytes: 8 * MiB, mode: "upload" }), { code: "AZURE_BLOB_MISSING" });
    await blob.create(8 * MiB + 512);
    await assert.rejects(createPageBlobSink(blob, { virtualSizeBytes: 16 * MiB, mode: "upload" }), { code: "AZURE_UPLOAD_SIZE_MISMATCH" });
    proxy.reset();
    const data = pattern(8 * MiB, 5);
    await convert(memoryDisk(data), await createPageBlobSink(blob, { virtualSizeBytes: 8 * MiB, mode: "upload" }));
    assert.equal(proxy.requests.get("PUT -") ?? 0, 0, "the blob is not re-created");
    assert.ok((await (await openPageBlobSource(blob)).read(0, 8 * MiB)).equals(data));
    // Now it holds data: upload mode refuses to mix new pages with old ones.
    await assert.rejects(createPageBlobSink(blob, { virtualSizeBytes: 8 * MiB, mode: "upload" }), { code: "TARGET_EXISTS" });
    // With overwrite the old pages are cleared first, so unwritten pages read as zeros again.
    const sparse = Buffer.alloc(8 * MiB);
    pattern(512, 8).copy(sparse, 6 * MiB);
    await convert(memoryDisk(sparse), await createPageBlobSink(blob, { virtualSizeBytes: 8 * MiB, mode: "upload", overwrite: true }));
    assert.ok((await (await openPageBlobSource(blob)).read(0, 8 * MiB)).equals(sparse));
  });

  it("GIVEN a page blob without a VHD footer WHEN opened as a source THEN it is a raw disk of the blob's length with page-range extents", async () => {
    const blob = container.getPageBlobClient("raw-disk.img");
    await blob.create(6 * MiB);
    const data = pattern(128 * KiB, 4);
    await blob.uploadPages(data, 2 * MiB, data.length);
    const remote = await openPageBlobSource(blob);
    assert.equal(remote.format, "raw");
    assert.equal(remote.virtualSizeBytes, 6 * MiB);
    const extents = [];
    for await (const e of remote.extents()) extents.push(e);
    assert.deepEqual(extents, [
      { offsetBytes: 0, lengthBytes: 2 * MiB, kind: "zero" },
      { offsetBytes: 2 * MiB, lengthBytes: 128 * KiB, kind: "data" },
      { offsetBytes: 2 * MiB + 128 * KiB, lengthBytes: 4 * MiB - 128 * KiB, kind: "zero" },
    ]);
    const expected = Buffer.alloc(6 * MiB);
    data.copy(expected, 2 * MiB);
    assert.equal(await sourceSha256(remote), await sourceSha256(memoryDisk(expected)));
    await assert.rejects(remote.read(6 * MiB - 512, 1024), { code: "AZURE_READ_OUT_OF_RANGE" });
  });

  it("GIVEN the CRC-64/NVME catalogue check and a bitwise reference WHEN computed THEN they agree, at any length and alignment", () => {
    assert.equal(crc64Nvme(Buffer.from("123456789")).readBigUInt64LE(), 0xae8b14860a799888n);
    const reference = (d: Uint8Array): bigint => {
      let c = 0xffffffffffffffffn;
      for (const x of d) {
        c ^= BigInt(x);
        for (let k = 0; k < 8; k++) c = (c & 1n) === 1n ? (c >> 1n) ^ 0x9a6c9329ac4bc9b5n : c >> 1n;
      }
      return c ^ 0xffffffffffffffffn;
    };
    const data = pattern(5000, 77);
    for (const [offset, length] of [[0, 0], [1, 1], [3, 13], [0, 512], [5, 4096], [2, 4998]] as const) {
      const piece = data.subarray(offset, offset + length);
      assert.equal(crc64Nvme(piece).readBigUInt64LE(), reference(piece), `offset ${offset} length ${length}`);
    }
  });

  it("GIVEN a Put Page whose x-ms-content-crc64 does not match WHEN sent THEN the service refuses it (so the sink's checksums are checked)", async () => {
    const blob = container.getPageBlobClient("crc.vhd");
    await blob.create(MiB);
    const data = pattern(4096, 6);
    const wrong = crc64Nvme(data);
    wrong[0] = wrong[0]! ^ 1;
    await assert.rejects(blob.uploadPages(data, 0, data.length, { transactionalContentCrc64: wrong }), { statusCode: 400 });
    await blob.uploadPages(data, 0, data.length, { transactionalContentCrc64: crc64Nvme(data) });
    assert.ok((await blob.downloadToBuffer(0, 4096)).equals(data));
  });

  it("GIVEN a block blob WHEN opened as a disk THEN AZURE_NOT_PAGE_BLOB", async () => {
    const blob = container.getBlockBlobClient("not-a-disk.txt");
    await blob.upload("hello", 5);
    await assert.rejects(openPageBlobSource(container.getPageBlobClient("not-a-disk.txt")), { code: "AZURE_NOT_PAGE_BLOB" });
  });
});
