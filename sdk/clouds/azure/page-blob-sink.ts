// The page-blob sink: any DiskSource streams into an Azure page blob as a valid fixed VHD.
//
// Azure takes a disk as a fixed VHD whose virtual size is a whole MiB, followed by its 512-byte
// footer ("Prepare a Windows VHD or VHDX to upload to Azure": "virtual size must be aligned to
// 1 MiB"). The VHD writer (disk/formats/vhd) already lays out a fixed disk and writes its footer
// last, in finish(), after every data page has been stored; this module gives it a page-blob
// target and prepares the blob for the two flows:
// - "create" (the Import flow): a new page blob in a container, later imported into a managed disk;
// - "upload" (the managed-disk Upload flow): the blob behind a write SAS from grantAccess, which
//   already exists with the disk's upload size.
import type { PageBlobClient } from "@azure/storage-blob";
import { InvalidArgsError, isPortableError } from "../../errors.ts";
import { createVhdWriter, planVhdSize } from "../../disk/formats/vhd/writer.ts";
import { VHD_FOOTER_BYTES } from "../../disk/formats/vhd/layout.ts";
import type { ByteTarget, DiskSink, SinkResult } from "../../disk/types.ts";
import { azureCall, redactUrl, statusOf, type CallOptions } from "./call.ts";
import { listPageRanges } from "./page-ranges.ts";
import { createPageBlobTarget, type PageBlobWriteStats } from "./page-blob-target.ts";

export type PageBlobSinkMode = "create" | "upload" | "auto";

export interface PageBlobSinkOptions extends CallOptions {
  /** The source's virtual size; the VHD is this rounded up to a whole MiB. */
  readonly virtualSizeBytes: number;
  /**
   * "create": make a new page blob (Import flow). "upload": write the existing blob (a managed
   * disk's Upload SAS), whose size must already be the VHD's. "auto": upload if the blob exists,
   * else create. @default "create"
   */
  readonly mode?: PageBlobSinkMode;
  /** Replace a blob that already holds pages. Off by default so a typo never clobbers a disk. */
  readonly overwrite?: boolean;
  /** Put Page calls in flight. @default PAGE_BLOB_UPLOADS_IN_FLIGHT */
  readonly concurrency?: number;
}

export interface PageBlobSink extends DiskSink {
  /** Put Page and Clear Pages counts so far (the acceptance counts written pages). */
  readonly stats: Readonly<PageBlobWriteStats>;
  /** Length of the blob: the VHD's virtual size plus its footer. */
  readonly blobSizeBytes: number;
}

/**
 * The footer the VHD writer puts after a fixed disk of `virtualSizeBytes` (rounded up to a
 * whole MiB), taken from the writer itself so that there is one footer layout in the code base.
 */
export async function fixedVhdFooter(virtualSizeBytes: number): Promise<Buffer> {
  let footer: Buffer | undefined;
  const capture: ByteTarget = {
    name: "footer",
    sequential: false,
    write: async (_offsetBytes, data) => {
      footer = data;
    },
    truncate: async () => {},
    close: async () => {},
  };
  const writer = await createVhdWriter(capture, { virtualSizeBytes, subformat: "fixed", roundToMiB: true, forceSize: true });
  await writer.finish();
  return footer!;
}

/** The blob length Azure expects for a disk of `virtualSizeBytes`: whole MiB plus the footer. */
export function vhdBlobSizeFor(virtualSizeBytes: number): number {
  return planVhdSize(virtualSizeBytes, true, true).virtualSizeBytes + VHD_FOOTER_BYTES;
}

