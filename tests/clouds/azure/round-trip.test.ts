// Acceptance "Round trip": a 2 GiB mixed image in each input format streams into a page blob;
// the blob is a valid fixed VHD (our reader and qemu-img accept it, its data hashes equal the
// source) and only pages holding data were written, each Put Page at most 4 MiB, footer last.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ContainerClient } from "@azure/storage-blob";
import { createPageBlobSink } from "../../../sdk/clouds/azure/page-blob-sink.ts";
import { openPageBlobSource } from "../../../sdk/clouds/azure/page-blob-source.ts";
import { PAGE_BLOB_MAX_WRITE_BYTES } from "../../../sdk/clouds/azure/page-blob-target.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { startAzurite, type Azurite } from "../../harness/azurite.ts";
import { fileSha256, qemuImg, qemuInfo, sourceSha256, withTempDir } from "../../harness/disk.ts";
import {
  containerFor, downloadPageBlob, GiB, intervalBytes, mergeIntervals, mixedLayout, nonZeroSectors, startRecordingProxy,
  writeRawImage, type Intervals, type RecordingProxy,
} from "./helpers.ts";

/** The acceptance size. PW_AZURE_ROUND_TRIP_BYTES shrinks it for quick local runs only. */
const VIRTUAL_SIZE_BYTES = Number(process.env.PW_AZURE_ROUND_TRIP_BYTES ?? 2 * GiB);
/** qemu-img's names for the input formats, with the options that make each a typical image. */
const INPUTS: ReadonlyArray<{ readonly format: string; readonly qemu: string; readonly options: readonly string[] }> = [
  { format: "raw", qemu: "raw", options: [] },
  { format: "qcow2", qemu: "qcow2", options: [] },
  { format: "vmdk", qemu: "vmdk", options: ["-o", "subformat=monolithicSparse"] },
  { format: "vhdx", qemu: "vhdx", options: [] },
  { format: "vhd", qemu: "vpc", options: ["-o", "subformat=dynamic,force_size=on"] },
];

describe("azure page-blob sink: round trip of a mixed image in every input format", { timeout: 600_000 }, () => {
  let azurite: Azurite;
  let proxy: RecordingProxy;
  let container: ContainerClient;
  let dir: string;
  let finishDir: () => void;
  let dirDone: Promise<void>;
  let rawPath: string;
  let rawSha256: string;
  let dataSectors: Intervals;

  before(async () => {
    azurite = await startAzurite();
    proxy = await startRecordingProxy(azurite.blobEndpoint.replace(/\/[^/]+$/, ""));
    container = await containerFor(azurite, "disks", proxy.endpoint);
    // One temp folder for the whole suite, removed in after().
    dir = await new Promise<string>((resolve) => {
      dirDone = withTempDir((d) => {
        resolve(d);
        return new Promise<void>((done) => (finishDir = done));
      });
    });
    rawPath = join(dir, "mixed.raw");
    const regions = mixedLayout(VIRTUAL_SIZE_BYTES);
    await writeRawImage(rawPath, VIRTUAL_SIZE_BYTES, regions);
    rawSha256 = await fileSha256(rawPath);
    dataSectors = await nonZeroSectors(rawPath, regions);
  });

  after(async () => {
    await proxy?.stop();
    await azurite?.stop();
    finishDir?.();
    await dirDone;
  });

  for (const input of INPUTS) {
    it(`GIVEN a ${VIRTUAL_SIZE_BYTES / GiB} GiB mixed ${input.format} image WHEN streamed into a page blob THEN the blob is a fixed VHD holding exactly its data pages`, async () => {
      const image = join(dir, `mixed.${input.format}`);
      if (input.format !== "raw") await qemuImg("convert", "-f", "raw", "-O", input.qemu, ...input.options, rawPath, image);
      const blob = container.getPageBlobClient(`mixed-${input.format}.vhd`);
      proxy.reset();

      const source = await openDisk(image);
      let result;
      try {
        assert.equal(source.format, input.format);
        const sink = await createPageBlobSink(blob, { virtualSizeBytes: source.virtualSizeBytes });
        result = await convert(source, sink);
      } finally {
        await source.close();
      }
      assert.equal(result.details?.blobSizeBytes, VIRTUAL_SIZE_BYTES + 512);

      // Only data pages were written: the pages sent are exactly the non-zero sectors, plus the footer.
      const writes = proxy.ops.filter((op) => op.kind === "update");
      assert.equal(proxy.ops.filter((op) => op.kind === "clear").length, 0, "a new blob needs no clears");
      const footer = writes.at(-1)!;
      assert.deepEqual([footer.offsetBytes, footer.lengthBytes], [VIRTUAL_SIZE_BYTES, 512], "the footer is the last Put Page");
      for (const op of writes) assert.ok(op.lengthBytes <= PAGE_BLOB_MAX_WRITE_BYTES, `Put Page of ${op.lengthBytes} bytes at ${op.offsetBytes}`);
      const dataWrites = writes.slice(0, -1);
      const written = mergeIntervals(dataWrites.map((op) => [op.offsetBytes, op.offsetBytes + op.lengthBytes]));
      assert.equal(intervalBytes(written), dataWrites.reduce((n, op) => n + op.lengthBytes, 0), "no page written twice");
      assert.deepEqual(written, dataSectors, "pages written = sectors holding data");
      assert.equal(result.dataBytesWritten >= intervalBytes(dataSectors), true);
      assert.equal(result.details?.bytesUploaded, intervalBytes(dataSectors) + 512);
      assert.equal(result.details?.pageWrites, writes.length);

      // Download with the SDK alone, then let qemu-img and our reader judge the file.
      const downloaded = join(dir, `mixed-${input.format}.vhd`);
      assert.equal(await downloadPageBlob(blob, downloaded), VIRTUAL_SIZE_BYTES + 512);
      const info = await qemuInfo(downloaded, "vpc");
      assert.equal(info["virtual-size"], VIRTUAL_SIZE_BYTES);
      await qemuImg("compare", "-q", "-f", input.qemu, "-F", "vpc", image, downloaded);
      const ours = await openDisk(downloaded);
      try {
        assert.equal(ours.format, "vhd");
        assert.equal(ours.subformat, "fixed");
        assert.equal(ours.virtualSizeBytes, VIRTUAL_SIZE_BYTES);
        assert.equal(await sourceSha256(ours), rawSha256);
      } finally {
        await ours.close();
      }

      // Reading the blob back through our page-blob source gives the same disk.
      if (input.format === "qcow2") {
        const remote = await openPageBlobSource(blob);
        assert.equal(remote.format, "vhd");
        assert.equal(remote.subformat, "fixed");
        let dataExtentBytes = 0;
        for await (const e of remote.extents()) if (e.kind === "data") dataExtentBytes += e.lengthBytes;
        assert.equal(dataExtentBytes, intervalBytes(dataSectors), "page ranges are the data pages");
        assert.equal(await sourceSha256(remote), rawSha256);
      }
      await blob.delete();
      await rmQuiet(image === rawPath ? undefined : image);
      await rmQuiet(downloaded);
    });
  }
});

async function rmQuiet(path: string | undefined): Promise<void> {
  if (path === undefined) return;
  const { rm } = await import("node:fs/promises");
  await rm(path, { force: true });
}
