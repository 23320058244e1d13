// Raw images: the bytes are the disk. A local file reports its holes (SEEK_DATA, file-holes.ts)
// as zero extents; other byte sources report one data extent and convert() finds the zeros.
import type { ByteSource, DiskSource, Extent } from "../../types.ts";
import { readExact } from "../../io.ts";
import { FileSpan } from "../../file-span.ts";

export function openRaw(source: ByteSource): DiskSource {
  const virtualSizeBytes = source.sizeBytes;
  const fd = source.fd;
  return {
    format: "raw",
    virtualSizeBytes,
    async *extents(): AsyncGenerator<Extent> {
      if (source.extents !== undefined) yield* source.extents();
      else if (virtualSizeBytes > 0) yield { offsetBytes: 0, lengthBytes: virtualSizeBytes, kind: "data" };
    },
    read: (offsetBytes, lengthBytes, into) => readExact(source, offsetBytes, lengthBytes, "raw", "data", into),
    ...(fd === undefined
      ? {}
      : {
          fileSpan: async (offsetBytes: number, lengthBytes: number) =>
            offsetBytes >= 0 && lengthBytes > 0 && offsetBytes + lengthBytes <= virtualSizeBytes
              ? new FileSpan([{ fd, fileOffsetBytes: offsetBytes, lengthBytes }])
              : undefined,
        }),
    close: () => source.close(),
  };
}
