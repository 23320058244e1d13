// Resync: bring a page blob that holds an earlier version of a disk up to date, sending only
// the blocks whose content changed.
//
// What changed comes from our own block manifests (sdk/disk/manifest.ts), never from the
// service's page-range diff: Azurite answers that wrong (DESIGN.md, "Real parts"). The caller
// keeps the manifest of what the blob holds (from buildManifest, or the previous sync) and gets
// the new one back. One pass over the source's data hashes every block; a block whose hash
// differs is rewritten whole (zero pages included, since the old pages must be overwritten),
// and a block that became all zeros is cleared. A blob without a VHD footer (synced from an
// empty manifest) gets one, last; an existing footer is left alone.
import type { PageBlobClient } from "@azure/storage-blob";
import { InvalidArgsError } from "../../errors.ts";
import type { DiskSource } from "../../disk/types.ts";
import { BlockManifest } from "../../disk/manifest.ts";
import { azureCall, redactUrl, type CallOptions } from "./call.ts";
import { VHD_FOOTER_BYTES, VHD_FOOTER_COOKIE } from "../../disk/formats/vhd/layout.ts";
import { fixedVhdFooter, vhdBlobSizeFor } from "./page-blob-sink.ts";
import { pageBlobByteSource } from "./page-blob-source.ts";
import { createPageBlobTarget, PAGE_BLOB_MAX_WRITE_BYTES, type PageBlobWriteStats } from "./page-blob-target.ts";

export interface SyncPageBlobOptions extends CallOptions {
  /** Put Page calls in flight. @default PAGE_BLOB_UPLOADS_IN_FLIGHT */
  readonly concurrency?: number;
  readonly progress?: (doneBytes: number, totalBytes: number) => void;
}

export interface SyncPageBlobResult {
  /** The manifest of what the blob holds now: pass it to the next sync. */
  readonly manifest: BlockManifest;
  /** Indexes of the blocks rewritten or cleared, ascending. */
  readonly changedBlocks: readonly number[];
  readonly stats: Readonly<PageBlobWriteStats>;
}

/** Source bytes read per call; a whole number of manifest blocks, and one Put Page at most. */
const SYNC_READ_BYTES = PAGE_BLOB_MAX_WRITE_BYTES;

export async function syncPageBlob(
  source: DiskSource,
  client: PageBlobClient,
  previous: BlockManifest,
  options: SyncPageBlobOptions = {},
): Promise<SyncPageBlobResult> {
  const name = redactUrl(client.url);
  const blockBytes = previous.blockSizeBytes;
  if (previous.virtualSizeBytes !== source.virtualSizeBytes || SYNC_READ_BYTES % blockBytes !== 0) {
    throw new InvalidArgsError(
      "MANIFEST_MISMATCH",
      `sync ${name}: the manifest describes ${previous.virtualSizeBytes} bytes in ${blockBytes}-byte blocks, ` +
        `the source has ${source.virtualSizeBytes} bytes (block size must divide ${SYNC_READ_BYTES})`,
      { context: { blob: name, manifestBytes: previous.virtualSizeBytes, sourceBytes: source.virtualSizeBytes, blockBytes } },
    );
  }
  const blobSizeBytes = vhdBlobSizeFor(source.virtualSizeBytes);
  const props = await azureCall({ operation: "Get Blob Properties", blob: name }, () => client.getProperties(), options);
  if (props.contentLength !== blobSizeBytes) {
    throw new InvalidArgsError(
      "AZURE_UPLOAD_SIZE_MISMATCH",
      `sync ${name}: the blob holds ${props.contentLength} bytes, a disk of ${source.virtualSizeBytes} bytes needs ${blobSizeBytes}`,
      { context: { blob: name, blobSizeBytes: props.contentLength, expectedBytes: blobSizeBytes } },
    );
  }
  const target = createPageBlobTarget(client, { ...options, name, sizeBytes: blobSizeBytes, skipZeroPages: false });
  const next = new BlockManifest(source.virtualSizeBytes, blockBytes);
  const changed: number[] = [];
  // Blocks that held data before, ascending: the ones inside zero extents now must be cleared.
  const before = previous.dataBlocks();
  let beforeAt = 0;
  /** A run of blocks to clear, gathered so that adjacent blocks take one call. */
  let clearRun: { first: number; end: number } | undefined;

  async function flushClear(): Promise<void> {
    if (clearRun === undefined) return;
    const offsetBytes = clearRun.first * blockBytes;
    const endBytes = Math.min(clearRun.end * blockBytes, source.virtualSizeBytes);
    clearRun = undefined;
    await target.clear(offsetBytes, endBytes - offsetBytes);
  }
  async function clearBlock(index: number): Promise<void> {
    changed.push(index);
    if (clearRun !== undefined && clearRun.end === index) clearRun.end++;
    else {
      await flushClear();
      clearRun = { first: index, end: index + 1 };
    }
  }
  /** Clears blocks below `index` that held data and are not visited: they are zero now. */
  async function clearUnvisitedBelow(index: number): Promise<void> {
    while (beforeAt < before.length && before[beforeAt]! < index) await clearBlock(before[beforeAt++]!);
    if (beforeAt < before.length && before[beforeAt] === index) beforeAt++;
  }

  try {
    let nextBlock = 0;
    for await (const extent of source.extents()) {
      if (extent.kind === "zero") continue;
      const end = extent.offsetBytes + extent.lengthBytes;
      let block = Math.max(nextBlock, Math.floor(extent.offsetBytes / blockBytes));
      while (block * blockBytes < end) {
        options.signal?.throwIfAborted();
        const start = block * blockBytes;
        const data = await source.read(start, Math.min(SYNC_READ_BYTES, source.virtualSizeBytes - start));
        for (let at = 0; at < data.length; at += blockBytes, block++) {
          await clearUnvisitedBelow(block);
          const piece = data.subarray(at, Math.min(data.length, at + blockBytes));
          next.record(block, piece);
          const a = previous.hash(block);
          const b = next.hash(block);
          if (a === undefined ? b === undefined : b !== undefined && a.equals(b)) continue;
          if (b === undefined) await clearBlock(block);
          else {
            await flushClear();
            changed.push(block);
            await target.write(start + at, piece);
          }
        }
        options.progress?.(Math.min(block * blockBytes, source.virtualSizeBytes), source.virtualSizeBytes);
      }
      nextBlock = block;
    }
    await clearUnvisitedBelow(Number.MAX_SAFE_INTEGER);
    await flushClear();
    // A blob synced from nothing has no footer yet: add it, last, once all data is stored.
    await target.truncate(blobSizeBytes - VHD_FOOTER_BYTES);
    const tail = await pageBlobByteSource(client, blobSizeBytes, options).read(blobSizeBytes - VHD_FOOTER_BYTES, VHD_FOOTER_BYTES);
    if (!tail.subarray(0, VHD_FOOTER_COOKIE.length).equals(Buffer.from(VHD_FOOTER_COOKIE, "latin1"))) {
      await target.write(blobSizeBytes - VHD_FOOTER_BYTES, await fixedVhdFooter(source.virtualSizeBytes));
    }
    await target.close();
  } catch (error) {
    await target.close().catch(() => {});
    throw error;
  }
  options.progress?.(source.virtualSizeBytes, source.virtualSizeBytes);
  return { manifest: next, changedBlocks: changed, stats: target.stats };
}
