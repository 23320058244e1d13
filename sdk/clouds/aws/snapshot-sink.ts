// A DiskSink that writes an EBS snapshot through the EBS direct APIs, so convert() can stream any
// DiskSource (any image format, another cloud) into AWS with no S3 staging and no import task.
//
// - Writes arrive in increasing order (the DiskSink contract); the sink assembles them into
//   512 KiB blocks and uploads each finished block while convert() reads on.
// - All-zero blocks are never sent: a new snapshot reads as zeros.
// - With a parent (an incremental child), a block whose SHA-256 equals the parent manifest's is
//   not sent either, and a block the parent held but the new disk no longer writes is cleared
//   with an explicit zero block, so the child reads exactly as the new disk. The delta comes
//   from our manifests, never from the service's change tracking (DESIGN.md).
// - Memory: at most EBS_PUT_CONCURRENCY blocks in flight plus the one being assembled.
import { DeleteSnapshotCommand, type EC2Client } from "@aws-sdk/client-ec2";
import type { EBSClient } from "@aws-sdk/client-ebs";
import { InvalidArgsError, NotCapableError } from "../../errors.ts";
import type { DiskSink, SinkResult } from "../../disk/types.ts";
import { BlockManifest } from "../../disk/manifest.ts";
import { callAws } from "./call.ts";
import { completeSnapshot, waitForSnapshotCompleted } from "./complete-snapshot.ts";
import { EBS_BLOCK_BYTES, GiB, isZeroBlock, sha256, zeroBlock, ZERO_BLOCK_SHA256 } from "./ebs-block.ts";
import { putSnapshotBlock } from "./put-snapshot-block.ts";
import { startSnapshot, type StartSnapshotOptions } from "./start-snapshot.ts";

/**
 * PutSnapshotBlock requests in flight per snapshot. AWS quotes about 500 MB/s per snapshot; at
 * a typical 50–100 ms per 512 KiB request that needs 50–100 requests in flight (Little's law:
 * 500 MB/s × 0.064 s ÷ 0.5 MiB ≈ 64). coldsnap uses 64 workers for the same reason. 64 blocks
 * are 32 MiB of buffers, well inside the 256 MiB RSS budget.
 */
export const EBS_PUT_CONCURRENCY = 64;
export const MAX_EBS_PUT_CONCURRENCY = 256;

const ABORTED = new Error("ebs sink aborted");

export interface EbsParent {
  readonly snapshotId: string;
  /** Our manifest of the parent's content, 512 KiB blocks (from buildManifest or a prior sink). */
  readonly manifest: BlockManifest;
}

export interface EbsSnapshotSinkOptions extends Omit<StartSnapshotOptions, "parentSnapshotId"> {
  /** Makes the snapshot an incremental child: only blocks that differ from the parent are sent. */
  readonly parent?: EbsParent;
  /** With an EC2 client the sink waits for `completed` and deletes the snapshot on abort. */
  readonly ec2?: EC2Client;
  /** @default DEFAULT_WAIT_TIMEOUT_MS (30 min) */
  readonly waitTimeoutMs?: number;
  /** @default EBS_PUT_CONCURRENCY */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  /** Told after each block is stored (progress, counting). */
  readonly onBlockPut?: (blockIndex: number) => void;
}

export interface EbsSinkStats {
  /** PutSnapshotBlock calls that succeeded, clears included. */
  readonly blocksPut: number;
  /** Blocks assembled from writes that held only zeros and were not sent. */
  readonly zeroBlocksSkipped: number;
  /** Blocks equal to the parent's, not sent. */
  readonly unchangedBlocksSkipped: number;
  /** Parent blocks cleared with a zero block. */
  readonly blocksCleared: number;
  readonly retries: number;
}

export class EbsSnapshotSink implements DiskSink {
  readonly format = "ebs";
  readonly blockSizeBytes = EBS_BLOCK_BYTES;
  readonly virtualSizeBytes: number;
  readonly snapshotId: string;
  readonly volumeSizeGiB: number;

  readonly #ebs: EBSClient;
  readonly #options: EbsSnapshotSinkOptions;
  readonly #concurrency: number;
  readonly #abort = new AbortController();
  /** SHA-256 of every block sent, by index: CompleteSnapshot's count and LINEAR aggregate. */
  readonly #sent = new Map<number, Buffer>();
  /** SHA-256 of every non-zero block of the new content: the manifest for the next increment. */
  readonly #hashes = new Map<number, Buffer>();
  readonly #inFlight = new Set<Promise<void>>();
  /** Senders waiting for a free upload slot, woken one per finished upload. */
  readonly #waiting: Array<() => void> = [];
  readonly #parentBlocks: readonly number[];
  #parentCursor = 0;
  #current: { index: number; data: Buffer } | undefined;
  #nextOffsetBytes = 0;
  #failure: unknown;
  #closed = false;
  /** CompleteSnapshot succeeded: from here on abort() must not delete the snapshot. */
  #completed = false;
  #aborted = false;
  #stats = { blocksPut: 0, zeroBlocksSkipped: 0, unchangedBlocksSkipped: 0, blocksCleared: 0, retries: 0 };

