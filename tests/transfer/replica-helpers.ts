// Source images for replication tests: a sparse raw file with pseudo-random data in chosen
// 512 KiB blocks, and in-place changes to some of its blocks.
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";

export const BLOCK = 512 * 1024;
export const MiB = 1024 * 1024;

/** Deterministic bytes for (seed, block): every block differs from every other. */
export function blockBytes(seed: string, index: number, length = BLOCK): Buffer {
  const out = Buffer.alloc(length);
  let counter = 0;
  for (let at = 0; at < length; at += 32) createHash("sha256").update(`${seed}/${index}/${counter++}`).digest().copy(out, at);
  return out;
}

export async function writeBlocks(path: string, sizeBytes: number | undefined, blocks: Iterable<number>, seed: string): Promise<void> {
  const handle = await open(path, sizeBytes === undefined ? "r+" : "w");
  try {
    if (sizeBytes !== undefined) await handle.truncate(sizeBytes);
    for (const index of blocks) await handle.write(blockBytes(seed, index), 0, BLOCK, index * BLOCK);
  } finally {
    await handle.close();
  }
}

export async function zeroBlocks(path: string, blocks: Iterable<number>): Promise<void> {
  const handle = await open(path, "r+");
  try {
    for (const index of blocks) await handle.write(Buffer.alloc(BLOCK), 0, BLOCK, index * BLOCK);
  } finally {
    await handle.close();
  }
}

/** `count` distinct indexes in [0, limit), spread deterministically. */
export function spread(count: number, limit: number, salt = 0): number[] {
  const chosen = new Set<number>();
  for (let i = 0; chosen.size < count; i++) chosen.add(createHash("sha256").update(`${salt}:${i}`).digest().readUInt32BE(0) % limit);
  return [...chosen].sort((a, b) => a - b);
}
