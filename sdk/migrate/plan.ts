// The migration plan: what will move and how long the machine will be down, computed before
// anything moves. It is the data `pulumi preview` shows and `portable plan` prints.
//
// Bytes to move per disk are exact: a new replica moves the source's allocated blocks; an
// existing one moves the blocks whose hash differs from the replica's manifest (one read of the
// source). Times come from measurements: the source's hashing rate is sampled now, the send
// rate is the last pass's if there was one, else the caller's figure for that target.
import type { DiskSource } from "../disk/types.ts";
import { blockHash, DEFAULT_MANIFEST_BLOCK_BYTES } from "../disk/manifest.ts";
import type { CommittedReplica, PassFigures } from "../contracts/replica-target.ts";
import { formatBytes } from "../units.ts";

export interface DiskPlanInput {
  readonly key: string;
  readonly source: DiskSource;
  readonly committed?: CommittedReplica;
  readonly conversion?: string;
}

export interface PlanOptions {
  readonly mode: "cold" | "warm";
  /** Target write rate when no pass has been measured yet. @default 100 MiB/s */
  readonly defaultSendBytesPerSecond?: number;
  /** Seconds to stop the source (graceful shutdown). @default 10 */
  readonly stopSeconds?: number;
  /** Seconds from starting the target to a passing health check. @default 30 */
  readonly bootSeconds?: number;
  /** Warm: the final delta expected at cutover (what the warm loop converges to). @default 1% of the allocated bytes */
  readonly finalDeltaBytes?: number;
  /** Verification reads this share of the data after the final pass. @default 1 (full) */
  readonly verifyFraction?: number;
  /** Bytes read to measure the source's hashing rate. @default 64 MiB */
  readonly sampleBytes?: number;
  /** Guest fixups applied to the final state while the source is down. @default 0 */
  readonly fixupSeconds?: number;
}

export interface DiskPlan {
  readonly key: string;
  readonly conversion: string;
  readonly virtualSizeBytes: number;
  readonly allocatedBytes: number;
  /** Bytes the next pass sends. */
  readonly bytesToMove: number;
  readonly blocksToMove: number;
  readonly replicaExists: boolean;
}

export interface MigrationPlan {
  readonly mode: "cold" | "warm";
  readonly disks: readonly DiskPlan[];
  readonly totalBytesToMove: number;
  readonly allocatedBytes: number;
  /** Measured while planning: hashing rate of the sources (bytes/s). */
  readonly scanBytesPerSecond: number;
  readonly sendBytesPerSecond: number;
  /** Time for the next full pass (warm: while the source runs). */
  readonly transferSeconds: number;
  /** Expected downtime: stop + guest fixups + final pass (scan and delta) + verify + boot. */
  readonly downtimeSeconds: number;
  readonly downtimeBreakdown: Readonly<Record<"stop" | "fixups" | "scan" | "send" | "verify" | "boot", number>>;
}

const MiB = 1024 * 1024;
const READ_BYTES = 4 * MiB;

/**
 * A pass's time is its scan (hashing every allocated block) plus its sends. The send rate is
 * what is left after the scan, when that is a meaningful share of the pass; a small delta whose
 * sends hid under the scan says nothing about the target's rate.
 */
function measuredSendRate(passes: readonly PassFigures[], scanRate: number): number | undefined {
  let bytes = 0;
  let seconds = 0;
  for (const pass of passes) {
    const sendSeconds = pass.seconds - (pass.scannedBytes ?? 0) / scanRate;
    if (sendSeconds < pass.seconds * 0.25) continue;
    bytes += pass.bytesSent;
    seconds += sendSeconds;
  }
  return seconds > 0 ? bytes / seconds : undefined;
}