  constructor(ebs: EBSClient, snapshotId: string, volumeSizeGiB: number, options: EbsSnapshotSinkOptions) {
    this.#ebs = ebs;
    this.snapshotId = snapshotId;
    this.volumeSizeGiB = volumeSizeGiB;
    this.virtualSizeBytes = options.virtualSizeBytes;
    this.#options = options;
    this.#concurrency = options.concurrency ?? EBS_PUT_CONCURRENCY;
    this.#parentBlocks = options.parent?.manifest.dataBlocks() ?? [];
    options.signal?.addEventListener("abort", () => this.#abort.abort(options.signal?.reason), { once: true });
  }

  get stats(): EbsSinkStats {
    return { ...this.#stats };
  }

  /** Our manifest of what the snapshot now holds; pass it as the next child's parent manifest. */
  manifest(): BlockManifest {
    return new BlockManifest(this.virtualSizeBytes, EBS_BLOCK_BYTES, new Map(this.#hashes));
  }

  async write(offsetBytes: number, data: Buffer): Promise<void> {
    this.#check();
    if (offsetBytes < this.#nextOffsetBytes || offsetBytes + data.length > this.virtualSizeBytes) {
      throw new InvalidArgsError(
        "EBS_WRITE_ORDER",
        `ebs sink ${this.snapshotId}: write at offset 0x${offsetBytes.toString(16)} (+${data.length}) is out of order or past the end (next 0x${this.#nextOffsetBytes.toString(16)}, size ${this.virtualSizeBytes})`,
        { context: { snapshotId: this.snapshotId, offsetBytes, lengthBytes: data.length } },
      );
    }
    this.#nextOffsetBytes = offsetBytes + data.length;
    let at = 0;
    while (at < data.length) {
      const position = offsetBytes + at;
      const index = Math.floor(position / EBS_BLOCK_BYTES);
      const inBlock = position % EBS_BLOCK_BYTES;
      if (this.#current !== undefined && this.#current.index !== index) await this.#flushCurrent();
      if (this.#current === undefined && inBlock === 0 && data.length - at >= EBS_BLOCK_BYTES) {
        // A whole block: keep the caller's bytes (they are ours now), no copy.
        await this.#dispatch(index, data.subarray(at, at + EBS_BLOCK_BYTES));
        at += EBS_BLOCK_BYTES;
        continue;
      }
      this.#current ??= { index, data: zeroBlock() };
      const length = Math.min(EBS_BLOCK_BYTES - inBlock, data.length - at);
      data.copy(this.#current.data, inBlock, at, at + length);
      at += length;
    }
  }

  async finish(): Promise<SinkResult> {
    this.#check();
    await this.#flushCurrent();
    await this.#clearParentBlocksBefore(Number.POSITIVE_INFINITY);
    await Promise.all(this.#inFlight);
    this.#check();
    this.#closed = true;
    const signal = this.#abort.signal;
    const status = await completeSnapshot(this.#ebs, this.snapshotId, this.#sent, signal);
    this.#completed = true;
    if (this.#options.ec2 !== undefined) {
      await waitForSnapshotCompleted(this.#options.ec2, this.snapshotId, {
        signal,
        ...(this.#options.waitTimeoutMs === undefined ? {} : { timeoutMs: this.#options.waitTimeoutMs }),
      });
    }
    const dataBlocks = [...this.#sent.values()].filter((hash) => !hash.equals(ZERO_BLOCK_SHA256)).length;
    return {
      location: this.snapshotId,
      dataBytesWritten: dataBlocks * EBS_BLOCK_BYTES,
      details: {
        snapshotId: this.snapshotId,
        volumeSizeGiB: this.volumeSizeGiB,
        status: this.#options.ec2 === undefined ? status : "completed",
        changedBlocksCount: this.#sent.size,
        ...(this.#options.parent === undefined ? {} : { parentSnapshotId: this.#options.parent.snapshotId }),
        ...this.#stats,
      },
    };
  }

  async abort(): Promise<void> {
    if (this.#completed || this.#aborted) return;
    this.#aborted = true;
    this.#closed = true;
    this.#abort.abort(ABORTED);
    await Promise.all(this.#inFlight);
    // A pending snapshot that is never completed errors out after its Timeout anyway; deleting
    // it now frees the quota. Best effort: the sink's own failure is what the caller needs.
    const ec2 = this.#options.ec2;
    if (ec2 !== undefined) {
      await callAws({ operation: "DeleteSnapshot", code: "EC2_DELETE_SNAPSHOT_FAILED", context: { snapshotId: this.snapshotId }, attempts: 3 }, () =>
        ec2.send(new DeleteSnapshotCommand({ SnapshotId: this.snapshotId })),
      ).catch(() => {});
    }
  }

  #check(): void {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed) throw new NotCapableError("EBS_SINK_CLOSED", `ebs sink ${this.snapshotId}: already finished or aborted`, { context: { snapshotId: this.snapshotId } });
  }

  async #flushCurrent(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    if (current !== undefined) await this.#dispatch(current.index, current.data);
  }

  /** Parent blocks below `index` that the new content never wrote must read as zeros. */
  async #clearParentBlocksBefore(index: number): Promise<void> {
    while (this.#parentCursor < this.#parentBlocks.length && this.#parentBlocks[this.#parentCursor]! < index) {
      const parentIndex = this.#parentBlocks[this.#parentCursor++]!;
      await this.#send(parentIndex, zeroBlock(), ZERO_BLOCK_SHA256);
      this.#stats.blocksCleared++;
    }
  }

  async #dispatch(index: number, data: Buffer): Promise<void> {
    await this.#clearParentBlocksBefore(index);
    const parent = this.#options.parent?.manifest;
    let parentHash: Buffer | undefined;
    if (parent !== undefined && this.#parentBlocks[this.#parentCursor] === index) {
      parentHash = parent.hash(index);
      this.#parentCursor++;
    }
    if (isZeroBlock(data)) {
      this.#hashes.delete(index);
      if (parentHash === undefined) {
        this.#stats.zeroBlocksSkipped++;
        return;
      }
      await this.#send(index, data, ZERO_BLOCK_SHA256);
      this.#stats.blocksCleared++;
      return;
    }
    const hash = sha256(data);
    this.#hashes.set(index, hash);
    if (parentHash?.equals(hash) === true) {
      this.#stats.unchangedBlocksSkipped++;
      return;
    }
    await this.#send(index, data, hash);
  }

  /** Waits for a free slot, then uploads in the background; a failure surfaces on the next call. */
  async #send(index: number, data: Buffer, hash: Buffer): Promise<void> {
    while (this.#inFlight.size >= this.#concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#check();
    this.#sent.set(index, hash);
    const upload = putSnapshotBlock(this.#ebs, this.snapshotId, index, data, hash, {
      signal: this.#abort.signal,
      onRetry: () => this.#stats.retries++,
    }).then(
      () => {
        this.#stats.blocksPut++;
        this.#options.onBlockPut?.(index);
      },
      (error: unknown) => {
        this.#failure ??= error;
        // Stop the other uploads: the snapshot will not be completed.
        this.#abort.abort(error);
      },
    );
    this.#inFlight.add(upload);
    void upload.then(() => {
      this.#inFlight.delete(upload);
      this.#waiting.shift()?.();
    });
  }
}

/** Starts the snapshot (StartSnapshot) and returns a sink that fills it. */
export async function createEbsSnapshotSink(ebs: EBSClient, options: EbsSnapshotSinkOptions): Promise<EbsSnapshotSink> {
  const concurrency = options.concurrency ?? EBS_PUT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_EBS_PUT_CONCURRENCY) {
    throw new InvalidArgsError("EBS_INVALID_OPTIONS", `ebs sink: concurrency must be 1..${MAX_EBS_PUT_CONCURRENCY}, got ${concurrency}`);
  }
  const parent = options.parent;
  if (parent !== undefined) {
    if (parent.manifest.blockSizeBytes !== EBS_BLOCK_BYTES) {
      throw new InvalidArgsError("EBS_PARENT_MANIFEST", `ebs sink: the parent manifest of ${parent.snapshotId} uses ${parent.manifest.blockSizeBytes}-byte blocks, not ${EBS_BLOCK_BYTES}`, {
        context: { parentSnapshotId: parent.snapshotId },
      });
    }
    if (Math.ceil(parent.manifest.virtualSizeBytes / GiB) > Math.ceil(options.virtualSizeBytes / GiB)) {
      throw new InvalidArgsError("EBS_CHILD_SMALLER", `ebs sink: a child of ${parent.snapshotId} cannot be smaller than its parent (${parent.manifest.virtualSizeBytes} bytes)`, {
        context: { parentSnapshotId: parent.snapshotId, virtualSizeBytes: options.virtualSizeBytes },
      });
    }
  }
  const start: StartSnapshotOptions = {
    virtualSizeBytes: options.virtualSizeBytes,
    ...(options.description === undefined ? {} : { description: options.description }),
    ...(options.tags === undefined ? {} : { tags: options.tags }),
    ...(options.kmsKeyArn === undefined ? {} : { kmsKeyArn: options.kmsKeyArn }),
    ...(options.encrypted === undefined ? {} : { encrypted: options.encrypted }),
    ...(options.timeoutMinutes === undefined ? {} : { timeoutMinutes: options.timeoutMinutes }),
    ...(options.clientToken === undefined ? {} : { clientToken: options.clientToken }),
    ...(parent === undefined ? {} : { parentSnapshotId: parent.snapshotId }),
  };
  const started = await startSnapshot(ebs, start, options.signal);
  return new EbsSnapshotSink(ebs, started.snapshotId, started.volumeSizeGiB, options);
}
