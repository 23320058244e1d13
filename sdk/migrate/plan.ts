// The migration plan: what will move and how long the machine will be down, computed before
// anything moves. It is the data `pulumi preview` shows and `portable plan` prints.
//
// Bytes to move per disk are exact: a new replica moves the source's allocated blocks; an
// existing one moves the blocks whose hash differs from the replica's manifest (one read of the
// source). A disk whose source tracks its changes (DiskSource.changes) is planned from the
// tracker's count instead, and nothing of it is read: its final pass reads only the changed
// ranges, and the final delta comes from the measured rate of change, not a fixed share.
// Times come from measurements: the source's hashing rate is sampled now (else the last
// passes'), the send rate is the last pass's if there was one, else the caller's figure.
import type { DiskSource } from "../disk/types.ts";
import { blockHash, DEFAULT_MANIFEST_BLOCK_BYTES } from "../disk/manifest.ts";
import type { CommittedReplica, PassFigures } from "../contracts/replica-target.ts";
import { formatBytes } from "../units.ts";

export interface DiskPlanInput {
  readonly key: string;
  /** Read and hashed to find what differs; absent when `tracked` answers (nothing is read). */
  readonly source?: DiskSource;
  readonly committed?: CommittedReplica;
  readonly conversion?: string;
  /**
   * The source's change tracker on the committed replica: bytes changed since its last pass,
   * and the seconds over which they changed (the rate of change).
   */
  readonly tracked?: { readonly changedBytes: number; readonly overSeconds: number };
  /**
   * What moves, already known without reading (the source's own replica manifest against the
   * target's): the disk is not read, and its final pass still scans it (no tracker).
   */
  readonly known?: { readonly bytesToMove: number; readonly blocksToMove: number; readonly allocatedBytes: number; readonly virtualSizeBytes: number };
}

