// The EBS direct-API block: its size, checksums and index arithmetic, shared by the sink and the
// source. Ref: EBS direct APIs, "Key concepts" — a snapshot is a sequence of 512 KiB blocks, each
// written with a SHA-256 checksum (base64), and CompleteSnapshot may carry a LINEAR aggregate.
import { createHash, hash } from "node:crypto";
import { CloudError, InvalidArgsError } from "../../errors.ts";

/**
 * 512 KiB: the only block size the EBS direct APIs use. We never read it from the service:
 * moto reports `BlockSize: 512`, and a real snapshot always uses this value.
 */
export const EBS_BLOCK_BYTES = 512 * 1024;
export const GiB = 1024 * 1024 * 1024;
/** StartSnapshot's VolumeSize is in whole GiB; the EBS direct APIs accept up to 64 TiB. */
export const EBS_MAX_VOLUME_GIB = 65_536;

const ZERO_BLOCK = Buffer.alloc(EBS_BLOCK_BYTES);

/** True when every byte of `data` (at most one block) is zero. A memcmp against a zero block. */
export function isZeroBlock(data: Buffer): boolean {
  return data.equals(ZERO_BLOCK.subarray(0, data.length));
}

/** A fresh block of zeros (the sink sends one only to clear a parent's block). */
export function zeroBlock(): Buffer {
  return Buffer.alloc(EBS_BLOCK_BYTES);
}

export function sha256(data: Buffer): Buffer {
  return hash("sha256", data, "buffer");
}

/** SHA-256 of a block of zeros, the checksum of every block an incremental child clears. */
export const ZERO_BLOCK_SHA256 = sha256(ZERO_BLOCK);

/**
 * ChecksumAggregationMethod LINEAR: the SHA-256 of the per-block SHA-256 digests, concatenated
 * in ascending block index, base64. Ref: EBS direct APIs, "Checksums" / CompleteSnapshot.
 */
export function linearAggregateChecksum(checksums: ReadonlyMap<number, Buffer>): string {
  const hash = createHash("sha256");
  for (const index of [...checksums.keys()].sort((a, b) => a - b)) hash.update(checksums.get(index)!);
  return hash.digest("base64");
}

/** Whole GiB that hold `virtualSizeBytes` (StartSnapshot's VolumeSize rounds up). */
export function volumeSizeGiB(virtualSizeBytes: number): number {
  if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes <= 0) {
    throw new InvalidArgsError("EBS_INVALID_SIZE", `ebs: virtual size must be a positive whole number of bytes, got ${virtualSizeBytes}`);
  }
  const gib = Math.ceil(virtualSizeBytes / GiB);
  if (gib > EBS_MAX_VOLUME_GIB) {
    throw new InvalidArgsError("EBS_VOLUME_TOO_LARGE", `ebs: ${gib} GiB exceeds the ${EBS_MAX_VOLUME_GIB} GiB the EBS direct APIs accept`, {
      context: { virtualSizeBytes, volumeSizeGiB: gib },
    });
  }
  return gib;
}

/**
 * A block index from a listing. The API models it as an integer; moto sends a string ("3").
 * Accept both, and reject anything that is not a whole index inside the volume.
 */
export function parseBlockIndex(value: unknown, blockCount: number, operation: string, snapshotId: string): number {
  const index = typeof value === "number" ? value : typeof value === "string" && /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(index) || index < 0 || index >= blockCount) {
    throw new CloudError("EBS_BAD_BLOCK_INDEX", `${operation} ${snapshotId}: block index ${JSON.stringify(value)} is not inside the ${blockCount}-block volume`, {
      context: { operation, snapshotId, blockCount },
    });
  }
  return index;
}
