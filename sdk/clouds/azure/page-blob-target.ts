// A ByteTarget over an Azure page blob: the byte layer under the fixed-VHD sink and resync.
//
// - Writes must arrive in increasing offset order (what convert() and the VHD writer do), so
//   uploads in flight never overlap and can run concurrently in any order.
// - All-zero 512-byte pages are skipped: a new page blob reads as zeros, so only pages holding
//   data are sent (the "writing only the pages that hold data"). Resync turns this off,
//   because it rewrites blocks whose old pages must be overwritten.
// - Adjacent data is coalesced into Put Page calls of at most PAGE_BLOB_MAX_WRITE_BYTES, a
//   limit the service enforces and Azurite does not, so it is enforced here.
// - Each Put Page carries x-ms-content-crc64 (crc64.ts), which the service checks before storing
//   the pages; it computes that CRC anyway, whereas a Content-MD5 would cost it a second pass.
import type { PageBlobClient } from "@azure/storage-blob";
import { InvalidArgsError } from "../../errors.ts";
import type { ByteTarget } from "../../disk/types.ts";
import { azureCall, type CallOptions } from "./call.ts";
import { crc64Nvme } from "./crc64.ts";

/** Azure pages are 512 bytes; every Put Page and Clear Pages range is page-aligned. */
export const PAGE_BYTES = 512;
/** Put Page takes at most 4 MiB per call (Put Page REST reference, "Request headers": Range). */
export const PAGE_BLOB_MAX_WRITE_BYTES = 4 * 1024 * 1024;
/**
 * Put Page calls in flight. Eight 4 MiB requests keep a standard page blob (about 60 MiB/s per
 * blob) and Azurite busy while bounding buffered data to 8 × 4 MiB = 32 MiB, plus the run
 * being gathered.
 */
export const PAGE_BLOB_UPLOADS_IN_FLIGHT = 8;

const ZERO_PAGE = Buffer.alloc(PAGE_BYTES);

export interface PageBlobWriteStats {
  /** Put Page calls that succeeded (retries not counted). */
  pageWrites: number;
  /** Bytes sent in successful Put Page calls. */
  bytesUploaded: number;
  largestPageWriteBytes: number;
  /** Clear Pages calls that succeeded, and the bytes they cleared. */
  pageClears: number;
  bytesCleared: number;
  /** Calls retried after a transient failure. */
  retries: number;
}

export interface PageBlobTargetOptions extends CallOptions {
  /** The blob's length, fixed when it was created. */
  readonly sizeBytes: number;
  /** The blob URL without credentials, for messages. */
  readonly name: string;
  /** @default PAGE_BLOB_UPLOADS_IN_FLIGHT */
  readonly concurrency?: number;
  /** Skip all-zero pages (a fresh blob). Resync sets this false. @default true */
  readonly skipZeroPages?: boolean;
}

export interface PageBlobTarget extends ByteTarget {
  readonly stats: Readonly<PageBlobWriteStats>;
  /** Clears [offsetBytes, offsetBytes + lengthBytes) in one Clear Pages call, after earlier writes are queued. */
  clear(offsetBytes: number, lengthBytes: number): Promise<void>;
}

