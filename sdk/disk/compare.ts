// Compares the guest-visible bytes of two disks, as `qemu-img compare` does: a size difference
// is only a difference if the larger disk holds non-zero bytes past the smaller one's end.
import type { DiskSource, Extent } from "./types.ts";

/** Compare unit: large enough for memcmp to dominate, small enough to pinpoint differences. */
const COMPARE_CHUNK_BYTES = 1024 * 1024;

export interface CompareResult {
  readonly identical: boolean;
  /** First byte offset where the disks differ. */
  readonly firstDifferenceOffsetBytes?: number;
  readonly comparedBytes: number;
}

/** Both sources' extents merged: a range is "zero" only when both sides know it is. */
async function* bothZeroRanges(a: DiskSource, b: DiskSource, end: number): AsyncGenerator<Extent> {
  const ia = a.extents()[Symbol.asyncIterator]();
  const ib = b.extents()[Symbol.asyncIterator]();
  let ea = (await ia.next()).value as Extent | undefined;
  let eb = (await ib.next()).value as Extent | undefined;
  let at = 0;
  while (at < end && ea !== undefined && eb !== undefined) {
    const aEnd = ea.offsetBytes + ea.lengthBytes;
    const bEnd = eb.offsetBytes + eb.lengthBytes;
    const next = Math.min(aEnd, bEnd, end);
    yield { offsetBytes: at, lengthBytes: next - at, kind: ea.kind === "zero" && eb.kind === "zero" ? "zero" : "data" };
    at = next;
    if (aEnd <= at) ea = (await ia.next()).value as Extent | undefined;
    if (bEnd <= at) eb = (await ib.next()).value as Extent | undefined;
  }
  await ia.return?.();
  await ib.return?.();
}

function firstDifference(x: Buffer, y: Buffer): number {
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

async function firstNonZero(source: DiskSource, from: number): Promise<number | undefined> {
  for await (const extent of source.extents()) {
    const end = extent.offsetBytes + extent.lengthBytes;
    if (extent.kind === "zero" || end <= from) continue;
    for (let at = Math.max(from, extent.offsetBytes); at < end; at += COMPARE_CHUNK_BYTES) {
      const data = await source.read(at, Math.min(COMPARE_CHUNK_BYTES, end - at));
      const index = data.findIndex((byte) => byte !== 0);
      if (index >= 0) return at + index;
    }
  }
  return undefined;
}

export async function compareDisks(a: DiskSource, b: DiskSource): Promise<CompareResult> {
  const common = Math.min(a.virtualSizeBytes, b.virtualSizeBytes);
  let comparedBytes = 0;
  for await (const range of bothZeroRanges(a, b, common)) {
    if (range.kind === "zero") continue;
    const end = range.offsetBytes + range.lengthBytes;
    for (let at = range.offsetBytes; at < end; at += COMPARE_CHUNK_BYTES) {
      const length = Math.min(COMPARE_CHUNK_BYTES, end - at);
      const [x, y] = await Promise.all([a.read(at, length), b.read(at, length)]);
      comparedBytes += length;
      if (!x.equals(y)) return { identical: false, firstDifferenceOffsetBytes: at + firstDifference(x, y), comparedBytes };
    }
  }
  const larger = a.virtualSizeBytes > b.virtualSizeBytes ? a : b;
  const extra = larger.virtualSizeBytes > common ? await firstNonZero(larger, common) : undefined;
  return extra === undefined
    ? { identical: true, comparedBytes }
    : { identical: false, firstDifferenceOffsetBytes: extra, comparedBytes };
}
