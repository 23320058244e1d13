// Acceptance "Resync": syncing a changed source writes only the changed blocks, found from our
// own block manifests (Azurite's page-range diff is wrong, so it is never asked), and the
// blob then reads back, byte for byte, as the changed source.
import assert from "node:assert/strict";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ContainerClient } from "@azure/storage-blob";
import { createPageBlobSink } from "../../../sdk/clouds/azure/page-blob-sink.ts";
import { syncPageBlob } from "../../../sdk/clouds/azure/sync-page-blob.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import type { DiskSource } from "../../../sdk/disk/types.ts";
import { BlockManifest, buildManifest, changedBlocks, DEFAULT_MANIFEST_BLOCK_BYTES } from "../../../sdk/disk/manifest.ts";
import { startAzurite, type Azurite } from "../../harness/azurite.ts";
import { qemuImg, qemuIo, qemuRawSha256, sourceSha256, withTempDir } from "../../harness/disk.ts";
import { containerFor, downloadPageBlob, KiB, mergeIntervals, MiB, startRecordingProxy, type RecordingProxy } from "./helpers.ts";

const BLOCK = DEFAULT_MANIFEST_BLOCK_BYTES;
const SIZE = 96 * MiB;

async function withDisk<T>(path: string, fn: (disk: DiskSource) => Promise<T>): Promise<T> {
  const disk = await openDisk(path);
  try {
    return await fn(disk);
  } finally {
    await disk.close();
  }
}

/** Block runs as [start, end) byte intervals, clipped to the disk. */
function blockIntervals(blocks: readonly number[]): Array<[number, number]> {
  return mergeIntervals(blocks.map((b) => [b * BLOCK, Math.min(SIZE, (b + 1) * BLOCK)]));
}

