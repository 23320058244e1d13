// ByteSources over parts of another: one tar entry in place (an OVA disk read without
// extraction), and chunked OVF files joined back into one (DSP0243 §5.3, ovf:chunkSize).
import type { ByteSource } from "../disk/types.ts";

/**
 * The bytes [offsetBytes, offsetBytes + sizeBytes) of `base`, as a source of its own. close()
 * leaves `base` open: the package that owns it closes it.
 */
export function subRangeSource(base: ByteSource, offsetBytes: number, sizeBytes: number, name: string): ByteSource {
  return {
    name,
    sizeBytes,
    async read(at, lengthBytes) {
      const start = Math.max(0, Math.min(at, sizeBytes));
      const length = Math.max(0, Math.min(lengthBytes, sizeBytes - start));
      if (length === 0) return Buffer.alloc(0);
      return base.read(offsetBytes + start, length);
    },
    close: async () => {},
  };
}

/** Several sources read as one, in order. close() closes each part. */
export function concatSource(parts: readonly ByteSource[], name: string): ByteSource {
  const starts: number[] = [];
  let total = 0;
  for (const part of parts) {
    starts.push(total);
    total += part.sizeBytes;
  }
  return {
    name,
    sizeBytes: total,
    async read(at, lengthBytes) {
      const end = Math.min(total, at + lengthBytes);
      const pieces: Buffer[] = [];
      for (let i = 0; i < parts.length; i++) {
        const start = starts[i] as number;
        const part = parts[i] as ByteSource;
        const from = Math.max(at, start);
        const to = Math.min(end, start + part.sizeBytes);
        if (from < to) pieces.push(await part.read(from - start, to - from));
      }
      return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
    },
    async close() {
      await Promise.all(parts.map((p) => p.close()));
    },
  };
}
