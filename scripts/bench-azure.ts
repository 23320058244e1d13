// npm run bench:azure — our page-blob sink against plain concurrent uploadPages, in the same
// run, against the same Azurite.
//
// Builds a deterministic mixed raw image (1 MiB units: 40% holes, 30% random, 30% text), then
// alternates two uploads of it into fresh page blobs:
// - ours: convert(raw file → createPageBlobSink): reading the file, finding zeros, coalescing
//   to 4 MiB Put Page calls with Content-MD5, bounded concurrency, retries, footer last;
// - baseline: the same pages (the ranges our sink sent, recorded in an untimed first run) read
//   from the file and sent with plain uploadPages at the same concurrency, nothing else.
// Each side runs REPEATS times and keeps its best time. Both blobs are read back and compared
// with the image. The ratio is our throughput over the baseline's (target ≥ 0.9). The last line
// is one JSON object with every figure, for scripts.
import { mkdir, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlobServiceClient, newPipeline, StorageSharedKeyCredential, type PageBlobClient } from "@azure/storage-blob";
import { AZURE_PIPELINE_OPTIONS } from "../sdk/clouds/azure/open-url.ts";
import { createPageBlobSink } from "../sdk/clouds/azure/page-blob-sink.ts";
import { PAGE_BLOB_UPLOADS_IN_FLIGHT } from "../sdk/clouds/azure/page-blob-target.ts";
import { convert } from "../sdk/disk/convert.ts";
import { openDisk } from "../sdk/disk/open.ts";
import { startAzurite } from "../tests/harness/azurite.ts";
import { buildMixedImage } from "./mixed-image.ts";

const MiB = 1024 * 1024;
const IMAGE_BYTES = Number(process.env.PW_BENCH_IMAGE_MIB ?? 2048) * MiB;
const REPEATS = Number(process.env.PW_BENCH_REPEATS ?? 3);
const TARGET_RATIO = 0.9;
const dir = process.env.PW_BENCH_DIR ?? join(tmpdir(), "pw-bench-azure");