export function createPageBlobTarget(client: PageBlobClient, options: PageBlobTargetOptions): PageBlobTarget {
  const { sizeBytes, name } = options;
  const concurrency = options.concurrency ?? PAGE_BLOB_UPLOADS_IN_FLIGHT;
  const skipZeroPages = options.skipZeroPages ?? true;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgsError("INVALID_CONCURRENCY", `page blob ${name}: concurrency must be a positive integer, got ${concurrency}`);
  }
  const stats: PageBlobWriteStats = { pageWrites: 0, bytesUploaded: 0, largestPageWriteBytes: 0, pageClears: 0, bytesCleared: 0, retries: 0 };
  const callOptions: CallOptions = {
    ...options,
    onRetry: (error, attempt) => {
      stats.retries++;
      options.onRetry?.(error, attempt);
    },
  };
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  /** The run being gathered: contiguous pieces not yet sent. */
  let run: { offsetBytes: number; lengthBytes: number; pieces: Buffer[] } | undefined;
  /** End of the last write: writes must not go backwards. */
  let positionBytes = 0;

  async function slot(): Promise<void> {
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    if (failure !== undefined) throw failure;
  }

  function track(work: Promise<void>): void {
    const entry: Promise<void> = work.then(
      () => {},
      (error: unknown) => {
        failure ??= error;
      },
    ).finally(() => inFlight.delete(entry));
    inFlight.add(entry);
  }

  async function upload(offsetBytes: number, body: Buffer): Promise<void> {
    const crc64 = crc64Nvme(body);
    await azureCall(
      { operation: "Put Page", blob: name, offsetBytes, lengthBytes: body.length },
      () => client.uploadPages(body, offsetBytes, body.length, {
        transactionalContentCrc64: crc64,
        ...(options.signal === undefined ? {} : { abortSignal: options.signal }),
      }),
      callOptions,
    );
    stats.pageWrites++;
    stats.bytesUploaded += body.length;
    stats.largestPageWriteBytes = Math.max(stats.largestPageWriteBytes, body.length);
  }

  async function flush(): Promise<void> {
    if (run === undefined) return;
    const { offsetBytes, pieces } = run;
    run = undefined;
    let body = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    // The disk may end inside a page (a source of odd size): pad it, the rest reads as zero anyway.
    if (body.length % PAGE_BYTES !== 0) body = Buffer.concat([body, ZERO_PAGE.subarray(0, PAGE_BYTES - (body.length % PAGE_BYTES))]);
    await slot();
    track(upload(offsetBytes, body));
  }

  async function append(offsetBytes: number, piece: Buffer): Promise<void> {
    for (let at = 0; at < piece.length;) {
      if (run !== undefined && (run.offsetBytes + run.lengthBytes !== offsetBytes + at || run.lengthBytes === PAGE_BLOB_MAX_WRITE_BYTES)) {
        await flush();
      }
      run ??= { offsetBytes: offsetBytes + at, lengthBytes: 0, pieces: [] };
      const take = Math.min(piece.length - at, PAGE_BLOB_MAX_WRITE_BYTES - run.lengthBytes);
      run.pieces.push(piece.subarray(at, at + take));
      run.lengthBytes += take;
      at += take;
    }
  }

  async function drain(): Promise<void> {
    await flush();
    while (inFlight.size > 0) await Promise.race(inFlight);
    if (failure !== undefined) throw failure;
  }

  function check(offsetBytes: number, lengthBytes: number, what: string): void {
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes % PAGE_BYTES !== 0 || offsetBytes < positionBytes ||
      offsetBytes + lengthBytes > sizeBytes) {
      throw new InvalidArgsError(
        "PAGE_BLOB_WRITE_ORDER",
        `page blob ${name}: ${what} of ${lengthBytes} bytes at offset 0x${offsetBytes.toString(16)} must be page-aligned, ` +
          `at or after 0x${positionBytes.toString(16)} and inside the ${sizeBytes}-byte blob`,
        { context: { offsetBytes, lengthBytes, positionBytes, sizeBytes, blob: name } },
      );
    }
  }

  return {
    name,
    sequential: false,
    stats,
    async write(offsetBytes, data) {
      if (failure !== undefined) throw failure;
      check(offsetBytes, data.length, "write");
      positionBytes = offsetBytes + data.length;
      if (!skipZeroPages) {
        await append(offsetBytes, data);
        return;
      }
      // Send maximal runs of pages holding any non-zero byte.
      let start = -1;
      for (let at = 0; at < data.length; at += PAGE_BYTES) {
        const page = data.subarray(at, Math.min(data.length, at + PAGE_BYTES));
        const zero = page.length === PAGE_BYTES ? page.equals(ZERO_PAGE) : page.every((b) => b === 0);
        if (zero) {
          if (start >= 0) await append(offsetBytes + start, data.subarray(start, at));
          start = -1;
        } else if (start < 0) start = at;
      }
      if (start >= 0) await append(offsetBytes + start, data.subarray(start));
    },
    async clear(offsetBytes, lengthBytes) {
      if (failure !== undefined) throw failure;
      check(offsetBytes, lengthBytes, "clear");
      positionBytes = offsetBytes + lengthBytes;
      await flush();
      await slot();
      const count = Math.ceil(lengthBytes / PAGE_BYTES) * PAGE_BYTES;
      track(
        azureCall(
          { operation: "Clear Pages", blob: name, offsetBytes, lengthBytes: count },
          () => client.clearPages(offsetBytes, count, options.signal === undefined ? {} : { abortSignal: options.signal }),
          callOptions,
        ).then(() => {
          stats.pageClears++;
          stats.bytesCleared += count;
        }),
      );
    },
    async truncate(lengthBytes) {
      // A page blob's length is set when it is created; this only waits for the data before it.
      if (lengthBytes > sizeBytes) {
        throw new InvalidArgsError("PAGE_BLOB_TOO_SMALL", `page blob ${name}: cannot extend the ${sizeBytes}-byte blob to ${lengthBytes}`, {
          context: { sizeBytes, lengthBytes, blob: name },
        });
      }
      await drain();
    },
    close: drain,
  };
}
