// The benchmarks' deterministic mixed image: 1 MiB units in a fixed pseudo-random order, 40 %
// zero (left as holes), 30 % random (an AES-CTR keystream, incompressible) and 30 % text
// (compressible). The same bytes on every run and in every benchmark.
import { createCipheriv } from "node:crypto";
import { open } from "node:fs/promises";

const MiB = 1024 * 1024;

/** Writes the image (a whole number of MiB) and returns how many bytes of data it holds. */
export async function buildMixedImage(path: string, imageBytes: number): Promise<number> {
  const file = await open(path, "w");
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const text = Buffer.alloc(MiB);
  for (let at = 0, n = 0; at < MiB; n++) at += text.write(`line ${n}: portable-workload moves virtual machines between clouds.\n`, at);
  let state = 12345;
  let dataBytes = 0;
  try {
    for (let unit = 0; unit < imageBytes / MiB; unit++) {
      state = (state * 1103515245 + 12345) >>> 0;
      const pick = (state >>> 16) % 10;
      if (pick < 4) continue;
      await file.write(pick < 7 ? cipher.update(Buffer.alloc(MiB)) : text, 0, MiB, unit * MiB);
      dataBytes += MiB;
    }
    await file.truncate(imageBytes);
  } finally {
    await file.close();
  }
  return dataBytes;
}
