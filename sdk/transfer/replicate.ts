// replicate(): one pass of block-level replication. It reads the source, hashes every block
// (SHA-256, the manifest's block size), and writes to the target only the blocks whose hash
// differs from what the target holds; blocks that became all zeros are cleared. What the target
// holds is our own manifest (checkpoint.ts), never a service's change tracking (DESIGN.md).
//
// Resume: every write is journalled (`send` before, `done` after). A rerun after a crash
// continues the same pass on the same target state (the same pending EBS snapshot, the same
// file or blob), re-sends no acknowledged block, and rewrites the blocks whose writes were cut
// off. A pass is committed (the target sealed, the state saved) only when every write is done.
//
// Change tracking: a source that tracks its writes (DiskSource.changes: a QEMU dirty bitmap)
// gives a token with each view, kept in the committed record. The next pass asks the source what
// changed since that token and reads and hashes only those ranges; a tracker that cannot say
// (lost, reset, another source) gets the full scan. The manifest stays the truth of what the
// target holds: tracking only narrows what is read.
import { InvalidArgsError } from "../errors.ts";
import type { DiskSource } from "../disk/types.ts";
import type { ReplicaPass, ReplicaTarget, TargetState } from "../contracts/replica-target.ts";
import { BlockManifest, blockHash, DEFAULT_MANIFEST_BLOCK_BYTES } from "../disk/manifest.ts";
import type { ReplicaStore } from "./checkpoint.ts";

export interface ReplicateProgress {
  readonly scannedBytes: number;
  readonly virtualSizeBytes: number;
  readonly blocksSent: number;
  readonly bytesSent: number;
}

export interface ReplicateOptions {
  readonly store: ReplicaStore;
  /** Names this replica in the store, e.g. `web-1-disk0-aws`. */
  readonly key: string;
  /** Manifest block size for a new replica. @default 512 KiB */
  readonly blockSizeBytes?: number;
  readonly onProgress?: (progress: ReplicateProgress) => void;
  readonly signal?: AbortSignal;
  /** The pass inside a cutover's downtime (ReplicaTarget.begin). @default false */
  readonly final?: boolean;
  /** Told once per block written (tests count them; the CLI shows them). */
  readonly onBlockSent?: (blockIndex: number, zero: boolean) => void;
}

export interface ReplicateResult {
  readonly manifest: BlockManifest;
  readonly location: string;
  readonly targetState: TargetState;
  /** Blocks written in this run (data and cleared). */
  readonly blocksSent: number;
  readonly blocksCleared: number;
  /** Bytes of block data written in this run (cleared blocks count zero). */
  readonly bytesSent: number;
  /** Blocks the journal showed as already written by an interrupted run. */
  readonly blocksResumed: number;
  /** Source bytes read to find the changes (a tracked pass reads only its changed ranges). */
  readonly bytesRead: number;
  /** How the changes were found: the source's change tracking, or a read of every allocated block. */
  readonly scan: "tracked" | "full";
  readonly resumed: boolean;
  readonly seconds: number;
  readonly passes: number;
  /** The manifest's digest: what Pulumi state keeps, next to the store reference. */
  readonly digest: string;
  readonly reference: string;
}

/** Source bytes per read: whole blocks, enough to keep a file or a cloud source busy. */
const READ_BYTES = 4 * 1024 * 1024;
/** Writes in flight when the target does not say. */
export const DEFAULT_REPLICA_CONCURRENCY = 8;
/** Marks a block whose content on the target is unknown: no real SHA-256 equals it in practice. */
const UNKNOWN_HASH = Buffer.alloc(32, 0xff);