export async function createPageBlobSink(client: PageBlobClient, options: PageBlobSinkOptions): Promise<PageBlobSink> {
  const name = redactUrl(client.url);
  const blobSizeBytes = vhdBlobSizeFor(options.virtualSizeBytes);
  const mode = options.mode ?? "create";
  const exists = mode === "create" ? false : await blobExists(client, name, options);
  if (mode === "upload" && !exists) {
    throw new InvalidArgsError("AZURE_BLOB_MISSING", `page blob ${name} does not exist; the upload flow writes an existing blob (a managed disk's write SAS)`, {
      context: { blob: name },
    });
  }
  if (exists) await prepareExisting(client, name, blobSizeBytes, options);
  else await createBlob(client, name, blobSizeBytes, options);

  const target = createPageBlobTarget(client, { ...options, name, sizeBytes: blobSizeBytes });
  const vhd = await createVhdWriter(target, { virtualSizeBytes: options.virtualSizeBytes, subformat: "fixed", roundToMiB: true, forceSize: true });
  return {
    format: "vhd",
    virtualSizeBytes: vhd.virtualSizeBytes,
    blockSizeBytes: vhd.blockSizeBytes,
    blobSizeBytes,
    stats: target.stats,
    write: (offsetBytes, data) => vhd.write(offsetBytes, data),
    async finish(): Promise<SinkResult> {
      const result = await vhd.finish();
      return {
        location: name,
        dataBytesWritten: result.dataBytesWritten,
        details: { ...result.details, blobSizeBytes, ...target.stats },
      };
    },
    abort: () => vhd.abort(),
  };
}

async function blobExists(client: PageBlobClient, name: string, options: CallOptions): Promise<boolean> {
  try {
    await azureCall({ operation: "Get Blob Properties", blob: name }, () => client.getProperties(), options);
    return true;
  } catch (error) {
    if (isPortableError(error) && error.context.status === 404) return false;
    throw error;
  }
}

export async function createBlob(client: PageBlobClient, name: string, blobSizeBytes: number, options: CallOptions & { readonly overwrite?: boolean }): Promise<void> {
  try {
    await azureCall(
      { operation: "Put Blob (page)", blob: name, lengthBytes: blobSizeBytes },
      // Without overwrite, If-None-Match: * makes the service refuse to replace a blob.
      () => client.create(blobSizeBytes, options.overwrite === true ? {} : { conditions: { ifNoneMatch: "*" } }),
      options,
    );
  } catch (error) {
    const status = isPortableError(error) ? error.context.status : statusOf(error);
    if (status === 409 || status === 412) {
      throw new InvalidArgsError("TARGET_EXISTS", `page blob ${name} already exists (pass overwrite to replace it)`, {
        context: { blob: name },
        cause: error,
      });
    }
    throw error;
  }
}

/**
 * An existing blob must be a page blob of exactly the VHD's length (the managed disk's
 * uploadSizeBytes), and must read as zeros, because the sink writes only data pages. A blob
 * that already holds pages is cleared with overwrite, refused without.
 */
async function prepareExisting(client: PageBlobClient, name: string, blobSizeBytes: number, options: PageBlobSinkOptions): Promise<void> {
  const props = await azureCall({ operation: "Get Blob Properties", blob: name }, () => client.getProperties(), options);
  if (props.blobType !== "PageBlob") {
    throw new InvalidArgsError("AZURE_NOT_PAGE_BLOB", `${name} is a ${props.blobType ?? "unknown"} blob; disks go in page blobs`, {
      context: { blob: name, blobType: props.blobType },
    });
  }
  if (props.contentLength !== blobSizeBytes) {
    throw new InvalidArgsError(
      "AZURE_UPLOAD_SIZE_MISMATCH",
      `page blob ${name} holds ${props.contentLength} bytes but this disk needs ${blobSizeBytes} ` +
        `(a whole-MiB fixed VHD plus its 512-byte footer); create the managed disk with uploadSizeBytes ${blobSizeBytes}`,
      { context: { blob: name, blobSizeBytes: props.contentLength, expectedBytes: blobSizeBytes } },
    );
  }
  const ranges = listPageRanges(client, name, blobSizeBytes, options);
  const first = await ranges.next();
  await ranges.return(undefined);
  if (first.done === true) return;
  if (options.overwrite !== true) {
    throw new InvalidArgsError("TARGET_EXISTS", `page blob ${name} already holds data (pass overwrite to replace it)`, {
      context: { blob: name, offsetBytes: first.value.offsetBytes },
    });
  }
  // One Clear Pages call may span the whole blob (only Put Page is limited to 4 MiB).
  await azureCall(
    { operation: "Clear Pages", blob: name, offsetBytes: 0, lengthBytes: blobSizeBytes },
    () => client.clearPages(0, blobSizeBytes, options.signal === undefined ? {} : { abortSignal: options.signal }),
    options,
  );
}
