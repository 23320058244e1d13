// The page-blob source: a DiskSource over an Azure page blob or a managed disk's read SAS.
//
// Allocation comes from Get Page Ranges (unwritten pages read as zeros and are never
// downloaded); bytes come from ranged Get Blob calls. A blob that ends with a fixed VHD footer
// (every Azure disk does) is read as that VHD, the footer checked by the VHD reader; any other
// blob is read as a raw disk of the blob's length.
import type { PageBlobClient } from "@azure/storage-blob";
import { CloudError, FormatError, InvalidArgsError } from "../../errors.ts";
import { coalesce } from "../../disk/extents.ts";
import { openVhd } from "../../disk/formats/vhd/reader.ts";
import type { ByteSource, DiskSource, Extent } from "../../disk/types.ts";
import { AZURE_SHORT_READ, azureCall, redactUrl, type CallOptions } from "./call.ts";
import { listPageRanges } from "./page-ranges.ts";

export interface PageBlobSource extends DiskSource {
  /** The blob URL without credentials. */
  readonly name: string;
  readonly blobSizeBytes: number;
}

/** Ranged reads of a page blob, each retried; a short body is retried too. */
export function pageBlobByteSource(client: PageBlobClient, sizeBytes: number, options: CallOptions = {}): ByteSource {
  const name = redactUrl(client.url);
  return {
    name,
    sizeBytes,
    async read(offsetBytes, lengthBytes) {
      const length = Math.max(0, Math.min(lengthBytes, sizeBytes - offsetBytes));
      if (length === 0) return Buffer.alloc(0);
      return azureCall(
        { operation: "Get Blob", blob: name, offsetBytes, lengthBytes: length },
        async () => {
          // Our retry owns re-reads (maxRetryRequests 0), so attempts never multiply.
          const response = await client.download(offsetBytes, length, {
            maxRetryRequests: 0,
            ...(options.signal === undefined ? {} : { abortSignal: options.signal }),
          });
          const body = response.readableStreamBody;
          if (body === undefined) throw new CloudError("AZURE_NO_BODY", `Get Blob ${name}: no body at offset 0x${offsetBytes.toString(16)}`);
          const buffer = Buffer.allocUnsafe(length);
          let done = 0;
          for await (const chunk of body as AsyncIterable<Buffer>) {
            if (done + chunk.length > length) throw new CloudError("AZURE_LONG_READ", `Get Blob ${name}: more than ${length} bytes at offset 0x${offsetBytes.toString(16)}`);
            chunk.copy(buffer, done);
            done += chunk.length;
          }
          if (done !== length) {
            throw new CloudError(AZURE_SHORT_READ, `Get Blob ${name}: ${done} of ${length} bytes at offset 0x${offsetBytes.toString(16)}`, {
              context: { blob: name, offsetBytes, lengthBytes: length, got: done },
            });
          }
          return buffer;
        },
        options,
      );
    },
    close: async () => {},
  };
}

/** Extents of [0, limitBytes) from the blob's page ranges: written pages are data, the rest zero. */
export function pageRangeExtents(client: PageBlobClient, limitBytes: number, options: CallOptions = {}): AsyncGenerator<Extent> {
  const name = redactUrl(client.url);
  async function* raw(): AsyncGenerator<Extent> {
    let cursor = 0;
    for await (const range of listPageRanges(client, name, limitBytes, options)) {
      if (range.offsetBytes > cursor) yield { offsetBytes: cursor, lengthBytes: range.offsetBytes - cursor, kind: "zero" };
      yield { offsetBytes: range.offsetBytes, lengthBytes: range.lengthBytes, kind: "data" };
      cursor = range.offsetBytes + range.lengthBytes;
    }
    if (cursor < limitBytes) yield { offsetBytes: cursor, lengthBytes: limitBytes - cursor, kind: "zero" };
  }
  return coalesce(raw());
}

export async function openPageBlobSource(client: PageBlobClient, options: CallOptions = {}): Promise<PageBlobSource> {
  const name = redactUrl(client.url);
  const props = await azureCall({ operation: "Get Blob Properties", blob: name }, () => client.getProperties(), options);
  if (props.blobType !== "PageBlob") {
    throw new InvalidArgsError("AZURE_NOT_PAGE_BLOB", `${name} is a ${props.blobType ?? "unknown"} blob; disks are read from page blobs`, {
      context: { blob: name, blobType: props.blobType },
    });
  }
  const blobSizeBytes = props.contentLength ?? 0;
  const bytes = pageBlobByteSource(client, blobSizeBytes, options);
  let vhd: DiskSource | undefined;
  try {
    vhd = await openVhd(bytes);
  } catch (error) {
    // No VHD footer: the blob is the disk itself. A damaged footer is still an error.
    if (!(error instanceof FormatError && (error.code === "VHD_BAD_COOKIE" || error.code === "TRUNCATED"))) throw error;
  }
  if (vhd !== undefined && vhd.subformat !== "fixed") {
    // A dynamic VHD stored in a blob: its own BAT is the allocation map.
    return { ...vhd, format: vhd.format, virtualSizeBytes: vhd.virtualSizeBytes, name, blobSizeBytes,
      extents: () => vhd.extents(), read: (o, l) => vhd.read(o, l), close: () => vhd.close() };
  }
  const virtualSizeBytes = vhd?.virtualSizeBytes ?? blobSizeBytes;
  return {
    name,
    blobSizeBytes,
    format: vhd === undefined ? "raw" : "vhd",
    ...(vhd === undefined ? {} : { subformat: "fixed" }),
    virtualSizeBytes,
    extents: () => pageRangeExtents(client, virtualSizeBytes, options),
    async read(offsetBytes, lengthBytes) {
      if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 ||
        offsetBytes + lengthBytes > virtualSizeBytes) {
        throw new InvalidArgsError("AZURE_READ_OUT_OF_RANGE", `${name}: read of ${lengthBytes} bytes at ${offsetBytes} lies outside the ${virtualSizeBytes}-byte disk`, {
          context: { offsetBytes, lengthBytes, virtualSizeBytes, blob: name },
        });
      }
      return bytes.read(offsetBytes, lengthBytes);
    },
    close: () => bytes.close(),
  };
}
