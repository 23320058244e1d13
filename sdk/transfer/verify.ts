// Read-back verification: hash what the target holds and compare it with the manifest of what
// was sent. Full (every block) or sampled (a seeded random choice of data and zero blocks), by
// policy; sampling trades certainty for time on a cutover's critical path.
import { createHash } from "node:crypto";
import { InvalidArgsError } from "../errors.ts";
import type { DiskSource } from "../disk/types.ts";
import { blockHash, type BlockManifest } from "../disk/manifest.ts";

export type VerifyPolicy =
  | { readonly mode: "full" }
  /** `blocks` data blocks (and a quarter as many zero blocks) chosen from `seed`. */
  | { readonly mode: "sampled"; readonly blocks: number; readonly seed?: string }
  | { readonly mode: "none" };

/** Blocks a sampled verification reads back per disk, by default (the policy's "sampled"). */
export const SAMPLED_VERIFY_BLOCKS = 64;

/** The policy's word (`full`, `sampled`, `none`) as a VerifyPolicy. */
export function verifyPolicyOf(verify: "full" | "sampled" | "none"): VerifyPolicy {
  return verify === "full" ? { mode: "full" } : verify === "none" ? { mode: "none" } : { mode: "sampled", blocks: SAMPLED_VERIFY_BLOCKS };
}

export interface VerifyResult {
  readonly mode: VerifyPolicy["mode"];
  readonly blocksChecked: number;
  readonly bytesRead: number;
  /** Indexes whose content differs from the manifest, ascending (at most 100 listed). */
  readonly mismatches: readonly number[];
  readonly ok: boolean;
  readonly seconds: number;
}

const MAX_LISTED = 100;
/** Blocks read back at once. */
const VERIFY_READS_IN_FLIGHT = 8;

export async function verifyReplica(target: DiskSource, manifest: BlockManifest, policy: VerifyPolicy = { mode: "full" }, signal?: AbortSignal): Promise<VerifyResult> {
  const started = performance.now();
  if (target.virtualSizeBytes < manifest.virtualSizeBytes) {
    throw new InvalidArgsError("VERIFY_SIZE_MISMATCH", `verify: the target holds ${target.virtualSizeBytes} bytes, the manifest describes ${manifest.virtualSizeBytes}`);
  }
  const blocks = policy.mode === "full" ? range(manifest.blockCount) : policy.mode === "sampled" ? sample(manifest, policy.blocks, policy.seed ?? "portable") : [];
  const mismatches: number[] = [];
  let bytesRead = 0;
  let mismatchCount = 0;
  const bs = manifest.blockSizeBytes;
  const isFull = policy.mode === "full";
  // A full check reads runs of blocks at once; a zero extent of the target is checked for free.
  const zeroRanges = isFull ? await zeroExtents(target, manifest.virtualSizeBytes) : [];
  let zi = 0;
  const check = async (index: number): Promise<void> => {
    const start = index * bs;
    const length = Math.min(bs, manifest.virtualSizeBytes - start);
    while (zi < zeroRanges.length && zeroRanges[zi]![1] <= start) zi++;
    const inZero = zi < zeroRanges.length && zeroRanges[zi]![0] <= start && zeroRanges[zi]![1] >= start + length;
    let actual: Buffer | undefined;
    if (!inZero) {
      const data = await target.read(start, length);
      bytesRead += length;
      actual = blockHash(data);
    }
    const expected = manifest.hash(index);
    if (actual === undefined ? expected !== undefined : expected?.equals(actual) !== true) {
      mismatchCount++;
      // Batches come in ascending order: the first MAX_LISTED sorted are among these.
      if (mismatches.length < MAX_LISTED + VERIFY_READS_IN_FLIGHT) mismatches.push(index);
    }
  };
  // A few reads in flight: a remote target (EBS, a blob, a datastore) answers each with a round
  // trip, and a cutover waits for this. Blocks go in ascending order, so the zero ranges advance.
  for (let i = 0; i < blocks.length; i += VERIFY_READS_IN_FLIGHT) {
    signal?.throwIfAborted();
    await Promise.all(blocks.slice(i, i + VERIFY_READS_IN_FLIGHT).map(check));
  }
  mismatches.sort((a, b) => a - b);
  mismatches.splice(MAX_LISTED);
  return { mode: policy.mode, blocksChecked: blocks.length, bytesRead, mismatches, ok: mismatchCount === 0, seconds: (performance.now() - started) / 1000 };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

async function zeroExtents(source: DiskSource, limit: number): Promise<Array<[number, number]>> {
  const out: Array<[number, number]> = [];
  for await (const extent of source.extents()) {
    if (extent.offsetBytes >= limit) break;
    if (extent.kind === "zero") out.push([extent.offsetBytes, extent.offsetBytes + extent.lengthBytes]);
  }
  return out;
}

/** Deterministic for a seed: the same blocks are checked on every run with that seed. */
function sample(manifest: BlockManifest, count: number, seed: string): number[] {
  const data = manifest.dataBlocks();
  const dataSet = new Set(data);
  const chosen = new Set<number>();
  let counter = 0;
  const next = () => createHash("sha256").update(`${seed}:${counter++}`).digest().readUIntBE(0, 6);
  const wantData = Math.min(count, data.length);
  while (chosen.size < wantData) chosen.add(data[next() % data.length]!);
  const zeroCount = manifest.blockCount - data.length;
  const wantZero = Math.min(Math.ceil(count / 4), zeroCount);
  for (let found = 0, tries = 0; found < wantZero && tries < wantZero * 64; tries++) {
    const index = next() % manifest.blockCount;
    if (!dataSet.has(index) && !chosen.has(index)) {
      chosen.add(index);
      found++;
    }
  }
  return [...chosen].sort((a, b) => a - b);
}
