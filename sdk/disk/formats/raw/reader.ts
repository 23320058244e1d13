// Raw images: the bytes are the disk. Node cannot ask the kernel for holes (no SEEK_DATA),
// so a raw source reports one data extent and convert() finds the zeros itself.
import type { ByteSource, DiskSource, Extent } from "../../types.ts";
import { readExact } from "../../io.ts";

export function openRaw(source: ByteSource): DiskSource {
  const virtualSizeBytes = source.sizeBytes;
  return {
    format: "raw",
    virtualSizeBytes,
    async *extents(): AsyncGenerator<Extent> {
      if (virtualSizeBytes > 0) yield { offsetBytes: 0, lengthBytes: virtualSizeBytes, kind: "data" };
    },
    read: (offsetBytes, lengthBytes, into) => readExact(source, offsetBytes, lengthBytes, "raw", "data", into),
    close: () => source.close(),
  };
}