interface Range {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** A client whose uploadPages calls are recorded, to learn which pages our sink sends. */
function recording(client: PageBlobClient, ranges: Range[]): PageBlobClient {
  return new Proxy(client, {
    get(target, key, receiver) {
      if (key === "uploadPages") {
        return (body: Buffer, offset: number, count: number, options: unknown) => {
          ranges.push({ offsetBytes: offset, lengthBytes: count });
          return target.uploadPages(body, offset, count, options as never);
        };
      }
      const value: unknown = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function ours(blob: PageBlobClient, image: string): Promise<number> {
  const started = performance.now();
  const source = await openDisk(image);
  try {
    await convert(source, await createPageBlobSink(blob, { virtualSizeBytes: source.virtualSizeBytes }));
  } finally {
    await source.close();
  }
  return (performance.now() - started) / 1000;
}

/** Plain uploadPages of the given ranges, read from the file, PAGE_BLOB_UPLOADS_IN_FLIGHT at a time. */
async function baseline(blob: PageBlobClient, image: string, ranges: readonly Range[]): Promise<number> {
  const started = performance.now();
  await blob.create(IMAGE_BYTES + 512);
  const file = await open(image, "r");
  try {
    let next = 0;
    async function worker(): Promise<void> {
      while (next < ranges.length) {
        const range = ranges[next++]!;
        const body = Buffer.allocUnsafe(range.lengthBytes);
        await file.read(body, 0, range.lengthBytes, range.offsetBytes);
        await blob.uploadPages(body, range.offsetBytes, range.lengthBytes);
      }
    }
    await Promise.all(Array.from({ length: PAGE_BLOB_UPLOADS_IN_FLIGHT }, worker));
  } finally {
    await file.close();
  }
  return (performance.now() - started) / 1000;
}

/** Reads the data ranges back and compares them with the image; true when every byte matches. */
async function matches(blob: PageBlobClient, image: string, ranges: readonly Range[]): Promise<boolean> {
  const file = await open(image, "r");
  try {
    let pageBytes = 0;
    for await (const r of blob.listPageRanges(0, IMAGE_BYTES)) pageBytes += r.end + 1 - r.start;
    if (pageBytes !== ranges.reduce((n, r) => n + r.lengthBytes, 0)) return false;
    for (const r of ranges) {
      const expected = Buffer.alloc(r.lengthBytes);
      await file.read(expected, 0, r.lengthBytes, r.offsetBytes);
      if (!(await blob.downloadToBuffer(r.offsetBytes, r.lengthBytes)).equals(expected)) return false;
    }
    return true;
  } finally {
    await file.close();
  }
}

async function main(): Promise<void> {
  await mkdir(dir, { recursive: true });
  const image = join(dir, "mixed.raw");
  console.log(`building ${IMAGE_BYTES / MiB} MiB mixed image in ${dir} ...`);
  const dataBytes = await buildMixedImage(image, IMAGE_BYTES);
  const azurite = await startAzurite();
  try {
    const service = new BlobServiceClient(
      azurite.blobEndpoint,
      newPipeline(new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey), AZURE_PIPELINE_OPTIONS),
    );
    const container = service.getContainerClient("bench");
    await container.create();
    // Untimed first run: learn the pages our sink sends (data ranges, ≤ 4 MiB each, and the footer).
    const sent: Range[] = [];
    await ours(recording(container.getPageBlobClient("warmup.vhd"), sent), image);
    await container.getPageBlobClient("warmup.vhd").delete();
    const ranges = sent.filter((r) => r.offsetBytes < IMAGE_BYTES).sort((a, b) => a.offsetBytes - b.offsetBytes);
    const pageBytes = ranges.reduce((n, r) => n + r.lengthBytes, 0);

    const oursSeconds: number[] = [];
    const baselineSeconds: number[] = [];
    let identical = true;
    for (let i = 0; i < REPEATS; i++) {
      const a = container.getPageBlobClient(`ours-${i}.vhd`);
      oursSeconds.push(await ours(a, image));
      const b = container.getPageBlobClient(`baseline-${i}.vhd`);
      baselineSeconds.push(await baseline(b, image, ranges));
      if (i === 0) identical = (await matches(a, image, ranges)) && (await matches(b, image, ranges));
      await a.delete();
      await b.delete();
    }
    const bestOurs = Math.min(...oursSeconds);
    const bestBaseline = Math.min(...baselineSeconds);
    const oursMiBs = pageBytes / MiB / bestOurs;
    const baselineMiBs = pageBytes / MiB / bestBaseline;
    const ratio = oursMiBs / baselineMiBs;
    const peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);

    console.log("");
    console.log(`image ${IMAGE_BYTES / MiB} MiB virtual, ${dataBytes / MiB} MiB data, ${ranges.length} Put Page calls, ${REPEATS} runs each (best kept)`);
    console.log("side       best s   MiB/s   runs (s)");
    console.log(`ours     ${bestOurs.toFixed(2).padStart(8)} ${oursMiBs.toFixed(1).padStart(7)}   ${oursSeconds.map((s) => s.toFixed(2)).join(" ")}`);
    console.log(`baseline ${bestBaseline.toFixed(2).padStart(8)} ${baselineMiBs.toFixed(1).padStart(7)}   ${baselineSeconds.map((s) => s.toFixed(2)).join(" ")}`);
    console.log(`throughput ratio ours/baseline ${ratio.toFixed(3)} (target ≥ ${TARGET_RATIO})  ${identical ? "content identical" : "CONTENT DIFFERS"}  peak RSS ${peakRssMiB} MiB`);
    const failures = [
      ...(ratio < TARGET_RATIO ? [`ratio ${ratio.toFixed(3)} < ${TARGET_RATIO}`] : []),
      ...(identical ? [] : ["content differs"]),
    ];
    console.log(JSON.stringify({
      bench: "azure", imageBytes: IMAGE_BYTES, dataBytes, pageBytes, putPageCalls: ranges.length, concurrency: PAGE_BLOB_UPLOADS_IN_FLIGHT,
      oursSeconds: bestOurs, baselineSeconds: bestBaseline, oursMiBs, baselineMiBs, ratio, identical, peakRssMiB, failures,
    }));
    if (failures.length > 0) process.exitCode = 1;
  } finally {
    await azurite.stop();
    if (process.env.PW_BENCH_KEEP !== "1") await rm(dir, { recursive: true, force: true });
  }
}

await main();