export interface PlanOptions {
  readonly mode: "cold" | "warm";
  /** Target write rate when no pass has been measured yet. @default 100 MiB/s */
  readonly defaultSendBytesPerSecond?: number;
  /** Seconds to stop the source (graceful shutdown). @default 10 */
  readonly stopSeconds?: number;
  /** Seconds from starting the target to a passing health check. @default 30 */
  readonly bootSeconds?: number;
  /**
   * Warm: the final delta expected at cutover (what the warm loop converges to). @default from
   * the rate of change of tracked disks; else 1% of the allocated bytes
   */
  readonly finalDeltaBytes?: number;
  /** Verification reads this share of the data after the final pass. @default 1 (full) */
  readonly verifyFraction?: number;
  /** Sampled verification: blocks read back per disk (overrides verifyFraction). */
  readonly verifyBlocks?: number;
  /** The warm loop: passes at most, and the delta that ends it (migrate.ts). @default 3, 64 MiB */
  readonly maxPasses?: number;
  readonly deltaThresholdBytes?: number;
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
  /** The final pass reads only what the source's tracker says changed (else it scans everything). */
  readonly tracked: boolean;
  /** Where the figures come from: a scan of the source, its tracker's count, or two manifests. */
  readonly from: "scan" | "tracker" | "manifests";
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
  /** The final delta the estimate assumes, and where it comes from. */
  readonly finalDeltaBytes: number;
  readonly finalDeltaFrom: "tracker" | "share" | "caller" | "cold";
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

/** A disk's pass over a full scan: every allocated block read and hashed against the manifest. */
async function scanDisk(source: DiskSource, committed: CommittedReplica | undefined, sample: { bytes: number; seconds: number; limit: number }): Promise<{ allocatedBytes: number; bytesToMove: number; blocksToMove: number }> {
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
      if (sample.bytes < sample.limit) {
        sample.bytes += length;
        sample.seconds += (performance.now() - before) / 1000;
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
  return { allocatedBytes, bytesToMove, blocksToMove };
}

/** What one pass costs besides reading and sending its bytes (freeze, snapshot, commit), from a tracked pass. */
function passOverhead(passes: readonly PassFigures[], scanRate: number, sendRate: number): number {
  const tracked = passes.filter((p) => p.scan === "tracked");
  if (tracked.length === 0) return DEFAULT_PASS_OVERHEAD_SECONDS;
  const overheads = tracked.map((p) => Math.max(0, p.seconds - (p.scannedBytes ?? 0) / scanRate - p.bytesSent / sendRate));
  return overheads.reduce((a, b) => a + b, 0) / overheads.length;
}

/** A pass's own cost when none was measured: a freeze, a target commit. */
const DEFAULT_PASS_OVERHEAD_SECONDS = 0.5;

export async function planMigration(disks: readonly DiskPlanInput[], options: PlanOptions): Promise<MigrationPlan> {
  const sample = { bytes: 0, seconds: 0, limit: options.sampleBytes ?? 64 * MiB };
  const out: DiskPlan[] = [];
  const lastPasses: PassFigures[] = [];
  let changedBytes = 0;
  let changeSeconds = 0;
  for (const disk of disks) {
    const { source, committed, tracked } = disk;
    if (committed?.lastPass !== undefined && committed.lastPass.bytesSent > 0) lastPasses.push(committed.lastPass);
    if (tracked !== undefined && committed !== undefined) {
      // The tracker's count, never a read: the blocks the replica holds are the allocated ones.
      const blockBytes = committed.manifest.blockSizeBytes;
      changedBytes += tracked.changedBytes;
      changeSeconds = Math.max(changeSeconds, tracked.overSeconds);
      out.push({
        key: disk.key,
        conversion: disk.conversion ?? "tracked",
        virtualSizeBytes: committed.manifest.virtualSizeBytes,
        allocatedBytes: committed.manifest.dataBlocks().length * blockBytes,
        bytesToMove: tracked.changedBytes,
        blocksToMove: Math.ceil(tracked.changedBytes / blockBytes),
        replicaExists: true,
        tracked: true,
        from: "tracker",
      });
      continue;
    }
    if (disk.known !== undefined) {
      out.push({ key: disk.key, conversion: disk.conversion ?? "replica", ...disk.known, replicaExists: committed !== undefined, tracked: false, from: "manifests" });
      continue;
    }
    if (source === undefined) throw new TypeError(`plan ${disk.key}: a disk needs its source or its tracker's count`);
    const scanned = await scanDisk(source, committed, sample);
    out.push({
      key: disk.key,
      conversion: disk.conversion ?? `${source.format}${source.subformat === undefined ? "" : `(${source.subformat})`}`,
      virtualSizeBytes: source.virtualSizeBytes,
      ...scanned,
      replicaExists: committed !== undefined,
      tracked: false,
      from: "scan",
    });
  }
  const allocated = out.reduce((sum, d) => sum + d.allocatedBytes, 0);
  const scannedAllocated = out.filter((d) => !d.tracked).reduce((sum, d) => sum + d.allocatedBytes, 0);
  const total = out.reduce((sum, d) => sum + d.bytesToMove, 0);
  // Without a sample (every disk tracked), the last passes' read rate is a floor for it.
  const pastRead = lastPasses.filter((p) => (p.scannedBytes ?? 0) > 0 && p.seconds > 0);
  const scanRate = sample.seconds > 0 ? sample.bytes / sample.seconds : pastRead.length > 0 ? pastRead.reduce((s, p) => s + p.scannedBytes!, 0) / pastRead.reduce((s, p) => s + p.seconds, 0) : 1024 * MiB;
  const sendRate = measuredSendRate(lastPasses, scanRate) ?? options.defaultSendBytesPerSecond ?? 100 * MiB;
  const stop = options.stopSeconds ?? 10;
  const boot = options.bootSeconds ?? 30;
  const anyTracked = out.some((d) => d.tracked);
  const overhead = anyTracked ? passOverhead(lastPasses, scanRate, sendRate) : 0;
  // A tracked pass reads and sends only its delta; a full scan reads every allocated block.
  const passSeconds = (delta: number) => overhead + (anyTracked ? delta / scanRate : 0) + delta / sendRate;
  let finalDelta: number;
  let finalDeltaFrom: MigrationPlan["finalDeltaFrom"];
  const rate = changeSeconds > 0 ? changedBytes / changeSeconds : 0;
  if (options.mode === "cold") {
    // Everything not yet sent, plus what the guest writes until it is down.
    finalDelta = total + rate * stop;
    finalDeltaFrom = "cold";
  } else if (options.finalDeltaBytes !== undefined) {
    finalDelta = options.finalDeltaBytes;
    finalDeltaFrom = "caller";
  } else if (anyTracked) {
    // The warm loop as migrate.ts runs it: the backlog, then passes of what changed during the
    // last one, until one sends at most the threshold; the final pass gets what the last warm
    // pass and the stop left.
    const threshold = options.deltaThresholdBytes ?? 64 * MiB;
    let seconds = passSeconds(total);
    for (let pass = 2; pass <= Math.max(1, options.maxPasses ?? 3); pass++) {
      const delta = rate * seconds;
      seconds = passSeconds(delta);
      if (delta <= threshold) break;
    }
    finalDelta = rate * (seconds + stop);
    finalDeltaFrom = "tracker";
  } else {
    finalDelta = Math.min(total, allocated * 0.01);
    finalDeltaFrom = "share";
  }
  const scan = scannedAllocated / scanRate + (anyTracked ? overhead + finalDelta / scanRate : 0);
  // Verification reads the target back: per block as the last passes' verifications measured
  // (opening the read-back included), else at no more than the rate we read or write.
  const blockBytes = disks[0]?.committed?.manifest.blockSizeBytes ?? DEFAULT_MANIFEST_BLOCK_BYTES;
  const verified = lastPasses.map((p) => p.verify).filter((v) => v !== undefined && v.blocksChecked > 0);
  const secondsPerBlock = verified.length > 0 ? verified.reduce((s, v) => s + v!.seconds, 0) / verified.reduce((s, v) => s + v!.blocksChecked, 0) : blockBytes / Math.min(scanRate, sendRate);
  // A sample checks its data blocks and a quarter as many zero ones (transfer/verify.ts).
  const verifyBlocks = options.verifyBlocks !== undefined
    ? out.reduce((s, d) => s + Math.min(Math.ceil(d.virtualSizeBytes / blockBytes), Math.ceil(options.verifyBlocks! * 1.25)), 0)
    : (allocated * (options.verifyFraction ?? 1)) / blockBytes;
  const verify = verifyBlocks * secondsPerBlock;
  const send = finalDelta / sendRate;
  const fixups = options.fixupSeconds ?? 0;
  return {
    mode: options.mode,
    disks: out,
    totalBytesToMove: total,
    allocatedBytes: allocated,
    scanBytesPerSecond: scanRate,
    sendBytesPerSecond: sendRate,
    transferSeconds: scannedAllocated / scanRate + (anyTracked ? total / scanRate : 0) + total / sendRate,
    downtimeSeconds: stop + fixups + scan + send + verify + boot,
    downtimeBreakdown: { stop, fixups, scan, send, verify, boot },
    finalDeltaBytes: finalDelta,
    finalDeltaFrom,
  };
}

/** One paragraph for logs, previews and PR comments. */
export function describePlan(plan: MigrationPlan): string {
  const lines = plan.disks.map((d) => `  ${d.key}: ${d.conversion}, ${d.tracked ? "up to " : ""}${formatBytes(d.bytesToMove)} to move of ${formatBytes(d.allocatedBytes)} allocated${d.tracked ? " (change tracking: the final pass reads only what changed)" : d.replicaExists ? ` (incremental${d.from === "manifests" ? ", from the replicas' manifests" : ""}; no change tracking: every pass, the final one too, scans the whole disk)` : ""}`);
  const delta = plan.finalDeltaFrom === "tracker" ? `, final delta ${formatBytes(plan.finalDeltaBytes)} from the measured rate of change` : "";
  return [
    `${plan.mode} migration: ${plan.disks.length} disk(s), ${formatBytes(plan.totalBytesToMove)} to move, about ${plan.transferSeconds.toFixed(1)} s of transfer`,
    ...lines,
    `  estimated downtime ${plan.downtimeSeconds.toFixed(1)} s (stop ${plan.downtimeBreakdown.stop.toFixed(1)}, ${plan.downtimeBreakdown.fixups > 0 ? `fixups ${plan.downtimeBreakdown.fixups.toFixed(1)}, ` : ""}scan ${plan.downtimeBreakdown.scan.toFixed(1)}, send ${plan.downtimeBreakdown.send.toFixed(1)}, verify ${plan.downtimeBreakdown.verify.toFixed(1)}, boot ${plan.downtimeBreakdown.boot.toFixed(1)}${delta})`,
  ].join("\n");
}