export async function replicate(source: DiskSource, target: ReplicaTarget, options: ReplicateOptions): Promise<ReplicateResult> {
  const started = performance.now();
  const { store, key } = options;
  if (target.virtualSizeBytes !== source.virtualSizeBytes) {
    throw new InvalidArgsError("REPLICA_SIZE_MISMATCH", `replicate to ${target.name}: the target holds ${target.virtualSizeBytes} bytes, the source ${source.virtualSizeBytes}`, {
      context: { target: target.name, targetBytes: target.virtualSizeBytes, sourceBytes: source.virtualSizeBytes },
    });
  }
  const committed = await store.loadCommitted(key);
  const blockBytes = committed?.manifest.blockSizeBytes ?? options.blockSizeBytes ?? DEFAULT_MANIFEST_BLOCK_BYTES;
  const alignment = target.alignmentBytes ?? 512;
  if (blockBytes % alignment !== 0 || READ_BYTES % blockBytes !== 0) {
    throw new InvalidArgsError("REPLICA_BLOCK_SIZE", `replicate to ${target.name}: a ${blockBytes}-byte block must be a multiple of ${alignment} and divide ${READ_BYTES}`);
  }
  if (committed !== undefined && committed.manifest.virtualSizeBytes !== source.virtualSizeBytes) {
    throw new InvalidArgsError("REPLICA_SIZE_MISMATCH", `replicate ${key}: the replica holds ${committed.manifest.virtualSizeBytes} bytes, the source ${source.virtualSizeBytes}; resizing is not supported`);
  }
  const base = committed?.manifest ?? new BlockManifest(source.virtualSizeBytes, blockBytes);
  const baseDigest = base.digest();
  // `held` is what the target holds right now, updated as writes are acknowledged.
  const held = base.clone();

  let resumedPass: ReplicaPass | undefined;
  let blocksResumed = 0;
  const pending = await store.loadPending(key);
  if (pending !== undefined && pending.baseDigest === baseDigest) {
    resumedPass = await target.resume(committed, pending);
    if (resumedPass !== undefined) {
      for (const [index, { hash }] of pending.done) held.set(index, hash);
      for (const index of pending.unknown) held.set(index, UNKNOWN_HASH);
      if (pending.unknownAll === true) for (let index = 0; index < held.blockCount; index++) held.set(index, UNKNOWN_HASH);
      blocksResumed = pending.done.size;
    }
  }
  const resumed = resumedPass !== undefined;
  const pass = resumedPass ?? (await target.begin(committed, { final: options.final === true }));
  const journal = await store.openJournal(key);
  const inFlight = new Set<Promise<void>>();
  try {
    if (!resumed) journal.begin(baseDigest, pass.state);
    await journal.flush?.();
    const counters = { blocksSent: 0, blocksCleared: 0, bytesSent: 0 };
    let bytesRead = 0;
    const limit = target.plannedWrites === true ? 1 : Math.max(1, target.concurrency ?? DEFAULT_REPLICA_CONCURRENCY);
    let failure: unknown;

    const send = async (index: number, data: Buffer, hash: Buffer | undefined): Promise<void> => {
      while (inFlight.size >= limit) await Promise.race(inFlight);
      if (failure !== undefined) throw failure;
      options.signal?.throwIfAborted();
      const zero = hash === undefined;
      journal.send(index);
      const write = pass.write(index, index * blockBytes, data, zero).then(
        (receipt) => {
          journal.done(index, hash, receipt);
          held.set(index, hash);
          counters.blocksSent++;
          if (zero) counters.blocksCleared++;
          else counters.bytesSent += data.length;
          options.onBlockSent?.(index, zero);
        },
        (error: unknown) => {
          failure ??= error;
        },
      ).catch((error: unknown) => {
        failure ??= error; // the journal itself failed: stop, the pass resumes from what it holds
      });
      const tracked = write.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    };

    // A target that lays its file out first gets the list of blocks before any of their data.
    const planned: number[] | undefined = target.plannedWrites === true ? [] : undefined;
    const found = async (index: number, data: Buffer, hash: Buffer | undefined): Promise<void> => {
      if (planned === undefined) await send(index, data, hash);
      else planned.push(index);
    };

    const zeroBlock = Buffer.alloc(blockBytes);
    const blockLength = (index: number) => Math.min(blockBytes, source.virtualSizeBytes - index * blockBytes);
    // Blocks the target holds as data, in order: those the source no longer has must be cleared.
    const heldBlocks = held.dataBlocks();
    let heldCursor = 0;
    const clearHeldBefore = async (limitIndex: number) => {
      while (heldCursor < heldBlocks.length && heldBlocks[heldCursor]! < limitIndex) {
        const index = heldBlocks[heldCursor++]!;
        if (held.hash(index) !== undefined) await found(index, zeroBlock.subarray(0, blockLength(index)), undefined);
      }
    };
    const skipHeld = (index: number) => {
      while (heldCursor < heldBlocks.length && heldBlocks[heldCursor]! <= index) heldCursor++;
    };

    /**
     * Reads the planned blocks again, in runs, and sends them in order. What is sent is what is
     * read now (a block that changed since the scan goes as it is now), so the manifest records
     * what the target holds. Returns the bytes read.
     */
    const sendPlanned = async (blocks: readonly number[]): Promise<number> => {
      await pass.plan!(blocks, blockBytes);
      let read = 0;
      for (let i = 0; i < blocks.length && failure === undefined; ) {
        let j = i + 1;
        while (j < blocks.length && blocks[j] === blocks[j - 1]! + 1 && (j - i) * blockBytes < READ_BYTES) j++;
        const first = blocks[i]!;
        const start = first * blockBytes;
        const data = await source.read(start, Math.min((j - i) * blockBytes, source.virtualSizeBytes - start));
        read += data.length;
        for (let k = i; k < j; k++) {
          const piece = data.subarray((k - i) * blockBytes, Math.min(data.length, (k - i + 1) * blockBytes));
          await send(blocks[k]!, piece, blockHash(piece));
        }
        options.onProgress?.({ scannedBytes: source.virtualSizeBytes, virtualSizeBytes: source.virtualSizeBytes, ...counters });
        i = j;
      }
      return read;
    };

    // What the source's tracker says changed since the committed pass; undefined: scan all.
    const changed = committed?.changeToken !== undefined && source.changes !== undefined ? await source.changes.changedSince(committed.changeToken) : undefined;
    let nextBlock = 0;
    let scanned = 0;
    for await (const extent of changed ?? source.extents()) {
      if (failure !== undefined) break;
      const end = extent.offsetBytes + extent.lengthBytes;
      if ("kind" in extent && extent.kind === "zero") {
        scanned = end;
        continue;
      }
      let block = Math.max(nextBlock, Math.floor(extent.offsetBytes / blockBytes));
      while (block * blockBytes < end) {
        if (failure !== undefined) break;
        options.signal?.throwIfAborted();
        // A tracked pass knows every unchanged block is as the target holds it.
        if (changed === undefined) await clearHeldBefore(block);
        const start = block * blockBytes;
        const length = Math.min(READ_BYTES, source.virtualSizeBytes - start, Math.ceil((end - start) / blockBytes) * blockBytes);
        // A fresh buffer per read: its blocks may be in flight after the loop moves on.
        const data = await source.read(start, length);
        bytesRead += data.length;
        for (let at = 0; at < data.length; at += blockBytes, block++) {
          const piece = data.subarray(at, Math.min(data.length, at + blockBytes));
          const hash = blockHash(piece);
          const before = held.hash(block);
          skipHeld(block);
          if (hash === undefined ? before === undefined : before?.equals(hash) === true) continue;
          await found(block, piece, hash);
        }
        scanned = Math.min(source.virtualSizeBytes, block * blockBytes);
        options.onProgress?.({ scannedBytes: scanned, virtualSizeBytes: source.virtualSizeBytes, ...counters });
      }
      nextBlock = block;
    }
    if (failure === undefined && changed === undefined) await clearHeldBefore(Number.MAX_SAFE_INTEGER);
    if (planned !== undefined && failure === undefined) {
      try {
        bytesRead += await sendPlanned(planned);
        await Promise.all(inFlight);
        if (failure !== undefined) throw failure;
      } catch (error) {
        // A planned pass cannot be resumed (its file is laid out for this list): give it up, so
        // an upload cut off is closed and its partial file removed.
        await Promise.allSettled(inFlight);
        await pass.abort().catch(() => {});
        throw error;
      }
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    options.onProgress?.({ scannedBytes: source.virtualSizeBytes, virtualSizeBytes: source.virtualSizeBytes, ...counters });

    journal.sealing();
    const sealed = await pass.commit();
    const seconds = (performance.now() - started) / 1000;
    const passes = (committed?.passes ?? 0) + 1;
    const manifest = held;
    await store.commit(key, {
      manifest,
      location: sealed.location,
      targetState: sealed.state,
      ...(source.changes === undefined ? {} : { changeToken: source.changes.token }),
      passes,
      lastPass: { bytesSent: counters.bytesSent, scannedBytes: bytesRead, blocksSent: counters.blocksSent, seconds, finishedAt: new Date().toISOString(), scan: changed === undefined ? "full" : "tracked" },
    });
    source.changes?.committed();
    return {
      manifest,
      location: sealed.location,
      targetState: sealed.state,
      ...counters,
      blocksResumed,
      bytesRead,
      scan: changed === undefined ? "full" : "tracked",
      resumed,
      seconds,
      passes,
      digest: manifest.digest(),
      reference: store.reference(key),
    };
  } finally {
    // On an early exit (a failure, an abort) writes may still be in flight: let them land and be
    // journalled before the journal closes, so the rerun knows about them.
    await Promise.allSettled(inFlight);
    journal.close();
  }
}