export async function planMigration(disks: readonly DiskPlanInput[], options: PlanOptions): Promise<MigrationPlan> {
  const sampleBytes = options.sampleBytes ?? 64 * MiB;
  const out: DiskPlan[] = [];
  let sampledBytes = 0;
  let sampledSeconds = 0;
  const lastPasses: PassFigures[] = [];
  for (const disk of disks) {
    const { source, committed } = disk;
    const blockBytes = committed?.manifest.blockSizeBytes ?? DEFAULT_MANIFEST_BLOCK_BYTES;
    let allocatedBytes = 0;
    let bytesToMove = 0;
    let blocksToMove = 0;
    const visited = new Set<number>();
    let nextBlock = 0;
    for await (const extent of source.extents()) {
      if (extent.kind === "zero") continue;
      allocatedBytes += extent.lengthBytes;
      const end = extent.offsetBytes + extent.lengthBytes;
      let block = Math.max(nextBlock, Math.floor(extent.offsetBytes / blockBytes));
      // Reads as replicate() does (4 MiB, whole blocks), so the measured rate is the pass's.
      while (block * blockBytes < end) {
        const start = block * blockBytes;
        const length = Math.min(READ_BYTES, source.virtualSizeBytes - start, Math.ceil((end - start) / blockBytes) * blockBytes);
        const before = performance.now();
        const data = await source.read(start, length);
        const hashes: Array<Buffer | undefined> = [];
        for (let at = 0; at < data.length; at += blockBytes) hashes.push(blockHash(data.subarray(at, Math.min(data.length, at + blockBytes))));
        if (sampledBytes < sampleBytes) {
          sampledBytes += length;
          sampledSeconds += (performance.now() - before) / 1000;
        }
        for (const [i, hash] of hashes.entries()) {
          const index = block + i;
          visited.add(index);
          const held = committed?.manifest.hash(index);
          if (hash === undefined ? held !== undefined : held?.equals(hash) !== true) {
            blocksToMove++;
            if (hash !== undefined) bytesToMove += Math.min(blockBytes, source.virtualSizeBytes - index * blockBytes);
          }
        }
        block += hashes.length;
      }
      nextBlock = block;
    }
    // Blocks the replica holds that the source no longer has: cleared, no bytes.
    for (const block of committed?.manifest.dataBlocks() ?? []) if (!visited.has(block)) blocksToMove++;
    if (committed?.lastPass !== undefined && committed.lastPass.bytesSent > 0) lastPasses.push(committed.lastPass);
    out.push({
      key: disk.key,
      conversion: disk.conversion ?? `${source.format}${source.subformat === undefined ? "" : `(${source.subformat})`}`,
      virtualSizeBytes: source.virtualSizeBytes,
      allocatedBytes,
      bytesToMove,
      blocksToMove,
      replicaExists: committed !== undefined,
    });
  }
  const allocated = out.reduce((sum, d) => sum + d.allocatedBytes, 0);
  const total = out.reduce((sum, d) => sum + d.bytesToMove, 0);
  const scanRate = sampledSeconds > 0 ? sampledBytes / sampledSeconds : 1024 * MiB;
  const sendRate = measuredSendRate(lastPasses, scanRate) ?? options.defaultSendBytesPerSecond ?? 100 * MiB;
  const stop = options.stopSeconds ?? 10;
  const boot = options.bootSeconds ?? 30;
  const scan = allocated / scanRate;
  const verify = (allocated * (options.verifyFraction ?? 1)) / scanRate;
  // Warm: what the loop converges to.
  const finalDelta = options.mode === "cold" ? total : (options.finalDeltaBytes ?? Math.min(total, allocated * 0.01));
  const send = finalDelta / sendRate;
  const fixups = options.fixupSeconds ?? 0;
  return {
    mode: options.mode,
    disks: out,
    totalBytesToMove: total,
    allocatedBytes: allocated,
    scanBytesPerSecond: scanRate,
    sendBytesPerSecond: sendRate,
    transferSeconds: scan + total / sendRate,
    downtimeSeconds: stop + fixups + scan + send + verify + boot,
    downtimeBreakdown: { stop, fixups, scan, send, verify, boot },
  };
}

/** One paragraph for logs, previews and PR comments. */
export function describePlan(plan: MigrationPlan): string {
  const lines = plan.disks.map((d) => `  ${d.key}: ${d.conversion}, ${formatBytes(d.bytesToMove)} to move of ${formatBytes(d.allocatedBytes)} allocated${d.replicaExists ? " (incremental)" : ""}`);
  return [
    `${plan.mode} migration: ${plan.disks.length} disk(s), ${formatBytes(plan.totalBytesToMove)} to move, about ${plan.transferSeconds.toFixed(1)} s of transfer`,
    ...lines,
    `  estimated downtime ${plan.downtimeSeconds.toFixed(1)} s (stop ${plan.downtimeBreakdown.stop.toFixed(1)}, ${plan.downtimeBreakdown.fixups > 0 ? `fixups ${plan.downtimeBreakdown.fixups.toFixed(1)}, ` : ""}scan ${plan.downtimeBreakdown.scan.toFixed(1)}, send ${plan.downtimeBreakdown.send.toFixed(1)}, verify ${plan.downtimeBreakdown.verify.toFixed(1)}, boot ${plan.downtimeBreakdown.boot.toFixed(1)})`,
  ].join("\n");
}