describe("azure page-blob resync from block manifests", { timeout: 300_000 }, () => {
  let azurite: Azurite;
  let proxy: RecordingProxy;
  let container: ContainerClient;

  before(async () => {
    azurite = await startAzurite();
    proxy = await startRecordingProxy(azurite.blobEndpoint.replace(/\/[^/]+$/, ""));
    container = await containerFor(azurite, "resync", proxy.endpoint);
  });
  after(async () => {
    await proxy?.stop();
    await azurite?.stop();
  });

  it("GIVEN a blob holding v1 and a v2 with rewritten, zeroed, new and unaligned changes WHEN synced THEN only changed blocks are written and the blob equals v2", async () => {
    await withTempDir(async (dir) => {
      const v1 = join(dir, "v1.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", v1, String(SIZE));
      await qemuIo("qcow2", v1, [
        "write -P 0x11 0 4M",
        "write -P 0x22 10M 3M",
        "write -P 0x33 40M 512k",
        "write -P 0x44 60M 8M",
        `write -P 0x55 ${SIZE - 64 * KiB} 64k`,
      ]);
      const v2 = join(dir, "v2.qcow2");
      await copyFile(v1, v2);
      await qemuIo("qcow2", v2, [
        "write -P 0x99 1M 4k", // one block rewritten inside a run
        "write -z 10M 3M", // a run zeroed: its blocks must be cleared
        "write -z 40M 512k", // a block inside a zero cluster now: never read, still cleared
        "write -P 0x77 30M 1M", // new data where there was none
        `write -P 0x66 ${62 * MiB - 512} 1024`, // a change straddling two blocks
        "write -P 0x44 64M 64k", // the same bytes again: no change
      ]);
      const blob = container.getPageBlobClient("resync.vhd");
      const manifest1 = await withDisk(v1, async (source) => {
        const sink = await createPageBlobSink(blob, { virtualSizeBytes: source.virtualSizeBytes });
        await convert(source, sink);
        return buildManifest(source);
      });
      const manifest2 = await withDisk(v2, buildManifest);
      const expected = changedBlocks(manifest1, manifest2);
      assert.ok(expected.length > 0);

      proxy.reset();
      const result = await withDisk(v2, (source) => syncPageBlob(source, blob, manifest1));
      assert.deepEqual(result.changedBlocks, expected);
      assert.deepEqual(result.manifest.toJSON(), manifest2.toJSON(), "the returned manifest describes v2");
      assert.equal(proxy.requests.get("GET pagelistdiff") ?? 0, 0, "the service's diff is never asked");
      assert.ok(![...proxy.requests.keys()].some((k) => k.startsWith("GET ") && k !== "GET -"), `requests: ${[...proxy.requests.keys()].join(", ")}`);

      const nowData = expected.filter((b) => manifest2.hash(b) !== undefined);
      const nowZero = expected.filter((b) => manifest2.hash(b) === undefined);
      const writes = proxy.ops.filter((op) => op.kind === "update");
      const clears = proxy.ops.filter((op) => op.kind === "clear");
      assert.deepEqual(mergeIntervals(writes.map((op) => [op.offsetBytes, op.offsetBytes + op.lengthBytes])), blockIntervals(nowData));
      assert.deepEqual(mergeIntervals(clears.map((op) => [op.offsetBytes, op.offsetBytes + op.lengthBytes])), blockIntervals(nowZero));
      const sentBytes = writes.reduce((n, op) => n + op.lengthBytes, 0);
      assert.ok(sentBytes <= 1.05 * nowData.length * BLOCK, `sent ${sentBytes} for ${nowData.length} changed blocks`);
      assert.equal(result.stats.bytesUploaded, sentBytes);

      // Proof by content, not by the emulator's bookkeeping: the whole blob equals v2.
      const downloaded = join(dir, "after.vhd");
      await downloadPageBlob(blob, downloaded);
      assert.equal(await qemuRawSha256(downloaded, "vpc"), await qemuRawSha256(v2, "qcow2"));
      await qemuImg("compare", "-q", "-f", "qcow2", "-F", "vpc", v2, downloaded);
      await withDisk(downloaded, async (d) => assert.equal(await sourceSha256(d), await withDisk(v2, sourceSha256)));

      // Nothing changed since: a second sync sends nothing.
      proxy.reset();
      const again = await withDisk(v2, (source) => syncPageBlob(source, blob, result.manifest));
      assert.deepEqual(again.changedBlocks, []);
      assert.equal(proxy.ops.length, 0);
    });
  });

  it("GIVEN an empty manifest and a fresh blob WHEN synced THEN every data block is uploaded and the blob equals the source", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "src.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", image, String(SIZE));
      await qemuIo("qcow2", image, ["write -P 0x21 3M 1M", "write -P 0x31 50M 100k"]);
      const blob = container.getPageBlobClient("fresh.vhd");
      await blob.create(SIZE + 512);
      proxy.reset();
      const result = await withDisk(image, (source) => syncPageBlob(source, blob, new BlockManifest(SIZE)));
      assert.deepEqual(result.changedBlocks, result.manifest.dataBlocks());
      assert.equal(result.changedBlocks.length, 2 + 1);
      const writes = proxy.ops.filter((op) => op.kind === "update" && op.blob.endsWith("/fresh.vhd"));
      assert.deepEqual([writes.at(-1)?.offsetBytes, writes.at(-1)?.lengthBytes], [SIZE, 512], "the footer is added, last");
      const downloaded = join(dir, "fresh.vhd");
      await downloadPageBlob(blob, downloaded);
      await qemuImg("compare", "-q", "-f", "qcow2", "-F", "vpc", image, downloaded);
    });
  });

  it("GIVEN a manifest of another size WHEN synced THEN MANIFEST_MISMATCH and nothing is written", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "src.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", image, String(SIZE));
      const blob = container.getPageBlobClient("mismatch.vhd");
      await blob.create(SIZE + 512);
      proxy.reset();
      await assert.rejects(withDisk(image, (s) => syncPageBlob(s, blob, new BlockManifest(SIZE * 2))), { code: "MANIFEST_MISMATCH" });
      const small = container.getPageBlobClient("small.vhd");
      await small.create(SIZE / 2 + 512);
      await assert.rejects(withDisk(image, (s) => syncPageBlob(s, small, new BlockManifest(SIZE))), { code: "AZURE_UPLOAD_SIZE_MISMATCH" });
      assert.equal(proxy.ops.length, 0);
    });
  });
});
