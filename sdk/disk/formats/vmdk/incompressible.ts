// Spotting grains that deflate cannot shrink (encrypted or already-compressed guest data, random
// fill), so they are stored (deflate level 0) instead of searched for matches at level 6.
//
// Level 6 on such a grain costs about 1 ms per 64 KiB here and gains nothing: its output is a few
// bytes larger than level 0's. On the bench image that is 7× the cost of a text grain and most of
// the compression time. The output stays a valid zlib stream and is never larger than level 6
// would make it for these grains, so this is not a weaker compression level in disguise.
//
// The test is the order-0 byte entropy of 16 strided 256-byte samples: 8 bits/byte means nothing
// for Huffman coding to win, and LZ77 matches are then rare too. Random data measures about 7.95 on
// 4 KiB samples; text 4–5; x86 code and file-system metadata well under 7.

/** Bytes sampled per grain: 16 × 256 spread across it. */
const SAMPLES = 16;
const SAMPLE_BYTES = 256;
/** Above this many bits per byte a grain is stored. 7.8 leaves room for sampling noise. */
export const INCOMPRESSIBLE_ENTROPY_BITS = 7.8;

const counts = new Uint32Array(256);

/** Order-0 entropy in bits per byte of samples spread across `data`. */
export function sampledEntropyBits(data: Uint8Array): number {
  counts.fill(0);
  const stride = Math.floor(data.length / SAMPLES);
  const take = Math.min(SAMPLE_BYTES, stride);
  let total = 0;
  for (let s = 0; s < SAMPLES && take > 0; s++) {
    const start = s * stride;
    for (let i = start; i < start + take; i++) counts[data[i]!]!++;
    total += take;
  }
  if (total === 0) return 0;
  let bits = 0;
  for (const count of counts) if (count > 0) bits -= count * Math.log2(count / total);
  return bits / total;
}

export function looksIncompressible(data: Uint8Array): boolean {
  return sampledEntropyBits(data) > INCOMPRESSIBLE_ENTROPY_BITS;
}
